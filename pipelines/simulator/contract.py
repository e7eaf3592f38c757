"""JSON Schemas of the API's responses, derived at run time from the vendor's OpenAPI 3.0 spec.

The contract tests validate every response the simulator sends against these schemas, so the
simulator cannot drift from the published API without CI noticing.

OpenAPI 3.0 schemas are nearly JSON Schema; the differences handled here:
- `$ref: '#/components/schemas/X'` becomes `#/$defs/X` (every component is bundled under
  `$defs`, so references, even recursive ones, resolve inside one document). As in OpenAPI 3.0,
  keywords next to a `$ref` are ignored.
- `nullable: true` becomes a `"null"` type (or an `anyOf` with `{"type": "null"}`).
- boolean `exclusiveMinimum`/`exclusiveMaximum` (draft 4 style) become numeric bounds.
- `example`, `discriminator`, `xml`, `externalDocs` are dropped; `format` stays an annotation.

`SPEC_ERRATA` lists the few places where the spec's prose contradicts its own schema; they are
applied before conversion, each with its reason.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC_ENV_VAR = "EACHLABS_API_SPEC"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC_PATH = REPO_ROOT.parent / "shared" / "eachlabs-api" / "workflows.openapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: (schema, property) -> keywords merged into that property before conversion.
SPEC_ERRATA: dict[tuple[str, str], dict[str, Any]] = {
    # The description says "If null, there are no more results to fetch", but the schema
    # declares a plain integer. The simulator sends null on the last page.
    ("ListExecutionsResponse", "offset"): {"nullable": True},
}

_DROPPED_KEYWORDS = frozenset({"example", "discriminator", "xml", "externalDocs"})
_SCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LIST_KEYWORDS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_KEYWORDS = ("items", "additionalProperties", "not", "contains", "propertyNames")


class SpecNotFoundError(FileNotFoundError):
    """The OpenAPI spec is not where we looked; the message says how to provide it."""


def find_spec_path(
    environ: Mapping[str, str] | None = None, default: Path = DEFAULT_SPEC_PATH
) -> Path:
    """Where the spec is: `$EACHLABS_API_SPEC` if set, else `../shared/...` next to the repo.

    Raises:
        SpecNotFoundError: neither exists.
    """
    environ = os.environ if environ is None else environ
    configured = environ.get(SPEC_ENV_VAR)
    path = Path(configured) if configured else default
    if not path.is_file():
        where = f"{SPEC_ENV_VAR}={configured}" if configured else f"the default path {path}"
        raise SpecNotFoundError(
            f"The Eachlabs OpenAPI spec was not found at {where}. Set {SPEC_ENV_VAR} to the path "
            "of workflows.openapi.yaml (the vendor's published spec, file workflows.yaml of the "
            f"public eachlabs/docs repository), or place it at {DEFAULT_SPEC_PATH}."
        )
    return path


def load_spec(spec_path: Path | str) -> dict[str, Any]:
    with open(spec_path, encoding="utf-8") as spec_file:
        spec = yaml.safe_load(spec_file)
    if not isinstance(spec, dict) or not str(spec.get("openapi", "")).startswith("3.0"):
        raise ValueError(f"{spec_path} is not an OpenAPI 3.0 document")
    return spec


def load_response_schemas(
    spec_path: Path | str, *, forbid_unknown_properties: bool = False
) -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema (2020-12) per component schema of the spec, by name.

    Args:
        spec_path: The OpenAPI 3.0 YAML file.
        forbid_unknown_properties: Close every object schema that lists its `properties` (and
            says nothing about others), to catch misspelt or undocumented fields. The spec
            itself leaves them open; use this for what we generate, not for what we accept.
    """
    spec = load_spec(spec_path)
    definitions = _converted_components(spec, forbid_unknown_properties)
    return {name: _standalone(schema, definitions) for name, schema in definitions.items()}


def load_operation_schemas(
    spec_path: Path | str, *, forbid_unknown_properties: bool = False
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """JSON response schemas by `(METHOD, path template, status)`, e.g.
    `("GET", "/executions/{executionID}", "200")`, with `components/responses` refs resolved."""
    spec = load_spec(spec_path)
    definitions = _converted_components(spec, forbid_unknown_properties)
    shared_responses = spec.get("components", {}).get("responses", {})
    schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if "$ref" in response:
                    response = shared_responses[response["$ref"].rsplit("/", 1)[-1]]
                media = response.get("content", {}).get("application/json")
                if media and "schema" in media:
                    converted = openapi_to_json_schema(media["schema"], forbid_unknown_properties)
                    schemas[(method.upper(), path, str(status))] = _standalone(
                        converted, definitions
                    )
    return schemas


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A strict validator (formats are annotations only, as in the spec's own tooling)."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def openapi_to_json_schema(
    node: Any, forbid_unknown_properties: bool = False
) -> dict[str, Any] | bool:
    """Convert one OpenAPI 3.0 schema object into JSON Schema 2020-12 (see module docstring)."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise TypeError(f"not a schema object: {node!r}")
    if "$ref" in node:
        return {"$ref": _rewrite_ref(node["$ref"])}
    result: dict[str, Any] = {}
    for keyword, value in node.items():
        if keyword in _DROPPED_KEYWORDS or keyword == "nullable":
            continue
        if keyword in _SCHEMA_MAP_KEYWORDS:
            result[keyword] = {
                name: openapi_to_json_schema(sub, forbid_unknown_properties)
                for name, sub in value.items()
            }
        elif keyword in _SCHEMA_LIST_KEYWORDS:
            result[keyword] = [
                openapi_to_json_schema(sub, forbid_unknown_properties) for sub in value
            ]
        elif keyword in _SCHEMA_KEYWORDS:
            result[keyword] = openapi_to_json_schema(value, forbid_unknown_properties)
        else:
            result[keyword] = copy.deepcopy(value)
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(result.get(exclusive), bool):
            if result.pop(exclusive) and bound in result:
                result[exclusive] = result.pop(bound)
    if forbid_unknown_properties and "properties" in result:
        result.setdefault("additionalProperties", False)
    if node.get("nullable") is True:
        result = _nullable(result)
    return result


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    declared = schema.get("type")
    if isinstance(declared, str):
        schema["type"] = [declared, "null"]
    elif isinstance(declared, list):
        if "null" not in declared:
            schema["type"] = [*declared, "null"]
    else:
        return {"anyOf": [schema, {"type": "null"}]}
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _converted_components(spec: dict[str, Any], forbid_unknown: bool) -> dict[str, Any]:
    components = copy.deepcopy(spec.get("components", {}).get("schemas", {}))
    for (schema_name, property_name), patch in SPEC_ERRATA.items():
        target = components.get(schema_name, {}).get("properties", {}).get(property_name)
        if target is not None:
            target.update(patch)
    return {
        name: openapi_to_json_schema(schema, forbid_unknown) for name, schema in components.items()
    }


def _standalone(schema: dict[str, Any] | bool, definitions: dict[str, Any]) -> dict[str, Any]:
    body = schema if isinstance(schema, dict) else {"not": {}} if schema is False else {}
    return {"$schema": JSON_SCHEMA_DIALECT, **copy.deepcopy(body), "$defs": definitions}


def _rewrite_ref(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}: only {prefix}... is handled")
    return "#/$defs/" + ref[len(prefix) :]

"""The project's own contract of the Eachlabs API responses, and its check against the vendor.

`tests/eachlabs_api.schema.json` is the contract the simulator is tested against: JSON Schema
(2020-12) of every response of the two endpoints we use, with only the facts (field names,
types, enums, required fields, nullability, bounds), no prose. It lives in the repository,
so the contract tests need nothing outside the clone.

It was derived once from the vendor's published OpenAPI 3.0 spec, and `check` derives it again
and diffs: CI runs `make check-spec`, which fails when the vendor's spec and our contract
disagree. `write` regenerates the file after a deliberate update.

    python tests/openapi_contract.py check [--spec PATH]
    python tests/openapi_contract.py write [--spec PATH]

OpenAPI 3.0 schemas are nearly JSON Schema; the differences handled here:
- `$ref: '#/components/schemas/X'` becomes `#/$defs/X`. As in OpenAPI 3.0, keywords next to
  a `$ref` are ignored.
- `nullable: true` becomes a `"null"` type (or an `anyOf` with `{"type": "null"}`).
- boolean `exclusiveMinimum`/`exclusiveMaximum` (draft 4 style) become numeric bounds.
- prose and tooling keywords (`description`, `title`, `example`, ...) are dropped; `format`
  stays, as an annotation.

`SPEC_ERRATA` lists the places where the spec's prose contradicts its own schema; they are
applied before conversion, each with its reason, and recorded in the contract's `$comment`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

CONTRACT_PATH = Path(__file__).resolve().parent / "eachlabs_api.schema.json"
SPEC_ENV_VAR = "EACHLABS_API_SPEC"
#: Where CI keeps the vendor's spec: beside the checkout, never inside it.
DEFAULT_SPEC_PATH = (
    Path(__file__).resolve().parents[2] / "shared" / "eachlabs-api" / "workflows.openapi.yaml"
)
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: The operations the project calls; the contract holds every response they document.
OPERATIONS = (("GET", "/executions/{executionID}"), ("GET", "/workflows/{workflowID}/executions"))

#: (schema, property) -> keywords merged into that property before conversion.
SPEC_ERRATA: dict[tuple[str, str], dict[str, Any]] = {
    # The description says "If null, there are no more results to fetch", but the schema
    # declares a plain integer. The simulator sends null on the last page.
    ("ListExecutionsResponse", "offset"): {"nullable": True},
}

_DROPPED_KEYWORDS = frozenset(
    {"example", "examples", "discriminator", "xml", "externalDocs", "description", "title"}
)
_SCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LIST_KEYWORDS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_KEYWORDS = ("items", "additionalProperties", "not", "contains", "propertyNames")

Operations = dict[tuple[str, str, str], dict[str, Any]]


class SpecNotFoundError(FileNotFoundError):
    """The vendor's OpenAPI spec is not where we looked; the message says how to provide it."""


# --- the project's contract ------------------------------------------------------------------


def load_contract(path: Path = CONTRACT_PATH) -> dict[str, Any]:
    """The committed contract: `{"operations": {"GET /path": {status: schema}}, "$defs": ...}`."""
    return json.loads(path.read_text(encoding="utf-8"))


def operation_schemas(
    contract: dict[str, Any], *, forbid_unknown_properties: bool = False
) -> Operations:
    """Standalone JSON Schemas by `(METHOD, path template, status)`.

    Args:
        contract: as returned by `load_contract` or `derive_contract`.
        forbid_unknown_properties: close every object schema that lists its `properties` (and
            says nothing about others), to catch misspelt or undocumented fields. The spec
            leaves them open; use this for what we generate, not for what we accept.
    """
    definitions = {
        name: _closed(schema) if forbid_unknown_properties else schema
        for name, schema in contract["$defs"].items()
    }
    schemas: Operations = {}
    for operation, responses in contract["operations"].items():
        method, path = operation.split(" ", 1)
        for status, schema in responses.items():
            body = _closed(schema) if forbid_unknown_properties else schema
            schemas[(method, path, status)] = _standalone(body, definitions)
    return schemas


def component_schemas(
    contract: dict[str, Any], *, forbid_unknown_properties: bool = False
) -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema per named schema of the contract (e.g. `Error`)."""
    definitions = {
        name: _closed(schema) if forbid_unknown_properties else schema
        for name, schema in contract["$defs"].items()
    }
    return {name: _standalone(schema, definitions) for name, schema in definitions.items()}


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A strict validator (formats are annotations only, as in the spec's own tooling)."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def contract_differences(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Every place two contracts disagree, as readable lines (empty: they agree)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        lines = []
        for key in sorted(set(ours) | set(theirs), key=str):
            at = f"{where}/{key}"
            if key not in theirs:
                lines.append(f"{at}: only in our contract: {json.dumps(ours[key])[:120]}")
            elif key not in ours:
                lines.append(f"{at}: only in the vendor's spec: {json.dumps(theirs[key])[:120]}")
            else:
                lines += contract_differences(ours[key], theirs[key], at)
        return lines
    if ours != theirs:
        mine, vendor = json.dumps(ours)[:120], json.dumps(theirs)[:120]
        return [f"{where or '/'}: ours {mine}, vendor's {vendor}"]
    return []


# --- deriving the contract from the vendor's OpenAPI spec ------------------------------------


def find_spec_path(
    environ: Mapping[str, str] | None = None, default: Path = DEFAULT_SPEC_PATH
) -> Path:
    """Where the vendor's spec is: `$EACHLABS_API_SPEC` if set, else the `shared` folder beside the
    checkout (CI's layout).

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
            f"public eachlabs/docs repository), or place it at {DEFAULT_SPEC_PATH}. Only this "
            "cross-check needs it; `make test` uses the contract in the repository."
        )
    return path


def load_spec(spec_path: Path | str) -> dict[str, Any]:
    import yaml

    with open(spec_path, encoding="utf-8") as spec_file:
        spec = yaml.safe_load(spec_file)
    if not isinstance(spec, dict) or not str(spec.get("openapi", "")).startswith("3.0"):
        raise ValueError(f"{spec_path} is not an OpenAPI 3.0 document")
    return spec


def derive_contract(spec: dict[str, Any]) -> dict[str, Any]:
    """The contract as the vendor's spec states it today (errata applied)."""
    components = copy.deepcopy(spec.get("components", {}).get("schemas", {}))
    for (schema_name, property_name), patch in SPEC_ERRATA.items():
        target = components.get(schema_name, {}).get("properties", {}).get(property_name)
        if target is not None:
            target.update(patch)
    definitions = {name: openapi_to_json_schema(schema) for name, schema in components.items()}
    shared_responses = spec.get("components", {}).get("responses", {})
    operations: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        operation = spec["paths"][path][method.lower()]
        responses: dict[str, Any] = {}
        for status, response in operation.get("responses", {}).items():
            if "$ref" in response:
                response = shared_responses[response["$ref"].rsplit("/", 1)[-1]]
            media = response.get("content", {}).get("application/json")
            if media and "schema" in media:
                responses[str(status)] = openapi_to_json_schema(media["schema"])
        operations[f"{method} {path}"] = responses
    used = _reachable(operations, definitions) | {"Error"}
    return {
        "$comment": (
            "The Eachlabs Workflows API responses this project relies on: facts from the "
            "vendor's OpenAPI spec, no prose. Errata applied: "
            + "; ".join(f"{s}.{p} {json.dumps(patch)}" for (s, p), patch in SPEC_ERRATA.items())
            + ". Regenerate with `python tests/openapi_contract.py write`."
        ),
        "operations": operations,
        "$defs": {name: definitions[name] for name in sorted(used)},
    }


def openapi_to_json_schema(node: Any) -> dict[str, Any] | bool:
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
            result[keyword] = {name: openapi_to_json_schema(sub) for name, sub in value.items()}
        elif keyword in _SCHEMA_LIST_KEYWORDS:
            result[keyword] = [openapi_to_json_schema(sub) for sub in value]
        elif keyword in _SCHEMA_KEYWORDS:
            result[keyword] = openapi_to_json_schema(value)
        else:
            result[keyword] = copy.deepcopy(value)
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(result.get(exclusive), bool):
            if result.pop(exclusive) and bound in result:
                result[exclusive] = result.pop(bound)
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


def _closed(node: Any) -> Any:
    """A copy of a JSON Schema with every object that lists `properties` closed."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {
        key: {name: _closed(sub) for name, sub in value.items()}
        if key in _SCHEMA_MAP_KEYWORDS
        else _closed(value)
        for key, value in node.items()
    }
    if "properties" in result:
        result.setdefault("additionalProperties", False)
    return result


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(root: Any, definitions: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    pending = list(_refs(root))
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(_refs(definitions[name]))
    return seen


def _standalone(schema: dict[str, Any] | bool, definitions: dict[str, Any]) -> dict[str, Any]:
    body = schema if isinstance(schema, dict) else {"not": {}} if schema is False else {}
    return {"$schema": JSON_SCHEMA_DIALECT, **copy.deepcopy(body), "$defs": definitions}


def _rewrite_ref(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}: only {prefix}... is handled")
    return "#/$defs/" + ref[len(prefix) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["check", "write"])
    parser.add_argument("--spec", type=Path, help=f"the vendor's spec (default: ${SPEC_ENV_VAR} "
                        f"or {DEFAULT_SPEC_PATH})")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        spec_path = args.spec or find_spec_path()
    except SpecNotFoundError as exc:
        print(f"check-spec: {exc}", file=sys.stderr)
        return 1
    derived = derive_contract(load_spec(spec_path))
    if args.action == "write":
        CONTRACT_PATH.write_text(json.dumps(derived, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {CONTRACT_PATH} from {spec_path}")
        return 0
    differences = contract_differences(load_contract(), derived)
    if differences:
        print(
            f"check-spec: our contract {CONTRACT_PATH.name} disagrees with the vendor's spec "
            f"{spec_path} in {len(differences)} place(s):",
            file=sys.stderr,
        )
        for line in differences:
            print(f"  {line}", file=sys.stderr)
        print(
            "Update the simulator, the loader and the contract together (`python "
            "tests/openapi_contract.py write` regenerates the contract), or record an erratum.",
            file=sys.stderr,
        )
        return 1
    print(f"check-spec: {CONTRACT_PATH.name} agrees with {spec_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

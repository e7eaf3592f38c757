"""Contract tests: every response of the simulator validates against the project's API contract.

The contract is `tests/eachlabs_api.schema.json`, kept in the repository (see
tests/openapi_contract.py); `make check-spec` cross-checks it against the vendor's published
OpenAPI spec, which these tests never read.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema.protocols import Validator
from openapi_contract import (
    SPEC_ENV_VAR,
    SpecNotFoundError,
    component_schemas,
    contract_differences,
    find_spec_path,
    load_contract,
    openapi_to_json_schema,
    operation_schemas,
    schema_validator,
)
from openapi_contract import main as contract_main

from pipelines.simulator import FaultConfig, Simulator
from pipelines.simulator.app import API_PREFIX, SimulatorApp, split_target
from pipelines.simulator.plans import Dataset

MakeSimulator = Callable[..., Simulator]
EXECUTION_OP = ("GET", "/executions/{executionID}")
LIST_OP = ("GET", "/workflows/{workflowID}/executions")
ONE_DAY_S = 24 * 3600


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return load_contract()


@pytest.fixture(scope="module")
def operations(contract: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    # Closed objects: the simulator must not send fields the contract does not document.
    return operation_schemas(contract, forbid_unknown_properties=True)


@pytest.fixture(scope="module")
def schemas(contract: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return component_schemas(contract, forbid_unknown_properties=True)


def assert_valid(validator: Validator, body: Any, what: str) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    details = "\n".join(f"  at {list(e.path)}: {e.message[:200]}" for e in errors[:5])
    assert not errors, f"{what} does not match the spec:\n{details}"


class Coverage:
    """Which shapes the validated responses exercised, so 'all valid' means something."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = defaultdict(set)

    def add(self, body: dict[str, Any]) -> None:
        seen = self.seen
        seen["status"].add(body["status"])
        seen["bulk_id"].add("present" if "bulk_id" in body else "absent")
        seen["output"].add(type(body["output"]).__name__)
        for value in _timestamps(body):
            seen["offset"].add(re.search(r"(Z|[+-]\d\d:\d\d)$", value).group(1))
            fraction = re.search(r"\.(\d+)", value)
            seen["fraction"].add(str(len(fraction.group(1))) if fraction else "none")
        for step in body["step_outputs"].values():
            seen["step_status"].add(step["status"])
            metadata = step.get("metadata")
            if metadata is None:
                seen["step_type"].add("no metadata")
            else:
                seen["step_type"].add("model" if "model" in metadata else metadata["type"])
                for value in metadata.get("params", {}).values():
                    seen["param"].add(type(value).__name__)
                    if isinstance(value, str) and not value.isascii():
                        seen["param"].add("non-ascii str")
                seen["metadata"].update(metadata)
            if "output" in step:
                seen["step_output"].add(type(step["output"]).__name__)
            if "primary" in step:
                seen["primary"].add(type(step["primary"]).__name__)
            if "input" in step:
                seen["step_input"].add("present")


def _timestamps(body: dict[str, Any]) -> list[str]:
    values = [body.get("started_at"), body.get("completed_at")]
    for step in body["step_outputs"].values():
        values += [step.get("started_at"), step.get("completed_at")]
        values.append((step.get("metadata") or {}).get("processed_at"))
    return [value for value in values if value]


def test_generated_executions_match_the_spec_at_several_times(
    simulator_factory: MakeSimulator, operations: dict
) -> None:
    sim = simulator_factory(executions=300, long_poll=False)
    validator = schema_validator(operations[(*EXECUTION_OP, "200")])
    coverage = Coverage()
    with requests.Session() as session:
        session.headers["X-API-Key"] = sim.api_key
        for advance_s in (0, 20, 600, ONE_DAY_S):
            sim.advance(advance_s)
            for execution_id in sim.execution_ids:
                response = session.get(
                    f"{sim.base_url}/executions/{execution_id}", params={"timeout": 1}, timeout=10
                )
                assert response.status_code == 200
                body = response.json()
                assert_valid(validator, body, f"execution {execution_id} (+{advance_s}s)")
                coverage.add(body)

    seen = coverage.seen
    assert seen["status"] == {"running", "completed", "failed", "cancelled"}
    assert seen["step_status"] == {"queued", "running", "completed", "failed", "cancelled"}
    assert seen["step_type"] == {"model", "http", "python", "no metadata"}
    assert seen["output"] == {"str", "list", "dict", "NoneType"}
    assert seen["step_output"] == {"str", "list", "dict", "bool", "float"}
    assert seen["primary"] == {"str", "int", "float", "bool", "dict"}
    assert seen["param"] >= {"str", "int", "float", "bool", "NoneType", "list", "dict"}
    assert "non-ascii str" in seen["param"]
    assert seen["bulk_id"] == {"present", "absent"}
    assert seen["step_input"] == {"present"}
    assert {"Z", "+00:00", "+03:00", "-05:30"} <= seen["offset"]
    assert {"none", "3", "6"} <= seen["fraction"] and len(seen["fraction"]) > 3
    model_and_python_keys = {"prediction_id", "processed_at", "elapsed_seconds"}
    model_and_python_keys.add("execution_time")
    assert model_and_python_keys <= set(seen["metadata"])
    assert {"method", "url", "version", "params"} <= set(seen["metadata"])


def test_list_pages_match_the_spec(simulator_factory: MakeSimulator, operations: dict) -> None:
    sim = simulator_factory(executions=300)
    validator = schema_validator(operations[(*LIST_OP, "200")])
    statuses = set()
    for advance_s in (0, ONE_DAY_S):
        sim.advance(advance_s)
        for workflow_id in sim.workflow_ids:
            offset: int | None = 0
            while offset is not None:
                response = requests.get(
                    f"{sim.base_url}/workflows/{workflow_id}/executions",
                    headers={"X-API-Key": sim.api_key},
                    params={"offset": offset, "limit": 30},
                    timeout=10,
                )
                body = response.json()
                assert response.status_code == 200
                assert_valid(validator, body, f"list page {workflow_id}@{offset}")
                statuses.update(item["status"] for item in body["executions"])
                offset = body["offset"]
    assert statuses == {"running", "completed", "failed", "cancelled"}


def test_list_summaries_with_every_optional_field_match_the_spec(operations: dict) -> None:
    """User, cost (number and objects), dry run and soft delete, hand-made summaries with
    overrides and executions created while paging: all within the published summary."""
    dataset = Dataset(seed=42, executions=2000)
    app = SimulatorApp(dataset, "contract-key", list_insert_per_page=1)
    workflow_id = dataset.workflows[0].workflow_id
    app.put_execution(
        {"execution_id": "hand-made", "workflow_id": workflow_id, "status": "completed"},
        summary={"dry_run": True, "cost": {"total": 0.1}, "deleted_at": "2026-03-01T00:00:00Z"},
    )
    validator = schema_validator(operations[(*LIST_OP, "200")])
    seen: dict[str, set[str]] = defaultdict(set)
    for workflow in dataset.workflows:
        offset: int | None = 0
        while offset is not None:
            path, query = split_target(
                f"{API_PREFIX}/workflows/{workflow.workflow_id}/executions"
                f"?offset={offset}&limit=100"
            )
            body = json.loads(app.handle("GET", path, query, {"X-API-Key": "contract-key"}).body)
            assert_valid(validator, body, f"list page {workflow.workflow_id}@{offset}")
            for item in body["executions"]:
                seen["cost"].add(type(item["cost"]).__name__ if "cost" in item else "absent")
                seen["deleted_at"].add("present" if "deleted_at" in item else "absent")
                seen["dry_run"].add(str(item["dry_run"]))
                seen["api_key"].add("present" if "api_key" in item else "absent")
            offset = body["offset"]
    assert len(app.inserted_execution_ids) > 20
    assert seen == {
        "cost": {"float", "dict", "absent"},
        "deleted_at": {"present", "absent"},
        "dry_run": {"True", "False"},
        "api_key": {"present", "absent"},  # hand-made summaries have no user unless given
    }


def test_every_error_body_matches_the_spec(
    simulator_factory: MakeSimulator, operations: dict, schemas: dict
) -> None:
    sim = simulator_factory(executions=20, running_share=0.0)
    scripted_id = sim.execution_ids[1]
    faulty = simulator_factory(
        executions=20,
        running_share=0.0,
        faults=FaultConfig(fail_ids={scripted_id: [500, 502, 503, 429]}),
    )
    known_id, workflow_id = sim.execution_ids[0], sim.workflow_ids[0]
    cases: list[tuple[Simulator, str, str | None, tuple[str, str] | None, int]] = [
        (sim, f"/executions/{known_id}", None, EXECUTION_OP, 401),
        (sim, f"/workflows/{workflow_id}/executions", None, LIST_OP, 401),
        (sim, "/executions/unknown-id", "valid", EXECUTION_OP, 404),
        (sim, "/workflows/unknown/executions", "valid", LIST_OP, 404),
        (sim, f"/executions/{known_id}?timeout=0", "valid", EXECUTION_OP, 400),
        (sim, f"/workflows/{workflow_id}/executions?limit=101", "valid", LIST_OP, 400),
        (sim, "/no/such/path", "valid", None, 404),
    ]
    cases += [
        (faulty, f"/executions/{scripted_id}", "valid", EXECUTION_OP, status)
        for status in (500, 502, 503, 429)
    ]
    for target, path, key, operation, expected_status in cases:
        headers = {"X-API-Key": target.api_key} if key else {}
        response = requests.get(target.base_url + path, headers=headers, timeout=10)
        assert response.status_code == expected_status, path
        assert response.headers["Content-Type"].startswith("application/json")
        # The spec's own schema for that status when it lists one, else its `Error` schema.
        listed = operations.get((*operation, str(expected_status))) if operation else None
        schema = listed or schemas["Error"]
        assert_valid(schema_validator(schema), response.json(), f"{expected_status} for {path}")


def test_spec_declares_what_the_simulator_relies_on(operations: dict) -> None:
    for key in [(*EXECUTION_OP, "200"), (*EXECUTION_OP, "401"), (*EXECUTION_OP, "404")]:
        assert key in operations
    assert (*LIST_OP, "400") in operations


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda body: body["step_outputs"]["s"].update(primary=["a"]),
            ["step_outputs", "s", "primary"],
        ),
        (lambda body: body.update(output=12), ["output"]),
        (lambda body: body.update(status="done"), ["status"]),
        (lambda body: body["step_outputs"]["s"].pop("status"), ["step_outputs", "s"]),
        (lambda body: body.update(completed_at=None), ["completed_at"]),
        (lambda body: body.update(complete_at="2026-01-01T00:00:00Z"), []),
    ],
)
def test_schema_rejects_what_the_spec_forbids(
    operations: dict, mutate: Callable[[dict], Any], path: list[str]
) -> None:
    body = {
        "execution_id": "e",
        "workflow_id": "w",
        "status": "completed",
        "completed_at": "2026-01-01T00:00:00Z",
        "step_outputs": {"s": {"step_id": "s", "status": "completed", "primary": "x"}},
        "output": "x",
    }
    schema_validator(operations[(*EXECUTION_OP, "200")]).validate(body)
    mutate(body)
    errors = list(schema_validator(operations[(*EXECUTION_OP, "200")]).iter_errors(body))
    assert [list(error.absolute_path) for error in errors] == [path]


def test_list_offset_is_nullable_by_erratum_but_still_an_integer(operations: dict) -> None:
    validator = schema_validator(operations[(*LIST_OP, "200")])
    assert validator.is_valid({"executions": [], "offset": None, "total_count": 0})
    assert validator.is_valid({"executions": [], "total_count": 0})
    assert not validator.is_valid({"executions": [], "offset": "50", "total_count": 0})


def test_openapi_conversion() -> None:
    converted = openapi_to_json_schema(
        {
            "type": "object",
            "example": {"a": 1},
            "description": "prose is not a fact of the contract",
            "properties": {
                "example": {"type": "string", "nullable": True},
                "level": {"type": "string", "enum": ["a", "b"], "nullable": True},
                "any": {"oneOf": [{"type": "string"}, {"type": "object"}], "nullable": True},
                "ref": {"$ref": "#/components/schemas/Other", "description": "ignored"},
                "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            },
        }
    )
    assert converted == {
        "type": "object",
        "properties": {
            "example": {"type": ["string", "null"]},
            "level": {"type": ["string", "null"], "enum": ["a", "b", None]},
            "any": {
                "anyOf": [{"oneOf": [{"type": "string"}, {"type": "object"}]}, {"type": "null"}]
            },
            "ref": {"$ref": "#/$defs/Other"},
            "count": {"type": "integer", "exclusiveMinimum": 0},
        },
    }


def _as_openapi(node: Any) -> Any:
    """Our contract written back as an OpenAPI 3.0 schema (the inverse of the conversion)."""
    if isinstance(node, list):
        return [_as_openapi(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _as_openapi(value) for key, value in node.items()}
    if "$ref" in result:
        result["$ref"] = result["$ref"].replace("#/$defs/", "#/components/schemas/")
    if isinstance(result.get("type"), list):
        result["type"] = next(kind for kind in result["type"] if kind != "null")
        result["nullable"] = True
        if None in result.get("enum", []):
            result["enum"] = [value for value in result["enum"] if value is not None]
    return result


def _spec_from_contract(contract: dict[str, Any]) -> dict[str, Any]:
    """A minimal OpenAPI document stating exactly what the contract states."""
    schemas = _as_openapi(contract["$defs"])
    schemas["ListExecutionsResponse"]["properties"]["offset"].pop("nullable")  # the erratum
    paths: dict[str, Any] = {}
    for operation, responses in contract["operations"].items():
        method, path = operation.split(" ", 1)
        paths[path] = {
            method.lower(): {
                "responses": {
                    status: {"content": {"application/json": {"schema": _as_openapi(schema)}}}
                    for status, schema in responses.items()
                }
            }
        }
    return {"openapi": "3.0.3", "paths": paths, "components": {"schemas": schemas}}


def test_check_spec_passes_on_an_agreeing_spec_and_names_each_disagreement(
    contract: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec_from_contract(contract)
    agreeing = tmp_path / "agreeing.yaml"
    agreeing.write_text(json.dumps(spec))  # JSON is YAML
    assert contract_main(["check", "--spec", str(agreeing)]) == 0

    drifted = copy.deepcopy(spec)
    properties = drifted["components"]["schemas"]["ExecutionDetails"]["properties"]
    properties["status"]["enum"].remove("cancelled")
    properties["bulk_id"]["type"] = "integer"
    perturbed = tmp_path / "perturbed.yaml"
    perturbed.write_text(json.dumps(drifted))
    capsys.readouterr()
    assert contract_main(["check", "--spec", str(perturbed)]) == 1
    report = capsys.readouterr().err
    assert "disagrees with the vendor's spec" in report and "2 place(s)" in report
    assert "/$defs/ExecutionDetails/properties/status/enum" in report
    assert (
        '/$defs/ExecutionDetails/properties/bulk_id/type: ours "string", vendor\'s "integer"'
        in report
    )


def test_contract_differences_lists_missing_and_extra_fields(contract: dict[str, Any]) -> None:
    theirs = copy.deepcopy(contract)
    step = theirs["$defs"]["StepOutput"]["properties"]
    step["attempt"] = {"type": "integer"}
    del step["primary"]
    lines = contract_differences(contract, theirs)
    assert [line.split(":")[0] for line in lines] == [
        "/$defs/StepOutput/properties/attempt",
        "/$defs/StepOutput/properties/primary",
    ]
    assert "only in the vendor's spec" in lines[0] and "only in our contract" in lines[1]
    assert contract_differences(contract, copy.deepcopy(contract)) == []


def test_missing_spec_fails_with_instructions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(SpecNotFoundError, match=SPEC_ENV_VAR):
        find_spec_path(environ={SPEC_ENV_VAR: str(missing)})
    with pytest.raises(SpecNotFoundError, match=SPEC_ENV_VAR):
        find_spec_path(environ={}, default=missing)
    present = tmp_path / "spec.yaml"
    present.write_text("openapi: 3.0.3\n")
    assert find_spec_path(environ={SPEC_ENV_VAR: str(present)}) == present

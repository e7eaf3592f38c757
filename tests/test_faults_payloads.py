"""Fault suite, payload side: type drift, extreme sizes and timestamps, and a Hypothesis
property test of the normaliser over every shape the API allows and beyond.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payloads import fault_execution as execution
from payloads import fault_step as step

from pipelines.eachlabs.errors import PayloadError
from pipelines.eachlabs.normalise import (
    JSON_COLUMNS,
    ExecutionBatch,
    execution_to_rows,
    to_json,
)

FETCHED_AT_US = 1_733_312_890_000_000


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# --- type drift: kept losslessly, never blocking the execution -----------------------------


@pytest.mark.parametrize(
    ("fields", "column", "kept"),
    [
        ({"workflow_id": 42}, "workflow_id", {"workflow_id": 42}),
        ({"status": ["completed"]}, "status", {"status": ["completed"]}),
        ({"error": {"code": 1}}, "error", {"error": {"code": 1}}),
        ({"started_at": 1733312890}, "started_at", {"started_at": 1733312890}),
        ({"completed_at": "9999-12-31T23:59:60Z"}, "completed_at",
         {"completed_at": "9999-12-31T23:59:60Z"}),
        ({"step_outputs": ["s1"]}, "step_count", {"step_outputs": ["s1"]}),
    ],
)  # fmt: skip
def test_execution_field_of_another_kind_is_kept_in_extra_fields(
    fields: dict[str, Any], column: str, kept: dict[str, Any]
) -> None:
    rows = execution_to_rows(execution(**fields), FETCHED_AT_US)
    assert rows.execution[column] is None
    assert json.loads(rows.execution["extra_fields"]) == kept


@pytest.mark.parametrize(
    ("step_fields", "column", "where", "kept"),
    [
        ({"error": {"code": 500}}, "error", "extra_fields", {"error": {"code": 500}}),
        ({"status": 3}, "status", "extra_fields", {"status": 3}),
        ({"started_at": "yesterday"}, "started_at", "extra_fields", {"started_at": "yesterday"}),
        ({"metadata": "m"}, "model", "extra_fields", {"metadata": "m"}),
        ({"metadata": {"model": "m", "params": [1, 2]}}, "model", "metadata_extra",
         {"params": [1, 2]}),
    ],
)  # fmt: skip
def test_step_field_of_another_kind_is_kept(
    step_fields: dict[str, Any], column: str, where: str, kept: dict[str, Any]
) -> None:
    rows = execution_to_rows(
        execution(step_outputs={"s1": step("s1", **step_fields)}), FETCHED_AT_US
    )
    [row] = rows.steps
    assert json.loads(row[where]) == kept
    if column != "model":
        assert row[column] is None
    assert rows.params == [] or step_fields.get("metadata", {}) == {}


def test_a_step_that_is_not_an_object_is_kept_whole() -> None:
    rows = execution_to_rows(execution(step_outputs={"s1": "done"}), FETCHED_AT_US)
    [row] = rows.steps
    assert (row["step_id"], row["status"], json.loads(row["extra_fields"])) == (
        "s1", None, {"step": "done"},
    )  # fmt: skip


def test_step_whose_own_id_disagrees_with_its_key_is_kept_and_flagged() -> None:
    payload = execution(step_outputs={"s1": step("other"), "s2": step("s2")})
    rows = execution_to_rows(payload, FETCHED_AT_US)
    assert [row["step_id"] for row in rows.steps] == ["s1", "s2"]
    assert json.loads(rows.steps[0]["extra_fields"]) == {"step_id": "other"}
    assert rows.steps[1]["extra_fields"] is None
    assert [(p["step_id"], p["param_name"]) for p in rows.params] == [("s1", "a"), ("s2", "a")]


def test_to_json_refuses_nan_so_json_columns_stay_json() -> None:
    with pytest.raises(ValueError):
        to_json({"x": float("nan")})
    with pytest.raises(PayloadError, match="cannot be stored as JSON"):
        execution_to_rows(execution(output=[float("inf")]), FETCHED_AT_US)


def test_nesting_too_deep_for_json_is_a_payload_error() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(PayloadError, match="nested too deeply"):
        execution_to_rows(execution(output=deep), FETCHED_AT_US)


# --- end to end: drift across two loads, huge payloads, timestamp edges --------------------


def test_schema_drift_across_two_loads_replaces_the_row(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0, long_poll=False)
    simulator.put_execution(execution("drift"))
    first = workspace.load(simulator, "drift", extra=["--quiet"])
    assert first.returncode == 0, first.stderr
    drifted = execution(
        "drift",
        workflow_id=7,
        step_outputs={"s1": step("s1", error={"code": 500}, metadata={"params": ["x"]})},
    )
    simulator.put_execution(drifted)
    second = workspace.load(simulator, "drift", extra=["--quiet", "--refresh-all"])
    assert second.returncode == 0, second.stderr
    [(workflow_id, extra)] = workspace.query(
        "select workflow_id, extra_fields from eachlabs.executions"
    )
    assert (workflow_id, json.loads(extra)) == (None, {"workflow_id": 7})
    [(error, step_extra, metadata_extra)] = workspace.query(
        "select error, extra_fields, metadata_extra from eachlabs.step_outputs"
    )
    assert (error, json.loads(step_extra), json.loads(metadata_extra)) == (
        None, {"error": {"code": 500}}, {"params": ["x"]},
    )  # fmt: skip
    assert workspace.query("select * from eachlabs.step_params") == []  # the old param is gone
    assert workspace.query("select * from eachlabs.fetch_errors") == []


def test_a_20_mb_step_and_a_5000_step_execution_load(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0, long_poll=False)
    big_output = "x" * (20 * 1024 * 1024)
    simulator.put_execution(execution("big", step_outputs={"s1": step("s1", output=big_output)}))
    many = {f"s{i}": step(f"s{i}", metadata={"params": {"a": i, "b": str(i)}}) for i in range(5000)}
    simulator.put_execution(execution("many", step_outputs=many))
    result = workspace.load(simulator, "big", "many", extra=["--quiet"])
    assert result.returncode == 0, result.stderr
    assert workspace.query(
        "select execution_id, step_count from eachlabs.executions order by 1"
    ) == [("big", 1), ("many", 5000)]
    [(length,)] = workspace.query(
        "select length(output ->> '$') from eachlabs.step_outputs where execution_id = 'big'"
    )
    assert length == len(big_output)
    assert workspace.query(
        "select count(*), count(distinct step_id), max(step_position) from eachlabs.step_outputs"
        " where execution_id = 'many'"
    ) == [(5000, 5000, 4999)]
    assert workspace.query(
        "select count(*) from eachlabs.step_params where execution_id = 'many'"
    ) == [(10000,)]


def test_timestamps_at_the_edges_load_or_are_kept(simulator_factory, workspace) -> None:
    edges = {
        "min": ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        "max": ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)),
        "leap": ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
        "leap-max": ("9999-12-31T23:59:60Z", None),  # beyond datetime: kept as text
        "year-0": ("0000-01-01T00:00:00Z", None),
    }
    simulator = simulator_factory(executions=0, long_poll=False)
    for name, (text, _) in edges.items():
        simulator.put_execution(execution(name, started_at=text, completed_at=None))
    result = workspace.load(simulator, *edges, extra=["--quiet"])
    assert result.returncode == 0, result.stderr
    found = {
        row[0]: (row[1], row[2])
        for row in workspace.query(
            "select execution_id, started_at, extra_fields from eachlabs.executions"
        )
    }
    for name, (text, expected) in edges.items():
        started_at, extra = found[name]
        assert started_at == expected, name
        if expected is None:
            assert json.loads(extra) == {"started_at": text}, name


# --- the property: rows out, or PayloadError, never anything else ---------------------------

_LONE_SURROGATES = st.sampled_from(["\ud83d", "a\udfff", "\udc00z"])
_TEXT = st.one_of(st.text(max_size=12), _LONE_SURROGATES)
_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_TIMESTAMP = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.isoformat() + "Z"
    ),
    st.sampled_from(
        [
            "9999-12-31T23:59:60Z",
            "9999-12-31T23:59:59.999999-14:00",
            "0001-01-01T00:00:00+14:00",
            "2016-12-31T23:59:60.5Z",
            "0000-01-01T00:00:00Z",
            "2025-12-04T11:48:10.123456789Z",
            "2025-13-01T00:00:00Z",
            "",
            "T",
            "nope",
        ]
    ),  # fmt: skip
    _JSON,
)


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"d": value}
    return value


def _sometimes(strategy: st.SearchStrategy[Any], wild: st.SearchStrategy[Any] = _JSON) -> Any:
    """The expected kind most of the time, anything JSON can hold otherwise."""
    return st.one_of(strategy, strategy, strategy, wild)


_METADATA = st.fixed_dictionaries(
    {},
    optional={
        "model": _sometimes(_TEXT),
        "version": _sometimes(_TEXT),
        "type": _sometimes(st.sampled_from(["http", "python"])),
        "params": _sometimes(st.dictionaries(st.text(max_size=6), _JSON, max_size=4)),
        "prediction_id": _sometimes(_TEXT),
        "processed_at": _TIMESTAMP,
        "elapsed_seconds": _sometimes(st.floats()),
        "execution_time": _sometimes(st.integers()),
        "method": _sometimes(_TEXT),
        "url": _sometimes(_TEXT),
        "extra": _JSON,
    },
)
_STEP = st.fixed_dictionaries(
    {},
    optional={
        "step_id": _sometimes(_TEXT),
        "status": _sometimes(st.sampled_from(["queued", "running", "completed", "failed"])),
        "started_at": _TIMESTAMP,
        "completed_at": _TIMESTAMP,
        "output": _JSON,
        "primary": _JSON,
        "input": _JSON,
        "metadata": _sometimes(_METADATA),
        "error": _sometimes(_TEXT),
        "error_cause": _sometimes(_TEXT),
        "surprise": _JSON,
    },
)
_PAYLOAD = st.fixed_dictionaries(
    {"execution_id": _sometimes(st.text(min_size=1, max_size=10))},
    optional={
        "workflow_id": _sometimes(_TEXT),
        "bulk_id": _sometimes(_TEXT),
        "status": _sometimes(st.sampled_from(["running", "completed", "failed", "cancelled"])),
        "started_at": _TIMESTAMP,
        "completed_at": _TIMESTAMP,
        "inputs": _JSON,
        "output": st.one_of(_JSON, st.integers(0, 1).map(lambda _: _deep(3000))),
        "error": _sometimes(_TEXT),
        "error_cause": _sometimes(_TEXT),
        "step_outputs": _sometimes(
            st.dictionaries(st.text(max_size=6), _sometimes(_STEP), max_size=4)
        ),
        "new_field": _JSON,
    },
)


def _expected_params(step_map: Any) -> int:
    count = 0
    for step_value in step_map.values() if isinstance(step_map, dict) else ():
        metadata = step_value.get("metadata") if isinstance(step_value, dict) else None
        params = metadata.get("params") if isinstance(metadata, dict) else None
        count += len(params) if isinstance(params, dict) else 0
    return count


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PAYLOAD)
def test_normaliser_gives_rows_or_a_payload_error(payload: dict[str, Any]) -> None:
    try:
        rows = execution_to_rows(payload, FETCHED_AT_US)
    except PayloadError:
        return  # the one error type the loader records per execution
    step_map = payload.get("step_outputs")
    expected_steps = len(step_map) if isinstance(step_map, dict) else 0
    assert len(rows.steps) == expected_steps
    assert len(rows.params) == _expected_params(step_map)
    assert [row["step_position"] for row in rows.steps] == list(range(expected_steps))
    for table, table_rows in (
        ("executions", [rows.execution]),
        ("step_outputs", rows.steps),
        ("step_params", rows.params),
    ):
        for row in table_rows:
            for column in JSON_COLUMNS[table]:
                if row[column] is not None:
                    strict_json(row[column])  # JSON columns hold strict JSON, never NaN
    batch = ExecutionBatch()
    batch.add(rows)
    tables = batch.to_arrow()  # the columnar conversion never fails either
    assert tables["executions"].num_rows == 1
    assert tables["step_outputs"].num_rows == max(1, expected_steps)

"""Unit tests of the normaliser over every shape the published spec allows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from payloads import normaliser_execution as execution
from payloads import normaliser_step as step

from pipelines.eachlabs.errors import PayloadError
from pipelines.eachlabs.normalise import (
    EXECUTIONS_SCHEMA,
    STEP_OUTPUTS_SCHEMA,
    STEP_PARAMS_SCHEMA,
    TOMBSTONE_COLUMN,
    json_type,
    parse_timestamp_us,
    payloads_to_tables,
)
from pipelines.eachlabs.tables import SUMMARY_TYPES

FETCHED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def rows(payloads: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return payloads_to_tables(payloads, FETCHED_AT)[table].to_pylist()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_documented_example_execution_row() -> None:
    [row] = rows([execution(bulk_id="b-1", cost=0.25)], "executions")
    assert row == {
        "execution_id": "exec-1",
        "workflow_id": "wf-1",
        "bulk_id": "b-1",
        "status": "completed",
        "started_at": utc(2025, 12, 4, 11, 48, 10),
        "completed_at": utc(2025, 12, 4, 11, 50, 53),
        "inputs": '{"prompt":"A mountain"}',
        "output": '"done"',
        "error": None,
        "error_cause": None,
        "step_count": 0,
        "extra_fields": '{"cost":0.25}',
        "fetched_at": FETCHED_AT,
        "latency_seconds": 163.0,
        "started_date": date(2025, 12, 4),
        # Loaded by ID: no listing summary (a detail payload's own `cost` is an unknown field,
        # kept in extra_fields, not the summary's cost).
        **dict.fromkeys(SUMMARY_TYPES),
    }


def test_execution_latency_and_utc_day_are_derived() -> None:
    crossing = execution(started_at="2026-01-01T02:30:00.25+03:00",
                         completed_at="2025-12-31T23:30:01Z")  # fmt: skip
    running = execution(execution_id="exec-2", status="running", completed_at=None)
    unstarted = execution(execution_id="exec-3", started_at=None)
    derived = [(r["latency_seconds"], r["started_date"])
               for r in rows([crossing, running, unstarted], "executions")]  # fmt: skip
    assert derived == [(0.75, date(2025, 12, 31)), (None, date(2025, 12, 4)), (None, None)]


def test_steps_carry_their_executions_workflow_status_start_and_utc_day() -> None:
    started = step("a", started_at="2025-12-06T03:00:00+05:30")  # 2025-12-05 21:30 UTC
    queued = step("b", status="queued")
    del queued["started_at"], queued["completed_at"]
    payload = execution(status="running", started_at="2025-12-03T23:59:59.999999-00:30",
                        step_outputs={"a": started, "b": queued})  # fmt: skip
    carried = [
        (r["workflow_id"], r["execution_status"], r["execution_started_at"], r["started_date"])
        for r in rows([payload], "step_outputs")
    ]
    execution_start = utc(2025, 12, 4, 0, 29, 59, 999999)
    assert carried == [
        ("wf-1", "running", execution_start, date(2025, 12, 5)),
        ("wf-1", "running", execution_start, date(2025, 12, 4)),  # never started: the execution's
    ]
    nowhere = execution(started_at=None, step_outputs={"b": queued})
    [row] = rows([nowhere], "step_outputs")
    assert (row["execution_started_at"], row["started_date"]) == (None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-12-04T11:48:10Z", utc(2025, 12, 4, 11, 48, 10)),
        ("2025-12-04T14:48:10+03:00", utc(2025, 12, 4, 11, 48, 10)),
        ("2025-12-04T06:18:10.5-05:30", utc(2025, 12, 4, 11, 48, 10, 500000)),
        ("2025-12-04T11:48:10.123456789Z", utc(2025, 12, 4, 11, 48, 10, 123456)),
        ("2025-12-04t11:48:10z", utc(2025, 12, 4, 11, 48, 10)),
        ("2025-12-04T11:48:10", utc(2025, 12, 4, 11, 48, 10)),  # no offset: taken as UTC
        ("2026-01-01T02:30:00+03:00", utc(2025, 12, 31, 23, 30)),  # crosses a UTC day
        ("2016-12-31T23:59:60Z", utc(2017, 1, 1)),  # a leap second, as RFC 3339 allows
        ("2016-12-31T23:59:60.5Z", utc(2017, 1, 1, 0, 0, 0, 500000)),
    ],
)
def test_timestamps_become_utc(text: str, expected: datetime) -> None:
    [row] = rows([execution(started_at=text)], "executions")
    assert row["started_at"] == expected


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01T00:00:00Z", 1733312890, ["x"]])
def test_bad_timestamp_is_a_payload_error(bad: Any) -> None:
    with pytest.raises(PayloadError, match="started_at"):
        parse_timestamp_us(bad, "started_at")


def test_running_execution_omits_completion_and_output() -> None:
    payload = execution(status="running", step_outputs={"s": step("s", status="running")})
    del payload["completed_at"], payload["output"]
    payload["step_outputs"]["s"].pop("completed_at")
    [row] = rows([payload], "executions")
    [step_row] = rows([payload], "step_outputs")
    assert (row["status"], row["completed_at"], row["output"]) == ("running", None, None)
    assert (step_row["status"], step_row["completed_at"], step_row["latency_seconds"]) == (
        "running",
        None,
        None,
    )


def test_failed_execution_keeps_errors() -> None:
    failing = step("s", status="failed", error="ModelTimeout", error_cause="timed out after 30s")
    payload = execution(
        status="failed", error="ExecutionFailed", error_cause="Step 's' failed", output=None
    )
    payload["step_outputs"] = {"s": failing, "t": step("t", status="cancelled")}
    [row] = rows([payload], "executions")
    steps = rows([payload], "step_outputs")
    assert (row["error"], row["error_cause"], row["output"]) == (
        "ExecutionFailed",
        "Step 's' failed",
        None,
    )
    assert [(s["step_id"], s["status"], s["error"], s["error_cause"]) for s in steps] == [
        ("s", "failed", "ModelTimeout", "timed out after 30s"),
        ("t", "cancelled", None, None),
    ]


@pytest.mark.parametrize(
    ("output", "primary"),
    [
        ("Once upon a time", "Once upon a time"),
        (["https://x/1.png", "https://x/2.png"], "https://x/1.png"),
        ({"image_url": "https://x/1.png", "seconds": 2.45}, {"image_url": "https://x/1.png"}),
        (42, 42),
        (3.5, 3.5),
        (True, False),
    ],
)
def test_step_output_and_primary_round_trip_as_json(output: Any, primary: Any) -> None:
    payload = execution(step_outputs={"s": step("s", output=output, primary=primary)})
    [row] = rows([payload], "step_outputs")
    assert json.loads(row["output"]) == output
    assert json.loads(row["primary_output"]) == primary


def test_model_step_columns() -> None:
    metadata = {
        "model": "flux-1-1-pro",
        "version": "1.1.0",
        "params": {"prompt": "x"},
        "prediction_id": "6yxk",
        "processed_at": "2025-12-04T11:48:39+00:00",
        "queue": "gpu-a",
    }
    payload = execution(
        step_outputs={"s": step("s", metadata=metadata, input={"model": "flux-1-1-pro"})}
    )
    [row] = rows([payload], "step_outputs")
    assert {k: row[k] for k in ("step_type", "model", "model_version", "prediction_id")} == {
        "step_type": "model",
        "model": "flux-1-1-pro",
        "model_version": "1.1.0",
        "prediction_id": "6yxk",
    }
    assert row["processed_at"] == utc(2025, 12, 4, 11, 48, 39)
    assert row["latency_seconds"] == 29.0
    assert json.loads(row["metadata_extra"]) == {"queue": "gpu-a"}
    assert json.loads(row["input"]) == {"model": "flux-1-1-pro"}


def test_http_and_python_steps_have_a_type_and_no_model() -> None:
    http = {
        "type": "http",
        "method": "POST",
        "url": "https://api.example.com/hook",
        "elapsed_seconds": 2.45,
    }
    python = {"type": "python", "execution_time": 0.123, "processed_at": "2025-12-04T11:48:39Z"}
    payload = execution(
        step_outputs={"h": step("h", metadata=http), "p": step("p", metadata=python)}
    )
    h, p = rows([payload], "step_outputs")
    assert (h["step_type"], h["model"], h["http_method"], h["http_url"], h["elapsed_seconds"]) == (
        "http",
        None,
        "POST",
        "https://api.example.com/hook",
        2.45,
    )
    assert (p["step_type"], p["model"], p["execution_time_seconds"]) == ("python", None, 0.123)
    assert h["metadata_extra"] is None and p["metadata_extra"] is None


def test_step_without_metadata_has_null_type() -> None:
    bare = {"step_id": "s", "status": "queued"}
    [row] = rows([execution(step_outputs={"s": bare})], "step_outputs")
    assert (row["step_type"], row["model"], row["started_at"], row["latency_seconds"]) == (
        None,
        None,
        None,
        None,
    )
    assert rows([execution(step_outputs={"s": bare})], "step_params") == [
        {
            "execution_id": "exec-1",
            "step_id": "",
            "param_name": "",
            "param_value": None,
            "param_type": None,
            TOMBSTONE_COLUMN: True,
        }
    ]


PARAMS = {
    "text": "hello",
    "unicode": "café ☕ 日本語",
    "count": 512,
    "big": 2**70,
    "ratio": 0.1,
    "flag": True,
    "nothing": None,
    "list": [1, "two", None],
    "nested": {"a": {"b": [1.5]}},
}


def test_params_of_every_json_type_round_trip() -> None:
    payload = execution(step_outputs={"s": step("s", metadata={"model": "m", "params": PARAMS})})
    params = rows([payload], "step_params")
    assert [p["param_name"] for p in params] == list(PARAMS)
    for param in params:
        assert json.loads(param["param_value"]) == PARAMS[param["param_name"]]
        assert param[TOMBSTONE_COLUMN] is None
    assert {p["param_name"]: p["param_type"] for p in params} == {
        "text": "string",
        "unicode": "string",
        "count": "integer",
        "big": "integer",
        "ratio": "number",
        "flag": "boolean",
        "nothing": "null",
        "list": "array",
        "nested": "object",
    }
    assert {p["param_name"]: p["param_value"] for p in params}["unicode"] == '"café ☕ 日本語"'


def test_step_positions_follow_the_api_map_order() -> None:
    payload = execution(step_outputs={"b": step("b"), "a": step("a"), "c": step("c")})
    assert [(r["step_id"], r["step_position"]) for r in rows([payload], "step_outputs")] == [
        ("b", 0),
        ("a", 1),
        ("c", 2),
    ]


def test_execution_without_steps_gets_tombstones() -> None:
    tables = payloads_to_tables([execution()], FETCHED_AT)
    [step_row] = tables["step_outputs"].to_pylist()
    assert (step_row["execution_id"], step_row["step_id"], step_row[TOMBSTONE_COLUMN]) == (
        "exec-1",
        "",
        True,
    )
    assert tables["step_params"].num_rows == 1


def test_clock_skew_gives_negative_latency() -> None:
    skewed = step("s", started_at="2025-12-04T11:48:10Z", completed_at="2025-12-04T11:48:09.5Z")
    [row] = rows([execution(step_outputs={"s": skewed})], "step_outputs")
    assert row["latency_seconds"] == -0.5


def test_unexpected_metadata_kinds_are_kept_not_dropped() -> None:
    metadata = {"model": "m", "elapsed_seconds": "2.4s", "processed_at": "soon"}
    [row] = rows([execution(step_outputs={"s": step("s", metadata=metadata)})], "step_outputs")
    assert row["elapsed_seconds"] is None and row["processed_at"] is None
    assert json.loads(row["metadata_extra"]) == {"elapsed_seconds": "2.4s", "processed_at": "soon"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"workflow_id": "w"}, "execution_id"),
        (execution(output={"x": float("nan")}), "cannot be stored as JSON"),
        # Fields of another kind are kept, not refused: tests/test_faults_payloads.py.
    ],
)
def test_unusable_payloads_raise(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        payloads_to_tables([payload], FETCHED_AT)


def test_tables_have_the_declared_schemas() -> None:
    payload = execution(step_outputs={"s": step("s", metadata={"model": "m", "params": PARAMS})})
    tables = payloads_to_tables([payload], FETCHED_AT)
    assert tables["executions"].schema == EXECUTIONS_SCHEMA
    assert tables["step_outputs"].schema == STEP_OUTPUTS_SCHEMA
    assert tables["step_params"].schema == STEP_PARAMS_SCHEMA


@pytest.mark.parametrize(
    ("value", "name"),
    [(None, "null"), (True, "boolean"), (1, "integer"), (1.0, "number"), ("", "string"),
     ([], "array"), ({}, "object")],
)  # fmt: skip
def test_json_type_names(value: Any, name: str) -> None:
    assert json_type(value) == name


def test_minimal_execution_with_only_required_fields() -> None:
    payload = {"execution_id": "e", "workflow_id": "w", "status": "cancelled"}
    [row] = rows([payload], "executions")
    assert {k: v for k, v in row.items() if v is not None} == {
        "execution_id": "e",
        "workflow_id": "w",
        "status": "cancelled",
        "step_count": 0,
        "fetched_at": FETCHED_AT,
    }


@pytest.mark.parametrize(
    ("metadata", "step_type", "model"),
    [
        ({}, None, None),
        ({"model": ""}, None, None),
        ({"model": "", "type": "http"}, "http", None),
        ({"model": 7}, None, None),
        ({"type": "python", "model": None}, "python", None),
        ({"model": "veo-3", "type": "http"}, "model", "veo-3"),
    ],
)
def test_step_type_rule(metadata: dict[str, Any], step_type: str | None, model: str | None) -> None:
    [row] = rows([execution(step_outputs={"s": step("s", metadata=metadata)})], "step_outputs")
    assert (row["step_type"], row["model"]) == (step_type, model)


def test_http_step_params_become_rows() -> None:
    metadata = {"type": "http", "method": "GET", "params": {"q": "café", "page": 2}}
    payload = execution(step_outputs={"h": step("h", metadata=metadata)})
    assert [
        (p["step_id"], p["param_name"], p["param_value"], p["param_type"])
        for p in rows([payload], "step_params")
    ] == [("h", "q", '"café"', "string"), ("h", "page", "2", "integer")]


@pytest.mark.parametrize(
    "where",
    [
        {"output": {"text": "smile \ud83d"}},
        {"step_outputs": {"s": step("s", output="smile \ud83d")}},
        {"step_outputs": {"s": step("s", metadata={"model": "m", "params": {"p": "\udc00"}})}},
        {"unknown_field": ["\ud83d"]},
    ],
)
def test_lone_surrogate_in_a_json_value_is_a_payload_error(where: dict[str, Any]) -> None:
    """Its escape is refused by DuckDB's JSON type (and PostgreSQL's jsonb): stored, it would
    fail the whole load (tests/test_from_files.py loads one), so the execution is recorded."""
    with pytest.raises(PayloadError, match=r"lone surrogate"):
        payloads_to_tables([execution(**where)], FETCHED_AT)


def test_lone_surrogate_in_plain_text_is_a_payload_error() -> None:
    payload = execution(status="failed", error="Boom", error_cause="cut \ud83d")
    with pytest.raises(PayloadError, match=r"executions.error_cause holds text that is not valid"):
        payloads_to_tables([payload], FETCHED_AT)


def test_number_beyond_double_range_is_kept_in_metadata_extra() -> None:
    metadata = {"type": "http", "elapsed_seconds": 10**400}
    [row] = rows([execution(step_outputs={"s": step("s", metadata=metadata)})], "step_outputs")
    assert row["elapsed_seconds"] is None
    assert json.loads(row["metadata_extra"]) == {"elapsed_seconds": 10**400}


def test_an_api_key_field_in_a_payload_is_not_stored() -> None:
    """The list endpoint's `api_key` may be a key; a detail payload carrying it keeps only
    that it was there."""
    [row] = rows([execution(api_key="sk-live-DISTINCTIVE-777", cost=1)], "executions")
    assert json.loads(row["extra_fields"]) == {"api_key": "[redacted]", "cost": 1}

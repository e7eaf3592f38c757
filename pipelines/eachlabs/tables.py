"""Each table's shape in one place: its Arrow schema, keys, merge disposition and JSON columns.

`normalise` builds Arrow tables of these schemas; the source hands them to dlt with the hints
of `TABLE_HINTS`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

#: The summary columns of `executions`, from the list endpoint (see docs/tables.md).
SUMMARY_TYPES: dict[str, pa.DataType] = {
    "flow_name": pa.string(),
    "version_id": pa.string(),
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "deleted_at": TIMESTAMP,
    "dry_run": pa.bool_(),
    "cost": pa.string(),
    "cost_total": pa.float64(),
    "triggered_by": pa.string(),
}

#: Name of the hard-delete marker column (see the tombstone rows of `normalise.ExecutionBatch`).
TOMBSTONE_COLUMN = "_tombstone"


def _field(name: str, type_: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


EXECUTIONS_SCHEMA = pa.schema(
    [
        _field("execution_id", pa.string(), nullable=False),
        _field("workflow_id", pa.string()),
        _field("bulk_id", pa.string()),
        _field("status", pa.string()),
        _field("started_at", TIMESTAMP),
        _field("completed_at", TIMESTAMP),
        _field("inputs", pa.string()),
        _field("output", pa.string()),
        _field("error", pa.string()),
        _field("error_cause", pa.string()),
        _field("step_count", pa.int64()),
        _field("extra_fields", pa.string()),
        _field("fetched_at", TIMESTAMP),
        # Derived here once rather than by the views on every read (see `_derived_times`).
        _field("latency_seconds", pa.float64()),
        _field("started_date", pa.date32()),
        # From the list endpoint's summary (`summaries.summary_columns`); null for executions
        # never listed, and carried over from the stored row when one is loaded by ID again.
        *(_field(name, type_) for name, type_ in SUMMARY_TYPES.items()),
    ]
)

STEP_OUTPUTS_SCHEMA = pa.schema(
    [
        _field("execution_id", pa.string(), nullable=False),
        _field("step_id", pa.string(), nullable=False),
        _field("step_position", pa.int64()),
        _field("status", pa.string()),
        _field("step_type", pa.string()),
        _field("model", pa.string()),
        _field("model_version", pa.string()),
        _field("started_at", TIMESTAMP),
        _field("completed_at", TIMESTAMP),
        _field("latency_seconds", pa.float64()),
        _field("output", pa.string()),
        _field("primary_output", pa.string()),
        _field("input", pa.string()),
        _field("error", pa.string()),
        _field("error_cause", pa.string()),
        _field("prediction_id", pa.string()),
        _field("processed_at", TIMESTAMP),
        _field("elapsed_seconds", pa.float64()),
        _field("execution_time_seconds", pa.float64()),
        _field("http_method", pa.string()),
        _field("http_url", pa.string()),
        _field("metadata_extra", pa.string()),
        _field("extra_fields", pa.string()),
        # Copied from the step's execution so that the step-level views need no join (see
        # `_carry_execution_columns`); always rewritten together with the execution.
        _field("workflow_id", pa.string()),
        _field("execution_status", pa.string()),
        _field("execution_started_at", TIMESTAMP),
        _field("started_date", pa.date32()),
        _field(TOMBSTONE_COLUMN, pa.bool_()),
        # The execution's summary flags, carried like the columns above (null: unknown).
        _field("execution_dry_run", pa.bool_()),
        _field("execution_deleted_at", TIMESTAMP),
    ]
)

STEP_PARAMS_SCHEMA = pa.schema(
    [
        _field("execution_id", pa.string(), nullable=False),
        _field("step_id", pa.string(), nullable=False),
        _field("param_name", pa.string(), nullable=False),
        _field("param_value", pa.string()),
        _field("param_type", pa.string()),
        _field(TOMBSTONE_COLUMN, pa.bool_()),
    ]
)

FETCH_ERRORS_SCHEMA = pa.schema(
    [
        # Null on a row about a workflow's listing (then `workflow_id` names the workflow).
        _field("execution_id", pa.string()),
        _field("http_status", pa.int64()),
        _field("error", pa.string()),
        _field("attempts", pa.int64()),
        _field("last_attempt_at", TIMESTAMP),
        _field("workflow_id", pa.string()),
    ]
)

#: Columns holding JSON text; dlt is told to create them as JSON columns.
JSON_COLUMNS = {
    "executions": ("inputs", "output", "extra_fields", "cost"),
    "step_outputs": ("output", "primary_output", "input", "metadata_extra", "extra_fields"),
    "step_params": ("param_value",),
}


#: Each table's schema, in the order the README lists them.
SCHEMAS: dict[str, pa.Schema] = {
    "executions": EXECUTIONS_SCHEMA,
    "step_outputs": STEP_OUTPUTS_SCHEMA,
    "step_params": STEP_PARAMS_SCHEMA,
    "fetch_errors": FETCH_ERRORS_SCHEMA,
}


def _column_hints(table: str, key_columns: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    hints: dict[str, dict[str, Any]] = {c: {"data_type": "json"} for c in JSON_COLUMNS[table]}
    for column in key_columns:
        hints[column] = {"nullable": False}
    return hints


_MERGE = {"disposition": "merge", "strategy": "delete-insert"}
_TOMBSTONE_HINT = {TOMBSTONE_COLUMN: {"data_type": "bool", "hard_delete": True}}

#: dlt hints of each execution table. step_outputs and step_params merge on execution_id:
#: loading an execution deletes all its previous rows before inserting the new ones, so steps
#: or params that disappeared upstream disappear here too (tombstone rows cover executions
#: with none).
TABLE_HINTS: dict[str, dict[str, Any]] = {
    "executions": {
        "write_disposition": _MERGE,
        "primary_key": "execution_id",
        "columns": _column_hints("executions"),
    },
    "step_outputs": {
        "write_disposition": _MERGE,
        "merge_key": "execution_id",
        "columns": {
            **_column_hints("step_outputs", ("execution_id", "step_id")),
            **_TOMBSTONE_HINT,
        },
    },
    "step_params": {
        "write_disposition": _MERGE,
        "merge_key": "execution_id",
        "columns": {
            **_column_hints("step_params", ("execution_id", "step_id", "param_name")),
            **_TOMBSTONE_HINT,
        },
    },
}

#: fetch_errors holds the latest run's errors only: replaced by a run's first chunk (later
#: chunks of the same run append, see `pipelines.load`).
FETCH_ERRORS_HINTS: dict[str, Any] = {"write_disposition": "replace"}

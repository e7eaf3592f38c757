"""Turn `ExecutionDetails` payloads into columnar batches (Arrow tables), one per table.

Each payload is converted completely before any of it is appended, so a bad payload raises
`PayloadError` and leaves the batch untouched. Free-form values (inputs, outputs, params)
are kept as lossless JSON text; timestamps become UTC microseconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipelines.eachlabs.errors import PayloadError
from pipelines.eachlabs.tables import (
    EXECUTIONS_SCHEMA,
    FETCH_ERRORS_SCHEMA,
    JSON_COLUMNS,
    STEP_OUTPUTS_SCHEMA,
    STEP_PARAMS_SCHEMA,
    SUMMARY_TYPES,
    TIMESTAMP,
    TOMBSTONE_COLUMN,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_PER_DAY = 86_400_000_000
_LEAP_SECOND = re.compile(r"(?<=T\d\d:\d\d):60(?=[.Z+-]|$)")

KNOWN_EXECUTION_FIELDS = frozenset(
    {
        "execution_id", "workflow_id", "bulk_id", "status", "started_at", "completed_at",
        "inputs", "step_outputs", "output", "error", "error_cause",
    }
)  # fmt: skip
KNOWN_STEP_FIELDS = frozenset(
    {
        "step_id", "status", "started_at", "completed_at", "output", "primary", "input",
        "metadata", "error", "error_cause",
    }
)  # fmt: skip
#: Fields that may hold a secret (the list endpoint's `api_key` "user/API key identifier"):
#: should a payload carry one, `extra_fields` keeps only that it was there.
SECRET_FIELDS = frozenset({"api_key"})
REDACTED = "[redacted]"
#: metadata keys that get columns of their own; any other key goes to `metadata_extra`.
KNOWN_METADATA_FIELDS = frozenset(
    {
        "model", "version", "type", "params", "prediction_id", "processed_at",
        "elapsed_seconds", "execution_time", "method", "url",
    }
)  # fmt: skip

#: Text columns that are not JSON: these must hold valid Unicode as they are.
_PLAIN_TEXT_COLUMNS = {
    table: tuple(
        f.name for f in schema if f.type == pa.string() and f.name not in JSON_COLUMNS[table]
    )
    for table, schema in (
        ("executions", EXECUTIONS_SCHEMA),
        ("step_outputs", STEP_OUTPUTS_SCHEMA),
        ("step_params", STEP_PARAMS_SCHEMA),
    )
}

_NO_SUMMARY: tuple[Any, ...] = (None,) * len(SUMMARY_TYPES)

_ENCODE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def to_json(value: Any) -> str:
    """Compact JSON text that round-trips the value exactly (big ints, floats, Unicode).

    Raises:
        ValueError: a string holds a lone surrogate (e.g. an emoji cut in half). UTF-8 cannot
            hold it, and its `\\udXXX` escape is refused by DuckDB's and PostgreSQL's JSON
            types alike: stored, it would fail the whole load, so the execution is recorded
            instead (NaN and Infinity are refused the same way).
    """
    text = _ENCODE_JSON(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "a string holds a lone surrogate (half of an emoji?), which no JSON column "
                "(DuckDB's or PostgreSQL's) accepts"
            ) from None
    return text


def _json_or_null(value: Any) -> str | None:
    return None if value is None else to_json(value)


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def parse_timestamp_us(value: Any, what: str) -> int | None:
    """Microseconds since the epoch (UTC) of an RFC 3339 timestamp; None stays None.

    Offsets such as `+03:00` are applied, digits beyond microseconds are truncated, and a
    timestamp without an offset is taken as UTC.

    Raises:
        PayloadError: not a string, not RFC 3339, or beyond what a datetime can hold (e.g.
            the leap second `9999-12-31T23:59:60Z`).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{what} is not a timestamp string: {value!r:.60}")
    text = value.upper()
    leap_second = _LEAP_SECOND.search(text)
    if leap_second:  # RFC 3339 allows :60; Python does not. Count it as the next second.
        text = text[: leap_second.start()] + ":59" + text[leap_second.end() :]
    try:
        parsed = datetime.fromisoformat(text)
        if leap_second:
            parsed += timedelta(seconds=1)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return (parsed - _EPOCH) // _MICROSECOND
    except (ValueError, OverflowError):
        raise PayloadError(f"{what} is not an RFC 3339 timestamp: {value[:60]!r}") from None


class _Drift:
    """Known fields whose value is of another kind than expected (type drift).

    Such a value is kept losslessly in the row's `extra_fields` (its column stays null)
    instead of rejecting the whole execution, which would block it on every run.
    """

    def __init__(self, source: Mapping[str, Any]) -> None:
        self.source = source
        self.kept: dict[str, Any] = {}

    def text(self, key: str) -> str | None:
        value = self.source.get(key)
        if value is None or isinstance(value, str):
            return value
        self.kept[key] = value
        return None

    def timestamp(self, key: str) -> int | None:
        try:
            return parse_timestamp_us(self.source.get(key), key)
        except PayloadError:
            self.kept[key] = self.source.get(key)
            return None

    def extra_fields(self, known: frozenset[str]) -> str | None:
        extra = {
            key: REDACTED if key in SECRET_FIELDS else value
            for key, value in self.source.items()
            if key not in known
        }
        extra.update(self.kept)
        return to_json(extra) if extra else None


def number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any double; kept in metadata_extra instead
        return None


@dataclass
class _Columns:
    """Column-wise buffers of one table."""

    schema: pa.Schema
    data: dict[str, list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.data = {name: [] for name in self.schema.names}

    def extend(self, rows: list[dict[str, Any]]) -> None:
        for name, column in self.data.items():
            column.extend(row.get(name) for row in rows)

    def __len__(self) -> int:
        return len(self.data[self.schema.names[0]])

    def to_arrow(self) -> pa.Table:
        arrays = []
        for schema_field in self.schema:
            values = self.data[schema_field.name]
            if schema_field.type == TIMESTAMP:
                arrays.append(pa.array(values, pa.int64()).cast(TIMESTAMP))
            elif schema_field.type == pa.date32():  # days since the epoch
                arrays.append(pa.array(values, pa.int32()).cast(pa.date32()))
            else:
                arrays.append(pa.array(values, schema_field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


@dataclass
class ExecutionRows:
    """All rows of one execution, ready to append to a batch."""

    execution: dict[str, Any]
    steps: list[dict[str, Any]]
    params: list[dict[str, Any]]


def execution_to_rows(
    payload: Mapping[str, Any],
    fetched_at_us: int,
    summary: Sequence[Any] | None = None,
) -> ExecutionRows:
    """Convert one `ExecutionDetails` payload into its rows of the three tables.

    `summary` holds the values of the execution's summary columns in `SUMMARY_TYPES` order
    (`summaries.summary_values`), which the detail payload does not carry; None leaves them
    null.

    A known field of an unexpected kind (a number for `workflow_id`, an object for a step's
    `error`, a list for `params`, a timestamp out of range) is kept in `extra_fields` (or
    `metadata_extra`) with a null column: the execution still loads.

    Raises:
        PayloadError: the payload lacks its ID, holds text UTF-8 cannot store, or cannot be
            stored as JSON (NaN, nesting too deep). Never any other exception.
    """
    execution_id = payload.get("execution_id")
    if not isinstance(execution_id, str) or not execution_id:
        raise PayloadError("payload has no execution_id string")
    try:
        rows = _execution_rows(execution_id, payload, fetched_at_us, summary or _NO_SUMMARY)
    except RecursionError:
        raise PayloadError("a value is nested too deeply to store as JSON") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # allow_nan=False: NaN/Infinity are not JSON and would poison a JSON column.
        raise PayloadError(f"a value cannot be stored as JSON: {str(exc)[:200]}") from None
    _check_text_is_storable(rows)
    return rows


def _execution_rows(
    execution_id: str,
    payload: Mapping[str, Any],
    fetched_at_us: int,
    summary: Sequence[Any],
) -> ExecutionRows:
    drift = _Drift(payload)
    step_map = payload.get("step_outputs")
    if step_map is not None and not isinstance(step_map, dict):
        drift.kept["step_outputs"] = step_map
        step_map = None
    execution = {
        "execution_id": execution_id,
        "workflow_id": drift.text("workflow_id"),
        "bulk_id": drift.text("bulk_id"),
        "status": drift.text("status"),
        "started_at": drift.timestamp("started_at"),
        "completed_at": drift.timestamp("completed_at"),
        "inputs": _json_or_null(payload.get("inputs")),
        "output": _json_or_null(payload.get("output")),
        "error": drift.text("error"),
        "error_cause": drift.text("error_cause"),
        "step_count": None if "step_outputs" in drift.kept else len(step_map or {}),
        "fetched_at": fetched_at_us,
    }
    steps, params = [], []
    for position, (step_id, step) in enumerate((step_map or {}).items()):
        step_row, step_params = _step_to_rows(execution_id, step_id, position, step)
        steps.append(step_row)
        params.extend(step_params)
    execution["extra_fields"] = drift.extra_fields(KNOWN_EXECUTION_FIELDS)
    execution.update(_derived_times(execution["started_at"], execution["completed_at"]))
    execution.update(zip(SUMMARY_TYPES, summary, strict=True))
    _carry_execution_columns(execution, steps)
    return ExecutionRows(execution, steps, params)


def _derived_times(started_us: int | None, completed_us: int | None) -> dict[str, Any]:
    """`latency_seconds` (completed - started, null unless both) and the UTC `started_date`."""
    both = started_us is not None and completed_us is not None
    return {
        "latency_seconds": (completed_us - started_us) / 1_000_000 if both else None,
        "started_date": None if started_us is None else started_us // _MICROSECONDS_PER_DAY,
    }


def _carry_execution_columns(execution: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    """Copy the execution's workflow, status, start and summary flags (dry run, soft
    deletion) onto its step rows, with the UTC day.

    The step-level views group by these; carrying them on `step_outputs` saves joining every
    step to its execution (and a time-zone conversion per step) on every read. A step row is
    always replaced together with its execution, so the copies never go stale.
    `started_date` is the UTC date of the step's start, else of the execution's start.
    """
    for row in steps:
        started_us = row["started_at"]
        if started_us is None:
            started_us = execution["started_at"]
        row["workflow_id"] = execution["workflow_id"]
        row["execution_status"] = execution["status"]
        row["execution_started_at"] = execution["started_at"]
        row["execution_dry_run"] = execution["dry_run"]
        row["execution_deleted_at"] = execution["deleted_at"]
        row["started_date"] = None if started_us is None else started_us // _MICROSECONDS_PER_DAY


def _check_text_is_storable(rows: ExecutionRows) -> None:
    """Raise PayloadError for text that UTF-8 cannot hold (a lone surrogate), naming where.

    Checked per execution so that one bad execution is reported alone instead of failing
    the conversion of its whole batch. JSON columns are checked by `to_json`.
    """
    for table, table_rows in (
        ("executions", [rows.execution]),
        ("step_outputs", rows.steps),
        ("step_params", rows.params),
    ):
        for row in table_rows:
            for column in _PLAIN_TEXT_COLUMNS[table]:
                value = row[column]
                if value is None or value.isascii():
                    continue
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise PayloadError(
                        f"{table}.{column} holds text that is not valid Unicode "
                        f"(a lone surrogate): {value[:60]!r}",
                    ) from None


def _step_to_rows(
    execution_id: str, step_id: str, position: int, step: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(step, dict):
        step = {"step": step}  # not an object at all: kept whole in extra_fields
    drift = _Drift(step)
    own_step_id = step.get("step_id")
    if own_step_id is not None and own_step_id != step_id:
        # The map key is the step's ID; a disagreeing inner step_id is kept to be seen.
        drift.kept["step_id"] = own_step_id
    metadata = step.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        drift.kept["metadata"] = metadata
        metadata = None
    metadata = metadata or {}
    model = metadata.get("model")
    step_type = "model" if isinstance(model, str) and model else metadata.get("type")
    started_us = drift.timestamp("started_at")
    completed_us = drift.timestamp("completed_at")
    latency = None
    if started_us is not None and completed_us is not None:
        latency = (completed_us - started_us) / 1_000_000

    metadata_extra = {k: v for k, v in metadata.items() if k not in KNOWN_METADATA_FIELDS}
    # Known metadata keys of an unexpected kind are kept in metadata_extra, never dropped.
    processed_at = None
    try:
        processed_at = parse_timestamp_us(metadata.get("processed_at"), "processed_at")
    except PayloadError:
        metadata_extra["processed_at"] = metadata.get("processed_at")
    for key in ("elapsed_seconds", "execution_time"):
        if metadata.get(key) is not None and number_or_none(metadata[key]) is None:
            metadata_extra[key] = metadata[key]
    for key in ("model", "version", "type", "prediction_id", "method", "url"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            metadata_extra[key] = metadata[key]

    def text(key: str) -> str | None:
        value = metadata.get(key)
        return value if isinstance(value, str) else None

    step_row = {
        "execution_id": execution_id,
        "step_id": step_id,
        "step_position": position,
        "status": drift.text("status"),
        "step_type": step_type if isinstance(step_type, str) else None,
        "model": text("model") or None,
        "model_version": text("version"),
        "started_at": started_us,
        "completed_at": completed_us,
        "latency_seconds": latency,
        "output": _json_or_null(step.get("output")),
        "primary_output": _json_or_null(step.get("primary")),
        "input": _json_or_null(step.get("input")),
        "error": drift.text("error"),
        "error_cause": drift.text("error_cause"),
        "prediction_id": text("prediction_id"),
        "processed_at": processed_at,
        "elapsed_seconds": number_or_none(metadata.get("elapsed_seconds")),
        "execution_time_seconds": number_or_none(metadata.get("execution_time")),
        "http_method": text("method"),
        "http_url": text("url"),
    }
    params = metadata.get("params")
    if params is not None and not isinstance(params, dict):
        metadata_extra["params"] = params
    if not isinstance(params, dict):
        params = {}
    step_row["metadata_extra"] = to_json(metadata_extra) if metadata_extra else None
    step_row["extra_fields"] = drift.extra_fields(KNOWN_STEP_FIELDS)
    param_rows = [
        {
            "execution_id": execution_id,
            "step_id": step_id,
            "param_name": name,
            "param_value": to_json(value),
            "param_type": json_type(value),
        }
        for name, value in params.items()
    ]
    return step_row, param_rows


@dataclass
class ExecutionBatch:
    """Columnar buffers for a batch of executions and its three tables.

    An execution whose steps (or params) are all gone still has to clear its old rows: it
    gets one tombstone row, which dlt's merge uses to delete and never inserts.
    """

    executions: _Columns = field(default_factory=lambda: _Columns(EXECUTIONS_SCHEMA))
    step_outputs: _Columns = field(default_factory=lambda: _Columns(STEP_OUTPUTS_SCHEMA))
    step_params: _Columns = field(default_factory=lambda: _Columns(STEP_PARAMS_SCHEMA))
    #: Characters of text held so far: what memory a batch of big payloads grows with.
    text_size: int = 0

    def add(self, rows: ExecutionRows) -> None:
        self.text_size += sum(
            len(value)
            for row in (rows.execution, *rows.steps, *rows.params)
            for value in row.values()
            if isinstance(value, str)
        )
        execution_id = rows.execution["execution_id"]
        tombstone = {"execution_id": execution_id, "step_id": "", "param_name": "",
                     TOMBSTONE_COLUMN: True}  # fmt: skip
        self.executions.extend([rows.execution])
        self.step_outputs.extend(rows.steps or [tombstone])
        self.step_params.extend(rows.params or [tombstone])

    def __len__(self) -> int:
        return len(self.executions)

    def to_arrow(self) -> dict[str, pa.Table]:
        return {
            "executions": self.executions.to_arrow(),
            "step_outputs": self.step_outputs.to_arrow(),
            "step_params": self.step_params.to_arrow(),
        }


def payloads_to_tables(
    payloads: Iterable[Mapping[str, Any]], fetched_at: datetime | None = None
) -> dict[str, pa.Table]:
    """Normalise payloads into one Arrow table per table name (raises on a bad payload)."""
    fetched_at_us = ((fetched_at or datetime.now(UTC)) - _EPOCH) // _MICROSECOND
    batch = ExecutionBatch()
    for payload in payloads:
        batch.add(execution_to_rows(payload, fetched_at_us))
    return batch.to_arrow()


def fetch_errors_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The `fetch_errors` rows as an Arrow table (`last_attempt_at` in epoch microseconds)."""
    columns = _Columns(FETCH_ERRORS_SCHEMA)
    columns.extend(rows)
    return columns.to_arrow()

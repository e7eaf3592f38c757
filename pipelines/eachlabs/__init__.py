"""dlt source of the Eachlabs Workflows API: executions by ID -> executions, step_outputs,
step_params and fetch_errors.

Data flows one way: IDs -> concurrent fetches -> payloads -> columnar batches (Arrow) -> dlt.
One hidden resource fetches and normalises; four transformers pick their table from each batch,
so every payload is fetched and converted exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.typing import TSecretStrValue

from pipelines.eachlabs import settings
from pipelines.eachlabs.client import EachlabsClient, FetchResult
from pipelines.eachlabs.errors import NotFoundError, PayloadError
from pipelines.eachlabs.normalise import (
    JSON_COLUMNS,
    TOMBSTONE_COLUMN,
    ExecutionBatch,
    execution_to_rows,
    fetch_errors_table,
)

logger = logging.getLogger(__name__)


class _JsonHintNoise(logging.Filter):
    """Drops dlt's warning that our JSON column hints differ from the Arrow string type.

    JSON columns travel as Arrow strings holding JSON text and the `json` hint is how dlt is
    told to create them as JSON columns: the difference is the point, not a problem.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "several column hints were different" not in record.getMessage()


logging.getLogger("dlt").addFilter(_JsonHintNoise())

__all__ = ["FetchReport", "TableBatch", "eachlabs_source", "table_resources"]


@dataclass
class FetchReport:
    """Counts of one run, filled in while dlt extracts."""

    requested: int = 0
    loaded: int = 0
    not_found: int = 0
    failed: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.loaded + self.not_found + self.failed


@dataclass
class TableBatch:
    """Arrow tables of a batch of executions (and, last, the run's errors) for `table_resources`."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    errors: pa.Table | None = None  # only on the final batch


def _json_hints(table: str, key_columns: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    hints: dict[str, dict[str, Any]] = {c: {"data_type": "json"} for c in JSON_COLUMNS[table]}
    for column in key_columns:
        hints[column] = {"nullable": False}
    return hints


_MERGE = {"disposition": "merge", "strategy": "delete-insert"}
_TOMBSTONE_HINT = {TOMBSTONE_COLUMN: {"data_type": "bool", "hard_delete": True}}

#: dlt hints of each table. step_outputs and step_params merge on execution_id: loading an
#: execution deletes all its previous rows before inserting the new ones, so steps or params
#: that disappeared upstream disappear here too (tombstone rows cover executions with none).
TABLE_HINTS: dict[str, dict[str, Any]] = {
    "executions": {
        "write_disposition": _MERGE,
        "primary_key": "execution_id",
        "columns": _json_hints("executions"),
    },
    "step_outputs": {
        "write_disposition": _MERGE,
        "merge_key": "execution_id",
        "columns": {**_json_hints("step_outputs", ("execution_id", "step_id")), **_TOMBSTONE_HINT},
    },
    "step_params": {
        "write_disposition": _MERGE,
        "merge_key": "execution_id",
        "columns": {
            **_json_hints("step_params", ("execution_id", "step_id", "param_name")),
            **_TOMBSTONE_HINT,
        },
    },
}


def _pick_table(table: str) -> Callable[[TableBatch], Iterator[pa.Table]]:
    def pick(batch: TableBatch) -> Iterator[pa.Table]:
        if table in batch.tables:
            yield batch.tables[table]

    return pick


def _pick_errors(batch: TableBatch) -> Iterator[pa.Table]:
    if batch.errors is not None:
        yield batch.errors


def table_resources(batches: Any) -> list[Any]:
    """The table resources fed by a resource of batches: one transformer per table.

    The batches resource is evaluated once and its batches fanned out to every table.
    """
    resources = [
        batches | dlt.transformer(_pick_table(name), name=name, **hints)
        for name, hints in TABLE_HINTS.items()
    ]
    errors = dlt.transformer(
        _pick_errors,
        name="fetch_errors",
        write_disposition="replace",
        columns={"execution_id": {"nullable": False}},
    )
    return [*resources, batches | errors]


@dlt.source(name="eachlabs", max_table_nesting=0)
def eachlabs_source(
    execution_ids: Iterable[str] = (),
    api_key: TSecretStrValue = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    long_poll_timeout_s: int = settings.DEFAULT_LONG_POLL_TIMEOUT_S,
    request_timeout_s: float = settings.DEFAULT_REQUEST_TIMEOUT_S,
    max_attempts: int = settings.DEFAULT_MAX_ATTEMPTS,
    backoff_base_s: float = settings.DEFAULT_BACKOFF_BASE_S,
    max_retry_delay_s: float = settings.DEFAULT_MAX_RETRY_DELAY_S,
    batch_size: int = settings.DEFAULT_BATCH_SIZE,
    batch_max_bytes: int = settings.DEFAULT_BATCH_MAX_BYTES,
    rejected_ids: dict[str, str] | None = None,
    report: FetchReport | None = None,
    on_progress: Callable[[FetchReport], None] | None = None,
) -> Any:
    """Executions fetched by ID from `GET {base_url}/executions/{id}`.

    Args:
        execution_ids: IDs to fetch; each must already be a safe path segment. A sequence is
            copied; an iterator is drawn from lazily, so the caller can stop it early and
            keep the IDs it did not hand out (see `pipelines.load`).
        api_key: The `X-API-Key`; from `SOURCES__EACHLABS__API_KEY` or .dlt/secrets.toml.
        base_url: API root, e.g. `https://workflows.eachlabs.run/api/v1`.
        concurrency: Requests in flight at once.
        long_poll_timeout_s: `timeout` sent to the API, so running executions answer at once.
        rejected_ids: IDs refused before sending (ID -> reason), recorded in fetch_errors.
        report: Filled with the run's counts and errors.
        on_progress: Called now and then with the report while fetching.
        batch_size, batch_max_bytes: A columnar batch is handed to dlt when it holds this
            many executions or about this many bytes of text, whichever comes first.
    """
    if not 1 <= concurrency <= settings.MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be between 1 and {settings.MAX_CONCURRENCY}")
    if not 1 <= long_poll_timeout_s <= 30:
        raise ValueError("long_poll_timeout_s must be between 1 and 30 (the API's limits)")
    if request_timeout_s < long_poll_timeout_s + 5:
        raise ValueError(
            f"request_timeout_s ({request_timeout_s:g}) must be at least long_poll_timeout_s "
            f"+ 5 ({long_poll_timeout_s + 5}): the API may hold a request that long"
        )
    if max_attempts < 1 or batch_size < 1 or batch_max_bytes < 1:
        raise ValueError("max_attempts, batch_size and batch_max_bytes must be at least 1")
    if backoff_base_s < 0 or max_retry_delay_s < 0:
        raise ValueError("backoff_base_s and max_retry_delay_s must not be negative")
    report = report if report is not None else FetchReport()
    client = EachlabsClient(
        base_url,
        api_key,
        long_poll_timeout_s=long_poll_timeout_s,
        request_timeout_s=request_timeout_s,
        max_attempts=max_attempts,
        backoff_base_s=backoff_base_s,
        max_retry_delay_s=max_retry_delay_s,
        pool_size=concurrency,
    )

    @dlt.resource(selected=False)
    def fetched_batches() -> Iterator[TableBatch]:
        yield from _fetch_batches(
            client, _as_ids(execution_ids), concurrency, (batch_size, batch_max_bytes),
            rejected_ids or {}, report, on_progress,
        )  # fmt: skip

    return table_resources(fetched_batches)


#: Seconds after which a batch is handed on to dlt even if it holds fewer than batch_size.
BATCH_MAX_AGE_S = 1.0


def _as_ids(execution_ids: Iterable[str]) -> Iterable[str]:
    return execution_ids if isinstance(execution_ids, Iterator) else list(execution_ids)


def _fetch_batches(
    client: EachlabsClient,
    execution_ids: Iterable[str],
    concurrency: int,
    batch_limits: tuple[int, int],
    rejected_ids: dict[str, str],
    report: FetchReport,
    on_progress: Callable[[FetchReport], None] | None,
) -> Iterator[TableBatch]:
    # An iterator's length is unknown: its caller counts what it requested.
    if isinstance(execution_ids, Sized):
        report.requested = len(execution_ids) + len(rejected_ids)
    report.rejected = len(rejected_ids)
    now = time.time()
    for execution_id, reason in rejected_ids.items():
        report.errors.append(_error_row(execution_id, None, reason, 0, now))

    batch_size, batch_max_bytes = batch_limits
    batch = ExecutionBatch()
    last_progress = batch_started = time.monotonic()
    has_shown_progress = False
    try:
        for result in client.fetch_many(execution_ids, concurrency):
            _add_result(batch, result, report)
            # A slow API fills batches slowly: hand them on after BATCH_MAX_AGE_S anyway, so
            # that converting and extracting them overlaps the fetching instead of waiting
            # for its end.
            if (
                len(batch) >= batch_size
                or batch.text_size >= batch_max_bytes
                or time.monotonic() - batch_started >= BATCH_MAX_AGE_S
            ):
                yield TableBatch(tables=batch.to_arrow())
                batch = ExecutionBatch()
                batch_started = time.monotonic()
            if on_progress and time.monotonic() - last_progress >= 2.0:
                on_progress(report)
                last_progress = time.monotonic()
                has_shown_progress = True
    finally:
        client.close()
    if on_progress and has_shown_progress:  # a long run ends on its 100% line
        on_progress(report)
    errors = fetch_errors_table(sorted(report.errors, key=lambda row: row["execution_id"]))
    # Always send the final tables, even empty, so that dlt creates every table on a first run.
    yield TableBatch(tables=batch.to_arrow(), errors=errors)


def _add_result(batch: ExecutionBatch, result: FetchResult, report: FetchReport) -> None:
    error = result.error
    if error is None:
        try:
            batch.add(execution_to_rows(result.payload or {}, int(result.finished_at * 1e6)))
            report.loaded += 1
            return
        except PayloadError as exc:  # recorded, never half-loaded
            error = exc
        except Exception as exc:  # a normaliser bug must not stop the run either
            logger.debug("execution %s: normalising failed", result.execution_id, exc_info=True)
            error = PayloadError(f"cannot normalise: {type(exc).__name__}: {exc}"[:300], 200, 1)
    status = getattr(error, "http_status", 200)
    if isinstance(error, NotFoundError):
        report.not_found += 1
    else:
        report.failed += 1
    report.errors.append(
        _error_row(result.execution_id, status, str(error), result.attempts, result.finished_at)
    )


def _error_row(
    execution_id: str, http_status: int | None, error: str, attempts: int, at: float
) -> dict[str, Any]:
    return {
        # Rejected IDs come from the user and may hold undecodable bytes: keep them visible.
        "execution_id": execution_id.encode("utf-8", "backslashreplace").decode("utf-8"),
        "http_status": http_status,
        "error": error.encode("utf-8", "backslashreplace").decode("utf-8"),
        "attempts": attempts,
        "last_attempt_at": int(at * 1_000_000),
    }

"""The fetch-and-batch loop of the source: fetch results -> normalised columnar batches, with a
fetch_errors row for every ID that could not be loaded.

Every payload is fetched and converted exactly once; a bad one is recorded, never half-loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.eachlabs.client import FetchResult
from pipelines.eachlabs.errors import FetchError, NotFoundError, PayloadError
from pipelines.eachlabs.normalise import ExecutionBatch, execution_to_rows, fetch_errors_table

logger = logging.getLogger(__name__)

#: Seconds after which a batch is handed on to dlt even if it holds fewer than batch_size.
BATCH_MAX_AGE_S = 1.0
#: The HTTP status of every answer that carries a payload (the only kind normalised).
_PAYLOAD_STATUS = 200


@dataclass
class FetchReport:
    """Counts of one run, filled in while dlt extracts."""

    requested: int = 0
    loaded: int = 0
    not_found: int = 0
    failed: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Bytes of the answers fetched (what a chunk's byte limit counts), and of the largest.
    body_bytes: int = 0
    largest_body_bytes: int = 0

    @property
    def done(self) -> int:
        return self.loaded + self.not_found + self.failed


@dataclass
class TableBatch:
    """Arrow tables of a batch of executions (and, last, the run's errors) for `table_resources`."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    errors: pa.Table | None = None  # only on the final batch


def as_ids(execution_ids: Iterable[str]) -> Iterable[str]:
    """A sequence is copied; an iterator is kept, to be drawn from lazily."""
    return execution_ids if isinstance(execution_ids, Iterator) else list(execution_ids)


def fetch_batches(
    results: Iterable[FetchResult],
    batch_limits: tuple[int, int],
    rejected_ids: dict[str, str],
    report: FetchReport,
    on_progress: Callable[[FetchReport], None] | None,
    *,
    on_fetched: Callable[[FetchReport], None] | None = None,
    summaries: Mapping[str, Sequence[Any]] | None = None,
    first_errors: list[dict[str, Any]] | None = None,
) -> Iterator[TableBatch]:
    """Turn fetched (or read) results into columnar batches; the last batch carries the run's
    fetch_errors (rejected IDs and `first_errors` included). Calls `on_fetched` with the
    report before the last batch. `summaries` gives an execution's summary columns by ID."""
    report.rejected = len(rejected_ids)
    now = time.time()
    for execution_id, reason in rejected_ids.items():
        report.errors.append(error_row(execution_id, None, reason, 0, now))
    report.errors.extend(first_errors or [])
    summaries = summaries or {}

    batch_size, batch_max_bytes = batch_limits
    batch = ExecutionBatch()
    last_progress = batch_started = time.monotonic()
    has_shown_progress = False
    for result in results:
        add_result(batch, result, report, summaries.get(result.execution_id))
        # A slow API fills batches slowly: hand them on after BATCH_MAX_AGE_S anyway, so that
        # converting and extracting them overlaps the fetching instead of waiting for its end.
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
    if on_progress and has_shown_progress:  # a long run ends on its 100% line
        on_progress(report)
    if on_fetched is not None:
        on_fetched(report)
    errors = fetch_errors_table(sorted(report.errors, key=_error_order))
    # Always send the final tables, even empty, so that dlt creates every table on a first run.
    yield TableBatch(tables=batch.to_arrow(), errors=errors)


def _error_order(row: dict[str, Any]) -> tuple[str, str]:
    return (row["execution_id"] or "", row.get("workflow_id") or "")


def add_result(
    batch: ExecutionBatch,
    result: FetchResult,
    report: FetchReport,
    summary: Sequence[Any] | None = None,
) -> None:
    """Add a fetched payload's rows to `batch` (with its summary columns, if any), or record
    why there are none in `report`."""
    report.body_bytes += result.body_bytes
    report.largest_body_bytes = max(report.largest_body_bytes, result.body_bytes)
    error: FetchError | PayloadError | None = result.error
    if error is None:
        try:
            fetched_at_us = int(result.finished_at * 1e6)
            batch.add(execution_to_rows(result.payload or {}, fetched_at_us, summary))
            report.loaded += 1
            return
        except PayloadError as exc:  # recorded, never half-loaded
            error = exc
        except Exception as exc:  # a normaliser bug must not stop the run either
            logger.debug("execution %s: normalising failed", result.execution_id, exc_info=True)
            error = PayloadError(f"cannot normalise: {type(exc).__name__}: {exc}"[:300])
    # A payload error happened after a 200: the fetch layer knows the status and attempts.
    status = error.http_status if isinstance(error, FetchError) else _PAYLOAD_STATUS
    if isinstance(error, NotFoundError):
        report.not_found += 1
    else:
        report.failed += 1
    report.errors.append(
        error_row(result.execution_id, status, str(error), result.attempts, result.finished_at)
    )


def error_row(
    execution_id: str | None,
    http_status: int | None,
    error: str,
    attempts: int,
    at: float,
    workflow_id: str | None = None,
) -> dict[str, Any]:
    """A fetch_errors row (`last_attempt_at` in epoch microseconds): about one execution, a
    workflow's listing (`workflow_id`, no execution_id), or neither (a line of a file)."""
    return {
        "workflow_id": workflow_id,
        # Rejected IDs come from the user and may hold undecodable bytes: keep them visible.
        "execution_id": None
        if execution_id is None
        else execution_id.encode("utf-8", "backslashreplace").decode("utf-8"),
        "http_status": http_status,
        "error": error.encode("utf-8", "backslashreplace").decode("utf-8"),
        "attempts": attempts,
        "last_attempt_at": int(at * 1_000_000),
    }

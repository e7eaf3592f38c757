"""One load run: choose the IDs to fetch, run the dlt pipeline into DuckDB, apply the views."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.chunks import ChunkEnd, Peekable, add_chunk, combined, take
from pipelines.eachlabs import EachlabsSettings, FetchReport, eachlabs_source, settings
from pipelines.eachlabs.client import EachlabsClient
from pipelines.eachlabs.errors import EachlabsError
from pipelines.eachlabs.helpers import error_row
from pipelines.eachlabs.ids import select_ids, validate_execution_id
from pipelines.eachlabs.listing import WorkflowListing
from pipelines.eachlabs.settings import DEFAULT_DATASET, DEFAULT_DB_PATH, resolve_settings
from pipelines.lock import load_lock
from pipelines.selection import Listed, list_workflows, new_marks
from pipelines.stored import (
    store_listing_marks,
    stored_final_ids,
    stored_summaries,
    upgrade_tables,
)
from pipelines.target import (
    DUCKDB_MEMORY_LIMIT_MB,
    LARGE_VALUE_BYTES,
    Checkpoints,
    check_target,
    chunk_memory_mb,
    connect_duckdb,
    holds_no_rows,
    is_out_of_memory,
    lock_conflict,
    locked_error,
    memory_ceiling_mb,
    remove_database,
    set_memory_limit,
    writer_settings,
)
from pipelines.views import apply_views

log = logging.getLogger(__name__)


@dataclass
class LoadSummary:
    """What a run did, for the final summary line and the exit code."""

    fetch: FetchReport = field(default_factory=FetchReport)
    duplicates: int = 0
    skipped_final: int = 0
    elapsed_s: float = 0.0
    resumed_interrupted_load: bool = False
    chunks: int = 0
    views: list[str] = field(default_factory=list)
    #: The ID list was empty: nothing was fetched and no table was touched.
    no_ids: bool = False
    #: This run created the DuckDB file (it did not exist when the run opened it).
    created_file: bool = False
    #: The workflows listed (`--workflow`), each with what its listing found.
    listings: list[WorkflowListing] = field(default_factory=list)

    @property
    def failed_listings(self) -> int:
        return sum(listing.error is not None for listing in self.listings)

    @property
    def requested(self) -> int:
        return self.fetch.requested + self.skipped_final

    @property
    def all_not_found(self) -> bool:
        """Every ID sent came back 404: more likely a wrong base URL or key than bad IDs
        (unless a workflow's list was read with the same URL and key)."""
        fetch = self.fetch
        has_listed = any(listing.pages for listing in self.listings)
        return fetch.not_found > 0 and fetch.not_found == fetch.done and not has_listed

    @property
    def exit_code(self) -> int:
        """0 when everything was loaded or is known not to exist, 2 when some IDs failed (or
        when every ID was unknown to the API, which a scheduler should notice)."""
        fetch = self.fetch
        partial = fetch.failed or fetch.rejected or self.failed_listings or self.all_not_found
        return 2 if partial else 0

    def describe(self) -> str:
        if self.no_ids:
            return "no execution IDs given (the list was empty): nothing to do, no table changed"
        fetch = self.fetch
        resumed = "finished an interrupted earlier load; " if self.resumed_interrupted_load else ""
        if self.listings:
            listed = sum(listing.listed for listing in self.listings)
            pages = sum(listing.pages for listing in self.listings)
            failed = f", {self.failed_listings} failed" if self.failed_listings else ""
            resumed += (
                f"listed {listed} executions of {len(self.listings)} workflows in {pages} "
                f"pages{failed}; "
            )
        return resumed + (
            f"requested {self.requested}, loaded {fetch.loaded}, "
            f"skipped as already final {self.skipped_final}, not found {fetch.not_found}, "
            f"failed {fetch.failed}, rejected {fetch.rejected} in {self.elapsed_s:.1f}s"
            + (f" ({self.duplicates} duplicate IDs ignored)" if self.duplicates else "")
        )


def pipeline_name_for(db_path: Path, dataset: str) -> str:
    """A dlt pipeline name unique to the DuckDB file and dataset.

    dlt keeps pending load packages per pipeline name; keying the name by the file means an
    interrupted load into one file is never replayed into another.
    """
    digest = hashlib.sha1(str(db_path.resolve()).encode()).hexdigest()[:10]
    return f"eachlabs_{dataset}_{digest}"


def _sigterm_as_interrupt(function: Callable[..., LoadSummary]) -> Callable[..., LoadSummary]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> LoadSummary:
        with _terminate_as_interrupt():
            return function(*args, **kwargs)

    return wrapper


@_sigterm_as_interrupt
def run_load(
    ids: Iterable[str] = (),
    *,
    workflows: Iterable[str] = (),
    bulk_id: str | None = None,
    full_listing: bool = False,
    on_listed: Callable[[WorkflowListing], None] | None = None,
    db_path: Path = DEFAULT_DB_PATH,
    dataset: str = DEFAULT_DATASET,
    refresh_all: bool = False,
    source_options: dict[str, Any] | None = None,
    on_progress: Callable[[FetchReport], None] | None = None,
    lock_wait_s: float = settings.DEFAULT_LOCK_WAIT_S,
    chunk_executions: int | None = None,
    chunk_seconds: float | None = None,
    on_commit: Callable[[LoadSummary], None] | None = None,
    started_at: float | None = None,
) -> LoadSummary:
    """Fetch the given executions and merge them into the DuckDB file, then apply the views.

    Args:
        ids: Execution IDs; duplicates are fetched once, unsafe ones rejected unsent.
        workflows: Workflow IDs whose executions are listed and loaded too (each ID once);
            only new or changed executions are fetched (see `pipelines.selection`).
        bulk_id: List only this bulk operation's executions of the workflows.
        full_listing: Read every page of each workflow's list, ignoring the marks the last
            run left (`--refresh-all` implies it).
        on_listed: Called with each workflow's listing once it is read.
        db_path: The DuckDB file (created if missing).
        dataset: DuckDB schema of the tables and views.
        refresh_all: Fetch IDs (and listed executions) again even if they are stored with a
            terminal status.
        source_options: Explicit settings (flags) by name; the rest come from dlt config
            (environment, then .dlt/*.toml), else the defaults (see `settings.EachlabsSettings`).
        on_progress: Called now and then with the counts while fetching.
        lock_wait_s: How long to wait for another load into the same file to finish.
        chunk_executions, chunk_seconds: Commit after this many executions or seconds, or
            `chunk_max_bytes` of answers (a setting), whichever comes first (default: dlt
            config, else 10,000 / 60 s / 32 MiB). Each chunk is a complete dlt load: an
            interrupt loses at most the chunk in flight, and the next run skips what was
            committed.
        on_commit: Called after each chunk is committed while more IDs remain.
        started_at: `time.monotonic()` at which the run's clock starts (the CLI passes its
            process's start, so the summary's time is the whole command's); default: now.

    A run that created the DuckDB file and fails before committing anything removes the file
    (and its `.wal` and `.lock`) again; a file that existed before is left as it was.

    Raises:
        AuthError: the API refused the key; nothing more was loaded.
        ConfigError: a setting is missing or invalid.
        LockedError: another load holds the file past `lock_wait_s`, or another program
            holds DuckDB's lock on it; what was fetched is kept for the next run.
        KeyboardInterrupt: Ctrl-C (SIGINT), or `Terminated` on SIGTERM; the chunks committed
            before it are kept.
    """
    check_target(db_path, dataset)
    ids = list(ids)
    workflows = list(workflows)
    if not ids and not workflows:
        # An empty list is not an error (an upstream export found nothing new), but it must not
        # empty fetch_errors or touch any other table either.
        return LoadSummary(no_ids=True)
    for workflow_id in workflows:  # a typo on the command line: say so before anything runs
        validate_execution_id(workflow_id, "workflow")
    if bulk_id is not None:
        validate_execution_id(bulk_id, "bulk")
    listing = _Listing(workflows, bulk_id, full_listing or refresh_all, on_listed)
    chunks = {"chunk_executions": chunk_executions, "chunk_seconds": chunk_seconds}
    config = resolve_settings({**(source_options or {}), **chunks})
    summary = LoadSummary()
    started = time.monotonic() if started_at is None else started_at
    # Taken before anything else, dlt's working directory included (see pipelines/lock.py).
    with load_lock(db_path, lock_wait_s) as lock, _dlt_settings():
        try:
            _run_load(
                ids, listing, db_path, dataset, refresh_all, config, on_progress, on_commit,
                summary,
            )  # fmt: skip
        except BaseException:
            # Nothing was loaded into a file this run created: leave no empty file behind for
            # `report` to stumble on. A file holding any row (a committed chunk, or part of
            # one that the next run completes) is kept, as is every file that existed before.
            if summary.created_file and holds_no_rows(db_path, dataset):
                remove_database(db_path)
                if lock.created:
                    lock.remove_when_released()
            raise
    summary.elapsed_s = time.monotonic() - started
    return summary


@dataclass
class _Listing:
    """What to list (see `run_load`)."""

    workflows: list[str]
    bulk_id: str | None
    full: bool
    on_listed: Callable[[WorkflowListing], None] | None


def _run_load(
    ids: list[str],
    listing: _Listing,
    db_path: Path,
    dataset: str,
    refresh_all: bool,
    config: EachlabsSettings,
    on_progress: Callable[[FetchReport], None] | None,
    on_commit: Callable[[LoadSummary], None] | None,
    summary: LoadSummary,
) -> None:
    """The load itself, under the lock; fills `summary` as it goes."""
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name_for(db_path, dataset),
        destination=dlt.destinations.duckdb(str(db_path)),
        dataset_name=dataset,
    )
    # The run holds the file from start to end (opening it is also the early check that it can
    # be written): dlt's loads of the chunks share this one DuckDB instance, whose settings
    # this run chooses (`writer_settings`), and no other program can take the file between
    # two chunks.
    is_new_file = not db_path.exists()
    with connect_duckdb(db_path) as connection, writer_settings(connection):
        summary.created_file = is_new_file  # opened, so created by this run if it was new
        checkpoints = Checkpoints(connection, dataset)
        upgrade_tables(connection, dataset)  # before anything of this version is loaded
        if pipeline.has_pending_data:
            # An earlier run was interrupted after fetching: finish loading what it fetched
            # first, so that this run starts from exact tables. (If nothing was ever loaded
            # into the file, dlt discards the package instead; the IDs are fetched again.)
            summary.resumed_interrupted_load = _load_chunk(pipeline, None, connection)
            if summary.resumed_interrupted_load:  # its sizes are unknown: room, no merging
                checkpoints.after_chunk(largest_body_bytes=LARGE_VALUE_BYTES)

        selection = select_ids(ids)
        summary.duplicates = selection.duplicates
        listed = _list(listing, config, connection, dataset, refresh_all)
        summary.listings = listed.listings
        by_id = [i for i in selection.valid if i not in listed.ids]
        skip = set() if refresh_all or not by_id else stored_final_ids(connection, dataset)
        fetch_by_id = [i for i in by_id if i not in skip]
        to_fetch = listed.to_fetch + fetch_by_id
        # Executions fetched by ID keep the summary columns a listing stored for them.
        summaries = {**stored_summaries(connection, dataset, fetch_by_id), **listed.summaries}
        summary.skipped_final = len(by_id) - len(fetch_by_id) + listed.unchanged
        summary.fetch.requested = len(to_fetch) + len(selection.rejected)
        summary.fetch.rejected = len(selection.rejected)
        first_errors = _listing_errors(listed)

        remaining = Peekable(to_fetch)
        first = True
        while first or remaining.has_more():
            chunk = FetchReport()
            ends = ChunkEnd(config, chunk, summary.fetch)
            source = _make_source(
                take(remaining, ends), selection.rejected if first else {}, chunk,
                summary.fetch, on_progress, config,
                # Once the chunk is fetched, before dlt loads it: room for its text.
                on_fetched=lambda report: set_memory_limit(connection, chunk_memory_mb(report)),
                summaries=summaries,
                first_errors=first_errors if first else [],
                has_listed=listed.pages > 0,
            )  # fmt: skip
            if not first:  # the run's errors: replaced by the first chunk, then added to
                source.resources["fetch_errors"].apply_hints(write_disposition="append")
            _load_chunk(pipeline, source, connection)
            # The chunk's rows go into the file now: memory is bounded by the chunk however
            # large the file grows (see `writer_settings`).
            checkpoints.after_chunk(chunk.largest_body_bytes)
            add_chunk(summary.fetch, chunk)
            summary.chunks += 1
            first = False
            if on_commit is not None and remaining.has_more():
                on_commit(summary)
        # Only now, with every chunk committed, may the next run's listings stop earlier.
        not_found = {
            row["execution_id"] for row in summary.fetch.errors if row["http_status"] == 404
        }
        marks = new_marks(
            listed, connection, dataset, listed_at_us=listed.started_us, not_found=not_found
        )
        store_listing_marks(connection, dataset, marks, listed.started_us)
        summary.views = apply_views(connection, dataset)
        checkpoints.final()


def _list(
    listing: _Listing,
    config: EachlabsSettings,
    connection: duckdb.DuckDBPyConnection,
    dataset: str,
    refresh_all: bool,
) -> Listed:
    """List the run's workflows (nothing when there are none)."""
    if not listing.workflows:
        return Listed()
    client = EachlabsClient.from_settings(config)
    try:
        return list_workflows(
            client, connection, dataset, listing.workflows, listing.bulk_id,
            overlap_us=int(config.listing_overlap_s * 1e6), full_listing=listing.full,
            refresh_all=refresh_all, on_listed=listing.on_listed,
        )  # fmt: skip
    finally:
        client.close()


def _listing_errors(listed: Listed) -> list[dict[str, Any]]:
    """A fetch_errors row per workflow whose listing failed (no execution_id)."""
    rows = []
    for listing in listed.failed:
        error = listing.error
        assert error is not None
        row = error_row(None, error.http_status, str(error), error.attempts, time.time())
        row["workflow_id"] = listing.workflow_id
        rows.append(row)
    return rows


def _load_chunk(pipeline: dlt.Pipeline, source: Any, connection: duckdb.DuckDBPyConnection) -> bool:
    """Run one chunk through dlt (`source` None: only the pending package). If DuckDB runs
    out of its capped memory (a single execution of many MB can), finish the chunk's pending
    package with the cap lifted to half the machine's memory; `checkpoint` caps it again.
    Returns whether a package was loaded."""
    try:
        return _run_pipeline(pipeline, source) is not None
    except PipelineStepFailed as exc:
        ceiling_mb = memory_ceiling_mb()
        if not is_out_of_memory(exc) or DUCKDB_MEMORY_LIMIT_MB >= ceiling_mb:
            raise
    log.info("DuckDB ran out of memory in a chunk; finishing it with %d MiB", ceiling_mb)
    set_memory_limit(connection, ceiling_mb)
    return _run_pipeline(pipeline, None) is not None  # the chunk's package is normalised


class Terminated(KeyboardInterrupt):
    """SIGTERM (cron wrappers, systemd, containers) stops a load like Ctrl-C: exit 143."""

    exit_code = 143


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while loading, so it unwinds like Ctrl-C does.

    Committed chunks stay; the chunk in flight is dropped (or, if dlt already holds its
    package, finished by the next run). Only the main thread can set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def chunk_limits(executions: int | None = None, seconds: float | None = None) -> tuple[int, float]:
    """The chunk limits: explicit values, else dlt config (`chunk_executions`,
    `chunk_seconds` under [sources.eachlabs] or SOURCES__EACHLABS__...), else the defaults."""
    chunks = {"chunk_executions": executions, "chunk_seconds": seconds}
    config = resolve_settings(chunks, only=chunks)
    return config.chunk_executions, float(config.chunk_seconds)


@contextmanager
def _dlt_settings() -> Iterator[None]:
    """dlt settings of a load, for its duration only (environment variables the user set win).

    - dlt keeps a full copy of each merged table in `<dataset>_staging`: emptied after each
      load.
    - dlt would gather up to 5,000 rows of a table into one parquet row group, which DuckDB
      reads whole (a row group of thousands of MB-sized steps would not fit its memory cap);
      the source's batches are already bounded by rows and bytes, so each is written as it
      comes.
    - dlt loads a package's table jobs on up to 20 threads; DuckDB writes one at a time
      anyway. One job at a time loaded 5,000 executions in 12 s instead of 14 s (side by side,
      two runs each), and no small table's commit can run out of a capped memory beside a big
      table's insert (a failed commit invalidates the DuckDB database, which the
      out-of-memory fallback cannot recover; tests/test_faults_memory.py hit it once in a
      full run).
    """
    wanted = {
        "LOAD__TRUNCATE_STAGING_DATASET": "true",
        "EXTRACT__DATA_WRITER__BUFFER_MAX_ITEMS": "1",
        "LOAD__WORKERS": "1",
    }
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _make_source(
    ids: Iterator[str],
    rejected: dict[str, str],
    chunk: FetchReport,
    total: FetchReport,
    on_progress: Callable[[FetchReport], None] | None,
    config: EachlabsSettings,
    on_fetched: Callable[[FetchReport], None],
    summaries: dict[str, tuple[Any, ...]],
    first_errors: list[dict[str, Any]],
    has_listed: bool,
) -> Any:
    """The dlt source of one chunk; its progress is reported as the whole run's."""

    def progress(report: FetchReport) -> None:
        if on_progress is not None:
            on_progress(combined(total, report))

    return eachlabs_source(
        execution_ids=ids,
        rejected_ids=rejected,
        report=chunk,
        on_progress=progress if on_progress else None,
        config=config,
        on_fetched=on_fetched,
        has_reached_server=has_listed or total.loaded + total.not_found > 0,
        summaries=summaries,
        first_errors=first_errors,
    )


def _run_pipeline(pipeline: dlt.Pipeline, source: Any) -> Any:
    """Run dlt, surfacing our own errors (e.g. AuthError) from dlt's wrapping exception."""
    try:
        return pipeline.run(source)
    except PipelineStepFailed as exc:
        cause = _own_cause(exc)
        if cause is not None:
            raise cause from None
        conflict = lock_conflict(exc)
        if conflict is not None:
            raise locked_error(
                None, conflict, "what was fetched is kept and loaded by the next run"
            ) from None
        exc.has_pending_load = pipeline.has_pending_data  # type: ignore[attr-defined]
        raise


def _own_cause(exc: BaseException) -> EachlabsError | KeyboardInterrupt | None:
    """Our own error (or Ctrl-C) behind dlt's wrapping exceptions, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, EachlabsError | KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None

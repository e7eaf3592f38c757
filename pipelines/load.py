"""One load run: choose the IDs to fetch, run the dlt pipeline into DuckDB, apply the views."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt

from pipelines import bodies
from pipelines.bodies import BodyFile
from pipelines.chunks import ChunkEnd, Peekable, add_chunk, combined, take
from pipelines.dlt_run import (
    dlt_settings,
    sigterm_as_interrupt,
)
from pipelines.eachlabs import EachlabsSettings, FetchReport, eachlabs_source, settings
from pipelines.eachlabs.client import EachlabsClient, FetchResult
from pipelines.eachlabs.errors import ConfigError
from pipelines.eachlabs.helpers import error_row
from pipelines.eachlabs.ids import select_ids, validate_execution_id
from pipelines.eachlabs.listing import WorkflowListing
from pipelines.eachlabs.settings import (
    DEFAULT_DATASET,
    DEFAULT_DB_PATH,
    LOAD_SETTINGS,
    resolve_settings,
)
from pipelines.selection import Listed, list_workflows, new_marks
from pipelines.stored import (
    Catalog,
    read_catalog,
    store_listing_marks,
    stored_states,
    upgrade_tables,
)
from pipelines.summary import LoadSummary
from pipelines.targets import Db, Session, Target, make_target

log = logging.getLogger(__name__)


@sigterm_as_interrupt
def run_load(
    ids: Iterable[str] = (),
    *,
    workflows: Iterable[str] = (),
    bulk_id: str | None = None,
    full_listing: bool = False,
    on_listed: Callable[[WorkflowListing], None] | None = None,
    files: list[BodyFile] | None = None,
    spool: Path | None = None,
    include_open: bool = False,
    verify: bool = False,
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
    destination: str = "duckdb",
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
        files: Files of execution bodies (`pipelines.bodies`: JSON Lines, the spool) loaded
            as read, through the same normaliser and merge; no request is sent and no API key
            is needed. For each execution the latest body wins; executions stored final are
            skipped (unless `refresh_all`).
        spool: A webhook spool folder: its closed files are read too (listed once the lock is
            held, so an overlapping run never reads files another one moves), and moved to
            `spool/loaded/` after the last commit, unless a fetch or listing of the run failed
            (the next run then reads them again; stored final executions are skipped).
        include_open: With `spool`: also read the complete lines of its open `*.part` file.
        verify: Fetch each execution of `files` from the API by ID and load that answer
            instead of the body (an ID the API does not know is recorded, not loaded).
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
        destination: Where the rows go (`pipelines.targets`): `duckdb`, the file `db_path`
            (default), or `postgres`, the schema `dataset` of the database dlt's credentials
            name.

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
    target = make_target(destination, db_path, dataset)
    ids = list(ids)
    workflows = list(workflows)
    files = list(files or [])
    if not ids and not workflows and not files and spool is None:
        # An empty list is not an error (an upstream export found nothing new), but it must not
        # empty fetch_errors or touch any other table either.
        return LoadSummary(no_ids=True)
    if spool is not None and not spool.is_dir():
        raise ConfigError(f"--from-spool {spool}: no such folder")
    for workflow_id in workflows:  # a typo on the command line: say so before anything runs
        validate_execution_id(workflow_id, "workflow")
    if bulk_id is not None:
        validate_execution_id(bulk_id, "bulk")
    inputs = Inputs(
        ids, workflows, bulk_id, full_listing or refresh_all, on_listed, files, spool,
        include_open, verify,
    )  # fmt: skip
    chunks = {"chunk_executions": chunk_executions, "chunk_seconds": chunk_seconds}
    # Bodies read from files need no API key; anything fetched does.
    no_key = (files or spool is not None) and not ids and not workflows and not verify
    config = resolve_settings(
        {**(source_options or {}), **chunks},
        only=[name for name in LOAD_SETTINGS if name != "api_key"] if no_key else None,
    )
    summary = LoadSummary()
    started = time.monotonic() if started_at is None else started_at
    # The target's lock comes first, before dlt's working directory is touched.
    with target.session(lock_wait_s) as session, dlt_settings():
        summary.created_file = session.created
        _run_load(inputs, target, session, refresh_all, config, on_progress, on_commit, summary)
    summary.elapsed_s = time.monotonic() - started
    return summary


def apply_views(
    destination: str,
    db_path: Path,
    dataset: str,
    lock_wait_s: float = settings.DEFAULT_LOCK_WAIT_S,
) -> list[str]:
    """Create (or replace) the views of `sql/` on the tables a load wrote, under the load's
    lock, as every load does at its end; returns their names in the order created.

    Raises:
        ConfigError: no DuckDB file at `db_path`, or the destination's settings are wrong.
        LockedError: a load holds the destination past `lock_wait_s`.
        ViewError: a view failed; the tables are unchanged.
    """
    target = make_target(destination, db_path, dataset)
    if destination == "duckdb" and not db_path.exists():
        raise ConfigError(f"no DuckDB file at {db_path}: run `eachlabs-pipeline load` first")
    with target.session(lock_wait_s) as session:
        names = session.apply_views()
        session.final()
    return names


@dataclass
class Inputs:
    """Where a run's executions come from (see `run_load`)."""

    ids: list[str]
    workflows: list[str]
    bulk_id: str | None
    full_listing: bool
    on_listed: Callable[[WorkflowListing], None] | None
    files: list[BodyFile]
    spool: Path | None
    include_open: bool
    verify: bool


def _run_load(
    inputs: Inputs,
    target: Target,
    session: Session,
    refresh_all: bool,
    config: EachlabsSettings,
    on_progress: Callable[[FetchReport], None] | None,
    on_commit: Callable[[LoadSummary], None] | None,
    summary: LoadSummary,
) -> None:
    """The load itself, with the target held; fills `summary` as it goes."""
    pipeline = dlt.pipeline(
        pipeline_name=target.pipeline_name(),
        destination=target.dlt_destination(),
        dataset_name=target.dataset,
    )
    upgrade_tables(session.db, target.dataset)  # before anything of this version is loaded
    if pipeline.has_pending_data:
        # An earlier run was interrupted after fetching: finish loading what it fetched first,
        # so that this run starts from exact tables. (If nothing was ever loaded, dlt discards
        # the package instead; the IDs are fetched again.)
        summary.resumed_interrupted_load = session.load_chunk(pipeline, None)

    plan = _plan(inputs, config, session.db, target.dataset, refresh_all, summary)
    _load_chunks(plan, pipeline, session, config, on_progress, on_commit, summary)
    # Only now, with every chunk committed, may the next run's listings stop earlier and the
    # spool's files be put away.
    listed = plan.listed
    not_found = {row["execution_id"] for row in summary.fetch.errors if row["http_status"] == 404}
    marks = new_marks(
        listed, session.db, target.dataset, listed_at_us=listed.started_us, not_found=not_found
    )
    store_listing_marks(session.db, target.dataset, marks, listed.started_us)
    if inputs.spool is not None and not (summary.fetch.failed or summary.failed_listings):
        summary.files_moved = bodies.move_loaded(inputs.files, inputs.spool)
    summary.views = session.apply_views()
    session.final()


@dataclass
class _Plan:
    """What a run fetches and reads, decided before its first chunk."""

    listed: Listed
    #: IDs to fetch, listed ones first.
    ids: list[str]
    #: Bodies read from files (not fetched), drawn lazily; None without files.
    bodies: Iterator[FetchResult] | None
    rejected: dict[str, str]
    summaries: dict[str, tuple[Any, ...]]
    #: fetch_errors rows known before fetching: failed listings, unreadable lines.
    first_errors: list[dict[str, Any]]


def _plan(
    inputs: Inputs,
    config: EachlabsSettings,
    db: Db,
    dataset: str,
    refresh_all: bool,
    summary: LoadSummary,
) -> _Plan:
    """Which executions the run fetches by ID and which bodies it loads as read (see
    `pipelines.selection` for the listing's part); fills the counts of `summary`."""
    if inputs.spool is not None:  # listed under the lock (see `run_load`)
        inputs.files += bodies.spool_files(inputs.spool, include_open=inputs.include_open)
    found = bodies.scan(inputs.files) if inputs.files else None
    from_files = found.ids if found is not None else []
    selection = select_ids([*inputs.ids, *(from_files if inputs.verify else [])])
    catalog = read_catalog(db, dataset)  # no table changes before the first chunk
    listed = _list(inputs, config, db, dataset, refresh_all, catalog)
    summary.listings = listed.listings
    by_id = [i for i in selection.valid if i not in listed.ids]
    read = [] if inputs.verify else from_files
    fetched = set(by_id) | listed.ids
    read = [i for i in read if i not in fetched]  # fetched from the API instead
    # Only the run's own IDs are looked up (one query), never every final ID of the dataset.
    states = stored_states(db, dataset, [*by_id, *read], catalog)
    final = {execution_id for execution_id, state in states.items() if state.is_final}
    fetch_by_id = by_id if refresh_all else [i for i in by_id if i not in final]
    # A body read from a file may be older than the row (a late retry of a delivery): one
    # that is not final never replaces a final row, not even with --refresh-all.
    read_now = [
        i
        for i in read
        if i not in final or (refresh_all and found is not None and found.is_final(i))
    ]
    # Executions fetched by ID or read keep the summary columns a listing stored for them.
    summaries = {
        **{i: states[i].summary for i in [*fetch_by_id, *read_now] if i in states},
        **listed.summaries,
    }
    summaries = {i: values for i, values in summaries.items() if values is not None}
    ids = listed.to_fetch + fetch_by_id
    first_errors = _listing_errors(listed) + (found.errors if found is not None else [])
    unread = len(found.errors) if found is not None else 0
    summary.duplicates = selection.duplicates + (found.duplicates if found is not None else 0)
    summary.skipped_final = len(by_id) - len(fetch_by_id) + len(read) - len(read_now)
    summary.skipped_final += listed.unchanged
    summary.fetch.requested = len(ids) + len(read_now) + len(selection.rejected) + unread
    summary.fetch.rejected = len(selection.rejected) + unread
    if found is not None:
        summary.files, summary.bodies_read = len(found.files), found.lines - found.cut_short
    skip = set(found.winners) - set(read_now) if found is not None else set()
    return _Plan(
        listed=listed,
        ids=ids,
        bodies=bodies.results(found, skip) if found is not None and read_now else None,
        rejected=selection.rejected,
        summaries=summaries,
        first_errors=first_errors,
    )


def _load_chunks(
    plan: _Plan,
    pipeline: dlt.Pipeline,
    session: Session,
    config: EachlabsSettings,
    on_progress: Callable[[FetchReport], None] | None,
    on_commit: Callable[[LoadSummary], None] | None,
    summary: LoadSummary,
) -> None:
    """Fetch the plan's IDs, then load its bodies, a chunk (one dlt load) at a time; the first
    chunk replaces fetch_errors, even when there is nothing to fetch."""
    # Without IDs the (first, maybe only) chunk takes no client, and so no API key.
    queues: list[tuple[bool, Peekable[Any]]] = [(not plan.ids, Peekable(plan.ids))]
    if plan.bodies is not None:
        queues.append((True, Peekable(plan.bodies)))
    first = True
    for position, (is_bodies, remaining) in enumerate(queues):
        later = queues[position + 1 :]
        while remaining.has_more() or (first and not later):
            chunk = FetchReport()
            ends = ChunkEnd(config, chunk, summary.fetch)
            items = take(remaining, ends)
            source = _make_source(
                None if is_bodies else items, items if is_bodies else None,
                plan.rejected if first else {}, chunk, summary.fetch, on_progress, config,
                on_fetched=session.on_fetched,
                summaries=plan.summaries,
                first_errors=plan.first_errors if first else [],
                has_listed=plan.listed.pages > 0,
            )  # fmt: skip
            if not first:  # the run's errors: replaced by the first chunk, then added to
                source.resources["fetch_errors"].apply_hints(write_disposition="append")
            session.load_chunk(pipeline, source)
            session.after_chunk(chunk.largest_body_bytes)
            add_chunk(summary.fetch, chunk)
            summary.chunks += 1
            first = False
            has_more = remaining.has_more() or any(queue.has_more() for _, queue in later)
            if on_commit is not None and has_more:
                on_commit(summary)


def _list(
    inputs: Inputs,
    config: EachlabsSettings,
    db: Db,
    dataset: str,
    refresh_all: bool,
    catalog: Catalog,
) -> Listed:
    """List the run's workflows (nothing when there are none)."""
    if not inputs.workflows:
        return Listed()
    client = EachlabsClient.from_settings(config)
    try:
        return list_workflows(
            client, db, dataset, inputs.workflows, inputs.bulk_id,
            overlap_us=int(config.listing_overlap_s * 1e6), full_listing=inputs.full_listing,
            refresh_all=refresh_all, on_listed=inputs.on_listed, catalog=catalog,
        )  # fmt: skip
    finally:
        client.close()


def _listing_errors(listed: Listed) -> list[dict[str, Any]]:
    """A fetch_errors row per workflow whose listing failed (no execution_id)."""
    rows = []
    for listing in listed.failed:
        error = listing.error
        assert error is not None
        rows.append(
            error_row(
                None, error.http_status, str(error), error.attempts, time.time(),
                workflow_id=listing.workflow_id,
            )
        )  # fmt: skip
    return rows


def chunk_limits(executions: int | None = None, seconds: float | None = None) -> tuple[int, float]:
    """The chunk limits: explicit values, else dlt config (`chunk_executions`,
    `chunk_seconds` under [sources.eachlabs] or SOURCES__EACHLABS__...), else the defaults."""
    chunks = {"chunk_executions": executions, "chunk_seconds": seconds}
    config = resolve_settings(chunks, only=chunks)
    return config.chunk_executions, float(config.chunk_seconds)


def _make_source(
    ids: Iterator[str] | None,
    read: Iterator[FetchResult] | None,
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
        execution_ids=ids or (),
        bodies=read,
        rejected_ids=rejected,
        report=chunk,
        on_progress=progress if on_progress else None,
        config=config,
        on_fetched=on_fetched,
        has_reached_server=has_listed or total.loaded + total.not_found > 0,
        summaries=summaries,
        first_errors=first_errors,
    )

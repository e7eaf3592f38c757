"""One load run: choose the IDs to fetch, run the dlt pipeline into DuckDB, apply the views."""

from __future__ import annotations

import functools
import hashlib
import re
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
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.eachlabs import FetchReport, eachlabs_source, settings
from pipelines.eachlabs.errors import ConfigError, EachlabsError
from pipelines.eachlabs.ids import select_ids
from pipelines.views import apply_views

#: Not `eachlabs.duckdb`: DuckDB names the database (catalog) after the file, and a catalog
#: named like the dataset's schema makes every `eachlabs.<table>` reference ambiguous.
DEFAULT_DB_PATH = Path("eachlabs_data.duckdb")
DEFAULT_DATASET = "eachlabs"
#: DuckDB's memory cap while a load holds the file (its default is 80% of the RAM).
DUCKDB_MEMORY_LIMIT = "128MB"


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

    @property
    def requested(self) -> int:
        return self.fetch.requested + self.skipped_final

    @property
    def exit_code(self) -> int:
        """0 when everything was loaded or is known not to exist, 2 when some IDs failed."""
        return 2 if self.fetch.failed or self.fetch.rejected else 0

    def describe(self) -> str:
        fetch = self.fetch
        resumed = "finished an interrupted earlier load; " if self.resumed_interrupted_load else ""
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


def check_target(db_path: Path, dataset: str) -> None:
    """Refuse a DuckDB file whose name collides with the dataset (see DEFAULT_DB_PATH)."""
    # dlt would silently rename e.g. `MyData` to `my_data`; we take only names it keeps as is.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", dataset):
        raise ConfigError(
            f"dataset name {dataset!r} must be lowercase letters, digits and '_', not starting "
            "with a digit (e.g. eachlabs or eachlabs_prod)"
        )
    catalog = db_path.name.split(".")[0]
    if catalog.lower() == dataset.lower():
        raise ConfigError(
            f"DuckDB names the database in {db_path.name} {catalog!r}, the same as the dataset "
            f"schema {dataset!r}, which makes `{dataset}.<table>` ambiguous in SQL. Choose another "
            f"file name (e.g. --db {catalog}_data.duckdb) or another --dataset."
        )


def open_target(db_path: Path) -> None:
    """Fail early, with a clear message, when the DuckDB file cannot be opened for writing."""
    if not db_path.parent.is_dir():
        raise ConfigError(f"cannot create {db_path}: the folder {db_path.parent} does not exist")
    if db_path.is_dir():
        raise ConfigError(f"--db {db_path} is a folder, not a DuckDB file")
    try:
        duckdb.connect(str(db_path)).close()
    except duckdb.Error as exc:
        raise ConfigError(
            f"cannot open the DuckDB file {db_path}: {str(exc).splitlines()[0]}. DuckDB allows "
            "one writer at a time: close other programs using it (or wait for another load)"
        ) from None


def stored_final_ids(db_path: Path, dataset: str) -> set[str]:
    """IDs already stored with a terminal status and not failing in the latest run."""
    if not db_path.exists():
        return set()
    statuses = ", ".join(f"'{s}'" for s in sorted(settings.TERMINAL_STATUSES))
    with duckdb.connect(str(db_path), read_only=True) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "select table_name from information_schema.tables where table_schema = ?",
                [dataset],
            ).fetchall()
        }
        if "executions" not in tables:
            return set()
        query = f'select execution_id from "{dataset}".executions where status in ({statuses})'
        if "fetch_errors" in tables:
            query += f' except select execution_id from "{dataset}".fetch_errors'
        return {row[0] for row in connection.execute(query).fetchall()}


def _sigterm_as_interrupt(function: Callable[..., LoadSummary]) -> Callable[..., LoadSummary]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> LoadSummary:
        with _terminate_as_interrupt():
            return function(*args, **kwargs)

    return wrapper


@_sigterm_as_interrupt
def run_load(
    ids: Iterable[str],
    *,
    db_path: Path = DEFAULT_DB_PATH,
    dataset: str = DEFAULT_DATASET,
    refresh_all: bool = False,
    source_options: dict[str, Any] | None = None,
    on_progress: Callable[[FetchReport], None] | None = None,
    chunk_executions: int | None = None,
    chunk_seconds: float | None = None,
    on_commit: Callable[[LoadSummary], None] | None = None,
) -> LoadSummary:
    """Fetch the given executions and merge them into the DuckDB file, then apply the views.

    Args:
        ids: Execution IDs; duplicates are fetched once, unsafe ones rejected unsent.
        db_path: The DuckDB file (created if missing).
        dataset: DuckDB schema of the tables and views.
        refresh_all: Fetch IDs again even if they are stored with a terminal status.
        source_options: Explicit `eachlabs_source` arguments (flags); the rest come from
            dlt config (environment, then .dlt/*.toml).
        on_progress: Called now and then with the counts while fetching.
        chunk_executions, chunk_seconds: Commit after this many executions or seconds,
            whichever comes first (default: dlt config, else 10,000 / 60 s). Each chunk is a
            complete dlt load: an interrupt loses at most the chunk in flight, and the next
            run skips what was committed.
        on_commit: Called after each chunk is committed while more IDs remain.

    Raises:
        AuthError: the API refused the key; nothing more was loaded.
        ConfigError: a setting is missing or invalid.
        KeyboardInterrupt: Ctrl-C (SIGINT), or `Terminated` on SIGTERM; the chunks committed
            before it are kept.
    """
    check_target(db_path, dataset)
    open_target(db_path)
    started = time.monotonic()
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name_for(db_path, dataset),
        destination=dlt.destinations.duckdb(str(db_path)),
        dataset_name=dataset,
    )
    summary = LoadSummary()
    chunk_executions, chunk_seconds = chunk_limits(chunk_executions, chunk_seconds)
    if pipeline.has_pending_data:
        # An earlier run was interrupted after fetching: finish loading what it fetched
        # first, so that this run starts from exact tables.
        # (If nothing was ever loaded into the file, dlt discards the package instead; the IDs
        # are then simply fetched again.)
        summary.resumed_interrupted_load = _run_pipeline(pipeline, None) is not None

    selection = select_ids(ids)
    summary.duplicates = selection.duplicates
    skip = set() if refresh_all else stored_final_ids(db_path, dataset)
    to_fetch = [i for i in selection.valid if i not in skip]
    summary.skipped_final = len(selection.valid) - len(to_fetch)

    summary.fetch.requested = len(to_fetch) + len(selection.rejected)
    summary.fetch.rejected = len(selection.rejected)

    # While a connection stays open, the dlt loads of the chunks share one DuckDB instance:
    # each commit is durable (write-ahead log) without a checkpoint of the file per chunk.
    # The instance's cache of table blocks would grow with the file, so it is capped: memory
    # stays bounded by the chunk (DuckDB spills to disk beyond the cap).
    with duckdb.connect(str(db_path)) as connection:
        connection.execute(f"set memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
        remaining = _Peekable(to_fetch)
        first = True
        while first or remaining.has_more():
            chunk = FetchReport()
            ids = _take(remaining, chunk_executions, time.monotonic() + chunk_seconds)
            source = _make_source(
                ids, selection.rejected if first else {}, chunk, summary.fetch, on_progress,
                source_options,
            )  # fmt: skip
            if not first:  # the run's errors: replaced by the first chunk, then added to
                source.resources["fetch_errors"].apply_hints(write_disposition="append")
            _run_pipeline(pipeline, source)
            _add_chunk(summary.fetch, chunk)
            summary.chunks += 1
            first = False
            if on_commit is not None and remaining.has_more():
                on_commit(summary)
        summary.views = apply_views(connection, dataset)

    summary.elapsed_s = time.monotonic() - started
    return summary


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
    if executions is None:
        executions = _config_value("chunk_executions", int, settings.DEFAULT_CHUNK_EXECUTIONS)
    if seconds is None:
        seconds = _config_value("chunk_seconds", float, settings.DEFAULT_CHUNK_SECONDS)
    if isinstance(executions, bool) or not isinstance(executions, int) or executions < 1:
        raise ConfigError(
            f"chunk_executions must be a whole number of at least 1, not {executions!r}"
        )
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigError(f"chunk_seconds must be a number of seconds above 0, not {seconds!r}")
    return executions, float(seconds)


def _config_value(name: str, kind: type, default: Any) -> Any:
    try:
        value = dlt.config.get(f"sources.eachlabs.{name}", kind)
    except Exception as exc:  # dlt's coercion error names neither the setting nor the fix
        raise ConfigError(f"{name} must be a {kind.__name__}: {exc}") from None
    return default if value is None else value


def _take(ids: Iterator[str], limit: int, deadline: float) -> Iterator[str]:
    """Up to `limit` IDs from `ids`, handed out until `deadline` (time.monotonic()).

    The fetcher draws IDs lazily, so the IDs not handed out stay in `ids` for the next chunk.
    """
    for count, execution_id in enumerate(ids, start=1):
        yield execution_id
        if count >= limit or time.monotonic() >= deadline:
            return


class _Peekable(Iterator[str]):
    """An iterator of IDs that can tell whether another one is coming without losing it."""

    def __init__(self, items: Iterable[str]) -> None:
        self._items = iter(items)
        self._next: list[str] = []

    def __next__(self) -> str:
        return self._next.pop() if self._next else next(self._items)

    def has_more(self) -> bool:
        if not self._next:
            try:
                self._next.append(next(self._items))
            except StopIteration:
                return False
        return True


def _make_source(
    ids: Iterator[str],
    rejected: dict[str, str],
    chunk: FetchReport,
    total: FetchReport,
    on_progress: Callable[[FetchReport], None] | None,
    source_options: dict[str, Any] | None,
) -> Any:
    """The dlt source of one chunk; its progress is reported as the whole run's."""

    def progress(report: FetchReport) -> None:
        if on_progress is not None:
            on_progress(_combined(total, report))

    try:
        return eachlabs_source(
            execution_ids=ids,
            rejected_ids=rejected,
            report=chunk,
            on_progress=progress if on_progress else None,
            **(source_options or {}),
        )
    except ConfigFieldMissingException as exc:
        if "api_key" in exc.fields:
            raise ConfigError(
                "no API key: set SOURCES__EACHLABS__API_KEY or api_key under "
                "[sources.eachlabs] in .dlt/secrets.toml"
            ) from None
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _combined(total: FetchReport, chunk: FetchReport) -> FetchReport:
    """The run's counts so far plus the chunk in flight (requested: the whole run's)."""
    return FetchReport(
        requested=total.requested,
        loaded=total.loaded + chunk.loaded,
        not_found=total.not_found + chunk.not_found,
        failed=total.failed + chunk.failed,
        rejected=total.rejected,
    )


def _add_chunk(total: FetchReport, chunk: FetchReport) -> None:
    total.loaded += chunk.loaded
    total.not_found += chunk.not_found
    total.failed += chunk.failed
    total.errors.extend(chunk.errors)


def _run_pipeline(pipeline: dlt.Pipeline, source: Any) -> Any:
    """Run dlt, surfacing our own errors (e.g. AuthError) from dlt's wrapping exception."""
    try:
        return pipeline.run(source)
    except PipelineStepFailed as exc:
        cause = _own_cause(exc)
        if cause is not None:
            raise cause from None
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

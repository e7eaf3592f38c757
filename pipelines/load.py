"""One load run: choose the IDs to fetch, run the dlt pipeline into DuckDB, apply the views."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.eachlabs import FetchReport, eachlabs_source, settings
from pipelines.eachlabs.errors import ConfigError, EachlabsError, LockedError
from pipelines.eachlabs.ids import select_ids
from pipelines.lock import load_lock
from pipelines.views import apply_views

#: Not `eachlabs.duckdb`: DuckDB names the database (catalog) after the file, and a catalog
#: named like the dataset's schema makes every `eachlabs.<table>` reference ambiguous.
DEFAULT_DB_PATH = Path("eachlabs_data.duckdb")
DEFAULT_DATASET = "eachlabs"


@dataclass
class LoadSummary:
    """What a run did, for the final summary line and the exit code."""

    fetch: FetchReport = field(default_factory=FetchReport)
    duplicates: int = 0
    skipped_final: int = 0
    elapsed_s: float = 0.0
    resumed_interrupted_load: bool = False
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
        if _lock_conflict(exc):
            raise _locked(db_path, exc, "nothing was fetched") from None
        raise ConfigError(
            f"cannot open the DuckDB file {db_path}: {str(exc).splitlines()[0]}. DuckDB allows "
            "one writer at a time: close other programs using it (or wait for another load)"
        ) from None


def stored_final_ids(db_path: Path, dataset: str) -> set[str]:
    """IDs already stored with a terminal status and not failing in the latest run."""
    if not db_path.exists():
        return set()
    statuses = ", ".join(f"'{s}'" for s in sorted(settings.TERMINAL_STATUSES))
    try:
        connection = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        if _lock_conflict(exc):
            raise _locked(db_path, exc, "nothing was fetched") from None
        raise
    with connection:
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


def run_load(
    ids: Iterable[str],
    *,
    db_path: Path = DEFAULT_DB_PATH,
    dataset: str = DEFAULT_DATASET,
    refresh_all: bool = False,
    source_options: dict[str, Any] | None = None,
    on_progress: Callable[[FetchReport], None] | None = None,
    lock_wait_s: float = settings.DEFAULT_LOCK_WAIT_S,
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
        lock_wait_s: How long to wait for another load into the same file to finish.

    Raises:
        AuthError: the API refused the key; nothing was loaded.
        ConfigError: a setting is missing or invalid.
        LockedError: another load holds the file past `lock_wait_s`, or another program
            holds DuckDB's lock on it; what was fetched is kept for the next run.
    """
    check_target(db_path, dataset)
    # Taken before anything else, dlt's working directory included (see pipelines/lock.py).
    with load_lock(db_path, lock_wait_s):
        return _run_load(ids, db_path, dataset, refresh_all, source_options, on_progress)


def _run_load(
    ids: Iterable[str],
    db_path: Path,
    dataset: str,
    refresh_all: bool,
    source_options: dict[str, Any] | None,
    on_progress: Callable[[FetchReport], None] | None,
) -> LoadSummary:
    open_target(db_path)
    started = time.monotonic()
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name_for(db_path, dataset),
        destination=dlt.destinations.duckdb(str(db_path)),
        dataset_name=dataset,
    )
    summary = LoadSummary()
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

    try:
        source = eachlabs_source(
            execution_ids=to_fetch,
            rejected_ids=selection.rejected,
            report=summary.fetch,
            on_progress=on_progress,
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
    _run_pipeline(pipeline, source)

    try:
        connection = duckdb.connect(str(db_path))
    except duckdb.Error as exc:
        if _lock_conflict(exc):
            raise _locked(
                db_path, exc, "the data is loaded but the views were not re-applied "
                "(run `eachlabs-pipeline views`)",
            ) from None  # fmt: skip
        raise
    with connection:
        summary.views = apply_views(connection, dataset)

    summary.elapsed_s = time.monotonic() - started
    return summary


def _run_pipeline(pipeline: dlt.Pipeline, source: Any) -> Any:
    """Run dlt, surfacing our own errors (e.g. AuthError) from dlt's wrapping exception."""
    try:
        return pipeline.run(source)
    except PipelineStepFailed as exc:
        cause = _own_cause(exc)
        if cause is not None:
            raise cause from None
        conflict = _lock_conflict(exc)
        if conflict is not None:
            raise _locked(
                None, conflict, "what was fetched is kept and loaded by the next run"
            ) from None
        exc.has_pending_load = pipeline.has_pending_data  # type: ignore[attr-defined]
        raise


def _lock_conflict(exc: BaseException) -> BaseException | None:
    """DuckDB's "could not set lock" error behind `exc` (dlt wraps it), if that is the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        text = str(current).lower()
        if isinstance(current, duckdb.Error) and (
            "could not set lock" in text or "conflicting lock" in text
        ):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _locked(db_path: Path | None, conflict: BaseException, outcome: str) -> LockedError:
    holder = re.search(r"PID \d+", str(conflict))
    held_by = f" ({holder.group(0)})" if holder else ""
    target = f"the DuckDB file {db_path}" if db_path else "the DuckDB file"
    return LockedError(
        f"another program{held_by} holds {target}; DuckDB allows one writer "
        f"at a time, or readers only: {outcome}. Close the other connection and run again"
    )


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

"""Running dlt for a load: the pipeline's name, its settings, one chunk's run, and SIGTERM.

`pipelines.load` drives the chunks; this module holds what only concerns dlt itself: which
pipeline (and so which working state) a file gets, the settings a load runs with, surfacing
our own errors from dlt's wrapping exceptions, and DuckDB running out of its capped memory.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dlt
import duckdb
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.eachlabs.errors import EachlabsError
from pipelines.target import (
    DUCKDB_MEMORY_LIMIT_MB,
    is_out_of_memory,
    lock_conflict,
    locked_error,
    memory_ceiling_mb,
    set_memory_limit,
)

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")


def pipeline_name_for(db_path: Path, dataset: str) -> str:
    """A dlt pipeline name unique to the DuckDB file and dataset.

    dlt keeps pending load packages per pipeline name; keying the name by the file means an
    interrupted load into one file is never replayed into another.
    """
    digest = hashlib.sha1(str(db_path.resolve()).encode()).hexdigest()[:10]
    return f"eachlabs_{dataset}_{digest}"


def sigterm_as_interrupt(function: Callable[..., _Result]) -> Callable[..., _Result]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> _Result:
        with _terminate_as_interrupt():
            return function(*args, **kwargs)

    return wrapper


def load_chunk(pipeline: dlt.Pipeline, source: Any, connection: duckdb.DuckDBPyConnection) -> bool:
    """Run one chunk through dlt (`source` None: only the pending package). If DuckDB runs
    out of its capped memory (a single execution of many MB can), finish the chunk's pending
    package with the cap lifted to half the machine's memory; `checkpoint` caps it again.
    Returns whether a package was loaded."""
    try:
        return run_pipeline(pipeline, source) is not None
    except PipelineStepFailed as exc:
        ceiling_mb = memory_ceiling_mb()
        if not is_out_of_memory(exc) or DUCKDB_MEMORY_LIMIT_MB >= ceiling_mb:
            raise
    log.info("DuckDB ran out of memory in a chunk; finishing it with %d MiB", ceiling_mb)
    set_memory_limit(connection, ceiling_mb)
    return run_pipeline(pipeline, None) is not None  # the chunk's package is normalised


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


@contextmanager
def dlt_settings() -> Iterator[None]:
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


def run_pipeline(pipeline: dlt.Pipeline, source: Any, **run_options: Any) -> Any:
    """Run dlt, surfacing our own errors (e.g. AuthError) from dlt's wrapping exception.
    `run_options` go to `pipeline.run` (e.g. `loader_file_format`)."""
    try:
        return pipeline.run(source, **run_options)
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

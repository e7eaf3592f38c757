"""The embedded default: a DuckDB file.

The file's helpers (name checks, clear open errors, DuckDB's memory cap and checkpoints) are
in `pipelines.target`; this module puts them behind the `Target` interface: the load lock
beside the file, one DuckDB instance held for the whole run, a checkpoint after each chunk,
and a file this run created removed again if it holds no row when the run fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipelines.eachlabs.helpers import FetchReport
from pipelines.lock import load_lock
from pipelines.target import (
    LARGE_VALUE_BYTES,
    Checkpoints,
    check_demo_target,
    check_target,
    chunk_memory_mb,
    connect_duckdb,
    holds_no_rows,
    mark_demo_file,
    remove_database,
    set_memory_limit,
    writer_settings,
)
from pipelines.targets.base import Db, Session, Target


class DuckDb(Db):
    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, list(params)).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(sql, list(params))

    def epoch_us(self, expression: str) -> str:
        return f"epoch_us({expression})"

    def from_epoch_us(self, expression: str) -> str:
        return f"make_timestamptz({expression})"

    def text_array(self) -> str:
        return "cast(? as varchar[])"

    def bigint_array(self) -> str:
        return "cast(? as bigint[])"


class DuckDbSession(Session):
    def __init__(self, connection: duckdb.DuckDBPyConnection, dataset: str, created: bool):
        self.connection = connection
        self.db = DuckDb(connection)
        self.created = created
        self._dataset = dataset
        self.checkpoints = Checkpoints(connection, dataset)

    def load_chunk(self, pipeline: Any, source: Any) -> bool:
        from pipelines.dlt_run import load_chunk

        loaded = load_chunk(pipeline, source, self.connection)
        if source is None and loaded:  # a pending package: its sizes are unknown
            self.checkpoints.after_chunk(largest_body_bytes=LARGE_VALUE_BYTES)
        return loaded

    def on_fetched(self, report: FetchReport) -> None:
        # Before dlt loads the chunk: room for its text.
        set_memory_limit(self.connection, chunk_memory_mb(report))

    def after_chunk(self, largest_body_bytes: int) -> None:
        # The chunk's rows go into the file now: memory is bounded by the chunk however large
        # the file grows (see `writer_settings`).
        self.checkpoints.after_chunk(largest_body_bytes)

    def apply_views(self) -> list[str]:
        from pipelines.views import apply_views

        return apply_views(self.connection, self._dataset)

    def final(self) -> None:
        self.checkpoints.final()


class DuckDbTarget(Target):
    """A DuckDB file (created if missing)."""

    name = "duckdb"

    def __init__(self, db_path: Path, dataset: str) -> None:
        super().__init__(dataset)
        self.db_path = db_path

    def check(self) -> None:
        check_target(self.db_path, self.dataset)

    def describe(self) -> str:
        return f"the DuckDB file {self.db_path}"

    def foreign_executions(self) -> int:
        return check_demo_target(self.db_path, self.dataset, allow_existing=True)

    def mark_demo(self) -> None:
        mark_demo_file(self.db_path, self.dataset)

    def pipeline_name(self) -> str:
        from pipelines.dlt_run import pipeline_name_for

        return pipeline_name_for(self.db_path, self.dataset)

    def dlt_destination(self) -> Any:
        import dlt

        return dlt.destinations.duckdb(str(self.db_path))

    @contextmanager
    def session(self, lock_wait_s: float) -> Iterator[Session]:
        # The load lock comes before anything else, dlt's working directory included (see
        # pipelines/lock.py). The run then holds the file from start to end (opening it is
        # also the early check that it can be written): dlt's loads of the chunks share this
        # one DuckDB instance, whose settings the run chooses (`writer_settings`).
        with load_lock(self.db_path, lock_wait_s) as lock:
            is_new_file = not self.db_path.exists()
            created = False
            try:
                with connect_duckdb(self.db_path) as connection, writer_settings(connection):
                    created = is_new_file  # opened, so created by this run if it was new
                    yield DuckDbSession(connection, self.dataset, created)
            except BaseException:
                # Nothing was loaded into a file this run created: leave no empty file for
                # `report` to stumble on. A file holding any row (a committed chunk, or part
                # of one the next run completes) is kept, as is every file that existed.
                if created and holds_no_rows(self.db_path, self.dataset):
                    remove_database(self.db_path)
                    if lock.created:
                        lock.remove_when_released()
                raise

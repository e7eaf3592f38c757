"""The report on either destination: `eachlabs-pipeline report --destination postgres`.

The same simulated executions are loaded through the CLI into a DuckDB file and into a real
PostgreSQL database (the test worker's server), and `report --out` runs on both: the terminal
reports must be identical, the notebook's tables and the data behind every chart the same,
the PostgreSQL session read-only and closed once the views are read, and the server's
password in no output.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import nbformat
import psycopg2
import psycopg2.errors
import pytest
from postgres_server import PostgresServer
from simulator_fixtures import start_simulator
from workspace import CliResult, Workspace, make_workspace

from pipelines.notebook import FIGURES, figure_outputs, table_outputs
from pipelines.report import read_frames, read_report

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS_ENV = "DESTINATION__POSTGRES__CREDENTIALS"


@dataclass(frozen=True)
class BothReports:
    """`report --out` on the same data in a DuckDB file and in a PostgreSQL database."""

    workspace: Workspace
    server: PostgresServer
    dbname: str
    duckdb: CliResult
    postgres: CliResult
    duckdb_out: Path
    postgres_out: Path

    @property
    def credentials(self) -> dict[str, str]:
        return self.server.credentials_env(self.dbname)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> BothReports:
    """300 simulated executions loaded by workflow (names, costs, dry runs, soft-deleted
    executions) into both destinations from one simulator, whose clock stands still, then
    the report on each: DuckDB in process, PostgreSQL as the installed command in its own
    process (its real stdout and stderr)."""
    workspace = make_workspace(tmp_path_factory.mktemp("report-both"))
    dbname = postgres_server.create_database(f"report_both_{uuid4().hex[:8]}")
    credentials = postgres_server.credentials_env(dbname)
    simulator = start_simulator(executions=300, seed=42)
    try:
        workflows = [arg for wf in simulator.workflow_ids for arg in ("--workflow", wf)]
        for extra, env in (([], {}), (["--destination", "postgres"], credentials)):
            loaded = workspace.load(simulator, extra=[*workflows, "--quiet", *extra], env=env)
            assert loaded.returncode == 0, f"{extra}: {loaded.stdout}\n{loaded.stderr}"
    finally:
        simulator.stop()
    runtime = {"JUPYTER_RUNTIME_DIR": str(workspace.root / "jupyter-runtime")}
    duckdb_out, postgres_out = workspace.root / "reports-duckdb", workspace.root / "reports-pg"
    from_duckdb = workspace.run(
        "report", "--db", str(workspace.db_path), "--out", str(duckdb_out), env=runtime
    )
    from_postgres = workspace.run_process(
        "report", "--destination", "postgres", "--out", str(postgres_out),
        env={**runtime, **credentials},
    )  # fmt: skip
    for result in (from_duckdb, from_postgres):
        assert result.returncode == 0, f"report failed:\n{result.stdout}\n{result.stderr}"
    return BothReports(
        workspace, postgres_server, dbname, from_duckdb, from_postgres, duckdb_out, postgres_out
    )


def terminal_part(stdout: str) -> tuple[str, str]:
    """(first line, the rest of the terminal report) of `report --out`'s stdout."""
    first, _, rest = stdout.partition("\n")
    return first, rest.split("\nreport written to ")[0]


def same(left: Any, right: Any) -> bool:
    """Equal, floats to 1e-9 relative: a percentile or a sum of doubles may differ in its
    last bits between the two databases."""
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def plotted(out: Path, figure: str) -> Any:
    """The data a chart plots, as the notebook wrote it into its PNG (text chunk `Data`)."""
    from PIL import Image

    with Image.open(out / f"{figure}.png") as image:
        text = image.text.get("Data")
    return None if text is None else json.loads(text)


def test_terminal_report_is_the_same_from_postgres(both: BothReports) -> None:
    duckdb_first, duckdb_rest = terminal_part(both.duckdb.stdout)
    postgres_first, postgres_rest = terminal_part(both.postgres.stdout)
    assert (
        duckdb_first == f"Model performance (views in schema eachlabs of {both.workspace.db_path}):"
    )
    assert postgres_first == (
        "Model performance (views in schema eachlabs of PostgreSQL database "
        f"{both.dbname} on {both.server.host}:{both.server.port}):"
    )
    assert postgres_rest == duckdb_rest
    # The data has names, costs and left-out executions, so every part of the report is shown.
    assert "no execution with a known cost" not in duckdb_rest
    assert re.search(r"left out of every figure, as in the views: [1-9]", duckdb_rest)


def test_notebook_tables_and_charts_are_the_same_from_postgres(both: BothReports) -> None:
    notebooks = [
        nbformat.read(out / "model_performance.ipynb", as_version=4)
        for out in (both.duckdb_out, both.postgres_out)
    ]
    duckdb_tables, postgres_tables = (table_outputs(notebook) for notebook in notebooks)
    assert list(postgres_tables) == list(duckdb_tables)
    assert len(duckdb_tables) >= 7
    for name, rows in duckdb_tables.items():
        assert rows, name
        assert same(postgres_tables[name], rows), name
    for notebook in notebooks:
        assert list(figure_outputs(notebook)) == list(FIGURES)
    charted = 0
    for figure in FIGURES:
        from_duckdb = plotted(both.duckdb_out, figure)
        assert same(plotted(both.postgres_out, figure), from_duckdb), figure
        charted += from_duckdb is not None
    assert charted >= 6  # the charts that carry their data
    html = (both.postgres_out / "model_performance.html").read_text(encoding="utf-8")
    assert (
        f"Data: <code>PostgreSQL database {both.dbname} on {both.server.host}:"
        f"{both.server.port}</code>, schema <code>eachlabs</code>"
    ) in html
    [injected] = [
        cell.source
        for cell in notebooks[1].cells
        if "injected-parameters" in cell.metadata.get("tags", [])
    ]
    assert re.findall(r"^(\w+) =", injected, re.M) == ["destination", "dataset"]
    assert "destination = 'postgres'" in injected


def test_the_password_is_in_no_output(both: BothReports) -> None:
    password = both.server.password.encode()
    written = sorted(both.postgres_out.iterdir())
    assert {path.name for path in written} >= {"model_performance.html", "model_performance.ipynb"}
    for path in written:  # the page, the executed notebook, every PNG and its text chunks
        assert password not in path.read_bytes(), path.name
    assert both.server.password not in both.postgres.stdout + both.postgres.stderr
    assert "Traceback" not in both.postgres.stderr


def test_the_report_reads_postgres_read_only_and_closes_its_connection(
    both: BothReports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIALS_ENV, both.credentials[CREDENTIALS_ENV])
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        read_frames(
            None, "eachlabs", {"write": "create table {schema}.written as select 1 as one"},
            destination="postgres",
        )  # fmt: skip
    frames = read_report(None, "eachlabs", destination="postgres")
    assert not frames["headline"].empty
    connection = both.server.connect(both.dbname)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select count(*) from pg_stat_activity "
                "where application_name = 'eachlabs-pipeline report' and datname = %s",
                [both.dbname],
            )
            assert cursor.fetchone() == (0,)
            cursor.execute("select to_regclass('eachlabs.written')")
            assert cursor.fetchone() == (None,)
    finally:
        connection.close()


@pytest.mark.parametrize("case", ["no credentials", "wrong password", "no views"])
def test_a_postgres_report_that_cannot_read_is_one_clear_line(
    case: str, postgres_db, tmp_path: Path
) -> None:
    server, dbname = postgres_db
    env = server.credentials_env(dbname)  # a fresh database: no tables, no views
    if case == "no credentials":
        env = {}
    elif case == "wrong password":
        env = {CREDENTIALS_ENV: env[CREDENTIALS_ENV].replace(server.password, "not-it")}
    out = tmp_path / "r"
    result = make_workspace(tmp_path).run(
        "report", "--destination", "postgres", "--out", str(out), env=env
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    expected: Callable[[str], bool] = {
        "no credentials": lambda text: "no usable PostgreSQL credentials" in text,
        "wrong password": lambda text: (
            "cannot connect to PostgreSQL database" in text
            and "password authentication failed" in text
        ),
        "no views": lambda text: (
            f"PostgreSQL database {dbname} on " in text
            and "lacks the views execution_runs, step_runs, " in text
            and "run `eachlabs-pipeline views --destination postgres --dataset eachlabs`" in text
        ),
    }[case]
    assert expected(line), line
    assert server.password not in result.stdout + result.stderr
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("variables", "destination"), [([], "duckdb"), (["DESTINATION=postgres"], "postgres")]
)
def test_make_report_passes_the_destination(variables: list[str], destination: str) -> None:
    dry_run = subprocess.run(
        ["make", "-n", "report", *variables],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f'eachlabs-pipeline report --destination "{destination}" --db ' in dry_run.stdout

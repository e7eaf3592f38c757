"""The command itself: version, usage, `views` errors, and the signals a scheduler reads."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import duckdb
import pytest
from payloads import execution, model_step

from pipelines.simulator import FaultConfig
from pipelines.target import DEMO_MARK

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_version_names_the_installed_package(workspace) -> None:
    result = workspace.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"eachlabs-pipeline {version('eachlabs-pipeline')}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_works_before_or_after_the_subcommand(simulator_factory, workspace, where) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    extra = ["-v"] if where == "after" else []
    args = ["-v", "load"] if where == "before" else ["load"]
    result = workspace.run(
        *args, "e", "--db", str(workspace.db_path), "--base-url", simulator.base_url, *extra,
        env={"SOURCES__EACHLABS__API_KEY": simulator.api_key},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr
    assert simulator.api_key not in result.stderr + result.stdout


@pytest.mark.parametrize("command", ["load", "views", "demo"])
def test_a_mistyped_flag_shows_the_subcommands_usage(workspace, command: str) -> None:
    result = workspace.run(command, "--dbb", "x.duckdb")
    assert result.returncode == 1
    assert result.stderr.startswith(f"usage: eachlabs-pipeline {command} ")
    assert "unrecognized arguments: --dbb" in result.stderr


def test_views_help_does_not_claim_to_load(workspace) -> None:
    result = workspace.run("views", "--help")
    assert result.returncode == 0
    assert "load into" not in result.stdout
    assert "DuckDB file holding the loaded tables" in result.stdout


@pytest.mark.parametrize(
    ("problem", "message", "exit_code"),
    [
        ("locked", "DuckDB allows one writer at a time", 3),
        ("folder", "is a folder, not a DuckDB file", 1),
        ("not-duckdb", "is not a DuckDB database file", 1),
        ("missing", "run `eachlabs-pipeline load` first", 1),
    ],
)
def test_views_command_errors_are_one_clear_line(
    workspace, hold_duckdb_file, problem: str, message: str, exit_code: int
) -> None:
    db_path = workspace.db_path
    if problem == "locked":
        hold_duckdb_file(db_path)
    elif problem == "folder":
        db_path.mkdir()
    elif problem == "not-duckdb":
        db_path.write_text("id\nabc\n")
    result = workspace.run("views", "--db", str(db_path))
    assert result.returncode == exit_code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if problem == "not-duckdb":
        assert db_path.read_text() == "id\nabc\n"


def test_views_failure_says_the_tables_are_unchanged(monkeypatch, tmp_path, capsys) -> None:
    from pipelines import cli, views

    db_path = tmp_path / "data.duckdb"
    duckdb.connect(str(db_path)).close()

    def broken(connection, dataset):
        raise views.ViewApplyError("sql/x.sql: view x failed: boom")

    monkeypatch.setattr(views, "apply_views", broken)
    assert cli.main(["views", "--db", str(db_path)]) == 1
    err = capsys.readouterr().err
    assert "applying the SQL views failed (the tables are unchanged): sql/x.sql" in err
    assert "loaded data is kept" not in err


def test_every_id_unknown_exits_2_and_suggests_the_base_url(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    result = workspace.load(simulator, "gone-1", "gone-2", "gone-3")
    assert result.returncode == 2
    assert "not found 3" in result.stdout
    assert "the API knows none of the 3 requested executions (404)" in result.stderr
    assert "--base-url" in result.stderr
    assert workspace.query("select count(*) from eachlabs.fetch_errors") == [(3,)]


def test_some_ids_unknown_is_still_exit_0(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    result = workspace.load(simulator, "e", "gone")
    assert result.returncode == 0, result.stderr
    assert "knows none" not in result.stderr


def test_empty_id_list_says_so_and_touches_no_table(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    assert workspace.load(simulator, "e", "gone").returncode == 0
    before = {
        table: workspace.query(f"select * from eachlabs.{table} order by all")
        for table in ("executions", "step_outputs", "step_params", "fetch_errors", "_dlt_loads")
    }
    assert before["fetch_errors"][0][0] == "gone"
    simulator.clear_request_log()
    ids_file = workspace.root / "ids.txt"
    ids_file.write_text("# nothing new today\n\n")
    result = workspace.load(simulator, extra=["--ids-file", str(ids_file)])
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"{STAMP} no execution IDs given \(the list was empty\): nothing to do, no table changed",
        result.stdout.strip(),
    )
    assert simulator.request_log == []
    for table, rows in before.items():
        assert workspace.query(f"select * from eachlabs.{table} order by all") == rows, table


def test_summary_and_progress_lines_start_with_a_utc_timestamp(
    simulator_factory, workspace
) -> None:
    # Slow enough (12 x 300 ms, one at a time) for progress lines, which come every 2 s.
    simulator = simulator_factory(
        executions=12, running_share=0.0, faults=FaultConfig(latency_ms=300)
    )
    result = workspace.load(simulator, *simulator.execution_ids, extra=["--concurrency", "1"])
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{STAMP} requested 12, loaded 12, .* in \d+\.\ds", result.stdout.strip())
    progress = [line for line in result.stderr.splitlines() if " fetched " in line]
    assert progress, result.stderr
    assert all(re.match(rf"{STAMP} fetched \d+ of 12", line) for line in progress)


def test_dlt_staging_copies_are_emptied_after_each_load(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=20, running_share=0.0)
    assert workspace.load(simulator, *simulator.execution_ids, extra=["-q"]).returncode == 0
    staging = workspace.query(
        "select table_name, estimated_size from duckdb_tables() "
        "where schema_name = 'eachlabs_staging' and table_name not like '_dlt%' order by 1"
    )
    assert [name for name, _ in staging] == ["executions", "step_outputs", "step_params"]
    for name, _ in staging:
        assert workspace.query(f"select count(*) from eachlabs_staging.{name}") == [(0,)], name
    assert workspace.query("select count(*) from eachlabs.executions") == [(20,)]


def test_demo_refuses_a_real_load_file_unless_forced(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("real-1", {"a": model_step("a", "m")}))
    assert workspace.load(simulator, "real-1").returncode == 0
    demo = ["demo", "--executions", "20", "--db", str(workspace.db_path)]

    refused = workspace.run(*demo)
    assert refused.returncode == 1
    assert "already holds 1 executions that no demo wrote" in refused.stderr
    assert "--force" in refused.stderr
    assert workspace.query("select execution_id from eachlabs.executions") == [("real-1",)]

    forced = workspace.run(*demo, "--force")
    assert forced.returncode == 0, forced.stderr
    assert workspace.query("select count(*) from eachlabs.executions") == [(21,)]
    # Forcing does not make the real file look like a demo file.
    assert workspace.run(*demo).returncode == 1


def test_demo_runs_again_on_its_own_file(workspace) -> None:
    db_path = workspace.root / "demo.duckdb"
    for _ in range(2):
        result = workspace.run("demo", "--executions", "20", "--db", str(db_path))
        assert result.returncode == 0, result.stderr
    with duckdb.connect(str(db_path), read_only=True) as connection:
        assert connection.execute("select count(*) from eachlabs.executions").fetchall() == [(20,)]
        assert connection.execute(
            "select comment from duckdb_tables() where table_name = 'executions' "
            "and schema_name = 'eachlabs'"
        ).fetchall() == [(DEMO_MARK,)]


# --- an API that cannot be reached ------------------------------------------------------------

CLOSED_PORT_URL = "http://127.0.0.1:9/api/v1"  # the discard port: nothing listens there


@pytest.mark.parametrize("ids", [["a"], ["a", "b"], [f"id-{n}" for n in range(40)]])
def test_an_unreachable_api_exits_1_whatever_the_number_of_ids(workspace, ids) -> None:
    """Two IDs never make a streak of `concurrency` (16) connection failures: the run still
    ends with exit 1 and the one line, not "failed 2" and exit 2."""
    result = workspace.run(
        "load", *ids, "--db", str(workspace.db_path), "--base-url", CLOSED_PORT_URL,
        env={"SOURCES__EACHLABS__API_KEY": "k", "SOURCES__EACHLABS__MAX_ATTEMPTS": "2"},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot reach {CLOSED_PORT_URL}" in result.stderr
    assert "nothing was loaded" in result.stderr
    assert "failed" not in result.stdout


def _files(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("test.duckdb"))


def test_a_load_that_loaded_nothing_leaves_no_file_it_created(workspace) -> None:
    result = workspace.run(
        "load", "a", "b", "--db", str(workspace.db_path), "--base-url", CLOSED_PORT_URL,
        env={"SOURCES__EACHLABS__API_KEY": "k", "SOURCES__EACHLABS__MAX_ATTEMPTS": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert _files(workspace.root) == []  # no file, no .wal, no .lock
    report = workspace.run("report", "--db", str(workspace.db_path))
    assert report.returncode == 1 and "no DuckDB file at" in report.stderr


def test_a_failed_load_leaves_a_file_that_existed_as_it_was(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    assert workspace.load(simulator, "e").returncode == 0
    before = workspace.query("select execution_id, status from eachlabs.executions")
    result = workspace.run(
        "load", "x", "--db", str(workspace.db_path), "--base-url", CLOSED_PORT_URL,
        env={"SOURCES__EACHLABS__API_KEY": "k", "SOURCES__EACHLABS__MAX_ATTEMPTS": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert _files(workspace.root) == ["test.duckdb", "test.duckdb.lock"]
    assert workspace.query("select execution_id, status from eachlabs.executions") == before


def test_after_an_unreachable_run_the_same_file_loads_normally(simulator_factory, workspace):
    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))
    env = {"SOURCES__EACHLABS__API_KEY": simulator.api_key, "SOURCES__EACHLABS__MAX_ATTEMPTS": "1"}
    failed = workspace.run(
        "load", "e", "--db", str(workspace.db_path), "--base-url", CLOSED_PORT_URL, env=env
    )
    assert failed.returncode == 1
    assert workspace.load(simulator, "e").returncode == 0
    assert workspace.query("select execution_id from eachlabs.executions") == [("e",)]


def test_wait_ready_returns_once_the_simulator_answers(simulator, workspace) -> None:
    result = workspace.run("wait-ready", simulator.base_url, "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_wait_ready_gives_up_with_one_line(workspace) -> None:
    result = workspace.run("wait-ready", CLOSED_PORT_URL, "--timeout", "0.3")
    assert result.returncode == 1
    assert f"nothing answered at {CLOSED_PORT_URL} within 0.3 s" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _python(code: str) -> str:
    """What a fresh Python process running `code` prints (it must exit 0)."""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return completed.stdout


def test_help_and_version_import_neither_dlt_duckdb_nor_pandas() -> None:
    """What keeps `--help` and `--version` quick (make bench section 7 times them): the parser
    is built without importing the heavy libraries; each command imports what it needs."""
    probe = (
        "import sys\n"
        "from pipelines import cli\n"
        "cli.build_parser()\n"
        "print(sorted(m for m in ('dlt', 'duckdb', 'pandas', 'pyarrow', 'requests')"
        " if m in sys.modules))\n"
    )
    assert _python(probe).strip() == "[]"


def test_the_summary_counts_from_the_process_start() -> None:
    """The installed command's summary time includes interpreter start-up and imports: the
    clock starts when the process did, not when `main` runs."""
    probe = (
        "import time\n"
        "time.sleep(0.5)\n"
        "from pipelines.cli import _process_started_at\n"
        "print(time.monotonic() - _process_started_at())\n"
    )
    assert float(_python(probe)) >= 0.5  # a lower bound: a busy machine only adds to it


def test_an_interrupt_right_after_the_first_commit_keeps_the_new_file(
    simulator_factory, workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between dlt's commit of a chunk and the run's own bookkeeping: the file this run
    created holds committed rows, so it is kept (only a file with no row is removed)."""
    import pipelines.target

    simulator = simulator_factory(executions=0)
    simulator.put_execution(execution("e", {"a": model_step("a", "m")}))

    def interrupted(self, largest_body_bytes: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipelines.target.Checkpoints, "after_chunk", interrupted)
    result = workspace.load(simulator, "e")
    assert result.returncode == 130
    assert workspace.query("select execution_id from eachlabs.executions") == [("e",)]


def test_wait_ready_ignores_a_proxy_in_the_environment(simulator, workspace) -> None:
    """A proxy answers for any URL; its answer must not pass for the simulator's."""
    proxy = simulator.base_url.removesuffix("/api/v1")
    result = workspace.run(
        "wait-ready", CLOSED_PORT_URL, "--timeout", "0.3",
        env={"http_proxy": proxy, "HTTP_PROXY": proxy},
    )  # fmt: skip
    assert result.returncode == 1
    assert "nothing answered at" in result.stderr

"""The Dagster definitions (pipelines/orchestration/dagster.py) run against the simulator:
materialised in process twice, with failing IDs, through the `dagster` CLI in its own
process, and loaded by `dagster definitions validate`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from listing_helpers import detail_requests
from webhook_fixtures import wait_until
from workspace import isolated_env, isolated_process_state

from pipelines.orchestration import dagster as orchestration
from pipelines.orchestration import job
from pipelines.simulator import Simulator

EXECUTIONS = 300
KEY = "dagster-test-key-7f3c9e"  # distinctive: must appear in no output or event
TABLES = ["executions", "step_outputs", "step_params", "fetch_errors"]
VIEWS = [view.name for view in orchestration.VIEWS]
REPORTING_VIEWS = [view.name for view in orchestration.VIEWS if view.kind == "reporting"]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def dagster_bin() -> str:
    found = Path(sys.executable).with_name("dagster")
    if not found.exists():
        pytest.fail("no `dagster` command beside this Python: run `make install` (.[dev])")
    return str(found)


@dataclass
class Run:
    """What one run of the job did, read from its events."""

    success: bool
    materialized: dict[str, dict[str, Any]]  # asset name -> metadata values
    data_versions: dict[str, str]
    checks: dict[str, dg.AssetCheckEvaluation]
    logs: str


def settings_env(root: Path, simulator: Simulator, **more: str) -> dict[str, str]:
    env = isolated_env(root / "dlt-data")
    env.update(
        {
            "SOURCES__EACHLABS__BASE_URL": simulator.base_url,
            "SOURCES__EACHLABS__API_KEY": simulator.api_key,
            "ORCHESTRATION__WORKFLOWS": json.dumps(simulator.workflow_ids),
            "ORCHESTRATION__DB_PATH": str(root / "dagster.duckdb"),
            "ORCHESTRATION__REPORT_DIR": str(root / "reports"),
            **more,
        }
    )
    return env


def run_job(root: Path, env: dict[str, str], instance: dg.DagsterInstance) -> Run:
    """The whole graph (`eachlabs_job`), in this process, with `env` as its environment."""
    job_def = orchestration.defs.resolve_job_def(orchestration.JOB_NAME)
    with isolated_process_state(root, env, None) as (out, err):
        result = job_def.execute_in_process(instance=instance, raise_on_error=False)
    materialized, versions = {}, {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        name = materialization.asset_key.path[-1]
        materialized[name] = {k: v.value for k, v in materialization.metadata.items()}
        if "dagster/data_version" in materialization.tags:
            versions[name] = materialization.tags["dagster/data_version"]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    events = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    return Run(
        result.success, materialized, versions, checks, out.getvalue() + err.getvalue() + events
    )


@pytest.fixture
def make_simulator(simulator_factory: Callable[..., Simulator]) -> Callable[..., Simulator]:
    def make(**config: Any) -> Simulator:
        return simulator_factory(executions=EXECUTIONS, start_time=_now(), api_key=KEY, **config)

    return make


def stored(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_the_whole_graph_twice_loads_once_then_only_unfinished_executions(
    tmp_path: Path, make_simulator: Callable[..., Simulator]
) -> None:
    simulator = make_simulator()
    env = settings_env(tmp_path, simulator)
    db_path = tmp_path / "dagster.duckdb"
    instance = dg.DagsterInstance.ephemeral()

    first = run_job(tmp_path, env, instance)
    assert first.success, first.logs[-3000:]
    assert sorted(first.materialized) == sorted([*TABLES, *VIEWS, "model_performance_report"])
    executions = first.materialized["executions"]
    assert executions["requested"] == executions["loaded"] == EXECUTIONS
    assert (executions["failed"], executions["not_found"], executions["rejected"]) == (0, 0, 0)
    assert executions["listed"] == EXECUTIONS
    assert executions["elapsed_s"] > 0
    for table in TABLES:  # each table's row count, as stored
        (count,) = stored(db_path, f"select count(*) from eachlabs.{table}")[0]
        assert first.materialized[table]["dagster/row_count"] == count
    assert first.materialized["fetch_errors"]["dagster/row_count"] == 0
    for view in VIEWS:
        (count,) = stored(db_path, f"select count(*) from eachlabs.{view}")[0]
        assert first.materialized[view]["dagster/row_count"] == count, view
    for view in REPORTING_VIEWS:  # a view's data version is the fingerprint of its rows
        assert first.data_versions[view] == first.materialized[view]["fingerprint"]
    report = Path(first.materialized["model_performance_report"]["path"])
    assert report == (tmp_path / "reports" / "model_performance.html").resolve()
    assert "<html" in report.read_text(encoding="utf-8")[:2000].lower()

    share = first.checks["fetch_error_share"]
    assert share.passed and share.metadata["share"].value == 0.0
    assert share.metadata["requested"].value == EXECUTIONS
    assert first.checks["fresh"].passed
    # The simulator's data set has models that got worse; the warning names exactly those.
    worse = first.checks["nothing_got_worse"]
    flagged = stored(
        db_path,
        "select model from eachlabs.model_recent_changes "
        "where latency_regressed or failures_regressed order by model",
    )
    assert flagged, "the simulated data set should hold a model that got worse"
    assert not worse.passed and worse.severity == dg.AssetCheckSeverity.WARN
    assert sorted(worse.metadata["models"].value) == [model for (model,) in flagged]
    assert all(model in worse.description for (model,) in flagged)

    running = {
        execution_id
        for (execution_id,) in stored(
            db_path, "select execution_id from eachlabs.executions where status = 'running'"
        )
    }
    assert running, "the simulated data set should hold running executions"
    simulator.clear_request_log()
    second = run_job(tmp_path, env, instance)

    assert second.success, second.logs[-3000:]
    fetched = detail_requests(simulator)
    # No finished execution is requested again: only the ones still running.
    assert sorted(fetched) == sorted(running)
    executions = second.materialized["executions"]
    assert executions["loaded"] == len(running)
    assert executions["requested"] == executions["loaded"] + executions["skipped_final"]
    assert all(check.passed for name, check in second.checks.items() if name != "nothing_got_worse")
    assert not second.checks["nothing_got_worse"].passed  # the same models, still worse
    # Nothing changed, so no view did: the same data version as the first run.
    for view in REPORTING_VIEWS:
        assert second.data_versions[view] == first.data_versions[view], view
    assert KEY not in first.logs + second.logs


def test_a_run_with_failing_ids_fails_the_fetch_errors_check_with_its_share(
    tmp_path: Path, make_simulator: Callable[..., Simulator]
) -> None:
    probe = make_simulator()
    failing = sorted(probe.execution_ids)[::20]  # 5% of the IDs: 15 of 300
    probe.stop()
    simulator = make_simulator(faults={"fail_ids": {i: [503] * 10 for i in failing}})
    env = settings_env(tmp_path, simulator, SOURCES__EACHLABS__MAX_ATTEMPTS="2")

    run = run_job(tmp_path, env, dg.DagsterInstance.ephemeral())

    assert not run.success  # a blocking check: the run is not green
    check = run.checks["fetch_error_share"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["share"].value == pytest.approx(0.05)
    assert (check.metadata["fetch_errors"].value, check.metadata["requested"].value) == (15, 300)
    assert "15 of 300 requested IDs in fetch_errors (5.00%)" in check.description
    # The rows that could be loaded are committed; the views and the report wait for a fix.
    assert run.materialized["executions"]["failed"] == 15
    (stored_rows,) = stored(
        tmp_path / "dagster.duckdb", "select count(*) from eachlabs.executions"
    )[0]
    assert stored_rows == 285
    errors = stored(
        tmp_path / "dagster.duckdb", "select execution_id, http_status from eachlabs.fetch_errors"
    )
    assert sorted(errors) == [(i, 503) for i in failing]
    assert "model_performance_report" not in run.materialized
    assert "blocking asset check" in run.logs


def test_a_run_under_the_limit_passes_the_check(
    tmp_path: Path, make_simulator: Callable[..., Simulator]
) -> None:
    probe = make_simulator()
    failing = sorted(probe.execution_ids)[:3]  # 1% of 300: at the limit, not over it
    probe.stop()
    simulator = make_simulator(faults={"fail_ids": {i: [503] * 10 for i in failing}})
    env = settings_env(tmp_path, simulator, SOURCES__EACHLABS__MAX_ATTEMPTS="1")
    env["ORCHESTRATION__REPORT_DIR"] = str(tmp_path / "reports")

    run = run_job(tmp_path, env, dg.DagsterInstance.ephemeral())

    check = run.checks["fetch_error_share"]
    assert check.passed and check.metadata["share"].value == pytest.approx(0.01)
    assert run.success


def process_env(root: Path, simulator: Simulator) -> dict[str, str]:
    """The environment of a `dagster` process: the settings, and a Dagster home of its own."""
    home = root / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**settings_env(root, simulator), "DAGSTER_HOME": str(home)}


def run_dagster(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dagster_bin(), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_dagster_cli_materialises_every_asset_in_its_own_process(
    tmp_path: Path, make_simulator: Callable[..., Simulator]
) -> None:
    simulator = make_simulator()
    env = process_env(tmp_path, simulator)

    done = run_dagster(
        tmp_path, env, "asset", "materialize", "-m", orchestration.__name__, "--select", "*"
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    # One process runs the steps one after another: never a check reading the DuckDB file
    # while the views step writes it.
    assert "Executing steps in process" in done.stderr
    assert "multiprocess" not in done.stderr
    db_path = tmp_path / "dagster.duckdb"
    assert stored(db_path, "select count(*) from eachlabs.executions") == [(EXECUTIONS,)]
    assert stored(db_path, "select count(*) from eachlabs.fetch_errors") == [(0,)]
    assert (tmp_path / "reports" / "model_performance.html").is_file()
    assert "Asset check 'fetch_error_share' on 'eachlabs/fetch_errors' passed" in done.stderr
    assert KEY not in done.stdout + done.stderr
    for path in (tmp_path / "dagster-home").rglob("*"):  # Dagster's run and event storage
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_the_make_dagster_launcher_points_dagster_at_its_simulator(tmp_path: Path) -> None:
    """`make dagster` runs `python -m pipelines.orchestration.dev dev`; any other dagster
    command goes the same way: here the tables alone, loaded from the launcher's simulator."""
    env = isolated_env(tmp_path / "dlt-data")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.orchestration.dev", "asset", "materialize",
         "--select", "group:eachlabs_tables"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulator serving 1000 executions of 8 workflows" in done.stdout
    stored_rows = stored(
        tmp_path / "eachlabs_dagster.duckdb", "select count(*) from eachlabs.executions"
    )
    assert stored_rows == [(1000,)]
    assert (tmp_path / ".dagster" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    # The launcher's simulator key reached dagster in its environment, never the screen.
    assert "SOURCES__EACHLABS__API_KEY" not in done.stdout + done.stderr


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_make_dagster_serves_the_graph_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`make dagster`'s command as a background job (SIGINT ignored, as a shell starts it):
    the UI serves every asset and check, and SIGTERM stops dagster and its processes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipelines.orchestration.dev", "dev", "-p", str(port)],
        cwd=tmp_path, env=isolated_env(tmp_path / "dlt-data"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        wait_until(lambda: _serves(f"http://127.0.0.1:{port}/server_info"))
        query = b'{"query": "{ assetNodes { assetKey { path } hasAssetChecks } }"}'
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql", query, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            nodes = json.load(answer)["data"]["assetNodes"]
        assert len(nodes) == len(TABLES) + len(VIEWS) + 1
        checked = sorted(node["assetKey"]["path"][-1] for node in nodes if node["hasAssetChecks"])
        assert checked == ["executions", "fetch_errors", "model_recent_changes"]
        launcher.send_signal(signal.SIGTERM)
        output, _ = launcher.communicate(timeout=120)
    finally:  # whatever failed, nothing of the session outlives the test
        for pid in _session_processes(launcher.pid):
            os.kill(pid, signal.SIGKILL)
    assert launcher.returncode == 0, output[-3000:]
    assert "Dagster services shut down" in output
    # Nothing of the session is left running (webserver, daemon, code server).
    wait_until(lambda: not _session_processes(launcher.pid))


def _session_processes(session: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _session_of(entry) == session
    ]


def _session_of(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[4])
    except (OSError, IndexError, ValueError):
        return None


def test_the_definitions_validate(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path / "dlt-data"), "DAGSTER_HOME": str(tmp_path)}
    done = run_dagster(tmp_path, env, "definitions", "validate", "-m", orchestration.__name__)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_importing_pipelines_never_imports_dagster() -> None:
    code = (
        "import sys, pipelines, pipelines.cli, pipelines.load, pipelines.report, "
        "pipelines.orchestration, pipelines.orchestration.job, pipelines.orchestration.dev\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def schedule_of(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "from pipelines.orchestration.dagster import eachlabs_schedule as s\n"
        "print(s.cron_schedule, s.execution_timezone, s.job_name)"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_the_schedule_runs_the_whole_job_every_15_minutes_unless_set(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    assert schedule_of(env).stdout.split() == ["*/15", "*", "*", "*", "*", "UTC", "eachlabs_job"]
    hourly = schedule_of({**env, "ORCHESTRATION__CRON": "0 * * * *"})
    assert hourly.stdout.split()[:5] == ["0", "*", "*", "*", "*"]
    bad = schedule_of({**env, "ORCHESTRATION__CRON": "every hour"})
    assert bad.returncode != 0
    assert "orchestration setting cron = 'every hour' must be a cron string" in bad.stderr


def test_the_schedule_skips_while_a_run_is_still_going() -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance)
        assert isinstance(orchestration.eachlabs_schedule(context), dg.RunRequest)
        instance.add_run(
            dg.DagsterRun(
                job_name=orchestration.JOB_NAME,
                run_id="still-going",
                status=dg.DagsterRunStatus.STARTED,
            )
        )
        skipped = orchestration.eachlabs_schedule(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "still-going" in skipped.skip_message


def test_a_job_with_nothing_to_load_fails_saying_what_to_set(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "dlt-data")
    env["ORCHESTRATION__DB_PATH"] = str(tmp_path / "dagster.duckdb")
    run = run_job(tmp_path, env, dg.DagsterInstance.ephemeral())
    assert not run.success
    assert "names nothing to load: set workflows, ids_file or spool" in run.logs
    assert not (tmp_path / "dagster.duckdb").exists()


def test_freshness_fails_once_the_newest_execution_is_older_than_the_limit(
    tmp_path: Path, make_simulator: Callable[..., Simulator]
) -> None:
    simulator = make_simulator()
    env = settings_env(tmp_path, simulator)
    with isolated_process_state(tmp_path, env, None):
        settings = job.resolve_job_settings()
        job.load(settings)
        (newest,) = stored(
            tmp_path / "dagster.duckdb", "select max(started_at) from eachlabs.executions"
        )[0]
        fresh = job.freshness(settings, now=newest + timedelta(hours=23))
        stale = job.freshness(settings, now=newest + timedelta(hours=25))
    assert fresh.passed and fresh.metadata["age_s"] == 23 * 3600
    assert not stale.passed and stale.metadata["age_s"] == 25 * 3600
    assert stale.description == (
        "the newest execution started 25.0 h ago (older than the limit of 24.0 h)"
    )


def test_a_view_fingerprint_ignores_row_order_and_a_sum_s_last_bits() -> None:
    import pandas as pd

    frame = pd.DataFrame({"model": ["a", "b", "c"], "p95": [1.5, 2.25, 0.1 + 0.2]})
    shuffled = frame.iloc[[2, 0, 1]].reset_index(drop=True)
    noisy = frame.assign(p95=frame["p95"] + 1e-13)
    changed = frame.assign(p95=[1.5, 2.25, 0.31])
    assert job.fingerprint(shuffled) == job.fingerprint(frame) == job.fingerprint(noisy)
    assert job.fingerprint(changed) != job.fingerprint(frame)
    assert job.fingerprint(frame.rename(columns={"p95": "p50"})) != job.fingerprint(frame)


def test_config_toml_lists_every_job_setting_with_its_default() -> None:
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    text = (repo / ".dlt" / "config.toml").read_text(encoding="utf-8")
    config = tomllib.loads(text)["orchestration"]
    defaults = job.JobSettings()
    for name in job.JOB_SETTING_NAMES:
        if getattr(defaults, name) is None:  # no TOML null: shown commented out
            assert f"\n# {name} = " in text, name
        else:
            assert config[name] == getattr(defaults, name), name
    assert set(config) <= set(job.JOB_SETTING_NAMES)


TABLE_KEYS = [dg.AssetKey(["eachlabs", table]) for table in TABLES]


def run_tables(root: Path, env: dict[str, str], run_config: dict[str, Any]) -> Run:
    """Only the tables' step (and its check), with `run_config`, in this process."""
    job_def = orchestration.defs.resolve_job_def(orchestration.JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()
    with isolated_process_state(root, env, None) as (out, err):
        result = job_def.execute_in_process(
            run_config=run_config, instance=instance, asset_selection=TABLE_KEYS,
            raise_on_error=False,
        )  # fmt: skip
    materialized = {
        event.asset_key.path[-1]: {
            k: v.value for k, v in event.event_specific_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return Run(result.success, materialized, {}, checks, out.getvalue() + err.getvalue())


def test_a_run_s_config_chooses_what_to_load_and_where(
    tmp_path: Path, make_simulator: Callable[..., Simulator]
) -> None:
    simulator = make_simulator()
    env = settings_env(tmp_path, simulator)  # the settings name every workflow
    ids = sorted(simulator.execution_ids)[:10]
    (tmp_path / "ids.txt").write_text("# ten IDs\n" + "\n".join(ids) + "\n")
    other = tmp_path / "other.duckdb"
    by_id = {
        "ops": {
            "eachlabs_load": {"config": {"ids_file": str(tmp_path / "ids.txt"), "workflows": []}}
        },
        "resources": {"eachlabs": {"config": {"db_path": str(other)}}},
    }

    run = run_tables(tmp_path, env, by_id)

    assert run.success, run.logs[-3000:]
    assert run.materialized["executions"]["requested"] == 10
    assert "listed" not in run.materialized["executions"]
    assert (
        sorted(i for (i,) in stored(other, "select execution_id from eachlabs.executions")) == ids
    )
    assert not (tmp_path / "dagster.duckdb").exists()  # the setting's file was left alone

    workflow = simulator.workflow_ids[0]
    one_workflow = {"ops": {"eachlabs_load": {"config": {"workflows": [workflow]}}}}
    run = run_tables(tmp_path, env, one_workflow)
    assert run.success, run.logs[-3000:]
    assert stored(
        tmp_path / "dagster.duckdb", "select distinct workflow_id from eachlabs.executions"
    ) == [(workflow,)]


def test_the_tables_and_views_go_to_postgresql(
    tmp_path: Path, make_simulator: Callable[..., Simulator], postgres_db: Any
) -> None:
    server, dbname = postgres_db
    simulator = make_simulator()
    env = {**settings_env(tmp_path, simulator), **server.credentials_env(dbname)}
    env["ORCHESTRATION__DESTINATION"] = "postgres"
    keys = [*TABLE_KEYS, dg.AssetKey(["eachlabs", "execution_runs"]),
            dg.AssetKey(["eachlabs", "workflow_performance"])]  # fmt: skip
    job_def = orchestration.defs.resolve_job_def(orchestration.JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()
    with isolated_process_state(tmp_path, env, None) as (out, err):
        result = job_def.execute_in_process(
            instance=instance, asset_selection=keys, raise_on_error=False
        )
    assert result.success, err.getvalue()[-3000:]
    logs = out.getvalue() + err.getvalue()
    logs += "\n".join(str(record) for record in instance.all_logs(result.run_id))
    assert server.password not in logs and KEY not in logs
    with server.connect(dbname) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from eachlabs.executions")
        assert cursor.fetchone() == (EXECUTIONS,)
        cursor.execute("select count(*) from eachlabs.workflow_performance")
        (workflows,) = cursor.fetchone()
    rows = {
        event.asset_key.path[-1]: event.event_specific_data.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert rows["executions"]["dagster/row_count"].value == EXECUTIONS
    assert rows["workflow_performance"]["dagster/row_count"].value == workflows == 8
    assert not (tmp_path / "dagster.duckdb").exists()

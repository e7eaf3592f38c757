"""The Dagster definitions in their own processes: `dagster asset materialize` and
`dagster definitions validate`, `make dagster`'s launcher, the schedule, and importing
`pipelines` without Dagster."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_helpers import (
    EXECUTIONS,
    KEY,
    TABLES,
    VIEWS,
    dagster_bin,
    dagster_simulator,
    settings_env,
    stored,
)  # fmt: skip
from webhook_fixtures import wait_until
from workspace import isolated_env

from pipelines.orchestration import dagster as orchestration
from pipelines.orchestration import job
from pipelines.simulator import Simulator


def process_env(root: Path, simulator: Simulator) -> dict[str, str]:
    """The environment of a `dagster` process: the settings, and a Dagster home of its own."""
    home = root / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**settings_env(root, simulator), "DAGSTER_HOME": str(home)}


def run_dagster(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`dagster *args` in a session of its own: a time-out kills it and all it started."""
    return run_in_session([dagster_bin(), *args], root, env)


def run_in_session(command: list[str], root: Path, env: dict[str, str]) -> Any:
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=600)
    finally:
        _kill_session(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.timeout(900)  # a load and a report in their own process: minutes under stress
def test_the_dagster_cli_materialises_every_asset_in_its_own_process(
    tmp_path: Path, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = dagster_simulator(simulator_factory)
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
    # A real-looking [orchestration] section must not be touched by the demo's run.
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        '[orchestration]\ndestination = "postgres"\ndataset = "production"\nspool = "spool"\n'
    )
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "spool-1.jsonl").write_text("{}\n")
    command = [sys.executable, "-m", "pipelines.orchestration.dev", "asset", "materialize",
               "--select", "group:eachlabs_tables"]  # fmt: skip
    done = run_in_session(command, tmp_path, env)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulator serving 1000 executions of 8 workflows" in done.stdout
    stored_rows = stored(
        tmp_path / "eachlabs_dagster.duckdb", "select count(*) from eachlabs.executions"
    )
    assert stored_rows == [(1000,)]
    assert (tmp_path / ".dagster" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    assert (tmp_path / "spool" / "spool-1.jsonl").exists()  # not read, not moved


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
        key = _environment_of_dagster(launcher.pid)["SOURCES__EACHLABS__API_KEY"]
        query = b'{"query": "{ assetNodes { assetKey { path } hasAssetChecks } }"}'
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql", query, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            nodes = json.load(answer)["data"]["assetNodes"]
        launcher.send_signal(signal.SIGTERM)
        output, _ = launcher.communicate(timeout=120)
        # Nothing of the session is left running (webserver, daemon, code servers).
        wait_until(lambda: not _session_processes(launcher.pid))
    finally:  # whatever failed, nothing of the session outlives the test
        _kill_session(launcher.pid)
    assert len(nodes) == len(TABLES) + len(VIEWS) + 1
    checked = sorted(node["assetKey"]["path"][-1] for node in nodes if node["hasAssetChecks"])
    assert checked == ["executions", "fetch_errors", "model_recent_changes"]
    assert launcher.returncode == 0, output[-3000:]
    assert "Dagster services shut down" in output
    # The simulator's key reached dagster in its environment only.
    assert len(key) >= 16 and key not in output
    for path in (tmp_path / ".dagster").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def _environment_of_dagster(session: int) -> dict[str, str]:
    for pid in _session_processes(session):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(part.endswith(b"/dagster") for part in command):
            entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            return dict(e.decode().split("=", 1) for e in entries if b"=" in e)
    raise AssertionError("no dagster process in the launcher's session")


def _session_processes(session: int) -> list[int]:
    """The live processes (not zombies) of `session`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            # after the command in parentheses: state, parent, process group, session, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and fields[0] != "Z" and int(fields[3]) == session:
            found.append(int(entry.name))
    return found


def _kill_session(session: int) -> None:
    for pid in _session_processes(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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


@pytest.mark.parametrize("job_name", [orchestration.JOB_NAME, "__ASSET_JOB"])
def test_the_schedule_skips_while_a_loading_run_is_still_going(
    job_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's own runs and "Materialize all" (Dagster's ad hoc `__ASSET_JOB`) both load."""
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance)
        assert isinstance(orchestration.eachlabs_schedule(context), dg.RunRequest)
        going = dg.DagsterRun(
            job_name=job_name, run_id="still-going", status=dg.DagsterRunStatus.STARTED
        )
        instance.add_run(going)
        other = dg.DagsterRun(
            job_name="other_job", run_id="other", status=dg.DagsterRunStatus.STARTED
        )
        instance.add_run(other)
        skipped = orchestration.eachlabs_schedule(context)
        # A run "going" for longer than STALE_RUN_S lost its process: the schedule goes on.
        monkeypatch.setattr(orchestration, "STALE_RUN_S", -60)
        after_stale = orchestration.eachlabs_schedule(context)
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == f"run still-going of {job_name} is still going"
    assert isinstance(after_stale, dg.RunRequest)


def test_settings_are_read_under_their_section_only(tmp_path: Path) -> None:
    """A bare CRON or DATASET in the environment is somebody else's; a bad value is named with
    where it came from; the definitions load with only `cron` read."""
    env = {**isolated_env(tmp_path), "CRON": "not a cron", "DATASET": "elsewhere"}
    code = (
        "from pipelines.orchestration import job\n"
        "s = job.resolve_job_settings()\n"
        "print(s.cron, s.dataset)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["*/15", "*", "*", "*", "*", "eachlabs"], done.stderr
    env["ORCHESTRATION__MAX_FETCH_ERROR_SHARE"] = "lots"
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert (
        "orchestration setting max_fetch_error_share must be a float (from "
        "ORCHESTRATION__MAX_FETCH_ERROR_SHARE or .dlt/config.toml [orchestration])"
    ) in bad.stderr
    assert schedule_of(env).stdout.split()[:5] == ["*/15", "*", "*", "*", "*"]


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

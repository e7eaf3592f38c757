"""Fault suite, process side: the load lock, readers holding the file, real SIGKILLs.

Real processes, a real simulator over HTTP and real DuckDB files; no timed assertions (the
tests wait on events such as "the simulator has seen N requests", never on durations).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.simulator import FaultConfig

TABLES = {
    "executions": "select * exclude (fetched_at) from eachlabs.executions order by all",
    "step_outputs": "select * from eachlabs.step_outputs order by all",
    "step_params": "select * from eachlabs.step_params order by all",
    "fetch_errors": "select * exclude (last_attempt_at) from eachlabs.fetch_errors order by all",
}

HOLD_LOAD_LOCK = """
import sys, time
from pathlib import Path
from pipelines.lock import load_lock
with load_lock(Path(sys.argv[1]), 0):
    print("ready", flush=True)
    time.sleep(120)
"""

TRY_READER = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1], read_only=True).close()
    print("connected")
except duckdb.Error as exc:
    print("refused: " + str(exc).splitlines()[0])
"""


def tables(db_path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db_path), read_only=True) as connection:
        return {name: connection.execute(sql).fetchall() for name, sql in TABLES.items()}


def hold(script: str, db_path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def wait_for(condition, what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


@pytest.fixture
def reference(simulator_factory, tmp_path_factory):
    """The four tables of one uninterrupted load of the given simulator's executions."""

    def load(simulator, workspace) -> dict[str, list[tuple]]:
        root = tmp_path_factory.mktemp("reference")
        db_path = root / "reference.duckdb"
        result = workspace.run(
            "load", *simulator.execution_ids, "--db", str(db_path), "--quiet",
            "--base-url", simulator.base_url,
            env={"SOURCES__EACHLABS__API_KEY": simulator.api_key,
                 "DLT_DATA_DIR": str(root / "dlt")},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return tables(db_path)

    return load


def test_second_load_waits_then_exits_3_naming_the_holder(simulator, workspace) -> None:
    holder = hold(HOLD_LOAD_LOCK, workspace.db_path)
    try:
        result = workspace.load(simulator, "x", extra=["--lock-wait", "0.3"])
    finally:
        stop(holder)
    assert result.returncode == 3
    assert f"another load into {workspace.db_path} is running (PID {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not workspace.db_path.exists()  # nothing was touched
    assert not workspace.dlt_dir.exists()  # not even dlt's working state
    assert simulator.request_log == []


def test_second_load_runs_once_the_first_is_gone(simulator, workspace) -> None:
    holder = hold(HOLD_LOAD_LOCK, workspace.db_path)
    ids = simulator.execution_ids[:5]
    try:
        waiting = workspace.spawn(
            "load", *ids, "--db", str(workspace.db_path), "--base-url", simulator.base_url,
            "--lock-wait", "200", "--quiet",
            env={"SOURCES__EACHLABS__API_KEY": simulator.api_key},
        )  # fmt: skip
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # the load says it waits, then waits
        assert f"another load into {workspace.db_path} is running (PID {holder.pid})" in line
        assert "waiting up to 200 s" in line
        assert waiting.poll() is None and simulator.request_log == []
    finally:
        stop(holder)  # SIGKILL: the OS releases the lock, no stale lock file blocks
    _, stderr = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, stderr
    assert len(workspace.query("select * from eachlabs.executions")) == 5


def all_rows(destination) -> dict[str, list[tuple]]:
    volatile = ("fetched_at", "last_attempt_at")
    return {table: destination.table_rows(table, volatile) for table in TABLES}


@pytest.mark.parametrize("lock_wait", ["0", "200"])
def test_two_concurrent_loads_never_wedge(
    simulator_factory, destination, tmp_path, lock_wait: str
) -> None:
    """Two loads at once into one file or one PostgreSQL dataset: one holds the lock; the
    other exits 3 naming it (`--lock-wait 0`) or waits and then finishes (`--lock-wait 200`).
    Either way the tables equal one uninterrupted load's, and the next run works."""
    workspace = destination.workspace
    simulator = simulator_factory(
        executions=120, seed=9, running_share=0.0, faults=FaultConfig(latency_ms=150)
    )
    args = [
        "load", *simulator.execution_ids, "--db", str(workspace.db_path), "--quiet",
        "--base-url", simulator.base_url, "--concurrency", "2", "--lock-wait", lock_wait,
        *destination.args(),
    ]  # fmt: skip
    env = {"SOURCES__EACHLABS__API_KEY": simulator.api_key, **destination.env()}
    first, second = workspace.spawn(*args, env=env), workspace.spawn(*args, env=env)
    outcomes = [(p.wait(timeout=240), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in outcomes)
    if lock_wait == "0":
        assert codes == [0, 3], outcomes
        [locked_out] = [stderr for code, stderr in outcomes if code == 3]
        assert "another load into" in locked_out and "Traceback" not in locked_out
        assert "(PID " in locked_out
    else:
        assert codes == [0, 0], outcomes  # the second waited for the first
    reference = destination.sibling(tmp_path / "reference")
    assert reference.load(simulator, *simulator.execution_ids, extra=["--quiet"]).returncode == 0
    expected = all_rows(reference)
    assert all_rows(destination) == expected
    again = destination.load(simulator, *simulator.execution_ids, extra=["--quiet"])
    assert again.returncode == 0, again.stderr  # no wedge: the next run works
    assert all_rows(destination) == expected


def test_a_reader_mid_run_is_refused_and_the_load_finishes(
    simulator_factory, workspace, reference
) -> None:
    """A load holds the DuckDB file from start to end (its chunks share one instance), so an
    analyst connecting mid-run is refused with DuckDB's lock error naming the load; the load
    itself is not disturbed. (A reader that holds the file first makes the load exit 3: see
    test_views_command_errors_are_one_clear_line and the load lock tests.)"""
    simulator = simulator_factory(
        executions=60, seed=3, running_share=0.0, faults=FaultConfig(latency_ms=100)
    )
    ids = simulator.execution_ids
    first = workspace.load(simulator, *ids[:5], extra=["--quiet"])  # the file exists
    assert first.returncode == 0, first.stderr
    process = workspace.spawn(
        "load", *ids, "--db", str(workspace.db_path), "--base-url", simulator.base_url,
        "--concurrency", "2", "--quiet",
        env={"SOURCES__EACHLABS__API_KEY": simulator.api_key},
    )  # fmt: skip
    wait_for(lambda: len(simulator.request_log) >= 8, "the load to start fetching")
    reader = subprocess.run(
        [sys.executable, "-c", TRY_READER, str(workspace.db_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=240)
    assert reader.stdout.startswith("refused: "), reader.stdout + reader.stderr
    assert f"PID {process.pid}" in reader.stdout
    assert process.returncode == 0, stderr
    assert tables(workspace.db_path) == reference(simulator, workspace)


@pytest.mark.parametrize("after_requests", [1, 30, 60])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(
    simulator_factory, workspace, reference, after_requests: int
) -> None:
    simulator = simulator_factory(
        executions=60, seed=11, running_share=0.0, faults=FaultConfig(latency_ms=20)
    )
    ids = simulator.execution_ids
    process = workspace.spawn(
        "load", *ids, "--db", str(workspace.db_path), "--base-url", simulator.base_url,
        "--concurrency", "2", "--quiet",
        env={"SOURCES__EACHLABS__API_KEY": simulator.api_key},
    )  # fmt: skip
    wait_for(
        lambda: len(simulator.request_log) >= after_requests or process.poll() is not None,
        f"{after_requests} requests",
    )
    process.send_signal(signal.SIGKILL)
    process.wait()
    again = workspace.load(simulator, *ids, extra=["--quiet"])
    assert again.returncode == 0, again.stderr
    assert tables(workspace.db_path) == reference(simulator, workspace)


def test_a_load_waiting_on_a_lock_file_that_its_holder_deletes_locks_the_new_one(
    tmp_path: Path,
) -> None:
    """A run that created the file and loaded nothing deletes the lock file while holding it;
    a load that was waiting on the deleted file must not think it holds the lock then, or a
    third load (which creates a new lock file) would run beside it."""
    import logging
    import threading

    from pipelines.lock import load_lock

    db_path = tmp_path / "x.duckdb"
    second_waits, second_has_lock, release_second = (threading.Event() for _ in range(3))

    class WaitSignal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            second_waits.set()  # the lock file is open and its lock was refused once

    def second() -> None:
        with load_lock(db_path, 60):
            second_has_lock.set()
            release_second.wait(60)

    signal_handler = WaitSignal()
    logging.getLogger("pipelines.lock").addHandler(signal_handler)
    waiter = threading.Thread(target=second)
    try:
        with load_lock(db_path, 0) as first:
            assert first.created
            waiter.start()
            assert second_waits.wait(60), "the second load never waited"
            first.remove_when_released()
        assert second_has_lock.wait(60), "the waiting load never got the lock"
        # A third load finds the lock file the second one holds now, and is refused.
        with pytest.raises(Exception, match="another load into"):
            with load_lock(db_path, 0):
                pass
    finally:
        logging.getLogger("pipelines.lock").removeHandler(signal_handler)
        release_second.set()
        if waiter.is_alive():
            waiter.join()

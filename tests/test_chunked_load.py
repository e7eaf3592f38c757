"""Loads commit in chunks: an interrupted load keeps what it committed, and the next run
fetches only the rest. Real CLI subprocesses, the real simulator over HTTP, real DuckDB files."""

from __future__ import annotations

import queue
import signal
import threading
import time
from pathlib import Path

import pytest

from pipelines.eachlabs.errors import ConfigError
from pipelines.load import chunk_limits
from pipelines.simulator import FaultConfig

TABLES = {
    "executions": "execution_id",
    "step_outputs": "execution_id, step_id",
    "step_params": "execution_id, step_id, param_name",
    "fetch_errors": "execution_id",
}
#: Differ between two runs by nature: when a row was fetched, when an ID was last tried.
VOLATILE = {"fetched_at", "last_attempt_at"}


def requested_ids(simulator) -> list[str]:
    prefix = "/api/v1/executions/"
    return [r.path[len(prefix) :] for r in simulator.request_log if r.path.startswith(prefix)]


def wait_for_line(stream, needle: str, timeout: float) -> str:
    """Read `stream` until a line containing `needle` (in a thread: readline blocks)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    pytest.fail(f"no line with {needle!r} within {timeout} s; stderr so far: {''.join(seen)}")


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_load_keeps_its_chunks_and_the_next_run_fetches_only_the_rest(
    simulator_factory, destination, tmp_path, signum: int, exit_code: int
) -> None:
    """On either destination (tests/destinations.py)."""
    workspace = destination.workspace
    simulator = simulator_factory(
        executions=120, seed=11, running_share=0.0, faults=FaultConfig(latency_ms=100)
    )
    # An ID the API does not know (404, fetch_errors) and one never sent (rejected).
    ids = ["no-such-execution", *simulator.execution_ids, "../bad"]
    valid = ids[:-1]
    chunked = {"SOURCES__EACHLABS__API_KEY": simulator.api_key,
               "SOURCES__EACHLABS__CHUNK_EXECUTIONS": "30", **destination.env()}  # fmt: skip
    process = workspace.spawn(
        "load", *ids, "--db", str(workspace.db_path), "--base-url", simulator.base_url,
        "--concurrency", "4", *destination.args(), env=chunked,
    )  # fmt: skip
    try:
        wait_for_line(process.stderr, "committed chunk 1:", timeout=60)
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == exit_code
    committed = {
        row[0] for row in destination.query("select execution_id from eachlabs.executions")
    }
    assert 29 <= len(committed) < len(valid) - 1, "the first chunk is kept, the rest is not done"
    assert len(set(requested_ids(simulator))) < len(valid), "interrupted before the end"

    simulator.clear_request_log()
    result = destination.load(simulator, *ids, env=chunked)
    assert result.returncode == 2, result.stderr  # the rejected ID
    again = requested_ids(simulator)
    assert len(again) == len(set(again)), "every ID requested once"
    assert not set(again) & committed, "nothing committed is fetched again"
    if "finished an interrupted earlier load" in result.stdout:  # dlt held the chunk in flight
        assert set(again) < set(valid) - committed
    else:
        assert set(again) == set(valid) - committed

    uninterrupted = simulator_factory(executions=120, seed=11, running_share=0.0)
    reference = destination.sibling(tmp_path / "reference")
    result = reference.load(uninterrupted, *ids)
    assert result.returncode == 2, result.stderr
    for table in TABLES:
        skip = tuple(VOLATILE)
        expected, actual = reference.table_rows(table, skip), destination.table_rows(table, skip)
        assert len(expected) == {"executions": 120, "fetch_errors": 2}.get(table, len(expected))
        assert actual == expected, table


def test_a_chunk_also_ends_after_chunk_seconds(simulator_factory, workspace) -> None:
    simulator = simulator_factory(executions=40, seed=3, faults=FaultConfig(latency_ms=100))
    result = workspace.load(
        simulator, *simulator.execution_ids, extra=["--concurrency", "2"],
        env={"SOURCES__EACHLABS__CHUNK_SECONDS": "0.5"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # 40 IDs at 2 x 100 ms take about 2 s: several chunks of about half a second each.
    commits = [line for line in result.stderr.splitlines() if " committed chunk " in line]
    assert len(commits) >= 2, result.stderr
    assert "requested 40, loaded 40" in result.stdout
    assert workspace.query("select count(*) from eachlabs.executions") == [(40,)]
    assert len(requested_ids(simulator)) == 40


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHUNK_EXECUTIONS", "0", "chunk_executions must be a whole number of at least 1"),
        ("CHUNK_EXECUTIONS", "many", "chunk_executions must be a int"),
        ("CHUNK_SECONDS", "-1", "chunk_seconds must be a number of seconds above 0"),
    ],
)
def test_bad_chunk_settings_are_clear_errors(
    workspace, variable: str, value: str, message: str
) -> None:
    result = workspace.run(
        "load", "some-id", "--db", str(workspace.db_path),
        env={"SOURCES__EACHLABS__API_KEY": "k", f"SOURCES__EACHLABS__{variable}": value},
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_chunk_limits_default_to_the_settings() -> None:
    assert chunk_limits() == (10_000, 60.0)
    assert chunk_limits(5, 2) == (5, 2.0)
    with pytest.raises(ConfigError, match="chunk_seconds"):
        chunk_limits(5, 0)


@pytest.mark.parametrize("setting", ["chunk_executions", "chunk_seconds", "chunk_max_bytes"])
def test_chunk_settings_are_in_config_toml_and_documented(setting: str) -> None:
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    config = tomllib.loads((repo / ".dlt" / "config.toml").read_text(encoding="utf-8"))
    assert setting in config["sources"]["eachlabs"]
    documents = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    assert any(f"`{setting}`" in path.read_text(encoding="utf-8") for path in documents)

"""Memory does not follow payload size (defect 9 of the reliability issue): chunks end on the
bytes fetched, the fetcher holds few big answers at once, and DuckDB never rewrites the
file's older row groups of large values. The real CLI, the real simulator or a real server
over HTTP, real DuckDB files; memory itself is measured by `bench/memory_bench.py`."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hostile import HostileServer, send
from payloads import execution, model_step, one_step_execution

import pipelines.dlt_run
import pipelines.eachlabs.client as client_module
import pipelines.target
import pipelines.targets.duckdb
from pipelines.eachlabs.client import EachlabsClient
from pipelines.target import (
    DUCKDB_MEMORY_LIMIT_MB,
    LARGE_VALUE_BYTES,
    CheckpointError,
    checkpoint,
    chunk_memory_mb,
    holds_large_values,
    writer_settings,
)

#: Text a little over the size from which DuckDB stores a value in blocks of its own.
LARGE = LARGE_VALUE_BYTES + 50_000


def random_text(rng: random.Random, size: int) -> str:
    """`size` characters of random base64: no layer can shrink it."""
    return base64.b64encode(rng.randbytes(size * 3 // 4 + 3)).decode()[:size]


def large_executions(count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        execution(
            f"big-{n}", {"s1": model_step("s1", "m", {"n": n}, output=random_text(rng, LARGE))}
        )
        for n in range(count)
    ]


def row_groups(workspace, table: str) -> int:
    (count,) = workspace.query(
        f"select count(distinct row_group_id) from pragma_storage_info('eachlabs.{table}')"
    )[0]
    return count


def commits(stderr: str) -> int:
    return stderr.count("committed chunk")


def load_one_at_a_time(simulator_factory, workspace, payloads: list[dict], env: dict) -> Any:
    """Serve `payloads` from a simulator and load them with one request at a time."""
    simulator = simulator_factory(executions=0)
    for payload in payloads:
        simulator.put_execution(payload)
    ids = [p["execution_id"] for p in payloads]
    result = workspace.load(simulator, *ids, extra=["--concurrency", "1"], env=env)
    assert result.returncode == 0, result.stderr
    assert f"loaded {len(ids)}, " in result.stdout
    return result


def megabyte_steps(execution_id: str, rng: random.Random) -> dict[str, Any]:
    """An execution of ten steps of 1 MB of random text each."""
    steps = {
        f"s{i}": model_step(f"s{i}", "m", {"i": i}, output=random_text(rng, 2**20))
        for i in range(10)
    }
    return execution(execution_id, steps)


def test_a_chunk_ends_on_the_bytes_fetched(simulator_factory, workspace) -> None:
    """Eight answers of ~300 KB with chunk_max_bytes=700,000 commit in chunks of 3, 3 and 2
    (one request at a time, up to two queued): a chunk ends when the answers fetched plus
    those on their way, at the run's average size so far, reach the limit."""
    payloads = large_executions(8)
    env = {"SOURCES__EACHLABS__CHUNK_MAX_BYTES": "700000"}
    result = load_one_at_a_time(simulator_factory, workspace, payloads, env)
    # A commit line is printed while more IDs remain: after the first two chunks.
    assert commits(result.stderr) == 2
    assert "committed chunk 1: 3 of 8 IDs done" in result.stderr
    assert "committed chunk 2: 6 of 8 IDs done" in result.stderr
    stored = dict(workspace.query("select execution_id, output from eachlabs.step_outputs"))
    assert stored == {p["execution_id"]: f'"{p["step_outputs"]["s1"]["output"]}"' for p in payloads}


def test_large_values_keep_a_row_group_per_chunk(simulator_factory, workspace) -> None:
    """Each chunk of large values is written in a row group of its own, and no later
    checkpoint (of the load, or of `views`) merges them: merging rewrites row groups whole,
    all their large values in memory at once."""
    env = {"SOURCES__EACHLABS__CHUNK_EXECUTIONS": "4"}
    result = load_one_at_a_time(simulator_factory, workspace, large_executions(8), env)
    assert commits(result.stderr) == 1
    assert row_groups(workspace, "step_outputs") == 2
    views = workspace.run("views", "--db", str(workspace.db_path))
    assert views.returncode == 0, views.stderr
    assert row_groups(workspace, "step_outputs") == 2
    assert workspace.query("select count(*) from eachlabs.step_outputs") == [(8,)]


def test_small_values_are_merged_into_one_row_group(simulator_factory, workspace) -> None:
    """A file of ordinary values is compacted as DuckDB does by default: the chunks' row
    groups are merged by the load's last checkpoint."""
    payloads = [one_step_execution(f"small-{n}") for n in range(8)]
    env = {"SOURCES__EACHLABS__CHUNK_EXECUTIONS": "4"}
    result = load_one_at_a_time(simulator_factory, workspace, payloads, env)
    assert commits(result.stderr) == 1
    assert row_groups(workspace, "step_outputs") == 1
    assert workspace.query("select count(*) from eachlabs.step_outputs") == [(8,)]


def test_holds_large_values_reads_the_storage_statistics() -> None:
    with duckdb.connect() as connection:
        connection.execute("create schema small; create schema big")
        connection.execute(f"create table small.t as select repeat('a', {LARGE_VALUE_BYTES - 1}) v")
        connection.execute(f"create table big.t as select 1 n, repeat('b', {LARGE_VALUE_BYTES}) v")
        assert holds_large_values(connection, ["small"]) is False
        assert holds_large_values(connection, ["big"]) is True
        assert holds_large_values(connection, ["small", "big"]) is True
        assert holds_large_values(connection, ["missing"]) is False


def big_answer(handler: Any) -> None:
    """Every ID answers with a payload of 4 MB after a short delay."""
    time.sleep(0.2)
    execution_id = handler.path.split("?", 1)[0].rsplit("/", 1)[1]
    body = one_step_execution(execution_id)
    body["step_outputs"]["s1"]["output"] = "x" * (4 * 2**20)
    send(handler, 200, json.dumps(body).encode())


def test_the_fetcher_reads_few_big_answers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With concurrency 16 and answers of 4 MB, all 16 requests go out at once (no slow
    start for small answers), but at most 8 bodies (32 MiB) are read at the same time, and
    fewer IDs are queued once the answers have shown their size."""
    reading = {"now": 0, "most": 0}
    lock = threading.Lock()
    read_body = client_module.read_body

    def counting_read_body(*args: Any) -> bytes:
        with lock:
            reading["now"] += 1
            reading["most"] = max(reading["most"], reading["now"])
        try:
            time.sleep(0.05)  # reads overlap as they would over a real network
            return read_body(*args)
        finally:
            with lock:
                reading["now"] -= 1

    monkeypatch.setattr(client_module, "read_body", counting_read_body)
    ids = [f"e{n}" for n in range(40)]
    results: list[Any] = []
    most_ahead = 0

    def handed_out() -> Iterator[str]:  # how far the fetcher draws IDs ahead of its results
        nonlocal most_ahead
        for count, execution_id in enumerate(ids, start=1):
            most_ahead = max(most_ahead, count - len(results))
            yield execution_id

    with HostileServer(default=big_answer) as server:
        client = EachlabsClient(server.base_url, server.api_key, concurrency=16)
        for result in client.fetch_many(handed_out(), 16):
            results.append(result)
        assert client._queue_depth(16) == 7  # 32 MiB of answers of 4 MB and a bit
    assert sorted(r.execution_id for r in results) == sorted(ids)
    assert all(r.error is None and r.body_bytes > 4 * 2**20 for r in results)
    body_bytes = results[0].body_bytes
    assert 1 < reading["most"] <= client_module._IN_FLIGHT_MAX_BYTES // body_bytes + 1
    # The first burst is `concurrency` (not twice, as for small answers); the queue then
    # shrinks. (Under heavy load the burst may be cut short by the first answers.)
    assert 8 <= most_ahead <= 16


def test_a_chunk_too_big_for_duckdbs_memory_cap_still_loads(
    simulator_factory, workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An execution of 10 MB overflows a DuckDB memory cap of 16 MiB (a stand-in for a chunk
    that does not fit the cap it is given): the chunk is finished with the cap lifted instead
    of failing the run, and the next chunk is capped again (and overflows again)."""
    monkeypatch.setattr(pipelines.target, "DUCKDB_MEMORY_LIMIT_MB", 16)
    monkeypatch.setattr(pipelines.dlt_run, "DUCKDB_MEMORY_LIMIT_MB", 16)
    monkeypatch.setattr(pipelines.targets.duckdb, "chunk_memory_mb", lambda chunk: 16)
    rng = random.Random(3)
    simulator = simulator_factory(executions=0)
    ids = [f"big-{n}" for n in range(3)]
    for execution_id in ids:
        simulator.put_execution(megabyte_steps(execution_id, rng))
    result = workspace.load(
        simulator, *ids, extra=["--concurrency", "1", "-v"],
        env={"SOURCES__EACHLABS__CHUNK_EXECUTIONS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "loaded 3, " in result.stdout
    assert result.stderr.count("DuckDB ran out of memory in a chunk") == 3
    assert workspace.query(
        "select count(*), min(length(output::varchar)), count(distinct execution_id)"
        " from eachlabs.step_outputs"
    ) == [(30, 2**20 + 2, 3)]
    assert workspace.query("select count(*) from eachlabs.fetch_errors") == [(0,)]


def test_a_chunk_of_large_values_gets_room_in_duckdb(simulator_factory, workspace) -> None:
    """A chunk of 60 MB of large values (six executions of ten 1 MB steps) does not fit
    DuckDB's usual 128 MiB cap; the chunk is given four times its bytes once it is fetched,
    so it loads without running out of memory (no fallback)."""
    rng = random.Random(4)
    simulator = simulator_factory(executions=0)
    ids = [f"big-{n}" for n in range(6)]
    for execution_id in ids:
        simulator.put_execution(megabyte_steps(execution_id, rng))
    result = workspace.load(
        simulator, *ids, extra=["-v"], env={"SOURCES__EACHLABS__CHUNK_MAX_BYTES": str(10**9)}
    )
    assert result.returncode == 0, result.stderr
    assert "loaded 6, " in result.stdout
    assert "committed chunk" not in result.stderr  # one chunk
    assert "ran out of memory" not in result.stderr
    assert workspace.query(
        "select count(*), count(distinct execution_id) from eachlabs.step_outputs"
    ) == [(60, 6)]


def test_the_memory_cap_of_a_chunk_follows_its_bytes() -> None:
    from pipelines.eachlabs import FetchReport

    assert chunk_memory_mb(FetchReport(body_bytes=5 * 2**20)) == DUCKDB_MEMORY_LIMIT_MB
    assert chunk_memory_mb(FetchReport(body_bytes=60 * 2**20)) == 240


def test_writer_settings_leave_row_groups_unmerged_until_the_file_is_closed() -> None:
    """The cap and the automatic checkpoints are restored when a writer ends, but merging stays
    off: a run that ends early must not merge row groups of large values when DuckDB
    checkpoints the file on closing it."""
    with duckdb.connect() as connection:

        def setting(name: str) -> Any:
            return connection.execute(f"select current_setting('{name}')").fetchone()[0]

        defaults = setting("memory_limit"), setting("checkpoint_threshold")
        with writer_settings(connection):
            assert setting("max_vacuum_tasks") == 0
            assert setting("memory_limit") != defaults[0]
        assert (setting("memory_limit"), setting("checkpoint_threshold")) == defaults
        assert setting("max_vacuum_tasks") == 0


def test_a_failed_checkpoint_says_the_rows_are_committed() -> None:
    """A checkpoint that fails (a full disk, DuckDB out of memory) comes after the commit: the
    error says nothing is lost, and DuckDB's settings are restored."""

    class FailingCheckpoint:
        def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
            self.connection = connection

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "checkpoint":
                raise duckdb.IOException("No space left on device")
            return self.connection.execute(sql, *args)

    with duckdb.connect() as connection:
        with pytest.raises(CheckpointError, match="committed.*No space left on device"):
            checkpoint(FailingCheckpoint(connection), large_values=True)  # type: ignore[arg-type]
        limit = connection.execute("select current_setting('memory_limit')").fetchone()[0]
        assert limit == "128.0 MiB"

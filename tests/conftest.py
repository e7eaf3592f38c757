"""Shared fixtures: the simulator, an isolated dlt working directory, the real CLI.

How the CLI runs (in process through `cli.main`, or as its own process) is in
`tests/workspace.py`; the simulator fixtures are in `tests/simulator_fixtures.py`.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from destinations import Destination
from postgres_server import PostgresDb, PostgresServer, PostgresStartError, start_postgres
from workspace import CliResult, Workspace, isolated_env, make_workspace, run_main

pytest_plugins = ["simulator_fixtures"]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


@dataclass(frozen=True)
class DemoRun:
    """What `make demo` did in `root`: its file `root / "eachlabs_demo.duckdb"` and output."""

    root: Path
    result: CliResult

    @property
    def db_path(self) -> Path:
        return self.root / "eachlabs_demo.duckdb"


def run_demo(root: Path) -> DemoRun:
    """`make demo`'s command (1,000 executions, seed 42) in `root`, through the CLI's entry
    point in process, with the caller's SOURCES__* etc. stripped; it must exit 0."""
    result = run_main(
        root,
        ["demo", "--executions", "1000", "--db", "eachlabs_demo.duckdb"],
        isolated_env(root / "dlt-data"),
        None,
    )
    if result.returncode != 0:
        pytest.fail(f"demo failed: {result.stdout}\n{result.stderr}")
    return DemoRun(root, result)


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
    name: str,
    build: Callable[[Path], Any],
) -> tuple[Path, Any]:
    """`build(folder)` once for the whole test run, not once per pytest-xdist worker: the first
    worker to ask builds under a lock, the others wait and read. `build` returns a JSON-able
    value; returns the folder and that value. Only for data that tests read, never change."""
    if worker_id == "master":  # not under xdist
        folder = tmp_path_factory.mktemp(name)
        return folder, json.loads(json.dumps(build(folder)))
    folder = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "built.json"
        if folder.exists() and not done.exists():
            pytest.fail(f"another test worker failed to build {name}: see its error above")
        if not done.exists():
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
    return folder, json.loads(done.read_text())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> DemoRun:
    """`make demo`'s file and output, made once for the whole run; tests only read it."""
    folder, result = once_per_run(
        tmp_path_factory, worker_id, "demo", lambda root: asdict(run_demo(root).result)
    )
    return DemoRun(folder, CliResult(**result))


@pytest.fixture(scope="session")
def load_payloads_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Path]]:
    """Serve hand-made ExecutionDetails from a real simulator and load them through the CLI.

    Returns a function `(payloads, dataset="eachlabs", summaries=None) -> Path of the DuckDB
    file` (views applied). The load must exit 0; each call loads into its own new DuckDB file.

    Without `summaries`, one simulator serves the whole session (each call puts its own
    payloads) and the executions are loaded by ID. With `summaries` (execution ID -> fields of
    its ExecutionSummary, e.g. `{"dry_run": True, "cost": 0.5}`), a simulator of its own
    lists them and they are loaded with `load --workflow` for each workflow of the payloads,
    so the summary columns get filled.
    """
    from simulator_fixtures import start_simulator  # a plugin: imported once pytest has it

    simulator = start_simulator(executions=0)

    def load(
        payloads: list[dict[str, Any]],
        dataset: str = "eachlabs",
        summaries: dict[str, dict[str, Any]] | None = None,
    ) -> Path:
        ws = make_workspace(tmp_path_factory.mktemp("load"), "views.duckdb")
        extra = ["--dataset", dataset, "--quiet"]
        if summaries is None:
            for payload in payloads:
                simulator.put_execution(payload)
            ids = [payload["execution_id"] for payload in payloads]
            result = ws.load(simulator, *ids, extra=extra)
        else:
            own = start_simulator(executions=0)
            try:
                for payload in payloads:
                    own.put_execution(payload, summaries.get(payload["execution_id"]))
                workflows = dict.fromkeys(p["workflow_id"] for p in payloads)
                for workflow_id in workflows:
                    extra += ["--workflow", workflow_id]
                result = ws.load(own, extra=extra)
            finally:
                own.stop()
        if result.returncode != 0:
            pytest.fail(f"load exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return ws.db_path

    yield load
    simulator.stop()


@pytest.fixture
def load_payloads(load_payloads_session: Callable[..., Path]) -> Callable[..., Path]:
    """See `load_payloads_session`."""
    return load_payloads_session


#: Files whose tests take longest (child processes, notebooks, the tiny bench): collected first,
#: so that under pytest-xdist they start on separate workers at once instead of ending the run
#: alone. Order only; every test still runs.
_SLOW_FIRST = (
    "test_bench.py",
    "test_report.py",
    "test_dagster.py",
    "test_dagster_process.py",
    "test_demo.py",
    "test_docs.py",
    "test_faults_concurrency.py",
    "test_chunked_load.py",
    "test_wheel.py",
)


@pytest.fixture
def hold_duckdb_file() -> Iterator[Callable[[Path], None]]:
    """`hold(db_path)`: another process opens the DuckDB file for writing and keeps it (DuckDB's
    own lock) until the test ends."""
    holders: list[subprocess.Popen[str]] = []

    def hold(db_path: Path) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db_path)!r});"
             " print('ready', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return _SLOW_FIRST.index(name) if name in _SLOW_FIRST else len(_SLOW_FIRST)

    items.sort(key=rank)


# --- PostgreSQL (tests/postgres_server.py, docs/testing.md "PostgreSQL in tests") ---


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL server for this test worker (superuser and password over TCP on
    127.0.0.1), stopped and its data folder removed when the session ends, failed or not.

    One per pytest-xdist worker rather than one per run: each worker owns the server it stops,
    and a start takes under a second. Tests write only into `postgres_db` databases.
    """
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except PostgresStartError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> PostgresDb:
    """A fresh, empty database for this test, named after it; with
    `server.credentials_env(dbname)` for dlt."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return PostgresDb(postgres_server, postgres_server.create_database(f"{stem}_{uuid4().hex[:8]}"))


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest, workspace: Workspace) -> Destination:
    """The test runs once per destination: the workspace's DuckDB file, then a fresh database
    of the test worker's PostgreSQL server (see tests/destinations.py)."""
    if request.param == "duckdb":
        return Destination("duckdb", workspace)
    database = request.getfixturevalue("postgres_db")
    return Destination("postgres", workspace, database.server, database.dbname)

"""Shared fixtures: the simulator, an isolated dlt working directory, the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytest_plugins = ["simulator_fixtures"]


def _cli_path() -> str:
    candidate = Path(sys.executable).with_name("eachlabs-pipeline")
    found = str(candidate) if candidate.exists() else shutil.which("eachlabs-pipeline")
    if not found:
        pytest.fail(
            "the `eachlabs-pipeline` command is not installed next to this Python; "
            "run `make install` (or `pip install -e '.[dev]'`) first"
        )
    return found


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Workspace:
    """A temporary directory to run the CLI in, with its own DuckDB file and dlt data dir."""

    root: Path
    db_path: Path
    dlt_dir: Path
    env: dict[str, str]

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the CLI without waiting for it (to signal it mid-run)."""
        return subprocess.Popen(
            [_cli_path(), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        completed = subprocess.run(
            [_cli_path(), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=240,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def load(self, simulator: Any, *ids: str, extra: Sequence[str] = (), **kw: Any) -> CliResult:
        """`eachlabs-pipeline load` against the simulator into this workspace's DuckDB file."""
        env = {"SOURCES__EACHLABS__API_KEY": simulator.api_key, **kw.pop("env", {})}
        return self.run(
            "load", *ids, "--db", str(self.db_path), "--base-url", simulator.base_url,
            *extra, env=env, **kw,
        )  # fmt: skip

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db_path), read_only=True) as connection:
            return connection.execute(sql, list(params)).fetchall()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    root = tmp_path / "work"
    root.mkdir()
    dlt_dir = tmp_path / "dlt-data"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SOURCES__", "DESTINATION__", "EACHLABS_"))
    }
    env.update(
        {
            "DLT_DATA_DIR": str(dlt_dir),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            # Retries stay fast in tests (a Retry-After of up to 2 s is honoured);
            # tests/test_client.py checks the backoff itself.
            "SOURCES__EACHLABS__BACKOFF_BASE_S": "0.01",
            "SOURCES__EACHLABS__MAX_RETRY_DELAY_S": "2",
        }
    )
    yield Workspace(root=root, db_path=root / "test.duckdb", dlt_dir=dlt_dir, env=env)


@pytest.fixture
def load_payloads(
    simulator_factory: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """Serve hand-made ExecutionDetails from a real simulator and load them through the CLI.

    Returns a function `(payloads, dataset="eachlabs") -> Path of the DuckDB file` (views
    applied). The load must exit 0.
    """

    def load(payloads: list[dict[str, Any]], dataset: str = "eachlabs") -> Path:
        simulator = simulator_factory(executions=0)
        for payload in payloads:
            simulator.put_execution(payload)
        root = tmp_path_factory.mktemp("load")
        ws = Workspace(
            root=root,
            db_path=root / "views.duckdb",
            dlt_dir=root / "dlt-data",
            env={**os.environ, "DLT_DATA_DIR": str(root / "dlt-data")},
        )
        ids = [payload["execution_id"] for payload in payloads]
        result = ws.load(simulator, *ids, extra=["--dataset", dataset, "--quiet"])
        if result.returncode != 0:
            pytest.fail(f"load exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return ws.db_path

    return load

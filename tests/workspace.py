"""Running the real CLI in a test: an isolated working directory, DuckDB file and dlt data dir.

`Workspace.run` calls the CLI's entry point `pipelines.cli.main(argv)` in this process, with
the workspace's environment, working directory, stdin, stdout and stderr swapped in for the
call and dlt's run context reloaded around it: the same code path as the installed command,
without paying ~1.5 s of interpreter start and imports per call. `Workspace.run_process` and
`Workspace.spawn` run the installed `eachlabs-pipeline` command in a real process; tests of
signals, process exit codes, key leakage and locking between processes use those.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

#: Variables no test inherits from the caller's shell: a developer's real key or dlt config
#: must never reach a test run.
_STRIPPED_PREFIXES = ("SOURCES__", "DESTINATION__", "EACHLABS_", "ORCHESTRATION__", "DAGSTER_")


def _cli_path() -> str:
    candidate = Path(sys.executable).with_name("eachlabs-pipeline")
    found = str(candidate) if candidate.exists() else shutil.which("eachlabs-pipeline")
    if not found:
        pytest.fail(
            "the `eachlabs-pipeline` command is not installed next to this Python; "
            "run `make install` (or `pip install -e '.[dev]'`) first"
        )
    return found


def isolated_env(dlt_dir: Path) -> dict[str, str]:
    """The environment a test's CLI runs with: the caller's, minus SOURCES__/DESTINATION__/
    EACHLABS_/ORCHESTRATION__/DAGSTER_ variables, with its own dlt data dir, no telemetry and
    fast retries."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(_STRIPPED_PREFIXES)
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
    return env


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


class _Stdin(io.TextIOWrapper):
    """sys.stdin for an in-process run: text with a `.buffer` of the given bytes."""

    def __init__(self, text: str) -> None:
        super().__init__(io.BytesIO(text.encode("utf-8")), encoding="utf-8")


def _reload_dlt_context() -> None:
    """Make dlt re-read its run directory (cwd), .dlt/*.toml and environment.

    dlt caches the run context (the working directory it was first used in) and its config
    providers (the TOML files read then); an in-process run in another directory must not
    see a previous run's settings.
    """
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    Container()[PluggableRunContext].reload(os.getcwd())


@contextlib.contextmanager
def isolated_process_state(
    root: Path, env: dict[str, str], stdin: str | None
) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Swap in env, cwd, std streams and a fresh root logger; restore all of them after."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    root_logger = logging.getLogger()
    saved_handlers, saved_level = list(root_logger.handlers), root_logger.level
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(root)
    sys.stdin = _Stdin(stdin or "")
    sys.stdout, sys.stderr = out, err
    # `main` calls logging.basicConfig, which only configures a root logger without handlers
    # (as in a fresh process); its handler then writes to this run's stderr.
    root_logger.handlers = []
    root_logger.setLevel(logging.WARNING)
    try:
        _reload_dlt_context()
        yield out, err
    finally:
        for handler in root_logger.handlers:
            handler.close()
        root_logger.handlers = saved_handlers
        root_logger.setLevel(saved_level)
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        _reload_dlt_context()


def run_main(root: Path, args: Sequence[str], env: dict[str, str], stdin: str | None) -> CliResult:
    """`eachlabs-pipeline *args` through `pipelines.cli.main` in this process."""
    from pipelines import cli

    with isolated_process_state(root, env, stdin) as (out, err):
        try:
            code: Any = cli.main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code
        if code is None:
            code = 0
        elif not isinstance(code, int):  # sys.exit("message") prints it and exits 1
            print(code, file=sys.stderr)
            code = 1
    return CliResult(code, out.getvalue(), err.getvalue())


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Workspace:
    """A temporary directory to run the CLI in, with its own DuckDB file and dlt data dir."""

    root: Path
    db_path: Path
    dlt_dir: Path
    env: dict[str, str]

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the installed CLI in its own process without waiting (to signal it mid-run)."""
        return subprocess.Popen(
            [_cli_path(), *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as from a terminal even when pytest itself runs as a background job, where
            # the shell starts it (and so every child) with SIGINT ignored.
            preexec_fn=_default_sigint,
        )

    def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        """`eachlabs-pipeline *args` through the CLI's entry point, in this process."""
        return run_main(self.root, args, {**self.env, **(env or {})}, stdin)

    def run_process(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> CliResult:
        """`eachlabs-pipeline *args` as the installed command in its own process."""
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

    def load(
        self,
        simulator: Any,
        *ids: str,
        extra: Sequence[str] = (),
        process: bool = False,
        **kw: Any,
    ) -> CliResult:
        """`eachlabs-pipeline load` against the simulator into this workspace's DuckDB file
        (in its own process when `process`)."""
        env = {"SOURCES__EACHLABS__API_KEY": simulator.api_key, **kw.pop("env", {})}
        runner = self.run_process if process else self.run
        return runner(
            "load", *ids, "--db", str(self.db_path), "--base-url", simulator.base_url,
            *extra, env=env, **kw,
        )  # fmt: skip

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db_path), read_only=True) as connection:
            return connection.execute(sql, list(params)).fetchall()


def make_workspace(root: Path, db_name: str = "test.duckdb") -> Workspace:
    """A workspace in `root` (created): work dir `root/work`, dlt data in `root/dlt-data`."""
    work = root / "work"
    work.mkdir(parents=True)
    dlt_dir = root / "dlt-data"
    return Workspace(root=work, db_path=work / db_name, dlt_dir=dlt_dir, env=isolated_env(dlt_dir))


def view_rows(db_path: Path, view: str) -> list[tuple[Any, ...]]:
    """Every row of `eachlabs.<view>` in a DuckDB file, sorted (to compare two files)."""
    with duckdb.connect(str(db_path), read_only=True) as connection:
        return connection.execute(f"select * from eachlabs.{view} order by all").fetchall()

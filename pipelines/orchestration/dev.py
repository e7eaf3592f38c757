"""`make dagster`: Dagster's UI on the definitions, loading from a local simulator.

    python -m pipelines.orchestration.dev [DAGSTER ARGS...]

Starts the simulator with the demo's data set (1,000 executions, seed 42) on a free loopback
port, its clock starting now and running 60x (running executions finish as later runs fetch
them), then runs `dagster DAGSTER ARGS -m pipelines.orchestration.dagster` (default: `dev`,
the UI on http://127.0.0.1:3000) with the settings pointing at it: every simulated workflow
listed, into `eachlabs_dagster.duckdb`, the report in `reports/`, Dagster's run history in
`.dagster/`. The simulator's key reaches Dagster in its environment only, never on screen.
Ctrl-C (or SIGTERM to this process) stops both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from pipelines.simulator import Simulator, SimulatorConfig

MODULE = "pipelines.orchestration.dagster"
DB_FILE = "eachlabs_dagster.duckdb"
DAGSTER_HOME = ".dagster"


def dagster_command(args: list[str]) -> list[str]:
    """`dagster ARGS -m MODULE`, with the `dagster` next to this Python (the venv's)."""
    beside = Path(sys.executable).with_name("dagster")
    found = str(beside) if beside.exists() else shutil.which("dagster")
    if found is None:
        raise SystemExit(
            "no `dagster` command: install the extra with `pip install -e '.[dagster]'`"
        )
    return [found, *(args or ["dev"]), "-m", MODULE]


def simulator_env(simulator: Simulator, root: Path) -> dict[str, str]:
    """The settings that point a run at `simulator`, files under `root`."""
    home = root / DAGSTER_HOME
    home.mkdir(exist_ok=True)
    instance = home / "dagster.yaml"
    if not instance.exists():  # Dagster's own usage statistics: off, like dlt's
        instance.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    # Every input and target setting is set here, so that a real `[orchestration]` section
    # (a PostgreSQL destination, a spool whose files a load moves) is never touched.
    return {
        "SOURCES__EACHLABS__BASE_URL": simulator.base_url,
        "SOURCES__EACHLABS__API_KEY": simulator.api_key,
        "ORCHESTRATION__WORKFLOWS": json.dumps(simulator.workflow_ids),
        "ORCHESTRATION__IDS_FILE": "",
        "ORCHESTRATION__SPOOL": "",
        "ORCHESTRATION__FULL_LISTING": "false",
        "ORCHESTRATION__DESTINATION": "duckdb",
        "ORCHESTRATION__DB_PATH": str(root / DB_FILE),
        "ORCHESTRATION__DATASET": "eachlabs",
        "ORCHESTRATION__REPORT_DIR": str(root / "reports"),
        "DAGSTER_HOME": str(home.resolve()),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = dagster_command(args)
    config = SimulatorConfig(
        executions=1000, seed=42, start_time=datetime.now(UTC).replace(microsecond=0),
        time_scale=60.0,
    )  # fmt: skip
    with Simulator(config) as simulator:
        env = {**os.environ, **simulator_env(simulator, Path.cwd())}
        print(
            f"simulator serving {config.executions} executions of "
            f"{len(simulator.workflow_ids)} workflows at {simulator.base_url}; loading into "
            f"{DB_FILE}, Dagster's history in {DAGSTER_HOME}/",
            flush=True,
        )
        # Ctrl-C reaches dagster too (same process group); SIGTERM here is passed on as the
        # SIGINT dagster stops on. Started in the background, a shell ignores SIGINT for its
        # children: a handler set here is reset to the default in dagster when it starts, or
        # dagster could never stop its own processes.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        child = subprocess.Popen(command, env=env)
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
        try:
            return child.wait()
        except KeyboardInterrupt:  # dagster had it too when it came from the terminal
            try:
                return child.wait(timeout=10)
            except subprocess.TimeoutExpired:  # it came to this process alone
                child.send_signal(signal.SIGINT)
                return child.wait()


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of a load of big payloads: memory does not follow payload size.

    .venv/bin/python bench/memory_bench.py                  # 100 executions of 10 MB each
    .venv/bin/python bench/memory_bench.py --executions 50 --mb 20

The simulator runs in this process; the load is the real CLI, started by a tiny wrapper
process whose children's peak resident memory (ru_maxrss) is the figure. (A child forked
from this process directly would count the simulator's payloads, resident here at the fork,
as its own.) Target: under 1.5 GiB for 100 x 10 MB. `make bench` runs it as its section 6.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.simulator import Simulator, SimulatorConfig

#: Runs a command and prints its peak RSS (KB). A wrapper this small is what the command is
#: forked from, so the figure is the command's own (a child's ru_maxrss includes the moments
#: before `exec`, when it still shares its parent's memory).
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def big_execution(execution_id: str, megabytes: int, rng: random.Random) -> dict:
    """`megabytes` MB of step outputs, one step per MB. Each output is different random
    base64 text (like an inline image), so no layer can shrink it by compression or
    deduplication: the bench measures the bytes, not a lucky pattern."""
    steps = {
        f"s{i}": {
            "step_id": f"s{i}",
            "status": "completed",
            "started_at": "2025-01-01T00:00:01Z",
            "completed_at": "2025-01-01T00:00:02Z",
            "output": base64.b64encode(rng.randbytes(3 * 2**18)).decode(),  # 1 MiB
            "metadata": {"model": "m", "params": {"i": i}},
        }
        for i in range(megabytes)
    }
    return {
        "execution_id": execution_id,
        "workflow_id": "wf",
        "status": "completed",
        "started_at": "2025-01-01T00:00:00Z",
        "completed_at": "2025-01-01T00:00:05Z",
        "step_outputs": steps,
    }


@dataclass
class BigLoad:
    exit_code: int
    wall_s: float
    peak_mib: float
    summary: str
    step_rows: int


def measure(
    executions: int = 100, megabytes: int = 10, env: dict[str, str] | None = None
) -> BigLoad:
    """Load `executions` payloads of `megabytes` MB with the real CLI; its peak RSS."""
    import duckdb

    cli = Path(sys.executable).with_name("eachlabs-pipeline")
    with Simulator(SimulatorConfig(executions=0, long_poll=False)) as simulator:
        ids = [f"big-{n}" for n in range(executions)]
        rng = random.Random(9)
        for execution_id in ids:
            simulator.put_execution(big_execution(execution_id, megabytes, rng))
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "big.duckdb"
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-c", PEAK_RSS_WRAPPER, str(cli), "load", *ids,
                 "--db", str(db), "--quiet", "--base-url", simulator.base_url],
                cwd=tmp, capture_output=True, text=True, check=False,
                env={
                    **os.environ,
                    "SOURCES__EACHLABS__API_KEY": simulator.api_key,
                    "DLT_DATA_DIR": str(Path(tmp) / "dlt"),
                    "RUNTIME__DLTHUB_TELEMETRY": "false",
                    **(env or {}),
                },
            )  # fmt: skip
            wall = time.monotonic() - started
            with duckdb.connect(str(db), read_only=True) as connection:
                query = "select count(*) from eachlabs.step_outputs"
                (rows,) = connection.execute(query).fetchone()
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    return BigLoad(result.returncode, wall, peak_kb / 1024, result.stdout.strip(), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--mb", type=int, default=10, help="megabytes per execution")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the load")
    args = parser.parse_args()
    load = measure(args.executions, args.mb, dict(v.split("=", 1) for v in args.env))
    print(load.summary)
    print(
        f"{args.executions} executions x {args.mb} MB: exit {load.exit_code}, "
        f"{load.wall_s:.1f} s, {load.step_rows} step rows, loader peak RSS {load.peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()

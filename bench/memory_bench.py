"""Peak memory of a load of big payloads: the loader's batches are bounded by bytes, not only
by count, so memory does not follow payload size.

    .venv/bin/python bench/memory_bench.py                  # 100 executions of 10 MB each
    .venv/bin/python bench/memory_bench.py --executions 50 --mb 20

The simulator runs in this process; the load is the real CLI in a child process, whose peak
resident memory (ru_maxrss of the child) is the figure. Target: under 1.5 GiB for 100 x 10 MB.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.simulator import Simulator, SimulatorConfig


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--mb", type=int, default=10, help="megabytes per execution")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the load")
    args = parser.parse_args()
    cli = Path(sys.executable).with_name("eachlabs-pipeline")
    with Simulator(SimulatorConfig(executions=0, long_poll=False)) as simulator:
        ids = [f"big-{n}" for n in range(args.executions)]
        rng = random.Random(9)
        for execution_id in ids:
            simulator.put_execution(big_execution(execution_id, args.mb, rng))
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "SOURCES__EACHLABS__API_KEY": simulator.api_key,
                "DLT_DATA_DIR": str(Path(tmp) / "dlt"),
                "RUNTIME__DLTHUB_TELEMETRY": "false",
                **dict(v.split("=", 1) for v in args.env),
            }
            started = time.monotonic()
            result = subprocess.run(
                [str(cli), "load", *ids, "--db", str(Path(tmp) / "big.duckdb"), "--quiet",
                 "--base-url", simulator.base_url],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            elapsed = time.monotonic() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(result.stdout.strip() or result.stderr.strip())
    print(
        f"{args.executions} executions x {args.mb} MB: exit {result.returncode}, "
        f"{elapsed:.1f} s, loader peak RSS {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()

"""Section 9 of `make bench`: loading bodies from JSON Lines against fetching the same
executions from the API.

Both runs are real `eachlabs-pipeline load` processes into fresh DuckDB files, side by side,
alternating, the best of each kept: `--ids-file` against a local simulator answering at once
(so fetching costs little more than reading), and `--from-jsonl` of the simulator's own
answers. The file path reads its files twice (the winner per execution first, then the
winners' bodies): the figure says what that costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.simulator import Simulator, SimulatorConfig


def _run(args: list[str], work: Path, env: dict[str, str]) -> float:
    cli = Path(sys.executable).with_name("eachlabs-pipeline")
    started = time.perf_counter()
    completed = subprocess.run(
        [str(cli), "load", *args, "--quiet"], cwd=work, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    assert completed.returncode == 0, f"load exited {completed.returncode}: {completed.stderr}"
    return wall


def measure_files(executions: int, runs: int, work: Path) -> dict[str, Any]:
    """Seconds of the best of `runs` loads of `executions` executions each way."""
    config = SimulatorConfig(executions=executions, running_share=0.0, long_poll=False)
    with Simulator(config) as simulator:
        ids = work / "ids.txt"
        ids.write_text("\n".join(simulator.execution_ids) + "\n")
        bodies = work / "bodies.jsonl"
        with bodies.open("wb") as out:
            for execution_id in simulator.execution_ids:
                out.write(simulator.app.execution_response(execution_id).body + b"\n")
        env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
        api_s, files_s = [], []
        for run in range(runs):
            api_env = {**env, "SOURCES__EACHLABS__API_KEY": simulator.api_key,
                       "DLT_DATA_DIR": str(work / f"dlt-api-{run}")}  # fmt: skip
            api_s.append(_run(
                ["--ids-file", str(ids), "--base-url", simulator.base_url,
                 "--db", str(work / f"api_{run}.duckdb")], work, api_env,
            ))  # fmt: skip
            files_env = {**env, "DLT_DATA_DIR": str(work / f"dlt-files-{run}")}
            files_s.append(_run(
                ["--from-jsonl", str(bodies), "--db", str(work / f"files_{run}.duckdb")],
                work, files_env,
            ))  # fmt: skip
    return {
        "executions": executions,
        "runs": runs,
        "api_s": min(api_s),
        "files_s": min(files_s),
        "body_mb": bodies.stat().st_size / 2**20,
    }


def measure_in_process(executions: int, runs: int, work: Path) -> dict[str, Any]:
    """`run_load` in this process, both ways, without the network and process start-up: the
    API path's normalise+load (its fetch answers at once with payloads parsed beforehand) against
    `files=` reading, ranking, parsing and loading the same bodies."""
    import json

    from pipelines.bodies import jsonl_files
    from pipelines.eachlabs.client import EachlabsClient, FetchResult
    from pipelines.load import run_load

    config = SimulatorConfig(executions=executions, running_share=0.0, long_poll=False)
    simulator = Simulator(config)
    bodies = work / "bodies.jsonl"
    answers = {}
    with bodies.open("wb") as out:
        for execution_id in simulator.execution_ids:
            body = simulator.app.execution_response(execution_id).body
            out.write(body + b"\n")
            answers[execution_id] = (json.loads(body), len(body))

    def instant(self: Any, ids: Any, concurrency: int | None = None) -> Any:
        for execution_id in ids:
            payload, size = answers[execution_id]
            yield FetchResult(execution_id, payload, None, 1, time.time(), size)

    real = EachlabsClient.fetch_many
    api_s, files_s = [], []
    options = {"base_url": "http://127.0.0.1:9/api/v1", "api_key": "bench-key"}
    try:
        for run in range(runs):
            EachlabsClient.fetch_many = instant  # type: ignore[method-assign]
            started = time.perf_counter()
            run_load(simulator.execution_ids, db_path=work / f"napi_{run}.duckdb",
                     source_options=options)  # fmt: skip
            api_s.append(time.perf_counter() - started)
            EachlabsClient.fetch_many = real  # type: ignore[method-assign]
            started = time.perf_counter()
            run_load(files=jsonl_files([str(bodies)]), db_path=work / f"nfiles_{run}.duckdb")
            files_s.append(time.perf_counter() - started)
    finally:
        EachlabsClient.fetch_many = real  # type: ignore[method-assign]
    return {"executions": executions, "runs": runs, "api_s": min(api_s), "files_s": min(files_s)}

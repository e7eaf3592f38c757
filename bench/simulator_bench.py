"""How fast is the simulator? Request rate with 32 concurrent clients, and 32 parallel long-polls.

Starts the simulator as a separate process (`eachlabs-pipeline simulator`, as the demo runs it),
so client and server do not share one interpreter; on a small machine they still share the
cores, so the figures are a lower bound of what the server alone can do.

    .venv/bin/python bench/simulator_bench.py                 # defaults: 32 clients, 5000 requests
    .venv/bin/python bench/simulator_bench.py --requests 20000 --max-seconds 60 --json out.json

Bounded in count (--requests) and time (--max-seconds). Standard library plus `requests`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RateResult:
    endpoint: str
    concurrency: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[str, int]
    server_cpu_s: float | None = None
    server_requests_per_cpu_s: float | None = None


@dataclass
class LongPollResult:
    concurrency: int
    timeout_s: int
    wall_seconds: float
    statuses: dict[str, int]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_simulator(*args: str) -> Iterator[tuple[str, str, int]]:
    """Start `eachlabs-pipeline simulator --port 0 ARGS`; yield (base_url, api_key, pid)."""
    command = [sys.executable, "-m", "pipelines.cli", "simulator", "--port", "0", *args]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base_url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        api_key = process.stdout.readline().split(":", 1)[1].strip()
        yield base_url, api_key, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_rate(
    urls: list[str], api_key: str, concurrency: int, total: int, max_seconds: float, name: str
) -> RateResult:
    """`concurrency` threads, one keep-alive session each, share `total` GETs over `urls`."""
    counter = iter(range(total))
    counter_lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    results_lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        own_latencies, own_statuses = [], Counter()
        with requests.Session() as session:
            session.headers["X-API-Key"] = api_key
            while time.monotonic() < deadline:
                with counter_lock:
                    n = next(counter, None)
                if n is None:
                    break
                started = time.perf_counter()
                try:
                    response = session.get(urls[n % len(urls)], timeout=30)
                    response.content  # noqa: B018 (read the whole body)
                    own_statuses[str(response.status_code)] += 1
                except requests.RequestException as exc:
                    own_statuses[type(exc).__name__] += 1
                own_latencies.append(time.perf_counter() - started)
        with results_lock:
            latencies.extend(own_latencies)
            statuses.update(own_statuses)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return RateResult(
        endpoint=name,
        concurrency=concurrency,
        requests=len(latencies),
        seconds=round(seconds, 3),
        requests_per_s=round(len(latencies) / seconds, 1),
        p50_ms=round(cuts[49] * 1000, 2),
        p95_ms=round(cuts[94] * 1000, 2),
        p99_ms=round(cuts[98] * 1000, 2),
        statuses=dict(statuses),
    )


def measure_long_polls(
    base_url: str, api_key: str, ids: list[str], timeout_s: int
) -> LongPollResult:
    """`len(ids)` simultaneous long-polls on running executions (frozen clock)."""
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(len(ids))

    def poll(execution_id: str) -> None:
        barrier.wait()
        response = requests.get(
            f"{base_url}/executions/{execution_id}",
            params={"timeout": timeout_s},
            headers={"X-API-Key": api_key},
            timeout=timeout_s + 30,
        )
        with lock:
            statuses[f"{response.status_code} {response.json()['status']}"] += 1

    threads = [threading.Thread(target=poll, args=(i,)) for i in ids]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LongPollResult(
        len(ids), timeout_s, round(time.perf_counter() - started, 3), dict(statuses)
    )


def first_ids(base_url: str, api_key: str, count: int) -> list[str]:
    """Execution IDs from the list endpoint, across workflows, up to `count`."""
    # The workflow IDs are not listed by the API; read them from a tiny in-process instance
    # with the same seed (the simulator is deterministic).
    from pipelines.simulator import Simulator, SimulatorConfig

    workflow_ids = Simulator(SimulatorConfig(executions=0)).workflow_ids
    ids: list[str] = []
    for workflow_id in workflow_ids:
        response = requests.get(
            f"{base_url}/workflows/{workflow_id}/executions",
            params={"limit": 100},
            headers={"X-API-Key": api_key},
            timeout=30,
        )
        ids += [item["execution_id"] for item in response.json()["executions"]]
    return ids[:count]


def add_server_cpu(result: RateResult, before: float | None, after: float | None) -> None:
    """Server CPU spent in a phase: requests per CPU second is the server's own capacity."""
    if before is None or after is None or after <= before:
        return
    result.server_cpu_s = round(after - before, 2)
    result.server_requests_per_cpu_s = round(result.requests / (after - before), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (default 32)")
    parser.add_argument("--requests", type=int, default=5000, help="GETs per phase (default 5000)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time cap per phase")
    parser.add_argument("--executions", type=int, default=5000, help="simulator size")
    parser.add_argument("--long-poll-timeout", type=int, default=2, help="seconds (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))

    results: dict[str, object] = {}
    # Phase 1: nothing running, so every GET is answered at once: pure request rate.
    with running_simulator(
        "--executions", str(args.executions), "--running-share", "0", "--time-scale", "0"
    ) as (base_url, api_key, pid):
        ids = first_ids(base_url, api_key, 800)
        execution_urls = [f"{base_url}/executions/{i}?timeout=1" for i in ids]
        cpu_before = cpu_seconds(pid)
        results["get_execution"] = measure_rate(
            execution_urls, api_key, args.concurrency, args.requests, args.max_seconds,
            "GET /executions/{id}",
        )  # fmt: skip
        add_server_cpu(results["get_execution"], cpu_before, cpu_seconds(pid))
        from pipelines.simulator import Simulator, SimulatorConfig

        workflow_ids = Simulator(SimulatorConfig(executions=0)).workflow_ids
        cpu_before = cpu_seconds(pid)
        list_urls = [
            f"{base_url}/workflows/{wf}/executions?limit=50&offset={offset}"
            for wf in workflow_ids
            for offset in (0, 50, 100)
        ]
        results["list_executions"] = measure_rate(
            list_urls, api_key, args.concurrency, max(1, args.requests // 5), args.max_seconds,
            "GET /workflows/{id}/executions?limit=50",
        )  # fmt: skip
        add_server_cpu(results["list_executions"], cpu_before, cpu_seconds(pid))
    # Phase 2: everything running, frozen clock: each GET waits the full long-poll timeout.
    busy = ("--executions", "200", "--running-share", "1", "--time-scale", "0")
    with running_simulator(*busy) as (base_url, api_key, _pid):
        ids = first_ids(base_url, api_key, args.concurrency)
        results["long_polls"] = measure_long_polls(base_url, api_key, ids, args.long_poll_timeout)

    for name, result in results.items():
        print(f"{name}: {json.dumps(asdict(result))}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: asdict(v) for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

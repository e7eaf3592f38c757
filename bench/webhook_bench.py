"""How many webhooks per second does the receiver acknowledge? And how many per fsync?

Starts a real `eachlabs-pipeline webhook` process on a free loopback port, spooling into a
temporary folder on this machine's disk (real fsync, nothing mocked). `--senders` threads,
each with its own keep-alive `requests.Session`, POST `--bodies` small valid executions
(pretty-printed, ~700 bytes) to it; the figure is acknowledged bodies (200) per second from
the first send to the last answer. The receiver's `/healthz` then gives the same run's fsync
count: bodies per fsync is the group commit at work. Senders and receiver share the cores,
so the figure is a lower bound of what the receiver alone can do. Target: >= 500/s with 16
senders. `make bench` runs it as its section 8.

    .venv/bin/python bench/webhook_bench.py                      # 10,000 bodies, 16 senders
    .venv/bin/python bench/webhook_bench.py --bodies 2000 --senders 4
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

_TIMEOUT_S = 120


@dataclass
class WebhookRun:
    bodies: int
    senders: int
    acknowledged: int
    wall_s: float
    acknowledged_per_s: float
    fsyncs: int
    bodies_per_fsync: float
    spool_files: int
    spool_bytes: int


def execution_body(index: int) -> bytes:
    """A small completed execution with one model step, pretty-printed (line breaks and all)."""
    execution = {
        "execution_id": f"bench-{index:07d}",
        "workflow_id": "50741f40-8621-4d46-8a91-dff4d873be98",
        "status": "completed",
        "started_at": "2025-12-04T11:48:10Z",
        "completed_at": "2025-12-04T11:48:39Z",
        "inputs": {"story": "tell an epic story of a rat graduating from law"},
        "step_outputs": {
            "step1": {
                "step_id": "step1",
                "status": "completed",
                "started_at": "2025-12-04T11:48:10Z",
                "completed_at": "2025-12-04T11:48:39Z",
                "output": "Once upon a time in Ratropolis...",
                "metadata": {
                    "model": "openai-chatgpt-5",
                    "version": "0.0.1",
                    "params": {"max_output_tokens": 512},
                },
            }
        },
        "output": "Once upon a time in Ratropolis...",
    }
    return json.dumps(execution, indent=2).encode()


def _start_receiver(spool: Path, token: str) -> tuple[subprocess.Popen[str], str]:
    cli = Path(sys.executable).with_name("eachlabs-pipeline")
    env = {**os.environ, "SOURCES__EACHLABS__WEBHOOK_TOKEN": token,
           "RUNTIME__DLTHUB_TELEMETRY": "false"}  # fmt: skip
    process = subprocess.Popen(
        [str(cli), "webhook", "--spool", str(spool), "--port", "0"],
        env=env, cwd=spool.parent, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if "receiving webhooks at " in line:
            return process, line.split("receiving webhooks at ", 1)[1].split("/webhooks/")[0]
    process.wait(_TIMEOUT_S)
    raise RuntimeError(f"the receiver did not start: {process.stderr.read()}")  # type: ignore[union-attr]


def _send(url: str, bodies: list[bytes], senders: int) -> list[int]:
    statuses = [0] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def sender() -> None:
        with requests.Session() as session:
            session.trust_env = False
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                answer = session.post(url, data=bodies[index], timeout=_TIMEOUT_S,
                                      headers={"Content-Type": "application/json"})  # fmt: skip
                statuses[index] = answer.status_code

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def measure(bodies: int, senders: int, work: Path) -> WebhookRun:
    """One run: a fresh receiver and spool in `work`, `bodies` POSTs from `senders` threads."""
    spool, token = work / "spool", secrets.token_urlsafe(32)
    payloads = [execution_body(i) for i in range(bodies)]
    process, base_url = _start_receiver(spool, token)
    try:
        started = time.perf_counter()
        statuses = _send(f"{base_url}/webhooks/{token}", payloads, senders)
        wall_s = time.perf_counter() - started
        health = requests.get(f"{base_url}/healthz", timeout=_TIMEOUT_S).json()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=_TIMEOUT_S)
    assert process.returncode == 0, f"the receiver exited {process.returncode}: {stderr}"
    acknowledged = statuses.count(200)
    assert acknowledged == bodies == health["accepted_since_start"], (statuses[:10], health)
    files = sorted(spool.glob("*.jsonl"))
    fsyncs = health["fsyncs_since_start"]
    return WebhookRun(
        bodies=bodies, senders=senders, acknowledged=acknowledged, wall_s=wall_s,
        acknowledged_per_s=acknowledged / wall_s, fsyncs=fsyncs,
        bodies_per_fsync=acknowledged / fsyncs, spool_files=len(files),
        spool_bytes=sum(path.stat().st_size for path in files),
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eachlabs-webhook-bench-") as tmp:
        run = measure(args.bodies, args.senders, Path(tmp))
    print(json.dumps(asdict(run), indent=2))
    print(
        f"{run.acknowledged_per_s:,.0f} acknowledged webhooks/s with {run.senders} senders; "
        f"{run.bodies_per_fsync:.1f} bodies per fsync ({run.fsyncs} fsyncs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench` harness at toy sizes: proves every measurement runs and reports its figures.

No timing is asserted (the machine is shared and noisy); speed targets are measured by
`make bench` itself and written up in docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_tiny_bench_runs_all_six_measurements(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_all.py"), "--tiny", "--json", str(out)],
        capture_output=True, text=True, timeout=280, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(out.read_text())
    sections = {row["section"] for row in figures["rows"]}
    assert sections == {
        "1 fetch", "2 normalise+load", "3 incremental", "4 peak RSS", "5 views", "6 big payloads"
    }  # fmt: skip
    for row in figures["rows"]:  # every row of the printed table carries a figure
        assert row["figure"] and row["figure"] in completed.stdout

    fetch = figures["fetch"]
    assert {"ours", "rest_api_default", "rest_api_tuned", "sequential"} <= set(fetch)
    assert fetch["ours"]["tables"]["executions"] == fetch["ids"]
    assert fetch["rest_api_default"]["tables"] > 1  # dlt's own source: a wide table + children

    normalise = figures["normalise_load"]
    assert normalise["ours"]["rows"] == normalise["duckdb_read_json"]["rows"]
    assert normalise["ours"]["rows"]["executions"] == normalise["executions"]

    incremental = figures["incremental"]
    assert incremental["first_requests"] == incremental["executions"]
    assert incremental["second_requests"] == incremental["running"]

    rss = figures["peak_rss"]
    assert all(rss[str(n)]["peak_mb"] > 0 for n in figures["sizes"]["rss_executions"])
    assert (
        rss["million_extrapolated_mb"]
        > rss[str(max(figures["sizes"]["rss_executions"]))]["peak_mb"]
    )

    [(executions, steps)] = figures["sizes"]["views_steps"]
    views = figures["views"][str(steps)]["views"]
    assert set(views) >= {"step_runs", "model_daily_performance", "workflow_performance"}
    assert views["step_runs"]["rows"] == steps
    assert views["execution_runs"]["rows"] == executions

    executions, megabytes = figures["sizes"]["big_payloads"]
    big = figures["big_payloads"]
    assert big["step_rows"] == executions * megabytes  # one step per MB
    assert big["peak_mib"] > 0

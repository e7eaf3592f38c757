"""`make bench` harness at toy sizes: proves every measurement runs and reports its figures.

No timing is asserted (the machine is shared and noisy); speed targets are measured by
`make bench` itself and written up in docs/performance.md. Each section runs as its own test
(the harness's `--section`), so none comes near the per-test time limit on a busy machine and
pytest-xdist spreads them over its workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
import bench_all  # noqa: E402

sys.path.remove(str(BENCH))


def _fetch(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    assert {"ours", "rest_api_default", "rest_api_tuned", "sequential"} <= set(figures)
    assert figures["ours"]["tables"]["executions"] == figures["ids"]
    assert figures["rest_api_default"]["tables"] > 1  # dlt's own source: a wide table + children


def _normalise(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    assert figures["ours"]["rows"] == figures["duckdb_read_json"]["rows"]
    assert figures["ours"]["rows"]["executions"] == figures["executions"]


def _incremental(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    assert figures["first_requests"] == figures["executions"]
    assert figures["second_requests"] == figures["running"]


def _rss(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    assert all(figures[str(n)]["peak_mb"] > 0 for n in sizes["rss_executions"])
    largest = figures[str(max(sizes["rss_executions"]))]["peak_mb"]
    assert figures["million_extrapolated_mb"] > largest


def _views(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    [(executions, steps)] = sizes["views_steps"]
    views = figures[str(steps)]["views"]
    assert set(views) >= {"step_runs", "model_daily_performance", "workflow_performance"}
    assert views["step_runs"]["rows"] == steps
    assert views["execution_runs"]["rows"] == executions


def _big_payloads(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    executions, megabytes = sizes["big_payloads"]
    assert figures["step_rows"] == executions * megabytes  # one step per MB
    assert figures["peak_mib"] > 0


def _startup(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    assert 0 < figures["python_s"] and 0 < figures["version_s"] and 0 < figures["help_s"]
    assert figures["simulator_executions"] == sizes["simulator_executions"]


def _webhook(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    assert figures["acknowledged"] == figures["bodies"] == sizes["webhook_bodies"]
    assert figures["senders"] == sizes["webhook_senders"]
    assert 0 < figures["fsyncs"] <= figures["bodies"] + figures["spool_files"]
    assert figures["bodies_per_fsync"] == figures["acknowledged"] / figures["fsyncs"]


def _files(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    for way in ("in_process", "cli"):
        assert figures[way]["executions"] == sizes["files_executions"]
        assert figures[way]["api_s"] > 0 and figures[way]["files_s"] > 0
    assert figures["cli_ratio"] == figures["cli"]["api_s"] / figures["cli"]["files_s"]


def _postgres(figures: dict[str, Any], sizes: dict[str, Any]) -> None:
    loaded = figures["dlt_choice"]["rows"]
    assert loaded["executions"] == figures["executions"] == sizes["postgres_executions"]
    assert figures["insert_values"]["rows"] == figures["floor"]["rows"] == loaded
    assert {"insert_values"} < set(figures["insert_values"]["formats"]["executions"])
    assert figures["compare"]["columns_by_type"]["jsonb"] > 0
    assert figures["empty_strings"]["insert_values"]  # the edge bodies' empty strings, kept
    assert set(figures["views"]) >= {"step_runs", "model_daily_performance"}
    assert figures["views"]["execution_runs"]["rows"] == loaded["executions"]


#: section -> (its label in the table, the checks of its figures)
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any], dict[str, Any]], None]]] = {
    "fetch": ("1 fetch", _fetch),
    "normalise_load": ("2 normalise+load", _normalise),
    "incremental": ("3 incremental", _incremental),
    "peak_rss": ("4 peak RSS", _rss),
    "views": ("5 views", _views),
    "big_payloads": ("6 big payloads", _big_payloads),
    "startup": ("7 start-up", _startup),
    "webhook": ("8 webhook", _webhook),
    "files": ("9 files", _files),
    "postgres": ("10 postgres", _postgres),
}


def test_the_tests_cover_every_section_of_the_harness() -> None:
    assert list(bench_all.SECTIONS) == list(SECTIONS)


@pytest.mark.parametrize("section", SECTIONS)
def test_tiny_bench_section_reports_its_figures(tmp_path: Path, section: str) -> None:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, str(BENCH / "bench_all.py"), "--tiny", "--section", section,
         "--json", str(out)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(out.read_text())
    label, check = SECTIONS[section]
    assert result["rows"] and {row["section"] for row in result["rows"]} == {label}
    assert all(row["figure"] for row in result["rows"])  # every row of the table has a figure
    check(result["figures"], json.loads(json.dumps(asdict(bench_all.TINY))))

"""`make demo` gives the same answer on any machine, however busy: the simulator's clock stands
still during the demo's load, so two demos give identical rows in every view, and the figures
the docs show from the demo are the ones it gives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest
from conftest import DemoRun, run_demo
from workspace import view_rows

from pipelines.views import discover_views

REPO = Path(__file__).resolve().parent.parent
REPORT_DOC = (REPO / "docs" / "report.md").read_text(encoding="utf-8")
VIEWS = [view.name for view in discover_views()]


@pytest.fixture(scope="module")
def second_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return run_demo(tmp_path_factory.mktemp("second-demo"))


@pytest.mark.parametrize("view", VIEWS)
def test_two_demos_give_identical_rows_in_every_view(
    demo_run: DemoRun, second_demo: DemoRun, view: str
) -> None:
    first = view_rows(demo_run.db_path, view)
    assert first, f"{view} is empty on the demo file"
    assert view_rows(second_demo.db_path, view) == first


def test_the_demo_has_running_executions_and_both_regressions(demo_run: DemoRun) -> None:
    """What the README's examples and the report stand on: some executions still running at
    the demo's instant, and the two models whose last week got worse."""
    with duckdb.connect(str(demo_run.db_path), read_only=True) as connection:
        [(running,)] = connection.sql(
            "select count(*) from eachlabs.executions where status = 'running'"
        ).fetchall()
        flagged = connection.sql(
            "select model, latency_regressed, failures_regressed"
            " from eachlabs.model_recent_changes"
            " where latency_regressed or failures_regressed order by model"
        ).fetchall()
    assert running > 0
    assert flagged == [("flux-1-1-pro", False, True), ("nano-banana-pro", True, False)]


def test_the_demo_prints_the_same_report_twice(demo_run: DemoRun, second_demo: DemoRun) -> None:
    """From the executions left out on: the cost per workflow and what got worse."""

    def report(run: DemoRun) -> str:
        return run.result.stdout.split("Dry runs and soft-deleted executions are left out")[1]

    assert "Cost per workflow" in report(demo_run) and "What got worse:" in report(demo_run)
    assert report(second_demo) == report(demo_run)


def test_docs_what_got_worse_table_is_the_demos(demo_run: DemoRun) -> None:
    """docs/report.md shows the terminal report's "What got worse" rows of `make demo`."""
    [shown] = re.findall(r"```text\n(What got worse:\n.*?)```", REPORT_DOC, re.S)
    printed = "What got worse:" + demo_run.result.stdout.split("What got worse:")[1]
    assert shown.strip() == printed.strip()


def test_docs_cost_table_is_the_demos(demo_run: DemoRun) -> None:
    """docs/report.md shows the terminal report's cost per workflow of `make demo`: every
    workflow by its name."""
    [shown] = re.findall(r"```text\n(Cost per workflow.*?)```", REPORT_DOC, re.S)
    printed = "Cost per workflow" + demo_run.result.stdout.split("Cost per workflow")[1]
    printed = printed.split("What got worse:")[0]
    assert shown.strip() == printed.strip()
    assert "Cinematic Trailer" in shown and "Quick Caption" in shown


def _recent_changes(db_path: Path) -> dict[str, dict]:
    with duckdb.connect(str(db_path), read_only=True) as connection:
        frame = connection.sql(
            "select * from eachlabs.model_recent_changes where step_type = 'model'"
        ).df()
    return {row["model"]: row for row in frame.to_dict(orient="records")}


def test_docs_caption_figures_are_the_demos(demo_run: DemoRun) -> None:
    """The caption under the README's and docs' chart quotes the demo's own figures."""
    changes = _recent_changes(demo_run.db_path)
    slower, failing = changes["nano-banana-pro"], changes["flux-1-1-pro"]
    caption = " ".join(re.search(r"^\*The demo data.*?\*$", REPORT_DOC, re.M | re.S)[0].split())
    expected_latency = (
        f"p95 {slower['earlier_p95_seconds']:.0f} s → {slower['recent_p95_seconds']:.0f} s, "
        f"{100 * slower['p95_change']:+.0f}%"
    )
    expected_failures = (
        f"{100 * failing['earlier_failure_rate']:.0f}% → "
        f"{100 * failing['recent_failure_rate']:.0f}%"
    )
    assert expected_latency in caption and expected_failures in caption, caption


def test_docs_chart_was_drawn_from_the_demos_figures(demo_run: DemoRun) -> None:
    """docs/recent_changes.png carries the figures it plots (PNG text chunk `Data`, written by
    the notebook); they are the demo's, so the picture cannot drift from `make demo`."""
    from PIL import Image

    with Image.open(REPO / "docs" / "recent_changes.png") as image:
        plotted = json.loads(image.text["Data"])
    changes = _recent_changes(demo_run.db_path)
    assert sorted(row["model"] for row in plotted) == sorted(changes)
    for row in plotted:
        expected = changes[row["model"]]
        for column, value in row.items():
            if isinstance(value, float):
                assert value == pytest.approx(float(expected[column]), rel=1e-9), column
            else:
                assert value == expected[column], column

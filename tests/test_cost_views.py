"""The cost views (workflow_cost_daily, workflow_version_cost): figures worked out by hand.

The executions are listed by the simulator's list endpoint with hand-made summaries
(`load_payloads(..., summaries=...)` loads them with `load --workflow`), so that the summary
columns are filled: a cost as a number, as an object with a `total`, as an object without a
known field, missing; a failed execution with a cost; two versions over two UTC days; a dry
run and a soft-deleted execution, both costly, which no figure counts.

Cost per completed execution = the cost of all the executions counted (failed ones too) /
the completed executions: what one successful result costs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from payloads import timed_execution
from test_views import assert_row, one_row, query

DAY_1 = date(2026, 1, 5)
DAY_2 = date(2026, 1, 6)


def at(day: date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


def cost_payloads() -> list[dict[str, Any]]:
    wf = "wf-cost"
    return [
        # Version v1 on day 1: three completed (10 s, 20 s, 40 s) and one failed.
        timed_execution("cost-1", wf, "completed", at(DAY_1, 10), 10),
        timed_execution("cost-2", wf, "completed", at(DAY_1, 11), 20),
        timed_execution("cost-3", wf, "failed", at(DAY_1, 12), 5),
        timed_execution("cost-4", wf, "completed", at(DAY_1, 13), 40),
        # v1 once more on day 2 (30 s), then v2: 8 s, 12 s and a failure.
        timed_execution("cost-8", wf, "completed", at(DAY_2, 9), 30),
        timed_execution("cost-5", wf, "completed", at(DAY_2, 10), 8),
        timed_execution("cost-6", wf, "completed", at(DAY_2, 11), 12),
        timed_execution("cost-7", wf, "failed", at(DAY_2, 12), 3),
        # Left out: a soft-deleted v1 execution (the earliest of v1) and a dry run of v2 (the
        # latest of the workflow, under another name), both costly.
        timed_execution("cost-gone", wf, "completed", at(DAY_1, 9), 1),
        timed_execution("cost-dry", wf, "completed", at(DAY_2, 13), 1),
        # Other workflows: a free run, a costly failure only, no cost at all, dry runs only.
        timed_execution("cost-free-1", "wf-cost-free", "completed", at(DAY_1, 10), 4),
        timed_execution("cost-failing-1", "wf-cost-failing", "failed", at(DAY_1, 10), 4),
        timed_execution("cost-none-1", "wf-cost-none", "completed", at(DAY_1, 10), 4),
        timed_execution("cost-dry-only-1", "wf-cost-dry-only", "completed", at(DAY_1, 10), 4),
    ]


OLD = {"flow_name": "Old name", "version_id": "v1"}
V1 = {"flow_name": "Cost flow", "version_id": "v1"}
V2 = {"flow_name": "Cost flow", "version_id": "v2"}
COST_SUMMARIES: dict[str, dict[str, Any]] = {
    "cost-1": {**OLD, "cost": 0.5},
    "cost-2": {**OLD, "cost": {"total": 1.25, "currency": "USD"}},
    "cost-3": {**OLD, "cost": 0.25},  # failed, with a cost
    "cost-4": {**OLD, "cost": {"currency": "USD", "note": "no total"}},  # cost_total null
    "cost-8": {**V1, "cost": 0.75},
    "cost-5": {**V2, "cost": 2},
    "cost-6": {**V2},  # no cost
    "cost-7": {**V2, "cost": {"total": 1}},  # failed, with a cost
    "cost-gone": {**OLD, "cost": 100, "deleted_at": "2026-01-07T00:00:00Z"},
    "cost-dry": {"flow_name": "Dry name", "version_id": "v2", "cost": 100, "dry_run": True},
    "cost-free-1": {"flow_name": "Free", "version_id": "v1", "cost": 0},
    "cost-failing-1": {"flow_name": "Failing", "version_id": "v1", "cost": {"amount": 0.5}},
    "cost-none-1": {"flow_name": "No cost", "version_id": "v1"},
    "cost-dry-only-1": {"flow_name": "Dry only", "version_id": "v1", "cost": 9, "dry_run": True},
}


@pytest.fixture(scope="session")
def cost_db(load_payloads_session: Callable[..., Path]) -> Path:
    return load_payloads_session(cost_payloads(), summaries=COST_SUMMARIES)


@pytest.mark.parametrize(
    ("workflow_id", "started_date", "expected"),
    [
        # cost-1..4 (cost-gone left out): 0.5 + 1.25 + 0.25 (the failure's) = 2.0, cost-4's
        # object has no known total; 3 completed -> 2 / 3 per successful result.
        ("wf-cost", DAY_1, dict(flow_name="Cost flow", executions=4, executions_with_cost=3,
            total_cost=2.0, completed_executions=3, cost_per_completed_execution=2.0 / 3)),
        # cost-8, 5, 6, 7 (cost-dry left out): 0.75 + 2 + 1 (the failure's) = 3.75, cost-6
        # has none; 3 completed -> 1.25.
        ("wf-cost", DAY_2, dict(flow_name="Cost flow", executions=4, executions_with_cost=3,
            total_cost=3.75, completed_executions=3, cost_per_completed_execution=1.25)),
        # Free runs cost 0 per result, not an unknown.
        ("wf-cost-free", DAY_1, dict(flow_name="Free", executions=1, executions_with_cost=1,
            total_cost=0.0, completed_executions=1, cost_per_completed_execution=0.0)),
        # A cost but nothing completed: no cost per result.
        ("wf-cost-failing", DAY_1, dict(flow_name="Failing", executions=1,
            executions_with_cost=1, total_cost=0.5, completed_executions=0,
            cost_per_completed_execution=None)),
        # No cost at all: null, not 0.
        ("wf-cost-none", DAY_1, dict(flow_name="No cost", executions=1, executions_with_cost=0,
            total_cost=None, completed_executions=1, cost_per_completed_execution=None)),
    ],
)  # fmt: skip
def test_workflow_cost_daily_matches_hand_computed_sums(
    cost_db: Path, workflow_id: str, started_date: date, expected: dict[str, Any]
) -> None:
    row = one_row(cost_db, "workflow_cost_daily", workflow_id=workflow_id,
                  started_date=started_date)  # fmt: skip
    assert_row(row, expected)


def test_workflow_cost_daily_has_a_row_per_day_with_executions_kept(cost_db: Path) -> None:
    keys = query(
        cost_db,
        "select workflow_id, started_date from eachlabs.workflow_cost_daily"
        " where workflow_id like 'wf-cost%' order by all",
    )
    assert [(row["workflow_id"], row["started_date"]) for row in keys] == [
        ("wf-cost", DAY_1),
        ("wf-cost", DAY_2),
        ("wf-cost-failing", DAY_1),
        ("wf-cost-free", DAY_1),
        ("wf-cost-none", DAY_1),
    ]  # wf-cost-dry-only ran dry runs only: no row


def utc(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("version_id", "expected"),
    [
        # cost-1, 2, 3, 4 and 8 (cost-gone, which started first, left out): 0.5 + 1.25 + 0.25
        # + 0.75 = 2.75 over 4 completed; latency 10, 20, 30, 40 s: p50 25, p95 at
        # h = 3 * 0.95 = 2.85 -> 30 + 0.85 * 10.
        ("v1", dict(flow_name="Cost flow", executions=5, executions_with_cost=4,
            total_cost=2.75, completed_executions=4, cost_per_completed_execution=2.75 / 4,
            p50_latency_seconds=25.0, p95_latency_seconds=38.5,
            first_started_at=utc(DAY_1, 10), last_started_at=utc(DAY_2, 9))),
        # cost-5, 6, 7 (cost-dry, which started last, left out): 2 + 1 over 2 completed;
        # latency 8, 12 s: p95 at h = 0.95 -> 8 + 0.95 * 4.
        ("v2", dict(flow_name="Cost flow", executions=3, executions_with_cost=2,
            total_cost=3.0, completed_executions=2, cost_per_completed_execution=1.5,
            p50_latency_seconds=10.0, p95_latency_seconds=11.8,
            first_started_at=utc(DAY_2, 10), last_started_at=utc(DAY_2, 12))),
    ],
)  # fmt: skip
def test_workflow_version_cost_matches_hand_computed_figures(
    cost_db: Path, version_id: str, expected: dict[str, Any]
) -> None:
    row = one_row(cost_db, "workflow_version_cost", workflow_id="wf-cost", version_id=version_id)
    assert_row(row, expected)


def test_workflow_version_cost_has_the_versions_kept(cost_db: Path) -> None:
    keys = query(
        cost_db,
        "select workflow_id, version_id from eachlabs.workflow_version_cost"
        " where workflow_id like 'wf-cost%' order by all",
    )
    assert [(row["workflow_id"], row["version_id"]) for row in keys] == [
        ("wf-cost", "v1"),
        ("wf-cost", "v2"),
        ("wf-cost-failing", "v1"),
        ("wf-cost-free", "v1"),
        ("wf-cost-none", "v1"),
    ]


def test_days_and_versions_add_up_to_the_same_totals(cost_db: Path) -> None:
    totals = {
        view: query(
            cost_db,
            f"select workflow_id, sum(executions) as executions,"
            f" sum(executions_with_cost) as executions_with_cost, sum(total_cost) as total_cost,"
            f" sum(completed_executions) as completed_executions"
            f" from eachlabs.{view} group by workflow_id order by workflow_id",
        )
        for view in ("workflow_cost_daily", "workflow_version_cost")
    }
    assert totals["workflow_cost_daily"] == totals["workflow_version_cost"]
    kept = query(
        cost_db,
        "select workflow_id, count(*) as executions, count(cost_total) as with_cost,"
        " sum(cost_total) as total_cost from eachlabs.execution_runs"
        " where not is_dry_run and not is_deleted group by workflow_id order by workflow_id",
    )
    assert [(r["workflow_id"], r["executions"], r["total_cost"]) for r in kept] == [
        (r["workflow_id"], r["executions"], r["total_cost"]) for r in totals["workflow_cost_daily"]
    ]


def test_the_cost_columns_of_execution_runs(cost_db: Path) -> None:
    rows = {
        row["execution_id"]: row
        for row in query(
            cost_db,
            "select execution_id, flow_name, version_id, cost_total, is_dry_run, is_deleted,"
            " deleted_at from eachlabs.execution_runs where workflow_id = 'wf-cost'",
        )
    }
    assert {eid: row["cost_total"] for eid, row in rows.items()} == {
        "cost-1": 0.5, "cost-2": 1.25, "cost-3": 0.25, "cost-4": None, "cost-8": 0.75,
        "cost-5": 2.0, "cost-6": None, "cost-7": 1.0, "cost-gone": 100.0, "cost-dry": 100.0,
    }  # fmt: skip
    assert rows["cost-dry"]["is_dry_run"] and not rows["cost-dry"]["is_deleted"]
    assert rows["cost-gone"]["is_deleted"] and not rows["cost-gone"]["is_dry_run"]
    assert rows["cost-gone"]["deleted_at"] == datetime(2026, 1, 7, tzinfo=UTC)
    assert rows["cost-5"]["version_id"] == "v2" and rows["cost-1"]["flow_name"] == "Old name"


@pytest.mark.parametrize("view", ["workflow_cost_daily", "workflow_version_cost"])
def test_cost_per_completed_execution_is_total_over_completed(cost_db: Path, view: str) -> None:
    rows = query(cost_db, f"select * from eachlabs.{view}")
    assert rows
    for row in rows:
        total, completed = row["total_cost"], row["completed_executions"]
        expected = None if total is None or completed == 0 else total / completed
        assert row["cost_per_completed_execution"] == (
            None if expected is None else pytest.approx(expected)
        ), row
        assert 0 <= row["executions_with_cost"] <= row["executions"], row
        assert 0 <= row["completed_executions"] <= row["executions"], row

"""The analytics views in sql/: figures worked out by hand, expectations, applying, docs.

The figures tests load hand-made executions through the real loader (`load_payloads`)
and compare every view's output with values computed by hand in the test.

percentile_cont at fraction p over n sorted samples x[0..n-1] interpolates linearly at
position h = (n - 1) * p: x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from payloads import one_step_executions, timed, timed_execution
from payloads import view_execution as execution
from payloads import view_step as step

from pipelines.views import (
    ViewApplyError,
    ViewCycleError,
    apply_views,
    discover_macros,
    discover_views,
    order_views,
)

REPO = Path(__file__).resolve().parent.parent
Z = 1.959963984540054
BASE_VIEWS = ["execution_runs", "step_runs"]
REPORTING_VIEWS = [
    "model_daily_performance",
    "model_error_causes",
    "model_failure_rates",
    "model_recent_changes",
    "model_trailing_performance",
    "step_latency_by_model",
    "step_latency_by_model_version",
    "workflow_cost_daily",
    "workflow_performance",
    "workflow_version_cost",
]
#: The order `apply_views` creates them in: each after the views it reads, alphabetically
#: within a layer (the cost views read execution_runs only).
APPLY_ORDER = [
    "execution_runs",
    "step_runs",
    "workflow_cost_daily",
    "workflow_version_cost",
    *(view for view in REPORTING_VIEWS if not view.startswith("workflow_")),
    "workflow_performance",
]


# --- the hand-made scenario -------------------------------------------------------------


def scenario_payloads() -> list[dict[str, Any]]:
    payloads = []
    # m-even: versions 1.0 (1 s, 2 s, 3 s) and 2.0 (4 s): an even count per model.
    payloads += one_step_executions("even-v1", "m-even", "completed", [1, 2, 3])
    payloads += one_step_executions("even-v2", "m-even", "completed", [4], version="2.0")
    # m-odd: 0.25 s (fractional timestamps), 1.5 s (+03:00 start), 10 s, and one completed
    # step without completed_at (missing timestamp: counted as untimed, not sampled).
    payloads.append(
        execution(
            "odd-1",
            [
                step(
                    "s1",
                    "completed",
                    model="m-odd",
                    started_at="2025-12-04T10:00:00.5Z",
                    completed_at="2025-12-04T10:00:00.75Z",
                ),
                step(
                    "s2",
                    "completed",
                    model="m-odd",
                    started_at="2025-12-04T13:00:00+03:00",
                    completed_at="2025-12-04T10:00:01.5Z",
                ),
                step("s3", "completed", model="m-odd", **timed("2025-12-04T10:01:00Z", 10)),
                step("s4", "completed", model="m-odd", started_at="2025-12-04T10:02:00Z"),
            ],
        )
    )
    # m-single: one 7 s step, plus one completed step that ends 2 s before it starts.
    payloads.append(
        execution(
            "single-1",
            [
                step("s1", "completed", model="m-single", **timed("2025-12-04T10:00:00Z", 7)),
                step(
                    "s2",
                    "completed",
                    model="m-single",
                    started_at="2025-12-04T10:00:10Z",
                    completed_at="2025-12-04T10:00:08Z",
                ),
            ],
        )
    )
    # m-fail-all: 3 failures (5 s, 6 s, 30 s) with two distinct causes.
    timeout = {"error": "ModelTimeout", "error_cause": "Model request timed out after 30 seconds"}
    oom = {"error": "ModelError", "error_cause": "CUDA out of memory"}
    for name, start, seconds, cause in [
        ("fail-1", "2025-12-04T10:10:00Z", 5, timeout),
        ("fail-2", "2025-12-04T10:20:00Z", 6, timeout),
        ("fail-3", "2025-12-04T10:30:00Z", 30, oom),
    ]:
        failure = step("s1", "failed", model="m-fail-all", **timed(start, seconds), **cause)
        payloads.append(execution(name, [failure], status="failed"))
    # m-mixed: 6 completions of 1 s, 2 failures of 3 s.
    payloads += one_step_executions("mixed-ok", "m-mixed", "completed", [1] * 6)
    payloads += one_step_executions("mixed-ko", "m-mixed", "failed", [3, 3], error="E")
    # A python step fails; the two m-cancelled steps after it are skipped (never ran).
    payloads.append(
        execution(
            "cancel-1",
            [
                step(
                    "s1",
                    "failed",
                    step_type="python",
                    **timed("2025-12-04T10:00:00Z", 0.5),
                    error="PythonError",
                    error_cause="NameError: name 'x' is not defined",
                ),
                step("s2", "cancelled", model="m-cancelled"),
                step("s3", "cancelled", model="m-cancelled"),
            ],
            status="failed",
        )
    )
    # m-running: one step running, one queued, in a running execution of its own workflow.
    payloads.append(
        execution(
            "running-1",
            [
                step("s1", "running", model="m-running", started_at="2025-12-04T10:00:00Z"),
                step("s2", "queued", model="m-running"),
            ],
            workflow_id="wf-idle",
            status="running",
        )
    )
    # An http step (2 s) and a step without metadata (3 s).
    payloads.append(
        execution(
            "tools-1",
            [
                step("s1", "completed", step_type="http", **timed("2025-12-04T10:00:00Z", 2)),
                step("s2", "completed", **timed("2025-12-04T10:00:02Z", 3)),
            ],
        )
    )
    # m-daily: steps around UTC midnight.
    payloads += [
        # 2025-12-04 (UTC): 1 s across midnight, and a failure starting 01:30 at +03:00,
        # i.e. 22:30 UTC the day before.
        execution(
            "daily-1",
            [
                step(
                    "s1",
                    "completed",
                    model="m-daily",
                    started_at="2025-12-04T23:59:59.5Z",
                    completed_at="2025-12-05T00:00:00.5Z",
                ),
                step(
                    "s2",
                    "failed",
                    model="m-daily",
                    started_at="2025-12-05T01:30:00+03:00",
                    completed_at="2025-12-05T01:30:04+03:00",
                    error="E",
                ),
            ],
            status="failed",
            started_at="2025-12-04T23:59:59Z",
            completed_at="2025-12-05T00:00:05Z",
        ),
        # 2025-12-05: 2 s and 4 s.
        execution(
            "daily-2",
            [
                step("s1", "completed", model="m-daily", **timed("2025-12-05T00:00:00Z", 2)),
                step("s2", "completed", model="m-daily", **timed("2025-12-05T08:00:00Z", 4)),
            ],
            started_at="2025-12-05T00:00:00Z",
            completed_at="2025-12-05T08:00:04Z",
        ),
        # A step that never started: its day is its execution's start, 2025-12-05 in UTC
        # (2025-12-06 at +03:00).
        execution(
            "daily-3",
            [step("s1", "cancelled", model="m-daily")],
            status="cancelled",
            started_at="2025-12-06T02:00:00+03:00",
            completed_at="2025-12-06T02:00:01+03:00",
        ),
        # 2025-12-06: only a step that never ran.
        execution(
            "daily-4",
            [step("s1", "cancelled", model="m-daily")],
            status="cancelled",
            started_at="2025-12-06T05:00:00Z",
            completed_at="2025-12-06T05:00:01Z",
        ),
    ]
    # m-week: 5 s on Dec 1, 10 s on Dec 7 (six days later: the same trailing week) and a
    # failure on Dec 8 (seven days after Dec 1: that week no longer holds Dec 1).
    payloads += [
        execution("week-1", [step("s1", "completed", model="m-week",
                                  **timed("2025-12-01T12:00:00Z", 5))]),
        execution("week-2", [step("s1", "completed", model="m-week",
                                  **timed("2025-12-07T12:00:00Z", 10))]),
        execution("week-3", [step("s1", "failed", model="m-week", error="E",
                                  **timed("2025-12-08T12:00:00Z", 1))], status="failed"),
    ]  # fmt: skip
    # wf-perf: executions of 10 s, 20 s (+03:00 start), 40 s, one skewed, one failed, one
    # cancelled, one running. Step medians: m-quick 2 s, m-slow 9 s.
    perf = {"workflow_id": "wf-perf"}
    payloads += [
        execution(
            "perf-1",
            [
                step("s1", "completed", model="m-quick", **timed("2025-12-04T12:00:00Z", 1)),
                step("s2", "completed", model="m-slow", **timed("2025-12-04T12:00:01Z", 9)),
            ],
            started_at="2025-12-04T12:00:00Z",
            completed_at="2025-12-04T12:00:10Z",
            **perf,
        ),
        execution(
            "perf-2",
            [
                step("s1", "completed", model="m-quick", **timed("2025-12-04T12:00:00Z", 2)),
                step("s2", "completed", model="m-slow", **timed("2025-12-04T12:00:02Z", 15)),
            ],
            started_at="2025-12-04T15:00:00+03:00",
            completed_at="2025-12-04T12:00:20Z",
            **perf,
        ),
        execution(
            "perf-3",
            [
                step("s1", "completed", model="m-quick", **timed("2025-12-04T13:00:00Z", 3)),
                step("s2", "completed", model="m-slow", **timed("2025-12-04T13:00:03Z", 3)),
            ],
            started_at="2025-12-04T13:00:00Z",
            completed_at="2025-12-04T13:00:40Z",
            **perf,
        ),
        execution(
            "perf-4",
            [step("s1", "completed", model="m-quick", **timed("2025-12-04T14:00:00Z", 2))],
            started_at="2025-12-04T14:00:00Z",
            completed_at="2025-12-04T13:59:50Z",
            **perf,
        ),
        execution(
            "perf-5",
            [
                step("s1", "failed", model="m-quick", **timed("2025-12-04T15:00:00Z", 50)),
                step("s2", "cancelled", model="m-slow"),
            ],
            status="failed",
            **perf,
        ),
        execution(
            "perf-6",
            [step("s1", "cancelled", model="m-slow")],
            status="cancelled",
            **perf,
        ),
        execution(
            "perf-7",
            [step("s1", "running", model="m-quick", started_at="2025-12-04T16:00:00Z")],
            status="running",
            **perf,
        ),
    ]
    # wf-tie: m-alpha (4 s, 6 s) and m-beta (5 s) share a 5 s median; a slower http step
    # does not count (no model).
    tie = {"workflow_id": "wf-tie"}
    payloads += [
        execution(
            "tie-1",
            [
                step("s1", "completed", model="m-beta", **timed("2025-12-04T12:00:00Z", 5)),
                step("s2", "completed", model="m-alpha", **timed("2025-12-04T12:00:05Z", 4)),
            ],
            **tie,
        ),
        execution(
            "tie-2",
            [
                step("s1", "completed", model="m-alpha", **timed("2025-12-04T12:00:00Z", 6)),
                step("s2", "completed", step_type="http", **timed("2025-12-04T12:00:06Z", 100)),
            ],
            **tie,
        ),
    ]
    return payloads


# The scenario is loaded through the CLI once per session and shared read-only; tests that
# change the database load their own copy.
@pytest.fixture(scope="session")
def scenario_db(load_payloads_session: Callable[..., Path]) -> Path:
    return load_payloads_session(scenario_payloads())


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with duckdb.connect(str(db), read_only=True) as connection:
        cursor = connection.execute(sql, params or [])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def one_row(db: Path, view: str, **key: Any) -> dict[str, Any]:
    """The single row of `eachlabs.<view>` matching `key` (None matches null)."""
    where = " and ".join(f"{column} is not distinct from ?" for column in key) or "true"
    found = query(db, f"select * from eachlabs.{view} where {where}", list(key.values()))
    assert len(found) == 1, f"{view} {key}: {len(found)} rows"
    return found[0]


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval, textbook form (p-hat, not counts)."""
    p = successes / trials
    denominator = 1 + Z**2 / trials
    centre = (p + Z**2 / (2 * trials)) / denominator
    half = Z * math.sqrt(p * (1 - p) / trials + Z**2 / (4 * trials**2)) / denominator
    return centre - half, centre + half


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)


def assert_row(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {k: actual[k] for k in expected} == {
        k: approx(v) if isinstance(v, float) else v for k, v in expected.items()
    }


# --- figures ----------------------------------------------------------------------------

NULL_LATENCY = dict.fromkeys(
    ["avg_seconds", "min_seconds", "p50_seconds", "p75_seconds", "p90_seconds"]
    + ["p95_seconds", "p99_seconds", "max_seconds"]
)


@pytest.mark.parametrize(
    ("step_type", "model", "expected"),
    [
        # 1, 2, 3, 4: h = 3p -> p75 3.25, p90 3.7, p95 3.85, p99 3.97.
        ("model", "m-even", dict(completed_steps=4, skewed_steps=0, untimed_steps=0,
            avg_seconds=2.5, min_seconds=1.0, p50_seconds=2.5, p75_seconds=3.25,
            p90_seconds=3.7, p95_seconds=3.85, p99_seconds=3.97, max_seconds=4.0)),
        # 0.25, 1.5, 10: h = 2p -> p75 1.5 + 0.5 * 8.5, p90 1.5 + 0.8 * 8.5, ...
        ("model", "m-odd", dict(completed_steps=3, skewed_steps=0, untimed_steps=1,
            avg_seconds=11.75 / 3, min_seconds=0.25, p50_seconds=1.5, p75_seconds=5.75,
            p90_seconds=8.3, p95_seconds=9.15, p99_seconds=9.83, max_seconds=10.0)),
        ("model", "m-single", dict(completed_steps=1, skewed_steps=1, untimed_steps=0,
            avg_seconds=7.0, min_seconds=7.0, p50_seconds=7.0, p75_seconds=7.0,
            p90_seconds=7.0, p95_seconds=7.0, p99_seconds=7.0, max_seconds=7.0)),
        ("model", "m-fail-all", dict(completed_steps=0, skewed_steps=0, **NULL_LATENCY)),
        ("model", "m-cancelled", dict(completed_steps=0, **NULL_LATENCY)),
        ("model", "m-running", dict(completed_steps=0, **NULL_LATENCY)),
        ("http", None, dict(completed_steps=2, min_seconds=2.0, p50_seconds=51.0,
            max_seconds=100.0)),
        ("python", None, dict(completed_steps=0, **NULL_LATENCY)),
        (None, None, dict(completed_steps=1, avg_seconds=3.0, p50_seconds=3.0, p99_seconds=3.0)),
    ],
)  # fmt: skip
def test_step_latency_by_model_matches_hand_computed_percentiles(
    scenario_db: Path, step_type: str | None, model: str | None, expected: dict[str, Any]
) -> None:
    row = one_row(scenario_db, "step_latency_by_model", step_type=step_type, model=model)
    assert_row(row, expected)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        # 1, 2, 3: h = 2p -> p75 2.5, p90 2.8, p95 2.9, p99 2.98.
        ("1.0", dict(completed_steps=3, avg_seconds=2.0, min_seconds=1.0, p50_seconds=2.0,
            p75_seconds=2.5, p90_seconds=2.8, p95_seconds=2.9, p99_seconds=2.98,
            max_seconds=3.0)),
        ("2.0", dict(completed_steps=1, avg_seconds=4.0, min_seconds=4.0, p50_seconds=4.0,
            p99_seconds=4.0, max_seconds=4.0)),
    ],
)  # fmt: skip
def test_step_latency_by_model_version_splits_versions(
    scenario_db: Path, version: str, expected: dict[str, Any]
) -> None:
    row = one_row(
        scenario_db,
        "step_latency_by_model_version",
        step_type="model",
        model="m-even",
        model_version=version,
    )
    assert_row(row, expected)


def test_non_model_steps_never_merge_into_a_model_row(scenario_db: Path) -> None:
    keys = query(
        scenario_db,
        "select step_type, model from eachlabs.model_failure_rates where model is null",
    )
    assert sorted(keys, key=str) == sorted(
        [
            {"step_type": "http", "model": None},
            {"step_type": "python", "model": None},
            {"step_type": None, "model": None},
        ],
        key=str,
    )


LOW_1_OF_4 = Z**2 / (4 + Z**2)  # upper bound at 0 failures of 4
MIXED_LOW, MIXED_HIGH = wilson(2, 8)


@pytest.mark.parametrize(
    ("step_type", "model", "expected"),
    [
        # 0 failures of 4: [0, z^2 / (n + z^2)].
        ("model", "m-even", dict(total_steps=4, completed_steps=4, failed_steps=0,
            cancelled_steps=0, in_flight_steps=0, finished_steps=4, failure_rate=0.0,
            failure_rate_low=0.0, failure_rate_high=LOW_1_OF_4, failure_seconds_p50=None,
            is_low_sample=True)),
        # 3 failures of 3: [n / (n + z^2), 1]; time to failure 5, 6, 30 -> 6.
        ("model", "m-fail-all", dict(total_steps=3, completed_steps=0, failed_steps=3,
            finished_steps=3, failure_rate=1.0, failure_rate_low=3 / (3 + Z**2),
            failure_rate_high=1.0, failure_seconds_p50=6.0, is_low_sample=True)),
        ("model", "m-mixed", dict(total_steps=8, completed_steps=6, failed_steps=2,
            finished_steps=8, failure_rate=0.25, failure_rate_low=MIXED_LOW,
            failure_rate_high=MIXED_HIGH, failure_seconds_p50=3.0)),
        # Skewed and untimed completions still count as completed outcomes.
        ("model", "m-single", dict(total_steps=2, completed_steps=2, failed_steps=0)),
        ("model", "m-odd", dict(total_steps=4, completed_steps=4, failure_rate=0.0)),
        # Cancelled steps never ran: no failures, no rate.
        ("model", "m-cancelled", dict(total_steps=2, completed_steps=0, failed_steps=0,
            cancelled_steps=2, in_flight_steps=0, finished_steps=0, failure_rate=None,
            failure_rate_low=None, failure_rate_high=None, failure_seconds_p50=None,
            is_low_sample=True)),
        # In-flight steps have no outcome yet: no rate.
        ("model", "m-running", dict(total_steps=2, completed_steps=0, failed_steps=0,
            cancelled_steps=0, in_flight_steps=2, finished_steps=0, failure_rate=None,
            failure_rate_low=None, failure_rate_high=None)),
        ("python", None, dict(total_steps=1, failed_steps=1, failure_rate=1.0,
            failure_rate_high=1.0, failure_rate_low=1 / (1 + Z**2),
            failure_seconds_p50=0.5)),
        ("http", None, dict(total_steps=2, completed_steps=2, failure_rate=0.0)),
        (None, None, dict(total_steps=1, completed_steps=1, failure_rate=0.0)),
    ],
)  # fmt: skip
def test_model_failure_rates_match_hand_computed_wilson_bounds(
    scenario_db: Path, step_type: str | None, model: str | None, expected: dict[str, Any]
) -> None:
    row = one_row(scenario_db, "model_failure_rates", step_type=step_type, model=model)
    assert_row(row, expected)


def test_model_daily_performance_buckets_by_utc_day(scenario_db: Path) -> None:
    rows = query(
        scenario_db,
        """
        select * from eachlabs.model_daily_performance
        where model = 'm-daily'
        order by started_date
        """,
    )
    low, high = wilson(1, 2)
    expected = [
        # The 23:59:59.5 step (1 s) and the failure that started 01:30 at +03:00.
        dict(started_date=date(2025, 12, 4), total_steps=2, completed_steps=1, failed_steps=1,
            cancelled_steps=0, in_flight_steps=0, finished_steps=2, failure_rate=0.5,
            failure_rate_low=low, failure_rate_high=high, is_low_sample=True,
            skewed_steps=0, p50_seconds=1.0, p95_seconds=1.0),
        # 2 s and 4 s (p95: 2 + 0.95 * 2), and a skipped step dated by its execution's
        # start (02:00 at +03:00 = 23:00 UTC on the 5th).
        dict(started_date=date(2025, 12, 5), total_steps=3, completed_steps=2, failed_steps=0,
            cancelled_steps=1, in_flight_steps=0, finished_steps=2, failure_rate=0.0,
            failure_rate_low=0.0, failure_rate_high=Z**2 / (2 + Z**2), skewed_steps=0,
            p50_seconds=3.0, p95_seconds=3.9),
        # Only a skipped step: counts are 0, latency and rate are null.
        dict(started_date=date(2025, 12, 6), total_steps=1, completed_steps=0, failed_steps=0,
            cancelled_steps=1, in_flight_steps=0, finished_steps=0, failure_rate=None,
            failure_rate_low=None, failure_rate_high=None, skewed_steps=0,
            p50_seconds=None, p95_seconds=None),
    ]  # fmt: skip
    assert len(rows) == len(expected)
    for actual, wanted in zip(rows, expected, strict=True):
        assert_row(actual, wanted)


def test_model_trailing_performance_sums_the_week_ending_each_day(scenario_db: Path) -> None:
    rows = query(
        scenario_db,
        "select * from eachlabs.model_trailing_performance where model = 'm-daily'"
        " order by started_date",
    )
    expected = [
        # The week to Dec 4 holds that day only: 1 s and a failure.
        dict(started_date=date(2025, 12, 4), window_start_date=date(2025, 11, 28),
            finished_steps=2, failed_steps=1, failure_rate=0.5, failure_rate_low=wilson(1, 2)[0],
            failure_rate_high=wilson(1, 2)[1], is_low_sample=True, timed_steps=1,
            p50_seconds=1.0, p95_seconds=1.0, is_low_latency_sample=True),
        # Dec 4 and 5: 1, 2 and 4 s (p95: 2 + 0.9 * 2), one failure of four finished.
        dict(started_date=date(2025, 12, 5), window_start_date=date(2025, 11, 29),
            finished_steps=4, failed_steps=1, failure_rate=0.25,
            failure_rate_low=wilson(1, 4)[0], failure_rate_high=wilson(1, 4)[1],
            timed_steps=3, p50_seconds=2.0, p95_seconds=3.8),
        # Dec 6 had only a skipped step: its week still holds Dec 4 and 5.
        dict(started_date=date(2025, 12, 6), window_start_date=date(2025, 11, 30),
            finished_steps=4, failed_steps=1, failure_rate=0.25, timed_steps=3,
            p50_seconds=2.0, p95_seconds=3.8),
    ]  # fmt: skip
    assert len(rows) == len(expected)
    for actual, wanted in zip(rows, expected, strict=True):
        assert_row(actual, wanted)


def test_model_trailing_performance_weeks_are_seven_days(scenario_db: Path) -> None:
    rows = query(
        scenario_db,
        "select started_date, finished_steps, failed_steps, timed_steps, p50_seconds"
        " from eachlabs.model_trailing_performance where model = 'm-week' order by 1",
    )
    assert rows == [
        dict(started_date=date(2025, 12, 1), finished_steps=1, failed_steps=0, timed_steps=1,
             p50_seconds=5.0),
        dict(started_date=date(2025, 12, 7), finished_steps=2, failed_steps=0, timed_steps=2,
             p50_seconds=7.5),
        dict(started_date=date(2025, 12, 8), finished_steps=2, failed_steps=1, timed_steps=1,
             p50_seconds=10.0),
    ]  # fmt: skip


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """The continuous percentile as SQL's percentile_cont computes it."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@pytest.mark.parametrize("dataset", ["scenario", "recent"])
def test_model_trailing_performance_equals_a_plain_python_recomputation(
    scenario_db: Path, recent_db: Path, dataset: str
) -> None:
    """Every row and figure, against step_runs' rows regrouped in Python."""
    db = scenario_db if dataset == "scenario" else recent_db
    steps = query(
        db,
        "select started_date, step_type, model, status, is_finished, sample_seconds"
        " from eachlabs.step_runs where started_date is not null",
    )
    days = {(s["step_type"], s["model"], s["started_date"]) for s in steps}
    rows = {
        (row["step_type"], row["model"], row["started_date"]): row
        for row in query(db, "select * from eachlabs.model_trailing_performance")
    }
    assert set(rows) == days
    for step_type, model, day in days:
        week = [
            s for s in steps
            if (s["step_type"], s["model"]) == (step_type, model)
            and day - timedelta(days=6) <= s["started_date"] <= day
        ]  # fmt: skip
        finished = sum(s["is_finished"] for s in week)
        failed = sum(s["status"] == "failed" for s in week)
        sample = [s["sample_seconds"] for s in week if s["sample_seconds"] is not None]
        assert_row(
            rows[(step_type, model, day)],
            dict(
                window_start_date=day - timedelta(days=6),
                finished_steps=finished,
                failed_steps=failed,
                failure_rate=failed / finished if finished else None,
                is_low_sample=finished < 30,
                timed_steps=len(sample),
                p50_seconds=percentile_cont(sample, 0.50),
                p95_seconds=percentile_cont(sample, 0.95),
                is_low_latency_sample=len(sample) < 30,
            ),
        )


@pytest.mark.parametrize(
    ("workflow_id", "expected"),
    [
        # 4 completed (one skewed) of 5 finished; latency 10, 20, 40 -> p95 20 + 0.9 * 20.
        # Loaded by ID only: no flow_name.
        ("wf-perf", dict(flow_name=None, total_executions=7, completed_executions=4,
            failed_executions=1,
            cancelled_executions=1, running_executions=1, finished_executions=5,
            success_rate=0.8, success_rate_low=wilson(4, 5)[0],
            success_rate_high=wilson(4, 5)[1], is_low_sample=True, skewed_executions=1,
            p50_seconds=20.0, p95_seconds=38.0, slowest_model="m-slow",
            slowest_model_p50_seconds=9.0)),
        # Tie at a 5 s median: the alphabetically first model wins.
        ("wf-tie", dict(total_executions=2, completed_executions=2, finished_executions=2,
            success_rate=1.0, success_rate_low=2 / (2 + Z**2), success_rate_high=1.0,
            slowest_model="m-alpha", slowest_model_p50_seconds=5.0)),
        ("wf-idle", dict(total_executions=1, running_executions=1, finished_executions=0,
            success_rate=None, success_rate_low=None, success_rate_high=None,
            p50_seconds=None, slowest_model=None, slowest_model_p50_seconds=None)),
    ],
)  # fmt: skip
def test_workflow_performance_matches_hand_computed_figures(
    scenario_db: Path, workflow_id: str, expected: dict[str, Any]
) -> None:
    row = one_row(scenario_db, "workflow_performance", workflow_id=workflow_id)
    assert_row(row, expected)


def test_cost_views_keep_executions_loaded_by_id_only_as_unknown(scenario_db: Path) -> None:
    """Never listed: no name, no version (a null version is its own row), no cost, and
    neither dry runs nor deleted."""
    row = one_row(scenario_db, "workflow_version_cost", workflow_id="wf-perf", version_id=None)
    # Latency sample as in workflow_performance: 10, 20, 40 s (perf-4 is skewed).
    assert_row(row, dict(flow_name=None, executions=7, executions_with_cost=0, total_cost=None,
        completed_executions=4, cost_per_completed_execution=None, p50_latency_seconds=20.0,
        p95_latency_seconds=38.0, first_started_at=datetime(2025, 12, 4, 9, tzinfo=UTC),
        last_started_at=datetime(2025, 12, 4, 14, tzinfo=UTC)))  # fmt: skip
    daily = query(
        scenario_db,
        "select started_date, executions, completed_executions, total_cost, flow_name"
        " from eachlabs.workflow_cost_daily where workflow_id = 'wf-models' order by 1",
    )
    # Every execution starts on Dec 4 (the builder's default, or daily-1 at 23:59:59) but
    # daily-2 and daily-3 (02:00 at +03:00) on Dec 5 and daily-4 on Dec 6.
    assert [(r["started_date"], r["executions"], r["completed_executions"]) for r in daily] == [
        (date(2025, 12, 4), 23, 15),
        (date(2025, 12, 5), 2, 1),
        (date(2025, 12, 6), 1, 0),
    ]
    assert {(r["total_cost"], r["flow_name"]) for r in daily} == {(None, None)}
    flags = query(
        scenario_db,
        "select distinct is_dry_run, is_deleted from eachlabs.execution_runs"
        " union select distinct is_dry_run, is_deleted from eachlabs.step_runs",
    )
    assert flags == [{"is_dry_run": False, "is_deleted": False}]


def test_model_error_causes_shares_and_first_last_seen(scenario_db: Path) -> None:
    rows = query(
        scenario_db,
        """
        select * from eachlabs.model_error_causes
        where model = 'm-fail-all' or step_type = 'python'
        order by step_type, failed_steps desc
        """,
    )
    assert [
        {k: row[k] for k in ("step_type", "model", "error", "failed_steps")} for row in rows
    ] == [
        {"step_type": "model", "model": "m-fail-all", "error": "ModelTimeout", "failed_steps": 2},
        {"step_type": "model", "model": "m-fail-all", "error": "ModelError", "failed_steps": 1},
        {"step_type": "python", "model": None, "error": "PythonError", "failed_steps": 1},
    ]
    timeouts, ooms, python = rows
    assert timeouts["error_cause"] == "Model request timed out after 30 seconds"
    assert timeouts["share_of_model_failures"] == pytest.approx(2 / 3)
    assert ooms["share_of_model_failures"] == pytest.approx(1 / 3)
    assert python["share_of_model_failures"] == 1.0
    assert timeouts["first_seen_at"] == datetime(2025, 12, 4, 10, 10, 5, tzinfo=UTC)
    assert timeouts["last_seen_at"] == datetime(2025, 12, 4, 10, 20, 6, tzinfo=UTC)
    assert ooms["first_seen_at"] == datetime(2025, 12, 4, 10, 30, 30, tzinfo=UTC)
    assert ooms["last_seen_at"] == ooms["first_seen_at"]


def test_step_runs_keeps_fractional_seconds_and_utc_dates(scenario_db: Path) -> None:
    rows = {
        (row["execution_id"], row["step_id"]): row
        for row in query(
            scenario_db,
            "select execution_id, step_id, latency_seconds, is_skewed, started_date "
            "from eachlabs.step_runs",
        )
    }
    assert rows[("odd-1", "s1")]["latency_seconds"] == pytest.approx(0.25)
    assert rows[("odd-1", "s2")]["latency_seconds"] == pytest.approx(1.5)
    assert rows[("odd-1", "s4")]["latency_seconds"] is None
    assert rows[("single-1", "s2")]["latency_seconds"] == pytest.approx(-2.0)
    assert rows[("single-1", "s2")]["is_skewed"] is True
    assert rows[("daily-1", "s2")]["started_date"] == date(2025, 12, 4)
    assert rows[("daily-3", "s1")]["started_date"] == date(2025, 12, 5)


# --- expectations (jaffle-shop style) ---------------------------------------------------

GRAINS = {
    "execution_runs": ["execution_id"],
    "step_runs": ["execution_id", "step_id"],
    "step_latency_by_model": ["step_type", "model"],
    "step_latency_by_model_version": ["step_type", "model", "model_version"],
    "model_failure_rates": ["step_type", "model"],
    "model_daily_performance": ["started_date", "step_type", "model"],
    "workflow_performance": ["workflow_id"],
    "model_error_causes": ["step_type", "model", "error", "error_cause"],
    "model_recent_changes": ["step_type", "model"],
    "model_trailing_performance": ["started_date", "step_type", "model"],
    "workflow_cost_daily": ["workflow_id", "started_date"],
    "workflow_version_cost": ["workflow_id", "version_id"],
}
NOT_NULL = {
    "execution_runs": ["execution_id", "workflow_id", "status", "is_dry_run", "is_deleted"],
    "step_runs": ["execution_id", "step_id", "status", "workflow_id", "started_date"]
    + ["is_dry_run", "is_deleted"],
    "model_daily_performance": ["started_date"],
    "workflow_performance": ["workflow_id"],
    "model_trailing_performance": ["started_date", "window_start_date"],
    "workflow_cost_daily": ["workflow_id", "started_date"],
    "workflow_version_cost": ["workflow_id", "first_started_at", "last_started_at"],
}
RATES = {
    "model_failure_rates": "failure_rate",
    "model_daily_performance": "failure_rate",
    "workflow_performance": "success_rate",
    "model_trailing_performance": "failure_rate",
}
COUNTS = {
    "step_latency_by_model": ["completed_steps", "skewed_steps", "untimed_steps"],
    "model_failure_rates": ["total_steps", "completed_steps", "failed_steps"]
    + ["cancelled_steps", "in_flight_steps", "finished_steps"],
    "model_daily_performance": ["total_steps", "completed_steps", "failed_steps"]
    + ["cancelled_steps", "in_flight_steps", "finished_steps", "skewed_steps"],
    "workflow_performance": ["total_executions", "completed_executions", "failed_executions"]
    + ["cancelled_executions", "running_executions", "finished_executions"],
    "model_error_causes": ["failed_steps"],
    "model_trailing_performance": ["finished_steps", "failed_steps", "timed_steps"],
    "model_recent_changes": ["earlier_timed_steps", "earlier_finished_steps"]
    + ["earlier_failed_steps", "recent_timed_steps", "recent_finished_steps"]
    + ["recent_failed_steps"],
    "workflow_cost_daily": ["executions", "executions_with_cost", "completed_executions"],
    "workflow_version_cost": ["executions", "executions_with_cost", "completed_executions"],
}


def test_every_view_has_a_declared_grain() -> None:
    assert sorted(GRAINS) == sorted(view.name for view in discover_views())


@pytest.mark.parametrize("view", sorted(GRAINS))
def test_view_grain_is_unique(scenario_db: Path, view: str) -> None:
    keys = ", ".join(GRAINS[view])
    duplicates = query(
        scenario_db,
        f"select {keys}, count(*) as n from eachlabs.{view} group by all having count(*) > 1",
    )
    assert duplicates == []
    assert query(scenario_db, f"select count(*) as n from eachlabs.{view}")[0]["n"] > 0


@pytest.mark.parametrize("view", sorted(NOT_NULL))
def test_view_keys_are_not_null(scenario_db: Path, view: str) -> None:
    condition = " or ".join(f"{column} is null" for column in NOT_NULL[view])
    assert query(scenario_db, f"select * from eachlabs.{view} where {condition}") == []


@pytest.mark.parametrize("view", sorted(RATES))
def test_rates_lie_within_their_wilson_interval(scenario_db: Path, view: str) -> None:
    rate = RATES[view]
    violations = query(
        scenario_db,
        f"""
        select * from eachlabs.{view}
        where not (
            ({rate} is null and {rate}_low is null and {rate}_high is null)
            or (0 <= {rate}_low and {rate}_low <= {rate} and {rate} <= {rate}_high
                and {rate}_high <= 1)
        )
        """,
    )
    assert violations == []


@pytest.mark.parametrize("view", sorted(COUNTS))
def test_counts_are_never_negative_or_null(scenario_db: Path, view: str) -> None:
    condition = " or ".join(f"coalesce({c}, -1) < 0" for c in COUNTS[view])
    assert query(scenario_db, f"select * from eachlabs.{view} where {condition}") == []


@pytest.mark.parametrize("view", ["model_failure_rates", "model_daily_performance"])
def test_step_counts_add_up(scenario_db: Path, view: str) -> None:
    violations = query(
        scenario_db,
        f"""
        select * from eachlabs.{view}
        where total_steps != completed_steps + failed_steps + cancelled_steps + in_flight_steps
            or finished_steps != completed_steps + failed_steps
        """,
    )
    assert violations == []


def test_percentiles_are_ordered(scenario_db: Path) -> None:
    violations = query(
        scenario_db,
        """
        select * from eachlabs.step_latency_by_model
        where not (min_seconds <= p50_seconds and p50_seconds <= p75_seconds
            and p75_seconds <= p90_seconds and p90_seconds <= p95_seconds
            and p95_seconds <= p99_seconds and p99_seconds <= max_seconds
            and min_seconds <= avg_seconds and avg_seconds <= max_seconds)
        """,
    )
    assert violations == []


def test_error_cause_shares_add_up_to_one(scenario_db: Path) -> None:
    totals = query(
        scenario_db,
        """
        select step_type, model, sum(share_of_model_failures) as total
        from eachlabs.model_error_causes
        group by step_type, model
        """,
    )
    assert totals and all(row["total"] == pytest.approx(1.0) for row in totals)


# --- applying the views -----------------------------------------------------------------


def test_views_are_applied_in_dependency_order() -> None:
    order = [view.name for view in order_views(discover_views())]
    assert order == APPLY_ORDER
    assert sorted(order) == sorted(BASE_VIEWS + REPORTING_VIEWS)
    dependencies = {view.name: view.dependencies for view in discover_views()}
    assert dependencies["execution_runs"] == ()
    assert dependencies["step_runs"] == ("execution_runs",)
    assert dependencies["workflow_performance"] == ("execution_runs", "step_runs")
    assert dependencies["workflow_cost_daily"] == ("execution_runs",)
    assert dependencies["workflow_version_cost"] == ("execution_runs",)


def test_apply_views_is_idempotent_and_reads_its_own_dataset(
    load_payloads: Callable[..., Path],
) -> None:
    db = load_payloads(one_step_executions("alt", "m-alt", "completed", [1, 3]), "eachlabs_alt")
    with duckdb.connect(str(db)) as connection:
        assert apply_views(connection, "eachlabs_alt") == APPLY_ORDER
        # Empty decoys that would win if the views bound names through the search path.
        for table in ("step_outputs", "executions"):
            connection.execute(
                f"create table main.{table} as select * from eachlabs_alt.{table} where false"
            )
        connection.execute("set search_path = 'main'")
        rows = connection.execute(
            "select model, completed_steps, p50_seconds from eachlabs_alt.step_latency_by_model"
        ).fetchall()
    assert rows == [("m-alt", 2, 2.0)]
    schemas = query(db, "select schema_name from information_schema.schemata")
    assert {"schema_name": "eachlabs"} not in schemas


def write_views(sql_dir: Path, files: dict[str, str]) -> Path:
    sql_dir.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (sql_dir / f"{name}.sql").write_text(sql, encoding="utf-8")
    return sql_dir


@pytest.fixture
def toy_db() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory database with one toy table: for the applier, not for view figures."""
    with duckdb.connect() as connection:
        connection.execute("create schema toy; create table toy.numbers as select 1 as n")
        yield connection


def test_dependencies_ignore_comments_and_strings(tmp_path: Path) -> None:
    sql_dir = write_views(
        tmp_path,
        {
            "a_view": "-- reads b_view? no.\nselect n, 'b_view' as label from numbers",
            "b_view": "/* a_view */ select n from a_view",
        },
    )
    views = {view.name: view.dependencies for view in discover_views(sql_dir)}
    assert views == {"a_view": (), "b_view": ("a_view",)}


def test_cycle_is_reported_with_the_files(tmp_path: Path) -> None:
    sql_dir = write_views(
        tmp_path,
        {"one": "select * from two", "two": "select * from three", "three": "select * from one"},
    )
    with pytest.raises(ViewCycleError, match=r"one\.sql") as error:
        order_views(discover_views(sql_dir))
    assert "three" in str(error.value) and "two.sql" in str(error.value)


def test_broken_view_leaves_previous_views_intact(
    tmp_path: Path, toy_db: duckdb.DuckDBPyConnection
) -> None:
    good = write_views(
        tmp_path / "good", {"base": "select n from numbers", "top": "select n from base"}
    )
    assert apply_views(toy_db, "toy", good) == ["base", "top"]
    broken = write_views(
        tmp_path / "broken",
        {
            "base": "select n, n * 10 as tenfold from numbers",
            "top": "select n, no_such_column from base",
        },
    )
    with pytest.raises(ViewApplyError, match=r"top\.sql"):
        apply_views(toy_db, "toy", broken)
    assert toy_db.execute("select * from toy.base").fetchall() == [(1,)]
    assert toy_db.execute("select * from toy.top").fetchall() == [(1,)]


def test_missing_dataset_is_a_clear_error(toy_db: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ViewApplyError, match="schema 'nowhere' does not exist"):
        apply_views(toy_db, "nowhere")


def test_table_missing_from_dataset_is_refused(
    tmp_path: Path, toy_db: duckdb.DuckDBPyConnection
) -> None:
    toy_db.execute("create schema empty")
    sql_dir = write_views(tmp_path, {"reader": "select n from numbers"})
    with pytest.raises(ViewApplyError, match=r"reader\.sql.*numbers.*toy\.numbers"):
        apply_views(toy_db, "empty", sql_dir)


# --- documentation ----------------------------------------------------------------------


VIEWS_DOC = "docs/views.md"


def documented_views(text: str) -> dict[str, str]:
    """`## view_name` sections of docs/views.md: name -> body (up to the next `## `)."""
    parts = re.split(r"^## ([a-z_][a-z0-9_]*)\s*$", text, flags=re.M)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return {name: body.split("\n## ")[0] for name, body in pairs}


def test_every_view_is_documented_and_every_documented_view_exists() -> None:
    path = REPO / VIEWS_DOC
    assert path.exists(), f"{VIEWS_DOC} is missing"
    documented = documented_views(path.read_text(encoding="utf-8"))
    assert sorted(documented) == sorted(view.name for view in discover_views())
    for name, body in documented.items():
        assert "Grain" in body, f"{VIEWS_DOC}: {name} does not state its grain"
        assert re.search(rf"```sql\n.*\b{name}\b.*```", body, re.S), (
            f"{VIEWS_DOC}: {name} has no example query"
        )


def test_documented_example_queries_run(scenario_db: Path) -> None:
    text = (REPO / VIEWS_DOC).read_text(encoding="utf-8")
    for body in documented_views(text).values():
        for example in re.findall(r"```sql\n(.*?)```", body, re.S):
            query(scenario_db, example)  # raises if the example drifted from the view


def test_skewed_failures_are_counted_not_timed(load_payloads: Callable[..., Path]) -> None:
    payloads = [
        execution(
            f"skew-{n}",
            [step("s1", "failed", model="m-skew", **timed("2025-12-04T10:00:00Z", seconds))],
            status="failed",
        )
        for n, seconds in enumerate([4.0, -2.0, 8.0])
    ]
    db = load_payloads(payloads)
    row = one_row(db, "model_failure_rates", step_type="model", model="m-skew")
    assert_row(row, dict(failed_steps=3, failure_seconds_p50=6.0, skewed_failed_steps=1))


# --- model_recent_changes: the last 7 days against the 28 before --------------------------

# The latest step of the dataset starts at END (m-new's last step): the recent window is
# (END - 7 days, END], the earlier one (END - 35 days, END - 7 days].
END = datetime(2026, 1, 29, 12, 0, tzinfo=UTC)
RECENT_FROM = datetime(2026, 1, 22, 12, 0, tzinfo=UTC)
EARLIER_FROM = datetime(2025, 12, 25, 12, 0, tzinfo=UTC)


def window_execution(
    execution_id: str, model: str, first_start: str, outcomes: list[float | str]
) -> dict[str, Any]:
    """One execution of `model` steps a minute apart from `first_start`: a number is a
    completed step of that many seconds, "failed" a failed step of 1 s."""
    first = datetime.fromisoformat(first_start)
    steps = []
    for i, outcome in enumerate(outcomes):
        start = datetime.fromtimestamp(first.timestamp() + 60 * i, tz=UTC)
        at = start.isoformat().replace("+00:00", "Z")
        if outcome == "failed":
            steps.append(step(f"s{i:02d}", "failed", model=model, **timed(at, 1), error="E"))
        else:
            steps.append(step(f"s{i:02d}", "completed", model=model, **timed(at, outcome)))
    return execution(execution_id, steps, started_at=first_start, completed_at=None)


EARLIER_DAY = "2026-01-10T00:00:00Z"
RECENT_DAY = "2026-01-25T00:00:00Z"


def recent_changes_payloads() -> list[dict[str, Any]]:
    windows = {
        # p95 10 s -> 12 s: exactly +20% with 30 timed steps in each window.
        "m-plus20": ([10] * 30, [12] * 30),
        # 10 s -> 11.9 s: +19%, under the threshold.
        "m-plus19": ([10] * 30, [11.9] * 30),
        # +100%, but fewer than 30 timed steps in one window.
        "m-few-earlier": ([10] * 29, [20] * 30),
        "m-few-recent": ([10] * 30, [20] * 29),
        # 1 failure of 40 -> 10 of 20: the intervals do not overlap.
        "m-failing": ([1] * 39 + ["failed"], [1] * 10 + ["failed"] * 10),
        # 1 of 40 -> 3 of 20: a higher rate, but the intervals overlap.
        "m-overlap": ([1] * 39 + ["failed"], [1] * 17 + ["failed"] * 3),
        # Only in one window.
        "m-gone": ([2, 4, 6], []),
    }
    payloads = []
    for model, (earlier, recent) in windows.items():
        payloads.append(window_execution(f"{model}-earlier", model, EARLIER_DAY, earlier))
        if recent:
            payloads.append(window_execution(f"{model}-recent", model, RECENT_DAY, recent))
    # Only in the recent window; its second step (at END) is the latest of the dataset.
    payloads.append(window_execution("m-new-recent", "m-new", "2026-01-29T11:59:00Z", [5, 7]))
    # On the boundaries: exactly at RECENT_FROM is the earlier window, exactly at
    # EARLIER_FROM is outside both, a second later is inside the earlier one.
    payloads += [
        window_execution("edge-1", "m-edge", "2026-01-22T12:00:00Z", [3]),
        window_execution("edge-2", "m-edge", "2025-12-25T12:00:00Z", [100]),
        window_execution("edge-3", "m-edge", "2025-12-25T12:00:01Z", [5]),
    ]
    # Older than both windows: no row at all.
    payloads.append(window_execution("ancient-1", "m-ancient", "2025-12-20T00:00:00Z", [1]))
    return payloads


@pytest.fixture(scope="session")
def recent_db(load_payloads_session: Callable[..., Path]) -> Path:
    return load_payloads_session(recent_changes_payloads())


NO_FAILURES_OF_30 = dict(failed_steps=0, failure_rate=0.0, failure_rate_low=0.0,
    failure_rate_high=Z**2 / (30 + Z**2))  # fmt: skip


def windows(earlier: dict[str, Any], recent: dict[str, Any]) -> dict[str, Any]:
    return {
        **{f"earlier_{k}": v for k, v in earlier.items()},
        **{f"recent_{k}": v for k, v in recent.items()},
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("m-plus20", dict(**windows(
            dict(timed_steps=30, finished_steps=30, p50_seconds=10.0, p95_seconds=10.0,
                **NO_FAILURES_OF_30),
            dict(timed_steps=30, finished_steps=30, p50_seconds=12.0, p95_seconds=12.0,
                **NO_FAILURES_OF_30)),
            p95_change=0.2, latency_regressed=True, failures_regressed=False)),
        ("m-plus19", dict(earlier_p95_seconds=10.0, recent_p95_seconds=11.9, p95_change=0.19,
            latency_regressed=False, failures_regressed=False)),
        ("m-few-earlier", dict(earlier_timed_steps=29, recent_timed_steps=30, p95_change=1.0,
            latency_regressed=False)),
        ("m-few-recent", dict(earlier_timed_steps=30, recent_timed_steps=29, p95_change=1.0,
            latency_regressed=False)),
        ("m-failing", dict(**windows(
            dict(timed_steps=39, finished_steps=40, failed_steps=1, failure_rate=1 / 40,
                failure_rate_low=wilson(1, 40)[0], failure_rate_high=wilson(1, 40)[1]),
            dict(timed_steps=10, finished_steps=20, failed_steps=10, failure_rate=0.5,
                failure_rate_low=wilson(10, 20)[0], failure_rate_high=wilson(10, 20)[1])),
            p95_change=0.0, latency_regressed=False, failures_regressed=True)),
        ("m-overlap", dict(recent_failure_rate=3 / 20, recent_failure_rate_low=wilson(3, 20)[0],
            earlier_failure_rate_high=wilson(1, 40)[1], failures_regressed=False)),
        # No data in the recent window: counts 0, figures null, flags false.
        # 2, 4, 6 s: p95 at h = 1.9 -> 4 + 0.9 * 2.
        ("m-gone", dict(**windows(
            dict(timed_steps=3, finished_steps=3, p50_seconds=4.0, p95_seconds=5.8,
                failed_steps=0, failure_rate=0.0),
            dict(timed_steps=0, finished_steps=0, failed_steps=0, p50_seconds=None,
                p95_seconds=None, failure_rate=None, failure_rate_low=None,
                failure_rate_high=None)),
            p95_change=None, latency_regressed=False, failures_regressed=False)),
        # No data in the earlier window; 5, 7 s: p95 5 + 0.95 * 2.
        ("m-new", dict(**windows(
            dict(timed_steps=0, finished_steps=0, failed_steps=0, p50_seconds=None,
                p95_seconds=None, failure_rate=None, failure_rate_low=None,
                failure_rate_high=None),
            dict(timed_steps=2, finished_steps=2, p50_seconds=6.0, p95_seconds=6.9)),
            p95_change=None, latency_regressed=False, failures_regressed=False)),
        # 3 s at RECENT_FROM and 5 s a second after EARLIER_FROM; the 100 s step is out.
        ("m-edge", dict(earlier_timed_steps=2, earlier_p50_seconds=4.0, recent_timed_steps=0,
            recent_finished_steps=0)),
    ],
)  # fmt: skip
def test_model_recent_changes_matches_hand_computed_figures(
    recent_db: Path, model: str, expected: dict[str, Any]
) -> None:
    row = one_row(recent_db, "model_recent_changes", step_type="model", model=model)
    assert_row(row, {"window_end_at": END, "recent_from_at": RECENT_FROM,
                     "earlier_from_at": EARLIER_FROM, **expected})  # fmt: skip


def test_model_recent_changes_leaves_out_models_older_than_both_windows(recent_db: Path) -> None:
    models = [
        row["model"] for row in query(recent_db, "select model from eachlabs.model_recent_changes")
    ]
    assert "m-ancient" not in models
    assert len(models) == 9


def test_model_recent_changes_rates_lie_within_their_wilson_intervals(recent_db: Path) -> None:
    for window in ("earlier", "recent"):
        rate = f"{window}_failure_rate"
        violations = query(
            recent_db,
            f"""
            select * from eachlabs.model_recent_changes
            where not (
                ({rate} is null and {rate}_low is null and {rate}_high is null
                    and {window}_finished_steps = 0)
                or (0 <= {rate}_low and {rate}_low <= {rate} and {rate} <= {rate}_high
                    and {rate}_high <= 1)
            )
            """,
        )
        assert violations == []


# --- dry runs and soft-deleted executions: kept in the base views, in no report ------------

HONEST_SUMMARIES: dict[str, dict[str, Any]] = {
    "honest-1": {"flow_name": "Honest flow", "version_id": "v1", "cost": 1},
    "honest-dry": {"flow_name": "Dry flow", "version_id": "v1", "cost": 5, "dry_run": True},
    "honest-gone": {"flow_name": "Gone flow", "version_id": "v1", "cost": 7,
                    "deleted_at": "2026-02-03T00:00:00Z"},
    "honest-dry-only-1": {"flow_name": "Dry only", "version_id": "v1", "dry_run": True},
}  # fmt: skip
#: What only the left-out executions hold: no reporting view may show any of it.
LEFT_OUT_VALUES = {"m-dry-only", "m-gone-only", "E-gone", "wf-honest-dry-only", "Dry flow",
                   "Gone flow", "Dry only"}  # fmt: skip


def honesty_payloads() -> list[dict[str, Any]]:
    """wf-honest: one kept execution (a 2 s m-honest step), then a dry run and a soft-deleted
    failure, both later and with steps of m-honest and of models only they ran; and a
    workflow run only as a dry run."""
    dry_step = step("s2", "completed", model="m-dry-only", **timed("2026-02-02T10:00:50Z", 1))
    gone_step = step("s2", "failed", model="m-gone-only", error="E-gone",
                     **timed("2026-02-02T11:00:09Z", 1))  # fmt: skip
    return [
        timed_execution("honest-1", "wf-honest", "completed", "2026-02-01T10:00:00Z", 2,
                        model="m-honest"),
        timed_execution("honest-dry", "wf-honest", "completed", "2026-02-02T10:00:00Z", 50,
                        model="m-honest", extra_steps=[dry_step]),
        timed_execution("honest-gone", "wf-honest", "failed", "2026-02-02T11:00:00Z", 9,
                        model="m-honest", extra_steps=[gone_step]),
        timed_execution("honest-dry-only-1", "wf-honest-dry-only", "completed",
                        "2026-02-01T12:00:00Z", 3, model="m-dry-only"),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def honest_db(load_payloads_session: Callable[..., Path]) -> Path:
    return load_payloads_session(honesty_payloads(), summaries=HONEST_SUMMARIES)


def test_base_views_keep_dry_runs_and_deleted_executions_flagged(honest_db: Path) -> None:
    executions = {
        row["execution_id"]: (row["is_dry_run"], row["is_deleted"], row["flow_name"])
        for row in query(honest_db, "select * from eachlabs.execution_runs")
    }
    assert executions == {
        "honest-1": (False, False, "Honest flow"),
        "honest-dry": (True, False, "Dry flow"),
        "honest-gone": (False, True, "Gone flow"),
        "honest-dry-only-1": (True, False, "Dry only"),
    }
    steps = {
        (row["execution_id"], row["step_id"]): (row["is_dry_run"], row["is_deleted"])
        for row in query(honest_db, "select * from eachlabs.step_runs")
    }
    assert steps == {
        ("honest-1", "s1"): (False, False),
        ("honest-dry", "s1"): (True, False),
        ("honest-dry", "s2"): (True, False),
        ("honest-gone", "s1"): (False, True),
        ("honest-gone", "s2"): (False, True),
        ("honest-dry-only-1", "s1"): (True, False),
    }
    deleted_at = query(
        honest_db,
        "select deleted_at from eachlabs.execution_runs where execution_id = 'honest-gone'",
    )
    assert deleted_at == [{"deleted_at": datetime(2026, 2, 3, tzinfo=UTC)}]


#: Every reporting view's rows on `honest_db`: the figures of honest-1 alone (a completed
#: 2 s execution whose one m-honest step took 2 s, on 2026-02-01, costing 1).
HONEST_STEP = datetime(2026, 2, 1, 10, tzinfo=UTC)
HONEST_ROWS: dict[str, list[dict[str, Any]]] = {
    "model_daily_performance": [dict(started_date=date(2026, 2, 1), model="m-honest",
        total_steps=1, completed_steps=1, failed_steps=0, finished_steps=1, p50_seconds=2.0,
        p95_seconds=2.0)],
    "model_error_causes": [],  # the only failures were the deleted execution's
    "model_failure_rates": [dict(model="m-honest", total_steps=1, completed_steps=1,
        failed_steps=0, finished_steps=1, failure_rate=0.0)],
    # The windows end at honest-1's step, not at the later dry run's or deleted one's.
    "model_recent_changes": [dict(model="m-honest", window_end_at=HONEST_STEP,
        recent_timed_steps=1, recent_finished_steps=1, recent_failed_steps=0,
        recent_p95_seconds=2.0, earlier_finished_steps=0)],
    "model_trailing_performance": [dict(started_date=date(2026, 2, 1), model="m-honest",
        finished_steps=1, failed_steps=0, timed_steps=1, p50_seconds=2.0)],
    "step_latency_by_model": [dict(model="m-honest", completed_steps=1, p50_seconds=2.0,
        max_seconds=2.0)],
    "step_latency_by_model_version": [dict(model="m-honest", model_version="1.0",
        completed_steps=1, p50_seconds=2.0, max_seconds=2.0)],
    "workflow_cost_daily": [dict(started_date=date(2026, 2, 1), workflow_id="wf-honest",
        flow_name="Honest flow", executions=1, executions_with_cost=1, total_cost=1.0,
        completed_executions=1, cost_per_completed_execution=1.0)],
    # The name of the kept execution, not of the later dry run.
    "workflow_performance": [dict(workflow_id="wf-honest", flow_name="Honest flow",
        total_executions=1, completed_executions=1, failed_executions=0,
        finished_executions=1, success_rate=1.0, p50_seconds=2.0, p95_seconds=2.0,
        slowest_model="m-honest", slowest_model_p50_seconds=2.0)],
    "workflow_version_cost": [dict(workflow_id="wf-honest", version_id="v1",
        flow_name="Honest flow", executions=1, executions_with_cost=1, total_cost=1.0,
        completed_executions=1, cost_per_completed_execution=1.0, p50_latency_seconds=2.0,
        first_started_at=HONEST_STEP, last_started_at=HONEST_STEP)],
}  # fmt: skip


def test_every_reporting_view_has_honest_expectations() -> None:
    assert sorted(HONEST_ROWS) == REPORTING_VIEWS


@pytest.mark.parametrize("view", REPORTING_VIEWS)
def test_reporting_views_leave_out_dry_runs_and_deleted_executions(
    honest_db: Path, view: str
) -> None:
    rows = query(honest_db, f"select * from eachlabs.{view} order by all")
    shown = {value for row in rows for value in row.values() if isinstance(value, str)}
    assert shown.isdisjoint(LEFT_OUT_VALUES), shown & LEFT_OUT_VALUES
    assert len(rows) == len(HONEST_ROWS[view])
    for actual, expected in zip(rows, HONEST_ROWS[view], strict=True):
        assert_row(actual, expected)


@pytest.mark.parametrize("view", REPORTING_VIEWS)
def test_reporting_views_filter_on_both_flags(view: str) -> None:
    """Each reporting view, or the table macro it reads (in both dialects), keeps only
    `not is_dry_run and not is_deleted` rows."""
    code = re.sub(r"--[^\n]*", "", (REPO / "sql" / f"{view}.sql").read_text(encoding="utf-8"))
    macros = {
        "step_latency(": "step_latency",
        "trailing_week(": "trailing_week",
    }
    called = [name for call, name in macros.items() if call in code]
    sources = [code] if not called else [
        macro.sql
        for dialect in ("duckdb", "postgres")
        for macro in discover_macros(dialect=dialect)
        if macro.name in called
    ]  # fmt: skip
    for source in sources:
        assert re.search(r"not (\w+\.)?is_dry_run\s+and not (\w+\.)?is_deleted", source), view

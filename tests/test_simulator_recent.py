"""The simulator's recent days: two models got worse, and live executions keep real latencies.

Plans are built with the same per-execution seed under two settings and compared step by
step, so each test shows exactly what a setting changes and what it leaves alone.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipelines.simulator.catalogue import MODELS, RECENT_PERIOD_S
from pipelines.simulator.plans import US, Dataset, ExecutionPlan, _plan_execution

DATASET = Dataset(seed=42, executions=400)
MICROSECONDS = 2  # index of the microsecond precision: no truncation of instants


def plan(index: int, **overrides: Any) -> ExecutionPlan:
    """Execution `index` of DATASET, planned from its own seed with `overrides`."""
    arguments: dict[str, Any] = dict(
        execution_id=DATASET.execution_ids[index],
        workflow=DATASET.workflows[DATASET.workflow_of[index]],
        version_index=DATASET.version_of[index],
        bulk_id=None,
        started_us=DATASET.started_us[index],
        precision=MICROSECONDS,
        live_until_us=None,
        is_recent=False,
    )
    arguments.update(overrides)
    return _plan_execution(random.Random(f"eachlabs-sim/42/{index}"), **arguments)


def durations(execution: ExecutionPlan) -> dict[str, int]:
    return {step.step_id: step.end_us - step.start_us for step in execution.steps}


def test_a_live_execution_waits_in_the_queue_and_keeps_its_step_durations() -> None:
    for index in range(50):
        finished = plan(index)
        # Started ten hours before the start time yet still running at it.
        live_until_us = finished.started_us + 10 * 3600 * US
        live = plan(index, live_until_us=live_until_us)
        assert durations(live) == durations(finished)
        assert live.terminal_us > live_until_us
        assert live.steps[0].start_us > finished.steps[0].start_us
        assert live.terminal_status == finished.terminal_status


@pytest.mark.parametrize("index", range(60))
def test_recent_executions_change_only_the_regressed_models(index: int) -> None:
    old, recent = plan(index), plan(index, is_recent=True)
    for before, after in zip(old.steps, recent.steps, strict=True):
        duration_before = before.end_us - before.start_us
        duration_after = after.end_us - after.start_us
        spec = MODELS.get(before.model or "")
        if spec is not None and spec.recent_latency_factor != 1.0:
            assert duration_after == pytest.approx(
                duration_before * spec.recent_latency_factor, abs=2
            )
        else:
            assert duration_after == duration_before
        if spec is not None and spec.recent_failure_rate is not None:
            # The same draw against a higher rate: a failure stays a failure.
            assert after.is_failing or not before.is_failing
        else:
            assert after.is_failing == before.is_failing
        assert (after.params, after.output, after.error) == (
            before.params,
            before.output,
            before.error,
        )


def test_dataset_marks_the_last_days_as_recent() -> None:
    """flux-1-1-pro fails far more often, nano-banana-pro runs 1.8x longer, in recent plans."""
    dataset = Dataset(seed=42, executions=1000)  # the demo's data
    recent_from_us = dataset.start_us - RECENT_PERIOD_S * US
    flux: dict[bool, list[bool]] = {True: [], False: []}
    banana: dict[bool, list[float]] = {True: [], False: []}
    for index in range(len(dataset)):
        execution = dataset.plan(index)
        is_recent = execution.started_us >= recent_from_us
        for step in execution.steps:
            if step.model == "flux-1-1-pro":
                flux[is_recent].append(step.is_failing)
            if step.model == "nano-banana-pro" and execution.terminal_status == "completed":
                banana[is_recent].append((step.end_us - step.start_us) / US)
    assert len(flux[True]) >= 50 and len(flux[False]) >= 50
    assert sum(flux[True]) / len(flux[True]) > 0.1 > sum(flux[False]) / len(flux[False])
    median = {key: sorted(values)[len(values) // 2] for key, values in banana.items()}
    assert median[True] > 1.4 * median[False]

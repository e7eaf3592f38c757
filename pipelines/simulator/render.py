"""Rendering: a plan as the API shows it at a simulated instant.

`render_execution(plan, now_us)` / `render_summary(plan, now_us, facts)` turn an
`ExecutionPlan` into the API's `ExecutionDetails` / `ExecutionSummary` object; the step and
execution statuses follow from the simulated time alone. Only the summary shows the
`SummaryFacts` (user, cost, dry run, soft delete; see `summaries.py`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipelines.simulator.content import MISSING
from pipelines.simulator.plans import EPOCH, PRECISIONS, US, ExecutionPlan, StepPlan
from pipelines.simulator.summaries import SummaryFacts


def render_execution(plan: ExecutionPlan, now_us: int) -> dict[str, Any]:
    """The `ExecutionDetails` object of `plan` as the API shows it at `now_us`."""
    status = plan.status_at(now_us)
    ts = _Formatter(plan)
    body: dict[str, Any] = {
        "execution_id": plan.execution_id,
        "workflow_id": plan.workflow_id,
    }
    if plan.bulk_id is not None:
        body["bulk_id"] = plan.bulk_id
    body["status"] = status
    body["started_at"] = ts(plan.started_us)
    if status != "running":
        body["completed_at"] = ts(plan.terminal_us)
    body["inputs"] = plan.inputs
    step_outputs: dict[str, Any] = {}
    last_step: StepPlan | None = None
    for step in plan.steps:
        step_status = _step_status(plan, step, status, now_us)
        step_outputs[step.step_id] = _render_step(plan, step, step_status, ts)
        if step_status == "completed" and (last_step is None or step.end_us >= last_step.end_us):
            last_step = step
    body["step_outputs"] = step_outputs
    output = None
    if status == "completed" and last_step is not None:
        output = last_step.output if last_step.output is not MISSING else last_step.primary
    body["output"] = output
    if status == "failed":
        body["error"] = plan.error
        body["error_cause"] = plan.error_cause
    return body


def render_summary(
    plan: ExecutionPlan, now_us: int, facts: SummaryFacts | None = None
) -> dict[str, Any]:
    """The `ExecutionSummary` object of `plan` (list endpoint) at `now_us`.

    With `facts`, it also has `api_key` and `dry_run`, `cost` once the execution has ended
    (unless the facts have none) and `deleted_at` once it is soft-deleted; the fields come in
    the spec's order.
    """
    status = plan.status_at(now_us)
    ts = _Formatter(plan)
    summary: dict[str, Any] = {
        "execution_id": plan.execution_id,
        "flow_id": plan.workflow_id,
        "flow_name": plan.flow_name,
        "version_id": plan.version_id,
    }
    if facts is not None:
        summary["api_key"] = facts.api_key
    summary["status"] = status
    summary["started_at"] = ts(plan.started_us)
    if status == "running":
        transitions = [plan.started_us]
        for step in plan.steps:
            transitions.extend(t for t in (step.start_us, step.end_us) if t <= now_us)
        updated_us = max(transitions)
    else:
        summary["ended_at"] = ts(plan.terminal_us)
        updated_us = plan.terminal_us
    summary["created_at"] = ts(plan.started_us)
    summary["updated_at"] = ts(updated_us)
    if facts is not None:
        if facts.deleted_us is not None and facts.deleted_us <= now_us:
            summary["deleted_at"] = ts(facts.deleted_us)
        summary["dry_run"] = facts.is_dry_run
    summary["inputs"] = plan.inputs
    if facts is not None and facts.cost is not None and status != "running":
        summary["cost"] = facts.cost
    return summary


def _step_status(plan: ExecutionPlan, step: StepPlan, status: str, now_us: int) -> str:
    if status in ("failed", "cancelled"):
        if step.is_failing and step.end_us == plan.terminal_us:
            return "failed"
        if step.end_us <= plan.terminal_us and not step.is_failing:
            return "completed"
        return "cancelled"
    if now_us < step.start_us:
        return "queued"
    if now_us < step.end_us:
        return "running"
    return "completed"


def _render_step(
    plan: ExecutionPlan, step: StepPlan, status: str, ts: _Formatter
) -> dict[str, Any]:
    # A cancelled step has a start time only if it had started before the execution stopped.
    has_started = status in ("running", "completed", "failed") or (
        status == "cancelled" and step.start_us < plan.terminal_us
    )
    body: dict[str, Any] = {"step_id": step.step_id, "status": status}
    if has_started:
        body["started_at"] = ts(step.start_us)
    if status in ("completed", "failed"):
        body["completed_at"] = ts(step.end_us)
    if status == "completed":
        body["output"] = step.output
        if step.primary is not MISSING:
            body["primary"] = step.primary
    if step.has_input and has_started:
        step_input: dict[str, Any] = {"step_id": step.step_id}
        if step.model is not None:
            step_input["model"] = step.model
            step_input["version"] = step.model_version
        else:
            step_input["type"] = step.step_type
        step_input["params"] = step.params
        body["input"] = step_input
    if step.has_metadata:
        body["metadata"] = _render_metadata(step, status, has_started, ts)
    if status == "failed":
        body["error"] = step.error
        body["error_cause"] = step.error_cause
    return body


def _render_metadata(
    step: StepPlan, status: str, has_started: bool, ts: _Formatter
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if step.step_type == "model":
        metadata["model"] = step.model
        metadata["version"] = step.model_version
    else:
        metadata["type"] = step.step_type
        if step.step_type == "http":
            metadata["method"] = step.http_method
            metadata["url"] = step.http_url
    # Params are resolved from earlier outputs, so they only exist once the step has started.
    if has_started:
        metadata["params"] = step.params
    if status == "completed":
        seconds = (step.end_us - step.start_us) / US
        if step.step_type == "model":
            metadata["prediction_id"] = step.prediction_id
            metadata["processed_at"] = ts(step.processed_us)
        elif step.step_type == "http":
            metadata["elapsed_seconds"] = round(seconds, 3)
        else:
            metadata["execution_time"] = round(seconds, 4)
            metadata["processed_at"] = ts(step.processed_us)
    return metadata


class _Formatter:
    """RFC 3339 timestamps in the execution's UTC offset and precision.

    Precisions: whole seconds, milliseconds, microseconds, or microseconds with trailing zeros
    trimmed (and no fraction at all when it is zero), as Go's RFC3339Nano writes them.
    """

    def __init__(self, plan: ExecutionPlan) -> None:
        self._precision = PRECISIONS[plan.precision]
        minutes = plan.tz_minutes
        self._offset_us = (minutes or 0) * 60 * US
        if minutes is None:
            self._suffix = "Z"
        else:
            sign = "+" if minutes >= 0 else "-"
            self._suffix = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def __call__(self, instant_us: int) -> str:
        seconds, micros = divmod(instant_us + self._offset_us, US)
        text = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        if self._precision == "milliseconds":
            text += f".{micros // 1000:03d}"
        elif self._precision == "microseconds":
            text += f".{micros:06d}"
        elif self._precision == "trimmed" and micros:
            text += "." + f"{micros:06d}".rstrip("0")
        return text + self._suffix

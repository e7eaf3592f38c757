"""Executions of one generated instance, all from one seed.

The work is split so that a large instance stays cheap:

- `Dataset` builds, up front, only a skeleton per execution (ID, workflow, bulk group, start
  time). 100,000 executions take well under a second and a few tens of megabytes.
- `Dataset.plan(index)` builds one execution's full timeline (steps, durations, params,
  outputs, failure) on demand from a seed derived from `(seed, index)`, so it never depends on
  which executions were asked for before. The caller caches plans.

`render.py` turns a plan into the API's objects. Times are integer microseconds since the Unix
epoch (`*_us`), so the same seed and the same simulated instant give byte-identical JSON.
"""

from __future__ import annotations

import random
import uuid
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from math import log
from typing import Any

from pipelines.simulator.catalogue import (
    HTTP_LATENCY,
    HTTP_TASKS,
    MODELS,
    PYTHON_LATENCY,
    RECENT_PERIOD_S,
    WORKFLOW_SPECS,
    StepSpec,
    Workflow,
    WorkflowSpec,
)
from pipelines.simulator.content import (
    HTTP_ERRORS,
    INPUT_MAKERS,
    MODEL_ERRORS,
    PYTHON_ERRORS,
    TASK_MAKERS,
)

US = 1_000_000
DEFAULT_START_TIME = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
#: Generated history: executions started up to this long before the start time.
HISTORY_S = 30 * 24 * 3600
#: Finished executions started at least this long before the start time, so even a
#: long-tailed video workflow is over by then (step latencies are capped, see `_latency_us`).
MIN_FINISHED_AGE_S = 3 * 3600
DEFAULT_RUNNING_SHARE = 0.10
BULK_SHARE = 0.12
CANCEL_RATE = 0.02
_LATENCY_CAP_FACTOR = 20.0
EPOCH = datetime(1970, 1, 1)

#: How precisely an execution shows its instants (drawn per execution), and the unit each
#: truncates to.
PRECISIONS = ("seconds", "milliseconds", "microseconds", "trimmed")
_PRECISION_UNITS_US = (US, 1000, 1, 1)
#: Alphabet of generated prediction IDs.
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class StepPlan:
    """One step's whole life: when it runs, whether it fails, and what it shows."""

    step_id: str
    step_type: str  # model | http | python
    model: str | None
    model_version: str | None
    http_method: str | None
    http_url: str | None
    start_us: int
    end_us: int
    is_failing: bool
    has_metadata: bool
    has_input: bool
    params: dict[str, Any]
    output: Any
    primary: Any
    error: str | None
    error_cause: str | None
    prediction_id: str
    processed_us: int  # metadata.processed_at (set relative to the end, then made absolute)


@dataclass
class ExecutionPlan:
    """One execution's whole life; `render_*` read it at a given simulated instant."""

    execution_id: str
    workflow_id: str
    flow_name: str
    version_id: str
    bulk_id: str | None
    started_us: int
    terminal_us: int
    terminal_status: str  # completed | failed | cancelled
    error: str | None
    error_cause: str | None
    tz_minutes: int | None  # None renders as "Z"
    precision: int  # index into PRECISIONS
    inputs: dict[str, Any]
    steps: list[StepPlan]

    def status_at(self, now_us: int) -> str:
        return self.terminal_status if now_us >= self.terminal_us else "running"


class Dataset:
    """The skeleton of a generated instance; see the module docstring.

    Args:
        seed: Seed of everything generated.
        executions: Number of generated executions.
        start_time: Simulated instant at which `running_share` of them are still running.
        running_share: Share of executions (drawn per trigger) still running at `start_time`.
    """

    def __init__(
        self,
        seed: int,
        executions: int,
        start_time: datetime = DEFAULT_START_TIME,
        running_share: float = DEFAULT_RUNNING_SHARE,
    ) -> None:
        if executions < 0:
            raise ValueError("executions must be >= 0")
        if not 0.0 <= running_share <= 1.0:
            raise ValueError("running_share must be between 0 and 1")
        self.seed = seed
        self.start_us = _to_us(start_time)
        rng = random.Random(f"eachlabs-sim/{seed}")
        self.workflows = [
            Workflow(_uuid(rng), spec, _expected_duration_us(spec)) for spec in WORKFLOW_SPECS
        ]
        self.workflow_index = {wf.workflow_id: i for i, wf in enumerate(self.workflows)}

        self.execution_ids: list[str] = []
        self.workflow_of = array("B")
        self.version_of = array("B")
        self.precision_of = array("B")
        self.bulk_of = array("i")
        self.started_us = array("q")
        self.is_live = bytearray()
        self.bulk_ids: list[str] = []
        self.bulk_ranges: dict[str, tuple[int, int]] = {}

        weights = [spec.weight for spec in WORKFLOW_SPECS]
        indices = range(len(self.workflows))
        while len(self.execution_ids) < executions:
            wf_index = rng.choices(indices, weights)[0]
            workflow = self.workflows[wf_index]
            size, bulk_number = 1, -1
            remaining = executions - len(self.execution_ids)
            if workflow.spec.is_bulk_capable and rng.random() < BULK_SHARE and remaining >= 2:
                size = min(rng.randint(2, 10), remaining)
                bulk_id = _uuid(rng)
                bulk_number = len(self.bulk_ids)
                self.bulk_ids.append(bulk_id)
                first = len(self.execution_ids)
                self.bulk_ranges[bulk_id] = (first, first + size)
            is_live = rng.random() < running_share
            if is_live:
                # Started a fraction of a typical run ago; the plan delays the steps if
                # the draw would have it finish before the start time.
                base_us = self.start_us - int(
                    rng.uniform(0.05, 0.9) * workflow.expected_duration_us
                )
            else:
                age_s = rng.uniform(MIN_FINISHED_AGE_S, HISTORY_S)
                base_us = self.start_us - int(age_s * US)
            versions = workflow.spec.versions
            version = rng.choices(range(len(versions)), range(1, len(versions) + 1))[0]
            precision = rng.choices(range(len(PRECISIONS)), (3, 2, 2, 3))[0]
            # Bulk members start a fraction of a second apart, the last one at `base_us`.
            offsets_us = [0]
            for _ in range(size - 1):
                offsets_us.append(offsets_us[-1] + rng.randint(200_000, 1_200_000))
            for member in range(size):
                self.execution_ids.append(_uuid(rng))
                self.workflow_of.append(wf_index)
                self.version_of.append(version)
                self.precision_of.append(precision)
                self.bulk_of.append(bulk_number)
                started_us = base_us - offsets_us[-1] + offsets_us[member]
                self.started_us.append(truncate(started_us, precision))
                self.is_live.append(1 if is_live else 0)
        self.index = {execution_id: i for i, execution_id in enumerate(self.execution_ids)}
        self._listing_cache: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.execution_ids)

    def listing(self, workflow_index: int) -> list[int]:
        """Indices of one workflow's executions, newest first (computed once, then cached)."""
        cached = self._listing_cache.get(workflow_index)
        if cached is None:
            started = self.started_us
            members = [i for i, wf in enumerate(self.workflow_of) if wf == workflow_index]
            cached = sorted(members, key=lambda i: (-started[i], i))
            self._listing_cache[workflow_index] = cached
        return cached

    def bulk_members(self, bulk_id: str) -> range:
        first, end = self.bulk_ranges.get(bulk_id, (0, 0))
        return range(first, end)

    def workflow_for(self, workflow_id: str) -> Workflow:
        """The data set's workflow `workflow_id`; for any other ID, the first workflow's spec."""
        workflow_index = self.workflow_index.get(workflow_id)
        if workflow_index is None:
            spec = WORKFLOW_SPECS[0]
            return Workflow(workflow_id, spec, _expected_duration_us(spec))
        return self.workflows[workflow_index]

    def plan_inserted(self, workflow_id: str, number: int, started_us: int) -> ExecutionPlan:
        """The plan of a new execution of `workflow_id`, completed, started at `started_us`.

        For executions created while the simulator runs (the `list_insert_per_page` fault):
        deterministic from `(seed, number)`, a fresh UUID, instants to the microsecond. A
        workflow the data set does not have gets the first workflow's steps (`workflow_for`).
        """
        workflow = self.workflow_for(workflow_id)
        versions = range(len(workflow.spec.versions))
        attempt = 0
        while True:  # redrawn until it completes: a few draws at most
            rng = random.Random(f"eachlabs-sim/{self.seed}/inserted/{number}/{attempt}")
            plan = _plan_execution(
                rng,
                execution_id=_uuid(rng),
                workflow=workflow,
                version_index=rng.choices(versions, range(1, len(versions) + 1))[0],
                bulk_id=None,
                started_us=started_us,
                precision=PRECISIONS.index("microseconds"),
                live_until_us=None,
                is_recent=True,
            )
            if plan.terminal_status == "completed":
                return plan
            attempt += 1

    def plan(self, index: int) -> ExecutionPlan:
        """The full plan of execution `index`, deterministic from `(seed, index)` alone."""
        rng = random.Random(f"eachlabs-sim/{self.seed}/{index}")
        workflow = self.workflows[self.workflow_of[index]]
        version_index = self.version_of[index]
        bulk_number = self.bulk_of[index]
        return _plan_execution(
            rng,
            execution_id=self.execution_ids[index],
            workflow=workflow,
            version_index=version_index,
            bulk_id=self.bulk_ids[bulk_number] if bulk_number >= 0 else None,
            started_us=self.started_us[index],
            precision=self.precision_of[index],
            live_until_us=self.start_us if self.is_live[index] else None,
            is_recent=self.started_us[index] >= self.start_us - RECENT_PERIOD_S * US,
        )


def _plan_execution(
    rng: random.Random,
    *,
    execution_id: str,
    workflow: Workflow,
    version_index: int,
    bulk_id: str | None,
    started_us: int,
    precision: int,
    live_until_us: int | None,
    is_recent: bool = False,
) -> ExecutionPlan:
    spec = workflow.spec
    tz_minutes = rng.choices([None, 0, 180, -330, 330, -480], [10, 2, 2, 1, 1, 1])[0]
    inputs = INPUT_MAKERS[spec.inputs](rng)

    # Relative timeline: each step starts shortly after its dependencies end.
    relative: dict[str, tuple[int, int]] = {}
    steps: list[StepPlan] = []
    outputs: dict[str, tuple[Any, Any]] = {}
    for step_spec in spec.steps:
        ready_us = max((relative[dep][1] for dep in step_spec.depends_on), default=0)
        gap_us = int(rng.uniform(0.05, 1.5 if not step_spec.depends_on else 0.8) * US)
        duration_us = _latency_us(rng, step_spec, is_recent)
        start = ready_us + gap_us
        relative[step_spec.step_id] = (start, start + duration_us)
        step = _plan_step(
            rng, step_spec, version_index, inputs, outputs, start, duration_us, is_recent
        )
        outputs[step_spec.step_id] = (step.output, step.primary)
        steps.append(step)

    natural_end = max(step.end_us for step in steps)
    failing = [step for step in steps if step.is_failing]
    error = error_cause = None
    if failing:
        first_failure = min(failing, key=lambda step: step.end_us)
        for step in failing:
            step.is_failing = step is first_failure
        terminal_rel, terminal_status = first_failure.end_us, "failed"
        error = "ExecutionFailed"
        error_cause = f"Step '{first_failure.step_id}' failed: {first_failure.error_cause}"
    elif rng.random() < CANCEL_RATE:
        terminal_rel = int(rng.uniform(0.1, 0.95) * natural_end)
        terminal_status = "cancelled"
    else:
        terminal_rel, terminal_status = natural_end, "completed"

    # A live execution that would be over by the start time waits in the queue first: its
    # steps start later, but keep the durations their model drew (stretching the steps would
    # make every fast model look slower in the last days).
    queued_us = 0
    if live_until_us is not None:
        elapsed_us = live_until_us - started_us
        if terminal_rel <= elapsed_us:
            target_us = elapsed_us * rng.uniform(1.1, 2.5) + 2 * US
            queued_us = int(target_us) - terminal_rel
    # Every instant is truncated to the precision the execution is shown with, so what a
    # client reads is exactly the simulated instant and orders the same way.
    for step in steps:
        step.start_us = truncate(started_us + queued_us + step.start_us, precision)
        step.end_us = truncate(started_us + queued_us + step.end_us, precision)
        step.processed_us = truncate(step.end_us + step.processed_us, precision)
    terminal_us = truncate(started_us + queued_us + terminal_rel, precision)

    return ExecutionPlan(
        execution_id=execution_id,
        workflow_id=workflow.workflow_id,
        flow_name=spec.name,
        version_id=spec.versions[version_index],
        bulk_id=bulk_id,
        started_us=started_us,
        terminal_us=terminal_us,
        terminal_status=terminal_status,
        error=error,
        error_cause=error_cause,
        tz_minutes=tz_minutes,
        precision=precision,
        inputs=inputs,
        steps=steps,
    )


def _plan_step(
    rng: random.Random,
    step_spec: StepSpec,
    version_index: int,
    inputs: dict[str, Any],
    outputs: dict[str, tuple[Any, Any]],
    start_us: int,
    duration_us: int,
    is_recent: bool = False,
) -> StepPlan:
    upstream = [outputs[dep] for dep in step_spec.depends_on]
    params, output, primary, method, url = TASK_MAKERS[step_spec.task](rng, inputs, upstream)
    if step_spec.model is not None:
        model = MODELS[step_spec.model]
        step_type, failure_rate = "model", model.failure_rate
        if is_recent and model.recent_failure_rate is not None:
            failure_rate = model.recent_failure_rate
        model_version = model.versions[min(version_index, len(model.versions) - 1)]
        errors = MODEL_ERRORS
    elif step_spec.task in HTTP_TASKS:
        step_type, failure_rate, model_version, errors = "http", HTTP_LATENCY[2], None, HTTP_ERRORS
    else:
        step_type, failure_rate = "python", PYTHON_LATENCY[2]
        model_version, errors = None, PYTHON_ERRORS
    is_failing = rng.random() < failure_rate
    error_name, cause_template = rng.choice(errors)
    error_cause = cause_template.format(
        method=method, url=url, seconds=rng.choice([30, 60, 120, 300])
    )
    return StepPlan(
        step_id=step_spec.step_id,
        step_type=step_type,
        model=step_spec.model,
        model_version=model_version,
        http_method=method,
        http_url=url,
        start_us=start_us,
        end_us=start_us + duration_us,
        is_failing=is_failing,
        # The spec allows a step without metadata; a few non-model steps come that way.
        has_metadata=step_type == "model" or rng.random() >= 0.04,
        has_input=rng.random() < 0.35,
        params=params,
        output=output,
        primary=primary,
        error=error_name,
        error_cause=error_cause,
        prediction_id="".join(rng.choices(_BASE36, k=26)),
        processed_us=rng.randint(0, 900_000),
    )


def _latency_us(rng: random.Random, step_spec: StepSpec, is_recent: bool = False) -> int:
    factor = 1.0
    if step_spec.model is not None:
        model = MODELS[step_spec.model]
        median, sigma = model.median_latency_s, model.latency_sigma
        if is_recent:
            factor = model.recent_latency_factor
    elif step_spec.task in HTTP_TASKS:
        median, sigma = HTTP_LATENCY[0], HTTP_LATENCY[1]
    else:
        median, sigma = PYTHON_LATENCY[0], PYTHON_LATENCY[1]
    # The same draw either way, so a regression changes no other value of the execution.
    seconds = min(rng.lognormvariate(log(median), sigma), median * _LATENCY_CAP_FACTOR) * factor
    return max(1_000, int(seconds * US))


def _expected_duration_us(spec: WorkflowSpec) -> int:
    """Critical-path sum of median latencies, used to place still-running executions."""
    ends: dict[str, float] = {}
    for step in spec.steps:
        if step.model is not None:
            median = MODELS[step.model].median_latency_s
        elif step.task in HTTP_TASKS:
            median = HTTP_LATENCY[0]
        else:
            median = PYTHON_LATENCY[0]
        ready = max((ends[dep] for dep in step.depends_on), default=0.0)
        ends[step.step_id] = ready + 0.5 + median
    return int(max(ends.values()) * US)


def truncate(instant_us: int, precision: int) -> int:
    """`instant_us` cut down to what precision `PRECISIONS[precision]` can show."""
    unit = _PRECISION_UNITS_US[precision]
    return instant_us - instant_us % unit


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("start_time must be timezone-aware")
    delta = moment.astimezone(UTC).replace(tzinfo=None) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))

"""Generated data of the simulator: model catalogue, workflows and executions, all from one seed.

The work is split so that a large instance stays cheap:

- `Dataset` builds, up front, only a skeleton per execution (ID, workflow, bulk group, start
  time). 100,000 executions take well under a second and a few tens of megabytes.
- `Dataset.plan(index)` builds one execution's full timeline (steps, durations, params,
  outputs, failure) on demand from a seed derived from `(seed, index)`, so it never depends on
  which executions were asked for before. The caller caches plans.
- `render_execution(plan, now_us)` / `render_summary(plan, now_us)` turn a plan into the API's
  `ExecutionDetails` / `ExecutionSummary` object as seen at a simulated instant.

Times are integer microseconds since the Unix epoch (`*_us`), so the same seed and the same
simulated instant give byte-identical JSON.
"""

from __future__ import annotations

import random
import uuid
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import log
from typing import Any

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
#: Executions started this long before the start time, or later, are "recent": the models with
#: `recent_*` settings behave worse in them, so that the report's "what got worse" table (the
#: last 7 days against the 28 before) has something to show.
RECENT_PERIOD_S = 6 * 24 * 3600
_LATENCY_CAP_FACTOR = 20.0
_EPOCH = datetime(1970, 1, 1)


# --- catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model of the catalogue with its latency distribution (lognormal) and failure rate.

    `recent_latency_factor` and `recent_failure_rate` apply instead in recent executions (see
    `RECENT_PERIOD_S`): a model that got slower or started failing more in its last week.
    """

    slug: str
    kind: str  # llm | image | video | audio
    versions: tuple[str, ...]
    median_latency_s: float
    latency_sigma: float
    failure_rate: float
    recent_latency_factor: float = 1.0
    recent_failure_rate: float | None = None


MODELS: dict[str, ModelSpec] = {
    model.slug: model
    for model in (
        ModelSpec("openai-chatgpt-5", "llm", ("0.0.1", "0.0.2"), 4.0, 0.5, 0.01),
        ModelSpec("anthropic-claude-sonnet-4-5", "llm", ("0.0.1",), 6.0, 0.6, 0.01),
        ModelSpec("gemini-2-5-flash", "llm", ("0.0.1",), 1.5, 0.4, 0.005),
        # Started failing more in its last week (an upstream provider outage).
        ModelSpec("flux-1-1-pro", "image", ("0.0.1",), 12.0, 0.5, 0.02, recent_failure_rate=0.25),
        # Got slower in its last week (every latency drawn 1.8 times longer).
        ModelSpec("nano-banana-pro", "image", ("0.0.1", "0.0.2"), 25.0, 0.6, 0.03, 1.8),
        ModelSpec("seedream-4-0", "image", ("0.0.1",), 18.0, 0.5, 0.02),
        ModelSpec("kling-3-0", "video", ("0.0.1", "0.1.0"), 180.0, 0.5, 0.06),
        ModelSpec("veo-3", "video", ("0.0.1",), 120.0, 0.45, 0.08),
        ModelSpec("elevenlabs-tts-v3", "audio", ("0.0.1",), 8.0, 0.5, 0.02),
    )
}

#: (median latency s, sigma, failure rate) of the steps that call no model.
HTTP_LATENCY = (0.6, 0.7, 0.02)
PYTHON_LATENCY = (0.25, 0.6, 0.015)


@dataclass(frozen=True)
class StepSpec:
    """One step of a workflow definition. `task` picks how params and output are made."""

    step_id: str
    task: str
    model: str | None = None
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    steps: tuple[StepSpec, ...]
    inputs: str
    weight: float
    is_bulk_capable: bool
    versions: tuple[str, ...]


WORKFLOW_SPECS: tuple[WorkflowSpec, ...] = (
    WorkflowSpec(
        "Text to Image Generator",
        (
            StepSpec("step1", "expand_prompt", "openai-chatgpt-5"),
            StepSpec("step2", "text_to_image", "flux-1-1-pro", ("step1",)),
        ),
        "image_prompt",
        3.0,
        True,
        ("v1", "v2"),
    ),
    WorkflowSpec(
        "Product Shot Studio",
        (
            StepSpec("fetch_product", "fetch_json"),
            StepSpec("safety_check", "moderate_image", None, ("fetch_product",)),
            StepSpec("render_shot", "text_to_image", "nano-banana-pro", ("safety_check",)),
        ),
        "product",
        2.0,
        True,
        ("v1", "v2", "v3"),
    ),
    WorkflowSpec(
        "Story to Video",
        (
            StepSpec("write_story", "write_script", "anthropic-claude-sonnet-4-5"),
            StepSpec("keyframe", "text_to_image", "seedream-4-0", ("write_story",)),
            StepSpec("animate", "image_to_video", "kling-3-0", ("keyframe",)),
            StepSpec("notify", "notify_webhook", None, ("animate",)),
        ),
        "story",
        1.5,
        False,
        ("v1", "v2"),
    ),
    WorkflowSpec(
        "Quick Caption",
        (StepSpec("caption", "caption", "gemini-2-5-flash"),),
        "caption",
        3.0,
        True,
        ("v1",),
    ),
    WorkflowSpec(
        "Image Variations",
        (StepSpec("variations", "image_variations", "nano-banana-pro"),),
        "variations",
        2.0,
        True,
        ("v1", "v2"),
    ),
    # Two branches after `script`: the map lists `trailer` before `tagline`, but the video
    # finishes last, so "last in the map" and "chronologically last" differ.
    WorkflowSpec(
        "Cinematic Trailer",
        (
            StepSpec("script", "write_script", "openai-chatgpt-5"),
            StepSpec("trailer", "text_to_video", "veo-3", ("script",)),
            StepSpec("tagline", "caption", "gemini-2-5-flash", ("script",)),
        ),
        "trailer",
        1.0,
        False,
        ("v1",),
    ),
    WorkflowSpec(
        "Content Moderation Check",
        (
            StepSpec("download", "fetch_json"),
            StepSpec("score", "score_quality", None, ("download",)),
            StepSpec("verdict", "moderation_verdict", None, ("score",)),
        ),
        "moderation",
        1.5,
        True,
        ("v1",),
    ),
    WorkflowSpec(
        "Podcast Voiceover",
        (
            StepSpec("step1", "write_script", "openai-chatgpt-5"),
            StepSpec("step2", "text_to_speech", "elevenlabs-tts-v3", ("step1",)),
            StepSpec("step3", "package_assets", None, ("step2",)),
        ),
        "podcast",
        1.0,
        False,
        ("v1", "v2"),
    ),
)

_HTTP_TASKS = frozenset({"fetch_json", "notify_webhook"})


@dataclass(frozen=True)
class Workflow:
    """A workflow of one generated instance: its spec plus a seed-derived UUID."""

    workflow_id: str
    spec: WorkflowSpec
    expected_duration_us: int

    @property
    def name(self) -> str:
        return self.spec.name


# --- plans -------------------------------------------------------------------------------

_MISSING: Any = object()


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
    precision: int  # index into _PRECISIONS
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
            precision = rng.choices(range(len(_PRECISIONS)), (3, 2, 2, 3))[0]
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
                self.started_us.append(_truncate(started_us, precision))
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
    inputs = _INPUT_MAKERS[spec.inputs](rng)

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
        step.start_us = _truncate(started_us + queued_us + step.start_us, precision)
        step.end_us = _truncate(started_us + queued_us + step.end_us, precision)
        step.processed_us = _truncate(step.end_us + step.processed_us, precision)
    terminal_us = _truncate(started_us + queued_us + terminal_rel, precision)

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
    params, output, primary, method, url = _TASK_MAKERS[step_spec.task](rng, inputs, upstream)
    if step_spec.model is not None:
        model = MODELS[step_spec.model]
        step_type, failure_rate = "model", model.failure_rate
        if is_recent and model.recent_failure_rate is not None:
            failure_rate = model.recent_failure_rate
        model_version = model.versions[min(version_index, len(model.versions) - 1)]
        errors = _MODEL_ERRORS
    elif step_spec.task in _HTTP_TASKS:
        step_type, failure_rate, model_version, errors = "http", HTTP_LATENCY[2], None, _HTTP_ERRORS
    else:
        step_type, failure_rate = "python", PYTHON_LATENCY[2]
        model_version, errors = None, _PYTHON_ERRORS
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
    elif step_spec.task in _HTTP_TASKS:
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
        elif step.task in _HTTP_TASKS:
            median = HTTP_LATENCY[0]
        else:
            median = PYTHON_LATENCY[0]
        ready = max((ends[dep] for dep in step.depends_on), default=0.0)
        ends[step.step_id] = ready + 0.5 + median
    return int(max(ends.values()) * US)


# --- rendering ---------------------------------------------------------------------------


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
        output = last_step.output if last_step.output is not _MISSING else last_step.primary
    body["output"] = output
    if status == "failed":
        body["error"] = plan.error
        body["error_cause"] = plan.error_cause
    return body


def render_summary(plan: ExecutionPlan, now_us: int) -> dict[str, Any]:
    """The `ExecutionSummary` object of `plan` (list endpoint) at `now_us`."""
    status = plan.status_at(now_us)
    ts = _Formatter(plan)
    summary: dict[str, Any] = {
        "execution_id": plan.execution_id,
        "flow_id": plan.workflow_id,
        "flow_name": plan.flow_name,
        "version_id": plan.version_id,
        "status": status,
        "started_at": ts(plan.started_us),
    }
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
    summary["inputs"] = plan.inputs
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
        if step.primary is not _MISSING:
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


_PRECISIONS = ("seconds", "milliseconds", "microseconds", "trimmed")
_PRECISION_UNITS_US = (US, 1000, 1, 1)


def _truncate(instant_us: int, precision: int) -> int:
    unit = _PRECISION_UNITS_US[precision]
    return instant_us - instant_us % unit


class _Formatter:
    """RFC 3339 timestamps in the execution's UTC offset and precision.

    Precisions: whole seconds, milliseconds, microseconds, or microseconds with trailing zeros
    trimmed (and no fraction at all when it is zero), as Go's RFC3339Nano writes them.
    """

    def __init__(self, plan: ExecutionPlan) -> None:
        self._precision = _PRECISIONS[plan.precision]
        minutes = plan.tz_minutes
        self._offset_us = (minutes or 0) * 60 * US
        if minutes is None:
            self._suffix = "Z"
        else:
            sign = "+" if minutes >= 0 else "-"
            self._suffix = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def __call__(self, instant_us: int) -> str:
        seconds, micros = divmod(instant_us + self._offset_us, US)
        text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        if self._precision == "milliseconds":
            text += f".{micros // 1000:03d}"
        elif self._precision == "microseconds":
            text += f".{micros:06d}"
        elif self._precision == "trimmed" and micros:
            text += "." + f"{micros:06d}".rstrip("0")
        return text + self._suffix


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("start_time must be timezone-aware")
    delta = moment.astimezone(UTC).replace(tzinfo=None) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- params, inputs and outputs ----------------------------------------------------------

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PROMPTS = (
    "A majestic mountain landscape at dawn",
    "A cosy café ☕ in Kyoto with 日本語 signage on a rainy evening",
    "Neon-lit street market in São Paulo, cinematic",
    "A rat graduating from law school, oil painting",
    "Минималистичный логотип для кофейни",
    "An astronaut reading a book on the Moon 🌕",
    "Portrait of a naïve robot learning to paint — watercolour",
    "مدينة المستقبل عند الغروب",
    "Product photo of a ceramic mug, studio lighting, 50mm",
    "Whimsical forest with glowing mushrooms",
    'A sign that says "Open 24/7" in a snowy \\ icy alley',
)
_SENTENCES = (
    "The valley wakes slowly under a blush of pink light.",
    "Steam curls from a paper cup as the rain taps on the awning.",
    "Every detail is rendered with soft, diffused shadows.",
    "Le soleil se couche derrière les toits de zinc.",
    "夜の街に雨の音が静かに響く。",
    "A lone figure walks towards the horizon, coat flapping in the wind.",
    "Colours: teal, amber and a hint of magenta.",
    "The camera pulls back to reveal the whole city 🌆.",
    "Tagline: “Nothing ends quietly.”",
)
_SYSTEM_PROMPTS = (
    "You are a helpful assistant",
    "You write vivid, cinematic scene descriptions.",
    "You are a concise copywriter. Réponds en français si on te le demande.",
)
_STYLES = ("photorealistic", "watercolour", "anime", "cinematic", "isométrique", "low-poly")
_ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:2")
_VOICES = ("Rachel", "Aiyana", "Jörg", "Sakura", "Mateo")


def _text(rng: random.Random, count: tuple[int, int] = (2, 4)) -> str:
    return " ".join(rng.sample(_SENTENCES, rng.randint(*count)))


def _url(rng: random.Random, folder: str, extension: str) -> str:
    return (
        f"https://storage.googleapis.com/eachlabs-sim/{folder}/"
        f"{rng.getrandbits(64):016x}.{extension}"
    )


def _upstream_text(upstream: list[tuple[Any, Any]], fallback: str) -> str:
    for output, _primary in upstream:
        if isinstance(output, str) and not output.startswith("https://"):
            return output[:400]
    return fallback


def _upstream_url(rng: random.Random, upstream: list[tuple[Any, Any]], folder: str) -> str:
    for _output, primary in upstream:
        if isinstance(primary, str) and primary.startswith("https://"):
            return primary
    return _url(rng, folder, "png")


def _llm(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    prompt = next(
        (inputs[key] for key in ("prompt", "story", "logline", "topic") if key in inputs),
        rng.choice(_PROMPTS),
    )
    prompt = _upstream_text(upstream, prompt)
    params: dict[str, Any] = {
        "system_prompt": rng.choice(_SYSTEM_PROMPTS),
        "user_prompt": prompt,
        "max_output_tokens": rng.choice((256, 512, 1024, 2048)),
        "temperature": round(rng.uniform(0.0, 1.2), 2),
    }
    if rng.random() < 0.5:
        params["top_p"] = None if rng.random() < 0.5 else round(rng.uniform(0.5, 1.0), 2)
    if rng.random() < 0.3:
        params["stop"] = rng.sample(["\n\n", "###", "END", "。"], rng.randint(1, 3))
    if rng.random() < 0.4:
        params["stream"] = False
    if rng.random() < 0.3:
        params["response_format"] = {"type": rng.choice(("text", "json_object")), "strict": True}
    text = _text(rng)
    return params, text, text, None, None


def _text_to_image(
    rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]
) -> tuple:
    prompt = _upstream_text(upstream, inputs.get("prompt") or rng.choice(_PROMPTS))
    count = inputs.get("num_images") if isinstance(inputs.get("num_images"), int) else None
    count = count or rng.choice((1, 1, 2, 4))
    params: dict[str, Any] = {
        "prompt": prompt,
        "num_images": count,
        "aspect_ratio": rng.choice(_ASPECT_RATIOS),
        "guidance_scale": round(rng.uniform(1.5, 7.5), 1),
        "seed": None if rng.random() < 0.4 else rng.randint(0, 2**31 - 1),
        "output_format": rng.choice(("png", "jpeg", "webp")),
        "enable_safety_checker": rng.random() < 0.8,
    }
    if rng.random() < 0.3:
        params["loras"] = [
            {"path": f"https://huggingface.co/sim/lora-{rng.randint(1, 99)}", "scale": 0.8}
        ]
    if rng.random() < 0.3:
        params["size"] = {"width": rng.choice((768, 1024)), "height": rng.choice((768, 1024))}
    if rng.random() < 0.2:
        params["negative_prompt"] = ""
    urls = [_url(rng, "images", params["output_format"]) for _ in range(count)]
    return params, urls, urls[0], None, None


def _image_variations(
    rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]
) -> tuple:
    count = inputs.get("num_images", 2)
    params = {
        "image_url": inputs.get("image_url") or _url(rng, "uploads", "jpg"),
        "num_images": count,
        "strength": inputs.get("strength", 0.6),
        "seed": inputs.get("seed"),
        "resolution": rng.choice(("1K", "2K")),
    }
    urls = [_url(rng, "images", "png") for _ in range(count)]
    return params, urls, urls[0], None, None


def _video(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params: dict[str, Any] = {"prompt": _upstream_text(upstream, rng.choice(_PROMPTS))}
    if upstream and isinstance(upstream[0][1], str) and upstream[0][1].startswith("https://"):
        params["image_url"] = upstream[0][1]
    duration = rng.choice((5, 8, 10))
    params.update(
        {
            "duration_seconds": duration,
            "resolution": rng.choice(("720p", "1080p")),
            "fps": 24,
            "generate_audio": rng.random() < 0.5,
            "negative_prompt": None if rng.random() < 0.5 else "blurry, low quality",
            "camera": {"movement": rng.choice(("dolly_in", "pan_left", "static")), "speed": 0.5},
        }
    )
    url = _url(rng, "videos", "mp4")
    if "image_url" in params:
        return params, url, url, None, None
    output = {
        "video_url": url,
        "thumbnail_url": _url(rng, "thumbnails", "jpg"),
        "duration_seconds": duration,
        "has_audio": params["generate_audio"],
    }
    return params, output, url, None, None


def _speech(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params = {
        "text": _upstream_text(upstream, rng.choice(_SENTENCES)),
        "voice_id": inputs.get("voice") or rng.choice(_VOICES),
        "stability": round(rng.uniform(0.3, 0.8), 2),
        "similarity_boost": 0.75,
        "output_format": "mp3_44100_128",
        "language": rng.choice(("en", "ja", "fr", None)),
    }
    url = _url(rng, "audio", "mp3")
    return params, url, url, None, None


def _fetch_json(
    rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]
) -> tuple:
    sku = inputs.get("sku") or f"SKU-{rng.randint(10000, 99999)}"
    url = inputs.get("url") or f"https://api.shop-sim.example/v1/products/{sku}"
    params = {
        "headers": {"Accept": "application/json"},
        "query": {"locale": rng.choice(("fr-FR", "ja-JP", "en-US"))},
        "timeout_s": 30,
        "follow_redirects": True,
    }
    body = {
        "sku": sku,
        "title": rng.choice(("Mug en céramique ☕", "和紙ノート", "Desk lamp")),
        "price": round(rng.uniform(5, 120), 2),
        "in_stock": rng.random() < 0.8,
        "tags": rng.sample(["new", "eco", "gift", "sale"], 2),
        "discontinued_at": None,
    }
    return params, {"status_code": 200, "body": body}, 200, "GET", url


def _notify(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    url = f"https://hooks.example.com/eachlabs/{rng.getrandbits(48):012x}"
    params = {
        "headers": {"Content-Type": "application/json"},
        "body": {"video_url": _upstream_url(rng, upstream, "videos"), "ok": True},
        "timeout_s": 10,
    }
    return params, {"status_code": 204, "delivered": True}, True, "POST", url


def _moderate(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params = {
        "function": "moderate_image",
        "image_url": _upstream_url(rng, upstream, "images"),
        "threshold": inputs.get("threshold", 0.8),
        "categories": ["nsfw", "violence"],
        "strict": rng.random() < 0.5,
    }
    is_safe = rng.random() < 0.9
    return params, is_safe, is_safe, None, None


def _verdict(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    score = next((p for _o, p in upstream if isinstance(p, float)), round(rng.random(), 4))
    threshold = inputs.get("threshold", 0.8)
    params = {"function": "moderation_verdict", "score": score, "threshold": threshold}
    is_safe = score < threshold
    output = {
        "is_safe": is_safe,
        "score": score,
        "labels": [] if is_safe else rng.sample(["nsfw", "violence", "weapons"], 1),
        "reviewed_by": None,
    }
    return params, output, is_safe, None, None


def _score(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    params = {
        "function": "score_quality",
        "source": inputs.get("url") or _url(rng, "uploads", "jpg"),
        "weights": {"sharpness": 0.4, "contrast": 0.6},
        "normalise": True,
        "notes": None,
    }
    score = round(rng.random(), 4)
    return params, score, score, None, None


def _package(rng: random.Random, inputs: dict[str, Any], upstream: list[tuple[Any, Any]]) -> tuple:
    audio_url = _upstream_url(rng, upstream, "audio")
    params = {
        "function": "package_assets",
        "audio_url": audio_url,
        "formats": ["mp3", "wav"],
        "metadata": {"title": inputs.get("topic", "Épisode"), "explicit": False},
        "bitrate_kbps": 128,
    }
    output = {
        "archive_url": _url(rng, "archives", "zip"),
        "files": [audio_url, audio_url.replace(".mp3", ".wav")],
        "size_bytes": rng.randint(200_000, 9_000_000),
        "duration_seconds": round(rng.uniform(30, 400), 1),
    }
    primary = {"archive_url": output["archive_url"]}
    if rng.random() < 0.3:
        return params, output, _MISSING, None, None
    return params, output, primary, None, None


_TASK_MAKERS = {
    "expand_prompt": _llm,
    "write_script": _llm,
    "caption": _llm,
    "text_to_image": _text_to_image,
    "image_variations": _image_variations,
    "image_to_video": _video,
    "text_to_video": _video,
    "text_to_speech": _speech,
    "fetch_json": _fetch_json,
    "notify_webhook": _notify,
    "moderate_image": _moderate,
    "score_quality": _score,
    "moderation_verdict": _verdict,
    "package_assets": _package,
}

_MODEL_ERRORS = (
    ("ModelTimeout", "Model request timed out after {seconds} seconds"),
    ("ProviderError", "Upstream provider answered 500 Internal Server Error"),
    ("ContentPolicyViolation", "The request was rejected by the provider's safety filter"),
    ("InvalidInput", "Parameter 'image_url' could not be downloaded: 403 Forbidden"),
)
_HTTP_ERRORS = (
    ("HTTPError", "{method} {url} answered 502 Bad Gateway"),
    ("RequestTimeout", "{method} {url} timed out after {seconds} seconds"),
)
_PYTHON_ERRORS = (
    ("PythonException", "KeyError: 'width'"),
    ("PythonException", "ValueError: could not decode image bytes"),
    ("ExecutionTimeout", "Python step exceeded {seconds} seconds"),
)


def _inputs_image_prompt(rng: random.Random) -> dict[str, Any]:
    return {
        "prompt": rng.choice(_PROMPTS),
        "style": rng.choice(_STYLES),
        "num_images": rng.choice((1, 2, 4)),
        "seed": None if rng.random() < 0.5 else rng.randint(0, 99999),
        "enhance_prompt": rng.random() < 0.5,
        "tags": rng.sample(["poster", "social", "draft", "client-x"], rng.randint(0, 3)),
        "options": {"aspect_ratio": rng.choice(_ASPECT_RATIOS), "guidance": 3.5},
    }


def _inputs_product(rng: random.Random) -> dict[str, Any]:
    return {
        "sku": f"SKU-{rng.randint(10000, 99999)}",
        "background": rng.choice(("white marble", "bois clair", "studio grey")),
        "angle_degrees": rng.choice((0, 35, 90)),
        "shadow": rng.random() < 0.7,
        "locale": rng.choice(("fr-FR", "ja-JP", "en-US")),
    }


def _inputs_story(rng: random.Random) -> dict[str, Any]:
    return {
        "story": rng.choice(_PROMPTS),
        "duration_seconds": rng.choice((5, 10)),
        "voiceover": rng.random() < 0.5,
        "characters": rng.sample(["Rémy", "Juge Hibou", "Captain Mochi", "Ada"], 2),
        "webhook": None,
    }


def _inputs_caption(rng: random.Random) -> dict[str, Any]:
    return {
        "image_url": _url(rng, "uploads", "jpg"),
        "tone": rng.choice(("playful", "formal", "poétique")),
        "max_words": rng.choice((12, 20, 40)),
        "hashtags": rng.random() < 0.5,
    }


def _inputs_variations(rng: random.Random) -> dict[str, Any]:
    return {
        "image_url": _url(rng, "uploads", "png"),
        "num_images": rng.randint(2, 4),
        "strength": round(rng.uniform(0.3, 0.9), 2),
        "seed": None,
    }


def _inputs_trailer(rng: random.Random) -> dict[str, Any]:
    return {
        "logline": rng.choice(_PROMPTS),
        "genre": rng.choice(("thriller", "comédie", "sci-fi")),
        "rating": "PG-13",
        "length_seconds": 8,
    }


def _inputs_moderation(rng: random.Random) -> dict[str, Any]:
    return {
        "url": _url(rng, "uploads", "jpg"),
        "threshold": round(rng.uniform(0.6, 0.95), 2),
        "report": {"notify": rng.random() < 0.5, "channels": ["email", "slack"]},
    }


def _inputs_podcast(rng: random.Random) -> dict[str, Any]:
    return {
        "topic": rng.choice(_PROMPTS),
        "voice": rng.choice(_VOICES),
        "minutes": rng.randint(1, 5),
        "music": None,
    }


_INPUT_MAKERS = {
    "image_prompt": _inputs_image_prompt,
    "product": _inputs_product,
    "story": _inputs_story,
    "caption": _inputs_caption,
    "variations": _inputs_variations,
    "trailer": _inputs_trailer,
    "moderation": _inputs_moderation,
    "podcast": _inputs_podcast,
}

"""The simulator's catalogue: the models and workflow definitions every instance is built from.

Only facts that hold for every seed live here: each model's latency distribution, failure rate
and price (and how it behaves in recent executions), and each workflow's steps, inputs, weight
and the shape its list summaries give `cost` in. `plans.py` draws executions from them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Executions started this long before the start time, or later, are "recent": the models with
#: `recent_*` settings behave worse in them, so that the report's "what got worse" table (the
#: last 7 days against the 28 before) has something to show.
RECENT_PERIOD_S = 6 * 24 * 3600


@dataclass(frozen=True)
class ModelSpec:
    """A model of the catalogue with its latency distribution (lognormal) and failure rate.

    `recent_latency_factor` and `recent_failure_rate` apply instead in recent executions (see
    `RECENT_PERIOD_S`): a model that got slower or started failing more in its last week.
    `price_usd` is what one call costs (for LLM and audio models: one call of median length;
    `summaries.py` scales it with the call's duration).
    """

    slug: str
    kind: str  # llm | image | video | audio
    versions: tuple[str, ...]
    median_latency_s: float
    latency_sigma: float
    failure_rate: float
    recent_latency_factor: float = 1.0
    recent_failure_rate: float | None = None
    price_usd: float = 0.0


MODELS: dict[str, ModelSpec] = {
    model.slug: model
    for model in (
        ModelSpec("openai-chatgpt-5", "llm", ("0.0.1", "0.0.2"), 4.0, 0.5, 0.01, price_usd=0.004),
        ModelSpec(
            "anthropic-claude-sonnet-4-5", "llm", ("0.0.1",), 6.0, 0.6, 0.01, price_usd=0.009
        ),
        ModelSpec("gemini-2-5-flash", "llm", ("0.0.1",), 1.5, 0.4, 0.005, price_usd=0.0008),
        # Started failing more in its last week (an upstream provider outage).
        ModelSpec(
            "flux-1-1-pro",
            "image",
            ("0.0.1",),
            12.0,
            0.5,
            0.02,
            recent_failure_rate=0.25,
            price_usd=0.04,
        ),
        # Got slower in its last week (every latency drawn 1.8 times longer).
        ModelSpec(
            "nano-banana-pro", "image", ("0.0.1", "0.0.2"), 25.0, 0.6, 0.03, 1.8, price_usd=0.039
        ),
        ModelSpec("seedream-4-0", "image", ("0.0.1",), 18.0, 0.5, 0.02, price_usd=0.03),
        ModelSpec("kling-3-0", "video", ("0.0.1", "0.1.0"), 180.0, 0.5, 0.06, price_usd=0.84),
        ModelSpec("veo-3", "video", ("0.0.1",), 120.0, 0.45, 0.08, price_usd=1.6),
        ModelSpec("elevenlabs-tts-v3", "audio", ("0.0.1",), 8.0, 0.5, 0.02, price_usd=0.03),
    )
}

#: (median latency s, sigma, failure rate) of the steps that call no model.
HTTP_LATENCY = (0.6, 0.7, 0.02)
PYTHON_LATENCY = (0.25, 0.6, 0.015)
#: What each started second of a step that calls no model (http, python) costs.
COMPUTE_PRICE_USD_PER_S = 0.0001

#: How a workflow's list summaries show `cost` (the spec allows a number or any object):
#: "number" (dollars), "breakdown" (`{"total", "currency", "breakdown": {step_id: dollars}}`)
#: or "amount" (`{"amount", "unit": "usd"}`).
COST_FORMATS = ("number", "breakdown", "amount")


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
    cost_format: str = "number"  # one of COST_FORMATS


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
        cost_format="breakdown",
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
        cost_format="amount",
    ),
)

HTTP_TASKS = frozenset({"fetch_json", "notify_webhook"})


@dataclass(frozen=True)
class Workflow:
    """A workflow of one generated instance: its spec plus a seed-derived UUID."""

    workflow_id: str
    spec: WorkflowSpec
    expected_duration_us: int

    @property
    def name(self) -> str:
        return self.spec.name

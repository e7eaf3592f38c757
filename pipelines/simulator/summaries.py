"""Facts only the list endpoint shows: who triggered an execution, what it cost, dry runs, deletes.

`ExecutionSummary` carries fields that `ExecutionDetails` has not (`api_key`, `cost`, `dry_run`,
`deleted_at`). `summary_facts(dataset, index, plan)` draws them from a random generator of their
own, seeded from `(seed, index)` apart from the one that draws the plan, so they moved no other
generated value; they are not part of the `ExecutionPlan`, so `render_execution` cannot show
them.

Shares (per execution): `dry_run` is true for `DRY_RUN_SHARE`; `cost` is missing for
`MISSING_COST_SHARE` of the finished ones (and for every running one: it is known only at the
end); `deleted_at` is set for `DELETED_SHARE` of the executions already finished at the start
time, between their end and the start time.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipelines.simulator.catalogue import COMPUTE_PRICE_USD_PER_S, MODELS
from pipelines.simulator.plans import US, Dataset, ExecutionPlan, StepPlan

DRY_RUN_SHARE = 0.02
MISSING_COST_SHARE = 0.03
DELETED_SHARE = 0.015
#: How often each of a data set's fake users triggers an execution (six users).
USER_WEIGHTS = (35, 25, 15, 12, 8, 5)
#: LLM and audio calls cost by length: the duration's ratio to the median, within these bounds.
_LENGTH_FACTOR_BOUNDS = (0.5, 2.0)


@dataclass(frozen=True)
class SummaryFacts:
    """What one execution's list summary shows beyond its timeline.

    `cost` is the value of the summary's `cost` once the execution has ended (a number or an
    object, in the workflow's `cost_format`), None when the summary never has one;
    `deleted_us` is when it was soft-deleted, None if never.
    """

    api_key: str
    is_dry_run: bool
    cost: float | dict[str, Any] | None
    deleted_us: int | None


def summary_facts(dataset: Dataset, index: int, plan: ExecutionPlan) -> SummaryFacts:
    """The `SummaryFacts` of generated execution `index` (whose plan is `plan`).

    Deterministic from `(seed, index)` alone; the members of a bulk share one user.
    """
    seed = dataset.seed
    bulk_number = dataset.bulk_of[index]
    user_seed = f"bulk/{bulk_number}" if bulk_number >= 0 else str(index)
    return draw_summary_facts(
        random.Random(f"eachlabs-sim/{seed}/{index}/summary"),
        user_rng=random.Random(f"eachlabs-sim/{seed}/{user_seed}/user"),
        users=user_pool(seed),
        plan=plan,
        cost_format=dataset.workflows[dataset.workflow_of[index]].spec.cost_format,
        deletable_before_us=dataset.start_us,
    )


@lru_cache(maxsize=64)
def user_pool(seed: int) -> tuple[str, ...]:
    """The fake users ("user-3f9a0c1d2e4b") whose API keys trigger a data set's executions."""
    return tuple(
        "user-"
        + hashlib.blake2b(f"eachlabs-sim/{seed}/user/{k}".encode(), digest_size=6).hexdigest()
        for k in range(len(USER_WEIGHTS))
    )


def draw_summary_facts(
    rng: random.Random,
    *,
    user_rng: random.Random,
    users: tuple[str, ...],
    plan: ExecutionPlan,
    cost_format: str,
    deletable_before_us: int | None,
) -> SummaryFacts:
    """One execution's `SummaryFacts`, drawn from `rng` (and its user from `user_rng`).

    Args:
        rng: The execution's own generator for these facts; always drawn the same number of
            times, so one fact never shifts another.
        user_rng: Picks the user; bulk members share one so that one user triggers the bulk.
        users: The data set's `user_pool`.
        plan: The execution; the steps it completed by its end are charged.
        cost_format: The workflow's `cost_format`.
        deletable_before_us: Only an execution over at least two seconds before this instant
            may be soft-deleted (at a whole second between the two); None: never.
    """
    api_key = user_rng.choices(users, USER_WEIGHTS)[0]
    is_dry_run = rng.random() < DRY_RUN_SHARE
    has_cost = rng.random() >= MISSING_COST_SHARE
    is_deleted = rng.random() < DELETED_SHARE
    deleted_draw = rng.random()

    deleted_us = None
    if is_deleted and deletable_before_us is not None:
        gap_s = (deletable_before_us - plan.terminal_us) // US - 1
        if gap_s >= 1:
            deleted_us = plan.terminal_us + (1 + int(deleted_draw * gap_s)) * US
    cost = None
    if has_cost:
        charged = {
            step.step_id: 0.0 if is_dry_run else _step_cost_usd(step)
            for step in plan.steps
            if _is_charged(step, plan)
        }
        cost = _cost_value(charged, cost_format)
    return SummaryFacts(api_key, is_dry_run, cost, deleted_us)


def _is_charged(step: StepPlan, plan: ExecutionPlan) -> bool:
    """Whether the step completed before the execution ended (as `render._step_status` says)."""
    if plan.terminal_status == "completed":
        return True
    return step.end_us <= plan.terminal_us and not step.is_failing


def _step_cost_usd(step: StepPlan) -> float:
    seconds = (step.end_us - step.start_us) / US
    if step.model is None:  # billed per started second
        return max(1, math.ceil(seconds)) * COMPUTE_PRICE_USD_PER_S
    model = MODELS[step.model]
    if model.kind in ("llm", "audio"):
        low, high = _LENGTH_FACTOR_BOUNDS
        return model.price_usd * min(high, max(low, seconds / model.median_latency_s))
    return model.price_usd


def _cost_value(charged: dict[str, float], cost_format: str) -> float | dict[str, Any]:
    """The summary's `cost` in the workflow's format, in dollars rounded to a millionth."""
    breakdown = {step_id: round(float(usd), 6) for step_id, usd in charged.items()}
    total = round(float(sum(breakdown.values())), 6)
    if cost_format == "breakdown":
        return {"total": total, "currency": "USD", "breakdown": breakdown}
    if cost_format == "amount":
        return {"amount": total, "unit": "usd"}
    return total

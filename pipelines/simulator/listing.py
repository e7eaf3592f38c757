"""What the list endpoint needs beyond rendering plans: hand-made summaries, orders, new arrivals.

- `summary_of_payload` gives a hand-made payload (`put_execution`) its `ExecutionSummary`,
  with the caller's overrides.
- `LIST_ORDERS`: "newest_first" (the API's order) or "shuffled", a fault that serves the same
  executions ordered by `shuffle_key`, a hash of the seed and the execution ID: no order by
  `created_at`, yet the same on every request, so paging still gives each execution once.
- `inserted_execution` makes a new execution for the `list_insert_per_page` fault: what a busy
  API looks like to a client paging through it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any

from pipelines.simulator.plans import Dataset
from pipelines.simulator.render import render_execution, render_summary
from pipelines.simulator.summaries import draw_summary_facts, user_pool

LIST_ORDERS = ("newest_first", "shuffled")
HAND_MADE_FLOW_NAME = "Hand-made workflow"


def summary_of_payload(
    payload: Mapping[str, Any],
    flow_name: str,
    now_us: int,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An `ExecutionSummary` for a hand-made payload, from the fields it has.

    Args:
        payload: The payload `GET /executions/{id}` serves.
        flow_name: The workflow's name (`HAND_MADE_FLOW_NAME` for a workflow not generated).
        now_us: The simulated time, `started_at` of a payload without one.
        overrides: Summary fields set as given, after the derived ones; a field mapped to None
            is left out.
    """
    now = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    started_at = payload.get("started_at") or now
    summary: dict[str, Any] = {
        "execution_id": payload["execution_id"],
        "flow_id": payload.get("workflow_id"),
        "flow_name": flow_name,
        "version_id": "v1",
        "status": payload.get("status"),
        "started_at": started_at,
    }
    if payload.get("completed_at"):
        summary["ended_at"] = payload["completed_at"]
    summary["created_at"] = started_at
    summary["updated_at"] = payload.get("completed_at") or started_at
    summary["dry_run"] = False
    if isinstance(payload.get("inputs"), dict):
        summary["inputs"] = payload["inputs"]
    for name, value in (overrides or {}).items():
        if value is None:
            summary.pop(name, None)
        else:
            summary[name] = value
    return summary


@lru_cache(maxsize=1 << 18)
def shuffle_key(seed: int, execution_id: str) -> bytes:
    """Where an execution stands in the "shuffled" list order of data sets with this seed."""
    key = f"eachlabs-sim/{seed}/shuffle/{execution_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=8).digest() + key


class ListOrder:
    """The order the list endpoint serves one data set's executions in (one of `LIST_ORDERS`).

    A list is the workflow's hand-made entries, `(execution_id, payload, summary overrides)`
    newest put first, and its generated executions (indices into the data set).
    """

    def __init__(self, dataset: Dataset, name: str = "newest_first") -> None:
        if name not in LIST_ORDERS:
            raise ValueError(f"list_order must be one of {LIST_ORDERS}, got {name!r}")
        self.dataset = dataset
        self.is_shuffled = name == "shuffled"
        self._shuffled_listings: dict[int, list[int]] = {}

    def listing(self, workflow_index: int) -> list[int]:
        """A workflow's generated executions in this order (computed once, then cached)."""
        if not self.is_shuffled:
            return self.dataset.listing(workflow_index)
        cached = self._shuffled_listings.get(workflow_index)
        if cached is None:
            cached = sorted(self.dataset.listing(workflow_index), key=self.key)
            self._shuffled_listings[workflow_index] = cached
        return cached

    def key(self, index: int) -> Any:
        """Sort key of generated execution `index`: newest first (ties by index), or shuffled."""
        dataset = self.dataset
        if self.is_shuffled:
            return shuffle_key(dataset.seed, dataset.execution_ids[index])
        return (-dataset.started_us[index], index)

    def page(
        self, hand_made: list[Any], generated: list[int], offset: int, page_end: int
    ) -> list[Any]:
        """Positions `offset` to `page_end` of a list: hand-made entries and generated indices.

        Newest first, the hand-made executions come first; shuffled, both kinds are merged by
        `shuffle_key`. `generated` must already be in this order.
        """
        if not self.is_shuffled:
            skipped = len(hand_made)
            return (
                hand_made[offset:page_end]
                + generated[max(0, offset - skipped) : max(0, page_end - skipped)]
            )
        if not hand_made:
            return generated[offset:page_end]
        seed, ids = self.dataset.seed, self.dataset.execution_ids

        def key(entry: Any) -> bytes:
            return shuffle_key(seed, ids[entry] if isinstance(entry, int) else entry[0])

        merged = heapq.merge(sorted(hand_made, key=key), generated, key=key)
        return list(islice(merged, offset, page_end))


def inserted_execution(
    dataset: Dataset, workflow_id: str, number: int, started_us: int, flow_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payload and list summary of the `number`-th execution created while serving.

    It is completed, has the steps of its workflow (see `Dataset.plan_inserted`) and starts at
    `started_us`; its summary draws a user, a cost and a dry run as a generated one does, and
    is never deleted. Deterministic from the data set's seed and `number`.
    """
    plan = dataset.plan_inserted(workflow_id, number, started_us)
    facts = draw_summary_facts(
        random.Random(f"eachlabs-sim/{dataset.seed}/inserted/{number}/summary"),
        user_rng=random.Random(f"eachlabs-sim/{dataset.seed}/inserted/{number}/user"),
        users=user_pool(dataset.seed),
        plan=plan,
        cost_format=dataset.workflow_for(workflow_id).spec.cost_format,
        deletable_before_us=None,
    )
    summary = render_summary(plan, plan.terminal_us, facts)
    summary["flow_name"] = flow_name
    return render_execution(plan, plan.terminal_us), summary

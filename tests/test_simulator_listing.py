"""The list endpoint's summaries and faults: user, cost, dry run, soft delete; hand-made
overrides; the "shuffled" order and executions created while a client pages (issue #16).

Most tests call `SimulatorApp` directly (no socket); the paging-while-inserting test goes
through HTTP, as a loader would.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import pytest
import requests

from pipelines.simulator import FaultConfig, Simulator
from pipelines.simulator.app import API_PREFIX, SimulatorApp, split_target
from pipelines.simulator.catalogue import WORKFLOW_SPECS
from pipelines.simulator.cli import add_simulator_parser, config_from_args
from pipelines.simulator.plans import Dataset, _plan_execution
from pipelines.simulator.render import render_execution, render_summary
from pipelines.simulator.summaries import (
    DELETED_SHARE,
    DRY_RUN_SHARE,
    MISSING_COST_SHARE,
    USER_WEIGHTS,
    summary_facts,
)

KEY = "listing-test-key"
DATASET = Dataset(seed=42, executions=2000)
NEW_FIELDS = ("api_key", "cost", "dry_run", "deleted_at")
COST_KEYS = {
    "number": None,
    "breakdown": {"total", "currency", "breakdown"},
    "amount": {"amount", "unit"},
}
MakeSimulator = Callable[..., Simulator]


def page(app: SimulatorApp, workflow_id: str, offset: int = 0, limit: int = 100) -> dict:
    """One list page, decoded; it must be a 200."""
    path, query = split_target(
        f"{API_PREFIX}/workflows/{workflow_id}/executions?offset={offset}&limit={limit}"
    )
    response = app.handle("GET", path, query, {"X-API-Key": KEY})
    assert response.status == 200, response.body
    return json.loads(response.body)


def walk(app: SimulatorApp, workflow_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Every summary of a workflow's list, page by page."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        body = page(app, workflow_id, offset, limit)
        items += body["executions"]
        offset = body["offset"]
    return items


@cache
def all_summaries() -> tuple[dict[str, Any], ...]:
    """The list summaries of DATASET's 2,000 executions at the start time."""
    app = SimulatorApp(DATASET, KEY)
    return tuple(item for wf in DATASET.workflows for item in walk(app, wf.workflow_id))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def total_usd(cost: float | dict[str, Any]) -> float:
    return cost if isinstance(cost, float) else cost.get("total", cost.get("amount"))


# --- the summary fields ------------------------------------------------------------------


def test_every_summary_has_a_user_and_a_boolean_dry_run() -> None:
    summaries = all_summaries()
    assert len(summaries) == 2000
    assert all(isinstance(item["dry_run"], bool) for item in summaries)
    users = Counter(item["api_key"] for item in summaries)
    assert len(users) == len(USER_WEIGHTS)
    assert all(user.startswith("user-") and len(user) == 17 for user in users)
    # The most frequent user triggers several times as many executions as the rarest.
    assert max(users.values()) > 3 * min(users.values())


def test_dry_run_missing_cost_and_deleted_shares_are_near_their_settings() -> None:
    summaries = all_summaries()
    finished = [item for item in summaries if item["status"] != "running"]
    dry_runs = sum(item["dry_run"] for item in summaries) / len(summaries)
    missing_cost = sum("cost" not in item for item in finished) / len(finished)
    deleted = sum("deleted_at" in item for item in finished) / len(finished)
    assert DRY_RUN_SHARE / 2 < dry_runs < DRY_RUN_SHARE * 2
    assert MISSING_COST_SHARE / 2 < missing_cost < MISSING_COST_SHARE * 2
    assert DELETED_SHARE / 2 < deleted < DELETED_SHARE * 2


def test_running_executions_have_no_cost_and_are_not_deleted() -> None:
    running = [item for item in all_summaries() if item["status"] == "running"]
    assert len(running) > 100
    assert not any("cost" in item or "deleted_at" in item for item in running)


def test_cost_is_a_number_or_an_object_by_workflow() -> None:
    shapes: dict[str, set[Any]] = defaultdict(set)
    for item in all_summaries():
        if "cost" in item:
            cost = item["cost"]
            shapes[item["flow_name"]].add("number" if isinstance(cost, float) else frozenset(cost))
    assert set(shapes) == {spec.name for spec in WORKFLOW_SPECS}
    for spec in WORKFLOW_SPECS:
        keys = COST_KEYS[spec.cost_format]
        assert shapes[spec.name] == {"number" if keys is None else frozenset(keys)}, spec.name
    formats = Counter(spec.cost_format for spec in WORKFLOW_SPECS)
    assert formats["breakdown"] == formats["amount"] == 1 and formats["number"] >= 4


def test_cost_objects_add_up_and_dry_runs_cost_nothing() -> None:
    for item in all_summaries():
        cost = item.get("cost")
        if cost is None:
            continue
        if isinstance(cost, dict) and "breakdown" in cost:
            assert cost["currency"] == "USD"
            assert cost["total"] == pytest.approx(sum(cost["breakdown"].values()), abs=1e-6)
        if isinstance(cost, dict) and "unit" in cost:
            assert cost["unit"] == "usd"
        if item["dry_run"]:
            assert total_usd(cost) == 0
        elif item["status"] == "completed":
            assert total_usd(cost) > 0


def test_cost_scales_with_what_a_workflow_runs() -> None:
    costs: dict[str, list[float]] = defaultdict(list)
    for item in all_summaries():
        if item["status"] == "completed" and not item["dry_run"] and "cost" in item:
            costs[item["flow_name"]].append(total_usd(item["cost"]))
    median = {name: statistics.median(values) for name, values in costs.items()}
    # A video costs more than an image, which costs more than a caption or a moderation check.
    assert median["Cinematic Trailer"] > 1.0 > 0.1 > median["Text to Image Generator"]
    assert median["Text to Image Generator"] > 0.01 > median["Quick Caption"]
    assert 0 < median["Content Moderation Check"] < 0.01
    # LLM calls cost by length, so two captions seldom cost the same.
    assert len(set(costs["Quick Caption"])) > len(costs["Quick Caption"]) / 2


def test_deleted_at_lies_between_the_end_and_the_start_time() -> None:
    start = instant("2026-03-02T09:00:00Z")
    deleted = [item for item in all_summaries() if "deleted_at" in item]
    assert len(deleted) > 10
    for item in deleted:
        assert instant(item["ended_at"]) < instant(item["deleted_at"]) < start
        assert item["updated_at"] == item["ended_at"]  # deleting is not an update of the run


def test_created_at_is_started_at_and_the_list_stays_newest_first() -> None:
    app = SimulatorApp(DATASET, KEY)
    for workflow_index, workflow in enumerate(DATASET.workflows):
        items = walk(app, workflow.workflow_id, limit=37)
        assert all(item["created_at"] == item["started_at"] for item in items)
        created = [instant(item["created_at"]) for item in items]
        assert created == sorted(created, reverse=True)
        expected = [DATASET.execution_ids[i] for i in DATASET.listing(workflow_index)]
        assert [item["execution_id"] for item in items] == expected


def test_bulk_members_were_triggered_by_one_user() -> None:
    users = {item["execution_id"]: item["api_key"] for item in all_summaries()}
    for bulk_id in DATASET.bulk_ids[:20]:
        members = DATASET.bulk_members(bulk_id)
        assert len({users[DATASET.execution_ids[i]] for i in members}) == 1


# --- determinism, and nothing else moved -------------------------------------------------


def test_same_seed_gives_identical_pages_whatever_was_asked_before() -> None:
    pages = [
        (workflow.workflow_id, offset)
        for index, workflow in enumerate(DATASET.workflows)
        for offset in range(0, len(DATASET.listing(index)), 50)
    ]

    def bodies(app: SimulatorApp, order: list[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        answers = {}
        for workflow_id, offset in order:
            path, query = split_target(
                f"{API_PREFIX}/workflows/{workflow_id}/executions?offset={offset}&limit=50"
            )
            answers[workflow_id, offset] = app.handle("GET", path, query, {"X-API-Key": KEY}).body
        return answers

    # The second instance builds its plans and facts in the opposite order.
    forwards = bodies(SimulatorApp(DATASET, KEY), pages)
    assert forwards == bodies(SimulatorApp(Dataset(42, 2000), KEY), pages[::-1])
    other = SimulatorApp(Dataset(43, 2000), KEY)
    other_users = {item["api_key"] for item in walk(other, other.dataset.workflows[0].workflow_id)}
    assert other_users.isdisjoint(item["api_key"] for item in all_summaries())


def test_the_new_fields_only_add_to_the_summary_and_never_reach_the_details() -> None:
    now_us = DATASET.start_us
    for index in range(0, 2000, 10):
        plan = DATASET.plan(index)
        facts = summary_facts(DATASET, index, plan)
        assert plan == DATASET.plan(index)  # drawing the facts leaves the plan alone
        with_facts = render_summary(plan, now_us, facts)
        without = {name: value for name, value in with_facts.items() if name not in NEW_FIELDS}
        assert without == render_summary(plan, now_us)
        # The plan, all `render_execution` reads, still comes from its own seed alone.
        workflow = DATASET.workflows[DATASET.workflow_of[index]]
        bulk_number = DATASET.bulk_of[index]
        alone = _plan_execution(
            random.Random(f"eachlabs-sim/42/{index}"),
            execution_id=DATASET.execution_ids[index],
            workflow=workflow,
            version_index=DATASET.version_of[index],
            bulk_id=DATASET.bulk_ids[bulk_number] if bulk_number >= 0 else None,
            started_us=DATASET.started_us[index],
            precision=DATASET.precision_of[index],
            live_until_us=now_us if DATASET.is_live[index] else None,
            is_recent=DATASET.started_us[index] >= now_us - 6 * 24 * 3600 * 10**6,
        )
        assert render_execution(alone, now_us) == render_execution(plan, now_us)


# --- hand-made summaries -----------------------------------------------------------------


def test_hand_made_summary_fields_override_extend_or_remove_the_derived_ones() -> None:
    app = SimulatorApp(DATASET, KEY)
    workflow_id = DATASET.workflows[0].workflow_id
    payload = {
        "execution_id": "hm-1",
        "workflow_id": workflow_id,
        "status": "completed",
        "started_at": "2026-03-01T10:00:00Z",
        "completed_at": "2026-03-01T10:01:00Z",
        "inputs": {"prompt": "x"},
    }
    app.put_execution({**payload, "execution_id": "hm-0"})
    overrides = {
        "dry_run": True,
        "cost": {"total": 0.12, "currency": "USD"},
        "deleted_at": "2026-03-01T12:00:00Z",
        "flow_name": "My flow",
        "version_id": "v2",
        "created_at": "2026-03-01T09:59:00Z",
        "updated_at": "2026-03-01T11:00:00Z",
        "api_key": "k",
        "inputs": None,
    }
    app.put_execution(payload, summary=overrides)
    first, second = page(app, workflow_id, 0, 2)["executions"]
    assert first == {
        "execution_id": "hm-1",
        "flow_id": workflow_id,
        "flow_name": "My flow",
        "version_id": "v2",
        "status": "completed",
        "started_at": "2026-03-01T10:00:00Z",
        "ended_at": "2026-03-01T10:01:00Z",
        "created_at": "2026-03-01T09:59:00Z",
        "updated_at": "2026-03-01T11:00:00Z",
        "dry_run": True,
        "cost": {"total": 0.12, "currency": "USD"},
        "deleted_at": "2026-03-01T12:00:00Z",
        "api_key": "k",
    }
    # Without overrides: today's derived summary, not a dry run, no user, cost or deletion.
    assert second["execution_id"] == "hm-0" and second["dry_run"] is False
    assert not {"api_key", "cost", "deleted_at"} & set(second)
    # The details are the payload as given; putting again without a summary drops overrides.
    assert json.loads(app.execution_response("hm-1").body) == payload
    app.put_execution(payload)
    first = page(app, workflow_id, 0, 1)["executions"][0]
    assert (first["flow_name"], first["dry_run"]) == (DATASET.workflows[0].name, False)


def test_hand_made_summary_must_be_a_mapping_of_names() -> None:
    app = SimulatorApp(DATASET, KEY)
    for summary in (["dry_run"], {1: "x"}):
        with pytest.raises(ValueError, match="summary"):
            app.put_execution({"execution_id": "x"}, summary=summary)


def test_simulator_put_execution_passes_the_summary_on(simulator: Simulator) -> None:
    workflow_id = simulator.workflow_ids[0]
    simulator.put_execution(
        {"execution_id": "hm", "workflow_id": workflow_id, "status": "completed"},
        summary={"cost": 0.5, "version_id": None},
    )
    response = requests.get(
        f"{simulator.base_url}/workflows/{workflow_id}/executions?limit=1",
        headers={"X-API-Key": simulator.api_key},
        timeout=10,
    )
    first = response.json()["executions"][0]
    assert (first["execution_id"], first["cost"], "version_id" in first) == ("hm", 0.5, False)


# --- list_order="shuffled" ---------------------------------------------------------------


def test_shuffled_order_gives_each_execution_once_not_by_created_at() -> None:
    newest_first = SimulatorApp(DATASET, KEY)
    shuffled = SimulatorApp(DATASET, KEY, list_order="shuffled")
    workflow_id = DATASET.workflows[0].workflow_id
    shuffled.put_execution({"execution_id": "hm", "workflow_id": workflow_id})
    newest_first.put_execution({"execution_id": "hm", "workflow_id": workflow_id})
    for workflow in DATASET.workflows:
        expected = walk(newest_first, workflow.workflow_id)
        for limit in (7, 100):
            items = walk(shuffled, workflow.workflow_id, limit)
            ids = [item["execution_id"] for item in items]
            assert len(ids) == len(set(ids)) == len(expected)
            assert sorted(items, key=lambda item: item["execution_id"]) == sorted(
                expected, key=lambda item: item["execution_id"]
            )
            created = [instant(item["created_at"]) for item in items]
            assert created != sorted(created, reverse=True) and created != sorted(created)
        # The same order on every walk, and on another simulator with the same seed.
        again = SimulatorApp(DATASET, KEY, list_order="shuffled")
        again.put_execution({"execution_id": "hm", "workflow_id": workflow_id})
        assert ids == [item["execution_id"] for item in walk(again, workflow.workflow_id, 50)]
    # The hand-made execution is shuffled in too, not pinned to the top.
    assert walk(shuffled, workflow_id)[0]["execution_id"] != "hm"


def test_shuffled_bulk_list_has_the_bulks_members() -> None:
    shuffled = SimulatorApp(DATASET, KEY, list_order="shuffled")
    bulk_id = max(DATASET.bulk_ids, key=lambda b: len(DATASET.bulk_members(b)))
    members = DATASET.bulk_members(bulk_id)
    workflow_id = DATASET.workflows[DATASET.workflow_of[members[0]]].workflow_id
    path, query = split_target(
        f"{API_PREFIX}/workflows/{workflow_id}/executions?bulk_id={bulk_id}&limit=100"
    )
    body = json.loads(shuffled.handle("GET", path, query, {"X-API-Key": KEY}).body)
    assert sorted(item["execution_id"] for item in body["executions"]) == sorted(
        DATASET.execution_ids[i] for i in members
    )


# --- list_insert_per_page ----------------------------------------------------------------


def test_paging_while_executions_arrive_shifts_later_pages(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory(executions=1300, faults=FaultConfig(list_insert_per_page=2))
    app_view = SimulatorApp(sim.app.dataset, KEY)  # the same data, no inserts
    workflow_id = max(sim.workflow_ids, key=lambda wf: len(walk(app_view, wf)))
    before = [item["execution_id"] for item in walk(app_view, workflow_id)]
    assert len(before) >= 250
    headers = {"X-API-Key": sim.api_key}
    url = f"{sim.base_url}/workflows/{workflow_id}/executions"

    seen: list[str] = []
    first_of_page: list[str] = []
    totals: list[int] = []
    offset: int | None = 0
    while offset is not None:
        body = requests.get(
            url, headers=headers, params={"offset": offset, "limit": 100}, timeout=10
        ).json()
        seen += [item["execution_id"] for item in body["executions"]]
        first_of_page.append(body["executions"][0]["execution_id"])
        totals.append(body["total_count"])
        offset = body["offset"]

    inserted = sim.inserted_execution_ids
    requests_made = len(totals)
    assert len(inserted) == 2 * requests_made
    assert totals == [len(before) + 2 * n for n in range(requests_made)]
    # Every execution there before appears at least once; the shift repeats some.
    counts = Counter(seen)
    assert set(before) <= set(counts)
    assert any(counts[execution_id] == 2 for execution_id in before)
    # The walk started at the top before anything was inserted, so it saw no new arrival.
    assert first_of_page[0] == before[0] and not set(inserted) & set(seen)
    # A later request finds the new arrivals at the top, newest (last created) first.
    body = requests.get(url, headers=headers, params={"offset": 0, "limit": 100}, timeout=10).json()
    top = [item["execution_id"] for item in body["executions"][: len(inserted)]]
    assert top == inserted[::-1]
    created = [instant(item["created_at"]) for item in body["executions"]]
    assert created == sorted(created, reverse=True) and len(set(created[: len(inserted)])) == len(
        inserted
    )
    assert created[len(inserted) - 1] > created[len(inserted)]
    assert all(item["flow_id"] == workflow_id for item in body["executions"])
    # Each one is a finished, completed execution of the workflow with steps, and a UUID.
    for execution_id in inserted:
        assert str(uuid.UUID(execution_id)) == execution_id
        assert execution_id not in sim.app.dataset.index
        response = requests.get(
            f"{sim.base_url}/executions/{execution_id}", headers=headers, timeout=10
        )
        details = response.json()
        assert response.status_code == 200
        assert (details["status"], details["workflow_id"]) == ("completed", workflow_id)
        assert details["step_outputs"] and "completed_at" in details
        assert instant(details["started_at"]) >= sim.now


def test_inserted_executions_are_deterministic_and_after_the_page() -> None:
    apps = [SimulatorApp(DATASET, KEY, list_insert_per_page=3) for _ in range(2)]
    workflow_id = DATASET.workflows[2].workflow_id
    plain = page(SimulatorApp(DATASET, KEY), workflow_id, 0, 10)
    for app in apps:
        assert page(app, workflow_id, 0, 10)["executions"] == plain["executions"]
        inserted = app.inserted_execution_ids
        assert len(inserted) == 3
        following = page(app, workflow_id, 0, 10)
        assert following["total_count"] == plain["total_count"] + 3
        assert [item["execution_id"] for item in following["executions"][:3]] == inserted[::-1]
        assert following["executions"][3:] == plain["executions"][:7]
    assert apps[0].inserted_execution_ids == apps[1].inserted_execution_ids
    assert page(apps[0], workflow_id) == page(apps[1], workflow_id)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"list_order": "random"}, "list_order must be one of newest_first, shuffled"),
        ({"list_insert_per_page": -1}, "list_insert_per_page must be an integer >= 0"),
        ({"list_insert_per_page": 1.5}, "list_insert_per_page must be an integer >= 0"),
        ({"list_insert_per_page": True}, "list_insert_per_page must be an integer >= 0"),
    ],
)
def test_fault_config_rejects_bad_list_faults(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig(**fields)


def test_cli_flags_set_the_list_faults() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["simulator", "--list-order", "shuffled", "--list-insert-per-page", "4"]
    )
    faults = config_from_args(args).faults
    assert (faults.list_order, faults.list_insert_per_page) == ("shuffled", 4)
    defaults = config_from_args(parser.parse_args(["simulator"])).faults
    assert (defaults.list_order, defaults.list_insert_per_page) == ("newest_first", 0)
    with pytest.raises(SystemExit):
        parser.parse_args(["simulator", "--list-order", "oldest_first"])

"""The simulator's routing layer called directly: no socket, no HTTP client, no server thread.

`SimulatorApp.handle(method, path, query, headers)` is what the HTTP transport serves; these
tests pin its answers (status, headers, body) and its long-poll waiting on their own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from pipelines.simulator.app import (
    API_PREFIX,
    Response,
    SimulatorApp,
    execution_id_of,
    split_target,
)
from pipelines.simulator.plans import US, Dataset
from pipelines.simulator.render import render_execution

KEY = "app-test-key"
GOOD = {"X-API-Key": KEY}
DATASET = Dataset(seed=42, executions=300)
#: Every execution still running at the start time, for the long-poll tests.
LIVE = Dataset(seed=42, executions=20, running_share=1.0)
WORKFLOW = DATASET.workflows[0].workflow_id


def call(
    app: SimulatorApp, target: str, method: str = "GET", headers: Mapping[str, str] = GOOD
) -> tuple[Response, Any]:
    """`app`'s answer to `method API_PREFIX+target`, with its body decoded."""
    path, query = split_target(API_PREFIX + target)
    response = app.handle(method, path, query, headers)
    return response, json.loads(response.body)


def walk(app: SimulatorApp, target: str, limit: int) -> tuple[list[str], set[int]]:
    """Every execution ID of a list endpoint, page by page, and the totals the pages gave."""
    ids: list[str] = []
    totals: set[int] = set()
    offset: int | None = 0
    while offset is not None:
        response, body = call(
            app, f"{target}{'&' if '?' in target else '?'}offset={offset}&limit={limit}"
        )
        assert response.status == 200, body
        assert len(body["executions"]) <= limit
        ids += [item["execution_id"] for item in body["executions"]]
        totals.add(body["total_count"])
        offset = body["offset"]
        assert offset is None or offset == len(ids)
    return ids, totals


# --- 401, 404, 405, 400 ------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}])
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/nope"),
        ("POST", "/executions/x"),
        ("GET", "/executions/x?timeout=0"),
        ("GET", f"/workflows/{WORKFLOW}/executions?limit=0"),
        ("GET", "/workflows/unknown/executions"),
        ("GET", f"/executions/{DATASET.execution_ids[0]}"),
    ],
)
def test_no_valid_key_is_401_whatever_else_is_wrong(
    headers: dict[str, str], method: str, target: str
) -> None:
    response, body = call(SimulatorApp(DATASET, KEY), target, method, headers)
    assert (response.status, body, response.headers) == (
        401,
        {"error": "Invalid or missing API key"},
        {},
    )


def test_the_key_header_name_is_matched_whatever_its_case() -> None:
    execution_id = DATASET.execution_ids[0]
    response, body = call(
        SimulatorApp(DATASET, KEY), f"/executions/{execution_id}", headers={"x-api-key": KEY}
    )
    assert response.status == 200
    assert body["execution_id"] == execution_id


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/nope", "not found"),
        ("/executions", "not found"),
        ("/executions/a/b", "not found"),
        ("/workflows/x", "not found"),
        ("/executions/unknown-id", "execution not found"),
        ("/workflows/unknown-workflow/executions", "workflow not found"),
    ],
)
def test_unknown_paths_and_ids_are_404_with_a_json_error(target: str, message: str) -> None:
    response, body = call(SimulatorApp(DATASET, KEY), target)
    assert (response.status, body) == (404, {"error": message})


def test_a_removed_execution_is_404_and_leaves_the_list() -> None:
    app = SimulatorApp(DATASET, KEY)
    removed = DATASET.execution_ids[DATASET.listing(0)[0]]
    app.remove_execution(removed)
    response, body = call(app, f"/executions/{removed}")
    assert (response.status, body) == (404, {"error": "execution not found"})
    ids, totals = walk(app, f"/workflows/{WORKFLOW}/executions", 100)
    assert removed not in ids
    assert totals == {len(DATASET.listing(0)) - 1}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("target", ["/executions/x", f"/workflows/{WORKFLOW}/executions"])
def test_other_methods_on_known_paths_are_405_allowing_get(method: str, target: str) -> None:
    response, body = call(SimulatorApp(DATASET, KEY), target, method)
    assert (response.status, body) == (405, {"error": "method not allowed"})
    assert response.headers == {"Allow": "GET"}


def test_an_unknown_path_is_404_before_the_method_is_looked_at() -> None:
    response, body = call(SimulatorApp(DATASET, KEY), "/nope", "POST")
    assert (response.status, body, response.headers) == (404, {"error": "not found"}, {})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        *[
            (f"timeout={value}", "timeout must be an integer between 1 and 30")
            for value in ("0", "31", "abc", "1.5", "-1", "", "1e1", "9999999999")
        ],
        *[
            (f"offset={value}", "offset must be an integer >= 0")
            for value in ("-1", "x", "", "0.5", "9999999999")
        ],
        *[
            (f"limit={value}", "limit must be an integer between 1 and 100")
            for value in ("0", "101", "-5", "ten", "")
        ],
    ],
)
def test_bad_timeout_offset_or_limit_is_400_naming_the_rule(query: str, message: str) -> None:
    target = (
        f"/executions/{DATASET.execution_ids[0]}"
        if query.startswith("timeout")
        else f"/workflows/{WORKFLOW}/executions"
    )
    response, body = call(SimulatorApp(DATASET, KEY), f"{target}?{query}")
    assert (response.status, body) == (400, {"error": message})


@pytest.mark.parametrize(
    "query", ["timeout=1", "timeout=30", "offset=0", "offset=100000", "limit=1", "limit=100"]
)
def test_parameters_at_their_bounds_are_accepted(query: str) -> None:
    target = (
        f"/executions/{DATASET.execution_ids[0]}"
        if query.startswith("timeout")
        else f"/workflows/{WORKFLOW}/executions"
    )
    response, _body = call(SimulatorApp(DATASET, KEY, long_poll=False), f"{target}?{query}")
    assert response.status == 200


# --- answers -----------------------------------------------------------------------------


def test_an_execution_is_its_plan_rendered_at_the_simulated_time() -> None:
    app = SimulatorApp(DATASET, KEY, long_poll=False)
    app.advance(3600)
    now_us = DATASET.start_us + 3600 * US
    for index in (0, 123, 299):
        response, _body = call(app, f"/executions/{DATASET.execution_ids[index]}")
        expected = json.dumps(render_execution(DATASET.plan(index), now_us), ensure_ascii=False)
        assert response.body == expected.encode()


@pytest.mark.parametrize("limit", [1, 7, 50, 100])
def test_list_pages_give_each_execution_once_newest_first(limit: int) -> None:
    app = SimulatorApp(DATASET, KEY)
    for workflow_index, workflow in enumerate(DATASET.workflows):
        ids, totals = walk(app, f"/workflows/{workflow.workflow_id}/executions", limit)
        expected = [DATASET.execution_ids[i] for i in DATASET.listing(workflow_index)]
        assert ids == expected
        assert totals == {len(expected)}


def test_a_page_past_the_end_is_empty_with_no_next_offset() -> None:
    total = len(DATASET.listing(0))
    response, body = call(
        SimulatorApp(DATASET, KEY), f"/workflows/{WORKFLOW}/executions?offset={total}"
    )
    assert (response.status, body) == (
        200,
        {"executions": [], "offset": None, "total_count": total},
    )


def test_the_default_page_is_50_long() -> None:
    response, body = call(SimulatorApp(DATASET, KEY), f"/workflows/{WORKFLOW}/executions")
    assert len(DATASET.listing(0)) > 50
    assert (len(body["executions"]), body["offset"]) == (50, 50)


def test_bulk_id_lists_only_that_bulks_members_of_the_workflow() -> None:
    app = SimulatorApp(DATASET, KEY)
    bulk_id = DATASET.bulk_ids[0]
    members = DATASET.bulk_members(bulk_id)
    workflow = DATASET.workflows[DATASET.workflow_of[members[0]]].workflow_id
    ids, totals = walk(app, f"/workflows/{workflow}/executions?bulk_id={bulk_id}", 3)
    assert sorted(ids) == sorted(DATASET.execution_ids[i] for i in members)
    assert totals == {len(members)}
    other = next(wf.workflow_id for wf in DATASET.workflows if wf.workflow_id != workflow)
    assert walk(app, f"/workflows/{other}/executions?bulk_id={bulk_id}", 3) == ([], {0})


def test_hand_made_payloads_come_first_newest_first_and_are_served_verbatim() -> None:
    app = SimulatorApp(DATASET, KEY)
    for name in ("hm-1", "hm-2"):
        app.put_execution({"execution_id": name, "workflow_id": WORKFLOW, "status": "completed"})
    app.put_execution({"execution_id": "elsewhere", "workflow_id": "wf-x", "status": "failed"})
    response, body = call(app, f"/workflows/{WORKFLOW}/executions?limit=3")
    assert [item["execution_id"] for item in body["executions"]] == [
        "hm-2",
        "hm-1",
        DATASET.execution_ids[DATASET.listing(0)[0]],
    ]
    assert body["executions"][0]["flow_name"] == DATASET.workflows[0].name
    assert body["total_count"] == len(DATASET.listing(0)) + 2
    response, body = call(app, "/workflows/wf-x/executions")
    assert [(item["execution_id"], item["flow_name"]) for item in body["executions"]] == [
        ("elsewhere", "Hand-made workflow")
    ]
    response, body = call(app, "/executions/hm-1")
    assert body == {"execution_id": "hm-1", "workflow_id": WORKFLOW, "status": "completed"}


def test_split_target_keeps_the_first_value_and_blank_ones() -> None:
    target = f"{API_PREFIX}/workflows/w/executions?limit=5&bulk_id=&limit=9"
    assert split_target(target) == (
        f"{API_PREFIX}/workflows/w/executions",
        {"limit": "5", "bulk_id": ""},
    )
    assert execution_id_of(f"{API_PREFIX}/executions/a%20b") == "a b"
    assert execution_id_of(f"{API_PREFIX}/workflows/w/executions") is None


# --- long-poll, without sockets ----------------------------------------------------------


def poll_in_thread(app: SimulatorApp, execution_id: str) -> tuple[threading.Thread, list[Any]]:
    """Start `GET /executions/{id}?timeout=30` on a thread; its body lands in the list."""
    answers: list[Any] = []
    thread = threading.Thread(
        target=lambda: answers.append(call(app, f"/executions/{execution_id}?timeout=30")[1]),
        daemon=True,
    )
    thread.start()
    return thread, answers


def test_a_long_poll_waits_on_a_running_execution_until_advance_finishes_it() -> None:
    app = SimulatorApp(LIVE, KEY)
    plan = LIVE.plan(0)
    assert plan.status_at(LIVE.start_us) == "running"
    thread, answers = poll_in_thread(app, plan.execution_id)
    thread.join(0.2)  # not a timed assertion: it must still be waiting however slow the machine
    assert thread.is_alive() and answers == []
    app.advance((plan.terminal_us - LIVE.start_us) / US + 1)
    thread.join(10)  # a guard against hanging the suite; the answer is asserted below
    assert not thread.is_alive()
    assert answers[0]["status"] == plan.terminal_status


def test_a_long_poll_is_released_by_stop_waiting_still_running() -> None:
    app = SimulatorApp(LIVE, KEY)
    thread, answers = poll_in_thread(app, LIVE.execution_ids[1])
    thread.join(0.2)
    assert thread.is_alive()
    app.stop_waiting()
    thread.join(10)
    assert not thread.is_alive()
    assert answers[0]["status"] == "running"


def test_a_long_poll_is_woken_by_a_put_execution_that_finishes_it() -> None:
    app = SimulatorApp(LIVE, KEY)
    execution_id = LIVE.execution_ids[2]
    thread, answers = poll_in_thread(app, execution_id)
    thread.join(0.2)
    assert thread.is_alive()
    app.put_execution({"execution_id": execution_id, "status": "completed"})
    thread.join(10)
    assert answers == [{"execution_id": execution_id, "status": "completed"}]


def test_with_long_poll_off_a_running_execution_is_answered_at_once() -> None:
    app = SimulatorApp(LIVE, KEY, long_poll=False)
    response, body = call(app, f"/executions/{LIVE.execution_ids[0]}?timeout=30")
    assert (response.status, body["status"], response.is_running) == (200, "running", True)
    assert response.finish_us == LIVE.plan(0).terminal_us

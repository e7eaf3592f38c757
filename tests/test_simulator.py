"""Behaviour of the Eachlabs API simulator: auth, routes, long-poll, paging, clock, faults, log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from pipelines.simulator import FaultConfig, RequestRecord, Simulator, SimulatorConfig
from pipelines.simulator.plans import US, Dataset

MakeSimulator = Callable[..., Simulator]
TERMINAL = {"completed", "failed", "cancelled"}
ONE_DAY_S = 24 * 3600


@pytest.fixture
def simulator_factory(simulator_factory: MakeSimulator) -> MakeSimulator:
    """The shared factory with the simulator's own default, long-poll on: these tests check
    the simulator itself (the shared fixtures switch long-poll off for speed)."""

    def make(**config: Any) -> Simulator:
        return simulator_factory(**{"long_poll": True, **config})

    return make


def get(
    sim: Simulator,
    path: str,
    *,
    api_key: str | None = "valid",
    read_timeout_s: float = 60.0,
    **params: Any,
) -> requests.Response:
    """GET `sim.base_url + path`; `api_key="valid"` sends the simulator's key, None sends none."""
    headers = {}
    if api_key is not None:
        headers["X-API-Key"] = sim.api_key if api_key == "valid" else api_key
    return requests.get(
        sim.base_url + path, headers=headers, params=params, timeout=(5, read_timeout_s)
    )


def ids_with_status(sim: Simulator, status: str) -> list[str]:
    return [i for i in sim.execution_ids if sim.execution(i)["status"] == status]


def long_polls(sim: Simulator) -> list[str]:
    """How each `GET /executions/{id}` so far ended (at_once, changed, timeout, stopping)."""
    return [record.long_poll for record in sim.request_log if record.long_poll is not None]


# --- auth and routing ----------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, "", "wrong-key"])
@pytest.mark.parametrize(
    "path",
    ["/executions/{id}", "/executions/{id}?timeout=abc", "/workflows/{wf}/executions", "/nope"],
)
def test_missing_or_wrong_key_is_401_before_anything_else(
    simulator: Simulator, api_key: str | None, path: str
) -> None:
    url = path.format(id=simulator.execution_ids[0], wf=simulator.workflow_ids[0])
    headers = {} if api_key is None else {"X-API-Key": api_key}
    response = requests.get(simulator.base_url + url, headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or missing API key"}
    assert response.headers["Content-Type"].startswith("application/json")
    assert simulator.request_log[-1].has_api_key is bool(api_key)


def test_unknown_execution_is_404(simulator: Simulator) -> None:
    response = get(simulator, "/executions/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json() == {"error": "execution not found"}


@pytest.mark.parametrize("path", ["/nope", "/executions", "/executions/a/b", "/workflows/x"])
def test_unknown_path_is_404_json(simulator: Simulator, path: str) -> None:
    response = get(simulator, path)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_other_methods_are_405(simulator: Simulator) -> None:
    url = f"{simulator.base_url}/executions/{simulator.execution_ids[0]}"
    response = requests.post(
        url, headers={"X-API-Key": simulator.api_key}, json={"a": 1}, timeout=5
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json() == {"error": "method not allowed"}


# --- execution shapes ----------------------------------------------------------------------


def test_http_body_matches_in_process_view(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(long_poll=False)
    for execution_id in sim.execution_ids[:40]:
        response = get(sim, f"/executions/{execution_id}", timeout=1)
        assert response.status_code == 200
        assert response.json() == sim.execution(execution_id)


def test_without_long_poll_running_executions_answer_at_once(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory(long_poll=False)
    running_id = ids_with_status(sim, "running")[0]
    assert get(sim, f"/executions/{running_id}", timeout=30).json()["status"] == "running"
    assert long_polls(sim) == ["at_once"]


def test_execution_fields_follow_status(simulator: Simulator) -> None:
    seen = Counter()
    for execution_id in simulator.execution_ids:
        body = simulator.execution(execution_id)
        status = body["status"]
        seen[status] += 1
        assert body["execution_id"] == execution_id
        assert body["workflow_id"] in simulator.workflow_ids
        assert ("completed_at" in body) is (status != "running")
        assert "output" in body
        if status != "completed":
            assert body["output"] is None
        assert ("error" in body) is (status == "failed")
        assert ("error_cause" in body) is (status == "failed")
        assert "bulk_id" not in body or body["bulk_id"] in simulator.bulk_ids
    assert set(seen) == {"running", "completed", "failed", "cancelled"}
    # About a tenth is still running at the start.
    assert 0.04 <= seen["running"] / len(simulator.execution_ids) <= 0.2


def test_ids_are_uuids_and_bulk_executions_share_their_bulk_id(simulator: Simulator) -> None:
    import uuid

    bodies = [simulator.execution(i) for i in simulator.execution_ids]
    for body in bodies:
        assert str(uuid.UUID(body["execution_id"])) == body["execution_id"]
    by_bulk = Counter(body["bulk_id"] for body in bodies if "bulk_id" in body)
    assert by_bulk and all(count >= 2 for count in by_bulk.values())
    assert sum(1 for body in bodies if "bulk_id" not in body) > len(bodies) / 2


# --- long-poll ---------------------------------------------------------------------------


def test_running_execution_with_frozen_clock_waits_for_the_timeout(simulator: Simulator) -> None:
    running_id = ids_with_status(simulator, "running")[0]
    started = time.monotonic()
    response = get(simulator, f"/executions/{running_id}", timeout=1)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert long_polls(simulator) == ["timeout"]
    assert elapsed >= 0.9  # a lower bound only: a busy machine makes it longer, never shorter


def test_finished_execution_answers_at_once_whatever_the_timeout(simulator: Simulator) -> None:
    done_id = ids_with_status(simulator, "completed")[0]
    response = get(simulator, f"/executions/{done_id}", timeout=30)
    assert response.status_code == 200
    assert long_polls(simulator) == ["at_once"]


def test_forgetting_timeout_stalls_on_running_executions(simulator: Simulator) -> None:
    """Without `timeout` the server waits its default 10 s: a 2 s client read timeout trips."""
    running_id = ids_with_status(simulator, "running")[0]
    with pytest.raises(requests.ReadTimeout):
        get(simulator, f"/executions/{running_id}", read_timeout_s=2.0)


def test_execution_finishing_inside_the_window_answers_early(
    simulator_factory: MakeSimulator,
) -> None:
    # Pick a running execution and a clock speed at which it finishes ~0.5 s after start.
    dataset = Dataset(seed=42, executions=200)
    plans = [dataset.plan(i) for i in range(len(dataset))]
    running = [p for p in plans if p.status_at(dataset.start_us) == "running"]
    plan = min(running, key=lambda p: p.terminal_us)
    remaining_s = (plan.terminal_us - dataset.start_us) / US
    sim = simulator_factory(time_scale=remaining_s / 0.5)

    response = get(sim, f"/executions/{plan.execution_id}", timeout=30)
    assert response.json()["status"] == plan.terminal_status
    # It finished on the running clock while the request waited, not at the 30 s time-out.
    assert long_polls(sim) == ["changed"]


def test_advancing_the_clock_wakes_a_waiting_long_poll(simulator: Simulator) -> None:
    running_id = ids_with_status(simulator, "running")[0]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(get, simulator, f"/executions/{running_id}", timeout=30)
        assert simulator.app.wait_for_waiting(1), "the long-poll never started waiting"
        simulator.advance(ONE_DAY_S)
        response = future.result()
    assert response.json()["status"] in TERMINAL
    assert long_polls(simulator) == ["changed"]


@pytest.mark.parametrize("value", ["0", "31", "abc", "1.5", "-1", ""])
def test_timeout_outside_1_to_30_is_400(simulator: Simulator, value: str) -> None:
    response = get(simulator, f"/executions/{simulator.execution_ids[0]}", timeout=value)
    assert response.status_code == 400
    assert response.json() == {"error": "timeout must be an integer between 1 and 30"}


def test_32_concurrent_long_polls_are_served_in_parallel(simulator: Simulator) -> None:
    """All 32 wait at the same time (serialised, only one would), then one clock move answers
    them all."""
    running_ids = ids_with_status(simulator, "running")
    targets = [running_ids[n % len(running_ids)] for n in range(32)]
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(get, simulator, f"/executions/{i}", timeout=30) for i in targets]
        assert simulator.app.wait_for_waiting(32), "32 long-polls never waited at once"
        simulator.advance(ONE_DAY_S)
        responses = [future.result() for future in futures]
    assert all(r.json()["status"] in TERMINAL for r in responses)
    assert long_polls(simulator) == ["changed"] * 32


# --- list endpoint -----------------------------------------------------------------------


def list_page(sim: Simulator, workflow_id: str, **params: Any) -> dict[str, Any]:
    response = get(sim, f"/workflows/{workflow_id}/executions", **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_of_a_workflow_without_executions_is_empty(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(executions=0)
    page = list_page(sim, sim.workflow_ids[0])
    assert page == {"executions": [], "offset": None, "total_count": 0}


def test_walking_all_pages_returns_each_execution_once_newest_first(simulator: Simulator) -> None:
    for workflow_id in simulator.workflow_ids:
        expected = {
            i
            for i in simulator.execution_ids
            if simulator.execution(i)["workflow_id"] == workflow_id
        }
        seen: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = list_page(simulator, workflow_id, offset=offset, limit=7)
            assert page["total_count"] == len(expected)
            assert len(page["executions"]) <= 7
            seen.extend(page["executions"])
            offset = page["offset"]
        assert [item["execution_id"] for item in seen] == list(
            dict.fromkeys(item["execution_id"] for item in seen)
        )
        assert {item["execution_id"] for item in seen} == expected
        assert all(item["flow_id"] == workflow_id for item in seen)
        started = [_instant(item["started_at"]) for item in seen]
        assert started == sorted(started, reverse=True)


def test_list_default_limit_is_50_and_next_offset_points_past_the_page(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory(executions=1000)
    workflow_id = max(
        sim.workflow_ids,
        key=lambda wf: list_page(sim, wf, limit=1)["total_count"],
    )
    page = list_page(sim, workflow_id)
    assert len(page["executions"]) == 50
    assert page["offset"] == 50
    assert page["total_count"] > 50


def test_exact_multiple_of_limit_ends_with_a_full_page_and_null_offset(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory(executions=0)
    workflow_id = sim.workflow_ids[0]
    for n in range(6):
        sim.put_execution(
            {"execution_id": f"hand-{n}", "workflow_id": workflow_id, "status": "completed"}
        )
    first = list_page(sim, workflow_id, limit=3)
    second = list_page(sim, workflow_id, limit=3, offset=3)
    assert [e["execution_id"] for e in first["executions"]] == ["hand-5", "hand-4", "hand-3"]
    assert first["offset"] == 3
    assert [e["execution_id"] for e in second["executions"]] == ["hand-2", "hand-1", "hand-0"]
    assert second["offset"] is None
    assert first["total_count"] == second["total_count"] == 6
    past_the_end = list_page(sim, workflow_id, limit=3, offset=6)
    assert past_the_end == {"executions": [], "offset": None, "total_count": 6}


def test_bulk_id_filter_returns_only_that_bulk(simulator: Simulator) -> None:
    bodies = [simulator.execution(i) for i in simulator.execution_ids]
    bulk_id = Counter(b["bulk_id"] for b in bodies if "bulk_id" in b).most_common(1)[0][0]
    members = {b["execution_id"] for b in bodies if b.get("bulk_id") == bulk_id}
    workflow_id = next(b["workflow_id"] for b in bodies if b.get("bulk_id") == bulk_id)
    page = list_page(simulator, workflow_id, bulk_id=bulk_id, limit=100)
    assert {item["execution_id"] for item in page["executions"]} == members
    assert page["total_count"] == len(members) and page["offset"] is None
    other_workflow = next(wf for wf in simulator.workflow_ids if wf != workflow_id)
    assert list_page(simulator, other_workflow, bulk_id=bulk_id)["total_count"] == 0
    assert list_page(simulator, workflow_id, bulk_id="no-such-bulk")["total_count"] == 0


def test_list_summary_agrees_with_execution_details(simulator: Simulator) -> None:
    page = list_page(simulator, simulator.workflow_ids[0], limit=100)
    for item in page["executions"]:
        details = simulator.execution(item["execution_id"])
        assert item["status"] == details["status"]
        assert item["started_at"] == details["started_at"]
        assert item.get("ended_at") == details.get("completed_at")
        assert item["inputs"] == details["inputs"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be an integer between 1 and 100"),
        ({"limit": "101"}, "limit must be an integer between 1 and 100"),
        ({"limit": "ten"}, "limit must be an integer between 1 and 100"),
        ({"offset": "-1"}, "offset must be an integer >= 0"),
        ({"offset": "x"}, "offset must be an integer >= 0"),
    ],
)
def test_bad_paging_parameters_are_400(
    simulator: Simulator, params: dict[str, str], message: str
) -> None:
    response = get(simulator, f"/workflows/{simulator.workflow_ids[0]}/executions", **params)
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_unknown_workflow_is_404(simulator: Simulator) -> None:
    response = get(simulator, "/workflows/not-a-workflow/executions")
    assert response.status_code == 404
    assert response.json() == {"error": "workflow not found"}


# --- clock and state progression ---------------------------------------------------------


def assert_consistent(body: dict[str, Any]) -> None:
    """Step statuses agree with the execution status and with each other."""
    status = body["status"]
    steps = list(body["step_outputs"].values())
    step_statuses = [step["status"] for step in steps]
    for step_id, step in body["step_outputs"].items():
        assert step["step_id"] == step_id
        assert ("completed_at" in step) is (step["status"] in ("completed", "failed"))
        assert ("output" in step) is (step["status"] == "completed")
        assert ("error" in step) is (step["status"] == "failed")
        if step["status"] in ("running", "completed", "failed"):
            assert "started_at" in step
        if step["status"] == "queued":
            assert "started_at" not in step
    if status == "running":
        assert "failed" not in step_statuses and "cancelled" not in step_statuses
        assert {"queued", "running"} & set(step_statuses)
        assert body["output"] is None
    elif status == "completed":
        assert set(step_statuses) == {"completed"}
        # The output is the chronologically last step's (any of them if several tie).
        last_at = max(_instant(step["completed_at"]) for step in steps)
        last_outputs = [s["output"] for s in steps if _instant(s["completed_at"]) == last_at]
        assert body["output"] in last_outputs
    elif status == "failed":
        assert step_statuses.count("failed") == 1
        failed = next(step for step in steps if step["status"] == "failed")
        assert body["error"] and failed["step_id"] in body["error_cause"]
        assert set(step_statuses) <= {"completed", "failed", "cancelled"}
        assert body["output"] is None
    else:
        assert status == "cancelled"
        assert "cancelled" in step_statuses
        assert set(step_statuses) <= {"completed", "cancelled"}
        assert body["output"] is None


def _instant(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_advancing_the_clock_finishes_running_executions_consistently(
    simulator: Simulator,
) -> None:
    running_ids = ids_with_status(simulator, "running")
    before = {i: simulator.execution(i) for i in simulator.execution_ids}
    for advance_s in (0, 5, 30, 300, ONE_DAY_S):
        simulator.advance(advance_s)
        for execution_id in simulator.execution_ids:
            assert_consistent(simulator.execution(execution_id))
    after = {i: get(simulator, f"/executions/{i}", timeout=1).json() for i in running_ids}
    assert all(body["status"] in TERMINAL for body in after.values())
    # Finished executions never change; running ones keep their identity and start time.
    for execution_id, body in before.items():
        if body["status"] in TERMINAL:
            assert simulator.execution(execution_id) == body
    for execution_id in running_ids:
        assert after[execution_id]["started_at"] == before[execution_id]["started_at"]
        assert after[execution_id]["inputs"] == before[execution_id]["inputs"]


def test_running_clock_progresses_on_its_own(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(time_scale=3600.0)
    before = sim.now
    time.sleep(0.2)
    assert (sim.now - before).total_seconds() >= 0.2 * 3600 * 0.9


def test_advance_refuses_to_go_back(simulator: Simulator) -> None:
    with pytest.raises(ValueError):
        simulator.advance(-1)


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_responses(simulator_factory: MakeSimulator) -> None:
    first = simulator_factory(seed=7, long_poll=False)
    second = simulator_factory(seed=7, long_poll=False)
    assert first.execution_ids == second.execution_ids
    for execution_id in first.execution_ids[::4]:
        one = get(first, f"/executions/{execution_id}", timeout=1)
        two = get(second, f"/executions/{execution_id}", timeout=1)
        assert one.content == two.content
    workflow_id = first.workflow_ids[0]
    assert (
        get(first, f"/workflows/{workflow_id}/executions").content
        == get(second, f"/workflows/{workflow_id}/executions").content
    )


def test_different_seed_gives_different_data(simulator_factory: MakeSimulator) -> None:
    first, second = simulator_factory(seed=7), simulator_factory(seed=8)
    assert not set(first.execution_ids) & set(second.execution_ids)
    assert first.workflow_ids != second.workflow_ids
    first_inputs = [first.execution(i)["inputs"] for i in first.execution_ids[:20]]
    second_inputs = [second.execution(i)["inputs"] for i in second.execution_ids[:20]]
    assert first_inputs != second_inputs


def test_a_large_instance_has_unique_ids_and_serves_its_last_execution() -> None:
    """How long 100,000 executions take to build is measured by `make bench` (section 7)."""
    sim = Simulator(SimulatorConfig(executions=100_000))
    assert len(sim.execution_ids) == 100_000
    assert len(set(sim.execution_ids)) == 100_000
    last = sim.execution(sim.execution_ids[-1])
    assert last["execution_id"] == sim.execution_ids[-1]


# --- hand-made executions ----------------------------------------------------------------


def test_put_execution_is_served_verbatim_and_can_be_replaced(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory(executions=0)
    assert sim.execution_ids == []
    payload = {
        "execution_id": "hand-1",
        "workflow_id": "wf-x",
        "status": "completed",
        "inputs": {"prompt": "café ☕ 日本語"},
        "step_outputs": {},
        "output": "done",
        "an_unknown_field": [1, None, {"x": True}],
    }
    sim.put_execution(payload)
    first = get(sim, "/executions/hand-1", timeout=1)
    assert first.status_code == 200
    assert first.content == json.dumps(payload, ensure_ascii=False).encode()

    sim.put_execution({**payload, "output": "changed"})
    assert get(sim, "/executions/hand-1", timeout=1).json()["output"] == "changed"

    sim.remove_execution("hand-1")
    assert get(sim, "/executions/hand-1", timeout=1).status_code == 404
    for unknown in ("hand-1", "never-existed"):
        with pytest.raises(KeyError):
            sim.remove_execution(unknown)


def test_hand_made_running_payload_does_not_progress(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(executions=0)
    sim.put_execution({"execution_id": "hand-run", "workflow_id": "wf", "status": "running"})
    sim.advance(ONE_DAY_S)
    assert get(sim, "/executions/hand-run", timeout=1).json()["status"] == "running"
    assert long_polls(sim) == ["timeout"]  # still running when its 1 s long-poll ran out


def test_put_execution_overrides_and_remove_hides_a_generated_one(simulator: Simulator) -> None:
    execution_id = simulator.execution_ids[0]
    workflow_id = simulator.execution(execution_id)["workflow_id"]
    total = list_page(simulator, workflow_id)["total_count"]
    simulator.put_execution({"execution_id": execution_id, "workflow_id": workflow_id})
    assert get(simulator, f"/executions/{execution_id}", timeout=1).json() == {
        "execution_id": execution_id,
        "workflow_id": workflow_id,
    }
    assert list_page(simulator, workflow_id)["total_count"] == total
    simulator.remove_execution(execution_id)
    assert get(simulator, f"/executions/{execution_id}", timeout=1).status_code == 404
    assert list_page(simulator, workflow_id)["total_count"] == total - 1


def test_stop_closes_the_port_and_open_keep_alive_connections(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory()
    url = f"{sim.base_url}/executions/{sim.execution_ids[0]}"
    with requests.Session() as session:
        session.headers["X-API-Key"] = sim.api_key
        assert session.get(url, params={"timeout": 1}, timeout=5).status_code == 200
        sim.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, params={"timeout": 1}, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_put_execution_needs_an_execution_id(simulator: Simulator) -> None:
    with pytest.raises(ValueError):
        simulator.put_execution({"status": "completed"})


# --- faults ------------------------------------------------------------------------------


def test_latency_delays_every_answer(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(faults=FaultConfig(latency_ms=300, jitter_ms=100))
    for execution_id in sim.execution_ids[:3]:
        started = time.monotonic()
        assert get(sim, f"/executions/{execution_id}", timeout=1).status_code in (200,)
        # Lower bounds only: a busy machine makes a request slower, never faster.
        assert time.monotonic() - started >= 0.29
    assert all(record.duration_s >= 0.29 for record in sim.request_log)


def test_rate_limit_every_nth_request_answers_429_with_retry_after(
    simulator_factory: MakeSimulator,
) -> None:
    sim = simulator_factory(faults=FaultConfig(rate_limit_every=3, retry_after_s=2))
    responses = [get(sim, f"/executions/{sim.execution_ids[0]}", timeout=1) for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200, 429]
    assert responses[2].headers["Retry-After"] == "2"
    assert responses[2].json() == {"error": "rate limit exceeded"}
    assert [r.fault for r in sim.request_log] == [None, None, "rate_limit"] * 2


def test_token_bucket_rate_limit(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(faults=FaultConfig(rate_limit_per_s=0.2, rate_limit_burst=1))
    statuses = []
    for _ in range(4):
        response = get(sim, f"/executions/{sim.execution_ids[0]}", timeout=1)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    assert statuses[0] == 200
    assert 429 in statuses[1:]


def test_error_rate_answers_transient_5xx_deterministically(
    simulator_factory: MakeSimulator,
) -> None:
    def statuses(sim: Simulator) -> list[int]:
        return [
            get(sim, f"/executions/{i}", timeout=1).status_code for i in sim.execution_ids[:150]
        ]

    first = statuses(simulator_factory(faults=FaultConfig(error_rate=0.3), running_share=0.0))
    second = statuses(simulator_factory(faults=FaultConfig(error_rate=0.3), running_share=0.0))
    assert first == second
    errors = [s for s in first if s != 200]
    assert set(errors) == {500, 502, 503}
    assert 0.15 <= len(errors) / len(first) <= 0.45


def test_dropped_connection_raises_connection_error(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(faults=FaultConfig(drop_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        get(sim, f"/executions/{sim.execution_ids[0]}", timeout=1)
    record = sim.request_log[-1]
    assert (record.status, record.fault) == (0, "drop")


def test_malformed_body_fails_json_parsing(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(faults=FaultConfig(malformed_rate=1.0), running_share=0.0)
    for execution_id in sim.execution_ids[:10]:
        response = get(sim, f"/executions/{execution_id}", timeout=1)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content)
        with pytest.raises(ValueError):
            json.loads(response.content)
    assert {r.fault for r in sim.request_log} == {"malformed"}


def test_slow_body_sends_headers_then_dribbles_the_body(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(faults=FaultConfig(slow_body_ms=800), running_share=0.0)
    started = time.monotonic()
    response = requests.get(
        f"{sim.base_url}/executions/{sim.execution_ids[0]}",
        headers={"X-API-Key": sim.api_key},
        stream=True,
        timeout=5,
    )
    headers_after = time.monotonic() - started
    body = response.content
    total = time.monotonic() - started
    assert response.status_code == 200
    assert json.loads(body)["execution_id"] == sim.execution_ids[0]
    assert total - headers_after >= 0.6
    assert total <= 6.0


def test_fail_ids_script_exact_fates_then_answers_normally(
    simulator_factory: MakeSimulator,
) -> None:
    script = [503, 429, "drop", "malformed", 500]
    target, other = Dataset(seed=42, executions=2).execution_ids
    sim = simulator_factory(running_share=0.0, faults=FaultConfig(fail_ids={target: script}))
    path = f"/executions/{target}"

    assert get(sim, path, timeout=1).status_code == 503
    rate_limited = get(sim, path, timeout=1)
    assert rate_limited.status_code == 429 and rate_limited.headers["Retry-After"] == "1"
    with pytest.raises(requests.ConnectionError):
        get(sim, path, timeout=1)
    with pytest.raises(ValueError):
        get(sim, path, timeout=1).json()
    assert get(sim, f"/executions/{other}", timeout=1).status_code == 200
    assert get(sim, path, timeout=1).status_code == 500
    assert get(sim, path, timeout=1).json()["execution_id"] == target
    assert [r.status for r in sim.request_log] == [503, 429, 0, 200, 200, 500, 200]


def test_faults_never_mask_a_missing_key(simulator_factory: MakeSimulator) -> None:
    sim = simulator_factory(faults=FaultConfig(error_rate=1.0, drop_rate=1.0))
    response = get(sim, f"/executions/{sim.execution_ids[0]}", api_key=None)
    assert response.status_code == 401


def test_fault_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FaultConfig(error_rate=1.5)
    with pytest.raises(ValueError):
        FaultConfig(fail_ids={"x": ["explode"]})


# --- request log -------------------------------------------------------------------------


def test_request_log_records_requests_but_never_the_key(simulator: Simulator) -> None:
    execution_id = simulator.execution_ids[0]
    get(simulator, f"/executions/{execution_id}", timeout=3)
    get(simulator, f"/executions/{execution_id}", api_key="secret-guess")
    log = simulator.request_log
    assert log[0] == RequestRecord(
        "GET", f"/api/v1/executions/{execution_id}", {"timeout": "3"}, 200, True,
        None, log[0].duration_s, "at_once",
    )  # fmt: skip
    assert (log[1].status, log[1].has_api_key) == (401, True)
    assert simulator.api_key not in repr(log) and "secret-guess" not in repr(log)
    assert simulator.api_key not in repr(simulator)
    simulator.clear_request_log()
    assert simulator.request_log == []


def test_request_log_is_complete_under_concurrency(simulator: Simulator) -> None:
    done = [i for i in simulator.execution_ids if simulator.execution(i)["status"] != "running"]

    def fetch_ten(n: int) -> None:
        with requests.Session() as session:
            session.headers["X-API-Key"] = simulator.api_key
            for k in range(10):
                execution_id = done[(n * 10 + k) % len(done)]
                session.get(f"{simulator.base_url}/executions/{execution_id}", timeout=5)

    threads = [threading.Thread(target=fetch_ten, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = simulator.request_log
    assert len(log) == 320
    assert Counter(record.status for record in log) == {200: 320}


# --- command line ------------------------------------------------------------------------


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


def test_help_documents_every_option() -> None:
    result = subprocess.run(
        cli("simulator", "--help"), capture_output=True, text=True, timeout=60, check=True
    )
    for option in (
        "--host", "--port", "--api-key", "--executions", "--seed", "--running-share",
        "--time-scale", "--no-long-poll", "--ids-out", "--latency-ms", "--jitter-ms",
        "--rate-limit", "--rate-limit-burst", "--rate-limit-every", "--retry-after",
        "--error-rate", "--drop-rate", "--malformed-rate", "--slow-body-ms",
        "--slow-body-rate", "--list-order", "--list-insert-per-page", "--fault-seed",
    ):  # fmt: skip
        assert option in result.stdout


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_prints_url_and_key_and_stops_cleanly(tmp_path: Any, stop_signal: int) -> None:
    ids_file = tmp_path / "ids.txt"
    process = subprocess.Popen(
        cli("simulator", "--port", "0", "--executions", "30", "--ids-out", str(ids_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url_line = process.stdout.readline()
        key_line = process.stdout.readline()
        base_url = url_line.rsplit(" ", 1)[-1].strip()
        api_key = key_line.split(":", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v1")
        ids = ids_file.read_text().split()
        assert len(ids) == 30
        response = requests.get(
            f"{base_url}/executions/{ids[0]}?timeout=1", headers={"X-API-Key": api_key}, timeout=5
        )
        assert response.json()["execution_id"] == ids[0]
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "Simulator stopped." in stdout


def test_cli_never_prints_a_given_key() -> None:
    process = subprocess.Popen(
        cli("simulator", "--port", "0", "--executions", "5", "--api-key", "my-own-secret"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(2)]
        base_url = lines[0].rsplit(" ", 1)[-1].strip()
        response = requests.get(
            f"{base_url}/workflows/x/executions", headers={"X-API-Key": "my-own-secret"}, timeout=5
        )
        assert response.status_code == 404
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "my-own-secret" not in "".join(lines) + stdout + stderr

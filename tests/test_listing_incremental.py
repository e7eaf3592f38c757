"""`load --workflow` run after run: the listing's marks, stopping early only when the pages
come newest-first, and fetching details only for what changed.

Every test goes through the real CLI, a real simulator over HTTP and a real DuckDB file, and
counts requests in the simulator's request log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from listing_helpers import (
    WF,
    detail_requests,
    hand_made,
    list_requests,
    load,
    minute,
    put_executions,
)
from payloads import one_step_execution
from workspace import Workspace

from pipelines.simulator import Simulator


def test_pages_out_of_order_are_listed_fully_with_one_log_line(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0, faults={"list_order": "shuffled"})
    put_executions(simulator, 250)
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    simulator.clear_request_log()

    result = workspace.load(simulator, extra=["--workflow", WF])  # not quiet: the log line

    assert result.returncode == 0, result.stderr
    assert len(list_requests(simulator)) == 3  # every page, though a mark exists
    assert detail_requests(simulator) == []
    lines = [line for line in result.stderr.splitlines() if "not newest-first" in line]
    assert len(lines) == 1, result.stderr
    assert f"workflow {WF}" in lines[0] and "listing it fully" in lines[0]


def test_second_run_over_an_unchanged_10000_execution_workflow_lists_two_pages_only(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=47_000, running_share=0.0)
    workflow_id = simulator.workflow_ids[0]
    size = len(simulator.app.dataset.listing(0))
    assert size >= 10_000
    # One hand-made execution at the top of the same list, to change later.
    changing = one_step_execution("changing", workflow_id=workflow_id)
    stamp = "2026-03-02T06:00:00Z"  # after every generated execution (start: 2026-03-02 06:00)
    simulator.put_execution(changing, {"created_at": stamp, "updated_at": stamp})

    first = load(workspace, simulator, "--workflow", workflow_id)
    assert first.returncode == 0, first.stderr
    assert len(detail_requests(simulator)) == size + 1

    simulator.clear_request_log()
    second = load(workspace, simulator, "--workflow", workflow_id)
    assert second.returncode == 0, second.stderr
    assert len(list_requests(simulator)) <= 2
    assert detail_requests(simulator) == []
    listed = int(second.stdout.split("listed ")[1].split(" executions")[0])
    assert listed < size / 10  # the first pages only
    assert f"requested {listed}, loaded 0, skipped as already final {listed}," in second.stdout

    # Its summary says it changed: exactly that one execution is fetched again.
    simulator.put_execution(changing, {"created_at": stamp, "updated_at": "2026-03-02T06:30:00Z"})
    simulator.clear_request_log()
    third = load(workspace, simulator, "--workflow", workflow_id)
    assert third.returncode == 0, third.stderr
    assert len(list_requests(simulator)) <= 2
    assert detail_requests(simulator) == ["changing"]
    assert workspace.query(
        "select updated_at::varchar from eachlabs.executions where execution_id = 'changing'"
    ) == [("2026-03-02 06:30:00+00",)]


def test_full_listing_reads_every_page_but_fetches_nothing_unchanged(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    put_executions(simulator, 250)
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    simulator.clear_request_log()

    result = load(workspace, simulator, "--workflow", WF, "--full-listing")

    assert result.returncode == 0, result.stderr
    assert len(list_requests(simulator)) == 3
    assert detail_requests(simulator) == []
    assert "skipped as already final 250" in result.stdout


def test_running_executions_are_fetched_again_and_hold_the_mark_back(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    ids = put_executions(simulator, 5)
    running = one_step_execution("still-running", workflow_id=WF, status="running",
                                 started_at=minute(1), completed_at=None)  # fmt: skip
    simulator.put_execution(running, {"created_at": minute(1), "updated_at": minute(1)})

    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    mark = workspace.query("select created_at_mark::varchar from eachlabs.listing_marks")
    assert mark == [("2026-01-01 00:01:00+00",)]  # the running one's, not the newest (00:04)

    simulator.clear_request_log()
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert detail_requests(simulator) == ["still-running"]

    # Once it has finished, it is fetched once more, and the mark moves to the newest.
    finished = {**running, "status": "completed", "completed_at": minute(30)}
    simulator.put_execution(finished, {"created_at": minute(1), "updated_at": minute(30)})
    for n in (4, 3, 2, 0):  # ...and put back on top of the list, newest first
        simulator.put_execution(*hand_made(simulator, ids[n]))
    simulator.clear_request_log()
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert detail_requests(simulator) == ["still-running"]
    mark = workspace.query("select created_at_mark::varchar from eachlabs.listing_marks")
    assert mark == [("2026-01-01 00:04:00+00",)]
    simulator.clear_request_log()
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert detail_requests(simulator) == []


def test_a_created_at_in_the_future_cannot_hide_later_executions(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    put_executions(simulator, 5)
    future = one_step_execution("from-2099", workflow_id=WF)
    future_summary = {"created_at": "2099-01-01T00:00:00Z", "updated_at": "2099-01-01T00:00:00Z"}
    simulator.put_execution(future, future_summary)
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    [(mark,)] = workspace.query("select created_at_mark from eachlabs.listing_marks")
    assert mark <= datetime.now(UTC)  # not 2099

    # Executions created after that run, listed newest first (the 2099 one still on top).
    now = datetime.now(UTC)
    new = []
    for n in range(250):
        created = (now + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        execution_id = f"new-{n:03d}"
        simulator.put_execution(
            one_step_execution(execution_id, workflow_id=WF),
            {"created_at": created, "updated_at": created},
        )
        new.append(execution_id)
    simulator.put_execution(future, future_summary)
    simulator.clear_request_log()

    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert sorted(detail_requests(simulator)) == new


def test_a_summary_without_updated_at_is_not_fetched_again_every_run(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    for n in range(5):
        simulator.put_execution(
            one_step_execution(f"u-{n}", workflow_id=WF, started_at=minute(n)),
            {"created_at": minute(n), "updated_at": None if n % 2 else "not a timestamp"},
        )
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert len(detail_requests(simulator)) == 5
    simulator.clear_request_log()

    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert detail_requests(simulator) == []


def test_a_bulk_listing_keeps_a_mark_of_its_own(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=400, running_share=0.0)
    plans = [simulator.app.dataset.plan(i) for i in range(400)]
    bulk = next(p for p in plans if p.bulk_id is not None)

    assert load(workspace, simulator, "--workflow", bulk.workflow_id).returncode == 0
    whole = workspace.query("select bulk_id, created_at_mark from eachlabs.listing_marks")
    simulator.clear_request_log()
    result = load(workspace, simulator, "--workflow", bulk.workflow_id, "--bulk-id", bulk.bulk_id)

    assert result.returncode == 0, result.stderr
    assert detail_requests(simulator) == []  # all stored by the whole listing
    marks = workspace.query(
        "select bulk_id, created_at_mark from eachlabs.listing_marks order by bulk_id"
    )
    assert marks[0] == whole[0] and marks[0][0] == ""
    assert [row[0] for row in marks] == ["", bulk.bulk_id]

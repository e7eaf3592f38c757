"""`load --workflow`: paging the list endpoint, incremental listing, details only for what is
new or changed, the summary columns, and the listing's failures.

Every test goes through the real CLI, a real simulator over HTTP and a real DuckDB file, and
counts requests in the simulator's request log.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest
from payloads import one_step_execution
from workspace import Workspace

from pipelines.simulator import Simulator

WF = "wf-paging"
#: The hand-made executions' clock: execution n starts n minutes after this.
START = "2026-01-01T00:00:00Z"


def list_requests(simulator: Simulator) -> list[dict[str, str]]:
    return [r.query for r in simulator.request_log if "/workflows/" in r.path]


def detail_requests(simulator: Simulator) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in simulator.request_log if "/executions/" in r.path
            and "/workflows/" not in r.path]  # fmt: skip


def minute(n: int) -> str:
    return f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00Z"


def put_executions(
    simulator: Simulator, count: int, workflow_id: str = WF, prefix: str = "x"
) -> list[str]:
    """`count` finished one-step executions of `workflow_id`, put oldest first (so the list,
    newest put first, is newest-first by created_at). Returns their IDs, oldest first."""
    ids = []
    for n in range(count):
        execution_id = f"{prefix}-{n:04d}"
        started = minute(n % 1440)
        payload = one_step_execution(
            execution_id, workflow_id=workflow_id, started_at=started, completed_at=started
        )
        simulator.put_execution(payload, {"created_at": started, "updated_at": started})
        ids.append(execution_id)
    return ids


def load(ws: Workspace, simulator: Simulator, *args: str) -> Any:
    return ws.load(simulator, extra=[*args, "--quiet"])


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 250])
def test_pages_until_offset_is_null(
    workspace: Workspace, simulator_factory: Callable[..., Simulator], count: int
) -> None:
    simulator = simulator_factory(executions=0)
    ids = put_executions(simulator, count)
    # A workflow the API knows without executions: the generated catalogue's first one.
    workflow_id = WF if count else simulator.workflow_ids[0]

    result = load(workspace, simulator, "--workflow", workflow_id)

    assert result.returncode == 0, result.stderr
    pages = list_requests(simulator)
    assert pages == [
        {"offset": str(offset), "limit": "100"} for offset in range(0, max(count, 1), 100)
    ]
    assert len(pages) == max(1, math.ceil(count / 100))
    assert sorted(detail_requests(simulator)) == ids
    stored = workspace.query("select execution_id from eachlabs.executions order by 1")
    assert [row[0] for row in stored] == ids
    assert f"listed {count} executions of 1 workflows in {len(pages)} pages" in result.stdout


def test_bulk_filter_lists_only_that_bulk_operation(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=400)
    plans = [simulator.app.dataset.plan(i) for i in range(400)]
    bulk_id = next(p.bulk_id for p in plans if p.bulk_id is not None)
    members = sorted(p.execution_id for p in plans if p.bulk_id == bulk_id)
    workflow_id = next(p.workflow_id for p in plans if p.bulk_id == bulk_id)

    result = load(workspace, simulator, "--workflow", workflow_id, "--bulk-id", bulk_id)

    assert result.returncode == 0, result.stderr
    assert list_requests(simulator) == [{"offset": "0", "limit": "100", "bulk_id": bulk_id}]
    stored = workspace.query("select execution_id, bulk_id from eachlabs.executions order by 1")
    assert stored == [(execution_id, bulk_id) for execution_id in members]
    marks = workspace.query("select workflow_id, bulk_id from eachlabs.listing_marks")
    assert marks == [(workflow_id, bulk_id)]


def test_an_execution_inserted_between_pages_shifts_them_and_nothing_is_skipped(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0, faults={"list_insert_per_page": 1})
    ids = put_executions(simulator, 250)

    result = load(workspace, simulator, "--workflow", WF)

    assert result.returncode == 0, result.stderr
    # Three pages, each followed by a new execution at the top: pages 2 and 3 start one
    # further down than they would, so the last execution of pages 1 and 2 is listed twice.
    assert len(list_requests(simulator)) == 3
    fetched = detail_requests(simulator)
    assert sorted(fetched) == ids  # each once, none skipped
    stored = "select count(*), count(distinct execution_id) from eachlabs.executions"
    assert workspace.query(stored) == [(250, 250)]
    assert "listed 250 executions" in result.stdout

    # The executions created while it paged are newer than the mark: the next run finds them.
    inserted = simulator.app.inserted_execution_ids
    assert len(inserted) == 3
    simulator.clear_request_log()
    again = load(workspace, simulator, "--workflow", WF)
    assert again.returncode == 0, again.stderr
    assert set(inserted) <= set(detail_requests(simulator))
    assert set(detail_requests(simulator)).isdisjoint(ids)


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


def test_an_unknown_workflow_is_a_fetch_error_and_the_others_still_load(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    ids = put_executions(simulator, 3)

    result = load(workspace, simulator, "--workflow", "wf-unknown", "--workflow", WF)

    assert result.returncode == 2, result.stderr
    errors = workspace.query(
        "select execution_id, workflow_id, http_status, attempts from eachlabs.fetch_errors"
    )
    assert errors == [(None, "wf-unknown", 404, 1)]
    assert "workflow wf-unknown: [404]" in result.stderr
    stored = workspace.query("select execution_id from eachlabs.executions order by 1")
    assert [row[0] for row in stored] == ids
    marks = workspace.query("select workflow_id from eachlabs.listing_marks")
    assert marks == [(WF,)]  # no mark for a listing that failed


def test_an_unsafe_workflow_id_is_never_sent(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)

    result = load(workspace, simulator, "--workflow", "wf-1", "--workflow", "../executions/x")

    assert result.returncode == 1
    assert result.stderr.startswith("eachlabs-pipeline: invalid workflow id '../executions/x'")
    assert simulator.request_log == []
    assert not workspace.db_path.exists()


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
        simulator.put_execution(*_hand_made(simulator, ids[n]))
    simulator.clear_request_log()
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert detail_requests(simulator) == ["still-running"]
    mark = workspace.query("select created_at_mark::varchar from eachlabs.listing_marks")
    assert mark == [("2026-01-01 00:04:00+00",)]
    simulator.clear_request_log()
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    assert detail_requests(simulator) == []


def _hand_made(simulator: Simulator, execution_id: str) -> tuple[dict, dict]:
    """The payload and summary `put_executions` gave `execution_id` (n from its name)."""
    n = int(execution_id.rsplit("-", 1)[1])
    started = minute(n % 1440)
    payload = one_step_execution(
        execution_id, workflow_id=WF, started_at=started, completed_at=started
    )
    return payload, {"created_at": started, "updated_at": started}


def test_summary_columns_cost_total_and_the_hashed_api_key(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    api_key_field = "sk-live-DISTINCTIVE-4242"
    summaries: dict[str, dict[str, Any]] = {
        "number": {"cost": 0.25, "api_key": api_key_field},
        "total": {"cost": {"total": 1.5, "amount": 9, "currency": "USD"}},
        "usd": {"cost": {"usd": 2}},
        "unknown": {"cost": {"credits": 12}},
        "missing": {"cost": None, "dry_run": True, "deleted_at": "2026-01-03T00:00:00Z"},
        "text": {"cost": "0.5"},
    }
    for n, (execution_id, summary) in enumerate(summaries.items()):
        started = minute(n)
        simulator.put_execution(
            one_step_execution(execution_id, workflow_id=WF, started_at=started),
            {"flow_name": "Paging flow", "version_id": "v3", "created_at": started,
             "updated_at": started, **summary},
        )  # fmt: skip

    assert load(workspace, simulator, "--workflow", WF).returncode == 0

    rows = workspace.query(
        "select execution_id, flow_name, version_id, cost::varchar, cost_total, dry_run, "
        "deleted_at::varchar, triggered_by from eachlabs.executions order by created_at"
    )
    digest = hashlib.sha256(api_key_field.encode()).hexdigest()[:16]
    assert rows == [
        ("number", "Paging flow", "v3", "0.25", 0.25, False, None, digest),
        ("total", "Paging flow", "v3", '{"total":1.5,"amount":9,"currency":"USD"}', 1.5,
         False, None, None),
        ("usd", "Paging flow", "v3", '{"usd":2}', 2.0, False, None, None),
        ("unknown", "Paging flow", "v3", '{"credits":12}', None, False, None, None),
        ("missing", "Paging flow", "v3", None, None, True, "2026-01-03 00:00:00+00", None),
        ("text", "Paging flow", "v3", '"0.5"', None, False, None, None),
    ]  # fmt: skip
    # The api_key field is stored nowhere as sent.
    assert api_key_field.encode() not in workspace.db_path.read_bytes()
    steps = workspace.query(
        "select execution_id, execution_dry_run, execution_deleted_at is not null "
        "from eachlabs.step_outputs where execution_id = 'missing'"
    )
    assert steps == [("missing", True, True)]


def test_a_later_load_by_id_keeps_the_summary_columns(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    simulator = simulator_factory(executions=0)
    ids = ["k-0", "k-1", "k-2"]
    summaries = [
        {"cost": {"total": 0.5, "note": "café ☕"}, "api_key": "user-1", "version_id": "v2",
         "deleted_at": "2026-01-02T00:00:00Z", "dry_run": True},
        {"cost": 0.125, "flow_name": "Named"},
        {"cost": None, "updated_at": None},
    ]  # fmt: skip
    for n, (execution_id, summary) in enumerate(zip(ids, summaries, strict=True)):
        started = minute(n)
        simulator.put_execution(
            one_step_execution(execution_id, workflow_id=WF, started_at=started),
            {"created_at": started, "updated_at": started, **summary},
        )
    assert load(workspace, simulator, "--workflow", WF).returncode == 0
    columns = "flow_name, version_id, created_at, updated_at, deleted_at, dry_run, "
    columns += "cost::varchar, cost_total, triggered_by"
    query = f"select execution_id, {columns}, fetched_at from eachlabs.executions order by 1"
    steps = (
        "select execution_id, execution_dry_run, execution_deleted_at "
        "from eachlabs.step_outputs order by 1"
    )
    before, steps_before = workspace.query(query), workspace.query(steps)
    assert before[0][7] == '{"total":0.5,"note":"café ☕"}' and before[0][9] is not None
    assert steps_before[0][1:] == (True, before[0][5])

    result = workspace.load(simulator, *ids, extra=["--refresh-all", "--quiet"])

    assert result.returncode == 0, result.stderr
    assert sorted(detail_requests(simulator)[-3:]) == ids  # fetched again, by ID
    after = workspace.query(query)
    assert [row[:-1] for row in after] == [row[:-1] for row in before]
    assert all(a[-1] > b[-1] for a, b in zip(after, before, strict=True))  # really rewritten
    assert workspace.query(steps) == steps_before


def test_listing_and_ids_give_the_same_rows_for_the_same_payloads(
    tmp_path: Any, simulator_factory: Callable[..., Simulator]
) -> None:
    from workspace import make_workspace

    simulator = simulator_factory(executions=300, running_share=0.1)
    workflow_id = simulator.workflow_ids[1]
    ids = [simulator.app.dataset.execution_ids[i] for i in simulator.app.dataset.listing(1)]
    by_id, listed = make_workspace(tmp_path / "ids"), make_workspace(tmp_path / "listed")

    assert by_id.load(simulator, *ids, extra=["--quiet"]).returncode == 0
    assert load(listed, simulator, "--workflow", workflow_id).returncode == 0

    for table, key in (("executions", "execution_id"),
                       ("step_outputs", "execution_id, step_id"),
                       ("step_params", "execution_id, step_id, param_name")):  # fmt: skip
        columns = [
            row[0]
            for row in by_id.query(
                "select column_name from information_schema.columns where table_schema = "
                "'eachlabs' and table_name = ? and column_name not like '\\_dlt%' escape '\\' "
                "and column_name not in ('fetched_at', 'execution_dry_run', "
                "'execution_deleted_at') order by ordinal_position",
                [table],
            )
        ]
        summary = {"flow_name", "version_id", "created_at", "updated_at", "deleted_at",
                   "dry_run", "cost", "cost_total", "triggered_by"}  # fmt: skip
        shared = ", ".join(c for c in columns if c not in summary)
        query = f"select {shared} from eachlabs.{table} order by {key}"
        assert by_id.query(query) == listed.query(query), table


def test_a_file_whose_fetch_errors_demand_an_execution_id_takes_a_workflow_row(
    workspace: Workspace, simulator_factory: Callable[..., Simulator]
) -> None:
    """Versions before `--workflow` created fetch_errors.execution_id NOT NULL."""
    simulator = simulator_factory(executions=0)
    ids = put_executions(simulator, 2)
    assert workspace.load(simulator, *ids, "missing", extra=["--quiet"]).returncode == 0
    with duckdb.connect(str(workspace.db_path)) as connection:
        connection.execute(
            "alter table eachlabs.fetch_errors alter column execution_id set not null"
        )

    result = load(workspace, simulator, "--workflow", "wf-unknown")

    assert result.returncode == 2, result.stderr
    errors = workspace.query("select execution_id, workflow_id from eachlabs.fetch_errors")
    assert errors == [(None, "wf-unknown")]


def test_ids_and_workflows_combine_each_execution_once_with_its_summary(
    workspace: Workspace, simulator_factory: Callable[..., Simulator], tmp_path: Any
) -> None:
    simulator = simulator_factory(executions=0)
    listed = put_executions(simulator, 3)
    other = one_step_execution("by-id-only", workflow_id="wf-other")
    simulator.put_execution(other)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{listed[0]}\nby-id-only\n{listed[0]}\n")

    result = workspace.load(
        simulator, listed[1], extra=["--ids-file", str(ids_file), "--workflow", WF, "--quiet"]
    )

    assert result.returncode == 0, result.stderr
    assert sorted(detail_requests(simulator)) == sorted([*listed, "by-id-only"])  # each once
    rows = workspace.query(
        "select execution_id, flow_name is not null from eachlabs.executions order by 1"
    )
    assert rows == [("by-id-only", False), *((i, True) for i in listed)]
    assert "requested 4, loaded 4" in result.stdout


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

"""`load --workflow`: paging the list endpoint, details only for what is new or changed, the
summary columns, and the listing's failures (incremental listing: test_listing_incremental.py).

Every test goes through the real CLI, a real simulator over HTTP and a real DuckDB file, and
counts requests in the simulator's request log.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import duckdb
import pytest
from listing_helpers import (
    WF,
    detail_requests,
    list_requests,
    load,
    minute,
    put_executions,
)
from payloads import one_step_execution
from workspace import Workspace

from pipelines.simulator import Simulator


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

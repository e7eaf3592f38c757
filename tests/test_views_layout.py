"""The columns the loader derives for the views, and files whose rows predate them.

The loader carries each execution's workflow, status, start and UTC day (and its dry-run flag
and soft-deletion time) on its step rows and derives the execution's latency and UTC day, so
that the views need no join and no time-zone conversion per row. Rows written before it did
have those columns null (dlt adds new columns as nullable); the base views then derive them
as they used to, with the same results.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from test_views import HONEST_SUMMARIES, honesty_payloads, scenario_payloads
from workspace import view_rows

from pipelines.views import discover_views

VIEWS = [view.name for view in discover_views()]
STEP_COLUMNS = ["workflow_id", "execution_status", "execution_started_at", "started_date"]
EXECUTION_COLUMNS = ["latency_seconds", "started_date"]
#: The execution's summary flags carried on step rows by the loader of issue #16.
CARRIED_FLAGS = ["execution_dry_run", "execution_deleted_at"]
#: The summary columns of `executions` the views read.
SUMMARY_COLUMNS = ["flow_name", "version_id", "created_at", "updated_at", "deleted_at"]
SUMMARY_COLUMNS += ["dry_run", "cost_total"]


def test_rows_written_without_the_derived_columns_give_the_same_views(
    load_payloads: Callable[..., Path], tmp_path: Path
) -> None:
    db = load_payloads(scenario_payloads())
    with duckdb.connect(str(db), read_only=True) as connection:
        steps, carried = connection.execute(
            "select count(*), count(*) filter (where execution_status is not null)"
            " from eachlabs.step_outputs"
        ).fetchall()[0]
    assert steps > 20 and carried == steps, "the loader carries the execution's columns"
    before = {view: view_rows(db, view) for view in VIEWS}
    assert all(before[view] for view in VIEWS)

    old = tmp_path / "old.duckdb"
    shutil.copy(db, old)
    with duckdb.connect(str(old)) as connection:
        # Every other row as an earlier version left it: the derived columns null.
        nulls = ", ".join(f"{column} = null" for column in STEP_COLUMNS)
        connection.execute(
            f"update eachlabs.step_outputs set {nulls} where step_position % 2 = 0"
            " or execution_id like 'odd%'"
        )
        nulls = ", ".join(f"{column} = null" for column in EXECUTION_COLUMNS)
        connection.execute(
            f"update eachlabs.executions set {nulls} where hash(execution_id) % 2 = 0"
        )
        uncarried, underived = connection.execute(
            "select (select count(*) from eachlabs.step_outputs where workflow_id is null),"
            " (select count(*) from eachlabs.executions where latency_seconds is null"
            "  and completed_at is not null)"
        ).fetchall()[0]
    assert uncarried > 10 and underived > 5
    after = {view: view_rows(old, view) for view in VIEWS}
    for view in VIEWS:
        assert after[view] == before[view], view


def test_rows_written_without_the_carried_flags_give_the_same_views(
    load_payloads: Callable[..., Path], tmp_path: Path
) -> None:
    """Step rows of dry runs and deleted executions written before the flags were carried
    take them from execution_runs: the reports still leave those steps out."""
    db = load_payloads(honesty_payloads(), summaries=HONEST_SUMMARIES)
    with duckdb.connect(str(db), read_only=True) as connection:
        flagged = connection.execute(
            "select count(*) from eachlabs.step_outputs"
            " where execution_dry_run or execution_deleted_at is not null"
        ).fetchone()[0]
    assert flagged == 5, "the loader carries the execution's summary flags"
    before = {view: view_rows(db, view) for view in VIEWS}

    old = tmp_path / "old.duckdb"
    shutil.copy(db, old)
    with duckdb.connect(str(old)) as connection:
        nulls = ", ".join(f"{column} = null" for column in STEP_COLUMNS + CARRIED_FLAGS)
        connection.execute(f"update eachlabs.step_outputs set {nulls}")
    after = {view: view_rows(old, view) for view in VIEWS}
    for view in VIEWS:
        assert after[view] == before[view], view


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("executions", EXECUTION_COLUMNS),
        ("executions", SUMMARY_COLUMNS),
        ("step_outputs", CARRIED_FLAGS),
    ],
)
def test_a_file_without_the_new_columns_gets_a_hint_to_load_once(
    load_payloads: Callable[..., Path], tmp_path: Path, table: str, columns: list[str]
) -> None:
    from pipelines.views import ViewApplyError, apply_views

    old = tmp_path / "old.duckdb"
    shutil.copy(load_payloads(scenario_payloads()[:3]), old)
    with duckdb.connect(str(old)) as connection:
        for column in columns:  # as an earlier version wrote the table
            connection.execute(f"alter table eachlabs.{table} drop column {column}")
        with pytest.raises(ViewApplyError, match=r"run `eachlabs-pipeline load` once"):
            apply_views(connection, "eachlabs")

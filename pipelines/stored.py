"""What a dataset already holds, as a load needs to know it: the final executions, the state
of listed ones, their summary columns, and each listing's high-water mark.

Written once for every destination against `targets.base.Db` (the dialect's own expressions
for epoch microseconds and arrays come from it). Every query names the dataset's schema and
treats a table or column that an older version did not create as empty. `listing_marks` is
the one table the loader writes itself (not through dlt): a row per listed (workflow, bulk),
written after the run's last chunk is committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.eachlabs import settings
from pipelines.eachlabs.tables import SUMMARY_TYPES, TIMESTAMP

if TYPE_CHECKING:
    from pipelines.targets.base import Db

#: The loader's own table of listing marks (see the module docstring).
MARKS_TABLE = "listing_marks"


@dataclass(frozen=True)
class StoredState:
    """An execution as stored: whether it needs no new fetch by ID, whether a listing stored
    its summary, and its `updated_at`."""

    is_final: bool  # a terminal status, and not among the latest run's fetch_errors
    updated_us: int | None
    was_listed: bool = False


def table_names(db: Db, dataset: str) -> set[str]:
    rows = db.rows(
        "select table_name from information_schema.tables"
        " where table_catalog = current_database() and table_schema = ?",
        [dataset],
    )
    return {row[0] for row in rows}


def column_nullability(db: Db, dataset: str, table: str) -> dict[str, str]:
    """Each column of `table` and whether it is nullable (`YES` / `NO`)."""
    rows = db.rows(
        "select column_name, is_nullable from information_schema.columns where table_catalog = "
        "current_database() and table_schema = ? and table_name = ?",
        [dataset, table],
    )
    return {row[0]: row[1] for row in rows}


def _terminal_list() -> str:
    return ", ".join(f"'{s}'" for s in sorted(settings.TERMINAL_STATUSES))


def _failing(db: Db, dataset: str, tables: set[str]) -> str:
    """SQL: whether `e.execution_id` failed in the latest run."""
    if "fetch_errors" not in tables:
        return "false"
    return (
        f'e.execution_id in (select execution_id from "{dataset}".fetch_errors '
        "where execution_id is not null)"
    )


def stored_states(db: Db, dataset: str, ids: Sequence[str]) -> dict[str, StoredState]:
    """The stored state of those of `ids` that are stored (one query, any number of IDs)."""
    tables = table_names(db, dataset)
    if not ids or "executions" not in tables:
        return {}
    has_summary = set(SUMMARY_TYPES) <= set(column_nullability(db, dataset, "executions"))
    updated = db.epoch_us("e.updated_at") if has_summary else "null"
    was_listed = (
        "(" + " or ".join(f"e.{name} is not null" for name in SUMMARY_TYPES) + ")"
        if has_summary
        else "false"
    )
    rows = db.rows(
        f"select e.execution_id, coalesce(e.status in ({_terminal_list()}), false) "
        f"and not {_failing(db, dataset, tables)}, {updated}, {was_listed} "
        f'from "{dataset}".executions e where e.execution_id in '
        f"(select unnest({db.text_array()}))",
        [list(ids)],
    )
    return {row[0]: StoredState(*row[1:]) for row in rows}


def stored_summaries(db: Db, dataset: str, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """The summary column values stored for those of `ids` that were ever listed, as
    `summaries.summary_values` gives them (timestamps in epoch microseconds): a load by ID
    carries them over instead of wiping them."""
    if not ids or "executions" not in table_names(db, dataset):
        return {}
    if not set(SUMMARY_TYPES) <= set(column_nullability(db, dataset, "executions")):
        return {}
    selected = ", ".join(
        db.epoch_us(name) if type_ == TIMESTAMP else f"cast({name} as varchar)"
        if name == "cost" else name
        for name, type_ in SUMMARY_TYPES.items()
    )  # fmt: skip
    listed = " or ".join(f"{name} is not null" for name in SUMMARY_TYPES)  # was listed
    rows = db.rows(
        f'select execution_id, {selected} from "{dataset}".executions '
        f"where execution_id in (select unnest({db.text_array()})) and ({listed})",
        [list(ids)],
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def listing_marks(db: Db, dataset: str) -> dict[tuple[str, str], int]:
    """Each listed (workflow_id, bulk_id or '') and its high-water mark of `created_at`
    (epoch microseconds)."""
    if MARKS_TABLE not in table_names(db, dataset):
        return {}
    rows = db.rows(
        f"select workflow_id, bulk_id, {db.epoch_us('created_at_mark')} "
        f'from "{dataset}".{MARKS_TABLE}'
    )
    return {(workflow_id, bulk_id): mark for workflow_id, bulk_id, mark in rows}


def store_listing_marks(
    db: Db, dataset: str, marks: Mapping[tuple[str, str], int], listed_at_us: int
) -> None:
    """Insert or update the marks of the given (workflow_id, bulk_id or ''), in one
    statement."""
    if not marks:
        return
    db.execute(f'create schema if not exists "{dataset}"')
    db.execute(
        f'create table if not exists "{dataset}".{MARKS_TABLE} ('
        "workflow_id varchar not null, bulk_id varchar not null, "
        "created_at_mark timestamptz not null, listed_at timestamptz not null, "
        "primary key (workflow_id, bulk_id))"
    )
    db.execute(
        f'insert into "{dataset}".{MARKS_TABLE} '
        f"select workflow_id, bulk_id, {db.from_epoch_us('mark')}, "
        f"{db.from_epoch_us('listed_at_us')} "
        f"from (select unnest({db.text_array()}) as workflow_id, "
        f"unnest({db.text_array()}) as bulk_id, unnest({db.bigint_array()}) as mark, "
        "cast(? as bigint) as listed_at_us) as given "
        "on conflict (workflow_id, bulk_id) do update set "
        "created_at_mark = excluded.created_at_mark, listed_at = excluded.listed_at",
        [
            [workflow_id for workflow_id, _ in marks],
            [bulk_id for _, bulk_id in marks],
            list(marks.values()),
            listed_at_us,
        ],
    )


def upgrade_tables(db: Db, dataset: str) -> None:
    """Bring tables an older version created up to what this one writes (idempotent).

    - `fetch_errors.execution_id` was NOT NULL; a row about a workflow's listing has none.
    (New columns need nothing: dlt adds them on the first load that carries them.)
    """
    if column_nullability(db, dataset, "fetch_errors").get("execution_id") == "NO":
        db.execute(f'alter table "{dataset}".fetch_errors alter column execution_id drop not null')


def unfinished_ids(db: Db, dataset: str, ids: Iterable[str]) -> set[str]:
    """Those of `ids` not stored with a final status (see `StoredState.is_final`)."""
    wanted = list(ids)
    states = stored_states(db, dataset, wanted)
    return {i for i in wanted if i not in states or not states[i].is_final}

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
    """An execution as stored: whether it needs no new fetch by ID, its `updated_at`, and the
    summary columns a listing stored for it (None if it was never listed)."""

    is_final: bool  # a terminal status, and not among the latest run's fetch_errors
    updated_us: int | None
    summary: tuple[Any, ...] | None = None

    @property
    def was_listed(self) -> bool:
        return self.summary is not None


@dataclass(frozen=True)
class Catalog:
    """The dataset's tables and their columns (name -> `YES` / `NO`: nullable), read in one
    query. A run reads it once before its first chunk and once after its last: in between
    only dlt changes the tables."""

    columns: Mapping[str, Mapping[str, str]]

    @property
    def tables(self) -> set[str]:
        return set(self.columns)

    def has_summary(self) -> bool:
        """`executions` has the summary columns (a version before listing lacked them)."""
        return set(SUMMARY_TYPES) <= set(self.columns.get("executions", {}))


def read_catalog(db: Db, dataset: str) -> Catalog:
    rows = db.rows(
        "select table_name, column_name, is_nullable from information_schema.columns"
        " where table_catalog = current_database() and table_schema = ?",
        [dataset],
    )
    columns: dict[str, dict[str, str]] = {}
    for table, column, nullable in rows:
        columns.setdefault(table, {})[column] = nullable
    return Catalog(columns)


def _terminal_list() -> str:
    return ", ".join(f"'{s}'" for s in sorted(settings.TERMINAL_STATUSES))


def _failing(dataset: str, tables: set[str]) -> str:
    """SQL: whether `e.execution_id` failed in the latest run."""
    if "fetch_errors" not in tables:
        return "false"
    return (
        f'e.execution_id in (select execution_id from "{dataset}".fetch_errors '
        "where execution_id is not null)"
    )


def stored_states(
    db: Db, dataset: str, ids: Sequence[str], catalog: Catalog | None = None
) -> dict[str, StoredState]:
    """The stored state of those of `ids` that are stored, with the summary columns of those
    ever listed (as `summaries.summary_values` gives them, timestamps in epoch microseconds:
    a load by ID carries them over instead of wiping them). One query, any number of IDs;
    `catalog` (default: read now) says which tables and columns exist."""
    if not ids:
        return {}
    catalog = catalog or read_catalog(db, dataset)
    if "executions" not in catalog.tables:
        return {}
    if catalog.has_summary():
        updated = db.epoch_us("e.updated_at")
        summary = ", ".join(
            db.epoch_us(f"e.{name}") if type_ == TIMESTAMP else f"cast(e.{name} as varchar)"
            if name == "cost" else f"e.{name}"
            for name, type_ in SUMMARY_TYPES.items()
        )  # fmt: skip
        was_listed = " or ".join(f"e.{name} is not null" for name in SUMMARY_TYPES)
    else:
        updated, summary, was_listed = "null", "null", "false"
    rows = db.rows(
        f"select e.execution_id, coalesce(e.status in ({_terminal_list()}), false) "
        f"and not {_failing(dataset, catalog.tables)}, {updated}, ({was_listed}), {summary} "
        f'from "{dataset}".executions e where e.execution_id in '
        f"(select unnest({db.text_array()}))",
        [list(ids)],
    )
    return {row[0]: StoredState(row[1], row[2], tuple(row[4:]) if row[3] else None) for row in rows}


def listing_marks(db: Db, dataset: str, catalog: Catalog) -> dict[tuple[str, str], int]:
    """Each listed (workflow_id, bulk_id or '') and its high-water mark of `created_at`
    (epoch microseconds)."""
    if MARKS_TABLE not in catalog.tables:
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
    errors = read_catalog(db, dataset).columns.get("fetch_errors", {})
    if errors.get("execution_id") == "NO":
        db.execute(f'alter table "{dataset}".fetch_errors alter column execution_id drop not null')


def unfinished_ids(db: Db, dataset: str, ids: Iterable[str], catalog: Catalog) -> set[str]:
    """Those of `ids` not stored with a final status (see `StoredState.is_final`)."""
    wanted = list(ids)
    states = stored_states(db, dataset, wanted, catalog)
    return {i for i in wanted if i not in states or not states[i].is_final}

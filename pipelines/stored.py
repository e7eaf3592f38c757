"""What a DuckDB dataset already holds, as a load needs to know it: the final executions, the
state of listed ones, their summary columns, and each listing's high-water mark.

Every query names the dataset's schema and treats a table or column that an older version did
not create as empty. `listing_marks` is the one table the loader writes itself (not through
dlt): a row per listed (workflow, bulk), written after the run's last chunk is committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from pipelines.eachlabs import settings
from pipelines.eachlabs.tables import SUMMARY_TYPES, TIMESTAMP

#: The loader's own table of listing marks (see the module docstring).
MARKS_TABLE = "listing_marks"


@dataclass(frozen=True)
class StoredState:
    """An execution as stored: whether it needs no new fetch by ID, whether a listing stored
    its summary, and its `updated_at`."""

    is_final: bool  # a terminal status, and not among the latest run's fetch_errors
    updated_us: int | None
    was_listed: bool = False


def _tables(connection: duckdb.DuckDBPyConnection, dataset: str) -> set[str]:
    rows = connection.execute(
        "select table_name from information_schema.tables"
        " where table_catalog = current_database() and table_schema = ?",
        [dataset],
    ).fetchall()
    return {row[0] for row in rows}


def _columns(connection: duckdb.DuckDBPyConnection, dataset: str, table: str) -> set[str]:
    rows = connection.execute(
        "select column_name from information_schema.columns where table_catalog = "
        "current_database() and table_schema = ? and table_name = ?",
        [dataset, table],
    ).fetchall()
    return {row[0] for row in rows}


def _terminal_list() -> str:
    return ", ".join(f"'{s}'" for s in sorted(settings.TERMINAL_STATUSES))


def stored_final_ids(connection: duckdb.DuckDBPyConnection, dataset: str) -> set[str]:
    """IDs already stored with a terminal status and not failing in the latest run."""
    tables = _tables(connection, dataset)
    if "executions" not in tables:
        return set()
    query = f'select execution_id from "{dataset}".executions where status in ({_terminal_list()})'
    if "fetch_errors" in tables:
        query += (
            f' except select execution_id from "{dataset}".fetch_errors'
            " where execution_id is not null"
        )
    return {row[0] for row in connection.execute(query).fetchall()}


def stored_states(
    connection: duckdb.DuckDBPyConnection, dataset: str, ids: Sequence[str]
) -> dict[str, StoredState]:
    """The stored state of those of `ids` that are stored (one query, any number of IDs)."""
    tables = _tables(connection, dataset)
    if not ids or "executions" not in tables:
        return {}
    has_summary = set(SUMMARY_TYPES) <= _columns(connection, dataset, "executions")
    updated = "epoch_us(e.updated_at)" if has_summary else "null"
    was_listed = (
        "(" + " or ".join(f"e.{name} is not null" for name in SUMMARY_TYPES) + ")"
        if has_summary
        else "false"
    )
    failing = (
        f'e.execution_id in (select execution_id from "{dataset}".fetch_errors '
        "where execution_id is not null)"
        if "fetch_errors" in tables
        else "false"
    )
    rows = connection.execute(
        f"select e.execution_id, coalesce(e.status in ({_terminal_list()}), false) "
        f"and not {failing}, {updated}, {was_listed} "
        f'from "{dataset}".executions e where e.execution_id in (select unnest(?::varchar[]))',
        [list(ids)],
    ).fetchall()
    return {row[0]: StoredState(*row[1:]) for row in rows}


def stored_summaries(
    connection: duckdb.DuckDBPyConnection, dataset: str, ids: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """The summary column values stored for those of `ids` that were ever listed, as
    `summaries.summary_values` gives them (timestamps in epoch microseconds): a load by ID
    carries them over instead of wiping them."""
    if not ids or "executions" not in _tables(connection, dataset):
        return {}
    present = _columns(connection, dataset, "executions")
    if not set(SUMMARY_TYPES) <= present:
        return {}
    selected = ", ".join(
        f"epoch_us({name})" if type_ == TIMESTAMP else f"{name}::varchar" if name == "cost"
        else name
        for name, type_ in SUMMARY_TYPES.items()
    )  # fmt: skip
    listed = " or ".join(f"{name} is not null" for name in SUMMARY_TYPES)  # was_listed
    rows = connection.execute(
        f'select execution_id, {selected} from "{dataset}".executions '
        f"where execution_id in (select unnest(?::varchar[])) and ({listed})",
        [list(ids)],
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def listing_marks(
    connection: duckdb.DuckDBPyConnection, dataset: str
) -> dict[tuple[str, str], int]:
    """Each listed (workflow_id, bulk_id or '') and its high-water mark of `created_at`
    (epoch microseconds)."""
    if MARKS_TABLE not in _tables(connection, dataset):
        return {}
    rows = connection.execute(
        f'select workflow_id, bulk_id, epoch_us(created_at_mark) from "{dataset}".{MARKS_TABLE}'
    ).fetchall()
    return {(workflow_id, bulk_id): mark for workflow_id, bulk_id, mark in rows}


def store_listing_marks(
    connection: duckdb.DuckDBPyConnection,
    dataset: str,
    marks: Mapping[tuple[str, str], int],
    listed_at_us: int,
) -> None:
    """Insert or update the marks of the given (workflow_id, bulk_id or ''), in one
    transaction."""
    if not marks:
        return
    connection.execute(f'create schema if not exists "{dataset}"')
    connection.execute(
        f'create table if not exists "{dataset}".{MARKS_TABLE} ('
        "workflow_id varchar not null, bulk_id varchar not null, "
        "created_at_mark timestamptz not null, listed_at timestamptz not null, "
        "primary key (workflow_id, bulk_id))"
    )
    connection.execute(
        f'insert into "{dataset}".{MARKS_TABLE} '
        "select workflow_id, bulk_id, make_timestamptz(mark), make_timestamptz(?) "
        "from (select unnest(?::varchar[]) as workflow_id, unnest(?::varchar[]) as bulk_id, "
        "unnest(?::bigint[]) as mark) "
        "on conflict (workflow_id, bulk_id) do update set "
        "created_at_mark = excluded.created_at_mark, listed_at = excluded.listed_at",
        [
            listed_at_us,
            [workflow_id for workflow_id, _ in marks],
            [bulk_id for _, bulk_id in marks],
            list(marks.values()),
        ],
    )


def upgrade_tables(connection: duckdb.DuckDBPyConnection, dataset: str) -> None:
    """Bring tables an older version created up to what this one writes (idempotent).

    - `fetch_errors.execution_id` was NOT NULL; a row about a workflow's listing has none.
    (New columns need nothing: dlt adds them on the first load that carries them.)
    """
    found = connection.execute(
        "select is_nullable from information_schema.columns where table_catalog = "
        "current_database() and table_schema = ? and table_name = 'fetch_errors' "
        "and column_name = 'execution_id'",
        [dataset],
    ).fetchone()
    if found is not None and found[0] == "NO":
        connection.execute(
            f'alter table "{dataset}".fetch_errors alter column execution_id drop not null'
        )


def unfinished_ids(
    connection: duckdb.DuckDBPyConnection, dataset: str, ids: Iterable[str]
) -> set[str]:
    """Those of `ids` not stored with a final status (see `StoredState.is_final`)."""
    wanted = list(ids)
    states = stored_states(connection, dataset, wanted)
    return {i for i in wanted if i not in states or not states[i].is_final}

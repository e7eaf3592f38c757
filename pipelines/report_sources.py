"""Where a report reads the views: a DuckDB file opened read-only, or a PostgreSQL schema in one
read-only transaction, each giving pandas DataFrames alike (see `pipelines.report`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines.eachlabs.errors import ConfigError
from pipelines.targets import DESTINATIONS

#: The views a report reads; a file without one of them was loaded before it existed.
REPORT_VIEWS = (
    "execution_runs",
    "step_runs",
    "model_daily_performance",
    "model_error_causes",
    "model_failure_rates",
    "model_recent_changes",
    "step_latency_by_model",
    "step_latency_by_model_version",
    "workflow_performance",
    "workflow_cost_daily",
    "workflow_version_cost",
)


@dataclass(frozen=True)
class _Views:
    """An open, read-only connection to the views: `frame(sql)` runs a query (the dataset's
    schema already in it) and returns its DataFrame; `where` and `flags` name the source in
    messages."""

    frame: Callable[[str], pd.DataFrame]
    where: str
    flags: str


@contextmanager
def _duckdb_views(db_path: Path | str) -> Iterator[_Views]:
    """The DuckDB file, opened read-only; closed on exit."""
    path = Path(db_path)
    if not path.is_file():
        raise ConfigError(
            f"no DuckDB file at {path}: run `make demo` or `eachlabs-pipeline load --db {path}` "
            "first"
        )
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"cannot open {path} read-only ({first_line}); if a load is writing to it, "
            "try again when it has finished"
        ) from None
    try:
        # Timestamps come out in UTC whatever the machine's time zone, as from PostgreSQL.
        connection.execute("set TimeZone = 'UTC'")
        yield _Views(lambda sql: connection.execute(sql).df(), str(path), f"--db {path}")
    finally:
        connection.close()


#: How a report's PostgreSQL session reads: every query of one report in one read-only
#: transaction (the same snapshot, as a DuckDB file opened read-only gives), times in UTC.
POSTGRES_SESSION_SQL = (
    "set session characteristics as transaction isolation level repeatable read, read only",
    "set timezone = 'UTC'",
    "set application_name = 'eachlabs-pipeline report'",
)

#: The Arrow type of each PostgreSQL type the views return (by type OID), so that a
#: PostgreSQL column becomes the DataFrame column DuckDB makes of the same SQL type.
_ARROW_TYPES = {
    16: pa.bool_(),  # boolean
    20: pa.int64(),  # bigint
    21: pa.int16(),  # smallint
    23: pa.int32(),  # integer
    700: pa.float32(),  # real
    701: pa.float64(),  # double precision
    1700: pa.float64(),  # numeric: a double, as DuckDB gives its decimals to pandas
    19: pa.string(),  # name
    25: pa.string(),  # text
    1042: pa.string(),  # char(n)
    1043: pa.string(),  # varchar
    114: pa.string(),  # json: its text, as DuckDB gives JSON
    3802: pa.string(),  # jsonb: its text (PostgreSQL's spelling of it)
    1082: pa.date32(),  # date
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz (the session is in UTC)
}
_NUMERIC_OID = 1700


def _postgres_frame(
    connection: Any, converter: duckdb.DuckDBPyConnection, sql: str
) -> pd.DataFrame:
    """Run `sql` on PostgreSQL and make its DataFrame the way DuckDB makes one (through an
    Arrow table it reads), so that both destinations give the same dtypes and values."""
    with connection.cursor() as cursor:
        cursor.execute(sql)  # no parameters: a `%` in the SQL stays as it is
        names = [column.name for column in cursor.description]
        type_codes = [column.type_code for column in cursor.description]
        rows = cursor.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    arrays = []
    for values, type_code in zip(columns, type_codes, strict=True):
        if type_code == _NUMERIC_OID:
            values = tuple(None if value is None else float(value) for value in values)
        arrays.append(pa.array(values, type=_ARROW_TYPES.get(type_code)))
    return converter.from_arrow(pa.Table.from_arrays(arrays, names=names)).df()


def describe_postgres(target: Any) -> str:
    """The PostgreSQL database and server a target reads (never the password)."""
    credentials = target.credentials()
    return f"PostgreSQL database {credentials.database} on {credentials.host}:{credentials.port}"


@contextmanager
def _postgres_views(dataset: str) -> Iterator[_Views]:
    """The database of dlt's credentials, in one read-only transaction; closed on exit."""
    import psycopg2.extras

    from pipelines.targets import make_target

    target = make_target("postgres", Path(), dataset)  # ConfigError without credentials
    connection = target.connect()
    try:
        with connection.cursor() as cursor:
            for statement in POSTGRES_SESSION_SQL:
                cursor.execute(statement)
        # JSON stays its text, as DuckDB gives it, instead of psycopg2's decoded value.
        psycopg2.extras.register_default_json(connection, loads=str)
        psycopg2.extras.register_default_jsonb(connection, loads=str)
        connection.autocommit = False
        with duckdb.connect() as converter:
            converter.execute("set TimeZone = 'UTC'")
            yield _Views(
                partial(_postgres_frame, connection, converter),
                describe_postgres(target),
                "--destination postgres",
            )
    finally:
        connection.close()  # ends the read-only transaction


def open_views(destination: str, db_path: Path | str, dataset: str) -> Any:
    if destination == "duckdb":
        return _duckdb_views(db_path)
    if destination == "postgres":
        return _postgres_views(dataset)
    raise ConfigError(f"unknown destination {destination!r}: use one of {DESTINATIONS}")


def describe_source(destination: str, db_path: Path | str, dataset: str) -> str:
    """Where a report reads the views, as its first line names it: the DuckDB file as given,
    or the PostgreSQL database and server of dlt's credentials (never the password)."""
    if destination != "postgres":
        return str(db_path)
    from pipelines.targets import make_target

    return describe_postgres(make_target(destination, Path(), dataset))

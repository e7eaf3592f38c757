"""A shared warehouse: a PostgreSQL database, through dlt's postgres destination.

Credentials are dlt's only (`DESTINATION__POSTGRES__CREDENTIALS` or
`[destination.postgres.credentials]` in .dlt/secrets.toml), never a flag, and the password
never appears in a message. What this target adds to dlt's destination:

- **One load per dataset at a time**: a session-level advisory lock keyed by the database and
  dataset, polled up to `--lock-wait` (then exit 3 naming the holder's PID), so two loads
  never share dlt's `<dataset>_staging` tables.
- **Indexes** on the tables' keys, created idempotently after the first chunk: dlt creates
  none on PostgreSQL but the unique one on `_dlt_id`, and every merge deletes by
  `execution_id`.
- **Views that never block readers for long**: applied only when their definition changed
  (a hash kept in `_eachlabs_views`), with a short `lock_timeout`, retried, then left as they
  were with a warning rather than waiting behind an analyst's open transaction.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pipelines.eachlabs.errors import ConfigError, LockedError
from pipelines.targets.base import Db, Session, Target

log = logging.getLogger(__name__)

CREDENTIALS_HINT = (
    "set DESTINATION__POSTGRES__CREDENTIALS=postgresql://USER:PASSWORD@HOST:5432/DATABASE or "
    "[destination.postgres.credentials] in .dlt/secrets.toml"
)
#: The loader's table of the views' definition hash (in the dataset's schema).
VIEWS_TABLE = "_eachlabs_views"
#: dlt's file format for PostgreSQL loads (see `PostgresSession.load_chunk`).
LOADER_FILE_FORMAT = "insert_values"
#: How long applying the views may wait for a lock a reader holds, per try, and how often.
VIEWS_LOCK_TIMEOUT = "2s"
VIEWS_TRIES = 3
_LOCK_POLL_S = 0.2
#: Indexes the merges and the views' joins need: (table, columns).
INDEXES = (
    ("executions", ("execution_id",)),
    ("executions", ("workflow_id", "started_date")),
    ("step_outputs", ("execution_id", "step_id")),
    ("step_outputs", ("model", "started_date")),
    ("step_params", ("execution_id", "step_id")),
)


class PostgresDb(Db):
    def __init__(self, connection: Any) -> None:
        self.connection = connection  # autocommit

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), list(params))
            return cursor.fetchall() if cursor.description else []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), list(params))

    def epoch_us(self, expression: str) -> str:
        return f"cast(extract(epoch from {expression}) * 1000000 as bigint)"

    def from_epoch_us(self, expression: str) -> str:
        return f"(timestamptz 'epoch' + {expression} * interval '1 microsecond')"

    def text_array(self) -> str:
        return "cast(? as text[])"

    def bigint_array(self) -> str:
        return "cast(? as bigint[])"


class PostgresSession(Session):
    def __init__(self, connection: Any, dataset: str) -> None:
        self.connection = connection
        self.db = PostgresDb(connection)
        self._dataset = dataset
        self._has_indexes = False

    def load_chunk(self, pipeline: Any, source: Any) -> bool:
        """One chunk through dlt, as INSERT statements: dlt would pick CSV `COPY` for Arrow
        batches, which it loads with FORCE_NULL on every nullable column, so an empty string
        would arrive as NULL (DuckDB keeps it). Correct first: INSERT keeps every value, at
        about 1.8x the time of CSV (docs/performance.md, section 10)."""
        from pipelines.dlt_run import run_pipeline

        return run_pipeline(pipeline, source, loader_file_format=LOADER_FILE_FORMAT) is not None

    def after_chunk(self, largest_body_bytes: int) -> None:
        if not self._has_indexes:
            self._has_indexes = create_indexes(self.db, self._dataset)

    def apply_views(self) -> list[str]:
        return apply_views(self.connection, self._dataset)

    def final(self) -> None:
        if not self._has_indexes:
            self._has_indexes = create_indexes(self.db, self._dataset)


class PostgresTarget(Target):
    """A schema (`dataset`) of a PostgreSQL database."""

    name = "postgres"

    def __init__(self, dataset: str) -> None:
        super().__init__(dataset)
        self._credentials: Any = None

    def check(self) -> None:
        from pipelines.target import check_dataset_name

        check_dataset_name(self.dataset)
        self.credentials()

    def credentials(self) -> Any:
        """dlt's resolved credentials (ConfigError when missing or incomplete)."""
        if self._credentials is None:
            from dlt.common.configuration import resolve_configuration
            from dlt.common.configuration.exceptions import ConfigurationException
            from dlt.destinations.impl.postgres.configuration import PostgresCredentials

            try:
                self._credentials = resolve_configuration(
                    PostgresCredentials(), sections=("destination", "postgres", "credentials")
                )
            except ConfigurationException as exc:
                missing = ", ".join(getattr(exc, "fields", []) or [])
                detail = f" (missing: {missing})" if missing else ""
                raise ConfigError(
                    f"no usable PostgreSQL credentials{detail}: {CREDENTIALS_HINT}"
                ) from None
        return self._credentials

    def describe(self) -> str:
        credentials = self.credentials()
        return (
            f"PostgreSQL database {credentials.database} on {credentials.host}:"
            f"{credentials.port}, schema {self.dataset}"
        )

    def foreign_executions(self) -> int:
        from pipelines.target import DEMO_MARK

        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("select to_regclass(%s)", [f'"{self.dataset}".executions'])
                (table,) = cursor.fetchone()
                if table is None:
                    return 0
                cursor.execute("select obj_description(%s::regclass, 'pg_class')", [table])
                if cursor.fetchone()[0] == DEMO_MARK:
                    return 0
                cursor.execute(f'select count(*) from "{self.dataset}".executions')
                return int(cursor.fetchone()[0])
        finally:
            connection.close()

    def mark_demo(self) -> None:
        from pipelines.target import DEMO_MARK

        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"comment on table \"{self.dataset}\".executions is '{DEMO_MARK}'")
        finally:
            connection.close()

    def pipeline_name(self) -> str:
        credentials = self.credentials()
        where = f"{credentials.host}:{credentials.port}/{credentials.database}"
        return f"eachlabs_{self.dataset}_pg_{hashlib.sha1(where.encode()).hexdigest()[:10]}"

    def dlt_destination(self) -> Any:
        import dlt

        return dlt.destinations.postgres(credentials=self.credentials())

    def connect(self) -> Any:
        """An autocommit psycopg2 connection (ConfigError naming the server, not the
        password, when it cannot be made)."""
        import psycopg2

        credentials = self.credentials()
        try:
            connection = psycopg2.connect(
                dsn=credentials.to_native_representation(), connect_timeout=15
            )
        except psycopg2.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = reason.replace(str(credentials.password or "\0"), "***")
            raise ConfigError(f"cannot connect to {self.describe()}: {reason}") from None
        connection.autocommit = True
        return connection

    @contextmanager
    def session(self, lock_wait_s: float) -> Iterator[Session]:
        connection = self.connect()
        try:
            key = _lock_key(self.credentials().database, self.dataset)
            _take_lock(connection, key, lock_wait_s, self.describe())
            try:
                yield PostgresSession(connection, self.dataset)
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("select pg_advisory_unlock(%s, %s)", key)
        finally:
            connection.close()


def _lock_key(database: str, dataset: str) -> tuple[int, int]:
    digest = hashlib.sha1(f"eachlabs-pipeline/{database}/{dataset}".encode()).digest()
    return (
        int.from_bytes(digest[:4], "big", signed=True),
        int.from_bytes(digest[4:8], "big", signed=True),
    )


def _take_lock(connection: Any, key: tuple[int, int], wait_s: float, where: str) -> None:
    """The dataset's advisory lock, polled up to `wait_s`; LockedError naming the holder."""
    deadline = time.monotonic() + wait_s
    has_said = False
    with connection.cursor() as cursor:
        while True:
            cursor.execute("select pg_try_advisory_lock(%s, %s)", key)
            if cursor.fetchone()[0]:
                return
            cursor.execute(
                "select pid from pg_locks where locktype = 'advisory' and classid = "
                "cast(%s as oid) and objid = cast(%s as oid) and granted limit 1",
                [key[0] % 2**32, key[1] % 2**32],
            )
            found = cursor.fetchone()
            holder = f"PID {found[0]}" if found else "a session that just ended"
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"another load into {where} is running ({holder}); it still held the "
                    f"dataset's lock after --lock-wait {wait_s:g} s: nothing was changed"
                )
            if not has_said:
                log.warning("another load into %s is running (%s); waiting up to %g s",
                            where, holder, wait_s)  # fmt: skip
                has_said = True
            time.sleep(_LOCK_POLL_S)


def create_indexes(db: Db, dataset: str) -> bool:
    """Create the missing indexes of `INDEXES` whose table exists; whether all exist now."""
    from pipelines.stored import read_catalog

    existing = read_catalog(db, dataset).columns
    done = True
    for table, columns in INDEXES:
        if not set(columns) <= set(existing.get(table, {})):
            done = False
            continue
        name = f"{table}_{'_'.join(columns)}_idx"
        db.execute(
            f'create index if not exists "{name}" on "{dataset}"."{table}" ({", ".join(columns)})'
        )
    return done


def apply_views(connection: Any, dataset: str) -> list[str]:
    """Apply the views (PostgreSQL formulas of sql/macros/postgres.sql) when their definition
    differs from the one applied last (see the module docstring); returns the view names."""
    import psycopg2.errors

    from pipelines.views import discover_views, order_views, view_statements

    names = [view.name for view in order_views(discover_views())]
    statements = view_statements(dataset, dialect="postgres")
    digest = hashlib.sha256("\n;\n".join(s.sql for s in statements).encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(
            f'create table if not exists "{dataset}".{VIEWS_TABLE} '
            "(definition_sha256 text not null, applied_at timestamptz not null)"
        )
        cursor.execute(f'select definition_sha256 from "{dataset}".{VIEWS_TABLE}')
        if [row[0] for row in cursor.fetchall()] == [digest]:
            return names  # unchanged: no lock taken at all
    for attempt in range(1, VIEWS_TRIES + 1):
        try:
            _recreate_views(connection, dataset, names, statements, digest)
            return names
        except psycopg2.errors.LockNotAvailable:
            log.info("applying the views waited for a reader's lock (try %d)", attempt)
            time.sleep(attempt)
    log.warning(
        "the views of schema %s were not re-applied: readers kept them locked; they stay as "
        "the last run left them (run `eachlabs-pipeline views --destination postgres` later)",
        dataset,
    )
    return names


def _recreate_views(
    connection: Any, dataset: str, names: list[str], statements: Any, digest: str
) -> None:
    """Drop and create every view and function in one transaction, under lock_timeout."""
    import psycopg2.errors

    from pipelines.views import ViewApplyError

    connection.autocommit = False
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"set local lock_timeout = '{VIEWS_LOCK_TIMEOUT}'")
            cursor.execute(f'set local search_path = "{dataset}", public')
            for name in reversed(names):
                cursor.execute(f'drop view if exists "{dataset}"."{name}" cascade')
            for statement in statements:
                try:
                    cursor.execute(statement.sql)
                except psycopg2.errors.LockNotAvailable:
                    raise  # a reader holds a view: the caller tries again
                except psycopg2.Error as exc:
                    raise ViewApplyError(
                        f"{statement.path}: {statement.what} failed: {exc}"
                    ) from exc
            cursor.execute(f'delete from "{dataset}".{VIEWS_TABLE}')
            cursor.execute(f'insert into "{dataset}".{VIEWS_TABLE} values (%s, now())', [digest])
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.autocommit = True

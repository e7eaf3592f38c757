"""One test, either destination: what a CLI run needs to load into it and how to read it back.

`Destination` gives the CLI arguments and environment of a load into DuckDB (the workspace's
file) or PostgreSQL (a fresh database of the test's server, credentials the dlt way), and
reads rows back alike: JSON values decoded, timestamps as aware datetimes, so that the same
data compares equal across destinations. The `destination` fixture (tests/conftest.py) runs a
test once per destination.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

from postgres_server import PostgresServer
from workspace import Workspace, make_workspace

from pipelines.eachlabs.tables import JSON_COLUMNS

TABLE_KEYS = {
    "executions": "execution_id",
    "step_outputs": "execution_id, step_id",
    "step_params": "execution_id, step_id, param_name",
    "fetch_errors": "execution_id, workflow_id",
}


@dataclass
class Destination:
    name: str  # duckdb | postgres
    workspace: Workspace
    server: PostgresServer | None = None
    dbname: str | None = None

    def args(self) -> list[str]:
        """CLI arguments naming where to load (`--db` is always given by the workspace)."""
        return ["--destination", self.name]

    def sibling(self, root: Path) -> Destination:
        """Another, empty destination of the same kind (a new file under `root`, or a new
        database on the same server)."""
        workspace = make_workspace(root)
        if self.server is None:
            return Destination(self.name, workspace)
        dbname = self.server.create_database(f"{self.dbname}_{uuid4().hex[:6]}")
        return Destination(self.name, workspace, self.server, dbname)

    def load(self, simulator: Any, *ids: str, extra: Sequence[str] = (), **kw: Any) -> Any:
        """`load` against the simulator into this destination (see `Workspace.load`)."""
        env = {**self.env(), **kw.pop("env", {})}
        return self.workspace.load(simulator, *ids, extra=[*self.args(), *extra], env=env, **kw)

    def env(self) -> dict[str, str]:
        if self.server is None:
            return {}
        return self.server.credentials_env(self.dbname)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.server is None:
            return self.workspace.query(sql, params)
        connection = self.server.connect(self.dbname)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), list(params))
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def columns(self, table: str, skip: Sequence[str] = ()) -> list[str]:
        rows = self.query(
            "select column_name from information_schema.columns where table_schema = "
            "'eachlabs' and table_name = ? order by ordinal_position",
            [table],
        )
        return [name for (name,) in rows if not name.startswith("_dlt") and name not in skip]

    def table_rows(self, table: str, skip: Sequence[str] = ()) -> list[tuple[Any, ...]]:
        """Every row of a loader table, in key order, values normalised (`normalise`)."""
        columns = self.columns(table, skip)
        rows = self.query(
            f"select {', '.join(columns)} from eachlabs.{table} order by {TABLE_KEYS[table]}"
        )
        # DuckDB gives JSON as its text; psycopg2 decodes jsonb itself.
        json_columns = set(JSON_COLUMNS.get(table, ())) if self.server is None else set()
        return [
            tuple(
                normalise(value, is_json=name in json_columns)
                for name, value in zip(columns, row, strict=True)
            )
            for row in rows
        ]

    def view_rows(self, view: str) -> list[tuple[Any, ...]]:
        """Every row of a view, normalised, sorted by its values other than floats (views
        promise no order, and a float may differ in its last bits)."""
        rows = [
            tuple(normalise(v) for v in row) for row in self.query(f"select * from eachlabs.{view}")
        ]
        return sorted(rows, key=lambda row: repr([v for v in row if not isinstance(v, float)]))


def normalise(value: Any, *, is_json: bool = False) -> Any:
    """A value as both destinations give it: JSON decoded (DuckDB returns its text, psycopg2
    the decoded jsonb), numerics as floats, timestamps as aware datetimes."""
    if is_json and isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    return value


def assert_rows_close(actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], what: str):
    """Equal row by row, floats to 1e-9 relative."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows, expected {len(expected)}"
    for number, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert len(got) == len(want), f"{what} row {number}: {got} != {want}"
        for got_value, want_value in zip(got, want, strict=True):
            if isinstance(want_value, float) and isinstance(got_value, float):
                assert math.isclose(got_value, want_value, rel_tol=1e-9, abs_tol=1e-12), (
                    f"{what} row {number}: {got} != {want}"
                )
            else:
                assert got_value == want_value, f"{what} row {number}: {got} != {want}"

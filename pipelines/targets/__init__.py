"""Where loads go: `make_target(destination, ...)` gives the `Target` of a `--destination`.

- `duckdb` (the embedded default): a DuckDB file, `targets/duckdb.py`.
- `postgres`: a schema of a PostgreSQL database (dlt's credentials), `targets/postgres.py`.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.eachlabs.errors import ConfigError
from pipelines.targets.base import Db, Session, Target

#: The `--destination` names, the default first.
DESTINATIONS = ("duckdb", "postgres")

__all__ = ["DESTINATIONS", "Db", "Session", "Target", "make_target"]


def make_target(destination: str, db_path: Path, dataset: str) -> Target:
    """The target of `destination` (`db_path` is the DuckDB file, unused by PostgreSQL),
    checked: a bad name or missing credentials raise ConfigError before anything is touched."""
    if destination == "duckdb":
        from pipelines.targets.duckdb import DuckDbTarget

        target: Target = DuckDbTarget(db_path, dataset)
    elif destination == "postgres":
        from pipelines.targets.postgres import PostgresTarget

        target = PostgresTarget(dataset)
    else:
        raise ConfigError(f"unknown destination {destination!r}: use one of {DESTINATIONS}")
    target.check()
    return target

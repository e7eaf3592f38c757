"""Where a load's rows go, behind one small interface.

A `Target` knows its destination's name for dlt, how to take it for one load (a lock), and
what to do around each chunk; `pipelines.load` drives the chunks through it and never asks
which destination it has. A `Session` is the target held by one run: its `Db` answers the
loader's own queries (`pipelines.stored`) in the destination's SQL dialect.

Each destination is a module of this package (`duckdb.py`, `postgres.py`), as dlt's own
destinations are folders of `dlt/destinations/impl/`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pipelines.eachlabs.helpers import FetchReport


class Db(ABC):
    """The loader's own queries against a destination: `?` placeholders, one dialect each."""

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement (committed at once)."""

    @abstractmethod
    def epoch_us(self, expression: str) -> str:
        """SQL turning a timestamptz `expression` into epoch microseconds (a bigint)."""

    @abstractmethod
    def from_epoch_us(self, expression: str) -> str:
        """SQL turning epoch microseconds into a timestamptz, exactly."""

    @abstractmethod
    def text_array(self) -> str:
        """A placeholder for a list of strings, as an array (`in (select unnest(...))`)."""

    @abstractmethod
    def bigint_array(self) -> str:
        """A placeholder for a list of integers, as an array."""


class Session(ABC):
    """A target held by one load, from its lock to its last commit."""

    #: The loader's own queries (`pipelines.stored`).
    db: Db
    #: This run created the destination's storage (a new DuckDB file).
    created: bool = False

    @abstractmethod
    def load_chunk(self, pipeline: Any, source: Any) -> bool:
        """Run one chunk through dlt (`source` None: only a pending package); returns whether
        a package was loaded."""

    def on_fetched(self, report: FetchReport) -> None:  # noqa: B027 (a hook: often nothing)
        """A chunk is fetched and about to be loaded (its size is known)."""

    def after_chunk(self, largest_body_bytes: int) -> None:  # noqa: B027
        """A chunk is committed."""

    @abstractmethod
    def apply_views(self) -> list[str]:
        """(Re)apply the views; returns their names."""

    def final(self) -> None:  # noqa: B027
        """The run's last step, after the views."""


class Target(ABC):
    """A destination of loads: what dlt writes to, and how one load holds it."""

    #: The `--destination` name.
    name: ClassVar[str]

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    @abstractmethod
    def check(self) -> None:
        """Refuse bad names and settings before anything is touched (ConfigError)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the rows go, for messages (never a password)."""

    @abstractmethod
    def pipeline_name(self) -> str:
        """The dlt pipeline name of loads into this target (its own working state)."""

    @abstractmethod
    def dlt_destination(self) -> Any:
        """The dlt destination (factory) loads into this target use."""

    @abstractmethod
    def session(self, lock_wait_s: float) -> AbstractContextManager[Session]:
        """Take the target for one load: its lock (waiting up to `lock_wait_s`, else
        LockedError), its connection and settings. On an error inside, storage this run
        created and left without a row is removed again."""

    @abstractmethod
    def foreign_executions(self) -> int:
        """How many executions the target holds that no demo wrote (`demo` refuses to mix
        generated executions into them without --force)."""

    @abstractmethod
    def mark_demo(self) -> None:
        """Record that a demo filled the tables (see `foreign_executions`)."""

"""A load's chunks: when one is full, the IDs not yet handed out, and the run's counts.

A chunk is one complete dlt load (a commit); `pipelines.load` drives them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from pipelines.eachlabs import EachlabsSettings, FetchReport

_Item = TypeVar("_Item")


@dataclass
class ChunkEnd:
    """When a chunk is full: `chunk_executions` IDs handed out, `chunk_seconds` gone, or
    `chunk_max_bytes` of answers expected: those fetched, plus the IDs handed out and not yet
    answered at the run's average size so far (they would overshoot the limit otherwise)."""

    config: EachlabsSettings
    chunk: FetchReport
    run: FetchReport  # the chunks before this one
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.config.chunk_seconds

    def is_reached(self, handed_out: int) -> bool:
        answered = self.run.done + self.chunk.done
        average = (self.run.body_bytes + self.chunk.body_bytes) / answered if answered else 0
        expected = self.chunk.body_bytes + (handed_out - self.chunk.done) * average
        return (
            handed_out >= self.config.chunk_executions
            or expected >= self.config.chunk_max_bytes
            or time.monotonic() >= self.deadline
        )


def take(ids: Iterator[_Item], end: ChunkEnd) -> Iterator[_Item]:
    """IDs (or bodies read from files) from `ids` until the chunk is full.

    The fetcher draws IDs lazily, so the IDs not handed out stay in `ids` for the next chunk.
    IDs already handed out are still fetched: until the first answers of a run show their
    size, the first chunk can exceed `chunk_max_bytes` by what the fetcher sends at once.
    """
    for count, execution_id in enumerate(ids, start=1):
        yield execution_id
        if end.is_reached(count):
            return


class Peekable(Iterator[_Item]):
    """An iterator (of IDs, of bodies) that can tell whether another item is coming without
    losing it."""

    def __init__(self, items: Iterable[_Item]) -> None:
        self._items = iter(items)
        self._next: list[_Item] = []

    def __next__(self) -> _Item:
        return self._next.pop() if self._next else next(self._items)

    def has_more(self) -> bool:
        if not self._next:
            try:
                self._next.append(next(self._items))
            except StopIteration:
                return False
        return True


def combined(total: FetchReport, chunk: FetchReport) -> FetchReport:
    """The run's counts so far plus the chunk in flight (requested: the whole run's)."""
    return FetchReport(
        requested=total.requested,
        loaded=total.loaded + chunk.loaded,
        not_found=total.not_found + chunk.not_found,
        failed=total.failed + chunk.failed,
        rejected=total.rejected,
    )


def add_chunk(total: FetchReport, chunk: FetchReport) -> None:
    total.loaded += chunk.loaded
    total.not_found += chunk.not_found
    total.failed += chunk.failed
    total.errors.extend(chunk.errors)
    total.body_bytes += chunk.body_bytes

"""Paging a workflow's executions: `GET {base_url}/workflows/{id}/executions`, newest first.

The listing finds which executions a workflow ran; their details are fetched by ID afterwards
(`client.fetch_many`), only for those that are new or changed (`pipelines.selection`). Each page
is fetched with the same retries, deadline, redirect and body rules as an execution.

Pages are read with `limit=100` until `offset` is null or a page is empty. The API promises
no order and new executions arriving while a client pages shift the pages, so:

- an execution seen on two pages is listed once (`seen` is shared with the rest of the run);
- `total_count` is not read: it never ends the paging;
- an incremental listing (a high-water mark from the last run) stops after the first page
  whose executions were all created before `mark - overlap`, and only while every page read
  so far was newest-first by `created_at`; otherwise it lists the workflow fully and logs
  one line saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.eachlabs.client import EachlabsClient
from pipelines.eachlabs.errors import FetchError, InvalidIdError
from pipelines.eachlabs.ids import validate_execution_id
from pipelines.eachlabs.summaries import summary_values
from pipelines.eachlabs.tables import SUMMARY_TYPES

_CREATED = list(SUMMARY_TYPES).index("created_at")
_UPDATED = list(SUMMARY_TYPES).index("updated_at")

logger = logging.getLogger(__name__)

#: Executions per page: the API's maximum.
PAGE_SIZE = 100


@dataclass(frozen=True)
class ListedExecution:
    """One execution as a list page shows it."""

    execution_id: str
    #: The values of its summary columns in `SUMMARY_TYPES` order (`summary_values`).
    summary: tuple[Any, ...]

    @property
    def created_us(self) -> int | None:
        return self.summary[_CREATED]

    @property
    def updated_us(self) -> int | None:
        return self.summary[_UPDATED]


@dataclass
class WorkflowListing:
    """What listing one workflow (optionally one bulk operation of it) found.

    Attributes:
        workflow_id, bulk_id: What was listed.
        mark_us: The high-water mark the listing started from (None: list fully).
        pages: Pages requested.
        listed: Executions listed (each once; those already listed by an earlier workflow of
            the run are not counted again).
        unusable_items: Items of a page without a safe `execution_id` string (not loaded).
        newest_created_us: The newest `created_at` listed (None: nothing listed).
        stopped_at_mark: The listing ended at the mark instead of the last page.
        is_complete: Every page up to the end (or the mark) was read.
        error: Why the listing stopped early (404, retries used up, a bad page); what it had
            listed until then is still loaded.
    """

    workflow_id: str
    bulk_id: str | None = None
    mark_us: int | None = None
    pages: int = 0
    listed: int = 0
    unusable_items: int = 0
    newest_created_us: int | None = None
    stopped_at_mark: bool = False
    is_complete: bool = False
    error: FetchError | None = None

    def describe(self) -> str:
        """One line for the user: what was listed and how it ended."""
        scope = f" bulk {self.bulk_id}" if self.bulk_id else ""
        if self.error is not None:
            ending = f"stopped: {self.error}"
        elif self.stopped_at_mark:
            ending = "stopped at the last run's mark"
        else:
            ending = "listed fully"
        unusable = (
            f"; {self.unusable_items} items without a usable execution_id skipped"
            if self.unusable_items
            else ""
        )
        return (
            f"workflow {self.workflow_id}{scope}: {self.listed} executions in {self.pages} "
            f"pages ({ending}{unusable})"
        )


@dataclass
class _OrderCheck:
    """Whether the pages read so far come newest-first by `created_at`."""

    previous_us: int | None = None
    problem: str | None = None

    def check(self, created_us: int | None, execution_id: str, offset: int) -> None:
        if self.problem is not None:
            return
        if created_us is None:
            self.problem = (
                f"execution {execution_id[:80]} (offset {offset}) has no usable created_at"
            )
        elif self.previous_us is not None and created_us > self.previous_us:
            self.problem = (
                f"execution {execution_id[:80]} (offset {offset}) was created after the one "
                "listed before it"
            )
        self.previous_us = created_us if created_us is not None else self.previous_us


def list_workflow(
    client: EachlabsClient,
    listing: WorkflowListing,
    *,
    overlap_us: int,
    seen: set[str],
) -> Iterator[ListedExecution]:
    """The executions of `listing.workflow_id` not in `seen` (added to it as they come).

    Fills `listing` as it goes. A 404 (unknown workflow), retries that ran out or a page that
    cannot be read end the listing with `listing.error` set; what was listed before stays
    listed. AuthError and ConfigError are raised: the run cannot go on.

    Args:
        overlap_us: Re-read executions created up to this long before `listing.mark_us`.
        seen: Execution IDs already listed or given by ID in this run.
    """
    try:
        yield from _pages(client, listing, overlap_us, seen)
    finally:
        if listing.unusable_items:
            logger.warning(
                "workflow %s: %d listed items had no usable execution_id and were skipped",
                listing.workflow_id, listing.unusable_items,
            )  # fmt: skip


def _pages(
    client: EachlabsClient, listing: WorkflowListing, overlap_us: int, seen: set[str]
) -> Iterator[ListedExecution]:
    """`list_workflow` without its closing warning."""
    order = _OrderCheck()
    warned = False  # that the list is not newest-first
    stop_before_us = None if listing.mark_us is None else listing.mark_us - overlap_us
    offset = 0
    while True:
        try:
            page, attempts = client.fetch_list_page(
                listing.workflow_id, offset, PAGE_SIZE, listing.bulk_id
            )
        except FetchError as exc:
            listing.error = exc
            return
        listing.pages += 1
        items = page["executions"]
        if not items:
            listing.is_complete = True
            return
        is_all_older = stop_before_us is not None
        for position, item in enumerate(items, start=offset):
            listed = _listed_execution(item)
            if listed is None:
                listing.unusable_items += 1
                is_all_older = False
                continue
            order.check(listed.created_us, listed.execution_id, position)
            created_us = listed.created_us
            if created_us is not None and (
                listing.newest_created_us is None or created_us > listing.newest_created_us
            ):
                listing.newest_created_us = created_us
            if created_us is None or stop_before_us is None or created_us >= stop_before_us:
                is_all_older = False
            if listed.execution_id not in seen:
                seen.add(listed.execution_id)
                listing.listed += 1
                yield listed
        if order.problem is not None and not warned:
            warned = True
            if stop_before_us is not None:
                logger.warning(
                    "workflow %s: the list is not newest-first by created_at (%s); listing "
                    "it fully instead of stopping at the last run's mark",
                    listing.workflow_id, order.problem,
                )  # fmt: skip
        if is_all_older and order.problem is None:
            listing.stopped_at_mark = listing.is_complete = True
            return
        next_offset = page.get("offset")
        if next_offset is None:
            listing.is_complete = True
            return
        is_int = isinstance(next_offset, int) and not isinstance(next_offset, bool)
        if not is_int or next_offset <= offset:
            listing.error = FetchError(
                f"the list page at offset {offset} gives the next page's offset as "
                f"{str(next_offset)[:40]!r}, which does not move forward; listing stopped",
                http_status=200,
                attempts=attempts,
            )
            return
        offset = next_offset


def _listed_execution(item: Any) -> ListedExecution | None:
    """The execution of a page's item; None when it has no safe `execution_id`."""
    if not isinstance(item, dict):
        return None
    try:
        execution_id = validate_execution_id(item.get("execution_id"))  # type: ignore[arg-type]
    except InvalidIdError:
        return None
    return ListedExecution(execution_id, summary_values(item))

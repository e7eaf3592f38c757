"""Which executions a run fetches: the IDs it was given, and what listing workflows finds.

- Given IDs (arguments, `--ids-file`): every one not stored with a final status.
- Listed executions (`--workflow`): only those not stored, stored but not final, whose
  summary `updated_at` is newer than the stored one, or never listed before (their summary
  columns are stored with the details). The rest are unchanged: no request at all.
- A given ID that is also listed follows the listing's rule and gets its summary.
- An execution fetched by ID only keeps the summary columns stored for it (`stored_states`).

After the run's last commit, `new_marks` gives each fully listed (workflow, bulk) its next
high-water mark: the newest `created_at` listed, held back to the oldest listed execution that
is still not final (running, or failed to load) so that the next incremental listing reaches
it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipelines.eachlabs.client import EachlabsClient
from pipelines.eachlabs.errors import TransientError
from pipelines.eachlabs.listing import PAGE_SIZE, ListedExecution, WorkflowListing, list_workflow
from pipelines.stored import (
    Catalog,
    StoredState,
    listing_marks,
    read_catalog,
    stored_states,
    unfinished_ids,
)
from pipelines.targets.base import Db

log = logging.getLogger(__name__)


@dataclass
class Listed:
    """What listing the run's workflows found, and which of it needs details."""

    listings: list[WorkflowListing] = field(default_factory=list)
    #: Listed executions whose details are fetched, in listing order.
    to_fetch: list[str] = field(default_factory=list)
    #: Summary column values of the executions in `to_fetch` (`summaries.summary_values`).
    summaries: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: Every execution listed (given IDs among them follow the listing's rule).
    ids: set[str] = field(default_factory=set)
    #: Listed executions stored final and unchanged: not fetched.
    unchanged: int = 0
    #: When the listing began (epoch microseconds).
    started_us: int = field(default_factory=lambda: int(time.time() * 1e6))
    #: Per listing (index into `listings`): its fetched executions and their created_at.
    _fetched: list[dict[str, int | None]] = field(default_factory=list)

    @property
    def failed(self) -> list[WorkflowListing]:
        return [listing for listing in self.listings if listing.error is not None]

    @property
    def pages(self) -> int:
        return sum(listing.pages for listing in self.listings)


def list_workflows(
    client: EachlabsClient,
    db: Db,
    dataset: str,
    workflows: Iterable[str],
    bulk_id: str | None,
    *,
    overlap_us: int,
    full_listing: bool,
    refresh_all: bool,
    on_listed: Callable[[WorkflowListing], None] | None = None,
    catalog: Catalog | None = None,
) -> Listed:
    """List each workflow (once; with `bulk_id`, only that bulk operation's executions) and
    choose which executions need their details (see the module docstring).

    Raises:
        AuthError, ConfigError: as the client does, or the API cannot be reached at all (the
            first listing could not connect); nothing is loaded.
    """
    catalog = catalog or read_catalog(db, dataset)  # no table changes while listing
    marks = {} if full_listing or refresh_all else listing_marks(db, dataset, catalog)
    listed = Listed()
    for workflow_id in dict.fromkeys(workflows):
        listing = WorkflowListing(workflow_id, bulk_id, marks.get((workflow_id, bulk_id or "")))
        fetched: dict[str, int | None] = {}
        executions = list_workflow(client, listing, overlap_us=overlap_us, seen=listed.ids)
        for page in _pages(executions):
            ids = [execution.execution_id for execution in page]
            states = {} if refresh_all else stored_states(db, dataset, ids, catalog)
            for execution in page:
                state = states.get(execution.execution_id)
                if state and state.is_final and not _is_newer(execution, state):
                    listed.unchanged += 1
                    continue
                listed.to_fetch.append(execution.execution_id)
                listed.summaries[execution.execution_id] = execution.summary
                fetched[execution.execution_id] = execution.created_us
        error = listing.error
        if isinstance(error, TransientError) and not client.has_reached_server:
            raise client.unreachable_error(error)  # no request of the run got any answer
        listed.listings.append(listing)
        listed._fetched.append(fetched)
        if on_listed is not None:
            on_listed(listing)
    return listed


def new_marks(
    listed: Listed,
    db: Db,
    dataset: str,
    *,
    listed_at_us: int,
    not_found: set[str],
) -> dict[tuple[str, str], int]:
    """The next high-water mark of each listing that read every page it needed (see the
    module docstring); call after the run's last commit.

    Args:
        listed_at_us: When the run listed: no mark lies beyond it, so that a `created_at` in
            the future (a skewed clock, bad data) cannot hide the executions created until
            then.
        not_found: Executions whose details the API did not know (404): nothing to wait for,
            they do not hold a mark back.
    """
    marks: dict[tuple[str, str], int] = {}
    catalog = read_catalog(db, dataset)  # after the run's chunks: as they left the tables
    for listing, fetched in zip(listed.listings, listed._fetched, strict=True):
        if not listing.is_complete or listing.newest_created_us is None:
            continue
        mark = min(listing.newest_created_us, listed_at_us)
        for execution_id in unfinished_ids(db, dataset, fetched.keys() - not_found, catalog):
            created_us = fetched[execution_id]
            if created_us is None:  # cannot be placed: the next run lists fully
                break
            mark = min(mark, created_us)
        else:
            marks[(listing.workflow_id, listing.bulk_id or "")] = mark
    return marks


def _is_newer(execution: ListedExecution, stored: StoredState) -> bool:
    """The listing shows something the stored row lacks: its summary (never listed before),
    or an `updated_at` later than the stored one (a summary without one cannot say so)."""
    if not stored.was_listed:
        return True
    listed_us, stored_us = execution.updated_us, stored.updated_us
    if listed_us is None:
        return False
    return stored_us is None or listed_us > stored_us


def _pages(executions: Iterator[ListedExecution]) -> Iterator[list[ListedExecution]]:
    """The listed executions in groups of a page, so that their stored state is read with
    one query per page."""
    page: list[ListedExecution] = []
    for execution in executions:
        page.append(execution)
        if len(page) == PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page

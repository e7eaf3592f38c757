"""What a load run did: the counts behind the summary line and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.eachlabs.helpers import FetchReport
from pipelines.eachlabs.listing import WorkflowListing


@dataclass
class LoadSummary:
    """What a run did, for the final summary line and the exit code."""

    fetch: FetchReport = field(default_factory=FetchReport)
    duplicates: int = 0
    skipped_final: int = 0
    elapsed_s: float = 0.0
    resumed_interrupted_load: bool = False
    chunks: int = 0
    views: list[str] = field(default_factory=list)
    #: The ID list was empty: nothing was fetched and no table was touched.
    no_ids: bool = False
    #: This run created the DuckDB file (it did not exist when the run opened it).
    created_file: bool = False
    #: The workflows listed (`--workflow`), each with what its listing found.
    listings: list[WorkflowListing] = field(default_factory=list)
    #: Files of bodies read (`--from-jsonl`, `--from-spool`), their bodies, and the spool
    #: files moved to `loaded/` after the commit.
    files: int = 0
    bodies_read: int = 0
    files_moved: int = 0

    @property
    def failed_listings(self) -> int:
        return sum(listing.error is not None for listing in self.listings)

    @property
    def requested(self) -> int:
        return self.fetch.requested + self.skipped_final

    @property
    def all_not_found(self) -> bool:
        """Every ID sent came back 404: more likely a wrong base URL or key than bad IDs
        (unless a workflow's list was read with the same URL and key)."""
        fetch = self.fetch
        has_listed = any(listing.pages for listing in self.listings)
        return fetch.not_found > 0 and fetch.not_found == fetch.done and not has_listed

    @property
    def error_rows(self) -> int:
        """Rows the run wrote to fetch_errors: failed, not found, rejected (or unreadable)
        executions and failed listings; none when it was given nothing to do."""
        fetch = self.fetch
        return fetch.failed + fetch.not_found + fetch.rejected + self.failed_listings

    def counts(self) -> dict[str, int | float]:
        """The figures of the summary line by name (with workflows and files, theirs too)."""
        fetch = self.fetch
        counts: dict[str, int | float] = {
            "requested": self.requested,
            "loaded": fetch.loaded,
            "skipped_final": self.skipped_final,
            "not_found": fetch.not_found,
            "failed": fetch.failed,
            "rejected": fetch.rejected,
            "elapsed_s": round(self.elapsed_s, 3),
        }
        if self.listings:
            counts["listed"] = sum(listing.listed for listing in self.listings)
            counts["list_pages"] = sum(listing.pages for listing in self.listings)
            counts["failed_listings"] = self.failed_listings
        if self.files:
            counts["bodies_read"] = self.bodies_read
        return counts

    @property
    def exit_code(self) -> int:
        """0 when everything was loaded or is known not to exist, 2 when some IDs failed (or
        when every ID was unknown to the API, which a scheduler should notice)."""
        fetch = self.fetch
        partial = fetch.failed or fetch.rejected or self.failed_listings or self.all_not_found
        return 2 if partial else 0

    def describe(self) -> str:
        if self.no_ids:
            return "no execution IDs given (the list was empty): nothing to do, no table changed"
        fetch = self.fetch
        resumed = "finished an interrupted earlier load; " if self.resumed_interrupted_load else ""
        if self.listings:
            listed = sum(listing.listed for listing in self.listings)
            pages = sum(listing.pages for listing in self.listings)
            failed = f", {self.failed_listings} failed" if self.failed_listings else ""
            resumed += (
                f"listed {listed} executions of {len(self.listings)} workflows in {pages} "
                f"pages{failed}; "
            )
        if self.files:
            resumed += f"read {self.bodies_read} bodies from {self.files} files; "
        moved = f"; moved {self.files_moved} spool files to loaded/" if self.files_moved else ""
        return resumed + (
            f"requested {self.requested}, loaded {fetch.loaded}, "
            f"skipped as already final {self.skipped_final}, not found {fetch.not_found}, "
            f"failed {fetch.failed}, rejected {fetch.rejected} in {self.elapsed_s:.1f}s"
            + (f" ({self.duplicates} duplicates ignored)" if self.duplicates else "")
            + moved
        )

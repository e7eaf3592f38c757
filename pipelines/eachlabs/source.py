"""The dlt source of the Eachlabs Workflows API: executions by ID -> executions, step_outputs,
step_params and fetch_errors.

Data flows one way: IDs -> concurrent fetches -> payloads -> columnar batches (Arrow) -> dlt.
One hidden resource fetches and normalises (`helpers.fetch_batches`); four transformers pick
their table from each batch, so every payload is fetched and converted exactly once. Table
shapes and hints are in `tables`, settings in `settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any

import dlt
import pyarrow as pa

from pipelines.eachlabs.client import EachlabsClient, FetchResult
from pipelines.eachlabs.helpers import FetchReport, TableBatch, as_ids, fetch_batches
from pipelines.eachlabs.settings import EachlabsSettings, resolve_settings
from pipelines.eachlabs.tables import FETCH_ERRORS_HINTS, TABLE_HINTS


def _pick_table(table: str) -> Callable[[TableBatch], Iterator[pa.Table]]:
    def pick(batch: TableBatch) -> Iterator[pa.Table]:
        if table in batch.tables:
            yield batch.tables[table]

    return pick


def _pick_errors(batch: TableBatch) -> Iterator[pa.Table]:
    if batch.errors is not None:
        yield batch.errors


def table_resources(batches: Any) -> list[Any]:
    """The table resources fed by a resource of batches: one transformer per table.

    The batches resource is evaluated once and its batches fanned out to every table.
    """
    resources = [
        batches | dlt.transformer(_pick_table(name), name=name, **hints)
        for name, hints in TABLE_HINTS.items()
    ]
    errors = dlt.transformer(_pick_errors, name="fetch_errors", **FETCH_ERRORS_HINTS)
    return [*resources, batches | errors]


@dlt.source(name="eachlabs", max_table_nesting=0)
def eachlabs_source(
    execution_ids: Iterable[str] = (),
    rejected_ids: dict[str, str] | None = None,
    report: FetchReport | None = None,
    on_progress: Callable[[FetchReport], None] | None = None,
    config: Any = None,
    on_fetched: Callable[[FetchReport], None] | None = None,
    has_reached_server: bool = False,
    bodies: Iterable[FetchResult] | None = None,
    summaries: Mapping[str, Sequence[Any]] | None = None,
    first_errors: Iterable[dict[str, Any]] = (),
    **options: Any,
) -> Any:
    """Executions fetched by ID from `GET {base_url}/executions/{id}`, or bodies read
    elsewhere (`bodies`: files, the webhook spool), normalised and merged alike.

    Args:
        execution_ids: IDs to fetch; each must already be a safe path segment. A sequence is
            copied; an iterator is drawn from lazily, so the caller can stop it early and
            keep the IDs it did not hand out (see `pipelines.load`).
        rejected_ids: IDs refused before sending (ID -> reason), recorded in fetch_errors.
        report: Filled with the run's counts and errors.
        on_progress: Called now and then with the report while fetching.
        on_fetched: Called once with the report when every ID is fetched, before dlt gets
            the last batch (and so before it normalises and loads them).
        has_reached_server: An earlier chunk of the run got answers from the API: connection
            failures are then failures of their IDs, not an unreachable API.
        bodies: Execution bodies already at hand (`pipelines.bodies`), loaded instead of
            fetching `execution_ids`: no request is sent and no API key is needed. Drawn
            from lazily, like an iterator of IDs.
        summaries: Summary column values by execution ID (`summaries.summary_values`, from a
            listing or carried over from the stored row); executions without stay null there.
        first_errors: fetch_errors rows recorded before fetching (a workflow whose listing
            failed), loaded with the run's other errors.
        config: Resolved `EachlabsSettings` (see `settings.resolve_settings`); when None,
            they are resolved here, with `options` beating dlt config.
        options: Settings by name (`api_key`, `base_url`, `concurrency`, ...: every field of
            `EachlabsSettings`), used when `config` is None.

    Raises:
        ConfigError: a setting is missing (the key) or invalid.
    """
    if config is None:
        config = resolve_settings(options)
    elif options:
        raise TypeError("pass settings either as config or as options, not both")
    if not isinstance(config, EachlabsSettings):  # typed Any so that dlt does not inject it
        raise TypeError(f"config must be EachlabsSettings, not {type(config).__name__}")
    report = report if report is not None else FetchReport()
    client = None
    if bodies is None:
        ids = as_ids(execution_ids)
        if isinstance(ids, Sized):  # an iterator's length is unknown: its caller counts
            report.requested = len(ids) + len(rejected_ids or {})
        client = EachlabsClient.from_settings(config)
        client.has_reached_server = has_reached_server

    @dlt.resource(selected=False)
    def fetched_batches() -> Iterator[TableBatch]:
        results = bodies if client is None else client.fetch_many(ids, config.concurrency)
        try:
            yield from fetch_batches(
                results, (config.batch_size, config.batch_max_bytes), rejected_ids or {},
                report, on_progress, on_fetched=on_fetched, summaries=summaries or {},
                first_errors=list(first_errors),
            )  # fmt: skip
        finally:
            if client is not None:
                client.close()

    return table_resources(fetched_batches)

"""Dagster definitions of the scheduled load: `dagster dev -m pipelines.orchestration.dagster`.

Assets (all under the key prefix `eachlabs`):
- the tables `executions`, `step_outputs`, `step_params`, `fetch_errors`: one step that runs
  the project's load (`job.load`, i.e. `run_load`: chunked commits, the load lock, the
  incremental selection, the views applied at the end), with the run's counts as metadata;
- one asset per view of `sql/`, downstream of the tables and views it reads, with its row
  count and, for a reporting view, a fingerprint of its rows as the data version (a run
  shows which views changed);
- `model_performance_report`, the notebook report (`reports/model_performance.html`).

Checks: `fetch_error_share` (blocking: a run with too many failed IDs fails, after its rows
are committed), `fresh` (the newest execution is recent) and `nothing_got_worse` (a warning
naming the models that got worse). A job runs the whole graph; a schedule starts it every 15
minutes (the `cron` setting) unless a loading run is still going.

Why not `dagster-dlt`'s `@dlt_assets`: `DagsterDltResource.run` drops the pipeline's working
state before every run and loads the whole source in one dlt load, so it would lose the
chunked commits (an interrupted run keeps what it committed), resuming an interrupted load
and the load lock; see docs/dagster.md. What to load and where comes from `job.JobSettings`
(`[orchestration]` in .dlt/config.toml), overridable per run through `LoadConfig` and the
`eachlabs` resource.
"""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.cli_io import progress_line
from pipelines.eachlabs import FetchReport
from pipelines.eachlabs.errors import ConfigError, EachlabsError, ViewError
from pipelines.orchestration import job
from pipelines.report_sources import REPORT_VIEWS
from pipelines.views import LOADER_TABLES, discover_views, order_views

PREFIX = "eachlabs"
JOB_NAME = "eachlabs_job"
#: The views of `sql/`, each after the views it reads (the order Dagster needs them in).
VIEWS = order_views(discover_views())
#: Runs that load: the job, and "Materialize all" / `dagster asset materialize` (ad hoc).
LOADING_JOBS = (JOB_NAME, "__ASSET_JOB")
#: A run still "going" after this long is taken for one whose process died unseen.
STALE_RUN_S = 6 * 3600


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey([PREFIX, name])


@contextlib.contextmanager
def _clear_failure() -> Iterator[None]:
    """The project's own errors (settings, lock, API, views) end the step with their one
    line, not a traceback."""
    try:
        yield
    except (EachlabsError, ViewError) as exc:
        raise dg.Failure(description=str(exc)) from None


class LoadConfig(dg.Config):
    """What this run loads. Naming any of workflows, ids_file, spool replaces all three
    settings; an unset field takes its `[orchestration]` setting."""

    workflows: list[str] | None = None
    ids_file: str | None = None
    spool: str | None = None
    full_listing: bool | None = None

    def given(self) -> dict[str, Any]:
        given = self.model_dump(exclude_none=True)
        if given.keys() & set(job.INPUTS):
            return {"workflows": [], "ids_file": "", "spool": "", **given}
        return given


class EachlabsResource(dg.ConfigurableResource):
    """Where the tables are; an unset field takes its `[orchestration]` setting."""

    destination: str | None = None
    db_path: str | None = None
    dataset: str | None = None
    report_dir: str | None = None

    def settings(self, **given: Any) -> job.JobSettings:
        with _clear_failure():
            return job.resolve_job_settings({**self.model_dump(), **given})


@dg.multi_asset(
    name="eachlabs_load",
    specs=[
        dg.AssetSpec(_key(table), group_name="eachlabs_tables", kinds={"dlt"})
        for table in LOADER_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "fetch_error_share",
            asset=_key("fetch_errors"),
            blocking=True,
            description="At most max_fetch_error_share of the requested IDs failed.",
        )
    ],
)
def eachlabs_tables(
    context: dg.AssetExecutionContext, config: LoadConfig, eachlabs: EachlabsResource
) -> Iterator[Any]:
    """`eachlabs-pipeline load` with the job's inputs; the run's counts and each table's rows
    as metadata, then the fetch_errors check."""
    settings = eachlabs.settings(**config.given())

    def progress(report: FetchReport) -> None:  # every 2 s or so while fetching
        line = progress_line(report)
        if line is not None:
            context.log.info(line)

    with _clear_failure():
        summary = job.load(settings, on_progress=progress)
    context.log.info(summary.describe())
    figures = summary.counts()
    try:  # the lock is released: a load starting now may hold the file
        rows: dict[str, int] = job.table_rows(settings)
    except ConfigError as exc:
        context.log.warning(f"row counts left out: {exc}")
        rows = {}
    for table in LOADER_TABLES:
        counted = {"dagster/row_count": rows[table]} if table in rows else {}
        yield dg.MaterializeResult(asset_key=_key(table), metadata={**figures, **counted})
    outcome = job.fetch_error_share(summary, settings.max_fetch_error_share)
    yield _check_result(outcome, _key("fetch_errors"), "fetch_error_share")


def _check_result(
    outcome: job.CheckOutcome,
    asset: dg.AssetKey,
    name: str | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **metadata: dg.MetadataValue,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={"summary": outcome.description, **outcome.metadata, **metadata},
    )


@dg.multi_asset(
    name="eachlabs_views",
    specs=[
        dg.AssetSpec(
            _key(view.name),
            group_name="eachlabs_views",
            deps=[_key(name) for name in (*view.tables, *view.dependencies)],
            kinds={"sql"},
            skippable=True,
        )
        for view in VIEWS
    ],
    can_subset=True,
)
def eachlabs_views(context: dg.AssetExecutionContext, eachlabs: EachlabsResource) -> Iterator[Any]:
    """Each selected view's rows and fingerprint; first `eachlabs-pipeline views`, unless the
    run loaded the tables, which applied the views at its end."""
    from pipelines import load

    settings = eachlabs.settings()
    selected = {key.path[-1] for key in context.selected_asset_keys}
    run_selection = context.run.asset_selection  # None: the job's whole graph
    with _clear_failure():
        if run_selection is not None and _key("executions") not in run_selection:
            load.apply_views(settings.destination, Path(settings.db_path), settings.dataset)
        kinds = {view.name: view.kind for view in VIEWS if view.name in selected}
        states = job.view_states(settings, kinds)
    for name, (rows, fingerprint) in states.items():
        if fingerprint is None:  # a base view: a row per execution or step, only counted
            yield dg.MaterializeResult(asset_key=_key(name), metadata={"dagster/row_count": rows})
            continue
        yield dg.MaterializeResult(
            asset_key=_key(name),
            metadata={"dagster/row_count": rows, "fingerprint": fingerprint},
            data_version=dg.DataVersion(fingerprint),
        )


@dg.asset(
    key=_key("model_performance_report"),
    group_name="eachlabs_report",
    deps=[_key(view) for view in REPORT_VIEWS],
    kinds={"jupyter"},
)
def model_performance_report(eachlabs: EachlabsResource) -> dg.MaterializeResult:
    """The notebook report, `model_performance.html` and one PNG per figure."""
    settings = eachlabs.settings()
    with _clear_failure():
        html, figures = job.render_report(settings)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(html.resolve())), "figures": figures}
    )


@dg.asset_check(
    asset=_key("executions"), name="fresh", description="The newest execution is recent."
)
def executions_are_fresh(eachlabs: EachlabsResource) -> dg.AssetCheckResult:
    settings = eachlabs.settings()
    with _clear_failure():
        outcome = job.freshness(settings)
    return _check_result(outcome, _key("executions"))


@dg.asset_check(
    asset=_key("model_recent_changes"),
    name="nothing_got_worse",
    description="No model's p95 latency or failure rate got worse in the last 7 days.",
)
def nothing_got_worse(eachlabs: EachlabsResource) -> dg.AssetCheckResult:
    settings = eachlabs.settings()
    with _clear_failure():
        outcome = job.got_worse(settings)
    return _check_result(
        outcome,
        _key("model_recent_changes"),
        severity=dg.AssetCheckSeverity.WARN,
        models=dg.MetadataValue.json(outcome.metadata["models"]),
        what_got_worse=dg.MetadataValue.md(f"```\n{outcome.metadata['what_got_worse']}\n```"),
    )


eachlabs_job = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.assets(eachlabs_tables, eachlabs_views, model_performance_report),
    description="Load, apply the views, render the report, run the checks.",
)

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.schedule(cron_schedule=job.schedule_cron(), job=eachlabs_job, execution_timezone="UTC")
def eachlabs_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Every 15 minutes by default (`cron`); a tick is skipped while a loading run (this job,
    or "Materialize all") is still going: the new one would only wait for its lock. A run
    "going" for more than 6 hours is taken for one whose process died, and ignored."""
    since = time.time() - STALE_RUN_S
    for record in context.instance.get_run_records(dg.RunsFilter(statuses=_ACTIVE), limit=50):
        if (
            record.dagster_run.job_name in LOADING_JOBS
            and record.create_timestamp.timestamp() > since
        ):
            run = record.dagster_run
            return dg.SkipReason(f"run {run.run_id} of {run.job_name} is still going")
    return dg.RunRequest()


defs = dg.Definitions(
    assets=[eachlabs_tables, eachlabs_views, model_performance_report],
    asset_checks=[executions_are_fresh, nothing_got_worse],
    jobs=[eachlabs_job],
    schedules=[eachlabs_schedule],
    resources={"eachlabs": EachlabsResource()},
    # One step at a time in the run's own process: a DuckDB file takes one writer and no
    # reader beside it, so a check reading it while the views step writes it would fail, and a
    # process per step would only add seconds of imports (the load runs its own threads).
    executor=dg.in_process_executor,
)

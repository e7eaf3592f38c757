"""Model performance reports over the views: the tables `eachlabs-pipeline report` prints.

Every figure comes from the SQL views (see `sql/`); nothing here recomputes a metric. The
views are read from either destination (`--destination`) by the same queries: a DuckDB file
opened read-only, or a PostgreSQL schema in one read-only transaction. The connection is
closed as soon as the frames are read, so a report never blocks a scheduled load for longer
than its queries take (DuckDB allows one writer and no reader beside it; PostgreSQL readers
block no load, only a change of the views' definitions, and not for long). The notebook
`notebooks/model_performance.ipynb` reads its data the same way, through `read_frames`, and
starts with the same two tables.

The same data gives the same figures on both: text is ordered byte by byte (`collate "C"`,
the same in both dialects, not the PostgreSQL database's locale), and PostgreSQL's rows become
DataFrames the way DuckDB makes them (`_postgres_frame`), timestamps in UTC on both.

Like the reporting views, the report leaves dry runs and soft-deleted executions out of every
figure (`REPORTED_CONDITION`) and says how many it left out; it names a workflow by its
`flow_name` where one is known (`workflow_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from pipelines.eachlabs.errors import ConfigError
from pipelines.report_sources import REPORT_VIEWS, describe_source, open_views
from pipelines.views import literal, quote

#: Which rows of the base views (`execution_runs`, `step_runs`) the report counts: as in every
#: reporting view, not a dry run (it called no model) and not soft-deleted (its owner removed
#: it). A query reading a base view directly adds `and {REPORTED_CONDITION}`.
REPORTED_CONDITION = "not is_dry_run and not is_deleted"

#: Characters of a workflow ID shown where its name is unknown or shared.
SHORT_ID_LENGTH = 8

#: Per (step_type, model): finished steps and failure rate with its 95% Wilson interval
#: (model_failure_rates), latency sample size and percentiles (step_latency_by_model).
HEADLINE_SQL = """
    select
        f.step_type,
        f.model,
        f.finished_steps,
        f.failed_steps,
        f.failure_rate,
        f.failure_rate_low,
        f.failure_rate_high,
        f.is_low_sample,
        l.completed_steps as timed_steps,
        l.p50_seconds,
        l.p95_seconds
    from {schema}.model_failure_rates as f
    left join {schema}.step_latency_by_model as l
        on f.step_type is not distinct from l.step_type
        and f.model is not distinct from l.model
    order by
        case when f.step_type = 'model' then 0 else 1 end,
        f.step_type collate "C" nulls last,
        l.p50_seconds desc nulls last,
        f.model collate "C"
"""

#: Every row of model_recent_changes, flagged ones first, then models before other steps.
RECENT_CHANGES_SQL = """
    select *
    from {schema}.model_recent_changes
    order by
        case when latency_regressed or failures_regressed then 0 else 1 end,
        case when step_type = 'model' then 0 else 1 end,
        step_type collate "C" nulls last,
        model collate "C"
"""

#: How many executions the report leaves out (dry runs, soft-deleted), from execution_runs.
LEFT_OUT_SQL = f"""
    select
        count(*) as executions,
        count(*) filter (where not ({REPORTED_CONDITION})) as left_out_executions,
        count(*) filter (where is_dry_run) as dry_run_executions,
        count(*) filter (where is_deleted) as deleted_executions,
        count(*) filter (where is_dry_run and is_deleted) as deleted_dry_run_executions
    from {{schema}}.execution_runs
"""

#: Per workflow, all versions together: the rows of workflow_version_cost summed (each
#: execution is in exactly one version's row), with the views' own formulas for the share of
#: executions with a known cost (rate_of) and the cost per completed execution
#: (cost_per_completed). Costliest first; workflows without a known cost last.
WORKFLOW_COST_SQL = """
    with

    versions as (

        select
            workflow_id,
            version_id,
            flow_name,
            executions,
            executions_with_cost,
            total_cost,
            completed_executions
        from {schema}.workflow_version_cost

    ),

    workflows as (

        select
            workflow_id,
            flow_name,
            cast(sum(executions) as bigint) as executions,
            cast(sum(executions_with_cost) as bigint) as executions_with_cost,
            -- In a fixed order, as in the views: the same last bits on every load.
            sum(total_cost order by version_id collate "C" nulls last) as total_cost,
            cast(sum(completed_executions) as bigint) as completed_executions
        from versions
        group by
            workflow_id,
            flow_name

    )

    select
        workflow_id,
        flow_name,
        executions,
        executions_with_cost,
        {schema}.rate_of(executions_with_cost, executions) as cost_known_share,
        total_cost,
        completed_executions,
        {schema}.cost_per_completed(total_cost, completed_executions)
            as cost_per_completed_execution
    from workflows
    order by
        total_cost desc nulls last,
        executions desc,
        workflow_id collate "C"
"""

#: Rows of the terminal report's cost table.
TERMINAL_COST_ROWS = 10

_LOW_SAMPLE_NOTE = "*: fewer than 30 finished steps, read the rate as anecdotal."


def read_frames(
    db_path: Path | str,
    dataset: str,
    queries: Mapping[str, str],
    views: Sequence[str] = REPORT_VIEWS,
    destination: str = "duckdb",
) -> dict[str, pd.DataFrame]:
    """Run each query read-only on the destination, the connection closed before returning.

    The same queries and the same figures on either destination; only where the rows come
    from differs: a DuckDB file opened read-only, or a PostgreSQL database (dlt's credentials,
    as `load --destination postgres` uses them) in one read-only transaction, its rows turned
    into DataFrames the way DuckDB makes them. Both give timestamps in UTC.

    Args:
        db_path: the DuckDB file written by `eachlabs-pipeline load` (or `demo`); unused for
            PostgreSQL.
        dataset: schema of the views.
        queries: name -> SQL; `{schema}` in the SQL is replaced by the quoted dataset name.
        views: views that must exist in the schema before anything is read.
        destination: `duckdb` or `postgres` (`pipelines.targets.DESTINATIONS`).

    Returns:
        name -> DataFrame, in the order of `queries`.

    Raises:
        ConfigError: the file is missing, is not a DuckDB file, is locked by a writer; the
            PostgreSQL credentials are missing or the server cannot be reached; or the schema
            lacks some of `views`. The message says what to do and never holds the password.
    """
    with open_views(destination, db_path, dataset) as source:
        present = set(
            source.frame(
                "select table_name from information_schema.tables where table_schema = "
                f"{literal(dataset)} and table_type = 'VIEW'"
            )["table_name"]
        )
        missing = [view for view in views if view not in present]
        if missing:
            raise ConfigError(
                f"{source.where} lacks the views {', '.join(missing)} in schema {dataset!r}: "
                f"run `eachlabs-pipeline views {source.flags} --dataset {dataset}` (or load "
                "into it first)"
            )
        schema = quote(dataset)
        return {
            name: source.frame(sql.replace("{schema}", schema)) for name, sql in queries.items()
        }


def read_report(
    db_path: Path | str, dataset: str, destination: str = "duckdb"
) -> dict[str, pd.DataFrame]:
    """The headline table, the recent changes, what was left out and the cost per workflow,
    as `read_frames` reads them."""
    return read_frames(
        db_path,
        dataset,
        {
            "headline": HEADLINE_SQL,
            "recent_changes": RECENT_CHANGES_SQL,
            "left_out": LEFT_OUT_SQL,
            "workflow_cost": WORKFLOW_COST_SQL,
        },
        destination=destination,
    )


def workflow_labels(workflows: pd.DataFrame) -> dict[str, str]:
    """How the report names each workflow: workflow_id -> label.

    A workflow is named by its `flow_name`; two workflows sharing a name get the first
    characters of their ID after it ("Name (1a2b3c4d)"); a workflow without a name (its
    executions were loaded by ID only, never listed) is shown by those characters alone.

    Args:
        workflows: rows with `workflow_id` and `flow_name` (null where unknown); a workflow
            may appear on several rows (e.g. one per version), with the same name.
    """
    names = workflows[["workflow_id", "flow_name"]].drop_duplicates("workflow_id")
    known = names.dropna(subset=["flow_name"])
    shared = set(known.loc[known["flow_name"].duplicated(), "flow_name"])
    labels = {}
    for workflow_id, name in zip(names["workflow_id"], names["flow_name"], strict=True):
        short_id = str(workflow_id)[:SHORT_ID_LENGTH]
        if not isinstance(name, str):
            labels[workflow_id] = short_id
        elif name in shared:
            labels[workflow_id] = f"{name} ({short_id})"
        else:
            labels[workflow_id] = name
    return labels


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def format_left_out(left_out: pd.DataFrame) -> str:
    """One sentence: how many executions (dry runs, soft-deleted) the figures leave out."""
    [row] = left_out.itertuples(index=False)
    both = f"; {row.deleted_dry_run_executions:,} both" if row.deleted_dry_run_executions else ""
    return (
        "Dry runs and soft-deleted executions are left out of every figure, as in the views: "
        f"{row.left_out_executions:,} of {_plural(row.executions, 'execution', 'executions')} "
        f"({_plural(row.dry_run_executions, 'dry run', 'dry runs')}, "
        f"{row.deleted_executions:,} soft-deleted{both})."
    )


def format_cost(value: object) -> str:
    """A cost as the API reports it: 2 decimals from 1 up, 3 significant digits below (a
    caption step costs a fraction of a cent)."""
    if pd.isna(value):
        return "-"
    if value == 0 or abs(value) >= 1:
        return f"{value:,.2f}"
    decimals = 2 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


def group_label(step_type: object, model: object) -> str:
    if isinstance(model, str):
        return model
    if isinstance(step_type, str):
        return f"({step_type} steps)"
    return "(steps without metadata)"


def _seconds(value: object) -> str:
    return "-" if pd.isna(value) else f"{value:.1f}"


def _percent(value: object) -> str:
    return "-" if pd.isna(value) else f"{100 * value:.1f}%"


def _interval(low: object, high: object) -> str:
    if pd.isna(low) or pd.isna(high):
        return "-"
    return f"{100 * low:.1f}-{100 * high:.1f}%"


def format_headline(headline: pd.DataFrame) -> str:
    """The headline table as text: one line per model (non-model steps last)."""
    rows = [
        {
            "model": group_label(row.step_type, row.model),
            "finished": int(row.finished_steps),
            "failed": int(row.failed_steps),
            "failure": _percent(row.failure_rate) + ("*" if row.is_low_sample else ""),
            "95% interval": _interval(row.failure_rate_low, row.failure_rate_high),
            "timed": 0 if pd.isna(row.timed_steps) else int(row.timed_steps),
            "p50 s": _seconds(row.p50_seconds),
            "p95 s": _seconds(row.p95_seconds),
        }
        for row in headline.itertuples(index=False)
    ]
    if not rows:
        return "no steps in this dataset yet"
    text = pd.DataFrame(rows).to_string(index=False)
    if headline["is_low_sample"].any():
        text += "\n" + _LOW_SAMPLE_NOTE
    return text


def format_workflow_cost(workflow_cost: pd.DataFrame, labels: Mapping[str, str]) -> str:
    """The costliest workflows as text (at most `TERMINAL_COST_ROWS`); a sentence when no
    execution has a known cost."""
    if workflow_cost.empty or not workflow_cost["executions_with_cost"].any():
        return (
            "no execution with a known cost: costs come with `eachlabs-pipeline load "
            "--workflow` (executions loaded by ID carry none)"
        )
    shown = workflow_cost.head(TERMINAL_COST_ROWS)
    rows = [
        {
            "workflow": labels[row.workflow_id],
            "executions": int(row.executions),
            "cost known": _percent(row.cost_known_share),
            "total cost": format_cost(row.total_cost),
            "completed": int(row.completed_executions),
            "per completed": format_cost(row.cost_per_completed_execution),
        }
        for row in shown.itertuples(index=False)
    ]
    text = pd.DataFrame(rows).to_string(index=False)
    if len(workflow_cost) > len(shown):
        text += f"\n(and {len(workflow_cost) - len(shown):,} more workflows)"
    return text


def format_recent_changes(recent: pd.DataFrame) -> str:
    """The rows of model_recent_changes with a flag set, as text; a sentence when none."""
    if recent.empty:
        return "no steps in the last 35 days of the data: nothing to compare"
    window = (
        f"last 7 days to {recent['window_end_at'].iloc[0]:%Y-%m-%d %H:%M} UTC against the 28 "
        "days before"
    )
    worse = recent[recent["latency_regressed"] | recent["failures_regressed"]]
    if worse.empty:
        return (
            f"nothing got worse ({window}): no p95 latency rose by 20% or more with at least "
            "30 timed steps in both windows, and no failure rate's 95% interval moved "
            "entirely above its earlier one"
        )
    rows = []
    for row in worse.itertuples(index=False):
        what = [
            name
            for name, flag in (
                ("latency", row.latency_regressed),
                ("failures", row.failures_regressed),
            )
            if flag
        ]
        rows.append(
            {
                "model": group_label(row.step_type, row.model),
                "got worse": " + ".join(what),
                "p95 s before": _seconds(row.earlier_p95_seconds),
                "p95 s now": _seconds(row.recent_p95_seconds),
                "change": "-" if pd.isna(row.p95_change) else f"{100 * row.p95_change:+.0f}%",
                "timed before/now": f"{row.earlier_timed_steps}/{row.recent_timed_steps}",
                "failure before": _percent(row.earlier_failure_rate)
                + f" ({_interval(row.earlier_failure_rate_low, row.earlier_failure_rate_high)})",
                "failure now": _percent(row.recent_failure_rate)
                + f" ({_interval(row.recent_failure_rate_low, row.recent_failure_rate_high)})",
                "finished before/now": f"{row.earlier_finished_steps}/{row.recent_finished_steps}",
            }
        )
    return f"{window}:\n" + pd.DataFrame(rows).to_string(index=False)


def terminal_report(db_path: Path | str, dataset: str, destination: str = "duckdb") -> str:
    """What `eachlabs-pipeline report` prints: the headline table, the cost per workflow, then
    what got worse; the same text from either destination but for the first line, which
    names where the views were read."""
    frames = read_report(db_path, dataset, destination)
    workflow_cost = frames["workflow_cost"]
    where = describe_source(destination, db_path, dataset)
    return "\n".join(
        [
            f"Model performance (views in schema {dataset} of {where}):",
            format_headline(frames["headline"]),
            "Failure = failed / (completed + failed) steps, with its 95% Wilson interval; "
            "latency percentiles over the timed (completed) steps.",
            format_left_out(frames["left_out"]),
            "",
            "Cost per workflow (costliest first):",
            format_workflow_cost(workflow_cost, workflow_labels(workflow_cost)),
            "Per completed = total cost (failed and cancelled runs included) / completed "
            "executions; cost known = share of executions with a cost.",
            "",
            "What got worse:",
            format_recent_changes(frames["recent_changes"]),
        ]
    )

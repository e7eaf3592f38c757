"""Time every analytics view over a synthetic 1,000,000-step dataset.

Builds a DuckDB file with the loader's table layout (README "Tables") filled with
synthetic rows generated in SQL (~330k executions, 1,000,000 steps over 90 days, 200
workflows, 40 models x 3 versions plus http / python / metadata-less steps, every status,
a little clock skew), applies the views with `apply_views`, then times a full
`select * from <view>` of each view, fetching every row (as an Arrow table, so the figure
is the view's cost rather than Python object creation).

Usage: python bench/views_bench.py [--executions N] [--steps N] [--repeat N] [--db PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.views import apply_views

DATASET = "eachlabs"

TABLES_DDL = """
create schema {dataset};

create table {dataset}.executions (
    execution_id varchar,
    workflow_id varchar,
    bulk_id varchar,
    status varchar,
    started_at timestamptz,
    completed_at timestamptz,
    inputs json,
    output json,
    error varchar,
    error_cause varchar,
    step_count bigint,
    extra_fields json,
    fetched_at timestamptz,
    latency_seconds double,
    started_date date,
    flow_name varchar,
    version_id varchar,
    created_at timestamptz,
    updated_at timestamptz,
    deleted_at timestamptz,
    dry_run boolean,
    cost json,
    cost_total double,
    triggered_by varchar
);

create table {dataset}.step_outputs (
    execution_id varchar,
    step_id varchar,
    step_position bigint,
    status varchar,
    step_type varchar,
    model varchar,
    model_version varchar,
    started_at timestamptz,
    completed_at timestamptz,
    latency_seconds double,
    output json,
    primary_output json,
    input json,
    error varchar,
    error_cause varchar,
    prediction_id varchar,
    processed_at timestamptz,
    elapsed_seconds double,
    execution_time_seconds double,
    http_method varchar,
    http_url varchar,
    metadata_extra json,
    extra_fields json,
    workflow_id varchar,
    execution_status varchar,
    execution_started_at timestamptz,
    started_date date,
    _tombstone boolean,
    execution_dry_run boolean,
    execution_deleted_at timestamptz
);

create temp table generated_steps as select * from {dataset}.step_outputs where false;
"""

# Steps: `steps_per_execution` each, plus one more for the first `extra` executions, so the
# total is exactly the requested number of steps. Step k of an execution starts where step
# k-1 ended (approximately). Status, type and latency come from hashes of the row number.
STEPS_SQL = """
insert into generated_steps
with

numbered as (

    select
        i as step_number,
        case
            when i < {extra} * ({per} + 1) then i // ({per} + 1)
            else {extra} + (i - {extra} * ({per} + 1)) // {per}
        end as execution_number,
        case
            when i < {extra} * ({per} + 1) then i % ({per} + 1)
            else (i - {extra} * ({per} + 1)) % {per}
        end as step_position,
        hash(i) as h
    from range({steps}) as t(i)

),

shaped as (

    select
        step_number,
        execution_number,
        step_position,
        case
            when h % 1000 < 900 then 'completed'
            when h % 1000 < 950 then 'failed'
            when h % 1000 < 980 then 'cancelled'
            when h % 1000 < 990 then 'running'
            else 'queued'
        end as status,
        case
            when (h // 1000) % 100 < 85 then 'model'
            when (h // 1000) % 100 < 93 then 'http'
            when (h // 1000) % 100 < 99 then 'python'
        end as step_type,
        (h // 100000) % 40 as model_number,
        (h // 10000000) % 3 as version_number,
        -- Long-tailed latency: 0.05 s to ~300 s, microsecond resolution.
        round(exp(((h // 1000000000) % 100000) / 100000.0 * 8.5) * 0.06, 6) as seconds,
        (h // 7) % 5000 = 0 as is_skewed
    from numbered

),

timed as (

    select
        shaped.*,
        timestamptz '2025-09-01 00:00:00+00'
            + to_seconds((execution_number * 7919) % (90 * 86400))
            + to_seconds(step_position * 60) as step_started_at
    from shaped

)

select
    'exec-' || execution_number as execution_id,
    'step' || (step_position + 1) as step_id,
    step_position,
    status,
    step_type,
    case when step_type = 'model' then 'model-' || model_number end as model,
    case when step_type = 'model' then '0.0.' || version_number end as model_version,
    case when status not in ('cancelled', 'queued') then step_started_at end as started_at,
    case
        when status in ('completed', 'failed') and is_skewed
            then step_started_at - to_seconds(2)
        when status in ('completed', 'failed')
            then step_started_at + to_microseconds(cast(seconds * 1000000 as bigint))
    end as completed_at,
    case
        when status in ('completed', 'failed') and is_skewed then -2.0
        when status in ('completed', 'failed') then seconds
    end as latency_seconds,
    case when status = 'completed' then '"https://storage.example.com/o.png"' end as output,
    case when status = 'completed' then '"https://storage.example.com/o.png"' end,
    null as input,
    case when status = 'failed' then 'ModelError' end as error,
    case when status = 'failed' then 'cause ' || (step_number % 7) end as error_cause,
    null, null, null, null,
    case when step_type = 'http' then 'POST' end,
    case when step_type = 'http' then 'https://api.example.com/hook' end,
    null, null,
    null, null, null, null,  -- the execution's columns, carried below
    null,
    null, null
from timed
"""

# Executions: status from their steps (failed if any failed, running if any in flight,
# cancelled for a share of the rest), end-to-end latency from the last step.
EXECUTIONS_SQL = """
insert into {dataset}.executions
with

per_execution as (

    select
        execution_id,
        count(*) as step_count,
        count(*) filter (where status = 'failed') as failed_steps,
        count(*) filter (where status in ('queued', 'running')) as in_flight_steps,
        min(started_at) as first_started_at,
        max(completed_at) as last_completed_at,
        hash(execution_id) as h
    from generated_steps
    group by execution_id

)

select
    execution_id,
    'wf-' || (h % 200) as workflow_id,
    null as bulk_id,
    case
        when failed_steps > 0 then 'failed'
        when in_flight_steps > 0 then 'running'
        when h % 100 = 0 then 'cancelled'
        else 'completed'
    end as status,
    coalesce(first_started_at, timestamptz '2025-09-01 00:00:00+00') as started_at,
    case when in_flight_steps = 0 then last_completed_at end as completed_at,
    '{{"prompt": "bench"}}' as inputs,
    null as output,
    case when failed_steps > 0 then 'ExecutionFailed' end as error,
    case when failed_steps > 0 then 'a step failed' end as error_cause,
    step_count,
    null as extra_fields,
    now() as fetched_at,
    null as latency_seconds,
    null as started_date,
    -- The list endpoint's summary: 2% dry runs, 1.5% soft-deleted, a cost for most.
    'Workflow ' || (h % 200) as flow_name,
    'v' || (h // 200) % 3 as version_id,
    coalesce(first_started_at, timestamptz '2025-09-01 00:00:00+00') as created_at,
    coalesce(last_completed_at, first_started_at) as updated_at,
    case when (h // 7) % 1000 < 15 then last_completed_at + to_seconds(60) end as deleted_at,
    (h // 11) % 100 < 2 as dry_run,
    case when (h // 13) % 100 >= 3 then ((h // 17) % 1000) / 1000.0 end as cost,
    case when (h // 13) % 100 >= 3 then ((h // 17) % 1000) / 1000.0 end as cost_total,
    'user-' || (h % 6) as triggered_by
from per_execution
"""

# The loader derives each execution's latency and UTC start date; do the same.
DERIVE_SQL = """
update {dataset}.executions set
    latency_seconds = (epoch_us(completed_at) - epoch_us(started_at)) / 1000000.0,
    started_date = cast(started_at at time zone 'UTC' as date)
"""

# The loader carries each execution's workflow, status, start and the step's UTC start
# date (falling back to the execution's) on the step rows; do the same.
CARRY_SQL = """
insert into {dataset}.step_outputs
select
    s.* exclude (workflow_id, execution_status, execution_started_at, started_date, _tombstone,
                 execution_dry_run, execution_deleted_at),
    e.workflow_id,
    e.status,
    e.started_at,
    cast(coalesce(s.started_at, e.started_at) at time zone 'UTC' as date),
    null,
    e.dry_run,
    e.deleted_at
from generated_steps as s
join {dataset}.executions as e using (execution_id)
order by s.rowid
"""


def build_database(db_path: Path, executions: int, steps: int) -> None:
    """Create the loader's tables in `db_path` and fill them with synthetic rows."""
    per = steps // executions
    extra = steps - per * executions
    with duckdb.connect(str(db_path)) as connection:
        connection.execute(TABLES_DDL.format(dataset=DATASET))
        connection.execute(STEPS_SQL.format(dataset=DATASET, steps=steps, per=per, extra=extra))
        connection.execute(EXECUTIONS_SQL.format(dataset=DATASET))
        connection.execute(DERIVE_SQL.format(dataset=DATASET))
        connection.execute(CARRY_SQL.format(dataset=DATASET))
        connection.execute("drop table generated_steps")
        connection.execute("checkpoint")


def time_views(db_path: Path, repeat: int) -> list[tuple[str, int, float, float]]:
    """Apply the views, then time `select *` of each: (view, rows, best s, median s)."""
    results = []
    with duckdb.connect(str(db_path)) as connection:
        names = apply_views(connection, DATASET)
        for name in names:
            seconds = []
            rows = 0
            for _ in range(repeat):
                started = time.perf_counter()
                table = connection.sql(f'select * from {DATASET}."{name}"').to_arrow_table()
                seconds.append(time.perf_counter() - started)
                rows = table.num_rows
            results.append((name, rows, min(seconds), statistics.median(seconds)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=330_000)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per view")
    parser.add_argument("--db", type=Path, help="build here (default: a temporary file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db_path = args.db or Path(tmp) / "views_bench.duckdb"
        if db_path.exists():
            db_path.unlink()
        started = time.perf_counter()
        build_database(db_path, args.executions, args.steps)
        print(
            f"built {args.executions:,} executions / {args.steps:,} steps in "
            f"{time.perf_counter() - started:.1f} s ({db_path})"
        )
        results = time_views(db_path, args.repeat)

    print(f"\nselect * from each view, all rows fetched (best / median of {args.repeat}):\n")
    print(f"| {'view':<30} | {'rows':>9} | {'best s':>7} | {'median s':>8} |")
    print(f"|{'-' * 32}|{'-' * 10}:|{'-' * 8}:|{'-' * 9}:|")
    for name, rows, best, median in results:
        print(f"| {name:<30} | {rows:>9,} | {best:>7.3f} | {median:>8.3f} |")


if __name__ == "__main__":
    main()

-- Formulas shared by the views (DuckDB), each defined once.
--
-- `pipelines.views.apply_views` creates these macros in the dataset's schema, in this
-- file's order and in the same transaction as the views, before the views. Each statement
-- is `create or replace macro <name>(...) as ...` with an unqualified name (the applier
-- adds the schema) and ends with a semicolon at the end of a line followed by a blank line.
-- A macro that reads a view (step_latency, trailing_week, latest_flow_names) is created
-- just before the first view calling it. sql/macros/postgres.sql holds the same formulas as PostgreSQL functions; keep the two
-- files in step.

-- z of the 95% two-sided normal interval, as a double (a decimal literal would make
-- z * z a decimal product and change the last bits of the bounds).
create or replace macro wilson_z() as
    cast(1.959963984540054 as double precision);

-- Wilson score bound for k events out of n trials, in count form:
--     (k + z^2/2 + side * z * sqrt(k * (n - k) / n + z^2/4)) / (n + z^2)
-- side = -1 gives the lower bound, +1 the upper one. The lower bound at k = 0 is exactly 0
-- and the upper bound at k = n exactly 1; null when n = 0.
create or replace macro wilson_bound(k, n, side) as
    case
        when n = 0 then null
        when side < 0 and k = 0 then cast(0 as double precision)
        when side > 0 and k = n then cast(1 as double precision)
        else (
            k + wilson_z() * wilson_z() / 2
            + side * wilson_z() * sqrt(
                cast(k as double precision) * (n - k) / n + wilson_z() * wilson_z() / 4
            )
        ) / (n + wilson_z() * wilson_z())
    end;

create or replace macro wilson_low(k, n) as wilson_bound(k, n, -1);

create or replace macro wilson_high(k, n) as wilson_bound(k, n, 1);

-- k / n as a double; null when n = 0 (a rate of nothing is unknown, not 0).
create or replace macro rate_of(k, n) as
    case when n > 0 then cast(k as double precision) / n end;

-- The latency-sample rule: the latency of a completed step or execution with both
-- timestamps and no clock skew; null for anything else (count() and percentile_cont()
-- skip nulls, so the sample is the non-null values).
create or replace macro latency_sample(status, latency_seconds) as
    case when status = 'completed' and latency_seconds >= 0 then latency_seconds end;

-- Cost per completed execution: the cost of every execution counted (completed, failed,
-- cancelled or running alike) over the completed ones, i.e. what one successful result
-- costs, failed runs' cost included. Null when nothing completed or no execution has a cost.
create or replace macro cost_per_completed(total_cost, completed_executions) as
    case
        when completed_executions > 0
            then cast(total_cost as double precision) / completed_executions
    end;

-- Latency statistics of step_runs' latency sample, per (step_type, model) or, with
-- by_version, per (step_type, model, model_version): the one query behind
-- step_latency_by_model and step_latency_by_model_version (percentiles cannot be
-- re-aggregated from per-version rows, so each view groups the steps itself). Without
-- by_version, model_version is null on every row.
create or replace macro step_latency(by_version) as table
    with

    grouped as (

        select
            step_type,
            model,
            case when by_version then model_version end as model_version,
            count(sample_seconds) as completed_steps,
            count(*) filter (where is_skewed_completion) as skewed_steps,
            count(*) filter (where is_untimed_completion) as untimed_steps,
            -- Summed as whole microseconds (exact, in any order), so the mean does not depend
            -- on the order the rows were loaded in, as a sum of doubles would.
            avg(cast(round(sample_seconds * 1000000) as bigint)) / 1000000 as avg_seconds,
            min(sample_seconds) as min_seconds,
            -- One aggregate for the five fractions: the sample is ordered once.
            percentile_cont(array[0.50, 0.75, 0.90, 0.95, 0.99]) within group (
                order by sample_seconds
            ) as percentiles,
            max(sample_seconds) as max_seconds
        from step_runs
        -- Reporting honesty: dry runs called no model and soft-deleted executions are gone.
        where
            not is_dry_run
            and not is_deleted
        group by
            step_type,
            model,
            case when by_version then model_version end

    )

    select
        step_type,
        model,
        model_version,
        completed_steps,
        skewed_steps,
        untimed_steps,
        avg_seconds,
        min_seconds,
        percentiles[1] as p50_seconds,
        percentiles[2] as p75_seconds,
        percentiles[3] as p90_seconds,
        percentiles[4] as p95_seconds,
        percentiles[5] as p99_seconds,
        max_seconds
    from grouped;

-- Step counts and latency statistics over trailing weeks: one row per (step_type, model,
-- started_date) on which the group had a step, over that day and the six before it. One pass
-- over step_runs: each day's counts and latency sample are gathered once, then each week sums
-- its seven days' counts and takes exact percentiles of the union of their samples (a join of
-- days to steps would read every step seven times over, and DuckDB's windowed quantile is
-- slower still). Behind model_trailing_performance.
create or replace macro trailing_week() as table
    with

    days as (

        select
            step_type,
            model,
            started_date,
            count(*) filter (where is_finished) as finished_steps,
            count(*) filter (where status = 'failed') as failed_steps,
            list(sample_seconds) filter (where sample_seconds is not null) as samples
        from step_runs
        where
            started_date is not null
            and not is_dry_run
            and not is_deleted
        group by
            step_type,
            model,
            started_date

    ),

    weeks as (

        select
            step_type,
            model,
            started_date,
            sum(finished_steps) over trailing_days as finished_steps,
            sum(failed_steps) over trailing_days as failed_steps,
            flatten(list(samples) over trailing_days) as samples
        from days
        window trailing_days as (
            partition by step_type, model
            order by started_date
            range between interval '6 days' preceding and current row
        )

    ),

    with_percentiles as (

        select
            step_type,
            model,
            started_date,
            cast(finished_steps as bigint) as finished_steps,
            cast(failed_steps as bigint) as failed_steps,
            cast(len(samples) as bigint) as timed_steps,
            -- Both fractions in one call: each week's sample is ordered once.
            list_aggregate(samples, 'quantile_cont', [0.50, 0.95]) as percentiles
        from weeks

    )

    select
        step_type,
        model,
        started_date,
        finished_steps,
        failed_steps,
        timed_steps,
        percentiles[1] as p50_seconds,
        percentiles[2] as p95_seconds
    from with_percentiles;

-- Each workflow's name: the flow_name of its most recent listed execution (by started_at,
-- else created_at; among executions at the same time, the alphabetically first name), dry
-- runs and soft-deleted executions left out as in every reporting view. One row per
-- workflow_id with at least one such execution carrying a flow_name; executions loaded by ID
-- only have none. Behind workflow_performance, workflow_cost_daily and workflow_version_cost.
create or replace macro latest_flow_names() as table
    with

    named as (

        select
            workflow_id,
            flow_name,
            row_number() over (
                partition by workflow_id
                order by coalesce(started_at, created_at) desc nulls last, flow_name asc
            ) as recency_rank
        from execution_runs
        where
            flow_name is not null
            and not is_dry_run
            and not is_deleted

    )

    select
        workflow_id,
        flow_name
    from named
    where recency_rank = 1;

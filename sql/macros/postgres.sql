-- Formulas shared by the views (PostgreSQL), each defined once: the same as
-- sql/macros/duckdb.sql, as SQL functions. Keep the two files in step.
--
-- Same file rules as duckdb.sql: unqualified names, each statement ending with a semicolon
-- at the end of a line followed by a blank line. `pipelines.views.view_statements(dataset,
-- dialect="postgres")` gives the functions and the views in the order to run them, every
-- created name qualified: run them with the dataset's schema first on the search path (a
-- function calling another binds it when created). The scalar functions are `immutable`
-- single-expression SQL functions, which PostgreSQL inlines into the queries that call them,
-- so they cost no function call per row. The table functions (step_latency, trailing_week,
-- latest_flow_names) have a SQL-standard body (`begin atomic`): like a view, each binds the
-- view it reads when it is created (so it comes after that view and before its first caller)
-- and reads the dataset's view whatever the caller's search path.

-- z of the 95% two-sided normal interval.
create or replace function wilson_z() returns double precision
    language sql immutable parallel safe
    return cast(1.959963984540054 as double precision);

-- Wilson score bound for k events out of n trials, in count form:
--     (k + z^2/2 + side * z * sqrt(k * (n - k) / n + z^2/4)) / (n + z^2)
-- side = -1 gives the lower bound, +1 the upper one. The lower bound at k = 0 is exactly 0
-- and the upper bound at k = n exactly 1; null when n = 0.
create or replace function wilson_bound(k bigint, n bigint, side integer)
    returns double precision
    language sql immutable parallel safe
    return case
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

create or replace function wilson_low(k bigint, n bigint) returns double precision
    language sql immutable parallel safe
    return wilson_bound(k, n, -1);

create or replace function wilson_high(k bigint, n bigint) returns double precision
    language sql immutable parallel safe
    return wilson_bound(k, n, 1);

-- k / n as a double; null when n = 0 (a rate of nothing is unknown, not 0).
create or replace function rate_of(k bigint, n bigint) returns double precision
    language sql immutable parallel safe
    return case when n > 0 then cast(k as double precision) / n end;

-- The latency-sample rule: the latency of a completed step or execution with both
-- timestamps and no clock skew; null for anything else.
create or replace function latency_sample(status text, latency_seconds double precision)
    returns double precision
    language sql immutable parallel safe
    return case when status = 'completed' and latency_seconds >= 0 then latency_seconds end;

-- Cost per completed execution: the cost of every execution counted (completed, failed,
-- cancelled or running alike) over the completed ones, i.e. what one successful result
-- costs, failed runs' cost included. Null when nothing completed or no execution has a cost.
create or replace function cost_per_completed(
    total_cost double precision, completed_executions bigint
)
    returns double precision
    language sql immutable parallel safe
    return case
        when completed_executions > 0
            then cast(total_cost as double precision) / completed_executions
    end;

-- Latency statistics of step_runs' latency sample, per (step_type, model) or, with
-- by_version, per (step_type, model, model_version): the one query behind
-- step_latency_by_model and step_latency_by_model_version. Without by_version,
-- model_version is null on every row.
create or replace function step_latency(by_version boolean)
    returns table (
        step_type text,
        model text,
        model_version text,
        completed_steps bigint,
        skewed_steps bigint,
        untimed_steps bigint,
        avg_seconds double precision,
        min_seconds double precision,
        p50_seconds double precision,
        p75_seconds double precision,
        p90_seconds double precision,
        p95_seconds double precision,
        p99_seconds double precision,
        max_seconds double precision
    )
    language sql stable parallel safe
    begin atomic
    with

    grouped as (

        select
            step_runs.step_type,
            step_runs.model,
            case when by_version then step_runs.model_version end as model_version,
            count(step_runs.sample_seconds) as completed_steps,
            count(*) filter (where step_runs.is_skewed_completion) as skewed_steps,
            count(*) filter (where step_runs.is_untimed_completion) as untimed_steps,
            -- Summed as whole microseconds (exact, in any order), so the mean does not depend
            -- on the order the rows were loaded in, as a sum of doubles would.
            cast(
                avg(cast(round(step_runs.sample_seconds * 1000000) as bigint)) / 1000000
                as double precision
            ) as avg_seconds,
            min(step_runs.sample_seconds) as min_seconds,
            -- One aggregate for the five fractions: the sample is ordered once.
            percentile_cont(array[0.50, 0.75, 0.90, 0.95, 0.99]) within group (
                order by step_runs.sample_seconds
            ) as percentiles,
            max(step_runs.sample_seconds) as max_seconds
        from step_runs
        -- Reporting honesty: dry runs called no model and soft-deleted executions are gone.
        where
            not step_runs.is_dry_run
            and not step_runs.is_deleted
        group by
            step_runs.step_type,
            step_runs.model,
            case when by_version then step_runs.model_version end

    )

    select
        grouped.step_type,
        grouped.model,
        grouped.model_version,
        grouped.completed_steps,
        grouped.skewed_steps,
        grouped.untimed_steps,
        grouped.avg_seconds,
        grouped.min_seconds,
        grouped.percentiles[1] as p50_seconds,
        grouped.percentiles[2] as p75_seconds,
        grouped.percentiles[3] as p90_seconds,
        grouped.percentiles[4] as p95_seconds,
        grouped.percentiles[5] as p99_seconds,
        grouped.max_seconds
    from grouped;
    end;

-- Step counts and latency statistics over trailing weeks: one row per (step_type, model,
-- started_date) on which the group had a step, over that day and the six before it (exact
-- percentiles; PostgreSQL allows no ordered-set aggregate over a window, so each day is
-- joined to the steps of its week). The join is on equality only (a number per group, and
-- each of the week's seven dates), so PostgreSQL can hash it: `is not distinct from` or a
-- date range would make it compare every day with every step. Behind
-- model_trailing_performance.
create or replace function trailing_week()
    returns table (
        step_type text,
        model text,
        started_date date,
        finished_steps bigint,
        failed_steps bigint,
        timed_steps bigint,
        p50_seconds double precision,
        p95_seconds double precision
    )
    language sql stable parallel safe
    begin atomic
    with

    steps as (

        select
            step_runs.step_type,
            step_runs.model,
            -- Nulls sort together, so (null, null) steps share one number too.
            dense_rank() over (order by step_runs.step_type, step_runs.model) as group_number,
            step_runs.started_date,
            step_runs.is_finished,
            step_runs.status,
            step_runs.sample_seconds
        from step_runs
        where
            step_runs.started_date is not null
            and not step_runs.is_dry_run
            and not step_runs.is_deleted

    ),

    days as (

        select distinct
            steps.group_number,
            steps.step_type,
            steps.model,
            steps.started_date
        from steps

    ),

    week_dates as (

        select
            days.group_number,
            days.step_type,
            days.model,
            days.started_date,
            days.started_date - days_back.n as step_date
        from days
        cross join generate_series(0, 6) as days_back (n)

    )

    select
        week_dates.step_type,
        week_dates.model,
        week_dates.started_date,
        count(*) filter (where steps.is_finished) as finished_steps,
        count(*) filter (where steps.status = 'failed') as failed_steps,
        count(steps.sample_seconds) as timed_steps,
        percentile_cont(0.50) within group (order by steps.sample_seconds) as p50_seconds,
        percentile_cont(0.95) within group (order by steps.sample_seconds) as p95_seconds
    from week_dates
    join steps
        on steps.group_number = week_dates.group_number
        and steps.started_date = week_dates.step_date
    group by
        week_dates.step_type,
        week_dates.model,
        week_dates.started_date;
    end;

-- Each workflow's name: the flow_name of its most recent listed execution (by started_at,
-- else created_at; among executions at the same time, the alphabetically first name), dry
-- runs and soft-deleted executions left out as in every reporting view. One row per
-- workflow_id with at least one such execution carrying a flow_name; executions loaded by ID
-- only have none. Behind workflow_performance, workflow_cost_daily and workflow_version_cost.
create or replace function latest_flow_names()
    returns table (
        workflow_id text,
        flow_name text
    )
    language sql stable parallel safe
    begin atomic
    with

    named as (

        select
            execution_runs.workflow_id,
            execution_runs.flow_name,
            row_number() over (
                partition by execution_runs.workflow_id
                order by
                    coalesce(execution_runs.started_at, execution_runs.created_at) desc
                        nulls last,
                    execution_runs.flow_name asc
            ) as recency_rank
        from execution_runs
        where
            execution_runs.flow_name is not null
            and not execution_runs.is_dry_run
            and not execution_runs.is_deleted

    )

    select
        named.workflow_id,
        named.flow_name
    from named
    where named.recency_rank = 1;
    end;

-- model_daily_performance (reporting view)
--
-- Grain: one row per UTC day x (step_type, model) on which that group had at least one step
-- (no rows for days without steps). Non-model steps keep their own rows ('http' / 'python'
-- with a null model); steps without metadata form the (null, null) rows.
--
-- Day: the UTC calendar date of the step's started_at; steps that never started (queued,
-- cancelled) fall back to their execution's started_at. started_date is null only when
-- neither timestamp is known.
--
-- Columns:
--   started_date       UTC day (date) the steps started, as described above.
--   step_type          'model', 'http', 'python' or null (no metadata).
--   model              model identifier; null for non-model steps.
--   total_steps        all steps of the day, any status.
--   completed_steps    steps with status completed.
--   failed_steps       steps with status failed.
--   cancelled_steps    steps that never ran (an earlier step failed, or the execution
--                      was cancelled).
--   in_flight_steps    steps still queued or running.
--   finished_steps     completed_steps + failed_steps: the denominator of failure_rate.
--   failure_rate       failed_steps / finished_steps; null when finished_steps = 0.
--   failure_rate_low   lower bound of the 95% Wilson score interval (z = 1.959963984540054);
--                      null when finished_steps = 0.
--   failure_rate_high  upper bound of that interval; null when finished_steps = 0.
--   is_low_sample      true when fewer than 30 steps finished that day.
--   skewed_steps       completed steps whose completion precedes their start (clock skew);
--                      kept out of the latency figures.
--   p50_seconds        median latency of the day's completed steps with both timestamps and
--                      no skew (percentile_cont 0.50); null (not 0) when there is none.
--   p95_seconds        95th percentile of the same sample; null when there is none.
-- Counts are 0, never null, on the days a row exists.

with

steps as (

    select
        started_date,
        step_type,
        model,
        status,
        latency_seconds,
        is_skewed
    from step_runs

),

wilson as (

    select cast(1.959963984540054 as double precision) as z

),

classified as (

    select
        started_date,
        step_type,
        model,
        status,
        case
            when status = 'completed' and latency_seconds >= 0 then latency_seconds
        end as sample_seconds,
        status = 'completed' and is_skewed as is_skewed_completion
    from steps

),

daily_counts as (

    select
        started_date,
        step_type,
        model,
        count(*) as total_steps,
        count(*) filter (where status = 'completed') as completed_steps,
        count(*) filter (where status = 'failed') as failed_steps,
        count(*) filter (where status = 'cancelled') as cancelled_steps,
        count(*) filter (where status in ('queued', 'running')) as in_flight_steps,
        count(*) filter (where status in ('completed', 'failed')) as finished_steps,
        count(*) filter (where is_skewed_completion) as skewed_steps,
        -- Both fractions in one aggregate: the sample is ordered once.
        percentile_cont(array[0.50, 0.95]) within group (
            order by sample_seconds
        ) as percentiles
    from classified
    group by
        started_date,
        step_type,
        model

),

final as (

    select
        daily_counts.started_date,
        daily_counts.step_type,
        daily_counts.model,
        daily_counts.total_steps,
        daily_counts.completed_steps,
        daily_counts.failed_steps,
        daily_counts.cancelled_steps,
        daily_counts.in_flight_steps,
        daily_counts.finished_steps,
        case
            when daily_counts.finished_steps > 0
                then cast(daily_counts.failed_steps as double precision)
                / daily_counts.finished_steps
        end as failure_rate,
        -- Wilson score bounds, count form (see model_failure_rates).
        case
            when daily_counts.finished_steps = 0 then null
            when daily_counts.failed_steps = 0 then cast(0 as double precision)
            else (
                daily_counts.failed_steps + wilson.z * wilson.z / 2
                - wilson.z * sqrt(
                    cast(daily_counts.failed_steps as double precision)
                    * (daily_counts.finished_steps - daily_counts.failed_steps)
                    / daily_counts.finished_steps
                    + wilson.z * wilson.z / 4
                )
            ) / (daily_counts.finished_steps + wilson.z * wilson.z)
        end as failure_rate_low,
        case
            when daily_counts.finished_steps = 0 then null
            when daily_counts.failed_steps = daily_counts.finished_steps
                then cast(1 as double precision)
            else (
                daily_counts.failed_steps + wilson.z * wilson.z / 2
                + wilson.z * sqrt(
                    cast(daily_counts.failed_steps as double precision)
                    * (daily_counts.finished_steps - daily_counts.failed_steps)
                    / daily_counts.finished_steps
                    + wilson.z * wilson.z / 4
                )
            ) / (daily_counts.finished_steps + wilson.z * wilson.z)
        end as failure_rate_high,
        daily_counts.finished_steps < 30 as is_low_sample,
        daily_counts.skewed_steps,
        daily_counts.percentiles[1] as p50_seconds,
        daily_counts.percentiles[2] as p95_seconds
    from daily_counts
    cross join wilson

)

select
    started_date,
    step_type,
    model,
    total_steps,
    completed_steps,
    failed_steps,
    cancelled_steps,
    in_flight_steps,
    finished_steps,
    failure_rate,
    failure_rate_low,
    failure_rate_high,
    is_low_sample,
    skewed_steps,
    p50_seconds,
    p95_seconds
from final

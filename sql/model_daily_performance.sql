-- model_daily_performance (reporting view)
--
-- Grain: one row per UTC day x (step_type, model) on which that group had at least one step
-- (no rows for days without steps). Non-model steps keep their own rows ('http' / 'python'
-- with a null model); steps without metadata form the (null, null) rows.
--
-- Steps of dry runs (no model was called) and of soft-deleted executions are left out
-- (step_runs.is_dry_run / is_deleted).
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
--   failure_rate_low   lower bound of the 95% Wilson score interval (macro wilson_low);
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
        is_finished,
        is_in_flight,
        sample_seconds,
        is_skewed_completion
    from step_runs
    -- Dry runs called no model and soft-deleted executions are gone: neither is reported.
    where
        not is_dry_run
        and not is_deleted

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
        count(*) filter (where is_in_flight) as in_flight_steps,
        count(*) filter (where is_finished) as finished_steps,
        count(*) filter (where is_skewed_completion) as skewed_steps,
        -- Both fractions in one aggregate: the sample is ordered once.
        percentile_cont(array[0.50, 0.95]) within group (
            order by sample_seconds
        ) as percentiles
    from steps
    group by
        started_date,
        step_type,
        model

),

final as (

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
        rate_of(failed_steps, finished_steps) as failure_rate,
        wilson_low(failed_steps, finished_steps) as failure_rate_low,
        wilson_high(failed_steps, finished_steps) as failure_rate_high,
        finished_steps < 30 as is_low_sample,
        skewed_steps,
        percentiles[1] as p50_seconds,
        percentiles[2] as p95_seconds
    from daily_counts

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

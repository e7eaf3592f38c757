-- model_failure_rates (reporting view)
--
-- Grain: one row per (step_type, model) that has at least one step of any status.
-- Non-model steps keep their own rows ('http' / 'python' with a null model); steps without
-- metadata form the (null, null) row.
--
-- Steps of dry runs (no model was called) and of soft-deleted executions are left out
-- (step_runs.is_dry_run / is_deleted).
--
-- The failure rate only counts steps that finished by themselves: completed or failed.
-- Cancelled steps (never ran: an earlier step failed or the execution was cancelled) are not
-- failures of their model, and in-flight steps (queued / running) have no outcome yet.
--
-- Columns:
--   step_type            'model', 'http', 'python' or null (no metadata).
--   model                model identifier; null for non-model steps.
--   total_steps          all steps, any status.
--   completed_steps      steps with status completed.
--   failed_steps         steps with status failed.
--   cancelled_steps      steps that never ran (an earlier step failed, or the execution
--                        was cancelled).
--   in_flight_steps      steps still queued or running.
--   finished_steps       completed_steps + failed_steps: the denominator of failure_rate.
--   failure_rate         failed_steps / finished_steps; null when finished_steps = 0.
--   failure_rate_low     lower bound of the 95% Wilson score interval of failure_rate
--                        (macro wilson_low); null when finished_steps = 0.
--   failure_rate_high    upper bound of that interval; null when finished_steps = 0.
--   failure_seconds_p50  median time to failure: latency of failed steps with both timestamps
--                        and no clock skew (percentile_cont 0.50); null when there is none.
--   skewed_failed_steps  failed steps left out of failure_seconds_p50 because they completed
--                        before they started (clock skew).
--   is_low_sample        true when fewer than 30 steps finished: treat the rate as anecdotal.


with

steps as (

    select
        step_type,
        model,
        status,
        is_finished,
        is_in_flight,
        failure_seconds,
        is_skewed_failure
    from step_runs
    -- Dry runs called no model and soft-deleted executions are gone: neither is reported.
    where
        not is_dry_run
        and not is_deleted

),

step_counts as (

    select
        step_type,
        model,
        count(*) as total_steps,
        count(*) filter (where status = 'completed') as completed_steps,
        count(*) filter (where status = 'failed') as failed_steps,
        count(*) filter (where status = 'cancelled') as cancelled_steps,
        count(*) filter (where is_in_flight) as in_flight_steps,
        count(*) filter (where is_finished) as finished_steps,
        percentile_cont(0.50) within group (order by failure_seconds) as failure_seconds_p50,
        count(*) filter (where is_skewed_failure) as skewed_failed_steps
    from steps
    group by
        step_type,
        model

),

final as (

    select
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
        failure_seconds_p50,
        skewed_failed_steps,
        finished_steps < 30 as is_low_sample
    from step_counts

)

select
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
    failure_seconds_p50,
    skewed_failed_steps,
    is_low_sample
from final

-- model_trailing_performance (reporting view)
--
-- Grain: one row per UTC day x (step_type, model), the same rows as model_daily_performance
-- (days with at least one step; steps without a start day are left out). Every figure covers
-- the trailing week: the 7 UTC days ending on started_date (that day and the six before).
-- A week gathers enough steps to read a rate or a p95 where a single day has a handful; the
-- daily charts of the report draw these.
--
-- Steps of dry runs (no model was called) and of soft-deleted executions are left out
-- (step_runs.is_dry_run / is_deleted), in the table macro trailing_week.
--
-- Columns:
--   started_date           UTC day the trailing week ends on (as in model_daily_performance).
--   window_start_date      first day of the week: started_date - 6.
--   step_type              'model', 'http', 'python' or null (no metadata).
--   model                  model identifier; null for non-model steps.
--   finished_steps         completed + failed steps of the week: the denominator of
--                          failure_rate.
--   failed_steps           failed steps of the week.
--   failure_rate           failed_steps / finished_steps; null when finished_steps = 0.
--   failure_rate_low       lower bound of the 95% Wilson score interval (macro wilson_low);
--                          null when finished_steps = 0.
--   failure_rate_high      upper bound of that interval; null when finished_steps = 0.
--   is_low_sample          true when fewer than 30 steps finished in the week: read the rate
--                          as anecdotal (the report draws no interval band there).
--   timed_steps            completed steps of the week in the latency sample (step_runs'
--                          sample_seconds: both timestamps, no clock skew).
--   p50_seconds            median latency of the week's sample (percentile_cont 0.50); null
--                          when timed_steps = 0.
--   p95_seconds            95th percentile of the same sample; null when timed_steps = 0.
--   is_low_latency_sample  true when fewer than 30 steps are in the week's latency sample.
-- The figures come from the table macro trailing_week (sql/macros/<dialect>.sql).


with

weeks as (

    select
        step_type,
        model,
        started_date,
        finished_steps,
        failed_steps,
        timed_steps,
        p50_seconds,
        p95_seconds
    from trailing_week()

),

final as (

    select
        started_date,
        started_date - 6 as window_start_date,
        step_type,
        model,
        finished_steps,
        failed_steps,
        rate_of(failed_steps, finished_steps) as failure_rate,
        wilson_low(failed_steps, finished_steps) as failure_rate_low,
        wilson_high(failed_steps, finished_steps) as failure_rate_high,
        finished_steps < 30 as is_low_sample,
        timed_steps,
        p50_seconds,
        p95_seconds,
        timed_steps < 30 as is_low_latency_sample
    from weeks

)

select
    started_date,
    window_start_date,
    step_type,
    model,
    finished_steps,
    failed_steps,
    failure_rate,
    failure_rate_low,
    failure_rate_high,
    is_low_sample,
    timed_steps,
    p50_seconds,
    p95_seconds,
    is_low_latency_sample
from final

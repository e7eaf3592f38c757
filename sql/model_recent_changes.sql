-- model_recent_changes (reporting view)
--
-- Grain: one row per (step_type, model) with at least one step in either window below.
-- Non-model steps keep their own rows ('http' / 'python' with a null model); steps without
-- metadata form the (null, null) row.
--
-- Steps of dry runs (no model was called) and of soft-deleted executions are left out
-- (step_runs.is_dry_run / is_deleted); the windows end at the latest step kept.
--
-- "What got worse": the last 7 days against the 28 days before them. Both windows end at the
-- latest step in the data, not at the wall clock, so the view gives the same answer whenever
-- it is read:
--   window_end_at  = the latest step start in the dataset (a step that never started counts
--                    at its execution's start, as in step_runs.started_date);
--   recent window  = (window_end_at - 7 x 24 h, window_end_at];
--   earlier window = (window_end_at - 35 x 24 h, window_end_at - 7 x 24 h].
-- A step belongs to the window holding its start (same fallback); older steps are left out.
-- Windows are counted in hours, not calendar days, so a DST change in the session's time
-- zone never moves them.
--
-- Latency sample of a window: its completed steps with both timestamps and no clock skew.
-- Failure rate of a window: failed / (completed + failed), with its 95% Wilson score interval
-- (macros wilson_low / wilson_high), as in model_failure_rates.
--
-- Columns:
--   step_type                   'model', 'http', 'python' or null (no metadata).
--   model                       model identifier; null for non-model steps.
--   window_end_at               end of both windows (timestamptz, UTC); the same on every row.
--   recent_from_at              start of the recent window (excluded): window_end_at - 7 days.
--   earlier_from_at             start of the earlier window (excluded): window_end_at - 35 days.
--   earlier_timed_steps         size of the earlier window's latency sample.
--   earlier_p50_seconds         median latency of that sample (percentile_cont 0.50); null
--                               when the sample is empty.
--   earlier_p95_seconds         95th percentile latency of that sample; null when empty.
--   earlier_finished_steps      completed + failed steps of the earlier window.
--   earlier_failed_steps        failed steps of the earlier window.
--   earlier_failure_rate        earlier_failed_steps / earlier_finished_steps; null when
--                               nothing finished.
--   earlier_failure_rate_low    lower bound of its 95% Wilson interval; null when nothing
--                               finished.
--   earlier_failure_rate_high   upper bound of that interval; null when nothing finished.
--   recent_timed_steps, recent_p50_seconds, recent_p95_seconds, recent_finished_steps,
--   recent_failed_steps, recent_failure_rate, recent_failure_rate_low,
--   recent_failure_rate_high    the same figures for the recent window.
--   p95_change                  recent_p95_seconds / earlier_p95_seconds - 1 (0.2 = 20%
--                               slower); null unless both are known and earlier > 0.
--   latency_regressed           true when both windows hold at least 30 timed steps and
--                               recent_p95_seconds >= 1.2 x earlier_p95_seconds (compared
--                               as 5 x recent >= 6 x earlier, so exactly +20% counts; a p95
--                               of 0 in both windows is no regression).
--   failures_regressed          true when the recent Wilson interval lies entirely above the
--                               earlier one: recent_failure_rate_low > earlier_failure_rate_high.
-- Counts are 0, never null; both flags are false, never null, when a window has no data.

with

steps as (

    select
        step_type,
        model,
        is_finished,
        status,
        sample_seconds,
        coalesce(started_at, execution_started_at) as placed_at
    from step_runs
    -- Dry runs called no model and soft-deleted executions are gone: neither is reported.
    where
        not is_dry_run
        and not is_deleted

),

bounds as (

    select
        max(placed_at) as window_end_at,
        max(placed_at) - interval '168 hours' as recent_from_at,
        max(placed_at) - interval '840 hours' as earlier_from_at
    from steps

),

windowed as (

    select
        steps.step_type,
        steps.model,
        case
            when steps.placed_at > bounds.recent_from_at then 'recent'
            else 'earlier'
        end as window_name,
        steps.is_finished,
        steps.status,
        steps.sample_seconds
    from steps
    cross join bounds
    where steps.placed_at > bounds.earlier_from_at

),

window_counts as (

    select
        step_type,
        model,
        window_name,
        count(sample_seconds) as timed_steps,
        percentile_cont(0.50) within group (order by sample_seconds) as p50_seconds,
        percentile_cont(0.95) within group (order by sample_seconds) as p95_seconds,
        count(*) filter (where is_finished) as finished_steps,
        count(*) filter (where status = 'failed') as failed_steps
    from windowed
    group by
        step_type,
        model,
        window_name

),

window_rates as (

    select
        window_counts.step_type,
        window_counts.model,
        window_counts.window_name,
        window_counts.timed_steps,
        window_counts.p50_seconds,
        window_counts.p95_seconds,
        window_counts.finished_steps,
        window_counts.failed_steps,
        rate_of(window_counts.failed_steps, window_counts.finished_steps) as failure_rate,
        wilson_low(window_counts.failed_steps, window_counts.finished_steps)
            as failure_rate_low,
        wilson_high(window_counts.failed_steps, window_counts.finished_steps)
            as failure_rate_high
    from window_counts

),

side_by_side as (

    select
        step_type,
        model,
        coalesce(max(timed_steps) filter (where window_name = 'earlier'), 0)
            as earlier_timed_steps,
        max(p50_seconds) filter (where window_name = 'earlier') as earlier_p50_seconds,
        max(p95_seconds) filter (where window_name = 'earlier') as earlier_p95_seconds,
        coalesce(max(finished_steps) filter (where window_name = 'earlier'), 0)
            as earlier_finished_steps,
        coalesce(max(failed_steps) filter (where window_name = 'earlier'), 0)
            as earlier_failed_steps,
        max(failure_rate) filter (where window_name = 'earlier') as earlier_failure_rate,
        max(failure_rate_low) filter (where window_name = 'earlier')
            as earlier_failure_rate_low,
        max(failure_rate_high) filter (where window_name = 'earlier')
            as earlier_failure_rate_high,
        coalesce(max(timed_steps) filter (where window_name = 'recent'), 0)
            as recent_timed_steps,
        max(p50_seconds) filter (where window_name = 'recent') as recent_p50_seconds,
        max(p95_seconds) filter (where window_name = 'recent') as recent_p95_seconds,
        coalesce(max(finished_steps) filter (where window_name = 'recent'), 0)
            as recent_finished_steps,
        coalesce(max(failed_steps) filter (where window_name = 'recent'), 0)
            as recent_failed_steps,
        max(failure_rate) filter (where window_name = 'recent') as recent_failure_rate,
        max(failure_rate_low) filter (where window_name = 'recent') as recent_failure_rate_low,
        max(failure_rate_high) filter (where window_name = 'recent')
            as recent_failure_rate_high
    from window_rates
    group by
        step_type,
        model

),

final as (

    select
        side_by_side.step_type,
        side_by_side.model,
        bounds.window_end_at,
        bounds.recent_from_at,
        bounds.earlier_from_at,
        side_by_side.earlier_timed_steps,
        side_by_side.earlier_p50_seconds,
        side_by_side.earlier_p95_seconds,
        side_by_side.earlier_finished_steps,
        side_by_side.earlier_failed_steps,
        side_by_side.earlier_failure_rate,
        side_by_side.earlier_failure_rate_low,
        side_by_side.earlier_failure_rate_high,
        side_by_side.recent_timed_steps,
        side_by_side.recent_p50_seconds,
        side_by_side.recent_p95_seconds,
        side_by_side.recent_finished_steps,
        side_by_side.recent_failed_steps,
        side_by_side.recent_failure_rate,
        side_by_side.recent_failure_rate_low,
        side_by_side.recent_failure_rate_high,
        case
            when side_by_side.earlier_p95_seconds > 0
                then side_by_side.recent_p95_seconds / side_by_side.earlier_p95_seconds - 1
        end as p95_change,
        coalesce(
            side_by_side.earlier_timed_steps >= 30
            and side_by_side.recent_timed_steps >= 30
            and side_by_side.recent_p95_seconds > side_by_side.earlier_p95_seconds
            and 5 * side_by_side.recent_p95_seconds >= 6 * side_by_side.earlier_p95_seconds,
            false
        ) as latency_regressed,
        coalesce(
            side_by_side.recent_failure_rate_low > side_by_side.earlier_failure_rate_high,
            false
        ) as failures_regressed
    from side_by_side
    cross join bounds

)

select
    step_type,
    model,
    window_end_at,
    recent_from_at,
    earlier_from_at,
    earlier_timed_steps,
    earlier_p50_seconds,
    earlier_p95_seconds,
    earlier_finished_steps,
    earlier_failed_steps,
    earlier_failure_rate,
    earlier_failure_rate_low,
    earlier_failure_rate_high,
    recent_timed_steps,
    recent_p50_seconds,
    recent_p95_seconds,
    recent_finished_steps,
    recent_failed_steps,
    recent_failure_rate,
    recent_failure_rate_low,
    recent_failure_rate_high,
    p95_change,
    latency_regressed,
    failures_regressed
from final

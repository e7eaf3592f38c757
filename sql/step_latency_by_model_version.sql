-- step_latency_by_model_version (reporting view)
--
-- Grain: one row per (step_type, model, model_version) that has at least one step of any
-- status.
-- Non-model steps keep their own rows ('http' / 'python' with a null model); steps without
-- metadata form the (null, null) row. Rows for groups where nothing completed have
-- completed_steps = 0 and null latency figures.
--
-- Latency sample: completed steps with both timestamps and latency_seconds >= 0.
-- Percentiles are exact and continuous (linear interpolation between the two nearest
-- samples, as percentile_cont), never approximate.
--
-- Columns:
--   step_type       'model', 'http', 'python' or null (no metadata).
--   model           model identifier; null for non-model steps.
--   model_version   model handler version (the API's metadata.version); null for non-model
--                   steps.
--   completed_steps number of steps in the latency sample (completed, both timestamps, not skewed).
--   skewed_steps    completed steps whose completion precedes their start (clock skew);
--                   excluded from the sample.
--   untimed_steps   completed steps missing started_at or completed_at; excluded from the sample.
--   avg_seconds     mean latency of the sample, in seconds.
--   min_seconds     fastest latency in the sample.
--   p50_seconds     median latency (percentile_cont 0.50).
--   p75_seconds     75th percentile latency.
--   p90_seconds     90th percentile latency.
--   p95_seconds     95th percentile latency.
--   p99_seconds     99th percentile latency.
--   max_seconds     slowest latency in the sample.

with

steps as (

    select
        step_type,
        model,
        model_version,
        status,
        latency_seconds,
        is_skewed
    from step_runs

),

classified as (

    select
        step_type,
        model,
        model_version,
        case
            when status = 'completed' and latency_seconds >= 0 then latency_seconds
        end as sample_seconds,
        status = 'completed' and is_skewed as is_skewed_completion,
        status = 'completed' and latency_seconds is null as is_untimed_completion
    from steps

),

aggregated as (

    select
        step_type,
        model,
        model_version,
        count(sample_seconds) as completed_steps,
        count(*) filter (where is_skewed_completion) as skewed_steps,
        count(*) filter (where is_untimed_completion) as untimed_steps,
        avg(sample_seconds) as avg_seconds,
        min(sample_seconds) as min_seconds,
        -- One aggregate for the five fractions: the sample is ordered once, not five times.
        percentile_cont(array[0.50, 0.75, 0.90, 0.95, 0.99]) within group (
            order by sample_seconds
        ) as percentiles,
        max(sample_seconds) as max_seconds
    from classified
    group by
        step_type,
        model,
        model_version

),

final as (

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
    from aggregated

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
    p50_seconds,
    p75_seconds,
    p90_seconds,
    p95_seconds,
    p99_seconds,
    max_seconds
from final

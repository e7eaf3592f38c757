-- step_latency_by_model (reporting view)
--
-- Grain: one row per (step_type, model) that has at least one step of any status.
-- Non-model steps keep their own rows ('http' / 'python' with a null model); steps without
-- metadata form the (null, null) row. Rows for groups where nothing completed have
-- completed_steps = 0 and null latency figures.
--
-- Steps of dry runs (no model was called) and of soft-deleted executions are left out
-- (step_runs.is_dry_run / is_deleted), in the table macro step_latency.
--
-- Latency sample: completed steps with both timestamps and latency_seconds >= 0
-- (step_runs.sample_seconds). The statistics are computed by the table macro step_latency
-- (sql/macros/), the one query shared with step_latency_by_model_version; here without
-- the version, so each (step_type, model) group holds all its versions' steps.
-- Percentiles are exact and continuous (linear interpolation between the two nearest
-- samples, as percentile_cont), never approximate.
--
-- Columns:
--   step_type       'model', 'http', 'python' or null (no metadata).
--   model           model identifier; null for non-model steps.
--   completed_steps number of steps in the latency sample (completed, both timestamps, not skewed).
--   skewed_steps    completed steps whose completion precedes their start (clock skew);
--                   excluded from the sample.
--   untimed_steps   completed steps missing started_at or completed_at; excluded from the sample.
--   avg_seconds     mean latency of the sample, in seconds (summed as whole microseconds:
--                   the same in any order the rows were loaded in).
--   min_seconds     fastest latency in the sample.
--   p50_seconds     median latency (percentile_cont 0.50).
--   p75_seconds     75th percentile latency.
--   p90_seconds     90th percentile latency.
--   p95_seconds     95th percentile latency.
--   p99_seconds     99th percentile latency.
--   max_seconds     slowest latency in the sample.

select
    step_type,
    model,
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
from step_latency(false)

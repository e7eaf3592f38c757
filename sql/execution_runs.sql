-- execution_runs (base view)
--
-- Grain: one row per execution (key: execution_id), straight from the loader's
-- `executions` table, renamed and with the end-to-end latency derived.
--
-- Columns:
--   execution_id     execution UUID.
--   workflow_id      workflow the execution ran.
--   bulk_id          bulk-trigger operation ID; null unless bulk-triggered.
--   status           running / completed / failed / cancelled (cancelled = stopped by the user).
--   started_at       when the execution started (timestamptz, UTC).
--   completed_at     when it finished (timestamptz, UTC); null while running.
--   latency_seconds  completed_at - started_at in seconds (double, fractional seconds kept);
--                    null unless both timestamps are present; negative on clock skew.
--   is_skewed        true when latency_seconds < 0 (finished before it started); such
--                    executions are kept out of every latency statistic.
--   started_date     UTC calendar date of started_at (null when started_at is null).
--   step_count       number of steps the API reported for the execution.
--   error            high-level error type (failed executions only).
--   error_cause      detailed error message (failed executions only).
--
-- Per-execution flags, so that reporting views only aggregate:
--   is_finished           status is completed or failed: the execution has an outcome.
--   sample_seconds        latency_seconds when the execution belongs to the latency sample
--                         (completed, both timestamps, no clock skew; macro latency_sample),
--                         else null.
--   is_skewed_completion  completed with latency_seconds < 0: left out of the sample.

-- The loader derives latency_seconds and started_date when it writes a row; rows written by
-- versions that did not (null there while the timestamps are present) are derived here.

with

source as (

    select
        execution_id,
        workflow_id,
        bulk_id,
        status,
        started_at,
        completed_at,
        latency_seconds,
        started_date,
        step_count,
        error,
        error_cause
    from executions

),

renamed as (

    select
        execution_id,
        workflow_id,
        bulk_id,
        status,
        started_at,
        completed_at,
        case
            when latency_seconds is null and completed_at is not null and started_at is not null
                then cast(extract(epoch from (completed_at - started_at)) as double precision)
            else latency_seconds
        end as latency_seconds,
        started_date,
        step_count,
        error,
        error_cause
    from source

),

dated as (

    select
        execution_id,
        workflow_id,
        bulk_id,
        status,
        started_at,
        completed_at,
        latency_seconds,
        coalesce(latency_seconds < 0, false) as is_skewed,
        case
            when started_date is null and started_at is not null
                then cast(started_at at time zone 'UTC' as date)
            else started_date
        end as started_date,
        step_count,
        error,
        error_cause
    from renamed

)

select
    execution_id,
    workflow_id,
    bulk_id,
    status,
    started_at,
    completed_at,
    latency_seconds,
    is_skewed,
    started_date,
    step_count,
    error,
    error_cause,
    status in ('completed', 'failed') as is_finished,
    latency_sample(status, latency_seconds) as sample_seconds,
    status = 'completed' and is_skewed as is_skewed_completion
from dated

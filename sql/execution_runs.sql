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
-- Summary columns, from the API's list endpoint (`load --workflow`); null for executions
-- loaded by ID only (never listed):
--   flow_name        the workflow's name when the execution was listed.
--   version_id       the workflow version the execution ran.
--   created_at       when the execution was created (timestamptz, UTC).
--   updated_at       when it last changed (timestamptz, UTC).
--   deleted_at       when it was soft-deleted (timestamptz, UTC); null unless deleted.
--   cost_total       its cost as one number: the number the API sent, or a cost object's
--                    numeric total / amount / total_cost / usd; null when unknown.
--
-- Per-execution flags, so that reporting views only aggregate:
--   is_finished           status is completed or failed: the execution has an outcome.
--   sample_seconds        latency_seconds when the execution belongs to the latency sample
--                         (completed, both timestamps, no clock skew; macro latency_sample),
--                         else null.
--   is_skewed_completion  completed with latency_seconds < 0: left out of the sample.
--   is_dry_run            the execution was a dry run (no model was called); false when
--                         unknown (never listed).
--   is_deleted            the execution was soft-deleted (deleted_at is not null).
-- The reporting views leave dry runs and soft-deleted executions out (`not is_dry_run and
-- not is_deleted`); this view keeps every execution, flagged.

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
        error_cause,
        flow_name,
        version_id,
        created_at,
        updated_at,
        deleted_at,
        dry_run,
        cost_total
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
        error_cause,
        flow_name,
        version_id,
        created_at,
        updated_at,
        deleted_at,
        dry_run,
        cost_total
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
        error_cause,
        flow_name,
        version_id,
        created_at,
        updated_at,
        deleted_at,
        dry_run,
        cost_total
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
    flow_name,
    version_id,
    created_at,
    updated_at,
    deleted_at,
    cost_total,
    status in ('completed', 'failed') as is_finished,
    latency_sample(status, latency_seconds) as sample_seconds,
    status = 'completed' and is_skewed as is_skewed_completion,
    coalesce(dry_run, false) as is_dry_run,
    deleted_at is not null as is_deleted
from dated

-- step_runs (base view)
--
-- Grain: one row per step of an execution (key: execution_id, step_id): the loader's
-- `step_outputs` rows with their execution's workflow, status and start.
--
-- The loader carries those execution columns (and the UTC start date, and the execution's
-- dry-run flag and soft-deletion time) on every step row it writes, so reading a step needs
-- no join to its execution. Rows written by versions that did not carry them
-- (execution_status null) take them from execution_runs instead; an execution with a null
-- status takes that path too, with the same result. A carried row with a null
-- execution_dry_run / execution_deleted_at belongs to an execution never listed (unknown:
-- neither a dry run nor deleted, as in execution_runs).
--
-- Columns:
--   execution_id          execution the step belongs to.
--   step_id               step identifier, unique within its execution.
--   workflow_id           the execution's workflow.
--   step_position         0-based position of the step within the execution.
--   status                step status: queued / running / completed / failed / cancelled
--                         (cancelled = never ran: an earlier step failed or the execution
--                         was cancelled).
--   step_type             'model' for model steps, 'http' / 'python' for the other step kinds,
--                         null when the step carried no metadata.
--   model                 model identifier; null for non-model steps.
--   model_version         model handler version; null for non-model steps.
--   started_at            when the step started (timestamptz, UTC); null for queued/skipped steps.
--   completed_at          when the step finished (timestamptz, UTC).
--   latency_seconds       completed_at - started_at in seconds (double, fractional seconds
--                         kept), computed by the loader; null unless both timestamps are present;
--                         negative on clock skew.
--   is_skewed             true when latency_seconds < 0 (completion before start); such steps
--                         are kept out of every latency statistic and counted as skewed_steps.
--   started_date          UTC calendar date of the step's started_at, falling back to the
--                         execution's started_at when the step has none (queued/cancelled steps).
--   execution_status      status of the step's execution.
--   execution_started_at  when the step's execution started (timestamptz, UTC).
--   error                 step error type (failed steps).
--   error_cause           detailed step error message (failed steps).
--
-- Per-step flags, so that reporting views only aggregate (`count(*) filter (where flag)`,
-- `percentile_cont ... order by sample_seconds`):
--   is_finished            status is completed or failed: the step has an outcome (the
--                          denominator of every failure rate).
--   is_in_flight           status is queued or running: no outcome yet.
--   sample_seconds         latency_seconds when the step belongs to the latency sample
--                          (completed, both timestamps, no clock skew; macro latency_sample),
--                          else null.
--   is_skewed_completion   completed with latency_seconds < 0: left out of the sample.
--   is_untimed_completion  completed with a timestamp missing: left out of the sample.
--   failure_seconds        latency_seconds of a failed step with both timestamps and no clock
--                          skew (time to failure), else null.
--   is_skewed_failure      failed with latency_seconds < 0: left out of failure_seconds.
--   is_dry_run             the step's execution was a dry run (no model was called); false
--                          when unknown (execution never listed).
--   is_deleted             the step's execution was soft-deleted.
-- The reporting views leave the steps of dry runs and soft-deleted executions out
-- (`not is_dry_run and not is_deleted`); this view keeps every step, flagged.

with

carried as (

    select
        execution_id,
        step_id,
        workflow_id,
        step_position,
        status,
        step_type,
        model,
        model_version,
        started_at,
        completed_at,
        latency_seconds,
        started_date,
        execution_status,
        execution_started_at,
        error,
        error_cause,
        execution_dry_run,
        execution_deleted_at
    from step_outputs
    where execution_status is not null

),

uncarried as (

    select
        execution_id,
        step_id,
        step_position,
        status,
        step_type,
        model,
        model_version,
        started_at,
        completed_at,
        latency_seconds,
        error,
        error_cause
    from step_outputs
    where execution_status is null

),

-- Only the executions of uncarried rows: usually none, so nothing is joined.
uncarried_executions as (

    select
        execution_id,
        workflow_id,
        status,
        started_at,
        is_dry_run,
        deleted_at
    from execution_runs
    where execution_id in (select uncarried.execution_id from uncarried)

),

backfilled as (

    select
        uncarried.execution_id,
        uncarried.step_id,
        uncarried_executions.workflow_id,
        uncarried.step_position,
        uncarried.status,
        uncarried.step_type,
        uncarried.model,
        uncarried.model_version,
        uncarried.started_at,
        uncarried.completed_at,
        uncarried.latency_seconds,
        cast(
            coalesce(uncarried.started_at, uncarried_executions.started_at) at time zone 'UTC'
            as date
        ) as started_date,
        uncarried_executions.status as execution_status,
        uncarried_executions.started_at as execution_started_at,
        uncarried.error,
        uncarried.error_cause,
        uncarried_executions.is_dry_run as execution_dry_run,
        uncarried_executions.deleted_at as execution_deleted_at
    from uncarried
    left join uncarried_executions
        on uncarried.execution_id = uncarried_executions.execution_id

),

steps as (

    select * from carried
    union all
    select * from backfilled

)

select
    execution_id,
    step_id,
    workflow_id,
    step_position,
    status,
    step_type,
    model,
    model_version,
    started_at,
    completed_at,
    latency_seconds,
    coalesce(latency_seconds < 0, false) as is_skewed,
    started_date,
    execution_status,
    execution_started_at,
    error,
    error_cause,
    status in ('completed', 'failed') as is_finished,
    status in ('queued', 'running') as is_in_flight,
    latency_sample(status, latency_seconds) as sample_seconds,
    status = 'completed' and coalesce(latency_seconds < 0, false) as is_skewed_completion,
    status = 'completed' and latency_seconds is null as is_untimed_completion,
    case when status = 'failed' and latency_seconds >= 0 then latency_seconds end
        as failure_seconds,
    status = 'failed' and coalesce(latency_seconds < 0, false) as is_skewed_failure,
    coalesce(execution_dry_run, false) as is_dry_run,
    execution_deleted_at is not null as is_deleted
from steps

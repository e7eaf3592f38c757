-- step_runs (base view)
--
-- Grain: one row per step of an execution (key: execution_id, step_id): the loader's
-- `step_outputs` rows joined to their execution (execution_runs).
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

with

source as (

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

),

executions as (

    select
        execution_id,
        workflow_id,
        status,
        started_at
    from execution_runs

),

joined as (

    select
        source.execution_id,
        source.step_id,
        executions.workflow_id,
        source.step_position,
        source.status,
        source.step_type,
        source.model,
        source.model_version,
        source.started_at,
        source.completed_at,
        source.latency_seconds,
        coalesce(source.latency_seconds < 0, false) as is_skewed,
        cast(
            coalesce(source.started_at, executions.started_at) at time zone 'UTC' as date
        ) as started_date,
        executions.status as execution_status,
        executions.started_at as execution_started_at,
        source.error,
        source.error_cause
    from source
    left join executions
        on source.execution_id = executions.execution_id

)

select * from joined

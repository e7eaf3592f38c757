-- model_error_causes (reporting view)
--
-- Grain: one row per (step_type, model, error, error_cause) among failed steps. step_type
-- keeps http / python failures (null model) apart from each other; for model steps the
-- grain is one row per (model, error, error_cause). A null error or error_cause is its own
-- group.
--
-- Steps of dry runs (no model was called) and of soft-deleted executions are left out
-- (step_runs.is_dry_run / is_deleted).
--
-- Columns:
--   step_type                'model', 'http', 'python' or null (no metadata).
--   model                    model identifier; null for non-model steps.
--   error                    step error type as reported by the API.
--   error_cause              detailed error message as reported by the API.
--   failed_steps             failed steps with this error and cause.
--   share_of_model_failures  failed_steps / all failed steps of the same (step_type, model);
--                            the shares of one model add up to 1.
--   first_seen_at            earliest time a step failed this way: the step's completed_at,
--                            else its started_at, else its execution's started_at.
--   last_seen_at             latest such time, same fallback.

with

steps as (

    select
        step_type,
        model,
        status,
        error,
        error_cause,
        completed_at,
        started_at,
        execution_started_at
    from step_runs
    -- Dry runs called no model and soft-deleted executions are gone: neither is reported.
    where
        not is_dry_run
        and not is_deleted

),

failures as (

    select
        step_type,
        model,
        error,
        error_cause,
        coalesce(completed_at, started_at, execution_started_at) as seen_at
    from steps
    where status = 'failed'

),

cause_counts as (

    select
        step_type,
        model,
        error,
        error_cause,
        count(*) as failed_steps,
        min(seen_at) as first_seen_at,
        max(seen_at) as last_seen_at
    from failures
    group by
        step_type,
        model,
        error,
        error_cause

),

final as (

    select
        step_type,
        model,
        error,
        error_cause,
        failed_steps,
        cast(failed_steps as double precision)
        / sum(failed_steps) over (partition by step_type, model) as share_of_model_failures,
        first_seen_at,
        last_seen_at
    from cause_counts

)

select
    step_type,
    model,
    error,
    error_cause,
    failed_steps,
    share_of_model_failures,
    first_seen_at,
    last_seen_at
from final

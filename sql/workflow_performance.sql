-- workflow_performance (reporting view)
--
-- Grain: one row per workflow_id that has at least one execution that is neither a dry run
-- nor soft-deleted. Dry runs (no model was called) and soft-deleted executions, and their
-- steps, are left out of every figure, the name included.
--
-- Success rate: completed / (completed + failed) executions. Running executions have no
-- outcome yet and cancelled ones were stopped by the user, so neither counts.
--
-- Slowest model: among the workflow's model steps (non-null model, any version) that
-- completed with both timestamps and no clock skew, the model with the highest median
-- (percentile_cont 0.50) step latency; ties go to the alphabetically first model. Null when
-- the workflow has no such step.
--
-- Columns:
--   workflow_id                workflow identifier.
--   flow_name                  the workflow's name: the flow_name of its most recent listed
--                              execution (by started_at, else created_at; table macro
--                              latest_flow_names); null when no execution of it was listed.
--   total_executions           all executions, any status.
--   completed_executions       executions with status completed.
--   failed_executions          executions with status failed.
--   cancelled_executions       executions cancelled by the user.
--   running_executions         executions still running.
--   finished_executions        completed + failed executions: the denominator of success_rate.
--   success_rate               completed / finished executions; null when none finished.
--   success_rate_low           lower bound of the 95% Wilson score interval
--                              (macro wilson_low); null when none finished.
--   success_rate_high          upper bound of that interval; null when none finished.
--   is_low_sample              true when fewer than 30 executions finished.
--   skewed_executions          completed executions whose completed_at precedes started_at;
--                              kept out of the latency figures.
--   p50_seconds                median end-to-end latency (completed_at - started_at) of
--                              completed executions with both timestamps and no skew.
--   p95_seconds                95th percentile of the same sample.
--   slowest_model              model of the slowest step, as defined above.
--   slowest_model_p50_seconds  that model's median completed-step latency in this workflow.

with

executions as (

    select
        workflow_id,
        status,
        is_finished,
        sample_seconds,
        is_skewed_completion
    from execution_runs
    where
        not is_dry_run
        and not is_deleted

),

steps as (

    select
        workflow_id,
        model,
        sample_seconds
    from step_runs
    where
        not is_dry_run
        and not is_deleted

),

flow_names as (

    select
        workflow_id,
        flow_name
    from latest_flow_names()

),

execution_counts as (

    select
        workflow_id,
        count(*) as total_executions,
        count(*) filter (where status = 'completed') as completed_executions,
        count(*) filter (where status = 'failed') as failed_executions,
        count(*) filter (where status = 'cancelled') as cancelled_executions,
        count(*) filter (where status = 'running') as running_executions,
        count(*) filter (where is_finished) as finished_executions,
        count(*) filter (where is_skewed_completion) as skewed_executions,
        -- Both fractions in one aggregate: the sample is ordered once.
        percentile_cont(array[0.50, 0.95]) within group (
            order by sample_seconds
        ) as percentiles
    from executions
    group by
        workflow_id

),

model_medians as (

    select
        workflow_id,
        model,
        percentile_cont(0.50) within group (order by sample_seconds) as p50_seconds
    from steps
    where
        model is not null
        and sample_seconds is not null
    group by
        workflow_id,
        model

),

ranked_models as (

    select
        workflow_id,
        model,
        p50_seconds,
        row_number() over (
            partition by workflow_id
            order by p50_seconds desc, model asc
        ) as slowness_rank
    from model_medians

),

slowest_models as (

    select
        workflow_id,
        model,
        p50_seconds
    from ranked_models
    where slowness_rank = 1

),

final as (

    select
        execution_counts.workflow_id,
        flow_names.flow_name,
        execution_counts.total_executions,
        execution_counts.completed_executions,
        execution_counts.failed_executions,
        execution_counts.cancelled_executions,
        execution_counts.running_executions,
        execution_counts.finished_executions,
        rate_of(execution_counts.completed_executions, execution_counts.finished_executions)
            as success_rate,
        wilson_low(execution_counts.completed_executions, execution_counts.finished_executions)
            as success_rate_low,
        wilson_high(execution_counts.completed_executions, execution_counts.finished_executions)
            as success_rate_high,
        execution_counts.finished_executions < 30 as is_low_sample,
        execution_counts.skewed_executions,
        execution_counts.percentiles[1] as p50_seconds,
        execution_counts.percentiles[2] as p95_seconds,
        slowest_models.model as slowest_model,
        slowest_models.p50_seconds as slowest_model_p50_seconds
    from execution_counts
    left join slowest_models
        on execution_counts.workflow_id is not distinct from slowest_models.workflow_id
    left join flow_names
        on execution_counts.workflow_id is not distinct from flow_names.workflow_id

)

select
    workflow_id,
    flow_name,
    total_executions,
    completed_executions,
    failed_executions,
    cancelled_executions,
    running_executions,
    finished_executions,
    success_rate,
    success_rate_low,
    success_rate_high,
    is_low_sample,
    skewed_executions,
    p50_seconds,
    p95_seconds,
    slowest_model,
    slowest_model_p50_seconds
from final

-- workflow_version_cost (reporting view)
--
-- Grain: one row per (workflow_id, version_id) with at least one execution. version_id null
-- is its own row: the executions loaded by ID only (never listed), whose version is unknown.
-- Dry runs (no model was called) and soft-deleted executions are left out of every figure.
-- A new version's cost and speed sit next to the previous one's: compare the rows of one
-- workflow, ordered by first_started_at.
--
-- Cost: execution_runs.cost_total, as in workflow_cost_daily (executions without a known
-- cost count in executions but add nothing to total_cost).
-- Latency sample: completed executions with both timestamps and no clock skew
-- (execution_runs.sample_seconds, macro latency_sample), as in workflow_performance.
--
-- Columns:
--   workflow_id                   workflow identifier.
--   version_id                    the workflow version the executions ran; null for
--                                 executions loaded by ID only.
--   flow_name                     the workflow's name (its most recent listed execution's
--                                 flow_name, table macro latest_flow_names; the same on every
--                                 version's row); null when no execution of it was listed.
--   executions                    executions of the version, any status.
--   executions_with_cost          executions with a known cost (cost_total not null).
--   total_cost                    sum of the known costs, failed, cancelled and running
--                                 executions included; null (not 0) when none has a cost.
--   completed_executions          executions with status completed.
--   cost_per_completed_execution  total_cost / completed_executions: what one successful
--                                 result costs, the cost of the failed runs included (macro
--                                 cost_per_completed); null when total_cost is null or nothing
--                                 completed.
--   p50_latency_seconds           median end-to-end latency (completed_at - started_at) of the
--                                 latency sample (percentile_cont 0.50); null when it is empty.
--   p95_latency_seconds           95th percentile of the same sample; null when it is empty.
--   first_started_at              earliest start of the version's executions (timestamptz).
--   last_started_at               latest start of the version's executions (timestamptz).
-- Counts are 0, never null.

with

executions as (

    select
        execution_id,
        workflow_id,
        version_id,
        status,
        started_at,
        cost_total,
        sample_seconds
    from execution_runs
    -- Dry runs called no model and soft-deleted executions are gone: neither is reported.
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

version_costs as (

    select
        workflow_id,
        version_id,
        count(*) as executions,
        count(cost_total) as executions_with_cost,
        -- Added in one fixed order: a sum of doubles depends on the order of its terms, and
        -- the rows' order in the table depends on which answers came first.
        sum(cost_total order by execution_id) as total_cost,
        count(*) filter (where status = 'completed') as completed_executions,
        -- Both fractions in one aggregate: the sample is ordered once.
        percentile_cont(array[0.50, 0.95]) within group (
            order by sample_seconds
        ) as percentiles,
        min(started_at) as first_started_at,
        max(started_at) as last_started_at
    from executions
    group by
        workflow_id,
        version_id

),

final as (

    select
        version_costs.workflow_id,
        version_costs.version_id,
        flow_names.flow_name,
        version_costs.executions,
        version_costs.executions_with_cost,
        version_costs.total_cost,
        version_costs.completed_executions,
        cost_per_completed(version_costs.total_cost, version_costs.completed_executions)
            as cost_per_completed_execution,
        version_costs.percentiles[1] as p50_latency_seconds,
        version_costs.percentiles[2] as p95_latency_seconds,
        version_costs.first_started_at,
        version_costs.last_started_at
    from version_costs
    left join flow_names
        on version_costs.workflow_id is not distinct from flow_names.workflow_id

)

select
    workflow_id,
    version_id,
    flow_name,
    executions,
    executions_with_cost,
    total_cost,
    completed_executions,
    cost_per_completed_execution,
    p50_latency_seconds,
    p95_latency_seconds,
    first_started_at,
    last_started_at
from final

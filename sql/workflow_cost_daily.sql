-- workflow_cost_daily (reporting view)
--
-- Grain: one row per workflow_id x UTC day (execution_runs.started_date: the UTC date of the
-- execution's start) on which the workflow had at least one execution. Dry runs (no model was
-- called) and soft-deleted executions are left out of every figure.
--
-- Cost: execution_runs.cost_total, the number the API's list endpoint sent as the
-- execution's cost (or a cost object's total / amount / total_cost / usd). Executions loaded
-- by ID only, or listed without a usable cost, have none: they count in executions but add
-- nothing to total_cost, so compare executions_with_cost with executions before trusting a
-- total.
--
-- Columns:
--   started_date                  UTC day the executions started; null only for executions
--                                 without a start time (a row of their own).
--   workflow_id                   workflow identifier.
--   flow_name                     the workflow's name (its most recent listed execution's
--                                 flow_name, table macro latest_flow_names; the same on every
--                                 day); null when no execution of it was listed.
--   executions                    executions of the day, any status.
--   executions_with_cost          executions of the day with a known cost (cost_total not
--                                 null).
--   total_cost                    sum of the known costs of the day, failed, cancelled and
--                                 running executions included; null (not 0) when no execution
--                                 of the day has a cost.
--   completed_executions          executions of the day with status completed.
--   cost_per_completed_execution  total_cost / completed_executions: what one successful
--                                 result cost that day, the cost of the failed runs included
--                                 (macro cost_per_completed); null when total_cost is null or
--                                 nothing completed.
-- Counts are 0, never null, on the days a row exists.

with

executions as (

    select
        execution_id,
        workflow_id,
        started_date,
        status,
        cost_total
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

daily_costs as (

    select
        workflow_id,
        started_date,
        count(*) as executions,
        count(cost_total) as executions_with_cost,
        -- Added in one fixed order: a sum of doubles depends on the order of its terms, and
        -- the rows' order in the table depends on which answers came first.
        sum(cost_total order by execution_id) as total_cost,
        count(*) filter (where status = 'completed') as completed_executions
    from executions
    group by
        workflow_id,
        started_date

),

final as (

    select
        daily_costs.started_date,
        daily_costs.workflow_id,
        flow_names.flow_name,
        daily_costs.executions,
        daily_costs.executions_with_cost,
        daily_costs.total_cost,
        daily_costs.completed_executions,
        cost_per_completed(daily_costs.total_cost, daily_costs.completed_executions)
            as cost_per_completed_execution
    from daily_costs
    left join flow_names
        on daily_costs.workflow_id is not distinct from flow_names.workflow_id

)

select
    started_date,
    workflow_id,
    flow_name,
    executions,
    executions_with_cost,
    total_cost,
    completed_executions,
    cost_per_completed_execution
from final

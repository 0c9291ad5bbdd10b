{{ config(meta={'dagster': {'ref': {'name': 'segment_flow_matrix'}}}) }}
{#- The gained cells of period k hold all of period k's revenue of active customers; the lost
    cells hold what the lost customers spent in period k + 1. -#}
with

flows as (
    select * from {{ ref('segment_flow_matrix') }}
    where as_of_date = {{ as_of_date() }}
),

facts as (
    select * from {{ ref('customer_period_facts') }}
),

period_revenue as (
    select period_index, sum(revenue) as revenue
    from facts
    where value_segment is not null
    group by period_index
),

flow_revenue as (
    select period_index, sum(case when flow <> 'lost' then revenue end) as revenue
    from flows
    group by period_index
)

select flow_revenue.period_index, flow_revenue.revenue as flow_revenue, period_revenue.revenue as period_revenue
from flow_revenue
left join period_revenue on flow_revenue.period_index = period_revenue.period_index
where coalesce(flow_revenue.revenue, 0) <> coalesce(period_revenue.revenue, 0)

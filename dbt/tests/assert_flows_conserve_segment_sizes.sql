{{ config(meta={'dagster': {'ref': {'name': 'segment_flow_matrix'}}}) }}
{#- Every customer of a segment is in exactly one flow: for each period k, the cells leaving a
    from-segment sum to its size in period k + 1, and the cells arriving in a to-segment sum to
    its size in period k. Rows returned are the segments that do not add up. -#}
with

flows as (
    select * from {{ ref('segment_flow_matrix') }}
    where as_of_date = {{ as_of_date() }}
),

facts as (
    select * from {{ ref('customer_period_facts') }}
),

sizes as (
    select period_index, value_segment, count(*) as customers
    from facts
    where value_segment is not null
    group by period_index, value_segment
),

leaving as (
    select period_index, from_segment as value_segment, sum(customers) as customers
    from flows
    where from_segment is not null
    group by period_index, from_segment
),

arriving as (
    select period_index, to_segment as value_segment, sum(customers) as customers
    from flows
    where to_segment is not null
    group by period_index, to_segment
),

flow_periods as (
    select distinct period_index from flows
),

expected as (
    select flow_periods.period_index, 'from' as side, sizes.value_segment, sizes.customers
    from flow_periods
    inner join sizes on sizes.period_index = flow_periods.period_index + 1
    union all
    select flow_periods.period_index, 'to', sizes.value_segment, sizes.customers
    from flow_periods
    inner join sizes on sizes.period_index = flow_periods.period_index
),

observed as (
    select period_index, 'from' as side, value_segment, customers from leaving
    union all
    select period_index, 'to', value_segment, customers from arriving
)

select
    coalesce(expected.period_index, observed.period_index) as period_index,
    coalesce(expected.side, observed.side) as side,
    coalesce(expected.value_segment, observed.value_segment) as value_segment,
    expected.customers as segment_size,
    observed.customers as flow_customers
from expected
full outer join observed
    on expected.period_index = observed.period_index
    and expected.side = observed.side
    and expected.value_segment = observed.value_segment
where coalesce(expected.customers, -1) <> coalesce(observed.customers, -1)

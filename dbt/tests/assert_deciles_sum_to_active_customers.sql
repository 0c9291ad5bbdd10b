{{ config(meta={'dagster': {'ref': {'name': 'value_deciles'}}}) }}
{#- Each period's deciles hold every active customer and all of their revenue, once. -#}
with

deciles as (
    select period_index, sum(customers) as customers, sum(revenue) as revenue
    from {{ ref('value_deciles') }}
    where as_of_date = {{ as_of_date() }}
    group by period_index
),

active as (
    select period_index, count(*) as customers, sum(revenue) as revenue
    from {{ ref('customer_period_facts') }}
    where value_segment is not null
    group by period_index
)

select active.period_index, active.customers, deciles.customers as decile_customers
from active
full outer join deciles on active.period_index = deciles.period_index
where coalesce(active.customers, -1) <> coalesce(deciles.customers, -1)
    or coalesce(active.revenue, 0) <> coalesce(deciles.revenue, 0)

with

flows as (
    select * from {{ ref('int_customer_flows_classified') }}
),

cells as (
    select
        as_of_date,
        period_index,
        from_segment,
        to_segment,
        flow,
        count(*) as customers,
        sum(purchases) as purchases,
        -- Lost customers bring no revenue in the later period: show what they were worth before.
        sum(case when flow = 'lost' then previous_revenue else revenue end) as revenue
    from flows
    group by as_of_date, period_index, from_segment, to_segment, flow
),

final as (
    select
        as_of_date,
        period_index,
        from_segment,
        to_segment,
        flow,
        cast(customers as bigint) as customers,
        cast(purchases as bigint) as purchases,
        cast(revenue as decimal(18, 2)) as revenue,
        {{ safe_divide('revenue', 'customers') }} as revenue_per_customer
    from cells
)

select * from final

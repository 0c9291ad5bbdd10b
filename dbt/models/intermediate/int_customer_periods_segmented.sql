{#- Active customers (≥ 1 purchase) of each period, ranked by revenue into share, decile, segment.
    share = customers with strictly higher revenue ÷ active customers, so ties share everything. -#}
with

customer_periods as (
    select * from {{ ref('int_customer_periods_aggregated') }}
),

active as (
    select * from customer_periods where purchases > 0
),

ranked as (
    select
        active.*,
        rank() over (partition by as_of_date, period_index order by revenue desc) - 1 as customers_above,
        count(*) over (partition by as_of_date, period_index) as active_customers
    from active
),

shared as (
    select
        ranked.*,
        cast(customers_above as double) / active_customers as value_share,
        -- Integer arithmetic: 1 + floor(10 · share) without floating-point edge cases.
        1 + cast(floor((10 * customers_above) / active_customers) as integer) as value_decile
    from ranked
),

final as (
    select
        as_of_date,
        customer_id,
        period_index,
        period_start,
        period_end,
        revenue,
        purchases,
        refund_amount,
        distinct_products,
        value_share,
        value_decile,
        {{ value_segment('value_share') }} as value_segment,
        {{ segment_rank(value_segment('value_share')) }} as segment_rank,
        margin
    from shared
)

select * from final

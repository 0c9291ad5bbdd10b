with

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
),

deciles as (
    select
        as_of_date,
        period_index,
        value_decile,
        count(*) as customers,
        sum(revenue) as revenue
    from segmented
    group by as_of_date, period_index, value_decile
),

with_totals as (
    select
        deciles.*,
        sum(customers) over (partition by as_of_date, period_index) as period_customers,
        sum(revenue) over (partition by as_of_date, period_index) as period_revenue,
        sum(customers) over (partition by as_of_date, period_index order by value_decile rows between unbounded preceding and current row) as running_customers,
        sum(revenue) over (partition by as_of_date, period_index order by value_decile rows between unbounded preceding and current row) as running_revenue
    from deciles
),

final as (
    select
        as_of_date,
        period_index,
        value_decile,
        cast(customers as bigint) as customers,
        cast(revenue as decimal(18, 2)) as revenue,
        {{ safe_divide('revenue', 'period_revenue') }} as revenue_share,
        {{ safe_divide('running_customers', 'period_customers') }} as cumulative_customer_share,
        {{ safe_divide('running_revenue', 'period_revenue') }} as cumulative_revenue_share
    from with_totals
)

select * from final

with

customer_periods as (
    -- A customer-level mart: the run's latest as-of date only.
    select * from {{ ref('int_customer_periods_aggregated') }}
    where as_of_date = {{ as_of_date() }}
),

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
    where as_of_date = {{ as_of_date() }}
),

final as (
    select
        customer_periods.as_of_date,
        customer_periods.customer_id,
        customer_periods.period_index,
        customer_periods.period_start,
        customer_periods.period_end,
        customer_periods.revenue,
        cast(customer_periods.purchases as bigint) as purchases,
        customer_periods.refund_amount,
        cast(customer_periods.distinct_products as bigint) as distinct_products,
        segmented.value_share,
        segmented.value_decile,
        segmented.value_segment
    from customer_periods
    left join segmented
        on customer_periods.customer_id = segmented.customer_id
        and customer_periods.period_index = segmented.period_index
)

select * from final

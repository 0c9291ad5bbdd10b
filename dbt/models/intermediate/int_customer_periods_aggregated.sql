{#- One row per as-of date, customer and period with any transaction in it (refund-only periods included). -#}
with

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

periods as (
    select * from {{ ref('int_periods') }}
),

assigned as (
    select
        transactions.*,
        periods.as_of_date,
        periods.period_index,
        periods.period_start,
        periods.period_end
    from transactions
    inner join periods
        on transactions.transaction_date between periods.period_start and periods.period_end
),

final as (
    select
        as_of_date,
        customer_id,
        period_index,
        period_start,
        period_end,
        cast(sum(amount) as decimal(18, 2)) as revenue,
        count(case when is_purchase then 1 end) as purchases,
        cast(coalesce(-sum(case when amount < 0 then amount end), 0) as decimal(18, 2)) as refund_amount,
        -- Products bought in the period; null when the rows carry no product ids at all.
        case
            when count(product_id) = 0 then null
            else count(distinct case when is_purchase then product_id end)
        end as distinct_products
    from assigned
    group by as_of_date, customer_id, period_index, period_start, period_end
)

select * from final

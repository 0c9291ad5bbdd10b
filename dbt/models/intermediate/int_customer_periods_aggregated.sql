{#- One row per as-of date, customer and period with any transaction in it (refund-only periods included).

    Incremental on DuckDB (macros/incremental.sql): a night that continues the previous build
    aggregates only the customers to recompute (their rows changed, or some of their rows are
    dated on a day whose period moved with the as-of date) and carries every other customer's
    rows over, with the new as-of date and period bounds. A customer none of whose days changed
    period and none of whose rows changed has the same totals per period_index. -#}
{{ config(
    materialized=incremental_intermediate_materialization(),
    incremental_strategy='replace',
    on_schema_change='fail',
) }}
{#- is_incremental() here, in the model: dbt's unit tests override it (false). -#}
{%- set continues = is_incremental() and continues_previous_build() %}
with

all_transactions as {{ not_materialized() }} (
    select * from {{ ref('stg_raw__transactions') }}
),

{% if continues -%}
previous as (
    select * from {{ this }}
),

moved_days as (
    -- Every edge of the previous as-of date's periods and of tonight's (one more than either has).
    {{ days_between_moved_edges(previous_as_of_date(), as_of_date(),
        '(select greatest(count(*), (select coalesce(max(period_index), 0) + 1 from ' ~ this ~ ')) from ' ~ ref('int_periods') ~ ')') }}
),

recomputed_customers as (
    {{ changed_or_moved_customers('all_transactions', 'moved_days') }}
),

{{ recomputed_and_carried('all_transactions', 'previous', 'recomputed_customers', source('raw', 'erasures')) }}
{%- else -%}
transactions as (
    select * from all_transactions
),
{%- endif %}

periods as (
    select * from {{ ref('int_periods') }}
),

product_margins as (
    select * from {{ ref('stg_raw__products') }}
),

day_offsets as (
    -- 0 … 9999 days: longer than any period (period_months ≤ 120, ≤ 3 653 days).
    {{ integer_series(4) }}
),

calendar as (
    -- Every day of every period of the run, mapped to its period: ~1 100 rows per as-of date.
    -- Transactions find their period by an equality (hash) join on the day, instead of a range
    -- join on `between period_start and period_end` over every transaction.
    select
        periods.as_of_date,
        periods.period_index,
        {{ date_plus('day', 'day_offsets.n', 'periods.period_start') }} as calendar_date
    from periods
    inner join day_offsets
        on day_offsets.n <= {{ days_between('periods.period_start', 'periods.period_end') }}
),

assigned as (
    select
        calendar.as_of_date,
        calendar.period_index,
        transactions.customer_id,
        transactions.amount,
        transactions.is_purchase,
        transactions.product_id,
        {{ margin_of('transactions.amount', 'product_margins.margin_rate') }} as margin
    from transactions
    inner join calendar
        on transactions.transaction_date = calendar.calendar_date
    -- Product ids of transactions are free text as delivered; the products' ids are trimmed.
    left join product_margins
        on trim(transactions.product_id) = product_margins.product_id
),

totals as (
    -- Grouped by the three keys only; the period bounds are added back from periods below.
    select
        as_of_date,
        customer_id,
        period_index,
        sum(amount) as revenue,
        sum(margin) as margin,
        count(case when is_purchase then 1 end) as purchases,
        coalesce(-sum(case when amount < 0 then amount end), 0) as refund_amount,
        count(product_id) as rows_with_product
    from assigned
    group by as_of_date, customer_id, period_index
),

products as (
    -- Distinct products in an aggregate of their own (one narrow distinct over the purchases
    -- with a product, instead of a distinct count inside the wide aggregate above).
    select as_of_date, customer_id, period_index, count(*) as distinct_products
    from (
        select distinct as_of_date, customer_id, period_index, product_id
        from assigned
        where is_purchase and product_id is not null
    ) as bought
    group by as_of_date, customer_id, period_index
),

recomputed as (
    select
        totals.as_of_date,
        totals.customer_id,
        totals.period_index,
        periods.period_start,
        periods.period_end,
        cast(totals.revenue as decimal(18, 2)) as revenue,
        totals.purchases,
        cast(totals.refund_amount as decimal(18, 2)) as refund_amount,
        -- Products bought in the period; null when the rows carry no product ids at all.
        case
            when totals.rows_with_product = 0 then null
            else coalesce(products.distinct_products, 0)
        end as distinct_products,
        -- Net margin (refunds subtract at their product's rate); = revenue with margin rate 1.
        cast(totals.margin as decimal(18, 2)) as margin
    from totals
    inner join periods
        on totals.as_of_date = periods.as_of_date
        and totals.period_index = periods.period_index
    left join products
        on totals.as_of_date = products.as_of_date
        and totals.customer_id = products.customer_id
        and totals.period_index = products.period_index
),
{%- if continues %}

final as (
    select * from recomputed
    union all
    select
        periods.as_of_date,
        carried.customer_id,
        carried.period_index,
        periods.period_start,
        periods.period_end,
        carried.revenue,
        carried.purchases,
        carried.refund_amount,
        carried.distinct_products,
        carried.margin
    from carried
    inner join periods
        on carried.period_index = periods.period_index
)
{%- else %}

final as (
    select * from recomputed
)
{%- endif %}

select * from final

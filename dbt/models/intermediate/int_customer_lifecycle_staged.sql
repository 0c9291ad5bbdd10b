{#- The lifecycle stage of every customer with a purchase on or before the as-of date.

    Day arithmetic (one rule for every threshold): days_since_X = as_of − X in whole days, so a
    purchase on the as-of date is 0 days ago, and "within the last N days" means days_since < N
    (the N calendar days ending on the as-of date, like period 0 ends on it).
    A purchase day is a date with at least one transaction of amount > 0; refunds are never
    purchases, so a customer with only refunds has no row here (no stage).

    Stages, mutually exclusive, the first that holds wins:
      lost      days_since_last_purchase >= lost_after_days          (exactly 365 days: lost)
      won_back  a purchase day less than won_back_days ago whose gap to the purchase day before
                it is > lost_after_days (the customer had been lost in between: with a gap of
                exactly 365 days no as-of date ever saw them lost)
      new       days_since_first_purchase < new_customer_days         (day 0 … 99 with 100)
      at_risk   days_since_last_purchase > at_risk_after_days, where at_risk_after_days =
                max(at_risk_min_days, at_risk_gap_factor × median gap between purchase days)
                for ≥ 2 purchase days, else at_risk_gap_factor × at_risk_min_days (the missing
                median is taken as at_risk_min_days: 2 × 90 = 180 days with the defaults)
      active    everyone else (a purchase within the last lost_after_days).
    Customer-level: computed for the run's latest as-of date only (tag customer_level).

    Incremental on DuckDB (macros/incremental.sql): a customer's purchase history (first, second
    and last purchase day, purchase days, the latest win-back, the median gap) depends only on
    their rows dated on or before the as-of date. A night that continues the previous build
    recomputes it for the customers whose rows changed, who have rows dated between the previous
    as-of date and tonight's, and who became lost since (their revenue before the lapse is new),
    carries it over for everyone else, and recomputes the stage of every customer.
-#}
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

recomputed_customers as (
    select customer_id from {{ incremental_ops_relation('changed_customers') }}
    union
    -- Rows dated between the two as-of dates: in the history of one and not of the other.
    select customer_id
    from all_transactions
    where transaction_date > least({{ previous_as_of_date() }}, {{ as_of_date() }})
        and transaction_date <= greatest({{ previous_as_of_date() }}, {{ as_of_date() }})
    union
    -- Lost since the previous as-of date: their revenue before the lapse is computed now.
    select customer_id
    from previous
    where {{ days_between('last_purchase_date', as_of_date()) }} >= {{ var('lost_after_days') }}
        and {{ days_between('last_purchase_date', previous_as_of_date()) }} < {{ var('lost_after_days') }}
),

{{ recomputed_and_carried('all_transactions', 'previous', 'recomputed_customers', source('raw', 'erasures')) }}
{%- else -%}
transactions as (
    select * from all_transactions
),
{%- endif %}

gaps as (
    -- One window pass over the purchases: the gap to the previous purchase (null on the first).
    -- A purchase day's first row has the gap to the purchase day before it; more purchases on the
    -- same day have gap 0. So the purchase days are the rows with a null or positive gap, with no
    -- grouping by customer and day first (that group-by cost as much as the window).
    select
        customer_id,
        transaction_date as purchase_date,
        {{ days_between(
            'lag(transaction_date) over (partition by customer_id order by transaction_date)',
            'transaction_date') }} as gap_days
    from transactions
    where is_purchase and transaction_date <= {{ as_of_date() }}
),

customers as (
    select
        gaps.customer_id,
        min(gaps.purchase_date) as first_purchase_date,
        -- The second purchase day is the earliest one after a positive gap.
        min(case when gaps.gap_days > 0 then gaps.purchase_date end) as second_purchase_date,
        max(gaps.purchase_date) as last_purchase_date,
        count(case when gaps.gap_days is null or gaps.gap_days > 0 then 1 end) as purchase_days,
        -- The latest purchase that ended a lapse (gap longer than lost_after_days).
        max(case when gaps.gap_days > {{ var('lost_after_days') }} then gaps.purchase_date end) as last_win_back_date,
        -- The gaps between purchase days, sorted, for the median (see macros/median_of_values.sql).
        {{ sorted_values_agg('gaps.gap_days', 'gaps.gap_days > 0') }} as sorted_gaps
    from gaps
    group by gaps.customer_id
),

recomputed_history as (
    -- Null with one purchase day (no gap).
    select
        customer_id,
        first_purchase_date,
        second_purchase_date,
        last_purchase_date,
        cast(purchase_days as bigint) as purchase_days,
        last_win_back_date,
        cast({{ median_of_sorted('sorted_gaps') }} as double) as median_gap_days
    from customers
),

with_median as (
    select * from recomputed_history
    {%- if continues %}
    union all
    select
        customer_id,
        first_purchase_date,
        second_purchase_date,
        last_purchase_date,
        purchase_days,
        last_win_back_date,
        median_gap_days
    from carried
    {%- endif %}
),

measured as (
    select
        with_median.*,
        {{ days_between('first_purchase_date', as_of_date()) }} as days_since_first_purchase,
        {{ days_between('last_purchase_date', as_of_date()) }} as days_since_last_purchase,
        {{ days_between('last_win_back_date', as_of_date()) }} as days_since_win_back,
        case
            when purchase_days >= 2 then
                greatest(
                    cast({{ var('at_risk_min_days') }} as double),
                    {{ var('at_risk_gap_factor') }} * median_gap_days
                )
            else cast({{ var('at_risk_gap_factor') }} * {{ var('at_risk_min_days') }} as double)
        end as at_risk_after_days
    from with_median
),

staged as (
    select
        measured.*,
        case
            when days_since_last_purchase >= {{ var('lost_after_days') }} then 'lost'
            when days_since_win_back < {{ var('won_back_days') }} then 'won_back'
            when days_since_first_purchase < {{ var('new_customer_days') }} then 'new'
            when days_since_last_purchase > at_risk_after_days then 'at_risk'
            else 'active'
        end as lifecycle_stage
    from measured
),

revenue_before_lapse as (
    -- Lost customers' value: net revenue (refunds included) in the period_months months up to
    -- and including their last purchase (the 12 months before they lapsed, with yearly periods).
    select
        staged.customer_id,
        cast(sum(transactions.amount) as decimal(18, 2)) as revenue_before_lapse
    from staged
    inner join transactions
        on transactions.customer_id = staged.customer_id
        and transactions.transaction_date <= staged.last_purchase_date
        and transactions.transaction_date
            > {{ date_plus('month', '-1 * ' ~ var('period_months'), 'staged.last_purchase_date') }}
    where staged.lifecycle_stage = 'lost'
    group by staged.customer_id
    {%- if continues %}
    union all
    -- Lost already at the previous as-of date, and nothing of theirs changed: the same value.
    select carried.customer_id, carried.revenue_before_lapse
    from carried
    inner join staged
        on carried.customer_id = staged.customer_id
    where staged.lifecycle_stage = 'lost'
    {%- endif %}
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        staged.customer_id,
        staged.lifecycle_stage,
        staged.first_purchase_date,
        staged.second_purchase_date,
        staged.last_purchase_date,
        staged.last_win_back_date,
        staged.purchase_days,
        cast(staged.days_since_first_purchase as integer) as days_since_first_purchase,
        cast(staged.days_since_last_purchase as integer) as days_since_last_purchase,
        staged.median_gap_days,
        staged.at_risk_after_days,
        -- Activated: a second purchase day within new_customer_days of the first (day 1 … 99).
        coalesce(
            {{ days_between('staged.first_purchase_date', 'staged.second_purchase_date') }}
                < {{ var('new_customer_days') }},
            false
        ) as is_activated,
        -- The first as-of date at which a lost customer counted as lost; null for the others.
        case
            when staged.lifecycle_stage = 'lost'
                then {{ date_plus('day', var('lost_after_days'), 'staged.last_purchase_date') }}
        end as lost_since_date,
        revenue_before_lapse.revenue_before_lapse
    from staged
    left join revenue_before_lapse
        on staged.customer_id = revenue_before_lapse.customer_id
)

select * from final

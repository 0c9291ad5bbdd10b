{#- One row per as-of date, customer active in period k or k + 1, for every consecutive pair of
    periods, with the flow from k + 1 (earlier) to k (later). period_index is k. -#}
with

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
),

periods as (
    select * from {{ ref('int_periods') }}
),

later_periods as (
    select as_of_date, period_index from periods where has_previous_period
),

first_active as (
    -- Period indexes grow into the past: the largest one is where the first purchase was.
    select as_of_date, customer_id, max(period_index) as first_active_period_index
    from segmented
    group by as_of_date, customer_id
),

current_period as (
    select segmented.*
    from segmented
    inner join later_periods
        on segmented.as_of_date = later_periods.as_of_date
        and segmented.period_index = later_periods.period_index
),

previous_period as (
    select
        segmented.as_of_date,
        segmented.customer_id,
        segmented.period_index - 1 as period_index,
        segmented.value_segment,
        segmented.segment_rank,
        segmented.revenue,
        segmented.purchases
    from segmented
    inner join later_periods
        on segmented.as_of_date = later_periods.as_of_date
        and segmented.period_index - 1 = later_periods.period_index
),

joined as (
    select
        coalesce(current_period.as_of_date, previous_period.as_of_date) as as_of_date,
        coalesce(current_period.period_index, previous_period.period_index) as period_index,
        coalesce(current_period.customer_id, previous_period.customer_id) as customer_id,
        previous_period.value_segment as from_segment,
        current_period.value_segment as to_segment,
        previous_period.segment_rank as from_rank,
        current_period.segment_rank as to_rank,
        current_period.purchases,
        current_period.revenue,
        previous_period.revenue as previous_revenue,
        previous_period.purchases as previous_purchases
    from current_period
    full outer join previous_period
        on current_period.as_of_date = previous_period.as_of_date
        and current_period.customer_id = previous_period.customer_id
        and current_period.period_index = previous_period.period_index
),

final as (
    select
        joined.as_of_date,
        joined.period_index,
        joined.customer_id,
        joined.from_segment,
        joined.to_segment,
        case
            when joined.to_segment is null then 'lost'
            when joined.from_segment is null and first_active.first_active_period_index = joined.period_index then 'new'
            when joined.from_segment is null then 'recovered'
            when joined.to_rank = joined.from_rank then 'retained'
            when joined.to_rank < joined.from_rank then 'upgraded'
            else 'downgraded'
        end as flow,
        coalesce(joined.purchases, 0) as purchases,
        joined.revenue,
        joined.previous_revenue,
        coalesce(joined.previous_purchases, 0) as previous_purchases
    from joined
    inner join first_active
        on joined.as_of_date = first_active.as_of_date
        and joined.customer_id = first_active.customer_id
)

select * from final

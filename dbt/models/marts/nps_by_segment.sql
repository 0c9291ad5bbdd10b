{#- A customer's score in a period is their latest answer in it (int_nps_responses_latest_per_period).
    Answers from customers who were not active in the period count only in the total row. -#}
with

latest_answers as (
    select * from {{ ref('int_nps_responses_latest_per_period') }}
),

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
),

answers as (
    select
        latest_answers.as_of_date,
        latest_answers.period_index,
        latest_answers.nps_category,
        segmented.value_segment
    from latest_answers
    left join segmented
        on latest_answers.as_of_date = segmented.as_of_date
        and latest_answers.customer_id = segmented.customer_id
        and latest_answers.period_index = segmented.period_index
),

segments as (
    {{ segment_rows() }}
    union all select 'total', 5
),

grid as (
    select answered_periods.as_of_date, answered_periods.period_index, segments.value_segment
    from (select distinct as_of_date, period_index from answers) as answered_periods
    cross join segments
),

counted as (
    select
        grid.as_of_date,
        grid.period_index,
        grid.value_segment,
        {{ nps_counts('answers.nps_category') }}
    from grid
    left join answers
        on answers.as_of_date = grid.as_of_date
        and answers.period_index = grid.period_index
        and (answers.value_segment = grid.value_segment or grid.value_segment = 'total')
    group by grid.as_of_date, grid.period_index, grid.value_segment
),

final as (
    select
        as_of_date,
        period_index,
        value_segment,
        cast(responses as bigint) as responses,
        cast(promoters as bigint) as promoters,
        cast(passives as bigint) as passives,
        cast(detractors as bigint) as detractors,
        100 * {{ safe_divide('promoters - detractors', 'responses') }} as nps
    from counted
)

select * from final

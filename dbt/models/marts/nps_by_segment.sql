{#- A customer's score in a period is their latest answer in it. Answers from customers who were
    not active in the period count only in the total row. -#}
with

responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

periods as (
    select * from {{ ref('int_periods') }}
),

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
),

latest as (
    select
        periods.as_of_date,
        periods.period_index,
        responses.customer_id,
        responses.nps_category,
        row_number() over (
            partition by periods.as_of_date, periods.period_index, responses.customer_id
            order by responses.response_date desc, responses.response_id desc
        ) as answer_recency
    from responses
    inner join periods
        on responses.response_date between periods.period_start and periods.period_end
),

answers as (
    select
        latest.as_of_date,
        latest.period_index,
        latest.nps_category,
        segmented.value_segment
    from latest
    left join segmented
        on latest.as_of_date = segmented.as_of_date
        and latest.customer_id = segmented.customer_id
        and latest.period_index = segmented.period_index
    where latest.answer_recency = 1
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
        count(answers.nps_category) as responses,
        count(case when answers.nps_category = 'promoter' then 1 end) as promoters,
        count(case when answers.nps_category = 'passive' then 1 end) as passives,
        count(case when answers.nps_category = 'detractor' then 1 end) as detractors
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

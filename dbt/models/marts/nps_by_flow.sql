{#- NPS per flow cell (from segment → to segment) of every consecutive pair of periods: the
    answers of the cell's customers in the later period k, a customer's score being their latest
    answer in it (as in nps_by_segment). One row per non-empty flow cell of segment_flow_matrix;
    cells without answers have responses 0 and nps null. Lost customers were not active in k: an
    answer of theirs in k counts here (and in nps_by_segment's total row only). -#}
with

responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

periods as (
    select * from {{ ref('int_periods') }}
),

flows as (
    select * from {{ ref('int_customer_flows_classified') }}
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

latest_answers as (
    select as_of_date, period_index, customer_id, nps_category
    from latest
    where answer_recency = 1
),

flow_answers as (
    select
        flows.as_of_date,
        flows.period_index,
        flows.from_segment,
        flows.to_segment,
        flows.flow,
        latest_answers.nps_category
    from flows
    left join latest_answers
        on flows.as_of_date = latest_answers.as_of_date
        and flows.period_index = latest_answers.period_index
        and flows.customer_id = latest_answers.customer_id
),

counted as (
    select
        as_of_date,
        period_index,
        from_segment,
        to_segment,
        flow,
        count(*) as customers,
        count(nps_category) as responses,
        count(case when nps_category = 'promoter' then 1 end) as promoters,
        count(case when nps_category = 'passive' then 1 end) as passives,
        count(case when nps_category = 'detractor' then 1 end) as detractors
    from flow_answers
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
        cast(responses as bigint) as responses,
        cast(promoters as bigint) as promoters,
        cast(passives as bigint) as passives,
        cast(detractors as bigint) as detractors,
        100 * {{ safe_divide('promoters - detractors', 'responses') }} as nps
    from counted
)

select * from final

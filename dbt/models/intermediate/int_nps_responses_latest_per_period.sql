{#- A customer's NPS answer in a period: their latest answer in it (by date, then response id).
    One row per as-of date, period and customer who answered in the period; nps_by_segment and
    nps_by_flow count these. -#}
with

responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

periods as (
    select * from {{ ref('int_periods') }}
),

ranked as (
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

final as (
    select as_of_date, period_index, customer_id, nps_category
    from ranked
    where answer_recency = 1
)

select * from final

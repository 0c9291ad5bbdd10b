{#- NPS per flow cell (from segment → to segment) of every consecutive pair of periods: the
    answers of the cell's customers in the later period k, a customer's score being their latest
    answer in it (as in nps_by_segment). One row per non-empty flow cell of segment_flow_matrix;
    cells without answers have responses 0 and nps null. Lost customers were not active in k: an
    answer of theirs in k counts here (and in nps_by_segment's total row only). -#}
with

latest_answers as (
    select * from {{ ref('int_nps_responses_latest_per_period') }}
),

flows as (
    select * from {{ ref('int_customer_flows_classified') }}
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
        {{ nps_counts('nps_category') }}
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

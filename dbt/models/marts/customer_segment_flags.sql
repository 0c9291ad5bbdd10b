{#- One row per customer active in period 0 or 1 or standing in any lifecycle stage (every
    customer with a purchase on or before the as-of date): the per-customer file marketing
    automation imports. Period 0 = the latest period_months months (the last 12 with the
    defaults), which is what the *_12m columns hold.
    Consent never filters this mart; the export applies it. A customer-level mart: it holds the
    run's latest as-of date only (the intermediates carry every date of a backfilled range). -#}
with

staged as (
    select * from {{ ref('int_customer_lifecycle_staged') }}
),

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
    where as_of_date = {{ as_of_date() }}
),

aggregated as (
    select * from {{ ref('int_customer_periods_aggregated') }}
    where as_of_date = {{ as_of_date() }}
),

flows as (
    select * from {{ ref('int_customer_flows_classified') }}
    where as_of_date = {{ as_of_date() }}
),

clv as (
    select * from {{ ref('segment_clv') }}
    where as_of_date = {{ as_of_date() }}
),

responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

consent as (
    select * from {{ ref('stg_raw__customers') }}
),

population as (
    select customer_id from staged
    union
    select customer_id from segmented where period_index in (0, 1)
),

answered as (
    select * from responses where response_date <= {{ as_of_date() }}
),

latest_answer as (
    select
        customer_id,
        score as nps_score_latest,
        nps_category,
        row_number() over (partition by customer_id order by response_date desc, response_id desc) as answer_recency
    from answered
),

detractor_followups as (
    -- Any detractor answer dated within the last detractor_followup_days (0 … 29 days ago).
    select distinct customer_id
    from answered
    where nps_category = 'detractor'
        and {{ days_between('response_date', as_of_date()) }} < {{ var('detractor_followup_days') }}
),

onboarding_answers as (
    -- Customers who answered on or after their first purchase (an onboarding NPS is no longer due).
    select distinct answered.customer_id
    from answered
    inner join staged
        on answered.customer_id = staged.customer_id
        and answered.response_date >= staged.first_purchase_date
),

consent_source as (
    -- Without any consent rows the source is absent: consent is unknown (null), not "no".
    select count(*) > 0 as has_consent_source from consent
),

joined as (
    select
        population.customer_id,
        current_period.value_segment,
        current_period.value_decile,
        previous_period.value_segment as previous_value_segment,
        flows.flow,
        staged.lifecycle_stage,
        staged.first_purchase_date,
        staged.last_purchase_date,
        staged.days_since_first_purchase,
        staged.days_since_last_purchase,
        coalesce(aggregated.revenue, 0) as revenue_12m,
        coalesce(aggregated.purchases, 0) as purchases_12m,
        clv.clv,
        latest_answer.nps_score_latest,
        latest_answer.nps_category,
        detractor_followups.customer_id is not null as is_detractor_followup,
        onboarding_answers.customer_id is not null as has_answered_since_first_purchase,
        case
            when consent_source.has_consent_source then coalesce(consent.has_marketing_consent, false)
        end as has_marketing_consent
    from population
    cross join consent_source
    left join staged
        on population.customer_id = staged.customer_id
    left join segmented as current_period
        on population.customer_id = current_period.customer_id
        and current_period.period_index = 0
    left join segmented as previous_period
        on population.customer_id = previous_period.customer_id
        and previous_period.period_index = 1
    left join aggregated
        on population.customer_id = aggregated.customer_id
        and aggregated.period_index = 0
    left join flows
        on population.customer_id = flows.customer_id
        and flows.period_index = 0
    left join clv
        on current_period.value_segment = clv.value_segment
        and clv.period_index = 0
    left join latest_answer
        on population.customer_id = latest_answer.customer_id
        and latest_answer.answer_recency = 1
    left join detractor_followups
        on population.customer_id = detractor_followups.customer_id
    left join onboarding_answers
        on population.customer_id = onboarding_answers.customer_id
    left join consent
        on population.customer_id = consent.customer_id
),

final as (
    select
        customer_id,
        {{ as_of_date() }} as as_of_date,
        value_segment,
        cast(value_decile as integer) as value_decile,
        previous_value_segment,
        flow,
        lifecycle_stage,
        first_purchase_date,
        last_purchase_date,
        cast(days_since_last_purchase as integer) as days_since_last_purchase,
        cast(revenue_12m as decimal(18, 2)) as revenue_12m,
        cast(purchases_12m as bigint) as purchases_12m,
        cast(clv as double) as clv,
        cast(nps_score_latest as integer) as nps_score_latest,
        nps_category,
        coalesce(value_segment = 'super', false) as is_super,
        coalesce(value_segment = 'top', false) as is_top,
        coalesce(value_segment in ('super', 'top'), false) as is_vip,
        coalesce(lifecycle_stage = 'new', false) as is_new,
        coalesce(lifecycle_stage = 'at_risk', false) as is_at_risk,
        coalesce(lifecycle_stage = 'lost', false) as is_lost,
        coalesce(lifecycle_stage = 'won_back', false) as is_won_back,
        coalesce(flow = 'upgraded', false) as is_upgraded,
        coalesce(flow = 'downgraded', false) as is_downgraded,
        is_detractor_followup,
        -- Onboarding NPS due: day nps_due_from_day … nps_due_to_day (inclusive) since the first
        -- purchase, and no answer on or after that first purchase yet.
        coalesce(
            days_since_first_purchase between {{ var('nps_due_from_day') }} and {{ var('nps_due_to_day') }}
                and not has_answered_since_first_purchase,
            false
        ) as is_nps_due,
        has_marketing_consent
    from joined
)

select * from final

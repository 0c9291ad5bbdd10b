{#- Lifecycle KPIs at the as-of date, one row per lifecycle stage × value segment (a full grid
    of 6 × 6 rows, 'total' on either axis, zeros where nobody is).

    Built from the customer-level lifecycle, it holds the run's latest as-of date only.
    value_segment is the customer's segment in period 0 (the latest period_months months); 'none'
    when they made no purchase in it (nearly every lost customer).

    Every row: customers in the cell, their period-0 revenue and their share of the base (all
    customers with a stage). The stage KPIs of the course are columns filled only on the rows of
    the stage they belong to (null elsewhere, and on the 'total' stage rows), per segment:
      new       new_customers_in_period (first purchase ever in period 0), activation_base
                (those whose onboarding window of new_customer_days has closed),
                activated_customers / activation_rate (second purchase day within
                new_customer_days of the first), onboarding_nps_responses / onboarding_nps (the
                latest answer within nps_due_to_day days of the first purchase)
      won_back  win_backs_in_period (a win-back purchase, after a gap > lost_after_days, in period 0)
      lost      lost_in_period (customers who became lost in period 0: last purchase +
                lost_after_days falls in it) and lost_value (their revenue in the period_months
                months up to their last purchase, i.e. the 12 months before they lapsed).
-#}
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

periods as (
    select * from {{ ref('int_periods') }}
    where as_of_date = {{ as_of_date() }}
),

responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

stages as (
    select 'new' as lifecycle_stage, 1 as stage_order
    union all select 'won_back', 2
    union all select 'active', 3
    union all select 'at_risk', 4
    union all select 'lost', 5
    union all select 'total', 6
),

segments as (
    {{ segment_rows() }}
    union all select 'none', 5
    union all select 'total', 6
),

grid as (
    select stages.lifecycle_stage, stages.stage_order, segments.value_segment, segments.segment_rank
    from stages
    cross join segments
),

period_zero as (
    select period_start from periods where period_index = 0
),

customers as (
    select
        staged.customer_id,
        staged.lifecycle_stage,
        coalesce(segmented.value_segment, 'none') as value_segment,
        coalesce(aggregated.revenue, 0) as revenue_12m,
        staged.first_purchase_date,
        staged.first_purchase_date >= period_zero.period_start as is_new_in_period,
        staged.days_since_first_purchase >= {{ var('new_customer_days') }} as is_onboarding_closed,
        staged.is_activated,
        coalesce(staged.last_win_back_date >= period_zero.period_start, false) as is_won_back_in_period,
        coalesce(staged.lost_since_date >= period_zero.period_start, false) as is_lost_in_period,
        staged.revenue_before_lapse
    from staged
    cross join period_zero
    left join segmented
        on staged.customer_id = segmented.customer_id
        and segmented.period_index = 0
    left join aggregated
        on staged.customer_id = aggregated.customer_id
        and aggregated.period_index = 0
),

onboarding_answers as (
    -- New customers of the period: their latest answer within nps_due_to_day days of the first purchase.
    select
        customers.customer_id,
        responses.nps_category,
        row_number() over (
            partition by customers.customer_id
            order by responses.response_date desc, responses.response_id desc
        ) as answer_recency
    from customers
    inner join responses
        on responses.customer_id = customers.customer_id
        and responses.response_date >= customers.first_purchase_date
        and responses.response_date <= {{ as_of_date() }}
        and {{ days_between('customers.first_purchase_date', 'responses.response_date') }}
            <= {{ var('nps_due_to_day') }}
    where customers.is_new_in_period
),

scored as (
    select
        customers.*,
        onboarding_answers.nps_category as onboarding_nps_category
    from customers
    left join onboarding_answers
        on customers.customer_id = onboarding_answers.customer_id
        and onboarding_answers.answer_recency = 1
),

cells as (
    select
        grid.lifecycle_stage,
        grid.stage_order,
        grid.value_segment,
        grid.segment_rank,
        count(scored.customer_id) as customers,
        coalesce(sum(scored.revenue_12m), 0) as revenue_12m
    from grid
    left join scored
        on (scored.lifecycle_stage = grid.lifecycle_stage or grid.lifecycle_stage = 'total')
        and (scored.value_segment = grid.value_segment or grid.value_segment = 'total')
    group by grid.lifecycle_stage, grid.stage_order, grid.value_segment, grid.segment_rank
),

stage_kpis as (
    -- The stage KPIs per segment: each customer counts on the row of the stage the KPI belongs to.
    select
        segments.value_segment,
        count(case when scored.is_new_in_period then 1 end) as new_customers_in_period,
        count(case when scored.is_new_in_period and scored.is_onboarding_closed then 1 end) as activation_base,
        count(case when scored.is_new_in_period and scored.is_onboarding_closed and scored.is_activated then 1 end)
            as activated_customers,
        count(scored.onboarding_nps_category) as onboarding_nps_responses,
        count(case when scored.onboarding_nps_category = 'promoter' then 1 end) as onboarding_promoters,
        count(case when scored.onboarding_nps_category = 'detractor' then 1 end) as onboarding_detractors,
        count(case when scored.is_won_back_in_period then 1 end) as win_backs_in_period,
        count(case when scored.is_lost_in_period then 1 end) as lost_in_period,
        coalesce(sum(case when scored.is_lost_in_period then scored.revenue_before_lapse end), 0) as lost_value
    from segments
    left join scored
        on scored.value_segment = segments.value_segment or segments.value_segment = 'total'
    group by segments.value_segment
),

base as (
    select customers as base_customers from cells where lifecycle_stage = 'total' and value_segment = 'total'
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        cells.lifecycle_stage,
        cells.value_segment,
        cast(cells.stage_order as integer) as stage_order,
        cast(cells.segment_rank as integer) as segment_order,
        cast(cells.customers as bigint) as customers,
        cast(cells.revenue_12m as decimal(18, 2)) as revenue_12m,
        {{ safe_divide('cells.customers', 'base.base_customers') }} as share_of_base,
        case when cells.lifecycle_stage = 'new' then cast(stage_kpis.new_customers_in_period as bigint) end
            as new_customers_in_period,
        case when cells.lifecycle_stage = 'new' then cast(stage_kpis.activation_base as bigint) end as activation_base,
        case when cells.lifecycle_stage = 'new' then cast(stage_kpis.activated_customers as bigint) end
            as activated_customers,
        case when cells.lifecycle_stage = 'new' then
            {{ safe_divide('stage_kpis.activated_customers', 'stage_kpis.activation_base') }}
        end as activation_rate,
        case when cells.lifecycle_stage = 'new' then cast(stage_kpis.onboarding_nps_responses as bigint) end
            as onboarding_nps_responses,
        case when cells.lifecycle_stage = 'new' then
            100 * {{ safe_divide('stage_kpis.onboarding_promoters - stage_kpis.onboarding_detractors', 'stage_kpis.onboarding_nps_responses') }}
        end as onboarding_nps,
        case when cells.lifecycle_stage = 'won_back' then cast(stage_kpis.win_backs_in_period as bigint) end
            as win_backs_in_period,
        case when cells.lifecycle_stage = 'lost' then cast(stage_kpis.lost_in_period as bigint) end as lost_in_period,
        case when cells.lifecycle_stage = 'lost' then cast(stage_kpis.lost_value as decimal(18, 2)) end as lost_value
    from cells
    cross join base
    inner join stage_kpis
        on cells.value_segment = stage_kpis.value_segment
)

select * from final

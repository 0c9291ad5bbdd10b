{#- Per as-of date, later period k and segment s of period k + 1: how many of s's customers were
    still active in k. duration_years = period length in years ÷ churn rate (null when nobody churned). -#}
with

flows as (
    select * from {{ ref('int_customer_flows_classified') }}
),

periods as (
    select * from {{ ref('int_periods') }}
),

later_periods as (
    select as_of_date, period_index from periods where has_previous_period
),

segments as (
    {{ segment_rows() }}
    union all select 'total', 5
),

grid as (
    select later_periods.as_of_date, later_periods.period_index, segments.value_segment, segments.segment_rank
    from later_periods
    cross join segments
),

counted as (
    select
        grid.as_of_date,
        grid.period_index,
        grid.value_segment,
        grid.segment_rank,
        count(flows.customer_id) as base_customers,
        count(case when flows.flow = 'lost' then 1 end) as lost_customers
    from grid
    left join flows
        on flows.as_of_date = grid.as_of_date
        and flows.period_index = grid.period_index
        and flows.from_segment is not null
        and (flows.from_segment = grid.value_segment or grid.value_segment = 'total')
    group by grid.as_of_date, grid.period_index, grid.value_segment, grid.segment_rank
),

final as (
    select
        as_of_date,
        period_index,
        value_segment,
        cast(base_customers as bigint) as base_customers,
        cast(base_customers - lost_customers as bigint) as retained_customers,
        cast(lost_customers as bigint) as lost_customers,
        1 - {{ safe_divide('lost_customers', 'base_customers') }} as retention_rate,
        {{ safe_divide('lost_customers', 'base_customers') }} as churn_rate,
        {{ safe_divide(var('period_months') ~ ' / 12.0', safe_divide('lost_customers', 'base_customers')) }} as duration_years
    from counted
)

select * from final

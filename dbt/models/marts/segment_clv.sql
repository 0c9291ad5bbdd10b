{#- CLV per value segment of period k = revenue per customer per year (period k) × duration
    (from the segment's retention between k + 1 and k). The total row uses all active customers;
    its portfolio value is the sum over segments, not customers × the average CLV.
    On margin and discounted (DOMAIN.md, "CLV on margin, discounted …"): margin per customer per
    year m, yearly retention r and yearly discount rate d give m × Σ (r ÷ (1 + d))^t over
    t = 0, 1, … = m × (1 + d) ÷ (1 + d − r); with d = 0 and 12-month periods that is m × duration.
    Periods of other lengths: r is annualised as r_period ^ (12 ÷ period_months). -#}
with

segmented as (
    select * from {{ ref('int_customer_periods_segmented') }}
),

run_dates as (
    {{ run_dates() }}
),

retention as (
    -- segment_retention keeps every as-of date's slice: this run's dates only.
    select * from {{ ref('segment_retention') }}
    where as_of_date in (select as_of_date from run_dates)
),

segments as (
    {{ segment_rows() }}
),

grid as (
    select retention.as_of_date, retention.period_index, segments.value_segment, segments.segment_rank
    from (select distinct as_of_date, period_index from retention) as retention
    cross join segments
),

by_segment as (
    select
        grid.as_of_date,
        grid.period_index,
        grid.value_segment,
        grid.segment_rank,
        count(segmented.customer_id) as customers,
        coalesce(sum(segmented.purchases), 0) as purchases,
        coalesce(sum(segmented.revenue), 0) as revenue,
        coalesce(sum(segmented.margin), 0) as margin
    from grid
    left join segmented
        on segmented.as_of_date = grid.as_of_date
        and segmented.period_index = grid.period_index
        and segmented.value_segment = grid.value_segment
    group by grid.as_of_date, grid.period_index, grid.value_segment, grid.segment_rank
),

with_total as (
    select * from by_segment
    union all
    select as_of_date, period_index, 'total', 5, sum(customers), sum(purchases), sum(revenue), sum(margin)
    from by_segment
    group by as_of_date, period_index
),

valued as (
    select
        with_total.*,
        retention.duration_years,
        retention.retention_rate,
        {{ safe_divide('with_total.revenue', 'with_total.customers') }} * 12.0 / {{ var('period_months') }} as revenue_per_customer,
        {{ safe_divide('with_total.margin', 'with_total.customers') }} * 12.0 / {{ var('period_months') }} as margin_per_customer,
        power(retention.retention_rate, 12.0 / {{ var('period_months') }}) as retention_rate_yearly
    from with_total
    inner join retention
        on with_total.as_of_date = retention.as_of_date
        and with_total.period_index = retention.period_index
        and with_total.value_segment = retention.value_segment
),

with_clv as (
    select
        valued.*,
        revenue_per_customer * duration_years as clv,
        margin_per_customer * duration_years as clv_margin,
        -- null when d = 0 and nobody churned (an infinite sum); finite for any d > 0.
        margin_per_customer * {{ safe_divide('1 + ' ~ var('discount_rate'), '1 + ' ~ var('discount_rate') ~ ' - retention_rate_yearly') }} as clv_discounted
    from valued
),

final as (
    select
        as_of_date,
        period_index,
        value_segment,
        cast(customers as bigint) as customers,
        cast(purchases as bigint) as purchases,
        cast(revenue as decimal(18, 2)) as revenue,
        {{ safe_divide('purchases', 'customers') }} as purchases_per_customer,
        {{ safe_divide('revenue', 'purchases') }} as revenue_per_purchase,
        revenue_per_customer,
        duration_years,
        clv,
        -- Index against the lowest (bottom) segment; none for the total row.
        case
            when value_segment <> 'total' then
                {{ safe_divide('clv', "max(case when value_segment = 'bottom' then clv end) over (partition by as_of_date, period_index)") }}
        end as clv_index,
        retention_rate,
        case
            when value_segment <> 'total' then customers * clv
            -- Added in a fixed segment order: a floating-point sum in scan order differs in the last
            -- bits from run to run, and a re-run must give the same mart.
            when count(case when value_segment <> 'total' then customers * clv end) over slice > 0 then
                {%- for segment in ['super', 'top', 'middle', 'bottom'] %}
                coalesce(max(case when value_segment = '{{ segment }}' then customers * clv end) over slice, 0)
                {{- ' +' if not loop.last }}
                {%- endfor %}
        end as portfolio_value,
        cast(margin as decimal(18, 2)) as margin,
        margin_per_customer,
        clv_margin,
        retention_rate_yearly,
        clv_discounted,
        case
            when value_segment <> 'total' then customers * clv_discounted
            when count(case when value_segment <> 'total' then customers * clv_discounted end) over slice > 0 then
                {%- for segment in ['super', 'top', 'middle', 'bottom'] %}
                coalesce(max(case when value_segment = '{{ segment }}' then customers * clv_discounted end) over slice, 0)
                {{- ' +' if not loop.last }}
                {%- endfor %}
        end as portfolio_value_discounted
    from with_clv
    window slice as (partition by as_of_date, period_index)
)

select * from final

{#- One row per as-of date of the run and period, k = 0 the latest:
    (as_of − P·(k+1) months, as_of − P·k months]. Periods reach back to the oldest dated row,
    at most max_periods of them (config; by default as many as the history holds). -#}
with

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

nps_responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

run_dates as (
    {{ run_dates() }}
),

dated as (
    select transaction_date as event_date from transactions
    union all
    select response_date from nps_responses
),

first_date as (
    select min(event_date) as first_event_date
    from dated
),

series as (
    {{ integer_series(4) }}
),

periods as (
    select
        run_dates.as_of_date,
        cast(series.n as integer) as period_index,
        {{ period_start('series.n', 'run_dates.as_of_date') }} as period_start,
        {{ period_end('series.n', 'run_dates.as_of_date') }} as period_end
    from run_dates
    cross join series
    where series.n < {{ var('max_periods') }}
),

spine as (
    select periods.*
    from periods
    cross join first_date
    where periods.period_end >= first_date.first_event_date
),

final as (
    select
        spine.*,
        -- Flows, retention and CLV need the period before: the oldest period has none.
        spine.period_index + 1 < count(*) over (partition by spine.as_of_date) as has_previous_period
    from spine
)

select * from final

{#- One row per period, k = 0 the latest: (as_of − P·(k+1) months, as_of − P·k months].
    Periods reach back to the oldest dated row on or before the as-of date. -#}
with

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
),

nps_responses as (
    select * from {{ ref('stg_raw__nps_responses') }}
),

dated as (
    select transaction_date as event_date from transactions
    union all
    select response_date from nps_responses
),

first_date as (
    select min(event_date) as first_event_date
    from dated
    where event_date <= {{ as_of_date() }}
),

series as (
    {{ integer_series(3) }}
),

periods as (
    select
        cast(series.n as integer) as period_index,
        {{ period_start('series.n') }} as period_start,
        {{ period_end('series.n') }} as period_end
    from series
),

final as (
    select periods.*
    from periods
    cross join first_date
    where periods.period_end >= first_date.first_event_date
)

select * from final

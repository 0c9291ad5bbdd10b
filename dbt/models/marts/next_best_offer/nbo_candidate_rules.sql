{#- Next best offer, steps 1-3 (README "Next best offer"): every offer × every customer of the
    export population (marts.customer_segment_flags), the business, communication and hygiene
    rules that drop a candidate, and its value. One row per customer × offer; drop_rule names the
    first rule (in the order below) that drops it, null when it passes every rule. The propensity,
    priority, one-per-group, top-k, volume caps and arms follow in Python
    (dagster_project/next_best_offer), which writes marts.nbo_candidates from this.

    Day windows as everywhere: "within the last N days" = days since < N (0 … N-1 days ago).
      not_live                  the as-of date is outside start_date … end_date
      no_consent                the offer requires consent and the customer has none (only
                                when a consent source exists; erased customers are not in the
                                population at all)
      not_eligible_segment      eligible_segments is not empty and lacks the customer's segment
      not_eligible_stage        eligible_stages is not empty and lacks the customer's stage
      recent_purchase           a purchase of the offer's product (any purchase without one)
                                within suppress_after_purchase_days
      detractor                 a detractor answer within detractor_followup_days
      complaint                 a complained event within detractor_followup_days
      cooldown_after_reject     a rejected event of the offer within cooldown_after_reject_days
      offer_cap                 max_per_customer sent events of the offer within cap_window_days
      channel_cap               the channel's nbo_contact_policy: max sent events in the channel
                                within its days
    Value = expected_volume × unit_margin × duration − contact_cost; duration = the offer's
    duration_years, else the customer's segment duration (segment_clv, period 0), else the
    shortest segment duration (customers without a purchase in the latest period). -#}
with

flags as (
    select * from {{ ref('customer_segment_flags') }}
),

offers as (
    select * from {{ ref('stg_raw__offers') }}
),

events as (
    select * from {{ ref('stg_raw__offer_events') }}
    where event_date <= {{ as_of_date() }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
    where is_purchase and transaction_date <= {{ as_of_date() }}
),

clv as (
    select * from {{ ref('segment_clv') }}
    where as_of_date = {{ as_of_date() }} and period_index = 0 and value_segment <> 'total'
),

channel_policy as (
    {%- set policy = var('nbo_contact_policy', {}) %}
    {%- for channel, rule in policy.items() %}
    select '{{ channel }}' as channel, {{ rule['max'] }} as max_contacts, {{ rule['days'] }} as window_days
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
    {%- if not policy %}
    select {{ dbt.cast('null', 'varchar') }} as channel, cast(null as integer) as max_contacts, cast(null as integer) as window_days
    where false
    {%- endif %}
),

shortest_duration as (
    select min(duration_years) as duration_years from clv
),

days_ago as (
    select
        events.*,
        {{ days_between('events.event_date', as_of_date()) }} as days_since
    from events
),

product_purchases as (
    -- Only the offers' products: the join below matches nothing else (grouping every customer ×
    -- product of 100M transactions took 45 s on a night without a single offer).
    select customer_id, product_id, max(transaction_date) as last_purchase_date
    from transactions
    where product_id in (select product_id from offers)
    group by customer_id, product_id
),

offer_history as (
    -- Per customer × offer: days since the latest rejection, sent events within the cap window
    -- (the whole history when the offer has no window).
    select
        days_ago.customer_id,
        days_ago.offer_id,
        min(case when days_ago.event_type = 'rejected' then days_ago.days_since end) as days_since_rejected,
        count(*) filter (
            where days_ago.event_type = 'sent'
                and (offers.cap_window_days is null or days_ago.days_since < offers.cap_window_days)
        ) as sent_in_cap_window
    from days_ago
    inner join offers on days_ago.offer_id = offers.offer_id
    group by days_ago.customer_id, days_ago.offer_id
),

complaints as (
    select distinct customer_id
    from days_ago
    where event_type = 'complained' and days_since < {{ var('detractor_followup_days') }}
),

channel_contacts as (
    select days_ago.customer_id, channel_policy.channel, count(*) as contacts
    from days_ago
    inner join offers on days_ago.offer_id = offers.offer_id
    inner join channel_policy on offers.channel = channel_policy.channel
    where days_ago.event_type = 'sent' and days_ago.days_since < channel_policy.window_days
    group by days_ago.customer_id, channel_policy.channel
),

candidates as (
    select
        flags.customer_id,
        flags.value_segment,
        flags.lifecycle_stage,
        flags.flow,
        flags.has_marketing_consent,
        flags.is_detractor_followup,
        flags.last_purchase_date,
        offers.*
    from flags
    cross join offers
),

facts as (
    select
        candidates.*,
        coalesce(candidates.duration_years, clv.duration_years, shortest_duration.duration_years) as value_duration_years,
        case
            when candidates.product_id is null then candidates.last_purchase_date
            else product_purchases.last_purchase_date
        end as last_offer_purchase_date,
        offer_history.days_since_rejected,
        coalesce(offer_history.sent_in_cap_window, 0) as sent_in_cap_window,
        complaints.customer_id is not null as has_recent_complaint,
        coalesce(channel_contacts.contacts, 0) as channel_contacts,
        channel_policy.max_contacts as channel_max_contacts
    from candidates
    cross join shortest_duration
    left join clv on candidates.value_segment = clv.value_segment
    left join product_purchases
        on candidates.customer_id = product_purchases.customer_id
        and candidates.product_id = product_purchases.product_id
    left join offer_history
        on candidates.customer_id = offer_history.customer_id
        and candidates.offer_id = offer_history.offer_id
    left join complaints on candidates.customer_id = complaints.customer_id
    left join channel_contacts
        on candidates.customer_id = channel_contacts.customer_id
        and candidates.channel = channel_contacts.channel
    left join channel_policy on candidates.channel = channel_policy.channel
),

ruled as (
    select
        facts.*,
        case
            when {{ as_of_date() }} not between start_date and end_date then 'not_live'
            when requires_consent and has_marketing_consent = false then 'no_consent'
            when {{ list_size('eligible_segments') }} > 0 and not coalesce({{ list_has('eligible_segments', 'value_segment') }}, false)
                then 'not_eligible_segment'
            when {{ list_size('eligible_stages') }} > 0 and not coalesce({{ list_has('eligible_stages', 'lifecycle_stage') }}, false)
                then 'not_eligible_stage'
            when suppress_after_purchase_days is not null
                and {{ days_between('last_offer_purchase_date', as_of_date()) }} < suppress_after_purchase_days
                then 'recent_purchase'
            when is_detractor_followup then 'detractor'
            when has_recent_complaint then 'complaint'
            when cooldown_after_reject_days is not null and days_since_rejected < cooldown_after_reject_days
                then 'cooldown_after_reject'
            when max_per_customer is not null and sent_in_cap_window >= max_per_customer then 'offer_cap'
            when channel_max_contacts is not null and channel_contacts >= channel_max_contacts then 'channel_cap'
        end as drop_rule
    from facts
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        customer_id,
        offer_id,
        offer_group,
        channel,
        value_segment,
        lifecycle_stage,
        flow,
        cast(expected_volume * unit_margin * value_duration_years as double) as gross_value,
        contact_cost,
        cast(expected_volume * unit_margin * value_duration_years - contact_cost as double) as expected_value,
        value_duration_years as duration_years,
        business_weight,
        volume_cap,
        least({{ date_plus('day', 1, as_of_date()) }}, end_date) as valid_until,
        drop_rule
    from ruled
)

select * from final

{#- One row per contact of an offer on or before the as-of date: a sent event (ranked or random
    arm) or a held_out event (control arm: chosen for the offer, not sent). A contact responded
    when, within its response window (the contact day and the response_window_days - 1 days
    after it), the customer has a converted event of the offer or a purchase of the offer's
    product (any purchase when the offer names no product): held-out customers "respond"
    organically too, which is what lift is measured against. Contacts of unknown offers are left
    out. Each contact carries the customer's purchase features before its day and its response
    cell (value band × activity state, see nbo_customer_features): what the propensity learns
    from. Customer-level (latest as-of date only). -#}
with

events as (
    select * from {{ ref('stg_raw__offer_events') }}
    where event_date <= {{ as_of_date() }}
),

offers as (
    select * from {{ ref('stg_raw__offers') }}
),

transactions as {{ not_materialized() }} (
    select * from {{ ref('stg_raw__transactions') }}
    where is_purchase and transaction_date <= {{ as_of_date() }}
),

contacts as (
    select
        events.event_id,
        events.customer_id,
        events.offer_id,
        offers.channel,
        offers.product_id,
        events.arm,
        events.event_at as contacted_at,
        events.event_date as contact_date,
        {{ date_plus('day', 'offers.response_window_days - 1', 'events.event_date') }} as window_last_date
    from events
    inner join offers on events.offer_id = offers.offer_id
    where events.event_type in ('sent', 'held_out')
),

converted as (
    select distinct contacts.event_id
    from contacts
    inner join events
        on events.customer_id = contacts.customer_id
        and events.offer_id = contacts.offer_id
        and events.event_type = 'converted'
        and events.event_at >= contacts.contacted_at
        and events.event_date <= contacts.window_last_date
),

purchased as (
    select distinct contacts.event_id
    from contacts
    inner join transactions
        on transactions.customer_id = contacts.customer_id
        and (contacts.product_id is null or transactions.product_id = contacts.product_id)
        and transactions.transaction_date between contacts.contact_date and contacts.window_last_date
),

history as (
    select contacts.event_id, contacts.contact_date as reference_date, transactions.transaction_date, transactions.amount
    from contacts
    inner join transactions
        on transactions.customer_id = contacts.customer_id
        and transactions.transaction_date < contacts.contact_date
),

features as (
    {{ nbo_purchase_features('event_id', 'history') }}
),

vip_threshold as (
    select max(vip_revenue_threshold) as vip_revenue_threshold from {{ ref('nbo_customer_features') }}
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        contacts.event_id,
        contacts.customer_id,
        contacts.offer_id,
        contacts.channel,
        contacts.arm,
        contacts.contact_date,
        {{ nbo_feature_columns('features', 'vip_threshold.vip_revenue_threshold') }},
        contacts.window_last_date,
        contacts.window_last_date <= {{ as_of_date() }} as is_window_closed,
        converted.event_id is not null as has_converted_event,
        purchased.event_id is not null as has_offer_purchase,
        converted.event_id is not null or purchased.event_id is not null as is_response
    from contacts
    cross join vip_threshold
    left join features on contacts.event_id = features.event_id
    left join converted on contacts.event_id = converted.event_id
    left join purchased on contacts.event_id = purchased.event_id
)

select * from final

{#- Offer events of customers who are not erased; held_out events are always the control arm,
    others without an arm count as ranked. -#}
with

source as (
    select * from {{ source('raw', 'offer_events') }} as rows
    where not exists (
        select 1 from {{ source('raw', 'erasures') }} as erased where erased.customer_id = rows.customer_id
    )
),

final as (
    select
        event_id,
        customer_id,
        offer_id,
        channel,
        event_type,
        event_at,
        cast(event_at as date) as event_date,
        case when event_type = 'held_out' then 'control' else coalesce(arm, 'ranked') end as arm
    from source
)

select * from final

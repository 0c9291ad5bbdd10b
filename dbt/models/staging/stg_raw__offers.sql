{#- The offers with their documented defaults: offer_group = the offer itself, no contact cost,
    consent required, business weight 1. Eligibility lists are '|'-separated, trimmed and lower
    case; an empty list means everyone. -#}
with

source as (
    select * from {{ source('raw', 'offers') }}
),

final as (
    select
        offer_id,
        coalesce(offer_name, offer_id) as offer_name,
        channel,
        coalesce(offer_group, offer_id) as offer_group,
        start_date,
        end_date,
        cast(expected_volume as double) as expected_volume,
        cast(unit_margin as double) as unit_margin,
        cast(duration_years as double) as duration_years,
        cast(coalesce(contact_cost, 0) as double) as contact_cost,
        {{ split_lower_list('eligible_segments') }} as eligible_segments,
        {{ split_lower_list('eligible_stages') }} as eligible_stages,
        coalesce(requires_consent, true) as requires_consent,
        max_per_customer,
        cap_window_days,
        cooldown_after_reject_days,
        suppress_after_purchase_days,
        volume_cap,
        cast(coalesce(business_weight, 1) as double) as business_weight,
        response_window_days,
        product_id
    from source
)

select * from final

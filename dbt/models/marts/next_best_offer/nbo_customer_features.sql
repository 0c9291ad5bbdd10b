{#- Tonight's propensity features of every customer of the export population, computed like
    those of a contact in nbo_offer_contacts (macros/nbo_features.sql), and the response cell
    (value band × activity state) the smoothed response rates are counted in. value band vip:
    revenue in the last lost_after_days days at least the lowest revenue_12m of tonight's super
    and top customers (the same threshold for the contacts). -#}
with

flags as (
    select * from {{ ref('customer_segment_flags') }}
),

transactions as (
    select * from {{ ref('stg_raw__transactions') }}
    where is_purchase and transaction_date <= {{ as_of_date() }}
),

history as (
    -- Every customer's purchases, aggregated before the join to the population below (joining
    -- every purchase to the flags first: 0.9-1.0 s at 10M, this way 0.4 s).
    select customer_id, {{ as_of_date() }} as reference_date, transaction_date, amount
    from transactions
),

features as (
    {{ nbo_purchase_features('customer_id', 'history') }}
),

vip_threshold as (
    select coalesce(min(revenue_12m) filter (where value_segment in ('super', 'top')), 0) as vip_revenue_threshold
    from flags
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        flags.customer_id,
        {{ nbo_feature_columns('features', 'vip_threshold.vip_revenue_threshold') }},
        cast(vip_threshold.vip_revenue_threshold as double) as vip_revenue_threshold
    from flags
    cross join vip_threshold
    left join features on flags.customer_id = features.customer_id
)

select * from final

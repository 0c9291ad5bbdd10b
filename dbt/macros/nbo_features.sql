{#- The customer features of the next-best-offer propensity, computed alike at a contact (from the
    purchases before its day) and tonight (from the purchases up to the as-of date), so a model
    learns from the state a customer was in when contacted, not from what they did after:
    purchase aggregates of `purchases` (one row per purchase, a column `reference_date`) per key. -#}
{% macro nbo_purchase_features(key, purchases) -%}
    select
        {{ key }},
        {{ days_between('max(transaction_date)', 'max(reference_date)') }} as recency_days,
        {{ days_between('min(transaction_date)', 'max(reference_date)') }} as tenure_days,
        count(*) filter (where {{ days_between('transaction_date', 'reference_date') }} < {{ var('lost_after_days') }}) as purchases_365d,
        coalesce(sum(amount) filter (where {{ days_between('transaction_date', 'reference_date') }} < {{ var('lost_after_days') }}), 0) as revenue_365d
    from {{ purchases }}
    group by {{ key }}
{%- endmacro %}

{#- The response cell's activity state from those features, by the lifecycle thresholds (the
    stage rule without its median-gap refinement and won-back: both need the whole history at
    the contact): new, lost, at_risk, active. -#}
{% macro nbo_activity_state(recency_days, tenure_days) -%}
    case
        when {{ recency_days }} is null then 'none'
        when {{ tenure_days }} < {{ var('new_customer_days') }} then 'new'
        when {{ recency_days }} >= {{ var('lost_after_days') }} then 'lost'
        when {{ recency_days }} > {{ var('at_risk_min_days') }} then 'at_risk'
        else 'active'
    end
{%- endmacro %}

{#- The feature columns of a contact or a customer from the aggregates above (relation `features`)
    and the vip revenue threshold: recency_days … activity_state, the same in both models. -#}
{% macro nbo_feature_columns(features, vip_threshold) -%}
        cast({{ features }}.recency_days as bigint) as recency_days,
        cast({{ features }}.tenure_days as bigint) as tenure_days,
        coalesce({{ features }}.purchases_365d, 0) as purchases_365d,
        cast(coalesce({{ features }}.revenue_365d, 0) as double) as revenue_365d,
        case when coalesce({{ features }}.revenue_365d, 0) >= {{ vip_threshold }} then 'vip' else 'other' end as value_band,
        {{ nbo_activity_state(features ~ '.recency_days', features ~ '.tenure_days') }} as activity_state
{%- endmacro %}

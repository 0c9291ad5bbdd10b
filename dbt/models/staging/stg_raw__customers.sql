{#- The current consent of each customer: their latest consent event (ties: consent withdrawn wins). -#}
with

source as (
    select * from {{ source('raw', 'customers') }} as rows
    -- Erased customers never reach a model, whatever order the steps ran in.
    where not exists (
        select 1 from {{ source('raw', 'erasures') }} as erased where erased.customer_id = rows.customer_id
    )
),

ranked as (
    select
        customer_id,
        marketing_consent,
        consent_updated_at,
        email,
        row_number() over (
            partition by customer_id
            order by consent_updated_at desc, case when marketing_consent then 1 else 0 end
        ) as recency
    from source
),

final as (
    select
        customer_id,
        marketing_consent as has_marketing_consent,
        consent_updated_at,
        email
    from ranked
    where recency = 1
)

select * from final

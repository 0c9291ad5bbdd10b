with

source as (
    select * from {{ source('raw', 'nps_responses') }} as rows
    -- Erased customers never reach a model, whatever order the steps ran in.
    where not exists (
        select 1 from {{ source('raw', 'erasures') }} as erased where erased.customer_id = rows.customer_id
    )
),

final as (
    select
        response_id,
        customer_id,
        response_date,
        score,
        survey,
        {{ nps_category('score') }} as nps_category
    from source
)

select * from final

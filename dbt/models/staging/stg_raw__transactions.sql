with

source as (
    select * from {{ source('raw', 'transactions') }} as rows
    -- Erased customers never reach a model, whatever order the steps ran in.
    where not exists (
        select 1 from {{ source('raw', 'erasures') }} as erased where erased.customer_id = rows.customer_id
    )
),

final as (
    select
        transaction_id,
        customer_id,
        transaction_date,
        amount,
        product_id,
        channel,
        amount > 0 as is_purchase
    from source
)

select * from final

with

source as (
    select * from {{ source('raw', 'transactions') }}
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

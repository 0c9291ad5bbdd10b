{#- Margin rate per product: the share of a transaction's amount that is margin. -#}
with

source as (
    select * from {{ source('raw', 'products') }}
),

final as (
    select
        product_id,
        margin_rate
    from source
)

select * from final

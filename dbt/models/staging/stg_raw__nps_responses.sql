with

source as (
    select * from {{ source('raw', 'nps_responses') }}
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

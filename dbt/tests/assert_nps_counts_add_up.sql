{{ config(meta={'dagster': {'ref': {'name': 'nps_by_segment'}}}) }}
{#- promoters + passives + detractors = responses on every row, and no segment counts more
    answers than the total of its period. -#}
with

nps as (
    select * from {{ ref('nps_by_segment') }}
    where as_of_date = {{ as_of_date() }}
),

segment_sums as (
    select period_index, sum(responses) as responses
    from nps
    where value_segment <> 'total'
    group by period_index
)

select nps.period_index, nps.value_segment, nps.responses
from nps
left join segment_sums on nps.period_index = segment_sums.period_index
where nps.promoters + nps.passives + nps.detractors <> nps.responses
    or (nps.value_segment = 'total' and nps.responses < segment_sums.responses)

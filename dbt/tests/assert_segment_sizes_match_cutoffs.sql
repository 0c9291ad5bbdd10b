{{ config(meta={'dagster': {'ref': {'name': 'customer_period_facts'}}}) }}
{#- Checked independently of the model's rank(): ordering customers by revenue, the segments
    through s hold the first ceil(cut · n) customers, plus only the customers tied with the last
    of those (equal revenue shares a segment). Rows returned are the cuts that break this. -#}
{%- set cutoffs = var('segment_cutoffs') %}
with

facts as (
    select * from {{ ref('customer_period_facts') }}
    where value_segment is not null
),

positioned as (
    select
        period_index,
        revenue,
        value_segment,
        row_number() over (partition by period_index order by revenue desc, customer_id) as position,
        count(*) over (partition by period_index) as active_customers
    from facts
),

cuts as (
    select 'super' as through_segment, {{ cutoffs['super'] }} as cutoff, 1 as segment_rank
    union all select 'top', {{ cutoffs['top'] }}, 2
    union all select 'middle', {{ cutoffs['middle'] }}, 3
),

per_cut as (
    select
        positioned.period_index,
        cuts.through_segment,
        cast(ceiling(cuts.cutoff * max(positioned.active_customers)) as integer) as boundary,
        count(case when {{ segment_rank('positioned.value_segment') }} <= cuts.segment_rank then 1 end) as cumulative
    from positioned
    cross join cuts
    group by positioned.period_index, cuts.through_segment, cuts.cutoff
),

checked as (
    select
        per_cut.*,
        at_boundary.revenue as boundary_revenue,
        last_included.revenue as last_included_revenue
    from per_cut
    left join positioned as at_boundary
        on at_boundary.period_index = per_cut.period_index and at_boundary.position = per_cut.boundary
    left join positioned as last_included
        on last_included.period_index = per_cut.period_index and last_included.position = per_cut.cumulative
)

select *
from checked
where cumulative < boundary
    or (cumulative > boundary and boundary_revenue <> last_included_revenue)

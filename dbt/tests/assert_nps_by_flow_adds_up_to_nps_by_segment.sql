{{ config(meta={'dagster': {'ref': {'name': 'nps_by_flow'}}}) }}
{#- The flow cells split nps_by_segment exactly: per later period k and to-segment, the cells'
    responses, promoters, passives and detractors sum to the segment's row of period k; all cells
    together (lost ones included) count no more answers than the period's total row; each cell
    has the customers of its segment_flow_matrix cell, and the counts add up within the cell. -#}
with

by_flow as (
    select * from {{ ref('nps_by_flow') }}
    where as_of_date = {{ as_of_date() }}
),

by_segment as (
    select * from {{ ref('nps_by_segment') }}
    where as_of_date = {{ as_of_date() }}
),

flow_matrix as (
    select * from {{ ref('segment_flow_matrix') }}
    where as_of_date = {{ as_of_date() }}
),

flow_periods as (
    select distinct period_index from flow_matrix
),

flow_sums as (
    select
        period_index,
        to_segment as value_segment,
        sum(responses) as responses,
        sum(promoters) as promoters,
        sum(passives) as passives,
        sum(detractors) as detractors
    from by_flow
    where to_segment is not null
    group by period_index, to_segment
),

segment_rows as (
    select by_segment.*
    from by_segment
    inner join flow_periods on by_segment.period_index = flow_periods.period_index
    where by_segment.value_segment <> 'total'
),

segment_mismatches as (
    select
        coalesce(flow_sums.period_index, segment_rows.period_index) as period_index,
        coalesce(flow_sums.value_segment, segment_rows.value_segment) as cell,
        'segment sums differ from nps_by_segment' as problem
    from flow_sums
    full outer join segment_rows
        on flow_sums.period_index = segment_rows.period_index
        and flow_sums.value_segment = segment_rows.value_segment
    where coalesce(flow_sums.responses, 0) <> coalesce(segment_rows.responses, 0)
        or coalesce(flow_sums.promoters, 0) <> coalesce(segment_rows.promoters, 0)
        or coalesce(flow_sums.passives, 0) <> coalesce(segment_rows.passives, 0)
        or coalesce(flow_sums.detractors, 0) <> coalesce(segment_rows.detractors, 0)
),

total_mismatches as (
    select
        cell_sums.period_index,
        'total' as cell,
        'flow cells count more answers than the total row' as problem
    from (select period_index, sum(responses) as responses from by_flow group by period_index) as cell_sums
    left join by_segment
        on cell_sums.period_index = by_segment.period_index
        and by_segment.value_segment = 'total'
    where cell_sums.responses > coalesce(by_segment.responses, 0)
),

cell_mismatches as (
    select
        coalesce(by_flow.period_index, flow_matrix.period_index) as period_index,
        coalesce(by_flow.flow, flow_matrix.flow) as cell,
        'cell differs from segment_flow_matrix or its counts do not add up' as problem
    from by_flow
    full outer join flow_matrix
        on by_flow.period_index = flow_matrix.period_index
        and by_flow.flow = flow_matrix.flow
        and coalesce(by_flow.from_segment, '-') = coalesce(flow_matrix.from_segment, '-')
        and coalesce(by_flow.to_segment, '-') = coalesce(flow_matrix.to_segment, '-')
    where by_flow.customers is null
        or flow_matrix.customers is null
        or by_flow.customers <> flow_matrix.customers
        or by_flow.promoters + by_flow.passives + by_flow.detractors <> by_flow.responses
        or by_flow.responses > by_flow.customers
)

select * from segment_mismatches
union all
select * from total_mismatches
union all
select * from cell_mismatches

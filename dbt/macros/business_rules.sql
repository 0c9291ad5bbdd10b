{#- The business rules that several models share. Constants come from vars (config.py). -#}

{#- The run's as-of date(s) live in the one-column table ops.run_dates, written by the Dagster dbt
    step just before `dbt build` (dagster_project/transform.py), not in --vars: identical vars from
    run to run let dbt reuse its partial parse. A var as_of_date / as_of_dates still wins: the dbt
    unit tests override them, and a hand-run `dbt build --vars ...` works without the table. -#}
{% macro run_dates_relation() -%}
    {%- if target.type == 'spark' -%}
    {#- Spark: the Parquet copy the dbt step writes (dagster_project/spark_engine.py), read by path. -#}
    {{ return(api.Relation.create(schema='parquet', identifier='`' ~ env_var('LOYALTY_SPARK_OPS_DIR') ~ '/run_dates`')) }}
    {%- endif -%}
    {{ return(api.Relation.create(schema='ops', identifier='run_dates')) }}
{%- endmacro %}

{#- The latest as-of date of the run: customer-level marts hold this date only. Rendered as a
    literal when the node is compiled (execute), so the SQL and its plan are those of a constant. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) is not none -%}
    cast('{{ var("as_of_date") }}' as date)
    {%- elif execute -%}
    {%- set latest = run_query('select max(as_of_date) from ' ~ run_dates_relation()).columns[0].values()[0] -%}
    {%- if latest is none -%}
    {{ exceptions.raise_compiler_error('ops.run_dates is empty: the run wrote no as-of date') }}
    {%- endif -%}
    cast('{{ latest }}' as date)
    {%- else -%}
    {#- Parse time only: never executed. -#}
    cast(null as date)
    {%- endif %}
{%- endmacro %}

{#- Every as-of date of the run (one for a nightly run, a range for a backfill) as rows; the
    aggregate marts keep one slice per as_of_date. -#}
{% macro run_dates() -%}
    {%- set dates = var('as_of_dates', none) or ([var('as_of_date')] if var('as_of_date', none) is not none else none) -%}
    {%- if dates is none %}
    select cast(as_of_date as date) as as_of_date from {{ run_dates_relation() }}
    {%- else -%}
    {%- for date in dates %}
    select cast('{{ date }}' as date) as as_of_date{% if not loop.last %} union all{% endif %}
    {%- endfor %}
    {%- endif %}
{%- endmacro %}

{#- Last day of period k: as_of − period_months·k months (month ends clamp: Mar 31 − 1 month = Feb 28/29). -#}
{% macro period_end(period_index, as_of='as_of_date') -%}
    {{ date_plus('month', '-1 * ' ~ var('period_months') ~ ' * (' ~ period_index ~ ')', as_of) }}
{%- endmacro %}

{#- First day of period k: the day after the end of period k + 1. -#}
{% macro period_start(period_index, as_of='as_of_date') -%}
    {{ date_plus('day', 1, period_end('(' ~ period_index ~ ') + 1', as_of)) }}
{%- endmacro %}

{#- Value segment from the value share (customers with strictly higher revenue ÷ active customers). -#}
{% macro value_segment(value_share) -%}
    {%- set cutoffs = var('segment_cutoffs') -%}
    case
        when {{ value_share }} < {{ cutoffs['super'] }} then 'super'
        when {{ value_share }} < {{ cutoffs['top'] }} then 'top'
        when {{ value_share }} < {{ cutoffs['middle'] }} then 'middle'
        else 'bottom'
    end
{%- endmacro %}

{#- 1 = the most valuable segment; a lower rank in the later period is an upgrade. -#}
{% macro segment_rank(segment) -%}
    case {{ segment }} when 'super' then 1 when 'top' then 2 when 'middle' then 3 when 'bottom' then 4 end
{%- endmacro %}

{#- The four segments as rows (value_segment, segment_rank), for reports that list every segment. -#}
{% macro segment_rows() -%}
    select 'super' as value_segment, 1 as segment_rank
    union all select 'top', 2
    union all select 'middle', 3
    union all select 'bottom', 4
{%- endmacro %}

{#- responses, promoters, passives, detractors of a column of NPS categories (nulls: no answer). -#}
{% macro nps_counts(category) -%}
        count({{ category }}) as responses,
        count(case when {{ category }} = 'promoter' then 1 end) as promoters,
        count(case when {{ category }} = 'passive' then 1 end) as passives,
        count(case when {{ category }} = 'detractor' then 1 end) as detractors
{%- endmacro %}

{% macro nps_category(score) -%}
    case
        when {{ score }} >= {{ var('nps_promoter_min') }} then 'promoter'
        when {{ score }} >= {{ var('nps_passive_min') }} then 'passive'
        else 'detractor'
    end
{%- endmacro %}

{#- Integer series 0 … 10^digits − 1 as rows named n. Portable SQL by default (no generate_series);
    Spark has one generator call for it (10 000 rows of cross-joined unions cost it seconds to plan). -#}
{% macro integer_series(digits=3) -%}
    {{ return(adapter.dispatch('integer_series')(digits)) }}
{%- endmacro %}

{% macro spark__integer_series(digits=3) -%}
    select explode(sequence(0, {{ 10 ** digits - 1 }})) as n
{%- endmacro %}

{% macro default__integer_series(digits=3) -%}
    {%- set alias_names = [] -%}
    select
        {% for i in range(digits) -%}
        d{{ i }}.n * {{ 10 ** i }}{% if not loop.last %} + {% endif %}
        {%- endfor %} as n
    from
        {% for i in range(digits) -%}
        (select 0 as n union all select 1 union all select 2 union all select 3 union all select 4
         union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) as d{{ i }}
        {%- if not loop.last %} cross join {% endif %}
        {% endfor %}
{%- endmacro %}

{#- Division that yields null instead of failing on a zero denominator. -#}
{% macro safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0))
{%- endmacro %}

{#- Margin of a transaction: its amount × the product's margin rate (products/ landing folder), or
    × the margin_rate setting for a transaction without a listed product. Decimal arithmetic, so
    with margin_rate 1 the margin equals the revenue to the cent, in any summation order. -#}
{% macro margin_of(amount, product_margin_rate) -%}
    ({{ amount }} * coalesce({{ product_margin_rate }}, cast({{ var('margin_rate') }} as decimal(9, 6))))
{%- endmacro %}

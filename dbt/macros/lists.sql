{#- Lists (arrays) of text, for the offers' eligible_segments / eligible_stages. DuckDB: list_*
    functions and lambdas `lambda s: ...`; Spark: split (a regular expression), transform/filter
    with `s -> ...`, size, array_contains. Arrays are 1-based on both; no value here depends on
    their order. -#}

{#- The '|'-separated text as a list of its items, trimmed and lower case, empty items dropped
    (null or '' text: an empty list). -#}
{% macro split_lower_list(text, separator='|') -%}
    {{ return(adapter.dispatch('split_lower_list')(text, separator)) }}
{%- endmacro %}

{% macro default__split_lower_list(text, separator='|') -%}
    list_filter(
            list_transform(string_split(coalesce({{ text }}, ''), '{{ separator }}'), lambda s: lower(trim(s))), lambda s: s <> ''
        )
{%- endmacro %}

{#- split() takes a regular expression: the separator as a character class ('[|]'). -#}
{% macro spark__split_lower_list(text, separator='|') -%}
    filter(
            transform(split(coalesce({{ text }}, ''), '[{{ separator }}]'), s -> lower(trim(s))), s -> s <> ''
        )
{%- endmacro %}

{#- The number of items of a list; null for a null list on both engines (Spark's size(null) is
    -1 with ANSI off, as dbt-spark runs it). -#}
{% macro list_size(list) -%}
    {{ return(adapter.dispatch('list_size')(list)) }}
{%- endmacro %}

{% macro default__list_size(list) -%}
    len({{ list }})
{%- endmacro %}

{% macro spark__list_size(list) -%}
    case when {{ list }} is not null then size({{ list }}) end
{%- endmacro %}

{#- Whether a list holds a value (null for a null list or value, as on DuckDB). -#}
{% macro list_has(list, value) -%}
    {{ return(adapter.dispatch('list_has')(list, value)) }}
{%- endmacro %}

{% macro default__list_has(list, value) -%}
    list_contains({{ list }}, {{ value }})
{%- endmacro %}

{% macro spark__list_has(list, value) -%}
    array_contains({{ list }}, {{ value }})
{%- endmacro %}

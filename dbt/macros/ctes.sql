{#- `name as {{ not_materialized() }} (...)`: a CTE that the query reads more than once is inlined
    at each read instead of stored first. DuckDB stores such a CTE by default: for a CTE over every
    transaction that is a copy of every transaction (10M: 0.16-0.2 s), made only to be filtered
    down to a few customers (an incremental night's recomputed customers, the contacts of an
    offer). Spark inlines CTEs and has no such keyword. -#}
{% macro not_materialized() -%}
    {{ return(adapter.dispatch('not_materialized')()) }}
{%- endmacro %}

{% macro duckdb__not_materialized() -%}
    not materialized
{%- endmacro %}

{% macro default__not_materialized() -%}
{%- endmacro %}

{#- Date arithmetic that gives a DATE and the same answer on every engine (the silent differences:
    `date - interval` is a DATE on Spark and a TIMESTAMP on DuckDB; dbt.dateadd returns a timestamp
    on both, and dbt-spark's dateadd / datediff go through unix timestamps in the session time zone
    and raise on a null argument, which lag() and "no second purchase" give on purpose).
    add_months clamps month ends on both engines (Mar 31 − 1 month = Feb 28/29; Spark 3+'s add_months
    does not move a month's last day to the target month's last day either, as DuckDB's interval). -#}

{#- Whole days from first to second (second − first); null if either is null. -#}
{% macro days_between(first_date, second_date) -%}
    {{ return(adapter.dispatch('days_between')(first_date, second_date)) }}
{%- endmacro %}

{% macro default__days_between(first_date, second_date) -%}
    {{ dbt.datediff(first_date, second_date, 'day') }}
{%- endmacro %}

{% macro spark__days_between(first_date, second_date) -%}
    datediff({{ second_date }}, {{ first_date }})
{%- endmacro %}

{#- The date `days` days after (negative: before) a date. -#}
{% macro add_days(days, date) -%}
    {{ return(adapter.dispatch('add_days')(days, date)) }}
{%- endmacro %}

{% macro default__add_days(days, date) -%}
    cast({{ dbt.dateadd('day', days, date) }} as date)
{%- endmacro %}

{% macro spark__add_days(days, date) -%}
    date_add({{ date }}, cast({{ days }} as int))
{%- endmacro %}

{#- The date `months` months after (negative: before) a date, month ends clamped. -#}
{% macro add_months(months, date) -%}
    {{ return(adapter.dispatch('add_months')(months, date)) }}
{%- endmacro %}

{% macro default__add_months(months, date) -%}
    cast({{ dbt.dateadd('month', months, date) }} as date)
{%- endmacro %}

{% macro spark__add_months(months, date) -%}
    add_months({{ date }}, cast({{ months }} as int))
{%- endmacro %}

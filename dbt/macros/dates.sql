{#- Date arithmetic that gives a DATE and the same answer on every engine (the silent differences:
    `date - interval` is a DATE on Spark and a TIMESTAMP on DuckDB; dbt.dateadd returns a timestamp
    on both, and dbt-spark's dateadd / datediff go through unix timestamps in the session time zone
    and raise on a null argument, which lag() and "no second purchase" give on purpose).
    date_plus('month', ...) clamps month ends on both engines (Mar 31 − 1 month = Feb 28/29; Spark 3+'s add_months
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

{#- The date `amount` days or months (datepart 'day' / 'month') after a date; negative: before. -#}
{% macro date_plus(datepart, amount, date) -%}
    {{ return(adapter.dispatch('date_plus')(datepart, amount, date)) }}
{%- endmacro %}

{% macro default__date_plus(datepart, amount, date) -%}
    cast({{ dbt.dateadd(datepart, amount, date) }} as date)
{%- endmacro %}

{% macro spark__date_plus(datepart, amount, date) -%}
    {{ {'day': 'date_add', 'month': 'add_months'}[datepart] }}({{ date }}, cast({{ amount }} as int))
{%- endmacro %}

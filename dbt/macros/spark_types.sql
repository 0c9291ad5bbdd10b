{#- engine: spark. The contracts name DuckDB's `varchar`; Spark calls it `string` (and refuses a
    varchar without a length). dbt builds the contract's empty schema through dbt.cast, so that is
    where it is mapped. (The raw sources and ops.run_dates are read from their Parquet folders by
    path: models/staging/_raw__sources.yml, run_dates_relation() in business_rules.sql.) -#}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ 'string' if type | trim | lower == 'varchar' else type }})
{%- endmacro %}

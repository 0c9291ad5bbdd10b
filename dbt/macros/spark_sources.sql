{#- engine: spark. The Spark session has no metastore (dbt/profiles.yml): at every run start the
    raw sources and ops.run_dates are registered as tables on the Parquet dataset the Dagster dbt
    step wrote (dagster_project/spark_engine.py), at the folders of LOYALTY_SPARK_RAW_DIR /
    LOYALTY_SPARK_OPS_DIR. On DuckDB the sources are the warehouse's own tables: nothing to do. -#}
{% macro register_raw_sources() -%}
    {{ return(adapter.dispatch('register_raw_sources')()) }}
{%- endmacro %}

{% macro default__register_raw_sources() -%}
    select 1
{%- endmacro %}

{% macro spark__register_raw_sources() -%}
    {%- if execute -%}
    {%- set raw_dir = env_var('LOYALTY_SPARK_RAW_DIR') -%}
    {%- set ops_dir = env_var('LOYALTY_SPARK_OPS_DIR') -%}
    {%- do run_query('create schema if not exists raw') -%}
    {%- do run_query('create schema if not exists ops') -%}
    {%- for node in graph.sources.values() if node.source_name == 'raw' -%}
    {%- do run_query('drop table if exists raw.' ~ node.name) -%}
    {%- do run_query("create table raw." ~ node.name ~ " using parquet location '" ~ raw_dir ~ "/" ~ node.name ~ "'") -%}
    {%- endfor -%}
    {%- do run_query('drop table if exists ops.run_dates') -%}
    {%- do run_query("create table ops.run_dates using parquet location '" ~ ops_dir ~ "/run_dates'") -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- The contracts name DuckDB's `varchar`; Spark calls it `string` (and refuses a varchar without a
    length). dbt builds the contract's empty schema through dbt.cast, so that is where it is mapped. -#}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ 'string' if type | trim | lower == 'varchar' else type }})
{%- endmacro %}

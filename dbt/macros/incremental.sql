{#- Incremental intermediates (README "Incremental nights").

    int_customer_periods_aggregated, int_customer_lifecycle_staged and int_customer_rfm are
    incremental on DuckDB: a night starts from the previous build ({{ this }}), recomputes only the
    customers whose rows changed or who have rows on a day that an edge of tonight's as-of date
    (a period edge, the calibration end) passed since the as-of date the previous build was made
    for, carries every other customer's figures over, and writes the whole table again (the as-of
    dependent columns change for everyone: as_of_date, period bounds, days since, ages ...).

    What changed in raw is decided before dbt runs, by dagster_project/incremental.py (the ingest
    log against a snapshot of it taken at the last build, the configuration, the models' code): it
    writes ops.incremental_build (mode 'incremental' or 'full', and why) and
    ops.changed_customers (the customers of the files loaded since). Which customers the moved
    period edges touch is decided here, in SQL, from the as-of date stored in the previous build.
    On Spark these models are plain tables (a full build every run). -#}

{#- The materialisation of an incremental intermediate: incremental on DuckDB, a table on Spark. -#}
{% macro incremental_intermediate_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}

{#- Custom incremental strategy 'replace' (dbt: a macro get_incremental_<strategy>_sql): the new
    build holds every row, so the previous rows all go and the new ones are inserted, in the
    materialisation's one transaction. -#}
{% macro get_incremental_replace_sql(arg_dict) -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ arg_dict['target_relation'] }};
    insert into {{ arg_dict['target_relation'] }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
{%- endmacro %}

{% macro incremental_ops_relation(identifier) -%}
    {{ return(api.Relation.create(schema='ops', identifier=identifier)) }}
{%- endmacro %}

{#- Called by a model after its own is_incremental() (the model exists, no --full-refresh; false in
    dbt's unit tests, which override it in the model's context): true when the pipeline found
    nothing that needs a full rebuild (ops.incremental_build says 'incremental') and the previous
    build holds one as-of date. False on Spark, at parse time, and without the ops table (a
    hand-run dbt). -#}
{% macro continues_previous_build() -%}
    {%- if target.type == 'spark' or not execute or this is none -%}
    {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='ops', identifier='incremental_build') -%}
    {%- if relation is none -%}
    {{ return(false) }}
    {%- endif -%}
    {%- set mode = run_query('select max(mode) from ' ~ relation).columns[0].values()[0] -%}
    {%- if mode != 'incremental' -%}
    {{ return(false) }}
    {%- endif -%}
    {%- set dates = run_query('select count(distinct as_of_date), max(as_of_date) from ' ~ this).rows[0] -%}
    {#- One as-of date in the previous build (a backfill's several: rebuilt in full). -#}
    {{ return(dates[0] == 1) }}
{%- endmacro %}

{#- The as-of date the previous build was made for, as a date literal (only when it continues). -#}
{% macro previous_as_of_date() -%}
    {%- set previous = run_query('select max(as_of_date) from ' ~ this).columns[0].values()[0] -%}
    cast('{{ previous }}' as date)
{%- endmacro %}

{#- The days whose period (period_index, or none) differs between the as-of dates old and new:
    period k is (as_of − P·(k+1) months, as_of − P·k months], so a day changes period exactly
    when an edge e_j = as_of − P·j months (j = 0 … edges) passes it: the days in
    (least(e_j(old), e_j(new)), greatest(e_j(old), e_j(new))]. One row per day (day). -#}
{% macro days_between_moved_edges(old_as_of, new_as_of, edges) -%}
    select distinct {{ date_plus('day', 'offsets.n + 1', 'moved.low') }} as day
    from (
        select
            least({{ period_end('edges.n', old_as_of) }}, {{ period_end('edges.n', new_as_of) }}) as low,
            greatest({{ period_end('edges.n', old_as_of) }}, {{ period_end('edges.n', new_as_of) }}) as high
        from ({{ integer_series(3) }}) as edges
        where edges.n <= {{ edges }}
    ) as moved
    inner join ({{ integer_series(3) }}) as offsets
        on offsets.n < {{ days_between('moved.low', 'moved.high') }}
{%- endmacro %}

{#- CTE body: the customers of the files loaded since the last build (ops.changed_customers)
    and those with rows on one of the moved days (days_between_moved_edges). -#}
{% macro changed_or_moved_customers(transactions, moved_days) -%}
    select customer_id from {{ incremental_ops_relation('changed_customers') }}
    union
    select {{ transactions }}.customer_id
    from {{ transactions }}
    inner join {{ moved_days }}
        on {{ transactions }}.transaction_date = {{ moved_days }}.day
{%- endmacro %}

{#- Two CTEs of a night that continues the previous build: `transactions`, the rows of the
    customers to recompute, and `carried`, the previous build's rows of everyone else. Erased
    customers leave with their raw rows (staging leaves them out): never carried over. The
    model passes the erasures source, so dbt sees the dependency in the model. -#}
{% macro recomputed_and_carried(all_transactions, previous, recomputed, erasures) -%}
transactions as (
    select * from {{ all_transactions }}
    where customer_id in (select customer_id from {{ recomputed }})
),

carried as (
    select * from {{ previous }}
    where customer_id not in (select customer_id from {{ recomputed }})
        and customer_id not in (select customer_id from {{ erasures }})
),
{%- endmacro %}

"""The dbt models as Dagster assets: one `dbt build` per run (models, unit tests, data tests),
for one as-of date or a whole backfilled range."""

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import dagster as dg
import duckdb

from .dagster_dbt_without_core import DagsterDbtTranslator, DbtCliResource, dbt_assets
from .background_imports import import_in_background
from .dbt_project import (
    DBT_PROJECT_DIR,
    constant_dbt_vars,
    dbt_environment,
    dbt_executable,
    dbt_project,
    environment,
    partial_parse_key,
    save_partial_parse,
    seed_partial_parse,
)
from .incremental import plan_build, record_build
from .partitions import run_as_of_dates
from .resources import LoyaltySettings
from .spark_engine import dbt_target_args, finish_spark_run, prepare_spark_run

# Customer-level marts (tag customer_level) hold the latest as-of date only.
CUSTOMER_LEVEL_SELECTOR = "tag:customer_level+"
# The grain and column tests of staging and intermediate (dbt_project.yml tags them): only with
# run_dbt_unit_tests, like the unit tests.
DEV_CHECKS_TAG = "dev_checks"


class LayerGroupsTranslator(DagsterDbtTranslator):
    """Every dbt model in the Dagster group of its layer (its folder under models/: staging,
    intermediate, marts), so the UI shows the architecture instead of one `default` group.

    The dbt tests tagged DEV_CHECKS_TAG are asset checks only where the runs evaluate them
    (``with_dev_checks``: run_dbt_unit_tests). Otherwise every run would list ~34 checks it never
    runs ("did not yield or return expected outputs") and the UI would show them as never
    evaluated; if such a test does run, dagster-dbt records its result as an observation."""

    def __init__(self, with_dev_checks: bool) -> None:
        super().__init__()
        self.with_dev_checks = with_dev_checks

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        return fqn[1] if len(fqn) > 2 else super().get_group_name(dbt_resource_props)

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        test = manifest.get("nodes", {}).get(unique_id, {})
        if not self.with_dev_checks and DEV_CHECKS_TAG in (test.get("tags") or []):
            return None
        return super().get_asset_check_spec(asset_spec, manifest, unique_id, project)


def build_dbt_assets(
    partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy, with_dev_checks: bool = False
) -> dg.AssetsDefinition:
    """The dbt project as one multi-asset (built when the definitions are, from the manifest)."""

    @dbt_assets(
        manifest=dbt_project().manifest_path,
        project=dbt_project(),
        dagster_dbt_translator=LayerGroupsTranslator(with_dev_checks),
        name="loyalty_dbt_models",
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,  # a backfilled range is one dbt build over all its dates
    )
    def loyalty_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: LoyaltySettings):
        config = settings.loyalty_config()
        dates = run_as_of_dates(context, settings.as_of())
        # Same --vars every run (business constants only): dbt keeps its partial parse. The dates go
        # to ops.run_dates, read by the as_of_date()/run_dates() macros; the path to LOYALTY_WAREHOUSE.
        variables = constant_dbt_vars(config)
        args = ["build", "--vars", json.dumps(variables)]
        if not config.run_dbt_unit_tests:
            # Unit tests and the grain / column tests of staging and intermediate (tag dev_checks)
            # belong to `make test` and CI; nightly keeps the business invariants and the mart tests.
            args += ["--exclude-resource-type", "unit_test", "--exclude", f"tag:{DEV_CHECKS_TAG}"]
        newest = newest_published_as_of(config.warehouse_path)
        builds_customer_level = newest is None or dates[-1] >= newest
        if not builds_customer_level:
            # A backfill of older dates refreshes their slices but must not roll the customer-level
            # marts (and the export built on them) back from the newer date they already hold.
            context.log.info(f"backfill before {newest}: customer-level marts keep {newest}")
            args += ["--exclude", CUSTOMER_LEVEL_SELECTOR]
        write_run_dates(config.warehouse_path, dates)
        # Tonight's incremental intermediates: continue the last build or rebuild them (one line why).
        plan = plan_build(config.warehouse_path, variables, DBT_PROJECT_DIR, dates, config.engine, builds_customer_level)
        context.log.info(plan.message)
        if config.engine == "spark":  # raw tables and run dates as Parquet for Spark (spark_engine.py)
            context.log.info(f"spark: raw Parquet parts {prepare_spark_run(config, dates)}")
            args += dbt_target_args(config)
        context.log.info(f"dbt as-of dates: {', '.join(d.isoformat() for d in dates)}; vars: {json.dumps(variables)}")
        # A target folder named like dagster-dbt's own (<op>-<run id>-<random>), seeded with the
        # partial-parse state of the previous run with these vars on a warehouse of the same name.
        target_path = DBT_PROJECT_DIR / "target" / f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
        key = partial_parse_key(config.warehouse_path, variables, dbt_target_args(config))
        seed_partial_parse(target_path, key)
        with environment(dbt_environment(config)):
            invocation = dbt.cli(args, context=context, target_path=target_path)
        # This process only waits for dbt now: the steps after it get their libraries imported meanwhile.
        import_in_background()
        try:
            yield from invocation.stream()
            if invocation.is_successful() and builds_customer_level and config.engine == "duckdb":
                # Both models were built from what the plan saw: the next night compares with it.
                record_build(config.warehouse_path, plan)
        finally:
            save_partial_parse(target_path, key)
            if config.engine == "spark":  # Spark's tables back into the warehouse, for every step after dbt
                imported = finish_spark_run(config, dbt_executable(), DBT_PROJECT_DIR, target_path, variables, dbt_environment(config))
                context.log.info(f"spark: {len(imported)} tables copied into the warehouse")

    return loyalty_dbt_models


def write_run_dates(warehouse: Path, dates: Sequence[dt.date]) -> None:
    """The run's as-of dates as the one-column table ops.run_dates (see the as_of_date() macro)."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists ops")
        con.execute("create or replace table ops.run_dates (as_of_date date not null)")
        con.executemany("insert into ops.run_dates values (?)", [(date,) for date in dates])


def newest_published_as_of(warehouse: Path) -> dt.date | None:
    """The as-of date the customer-level marts hold now, if any (read before dbt writes)."""
    if not warehouse.exists():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts' and table_name = 'customer_period_facts'"
        ).fetchone()[0]
        return con.execute("select max(as_of_date) from marts.customer_period_facts").fetchone()[0] if exists else None

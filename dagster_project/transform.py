"""The dbt models as Dagster assets: one `dbt build` per run (models, unit tests, data tests),
for one as-of date or a whole backfilled range."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource, dbt_assets

from .config import dbt_vars
from .dbt_project import dbt_project
from .partitions import AS_OF_PARTITIONS, SINGLE_RUN, run_as_of_dates
from .resources import LoyaltySettings

# Customer-level marts (tag customer_level) hold the latest as-of date only.
CUSTOMER_LEVEL_SELECTOR = "tag:customer_level+"


@dbt_assets(
    manifest=dbt_project().manifest_path,
    project=dbt_project(),
    name="loyalty_dbt_models",
    partitions_def=AS_OF_PARTITIONS,
    backfill_policy=SINGLE_RUN,  # a backfilled range is one dbt build over all its dates
)
def loyalty_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: LoyaltySettings):
    config = settings.loyalty_config()
    dates = run_as_of_dates(context, settings.as_of())
    variables = dbt_vars(config, dates)
    args = ["build", "--vars", json.dumps(variables)]
    if not config.run_dbt_unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    newest = newest_published_as_of(config.warehouse_path)
    if newest is not None and dates[-1] < newest:
        # A backfill of older dates refreshes their slices but must not roll the customer-level
        # marts (and the export built on them) back from the newer date they already hold.
        context.log.info(f"backfill before {newest}: customer-level marts keep {newest}")
        args += ["--exclude", CUSTOMER_LEVEL_SELECTOR]
    context.log.info(f"dbt vars: {json.dumps(variables)}")
    yield from dbt.cli(args, context=context).stream()


def newest_published_as_of(warehouse: Path) -> dt.date | None:
    """The as-of date the customer-level marts hold now, if any (read before dbt writes)."""
    if not warehouse.exists():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts' and table_name = 'customer_period_facts'"
        ).fetchone()[0]
        return con.execute("select max(as_of_date) from marts.customer_period_facts").fetchone()[0] if exists else None

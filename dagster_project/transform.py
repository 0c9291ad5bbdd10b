"""The dbt models as Dagster assets: one `dbt build` per run (models, unit tests, data tests)."""


import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from .config import dbt_vars
from .dbt_project import dbt_project
from .resources import LoyaltySettings


@dbt_assets(manifest=dbt_project().manifest_path, project=dbt_project(), name="loyalty_dbt_models")
def loyalty_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: LoyaltySettings):
    variables = dbt_vars(settings.loyalty_config(), settings.as_of())
    context.log.info(f"dbt vars: {json.dumps(variables)}")
    yield from dbt.cli(["build", "--vars", json.dumps(variables)], context=context).stream()

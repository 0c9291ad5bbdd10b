"""Assembles the code location; every concern lives in its own module."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from .dbt_project import dbt_executable, dbt_project
from .ingest_assets import INGEST_ASSETS
from .resources import LoyaltySettings
from .transform import loyalty_dbt_models


def build_resources(settings: LoyaltySettings | None = None) -> dict:
    return {
        "settings": settings or LoyaltySettings(),
        "dbt": DbtCliResource(
            project_dir=dbt_project(), profiles_dir=str(dbt_project().profiles_dir), dbt_executable=dbt_executable()
        ),
    }


ALL_ASSETS = [*INGEST_ASSETS, loyalty_dbt_models]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    resources=build_resources(),
    executor=dg.in_process_executor,
)

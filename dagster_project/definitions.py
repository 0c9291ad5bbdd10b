"""Assembles the code location; every concern lives in its own module."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from .dbt_project import dbt_executable, dbt_project
from .ingest_assets import INGEST_ASSETS
from .resources import LoyaltySettings
from .schedules import nightly_job, nightly_schedule
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
    jobs=[nightly_job],
    schedules=[nightly_schedule],
    resources=build_resources(),
    # One process runs the steps one after another: one DuckDB writer at a time, and no ~6 s
    # process start per step.
    executor=dg.in_process_executor,
)

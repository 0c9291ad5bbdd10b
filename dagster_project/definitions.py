"""Assembles the code location; every concern lives in its own module."""

from __future__ import annotations

import dagster as dg

from .dbt_project import LoyaltyDbtCliResource, dbt_executable, dbt_project
from .export import EXPORT_ASSETS
from .ingest_assets import INGEST_ASSETS
from .partitions import AS_OF_PARTITIONS, SINGLE_RUN
from .predictive_clv.assets import build_predictive_clv_assets, build_predictive_clv_checks
from .publish import PUBLISH_ASSETS
from .quality_checks import QUALITY_CHECKS
from .resources import LoyaltySettings
from .schedules import nightly_job, nightly_schedule
from .transform import loyalty_dbt_models


def build_resources(settings: LoyaltySettings | None = None) -> dict:
    return {
        "settings": settings or LoyaltySettings(),
        # dagster-dbt's resource minus its per-run `dbt --version` and in-process adapter set-up.
        "dbt": LoyaltyDbtCliResource(
            project_dir=dbt_project(), profiles_dir=str(dbt_project().profiles_dir), dbt_executable=dbt_executable()
        ),
    }


ALL_ASSETS = [
    *INGEST_ASSETS, loyalty_dbt_models, *build_predictive_clv_assets(AS_OF_PARTITIONS, SINGLE_RUN),
    *EXPORT_ASSETS, *PUBLISH_ASSETS,
]
ALL_CHECKS = [*QUALITY_CHECKS, *build_predictive_clv_checks(AS_OF_PARTITIONS)]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[nightly_job],
    schedules=[nightly_schedule],
    resources=build_resources(),
    # One process runs the steps one after another: one DuckDB writer at a time, and no ~6 s
    # process start per step.
    executor=dg.in_process_executor,
)

"""Assembles the code location from a run's effective configuration; every concern lives in
its own module. Nothing is built at import time: ``dagster dev`` and the daemon call ``defs()``
(which reads ``$LOYALTY_CONFIG`` or ``loyalty.yml``), the CLI and the tests call
:func:`build_definitions` with the configuration they resolved."""

from __future__ import annotations

import dataclasses

import dagster as dg

from .config import LoyaltyConfig, resolve_config, to_json
from .dbt_project import LoyaltyDbtCliResource, dbt_executable, dbt_project
from .export import build_export_assets
from .ingest_assets import build_ingest_assets
from .kpi_report.assets import build_report_assets
from .next_best_offer.assets import build_next_best_offer_assets, build_next_best_offer_checks
from .partitions import SINGLE_RUN, as_of_partitions
from .predictive_clv.assets import build_predictive_clv_assets, build_predictive_clv_checks
from .publish import build_publish_assets
from .quality_checks import build_quality_checks
from .resources import LoyaltySettings
from .schedules import build_nightly_job, build_nightly_schedule
from .transform import build_dbt_assets


@dataclasses.dataclass(frozen=True)
class AssetGraph:
    """The assets and checks of one configuration, all on its as-of partitions."""

    partitions_def: dg.PartitionsDefinition
    dbt_assets: dg.AssetsDefinition
    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]

    def asset(self, key: str) -> dg.AssetsDefinition:
        """The asset (or multi-asset) holding ``key`` ("exports/segment_flags")."""
        wanted = dg.AssetKey.from_user_string(key)
        return next(assets for assets in self.assets if wanted in assets.keys)


def build_asset_graph(config: LoyaltyConfig) -> AssetGraph:
    partitions = as_of_partitions(config)
    dbt_assets = build_dbt_assets(partitions, SINGLE_RUN, with_dev_checks=config.run_dbt_unit_tests)
    assets = [
        *build_ingest_assets(partitions, SINGLE_RUN),
        dbt_assets,
        *build_predictive_clv_assets(partitions, SINGLE_RUN),
        *build_next_best_offer_assets(partitions, SINGLE_RUN),
        *build_export_assets(partitions, SINGLE_RUN, dbt_assets),
        *build_publish_assets(partitions, SINGLE_RUN, dbt_assets),
        *build_report_assets(partitions, SINGLE_RUN),
    ]
    checks = [*build_quality_checks(partitions), *build_predictive_clv_checks(partitions), *build_next_best_offer_checks(partitions)]
    return AssetGraph(partitions, dbt_assets, assets, checks)


def build_resources(settings: LoyaltySettings | None = None) -> dict:
    return {
        "settings": settings or LoyaltySettings(),
        # dagster-dbt's resource minus its per-run `dbt --version` and in-process adapter set-up.
        "dbt": LoyaltyDbtCliResource(
            project_dir=dbt_project(), profiles_dir=str(dbt_project().profiles_dir), dbt_executable=dbt_executable()
        ),
    }


def build_definitions(config: LoyaltyConfig, settings: LoyaltySettings | None = None) -> dg.Definitions:
    """The code location of ``config``: its partitions, schedule, assets and checks; steps read
    ``settings`` (default: this very configuration)."""
    graph = build_asset_graph(config)
    job = build_nightly_job(graph.partitions_def)
    return dg.Definitions(
        assets=graph.assets,
        asset_checks=graph.checks,
        jobs=[job],
        schedules=[build_nightly_schedule(config, job)],
        resources=build_resources(settings or LoyaltySettings(config_json=to_json(config))),
        # One process runs the steps one after another: one DuckDB writer at a time, and no ~6 s
        # process start per step.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dagster dev` / the daemon load (configuration from $LOYALTY_CONFIG or
    loyalty.yml, read when the location loads; steps re-read it at run time)."""
    return build_definitions(resolve_config(), LoyaltySettings())

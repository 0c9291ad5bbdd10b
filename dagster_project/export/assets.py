"""The export's Dagster assets: one per file family, all built by one factory."""


from typing import Iterable, Sequence

import dagster as dg

from ..partitions import run_as_of_dates
from ..predictive_clv.assets import PREDICTIONS_KEY
from ..resources import LoyaltySettings
from .files import ExportError, FileFamily, MartIsNewer, export_family
from ..next_best_offer.assets import OFFERS_KEY
from .next_best_offers import NEXT_BEST_OFFERS_FILES
from .segment_flags import SEGMENT_FLAGS

ERASURES_KEY = dg.AssetKey(["raw", "erasures"])


def mart_key(family: FileFamily) -> dg.AssetKey:
    return dg.AssetKey(family.mart.split("."))


def failed_checks(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]) -> list[str]:
    """Error-severity checks whose latest evaluation (this run's, in a full run) failed."""
    failed = []
    for key in check_keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record is not None else None
        if evaluation is not None and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(key.name)
    return failed


def build_export_asset(
    family: FileFamily,
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    check_keys: Sequence[dg.AssetCheckKey],
    deps: Sequence[dg.AssetKey],
    description: str,
) -> dg.AssetsDefinition:
    """exports/<family>: the family's files of the run's (latest) as-of date. ``check_keys`` are
    the blocking checks of its mart; ``deps`` what else must run first (the erasure step always)."""
    source = mart_key(family)

    @dg.asset(
        key_prefix=["exports"],
        name=family.name,
        group_name="export",
        deps=[source, ERASURES_KEY, *deps],
        # The graph's as-of partitions: a nightly run exports its date; a backfilled range exports its
        # latest date only (the customer-level marts hold the latest date of the run).
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        description=description,
    )
    def export_asset(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        # In a full run Dagster already skips this step when a blocking check fails; this also stops
        # an export materialised on its own after a run whose mart checks failed.
        failed = failed_checks(context.instance, check_keys)
        if failed:
            raise ExportError(
                f"the latest checks on {source.to_user_string()} failed ({', '.join(failed)}): not exporting;"
                " fix the data and rebuild the mart"
            )
        config = settings.loyalty_config()
        as_of = run_as_of_dates(context, settings.as_of())[-1]
        try:
            outcome = export_family(family, config, as_of, context.run_id, log=context.log.info)
        except MartIsNewer as skipped:
            context.log.info(f"backfill of an older date: nothing exported ({skipped})")
            return dg.MaterializeResult(metadata={"exported": False, "reason": str(skipped)})
        manifest, names = outcome.manifest, family.file_names(as_of)
        return dg.MaterializeResult(
            metadata={
                "exported": True,
                "folder": str(outcome.folder),
                "rows": manifest["files"][names["csv"]]["rows"],
                "delta_rows": manifest["files"][names["delta"]]["rows"],
                "delta_against": manifest["delta_against"] or "",
                "consent_filtered": manifest["consent_filtered"],
                "files_written": ", ".join(outcome.files_written) or "none (bytes unchanged)",
                "manifest_run_id": manifest["run_id"],
                "csv_sha256": manifest["files"][names["csv"]]["sha256"],
                "schema_version": manifest["schema_version"],
            }
        )

    return export_asset


def dbt_check_keys(dbt_assets: dg.AssetsDefinition, family: FileFamily) -> list[dg.AssetCheckKey]:
    """The dbt tests on the family's mart, as the code location declares them."""
    return sorted((key for key in dbt_assets.check_keys if key.asset_key == mart_key(family)), key=lambda k: k.name)


def build_export_assets(
    partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy, dbt_assets: dg.AssetsDefinition
) -> list[dg.AssetsDefinition]:
    """The segment-flag export (after its mart's dbt tests, the erasure step and the predictions) and
    the next-best-offer export (after the decision's invariant check)."""
    return [
        build_export_asset(
            SEGMENT_FLAGS, partitions_def, backfill_policy, dbt_check_keys(dbt_assets, SEGMENT_FLAGS), [PREDICTIONS_KEY],
            "Per-customer segment flags for marketing automation: segment_flags_<as_of>.csv/.parquet, "
            "a _delta.csv against the previous export and a manifest, written atomically into export_dir.",
        ),
        build_export_asset(
            NEXT_BEST_OFFERS_FILES, partitions_def, backfill_policy, [dg.AssetCheckKey(OFFERS_KEY, "nbo_invariants")], [],
            "The next best offers per customer (slot 1 …; control and no-offer customers get a `none` row): "
            "next_best_offers_<as_of>.csv/.parquet, a _delta.csv and a manifest, written atomically into export_dir.",
        ),
    ]

"""Dagster assets that load the landing folder into the warehouse's raw schema."""

import dagster as dg

from . import quality
from .ingest import FileOutcome, ingest_source
from .erasure import apply_erasures
from .landing_files import LandingFormat
from .raw_contract import CUSTOMERS, ERASURES, NPS_RESPONSES, OFFER_EVENTS, OFFERS, PRODUCTS, TRANSACTIONS, DateLimits, RawSource
from .resources import LoyaltySettings
from .warehouse import connect

def _ingest(context: dg.AssetExecutionContext, settings: LoyaltySettings, source: RawSource) -> dg.MaterializeResult:
    config = settings.loyalty_config()
    limits = DateLimits(earliest=config.business_start_date, latest=settings.today().isoformat())
    fmt = LandingFormat(**dict(config.landing_formats).get(source.folder, {}))
    # Under the configured DuckDB memory limit / threads / spill folder: a large batch spills.
    with connect(config.warehouse_path, config=config) as con:
        if source is TRANSACTIONS:  # once per run: what DuckDB really runs with (config duckdb_*)
            memory, threads, temp = con.execute(
                "select current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
            ).fetchone()
            context.log.info(f"DuckDB settings: memory_limit {memory}, threads {threads}, temp_directory {temp}")
        outcomes = ingest_source(
            con, source, config.raw_path, skip_rejected=config.skip_rejected_files, limits=limits, fmt=fmt
        )
        total_rows = con.execute(f"select count(*) from raw.{source.table}").fetchone()[0]
        quarantined = con.execute(f"select count(*) from raw.{source.quarantine_table}").fetchone()[0]
    for outcome in outcomes:
        if outcome.status != "unchanged":
            context.log.info(_describe(outcome))
    changed = [o for o in outcomes if o.status != "unchanged"]
    return dg.MaterializeResult(
        metadata={
            "files_seen": len(outcomes),
            "files_read": sum(o.status in ("loaded", "replaced") for o in outcomes),
            "rows_read": sum(o.rows_read for o in changed),
            "rows_duplicate": sum(o.rows_duplicate for o in changed),
            "rows_in_table": total_rows,
            "rows_in_quarantine": quarantined,
            "raw_dir": str(config.raw_path / source.folder),
        }
    )

def _describe(outcome: FileOutcome) -> str:
    text = f"{outcome.source_file}: {outcome.status}, {outcome.rows_read} rows read, {outcome.rows_duplicate} duplicates"
    return text + (f" ({outcome.message})" if outcome.message else "")


def _plain_ingest_asset(source: RawSource, partitioning: dict, deps: list, description: str) -> dg.AssetsDefinition:
    """raw.<table> loaded from its landing folder, nothing more."""

    @dg.asset(key_prefix=["raw"], name=source.table, group_name="ingest", description=description, deps=deps, **partitioning)
    def ingest_asset(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        return _ingest(context, settings, source)

    return ingest_asset


def build_ingest_assets(partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy) -> list[dg.AssetsDefinition]:
    """The ingest assets. Ingest loads whatever files are new, whichever as-of date the run is
    for; it shares the partitions so that one run (nightly or backfill) materialises the graph."""
    partitioning = {"partitions_def": partitions_def, "backfill_policy": backfill_policy}

    @dg.asset(
        key_prefix=["raw"],
        group_name="ingest",
        description="Purchase and refund rows from <raw_dir>/transactions/*.csv|*.parquet.",
        **partitioning,
    )
    def transactions(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        # Its check comes next: GX's import (1.5–2.5 s of Python) runs while this step is in DuckDB.
        quality.prepare_in_background()
        return _ingest(context, settings, TRANSACTIONS)

    @dg.asset(
        key_prefix=["raw"],
        group_name="ingest",
        **partitioning,
        description="NPS survey answers from <raw_dir>/nps/*.csv|*.parquet.",
        deps=[transactions],  # one DuckDB writer at a time, even under a multiprocess executor
    )
    def nps_responses(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        return _ingest(context, settings, NPS_RESPONSES)

    @dg.asset(
        key_prefix=["raw"],
        group_name="ingest",
        **partitioning,
        description="Optional marketing consent events from <raw_dir>/customers/*.csv|*.parquet.",
        deps=[nps_responses],
    )
    def customers(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        return _ingest(context, settings, CUSTOMERS)

    # The next-best-offer folders: plain loads, one after another (one DuckDB writer at a time).
    offers = _plain_ingest_asset(OFFERS, partitioning, [customers], (
        "Optional offers of the next-best-offer decision from <raw_dir>/offers/*.csv|*.parquet: one row per "
        "offer_id (one channel), its dates, value inputs, eligibility, caps and response window (README)."
    ))
    offer_events = _plain_ingest_asset(OFFER_EVENTS, partitioning, [offers], (
        "Optional offer events returned by marketing automation from <raw_dir>/offer_events/*.csv|*.parquet "
        "(sent, opened, clicked, rejected, converted, held_out, complained; arm). Erased customers' events go "
        "with the erasure step, which runs after this one."
    ))

    @dg.asset(
        key_prefix=["raw"],
        group_name="ingest",
        **partitioning,
        description=(
            "Right-to-erasure requests from <raw_dir>/erasures/*.csv; every run removes these customers "
            "from all raw and quarantine tables, so no mart or export built after it holds them."
        ),
        deps=[transactions, nps_responses, customers, offer_events],
    )
    def erasures(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        result = _ingest(context, settings, ERASURES)
        config = settings.loyalty_config()
        with connect(config.warehouse_path, config=config) as con:
            removed = apply_erasures(con)
        for table, rows in removed.items():
            if rows:
                context.log.info(f"erasure: removed {rows} rows from {table}")
        return dg.MaterializeResult(metadata={**result.metadata, "rows_erased": sum(removed.values())})

    products = _plain_ingest_asset(PRODUCTS, partitioning, [erasures], (  # one DuckDB writer at a time
        "Optional margin rate per product from <raw_dir>/products/*.csv|*.parquet (product_id, "
        "margin_rate); transactions of other products count on the margin_rate setting."
    ))

    return [transactions, nps_responses, customers, erasures, products, offers, offer_events]

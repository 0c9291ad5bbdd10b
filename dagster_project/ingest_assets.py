"""Dagster assets that load the landing folder into the warehouse's raw schema."""

import dagster as dg

from .ingest import FileOutcome, ingest_source
from .raw_contract import NPS_RESPONSES, TRANSACTIONS, RawSource
from .resources import LoyaltySettings
from .warehouse import connect

def _ingest(context: dg.AssetExecutionContext, settings: LoyaltySettings, source: RawSource) -> dg.MaterializeResult:
    config = settings.loyalty_config()
    with connect(config.warehouse_path) as con:
        outcomes = ingest_source(con, source, config.raw_path)
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

@dg.asset(key_prefix=["raw"], group_name="ingest", description="Purchase and refund rows from <raw_dir>/transactions/*.csv|*.parquet.")
def transactions(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
    return _ingest(context, settings, TRANSACTIONS)

@dg.asset(
    key_prefix=["raw"],
    group_name="ingest",
    description="NPS survey answers from <raw_dir>/nps/*.csv|*.parquet.",
    deps=[transactions],  # one DuckDB writer at a time, even under a multiprocess executor
)
def nps_responses(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
    return _ingest(context, settings, NPS_RESPONSES)

INGEST_ASSETS = [transactions, nps_responses]

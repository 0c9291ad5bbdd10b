"""Right to erasure: customers listed in raw.erasures leave every raw and quarantine table.

Runs after each ingest (a re-delivered old file cannot bring them back); dbt then rebuilds every
mart from raw, and the export writes only what the marts hold.
"""

from __future__ import annotations

import duckdb

from .raw_contract import ERASURES, RAW_SOURCES
from .warehouse import relation_exists


def apply_erasures(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Deletes the erased customers' rows; returns rows removed per table."""
    removed: dict[str, int] = {}
    erased = f"(select customer_id from raw.{ERASURES.table})"
    con.execute("begin transaction")
    try:
        for source in RAW_SOURCES:
            if source is ERASURES or "customer_id" not in source.column_names:
                continue  # products carry no personal data
            for table in (source.table, source.quarantine_table):
                if relation_exists(con, "raw", table):
                    removed[f"raw.{table}"] = con.execute(
                        f"delete from raw.{table} where customer_id in {erased}"
                    ).fetchone()[0]
        # Quarantined erasure requests may still carry an id: they go too.
        removed[f"raw.{ERASURES.quarantine_table}"] = con.execute(
            f"delete from raw.{ERASURES.quarantine_table} where trim(customer_id) in {erased}"
        ).fetchone()[0]
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return removed

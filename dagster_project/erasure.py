"""Right to erasure: customers listed in raw.erasures leave every raw and quarantine table.

Runs after each ingest (a re-delivered old file cannot bring them back); dbt then rebuilds every
mart from raw, and the export writes only what the marts hold.
"""

from __future__ import annotations

import duckdb

from .raw_contract import ERASURES, RAW_SOURCES


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
                if _table_exists(con, table):
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


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?", [table]
        ).fetchone()[0]
    )

"""Small builders and queries shared by the tests."""

from pathlib import Path

import duckdb


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    """Writes a small landing CSV (values written as given, None as empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TRANSACTION_HEADER = ["transaction_id", "customer_id", "transaction_date", "amount", "product_id", "channel"]
NPS_HEADER = ["response_id", "customer_id", "response_date", "score", "survey", "comment"]


def query(warehouse: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()

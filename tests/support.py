"""Small builders and queries shared by the tests."""

import datetime as dt
import functools
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


@functools.cache
def default_graph():
    """The asset graph of the default configuration (what `loyalty run` builds without a file)."""
    from dagster_project.config import LoyaltyConfig
    from dagster_project.definitions import build_asset_graph

    return build_asset_graph(LoyaltyConfig())


def default_suite_parameters(today: dt.date | None = None) -> dict:
    from dagster_project.config import LoyaltyConfig
    from dagster_project.quality import suite_parameters

    return suite_parameters(LoyaltyConfig(), today or dt.date.today())

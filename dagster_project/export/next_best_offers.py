"""The next-best-offer file family: the top offers per customer (``marts.next_best_offers``) for
marketing automation, call centre, till, web and app; README: "The next-best-offer export"."""

from __future__ import annotations

import duckdb

from ..next_best_offer.marts import NEXT_BEST_OFFERS
from .files import FileFamily

# 1: the first version (customer_id … reason; priority, expected_value as decimal(18,2),
# propensity as decimal(9,4)).
SCHEMA_VERSION = 1
AMOUNT = "decimal(18,2)"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("customer_id", "varchar"),
    ("as_of_date", "date"),
    ("slot", "integer"),
    ("rank", "integer"),
    ("offer_id", "varchar"),
    ("channel", "varchar"),
    ("priority", AMOUNT),
    ("propensity", "decimal(9,4)"),
    ("expected_value", AMOUNT),
    ("valid_until", "date"),
    ("arm", "varchar"),
    ("reason", "varchar"),
)
# A row changed when the customer gets another offer, channel or arm in its slot (the scores
# move every night; valid_until always does).
TRACKED = ("offer_id", "channel", "arm")


def decided_offers(con: duckdb.DuckDBPyConnection) -> str:
    return f"select {', '.join(name for name, _ in COLUMNS)} from {NEXT_BEST_OFFERS.qualified}"


NEXT_BEST_OFFERS_FILES = FileFamily(
    name="next_best_offers",
    mart=NEXT_BEST_OFFERS.qualified,
    key=("customer_id", "slot"),
    columns=COLUMNS,
    tracked=TRACKED,
    schema_version=SCHEMA_VERSION,
    source=decided_offers,
)

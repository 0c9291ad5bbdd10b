"""The segment-flag file family: one row per customer for marketing automation's audiences
(``marts.customer_segment_flags`` with the predictive CLV columns; README: "For marketing
automation: the segment-flag export")."""

from __future__ import annotations

import duckdb

from ..warehouse import relation_exists
from .files import FileFamily

# 3: every amount and rounded figure (clv and the four predictions) is a decimal(18,2) written by
# DuckDB, in the CSV as in the Parquet file (version 2 had doubles in the Parquet file); empty
# strings are written "" (an empty field is a null).
# 2: the predictive CLV columns (p_alive, churn_risk, expected_purchases_next_period, predicted_clv).
SCHEMA_VERSION = 3
MART_TABLE = "marts.customer_segment_flags"
PREDICTIONS_TABLE = "marts.customer_clv_predictions"
PREDICTION_COLUMNS = ("p_alive", "churn_risk", "expected_purchases_next_period", "predicted_clv")
AMOUNT = "decimal(18,2)"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("customer_id", "varchar"),
    ("as_of_date", "date"),
    ("value_segment", "varchar"),
    ("value_decile", "integer"),
    ("previous_value_segment", "varchar"),
    ("flow", "varchar"),
    ("lifecycle_stage", "varchar"),
    ("first_purchase_date", "date"),
    ("last_purchase_date", "date"),
    ("days_since_last_purchase", "integer"),
    ("revenue_12m", AMOUNT),
    ("purchases_12m", "bigint"),
    ("clv", AMOUNT),
    ("nps_score_latest", "integer"),
    ("nps_category", "varchar"),
    ("is_super", "boolean"),
    ("is_top", "boolean"),
    ("is_vip", "boolean"),
    ("is_new", "boolean"),
    ("is_at_risk", "boolean"),
    ("is_lost", "boolean"),
    ("is_won_back", "boolean"),
    ("is_upgraded", "boolean"),
    ("is_downgraded", "boolean"),
    ("is_detractor_followup", "boolean"),
    ("is_nps_due", "boolean"),
    ("has_marketing_consent", "boolean"),
    # From marts.customer_clv_predictions (empty when the night has no predictions).
    *((name, AMOUNT) for name in PREDICTION_COLUMNS),
)

# The predictions move a little every night (one day older, one day more without a purchase):
# they count as changed only when they cross into another band, so tiny drifts stay out of the
# delta while a drift that adds up does show once it crosses a band edge. Bands: p_alive and
# churn_risk in tenths (0.30–0.39 …), expected purchases per whole purchase (2.00–2.99 …),
# predicted_clv in steps of × 1.25 (everything up to 1 in one band; 100–124, 125–156 …). The
# values are exact decimals, so 0.30 is in band 3, never 2.999….
CLV_BAND_RATIO = 1.25
BANDS = {
    "p_alive": "floor({} * 10)",
    "churn_risk": "floor({} * 10)",
    "expected_purchases_next_period": "floor({})",
    "predicted_clv": f"floor(ln(greatest(cast({{}} as double), 1.0)) / ln({CLV_BAND_RATIO}))",
}
TRACKED = ("value_segment", "lifecycle_stage") + tuple(
    name for name, _ in COLUMNS if name.startswith(("is_", "has_"))
) + PREDICTION_COLUMNS


def flags_with_predictions(con: duckdb.DuckDBPyConnection) -> str:
    flags = ", ".join(f"flags.{name}" for name, _ in COLUMNS if name not in PREDICTION_COLUMNS)
    if not relation_exists(con, "marts", "customer_clv_predictions"):
        return f"select {flags}, {', '.join(f'null as {name}' for name in PREDICTION_COLUMNS)} from {MART_TABLE} as flags"
    predicted = ", ".join(f"predictions.{name}" for name in PREDICTION_COLUMNS)
    return (
        f"select {flags}, {predicted} from {MART_TABLE} as flags left join {PREDICTIONS_TABLE} as predictions"
        " on predictions.customer_id = flags.customer_id and predictions.as_of_date = flags.as_of_date"
    )


SEGMENT_FLAGS = FileFamily(
    name="segment_flags",
    mart=MART_TABLE,
    key=("customer_id",),
    columns=COLUMNS,
    tracked=TRACKED,
    schema_version=SCHEMA_VERSION,
    source=flags_with_predictions,
    bands=BANDS,
    personal_data=True,
)

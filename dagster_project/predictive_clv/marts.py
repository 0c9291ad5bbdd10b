"""The three marts the predictive step writes, with their contract enforced here (not by dbt).

Why Python writes them, not dbt: the fit needs dbt's RFM model (intermediate.int_customer_rfm)
first, and the marts need the fit. dbt runs as one multi-asset (`dbt build`, one invocation per
run), so dbt marts selecting from Python-written tables would need a second dbt invocation after
the fit (~3 s of dbt start-up and a second parse every night) or would read the previous night's
fit. Instead the Python step reads the RFM model after dbt and writes the marts itself, with an
explicit DDL: column names, types, NOT NULL and CHECK constraints (no NaN, no infinity, ranges)
enforced by DuckDB on every insert, and a table that exists with other columns fails the step
(like a dbt contract with on_schema_change: fail). Ranges and volumes are checked again by the
Great Expectations suites in expectations/marts.<table>.json. README "Predictive CLV" documents
every column.
"""

from __future__ import annotations

from ..mart_contracts import SCHEMA, Column, ContractError, MartTable, ensure_table, finite

__all__ = ["SCHEMA", "Column", "ContractError", "MartTable", "ensure_table", "MART_TABLES", "CUSTOMER_CLV_PREDICTIONS",
           "CLV_MODEL_PARAMETERS", "CLV_CALIBRATION"]

CUSTOMER_CLV_PREDICTIONS = MartTable(
    "customer_clv_predictions",
    (
        Column("as_of_date", "DATE"),
        Column("customer_id", "VARCHAR"),
        Column("value_segment", "VARCHAR", not_null=False, check="value_segment in ('super', 'top', 'middle', 'bottom')"),
        Column("frequency", "INTEGER", check="frequency >= 0"),
        Column("recency_days", "INTEGER", check="recency_days >= 0"),
        Column("t_days", "INTEGER", check="t_days >= recency_days"),
        Column("p_alive", "DOUBLE", check=finite("p_alive", 0, 1)),
        Column("churn_risk", "DOUBLE", check=finite("churn_risk", 0, 1)),
        Column("expected_purchases_next_period", "DOUBLE", check=finite("expected_purchases_next_period", 0)),
        Column("expected_spend_per_purchase", "DOUBLE", check=finite("expected_spend_per_purchase", 0)),
        Column("margin_rate", "DOUBLE", check=finite("margin_rate", -1, 1)),
        Column("predicted_clv", "DOUBLE", check=finite("predicted_clv")),
        Column("predicted_value_decile", "INTEGER", check="predicted_value_decile between 1 and 10"),
        Column("model", "VARCHAR"),
        Column("fitted_at", "TIMESTAMP"),
    ),
    ("as_of_date", "customer_id"),
)

CLV_MODEL_PARAMETERS = MartTable(
    "clv_model_parameters",
    (
        Column("as_of_date", "DATE"),
        Column("fit", "VARCHAR", check="fit in ('current', 'calibration')"),
        Column("history_end_date", "DATE"),
        Column("model", "VARCHAR"),
        Column("parameter", "VARCHAR"),
        Column("value", "DOUBLE", check=finite("value")),
        Column("time_unit", "VARCHAR"),
        Column("customers_fitted", "BIGINT", check="customers_fitted > 0"),
        Column("log_likelihood", "DOUBLE", check=finite("log_likelihood")),
        Column("converged", "BOOLEAN"),
        Column("fit_status", "VARCHAR", check="fit_status in ('fitted', 'kept_last_good')"),
        Column("message", "VARCHAR", not_null=False),
        Column("fitted_at", "TIMESTAMP"),
    ),
    ("as_of_date", "fit", "model", "parameter"),
)

CLV_CALIBRATION = MartTable(
    "clv_calibration",
    (
        Column("as_of_date", "DATE"),
        Column("history_end_date", "DATE"),
        Column("model", "VARCHAR"),
        Column("grouping", "VARCHAR", check="grouping in ('value_segment', 'predicted_purchases_decile')"),
        Column("group_value", "VARCHAR"),
        Column("customers", "BIGINT", check="customers > 0"),
        Column("predicted_purchases", "DOUBLE", check=finite("predicted_purchases", 0)),
        Column("actual_purchases", "BIGINT", check="actual_purchases >= 0"),
        Column("purchases_bias", "DOUBLE", not_null=False, check=finite("purchases_bias")),
        Column("purchases_mae", "DOUBLE", check=finite("purchases_mae", 0)),
        Column("predicted_revenue", "DOUBLE", check=finite("predicted_revenue", 0)),
        Column("actual_revenue", "DOUBLE", check=finite("actual_revenue", 0)),
        Column("revenue_bias", "DOUBLE", not_null=False, check=finite("revenue_bias")),
        Column("revenue_mae", "DOUBLE", check=finite("revenue_mae", 0)),
        Column("predicted_alive_customers", "BIGINT", check="predicted_alive_customers >= 0"),
        Column("predicted_alive_purchased_share", "DOUBLE", not_null=False, check=finite("predicted_alive_purchased_share", 0, 1)),
    ),
    ("as_of_date", "grouping", "group_value"),
)

MART_TABLES = (CUSTOMER_CLV_PREDICTIONS, CLV_MODEL_PARAMETERS, CLV_CALIBRATION)

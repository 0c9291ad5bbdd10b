"""The marts the next-best-offer step writes, with their contracts (DDL enforced by DuckDB on
every insert; a table with other columns fails the step), like the predictive CLV marts.

Why Python writes them: the propensity (prior from the predictive CLV step, smoothed rates, the
classifier) is Python and runs after the one `dbt build` of the run; the ranking, one offer per
group, top k, volume caps and arms need the propensity, so they cannot be dbt models of the same
build (a dbt → Python → dbt loop inside one Dagster multi-asset is not possible, and a second dbt
invocation costs ~3 s and a second parse every night). They are SQL run by DuckDB from Python
(decision.py); the rules a reader should find stay in dbt (models/next_best_offer).
"""

from __future__ import annotations

from ..mart_contracts import Column, MartTable, check_key, ensure_table, finite, replace_table

DROP_RULES_AFTER_PROPENSITY = ("priority_not_positive", "offer_group", "top_k", "volume_cap", "random_arm", "control_group")
TIERS = ("prior", "smoothed", "model")
RANKINGS = ("propensity", "uplift")

NBO_CANDIDATES = MartTable(
    "nbo_candidates",
    (
        Column("as_of_date", "DATE"),
        Column("customer_id", "VARCHAR"),
        Column("offer_id", "VARCHAR"),
        Column("offer_group", "VARCHAR"),
        Column("channel", "VARCHAR"),
        Column("arm", "VARCHAR", check="arm in ('control', 'random', 'ranked')"),
        Column("value_segment", "VARCHAR", not_null=False),
        Column("lifecycle_stage", "VARCHAR", not_null=False),
        Column("response_cell", "VARCHAR"),
        Column("propensity", "DOUBLE", check=finite("propensity", 0, 1)),
        Column("propensity_tier", "VARCHAR", check="propensity_tier in ('prior', 'smoothed', 'model')"),
        Column("control_rate", "DOUBLE", not_null=False, check=finite("control_rate", 0, 1)),
        Column("incremental_propensity", "DOUBLE", not_null=False, check=finite("incremental_propensity", -1, 1)),
        Column("ranking", "VARCHAR", check="ranking in ('propensity', 'uplift')"),
        Column("expected_value", "DOUBLE", check=finite("expected_value")),
        Column("business_weight", "DOUBLE", check=finite("business_weight")),
        Column("priority", "DOUBLE", check=finite("priority")),
        Column("valid_until", "DATE"),
        Column("rank", "INTEGER", not_null=False, check="rank >= 1"),
        Column("slot", "INTEGER", not_null=False, check="slot >= 1"),
        Column("is_selected", "BOOLEAN"),
        Column("drop_rule", "VARCHAR", not_null=False),
    ),
    ("customer_id", "offer_id"),
    indexed=False,  # 10M rows a night at 500k customers × 20 offers: key checked after the write
)

NEXT_BEST_OFFERS = MartTable(
    "next_best_offers",
    (
        Column("customer_id", "VARCHAR"),
        Column("as_of_date", "DATE"),
        Column("slot", "INTEGER", check="slot >= 1"),
        Column("rank", "INTEGER", not_null=False, check="rank >= 1"),
        Column("offer_id", "VARCHAR"),
        Column("channel", "VARCHAR"),
        Column("priority", "DOUBLE", not_null=False, check=finite("priority")),
        Column("propensity", "DOUBLE", not_null=False, check=finite("propensity", 0, 1)),
        Column("expected_value", "DOUBLE", not_null=False, check=finite("expected_value")),
        Column("valid_until", "DATE"),
        Column("arm", "VARCHAR", check="arm in ('control', 'random', 'ranked')"),
        Column("reason", "VARCHAR"),
    ),
    ("customer_id", "slot"),
    indexed=False,
)

NBO_PERFORMANCE = MartTable(
    "nbo_performance",
    (
        Column("as_of_date", "DATE"),
        Column("offer_id", "VARCHAR"),
        Column("arm", "VARCHAR", check="arm in ('control', 'random', 'ranked', 'treated')"),
        Column("ranking", "VARCHAR", check="ranking in ('propensity', 'uplift')"),
        Column("propensity_tier", "VARCHAR", check="propensity_tier in ('prior', 'smoothed', 'model')"),
        Column("contacts", "BIGINT", check="contacts >= 0"),
        Column("responses", "BIGINT", check="responses >= 0 and responses <= contacts"),
        Column("response_rate", "DOUBLE", not_null=False, check=finite("response_rate", 0, 1)),
        Column("control_contacts", "BIGINT", check="control_contacts >= 0"),
        Column("control_rate", "DOUBLE", not_null=False, check=finite("control_rate", 0, 1)),
        Column("lift", "DOUBLE", not_null=False, check=finite("lift")),
        Column("lift_ci_low", "DOUBLE", not_null=False, check=finite("lift_ci_low")),
        Column("lift_ci_high", "DOUBLE", not_null=False, check=finite("lift_ci_high")),
        Column("min_detectable_lift", "DOUBLE", not_null=False, check=finite("min_detectable_lift", 0)),
        Column("model_auc", "DOUBLE", not_null=False, check=finite("model_auc", 0, 1)),
        Column("smoothed_auc", "DOUBLE", not_null=False, check=finite("smoothed_auc", 0, 1)),
        Column("calibration_ratio", "DOUBLE", not_null=False, check=finite("calibration_ratio", 0)),
        Column("assigned_tonight", "BIGINT", check="assigned_tonight >= 0"),
    ),
    ("as_of_date", "offer_id", "arm"),
)

NEXT_BEST_OFFER_SUMMARY = MartTable(
    "next_best_offer_summary",
    (
        Column("as_of_date", "DATE"),
        Column("arm", "VARCHAR", check="arm in ('control', 'random', 'ranked', 'total')"),
        Column("customers", "BIGINT", check="customers >= 0"),
        Column("offers_assigned", "BIGINT", check="offers_assigned >= 0"),
        Column("expected_value", "DOUBLE", check=finite("expected_value")),
        Column("contacts", "BIGINT", check="contacts >= 0"),
        Column("response_rate", "DOUBLE", not_null=False, check=finite("response_rate", 0, 1)),
        Column("lift", "DOUBLE", not_null=False, check=finite("lift")),
    ),
    ("as_of_date", "arm"),
)

# Customer-level marts hold tonight only (re-created empty every night, replace_table); the
# performance and summary keep one slice per night.
CUSTOMER_LEVEL = (NBO_CANDIDATES, NEXT_BEST_OFFERS)
SLICED = (NBO_PERFORMANCE, NEXT_BEST_OFFER_SUMMARY)
MART_TABLES = CUSTOMER_LEVEL + SLICED

__all__ = ["MART_TABLES", "CUSTOMER_LEVEL", "SLICED", "ensure_table", "NBO_CANDIDATES", "NEXT_BEST_OFFERS", "NBO_PERFORMANCE",
           "NEXT_BEST_OFFER_SUMMARY", "DROP_RULES_AFTER_PROPENSITY", "check_key", "replace_table", "TIERS", "RANKINGS"]

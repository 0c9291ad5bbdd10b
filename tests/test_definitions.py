"""The code location loads with exactly the expected assets and checks: a rename is noticed."""

import dagster as dg

from dagster_project.definitions import defs

EXPECTED_ASSET_KEYS = {
    "raw/transactions",
    "raw/nps_responses",
    "raw/customers",
    "raw/erasures",
    "staging/stg_raw__customers",
    "staging/stg_raw__transactions",
    "staging/stg_raw__nps_responses",
    "intermediate/int_periods",
    "intermediate/int_customer_periods_aggregated",
    "intermediate/int_customer_periods_segmented",
    "intermediate/int_customer_flows_classified",
    "marts/customer_period_facts",
    "marts/value_deciles",
    "marts/segment_flow_matrix",
    "marts/segment_retention",
    "marts/segment_clv",
    "marts/nps_by_segment",
}


def test_asset_keys_snapshot():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSET_KEYS


def test_raw_assets_feed_the_dbt_sources():
    graph = defs.resolve_asset_graph()
    parents = graph.get(dg.AssetKey(["staging", "stg_raw__transactions"])).parent_keys
    assert parents == {dg.AssetKey(["raw", "transactions"])}


def test_every_mart_has_grain_checks():
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    marts = {key for key in EXPECTED_ASSET_KEYS if key.startswith("marts/")}
    assert marts <= checked

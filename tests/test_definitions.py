"""The code location loads with exactly the expected assets and checks: a rename is noticed."""

import dagster as dg

from dagster_project.definitions import defs

EXPECTED_ASSET_KEYS = {
    "raw/transactions",
    "raw/nps_responses",
    "raw/customers",
    "raw/erasures",
    "raw/products",
    "staging/stg_raw__customers",
    "staging/stg_raw__transactions",
    "staging/stg_raw__nps_responses",
    "staging/stg_raw__products",
    "intermediate/int_periods",
    "intermediate/int_customer_periods_aggregated",
    "intermediate/int_customer_periods_segmented",
    "intermediate/int_customer_flows_classified",
    "intermediate/int_customer_lifecycle_staged",
    "marts/customer_period_facts",
    "marts/value_deciles",
    "marts/segment_flow_matrix",
    "marts/segment_retention",
    "marts/segment_clv",
    "marts/nps_by_segment",
    "marts/customer_segment_flags",
    "marts/lifecycle_kpis",
    "intermediate/int_customer_rfm",
    "marts/customer_clv_predictions",
    "marts/clv_model_parameters",
    "marts/clv_calibration",
    "exports/segment_flags",
    "published/warehouse",
}


def test_asset_keys_snapshot():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSET_KEYS


def test_raw_assets_feed_the_dbt_sources():
    graph = defs.resolve_asset_graph()
    parents = graph.get(dg.AssetKey(["staging", "stg_raw__transactions"])).parent_keys
    # Erasures feed every staging model, so the erasure step always runs before dbt.
    assert parents == {dg.AssetKey(["raw", "transactions"]), dg.AssetKey(["raw", "erasures"])}


def test_every_mart_has_grain_checks():
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    marts = {key for key in EXPECTED_ASSET_KEYS if key.startswith("marts/")}
    assert marts <= checked


def test_nightly_schedule_runs_yesterday_at_two_in_stockholm():
    import datetime as dt
    from zoneinfo import ZoneInfo

    from dagster_project.schedules import nightly_schedule

    assert nightly_schedule.cron_schedule == "0 2 * * *"
    assert nightly_schedule.execution_timezone == "Europe/Stockholm"
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 3, 1, 2, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    )
    request = nightly_schedule(context)
    assert request.partition_key == "2026-02-28"


def test_every_asset_is_partitioned_by_as_of_date_with_single_run_backfills():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def is not None, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key

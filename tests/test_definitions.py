"""The code location loads with exactly the expected assets, checks and groups: a rename is
noticed; partitions and the schedule come from the configuration it is built with."""

import datetime as dt
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from dagster_project.config import PROJECT_ROOT, LoyaltyConfig
from dagster_project.definitions import build_definitions, defs

EXPECTED_ASSET_KEYS = {
    "raw/transactions",
    "raw/nps_responses",
    "raw/customers",
    "raw/erasures",
    "raw/products",
    "raw/offers",
    "raw/offer_events",
    "staging/stg_raw__offers",
    "staging/stg_raw__offer_events",
    "marts/nbo_candidate_rules",
    "marts/nbo_offer_contacts",
    "marts/nbo_customer_features",
    "marts/nbo_candidates",
    "marts/next_best_offers",
    "marts/nbo_performance",
    "marts/next_best_offer_summary",
    "staging/stg_raw__customers",
    "staging/stg_raw__transactions",
    "staging/stg_raw__nps_responses",
    "staging/stg_raw__products",
    "intermediate/int_periods",
    "intermediate/int_customer_periods_aggregated",
    "intermediate/int_customer_periods_segmented",
    "intermediate/int_customer_flows_classified",
    "intermediate/int_customer_lifecycle_staged",
    "intermediate/int_nps_responses_latest_per_period",
    "intermediate/int_customer_rfm",
    "marts/customer_clv_predictions",
    "marts/clv_model_parameters",
    "marts/clv_calibration",
    "marts/customer_period_facts",
    "marts/value_deciles",
    "marts/segment_flow_matrix",
    "marts/segment_retention",
    "marts/segment_clv",
    "marts/nps_by_segment",
    "marts/nps_by_flow",
    "marts/customer_segment_flags",
    "marts/lifecycle_kpis",
    "intermediate/int_customer_rfm",
    "marts/customer_clv_predictions",
    "marts/clv_model_parameters",
    "marts/clv_calibration",
    "exports/segment_flags",
    "exports/next_best_offers",
    "published/warehouse",
    "published/kpi_report",
}


def default_graph():
    return build_definitions(LoyaltyConfig()).resolve_asset_graph()


def test_asset_keys_snapshot():
    keys = {key.to_user_string() for key in default_graph().get_all_asset_keys()}
    assert keys == EXPECTED_ASSET_KEYS


# Python-written marts sit with the step that writes them.
PYTHON_MARTS = {"marts/customer_clv_predictions", "marts/clv_model_parameters", "marts/clv_calibration"}
# Written by the next-best-offer step (Python); its rules, contacts and features are dbt marts
# (models/marts/next_best_offer/) and sit in the marts group like every other dbt mart.
NBO_MARTS = {"marts/nbo_candidates", "marts/next_best_offers", "marts/nbo_performance", "marts/next_best_offer_summary"}


def test_dbt_models_sit_in_the_group_of_their_layer():
    graph = default_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    for key, group in groups.items():
        layer = key.split("/")[0]
        expected = "predictive_clv" if key in PYTHON_MARTS else "next_best_offer" if key in NBO_MARTS else {"raw": "ingest", "exports": "export", "published": "publish"}.get(layer, layer)
        assert group == expected, key
    assert {groups[key] for key in groups if key.split("/")[0] in ("staging", "intermediate", "marts") and key not in PYTHON_MARTS | NBO_MARTS} == {
        "staging", "intermediate", "marts"
    }


def test_the_code_location_is_called_loyalty_warehouse():
    """`make dev` runs `dagster dev` without -m, so Dagster loads pyproject's [tool.dagster]:
    its own validation names the location."""
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(dagster), "definitions", "validate"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loyalty_warehouse" in done.stdout + done.stderr
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "$(BIN)/dagster dev\n" in makefile


def test_dagster_dev_loads_the_definitions_lazily():
    # @dg.definitions: nothing is built (or configuration read) when the module is imported.
    assert callable(defs) and isinstance(defs(), dg.Definitions)


def test_raw_assets_feed_the_dbt_sources():
    parents = default_graph().get(dg.AssetKey(["staging", "stg_raw__transactions"])).parent_keys
    # Erasures feed every staging model, so the erasure step always runs before dbt.
    assert parents == {dg.AssetKey(["raw", "transactions"]), dg.AssetKey(["raw", "erasures"])}


def test_every_mart_has_grain_checks():
    graph = default_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    marts = {key for key in EXPECTED_ASSET_KEYS if key.startswith("marts/")}
    assert marts <= checked


def test_dev_checks_are_asset_checks_only_where_runs_evaluate_them():
    """The staging/intermediate grain tests (tag dev_checks) run only with run_dbt_unit_tests:
    only then are they asset checks, so a default run lists no check it never evaluates."""
    import json

    from dagster_project.dbt_project import DBT_PROJECT_DIR
    from dagster_project.transform import DEV_CHECKS_TAG

    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    tests = [node for node in manifest["nodes"].values() if node["resource_type"] == "test"]
    dev_checks = {node["name"] for node in tests if DEV_CHECKS_TAG in node["tags"]}
    nightly = {node["name"] for node in tests if DEV_CHECKS_TAG not in node["tags"]}
    assert len(dev_checks) >= 20 and len(nightly) >= 20

    def dbt_check_names(config: LoyaltyConfig) -> set[str]:
        graph = build_definitions(config).resolve_asset_graph()
        return {key.name for key in graph.asset_check_keys} & (dev_checks | nightly)

    assert dbt_check_names(LoyaltyConfig()) == nightly
    assert dbt_check_names(LoyaltyConfig(run_dbt_unit_tests=True)) == nightly | dev_checks


def test_nightly_schedule_runs_yesterday_at_two_in_stockholm():
    nightly_schedule = build_definitions(LoyaltyConfig()).get_schedule_def("nightly_schedule")
    assert nightly_schedule.cron_schedule == "0 2 * * *"
    assert nightly_schedule.execution_timezone == "Europe/Stockholm"
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 3, 1, 2, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    )
    request = nightly_schedule(context)
    assert request.partition_key == "2026-02-28"


def test_every_asset_is_partitioned_by_as_of_date_with_single_run_backfills():
    graph = default_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def is not None, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key


def test_dagster_dev_reads_the_configuration_named_by_loyalty_config(tmp_path, monkeypatch):
    """`LOYALTY_CONFIG=FILE dagster dev`: the partitions and the schedule of the loaded location
    come from FILE, and so does every step's configuration (read at run time, not import)."""
    from dagster_project.resources import LoyaltySettings

    file = tmp_path / "site.yml"
    file.write_text('business_start_date: "1997-01-01"\nschedule_cron: "15 4 * * *"\nperiod_months: 6\n')
    monkeypatch.setenv("LOYALTY_CONFIG", str(file))
    location = defs()
    graph = location.resolve_asset_graph()
    partitions = graph.get(dg.AssetKey(["raw", "transactions"])).partitions_def
    assert partitions.get_first_partition_key() == "1997-01-01"
    assert location.get_schedule_def("nightly_schedule").cron_schedule == "15 4 * * *"
    assert LoyaltySettings().loyalty_config().period_months == 6
    monkeypatch.delenv("LOYALTY_CONFIG")
    assert LoyaltySettings().loyalty_config().period_months == LoyaltyConfig().period_months

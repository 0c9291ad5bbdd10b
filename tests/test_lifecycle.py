"""Lifecycle stages end to end: raw CSVs → ingest → dbt → marts.customer_segment_flags,
marts.lifecycle_kpis and the export, on one small warehouse built once for the module.

Day arithmetic: days_since = as_of − date (0 = on the as-of date); "within the last N days"
means days_since < N. As of 2024-12-31: day 99 = 2024-09-23, 365 days = 2024-01-01.
"""

import csv
import datetime as dt
import io
import json

import dagster as dg
import pytest

from dagster_project.definitions import build_resources
from dagster_project.export import SEGMENT_FLAGS
from dagster_project.resources import LoyaltySettings

from .support import NPS_HEADER, TRANSACTION_HEADER, default_graph, query, write_csv

AS_OF = dt.date(2024, 12, 31)

# customer → (purchase dates, expected stage); amounts vary so the segments are not all tied.
CUSTOMERS = {
    "N099": (["2024-09-23", "2024-09-23"], "new"),  # day 99, two purchases on one day = one purchase day
    "N100": (["2024-09-22"], "active"),  # day 100: no longer new; one purchase, not > 180 days
    "N101": (["2024-09-21"], "active"),
    "L365": (["2023-06-01", "2024-01-01"], "lost"),  # exactly 365 days since the last purchase
    "L364": (["2024-01-02"], "at_risk"),  # 364 days: not lost; one purchase > 180 days: at risk
    "WB": (["2022-12-01", "2024-11-11"], "won_back"),  # a 711-day gap, back 50 days ago
    "O180": (["2024-07-04"], "active"),  # one purchase, exactly 180 days: not yet at risk
    "O181": (["2024-07-03"], "at_risk"),  # 181 days
    "MG91": (["2024-07-03", "2024-08-02", "2024-09-01", "2024-10-01"], "at_risk"),  # gaps 30: risk after 90
    "MG90": (["2024-07-04", "2024-08-03", "2024-09-02", "2024-10-02"], "active"),
    "DUE": (["2024-10-02"], "new"),  # day 90, no NPS answer: onboarding NPS due
    "DET": (["2024-06-01", "2024-12-01"], "active"),  # answered 3 (detractor) on 2024-12-15
}


def run_graph(settings: LoyaltySettings, *, export_only: bool = False) -> dg.ExecuteInProcessResult:
    """Materialises the graph plus the export like runner.run_pipeline (one partition = the as-of date)."""
    export_asset = default_graph().asset("exports/segment_flags")
    partition = {"partition_key": settings.as_of().isoformat()}
    return dg.materialize(
        default_graph().assets,
        selection=[export_asset] if export_only else None,
        resources=build_resources(settings),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        **partition,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    from dagster_project.runner import first_failure

    return "" if result.success else first_failure(result)


@pytest.fixture(scope="module")
def lifecycle_run(tmp_path_factory):
    raw = tmp_path_factory.mktemp("lifecycle_raw")
    rows, number = [], 0
    for customer, (dates, _) in CUSTOMERS.items():
        for date in dates:
            number += 1
            rows.append((f"t{number:03d}", customer, date, f"{100 + 10 * number}.00", "p1", "store"))
    rows.append(("t900", "REF", "2024-06-01", "-50", "p1", "store"))  # refunds only: no stage
    write_csv(raw / "transactions" / "tx.csv", TRANSACTION_HEADER, rows)
    write_csv(raw / "nps" / "nps.csv", NPS_HEADER, [("r1", "DET", "2024-12-15", "3", "relational", "")])
    root = tmp_path_factory.mktemp("lifecycle_wh")
    settings = LoyaltySettings(
        as_of_date=AS_OF.isoformat(),
        raw_dir=str(raw),
        warehouse=str(root / "warehouse.duckdb"),
        overrides_json=json.dumps({"export_dir": str(root / "exports")}),
    )
    result = run_graph(settings)
    assert result.success, failure_message(result)
    return settings


def flags(settings) -> dict[str, dict]:
    with_columns = query(
        settings.loyalty_config().warehouse_path,
        "select * from marts.customer_segment_flags order by customer_id",
    )
    names = [row[0] for row in query(
        settings.loyalty_config().warehouse_path,
        "select column_name from information_schema.columns where table_schema = 'marts'"
        " and table_name = 'customer_segment_flags' order by ordinal_position",
    )]
    return {row[0]: dict(zip(names, row)) for row in with_columns}


def test_stages_at_the_boundaries(lifecycle_run):
    stages = {customer: row["lifecycle_stage"] for customer, row in flags(lifecycle_run).items()}
    assert stages == {customer: stage for customer, (_, stage) in CUSTOMERS.items()}


def test_refund_only_customer_has_no_stage_but_stays_in_the_facts(lifecycle_run):
    warehouse = lifecycle_run.loyalty_config().warehouse_path
    assert query(warehouse, "select count(*) from marts.customer_segment_flags where customer_id = 'REF'") == [(0,)]
    assert query(warehouse, "select revenue from marts.customer_period_facts where customer_id = 'REF'") == [(-50,)]


def test_days_and_flags_follow_the_stage(lifecycle_run):
    rows = flags(lifecycle_run)
    assert rows["L365"]["days_since_last_purchase"] == 365 and rows["L365"]["is_lost"]
    assert rows["L364"]["days_since_last_purchase"] == 364 and not rows["L364"]["is_lost"]
    assert rows["N099"]["is_new"] and not rows["N100"]["is_new"]
    assert rows["WB"]["is_won_back"] and rows["WB"]["flow"] == "recovered"
    assert rows["DUE"]["is_nps_due"] and rows["DUE"]["nps_score_latest"] is None
    assert rows["DET"]["is_detractor_followup"] and rows["DET"]["nps_category"] == "detractor"
    for customer, row in rows.items():
        stage_flags = [row["is_new"], row["is_at_risk"], row["is_lost"], row["is_won_back"]]
        assert sum(stage_flags) == (0 if row["lifecycle_stage"] == "active" else 1), customer
        assert row["is_vip"] == (row["is_super"] or row["is_top"]), customer
        assert (row["value_segment"] is None) == (row["purchases_12m"] == 0), customer
        assert row["has_marketing_consent"] is None, "no consent source: consent is unknown, not false"
        assert row["as_of_date"] == AS_OF


def test_lifecycle_kpis_add_up(lifecycle_run):
    warehouse = lifecycle_run.loyalty_config().warehouse_path
    assert query(warehouse, "select count(*) from marts.lifecycle_kpis") == [(36,)]
    by_stage = dict(query(
        warehouse, "select lifecycle_stage, customers from marts.lifecycle_kpis where value_segment = 'total'"
    ))
    expected = {}
    for _, stage in CUSTOMERS.values():
        expected[stage] = expected.get(stage, 0) + 1
    assert by_stage == {**{stage: expected.get(stage, 0) for stage in ("new", "won_back", "active", "at_risk", "lost")},
                        "total": len(CUSTOMERS)}
    assert query(
        warehouse,
        "select round(sum(share_of_base), 9) from marts.lifecycle_kpis where value_segment = 'total' and lifecycle_stage <> 'total'",
    ) == [(1.0,)]
    # L365 lapsed on the as-of date (in period 0); its value = its revenue in the 12 months up to
    # its last purchase (both purchases: 2023-06-01 and 2024-01-01).
    lost_amounts = [100 + 10 * n for n in (5, 6)]  # t005, t006
    assert query(
        warehouse,
        "select lost_in_period, lost_value from marts.lifecycle_kpis where lifecycle_stage = 'lost' and value_segment = 'total'",
    ) == [(1, sum(lost_amounts))]
    assert query(
        warehouse,
        "select win_backs_in_period from marts.lifecycle_kpis where lifecycle_stage = 'won_back' and value_segment = 'total'",
    ) == [(1,)]


def test_export_without_a_consent_source_exports_everyone(lifecycle_run):
    folder = lifecycle_run.loyalty_config().export_path
    names = SEGMENT_FLAGS.file_names(AS_OF)
    rows = list(csv.DictReader(io.StringIO((folder / names["csv"]).read_text(encoding="utf-8"))))
    assert [row["customer_id"] for row in rows] == sorted(CUSTOMERS)
    assert {row["has_marketing_consent"] for row in rows} == {""}  # null: unknown
    assert {row["is_lost"] for row in rows} == {"true", "false"}
    manifest = json.loads((folder / names["manifest"]).read_text(encoding="utf-8"))
    assert manifest["consent_filtered"] is False
    assert manifest["files"][names["csv"]]["rows"] == len(CUSTOMERS)

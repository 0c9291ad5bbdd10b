"""The whole asset graph materialised in-process on a temporary warehouse, figures checked by hand."""

import datetime as dt
import json

import pytest

from dagster_project.runner import run_pipeline

from .support import NPS_HEADER, TRANSACTION_HEADER, query, write_csv

AS_OF = dt.date(2024, 12, 31)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """Ten customers over three yearly periods (2022, 2023, 2024)."""
    raw = tmp_path_factory.mktemp("raw")
    write_csv(
        raw / "transactions" / "2023.csv",
        TRANSACTION_HEADER,
        [
            ("t01", "A", "2023-03-01", "1000.00", "p1", "store"),  # A: super in 2023 and 2024
            ("t02", "B", "2023-12-31", "500", "p1", "web"),         # last day of period 1
            ("t03", "C", "2023-01-01", "100", "p2", "web"),         # first day of period 1
            ("t04", "D", "2022-06-01", "300", "p2", "store"),       # D: active 2022 and 2024 → recovered
            ("t05", "E", "2023-05-05", "50", "p3", "app"),          # E: lost in 2024
            ("t05", "E", "2023-05-05", "50", "p3", "app"),          # exact duplicate → counted once
        ],
    )
    write_csv(
        raw / "transactions" / "2024.csv",
        ["amount", "customer_id", "transaction_id", "transaction_date"],  # other order, no optional columns
        [
            ("2000", "A", "t10", "2024-01-01"),
            ("-100", "A", "t11", "2024-02-01"),   # refund
            ("400", "B", "t12", "2024-12-31"),    # on the as-of date
            ("80", "C", "t13", "2024-04-01"),
            ("250", "D", "t14", "2024-07-01"),
            ("700", "F", "t15", "2024-08-01"),    # F: new
            ("-30", "G", "t16", "2024-03-01"),    # G: refund only → not active
            ("999", "B", "t17", "2025-01-01"),    # after the as-of date → ignored
        ],
    )
    write_csv(
        raw / "nps" / "answers.csv",
        NPS_HEADER,
        [
            ("r1", "A", "2024-03-01", "10", "relational", ""),
            ("r2", "B", "2024-03-01", "3", "relational", '"Slow, ""very"" slow"'),
            ("r3", "Z", "2024-05-01", "8", "onboarding", ""),  # no transactions: total only
        ],
    )
    return raw


@pytest.fixture(scope="module")
def warehouse(small_run, tmp_path_factory):
    from dagster_project.resources import LoyaltySettings

    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    settings = LoyaltySettings(
        as_of_date=AS_OF.isoformat(), raw_dir=str(small_run), warehouse=str(path),
        overrides_json='{"run_dbt_unit_tests": true}',  # `make test` runs every dbt unit test here
    )
    outcome = run_pipeline(settings)
    assert outcome.success, outcome.failure
    pytest.dbt_run_id = outcome.run_id
    materialized = {e.asset_key.to_user_string() for e in outcome.result.get_asset_materialization_events()}
    assert {"raw/transactions", "raw/nps_responses", "marts/segment_clv", "marts/segment_flow_matrix"} <= materialized
    return path


def test_every_dbt_unit_test_ran_and_passed_in_the_run(warehouse):
    """The business rules' unit tests (dbt/models/*/_*__unit_tests.yml) ran inside this run."""
    from dagster_project.dbt_project import DBT_PROJECT_DIR

    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    declared = {uid for uid in manifest.get("unit_tests", {})}
    [target] = list((DBT_PROJECT_DIR / "target").glob(f"loyalty_dbt_models-{pytest.dbt_run_id[:7]}-*"))
    results = json.loads((target / "run_results.json").read_text())["results"]
    unit = {r["unique_id"]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}
    assert len(declared) >= 10
    assert unit == {uid: "pass" for uid in declared}


def test_customer_period_facts(warehouse):
    rows = query(
        warehouse,
        "select customer_id, period_index, revenue, purchases, refund_amount, distinct_products, value_segment"
        " from marts.customer_period_facts order by period_index, customer_id",
    )
    assert rows == [
        ("A", 0, 1900, 1, 100, None, "super"),
        ("B", 0, 400, 1, 0, None, "middle"),
        ("C", 0, 80, 1, 0, None, "bottom"),
        ("D", 0, 250, 1, 0, None, "middle"),
        ("F", 0, 700, 1, 0, None, "middle"),
        ("G", 0, -30, 0, 30, None, None),
        ("A", 1, 1000, 1, 0, 1, "super"),
        ("B", 1, 500, 1, 0, 1, "middle"),
        ("C", 1, 100, 1, 0, 1, "middle"),
        ("E", 1, 50, 1, 0, 1, "bottom"),
        ("D", 2, 300, 1, 0, 1, "super"),
    ]


def test_value_shares_follow_the_strictly_higher_rule(warehouse):
    rows = query(
        warehouse,
        "select customer_id, value_share, value_decile from marts.customer_period_facts"
        " where period_index = 0 and value_share is not null order by value_share",
    )
    # 5 active: A (0 above), F (1), B (2), D (3), C (4); 0.2 is not < 0.2, so F is middle.
    assert rows == [("A", 0.0, 1), ("F", 0.2, 3), ("B", 0.4, 5), ("D", 0.6, 7), ("C", 0.8, 9)]


def test_flow_matrix_of_the_latest_period(warehouse):
    rows = query(
        warehouse,
        "select from_segment, to_segment, flow, customers, purchases, revenue from marts.segment_flow_matrix"
        " where period_index = 0 order by flow, from_segment, to_segment",
    )
    assert rows == [
        ("middle", "bottom", "downgraded", 1, 1, 80),
        ("bottom", None, "lost", 1, 0, 50),
        (None, "middle", "new", 1, 1, 700),
        (None, "middle", "recovered", 1, 1, 250),
        ("middle", "middle", "retained", 1, 1, 400),
        ("super", "super", "retained", 1, 1, 1900),
    ]


def test_retention_and_clv(warehouse):
    retention = dict(
        (row[0], row[1:])
        for row in query(
            warehouse,
            "select value_segment, base_customers, lost_customers, retention_rate, duration_years"
            " from marts.segment_retention where period_index = 0",
        )
    )
    assert retention["total"] == (4, 1, 0.75, 4.0)
    assert retention["bottom"] == (1, 1, 0.0, 1.0)
    assert retention["super"] == (1, 0, 1.0, None)
    assert retention["middle"] == (2, 0, 1.0, None)
    clv = dict(
        (row[0], row[1:])
        for row in query(
            warehouse,
            "select value_segment, customers, revenue, revenue_per_customer, clv, portfolio_value"
            " from marts.segment_clv where period_index = 0",
        )
    )
    # total: 5 customers, 3330 revenue → 666 per customer × 4 years; its portfolio sums the segments,
    # and only bottom has a finite duration (1 year): 1 × 80 × 1. Super and middle lost nobody.
    assert clv["total"] == (5, 3330, 666.0, 2664.0, 80.0)
    assert clv["bottom"] == (1, 80, 80.0, 80.0, 80.0)
    assert clv["super"][3] is None  # nobody churned: no finite duration, no CLV


def test_nps_counts_latest_answers_and_non_customers_in_total(warehouse):
    rows = query(
        warehouse,
        "select value_segment, responses, promoters, passives, detractors, nps from marts.nps_by_segment"
        " where period_index = 0 and responses > 0 order by value_segment",
    )
    assert rows == [("middle", 1, 0, 0, 1, -100.0), ("super", 1, 1, 0, 0, 100.0), ("total", 3, 1, 1, 1, 0.0)]


def test_deciles_sum_to_active_customers(warehouse):
    rows = query(
        warehouse,
        "select period_index, sum(customers), max(cumulative_customer_share), max(cumulative_revenue_share)"
        " from marts.value_deciles group by period_index order by period_index",
    )
    assert rows == [(0, 5, 1.0, 1.0), (1, 4, 1.0, 1.0), (2, 1, 1.0, 1.0)]


def test_every_mart_carries_the_as_of_date(warehouse):
    for table in ("customer_period_facts", "value_deciles", "segment_flow_matrix", "segment_retention", "segment_clv", "nps_by_segment"):
        assert query(warehouse, f"select distinct as_of_date from marts.{table}") == [(AS_OF,)], table


def test_rerun_for_the_same_date_gives_the_same_marts(warehouse, small_run):
    from dagster_project.resources import LoyaltySettings

    before = query(warehouse, "select * from marts.segment_flow_matrix order by all")
    clv_before = query(warehouse, "select * from marts.segment_clv order by all")
    outcome = run_pipeline(LoyaltySettings(as_of_date=AS_OF.isoformat(), raw_dir=str(small_run), warehouse=str(warehouse)))
    assert outcome.success, outcome.failure
    assert query(warehouse, "select * from marts.segment_flow_matrix order by all") == before
    assert query(warehouse, "select * from marts.segment_clv order by all") == clv_before
    # Files already loaded are not read twice.
    assert query(warehouse, "select count(*) from raw.transactions") == [(13,)]


def test_a_dbt_failure_is_reported_in_one_line_with_dbts_own_error(tmp_path):
    import json

    from dagster_project.runner import _dbt_error

    log = tmp_path / "dbt.log"
    events = [
        {"info": {"level": "info", "name": "MainReportVersion", "msg": "Running with dbt=1.11"}},
        {"info": {"level": "error", "name": "MainEncounteredError",
                  "msg": "Encountered an error:\nInvalid value for on_schema_change: ignore."}},
        {"info": {"level": "error", "name": "MainStackTrace", "msg": "Traceback (most recent call last): ..."}},
    ]
    log.write_text("\n".join(json.dumps(event) for event in events) + "\nnot json\n")
    # dagster-dbt's message names only the command and the log when dbt fails before streaming.
    message = ["The dbt CLI process with command", "", "`dbt build`", "",
               f"failed with exit code `2`. Check the stdout ... or view the dbt debug log: {log}."]
    assert _dbt_error(message) == "dbt: Invalid value for on_schema_change: ignore."
    # ...and carries dbt's error events itself when it parsed them.
    parsed = ["The dbt CLI process with command", "Errors parsed from dbt logs:",
              "Runtime Error in model segment_clv (models/marts/segment_clv.sql)\n  Binder Error: no column x"]
    assert _dbt_error(parsed) == "dbt: Runtime Error in model segment_clv (models/marts/segment_clv.sql) Binder Error: no column x"
    # A failed model: dbt's per-node summaries come first; the line names the cause.
    summarised = ["The dbt CLI process with command", "Errors parsed from dbt logs:",
                  "4 of 38 ERROR creating sql table model intermediate.int_x  [\x1b[31mERROR\x1b[0m in 182.29s]",
                  "\x1b[31mFailure in model int_x (models/intermediate/int_x.sql)\x1b[0m",
                  "  Runtime Error in model int_x (models/intermediate/int_x.sql)\n  Out of Memory Error: could not allocate"]
    assert _dbt_error(summarised) == (
        "dbt: Runtime Error in model int_x (models/intermediate/int_x.sql) Out of Memory Error: could not allocate")
    assert _dbt_error(["some other error"]) is None

"""One effective configuration per run, and what each setting does to a run.

Every setting of LoyaltyConfig is changed in a `--config` file and the test shows the run doing
something different because of it, checked against an independent computation where the setting
is a business rule (the pandas way of benchmarks/, SQL on the raw rows, the stage rule in Python).
Two runs of one sample share the work: a baseline with the defaults and a variant whose config
file changes every setting at once, each test asserting its own setting's effect.
"""

import csv
import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from benchmarks import figures, pandas_way
from dagster_project import cli
from dagster_project.config import SEGMENTS, LoyaltyConfig, load_config
from dagster_project.definitions import build_asset_graph, build_definitions
from dagster_project.dbt_project import DBT_PROJECT_DIR, dbt_environment
from dagster_project.sample_data import SAMPLE_AS_OF, generate_sample

from .support import TRANSACTION_HEADER, query, write_csv

AS_OF = SAMPLE_AS_OF  # 2026-10-31; the sample's four years start on 2022-11-01
CONSENT_AGE_DAYS = 20  # the variant's consent file is this old: stale for the default 7 days

VARIANT = {
    "period_months": 3,
    "max_periods": 6,
    "segment_cutoffs": {"super": 0.10, "top": 0.30, "middle": 0.60},
    "nps_promoter_min": 10,
    "nps_passive_min": 8,
    "lost_after_days": 200,
    "won_back_days": 60,
    "new_customer_days": 50,
    "at_risk_min_days": 40,
    "at_risk_gap_factor": 3.0,
    "detractor_followup_days": 90,
    "nps_due_from_day": 60,
    "nps_due_to_day": 200,
    "business_start_date": "2023-06-01",
    "export_pii_columns": ["email"],
    "consent_max_age_days": 30,
    "schedule_cron": "30 3 * * 1-5",
    "schedule_timezone": "America/New_York",
    "run_dbt_unit_tests": True,
    "margin_rate": 0.4,
    "discount_rate": 0.05,
    "clv_model": "bg_nbd",
    "clv_horizon_years": 2.0,
    "clv_min_repeat_customers": 50,
    "clv_alive_threshold": 0.8,
    "clv_fit_max_customers": 1000,
    "currency": "EUR",
    "report_min_nps_responses": 3,
    "report_thumbnails": True,
    "duckdb_memory_limit": "1GB",
    "duckdb_threads": 1,
}


@dataclasses.dataclass(eq=False)
class Run:
    config: LoyaltyConfig
    code: int
    stderr: str

    @property
    def warehouse(self) -> Path:
        return self.config.warehouse_path

    def sql(self, text: str, params=None) -> list[tuple]:
        return query(self.warehouse, text, params)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("config_sample") / "raw"
    generate_sample(raw, customers=2500)
    return raw


@pytest.fixture(scope="module")
def baseline(sample, tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("config_baseline")
    config = LoyaltyConfig(
        raw_dir=str(sample), warehouse=str(root / "w.duckdb"), export_dir=str(root / "exports"),
        publish_dir=str(root / "published"), log_dir=str(root / "logs"),
    )
    file = root / "baseline.yml"
    file.write_text(yaml.safe_dump({k: getattr(config, k) for k in ("raw_dir", "warehouse", "export_dir", "publish_dir", "log_dir")}))
    code = cli.main(["run", "--config", str(file), "--as-of", AS_OF.isoformat()])
    assert code == 0
    return Run(config, code, "")


@pytest.fixture(scope="module")
def variant(sample, tmp_path_factory) -> Run:
    """Every setting changed, paths included, given only through the config file."""
    root = tmp_path_factory.mktemp("config_variant")
    raw = root / "landing"
    for folder in ("transactions", "nps"):
        (raw / folder).mkdir(parents=True)
        for file in (sample / folder).iterdir():
            (raw / folder / file.name).symlink_to(file)
    customers = [row[0] for row in _sample_customers(sample)[:300]]
    consent_at = AS_OF - dt.timedelta(days=CONSENT_AGE_DAYS)
    write_csv(
        raw / "customers" / "consent.csv",
        ["customer_id", "marketing_consent", "consent_updated_at", "email"],
        [(c, "true", consent_at.isoformat(), f"{c.lower()}@example.com") for c in customers],
    )
    settings = {
        **VARIANT,
        "raw_dir": str(raw),
        "warehouse": str(root / "wh" / "variant.duckdb"),
        "export_dir": str(root / "out" / "exports"),
        "publish_dir": str(root / "out" / "bi"),
        "log_dir": str(root / "out" / "logs"),
        "duckdb_temp_dir": str(root / "spill"),
    }
    file = root / "variant.yml"
    file.write_text(yaml.safe_dump(settings))
    code = cli.main(["run", "--config", str(file), "--as-of", AS_OF.isoformat()])
    assert code == 0
    return Run(load_config(file), code, "")


def _sample_customers(raw: Path) -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(
            f"select distinct customer_id from read_csv('{raw}/transactions/*.csv', union_by_name=true) order by 1"
        ).fetchall()


def _period_ends(run: Run) -> list[dt.date]:
    rows = run.sql(
        "select distinct period_index, period_end from marts.customer_period_facts where as_of_date = ? order by 1",
        [AS_OF],
    )
    return [end for _, end in rows]


def _months_back(day: dt.date, months: int) -> dt.date:
    import pandas as pd

    return (pd.Timestamp(day) - pd.DateOffset(months=months)).date()


# --- paths --------------------------------------------------------------------------------------


def test_raw_dir_and_warehouse_come_from_the_file(variant):
    assert variant.warehouse.exists() and variant.warehouse.parent.name == "wh"
    files = {row[0] for row in variant.sql("select source_file from raw.ingest_log")}
    assert "customers/consent.csv" in files  # only the variant's landing folder has it
    assert variant.sql("select count(*) from raw.customers")[0][0] == 300


def test_export_dir_publish_dir_and_log_dir_come_from_the_file(variant):
    export = variant.config.export_path / f"segment_flags_{AS_OF.isoformat()}.csv"
    assert export.exists()
    published = variant.config.publish_path / "warehouse.duckdb"
    assert query(published, "select count(*) from marts.segment_clv")[0][0] > 0
    assert variant.config.log_path.exists() and "loyalty run started" in variant.config.log_path.read_text()


# --- business rules ------------------------------------------------------------------------------


def test_period_months_max_periods_and_cutoffs_shape_the_marts_as_an_independent_computation(variant, baseline):
    ends = _period_ends(variant)
    assert len(ends) == VARIANT["max_periods"]  # four years of quarters would be 16
    assert ends == [_months_back(AS_OF, 3 * k) for k in range(len(ends))]
    assert _period_ends(baseline) == [_months_back(AS_OF, 12 * k) for k in range(4)]
    expected = pandas_way.compute(variant.config.raw_path, AS_OF, variant.config)
    actual = _figures(variant)
    assert figures.differences(actual, expected) == []
    assert figures.differences(_figures(baseline), pandas_way.compute(baseline.config.raw_path, AS_OF)) == []


def _figures(run: Run) -> dict:
    with duckdb.connect(str(run.warehouse), read_only=True) as con:
        return figures.from_duckdb(con, "marts.segment_flow_matrix", "marts.segment_clv", as_of=AS_OF)


@pytest.mark.parametrize("run_name", ["baseline", "variant"])
def test_segment_cutoffs_set_the_segment_sizes(run_name, request):
    run = request.getfixturevalue(run_name)
    cutoffs = run.config.segment_cutoffs
    rows = run.sql(
        "select value_segment, value_share from marts.customer_period_facts"
        " where as_of_date = ? and period_index = 0 and value_segment is not null",
        [AS_OF],
    )
    for segment, share in rows:
        bounds = [0.0] + [cutoffs[name] for name in SEGMENTS[:-1]] + [1.0]
        position = SEGMENTS.index(segment)
        assert bounds[position] <= share < bounds[position + 1] or (segment == "bottom" and share >= bounds[3])
    sizes = dict(run.sql("select value_segment, customers from marts.segment_clv where as_of_date = ? and period_index = 0", [AS_OF]))
    assert sizes["super"] == sum(1 for _, share in rows if share < cutoffs["super"])


def test_nps_bands_count_promoters_and_detractors(variant, baseline):
    for run in (variant, baseline):
        promoter_min, passive_min = run.config.nps_promoter_min, run.config.nps_passive_min
        [(period_start,)] = run.sql(
            "select min(period_start) from marts.customer_period_facts where as_of_date = ? and period_index = 0", [AS_OF]
        )
        # The latest answer per customer in period 0, from the raw rows (ties: the highest id).
        latest = run.sql(
            """
            select score from (
                select score, row_number() over (partition by customer_id order by response_date desc, response_id desc) as n
                from raw.nps_responses where response_date between ? and ? and response_date >= ?
            ) where n = 1
            """,
            [period_start, AS_OF, run.config.business_start_date],
        )
        scores = [score for (score,) in latest]
        [(responses, promoters, passives, detractors)] = run.sql(
            "select responses, promoters, passives, detractors from marts.nps_by_segment"
            " where as_of_date = ? and period_index = 0 and value_segment = 'total'",
            [AS_OF],
        )
        assert responses == len(scores)
        assert promoters == sum(s >= promoter_min for s in scores)
        assert passives == sum(passive_min <= s < promoter_min for s in scores)
        assert detractors == sum(s < passive_min for s in scores)
    assert _nps_total(variant) != _nps_total(baseline)


def _nps_total(run: Run):
    return run.sql("select promoters, detractors from marts.nps_by_segment where as_of_date = ? and period_index = 0 and value_segment = 'total'", [AS_OF])


def expected_stage(row: dict, config: LoyaltyConfig) -> str:
    """The lifecycle rule of int_customer_lifecycle_staged, restated from its inputs."""
    if row["days_since_last_purchase"] >= config.lost_after_days:
        return "lost"
    if row["last_win_back_date"] is not None and (AS_OF - row["last_win_back_date"]).days < config.won_back_days:
        return "won_back"
    if row["days_since_first_purchase"] < config.new_customer_days:
        return "new"
    if row["purchase_days"] >= 2:
        after = max(config.at_risk_min_days, config.at_risk_gap_factor * row["median_gap_days"])
    else:
        after = config.at_risk_gap_factor * config.at_risk_min_days
    assert row["at_risk_after_days"] == pytest.approx(after)
    return "at_risk" if row["days_since_last_purchase"] > after else "active"


def _staged(run: Run) -> list[dict]:
    with duckdb.connect(str(run.warehouse), read_only=True) as con:
        frame = con.execute("select * from intermediate.int_customer_lifecycle_staged").df()
    frame = frame.astype(object).where(frame.notna(), None)
    for column in ("last_win_back_date",):
        frame[column] = [value.date() if value is not None else None for value in frame[column]]
    return frame.to_dict("records")


@pytest.mark.parametrize("run_name", ["baseline", "variant"])
def test_lifecycle_thresholds_decide_every_stage(run_name, request):
    run = request.getfixturevalue(run_name)
    rows = _staged(run)
    assert len(rows) > 1000
    mismatched = [r["customer_id"] for r in rows if r["lifecycle_stage"] != expected_stage(r, run.config)]
    assert mismatched == []


def test_lifecycle_thresholds_change_the_stage_counts(variant, baseline):
    counts = [dict(run.sql("select lifecycle_stage, count(*) from marts.customer_segment_flags group by 1")) for run in (variant, baseline)]
    for stage in ("lost", "new", "at_risk"):
        assert counts[0].get(stage, 0) != counts[1].get(stage, 0), stage
    # Won back needs a gap longer than lost_after_days: 200 days find gaps that 365 do not.
    gaps = variant.sql("select count(*) from intermediate.int_customer_lifecycle_staged where last_win_back_date is not null")[0][0]
    assert gaps > baseline.sql("select count(*) from intermediate.int_customer_lifecycle_staged where last_win_back_date is not null")[0][0]


@pytest.mark.parametrize("run_name", ["baseline", "variant"])
def test_detractor_followup_and_nps_due_windows(run_name, request):
    run = request.getfixturevalue(run_name)
    config = run.config
    answers: dict[str, list[tuple[dt.date, int]]] = {}
    for customer, day, score in run.sql("select customer_id, response_date, score from raw.nps_responses where response_date <= ?", [AS_OF]):
        answers.setdefault(customer, []).append((day, score))
    flags = run.sql("select customer_id, first_purchase_date, is_detractor_followup, is_nps_due from marts.customer_segment_flags")
    wrong = []
    for customer, first, followup, due in flags:
        mine = answers.get(customer, [])
        expect_followup = any(score < config.nps_passive_min and (AS_OF - day).days < config.detractor_followup_days for day, score in mine)
        day_number = (AS_OF - first).days
        expect_due = config.nps_due_from_day <= day_number <= config.nps_due_to_day and not any(day >= first for day, _ in mine)
        if (followup, due) != (expect_followup, expect_due):
            wrong.append(customer)
    assert wrong == []
    assert sum(f for _, _, f, _ in flags) > 0 and sum(d for _, _, _, d in flags) > 0


def test_business_start_date_moves_the_quarantine_edge_and_the_partitions(variant, baseline):
    start = dt.date.fromisoformat(VARIANT["business_start_date"])
    [(oldest,)] = variant.sql("select min(transaction_date) from raw.transactions")
    assert oldest >= start
    reasons = variant.sql("select distinct reason from raw.quarantine_transactions")
    assert [r for (r,) in reasons if "before the business start" in r]
    before = variant.sql("select count(*) from raw.quarantine_transactions where reason like '%before the business start%'")[0][0]
    assert before == baseline.sql("select count(*) from raw.transactions where transaction_date < ?", [start])[0][0] > 0
    assert baseline.sql("select count(*) from raw.quarantine_transactions where reason like '%before the business start%'")[0][0] == 0
    # The partitions start at the configured date, in the configured time zone.
    partitions = build_asset_graph(variant.config).partitions_def
    assert partitions.get_first_partition_key() == VARIANT["business_start_date"]
    assert partitions.timezone == VARIANT["schedule_timezone"]
    assert build_asset_graph(baseline.config).partitions_def.get_first_partition_key() == LoyaltyConfig().business_start_date


# --- export ------------------------------------------------------------------------------------


def test_export_pii_columns_and_consent_age(variant, baseline):
    export = variant.config.export_path / f"segment_flags_{AS_OF.isoformat()}.csv"
    with export.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-1] == "email"
    # Only customers with consent (20 days old: allowed with 30) and a purchase since business_start_date.
    [(consenting,)] = variant.sql(
        "select count(distinct customer_id) from raw.transactions where amount > 0 and transaction_date <= ?"
        " and customer_id in (select customer_id from raw.customers)",
        [AS_OF],
    )
    assert len(rows) == consenting > 200
    assert all(row["email"] == f"{row['customer_id'].lower()}@example.com" for row in rows)
    base_export = baseline.config.export_path / f"segment_flags_{AS_OF.isoformat()}.csv"
    assert "email" not in base_export.read_text(encoding="utf-8").splitlines()[0].split(",")


# --- CLV on margin, discounted, and predicted ---------------------------------------------------


def test_margin_rate_and_discount_rate_value_the_segments(variant, baseline):
    for run in (variant, baseline):
        d = run.config.discount_rate
        rows = run.sql(
            "select value_segment, revenue_per_customer, margin_per_customer, duration_years, clv_margin,"
            " retention_rate, clv_discounted from marts.segment_clv where as_of_date = ? and period_index = 0"
            " and value_segment <> 'total'",
            [AS_OF],
        )
        assert len(rows) == 4
        for segment, revenue, margin, duration, clv_margin, retention, discounted in rows:
            # No products/ folder: every transaction counts at the margin_rate setting.
            assert margin == pytest.approx(revenue * run.config.margin_rate), segment
            if duration is not None:
                assert clv_margin == pytest.approx(margin * duration), segment
            yearly = retention ** (12 / run.config.period_months)
            assert discounted == pytest.approx(margin * (1 + d) / (1 + d - yearly)), segment


def _parameters(run: Run) -> dict:
    rows = run.sql(
        "select model, parameter, value from marts.clv_model_parameters where as_of_date = ? and fit = 'current'", [AS_OF]
    )
    models: dict = {}
    for name, parameter, value in rows:
        models.setdefault(name, {})[parameter] = value
    return models


def test_clv_model_chooses_the_purchase_model(variant, baseline):
    assert set(_parameters(variant)) == {"bg_nbd", "gamma_gamma"}
    assert set(_parameters(baseline)) == {"mbg_nbd", "gamma_gamma"}
    # The property the default avoids: BG/NBD calls every one-time buyer surely alive.
    one_time = "select min(p_alive), max(p_alive) from marts.customer_clv_predictions where frequency = 0"
    assert variant.sql(one_time)[0] == (1.0, 1.0)
    assert baseline.sql(one_time)[0][1] < 1.0


def test_clv_horizon_years_is_the_horizon_of_predicted_clv(variant):
    import numpy as np

    from dagster_project.predictive_clv import model

    parameters = _parameters(variant)["bg_nbd"]
    rows = variant.sql(
        "select frequency, recency_days, t_days, expected_spend_per_purchase, margin_rate, predicted_clv"
        " from marts.customer_clv_predictions order by customer_id limit 200"
    )
    x, t_x, age, spend, margin, clv = (np.array(column, dtype=float) for column in zip(*rows))

    def clv_over(years: float):
        purchases = model.discounted_expected_purchases("bg_nbd", parameters, x, t_x, age, years, variant.config.discount_rate)
        return purchases * spend * margin

    assert clv == pytest.approx(clv_over(VARIANT["clv_horizon_years"]), rel=1e-6)
    assert not np.allclose(clv, clv_over(LoyaltyConfig().clv_horizon_years), rtol=1e-3)


def test_clv_fit_max_customers_samples_the_fit(variant, baseline):
    [(fitted, message)] = variant.sql(
        "select distinct customers_fitted, message from marts.clv_model_parameters"
        " where as_of_date = ? and fit = 'current' and model = 'bg_nbd'", [AS_OF]
    )
    [(customers,)] = variant.sql("select count(*) from marts.customer_clv_predictions")
    assert 800 <= fitted <= 1200 < customers and "deterministic sample of about 1000" in message
    [(all_fitted,)] = baseline.sql(
        "select distinct customers_fitted from marts.clv_model_parameters where as_of_date = ? and fit = 'current' and model = 'mbg_nbd'", [AS_OF]
    )
    assert all_fitted == baseline.sql("select count(*) from intermediate.int_customer_rfm where snapshot = 'current'")[0][0]


def test_clv_alive_threshold_decides_who_counts_as_predicted_alive(variant, baseline):
    def alive(run: Run) -> int:
        [(count,)] = run.sql(
            "select sum(predicted_alive_customers) from marts.clv_calibration where as_of_date = ? and grouping = 'value_segment'",
            [AS_OF],
        )
        return count

    def customers(run: Run) -> int:
        return run.sql("select sum(customers) from marts.clv_calibration where as_of_date = ? and grouping = 'value_segment'", [AS_OF])[0][0]

    # BG/NBD (the variant) calls more customers alive than MBG/NBD, yet a threshold of 0.8
    # instead of 0.5 leaves fewer of them counted as alive.
    assert 0 < alive(variant) < customers(variant)
    assert alive(variant) / customers(variant) != alive(baseline) / customers(baseline)


def _report(run: Run) -> str:
    return (run.config.publish_path / "report" / "latest.html").read_text(encoding="utf-8")


def test_currency_and_nps_bands_label_the_report(variant, baseline):
    variant_page, baseline_page = _report(variant), _report(baseline)
    assert "SEK" not in variant_page and variant_page.count("EUR") > 10
    assert "EUR" not in baseline_page and baseline_page.count("SEK") > 10
    assert "promoters (10–10)" in variant_page and "detractors (0–7)" in variant_page
    assert "promoters (9–10)" in baseline_page and "passives (7–8)" in baseline_page


def test_report_min_nps_responses_decides_which_flow_cells_show_their_nps(variant, baseline):
    for run in (variant, baseline):
        [(cells,)] = run.sql(
            "select count(*) from marts.nps_by_flow where as_of_date = ? and period_index = 0 and responses >= ?",
            [AS_OF, run.config.report_min_nps_responses],
        )
        page = _report(run)
        table = page[page.index('id="nps-flow-table"'):] if 'id="nps-flow-table"' in page else ""
        table = table[:table.index("</table>")] if table else ""
        assert table.count("<tr") - 1 == cells  # one header row
    # The variant's sample has answers in more cells than 3, and fewer than 30 in most.
    assert _report(variant).count('id="nps-flow-table"') == 1


def test_report_thumbnails_renders_the_preview_thumbnails_only_when_asked(variant, baseline):
    # kaleido is in the test environment (requirements.lock) and make test provides a Chromium:
    # only the setting decides.
    assert "report: 2 thumbnails for the preview (clv-bars, lorenz)" in variant.config.log_path.read_text(encoding="utf-8")
    baseline_log = baseline.config.log_path.read_text(encoding="utf-8")
    assert "report: wrote" in baseline_log and "thumbnails for the preview" not in baseline_log
    assert "no thumbnails" not in baseline_log  # not even tried


# --- tiny landing folders for the settings that decide whether a run goes on --------------------


@pytest.fixture(scope="module")
def tiny_warehouse(tmp_path_factory) -> Path:
    # One warehouse path for every tiny run (emptied before each): dbt re-parses the whole project
    # for a new path, and keeps its partial parse for a known one.
    return tmp_path_factory.mktemp("tiny_wh") / "w.duckdb"


@pytest.fixture
def tiny(tmp_path, tiny_warehouse):
    raw = tmp_path / "raw"
    write_csv(raw / "transactions" / "t.csv", TRANSACTION_HEADER[:4], [("t1", "A", "2024-03-01", "10"), ("t2", "B", "2024-05-01", "20")])

    def config_file(**settings) -> Path:
        for stale in tiny_warehouse.parent.glob(tiny_warehouse.name + "*"):
            stale.unlink() if stale.is_file() else None
        file = tmp_path / f"config{len(list(tmp_path.glob('config*.yml')))}.yml"
        file.write_text(yaml.safe_dump({
            "raw_dir": str(raw), "warehouse": str(tiny_warehouse), "export_dir": str(tmp_path / file.stem / "exports"),
            "publish_dir": str(tmp_path / file.stem / "published"), "log_dir": str(tmp_path / "logs"), **settings,
        }))
        return file

    return raw, config_file


def test_skip_rejected_files_goes_on_without_the_bad_file(tiny, capsys):
    raw, config_file = tiny
    (raw / "transactions" / "empty.csv").write_text(",".join(TRANSACTION_HEADER[:4]) + "\n")
    code, err = run_cli(["run", "--config", str(config_file()), "--as-of", "2024-12-31"], capsys)
    assert code == 1 and "empty.csv: rejected: no data rows" in err
    assert run_cli(["run", "--config", str(config_file(skip_rejected_files=True)), "--as-of", "2024-12-31"], capsys)[0] == 0


def test_landing_formats_fix_the_decimal_separator(tiny, capsys):
    raw, config_file = tiny
    (raw / "transactions" / "t.csv").unlink()
    (raw / "transactions" / "semicolon.csv").write_text(
        "transaction_id;customer_id;transaction_date;amount\nt1;A;2024-03-01;12.50\nt2;B;2024-03-02;2.500\n"
    )
    # Detected, a ;-separated file is taken for decimal comma: 12.50 is not a number, 2.500 is 2500
    # (ingest on its own, without a whole run).
    from dagster_project.ingest import ingest_source
    from dagster_project.landing_files import LandingFormat
    from dagster_project.raw_contract import TRANSACTIONS, DateLimits

    with duckdb.connect() as con:
        ingest_source(con, TRANSACTIONS, raw, skip_rejected=False, limits=DateLimits("2000-01-01", "2024-12-31"), fmt=LandingFormat())
        assert con.execute("select transaction_id, amount from raw.transactions").fetchall() == [("t2", 2500)]
    fixed = config_file(landing_formats={"transactions": {"decimal_separator": "."}})
    assert run_cli(["run", "--config", str(fixed), "--as-of", "2024-12-31"], capsys)[0] == 0
    amounts = query(load_config(fixed).warehouse_path, "select transaction_id, cast(amount as double) from raw.transactions order by 1")
    assert amounts == [("t1", 12.5), ("t2", 2.5)]


@pytest.fixture(scope="module")
def consent_and_fit(tmp_path_factory, tiny_warehouse):
    """Two tiny nights on the same data (two repeat buyers, a consent file 30 days old): the
    defaults, then consent_max_age_days 30 and clv_min_repeat_customers 2. (One pair of runs for
    two settings: each run is a whole pipeline.)"""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("consent_and_fit")
    raw = root / "raw"
    write_csv(raw / "transactions" / "t.csv", TRANSACTION_HEADER[:4], [
        ("t1", "A", "2024-03-01", "10"), ("t2", "A", "2024-06-01", "20"), ("t3", "B", "2024-05-01", "20"), ("t4", "B", "2024-09-01", "25"),
    ])
    write_csv(raw / "customers" / "c.csv", ["customer_id", "marketing_consent", "consent_updated_at"], [("A", "true", "2024-12-01")])

    def night(name: str, **settings) -> tuple[int, str, str]:
        for stale in tiny_warehouse.parent.glob(tiny_warehouse.name + "*"):
            stale.unlink() if stale.is_file() else None
        file = root / f"{name}.yml"
        file.write_text(yaml.safe_dump({
            "raw_dir": str(raw), "warehouse": str(tiny_warehouse), "export_dir": str(root / name / "exports"),
            "publish_dir": str(root / name / "published"), "log_dir": str(root / name / "logs"), **settings,
        }))
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = cli.main(["run", "--config", str(file), "--as-of", "2024-12-31"])
        return code, stderr.getvalue(), load_config(file).log_path.read_text(encoding="utf-8")

    return night("defaults"), night("changed", consent_max_age_days=30, clv_min_repeat_customers=2)


def test_consent_max_age_days_decides_whether_the_export_runs(consent_and_fit):
    (code, err, _), (code_after, _, _) = consent_and_fit
    assert code == 1 and "consent data is stale" in err
    assert code_after == 0


def test_clv_min_repeat_customers_decides_whether_the_fit_runs(consent_and_fit):
    (_, _, first_log), (_, _, second_log) = consent_and_fit
    assert "2 repeat buyers, fewer than clv_min_repeat_customers = 100: fit skipped" in first_log
    assert "fewer than clv_min_repeat_customers" not in second_log
    assert "predictive CLV: fitting mbg_nbd on 2 customers" in second_log


# --- orchestration and resources ----------------------------------------------------------------


def test_schedule_cron_and_timezone_drive_the_nightly_schedule(variant):
    from zoneinfo import ZoneInfo

    schedule = build_definitions(variant.config).get_schedule_def("nightly_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (VARIANT["schedule_cron"], VARIANT["schedule_timezone"])
    # The tick at 03:30 New York on a Monday computes the Sunday before, New York time.
    tick = dt.datetime(2026, 3, 2, 3, 30, tzinfo=ZoneInfo(VARIANT["schedule_timezone"]))
    request = schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert request.partition_key == "2026-03-01"
    # Just after midnight in New York it is already morning in Stockholm: the date is New York's.
    late = dt.datetime(2026, 3, 3, 0, 30, tzinfo=ZoneInfo(VARIANT["schedule_timezone"]))
    assert schedule(dg.build_schedule_context(scheduled_execution_time=late)).partition_key == "2026-03-02"


def _run_results(run: Run) -> dict:
    [(run_id,)] = run.sql("select run_id from ops.run_log order by started_at desc limit 1")
    [target] = list((DBT_PROJECT_DIR / "target").glob(f"loyalty_dbt_models-{run_id[:7]}-*"))
    return json.loads((target / "run_results.json").read_text())


def test_run_dbt_unit_tests_runs_them_in_the_night(variant, baseline):
    def unit_tests(run: Run) -> list[str]:
        return [r["status"] for r in _run_results(run)["results"] if r["unique_id"].startswith("unit_test.")]

    assert unit_tests(baseline) == []
    statuses = unit_tests(variant)
    assert len(statuses) >= 20 and set(statuses) == {"pass"}


def test_duckdb_resources_reach_ingest_and_dbt(variant, baseline):
    log = variant.config.log_path.read_text(encoding="utf-8")
    [line] = re.findall(r"DuckDB settings: .*", log)
    assert line == f"DuckDB settings: memory_limit 953.6 MiB, threads 1, temp_directory {Path(variant.config.duckdb_temp_dir)}"
    environment = dbt_environment(variant.config)
    assert environment["LOYALTY_DUCKDB_MEMORY_LIMIT"] == "1GB"
    assert environment["LOYALTY_DUCKDB_TEMP_DIR"] == variant.config.duckdb_temp_dir
    base = re.findall(r"DuckDB settings: .*", baseline.config.log_path.read_text(encoding="utf-8"))[0]
    assert "threads 1," not in base and str(baseline.warehouse) + ".tmp" in base


def test_every_setting_has_a_test_here():
    """A new setting without a test of what it does fails here."""
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [field.name for field in dataclasses.fields(LoyaltyConfig) if field.name not in source.replace("test_every_setting", "")]
    assert untested == []



def _rendered_profile(environment: dict[str, str], monkeypatch) -> dict:
    """dbt/profiles.yml as the dbt process renders it under ``environment`` (dbt's own renderer)."""
    import os

    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    set_invocation_context(dict(os.environ))  # what dbt's env_var() reads
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text(encoding="utf-8"))["loyalty_warehouse"]
    return ProfileRenderer({}).render_data(profile)["outputs"]


def test_engine_and_the_spark_settings_reach_the_dbt_process(tmp_path, monkeypatch):
    """engine picks the dbt target of the run (the whole Spark run: tests/test_spark_engine.py);
    spark_method the output, and spark_master, spark_driver_memory, spark_dir, spark_host,
    spark_port, spark_cluster and spark_token_env (the variable's name, its value never in a
    file) what that output connects with."""
    from dagster_project.spark_engine import dbt_target_args

    duckdb_run = LoyaltyConfig(warehouse=str(tmp_path / "w.duckdb"))
    assert dbt_target_args(duckdb_run) == [] and "LOYALTY_SPARK_MASTER" not in dbt_environment(duckdb_run)
    file = tmp_path / "spark.yml"
    file.write_text(yaml.safe_dump({
        "warehouse": str(tmp_path / "w.duckdb"), "engine": "spark", "spark_master": "local[1]",
        "spark_driver_memory": "700m", "spark_dir": str(tmp_path / "lake"),
    }))
    local = load_config(file)
    assert dbt_target_args(local) == ["--target", "spark"]
    session = _rendered_profile(dbt_environment(local), monkeypatch)["spark"]
    assert session["server_side_parameters"]["spark.master"] == "local[1]"
    assert session["server_side_parameters"]["spark.driver.memory"] == "700m"
    assert session["server_side_parameters"]["spark.sql.warehouse.dir"] == str(tmp_path / "lake" / "tables")
    assert dbt_environment(local)["LOYALTY_SPARK_RAW_DIR"] == str(tmp_path / "lake" / "raw")

    monkeypatch.setenv("ACME_DATABRICKS_TOKEN", "s3cr3t")
    file.write_text(yaml.safe_dump({
        "engine": "spark", "spark_method": "http", "spark_host": "acme.cloud.example", "spark_port": 8443,
        "spark_cluster": "0101-abc", "spark_token_env": "ACME_DATABRICKS_TOKEN",
    }))
    cluster = load_config(file)
    assert dbt_target_args(cluster) == ["--target", "spark_http"]
    http = _rendered_profile(dbt_environment(cluster), monkeypatch)["spark_http"]
    assert (http["host"], http["port"], http["cluster"], http["token"]) == ("acme.cloud.example", 8443, "0101-abc", "s3cr3t")
    assert "s3cr3t" not in file.read_text()
    thrift = load_config_text(tmp_path, {"engine": "spark", "spark_method": "thrift", "spark_host": "thrift.example"})
    rendered = _rendered_profile(dbt_environment(thrift), monkeypatch)["spark_thrift"]
    assert (rendered["host"], rendered["port"]) == ("thrift.example", 10000)  # the method's default port
    with pytest.raises(Exception, match="spark_host"):
        load_config_text(tmp_path, {"engine": "spark", "spark_method": "thrift"})
    with pytest.raises(Exception, match="name of an environment variable"):
        load_config_text(tmp_path, {"spark_token_env": "dapi-0123456789abcdef"})
    with pytest.raises(Exception, match="engine must be one of"):
        load_config_text(tmp_path, {"engine": "snowflake"})


def load_config_text(folder: Path, settings: dict) -> LoyaltyConfig:
    file = folder / "settings.yml"
    file.write_text(yaml.safe_dump(settings))
    return load_config(file)


# ------------------------------------------------------------------ next best offer settings
# On the shared NBO night (tests/nbo_support.py: the sample with its campaign history and planted
# customers): the NBO step runs again on a copy of the warehouse with one setting changed.
def _nbo(night, sql):
    return night.sql(sql)


def _arm_shares(night) -> dict:
    return dict(_nbo(night, "select arm, count(distinct customer_id) / (select count(distinct customer_id) from marts.next_best_offers)"
                            " from marts.next_best_offers group by 1"))


def test_nbo_contact_policy_caps_the_channels(nbo_night, tmp_path):
    """dbt applies the policy: the rules model rebuilt with a policy without an email cap lets the
    planted email contact through (and nobody is channel-capped)."""
    import shutil
    import subprocess

    from dagster_project.dbt_project import constant_dbt_vars, dbt_executable

    sql = "select drop_rule from marts.nbo_candidates where customer_id = 'Z_CHANNELCAP' and offer_id = 'POINTS_EMAIL'"
    assert nbo_night.sql(sql) == [("channel_cap",)]
    copy = tmp_path / "w.duckdb"
    shutil.copyfile(nbo_night.warehouse, copy)
    config = dataclasses.replace(nbo_night.config, warehouse=str(copy), nbo_contact_policy={"sms": {"max": 1, "days": 7}})
    done = subprocess.run(
        [str(dbt_executable()), "run", "--select", "nbo_candidate_rules", "--vars", json.dumps(constant_dbt_vars(config)),
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(tmp_path / "target")],
        env={**__import__("os").environ, **dbt_environment(config)}, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    rules = "select drop_rule from marts.nbo_candidate_rules where customer_id = 'Z_CHANNELCAP' and offer_id = 'POINTS_EMAIL'"
    assert query(copy, rules) == [(None,)]
    assert query(copy, "select count(*) from marts.nbo_candidate_rules where drop_rule = 'channel_cap'") == [(0,)]
    assert nbo_night.sql("select count(*) from marts.nbo_candidate_rules where drop_rule = 'channel_cap'")[0][0] > 0


def test_nbo_control_share_and_random_share_size_the_arms(nbo_night, tmp_path):
    base = _arm_shares(nbo_night)
    variant = _arm_shares(nbo_night.variant(tmp_path, nbo_control_share=0.3, nbo_random_share=0.2))
    assert abs(base["control"] - 0.10) < 0.03 and abs(base["random"] - 0.05) < 0.02
    assert abs(variant["control"] - 0.3) < 0.04 and abs(variant["random"] - 0.2) < 0.04


def test_nbo_arm_salt_reassigns_the_arms(nbo_night, tmp_path):
    arms = dict(_nbo(nbo_night, "select distinct customer_id, arm from marts.next_best_offers"))
    other = dict(_nbo(nbo_night.variant(tmp_path, nbo_arm_salt="another-salt"), "select distinct customer_id, arm from marts.next_best_offers"))
    changed = sum(arms[c] != other[c] for c in arms)
    assert 0.05 * len(arms) < changed < 0.5 * len(arms)


def test_nbo_prior_scale_scales_the_prior_tier(nbo_night, tmp_path):
    sql = "select customer_id, propensity from marts.nbo_candidates where propensity_tier = 'prior' and offer_id = 'SUMMER_SMS' order by 1"
    base = dict(_nbo(nbo_night, sql))
    doubled = dict(_nbo(nbo_night.variant(tmp_path, nbo_prior_scale=2 * nbo_night.config.nbo_prior_scale), sql))
    assert base and all(doubled[c] == pytest.approx(2 * p) for c, p in base.items())


def test_nbo_smoothing_strength_pulls_the_cells_toward_the_prior(nbo_night, tmp_path):
    sql = ("select c.response_cell, avg(c.propensity) from marts.nbo_candidates c where offer_id = 'WINBACK_SMS'"
           " and propensity_tier = 'smoothed' group by 1 order by 1")
    strong = nbo_night.variant(tmp_path, nbo_smoothing_strength=10_000.0)
    prior = dict(_nbo(strong, "select response_cell, avg(propensity) from marts.nbo_candidates where offer_id = 'SUMMER_SMS' group by 1"))
    base, pulled = dict(_nbo(nbo_night, sql)), dict(_nbo(strong, sql))
    summer = nbo_night.sql("select response_window_days from raw.offers where offer_id = 'SUMMER_SMS'")[0][0]
    winback = nbo_night.sql("select response_window_days from raw.offers where offer_id = 'WINBACK_SMS'")[0][0]
    assert summer == winback  # same window: the same prior
    assert sum(abs(pulled[c] - prior[c]) for c in pulled) < 0.2 * sum(abs(base[c] - prior[c]) for c in base)


def test_nbo_min_positive_responses_and_holdout_share_decide_the_model_tier(nbo_night, tmp_path):
    sql = "select offer_id, propensity_tier, model_auc from marts.nbo_performance where arm = 'treated' order by 1"
    base = _nbo(nbo_night, sql)
    assert all(auc is None for _, _, auc in base)  # 1 500 customers: no offer has 200 positive responses
    low = _nbo(nbo_night.variant(tmp_path / "low", nbo_min_positive_responses=20), sql)
    assert any(auc is not None for _, _, auc in low)
    other_split = _nbo(nbo_night.variant(tmp_path / "split", nbo_min_positive_responses=20, nbo_holdout_share=0.5), sql)
    assert [a for _, _, a in other_split] != [a for _, _, a in low]


def test_nbo_min_control_contacts_switches_the_ranking(nbo_night, tmp_path):
    sql = "select distinct offer_id, ranking from marts.nbo_candidates order by 1"
    assert {r for _, r in _nbo(nbo_night, sql)} == {"uplift", "propensity"}  # SUMMER_SMS has no history
    strict = _nbo(nbo_night.variant(tmp_path, nbo_min_control_contacts=10**6), sql)
    assert {r for _, r in strict} == {"propensity"}


def test_nbo_top_k_and_seed(nbo_night, tmp_path):
    per_customer = "select max(n) from (select customer_id, count(*) n from marts.next_best_offers group by 1)"
    assert _nbo(nbo_night, per_customer)[0][0] > 1  # default: the best of each channel
    assert _nbo(nbo_night.variant(tmp_path / "k", nbo_top_k=1), per_customer) == [(1,)]
    random_rows = "select customer_id, offer_id from marts.next_best_offers where arm = 'random' order by 1"
    base = _nbo(nbo_night, random_rows)
    reseeded = _nbo(nbo_night.variant(tmp_path / "seed", nbo_seed=nbo_night.config.nbo_seed + 1), random_rows)
    assert base != reseeded and [c for c, _ in base] == [c for c, _ in reseeded]

"""Long histories: a member base since 1990 runs end to end at 12-, 6- and 3-month periods, a
backfill over dates in the 1990s works, and the issue's run (a history since 1997, half-year
periods, settings only in --config) succeeds; every flow cell and CLV row equals the pandas way
(benchmarks/pandas_way.py) computed with the same configuration."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from benchmarks import figures, pandas_way
from dagster_project import cli
from dagster_project.config import LoyaltyConfig, load_config
from dagster_project.definitions import build_asset_graph
from dagster_project.sample_data import generate_sample

from .support import query

AS_OF = dt.date(2026, 11, 30)
YEARS = 37  # 1989-12-01 … 2026-11-30: the first month lies before business_start_date 1990-01-01
START = "1990-01-01"


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("long_history") / "raw"
    summary = generate_sample(raw, customers=1200, as_of=AS_OF, years=YEARS)
    assert "transactions/transactions_1989.csv" in summary["files"]
    return raw


def config_file(folder: Path, **settings) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "loyalty.yml"
    file.write_text(yaml.safe_dump({
        "warehouse": str(folder / "wh.duckdb"), "export_dir": str(folder / "exports"),
        "publish_dir": str(folder / "published"), "log_dir": str(folder / "logs"), **settings,
    }))
    return file


def marts_figures(warehouse: Path, as_of: dt.date) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return figures.from_duckdb(con, "marts.segment_flow_matrix", "marts.segment_clv", as_of=as_of)


def test_the_issues_run_succeeds_from_config_alone(history, tmp_path):
    """`loyalty run --config my.yml --raw-dir … --as-of 1998-06-30 --warehouse …` with
    period_months 6 and business_start_date 1997-01-01, as a user runs it."""
    file = config_file(tmp_path, period_months=6, business_start_date="1997-01-01")
    loyalty = Path(sys.executable).with_name("loyalty")
    done = subprocess.run(
        [str(loyalty), "run", "--config", str(file), "--raw-dir", str(history), "--as-of", "1998-06-30",
         "--warehouse", str(tmp_path / "wh.duckdb")],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "LOYALTY_CONFIG"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    config = load_config(file)
    as_of = dt.date(1998, 6, 30)
    periods = query(tmp_path / "wh.duckdb", "select period_index, period_start, period_end from intermediate.int_periods order by 1")
    # 1997-01-01 … 1998-06-30 at half years: three periods (June 30 − 6 months is December 30).
    assert [(p[1], p[2]) for p in periods] == [
        (dt.date(1997, 12, 31), dt.date(1998, 6, 30)),
        (dt.date(1997, 7, 1), dt.date(1997, 12, 30)),
        (dt.date(1996, 12, 31), dt.date(1997, 6, 30)),
    ]
    expected = pandas_way.compute(history, as_of, config)
    assert figures.differences(marts_figures(tmp_path / "wh.duckdb", as_of), expected) == []
    assert expected["flow"] and expected["clv"]
    [(before,)] = query(tmp_path / "wh.duckdb", "select count(*) from raw.quarantine_transactions where reason like '%before the business start%'")
    assert before > 0
    assert build_asset_graph(config).partitions_def.get_first_partition_key() == "1997-01-01"


def _long_run(months: int, history: Path, tmp_path_factory) -> LoyaltyConfig:
    folder = tmp_path_factory.mktemp(f"long_{months}")
    file = config_file(folder, period_months=months, business_start_date=START, raw_dir=str(history))
    assert cli.main(["run", "--config", str(file), "--as-of", AS_OF.isoformat()]) == 0
    return load_config(file)


@pytest.fixture(scope="module")
def yearly(history, tmp_path_factory):
    return _long_run(12, history, tmp_path_factory)


@pytest.fixture(scope="module")
def half_yearly(history, tmp_path_factory):
    return _long_run(6, history, tmp_path_factory)


@pytest.fixture(scope="module")
def quarterly(history, tmp_path_factory):
    return _long_run(3, history, tmp_path_factory)


@pytest.mark.parametrize("run_name", ["yearly", "half_yearly", "quarterly"])
def test_a_history_since_1990_runs_at_every_period_length(run_name, request, history):
    config = request.getfixturevalue(run_name)
    warehouse = config.warehouse_path
    expected_periods = pandas_way.period_bounds(AS_OF, dt.date.fromisoformat(START), config.period_months)
    periods = query(warehouse, "select count(*), min(period_start) from intermediate.int_periods where as_of_date = ?", [AS_OF])
    assert periods[0][0] == len(expected_periods)  # as many as the history holds: 37 years, 74 halves, 148 quarters
    assert periods[0][1] <= dt.date.fromisoformat(START)
    assert figures.differences(marts_figures(warehouse, AS_OF), pandas_way.compute(history, AS_OF, config)) == []
    quarantined = query(warehouse, "select min(transaction_date) from raw.transactions")[0][0]
    assert quarantined >= dt.date.fromisoformat(START)


def test_a_backfill_over_dates_in_the_1990s(yearly, history):
    """On the warehouse of the yearly run (its later slice stays): ten dates in one run."""
    file = yearly.warehouse_path.parent / "loyalty.yml"
    assert cli.main(["backfill", "--config", str(file), "--from", "1995-06-01", "--to", "1995-06-10"]) == 0
    warehouse = yearly.warehouse_path
    dates = [row[0] for row in query(warehouse, "select distinct as_of_date from marts.segment_clv order by 1")]
    assert dates == [dt.date(1995, 6, day) for day in range(1, 11)] + [AS_OF]
    for as_of in (dt.date(1995, 6, 1), dt.date(1995, 6, 10)):
        expected = pandas_way.compute(history, as_of, LoyaltyConfig(business_start_date=START))
        assert figures.differences(marts_figures(warehouse, as_of), expected) == []

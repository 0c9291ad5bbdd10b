"""Nightly operation: idempotent re-runs, a two-day backfill equal to two single runs (in one dbt
build), and a late file with old dates picked up by the next night and corrected by a backfill."""

import datetime as dt
import shutil

import pytest

from dagster_project.resources import LoyaltySettings
from dagster_project.runner import run_pipeline
from dagster_project.sample_data import generate_sample

from .support import TRANSACTION_HEADER, query, write_csv

DAY_1, DAY_2 = dt.date(2026, 10, 30), dt.date(2026, 10, 31)
SLICED_MARTS = ["value_deciles", "segment_flow_matrix", "segment_retention", "segment_clv", "nps_by_segment", "nps_by_flow"]


def _run(raw, warehouse, dates):
    outcome = run_pipeline(
        LoyaltySettings(as_of_date=dates[-1].isoformat(), raw_dir=str(raw), warehouse=str(warehouse)),
        as_of_dates=dates,
    )
    assert outcome.success, outcome.failure
    return outcome


def _marts(warehouse) -> dict[str, list[tuple]]:
    tables = {name: query(warehouse, f"select * from marts.{name} order by all") for name in SLICED_MARTS}
    tables["customer_period_facts"] = query(warehouse, "select * from marts.customer_period_facts order by all")
    return tables


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nightly") / "raw"
    generate_sample(folder, customers=1500, seed=11)
    return folder


@pytest.fixture(scope="module")
def single_runs(raw, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("singles") / "warehouse.duckdb"
    _run(raw, warehouse, [DAY_1])
    _run(raw, warehouse, [DAY_2])
    return warehouse


def test_two_day_backfill_equals_two_single_runs_in_one_dbt_build(raw, single_runs, tmp_path):
    warehouse = tmp_path / "backfill.duckdb"
    outcome = _run(raw, warehouse, [DAY_1, DAY_2])
    dbt_steps = [e for e in outcome.result.all_events if e.step_key == "loyalty_dbt_models" and e.event_type_value == "STEP_START"]
    assert len(dbt_steps) == 1  # one step, one `dbt build` for both dates
    assert _marts(warehouse) == _marts(single_runs)
    for name in SLICED_MARTS:
        assert query(warehouse, f"select distinct as_of_date from marts.{name} order by 1") == [(DAY_1,), (DAY_2,)], name
    assert query(warehouse, "select distinct as_of_date from marts.customer_period_facts") == [(DAY_2,)]


def test_rerunning_a_date_replaces_exactly_its_slice(raw, single_runs, tmp_path):
    warehouse = tmp_path / "rerun.duckdb"
    shutil.copyfile(single_runs, warehouse)
    before = _marts(warehouse)
    _run(raw, warehouse, [DAY_1])  # an older date again: its slice is rebuilt, nothing doubles
    assert _marts(warehouse) == before
    _run(raw, warehouse, [DAY_2])
    assert _marts(warehouse) == before
    # lifecycle_kpis keeps one slice of 36 cells per night: two nights, re-run, still two slices.
    assert query(warehouse, "select as_of_date, count(*) from marts.lifecycle_kpis group by 1 order by 1") == [
        (DAY_1, 36), (DAY_2, 36)]


def test_a_late_file_is_loaded_next_night_and_a_backfill_corrects_the_old_slice(raw, single_runs, tmp_path):
    late_raw = tmp_path / "raw"
    shutil.copytree(raw, late_raw)
    warehouse = tmp_path / "late.duckdb"
    shutil.copyfile(single_runs, warehouse)
    sql = "select sum(revenue) from marts.segment_clv where as_of_date = ? and period_index = 0 and value_segment = 'total'"
    day_1_before = query(warehouse, sql, [DAY_1])[0][0]
    day_2_before = query(warehouse, sql, [DAY_2])[0][0]

    # A store's file for mid-October arrives late, after both nights ran.
    write_csv(late_raw / "transactions" / "late_store_2026-10-15.csv", TRANSACTION_HEADER,
              [("LATE1", "C0000001", "2026-10-15", "5000.00", "P0001", "store")])
    _run(late_raw, warehouse, [DAY_2])  # the next night: the file is loaded, DAY_2 includes it
    assert query(warehouse, "select count(*) from raw.transactions where transaction_id = 'LATE1'") == [(1,)]
    assert query(warehouse, sql, [DAY_2])[0][0] == day_2_before + 5000
    assert query(warehouse, sql, [DAY_1])[0][0] == day_1_before  # old slice untouched until backfilled

    _run(late_raw, warehouse, [DAY_1])  # backfill the affected date (customer-level marts stay at DAY_2)
    assert query(warehouse, sql, [DAY_1])[0][0] == day_1_before + 5000
    assert query(warehouse, "select distinct as_of_date from marts.customer_period_facts") == [(DAY_2,)]

"""The contract of the incremental intermediates: a week of nights equals a fresh build.

Eight runs on one warehouse — a first build, then seven nights with one day of new rows each and,
among them, a late file with old dates (one older than all history: the periods reach further
back), an erasure, a replaced file, a conflicting transaction id and a night two days after the
one before — then a fresh full run for the last as-of date into a new warehouse. Every table of
staging, intermediate and marts must be the same row for row (the slice marts: the last date's
slice), and the export files of the last date byte for byte. Each night says in
ops.incremental_build whether it continued the previous build or rebuilt, and why.

Slow (marked): nine pipeline runs per week, 3–3.5 min for a week on this 2-core machine with
other jobs on it, 5.5–7 min for the file on two workers.
"""

import datetime as dt
import json
import random
from pathlib import Path

import duckdb
import pytest

from dagster_project.resources import LoyaltySettings
from dagster_project.runner import run_pipeline
from dagster_project.sample_data import generate_sample

from .support import TRANSACTION_HEADER, write_csv

pytestmark = pytest.mark.slow

BASE = dt.date(2026, 10, 24)
CUSTOMERS = 400
LAYERS = ("staging", "intermediate", "marts")
# The predictive CLV step's clock: when its parameters were fitted (the only wall-clock columns).
WALL_CLOCK_COLUMNS = {"fitted_at"}


def _day_rows(day: dt.date, count: int, seed: int) -> list[tuple]:
    """A day of purchases and a few refunds by existing customers, and one new customer."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        amount = rng.randint(1000, 90000) / 100
        rows.append((
            f"D{day:%Y%m%d}-{i:03d}", f"C{rng.randint(1, CUSTOMERS):07d}", day.isoformat(),
            f"{-amount / 4 if i % 9 == 8 else amount:.2f}", f"P{rng.randint(1, 150):04d}" if i % 5 else "", "web",
        ))
    rows.append((f"D{day:%Y%m%d}-new", f"N{day:%Y%m%d}", day.isoformat(), "120.00", "P0001", "store"))
    return rows


def _day_file(raw: Path, day: dt.date, seed: int) -> Path:
    return write_csv(raw / "transactions" / f"day_{day:%Y%m%d}.csv", TRANSACTION_HEADER, _day_rows(day, 40, seed))


def _night(raw: Path, root: Path, warehouse: Path, as_of: dt.date, overrides: dict) -> tuple[str, str]:
    settings = LoyaltySettings(
        as_of_date=as_of.isoformat(), raw_dir=str(raw), warehouse=str(warehouse),
        overrides_json=json.dumps({"export_dir": str(root / "exports"), "publish_dir": str(root / "published"),
                                   "log_dir": str(root / "logs"), **overrides}),
    )
    outcome = run_pipeline(settings)
    assert outcome.success, outcome.failure
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select mode, reason from ops.incremental_build").fetchone()


def _week(raw: Path, root: Path, overrides: dict) -> tuple[Path, list[tuple[dt.date, str, str]]]:
    """The first build and seven nights; returns the warehouse and each night's (as-of, mode, reason).

    The two nights that must rebuild in full (a replaced file, a conflicting id) come first, so
    the five incremental nights after them all lead to the state compared with the fresh build."""
    warehouse = root / "warehouse.duckdb"
    nights = []

    def night(as_of: dt.date) -> None:
        nights.append((as_of, *_night(raw, root, warehouse, as_of, overrides)))

    def day(offset: int) -> dt.date:
        return BASE + dt.timedelta(days=offset)

    # A store feed, and customers who lapse during the week without any new row: their last
    # purchase turns 365 days old on 10-28 and 10-30 (lost then, with their revenue before the lapse).
    write_csv(raw / "transactions" / "store_feed.csv", TRANSACTION_HEADER, [
        ("S1", "C0000003", "2026-09-01", "410.00", "P0008", "store"),
        ("S2", "C0000004", "2026-10-01", "95.00", "", "store"),
        ("S3", "C0000005", "2026-10-20", "-20.00", "P0008", "store"),
    ])
    write_csv(raw / "transactions" / "lapsing.csv", TRANSACTION_HEADER, [
        ("X1", "LAPSE1", "2025-10-28", "200.00", "P0005", "store"),
        ("X2", "LAPSE2", "2025-06-01", "70.00", "P0005", "store"),
        ("X3", "LAPSE2", "2025-10-30", "90.00", "P0006", "store"),
    ])
    night(BASE)
    # 10-25: the store feed is delivered again, corrected: a row changed, one dropped, one added.
    _day_file(raw, day(1), 1)
    write_csv(raw / "transactions" / "store_feed.csv", TRANSACTION_HEADER, [
        ("S1", "C0000003", "2026-09-01", "401.00", "P0008", "store"),
        ("S4", "C0000006", "2026-10-02", "33.00", "P0009", "store"),
    ])
    night(day(1))
    # 10-26: a file repeats an id loaded earlier with other values (both go to quarantine).
    rows = _day_rows(day(2), 40, 2)
    rows.append(("X1", "LAPSE1", "2025-10-28", "201.00", "P0005", "store"))
    rows.append(("X1b", "LAPSE1", "2025-10-28", "200.00", "P0005", "store"))
    write_csv(raw / "transactions" / f"day_{day(2):%Y%m%d}.csv", TRANSACTION_HEADER, rows)
    night(day(2))
    # 10-27: a till's file for tomorrow arrives early: its rows count from tomorrow's night on.
    _day_file(raw, day(3), 3)
    write_csv(raw / "transactions" / "early_20261028.csv", TRANSACTION_HEADER,
              [("E1", "C0000021", "2026-10-28", "55.00", "P0007", "till")])
    night(day(3))
    # 10-28: a store's late file: rows on a period edge a year ago, mid-history, and before the
    # oldest row (the periods now reach one year further back), a refund among them.
    _day_file(raw, day(4), 4)
    write_csv(raw / "transactions" / "late_store.csv", TRANSACTION_HEADER, [
        ("L1", "C0000007", "2025-10-28", "300.00", "P0002", "store"),
        ("L2", "C0000008", "2024-03-15", "80.00", "", "store"),
        ("L3", "C0000009", "2022-06-01", "450.00", "P0003", "store"),
        ("L4", "C0000007", "2025-10-29", "-50.00", "P0002", "store"),
    ])
    night(day(4))
    # 10-29: two customers ask to be erased (one of them in the late file).
    _day_file(raw, day(5), 5)
    write_csv(raw / "erasures" / "erasures.csv", ["customer_id", "requested_at"],
              [("C0000009", "2026-10-29"), ("C0000011", "2026-10-29")])
    night(day(5))
    _day_file(raw, day(6), 6)
    night(day(6))
    # 11-01: the night of 10-31 did not run; two days of files, one night.
    for offset in (7, 8):
        _day_file(raw, day(offset), offset)
    night(day(8))
    return warehouse, nights


def _tables(warehouse: Path) -> dict[tuple[str, str], list[str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = {}
        for schema, table in con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema in (?, ?, ?)", list(LAYERS)
        ).fetchall():
            found[(schema, table)] = [
                row[0] for row in con.execute(
                    "select column_name from information_schema.columns where table_schema = ? and table_name = ?"
                    " order by ordinal_position", [schema, table]).fetchall()
                if row[0] not in WALL_CLOCK_COLUMNS
            ]
        return found


def _rows(warehouse: Path, schema: str, table: str, columns: list[str], as_of: dt.date) -> list[tuple]:
    listed = ", ".join(f'"{c}"' for c in columns)
    # Slice marts keep every night's slice: the last date's is the one a fresh run builds.
    where = f"where as_of_date = date '{as_of}'" if "as_of_date" in columns else ""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f'select {listed} from "{schema}"."{table}" {where} order by all').fetchall()


def _assert_same(nightly: Path, fresh: Path, as_of: dt.date) -> None:
    tables = _tables(fresh)
    assert _tables(nightly) == tables
    assert ("intermediate", "int_customer_periods_aggregated") in tables
    differences = []
    for (schema, table), columns in sorted(tables.items()):
        left, right = _rows(nightly, schema, table, columns, as_of), _rows(fresh, schema, table, columns, as_of)
        if left != right:
            only_left = sorted(set(left) - set(right), key=repr)[:3]
            only_right = sorted(set(right) - set(left), key=repr)[:3]
            differences.append(f"{schema}.{table}: {len(left)} vs {len(right)} rows; nightly only {only_left}; fresh only {only_right}")
    assert not differences, "\n".join(differences)


def _assert_same_export(nightly_root: Path, fresh_root: Path, as_of: dt.date) -> None:
    # The full files of the date. The delta compares with the previous export in the folder (the
    # fresh run has none) and the manifest names the run: both differ by design.
    files = sorted(p.name for p in (fresh_root / "exports").glob(f"*_{as_of}.*") if not p.name.endswith(".manifest.json"))
    assert any(name == f"segment_flags_{as_of}.csv" for name in files), files
    for name in files:
        assert (nightly_root / "exports" / name).read_bytes() == (fresh_root / "exports" / name).read_bytes(), name


def _week_then_fresh(tmp_path: Path, overrides: dict):
    raw = tmp_path / "raw"
    generate_sample(raw, customers=CUSTOMERS, years=3, as_of=BASE, seed=5)
    warehouse, nights = _week(raw, tmp_path / "nightly", overrides)
    last = nights[-1][0]
    fresh_root = tmp_path / "fresh"
    assert _night(raw, fresh_root, fresh_root / "warehouse.duckdb", last, overrides)[0] == "full"
    return warehouse, fresh_root / "warehouse.duckdb", nights, last


def test_a_week_of_nights_equals_a_fresh_build(tmp_path):
    nightly, fresh, nights, last = _week_then_fresh(tmp_path, {})
    modes = [(as_of.isoformat(), mode) for as_of, mode, _ in nights]
    assert modes == [
        ("2026-10-24", "full"), ("2026-10-25", "full"), ("2026-10-26", "full"),
        ("2026-10-27", "incremental"), ("2026-10-28", "incremental"), ("2026-10-29", "incremental"),
        ("2026-10-30", "incremental"), ("2026-11-01", "incremental"),
    ], nights
    reasons = [reason for _, _, reason in nights]
    assert reasons[0] == "no earlier build to continue from"
    assert "store_feed.csv was replaced" in reasons[1]
    assert "moved to quarantine" in reasons[2]
    assert reasons[3].startswith("2 new transactions file(s), ")  # the day and tomorrow's early file
    assert reasons[4].startswith("2 new transactions file(s), ")  # the day and the late file
    assert reasons[5].startswith("1 new transactions file(s), ")
    assert reasons[7].startswith("2 new transactions file(s), ")
    _assert_same(nightly, fresh, last)
    _assert_same_export(nightly.parent, fresh.parent, last)
    with duckdb.connect(str(nightly), read_only=True) as con:
        assert con.execute("select customer_id, lifecycle_stage, revenue_before_lapse from intermediate.int_customer_lifecycle_staged"
                           " where customer_id like 'LAPSE%' order by 1").fetchall() == [
            ("LAPSE1", "lost", 200), ("LAPSE2", "lost", 160)]
        # The erased customers are in no table, carried over or not.
        for table in ("int_customer_periods_aggregated", "int_customer_lifecycle_staged"):
            assert con.execute(
                f"select count(*) from intermediate.{table} where customer_id in ('C0000009', 'C0000011')").fetchone()[0] == 0


def test_monthly_periods_across_a_month_end_equal_a_fresh_build(tmp_path):
    """One-month periods: the edges clamp at month ends (Oct 31 − 1 month = Sep 30, as Oct 30's),
    and the late file's oldest row adds periods; max_periods drops the oldest ones every night."""
    overrides = {"period_months": 1, "max_periods": 30}
    nightly, fresh, nights, last = _week_then_fresh(tmp_path, overrides)
    assert [mode for _, mode, _ in nights].count("incremental") == 5
    _assert_same(nightly, fresh, last)
    _assert_same_export(nightly.parent, fresh.parent, last)


def test_a_changed_configuration_rebuilds_and_says_why(tmp_path):
    raw = tmp_path / "raw"
    generate_sample(raw, customers=150, years=2, as_of=BASE, seed=6)
    warehouse = tmp_path / "w" / "warehouse.duckdb"
    assert _night(raw, tmp_path / "w", warehouse, BASE, {})[0] == "full"
    assert _night(raw, tmp_path / "w", warehouse, BASE + dt.timedelta(days=1), {})[0] == "incremental"
    mode, reason = _night(raw, tmp_path / "w", warehouse, BASE + dt.timedelta(days=2), {"lost_after_days": 300})
    assert (mode, reason) == ("full", "configuration changed (lost_after_days)")

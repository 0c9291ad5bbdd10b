"""engine: spark gives the same warehouse as engine: duckdb (README "Running on Spark").

COST: the most expensive file of the suite. One module fixture generates a small sample (300
customers, 3 years, with the next-best-offer campaigns) and runs the whole pipeline twice in-process:
on DuckDB and on Spark (dbt-spark's local session, local[2], a JVM start, then about a second or more per model and test: Spark pays
per query, not per row). Measured on this 2-core machine while other jobs shared it (load 4–9):
3 min 45 s to 6 min 13 s for the file, about 1.5 min of it CPU time; dbt's Spark build is ~100 nodes,
the unit tests the largest share. The Spark run also runs every dbt unit test and singular test
(run_dbt_unit_tests), so the business rules are checked on Spark too.
Every other test here is a cheap check of the Parquet hand-over without Spark.

Compared: every table of staging, intermediate and marts (the predictive CLV marts included),
row for row after sorting: integers, text, dates and decimals exactly (amounts to the cent), doubles
to a relative 1e-9; column names and types too; the export file and the published marts.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from dagster_project import spark_engine
from dagster_project.config import LoyaltyConfig
from dagster_project.dbt_project import DBT_PROJECT_DIR
from dagster_project.sample_data import generate_sample

AS_OF = dt.date(2026, 10, 31)
LAYERS = ("staging", "intermediate", "marts")
# Wall-clock columns (when the predictive CLV fit ran), the only ones two runs may differ in.
WALL_CLOCK_COLUMNS = {"fitted_at"}


def _run(raw: Path, root: Path, engine: str) -> tuple[LoyaltyConfig, object]:
    from dagster_project.resources import LoyaltySettings
    from dagster_project.runner import run_pipeline

    overrides = {
        "engine": engine,
        "export_dir": str(root / "exports"),
        "publish_dir": str(root / "published"),
        "log_dir": str(root / "logs"),
        # The unit and singular tests on Spark; on DuckDB the other test files run them.
        "run_dbt_unit_tests": engine == "spark",
    }
    settings = LoyaltySettings(
        as_of_date=AS_OF.isoformat(), raw_dir=str(raw), warehouse=str(root / "warehouse.duckdb"),
        overrides_json=json.dumps(overrides), run_date=(AS_OF + dt.timedelta(days=1)).isoformat(),
    )
    outcome = run_pipeline(settings)
    assert outcome.success, outcome.failure
    return settings.loyalty_config(), outcome


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    # With the campaigns (offers/, offer_events/): the next-best-offer models and marts have rows to compare.
    generate_sample(raw, customers=300, years=3, as_of=AS_OF, campaigns=True)
    runs = {}
    for engine in ("duckdb", "spark"):
        runs[engine] = _run(raw, tmp_path_factory.mktemp(engine), engine)
    return runs


def _tables(warehouse: Path) -> dict[tuple[str, str], list[tuple[str, str]]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns"
            f" where table_schema in {LAYERS} order by table_schema, table_name, ordinal_position"
        ).fetchall()
    tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, data_type in rows:
        tables.setdefault((schema, table), []).append((column, data_type))
    return tables


def _rows(warehouse: Path, schema: str, table: str, columns: list[str]) -> list[tuple]:
    listed = ", ".join(f'"{column}"' for column in columns)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f'select {listed} from "{schema}"."{table}" order by all').fetchall()


def _differences(name: str, columns: list[str], left: list[tuple], right: list[tuple]) -> list[str]:
    if len(left) != len(right):
        return [f"{name}: {len(left)} rows on duckdb, {len(right)} on spark"]
    found = []
    for number, (a, b) in enumerate(zip(left, right)):
        for column, x, y in zip(columns, a, b):
            if isinstance(x, float) and isinstance(y, float):
                same = math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))
            else:  # ints, text, dates, booleans, decimals (to the cent): exactly
                same = x == y and type(x) is type(y)
            if not same:
                found.append(f"{name} row {number} {column}: duckdb {x!r}, spark {y!r}")
    return found


def test_every_table_is_the_same_row_for_row(engines):
    duck, spark = (engines[e][0].warehouse_path for e in ("duckdb", "spark"))
    duck_tables, spark_tables = _tables(duck), _tables(spark)
    assert set(spark_tables) == set(duck_tables)
    assert {("marts", "segment_clv"), ("marts", "customer_clv_predictions"), ("staging", "stg_raw__customers")} <= set(duck_tables)
    problems = []
    for (schema, table), columns in sorted(duck_tables.items()):
        if spark_tables[(schema, table)] != columns:
            problems.append(f"{schema}.{table}: columns {columns} on duckdb, {spark_tables[(schema, table)]} on spark")
            continue
        names = [name for name, _ in columns if name not in WALL_CLOCK_COLUMNS]
        duck_rows, spark_rows = _rows(duck, schema, table, names), _rows(spark, schema, table, names)
        assert duck_rows or table.startswith("stg_raw__") or table.startswith("clv_"), f"{schema}.{table} is empty"
        problems += _differences(f"{schema}.{table}", names, duck_rows, spark_rows)
    assert problems == []


def test_amounts_are_decimals_to_the_cent_on_both(engines):
    for engine in ("duckdb", "spark"):
        columns = dict(_tables(engines[engine][0].warehouse_path)[("marts", "segment_clv")])
        assert columns["revenue"] == "DECIMAL(18,2)", engine
        assert columns["clv"] == "DOUBLE", engine


def test_the_spark_run_ran_every_unit_test_and_singular_test_and_they_passed(engines):
    config, outcome = engines["spark"]
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    [target] = list((DBT_PROJECT_DIR / "target").glob(f"loyalty_dbt_models-{outcome.run_id[:7]}-*"))
    results = {r["unique_id"]: r["status"] for r in json.loads((target / "run_results.json").read_text())["results"]}
    unit_tests = set(manifest["unit_tests"])
    singular = {uid for uid, node in manifest["nodes"].items() if node["resource_type"] == "test" and node["original_file_path"].startswith("tests/")}
    assert len(unit_tests) >= 10 and len(singular) >= 5
    assert {uid: results.get(uid) for uid in unit_tests} == {uid: "pass" for uid in unit_tests}
    assert {uid: results.get(uid) for uid in singular} == {uid: "pass" for uid in singular}
    # It really was Spark: the run's dbt target, and the tables' Parquet files Spark wrote.
    assert json.loads((target / "run_results.json").read_text())["args"]["target"] == "spark"
    assert len(spark_engine.built_tables(config)) >= 15


def test_export_and_published_copy_are_the_same(engines):
    duck, spark = (engines[e][0] for e in ("duckdb", "spark"))
    name = f"segment_flags_{AS_OF.isoformat()}.csv"
    assert (duck.export_path / name).read_bytes() == (spark.export_path / name).read_bytes()
    published = sorted(p.name for p in duck.publish_path.glob("*.parquet"))
    assert published == sorted(p.name for p in spark.publish_path.glob("*.parquet")) and published
    for file in published:
        left, right = pq.read_table(duck.publish_path / file), pq.read_table(spark.publish_path / file)
        assert left.schema == right.schema, file
        assert left.num_rows == right.num_rows, file


def test_the_same_checks_ran_and_passed_on_both(engines):
    """The GX suites and dbt's data tests as Dagster asset checks: on Spark they check the tables
    copied back into the warehouse, and block the same way (any failure would fail the run)."""
    def checks(engine: str) -> dict[str, bool]:
        evaluations = engines[engine][1].result.get_asset_check_evaluations()
        return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in evaluations}

    on_duckdb, on_spark = checks("duckdb"), checks("spark")
    suites = {name for name in on_duckdb if name.endswith("_suite")}
    assert len(suites) >= 8
    assert {name: on_spark.get(name) for name in suites} == {name: True for name in suites}
    # Every check of the DuckDB run with the same outcome (the fit's non-blocking freshness warning
    # included); Spark also ran the development checks (run_dbt_unit_tests), and they passed.
    assert {name: on_spark.get(name) for name in on_duckdb} == on_duckdb
    assert all(passed for name, passed in on_spark.items() if name not in on_duckdb)


def test_raw_parquet_has_one_part_per_landed_file(engines):
    config, _ = engines["spark"]
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        files = {row[0] for row in con.execute("select distinct source_file from raw.transactions").fetchall()}
        rows = con.execute("select count(*) from raw.transactions").fetchone()[0]
    folder = spark_engine.raw_parquet_dir(config) / "transactions"
    parts = sorted(folder.glob("part-*.parquet"))
    assert len(parts) == len(files) > 1
    assert sum(pq.read_metadata(part).num_rows for part in parts) == rows


# The Parquet hand-over without Spark (cheap).

def _raw_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    from dagster_project.ingest import ensure_raw_tables
    from dagster_project.raw_contract import RAW_SOURCES

    con = duckdb.connect(str(path))
    for source in RAW_SOURCES:
        ensure_raw_tables(con, source)
    rows = [("t1", "A", "2024-01-01", 10, "a.csv", 2), ("t2", "B", "2024-01-02", 20, "a.csv", 3), ("t3", "A", "2024-02-01", 5, "b.csv", 2)]
    con.executemany(
        "insert into raw.transactions (transaction_id, customer_id, transaction_date, amount, source_file, line_number) values (?, ?, ?, ?, ?, ?)",
        rows,
    )
    return con


def test_raw_parquet_appends_new_files_and_rewrites_only_the_parts_an_erasure_touches(tmp_path):
    con = _raw_warehouse(tmp_path / "w.duckdb")
    root = tmp_path / "raw"
    first = spark_engine.export_raw_parquet(con, root)
    assert first["transactions"] == {"parts_written": 2, "parts_deleted": 0}
    # Tables without rows get an empty part, so Spark still knows their columns.
    assert pq.read_schema(root / "products" / spark_engine.EMPTY_PART).names[:2] == ["product_id", "margin_rate"]
    folder = root / "transactions"
    b_part = next(p for p in folder.glob("part-*.parquet") if pq.read_table(p).column("source_file")[0].as_py() == "b.csv")
    b_written = b_part.stat().st_mtime_ns
    assert spark_engine.export_raw_parquet(con, root)["transactions"] == {"parts_written": 0, "parts_deleted": 0}
    # A new landed file adds one part; erasing B rewrites a.csv's part only.
    con.execute("insert into raw.transactions (transaction_id, customer_id, transaction_date, amount, source_file, line_number) values ('t4', 'C', '2024-03-01', 7, 'c.csv', 2)")
    con.execute("delete from raw.transactions where customer_id = 'B'")
    assert spark_engine.export_raw_parquet(con, root)["transactions"] == {"parts_written": 2, "parts_deleted": 0}
    assert b_part.stat().st_mtime_ns == b_written
    ids = sorted(pq.read_table(folder).column("transaction_id").to_pylist())
    assert ids == ["t1", "t3", "t4"]
    # A file whose rows are all gone loses its part.
    con.execute("delete from raw.transactions where source_file = 'c.csv'")
    assert spark_engine.export_raw_parquet(con, root)["transactions"] == {"parts_written": 0, "parts_deleted": 1}
    assert len(list(folder.glob("part-*.parquet"))) == 2


def test_a_slice_mart_from_spark_replaces_only_the_run_dates_in_the_warehouse(tmp_path):
    config = LoyaltyConfig(warehouse=str(tmp_path / "w.duckdb"))
    with duckdb.connect(str(config.warehouse_path)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.value_deciles as select * from (values (date '2026-09-30', 1), (date '2026-10-31', 1)) as t(as_of_date, customers)")
    built = spark_engine.spark_tables_dir(config) / "marts.db"
    (built / "value_deciles").mkdir(parents=True)
    (built / "segment_flags").mkdir(parents=True)
    with duckdb.connect() as con:
        con.execute(f"copy (select date '2026-10-31' as as_of_date, 7 as customers) to '{built / 'value_deciles' / 'part-0.parquet'}'")
        con.execute(f"copy (select 'A' as customer_id) to '{built / 'segment_flags' / 'part-0.parquet'}'")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"nodes": {
        "model.x.value_deciles": {"resource_type": "model", "schema": "marts", "alias": "value_deciles", "config": {"unique_key": "as_of_date"}},
        "model.x.segment_flags": {"resource_type": "model", "schema": "marts", "alias": "segment_flags", "config": {}},
    }}))
    assert spark_engine.import_built_tables(config, manifest) == ["marts.segment_flags", "marts.value_deciles"]
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        assert con.execute("select * from marts.value_deciles order by 1").fetchall() == [
            (dt.date(2026, 9, 30), 1), (dt.date(2026, 10, 31), 7)
        ]
        assert con.execute("select * from marts.segment_flags").fetchall() == [("A",)]


def test_decimal_values_compare_exactly():
    # The comparison itself: a cent off is a difference, a double's last bits are not.
    assert _differences("t", ["x"], [(decimal.Decimal("1.10"),)], [(decimal.Decimal("1.11"),)])
    assert not _differences("t", ["x"], [(0.1 + 0.2,)], [(0.3,)])
    assert _differences("t", ["x"], [(1,)], [(1.0,)])

"""The read-only copy for BI (dagster_project/publish.py): what a BI client opens after a run, in
which storage format, as Parquet, through SQLAlchemy, and while a run replaces it under a reader."""

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from dagster_project.config import LoyaltyConfig
from dagster_project.publish import (
    DATABASE_FILE,
    MART_NAMES,
    PublishError,
    header_version_number,
    publish_lock,
    publish_warehouse,
    stale_temp_files,
    storage_version,
    temp_name,
)
from dagster_project.resources import LoyaltySettings
from dagster_project.sample_data import SAMPLE_AS_OF, generate_sample

from .support import TRANSACTION_HEADER, write_csv

AS_OF = SAMPLE_AS_OF
STATE_SQL = (
    "select (select count(*) from marts.customer_period_facts),"
    " (select sum(revenue) from marts.customer_period_facts),"
    " (select count(*) from marts.customer_segment_flags)"
)


# ----------------------------------------------------------------------------------------------
# Running the graph
# ----------------------------------------------------------------------------------------------


def pipeline_assets() -> list:
    from .support import default_graph

    return list(default_graph().assets)


def run_with_publish(settings: LoyaltySettings):
    """A whole run, as `loyalty run` does it."""
    from dagster_project.runner import run_pipeline

    outcome = run_pipeline(settings)
    assert outcome.success, outcome.failure
    return outcome.result


def settings(raw: Path, warehouse: Path, publish_dir: Path, **overrides) -> LoyaltySettings:
    return LoyaltySettings(
        as_of_date=AS_OF.isoformat(),
        raw_dir=str(raw),
        warehouse=str(warehouse),
        overrides_json=json.dumps({"publish_dir": str(publish_dir), **overrides}),
    )


def rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def mart_names(path: Path) -> list[str]:
    return [
        name
        for (name,) in rows(
            path, "select table_name from duckdb_tables() where schema_name = 'marts' order by table_name"
        )
    ]


# ----------------------------------------------------------------------------------------------
# One run on sample data
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("publish") / "raw"
    # With the campaigns: every mart has rows, the next-best-offer marts too.
    generate_sample(folder, customers=2000, seed=5, campaigns=True)
    return folder


@pytest.fixture(scope="module")
def run(raw, tmp_path_factory):
    root = tmp_path_factory.mktemp("published_run")
    warehouse, publish_dir = root / "warehouse.duckdb", root / "published"
    result = run_with_publish(settings(raw, warehouse, publish_dir))
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["published", "warehouse"]]
    return warehouse, publish_dir, event.materialization.metadata


def test_the_published_copy_has_every_mart_with_the_live_rows(run):
    warehouse, publish_dir, metadata = run
    published = publish_dir / DATABASE_FILE
    live_marts = mart_names(warehouse)
    assert set(MART_NAMES) <= set(live_marts)
    with duckdb.connect(str(published), read_only=True) as con:
        assert [n for (n,) in con.execute("select distinct schema_name from duckdb_tables()").fetchall()] == ["marts"]
        assert [n for (n,) in con.execute(
            "select table_name from duckdb_tables() order by table_name").fetchall()] == live_marts
        for name in live_marts:
            copy = con.execute(f"select * from marts.{name} order by all").fetchall()
            assert copy == rows(warehouse, f"select * from marts.{name} order by all"), name
            assert copy, f"marts.{name} is empty"
    assert metadata["tables"].value == {name: rows(warehouse, f"select count(*) from marts.{name}")[0][0] for name in live_marts}
    assert metadata["path"].value == str(published.resolve())


def test_the_published_copy_is_in_storage_version_1_4(run):
    warehouse, publish_dir, _ = run
    published = publish_dir / DATABASE_FILE
    # DuckDB's own word on the file, and the format number in its header: DuckDB 1.x reads 64-68.
    assert storage_version(published).startswith("v1.4.0")
    assert 64 <= header_version_number(published) <= 68
    # The live warehouse is DuckDB 2.0's own format, which no 1.x reader opens: the copy matters.
    assert header_version_number(warehouse) > 68


def _duckdb_1x_cli() -> Path | None:
    spec = importlib.util.find_spec("duckdb_cli")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(list(spec.submodule_search_locations)[0]) / "duckdb"
    return binary if binary.is_file() else None


def test_a_duckdb_1x_reader_opens_the_published_copy(run):
    cli = _duckdb_1x_cli()
    if cli is None:
        pytest.skip("no DuckDB 1.x reader: `pip install duckdb-cli==1.5.6` (the DuckDB 1.5 CLI) to run this check")
    warehouse, publish_dir, _ = run
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1."), version
    query = "select count(*), sum(revenue)::varchar from marts.customer_period_facts"
    output = subprocess.run(
        [str(cli), "-readonly", "-csv", "-noheader", str(publish_dir / DATABASE_FILE), "-c", query],
        capture_output=True, text=True, timeout=120,
    )
    assert output.returncode == 0, output.stderr
    count, revenue = rows(warehouse, query)[0]
    assert output.stdout.strip() == f"{count},{revenue}"
    # ...while the 2.0-format live warehouse is refused by the same reader.
    refused = subprocess.run(
        [str(cli), "-readonly", str(warehouse), "-c", "select 1"], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0 and "version number" in refused.stderr


def test_one_parquet_file_per_mart_with_the_live_rows(run):
    warehouse, publish_dir, _ = run
    for name in mart_names(warehouse):
        table = pq.read_table(publish_dir / f"{name}.parquet")
        live_count = rows(warehouse, f"select count(*) from marts.{name}")[0][0]
        live_columns = [c for (c,) in rows(warehouse, f"select column_name from (describe marts.{name})")]
        assert (table.num_rows, table.column_names) == (live_count, live_columns), name
    table = pq.read_table(publish_dir / "customer_period_facts.parquet", columns=["revenue"])
    assert sum(v for v in table.column("revenue").to_pylist() if v is not None) == rows(
        warehouse, "select sum(revenue) from marts.customer_period_facts"
    )[0][0]


def test_only_published_names_are_visible_to_readers(run):
    warehouse, publish_dir, _ = run
    visible = sorted(entry.name for entry in publish_dir.iterdir() if not entry.name.startswith("."))
    # The KPI report asset writes its pages into report/ after the publish (tests/test_kpi_report.py).
    assert visible == sorted([DATABASE_FILE, "report", *(f"{name}.parquet" for name in mart_names(warehouse))])
    assert stale_temp_files(publish_dir) == []
    assert {entry.name for entry in publish_dir.iterdir() if entry.name.startswith(".")} <= {".publish.lock"}


def test_sqlalchemy_reflects_the_published_copy(run):
    if importlib.util.find_spec("duckdb_sqlalchemy") is None:
        pytest.skip("the BI driver duckdb-sqlalchemy is not installed: `pip install duckdb-sqlalchemy==1.5.6.4`")
    import sqlalchemy as sa

    warehouse, publish_dir, _ = run
    engine = sa.create_engine(f"duckdb:///{(publish_dir / DATABASE_FILE).resolve()}?access_mode=read_only")
    try:
        inspector = sa.inspect(engine)
        assert sorted(inspector.get_table_names(schema="marts")) == sorted(mart_names(warehouse))  # order is not the contract
        columns = [column["name"] for column in inspector.get_columns("segment_clv", schema="marts")]
        assert columns == [c for (c,) in rows(warehouse, "select column_name from (describe marts.segment_clv)")]
        with engine.connect() as connection:
            table = sa.Table("segment_clv", sa.MetaData(), schema="marts", autoload_with=connection)
            total = connection.execute(
                sa.select(sa.func.sum(table.c.revenue)).where(table.c.value_segment == "total")
            ).scalar()
    finally:
        engine.dispose()
    assert total == rows(warehouse, "select sum(revenue) from marts.segment_clv where value_segment = 'total'")[0][0]


def test_publishing_on_its_own_refuses_after_a_failed_mart_check(run, tmp_path):
    """In a run Dagster skips the publish when a check fails; materialised alone (e.g. from the UI)
    it looks at the latest evaluations of the checks on the marts."""
    import dagster as dg
    from dagster_project.definitions import build_resources
    from dagster_project.runner import first_failure

    from .support import default_graph

    publish_asset = default_graph().asset("published/warehouse")
    loyalty_dbt_models = default_graph().dbt_assets

    warehouse, _, _ = run
    publish_dir = tmp_path / "published"
    publish_dir.mkdir()
    (publish_dir / DATABASE_FILE).write_bytes(b"the old copy")
    instance = dg.DagsterInstance.ephemeral()
    key = sorted(k for k in loyalty_dbt_models.check_keys if k.asset_key.path[0] == "marts")[0]
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, passed=False,
                                severity=dg.AssetCheckSeverity.ERROR)
    )
    result = dg.materialize(
        pipeline_assets(), selection=[publish_asset.key], instance=instance, raise_on_error=False,
        resources=build_resources(settings(Path("unused"), warehouse, publish_dir)),
        partition_key=AS_OF.isoformat(),
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    assert not result.success
    assert f"{key.asset_key.to_user_string()}:{key.name}" in first_failure(result)
    assert (publish_dir / DATABASE_FILE).read_bytes() == b"the old copy"

    instance.report_runless_asset_event(  # fixed and re-checked: it publishes
        dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, passed=True,
                                severity=dg.AssetCheckSeverity.ERROR)
    )
    result = dg.materialize(
        pipeline_assets(), selection=[publish_asset.key], instance=instance, raise_on_error=False,
        resources=build_resources(settings(Path("unused"), warehouse, publish_dir)),
        partition_key=AS_OF.isoformat(),
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    assert result.success
    assert rows(publish_dir / DATABASE_FILE, "select count(*) from marts.segment_clv") == rows(
        warehouse, "select count(*) from marts.segment_clv"
    )


# ----------------------------------------------------------------------------------------------
# publish_warehouse on its own
# ----------------------------------------------------------------------------------------------


def test_temp_files_of_an_interrupted_publish_are_removed_by_the_next(run, tmp_path):
    warehouse, _, _ = run
    publish_dir = tmp_path / "published"
    publish_dir.mkdir()
    stale = [temp_name(DATABASE_FILE), temp_name(DATABASE_FILE) + ".wal", temp_name("segment_clv.parquet")]
    for name in stale:
        (publish_dir / name).write_bytes(b"partial")
    kept = [".keep", "notes.txt", ".warehouse.duckdb.backup"]  # not ours: left alone
    for name in kept:
        (publish_dir / name).write_text("mine")
    assert sorted(p.name for p in stale_temp_files(publish_dir)) == sorted(stale)
    messages = []
    config = LoyaltyConfig(warehouse=str(warehouse), publish_dir=str(publish_dir))
    outcome = publish_warehouse(config, log=messages.append)
    assert sorted(outcome.removed_temp_files) == sorted(stale)
    assert any("interrupted publish" in message for message in messages)
    assert stale_temp_files(publish_dir) == []
    assert all((publish_dir / name).read_text() == "mine" for name in kept)
    assert rows(publish_dir / DATABASE_FILE, "select count(*) from marts.segment_clv") == rows(
        warehouse, "select count(*) from marts.segment_clv"
    )


def test_a_second_publish_into_the_same_folder_waits_its_turn(run, tmp_path):
    warehouse, _, _ = run
    config = LoyaltyConfig(warehouse=str(warehouse), publish_dir=str(tmp_path))
    with publish_lock(tmp_path):
        with pytest.raises(PublishError, match="another publish"):
            publish_warehouse(config)
    assert not (tmp_path / DATABASE_FILE).exists()
    publish_warehouse(config)
    assert (tmp_path / DATABASE_FILE).exists()


def test_nothing_to_publish_is_an_error_that_keeps_the_old_copy(tmp_path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    publish_dir = tmp_path / "published"
    publish_dir.mkdir()
    (publish_dir / DATABASE_FILE).write_bytes(b"the old copy")
    with pytest.raises(PublishError, match="no tables in schema marts"):
        publish_warehouse(LoyaltyConfig(warehouse=str(empty), publish_dir=str(publish_dir)))
    with pytest.raises(PublishError, match="not found"):
        publish_warehouse(LoyaltyConfig(warehouse=str(tmp_path / "missing.duckdb"), publish_dir=str(publish_dir)))
    assert (publish_dir / DATABASE_FILE).read_bytes() == b"the old copy"
    assert sorted(p.name for p in publish_dir.iterdir()) == [".publish.lock", DATABASE_FILE]


# ----------------------------------------------------------------------------------------------
# Readers during a run
# ----------------------------------------------------------------------------------------------

# A BI client in its own process: connect, query, close, over and over (plus the Parquet file),
# printing one JSON line per query, until the stop file appears; then once more, then "done"
# (a crash after it is the interpreter's exit; faulthandler prints where it happened).
READER = textwrap.dedent(
    """
    import faulthandler, json, os, sys, time
    faulthandler.enable()
    import duckdb, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
    database, parquet, stop, sql = sys.argv[1:5]
    last = False
    while True:
        last = os.path.exists(stop)
        try:
            with duckdb.connect(database, read_only=True) as con:
                state = [str(v) for v in con.execute(sql).fetchone()]
            # One open: pq.read_table(path) opens the path twice (footer, then pages), so a file
            # replaced in between would mix two versions (the reader's race, see the README).
            # No thread pool: Arrow's threads can abort the process at interpreter exit after all
            # work is done ("terminate called without an active exception", apache/arrow#34314;
            # here 3 exits in 500 on two busy cores, none in 500 without threads).
            with open(parquet, "rb") as handle:
                table = pq.read_table(pa.BufferReader(handle.read()), columns=["revenue"], use_threads=False)
            print(json.dumps({"db": state, "parquet": [table.num_rows, str(pc.sum(table.column("revenue")).as_py())]}), flush=True)
        except Exception as error:
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        if last:
            break
        time.sleep(0.05)
    print(json.dumps({"done": True}), flush=True)
    """
)


def test_readers_see_the_old_or_the_new_copy_whole_while_a_run_replaces_it(run, raw, tmp_path):
    warehouse_before, publish_before, _ = run
    raw_dir, warehouse, publish_dir = tmp_path / "raw", tmp_path / "warehouse.duckdb", tmp_path / "published"
    shutil.copytree(raw, raw_dir)
    shutil.copyfile(warehouse_before, warehouse)
    shutil.copytree(publish_before, publish_dir)
    published = publish_dir / DATABASE_FILE
    old = tuple(str(v) for v in rows(published, STATE_SQL)[0])
    old_parquet = (int(old[0]), old[1])

    # The next night brings a new customer's purchase: every mart state below is old or new.
    write_csv(raw_dir / "transactions" / "late_2026-10-30.csv", TRANSACTION_HEADER,
              [("TNEW0000001", "C9999999", "2026-10-30", "12345.67", "P0001", "web")])

    held = duckdb.connect(str(published), read_only=True)  # a dashboard's long-lived session
    held_results, held_errors, stop = [], [], threading.Event()

    def keep_querying() -> None:
        cursor = held.cursor()
        try:
            while not stop.is_set():
                try:
                    held_results.append(tuple(str(v) for v in cursor.execute(STATE_SQL).fetchone()))
                except Exception as error:  # noqa: BLE001 - recorded and asserted below
                    held_errors.append(repr(error))
                time.sleep(0.05)
        finally:
            cursor.close()

    stop_file = tmp_path / "stop"
    script = tmp_path / "reader.py"
    script.write_text(READER)
    reader = subprocess.Popen(
        [sys.executable, str(script), str(published), str(publish_dir / "customer_period_facts.parquet"),
         str(stop_file), STATE_SQL],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    thread = threading.Thread(target=keep_querying, daemon=True)
    thread.start()
    first = ""
    try:
        first = reader.stdout.readline()  # both readers are in before the run starts
        deadline = time.monotonic() + 30
        while not held_results and not held_errors and time.monotonic() < deadline:
            time.sleep(0.05)
        run_with_publish(settings(raw_dir, warehouse, publish_dir))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
        stop_file.touch()
        try:
            output, errors = reader.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            reader.kill()
            output, errors = reader.communicate()
        held.close()

    new = tuple(str(v) for v in rows(warehouse, STATE_SQL)[0])
    assert new != old and int(new[0]) == int(old[0]) + 1
    assert Decimal(new[1]) == Decimal(old[1]) + Decimal("12345.67")
    new_parquet = (int(new[0]), new[1])

    # The held session never failed and kept seeing a whole copy (the one it opened).
    assert held_errors == []
    assert held_results and set(held_results) <= {old, new}
    # Fresh connections never failed and saw the old copy, then the new one, each whole.
    lines = [json.loads(line) for line in [first, *output.splitlines()] if line.strip()]
    assert lines and lines[-1] == {"done": True}, errors  # the reader got through every query
    assert reader.returncode == 0, errors
    lines = lines[:-1]
    assert [line for line in lines if "error" in line] == []
    states = [tuple(line["db"]) for line in lines]
    assert set(states) <= {old, new}
    assert states[0] == old and states[-1] == new
    assert new not in states[: states.index(new)] and old not in states[states.index(new):]
    assert {tuple(line["parquet"]) for line in lines} <= {old_parquet, new_parquet}
    assert tuple(lines[-1]["parquet"]) == new_parquet
    # A new connection in this process (all old ones closed) sees the new data.
    assert tuple(str(v) for v in rows(published, STATE_SQL)[0]) == new

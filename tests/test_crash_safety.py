"""Crash safety: a run killed with SIGKILL during ingest, during dbt and during the publish leaves
the published marts and the exports of the last good run intact and readable, and the next run
completes without any clean-up. Plus the run log (dagster_project/run_log.py), which is what tells
the operator a night was interrupted.

The killed runs are separate ``loyalty run`` processes, whose process group is killed the moment
their output shows the stage: the ingest's "transactions/<new file>: loaded" line, dbt's first
"OK created ... model marts." line, the publish's first "publish: copied marts." line.
"""

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from dagster_project import run_log
from dagster_project.config import PROJECT_ROOT
from dagster_project.export import SEGMENT_FLAGS
from dagster_project.export.next_best_offers import NEXT_BEST_OFFERS_FILES
from dagster_project.publish import DATABASE_FILE, stale_temp_files
from dagster_project.sample_data import SAMPLE_AS_OF, generate_sample

from .support import NPS_HEADER, TRANSACTION_HEADER, write_csv
from .test_publish import run_with_publish, settings

CUSTOMERS = 20_000  # each stage lasts long enough to be killed in the middle
AS_OF = SAMPLE_AS_OF
RUN_DEADLINE_S = 300
NEW_CUSTOMER = "C9999998"
# The visible files of every export file family (segment flags, next best offers).
EXPORT_FAMILIES = (SEGMENT_FLAGS, NEXT_BEST_OFFERS_FILES)


def is_export_file(name: str) -> bool:
    return any(family.file_pattern.match(name) for family in EXPORT_FAMILIES)

@dataclasses.dataclass(frozen=True)
class Scene:
    raw: Path
    warehouse: Path
    publish_dir: Path
    export_dir: Path

    def settings(self):
        return settings(self.raw, self.warehouse, self.publish_dir, export_dir=str(self.export_dir))

    def command(self) -> list[str]:
        return [sys.executable, "-u", "-m", "dagster_project.cli", "run", "--as-of", AS_OF.isoformat(),
                "--raw-dir", str(self.raw), "--warehouse", str(self.warehouse),
                "--publish-dir", str(self.publish_dir), "--export-dir", str(self.export_dir)]


def fingerprints(database: Path | None = None, parquet_dir: Path | None = None) -> dict[str, tuple]:
    """(rows, sum of row hashes) of every mart table, from a DuckDB file or from Parquet files."""
    if database is not None:
        with duckdb.connect(str(database), read_only=True) as con:
            names = [n for (n,) in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'marts' order by 1").fetchall()]
            return {n: con.execute(f"select count(*), sum(hash(t)) from marts.{n} t").fetchone() for n in names}
    with duckdb.connect() as con:
        return {
            path.stem: con.execute(f"select count(*), sum(hash(t)) from read_parquet('{path}') t").fetchone()
            for path in sorted(parquet_dir.glob("*.parquet"))
        }


def visible_files(folder: Path) -> dict[str, str]:
    """What a reader listing the folder picks up (no hidden names), with each file's sha256."""
    return {
        entry.name: hashlib.sha256(entry.read_bytes()).hexdigest()
        for entry in sorted(folder.iterdir())
        if entry.is_file() and not entry.name.startswith(".")
    }


def published_state(scene: Scene) -> dict:
    return {
        "database": fingerprints(scene.publish_dir / DATABASE_FILE),
        "parquet": fingerprints(parquet_dir=scene.publish_dir),
        "files": visible_files(scene.publish_dir),
        "exports": visible_files(scene.export_dir) if scene.export_dir.is_dir() else {},
    }


def assert_exports_readable(export_dir: Path) -> None:
    """Every export file is complete: its manifest's sha256 and row counts match."""
    import pyarrow.parquet as pq

    files = visible_files(export_dir)
    assert all(is_export_file(name) for name in files), sorted(files)
    manifests = [name for name in files if name.endswith(".manifest.json")]
    assert manifests
    for name in manifests:
        manifest = json.loads((export_dir / name).read_text())
        for data_file, entry in manifest["files"].items():
            assert files[data_file] == entry["sha256"], data_file
            if data_file.endswith(".parquet"):
                assert pq.read_table(export_dir / data_file).num_rows == entry["rows"]


def run_and_kill(scene: Scene, trigger: str) -> list[str]:
    """Starts a run in its own process group and SIGKILLs the group when a line matches ``trigger``."""
    pattern = re.compile(trigger)
    process = subprocess.Popen(
        scene.command(), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    group = process.pid
    watchdog = threading.Timer(RUN_DEADLINE_S, lambda: os.killpg(group, signal.SIGKILL))
    watchdog.start()
    lines, killed = [], False
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if pattern.search(line):
                os.killpg(group, signal.SIGKILL)  # the run and its dbt child, at once
                killed = True
                break
    finally:
        watchdog.cancel()
        if not killed and process.poll() is None:
            os.killpg(group, signal.SIGKILL)
        process.wait()
        process.stdout.close()
    assert killed, f"the run ended before {trigger!r}; last lines:\n" + "\n".join(lines[-25:])
    assert process.returncode == -signal.SIGKILL
    # Wait until no process of the group is left (dbt's child dies with the group).
    for _ in range(100):
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return lines


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A warehouse, published copy and export from one good run on sample data; then the next
    night's files land (a new customer's purchase and NPS answer) for the runs that get killed."""
    root = tmp_path_factory.mktemp("crash")
    scene = Scene(root / "raw", root / "warehouse.duckdb", root / "published", root / "exports")
    generate_sample(scene.raw, customers=CUSTOMERS, seed=3)
    result = run_with_publish(scene.settings())
    before = published_state(scene)
    before["rows_in"] = run_log.rows_in(result)
    write_csv(scene.raw / "transactions" / "next_night.csv", TRANSACTION_HEADER,
              [("TNEXT000001", NEW_CUSTOMER, "2026-10-30", "777.00", "P0001", "web")])
    write_csv(scene.raw / "nps" / "next_night.csv", NPS_HEADER,
              [("RNEXT0001", NEW_CUSTOMER, "2026-10-31", "9", "relational", "")])
    return scene, before


def _assert_previous_copy_intact(scene: Scene, before: dict, export_done: bool = False) -> None:
    after = published_state(scene)
    assert after["database"] == before["database"]
    assert after["parquet"] == before["parquet"]
    assert after["files"] == before["files"]
    if not export_done:
        assert after["exports"] == before["exports"]
    # Old or new, every export file is whole and matches its manifest.
    assert_exports_readable(scene.export_dir)


def test_killed_during_ingest(scene):
    scene, before = scene
    run_and_kill(scene, r"transactions/next_night\.csv: loaded")
    _assert_previous_copy_intact(scene, before)


def test_killed_during_dbt(scene):
    scene, before = scene
    run_and_kill(scene, r"OK created sql \w+ model marts\.")
    _assert_previous_copy_intact(scene, before)


def test_killed_during_publish(scene):
    scene, before = scene
    lines = run_and_kill(scene, r"publish: copied marts\.")
    assert stale_temp_files(scene.publish_dir), "the kill should have left the publish's temp files"
    # The export is a sibling of the publish step: if it ran first, its new files are whole.
    export_done = any("export: writing " in line for line in lines)
    _assert_previous_copy_intact(scene, before, export_done=export_done)


def test_killed_during_export_then_the_next_run_completes_without_clean_up(scene):
    scene, before = scene
    run_and_kill(scene, r"export: writing ")
    killed = published_state(scene)["exports"]
    run_with_publish(scene.settings())
    published = published_state(scene)
    # Each export file a reader could have seen after the kill was whole: the old bytes or the new.
    for name, digest in killed.items():
        assert digest in {before["exports"].get(name), published["exports"].get(name)}, name
    assert published["database"] == fingerprints(scene.warehouse) != before["database"]
    assert published["parquet"] == published["database"]
    with duckdb.connect(str(scene.publish_dir / DATABASE_FILE), read_only=True) as con:
        assert con.execute(
            "select revenue from marts.customer_period_facts where customer_id = ? and period_index = 0", [NEW_CUSTOMER]
        ).fetchall() == [(777,)]
    # Nothing left behind that a reader could pick up, and no temp files at all.
    assert stale_temp_files(scene.publish_dir) == []
    assert sorted(published["files"]) == sorted([DATABASE_FILE, *(f"{name}.parquet" for name in published["database"])])
    assert [p.name for p in scene.publish_dir.iterdir() if p.name.endswith(".wal")] == []
    assert_exports_readable(scene.export_dir)
    runs = run_log.recent_runs(scene.warehouse, limit=10)
    assert [run["state"] for run in runs[:5]] == ["success", "interrupted", "interrupted", "interrupted", "interrupted"]


# ----------------------------------------------------------------------------------------------
# The run log
# ----------------------------------------------------------------------------------------------


def _log_rows(warehouse: Path) -> list[dict]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cursor = con.execute("select * from ops.run_log order by started_at")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_rows_in_and_failed_checks_come_from_the_run_result(scene, tmp_path):
    """What the runner hands to record_end: rows ingest took in (the good run's, here), and the
    failed checks of a run."""
    import dagster as dg

    scene, before = scene
    with duckdb.connect(str(scene.warehouse), read_only=True) as con:
        loaded = con.execute(
            "select sum(rows_read - coalesce(rows_duplicate, 0)) from raw.ingest_log"
            " where source_file not like '%next_night%' and status in ('loaded', 'replaced', 'superseded')"
        ).fetchone()[0]
    assert before["rows_in"] == loaded > CUSTOMERS

    @dg.asset
    def thing():
        return 1

    @dg.asset_check(asset=thing, blocking=True)
    def thing_is_two():
        return dg.AssetCheckResult(passed=False, description="it is 1")

    @dg.asset_check(asset=thing)
    def thing_is_odd():
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)

    result = dg.materialize([thing, thing_is_two, thing_is_odd], raise_on_error=False)
    assert run_log.failed_checks(result) == ["thing:thing_is_two"]
    assert run_log.rows_in(result) is None


def test_run_log_records_a_run_from_start_to_end(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    assert run_log.record_start(warehouse, "run-1", dt.date(2026, 10, 31))
    [row] = _log_rows(warehouse)
    assert (row["outcome"], row["as_of_date"], row["as_of_from"], row["finished_at"]) == (
        "running", dt.date(2026, 10, 31), None, None)
    assert row["pid"] == os.getpid()
    time.sleep(0.05)
    assert run_log.record_end(warehouse, "run-1", "success", rows_in=1234)
    [row] = _log_rows(warehouse)
    assert (row["outcome"], row["rows_in"], row["failed_checks"], row["failure"]) == ("success", 1234, None, None)
    assert row["finished_at"] >= row["started_at"] and row["duration_s"] >= 0.05
    assert abs((row["finished_at"] - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds()) < 60


def test_run_log_keeps_failures_to_one_line_and_ranges_as_dates(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    run_log.record_start(warehouse, "run-2", ["2026-10-30", "2026-10-28", "2026-10-29"])
    failure = "loyalty_dbt_models: Database Error\n  in model segment_clv\n" + "x" * 2000
    run_log.record_end(warehouse, "run-2", "failed", rows_in=0,
                       failed_checks=["marts/segment_clv:unique_x", "raw/transactions:raw_transactions_suite"],
                       failure=failure)
    [row] = _log_rows(warehouse)
    assert (row["as_of_from"], row["as_of_date"]) == (dt.date(2026, 10, 28), dt.date(2026, 10, 30))
    assert row["outcome"] == "failed"
    assert row["failed_checks"] == "marts/segment_clv:unique_x, raw/transactions:raw_transactions_suite"
    assert "\n" not in row["failure"] and row["failure"].startswith("loyalty_dbt_models: Database Error in model")
    assert len(row["failure"]) <= run_log.MAX_FAILURE_CHARS
    with pytest.raises(ValueError):
        run_log.record_end(warehouse, "run-2", "crashed")


def test_status_shows_the_last_runs_newest_first_and_a_killed_one_as_interrupted(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    assert run_log.status_report(warehouse).startswith("no runs recorded")
    duckdb.connect(str(warehouse)).close()
    assert run_log.status_report(warehouse).startswith("no runs recorded yet")
    run_log.record_start(warehouse, "aaaaaaaa-1", dt.date(2026, 10, 29))
    run_log.record_end(warehouse, "aaaaaaaa-1", "success", rows_in=100)
    time.sleep(0.01)
    run_log.record_start(warehouse, "bbbbbbbb-2", dt.date(2026, 10, 30))  # killed: no end
    with duckdb.connect(str(warehouse)) as con:  # ...by a process that is gone
        con.execute("update ops.run_log set pid = 2147483000 where run_id = 'bbbbbbbb-2'")
    time.sleep(0.01)
    run_log.record_start(warehouse, "cccccccc-3", dt.date(2026, 10, 30))  # this process: still running
    time.sleep(0.01)
    run_log.record_start(warehouse, "dddddddd-4", [dt.date(2026, 10, 1), dt.date(2026, 10, 31)])
    run_log.record_end(warehouse, "dddddddd-4", "failed", failed_checks=["marts/x:y"], failure="check y on marts/x failed")

    states = [(run["run_id"], run["state"]) for run in run_log.recent_runs(warehouse)]
    assert states == [("dddddddd-4", "failed"), ("cccccccc-3", "running"), ("bbbbbbbb-2", "interrupted"),
                      ("aaaaaaaa-1", "success")]
    report = run_log.status_report(warehouse)
    lines = report.splitlines()
    assert lines[0].split()[:3] == ["started", "(local)", "as"]
    assert "2026-10-01..2026-10-31" in lines[1] and "failed" in lines[1]
    assert "check y on marts/x failed; failed checks: marts/x:y" in lines[1]
    assert "interrupted" in lines[3] and "re-run the date" in lines[3]
    assert "success" in lines[4] and "100" in lines[4]
    assert lines[-1].startswith("last run: failed")
    assert len(run_log.status_report(warehouse, limit=2).splitlines()) == 1 + 2 + 2


def test_the_run_log_never_fails_a_run(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    run_log.record_start(warehouse, "run-1", dt.date(2026, 10, 31))
    holder = subprocess.Popen(  # another process holds the warehouse (as a running step would)
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(warehouse)!r}); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.warns(run_log.RunLogWarning, match="could not record the end of run run-1"):
            assert run_log.record_end(warehouse, "run-1", "success") is False
        assert run_log.status_report(warehouse).startswith("cannot read the run log now")
    finally:
        holder.kill()
        holder.wait()
    # An end without a recorded start still makes a row.
    assert run_log.record_end(warehouse, "run-9", "failed", failure="the warehouse was locked")
    assert {row["run_id"]: row["outcome"] for row in _log_rows(warehouse)} == {"run-1": "running", "run-9": "failed"}


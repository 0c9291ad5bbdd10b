"""Every failure of the `loyalty` command is one line a user can act on: for each cause, the
command (a subprocess, as a user runs it) exits with the documented code, its last stderr line
names the step and the cause, no traceback reaches the terminal (it is in the log file), and
nothing the readers see (the published copy, the export) changed."""

import datetime as dt
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from .support import TRANSACTION_HEADER, write_csv

LOYALTY = Path(sys.executable).with_name("loyalty")
AS_OF = "2024-12-31"
ROWS = [("t1", "A", "2024-03-01", "100"), ("t2", "B", "2024-05-01", "40"), ("t3", "A", "2023-06-01", "75")]


def loyalty(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_CONFIG"}
    return subprocess.run([str(LOYALTY), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A warehouse with one good night: its published copy and export are what readers see."""
    root = tmp_path_factory.mktemp("cli_failures")
    raw = root / "raw"
    write_csv(raw / "transactions" / "t.csv", TRANSACTION_HEADER[:4], ROWS)
    config = root / "loyalty.yml"
    config.write_text(yaml.safe_dump({
        "raw_dir": str(raw), "warehouse": str(root / "wh.duckdb"), "export_dir": str(root / "exports"),
        "publish_dir": str(root / "published"), "log_dir": str(root / "logs"),
    }))
    done = loyalty("run", "--config", str(config), "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, config


def readers_view(root: Path) -> dict:
    """What BI and marketing tools see: every published mart's rows and every export file's bytes."""
    view = {}
    with duckdb.connect(str(root / "published" / "warehouse.duckdb"), read_only=True) as con:
        for (table,) in con.execute("select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall():
            view[table] = con.execute(f"select * from marts.{table} order by all").fetchall()
    for file in sorted((root / "exports").iterdir()):
        view[file.name] = hashlib.sha256(file.read_bytes()).hexdigest()
    return view


def assert_one_line_failure(done: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("loyalty "), last
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    assert "(log: " in last
    return last


def clone(site, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the site (warehouse, published copy, export), for a case whose failed run
    leaves rows in the warehouse's raw tables (a failed check keeps what ingest loaded)."""
    root, config = site
    copy = tmp_path / "site"
    shutil.copytree(root, copy)
    settings = yaml.safe_load(config.read_text())
    settings = {key: str(value).replace(str(root), str(copy)) for key, value in settings.items()}
    (copy / "loyalty.yml").write_text(yaml.safe_dump(settings))
    return copy, copy / "loyalty.yml"


def test_unknown_config_key(site, tmp_path):
    root, _ = site
    before = readers_view(root)
    bad = tmp_path / "bad.yml"
    bad.write_text("perid_months: 12\n")
    done = loyalty("run", "--config", str(bad), "--as-of", AS_OF)
    assert_one_line_failure(done, 2, "unknown keys ['perid_months']", str(bad))
    assert readers_view(root) == before


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run", "--as-of", "1999-12-31"], ["as-of date 1999-12-31 is before business_start_date 2000-01-01", "set business_start_date"]),
        (["run", "--as-of", (dt.date.today() + dt.timedelta(days=5)).isoformat()], ["is in the future", "tomorrow"]),
        (["backfill", "--from", "2024-12-31", "--to", "2024-12-01"], ["the range ends (2024-12-01) before it starts (2024-12-31)"]),
    ],
    ids=["before-business-start", "future", "backwards-range"],
)
def test_a_date_the_run_cannot_have_stops_before_anything_is_written(site, args, fragments):
    root, config = site
    before = readers_view(root)
    warehouse_bytes = (root / "wh.duckdb").read_bytes()
    done = loyalty(*args, "--config", str(config))
    assert_one_line_failure(done, 2, *fragments)
    assert readers_view(root) == before
    assert (root / "wh.duckdb").read_bytes() == warehouse_bytes


def test_a_rejected_landing_file(site, tmp_path):
    root, config = clone(site, tmp_path)
    before = readers_view(root)
    (root / "raw" / "transactions" / "empty.csv").write_text(",".join(TRANSACTION_HEADER[:4]) + "\n")
    done = loyalty("run", "--config", str(config), "--as-of", AS_OF)
    assert_one_line_failure(done, 1, "raw__transactions:", "empty.csv: rejected: no data rows (header only)")
    assert readers_view(root) == before


def test_a_failed_check(site, tmp_path):
    root, config = clone(site, tmp_path)
    before = readers_view(root)
    write_csv(root / "raw" / "transactions" / "huge.csv", TRANSACTION_HEADER[:4], [("t9", "C", "2024-06-01", "50000000")])
    done = loyalty("run", "--config", str(config), "--as-of", AS_OF)
    assert_one_line_failure(done, 1, "check raw_transactions_suite on raw/transactions failed", "(amount)")
    assert readers_view(root) == before


@pytest.mark.parametrize("command", ["run", "status", "report"])
def test_a_warehouse_that_is_not_a_duckdb_file(site, tmp_path, command):
    root, config = site
    before = readers_view(root)
    fake = tmp_path / "notes.duckdb"
    fake.write_text("these are my notes, not a warehouse\n")
    args = ["--as-of", AS_OF] if command == "run" else []
    done = loyalty(command, "--config", str(config), "--warehouse", str(fake), *args)
    assert_one_line_failure(done, 2, f"warehouse {fake} is not a DuckDB database file")
    assert fake.read_text() == "these are my notes, not a warehouse\n"
    assert readers_view(root) == before


def test_a_warehouse_another_run_holds(site):
    root, config = site
    before = readers_view(root)
    with open(root / "wh.duckdb.run.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = loyalty("run", "--config", str(config), "--as-of", AS_OF)
    assert_one_line_failure(done, 3, "another run is using", "try again when it ends")
    assert readers_view(root) == before


def test_an_unwritable_export_folder(site, tmp_path):
    root, config = site
    before = readers_view(root)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = loyalty("run", "--config", str(config), "--export-dir", str(blocker / "exports"), "--as-of", AS_OF)
    assert_one_line_failure(done, 1, "exports__segment_flags:", "Not a directory")
    # The marts were built and checked: the publish (which reads the marts, not the export) may
    # swap in a copy, with the same rows; the export folder is untouched.
    assert readers_view(root) == before
    # The whole error, frames included, is in the log file the line names.
    log = root / "logs" / "loyalty.log"
    assert str(log) in done.stderr.strip().splitlines()[-1]
    text = log.read_text(encoding="utf-8")
    assert 'File "' in text and "NotADirectoryError" in text


def test_sample_and_report_fail_in_one_line_too(site, tmp_path):
    root, config = site
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = loyalty("sample", "--out", str(blocker / "raw"), "--customers", "10")
    assert_one_line_failure(done, 1, "Not a directory")
    done = loyalty("report", "--warehouse", str(tmp_path / "absent.duckdb"))
    assert_one_line_failure(done, 2, "warehouse file not found")

"""`make run` works from a fresh clone with only Python 3.11: it creates its own .venv, prepares
the dbt manifest, generates the bundled sample, runs the whole pipeline, prints the CLV table and
ends with the path of the KPI report.

Slow (a real install plus a run on the 100 000-customer sample): about 1.5 minutes."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_run_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(PROJECT), str(clone)], check=True)
    # MAKELEVEL/MAKEFLAGS from an outer `make test` would make this a sub-make that prints
    # "make[1]: Leaving directory" after the report's path; a user's `make run` is never one.
    outer = ("VIRTUAL_ENV", "DBT_", "DAGSTER_", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(outer)}
    environment["PATH"] = os.pathsep.join(p for p in environment["PATH"].split(os.pathsep) if ".venv" not in p)
    result = subprocess.run(["make", "run"], cwd=clone, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout
    assert "CLV and portfolio value, as of 2026-10-31" in output
    assert re.search(r"^\s+total\s+[\d,]+", output, re.MULTILINE)
    warehouse = clone / "data" / "warehouse.duckdb"
    assert f"warehouse file: {warehouse}" in output
    report = clone / "data" / "published" / "report" / "loyalty_report_2026-10-31.html"
    assert output.rstrip().splitlines()[-1] == f"KPI report: {report}"
    assert "Loyalty KPI report · as of 2026-10-31" in report.read_text(encoding="utf-8")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        customers, portfolio = con.execute(
            "select customers, portfolio_value from marts.segment_clv"
            " where period_index = 0 and value_segment = 'total'"
        ).fetchone()
    assert customers > 50_000 and portfolio > 0

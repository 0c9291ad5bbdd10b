"""Ingest alone, timed: the project's ``ingest_source`` for the transactions and NPS folders of a
landing copy into a fresh warehouse file, under the pipeline's DuckDB settings (memory limit,
insertion order not kept, spill folder beside the file), every statement timed; and a row-for-row
comparison of two such warehouses.

    python benchmarks/ingest_only.py run --raw-dir <raw> --warehouse /tmp/a.duckdb [--json out.json]
    python benchmarks/ingest_only.py compare /tmp/a.duckdb /tmp/b.duckdb
    python benchmarks/ingest_only.py floor --raw-dir <raw> --warehouse /tmp/f.duckdb

``floor`` is what DuckDB alone needs to land the same transaction files: its typed CSV reader
(the contract's types given, no sniffing), exact duplicate rows counted once (as benchmarks/floor.sql), the rows
written to a table in a fresh file under the same settings. It checks no rule, keeps no text, no
line numbers and no log, so it is a lower bound for ingest, not a replacement.

For an A/B against another revision, export it (``git archive <rev> | tar -x -C /tmp/base``) and
run this script with ``PYTHONPATH=/tmp/base``: ``dagster_project`` is then imported from there.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import duckdb

RAW_TABLES = ("transactions", "nps_responses", "quarantine_transactions", "quarantine_nps")


def _shape(sql: str) -> str:
    text = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r"'[^']*'", "'…'", text)[:110]


class TimingConnection:
    """Hands every statement to DuckDB and adds up its seconds per statement shape."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timings: dict):
        self._con, self._timings = con, timings

    def _note(self, sql: str, seconds: float) -> None:
        entry = self._timings.setdefault(_shape(sql), [0.0, 0])
        entry[0] += seconds
        entry[1] += 1

    def execute(self, sql, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._con.execute(sql, *args, **kwargs)
        finally:
            self._note(sql, time.perf_counter() - started)

    def executemany(self, sql, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._con.executemany(sql, *args, **kwargs)
        finally:
            self._note("executemany: " + sql, time.perf_counter() - started)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fresh_warehouse(warehouse: Path) -> dict:
    """Removes an earlier file at ``warehouse``; returns the pipeline's DuckDB settings for it
    under the default configuration (memory limit, insertion order not kept, spill folder)."""
    from dagster_project.config import LoyaltyConfig
    from dagster_project.warehouse import duckdb_settings

    for leftover in (warehouse, Path(f"{warehouse}.wal")):
        leftover.unlink(missing_ok=True)
    return duckdb_settings(LoyaltyConfig(), warehouse)


def run(raw_dir: Path, warehouse: Path, latest: str, earliest: str) -> dict:
    import dagster_project
    from dagster_project.ingest import ingest_source
    from dagster_project.raw_contract import NPS_RESPONSES, TRANSACTIONS, DateLimits

    settings = _fresh_warehouse(warehouse)
    limits = DateLimits(earliest=earliest, latest=latest)
    timings: dict = {}
    seconds: dict = {}
    cpu: dict = {}
    started = time.perf_counter()
    con = duckdb.connect(str(warehouse), config=settings)
    for source in (TRANSACTIONS, NPS_RESPONSES):
        begun, cpu_begun = time.perf_counter(), _cpu()
        outcomes = ingest_source(TimingConnection(con, timings), source, raw_dir, limits=limits)
        seconds[source.table] = round(time.perf_counter() - begun, 2)
        cpu[source.table] = round(_cpu() - cpu_begun, 2)
        seconds[f"{source.table}_files"] = [(o.source_file, o.status, o.rows_read, o.rows_loaded, o.rows_quarantined,
                                             o.rows_duplicate) for o in outcomes]
    begun = time.perf_counter()
    con.close()  # the checkpoint that writes the tables to the file
    seconds["close"] = round(time.perf_counter() - begun, 2)
    seconds["total"] = round(time.perf_counter() - started, 2)
    return {
        "code": str(Path(dagster_project.__file__).parent),
        "seconds": seconds,
        "cpu_seconds": {**cpu, "total": round(_cpu(), 2)},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "statements": sorted(((k, round(v[0], 2), v[1]) for k, v in timings.items()), key=lambda r: -r[1])[:12],
    }


def floor(raw_dir: Path, warehouse: Path) -> dict:
    from dagster_project.raw_contract import SQL_TYPES, TRANSACTIONS

    settings = _fresh_warehouse(warehouse)
    files = sorted(str(p) for p in (raw_dir / TRANSACTIONS.folder).glob("*.csv"))
    types = ", ".join(f"'{c.name}': '{SQL_TYPES[c.kind]}'" for c in TRANSACTIONS.columns)
    started, cpu_begun = time.perf_counter(), _cpu()
    con = duckdb.connect(str(warehouse), config=settings)
    con.execute(
        f"create table transactions as select distinct * from read_csv({files!r}, header = true,"
        f" columns = {{{types}}})"
    )
    rows = con.execute("select count(*) from transactions").fetchone()[0]
    con.close()
    return {"seconds": round(time.perf_counter() - started, 2), "cpu_seconds": round(_cpu() - cpu_begun, 2),
            "rows": rows, "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def compare(left: Path, right: Path) -> dict:
    """EXCEPT ALL both ways per raw table; the ingest log without its load times."""
    con = duckdb.connect()
    con.execute(f"attach '{left}' as a (read_only)")
    con.execute(f"attach '{right}' as b (read_only)")
    out = {}
    tables = [*RAW_TABLES, "ingest_log"]
    for table in tables:
        columns = "* exclude (loaded_at)" if table == "ingest_log" else "*"
        counts = []
        for x, y in (("a", "b"), ("b", "a")):
            counts.append(con.execute(
                f"select count(*) from (select {columns} from {x}.raw.{table} except all select {columns} from {y}.raw.{table})"
            ).fetchone()[0])
        rows = [con.execute(f"select count(*) from {x}.raw.{table}").fetchone()[0] for x in ("a", "b")]
        out[table] = {"rows": rows, "only_left": counts[0], "only_right": counts[1]}
    out["identical"] = all(v["only_left"] == 0 and v["only_right"] == 0 and v["rows"][0] == v["rows"][1]
                           for k, v in out.items())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--raw-dir", type=Path, required=True)
    r.add_argument("--warehouse", type=Path, required=True)
    r.add_argument("--latest", default="2026-12-01", help="the day of the run (no date after it)")
    r.add_argument("--earliest", default="2000-01-01", help="business_start_date")
    r.add_argument("--json", type=Path)
    f = sub.add_parser("floor")
    f.add_argument("--raw-dir", type=Path, required=True)
    f.add_argument("--warehouse", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("left", type=Path)
    c.add_argument("right", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        result = run(args.raw_dir, args.warehouse, args.latest, args.earliest)
    elif args.command == "floor":
        result = floor(args.raw_dir, args.warehouse)
    else:
        result = compare(args.left, args.right)
    text = json.dumps(result, indent=1)
    print(text)
    if getattr(args, "json", None):
        args.json.write_text(text)
    return 0 if result.get("identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Runs benchmarks/floor.sql in an in-memory DuckDB: ``python benchmarks/floor.py --raw-dir DIR --as-of D``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import figures  # noqa: E402
from dagster_project.config import LoyaltyConfig  # noqa: E402

FLOOR_SQL = Path(__file__).resolve().parent / "floor.sql"


def script(raw_dir: Path | str, as_of: dt.date, config: LoyaltyConfig | None = None) -> str:
    """floor.sql with its placeholders filled: the paths and dates, and the business constants
    of ``config`` (default: the default config)."""
    config = config or LoyaltyConfig()
    raw = str(Path(raw_dir).resolve()).replace("'", "''")
    values = {
        "__RAW_DIR__": raw,
        "__AS_OF__": as_of.isoformat(),
        "__PERIOD_MONTHS__": str(int(config.period_months)),
        "__CUT_SUPER__": repr(float(config.segment_cutoffs["super"])),
        "__CUT_TOP__": repr(float(config.segment_cutoffs["top"])),
        "__CUT_MIDDLE__": repr(float(config.segment_cutoffs["middle"])),
    }
    text = FLOOR_SQL.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def run_floor(raw_dir: Path | str, as_of: dt.date, *, threads: int | None = None,
              memory_limit: str | None = None) -> tuple[dict, float]:
    """(figures, seconds of SQL) for the landing folder ``raw_dir`` at ``as_of``."""
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"set threads = {int(threads)}")
        if memory_limit:
            con.execute(f"set memory_limit = '{memory_limit}'")
        started = time.perf_counter()
        con.execute(script(raw_dir, as_of))
        seconds = time.perf_counter() - started
        return figures.from_duckdb(con, "floor_flow", "floor_clv"), seconds
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", required=True)
    parser.add_argument("--as-of", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    result, seconds = run_floor(args.raw_dir, args.as_of, threads=args.threads)
    if args.out:
        figures.dump(result, args.out)
    print(json.dumps({"seconds": round(seconds, 3), **figures.summary(result)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

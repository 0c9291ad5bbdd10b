"""What a long history costs: one landing folder since 1990, run at several period lengths (and
with max_periods), each on a fresh warehouse, in one process one after another.

``python benchmarks/long_history.py --customers 20000 --out /tmp/long``; prints a Markdown table
for BENCHMARKS.md ("Long histories"): wall time of the run, of its dbt step, the periods per
as-of date and the rows of customer_period_facts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project import cli  # noqa: E402
from dagster_project.sample_data import generate_sample  # noqa: E402
from dagster_project.warehouse import connect  # noqa: E402

AS_OF = dt.date(2026, 11, 30)
START = "1990-01-01"
CASES = [(12, None), (6, None), (3, None), (1, None), (1, 24)]


def dbt_seconds(log: Path, run_id: str) -> float | None:
    """The dbt step's duration from the run's dbt log folder (run_results.json elapsed_time)."""
    targets = list((Path(__file__).resolve().parent.parent / "dbt" / "target").glob(f"loyalty_dbt_models-{run_id[:7]}-*"))
    if not targets:
        return None
    results = json.loads((targets[0] / "run_results.json").read_text())
    return round(results["elapsed_time"], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    raw = args.out / "raw"
    if not (raw / "transactions").is_dir():
        generate_sample(raw, customers=args.customers, as_of=AS_OF, years=37)
    rows = ["| period_months | max_periods | periods | customer_period_facts rows | run (s) | dbt build (s) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for months, cap in CASES:
        folder = args.out / f"p{months}_{cap or 'all'}"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "loyalty.yml"
        config.write_text(yaml.safe_dump({
            "raw_dir": str(raw), "warehouse": str(folder / "wh.duckdb"), "export_dir": str(folder / "exports"),
            "publish_dir": str(folder / "published"), "log_dir": str(folder / "logs"), "period_months": months,
            "business_start_date": START, "max_periods": cap,
        }))
        started = time.perf_counter()
        code = cli.main(["run", "--config", str(config), "--as-of", AS_OF.isoformat()])
        seconds = time.perf_counter() - started
        with connect(folder / "wh.duckdb", read_only=True) as con:
            periods = con.execute("select count(*) from intermediate.int_periods").fetchone()[0]
            facts = con.execute("select count(*) from marts.customer_period_facts").fetchone()[0]
            run_id = con.execute("select run_id from ops.run_log order by started_at desc limit 1").fetchone()[0]
        rows.append(f"| {months} | {cap or 'all'} | {periods} | {facts:,} | {seconds:.1f}{'' if code == 0 else ' (failed)'} "
                    f"| {dbt_seconds(folder, run_id)} |")
    with connect(next(args.out.glob("p12_all")) / "wh.duckdb", read_only=True) as con:
        transactions = con.execute("select count(*) from raw.transactions").fetchone()[0]
    print(f"{args.customers:,} customers, {transactions:,} transactions from {START} to {AS_OF}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`loyalty` command line: run the pipeline, generate sample data, print reports."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from .config import ConfigError, load_config, resolve_path


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from error


def cmd_run(args: argparse.Namespace) -> int:
    from .resources import LoyaltySettings
    from .runner import run_pipeline

    config = load_config(args.config).with_overrides(raw_dir=args.raw_dir, warehouse=args.warehouse)
    as_of = args.as_of or (dt.date.today() - dt.timedelta(days=1))
    if not config.raw_path.is_dir():
        print(f"loyalty run: raw folder not found: {config.raw_path}", file=sys.stderr)
        return 2
    settings = LoyaltySettings(
        config_file=str(resolve_path(args.config)) if args.config else "",
        as_of_date=as_of.isoformat(),
        raw_dir=str(config.raw_path),
        warehouse=str(config.warehouse_path),
    )
    print(f"loyalty run: as of {as_of}, raw {config.raw_path}, warehouse {config.warehouse_path}", flush=True)
    outcome = run_pipeline(settings)
    if not outcome.success:
        print(f"loyalty run failed: {outcome.failure}", file=sys.stderr)
        return 1
    print(f"loyalty run: done (run {outcome.run_id}); warehouse: {config.warehouse_path}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from . import sample_data

    summary = sample_data.generate_sample(
        resolve_path(args.out), customers=args.customers, seed=args.seed, as_of=args.as_of or sample_data.SAMPLE_AS_OF
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import clv_report, flow_report

    config = load_config(args.config).with_overrides(warehouse=args.warehouse)
    print(flow_report(config.warehouse_path, args.period))
    print()
    print(clv_report(config.warehouse_path, args.period))
    print(f"\nwarehouse file: {config.warehouse_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description="Loyalty Warehouse: customer value, flows, retention and CLV.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialise every asset for one as-of date (in-process)")
    run.add_argument("--as-of", type=_date, help="as-of date YYYY-MM-DD (default: yesterday)")
    run.add_argument("--raw-dir", help="landing folder (default: data/raw)")
    run.add_argument("--warehouse", help="DuckDB warehouse file (default: data/warehouse.duckdb)")
    run.add_argument("--config", help="YAML config file (default: loyalty.yml at the project root, if any)")
    run.set_defaults(func=cmd_run)

    sample = commands.add_parser("sample", help="generate deterministic sample landing files")
    sample.add_argument("--out", required=True, help="landing folder to write")
    sample.add_argument("--customers", type=int, default=100_000)
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument("--as-of", type=_date, help="last date of the sample (default: the bundled sample's)")
    sample.set_defaults(func=cmd_sample)

    report = commands.add_parser("report", help="print the flow matrix and the CLV/portfolio table")
    report.add_argument("--warehouse", help="DuckDB warehouse file (default: data/warehouse.duckdb)")
    report.add_argument("--config", help="YAML config file")
    report.add_argument("--period", type=int, default=0, help="period index (0 = the latest)")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"loyalty {args.command}: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"loyalty {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

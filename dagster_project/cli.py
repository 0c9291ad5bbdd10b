"""`loyalty` command line: run the pipeline, generate sample data, print reports.

Every failure is one line on stderr naming the step and the cause, and an exit code (see
EXIT_CODES and the README); the full traceback goes to the log file (``log_dir``/loyalty.log),
never to the terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from .config import (
    PROJECT_ROOT,
    ConfigError,
    LoyaltyConfig,
    RunDateError,
    check_run_dates,
    resolve_config,
    resolve_path,
    to_json,
)
from .warehouse import NotAWarehouse, check_warehouse_file

# Exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_RUN_FAILED = 1  # a step or a check failed: the line names it
EXIT_CANNOT_START = 2  # arguments, configuration, dates or files that a run cannot start with
EXIT_BUSY = 3  # another run holds the warehouse
EXIT_INTERNAL = 70  # a bug: the line says where the traceback is

LOGGER = logging.getLogger("loyalty")
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


class CannotStart(Exception):
    """A command that cannot start (exit code 2); the message is the one line to print."""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from error


def effective_config(args: argparse.Namespace) -> LoyaltyConfig:
    """The one configuration of this command: defaults < file (--config, $LOYALTY_CONFIG or
    loyalty.yml) < flags. Resolved once; every step of a run reads this object."""
    # Relative paths (flags and file alike) are taken from the project root (config.resolve_path).
    flags = {name: getattr(args, name, None) for name in ("raw_dir", "warehouse", "export_dir", "publish_dir")}
    return resolve_config(getattr(args, "config", None), **flags)


def _materialise(args: argparse.Namespace, config: LoyaltyConfig, dates: list[dt.date]) -> int:
    try:
        check_run_dates(config, dates, dt.date.today())
    except RunDateError as error:
        raise CannotStart(str(error)) from error
    if not config.raw_path.is_dir():
        raise CannotStart(f"raw folder not found: {config.raw_path} (set raw_dir in the config or --raw-dir)")
    try:
        check_warehouse_file(config.warehouse_path)
    except NotAWarehouse as error:
        raise CannotStart(str(error)) from error
    # Imported only now: a command that cannot start says so without loading Dagster and dbt.
    from .resources import LoyaltySettings
    from .runner import RunInProgress, run_pipeline

    settings = LoyaltySettings(config_json=to_json(config), as_of_date=dates[-1].isoformat())
    span = str(dates[0]) if len(dates) == 1 else f"{dates[0]} to {dates[-1]} ({len(dates)} dates, one run)"
    print(f"loyalty {args.command}: as of {span}, raw {config.raw_path}, warehouse {config.warehouse_path}", flush=True)
    try:
        outcome = run_pipeline(settings, as_of_dates=dates)
    except RunInProgress as error:
        _fail(args, str(error), config)
        return EXIT_BUSY
    if not outcome.success:
        LOGGER.error("run %s failed: %s", outcome.run_id, outcome.failure)
        _fail(args, outcome.failure or "failed", config)
        return EXIT_RUN_FAILED
    print(f"loyalty {args.command}: done (run {outcome.run_id}); warehouse: {config.warehouse_path}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, config: LoyaltyConfig) -> int:
    return _materialise(args, config, [args.as_of or (dt.date.today() - dt.timedelta(days=1))])


def cmd_backfill(args: argparse.Namespace, config: LoyaltyConfig) -> int:
    from .partitions import date_range

    try:
        dates = date_range(args.date_from, args.date_to)
    except ValueError as error:
        raise CannotStart(f"{error}: --to must not be before --from") from error
    return _materialise(args, config, dates)


def cmd_sample(args: argparse.Namespace, config: LoyaltyConfig) -> int:
    from . import sample_data

    summary = sample_data.generate_sample(
        resolve_path(args.out), customers=args.customers, seed=args.seed, as_of=args.as_of or sample_data.SAMPLE_AS_OF,
        years=args.years, campaigns=True,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _existing_warehouse(config: LoyaltyConfig) -> Path:
    """The warehouse a reading command opens: it must exist and be a DuckDB file."""
    try:
        check_warehouse_file(config.warehouse_path)
    except NotAWarehouse as error:
        raise CannotStart(str(error)) from error
    return config.warehouse_path


def cmd_report(args: argparse.Namespace, config: LoyaltyConfig) -> int:
    if args.html:
        return cmd_report_html(args, config)
    from .report import clv_report, flow_report

    if not config.warehouse_path.exists():
        raise CannotStart(f"warehouse file not found: {config.warehouse_path} (run `loyalty run` first)")
    _existing_warehouse(config)
    print(flow_report(config.warehouse_path, args.period))
    print()
    print(clv_report(config.warehouse_path, args.period))
    print(f"\nwarehouse file: {config.warehouse_path}")
    return 0


def cmd_report_html(args: argparse.Namespace, config: LoyaltyConfig) -> int:
    """The HTML KPI report of one as-of date, from the published copy (read-only)."""
    from .kpi_report.data import ReportDataError, load_report_data
    from .kpi_report.page import render_report
    from .kpi_report.publish import report_name, write_atomic
    from .publish import DATABASE_FILE

    database = config.publish_path / DATABASE_FILE
    try:
        data = load_report_data(database, args.as_of)
    except ReportDataError as error:
        raise CannotStart(str(error)) from error
    out = Path(args.out) if args.out else Path.cwd() / report_name(data.as_of)
    path = write_atomic(out.resolve(), render_report(data, config))
    print(f"report as of {data.as_of}: {path}")
    return 0


def cmd_status(args: argparse.Namespace, config: LoyaltyConfig) -> int:
    from .run_log import status_report

    _existing_warehouse(config)
    print(status_report(config.warehouse_path, args.limit))
    return 0


def cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    # The benchmark lives beside the package in the repository (benchmarks/), not in the wheel.
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        from benchmarks import bench
    except ImportError as error:
        print(f"loyalty bench: needs the repository's benchmarks/ folder ({error})", file=sys.stderr)
        return 2
    return bench.main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description="Loyalty Warehouse: customer value, flows, retention and CLV.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add_paths(command: argparse.ArgumentParser) -> None:
        command.add_argument("--raw-dir", help="landing folder (default: data/raw)")
        command.add_argument("--warehouse", help="DuckDB warehouse file (default: data/warehouse.duckdb)")
        command.add_argument("--export-dir", help="folder for the segment-flag export (default: data/exports)")
        command.add_argument("--publish-dir", help="folder for the read-only copy for BI (default: data/published)")
        command.add_argument("--config", help="YAML config file (default: loyalty.yml at the project root, if any)")

    run = commands.add_parser("run", help="materialise every asset for one as-of date (in-process)")
    run.add_argument("--as-of", type=_date, help="as-of date YYYY-MM-DD (default: yesterday)")
    add_paths(run)
    run.set_defaults(func=cmd_run)

    backfill = commands.add_parser("backfill", help="rebuild a range of as-of dates in one run (one dbt build)")
    backfill.add_argument("--from", dest="date_from", type=_date, required=True, help="first as-of date")
    backfill.add_argument("--to", dest="date_to", type=_date, required=True, help="last as-of date (inclusive)")
    add_paths(backfill)
    backfill.set_defaults(func=cmd_backfill)

    sample = commands.add_parser("sample", help="generate deterministic sample landing files")
    sample.add_argument("--out", required=True, help="landing folder to write")
    sample.add_argument("--customers", type=int, default=100_000)
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument("--as-of", type=_date, help="last date of the sample (default: the bundled sample's)")
    sample.add_argument("--years", type=int, default=4, help="years of history up to the as-of date (default 4)")
    sample.add_argument("--config", help="YAML config file (its log_dir receives the log)")
    sample.set_defaults(func=cmd_sample)

    report = commands.add_parser("report", help="print the flow matrix and the CLV/portfolio table")
    report.add_argument("--warehouse", help="DuckDB warehouse file (default: data/warehouse.duckdb)")
    report.add_argument("--config", help="YAML config file")
    report.add_argument("--period", type=int, default=0, help="period index (0 = the latest)")
    report.add_argument("--html", action="store_true", help="write the HTML KPI report from the published copy instead")
    report.add_argument("--as-of", type=_date, help="with --html: the as-of date (default: the newest in the published copy)")
    report.add_argument("--out", help="with --html: the file to write (default: ./loyalty_report_<as-of>.html)")
    report.add_argument("--publish-dir", help="with --html: the published folder (default: data/published)")
    report.set_defaults(func=cmd_report)

    status = commands.add_parser("status", help="print the last runs from the warehouse's run log")
    status.add_argument("--warehouse", help="DuckDB warehouse file (default: data/warehouse.duckdb)")
    status.add_argument("--config", help="YAML config file")
    status.add_argument("--limit", type=int, default=10, help="how many runs (newest first)")
    status.set_defaults(func=cmd_status)

    commands.add_parser(
        "bench",
        add_help=False,
        help="benchmark pipeline vs raw DuckDB vs pandas (options: loyalty bench --help), e.g. --transactions 10M",
    ).set_defaults(func=cmd_bench)
    return parser


def _fail(args: argparse.Namespace, cause: str, config: LoyaltyConfig | None) -> None:
    log = (config or LoyaltyConfig()).log_path
    print(f"loyalty {args.command} failed: {cause} (log: {log})", file=sys.stderr, flush=True)


def _log_to_file(path: Path) -> logging.Handler | None:
    """Everything at INFO and above (Dagster's step events, dbt's output, our lines, tracebacks)
    into ``path``; None when the folder cannot be written (the command still runs)."""
    from logging.handlers import RotatingFileHandler

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=20 << 20, backupCount=5, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return handler


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.command == "bench":
        return cmd_bench(args, rest)
    if rest:
        build_parser().parse_args(argv)  # reports the unknown arguments and exits 2
    # Dagster marks backfill_policy as beta; the warning says nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    # Partitioned asset checks are a Dagster preview feature we rely on knowingly (README).
    warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
    # Printed when Great Expectations imports pyspark (the spark extra); the DuckDB engine does not
    # use PySpark, and the Spark engine runs it in dbt's own process.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    config: LoyaltyConfig | None = None
    handler = None
    try:
        try:
            config = effective_config(args)
        finally:
            # The configured log folder, or the default one when the configuration itself failed.
            handler = _log_to_file((config or LoyaltyConfig()).log_path)
        LOGGER.info("loyalty %s started: %s", args.command, " ".join(sys.argv[1:] if argv is None else argv))
        return args.func(args, config)
    except (ConfigError, CannotStart) as error:
        LOGGER.error("loyalty %s: %s", args.command, error)
        _fail(args, str(error), config)
        return EXIT_CANNOT_START
    except FileNotFoundError as error:
        LOGGER.error("loyalty %s: %s", args.command, error)
        _fail(args, str(error), config)
        return EXIT_CANNOT_START
    except OSError as error:  # a file or folder the command cannot read or write (not a bug)
        LOGGER.exception("loyalty %s failed", args.command)
        _fail(args, f"{error.strerror or type(error).__name__}: {error.filename or _first_line(error)}", config)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        LOGGER.error("loyalty %s: interrupted", args.command)
        _fail(args, "interrupted", config)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for the user, the traceback in the log
        LOGGER.exception("loyalty %s failed", args.command)
        _fail(args, f"{type(error).__name__}: {_first_line(error)}", config)
        return EXIT_INTERNAL
    finally:
        if handler is not None:
            handler.close()
            logging.getLogger().removeHandler(handler)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no message"


def entry() -> None:
    """The `loyalty` command: main(), then exit without the interpreter's teardown of ~4 000
    modules (Dagster, dbt adapters, GX, pandas), which took 1.5-2.5 s after every run. Safe:
    by then every connection is closed and every file is written (durable_files) or removed."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()

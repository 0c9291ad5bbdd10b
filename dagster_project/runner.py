"""Materialises the whole asset graph in-process for one as-of date or a range (the CLI and tests use this)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import re
import sys
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import dagster as dg

from . import run_log
from .dbt_server import warm_dbt_process
from .definitions import build_asset_graph, build_resources
from .resources import LoyaltySettings

RUN_JOB = "loyalty_run"
# Dagster's events of a run: one line each on the terminal, whole (tracebacks included) in the
# command's log file (the root logger's handlers, see cli._log_to_file).
RUN_LOGGER = "loyalty.run"
QUALIFIED_ERROR = re.compile(r"^dagster_project(\.\w+)+: ")


class OneLineFormatter(logging.Formatter):
    """The first line of a record only: a step failure's traceback belongs in the log file."""

    def format(self, record: logging.LogRecord) -> str:
        text = logging.Formatter.format(self, record)
        first, _, rest = text.partition("\n")
        return first + (" [details in the log]" if rest.strip() else "")


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="Dagster's events as one line each on stderr; whole records to the Python log.",
)
def terminal_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(init_context.logger_config["log_level"].upper())
    # Not registered with logging (as Dagster's own console logger): a new one per run, its parent
    # the run logger, so whole records still reach the log file's handler on the root logger.
    logger = logging.Logger(RUN_LOGGER, level=level)
    logger.parent = logging.getLogger(RUN_LOGGER)
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(OneLineFormatter("%(asctime)s - dagster - %(levelname)s - %(message)s"))
    logger.addHandler(terminal)
    return logger


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    success: bool
    run_id: str
    failure: str | None  # one line: the failed step or check and its first error line
    result: dg.ExecuteInProcessResult | None


class RunInProgress(RuntimeError):
    """Another run holds the warehouse's run lock."""


@contextlib.contextmanager
def run_lock(warehouse: Path) -> Iterator[None]:
    """One run per warehouse at a time. The OS drops a flock when its process dies (even kill -9),
    so a crashed run never leaves a lock to clean up by hand."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with open(warehouse.with_name(warehouse.name + ".run.lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise RunInProgress(f"another run is using {warehouse} (lock {handle.name}); try again when it ends") from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_job(settings: LoyaltySettings) -> dg.JobDefinition:
    graph = build_asset_graph(settings.loyalty_config())
    return dg.Definitions(
        assets=graph.assets,
        asset_checks=graph.checks,
        jobs=[dg.define_asset_job(RUN_JOB, selection=dg.AssetSelection.all(), partitions_def=graph.partitions_def)],
        resources=build_resources(settings),
        loggers={"console": terminal_logger},
        executor=dg.in_process_executor,
    ).resolve_job_def(RUN_JOB)


def run_pipeline(
    settings: LoyaltySettings,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    as_of_dates: Sequence[dt.date] | None = None,
) -> RunOutcome:
    """One run of every asset and check; ``as_of_dates`` (a consecutive range) makes it a
    single-run backfill. The run is recorded in the warehouse's run log (``loyalty status``)."""
    dates = sorted(as_of_dates) if as_of_dates else [settings.as_of()]
    partition = (
        {"partition_key": dates[0].isoformat()}
        if len(dates) == 1
        else {"tags": {"dagster/asset_partition_range_start": dates[0].isoformat(),
                       "dagster/asset_partition_range_end": dates[-1].isoformat()}}
    )
    config = settings.loyalty_config()
    warehouse = config.warehouse_path
    run_id = str(uuid.uuid4())
    # The dbt step's process, started now so that it has imported dbt when the step comes (the
    # Spark engine's dbt process starts its own JVM session: it is started by the step, as ever).
    warm_dbt = warm_dbt_process() if config.engine == "duckdb" else contextlib.nullcontext()
    with run_lock(warehouse), warm_dbt:
        run_log.record_start(warehouse, run_id, dates)
        try:
            result = _run_job(settings).execute_in_process(
                instance=instance or dg.DagsterInstance.ephemeral(),
                raise_on_error=False,
                run_id=run_id,
                # Step and asset events at INFO; Dagster's DEBUG chatter stays out of the terminal.
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                **partition,
            )
        except BaseException as error:  # noqa: BLE001 - recorded, then re-raised
            run_log.record_end(warehouse, run_id, "failed", failure=f"{type(error).__name__}: {error}")
            raise
        failure = None if result.success else first_failure(result)
        run_log.record_end(
            warehouse,
            run_id,
            "success" if result.success else "failed",
            rows_in=run_log.rows_in(result),
            failed_checks=run_log.failed_checks(result),
            failure=failure,
        )
    return RunOutcome(result.success, run_id, failure, result)


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    failed_checks: dict[str, list[dg.AssetCheckEvaluation]] = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed and evaluation.blocking and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                failed_checks.setdefault(event.step_key, []).append(evaluation)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            # A failed blocking check fails its step: name the check and its first failed expectation.
            # (dbt tests are blocking checks of the dbt step too: the failed test is named.)
            if event.step_key in failed_checks:
                evaluation = failed_checks[event.step_key][0]
                detail = (evaluation.description or "").strip().splitlines()
                failing_rows = evaluation.metadata.get("dagster_dbt/failed_row_count")
                if not detail and failing_rows is not None:
                    detail = [f"{failing_rows.value} failing rows"]
                return (
                    f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed"
                    + (f": {detail[0]}" if detail else "")
                )
            error = event.step_failure_data.error
            # Dagster wraps user errors; the innermost cause carries the useful message.
            while error is not None and error.cause is not None and error.message.startswith("dagster._core.errors."):
                error = error.cause
            message = (error.message if error else "unknown error").strip().splitlines()
            # Our own errors say what is wrong in their message; their module path says nothing.
            first = QUALIFIED_ERROR.sub("", message[0]) if message else "failed"
            return f"{event.step_key}: {_dbt_error(message) or first}"
    return "run failed before any step ran"


DBT_ERRORS_MARKER = "Errors parsed from dbt logs:"
DBT_LOG = re.compile(r"dbt debug log: (\S+dbt\.log)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY = re.compile(r"^(\d+ of \d+ ERROR |Failure in (model|test|unit_test|snapshot|seed) )")


def _dbt_error(lines: list[str]) -> str | None:
    """dagster-dbt's error names the command; dbt's own error events say what went wrong: the
    first one (from the error, else from the run's dbt.log), on one line."""
    if DBT_ERRORS_MARKER in lines:
        details = [line for line in lines[lines.index(DBT_ERRORS_MARKER) + 1:] if line.strip()]
    else:
        match = DBT_LOG.search("\n".join(lines))
        details = _dbt_log_errors(Path(match.group(1).rstrip(".,"))) if match else []
    # dbt first logs a summary per failed node ("4 of 38 ERROR creating ...", "Failure in model
    # x"), then the error itself: a headline and its cause ("Runtime Error in model x", "Out of
    # Memory Error: ..."). The cause is what the operator needs.
    details = [ANSI.sub("", detail) for detail in details]
    causes = [detail for detail in details if not SUMMARY.match(detail.strip())] or details
    text = [line.strip() for detail in causes for line in detail.splitlines()]
    text = [line for line in text if line and line != "Encountered an error:"][:2]
    return "dbt: " + " ".join(text) if text else None


def _dbt_log_errors(log: Path) -> list[str]:
    """Messages of the error events in dbt's JSON log (stack traces left out)."""
    if not log.is_file():
        return []
    errors = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            info = json.loads(line)["info"]
        except (ValueError, KeyError, TypeError):
            continue
        if info.get("level") == "error" and info.get("name") != "MainStackTrace":
            errors.append(info.get("msg", ""))
    return errors

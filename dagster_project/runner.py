"""Materialises the whole asset graph in-process for one as-of date or a range (the CLI and tests use this)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Sequence

import dagster as dg

from .definitions import ALL_ASSETS, build_resources
from .resources import LoyaltySettings


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    success: bool
    run_id: str
    failure: str | None  # one line: the failed step or check and its first error line
    result: dg.ExecuteInProcessResult


def run_pipeline(
    settings: LoyaltySettings,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    as_of_dates: Sequence[dt.date] | None = None,
) -> RunOutcome:
    """One run; ``as_of_dates`` (a consecutive range) makes it a single-run backfill."""
    dates = sorted(as_of_dates) if as_of_dates else [settings.as_of()]
    partition = (
        {"partition_key": dates[0].isoformat()}
        if len(dates) == 1
        else {"tags": {"dagster/asset_partition_range_start": dates[0].isoformat(),
                       "dagster/asset_partition_range_end": dates[-1].isoformat()}}
    )
    result = dg.materialize(
        ALL_ASSETS,
        resources=build_resources(settings),
        instance=instance,
        raise_on_error=False,
        # Step and asset events at INFO; Dagster's DEBUG chatter stays out of the terminal.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        **partition,
    )
    return RunOutcome(result.success, result.run_id, None if result.success else first_failure(result), result)


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    failed_checks: dict[str, list[dg.AssetCheckEvaluation]] = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed and evaluation.blocking and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                failed_checks.setdefault(event.step_key, []).append(evaluation)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            # A failed blocking check fails its step: name the check and its first failed expectation.
            if event.step_key in failed_checks:
                evaluation = failed_checks[event.step_key][0]
                detail = (evaluation.description or "").strip().splitlines()
                return (
                    f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed"
                    + (f": {detail[0]}" if detail else "")
                )
            error = event.step_failure_data.error
            # Dagster wraps user errors; the innermost cause carries the useful message.
            while error is not None and error.cause is not None and "dagster._core.errors" in (error.cls_name or "") + "".join(error.stack[:1]):
                error = error.cause
            message = (error.message if error else "unknown error").strip().splitlines()
            return f"{event.step_key}: {message[0] if message else 'failed'}"
    return "run failed before any step ran"

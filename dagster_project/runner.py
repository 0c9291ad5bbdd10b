"""Materialises the whole asset graph in-process for one as-of date (the CLI and tests use this)."""

from __future__ import annotations

import dataclasses

import dagster as dg

from .definitions import ALL_ASSETS, build_resources
from .resources import LoyaltySettings


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    success: bool
    run_id: str
    failure: str | None  # one line: the failed step and its first error line
    result: dg.ExecuteInProcessResult


def run_pipeline(
    settings: LoyaltySettings, instance: dg.DagsterInstance | None = None, log_level: str = "INFO"
) -> RunOutcome:
    result = dg.materialize(
        ALL_ASSETS,
        resources=build_resources(settings),
        instance=instance,
        raise_on_error=False,
        # Step and asset events at INFO; Dagster's DEBUG chatter stays out of the terminal.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"loyalty/as_of_date": settings.as_of().isoformat()},
    )
    return RunOutcome(result.success, result.run_id, None if result.success else first_failure(result), result)


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            # Dagster wraps user errors; the innermost cause carries the useful message.
            while error is not None and error.cause is not None and "dagster._core.errors" in (error.cls_name or "") + "".join(error.stack[:1]):
                error = error.cause
            message = (error.message if error else "unknown error").strip().splitlines()
            return f"{event.step_key}: {message[0] if message else 'failed'}"
    return "run failed before any step ran"

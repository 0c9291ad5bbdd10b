"""The nightly schedule: materialise the whole graph for as-of = yesterday (in the schedule's
timezone), by default at 02:00 Europe/Stockholm."""

import datetime as dt

import dagster as dg

from .config import load_config
from .partitions import AS_OF_PARTITIONS

_CONFIG = load_config()

nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.all(),
    partitions_def=AS_OF_PARTITIONS,
    description="Every asset and check for one as-of date (a partition) or a backfilled range.",
)


def yesterday_partition(scheduled: dt.datetime) -> str:
    """The partition a run scheduled at ``scheduled`` (timezone-aware, local) computes."""
    return (scheduled.date() - dt.timedelta(days=1)).isoformat()


@dg.schedule(
    job=nightly_job,
    cron_schedule=_CONFIG.schedule_cron,
    execution_timezone=_CONFIG.schedule_timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    partition = yesterday_partition(context.scheduled_execution_time)
    # run_key: one run per night even if the daemon evaluates the tick twice.
    return dg.RunRequest(run_key=f"nightly-{partition}", partition_key=partition)

"""The nightly schedule: materialise the whole graph for as-of = yesterday (in the schedule's
timezone), by default at 02:00 Europe/Stockholm (schedule_cron / schedule_timezone)."""

import datetime as dt

import dagster as dg

from .config import LoyaltyConfig

NIGHTLY_JOB = "nightly"


def build_nightly_job(partitions_def: dg.PartitionsDefinition):
    return dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions_def,
        description="Every asset and check for one as-of date (a partition) or a backfilled range.",
    )


def yesterday_partition(scheduled: dt.datetime) -> str:
    """The partition a run scheduled at ``scheduled`` (timezone-aware, local) computes."""
    return (scheduled.date() - dt.timedelta(days=1)).isoformat()


def build_nightly_schedule(config: LoyaltyConfig, job) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        name="nightly_schedule",
        cron_schedule=config.schedule_cron,
        execution_timezone=config.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        partition = yesterday_partition(context.scheduled_execution_time)
        # run_key: one run per night even if the daemon evaluates the tick twice.
        return dg.RunRequest(run_key=f"nightly-{partition}", partition_key=partition)

    return nightly_schedule

"""The as-of date is a daily partition key: a nightly run is one partition, a backfill a range.

Every asset shares these partitions with a single-run backfill policy, so a backfill of a range
is one run with one dbt build for all its dates (the dates go to dbt through ops.run_dates).
The partitions are built from a run's effective configuration (they start at its
``business_start_date``), when the definitions are built, never at import time.
"""

import datetime as dt

import dagster as dg

from .config import LoyaltyConfig

SINGLE_RUN = dg.BackfillPolicy.single_run()


def as_of_partitions(config: LoyaltyConfig) -> dg.DailyPartitionsDefinition:
    """Every as-of date a run of ``config`` can have: from business_start_date up to tomorrow
    (today's date can be run by hand; see config.check_run_dates)."""
    return dg.DailyPartitionsDefinition(
        start_date=config.business_start_date,
        timezone=config.schedule_timezone,
        end_offset=1,
    )


def run_as_of_dates(context: dg.AssetExecutionContext, default: dt.date) -> list[dt.date]:
    """The as-of dates this run computes: its partition(s), or ``default`` when unpartitioned."""
    if context.has_partition_key_range or context.has_partition_key:
        return sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    return [default]


def date_range(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]

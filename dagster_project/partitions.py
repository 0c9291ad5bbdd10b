"""The as-of date is a daily partition key: a nightly run is one partition, a backfill a range.

Every asset shares these partitions with a single-run backfill policy, so a backfill of a range
is one run with one dbt build for all its dates (dbt gets the dates as the var as_of_dates).
"""

import datetime as dt

import dagster as dg

from .config import load_config

# Partitions start at the business start: any as-of date a run can meaningfully have.
_CONFIG = load_config()
AS_OF_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=_CONFIG.business_start_date,
    timezone=_CONFIG.schedule_timezone,
    end_offset=1,  # up to today, so "as of today" can be run by hand
)
SINGLE_RUN = dg.BackfillPolicy.single_run()


def run_as_of_dates(context: dg.AssetExecutionContext, default: dt.date) -> list[dt.date]:
    """The as-of dates this run computes: its partition(s), or ``default`` when unpartitioned."""
    if context.has_partition_key_range or context.has_partition_key:
        return sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    return [default]


def date_range(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]

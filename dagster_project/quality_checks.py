"""One blocking Dagster asset check per Great Expectations suite in ``expectations/``.

``expectations/raw.transactions.json`` becomes the check ``raw_transactions_suite`` on the asset
``raw/transactions``. Every check is blocking with ERROR severity: a failed raw suite stops the dbt
models (one multi-asset, so none of them runs), a failed mart suite stops what reads the marts.

A check reads ``<schema>.<table>`` with a short read-only DuckDB connection, closed before GX
runs (the dbt step writes next); it reads only the columns its suite names, and the same rows
whole again only when the suite fails (for whole sample rows in the metadata). Raw tables can be
tens of millions of rows: a check validates a deterministic sample of them (the RAW_SAMPLE_ROWS
rows with the lowest hash of the key, the same rows every run while the table is unchanged) and
says so in its metadata. The checks share the
as-of partitions of the assets: a mart with an ``as_of_date`` column is validated for the run's
date(s) — the slices the run just built — and a mart without one whole.
"""

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import dagster as dg
import pandas as pd

from . import quality
from .raw_contract import RAW_SOURCES
from .resources import LoyaltySettings
from .warehouse import connect, quote_identifier

# 200 000, not less: per-row cost is small now (~0.05 s of GX for 200 000 rows); a defect in a
# fraction p of the rows is missed with probability (1 - p)^n ≈ exp(-n·p): for p = 0.01 % that is
# 2e-9 at n = 200 000 but 0.7 % at 50 000, and the sample is deterministic, so a miss repeats.
RAW_SAMPLE_ROWS = 200_000
SAMPLE_MARGIN = 1.2  # the hash filter keeps ~20 % more rows than needed; the sort trims them
# Free text and contact details stay out of the check metadata (kept in Dagster's event log).
SAMPLE_ROW_EXCLUDED_COLUMNS = frozenset({"comment", "email", "extra_columns"})


def check_name(suite: str) -> str:
    return suite.replace(".", "_") + "_suite"


def asset_key(suite: str) -> dg.AssetKey:
    return dg.AssetKey(suite.split("."))


def check_names() -> list[str]:
    return [check_name(suite) for suite in quality.suite_names()]


def _sample_key(schema: str, table: str) -> list[str] | None:
    """Columns whose hash picks the raw sample: the source's key, else every contract column."""
    if schema != "raw":
        return None
    for source in RAW_SOURCES:
        if source.table == table:
            return [source.key] if source.key else source.column_names
    return None


def read_table(
    warehouse: Path,
    schema: str,
    table: str,
    sample_rows: int | None = RAW_SAMPLE_ROWS,
    as_of_dates: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, int, str]:
    """(frame, rows in the table, how the rows were chosen). Raw tables above ``sample_rows`` are
    sampled by the hash of their key; a table with an ``as_of_date`` column is read for the run's
    as-of dates (its slices) when ``as_of_dates`` is given; other tables are read whole. The frame
    holds ``columns`` (those of them the table has, in table order; every column if None or if
    none of them exists); the rows are the same either way."""
    name = f"{quote_identifier(schema)}.{quote_identifier(table)}"
    key = _sample_key(schema, table)
    with connect(warehouse, read_only=True) as con:
        total = con.execute(f"select count(*) from {name}").fetchone()[0]
        table_columns = [row[0] for row in con.execute(f"select column_name from (describe {name})").fetchall()]
        picked = [column for column in table_columns if columns is None or column in set(columns)]
        select = ", ".join(quote_identifier(column) for column in picked) if picked and columns is not None else "*"
        if key and sample_rows is not None and total > sample_rows:
            # The rows with the lowest hashes: a filter on the hash first (with a margin, so at
            # least sample_rows pass), so DuckDB sorts a few hundred thousand rows, not the table.
            hashed = f"hash({', '.join(quote_identifier(column) for column in key)})"
            threshold = min(2**64 - 1, (2**64 - 1) * math.ceil(SAMPLE_MARGIN * sample_rows) // total)
            order = ", ".join([hashed, *(quote_identifier(column) for column in key)])
            frame = con.execute(
                f"select {select} from {name} where {hashed} <= {threshold} order by {order} limit {int(sample_rows)}"
            ).df()
            return frame, total, f"deterministic sample: the {len(frame)} rows with the lowest hash({', '.join(key)})"
        if as_of_dates and "as_of_date" in table_columns:
            first, last = min(as_of_dates), max(as_of_dates)
            frame = con.execute(
                f"select {select} from {name} where as_of_date between cast(? as date) and cast(? as date)", [first, last]
            ).df()
            return frame, total, f"the run's slice: as_of_date {first}" + (f" to {last}" if last != first else "")
        frame = con.execute(f"select {select} from {name}").df()
    return frame, total, "whole table"


def run_suite(
    suite: str,
    warehouse: Path,
    parameters: Mapping[str, Any],
    sample_rows: int | None = RAW_SAMPLE_ROWS,
    as_of_dates: Sequence[str] | None = None,
) -> dg.AssetCheckResult:
    """Validates ``<schema>.<table>`` of the warehouse against the suite of the same name.

    ``parameters`` fill the suite's placeholders (quality.suite_parameters). The first pass reads only the columns the suite's expectations name (raw tables: 2 of 9, no
    strings to convert). Only if it fails, a second pass reads the same rows whole and validates
    them again, for the failed expectations' sample rows (whole rows, the issue contract)."""
    schema, table = suite.split(".")
    suite_data = quality.load_suite_dict(suite)
    columns = quality.suite_columns(suite_data)
    frame, total, chosen = read_table(warehouse, schema, table, sample_rows, as_of_dates, columns=columns or None)
    outcome = quality.validate(frame, suite_data, parameters)
    if not outcome.success and columns:
        whole, total, chosen = read_table(warehouse, schema, table, sample_rows, as_of_dates)
        detailed = quality.validate(whole, suite_data, parameters)
        if not detailed.success:  # the same rows: it fails again, now with whole sample rows
            outcome = detailed
    failed = [
        {"type": f.type, "column": f.column, "observed": f.observed, "kwargs": f.kwargs, "unexpected_values": f.unexpected_values}
        for f in outcome.failed
    ]
    sample_rows_meta = [
        {"expectation": f.summary(), **{k: v for k, v in row.items() if k not in SAMPLE_ROW_EXCLUDED_COLUMNS}}
        for f in outcome.failed
        for row in f.unexpected_rows
    ]
    metadata: dict[str, Any] = {
        "suite": f"expectations/{suite}.json",
        "table": f"{schema}.{table}",
        "rows_validated": dg.MetadataValue.int(outcome.rows),
        "rows_in_table": dg.MetadataValue.int(total),
        "rows_chosen": chosen,
        "expectations_evaluated": dg.MetadataValue.int(outcome.evaluated),
        "expectations_failed": dg.MetadataValue.int(len(outcome.failed)),
    }
    if failed:
        metadata["failed_expectations"] = dg.MetadataValue.json(failed)
        metadata["sample_rows"] = dg.MetadataValue.json(sample_rows_meta)
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.summary(),
        metadata=metadata,
    )


def build_suite_check(suite: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    raw = suite.startswith("raw.")

    @dg.asset_check(
        asset=asset_key(suite),
        name=check_name(suite),
        blocking=True,
        description=(
            f"Great Expectations suite expectations/{suite}.json"
            + (
                f" on a deterministic sample of at most {RAW_SAMPLE_ROWS} rows."
                if raw
                else " on the slice of the run's as-of date(s) (the whole table if it has no as_of_date)."
            )
        ),
        metadata={"suite": f"expectations/{suite}.json"},
        # The same as-of partitions as every asset: a run checks what it built for its date(s).
        partitions_def=partitions_def,
    )
    def _check(context: dg.AssetCheckExecutionContext, settings: LoyaltySettings) -> dg.AssetCheckResult:
        dates = context.partition_keys if context.has_partition_key or context.has_partition_key_range else None
        config = settings.loyalty_config()
        parameters = quality.suite_parameters(config, settings.today())
        result = run_suite(suite, config.warehouse_path, parameters, as_of_dates=dates)
        context.log.info(f"{check_name(suite)}: {result.description}")
        return result

    return _check


def build_quality_checks(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """One blocking check per suite in expectations/."""
    return [build_suite_check(suite, partitions_def) for suite in quality.suite_names()]

"""The report's figures, read from the marts of one DuckDB file (the published copy) into plain
pandas frames. No formatting and no charts here: only queries."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from ..config import SEGMENTS
from ..warehouse import relation_exists

SCHEMA = "marts"
# Marts the report needs; without them there is no report.
REQUIRED_MARTS = ("segment_clv", "segment_flow_matrix", "segment_retention", "value_deciles", "nps_by_segment")
# Sections that appear only when their mart exists (other features add these marts later).
OPTIONAL_SECTIONS = {
    "nps_by_flow": "NPS per flow",
    "lifecycle_kpis": "Lifecycle",
    "clv_calibration": "Predictive CLV calibration",
    "next_best_offer_summary": "Next best offer",
}


class ReportDataError(RuntimeError):
    """The marts cannot make a report (missing file, mart or as-of slice); the message says which."""


@dataclasses.dataclass(frozen=True)
class Headline:
    """One KPI of the tiles: its value now, in the previous as-of slice, and one period earlier."""

    key: str
    value: float | None
    previous_slice: float | None
    period_earlier: float | None


@dataclasses.dataclass(frozen=True)
class ReportData:
    as_of: dt.date
    previous_as_of: dt.date | None  # the newest earlier slice in the marts, if any
    as_of_dates: tuple[dt.date, ...]  # every slice the marts keep
    headlines: tuple[Headline, ...]
    clv: pd.DataFrame  # segment_clv, period 0, segments in order then total
    flows: pd.DataFrame  # segment_flow_matrix, period 0
    deciles: pd.DataFrame  # value_deciles, period 0
    retention: pd.DataFrame  # segment_retention, every period pair of the slice
    retention_trend: pd.DataFrame  # segment_retention, period 0 of every slice
    nps_segments: pd.DataFrame  # nps_by_segment, every period of the slice
    nps_flows: pd.DataFrame | None  # nps_by_flow, period 0 (None: no such mart)
    lifecycle: pd.DataFrame | None  # lifecycle_kpis of the slice (None: no mart or no slice)
    optional: dict[str, pd.DataFrame]  # other optional marts present: name -> rows of the slice


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _segment_order(column: str = "value_segment") -> str:
    cases = " ".join(f"when '{name}' then {rank}" for rank, name in enumerate(SEGMENTS, start=1))
    return f"case {column} {cases} else {len(SEGMENTS) + 1} end"


def available_as_of_dates(database: Path) -> list[dt.date]:
    """The as-of slices of segment_clv in the file, oldest first."""
    with _connect(database) as con:
        return [row[0] for row in con.execute(f"select distinct as_of_date from {SCHEMA}.segment_clv order by 1").fetchall()]


def _connect(database: Path) -> duckdb.DuckDBPyConnection:
    if not Path(database).exists():
        raise ReportDataError(f"published warehouse not found: {database} (run the pipeline first)")
    return duckdb.connect(str(database), read_only=True)


def _scalar(frame: pd.DataFrame, column: str, **where) -> float | None:
    rows = frame
    for key, value in where.items():
        rows = rows[rows[key] == value]
    if rows.empty or pd.isna(rows.iloc[0][column]):
        return None
    return float(rows.iloc[0][column])


def _headline_values(con: duckdb.DuckDBPyConnection, as_of: dt.date, period_index: int) -> dict[str, float | None]:
    clv = _frame(
        con,
        f"select customers, revenue, portfolio_value from {SCHEMA}.segment_clv"
        " where as_of_date = ? and period_index = ? and value_segment = 'total'",
        [as_of, period_index],
    )
    retention = _frame(
        con,
        f"select retention_rate from {SCHEMA}.segment_retention"
        " where as_of_date = ? and period_index = ? and value_segment = 'total'",
        [as_of, period_index],
    )
    nps = _frame(
        con,
        f"select nps from {SCHEMA}.nps_by_segment where as_of_date = ? and period_index = ? and value_segment = 'total'",
        [as_of, period_index],
    )
    return {
        "customers": _scalar(clv, "customers"),
        "revenue": _scalar(clv, "revenue"),
        "retention": _scalar(retention, "retention_rate"),
        "portfolio": _scalar(clv, "portfolio_value"),
        "nps": _scalar(nps, "nps"),
    }


HEADLINE_KEYS = ("customers", "revenue", "retention", "portfolio", "nps")


def load_report_data(database: Path, as_of: dt.date | None = None) -> ReportData:
    """Every figure of the report of ``as_of`` (default: the newest slice) from ``database``."""
    with _connect(database) as con:
        missing = [name for name in REQUIRED_MARTS if not relation_exists(con, SCHEMA, name)]
        if missing:
            raise ReportDataError(f"{database}: marts missing for the report: {', '.join(missing)}")
        dates = [row[0] for row in con.execute(f"select distinct as_of_date from {SCHEMA}.segment_clv order by 1").fetchall()]
        if not dates:
            raise ReportDataError(f"{database}: segment_clv is empty (the data covers fewer than two periods)")
        as_of = as_of or dates[-1]
        if as_of not in dates:
            raise ReportDataError(
                f"{database}: no slice as of {as_of} in segment_clv (slices: {dates[0]} … {dates[-1]}, {len(dates)} dates)"
            )
        earlier = [date for date in dates if date < as_of]
        previous_as_of = earlier[-1] if earlier else None

        now = _headline_values(con, as_of, 0)
        before = _headline_values(con, previous_as_of, 0) if previous_as_of else {}
        period_earlier = _headline_values(con, as_of, 1)
        headlines = tuple(
            Headline(key, now[key], before.get(key), period_earlier[key]) for key in HEADLINE_KEYS
        )
        order = _segment_order()
        clv = _frame(
            con, f"select * from {SCHEMA}.segment_clv where as_of_date = ? and period_index = 0 order by {order}", [as_of]
        )
        flows = _frame(con, f"select * from {SCHEMA}.segment_flow_matrix where as_of_date = ? and period_index = 0", [as_of])
        deciles = _frame(
            con,
            f"select * from {SCHEMA}.value_deciles where as_of_date = ? and period_index = 0 order by value_decile",
            [as_of],
        )
        retention = _frame(
            con,
            f"select * from {SCHEMA}.segment_retention where as_of_date = ? order by period_index desc, {order}",
            [as_of],
        )
        retention_trend = _frame(
            con,
            f"select * from {SCHEMA}.segment_retention where period_index = 0 and as_of_date <= ?"
            f" order by as_of_date, {order}",
            [as_of],
        )
        nps_segments = _frame(
            con,
            f"select * from {SCHEMA}.nps_by_segment where as_of_date = ? order by period_index, {order}",
            [as_of],
        )
        nps_flows = (
            _frame(con, f"select * from {SCHEMA}.nps_by_flow where as_of_date = ? and period_index = 0", [as_of])
            if relation_exists(con, SCHEMA, "nps_by_flow")
            else None
        )
        lifecycle = None
        if relation_exists(con, SCHEMA, "lifecycle_kpis"):
            lifecycle = _frame(
                con,
                f"select * from {SCHEMA}.lifecycle_kpis where as_of_date = ? order by stage_order, segment_order",
                [as_of],
            )
            if lifecycle.empty:
                lifecycle = None  # a backfilled older date has no lifecycle slice
        optional = {}
        for name in OPTIONAL_SECTIONS:
            if name in ("nps_by_flow", "lifecycle_kpis") or not relation_exists(con, SCHEMA, name):
                continue
            columns = {row[0] for row in con.execute(f"describe {SCHEMA}.{name}").fetchall()}
            frame = (
                _frame(con, f"select * from {SCHEMA}.{name} where as_of_date = ?", [as_of])
                if "as_of_date" in columns
                else _frame(con, f"select * from {SCHEMA}.{name}")  # not sliced by date: all of it
            )
            if not frame.empty:
                optional[name] = frame
    return ReportData(
        as_of=as_of,
        previous_as_of=previous_as_of,
        as_of_dates=tuple(dates),
        headlines=headlines,
        clv=clv,
        flows=flows,
        deciles=deciles,
        retention=retention,
        retention_trend=retention_trend,
        nps_segments=nps_segments,
        nps_flows=nps_flows,
        lifecycle=lifecycle,
        optional=optional,
    )

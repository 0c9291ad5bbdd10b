"""The figures the three ways must agree on, in one plain format, and how they are compared.

``flow``: (period_index, from_segment, to_segment, flow) → {customers, purchases, revenue, revenue_per_customer}
``clv``:  (period_index, value_segment) → {customers, purchases, revenue, purchases_per_customer,
          revenue_per_purchase, revenue_per_customer, duration_years, clv, clv_index, retention_rate,
          portfolio_value}
Segments are None for the empty side of new/recovered/lost cells. Values are float or None.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

FLOW_KEY = ("period_index", "from_segment", "to_segment", "flow")
FLOW_VALUES = ("customers", "purchases", "revenue", "revenue_per_customer")
CLV_KEY = ("period_index", "value_segment")
CLV_VALUES = (
    "customers", "purchases", "revenue", "purchases_per_customer", "revenue_per_purchase",
    "revenue_per_customer", "duration_years", "clv", "clv_index", "retention_rate", "portfolio_value",
)
FLOW_SQL = f"select {', '.join(FLOW_KEY + FLOW_VALUES)} from {{table}}"
CLV_SQL = f"select {', '.join(CLV_KEY + CLV_VALUES)} from {{table}}"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    value = float(value)
    return None if math.isnan(value) else value


def _none_if_nan(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def from_rows(flow_rows: Iterable[tuple], clv_rows: Iterable[tuple]) -> dict:
    """Rows in FLOW_SQL / CLV_SQL column order → the figures dict."""
    flow = {}
    for row in flow_rows:
        key = (int(row[0]), *(_none_if_nan(v) for v in row[1:4]))
        flow[key] = {name: _number(v) for name, v in zip(FLOW_VALUES, row[4:])}
    clv = {}
    for row in clv_rows:
        clv[(int(row[0]), row[1])] = {name: _number(v) for name, v in zip(CLV_VALUES, row[2:])}
    return {"flow": flow, "clv": clv}


def from_duckdb(con, flow_table: str, clv_table: str, as_of=None) -> dict:
    """The figures of two tables; with ``as_of``, only their rows of that as_of_date (the marts keep
    one slice per as-of date)."""
    where = "" if as_of is None else f" where as_of_date = date '{as_of.isoformat()}'"
    return from_rows(
        con.execute(FLOW_SQL.format(table=flow_table) + where).fetchall(),
        con.execute(CLV_SQL.format(table=clv_table) + where).fetchall(),
    )


def dump(figures: dict, path: Path | str) -> None:
    data = {
        "flow": [[list(k), v] for k, v in sorted(figures["flow"].items(), key=_sort_key)],
        "clv": [[list(k), v] for k, v in sorted(figures["clv"].items(), key=_sort_key)],
    }
    Path(path).write_text(json.dumps(data))


def load(path: Path | str) -> dict:
    data = json.loads(Path(path).read_text())
    return {
        "flow": {tuple(k): v for k, v in data["flow"]},
        "clv": {tuple(k): v for k, v in data["clv"]},
    }


def _sort_key(item):
    return tuple("" if v is None else str(v) for v in item[0])


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def differences(left: dict, right: dict, *, rel: float = 1e-6, names: tuple[str, str] = ("left", "right"),
                limit: int = 20) -> list[str]:
    """Every disagreement (missing cells, values off by more than ``rel`` relative), as text."""
    out: list[str] = []
    for table in ("flow", "clv"):
        a, b = left[table], right[table]
        for key in sorted(set(a) | set(b), key=lambda k: tuple("" if v is None else str(v) for v in k)):
            if key not in a or key not in b:
                missing = names[0] if key not in a else names[1]
                out.append(f"{table} {key}: missing in {missing} (other: {a.get(key) or b.get(key)})")
                continue
            for field in a[key]:
                if not _close(a[key][field], b[key].get(field), rel):
                    out.append(f"{table} {key} {field}: {names[0]}={a[key][field]!r} {names[1]}={b[key].get(field)!r}")
    return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def summary(figures: dict, period_index: int = 0) -> dict:
    """A few headline numbers of one period (customers per flow, total CLV row) for the report."""
    flows: dict[str, int] = {}
    for (k, _, _, flow), v in figures["flow"].items():
        if k == period_index:
            flows[flow] = flows.get(flow, 0) + int(v["customers"])
    total = figures["clv"].get((period_index, "total"), {})
    return {"flows": flows, "cells": len(figures["flow"]), "clv_rows": len(figures["clv"]), "total": total}

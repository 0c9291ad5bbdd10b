"""Plain-text views of the marts for the terminal (`loyalty report`, `make run`)."""

from __future__ import annotations

from pathlib import Path

from .warehouse import connect

SEGMENT_ORDER = "case value_segment when 'super' then 1 when 'top' then 2 when 'middle' then 3 when 'bottom' then 4 else 5 end"


def _table(headers: list[str], rows: list[tuple], formats: list[str]) -> str:
    cells = [[("" if v is None else format(v, f)) for v, f in zip(row, formats)] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def clv_report(warehouse: Path, period_index: int = 0) -> str:
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(
            f"""
            select value_segment, customers, duration_years, purchases, revenue, purchases_per_customer,
                   revenue_per_purchase, revenue_per_customer, clv, clv_index, 100 * retention_rate, portfolio_value
            from marts.segment_clv where period_index = ? order by {SEGMENT_ORDER}
            """,
            [period_index],
        ).fetchall()
        as_of = con.execute("select max(as_of_date) from marts.segment_clv").fetchone()[0]
    if not rows:
        return f"No CLV figures for period {period_index}: the data covers fewer than two periods."
    headers = ["segment", "customers", "duration", "purchases", "revenue", "purch/cust", "rev/purch",
               "rev/cust/yr", "CLV", "CLV index", "retention %", "portfolio value"]
    formats = ["", ",d", ".2f", ",d", ",.0f", ".2f", ",.2f", ",.0f", ",.0f", ".1f", ".0f", ",.0f"]
    return f"CLV and portfolio value, as of {as_of} (period {period_index})\n" + _table(headers, rows, formats)


def flow_report(warehouse: Path, period_index: int = 0) -> str:
    with connect(warehouse, read_only=True) as con:
        rows = con.execute(
            """
            select coalesce(from_segment, '-'), coalesce(to_segment, '-'), flow, customers, purchases, revenue, revenue_per_customer
            from marts.segment_flow_matrix where period_index = ?
            order by case flow when 'lost' then 2 else 1 end,
                     case coalesce(to_segment, from_segment) when 'super' then 1 when 'top' then 2 when 'middle' then 3 else 4 end,
                     case flow when 'new' then 3 when 'recovered' then 2 else 1 end,
                     case from_segment when 'super' then 1 when 'top' then 2 when 'middle' then 3 else 4 end
            """,
            [period_index],
        ).fetchall()
    headers = ["from", "to", "flow", "customers", "purchases", "revenue", "rev/cust"]
    return f"Segment flows into period {period_index}\n" + _table(headers, rows, ["", "", "", ",d", ",d", ",.0f", ",.0f"])

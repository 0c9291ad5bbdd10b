"""The worked example of DOMAIN.md as raw transaction files, its expected figures, and an oracle.

``write_worked_example(raw_dir)`` writes ``raw_dir/transactions/transactions_<year>.csv`` whose
pipeline output (as of ``AS_OF`` = 2025-12-31, 12-month periods) must reproduce every figure of
DOMAIN.md's worked example: the flow matrix (S12 = 2025 vs F12 = 2024), the F12 segment line and
the CLV / portfolio table.

``EXPECTED_*`` hold the figures transcribed from DOMAIN.md, each with the number of decimals it is
displayed with, so a test compares at the displayed rounding (see ``matches_displayed``).

``reference_figures(raw_dir, as_of)`` is an independent, deliberately plain pandas implementation of
the rules (periods, value segments, flows, CLV) used as a test oracle for the data.

How the data hits the numbers
-----------------------------
* Every flow cell (from-segment → to-segment) gets an integer S12 revenue R with
  round(R / n) = the displayed revenue per customer; the cells of a to-segment sum exactly to the
  segment revenue of the CLV table (the small difference between Σ n·displayed and the segment
  revenue is spread over the cells in proportion to their size, < 0.11 SEK per customer).
* Per-customer revenues vary by a few % around the cell mean (pairs of ± offsets, so sums are
  kept); the segment bands stay far apart (super ≥ ~10 500, top 5 100–6 100, middle 1 700–2 400,
  bottom 350–440 SEK), so the ranking reproduces the segments in both periods.
* F12 (2024): for each F12 segment the lost customers' revenue totals the lost revenue shown and
  all its customers' revenue totals the F12 segment revenue; F12 purchases total the F12 line.
* The middle/bottom cut lies inside a tie, as DOMAIN.md notes. With 101 811 active customers the
  share rule gives positions ≤ 71 268 to super+top+middle, but the segment sizes need 71 269; in
  F12 (94 387 customers) ≤ 66 071 vs. 66 072 needed. The builder makes EXACTLY the two lowest
  middle customers of each period tie (positions 71 268–71 269 in S12, 66 071–66 072 in F12),
  with every bottom customer strictly below. So ``rank()`` semantics (count strictly higher) give
  the figures, while row_number or cume_dist would not (either period), nor would percent_rank
  ((rank−1)/(N−1)) in S12. The two
  tied customers of each period are paid in whole-SEK amounts so float sums tie exactly too.
* Recovered customers have a purchase in 2023 (every fifth in 2022 instead) and none in 2024;
  new customers have no transaction before 2025. Other customers partly have 2023 history too.
* A few refunds (negative amounts) are added in the same year as a purchase they offset: the
  purchase is made larger by the refunded amount, so net revenue and purchase counts are unchanged.
* Dates are spread over each year; every day of 2024 and 2025 occurs, including the period
  boundaries 2024-12-31 / 2025-01-01 and the as-of date 2025-12-31.

All figures of DOMAIN.md's worked example turned out to be mutually consistent (checked with exact
fractions: durations, retention, CLV, CLV index, portfolio values, and the cell averages admit an
integer revenue split summing to each segment revenue).
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

AS_OF = datetime.date(2025, 12, 31)

SEGMENTS = ("super", "top", "middle", "bottom")
SEGMENT_RANK = {s: i for i, s in enumerate(SEGMENTS)}  # 0 = most valuable

# --------------------------------------------------------------------------------------------
# Figures transcribed from DOMAIN.md ("The worked example" and the CLV table)
# --------------------------------------------------------------------------------------------

# Flow table as printed: to-segment → columns (from super, from top, from middle, from bottom,
# recovered, new) of (customers, purchases, revenue per customer rounded to SEK).
_FLOW_TABLE: dict[str, list[tuple[int, int, int]]] = {
    "super": [(1050, 11229, 14042), (1144, 9776, 11910), (1240, 8947, 11579),
              (295, 1895, 11390), (402, 1897, 11102), (960, 4882, 11655)],
    "top": [(1297, 7913, 5814), (2913, 16423, 5616), (4753, 23032, 5453),
            (1414, 6097, 5402), (1607, 5185, 5390), (3288, 10182, 5483)],
    "middle": [(1494, 4488, 2221), (5529, 16812, 2149), (16200, 44062, 1998),
               (7129, 17612, 1875), (8567, 15856, 1838), (11987, 21747, 1922)],
    "bottom": [(340, 519, 415), (1847, 2667, 416), (8295, 11481, 403),
               (5877, 8145, 381), (7030, 8514, 387), (7153, 8749, 402)],
}
_FLOW_COLUMNS = ("super", "top", "middle", "bottom", "recovered", "new")

# Lost row: from-segment → (customers, their F12 revenue in SEK, exact).
EXPECTED_LOST: dict[str, tuple[int, int]] = {
    "super": (539, 6_031_206),
    "top": (2725, 14_053_033),
    "middle": (16706, 29_162_765),
    "bottom": (13600, 4_878_755),
}
EXPECTED_LOST_TOTAL_CUSTOMERS = 33570


def _flow_name(from_segment: str, to_segment: str) -> str:
    if from_segment == to_segment:
        return "retained"
    return "upgraded" if SEGMENT_RANK[to_segment] < SEGMENT_RANK[from_segment] else "downgraded"


def _build_expected_flows() -> dict[tuple[str | None, str | None, str], tuple[int, int, int] | tuple[int, int]]:
    flows: dict = {}
    for to_segment, cells in _FLOW_TABLE.items():
        for column, cell in zip(_FLOW_COLUMNS, cells):
            if column in SEGMENTS:
                flows[(column, to_segment, _flow_name(column, to_segment))] = cell
            else:
                flows[(None, to_segment, column)] = cell
    for from_segment, cell in EXPECTED_LOST.items():
        flows[(from_segment, None, "lost")] = cell
    return flows


# (from_segment | None, to_segment | None, flow) →
#   gained cells: (customers, purchases in S12, S12 revenue per customer rounded to integer SEK)
#   lost cells:   (customers, their F12 revenue in SEK, exact to the SEK)
EXPECTED_FLOWS = _build_expected_flows()

# "total" column of the flow table: to-segment → (customers, purchases, revenue per customer).
EXPECTED_FLOW_TOTALS: dict[str, tuple[int, int, int]] = {
    "super": (5091, 38626, 12127),
    "top": (15272, 68832, 5510),
    "middle": (50906, 120577, 1959),
    "bottom": (30542, 40075, 396),
}

# F12 line: segment → (customers, purchases, revenue SEK exact).
EXPECTED_PREVIOUS_SEGMENTS: dict[str, tuple[int, int, int]] = {
    "super": (4720, 35239, 57_411_588),
    "top": (14158, 62949, 76_432_835),
    "middle": (47194, 111596, 88_757_383),
    "bottom": (28315, 38150, 10_566_154),
}
EXPECTED_PREVIOUS_TOTAL_CUSTOMERS = 94387
EXPECTED_CURRENT_TOTAL_CUSTOMERS = 101811

# CLV table: row → field → (displayed value, decimals displayed). Retention is in percent.
# Durations are shown with 2 decimals for super (8.76) and total (2.81) but with 1 decimal for
# top (5.2), middle (2.8) and bottom (2.1). portfolio_value is from the prose under the table.
EXPECTED_CLV: dict[str, dict[str, tuple[float, int]]] = {
    "super": {
        "customers": (5091, 0), "duration_years": (8.76, 2), "purchases": (38626, 0),
        "revenue": (61_738_655, 0), "purchases_per_customer": (7.59, 2),
        "revenue_per_purchase": (1598.37, 2), "revenue_per_customer": (12127, 0),
        "clv": (106196, 0), "clv_index": (128.8, 1), "retention_pct": (89, 0),
        "portfolio_value": (540_642_767, 0),
    },
    "top": {
        "customers": (15272, 0), "duration_years": (5.2, 1), "purchases": (68832, 0),
        "revenue": (84_147_530, 0), "purchases_per_customer": (4.51, 2),
        "revenue_per_purchase": (1222.51, 2), "revenue_per_customer": (5510, 0),
        "clv": (28627, 0), "clv_index": (34.7, 1), "retention_pct": (81, 0),
        "portfolio_value": (437_196_598, 0),
    },
    "middle": {
        "customers": (50906, 0), "duration_years": (2.8, 1), "purchases": (120577, 0),
        "revenue": (99_718_421, 0), "purchases_per_customer": (2.37, 2),
        "revenue_per_purchase": (827.01, 2), "revenue_per_customer": (1959, 0),
        "clv": (5534, 0), "clv_index": (6.7, 1), "retention_pct": (65, 0),
        "portfolio_value": (281_701_853, 0),
    },
    "bottom": {
        "customers": (30542, 0), "duration_years": (2.1, 1), "purchases": (40075, 0),
        "revenue": (12_090_788, 0), "purchases_per_customer": (1.31, 2),
        "revenue_per_purchase": (301.70, 2), "revenue_per_customer": (396, 0),
        "clv": (824, 0), "clv_index": (1.0, 1), "retention_pct": (52, 0),
        "portfolio_value": (25_172_843, 0),
    },
    # The total row shows no CLV index; its portfolio value is the sum over the segments.
    "total": {
        "customers": (101811, 0), "duration_years": (2.81, 2), "purchases": (268110, 0),
        "revenue": (257_695_394, 0), "purchases_per_customer": (2.63, 2),
        "revenue_per_purchase": (961.16, 2), "revenue_per_customer": (2531, 0),
        "clv": (7117, 0), "retention_pct": (64, 0),
        "portfolio_value": (1_284_714_061, 0),
    },
}


def matches_displayed(value: float, displayed: float, decimals: int) -> bool:
    """True when ``value`` shows as ``displayed`` at ``decimals`` decimals (half-up or half-even)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return abs(float(value) - float(displayed)) <= 0.5 * 10 ** (-decimals) + 1e-9


# --------------------------------------------------------------------------------------------
# The plan: one record per customer with its S12 / F12 revenue and purchases
# --------------------------------------------------------------------------------------------

_SPREAD = 0.05  # per-customer revenue varies by up to ±5 % around its group's mean


def _split_evenly(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + 1 if i < extra else base for i in range(n)]


def _spread(total: int, n: int) -> list[int]:
    """n positive integers summing to ``total``, varying by up to ±_SPREAD around the mean."""
    values = _split_evenly(total, n)
    width = int(total / n * _SPREAD)
    for k in range(n // 2):
        offset = (k * 7) % (width + 1)
        values[2 * k] += offset
        values[2 * k + 1] -= offset
    return values


def _tie_two_lowest(values: list[int]) -> tuple[int, int]:
    """Make exactly two entries equal to (min − 1) and all others ≥ min; keep the sum. Returns them."""
    low = min(values)
    a = values.index(low)
    b = min((i for i in range(len(values)) if i != a), key=lambda i: (values[i], i))
    taken = (values[a] - (low - 1)) + (values[b] - (low - 1))
    ordered = sorted(range(len(values)), key=lambda i: (values[i], i))
    c = next(i for i in ordered[len(values) // 2:] if i not in (a, b))
    values[a] = values[b] = low - 1
    values[c] += taken
    return a, b


def _cell_revenues(to_segment: str) -> list[int]:
    """Integer revenue per cell of a to-segment row: rounds to the displayed mean, sums exactly."""
    cells = _FLOW_TABLE[to_segment]
    segment_revenue = EXPECTED_CLV[to_segment]["revenue"][0]
    n_total = sum(n for n, _, _ in cells)
    diff = segment_revenue - sum(n * mean for n, _, mean in cells)
    revenues = [n * mean + (diff * n) // n_total for n, _, mean in cells]
    # Hand out what the floor division left, one SEK per cell, largest cells first.
    rest = segment_revenue - sum(revenues)
    order = sorted(range(len(cells)), key=lambda i: -cells[i][0])
    for j in range(abs(rest)):
        revenues[order[j % len(order)]] += 1 if rest > 0 else -1
    for (n, _, mean), revenue in zip(cells, revenues):
        if not (n * mean - n / 2 < revenue < n * mean + n / 2):
            raise AssertionError(f"{to_segment}: cell revenue {revenue} does not round to {mean} over {n}")
    return revenues


def _plan() -> list[dict]:
    """One dict per customer: flow, from/to segment, S12 and F12 revenue (SEK) and purchases."""
    customers: list[dict] = []
    for to_segment in SEGMENTS:
        for column, (n, purchases, _), revenue in zip(
            _FLOW_COLUMNS, _FLOW_TABLE[to_segment], _cell_revenues(to_segment)
        ):
            from_segment = column if column in SEGMENTS else None
            flow = _flow_name(column, to_segment) if from_segment else column
            for rev, pur in zip(_spread(revenue, n), _split_evenly(purchases, n)):
                customers.append(
                    {"flow": flow, "from": from_segment, "to": to_segment,
                     "rev0": rev, "pur0": pur, "rev1": 0, "pur1": 0, "tie": None}
                )
    for from_segment, (n, _) in EXPECTED_LOST.items():
        for _ in range(n):
            customers.append({"flow": "lost", "from": from_segment, "to": None,
                              "rev0": 0, "pur0": 0, "rev1": 0, "pur1": 0, "tie": None})

    # The S12 middle/bottom tie: the two lowest middle customers (they sit in one cell, so the
    # cell total is kept by _tie_two_lowest).
    middle = [c for c in customers if c["to"] == "middle"]
    lowest = min(middle, key=lambda c: c["rev0"])
    group = [c for c in middle if c["from"] == lowest["from"] and c["flow"] == lowest["flow"]]
    values = [c["rev0"] for c in group]
    for i in _tie_two_lowest(values):
        group[i]["tie"] = 0
    for c, v in zip(group, values):
        c["rev0"] = v

    # F12 revenue: per F12 segment, the lost customers' total and the others' total; purchases
    # over all customers of the segment.
    for segment in SEGMENTS:
        seg_customers, seg_purchases, seg_revenue = EXPECTED_PREVIOUS_SEGMENTS[segment]
        lost_customers, lost_revenue = EXPECTED_LOST[segment]
        kept = [c for c in customers if c["from"] == segment and c["flow"] != "lost"]
        lost = [c for c in customers if c["from"] == segment and c["flow"] == "lost"]
        assert len(kept) + len(lost) == seg_customers and len(lost) == lost_customers
        kept_values = _spread(seg_revenue - lost_revenue, len(kept))
        lost_values = _spread(lost_revenue, len(lost))
        if segment == "middle":  # the F12 tie: lost middle customers have the lowest F12 revenue
            assert min(lost_values) < min(kept_values)
            for i in _tie_two_lowest(lost_values):
                lost[i]["tie"] = 1
        for c, v in zip(kept + lost, kept_values + lost_values):
            c["rev1"] = v
        for c, p in zip(kept + lost, _split_evenly(seg_purchases, seg_customers)):
            c["pur1"] = p

    for c in customers:
        for rev, pur in (("rev0", "pur0"), ("rev1", "pur1")):
            if c[pur] and c[rev] < c[pur]:
                raise AssertionError("a customer has less revenue than purchases")
    return customers


# --------------------------------------------------------------------------------------------
# Writing the files
# --------------------------------------------------------------------------------------------

_CHANNELS = ("store", "web", "app")
_HEADER = "transaction_id,customer_id,transaction_date,amount,product_id,channel\n"
_ID_STRIDE = 7919  # prime, coprime with the customer count: scrambles ids over flows


def _amounts_cents(revenue_sek: int, purchases: int, whole_sek: bool) -> list[int]:
    if whole_sek:
        return [100 * v for v in _split_evenly(revenue_sek, purchases)]
    return _split_evenly(100 * revenue_sek, purchases)


def _day_numbers(year: int, seed: int, count: int) -> list[int]:
    """``count`` dates of ``year`` spread over the year, as proleptic ordinals."""
    first = datetime.date(year, 1, 1).toordinal()
    days = datetime.date(year + 1, 1, 1).toordinal() - first
    start = (seed * 53) % days
    step = days / count
    return [first + (start + int(j * step)) % days for j in range(count)]


def _format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _rows() -> tuple[list[tuple[int, int, int, int, int]], int]:
    """All transactions as (date ordinal, customer number, amount in cents, product, channel)."""
    plan = _plan()
    n_customers = len(plan)
    assert math.gcd(_ID_STRIDE, n_customers) == 1
    rows: list[tuple[int, int, int, int, int]] = []

    def add(index: int, year: int, revenue: int, purchases: int, whole: bool, refund: bool) -> None:
        customer = (index * _ID_STRIDE) % n_customers + 1
        amounts = _amounts_cents(revenue, purchases, whole)
        days = _day_numbers(year, index + year, purchases)
        year_end = datetime.date(year, 12, 31).toordinal()
        refund_cents = 2500 + (index % 7) * 1000 if refund else 0
        for j, (day, cents) in enumerate(zip(days, amounts)):
            product = (index * 31 + j * 17) % 40 + 1
            channel = (index + j) % 3
            if refund and j == 0:
                # The purchase is larger by what is later refunded: net revenue is unchanged.
                rows.append((day, customer, cents + refund_cents, product, channel))
                rows.append((min(day + 9, year_end), customer, -refund_cents, product, channel))
            else:
                rows.append((day, customer, cents, product, channel))

    for index, c in enumerate(plan):
        if c["pur0"]:
            add(index, 2025, c["rev0"], c["pur0"], c["tie"] == 0, index % 1009 == 3 and c["tie"] is None)
        if c["pur1"]:
            add(index, 2024, c["rev1"], c["pur1"], c["tie"] == 1, index % 1013 == 5 and c["tie"] is None)
        if c["flow"] == "recovered":
            # Active before F12 (2023, every fifth only in 2022), never in 2024.
            year = 2022 if index % 5 == 0 else 2023
            add(index, year, 150 + (index * 13) % 700, 1 + index % 2, False, False)
        elif c["flow"] != "new" and index % 4 == 0:
            add(index, 2023, 100 + (index * 17) % 900, 1, False, False)
    return rows, n_customers


def write_worked_example(raw_dir) -> None:
    """Write ``raw_dir/transactions/transactions_<year>.csv`` (2022–2025), byte-identical each call."""
    folder = Path(raw_dir) / "transactions"
    folder.mkdir(parents=True, exist_ok=True)
    import numpy as np

    rows, _ = _rows()
    table = np.array(rows, dtype=np.int64)
    # chronological, then by customer, amount, product, channel: a total, deterministic order
    table = table[np.lexsort(table.T[::-1])]
    iso: dict[int, str] = {}
    by_year: dict[str, list[str]] = {}
    for number, (day, customer, cents, product, channel) in enumerate(table.tolist(), start=1):
        date = iso.get(day) or iso.setdefault(day, datetime.date.fromordinal(day).isoformat())
        by_year.setdefault(date[:4], []).append(
            f"T{number:08d},C{customer:07d},{date},{_format_cents(cents)},P{product:03d},{_CHANNELS[channel]}\n"
        )
    for year, lines in sorted(by_year.items()):
        with open(folder / f"transactions_{year}.csv", "w", encoding="utf-8", newline="") as handle:
            handle.write(_HEADER)
            handle.writelines(lines)


# --------------------------------------------------------------------------------------------
# The oracle: the rules of the contract, in plain pandas
# --------------------------------------------------------------------------------------------


def _shift_months(day: datetime.date, months: int) -> datetime.date:
    """``day`` moved back by ``months`` months, clamped to the month end (Mar 31 − 1 month = Feb 28/29)."""
    total = day.year * 12 + (day.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    next_month = datetime.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - datetime.timedelta(days=1)).day
    return datetime.date(year, month, min(day.day, last_day))


def _segment_period(tx, start: str, end: str):
    """Active customers of (start, end]: revenue (cents), purchases, count_higher, segment."""
    import pandas as pd

    in_period = tx[(tx["date"] > start) & (tx["date"] <= end)]
    per_customer = in_period.groupby("customer_id").agg(
        revenue_cents=("cents", "sum"), purchases=("is_purchase", "sum")
    )
    active = per_customer[per_customer["purchases"] > 0].copy()
    n = len(active)
    # customers with strictly higher revenue = (min rank in descending order) − 1
    active["count_higher"] = active["revenue_cents"].rank(method="min", ascending=False).astype("int64") - 1
    higher = active["count_higher"]
    # share = count_higher / n compared with 5 / 20 / 70 % in exact integer arithmetic
    active["segment"] = "bottom"
    active.loc[100 * higher < 70 * n, "segment"] = "middle"
    active.loc[100 * higher < 20 * n, "segment"] = "top"
    active.loc[100 * higher < 5 * n, "segment"] = "super"
    active["purchases"] = active["purchases"].astype("int64")
    return pd.DataFrame(active)


def reference_figures(raw_dir, as_of: datetime.date = AS_OF) -> dict:
    """Flow cells, segment sizes and the CLV table computed straight from the CSV files.

    Returns a dict with
      ``current`` / ``previous``: per-customer DataFrames of periods 0 / 1 (revenue_cents,
          purchases, count_higher, segment), indexed by customer_id;
      ``current_segments`` / ``previous_segments``: segment → {customers, purchases, revenue};
      ``flows``: (from_segment | None, to_segment | None, flow) → {customers, purchases, revenue,
          revenue_per_customer}; revenue is S12 revenue, for lost cells the F12 revenue;
      ``clv``: segment | "total" → {customers, purchases, revenue, purchases_per_customer,
          revenue_per_purchase, revenue_per_customer, base, lost, retention, retention_pct,
          duration_years, clv, clv_index, portfolio_value}.
    Revenues are in SEK (floats computed from exact cent sums).
    """
    import numpy as np
    import pandas as pd

    files = sorted((Path(raw_dir) / "transactions").glob("*.csv"))
    tx = pd.concat([pd.read_csv(f, dtype=str, engine="pyarrow") for f in files], ignore_index=True)
    # ISO dates (YYYY-MM-DD, maybe followed by a time) compare correctly as text.
    tx["date"] = tx["transaction_date"].str.strip().str.slice(0, 10)
    # Amounts have at most 2 decimals: cents are exact integers (no float ties or drift).
    tx["cents"] = (tx["amount"].astype(float) * 100).round().astype("int64")
    tx["is_purchase"] = tx["cents"] > 0
    tx = tx[tx["date"] <= as_of.isoformat()]

    end0, end1, end2 = (d.isoformat() for d in (as_of, _shift_months(as_of, 12), _shift_months(as_of, 24)))
    cur = _segment_period(tx, end1, end0)
    prev = _segment_period(tx, end2, end1)
    purchased_before_prev = tx.loc[tx["is_purchase"] & (tx["date"] <= end2), "customer_id"].unique()

    def segment_totals(frame) -> dict:
        out = {}
        for seg in SEGMENTS:
            part = frame[frame["segment"] == seg]
            out[seg] = {"customers": len(part), "purchases": int(part["purchases"].sum()),
                        "revenue": int(part["revenue_cents"].sum()) / 100}
        return out

    # Flows: every customer active in period 0 or 1 falls in exactly one cell.
    gained = pd.DataFrame({
        "to_segment": cur["segment"],
        "from_segment": prev["segment"].reindex(cur.index),
        "purchases": cur["purchases"],
        "revenue_cents": cur["revenue_cents"],
    })
    from_rank = gained["from_segment"].map(SEGMENT_RANK)
    to_rank = gained["to_segment"].map(SEGMENT_RANK)
    gained["flow"] = np.select(
        [
            from_rank.notna() & (from_rank == to_rank),
            from_rank.notna() & (to_rank < from_rank),
            from_rank.notna() & (to_rank > from_rank),
            gained.index.isin(purchased_before_prev),
        ],
        ["retained", "upgraded", "downgraded", "recovered"],
        default="new",
    )
    lost_frame = prev[~prev.index.isin(cur.index)]
    lost_cells = pd.DataFrame({
        "to_segment": None,
        "from_segment": lost_frame["segment"],
        "purchases": 0,
        "revenue_cents": lost_frame["revenue_cents"],  # their F12 revenue
        "flow": "lost",
    })
    cells = (
        pd.concat([gained, lost_cells], ignore_index=True)
        .astype({"from_segment": object, "to_segment": object})
        .groupby(["from_segment", "to_segment", "flow"], dropna=False)
        .agg(customers=("flow", "size"), purchases=("purchases", "sum"), revenue_cents=("revenue_cents", "sum"))
    )
    flows: dict = {}
    for (from_segment, to_segment, flow), row in cells.iterrows():
        key = (
            from_segment if isinstance(from_segment, str) else None,
            to_segment if isinstance(to_segment, str) else None,
            flow,
        )
        flows[key] = {"customers": int(row["customers"]), "purchases": int(row["purchases"]),
                      "revenue_cents": int(row["revenue_cents"])}
    for cell in flows.values():
        cell["revenue"] = cell.pop("revenue_cents") / 100
        cell["revenue_per_customer"] = cell["revenue"] / cell["customers"]

    # CLV table
    lost_ids = prev.index.difference(cur.index)
    clv: dict = {}
    for seg in (*SEGMENTS, "total"):
        part = cur if seg == "total" else cur[cur["segment"] == seg]
        base_part = prev if seg == "total" else prev[prev["segment"] == seg]
        customers = len(part)
        purchases = int(part["purchases"].sum())
        revenue = int(part["revenue_cents"].sum()) / 100
        base = len(base_part)
        lost = int(base_part.index.isin(lost_ids).sum())
        retention = 1 - lost / base
        duration = base / lost
        revenue_per_customer = revenue / customers
        clv[seg] = {
            "customers": customers, "purchases": purchases, "revenue": revenue,
            "purchases_per_customer": purchases / customers,
            "revenue_per_purchase": revenue / purchases,
            "revenue_per_customer": revenue_per_customer,
            "base": base, "lost": lost, "retention": retention, "retention_pct": 100 * retention,
            "duration_years": duration, "clv": revenue_per_customer * duration,
            "portfolio_value": customers * revenue_per_customer * duration,
        }
    for seg in SEGMENTS:
        clv[seg]["clv_index"] = clv[seg]["clv"] / clv["bottom"]["clv"]
    clv["total"]["portfolio_value"] = sum(clv[seg]["portfolio_value"] for seg in SEGMENTS)

    return {
        "current": cur,
        "previous": prev,
        "current_segments": segment_totals(cur),
        "previous_segments": segment_totals(prev),
        "flows": flows,
        "clv": clv,
    }

"""The same figures the way an analyst would compute them in pandas: read the CSVs, drop the
duplicate rows, group, rank. ``python benchmarks/pandas_way.py --raw-dir DIR --as-of D``.

Deliberately straightforward (no chunking, no clever dtypes), with two concessions to getting the
SAME numbers as the SQL: amounts are summed as integer cents (float sums drift, and a drift of
1e-12 breaks revenue ties, which the segment rule depends on), and the share is compared as a
double exactly as the SQL does.

It holds every row in memory several times over (pyarrow strings, factorised keys during
``drop_duplicates``, the groupby): see :func:`estimated_peak_bytes` for when it stops fitting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import figures  # noqa: E402
from dagster_project.config import SEGMENTS, LoyaltyConfig  # noqa: E402

# Peak RSS per byte of transaction CSV, measured with this script on the benchmark data
# (1M: 0.45 GB peak for 44 MB of CSV; 10M: 3.0 GB for 0.46 GB). Decides whether it can run at all.
PEAK_BYTES_PER_CSV_BYTE = 6.5
BASE_BYTES = 200e6  # interpreter, pandas, pyarrow


def estimated_peak_bytes(csv_bytes: int) -> float:
    return BASE_BYTES + PEAK_BYTES_PER_CSV_BYTE * csv_bytes


def period_bounds(
    as_of: dt.date, first_date: dt.date, period_months: int, max_periods: int | None = None
) -> list[tuple[int, pd.Timestamp, pd.Timestamp]]:
    """(k, start, end) for every period back to first_date (at most max_periods); month ends
    clamp (pandas DateOffset)."""
    end_of = lambda k: (pd.Timestamp(as_of) - pd.DateOffset(months=period_months * k))  # noqa: E731
    out = []
    k = 0
    while end_of(k) >= pd.Timestamp(first_date) and (max_periods is None or k < max_periods):
        out.append((k, end_of(k + 1) + pd.Timedelta(days=1), end_of(k)))
        k += 1
    return out


TX_DTYPES = {"transaction_id": "str", "customer_id": "str", "amount": "float64", "product_id": "str",
             "channel": "str", "transaction_date": "str"}


def _read_transactions(file: Path) -> pd.DataFrame:
    if file.suffix == ".parquet":
        return pd.read_parquet(file).astype({c: t for c, t in TX_DTYPES.items()})
    return pd.read_csv(file, engine="pyarrow", dtype=TX_DTYPES)


def compute(raw_dir: Path | str, as_of: dt.date, config: LoyaltyConfig | None = None) -> dict:
    """The flows and CLV of ``config``'s periods and cut-offs (default: the default config);
    rows before its business_start_date are left out, as ingest quarantines them."""
    config = config or LoyaltyConfig()
    period_months = config.period_months
    cutoffs = [config.segment_cutoffs[name] for name in SEGMENTS[:-1]]
    start = pd.Timestamp(config.business_start_date)
    raw = Path(raw_dir)
    files = sorted([*(raw / "transactions").glob("*.csv"), *(raw / "transactions").glob("*.parquet")])
    tx = pd.concat([_read_transactions(f) for f in files], ignore_index=True)
    tx = tx.drop_duplicates()
    tx["transaction_date"] = pd.to_datetime(tx["transaction_date"].str.slice(0, 10), format="%Y-%m-%d")
    tx = tx[(tx["transaction_date"] <= pd.Timestamp(as_of)) & (tx["transaction_date"] >= start)]
    tx["cents"] = (tx["amount"] * 100).round().astype("int64")

    nps = pd.concat([pd.read_csv(f, usecols=["response_date"]) for f in sorted((raw / "nps").glob("*.csv"))]) \
        if any((raw / "nps").glob("*.csv")) else pd.DataFrame({"response_date": []})
    nps_dates = pd.to_datetime(nps["response_date"].astype(str).str.slice(0, 10), format="%Y-%m-%d")
    nps_dates = nps_dates[(nps_dates <= pd.Timestamp(as_of)) & (nps_dates >= start)]
    first = min([tx["transaction_date"].min()] + list(nps_dates.nsmallest(1)))
    periods = period_bounds(as_of, first.date(), period_months, config.max_periods)

    # Period index per row: periods are contiguous, so cut at their ends.
    ends = np.array([p[2] for p in periods][::-1], dtype="datetime64[ns]")  # ascending
    position = np.searchsorted(ends, tx["transaction_date"].to_numpy(), side="left")
    tx["period_index"] = len(periods) - 1 - position
    tx = tx[tx["transaction_date"] >= periods[-1][1]]  # older than the oldest period (max_periods): not counted

    tx["is_purchase"] = tx["cents"] > 0
    per_customer = tx.groupby(["period_index", "customer_id"]).agg(
        cents=("cents", "sum"), purchases=("is_purchase", "sum")
    ).reset_index()
    active = per_customer[per_customer["purchases"] > 0].copy()
    active["above"] = active.groupby("period_index")["cents"].rank(method="min", ascending=False) - 1
    active["n"] = active.groupby("period_index")["customer_id"].transform("size")
    share = active["above"].astype("float64") / active["n"].astype("float64")
    active["seg"] = np.select([share < cutoffs[0], share < cutoffs[1], share < cutoffs[2]], [1, 2, 3], 4)

    first_active = active.groupby("customer_id")["period_index"].max().rename("first_k")
    flow_frames = []
    for k in [p[0] for p in periods if p[0] + 1 <= periods[-1][0]]:
        cur = active[active["period_index"] == k].set_index("customer_id")
        prev = active[active["period_index"] == k + 1].set_index("customer_id")
        both = cur[["seg", "purchases", "cents"]].join(
            prev[["seg", "cents"]].rename(columns={"seg": "from_seg", "cents": "prev_cents"}), how="outer"
        ).join(first_active)
        both = both.rename(columns={"seg": "to_seg"})
        both["flow"] = np.select(
            [both["to_seg"].isna(),
             both["from_seg"].isna() & (both["first_k"] == k),
             both["from_seg"].isna(),
             both["to_seg"] == both["from_seg"],
             both["to_seg"] < both["from_seg"]],
            ["lost", "new", "recovered", "retained", "upgraded"],
            "downgraded",
        )
        both["value_cents"] = np.where(both["to_seg"].isna(), both["prev_cents"], both["cents"])
        both["purchases"] = both["purchases"].fillna(0)
        both["period_index"] = k
        flow_frames.append(both.reset_index(drop=True))
    flows = pd.concat(flow_frames, ignore_index=True)

    names = dict(enumerate(SEGMENTS, start=1))
    flow_rows = []
    cells = flows.groupby(["period_index", "from_seg", "to_seg", "flow"], dropna=False).agg(
        customers=("flow", "size"), purchases=("purchases", "sum"), cents=("value_cents", "sum")
    ).reset_index()
    for row in cells.itertuples(index=False):
        revenue = int(row.cents) / 100
        flow_rows.append((
            int(row.period_index),
            None if pd.isna(row.from_seg) else names[int(row.from_seg)],
            None if pd.isna(row.to_seg) else names[int(row.to_seg)],
            row.flow, int(row.customers), int(row.purchases), revenue, revenue / int(row.customers),
        ))

    clv_rows = []
    for k in sorted(flows["period_index"].unique()):
        f = flows[(flows["period_index"] == k) & flows["from_seg"].notna()]
        cur = active[active["period_index"] == k]
        rows = {}
        for seg in [1, 2, 3, 4, 5]:
            base_part = f if seg == 5 else f[f["from_seg"] == seg]
            part = cur if seg == 5 else cur[cur["seg"] == seg]
            base, lost = len(base_part), int((base_part["flow"] == "lost").sum())
            customers, purchases, cents = len(part), int(part["purchases"].sum()), int(part["cents"].sum())
            churn = lost / base if base else None
            duration = (period_months / 12) / churn if churn else None
            rpc = (cents / 100) / customers * 12 / period_months if customers else None
            clv = rpc * duration if rpc is not None and duration is not None else None
            rows[seg] = dict(
                customers=customers, purchases=purchases, revenue=cents / 100,
                purchases_per_customer=purchases / customers if customers else None,
                revenue_per_purchase=(cents / 100) / purchases if purchases else None,
                revenue_per_customer=rpc, duration_years=duration, clv=clv,
                retention_rate=1 - churn if churn is not None else None,
                portfolio_value=customers * clv if clv is not None else None,
            )
        bottom = rows[4]["clv"]
        for seg in [1, 2, 3, 4]:
            c = rows[seg]["clv"]
            rows[seg]["clv_index"] = c / bottom if c is not None and bottom else None
        rows[5]["clv_index"] = None
        values = [rows[s]["portfolio_value"] for s in [1, 2, 3, 4] if rows[s]["portfolio_value"] is not None]
        rows[5]["portfolio_value"] = sum(values) if values else None
        for seg, r in rows.items():
            clv_rows.append((int(k), names.get(seg, "total"), *(r[name] for name in figures.CLV_VALUES)))
    return figures.from_rows(flow_rows, clv_rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", required=True)
    parser.add_argument("--as-of", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = compute(args.raw_dir, args.as_of)
    seconds = time.perf_counter() - started
    if args.out:
        figures.dump(result, args.out)
    print(json.dumps({"seconds": round(seconds, 3), **figures.summary(result)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fast, deterministic generator of large raw landing folders for the benchmark.

Everything is generated inside DuckDB SQL (``range()`` + ``hash()``-based pseudo-randomness) and
written with ``COPY ... TO``: no row ever passes through Python, so 50 M transactions take well
under a minute on 2 cores and a few hundred MB of memory.

Layout (the project's raw input contract)::

    <cache>/<params-hash>/raw/transactions/transactions_<YYYY>_<k>.csv   one or more per year
    <cache>/<params-hash>/raw/nps/nps_responses.csv
    <cache>/<params-hash>/summary.json                                 written last: marks the cache complete

The model, per customer c (all draws are ``hash(c, seed, salt)`` mapped to [0, 1)):

* a start day: ~30 % are an existing base active from the first day of the window, the rest join
  over the window with acquisition growing 20 % a year;
* a lifetime: a mixture of short (mean ~7 months, 35 %) and long (mean ~4 years) exponentials, so
  churn is higher early on; censored at the as-of date;
* ~35 % of the customers with a long enough life pause for 12.5–19 months in the middle (they
  come back as ``recovered``);
* a purchase rate (lognormal, sigma 0.9) and a basket size (lognormal, median ~450 SEK,
  sigma 0.7, mildly correlated with the rate): spend is strongly skewed.

Each customer gets one purchase (on its start day, for customers who join inside the window) plus
a share of the remaining N − M transactions in proportion to rate × active days (exact integer split with cumulative floors, so
the total is exactly N). Dates are uniform over the active days (minus the pause) with a
seasonal acceptance step (December peak, summer dip). About 3 % of the rows are refunds
(negative amounts), about 0.5 % of the rows are written twice (exact duplicates, on top of N).
Amounts have two decimals and are never zero. Products are Zipf-like over 200 ids, channels
store/web/app ~60/25/15.

The same parameters always give the same file contents; the cache key also covers the generator
version and the DuckDB version.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb

GENERATOR_VERSION = 4
BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE = BENCH_DIR / ".cache"
U = "18446744073709551616.0"  # 2^64: hash(...) / U is uniform in [0, 1)


@dataclasses.dataclass(frozen=True)
class Params:
    transactions: int
    customers: int
    years: int = 3
    as_of: str = "2025-12-31"
    seed: int = 7
    refund_rate: float = 0.03
    duplicate_rate: float = 0.005
    nps_rate: float = 0.15  # NPS answers per customer

    def __post_init__(self) -> None:
        if self.customers < 1 or self.transactions < self.customers:
            raise ValueError("need customers >= 1 and transactions >= customers (every customer buys once)")
        dt.date.fromisoformat(self.as_of)

    @property
    def as_of_date(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of)

    @property
    def window_start(self) -> dt.date:
        a = self.as_of_date
        try:
            first = a.replace(year=a.year - self.years)
        except ValueError:  # 29 February
            first = a.replace(year=a.year - self.years, day=28)
        return first + dt.timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.as_of_date - self.window_start).days + 1

    def key(self) -> str:
        payload = json.dumps(
            {**dataclasses.asdict(self), "v": GENERATOR_VERSION, "duckdb": duckdb.__version__}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Dataset:
    params: Params
    root: Path  # the cache folder of these parameters
    summary: dict

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def as_of(self) -> dt.date:
        return self.params.as_of_date

    @property
    def csv_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.raw_dir / "transactions").glob("*.csv"))


def _u(value: str, seed: int, salt: int) -> str:
    """SQL for a uniform [0, 1) draw for (value, seed, salt). One BIGINT into hash() (a full 64-bit
    mix): DuckDB's multi-argument hash() combines weakly, hash(x, 1) and hash(x, 2) correlate."""
    return f"(hash(({value}) * 256 + {salt} + {seed * 1_099_511_627_776}) / {U})"


def _normal(a: str, b: str) -> str:
    """Box-Muller: a standard normal from two uniforms (a shifted away from 0)."""
    return f"(sqrt(-2 * ln(1 - {a})) * cos(2 * pi() * {b}))"


def customers_sql(p: Params) -> str:
    """One row per customer: start/end day (0 = first day of the window), pause, weight, first_pos, n."""
    s = p.seed
    d = p.days
    growth = 0.18232155679395462  # ln(1.2) per year
    span_years = p.years
    return f"""
    with base as (
        select range as c,
            {_u('range', s, 1)} as u_base, {_u('range', s, 2)} as u_join,
            {_u('range', s, 3)} as u_mix, {_u('range', s, 4)} as u_life,
            {_u('range', s, 5)} as u_pause, {_u('range', s, 6)} as u_pause_at, {_u('range', s, 7)} as u_pause_len,
            {_normal(_u('range', s, 8), _u('range', s, 9))} as z_rate,
            {_normal(_u('range', s, 10), _u('range', s, 11))} as z_basket
        from range({p.customers})
    ),
    lives as (
        select *,
            case when u_base < 0.30 then 0
                 else least({d - 1}, cast(floor({d} * ln(1 + u_join * (exp({growth * span_years}) - 1))
                                               / {growth * span_years}) as integer))
            end as start_day,
            -- churn: short (mean 220 days) or long (mean 1500 days) lifetimes
            cast(1 + floor(-(case when u_mix < 0.35 then 220 else 1500 end) * ln(1 - u_life)) as integer) as life_days
        from base
    ),
    spans as (
        select *, least({d - 1}, start_day + life_days) - start_day + 1 as span
        from lives
    ),
    paused as (
        select *,
            case when u_pause < 0.35 and span > 530 + floor(200 * u_pause_len)
                 then cast(380 + floor(200 * u_pause_len) as integer) else 0 end as pause_len
        from spans
    ),
    weighted as (
        select c, start_day, start_day + span - 1 as end_day, pause_len,
            -- the pause starts somewhere after the first 60 days and ends before the last 30
            case when pause_len > 0 then 60 + cast(floor(u_pause_at * (span - pause_len - 90)) as integer) else 0 end
                as pause_at,
            span - pause_len as active_days,
            exp(0.9 * z_rate) as rate,
            450 * exp(0.7 * z_basket + 0.25 * z_rate) as basket,
            exp(0.9 * z_rate) * (span - pause_len) as weight
        from paused
    ),
    cumulative as (
        select *,
            sum(weight) over (order by c rows between unbounded preceding and current row) as cum_weight,
            sum(weight) over () as total_weight
        from weighted
    ),
    counted as (
        select *,
            case when c = {p.customers - 1} then {p.transactions - p.customers}
                 else cast(floor({p.transactions - p.customers} * cum_weight / total_weight) as bigint) end as cum_extra
        from cumulative
    )
    select c, start_day, end_day, pause_at, pause_len, active_days, basket,
        -- exactly N in total: one first purchase each plus the cumulative-floor share of the rest
        1 + cum_extra - coalesce(lag(cum_extra) over (order by c), 0) as n,
        c + coalesce(lag(cum_extra) over (order by c), 0) as first_pos
    from counted
    """


def transactions_sql(p: Params) -> str:
    """Every transaction row (duplicates included) with its year; ~N·(1 + duplicate_rate) rows."""
    s = p.seed
    start = p.window_start.isoformat()

    def candidate(salt: int) -> str:
        off = f"cast(floor({_u('pos', s, salt)} * active_days) as integer)"
        return f"(start_day + {off} + case when pause_len > 0 and {off} >= pause_at then pause_len else 0 end)"

    # Seasonal acceptance: a first candidate day is kept with probability season(month) / 1;
    # otherwise a second, uniform candidate is taken (December ~1.5x July).
    season = (
        "case month(date '{start}' + {day}) when 12 then 1.0 when 11 then 0.85 when 7 then 0.5 "
        "when 6 then 0.6 when 8 then 0.6 when 1 then 0.65 else 0.72 end"
    )
    return f"""
    with rows as (
        select c, start_day, end_day, pause_at, pause_len, active_days, basket, first_pos,
            unnest(range(n)) as j
        from customers
    ),
    drawn as (
        select c, first_pos + j as pos, j, basket,
            -- joiners buy on their first day; the existing base is spread like everything else
            case when j = 0 and start_day > 0 then start_day
                 when {_u('pos', s, 21)} < {season.format(start=start, day=candidate(22))} then {candidate(22)}
                 else {candidate(23)} end as day,
            {_u('pos', s, 24)} as u_refund,
            {_normal(_u('pos', s, 25), _u('pos', s, 26))} as z_amount,
            {_u('pos', s, 27)} as u_product, {_u('pos', s, 28)} as u_channel, {_u('pos', s, 29)} as u_dup
        from rows
    ),
    valued as (
        select *,
            greatest(1.0, round(basket * exp(0.45 * z_amount - 0.1), 2)) as gross,
            j > 0 and u_refund < {p.refund_rate} as is_refund
        from drawn
    )
    select
        'T' || pos as transaction_id,
        'C' || c as customer_id,
        date '{start}' + day as transaction_date,
        cast(case when is_refund then -greatest(1.0, round(gross * (0.3 + 0.7 * u_product), 2)) else gross end
             as decimal(12, 2)) as amount,
        'P' || lpad(cast(cast(1 + floor(200 * u_product * u_product) as integer) as varchar), 4, '0')
            as product_id,
        case when u_channel < 0.60 then 'store' when u_channel < 0.85 then 'web' else 'app' end as channel,
        year(date '{start}' + day) as yr,
        unnest(case when u_dup < {p.duplicate_rate} then [0, 1] else [0] end) as copy_no
    from valued
    """


def nps_sql(p: Params) -> str:
    s = p.seed
    start = p.window_start.isoformat()
    n = max(1, int(p.customers * p.nps_rate))
    return f"""
    with answers as (
        select range as r, cast(floor({_u('range', s, 41)} * {p.customers}) as bigint) as c,
            {_u('range', s, 42)} as u_day, {_u('range', s, 43)} as u_score, {_u('range', s, 44)} as u_survey
        from range({n})
    )
    select 'R' || r as response_id, 'C' || answers.c as customer_id,
        date '{start}' + start_day + cast(floor(u_day * (end_day - start_day + 1)) as integer) as response_date,
        case when u_score < 0.42 then 9 + cast(floor(u_score * 1000) as integer) % 2
             when u_score < 0.75 then 7 + cast(floor(u_score * 1000) as integer) % 2
             else cast(floor(u_score * 1000) as integer) % 7 end as score,
        case when u_survey < 0.3 then 'onboarding' else 'relational' end as survey,
        null::varchar as comment
    from answers join customers on customers.c = answers.c
    order by r
    """


def _connect(threads: int | None, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if threads:
        con.execute(f"set threads = {int(threads)}")
    if memory_limit:
        con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute("set preserve_insertion_order = false")
    return con


def generate(
    params: Params, cache_root: Path | str = DEFAULT_CACHE, *, threads: int | None = None,
    memory_limit: str | None = None, force: bool = False, quiet: bool = False,
) -> Dataset:
    """The landing folder of ``params``, generated once into the cache (reused when complete)."""
    root = Path(cache_root) / params.key()
    summary_file = root / "summary.json"
    if summary_file.exists() and not force:
        return Dataset(params, root, json.loads(summary_file.read_text()))
    if root.exists():
        shutil.rmtree(root)
    raw = root / "raw"
    work = root / "work"
    (raw / "transactions").mkdir(parents=True)
    (raw / "nps").mkdir(parents=True)
    started = time.perf_counter()
    con = _connect(threads, memory_limit)
    try:
        con.execute(f"create temp table customers as {customers_sql(params)}")
        t_customers = time.perf_counter() - started
        con.execute(
            f"copy (select * exclude (copy_no) from ({transactions_sql(params)})) to '{work}'"
            " (format csv, header true, partition_by (yr), overwrite_or_ignore true)"
        )
        t_transactions = time.perf_counter() - started - t_customers
        for part in sorted(work.glob("yr=*")):
            year = part.name.split("=", 1)[1]
            for k, file in enumerate(sorted(part.glob("*.csv"))):
                file.rename(raw / "transactions" / f"transactions_{year}_{k}.csv")
        shutil.rmtree(work)
        con.execute(f"copy ({nps_sql(params)}) to '{raw / 'nps' / 'nps_responses.csv'}' (format csv, header true)")
        active = con.execute(
            "select count(*) filter (where pause_len > 0), sum(n), max(n), median(n) from customers"
        ).fetchone()
    finally:
        con.close()
    files = sorted((raw / "transactions").glob("*.csv"))
    summary = {
        "params": dataclasses.asdict(params),
        "key": params.key(),
        "window": [params.window_start.isoformat(), params.as_of],
        "transactions": int(active[1]),
        "customers": params.customers,
        "paused_customers": int(active[0]),
        "max_transactions_per_customer": int(active[2]),
        "median_transactions_per_customer": float(active[3]),
        "files": [f.name for f in files],
        "csv_bytes": sum(f.stat().st_size for f in files),
        "seconds": round(time.perf_counter() - started, 2),
        "seconds_customers": round(t_customers, 2),
        "seconds_transactions": round(t_transactions, 2),
        "duckdb": duckdb.__version__,
        "generator_version": GENERATOR_VERSION,
    }
    tmp = summary_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, summary_file)
    if not quiet:
        print(f"generated {summary['transactions']:,} transactions ({summary['csv_bytes'] / 1e9:.2f} GB CSV) "
              f"in {summary['seconds']} s → {raw}", file=sys.stderr)
    return Dataset(params, root, summary)


def generate_day(params: Params, day: dt.date, out_file: Path | str, *, rows: int | None = None) -> Path:
    """One extra day of transactions (a new landing file) for customers still active at the as-of
    date: about N / days rows, ids that cannot collide with the main files."""
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    rows = rows or max(1, round(params.transactions / params.days))
    s = (params.seed * 7919 + day.toordinal()) % 4_000_000  # other draws for every day
    tag = day.strftime("%Y%m%d")
    con = _connect(None, None)
    try:
        con.execute(f"create temp table customers as {customers_sql(params)}")
        con.execute(f"create temp table alive as select row_number() over (order by c) - 1 as i, c, basket"
                    f" from customers where end_day = {params.days - 1}")
        alive = con.execute("select count(*) from alive").fetchone()[0] or 1
        con.execute(
            f"""
            copy (
                select 'T{tag}-' || range as transaction_id, 'C' || alive.c as customer_id,
                    date '{day.isoformat()}' as transaction_date,
                    cast(case when {_u('range', s, 63)} < {params.refund_rate}
                              then -greatest(1.0, round(basket * 0.5, 2))
                              else greatest(1.0, round(basket * (0.5 + {_u('range', s, 62)}), 2)) end
                         as decimal(12, 2)) as amount,
                    'P' || lpad(cast(cast(1 + floor(200 * pow({_u('range', s, 64)}, 2)) as integer) as varchar), 4, '0')
                        as product_id,
                    'store' as channel
                from range({rows})
                join alive on alive.i = cast(floor({_u('range', s, 61)} * {alive}) as bigint)
                order by range
            ) to '{out_file}' (format csv, header true)
            """
        )
    finally:
        con.close()
    return out_file


def parse_count(text: str) -> int:
    """'50M' → 50 000 000, '20k' → 20 000, '1.5M', '2500000'."""
    text = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    return int(round(float(number) * scale))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate (or reuse from the cache) a large raw landing folder.")
    parser.add_argument("--transactions", required=True, type=parse_count)
    parser.add_argument("--customers", type=parse_count, help="default: transactions / 20")
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--as-of", default="2025-12-31")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--force", action="store_true", help="regenerate even when cached")
    args = parser.parse_args(argv)
    params = Params(args.transactions, args.customers or max(1, args.transactions // 20),
                    years=args.years, as_of=args.as_of, seed=args.seed)
    dataset = generate(params, args.cache, threads=args.threads, force=args.force)
    print(json.dumps({"raw_dir": str(dataset.raw_dir), "as_of": params.as_of, **dataset.summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

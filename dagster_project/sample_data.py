"""Deterministic generator of realistic raw landing files for a retail loyalty programme.

The generator writes the project's raw input contract::

    <out_dir>/transactions/transactions_<YYYY>.csv       one file per calendar year ...
    <out_dir>/transactions/transactions_<YYYY>.parquet   ... except the as-of year, written as parquet
    <out_dir>/nps/nps_responses_<YYYY>.csv               one file per calendar year

Transactions columns (in this order): ``transaction_id`` (``T000000123``), ``customer_id``
(``C0001234``), ``transaction_date`` (ISO date; plain text in CSV, a DATE column in parquet),
``amount`` (2 decimals, ``.`` separator, negative = refund; in parquet a ``decimal128(12, 2)``
column, so the value is exact), ``product_id`` (``P0042``), ``channel`` (``store``/``web``/``app``).

NPS columns: ``response_id`` (``R00000123``), ``customer_id``, ``response_date`` (ISO date),
``score`` (integer 0-10), ``survey`` (``onboarding``/``relational``), ``comment`` (mostly empty;
some short Swedish/English texts, a few with commas, double quotes and å/ä/ö, CSV-quoted).

CSV files: header row, ``,`` separator, UTF-8, ``\\n`` line endings, fields quoted only when
needed. Rows are sorted by date, then id. The same arguments always give byte-identical files
(one ``numpy.random.default_rng(seed)`` stream, no wall-clock values, no pandas metadata in the
parquet file).

The simulation, in short:

* A programme that already existed when the data starts (a base of about a quarter of the
  customers, alive on the first day) plus acquisition over the whole window, growing about
  20 % a year, with a December/November peak and a summer dip.
* Every customer has a purchase rate (lognormal, median ~3 a year) and a basket size (lognormal,
  median ~550 SEK, correlated with the rate) and a lifetime with a piecewise-exponential churn
  hazard that is about 2.5 times higher in the first two years and lower for frequent buyers.
  Some lost customers come back after more than 12 months (a second spell), and infrequent
  buyers naturally skip a year, so every 12-month period has new, lost and recovered customers.
* Purchases are a seasonal Poisson process inside each spell (December peak, July low, a mild
  weekday pattern); the first purchase happens on the join day and on the come-back day.
* About 3 % of purchases get a refund row (negative, same customer/product/channel, same or a
  smaller amount, 0-30 days later, never after ``as_of``).
* ~200 products with Zipf-like popularity; channel mix store/web/app about 60/25/15.
* NPS: ~30 % of customers who join inside the window answer an onboarding survey 90-110 days
  after their first purchase; ~10 % of the customers active in a calendar year answer a
  relational survey 1-14 days after one of their purchases. Scores rise with customer value and
  fall for customers who are about to churn; overall NPS lands around +20 to +30.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

SAMPLE_AS_OF: datetime.date = datetime.date(2026, 10, 31)
DEFAULT_CUSTOMERS = 100_000
DEFAULT_SEED = 42

__all__ = ["SAMPLE_AS_OF", "DEFAULT_CUSTOMERS", "DEFAULT_SEED", "generate_sample", "main"]

# --------------------------------------------------------------------------------------------
# Model parameters (tuned so that 100 000 customers over 4 years give ~1.2 M transaction rows,
# top-20 % revenue share ~70 % and NPS ~+25).
# --------------------------------------------------------------------------------------------
_DAYS_PER_YEAR = 365.25
_BASE_SHARE = 0.25  # share of customers who were already members when the data starts
_ACQ_GROWTH = np.log(1.20)  # acquisition intensity grows 20 % a year
_RATE_MEDIAN = 4.8  # purchases per year, median customer
_RATE_SIGMA = 0.85
_RATE_MIN, _RATE_MAX = 0.3, 52.0
_BASKET_MEDIAN = 550.0  # SEK
_BASKET_SIGMA = 0.55  # between customers
_BASKET_RATE_CORR = 0.45
_TXN_SIGMA = 0.45  # within customer, per purchase
_AMOUNT_MIN, _AMOUNT_MAX = 49.0, 5000.0
_HAZARD_EARLY = 0.55  # per year, first two years of a spell (retention ~58 %)
_HAZARD_LATE = 0.22  # per year, later (retention ~80 %)
_EARLY_YEARS = 2.0
_HAZARD_RATE_ELASTICITY = -0.35  # frequent buyers churn less
_RETURN_PROB = 0.55  # a churned customer comes back
_RETURN_GAP_MIN_DAYS = 370
_RETURN_GAP_MEAN_EXTRA_DAYS = 150.0
_RETURN_RATE_FACTOR = 0.75
_DORMANT_PROB = 0.15  # a first spell with a pause of more than a year in it
_DORMANT_GAP_MIN_DAYS = 370
_DORMANT_GAP_MEAN_EXTRA_DAYS = 120.0
_N_PRODUCTS = 200
_CHANNELS = ("store", "web", "app")
_CHANNEL_MIX = np.array([0.60, 0.25, 0.15])
_CHANNEL_LOYALTY = 0.70  # share of a customer's purchases in their primary channel
_REFUND_PROB = np.array([0.02, 0.05, 0.04])  # by channel -> ~3 % overall
_REFUND_FULL_SHARE = 0.65
_REFUND_MAX_LAG_DAYS = 30
_ONBOARDING_PROB = 0.30
_ONBOARDING_LAG_DAYS = (90, 110)
_RELATIONAL_PROB = 0.10
_RELATIONAL_LAG_DAYS = (1, 14)

# Month-of-year multipliers (index 0 = January) for purchase frequency and acquisition.
_MONTH_FREQ = np.array([0.95, 0.85, 0.95, 1.00, 1.05, 0.85, 0.70, 0.85, 1.00, 1.00, 1.25, 1.60])
_MONTH_BASKET = np.array([0.95, 1.00, 1.00, 1.00, 1.00, 0.97, 0.93, 0.97, 1.00, 1.00, 1.05, 1.15])
_WEEKDAY_FREQ = np.array([0.90, 0.90, 0.95, 1.00, 1.10, 1.25, 0.90])  # Monday..Sunday

_COMMENTS_PROMOTER = (
    "Bra service, trevlig personal",
    "Snabb leverans!",
    "Älskar appen",
    "Personalen i butiken är fantastisk",
    'Fick hjälp direkt, "toppen"',
    "Bästa bonusprogrammet",
    "Great staff, always helpful",
    "Smidigt att handla på webben",
    "Bra erbjudanden för medlemmar",
    "Lätt att hitta rätt storlek",
)
_COMMENTS_PASSIVE = (
    "Okej, men lite dyrt",
    "Bra sortiment men långa köer",
    "Appen kunde vara bättre",
    "Fine overall",
    'Leveransen var "okej"',
    "Saknar fler storlekar i butik",
    "Helt okej upplevelse",
)
_COMMENTS_DETRACTOR = (
    "För dyrt, och dålig service",
    'Leveransen var "snart" i tre veckor',
    "Kassan var stängd, köade i 20 min",
    "Återbetalningen tog för lång tid",
    "Hittade inte storleken; trött på det",
    "Appen kraschar hela tiden",
    "Too expensive, won't come back",
    "Ingen svarade på mitt mejl",
    'Fick en "present" som var trasig',
)

_TXN_FILE_RE = re.compile(r"^transactions_\d{4}\.(csv|parquet)$")
_NPS_FILE_RE = re.compile(r"^nps_responses_\d{4}\.csv$")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _years_before(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Vectorised ``f"{prefix}{n:0{width}d}"`` as an arrow string array."""
    as_text = pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(as_text, width, "0"), "")


def _cents_to_decimal(cents: np.ndarray) -> pa.Array:
    """Exact int64 öre -> decimal128(12, 2) (no float rounding involved)."""
    cents = np.asarray(cents, dtype=np.int64)
    if len(cents) and np.abs(cents).max() >= 10**12:
        raise ValueError("amount does not fit decimal128(12, 2)")
    words = np.empty((len(cents), 2), dtype="<i8")
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)  # two's complement sign extension to 128 bits
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def _piecewise_lifetime_years(rng: np.random.Generator, early: np.ndarray, late: np.ndarray) -> np.ndarray:
    """Lifetimes from a hazard that is ``early`` for the first _EARLY_YEARS and ``late`` after."""
    e = rng.exponential(1.0, size=len(early))
    cut = early * _EARLY_YEARS
    return np.where(e < cut, e / early, _EARLY_YEARS + (e - cut) / late)


def _remove_stale(folder: Path, pattern: re.Pattern, keep: set[str]) -> None:
    for path in folder.iterdir():
        if path.is_file() and pattern.match(path.name) and path.name not in keep:
            path.unlink()


# --------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------
def generate_sample(
    out_dir: str | os.PathLike,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = DEFAULT_SEED,
    as_of: datetime.date = SAMPLE_AS_OF,
    years: int = 4,
    campaigns: bool = False,
) -> dict:
    """Writes the landing folder and returns a summary dict: {'transactions': n_rows,
    'nps_responses': n_rows, 'customers': customers, 'as_of_date': 'YYYY-MM-DD',
    'files': [relative paths]}

    Dates span ``years`` years ending at ``as_of`` (inclusive): from the day after
    ``as_of`` minus ``years`` years up to ``as_of``. Nothing is dated after ``as_of``.
    ``customers`` is the number of distinct customer ids in the transactions; every one of them
    has at least one purchase. Files of this generator's naming pattern left in the two
    sub-folders by an earlier run with other arguments are removed, so the folder holds exactly
    one sample. With ``campaigns`` (the `loyalty sample` command's default) it also writes the
    next-best-offer landing folders offers/ and offer_events/ (see _write_campaigns), from their
    own random stream: every other file is byte-identical with or without them. The parquet file stores ``amount`` as ``decimal128(12, 2)`` and
    ``transaction_date`` as ``date32``.
    """
    if isinstance(as_of, datetime.datetime):
        as_of = as_of.date()
    if not isinstance(as_of, datetime.date):
        as_of = datetime.date.fromisoformat(str(as_of))
    customers = int(customers)
    years = int(years)
    if customers < 1:
        raise ValueError("customers must be >= 1")
    if years < 1:
        raise ValueError("years must be >= 1")

    rng = np.random.default_rng(seed)
    start = _years_before(as_of, years) + datetime.timedelta(days=1)
    n_days = (as_of - start).days + 1
    last = n_days - 1  # day index of as_of
    epoch0 = (start - datetime.date(1970, 1, 1)).days

    # ---- calendar: per-day intensity and its cumulative sum (unit: purchases per rate-year) ----
    day_dates = (np.arange(n_days) + epoch0).astype("datetime64[D]")
    month = day_dates.astype("datetime64[M]").astype(np.int64) % 12
    year_of_day = day_dates.astype("datetime64[Y]").astype(np.int64) + 1970
    weekday = (np.arange(n_days) + epoch0 + 3) % 7  # 1970-01-01 was a Thursday -> Monday = 0
    freq_w = _MONTH_FREQ[month] * _WEEKDAY_FREQ[weekday]
    freq_w = freq_w / (_MONTH_FREQ.mean() * _WEEKDAY_FREQ.mean())
    cum = np.concatenate([[0.0], np.cumsum(freq_w / _DAYS_PER_YEAR)])

    def place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One random day in [a, b] per row, following the seasonal intensity."""
        lo, hi = cum[a], cum[b + 1]
        u = lo + rng.random(len(a)) * (hi - lo)
        d = np.searchsorted(cum, u, side="right") - 1
        return np.clip(d, a, b)

    # ---- customers ------------------------------------------------------------------------
    n_base = int(round(customers * _BASE_SHARE)) if customers > 3 else 0
    n_new = customers - n_base
    z1 = rng.standard_normal(customers)
    z2 = rng.standard_normal(customers)
    log_rate = np.log(_RATE_MEDIAN) + _RATE_SIGMA * z1
    rate = np.clip(np.exp(log_rate), _RATE_MIN, _RATE_MAX)
    zb = _BASKET_RATE_CORR * z1 + np.sqrt(1 - _BASKET_RATE_CORR**2) * z2
    basket = np.exp(np.log(_BASKET_MEDIAN) + _BASKET_SIGMA * zb)
    value_z = np.log(rate) + np.log(basket)
    value_z = (value_z - value_z.mean()) / (value_z.std() or 1.0)
    hazard_mult = np.clip((rate / _RATE_MEDIAN) ** _HAZARD_RATE_ELASTICITY, 0.3, 3.0)
    primary_channel = rng.choice(3, size=customers, p=_CHANNEL_MIX)

    # join day: base customers "before day 0", the rest by a growing, seasonal intensity
    acq_w = np.exp(_ACQ_GROWTH * np.arange(n_days) / _DAYS_PER_YEAR) * _MONTH_FREQ[month] ** 1.2
    acq_cdf = np.cumsum(acq_w)
    acq_cdf /= acq_cdf[-1]
    join_new = np.searchsorted(acq_cdf, rng.random(n_new), side="right").clip(0, last)
    # customer numbers follow the membership order: base members first, then by join day
    join = np.concatenate([np.full(n_base, -1, dtype=np.int64), np.sort(join_new)])
    is_base = join < 0

    # ---- spells (an active period of a customer) ------------------------------------------
    early = _HAZARD_EARLY * hazard_mult
    late = _HAZARD_LATE * hazard_mult
    life1 = _piecewise_lifetime_years(rng, early, late)
    life_base = rng.exponential(1.0, customers) / late  # base members are past their early years
    life1 = np.where(is_base, life_base, life1)
    a1 = np.maximum(join, 0)
    end1_raw = a1 + np.floor(life1 * _DAYS_PER_YEAR).astype(np.int64)
    b1 = np.minimum(end1_raw, last)

    # dormancy: a pause of more than a year inside the first spell (the lifetime clock stops)
    dormant = (rng.random(customers) < _DORMANT_PROB) & (end1_raw - a1 > 180)
    d0 = a1 + np.floor(rng.random(customers) * (end1_raw - a1)).astype(np.int64)
    d_gap = _DORMANT_GAP_MIN_DAYS + np.floor(rng.exponential(_DORMANT_GAP_MEAN_EXTRA_DAYS, customers)).astype(np.int64)
    b1 = np.where(dormant, np.minimum(d0, last), b1)
    dormant &= d0 + d_gap <= last
    end1_raw = np.where(dormant, end1_raw + d_gap, end1_raw)
    c1b = np.flatnonzero(dormant)

    # a second life: some churned customers come back after more than a year
    returns = (end1_raw < last) & (rng.random(customers) < _RETURN_PROB)
    gap = _RETURN_GAP_MIN_DAYS + np.floor(rng.exponential(_RETURN_GAP_MEAN_EXTRA_DAYS, customers)).astype(np.int64)
    a2 = end1_raw + gap
    returns &= a2 <= last
    life2 = _piecewise_lifetime_years(rng, early, late)
    end2_raw = a2 + np.floor(life2 * _DAYS_PER_YEAR).astype(np.int64)
    c2 = np.flatnonzero(returns)

    s_cust = np.concatenate([np.arange(customers), c1b, c2])
    s_a = np.concatenate([a1, (d0 + d_gap)[c1b], a2[c2]])
    s_b = np.concatenate([b1, np.minimum(end1_raw[c1b], last), np.minimum(end2_raw[c2], last)])
    s_rate = np.concatenate([rate, rate[c1b], rate[c2] * _RETURN_RATE_FACTOR])
    # a forced purchase on the join day / come-back days; base members get at least one purchase
    s_forced = np.concatenate([~is_base, np.ones(len(c1b) + len(c2), dtype=bool)])
    s_min_one = np.concatenate([is_base, np.zeros(len(c1b) + len(c2), dtype=bool)])
    # when is the customer truly gone (for NPS "about to churn"): the end of the last spell
    final_end = np.where(returns, end2_raw, end1_raw)

    # ---- purchases --------------------------------------------------------------------------
    expected = s_rate * (cum[s_b + 1] - cum[s_a])
    n_free = rng.poisson(expected)
    n_free = np.where(s_min_one, np.maximum(n_free, 1), n_free)
    forced_idx = np.flatnonzero(s_forced)
    free_spell = np.repeat(np.arange(len(s_cust)), n_free)
    p_day = np.concatenate([s_a[forced_idx], place(s_a[free_spell], s_b[free_spell])])
    p_cust = np.concatenate([s_cust[forced_idx], s_cust[free_spell]])
    n_p = len(p_day)

    p_month = month[p_day]
    mult = np.exp(_TXN_SIGMA * rng.standard_normal(n_p) - 0.5 * _TXN_SIGMA**2)
    amount = basket[p_cust] * mult * _MONTH_BASKET[p_month]
    p_cents = np.round(np.clip(amount, _AMOUNT_MIN, _AMOUNT_MAX) * 100).astype(np.int64)

    popularity = 1.0 / (np.arange(_N_PRODUCTS) + 5.0) ** 1.05
    popularity /= popularity.sum()
    rank_to_product = rng.permutation(_N_PRODUCTS)  # the most popular product is not P0001
    p_product = rank_to_product[rng.choice(_N_PRODUCTS, size=n_p, p=popularity)]
    p_channel = np.where(
        rng.random(n_p) < _CHANNEL_LOYALTY,
        primary_channel[p_cust],
        rng.choice(3, size=n_p, p=_CHANNEL_MIX),
    )

    # ---- refunds ----------------------------------------------------------------------------
    refunded = np.flatnonzero(rng.random(n_p) < _REFUND_PROB[p_channel])
    r_day = p_day[refunded] + rng.integers(0, _REFUND_MAX_LAG_DAYS + 1, size=len(refunded))
    share = np.where(
        rng.random(len(refunded)) < _REFUND_FULL_SHARE, 1.0, rng.uniform(0.1, 0.9, len(refunded))
    )
    r_cents = -np.maximum(np.floor(p_cents[refunded] * share), 1).astype(np.int64)
    ok = r_day <= last
    refunded, r_day, r_cents = refunded[ok], r_day[ok], r_cents[ok]

    t_day = np.concatenate([p_day, r_day])
    t_cust = np.concatenate([p_cust, p_cust[refunded]])
    t_cents = np.concatenate([p_cents, r_cents])
    t_product = np.concatenate([p_product, p_product[refunded]])
    t_channel = np.concatenate([p_channel, p_channel[refunded]])
    t_kind = np.concatenate([np.zeros(n_p, np.int8), np.ones(len(refunded), np.int8)])
    order = np.lexsort((np.arange(len(t_day)), t_kind, t_cust, t_day))
    t_day, t_cust, t_cents = t_day[order], t_cust[order], t_cents[order]
    t_product, t_channel = t_product[order], t_channel[order]
    n_t = len(t_day)

    cust_width = max(7, len(str(customers)))
    customer_ids = _format_ids("C", np.arange(1, customers + 1), cust_width)
    product_ids = _format_ids("P", np.arange(1, _N_PRODUCTS + 1), 4)
    channel_names = pa.array(_CHANNELS, pa.string())

    # ---- NPS ------------------------------------------------------------------------------
    # onboarding: customers who join inside the window
    joiners = np.flatnonzero(~is_base)
    joiners = joiners[rng.random(len(joiners)) < _ONBOARDING_PROB]
    o_day = join[joiners] + rng.integers(_ONBOARDING_LAG_DAYS[0], _ONBOARDING_LAG_DAYS[1] + 1, len(joiners))
    keep = o_day <= last
    o_cust, o_day = joiners[keep], o_day[keep]

    # relational: per calendar year, 10 % of the customers with a purchase in it, after one of them
    p_year = year_of_day[p_day]
    pick = np.lexsort((rng.random(n_p), p_year, p_cust))
    first = np.ones(n_p, dtype=bool)
    first[1:] = (p_cust[pick][1:] != p_cust[pick][:-1]) | (p_year[pick][1:] != p_year[pick][:-1])
    chosen = pick[first]
    # a calendar year only partly inside the window gets a proportionally smaller survey share
    first_year = int(year_of_day[0])
    days_in_window = np.bincount(year_of_day - first_year)
    days_in_year = np.array(
        [(datetime.date(y + 1, 1, 1) - datetime.date(y, 1, 1)).days for y in range(first_year, as_of.year + 1)]
    )
    coverage = days_in_window / days_in_year
    chosen = chosen[rng.random(len(chosen)) < _RELATIONAL_PROB * coverage[p_year[chosen] - first_year]]
    rel_day = p_day[chosen] + rng.integers(_RELATIONAL_LAG_DAYS[0], _RELATIONAL_LAG_DAYS[1] + 1, len(chosen))
    keep = rel_day <= last
    rel_cust, rel_day = p_cust[chosen][keep], rel_day[keep]

    n_cust = np.concatenate([o_cust, rel_cust])
    n_day = np.concatenate([o_day, rel_day])
    n_survey = np.concatenate([np.zeros(len(o_cust), np.int8), np.ones(len(rel_cust), np.int8)])
    churn_soon = (final_end[n_cust] < last) & (final_end[n_cust] - n_day <= 365)
    latent = (
        8.4
        + 0.6 * value_z[n_cust]
        + np.where(n_survey == 0, 0.3, 0.0)
        - 1.3 * churn_soon
        + 1.9 * rng.standard_normal(len(n_cust))
    )
    score = np.clip(np.rint(latent), 0, 10).astype(np.int64)
    comment_p = np.where(score <= 6, 0.30, np.where(score <= 8, 0.08, 0.12))
    has_comment = rng.random(len(score)) < comment_p
    pools = (_COMMENTS_DETRACTOR, _COMMENTS_PASSIVE, _COMMENTS_PROMOTER)
    band = np.where(score <= 6, 0, np.where(score <= 8, 1, 2))
    pick_u = rng.random(len(score))
    comments = np.full(len(score), None, dtype=object)
    for b, pool in enumerate(pools):  # three vectorised picks, not a per-row loop
        m = has_comment & (band == b)
        comments[m] = np.asarray(pool, dtype=object)[(pick_u[m] * len(pool)).astype(np.int64)]

    n_order = np.lexsort((n_survey, n_cust, n_day))
    n_cust, n_day, n_survey = n_cust[n_order], n_day[n_order], n_survey[n_order]
    score, comments = score[n_order], comments[n_order]
    n_r = len(n_day)

    # ---- write --------------------------------------------------------------------------
    out = Path(out_dir)
    tx_dir, nps_dir = out / "transactions", out / "nps"
    tx_dir.mkdir(parents=True, exist_ok=True)
    nps_dir.mkdir(parents=True, exist_ok=True)

    transactions = pa.table(
        {
            "transaction_id": _format_ids("T", np.arange(1, n_t + 1), 9),
            "customer_id": customer_ids.take(pa.array(t_cust)),
            "transaction_date": pa.array((t_day + epoch0).astype("datetime64[D]")),
            "amount": _cents_to_decimal(t_cents),
            "product_id": product_ids.take(pa.array(t_product)),
            "channel": channel_names.take(pa.array(t_channel)),
        }
    )
    nps_frame = pd.DataFrame(
        {
            "response_id": np.asarray(_format_ids("R", np.arange(1, n_r + 1), 8).to_pylist(), dtype=object),
            "customer_id": np.asarray(customer_ids.take(pa.array(n_cust)).to_pylist(), dtype=object),
            "response_date": np.datetime_as_string((n_day + epoch0).astype("datetime64[D]"), unit="D").astype(object),
            "score": score,
            "survey": np.where(n_survey == 0, "onboarding", "relational").astype(object),
            "comment": comments,
        }
    )

    files: list[str] = []
    written_tx: set[str] = set()
    written_nps: set[str] = set()
    t_year = year_of_day[t_day]
    r_year = year_of_day[n_day]
    csv_opts = pa_csv.WriteOptions(quoting_style="none", quoting_header="none")
    for yr in range(start.year, as_of.year + 1):
        rows = np.flatnonzero(t_year == yr)
        part = transactions.take(pa.array(rows))
        if len(rows) == 0:
            pass  # a year without rows (a small sample) gets no file: a header-only file is rejected
        elif yr == as_of.year:
            name = f"transactions_{yr}.parquet"
            pq.write_table(part, tx_dir / name, compression="zstd", store_schema=True)
        else:
            name = f"transactions_{yr}.csv"
            pa_csv.write_csv(part, tx_dir / name, csv_opts)
        if len(rows):
            written_tx.add(name)
            files.append(f"transactions/{name}")

        answers = np.flatnonzero(r_year == yr)
        if len(answers):
            name = f"nps_responses_{yr}.csv"
            nps_frame.iloc[answers].to_csv(nps_dir / name, index=False, encoding="utf-8", lineterminator="\n")
            written_nps.add(name)
            files.append(f"nps/{name}")

    _remove_stale(tx_dir, _TXN_FILE_RE, written_tx)
    _remove_stale(nps_dir, _NPS_FILE_RE, written_nps)
    if campaigns:
        files += _write_campaigns(out, seed, as_of, epoch0, p_cust, p_day, p_cents, customer_ids)

    return {
        "transactions": int(n_t),
        "nps_responses": int(n_r),
        "customers": customers,
        "as_of_date": as_of.isoformat(),
        "files": sorted(files),
    }


# --------------------------------------------------------------------------------------------
# next best offer: offers and a simulated campaign history with a known true response model
# --------------------------------------------------------------------------------------------
# The true model of every offer: a response probability without the offer (base: organic, what
# the control arm shows) and the increment the offer adds, by the customer's state on the contact
# day, computed from their purchases alone (campaign_states): new (first purchase < 100 days
# ago), at risk (last purchase 120 … 364 days ago), high value (revenue in the last 365 days >=
# 6 000). Some offers work for some customers, one does nothing (POINTS_EMAIL: a high organic
# rate, no effect: the trap of ranking by propensity), some only for at-risk customers.
CAMPAIGN_NIGHT_DAYS = 7  # one campaign night a week over the last year
CAMPAIGN_NIGHTS = 52
CAMPAIGN_CONTACT_SHARE = 0.08  # of the customers with a purchase in the last 365 days, per night
_NEW_DAYS, _AT_RISK_FROM, _LOST_DAYS, _HIGH_VALUE = 100, 120, 365, 6000.0
# offer_id: channel, group, eligible segments, eligible stages, volume, margin, cost, window,
# suppress-after-purchase days, cooldown, max per customer / window, volume cap share, live,
# and the truth: (base, effect for everyone, extra effect when new, when at risk, when high value,
# when at risk and high value).
NBO_OFFERS = {
    "WELCOME_EMAIL": ("email", "welcome", "", "new", 1, 150, 1, 14, None, 30, (2, 60), None, True, (0.04, 0.00, 0.12, 0.00, 0.00, 0.00)),
    "WINBACK_SMS": ("sms", "winback", "", "at_risk|lost", 1, 250, 2, 14, None, 30, (2, 60), None, True, (0.02, 0.00, 0.00, 0.10, 0.00, 0.00)),
    "WINBACK_EMAIL": ("email", "winback", "", "at_risk|lost", 1, 200, 1, 14, None, 30, (2, 60), None, True, (0.02, 0.00, 0.00, 0.05, 0.00, 0.00)),
    "VIP_APP": ("app", "vip", "super|top", "", 2, 120, 0.5, 14, 14, 30, (3, 90), None, True, (0.06, 0.02, 0.00, 0.00, 0.06, 0.00)),
    "POINTS_EMAIL": ("email", "points", "", "", 1, 200, 1, 14, None, 30, (2, 60), None, True, (0.20, 0.00, 0.00, 0.00, 0.00, 0.00)),
    "CROSS_SELL_APP": ("app", "cross_sell", "", "active|won_back|at_risk", 1, 180, 0.5, 14, 14, 30, (3, 90), None, True, (0.03, 0.03, 0.00, 0.00, 0.00, 0.00)),
    "SAVE_CALL": ("call_centre", "save", "super|top|middle", "at_risk", 1, 600, 60, 21, None, 60, (1, 180), 0.01, True, (0.03, 0.02, 0.00, 0.00, 0.00, 0.25)),
    "TILL_COUPON": ("till", "coupon", "", "", 1, 100, 0.2, 14, 7, 14, (4, 60), None, True, (0.08, 0.02, 0.00, 0.00, 0.00, 0.00)),
    "SUMMER_SMS": ("sms", "summer", "", "", 1, 150, 2, 14, None, 30, (2, 60), None, False, (0.03, 0.05, 0.00, 0.00, 0.00, 0.00)),
}
OFFER_HEADER = [
    "offer_id", "offer_name", "channel", "offer_group", "start_date", "end_date", "expected_volume", "unit_margin",
    "duration_years", "contact_cost", "eligible_segments", "eligible_stages", "requires_consent", "max_per_customer",
    "cap_window_days", "cooldown_after_reject_days", "suppress_after_purchase_days", "volume_cap", "business_weight",
    "response_window_days", "product_id",
]
EVENT_HEADER = ["event_id", "customer_id", "offer_id", "channel", "event_type", "event_at", "arm"]


def campaign_states(p_cust: np.ndarray, p_day: np.ndarray, p_cents: np.ndarray, customers: int, day: int) -> dict[str, np.ndarray]:
    """Per customer (index 0 … customers-1), from their purchases up to ``day`` (day indices,
    amounts in öre): alive (a purchase in the last 365 days), new, at_risk, high_value."""
    seen = p_day <= day
    last = np.full(customers, -10**9, dtype=np.int64)
    first = np.full(customers, 10**9, dtype=np.int64)
    np.maximum.at(last, p_cust[seen], p_day[seen])
    np.minimum.at(first, p_cust[seen], p_day[seen])
    recent = seen & (p_day > day - _LOST_DAYS)
    revenue = np.bincount(p_cust[recent], weights=p_cents[recent] / 100.0, minlength=customers)
    since = day - last
    return {
        "alive": since < _LOST_DAYS,
        "new": day - first < _NEW_DAYS,
        "at_risk": (since >= _AT_RISK_FROM) & (since < _LOST_DAYS),
        "high_value": revenue >= _HIGH_VALUE,
    }


def true_response(offer_id: str, states: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(probability of a response without the offer, increment with it) per customer."""
    base, everyone, new, at_risk, high, at_risk_high = NBO_OFFERS[offer_id][-1]
    effect = (
        everyone + new * states["new"] + at_risk * states["at_risk"] + high * states["high_value"]
        + at_risk_high * (states["at_risk"] & states["high_value"])
    )
    return np.full(len(effect), base), effect.astype(float)


def _offer_rows(as_of: datetime.date, customers: int) -> list[list]:
    rows = []
    for number, (offer_id, spec) in enumerate(NBO_OFFERS.items(), start=1):
        channel, group, segments, stages, volume, margin, cost, window, suppress, cooldown, cap, volume_share, live, _ = spec
        start = as_of - datetime.timedelta(days=420)
        end = as_of + datetime.timedelta(days=90) if live else as_of - datetime.timedelta(days=61)
        volume_cap = max(5, int(customers * volume_share)) if volume_share else None
        rows.append([
            offer_id, offer_id.replace("_", " ").title(), channel, group, start.isoformat(), end.isoformat(), volume, margin,
            None, cost, segments, stages, "true", cap[0], cap[1], cooldown, suppress, volume_cap, 1, window, f"P{number:04d}",
        ])
    return rows


def _write_campaigns(out: Path, seed: int, as_of: datetime.date, epoch0: int, p_cust: np.ndarray, p_day: np.ndarray,
                     p_cents: np.ndarray, customer_ids: pa.Array) -> list[str]:
    """offers/offers.csv and offer_events/offer_events_<YYYY>.csv: a year of weekly campaign
    nights in which a random share of the live customers got a random live offer (the history
    policy is random, so the history can teach uplift), their arm by the warehouse's persistent
    hash (control: a held_out event), and responses drawn from the true model. Its own random
    stream: the other files do not change."""
    from .next_best_offer.arms import arm_of  # the warehouse's own assignment

    rng = np.random.default_rng([seed, 12])
    customers = len(customer_ids)
    last = (as_of - datetime.date(1970, 1, 1)).days - epoch0
    offer_rows = _offer_rows(as_of, customers)
    offer_ids = [row[0] for row in offer_rows]
    live_offers = [o for o in offer_ids if NBO_OFFERS[o][12]]
    ids = np.asarray(customer_ids.to_pylist(), dtype=object)
    arms = np.asarray(arm_of(list(ids)), dtype=object)
    events: list[tuple] = []
    for night in range(CAMPAIGN_NIGHTS, 0, -1):
        day = last - night * CAMPAIGN_NIGHT_DAYS
        states = campaign_states(p_cust, p_day, p_cents, customers, day)
        pool = np.flatnonzero(states["alive"])
        chosen = np.sort(pool[rng.random(len(pool)) < CAMPAIGN_CONTACT_SHARE])
        offers_of = rng.integers(0, len(live_offers), len(chosen))
        hours = rng.integers(8, 20, len(chosen))
        u_response, u_day, u_open, u_click, u_reject = (rng.random(len(chosen)) for _ in range(5))
        for k, offer_id in enumerate(live_offers):
            mine = offers_of == k
            who = chosen[mine]
            spec = NBO_OFFERS[offer_id]
            channel, window = spec[0], spec[7]
            base, effect = true_response(offer_id, {name: value[who] for name, value in states.items()})
            control = arms[who] == "control"
            p = np.where(control, base, base + effect)
            responded = u_response[mine] < p
            date = (np.datetime64("1970-01-01") + np.timedelta64(int(epoch0 + day), "D"))
            for i, c in enumerate(who):
                at = f"{date}T{hours[mine][i]:02d}:00:00"
                arm = arms[c]
                events.append((day, at, ids[c], offer_id, channel, "held_out" if arm == "control" else "sent", arm))
                if arm != "control" and channel in ("email", "app", "sms") and u_open[mine][i] < 0.45:
                    events.append((day, f"{date}T{hours[mine][i]:02d}:30:00", ids[c], offer_id, channel, "opened", arm))
                    if u_click[mine][i] < 0.4:
                        events.append((day, f"{date}T{hours[mine][i]:02d}:45:00", ids[c], offer_id, channel, "clicked", arm))
                if responded[i]:
                    later = int(u_day[mine][i] * window)
                    if day + later <= last:
                        when = np.datetime64("1970-01-01") + np.timedelta64(int(epoch0 + day + later), "D")
                        events.append((day + later, f"{when}T21:00:00", ids[c], offer_id, channel, "converted", arm))
                elif arm != "control" and u_reject[mine][i] < 0.05:
                    events.append((day, f"{date}T{hours[mine][i]:02d}:50:00", ids[c], offer_id, channel, "rejected", arm))
    events.sort(key=lambda e: (e[1], e[2], e[3], e[5]))
    offers_dir, events_dir = out / "offers", out / "offer_events"
    offers_dir.mkdir(parents=True, exist_ok=True)
    events_dir.mkdir(parents=True, exist_ok=True)
    files = []
    _write_plain_csv(offers_dir / "offers.csv", OFFER_HEADER, offer_rows)
    files.append("offers/offers.csv")
    by_year: dict[str, list[list]] = {}
    for number, (_, at, customer, offer_id, channel, kind, arm) in enumerate(events, start=1):
        by_year.setdefault(at[:4], []).append([f"E{number:09d}", customer, offer_id, channel, kind, at, arm])
    for year, rows in sorted(by_year.items()):
        _write_plain_csv(events_dir / f"offer_events_{year}.csv", EVENT_HEADER, rows)
        files.append(f"offer_events/offer_events_{year}.csv")
    _remove_stale(events_dir, re.compile(r"^offer_events_\d{4}\.csv$"), {Path(f).name for f in files})
    return files


def _write_plain_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Header, ',', '\\n', empty for None; the values here never need quoting."""
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_project.sample_data",
        description="Write a deterministic sample landing folder for the loyalty warehouse.",
    )
    parser.add_argument("--out", help="landing folder to write (transactions/ and nps/ inside)")
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--as-of", type=datetime.date.fromisoformat, default=SAMPLE_AS_OF, help="YYYY-MM-DD")
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--print-as-of", action="store_true", help="print the bundled sample's as-of date and exit")
    parser.add_argument("--no-campaigns", action="store_true", help="leave out offers/ and offer_events/ (next best offer)")
    args = parser.parse_args(argv)
    if args.print_as_of:
        print(SAMPLE_AS_OF.isoformat())
        return 0
    if not args.out:
        parser.error("--out is required (or use --print-as-of)")
    summary = generate_sample(
        args.out, customers=args.customers, seed=args.seed, as_of=args.as_of, years=args.years, campaigns=not args.no_campaigns
    )
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

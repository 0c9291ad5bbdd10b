"""Tests for the deterministic sample landing-file generator (dagster_project/sample_data.py).

Every assertion checks numbers computed from files the generator wrote.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_project import sample_data
from dagster_project.sample_data import SAMPLE_AS_OF, generate_sample

N_CUSTOMERS = 2_000
SEED = 7
AS_OF = SAMPLE_AS_OF
START = datetime.date(AS_OF.year - 4, AS_OF.month, AS_OF.day) + datetime.timedelta(days=1)
TXN_COLUMNS = ["transaction_id", "customer_id", "transaction_date", "amount", "product_id", "channel"]
NPS_COLUMNS = ["response_id", "customer_id", "response_date", "score", "survey", "comment"]


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    summary = generate_sample(root, customers=N_CUSTOMERS, seed=SEED, as_of=AS_OF, years=4)
    return root, summary


@pytest.fixture(scope="module")
def con(sample):
    root, _ = sample
    c = duckdb.connect()
    c.execute(
        f"""
        create view t as
        select transaction_id, customer_id, cast(transaction_date as date) as d,
               cast(amount as decimal(12, 2)) as amount, product_id, channel
        from read_csv('{root}/transactions/*.csv', header = true, all_varchar = true)
        union all
        select transaction_id, customer_id, transaction_date, amount, product_id, channel
        from read_parquet('{root}/transactions/*.parquet')
        """
    )
    c.execute(
        f"""
        create view n as
        select * from read_csv('{root}/nps/*.csv', header = true, all_varchar = true)
        """
    )
    yield c
    c.close()


def _one(con, sql):
    return con.execute(sql).fetchone()


# ---------------------------------------------------------------------------- layout / format
def test_file_layout_and_summary(sample):
    root, summary = sample
    years = range(START.year, AS_OF.year + 1)
    expected = {f"transactions/transactions_{y}.csv" for y in years if y != AS_OF.year}
    expected |= {f"transactions/transactions_{AS_OF.year}.parquet"}
    expected |= {f"nps/nps_responses_{y}.csv" for y in years}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == expected
    assert set(summary["files"]) == expected
    assert summary["customers"] == N_CUSTOMERS
    assert summary["as_of_date"] == AS_OF.isoformat()


def test_csv_headers_line_endings_and_amount_format(sample):
    root, _ = sample
    amount_re = re.compile(r"^-?\d+\.\d{2}$")
    date_re = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for path in sorted((root / "transactions").glob("*.csv")):
        raw = path.read_bytes()
        assert b"\r" not in raw
        text = raw.decode("utf-8")
        lines = text.split("\n")
        assert lines[0] == ",".join(TXN_COLUMNS)
        assert lines[-1] == ""  # file ends with a newline
        rows = [line.split(",") for line in lines[1:-1]]
        assert len(rows) > 0
        assert all(len(r) == 6 for r in rows)
        assert all(amount_re.match(r[3]) for r in rows)
        assert all(date_re.match(r[2]) and str(path.stem[-4:]) == r[2][:4] for r in rows)
        assert {r[5] for r in rows} == {"store", "web", "app"}
    for path in sorted((root / "nps").glob("*.csv")):
        raw = path.read_bytes()
        assert b"\r\n" not in raw
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == NPS_COLUMNS
        assert all(len(r) == 6 for r in rows[1:])


def test_parquet_schema(sample):
    root, _ = sample
    (path,) = (root / "transactions").glob("*.parquet")
    schema = pq.read_schema(path)
    assert schema.names == TXN_COLUMNS
    assert schema.field("transaction_date").type == pa.date32()
    assert schema.field("amount").type == pa.decimal128(12, 2)
    for name in ("transaction_id", "customer_id", "product_id", "channel"):
        assert schema.field(name).type == pa.string()
    assert set((schema.metadata or {}).keys()) <= {b"ARROW:schema"}  # no pandas/time metadata


def test_row_counts_match_summary(con, sample):
    _, summary = sample
    assert _one(con, "select count(*) from t")[0] == summary["transactions"]
    assert _one(con, "select count(*) from n")[0] == summary["nps_responses"]
    assert _one(con, "select count(distinct customer_id) from t")[0] == N_CUSTOMERS


# ---------------------------------------------------------------------------- keys and dates
def test_ids_unique_and_well_formed(con):
    n, distinct, bad = _one(
        con,
        r"""select count(*), count(distinct transaction_id),
                  count(*) filter (where not regexp_matches(transaction_id, '^T\d{9}$')
                                      or not regexp_matches(customer_id, '^C\d{7}$')
                                      or not regexp_matches(product_id, '^P\d{4}$'))
           from t""",
    )
    assert n == distinct and bad == 0
    n, distinct, bad = _one(
        con,
        r"""select count(*), count(distinct response_id),
                  count(*) filter (where not regexp_matches(response_id, '^R\d{8}$'))
           from n""",
    )
    assert n > 0 and n == distinct and bad == 0


def test_dates_within_window_and_spanning_it(con):
    lo, hi = _one(con, "select min(d), max(d) from t")
    assert START <= lo <= START + datetime.timedelta(days=7)
    assert AS_OF - datetime.timedelta(days=7) <= hi <= AS_OF
    lo, hi = _one(con, "select min(cast(response_date as date)), max(cast(response_date as date)) from n")
    assert START <= lo and hi <= AS_OF
    assert (hi - lo).days > 3 * 365


def test_rows_sorted_by_date_then_id(sample):
    root, _ = sample
    for path in sorted((root / "transactions").glob("*.csv")):
        rows = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
        keys = [(r[2], r[0]) for r in rows]
        assert keys == sorted(keys)
    table = pq.read_table(next((root / "transactions").glob("*.parquet")))
    keys = list(zip(table["transaction_date"].to_pylist(), table["transaction_id"].to_pylist()))
    assert keys == sorted(keys)


# ---------------------------------------------------------------------------- refunds
def test_refunds_present_negative_and_tied_to_a_purchase(con):
    purchases, refunds = _one(
        con, "select count(*) filter (where amount > 0), count(*) filter (where amount < 0) from t"
    )
    assert refunds > 0
    assert 0.015 < refunds / purchases < 0.05
    assert _one(con, "select count(*) from t where amount = 0")[0] == 0
    # every refund has a purchase by the same customer, of the same product, of at least that
    # amount, in the 30 days before it
    orphans = _one(
        con,
        """
        select count(*) from t r
        where r.amount < 0 and not exists (
            select 1 from t p
            where p.customer_id = r.customer_id and p.product_id = r.product_id
              and p.amount >= -r.amount and p.d between r.d - 30 and r.d)
        """,
    )[0]
    assert orphans == 0


# ---------------------------------------------------------------------------- NPS
def test_nps_scores_surveys_and_comments(con, sample):
    bad = _one(
        con,
        """select count(*) from n
           where try_cast(score as integer) is null or cast(score as integer) not between 0 and 10
              or survey not in ('onboarding', 'relational')""",
    )[0]
    assert bad == 0
    surveys = dict(con.execute("select survey, count(*) from n group by 1").fetchall())
    assert surveys.get("onboarding", 0) > 0 and surveys.get("relational", 0) > 0
    nps = _one(
        con,
        """select 100 * (avg((cast(score as int) >= 9)::int) - avg((cast(score as int) <= 6)::int)) from n""",
    )[0]
    assert 0 < nps < 50
    share_commented = _one(con, "select avg((comment is not null)::int) from n")[0]
    assert 0 < share_commented < 0.5
    # comments with commas, quotes and Swedish letters survive a CSV round trip
    comments = [r[0] for r in con.execute("select comment from n where comment is not null").fetchall()]
    assert any("," in c for c in comments)
    assert any('"' in c for c in comments)
    assert any(ch in c for c in comments for ch in "åäöÅÄÖ")
    # onboarding answers come 90-110 days after the customer's first purchase
    lag_lo, lag_hi = _one(
        con,
        """with f as (select customer_id, min(d) as first_day from t group by 1)
           select min(cast(response_date as date) - first_day), max(cast(response_date as date) - first_day)
           from n join f using (customer_id) where survey = 'onboarding'""",
    )
    assert 90 <= lag_lo and lag_hi <= 110


def test_nps_higher_for_high_value_customers(con):
    rows = con.execute(
        """
        with v as (select customer_id, sum(amount) as value from t group by 1),
        q as (select customer_id, ntile(2) over (order by value desc) as half from v)
        select half, 100 * (avg((cast(score as int) >= 9)::int) - avg((cast(score as int) <= 6)::int))
        from n join q using (customer_id) group by 1 order by 1
        """
    ).fetchall()
    assert rows[0][1] > rows[1][1] + 5


# ---------------------------------------------------------------------------- realism
def _flows(con):
    s12 = AS_OF - datetime.timedelta(days=365)
    f12 = AS_OF - datetime.timedelta(days=730)
    return _one(
        con,
        f"""
        with c as (
            select customer_id,
                   count(*) filter (where amount > 0 and d > date '{s12}') as s_n,
                   count(*) filter (where amount > 0 and d > date '{f12}' and d <= date '{s12}') as f_n,
                   count(*) filter (where amount > 0 and d <= date '{f12}') as b_n
            from t group by 1)
        select count(*) filter (where s_n > 0 and f_n = 0 and b_n = 0),
               count(*) filter (where s_n = 0 and f_n > 0),
               count(*) filter (where s_n > 0 and f_n = 0 and b_n > 0),
               count(*) filter (where s_n > 0 and f_n > 0)
        from c
        """,
    )


def test_new_lost_recovered_and_retained_customers_exist(con):
    new, lost, recovered, retained = _flows(con)
    active = new + recovered + retained
    assert new > 0.10 * active
    assert lost > 0.05 * active
    assert recovered > 0.01 * active
    assert retained > 0.3 * active


def test_revenue_concentration_last_12_months(con):
    s12 = AS_OF - datetime.timedelta(days=365)
    share = _one(
        con,
        f"""
        with v as (select customer_id, sum(amount) as value from t
                   where d > date '{s12}' group by 1 having sum(amount) > 0),
        r as (select value, row_number() over (order by value desc) as rn, count(*) over () as cnt from v)
        select sum(value) filter (where rn <= cnt * 0.2) / sum(value) from r
        """,
    )[0]
    assert 0.5 < share < 0.9


def test_december_peak_and_summer_dip(con):
    dec, jun, jul, avg_month = _one(
        con,
        """select sum(amount) filter (where month(d) = 12), sum(amount) filter (where month(d) = 6),
                  sum(amount) filter (where month(d) = 7), sum(amount) / 12 from t""",
    )
    assert dec > jun
    assert dec > 1.2 * avg_month
    assert jul < avg_month


def test_channel_mix_products_and_baskets(con):
    mix = dict(con.execute("select channel, count(*) / sum(count(*)) over () from t group by 1").fetchall())
    assert 0.5 < mix["store"] < 0.7 and 0.18 < mix["web"] < 0.32 and 0.08 < mix["app"] < 0.22
    n_products, top_share = _one(
        con,
        """with p as (select product_id, count(*) as n from t group by 1)
           select count(*), max(n) / sum(n) from p""",
    )
    assert 150 <= n_products <= 200
    assert top_share > 3 / n_products  # popularity is skewed
    lo, median, hi = _one(
        con, "select min(amount), median(amount), max(amount) from t where amount > 0"
    )
    assert 40 <= lo and 200 <= median <= 1500 and hi <= 5000
    per_active_year = _one(
        con,
        """select count(*) filter (where amount > 0) / count(distinct customer_id) from t
           where year(d) = year(date '2025-01-01')""",
    )[0]
    assert 1 <= per_active_year <= 15


# ---------------------------------------------------------------------------- determinism
def test_same_seed_byte_identical_and_other_seed_differs(sample, tmp_path):
    root, _ = sample
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate_sample(again, customers=N_CUSTOMERS, seed=SEED, as_of=AS_OF, years=4)
    generate_sample(other, customers=N_CUSTOMERS, seed=SEED + 1, as_of=AS_OF, years=4)
    first, second, third = _hashes(root), _hashes(again), _hashes(other)
    assert len(first) == 10
    assert first == second
    assert first.keys() == third.keys()
    assert all(first[k] != third[k] for k in first)


# ---------------------------------------------------------------------------- other arguments, CLI
def test_other_as_of_and_years_and_stale_files(tmp_path):
    out = tmp_path / "landing"
    (out / "transactions").mkdir(parents=True)
    (out / "transactions" / "transactions_1999.csv").write_text("stale\n")
    (out / "transactions" / "README.txt").write_text("keep me\n")
    as_of = datetime.date(2024, 2, 29)
    summary = generate_sample(out, customers=300, seed=1, as_of=as_of, years=2)
    assert not (out / "transactions" / "transactions_1999.csv").exists()
    assert (out / "transactions" / "README.txt").exists()
    assert summary["as_of_date"] == "2024-02-29"
    assert sorted(p.name for p in (out / "transactions").glob("transactions_*")) == [
        "transactions_2022.csv",
        "transactions_2023.csv",
        "transactions_2024.parquet",
    ]
    con = duckdb.connect()
    lo, hi, n = con.execute(
        f"""select min(d), max(d), count(*) from (
              select cast(transaction_date as date) as d from read_csv('{out}/transactions/*.csv', all_varchar = true)
              union all select transaction_date from read_parquet('{out}/transactions/*.parquet'))"""
    ).fetchone()
    assert n == summary["transactions"]
    assert datetime.date(2022, 3, 1) <= lo and hi <= as_of
    hi_nps = con.execute(
        f"select max(cast(response_date as date)) from read_csv('{out}/nps/*.csv', all_varchar = true)"
    ).fetchone()[0]
    assert hi_nps <= as_of


def test_cli(tmp_path, capsys):
    assert sample_data.main(["--print-as-of"]) == 0
    assert capsys.readouterr().out.strip() == SAMPLE_AS_OF.isoformat()
    out = tmp_path / "cli"
    assert sample_data.main(["--out", str(out), "--customers", "200", "--seed", "3", "--as-of", "2025-06-30"]) == 0
    printed = capsys.readouterr().out
    assert '"as_of_date": "2025-06-30"' in printed
    assert (out / "transactions" / "transactions_2025.parquet").exists()
    assert (out / "transactions" / "transactions_2021.csv").exists()

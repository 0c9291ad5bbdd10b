"""The worked-example builder reproduces every figure of DOMAIN.md's worked example.

The data is checked with ``reference_figures``, an independent pandas implementation of the rules;
the pipeline's own tests compare its marts with the same ``EXPECTED_*`` constants.
"""

from __future__ import annotations

import re

import pytest

from .worked_example import (
    AS_OF,
    EXPECTED_CLV,
    EXPECTED_CURRENT_TOTAL_CUSTOMERS,
    EXPECTED_FLOW_TOTALS,
    EXPECTED_FLOWS,
    EXPECTED_LOST_TOTAL_CUSTOMERS,
    EXPECTED_PREVIOUS_SEGMENTS,
    EXPECTED_PREVIOUS_TOTAL_CUSTOMERS,
    SEGMENTS,
    matches_displayed,
    reference_figures,
    write_worked_example,
)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("worked_example_raw")
    write_worked_example(path)
    return path


@pytest.fixture(scope="module")
def figures(raw_dir):
    return reference_figures(raw_dir, AS_OF)


def test_expected_constants_are_consistent():
    """The transcription itself: rows and columns of DOMAIN.md's tables add up."""
    assert len(EXPECTED_FLOWS) == 4 * 6 + 4
    for to_segment, (customers, purchases, _) in EXPECTED_FLOW_TOTALS.items():
        cells = [v for (f, t, _), v in EXPECTED_FLOWS.items() if t == to_segment]
        assert sum(c[0] for c in cells) == customers == EXPECTED_CLV[to_segment]["customers"][0]
        assert sum(c[1] for c in cells) == purchases == EXPECTED_CLV[to_segment]["purchases"][0]
    for from_segment, (customers, _, _) in EXPECTED_PREVIOUS_SEGMENTS.items():
        cells = [v for (f, t, _), v in EXPECTED_FLOWS.items() if f == from_segment]
        assert sum(c[0] for c in cells) == customers
    assert sum(v[0] for (_, t, _), v in EXPECTED_FLOWS.items() if t is None) == EXPECTED_LOST_TOTAL_CUSTOMERS
    assert sum(v[0] for v in EXPECTED_PREVIOUS_SEGMENTS.values()) == EXPECTED_PREVIOUS_TOTAL_CUSTOMERS
    assert sum(EXPECTED_CLV[s]["customers"][0] for s in SEGMENTS) == EXPECTED_CURRENT_TOTAL_CUSTOMERS
    assert sum(EXPECTED_CLV[s]["portfolio_value"][0] for s in SEGMENTS) == EXPECTED_CLV["total"]["portfolio_value"][0]


def test_flow_cells(figures):
    flows = figures["flows"]
    assert set(flows) == set(EXPECTED_FLOWS)
    for key, expected in EXPECTED_FLOWS.items():
        cell = flows[key]
        if key[2] == "lost":
            customers, revenue = expected
            assert cell["customers"] == customers, key
            assert cell["purchases"] == 0, key
            assert cell["revenue"] == pytest.approx(revenue, abs=0.005), key
        else:
            customers, purchases, revenue_per_customer = expected
            assert cell["customers"] == customers, key
            assert cell["purchases"] == purchases, key
            assert matches_displayed(cell["revenue_per_customer"], revenue_per_customer, 0), (key, cell)


def test_flow_totals(figures):
    flows = figures["flows"]
    for to_segment, (customers, purchases, revenue_per_customer) in EXPECTED_FLOW_TOTALS.items():
        cells = [cell for (_, t, _), cell in flows.items() if t == to_segment]
        total_customers = sum(c["customers"] for c in cells)
        assert total_customers == customers
        assert sum(c["purchases"] for c in cells) == purchases
        assert matches_displayed(sum(c["revenue"] for c in cells) / total_customers, revenue_per_customer, 0)
    assert sum(c["customers"] for (_, t, _), c in flows.items() if t is None) == EXPECTED_LOST_TOTAL_CUSTOMERS


def test_segment_sizes_in_both_periods(figures):
    for segment in SEGMENTS:
        current = figures["current_segments"][segment]
        assert current["customers"] == EXPECTED_CLV[segment]["customers"][0]
        assert current["purchases"] == EXPECTED_CLV[segment]["purchases"][0]
        assert current["revenue"] == pytest.approx(EXPECTED_CLV[segment]["revenue"][0], abs=0.005)
        customers, purchases, revenue = EXPECTED_PREVIOUS_SEGMENTS[segment]
        previous = figures["previous_segments"][segment]
        assert (previous["customers"], previous["purchases"]) == (customers, purchases), segment
        assert previous["revenue"] == pytest.approx(revenue, abs=0.005), segment
    assert len(figures["current"]) == EXPECTED_CURRENT_TOTAL_CUSTOMERS
    assert len(figures["previous"]) == EXPECTED_PREVIOUS_TOTAL_CUSTOMERS


@pytest.mark.parametrize("row", [*SEGMENTS, "total"])
def test_clv_table(figures, row):
    actual = figures["clv"][row]
    for field, (displayed, decimals) in EXPECTED_CLV[row].items():
        assert matches_displayed(actual[field], displayed, decimals), (row, field, actual[field], displayed)
    # Counts and money are exact, not just at the displayed rounding.
    assert actual["customers"] == EXPECTED_CLV[row]["customers"][0]
    assert actual["purchases"] == EXPECTED_CLV[row]["purchases"][0]
    assert actual["revenue"] == pytest.approx(EXPECTED_CLV[row]["revenue"][0], abs=0.005)


def test_clv_base_and_lost_come_from_previous_period(figures):
    for segment in SEGMENTS:
        assert figures["clv"][segment]["base"] == EXPECTED_PREVIOUS_SEGMENTS[segment][0]
        assert figures["clv"][segment]["lost"] == EXPECTED_FLOWS[(segment, None, "lost")][0]
    assert figures["clv"]["total"]["base"] == EXPECTED_PREVIOUS_TOTAL_CUSTOMERS
    assert figures["clv"]["total"]["lost"] == EXPECTED_LOST_TOTAL_CUSTOMERS


@pytest.mark.parametrize(("period", "n_upper"), [("current", 71269), ("previous", 66072)])
def test_middle_bottom_cut_is_a_tie_of_exactly_two(figures, period, n_upper):
    """Super+top+middle needs n_upper customers; the 70 % rule alone allows one fewer.

    The two lowest middle customers tie (positions n_upper − 1 and n_upper); every bottom
    customer is strictly below. Count-strictly-higher semantics put both in middle; row_number
    or cume_dist semantics would not (in either period), percent_rank not in S12.
    """
    frame = figures[period]
    n = len(frame)
    assert 100 * (n_upper - 1) >= 70 * n > 100 * (n_upper - 2)  # position n_upper alone would be bottom
    middle = frame[frame["segment"] == "middle"]["revenue_cents"]
    bottom = frame[frame["segment"] == "bottom"]["revenue_cents"]
    lowest = middle.min()
    assert (middle == lowest).sum() == 2
    assert bottom.max() < lowest
    assert (frame["revenue_cents"] > lowest).sum() == n_upper - 2
    # cume_dist (customers with higher or equal value ÷ n) would put the tie into bottom:
    assert not 100 * n_upper < 70 * n
    if period == "current":  # and so would percent_rank = (rank − 1) ÷ (n − 1)
        assert not 100 * (n_upper - 2) < 70 * (n - 1)


def _read_raw(raw_dir):
    import pandas as pd

    files = sorted((raw_dir / "transactions").glob("*.csv"))
    return files, pd.concat([pd.read_csv(p, dtype=str, engine="pyarrow") for p in files], ignore_index=True)


def test_files_shape_and_boundaries(raw_dir):
    files, tx = _read_raw(raw_dir)
    assert len(files) >= 3
    header = "transaction_id,customer_id,transaction_date,amount,product_id,channel"
    for path in files:
        with open(path, encoding="utf-8") as handle:
            assert handle.readline().rstrip("\n") == header
    assert tx.notna().all().all()
    assert tx["amount"].str.fullmatch(r"-?\d+\.\d{2}").all()
    assert (tx["amount"].astype(float) != 0).all()
    assert tx["transaction_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (tx["transaction_date"] <= AS_OF.isoformat()).all()
    assert tx["transaction_id"].is_unique  # across files
    dates = set(tx["transaction_date"])
    for boundary in ("2024-01-01", "2024-12-31", "2025-01-01", "2025-12-31"):
        assert boundary in dates
    assert (tx["amount"].astype(float) < 0).sum() > 0  # a few refunds


def test_recovered_and_new_histories(raw_dir, figures):
    _, tx = _read_raw(raw_dir)
    tx["year"] = tx["transaction_date"].str.slice(0, 4)
    years = tx.groupby(["customer_id", "year"]).size().unstack(fill_value=0) > 0
    current = figures["current"].index
    previous = figures["previous"].index
    gained = years.loc[current.difference(previous)]
    before = gained["2022"] | gained["2023"]
    new, recovered = gained[~before], gained[before]
    assert len(new) == sum(v[0] for (_, _, flow), v in EXPECTED_FLOWS.items() if flow == "new")
    assert len(recovered) == sum(v[0] for (_, _, flow), v in EXPECTED_FLOWS.items() if flow == "recovered")
    assert not new[["2022", "2023", "2024"]].any().any()
    assert not recovered["2024"].any()
    # "active some time before period 1" reaches past period 2: some were last seen in 2022
    assert (recovered["2022"] & ~recovered["2023"]).any()


def test_writing_twice_is_byte_identical(raw_dir, tmp_path):
    write_worked_example(tmp_path)
    first = {p.name: p.read_bytes() for p in (raw_dir / "transactions").glob("*.csv")}
    second = {p.name: p.read_bytes() for p in (tmp_path / "transactions").glob("*.csv")}
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first)

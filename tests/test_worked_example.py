"""DOMAIN.md's worked example reproduced exactly by the pipeline: every figure of the flow table,
the F12 line and the CLV/portfolio table, read from the marts after a real in-process run."""

import json
import re

import pytest

from dagster_project.resources import LoyaltySettings
from dagster_project.runner import run_pipeline

from .support import query
from .worked_example import (
    AS_OF,
    EXPECTED_CLV,
    EXPECTED_FLOW_TOTALS,
    EXPECTED_FLOWS,
    EXPECTED_PREVIOUS_SEGMENTS,
    matches_displayed,
    write_worked_example,
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    raw = tmp_path_factory.mktemp("worked_example_raw")
    write_worked_example(raw)
    path = tmp_path_factory.mktemp("worked_example_wh") / "warehouse.duckdb"
    # Export, published copy and report beside the warehouse, not in the project's data/. Discount
    # rate 0 (and the default margin rate 1): the discounted CLV must be the seed's CLV.
    outputs = json.dumps({"export_dir": str(path.parent / "exports"), "publish_dir": str(path.parent / "published"),
                          "discount_rate": 0.0})
    outcome = run_pipeline(LoyaltySettings(as_of_date=AS_OF.isoformat(), raw_dir=str(raw), warehouse=str(path),
                                           overrides_json=outputs))
    assert outcome.success, outcome.failure
    return path


def test_flow_matrix_cells(warehouse):
    rows = query(
        warehouse,
        "select from_segment, to_segment, flow, customers, purchases, revenue, revenue_per_customer"
        " from marts.segment_flow_matrix where period_index = 0",
    )
    cells = {(f, t, flow): (c, p, r, rpc) for f, t, flow, c, p, r, rpc in rows}
    assert set(cells) == set(EXPECTED_FLOWS)
    for key, expected in EXPECTED_FLOWS.items():
        customers, purchases, revenue, revenue_per_customer = cells[key]
        if key[2] == "lost":
            assert (customers, purchases, revenue) == (expected[0], 0, expected[1]), key
        else:
            assert (customers, purchases) == expected[:2], key
            assert matches_displayed(revenue_per_customer, expected[2], 0), (key, revenue_per_customer)


def test_flow_matrix_totals_per_to_segment(warehouse):
    rows = query(
        warehouse,
        "select to_segment, sum(customers), sum(purchases), sum(revenue) / sum(customers)"
        " from marts.segment_flow_matrix where period_index = 0 and to_segment is not null group by to_segment",
    )
    for segment, customers, purchases, revenue_per_customer in rows:
        expected = EXPECTED_FLOW_TOTALS[segment]
        assert (customers, purchases) == expected[:2], segment
        assert matches_displayed(revenue_per_customer, expected[2], 0), segment


def test_previous_period_segments(warehouse):
    rows = query(
        warehouse,
        "select value_segment, count(*), sum(purchases), sum(revenue) from marts.customer_period_facts"
        " where period_index = 1 and value_segment is not null group by value_segment",
    )
    assert {segment: (c, p, r) for segment, c, p, r in rows} == EXPECTED_PREVIOUS_SEGMENTS


def test_clv_and_portfolio_table(warehouse):
    rows = query(
        warehouse,
        "select value_segment, customers, duration_years, purchases, revenue, purchases_per_customer,"
        " revenue_per_purchase, revenue_per_customer, clv, clv_index, 100 * retention_rate, portfolio_value"
        " from marts.segment_clv where period_index = 0",
    )
    names = ["customers", "duration_years", "purchases", "revenue", "purchases_per_customer",
             "revenue_per_purchase", "revenue_per_customer", "clv", "clv_index", "retention_pct", "portfolio_value"]
    table = {row[0]: dict(zip(names, row[1:])) for row in rows}
    assert set(table) == set(EXPECTED_CLV)
    for segment, fields in EXPECTED_CLV.items():
        for field, (displayed, decimals) in fields.items():
            assert matches_displayed(table[segment][field], displayed, decimals), (segment, field, table[segment][field])
    assert table["total"]["clv_index"] is None


def test_discounted_clv_on_margin_with_d_0_and_margin_1_is_the_worked_example_clv(warehouse):
    rows = query(
        warehouse,
        "select value_segment, revenue, margin, revenue_per_customer, margin_per_customer, clv, clv_margin,"
        " retention_rate, retention_rate_yearly, clv_discounted, portfolio_value_discounted"
        " from marts.segment_clv where period_index = 0",
    )
    assert {row[0] for row in rows} == set(EXPECTED_CLV)
    for segment, revenue, margin, rpc, mpc, clv, clv_margin, retention, yearly, discounted, portfolio in rows:
        assert margin == revenue, segment  # margin rate 1: to the cent
        assert mpc == pytest.approx(rpc, rel=1e-12) and clv_margin == pytest.approx(clv, rel=1e-12), segment
        assert yearly == pytest.approx(retention, rel=1e-12), segment  # 12-month periods: r as it is
        # m × (1 + 0) ÷ (1 + 0 − r) = m ÷ churn = m × duration: DOMAIN.md's figure at its rounding.
        assert matches_displayed(discounted, EXPECTED_CLV[segment]["clv"][0], EXPECTED_CLV[segment]["clv"][1]), (segment, discounted)
        assert discounted == pytest.approx(clv, rel=1e-9), segment
        if "portfolio_value" in EXPECTED_CLV[segment]:
            displayed, decimals = EXPECTED_CLV[segment]["portfolio_value"]
            assert matches_displayed(portfolio, displayed, decimals), (segment, portfolio)


def test_retention_table_matches_the_lost_column(warehouse):
    rows = query(
        warehouse,
        "select value_segment, base_customers, lost_customers from marts.segment_retention where period_index = 0",
    )
    lost = {segment: c for (f, t, flow), (c, *_) in EXPECTED_FLOWS.items() if flow == "lost" for segment in [f]}
    for segment, base, lost_customers in rows:
        if segment == "total":
            assert (base, lost_customers) == (94387, 33570)
        else:
            assert (base, lost_customers) == (EXPECTED_PREVIOUS_SEGMENTS[segment][0], lost[segment]), segment


def _report_text(warehouse) -> str:
    """The published report of the run (written by the pipeline's report asset), no-break spaces as spaces."""
    html = (warehouse.parent / "published" / "report" / f"loyalty_report_{AS_OF.isoformat()}.html").read_text(encoding="utf-8")
    return html.split("</head>", 1)[1].replace("\u00a0", " ")


def test_the_report_shows_the_worked_examples_figures(warehouse):
    text = _report_text(warehouse)
    tile = lambda key: re.search(rf'id="tile-{key}".*?data-role="value">([^<]*)<', text, re.S).group(1)  # noqa: E731
    assert tile("customers") == "101 811"
    assert tile("portfolio") == "1 284 714 061 SEK"
    assert tile("revenue") == "257 695 394 SEK"
    assert tile("retention") == "64.4 %"  # 1 − 33 570 / 94 387 (DOMAIN.md rounds it to 64 %)
    assert tile("nps") == "–"  # the worked example has no NPS answers
    clv_table = text.split('id="clv-table"', 1)[1].split("</table>", 1)[0]
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", clv_table, re.S)]
    rows = [cells[i:i + 12] for i in range(0, len(cells), 12)]
    expected = {  # DOMAIN.md (durations and retention at two / one decimals): customers, duration, CLV, CLV index, retention, portfolio value
        "Super": ("5 091", "8.76", "106 196", "128.8", "88.6 %", "540 642 767"),
        "Top": ("15 272", "5.20", "28 627", "34.7", "80.8 %", "437 196 598"),
        "Middle": ("50 906", "2.82", "5 534", "6.7", "64.6 %", "281 701 853"),
        "Bottom": ("30 542", "2.08", "824", "1.0", "52.0 %", "25 172 843"),
        "Total": ("101 811", "2.81", "7 117", "–", "64.4 %", "1 284 714 061"),
    }
    shown = {row[0].split(" ")[0]: (row[1], row[2], row[8], row[9], row[10], row[11]) for row in rows}
    assert shown == expected
    assert "of the customers stood for" in text

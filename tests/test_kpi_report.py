"""The HTML KPI report: written by the pipeline after the publish, per as-of date plus latest.html,
and opened in a real headless Chromium with the network off: every chart drew, the numbers on the
page are the marts', no page errors, no request other than file: / data:.

One pipeline run (a two-date backfill of a 3 000-customer sample, so there is a previous as-of
slice) serves every test here: about 25 s, plus 10-20 s for the browser."""

import datetime as dt
import json
import os
import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from plotly.offline import get_plotlyjs

from dagster_project.cli import main as loyalty
from dagster_project.config import LoyaltyConfig
from dagster_project.kpi_report import data as report_data
from dagster_project.kpi_report.assets import REPORT_KEY
from dagster_project.kpi_report.data import ReportDataError, load_report_data
from dagster_project.kpi_report.page import render_report
from dagster_project.resources import LoyaltySettings
from dagster_project.runner import run_pipeline
from dagster_project.sample_data import generate_sample

AS_OF = dt.date(2026, 10, 31)
PREVIOUS = dt.date(2026, 10, 30)
MIN_RESPONSES = 5  # the 3 000-customer sample has few answers per flow cell
CHROMIUM = os.environ.get("LOYALTY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTHS = {"desktop": 1440, "laptop": 1280}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("kpi_report")
    generate_sample(root / "raw", customers=3000, seed=11)
    settings = LoyaltySettings(
        as_of_date=AS_OF.isoformat(),
        raw_dir=str(root / "raw"),
        warehouse=str(root / "warehouse.duckdb"),
        overrides_json=json.dumps({
            "publish_dir": str(root / "published"),
            "export_dir": str(root / "exports"),
            "report_min_nps_responses": MIN_RESPONSES,
        }),
    )
    outcome = run_pipeline(settings, log_level="WARNING", as_of_dates=[PREVIOUS, AS_OF])
    assert outcome.success, outcome.failure
    return root / "published", outcome


@pytest.fixture(scope="module")
def published(pipeline):
    return pipeline[0]


def query(database: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def number(text: str) -> float:
    """'1 284 714 061 SEK' -> 1284714061.0; '−3.7' -> -3.7; '64.1 %' -> 64.1."""
    cleaned = re.sub(r"[\s\u00a0\u202f]|SEK|%|pp", "", text).replace("−", "-").lstrip("+")
    return float(cleaned)


def test_a_report_per_date_and_latest_is_the_newest(published):
    folder = published / "report"
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["latest.html", "loyalty_report_2026-10-30.html", "loyalty_report_2026-10-31.html"]
    latest = (folder / "latest.html").read_text(encoding="utf-8")
    assert latest == (folder / "loyalty_report_2026-10-31.html").read_text(encoding="utf-8")
    assert "as of 2026-10-31" in latest
    assert "as of 2026-10-30" in (folder / "loyalty_report_2026-10-30.html").read_text(encoding="utf-8")


def test_the_asset_runs_after_the_publish_and_carries_path_preview_and_segment_table(pipeline):
    from dagster_project.config import LoyaltyConfig
    from dagster_project.definitions import build_definitions

    graph = build_definitions(LoyaltyConfig()).resolve_asset_graph()
    assert graph.get(REPORT_KEY).parent_keys == {dg.AssetKey(["published", "warehouse"])}
    published, outcome = pipeline
    materializations = [
        event.materialization for event in outcome.result.get_asset_materialization_events()
        if event.materialization.asset_key == REPORT_KEY
    ]
    # A single-run backfill of two dates: one materialization per partition, the same metadata.
    assert sorted(m.partition for m in materializations) == [PREVIOUS.isoformat(), AS_OF.isoformat()]
    metadata = materializations[-1].metadata
    assert metadata["path"].value == str(published / "report" / "loyalty_report_2026-10-31.html")
    assert metadata["latest"].value == str(published / "report" / "latest.html")
    assert metadata["reports_written"].value == 2
    database = published / "warehouse.duckdb"
    (customers,), = query(database, "select customers from marts.segment_clv where as_of_date = ?"
                                    " and period_index = 0 and value_segment = 'total'", [AS_OF])
    preview = metadata["preview"].value
    assert "| Active customers |" in preview and f"| {customers:,d} |".replace(",", "\u00a0") in preview
    records = {r.data["segment"]: r.data for r in metadata["segment_kpis"].records}
    assert set(records) == {"super", "top", "middle", "bottom", "total"}
    assert records["total"]["customers"] == customers


def test_plotly_js_is_inlined_once_and_nothing_is_loaded_from_outside(published):
    html = (published / "report" / "latest.html").read_text(encoding="utf-8")
    head, body = html.split("</head>", 1)
    signature = get_plotlyjs()[:300]
    assert head.count(signature) == 1 and body.count(signature) == 0
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=", html)
    assert "@import" not in html


def test_sections_of_missing_marts_are_left_out(published, tmp_path):
    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes((published / "warehouse.duckdb").read_bytes())
    with duckdb.connect(str(copy)) as con:
        con.execute("drop table marts.nps_by_flow")
        con.execute("drop table marts.lifecycle_kpis")
        con.execute("drop table marts.clv_calibration")
    html = render_report(load_report_data(copy, AS_OF), LoyaltyConfig())
    assert 'id="section-nps-flows"' not in html and 'id="section-lifecycle"' not in html
    assert 'id="section-clv_calibration"' not in html and 'id="clv-calibration-segments"' not in html
    assert 'id="section-flows"' in html and 'id="section-clv"' in html
    # The full report has the calibration (its mart exists); next best offer has no mart yet:
    # no section, no empty chart.
    full = (published / "report" / "latest.html").read_text(encoding="utf-8")
    assert 'id="section-nps-flows"' in full and 'id="section-lifecycle"' in full and 'id="section-clv_calibration"' in full
    assert 'id="section-next_best_offer_summary"' not in full


def test_an_optional_mart_gets_its_section_when_it_exists(published, tmp_path):
    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes((published / "warehouse.duckdb").read_bytes())
    with duckdb.connect(str(copy)) as con:
        # The sample has no offers: the mart is there but holds no slice (and the report no section).
        assert con.execute("select count(*) from marts.next_best_offer_summary").fetchone()[0] == 0
        con.execute("insert into marts.next_best_offer_summary values (?, 'ranked', 40, 52, 1300.25, 120, 0.125, 0.5),"
                    " (?, 'total', 50, 52, 1300.25, 150, 0.11, 0.45)", [AS_OF, AS_OF])
    html = render_report(load_report_data(copy, AS_OF), LoyaltyConfig())
    assert 'id="section-next_best_offer_summary"' in html and "ranked offer" in html and "1\u00a0300\u00a0SEK" in html


def test_loyalty_report_html_writes_one_from_the_published_copy(published, tmp_path, capsys):
    out = tmp_path / "by_hand.html"
    assert loyalty(["report", "--html", "--publish-dir", str(published), "--as-of", "2026-10-30", "--out", str(out)]) == 0
    assert f"report as of 2026-10-30: {out}" in capsys.readouterr().out
    assert "Loyalty KPI report · as of 2026-10-30" in out.read_text(encoding="utf-8")
    assert loyalty(["report", "--html", "--publish-dir", str(published), "--as-of", "2020-01-01", "--out", str(out)]) == 2
    assert "no slice as of 2020-01-01" in capsys.readouterr().err
    with pytest.raises(ReportDataError, match="not found"):
        report_data.load_report_data(tmp_path / "absent.duckdb")


# ----------------------------------------------------------------------------------------------
# In the browser
# ----------------------------------------------------------------------------------------------

DRAWN = """() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(d => [d.id, {
    heatmap_images: d.querySelectorAll('.hm image').length,
    heatmap_texts: [...d.querySelectorAll('.hm text')].map(t => [...t.querySelectorAll('tspan')].map(s => s.textContent)),
    bars: [...d.querySelectorAll('.bars path')].filter(p => (p.getAttribute('d') || '').length > 8).length,
    lines: [...d.querySelectorAll('.scatterlayer path.js-line')].filter(p => (p.getAttribute('d') || '').length > 8).length,
    sankey_links: [...d.querySelectorAll('.sankey-link')].filter(p => (p.getAttribute('d') || '').length > 8).length,
    sankey_values: d.data && d.data[0].type === 'sankey' ? d.data[0].link.value : null,
}]))"""


def _table(page, table_id: str) -> list[list[str]]:
    return page.evaluate(
        f"() => [...document.querySelectorAll('#{table_id} tbody tr')].map(r => [...r.querySelectorAll('th, td')].map(c => c.textContent.trim()))"
    )


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser test needs Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.mark.parametrize("width_name", sorted(WIDTHS))
def test_report_in_a_browser_draws_every_chart_with_the_marts_numbers(published, browser, width_name, tmp_path):
    database = published / "warehouse.duckdb"
    context = browser.new_context(offline=True, viewport={"width": WIDTHS[width_name], "height": 900})
    page = context.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))
    page.goto((published / "report" / "latest.html").as_uri())
    page.wait_for_function(
        "() => { const d = [...document.querySelectorAll('.js-plotly-plot')];"
        " return d.length > 0 && d.every(x => x._fullLayout); }", timeout=30_000)
    page.wait_for_timeout(300)
    shots = Path(os.environ.get("LOYALTY_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"report_{width_name}_{WIDTHS[width_name]}.png"), full_page=True)

    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests

    drawn = page.evaluate(DRAWN)
    # Two slices in the marts: the trend over the as-of dates is drawn too.
    # The predictive CLV marts exist (the sample fits): their calibration section draws two charts.
    assert set(drawn) == {"flow-heatmap", "flow-sankey", "clv-bars", "lorenz", "retention-pairs",
                          "retention-trend", "nps-segments", "nps-flows",
                          "clv-calibration-segments", "clv-calibration-deciles"}
    calibration = query(database, "select group_value, predicted_purchases, actual_purchases from marts.clv_calibration"
                                  " where as_of_date = ? and grouping = 'value_segment'", [AS_OF])
    assert drawn["clv-calibration-segments"]["bars"] == 2 * len([g for g, _, _ in calibration if g != "total"])
    assert drawn["clv-calibration-deciles"]["lines"] == 2
    rows = _table(page, "clv-calibration-table")
    assert rows[-1][0] == "Total"
    total = next((p, a) for g, p, a in calibration if g == "total")
    assert (number(rows[-1][2]), number(rows[-1][3])) == (round(total[0]), total[1])
    cells = query(database, "select customers from marts.segment_flow_matrix"
                            " where as_of_date = ? and period_index = 0 and customers > 0", [AS_OF])
    assert drawn["flow-sankey"]["sankey_links"] == len(cells)
    assert sorted(drawn["flow-sankey"]["sankey_values"]) == sorted(c for (c,) in cells)
    assert drawn["flow-heatmap"]["heatmap_images"] == 1
    assert sorted(number(texts[0]) for texts in drawn["flow-heatmap"]["heatmap_texts"]) == sorted(c for (c,) in cells)
    assert drawn["clv-bars"]["bars"] == 8  # CLV and portfolio value of four segments
    assert drawn["nps-segments"]["bars"] == 10  # four segments and total, two periods
    assert drawn["lorenz"]["lines"] == 2 and drawn["retention-pairs"]["lines"] == 5 and drawn["retention-trend"]["lines"] == 5
    nps_cells = query(database, "select nps from marts.nps_by_flow where as_of_date = ? and period_index = 0"
                                " and responses >= ? order by nps", [AS_OF, MIN_RESPONSES])
    assert drawn["nps-flows"]["bars"] == len(nps_cells) > 0

    # Headline tiles = the marts (period 0 of 2026-10-31), and their change against 2026-10-30.
    customers, revenue, portfolio = query(
        database, "select customers, revenue, portfolio_value from marts.segment_clv"
                  " where as_of_date = ? and period_index = 0 and value_segment = 'total'", [AS_OF])[0]
    (retention,), = query(database, "select retention_rate from marts.segment_retention"
                                    " where as_of_date = ? and period_index = 0 and value_segment = 'total'", [AS_OF])
    (nps,), = query(database, "select nps from marts.nps_by_segment"
                              " where as_of_date = ? and period_index = 0 and value_segment = 'total'", [AS_OF])
    tile = lambda key, role="value": page.inner_text(f"#tile-{key} [data-role={role}]")  # noqa: E731
    assert number(tile("customers")) == customers
    assert number(tile("revenue")) == round(float(revenue))
    assert number(tile("portfolio")) == round(portfolio)
    assert number(tile("retention")) == round(100 * retention, 1)
    assert number(tile("nps")) == round(nps, 1)
    (previous_customers,), = query(database, "select customers from marts.segment_clv where as_of_date = ?"
                                             " and period_index = 0 and value_segment = 'total'", [PREVIOUS])
    assert number(tile("customers", "vs-slice")) == round(100 * (customers / previous_customers - 1), 1)
    (earlier_customers,), = query(database, "select customers from marts.segment_clv where as_of_date = ?"
                                            " and period_index = 1 and value_segment = 'total'", [AS_OF])
    assert number(tile("customers", "vs-period")) == round(100 * (customers / earlier_customers - 1), 1)

    # The CLV table's customers, CLV and portfolio value per segment.
    clv = {segment: (c, v, p) for segment, c, v, p in query(
        database, "select value_segment, customers, clv, portfolio_value from marts.segment_clv"
                  " where as_of_date = ? and period_index = 0", [AS_OF])}
    rows = _table(page, "clv-table")
    assert [row[0].split("\u00a0")[0].split(" ")[0].lower() for row in rows] == ["super", "top", "middle", "bottom", "total"]
    for row in rows:
        segment = row[0].split("\u00a0")[0].split(" ")[0].lower()
        assert number(row[1]) == clv[segment][0], row
        assert number(row[8]) == round(clv[segment][1]), row
        assert number(row[11]) == round(clv[segment][2]), row

    # The concentration sentence and the lowest NPS per flow.
    shares = query(database, "select cumulative_customer_share, cumulative_revenue_share from marts.value_deciles"
                             " where as_of_date = ? and period_index = 0 and cumulative_revenue_share >= 0.8"
                             " order by value_decile limit 1", [AS_OF])[0]
    sentence = page.inner_text("#concentration-sentence")
    x, y = (number(part) for part in re.findall(r"[\d.]+\s?%", sentence))
    assert (x, y) == (round(100 * shares[0], 1), round(100 * shares[1], 1)), sentence
    assert sentence.endswith("of the customers stood for " + sentence.split("stood for ")[1])
    assert page.inner_text("#nps-flow-lowest").endswith(f"NPS {nps_cells[0][0]:.1f}".replace("-", "−"))
    context.close()


def test_period_bounds_are_the_marts_periods(published):
    from dagster_project.kpi_report.style import period_bounds

    rows = query(published / "warehouse.duckdb",
                 "select distinct period_index, period_start, period_end from marts.customer_period_facts"
                 " where as_of_date = ? order by 1", [AS_OF])
    assert len(rows) >= 3
    for period_index, start, end in rows:
        assert period_bounds(AS_OF, period_index, 12) == (start, end), period_index
    # Month ends clamp like the marts' dateadd: 31 March − 1 month = 29 February in a leap year.
    assert period_bounds(dt.date(2024, 3, 31), 0, 1) == (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    assert period_bounds(dt.date(2024, 3, 31), 1, 1) == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))


@pytest.mark.parametrize("key, now, before, expected", [
    ("customers", 101_811, 94_387, "+7.9\u00a0%"),
    ("revenue", 90.0, 100.0, "−10.0\u00a0%"),
    ("retention", 0.644, 0.65, "−0.6\u00a0pp"),
    ("nps", 22.6, 17.7, "+4.9"),
    ("portfolio", 1.0, None, None),
    ("customers", 5, 0, None),
])
def test_changes_are_relative_for_amounts_and_in_points_for_rates(key, now, before, expected):
    from dagster_project.kpi_report.style import change

    assert change(key, now, before) == expected


def test_numbers_are_formatted_for_reading():
    from dagster_project.kpi_report import style

    assert style.integer(1_284_714_061.4) == "1\u00a0284\u00a0714\u00a0061"
    assert style.money(257_695_394, "EUR") == "257\u00a0695\u00a0394\u00a0EUR"
    assert style.percent(0.64434) == "64.4\u00a0%"
    assert style.nps(-12.04) == "−12.0" and style.nps(None) == style.MISSING
    assert style.segment_labels(LoyaltyConfig()) == {
        "super": "Super 5\u00a0%", "top": "Top 15\u00a0%", "middle": "Middle 50\u00a0%", "bottom": "Bottom 30\u00a0%",
        "total": "Total"}
    config = LoyaltyConfig(segment_cutoffs={"super": 0.1, "top": 0.3, "middle": 0.8})
    assert style.segment_labels(config)["top"] == "Top 20\u00a0%"


def test_the_asset_alone_writes_older_dates_without_moving_latest_and_skips_dates_without_a_slice(published, tmp_path):
    from dagster_project.kpi_report.assets import build_report_assets

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "warehouse.duckdb").write_bytes((published / "warehouse.duckdb").read_bytes())
    [asset] = build_report_assets(None, None)  # unpartitioned: the as-of date comes from the settings

    def materialize(as_of: str):
        settings = LoyaltySettings(as_of_date=as_of, overrides_json=json.dumps({"publish_dir": str(folder)}))
        result = dg.materialize([asset], resources={"settings": settings}, raise_on_error=True)
        [event] = result.get_asset_materialization_events()
        return event.materialization.metadata

    assert materialize("2026-10-31")["reports_written"].value == 1
    latest = (folder / "report" / "latest.html").read_bytes()
    assert materialize("2026-10-30")["reports_written"].value == 1
    assert (folder / "report" / "latest.html").read_bytes() == latest  # still the newest slice's page
    assert b"as of 2026-10-31" in latest
    # A date the marts have no slice for (e.g. less than two periods of data): no page, no failure.
    assert materialize("2019-06-30")["reports_written"].value == 0
    assert sorted(p.name for p in (folder / "report").iterdir()) == [
        "latest.html", "loyalty_report_2026-10-30.html", "loyalty_report_2026-10-31.html"]


def test_no_thumbnails_without_kaleido(published, monkeypatch):
    from dagster_project.kpi_report import thumbnails as module
    from dagster_project.kpi_report.page import build_figures

    figures = build_figures(load_report_data(published / "warehouse.duckdb", AS_OF), LoyaltyConfig())
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    messages = []
    assert module.thumbnails({"clv-bars": figures["clv-bars"]}, messages.append) == {}
    assert messages == ["report: no thumbnails (kaleido is not installed: pip install '.[thumbnails]')"]


def test_thumbnails_are_pngs_in_the_preview_only_when_report_thumbnails_is_true(published, tmp_path):
    """kaleido is in the test environment (requirements.lock) and `make test` provides the
    Chromium, so this renders for real: two PNGs of the thumbnail size in the markdown preview."""
    import base64
    import struct

    from dagster_project.kpi_report.assets import THUMBNAIL_CHARTS, build_report_assets
    from dagster_project.kpi_report.thumbnails import SIZE

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "warehouse.duckdb").write_bytes((published / "warehouse.duckdb").read_bytes())
    [asset] = build_report_assets(None, None)

    def materialize(**overrides):
        settings = LoyaltySettings(as_of_date=AS_OF.isoformat(), overrides_json=json.dumps({"publish_dir": str(folder), **overrides}))
        [event] = dg.materialize([asset], resources={"settings": settings}, raise_on_error=True).get_asset_materialization_events()
        return event.materialization.metadata

    metadata = materialize(report_thumbnails=True)
    preview = metadata["preview"].value
    images = re.findall(r"!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", preview)
    assert metadata["thumbnails"].value == 2
    assert [title for title, _ in images] == list(THUMBNAIL_CHARTS.values())
    for _, image in images:
        png = base64.b64decode(image)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert struct.unpack(">II", png[16:24]) == SIZE  # IHDR: width, height
    # The default leaves kaleido alone: no thumbnails, the same preview otherwise.
    default = materialize()
    assert default["thumbnails"].value == 0 and "data:image/png" not in default["preview"].value
    assert preview.startswith(default["preview"].value + "\n\n![")

"""Renders the report page: the figures of ``charts`` and the tables (Great Tables) into the
Jinja2 template, with plotly.js inlined once in <head>. Writes nothing: returns the HTML."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import great_tables as gt
import jinja2
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from ..config import SEGMENTS, LoyaltyConfig
from . import charts, style
from .data import OPTIONAL_SECTIONS, ReportData

TEMPLATES = Path(__file__).resolve().parent / "templates"
HEADLINE_LABELS = {
    "customers": ("Active customers", "aktiva kunder"),
    "revenue": ("Revenue", "omsättning"),
    "retention": ("Retention", "kvarvaro"),
    "portfolio": ("Portfolio value", "portföljvärde"),
    "nps": ("NPS", "rekommendationsvilja"),
}
# The share of value the concentration sentence aims at ("26 % of the customers stood for 82 %").
CONCENTRATION_TARGET = 0.8


@dataclasses.dataclass(frozen=True)
class Tile:
    key: str
    label: str
    swedish: str
    value: str
    vs_previous_slice: str | None
    vs_period_earlier: str | None


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _figure_html(figure, div_id: str) -> str:
    return pio.to_html(
        figure,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        default_height=f"{figure.layout.height}px",
        config={"displayModeBar": False, "responsive": True},
    )


def headline_value(key: str, value, config: LoyaltyConfig) -> str:
    if key == "customers":
        return style.integer(value)
    if key in ("revenue", "portfolio"):
        return style.money(value, config.currency)
    if key == "retention":
        return style.percent(value)
    return style.nps(value)


def tiles(data: ReportData, config: LoyaltyConfig) -> list[Tile]:
    return [
        Tile(
            key=h.key,
            label=HEADLINE_LABELS[h.key][0],
            swedish=HEADLINE_LABELS[h.key][1],
            value=headline_value(h.key, h.value, config),
            vs_previous_slice=style.change(h.key, h.value, h.previous_slice),
            vs_period_earlier=style.change(h.key, h.value, h.period_earlier),
        )
        for h in data.headlines
    ]


def concentration(data: ReportData) -> tuple[float, float] | None:
    """(customer share, value share) of the fewest most-valuable deciles holding ≥ 80 % of the value."""
    if data.deciles.empty:
        return None
    for _, row in data.deciles.iterrows():
        if row["cumulative_revenue_share"] >= CONCENTRATION_TARGET - 1e-12:
            return float(row["cumulative_customer_share"]), float(row["cumulative_revenue_share"])
    last = data.deciles.iloc[-1]
    return float(last["cumulative_customer_share"]), float(last["cumulative_revenue_share"])


def _table(frame: pd.DataFrame, table_id: str, labels: dict[str, str], segment_column: str | None = None,
           bold_last: bool = False) -> str:
    table = gt.GT(frame, id=table_id).cols_label(**labels).cols_align("right").cols_align("left", columns=[frame.columns[0]])
    if segment_column is not None:
        for index, key in enumerate(frame["_segment"]):
            colour = style.SEGMENT_COLOURS.get(key)
            if colour:
                table = table.tab_style(gt.style.text(color=colour, weight="bold"), gt.loc.body(columns=segment_column, rows=[index]))
    if "_segment" in frame.columns:
        table = table.cols_hide("_segment")
    if bold_last:
        table = table.tab_style(gt.style.text(weight="bold"), gt.loc.body(rows=[len(frame) - 1]))
    table = table.tab_options(table_font_size="13px", column_labels_font_weight="bold", table_width="100%")
    return table.as_raw_html()


def clv_table(data: ReportData, config: LoyaltyConfig) -> str:
    labels = style.segment_labels(config)
    c = config.currency
    rows = []
    for _, r in data.clv.iterrows():
        rows.append({
            "segment": labels.get(r["value_segment"], r["value_segment"]),
            "customers": style.integer(r["customers"]),
            "duration": style.decimal(r["duration_years"], 2),
            "purchases": style.integer(r["purchases"]),
            "revenue": style.integer(r["revenue"]),
            "ppc": style.decimal(r["purchases_per_customer"], 2),
            "rpp": style.decimal(r["revenue_per_purchase"], 2),
            "rpc": style.integer(r["revenue_per_customer"]),
            "clv": style.integer(r["clv"]),
            "clv_index": style.decimal(r["clv_index"], 1),
            "retention": style.percent(r["retention_rate"]),
            "portfolio": style.integer(r["portfolio_value"]),
            "_segment": r["value_segment"],
        })
    frame = pd.DataFrame(rows)
    return _table(frame, "clv-table", {
        "segment": "segment", "customers": "customers", "duration": "duration (years)", "purchases": "purchases",
        "revenue": f"revenue {c}", "ppc": "purchases / customer", "rpp": f"revenue / purchase", "rpc": f"revenue / customer / year",
        "clv": f"CLV {c}", "clv_index": "CLV index", "retention": "retention", "portfolio": f"portfolio value {c}",
    }, segment_column="segment", bold_last=True)


def flow_table(data: ReportData, config: LoyaltyConfig) -> str:
    """The flow matrix as DOMAIN.md prints it: to-segment rows, from-columns; customers · purchases · revenue/customer."""
    latest, previous = style.period_names(config)
    labels = style.segment_labels(config)
    cells = charts.flow_cells(data.flows)
    rows = []
    for target in (*SEGMENTS, "lost"):
        row: dict[str, Any] = {"to": f"{labels[target]} ({latest})" if target != "lost" else f"lost · förlorade ({previous} revenue)",
                               "_segment": target}
        total = 0
        for source in charts.FLOW_SOURCES:
            cell = cells.get((source, target))
            if cell is None:
                row[source] = ""
                continue
            total += int(cell["customers"])
            if target == "lost":
                row[source] = f"{style.integer(cell['customers'])} · {style.money(cell['revenue'], config.currency)}"
            else:
                row[source] = " · ".join([style.integer(cell["customers"]), style.integer(cell["purchases"]),
                                          style.integer(cell["revenue_per_customer"])])
        row["total"] = style.integer(total)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return _table(frame, "flow-table", {
        "to": "to \\ from", **{s: f"from {s}" for s in SEGMENTS}, "recovered": "recovered · återvunna", "new": "new · nya",
        "total": "customers",
    }, segment_column="to")


def retention_table(data: ReportData, config: LoyaltyConfig) -> str:
    labels = style.segment_labels(config)
    latest = data.retention[data.retention["period_index"] == 0]
    rows = [{
        "segment": labels.get(r["value_segment"], r["value_segment"]),
        "base": style.integer(r["base_customers"]),
        "retained": style.integer(r["retained_customers"]),
        "lost": style.integer(r["lost_customers"]),
        "retention": style.percent(r["retention_rate"]),
        "churn": style.percent(r["churn_rate"]),
        "duration": style.decimal(r["duration_years"], 2),
        "_segment": r["value_segment"],
    } for _, r in latest.iterrows()]
    previous = style.period_names(config)[1]
    return _table(pd.DataFrame(rows), "retention-table", {
        "segment": f"segment in {previous}", "base": f"customers in {previous}", "retained": "still active",
        "lost": "lost · förlorade", "retention": "retention", "churn": "churn", "duration": "duration (years)",
    }, segment_column="segment", bold_last=True)


def nps_segment_table(data: ReportData, config: LoyaltyConfig) -> str | None:
    labels = style.segment_labels(config)
    latest = data.nps_segments[data.nps_segments["period_index"] == 0]
    if latest.empty:
        return None
    rows = [{
        "segment": labels.get(r["value_segment"], r["value_segment"]),
        "responses": style.integer(r["responses"]),
        "promoters": style.integer(r["promoters"]),
        "passives": style.integer(r["passives"]),
        "detractors": style.integer(r["detractors"]),
        "nps": style.nps(r["nps"]),
        "_segment": r["value_segment"],
    } for _, r in latest.iterrows()]
    return _table(pd.DataFrame(rows), "nps-segment-table", {
        "segment": "segment", "responses": "answers", **{name: f"{name} ({band})" for name, band in style.nps_bands(config).items()},
        "nps": "NPS",
    }, segment_column="segment", bold_last=True)


def nps_flow_cells(data: ReportData, config: LoyaltyConfig) -> pd.DataFrame | None:
    """Flow cells of the latest pair with at least ``report_min_nps_responses`` answers, by NPS."""
    if data.nps_flows is None:
        return None
    cells = data.nps_flows[data.nps_flows["responses"] >= config.report_min_nps_responses]
    return cells.sort_values(["nps", "responses"], ascending=[True, False]).reset_index(drop=True)


def nps_flow_table(cells: pd.DataFrame, config: LoyaltyConfig) -> str:
    rows = [{
        "cell": charts.nps_flow_label(r, config),
        "flow": style.FLOW_SHORT[r["flow"]],
        "customers": style.integer(r["customers"]),
        "responses": style.integer(r["responses"]),
        "promoters": style.integer(r["promoters"]),
        "passives": style.integer(r["passives"]),
        "detractors": style.integer(r["detractors"]),
        "nps": style.nps(r["nps"]),
        "_segment": "lost" if r["flow"] == "lost" else r["to_segment"],
    } for _, r in cells.iterrows()]
    return _table(pd.DataFrame(rows), "nps-flow-table", {
        "cell": "from → to", "flow": "kundflöde", "customers": "customers", "responses": "answers",
        "promoters": "promoters", "passives": "passives", "detractors": "detractors", "nps": "NPS",
    }, segment_column="cell")


LIFECYCLE_SEGMENTS = (*SEGMENTS, "none", "total")


def lifecycle_tables(data: ReportData, config: LoyaltyConfig) -> tuple[str, str] | None:
    if data.lifecycle is None:
        return None
    labels = style.segment_labels(config) | {"none": "no purchase in period"}
    grid = data.lifecycle
    rows = []
    for stage, stage_rows in grid.groupby("stage_order", sort=True):
        first = stage_rows.iloc[0]
        row: dict[str, Any] = {"stage": style.STAGE_LABELS.get(first["lifecycle_stage"], first["lifecycle_stage"]),
                               "_segment": ""}
        for segment in LIFECYCLE_SEGMENTS:
            cell = stage_rows[stage_rows["value_segment"] == segment]
            row[segment] = "" if cell.empty else f"{style.integer(cell.iloc[0]['customers'])} ({style.percent(cell.iloc[0]['share_of_base'])})"
        rows.append(row)
    grid_html = _table(pd.DataFrame(rows), "lifecycle-grid", {"stage": "stage", **{s: labels[s] for s in LIFECYCLE_SEGMENTS}},
                       bold_last=True)
    totals = grid[grid["value_segment"] == "total"].set_index("lifecycle_stage")
    c = config.currency

    def value(stage: str, column: str):
        return totals[column].get(stage) if stage in totals.index else None

    kpis = pd.DataFrame([
        {"kpi": "new customers in the period · nya kunder", "value": style.integer(value("new", "new_customers_in_period"))},
        {"kpi": f"activation rate (second purchase day within {config.new_customer_days} days)",
         "value": style.percent(value("new", "activation_rate"))},
        {"kpi": "onboarding NPS (answers)", "value": f"{style.nps(value('new', 'onboarding_nps'))} ({style.integer(value('new', 'onboarding_nps_responses'))})"},
        {"kpi": "win-backs in the period · återvunna", "value": style.integer(value("won_back", "win_backs_in_period"))},
        {"kpi": "lost in the period · förlorade", "value": style.integer(value("lost", "lost_in_period"))},
        {"kpi": "value lost (their revenue the year before)", "value": style.money(value("lost", "lost_value"), c)},
        {"kpi": "revenue last 12 months, all customers", "value": style.money(value("total", "revenue_12m"), c)},
    ])
    kpi_html = _table(kpis, "lifecycle-kpis", {"kpi": "stage KPI", "value": "value"})
    return grid_html, kpi_html


# Optional marts with a section of their own (charts and a formatted table); the others get a plain table.
OWN_SECTIONS = ("clv_calibration", "next_best_offer_summary")

ARM_LABELS = {"ranked": "ranked offer", "random": "random eligible offer", "control": "control group (no offer)", "total": "all customers"}


def next_best_offer_section(data: ReportData, config: LoyaltyConfig) -> dict[str, Any] | None:
    """Tonight's decision per arm (customers, offers assigned, their expected value) and what the
    closed contacts so far show (response rate, lift against the control arm); None without the mart."""
    frame = data.optional.get("next_best_offer_summary")
    if frame is None or frame.empty:
        return None
    rows = frame.set_index("arm")
    order = [arm for arm in ("ranked", "random", "control", "total") if arm in rows.index]
    table = pd.DataFrame([{
        "arm": ARM_LABELS[arm],
        "customers": style.integer(rows.at[arm, "customers"]),
        "offers": style.integer(rows.at[arm, "offers_assigned"]),
        "value": style.money(rows.at[arm, "expected_value"], config.currency),
        "contacts": style.integer(rows.at[arm, "contacts"]),
        "rate": style.percent(rows.at[arm, "response_rate"]),
        "lift": style.percent(rows.at[arm, "lift"]),
    } for arm in order])
    return {"table": _table(table, "next-best-offer-table", {
        "arm": "arm", "customers": "customers", "offers": "offers assigned tonight", "value": "their expected value",
        "contacts": "contacts so far (closed windows)", "rate": "response rate", "lift": "lift against control",
    }, bold_last=order[-1] == "total")}


def calibration_section(data: ReportData, config: LoyaltyConfig) -> dict[str, Any] | None:
    """The predictive CLV calibration: the fit on the history up to the cut-off, predicting the
    period after it, against what happened; None without the mart."""
    frame = data.optional.get("clv_calibration")
    if frame is None or frame.empty:
        return None
    labels = {**style.segment_labels(config), "none": "none · ej aktiva"}
    rows = frame[frame["grouping"] == "value_segment"].set_index("group_value")
    order = [s for s in (*charts.CALIBRATION_SEGMENTS, "total") if s in rows.index]
    c = config.currency
    table = pd.DataFrame([{
        "segment": labels[s],
        "customers": style.integer(rows.at[s, "customers"]),
        "predicted": style.integer(rows.at[s, "predicted_purchases"]),
        "actual": style.integer(rows.at[s, "actual_purchases"]),
        "bias": style.percent(rows.at[s, "purchases_bias"]),
        "mae": style.decimal(rows.at[s, "purchases_mae"], 2),
        "predicted_revenue": style.money(rows.at[s, "predicted_revenue"], c),
        "actual_revenue": style.money(rows.at[s, "actual_revenue"], c),
        "revenue_bias": style.percent(rows.at[s, "revenue_bias"]),
        "alive": style.integer(rows.at[s, "predicted_alive_customers"]),
        "alive_bought": style.percent(rows.at[s, "predicted_alive_purchased_share"]),
        "_segment": s,
    } for s in order])
    history_end = pd.Timestamp(frame["history_end_date"].iloc[0]).date()
    return {
        "history_end": history_end.isoformat(),
        "model": {"mbg_nbd": "MBG/NBD", "bg_nbd": "BG/NBD"}.get(str(frame["model"].iloc[0]), str(frame["model"].iloc[0])),
        "table": _table(table, "clv-calibration-table", {
            "segment": "segment at the cut-off", "customers": "customers", "predicted": "predicted purchases",
            "actual": "actual purchases", "bias": "bias", "mae": "mean abs. error", "predicted_revenue": "predicted revenue",
            "actual_revenue": "actual revenue", "revenue_bias": "revenue bias", "alive": "predicted alive",
            "alive_bought": "of them bought",
        }, segment_column="segment", bold_last=order[-1] == "total"),
    }


def optional_tables(data: ReportData) -> list[dict[str, str]]:
    """A plain table per optional mart present without a section of its own (next best offer …)."""
    sections = []
    for name, frame in data.optional.items():
        if name in OWN_SECTIONS:
            continue
        shown = frame.drop(columns=["as_of_date"], errors="ignore").head(50)
        formatted = shown.map(lambda v: style.decimal(v, 2) if isinstance(v, float) else ("" if v is None else str(v)))
        sections.append({"id": f"section-{name}", "title": OPTIONAL_SECTIONS[name], "mart": name,
                         "table": gt.GT(formatted, id=f"table-{name}").as_raw_html()})
    return sections


def build_figures(data: ReportData, config: LoyaltyConfig) -> dict[str, Any]:
    """Every chart of the page by its element id (charts without data are left out)."""
    point = concentration(data)
    flow_cells = nps_flow_cells(data, config)
    trend = charts.retention_trend(data, config)
    figures = {
        "flow-heatmap": charts.flow_heatmap(data, config),
        "flow-sankey": charts.flow_sankey(data, config),
        "clv-bars": charts.clv_bars(data, config),
        "lorenz": charts.lorenz_curve(data, config, point),
        "retention-pairs": charts.retention_over_pairs(data, config),
    }
    nps_chart = charts.nps_by_segment(data, config)
    if nps_chart is not None:
        figures["nps-segments"] = nps_chart
    if trend is not None:
        figures["retention-trend"] = trend
    if flow_cells is not None and not flow_cells.empty:
        figures["nps-flows"] = charts.nps_by_flow(flow_cells, config)
    calibration = data.optional.get("clv_calibration")
    if calibration is not None and not calibration.empty:
        figures["clv-calibration-segments"] = charts.calibration_by_segment(calibration, config)
        figures["clv-calibration-deciles"] = charts.calibration_by_decile(calibration)
    return figures


def render_report(
    data: ReportData, config: LoyaltyConfig, generated_at: dt.datetime | None = None, figures: dict[str, Any] | None = None
) -> str:
    """The whole page as one string: self-contained, no request of any kind when opened.
    ``figures``: build_figures(data, config) if the caller has built them already."""
    latest, previous = style.period_names(config)
    s_start, s_end = style.period_bounds(data.as_of, 0, config.period_months)
    f_start, f_end = style.period_bounds(data.as_of, 1, config.period_months)
    point = concentration(data)
    flow_cells = nps_flow_cells(data, config)
    lifecycle = lifecycle_tables(data, config)
    figures = build_figures(data, config) if figures is None else figures
    lowest = None
    if flow_cells is not None and not flow_cells.empty:
        row = flow_cells.iloc[0]
        lowest = f"{charts.nps_flow_label(row, config)} ({style.FLOW_LABELS[row['flow']]}): NPS {style.nps(row['nps'])}"
    labels = style.segment_labels(config)
    context = {
        "as_of": data.as_of.isoformat(),
        "previous_as_of": data.previous_as_of.isoformat() if data.previous_as_of else None,
        "slices": len(data.as_of_dates),
        "generated_at": (generated_at or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        "latest": latest,
        "previous": previous,
        "latest_span": f"{s_start.isoformat()} – {s_end.isoformat()}",
        "previous_span": f"{f_start.isoformat()} – {f_end.isoformat()}",
        "period_earlier": style.period_bounds(data.as_of, 1, config.period_months)[1].isoformat(),
        "currency": config.currency,
        "plotlyjs": get_plotlyjs(),
        "tiles": tiles(data, config),
        "figures": {key: _figure_html(fig, key) for key, fig in figures.items()},
        "flow_table": flow_table(data, config),
        "clv_table": clv_table(data, config),
        "retention_table": retention_table(data, config),
        "nps_segment_table": nps_segment_table(data, config),
        "nps_flows_present": data.nps_flows is not None,
        "nps_flow_table": nps_flow_table(flow_cells, config) if flow_cells is not None and not flow_cells.empty else None,
        "nps_flow_lowest": lowest,
        "min_nps_responses": config.report_min_nps_responses,
        "nps_bands": style.nps_bands(config),
        "lifecycle": lifecycle,
        "optional_sections": optional_tables(data),
        "calibration": calibration_section(data, config),
        "next_best_offer": next_best_offer_section(data, config),
        "concentration": (style.percent(point[0]), style.percent(point[1])) if point else None,
        "legend": [(labels[s], style.SEGMENT_COLOURS[s]) for s in SEGMENTS],
        "flow_legend": [(style.FLOW_LABELS[f], style.SEGMENT_COLOURS[f]) for f in ("new", "recovered", "lost")],
    }
    return _environment().get_template("report.html.j2").render(**context)

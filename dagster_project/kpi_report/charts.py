"""The report's plotly figures, one function per chart, from the frames of ``data``.

Colours and labels come from ``style`` only. The figures carry no plotly.js: the page inlines it
once (``page``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..config import SEGMENTS, LoyaltyConfig
from . import style
from .data import ReportData

FLOW_SOURCES = (*SEGMENTS, "recovered", "new")  # rows of the matrix: where the customers came from
FLOW_TARGETS = (*SEGMENTS, "lost")  # columns: where they are now


def _layout(figure: go.Figure, height: int, **extra) -> go.Figure:
    settings = dict(
        height=height,
        margin=dict(l=60, r=24, t=36, b=48),
        font=dict(family=style.FONT_FAMILY, size=13, color="#222"),
        separators=style.PLOTLY_SEPARATORS,
        paper_bgcolor="white",
        plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    figure.update_layout(**(settings | extra))
    figure.update_xaxes(showline=True, linecolor="#bbb", gridcolor="#eee", automargin=True)
    figure.update_yaxes(showline=True, linecolor="#bbb", gridcolor="#eee", zerolinecolor="#bbb", automargin=True)
    return figure


def _source_key(row) -> str:
    return row["flow"] if row["flow"] in ("new", "recovered") else row["from_segment"]


def _target_key(row) -> str:
    return "lost" if row["flow"] == "lost" else row["to_segment"]


def flow_cells(flows: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """(source, target) -> the mart row of that cell."""
    return {(_source_key(row), _target_key(row)): row for _, row in flows.iterrows()}


def flow_heatmap(data: ReportData, config: LoyaltyConfig) -> go.Figure:
    latest, previous = style.period_names(config)
    labels = style.segment_labels(config)
    cells = flow_cells(data.flows)
    rows = [f"from {labels[s]}" for s in SEGMENTS] + ["recovered · återvunna", "new · nya"]
    columns = [f"to {labels[s]}" for s in SEGMENTS] + ["lost · förlorade"]
    z, text, hover = [], [], []
    for source in FLOW_SOURCES:
        z_row, text_row, hover_row = [], [], []
        for target in FLOW_TARGETS:
            cell = cells.get((source, target))
            if cell is None:
                z_row.append(None)
                text_row.append("")
                hover_row.append("")
                continue
            z_row.append(int(cell["customers"]))
            if target == "lost":
                detail = f"{style.money(cell['revenue'], config.currency)} in {previous}"
            else:
                detail = f"{style.money(cell['revenue_per_customer'], config.currency)}/cust."
            text_row.append(f"<b>{style.integer(cell['customers'])}</b><br>{detail}")
            hover_row.append(f"{style.FLOW_LABELS[cell['flow']]}<br>{style.integer(cell['customers'])} customers<br>{detail}")
        z.append(z_row)
        text.append(text_row)
        hover.append(hover_row)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=rows,
            text=text,
            customdata=hover,
            texttemplate="%{text}",
            textfont=dict(size=12),
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=[[0, "#f4f1f9"], [1, "#b9a3dc"]],
            showscale=False,
            xgap=2,
            ygap=2,
        )
    )
    figure.update_yaxes(autorange="reversed", title=f"{previous} (föregående) →", showgrid=False)
    figure.update_xaxes(side="top", title=f"→ {latest} (senaste)", showgrid=False, tickangle=0)
    return _layout(figure, 420, margin=dict(l=170, r=20, t=70, b=20))


def flow_sankey(data: ReportData, config: LoyaltyConfig) -> go.Figure:
    latest, previous = style.period_names(config)
    labels = style.segment_labels(config)
    sources = list(FLOW_SOURCES)
    targets = list(FLOW_TARGETS)
    node_labels = [f"{labels[s]} ({previous})" for s in SEGMENTS] + ["recovered · återvunna", "new · nya"]
    node_labels += [f"{labels[s]} ({latest})" for s in SEGMENTS] + ["lost · förlorade"]
    node_colours = [style.SEGMENT_COLOURS[key] for key in sources + targets]
    link_source, link_target, link_value, link_colour, link_text = [], [], [], [], []
    for (source, target), cell in flow_cells(data.flows).items():
        if int(cell["customers"]) <= 0:
            continue
        link_source.append(sources.index(source))
        link_target.append(len(sources) + targets.index(target))
        link_value.append(int(cell["customers"]))
        link_colour.append(_fade(style.SEGMENT_COLOURS[source], 0.35))
        link_text.append(style.FLOW_LABELS[cell["flow"]])
    # Nodes in segment order in both columns (plotly would otherwise sort them by its own layout).
    out_totals = [sum(v for src, v in zip(link_source, link_value) if src == i) for i in range(len(sources))]
    in_totals = [sum(v for tgt, v in zip(link_target, link_value) if tgt == len(sources) + i) for i in range(len(targets))]
    node_x = [0.001] * len(sources) + [0.999] * len(targets)
    node_y = _stacked_centres(out_totals) + _stacked_centres(in_totals)
    figure = go.Figure(
        go.Sankey(
            arrangement="snap",
            valueformat=",d",
            valuesuffix=" customers",
            node=dict(label=node_labels, color=node_colours, pad=14, thickness=16, line=dict(width=0), x=node_x, y=node_y),
            link=dict(
                source=link_source, target=link_target, value=link_value, color=link_colour, customdata=link_text,
                hovertemplate="%{source.label} → %{target.label}<br>%{customdata}<br>%{value}<extra></extra>",
            ),
        )
    )
    return _layout(figure, 460, margin=dict(l=10, r=10, t=20, b=20))


def _stacked_centres(values: list[int]) -> list[float]:
    """Centres (0 = top … 1 = bottom) of nodes stacked in order, sized by value, with gaps."""
    total = sum(values) or 1
    gap = 0.03
    usable = 1 - gap * (len(values) - 1)
    centres, top = [], 0.0
    for value in values:
        height = usable * value / total
        centres.append(min(0.999, max(0.001, top + height / 2)))
        top += height + gap
    return centres


def _fade(hex_colour: str, alpha: float) -> str:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def clv_bars(data: ReportData, config: LoyaltyConfig) -> go.Figure:
    labels = style.segment_labels(config)
    segments = data.clv[data.clv["value_segment"] != "total"]
    names = [labels[s] for s in segments["value_segment"]]
    colours = [style.SEGMENT_COLOURS[s] for s in segments["value_segment"]]
    figure = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12,
        subplot_titles=(f"CLV per customer ({config.currency})", f"Portfolio value ({config.currency})"),
    )
    figure.add_trace(
        go.Bar(x=names, y=segments["clv"], marker_color=colours, name="CLV",
               text=[style.integer(v) for v in segments["clv"]], textposition="outside", cliponaxis=False,
               hovertemplate="%{x}: %{y:,.0f}<extra>CLV</extra>"),
        row=1, col=1,
    )
    figure.add_trace(
        go.Bar(x=names, y=segments["portfolio_value"], marker_color=colours, name="portfolio value",
               text=[_short_money(v) for v in segments["portfolio_value"]], textposition="outside", cliponaxis=False,
               hovertemplate="%{x}: %{y:,.0f}<extra>portfolio value</extra>"),
        row=1, col=2,
    )
    for column, values in ((1, segments["clv"]), (2, segments["portfolio_value"])):
        top = values.max() if values.notna().any() else 1
        figure.update_yaxes(range=[0, 1.18 * float(top or 1)], exponentformat="B", row=1, col=column)
    return _layout(figure, 380, showlegend=False, margin=dict(l=60, r=20, t=48, b=40))


def _short_money(value) -> str:
    if pd.isna(value):
        return style.MISSING
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):  # as the axis ticks (exponentformat B)
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return style.integer(value)


def lorenz_curve(data: ReportData, config: LoyaltyConfig, highlight: tuple[float, float] | None) -> go.Figure:
    deciles = data.deciles
    x = [0.0] + [float(v) for v in deciles["cumulative_customer_share"]]
    y = [0.0] + [float(v) for v in deciles["cumulative_revenue_share"]]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="equal value",
                                line=dict(color="#aaa", dash="dot"), hoverinfo="skip"))
    figure.add_trace(go.Scatter(
        x=x, y=y, mode="lines+markers", name="value concentration (deciles)",
        line=dict(color=style.SEGMENT_COLOURS["super"], width=3), marker=dict(size=7),
        fill="tonexty", fillcolor=_fade(style.SEGMENT_COLOURS["super"], 0.08),
        customdata=[0] + [int(v) for v in deciles["value_decile"]],
        hovertemplate="deciles 1–%{customdata}: %{x:.1%} of customers, %{y:.1%} of value<extra></extra>",
    ))
    if highlight:
        hx, hy = highlight
        figure.add_trace(go.Scatter(x=[hx], y=[hy], mode="markers", showlegend=False, hoverinfo="skip",
                                    marker=dict(size=13, color=style.SEGMENT_COLOURS["bottom"], line=dict(color="white", width=2))))
        figure.add_annotation(x=hx, y=hy, text=f"{style.percent(hx)} of customers → {style.percent(hy)} of value",
                              showarrow=True, arrowhead=2, ax=70, ay=40, bgcolor="white", bordercolor="#ccc")
    figure.update_xaxes(title="share of customers (most valuable first)", tickformat=".0%", range=[0, 1.0], dtick=0.1)
    figure.update_yaxes(title="share of value (revenue)", tickformat=".0%", range=[0, 1.02], dtick=0.2)
    return _layout(figure, 420)


def pair_label(period_index: int, data: ReportData, config: LoyaltyConfig) -> str:
    """The label of the period pair k+1 → k: the later period's last day (S12 for the latest)."""
    end = style.period_bounds(data.as_of, period_index, config.period_months)[1]
    if period_index == 0:
        latest, previous = style.period_names(config)
        return f"→ {end.isoformat()} ({previous}→{latest})"
    return f"→ {end.isoformat()}"


def retention_over_pairs(data: ReportData, config: LoyaltyConfig) -> go.Figure:
    labels = style.segment_labels(config)
    retention = data.retention
    figure = go.Figure()
    pairs = sorted(retention["period_index"].unique(), reverse=True)
    x = [pair_label(int(k), data, config) for k in pairs]
    for segment in (*SEGMENTS, "total"):
        rows = retention[retention["value_segment"] == segment].set_index("period_index")
        values = [rows["retention_rate"].get(k) for k in pairs]
        figure.add_trace(go.Scatter(
            x=x, y=values, mode="lines+markers", name=labels[segment],
            line=dict(color=style.SEGMENT_COLOURS[segment], width=3 if segment == "total" else 2,
                      dash="dash" if segment == "total" else "solid"),
            marker=dict(size=8), hovertemplate="%{x}: %{y:.1%}<extra>" + labels[segment] + "</extra>",
        ))
    figure.update_yaxes(title="retention", tickformat=".0%", range=[0, 1.02])
    figure.update_xaxes(title="period pair (earlier → later)", type="category")
    return _layout(figure, 380)


def retention_trend(data: ReportData, config: LoyaltyConfig) -> go.Figure | None:
    """Retention F→S of each as-of slice the marts keep; None with fewer than two slices."""
    trend = data.retention_trend
    if trend["as_of_date"].nunique() < 2:
        return None
    labels = style.segment_labels(config)
    figure = go.Figure()
    for segment in (*SEGMENTS, "total"):
        rows = trend[trend["value_segment"] == segment]
        figure.add_trace(go.Scatter(
            x=[pd.Timestamp(d).date().isoformat() for d in rows["as_of_date"]], y=rows["retention_rate"],
            mode="lines+markers", name=labels[segment],
            line=dict(color=style.SEGMENT_COLOURS[segment], width=3 if segment == "total" else 2,
                      dash="dash" if segment == "total" else "solid"),
            hovertemplate="as of %{x}: %{y:.1%}<extra>" + labels[segment] + "</extra>",
        ))
    figure.update_yaxes(title="retention", tickformat=".0%", range=[0, 1.02])
    figure.update_xaxes(title="as-of date", type="category")
    return _layout(figure, 340)


def nps_by_segment(data: ReportData, config: LoyaltyConfig) -> go.Figure | None:
    """NPS per segment, the latest two periods; None when neither has answers."""
    if not data.nps_segments["period_index"].isin([0, 1]).any():
        return None
    latest, previous = style.period_names(config)
    labels = style.segment_labels(config)
    figure = go.Figure()
    order = (*SEGMENTS, "total")
    for period_index, name, opacity in ((1, previous, 0.4), (0, latest, 1.0)):
        rows = data.nps_segments[data.nps_segments["period_index"] == period_index].set_index("value_segment")
        if rows.empty:
            continue
        values = [rows["nps"].get(s) for s in order]
        figure.add_trace(go.Bar(
            x=[labels[s] for s in order], y=values, name=name, opacity=opacity,
            marker_color=[style.SEGMENT_COLOURS[s] for s in order],
            text=[style.nps(v) for v in values], textposition="outside", cliponaxis=False,
            customdata=[style.integer(rows["responses"].get(s)) for s in order],
            hovertemplate="%{x} " + name + ": NPS %{y:.1f} (%{customdata} answers)<extra></extra>",
        ))
    figure.update_yaxes(title="NPS", range=[-100, 100], dtick=25)
    figure.update_layout(barmode="group")
    return _layout(figure, 360)


def nps_flow_label(row, config: LoyaltyConfig) -> str:
    labels = style.segment_labels(config)
    source = row["flow"] if row["flow"] in ("new", "recovered") else row["from_segment"]
    target = "lost" if row["flow"] == "lost" else row["to_segment"]
    return f"{source} → {target}"


def nps_by_flow(cells: pd.DataFrame, config: LoyaltyConfig) -> go.Figure:
    """Horizontal bars of the flow cells with enough answers (``cells``, sorted by NPS)."""
    colours = [style.SEGMENT_COLOURS["lost" if row["flow"] == "lost" else row["to_segment"]] for _, row in cells.iterrows()]
    figure = go.Figure(go.Bar(
        y=[f"{nps_flow_label(row, config)} ({style.integer(row['responses'])})" for _, row in cells.iterrows()],
        x=cells["nps"], orientation="h", marker_color=colours,
        text=[style.nps(v) for v in cells["nps"]],
        textposition="outside", cliponaxis=False,
        customdata=[style.FLOW_LABELS[f] for f in cells["flow"]],
        hovertemplate="%{y} (%{customdata}): NPS %{x:.1f}<extra></extra>",
    ))
    figure.update_xaxes(title="NPS (answers in brackets)", range=[-110, 110], dtick=25)
    figure.update_yaxes(type="category", autorange="reversed")  # the lowest first, as in the table
    return _layout(figure, max(260, 24 * len(cells) + 90), margin=dict(l=160, r=30, t=20, b=48), showlegend=False)


CALIBRATION_SEGMENTS = (*SEGMENTS, "none")


def _calibration_rows(frame: pd.DataFrame, grouping: str) -> pd.DataFrame:
    return frame[frame["grouping"] == grouping]


def calibration_by_segment(frame: pd.DataFrame, config: LoyaltyConfig) -> go.Figure:
    """Predicted (light) against actual (solid) purchases in the calibration period, per value
    segment at the calibration cut-off (none: no purchase in the period before it)."""
    labels = {**style.segment_labels(config), "none": "none · ej aktiva"}
    rows = _calibration_rows(frame, "value_segment").set_index("group_value")
    order = [s for s in CALIBRATION_SEGMENTS if s in rows.index]
    colours = [style.SEGMENT_COLOURS.get(s, style.SEGMENT_COLOURS["lost"]) for s in order]
    figure = go.Figure()
    for column, name, opacity in (("predicted_purchases", "predicted", 0.4), ("actual_purchases", "actual", 1.0)):
        values = [float(rows.at[s, column]) for s in order]
        figure.add_trace(go.Bar(
            x=[labels[s] for s in order], y=values, name=name, opacity=opacity, marker_color=colours,
            text=[style.integer(v) for v in values], textposition="outside", cliponaxis=False,
            hovertemplate="%{x}: " + name + " %{y:,.0f} purchases<extra></extra>",
        ))
    figure.update_yaxes(title="purchases in the calibration period", rangemode="tozero")
    figure.update_layout(barmode="group")
    return _layout(figure, 360)


def calibration_by_decile(frame: pd.DataFrame) -> go.Figure:
    """Predicted against actual purchases per decile of predicted purchases (1 = the most)."""
    rows = _calibration_rows(frame, "predicted_purchases_decile").copy()
    rows["decile"] = rows["group_value"].astype(int)
    rows = rows.sort_values("decile")
    figure = go.Figure()
    for column, name, dash in (("predicted_purchases", "predicted", "dot"), ("actual_purchases", "actual", "solid")):
        figure.add_trace(go.Scatter(
            x=rows["decile"], y=rows[column].astype(float), name=name, mode="lines+markers",
            line=dict(color=style.SEGMENT_COLOURS["total"], dash=dash),
            hovertemplate="decile %{x}: " + name + " %{y:,.0f} purchases<extra></extra>",
        ))
    figure.update_xaxes(title="decile of predicted purchases (1 = the most)", dtick=1, range=[0.5, 10.5])
    figure.update_yaxes(title="purchases", rangemode="tozero")
    return _layout(figure, 320)

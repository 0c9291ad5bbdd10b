"""The report as a Dagster asset, built by a factory so the caller chooses the partitions.

It depends on the published warehouse (``published/warehouse``): it runs only after the checks
passed and the copy was published, and reads that copy read-only, never the live warehouse."""


import dagster as dg

from ..config import LoyaltyConfig
from ..partitions import run_as_of_dates
from ..publish import DATABASE_FILE, PUBLISHED_KEY
from ..resources import LoyaltySettings
from . import style
from .data import ReportData, available_as_of_dates, load_report_data
from .publish import LATEST_NAME, report_folder, report_name, write_atomic

# .page (plotly, great_tables, Jinja2) is imported where it is used: loading the definitions does
# not pay for it, and a run imports it while dbt runs (background_imports). .thumbnails only when
# the configuration asks for thumbnails.

# Charts shown as thumbnails in the materialization's preview (report_thumbnails, with kaleido and a Chromium).
THUMBNAIL_CHARTS = {"clv-bars": "CLV and portfolio value", "lorenz": "Value concentration"}

REPORT_KEY = dg.AssetKey(["published", "kpi_report"])


def headline_markdown(data: ReportData, config: LoyaltyConfig, images: dict[str, str] | None = None) -> str:
    """The headline table for the Dagster UI's markdown preview, then any thumbnails (base64 PNG)."""
    from .page import HEADLINE_LABELS, headline_value

    lines = [
        f"**Loyalty KPI report as of {data.as_of}**",
        "",
        "| KPI | value | vs previous as-of slice | vs one period earlier |",
        "| --- | ---: | ---: | ---: |",
    ]
    for h in data.headlines:
        label = HEADLINE_LABELS[h.key][0]
        lines.append(
            f"| {label} | {headline_value(h.key, h.value, config)} | {style.change(h.key, h.value, h.previous_slice) or '–'}"
            f" | {style.change(h.key, h.value, h.period_earlier) or '–'} |"
        )
    for name, image in (images or {}).items():
        lines += ["", f"![{THUMBNAIL_CHARTS.get(name, name)}](data:image/png;base64,{image})"]
    return "\n".join(lines)


def segment_table(data: ReportData, config: LoyaltyConfig) -> dg.TableMetadataValue:
    """Per-segment KPIs of the latest period as a Dagster table."""
    retention = data.retention[data.retention["period_index"] == 0].set_index("value_segment")
    nps = data.nps_segments[data.nps_segments["period_index"] == 0].set_index("value_segment")
    records = []
    for _, row in data.clv.iterrows():
        segment = row["value_segment"]
        records.append(dg.TableRecord({
            "segment": segment,
            "customers": int(row["customers"]),
            "revenue": _number(row["revenue"]),
            "retention_pct": _number(100 * retention["retention_rate"].get(segment)) if segment in retention.index else None,
            "duration_years": _number(row["duration_years"]),
            "clv": _number(row["clv"]),
            "portfolio_value": _number(row["portfolio_value"]),
            "nps": _number(nps["nps"].get(segment)) if segment in nps.index else None,
        }))
    schema = dg.TableSchema(columns=[
        dg.TableColumn("segment", "string"),
        dg.TableColumn("customers", "int"),
        dg.TableColumn("revenue", "float", description=config.currency),
        dg.TableColumn("retention_pct", "float"),
        dg.TableColumn("duration_years", "float"),
        dg.TableColumn("clv", "float", description=config.currency),
        dg.TableColumn("portfolio_value", "float", description=config.currency),
        dg.TableColumn("nps", "float"),
    ])
    return dg.MetadataValue.table(records, schema=schema)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else round(number, 2)


def build_report_assets(
    partitions_def: dg.PartitionsDefinition | None, backfill_policy: dg.BackfillPolicy | None
) -> list[dg.AssetsDefinition]:
    """The report asset with the given partitions (the as-of dates of the run)."""

    @dg.asset(
        key=REPORT_KEY,
        group_name="publish",
        deps=[PUBLISHED_KEY],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        description=(
            "Self-contained HTML KPI report per as-of date from the published marts: "
            "publish_dir/report/loyalty_report_<as_of>.html and latest.html (each replaced atomically)."
        ),
    )
    def kpi_report(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        from .page import build_figures, render_report

        config = settings.loyalty_config()
        database = config.publish_path / DATABASE_FILE
        folder = report_folder(config.publish_path)
        slices = set(available_as_of_dates(database))
        newest = max(slices) if slices else None
        written = []
        last_data = last_figures = None
        for as_of in run_as_of_dates(context, settings.as_of()):
            if as_of not in slices:
                context.log.warning(f"report: no slice as of {as_of} in {database} (fewer than two periods?): skipped")
                continue
            data = load_report_data(database, as_of)
            figures = build_figures(data, config)  # for the page and, of the last date, the thumbnails
            html = render_report(data, config, figures=figures)
            path = write_atomic(folder / report_name(as_of), html)
            written.append(path)
            context.log.info(f"report: wrote {path} ({len(html):,} bytes)")
            # latest.html follows the newest slice: a backfill of older dates leaves it alone.
            if as_of == newest or not (folder / LATEST_NAME).exists():
                write_atomic(folder / LATEST_NAME, html)
            last_data, last_figures = data, figures
        if last_data is None:
            # A warehouse with less than two periods of data has no CLV or retention yet: the run
            # stays a success, the materialization says that no page was written.
            return dg.MaterializeResult(metadata={"reports_written": 0, "folder": dg.MetadataValue.path(str(folder))})
        images = {}
        if config.report_thumbnails:
            from .thumbnails import thumbnails

            images = thumbnails({name: last_figures[name] for name in THUMBNAIL_CHARTS if name in last_figures}, log=context.log.info)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(written[-1])),
                "latest": dg.MetadataValue.path(str(folder / LATEST_NAME)),
                "reports_written": len(written),
                "bytes": written[-1].stat().st_size,
                "preview": dg.MetadataValue.md(headline_markdown(last_data, config, images)),
                "thumbnails": len(images),
                "segment_kpis": segment_table(last_data, config),
            }
        )

    return [kpi_report]

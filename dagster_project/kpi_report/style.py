"""How the report looks and reads: the one segment palette, the labels (English with the Swedish
terms users say), and the number formats. Every chart and table takes its colours and labels
from here, so super/top/middle/bottom are the same colour everywhere."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from typing import Mapping

from ..config import SEGMENTS, LoyaltyConfig

# The palette: one colour per segment and per non-segment node of the flows.
SEGMENT_COLOURS: Mapping[str, str] = {
    "super": "#5b2a86",   # deep purple
    "top": "#2f6fb3",     # blue
    "middle": "#3a9d5d",  # green
    "bottom": "#e08a1e",  # orange
    "total": "#3c3c3c",
    "new": "#c2417a",     # pink: first purchase ever
    "recovered": "#8c6d46",  # brown: back after a gap
    "lost": "#9a9a9a",    # grey
}
FLOW_LABELS: Mapping[str, str] = {
    "retained": "retained · fortsatt aktiva",
    "upgraded": "upgraded · uppgradering",
    "downgraded": "downgraded · nedgradering",
    "new": "new · nya",
    "recovered": "recovered · återvunna",
    "lost": "lost · förlorade",
}
FLOW_SHORT: Mapping[str, str] = {
    "new": "nya", "recovered": "återvunna", "lost": "förlorade",
    "retained": "fortsatt aktiva", "upgraded": "uppgradering", "downgraded": "nedgradering",
}
STAGE_LABELS: Mapping[str, str] = {
    "new": "New · ny", "won_back": "Won back · återvunnen", "active": "Active · aktiv",
    "at_risk": "At risk · riskzon", "lost": "Lost · förlorad", "total": "Total",
}
NBSP = "\u00a0"  # thousands separator: numbers never break across lines
MISSING = "–"
# plotly's d3 number format: '.' for decimals, the same no-break space for thousands.
PLOTLY_SEPARATORS = "." + NBSP
FONT_FAMILY = "Inter, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def segment_labels(config: LoyaltyConfig) -> dict[str, str]:
    """'Super 5 %', 'Top 15 %', … from the configured cut-offs, plus 'Total'."""
    bounds = [0.0] + [float(config.segment_cutoffs[name]) for name in SEGMENTS[:-1]] + [1.0]
    labels = {
        name: f"{name.capitalize()} {_share(bounds[i + 1] - bounds[i])}" for i, name in enumerate(SEGMENTS)
    }
    labels["total"] = "Total"
    return labels


def _share(fraction: float) -> str:
    value = round(100 * fraction, 1)
    return f"{value:g}{NBSP}%"


def nps_bands(config: LoyaltyConfig) -> dict[str, str]:
    """The score range of each NPS category, from the configured bands ("9–10", "7–8", "0–6")."""
    from ..raw_contract import SCORE_MAX, SCORE_MIN

    return {
        "promoters": f"{config.nps_promoter_min}–{SCORE_MAX}",
        "passives": f"{config.nps_passive_min}–{config.nps_promoter_min - 1}",
        "detractors": f"{SCORE_MIN}–{config.nps_passive_min - 1}",
    }


def period_names(config: LoyaltyConfig) -> tuple[str, str]:
    """The latest and the previous period's short names: S12 / F12 (senaste / föregående)."""
    return f"S{config.period_months}", f"F{config.period_months}"


def months_back(date: dt.date, months: int) -> dt.date:
    """``date`` − ``months`` months, month ends clamped (31 March − 1 month = 28/29 February)."""
    index = date.year * 12 + date.month - 1 - months
    year, month = divmod(index, 12)
    day = min(date.day, calendar.monthrange(year, month + 1)[1])
    return dt.date(year, month + 1, day)


def period_bounds(as_of: dt.date, period_index: int, period_months: int) -> tuple[dt.date, dt.date]:
    """First and last day of period k (the marts' rule: as_of − P·(k+1) months < d ≤ as_of − P·k months)."""
    end = months_back(as_of, period_months * period_index)
    start = months_back(as_of, period_months * (period_index + 1)) + dt.timedelta(days=1)
    return start, end


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def integer(value) -> str:
    """101 811 (no-break space between thousands)."""
    if _missing(value):
        return MISSING
    return f"{round(float(value)):,d}".replace(",", NBSP)


def decimal(value, places: int = 2) -> str:
    if _missing(value):
        return MISSING
    return f"{float(value):,.{places}f}".replace(",", NBSP)


def money(value, currency: str, places: int = 0) -> str:
    """1 284 714 061 SEK."""
    if _missing(value):
        return MISSING
    return f"{decimal(value, places)}{NBSP}{currency}"


def percent(fraction, places: int = 1) -> str:
    """0.6412 -> 64.1 %."""
    if _missing(fraction):
        return MISSING
    return f"{100 * float(fraction):.{places}f}{NBSP}%"


def nps(value) -> str:
    """NPS is on −100…100: one decimal, a real minus sign."""
    if _missing(value):
        return MISSING
    return f"{float(value):.1f}".replace("-", "−")


def signed(text: str) -> str:
    return text if text.startswith(("−", "-")) else "+" + text


def change(key: str, now, before) -> str | None:
    """The change of a headline against an earlier value: relative for amounts and counts
    (+3.2 %), in percentage points for retention (+1.5 pp), in points for NPS (+4.0)."""
    if _missing(now) or _missing(before):
        return None
    if key == "retention":
        return signed(f"{100 * (now - before):.1f}".replace("-", "−")) + f"{NBSP}pp"
    if key == "nps":
        return signed(f"{now - before:.1f}".replace("-", "−"))
    if before == 0:
        return None
    return signed(f"{100 * (now / before - 1):.1f}".replace("-", "−")) + f"{NBSP}%"

"""Settings of one warehouse: paths and the business constants, read from one optional YAML file.

Every business constant is defined here once (``LoyaltyConfig``'s defaults) and reaches dbt
as a var through :func:`dbt_vars`, so the SQL never repeats a number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "loyalty.yml"

# Value segments from the most to the least valuable; the cut-off of a segment is the upper
# bound (exclusive) of the value share it covers. ``bottom`` takes the rest.
SEGMENTS = ("super", "top", "middle", "bottom")


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class LoyaltyConfig:
    # Paths (relative paths resolve against the project root, never the working directory).
    raw_dir: str = "data/raw"
    warehouse: str = "data/warehouse.duckdb"
    # Length of one comparison period in months (12 = yearly F12/S12, 3 = quarterly).
    period_months: int = 12
    # Cumulative value-share cut-offs: super < 0.05 ≤ top < 0.20 ≤ middle < 0.70 ≤ bottom.
    segment_cutoffs: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"super": 0.05, "top": 0.20, "middle": 0.70}
    )
    # NPS answer bands (inclusive lower bounds): promoters 9–10, passives 7–8, detractors 0–6.
    nps_promoter_min: int = 9
    nps_passive_min: int = 7

    def __post_init__(self) -> None:
        validate(self)

    @property
    def raw_path(self) -> Path:
        return resolve_path(self.raw_dir)

    @property
    def warehouse_path(self) -> Path:
        return resolve_path(self.warehouse)

    def with_overrides(self, **overrides: Any) -> "LoyaltyConfig":
        """A copy with the non-None overrides applied (CLI flags win over the file)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **given)


def resolve_path(path: str | os.PathLike) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (PROJECT_ROOT / candidate).resolve()


def validate(config: LoyaltyConfig) -> None:
    if not isinstance(config.period_months, int) or not 1 <= config.period_months <= 120:
        raise ConfigError(f"period_months must be an integer from 1 to 120, got {config.period_months!r}")
    cutoffs = dict(config.segment_cutoffs)
    if set(cutoffs) != set(SEGMENTS[:-1]):
        raise ConfigError(f"segment_cutoffs needs exactly the keys {list(SEGMENTS[:-1])}, got {sorted(cutoffs)}")
    bounds = [cutoffs[name] for name in SEGMENTS[:-1]]
    if not all(isinstance(b, (int, float)) for b in bounds) or not 0 < bounds[0] < bounds[1] < bounds[2] < 1:
        raise ConfigError(f"segment_cutoffs must rise strictly within (0, 1): {cutoffs}")
    if not 0 <= config.nps_passive_min < config.nps_promoter_min <= 10:
        raise ConfigError("nps bands need 0 <= nps_passive_min < nps_promoter_min <= 10")


def load_config(path: str | os.PathLike | None = None) -> LoyaltyConfig:
    """Reads ``path`` (or ``loyalty.yml`` at the project root when it exists); unknown keys fail."""
    file = Path(path) if path is not None else DEFAULT_CONFIG_FILE
    if path is None and not file.exists():
        return LoyaltyConfig()
    if not file.exists():
        raise ConfigError(f"config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of keys to values")
    known = {field.name for field in dataclasses.fields(LoyaltyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{file}: unknown keys {unknown}; known keys: {sorted(known)}")
    try:
        return LoyaltyConfig(**data)
    except ConfigError as error:
        raise ConfigError(f"{file}: {error}") from error


def dbt_vars(config: LoyaltyConfig, as_of_date: dt.date) -> dict[str, Any]:
    """The dbt ``--vars`` of one run: the as-of date and every business constant."""
    return {
        "as_of_date": as_of_date.isoformat(),
        "period_months": config.period_months,
        "segment_cutoffs": {name: float(config.segment_cutoffs[name]) for name in SEGMENTS[:-1]},
        "nps_promoter_min": config.nps_promoter_min,
        "nps_passive_min": config.nps_passive_min,
        "warehouse_path": str(config.warehouse_path),
    }


def yesterday(today: dt.date | None = None) -> dt.date:
    return (today or dt.date.today()) - dt.timedelta(days=1)

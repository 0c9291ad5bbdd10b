"""Run settings as a Dagster resource: the as-of date plus the LoyaltyConfig of config.py."""


import datetime as dt
import json
from pathlib import Path

import dagster as dg

from .config import LoyaltyConfig, load_config, yesterday


class LoyaltySettings(dg.ConfigurableResource):
    """Where the files are and which as-of date a run computes. Empty values mean the defaults:
    the project's loyalty.yml (or built-in defaults) and as-of = yesterday."""

    config_file: str = ""
    as_of_date: str = ""
    raw_dir: str = ""
    warehouse: str = ""
    # JSON of LoyaltyConfig overrides set by the CLI (so flags win over the file).
    overrides_json: str = "{}"
    # The calendar day of the run (rows dated after it are quarantined as future); empty: today.
    run_date: str = ""

    def loyalty_config(self) -> LoyaltyConfig:
        base = load_config(self.config_file or None)
        return base.with_overrides(
            raw_dir=self.raw_dir or None, warehouse=self.warehouse or None, **json.loads(self.overrides_json)
        )

    def as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of_date) if self.as_of_date else yesterday()

    def today(self) -> dt.date:
        return dt.date.fromisoformat(self.run_date) if self.run_date else dt.date.today()

    @property
    def warehouse_path(self) -> Path:
        return self.loyalty_config().warehouse_path

"""Run settings as a Dagster resource: the as-of date plus the run's effective LoyaltyConfig."""


import datetime as dt
import json
from pathlib import Path

import dagster as dg

from .config import LoyaltyConfig, from_json, resolve_config, yesterday


class LoyaltySettings(dg.ConfigurableResource):
    """The effective configuration of a run and the as-of date it computes.

    ``config_json`` is the configuration the CLI (or a test) resolved once: every step reads that
    one object. Left empty (``dagster dev``, the daemon), each step resolves it the same way at run
    time: the defaults, then ``$LOYALTY_CONFIG`` or ``loyalty.yml``; ``config_file`` and the path
    fields are kept for runs configured in the Dagster UI. Empty as-of date: yesterday."""

    config_json: str = ""
    config_file: str = ""
    as_of_date: str = ""
    raw_dir: str = ""
    warehouse: str = ""
    # JSON of LoyaltyConfig overrides (flags win over the file); ignored with config_json.
    overrides_json: str = "{}"
    # The calendar day of the run (rows dated after it are quarantined as future); empty: today.
    run_date: str = ""

    def loyalty_config(self) -> LoyaltyConfig:
        if self.config_json:
            return from_json(self.config_json)
        return resolve_config(
            self.config_file or None,
            raw_dir=self.raw_dir or None,
            warehouse=self.warehouse or None,
            **json.loads(self.overrides_json),
        )

    def as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of_date) if self.as_of_date else yesterday()

    def today(self) -> dt.date:
        return dt.date.fromisoformat(self.run_date) if self.run_date else dt.date.today()

    @property
    def warehouse_path(self) -> Path:
        return self.loyalty_config().warehouse_path

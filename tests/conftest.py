import datetime as dt
import os
from pathlib import Path

import pytest

from dagster_project.dbt_project import DBT_PROJECT_DIR, prepare_manifest


def pytest_sessionstart(session):
    # Dagster loads @dbt_assets from the manifest: tests prepare it (as make does), never imports.
    if not (DBT_PROJECT_DIR / "target" / "manifest.json").exists() or os.environ.get("LOYALTY_REPARSE"):
        prepare_manifest()


@pytest.fixture
def settings_for(tmp_path):
    from dagster_project.resources import LoyaltySettings

    def make(raw_dir: Path, as_of: dt.date, **overrides) -> LoyaltySettings:
        import json

        return LoyaltySettings(
            as_of_date=as_of.isoformat(),
            raw_dir=str(raw_dir),
            warehouse=str(tmp_path / "warehouse.duckdb"),
            config_file=str(overrides.pop("config_file", "")),
            overrides_json=json.dumps(overrides),
        )

    return make


@pytest.fixture(scope="session")
def nbo_night(tmp_path_factory):
    """One night of the next-best-offer decision on a small sample with planted customers
    (tests/nbo_support.py), shared by the NBO tests and the nbo_* setting tests."""
    from .nbo_support import build_night

    return build_night(tmp_path_factory.mktemp("nbo_night"))

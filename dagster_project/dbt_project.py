"""The dbt project as Dagster sees it. Nothing here parses dbt at import time: the manifest is
prepared by `make`, CI and the tests (see :func:`prepare_manifest`)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from .config import PROJECT_ROOT, LoyaltyConfig, dbt_vars, yesterday

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"


@functools.cache
def dbt_project() -> DbtProject:
    # No prepare_if_dev(): a bare `dbt parse` lacks the required --vars; `make dev` prepares instead.
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    # Beside the interpreter, so a non-activated venv (pytest, cron) finds it.
    return str(Path(sys.executable).with_name("dbt"))


def prepare_manifest() -> Path:
    """Runs `dbt parse` with the default config's vars; returns the manifest path."""
    variables = dbt_vars(LoyaltyConfig(), yesterday())
    subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--vars", json.dumps(variables)],
        check=True,
        cwd=DBT_PROJECT_DIR,
    )
    return DBT_PROJECT_DIR / "target" / "manifest.json"


if __name__ == "__main__":
    print(prepare_manifest())

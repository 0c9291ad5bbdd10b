"""The dbt project as Dagster sees it. Nothing here parses dbt at import time: the manifest is
prepared by `make`, CI and the tests (see :func:`prepare_manifest`)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from packaging import version

from .config import PROJECT_ROOT, LoyaltyConfig, dbt_vars, yesterday
from .dagster_dbt_without_core import DbtCliResource, DbtProject
from .spark_engine import spark_environment
from .warehouse import duckdb_settings

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"

# The dbt process finds the warehouse file here (dbt/profiles.yml), not in --vars.
WAREHOUSE_ENV = "LOYALTY_WAREHOUSE"
# The DuckDB resource settings of the dbt process (profiles.yml), the same as ingest's.
MEMORY_LIMIT_ENV = "LOYALTY_DUCKDB_MEMORY_LIMIT"
TEMP_DIR_ENV = "LOYALTY_DUCKDB_TEMP_DIR"
INSERTION_ORDER_ENV = "LOYALTY_DUCKDB_PRESERVE_INSERTION_ORDER"
# Vars of config.dbt_vars that change from run to run. They are not passed to dbt: the as-of
# date(s) go to the table ops.run_dates, the warehouse path to WAREHOUSE_ENV. dbt re-parses the
# whole project whenever --vars change (2.5–6.5 s), so --vars must be the same every night.
RUN_SPECIFIC_VARS = ("as_of_date", "as_of_dates", "warehouse_path")

PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# dbt's partial-parse state of the latest run per database name and vars (see seed_partial_parse).
PARTIAL_PARSE_CACHE_DIR = DBT_PROJECT_DIR / "target" / "partial_parse"
PARTIAL_PARSE_CACHE_KEEP = 8


@functools.cache
def dbt_project() -> DbtProject:
    # No prepare_if_dev(): `make dev` prepares the manifest with the project's vars instead.
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    # dbt with a partial parse that survives a new warehouse path (dbt_command.py). Beside the
    # interpreter, so a non-activated venv (pytest, cron) finds it.
    return str(Path(sys.executable).with_name("loyalty-dbt"))


def constant_dbt_vars(config: LoyaltyConfig) -> dict[str, Any]:
    """The --vars of every run of ``config``: the business constants, no run-specific value."""
    variables = dbt_vars(config, yesterday())
    return {name: value for name, value in variables.items() if name not in RUN_SPECIFIC_VARS}


def dbt_environment(config: LoyaltyConfig) -> dict[str, str]:
    """The environment of a dbt process for ``config``: the warehouse file and the DuckDB
    resource settings of warehouse.duckdb_settings (profiles.yml reads them; it has no values
    of its own, so ingest and dbt always run DuckDB alike)."""
    resources = duckdb_settings(config, config.warehouse_path)
    return {
        WAREHOUSE_ENV: str(config.warehouse_path),
        MEMORY_LIMIT_ENV: str(resources["memory_limit"]),
        TEMP_DIR_ENV: str(resources["temp_directory"]),
        INSERTION_ORDER_ENV: str(resources["preserve_insertion_order"]).lower(),
        **(spark_environment(config) if config.engine == "spark" else {}),
    }


class LoyaltyDbtCliResource(DbtCliResource):
    """DbtCliResource without two steps of dagster-dbt's per-run set-up that this project does
    not use (~4.5 s per run together):

    - ``_cli_version`` ran ``dbt --version`` as a subprocess (~2.9 s) to tell dbt Core from the
      Fusion engine; the dbt here is always the dbt-core package of this venv.
    - ``_initialize_dbt_core_adapter`` loaded the dbt profile and an adapter in-process (~1.7 s),
      only needed for ``fetch_row_counts()`` / ``fetch_column_metadata()``, which we do not call.

    Both are private dagster-dbt APIs (checked against 0.29.27); tests/test_dbt_resource.py fails
    when an upgrade renames them, instead of the overrides silently doing nothing.
    """

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Sets environment variables for the duration of the block (dagster-dbt hands its process
    environment to the dbt subprocess when it starts it), then restores them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def partial_parse_key(warehouse: Path, variables: Mapping[str, Any], target_args: Sequence[str] = ()) -> str:
    """dbt reuses a partial parse only with the same vars, target (engine) and database name
    (dbt-duckdb names the database after the file's stem, and the parsed nodes hold it);
    loyalty-dbt leaves the rest of the warehouse's path out of the check."""
    text = json.dumps({"database": warehouse.stem, "vars": variables, "target": list(target_args)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_partial_parse(target_path: Path, key: str) -> None:
    """Copies the partial-parse state of the previous run with the same key into a new dbt target
    folder (dagster-dbt then keeps it instead of copying dbt/target's, prepared for the default
    config only). dbt itself checks every file's checksum against it, so a stale copy only costs
    a re-parse of what changed."""
    cached = PARTIAL_PARSE_CACHE_DIR / f"{key}.msgpack"
    if cached.exists():
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, target_path / PARTIAL_PARSE_FILE)


def save_partial_parse(target_path: Path, key: str) -> None:
    """Keeps the run's partial-parse state for the next run with the same key (newest few only)."""
    produced = target_path / PARTIAL_PARSE_FILE
    if not produced.exists():
        return
    PARTIAL_PARSE_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    temporary = PARTIAL_PARSE_CACHE_DIR / f".{key}.{os.getpid()}.tmp"
    shutil.copyfile(produced, temporary)
    os.replace(temporary, PARTIAL_PARSE_CACHE_DIR / f"{key}.msgpack")
    kept = sorted(PARTIAL_PARSE_CACHE_DIR.glob("*.msgpack"), key=lambda file: file.stat().st_mtime, reverse=True)
    for stale in kept[PARTIAL_PARSE_CACHE_KEEP:]:
        stale.unlink(missing_ok=True)


def prepare_manifest() -> Path:
    """Runs `dbt parse` with the default config's vars; returns the manifest path.

    The vars and the warehouse path are those of a run of the default config, so its
    partial_parse.msgpack (which dagster-dbt copies into every run's target folder) lets such a
    run skip the full parse."""
    config = LoyaltyConfig()
    subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--vars", json.dumps(constant_dbt_vars(config))],
        check=True,
        cwd=DBT_PROJECT_DIR,
        env={**os.environ, **dbt_environment(config)},
    )
    return DBT_PROJECT_DIR / "target" / "manifest.json"


if __name__ == "__main__":
    print(prepare_manifest())

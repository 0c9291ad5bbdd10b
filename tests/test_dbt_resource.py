"""The dbt resource's shortcuts hold on the installed dagster-dbt, and every run passes dbt the
same --vars (so dbt's partial parse stays usable from run to run)."""

import datetime as dt
import importlib.metadata
import inspect
import json
import os
import shutil
import subprocess

import duckdb
from dagster_dbt import DbtCliResource
from packaging import version

from dagster_project.config import LoyaltyConfig, dbt_vars
from dagster_project.dbt_command import install_location_free_profile_hash, profile_hash_without_location
from dagster_project.dbt_project import (
    DBT_PROJECT_DIR,
    PARTIAL_PARSE_FILE,
    RUN_SPECIFIC_VARS,
    LoyaltyDbtCliResource,
    constant_dbt_vars,
    dbt_environment,
    dbt_executable,
    dbt_project,
)
from dagster_project.transform import write_run_dates


def _resource() -> LoyaltyDbtCliResource:
    return LoyaltyDbtCliResource(
        project_dir=dbt_project(), profiles_dir=str(dbt_project().profiles_dir), dbt_executable=dbt_executable()
    )


def test_overridden_private_apis_still_exist_and_are_used_by_cli():
    # Private dagster-dbt APIs (0.29.x): if an upgrade renames them, the overrides would silently
    # stop saving anything — fail here instead.
    for name in ("_cli_version", "_initialize_dbt_core_adapter"):
        assert name in vars(DbtCliResource), name
        assert name in vars(LoyaltyDbtCliResource), name
    cli_source = inspect.getsource(DbtCliResource.cli)
    assert "self._cli_version" in cli_source
    assert "self._initialize_dbt_core_adapter(" in cli_source


def test_cli_version_matches_the_dbt_executable_without_running_it():
    resource = _resource()
    assert resource._cli_version == version.parse(importlib.metadata.version("dbt-core"))
    assert resource._cli_version.major < 2  # dbt Core, not Fusion: dagster-dbt's code path for it
    # What the replaced `dbt --version` subprocess says (run here once, not per pipeline run).
    output = subprocess.run([dbt_executable(), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"installed: {resource._cli_version}" in output


def test_no_in_process_adapter():
    assert _resource()._initialize_dbt_core_adapter(["build"]) is None


def test_vars_are_the_same_for_every_run():
    config = LoyaltyConfig(warehouse="/somewhere/w.duckdb")
    constant = constant_dbt_vars(config)
    assert not set(RUN_SPECIFIC_VARS) & set(constant)
    assert constant == constant_dbt_vars(LoyaltyConfig(warehouse="/elsewhere/other.duckdb"))
    full = dbt_vars(config, [dt.date(2024, 1, 1), dt.date(2024, 1, 2)])
    assert constant == {name: value for name, value in full.items() if name not in RUN_SPECIFIC_VARS}


def test_run_dates_table_holds_the_runs_dates(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    write_run_dates(warehouse, [dt.date(2024, 12, 30), dt.date(2024, 12, 31)])
    write_run_dates(warehouse, [dt.date(2025, 1, 1)])  # replaced, not appended
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select as_of_date from ops.run_dates").fetchall() == [(dt.date(2025, 1, 1),)]


def _credentials(path: str):
    from dbt.adapters.duckdb.credentials import DuckDBCredentials

    return DuckDBCredentials.from_dict(
        {"path": path, "schema": "main", "config_options": {"memory_limit": "1GB", "temp_directory": path + ".tmp"}}
    )


def test_the_profile_hash_ignores_where_the_warehouse_is_but_not_its_database_name():
    here = profile_hash_without_location(_credentials("/data/a/warehouse.duckdb"))
    assert here == profile_hash_without_location(_credentials("/elsewhere/b/warehouse.duckdb"))
    # dbt-duckdb names the database after the file's stem and the parsed nodes hold that name.
    assert here != profile_hash_without_location(_credentials("/data/a/other.duckdb"))


def test_the_patched_state_check_is_the_one_dbt_uses():
    # A private dbt-core API (1.11): if an upgrade renames it, fail here instead of re-parsing
    # silently on every new warehouse path.
    from dbt.parser.manifest import ManifestLoader

    assert "self.build_manifest_state_check()" in inspect.getsource(ManifestLoader.__init__)
    assert "profile_hash" in inspect.getsource(ManifestLoader.build_manifest_state_check)
    install_location_free_profile_hash()
    assert getattr(ManifestLoader.build_manifest_state_check, "location_free", False)


def test_a_new_warehouse_folder_keeps_the_partial_parse(tmp_path):
    """Two `loyalty-dbt parse` runs on warehouses in different folders (~8 s): the second one
    reuses the first one's partial parse, where plain dbt re-parsed the whole project."""
    config = LoyaltyConfig()
    arguments = ["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                 "--vars", json.dumps(constant_dbt_vars(config))]
    outputs = []
    for folder in ("first", "second"):
        target = tmp_path / folder / "target"
        target.mkdir(parents=True)
        if outputs:
            shutil.copyfile(tmp_path / "first" / "target" / PARTIAL_PARSE_FILE, target / PARTIAL_PARSE_FILE)
        environment = {**os.environ, **dbt_environment(LoyaltyConfig(warehouse=str(tmp_path / folder / "warehouse.duckdb")))}
        result = subprocess.run([dbt_executable(), *arguments, "--target-path", str(target)], capture_output=True,
                                text=True, env=environment, cwd=DBT_PROJECT_DIR, check=True)
        outputs.append(result.stdout)
    assert (tmp_path / "second" / "target" / "manifest.json").exists()
    assert "Unable to do partial parsing" not in outputs[1], outputs[1]

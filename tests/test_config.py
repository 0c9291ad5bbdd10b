import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project.config import PROJECT_ROOT, ConfigError, LoyaltyConfig, dbt_vars, load_config


def test_defaults_are_the_documented_ones():
    config = LoyaltyConfig()
    assert config.period_months == 12
    assert dict(config.segment_cutoffs) == {"super": 0.05, "top": 0.20, "middle": 0.70}
    assert config.raw_path == PROJECT_ROOT / "data" / "raw"
    assert config.warehouse_path == PROJECT_ROOT / "data" / "warehouse.duckdb"


def test_yaml_file_overrides_defaults_and_relative_paths_resolve_from_the_project(tmp_path):
    file = tmp_path / "loyalty.yml"
    file.write_text("period_months: 3\nsegment_cutoffs: {super: 0.1, top: 0.3, middle: 0.8}\nwarehouse: out/w.duckdb\n")
    config = load_config(file)
    assert config.period_months == 3
    assert config.segment_cutoffs["top"] == 0.3
    assert config.warehouse_path == PROJECT_ROOT / "out" / "w.duckdb"


@pytest.mark.parametrize(
    "text, message",
    [
        ("period_months: 0\n", "period_months"),
        ("segment_cutoffs: {super: 0.3, top: 0.2, middle: 0.7}\n", "rise strictly"),
        ("segment_cutoffs: {super: 0.05, top: 0.2}\n", "exactly the keys"),
        ("perid_months: 12\n", "unknown keys ['perid_months']"),
        ("- a list\n", "mapping"),
        ('report_thumbnails: "yes please"\n', "report_thumbnails must be true or false, got 'yes please'"),
        ("skip_rejected_files: 1\n", "skip_rejected_files must be true or false, got 1"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    file = tmp_path / "bad.yml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        load_config(file)
    assert message in str(error.value)
    assert str(file) in str(error.value)


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yml")


def test_dbt_vars_carry_every_business_constant():
    config = LoyaltyConfig(period_months=3)
    variables = dbt_vars(config, dt.date(2024, 5, 31))
    assert variables["as_of_date"] == "2024-05-31"
    assert variables["period_months"] == 3
    assert variables["segment_cutoffs"] == {"super": 0.05, "top": 0.2, "middle": 0.7}
    assert (variables["nps_promoter_min"], variables["nps_passive_min"]) == (9, 7)
    assert variables["warehouse_path"] == str(config.warehouse_path)


def test_the_loyalty_command_exits_with_mains_code_and_flushed_output(tmp_path):
    """`loyalty` ends with os._exit (no interpreter teardown): its exit code and its last lines
    must still come through."""
    loyalty = Path(sys.executable).with_name("loyalty")
    bad = tmp_path / "bad.yml"
    bad.write_text("period_months: twelve\n")
    failed = subprocess.run([str(loyalty), "status", "--config", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert "period_months must be an integer" in failed.stderr
    # Piped stdout is block-buffered: without the flush before os._exit this line would be lost.
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [str(loyalty), "status", "--warehouse", str(tmp_path / "none.duckdb")], capture_output=True, text=True, env=buffered
    )
    assert done.returncode == 0
    assert done.stdout.startswith("no runs recorded: warehouse file not found")

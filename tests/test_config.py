import datetime as dt

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

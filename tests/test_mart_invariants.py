"""The nightly mart invariants (dbt singular tests, shown in Dagster as asset checks) pass on a real
run and fail — each one — when its mart is corrupted: none of them is a check that cannot fail."""

import datetime as dt
import json
import shutil
import subprocess

import duckdb
import pytest

from dagster_project.config import LoyaltyConfig, dbt_vars
from dagster_project.dbt_project import DBT_PROJECT_DIR, dbt_executable
from dagster_project.resources import LoyaltySettings
from dagster_project.runner import run_pipeline
from dagster_project.sample_data import generate_sample

AS_OF = dt.date(2026, 10, 31)

# test name → the corruption that must make it fail
CORRUPTIONS = {
    "assert_flows_conserve_segment_sizes":
        "update marts.segment_flow_matrix set customers = customers + 1 where flow = 'retained' and period_index = 0",
    "assert_flow_revenue_sums_to_period_revenue":
        "update marts.segment_flow_matrix set revenue = revenue + 1 where flow = 'new' and period_index = 0",
    "assert_deciles_sum_to_active_customers":
        "delete from marts.value_deciles where period_index = 0 and value_decile = 10",
    "assert_segment_sizes_match_cutoffs":
        "update marts.customer_period_facts set value_segment = 'top' where period_index = 0 and value_segment = 'super'",
    "assert_nps_counts_add_up":
        "update marts.nps_by_segment set promoters = promoters + 1 where value_segment = 'total'",
    "assert_nps_by_flow_adds_up_to_nps_by_segment":
        "update marts.nps_by_flow set detractors = detractors + 1, responses = responses + 1"
        " where flow = 'retained' and period_index = 0",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("invariants")
    generate_sample(root / "raw", customers=1500, seed=7)
    warehouse = root / "warehouse.duckdb"
    outcome = run_pipeline(LoyaltySettings(as_of_date=AS_OF.isoformat(), raw_dir=str(root / "raw"), warehouse=str(warehouse)))
    assert outcome.success, outcome.failure
    return warehouse


def _run_invariants(warehouse, target_dir) -> dict[str, str]:
    variables = dbt_vars(LoyaltyConfig(warehouse=str(warehouse)), AS_OF)
    subprocess.run(
        [dbt_executable(), "test", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(target_dir), "--vars", json.dumps(variables), "--select", *CORRUPTIONS],
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True,
    )
    results = json.loads((target_dir / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: r["status"] for r in results}


def test_invariants_pass_on_a_real_run(built, tmp_path):
    assert _run_invariants(built, tmp_path / "target") == {name: "pass" for name in CORRUPTIONS}


def test_each_invariant_fails_when_its_mart_is_corrupted(built, tmp_path):
    corrupted = tmp_path / "corrupted.duckdb"
    shutil.copyfile(built, corrupted)
    with duckdb.connect(str(corrupted)) as con:
        for statement in CORRUPTIONS.values():
            assert con.execute(statement).fetchall()[0][0] > 0, statement
    assert _run_invariants(corrupted, tmp_path / "target") == {name: "fail" for name in CORRUPTIONS}

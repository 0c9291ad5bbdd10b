"""dagster-dbt imported without dbt-core (dagster_project/dagster_dbt_without_core.py) gives the
same code location as with it, and keeps dbt-core out of the run's process."""

import json
import subprocess
import sys

import pytest

# Prints the definitions' assets and checks as JSON. With "core", dbt-core is imported first, so
# dagster-dbt sees it and takes its dbt-core path (what a plain `import dagster_dbt` does).
DESCRIBE = r"""
import json, sys
if sys.argv[1] == "core":
    import dbt.version
from dagster_project.config import LoyaltyConfig
from dagster_project.definitions import build_definitions
import dagster_dbt.compat

definitions = build_definitions(LoyaltyConfig())
graph = definitions.resolve_asset_graph()
assets = {}
for key in sorted(graph.get_all_asset_keys()):
    node = graph.get(key)
    assets[key.to_user_string()] = {
        "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
        "group": node.group_name,
        "kinds": sorted(node.kinds),
        "tags": dict(sorted(node.tags.items())),
        "description": node.description,
        "code_version": node.code_version,
        "metadata_keys": sorted(node.metadata),
        "checks": sorted(check.to_user_string() for check in node.check_keys),
    }
checks = {}
for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
    spec = graph.get_check_spec(check_key)
    checks[check_key.to_user_string()] = {"blocking": spec.blocking, "description": spec.description}
print(json.dumps({
    "assets": assets,
    "checks": checks,
    "dbt_core_seen_by_dagster_dbt": dagster_dbt.compat.DBT_PYTHON_VERSION is not None,
    "dbt_modules": sorted(m for m in sys.modules if m == "dbt" or m.startswith("dbt.")),
}, default=str))
"""


def _describe(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", DESCRIBE, mode], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def both_ways() -> tuple[dict, dict]:
    return _describe("without"), _describe("core")


def test_the_runs_process_does_not_import_dbt_core(both_ways):
    without, core = both_ways
    assert without["dbt_modules"] == []
    assert without["dbt_core_seen_by_dagster_dbt"] is False
    # The other way really is the other path, so the comparison below compares something.
    assert core["dbt_core_seen_by_dagster_dbt"] is True
    assert "dbt.version" in core["dbt_modules"]


def test_same_assets_and_checks_either_way(both_ways):
    without, core = both_ways
    assert len(without["assets"]) > 40 and len(without["checks"]) > 40
    assert any(key.startswith("marts/") for key in without["assets"])
    assert without["assets"] == core["assets"]
    assert without["checks"] == core["checks"]

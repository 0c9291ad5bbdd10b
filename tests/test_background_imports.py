"""The libraries of the steps after dbt stay out of loading the definitions, and the run imports
them on a thread while dbt runs (dagster_project/background_imports.py)."""

import json
import subprocess
import sys

# Libraries that cost 0.1-0.9 s of import each and are used only by steps after `dbt build`.
AFTER_DBT_LIBRARIES = ("lifetimes", "autograd", "plotly", "great_tables", "jinja2")

PROBE = r"""
import json, sys
from dagster_project.config import LoyaltyConfig
from dagster_project.definitions import build_definitions

libraries = json.loads(sys.argv[1])
build_definitions(LoyaltyConfig())
loaded_by_definitions = [name for name in libraries if name in sys.modules]

from dagster_project.background_imports import AFTER_DBT, import_in_background

thread = import_in_background([*AFTER_DBT, "dagster_project.no_such_module"])
thread.join(timeout=120)
print(json.dumps({
    "loaded_by_definitions": loaded_by_definitions,
    "thread_alive": thread.is_alive(),
    "loaded_in_background": [name for name in libraries if name in sys.modules],
    "modules_in_background": [name for name in AFTER_DBT if name in sys.modules],
    "after_dbt": list(AFTER_DBT),
}))
"""


def test_definitions_leave_the_after_dbt_libraries_to_the_background_thread():
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(AFTER_DBT_LIBRARIES)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["loaded_by_definitions"] == []
    # The thread ends (a module that cannot be imported does not stop it or raise) having
    # imported every module of AFTER_DBT, and with them the libraries above.
    assert probe["thread_alive"] is False
    assert probe["modules_in_background"] == probe["after_dbt"]
    assert probe["loaded_in_background"] == list(AFTER_DBT_LIBRARIES)

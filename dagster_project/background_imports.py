"""Imports on a thread while the run's own thread waits for something else.

The dbt step spends its time waiting for the dbt process; the steps after it import libraries
that cost 0.5–1 s of Python each (lifetimes and scipy for the CLV fit, plotly and great_tables
for the report). Importing them meanwhile takes that time off the run. A step that reaches an
import first simply waits for it (Python's per-module import lock), so the result is the same
either way; an import that fails here fails again, with its traceback, in the step that needs it.
"""

from __future__ import annotations

import importlib
import threading
from typing import Iterable

# The modules the steps after `dbt build` import lazily (not at definitions time: every process
# that loads the definitions, the web UI included, would pay for them).
AFTER_DBT = (
    "dagster_project.predictive_clv.fit",
    "dagster_project.kpi_report.page",
)


def import_in_background(modules: Iterable[str] = AFTER_DBT) -> threading.Thread:
    names = tuple(modules)

    def run() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the step that imports it reports the error
                pass

    thread = threading.Thread(target=run, name="background-imports", daemon=True)
    thread.start()
    return thread

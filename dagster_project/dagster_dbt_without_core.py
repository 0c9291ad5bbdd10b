"""dagster-dbt for the run's process, imported without importing dbt-core.

``import dagster_dbt`` imports dbt-core (``dagster_dbt.compat``: dbt's version, adapter base
classes and enums), ~2 s of a run's start-up, although the run's process never uses dbt-core:
dbt runs as its own process (``loyalty-dbt``, the warm dbt process of dbt_server.py) and
dagster-dbt only reads the manifest and dbt's JSON log. dagster-dbt supports an environment
without dbt-core (dbt Fusion): it then uses its own copies of those enums, takes the default
selection (every node) from the manifest, and skips its dbt-core version check. This module
hides dbt-core during that one import, so dagster-dbt takes that path; dbt stays importable
afterwards for whatever needs it.

What this gives up, on purpose: dagster-dbt evaluating a dbt selection string in this process
(``select=``/``exclude=`` of ``@dbt_assets``, ``build_dbt_asset_selection``), which this
project does not use. ``tests/test_dagster_dbt_without_core.py`` checks that the definitions
are identical either way, and that dbt-core stays out of the run's process.
"""

from __future__ import annotations

import importlib.abc
import sys


class _HideDbtCore(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dbt" or name.startswith("dbt."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden while dagster-dbt is imported)", name=name)
        return None


def _import_dagster_dbt():
    if "dagster_dbt" not in sys.modules and "dbt" not in sys.modules:
        finder = _HideDbtCore()
        sys.meta_path.insert(0, finder)
        try:
            import dagster_dbt
        finally:
            sys.meta_path.remove(finder)
    import dagster_dbt  # already imported (either way): the module object

    return dagster_dbt


_dagster_dbt = _import_dagster_dbt()
DagsterDbtTranslator = _dagster_dbt.DagsterDbtTranslator
DbtCliResource = _dagster_dbt.DbtCliResource
DbtProject = _dagster_dbt.DbtProject
dbt_assets = _dagster_dbt.dbt_assets

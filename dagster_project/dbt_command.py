"""`loyalty-dbt`: dbt-core's own command line, for the Dagster dbt step and `make prepare`.

One difference from `dbt`: the warehouse's location does not invalidate dbt's partial parse.
dbt re-parses the whole project (~5 s) whenever its "profile hash" changes, and that hash covers
every connection key of the profile, including the DuckDB file's path and its resource settings
(memory limit, spill folder). Neither changes what a model parses to, only where it runs, so a
first run against a new warehouse (a new customer, a test's temporary folder, a benchmark size)
paid a full parse for nothing. Here the hash leaves those keys out; vars, project files and the
other connection keys invalidate the parse exactly as in dbt.
"""

from __future__ import annotations

import os
import pprint
import sys

from .dbt_server import SERVER_ENV, run_on_server

# Connection keys that say where the warehouse is and how much it may use, not what it holds.
LOCATION_KEYS = frozenset({"path", "config_options"})


def profile_hash_without_location(credentials):
    from dbt.contracts.files import FileHash

    # The same text dbt hashes (ManifestLoader.build_manifest_state_check), without LOCATION_KEYS.
    connection_keys = sorted((key, value) for key, value in credentials.connection_info() if key not in LOCATION_KEYS)
    return FileHash.from_contents(pprint.pformat(connection_keys))


def install_location_free_profile_hash() -> None:
    from dbt.parser.manifest import ManifestLoader

    build_state_check = ManifestLoader.build_manifest_state_check
    if getattr(build_state_check, "location_free", False):
        return

    def build_manifest_state_check(self):
        state_check = build_state_check(self)
        state_check.profile_hash = profile_hash_without_location(self.root_project.credentials)
        return state_check

    build_manifest_state_check.location_free = True
    ManifestLoader.build_manifest_state_check = build_manifest_state_check


def main() -> None:
    address = os.environ.get(SERVER_ENV)
    if address:  # the run's warm dbt process (dbt_server.py) takes the command, if it is there
        code = run_on_server(address, sys.argv)
        if code is not None:
            sys.exit(code)
    install_location_free_profile_hash()
    from dbt.cli.main import cli

    sys.exit(cli())


if __name__ == "__main__":
    main()

"""The warm dbt process (dagster_project/dbt_server.py): `loyalty-dbt` hands its command to it and
gets dbt's own output and exit code; without it, `loyalty-dbt` runs dbt itself."""

import os
import socket
import subprocess
import time

import duckdb
import pytest

from dagster_project.dbt_project import DBT_PROJECT_DIR, dbt_environment, dbt_executable
from dagster_project.dbt_server import SERVER_ENV, warm_dbt_process

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the warm dbt process needs Linux pidfds")


def _loyalty_dbt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [dbt_executable(), *args], capture_output=True, text=True, cwd=DBT_PROJECT_DIR, env=env or dict(os.environ), timeout=120
    )


def _listening(address) -> None:
    """Waits until the warm process has bound its socket: a client that comes earlier runs dbt
    itself (the fallback), which is right for a run but not what these tests look at."""
    deadline = time.monotonic() + 30
    while not address.exists():
        assert time.monotonic() < deadline, "the warm dbt process never bound its socket"
        time.sleep(0.01)


def test_a_command_runs_on_the_warm_process_with_its_output_and_exit_code():
    with warm_dbt_process() as address:
        assert address is not None and os.environ[SERVER_ENV] == str(address)
        _listening(address)
        served = _loyalty_dbt("--version")
        assert not address.exists()  # the process took the command (it serves one, then is gone)
    assert SERVER_ENV not in os.environ
    direct = _loyalty_dbt("--version")
    assert served.returncode == direct.returncode == 0
    assert "Core:" in served.stdout and served.stdout.splitlines()[:2] == direct.stdout.splitlines()[:2]

    with warm_dbt_process():
        failed = _loyalty_dbt("run", "--no-such-flag")
    direct_failed = _loyalty_dbt("run", "--no-such-flag")
    assert failed.returncode == direct_failed.returncode != 0
    assert "no-such-flag" in failed.stdout + failed.stderr


def test_the_command_sees_the_clients_environment_and_folder_and_releases_the_warehouse(tmp_path):
    from dagster_project.config import LoyaltyConfig

    warehouse = tmp_path / "warehouse.duckdb"
    config = LoyaltyConfig(warehouse=str(warehouse))
    with warm_dbt_process():
        env = {**os.environ, **dbt_environment(config)}  # the file comes from the client's environment only
        result = _loyalty_dbt("debug", "--profiles-dir", str(DBT_PROJECT_DIR), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(warehouse) in result.stdout  # dbt debug names the database path it connected to
    # The client returned after the warm process ended: the file is free for a writer right away.
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select 42").fetchone()[0] == 42


def test_without_a_warm_process_loyalty_dbt_runs_dbt_itself(tmp_path):
    env = {**os.environ, SERVER_ENV: str(tmp_path / "nothing-listens-here.sock")}
    result = _loyalty_dbt("--version", env=env)
    assert result.returncode == 0 and "Core:" in result.stdout


def test_an_unused_warm_process_is_stopped_when_the_run_ends():
    with warm_dbt_process() as address:
        pass
    assert not address.exists() and not address.parent.exists()
    # No leftover process still bound to it: nothing answers at that address.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, pytest.raises(OSError):
        probe.connect(str(address))

"""A dbt process started ahead of the dbt step, so the step does not wait for dbt to start.

A dbt process spends ~1.8 s importing dbt-core and its adapter before it does anything. The run
starts this process when it begins (:func:`warm_dbt_process`): it imports dbt on the machine's
otherwise idle second core while Dagster sets up and ingest runs, then waits. When the dbt step
runs `loyalty-dbt` (still a subprocess that dagster-dbt starts and reads), that small client hands
its arguments, environment, working folder and its stdin/stdout/stderr file descriptors over a
Unix socket (:func:`run_on_server`); this process runs the command on those descriptors, so dbt's
JSON log reaches dagster-dbt exactly as from its own process, and sends back the exit code. The
client exits only after this process has exited (pidfd), so the warehouse file is released when
the step goes on, as with a plain dbt process.

One command per process (dbt's global state stays per process, as with the CLI). If the server is
not there or fails before it starts the command, the client runs dbt itself. Linux only (pidfd,
descriptor passing); elsewhere the client always runs dbt itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

SERVER_ENV = "LOYALTY_DBT_SERVER"
STARTED = b"S"  # the server took the command: from now on only it may run it
CODE = struct.Struct("!i")
MAX_REQUEST = 16 << 20
ACCEPT_POLL_S = 0.5


# --- the run's side -----------------------------------------------------------------------------


@contextlib.contextmanager
def warm_dbt_process() -> Iterator[Path | None]:
    """Starts the warm dbt process for the block and points `loyalty-dbt` at it (SERVER_ENV, which
    dagster-dbt passes on to its dbt subprocess). An unused process is stopped at the end."""
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="loyalty-dbt-"))
    address = folder / "dbt.sock"
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "dagster_project.dbt_server", str(address), str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    # The run's side only (the client, loyalty-dbt, must not import dagster-dbt through dbt_project).
    from .dbt_project import environment

    try:
        with environment({SERVER_ENV: str(address)}):
            yield address
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        address.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


# --- the client (loyalty-dbt) -------------------------------------------------------------------


def run_on_server(address: str, argv: list[str]) -> int | None:
    """Runs ``argv`` on the warm process at ``address``: its exit code, or None when there is no
    server to take it (then the caller runs dbt itself)."""
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(address)
    except OSError:
        return None
    with connection:
        try:
            credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            server_pid = struct.unpack("3i", credentials)[0]
            server = os.pidfd_open(server_pid)
        except OSError:
            return None
        request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
        stdio = [fd if _is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
        try:
            socket.send_fds(connection, [struct.pack("!I", len(request)) + request], stdio)
            started = connection.recv(1)
        except OSError:
            started = b""
        finally:
            for opened in set(stdio) - {0, 1, 2}:  # the /dev/null stand-ins: the server has its own copies
                os.close(opened)
        if started != STARTED:
            os.close(server)
            return None
        # dagster-dbt stops a run's dbt by SIGINT to its process: this one passes it on.
        forward = lambda signum, frame: os.kill(server_pid, signum)  # noqa: E731
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        reply = _receive(connection, CODE.size)
        select.select([server], [], [])  # the server has exited: its DuckDB file is closed
        os.close(server)
    if len(reply) != CODE.size:
        print("loyalty-dbt: the warm dbt process ended before dbt finished", file=sys.stderr)
        return 70
    return CODE.unpack(reply)[0]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:  # a daemon may start us without stdin
        return False
    return True


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# --- the server ---------------------------------------------------------------------------------


def serve(address: str, parent_pid: int) -> int:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)  # first: a client that comes early waits in the backlog, not falls back
    listener.listen(1)
    from .dbt_command import install_location_free_profile_hash

    install_location_free_profile_hash()
    import dbt.adapters.duckdb  # noqa: F401 - the adapter, loaded by every command of this project
    from dbt.cli.main import cli

    listener.settimeout(ACCEPT_POLL_S)
    while True:
        try:
            connection, _ = listener.accept()
            break
        except socket.timeout:
            if os.getppid() != parent_pid:  # the run is gone: so is its dbt step
                return 0
    listener.close()
    os.unlink(address)
    connection.settimeout(None)
    with connection:
        header, fds, _, _ = socket.recv_fds(connection, 4 + MAX_REQUEST, 3)
        (length,) = struct.unpack("!I", header[:4])
        body = header[4:]
        while len(body) < length:
            body += connection.recv(length - len(body))
        request = json.loads(body)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        connection.sendall(STARTED)
        try:
            cli.main(args=sys.argv[1:], prog_name="dbt")
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # noqa: BLE001 - as the dbt command line would: traceback, exit code 1
            import traceback

            traceback.print_exc()
            code = 1
        _close_warehouse()
        sys.stdout.flush()
        sys.stderr.flush()
        connection.sendall(CODE.pack(code))
    return code


def _close_warehouse() -> None:
    """Closes dbt-duckdb's database as the interpreter's teardown would (DuckDB checkpoints it), so
    that this process may end without that teardown."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


if __name__ == "__main__":
    # No interpreter teardown: the client waits for this process to end, and dbt's threads and
    # DuckDB's file are released by the exit itself.
    os._exit(serve(sys.argv[1], int(sys.argv[2])))

"""The run log: one row per pipeline run in the warehouse table ``ops.run_log``.

``record_start`` writes a row with outcome ``running`` before the run; ``record_end`` completes
it with the outcome (``success`` / ``failed``), the duration, the rows ingest loaded, the failed
checks and a one-line failure. A run killed in between (power cut, ``kill -9``, OOM) keeps
``running`` with no end: :func:`status_report` shows it as ``interrupted`` (or as ``running``
while its process is still alive on this machine).

Each call opens the warehouse for a moment and closes it: never while a run step holds it. The
run log must not change a run's outcome, so the ``record_*`` functions do not raise on database
errors (a locked or unreadable warehouse): they return False and warn.

Times are stored in UTC (``timestamp`` columns without a time zone) and shown in local time.
"""

import datetime as dt
import os
import socket
import warnings
from pathlib import Path
from typing import Sequence

import duckdb

from .warehouse import connect

TABLE = "ops.run_log"
OUTCOMES = ("running", "success", "failed")
MAX_FAILURE_CHARS = 500

_DDL = f"""
create schema if not exists ops;
create table if not exists {TABLE} (
    run_id varchar primary key,
    as_of_date date,            -- the (latest) as-of date of the run
    as_of_from date,            -- the first date of a backfilled range; null for one date
    started_at timestamp,       -- UTC
    finished_at timestamp,      -- UTC; null while running or when the run was killed
    outcome varchar not null,   -- running | success | failed
    duration_s double,
    rows_in bigint,             -- rows loaded by ingest in this run
    failed_checks varchar,      -- names of the failed checks, comma-separated
    failure varchar,            -- one line: the failed step or check and its first error line
    pid integer,                -- the process of the run, to tell a live run from a killed one
    host varchar
)
"""


class RunLogWarning(UserWarning):
    """The run log could not be written; the run itself is not affected."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= MAX_FAILURE_CHARS else line[: MAX_FAILURE_CHARS - 1] + "…"


def _dates(as_of: dt.date | str | Sequence[dt.date | str]) -> tuple[dt.date, dt.date | None]:
    values = [as_of] if isinstance(as_of, (dt.date, str)) else list(as_of)
    dates = sorted(value if isinstance(value, dt.date) else dt.date.fromisoformat(value) for value in values)
    if not dates:
        raise ValueError("a run needs at least one as-of date")
    return dates[-1], (dates[0] if len(dates) > 1 else None)


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DDL)


def _warn(action: str, warehouse: Path, error: Exception) -> None:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    warnings.warn(f"run log: could not {action} in {warehouse}: {first}", RunLogWarning, stacklevel=3)


def record_start(warehouse: Path | str, run_id: str, as_of: dt.date | str | Sequence[dt.date | str]) -> bool:
    """Writes the ``running`` row of a run (a run id seen before is started afresh)."""
    warehouse = Path(warehouse)
    latest, first = _dates(as_of)
    try:
        with connect(warehouse) as con:
            ensure_table(con)
            con.execute(
                f"insert or replace into {TABLE} (run_id, as_of_date, as_of_from, started_at, finished_at, outcome,"
                " duration_s, rows_in, failed_checks, failure, pid, host)"
                " values (?, ?, ?, ?, null, 'running', null, null, null, null, ?, ?)",
                [run_id, latest, first, _now(), os.getpid(), socket.gethostname()],
            )
    except duckdb.Error as error:
        _warn(f"record the start of run {run_id}", warehouse, error)
        return False
    return True


def record_end(
    warehouse: Path | str,
    run_id: str,
    outcome: str,
    rows_in: int | None = None,
    failed_checks: Sequence[str] | str | None = None,
    failure: str | None = None,
) -> bool:
    """Completes the row of a run: outcome (``success`` or ``failed``), duration since its start,
    rows loaded, failed checks and the failure (both kept to one line)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    warehouse = Path(warehouse)
    checks = failed_checks if isinstance(failed_checks, str) or failed_checks is None else ", ".join(failed_checks)
    finished = _now()
    try:
        with connect(warehouse) as con:
            ensure_table(con)
            started = con.execute(f"select started_at from {TABLE} where run_id = ?", [run_id]).fetchone()
            if started is None:  # no start recorded (e.g. the warehouse was locked then)
                con.execute(
                    f"insert into {TABLE} (run_id, outcome) values (?, 'running')", [run_id]
                )
                started = (None,)
            duration = (finished - started[0]).total_seconds() if started[0] is not None else None
            con.execute(
                f"update {TABLE} set finished_at = ?, outcome = ?, duration_s = ?, rows_in = ?,"
                " failed_checks = ?, failure = ? where run_id = ?",
                [finished, outcome, duration, rows_in, _one_line(checks) or None, _one_line(failure), run_id],
            )
    except duckdb.Error as error:
        _warn(f"record the end of run {run_id}", warehouse, error)
        return False
    return True


def rows_in(result) -> int | None:
    """Rows ingest took in during a run (a Dagster execution result): rows read from new or
    changed landing files, less exact duplicates, summed over the raw assets; None if no ingest
    asset was materialised."""
    total = None
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key.path[0] != "raw":
            continue
        metadata = materialization.metadata
        read = metadata.get("rows_read")
        duplicate = metadata.get("rows_duplicate")
        if read is None:
            continue
        total = (total or 0) + int(read.value) - int(duplicate.value if duplicate is not None else 0)
    return total


def failed_checks(result) -> list[str]:
    """``asset/check`` names of the checks that failed in a run (a Dagster execution result),
    error severity only (warnings do not fail a night)."""
    import dagster as dg

    failed = []
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        evaluation = event.asset_check_evaluation_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            if name not in failed:
                failed.append(name)
    return failed


def _process_alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recent_runs(warehouse: Path | str, limit: int = 10) -> list[dict]:
    """The last ``limit`` runs, newest first, with ``state``: the outcome, or ``interrupted`` for a
    run left ``running`` whose process is gone."""
    warehouse = Path(warehouse)
    with connect(warehouse, read_only=True) as con:
        exists = con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'ops' and table_name = 'run_log'"
        ).fetchone()[0]
        if not exists:
            return []
        cursor = con.execute(
            f"select * from {TABLE} order by started_at desc nulls last, finished_at desc nulls last limit ?",
            [int(limit)],
        )
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    for row in rows:
        state = row["outcome"]
        if state == "running" and (row["finished_at"] is not None or not _process_alive(row["pid"], row["host"])):
            state = "interrupted"
        row["state"] = state
    return rows


def _local(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.replace(tzinfo=dt.timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def status_report(warehouse: Path | str, limit: int = 10) -> str:
    """The last runs as a text table, newest first (for ``loyalty status``)."""
    warehouse = Path(warehouse)
    if not warehouse.exists():
        return f"no runs recorded: warehouse file not found: {warehouse}"
    try:
        runs = recent_runs(warehouse, limit)
    except duckdb.IOException as error:
        first = (str(error).strip().splitlines() or ["locked"])[0]
        return f"cannot read the run log now (a run is probably writing the warehouse): {first}"
    if not runs:
        return f"no runs recorded yet in {warehouse}"
    header = ("started (local)", "as of", "outcome", "duration", "rows in", "run id", "failure / failed checks")
    lines = []
    for run in runs:
        as_of = run["as_of_date"].isoformat() if run["as_of_date"] else "-"
        if run["as_of_from"]:
            as_of = f"{run['as_of_from'].isoformat()}..{as_of}"
        problem = run["failure"] or ""
        if run["failed_checks"]:
            problem = (problem + "; " if problem else "") + f"failed checks: {run['failed_checks']}"
        if run["state"] == "interrupted" and not problem:
            problem = "no end recorded: the run was killed or the machine stopped; re-run the date"
        lines.append(
            (
                _local(run["started_at"]),
                as_of,
                run["state"],
                _duration(run["duration_s"]),
                "-" if run["rows_in"] is None else f"{run['rows_in']:,}",
                (run["run_id"] or "")[:8],
                problem,
            )
        )
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header) - 1)]
    out = [
        ("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths)) + "  " + row[-1]).rstrip()
        for row in [header, *lines]
    ]
    last = runs[0]
    summary = f"last run: {last['state']}" + (f" ({_local(last['finished_at'])})" if last["finished_at"] else "")
    return "\n".join(out + ["", f"{summary}; warehouse: {warehouse}"])

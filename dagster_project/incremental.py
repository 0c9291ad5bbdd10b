"""What changed since the last build: the plan of the incremental intermediates (README "Incremental nights").

Three dbt models continue their previous build on DuckDB instead of re-aggregating every
transaction (dbt/macros/incremental.sql): ``int_customer_periods_aggregated``,
``int_customer_lifecycle_staged`` and ``int_customer_rfm``. Before `dbt build` this module decides whether tonight can
continue, and for which customers the raw rows changed:

- a snapshot of the ingest log (transactions and products), of the dbt vars and of the dbt code is
  taken at every build that built all of them and succeeded (``ops.incremental_snapshot*``);
- tonight's ingest log against it: files loaded since are new rows, and their customers are the
  changed customers (``ops.changed_customers``). A replaced file, rows of an earlier file moved to
  quarantine by a conflicting id, a changed products file, changed vars or code, a backfill of
  several dates, an as-of date more than a year from the previous one, Spark, or no snapshot:
  a full rebuild (the tables are dropped and built anew), and the log says why in one line;
- erasures need nothing here: the models never carry over a customer listed in raw.erasures;
- which customers' rows moved to another period with the as-of date is decided in SQL, from the
  as-of date the previous build holds.

A snapshot is only ever replaced after a successful build, so after a failed night the next one
compares with an older snapshot: it recomputes more customers than needed, never fewer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import duckdb

from .warehouse import quote_literal, relation_exists

INCREMENTAL_MODELS = ("int_customer_periods_aggregated", "int_customer_lifecycle_staged", "int_customer_rfm")
CUSTOMER_LEVEL_MODELS = ("int_customer_lifecycle_staged",)
# Sources whose rows the models read (erasures are handled in the models themselves).
WATCHED_SOURCES = ("transactions", "products")
LOGGED_STATUSES = ("loaded", "replaced", "superseded")
# Farther than this from the previous as-of date, a night is a full rebuild (the SQL walks the
# days between the two dates' period edges: ≤ 999 of them).
MAX_AS_OF_JUMP_DAYS = 366
SNAPSHOT = "ops.incremental_snapshot"
SNAPSHOT_FILES = "ops.incremental_snapshot_files"


@dataclasses.dataclass(frozen=True)
class Plan:
    mode: str  # incremental | full
    reason: str  # one line for the log
    vars_json: str
    code_hash: str
    files: tuple[tuple, ...]  # the ingest log entries the build sees (the next snapshot)
    changed_customers: int = 0

    @property
    def message(self) -> str:
        if self.mode == "incremental":
            return f"incremental intermediates: {self.reason}"
        return f"incremental intermediates: full rebuild: {self.reason}"


def code_hash(project_dir: Path) -> str:
    """The dbt code the carried-over rows were computed with: the project file, the macros and the
    staging and intermediate models (a change to any of them: one full rebuild)."""
    digest = hashlib.sha256()
    paths = [project_dir / "dbt_project.yml"]
    for folder in ("macros", "models/staging", "models/intermediate"):
        paths += sorted((project_dir / folder).rglob("*.sql"))
    for path in paths:
        digest.update(path.relative_to(project_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _columns(con, schema: str, table: str) -> set[str]:
    return {row[0] for row in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()}


def _log_entries(con) -> tuple[tuple, ...]:
    if not relation_exists(con, "raw", "ingest_log"):
        return ()
    placeholders = ", ".join("?" for _ in WATCHED_SOURCES)
    statuses = ", ".join("?" for _ in LOGGED_STATUSES)
    return tuple(sorted(con.execute(
        f"select source, source_file, sha256, status, rows_loaded, rows_quarantined from raw.ingest_log"
        f" where source in ({placeholders}) and status in ({statuses})",
        [*WATCHED_SOURCES, *LOGGED_STATUSES],
    ).fetchall(), key=repr))


def _full_reason(con, vars_json: str, code: str, files: tuple[tuple, ...], as_of: dt.date,
                 dates: Sequence[dt.date], engine: str, builds_customer_level: bool) -> tuple[str | None, list[str]]:
    """Why tonight is a full rebuild (None: it can continue), and the files loaded since the snapshot."""
    if engine != "duckdb":
        return f"engine {engine} builds every model in full", []
    if len(dates) > 1:
        return f"a backfill of {len(dates)} as-of dates", []
    if not relation_exists(con, "ops", "incremental_snapshot"):
        return "no earlier build to continue from", []
    previous_vars, previous_code = con.execute(f"select vars, code from {SNAPSHOT}").fetchone()
    if previous_vars != vars_json:
        old, new = json.loads(previous_vars), json.loads(vars_json)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"configuration changed ({', '.join(changed)})", []
    if previous_code != code:
        return "the dbt code changed since the last build", []
    models = [m for m in INCREMENTAL_MODELS if builds_customer_level or m not in CUSTOMER_LEVEL_MODELS]
    for model in models:
        if not relation_exists(con, "intermediate", model) or "as_of_date" not in _columns(con, "intermediate", model):
            return f"intermediate.{model} is missing or from an older version", []
        dates_held, previous_as_of = con.execute(
            f"select count(distinct as_of_date), max(as_of_date) from intermediate.{model}").fetchone()
        if dates_held > 1:
            return f"intermediate.{model} holds {dates_held} as-of dates (a backfill)", []
        if previous_as_of is not None and abs((as_of - previous_as_of).days) > MAX_AS_OF_JUMP_DAYS:
            return f"as-of date {as_of} is more than {MAX_AS_OF_JUMP_DAYS} days from the previous build's {previous_as_of}", []
    snapshot = set(con.execute(
        f"select source, source_file, sha256, status, rows_loaded, rows_quarantined from {SNAPSHOT_FILES}").fetchall())
    current = set(files)
    gone, added = snapshot - current, current - snapshot
    for entry in sorted(gone | added, key=repr):
        if entry[0] == "products":
            return f"products file {entry[1]} changed (margin rates apply to every period)", []
    for entry in sorted(gone, key=repr):
        replaced = any(a[1] == entry[1] and a[3] == "replaced" for a in added)
        if replaced:
            return f"transactions file {entry[1]} was replaced (the customers of its earlier rows are not known)", []
        return (f"the ingest log of {entry[1]} changed since the last build (rows moved to quarantine by a"
                f" conflicting id)"), []
    new_files = sorted(entry[1] for entry in added if entry[3] == "loaded")
    if len(new_files) != len(added):
        return "the ingest log has entries the last build did not see", []
    return None, new_files


def plan_build(warehouse: Path, variables: Mapping[str, Any], project_dir: Path, dates: Sequence[dt.date],
               engine: str, builds_customer_level: bool) -> Plan:
    """Decides tonight's mode and writes ops.incremental_build and ops.changed_customers; on a full
    rebuild drops the incremental intermediates this run builds, so dbt creates them anew."""
    vars_json = json.dumps(dict(variables), sort_keys=True)
    code = code_hash(project_dir)
    as_of = max(dates)
    with duckdb.connect(str(warehouse)) as con:
        files = _log_entries(con)
        reason, new_files = _full_reason(con, vars_json, code, files, as_of, dates, engine, builds_customer_level)
        con.execute("create schema if not exists ops")
        con.execute("begin transaction")
        con.execute("create or replace table ops.changed_customers (customer_id varchar not null)")
        changed = 0
        if reason is None and new_files:
            listed = ", ".join(quote_literal(name) for name in new_files)
            changed = con.execute(
                "insert into ops.changed_customers select distinct customer_id from raw.transactions"
                f" where source_file in ({listed})"
            ).fetchone()[0]
        mode = "full" if reason is not None else "incremental"
        if reason is None:
            reason = f"{len(new_files)} new transactions file(s), {changed} changed customer(s)"
        con.execute("create or replace table ops.incremental_build (mode varchar not null, reason varchar not null)")
        con.execute("insert into ops.incremental_build values (?, ?)", [mode, reason])
        if mode == "full":
            for model in INCREMENTAL_MODELS:
                if builds_customer_level or model not in CUSTOMER_LEVEL_MODELS:
                    con.execute(f"drop table if exists intermediate.{model}")
            if engine != "duckdb":
                con.execute(f"drop table if exists {SNAPSHOT}")  # the next DuckDB night starts afresh
        con.execute("commit")
    return Plan(mode, reason, vars_json, code, files, changed)


def record_build(warehouse: Path, plan: Plan) -> None:
    """After a successful build of every incremental model: the snapshot the next night compares with."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("begin transaction")
        con.execute(f"create or replace table {SNAPSHOT} (vars varchar not null, code varchar not null, built_at timestamp)")
        con.execute(f"insert into {SNAPSHOT} values (?, ?, current_timestamp)", [plan.vars_json, plan.code_hash])
        con.execute(
            f"create or replace table {SNAPSHOT_FILES} (source varchar, source_file varchar, sha256 varchar,"
            " status varchar, rows_loaded bigint, rows_quarantined bigint)"
        )
        if plan.files:
            con.executemany(f"insert into {SNAPSHOT_FILES} values (?, ?, ?, ?, ?, ?)", list(plan.files))
        con.execute("commit")

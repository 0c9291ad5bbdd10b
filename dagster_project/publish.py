"""The read-only copy of the marts for BI tools, published after the checks pass.

For every run the publish folder (``LoyaltyConfig.publish_path``, default ``data/published``) gets::

    warehouse.duckdb     schema ``marts`` with every mart table, in DuckDB storage version v1.4.0,
                         so DuckDB 1.4+ readers (the 1.x CLI, Evidence, DBeaver's and Metabase's
                         drivers) open it as well as DuckDB 2.x
    <mart>.parquet       one Parquet file per mart table, the same rows

Guarantees:

* Readers never see a partial file: each file is built under a hidden temp name in the same
  folder (``.warehouse.duckdb.tmp-<token>``, ``.<mart>.parquet.tmp-<token>``; nothing that
  matches ``*.duckdb`` or ``*.parquet``), fsynced, and ``os.replace()``d over the published one.
  All files are built first and renamed in one burst at the end.
* Readers are never blocked and never block the publish: the live warehouse is only read (attached
  read-only to an in-memory DuckDB), the published file is never opened for writing. A reader that
  keeps a connection open keeps seeing the copy it opened (the old inode) until it reconnects.
* A run killed at any point leaves the previous publication intact; its temp files are removed
  by the next publish (under an exclusive lock on ``.publish.lock``, so two publishes never
  interleave).
* Only published after the checks pass: in a run, the asset depends on every mart, so Dagster
  skips it when the dbt build (with its tests) or a blocking check on a mart fails; materialised
  on its own it refuses when the latest evaluation of an error-severity check on a mart failed.
"""


import concurrent.futures
import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Callable, Iterator

import dagster as dg
import duckdb

from .durable_files import fsync_dir, fsync_file
from .config import LoyaltyConfig
from .next_best_offer.assets import NBO_MART_KEYS
from .predictive_clv.assets import PREDICTIVE_MART_KEYS
from .resources import LoyaltySettings
from .warehouse import quote_identifier, quote_literal

SCHEMA = "marts"
PUBLISHED_KEY = dg.AssetKey(["published", "warehouse"])
DATABASE_FILE = "warehouse.duckdb"
STORAGE_VERSION = "v1.4.0"
LOCK_FILE = ".publish.lock"
# The marts the published copy is built from (the asset's deps). Whatever else is in the marts
# schema at publish time is published as well.
MART_NAMES = (
    "customer_period_facts",
    "value_deciles",
    "segment_flow_matrix",
    "segment_retention",
    "segment_clv",
    "nps_by_segment",
    "nps_by_flow",
    "customer_segment_flags",
    "lifecycle_kpis",
)
# Temp names of this module: hidden, and ending in neither .duckdb nor .parquet.
_TEMP_NAME = re.compile(r"^\.(?:warehouse\.duckdb|[A-Za-z0-9_]+\.parquet)\.tmp-[0-9a-f]+(?:\.wal)?$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class PublishError(RuntimeError):
    """The copy for BI cannot be published; the message says why."""


@dataclasses.dataclass(frozen=True)
class PublishOutcome:
    folder: Path
    database: Path
    tables: dict[str, int]  # mart -> rows
    parquet: dict[str, Path]
    removed_temp_files: tuple[str, ...]  # left behind by an earlier publish that was killed
    bytes: int


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def temp_name(final_name: str) -> str:
    """The hidden temp name a file is built under before it is renamed to ``final_name``."""
    return f".{final_name}.tmp-{secrets.token_hex(6)}"


def stale_temp_files(folder: Path) -> list[Path]:
    """Temp files of this module in ``folder`` (from a publish that was killed)."""
    if not folder.is_dir():
        return []
    return sorted(entry for entry in folder.iterdir() if _TEMP_NAME.match(entry.name) and entry.is_file())


@contextlib.contextmanager
def publish_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the publish folder (released by the kernel if the process dies)."""
    handle = open(folder / LOCK_FILE, "a+b")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise PublishError(f"another publish into {folder} is running (lock {LOCK_FILE})") from error
        yield
    finally:
        handle.close()


# ----------------------------------------------------------------------------------------------
# Publishing
# ----------------------------------------------------------------------------------------------


def mart_tables(con: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    """Tables and views in ``<database>.marts``, by name."""
    rows = con.execute(
        "select table_name from (select table_name, database_name, schema_name from duckdb_tables()"
        " union all select view_name, database_name, schema_name from duckdb_views() where not internal)"
        " where database_name = ? and schema_name = ? order by table_name",
        [database, SCHEMA],
    ).fetchall()
    return [row[0] for row in rows]


def publish_warehouse(
    config: LoyaltyConfig, log: Callable[[str], None] = lambda message: None
) -> PublishOutcome:
    """Copies every table of the live warehouse's ``marts`` schema into the publish folder
    (a v1.4.0 DuckDB file and one Parquet file per table); returns what it published."""
    warehouse = config.warehouse_path
    if not warehouse.exists():
        raise PublishError(f"warehouse file not found: {warehouse} (nothing to publish)")
    folder = config.publish_path
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    with publish_lock(folder):
        removed = []
        for stale in stale_temp_files(folder):
            stale.unlink(missing_ok=True)
            removed.append(stale.name)
        if removed:
            log(f"publish: removed {len(removed)} temp file(s) left by an interrupted publish: {', '.join(removed)}")
        built: list[tuple[Path, Path]] = []  # (temp, final)
        try:
            tables, parquet = _build(config, folder, built, log)
            for temp, _ in built:
                fsync_file(temp)
            # Everything is built and on disk: swap the files in, the database last.
            for temp, final in sorted(built, key=lambda pair: pair[1].name == DATABASE_FILE):
                os.replace(temp, final)
            fsync_dir(folder)
        finally:
            for temp, _ in built:
                temp.unlink(missing_ok=True)
                Path(f"{temp}.wal").unlink(missing_ok=True)
    database = folder / DATABASE_FILE
    return PublishOutcome(folder, database, tables, parquet, tuple(removed), database.stat().st_size)


def _build(
    config: LoyaltyConfig, folder: Path, built: list[tuple[Path, Path]], log: Callable[[str], None]
) -> tuple[dict[str, int], dict[str, Path]]:
    database_temp = folder / temp_name(DATABASE_FILE)
    built.append((database_temp, folder / DATABASE_FILE))
    con = duckdb.connect()  # in memory: the live file is attached read-only, the new file read-write
    try:
        if config.duckdb_memory_limit:
            con.execute(f"set memory_limit = {quote_literal(config.duckdb_memory_limit)}")
        if config.duckdb_threads:
            con.execute(f"set threads = {int(config.duckdb_threads)}")
        if config.duckdb_temp_dir:
            con.execute(f"set temp_directory = {quote_literal(config.duckdb_temp_dir)}")
        con.execute(f"attach {quote_literal(str(config.warehouse_path))} as live (read_only)")
        tables = mart_tables(con, "live")
        if not tables:
            raise PublishError(f"no tables in schema {SCHEMA} of {config.warehouse_path}: run the dbt build first")
        unsafe = [name for name in tables if not _TABLE_NAME.match(name)]
        if unsafe:
            raise PublishError(f"mart names that cannot be file names: {unsafe}")
        log(f"publish: copying {len(tables)} mart tables from {config.warehouse_path} to {folder}")
        con.execute(
            f"attach {quote_literal(str(database_temp))} as pub (storage_version {quote_literal(STORAGE_VERSION)})"
        )
        con.execute(f"create schema pub.{SCHEMA}")
        counts: dict[str, int] = {}
        parquet: dict[str, Path] = {}
        parquet_temps: dict[str, Path] = {}
        for name in tables:
            parquet_temps[name] = folder / temp_name(f"{name}.parquet")
            built.append((parquet_temps[name], folder / f"{name}.parquet"))
            parquet[name] = folder / f"{name}.parquet"
        # The Parquet files are written by a second connection while this one copies the tables:
        # DuckDB's writers keep about 1.6 of 2 cores busy, the two side by side keep both busy.
        # Both read the live marts, attached read-only (nobody can write them meanwhile), in
        # insertion order, so each file has the rows of its published table in the same order.
        writer, stop = con.cursor(), threading.Event()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            written = pool.submit(_write_parquet, writer, parquet_temps, stop)
            try:
                for name in tables:
                    source = f"live.{SCHEMA}.{quote_identifier(name)}"
                    target = f"pub.{SCHEMA}.{quote_identifier(name)}"
                    con.execute(f"create table {target} as select * from {source}")
                    counts[name] = con.execute(f"select count(*) from {target}").fetchone()[0]
                    log(f"publish: copied {SCHEMA}.{name} ({counts[name]} rows)")
            except BaseException:
                stop.set()
                writer.interrupt()
                raise  # leaving the pool waits for the writer, then publish_warehouse removes the temp files
            written.result()  # every Parquet file is complete, or the writer's error is raised here
        writer.close()
        con.execute("checkpoint pub")
        con.execute("detach pub")
        con.execute("detach live")
    finally:
        con.close()
    return counts, parquet


def _write_parquet(con: duckdb.DuckDBPyConnection, temps: dict[str, Path], stop: threading.Event) -> None:
    """One Parquet file per mart table, each into its temp path (``temps``: table -> path); stops
    early once ``stop`` is set (the table copy failed)."""
    for name, path in temps.items():
        if stop.is_set():
            return
        con.execute(
            f"copy (select * from live.{SCHEMA}.{quote_identifier(name)}) to {quote_literal(str(path))}"
            " (format parquet, compression zstd)"
        )


# ----------------------------------------------------------------------------------------------
# Reading it back (tests, status)
# ----------------------------------------------------------------------------------------------


def storage_version(path: Path) -> str | None:
    """The storage version DuckDB reports for a database file (e.g. ``v1.4.0+``)."""
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            "select tags['storage_version'] from duckdb_databases() where database_name = current_database()"
        ).fetchone()
    return row[0] if row else None


def header_version_number(path: Path) -> int:
    """The storage format number in a DuckDB file's main header (bytes 12-19 after the checksum
    and the ``DUCK`` magic): 64-68 are readable by DuckDB 1.x (67 is v1.4), DuckDB 2.0 writes more."""
    with open(path, "rb") as handle:
        head = handle.read(20)
    if head[8:12] != b"DUCK":
        raise PublishError(f"{path} is not a DuckDB database file")
    return int.from_bytes(head[12:20], "little")


# ----------------------------------------------------------------------------------------------
# Dagster
# ----------------------------------------------------------------------------------------------



def mart_keys(dbt_assets: dg.AssetsDefinition) -> list[dg.AssetKey]:
    """The asset keys of the marts: the dbt models in the marts schema (all of them, whatever the
    dbt project holds today) and the marts the predictive CLV and next-best-offer steps write (published after them)."""
    dbt_marts = sorted((key for key in dbt_assets.keys if key.path[0] == SCHEMA), key=lambda k: k.path)
    return dbt_marts + list(PREDICTIVE_MART_KEYS) + list(NBO_MART_KEYS)


def mart_check_keys(context: dg.AssetExecutionContext, dbt_assets: dg.AssetsDefinition) -> set[dg.AssetCheckKey]:
    """Every check on a mart the code location knows: the dbt tests, and (in a deployed code
    location) any other check such as the Great Expectations suites."""
    keys: set[dg.AssetCheckKey] = set(dbt_assets.check_keys)
    for graph in (lambda: context.repository_def.asset_graph, lambda: context.job_def.asset_layer.asset_graph):
        try:
            keys |= set(graph().asset_check_keys)
        except Exception:  # noqa: BLE001 - an ephemeral run (dg.materialize) has no repository
            continue
    return {key for key in keys if key.asset_key.path[0] == SCHEMA}


def failed_mart_checks(context: dg.AssetExecutionContext, dbt_assets: dg.AssetsDefinition) -> list[str]:
    """Error-severity checks on a mart whose latest evaluation failed (this run's, in a full run)."""
    failed = []
    for key in sorted(mart_check_keys(context, dbt_assets), key=lambda k: (k.asset_key.to_user_string(), k.name)):
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record is not None else None
        if evaluation is not None and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(f"{key.asset_key.to_user_string()}:{key.name}")
    return failed


def build_publish_assets(
    partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy, dbt_assets: dg.AssetsDefinition
) -> list[dg.AssetsDefinition]:
    """The publish asset, downstream of every mart of ``dbt_assets``."""

    @dg.asset(
        key_prefix=["published"],
        name="warehouse",
        group_name="publish",
        deps=mart_keys(dbt_assets),
        # The graph's as-of partitions, so one run (nightly or backfill) materialises the whole graph;
        # whatever the dates, the copy is of the marts as they are after the run.
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        description=(
            "Read-only copy of every mart for BI: publish_dir/warehouse.duckdb (schema marts, DuckDB "
            "storage v1.4.0) and publish_dir/<mart>.parquet, each built aside and swapped in atomically."
        ),
    )
    def published_warehouse(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        failed = failed_mart_checks(context, dbt_assets)
        if failed:
            raise PublishError(
                f"the latest checks on the marts failed ({', '.join(failed)}): the previous copy stays published"
            )
        outcome = publish_warehouse(settings.loyalty_config(), log=context.log.info)
        context.log.info(
            f"publish: published {len(outcome.tables)} marts to {outcome.database} and {len(outcome.parquet)} Parquet files"
        )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(outcome.database)),
                "folder": dg.MetadataValue.path(str(outcome.folder)),
                "storage_version": STORAGE_VERSION,
                "tables": dg.MetadataValue.json(outcome.tables),
                "rows": sum(outcome.tables.values()),
                "bytes": outcome.bytes,
                "removed_temp_files": len(outcome.removed_temp_files),
            }
        )

    return [published_warehouse]

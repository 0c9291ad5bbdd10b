"""engine: spark — what is different around the one dbt build when Spark runs the models.

The Dagster graph, ingest, the checks, export, publish and the report are the same code for both
engines. On spark the dbt step (transform.py) does three things more:

1. before the build, :func:`export_raw_parquet` mirrors the DuckDB raw tables into a Parquet
   dataset, one part per landed file (``<spark_dir>/raw/<table>/part-<hash of the file name>.parquet``):
   a new landing file adds a part, a replaced file or an erasure rewrites only the parts whose rows
   changed, a file whose rows are all gone loses its part. The run's as-of dates go to
   ``<spark_dir>/ops/run_dates``. On Spark the dbt sources and ops.run_dates read these folders by
   path (``parquet.`<folder>```: models/staging/_raw__sources.yml, macros/business_rules.sql), so
   no metastore is needed, locally or on a cluster;
2. dbt runs with the Spark target of config spark_method (dbt/profiles.yml, values from
   :func:`spark_environment`); its tables land under ``<spark_dir>/tables/<schema>.db/<table>``;
3. after the build, :func:`import_built_tables` copies every table Spark built back into the DuckDB
   warehouse under the same schema and name, and :func:`build_duckdb_views` recreates the views
   (staging) in DuckDB, so everything after dbt reads the warehouse as after a DuckDB run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import duckdb

from .config import SPARK_DEFAULT_PORTS, LoyaltyConfig
from .raw_contract import RAW_SOURCES
from .warehouse import quote_identifier, quote_literal

# dbt/profiles.yml: one output per spark_method.
SPARK_TARGETS = {"session": "spark", "thrift": "spark_thrift", "http": "spark_http"}
# Environment variables dbt/profiles.yml reads for the Spark outputs.
SPARK_ENV = {
    "master": "LOYALTY_SPARK_MASTER",
    "driver_memory": "LOYALTY_SPARK_DRIVER_MEMORY",
    "warehouse_dir": "LOYALTY_SPARK_WAREHOUSE_DIR",
    "raw_dir": "LOYALTY_SPARK_RAW_DIR",
    "ops_dir": "LOYALTY_SPARK_OPS_DIR",
    "host": "LOYALTY_SPARK_HOST",
    "port": "LOYALTY_SPARK_PORT",
    "cluster": "LOYALTY_SPARK_CLUSTER",
    "token": "LOYALTY_SPARK_TOKEN_VALUE",
}
PARTS_MANIFEST = "_parts.json"  # Spark skips files starting with _ or .
EMPTY_PART = "part-empty.parquet"  # a table without rows still has its columns for Spark
LAYER_SCHEMAS = ("staging", "intermediate", "marts")


def raw_parquet_dir(config: LoyaltyConfig) -> Path:
    return config.spark_path / "raw"


def ops_parquet_dir(config: LoyaltyConfig) -> Path:
    return config.spark_path / "ops"


def spark_tables_dir(config: LoyaltyConfig) -> Path:
    return config.spark_path / "tables"


def dbt_target_args(config: LoyaltyConfig) -> list[str]:
    """The dbt --target of the run's engine (none for DuckDB: profiles.yml's default)."""
    return ["--target", SPARK_TARGETS[config.spark_method]] if config.engine == "spark" else []


def spark_environment(config: LoyaltyConfig) -> dict[str, str]:
    """The environment dbt/profiles.yml's Spark outputs and macros/spark_sources.sql read."""
    port = config.spark_port or SPARK_DEFAULT_PORTS[config.spark_method]
    return {
        **({SPARK_ENV["port"]: str(port)} if port else {}),  # session: none
        SPARK_ENV["master"]: config.spark_master,
        SPARK_ENV["driver_memory"]: config.spark_driver_memory,
        SPARK_ENV["warehouse_dir"]: str(spark_tables_dir(config)),
        SPARK_ENV["raw_dir"]: str(raw_parquet_dir(config)),
        SPARK_ENV["ops_dir"]: str(ops_parquet_dir(config)),
        SPARK_ENV["host"]: config.spark_host or "localhost",
        SPARK_ENV["cluster"]: config.spark_cluster or "",
        # The token itself never sits in a file: it is read from the variable the config names.
        SPARK_ENV["token"]: os.environ.get(config.spark_token_env, ""),
    }


def _part_name(source_file: str) -> str:
    return f"part-{hashlib.sha256(source_file.encode()).hexdigest()[:20]}.parquet"


def _copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, target: Path, parameters: Sequence = ()) -> None:
    """Writes ``query`` to ``target`` by a temporary file and a rename (a reader never sees half a part)."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    relation = con.sql(query, params=list(parameters)) if parameters else con.sql(query)
    relation.write_parquet(str(temporary))
    os.replace(temporary, target)


def export_raw_parquet(con: duckdb.DuckDBPyConnection, root: Path) -> dict[str, dict[str, int]]:
    """Brings ``root/<table>/`` in line with the DuckDB table raw.<table>, one part per source file.

    A part is rewritten only when its file's rows changed (row count and a hash over every value:
    a replaced file, rows moved to quarantine by a later conflict, an erasure); parts of files
    without rows left are deleted. Returns per table how many parts were written and deleted."""
    changes: dict[str, dict[str, int]] = {}
    for source in RAW_SOURCES:
        table = f"raw.{quote_identifier(source.table)}"
        folder = root / source.table
        folder.mkdir(parents=True, exist_ok=True)
        manifest_file = folder / PARTS_MANIFEST
        known = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.exists() else {}
        columns = [row[0] for row in con.execute(f"select column_name from (describe {table})").fetchall()]
        values = ", ".join(quote_identifier(column) for column in columns)
        current = {
            name: {"rows": rows, "fingerprint": str(fingerprint)}
            for name, rows, fingerprint in con.execute(
                f"select source_file, count(*), sum(hash({values})::hugeint) from {table} group by source_file"
            ).fetchall()
        }
        written = deleted = 0
        for name, state in current.items():
            if known.get(name) != state:
                _copy_to_parquet(con, f"select * from {table} where source_file = ?", folder / _part_name(name), [name])
                written += 1
        for name in set(known) - set(current):
            (folder / _part_name(name)).unlink(missing_ok=True)
            deleted += 1
        empty = folder / EMPTY_PART
        if current:
            empty.unlink(missing_ok=True)
        elif not empty.exists():
            _copy_to_parquet(con, f"select * from {table} where false", empty)
        temporary = manifest_file.with_name(f".{manifest_file.name}.tmp")
        temporary.write_text(json.dumps(current, sort_keys=True), encoding="utf-8")
        os.replace(temporary, manifest_file)
        changes[source.table] = {"parts_written": written, "parts_deleted": deleted}
    return changes


def write_run_dates_parquet(config: LoyaltyConfig, dates: Sequence[dt.date]) -> None:
    """The run's as-of dates for Spark's ops.run_dates (the DuckDB table's twin, transform.write_run_dates)."""
    folder = ops_parquet_dir(config) / "run_dates"
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        listed = " union all ".join(f"select cast({quote_literal(date.isoformat())} as date) as as_of_date" for date in dates)
        _copy_to_parquet(con, listed, folder / "part-0.parquet")


def prepare_spark_run(config: LoyaltyConfig, dates: Sequence[dt.date]) -> dict[str, dict[str, int]]:
    """Before a Spark build: the raw Parquet dataset and the run dates up to date, and no table
    folder of an earlier run left (the in-memory catalog forgets its tables between sessions, and
    Spark refuses to create a table over a non-empty folder)."""
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        changes = export_raw_parquet(con, raw_parquet_dir(config))
    write_run_dates_parquet(config, dates)
    shutil.rmtree(spark_tables_dir(config), ignore_errors=True)
    return changes


def built_tables(config: LoyaltyConfig) -> list[tuple[str, str, Path]]:
    """(schema, table, folder) of every table the Spark build wrote."""
    found = []
    for schema in LAYER_SCHEMAS:
        for folder in sorted((spark_tables_dir(config) / f"{schema}.db").glob("*")):
            if folder.is_dir() and any(folder.glob("*.parquet")):
                found.append((schema, folder.name, folder))
    return found


def slice_keys(manifest: Path) -> dict[tuple[str, str], str]:
    """(schema, table) → unique_key of the models that keep slices (incremental on DuckDB, one
    slice per as_of_date), from the Spark run's manifest."""
    nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"].values() if manifest.exists() else []
    return {
        (node["schema"], node["alias"]): node["config"]["unique_key"]
        for node in nodes
        if node["resource_type"] == "model" and isinstance(node["config"].get("unique_key"), str)
    }


def import_built_tables(config: LoyaltyConfig, manifest: Path) -> list[str]:
    """Copies every table Spark built into the DuckDB warehouse (same schema and name); returns them.

    A model that keeps one slice per as_of_date (incremental with delete+insert on DuckDB) is built
    on Spark as a table of the run's dates only and merged here the DuckDB way: the warehouse's rows
    of those dates are replaced, the other dates' slices stay."""
    keys = slice_keys(manifest)
    imported = []
    with duckdb.connect(str(config.warehouse_path)) as con:
        existing = {tuple(row) for row in con.execute("select table_schema, table_name from information_schema.tables").fetchall()}
        con.execute("begin transaction")
        for schema, table, folder in built_tables(config):
            name = f"{quote_identifier(schema)}.{quote_identifier(table)}"
            rows = f"read_parquet({quote_literal(str(folder / '*.parquet'))})"
            con.execute(f"create schema if not exists {quote_identifier(schema)}")
            key = keys.get((schema, table))
            if key and (schema, table) in existing:
                con.execute(f"delete from {name} where {quote_identifier(key)} in (select {quote_identifier(key)} from {rows})")
                con.execute(f"insert into {name} by name select * from {rows}")
            else:
                con.execute(f"create or replace table {name} as select * from {rows}")
            imported.append(f"{schema}.{table}")
        con.execute("commit")
    return imported


def finish_spark_run(config: LoyaltyConfig, dbt_executable: str, project_dir: Path, target_path: Path,
                     variables: dict, environment: dict[str, str]) -> list[str]:
    """After a Spark build (also a failed one: what it built is in the warehouse, as on DuckDB):
    its tables into the DuckDB warehouse, and the views rebuilt there. Returns the tables copied."""
    if not spark_tables_dir(config).exists():
        return []
    imported = import_built_tables(config, target_path / "manifest.json")
    build_duckdb_views(dbt_executable, project_dir, target_path / "duckdb_views", variables, environment)
    return imported


def build_duckdb_views(dbt_executable: str, project_dir: Path, target_path: Path, variables: dict, environment: dict[str, str]) -> None:
    """The views (staging) in DuckDB too: the export reads staging.stg_raw__customers. Portable
    SQL on the same raw tables, built by dbt's DuckDB target (a few seconds, no model rebuilt)."""
    subprocess.run(
        [dbt_executable, "run", "--quiet", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
         "--target-path", str(target_path), "--select", "config.materialized:view", "--vars", json.dumps(variables)],
        check=True, cwd=project_dir, env={**os.environ, **environment},
    )

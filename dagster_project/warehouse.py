"""Opening the DuckDB warehouse file. One writer at a time: connections are short and closed."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import duckdb

from .config import LoyaltyConfig, resolve_path

# Without a configured duckdb_memory_limit: this share of physical memory. DuckDB's own default
# (80 %) leaves too little for Python, the dbt subprocess and the OS once a large ingest spills;
# a nightly batch should also leave the machine to the others (BI readers, the next job). At
# 50M transactions on 24 GB, a 6 GB limit kept the run's peak at 6.7 GB against 10.0 GB at 60 %
# (14 GB), for 9 % more time (BENCHMARKS.md); a dedicated machine may set duckdb_memory_limit higher.
DEFAULT_MEMORY_SHARE = 0.3


@contextlib.contextmanager
def connect(
    path: Path, read_only: bool = False, config: LoyaltyConfig | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Opens ``path``; with ``config``, under its DuckDB resource settings (see duckdb_settings)."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"warehouse file not found: {path} (run `loyalty run` first)")
    settings = duckdb_settings(config, path) if config is not None else {}
    connection = duckdb.connect(str(path), read_only=read_only, config=settings)
    try:
        yield connection
    finally:
        connection.close()


# A DuckDB database file has this magic at byte 8 (DuckDB's storage header).
DUCKDB_MAGIC = b"DUCK"


class NotAWarehouse(ValueError):
    """The warehouse path names a file that is not a DuckDB database."""


def check_warehouse_file(path: Path) -> None:
    """Raises NotAWarehouse when ``path`` exists and is not a DuckDB database file (a new path is
    fine: the run creates it). Reads 12 bytes: no lock, no connection."""
    if not path.exists():
        return
    if path.is_dir():
        raise NotAWarehouse(f"warehouse {path} is a folder, not a DuckDB database file")
    with open(path, "rb") as handle:
        header = handle.read(12)
    if header[8:12] != DUCKDB_MAGIC:
        raise NotAWarehouse(
            f"warehouse {path} is not a DuckDB database file: point --warehouse (or warehouse in the config) "
            "at the warehouse, or at a new path to create one"
        )


def duckdb_settings(config: LoyaltyConfig, path: Path) -> dict[str, str | int | bool]:
    """Memory limit, threads, spill folder and insertion order for a large job on the warehouse
    at ``path``: the configured values, else a memory limit of 30 % of physical memory and the
    spill folder ``<warehouse>.tmp`` beside the file (threads: DuckDB's default, one per core);
    insertion order is not kept. dbt's DuckDB gets the same through dbt/profiles.yml."""
    settings: dict[str, str | int | bool] = {
        "memory_limit": config.duckdb_memory_limit or default_memory_limit(),
        # Readers sort; keeping the order makes large inserts hold more in memory. The one
        # statement that needs it, the landing insert, turns it on for itself
        # (ingest._insertion_order_kept).
        "preserve_insertion_order": False,
        "temp_directory": str(resolve_path(config.duckdb_temp_dir) if config.duckdb_temp_dir else Path(f"{path}.tmp")),
    }
    if config.duckdb_threads:
        settings["threads"] = int(config.duckdb_threads)
    return settings


def default_memory_limit() -> str:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not available on this platform: DuckDB's default
        return "80%"
    return f"{int(physical * DEFAULT_MEMORY_SHARE) // (1 << 20)}MB"


def relation_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether the table or view schema.name exists in the connected warehouse."""
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchall()[0][0]
    )


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"

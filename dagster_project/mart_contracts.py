"""The contract of a mart that Python writes (the predictive CLV and next-best-offer steps): its
columns, types, NOT NULL and CHECK constraints as DDL enforced by DuckDB on every insert, and its
key. A table that exists with other columns fails the step (like a dbt contract with
on_schema_change: fail).

The key is a PRIMARY KEY where the table is small. A large table that is rewritten every night
(``indexed=False``: the NBO audit of every customer × offer) gets no index: DuckDB's ART index on
10M composite text keys made that night's insert 3.5× and its delete 400× slower (30.7 s and
38.9 s against 8.8 s and 0.1 s, BENCHMARKS.md). Its key is checked by one query after the write
instead, in the writer's transaction (``check_key``), so a duplicate still fails the step.
"""

from __future__ import annotations

import dataclasses

import duckdb

SCHEMA = "marts"


class ContractError(RuntimeError):
    """A mart exists with other columns than its contract, or a write broke its key."""


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB's information_schema spelling
    not_null: bool = True
    check: str | None = None  # SQL condition on the column

    def ddl(self) -> str:
        parts = [self.name, self.type]
        if self.not_null:
            parts.append("not null")
        if self.check:
            parts.append(f"check ({self.check})")
        return " ".join(parts)


def finite(name: str, low: float | None = None, high: float | None = None) -> str:
    """The CHECK condition of a number column: no NaN or infinity, within [low, high]."""
    condition = f"isfinite({name})"
    if low is not None:
        condition += f" and {name} >= {low}"
    if high is not None:
        condition += f" and {name} <= {high}"
    return condition


@dataclasses.dataclass(frozen=True)
class MartTable:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexed: bool = True  # False: the key is checked by check_key after each write (module doc)

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def ddl(self, *, replace: bool = False) -> str:
        columns = ", ".join(column.ddl() for column in self.columns)
        key = f", primary key ({', '.join(self.primary_key)})" if self.indexed else ""
        create = "create or replace table" if replace else "create table if not exists"
        return f"{create} {self.qualified} ({columns}{key})"


def ensure_table(con: duckdb.DuckDBPyConnection, table: MartTable) -> None:
    """Creates the mart if absent; fails if it exists with other column names or types."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(table.ddl())
    found = con.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = ? and table_name = ? order by ordinal_position",
        [SCHEMA, table.name],
    ).fetchall()
    declared = [(column.name, column.type) for column in table.columns]
    if [(name, kind.upper()) for name, kind in found] != declared:
        raise ContractError(
            f"{table.qualified} does not match its contract (the MartTable that declares it): "
            f"found {found}, declared {declared}; drop the table to rebuild it"
        )


def replace_table(con: duckdb.DuckDBPyConnection, table: MartTable) -> None:
    """An empty mart with exactly its contract, for a table that holds tonight only (cheaper than
    deleting last night's rows, and it upgrades a table created under an older contract)."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(table.ddl(replace=True))


def check_key(con: duckdb.DuckDBPyConnection, table: MartTable) -> None:
    """Fails when two rows share the key of an unindexed mart (its index would have refused them)."""
    key = ", ".join(table.primary_key)
    repeated = con.execute(
        f"select {key}, count(*) from {table.qualified} group by all having count(*) > 1 order by all limit 1"
    ).fetchone()
    if repeated is not None:
        raise ContractError(
            f"{table.qualified}: {repeated[-1]} rows share the key ({key}) = {tuple(repeated[:-1])!r}"
        )

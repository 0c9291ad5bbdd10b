"""The contract of the marts Python writes (dagster_project/mart_contracts.py): an unindexed key
is still a key, and a tonight-only mart is re-created with exactly its contract."""

import duckdb
import pytest

from dagster_project.mart_contracts import Column, ContractError, MartTable, check_key, ensure_table, finite, replace_table

TABLE = MartTable(
    "audit",
    (Column("customer_id", "VARCHAR"), Column("offer_id", "VARCHAR"), Column("score", "DOUBLE", check=finite("score", 0, 1))),
    ("customer_id", "offer_id"),
    indexed=False,
)


def test_an_unindexed_key_fails_the_write_that_repeats_it():
    con = duckdb.connect()
    replace_table(con, TABLE)
    con.execute("insert into marts.audit values ('a', 'X', 0.5), ('a', 'Y', 0.5), ('b', 'X', 0.1)")
    check_key(con, TABLE)  # distinct keys pass
    con.execute("insert into marts.audit values ('a', 'Y', 0.7)")
    with pytest.raises(ContractError, match=r"marts.audit: 2 rows share the key \(customer_id, offer_id\) = \('a', 'Y'\)"):
        check_key(con, TABLE)


def test_checks_and_not_null_hold_without_the_index():
    con = duckdb.connect()
    replace_table(con, TABLE)
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into marts.audit values ('a', 'X', 1.5)")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into marts.audit values (null, 'X', 0.5)")


def test_replace_table_upgrades_a_mart_created_with_its_old_primary_key():
    con = duckdb.connect()
    ensure_table(con, MartTable(TABLE.name, TABLE.columns, TABLE.primary_key))  # an older warehouse: indexed
    assert con.execute("select count(*) from duckdb_constraints() where table_name = 'audit' and constraint_type = 'PRIMARY KEY'").fetchone()[0] == 1
    con.execute("insert into marts.audit values ('a', 'X', 0.5)")
    replace_table(con, TABLE)
    assert con.execute("select count(*) from marts.audit").fetchone()[0] == 0
    assert con.execute("select count(*) from duckdb_constraints() where table_name = 'audit' and constraint_type = 'PRIMARY KEY'").fetchone()[0] == 0
    ensure_table(con, TABLE)  # the columns are the contract's


def test_a_table_with_other_columns_fails_the_contract():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.audit (customer_id varchar, offer_id varchar)")
    with pytest.raises(ContractError, match="does not match its contract"):
        ensure_table(con, TABLE)

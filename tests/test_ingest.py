"""Ingest across runs and its DuckDB settings: what the bad-input catalogue (one file, one run)
does not show — conflicts with rows loaded earlier, the log of the earlier file, malformed lines
in the middle of a file, the memory limit / threads / spill folder of the ingest connection."""

from decimal import Decimal
from pathlib import Path

import duckdb

from dagster_project.config import LoyaltyConfig
from dagster_project.ingest import ingest_source
from dagster_project.raw_contract import CUSTOMERS, TRANSACTIONS, DateLimits
from dagster_project.warehouse import connect

LIMITS = DateLimits(earliest="2000-01-01", latest="2026-11-22")
HEADER = "transaction_id,customer_id,transaction_date,amount\n"
CONFLICT = "conflicting values for a repeated transaction_id"


def _write(raw: Path, name: str, rows: list[str], header: str = HEADER) -> None:
    folder = raw / name.split("/")[0]
    folder.mkdir(parents=True, exist_ok=True)
    (raw / name).write_text(header + "\n".join(rows) + "\n")


def _log(con) -> dict[str, tuple]:
    rows = con.execute(
        "select source_file, rows_read, rows_loaded, rows_quarantined, rows_duplicate from raw.ingest_log"
        " where status in ('loaded', 'replaced')"
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def _assert_identity(con) -> None:
    for name, (read, loaded, quarantined, duplicate) in _log(con).items():
        assert read == loaded + quarantined + duplicate, name


def test_a_later_conflict_moves_the_earlier_row_and_recounts_its_file(tmp_path):
    raw = tmp_path / "raw"
    _write(raw, "transactions/day1.csv", ["A1,C1,2024-01-01,10", "A2,C1,2024-01-02,20"])
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    # Day 2: A1 again exactly (a duplicate), A2 with another amount (a conflict), A3 new twice.
    _write(raw, "transactions/day2.csv", ["A1,C1,2024-01-01,10.00", "A2,C1,2024-01-02,25", "A3,C2,2024-01-03,5", "A3,C2,2024-01-03,5"])
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert con.execute("select transaction_id, amount from raw.transactions order by 1").fetchall() == [
        ("A1", Decimal("10.00")), ("A3", Decimal("5.00"))
    ]
    assert sorted(con.execute("select source_file, transaction_id, reason from raw.quarantine_transactions").fetchall()) == [
        ("transactions/day1.csv", "A2", CONFLICT), ("transactions/day2.csv", "A2", CONFLICT)
    ]
    assert _log(con) == {"transactions/day1.csv": (2, 1, 1, 0), "transactions/day2.csv": (4, 1, 1, 2)}
    # Day 3: the conflict stays a conflict, even with the first values again.
    _write(raw, "transactions/day3.csv", ["A2,C1,2024-01-02,20"])
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert _log(con)["transactions/day3.csv"] == (1, 0, 1, 0)
    _assert_identity(con)


def test_the_same_rows_in_one_batch_across_files_load_once(tmp_path):
    raw = tmp_path / "raw"
    _write(raw, "transactions/a.csv", ["B1,C1,2024-01-01,10", "B2,C1,2024-01-01,10"])
    _write(raw, "transactions/b.csv", ["B2,C1,2024-01-01,10", "B1, C1 ,2024-01-01,10.0"])
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    # The first occurrence (file order, then line) is the one loaded.
    assert con.execute("select transaction_id, source_file, line_number from raw.transactions order by 1").fetchall() == [
        ("B1", "transactions/a.csv", 2), ("B2", "transactions/a.csv", 3)
    ]
    assert _log(con) == {"transactions/a.csv": (2, 2, 0, 0), "transactions/b.csv": (2, 0, 0, 2)}


def test_a_malformed_line_in_the_middle_keeps_every_count_true(tmp_path):
    raw = tmp_path / "raw"
    _write(raw, "transactions/mixed.csv", ["M1,C1,2024-01-01,10", "M2,C1,2024-01-01,1,5", "M3,C1,2024-01-01,10", "M3,C1,2024-01-01,10"])
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert con.execute("select transaction_id from raw.transactions order by 1").fetchall() == [("M1",), ("M3",)]
    assert con.execute("select count(*) from raw.transactions where transaction_id is null").fetchone() == (0,)
    assert _log(con) == {"transactions/mixed.csv": (4, 2, 1, 1)}
    # Line numbers are the file's own: the rows after the malformed line 3 keep lines 4 and 5
    # (line 5 repeats line 4 exactly: counted as a duplicate).
    assert con.execute("select line_number from raw.quarantine_transactions order by 1").fetchall() == [(3,)]
    assert con.execute("select transaction_id, line_number from raw.transactions order by 2").fetchall() == [
        ("M1", 2), ("M3", 4)]


def test_keyless_rows_repeat_only_when_every_value_repeats(tmp_path):
    raw = tmp_path / "raw"
    header = "customer_id,marketing_consent,consent_updated_at,email\n"
    _write(raw, "customers/c1.csv", ["K1,true,2024-01-01,", "K1,yes,2024-01-01T00:00:00,", "K1,true,2024-01-01,a@x"], header)
    con = duckdb.connect()
    ingest_source(con, CUSTOMERS, raw, limits=LIMITS)
    assert con.execute("select count(*) from raw.customers").fetchone() == (2,)
    assert _log(con) == {"customers/c1.csv": (3, 2, 0, 1)}


def test_connect_applies_the_duckdb_settings(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    configured = LoyaltyConfig(
        warehouse=str(warehouse), duckdb_memory_limit="1GB", duckdb_threads=1, duckdb_temp_dir=str(tmp_path / "spill")
    )
    setting = "select current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
    with connect(warehouse, config=configured) as con:
        memory, threads, temp = con.execute(setting).fetchone()
    assert (memory, threads, temp) == ("953.6 MiB", 1, str(tmp_path / "spill"))
    # Unset: a memory limit below DuckDB's 80 % default, and the spill folder beside the file.
    with connect(warehouse, config=LoyaltyConfig(warehouse=str(warehouse))) as con:
        _, _, temp = con.execute(setting).fetchone()
    assert temp == f"{warehouse}.tmp"


def test_line_numbers_of_large_files_are_their_own_lines(tmp_path):
    """Records are numbered by their position in the landing batch: that must hold for files of
    many row groups read by parallel threads (two CSVs of 250 000 rows, one with malformed and
    quarantined lines in the middle, and a Parquet file), with insertion order not kept otherwise."""
    raw = tmp_path / "raw"
    lines = 250_000
    _write(raw, "transactions/a.csv", [f"A{line},C{line % 97},2024-01-01,{line % 50 + 1}" for line in range(2, lines + 2)])
    rows = [f"B{line},C{line % 97},2024-01-01,{line % 50 + 1}" for line in range(2, lines + 2)]
    malformed = {130_000: "B130000,C1,2024-01-01", 200_001: "B200001,C1,2024-01-01,5,extra"}
    for line, text in malformed.items():
        rows[line - 2] = text
    rows[150_000 - 2] = "B150000,C1,2024-01-01,zero"  # quarantined: amount is not a number
    _write(raw, "transactions/b.csv", rows)
    parquet = raw / "transactions" / "c.parquet"
    duckdb.execute(
        f"copy (select 'P' || (i + 1) as transaction_id, 'C1' as customer_id, '2024-01-01' as transaction_date,"
        f" '7' as amount from range(200_000) t(i) order by i) to '{parquet}' (format parquet, row_group_size 50000)"
    )
    warehouse = tmp_path / "w.duckdb"
    with connect(warehouse, config=LoyaltyConfig(warehouse=str(warehouse), duckdb_threads=2)) as con:
        ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
        wrong = con.execute(
            "select source_file, transaction_id, line_number from raw.transactions"
            " where line_number <> cast(substr(transaction_id, 2) as bigint) limit 5"
        ).fetchall()
        loaded = con.execute("select source_file, count(*) from raw.transactions group by 1 order by 1").fetchall()
        quarantined = con.execute(
            "select line_number, reason from raw.quarantine_transactions order by 1"
        ).fetchall()
    assert wrong == []
    # Parquet has no header line: its records are numbered from 1.
    assert loaded == [("transactions/a.csv", lines), ("transactions/b.csv", lines - 3), ("transactions/c.parquet", 200_000)]
    assert quarantined == [
        (130_000, "malformed line (missing columns)"),
        (150_000, "amount is not a number"),
        (200_001, "malformed line (too many columns)"),
    ]

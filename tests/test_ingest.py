"""Ingest across runs and its DuckDB settings: what the bad-input catalogue (one file, one run)
does not show — conflicts with rows loaded earlier, the log of the earlier file, malformed lines
in the middle of a file, the memory limit / threads / spill folder of the ingest connection."""

import os
import time
from decimal import Decimal
from pathlib import Path

import duckdb

from dagster_project import ingest
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


def _count_hashing(monkeypatch) -> list[str]:
    """The names of the files ingest reads to hash them, in order."""
    hashed: list[str] = []
    original = ingest.sha256_of
    monkeypatch.setattr(ingest, "sha256_of", lambda path: hashed.append(path.name) or original(path))
    return hashed


MARGIN_S = 0.3  # the test's racy margin (the module's is 2 s): files older than it are trusted


def test_a_night_hashes_only_new_and_changed_landing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "RACY_MARGIN_NS", int(MARGIN_S * 1e9))
    hashed = _count_hashing(monkeypatch)
    raw = tmp_path / "raw"
    _write(raw, "transactions/day1.csv", ["H1,C1,2024-01-01,10", "H2,C1,2024-01-02,20"])
    time.sleep(MARGIN_S + 0.1)
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    _write(raw, "transactions/day2.csv", ["H3,C2,2024-01-03,30"])
    time.sleep(MARGIN_S + 0.1)
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert hashed == ["day1.csv", "day2.csv"]  # each file once: the later runs trust their records

    # day1 rewritten in place, same size, its modification time put back: its ctime is new.
    day1 = raw / "transactions/day1.csv"
    before = day1.stat()
    day1.write_text(day1.read_text().replace("H2,C1,2024-01-02,20", "H2,C1,2024-01-02,21"))
    os.utime(day1, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (day1.stat().st_size, day1.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    # day2 replaced by another file renamed over it, same size and modification time: a new inode.
    day2 = raw / "transactions/day2.csv"
    before = day2.stat()
    other = raw / "other.tmp"
    other.write_text(day2.read_text().replace("H3,C2,2024-01-03,30", "H3,C2,2024-01-03,31"))
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, day2)
    assert (day2.stat().st_size, day2.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert hashed[2:] == ["day1.csv", "day2.csv"]
    assert con.execute("select transaction_id, amount from raw.transactions order by 1").fetchall() == [
        ("H1", Decimal("10.00")), ("H2", Decimal("21.00")), ("H3", Decimal("31.00"))
    ]
    assert sorted(con.execute(
        "select source_file, status from raw.ingest_log where status in ('loaded', 'replaced')").fetchall()) == [
        ("transactions/day1.csv", "replaced"), ("transactions/day2.csv", "replaced")]
    _assert_identity(con)


def test_a_file_changed_just_before_it_was_hashed_is_hashed_again(tmp_path, monkeypatch):
    """A write in the same timestamp tick as the hash could leave the file's times as recorded:
    a record made less than the margin after the file's last change is not trusted."""
    monkeypatch.setattr(ingest, "RACY_MARGIN_NS", int(MARGIN_S * 1e9))
    hashed = _count_hashing(monkeypatch)
    raw = tmp_path / "raw"
    _write(raw, "transactions/fresh.csv", ["R1,C1,2024-01-01,10"])
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert hashed == ["fresh.csv", "fresh.csv"]
    time.sleep(MARGIN_S + 0.1)
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)  # hashed long enough after the change: recorded
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    assert hashed == ["fresh.csv"] * 3
    assert _log(con) == {"transactions/fresh.csv": (1, 1, 0, 0)}


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


# ---------------------------------------------------------------------------------------------
# The landing reads every text exactly as the rules of raw_contract do (typed_expression,
# violation_expressions): its plain forms and its untrimmed shortcut are exact, and the text it
# keeps gives the quarantine back every value as read.
# ---------------------------------------------------------------------------------------------

TRICKY_IDS = ["C1", " C1", "C1 ", "\u00a0C1", "C1\u00a0", "C\u00a01", "\u202fC1\u3000", "", "   ", "\tC1", "Å1", "1Å", "Å",
              "C 1", "!", "~", "C1\u2003"]
TRICKY_DATES = ["2024-05-01", " 2024-05-01", "2024-05-01 ", "2024-5-1", "2024-05-1", "2024-05-01T10:15:00Z",
                "2024-05-01 10:15", "2024-05-01T10:15:00.5+01:00", "2024-02-30", "2024-02-29", "20240501", "2024/05/01",
                "0999-01-01", "1999-12-31", "2027-01-01", "9999-12-31", "", "2024-05-01x", "\u00a02024-05-01", "+2024-05-01",
                "-2024-05-01", "infinity", "2024-13-01", "12024-05-01"]
TRICKY_AMOUNTS = ["594.59", "-3", "0.005", "594,59", "12345678901234567890", "+5.5", "\u22127.25", "1,234.50", "1 234.50",
                  "1\u00a0234", "1.234,50", "1\u202f234,5", "1,5", "1.2.3", "1e3", ".5", "5.", "- 5", "--5", "12.5", "12.50",
                  "-0.00", "-0", "0", "0.001", " 7.25 ", "7,25", "-12,50", "1 234,50", "0,00", "00012.50", "12.500",
                  "9999999999999999.99", "99999999999999999.99", "", " ", "\u00a012.50", "12.50\u00a0"]


def _tricky_rows(separator: str = ".") -> list[dict[str, str]]:
    good = {"transaction_id": "T", "customer_id": "C1", "transaction_date": "2024-05-01", "amount": f"12{separator}50"}
    rows = []
    for column, texts in (("transaction_id", TRICKY_IDS), ("customer_id", TRICKY_IDS),
                          ("transaction_date", TRICKY_DATES), ("amount", TRICKY_AMOUNTS)):
        for text in texts:
            rows.append({**good, column: text})
    for tag, row in enumerate(rows):
        row["tag"] = str(tag)
        if row["transaction_id"] == "T":
            row["transaction_id"] = f"T{tag}"
        else:  # a tricky id: unique by the tag inside it, so no two rows conflict
            row["transaction_id"] = row["transaction_id"].replace("C1", f"C1-{tag}") if "C1" in row["transaction_id"] else row["transaction_id"]
    return rows


def _reference(con, relation: str, separator: str) -> dict[str, tuple]:
    """Per tag: the texts as read, the typed values and the reason, by the rules themselves."""
    from dagster_project.raw_contract import typed_expression, violation_expressions

    columns = TRANSACTIONS.columns
    texts = ", ".join(f"cast({c.name} as varchar) as raw_{c.name}" for c in columns if c.name in
                      ("transaction_id", "customer_id", "transaction_date", "amount"))
    typed = ", ".join(f"{typed_expression(c)} as {c.name}" for c in columns[:4])
    rules = [rule for c in columns[:4] for rule in violation_expressions(c, LIMITS)]
    reason = "case " + " ".join(f"when {cond} then '{why}'" for cond, why in rules) + " end"
    rows = con.execute(
        f"select tag, raw_transaction_id, raw_customer_id, raw_transaction_date, raw_amount, transaction_id, customer_id,"
        f" transaction_date, amount, {reason} from (select *, {typed} from (select cast(tag as varchar) as tag, {texts},"
        f" '{separator}' as decimal_separator from {relation}))"
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def _landed(con) -> dict[str, tuple]:
    loaded = con.execute(
        "select extra_columns::json->>'tag', transaction_id, customer_id, transaction_date, amount from raw.transactions"
    ).fetchall()
    quarantined = con.execute(
        "select extra_columns::json->>'tag', transaction_id, customer_id, transaction_date, amount, reason"
        " from raw.quarantine_transactions"
    ).fetchall()
    return {row[0]: ("loaded", *row[1:]) for row in loaded} | {row[0]: ("quarantined", *row[1:]) for row in quarantined}


def _assert_as_the_rules_read(landed: dict, reference: dict) -> None:
    assert set(landed) == set(reference)
    for tag, (texts_and_typed) in reference.items():
        raw_texts, typed, reason = texts_and_typed[:4], texts_and_typed[4:8], texts_and_typed[8]
        if reason is None:
            assert landed[tag] == ("loaded", *typed), (tag, raw_texts)
        else:
            assert landed[tag] == ("quarantined", *raw_texts, reason), (tag, raw_texts)


def test_the_landing_reads_every_text_as_the_rules_do_csv(tmp_path):
    import csv

    for delimiter, separator in ((",", "."), (";", ",")):
        raw = tmp_path / f"raw{separator}"
        folder = raw / "transactions"
        folder.mkdir(parents=True)
        path = folder / "tricky.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, ["transaction_id", "customer_id", "transaction_date", "amount", "tag"],
                                    delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            writer.writeheader()
            writer.writerows(_tricky_rows(separator))
        con = duckdb.connect()
        ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
        columns = "{'transaction_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'transaction_date': 'VARCHAR', 'amount': 'VARCHAR', 'tag': 'VARCHAR'}"
        relation = (f"read_csv('{path}', auto_detect = false, header = true, columns = {columns}, delim = '{delimiter}',"
                    " quote = '\"', escape = '\"')")
        reference = _reference(con, relation, separator)
        assert sum(r[8] is None for r in reference.values()) > 20 and sum(r[8] is not None for r in reference.values()) > 20
        _assert_as_the_rules_read(_landed(con), reference)


def test_the_landing_reads_every_text_as_the_rules_do_parquet(tmp_path):
    """Parquet values are read as their text (cast to varchar): typed columns too."""
    raw = tmp_path / "raw"
    folder = raw / "transactions"
    folder.mkdir(parents=True)
    con = duckdb.connect()
    rows = _tricky_rows()
    con.execute("create table t (transaction_id varchar, customer_id varchar, transaction_date varchar, amount varchar, tag varchar)")
    con.executemany("insert into t values (?, ?, ?, ?, ?)", [list(r.values()) for r in rows])
    con.execute(f"copy t to '{folder / 'text.parquet'}' (format parquet)")
    # Typed columns: the text is their rendering (a double renders '12.5', a timestamp '2024-05-01 10:15:00').
    for name, date_type in (("dates.parquet", "date"), ("timestamps.parquet", "timestamp")):
        con.execute(
            f"""copy (select 'D{date_type}' || i as transaction_id, 'C1' as customer_id,
                       case when i % 5 <> 4 then cast(date '2024-05-01' + cast(i as integer) as {date_type})
                            + case when '{date_type}' = 'timestamp' then interval 10 minute * i else interval 0 minute end
                       end as transaction_date,
                       case i % 4 when 0 then i / 8 when 1 then -i * 1.25 when 2 then 0.0 else 1e20 end::double as amount,
                       '{date_type}' || i as tag from range(40) r(i)) to '{folder / name}' (format parquet)"""
        )
    ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    reference = {}
    for path in sorted(folder.iterdir()):
        reference |= _reference(con, f"read_parquet('{path}')", ".")
    assert len(reference) == len(rows) + 80
    _assert_as_the_rules_read(_landed(con), reference)


def test_trim_removes_no_ascii_character_but_the_space():
    """raw_contract.trimmed_expression skips trim() for all-ASCII texts without a space at either
    end: exact only while trim() removes no other ASCII character."""
    con = duckdb.connect()
    removed = [code for code in range(128)
               if con.execute("select trim(?) <> ?", [chr(code) + "a" + chr(code)] * 2).fetchone()[0]]
    assert removed == [32]

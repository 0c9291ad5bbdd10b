"""The bad-input catalogue: every case has a fixture file in tests/fixtures/landing/ and states
what it yields — loaded, quarantined (with which reason), counted as duplicate, or the file
rejected — and that the good row in it (G1 / RG) is never lost."""

import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.ingest import IngestError, ingest_source
from dagster_project.landing_files import LandingFormat
from dagster_project.raw_contract import NPS_RESPONSES, TRANSACTIONS, DateLimits, amount_expression

FIXTURES = Path(__file__).parent / "fixtures" / "landing"
LIMITS = DateLimits(earliest="2000-01-01", latest="2026-11-22")

NOT_A_NUMBER = "amount is not a number"
NOT_A_DATE = "transaction_date is not an ISO date (YYYY-MM-DD)"
BAD_SCORE = "score is not a whole number from 0 to 10"

# case → (loaded keys, {quarantined key or line: reason}, exact duplicates)
LOADED_CASES = {
    "conflicting_duplicate_id.csv": ({"G1"}, {3: "conflicting values for a repeated transaction_id",
                                              4: "conflicting values for a repeated transaction_id"}, 0),
    "exact_duplicate_rows.csv": ({"G1", "T1"}, {}, 1),
    "negative_amount_refund.csv": ({"G1", "T1"}, {}, 0),
    "zero_amount.csv": ({"G1"}, {3: "amount is zero"}, 0),
    "non_numeric_amount.csv": ({"G1"}, {3: NOT_A_NUMBER}, 0),
    "thousands_separator_amount.csv": ({"G1", "T1"}, {4: NOT_A_NUMBER}, 0),  # "1,5" is no grouping
    "blank_customer_id.csv": ({"G1"}, {3: "missing customer_id", 4: "missing customer_id"}, 0),
    "ids_with_whitespace.csv": ({"G1", "T1"}, {}, 0),
    "unparseable_date.csv": ({"G1"}, {3: NOT_A_DATE, 4: NOT_A_DATE}, 0),
    "ambiguous_date.csv": ({"G1"}, {3: NOT_A_DATE}, 0),
    "future_date.csv": ({"G1"}, {3: "transaction_date is in the future (after 2026-11-22)"}, 0),
    "before_business_start.csv": ({"G1"}, {3: "transaction_date is before the business start 2000-01-01"}, 0),
    "truncated_last_line.csv": ({"G1", "T1"}, {4: "malformed line (missing columns)"}, 0),
    "extra_unknown_column.csv": ({"G1"}, {}, 0),
    "reordered_columns.csv": ({"G1"}, {}, 0),
    "timestamps.csv": ({"G1", "T1"}, {}, 0),
    "utf8_bom.csv": ({"G1"}, {}, 0),
    "latin1_swedish_letters.csv": ({"G1"}, {}, 0),
    "swedish_excel_export.csv": ({"G1", "T1", "T2", "T3"}, {}, 0),
    "nps_scores_out_of_range.csv": ({"RG"}, {3: BAD_SCORE, 4: BAD_SCORE, 5: BAD_SCORE, 6: BAD_SCORE}, 0),
    "nps_duplicate_response_id.csv": ({"RG", "R2"}, {3: "conflicting values for a repeated response_id",
                                                     4: "conflicting values for a repeated response_id"}, 1),
    "nps_customer_without_transactions.csv": ({"RG", "R1"}, {}, 0),
    "nps_comments_with_newlines_and_quotes.csv": ({"RG", "R1"}, {}, 0),
}

REJECTED_CASES = {
    "unterminated_quote.csv": "unterminated quote on line 3",
    "header_only.csv": "no data rows (header only)",
    "empty_file.csv": "empty file (0 bytes)",
    "missing_column.csv": "missing required column(s) amount",
}


def _source_for(case: str):
    return NPS_RESPONSES if case.startswith("nps_") else TRANSACTIONS


def _land(tmp_path: Path, case: str) -> Path:
    source = _source_for(case)
    target = tmp_path / "raw" / source.folder / case
    target.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / case, target)
    return tmp_path / "raw"


def _ingest(raw: Path, case: str, **options):
    con = duckdb.connect()
    outcomes = ingest_source(con, _source_for(case), raw, limits=LIMITS, **options)
    return con, outcomes


def test_every_fixture_has_a_stated_outcome():
    assert {p.name for p in FIXTURES.iterdir()} == set(LOADED_CASES) | set(REJECTED_CASES)


@pytest.mark.parametrize("case", sorted(LOADED_CASES))
def test_loaded_case(tmp_path, case):
    source = _source_for(case)
    expected_loaded, expected_quarantine, expected_duplicates = LOADED_CASES[case]
    con, outcomes = _ingest(_land(tmp_path, case), case)
    loaded = {row[0] for row in con.execute(f"select {source.key} from raw.{source.table}").fetchall()}
    quarantined = dict(con.execute(f"select line_number, reason from raw.{source.quarantine_table}").fetchall())
    assert loaded == expected_loaded
    assert quarantined == expected_quarantine
    log = con.execute(
        "select rows_read, rows_loaded, rows_quarantined, rows_duplicate from raw.ingest_log"
    ).fetchall()
    assert len(log) == 1 and len(outcomes) == 1
    rows_read, rows_loaded, rows_quarantined, rows_duplicate = log[0]
    assert rows_read == rows_loaded + rows_quarantined + rows_duplicate
    assert (rows_loaded, rows_quarantined, rows_duplicate) == (len(expected_loaded), len(expected_quarantine), expected_duplicates)


def _one(con, sql):
    return con.execute(sql).fetchall()


def test_values_are_read_as_meant(tmp_path):
    """Spot checks on what the loaded rows hold, per case."""
    expectations = {
        "negative_amount_refund.csv": ("select amount from raw.transactions where transaction_id = 'T1'", [(Decimal("-50.00"),)]),
        "thousands_separator_amount.csv": ("select amount from raw.transactions where transaction_id = 'T1'", [(Decimal("1234.50"),)]),
        "ids_with_whitespace.csv": ("select transaction_id, customer_id from raw.transactions where transaction_id = 'T1'", [("T1", "C1")]),
        "extra_unknown_column.csv": ("select extra_columns from raw.transactions", [('{"store_region":"Norr"}',)]),
        "reordered_columns.csv": ("select amount, channel, customer_id from raw.transactions", [(Decimal("10.00"), "web", "CG")]),
        "timestamps.csv": ("select transaction_id, transaction_date::varchar from raw.transactions order by 1", [("G1", "2024-01-01"), ("T1", "2024-02-01")]),
        "utf8_bom.csv": ("select transaction_id, customer_id from raw.transactions", [("G1", "CG")]),
        "latin1_swedish_letters.csv": ("select product_id, channel from raw.transactions", [("Smörgås", "äppelbutik")]),
        "swedish_excel_export.csv": (
            "select transaction_id, amount from raw.transactions order by 1",
            [("G1", Decimal("10.00")), ("T1", Decimal("1234.50")), ("T2", Decimal("1000.00")), ("T3", Decimal("-12.50"))],
        ),
        "nps_comments_with_newlines_and_quotes.csv": (
            "select comment from raw.nps_responses where response_id = 'R1'",
            [('Line one\nline two, with "quotes" and åäö',)],
        ),
        "truncated_last_line.csv": ("select raw_line from raw.quarantine_transactions", [("T2,C1,2024-0",)]),
    }
    for case, (sql, expected) in expectations.items():
        con, _ = _ingest(_land(tmp_path / case, case), case)
        assert _one(con, sql) == expected, case


@pytest.mark.parametrize("case", sorted(REJECTED_CASES))
def test_rejected_file_fails_loudly_and_loads_nothing(tmp_path, case):
    raw = _land(tmp_path, case)
    con = duckdb.connect()
    with pytest.raises(IngestError) as error:
        ingest_source(con, TRANSACTIONS, raw, limits=LIMITS)
    message = str(error.value)
    assert str(raw / "transactions" / case) in message and REJECTED_CASES[case] in message
    # The failed ingest rolled back: not even the log row is there, so the next run retries.
    assert _one(con, "select count(*) from raw.transactions") == [(0,)]


def test_skip_rejected_files_loads_the_good_files_and_logs_the_rejection(tmp_path):
    raw = _land(tmp_path, "unterminated_quote.csv")
    shutil.copyfile(FIXTURES / "negative_amount_refund.csv", raw / "transactions" / "good.csv")
    con, outcomes = _ingest(raw, "unterminated_quote.csv", skip_rejected=True)
    assert {o.source_file: o.status for o in outcomes} == {
        "transactions/good.csv": "loaded", "transactions/unterminated_quote.csv": "rejected"
    }
    assert _one(con, "select transaction_id from raw.transactions order by 1") == [("G1",), ("T1",)]
    assert _one(con, "select status, message from raw.ingest_log where status = 'rejected'") == [
        ("rejected", "unterminated quote on line 3: the rest of the file cannot be split into rows")
    ]


def test_configured_format_overrides_detection(tmp_path):
    raw = tmp_path / "raw" / "transactions"
    raw.mkdir(parents=True)
    (raw / "pipes.csv").write_text("transaction_id|customer_id|transaction_date|amount\nT1|C1|2024-01-01|7,25\n")
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw.parent, limits=LIMITS, fmt=LandingFormat(delimiter="|", decimal_separator=","))
    assert _one(con, "select amount from raw.transactions") == [(Decimal("7.25"),)]


def test_accounting_identity_on_a_mixed_file_and_redelivery(tmp_path):
    """One file with every kind of row; then the same content again under another name, and the
    same file again: rows read always equal loaded + quarantined + duplicates, nothing is added."""
    header = "transaction_id,customer_id,transaction_date,amount\n"
    rows = [
        "A1,C1,2024-01-01,10", "A2,C1,2024-01-02,-5", "A2,C1,2024-01-02,-5",  # good, refund, exact dup
        "A3,C2,2024-01-03,0", "A4,,2024-01-03,5", "A5,C3,3024-01-01,5",       # zero, no customer, future
        "A6,C3,2024-01-05,1", "A6,C3,2024-01-05,2",                           # conflict
        "A7,C4,not-a-date,5", "A8,C4,2024-01-06,x", "A9,C5,2024-01-07",       # bad date, bad amount, short
    ]
    raw = tmp_path / "raw" / "transactions"
    raw.mkdir(parents=True)
    (raw / "mixed.csv").write_text(header + "\n".join(rows) + "\n")
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw.parent, limits=LIMITS)
    assert _one(con, "select rows_read, rows_loaded, rows_quarantined, rows_duplicate from raw.ingest_log") == [(11, 2, 8, 1)]
    assert _one(con, "select count(*) from raw.quarantine_transactions") == [(8,)]

    (raw / "mixed_copy.csv").write_text(header + "\n".join(rows) + "\n")          # same checksum
    (raw / "mixed_crlf.csv").write_bytes((header + "\n".join(rows) + "\n").replace("\n", "\r\n").encode())  # same rows, other bytes
    outcomes = ingest_source(con, TRANSACTIONS, raw.parent, limits=LIMITS)
    assert {o.source_file: o.status for o in outcomes} == {
        "transactions/mixed.csv": "unchanged", "transactions/mixed_copy.csv": "duplicate_file",
        "transactions/mixed_crlf.csv": "loaded",
    }
    assert _one(con, "select count(*) from raw.transactions") == [(2,)]
    for read, loaded, quarantined, duplicate in _one(
        con, "select rows_read, rows_loaded, rows_quarantined, rows_duplicate from raw.ingest_log"
    ):
        assert read == loaded + quarantined + duplicate


def test_a_corrected_file_replaces_its_earlier_version(tmp_path):
    raw = tmp_path / "raw" / "transactions"
    raw.mkdir(parents=True)
    header = "transaction_id,customer_id,transaction_date,amount\n"
    (raw / "day.csv").write_text(header + "B1,C1,2024-01-01,10\nB2,C1,2024-01-02,oops\n")
    con = duckdb.connect()
    ingest_source(con, TRANSACTIONS, raw.parent, limits=LIMITS)
    (raw / "day.csv").write_text(header + "B1,C1,2024-01-01,10\nB2,C1,2024-01-02,20\n")
    outcomes = ingest_source(con, TRANSACTIONS, raw.parent, limits=LIMITS)
    assert [o.status for o in outcomes] == ["replaced"]
    assert _one(con, "select transaction_id, amount from raw.transactions order by 1") == [
        ("B1", Decimal("10.00")), ("B2", Decimal("20.00"))
    ]
    assert _one(con, "select count(*) from raw.quarantine_transactions") == [(0,)]
    assert _one(con, "select status from raw.ingest_log order by loaded_at") == [("superseded",), ("replaced",)]


def test_unreadable_encoding_is_rejected(tmp_path):
    raw = tmp_path / "raw" / "transactions"
    raw.mkdir(parents=True)
    # 0x81 is undefined in Windows-1252 and invalid in UTF-8.
    (raw / "binary.csv").write_bytes(b"transaction_id,customer_id,transaction_date,amount\nT1,C\x81,2024-01-01,5\n")
    con = duckdb.connect()
    with pytest.raises(IngestError, match="unreadable encoding"):
        ingest_source(con, TRANSACTIONS, raw.parent, limits=LIMITS)


@pytest.mark.parametrize(
    ("separator", "text", "expected"),
    [
        # plain forms (the fast branch)
        (".", "594.59", Decimal("594.59")), (".", "-3", Decimal("-3.00")), (".", "0.005", Decimal("0.01")),
        (",", "594,59", Decimal("594.59")), (",", "-3", Decimal("-3.00")),
        (".", "12345678901234567890", None),  # too large for decimal(18, 2), either branch
        # the other forms (the full branch)
        (".", "+5.5", Decimal("5.50")), (".", "\u22127.25", Decimal("-7.25")), (".", "1,234.50", Decimal("1234.50")),
        (".", "1 234.50", Decimal("1234.50")), (".", "1\u00a0234", Decimal("1234.00")),
        (",", "1.234,50", Decimal("1234.50")), (",", "1\u202f234,5", Decimal("1234.50")),
        # unreadable in one dialect or both
        (".", "594,59", None), (",", "594.59", None), (".", "1,5", None), (".", "1.2.3", None),
        (".", "1e3", None), (".", ".5", None), (".", "5.", None), (".", "- 5", None), (".", "--5", None),
    ],
)
def test_amount_text_to_value(separator, text, expected):
    """Every amount form, each in the branch that reads it: the plain branch must give exactly
    what the full patterns give, and read nothing they reject."""
    with duckdb.connect() as con:
        value = con.execute(
            f"select {amount_expression('t')} from (select ?::varchar as t, ?::varchar as decimal_separator)",
            [text, separator],
        ).fetchone()[0]
    assert value == expected

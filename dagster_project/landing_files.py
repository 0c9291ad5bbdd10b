"""Reading one landing file as text columns, once, whatever its dialect.

CSV files: UTF-8 (with or without BOM) or Windows-1252/Latin-1 (detected, or configured);
separator `,` `;` tab or `|` (detected from the header, or configured); decimal comma assumed
for `;`-separated files (Swedish Excel exports), unless configured. Lines DuckDB cannot split
(too few or too many fields) come back as malformed lines for the quarantine; an unterminated
quote rejects the file, because every row after it would be swallowed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import duckdb

from .warehouse import quote_identifier, quote_literal

DELIMITERS = (",", ";", "\t", "|")
FALLBACK_ENCODING = "cp1252"  # Windows-1252, a superset of Latin-1's printable characters
T = TypeVar("T")


class RejectedFile(Exception):
    """The file cannot be loaded at all; the message says why (without the path)."""


@dataclasses.dataclass(frozen=True)
class LandingFormat:
    """Per landing folder; None means detect."""

    delimiter: str | None = None
    decimal_separator: str | None = None
    encoding: str | None = None  # "utf-8" or "cp1252" / "latin-1"


@dataclasses.dataclass(frozen=True)
class FileShape:
    """What is known of a file before its rows are read."""

    columns: list[str]  # original header names, in file order
    decimal_separator: str
    header_lines: int  # 1 for CSV (records start on line 2), 0 for Parquet


# Given the file's shape and its rows as a relation (text columns, in file order), the one
# statement that reads them (an insert, or a count when the file is to be rejected anyway).
ReadStatement = Callable[[FileShape, str], str]


@dataclasses.dataclass(frozen=True)
class LandedFile:
    shape: FileShape
    rows: int  # what the statement returned: rows inserted (or counted)
    malformed: list[tuple[int, str, str]]  # (line, error type, raw text)
    encoding: str | None

    @property
    def columns(self) -> list[str]:
        return self.shape.columns


def land(con: duckdb.DuckDBPyConnection, path: Path, fmt: LandingFormat, statement: ReadStatement) -> LandedFile:
    """Reads ``path`` once, with ``statement(shape, relation)``, in a transaction of its own:
    a file rejected after its rows were read leaves nothing behind."""
    if path.stat().st_size == 0:
        raise RejectedFile("empty file (0 bytes)")
    if path.suffix.lower() == ".parquet":
        return _land_parquet(con, path, fmt, statement)
    return _land_csv(con, path, fmt, statement)


def _land_parquet(con, path: Path, fmt: LandingFormat, statement: ReadStatement) -> LandedFile:
    relation = f"read_parquet({quote_literal(str(path))})"
    try:
        # The schema comes from the file's metadata; the rows are read once, by the statement.
        columns = [r[0] for r in con.execute(f"describe select * from {relation}").fetchall()]
        shape = FileShape(columns, fmt.decimal_separator or ".", 0)
        rows = _in_transaction(con, lambda: con.execute(statement(shape, relation)).fetchone()[0])
    except duckdb.Error as error:
        raise RejectedFile(f"not a readable Parquet file: {_first_line(error)}") from error
    return LandedFile(shape, rows, [], None)


def _land_csv(con, path: Path, fmt: LandingFormat, statement: ReadStatement) -> LandedFile:
    encoding = (fmt.encoding or "utf-8").replace("_", "-").lower()
    if encoding in ("utf-8", "utf8", "utf-8-sig"):
        try:
            return _read_csv(con, path, fmt, "utf-8", statement)
        except _NotUtf8:
            if fmt.encoding:  # configured as UTF-8: no guessing
                raise RejectedFile("unreadable encoding: not valid UTF-8") from None
            encoding = FALLBACK_ENCODING
    # DuckDB reads UTF-8 only (without extensions): transcode aside, read, delete.
    with tempfile.TemporaryDirectory(prefix="loyalty-landing-") as folder:
        transcoded = Path(folder) / "utf8.csv"
        try:
            with path.open("r", encoding=encoding, newline="") as source, transcoded.open("w", encoding="utf-8", newline="") as target:
                for chunk in iter(lambda: source.read(1 << 20), ""):
                    target.write(chunk)
        except UnicodeDecodeError as error:
            raise RejectedFile(f"unreadable encoding: neither UTF-8 nor {encoding} ({error.reason} at byte {error.start})") from error
        return _read_csv(con, transcoded, fmt, encoding, statement)


class _NotUtf8(Exception):
    pass


def _header(readable: Path) -> str:
    with readable.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        line = handle.readline()
    if not line.strip():
        raise RejectedFile("no header line (the first line is empty)")
    return line


def _read_csv(con, readable: Path, fmt: LandingFormat, encoding: str, statement: ReadStatement) -> LandedFile:
    header_line = _header(readable)
    delimiter = fmt.delimiter or max(DELIMITERS, key=header_line.count)
    # DuckDB detects '\n' itself; CRLF is stated (its escaped '\n' form reads no rows at all).
    newline_option = ", new_line = '\\r\\n'" if header_line.endswith("\r\n") else ""
    header = next(csv.reader(io.StringIO(header_line), delimiter=delimiter))
    names = [name.strip() for name in header]
    if len(set(n.lower() for n in names)) != len(names):
        raise RejectedFile(f"repeated column names in the header: {header}")
    decimal = fmt.decimal_separator or ("," if delimiter == ";" else ".")
    shape = FileShape(names, decimal, 1)
    columns_sql = "{" + ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in names) + "}"
    # No sniffing: the header gives the columns, and every value stays text for the row rules.
    relation = f"""read_csv(
        {quote_literal(str(readable))}, auto_detect = false, header = true, columns = {columns_sql},
        delim = {quote_literal(delimiter)}, quote = '"', escape = '"', store_rejects = true{newline_option}
    )"""

    def read() -> tuple[int, list[tuple[int, str, str]]]:
        try:
            rows = con.execute(statement(shape, relation)).fetchone()[0]
        except duckdb.Error as error:
            raise RejectedFile(f"cannot be read as CSV: {_first_line(error)}") from error
        rejects = con.execute("select line, error_type, csv_line from reject_errors order by line, column_idx").fetchall()
        if any(r[1] == "INVALID ENCODING" for r in rejects) or "\ufffd" in header_line:
            raise _NotUtf8()
        unterminated = [r for r in rejects if r[1] == "UNQUOTED VALUE"]
        if unterminated:
            raise RejectedFile(f"unterminated quote on line {unterminated[0][0]}: the rest of the file cannot be split into rows")
        return rows, rejects

    con.execute("drop table if exists reject_errors; drop table if exists reject_scans")
    try:
        rows, rejects = _in_transaction(con, read)
    finally:
        con.execute("drop table if exists reject_errors; drop table if exists reject_scans")
    malformed: dict[int, tuple[int, str, str]] = {}
    for line, error_type, text in rejects:
        malformed.setdefault(line, (line, error_type.lower(), text))
    return LandedFile(shape, rows, list(malformed.values()), encoding)


def _in_transaction(con, work: Callable[[], T]) -> T:
    """Runs ``work`` in a transaction of its own, rolled back when it raises."""
    con.execute("begin transaction")
    try:
        result = work()
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")
    return result


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def landing_column_sql(by_name: dict[str, str], column: str) -> str:
    return f"cast({quote_identifier(by_name[column])} as varchar)" if column in by_name else "null::varchar"

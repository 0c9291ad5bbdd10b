"""Loading landing files into the warehouse's ``raw`` schema, file by file, nothing lost.

For each kind of landing file (see raw_contract): new or changed files are read as text,
checked row by row in SQL, and every row ends in exactly one place: ``raw.<table>`` (loaded),
``raw.quarantine_<folder>`` (with its reason) or the duplicate count of ``raw.ingest_log``.
Per file, rows_read = rows_loaded + rows_quarantined + rows_duplicate.

A row lands typed: its values as the rules read them, its key's hash and the rule it breaks. Its
text is kept only where it differs from the typed value's own rendering (a row that breaks a
rule, an id with spaces around it, an amount written "12.5"): nearly every row of a real file
keeps none, and the quarantine gets the text back exactly (see _create_landing_view).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from pathlib import Path

import duckdb

from .landing_files import FileShape, LandingFormat, RejectedFile, land, landing_column_sql
from .raw_contract import (
    SQL_TYPES, DateLimits, RawColumn, RawSource, plain_form, rendering, trimmed_expression, typed_expression,
    violation_expressions,
)
from .warehouse import quote_identifier, quote_literal

LANDING_EXTENSIONS = (".csv", ".parquet")
CONFLICT_REASON = "conflicting values for a repeated {key}"
# The batch being loaded: every row of the new and changed files, landed once (typed values, the
# key's hash, the reason of the row rules, and the text only where the typed value does not
# render it); temp objects of the ingest connection.
LANDING_TABLE = "landing_batch"
LANDING_VIEW = "landing_rows"  # the batch with file names, line numbers and the text as read
DECISIONS_TABLE = "ingest_decisions"  # only the rows whose key repeats or is already known
# The landing files' digests as last computed, with what the file system said about each file
# then: a night hashes only new and changed files, not the whole history again (at 10M
# transactions 460 MB, 0.35 s; at 100M 4.8 GB, every night). As git's index does: a file with the
# recorded device, inode, size, mtime and ctime has the recorded content. Programs can set mtime
# (utime, touch, cp -p) but not ctime: any write to the file, or another file renamed over it,
# gives it a new ctime or inode. A record is trusted only when the file's last change came
# RACY_MARGIN_NS before its hashing began: within a file system's timestamp granularity a write
# right after the hash could leave both times as recorded (git's "racy" entries).
DIGESTS_TABLE = "ops.landing_file_digests"
RACY_MARGIN_NS = 2_000_000_000


@dataclasses.dataclass(frozen=True)
class _BatchFile:
    """A file landed in this batch: its name under the raw folder, its digest, its line offset
    (the line of each of its records is its rowid in the batch table + the offset) and its
    decimal separator (the rendering of its amounts)."""

    name: str
    sha256: str
    line_offset: int
    decimal_separator: str = "."


class IngestError(RuntimeError):
    """A landing file was rejected whole; the message names the file and the rule."""


@dataclasses.dataclass(frozen=True)
class FileOutcome:
    source_file: str
    sha256: str
    status: str  # loaded | replaced | unchanged | duplicate_file | rejected
    rows_read: int = 0
    # Written to the log as they stand after this run (a later conflict may move loaded rows).
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    message: str | None = None


def sha256_of(path: Path) -> str:
    # 16 MiB reads: Great Expectations is imported on a thread meanwhile (quality.prepare_in_background)
    # and each read and update waits for the GIL; beside that import, hashing the 10M benchmark's
    # 460 MB took 2.5-2.7 s with 1 MiB reads, 0.9-1.1 s with 16 MiB (0.35 s alone).
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class _FileIdentity:
    """What the file system says about a file's content without reading it."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> "_FileIdentity":
        st = path.stat()
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def ensure_digest_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists ops")
    con.execute(
        f"create table if not exists {DIGESTS_TABLE} (path varchar not null, device ubigint not null,"
        " inode ubigint not null, size ubigint not null, mtime_ns bigint not null, ctime_ns bigint not null,"
        " sha256 varchar not null, hashed_at_ns bigint not null)"
    )


def landing_digest(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """The file's SHA-256: the one recorded when it was last hashed if the file is provably the
    same (DIGESTS_TABLE), else hashed now (and recorded)."""
    name = str(path.resolve())
    identity = _FileIdentity.of(path)
    known = con.execute(
        f"select sha256, hashed_at_ns from {DIGESTS_TABLE} where path = ? and device = ? and inode = ?"
        " and size = ? and mtime_ns = ? and ctime_ns = ?",
        [name, *dataclasses.astuple(identity)],
    ).fetchone()
    if known and max(identity.mtime_ns, identity.ctime_ns) < known[1] - RACY_MARGIN_NS:
        return known[0]
    hashed_at_ns = time.time_ns()
    digest = sha256_of(path)
    if _FileIdentity.of(path) == identity:  # not written to while it was read: worth recording
        con.execute(f"delete from {DIGESTS_TABLE} where path = ?", [name])
        con.execute(
            f"insert into {DIGESTS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?)",
            [name, *dataclasses.astuple(identity), digest, hashed_at_ns],
        )
    return digest


def landing_files(raw_dir: Path, source: RawSource) -> list[Path]:
    folder = raw_dir / source.folder
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LANDING_EXTENSIONS)


def ensure_raw_tables(con: duckdb.DuckDBPyConnection, source: RawSource) -> None:
    typed = ", ".join(f"{c.name} {SQL_TYPES[c.kind]}" for c in source.columns)
    texts = ", ".join(f"{c.name} varchar" for c in source.columns)
    con.execute("create schema if not exists raw")
    con.execute(
        f"create table if not exists raw.{source.table} ({typed}, extra_columns varchar,"
        " source_file varchar not null, line_number bigint not null)"
    )
    con.execute(
        f"create table if not exists raw.{source.quarantine_table} (source_file varchar not null,"
        f" line_number bigint, {texts}, extra_columns varchar, raw_line varchar, reason varchar not null)"
    )
    con.execute(
        "create table if not exists raw.ingest_log (source varchar not null, source_file varchar not null,"
        " sha256 varchar not null, status varchar not null, rows_read bigint, rows_loaded bigint,"
        " rows_quarantined bigint, rows_duplicate bigint, loaded_at timestamp, message varchar)"
    )


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: RawSource,
    raw_dir: Path,
    *,
    skip_rejected: bool = False,
    limits: DateLimits | None = None,
    fmt: LandingFormat = LandingFormat(),
) -> list[FileOutcome]:
    """Loads the new and changed files of one source in one transaction; returns one outcome per file."""
    ensure_raw_tables(con, source)
    ensure_digest_table(con)
    outcomes: list[FileOutcome] = []
    to_load: list[_BatchFile] = []
    try:
        _create_landing_table(con, source)
        # Reading happens outside the transaction: a file DuckDB cannot parse must not abort it.
        for path in landing_files(raw_dir, source):
            name = path.relative_to(raw_dir).as_posix()
            digest = landing_digest(con, path)
            outcome = _known_file_outcome(con, source, name, digest)
            if outcome is not None:
                outcomes.append(outcome)
                continue
            error, line_offset, separator = _land_file(con, source, path, len(to_load), fmt, limits)
            if error:
                outcomes.append(FileOutcome(name, digest, "rejected", message=error))
            else:
                to_load.append(_BatchFile(name, digest, line_offset, separator))
        rejected = [o for o in outcomes if o.status == "rejected"]
        if rejected and not skip_rejected:
            raise IngestError("; ".join(f"{raw_dir / o.source_file}: rejected: {o.message}" for o in rejected))
        con.execute("begin transaction")
        try:
            recount: set[str] = set()
            if to_load:
                loaded, recount = _load_batch(con, source, to_load)
                outcomes.extend(loaded)
            _write_log(con, source, outcomes, recount)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.execute(f"drop view if exists {LANDING_VIEW}")
        con.execute(f"drop table if exists {DECISIONS_TABLE}")
        con.execute(f"drop table if exists {LANDING_TABLE}")
    return outcomes


def _known_file_outcome(con, source: RawSource, name: str, digest: str) -> FileOutcome | None:
    """Files already loaded are not read again; a copy of a loaded file under another name adds nothing."""
    same = con.execute(
        "select rows_read from raw.ingest_log where source = ? and source_file = ? and sha256 = ?"
        " and status in ('loaded', 'replaced') order by loaded_at desc limit 1",
        [source.folder, name, digest],
    ).fetchone()
    if same:
        return FileOutcome(name, digest, "unchanged")
    copy = con.execute(
        "select source_file, rows_read from raw.ingest_log where source = ? and sha256 = ?"
        " and status in ('loaded', 'replaced') order by loaded_at desc limit 1",
        [source.folder, digest],
    ).fetchone()
    if copy:
        return FileOutcome(
            name, digest, "duplicate_file", rows_read=copy[1], rows_duplicate=copy[1],
            message=f"same content as {copy[0]}",
        )
    return None


# ---------------------------------------------------------------------------------------------
# Landing: each file read once into the batch table
# ---------------------------------------------------------------------------------------------


def _create_landing_table(con, source: RawSource) -> None:
    """The batch table: per row its file and line, the typed values, the hash of its key, the
    reason it is quarantined (null for a row that passes the row rules) and, per column, the text
    as read only where it differs from the typed value's rendering (else null). The line of a
    record read from a file is null: it follows from the row's position (see _land_file)."""
    texts = ", ".join(f"raw_{c.name} varchar" for c in source.columns)
    typed = ", ".join(f"{c.name} {SQL_TYPES[c.kind]}" for c in source.columns)
    con.execute(
        f"create or replace temp table {LANDING_TABLE} (file_order integer not null, line_number bigint,"
        f" key_hash ubigint, {typed}, {texts}, extra_columns varchar, raw_line varchar, reason varchar)"
    )


def _landing_columns(source: RawSource) -> list[str]:
    return (
        ["file_order", "line_number", "key_hash"]
        + [c.name for c in source.columns]
        + [f"raw_{c.name}" for c in source.columns]
        + ["extra_columns", "reason"]
    )


def _land_file(
    con, source: RawSource, path: Path, file_order: int, fmt: LandingFormat, limits: DateLimits | None
) -> tuple[str | None, int, str]:
    """Reads one file into the batch table; returns why it is rejected (or None), the file's
    line offset (the line of each of its records is its rowid in the batch table + the offset)
    and its decimal separator.

    Records are numbered by position rather than `with ordinality` on the reader, which cost 2 s
    per 4M rows (half the landing time): the insert keeps the file's order, and a table's rowids
    follow its appends."""
    missing: list[str] = []

    def statement(shape: FileShape, relation: str) -> str:
        by_name = _columns_by_name(shape.columns)
        missing.extend(c for c in source.required_columns if c not in by_name)
        if missing:
            return f"select count(*) from {relation}"  # read anyway: a file DuckDB cannot split says so first
        return _landing_insert(source, shape, by_name, relation, file_order, limits)

    try:
        with _insertion_order_kept(con):
            landed = land(con, path, fmt, statement)
    except RejectedFile as error:
        return str(error), 0, "."
    if missing:
        return f"missing required column(s) {', '.join(missing)} (found: {', '.join(landed.columns)})", 0, "."
    if landed.rows == 0 and not landed.malformed:
        return "no data rows (header only)", 0, "."
    line_offset = _line_offset(con, path, file_order, landed.rows, landed.shape.header_lines)
    if landed.malformed:
        _number_lines_around_malformed(
            con, file_order, line_offset, [line for line, _, _ in landed.malformed], landed.shape.header_lines
        )
        con.executemany(
            f"insert into {LANDING_TABLE} (file_order, line_number, reason, raw_line) values ({file_order}, ?, ?, ?)",
            [(line, f"malformed line ({error_type})", text) for line, error_type, text in landed.malformed],
        )
    return None, line_offset, landed.shape.decimal_separator


@contextlib.contextmanager
def _insertion_order_kept(con):
    """The ingest connection does not keep insertion order (memory); the landing insert must."""
    kept = con.execute("select current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("set preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute(f"set preserve_insertion_order = {'true' if kept else 'false'}")


def _line_offset(con, path: Path, file_order: int, records: int, header_lines: int) -> int:
    """rowid + offset = line, for the file's records (appended together, in file order)."""
    first, last, count = con.execute(
        f"select min(rowid), max(rowid), count(*) from {LANDING_TABLE} where file_order = ?", [file_order]
    ).fetchone()
    if count == 0:
        return 0
    if count != records or last - first + 1 != count:  # the numbering's premise; never seen to fail
        raise IngestError(f"{path}: {records} records read but {count} landed in rows {first}…{last}: cannot number their lines")
    return header_lines + 1 - first


def _number_lines_around_malformed(con, file_order: int, line_offset: int, malformed: list[int], header_lines: int) -> None:
    """Position numbers the records the reader kept; every malformed line skipped before a record
    moves it one line down. The j-th malformed line (0-based) comes after the records numbered up
    to line - header_lines - 1 - j, so a record n sits on n + header_lines + #{j: that < n}.
    Only files with malformed lines get their line numbers written out (an update is slow)."""
    before = [line - header_lines - 1 - j for j, line in enumerate(sorted(malformed))]
    position = f"({LANDING_TABLE}.rowid + ?)"  # = n + header_lines
    con.execute(
        f"""update {LANDING_TABLE} set line_number = {position} + (
                select count(*) from (select unnest(?::bigint[]) as kept_before) where kept_before < {position} - ?)
            where file_order = ? and line_number is null""",
        [line_offset, before, line_offset, header_lines, file_order],
    )


def _columns_by_name(columns: list[str]) -> dict[str, str]:
    """Contract column name → the file's own header name (matched trimmed, case-insensitive)."""
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(column.strip().lower(), column)
    return by_name


def _landing_insert(
    source: RawSource, shape: FileShape, by_name: dict[str, str], relation: str, file_order: int, limits: DateLimits | None
) -> str:
    """One insert that lands a file's rows: typed values, key hash, the first rule broken, and the
    text where the typed value does not render it.

    Layer by layer: the text as read (raw_<c>); each value trimmed once (_v_<c>, see
    raw_contract.trimmed_expression); for kinds with a plain form, its cheap cast (_p_<c>) and
    whether the text is exactly that form (_ok_<c>); the typed value (the cast where _ok_<c>, else
    the rule); then the rule broken, the key's hash and the text kept."""
    known = set(source.column_names)
    extras = [original for key, original in by_name.items() if key not in known]
    extra_json = (
        "to_json(struct_pack(" + ", ".join(f"{quote_identifier(e)} := cast({quote_identifier(e)} as varchar)" for e in extras) + "))::varchar"
        if extras else "null::varchar"
    )
    texts = ", ".join(f"{landing_column_sql(by_name, c)} as raw_{c}" for c in source.column_names)
    trimmed = [c for c in source.columns if c.kind != "text"]
    plain = {c.name: form for c in source.columns if (form := plain_form(c, f"_v_{c.name}", shape.decimal_separator))}
    rules = [rule for c in source.columns for rule in violation_expressions(c, limits, _trimmed_value(c))]
    reason = "case " + " ".join(f"when {cond} then {quote_literal(why)}" for cond, why in rules) + " end" if rules else "null"
    layers = [
        ", ".join(f"{trimmed_expression(c)} as _v_{c.name}" for c in trimmed),
        ", ".join(f"{form.candidate} as _p_{name}" for name, form in plain.items()),
        ", ".join(f"{form.exact.format(candidate=f'_p_{name}')} as _ok_{name}" for name, form in plain.items()),
        ", ".join(f"{_typed_value(c, c.name in plain)} as {c.name}" for c in source.columns),
        ", ".join([f"{reason} as reason", f"hash({_row_key(source)}) as key_hash"]
                  + [f"{_kept_text(c, c.name in plain)} as _text_{c.name}" for c in source.columns]),
    ]
    query = (
        f"select {file_order} as file_order, {texts}, {extra_json} as extra_columns,"
        f" {quote_literal(shape.decimal_separator)} as decimal_separator from {relation}"
    )
    for layer in layers:
        if layer:
            query = f"select *, {layer} from ({query})"
    outputs = (
        ["file_order", "null::bigint", "key_hash"]  # line_number stays null: the record's position gives it
        + [c.name for c in source.columns]
        + [f"_text_{c.name}" for c in source.columns]
        + ["extra_columns", "reason"]
    )
    return f"insert into {LANDING_TABLE} ({', '.join(_landing_columns(source))}) select {', '.join(outputs)} from ({query})"


def _trimmed_value(column: RawColumn) -> str | None:
    """The column holding ``nullif(trim(raw_<c>), '')`` in the landing insert (free text has none)."""
    return None if column.kind == "text" else f"_v_{column.name}"


def _typed_value(column: RawColumn, has_plain_form: bool) -> str:
    if column.kind == "text":
        return typed_expression(column)  # the text as read
    value = f"_v_{column.name}"
    if column.kind == "id" and not column.allowed:
        return value
    rule = typed_expression(column, value)
    return f"case when _ok_{column.name} then _p_{column.name} else {rule} end" if has_plain_form else rule


def _kept_text(column: RawColumn, has_plain_form: bool) -> str:
    """The text as read where the typed value does not render it (raw_contract.rendering), else
    null. Free text is its own typed value; a text of the plain form, read as it stands (no
    spaces trimmed), is its value's rendering."""
    raw, typed = f"raw_{column.name}", column.name
    if column.kind == "text":
        return "null::varchar"
    if column.kind == "id" and not column.allowed:
        return f"case when {raw} is distinct from {typed} then {raw} end"
    renders = f"{raw} is not distinct from {rendering(column, typed, 'decimal_separator')}"
    if has_plain_form:
        renders = f"(_ok_{column.name} and {raw} = _v_{column.name}) or {renders}"
    return f"case when {renders} then null else {raw} end"


# ---------------------------------------------------------------------------------------------
# Loading: the batch into raw.<table> and its quarantine, in the caller's transaction
# ---------------------------------------------------------------------------------------------


def _load_batch(con, source: RawSource, files: list[_BatchFile]) -> tuple[list[FileOutcome], set[str]]:
    """Loads the landed batch; returns one outcome per file and the earlier files that lost rows
    to a conflict (their log counts are recounted)."""
    file_names = [file.name for file in files]
    replaced = _earlier_versions(con, source, file_names)
    _delete_earlier_versions(con, source, file_names)
    _create_landing_view(con, source, files)
    _decide_repeated_keys(con, source)
    recount = _quarantine_conflicting_raw_rows(con, source)
    _quarantine_batch_rows(con, source)
    _insert_valid_rows(con, source)
    counts = _file_counts(con)
    outcomes = []
    for file_order, file in enumerate(files):
        rows_read, loaded, quarantined, duplicate = counts.get(file_order, (0, 0, 0, 0))
        outcomes.append(FileOutcome(
            file.name, file.sha256, "replaced" if file.name in replaced else "loaded", rows_read=rows_read,
            rows_duplicate=duplicate, rows_loaded=loaded, rows_quarantined=quarantined,
        ))
    return outcomes, recount - set(file_names)


def _earlier_versions(con, source: RawSource, file_names: list[str]) -> set[str]:
    placeholders = ", ".join("?" for _ in file_names)
    return set(
        row[0] for row in con.execute(
            f"select distinct source_file from raw.ingest_log where source = ? and source_file in ({placeholders})"
            " and status in ('loaded', 'replaced')",
            [source.folder, *file_names],
        ).fetchall()
    )


def _delete_earlier_versions(con, source: RawSource, file_names: list[str]) -> None:
    """A changed file replaces what the earlier version of the same file loaded."""
    placeholders = ", ".join("?" for _ in file_names)
    con.execute(f"delete from raw.{source.table} where source_file in ({placeholders})", file_names)
    con.execute(f"delete from raw.{source.quarantine_table} where source_file in ({placeholders})", file_names)


def _create_landing_view(con, source: RawSource, files: list[_BatchFile]) -> None:
    """The batch as raw.<table> names its columns: file names instead of numbers, line numbers,
    typed values, and the text as read (raw_<c>): where the batch kept none, the typed value's
    rendering is that text (a value is typed NULL only from an empty or missing text, whose
    typed value is NULL too)."""
    names = "[" + ", ".join(quote_literal(file.name) for file in files) + "]"
    offsets = "[" + ", ".join(str(file.line_offset) for file in files) + "]::bigint[]"
    separator = "([" + ", ".join(quote_literal(file.decimal_separator) for file in files) + "])[file_order + 1]"
    typed = ", ".join(source.column_names)
    texts = ", ".join(
        f"coalesce(raw_{c.name}, {rendering(c, c.name, separator)}) as raw_{c.name}" for c in source.columns
    )
    con.execute(
        f"create or replace temp view {LANDING_VIEW} as select {names}[file_order + 1] as source_file, file_order,"
        f" coalesce(line_number, rowid + ({offsets})[file_order + 1]) as line_number, key_hash, {typed}, {texts},"
        f" extra_columns, raw_line, reason from {LANDING_TABLE}"
    )


def _row_key(source: RawSource) -> str:
    """Rows are identified by their key; keyless sources (events) by all their values."""
    return source.key or f"struct_pack({_row_values(source)})"


def _row_values(source: RawSource) -> str:
    return ", ".join(f"{n} := {n}" for n in source.column_names if n != source.key)


def _conflict_reason(source: RawSource) -> str:
    return quote_literal(CONFLICT_REASON.format(key=source.key or "row"))


def _earlier_conflicts(source: RawSource) -> str | None:
    """The keys quarantined as conflicting by an earlier run: any later row of them conflicts too.
    Keyless sources (rows identified by all their values) never conflict."""
    if not source.key:
        return None
    return f"(select {source.key} from raw.{source.quarantine_table} where reason = {_conflict_reason(source)})"


def _decide_repeated_keys(con, source: RawSource) -> None:
    """Decides the rows whose key needs it: repeated in the batch, already in raw, or in conflict
    since an earlier run. Per such row: 'load' (the first of its key), 'duplicate' (the same
    values again) or 'conflict' (the key has different values: all its rows go to quarantine).
    Every other valid row is loaded as it is: at scale that is all but a few per mille."""
    key, values = _row_key(source), _row_values(source)
    earlier = _earlier_conflicts(source)
    in_earlier_conflict = f"row_key in {earlier}" if earlier else "false"
    # Keys are grouped by the hash stored when they landed first (a fixed-width aggregate over the
    # whole batch); the exact decision below sees only the candidates, so a hash collision costs
    # time, not truth.
    con.execute(
        f"""
        create or replace temp table {DECISIONS_TABLE} as
        with valid as not materialized (
            select file_order, line_number, key_hash, {key} as row_key from {LANDING_VIEW} where reason is null
        ),
        repeated_hashes as (
            select key_hash from {LANDING_TABLE} where reason is null group by key_hash having count(*) > 1
        ),
        candidates as (
            select row_key from valid where key_hash in (select key_hash from repeated_hashes)
            union select row_key from valid where row_key in (select {key} from raw.{source.table})
            union select row_key from valid where {in_earlier_conflict}
        ),
        versions as (
            select file_order, line_number, {key} as row_key, struct_pack({values}) as row_values
            from {LANDING_VIEW} where reason is null and {key} in (select row_key from candidates)
            union all
            select null, null, {key}, struct_pack({values})
            from raw.{source.table} where {key} in (select row_key from candidates)
        ),
        keys as (
            select row_key, count(distinct row_values) > 1 or {in_earlier_conflict} as is_conflict,
                count(*) filter (where file_order is null) > 0 as is_known
            from versions group by row_key
        )
        select v.file_order, v.line_number, v.row_key, k.is_known,
            case when k.is_conflict then 'conflict'
                 when not k.is_known and row_number() over (partition by v.row_key order by v.file_order, v.line_number) = 1 then 'load'
                 else 'duplicate' end as action
        from versions v join keys k using (row_key)
        where v.file_order is not null
        """
    )


def _quarantine_conflicting_raw_rows(con, source: RawSource) -> set[str]:
    """Rows already loaded whose id now arrives with other values join the conflict in quarantine;
    returns the files they came from."""
    key = _row_key(source)
    conflicting = f"(select row_key from {DECISIONS_TABLE} where action = 'conflict' and is_known)"
    if not con.execute(f"select count(*) from {conflicting}").fetchone()[0]:
        return set()  # the usual case: no need to scan raw
    names = source.column_names
    moved = con.execute(
        f"""
        insert into raw.{source.quarantine_table}
        select source_file, line_number, {', '.join(f'cast({n} as varchar)' for n in names)}, extra_columns, null, {_conflict_reason(source)}
        from raw.{source.table} where {key} in {conflicting}
        returning source_file
        """
    ).fetchall()
    con.execute(f"delete from raw.{source.table} where {key} in {conflicting}")
    return {row[0] for row in moved}


def _quarantine_batch_rows(con, source: RawSource) -> None:
    """Rows that break a rule, with their reason, and rows of a conflicting key."""
    con.execute(
        f"""
        insert into raw.{source.quarantine_table}
        select source_file, line_number, {', '.join(f'raw_{n}' for n in source.column_names)}, extra_columns, raw_line,
            coalesce(reason, {_conflict_reason(source)})
        from {LANDING_VIEW} b
        where reason is not null or exists (
            select 1 from {DECISIONS_TABLE} d
            where d.action = 'conflict' and d.file_order = b.file_order and d.line_number = b.line_number)
        """
    )


def _insert_valid_rows(con, source: RawSource) -> None:
    """Every valid row, typed, except the duplicates and conflicts decided above. No sort: the
    batch is scanned in file and line order, and an anti-join keeps that order."""
    con.execute(
        f"""
        insert into raw.{source.table}
        select {', '.join(source.column_names)}, extra_columns, source_file, line_number
        from {LANDING_VIEW} b
        where reason is null and not exists (
            select 1 from {DECISIONS_TABLE} d
            where d.action <> 'load' and d.file_order = b.file_order and d.line_number = b.line_number)
        """
    )


def _file_counts(con) -> dict[int, tuple[int, int, int, int]]:
    """Per file_order: rows read, loaded, quarantined, duplicate (from two small aggregates)."""
    landed = con.execute(
        f"select file_order, count(*), count(reason) from {LANDING_TABLE} group by file_order"
    ).fetchall()
    decided = dict(
        (row[0], row[1:]) for row in con.execute(
            f"select file_order, count(*) filter (where action = 'duplicate'), count(*) filter (where action = 'conflict')"
            f" from {DECISIONS_TABLE} group by file_order"
        ).fetchall()
    )
    counts = {}
    for file_order, rows_read, invalid in landed:
        duplicate, conflict = decided.get(file_order, (0, 0))
        counts[file_order] = (rows_read, rows_read - invalid - duplicate - conflict, invalid + conflict, duplicate)
    return counts


def _write_log(con, source: RawSource, outcomes: list[FileOutcome], recount: set[str]) -> None:
    """Appends this run's outcomes. Files loaded earlier that lost rows to a conflict in this run
    get their loaded/quarantined counts read back from the tables, so that every file's identity
    stays true."""
    for o in outcomes:
        if o.status == "unchanged":
            continue
        if o.status in ("replaced",):
            con.execute(
                "update raw.ingest_log set status = 'superseded' where source = ? and source_file = ?"
                " and status in ('loaded', 'replaced')",
                [source.folder, o.source_file],
            )
        con.execute(
            "insert into raw.ingest_log values (?, ?, ?, ?, ?, ?, ?, ?, current_timestamp, ?)",
            [source.folder, o.source_file, o.sha256, o.status, o.rows_read, o.rows_loaded, o.rows_quarantined,
             o.rows_duplicate, o.message],
        )
    if recount:
        _recount_log(con, source, sorted(recount))


def _recount_log(con, source: RawSource, file_names: list[str]) -> None:
    placeholders = ", ".join("?" for _ in file_names)

    def per_file(table: str) -> dict[str, int]:
        return dict(con.execute(
            f"select source_file, count(*) from raw.{table} where source_file in ({placeholders}) group by source_file",
            file_names,
        ).fetchall())

    loaded, quarantined = per_file(source.table), per_file(source.quarantine_table)
    con.executemany(
        "update raw.ingest_log set rows_loaded = ?, rows_quarantined = ?"
        " where source = ? and source_file = ? and status in ('loaded', 'replaced')",
        [(loaded.get(n, 0), quarantined.get(n, 0), source.folder, n) for n in file_names],
    )

"""Loading landing files into the warehouse's ``raw`` schema, file by file, nothing lost.

For each kind of landing file (see raw_contract): new or changed files are read as text,
checked row by row in SQL, and every row ends in exactly one place: ``raw.<table>`` (loaded),
``raw.quarantine_<folder>`` (with its reason) or the duplicate count of ``raw.ingest_log``.
Per file, rows_read = rows_loaded + rows_quarantined + rows_duplicate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import duckdb

from .landing_files import LANDING_TABLE, LandingFormat, RejectedFile, land, landing_column_sql
from .raw_contract import SQL_TYPES, DateLimits, RawSource, typed_expression, violation_expressions
from .warehouse import quote_identifier, quote_literal

LANDING_EXTENSIONS = (".csv", ".parquet")
CONFLICT_REASON = "conflicting values for a repeated {key}"


class IngestError(RuntimeError):
    """A landing file was rejected whole; the message names the file and the rule."""


@dataclasses.dataclass(frozen=True)
class FileOutcome:
    source_file: str
    sha256: str
    status: str  # loaded | replaced | unchanged | duplicate_file | rejected
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    message: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    outcomes: list[FileOutcome] = []
    to_load: list[tuple[str, str, Path]] = []
    try:
        # Reading happens outside the transaction: a file DuckDB cannot parse must not abort it.
        for path in landing_files(raw_dir, source):
            name = path.relative_to(raw_dir).as_posix()
            digest = sha256_of(path)
            outcome = _known_file_outcome(con, source, name, digest)
            if outcome is not None:
                outcomes.append(outcome)
                continue
            error = _land_file(con, source, path, name, len(to_load), fmt)
            if error:
                outcomes.append(FileOutcome(name, digest, "rejected", message=error))
            else:
                to_load.append((name, digest, path))
        rejected = [o for o in outcomes if o.status == "rejected"]
        if rejected and not skip_rejected:
            raise IngestError("; ".join(f"{raw_dir / o.source_file}: rejected: {o.message}" for o in rejected))
        con.execute("begin transaction")
        try:
            if to_load:
                outcomes.extend(_load_batch(con, source, to_load, limits))
            _write_log(con, source, outcomes)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.execute("drop table if exists landing_batch")
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


def _land_file(con, source: RawSource, path: Path, name: str, file_order: int, fmt: LandingFormat) -> str | None:
    """Reads one file as text into ``landing_batch``; returns why it is rejected, or None."""
    try:
        landed = land(con, path, fmt)
    except RejectedFile as error:
        return str(error)
    by_name: dict[str, str] = {}
    for column in landed.columns:
        by_name.setdefault(column.strip().lower(), column)
    missing = [c for c in source.required_columns if c not in by_name]
    if missing:
        return f"missing required column(s) {', '.join(missing)} (found: {', '.join(landed.columns)})"
    if con.execute(f"select count(*) from {LANDING_TABLE}").fetchone()[0] == 0 and not landed.malformed:
        return "no data rows (header only)"
    known = set(source.column_names)
    extras = [original for key, original in by_name.items() if key not in known]
    selected = [f"{landing_column_sql(by_name, c)} as raw_{c}" for c in source.column_names]
    extra_json = (
        "to_json(struct_pack(" + ", ".join(f"{quote_identifier(e)} := cast({quote_identifier(e)} as varchar)" for e in extras) + "))::varchar"
        if extras else "null::varchar"
    )
    file_columns = f"{quote_literal(name)} as source_file, {file_order} as file_order"
    con.execute(
        f"create temp table if not exists landing_batch as select {file_columns}, 0::bigint as line_number,"
        f" {', '.join(selected)}, {extra_json} as extra_columns, '.' as decimal_separator,"
        f" null::varchar as malformed, null::varchar as raw_line from {LANDING_TABLE} limit 0"
    )
    # ordinality numbers the parsed records; with one record per line, + header = the line.
    con.execute(
        f"insert into landing_batch select {file_columns}, ordinality + {landed.header_lines},"
        f" {', '.join(selected)}, {extra_json}, {quote_literal(landed.decimal_separator)}, null, null from {LANDING_TABLE}"
    )
    if landed.malformed:
        nulls = ", ".join("null" for _ in source.column_names)
        con.executemany(
            f"insert into landing_batch select {file_columns}, ?, {nulls}, null, {quote_literal(landed.decimal_separator)}, ?, ?",
            [(line, f"malformed line ({error_type})", text) for line, error_type, text in landed.malformed],
        )
    con.execute(f"drop table {LANDING_TABLE}")
    return None


def _load_batch(con, source: RawSource, files: list[tuple[str, str, Path]], limits: DateLimits | None) -> list[FileOutcome]:
    names = [c.name for c in source.columns]
    typed = ", ".join(f"{typed_expression(c)} as {c.name}" for c in source.columns)
    rules = [("malformed is not null", None)] + [rule for c in source.columns for rule in violation_expressions(c, limits)]
    reason = "case " + " ".join(
        f"when {cond} then {quote_literal(why) if why else 'malformed'}" for cond, why in rules
    ) + " end"
    values = ", ".join(f"{n} := {n}" for n in names if n != source.key)
    # Rows are identified by their key; keyless sources (events) by all their values.
    key = "row_key"
    key_expression = source.key or f"struct_pack({values})"
    conflict = quote_literal(CONFLICT_REASON.format(key=source.key or "row"))
    file_names = [name for name, _, _ in files]

    # A changed file replaces what the earlier version of the same file loaded.
    placeholders = ", ".join("?" for _ in file_names)
    con.execute(f"delete from raw.{source.table} where source_file in ({placeholders})", file_names)
    con.execute(f"delete from raw.{source.quarantine_table} where source_file in ({placeholders})", file_names)

    con.execute(
        f"""
        create or replace temp table checked as
        with typed as (select *, {typed} from landing_batch)
        select *, {reason} as reason, struct_pack({values}) as row_values, {key_expression} as row_key from typed
        """
    )
    con.execute(
        f"""
        create or replace temp table decided as
        with valid as (select * from checked where reason is null),
        existing as (
            select {key_expression} as row_key, struct_pack({values}) as row_values from raw.{source.table}
            where {key_expression} in (select row_key from valid)
        ),
        earlier_conflicts as (
            select distinct {source.key or "null"} as row_key from raw.{source.quarantine_table} where reason = {conflict}
        ),
        versions as (
            select {key}, row_values from valid union all select {key}, row_values from existing
        ),
        keys as (
            select {key}, count(distinct row_values) > 1
                or {key} in (select {key} from earlier_conflicts) as is_conflict
            from versions group by {key}
        )
        select valid.source_file, valid.line_number, keys.is_conflict,
            valid.{key} in (select {key} from existing) as is_known,
            row_number() over (partition by valid.{key} order by valid.file_order, valid.line_number) as occurrence
        from valid join keys using ({key})
        """
    )
    # Rows already loaded whose id now arrives with other values join the conflict in quarantine.
    con.execute(
        f"""
        insert into raw.{source.quarantine_table}
        select source_file, line_number, {', '.join(f'cast({n} as varchar)' for n in names)}, extra_columns, null, {conflict}
        from raw.{source.table}
        where {key_expression} in (select c.row_key from checked c join decided d using (source_file, line_number) where d.is_conflict)
        """
    )
    con.execute(
        f"""delete from raw.{source.table} where {key_expression} in
        (select c.row_key from checked c join decided d using (source_file, line_number) where d.is_conflict)"""
    )
    con.execute(
        f"""
        insert into raw.{source.quarantine_table}
        select c.source_file, c.line_number, {', '.join(f'c.raw_{n}' for n in names)}, c.extra_columns, c.raw_line,
            coalesce(c.reason, {conflict})
        from checked c left join decided d using (source_file, line_number)
        where c.reason is not null or d.is_conflict
        """
    )
    con.execute(
        f"""
        insert into raw.{source.table}
        select {', '.join(f'c.{n}' for n in names)}, c.extra_columns, c.source_file, c.line_number
        from checked c join decided d using (source_file, line_number)
        where not d.is_conflict and not d.is_known and d.occurrence = 1
        order by d.source_file, d.line_number
        """
    )
    counts = dict(
        (row[0], row[1:])
        for row in con.execute(
            """
            select c.source_file, count(*),
                count(*) filter (where d.source_file is not null and not d.is_conflict
                                 and (d.is_known or d.occurrence > 1))
            from checked c left join decided d using (source_file, line_number)
            group by c.source_file
            """
        ).fetchall()
    )
    con.execute("drop table checked")
    con.execute("drop table decided")
    replaced = set(
        row[0] for row in con.execute(
            f"select distinct source_file from raw.ingest_log where source = ? and source_file in ({placeholders})"
            " and status in ('loaded', 'replaced')",
            [source.folder, *file_names],
        ).fetchall()
    )
    outcomes = []
    for name, digest, _ in files:
        rows_read, rows_duplicate = counts.get(name, (0, 0))
        outcomes.append(
            FileOutcome(name, digest, "replaced" if name in replaced else "loaded", rows_read=rows_read, rows_duplicate=rows_duplicate)
        )
    return outcomes


def _write_log(con, source: RawSource, outcomes: list[FileOutcome]) -> None:
    """Appends this run's outcomes; loaded/quarantined counts are read back from the tables so
    that a row moved to quarantine by a later conflict keeps every file's identity true."""
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
            "insert into raw.ingest_log values (?, ?, ?, ?, ?, 0, 0, ?, current_timestamp, ?)",
            [source.folder, o.source_file, o.sha256, o.status, o.rows_read, o.rows_duplicate, o.message],
        )
    con.execute(
        f"""
        update raw.ingest_log as log set
            rows_loaded = coalesce((select count(*) from raw.{source.table} t where t.source_file = log.source_file), 0),
            rows_quarantined = coalesce((select count(*) from raw.{source.quarantine_table} q where q.source_file = log.source_file), 0)
        where log.source = ? and log.status in ('loaded', 'replaced')
        """,
        [source.folder],
    )

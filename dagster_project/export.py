"""The per-customer segment-flag export for marketing automation.

For the as-of date D the export folder (``LoyaltyConfig.export_path``) gets::

    segment_flags_D.csv            every exported customer (UTF-8, header, ``,``, ISO dates,
                                   true/false, amounts with 2 decimals, sorted by customer_id)
    segment_flags_D.parquet        the same rows and columns (no wall-clock metadata)
    segment_flags_D_delta.csv      customers added, changed or removed since the previous export
    segment_flags_D.manifest.json  as-of date, schema version, rows and sha256 of each file, run id

Guarantees:

* Atomic files: each file is written to a hidden temp name in the same folder, fsynced and
  renamed over the target, so a reader never opens a partial file. The manifest is written last.
* Deterministic: the same mart gives byte-identical data files. A file whose bytes are unchanged
  is not rewritten, and the manifest is left untouched when nothing in it but the run id would
  change, so ``run_id`` is the run that first produced these bytes.
* Names come only from the as-of date and stay under the export root.
* No personal data but ``customer_id`` unless ``export_pii_columns`` names columns of
  ``stg_raw__customers`` (e.g. ``email``).
* Consent: when a consent source exists (``raw.customers`` has rows) only customers with
  ``has_marketing_consent`` are exported; a consent source older than ``consent_max_age_days``
  before the as-of date fails the export. Without a consent source nobody is filtered.
* Erasure: customers in ``raw.erasures`` are gone from the mart already; the export also removes
  them from older export files in the folder and never lists them in a delta.
* Quality: the export refuses a mart built for another as-of date or whose latest blocking dbt
  checks failed (the run-level guarantee is that Dagster skips this asset when the dbt step fails).
"""


import contextlib
import csv
import dataclasses
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .durable_files import fsync_dir
from .config import LoyaltyConfig
from .predictive_clv.assets import PREDICTIONS_KEY
from .resources import LoyaltySettings
from .warehouse import connect, quote_identifier

# 2: the predictive CLV columns (p_alive, churn_risk, expected_purchases_next_period, predicted_clv).
SCHEMA_VERSION = 2
MART_KEY = dg.AssetKey(["marts", "customer_segment_flags"])
ERASURES_KEY = dg.AssetKey(["raw", "erasures"])
MART_TABLE = "marts.customer_segment_flags"
CONSENT_VIEW = "staging.stg_raw__customers"
FILE_PREFIX = "segment_flags_"
_DATE_FILE = re.compile(r"^segment_flags_(\d{4}-\d{2}-\d{2})(\.csv|\.parquet|_delta\.csv|\.manifest\.json)$")

# The export's columns and Arrow types: the mart's contract, in its order.
FLAG_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("as_of_date", pa.date32()),
        ("value_segment", pa.string()),
        ("value_decile", pa.int32()),
        ("previous_value_segment", pa.string()),
        ("flow", pa.string()),
        ("lifecycle_stage", pa.string()),
        ("first_purchase_date", pa.date32()),
        ("last_purchase_date", pa.date32()),
        ("days_since_last_purchase", pa.int32()),
        ("revenue_12m", pa.decimal128(18, 2)),
        ("purchases_12m", pa.int64()),
        ("clv", pa.float64()),
        ("nps_score_latest", pa.int32()),
        ("nps_category", pa.string()),
        ("is_super", pa.bool_()),
        ("is_top", pa.bool_()),
        ("is_vip", pa.bool_()),
        ("is_new", pa.bool_()),
        ("is_at_risk", pa.bool_()),
        ("is_lost", pa.bool_()),
        ("is_won_back", pa.bool_()),
        ("is_upgraded", pa.bool_()),
        ("is_downgraded", pa.bool_()),
        ("is_detractor_followup", pa.bool_()),
        ("is_nps_due", pa.bool_()),
        ("has_marketing_consent", pa.bool_()),
        # From marts.customer_clv_predictions (empty when the night has no predictions), rounded
        # to 2 decimals like every float of the file.
        ("p_alive", pa.float64()),
        ("churn_risk", pa.float64()),
        ("expected_purchases_next_period", pa.float64()),
        ("predicted_clv", pa.float64()),
    ]
)
PREDICTIONS_TABLE = "marts.customer_clv_predictions"
PREDICTION_COLUMNS = ("p_alive", "churn_risk", "expected_purchases_next_period", "predicted_clv")
# Columns of stg_raw__customers that are never exported as "PII columns" (they are keys or
# already in the flags).
_NOT_PII = {"customer_id", "has_marketing_consent", "consent_updated_at"}
# A delta row is "changed" when one of these differs (plus any exported PII column).
TRACKED_COLUMNS = ("value_segment", "lifecycle_stage") + tuple(
    field.name for field in FLAG_SCHEMA if field.name.startswith(("is_", "has_"))
) + PREDICTION_COLUMNS
# The predictions move a little every night (one day older, one day more without a purchase):
# they count as changed only when they cross into another band, so tiny drifts stay out of the
# delta while a drift that adds up does show once it crosses a band edge. Bands: p_alive and
# churn_risk in tenths (0.30–0.39 …), expected purchases per whole purchase (2.00–2.99 …),
# predicted_clv in steps of × 1.25 (everything up to 1 in one band; 100–124, 125–156 …).
BAND_WIDTHS = {"p_alive": 0.1, "churn_risk": 0.1, "expected_purchases_next_period": 1.0}
CLV_BAND_RATIO = 1.25
DELTA_EXTRA_COLUMNS = ("change", "changed_columns")


class ExportError(RuntimeError):
    """The export cannot be written safely; the message says why and what to do."""


class MartIsNewer(ExportError):
    """The mart holds a later as-of date than the run: a backfill of older dates, which keeps the
    customer-level marts (and so the export) at their newest date. Nothing is written."""


@dataclasses.dataclass(frozen=True)
class ExportOutcome:
    folder: Path
    manifest: dict[str, Any]
    files_written: tuple[str, ...]  # data files whose bytes changed in this run
    manifest_written: bool
    scrubbed: tuple[str, ...]  # older export files rewritten to drop erased customers


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------


def file_names(as_of: dt.date) -> dict[str, str]:
    """The four file names of one as-of date; built from the date alone, never from data."""
    stem = FILE_PREFIX + as_of.isoformat()
    return {
        "csv": f"{stem}.csv",
        "parquet": f"{stem}.parquet",
        "delta": f"{stem}_delta.csv",
        "manifest": f"{stem}.manifest.json",
    }


def safe_path(root: Path, name: str) -> Path:
    """root/name, refusing anything that would resolve outside the export root."""
    resolved_root = root.resolve()
    target = (resolved_root / name).resolve()
    if target.parent != resolved_root or not _DATE_FILE.match(target.name):
        raise ExportError(f"refusing to write {name!r}: not a plain export file name under {resolved_root}")
    return target


def export_dates(root: Path) -> dict[dt.date, set[str]]:
    """The as-of dates that have files in the folder, with their file names."""
    found: dict[dt.date, set[str]] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        match = _DATE_FILE.match(entry.name)
        if match and entry.is_file():
            try:
                day = dt.date.fromisoformat(match.group(1))
            except ValueError:
                continue
            found.setdefault(day, set()).add(entry.name)
    return found


def previous_export(root: Path, as_of: dt.date) -> Path | None:
    """The latest segment_flags_<date>.parquet with date < as_of, if any."""
    earlier = [day for day, names in export_dates(root).items() if day < as_of and file_names(day)["parquet"] in names]
    return root / file_names(max(earlier))["parquet"] if earlier else None


# ----------------------------------------------------------------------------------------------
# Atomic, idempotent writes
# ----------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(root: Path, name: str, data: bytes) -> Path:
    """Writes data to root/name so that readers see the old file or the whole new one, never a part."""
    target = safe_path(root, name)
    # Hidden temp name in the same folder (same file system for os.replace; no segment_flags_ prefix).
    handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_dir(target.parent)
    return target


def write_if_changed(root: Path, name: str, data: bytes) -> bool:
    """Writes only when the bytes differ from the file on disk; returns whether it wrote."""
    if sha256_file(safe_path(root, name)) == sha256_bytes(data):
        return False
    write_atomic(root, name, data)
    return True


# ----------------------------------------------------------------------------------------------
# Serialising
# ----------------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """One CSV field: empty for null, true/false, ISO dates, amounts and floats with 2 decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"{value.quantize(decimal.Decimal('0.01')):f}"
    if isinstance(value, float):
        return f"{value + 0.0:.2f}" if value != 0 else "0.00"  # never "-0.00"
    return str(value)


def csv_bytes(columns: list[str], rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _csv_quote_characters() -> str:
    """The characters that make csv.writer (QUOTE_MINIMAL, lineterminator '\\n') quote a field.

    Probed from the running Python so that the vectorised writer quotes exactly like csv_bytes:
    ',', '"' and '\\n' always; '\\r' only on Pythons whose writer quotes it (3.11 does not).
    """
    quoted = []
    for char in (",", '"', "\n", "\r"):
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow([f"a{char}b", "c"])
        if buffer.getvalue().startswith('"'):
            quoted.append(char)
    return "".join(quoted)


_CSV_QUOTE_CHARS = _csv_quote_characters()
_CSV_QUOTE_PATTERN = "[" + "".join("\\r" if c == "\r" else "\\n" if c == "\n" else c for c in _CSV_QUOTE_CHARS) + "]"
# Arrow's CSV writer with quoting_style="none" refuses fields holding any of these.
_ARROW_STRUCTURAL_CHARS = ',"\n\r'
_CSV_BATCH_ROWS = 1 << 18  # rows formatted at a time: bounds memory and string offsets


def table_csv_bytes(table: pa.Table) -> bytes:
    """csv_bytes(table.column_names, table.to_pylist()), vectorised: the same bytes, without a
    Python object per cell. Each column is formatted as text by Arrow kernels (see _csv_text);
    a batch whose fields hold no character that needs quoting is written by Arrow's CSV writer
    unquoted, any other batch is quoted like csv.writer and joined by Arrow string kernels."""
    columns = table.column_names
    if len(columns) < 2 or len(set(columns)) != len(columns):
        return csv_bytes(columns, table.to_pylist())  # csv.writer's corner cases: keep its own output
    parts = [csv_bytes(columns, [])]  # the header, written by csv.writer itself
    for batch in table.to_batches(max_chunksize=_CSV_BATCH_ROWS):
        if batch.num_rows:
            parts.append(_csv_lines([_csv_text(column) for column in batch.columns]))
    return b"".join(parts)


def _csv_lines(fields: list[pa.Array]) -> bytes:
    """The CSV lines (each ending in '\\n') of equally long text columns without nulls."""
    if not any(_may_contain(field, _ARROW_STRUCTURAL_CHARS) for field in fields):
        buffer = io.BytesIO()
        table = pa.Table.from_arrays(fields, names=[f"c{i}" for i in range(len(fields))])
        options = pacsv.WriteOptions(
            include_header=False, batch_size=1 << 14, delimiter=",", eol="\n", quoting_style="none"
        )
        pacsv.write_csv(table, buffer, options)  # nothing to quote: fields joined by ',' as they are
        return buffer.getvalue()
    fields = [_quote_where_needed(field) for field in fields]
    fields[-1] = pc.binary_join_element_wise(fields[-1], "\n", "")  # the line end, on the last field
    return _string_array_bytes(pc.binary_join_element_wise(*fields, ","))


def _csv_text(array: pa.Array) -> pa.Array:
    """format_value of each value of one column, as a string array; null is the empty string."""
    kind = array.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(array, "true", "false")
    elif pa.types.is_integer(kind) or pa.types.is_date32(kind):
        text = pc.cast(array, pa.string())  # decimal digits; ISO yyyy-mm-dd
    elif pa.types.is_decimal128(kind) and kind.scale == 2 and kind.precision <= 28:
        text = pc.cast(array, pa.string())  # two decimals, '-' sign, never '-0.00' (as Decimal.quantize)
    elif pa.types.is_floating(kind):
        text = _format_floats(array)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.cast(array, pa.string())
    else:
        text = pa.array([format_value(value) for value in array.to_pylist()], pa.string())
    return pc.fill_null(text, "")


def _may_contain(text: pa.Array, chars: str) -> bool:
    """False only if no value of the string array holds one of chars (a scan of its data buffer)."""
    data = text.buffers()[2]
    if data is None:
        return False
    raw = memoryview(data).tobytes()
    return any(raw.find(char.encode()) >= 0 for char in chars)


def _quote_where_needed(text: pa.Array) -> pa.Array:
    """csv.writer's QUOTE_MINIMAL: a field holding a quote character is wrapped in '"' with '"' doubled."""
    if not _may_contain(text, _CSV_QUOTE_CHARS):
        return text
    needs = pc.fill_null(pc.match_substring_regex(text, _CSV_QUOTE_PATTERN), False)
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, text)


def _format_floats(array: pa.Array) -> pa.Array:
    """format_value of each float: f"{value:.2f}", zero (also -0.0) as "0.00", null as null.

    Vectorised through cents = rint(value * 100), written as a decimal(18, 2), when that is
    provably the correctly rounded result (finite, |value| < 1e9, value * 100 not within 1e-4
    of a rounding tie, and not a negative value that rounds to "-0.00"); the other values are
    formatted one by one by format_value itself.
    """
    values = pc.cast(array, pa.float64())
    valid = ~values.is_null().to_numpy(zero_copy_only=False)
    x = np.where(valid, values.to_numpy(zero_copy_only=False), 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = x * 100.0
        fast = valid & np.isfinite(x) & (np.abs(x) < 1e9) & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-4)
        cents = np.rint(np.where(fast, scaled, 0.0)).astype(np.int64)
    fast &= (cents != 0) | ~(x < 0)  # -0.004 prints "-0.00": the slow path keeps that
    cents[~fast] = 0
    words = np.empty((len(cents), 2), dtype=np.int64)  # decimal128: little-endian two's complement
    words[:, 0] = cents
    words[:, 1] = cents >> 63
    validity = pa.array(fast).buffers()[1] if not fast.all() else None
    text = pc.cast(pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [validity, pa.py_buffer(words)]), pa.string())
    slow = valid & ~fast
    if slow.any():
        slow_values = values.filter(pa.array(slow)).to_pylist()
        text = pc.replace_with_mask(text, pa.array(slow), pa.array([format_value(v) for v in slow_values], pa.string()))
    return text


def _string_array_bytes(array: pa.Array) -> bytes:
    """The concatenated UTF-8 bytes of a string array without nulls."""
    if isinstance(array, pa.ChunkedArray):
        return b"".join(_string_array_bytes(chunk) for chunk in array.chunks)
    if array.type != pa.string():
        array = array.cast(pa.string())
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(array) + 1, offset=4 * array.offset)
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])].tobytes() if len(array) else b""


def parquet_bytes(table: pa.Table) -> bytes:
    """Parquet without pandas metadata or timestamps: the same table gives the same bytes."""
    buffer = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata(None),
        buffer,
        compression="zstd",
        compression_level=3,
        write_statistics=True,
        store_schema=True,
        use_dictionary=True,
    )
    return buffer.getvalue()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------------------------
# Reading the warehouse
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WarehouseSnapshot:
    table: pa.Table  # exported rows, sorted by customer_id, FLAG_SCHEMA + PII columns
    consent_filtered: bool
    erased_ids: frozenset[str]
    mart_rows: int


def read_warehouse(config: LoyaltyConfig, as_of: dt.date) -> WarehouseSnapshot:
    """Reads everything the export needs in one short read-only connection, then closes it."""
    with connect(config.warehouse_path, read_only=True) as con:
        if not _relation_exists(con, "marts", "customer_segment_flags"):
            raise ExportError(f"{MART_TABLE} does not exist in {config.warehouse_path}: run the dbt models first")
        mart_dates = sorted(row[0] for row in con.execute(f"select distinct as_of_date from {MART_TABLE}").fetchall())
        if mart_dates and mart_dates != [as_of]:
            built = ", ".join(str(day) for day in mart_dates)
            if mart_dates[0] > as_of:
                raise MartIsNewer(f"{MART_TABLE} holds as-of {built}, newer than {as_of}: the export stays at {built}")
            raise ExportError(
                f"{MART_TABLE} was built for as-of {built}, not {as_of}: materialise the dbt models for {as_of} first"
            )
        consent_rows, newest_consent = con.execute(
            "select count(*), max(consent_updated_at) from raw.customers"
        ).fetchall()[0] if _relation_exists(con, "raw", "customers") else (0, None)
        has_consent_source = consent_rows > 0
        if has_consent_source:
            _check_consent_age(newest_consent, as_of, config.consent_max_age_days)
        pii = list(config.export_pii_columns)
        pii_select = ""
        pii_join = ""
        if pii:
            available = _columns_of(con, "staging", "stg_raw__customers")
            unknown = [name for name in pii if name not in available or name in _NOT_PII]
            if unknown:
                allowed = sorted(set(available) - _NOT_PII)
                raise ExportError(f"export_pii_columns {unknown} are not columns of {CONSENT_VIEW}; allowed: {allowed}")
            if len(set(pii)) != len(pii):
                raise ExportError(f"export_pii_columns names a column twice: {pii}")
            pii_select = ", " + ", ".join(f"consent.{quote_identifier(name)}" for name in pii)
            pii_join = f" left join {CONSENT_VIEW} as consent on consent.customer_id = flags.customer_id"
        has_erasures = _relation_exists(con, "raw", "erasures")
        erased = frozenset(
            row[0] for row in con.execute("select distinct customer_id from raw.erasures").fetchall()
        ) if has_erasures else frozenset()
        conditions = []
        if has_consent_source:
            conditions.append("flags.has_marketing_consent")
        if has_erasures:
            # The mart was rebuilt without them; this also holds if it was built before the erasure ran.
            conditions.append("flags.customer_id not in (select customer_id from raw.erasures)")
        where = (" where " + " and ".join(conditions)) if conditions else ""
        columns = ", ".join(
            f"flags.{quote_identifier(field.name)}" for field in FLAG_SCHEMA if field.name not in ("clv", *PREDICTION_COLUMNS)
        )
        if _relation_exists(con, "marts", "customer_clv_predictions"):
            predicted = ", ".join(f"round(predictions.{name}, 2) as {name}" for name in PREDICTION_COLUMNS)
            predictions_join = (
                f" left join {PREDICTIONS_TABLE} as predictions"
                " on predictions.customer_id = flags.customer_id and predictions.as_of_date = flags.as_of_date"
            )
        else:
            predicted = ", ".join(f"cast(null as double) as {name}" for name in PREDICTION_COLUMNS)
            predictions_join = ""
        query = (
            f"select {columns}, round(flags.clv, 2) as clv, {predicted}{pii_select}"
            f" from {MART_TABLE} as flags{predictions_join}{pii_join}{where} order by flags.customer_id"
        )
        fetched = con.sql(query).to_arrow_table()
        mart_rows = con.execute(f"select count(*) from {MART_TABLE}").fetchall()[0][0]
    schema = pa.schema(list(FLAG_SCHEMA) + [pa.field(name, pa.string()) for name in pii])
    table = pa.table({field.name: fetched.column(field.name).cast(field.type) for field in schema}, schema=schema)
    return WarehouseSnapshot(table, has_consent_source, erased, mart_rows)


def _check_consent_age(newest: dt.datetime | None, as_of: dt.date, max_age_days: int) -> None:
    if newest is None:
        return
    age_days = (as_of - newest.date()).days
    if age_days > max_age_days:
        raise ExportError(
            f"consent data is stale: the newest consent_updated_at in raw.customers is {newest.isoformat(sep=' ')},"
            f" {age_days} days before the as-of date {as_of} (consent_max_age_days = {max_age_days}); the export"
            " will not use stale consent. Deliver a current customers/ consent file, or raise consent_max_age_days."
        )


def _relation_exists(con, schema: str, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchall()[0][0]
    )


def _columns_of(con, schema: str, name: str) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?"
            " order by ordinal_position",
            [schema, name],
        ).fetchall()
    ]


# ----------------------------------------------------------------------------------------------
# Delta and erasure
# ----------------------------------------------------------------------------------------------


def delta_rows(current: pa.Table, previous: pa.Table | None, erased: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """added / changed / removed rows against the previous export, sorted by customer_id.

    changed = a tracked column (segment, stage, a flag, an exported PII column) differs; removed
    rows carry the previous values. Erased customers never appear (not even as removed).
    """
    table = _delta_table_arrow(current, previous, erased)
    return table.to_pylist() if table is not None else _delta_rows_python(current, previous, erased)


def delta_table(current: pa.Table, previous: pa.Table | None, erased: frozenset[str] = frozenset()) -> pa.Table:
    """delta_rows as a table: the current columns plus ``change`` and ``changed_columns``.

    Computed column-wise with Arrow when the previous export has the current schema (as _align
    makes it), the tracked columns are strings or booleans and the ids are unique non-null
    strings; otherwise row by row in Python (_delta_rows_python). Both give the same rows in the
    same order.
    """
    table = _delta_table_arrow(current, previous, erased)
    if table is None:
        table = pa.Table.from_pylist(_delta_rows_python(current, previous, erased), schema=_delta_schema(current.schema))
    return table


def _delta_table_arrow(current: pa.Table, previous: pa.Table | None, erased: frozenset[str]) -> pa.Table | None:
    """The delta with Arrow kernels, or None when the row-by-row definition must decide."""
    schema = _delta_schema(current.schema)
    if previous is None:
        previous = current.schema.empty_table()
    pairs = _matched_ids(current, previous) if _delta_vectorisable(current, previous) else None
    if pairs is None:
        return None
    now_pos, before_pos = pairs
    columns = current.column_names
    tracked = _tracked_columns(columns)
    erased_ids = pa.array([value for value in erased if isinstance(value, str)], pa.string())

    def kept(table: pa.Table) -> np.ndarray:  # not erased
        return ~pc.is_in(table.column("customer_id"), value_set=erased_ids).to_numpy(zero_copy_only=False)

    now_kept, before_kept = kept(current), kept(previous)
    now_matched = np.zeros(current.num_rows, dtype=bool)
    now_matched[now_pos] = True
    before_matched = np.zeros(previous.num_rows, dtype=bool)
    before_matched[before_pos] = True
    added = current.filter(pa.array(now_kept & ~now_matched))
    removed = previous.filter(pa.array(before_kept & ~before_matched))
    both = now_kept[now_pos]
    now_pos, before_pos = pa.array(now_pos[both]), pa.array(before_pos[both])

    # changed: a tracked column differs (null-aware, as Python's != on the row values)
    any_change = np.zeros(len(now_pos), dtype=bool)
    pieces = []
    for name in tracked:
        new_values, old_values = current.column(name).take(now_pos), previous.column(name).take(before_pos)
        if name in PREDICTION_COLUMNS:
            new_values, old_values = _bands(name, new_values), _bands(name, old_values)
        differs = pc.or_(
            pc.fill_null(pc.not_equal(new_values, old_values), False),
            pc.xor(pc.is_null(new_values), pc.is_null(old_values)),
        )
        any_change |= differs.to_numpy(zero_copy_only=False)
        pieces.append(pc.if_else(differs, ";" + name, ""))
    change_mask = pa.array(any_change)
    changed = current.take(pc.filter(now_pos, change_mask))
    if pieces:
        joined = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]
        changed_columns = pc.utf8_slice_codeunits(pc.filter(joined, change_mask), 1)  # without the leading ';'
    else:
        changed_columns = pa.array([], pa.string())

    def with_change(table: pa.Table, change: str, changed_columns: Any = None) -> pa.Table:
        if changed_columns is None:
            changed_columns = pa.array([""] * table.num_rows, pa.string())
        arrays = [table.column(c) for c in columns] + [pa.array([change] * table.num_rows, pa.string()), changed_columns]
        return pa.Table.from_arrays(arrays, schema=schema)

    out = pa.concat_tables(
        [with_change(added, "added"), with_change(changed, "changed", changed_columns), with_change(removed, "removed")]
    )
    # Arrow orders strings by their UTF-8 bytes, which is Python's code point order (sorted()).
    return out.take(pc.sort_indices(out.column("customer_id")))


def _matched_ids(current: pa.Table, previous: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions (in current, in previous) of the customer_ids present in both, by one sort of
    both id columns (fast when they are sorted already, as exports are); None when an id is
    null or repeats within one table (the row-by-row path then keeps its dict semantics)."""
    now_ids, before_ids = current.column("customer_id"), previous.column("customer_id")
    if now_ids.null_count or before_ids.null_count:
        return None
    n_before = len(before_ids)
    ids = pa.chunked_array(before_ids.chunks + now_ids.chunks, pa.string())
    if len(ids) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = pc.sort_indices(ids)
    in_order = ids.take(order)
    same = np.flatnonzero(pc.equal(in_order[:-1], in_order[1:]).to_numpy(zero_copy_only=False))
    order = order.to_numpy(zero_copy_only=False).astype(np.int64)
    first, second = order[same], order[same + 1]
    low, high = np.minimum(first, second), np.maximum(first, second)
    if not np.all((low < n_before) & (high >= n_before)):
        return None  # an id twice in one table (or three times in all)
    return high - n_before, low


def _tracked_columns(columns: list[str]) -> list[str]:
    """The columns whose change puts a customer in the delta: segment, stage, the flags and any
    exported personal-data column (those outside FLAG_SCHEMA)."""
    return [c for c in columns if c in TRACKED_COLUMNS or c not in FLAG_SCHEMA.names]


def _band_of(name: str, value: Any) -> Any:
    """The band a tracked value falls in (see BAND_WIDTHS); other columns compare as they are.
    Values have 2 decimals: the band is taken of the value in hundredths, so 0.30 is in band 3,
    not in band 2 by a floating-point 2.9999…"""
    if name not in PREDICTION_COLUMNS:
        return value
    if value is None or value != value:  # null (or NaN, which the vectorised path also reads as null)
        return None
    if name in BAND_WIDTHS:
        return int(np.floor(round(value * 100) / round(BAND_WIDTHS[name] * 100)))
    return int(np.floor(np.log(max(value, 1.0)) / np.log(CLV_BAND_RATIO)))


def _bands(name: str, values: pa.Array) -> pa.Array:
    """_band_of for a column, vectorised (nulls stay null)."""
    numbers = values.to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name in BAND_WIDTHS:
            bands = np.floor(np.round(numbers * 100) / round(BAND_WIDTHS[name] * 100))
        else:
            bands = np.floor(np.log(np.maximum(numbers, 1.0)) / np.log(CLV_BAND_RATIO))
    return pa.array(bands, pa.float64(), mask=np.isnan(numbers))


def _delta_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(list(schema) + [pa.field(name, pa.string()) for name in DELTA_EXTRA_COLUMNS])


def _delta_vectorisable(current: pa.Table, previous: pa.Table) -> bool:
    """Whether delta_table's Arrow path applies (ids are checked by _matched_ids)."""
    names = current.column_names
    if len(set(names)) != len(names) or set(names) & set(DELTA_EXTRA_COLUMNS) or "customer_id" not in names:
        return False
    if not previous.schema.equals(current.schema):
        return False
    if not pa.types.is_string(current.schema.field("customer_id").type):
        return False
    tracked = _tracked_columns(names)
    # Arrow's (in)equality is Python's != for these types; other types take the Python path.
    kinds = [current.schema.field(c).type for c in tracked if c not in PREDICTION_COLUMNS]
    banded = [current.schema.field(c).type for c in tracked if c in PREDICTION_COLUMNS]
    return all(pa.types.is_string(kind) or pa.types.is_boolean(kind) for kind in kinds) and all(
        pa.types.is_floating(kind) for kind in banded
    )


def _delta_rows_python(current: pa.Table, previous: pa.Table | None, erased: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The row-by-row definition of delta_rows (the fallback of delta_table)."""
    columns = current.column_names
    tracked = _tracked_columns(columns)
    now = {row["customer_id"]: row for row in current.to_pylist()}
    before = {row["customer_id"]: row for row in previous.to_pylist()} if previous is not None else {}
    out: list[dict[str, Any]] = []
    for customer_id in sorted(set(now) | set(before)):
        if customer_id in erased:
            continue
        if customer_id not in before:
            out.append({**now[customer_id], "change": "added", "changed_columns": ""})
        elif customer_id not in now:
            old = before[customer_id]
            out.append({**{c: old.get(c) for c in columns}, "change": "removed", "changed_columns": ""})
        else:
            differing = [
                c for c in tracked
                if c in before[customer_id] and _band_of(c, before[customer_id][c]) != _band_of(c, now[customer_id][c])
            ]
            if differing:
                out.append({**now[customer_id], "change": "changed", "changed_columns": ";".join(differing)})
    return out


def scrub_erased(root: Path, erased: frozenset[str], skip: dt.date, run_id: str) -> list[str]:
    """Drops erased customers from the export files of other dates; returns the files rewritten.

    Each date's manifest records how many erasures it was checked against, so a date is read
    again only when new erasures arrived.
    """
    if not erased:
        return []
    rewritten: list[str] = []
    for day, names in sorted(export_dates(root).items()):
        if day == skip:
            continue
        expected = file_names(day)
        manifest_path = root / expected["manifest"]
        manifest = _read_manifest(manifest_path)
        if manifest is not None and manifest.get("erasures_checked") == len(erased):
            continue
        changed_here: dict[str, tuple[bytes, int]] = {}
        for kind in ("csv", "delta"):
            if expected[kind] in names:
                data, rows, dropped = _scrub_csv((root / expected[kind]).read_bytes(), erased)
                if dropped:
                    changed_here[expected[kind]] = (data, rows)
        if expected["parquet"] in names:
            table = pq.read_table(root / expected["parquet"])
            keep = [value not in erased for value in table.column("customer_id").to_pylist()]
            if not all(keep):
                table = table.filter(pa.array(keep))
                changed_here[expected["parquet"]] = (parquet_bytes(table), table.num_rows)
        for name, (data, _) in changed_here.items():
            write_atomic(root, name, data)
            rewritten.append(name)
        if manifest is not None:
            for name, (data, rows) in changed_here.items():
                if name in manifest.get("files", {}):
                    manifest["files"][name] = {"rows": rows, "sha256": sha256_bytes(data), "bytes": len(data)}
            if expected["delta"] in changed_here and "delta_counts" in manifest:
                changes = [row.get("change") for row in csv.DictReader(io.StringIO(changed_here[expected["delta"]][0].decode("utf-8")))]
                manifest["delta_counts"] = {kind: changes.count(kind) for kind in ("added", "changed", "removed")}
            if changed_here:
                manifest["run_id"] = run_id
            manifest["erasures_checked"] = len(erased)
            write_atomic(root, expected["manifest"], manifest_bytes(manifest))
    return rewritten


def _scrub_csv(data: bytes, erased: frozenset[str]) -> tuple[bytes, int, int]:
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader, None)
    if header is None or "customer_id" not in header:
        return data, 0, 0
    position = header.index("customer_id")
    kept, dropped = [], 0
    for record in reader:
        if record and record[position] in erased:
            dropped += 1
        else:
            kept.append(record)
    if not dropped:
        return data, len(kept), 0
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(kept)
    return buffer.getvalue().encode("utf-8"), len(kept), dropped


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------


def export_segment_flags(
    config: LoyaltyConfig, as_of: dt.date, run_id: str, log: Callable[[str], None] = lambda message: None
) -> ExportOutcome:
    """Writes the four files of one as-of date (see the module docstring); returns what it did."""
    snapshot = read_warehouse(config, as_of)
    root = config.export_path
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    names = file_names(as_of)

    scrubbed = scrub_erased(root, snapshot.erased_ids, as_of, run_id)
    if scrubbed:
        log(f"erasure: removed erased customers from {len(scrubbed)} older export file(s)")

    table = snapshot.table
    previous_path = previous_export(root, as_of)
    previous = _align(pq.read_table(previous_path), table.schema) if previous_path else None
    changes = delta_table(table, previous, snapshot.erased_ids)
    data = {
        names["csv"]: table_csv_bytes(table),
        names["parquet"]: parquet_bytes(table),
        names["delta"]: table_csv_bytes(changes),
    }
    counts = {
        names["csv"]: table.num_rows,
        names["parquet"]: table.num_rows,
        names["delta"]: changes.num_rows,
    }
    delta_counts = {
        kind: int(pc.sum(pc.equal(changes.column("change"), kind)).as_py() or 0) for kind in ("added", "changed", "removed")
    }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "as_of_date": as_of.isoformat(),
        "run_id": run_id,
        "columns": [{"name": field.name, "type": str(field.type)} for field in table.schema],
        "delta_columns": list(DELTA_EXTRA_COLUMNS),
        "files": {
            name: {"rows": counts[name], "sha256": sha256_bytes(content), "bytes": len(content)}
            for name, content in data.items()
        },
        "delta_against": previous_path.name if previous_path else None,
        "delta_counts": delta_counts,
        "consent_filtered": snapshot.consent_filtered,
        "customers_in_mart": snapshot.mart_rows,
        "pii_columns": list(config.export_pii_columns),
        "erasures_checked": len(snapshot.erased_ids),
    }

    log(f"export: writing {', '.join(data)} to {root} (the manifest last)")
    written = tuple(name for name, content in data.items() if write_if_changed(root, name, content))
    existing = _read_manifest(root / names["manifest"])
    unchanged = existing is not None and {**existing, "run_id": run_id} == manifest
    if unchanged:
        manifest = existing  # run_id stays the run that first produced these bytes
    else:
        write_atomic(root, names["manifest"], manifest_bytes(manifest))
    return ExportOutcome(root, manifest, written, not unchanged, tuple(scrubbed))


def _align(previous: pa.Table, schema: pa.Schema) -> pa.Table:
    """The previous export in the current columns (missing columns as nulls), for comparing."""
    arrays = []
    for field in schema:
        if field.name in previous.column_names:
            column = previous.column(field.name)
            arrays.append(column.cast(field.type) if column.type != field.type else column)
        else:
            arrays.append(pa.nulls(previous.num_rows, field.type))
    return pa.table(arrays, schema=schema)


# ----------------------------------------------------------------------------------------------
# Dagster
# ----------------------------------------------------------------------------------------------


def mart_check_keys(dbt_assets: dg.AssetsDefinition) -> list[dg.AssetCheckKey]:
    """The dbt tests on the mart, as the code location declares them (asset checks of the dbt assets)."""
    return sorted((key for key in dbt_assets.check_keys if key.asset_key == MART_KEY), key=lambda k: k.name)


def failed_mart_checks(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]) -> list[str]:
    """Error-severity checks whose latest evaluation (this run's, in a full run) failed."""
    failed = []
    for key in check_keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record is not None else None
        if evaluation is not None and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(key.name)
    return failed


def run_as_of(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dt.date:
    """The date the customer-level marts were built for: the run's (latest) partition, else the setting."""
    if context.has_partition_key_range or context.has_partition_key:
        return max(dt.date.fromisoformat(key) for key in context.partition_keys)
    return settings.as_of()


def build_export_assets(
    partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy, dbt_assets: dg.AssetsDefinition
) -> list[dg.AssetsDefinition]:
    """The segment-flag export asset (its mart's dbt tests come from ``dbt_assets``)."""

    @dg.asset(
        key_prefix=["exports"],
        name="segment_flags",
        group_name="export",
        # After the mart (and its dbt checks), after the erasure step, whose list it also applies, and
        # after the predictive CLV step, whose predictions it exports.
        deps=[MART_KEY, ERASURES_KEY, PREDICTIONS_KEY],
        # The graph's as-of partitions: a nightly run exports its date; a backfilled range exports its
        # latest date only (the customer-level mart holds the latest date of the run).
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        description=(
            "Per-customer segment flags for marketing automation: segment_flags_<as_of>.csv/.parquet, "
            "a _delta.csv against the previous export and a manifest, written atomically into export_dir."
        ),
    )
    def segment_flags_export(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
        # In a full run Dagster already skips this step when a dbt test fails (the dbt step fails);
        # this also stops an export materialised on its own after a run whose mart checks failed.
        failed = failed_mart_checks(context.instance, mart_check_keys(dbt_assets))
        if failed:
            raise ExportError(
                f"the latest dbt checks on {MART_KEY.to_user_string()} failed ({', '.join(failed)}): not exporting;"
                " fix the data and rebuild the mart"
            )
        config = settings.loyalty_config()
        as_of = run_as_of(context, settings)
        try:
            outcome = export_segment_flags(config, as_of, context.run_id, log=context.log.info)
        except MartIsNewer as skipped:
            context.log.info(f"backfill of an older date: nothing exported ({skipped})")
            return dg.MaterializeResult(metadata={"exported": False, "reason": str(skipped)})
        manifest = outcome.manifest
        names = file_names(as_of)
        return dg.MaterializeResult(
            metadata={
                "exported": True,
                "folder": str(outcome.folder),
                "rows": manifest["files"][names["csv"]]["rows"],
                "delta_rows": manifest["files"][names["delta"]]["rows"],
                "delta_against": manifest["delta_against"] or "",
                "consent_filtered": manifest["consent_filtered"],
                "files_written": ", ".join(outcome.files_written) or "none (bytes unchanged)",
                "manifest_run_id": manifest["run_id"],
                "csv_sha256": manifest["files"][names["csv"]]["sha256"],
            }
        )

    return [segment_flags_export]

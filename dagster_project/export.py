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
import pyarrow as pa
import pyarrow.parquet as pq

from .durable_files import fsync_dir
from .config import LoyaltyConfig
from .partitions import AS_OF_PARTITIONS, SINGLE_RUN
from .resources import LoyaltySettings
from .warehouse import connect, quote_identifier

SCHEMA_VERSION = 1
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
    ]
)
# Columns of stg_raw__customers that are never exported as "PII columns" (they are keys or
# already in the flags).
_NOT_PII = {"customer_id", "has_marketing_consent", "consent_updated_at"}
# A delta row is "changed" when one of these differs (plus any exported PII column).
TRACKED_COLUMNS = ("value_segment", "lifecycle_stage") + tuple(
    field.name for field in FLAG_SCHEMA if field.name.startswith(("is_", "has_"))
)
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
        columns = ", ".join(f"flags.{quote_identifier(field.name)}" for field in FLAG_SCHEMA if field.name != "clv")
        query = (
            f"select {columns}, round(flags.clv, 2) as clv{pii_select} from {MART_TABLE} as flags{pii_join}{where}"
            " order by flags.customer_id"
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
    columns = current.column_names
    tracked = [c for c in columns if c in TRACKED_COLUMNS or c not in FLAG_SCHEMA.names]
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
            differing = [c for c in tracked if c in before[customer_id] and before[customer_id][c] != now[customer_id][c]]
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
    changes = delta_rows(table, previous, snapshot.erased_ids)
    columns = table.column_names
    data = {
        names["csv"]: csv_bytes(columns, table.to_pylist()),
        names["parquet"]: parquet_bytes(table),
        names["delta"]: csv_bytes(columns + list(DELTA_EXTRA_COLUMNS), changes),
    }
    counts = {
        names["csv"]: table.num_rows,
        names["parquet"]: table.num_rows,
        names["delta"]: len(changes),
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
        "delta_counts": {kind: sum(1 for row in changes if row["change"] == kind) for kind in ("added", "changed", "removed")},
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


def mart_check_keys() -> list[dg.AssetCheckKey]:
    """The dbt tests on the mart, as the code location declares them (asset checks of the dbt assets)."""
    from .transform import loyalty_dbt_models  # imported late: it loads the dbt manifest

    return sorted((key for key in loyalty_dbt_models.check_keys if key.asset_key == MART_KEY), key=lambda k: k.name)


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


@dg.asset(
    key_prefix=["exports"],
    name="segment_flags",
    group_name="export",
    # After the mart (and its dbt checks), and after the erasure step, whose list it also applies.
    deps=[MART_KEY, ERASURES_KEY],
    # The graph's as-of partitions: a nightly run exports its date; a backfilled range exports its
    # latest date only (the customer-level mart holds the latest date of the run).
    partitions_def=AS_OF_PARTITIONS,
    backfill_policy=SINGLE_RUN,
    description=(
        "Per-customer segment flags for marketing automation: segment_flags_<as_of>.csv/.parquet, "
        "a _delta.csv against the previous export and a manifest, written atomically into export_dir."
    ),
)
def segment_flags_export(context: dg.AssetExecutionContext, settings: LoyaltySettings) -> dg.MaterializeResult:
    # In a full run Dagster already skips this step when a dbt test fails (the dbt step fails);
    # this also stops an export materialised on its own after a run whose mart checks failed.
    failed = failed_mart_checks(context.instance, mart_check_keys())
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


export_asset = segment_flags_export
EXPORT_ASSETS = [segment_flags_export]

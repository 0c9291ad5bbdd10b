"""The segment-flag export end to end: two as-of dates on one warehouse and one export folder.

D1 = 2024-12-30: six customers, consent for all but KX4.
D2 = 2024-12-31, after three deliveries: a new customer (KX5), KX3 withdraws consent, KX6 asks
for erasure. Between D1 and D2 KX2 crosses 180 days since its only purchase (active → at_risk)
and KX5's purchase moves KX6 from middle to top (6 active customers instead of 5).
Customer ids contain a K so that a hex digest can never contain one by chance.
"""

import csv
import datetime as dt
import hashlib
import io
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_project.export import SEGMENT_FLAGS
from dagster_project.export.files import write_atomic
from dagster_project.resources import LoyaltySettings

from .support import TRANSACTION_HEADER, query, write_csv
from .test_lifecycle import failure_message, run_graph

D1 = dt.date(2024, 12, 30)
D2 = dt.date(2024, 12, 31)
file_names = SEGMENT_FLAGS.file_names
CONSENT_HEADER = ["customer_id", "marketing_consent", "consent_updated_at", "email"]


def settings(raw: Path, root: Path, as_of: dt.date, **overrides) -> LoyaltySettings:
    return LoyaltySettings(
        as_of_date=as_of.isoformat(),
        raw_dir=str(raw),
        warehouse=str(root / "warehouse.duckdb"),
        overrides_json=json.dumps({"export_dir": str(root / "exports"), **overrides}),
    )


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def parse_export_file(path: Path) -> None:
    """Parses one export file completely; raises on anything partial. Each file is read in one
    open: pq.read_table(path) opens the path twice (footer, then pages), so a file replaced in
    between mixes two versions, a race of that reader that no writer can prevent."""
    if path.name.endswith(".parquet"):
        pq.read_table(pa.BufferReader(path.read_bytes()))
    elif path.name.endswith(".json"):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        assert {"as_of_date", "files", "run_id", "schema_version"} <= set(manifest)
    else:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), "no final newline: a partial file"
        records = list(csv.reader(io.StringIO(text)))
        assert records and records[0][0] == "customer_id"
        width = len(records[0])
        assert all(len(record) == width for record in records), "a short row: a partial file"


class FolderPoller(threading.Thread):
    """Lists the folder over and over and parses every segment_flags_* file it sees."""

    def __init__(self, folder: Path, pause: float = 0.0):
        super().__init__(daemon=True)
        self.folder, self.pause, self.stop, self.parsed, self.failures = folder, pause, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            names = sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []
            for name in names:
                if not name.startswith("segment_flags_"):
                    continue  # hidden temp files (.segment_flags_…tmp) are not export files
                try:
                    parse_export_file(self.folder / name)
                    self.parsed += 1
                except Exception as error:  # noqa: BLE001 - every failure is a finding
                    self.failures.append(f"{name}: {error!r}")
            time.sleep(self.pause)  # lets the run's thread have the GIL between passes

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    raw = tmp_path_factory.mktemp("export_raw")
    write_csv(raw / "transactions" / "tx1.csv", TRANSACTION_HEADER, [
        ("t1", "KX1", "2024-06-01", "500", "p1", "store"),
        ("t2", "KX1", "2024-12-01", "500", "p1", "store"),
        ("t3", "KX2", "2024-07-03", "500", "p1", "web"),  # 180 days before D1, 181 before D2
        ("t4", "KX3", "2024-10-01", "300", "p2", "web"),
        ("t5", "KX4", "2024-10-01", "200", "p2", "app"),
        ("t6", "KX6", "2024-10-01", "400", "p1", "store"),
        ("t7", "KX6", "2024-11-01", "400", "p1", "store"),
        ("t8", "KX7", "2023-01-05", "100", "p3", "store"),  # lost
    ])
    write_csv(raw / "customers" / "consent_1.csv", CONSENT_HEADER, [
        (customer, "false" if customer == "KX4" else "true", "2024-12-28T10:00:00", f"{customer.lower()}@example.com")
        for customer in ("KX1", "KX2", "KX3", "KX4", "KX6", "KX7")
    ])
    return raw


@pytest.fixture(scope="module")
def two_dates(landing, tmp_path_factory):
    """Run for D1, then the deliveries, then run for D2 with a reader polling the export folder."""
    root = tmp_path_factory.mktemp("export_wh")
    first = run_graph(settings(landing, root, D1))
    assert first.success, failure_message(first)
    folder = root / "exports"
    after_d1 = {name: read_csv(folder / name) for name in (file_names(D1)["csv"],)}

    write_csv(landing / "transactions" / "tx2.csv", TRANSACTION_HEADER, [("t9", "KX5", "2024-12-31", "50", "p3", "app")])
    write_csv(landing / "customers" / "consent_2.csv", CONSENT_HEADER, [
        ("KX3", "false", "2024-12-30T09:00:00", "kx3@example.com"),
        ("KX5", "true", "2024-12-30T09:00:00", "kx5@example.com"),
    ])
    write_csv(landing / "erasures" / "erasures.csv", ["customer_id", "requested_at"], [("KX6", "2024-12-31T08:00:00")])
    with FolderPoller(folder, pause=0.002) as poller:
        second = run_graph(settings(landing, root, D2))
    assert second.success, failure_message(second)
    return {"root": root, "folder": folder, "landing": landing, "after_d1": after_d1, "poller": poller,
            "run_id": second.run_id}


def test_d1_export_applies_consent(two_dates):
    rows = two_dates["after_d1"][file_names(D1)["csv"]]
    assert [row["customer_id"] for row in rows] == ["KX1", "KX2", "KX3", "KX6", "KX7"]  # KX4: no consent
    assert {row["has_marketing_consent"] for row in rows} == {"true"}
    assert {row["as_of_date"] for row in rows} == {"2024-12-30"}


def test_delta_between_two_as_of_dates(two_dates):
    delta = {row["customer_id"]: row for row in read_csv(two_dates["folder"] / file_names(D2)["delta"])}
    assert {customer: row["change"] for customer, row in delta.items()} == {
        "KX2": "changed",  # active → at_risk
        "KX3": "removed",  # consent withdrawn
        "KX5": "added",  # first purchase on D2
    }  # KX6 moved middle → top, but was erased: never listed, not even as removed
    assert set(delta["KX2"]["changed_columns"].split(";")) == {"lifecycle_stage", "is_at_risk"}
    assert (delta["KX2"]["lifecycle_stage"], delta["KX2"]["as_of_date"]) == ("at_risk", "2024-12-31")
    # A removed row carries the previous export's values.
    assert (delta["KX3"]["as_of_date"], delta["KX3"]["has_marketing_consent"]) == ("2024-12-30", "true")
    manifest = json.loads((two_dates["folder"] / file_names(D2)["manifest"]).read_text(encoding="utf-8"))
    assert manifest["delta_against"] == file_names(D1)["parquet"]
    assert manifest["delta_counts"] == {"added": 1, "changed": 1, "removed": 1}


def test_files_are_deterministic_and_consistent_with_the_manifest(two_dates):
    folder = two_dates["folder"]
    names = file_names(D2)
    csv_rows = read_csv(folder / names["csv"])
    table = pq.read_table(folder / names["parquet"])
    assert [row["customer_id"] for row in csv_rows] == table.column("customer_id").to_pylist() == ["KX1", "KX2", "KX5", "KX7"]
    assert table.schema.metadata is None or b"pandas" not in table.schema.metadata
    assert csv_rows[0]["revenue_12m"] == "1000.00" and csv_rows[0]["is_super"] == "true"
    assert csv_rows[0]["first_purchase_date"] == "2024-06-01"
    manifest = json.loads((folder / names["manifest"]).read_text(encoding="utf-8"))
    assert manifest["as_of_date"] == "2024-12-31" and manifest["run_id"] == two_dates["run_id"]
    assert manifest["consent_filtered"] is True
    on_disk = digests(folder)
    for day in (D1, D2):
        day_manifest = json.loads((folder / file_names(day)["manifest"]).read_text(encoding="utf-8"))
        for name, entry in day_manifest["files"].items():
            assert entry["sha256"] == on_disk[name], name
    assert "@" not in (folder / names["csv"]).read_text(encoding="utf-8")  # no PII unless asked for
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_a_reader_polling_during_the_run_never_sees_a_partial_file(two_dates):
    poller = two_dates["poller"]
    assert poller.failures == []
    assert poller.parsed > 0


def test_atomic_writes_under_a_fast_poller_and_the_poller_catches_plain_writes(tmp_path):
    big = ("customer_id,value\n" + "".join(f"K{i:07d},{i}\n" for i in range(20_000))).encode()  # 340 kB
    name = "segment_flags_2000-01-01.csv"
    with FolderPoller(tmp_path) as poller:
        for _ in range(8):
            write_atomic(SEGMENT_FLAGS, tmp_path, name, big)
    assert poller.failures == [] and poller.parsed > 0
    plain = tmp_path / "plain"
    plain.mkdir()
    with FolderPoller(plain) as control:  # the same poller notices a file written in place
        with (plain / name).open("wb") as handle:
            for start in range(0, len(big), 1 << 14):
                handle.write(big[start:start + (1 << 14)])
                handle.flush()
                time.sleep(0.005)
    assert control.failures, "the poller should catch a partially written file"


def test_erased_customer_is_in_no_export_file(two_dates):
    folder = two_dates["folder"]
    for path in folder.iterdir():
        if path.suffix == ".parquet":
            assert "KX6" not in pq.read_table(path).column("customer_id").to_pylist(), path.name
        else:
            assert b"KX6" not in path.read_bytes(), path.name
    # The D1 files lost KX6 and their manifest says so.
    d1 = json.loads((folder / file_names(D1)["manifest"]).read_text(encoding="utf-8"))
    assert d1["files"][file_names(D1)["csv"]]["rows"] == 4 and d1["erasures_checked"] == 1


def _erasure_runs_before_dbt() -> bool:
    import dagster as dg

    from dagster_project.definitions import build_resources

    from .support import default_graph

    graph = dg.Definitions(assets=default_graph().assets, resources=build_resources()).resolve_asset_graph()
    seen, todo = set(), [dg.AssetKey(["marts", "customer_segment_flags"])]
    while todo:
        key = todo.pop()
        for parent in graph.get(key).parent_keys:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return dg.AssetKey(["raw", "erasures"]) in seen


def test_erased_customer_is_in_no_warehouse_table_after_the_next_run(two_dates):
    # The dbt models read raw.erasures, so the erasure step runs before them in the same run.
    assert _erasure_runs_before_dbt()
    warehouse = two_dates["root"] / "warehouse.duckdb"
    relations = query(
        warehouse,
        "select table_schema, table_name from information_schema.columns where column_name = 'customer_id'"
        " and not (table_schema = 'raw' and table_name = 'erasures') order by all",
    )
    assert ("marts", "customer_segment_flags") in relations and ("raw", "transactions") in relations
    holding = [
        f"{schema}.{table}" for schema, table in relations
        if query(warehouse, f'select count(*) from "{schema}"."{table}" where customer_id = ?', ["KX6"])[0][0]
    ]
    assert holding == []


def test_rerun_of_the_same_date_is_byte_identical(two_dates):
    folder = two_dates["folder"]
    before = digests(folder)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    rerun = run_graph(settings(two_dates["landing"], two_dates["root"], D2), export_only=True)
    assert rerun.success, failure_message(rerun)
    assert digests(folder) == before
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes  # nothing rewritten
    manifest = json.loads((folder / file_names(D2)["manifest"]).read_text(encoding="utf-8"))
    assert manifest["run_id"] == two_dates["run_id"] != rerun.run_id  # the run that produced the bytes


def test_stale_consent_fails_the_export_and_writes_nothing(two_dates):
    folder = two_dates["folder"]
    before = digests(folder)
    # The newest consent event is from 2024-12-30, one day before D2: older than 0 days allows.
    result = run_graph(settings(two_dates["landing"], two_dates["root"], D2, consent_max_age_days=0), export_only=True)
    assert not result.success
    message = failure_message(result)
    assert "consent data is stale" in message and "consent_max_age_days = 0" in message, message
    assert digests(folder) == before


def test_pii_columns_only_when_configured(two_dates, tmp_path):
    result = run_graph(
        settings(two_dates["landing"], two_dates["root"], D2, export_dir=str(tmp_path), export_pii_columns=["email"]),
        export_only=True,
    )
    assert result.success, failure_message(result)
    rows = read_csv(tmp_path / file_names(D2)["csv"])
    assert {row["customer_id"]: row["email"] for row in rows} == {
        "KX1": "kx1@example.com", "KX2": "kx2@example.com", "KX5": "kx5@example.com", "KX7": "kx7@example.com",
    }
    unknown = run_graph(
        settings(two_dates["landing"], two_dates["root"], D2, export_dir=str(tmp_path), export_pii_columns=["phone"]),
        export_only=True,
    )
    assert not unknown.success and "export_pii_columns ['phone']" in failure_message(unknown)


# ----------------------------------------------------------------------------------------------
# The pieces, without a run
# ----------------------------------------------------------------------------------------------


def test_the_export_asset_follows_the_mart_the_predictions_and_the_erasure_step():
    import dagster as dg

    from dagster_project.definitions import build_resources

    from .support import default_graph

    graph = dg.Definitions(assets=default_graph().assets, resources=build_resources()).resolve_asset_graph()
    node = graph.get(dg.AssetKey(["exports", "segment_flags"]))
    assert node.parent_keys == {
        dg.AssetKey(["marts", "customer_segment_flags"]), dg.AssetKey(["raw", "erasures"]),
        dg.AssetKey(["marts", "customer_clv_predictions"]),  # its predictions are exported too
    }
    checked = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey(["marts", "customer_segment_flags"])}
    assert "unique_combination_customer_segment_flags_customer_id" in checked


def test_file_names_come_from_the_date_and_stay_under_the_root(tmp_path):
    from dagster_project.export.files import ExportError, safe_path

    assert file_names(D2)["delta"] == "segment_flags_2024-12-31_delta.csv"
    assert safe_path(SEGMENT_FLAGS, tmp_path, "segment_flags_2024-12-31.csv") == (tmp_path / "segment_flags_2024-12-31.csv").resolve()
    for bad in ("../segment_flags_2024-12-31.csv", "sub/segment_flags_2024-12-31.csv", "evil.csv", "/etc/passwd"):
        with pytest.raises(ExportError):
            safe_path(SEGMENT_FLAGS, tmp_path, bad)


def test_the_file_format_is_duckdbs_csv_as_documented(tmp_path):
    """The README's format: header, ',', '\\n', quotes only where needed ('""' inside), ISO dates,
    true/false, decimals with their two places, an empty field for null and "" for an empty text."""
    import duckdb

    from dagster_project.export.files import copy_to

    con = duckdb.connect()
    con.execute("""
        create table rows as select * from (values
            ('K1', 'a,b', 1.005::decimal(18,2), true, date '2024-12-31', null::integer),
            ('K2', 'say "hi"', -0.004::decimal(18,2), false, null, 7),
            ('K3', 'two' || chr(10) || 'lines', 7094.21::decimal(18,2), null, date '2024-01-02', -1),
            ('K4', '', null, true, date '2024-01-03', 0),
            ('K5', null, 10::decimal(18,2), true, date '2024-01-04', 0)
        ) t(customer_id, email, amount, flag, day, n)
    """)
    copy_to(con, "select * from rows order by customer_id", tmp_path / "f.csv", "csv")
    assert (tmp_path / "f.csv").read_bytes().decode() == (
        "customer_id,email,amount,flag,day,n\n"
        'K1,"a,b",1.01,true,2024-12-31,\n'
        'K2,"say ""hi""",0.00,false,,7\n'
        'K3,"two\nlines",7094.21,,2024-01-02,-1\n'
        'K4,"",,true,2024-01-03,0\n'
        "K5,,10.00,true,2024-01-04,0\n"
    )
    assert list(csv.reader(io.StringIO((tmp_path / "f.csv").read_text())))[3][1] == "two\nlines"


def _delta(now_rows, before_rows, family=None, tracked=None):
    """delta_query over two small tables: (customer_id, change, changed_columns) per row."""
    import duckdb

    from dagster_project.export.files import delta_query

    family = family or SEGMENT_FLAGS
    con = duckdb.connect()
    columns = list(now_rows[0])
    for name, rows in (("now_t", now_rows), ("before_t", before_rows)):
        con.execute(f"create table {name} as select * from (values {', '.join(_values(row) for row in rows)}) t({', '.join(columns)})")
    sql = delta_query(family, columns, tracked if tracked is not None else [c for c in columns if c in family.tracked],
                      "select * from now_t", "select * from before_t")
    return con.execute(sql).fetchall(), columns


def _values(row):
    def literal(value):
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return f"{value}::decimal(18,2)"
        return "'" + value.replace("'", "''") + "'"
    return "(" + ", ".join(literal(value) for value in row.values()) + ")"


def test_the_delta_lists_added_changed_and_removed_rows_by_key():
    before = [
        {"customer_id": "b", "value_segment": "top", "lifecycle_stage": "active", "is_vip": True, "email": "b@x"},
        {"customer_id": "é", "value_segment": None, "lifecycle_stage": "lost", "is_vip": None, "email": None},
        {"customer_id": "a", "value_segment": "top", "lifecycle_stage": "new", "is_vip": False, "email": "a@x"},
        {"customer_id": "gone", "value_segment": "bottom", "lifecycle_stage": "lost", "is_vip": False, "email": "g,1"},
        {"customer_id": "same", "value_segment": "top", "lifecycle_stage": "active", "is_vip": True, "email": None},
    ]
    now = [
        {"customer_id": "same", "value_segment": "top", "lifecycle_stage": "active", "is_vip": True, "email": None},
        {"customer_id": "a", "value_segment": "middle", "lifecycle_stage": "new", "is_vip": None, "email": "a,new"},
        {"customer_id": "Z", "value_segment": "top", "lifecycle_stage": "new", "is_vip": True, "email": None},
        {"customer_id": "é", "value_segment": "bottom", "lifecycle_stage": "lost", "is_vip": None, "email": None},
        {"customer_id": "b", "value_segment": "top", "lifecycle_stage": "at_risk", "is_vip": True, "email": "b@x"},
    ]
    rows, columns = _delta(now, before, tracked=["value_segment", "lifecycle_stage", "is_vip", "email"])
    position = {name: i for i, name in enumerate(columns + ["change", "changed_columns"])}
    assert [(row[0], row[position["change"]], row[position["changed_columns"]]) for row in rows] == [
        ("Z", "added", ""), ("a", "changed", "value_segment;is_vip;email"), ("b", "changed", "lifecycle_stage"),
        ("gone", "removed", ""), ("é", "changed", "value_segment"),
    ]  # code point order; columns in column order; null-aware
    gone = rows[3]
    assert gone[position["email"]] == "g,1"  # a removed row carries the previous values
    assert _delta(now, now)[0] == [] and len(_delta(now, [dict(now[0], customer_id="x")])[0]) == len(now) + 1


def test_the_delta_compares_on_a_composite_key():
    from dagster_project.export.files import FileFamily

    family = FileFamily(name="offers", mart="marts.m", key=("customer_id", "slot"), columns=(), tracked=("offer_id",),
                        schema_version=1, source=lambda con: "")
    before = [{"customer_id": "a", "slot": "1", "offer_id": "o1"}, {"customer_id": "a", "slot": "2", "offer_id": "o2"}]
    now = [{"customer_id": "a", "slot": "1", "offer_id": "o1"}, {"customer_id": "a", "slot": "2", "offer_id": "o3"},
           {"customer_id": "a", "slot": "3", "offer_id": "o1"}]
    rows, _ = _delta(now, before, family=family)
    assert [(row[0], row[1], row[3], row[4]) for row in rows] == [("a", "2", "changed", "offer_id"), ("a", "3", "added", "")]

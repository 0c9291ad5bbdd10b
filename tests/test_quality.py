"""Great Expectations suites as blocking asset checks: the suites, the adapter, the checks, and a
failed raw suite stopping the dbt models in a real in-process run."""

import json
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project import quality
from dagster_project.definitions import build_resources
from dagster_project.quality_checks import check_names, read_table
from dagster_project.resources import LoyaltySettings
from dagster_project.runner import first_failure
from dagster_project.sample_data import generate_sample

from .support import TRANSACTION_HEADER, default_graph, default_suite_parameters, write_csv

PARAMETERS = default_suite_parameters()

SUITES = [
    "marts.clv_calibration",
    "marts.clv_model_parameters",
    "marts.customer_clv_predictions",
    "marts.customer_period_facts",
    "marts.nps_by_segment",
    "marts.segment_clv",
    "marts.segment_flow_matrix",
    "marts.segment_retention",
    "marts.value_deciles",
    "raw.nps_responses",
    "raw.transactions",
]
# Relational rules belong to dbt tests: a GX suite must not restate them.
DBT_OWNED_TYPES = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
    "expect_select_column_values_to_be_unique_within_record",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_be_of_type",
}
CHECK_STEPS = {f"{suite.replace('.', '__', 1)}_{suite.replace('.', '_')}_suite" for suite in SUITES}


def materialize(settings: LoyaltySettings, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """As runner.run_pipeline, with the quality checks (until the runner lists them itself)."""
    return dg.materialize(
        [*default_graph().assets, *default_graph().checks],
        resources=build_resources(settings),
        instance=instance,
        partition_key=settings.as_of().isoformat(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        event.asset_check_evaluation_data.check_name: event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    raw = tmp_path_factory.mktemp("gx_sample_raw")
    summary = generate_sample(raw, customers=3000)
    warehouse = tmp_path_factory.mktemp("gx_sample_wh") / "warehouse.duckdb"
    result = materialize(LoyaltySettings(as_of_date=summary["as_of_date"], raw_dir=str(raw), warehouse=str(warehouse)))
    assert result.success, first_failure(result)
    return warehouse, result


@pytest.fixture(scope="module")
def sample_frames(sample_run):
    warehouse, _ = sample_run
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {suite: con.execute(f"select * from {suite}").df() for suite in SUITES}


# --- the suites --------------------------------------------------------------------------------


def test_one_gx_suite_per_asset():
    assert quality.suite_names() == SUITES
    asset_keys = {key.to_user_string() for assets in default_graph().assets for key in assets.keys}
    for suite in SUITES:
        data = json.loads(quality.suite_path(suite).read_text(encoding="utf-8"))
        loaded = quality.load_suite(suite)  # GX itself parses every expectation
        assert loaded.name == data["name"] == suite
        assert [e.expectation_type for e in loaded.expectations] == [e["type"] for e in data["expectations"]]
        assert suite.replace(".", "/") in asset_keys
        assert not DBT_OWNED_TYPES & {e["type"] for e in data["expectations"]}, suite


def test_suite_columns_exist_in_the_tables(sample_frames):
    for suite in SUITES:
        columns = {e["kwargs"]["column"] for e in quality.load_suite_dict(suite)["expectations"] if "column" in e["kwargs"]}
        assert columns <= set(sample_frames[suite].columns), suite


def test_one_blocking_check_per_suite():
    # The GX checks; the predictive CLV step has a warning check of its own (clv_fit_is_fresh).
    specs = [spec for check in default_graph().checks for spec in check.check_specs if spec.name.endswith("_suite")]
    assert sorted((spec.asset_key.to_user_string(), spec.name) for spec in specs) == sorted(
        (suite.replace(".", "/"), suite.replace(".", "_") + "_suite") for suite in SUITES
    )
    assert all(spec.blocking for spec in specs)
    assert check_names() == [suite.replace(".", "_") + "_suite" for suite in SUITES]


# --- the adapter -------------------------------------------------------------------------------


def transactions_frame(amounts: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(amounts))],
            "transaction_date": pd.to_datetime(["2024-03-01"] * len(amounts)).astype("datetime64[us]"),
            "amount": amounts,
        }
    )


def test_adapter_passes_a_good_frame():
    outcome = quality.validate(transactions_frame([100.0, 250.5, -20.0, 80.0, 999_999.0]), "raw.transactions", PARAMETERS)
    assert (outcome.success, outcome.rows, outcome.evaluated, outcome.failed) == (True, 5, 4, ())
    assert outcome.summary() == "all 4 expectations of raw.transactions passed on 5 rows"


def test_adapter_names_the_failed_expectation_with_values_and_rows():
    outcome = quality.validate(transactions_frame([100.0, 5e7, 30.0, 5e7, 10.0]), "raw.transactions", PARAMETERS)
    assert outcome.success is False
    [failed] = outcome.failed
    assert (failed.type, failed.column, failed.observed) == ("expect_column_values_to_be_between", "amount", "2 unexpected values (40%)")
    assert failed.kwargs == {"column": "amount", "min_value": -1e6, "max_value": 1e6}
    assert failed.unexpected_values == [5e7, 5e7]
    assert [row["transaction_id"] for row in failed.unexpected_rows] == ["t1", "t3"]
    assert failed.unexpected_rows[0]["transaction_date"] == "2024-03-01"
    assert outcome.summary() == "expect_column_values_to_be_between(amount) observed 2 unexpected values (40%)"


def test_adapter_reports_aggregates_and_errors():
    suite = {
        "name": "adhoc.errors",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10}},
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "missing", "min_value": 0}},
        ],
    }
    outcome = quality.validate(transactions_frame([1.0, 2.0]), suite, PARAMETERS)
    assert [(f.type, f.column) for f in outcome.failed] == [
        ("expect_table_row_count_to_be_between", None),
        ("expect_column_values_to_be_between", "missing"),
    ]
    assert outcome.failed[0].observed == "2"
    assert outcome.failed[1].observed.startswith("error: ") and "missing" in outcome.failed[1].observed
    assert outcome.summary() == "expect_table_row_count_to_be_between observed 2 (+1 more failed)"


def test_suite_bounds_that_are_settings_come_from_the_configuration():
    """business_start_date is written once (config): the raw suites take it as a parameter, so a
    history from 1997 passes with business_start_date 1997-01-01 and fails with the default."""
    import datetime as dt

    from dagster_project.config import LoyaltyConfig

    frame = transactions_frame([10.0, 20.0])
    frame["transaction_date"] = pd.to_datetime(["1997-03-01", "1998-06-30"]).astype("datetime64[us]")
    today = dt.date(1998, 7, 1)
    old = quality.suite_parameters(LoyaltyConfig(business_start_date="1997-01-01"), today)
    assert quality.validate(frame, "raw.transactions", old).success
    default = quality.suite_parameters(LoyaltyConfig(), today)
    [failed] = quality.validate(frame, "raw.transactions", default).failed
    assert (failed.column, failed.kwargs["min_value"]) == ("transaction_date", f"{LoyaltyConfig().business_start_date}T00:00:00")
    # The run's day is the upper bound, as in ingest: a row dated after it fails.
    later = quality.suite_parameters(LoyaltyConfig(business_start_date="1997-01-01"), dt.date(1998, 1, 1))
    [failed] = quality.validate(frame, "raw.transactions", later).failed
    assert failed.observed == "1 unexpected value (50%)"
    with pytest.raises(ValueError, match="needs the parameters"):
        quality.validate(frame, "raw.transactions", {})


def test_adapter_picks_up_a_changed_suite():
    frame = transactions_frame([5.0, 50.0])
    suite = {
        "name": "adhoc.changing",
        "expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "max_value": 10}}],
    }
    assert quality.validate(frame, suite, PARAMETERS).summary() == "expect_column_values_to_be_between(amount) observed 1 unexpected value (50%)"
    suite["expectations"][0]["kwargs"]["max_value"] = 100
    assert quality.validate(frame, suite, PARAMETERS).success


def test_suite_columns_are_what_the_expectations_read():
    assert quality.suite_columns(quality.load_suite_dict("raw.transactions")) == ["amount", "transaction_date"]
    rows_only = {"name": "adhoc.rows", "expectations": [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]}
    assert quality.suite_columns(rows_only) == []
    # Expectations that may look at other columns need the whole frame.
    table_wide = {"name": "adhoc.wide", "expectations": [{"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["a"]}}]}
    conditional = {"name": "adhoc.cond", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "min_value": 0, "row_condition": 'b=="x"'}}
    ]}
    assert quality.suite_columns(table_wide) is None and quality.suite_columns(conditional) is None


def test_adapter_gives_gx_the_suite_columns_in_vectorised_dtypes(sample_frames):
    """GX's pandas `between` compares datetime64[us] and int32/Int32 one Python value at a time
    (1.1 s for a 200 000-row transactions sample): the adapter widens them losslessly first."""
    for suite in SUITES:
        columns = quality.suite_columns(quality.load_suite_dict(suite))
        frame, _ = quality._gx_frame(sample_frames[suite], columns)
        assert list(frame.columns) == [c for c in sample_frames[suite].columns if c in columns], suite
        assert frame.index.equals(sample_frames[suite].index)
        for column in frame.columns:
            assert frame[column].dtype in ("int64", "float64", "datetime64[ns]"), (suite, column, frame[column].dtype)


def test_adapter_still_catches_dates_beyond_the_nanosecond_range():
    frame = transactions_frame([1.0, 2.0, 3.0])
    frame["transaction_date"] = pd.Series(["2024-03-01", "9999-12-31", "1500-01-01"], dtype="datetime64[us]")
    outcome = quality.validate(frame, "raw.transactions", PARAMETERS)
    [failed] = outcome.failed
    assert (failed.column, failed.observed) == ("transaction_date", "2 unexpected values (66.7%)")
    assert failed.unexpected_values == ["9999-12-31", "1500-01-01"]
    assert [row["transaction_id"] for row in failed.unexpected_rows] == ["t1", "t2"]


def test_adapter_reports_nullable_integers_as_the_frame_has_them():
    frame = pd.DataFrame({
        "value_share": [0.1, 0.2, 0.3, 0.4],
        "value_decile": pd.array([2, None, 11, 5], dtype="Int32"),
        "refund_amount": [0.0, 0.0, 0.0, 0.0],
    })
    [failed] = quality.validate(frame, "marts.customer_period_facts", PARAMETERS).failed
    assert (failed.column, failed.observed, failed.unexpected_values) == ("value_decile", "1 unexpected value (33.3%)", [11])
    assert failed.unexpected_rows == [{"value_share": 0.3, "value_decile": 11, "refund_amount": 0.0}]


def test_adapter_prints_no_progress_bar(capfd, sample_frames):
    outcome = quality.validate(sample_frames["raw.transactions"], "raw.transactions", PARAMETERS)
    captured = capfd.readouterr()
    assert outcome.success
    assert "Calculating Metrics" not in captured.err
    assert (captured.out, captured.err) == ("", "")


def corrupt(frame: pd.DataFrame, expectation: dict) -> pd.DataFrame:
    """The frame broken for exactly this expectation: one row out of range (every row for `mostly`),
    or no rows for a volume rule."""
    # Placeholders take the values a run gives them (quality.suite_parameters).
    kwargs = {k: PARAMETERS[v["$PARAMETER"]] if isinstance(v, dict) else v for k, v in expectation["kwargs"].items()}
    if expectation["type"] == "expect_table_row_count_to_be_between":
        return frame.iloc[0:0]
    assert expectation["type"] == "expect_column_values_to_be_between", expectation
    column = kwargs["column"]
    is_date = pd.api.types.is_datetime64_any_dtype(frame[column])
    step = pd.Timedelta(days=1) if is_date else 1
    if kwargs.get("max_value") is not None:
        bound = pd.Timestamp(kwargs["max_value"]) if is_date else kwargs["max_value"]
        bad = bound if kwargs.get("strict_max") else bound + step
    else:
        bound = pd.Timestamp(kwargs["min_value"]) if is_date else kwargs["min_value"]
        bad = bound if kwargs.get("strict_min") else bound - step
    broken = frame.copy()
    if "mostly" in kwargs:
        broken[column] = bad
    else:
        broken.loc[broken.index[0], column] = bad
    return broken


EXPECTATIONS = [
    pytest.param(suite, index, id=f"{suite}[{index}]")
    for suite in SUITES
    for index in range(len(quality.load_suite_dict(suite)["expectations"]))
]


@pytest.mark.parametrize(("suite", "index"), EXPECTATIONS)
def test_every_expectation_fails_on_bad_data_and_only_it(sample_frames, suite, index):
    expectation = quality.load_suite_dict(suite)["expectations"][index]
    assert quality.validate(sample_frames[suite], suite, PARAMETERS).success
    outcome = quality.validate(corrupt(sample_frames[suite], expectation), suite, PARAMETERS)
    assert outcome.success is False
    assert [(f.type, f.column, f.kwargs.get("mostly")) for f in outcome.failed] == [
        (expectation["type"], expectation["kwargs"].get("column"), expectation["kwargs"].get("mostly"))
    ]


# --- the checks --------------------------------------------------------------------------------


def test_every_check_passes_on_the_sample_warehouse(sample_run, sample_frames):
    _, result = sample_run
    as_of = result.dagster_run.tags["dagster/partition"]
    evaluations = check_evaluations(result)
    assert {name for name in evaluations if name.endswith("_suite")} == set(check_names())
    for suite in SUITES:
        evaluation = evaluations[suite.replace(".", "_") + "_suite"]
        assert evaluation.passed, evaluation.description
        assert evaluation.metadata["rows_validated"].value == len(sample_frames[suite]) > 0
        assert evaluation.metadata["rows_chosen"].value == (
            "whole table" if suite.startswith("raw.") else f"the run's slice: as_of_date {as_of}"
        )


def test_raw_sample_is_the_lowest_key_hashes_every_time(sample_run):
    warehouse, _ = sample_run
    first, total, chosen = read_table(warehouse, "raw", "transactions", sample_rows=1000)
    again, _, _ = read_table(warehouse, "raw", "transactions", sample_rows=1000)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        expected = [row[0] for row in con.execute(
            "select transaction_id from raw.transactions order by hash(transaction_id), transaction_id limit 1000"
        ).fetchall()]
        table_rows = con.execute("select count(*) from raw.transactions").fetchone()[0]
    assert total == table_rows > 1000
    assert list(first["transaction_id"]) == list(again["transaction_id"]) == expected
    assert chosen == "deterministic sample: the 1000 rows with the lowest hash(transaction_id)"
    assert first["source_file"].nunique() > 1  # spread over the deliveries, not the first file


def test_read_table_of_some_columns_reads_the_same_rows(sample_run):
    warehouse, _ = sample_run
    whole, total, chosen = read_table(warehouse, "raw", "transactions", sample_rows=1000)
    some, total_again, chosen_again = read_table(warehouse, "raw", "transactions", sample_rows=1000, columns=["amount", "nope"])
    assert list(some.columns) == ["amount"]
    assert (total, chosen) == (total_again, chosen_again)
    assert some["amount"].tolist() == whole["amount"].tolist()


def test_check_fails_on_a_bad_raw_row_and_names_the_expectation(sample_run, tmp_path):
    warehouse = tmp_path / "bad.duckdb"
    shutil.copy(sample_run[0], warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "insert into raw.transactions select * replace ('TBAD' as transaction_id, 50000000 as amount)"
            " from raw.transactions limit 1"
        )
    [check] = [c for c in default_graph().checks if {s.name for s in c.check_specs} == {"raw_transactions_suite"}]
    result = check(dg.build_asset_check_context(resources={"settings": LoyaltySettings(warehouse=str(warehouse))}))
    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.description.startswith("expect_column_values_to_be_between(amount) observed 1 unexpected value (")
    [failed] = result.metadata["failed_expectations"].value
    assert (failed["type"], failed["column"], failed["unexpected_values"]) == (
        "expect_column_values_to_be_between", "amount", [5e7]
    )
    [row] = result.metadata["sample_rows"].value
    # Whole rows (the failed pass re-reads the rows whole), not only the columns the suite reads.
    assert (row["transaction_id"], row["amount"]) == ("TBAD", 5e7) and "customer_id" in row
    assert result.metadata["suite"].value == "expectations/raw.transactions.json"
    # The check's read-only connection is closed: a writer can open the file again.
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("select count(*) from raw.transactions where amount > 1e6").fetchone() == (1,)


def test_failed_raw_suite_stops_the_dbt_models(tmp_path):
    raw = tmp_path / "raw"
    write_csv(
        raw / "transactions" / "2024.csv",
        TRANSACTION_HEADER,
        [("t1", "A", "2024-03-01", "100", "p1", "web"), ("t2", "B", "2024-04-01", "50000000", "p1", "web"),
         ("t3", "C", "2024-05-01", "30", "p2", "store")],
    )
    instance = dg.DagsterInstance.ephemeral()
    settings = LoyaltySettings(as_of_date="2024-12-31", raw_dir=str(raw), warehouse=str(tmp_path / "w.duckdb"))
    result = materialize(settings, instance)
    assert result.success is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw/transactions"}
    started = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert "loyalty_dbt_models" not in started
    skipped = [r.user_message for r in instance.all_logs(result.run_id) if r.step_key == "loyalty_dbt_models" and not r.dagster_event]
    assert any("raw__transactions_raw_transactions_suite" in m and "Not executing" in m for m in skipped), skipped
    evaluation = check_evaluations(result)["raw_transactions_suite"]
    assert (evaluation.passed, evaluation.blocking) == (False, True)
    assert first_failure(result) == (
        "check raw_transactions_suite on raw/transactions failed: "
        "expect_column_values_to_be_between(amount) observed 1 unexpected value (33.3%)"
    )


def test_first_failure_still_reports_ordinary_step_failures(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    result = materialize(LoyaltySettings(as_of_date="2024-12-31", raw_dir=str(tmp_path), warehouse=str(blocker / "w.duckdb")))
    assert result.success is False
    message = first_failure(result)
    assert message.startswith("raw__transactions: ") and "not_a_folder" in message
    assert not any(step in message for step in CHECK_STEPS)


def test_great_expectations_loads_where_main_has_no_file():
    """With pyspark installed, GX's import of pyspark.sql.connect ended a `python -c` process (or a
    pytest-xdist worker) at its first check with exit code 0 (quality.keep_pyspark_from_exiting)."""
    import subprocess
    import sys

    code = (
        "import pandas as pd; from dagster_project import quality;"
        " suite = {'name': 'tiny', 'expectations': [{'type': 'expect_column_values_to_not_be_null', 'kwargs': {'column': 'a'}}]};"
        " print('validated with GX' if quality.validate(pd.DataFrame({'a': [1, 2]}), suite).success else 'failed')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "validated with GX", done.stderr[-2000:]

"""A small Great Expectations 1.x adapter: validate a pandas DataFrame against a suite stored as
``expectations/<suite>.json`` and return a plain result (dagster-ge only supports GX < 1.0).

The GX route is the one that works here (see STACK.md): ephemeral context → pandas data source →
dataframe asset → whole-dataframe batch definition → ``ValidationDefinition.run(batch_parameters=
{"dataframe": df})``. The context costs a few seconds to import and set up, so it is built once per
process and every suite's validation definition is kept; GX is imported lazily so that loading the
Dagster definitions does not pay for it.

Suites are GX 1.x ``ExpectationSuite`` JSON (``name``, ``expectations: [{type, kwargs, meta}]``).
A bound that is a setting of the run (``business_start_date``, the run's day) is never written in
the JSON: it is GX's own placeholder ``{"$PARAMETER": "business_start_date"}``, filled at
validation time from the effective configuration (:func:`suite_parameters`). Dates in bounds are
``YYYY-MM-DDT00:00:00``: DuckDB DATE columns arrive in pandas as datetime64, which GX cannot
compare with a plain date.

Speed (measured on a 200 000-row raw sample): GX's pandas ``column_values.between`` is vectorised
only for int64/float64 and datetime64[ns] columns; DuckDB hands over dates as datetime64[us] and
INTEGER as int32/Int32, which GX compares one Python value at a time (~5 µs a row: 1.1 s for the
transactions sample). So ``validate`` gives GX only the columns the suite names (GX also hashes the
whole frame it is given for its batch id) with those columns widened losslessly to the vectorised
dtypes (see ``_gx_frame``); failures are still reported with whole rows of the frame passed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import functools
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .config import PROJECT_ROOT, LoyaltyConfig
from .raw_contract import SCORE_MAX, SCORE_MIN

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SAMPLE_SIZE = 5  # unexpected values and rows reported per failed expectation

_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class FailedExpectation:
    type: str
    column: str | None
    kwargs: dict[str, Any]  # the expectation's arguments, JSON-safe (GX's batch_id left out)
    observed: str  # "12 unexpected values (0.02%)", an aggregate's value ("0"), or "error: ..."
    unexpected_values: list[Any]  # up to SAMPLE_SIZE
    unexpected_rows: list[dict[str, Any]]  # up to SAMPLE_SIZE whole rows of the frame

    def summary(self) -> str:
        target = f"{self.type}({self.column})" if self.column else self.type
        return f"{target} observed {self.observed}"


@dataclasses.dataclass(frozen=True)
class ValidationOutcome:
    suite: str
    success: bool
    rows: int
    evaluated: int
    failed: tuple[FailedExpectation, ...]

    def summary(self) -> str:
        """One line: the first failed expectation (and how many more), or what passed."""
        if self.success:
            return f"all {self.evaluated} expectations of {self.suite} passed on {self.rows} rows"
        more = f" (+{len(self.failed) - 1} more failed)" if len(self.failed) > 1 else ""
        return self.failed[0].summary() + more


# --- suites -------------------------------------------------------------------------------------


def suite_path(suite: str) -> Path:
    return EXPECTATIONS_DIR / f"{suite}.json"


def suite_names(directory: Path | None = None) -> list[str]:
    """Every declared suite, named after its asset key with `.` between the parts."""
    return sorted(path.stem for path in (directory or EXPECTATIONS_DIR).glob("*.json"))


def load_suite_dict(source: str | Path) -> dict[str, Any]:
    """The suite's JSON (``source`` is a suite name or a file path); its name must match the file."""
    path = Path(source) if isinstance(source, Path) or str(source).endswith(".json") else suite_path(str(source))
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise ValueError(f"{path}: not a GX suite (expected an object with an `expectations` list)")
    if data.get("name") != path.stem:
        raise ValueError(f"{path}: suite name {data.get('name')!r} must equal the file name {path.stem!r}")
    return data


def load_suite(source: str | Path):
    """The suite as a GX ``ExpectationSuite`` (raises on an unknown expectation type or bad kwargs)."""
    return load_suite_from_dict(load_suite_dict(source))


PARAMETER = "$PARAMETER"


def suite_parameters(config: LoyaltyConfig, today: dt.date) -> dict[str, Any]:
    """Values for the ``{"$PARAMETER": name}`` placeholders of the suites: the rules a suite shares
    with ingest (raw_contract, config), so a suite never repeats a setting."""
    return {
        "business_start_date": f"{dt.date.fromisoformat(config.business_start_date).isoformat()}T00:00:00",
        # Ingest quarantines rows dated after the day of the run.
        "run_date": f"{today.isoformat()}T00:00:00",
        "nps_score_min": SCORE_MIN,
        "nps_score_max": SCORE_MAX,
    }


def suite_parameter_names(data: Mapping[str, Any]) -> set[str]:
    """Every placeholder name the suite uses."""
    names: set[str] = set()
    for expectation in data["expectations"]:
        for value in (expectation.get("kwargs") or {}).values():
            if isinstance(value, Mapping) and PARAMETER in value:
                names.add(value[PARAMETER])
    return names


# Kwargs that name the columns an expectation reads.
COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
# Table-level expectations that look at no column (so a frame of fewer columns gives the same answer).
ROW_ONLY_TYPES = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})


def suite_columns(data: Mapping[str, Any]) -> list[str] | None:
    """The columns the suite's expectations read, in first-use order; None if some expectation
    may look at other columns (table-wide types such as ``expect_table_columns_to_match_set``, a
    ``row_condition``), so the suite needs the whole frame."""
    columns: list[str] = []
    for expectation in data["expectations"]:
        kwargs = expectation.get("kwargs") or {}
        named = [kwargs[key] for key in COLUMN_KWARGS if key in kwargs]
        if kwargs.get("row_condition") or (not named and expectation.get("type") not in ROW_ONLY_TYPES):
            return None
        for value in named:
            for column in value if isinstance(value, list) else [value]:
                if isinstance(column, str) and column not in columns:
                    columns.append(column)
    return columns


def keep_pyspark_from_exiting() -> None:
    """Great Expectations imports pyspark.sql.connect when pyspark is installed (the spark extra).
    That module takes a __main__ without __spec__ and __file__ (``python -c``, a pytest-xdist
    worker, some embedding schedulers) for a doctest run and calls sys.exit(0) when its optional
    gRPC packages are absent: the run would end at its first check with exit code 0. Giving such a
    __main__ a __file__ is the one thing that check looks at; nothing else reads it."""
    import __main__
    import sys

    if getattr(__main__, "__spec__", None) is None and not hasattr(__main__, "__file__") and not hasattr(sys, "ps1"):
        __main__.__file__ = sys.argv[0] or "<loyalty>"


def load_suite_from_dict(data: Mapping[str, Any]):
    keep_pyspark_from_exiting()
    from great_expectations.core.expectation_suite import ExpectationSuite

    return ExpectationSuite(
        name=data["name"], expectations=list(data["expectations"]), meta=data.get("meta"), notes=data.get("notes")
    )


# --- GX context (one per process) ---------------------------------------------------------------


def prepare_in_background() -> threading.Thread:
    """Builds the GX context (importing Great Expectations, ~1.5–2.5 s of Python) on a thread, so a
    run's first check does not wait for it: the import proceeds while the run's own thread is in
    DuckDB (ingest), which releases the GIL. A check that comes first simply waits for the import
    (the functools.cache below and Python's import lock), so the result is the same either way."""
    def prepare() -> None:
        with _lock:  # a check's validate() takes the same lock: it waits for this, then reuses it
            _gx()

    thread = threading.Thread(target=prepare, name="gx-import", daemon=True)
    thread.start()
    return thread


@dataclasses.dataclass
class _Gx:
    context: Any
    batch_definition: Any
    validations: dict[str, tuple[str, Any]]  # suite name → (suite JSON, ValidationDefinition)


@functools.cache
def _gx() -> _Gx:
    keep_pyspark_from_exiting()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    # No "Calculating Metrics" tqdm bar on stderr.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("loyalty_quality").add_dataframe_asset("frame")
    return _Gx(context, asset.add_batch_definition_whole_dataframe("whole_frame"), {})


def _validation_definition(suite_data: Mapping[str, Any]):
    state = _gx()  # first: it imports Great Expectations safely (keep_pyspark_from_exiting)
    import great_expectations as gx

    name = suite_data["name"]
    text = json.dumps(suite_data, sort_keys=True, default=str)
    cached = state.validations.get(name)
    if cached and cached[0] == text:
        return cached[1]
    if cached:  # the suite file changed since: replace it
        state.context.validation_definitions.delete(name)
        state.context.suites.delete(name)
    suite = state.context.suites.add(load_suite_from_dict(suite_data))
    definition = state.context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=state.batch_definition, suite=suite)
    )
    state.validations[name] = (text, definition)
    return definition


# --- validation ---------------------------------------------------------------------------------

_NS_RANGE = (pd.Timestamp.min, pd.Timestamp.max)
_NULLABLE_INTEGERS = (
    pd.Int8Dtype, pd.Int16Dtype, pd.Int32Dtype, pd.Int64Dtype, pd.UInt8Dtype, pd.UInt16Dtype, pd.UInt32Dtype, pd.UInt64Dtype
)
_EXACT_IN_FLOAT64 = 2**53


def _gx_frame(df: pd.DataFrame, columns: list[str] | None) -> tuple[pd.DataFrame, set[str]]:
    """(what GX validates, the columns widened in it). The suite's columns of the frame (all of them
    if ``columns`` is None; a named column missing from the frame stays missing, so GX reports it),
    same index and rows, each widened to a dtype GX compares vectorised when that is exact, else
    left as it is (GX then takes its slow per-value path, with the same answer). Only widened
    columns are copied (pandas copy-on-write: the selection itself copies nothing)."""
    if not df.columns.is_unique:
        return df, set()
    frame = df if columns is None else df[[c for c in df.columns if c in set(columns)]]
    widened = {c: w for c in frame.columns if isinstance(c, str) and (w := _widened(frame[c])) is not None}
    return (frame.assign(**widened) if widened else frame), set(widened)


def _widened(series: pd.Series) -> pd.Series | None:
    """The column as int64, float64 or datetime64[ns] when that is lossless and it is not already
    one of GX's vectorised dtypes; else None."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "M" and dtype != np.dtype("datetime64[ns]"):
            low, high = series.min(), series.max()
            if low is pd.NaT or (_NS_RANGE[0] <= low and high <= _NS_RANGE[1]):
                return series.astype("datetime64[ns]")
            return None  # a date beyond 1677–2262: GX's per-value path still compares it
        if dtype.kind in "iu" and dtype.itemsize < 8:
            return series.astype("int64")
        if dtype.kind == "f" and dtype.itemsize < 8:
            return series.astype("float64")
        return None
    # pandas nullable integers (DuckDB INTEGER with NULLs → Int32): float64 with NaN for NA, which
    # GX filters out as null just like NA. Exact up to 2**53.
    if isinstance(dtype, _NULLABLE_INTEGERS):
        if dtype.itemsize >= 8:
            values = series.dropna()
            if len(values) and (values.min() < -_EXACT_IN_FLOAT64 or values.max() > _EXACT_IN_FLOAT64):
                return None
        return series.astype("float64")
    return None


def validate(
    df: pd.DataFrame, suite: str | Path | Mapping[str, Any], parameters: Mapping[str, Any] | None = None
) -> ValidationOutcome:
    """Runs the suite (a name, a file, or the suite's dict) on the whole frame, its placeholders
    filled from ``parameters`` (see :func:`suite_parameters`)."""
    suite_data = dict(suite) if isinstance(suite, Mapping) else load_suite_dict(suite)
    missing = sorted(suite_parameter_names(suite_data) - set(parameters or {}))
    if missing:
        raise ValueError(f"suite {suite_data['name']} needs the parameters {missing}; known: {sorted(parameters or {})}")
    frame, widened = _gx_frame(df, suite_columns(suite_data))
    with _lock:
        definition = _validation_definition(suite_data)
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=dict(parameters or {}),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
        )
    # GX returns results in its own order: report failures in the suite's order.
    position = {expectation.id: i for i, expectation in enumerate(definition.suite.expectations)}
    failures = [item for item in result.results if not item.success]
    failures.sort(key=lambda item: position.get(item.expectation_config.id, len(position)))
    failed = [_failed(df, item, widened) for item in failures]
    return ValidationOutcome(
        suite=suite_data["name"],
        success=bool(result.success),
        rows=len(df),
        evaluated=len(result.results),
        failed=tuple(failed),
    )


def _failed(df: pd.DataFrame, item, widened: set[str] = frozenset()) -> FailedExpectation:
    config = item.expectation_config
    kwargs = {key: _plain(value) for key, value in config.kwargs.items() if key != "batch_id"}
    result = item.result or {}
    observed: str
    error = _exception_message(item.exception_info)
    values: list[Any] = []
    rows: list[dict[str, Any]] = []
    if error:
        observed = f"error: {error}"
    elif "unexpected_count" in result:
        count = result["unexpected_count"]
        percent = result.get("unexpected_percent")
        observed = f"{count} unexpected value{'' if count == 1 else 's'}" + (f" ({percent:.3g}%)" if percent is not None else "")
        values = [_plain(v) for v in (result.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]]
        index = result.get("partial_unexpected_index_list") or []
        rows = _rows(df, index)
        column = kwargs.get("column")
        if column in widened and len(rows) == len(values):
            values = [row[column] for row in rows]  # as the caller's frame has them (11, not 11.0)
    else:
        observed = json.dumps(_plain(result.get("observed_value")), default=str)
    return FailedExpectation(
        type=config.type,
        column=kwargs.get("column"),
        kwargs=kwargs,
        observed=observed,
        unexpected_values=values,
        unexpected_rows=rows,
    )


def _exception_message(info: Any) -> str | None:
    """GX nests exception info per metric; the first raised message, or None."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception").strip().splitlines()[0]
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception").strip().splitlines()[0]
    return None


def _rows(df: pd.DataFrame, index: list[Any]) -> list[dict[str, Any]]:
    labels = [label for label in index[:SAMPLE_SIZE] if not isinstance(label, Mapping)]
    try:
        picked = df.loc[labels]
    except (KeyError, TypeError):
        return []
    return [{str(k): _plain(v) for k, v in row.items()} for row in picked.to_dict("records")]


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a value from GX or pandas (dates as ISO text, NaN/NaT as None)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, np.datetime64):
        return _plain(pd.Timestamp(value))
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if value is pd.NaT:
        return None
    if isinstance(value, dt.datetime):
        midnight = (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)
        return value.date().isoformat() if midnight and value.tzinfo is None else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_plain(v) for v in value]
    return str(value)

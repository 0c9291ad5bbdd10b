"""The nightly predictive step: fit, predict, calibrate, write the marts (see marts.py).

Per as-of date of the run:

1. **Fit** the purchase model (``clv_model``, MBG/NBD by default) on the 'current' snapshot of
   ``intermediate.int_customer_rfm`` (history up to the as-of date, days), aggregated: customers
   with the same (frequency, recency, age) are one weighted row; Gamma-Gamma on the repeat buyers'
   (frequency, mean spend). A fit that does not converge or whose parameters fall outside sane
   bounds keeps the last good parameters of an earlier as-of date (``fit_status`` =
   'kept_last_good', ``fitted_at`` of the fit they come from, ``message`` says why); with fewer
   repeat buyers than ``clv_min_repeat_customers`` the fit is skipped with a message. The asset
   check ``clv_fit_is_fresh`` (warning severity) reports both.
2. **Predict** per customer (latest as-of date only, like the other customer-level marts):
   p_alive, churn_risk, expected purchases in the next period, expected spend per purchase and
   predicted_clv = Σ over the months of the horizon of expected purchases × expected spend ×
   the customer's margin rate, discounted at ``discount_rate`` a year.
3. **Calibrate**: the same fit on the 'calibration' snapshot (history up to as_of −
   period_months) predicts the last period, compared with what the customers bought in it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import functools
import logging
import os
from typing import Callable, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import LoyaltyConfig
from ..warehouse import connect
from . import marts, model

RFM_TABLE = "intermediate.int_customer_rfm"
CURRENT, CALIBRATION = "current", "calibration"
NO_SEGMENT = "none"  # calibration rows of customers without a purchase in the calibration's last period
DAYS_PER_YEAR = 365.25

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Parameters:
    """The parameters a prediction uses: fitted tonight or kept from an earlier night."""

    fit: model.Fit
    fitted_at: dt.datetime
    status: str  # 'fitted' | 'kept_last_good'
    message: str | None = None


@dataclasses.dataclass
class DateOutcome:
    as_of_date: dt.date
    fits: dict[str, dict[str, Parameters]] = dataclasses.field(default_factory=dict)  # snapshot -> model -> parameters
    problems: list[str] = dataclasses.field(default_factory=list)  # fits refused, kept or skipped
    predictions: int = 0
    calibration_rows: int = 0
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def run(
    config: LoyaltyConfig,
    dates: Sequence[dt.date],
    log: Log = logging.getLogger(__name__).info,
    warn: Log | None = None,
) -> list[DateOutcome]:
    """Fits, predicts and calibrates for every date; writes the marts. Predictions only for the
    latest date, and only if the predictions mart holds no newer date (a backfill of older dates
    must not roll the customer-level mart back). Progress goes to ``log``, every fit refused,
    kept or skipped to ``warn`` (default: ``log``)."""
    outcomes = []
    with connect(config.warehouse_path, config=config) as con:
        for table in marts.MART_TABLES:
            marts.ensure_table(con, table)
        newest = con.execute(f"select max(as_of_date) from {marts.CUSTOMER_CLV_PREDICTIONS.qualified}").fetchone()[0]
        for date in sorted(dates):
            started = dt.datetime.now()
            outcome = DateOutcome(date)
            predict_customers = date == max(dates) and (newest is None or date >= newest)
            _run_date(con, config, date, outcome, predict_customers, log, warn or log)
            outcome.seconds = (dt.datetime.now() - started).total_seconds()
            outcomes.append(outcome)
    return outcomes


def _run_date(
    con, config: LoyaltyConfig, date: dt.date, outcome: DateOutcome, predict_customers: bool, log: Log, warn: Log
) -> None:
    fitted_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    parameter_rows: list[dict] = []
    inputs: dict[str, FitInputs] = {}
    for snapshot in (CURRENT, CALIBRATION):
        history_end = _history_end(con, date, snapshot)
        if history_end is None:
            outcome.problems.append(f"{date} {snapshot}: no customers with a purchase in the history: no fit")
            continue
        inputs[snapshot] = _fit_inputs(con, config, date, snapshot, history_end, log)
    fits = _fit_all(config, inputs)
    for snapshot, snapshot_inputs in inputs.items():
        chosen = _choose(con, date, snapshot, fitted_at, snapshot_inputs.sample_note, fits[snapshot], outcome)
        outcome.fits[snapshot] = chosen
        for parameters in chosen.values():
            parameter_rows.extend(_parameter_rows(date, snapshot, snapshot_inputs.history_end, parameters))
    con.execute("begin transaction")
    try:
        _replace_slice(con, marts.CLV_MODEL_PARAMETERS, date, parameter_rows)
        calibration = outcome.fits.get(CALIBRATION, {})
        rows = _calibration_rows(con, config, date, calibration) if len(calibration) == 2 else []
        outcome.calibration_rows = len(rows)
        _replace_slice(con, marts.CLV_CALIBRATION, date, rows)
        current = outcome.fits.get(CURRENT, {})
        if predict_customers and len(current) == 2:
            outcome.predictions = _write_predictions(con, config, date, current)
        elif predict_customers:
            outcome.problems.append(
                f"{date}: no usable parameters for the current history: marts.customer_clv_predictions keeps its previous date"
            )
            _drop_erased_customers(con)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    for problem in outcome.problems:
        warn(f"predictive CLV: {problem}")


def _drop_erased_customers(con) -> None:
    """Predictions kept from an earlier night must not outlive an erasure that came since."""
    erasures = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = 'erasures'"
    ).fetchone()[0]
    if erasures:
        con.execute(
            f"delete from {marts.CUSTOMER_CLV_PREDICTIONS.qualified} where customer_id in (select customer_id from raw.erasures)"
        )


def _history_end(con, date: dt.date, snapshot: str) -> dt.date | None:
    return con.execute(
        f"select max(history_end_date) from {RFM_TABLE} where as_of_date = ? and snapshot = ?", [date, snapshot]
    ).fetchone()[0]


# ----------------------------------------------------------------------------------------------
# Fitting, with the fallback to the last good parameters
# ----------------------------------------------------------------------------------------------


def _fit_sample(con, config, date, snapshot) -> tuple[str, str | None]:
    """The filter of the customers a fit uses: all of them, or (above clv_fit_max_customers) a
    deterministic sample, the customers with the lowest hash(customer_id) (the same customers
    every night while they exist); with a note saying so."""
    customers = con.execute(
        f"select count(*) from {RFM_TABLE} where as_of_date = ? and snapshot = ?", [date, snapshot]
    ).fetchone()[0]
    if customers <= config.clv_fit_max_customers:
        return "true", None
    threshold = (2**64 - 1) * config.clv_fit_max_customers // customers
    return f"hash(customer_id) <= {threshold}", f"fitted on a deterministic sample of about {config.clv_fit_max_customers} of {customers} customers"


@dataclasses.dataclass(frozen=True)
class FitInputs:
    """One snapshot's fit data, read from the warehouse; ``skipped`` holds the fits not run (too
    few repeat buyers), else None."""

    history_end: dt.date
    purchases: dict[str, np.ndarray]  # frequency, recency_days, t_days, customers (aggregated)
    spend: dict[str, np.ndarray]  # frequency, monetary_value, customers (repeat buyers)
    sample_note: str | None
    skipped: dict[str, model.Fit] | None


def _fit_inputs(con, config, date, snapshot, history_end, log: Log) -> FitInputs:
    sample, sample_note = _fit_sample(con, config, date, snapshot)
    purchases = con.execute(
        f"select frequency, recency_days, t_days, count(*) as customers from {RFM_TABLE}"
        f" where as_of_date = ? and snapshot = ? and {sample} group by frequency, recency_days, t_days"
        # Ordered: the likelihood is a float sum, and the same data must give the same fit.
        " order by frequency, recency_days, t_days",
        [date, snapshot],
    ).fetchnumpy()
    spend = con.execute(
        f"select frequency, monetary_value, count(*) as customers from {RFM_TABLE}"
        f" where as_of_date = ? and snapshot = ? and frequency > 0 and monetary_value > 0 and {sample}"
        " group by frequency, monetary_value order by frequency, monetary_value",
        [date, snapshot],
    ).fetchnumpy()
    repeat_customers = int(spend["customers"].sum()) if len(spend["customers"]) else 0
    skipped = None
    if repeat_customers < config.clv_min_repeat_customers:
        reason = (
            f"{repeat_customers} repeat buyers, fewer than clv_min_repeat_customers = "
            f"{config.clv_min_repeat_customers}: fit skipped"
        )
        skipped = {
            config.clv_model: model.Fit(config.clv_model, {}, int(purchases["customers"].sum()), None, False, reason),
            model.GAMMA_GAMMA: model.Fit(model.GAMMA_GAMMA, {}, repeat_customers, None, False, reason),
        }
    else:
        log(
            f"predictive CLV: fitting {config.clv_model} on {int(purchases['customers'].sum())} customers "
            f"({len(purchases['customers'])} distinct histories) and gamma_gamma on {repeat_customers} repeat buyers, "
            f"{snapshot} history as of {date}"
        )
    return FitInputs(history_end, purchases, spend, sample_note, skipped)


def _fit_all(config, inputs: dict[str, FitInputs]) -> dict[str, dict[str, model.Fit]]:
    """Every fit of the date (snapshot -> model -> fit). The fits are independent, so they run
    side by side in threads (numpy and scipy release the GIL in their array loops: at 10M, four
    fits 2.4 s one by one, 1.65 s on two cores); the same fits as one by one."""
    jobs: dict[tuple[str, str], Callable[[], model.Fit]] = {}
    for snapshot, data in inputs.items():
        if data.skipped is not None:
            continue
        purchases, spend = data.purchases, data.spend
        jobs[snapshot, config.clv_model] = functools.partial(
            model.fit_purchases,
            config.clv_model, purchases["frequency"], purchases["recency_days"], purchases["t_days"], purchases["customers"],
        )
        jobs[snapshot, model.GAMMA_GAMMA] = functools.partial(
            model.fit_spend, spend["frequency"], spend["monetary_value"], spend["customers"]
        )
    workers = min(len(jobs), os.cpu_count() or 1) if model.FITS_MAY_RUN_IN_THREADS else 1
    if workers > 1:
        with model.fits_side_by_side(), concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="clv-fit") as pool:
            results = dict(zip(jobs, pool.map(lambda job: job(), jobs.values())))
    else:
        results = {key: job() for key, job in jobs.items()}
    fits: dict[str, dict[str, model.Fit]] = {}
    for snapshot, data in inputs.items():
        fits[snapshot] = data.skipped or {name: results[snapshot, name] for name in (config.clv_model, model.GAMMA_GAMMA)}
    return fits


def _choose(con, date, snapshot, fitted_at, sample_note, fits: dict[str, model.Fit], outcome: DateOutcome) -> dict[str, Parameters]:
    """The parameters each model uses: tonight's fit, or the last good ones where it cannot be used."""
    chosen: dict[str, Parameters] = {}
    for name, fit in fits.items():
        if fit.usable:
            notes = [note for note in (sample_note, fit.note) if note]
            chosen[name] = Parameters(fit, fitted_at, "fitted", "; ".join(notes) or None)
            continue
        kept = _last_good(con, date, snapshot, name)
        if kept is None:
            outcome.problems.append(f"{date} {snapshot} {name}: {fit.problem}; no earlier good parameters: no predictions")
            continue
        message = f"{fit.problem}; kept the parameters fitted at {kept.fitted_at:%Y-%m-%d %H:%M:%S}"
        outcome.problems.append(f"{date} {snapshot} {name}: {message}")
        chosen[name] = Parameters(
            dataclasses.replace(kept.fit, converged=fit.converged), kept.fitted_at, "kept_last_good", message
        )
    return chosen


def _last_good(con, date: dt.date, snapshot: str, name: str) -> Parameters | None:
    """The newest parameters of an earlier as-of date (never a later one: no peeking ahead)."""
    rows = con.execute(
        f"""
        select parameter, value, customers_fitted, log_likelihood, fitted_at
        from {marts.CLV_MODEL_PARAMETERS.qualified}
        where fit = ? and model = ? and as_of_date < ?
          and as_of_date = (
              select max(as_of_date) from {marts.CLV_MODEL_PARAMETERS.qualified}
              where fit = ? and model = ? and as_of_date < ?)
        """,
        [snapshot, name, date, snapshot, name, date],
    ).fetchall()
    if not rows:
        return None
    parameters = {parameter: value for parameter, value, *_ in rows}
    _, _, customers, log_likelihood, fitted_at = rows[0]
    return Parameters(model.Fit(name, parameters, int(customers), float(log_likelihood), True), fitted_at, "fitted")


def _parameter_rows(date, snapshot, history_end, parameters: Parameters) -> list[dict]:
    fit = parameters.fit
    time_unit = "none" if fit.model == model.GAMMA_GAMMA else "day"
    return [
        {
            "as_of_date": date, "fit": snapshot, "history_end_date": history_end, "model": fit.model,
            "parameter": name, "value": float(value), "time_unit": time_unit,
            "customers_fitted": fit.customers_fitted, "log_likelihood": fit.log_likelihood,
            "converged": fit.converged, "fit_status": parameters.status, "message": parameters.message,
            "fitted_at": parameters.fitted_at,
        }
        for name, value in fit.parameters.items()
    ]


# ----------------------------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------------------------


def _customers(con, date: dt.date, snapshot: str) -> tuple[pa.Table, pd.DataFrame]:
    """The snapshot's customers in one read (so both parts are in the same row order): ids and
    segments as Arrow (written back as they are), the numbers as a frame."""
    table = con.sql(
        f"select customer_id, value_segment, frequency, recency_days, t_days, monetary_value, margin_rate,"
        f" holdout_purchase_days, cast(holdout_revenue as double) as holdout_revenue"
        f" from {RFM_TABLE} where as_of_date = ? and snapshot = ?"
        # Ordered: the calibration's sums are float sums, and the same data must give the same
        # figures whatever the table's physical row order (an incremental night's differs from a
        # fresh build's).
        f" order by customer_id",
        params=[date, snapshot],
    ).to_arrow_table()
    # The integer columns are never null (dbt's grain); null spend or margin rate becomes NaN.
    numbers = {name: table.column(name).to_numpy() for name in table.column_names[2:]}
    return table.select(["customer_id", "value_segment"]), pd.DataFrame(numbers)


def _by_history(purchase_model: str, parameters, frame: pd.DataFrame, compute: Callable) -> dict[str, np.ndarray]:
    """Evaluates ``compute`` once per distinct (frequency, recency, age) and spreads the result
    back to the customers: far fewer evaluations where histories repeat (one-time buyers)."""
    # One int64 key per history (each part < 2^21: two million days, two million purchase days);
    # np.unique on it is a plain sort, ~5× faster than on rows of three columns.
    x, t_x, T = (frame[name].to_numpy(dtype=np.int64) for name in ("frequency", "recency_days", "t_days"))
    keys, inverse = np.unique((x << 42) | (t_x << 21) | T, return_inverse=True)
    mask = (1 << 21) - 1
    unique = [((keys >> shift) & mask).astype(float) for shift in (42, 21, 0)]
    values = compute(purchase_model, parameters, *unique)
    return {name: array[inverse.reshape(-1)] for name, array in values.items()}


def predict(
    purchase_model: str,
    purchase_parameters,
    spend_parameters,
    frame: pd.DataFrame,
    horizon_days: float,
    clv_horizon_years: float | None,
    discount_rate: float,
    default_margin_rate: float = 1.0,
) -> pd.DataFrame:
    """Per customer: p_alive, expected purchases in the next ``horizon_days``, expected spend per
    purchase, and the discounted expected margin over ``clv_horizon_years``."""

    def per_history(name, parameters, x, t_x, T):
        values = {
            "p_alive": model.p_alive(name, parameters, x, t_x, T),
            "expected_purchases": model.expected_purchases(name, parameters, horizon_days, x, t_x, T),
        }
        values["discounted_purchases"] = (
            model.discounted_expected_purchases(name, parameters, x, t_x, T, clv_horizon_years, discount_rate)
            if clv_horizon_years else np.zeros_like(x)  # the calibration needs no CLV
        )
        return values

    values = _by_history(purchase_model, purchase_parameters, frame, per_history)
    spend = model.expected_spend(spend_parameters, frame["frequency"].to_numpy(float), frame["monetary_value"].to_numpy(float))
    # A customer's own margin rate; the margin_rate setting if it has none (no revenue to divide by).
    margin_rate = np.clip(np.nan_to_num(frame["margin_rate"].to_numpy(float), nan=default_margin_rate), -1.0, 1.0)
    p_alive = np.clip(values["p_alive"], 0.0, 1.0)
    result = pd.DataFrame({
        "p_alive": p_alive,
        "churn_risk": 1.0 - p_alive,
        "expected_purchases": np.maximum(values["expected_purchases"], 0.0),
        "expected_spend_per_purchase": np.maximum(spend, 0.0),
        "margin_rate": margin_rate,
        "predicted_clv": np.maximum(values["discounted_purchases"], 0.0) * np.maximum(spend, 0.0) * margin_rate,
    })
    bad = ~np.isfinite(result.to_numpy(float)).all(axis=1)
    if bad.any():
        raise FloatingPointError(f"{int(bad.sum())} customers got a non-finite prediction (first: row {int(np.argmax(bad))})")
    return result


def deciles(values: np.ndarray) -> np.ndarray:
    """1 + floor(10 · customers with a strictly higher value ÷ customers): 1 = the most valuable
    tenth; equal values share a decile (the rule of value_decile)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    higher = (n - np.cumsum(counts))[inverse.reshape(-1)]  # customers above each distinct value
    return (1 + (10 * higher) // n).astype(np.int32)


def _next_period_days(config: LoyaltyConfig, date: dt.date) -> float:
    end = pd.Timestamp(date) + pd.DateOffset(months=config.period_months)
    return float((end - pd.Timestamp(date)).days)


def _write_predictions(con, config: LoyaltyConfig, date: dt.date, parameters: dict[str, Parameters]) -> int:
    purchase, spend = parameters[config.clv_model], parameters[model.GAMMA_GAMMA]
    ids, frame = _customers(con, date, CURRENT)
    predicted = predict(
        config.clv_model, purchase.fit.parameters, spend.fit.parameters, frame,
        _next_period_days(config, date), config.clv_horizon_years, config.discount_rate, config.margin_rate,
    )
    table = pa.table({
        "as_of_date": pa.array([date] * len(frame), pa.date32()),
        "customer_id": ids.column("customer_id"),
        "value_segment": ids.column("value_segment"),
        "frequency": pa.array(frame["frequency"].to_numpy(np.int32)),
        "recency_days": pa.array(frame["recency_days"].to_numpy(np.int32)),
        "t_days": pa.array(frame["t_days"].to_numpy(np.int32)),
        "p_alive": pa.array(predicted["p_alive"].to_numpy()),
        "churn_risk": pa.array(predicted["churn_risk"].to_numpy()),
        "expected_purchases_next_period": pa.array(predicted["expected_purchases"].to_numpy()),
        "expected_spend_per_purchase": pa.array(predicted["expected_spend_per_purchase"].to_numpy()),
        "margin_rate": pa.array(predicted["margin_rate"].to_numpy()),
        "predicted_clv": pa.array(predicted["predicted_clv"].to_numpy()),
        "predicted_value_decile": pa.array(deciles(predicted["predicted_clv"].to_numpy())),
        "model": pa.array([config.clv_model] * len(frame), pa.string()),
        "fitted_at": pa.array([purchase.fitted_at] * len(frame), pa.timestamp("us")),
    })
    # The customer-level mart holds one date, the latest: rebuilt, not deleted from (deleting
    # 500 000 rows and inserting the same keys in one transaction took DuckDB 30 s on the primary
    # key index; dropping and creating the table 1.7 s).
    con.execute(f"drop table {marts.CUSTOMER_CLV_PREDICTIONS.qualified}")
    marts.ensure_table(con, marts.CUSTOMER_CLV_PREDICTIONS)
    _insert(con, marts.CUSTOMER_CLV_PREDICTIONS, table)
    return len(frame)


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------


def _calibration_rows(con, config: LoyaltyConfig, date: dt.date, parameters: dict[str, Parameters]) -> list[dict]:
    """Predicts period 0 from the history before it and compares per value segment (of the
    calibration's last period, 'none' without a purchase in it, and 'total') and per decile of
    predicted purchases (1 = the customers predicted to buy most)."""
    purchase, spend = parameters[config.clv_model], parameters[model.GAMMA_GAMMA]
    ids, frame = _customers(con, date, CALIBRATION)
    if frame.empty:
        return []
    history_end = _history_end(con, date, CALIBRATION)
    holdout_days = float((date - history_end).days)
    predicted = predict(
        config.clv_model, purchase.fit.parameters, spend.fit.parameters, frame, holdout_days, None, config.discount_rate,
        config.margin_rate,
    )
    frame = frame.assign(
        predicted_purchases=predicted["expected_purchases"].to_numpy(),
        predicted_revenue=(predicted["expected_purchases"] * predicted["expected_spend_per_purchase"]).to_numpy(),
        predicted_alive=predicted["p_alive"].to_numpy() >= config.clv_alive_threshold,
        segment=np.asarray(ids.column("value_segment").fill_null(NO_SEGMENT).to_pylist(), dtype=object),
        decile=deciles(predicted["expected_purchases"].to_numpy()).astype(str),
    )
    rows = []
    groups = [("value_segment", frame["segment"]), ("value_segment", pd.Series("total", index=frame.index)),
              ("predicted_purchases_decile", frame["decile"])]
    for grouping, keys in groups:
        for value, part in frame.groupby(keys.to_numpy(), sort=True):
            rows.append(_compare(date, history_end, config.clv_model, grouping, str(value), part))
    return rows


def _compare(date, history_end, model_name, grouping, value, part: pd.DataFrame) -> dict:
    actual_purchases = part["holdout_purchase_days"].to_numpy(float)
    actual_revenue = part["holdout_revenue"].to_numpy(float)
    alive = part["predicted_alive"].to_numpy()

    def bias(predicted: float, actual: float) -> float | None:
        return (predicted - actual) / actual if actual > 0 else None

    predicted_purchases = float(part["predicted_purchases"].sum())
    predicted_revenue = float(part["predicted_revenue"].sum())
    return {
        "as_of_date": date, "history_end_date": history_end, "model": model_name,
        "grouping": grouping, "group_value": value, "customers": len(part),
        "predicted_purchases": predicted_purchases,
        "actual_purchases": int(actual_purchases.sum()),
        "purchases_bias": bias(predicted_purchases, float(actual_purchases.sum())),
        "purchases_mae": float(np.abs(part["predicted_purchases"].to_numpy() - actual_purchases).mean()),
        "predicted_revenue": predicted_revenue,
        "actual_revenue": float(actual_revenue.sum()),
        "revenue_bias": bias(predicted_revenue, float(actual_revenue.sum())),
        "revenue_mae": float(np.abs(part["predicted_revenue"].to_numpy() - actual_revenue).mean()),
        "predicted_alive_customers": int(alive.sum()),
        "predicted_alive_purchased_share": float((actual_purchases[alive] > 0).mean()) if alive.any() else None,
    }


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _replace_slice(con, table: marts.MartTable, date: dt.date, rows: list[dict]) -> None:
    """A run for date D replaces exactly D's slice (like the incremental dbt marts)."""
    con.execute(f"delete from {table.qualified} where as_of_date = ?", [date])
    if rows:
        _insert(con, table, pa.Table.from_pylist([{name: row[name] for name in table.column_names} for row in rows]))


def _insert(con: duckdb.DuckDBPyConnection, table: marts.MartTable, data: pa.Table) -> None:
    con.register("predictive_rows", data)
    try:
        columns = ", ".join(table.column_names)
        con.execute(f"insert into {table.qualified} ({columns}) select {columns} from predictive_rows")
    finally:
        con.unregister("predictive_rows")

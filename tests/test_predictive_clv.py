"""Predictive CLV: the model against published figures and lifetimes, the nightly fit's fallbacks,
the marts' contract, and the calibration on the sample generator (whose purchase process is known)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
import io
import sys
import threading
import warnings

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter

from dagster_project.config import LoyaltyConfig
from dagster_project.ingest import ingest_source
from dagster_project.predictive_clv import fit, marts, model
from dagster_project.predictive_clv.assets import FRESH_FIT_CHECK, PARAMETERS_KEY
from dagster_project.raw_contract import PRODUCTS
from dagster_project.resources import LoyaltySettings
from dagster_project.runner import run_pipeline
from dagster_project.sample_data import SAMPLE_AS_OF, generate_sample

from .support import query, write_csv

# numpy's assert_array_almost_equal(decimal=2), as lifetimes' own tests of these figures: |Δ| < 1.5e-2.
TWO_DECIMALS = 1.5e-2


def _dataset(name: str) -> pd.DataFrame:
    # Not lifetimes.datasets: it imports pkg_resources, which current setuptools no longer ships.
    return pd.read_csv(io.StringIO((importlib.resources.files("lifetimes") / "datasets" / name).read_text()))


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    frame = _dataset("cdnow_customers_summary.csv")
    assert len(frame) == 2357
    return frame


def _aggregated(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby(["frequency", "recency", "T"]).size().reset_index(name="customers")


# ----------------------------------------------------------------------------------------------
# Golden figures (CDNOW, weeks) and the closed forms against lifetimes
# ----------------------------------------------------------------------------------------------


def test_bg_nbd_reproduces_the_published_cdnow_parameters_on_weighted_rows(cdnow):
    rows = _aggregated(cdnow)
    assert len(rows) == 1016  # 2 357 customers, 1 016 distinct histories
    result = model.fit_purchases(model.BG_NBD, rows["frequency"], rows["recency"], rows["T"], rows["customers"])
    assert result.usable and result.customers_fitted == 2357
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee (2005)
    for name, value in published.items():
        assert abs(result.parameters[name] - value) < TWO_DECIMALS, (name, result.parameters[name])
    assert result.log_likelihood == pytest.approx(-9582.4, abs=0.05)  # the paper's LL, in weeks


def test_weighted_rows_fit_the_same_parameters_as_one_row_per_customer(cdnow):
    rows = _aggregated(cdnow)
    weighted = model.fit_purchases(model.MBG_NBD, rows["frequency"], rows["recency"], rows["T"], rows["customers"])
    single = model.fit_purchases(model.MBG_NBD, cdnow["frequency"], cdnow["recency"], cdnow["T"], np.ones(len(cdnow)))
    for name in model.PURCHASE_PARAMETERS:
        assert weighted.parameters[name] == pytest.approx(single.parameters[name], rel=1e-4), name
    assert weighted.log_likelihood == pytest.approx(single.log_likelihood, rel=1e-9)
    # MBG/NBD on CDNOW (lifetimes' own regression figures) fits as well as BG/NBD (-9582.4).
    for name, value in {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}.items():
        assert abs(weighted.parameters[name] - value) < TWO_DECIMALS, name
    assert weighted.log_likelihood == pytest.approx(-9582.13, abs=0.05)


def test_gamma_gamma_reproduces_the_published_cdnow_parameters():
    frame = _dataset("cdnow_customers_summary_with_transactions.csv")
    repeat = frame[frame["x"] > 0]
    assert len(repeat) == 946
    rows = repeat.groupby(["x", "zbar"]).size().reset_index(name="customers")
    result = model.fit_spend(rows["x"], rows["zbar"], rows["customers"])
    assert result.usable and result.customers_fitted == 946
    for name, value in {"p": 6.25, "q": 3.74, "v": 15.44}.items():  # Fader, Hardie & Lee (2005b)
        assert abs(result.parameters[name] - value) < TWO_DECIMALS, (name, result.parameters[name])
    # Expected spend: a weighted mean of own mean spend and the population mean v·p/(q − 1).
    p, q, v = (result.parameters[name] for name in model.SPEND_PARAMETERS)
    population = v * p / (q - 1)
    assert model.expected_spend(result.parameters, [0.0], [np.nan])[0] == pytest.approx(population)
    spend = model.expected_spend(result.parameters, [2.0], [50.0])[0]
    assert spend == pytest.approx((q - 1) / (2 * p + q - 1) * population + 2 * p / (2 * p + q - 1) * 50.0)


@pytest.mark.parametrize("name, fitter", [(model.BG_NBD, BetaGeoFitter), (model.MBG_NBD, ModifiedBetaGeoFitter)])
def test_closed_forms_equal_lifetimes_predictions(cdnow, name, fitter):
    fitted = fitter().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    parameters = {key: float(fitted.params_[key]) for key in model.PURCHASE_PARAMETERS}
    x, t_x, T = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ours = model.expected_purchases(name, parameters, 39.0, x, t_x, T)
    theirs = fitted.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, T)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        model.p_alive(name, parameters, x, t_x, T), fitted.conditional_probability_alive(x, t_x, T), rtol=1e-12
    )
    # The population holdout prediction of the paper (39 weeks each way): 1 653 (BG/NBD) vs 1 577 (MBG/NBD).
    assert ours.sum() == pytest.approx({model.BG_NBD: 1653.42, model.MBG_NBD: 1576.74}[name], abs=0.01)


def test_predictions_stay_finite_for_extreme_histories():
    parameters = {"r": 0.5248, "alpha": 6.183, "a": 0.8914, "b": 1.614}
    x = np.array([0.0, 0.0, 1.0, 2000.0, 2000.0, 5.0])
    t_x = np.array([0.0, 0.0, 0.5, 1500.0, 100.0, 0.0])
    T = np.array([0.0, 5000.0, 0.5, 1500.0, 1500.0, 1e6])
    for values in (
        model.p_alive(model.MBG_NBD, parameters, x, t_x, T),
        model.expected_purchases(model.MBG_NBD, parameters, 365.0, x, t_x, T),
        model.discounted_expected_purchases(model.MBG_NBD, parameters, x, t_x, T, 3.0, 0.1, days_per_unit=7.0),
    ):
        assert np.isfinite(values).all() and (values >= 0).all(), values
    # Still buying after 2000 repeat purchases: a little below the posterior rate (r + x) ÷ (α + T)
    # for 365 units, as each purchase may be the last; lifetimes gives the same 439.097.
    expected = model.expected_purchases(model.MBG_NBD, parameters, 365.0, x, t_x, T)[3]
    assert expected == pytest.approx(439.0973, abs=1e-3) and expected < (0.5248 + 2000) / (6.183 + 1500) * 365


def test_one_time_buyers_get_a_churn_risk_from_mbg_nbd_not_from_bg_nbd(cdnow):
    """Why MBG/NBD: BG/NBD calls every one-time buyer certainly alive; MBG/NBD lets them drop out
    after the first purchase, so the longer ago it was, the higher their churn risk."""
    rows = _aggregated(cdnow)
    ages = np.array([1.0, 10.0, 30.0, 60.0])
    zeros = np.zeros_like(ages)
    bg = model.fit_purchases(model.BG_NBD, rows["frequency"], rows["recency"], rows["T"], rows["customers"])
    mbg = model.fit_purchases(model.MBG_NBD, rows["frequency"], rows["recency"], rows["T"], rows["customers"])
    assert (model.p_alive(model.BG_NBD, bg.parameters, zeros, zeros, ages) == 1.0).all()
    alive = model.p_alive(model.MBG_NBD, mbg.parameters, zeros, zeros, ages)
    assert (alive < 1).all() and (np.diff(alive) < 0).all(), alive
    # 1 ÷ (1 + a/b · ((α + T) / α)^r): 0.626 a week after the first purchase, 0.343 after 60 weeks.
    assert alive[0] == pytest.approx(0.626, abs=1e-3) and alive[-1] == pytest.approx(0.343, abs=1e-3)


def test_discounted_purchases_add_up_to_the_horizon_without_discounting():
    parameters = {"r": 1.02, "alpha": 58.9, "a": 0.47, "b": 11.8}
    x, t_x, T = np.array([0.0, 3.0, 12.0]), np.array([0.0, 400.0, 700.0]), np.array([300.0, 500.0, 720.0])
    horizon = model.expected_purchases(model.MBG_NBD, parameters, 3 * 365.25, x, t_x, T)
    undiscounted = model.discounted_expected_purchases(model.MBG_NBD, parameters, x, t_x, T, 3.0, 0.0)
    np.testing.assert_allclose(undiscounted, horizon, rtol=1e-12)
    discounted = model.discounted_expected_purchases(model.MBG_NBD, parameters, x, t_x, T, 3.0, 0.10)
    assert (discounted < horizon).all() and (discounted > horizon / 1.1**3).all()


def test_discounted_purchases_of_customers_together_equal_each_customer_alone():
    # Evaluated once per distinct (frequency, age): customers sharing it, with different recencies,
    # get exactly what each gets on its own, in the input's order and shape.
    parameters = {"r": 1.02, "alpha": 58.9, "a": 0.47, "b": 11.8}
    x = np.array([[3.0, 0.0, 3.0], [12.0, 3.0, 0.0]])
    t_x = np.array([[400.0, 0.0, 120.0], [700.0, 400.0, 0.0]])
    T = np.array([[500.0, 300.0, 500.0], [720.0, 500.0, 300.0]])
    for name in model.PURCHASE_MODELS:
        together = model.discounted_expected_purchases(name, parameters, x, t_x, T, 3.0, 0.10)
        alone = np.vectorize(lambda *h: float(model.discounted_expected_purchases(name, parameters, *h, 3.0, 0.10)))(x, t_x, T)
        assert together.shape == x.shape and np.array_equal(together, alone), name
        assert together[0, 0] != together[0, 2]  # same (x, T), another recency: another p_alive


def test_a_fit_is_retried_at_looser_tolerances_before_it_counts_as_not_converged(cdnow):
    from lifetimes.utils import ConvergenceError

    rows = _aggregated(cdnow)
    tried = []

    def precision_loss_at_first(tol):
        tried.append(tol)
        if tol < 1e-6:
            raise ConvergenceError("The model did not converge.")
        return ModifiedBetaGeoFitter().fit(rows["frequency"], rows["recency"], rows["T"], weights=rows["customers"], tol=tol)

    fitter, note, error = model._fit_with_retries(precision_loss_at_first)
    assert tried == [1e-7, 1e-6] and error is None
    assert note == "converged at tol 1e-06 after tol 1e-07: ConvergenceError: The model did not converge."
    assert abs(float(fitter.params_["r"]) - 0.525) < TWO_DECIMALS

    def never(tol):
        raise ConvergenceError("The model did not converge.")

    assert model._fit_with_retries(never)[0] is None
    # A real non-convergence: lifetimes' BFGS on an empty history raises, and the Fit says so.
    failed = model.fit_purchases(model.MBG_NBD, [0.0], [0.0], [0.0], [1.0])
    assert not failed.usable and failed.problem.startswith("mbg_nbd fit failed:")


def test_predicted_clv_is_discounted_purchases_times_spend_times_margin():
    purchase = {"r": 1.02, "alpha": 58.9, "a": 0.47, "b": 11.8}
    spend = {"p": 2.45, "q": 4.44, "v": 967.0}
    frame = pd.DataFrame({
        "frequency": [0, 5, 5], "recency_days": [0, 400, 400], "t_days": [200, 500, 500],
        "monetary_value": [np.nan, 800.0, 800.0], "margin_rate": [0.4, 0.25, np.nan],
    })
    result = fit.predict(model.MBG_NBD, purchase, spend, frame, 365.0, 3.0, 0.10, default_margin_rate=0.3)
    x, t_x, T = (frame[c].to_numpy(float) for c in ("frequency", "recency_days", "t_days"))
    purchases = model.discounted_expected_purchases(model.MBG_NBD, purchase, x, t_x, T, 3.0, 0.10)
    amount = model.expected_spend(spend, x, frame["monetary_value"].to_numpy())
    np.testing.assert_allclose(result["predicted_clv"], purchases * amount * np.array([0.4, 0.25, 0.3]), rtol=1e-12)
    np.testing.assert_allclose(result["churn_risk"], 1 - result["p_alive"], rtol=1e-12)
    # A one-time buyer gets the population's mean spend v·p/(q − 1) = 967 · 2.45 / 3.44.
    assert result["expected_spend_per_purchase"][0] == pytest.approx(967.0 * 2.45 / 3.44)
    assert 0 < result["p_alive"][0] < 1 and result["expected_purchases"][1] > result["expected_purchases"][0]


def test_deciles_rank_the_most_valuable_first_and_ties_share():
    values = np.array([100.0, 50.0, 50.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert fit.deciles(values).tolist() == [1, 2, 2, 4, 5, 5, 5, 5, 5, 5]
    assert fit.deciles(np.arange(20.0))[::-1].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10]


# ----------------------------------------------------------------------------------------------
# The nightly fit on an RFM table: fallbacks, skips, the contract
# ----------------------------------------------------------------------------------------------

D1, D2 = dt.date(2024, 6, 30), dt.date(2024, 7, 1)


def _rfm_warehouse(path, cdnow: pd.DataFrame, dates=(D1, D2)) -> None:
    """intermediate.int_customer_rfm as dbt builds it, from CDNOW histories (weeks × 7 = days)."""
    frame = cdnow.assign(
        frequency=cdnow["frequency"].astype(int),
        recency_days=(cdnow["recency"] * 7).round().astype(int),
        t_days=(cdnow["T"] * 7).round().astype(int),
    )
    frame["recency_days"] = np.minimum(frame["recency_days"], frame["t_days"])
    rng = np.random.default_rng(7)
    frame["monetary_value"] = np.where(frame["frequency"] > 0, rng.gamma(6.0, 6.0, len(frame)), np.nan)
    with duckdb.connect(str(path)) as con:
        con.execute("create schema intermediate")
        con.execute(
            "create table intermediate.int_customer_rfm (as_of_date date, snapshot varchar, history_end_date date,"
            " customer_id varchar, frequency integer, recency_days integer, t_days integer, monetary_value double,"
            " margin_rate double, value_segment varchar, holdout_purchase_days integer, holdout_revenue decimal(18, 2))"
        )
        for date in dates:
            for snapshot, end in (("current", date), ("calibration", date - dt.timedelta(days=273))):
                rows = frame.assign(
                    as_of_date=date, snapshot=snapshot, history_end_date=end, customer_id="C" + frame["ID"].astype(str),
                    margin_rate=0.4, value_segment="middle", holdout_purchase_days=frame["frequency"] // 2,
                    holdout_revenue=frame["frequency"] // 2 * 30.0,
                )
                con.register("rows", rows)
                con.execute(
                    "insert into intermediate.int_customer_rfm select as_of_date, snapshot, history_end_date, customer_id,"
                    " frequency, recency_days, t_days, monetary_value, margin_rate, value_segment, holdout_purchase_days,"
                    " holdout_revenue from rows"
                )
                con.unregister("rows")


@pytest.fixture
def rfm_config(tmp_path, cdnow) -> LoyaltyConfig:
    _rfm_warehouse(tmp_path / "warehouse.duckdb", cdnow)
    return LoyaltyConfig(warehouse=str(tmp_path / "warehouse.duckdb"))


def _parameters(config: LoyaltyConfig, date: dt.date) -> dict[tuple[str, str, str], tuple]:
    rows = query(
        config.warehouse_path,
        "select fit, model, parameter, value, converged, fit_status, message, fitted_at"
        " from marts.clv_model_parameters where as_of_date = ?",
        [date],
    )
    return {(f, m, p): (value, converged, status, message, fitted_at) for f, m, p, value, converged, status, message, fitted_at in rows}


def test_a_fit_that_does_not_converge_keeps_the_last_good_parameters(rfm_config, monkeypatch):
    first = fit.run(rfm_config, [D1], log=lambda _: None)
    assert first[0].problems == [] and first[0].predictions == 2357
    good = _parameters(rfm_config, D1)
    assert {status for *_, status, _, _ in good.values()} == {"fitted"} and len(good) == 14

    def not_converging(name, *args):
        return model.Fit(name, {}, 2357, None, False, f"{name} fit failed: ConvergenceError: The model did not converge.")

    monkeypatch.setattr(model, "fit_purchases", not_converging)
    second = fit.run(rfm_config, [D2], log=lambda _: None)
    kept = _parameters(rfm_config, D2)
    for key in [k for k in kept if k[1] == model.MBG_NBD]:
        value, converged, status, message, fitted_at = kept[key]
        assert (value, status, converged) == (good[key][0], "kept_last_good", False), key
        assert fitted_at == good[key][4]  # fitted_at says where the parameters come from
        assert "did not converge" in message and "kept the parameters fitted at" in message
    assert {kept[k][2] for k in kept if k[1] == model.GAMMA_GAMMA} == {"fitted"}
    assert second[0].predictions == 2357 and any("did not converge" in p for p in second[0].problems)
    p_alive = query(rfm_config.warehouse_path, "select min(p_alive), max(p_alive), count(*) from marts.customer_clv_predictions where as_of_date = ?", [D2])
    assert p_alive[0][2] == 2357 and 0 < p_alive[0][0] < p_alive[0][1] < 1


def test_parameters_out_of_bounds_are_refused(rfm_config, monkeypatch):
    fit.run(rfm_config, [D1], log=lambda _: None)
    real_fit_spend = model.fit_spend

    def q_below_one(*args):
        result = real_fit_spend(*args)
        parameters = {**result.parameters, "q": 0.8}
        return dataclasses.replace(result, parameters=parameters, problem=model._spend_problem(parameters, result.log_likelihood))

    monkeypatch.setattr(model, "fit_spend", q_below_one)
    outcome = fit.run(rfm_config, [D2], log=lambda _: None)[0]
    kept = _parameters(rfm_config, D2)
    assert kept[("current", model.GAMMA_GAMMA, "q")][2] == "kept_last_good"
    assert kept[("current", model.GAMMA_GAMMA, "q")][1] is True  # it converged, but to q <= 1
    assert "q = 0.8 <= 1: no finite mean spend" in kept[("current", model.GAMMA_GAMMA, "q")][3]
    assert any("q = 0.8" in problem for problem in outcome.problems)


def test_autograd_numbers_each_thread_s_traces_on_its_own_stack():
    # lifetimes' gradients and hessians run on autograd, whose one global trace counter would let
    # two fits in two threads interleave their trace numbers (model._PerThreadTraceStack).
    import autograd.tracer

    assert model.FITS_MAY_RUN_IN_THREADS
    seen_by_other_thread = []
    with autograd.tracer.trace_stack.new_trace() as outer:
        # Opened while this thread holds a trace: the other thread's numbers start afresh.
        other = threading.Thread(target=lambda: seen_by_other_thread.append(_trace_numbers()))
        other.start()
        other.join()
        assert _trace_numbers() == (outer + 1, outer + 2)
    assert seen_by_other_thread == [(0, 1)]


def _trace_numbers() -> tuple[int, int]:
    import autograd.tracer

    with autograd.tracer.trace_stack.new_trace() as first, autograd.tracer.trace_stack.new_trace() as nested:
        return first, nested


def test_the_fits_side_by_side_in_threads_equal_the_fits_one_by_one(rfm_config, monkeypatch):
    stdout, filters = sys.stdout, list(warnings.filters)
    threaded = fit.run(rfm_config, [D1], log=lambda _: None)[0]
    # Both belong to the process: fits that swapped them in each thread left them swapped.
    assert sys.stdout is stdout and warnings.filters == filters
    threads_parameters = _parameters(rfm_config, D1)
    monkeypatch.setattr(model, "FITS_MAY_RUN_IN_THREADS", False)
    one_by_one = fit.run(rfm_config, [D1], log=lambda _: None)[0]
    assert threaded.problems == one_by_one.problems == []
    for snapshot in (fit.CURRENT, fit.CALIBRATION):
        for name in (model.MBG_NBD, model.GAMMA_GAMMA):
            assert threaded.fits[snapshot][name].fit == one_by_one.fits[snapshot][name].fit, (snapshot, name)
    # Without fitted_at (each run's own clock), the parameter rows are the same.
    strip = lambda rows: {key: row[:4] for key, row in rows.items()}  # noqa: E731
    assert len(threads_parameters) == 14 and strip(threads_parameters) == strip(_parameters(rfm_config, D1))


def test_too_few_repeat_buyers_skip_the_fit_with_a_message(rfm_config):
    config = dataclasses.replace(rfm_config, clv_min_repeat_customers=10**6)
    messages: list[str] = []
    outcome = fit.run(config, [D1], log=messages.append)[0]
    assert outcome.predictions == 0 and outcome.fits == {"current": {}, "calibration": {}}
    assert any("946 repeat buyers, fewer than clv_min_repeat_customers = 1000000: fit skipped" in m for m in messages)
    assert query(config.warehouse_path, "select count(*) from marts.clv_model_parameters")[0][0] == 0
    assert query(config.warehouse_path, "select count(*) from marts.customer_clv_predictions")[0][0] == 0


def test_a_backfill_writes_every_date_s_slices_and_never_rolls_the_predictions_back(rfm_config):
    outcomes = fit.run(rfm_config, [D2, D1], log=lambda _: None)  # a range, in any order
    assert [(o.as_of_date, o.predictions) for o in outcomes] == [(D1, 0), (D2, 2357)]
    count = "select as_of_date, count(*) from marts.{} group by 1 order by 1"
    assert query(rfm_config.warehouse_path, count.format("clv_model_parameters")) == [(D1, 14), (D2, 14)]
    assert query(rfm_config.warehouse_path, count.format("clv_calibration")) == [(D1, 12), (D2, 12)]
    # A later backfill of the older date alone rebuilds its slices, not the newer predictions.
    assert fit.run(rfm_config, [D1], log=lambda _: None)[0].predictions == 0
    assert query(rfm_config.warehouse_path, count.format("customer_clv_predictions")) == [(D2, 2357)]
    assert query(rfm_config.warehouse_path, count.format("clv_model_parameters")) == [(D1, 14), (D2, 14)]


def test_kept_predictions_lose_a_customer_erased_since(rfm_config):
    # D1 on BG/NBD; D2 switched to MBG/NBD with a fit that is skipped: no MBG/NBD parameters to
    # keep, so the predictions mart keeps D1's rows.
    fit.run(dataclasses.replace(rfm_config, clv_model=model.BG_NBD), [D1], log=lambda _: None)
    with duckdb.connect(str(rfm_config.warehouse_path)) as con:
        con.execute("create schema raw")
        con.execute("create table raw.erasures (customer_id varchar)")
        con.execute("insert into raw.erasures values ('C1'), ('C2')")
    skipped = dataclasses.replace(rfm_config, clv_min_repeat_customers=10**6)
    assert fit.run(skipped, [D2], log=lambda _: None)[0].predictions == 0  # no fresh predictions
    # D1's kept predictions stay, without the erased customers.
    [(rows, erased, date)] = query(
        rfm_config.warehouse_path,
        "select count(*), count(*) filter (where customer_id in ('C1', 'C2')), max(as_of_date) from marts.customer_clv_predictions",
    )
    assert (rows, erased, date) == (2355, 0, D1)


def test_the_marts_refuse_nan_and_infinity_and_a_drifted_table_fails(rfm_config):
    fit.run(rfm_config, [D1], log=lambda _: None)
    with duckdb.connect(str(rfm_config.warehouse_path)) as con:
        with pytest.raises(duckdb.ConstraintException):
            con.execute("update marts.customer_clv_predictions set predicted_clv = 'nan'::double where customer_id = 'C1'")
        with pytest.raises(duckdb.ConstraintException):
            con.execute("update marts.clv_calibration set predicted_purchases = 'inf'::double")
        con.execute("alter table marts.clv_calibration add column extra integer")
        with pytest.raises(marts.ContractError, match="does not match its contract"):
            marts.ensure_table(con, marts.CLV_CALIBRATION)


def test_products_landing_folder_quarantines_bad_margin_rates(tmp_path):
    raw = tmp_path / "raw"
    write_csv(raw / "products" / "products.csv", ["product_id", "margin_rate"],
              [("P1", "0.35"), ("P2", "-0.1"), ("P3", "1.5"), ("P4", "35%"), ("", "0.2"), ("P1", "0.40")])
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        [outcome] = ingest_source(con, PRODUCTS, raw)
        loaded = con.execute("select product_id, cast(margin_rate as double) from raw.products order by 1").fetchall()
        quarantined = dict(con.execute("select line_number, reason from raw.quarantine_products").fetchall())
    assert loaded == [("P2", -0.1)]
    assert quarantined == {
        2: "conflicting values for a repeated product_id", 7: "conflicting values for a repeated product_id",
        4: "margin_rate is not a number from -1 to 1", 5: "margin_rate is not a number from -1 to 1",
        6: "missing product_id",
    }
    assert (outcome.rows_read, outcome.rows_loaded, outcome.rows_quarantined) == (6, 1, 5)


# ----------------------------------------------------------------------------------------------
# The whole pipeline on the sample generator: calibration, predictions, the warning check
# ----------------------------------------------------------------------------------------------

SAMPLE_CUSTOMERS = 20_000
# Predicted vs actual purchases of the last period, per value segment of the calibration history:
# within ±20 % in each of super, top, middle and bottom, ±5 % over all customers. (Measured at
# 20 000 customers: −4 %, −2 %, +5 %, +14 %, total −1 %.) Customers with no purchase in the year
# before (segment 'none') are not held to it: the generator lets lost customers come back after a
# year or more, which no "buy till you die" model predicts (measured −59 %; see README).
SEGMENT_TOLERANCE, TOTAL_TOLERANCE = 0.20, 0.05


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    raw = tmp_path_factory.mktemp("clv_sample_raw")
    generate_sample(raw, customers=SAMPLE_CUSTOMERS)
    folder = tmp_path_factory.mktemp("clv_sample_wh")
    settings = LoyaltySettings(
        as_of_date=SAMPLE_AS_OF.isoformat(), raw_dir=str(raw), warehouse=str(folder / "warehouse.duckdb"),
        overrides_json=f'{{"export_dir": "{folder / "exports"}", "publish_dir": "{folder / "published"}"}}',
    )
    outcome = run_pipeline(settings, log_level="WARNING")
    assert outcome.success, outcome.failure
    return settings, outcome


def _check_evaluation(outcome, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [
        event.asset_check_evaluation_data
        for event in outcome.result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and event.asset_check_evaluation_data.check_name == name
    ]
    return evaluation


def test_calibration_on_the_sample_predicts_each_value_segment_within_tolerance(sample_run):
    settings, _ = sample_run
    rows = query(
        settings.warehouse_path,
        "select group_value, customers, predicted_purchases, actual_purchases, purchases_bias"
        " from marts.clv_calibration where grouping = 'value_segment' and as_of_date = ?",
        [SAMPLE_AS_OF],
    )
    table = {segment: (customers, predicted, actual, bias) for segment, customers, predicted, actual, bias in rows}
    assert set(table) == {"super", "top", "middle", "bottom", "none", "total"}
    for segment in ("super", "top", "middle", "bottom"):
        customers, predicted, actual, bias = table[segment]
        assert actual > 300 and bias == pytest.approx(predicted / actual - 1)
        assert abs(bias) <= SEGMENT_TOLERANCE, (segment, predicted, actual)
    assert abs(table["total"][3]) <= TOTAL_TOLERANCE, table["total"]
    assert table["total"][0] == sum(table[s][0] for s in ("super", "top", "middle", "bottom", "none"))
    deciles = query(
        settings.warehouse_path,
        "select cast(group_value as integer), predicted_purchases, predicted_alive_purchased_share"
        " from marts.clv_calibration where grouping = 'predicted_purchases_decile' order by 1",
    )
    assert [d for d, *_ in deciles] == list(range(1, 11))
    # The ranking works: the top decile is predicted (and buys) most; predicted-alive customers
    # of the top decile nearly all bought again.
    assert deciles[0][1] > deciles[4][1] > deciles[9][1] and deciles[0][2] > 0.9


def test_every_customer_gets_a_prediction_and_one_time_buyers_a_real_churn_risk(sample_run):
    settings, outcome = sample_run
    [(customers,)] = query(settings.warehouse_path, "select count(*) from marts.customer_segment_flags")
    [(predicted, distinct, dates, bad)] = query(
        settings.warehouse_path,
        "select count(*), count(distinct customer_id), count(distinct as_of_date),"
        " count(*) filter (where not (isfinite(predicted_clv) and isfinite(p_alive))) from marts.customer_clv_predictions",
    )
    assert predicted == distinct == customers and dates == 1 and bad == 0
    one_time = query(
        settings.warehouse_path,
        "select t_days > 365 as long_ago, avg(churn_risk), min(churn_risk), count(*)"
        " from marts.customer_clv_predictions where frequency = 0 group by all order by 1",
    )
    (_, recent_risk, recent_min, recent_n), (_, old_risk, _, old_n) = one_time
    assert recent_n > 100 and old_n > 100 and recent_min > 0
    assert old_risk > recent_risk + 0.1  # a first purchase long ago without a second: likely gone
    [(top_decile_clv, bottom_decile_clv)] = query(
        settings.warehouse_path,
        "select avg(predicted_clv) filter (where predicted_value_decile = 1),"
        " avg(predicted_clv) filter (where predicted_value_decile = 10) from marts.customer_clv_predictions",
    )
    assert top_decile_clv > 10 * bottom_decile_clv
    evaluation = _check_evaluation(outcome, FRESH_FIT_CHECK)
    assert evaluation.passed and evaluation.asset_key == PARAMETERS_KEY
    [(rows, statuses)] = query(
        settings.warehouse_path,
        "select count(*), list(distinct fit_status) from marts.clv_model_parameters where as_of_date = ?", [SAMPLE_AS_OF]
    )
    assert rows == 14 and statuses == ["fitted"]
    published = duckdb.connect(str(settings.loyalty_config().publish_path / "warehouse.duckdb"), read_only=True)
    try:
        assert published.execute("select count(*) from marts.customer_clv_predictions").fetchone()[0] == customers
    finally:
        published.close()


def test_a_night_with_too_few_repeat_buyers_keeps_the_last_good_fit_and_warns(sample_run):
    settings, _ = sample_run
    next_night = LoyaltySettings(
        as_of_date=(SAMPLE_AS_OF + dt.timedelta(days=1)).isoformat(), raw_dir=settings.raw_dir, warehouse=settings.warehouse,
        overrides_json=settings.overrides_json[:-1] + ', "clv_min_repeat_customers": 100000000}',
    )
    outcome = run_pipeline(next_night, log_level="WARNING")
    assert outcome.success, outcome.failure  # a warning, not a failed night
    evaluation = _check_evaluation(outcome, FRESH_FIT_CHECK)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "fewer than clv_min_repeat_customers = 100000000: fit skipped; kept the parameters fitted at" in evaluation.description
    rows = query(
        settings.warehouse_path,
        "select a.parameter, a.value = b.value, a.fitted_at = b.fitted_at, a.fit_status from marts.clv_model_parameters a"
        " join marts.clv_model_parameters b using (fit, model, parameter)"
        " where a.as_of_date = ? and b.as_of_date = ?",
        [SAMPLE_AS_OF + dt.timedelta(days=1), SAMPLE_AS_OF],
    )
    assert len(rows) == 14 and all(same and when and status == "kept_last_good" for _, same, when, status in rows)
    [(date,)] = query(settings.warehouse_path, "select distinct as_of_date from marts.customer_clv_predictions")
    assert date == SAMPLE_AS_OF + dt.timedelta(days=1)


# ----------------------------------------------------------------------------------------------
# The segment-flag export carries the predictions
# ----------------------------------------------------------------------------------------------


def test_the_export_carries_the_predictions_rounded_and_bumps_its_schema_version(sample_run):
    import json

    import pyarrow.parquet as pq

    from dagster_project.export import SEGMENT_FLAGS
    from dagster_project.export.segment_flags import PREDICTION_COLUMNS, SCHEMA_VERSION

    file_names = SEGMENT_FLAGS.file_names

    settings, _ = sample_run
    folder = settings.loyalty_config().export_path
    # The mart holds the newest night (a later test may have run the next one): its export.
    [(newest,)] = query(settings.warehouse_path, "select distinct as_of_date from marts.customer_clv_predictions")
    names = file_names(newest)
    manifest = json.loads((folder / names["manifest"]).read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == 3
    header = (folder / names["csv"]).read_text().splitlines()[0].split(",")
    assert header[-4:] == list(PREDICTION_COLUMNS) == ["p_alive", "churn_risk", "expected_purchases_next_period", "predicted_clv"]
    exported = pq.read_table(io.BytesIO((folder / names["parquet"]).read_bytes())).to_pandas().set_index("customer_id")
    assert {str(exported[name].iloc[0].as_tuple().exponent) for name in PREDICTION_COLUMNS} == {"-2"}  # decimal(18,2)
    exported[list(PREDICTION_COLUMNS)] = exported[list(PREDICTION_COLUMNS)].astype(float)
    mart = pd.DataFrame(
        query(settings.warehouse_path, "select customer_id, p_alive, churn_risk, expected_purchases_next_period, predicted_clv"
              " from marts.customer_clv_predictions"),
        columns=["customer_id", *PREDICTION_COLUMNS],
    ).set_index("customer_id")
    # No consent files in the sample: every customer is exported, each with a prediction.
    assert len(exported) == len(mart) and set(exported.index) == set(mart.index)
    assert exported[list(PREDICTION_COLUMNS)].notna().all().all()
    joined = exported[list(PREDICTION_COLUMNS)].join(mart, rsuffix="_mart")
    for name in PREDICTION_COLUMNS:
        np.testing.assert_allclose(joined[name], joined[f"{name}_mart"], atol=0.005 + 1e-9)  # rounded to the cent
    # In the CSV as in the Parquet file: two decimals.
    first = (folder / names["csv"]).read_text().splitlines()[1].split(",")
    customer = first[0]
    assert first[-4:] == [f"{exported.loc[customer, name]:.2f}" for name in PREDICTION_COLUMNS]


def test_the_delta_counts_a_prediction_as_changed_only_when_it_crosses_a_band():
    from .test_export import _delta

    def table(rows):
        return rows

    base = {"value_segment": "top", "lifecycle_stage": "active", "is_vip": True}
    before = table([
        {**base, "customer_id": "drift", "p_alive": 0.31, "churn_risk": 0.69, "expected_purchases_next_period": 2.10, "predicted_clv": 100.0},
        {**base, "customer_id": "cross", "p_alive": 0.38, "churn_risk": 0.62, "expected_purchases_next_period": 2.90, "predicted_clv": 100.0},
        {**base, "customer_id": "clv", "p_alive": 0.50, "churn_risk": 0.50, "expected_purchases_next_period": 1.00, "predicted_clv": 100.0},
        {**base, "customer_id": "tenth", "p_alive": 0.29, "churn_risk": 0.71, "expected_purchases_next_period": 0.0, "predicted_clv": 0.4},
        {**base, "customer_id": "new_fit", "p_alive": None, "churn_risk": None, "expected_purchases_next_period": None, "predicted_clv": None},
    ])
    after = table([
        {**base, "customer_id": "drift", "p_alive": 0.34, "churn_risk": 0.66, "expected_purchases_next_period": 2.60, "predicted_clv": 105.0},
        {**base, "customer_id": "cross", "p_alive": 0.41, "churn_risk": 0.59, "expected_purchases_next_period": 3.05, "predicted_clv": 100.0},
        {**base, "customer_id": "clv", "p_alive": 0.50, "churn_risk": 0.50, "expected_purchases_next_period": 1.00, "predicted_clv": 130.0},
        {**base, "customer_id": "tenth", "p_alive": 0.30, "churn_risk": 0.70, "expected_purchases_next_period": 0.0, "predicted_clv": 0.9},
        {**base, "customer_id": "new_fit", "p_alive": 0.5, "churn_risk": 0.5, "expected_purchases_next_period": 1.0, "predicted_clv": 10.0},
    ])
    expected = {
        # drift: 0.31 -> 0.34 stays in the 0.3 band, 2.10 -> 2.60 purchases in band 2, 100 -> 105
        # in the same × 1.25 band (1.25^20 = 86.7 to 1.25^21 = 108.4): not in the delta.
        "clv": "predicted_clv",  # 100 -> 130: the next band
        "cross": "p_alive;churn_risk;expected_purchases_next_period",
        "new_fit": "p_alive;churn_risk;expected_purchases_next_period;predicted_clv",
        # 0.29 -> 0.30: 0.30 is band 3 (in hundredths, never 2.999…); churn 0.71 -> 0.70 stays in band 7.
        "tenth": "p_alive",
    }
    rows, columns = _delta(after, before)
    change, changed = columns.index("customer_id"), len(columns) + 1
    assert {row[change]: row[changed] for row in rows} == expected

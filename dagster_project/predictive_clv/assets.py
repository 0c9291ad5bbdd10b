"""The predictive CLV step as Dagster assets and checks, built by factories: the code location
passes its partitions and backfill policy in (see definitions.py), nothing here builds them.

Graph order: the step reads the dbt model intermediate.int_customer_rfm (so it runs after the
one `dbt build` of the run) and writes three marts itself (see marts.py for why Python writes
them); the published copy depends on them, so it runs after.
"""


import dagster as dg

from ..partitions import run_as_of_dates
from ..resources import LoyaltySettings
from ..warehouse import connect
from . import marts

RFM_KEY = dg.AssetKey(["intermediate", "int_customer_rfm"])
PREDICTIONS_KEY = dg.AssetKey(["marts", marts.CUSTOMER_CLV_PREDICTIONS.name])
PARAMETERS_KEY = dg.AssetKey(["marts", marts.CLV_MODEL_PARAMETERS.name])
CALIBRATION_KEY = dg.AssetKey(["marts", marts.CLV_CALIBRATION.name])
PREDICTIVE_MART_KEYS = [PREDICTIONS_KEY, PARAMETERS_KEY, CALIBRATION_KEY]
FRESH_FIT_CHECK = "clv_fit_is_fresh"
FITS = ("current", "calibration")

_DESCRIPTIONS = {
    PREDICTIONS_KEY: "One row per customer (latest as-of date): p_alive, churn_risk, expected purchases next period, "
    "expected spend per purchase, predicted_clv (discounted expected margin over clv_horizon_years), its decile.",
    PARAMETERS_KEY: "Fitted parameters per as-of date, fit (current / calibration) and model, with log-likelihood, "
    "convergence and whether they were fitted tonight or kept from the last good fit.",
    CALIBRATION_KEY: "Per as-of date: the last period predicted from the history before it vs what happened, "
    "per value segment and per decile of predicted purchases.",
}


def build_predictive_clv_assets(partitions_def: dg.PartitionsDefinition | None, backfill_policy: dg.BackfillPolicy | None) -> list:
    @dg.multi_asset(
        name="predictive_clv",
        group_name="predictive_clv",
        specs=[
            dg.AssetSpec(key, deps=[RFM_KEY], description=_DESCRIPTIONS[key], metadata={"contract": "dagster_project/predictive_clv/marts.py"})
            for key in PREDICTIVE_MART_KEYS
        ],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
    )
    def predictive_clv(context: dg.AssetExecutionContext, settings: LoyaltySettings):
        # Imported here: lifetimes, scipy and autograd cost ~1 s, paid only when the step runs.
        from . import fit

        config = settings.loyalty_config()
        dates = run_as_of_dates(context, settings.as_of())
        outcomes = fit.run(config, dates, log=context.log.info, warn=context.log.warning)
        latest = outcomes[-1]
        yield dg.MaterializeResult(
            asset_key=PREDICTIONS_KEY,
            metadata={"customers": latest.predictions, "as_of_date": latest.as_of_date.isoformat()},
        )
        yield dg.MaterializeResult(
            asset_key=PARAMETERS_KEY,
            metadata={
                "fits": dg.MetadataValue.json({
                    o.as_of_date.isoformat(): {s: {m: p.status for m, p in fits.items()} for s, fits in o.fits.items()}
                    for o in outcomes
                }),
                "problems": dg.MetadataValue.json([p for o in outcomes for p in o.problems]),
                "seconds": round(sum(o.seconds for o in outcomes), 2),
            },
        )
        yield dg.MaterializeResult(asset_key=CALIBRATION_KEY, metadata={"rows": sum(o.calibration_rows for o in outcomes)})

    return [predictive_clv]


def build_predictive_clv_checks(partitions_def: dg.PartitionsDefinition | None) -> list:
    @dg.asset_check(
        asset=PARAMETERS_KEY,
        name=FRESH_FIT_CHECK,
        blocking=False,
        partitions_def=partitions_def,
        description=(
            "Warning when a fit of the run's dates did not converge or left sane bounds (its last good "
            "parameters were kept), or was skipped (too few repeat buyers): the predictions are older than the data."
        ),
    )
    def clv_fit_is_fresh(context: dg.AssetCheckExecutionContext, settings: LoyaltySettings) -> dg.AssetCheckResult:
        config = settings.loyalty_config()
        dates = run_as_of_dates(context, settings.as_of())
        expected_models = (config.clv_model, "gamma_gamma")
        with connect(config.warehouse_path, read_only=True) as con:
            found = {
                (date, fit_name, model_name): (status, message)
                for date, fit_name, model_name, status, message in con.execute(
                    f"select distinct as_of_date, fit, model, fit_status, message from {marts.CLV_MODEL_PARAMETERS.qualified}"
                    " where as_of_date between ? and ?",
                    [min(dates), max(dates)],
                ).fetchall()
            }
        problems = []
        for date in dates:
            for fit_name in FITS:
                for model_name in expected_models:
                    status, message = found.get((date, fit_name, model_name), ("missing", "no parameters (fit skipped or failed, none kept)"))
                    if status != "fitted":
                        problems.append(f"{date} {fit_name} {model_name}: {status}: {message}")
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(problems) if problems else "every fit of the run's dates is fresh",
            metadata={"problems": dg.MetadataValue.json(problems)},
        )

    return [clv_fit_is_fresh]

"""The next-best-offer step as a Dagster multi-asset, built by a factory (see definitions.py).

Graph order: after the one `dbt build` (it reads models/next_best_offer: the rules, the
contacts, the features) and after the predictive CLV step (its purchase probabilities are the
prior); it writes marts.nbo_candidates, next_best_offers, nbo_performance and
next_best_offer_summary itself (marts.py says why), and the published copy depends on them.
"""

import dagster as dg

from ..partitions import run_as_of_dates
from ..predictive_clv.assets import PREDICTIONS_KEY
from ..resources import LoyaltySettings
from . import marts

RULES_KEYS = [dg.AssetKey(["marts", name]) for name in ("nbo_candidate_rules", "nbo_offer_contacts", "nbo_customer_features")]
CANDIDATES_KEY = dg.AssetKey(["marts", marts.NBO_CANDIDATES.name])
OFFERS_KEY = dg.AssetKey(["marts", marts.NEXT_BEST_OFFERS.name])
PERFORMANCE_KEY = dg.AssetKey(["marts", marts.NBO_PERFORMANCE.name])
SUMMARY_KEY = dg.AssetKey(["marts", marts.NEXT_BEST_OFFER_SUMMARY.name])
NBO_MART_KEYS = [CANDIDATES_KEY, OFFERS_KEY, PERFORMANCE_KEY, SUMMARY_KEY]

_DESCRIPTIONS = {
    CANDIDATES_KEY: "The audit: one row per customer × offer with propensity, its tier, ranking (propensity / uplift), "
    "value, priority, rank, slot, arm and the rule that dropped it (null: selected).",
    OFFERS_KEY: "The top offers per customer (slot 1 …) for marketing automation; control customers and customers "
    "without an offer get an explicit `none` row.",
    PERFORMANCE_KEY: "Per night, offer and arm: closed contacts, responses, response rate, lift against control with "
    "a 95 % interval, the smallest detectable lift, the tier's holdout AUC and calibration.",
    SUMMARY_KEY: "Per night and arm: customers, offers assigned, expected value, response rate and lift (the report's section).",
}


def build_next_best_offer_assets(partitions_def: dg.PartitionsDefinition | None, backfill_policy: dg.BackfillPolicy | None) -> list:
    @dg.multi_asset(
        name="next_best_offer",
        group_name="next_best_offer",
        specs=[
            dg.AssetSpec(key, deps=[*RULES_KEYS, PREDICTIONS_KEY], description=_DESCRIPTIONS[key],
                         metadata={"contract": "dagster_project/next_best_offer/marts.py"})
            for key in NBO_MART_KEYS
        ],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
    )
    def next_best_offer(context: dg.AssetExecutionContext, settings: LoyaltySettings):
        from . import step

        config = settings.loyalty_config()
        dates = run_as_of_dates(context, settings.as_of())
        outcome = step.run(config, dates[-1], log=context.log.info)
        yield dg.MaterializeResult(asset_key=CANDIDATES_KEY, metadata={"rows": outcome.candidates, "as_of_date": outcome.as_of})
        yield dg.MaterializeResult(asset_key=OFFERS_KEY, metadata={"rows": outcome.offers, "as_of_date": outcome.as_of})
        yield dg.MaterializeResult(
            asset_key=PERFORMANCE_KEY,
            metadata={"tiers": dg.MetadataValue.json(outcome.tiers), "seconds": round(outcome.seconds, 2)},
        )
        yield dg.MaterializeResult(asset_key=SUMMARY_KEY, metadata={"as_of_date": outcome.as_of})

    return [next_best_offer]

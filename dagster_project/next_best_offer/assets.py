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


# Invariants of the decision, one SQL count each (0 = holds), checked after every night.
INVARIANTS = {
    CANDIDATES_KEY: {
        "selected rows missing from next_best_offers": "select count(*) from marts.nbo_candidates c where c.is_selected and not exists"
        " (select 1 from marts.next_best_offers n where n.customer_id = c.customer_id and n.offer_id = c.offer_id)",
    },
    OFFERS_KEY: {
        "control customers with an offer": "select count(*) from marts.next_best_offers where arm = 'control' and offer_id <> 'none'",
        "customers of the population without a row": "select count(*) from marts.nbo_customer_features f where not exists"
        " (select 1 from marts.next_best_offers n where n.customer_id = f.customer_id)"
        " and exists (select 1 from marts.nbo_candidates)",  # no offers delivered: nobody has a row
        "two offers of one group": "select count(*) from (select n.customer_id, c.offer_group from marts.next_best_offers n"
        " join marts.nbo_candidates c using (customer_id, offer_id) group by all having count(*) > 1)",
    },
    PERFORMANCE_KEY: {
        "offers without their four arm rows": "select count(*) from (select as_of_date, offer_id from marts.nbo_performance"
        " group by all having count(*) <> 4)",
    },
    SUMMARY_KEY: {
        "arm customers not adding up to the total": "select count(*) from (select as_of_date, sum(customers) filter (where arm <> 'total')"
        " as arms, sum(customers) filter (where arm = 'total') as total from marts.next_best_offer_summary group by 1) where arms <> total",
    },
}


def build_next_best_offer_checks(partitions_def: dg.PartitionsDefinition | None) -> list:
    """One blocking check per NBO mart: its invariants (INVARIANTS) hold."""

    def make(key: dg.AssetKey):
        @dg.asset_check(
            asset=key,
            name="nbo_invariants",
            blocking=True,
            partitions_def=partitions_def,
            description="Counts that must be 0: " + "; ".join(INVARIANTS[key]),
        )
        def nbo_invariants(context: dg.AssetCheckExecutionContext, settings: LoyaltySettings) -> dg.AssetCheckResult:
            from ..warehouse import connect

            with connect(settings.loyalty_config().warehouse_path, read_only=True) as con:
                broken = {name: n for name, sql in INVARIANTS[key].items() if (n := con.execute(sql).fetchone()[0])}
            return dg.AssetCheckResult(
                passed=not broken,
                description="; ".join(f"{name}: {n}" for name, n in broken.items()) or "every invariant holds",
                metadata={"broken": dg.MetadataValue.json(broken)},
            )

        return nbo_invariants

    return [make(key) for key in NBO_MART_KEYS]

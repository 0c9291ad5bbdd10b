"""One night of the decision: read what dbt and the predictive step wrote, score, rank, write."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Callable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import LoyaltyConfig
from ..warehouse import connect, relation_exists
from . import decision, marts, performance, propensity
from .arms import arm_sql

PREDICTIONS = "marts.customer_clv_predictions"


@dataclasses.dataclass(frozen=True)
class Outcome:
    as_of: str
    candidates: int
    offers: int
    tiers: dict[str, dict[str, str]]
    seconds: float


def read_inputs(con: duckdb.DuckDBPyConnection, config: LoyaltyConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(offers, customers with their arm, features and purchase predictions, contacts). Without
    any offer there is nothing to decide: no customers or contacts are read (at 5M customers,
    reading them for nothing took 10 s)."""
    offers = con.execute("select offer_id, response_window_days from staging.stg_raw__offers order by offer_id").df()
    only_with_offers = "" if len(offers) else " where false"
    predictions = (
        f"left join {PREDICTIONS} as p on p.customer_id = f.customer_id and p.as_of_date = f.as_of_date"
        if relation_exists(con, "marts", "customer_clv_predictions") else
        "left join (select null::varchar as customer_id, null::double as p_alive, null::double as expected_purchases_next_period) as p"
        " on p.customer_id = f.customer_id"
    )
    customers = con.execute(
        f"select f.*, {arm_sql('f.customer_id', config)} as arm, p.p_alive, p.expected_purchases_next_period"
        f" from marts.nbo_customer_features as f {predictions}"
        f"{only_with_offers} order by f.customer_id"
    ).df()
    contacts = con.execute(f"select * from marts.nbo_offer_contacts{only_with_offers} order by event_id").df()
    return offers, customers, contacts


def key_tables(customers: pd.DataFrame, offers: pd.DataFrame, scores: dict[str, np.ndarray],
               models: list[propensity.OfferModel]) -> dict[str, pa.Table]:
    """What the decision SQL joins the candidates to (decision.scored_sql): customer_keys (the
    customer's position, id and arm), offer_keys (the offer's position, tier and ranking) and
    candidate_scores, the score matrices flat with the integer key customer × offers + offer.
    Arrow, so DuckDB reads the numbers where numpy holds them (NaN, no control rate, as null)."""
    rows, width = len(customers), len(offers)

    def flat(matrix: np.ndarray) -> pa.Array:
        values = np.ascontiguousarray(matrix).ravel()
        return pa.array(values, mask=np.isnan(values))

    return {
        "customer_keys": pa.table({
            "customer_index": pa.array(np.arange(rows, dtype=np.int32)),
            "customer_id": pa.array(customers["customer_id"].to_numpy(dtype=object), pa.string()),
            "arm": pa.array(customers["arm"].to_numpy(dtype=object), pa.string()),
        }),
        "offer_keys": pa.table({
            "offer_index": pa.array(np.arange(width, dtype=np.int32)),
            "offer_id": pa.array(offers["offer_id"].to_numpy(dtype=object), pa.string()),
            "propensity_tier": pa.array([model.tier for model in models], pa.string()),
            "ranking": pa.array([model.ranking for model in models], pa.string()),
        }),
        "candidate_scores": pa.table({
            "candidate_key": pa.array(np.arange(rows * width, dtype=np.int64)),
            **{name: flat(scores[name]) for name in propensity.SCORES},
        }),
    }


def run(config: LoyaltyConfig, as_of: dt.date, log: Callable[[str], None] = print) -> Outcome:
    started = time.perf_counter()
    with connect(config.warehouse_path, config=config) as con:
        con.execute("set enable_progress_bar = false")
        held = con.execute("select max(as_of_date) from marts.nbo_candidate_rules").fetchone()[0]
        if held is not None and held != as_of:
            log(f"next best offer: the rules hold {held}, not {as_of} (a backfill of an older date): nothing decided")
            return Outcome(as_of.isoformat(), 0, 0, {}, time.perf_counter() - started)
        offers, customers, contacts = read_inputs(con, config)
        scores, models = propensity.score_offers(offers, customers, contacts, config)
        keys = key_tables(customers, offers, scores, models)
        con.execute("begin transaction")
        try:
            for table in marts.SLICED:
                marts.ensure_table(con, table)
            assigned = decision.write_customer_marts(con, config, as_of, keys)
            chosen = con.execute(f"select * from {marts.NEXT_BEST_OFFERS.qualified} order by customer_id, slot").df()
            perf = performance.performance_frame(as_of, contacts, models, assigned)
            # No offers delivered: no slice (the report shows the section only when there is one).
            summary = performance.summary_frame(as_of, chosen, contacts) if len(offers) else pd.DataFrame(columns=marts.NEXT_BEST_OFFER_SUMMARY.column_names)
            for table, frame in ((marts.NBO_PERFORMANCE, perf), (marts.NEXT_BEST_OFFER_SUMMARY, summary)):
                con.execute(f"delete from {table.qualified} where as_of_date = ?", [as_of])
                con.register("frame", frame)
                con.execute(f"insert into {table.qualified} select {', '.join(table.column_names)} from frame order by all")
                con.unregister("frame")
            candidates = con.execute(f"select count(*) from {marts.NBO_CANDIDATES.qualified}").fetchone()[0]
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    tiers = {m.offer_id: {"tier": m.tier, "ranking": m.ranking} for m in models}
    seconds = time.perf_counter() - started
    log(f"next best offer: {len(offers)} offers, {candidates} candidates, {len(chosen)} rows for {chosen['customer_id'].nunique()} customers"
        f" in {seconds:.1f} s; tiers {tiers}")
    return Outcome(as_of.isoformat(), int(candidates), len(chosen), tiers, seconds)

"""Steps 5-7 of the decision, as SQL over the dbt rules and the Python propensity: priority, one
offer per group, top k, volume caps in priority order, arms; then the customer-facing rows.

Drop rules after the propensity (in this order, the first that holds is recorded in
nbo_candidates.drop_rule; the dbt rules of nbo_candidate_rules come before them):

  random_arm             random arm: not the offer drawn for the customer (a seeded hash of
                         nbo_seed, the night, the customer and the offer picks one offer among
                         those that passed the business rules, whatever its priority)
  priority_not_positive  ranked / control arm: priority <= 0 (no contact)
  offer_group            a higher-priority offer of the same offer_group (ties: offer_id)
  top_k                  not among the customer's top nbo_top_k by priority (default: not the
                         best of its channel)
  volume_cap             the offer already has volume_cap customers of higher priority tonight
                         (control customers are not contacted and do not count)
  control_group          control arm: would have been selected, held out (an explicit `none`
                         row in next_best_offers names these offers)

Priority: ranking propensity: propensity × expected_value × business_weight; ranking uplift:
(incremental_propensity × gross_value − contact_cost) × business_weight, the expected
incremental value.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pyarrow as pa

from ..config import LoyaltyConfig
from .marts import CUSTOMER_LEVEL, NBO_CANDIDATES, NEXT_BEST_OFFERS, check_key, replace_table

NONE_OFFER = "none"


SCORED = "nbo_scored"  # temp tables of the step's connection
DECIDED = "nbo_decided"
# The columns of marts.nbo_candidates that the rules after the propensity decide.
DECIDED_COLUMNS = ("rank", "slot", "is_selected", "drop_rule")


def candidate_key(customer_index: str, offer_index: str, offers: int) -> str:
    """The candidate's row in step.key_tables' candidate_scores (customers × offers, row-major)."""
    return f"cast({customer_index} as bigint) * {int(offers)} + {offer_index}"


def scored_sql(offers: int) -> str:
    """Every candidate of the dbt rules with its positions (step.key_tables: customers and offers
    in customer_id and offer_id order, so ordering by an index is ordering by the id), arm,
    scores and priority: the candidate columns of marts.nbo_candidates but the decided ones, plus
    the keys the decision ranks by. Joined once: the 10M × 10M join on the integer key is the
    dearest join of the night (a list of scores per customer instead, gathered whole for each of
    10M rows, was slower still: 15 s against 4-9 s for that join in the step's profile)."""
    expressions = {
        "arm": "customers.arm",
        "response_cell": "features.value_band || '/' || features.activity_state",
        "propensity": "scores.propensity",
        "propensity_tier": "offer_keys.propensity_tier",
        "control_rate": "scores.control_rate",
        "incremental_propensity": "scores.incremental_propensity",
        "ranking": "offer_keys.ranking",
        "priority": priority_sql(),
    }
    columns = ", ".join(
        f"{expressions.get(c, 'rules.' + c)} as {c}" for c in NBO_CANDIDATES.column_names if c not in DECIDED_COLUMNS
    )
    return f"""
        select {columns}, rules.drop_rule as rule_drop, rules.volume_cap, scores.candidate_key,
            customers.customer_index, offer_keys.offer_index
        from marts.nbo_candidate_rules as rules
        inner join customer_keys as customers using (customer_id)
        inner join offer_keys using (offer_id)
        inner join marts.nbo_customer_features as features using (customer_id)
        inner join candidate_scores as scores
            on scores.candidate_key = {candidate_key('customers.customer_index', 'offer_keys.offer_index', offers)}
    """


def priority_sql() -> str:
    return """case when offer_keys.ranking = 'uplift'
                then (scores.incremental_propensity * rules.gross_value - rules.contact_cost) * rules.business_weight
                else scores.propensity * rules.expected_value * rules.business_weight
            end"""


def decided_sql(config: LoyaltyConfig, as_of: dt.date, offers: int) -> str:
    """The rules after the propensity (module doc), one stage per rule: each stage ranks only the
    candidates still standing, and the rows it drops leave with its rule's name. The candidates the
    dbt rules dropped take no part (they keep the dbt rule and no rank)."""
    top_partition = "customer_index, channel" if config.nbo_top_k is None else "customer_index"
    top_limit = 1 if config.nbo_top_k is None else int(config.nbo_top_k)
    seed = f"'{int(config.nbo_seed)}:{as_of.isoformat()}:'"
    return f"""
    with passed as materialized (
        select customer_index, offer_index, offer_group, channel, arm, volume_cap, priority,
            cast(row_number() over (partition by customer_index order by priority desc, offer_index) as integer) as rank
        from {SCORED} where rule_drop is null
    ),
    drawn as (
        -- random arm: one offer drawn by a seeded hash among those that passed the dbt rules
        select passed.customer_index, passed.offer_index, row_number() over (
            partition by passed.customer_index order by md5({seed} || customer_keys.customer_id || ':' || offer_keys.offer_id), passed.offer_index) as draw
        from passed
        inner join customer_keys using (customer_index)
        inner join offer_keys using (offer_index)
        where passed.arm = 'random'
    ),
    judged_random as materialized (
        select passed.*, case
            when passed.arm = 'random' and drawn.draw > 1 then 'random_arm'
            when passed.arm <> 'random' and passed.priority <= 0 then 'priority_not_positive'
        end as stage_rule
        from passed left join drawn using (customer_index, offer_index)
    ),
    judged_group as materialized (
        select * exclude (stage_rule), case when row_number() over (
            partition by customer_index, offer_group order by priority desc, offer_index) > 1 then 'offer_group' end as stage_rule
        from judged_random where stage_rule is null
    ),
    judged_top as materialized (
        select * exclude (stage_rule), case when row_number() over (
            partition by {top_partition} order by priority desc, offer_index) > {top_limit} then 'top_k' end as stage_rule
        from judged_group where stage_rule is null
    ),
    judged_volume as materialized (
        -- control customers are not contacted and do not count toward a volume cap
        select * exclude (stage_rule), case when arm <> 'control' and volume_cap is not null and row_number() over (
            partition by offer_index, arm = 'control' order by priority desc, customer_index) > volume_cap
            then 'volume_cap' when arm = 'control' then 'control_group' end as stage_rule
        from judged_top where stage_rule is null
    ),
    judged as (
        select customer_index, offer_index, rank, stage_rule, null as slot from judged_random where stage_rule is not null
        union all select customer_index, offer_index, rank, stage_rule, null from judged_group where stage_rule is not null
        union all select customer_index, offer_index, rank, stage_rule, null from judged_top where stage_rule is not null
        union all select customer_index, offer_index, rank, stage_rule, null from judged_volume where stage_rule = 'volume_cap'
        -- selected, or held out in the control arm: the customer's slots in priority order
        union all select customer_index, offer_index, rank, stage_rule, row_number() over (
            partition by customer_index order by priority desc, offer_index)
        from judged_volume where stage_rule is null or stage_rule = 'control_group'
    )
    select {candidate_key('customer_index', 'offer_index', offers)} as candidate_key, customer_index, offer_index, rank,
        cast(slot as integer) as slot, stage_rule as drop_rule, stage_rule is null as is_selected
    from judged
    """


def candidates_sql() -> str:
    """marts.nbo_candidates: every candidate with the rule that dropped it (a dbt rule, else the
    decided one). Not sorted: sorting 10M wide rows cost 11-13 s of the night, and readers
    filter or order it themselves."""
    decided = {
        "rank": "decided.rank",
        "slot": "decided.slot",
        "is_selected": "coalesce(decided.is_selected, false)",
        "drop_rule": "coalesce(scored.rule_drop, decided.drop_rule)",
    }
    columns = ", ".join(f"{decided.get(c, 'scored.' + c)} as {c}" for c in NBO_CANDIDATES.column_names)
    return f"""
        select {columns}
        from {SCORED} as scored
        left join {DECIDED} as decided using (candidate_key)
    """


def next_best_offers_sql(config: LoyaltyConfig, as_of: dt.date) -> str:
    """next_best_offers: the selected rows, an explicit `none` row for every control customer and
    for every customer without a selected offer. From tonight's scored and decided candidates
    (the rows of marts.nbo_candidates), reading only the 1-2 rows per customer that have a slot."""
    valid_until = (as_of + dt.timedelta(days=1)).isoformat()
    currency = config.currency.replace("'", "''")
    return f"""
    with candidates as (
        select scored.*, decided.slot, decided.rank, decided.is_selected, decided.drop_rule
        from (select * exclude (customer_index, offer_index) from {DECIDED}) as decided
        inner join {SCORED} as scored using (candidate_key)
        where decided.slot is not null
    ),
    population as (
        select customer_index, customer_id, arm from customer_keys
        where customer_index in (select customer_index from {SCORED})
    ),
    selected as (
        select customer_id, as_of_date, slot, rank, offer_id, channel, priority, propensity, expected_value,
            valid_until, arm,
            case when arm = 'random' then printf('random eligible offer (exploration arm), %d %% propensity, %d {currency} value',
                    cast(round(100 * propensity) as integer), cast(round(expected_value) as integer))
                else printf('%s segment, %s, %d %% propensity, %d {currency} value, %s ranking%s',
                    coalesce(value_segment, 'no'), replace(coalesce(lifecycle_stage, 'no stage'), '_', ' '),
                    cast(round(100 * propensity) as integer), cast(round(expected_value) as integer), ranking,
                    case when ranking = 'uplift' then printf(', %+d pp over control', cast(round(100 * incremental_propensity) as integer)) else '' end)
            end as reason
        from candidates where is_selected
    ),
    held_out as (
        select customer_index, string_agg(offer_id, ', ' order by slot) as offers
        from candidates where drop_rule = 'control_group' group by customer_index
    ),
    empty as (
        select population.customer_id, cast('{as_of.isoformat()}' as date) as as_of_date, 1 as slot,
            cast(null as integer) as rank, '{NONE_OFFER}' as offer_id, '{NONE_OFFER}' as channel,
            cast(null as double) as priority, cast(null as double) as propensity, cast(null as double) as expected_value,
            cast('{valid_until}' as date) as valid_until, population.arm,
            case when population.arm = 'control' then 'control group: no offer' || coalesce(' (held out: ' || held_out.offers || ')', '')
                else 'no offer passed the rules with a positive priority' end as reason
        from population
        left join held_out using (customer_index)
        where population.customer_index not in (select customer_index from candidates where is_selected)
    )
    select {', '.join(NEXT_BEST_OFFERS.column_names)} from (select * from selected union all select * from empty)
    order by customer_id, slot
    """


def write_customer_marts(con: duckdb.DuckDBPyConnection, config: LoyaltyConfig, as_of: dt.date,
                         keys: dict[str, pa.Table]) -> pd.DataFrame:
    """Replaces nbo_candidates and next_best_offers (tonight only), in the caller's transaction.
    ``keys``: customer_keys, offer_keys and candidate_scores from step.key_tables. Returns the
    customers assigned to each offer and arm tonight (selected, or held out in the control arm)."""
    offers = keys["offer_keys"].num_rows
    for name, table in keys.items():
        con.register(name, table)
    try:
        con.execute(f"create or replace temp table {SCORED} as {scored_sql(offers)}")
        con.execute(f"create or replace temp table {DECIDED} as {decided_sql(config, as_of, offers)}")
        for table in CUSTOMER_LEVEL:
            replace_table(con, table)
        con.execute(f"insert into {NBO_CANDIDATES.qualified} {candidates_sql()}")
        con.execute(f"insert into {NEXT_BEST_OFFERS.qualified} {next_best_offers_sql(config, as_of)}")
        for table in CUSTOMER_LEVEL:
            check_key(con, table)
        return con.execute(f"""
            select offer_keys.offer_id, customer_keys.arm, count(*) as customers
            from {DECIDED} as decided
            inner join customer_keys using (customer_index)
            inner join offer_keys using (offer_index)
            where decided.slot is not null
            group by all order by all
        """).df()
    finally:
        for name in keys:
            con.unregister(name)
        con.execute(f"drop table if exists {SCORED}")
        con.execute(f"drop table if exists {DECIDED}")

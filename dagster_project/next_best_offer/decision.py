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

from ..config import LoyaltyConfig
from .marts import NBO_CANDIDATES, NEXT_BEST_OFFERS

NONE_OFFER = "none"


SCORED = "nbo_scored"  # temp tables of the step's connection
DECIDED = "nbo_decided"


def scored_sql() -> str:
    """Every candidate with its propensity, arm and priority, from marts.nbo_candidate_rules and
    the registered frames ``scores`` (customer × offer) and ``arms`` (customer → arm)."""
    return """
        select
            rules.*, scores.propensity, scores.propensity_tier, scores.control_rate,
            scores.incremental_propensity, scores.ranking, arms.arm,
            features.value_band || '/' || features.activity_state as response_cell,
            rules.drop_rule is null as rules_passed,
            case when scores.ranking = 'uplift'
                then (scores.incremental_propensity * rules.gross_value - rules.contact_cost) * rules.business_weight
                else scores.propensity * rules.expected_value * rules.business_weight
            end as priority
        from marts.nbo_candidate_rules as rules
        inner join scores using (customer_id, offer_id)
        inner join arms using (customer_id)
        inner join marts.nbo_customer_features as features using (customer_id)
    """


def decided_sql(config: LoyaltyConfig, as_of: dt.date) -> str:
    """The rules after the propensity (module doc), on the few columns they need (DuckDB's
    windows carry every column of their input: on the whole candidate rows they cost 10 × more)."""
    top_partition = "customer_id, channel" if config.nbo_top_k is None else "customer_id"
    top_limit = 1 if config.nbo_top_k is None else int(config.nbo_top_k)
    seed = f"'{int(config.nbo_seed)}:{as_of.isoformat()}:'"
    return f"""
    with narrow as (
        select customer_id, offer_id, offer_group, channel, arm, priority, volume_cap, drop_rule, rules_passed from {SCORED}
    ),
    drawn as (
        select *, case when arm = 'random' and drop_rule is null then row_number() over (
            partition by customer_id, arm = 'random' and drop_rule is null
            order by md5({seed} || customer_id || ':' || offer_id), offer_id) end as draw
        from narrow
    ),
    rule_random as (
        select * replace (case
            when drop_rule is not null then drop_rule
            when arm = 'random' and draw > 1 then 'random_arm'
            when arm <> 'random' and priority <= 0 then 'priority_not_positive'
        end as drop_rule)
        from drawn
    ),
    rule_group as (
        select * replace (case when drop_rule is null and row_number() over (
            partition by customer_id, offer_group, drop_rule is null order by priority desc, offer_id) > 1
            then 'offer_group' else drop_rule end as drop_rule)
        from rule_random
    ),
    rule_top as (
        select * replace (case when drop_rule is null and row_number() over (
            partition by {top_partition}, drop_rule is null order by priority desc, offer_id) > {top_limit}
            then 'top_k' else drop_rule end as drop_rule)
        from rule_group
    ),
    rule_volume as (
        select * replace (case when drop_rule is null and arm <> 'control' and volume_cap is not null and row_number() over (
            partition by offer_id, drop_rule is null and arm <> 'control' order by priority desc, customer_id) > volume_cap
            then 'volume_cap' else drop_rule end as drop_rule)
        from rule_top
    ),
    rule_control as (
        select * replace (case when drop_rule is null and arm = 'control' then 'control_group' else drop_rule end as drop_rule)
        from rule_volume
    )
    select customer_id, offer_id, drop_rule as final_drop_rule,
        drop_rule is null as is_selected,
        case when drop_rule is null or drop_rule = 'control_group' then cast(row_number() over (
            partition by customer_id, drop_rule is null or drop_rule = 'control_group' order by priority desc, offer_id) as integer)
        end as slot,
        case when rules_passed then cast(row_number() over (
            partition by customer_id, rules_passed order by priority desc, offer_id) as integer) end as rank
    from rule_control
    """


def candidates_sql() -> str:
    columns = ", ".join("decided.final_drop_rule as drop_rule" if c == "drop_rule" else c for c in NBO_CANDIDATES.column_names)
    return f"select {columns} from {SCORED} inner join {DECIDED} as decided using (customer_id, offer_id) order by customer_id, offer_id"


def next_best_offers_sql(config: LoyaltyConfig, as_of: dt.date) -> str:
    """next_best_offers from marts.nbo_candidates: the selected rows, an explicit `none` row for
    every control customer and for every customer without a selected offer."""
    valid_until = (as_of + dt.timedelta(days=1)).isoformat()
    currency = config.currency.replace("'", "''")
    return f"""
    with candidates as (select * from marts.nbo_candidates),
    population as (select distinct customer_id, arm from candidates),
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
        select customer_id, string_agg(offer_id, ', ' order by slot) as offers
        from candidates where drop_rule = 'control_group' group by customer_id
    ),
    empty as (
        select population.customer_id, cast('{as_of.isoformat()}' as date) as as_of_date, 1 as slot,
            cast(null as integer) as rank, '{NONE_OFFER}' as offer_id, '{NONE_OFFER}' as channel,
            cast(null as double) as priority, cast(null as double) as propensity, cast(null as double) as expected_value,
            cast('{valid_until}' as date) as valid_until, population.arm,
            case when population.arm = 'control' then 'control group: no offer' || coalesce(' (held out: ' || held_out.offers || ')', '')
                else 'no offer passed the rules with a positive priority' end as reason
        from population
        left join held_out using (customer_id)
        where population.customer_id not in (select customer_id from selected)
    )
    select {', '.join(NEXT_BEST_OFFERS.column_names)} from (select * from selected union all select * from empty)
    order by customer_id, slot
    """


def write_customer_marts(con: duckdb.DuckDBPyConnection, config: LoyaltyConfig, as_of: dt.date,
                         scores: pd.DataFrame, arms: pd.DataFrame) -> None:
    """Replaces nbo_candidates and next_best_offers (tonight only), in the caller's transaction."""
    con.register("scores", scores)
    con.register("arms", arms)
    con.execute(f"create or replace temp table {SCORED} as {scored_sql()}")
    con.execute(f"create or replace temp table {DECIDED} as {decided_sql(config, as_of)}")
    con.execute(f"delete from {NBO_CANDIDATES.qualified}")
    con.execute(f"insert into {NBO_CANDIDATES.qualified} {candidates_sql()}")
    con.execute(f"delete from {NEXT_BEST_OFFERS.qualified}")
    con.execute(f"insert into {NEXT_BEST_OFFERS.qualified} {next_best_offers_sql(config, as_of)}")
    con.unregister("scores")
    con.unregister("arms")
    con.execute(f"drop table {SCORED}")
    con.execute(f"drop table {DECIDED}")

"""Does the next-best-offer decision work? Measured on the sample's simulated campaign history,
whose true response model is known (dagster_project/sample_data.py, NBO_OFFERS).

``python benchmarks/nbo.py --customers 20000 --out /tmp/nbo_bench [--write BENCHMARKS.md]``
generates the sample with campaigns, runs the pipeline once, and evaluates four policies on
every customer of the export population, one offer each, chosen among the offers that passed the
business rules tonight (nbo_candidate_rules.drop_rule is null):

* ranked: the warehouse's priority (uplift ranking where the offer has control-arm history);
* propensity only: propensity × expected_value × business_weight (what the closed suites rank by);
* random eligible: a uniformly drawn eligible offer (seed 0);
* no contact.

A policy's incremental value per customer = Σ over the contacted customers of
(true increment of the offer for the customer's true state tonight × gross value − contact cost)
÷ customers, the true increment from sample_data.true_response on campaign_states at the as-of
date (what the offer would add over no offer). Contacts with priority <= 0 are not made. Also
printed: each offer's propensity tier, ranking and holdout AUCs from marts.nbo_performance, and
the NBO step's seconds. With --write, the section between the markers in BENCHMARKS.md is
replaced by the result (no hand-typed number).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster_project import cli, sample_data  # noqa: E402
from dagster_project.config import LoyaltyConfig  # noqa: E402
from dagster_project.next_best_offer import step  # noqa: E402
from dagster_project.warehouse import connect  # noqa: E402

BEGIN, END = "<!-- nbo-benchmark:begin -->", "<!-- nbo-benchmark:end -->"
POLICIES = ("ranked", "propensity_only", "random_eligible", "no_contact")


def true_increments(con, candidates: pd.DataFrame, as_of: dt.date) -> np.ndarray:
    """The true increment of each candidate row's offer for its customer's state at ``as_of``."""
    purchases = con.execute(
        "select customer_id, transaction_date, amount from staging.stg_raw__transactions where is_purchase"
        " and transaction_date <= ?", [as_of]
    ).df()
    ids = sorted(set(purchases["customer_id"]) | set(candidates["customer_id"]))
    index = {c: i for i, c in enumerate(ids)}
    epoch = pd.Timestamp("1970-01-01")
    p_cust = purchases["customer_id"].map(index).to_numpy()
    p_day = ((pd.to_datetime(purchases["transaction_date"]) - epoch).dt.days).to_numpy()
    p_cents = np.round(purchases["amount"].astype(float).to_numpy() * 100)
    states = sample_data.campaign_states(p_cust, p_day, p_cents, len(ids), (pd.Timestamp(as_of) - epoch).days)
    rows = candidates["customer_id"].map(index).to_numpy()
    effect = np.zeros(len(candidates))
    for offer_id in candidates["offer_id"].unique():
        mine = (candidates["offer_id"] == offer_id).to_numpy()
        _, increment = sample_data.true_response(offer_id, {k: v[rows[mine]] for k, v in states.items()})
        effect[mine] = increment
    return effect


def evaluate(candidates: pd.DataFrame, population: int) -> dict[str, float]:
    """Incremental value per customer of each policy (one offer per customer)."""
    eligible = candidates[candidates["rules_passed"]].copy()
    eligible["true_value"] = eligible["true_increment"] * eligible["gross_value"] - eligible["contact_cost"]
    eligible["propensity_priority"] = eligible["propensity"] * eligible["expected_value"] * eligible["business_weight"]
    rng = np.random.default_rng(0)
    eligible["draw"] = rng.random(len(eligible))
    out = {"no_contact": 0.0}
    for policy, column in (("ranked", "priority"), ("propensity_only", "propensity_priority")):
        best = eligible.sort_values([column, "offer_id"], ascending=[False, True]).drop_duplicates("customer_id")
        best = best[best[column] > 0]
        out[policy] = float(best["true_value"].sum() / population)
    drawn = eligible.sort_values("draw").drop_duplicates("customer_id")
    out["random_eligible"] = float(drawn["true_value"].sum() / population)
    return out


def run(customers: int, out: Path) -> dict:
    raw, root = out / "raw", out / "run"
    sample_data.generate_sample(raw, customers=customers, campaigns=True)
    as_of = sample_data.SAMPLE_AS_OF
    args = ["run", "--raw-dir", str(raw), "--warehouse", str(root / "w.duckdb"), "--publish-dir", str(root / "published"),
            "--as-of", as_of.isoformat()]
    started = time.perf_counter()
    if cli.main(args) != 0:
        raise SystemExit("the pipeline run failed")
    seconds = time.perf_counter() - started
    with connect(root / "w.duckdb", read_only=True) as con:
        candidates = con.execute(
            "select c.customer_id, c.offer_id, c.propensity, c.priority, c.expected_value, c.business_weight,"
            " r.gross_value, r.contact_cost, r.drop_rule is null as rules_passed"
            " from marts.nbo_candidates c join marts.nbo_candidate_rules r using (customer_id, offer_id) order by c.customer_id, c.offer_id"
        ).df()
        candidates["true_increment"] = true_increments(con, candidates, as_of)
        population = int(candidates["customer_id"].nunique())
        performance = con.execute(
            "select offer_id, propensity_tier, ranking, contacts, model_auc, smoothed_auc, lift, lift_ci_low, lift_ci_high"
            " from marts.nbo_performance where arm = 'treated' order by offer_id"
        ).df()
    # The NBO step alone, run again on the same night (it rewrites the same rows).
    started = time.perf_counter()
    step.run(LoyaltyConfig(warehouse=str(root / "w.duckdb")), as_of, log=lambda message: None)
    step_seconds = time.perf_counter() - started
    values = evaluate(candidates, population)
    return {"customers": customers, "population": population, "values": values, "performance": performance,
            "run_seconds": seconds, "step_seconds": step_seconds}


def markdown(result: dict, commit: str) -> str:
    v = result["values"]
    margin = v["ranked"] - v["random_eligible"]
    lines = [
        BEGIN,
        f"Generated by `python benchmarks/nbo.py --customers {result['customers']}` (commit `{commit}`): "
        f"{result['population']} customers in the export population, the sample's campaign history "
        f"({sample_data.CAMPAIGN_NIGHTS} weekly nights), whole run {result['run_seconds']:.0f} s, of it the NBO step "
        f"{result['step_seconds']:.1f} s (measured again on its own).",
        "",
        "| policy | incremental value per customer (true model) |",
        "| --- | ---: |",
        *[f"| {p.replace('_', ' ')} | {v[p]:.2f} |" for p in POLICIES],
        "",
        f"Ranked beats random eligible by {margin:.2f} per customer "
        f"({(v['ranked'] / v['random_eligible'] - 1) * 100 if v['random_eligible'] > 0 else float('nan'):.0f} %) "
        f"and propensity-only by {v['ranked'] - v['propensity_only']:.2f}.",
        "",
        "| offer | tier | ranking | treated contacts | model AUC | smoothed AUC | lift (95 % CI) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in result["performance"].itertuples():
        def f(x, digits=3):
            return "" if pd.isna(x) else f"{x:.{digits}f}"
        ci = "" if pd.isna(row.lift) else f"{row.lift:.2f} ({row.lift_ci_low:.2f} … {row.lift_ci_high:.2f})"
        lines.append(f"| {row.offer_id} | {row.propensity_tier} | {row.ranking} | {row.contacts} | {f(row.model_auc)} | {f(row.smoothed_auc)} | {ci} |")
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write", type=Path, help="BENCHMARKS.md to update between the markers")
    parser.add_argument("--commit", default="working tree")
    args = parser.parse_args(argv)
    result = run(args.customers, args.out)
    text = markdown(result, args.commit)
    print(text)
    if args.write:
        document = args.write.read_text(encoding="utf-8")
        if BEGIN in document:
            document = document[: document.index(BEGIN)] + text + document[document.index(END) + len(END):]
        else:
            document += "\n" + text + "\n"
        args.write.write_text(document, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""marts.nbo_performance and marts.next_best_offer_summary: per offer and arm, tonight's slice of
the closed contacts so far, their responses, lift against the control arm with a 95 % interval,
the smallest lift the volumes could detect, and what the propensity tier and its holdout showed.

lift = (rate − control rate) ÷ control rate; its interval is the difference of two proportions'
normal interval (± 1.96 standard errors) divided by the control rate; the smallest detectable
lift is (1.96 + 0.84) · √(p̄(1 − p̄)(1/n + 1/n_control)) ÷ control rate (two-sided 5 %, power 80 %,
p̄ the pooled rate). Arm `treated` pools ranked and random.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

from .marts import NBO_PERFORMANCE, NEXT_BEST_OFFER_SUMMARY
from .propensity import OfferModel

Z_95, Z_POWER_80 = 1.959964, 0.841621
PERFORMANCE_ARMS = ("ranked", "random", "treated", "control")


def lift_statistics(responses: int, contacts: int, control_responses: int, control_contacts: int) -> dict[str, float | None]:
    """rate, control rate, lift, its interval and the smallest detectable lift (None when undefined)."""
    out: dict[str, float | None] = dict.fromkeys(
        ("response_rate", "control_rate", "lift", "lift_ci_low", "lift_ci_high", "min_detectable_lift")
    )
    if contacts:
        out["response_rate"] = responses / contacts
    if control_contacts:
        out["control_rate"] = control_responses / control_contacts
    p1, p0 = out["response_rate"], out["control_rate"]
    if p1 is None or not p0:
        return out
    difference = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / contacts + p0 * (1 - p0) / control_contacts)
    pooled = (responses + control_responses) / (contacts + control_contacts)
    out["lift"] = difference / p0
    out["lift_ci_low"] = (difference - Z_95 * se) / p0
    out["lift_ci_high"] = (difference + Z_95 * se) / p0
    out["min_detectable_lift"] = (Z_95 + Z_POWER_80) * math.sqrt(pooled * (1 - pooled) * (1 / contacts + 1 / control_contacts)) / p0
    return out


def performance_frame(as_of: dt.date, contacts: pd.DataFrame, models: list[OfferModel], assigned: pd.DataFrame) -> pd.DataFrame:
    """One row per offer × arm (PERFORMANCE_ARMS). ``assigned``: offer_id, arm, customers tonight
    (control: the held-out offers)."""
    closed = contacts[contacts["is_window_closed"]]
    counts = {}
    for (offer_id, arm), group in closed.groupby(["offer_id", "arm"], sort=True):
        counts[(offer_id, arm)] = (len(group), int(group["is_response"].sum()))
    tonight = {(row.offer_id, row.arm): int(row.customers) for row in assigned.itertuples()}
    rows = []
    for model in sorted(models, key=lambda m: m.offer_id):
        c_contacts, c_responses = counts.get((model.offer_id, "control"), (0, 0))
        for arm in PERFORMANCE_ARMS:
            parts = ("ranked", "random") if arm == "treated" else (arm,)
            n = sum(counts.get((model.offer_id, a), (0, 0))[0] for a in parts)
            r = sum(counts.get((model.offer_id, a), (0, 0))[1] for a in parts)
            stats = lift_statistics(r, n, c_responses, c_contacts) if arm != "control" else {
                **lift_statistics(r, n, 0, 0), "control_rate": (c_responses / c_contacts) if c_contacts else None}
            rows.append({
                "as_of_date": as_of, "offer_id": model.offer_id, "arm": arm, "ranking": model.ranking,
                "propensity_tier": model.tier, "contacts": n, "responses": r,
                "response_rate": stats["response_rate"], "control_contacts": c_contacts, "control_rate": stats["control_rate"],
                "lift": stats["lift"], "lift_ci_low": stats["lift_ci_low"], "lift_ci_high": stats["lift_ci_high"],
                "min_detectable_lift": stats["min_detectable_lift"], "model_auc": model.model_auc,
                "smoothed_auc": model.smoothed_auc, "calibration_ratio": model.calibration_ratio,
                "assigned_tonight": sum(tonight.get((model.offer_id, a), 0) for a in parts),
            })
    return pd.DataFrame(rows, columns=NBO_PERFORMANCE.column_names)


def summary_frame(as_of: dt.date, offers: pd.DataFrame, contacts: pd.DataFrame) -> pd.DataFrame:
    """Per arm and in total: customers, offers assigned tonight and their expected value (sum of
    expected_value of the real offers), closed contacts so far, their response rate and the lift
    against the control arm. ``offers``: next_best_offers' rows."""
    closed = contacts[contacts["is_window_closed"]]
    control = closed[closed["arm"] == "control"]
    rows = []
    for arm in ("control", "random", "ranked", "total"):
        mine = offers if arm == "total" else offers[offers["arm"] == arm]
        real = mine[mine["offer_id"] != "none"]
        history = closed if arm == "total" else closed[closed["arm"] == arm]
        treated = history[history["arm"] != "control"]
        stats = lift_statistics(int(history["is_response"].sum()), len(history), int(control["is_response"].sum()), len(control))
        rows.append({
            "as_of_date": as_of, "arm": arm, "customers": int(mine["customer_id"].nunique()), "offers_assigned": len(real),
            "expected_value": float(np.round(real["expected_value"].sum(), 6)), "contacts": len(history),
            "response_rate": stats["response_rate"],
            "lift": lift_statistics(int(treated["is_response"].sum()), len(treated), int(control["is_response"].sum()), len(control))["lift"]
            if arm != "control" else None,
        })
    return pd.DataFrame(rows, columns=NEXT_BEST_OFFER_SUMMARY.column_names)

"""Propensity to respond, in tiers per offer, and the control rates of the uplift ranking.

Tiers (per offer, stated in marts.nbo_candidates.propensity_tier):

* ``prior``: no closed contact of the offer yet. nbo_prior_scale × the customer's probability
  of at least one purchase in the offer's response window: from the predictive CLV,
  p_alive × (1 − exp(−λ·w)) with λ = expected purchases next period ÷ p_alive ÷ the period's
  days (Poisson while alive); without a prediction, 1 − exp(−purchases in the last year ÷ 365 · w).
* ``smoothed``: (responses + k · prior) ÷ (contacts + k) in the customer's response cell (value
  band × activity state at the contact), k = nbo_smoothing_strength.
* ``model``: from nbo_min_positive_responses positive responses on, a calibrated classifier
  (classifier.py) trained on the earlier contacts and judged on the latest nbo_holdout_share;
  used only when its holdout AUC beats the smoothed rates' on the same holdout.

Uplift: once an offer has nbo_min_control_contacts closed held-out contacts, its control rate
per cell ((control responses + k · the offer's control rate) ÷ (control contacts + k)) is
subtracted from the propensity and the offer is ranked by the increment (ranking ``uplift``);
otherwise by the propensity (``propensity``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np
import pandas as pd

from ..config import LoyaltyConfig

CELL_COLUMNS = ("value_band", "activity_state")


@dataclasses.dataclass(frozen=True)
class OfferModel:
    """What was decided for one offer tonight (the performance mart reports it)."""

    offer_id: str
    tier: str
    ranking: str
    treated_contacts: int
    positive_responses: int
    control_contacts: int
    model_auc: float | None = None
    smoothed_auc: float | None = None
    calibration_ratio: float | None = None


def cell_of(frame: pd.DataFrame) -> pd.Series:
    return frame["value_band"].astype(str) + "/" + frame["activity_state"].astype(str)


def purchase_probability(customers: pd.DataFrame, window_days: float, config: LoyaltyConfig) -> np.ndarray:
    """P(at least one purchase in the next ``window_days``) per customer (see the module doc)."""
    period_days = config.period_months * 365.25 / 12
    p_alive = customers["p_alive"].to_numpy(dtype=float, na_value=np.nan)
    expected = customers["expected_purchases_next_period"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(p_alive > 0, expected / p_alive / period_days, 0.0)
    from_model = p_alive * (1 - np.exp(-rate * window_days))
    yearly = customers["purchases_365d"].to_numpy(dtype=float) / 365.0
    empirical = 1 - np.exp(-yearly * window_days)
    return np.clip(np.where(np.isnan(from_model), empirical, from_model), 0.0, 1.0)


def prior(customers: pd.DataFrame, window_days: float, config: LoyaltyConfig) -> np.ndarray:
    return config.nbo_prior_scale * purchase_probability(customers, window_days, config)


def cell_counts(contacts: pd.DataFrame) -> pd.DataFrame:
    """Contacts and responses per response cell."""
    cells = contacts.assign(cell=cell_of(contacts)).groupby("cell", sort=True)["is_response"]
    return pd.DataFrame({"contacts": cells.size(), "responses": cells.sum()})


def smoothed(cells: pd.Series, counts: pd.DataFrame, toward: np.ndarray | float, strength: float) -> np.ndarray:
    """(responses + k · toward) ÷ (contacts + k) in each row's cell (cells without contacts: toward)."""
    found = counts.reindex(cells.to_numpy())
    responses = found["responses"].fillna(0).to_numpy(dtype=float)
    contacts = found["contacts"].fillna(0).to_numpy(dtype=float)
    return (responses + strength * np.asarray(toward, dtype=float)) / (contacts + strength)


def temporal_split(contacts: pd.DataFrame, holdout_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Train = contacts before the first day of the latest holdout share (by contact date), holdout
    = from that day on: the classifier is judged on later contacts it never saw."""
    dates = np.sort(contacts["contact_date"].to_numpy())
    if len(dates) == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    cut = dates[min(len(dates) - 1, int(np.floor(len(dates) * (1 - holdout_share))))]
    holdout = contacts["contact_date"].to_numpy() >= cut
    return ~holdout, holdout


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return None
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def choose_tier(treated_contacts: int, positives: int, model_auc: float | None, smoothed_auc: float | None,
                config: LoyaltyConfig) -> str:
    """The tier rule of the module doc, as one function the tests check case by case."""
    if treated_contacts == 0:
        return "prior"
    if positives >= config.nbo_min_positive_responses and model_auc is not None and (
        smoothed_auc is None or model_auc > smoothed_auc
    ):
        return "model"
    return "smoothed"


def score_offer(offer_id: str, window_days: float, customers: pd.DataFrame, contacts: pd.DataFrame,
                config: LoyaltyConfig, *, cells: pd.Series | None = None,
                customer_features: Callable[[], np.ndarray] | None = None) -> tuple[pd.DataFrame, OfferModel]:
    """Tonight's propensity of every customer for one offer (rows in the order of ``customers``),
    and what decided it. ``contacts`` are the offer's closed contacts. ``cells`` and
    ``customer_features`` (the classifier's matrix, computed on first use) are the same for every
    offer of a night: score_offers computes them once."""
    strength = float(config.nbo_smoothing_strength)
    customer_prior = prior(customers, window_days, config)
    cells = cell_of(customers) if cells is None else cells
    treated = contacts[contacts["arm"] != "control"]
    control = contacts[contacts["arm"] == "control"]
    positives = int(treated["is_response"].sum())
    model_auc = smoothed_auc = calibration = None
    propensity = customer_prior
    scores_model = None
    if len(treated):
        propensity = smoothed(cells, cell_counts(treated), customer_prior, strength)
        if positives >= config.nbo_min_positive_responses:
            from . import classifier  # scikit-learn only when a model is due

            train, holdout = temporal_split(treated, config.nbo_holdout_share)
            fitted = classifier.fit(treated[train], config.nbo_seed)
            if fitted is not None and holdout.any():
                labels = treated["is_response"].to_numpy(dtype=bool)[holdout]
                model_holdout = fitted.predict(treated[holdout])
                model_auc = auc(labels, model_holdout)
                base = float(treated[train]["is_response"].mean())
                smoothed_holdout = smoothed(cell_of(treated[holdout]), cell_counts(treated[train]), base, strength)
                smoothed_auc = auc(labels, smoothed_holdout)
                scores_model = (fitted, model_holdout, labels)
    tier = choose_tier(len(treated), positives, model_auc, smoothed_auc, config)
    if tier == "model":
        fitted, model_holdout, labels = scores_model
        propensity = fitted.predict(customers) if customer_features is None else fitted.predict_features(customer_features())
        calibration = float(model_holdout.mean() / labels.mean()) if labels.mean() > 0 else None
    ranking, control_rate, incremental = "propensity", None, None
    if len(control) >= config.nbo_min_control_contacts:
        ranking = "uplift"
        control_rate = smoothed(cells, cell_counts(control), float(control["is_response"].mean()), strength)
        incremental = np.clip(propensity - control_rate, -1.0, 1.0)
    frame = pd.DataFrame({
        "propensity": np.clip(propensity, 0.0, 1.0),
        "control_rate": control_rate if control_rate is not None else np.nan,
        "incremental_propensity": incremental if incremental is not None else np.nan,
    })
    return frame, OfferModel(offer_id, tier, ranking, len(treated), positives, len(control), model_auc, smoothed_auc, calibration)


SCORES = ("propensity", "control_rate", "incremental_propensity")


def score_offers(offers: pd.DataFrame, customers: pd.DataFrame, contacts: pd.DataFrame,
                 config: LoyaltyConfig) -> tuple[dict[str, np.ndarray], list[OfferModel]]:
    """Every customer × offer (offers: offer_id, response_window_days, in the order they are
    given): for each of SCORES a matrix of customers × offers (rows in the order of ``customers``,
    columns in the order of ``offers``; NaN where the offer has no control rate), and per offer
    what decided its tier and ranking. Matrices, not a frame of 10M candidate rows with text keys:
    building and handing that to DuckDB cost more than the scoring itself."""
    closed = contacts[contacts["is_window_closed"]]
    cells = cell_of(customers)

    @functools.cache  # computed once, and only when an offer's tier is the model
    def customer_features() -> np.ndarray:
        from . import classifier

        return classifier.features(customers)

    by_offer = {offer_id: group for offer_id, group in closed.groupby("offer_id", sort=False)}
    scores = {name: np.empty((len(customers), len(offers))) for name in SCORES}
    models = []
    for index, offer in enumerate(offers.itertuples()):
        frame, model = score_offer(offer.offer_id, float(offer.response_window_days), customers,
                                   by_offer.get(offer.offer_id, closed.iloc[:0]), config,
                                   cells=cells, customer_features=customer_features)
        for name in SCORES:
            scores[name][:, index] = frame[name].to_numpy(dtype=float)
        models.append(model)
    return scores, models

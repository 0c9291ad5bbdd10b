"""The response classifier of the ``model`` tier: scikit-learn, the only module importing it.

A logistic regression on the customer's purchase features at the contact (log recency, tenure,
purchases and revenue of the last year) and their response cell (one-hot value band × activity
state), standardised, calibrated by Platt scaling over 3 unshuffled folds
(CalibratedClassifierCV, method sigmoid). lbfgs on the same rows gives the same coefficients: the
same night gives the same scores byte for byte (the seed fixes what little randomness is left).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

BANDS = ("vip", "other")
STATES = ("none", "new", "active", "at_risk", "lost")
MIN_PER_CLASS = 3  # each of the 3 calibration folds needs both classes
# BLAS threads for the fits and predictions: the matrices are small (≤ MAX_TRAIN_ROWS × 14), so
# threads buy nothing, and on a shared 2-core machine they spun against each other: 8 fits took
# 20-30 s with OpenBLAS's 2 threads and 7-8 s with 1 (BENCHMARKS.md, next best offer at scale).
BLAS_THREADS = 1
# At most this many training contacts, the latest (a few features need no more; the fit stays
# well under a second per offer however long the history grows).
MAX_TRAIN_ROWS = 50_000


def features(frame: pd.DataFrame) -> np.ndarray:
    recency = frame["recency_days"].to_numpy(dtype=float, na_value=np.nan)
    numeric = np.column_stack([
        np.log1p(np.nan_to_num(recency, nan=10_000.0)),
        np.log1p(frame["tenure_days"].to_numpy(dtype=float, na_value=0.0)),
        np.log1p(frame["purchases_365d"].to_numpy(dtype=float)),
        np.log1p(np.clip(frame["revenue_365d"].to_numpy(dtype=float), 0, None)),
    ])
    bands = frame["value_band"].to_numpy()
    states = frame["activity_state"].to_numpy()
    cells = np.column_stack([(bands == b) & (states == s) for b in BANDS for s in STATES]).astype(float)
    return np.hstack([numeric, cells])


@dataclasses.dataclass(frozen=True)
class Fitted:
    model: CalibratedClassifierCV

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_features(features(frame))

    def predict_features(self, matrix: np.ndarray) -> np.ndarray:
        with threadpool_limits(BLAS_THREADS):
            return self.model.predict_proba(matrix)[:, 1]


def fit(contacts: pd.DataFrame, seed: int) -> Fitted | None:
    """A calibrated classifier on ``contacts`` (their features and is_response), None when a
    class has too few rows to calibrate."""
    contacts = contacts.sort_values(["contact_date", "event_id"]).tail(MAX_TRAIN_ROWS)
    labels = contacts["is_response"].to_numpy(dtype=bool)
    if labels.sum() < MIN_PER_CLASS or (~labels).sum() < MIN_PER_CLASS:
        return None
    base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))
    model = CalibratedClassifierCV(base, method="sigmoid", cv=StratifiedKFold(n_splits=3, shuffle=False))
    with threadpool_limits(BLAS_THREADS):
        model.fit(features(contacts), labels)
    return Fitted(model)

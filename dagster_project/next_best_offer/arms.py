"""The arm of a customer: a persistent hash of the customer id, never a draw.

``md5(salt + ':' + customer_id)``'s first 32 bits as a fraction in [0, 1): below
nbo_control_share the control group, below control + random share the random-eligible arm, else
ranked. The fraction depends on nothing but the id and the salt, so a customer keeps their arm
whoever else arrives, and the sample's simulated history uses this very function.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from ..config import LoyaltyConfig

ARMS = ("control", "random", "ranked")


def hash_fraction(customer_ids: Iterable[str], salt: str) -> np.ndarray:
    prefix = (salt + ":").encode()
    return np.array(
        [int.from_bytes(hashlib.md5(prefix + str(c).encode()).digest()[:4], "big") / 2**32 for c in customer_ids],
        dtype=float,
    )


def arm_of(customer_ids: Iterable[str], config: LoyaltyConfig | None = None) -> list[str]:
    config = config or LoyaltyConfig()
    fraction = hash_fraction(customer_ids, config.nbo_arm_salt)
    control = fraction < config.nbo_control_share
    random = ~control & (fraction < config.nbo_control_share + config.nbo_random_share)
    return np.where(control, "control", np.where(random, "random", "ranked")).tolist()

"""Next best offer: propensity tiers, uplift, ranking, arms and the marts (README "Next best offer")."""

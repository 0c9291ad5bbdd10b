"""Predictive CLV per customer: model (the library behind one interface), fit (the nightly fit, predictions, calibration and the marts they write), assets (Dagster)."""

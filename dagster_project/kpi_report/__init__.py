"""The nightly HTML KPI report: one self-contained page per as-of date, from the published marts.

``data`` reads the marts into plain frames, ``charts`` draws the plotly figures, ``page`` renders
the Jinja2 template, ``publish`` writes the files atomically and ``assets`` is the Dagster asset.
"""

"""Smoke test of the scale benchmark (benchmarks/): on a tiny generated landing folder, the
pipeline (`loyalty run` as a subprocess), the hand-written DuckDB floor and the pandas way must
produce the same flow matrix and CLV table. CI runs only this; the real sizes run by hand
(`python benchmarks/bench.py --sizes 1M,10M,50M --out BENCHMARKS.md`)."""

import datetime as dt

from benchmarks import bench, figures, generate

TRANSACTIONS, CUSTOMERS = 20_000, 1_000


def test_generator_is_exact_and_deterministic(tmp_path):
    params = generate.Params(TRANSACTIONS, CUSTOMERS)
    first = generate.generate(params, tmp_path / "a", quiet=True)
    second = generate.generate(params, tmp_path / "b", quiet=True)
    assert first.summary["transactions"] == TRANSACTIONS
    files = sorted((first.raw_dir / "transactions").glob("*.csv"))
    assert [f.name for f in files] == ["transactions_2023_0.csv", "transactions_2024_0.csv", "transactions_2025_0.csv"]
    rows = sum(len(f.read_text().splitlines()) - 1 for f in files)
    assert TRANSACTIONS < rows < TRANSACTIONS * 1.02  # about 0.5 % exact duplicate rows on top
    for f in files:
        assert f.read_bytes() == (second.raw_dir / "transactions" / f.name).read_bytes()
    assert generate.generate(params, tmp_path / "a", quiet=True).root == first.root  # cached


def test_pipeline_floor_and_pandas_agree(tmp_path):
    project = bench.prepare_project(None, tmp_path / "cache")
    result = bench.run_size(TRANSACTIONS, CUSTOMERS, project=project, work=tmp_path / "work", cache=tmp_path / "cache")

    pipeline, floor, pandas = (result.figures[way] for way in ("pipeline", "floor", "pandas"))
    assert figures.differences(pipeline, floor) == []
    assert figures.differences(pipeline, pandas) == []

    # Real figures: every flow occurs in the latest period, and the flows add up.
    as_of = dt.date.fromisoformat(result.dataset["params"]["as_of"])
    assert as_of == dt.date(2025, 12, 31)
    cells = {key: value for key, value in pipeline["flow"].items() if key[0] == 0}
    flows = {key[3] for key in cells}
    assert flows == {"retained", "upgraded", "downgraded", "new", "recovered", "lost"}
    clv = pipeline["clv"]
    active_now = clv[(0, "total")]["customers"]
    active_before = sum(clv[(1, s)]["customers"] for s in ("super", "top", "middle", "bottom"))
    assert active_now == sum(v["customers"] for k, v in cells.items() if k[3] != "lost")
    assert active_before == sum(v["customers"] for k, v in cells.items() if k[1] is not None)
    assert 0 < clv[(0, "total")]["retention_rate"] < 1
    assert clv[(0, "super")]["clv"] > clv[(0, "top")]["clv"] > clv[(0, "middle")]["clv"] > clv[(0, "bottom")]["clv"] > 0
    assert abs(clv[(0, "bottom")]["clv_index"] - 1) < 1e-12

    # The measurements themselves.
    run = result.pipeline[0]
    assert run.ok and run.wall_s > 0 and run.cpu_s > 0 and run.peak_rss_bytes > 50 * 2**20
    labels = [label for label, _ in result.stages["stages"]]
    assert any(label.startswith("ingest: transactions") for label in labels)
    assert any(label.startswith("dbt process") for label in labels)
    assert result.floor[0].ok and result.pandas[0].ok

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


def test_engine_option_without_running_spark(tmp_path):
    """`loyalty bench --engine spark`: the pipeline gets a --config file with engine: spark that the
    configuration accepts, and its report block sits beside the DuckDB one (no Spark run here;
    tests/test_spark_engine.py runs the engine)."""
    from dagster_project.config import resolve_config

    settings = bench.engine_settings("spark", ["spark_driver_memory=4g"])
    assert settings == {"engine": "spark", "spark_driver_memory": "4g"}
    config = tmp_path / "engine.yml"
    config.write_text("".join(f"{key}: {bench.json.dumps(value)}\n" for key, value in settings.items()))
    effective = resolve_config(config)
    assert (effective.engine, effective.spark_driver_memory) == ("spark", "4g")

    project = bench.Project(tmp_path, tmp_path / "python", "abc", True)
    cmd, _ = project.run_command(dt.date(2025, 12, 31), tmp_path / "raw", tmp_path / "w.duckdb", config)
    assert cmd[-2:] == ["--config", str(config)]
    assert "--config" not in project.run_command(dt.date(2025, 12, 31), tmp_path / "raw", tmp_path / "w.duckdb")[0]

    def run(name, wall):
        return bench.Measurement(name, wall_s=wall, cpu_s=wall, returncode=0, extra={"load_before": 1.0})

    result = bench.SizeResult(1_000_000, 50_000, {"transactions": 1_000_000, "csv_bytes": 4e7}, [run("pipeline", 300.0)],
                              [run("floor", 1.5)], [run("pandas", 4.0)], {}, {}, ["pipeline = floor"],
                              engine="spark", duckdb_pipeline=[run("pipeline_duckdb", 30.0)])
    info = {"cores": 2, "cpu": "", "memory_gb": 23.5, "kernel": "", "load_average": (1, 1, 1),
            "versions": {"python": "3.11"}, "engine_settings": settings}
    report = bench.render_report({1_000_000: result}, info, project, 0.0, ["--engine", "spark"], total_s=1.0)
    assert "| 300.0 | 300.0 | — | 0.00 | 30.0 | 30.0 | 0.00 | 1.5 | 4.0 | 10.0 (CPU 10.0) | 200 |" in report
    assert "Targets" not in report and report.startswith("## Benchmarks: the pipeline with engine: spark")

    out = tmp_path / "BENCHMARKS.md"
    duckdb_block = f"{bench.BEGIN_MARK}\nduckdb figures\n{bench.END_MARK}"
    out.write_text(f"# Benchmarks\n\n{duckdb_block}\n\n## Spark engine (local mode)\n\nreading\n")
    for _ in range(2):  # appended once, then replaced in place
        bench.write_report(out, report, "spark")
    text = out.read_text()
    begin, end = bench.markers("spark")
    assert duckdb_block in text and text.count(begin) == 1 and text.count(end) == 1
    assert text.index("reading") < text.index(begin) and "### Machine and versions" in text


def _size(n, pipeline_s, floor_s, rss_gb=1.0, load=0.5, incremental_s=None, pandas_s=None):
    def measured(name, wall, rss=0.5):
        return bench.Measurement(name, wall_s=wall, peak_rss_bytes=int(rss * bench.GB), returncode=0,
                                 extra={"load_before": load, "load_after": load})
    return bench.SizeResult(
        n, n // 20, {}, [measured("pipeline", pipeline_s, rss_gb)], [measured("floor", floor_s)],
        [measured("pandas", pandas_s)] if pandas_s else [], {}, {}, [],
        incremental=measured("incremental", incremental_s) if incremental_s else None,
    )


def test_the_targets_table_holds_the_issues_ratios_to_the_floor_of_the_same_run():
    rows = {name: (measured, ok) for name, _, measured, ok in bench.evaluate_targets({
        1_000_000: _size(1_000_000, 14.0, 1.0, load=2.5),
        10_000_000: _size(10_000_000, 30.0, 7.5, rss_gb=3.5, incremental_s=6.0, pandas_s=33.0),
        50_000_000: _size(50_000_000, 120.0, 30.0, rss_gb=7.0),
    })}
    assert rows["incremental night (10M warehouse + 1 day of new rows) ÷ floor at 10M"] == ("0.80 (6.0 s ÷ 7.5 s)", True)
    assert rows["full run 10M ÷ floor 10M"] == ("4.0 (30.0 s ÷ 7.5 s)", True)
    assert rows["full run 50M ÷ floor 50M"] == ("4.0 (120.0 s ÷ 30.0 s)", False)
    assert rows["fixed cost: full run at 1M (wall)"] == ("14.0 s (load 2.5)", True)  # a pass holds even when loaded
    assert rows["pandas way ÷ pipeline at 10M"] == ("1.10", True)
    assert rows["peak memory at 10M"] == ("3.50 GB", False)
    assert rows["peak memory at 50M"] == ("7.00 GB", True)
    assert rows["100M transactions, full run"] == ("—", None)  # not measured is not a pass
    equality = "the incremental night then a fresh full run on its date (a week of nights: tests/test_incremental_nights.py)"
    assert rows[equality] == ("—", None)
    checked = _size(10_000_000, 30.0, 7.5, incremental_s=6.0)
    checked.incremental.extra["fresh_equal"] = "equal to a fresh full run: 26 tables, 4 export files"
    assert {n: (m, ok) for n, _, m, ok in bench.evaluate_targets({10_000_000: checked})}[equality] == (
        "equal to a fresh full run: 26 tables, 4 export files", True)
    slow = {name: ok for name, _, _, ok in bench.evaluate_targets({1_000_000: _size(1_000_000, 20.0, 1.0, load=2.5)})}
    assert slow["fixed cost: full run at 1M (wall)"] is None  # a miss on a loaded machine is not the issue's condition
    quiet = {name: ok for name, _, _, ok in bench.evaluate_targets({1_000_000: _size(1_000_000, 20.0, 1.0, load=0.4)})}
    assert quiet["fixed cost: full run at 1M (wall)"] is False


def test_the_dbt_sql_replay_runs_each_nodes_statements_in_order_on_a_copy(tmp_path):
    """benchmarks/profile_pipeline.replay_dbt_sql: the statements of a dbt.log, node by node in the
    order the nodes started (dbt's two threads interleave them), without BEGIN/COMMIT, on a copy."""
    import json

    import duckdb

    from benchmarks import profile_pipeline

    warehouse = tmp_path / "night" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table raw_rows as select range as n from range(1000)")

    def query(node, sql):
        return json.dumps({"info": {"name": "SQLQuery"}, "data": {"sql": sql, "node_info": {"node_name": node}}})

    log = tmp_path / "dbt.log"
    log.write_text("\n".join([
        "not json: dbt writes plain lines too",
        query("model_a", "BEGIN"),
        query("model_a", "create table warehouse.main.a__dbt_tmp as select n * 2 as m from warehouse.main.raw_rows"),
        query("model_b", "BEGIN"),  # thread 2 starts model_b: its lines interleave with model_a's
        query("model_a", "COMMIT"),
        query("model_b", "create table warehouse.main.b as select sum(m) as total from warehouse.main.a"),
        query("model_a", "alter table warehouse.main.a__dbt_tmp rename to a"),
        json.dumps({"info": {"name": "SQLQueryStatus"}, "data": {"elapsed": 0.1}}),
        query("test_c", "select * from warehouse.main.missing_table"),
        # A full build's first creation of a table under its own name: the copy's is dropped first.
        query("model_d", '/* {"node_id": "model_d"} */\n  create  table\n "warehouse"."main"."raw_rows" as (select 1 as n)'),
        # A first build's table materialisation: the tmp table renamed to a name the copy holds.
        query("model_e", 'create table "warehouse"."main"."e__dbt_tmp" as select 1 as n'),
        query("model_e", 'alter table "warehouse"."main"."e__dbt_tmp" rename to "raw_rows"'),
    ]))

    statements = profile_pipeline.dbt_statements(log)
    assert [node for node, _ in statements] == ["model_a", "model_a", "model_b", "test_c", "model_d", "model_e", "model_e"]
    replay = profile_pipeline.replay_dbt_sql(log, warehouse, tmp_path / "work")
    assert (replay["statements"], replay["nodes"], replay["failed"]) == (7, 5, 1)
    # model_b read `a` after model_a's rename, although its line came first: node by node, in start order.
    assert replay["failures"][0].startswith("test_c: Catalog Error")
    assert {node for node, _ in replay["slowest"]} == {"model_a", "model_b", "test_c", "model_d", "model_e"}
    assert replay["seconds"] > 0 and list((tmp_path / "work").iterdir()) == []  # the copy is gone
    with duckdb.connect(str(warehouse), read_only=True) as con:  # the measured warehouse is untouched
        assert [t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()] == ["raw_rows"]

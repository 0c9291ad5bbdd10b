"""Where the pipeline's time goes, one level deeper than the stage times (used by bench --profile).

1. Ingest SQL: the pipeline's ingest runs again in a separate process on a fresh warehouse, with the
   project's ``connect()`` patched to hand out a connection that times every statement (and
   ``sha256_of`` timed); the dbt step is stopped before it starts. Result: seconds per statement
   shape, slowest first.
2. dbt models and tests: every node's compiled SQL from the measured run, re-run with
   ``EXPLAIN (ANALYZE, FORMAT JSON)`` read-only against that run's warehouse: the operators that take
   the time (READ, HASH_GROUP_BY, WINDOW, HASH_JOIN ...) with their row counts.
3. A run's dbt SQL without dbt (``replay_dbt_sql``): every statement its dbt.log records, replayed
   in one DuckDB connection on a copy of its warehouse. What the models and tests cost in DuckDB
   alone, with no dbt, Dagster or Python step around them (the full run here; bench.py replays
   every incremental night's too).

Best effort: the project changes under it, so every failure is reported, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

INGEST_PROBE = textwrap.dedent(
    r'''
    import contextlib, json, re, sys, time
    from pathlib import Path
    timings = {}
    order = []

    def note(label, seconds):
        entry = timings.setdefault(label, [0.0, 0])
        entry[0] += seconds
        entry[1] += 1
        order.append((label, seconds))

    def shape(sql):
        text = re.sub(r"\s+", " ", sql).strip()
        text = re.sub(r"'[^']*'", "'…'", text)
        return text[:160]

    class TimingConnection:
        def __init__(self, con):
            self._con = con
        def execute(self, sql, *args, **kwargs):
            started = time.perf_counter()
            print("PROBE-START\t" + shape(sql), file=sys.stderr, flush=True)
            try:
                return self._con.execute(sql, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                note(shape(sql), elapsed)
                print(f"PROBE-DONE\t{elapsed:.3f}\t" + shape(sql), file=sys.stderr, flush=True)
        def executemany(self, sql, *args, **kwargs):
            started = time.perf_counter()
            try:
                return self._con.executemany(sql, *args, **kwargs)
            finally:
                note("executemany: " + shape(sql), time.perf_counter() - started)
        def __getattr__(self, name):
            return getattr(self._con, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._con.__exit__(*exc)

    import dagster_project.warehouse as warehouse
    original_connect = warehouse.connect

    @contextlib.contextmanager
    def timed_connect(*args, **kwargs):
        with original_connect(*args, **kwargs) as con:
            yield TimingConnection(con)

    import importlib, pkgutil, dagster_project
    for info in pkgutil.iter_modules(dagster_project.__path__):
        try:
            importlib.import_module(f"dagster_project.{info.name}")
        except Exception:
            pass
    for name, module in list(sys.modules.items()):
        if name.startswith("dagster_project") and getattr(module, "connect", None) is original_connect:
            module.connect = timed_connect
        original_sha = getattr(module, "sha256_of", None)
        if name.startswith("dagster_project") and callable(original_sha):
            def timed_sha(path, _original=original_sha):
                started = time.perf_counter()
                try:
                    return _original(path)
                finally:
                    note("python: sha256 of a landing file", time.perf_counter() - started)
            module.sha256_of = timed_sha

    class StopBeforeDbt(Exception):
        pass

    from dagster_dbt import DbtCliResource
    def no_dbt(self, *args, **kwargs):
        raise StopBeforeDbt("profile: ingest done, dbt not run")
    DbtCliResource.cli = no_dbt

    from dagster_project.cli import main
    started = time.perf_counter()
    try:
        main(sys.argv[2:])
    except SystemExit:
        pass
    total = time.perf_counter() - started
    rows = sorted(((label, round(s, 3), n) for label, (s, n) in timings.items()), key=lambda r: -r[1])
    Path(sys.argv[1]).write_text(json.dumps({"total_s": round(total, 2), "statements": rows,
                                             "sequence": [(l, round(s, 3)) for l, s in order if s > 0.2]}))
    '''
)


def profile_ingest(project, landing: Path, as_of: dt.date, out_dir: Path, timeout: float | None = None) -> dict:
    from benchmarks.bench import measure

    out_dir.mkdir(parents=True, exist_ok=True)
    warehouse = out_dir / "ingest_profile.duckdb"
    warehouse.unlink(missing_ok=True)
    probe = out_dir / "ingest_probe.py"
    probe.write_text(INGEST_PROBE)
    result = out_dir / "ingest_profile.json"
    result.unlink(missing_ok=True)
    m = measure(
        "ingest-probe",
        [str(project.python), str(probe), str(result), "run", "--as-of", as_of.isoformat(), "--raw-dir", str(landing),
         "--warehouse", str(warehouse)],
        cwd=project.root, env={"PYTHONPATH": str(project.root)}, timeout=timeout,
    )
    for leftover in out_dir.glob("ingest_profile.duckdb*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    summary = {"wall_s": round(m.wall_s, 1), "peak_rss_gb": round(m.peak_rss_gb, 2), "stopped": m.killed}
    if result.exists():
        return {**json.loads(result.read_text()), **summary}
    # Stopped (or failed) before the end: rebuild the table from the lines printed as it went.
    timings: dict[str, list] = {}
    running = None
    for t, _, text in m.lines:
        parts = text.split("\t")
        if parts[0] == "PROBE-START" and len(parts) == 2:
            running = (t, parts[1])
        elif parts[0] == "PROBE-DONE" and len(parts) == 3:
            entry = timings.setdefault(parts[2], [0.0, 0])
            entry[0] += float(parts[1])
            entry[1] += 1
            running = None
    rows = sorted(((k, round(v[0], 3), v[1]) for k, v in timings.items()), key=lambda r: -r[1])
    if running is not None:
        summary["running_when_stopped"] = {"statement": running[1], "for_s": round(m.wall_s - running[0], 1)}
    if not rows and m.returncode not in (0, None) and not m.killed:
        return {"error": f"ingest probe failed (exit {m.returncode}): {m.tail()[-2000:]}", **summary}
    return {"statements": rows, "total_s": round(m.wall_s, 1), **summary}


def _flatten(node: dict, depth: int = 0, out: list | None = None) -> list:
    out = [] if out is None else out
    if isinstance(node, dict) and "type" in node:
        extra = node.get("extra_info") or {}
        detail = "; ".join(
            f"{k}: {str(v)[:80]}" for k, v in extra.items()
            if k in ("Groups", "Aggregates", "Function", "Table", "Text", "Join Type", "Conditions", "Partitions",
                     "Projections", "Filters", "File Filters", "Total Files Read")
        )
        out.append({"type": node["type"], "seconds": round(float(node.get("timing") or 0.0), 3),
                    "rows": node.get("intermediate_rows") or node.get("operator_cardinality"),
                    "detail": detail[:240], "depth": depth})
    for child in (node.get("children") or []) if isinstance(node, dict) else []:
        _flatten(child, depth + 1, out)
    return out


def profile_dbt(warehouse: Path, dbt_info: dict, top_nodes: int = 8) -> dict:
    """EXPLAIN ANALYZE of the slowest dbt nodes' compiled SQL against the measured run's warehouse."""
    import duckdb

    target = Path(dbt_info.get("target", ""))
    results_file = target / "run_results.json"
    if not results_file.exists():
        return {"error": "the measured run did not finish `dbt build` (no run_results.json): no EXPLAIN ANALYZE; "
                         "the dbt nodes that had finished are listed with the stages above"}
    compiled = {r["unique_id"]: r.get("compiled_code") for r in json.loads(results_file.read_text()).get("results", [])}
    nodes = [n for n in dbt_info.get("nodes", []) if n["kind"] in ("model", "test")][:top_nodes]
    out = []
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for node in nodes:
            sql = compiled.get(node["id"])
            if not sql:
                out.append({"node": node["name"], "kind": node["kind"], "dbt_seconds": node["seconds"],
                            "error": "compiled SQL not found"})
                continue
            try:
                plan = con.execute(f"explain (analyze, format json) {sql}").fetchall()[0][1]
                tree = json.loads(plan)
                operators = []
                for root in tree.get("operator", []) if isinstance(tree.get("operator"), list) else [tree]:
                    _flatten(root, 0, operators)
                operators = [o for o in operators if o["type"] not in ("RESULT_COLLECTOR", "EXPLAIN_ANALYZE")]
                total = sum(o["seconds"] for o in operators)
                out.append({
                    "node": node["name"], "kind": node["kind"], "dbt_seconds": node["seconds"],
                    "operator_seconds": round(total, 2),
                    "top_operators": sorted(operators, key=lambda o: -o["seconds"])[:6],
                })
            except Exception as error:  # noqa: BLE001 - best effort
                out.append({"node": node["name"], "kind": node["kind"], "dbt_seconds": node["seconds"],
                            "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"})
    finally:
        con.close()
    return {"nodes": out}


TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK"}
_NAME = r"(?:\"[^\"]+\"|\w+)"
# A statement that creates a persistent table under a name (group 1: temporary, group 2: the name) ...
CREATE_TABLE = re.compile(rf"^\s*(?:/\*.*?\*/)?\s*create\s+(?:or\s+replace\s+)?(temp(?:orary)?\s+)?table\s+"
                          rf"(?:if\s+not\s+exists\s+)?({_NAME}(?:\.{_NAME})*)", re.IGNORECASE | re.DOTALL)
# ... or renames a relation (group 1: table or view, 2: its schema, 3: the new name).
RENAME = re.compile(rf"^\s*(?:/\*.*?\*/)?\s*alter\s+(table|view)\s+((?:{_NAME}\.)*){_NAME}\s+rename\s+to\s+({_NAME})",
                    re.IGNORECASE | re.DOTALL)


def _already_built(sql: str) -> list[str]:
    """Drops to run before replaying ``sql`` on a copy of a built warehouse: a full build made its
    tables and views under names that did not exist yet (a first build of an incremental model; the
    table materialisation's rename of X__dbt_tmp to X with no X to move aside), which the copy holds."""
    created = CREATE_TABLE.search(sql)
    if created and not created.group(1):
        return [f"drop table if exists {created.group(2)}"]
    renamed = RENAME.search(sql)
    if renamed:
        return [f"drop {renamed.group(1)} if exists {renamed.group(2)}{renamed.group(3)}"]
    return []


def dbt_statements(dbt_log: Path) -> list[tuple[str, str]]:
    """(node, SQL) of every statement a dbt.log records, node by node in the order the nodes started
    (dbt's threads interleave them in the log), without transaction control: each statement runs on
    its own (the threads' BEGIN/COMMIT would nest in one connection)."""
    by_node: dict[str, list[str]] = {}
    for line in dbt_log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("info", {}).get("name") != "SQLQuery":
            continue
        data = event.get("data", {})
        sql = data.get("sql") or ""
        if sql.strip().upper() in TRANSACTION_CONTROL:
            continue
        by_node.setdefault(data.get("node_info", {}).get("node_name") or "(dbt itself)", []).append(sql)
    return [(node, sql) for node, statements in by_node.items() for sql in statements]


def replay_dbt_sql(dbt_log: Path, warehouse: Path, work: Path) -> dict:
    """Every statement of ``dbt_log`` in one DuckDB connection on a copy of ``warehouse``, one after
    the other, timed: what the SQL of a dbt build costs without dbt. Meant for the incremental night
    on a copy of its own warehouse: its compiled SQL names the as-of dates literally, and the ops
    tables it reads (the changed customers, the build mode) are still there, so each statement does
    the night's work again (the recomputed customers, the carried rows, every mart and test). On a
    full run's warehouse, what the build created under a new name is dropped first, untimed
    (``_already_built``). DuckDB's own defaults (threads = cores), as the floor has them."""
    import duckdb

    statements = dbt_statements(dbt_log)
    # dbt-duckdb names the database after the file's stem: the copy keeps the name.
    work.mkdir(parents=True, exist_ok=True)
    copy = work / warehouse.name
    shutil.copyfile(warehouse, copy)
    seconds: dict[str, float] = {}
    failures: list[str] = []
    try:
        with duckdb.connect(str(copy)) as con:
            started = time.perf_counter()
            for node, sql in statements:
                for drop in _already_built(sql):
                    con.execute(drop)
                began = time.perf_counter()
                try:
                    con.execute(sql).fetchall()
                except duckdb.Error as error:
                    failures.append(f"{node}: {str(error).splitlines()[0][:160]}")
                seconds[node] = seconds.get(node, 0.0) + time.perf_counter() - began
            total = time.perf_counter() - started
            threads_used = con.execute("select current_setting('threads')").fetchone()[0]
    finally:
        for leftover in work.glob(copy.name + "*"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    return {
        "statements": len(statements), "nodes": len(seconds), "seconds": round(total, 3), "threads": threads_used,
        "failures": failures[:20], "failed": len(failures),
        "slowest": [[node, round(s, 3)] for node, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:10]],
    }


def replay_run(dbt_info: dict, warehouse: Path, work: Path) -> dict:
    """``replay_dbt_sql`` of a measured run (the dbt part of its stages), or why not: best effort,
    never raises (a profile must not fail the benchmark)."""
    if not dbt_info.get("target"):
        return {"error": "the measured pipeline run did not get to dbt"}
    try:
        return replay_dbt_sql(Path(dbt_info["target"]) / "dbt.log", warehouse, work)
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {error}"}


def render_replay(replay: dict, floor_s: float | None, floor_label: str, run: str = "night") -> str:
    if replay.get("error"):
        return f"The {run}'s dbt SQL without dbt: replay failed: {replay['error'][:300]}"
    ratio = f" = {replay['seconds'] / floor_s:.2f} × the floor at {floor_label} ({floor_s:.1f} s)" if floor_s else ""
    failed = (f" {replay['failed']} statement(s) failed, so the figure is a lower bound: "
              + "; ".join(replay["failures"][:3])) if replay.get("failed") else ""
    slowest = ", ".join(f"{node} {s:.2f} s" for node, s in replay["slowest"][:8])
    return (f"The {run}'s dbt SQL without dbt (`profile_pipeline.replay_dbt_sql`: the {replay['statements']} statements "
            f"of its dbt.log, {replay['nodes']} nodes, one after the other in one DuckDB connection with "
            f"{replay['threads']} threads, on a copy of its warehouse): **{replay['seconds']:.2f} s**{ratio}."
            f"{failed} Slowest nodes: {slowest}.")


def profile(project, landing: Path, as_of: dt.date, out_dir: Path, dbt_info: dict, warehouse: Path,
            timeout: float | None = None) -> dict:
    result: dict = {}
    try:
        result["dbt"] = profile_dbt(warehouse, dbt_info) if dbt_info.get("target") else {
            "error": "the measured pipeline run did not get to dbt"}
    except Exception as error:  # noqa: BLE001
        result["dbt"] = {"error": f"{type(error).__name__}: {error}"}
    result["dbt_sql"] = replay_run(dbt_info, warehouse, out_dir / "replay")
    try:
        result["ingest"] = profile_ingest(project, landing, as_of, out_dir, timeout)
    except Exception as error:  # noqa: BLE001
        result["ingest"] = {"error": f"{type(error).__name__}: {error}"}
    return result


def render(profile_result: dict, label: str, floor_s: float | None = None) -> str:
    """Markdown for the report."""
    lines = [f"#### Profile at {label}", ""]
    if profile_result.get("dbt_sql"):
        lines += [render_replay(profile_result["dbt_sql"], floor_s, label, "full run"), ""]
    ingest = profile_result.get("ingest") or {}
    if ingest.get("error"):
        lines.append(f"Ingest profile failed: {ingest['error'][:300]}")
    elif ingest.get("statements") is not None:
        stopped = ""
        if ingest.get("stopped"):
            running = ingest.get("running_when_stopped") or {}
            stopped = (f"; STOPPED ({ingest['stopped']})"
                       + (f" while running `{running.get('statement', '')[:100]}` for {running.get('for_s')} s" if running else ""))
        lines.append(f"Ingest, statement by statement (a separate run of the ingest assets, process wall "
                     f"{ingest.get('wall_s', ingest.get('total_s'))} s incl. start-up, peak RSS "
                     f"{ingest.get('peak_rss_gb', '?')} GB{stopped}):")
        lines.append("")
        lines.append("| seconds | calls | statement (shape) |")
        lines.append("| ---: | ---: | --- |")
        for label_, seconds, calls in ingest["statements"][:10]:
            lines.append(f"| {seconds:.1f} | {calls} | `{label_.replace('|', '¦')[:150]}` |")
        lines.append("")
    dbt = profile_result.get("dbt") or {}
    if dbt.get("error"):
        lines.append(f"dbt profile failed: {dbt['error'][:300]}")
    for node in dbt.get("nodes", []):
        if node.get("error"):
            lines.append(f"- {node['kind']} `{node['node']}` ({node['dbt_seconds']:.1f} s in dbt): {node['error']}")
            continue
        ops = ", ".join(
            f"{o['type']} {o['seconds']:.1f} s ({o['rows']:,} rows{'; ' + o['detail'][:70] if o['detail'] else ''})"
            if isinstance(o.get("rows"), int) else f"{o['type']} {o['seconds']:.1f} s"
            for o in node["top_operators"][:4]
        )
        lines.append(f"- {node['kind']} `{node['node']}`: {node['dbt_seconds']:.1f} s in dbt; EXPLAIN ANALYZE: {ops}")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print("used by benchmarks/bench.py --profile", file=sys.stderr)

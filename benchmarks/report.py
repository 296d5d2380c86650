"""Turn a pytest-benchmark JSON file into the figures of benchmarks/README.md.

Usage: python benchmarks/report.py [benchmarks/results.json] [--write]

Prints the figures (Markdown): the performance issue's targets with what was measured and
whether each is met, every case with its throughput and the kernel's ratio over each baseline,
where ``margin()``'s time goes (validate / compute / tables), the scaling sweep, and the
machine.  With ``--write`` it also replaces the block between the FIGURES markers in
benchmarks/README.md and draws benchmarks/scaling.png (needs matplotlib: ``pip install -e
'.[bench]'``, which `make bench` does).
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
START, END = "<!-- FIGURES:START -->", "<!-- FIGURES:END -->"
COMMAND = ("make bench  # python -m pytest benchmarks --benchmark-enable "
           "--benchmark-json=benchmarks/results.json; python benchmarks/report.py "
           "benchmarks/results.json --write")

# the pmrisk case each baseline group's other cases are compared with, per unit of work
REFERENCE = {
    "baselines-oracle": "test_oracle_pmrisk_kernel_200",
    "baselines-options": "test_options_pmrisk_kernel",
}
MARGIN_CASES = ("test_grid_1acct_2k", "test_seed_1acct_6k",
                "test_backtest_100k[all-tables]", "test_backtest_100k[accounts-only]",
                "test_accounts_10k", "test_accounts_10k_multi[standard]",
                "test_accounts_10k_multi[deribit_pme]", "test_backtest_100k_multi[standard]",
                "test_backtest_100k_multi[deribit_pme]")


# -- formatting ------------------------------------------------------------------------------

def secs(s):
    if s is None:
        return "–"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def rate(x, what):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M {what}/s"
    return f"{x:,.0f} {what}/s"


def ratio(x):
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


# -- reading ---------------------------------------------------------------------------------

class Results:
    def __init__(self, data):
        self.data = data
        self.by_name = {b["name"]: b for b in data["benchmarks"]}

    def get(self, name):
        return self.by_name.get(name)

    def median(self, name):
        b = self.get(name)
        return b["stats"]["median"] if b else None

    def info(self, name, key, default=None):
        b = self.get(name)
        return b.get("extra_info", {}).get(key, default) if b else default

    def rate(self, name, unit):
        """Work per second of case ``name`` in ``unit`` (from extra_info["work"])."""
        n = (self.info(name, "work") or {}).get(unit)
        m = self.median(name)
        return n / m if n and m else None


def _met(value, target, stretch, higher_is_better):
    if value is None:
        return "not run"
    ok = (lambda v, t: v >= t) if higher_is_better else (lambda v, t: v <= t)
    if ok(value, stretch):
        return "**stretch**"
    if ok(value, target):
        return "target"
    return "**missed**"


# -- tables ----------------------------------------------------------------------------------

def targets_table(r):
    rows = ["| figure (issue 4) | measured | target | stretch | met |", "|---|---|---|---|---|"]

    def add(label, measured, target, stretch, met):
        rows.append(f"| {label} | {measured} | {target} | {stretch} | {met} |")

    g = "test_grid_1acct_2k"
    if r.get(g):
        m = r.median(g)
        add("`grid-1acct-2k`: `margin()`, 1 account, 2,000 positions (1,600 options) × "
            f"{r.info(g, 'work')['cells'] // r.info(g, 'work')['positions']} scenarios, "
            "`deribit_pme`",
            f"{secs(m)} ({rate(r.rate(g, 'positions'), 'positions')}, "
            f"{rate(r.rate(g, 'cells'), 'position-scenarios')})",
            "≤ 1 ms", "≤ 0.3 ms", _met(m, 1e-3, 0.3e-3, False))
    s = "test_seed_1acct_6k"
    if r.get(s):
        m = r.median(s)
        add(f"`seed-1acct-6k`: `margin()`, 1 account, 6,000 positions (5,000 options), "
            f"10 underlyings, `standard`: {r.info(s, 'joint_scenarios'):,} joint scenarios "
            f"({r.info(s, 'joint_scenarios_3_vol_states'):,} × 3 vol states + tails, "
            f"{r.info(s, 'joint_scenario_cells'):,} cells)",
            f"{secs(m)} ({rate(r.rate(s, 'positions'), 'positions')}, "
            f"{rate(r.rate(s, 'cells'), 'position-scenarios')})",
            "≤ 100 ms", "≤ 30 ms", _met(m, 0.1, 0.03, False))
    for b, what in (("test_backtest_100k[all-tables]", "accounts, units and positions tables"),
                    ("test_backtest_100k[accounts-only]", "`tables=(\"accounts\",)`")):
        if r.get(b):
            x = r.rate(b, "snapshots")
            n = r.info(b, "work")["snapshots"]
            add(f"`backtest-100k`: one `margin()` over a `time` column, {n:,} (time, "
                f"account) snapshots × 10 positions (half options), `deribit_pme`, {what}",
                f"{rate(x, 'snapshots')} ({secs(r.median(b))} per call)",
                "≥ 200,000/s", "≥ 1,000,000/s", _met(x, 2e5, 1e6, True))
    w = "test_first_call[warm-cache]"
    if r.get(w):
        t = r.info(w, "total_s")
        add("`first-call`, warm cache: fresh process, `import pmrisk` + first `margin()` on "
            "the demo book (`standard`)",
            f"{secs(t)} (import {secs(r.info(w, 'import_s'))} + first call "
            f"{secs(r.info(w, 'first_margin_s'))}; whole process {secs(r.median(w))})",
            "≤ 1.0 s", "≤ 0.5 s", _met(t, 1.0, 0.5, False))
    c = "test_first_call[empty-cache]"
    if r.get(c):
        add("`first-call`, empty cache: the same, compiling every kernel it needs",
            f"{secs(r.info(c, 'total_s'))} (import {secs(r.info(c, 'import_s'))} + first call "
            f"{secs(r.info(c, 'first_margin_s'))})", "–", "–", "reported")
    mem = "test_memory_seed_1acct_6k"
    if r.get(mem):
        g_mb = r.info(mem, "growth_mb")
        add("`memory`: peak RSS growth during one `seed-1acct-6k` `margin()` (fresh process, "
            "kernels loaded)",
            f"{g_mb:.0f} MB (max of rounds {r.info(mem, 'growth_mb_max'):.0f} MB; the whole "
            f"process peaks at {r.info(mem, 'peak_process_mb'):.0f} MB)",
            "≤ 300 MB", "≤ 100 MB", _met(g_mb, 300, 100, False))
    k, o = "test_oracle_pmrisk_kernel_200", "test_oracle_numpy_200"
    if r.get(k) and r.get(o):
        x = r.rate(k, "cells") / r.rate(o, "cells")
        add("kernel vs numpy oracle: `instrument_pnl` vs `tests/oracles.py` on 200 instruments "
            "× 35 scenarios (cells/s)",
            f"{ratio(x)} ({rate(r.rate(k, 'cells'), 'cells')} vs "
            f"{rate(r.rate(o, 'cells'), 'cells')})", "≥ 30×", "≥ 100×",
            _met(x, 30, 100, True))
    k = "test_options_pmrisk_kernel"
    ceil = [n for n in ("test_options_minimal_loop", "test_options_minimal_loop_parallel")
            if r.get(n)]
    if r.get(k) and ceil:
        best = max(ceil, key=lambda n: r.rate(n, "option revaluations"))
        x = r.rate(k, "option revaluations") / r.rate(best, "option revaluations")
        detail = ", ".join(f"{'parallel' if n.endswith('parallel') else 'serial'} "
                           f"{ratio(r.rate(k, 'option revaluations') / r.rate(n, 'option revaluations'))}"  # noqa: E501
                           for n in ceil)
        add("option revaluations/s vs the hoisted minimal loop (1,600 options × 35 scenarios; "
            "the faster of its serial and `prange` versions)",
            f"{ratio(x)} ({rate(r.rate(k, 'option revaluations'), 'revaluations')}; "
            f"{detail})", "≥ 0.7×", "≥ 1.0×", _met(x, 0.7, 1.0, True))
    for m in ("deribit_pme", "standard"):                 # issue 5: the real-time monitor
        name = f"test_monitor_10k[{m}]"
        if r.get(name):
            i = lambda key, name=name: r.info(name, key)  # noqa: E731
            add(f"`monitor-10k` (issue 5): `Monitor.update` on a tick moving one underlying, "
                f"{i('accounts'):,} accounts × 20 positions on 3 underlyings, `{m}`, "
                f"{i('ticks'):,} ticks",
                f"p50 {i('p50_ms'):.2f} ms, p99 {i('p99_ms'):.2f} ms (max {i('max_ms'):.2f} "
                f"ms); {ratio(i('speedup_p50'))} faster than `margin()` on everything "
                f"({secs(i('margin_s'))})", "p99 ≤ 20 ms", "p99 ≤ 5 ms",
                _met(i("p99_ms"), 20, 5, False))
    alone, whole = (f"test_monitor_10k_feed[{k}]" for k in ("moved-row", "whole-index"))
    if r.get(alone) and r.get(whole):                     # issue 11: unchanged rows are free
        a, w = (lambda key, n=n: r.info(n, key) for n in (alone, whole))
        x = w("p99_ms") / a("p99_ms")
        add(f"`monitor-10k` feed (issue 11): a tick carrying the whole index table "
            f"({w('index_rows')} rows: unchanged underlyings and USDT beside the moved one) vs "
            f"the moved row alone, {w('accounts'):,} linear accounts × 20 positions, "
            f"`deribit_pme`, {w('ticks'):,} ticks",
            f"p50 {w('p50_ms'):.2f} / p99 {w('p99_ms'):.2f} ms vs p50 {a('p50_ms'):.2f} / "
            f"p99 {a('p99_ms'):.2f} ms ({ratio(x)} at p99)", "p99 ≤ 1.2× the row alone",
            "p99 ≤ 1.05×", _met(x, 1.2, 1.05, False))
    return rows


def engine_table(r):
    """Issue 11's speed targets ("one engine"): ``grid-1acct-2k`` against the hoisted minimal
    option loop of the same run and in absolute time, the ``deribit_pme`` tick, and the
    ``backtest-100k`` rate (both table choices)."""
    rows = ["| figure (issue 11) | measured | target | stretch | met |",
            "|---|---|---|---|---|"]

    def add(label, measured, target, stretch, met):
        rows.append(f"| {label} | {measured} | {target} | {stretch} | {met} |")

    g, loop = "test_grid_1acct_2k", "test_options_minimal_loop"
    if r.get(g):
        m = r.median(g)
        if r.get(loop):
            x = m / r.median(loop)
            add("`grid-1acct-2k` end to end / the hoisted minimal option loop on its 1,600 "
                "options (serial, same run)", f"{ratio(x)} ({secs(m)} / "
                f"{secs(r.median(loop))})", "≤ 2×", "≤ 1.3×", _met(x, 2.0, 1.3, False))
        add("`grid-1acct-2k` end to end on this machine", secs(m), "≤ 2 ms", "≤ 1 ms",
            _met(m, 2e-3, 1e-3, False))
    t = "test_monitor_10k[deribit_pme]"
    if r.get(t):
        p99 = r.info(t, "p99_ms")
        add(f"`monitor-10k[deribit_pme]`: tick p99 ({r.info(t, 'ticks'):,} ticks)",
            f"{p99:.2f} ms (p50 {r.info(t, 'p50_ms'):.2f})", "≤ 5 ms", "–",
            "target" if p99 <= 5 else "**missed**")
    for b, what in (("test_backtest_100k[all-tables]", "accounts, units and positions tables"),
                    ("test_backtest_100k[accounts-only]", "accounts table")):
        if r.get(b):
            x = r.rate(b, "snapshots")
            add(f"`backtest-100k[deribit_pme]`, {what}",
                f"{rate(x, 'snapshots')} ({secs(r.median(b))} per call)", "≥ 300,000/s",
                "≥ 1,000,000/s", _met(x, 3e5, 1e6, True))
    return rows if len(rows) > 2 else []


def standard_table(r):
    """Issue 12's figures: ``standard`` beside ``deribit_pme`` on the same book, each case's
    ratio (target <= 3x, stretch <= 1.5x) and ``standard``'s own target."""
    rows = ["| case (issue 12) | `standard` | `deribit_pme` | ratio | ratio met (≤ 3× / "
            "≤ 1.5×) | `standard` target | stretch | `standard` met |",
            "|---|---|---|---|---|---|---|---|"]

    def add(label, std, pme, x, target, stretch, met):
        ratio_met = _met(x, 3.0, 1.5, False) if x is not None else "–"
        rows.append(f"| {label} | {std} | {pme} | {ratio(x) if x is not None else '–'} | "
                    f"{ratio_met} | {target} | {stretch} | {met} |")

    a = {m: f"test_accounts_10k_multi[{m}]" for m in ("standard", "deribit_pme")}
    if r.get(a["standard"]):
        n = r.info(a["standard"], "work")["accounts"]
        m = r.median(a["standard"])
        pme = r.median(a["deribit_pme"])
        add(f"`accounts-10k`: one `margin()`, {n:,} accounts × 10 positions on 2–3 of BTC, "
            "ETH, SOL", secs(m), secs(pme), m / pme if pme else None, "≤ 150 ms", "≤ 50 ms",
            _met(m, 0.150, 0.050, False))
    b = {m: f"test_backtest_100k_multi[{m}]" for m in ("standard", "deribit_pme")}
    if r.get(b["standard"]):
        n = r.info(b["standard"], "work")["snapshots"]
        x = r.rate(b["standard"], "snapshots")
        y = r.rate(b["deribit_pme"], "snapshots") if r.get(b["deribit_pme"]) else None
        add(f"`backtest-100k`: one `margin()` over a `time` column, {n:,} snapshots × 10 "
            "positions on 2–3 underlyings, accounts table", rate(x, "snapshots"),
            rate(y, "snapshots") if y else "–", y / x if y else None, "≥ 50,000/s",
            "≥ 150,000/s", _met(x, 5e4, 1.5e5, True))
    mon = {m: f"test_monitor_10k[{m}]" for m in ("standard", "deribit_pme")}
    if r.get(mon["standard"]):
        i = {m: (lambda key, n=n: r.info(n, key)) for m, n in mon.items()}
        p99 = i["standard"]("p99_ms")
        pme = i["deribit_pme"]("p99_ms") if r.get(mon["deribit_pme"]) else None
        add(f"`monitor-10k`: tick p99, {i['standard']('accounts'):,} accounts × 20 positions "
            f"on 3 underlyings (`standard` {i['standard']('ticks'):,} ticks, `deribit_pme` "
            f"{i['deribit_pme']('ticks') or 0:,})", f"{p99:.2f} ms (p50 "
            f"{i['standard']('p50_ms'):.2f})", f"{pme:.2f} ms" if pme else "–",
            p99 / pme if pme else None, "p99 ≤ 50 ms", "p99 ≤ 10 ms",
            _met(p99, 50, 10, False))
    w = {m: f"test_what_if[{m}]" for m in ("standard", "deribit_pme")}
    if r.get(w["standard"]):
        i = {m: (lambda key, n=n: r.info(n, key)) for m, n in w.items()}
        p99 = i["standard"]("p99_ms")
        pme = i["deribit_pme"]("p99_ms") if r.get(w["deribit_pme"]) else None
        add(f"`what-if`: `Monitor.what_if`, {i['standard']('positions')}-position account, "
            f"{i['standard']('trades')}-leg basket, p99", f"{p99:.2f} ms (p50 "
            f"{i['standard']('p50_ms'):.2f})", f"{pme:.2f} ms (p50 "
            f"{i['deribit_pme']('p50_ms'):.2f})" if pme else "–", p99 / pme if pme else None,
            "p99 ≤ 2 ms", "p99 ≤ 0.5 ms", _met(p99, 2.0, 0.5, False))
    s6 = "test_seed_1acct_6k"
    if r.get(s6):
        m = r.median(s6)
        add("`seed-1acct-6k`: 1 account, 6,000 positions on 10 underlyings", secs(m), "–",
            None, "≤ 30 ms", "≤ 15 ms", _met(m, 0.030, 0.015, False))
    return rows if len(rows) > 2 else []


def cases_table(r):
    rows = ["| group | case | median | throughput | pmrisk kernel's speed-up over it |",
            "|---|---|---|---|---|"]
    groups = {}
    for b in r.data["benchmarks"]:
        if b["group"] != "scaling":
            groups.setdefault(b["group"], []).append(b)
    order = ["grid-1acct-2k", "seed-1acct-6k", "backtest-100k", "backtest-dask",
             "first-call", "memory",
             "baselines-oracle", "baselines-options", "accounts-10k", "monitor-10k", "what-if"]
    for g in sorted(groups, key=lambda g: (order.index(g) if g in order else 99, g)):
        ref = REFERENCE.get(g)
        for b in sorted(groups[g], key=lambda b: b["stats"]["median"]):
            name = b["name"]
            work = b.get("extra_info", {}).get("work", {})
            thr = ", ".join(rate(n / b["stats"]["median"], unit) for unit, n in work.items())
            if g == "first-call":
                thr = (f"in process: import {secs(r.info(name, 'import_s'))} + first call "
                       f"{secs(r.info(name, 'first_margin_s'))}")
            elif r.info(name, "growth_mb") is not None:      # memory, backtest memory
                thr = f"peak RSS growth {r.info(name, 'growth_mb'):.0f} MB"
            vs = ""
            if ref and r.get(ref) and name != ref:
                unit = next(iter(work), None)
                mine, theirs = r.rate(ref, unit), r.rate(name, unit)
                vs = ratio(mine / theirs) if mine and theirs else ""
            elif name == ref:
                vs = "(reference)"
            rows.append(f"| {g} | `{name.removeprefix('test_')}` | {secs(b['stats']['median'])}"
                        f" | {thr} | {vs} |")
    return rows


def backtest_table(r):
    """Issue 6's figures: ``pmrisk.backtest`` single process vs a 2-worker Dask LocalCluster,
    and the streaming path's peak memory at 100k vs 1M snapshots."""
    rows = ["| figure (issue 6) | measured |", "|---|---|"]
    one, two = "test_backtest_dask[single-process]", "test_backtest_dask[dask-2-workers]"
    for name, what in ((one, "one process"), (two, "")):
        if r.get(name):
            what = what or r.info(name, "cluster", "Dask")
            n = r.info(name, "work")["snapshots"]
            x = r.rate(name, "snapshots")
            vs = ""
            if name == two and r.get(one):
                vs = f"; {ratio(x / r.rate(one, 'snapshots'))} the single process"
            rows.append(f"| `backtest-dask`: `pmrisk.backtest` of {n:,} snapshots (Parquet "
                        f"datasets in and out, `deribit_pme`, {r.info(name, 'batches')} "
                        f"batches), {what} | {rate(x, 'snapshots')} ({secs(r.median(name))} "
                        f"per run{vs}) |")
    mem = {k: f"test_backtest_memory[{k}]" for k in ("100k", "1M")}
    if all(r.get(m) for m in mem.values()):
        g = {k: r.info(m, "growth_mb") for k, m in mem.items()}
        rows.append("| peak RSS growth of the streaming path (fresh process, kernels "
                    f"loaded): {r.info(mem['100k'], 'snapshots'):,} vs "
                    f"{r.info(mem['1M'], 'snapshots'):,} snapshots | {g['100k']:.0f} MB vs "
                    f"{g['1M']:.0f} MB ({ratio(g['1M'] / g['100k'])} for a "
                    f"{r.info(mem['1M'], 'snapshots') / r.info(mem['100k'], 'snapshots'):.0f}× "
                    "longer history) |")
    return rows if len(rows) > 2 else []


def _stages(r, name):
    """(validate, compute, tables) medians of a margin() case, or None."""
    st = r.info(name, "stages")
    if not st or not all(k in st for k in ("validate", "compute", "tables")):
        return None
    return st["validate"], st["compute"], st["tables"]


def stages_table(r):
    rows = ["| case | median of the case | validate (Arrow in, checks) | compute (engine + "
            "kernels) | tables (results out) |", "|---|---|---|---|---|"]
    for name in MARGIN_CASES:
        st = _stages(r, name)
        if st is None:
            continue
        tot = sum(st)
        rows.append(f"| {name.removeprefix('test_').replace('_', '-')} | "
                    f"{secs(r.median(name))} | "
                    + " | ".join(f"{secs(x)} ({100 * x / tot:.0f} %)" for x in st) + " |")
    return rows


def sweep(r):
    pts = [b for b in r.data["benchmarks"] if b["group"] == "scaling"]
    out = {}
    for b in pts:
        e = b["extra_info"]
        out.setdefault(e["series"], []).append(dict(
            positions=e["work"]["positions"], cells_per_pos=e["scenario_cells"],
            cells=e["work"]["cells"], underlyings=e["underlyings"], median=b["stats"]["median"],
            stages=e.get("stages", {})))
    for v in out.values():
        v.sort(key=lambda p: p["cells"])
    return out


def sweep_table(r):
    rows = ["| series | positions | underlyings | scenario cells per position | positions × cells "
            "| median | compute (engine) | validate + tables |",
            "|---|---|---|---|---|---|---|---|"]
    for series, pts in sweep(r).items():
        for p in pts:
            st = p["stages"]
            rest = st.get("validate", 0) + st.get("tables", 0)
            rows.append(f"| {series} | {p['positions']:,} | {p['underlyings']} | "
                        f"{p['cells_per_pos']:,} | {p['cells']:,} | {secs(p['median'])} | "
                        f"{secs(st.get('compute'))} | {secs(rest)} |")
    return rows


def _load(x):
    return f"{x[0]:.2f}" if x else "?"


def machine(r):
    mi = r.data.get("machine_info", {})
    pm = mi.get("pmrisk", {})
    cpu = mi.get("cpu", {})
    return (f"Machine: {cpu.get('brand_raw', mi.get('processor', '?'))}, "
            f"{pm.get('os_cpu_count', cpu.get('count', '?'))} cores "
            f"({pm.get('platform', mi.get('system', '?'))}); Python "
            f"{mi.get('python_version', '?')}, numba {pm.get('numba', '?')} (llvmlite "
            f"{pm.get('llvmlite', '?')}, NUMBA_NUM_THREADS {pm.get('numba_num_threads', '?')}, "
            f"threading layer {pm.get('threading_layer') or 'none used'}), numpy "
            f"{pm.get('numpy', '?')}, pyarrow {pm.get('pyarrow', '?')}, pmrisk "
            f"{pm.get('pmrisk', '?')}; sizes: {pm.get('size', '?')}; load average (1 min) "
            f"{_load(pm.get('load_average_start'))} at the start, "
            f"{_load(pm.get('load_average_end'))} at the end; run "
            f"{r.data.get('datetime', '?')[:19]} UTC, commit "
            f"{r.data.get('commit_info', {}).get('id', '?')[:10]}"
            f"{' (dirty)' if r.data.get('commit_info', {}).get('dirty') else ''}.\n\n"
            f"Command: `{COMMAND}` (as run: `{pm.get('command', '?')}`).")


def report(data):
    r = Results(data)
    parts = ["### Targets", "", *targets_table(r), "",
             "### Every case", "", *cases_table(r), "",
             "### Where `margin()`'s time goes (medians of `result.timings` over the timed "
             "calls)", "", *stages_table(r), ""]
    if engine_table(r):
        parts += ["### The one engine (issue 11)", "", *engine_table(r), ""]
    if standard_table(r):
        parts += ["### The seed's model beside `deribit_pme` (issue 12)", "",
                  *standard_table(r), ""]
    if backtest_table(r):
        parts += ["### Backtests at scale", "", *backtest_table(r), ""]
    if sweep(r):
        parts += ["### Scaling sweep (scaling.png)", "", *sweep_table(r), ""]
    parts.append(machine(r))
    return "\n".join(parts)


# -- the plot --------------------------------------------------------------------------------

def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = Results(data)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [3, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    xs_all = []
    for i, (series, pts) in enumerate(sweep(r).items()):
        c = colours[i % len(colours)]
        x = [p["cells"] for p in pts]
        xs_all += x
        ax.plot(x, [p["median"] * 1e3 for p in pts], "o-", color=c,
                label=f"{series}: margin() end to end")
        ax.plot(x, [p["stages"].get("compute", float("nan")) * 1e3 for p in pts], "s--",
                color=c, alpha=0.8, label=f"{series}: compute stage (engine + kernels)")
    ceil = [r.rate(n, "option revaluations") for n in
            ("test_options_minimal_loop", "test_options_minimal_loop_parallel") if r.get(n)]
    if ceil and xs_all:
        lo, hi = min(xs_all), max(xs_all)
        best = max(ceil)
        ax.plot([lo, hi], [lo / best * 1e3, hi / best * 1e3], ":", color="grey",
                label=f"pricing every cell at the hoisted minimal loop's {best / 1e6:.0f} M/s")
    ax.axhline(100, color="tab:red", lw=0.8, alpha=0.5)
    ax.text(xs_all[0] if xs_all else 1, 110, "seed-1acct-6k target 100 ms", color="tab:red",
            fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("positions × scenario cells per position (price moves × vol states)")
    ax.set_ylabel("median time per call (ms)")
    ax.set_title("margin() vs problem size, 1 account")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")

    names, shares, totals = [], [], []
    for name in MARGIN_CASES:
        st = _stages(r, name)
        if st is None:
            continue
        names.append(name.removeprefix("test_").replace("_", "-"))
        shares.append([x / sum(st) for x in st])
        totals.append(r.median(name))
    left = [0.0] * len(names)
    for j, (stage, c) in enumerate(zip(("validate (Arrow in, checks)",
                                        "compute (engine + kernels)", "tables (results out)"),
                                       ("tab:orange", "tab:blue", "tab:green"))):
        vals = [s[j] * 100 for s in shares]
        bx.barh(names, vals, left=left, color=c, label=stage)
        left = [a + b for a, b in zip(left, vals)]
    for y, t in enumerate(totals):
        bx.text(102, y, secs(t), va="center", fontsize=8)
    bx.set_xlim(0, 125)
    bx.set_xticks([0, 20, 40, 60, 80, 100])
    bx.invert_yaxis()
    bx.set_xlabel("share of margin() time (%), median time per call at the right")
    bx.set_title("where the time goes")
    bx.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.45, -0.14), ncol=3)
    mi = data.get("machine_info", {})
    fig.suptitle(f"pmrisk benchmarks — {mi.get('cpu', {}).get('brand_raw', '?')}, "
                 f"{mi.get('pmrisk', {}).get('os_cpu_count', '?')} cores, numba "
                 f"{mi.get('pmrisk', {}).get('numba', '?')}, run "
                 f"{data.get('datetime', '?')[:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    path = pathlib.Path(args[0] if args else HERE / "results.json")
    data = json.loads(path.read_text())
    text = report(data)
    print(text)
    if "--write" in argv:
        readme = HERE / "README.md"
        s = readme.read_text()
        a, b = s.index(START) + len(START), s.index(END)
        readme.write_text(s[:a] + "\n" + text + "\n" + s[b:])
        try:
            plot(data, HERE / "scaling.png")
            print(f"\nwrote {readme.name} (figures) and scaling.png", file=sys.stderr)
        except ImportError:
            print("\nmatplotlib is missing: scaling.png not drawn (pip install -e '.[bench]')",
                  file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)

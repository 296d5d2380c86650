"""The engine's figures on fixed books, recorded once and compared by ``test_same_figures.py``.

Issue 11 ("one engine") rewrote the engine's orchestration without changing any figure.  Before
the first line of it changed, this module ran the engine as it then was on every preset and on
the demo book, synthetic books, a ``time``-column history, risk arrays, a Monitor after ticks, a
liquidation plan and a backtest, and wrote every result table to ``tests/golden/`` (Parquet,
zstd; about 1 MB).  ``test_same_figures.py`` recomputes the same cases and compares: every
numeric column within 1e-12 of the column's scale (its largest finite magnitude, at least 1),
every text column, null and infinity identical.

Regenerate only when a figure is meant to change (and say why in the commit):
``.venv/bin/python tests/golden.py``.
"""

import os
import pathlib
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import pmrisk
from pmrisk import samples

GOLDEN = pathlib.Path(__file__).with_name("golden")
PRESETS = ("standard", "binance_pm_pro", "deribit_pme", "span")
TABLES = ("accounts", "units", "positions", "unit_risk_vectors")


def _result_tables(r):
    out = {}
    for name in TABLES:
        t = getattr(r, name, None)
        if t is not None:
            out[name] = t
    return out


def _ticks(book, k):
    """The k-th deterministic tick on the demo book: BTC (and every second tick ETH) marks
    and index moved, vols nudged."""
    market = book["market"]
    index = book["index"]
    rng = np.random.default_rng(100 + k)
    und = {"BTC": 1.0 + rng.normal(0, 0.02), "ETH": 1.0 + rng.normal(0, 0.03)}
    moved = ["BTC"] if k % 2 else ["BTC", "ETH"]
    syms = market.column("symbol").to_pylist()
    inst = book["instruments"]
    und_of = dict(zip(inst.column("symbol").to_pylist(), inst.column("underlying").to_pylist()))
    keep = [i for i, s in enumerate(syms) if und_of[s] in moved]
    m = market.take(pa.array(keep, pa.int64()))
    f = np.array([und[und_of[s]] for s in m.column("symbol").to_pylist()])
    cols = {"symbol": m.column("symbol"),
            "mark_price": pc.multiply(m.column("mark_price"), pa.array(f))}
    if "mark_iv" in m.column_names:
        cols["mark_iv"] = pc.multiply(m.column("mark_iv"),
                                      pa.array(1.0 + rng.normal(0, 0.02, len(f))))
    ix = index.filter(pc.is_in(index.column("underlying"), pa.array(moved)))
    ixf = np.array([und[u] for u in ix.column("underlying").to_pylist()])
    return pa.table(cols), pa.table({"underlying": ix.column("underlying"),
                                     "index_price": pc.multiply(ix.column("index_price"),
                                                                pa.array(ixf))})


def _risk_arrays():
    """A deterministic SPAN-style risk-array case: 3 accounts, 2 units, 6 symbols."""
    rng = np.random.default_rng(7)
    syms = [f"S{i}" for i in range(6)]
    rows = {"symbol": [], "scenario": [], "pnl": [], "unit": []}
    for i, s in enumerate(syms):
        base = rng.normal(0, 1000, 16)
        for k in range(16):
            rows["symbol"].append(s)
            rows["scenario"].append(k)
            rows["pnl"].append(float(base[k]))
            rows["unit"].append("BTC/BTC" if i < 3 else "ETH/USDC")
    pos = {"account": ["x", "x", "x", "y", "y", "z", "z", "z"],
           "symbol": ["S0", "S1", "S4", "S2", "S5", "S0", "S3", "S5"],
           "quantity": [2.0, -1.0, 3.0, 5.0, -2.0, -4.0, 1.0, 1.5]}
    index = {"underlying": ["BTC", "ETH"], "index_price": [65_000.0, 3_400.0]}
    return pos, rows, index


def cases():
    """``{case name: {table name: pyarrow.Table}}`` from the current engine."""
    demo = samples.demo_book()
    vt = demo.pop("valuation_time")
    books = {
        "demo": (demo, vt),
        "multi": (samples.book(n_accounts=12, positions_per_account=14,
                               underlyings=("BTC", "ETH", "SOL"), option_share=0.7,
                               inverse_share=0.5, seed=3), None),
        "linear": (samples.book(n_accounts=6, positions_per_account=25, underlyings=("ETH",),
                                option_share=0.9, inverse_share=0.0, seed=5), None),
    }
    out = {}
    for bname, (tables, when) in books.items():
        tables = dict(tables)
        when = tables.pop("valuation_time", when)
        for p in PRESETS:
            r = pmrisk.margin(**tables, model=p, valuation_time=when, risk_vectors=True)
            out[f"{bname}-{p}"] = _result_tables(r)
    hist = samples.history(days=1, accounts=8, step_minutes=360, seed=2)
    for p in ("standard", "deribit_pme", "span"):
        out[f"history-{p}"] = _result_tables(pmrisk.margin(**hist, model=p))
    pos, ra, rix = _risk_arrays()
    for p in ("span", "deribit_pme"):
        out[f"risk_arrays-{p}"] = _result_tables(
            pmrisk.margin_from_risk_arrays(pos, ra, model=p if p == "span" else
                                           pmrisk.Model.preset(p).with_overrides(
                                               {"scenario_set": "span16",
                                                "extended_table": False}),
                                           index=rix, risk_vectors=True))
    for p in ("deribit_pme", "standard"):
        mon = pmrisk.Monitor(**demo, model=p, valuation_time=vt)
        try:
            for k in range(3):
                m, ix = _ticks(demo, k)
                mon.update(market=m, index=ix)
            out[f"monitor-{p}"] = {"accounts": mon.accounts, "units": mon.units,
                                   "positions": mon.positions}
        finally:
            mon.close()
    for p in ("deribit_pme", "standard"):
        out[f"plan-{p}"] = {"plan": pmrisk.liquidation_plan(**demo, model=p,
                                                            valuation_time=vt)}
    with tempfile.TemporaryDirectory() as d:
        res = pmrisk.backtest(**hist, model="deribit_pme", out=os.path.join(d, "bt"),
                              progress=False, tables=("accounts", "units"))
        got = {}
        for name in ("accounts", "units"):
            t = getattr(res, name, None)
            if t is None:
                import pyarrow.dataset as ds
                t = ds.dataset(os.path.join(d, "bt", name)).to_table()
            got[name] = t.sort_by([("time", "ascending"), ("account", "ascending")] +
                                  ([("unit", "ascending")] if name == "units" else []))
        out["backtest-deribit_pme"] = got
    return out


def main():
    GOLDEN.mkdir(exist_ok=True)
    for old in GOLDEN.glob("*.parquet"):
        old.unlink()
    n = 0
    for case, tables in cases().items():
        for name, t in tables.items():
            pq.write_table(t, GOLDEN / f"{case}__{name}.parquet", compression="zstd")
            n += 1
    size = sum(p.stat().st_size for p in GOLDEN.glob("*.parquet"))
    print(f"{n} tables, {size / 1e6:.2f} MB in {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    main()

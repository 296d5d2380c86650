"""A feed that re-sends unchanged rows: a tick's market rows whose ``mark_price``,
``mark_iv`` and ``underlying_price`` equal the current values, and index rows whose
``index_price`` equals the current one, change nothing and recompute nothing.  A tick with
unchanged rows beside the moved ones gives exactly what the moved rows alone give (tables,
alerts, returned rows, state), and a tick of unchanged rows only recomputes no account."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pmrisk import Monitor, samples
from pmrisk.monitor import block as monitor_block
from pmrisk.monitor.state import MarketState
from pmrisk.cli.monitor_view import crash_ticks

MODELS = ["deribit_pme", "standard"]


def demo(model, **kw):
    """The demo book with USDC and USDT index rows (a settlement currency and a balance
    asset an unchanged index row would otherwise reach)."""
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    x = b["index"]
    b["index"] = pa.table({"underlying": x["underlying"].to_pylist() + ["USDC", "USDT"],
                           "index_price": x["index_price"].to_pylist() + [1.0, 1.0]})
    return Monitor(**b, model=model, valuation_time=vt, **kw), b


def crash_updates(book, step_seconds=10):
    """The embedded BTC crash as (at, market, index) updates: BTC's rows only."""
    ticks = crash_ticks(dict(book, valuation_time=samples.demo_book()["valuation_time"]),
                        step_seconds=step_seconds)
    out = []
    for t in pc.unique(ticks["time"]).to_pylist():
        rows = ticks.filter(pc.equal(ticks["time"], t))
        m = rows.filter(pc.equal(rows["kind"], "market"))
        x = rows.filter(pc.equal(rows["kind"], "index"))
        out.append((t, m.select(["symbol", "mark_price", "mark_iv", "underlying_price"]),
                    x.select(["underlying", "index_price"])))
    return out


def with_unchanged(mon, market, index):
    """``market`` and ``index`` plus every other row of the monitor's current market and
    index tables, re-sent as they are (shuffled in among the moved rows)."""
    m, x = mon.state()["market"], mon.state()["index"]
    m = m.filter(pc.invert(pc.is_in(m["symbol"], value_set=market["symbol"])))
    x = x.filter(pc.invert(pc.is_in(x["underlying"], value_set=index["underlying"])))
    m = pa.concat_tables([m.slice(0, 3), market.cast(m.schema), m.slice(3)])
    x = pa.concat_tables([index.cast(x.schema), x])
    return m, x


@pytest.fixture
def recomputed(monkeypatch):
    """The accounts each block's tick recomputed, as (block, local indices) per call."""
    calls = []
    tick = monitor_block.Block.tick

    def spy(self, *args, **kwargs):
        acc = tick(self, *args, **kwargs)
        calls.append((id(self), np.asarray(acc).tolist()))
        return acc
    monkeypatch.setattr(monitor_block.Block, "tick", spy)
    return calls


def assert_same_update(a, b):
    assert a.accounts.equals(b.accounts)
    assert a.alerts.equals(b.alerts)
    assert a.removed == b.removed and a.time == b.time
    assert a.liquidation_plans.equals(b.liquidation_plans)


@pytest.mark.parametrize("model", MODELS)
def test_unchanged_rows_beside_moved_ones_change_nothing(model, recomputed):
    """A BTC crash through every level, tick by tick: one monitor gets BTC's rows, the other
    the same rows among every other current market and index row."""
    alone, book = demo(model)
    whole, _ = demo(model)
    alerts = 0
    for at, market, index in crash_updates(book):
        recomputed.clear()
        a = alone.update(market=market, index=index, at=at)
        by_alone = [acc for _, acc in recomputed]
        recomputed.clear()
        m, x = with_unchanged(whole, market, index)
        assert m.num_rows > market.num_rows and x.num_rows == 4
        b = whole.update(market=m, index=x, at=at)
        assert [acc for _, acc in recomputed] == by_alone       # the same accounts, no more
        assert_same_update(a, b)
        alerts += a.alerts.num_rows
    assert alerts > 10                          # the crash crossed levels on the way
    assert alone.version == whole.version
    for name in ("accounts", "units", "positions"):
        assert getattr(alone, name).equals(getattr(whole, name)), name
    sa, sw = alone.state(), whole.state()
    for name in ("positions", "balances", "market", "index"):
        assert sa[name].equals(sw[name]), name


@pytest.mark.parametrize("model", MODELS)
def test_a_tick_of_unchanged_rows_recomputes_nothing(model, recomputed):
    mon, book = demo(model)
    mon.update(market=crash_updates(book)[3][1], index=crash_updates(book)[3][2])
    tables = mon.result()
    version = mon.version
    recomputed.clear()
    state = mon.state()
    up = mon.update(market=state["market"], index=state["index"])
    assert sum(len(acc) for _, acc in recomputed) == 0
    assert up.accounts.num_rows == 0 and up.alerts.num_rows == 0 and up.removed == []
    assert mon.version == version + 1
    for name in ("accounts", "units", "positions"):
        assert getattr(mon, name).equals(getattr(tables, name)), name
    # the same rows with a held option's vol moved: its underlying's accounts are recomputed
    m = state["market"]
    held = set(state["positions"]["symbol"].to_pylist())
    k = next(i for i, (s, v) in enumerate(zip(m["symbol"].to_pylist(),
                                               m["mark_iv"].to_pylist()))
             if s in held and v is not None)
    iv = m["mark_iv"].to_pylist()
    iv[k] *= 1.01
    up = mon.update(market=m.set_column(2, "mark_iv", pa.array(iv, pa.float64())),
                    index=state["index"])
    assert sum(len(acc) for _, acc in recomputed) > 0


# -- which rows a tick changes (MarketState.apply) -----------------------------------------

def market_state():
    b = samples.demo_book()
    return MarketState(b["market"], b["index"], b["instruments"], 5.0), b


def _row(b, kind):
    kinds = dict(zip(b["instruments"]["symbol"].to_pylist(),
                     b["instruments"]["kind"].to_pylist()))
    r = next(r for r in b["market"].to_pylist() if (kinds[r["symbol"]] == "option")
             == (kind == "option"))
    return r


def _moved(r, **changes):
    return {k: [v] for k, v in {**r, **changes}.items()}


OPT, FUT = "option", "future"
CASES = [   # (kind of row, the row's columns (None: the current value), changed?)
    ("an option as it is", OPT, {}, False),
    ("a future as it is", FUT, {}, False),
    ("mark_price only, as it is", OPT, {"only": ["mark_price"]}, False),
    ("null mark_price and mark_iv: kept", OPT, {"mark_price": None, "mark_iv": None}, False),
    ("null mark_price, new mark_iv", OPT, {"mark_price": None, "mark_iv": "x1.01"}, True),
    ("a new mark_price", FUT, {"mark_price": "x1.01"}, True),
    ("a new underlying_price", OPT, {"underlying_price": "x1.01"}, True),
    ("a null underlying_price where there was one", OPT, {"underlying_price": None}, True),
    ("a null underlying_price where there was none", FUT, {"underlying_price": None}, False),
    ("one ulp up", OPT, {"mark_price": "ulp"}, True),
]


@pytest.mark.parametrize("what, kind, change, changed", CASES, ids=[c[0] for c in CASES])
def test_market_rows_that_change_something(what, kind, change, changed):
    state, b = market_state()
    r = _row(b, kind)
    only = change.pop("only", None)
    for k, v in change.items():
        if v == "x1.01":
            change[k] = r[k] * 1.01
        elif v == "ulp":
            change[k] = float(np.nextafter(r[k], np.inf))
    row = _moved(r, **change)
    if only is not None:
        row = {k: v for k, v in row.items() if k in ["symbol"] + only}
    new, symbols, assets = state.apply(market=pa.table(row, schema=pa.schema(
        [f for f in b["market"].schema if f.name in row])))
    assert symbols == ({r["symbol"]} if changed else set()) and assets == set()
    i = new.row[r["symbol"]]
    want = {k: (np.nan if v is None else v) for k, v in {**r, **change}.items()}
    if change.get("mark_price", 0) is None:
        want["mark_price"] = r["mark_price"]
    if change.get("mark_iv", 0) is None:
        want["mark_iv"] = r["mark_iv"]
    np.testing.assert_array_equal([new.mark[i], new.iv[i], new.fwd[i]],
                                  [want["mark_price"], np.nan if want["mark_iv"] is None
                                   else want["mark_iv"],
                                   np.nan if want["underlying_price"] is None
                                   else want["underlying_price"]])


def test_index_rows_that_change_something():
    state, b = market_state()
    x = {"underlying": ["BTC", "ETH"], "index_price": [65000.0, 3400.0]}
    assert state.apply(index=x)[1:] == (set(), set())
    x = {"underlying": ["BTC", "ETH"], "index_price": [65000.0, None]}
    assert state.apply(index=pa.table(x, schema=pa.schema([("underlying", pa.string()),
                                                           ("index_price", pa.float64())]))
                       )[1:] == (set(), set())
    x = {"underlying": ["BTC", "ETH"], "index_price": [65000.0, 3401.0]}
    new, symbols, assets = state.apply(index=x)
    assert (symbols, assets) == (set(), {"ETH"}) and new.index == {"BTC": 65000.0,
                                                                   "ETH": 3401.0}
    x = {"underlying": ["USDC"], "index_price": [1.0]}             # new: always a change
    assert state.apply(index=x)[2] == {"USDC"}


def test_a_new_symbol_is_a_change():
    b = samples.demo_book()
    state = MarketState(b["market"].slice(1), b["index"], b["instruments"], 5.0)
    r = b["market"].slice(0, 1)
    assert state.apply(market=r)[1] == {r["symbol"][0].as_py()}

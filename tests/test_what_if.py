"""Monitor.what_if: the figures equal pmrisk.margin() on the book with the trades applied (every
preset, fills and orders, new and existing positions, a close, prices away from the mark), the
incremental definitions, the monitor's state never changes, bad input, and the command line."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pmrisk
from pmrisk import MarginError, samples
from pmrisk.cli import commands as cli
from pmrisk.model import presets as P

# bracket presets (binance_um) margin futures only, not this options book: tests/test_binance_um.py
PRESETS = sorted(set(("standard", "deribit_pme", "span", "binance_pm_pro")) | {
    n for n in P.names() if pmrisk.Model.preset(n)["margin_rules"] != "brackets"})
FIGURES = ("equity", "maintenance_margin", "initial_margin", "margin_ratio")
ACCOUNT = "hedged-calendar"
AT = "2024-06-17T08:00:05Z"
# an existing perpetual topped up at the mark, a put bought at a price, a call sold at the
# mark, an existing future closed at a price (its P&L realised), a new ETH perpetual at a
# price away from the mark, and an open order
BASKET = [("BTC-PERPETUAL", 6_500.0, None, "fill"),
          ("BTC-28JUN24-65000-P", 1.0, 0.04, "fill"),
          ("BTC-28JUN24-75000-C", -1.0, None, "fill"),
          ("BTC-27SEP24", 15_000.0, 66_000.0, "fill"),
          ("ETH-PERPETUAL", -2_000.0, 3_420.0, "fill"),
          ("BTC-28JUN24-56000-P", -3.0, 0.01, "order")]


def _book():
    book = samples.demo_book()
    return book, book.pop("valuation_time")


def _trades(basket):
    return pa.table({"symbol": [b[0] for b in basket], "quantity": [b[1] for b in basket],
                     "price": pa.array([b[2] for b in basket], pa.float64()),
                     "kind": [b[3] for b in basket]})


def _pnl(q, e, cs, m, inverse):
    """A future's P&L from entry ``e`` to the mark ``m`` (0 without an entry price)."""
    if e is None:
        return 0.0
    return q * cs * (1 / e - 1 / m) if inverse else q * cs * (m - e)


def applied(state, account, basket, linear_ccy):
    """The oracle: the monitor's state tables with ``basket`` applied to ``account`` as the
    trades table's documentation says, written out row by row."""
    ins = {r["symbol"]: r for r in state["instruments"].to_pylist()}
    mark = {r["symbol"]: r["mark_price"] for r in state["market"].to_pylist()}
    pos = {(r["account"], r["symbol"]): r for r in state["positions"].to_pylist()}
    bal = {(r["account"], r["asset"]): r for r in state["balances"].to_pylist()}
    orders = state["open_orders"].to_pylist() if state["open_orders"] is not None else []
    for k, (sym, t, price, kind) in enumerate(basket):
        p = mark[sym] if price is None else price
        if kind == "order":
            orders.append({"account": account, "order_id": f"what-if-{k}", "symbol": sym,
                           "quantity": t, "price": p})
            continue
        i, m = ins[sym], mark[sym]
        cs, inverse = i["contract_size"], i["settlement"] == "inverse"
        ccy = i["underlying"] if inverse else linear_ccy
        old = pos.get((account, sym))
        q0 = old["quantity"] if old else 0.0
        e0 = old["entry_price"] if old else None
        e1 = e0 if old else price
        if i["kind"] == "option":
            cash = -t * cs * p
        else:       # equity moves by the fill's P&L from its price to the mark
            cash = _pnl(q0, e0, cs, m, inverse) + _pnl(t, p, cs, m, inverse) \
                - _pnl(q0 + t, e1, cs, m, inverse)
        b = bal.setdefault((account, ccy), {"account": account, "asset": ccy, "amount": 0.0})
        b["amount"] += cash
        if q0 + t == 0:
            pos.pop((account, sym))
        else:
            pos[(account, sym)] = {"account": account, "symbol": sym, "quantity": q0 + t,
                                   "entry_price": e1}
    out = dict(state)
    out["positions"] = pa.Table.from_pylist(list(pos.values()),
                                            schema=state["positions"].schema)
    out["balances"] = pa.Table.from_pylist(list(bal.values()), schema=state["balances"].schema)
    if orders:
        out["open_orders"] = pa.Table.from_pylist(orders, schema=pa.schema([
            ("account", pa.string()), ("order_id", pa.string()), ("symbol", pa.string()),
            ("quantity", pa.float64()), ("price", pa.float64())]))
    return out


def _row(result, account):
    acc = result.accounts
    rows = [r for r in acc.to_pylist() if r["account"] == account]
    assert len(rows) == 1
    return rows[0]


def _close(a, b, scale):
    assert abs(a - b) <= 1e-12 * max(abs(scale), 1.0), (a, b)


@pytest.mark.parametrize("preset", PRESETS)
def test_figures_equal_margin_on_the_modified_book(preset):
    book, vt = _book()
    mon = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
    state = mon.state()
    state.pop("valuation_time")
    lin = mon.model["linear_settlement_currency"]
    w = mon.what_if(ACCOUNT, _trades(BASKET))
    n = len(BASKET)

    def margin_of(basket):
        r = pmrisk.margin(**applied(state, ACCOUNT, basket, lin), model=preset,
                          valuation_time=vt)
        return _row(r, ACCOUNT)

    before, after = margin_of([]), margin_of(BASKET)
    scale = max(abs(before["equity"]), abs(after["equity"]), after["initial_margin"], 1.0)
    for state_name, want in (("before", before), ("after", after)):
        got = [r for r in w.accounts.to_pylist() if r["state"] == state_name][0]
        for c in FIGURES:
            _close(got[c], want[c], scale if c != "margin_ratio" else abs(want[c]))
        assert got["status"] == want["status"]
        assert got["worst_scenario"] == want["worst_scenario"]
        assert got["account"] == ACCOUNT
    alone = [margin_of([b]) for b in BASKET]
    without = [margin_of(BASKET[:i] + BASKET[i + 1:]) for i in range(n)]
    rows = w.trades.to_pylist()
    for i in range(n):
        for short, f in (("im", "initial_margin"), ("mm", "maintenance_margin")):
            _close(rows[i][f"{short}_standalone"], alone[i][f] - before[f], scale)
            _close(rows[i][f"{short}_marginal"], after[f] - without[i][f], scale)
    s = {r["figure"]: r for r in w.summary.to_pylist()}
    for f in ("initial_margin", "maintenance_margin"):
        _close(s[f]["increase"], after[f] - before[f], scale)
        _close(s[f]["standalone_sum"], sum(a[f] - before[f] for a in alone), scale)
        assert (s[f]["overcharge"] is None) == (s[f]["increase"] <= 0)
    # an order adds IM only: its MM figures are 0
    assert rows[-1]["mm_standalone"] == 0.0 and rows[-1]["kind"] == "order"
    assert rows[0]["price"] == state["market"].filter(
        pa.compute.equal(state["market"]["symbol"], "BTC-PERPETUAL"))["mark_price"][0].as_py()


@pytest.mark.parametrize("preset", ["standard", "deribit_pme", "okx_pm"])
def test_the_threaded_layout_gives_the_same_what_if(preset, monkeypatch):
    """A monitor of many units lays its book out on the threads, into rows of blocks from
    the pool, and what_if writes a copy's portfolio quantities into those rows: with every
    phase and the layout on the threads (PARALLEL_MIN 1), the same tables to the bit as on
    the calling thread, and the monitor as margin() on its state."""
    import pmrisk.engine.core as core
    book, vt = _book()
    got = {}
    for parallel_min in (core.PARALLEL_MIN, 1):
        monkeypatch.setattr(core, "PARALLEL_MIN", parallel_min)
        mon = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
        w = mon.what_if(ACCOUNT, _trades(BASKET))
        got[parallel_min] = (w.accounts, w.trades, w.summary, mon.result().accounts)
    for a, b in zip(*got.values()):
        assert a.equals(b)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_hedged_basket_costs_less_than_its_legs(preset):
    """The documented collar: long perpetual, long put, short call on the hedged account.
    Every leg alone adds margin; together they add several times less."""
    book, vt = _book()
    mon = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
    w = mon.what_if(ACCOUNT, {"symbol": ["BTC-PERPETUAL", "BTC-28JUN24-65000-P",
                                         "BTC-28JUN24-75000-C"],
                              "quantity": [6_500.0, 1.0, -1.0]})
    im = w.summary.to_pylist()[0]
    assert im["figure"] == "initial_margin"
    assert (w.trades["im_standalone"].to_numpy() > 0).all()
    assert im["overcharge"] > 3.0, im


_DEMO = _book()
_SYMBOLS = _DEMO[0]["instruments"]["symbol"].to_pylist()
_ACCOUNTS = sorted(set(_DEMO[0]["positions"]["account"].to_pylist()))
_MONITORS = {}


def _monitor(preset):
    if preset not in _MONITORS:
        book, vt = _book()
        _MONITORS[preset] = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
    return _MONITORS[preset]


_trade = st.tuples(st.sampled_from(_SYMBOLS),
                   st.sampled_from([-3.0, -1.0, 0.5, 2.0]),
                   st.sampled_from([None, 1.01, 0.97]),          # no price, or off the mark
                   st.sampled_from(["fill", "fill", "order"]))


@settings(max_examples=25)
@given(preset=st.sampled_from(["standard", "deribit_pme"]), account=st.sampled_from(_ACCOUNTS),
       legs=st.lists(_trade, min_size=1, max_size=4))
def test_random_baskets_equal_margin_on_the_modified_book(preset, account, legs):
    """Any basket (fills and orders, at the mark or off it, on held or new symbols, the same
    symbol twice) on any account: the account after equals margin() on the book with the
    basket applied, and the monitor is unchanged."""
    mon = _monitor(preset)
    state = mon.state()
    vt = state.pop("valuation_time")
    mark = dict(zip(state["market"]["symbol"].to_pylist(),
                    state["market"]["mark_price"].to_pylist()))
    size = {s: (1_000.0 if k != "option" else 1.0) for s, k in zip(
        state["instruments"]["symbol"].to_pylist(), state["instruments"]["kind"].to_pylist())}
    basket = [(s, q * size[s], None if f is None else mark[s] * f, k) for s, q, f, k in legs]
    before = mon.result().accounts
    w = mon.what_if(account, _trades(basket))
    want = _row(pmrisk.margin(**applied(state, account, basket,
                                        mon.model["linear_settlement_currency"]),
                              model=preset, valuation_time=vt), account)
    got = w.accounts.to_pylist()[1]
    scale = max(abs(want["equity"]), want["initial_margin"], 1.0)
    for c in ("equity", "maintenance_margin", "initial_margin"):
        _close(got[c], want[c], scale)
    assert got["status"] == want["status"]
    assert mon.result().accounts.equals(before)


def _check_every_state(mon, account, basket):
    """Every figure of ``mon.what_if(account, basket)`` against margin() on the monitor's
    state with the basket's sets applied (before, after, each trade alone, without each)."""
    state = mon.state()
    vt = state.pop("valuation_time")
    lin, preset = mon.model["linear_settlement_currency"], mon.model
    w = mon.what_if(account, _trades(basket))

    def margin_of(legs):
        r = pmrisk.margin(**applied(state, account, legs, lin), model=preset,
                          valuation_time=vt)
        rows = [x for x in r.accounts.to_pylist() if x["account"] == account]
        return rows[0] if rows else {"equity": 0.0, "maintenance_margin": 0.0,
                                     "initial_margin": 0.0, "margin_ratio": float("inf"),
                                     "status": "normal", "worst_scenario": "none"}

    n = len(basket)
    before, after = margin_of([]), margin_of(basket)
    scale = max(abs(before["equity"]), abs(after["equity"]), after["initial_margin"],
                before["initial_margin"], 1.0)
    for name, want in (("before", before), ("after", after)):
        got = [r for r in w.accounts.to_pylist() if r["state"] == name][0]
        for c in FIGURES:
            _close(got[c], want[c], scale if c != "margin_ratio" else abs(want[c]))
        assert (got["status"], got["worst_scenario"]) == (want["status"],
                                                         want["worst_scenario"])
    rows = w.trades.to_pylist()
    for i in range(n):
        alone, without = margin_of([basket[i]]), margin_of(basket[:i] + basket[i + 1:])
        for short, f in (("im", "initial_margin"), ("mm", "maintenance_margin")):
            _close(rows[i][f"{short}_standalone"], alone[f] - before[f], scale)
            _close(rows[i][f"{short}_marginal"], after[f] - without[f], scale)
    return w


def _low_vol_monitor():
    """The demo book under standard with every BTC option's mark_iv below the model's BTC
    vol floor (0.25): selling one makes a short option whose floor binds (a floored
    revaluation row), whether the symbol is held by someone or by no one yet."""
    if "low-vol" not in _MONITORS:
        book, vt = _book()
        mon = pmrisk.Monitor(**book, model="standard", valuation_time=vt)
        ins = book["instruments"].to_pylist()
        opts = [r["symbol"] for r in ins if r["kind"] == "option" and r["underlying"] == "BTC"]
        mon.update(market={"symbol": opts, "mark_iv": [0.12 + 0.01 * k
                                                       for k in range(len(opts))]})
        assert mon.model.underlying("BTC")["vol_floor"] > 0.12 + 0.01 * len(opts)
        _MONITORS["low-vol"] = mon
    return _MONITORS["low-vol"]


_STATE_TRADE = st.tuples(st.sampled_from(_SYMBOLS + ["NOPE"]),
                         st.sampled_from([-4.0, -1.0, 0.5, 3.0]),
                         st.sampled_from([None, 1.02, 0.95]),
                         st.sampled_from(["fill", "fill", "order"]))


@settings(max_examples=20)
@given(which=st.sampled_from(["standard", "deribit_pme", "low-vol"]),
       account=st.sampled_from(_ACCOUNTS), legs=st.lists(_STATE_TRADE, min_size=1, max_size=3))
def test_random_baskets_every_state_and_nothing_changes(which, account, legs):
    """Random baskets (fills and orders; new and held symbols; options sold into new short
    positions whose vol floor binds, under "low-vol"; an unknown symbol): every state's
    figures equal margin() on the modified book, an unknown symbol is refused naming its
    rows, and the monitor's state and tables are the same to the bit afterwards."""
    mon = _low_vol_monitor() if which == "low-vol" else _monitor(which)
    state0, result0 = mon.state(), mon.result()
    mark = dict(zip(state0["market"]["symbol"].to_pylist(),
                    state0["market"]["mark_price"].to_pylist()))
    size = {s: (1_000.0 if k != "option" else 1.0) for s, k in zip(
        state0["instruments"]["symbol"].to_pylist(), state0["instruments"]["kind"].to_pylist())}
    unknown = [i for i, g in enumerate(legs) if g[0] == "NOPE"]
    basket = [(x, q * size.get(x, 1.0), None if f is None or x == "NOPE" else mark[x] * f, k)
              for x, q, f, k in legs]
    if unknown:
        e = _err(mon, _trades(basket), account)
        assert (e.table, e.column, e.rows) == ("trades", "symbol", [(i,) for i in unknown])
    else:
        _check_every_state(mon, account, basket)
    after = mon.state()
    for k, v in state0.items():
        assert (v == after[k]) if not hasattr(v, "equals") else v.equals(after[k]), k
    r = mon.result()
    for name in ("accounts", "units", "positions"):
        assert getattr(r, name).equals(getattr(result0, name)), name


def test_new_short_options_with_a_binding_floor():
    """Under "low-vol": selling a held long option through zero, and selling options no
    account holds (checked once, then read at the current marks)."""
    mon = _low_vol_monitor()
    held = [r for r in mon.state()["positions"].to_pylist()
            if r["account"] == ACCOUNT and "-P" in r["symbol"] and r["quantity"] > 0]
    assert held
    nobody = "BTC-27SEP24-67000-P"
    assert nobody not in mon.state()["positions"]["symbol"].to_pylist()
    basket = [(held[0]["symbol"], -held[0]["quantity"] - 2.0, None, "fill"),
              (nobody, -3.0, None, "fill"), ("BTC-28JUN24-75000-P", -1.0, 0.02, "order")]
    _check_every_state(mon, ACCOUNT, basket)


@pytest.mark.parametrize("preset", ["standard", "deribit_pme"])
def test_what_if_after_ticks_reads_the_current_marks(preset):
    """What-ifs between ticks (on held symbols and on symbols nobody holds, whose marks the
    monitor reads at every call) equal margin() on the state of that moment."""
    book, vt = _book()
    mon = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
    basket = BASKET[:3] + [("ETH-27SEP24-3450-C", -2.0, None, "fill"),
                           ("BTC-27SEP24-67000-C", 1.0, None, "fill")]
    # a position change moves "directional" to a block of its own: its what-ifs then read
    # the other symbols from the first block
    moved = {"positions": {"account": ["directional"], "symbol": ["BTC-PERPETUAL"],
                           "quantity": [25_000.0]}}
    for k, up in enumerate(_ticks(book, 2) + [moved] + _ticks(book, 2, seed=4) + [{"market": {
            "symbol": ["ETH-27SEP24-3450-C", "BTC-27SEP24-67000-C"],
            "mark_price": [0.07, 0.09], "mark_iv": [0.7, 0.55]}}]):
        _check_every_state(mon, ("directional", ACCOUNT)[k % 2], basket)
        mon.update(**up, at=AT)
    assert ", 2 blocks," in repr(mon)
    _check_every_state(mon, ACCOUNT, basket)
    _check_every_state(mon, "directional", basket)


@pytest.mark.parametrize("preset", ["standard", "deribit_pme", "short-option-minimum"])
def test_the_same_basket_again_between_ticks(preset):
    """The same basket on the same account again after each update, in other quantities (a
    monitor keeps the last what-if's small book laid out and reads the new quantities,
    marks, index prices and balances into it; every leg's side flipped once): index moves,
    marks and vols moved (the basket's sold calls, one held long in the account's block and
    one nobody holds, below the vol floor and back: the what-if's floored rows change, the
    block's do not), a balance changed: every state equals margin() on the state of that
    moment.  "short-option-minimum": deribit_pme with a short option minimum, which reads
    the short options' quantities."""
    book, vt = _book()
    model = pmrisk.Model.preset("deribit_pme").with_overrides(
        {"default_underlying": {"short_option_minimum": 0.05}}) \
        if preset == "short-option-minimum" else preset
    mon = pmrisk.Monitor(**book, model=model, valuation_time=vt)
    market = {r["symbol"]: r for r in book["market"].to_pylist()}
    opts = ["BTC-28JUN24-65000-C", "BTC-27SEP24-67000-C"]
    basket = BASKET[:2] + [(x, -5.0, None, "fill") for x in opts]
    low = {"market": {"symbol": opts, "mark_iv": [0.12, 0.11]}}
    back = {"market": {"symbol": opts, "mark_iv": [market[x]["mark_iv"] for x in opts],
                       "mark_price": [market[x]["mark_price"] * 1.01 for x in opts]}}
    cash = {"balances": {"account": [ACCOUNT], "asset": ["BTC"], "amount": [0.75]}}
    perp = {"market": {"symbol": ["BTC-PERPETUAL"],
                       "mark_price": [market["BTC-PERPETUAL"]["mark_price"] * 0.99]}}
    updates = [None] + _ticks(book, 2) + [low, perp, back, cash] + _ticks(book, 1, seed=6)
    for up, f in zip(updates, [1.0, 1.0, 2.0, 0.5, 1.0, -1.0, 1.0, 3.0]):
        if up is not None:
            mon.update(**up, at=AT)
        _check_every_state(mon, ACCOUNT, [(x, q * f, p, k) for x, q, p, k in basket])


def _ticks(book, n, seed=3):
    rng = np.random.default_rng(seed)
    px = dict(zip(book["index"]["underlying"].to_pylist(),
                  book["index"]["index_price"].to_pylist()))
    out = []
    for k in range(n):
        u = ("BTC", "ETH")[k % 2]
        px[u] *= float(np.exp(rng.normal(0.0, 0.02)))
        out.append({"index": {"underlying": [u], "index_price": [px[u]]}})
    return out


@pytest.mark.parametrize("preset", ["standard", "deribit_pme"])
def test_what_if_changes_nothing(preset):
    """Two monitors take the same updates; one is asked what-ifs between them: every table
    they return stays identical (to the bit), and so does the state."""
    book, vt = _book()
    a = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
    b = pmrisk.Monitor(**book, model=preset, valuation_time=vt)
    updates = _ticks(book, 4) + [
        {"positions": {"account": ["directional"], "symbol": ["BTC-PERPETUAL"],
                       "quantity": [25_000.0]}}] + _ticks(book, 2, seed=5)
    for up in updates:
        for acc in ("directional", ACCOUNT, "eth-vol-seller"):
            a.what_if(acc, _trades(BASKET))
        ua, ub = a.update(**up, at=AT), b.update(**up, at=AT)
        assert ua.accounts.equals(ub.accounts) and ua.alerts.equals(ub.alerts)
        ra, rb = a.result(), b.result()
        for name in ("accounts", "units", "positions"):
            assert getattr(ra, name).equals(getattr(rb, name)), name
        sa, sb = a.state(), b.state()
        for k in sa:
            x, y = sa[k], sb[k]
            assert (x == y) if not hasattr(x, "equals") else x.equals(y), k


def _err(mon, trades, account=ACCOUNT):
    with pytest.raises(MarginError) as e:
        mon.what_if(account, trades)
    return e.value


BAD = [
    ("unknown symbol", {"symbol": ["BTC-PERPETUAL", "NOPE", "NADA"],
                        "quantity": [1.0, 2.0, 3.0]}, "trades", "symbol", [(1,), (2,)]),
    ("no quantity", {"symbol": ["BTC-PERPETUAL"]}, "trades", "quantity", []),
    ("zero quantity", {"symbol": ["BTC-PERPETUAL", "BTC-PERPETUAL"],
                       "quantity": [1.0, 0.0]}, "trades", "quantity", [(1,)]),
    ("nan quantity", {"symbol": ["BTC-PERPETUAL"], "quantity": [float("nan")]}, "trades",
     "quantity", [(0,)]),
    ("negative price", {"symbol": ["BTC-PERPETUAL"], "quantity": [1.0], "price": [-5.0]},
     "trades", "price", [(0,)]),
    ("bad kind", {"symbol": ["BTC-PERPETUAL", "BTC-PERPETUAL"], "quantity": [1.0, 1.0],
                  "kind": ["fill", "limit"]}, "trades", "kind", [(1,)]),
    ("null symbol", {"symbol": ["BTC-PERPETUAL", None], "quantity": [1.0, 1.0]}, "trades",
     "symbol", [(1,)]),
    ("no rows", {"symbol": pa.array([], pa.string()), "quantity": pa.array([], pa.float64())},
     "trades", None, []),
    ("not a table", None, "trades", None, []),
]


@pytest.mark.parametrize("case, trades, table, column, rows", BAD, ids=[b[0] for b in BAD])
def test_bad_trades(case, trades, table, column, rows):
    book, vt = _book()
    mon = pmrisk.Monitor(**book, model="deribit_pme", valuation_time=vt)
    before = mon.result()
    e = _err(mon, trades)
    assert (e.table, e.column, e.rows) == (table, column, rows)
    assert mon.result().accounts.equals(before.accounts)


def test_unknown_account():
    book, vt = _book()
    mon = pmrisk.Monitor(**book, model="deribit_pme", valuation_time=vt)
    e = _err(mon, {"symbol": ["BTC-PERPETUAL"], "quantity": [1.0]}, account="nobody")
    assert (e.table, e.column) == ("arguments", "account")


def test_closing_everything_leaves_nothing_charged():
    """Trades that close every position of an account without balances: the account after
    has no rows at all; nothing is held, nothing charged."""
    book, vt = _book()
    mon = pmrisk.Monitor(**book, model="deribit_pme", valuation_time=vt)
    mon.update(balances={"account": ["linear-pair"], "asset": ["USDC"], "amount": [0.0]})
    w = mon.what_if("linear-pair", {"symbol": ["BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL"],
                                    "quantity": [-2_000.0, 3_500.0]})
    after = w.accounts.to_pylist()[1]
    assert (after["maintenance_margin"], after["initial_margin"]) == (0.0, 0.0)
    assert after["status"] == "normal" and after["margin_ratio"] == float("inf")


# -- the command line ----------------------------------------------------------------------

def _files(tmp_path, trades):
    book = samples.demo_book()
    args = []
    for name in ("positions", "instruments", "market", "index", "balances", "open_orders"):
        p = tmp_path / f"{name}.parquet"
        pq.write_table(book[name], p)
        args += [f"--{name.replace('_', '-')}", str(p)]
    pcsv.write_csv(pa.table(trades), tmp_path / "trades.csv")
    return args + ["--trades", str(tmp_path / "trades.csv"), "--valuation-time",
                   book["valuation_time"]]


def test_cli_prints_the_basket(tmp_path, capsys):
    argv = ["what-if"] + _files(tmp_path, {"symbol": ["BTC-PERPETUAL", "BTC-28JUN24-65000-P",
                                                      "BTC-28JUN24-75000-C"],
                                           "quantity": [6_500.0, 1.0, -1.0]}) + [
        "--account", ACCOUNT, "--model", "deribit_pme"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "account hedged-calendar, 3 trades, model deribit_pme" in out
    assert "BTC-28JUN24-75000-C" in out and "x the basket" in out
    for line in ("before ", "after "):
        assert any(x.startswith(line) for x in out.splitlines())


@pytest.mark.parametrize("trades, account, expected", [
    ({"symbol": ["BTC-PERPETUAL", "NOPE"], "quantity": [1.0, 1.0]}, ACCOUNT,
     "trades.csv: trades.symbol"),
    ({"symbol": ["BTC-PERPETUAL"], "quantity": [0.0]}, ACCOUNT, "trades.quantity"),
    ({"symbol": ["BTC-PERPETUAL"], "quantity": [1.0]}, "nobody", "--account"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, trades, account, expected):
    argv = ["what-if"] + _files(tmp_path, trades) + ["--account", account]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmrisk: ") and err.count("\n") == 1 and expected in err, err

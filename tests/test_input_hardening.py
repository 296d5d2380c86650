"""Input hardening: inputs that used to leak another exception type, or to give a silent
wrong answer, are one ``MarginError`` naming table, column and rows, at every entry point
they reach (``margin``, ``Monitor`` and its updates, ``liquidation_plan``,
``margin_from_risk_arrays``, ``backtest``); every string layout works in every table.

Each case starts from one small valid book, breaks one thing, and asserts the exception type,
``err.table``, ``err.column`` and ``err.rows``.  A rejected Monitor update must leave the
monitor's result tables and state as they were.
"""

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pmrisk
from pmrisk import MarginError, MarginWarning, samples

VT = "2024-06-17T10:00:00Z"
EXPIRY = "2024-06-28T08:00:00Z"
MODEL = "deribit_pme"
PERP, FUT, CALL, ETH = "BTC-PERPETUAL", "BTC-28JUN24", "BTC-28JUN24-70000-C", "ETH-USDC-PERP"
BIG_INT = 2**53 + 1


def base():
    """Column dicts of every input table; account a1 is in liquidation (so that
    liquidation_plan plans, cancelling its order first), a2 is not."""
    return {
        "instruments": {
            "symbol": [PERP, FUT, CALL, ETH],
            "underlying": ["BTC", "BTC", "BTC", "ETH"],
            "kind": ["perpetual", "future", "option", "perpetual"],
            "settlement": ["inverse", "inverse", "inverse", "linear"],
            "contract_size": [10.0, 10.0, 1.0, 1.0],
            "expiry": [None, EXPIRY, EXPIRY, None],
            "strike": [None, None, 70000.0, None],
            "option_type": [None, None, "call", None],
        },
        "positions": {"account": ["a1", "a1", "a1", "a2"], "symbol": [PERP, FUT, CALL, ETH],
                      "quantity": [100000.0, -20000.0, -10.0, 20.0],
                      "entry_price": [65000.0, 66000.0, None, 3500.0]},
        "market": {"symbol": [PERP, FUT, CALL, ETH],
                   "mark_price": [66000.0, 66500.0, 0.01, 3600.0],
                   "mark_iv": [None, None, 0.55, None]},
        "index": {"underlying": ["BTC", "ETH", "USDC"], "index_price": [66000.0, 3600.0, 1.0]},
        "balances": {"account": ["a1", "a2"], "asset": ["BTC", "USDC"],
                     "amount": [0.02, 50000.0]},
        "open_orders": {"account": ["a1", "a2"], "order_id": ["o1", "o2"],
                        "symbol": [PERP, ETH], "quantity": [10000.0, 5.0],
                        "price": [65500.0, 3550.0]},
        "reserves": {"account": ["a1"], "unit": ["BTC/BTC"], "mmp_margin": [0.001],
                     "open_orders_margin": [0.0]},
    }


TYPES = {"expiry": pa.timestamp("us", tz="UTC")}


def table(cols):
    """A typed Arrow table of a column dict (so empty or all-null columns keep a type)."""
    out = {}
    for c, v in cols.items():
        if c in TYPES:
            out[c] = pa.array(pd.to_datetime(pd.Series(v), utc=True), TYPES[c])
        elif c in ("symbol", "underlying", "kind", "settlement", "option_type", "account",
                   "asset", "order_id", "unit"):
            out[c] = pa.array(v, pa.string())
        else:
            out[c] = pa.array(v, pa.float64())
    return pa.table(out)


def book(**changes):
    """The base book as Arrow tables with ``changes`` applied (a table: replaced; a
    callable: applied to the column dict; other keywords: arguments)."""
    b = base()
    args = {"model": MODEL, "valuation_time": VT}
    for k, v in changes.items():
        if k in b and callable(v):
            b[k] = v(b[k])
        elif k in b:
            b[k] = v
        else:
            args[k] = v
    tables = {k: _typed(v) for k, v in b.items()}
    return {**tables, **args}


def _typed(v):
    """Column dicts as typed tables, except those marked ``_raw`` (to reach pmrisk as they
    are); anything else as it is."""
    if not isinstance(v, dict):
        return v
    if "_raw" in v:
        return {k: c for k, c in v.items() if k != "_raw"}
    return table(v)


def setcol(col, values, raw=False):
    def f(cols):
        cols = dict(cols)
        cols[col] = values
        if raw:
            cols["_raw"] = True
        return cols
    return f


def ints(col, values):
    """Replace ``col`` by an int64 column."""
    def f(cols):
        t = table(cols)
        return t.set_column(t.column_names.index(col), col, pa.array(values, pa.int64()))
    return f


def dup_index_price():
    t = table(base()["index"])
    return t.append_column("index_price", pa.array([1.0, 2.0, 3.0]))


def empty_index():
    return pa.table({"underlying": pa.array([], pa.string()),
                     "index_price": pa.array([], pa.float64())})


AMR = pmrisk.Model.preset(MODEL).with_overrides({"BTC": {"annualised_move_risk": 1e300}})

# id: (changes, table, column, rows)
CASES = {
    "int_above_2_53_quantity": (dict(positions=ints("quantity", [BIG_INT, -20000, -10, 20])),
                                "positions", "quantity", [("a1", PERP)]),
    "int_above_2_53_amount": (dict(balances=ints("amount", [1, -BIG_INT])),
                              "balances", "amount", [("a2", "USDC")]),
    "int_above_2_53_contract_size": (dict(instruments=ints("contract_size",
                                                           [10, 10, 1, BIG_INT])),
                                     "instruments", "contract_size", [(ETH,)]),
    "duplicate_column_names": (dict(index=dup_index_price()), "index", "index_price", []),
    "unequal_dict_columns": (dict(index={"underlying": ["BTC", "ETH", "USDC"],
                                         "index_price": [66000.0, 3600.0], "_raw": True}),
                             "index", "index_price", []),
    "mixed_type_row_list": (dict(index=[{"underlying": "BTC", "index_price": 66000.0},
                                        {"underlying": "ETH", "index_price": "3600"},
                                        {"underlying": "USDC", "index_price": 1.0}]),
                            "index", "index_price", [(1,)]),
    "row_list_not_dicts": (dict(index=[{"underlying": "BTC", "index_price": 66000.0}, 5]),
                           "index", None, [(1,)]),
    "empty_index_table": (dict(index=empty_index()), "index", "underlying",
                          [("BTC",), ("ETH",)]),
    "valuation_time_nat": (dict(valuation_time=np.datetime64("NaT")),
                           "arguments", "valuation_time", []),
    "valuation_time_pandas_nat": (dict(valuation_time=pd.NaT),
                                  "arguments", "valuation_time", []),
    "valuation_time_unix_seconds": (dict(valuation_time=1718618400),
                                    "arguments", "valuation_time", []),
    "valuation_time_numpy_int": (dict(valuation_time=np.int64(1718618400)),
                                 "arguments", "valuation_time", []),
    "valuation_time_float": (dict(valuation_time=1718618400.0),
                             "arguments", "valuation_time", []),
    "valuation_time_out_of_range": (dict(valuation_time=np.datetime64("2300-01-01", "D")),
                                    "arguments", "valuation_time", []),
    "duplicate_open_orders": (dict(open_orders=lambda c: {**c, "account": ["a1", "a1"],
                                                          "order_id": ["o1", "o1"],
                                                          "symbol": [PERP, PERP]}),
                              "open_orders", "order_id", [("a1", "o1")]),
    "duplicate_reserves": (dict(reserves=lambda c: {k: v * 2 for k, v in c.items()}),
                           "reserves", "unit", [("a1", "BTC/BTC")]),
    "quantity_1e160": (dict(positions=setcol("quantity", [1e160, -20000.0, -10.0, 20.0])),
                       "positions", "quantity", [("a1", PERP)]),
    "index_1_7e308": (dict(index=setcol("index_price", [1.7e308, 3600.0, 1.0])),
                      "index", "index_price", [("BTC",)]),
    "entry_1e_300": (dict(positions=setcol("entry_price", [1e-300, 66000.0, None, 3500.0])),
                     "positions", "entry_price", [("a1", PERP)]),
    "strike_1e300": (dict(instruments=setcol("strike", [None, None, 1e300, None])),
                     "instruments", "strike", [(CALL,)]),
    "contract_size_1e300": (dict(instruments=setcol("contract_size", [10.0, 1e300, 1.0, 1.0])),
                            "instruments", "contract_size", [(FUT,)]),
    "mark_1e_300": (dict(market=setcol("mark_price", [66000.0, 66500.0, 1e-300, 3600.0])),
                    "market", "mark_price", [(CALL,)]),
    "reserve_1e300": (dict(reserves=setcol("mmp_margin", [1e300])),
                      "reserves", "mmp_margin", [("a1", "BTC/BTC")]),
    "annualised_move_risk_1e300": (dict(model=AMR), "positions", "quantity",
                                   [("a1", PERP), ("a1", FUT), ("a1", CALL)]),
}


def check(err, table_, column, rows):
    assert type(err) is MarginError
    assert (err.table, err.column, err.rows) == (table_, column, rows), str(err)


def raises(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # numpy's overflow warnings
        with pytest.raises(MarginError) as info:
            fn()
    return info.value


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("entry", ["margin", "monitor", "liquidation_plan"])
def test_bad_book_is_one_margin_error_at_every_entry(case, entry):
    changes, table_, column, rows = CASES[case]
    b = book(**changes)
    fn = {"margin": pmrisk.margin, "monitor": pmrisk.Monitor,
          "liquidation_plan": pmrisk.liquidation_plan}[entry]
    check(raises(lambda: fn(**b)), table_, column, rows)


def test_the_base_book_is_valid_and_a1_is_liquidated():
    r = pmrisk.margin(**book())
    assert r.accounts["status"].to_pylist() == ["liquidation", "normal"]


# -- times ------------------------------------------------------------------------------------
@pytest.mark.parametrize("vt", [
    "2024-06-17T10:00:00Z", np.datetime64("2024-06-17T10", "h"),
    np.datetime64("2024-06-17T10:00", "m"), np.datetime64("2024-06-17T10:00:00", "s"),
    np.datetime64("2024-06-17T10:00:00.000", "ms"), np.datetime64("2024-06-17T10:00:00", "ns"),
    pd.Timestamp("2024-06-17T10:00:00Z"), pd.Timestamp("2024-06-17T10:00:00"),
    pd.Timestamp(1718618400, unit="s", tz="UTC"),
    pd.Timestamp("2024-06-17T10:00:00Z").to_pydatetime()])
def test_every_documented_time_form_is_the_same_time(vt):
    ref = pmrisk.margin(**book()).accounts
    assert pmrisk.margin(**book(valuation_time=vt)).accounts.equals(ref)


def test_a_day_datetime64_is_midnight_utc():
    a = pmrisk.margin(**book(valuation_time=np.datetime64("2024-06-17", "D"))).accounts
    b = pmrisk.margin(**book(valuation_time="2024-06-17T00:00:00Z")).accounts
    assert a.equals(b)


def test_an_integer_time_says_what_to_pass():
    err = raises(lambda: pmrisk.margin(**book(valuation_time=1718618400)))
    assert "datetime64" in str(err) and "pandas.Timestamp(1718618400, unit='s'" in str(err)


def test_an_integer_time_column_is_refused():
    t = table(base()["positions"]).append_column("time", pa.array([1718618400] * 4, pa.int64()))
    err = raises(lambda: pmrisk.margin(**book(positions=t, valuation_time=None)))
    check(err, "positions", "time", [])
    assert "timestamp" in str(err)


OUT_OF_RANGE = ["2300-01-01", "9999-12-31", "1677-01-01", "2300-01-01T00:00:00Z",
                pd.Timestamp("2024-01-01").to_pydatetime().replace(year=2300)]
TIME_ARGS = {
    "margin": (lambda t: pmrisk.margin(**book(valuation_time=t)), "valuation_time"),
    "Monitor": (lambda t: pmrisk.Monitor(**book(valuation_time=t)), "valuation_time"),
    "update_valuation_time": (lambda t: _monitor().update(valuation_time=t), "valuation_time"),
    "update_at": (lambda t: _monitor().update(
        index={"underlying": ["BTC"], "index_price": [66100.0]}, at=t), "at"),
    "liquidation_plan": (lambda t: pmrisk.liquidation_plan(**book(valuation_time=t)),
                         "valuation_time"),
    "calibrate_as_of": (lambda t: pmrisk.calibrate(samples.prices(days=30), as_of=t),
                        "as_of"),
}


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=str)
@pytest.mark.parametrize("entry", list(TIME_ARGS))
def test_a_time_outside_1677_2262_names_the_argument(entry, value):
    fn, what = TIME_ARGS[entry]
    err = raises(lambda: fn(value))
    check(err, "arguments", what, [])
    assert "between 1677 and 2262" in str(err)


def test_a_time_column_outside_1677_2262_names_the_rows():
    t = table(base()["positions"]).append_column(
        "time", pa.array([VT, VT, "2300-01-01", VT]))
    err = raises(lambda: pmrisk.margin(**book(positions=t, valuation_time=None)))
    check(err, "positions", "time", [("a1", CALL, "2300-01-01")])
    assert "between 1677 and 2262" in str(err)


def test_missing_mark_at_a_snapshot_suggests_forward_fill():
    t = table(base()["positions"]).append_column(
        "time", pa.array([pd.Timestamp(VT)] * 4, pa.timestamp("ns", tz="UTC")))
    m = table(base()["market"]).append_column(
        "time", pa.array([pd.Timestamp("2024-06-17T09:00:00Z")] * 4,
                         pa.timestamp("ns", tz="UTC")))
    err = raises(lambda: pmrisk.margin(**book(positions=t, market=m, valuation_time=None)))
    check(err, "positions", "symbol", [("a1", PERP, VT), ("a1", FUT, VT), ("a1", CALL, VT),
                                       ("a2", ETH, VT)])
    assert 'fill_market="forward"' in str(err)


# -- balances ---------------------------------------------------------------------------------
def test_a_book_without_balances_warns():
    b = book()
    del b["balances"]
    with pytest.warns(MarginWarning, match="no balances"):
        r = pmrisk.margin(**b)
    assert r.accounts["equity"].to_pylist()[1] == pytest.approx(20 * (3600.0 - 3500.0))
    with pytest.warns(MarginWarning, match="no balances"):
        pmrisk.Monitor(**b)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MarginWarning)
        pmrisk.margin(**book())                       # with balances: no warning


# -- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [-1, "x", 1.5, True, None])
def test_alert_queue_must_be_a_count(q):
    check(raises(lambda: pmrisk.Monitor(**book(), alert_queue=q)), "arguments",
          "alert_queue", [])


@pytest.mark.parametrize("accounts", [5, [5], {"a1": 1}.values(), 1.5])
def test_liquidation_accounts_must_be_names(accounts):
    check(raises(lambda: pmrisk.liquidation_plan(**book(), accounts=accounts)), "arguments",
          "accounts", [])


def test_alert_queue_zero_means_no_queue():
    mon = pmrisk.Monitor(**book(), alert_queue=0)
    assert list(mon.alerts()) == []


# -- Monitor updates --------------------------------------------------------------------------
def _monitor(**changes):
    return pmrisk.Monitor(**book(**changes))


def _snapshot(mon):
    r = mon.result()
    state = mon.state()
    return ([getattr(r, n).sort_by([("account", "ascending")]) for n in
             ("accounts", "units", "positions")],
            {k: v for k, v in state.items() if k != "valuation_time"},
            state["valuation_time"], mon.version)


def _same(a, b):
    tables_a, state_a, vt_a, ver_a = a
    tables_b, state_b, vt_b, ver_b = b
    assert all(x.equals(y) for x, y in zip(tables_a, tables_b))
    assert state_a.keys() == state_b.keys()
    assert all(state_a[k].equals(state_b[k]) for k in state_a)
    assert (vt_a, ver_a) == (vt_b, ver_b)


DELTA_MODEL = pmrisk.Model.preset(MODEL).with_overrides(
    {"ETH": {"m_inc": 1e305, "max_delta_shock": 1e305,
             "delta_total_liq_shock_threshold": 1e5}})

UPDATES = {
    "position_quantity_1e160": (
        {}, dict(positions={"account": ["a1"], "symbol": [PERP], "quantity": [1e160]}),
        "positions", "quantity", [("a1", PERP)]),
    "position_int_above_2_53": (
        {}, dict(positions=pa.table({"account": ["a2"], "symbol": [ETH],
                                     "quantity": pa.array([BIG_INT], pa.int64())})),
        "positions", "quantity", [("a2", ETH)]),
    "balance_int_above_2_53": (
        {}, dict(balances=pa.table({"account": ["a2"], "asset": ["USDC"],
                                    "amount": pa.array([-BIG_INT], pa.int64())})),
        "balances", "amount", [("a2", "USDC")]),
    "index_1_7e308": ({}, dict(index={"underlying": ["BTC"], "index_price": [1.7e308]}),
                      "index", "index_price", [("BTC",)]),
    "mark_1e_300": ({}, dict(market={"symbol": [CALL], "mark_price": [1e-300]}),
                    "market", "mark_price", [(CALL,)]),
    "unequal_dict": ({}, dict(market={"symbol": [PERP, FUT], "mark_price": [1.0]}),
                     "market", "mark_price", []),
    "duplicate_columns": ({}, dict(market=pa.Table.from_arrays(
        [pa.array([PERP]), pa.array([1.0]), pa.array([2.0])],
        names=["symbol", "mark_price", "mark_price"])), "market", "mark_price", []),
    "new_order_without_symbol": (
        {}, dict(open_orders={"account": ["a2"], "order_id": ["o9"], "quantity": [1.0],
                              "price": [3500.0]}),
        "open_orders", "symbol", [("a2", "o9")]),
    "new_order_without_price": (
        {}, dict(open_orders={"account": ["a2"], "order_id": ["o9"], "quantity": [1.0],
                              "symbol": [ETH]}),
        "open_orders", "price", [("a2", "o9")]),
    "valuation_time_int": ({}, dict(valuation_time=1718618400),
                           "arguments", "valuation_time", []),
    "valuation_time_nat": ({}, dict(valuation_time=np.datetime64("NaT", "s")),
                           "arguments", "valuation_time", []),
    "at_int": ({}, dict(at=1718618400), "arguments", "at", []),
    # a null keeps a known symbol's value; a new symbol or asset has none to keep
    "new_symbol_null_mark": (
        dict(market=lambda c: {k: v[:2] + v[3:] for k, v in c.items()},
             positions=lambda c: {k: v[:2] + v[3:] for k, v in c.items()}),
        dict(market={"symbol": [PERP, CALL], "mark_price": [66100.0, None],
                     "mark_iv": [None, 0.5]}),
        "market", "mark_price", [(CALL,)]),
    "new_option_null_iv": (
        dict(market=lambda c: {k: v[:2] + v[3:] for k, v in c.items()},
             positions=lambda c: {k: v[:2] + v[3:] for k, v in c.items()}),
        dict(market={"symbol": [CALL], "mark_price": [0.01], "mark_iv": [None]}),
        "market", "mark_iv", [(CALL,)]),
    "new_asset_null_index": (
        {}, dict(index={"underlying": ["BTC", "USDT"], "index_price": [66100.0, None]}),
        "index", "index_price", [("USDT",)]),
    # a key twice in one update: refused as margin() refuses it (which row was meant?)
    "duplicate_positions": (
        {}, dict(positions={"account": ["a1", "a2", "a1"], "symbol": [PERP, ETH, PERP],
                            "quantity": [1.0, 2.0, 3.0]}),
        "positions", "symbol", [("a1", PERP)]),
    "duplicate_open_orders": (
        {}, dict(open_orders={"account": ["a2", "a2"], "order_id": ["o2", "o2"],
                              "symbol": [ETH, ETH], "quantity": [5.0, 6.0],
                              "price": [3550.0, 3550.0]}),
        "open_orders", "order_id", [("a2", "o2")]),
    "duplicate_cancellation": (
        {}, dict(open_orders={"account": ["a1", "a1"], "order_id": ["o1", "o1"],
                              "quantity": [0.0, 0.0]}),
        "open_orders", "order_id", [("a1", "o1")]),
    "duplicate_with_a_good_tick": (
        {}, dict(market={"symbol": [PERP], "mark_price": [60000.0]},
                 positions={"account": ["a1", "a1"], "symbol": [PERP, PERP],
                            "quantity": [1.0, 2.0]}),
        "positions", "symbol", [("a1", PERP)]),
    # a tick whose delta shock overflows (the model allows it; the inputs are plausible):
    # the blocks have already moved when the engine finds it, and are put back
    "tick_overflows": (
        dict(model=DELTA_MODEL),
        dict(index={"underlying": ["ETH"], "index_price": [10000.0]},
             market={"symbol": [ETH], "mark_price": [10000.0]}),
        "positions", "quantity", [("a2", ETH)]),
    "account_change_overflows": (
        dict(model=DELTA_MODEL, positions=setcol("quantity", [100000.0, -20000.0, -10.0, 1.0])),
        dict(positions={"account": ["a2"], "symbol": [ETH], "quantity": [50.0]}),
        "positions", "quantity", [("a2", ETH)]),
}


@pytest.mark.parametrize("case", list(UPDATES))
def test_a_rejected_update_changes_nothing(case):
    start, update, table_, column, rows = UPDATES[case]
    mon = _monitor(**start)
    before = _snapshot(mon)
    check(raises(lambda: mon.update(**update)), table_, column, rows)
    _same(before, _snapshot(mon))
    # and the monitor still works
    up = mon.update(market={"symbol": [PERP], "mark_price": [66100.0]})
    assert up.accounts.num_rows >= 1


def test_a_cancellation_need_not_repeat_symbol_and_price():
    mon = _monitor()
    up = mon.update(open_orders={"account": ["a1"], "order_id": ["o1"], "quantity": [0.0]})
    assert mon.state()["open_orders"]["order_id"].to_pylist() == ["o2"]
    assert up.accounts.num_rows <= 1
    b = book()
    b["open_orders"] = table({k: v[1:] for k, v in base()["open_orders"].items()})
    assert mon.accounts.sort_by("account").equals(pmrisk.margin(**b).accounts)
    # a change of a known order may leave them out too: they keep their values
    mon.update(open_orders={"account": ["a2"], "order_id": ["o2"], "quantity": [7.0]})
    assert mon.state()["open_orders"].to_pylist() == [
        {"account": "a2", "order_id": "o2", "symbol": ETH, "quantity": 7.0, "price": 3550.0}]


def test_a_balance_key_twice_in_an_update_becomes_its_rows():
    """Balances may hold several rows per (account, asset), as margin() takes them: an
    update's rows for a key replace every row of it (not an error, unlike positions)."""
    mon = _monitor()
    mon.update(balances={"account": ["a2", "a2"], "asset": ["USDC", "USDC"],
                         "amount": [1.0, 2.0]})
    bal = mon.state()["balances"]
    got = sorted((r["account"], r["asset"], r["amount"]) for r in bal.to_pylist()
                 if r["account"] == "a2")
    assert [g for g in got if g[1] == "USDC"] == [("a2", "USDC", 1.0), ("a2", "USDC", 2.0)]
    ref = pmrisk.margin(**mon.state(), model=MODEL)
    assert mon.accounts.sort_by("account").equals(ref.accounts.sort_by("account"))


def test_one_key_per_account_in_an_update_is_fine():
    """The duplicate check is per (account, key): the same symbol for two accounts, or a
    symbol and an order id that happen to be equal, are different rows."""
    mon = _monitor()
    mon.update(positions={"account": ["a1", "a2"], "symbol": [ETH, ETH], "quantity": [1.0, 2.0]})
    pos = mon.state()["positions"]
    got = {(r["account"], r["symbol"]): r["quantity"] for r in pos.to_pylist()}
    assert got[("a1", ETH)] == 1.0 and got[("a2", ETH)] == 2.0


NULL_TICKS = {
    # update: the market / index the monitor then holds (symbol or underlying: values)
    "null_mark_keeps_mark": (
        dict(market={"symbol": [PERP, CALL], "mark_price": [66100.0, None],
                     "mark_iv": [None, 0.6]}),
        {PERP: (66100.0, None), CALL: (0.01, 0.6)}, {"BTC": 66000.0}),
    "null_iv_keeps_iv": (
        dict(market={"symbol": [CALL], "mark_price": [0.02], "mark_iv": [None]}),
        {CALL: (0.02, 0.55)}, {"BTC": 66000.0}),
    "null_index_keeps_index": (
        dict(index={"underlying": ["BTC", "ETH"], "index_price": [None, 3700.0]}),
        {}, {"BTC": 66000.0, "ETH": 3700.0}),
}


@pytest.mark.parametrize("case", list(NULL_TICKS))
def test_a_null_in_a_tick_keeps_the_value(case):
    """A null mark_price, mark_iv or index_price keeps the current value (as a column left
    out does), so a tick may carry only what changed, row by row; the monitor then equals
    margin() on its state."""
    update, marks, index = NULL_TICKS[case]
    mon = _monitor()
    mon.update(**update)
    st = mon.state()
    got = {r["symbol"]: (r["mark_price"], r["mark_iv"]) for r in st["market"].to_pylist()}
    for sym, want in marks.items():
        assert got[sym] == want
    idx = dict(zip(st["index"]["underlying"].to_pylist(), st["index"]["index_price"].to_pylist()))
    for und, px in index.items():
        assert idx[und] == px
    ref = pmrisk.margin(**st, model=MODEL)
    assert mon.accounts.sort_by("account").equals(ref.accounts.sort_by("account"))


# -- risk arrays and backtest -----------------------------------------------------------------
def _ra(pnl_last=-3330.0, n=16):
    return {"symbol": ["FUT"] * n, "scenario": list(range(n)),
            "pnl": [0.0, 0.0, 3330.0, 3330.0, -3330.0, -3330.0, 6670.0, 6670.0, -6670.0,
                    -6670.0, 10000.0, 10000.0, -10000.0, -10000.0, 7000.0, pnl_last][:n]}


RA_CASES = {
    "pnl_minus_1_7e308": (dict(risk_arrays=_ra(-1.7e308)), "risk_arrays", "pnl",
                          [("FUT", 15)]),
    "quantity_int_above_2_53": (
        dict(positions=pa.table({"account": ["a"], "symbol": ["FUT"],
                                 "quantity": pa.array([BIG_INT], pa.int64())})),
        "positions", "quantity", [("a", "FUT")]),
    "duplicate_columns": (dict(positions=pa.Table.from_arrays(
        [pa.array(["a"]), pa.array(["FUT"]), pa.array([1.0]), pa.array([1.0])],
        names=["account", "symbol", "quantity", "quantity"])), "positions", "quantity", []),
    "unequal_dict": (dict(risk_arrays={**_ra(), "pnl": _ra()["pnl"][:15]}),
                     "risk_arrays", "pnl", []),
    "index_1e300": (dict(index={"underlying": ["USD"], "index_price": [1e300]}),
                    "index", "index_price", [("USD",)]),
    "positions_none": (dict(positions=None), "positions", None, []),
    "risk_arrays_none": (dict(risk_arrays=None), "risk_arrays", None, []),
    "risk_vectors_bogus": (dict(risk_vectors="bogus"), "arguments", "risk_vectors", []),
    "risk_vectors_int": (dict(risk_vectors=1), "arguments", "risk_vectors", []),
    "risk_vectors_none": (dict(risk_vectors=None), "arguments", "risk_vectors", []),
}


@pytest.mark.parametrize("case", list(RA_CASES))
def test_risk_arrays_bad_input(case):
    changes, table_, column, rows = RA_CASES[case]
    args = {"positions": {"account": ["a"], "symbol": ["FUT"], "quantity": [1.0]},
            "risk_arrays": _ra(), "model": "span"}
    args.update(changes)
    check(raises(lambda: pmrisk.margin_from_risk_arrays(**args)), table_, column, rows)


@pytest.mark.parametrize("value", ["bogus", "Positions", 1, 0, None, ["units"]], ids=str)
@pytest.mark.parametrize("entry", ["margin", "margin_from_risk_arrays"])
def test_risk_vectors_is_one_of_four_values(entry, value):
    if entry == "margin":
        fn = lambda: pmrisk.margin(**book(risk_vectors=value))    # noqa: E731
    else:
        fn = lambda: pmrisk.margin_from_risk_arrays(               # noqa: E731
            {"account": ["a"], "symbol": ["FUT"], "quantity": [1.0]}, _ra(), model="span",
            risk_vectors=value)
    check(raises(fn), "arguments", "risk_vectors", [])


@pytest.mark.parametrize("value, units, positions", [
    (False, False, False), (True, True, False), ("units", True, False),
    ("positions", True, True), (np.bool_(True), True, False)], ids=str)
def test_risk_vectors_accepted_values(value, units, positions):
    r = pmrisk.margin(**book(risk_vectors=value))
    assert (r.unit_risk_vectors is not None, r.position_risk_vectors is not None) == \
        (units, positions)
    ra = pmrisk.margin_from_risk_arrays(
        {"account": ["a"], "symbol": ["FUT"], "quantity": [1.0]}, _ra(), model="span",
        risk_vectors=value)
    assert (ra.unit_risk_vectors is not None, ra.position_risk_vectors is not None) == \
        (units, positions)


def _timed(cols):
    t = table(cols)
    return t.append_column("time", pa.array([pd.Timestamp(VT)] * t.num_rows,
                                            pa.timestamp("ns", tz="UTC")))


BT_CASES = {
    "quantity_1e160": (dict(positions=setcol("quantity", [1e160, -20000.0, -10.0, 20.0])),
                       "positions", "quantity", [("a1", PERP, VT)]),
    "duplicate_open_orders": (dict(open_orders=lambda c: {**c, "account": ["a1", "a1"],
                                                          "order_id": ["o1", "o1"],
                                                          "symbol": [PERP, PERP]}),
                              "open_orders", "order_id", [("a1", "o1", VT)]),
    "duplicate_reserves": (dict(reserves=lambda c: {k: v * 2 for k, v in c.items()}),
                           "reserves", "unit", [("a1", "BTC/BTC", VT)]),
    "annualised_move_risk_1e300": (dict(model=AMR), "positions", "quantity",
                                   [("a1", PERP, VT), ("a1", FUT, VT), ("a1", CALL, VT)]),
}


@pytest.mark.parametrize("case", list(BT_CASES))
def test_backtest_bad_input(case):
    changes, table_, column, rows = BT_CASES[case]
    b = base()
    model = changes.get("model", MODEL)
    for k, v in changes.items():
        if k != "model":
            b[k] = v(b[k])
    tables = {k: (_timed(v) if k in ("positions", "open_orders", "reserves", "balances")
                  else table(v)) for k, v in b.items()}
    err = raises(lambda: pmrisk.backtest(**tables, model=model, progress=False))
    check(err, table_, column, rows)


# -- string layouts ---------------------------------------------------------------------------
def _layout(t, layout):
    if layout == "polars":
        pl = pytest.importorskip("polars")
        return pl.from_arrow(t)
    if layout == "pandas":
        return t.to_pandas()
    cols = []
    for f, col in zip(t.schema, t.columns):
        if pa.types.is_string(f.type):
            if layout.startswith("dictionary"):
                value = {"dictionary": pa.string(), "dictionary_large": pa.large_string(),
                         "dictionary_view": pa.string_view()}[layout]
                col = col.cast(value).dictionary_encode() if value != pa.string_view() else \
                    pa.chunked_array([pa.DictionaryArray.from_arrays(
                        c.dictionary_encode().indices,
                        c.dictionary_encode().dictionary.cast(value)) for c in col.chunks])
            else:
                col = col.cast({"string": pa.string(), "large_string": pa.large_string(),
                                "string_view": pa.string_view()}[layout])
        cols.append(col)
    return pa.table(cols, names=t.column_names)


LAYOUTS = ["string", "large_string", "string_view", "dictionary", "dictionary_large",
           "dictionary_view", "polars", "pandas"]
BOOK_TABLES = ["positions", "instruments", "market", "index", "balances", "open_orders",
               "reserves"]


@pytest.fixture(scope="module")
def reference():
    b = book()
    return {"margin": pmrisk.margin(**b), "monitor": pmrisk.Monitor(**b).accounts}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", BOOK_TABLES)
def test_every_string_layout_in_every_table(name, layout, reference):
    b = book()
    b[name] = _layout(b[name], layout)
    r = pmrisk.margin(**b)
    for n in ("accounts", "units", "positions"):
        assert getattr(r, n).equals(getattr(reference["margin"], n)), n
    mon = pmrisk.Monitor(**b)
    assert mon.accounts.equals(reference["monitor"])
    if name in ("positions", "balances", "open_orders", "market", "index"):
        upd = _layout(table({k: v[:1] for k, v in base()[name].items()}), layout)
        mon.update(**{name: upd})
        assert mon.accounts.sort_by("account").equals(reference["monitor"].sort_by("account"))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["positions", "risk_arrays", "index"])
def test_every_string_layout_in_risk_array_tables(name, layout):
    args = {"positions": table({"account": ["a"], "symbol": ["FUT"], "quantity": [2.0]}),
            "risk_arrays": pa.table({"symbol": pa.array(["FUT"] * 16),
                                     "scenario": pa.array(range(16), pa.int64()),
                                     "pnl": pa.array(_ra()["pnl"], pa.float64()),
                                     "unit": pa.array(["BTC/BTC"] * 16)}),
            "index": table({"underlying": ["BTC"], "index_price": [60000.0]}),
            "model": "span"}
    ref = pmrisk.margin_from_risk_arrays(**args)
    args[name] = _layout(args[name], layout)
    r = pmrisk.margin_from_risk_arrays(**args)
    assert r.accounts.equals(ref.accounts) and r.units.equals(ref.units)


def test_polars_open_orders_and_liquidation_plan():
    """The reported case: open orders from polars (string_view) in margin() and in a plan
    that cancels them (the plan of every string layout is the plain one)."""
    pl = pytest.importorskip("polars")
    b = book(positions=lambda c: {k: [v[0], v[3]] for k, v in c.items()})  # a plan of 2 steps
    ref = pmrisk.liquidation_plan(**b)
    assert ref["action"].to_pylist() == ["cancel_order", "reduce"]
    b["open_orders"] = pl.DataFrame(base()["open_orders"])
    assert pa.table(b["open_orders"]).schema.field("order_id").type == pa.string_view()
    plan = pmrisk.liquidation_plan(**b)
    assert plan.equals(ref)
    assert plan["action"][0].as_py() == "cancel_order" and plan["order_id"][0].as_py() == "o1"
    assert plan["order_id"].type == pa.string()

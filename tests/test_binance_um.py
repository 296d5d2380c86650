"""The binance_um preset (margin_rules = "brackets") through the one engine: per-position
bracket MM of USDⓈ-M and COIN-M futures, margin loans, uniMMR and the PM Pro bands; the
published Binance cases reproduced through pmrisk.margin() on constructed books (the method,
never fitted numbers); margin(), Monitor and backtest agree; dated ladders per snapshot."""

import json
import math
import pathlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
import pmrisk
from pmrisk import samples
from pmrisk.io.arrow import kernel_args
from pmrisk.kernel.brackets import bracket_units, bracket_units_serial
from pmrisk.model.model import Model
from pmrisk.venues import brackets as B

REF = pathlib.Path(__file__).parent / "reference"
UM = "binance_um"
VT = "2024-06-17T08:00:00Z"


def ref(name):
    return json.loads((REF / f"{name}.json").read_text())


INSTRUMENTS = pa.table({
    "symbol": ["BTCUSDT", "BTCUSD_PERP", "ETHUSDT", "BTC-28JUN24-70000-C", "BTC-SPOT"],
    "underlying": ["BTC", "BTC", "ETH", "BTC", "BTC"],
    "kind": ["perpetual", "perpetual", "perpetual", "option", "spot"],
    "settlement": ["linear", "inverse", "linear", "inverse", "linear"],
    "contract_size": [1.0, 100.0, 1.0, 1.0, 1.0],
    "expiry": pa.array([None, None, None, 1719561600 * 10**9, None], pa.timestamp("ns", "UTC")),
    "strike": [None, None, None, 70_000.0, None],
    "option_type": [None, None, None, "call", None],
})


def book(rows, mark=50_000.0, index=None, balances=None, eth_mark=3_000.0):
    """Positions ``rows`` ((account, symbol, quantity[, entry]) tuples) on INSTRUMENTS."""
    pos = pa.table({"account": [r[0] for r in rows], "symbol": [r[1] for r in rows],
                    "quantity": [float(r[2]) for r in rows],
                    "entry_price": pa.array([r[3] if len(r) > 3 else None for r in rows],
                                            pa.float64())})
    market = pa.table({"symbol": INSTRUMENTS["symbol"],
                       "mark_price": [mark, mark, eth_mark, 0.05, mark],
                       "mark_iv": [None, None, None, 0.6, None]})
    idx = pa.table({"underlying": ["BTC", "ETH"],
                    "index_price": [mark if index is None else index, eth_mark]})
    bal = balances if balances is not None else pa.table(
        {"account": sorted({r[0] for r in rows}),
         "asset": ["USDT"] * len({r[0] for r in rows}),
         "amount": [1e9] * len({r[0] for r in rows})})
    return dict(positions=pos, instruments=INSTRUMENTS, market=market, index=idx,
                balances=bal, valuation_time=VT)


def by_symbol(result):
    return {r["symbol"]: r for r in result.positions.to_pylist() if r["symbol"] != "unallocated"}


# -- the reference cases through margin() -----------------------------------------------------

def _coinm_response():
    return [{"symbol": "BTCUSD_PERP", "bracket": r["bracket"], "initialLeverage":
             r["max_leverage"], "qtyFloor": r["floor"], "qtyCap": r["cap"],
             "maintMarginRatio": r["mmr"], "cum": r["cum"]}
            for r in ref("binance_coinm_btcusd")["brackets_btc"]]


COINM_CASES = ref("binance_coinm_btcusd")["cases"]


@pytest.mark.parametrize("model", ["shipped", "loaded"])
@pytest.mark.parametrize("case", COINM_CASES, ids=[c["what"] for c in COINM_CASES])
def test_coinm_reference_through_margin(case, model):
    """COIN-M: N = |contracts x 100 USD / mark| BTC, MM = N x mmr - cum (BTC) in the BTC/BTC
    unit, times the index in USD; the ladder shipped or loaded from the reference's rows."""
    tol = ref("binance_coinm_btcusd")["tolerance"]
    exp = case["expected"]
    mark = case["inputs"].get("mark_price", 25_000.0)
    if "contracts" in case["inputs"]:
        contracts = case["inputs"]["contracts"]
    else:                                   # a notional in BTC: contracts of 100 USD
        contracts = case["inputs"]["notional_btc"] * mark / 100.0
    m = Model.preset(UM) if model == "shipped" else \
        Model.preset(UM).with_brackets(_coinm_response())
    r = pmrisk.margin(**book([("a", "BTCUSD_PERP", -contracts)], mark=mark), model=m)
    p = by_symbol(r)["BTCUSD_PERP"]
    assert p["mmr"] == exp["mmr"]
    if "cum" in exp:
        assert p["maintenance_amount"] == pytest.approx(exp["cum"], rel=1e-12)
    if "notional_btc" in exp:
        assert p["notional"] == pytest.approx(exp["notional_btc"], rel=tol["rel"])
    mm_btc = exp["maintenance_margin_btc"]
    assert p["mm_contribution"] == pytest.approx(mm_btc, rel=tol["rel"], abs=tol["abs"])
    unit = r.units.to_pylist()[0]
    assert unit["unit"] == "BTC/BTC"
    assert unit["maintenance_margin"] == pytest.approx(mm_btc, rel=tol["rel"], abs=tol["abs"])
    acc = r.accounts.to_pylist()[0]
    assert acc["maintenance_margin"] == pytest.approx(mm_btc * mark, rel=1e-12)


USDM = ref("binance_usdm_btcusdt_brackets")


def _usdm_model(ladder, how):
    if how == "shipped":
        as_of = "2022-01-01" if ladder == "2021-03-18" else "snapshot"
        return Model.preset(UM).with_overrides({"brackets_as_of": as_of})
    rows = [dict(r, symbol="BTCUSDT") for r in USDM["ladders"][ladder]]
    return Model.preset(UM).with_brackets(rows)


@pytest.mark.parametrize("how", ["shipped", "loaded"])
@pytest.mark.parametrize("case", USDM["cases"],
                         ids=[f"{c['ladder']}-{c['notional_usd']:.0f}" for c in USDM["cases"]])
def test_usdm_reference_through_margin(case, how):
    """USDⓈ-M: N = |quantity x 1 BTC x mark| USD, MM = N x mmr - cum, one account per case."""
    tol = USDM["tolerance"]
    mark = 50_000.0
    q = case["notional_usd"] / mark
    r = pmrisk.margin(**book([("a", "BTCUSDT", q)], mark=mark),
                      model=_usdm_model(case["ladder"], how))
    want = case["expected_maintenance_margin_usd"]
    p = by_symbol(r)["BTCUSDT"]
    assert p["notional"] == pytest.approx(case["notional_usd"], rel=1e-15)
    assert p["mm_contribution_usd"] == pytest.approx(want, rel=tol["rel"], abs=tol["abs"])
    assert r.accounts["maintenance_margin"][0].as_py() == pytest.approx(
        want, rel=tol["rel"], abs=tol["abs"])
    if how == "shipped":
        assert p["ladder_effective"] == ("2021-03-18" if case["ladder"] == "2021-03-18"
                                         else "2025")


# -- a hand-computed account: USDⓈ-M + COIN-M + a margin loan + a haircut ----------------------

def test_hand_computed_account():
    """BTC index 60,000; ETH 3,000.
    BTCUSDT +10 @ entry 50,000, mark 60,000: N = 600,000 USD, 2025 ladder bracket 2:
        MM = 600,000 x 0.005 - 300 = 2,700; uPnL = 10 x 10,000 = 100,000; IM = N/100 = 6,000.
    BTCUSD_PERP -1,000 x 100 USD @ entry 50,000, mark 60,000: N = 100,000/60,000 BTC,
        bracket 1: MM = N x 0.004 BTC = 400 USD; uPnL = -100,000 x (1/50,000 - 1/60,000) BTC
        = -20,000 USD; IM = N/125 BTC = 800 USD.
    Balances: USDT 100,000; ETH 10 at a 0.95 collateral rate (28,500; actual 30,000);
        BTC -2 (a loan of 120,000 USD): loan MM = 0.10 x 120,000 = 12,000 (3x margin leverage).
    equity = 100,000 + 28,500 - 120,000 + 100,000 - 20,000 = 88,500 (actual 90,000);
    MM = 2,700 + 400 + 12,000 = 15,100; uniMMR = 88,500 / 15,100;
    IM = 6,000 + 800 = 6,800 (SPEC 15: sum N / leverage, the loan's MM left out)."""
    bal = pa.table({"account": ["a"] * 3, "asset": ["USDT", "ETH", "BTC"],
                    "amount": [100_000.0, 10.0, -2.0]})
    b = book([("a", "BTCUSDT", 10, 50_000.0), ("a", "BTCUSD_PERP", -1_000, 50_000.0)],
             mark=60_000.0, balances=bal)
    m = Model.preset(UM).with_overrides({"collateral": {"ETH": {"rate": 0.95}}})
    r = pmrisk.margin(**b, model=m)
    acc = r.accounts.to_pylist()[0]
    assert acc["equity"] == pytest.approx(88_500.0, rel=1e-12)
    assert acc["actual_equity"] == pytest.approx(90_000.0, rel=1e-12)
    assert acc["loan_maintenance_margin"] == pytest.approx(12_000.0, rel=1e-12)
    assert acc["maintenance_margin"] == pytest.approx(15_100.0, rel=1e-12)
    assert acc["margin_ratio"] == pytest.approx(88_500.0 / 15_100.0, rel=1e-12)
    assert acc["status"] == "normal"
    # IM = sum N / max leverage: the loan is in MM only (loan_im_factor 0)
    assert acc["initial_margin"] == pytest.approx(6_000.0 + 800.0, rel=1e-12)
    pos = by_symbol(r)
    assert pos["BTCUSDT"]["mm_contribution"] == pytest.approx(2_700.0, rel=1e-12)
    assert pos["BTCUSDT"]["unrealised_pnl"] == pytest.approx(100_000.0, rel=1e-12)
    assert pos["BTCUSD_PERP"]["mm_contribution_usd"] == pytest.approx(400.0, rel=1e-12)
    assert pos["BTCUSD_PERP"]["unrealised_pnl_usd"] == pytest.approx(-20_000.0, rel=1e-12)
    # contributions (positions + the loans' row) sum to the account's MM and IM
    total = sum(x["mm_contribution_usd"] for x in r.positions.to_pylist())
    assert total == pytest.approx(acc["maintenance_margin"], rel=1e-9)
    total = sum(x["im_contribution_usd"] for x in r.positions.to_pylist())
    assert total == pytest.approx(acc["initial_margin"], rel=1e-9)
    # 10x margin leverage: the loan MMR is 0.05
    r10 = pmrisk.margin(**b, model=m.with_overrides({"margin_leverage": "10x"}))
    assert r10.accounts["loan_maintenance_margin"][0].as_py() == pytest.approx(6_000.0)


@pytest.mark.parametrize("ratio,status", [(1.6, "normal"), (1.5, "normal"),
                                          (1.4999, "warning_1"), (1.2, "warning_1"),
                                          (1.1999, "warning_2"), (1.05, "warning_2"),
                                          (1.0499, "margin_call"), (1.0, "margin_call"),
                                          (0.9999, "liquidation")])
def test_pm_pro_bands(ratio, status):
    """uniMMR bands 1.50 / 1.20 / 1.05 / 1.00: equity set to ratio x MM (MM = 200 USD)."""
    b = book([("a", "BTCUSDT", 1.0)], mark=50_000.0,
             balances=pa.table({"account": ["a"], "asset": ["USDT"], "amount": [200.0 * ratio]}))
    acc = pmrisk.margin(**b, model=UM).accounts.to_pylist()[0]
    assert acc["maintenance_margin"] == pytest.approx(200.0, rel=1e-12)
    assert acc["status"] == status


# -- what brackets do not margin: one MarginError naming the rows ------------------------------

def test_options_and_spot_are_refused():
    b = book([("a", "BTCUSDT", 1), ("a", "BTC-28JUN24-70000-C", -1), ("b", "BTC-SPOT", 2)])
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(**b, model=UM)
    e = err.value
    assert (e.table, e.column) == ("positions", "symbol")
    assert e.rows == [("a", "BTC-28JUN24-70000-C"), ("b", "BTC-SPOT")]
    assert "option" in str(e)


def test_open_orders_are_refused():
    b = book([("a", "BTCUSDT", 1)])
    orders = pa.table({"account": ["a"], "order_id": ["o-1"], "symbol": ["BTCUSDT"],
                       "quantity": [1.0], "price": [50_000.0]})
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(**b, open_orders=orders, model=UM)
    assert (err.value.table, err.value.column, err.value.rows) == \
        ("open_orders", "symbol", [("a", "o-1")])


def test_symbol_without_a_ladder_says_how_to_fix_it():
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(**book([("a", "BTCUSDT", 1), ("a", "ETHUSDT", 5)]), model=UM)
    e = err.value
    assert (e.table, e.column, e.rows) == ("positions", "symbol", [("a", "ETHUSDT")])
    assert "with_brackets" in str(e)


def test_default_ladder_per_underlying_and_own_ladder():
    eth = [{"bracket": 1, "initialLeverage": 100, "notionalFloor": 0, "notionalCap": 50_000,
            "maintMarginRatio": 0.005},
           {"bracket": 2, "initialLeverage": 75, "notionalFloor": 50_000,
            "notionalCap": 250_000, "maintMarginRatio": 0.0065}]
    b = book([("a", "ETHUSDT", 50)], eth_mark=3_000.0)          # N = 150,000 USD
    m = Model.preset(UM).with_brackets(eth, underlying="ETH")
    p = by_symbol(pmrisk.margin(**b, model=m))["ETHUSDT"]
    assert p["bracket"] == 2 and p["maintenance_amount"] == pytest.approx(75.0)
    assert p["mm_contribution"] == pytest.approx(150_000 * 0.0065 - 75.0, rel=1e-12)
    assert p["ladder_effective"] == "model"
    # a symbol's own ladder wins over the underlying's default
    own = [dict(r, maintMarginRatio=0.01) for r in eth[:1]] + \
        [dict(eth[1], maintMarginRatio=0.02)]
    m2 = m.with_brackets(own, symbol="ETHUSDT")
    p2 = by_symbol(pmrisk.margin(**b, model=m2))["ETHUSDT"]
    assert p2["mm_contribution"] == pytest.approx(150_000 * 0.02 - 50_000 * 0.01, rel=1e-12)


# -- default ladders per underlying and instrument kind ----------------------------------------

# ETH COIN-M: a perpetual and a quarterly future, contracts of 10 USD, mark = index = 2,000.
# The future's rates are Binance's ETHUSD quarterly ladder (23 Aug 2021: 1 % to 100 ETH,
# 2.5 % to 500 ETH); its leverages and the perpetual's ladder are illustrative.
ETH_INSTRUMENTS = pa.table({
    "symbol": ["ETHUSD_PERP", "ETHUSD_240628"], "underlying": ["ETH", "ETH"],
    "kind": ["perpetual", "future"], "settlement": ["inverse", "inverse"],
    "contract_size": [10.0, 10.0],
    "expiry": pa.array([None, 1719561600 * 10**9], pa.timestamp("ns", "UTC"))})
ETH_PERP_LADDER = [
    {"bracket": 1, "initialLeverage": 100, "qtyFloor": 0, "qtyCap": 100,
     "maintMarginRatio": 0.005},
    {"bracket": 2, "initialLeverage": 75, "qtyFloor": 100, "qtyCap": 500,
     "maintMarginRatio": 0.0065}]
ETH_QUARTERLY_LADDER = [
    {"bracket": 1, "initialLeverage": 50, "qtyFloor": 0, "qtyCap": 100,
     "maintMarginRatio": 0.01},
    {"bracket": 2, "initialLeverage": 20, "qtyFloor": 100, "qtyCap": 500,
     "maintMarginRatio": 0.025}]


def eth_book():
    """Short 30,000 perpetual contracts (N = 30,000 x 10 / 2,000 = 150 ETH), long 40,000
    quarterly contracts (N = 200 ETH)."""
    return dict(
        positions=pa.table({"account": ["a", "a"], "symbol": ["ETHUSD_PERP", "ETHUSD_240628"],
                            "quantity": [-30_000.0, 40_000.0]}),
        instruments=ETH_INSTRUMENTS,
        market=pa.table({"symbol": ["ETHUSD_PERP", "ETHUSD_240628"],
                         "mark_price": [2_000.0, 2_000.0]}),
        index=pa.table({"underlying": ["ETH"], "index_price": [2_000.0]}),
        balances=pa.table({"account": ["a"], "asset": ["ETH"], "amount": [100.0]}),
        valuation_time=VT)


def _eth_defaults(*ladders):
    """Rows for the model's brackets key: (kind or None, ladder) -> ETH defaults."""
    return [dict(r, underlying="ETH", **({"kind": k} if k else {}))
            for k, lad in ladders for r in lad]


def test_perpetual_and_future_on_their_own_default_ladders():
    """A kind's default applies to that kind, the kind-less one to the rest: the perpetual on
    the kind-less ladder, the quarterly on the future's."""
    m = Model.preset(UM).with_overrides({"brackets": _eth_defaults(
        (None, ETH_PERP_LADDER), ("future", ETH_QUARTERLY_LADDER))})
    r = pmrisk.margin(**eth_book(), model=m)
    p = by_symbol(r)
    perp, fut = p["ETHUSD_PERP"], p["ETHUSD_240628"]
    # perpetual: 150 ETH in bracket 2, cum = 100 x (0.0065 - 0.005) = 0.15,
    # MM = 150 x 0.0065 - 0.15 = 0.825 ETH = 1,650 USD; IM = 150 / 75 = 2 ETH
    assert (perp["notional"], perp["bracket"], perp["mmr"]) == (150.0, 2, 0.0065)
    assert perp["maintenance_amount"] == pytest.approx(0.15, rel=1e-12)
    assert perp["mm_contribution"] == pytest.approx(0.825, rel=1e-12)
    assert perp["mm_contribution_usd"] == pytest.approx(1_650.0, rel=1e-12)
    assert perp["im_contribution"] == pytest.approx(2.0, rel=1e-12)
    # quarterly: 200 ETH in bracket 2, cum = 100 x (0.025 - 0.01) = 1.5,
    # MM = 200 x 0.025 - 1.5 = 3.5 ETH = 7,000 USD; IM = 200 / 20 = 10 ETH
    assert (fut["notional"], fut["bracket"], fut["mmr"]) == (200.0, 2, 0.025)
    assert fut["maintenance_amount"] == pytest.approx(1.5, rel=1e-12)
    assert fut["mm_contribution"] == pytest.approx(3.5, rel=1e-12)
    assert fut["mm_contribution_usd"] == pytest.approx(7_000.0, rel=1e-12)
    assert fut["im_contribution"] == pytest.approx(10.0, rel=1e-12)
    assert perp["ladder_effective"] == fut["ladder_effective"] == "model"
    unit = r.units.to_pylist()[0]
    assert unit["unit"] == "ETH/ETH"
    assert unit["maintenance_margin"] == pytest.approx(4.325, rel=1e-12)
    acc = r.accounts.to_pylist()[0]
    assert acc["maintenance_margin"] == pytest.approx(8_650.0, rel=1e-12)
    assert acc["initial_margin"] == pytest.approx(24_000.0, rel=1e-12)


def test_kind_default_wins_over_kindless_and_symbol_over_both():
    perp_own_kind = [dict(r, maintMarginRatio=x) for r, x in zip(ETH_PERP_LADDER, (0.004, 0.005))]
    rows = _eth_defaults((None, ETH_PERP_LADDER), ("perpetual", perp_own_kind))
    p = by_symbol(pmrisk.margin(**eth_book(), model=Model.preset(UM).with_overrides(
        {"brackets": rows})))
    # the perpetual on its kind's ladder: cum = 100 x 0.001 = 0.1, MM = 150 x 0.005 - 0.1
    assert p["ETHUSD_PERP"]["mm_contribution"] == pytest.approx(0.65, rel=1e-12)
    # the future has no kind default here: the kind-less one, 200 x 0.0065 - 0.15 = 1.15 ETH
    assert p["ETHUSD_240628"]["mm_contribution"] == pytest.approx(1.15, rel=1e-12)
    # a symbol's own ladder wins over both defaults: 200 x 0.02 - 0 = 4 ETH
    own = [{"symbol": "ETHUSD_240628", "bracket": 1, "initialLeverage": 50, "qtyFloor": 0,
            "qtyCap": 1_000, "maintMarginRatio": 0.02}]
    m = Model.preset(UM).with_overrides({"brackets": rows + _eth_defaults(
        ("future", ETH_QUARTERLY_LADDER)) + own})
    p = by_symbol(pmrisk.margin(**eth_book(), model=m))
    assert p["ETHUSD_240628"]["mm_contribution"] == pytest.approx(4.0, rel=1e-12)
    assert p["ETHUSD_PERP"]["mm_contribution"] == pytest.approx(0.65, rel=1e-12)


def test_kindless_default_figures_unchanged_by_kind_defaults():
    """One ladder as the kind-less default or as the default of each kind: the same bits."""
    kindless = Model.preset(UM).with_brackets(ETH_PERP_LADDER, underlying="ETH")
    per_kind = Model.preset(UM).with_brackets(ETH_PERP_LADDER, underlying="ETH",
                                              kind="perpetual") \
        .with_brackets(ETH_PERP_LADDER, underlying="ETH", kind="future")
    a = pmrisk.margin(**eth_book(), model=kindless)
    b = pmrisk.margin(**eth_book(), model=per_kind)
    for t in ("positions", "units", "accounts"):
        assert getattr(a, t).equals(getattr(b, t)), t
    # the perpetual and the quarterly on the one ladder: 0.825 and 200 x 0.0065 - 0.15
    p = by_symbol(a)
    assert p["ETHUSD_PERP"]["mm_contribution"] == pytest.approx(0.825, rel=1e-12)
    assert p["ETHUSD_240628"]["mm_contribution"] == pytest.approx(1.15, rel=1e-12)


def test_with_brackets_replaces_a_default_of_the_same_key_only():
    m = Model.preset(UM).with_brackets(ETH_PERP_LADDER, underlying="ETH") \
        .with_brackets(ETH_QUARTERLY_LADDER, underlying="ETH", kind="future")
    usdm = [{"bracket": 1, "initialLeverage": 100, "notionalFloor": 0, "notionalCap": 1e6,
             "maintMarginRatio": 0.005}]
    m = m.with_brackets(usdm, underlying="ETH")       # USDⓈ-M: another settlement, kept apart
    m = m.with_brackets(ETH_PERP_LADDER, underlying="ETH", kind="future")   # replaces future
    keys = [(r["underlying"], r.get("kind"), "qtyCap" in r) for r in m["brackets"]]
    assert keys == [("ETH", None, True)] * 2 + [("ETH", None, False)] + \
        [("ETH", "future", True)] * 2
    p = by_symbol(pmrisk.margin(**eth_book(), model=m))
    assert p["ETHUSD_240628"]["mm_contribution"] == pytest.approx(1.15, rel=1e-12)


def test_bad_kind_on_a_default_ladder_names_the_rows():
    rows = _eth_defaults((None, ETH_PERP_LADDER), ("swap", ETH_QUARTERLY_LADDER))
    with pytest.raises(pmrisk.MarginError) as err:
        Model.preset(UM).with_overrides({"brackets": rows})
    e = err.value
    assert (e.table, e.column) == ("brackets", "kind")
    assert e.rows == [("ETH", "swap", 2), ("ETH", "swap", 3)]
    assert e.keys == ("underlying", "kind", "row")
    with pytest.raises(pmrisk.MarginError) as err:               # options have no brackets
        Model.preset(UM).with_brackets(ETH_QUARTERLY_LADDER, underlying="ETH", kind="option")
    assert (err.value.table, err.value.column) == ("arguments", "kind")
    with pytest.raises(pmrisk.MarginError) as err:               # a symbol's kind is known
        Model.preset(UM).with_brackets(ETH_QUARTERLY_LADDER, symbol="ETHUSD_240628",
                                       kind="future")
    assert (err.value.table, err.value.column) == ("arguments", "kind")
    own = [dict(r, symbol="ETHUSD_240628", kind="future") for r in ETH_QUARTERLY_LADDER]
    with pytest.raises(pmrisk.MarginError) as err:
        Model.from_dict({"preset": UM, "brackets": own})
    e = err.value
    assert (e.table, e.column, e.rows) == \
        ("brackets", "kind", [("ETHUSD_240628", "future", 0), ("ETHUSD_240628", "future", 1)])


@pytest.mark.parametrize("kind", [None, "future"])
def test_two_defaults_for_one_key_name_the_rows(kind):
    """Two ladders for the same (underlying, settlement, kind): one error naming the rows, not
    a misleading bracket numbering (the perpetual's and the quarterly's ladders without kind,
    or both given as the future's)."""
    rows = _eth_defaults((kind, ETH_PERP_LADDER), (kind, ETH_QUARTERLY_LADDER))
    with pytest.raises(pmrisk.MarginError) as err:
        Model.preset(UM).with_overrides({"brackets": rows})
    e = err.value
    assert (e.table, e.column) == ("brackets", "kind")
    assert e.keys == ("underlying", "kind", "settlement", "row")
    assert e.rows == [("ETH", kind, "coin_m", i) for i in range(4)]
    assert "one default ladder per underlying, settlement and kind" in str(e)
    # without bracket numbers: the second floor of 0 starts a second ladder
    bare = [{k: v for k, v in r.items() if k != "bracket"} for r in rows]
    with pytest.raises(pmrisk.MarginError) as err:
        Model.preset(UM).with_overrides({"brackets": bare})
    assert (err.value.column, err.value.rows) == ("kind", [("ETH", kind, "coin_m", 0),
                                                           ("ETH", kind, "coin_m", 2)])
    # the same two ladders, one per kind, are fine
    ok = _eth_defaults(("perpetual", ETH_PERP_LADDER), ("future", ETH_QUARTERLY_LADDER))
    p = by_symbol(pmrisk.margin(**eth_book(), model=Model.preset(UM).with_overrides(
        {"brackets": ok})))
    assert p["ETHUSD_240628"]["mm_contribution"] == pytest.approx(3.5, rel=1e-12)


def test_kind_default_from_a_toml_model(tmp_path):
    path = tmp_path / "model.toml"
    lines = ['preset = "binance_um"']
    for k, lad in ((None, ETH_PERP_LADDER), ("future", ETH_QUARTERLY_LADDER)):
        for r in lad:
            lines.append("[[brackets]]")
            lines.append('underlying = "ETH"')
            if k:
                lines.append(f'kind = "{k}"')
            lines += [f"{f} = {v}" for f, v in r.items()]
    path.write_text("\n".join(lines) + "\n")
    p = by_symbol(pmrisk.margin(**eth_book(), model=Model.from_toml(path)))
    assert p["ETHUSD_PERP"]["mm_contribution"] == pytest.approx(0.825, rel=1e-12)
    assert p["ETHUSD_240628"]["mm_contribution"] == pytest.approx(3.5, rel=1e-12)


def test_bad_ladder_names_the_row():
    rows = [dict(r, symbol="BTCUSDT") for r in USDM["ladders"]["2025"]]
    rows[3] = dict(rows[3], cum=12_000.0 * (1 + 1e-8))
    with pytest.raises(pmrisk.MarginError) as err:
        Model.preset(UM).with_brackets(rows)
    assert (err.value.table, err.value.column, err.value.rows) == \
        ("brackets", "cum", [("BTCUSDT", 4)])
    with pytest.raises(pmrisk.MarginError) as err:          # the same rows as a model key
        Model.from_dict({"preset": UM, "brackets": rows})
    assert (err.value.table, err.value.column) == ("brackets", "cum")


@pytest.mark.parametrize("overrides,column", [
    ({"brackets_as_of": "last tuesday"}, "brackets_as_of"),
    ({"brackets": "BTCUSDT"}, "brackets"),
    ({"margin_leverage": "4x"}, "margin_leverage"),
    ({"loan_mmr_5x": 1.5}, "loan_mmr_5x"),
])
def test_bad_bracket_model_keys(overrides, column):
    with pytest.raises(pmrisk.MarginError) as err:
        Model.preset(UM).with_overrides(overrides)
    assert (err.value.table, err.value.column) == ("model", column)


def test_notional_above_the_last_cap_is_refused():
    q = 1.9e9 / 50_000.0                                         # above the 1.8e9 cap (2025)
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(**book([("a", "BTCUSDT", 1), ("b", "BTCUSDT", q)]), model=UM)
    assert (err.value.table, err.value.column, err.value.rows) == \
        ("positions", "quantity", [("b", "BTCUSDT")])


# -- hypothesis: the kernel equals its numpy twin; MM continuous and non-decreasing ----------

@st.composite
def phase_inputs(draw):
    n_lad = draw(st.integers(1, 3))
    floors, caps, mmrs, levs, sizes = [], [], [], [], []
    for _ in range(n_lad):
        k = draw(st.integers(1, 5))
        widths = draw(st.lists(st.floats(1.0, 1e7), min_size=k, max_size=k))
        cap = np.cumsum(widths)
        floors.append(np.concatenate([[0.0], cap[:-1]]))
        caps.append(cap)
        mmrs.append(np.minimum(0.004 * np.cumprod(draw(st.lists(
            st.sampled_from([1.0, 1.25, 2.0, 2.5]), min_size=k, max_size=k))), 1.0))
        levs.append(np.array(draw(st.lists(st.sampled_from([1.0, 5.0, 20.0, 125.0]),
                                           min_size=k, max_size=k))))
        sizes.append(k)
    lads = [B.ladder(list(zip(f, c, m, lv))) for f, c, m, lv in zip(floors, caps, mmrs, levs)]
    flat = B.packed(lads)
    n_units = draw(st.integers(1, 4))
    n_instr = draw(st.integers(1, 4))
    n_pos = draw(st.integers(0, 12))
    pos_unit = np.array(draw(st.lists(st.integers(0, n_units - 1), min_size=n_pos,
                                      max_size=n_pos)), dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(np.bincount(pos_unit, minlength=n_units))])
    order = np.argsort(pos_unit, kind="stable")
    pos_instr = np.array(draw(st.lists(st.integers(0, n_instr - 1), min_size=n_pos,
                                       max_size=n_pos)), dtype=np.int64)
    q = np.array(draw(st.lists(st.floats(-1e4, 1e4), min_size=n_pos, max_size=n_pos)))
    cs = np.array(draw(st.lists(st.floats(0.01, 100.0), min_size=n_instr, max_size=n_instr)))
    mark = np.array(draw(st.lists(st.floats(1.0, 1e5), min_size=n_instr, max_size=n_instr)))
    coin = np.array(draw(st.lists(st.integers(0, 1), min_size=n_instr, max_size=n_instr)),
                    dtype=np.int64)
    pos_ladder = np.array(draw(st.lists(st.integers(0, n_lad - 1), min_size=n_pos,
                                        max_size=n_pos)), dtype=np.int64)
    lev = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 3.0, 10.0]), min_size=n_pos,
                                 max_size=n_pos)))
    sel = np.array(sorted(draw(st.sets(st.integers(0, n_units - 1), min_size=1))),
                   dtype=np.int64)
    return (sel, start.astype(np.int64), order.astype(np.int64), pos_instr, q, cs, mark, coin,
            pos_ladder, lev, flat["floor"], flat["cap"], flat["mmr"], flat["cum"],
            flat["max_leverage"], flat["offsets"])


@given(phase_inputs(), st.booleans())
def test_bracket_phase_kernel_agrees_with_oracle(args, parallel):
    n_units, n_pos = len(args[1]) - 1, len(args[4])
    outs = [np.full(n_units, np.nan), np.full(n_units, np.nan), np.full(n_pos, np.nan),
            np.full(n_pos, -1, np.int64), np.full(n_pos, np.nan), np.full(n_pos, np.nan),
            np.zeros(n_units)]
    kernel = bracket_units if parallel else bracket_units_serial
    kernel(*kernel_args(*args, np.zeros(n_pos), np.zeros(n_pos)), *outs)
    want = oracles.bracket_units(*args)
    for got, exp in zip(outs[:6], want):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=0, equal_nan=True)
    sel = args[0]
    unit_ok = ~np.isnan(want[0][sel])
    assert (outs[6][sel] == np.where(unit_ok, 1.0, 0.0)).all()


SHIPPED_2025 = B.binance_ladder("BTCUSDT")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, float(SHIPPED_2025.cap[-1])), min_size=1, max_size=8),
       st.sampled_from(["2022-01-01", "snapshot"]))
def test_engine_mm_continuous_at_edges_and_non_decreasing(notionals, as_of):
    """Through margin(): one account per notional (every bracket edge, just either side of
    it, and random notionals); MM is non-decreasing in notional and continuous at the edges."""
    lad = B.binance_ladder("BTCUSDT", "2022-01-01" if as_of != "snapshot" else None)
    edges = lad.cap[:-1]
    ns = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, 0.0),
                         np.array(notionals) * float(lad.cap[-1] / SHIPPED_2025.cap[-1])])
    ns = np.unique(np.minimum(np.where(ns < 1.0, 0.0, ns), lad.cap[-1]))
    mark = 50_000.0
    rows = [(f"a{k:03d}", "BTCUSDT", n / mark) for k, n in enumerate(ns)]
    m = Model.preset(UM).with_overrides({"brackets_as_of": as_of})
    r = pmrisk.margin(**book(rows, mark=mark), model=m)
    pos = {x["account"]: x for x in r.positions.to_pylist() if x["symbol"] == "BTCUSDT"}
    n = np.array([pos[a]["notional"] for a, _, _ in rows])
    mm = np.array([pos[a]["mm_contribution"] for a, _, _ in rows])
    order = np.argsort(n, kind="stable")
    assert (np.diff(mm[order]) >= -1e-12 * lad.cap[-1]).all()
    # continuity: either side of an edge the MM differs by at most the slope x the step
    for e in edges:
        k = np.searchsorted(n[order], e)
        lo, hi = mm[order][max(k - 1, 0)], mm[order][min(k + 1, len(n) - 1)]
        assert abs(hi - lo) <= 1e-6 * max(1.0, e * lad.mmr[-1])


# -- the same results through margin(), Monitor and backtest --------------------------------

KEYS = {"accounts": ["account"], "units": ["account", "unit"],
        "positions": ["account", "unit", "symbol"]}


def assert_same(got, want, name):
    """Tables equal, rows sorted by key (a Monitor regroups changed accounts): float columns
    to 1e-12 relative (nulls and NaN alike), others exactly."""
    got, want = (t.sort_by([(k, "ascending") for k in KEYS[name]]) for t in (got, want))
    assert got.column_names == want.column_names, name
    for c in want.column_names:
        x, y = got.column(c), want.column(c)
        if pa.types.is_floating(y.type):
            x = x.to_numpy(zero_copy_only=False).astype(float)
            y = y.to_numpy(zero_copy_only=False).astype(float)
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, equal_nan=True,
                                       err_msg=f"{name}.{c}")
        else:
            assert x.to_pylist() == y.to_pylist(), (name, c)


def _stamp(table, t):
    """``table`` with a ``time`` column of ``t`` (ISO-8601 UTC, no zone suffix)."""
    ns = np.full(table.num_rows, np.datetime64(t, "ns").astype(np.int64))
    return table.append_column("time", pa.array(ns, pa.int64()).cast(
        pa.timestamp("ns", "UTC")))


def _tables(r):
    return {n: getattr(r, n) for n in ("accounts", "units", "positions")}


def test_monitor_after_ticks_equals_margin():
    b = samples.futures_book(8, seed=3)
    vt = b.pop("valuation_time")
    mon = pmrisk.Monitor(**b, model=UM, valuation_time=vt)
    try:
        market = b["market"]
        for factor in (1.03, 0.9, 0.97):
            market = pa.table({"symbol": market["symbol"],
                               "mark_price": pa.compute.multiply(market["mark_price"], factor)})
            index = pa.table({"underlying": ["BTC"],
                              "index_price": [b["index"]["index_price"][0].as_py() * factor]})
            b["index"] = index
            mon.update(market=market, index=index)
            b["market"] = market
            ref_r = pmrisk.margin(**mon.state(), model=UM)
            for name, t in _tables(ref_r).items():
                assert_same(getattr(mon, name), t, name)
        # a position changes size (another bracket) and a new account opens one
        mon.update(positions=pa.table({"account": ["um-00", "um-new"],
                                       "symbol": ["BTCUSDT", "BTCUSD_PERP"],
                                       "quantity": [250.0, -5_000.0]}),
                   balances=pa.table({"account": ["um-new"], "asset": ["USDT"],
                                      "amount": [50_000.0]}))
        ref_r = pmrisk.margin(**mon.state(), model=UM)
        assert "um-new" in ref_r.accounts["account"].to_pylist()
        for name, t in _tables(ref_r).items():
            assert_same(getattr(mon, name), t, name)
    finally:
        mon.close()


def test_backtest_equals_margin_per_snapshot():
    """Two snapshots a day apart: the backtest's accounts equal margin() of each snapshot."""
    b = samples.futures_book(5, seed=1)
    b.pop("valuation_time")
    times = ["2025-06-17T08:00:00Z", "2025-06-18T08:00:00Z"]     # the 2025 ladder
    timed = {name: pa.concat_tables([_stamp(b[name], t[:-1]) for t in times])
             for name in ("positions", "market", "index", "balances")}
    res = pmrisk.backtest(timed["positions"], b["instruments"], timed["market"], timed["index"],
                          balances=timed["balances"], model=UM, progress=False)
    acc = res.accounts if hasattr(res, "accounts") else res["accounts"]
    for t in times:
        one = pmrisk.margin(b["positions"], b["instruments"], b["market"], b["index"],
                            balances=b["balances"], model=UM, valuation_time=t).accounts
        ns = np.datetime64(t[:-1], "ns").astype(np.int64)
        rows = acc.filter(pa.compute.equal(acc["time"].cast(pa.int64()), ns))
        assert rows["account"].to_pylist() == one["account"].to_pylist()
        for c in ("equity", "maintenance_margin", "initial_margin", "margin_ratio"):
            assert rows[c].to_pylist() == pytest.approx(one[c].to_pylist(), rel=1e-12), c
        assert rows["status"].to_pylist() == one["status"].to_pylist()


# -- dated ladders ------------------------------------------------------------------------------

def test_each_snapshot_uses_the_ladder_in_force_at_its_time():
    """15M USD of BTCUSDT: 483,700 under the 2021-03-18 ladder, 168,000 under 2025's."""
    rows = [("a", "BTCUSDT", 300.0)]
    b = book(rows, mark=50_000.0)
    parts = {}
    for name in ("positions", "market", "index", "balances"):
        parts[name] = pa.concat_tables([
            _stamp(b[name], t) for t in ("2022-01-01T00:00:00", "2025-06-01T00:00:00")])
    r = pmrisk.margin(parts["positions"], INSTRUMENTS, parts["market"], parts["index"],
                      balances=parts["balances"], model=UM)
    mm = r.accounts["maintenance_margin"].to_pylist()
    assert mm == pytest.approx([483_700.0, 168_000.0], rel=1e-12)
    eff = [x["ladder_effective"] for x in r.positions.to_pylist() if x["symbol"] == "BTCUSDT"]
    assert eff == ["2021-03-18", "2025"]
    # a pinned date wins over the snapshots' times; an untimed book gets the latest
    pinned = Model.preset(UM).with_overrides({"brackets_as_of": "2022-01-01"})
    r2 = pmrisk.margin(parts["positions"], INSTRUMENTS, parts["market"], parts["index"],
                       balances=parts["balances"], model=pinned)
    assert r2.accounts["maintenance_margin"].to_pylist() == pytest.approx([483_700.0] * 2)
    assert pmrisk.margin(**b, model=UM).accounts["maintenance_margin"][0].as_py() == \
        pytest.approx(168_000.0)


def test_other_presets_have_no_bracket_columns():
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    cols = pmrisk.margin(**b, model="deribit_pme", valuation_time=vt).positions.column_names
    assert "notional" not in cols and "bracket" not in cols


def test_preset_as_of_picks_the_ladder_in_force_then():
    """Model.preset("binance_um", as_of=...) takes the ladders in force at that date; the
    latest otherwise; as_of="valuation_time" at each snapshot's time (timed or not)."""
    b = book([("a", "BTCUSDT", 300.0)], mark=50_000.0)         # 15M USD
    old = pmrisk.margin(**b, model=Model.preset(UM, as_of="2022-01-01"))
    assert old.accounts["maintenance_margin"][0].as_py() == pytest.approx(483_700.0)
    assert by_symbol(old)["BTCUSDT"]["ladder_effective"] == "2021-03-18"
    new = pmrisk.margin(**b, model=Model.preset(UM))
    assert new.accounts["maintenance_margin"][0].as_py() == pytest.approx(168_000.0)
    at_vt = Model.preset(UM, as_of="valuation_time")
    r = pmrisk.margin(**dict(b, valuation_time="2022-06-01T00:00:00Z"), model=at_vt)
    assert r.accounts["maintenance_margin"][0].as_py() == pytest.approx(483_700.0)
    parts = {name: pa.concat_tables([_stamp(b[name], t) for t in
                                     ("2022-01-01T00:00:00", "2025-06-01T00:00:00")])
             for name in ("positions", "market", "index", "balances")}
    timed = pmrisk.margin(parts["positions"], INSTRUMENTS, parts["market"], parts["index"],
                          balances=parts["balances"], model=at_vt)
    assert timed.accounts["maintenance_margin"].to_pylist() == \
        pytest.approx([483_700.0, 168_000.0], rel=1e-12)


def test_every_shipped_ladder_date_is_a_preset_set_date():
    """The preset's dated sets mark the days the shipped ladders change, so a model taken at a
    date (or per period of as_of="valuation_time") sees the ladders of that date."""
    sets = Model.history(UM)["effective"].to_pylist()
    for lad in B.shipped_ladders():
        eff = lad.effective if len(lad.effective) != 4 else f"{lad.effective}-01-01"
        assert eff in sets, (lad.symbol, lad.effective)


def test_demo_runs_binance_um_on_the_futures_book(capsys):
    from pmrisk.cli import commands
    assert commands.main(["demo", "--model", "binance_um"]) == 0
    out = capsys.readouterr().out
    assert "model binance_um" in out and "150%" in out
    for a in samples.futures_book()["positions"]["account"].to_pylist():
        assert a in out


def test_units_have_no_binding_cell_and_no_risk_vectors():
    b = book([("a", "BTCUSDT", 1.0)])
    units = pmrisk.margin(**b, model=UM).units
    for c in ("binding_scenario", "binding_table", "binding_price_shock", "binding_vol_state"):
        assert units[c].null_count == units.num_rows, c
    assert units["worst_case"].to_pylist() == [0.0]
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(**b, model=UM, risk_vectors=True)
    assert (err.value.table, err.value.column) == ("arguments", "risk_vectors")


def test_liquidation_plan_restores_the_ratio():
    """An account below 100 %: the plan reduces the largest MM contributor until uniMMR is
    back to the liquidation target (1.0)."""
    bal = pa.table({"account": ["a"], "asset": ["USDT"], "amount": [150_000.0]})
    b = book([("a", "BTCUSDT", 400.0), ("a", "BTCUSD_PERP", -20_000.0)], mark=50_000.0,
             balances=bal)
    r = pmrisk.margin(**b, model=UM)
    assert r.accounts["status"][0].as_py() == "liquidation"
    plan = pmrisk.liquidation_plan(**b, model=UM)
    rows = plan.to_pylist()
    assert rows and rows[-1]["margin_ratio_after"] >= 1.0 - 1e-9


def test_own_ladders_follow_a_dated_model():
    """with_brackets on a model taken at a date keeps the date (and, per snapshot, the
    ladders): it is an override like any other."""
    rows = [dict(r, symbol="BTCUSD_PERP") for r in _coinm_response()]
    m = Model.preset(UM, as_of="2022-01-01").with_brackets(rows)
    assert m.as_of == Model.preset(UM, as_of="2022-01-01").as_of
    at_vt = Model.preset(UM, as_of="valuation_time").with_brackets(rows)
    assert at_vt.dated and at_vt.at(1_700_000_000 * 10**9)["brackets"] == m["brackets"]


def test_what_if_equals_margin_on_the_traded_book():
    """Monitor.what_if under binance_um: the account after a basket of futures fills equals
    margin() on the book with the positions changed (no entry prices and fills at the mark:
    no cash moves, see pmrisk.monitor.what_if)."""
    b = samples.futures_book(4, seed=5)
    vt = b.pop("valuation_time")
    b["positions"] = b["positions"].drop_columns(["entry_price"])
    mon = pmrisk.Monitor(**b, model=UM, valuation_time=vt)
    try:
        w = mon.what_if("um-01", {"symbol": ["BTCUSDT", "BTCUSD_PERP"],
                                  "quantity": [120.0, -3_000.0]})
        pos = b["positions"].to_pylist()
        for r in pos:
            if r["account"] == "um-01":
                r["quantity"] += 120.0 if r["symbol"] == "BTCUSDT" else -3_000.0
        traded = dict(b, positions=pa.Table.from_pylist(pos, schema=b["positions"].schema))
        want = [r for r in pmrisk.margin(**traded, model=UM, valuation_time=vt)
                .accounts.to_pylist() if r["account"] == "um-01"][0]
        got = [r for r in w.accounts.to_pylist() if r["state"] == "after"][0]
        for c in ("maintenance_margin", "initial_margin", "margin_ratio"):
            assert got[c] == pytest.approx(want[c], rel=1e-12), c
        assert got["status"] == want["status"]
    finally:
        mon.close()


# -- a position's own leverage (positions.leverage): IM = N / leverage -----------------------

def _with_leverage(b, leverage):
    """The book ``b`` with a positions ``leverage`` column (None: the bracket's maximum)."""
    return dict(b, positions=b["positions"].append_column(
        "leverage", pa.array(leverage, pa.float64())))


def test_own_leverage_sets_initial_margin():
    """BTC index and marks 60,000.
    BTCUSDT +10: N = 600,000 USD, 2025 ladder bracket 2 (max 100x); leverage 20:
        IM = 600,000 / 20 = 30,000 (null: 600,000 / 100 = 6,000).
    BTCUSD_PERP -1,000 x 100 USD: N = 100,000 / 60,000 BTC, bracket 1 (max 125x); leverage 10:
        IM = N / 10 BTC = 10,000 USD (null: N / 125 = 800 USD).
    MM is the bracket's either way (2,700 + 400)."""
    b = book([("a", "BTCUSDT", 10), ("a", "BTCUSD_PERP", -1_000)], mark=60_000.0)
    plain = pmrisk.margin(**b, model=UM)
    own = pmrisk.margin(**_with_leverage(b, [20.0, 10.0]), model=UM)
    nulls = pmrisk.margin(**_with_leverage(b, [None, None]), model=UM)
    half = pmrisk.margin(**_with_leverage(b, [20.0, None]), model=UM)
    im = {k: r.accounts["initial_margin"][0].as_py()
          for k, r in (("plain", plain), ("own", own), ("nulls", nulls), ("half", half))}
    assert im["own"] == pytest.approx(30_000.0 + 10_000.0, rel=1e-12)
    assert im["plain"] == im["nulls"] == pytest.approx(6_000.0 + 800.0, rel=1e-12)
    assert im["half"] == pytest.approx(30_000.0 + 800.0, rel=1e-12)
    for r in (own, nulls):
        assert r.accounts["maintenance_margin"][0].as_py() == pytest.approx(3_100.0, rel=1e-12)
    pos = by_symbol(own)
    assert pos["BTCUSDT"]["leverage"] == 20.0 and pos["BTCUSD_PERP"]["leverage"] == 10.0
    assert by_symbol(nulls)["BTCUSDT"]["leverage"] == 100.0


# -- margin loans: in MM, not in IM (loan_im_factor) ------------------------------------------

def _loan_book():
    """BTC index and marks 60,000.  BTCUSDT +10 @ 50,000 with leverage 20; BTCUSD_PERP -1,000
    x 100 USD @ 50,000 with a null leverage (its bracket's maximum); balances USDT 100,000 and
    BTC -2 (a loan of 120,000 USD)."""
    bal = pa.table({"account": ["a", "a"], "asset": ["USDT", "BTC"],
                    "amount": [100_000.0, -2.0]})
    b = book([("a", "BTCUSDT", 10, 50_000.0), ("a", "BTCUSD_PERP", -1_000, 50_000.0)],
             mark=60_000.0, balances=bal)
    return _with_leverage(b, [20.0, None])


def _sums(r, account="a"):
    rows = [x for x in r.positions.to_pylist() if x["account"] == account]
    return (sum(x["mm_contribution_usd"] for x in rows),
            sum(x["im_contribution_usd"] for x in rows))


def test_loan_counts_in_mm_not_in_im():
    """SPEC 15: MM = sum of the bracket MM + loan_mmr x loan; IM = sum N / leverage.
    BTCUSDT N = 600,000 USD, bracket 2: MM = 600,000 x 0.005 - 300 = 2,700; leverage 20:
        IM = 30,000.
    BTCUSD_PERP N = 100,000 / 60,000 BTC, bracket 1: MM = N x 0.004 BTC = 400 USD; its
        bracket's 125x: IM = N / 125 BTC = 800 USD.
    Loan 120,000 USD at 3x margin leverage: loan MM = 0.10 x 120,000 = 12,000, loan IM 0.
    equity = 100,000 - 120,000 + 100,000 - 20,000 = 60,000; MM = 15,100; IM = 30,800."""
    r = pmrisk.margin(**_loan_book(), model=UM)
    acc = r.accounts.to_pylist()[0]
    assert acc["loan_maintenance_margin"] == pytest.approx(12_000.0, rel=1e-12)
    assert acc["maintenance_margin"] == pytest.approx(2_700.0 + 400.0 + 12_000.0, rel=1e-12)
    assert acc["initial_margin"] == pytest.approx(30_000.0 + 800.0, rel=1e-12)
    assert acc["equity"] == pytest.approx(60_000.0, rel=1e-12)
    assert acc["margin_ratio"] == pytest.approx(60_000.0 / 15_100.0, rel=1e-12)
    assert acc["available_margin"] == pytest.approx(60_000.0 - 30_800.0, rel=1e-12)
    # exactly the units' IM: nothing of the loan is added
    units = r.units.to_pylist()
    assert acc["initial_margin"] == units[0]["initial_margin_usd"] + \
        units[1]["initial_margin_usd"]
    pos = by_symbol(r)
    assert pos["BTCUSDT"]["im_contribution"] == pytest.approx(30_000.0, rel=1e-12)
    assert pos["BTCUSD_PERP"]["im_contribution_usd"] == pytest.approx(800.0, rel=1e-12)
    loans = [x for x in r.positions.to_pylist() if x["unit"] == "loans"]
    assert len(loans) == 1 and loans[0]["symbol"] == "unallocated"
    assert loans[0]["mm_contribution_usd"] == pytest.approx(12_000.0, rel=1e-12)
    assert loans[0]["im_contribution"] == loans[0]["im_contribution_usd"] == 0.0
    mm, im = _sums(r)
    assert mm == pytest.approx(acc["maintenance_margin"], rel=1e-12)
    assert im == pytest.approx(acc["initial_margin"], rel=1e-12)



def test_loan_at_5x_margin_leverage():
    """SPEC 15: loan MMR by margin leverage, 5x 0.08 (binance_um's loan_mmr_5x).
    BTC index and mark 60,000, ETH 3,000.  BTCUSDT +10 @ 50,000: N = 600,000 USD, bracket 2,
        MM = 600,000 x 0.005 - 300 = 2,700, uPnL 100,000.
    Loans: BTC -0.5 (30,000 USD) and ETH -5 (15,000 USD) = 45,000 USD;
        loan MM = 0.08 x 45,000 = 3,600 (3x would give 0.10 x 45,000 = 4,500).
    equity = 100,000 - 30,000 - 15,000 + 100,000 = 155,000; MM = 2,700 + 3,600 = 6,300."""
    bal = pa.table({"account": ["a"] * 3, "asset": ["USDT", "BTC", "ETH"],
                    "amount": [100_000.0, -0.5, -5.0]})
    b = book([("a", "BTCUSDT", 10, 50_000.0)], mark=60_000.0, balances=bal)
    m = Model.preset(UM).with_overrides({"margin_leverage": "5x"})
    assert m["loan_mmr_5x"] == 0.08
    r = pmrisk.margin(**b, model=m)
    acc = r.accounts.to_pylist()[0]
    assert acc["loan_maintenance_margin"] == pytest.approx(3_600.0, rel=1e-12)
    assert acc["maintenance_margin"] == pytest.approx(6_300.0, rel=1e-12)
    assert acc["equity"] == pytest.approx(155_000.0, rel=1e-12)
    assert acc["margin_ratio"] == pytest.approx(155_000.0 / 6_300.0, rel=1e-12)
    loans = [x for x in r.positions.to_pylist() if x["unit"] == "loans"]
    assert loans[0]["mm_contribution_usd"] == pytest.approx(3_600.0, rel=1e-12)
    at_3x = pmrisk.margin(**b, model=UM).accounts.to_pylist()[0]
    assert at_3x["loan_maintenance_margin"] == pytest.approx(4_500.0, rel=1e-12)

@pytest.mark.parametrize("overrides,loan_im", [
    ({"loan_im_factor": 1.0}, 12_000.0),                          # IM counts the loan's MM
    ({"loan_im_factor": 0.5}, 6_000.0),
    ({"loan_im_factor": 1.0, "margin_leverage": "10x"}, 6_000.0),  # the MMR in force: 0.05
    ({"loan_im_factor": 2.0, "margin_leverage": "off", "loan_mmr": 0.02}, 4_800.0),
])
def test_loan_im_factor_charges_a_multiple_of_the_loan_mm(overrides, loan_im):
    """The loans' IM is loan_im_factor x their MM, at the loan MMR in force (margin_leverage's
    or loan_mmr); MM, equity and the ratio do not move with it."""
    b = _loan_book()
    base = pmrisk.margin(**b, model=Model.preset(UM).with_overrides(
        {k: v for k, v in overrides.items() if k != "loan_im_factor"}))
    r = pmrisk.margin(**b, model=Model.preset(UM).with_overrides(overrides))
    acc, acc0 = r.accounts.to_pylist()[0], base.accounts.to_pylist()[0]
    assert acc["initial_margin"] == pytest.approx(30_800.0 + loan_im, rel=1e-12)
    assert acc0["initial_margin"] == pytest.approx(30_800.0, rel=1e-12)
    for c in ("equity", "maintenance_margin", "loan_maintenance_margin", "margin_ratio",
              "status"):
        assert acc[c] == acc0[c], c
    loans = [x for x in r.positions.to_pylist() if x["unit"] == "loans"][0]
    assert loans["im_contribution_usd"] == pytest.approx(loan_im, rel=1e-12)
    mm, im = _sums(r)
    assert mm == pytest.approx(acc["maintenance_margin"], rel=1e-12)
    assert im == pytest.approx(acc["initial_margin"], rel=1e-12)


@pytest.mark.parametrize("preset", ["standard", "deribit_pme", "span", "binance_pm_pro"])
def test_other_presets_keep_the_loan_mm_in_im(preset):
    """loan_im_factor is 1 in every other preset: the account's IM gets the loans' MM, and
    the loans' row carries it as MM and IM (the default, to the bit)."""
    assert Model.preset(preset)["loan_im_factor"] == 1.0
    pos = pa.table({"account": ["a"], "symbol": ["BTCUSDT"], "quantity": [2.0]})
    b = dict(book([("a", "BTCUSDT", 2.0)]), positions=pos,
             balances=pa.table({"account": ["a", "a"], "asset": ["USDT", "BTC"],
                                "amount": [200_000.0, -1.0]}))
    r = pmrisk.margin(**b, model=preset)
    acc = r.accounts.to_pylist()[0]
    loans = [x for x in r.positions.to_pylist() if x["unit"] == "loans"][0]
    assert acc["loan_maintenance_margin"] > 0.0
    assert loans["im_contribution_usd"] == loans["mm_contribution_usd"] == \
        acc["loan_maintenance_margin"]
    unit_im = sum(x["initial_margin_usd"] for x in r.units.to_pylist())
    assert acc["initial_margin"] == unit_im + acc["loan_maintenance_margin"]
    again = pmrisk.margin(**b, model=Model.preset(preset).with_overrides(
        {"loan_im_factor": 1.0}))
    for name, t in _tables(r).items():
        assert getattr(again, name).equals(t), name


@given(seed=st.integers(0, 10_000), n=st.integers(1, 8))
@settings(max_examples=10, deadline=None)
def test_contributions_sum_to_margin_with_loans(seed, n):
    """The futures book (some accounts borrow): per account, the positions' and the loans'
    rows sum to its MM and its IM (SPEC 8), the loans' IM being 0."""
    b = samples.futures_book(n, seed=seed)
    r = pmrisk.margin(**b, model=UM)
    loans = r.positions.filter(pa.compute.equal(r.positions["unit"], "loans"))
    assert all(x == 0.0 for x in loans["im_contribution_usd"].to_pylist())
    for acc in r.accounts.to_pylist():
        mm, im = _sums(r, acc["account"])
        assert mm == pytest.approx(acc["maintenance_margin"], rel=1e-9, abs=1e-9)
        assert im == pytest.approx(acc["initial_margin"], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("value", [-0.5, math.inf, math.nan, "0", True, 2e6])
def test_bad_loan_im_factor_names_the_key(value):
    with pytest.raises(pmrisk.MarginError) as err:
        Model.preset(UM).with_overrides({"loan_im_factor": value})
    assert (err.value.table, err.value.column) == ("model", "loan_im_factor")


def test_leverage_is_ignored_by_other_presets():
    b = samples.futures_book(3, seed=2)
    vt = b.pop("valuation_time")
    with_lev = _with_leverage(b, [2.0] * b["positions"].num_rows)
    for preset in ("standard", "deribit_pme"):
        want = pmrisk.margin(**b, model=preset, valuation_time=vt)
        got = pmrisk.margin(**with_lev, model=preset, valuation_time=vt)
        for name, t in _tables(want).items():
            assert_same(getattr(got, name), t, name)


@pytest.mark.parametrize("leverage,rows", [
    ([0.0, 5.0], [("a", "BTCUSDT")]),
    ([5.0, -2.0], [("a", "BTCUSD_PERP")]),
    ([float("inf"), 5.0], [("a", "BTCUSDT")]),
    ([float("nan"), float("nan")], [("a", "BTCUSDT"), ("a", "BTCUSD_PERP")]),
    ([150.0, 10.0], [("a", "BTCUSDT")]),             # bracket 2 of 2025: at most 100x
    ([20.0, 126.0], [("a", "BTCUSD_PERP")]),         # bracket 1: at most 125x
])
def test_bad_leverage_names_the_rows(leverage, rows):
    b = book([("a", "BTCUSDT", 10), ("a", "BTCUSD_PERP", -1_000)], mark=60_000.0)
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(**_with_leverage(b, leverage), model=UM)
    e = err.value
    assert (e.table, e.column, e.rows) == ("positions", "leverage", rows)
    if leverage[0] == 150.0:
        assert "max_leverage (100" in str(e)


def test_leverage_above_the_bracket_max_in_a_timed_book_names_the_time():
    b = book([("a", "BTCUSDT", 10)], mark=60_000.0)
    b.pop("valuation_time")
    timed = {n: pa.concat_tables([_stamp(b[n], t) for t in ("2025-06-17T08:00",
                                                              "2025-06-18T08:00")])
             for n in ("positions", "market", "index", "balances")}
    timed["positions"] = timed["positions"].append_column(
        "leverage", pa.array([50.0, 120.0], pa.float64()))
    with pytest.raises(pmrisk.MarginError) as err:
        pmrisk.margin(timed["positions"], b["instruments"], timed["market"], timed["index"],
                      balances=timed["balances"], model=UM)
    e = err.value
    assert (e.table, e.column) == ("positions", "leverage")
    assert e.rows == [("a", "BTCUSDT", "2025-06-18T08:00:00Z")]


def test_monitor_position_update_with_leverage_equals_margin():
    b = samples.futures_book(4, seed=7)
    vt = b.pop("valuation_time")
    mon = pmrisk.Monitor(**b, model=UM, valuation_time=vt)
    try:
        mon.update(positions=pa.table({"account": ["um-01", "um-new"],
                                       "symbol": ["BTCUSDT", "BTCUSDT"],
                                       "quantity": [3.0, 2.0], "leverage": [10.0, None]}),
                   balances=pa.table({"account": ["um-new"], "asset": ["USDT"],
                                      "amount": [50_000.0]}))
        state = mon.state()
        assert state["positions"].schema.field("leverage").type == pa.float64()
        ref_r = pmrisk.margin(**state, model=UM)
        for name, t in _tables(ref_r).items():
            assert_same(getattr(mon, name), t, name)
        got = {(r["account"], r["symbol"]): r for r in mon.positions.to_pylist()}
        assert got[("um-01", "BTCUSDT")]["leverage"] == 10.0
        assert got[("um-01", "BTCUSDT")]["im_contribution"] == pytest.approx(
            got[("um-01", "BTCUSDT")]["notional"] / 10.0, rel=1e-12)
        assert got[("um-new", "BTCUSDT")]["leverage"] == 150.0      # null: 2025 bracket 1
        # a later update without the column keeps the leverage; a price tick keeps it too
        mon.update(positions=pa.table({"account": ["um-01"], "symbol": ["BTCUSDT"],
                                       "quantity": [4.0]}))
        mon.update(market=pa.table({"symbol": ["BTCUSDT"], "mark_price": [67_000.0]}))
        assert mon.state()["positions"].filter(pa.compute.equal(
            mon.state()["positions"]["account"], "um-01"))["leverage"].to_pylist()[0] == 10.0
        ref_r = pmrisk.margin(**mon.state(), model=UM)
        for name, t in _tables(ref_r).items():
            assert_same(getattr(mon, name), t, name)
    finally:
        mon.close()


def test_backtest_with_leverage_equals_margin_per_snapshot():
    """A leverage per position and time: each snapshot's IM uses its own rows' leverage."""
    b = samples.futures_book(3, seed=1)
    b.pop("valuation_time")
    times = ["2025-06-17T08:00:00Z", "2025-06-18T08:00:00Z"]
    n = b["positions"].num_rows
    # below each position's bracket maximum (the leverage IM uses without the column)
    pos = pmrisk.margin(**b, model=UM, valuation_time=times[0]).positions
    top = {(r["account"], r["symbol"]): r["leverage"] for r in pos.to_pylist()}
    keys = zip(b["positions"]["account"].to_pylist(), b["positions"]["symbol"].to_pylist())
    first = [top[k] / (1 + i % 3) for i, k in enumerate(keys)]
    levs = [first, [None] * (n - 1) + [first[-1] / 2]]
    per = [_with_leverage(b, lev)["positions"] for lev in levs]
    timed = {name: pa.concat_tables([_stamp(b[name], t[:-1]) for t in times])
             for name in ("market", "index", "balances")}
    timed["positions"] = pa.concat_tables([_stamp(p, t[:-1]) for p, t in zip(per, times)])
    res = pmrisk.backtest(timed["positions"], b["instruments"], timed["market"], timed["index"],
                          balances=timed["balances"], model=UM, progress=False)
    acc = res.accounts if hasattr(res, "accounts") else res["accounts"]
    ims = []
    for p, t in zip(per, times):
        one = pmrisk.margin(p, b["instruments"], b["market"], b["index"],
                            balances=b["balances"], model=UM, valuation_time=t).accounts
        ns = np.datetime64(t[:-1], "ns").astype(np.int64)
        rows = acc.filter(pa.compute.equal(acc["time"].cast(pa.int64()), ns))
        for c in ("maintenance_margin", "initial_margin", "margin_ratio"):
            assert rows[c].to_pylist() == pytest.approx(one[c].to_pylist(), rel=1e-12), c
        ims.append(one["initial_margin"].to_pylist())
    assert ims[0] != ims[1]


def test_what_if_keeps_the_positions_leverage():
    """A trade on a held position keeps its leverage; a new position takes the bracket max."""
    b = samples.futures_book(3, seed=5)
    vt = b.pop("valuation_time")
    b["positions"] = b["positions"].drop_columns(["entry_price"])
    b = _with_leverage(b, [4.0 if (a, s) == ("um-01", "BTCUSDT") else None
                           for a, s in zip(b["positions"]["account"].to_pylist(),
                                           b["positions"]["symbol"].to_pylist())])
    b["instruments"] = pa.concat_tables([b["instruments"], pa.table({
        "symbol": ["BTCUSDT_250926"], "underlying": ["BTC"], "kind": ["future"],
        "settlement": ["linear"], "contract_size": [1.0],
        "expiry": pa.array([1758873600 * 10**9], pa.timestamp("ns", "UTC"))})],
        promote_options="default")
    own = [{"symbol": "BTCUSDT_250926", "bracket": 1, "initialLeverage": 50,
            "notionalFloor": 0, "notionalCap": 1e9, "maintMarginRatio": 0.01}]
    m = Model.preset(UM).with_brackets(own, symbol="BTCUSDT_250926")
    mark = b["market"]["mark_price"][0].as_py()
    b["market"] = pa.concat_tables([b["market"], pa.table(
        {"symbol": ["BTCUSDT_250926"], "mark_price": [mark]})])
    mon = pmrisk.Monitor(**b, model=m, valuation_time=vt)
    try:
        w = mon.what_if("um-01", {"symbol": ["BTCUSDT", "BTCUSDT_250926"],
                                  "quantity": [2.0, 1.0]})
        pos = b["positions"].to_pylist()
        for r in pos:
            if (r["account"], r["symbol"]) == ("um-01", "BTCUSDT"):
                r["quantity"] += 2.0
        pos.append({"account": "um-01", "symbol": "BTCUSDT_250926", "quantity": 1.0,
                    "leverage": None})
        traded = dict(b, positions=pa.Table.from_pylist(pos, schema=b["positions"].schema))
        want = [r for r in pmrisk.margin(**traded, model=m, valuation_time=vt)
                .accounts.to_pylist() if r["account"] == "um-01"][0]
        got = [r for r in w.accounts.to_pylist() if r["state"] == "after"][0]
        for c in ("maintenance_margin", "initial_margin", "margin_ratio"):
            assert got[c] == pytest.approx(want[c], rel=1e-12), c
        # the standalone IM of the BTCUSDT leg is its notional at 4x, of the new future at 50x
        legs = w.trades.to_pylist()
        assert legs[0]["im_standalone"] == pytest.approx(2.0 * mark / 4.0, rel=1e-9)
        assert legs[1]["im_standalone"] == pytest.approx(1.0 * mark / 50.0, rel=1e-9)
    finally:
        mon.close()


def test_cli_reads_leverage_from_csv(tmp_path, capsys):
    """``pmrisk margin`` on CSV files: blank leverage cells are nulls (the bracket's max),
    an all-blank column too; results equal margin() on the same tables."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    from pmrisk.cli import commands
    b = samples.futures_book(3, seed=1)
    vt = b.pop("valuation_time")
    n = b["positions"].num_rows
    for lev in ([2.0] + [None] * (n - 1), [None] * n):
        tables = _with_leverage(b, lev)
        args = ["margin", "--model", UM, "--valuation-time", vt, "--out", str(tmp_path / "o")]
        for name, t in tables.items():
            pcsv.write_csv(t, tmp_path / f"{name}.csv")
            args += [f"--{name}", str(tmp_path / f"{name}.csv")]
        assert commands.main(args) == 0
        capsys.readouterr()
        got = pq.read_table(tmp_path / "o" / "accounts.parquet")
        want = pmrisk.margin(**tables, model=UM, valuation_time=vt).accounts
        assert got["initial_margin"].to_pylist() == \
            pytest.approx(want["initial_margin"].to_pylist(), rel=1e-12)
    assert want["initial_margin"].to_pylist() == \
        pmrisk.margin(**b, model=UM, valuation_time=vt).accounts["initial_margin"].to_pylist()


def test_liquidation_plan_keeps_the_leverage():
    """The plan runs on a book with a leverage column (its rebuilt books carry it); IM does
    not enter a plan (MM and the ratio do), so it is the plan without the column."""
    bal = pa.table({"account": ["a"], "asset": ["USDT"], "amount": [150_000.0]})
    b = book([("a", "BTCUSDT", 400.0), ("a", "BTCUSD_PERP", -20_000.0)], mark=50_000.0,
             balances=bal)
    want = pmrisk.liquidation_plan(**b, model=UM).to_pylist()
    got = pmrisk.liquidation_plan(**_with_leverage(b, [10.0, 20.0]), model=UM).to_pylist()
    assert got == want and got
    with pytest.raises(pmrisk.MarginError) as err:        # checked like margin() checks it
        pmrisk.liquidation_plan(**_with_leverage(b, [10.0, 200.0]), model=UM)
    assert (err.value.table, err.value.column, err.value.rows) == \
        ("positions", "leverage", [("a", "BTCUSD_PERP")])

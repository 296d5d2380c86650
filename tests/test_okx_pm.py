"""okx_pm: OKX portfolio margin through pmrisk.margin(), Monitor and backtest.

Hand-computed small books, OKX's position-builder example (O1 in the venue research: two USDT
perpetuals and a USDT balance), the published reference cases reproduced by method on a
constructed book, and properties (MMR non-decreasing in size, IMR = 1.3 MMR, margins >= 0,
the same figures through every entry point)."""

import math
import warnings
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pmrisk
from pmrisk import MarginError
from pmrisk.kernel.okx import mr9
from tests.reference_cases import load

VT = datetime(2025, 3, 1, tzinfo=timezone.utc)
EXPIRY = datetime(2025, 3, 31, 8, tzinfo=timezone.utc)
TS = pa.timestamp("ns", tz="UTC")

# symbol, underlying, kind, settlement, contract size, expiry, strike, option type, mark, iv
INSTR = [
    ("BTC-USDT-SWAP", "BTC", "perpetual", "linear", 0.01, None, None, None, 100_000.0, None),
    ("BTC-USDC-SWAP", "BTC", "perpetual", "linear", 0.0001, None, None, None, 100_000.0, None),
    ("BTC-USD-SWAP", "BTC", "perpetual", "inverse", 100.0, None, None, None, 100_000.0, None),
    ("BTC-USD-250331", "BTC", "future", "inverse", 100.0, EXPIRY, None, None, 101_000.0, None),
    ("BTC-USD-250331-100000-C", "BTC", "option", "inverse", 1.0, EXPIRY, 100_000.0, "call",
     0.05, 0.6),
    ("LTC-USDT-SWAP", "LTC", "perpetual", "linear", 1.0, None, None, None, 100.0, None),
    ("SOLX-USDT-SWAP", "SOLX", "perpetual", "linear", 1.0, None, None, None, 10.0, None),
    ("BTC-USDT", "BTC", "spot", "linear", 1.0, None, None, None, 100_000.0, None),
]
INDEX = {"BTC": 100_000.0, "LTC": 100.0, "SOLX": 10.0}


def tables(positions, balances=None, index=INDEX, market=None):
    cols = list(zip(*INSTR))
    inst = pa.table({"symbol": list(cols[0]), "underlying": list(cols[1]),
                     "kind": list(cols[2]), "settlement": list(cols[3]),
                     "contract_size": list(cols[4]), "expiry": pa.array(list(cols[5]), TS),
                     "strike": pa.array(list(cols[6]), pa.float64()),
                     "option_type": pa.array(list(cols[7]), pa.string())})
    marks = {s: m for s, m in zip(cols[0], cols[8])} | (market or {})
    mkt = pa.table({"symbol": list(cols[0]), "mark_price": [marks[s] for s in cols[0]],
                    "mark_iv": pa.array(list(cols[9]), pa.float64())})
    pos = pa.table({"account": [p[0] for p in positions], "symbol": [p[1] for p in positions],
                    "quantity": [float(p[2]) for p in positions]})
    out = {"instruments": inst, "positions": pos, "market": mkt,
           "index": pa.table({"underlying": list(index), "index_price": list(index.values())})}
    balances = balances or [(p[0], "USDT", 0.0) for p in positions[:1]]
    if balances:
        out["balances"] = pa.table({"account": [b[0] for b in balances],
                                    "asset": [b[1] for b in balances],
                                    "amount": [float(b[2]) for b in balances]})
    return out


def margin(positions, model="okx_pm", **kw):
    return pmrisk.margin(**tables(positions, **kw), model=model, valuation_time=VT)


def unit(r, name, account="a"):
    rows = [u for u in r.units.to_pylist() if u["unit"] == name and u["account"] == account]
    assert len(rows) == 1
    return rows[0]


# -- OKX's position-builder example (two USDT perpetuals, USDT 100) ------------------------------

def test_position_builder_example():
    """OKX docs example (2025-01-15): MR4, MR7, borrowing, liquidation cost exact; MR1/MR6 at
    the index the example implies (97,034.24; LTC 101.948); margin ratio as OKX's."""
    t = tables([("a", "BTC-USDT-SWAP", -10), ("a", "LTC-USDT-SWAP", 10)],
               balances=[("a", "USDT", 100)],
               index={"BTC": 97_034.24, "LTC": 101.948, "USDT": 0.99954},
               market={"BTC-USDT-SWAP": 97_093.7, "LTC-USDT-SWAP": 102.0})
    t["positions"] = t["positions"].append_column("entry_price",
                                                  pa.array([100_000.0, 8_000.0]))
    r = pmrisk.margin(**t, model="okx_pm", valuation_time=VT)
    btc, ltc = unit(r, "BTC"), unit(r, "LTC")
    assert btc["delta_usd"] == pytest.approx(-9704.9036898, rel=1e-9)
    assert btc["mr4"] == pytest.approx(19.4098073796, rel=1e-9)
    assert btc["mr7"] == pytest.approx(43.67206660410001, rel=1e-9)
    assert btc["mr1"] == pytest.approx(1164.4109244719994, rel=1e-6)
    assert btc["mr6"] == pytest.approx(btc["mr1"], rel=1e-12)
    assert btc["mmr"] == pytest.approx(btc["mr1"] + btc["mr4"], rel=1e-12)
    assert ltc["mr4"] == pytest.approx(8.1562464, rel=1e-9)
    assert ltc["mr7"] == pytest.approx(7.1367156, rel=1e-9)
    assert ltc["mr1"] == pytest.approx(183.50672805719995, rel=1e-5)
    a = r.accounts.to_pylist()[0]
    assert a["equity"] == pytest.approx(-78553.21888979999, rel=1e-9)
    assert a["borrow_mmr"] == pytest.approx(1571.064377796, rel=1e-9)
    assert a["borrow_imr"] == pytest.approx(7855.32188898, rel=1e-9)
    assert a["maintenance_margin"] == pytest.approx(2946.5480841048, rel=1e-6)
    assert a["initial_margin"] == pytest.approx(9643.45070718144, rel=1e-6)
    assert a["margin_ratio"] == pytest.approx(-25.95365779811705, rel=1e-6)
    assert a["status"] == "liquidation"


# -- hand-computed small books -------------------------------------------------------------------

def test_linear_perpetual():
    r = margin([("a", "BTC-USDT-SWAP", 10)])               # 0.1 BTC long, S = 100,000
    u = unit(r, "BTC")
    assert u["delta_usd"] == pytest.approx(10_000.0)
    assert u["mr1"] == pytest.approx(10_000 * 0.12)
    assert u["mr6"] == pytest.approx(0.5 * 10_000 * 0.24)
    assert u["mr4"] == pytest.approx(10_000 * 0.002)
    assert u["mr7_raw"] == pytest.approx(10_000 * 0.0045)
    assert u["mmr"] == pytest.approx(1200 + 20)
    assert u["imr"] == pytest.approx(1.3 * 1220)



def test_collateral_tiers_are_the_users_to_give():
    """okx_pm ships no discount-rate tiers: 10 BTC at 100,000 count 1,000,000 in equity.  With
    the model's collateral tiers (docs/venues.md) of 100 % to 500,000 USD and 95 % above:
    500,000 + 0.95 x 500,000 = 975,000.  Short 10 BTC of perpetuals: MMR = 0.12 x 1 M + 0.002
    x 1 M = 122,000 either way (the BTC balance is not in the BTC unit)."""
    assert pmrisk.Model.preset("okx_pm")["collateral"] == {}
    pos, bal = [("a", "BTC-USDT-SWAP", -1_000)], [("a", "BTC", 10.0)]
    plain = margin(pos, balances=bal).accounts.to_pylist()[0]
    assert plain["equity"] == pytest.approx(1_000_000.0, rel=1e-12)
    tiers = pmrisk.Model.preset("okx_pm").with_overrides(
        {"collateral": {"BTC": {"tiers_usd": [[0, 500_000, 1.0], [500_000, 2_000_000, 0.95]]}}})
    r = margin(pos, model=tiers, balances=bal)
    a = r.accounts.to_pylist()[0]
    assert a["equity"] == pytest.approx(975_000.0, rel=1e-12)
    assert a["actual_equity"] == pytest.approx(1_000_000.0, rel=1e-12)
    assert a["maintenance_margin"] == pytest.approx(122_000.0, rel=1e-12)
    assert a["margin_ratio"] == pytest.approx(975_000.0 / 122_000.0, rel=1e-12)

def test_inverse_future():
    """100 USD face x 10 at mark 101,000: coin delta 1000/101000 BTC; a move m loses
    (coin P&L at S(1+m)) = delta_coin S m; MR4 at T = 30 days with 5 %/yr."""
    r = margin([("a", "BTC-USD-250331", -10)])
    u = unit(r, "BTC")
    d = -1000 / 101_000 * 100_000
    assert u["delta_usd"] == pytest.approx(d)
    assert u["mr1"] == pytest.approx(abs(d) * 0.12)
    years = (EXPIRY - VT).total_seconds() / (365 * 86400)
    assert u["mr4"] == pytest.approx(abs(d) * max(0.002, math.expm1(0.05 * years)))
    assert u["mr7_raw"] == pytest.approx(abs(d) * 0.0045)


def test_option_short_call():
    r = margin([("a", "BTC-USD-250331-100000-C", -1)])
    u = unit(r, "BTC")
    assert u["mr1"] > 0 and u["mr2"] >= 0 and u["mr6"] > 0
    # short option minimum charge: max(0.02, 0.02|delta|) S + min(fee S, 12.5 % mark value)
    assert u["mr7_raw"] == pytest.approx(0.02 * 100_000 + min(0.0003 * 100_000,
                                                              0.125 * 0.05 * 100_000))
    # vol up at 30 days: +25 points or +35 % (0.21): the short call loses most with vol up
    vec = r.unit_risk_vectors if r.unit_risk_vectors is not None else None
    assert vec is None
    rv = pmrisk.margin(**tables([("a", "BTC-USD-250331-100000-C", -1)]), model="okx_pm",
                       valuation_time=VT, risk_vectors=True).unit_risk_vectors.to_pylist()
    worst = min(rv, key=lambda x: x["pnl"] if x["table"] == "standard" else 0)
    assert worst["vol_state"] == "up" and worst["price_shock"] == pytest.approx(0.12)
    assert -worst["pnl"] == pytest.approx(u["mr1"])


@pytest.mark.parametrize("qty, want", [(1, 100.0 + 12.5), (-1, 2000.0 + 12.5)])
def test_option_charges_capped_by_mark_value(qty, want):
    """SPEC 14's MR7 option terms where the caps bind: a call marked 0.001 BTC (100 USD at
    S = 100,000): long min(0.02 S, mark value) = 100, short 0.02 S = 2,000; the fee
    min(0.0003 S = 30, 0.125 x mark value = 12.5) = 12.5 either way."""
    r = margin([("a", "BTC-USD-250331-100000-C", qty)],
               market={"BTC-USD-250331-100000-C": 0.001})
    u = unit(r, "BTC")
    assert u["mr7_raw"] == pytest.approx(want)
    assert u["mr3"] == 0.0 and u["mr5"] == 0.0             # rates 0 by default


def test_mr2_is_one_day_of_decay():
    r = margin([("a", "BTC-USD-250331-100000-C", 1)])
    u = unit(r, "BTC")
    theta_usd = [p for p in r.positions.to_pylist() if p["symbol"].endswith("-C")][0]["theta"]
    assert u["mr2"] == pytest.approx(-theta_usd, rel=0.05)       # theta per day, USD


def test_stablecoin_hedge_mr9():
    """Long 10 M USD of BTC in USDT, short 10 M in USDC: MR1 nets to 0, MR9 charges it."""
    r = margin([("a", "BTC-USDT-SWAP", 10_000), ("a", "BTC-USDC-SWAP", -1_000_000)])
    u = unit(r, "BTC")
    assert u["delta_usd"] == pytest.approx(0.0, abs=1e-6)
    assert u["mr1"] == pytest.approx(0.0, abs=1e-6)
    assert u["mr9"] == pytest.approx(202_500.0)


def test_borrowing_mr8_and_liquidation_cost():
    r = margin([("a", "LTC-USDT-SWAP", 1)], balances=[("a", "USDT", -50_000),
                                                     ("a", "BTC", 1.0)])
    a = r.accounts.to_pylist()[0]
    assert a["borrow_mmr"] == pytest.approx(0.02 * 50_000)
    assert a["borrow_imr"] == pytest.approx(0.10 * 50_000)
    assert a["liquidation_cost"] == pytest.approx(50_000 * 1.02 * 0.001)
    mm = a["derivatives_mmr"] + a["borrow_mmr"]
    assert a["maintenance_margin"] == pytest.approx(mm)
    assert a["margin_ratio"] == pytest.approx(a["equity"] / (mm + a["liquidation_cost"]))


def test_unit_mr8_is_the_borrowing_owed_in_its_underlying():
    """OKX reports MR8 per risk unit too: a unit's ``mr8`` is the borrowing MMR of the asset
    it is named by (LTC borrowed: the LTC unit); a borrowed stablecoin has no unit and counts
    in the account's ``borrow_mmr`` only.  MR8 is not part of the unit's MMR."""
    r = margin([("a", "LTC-USDT-SWAP", 1), ("a", "BTC-USDT-SWAP", 1), ("b", "LTC-USDT-SWAP", 1)],
               balances=[("a", "USDT", -50_000), ("a", "LTC", -30), ("a", "BTC", 1.0),
                         ("b", "USDT", 10_000)])
    a = r.accounts.to_pylist()[0]
    ltc, btc = unit(r, "LTC"), unit(r, "BTC")
    assert ltc["mr8"] == pytest.approx(0.02 * 30 * 100.0)
    assert btc["mr8"] == 0.0                                # BTC held, not borrowed
    assert unit(r, "LTC", "b")["mr8"] == 0.0
    assert a["borrow_mmr"] == pytest.approx(0.02 * (50_000 + 3_000))
    for u in (ltc, btc):
        assert u["mmr"] == pytest.approx(max(max(u["mr1"], u["mr2"], u["mr6"]) + u["mr3"]
                                             + u["mr4"] + u["mr5"] + u["mr9"], u["mr7"]))
    names = r.units.column_names
    assert names[names.index("mr1"):names.index("mr9") + 1] == [
        "mr1", "mr2", "mr3", "mr4", "mr5", "mr6", "mr7", "mr7_raw", "mr8", "mr9"]
    # the Monitor keeps the unit's MR8 as margin() computes it
    t = tables([("a", "LTC-USDT-SWAP", 1)], balances=[("a", "LTC", -30)])
    mon = pmrisk.Monitor(**t, model="okx_pm", valuation_time=VT)
    mon.update(index=pa.table({"underlying": ["LTC"], "index_price": [90.0]}))
    want = pmrisk.margin(**(t | {"index": pa.table({"underlying": list(INDEX),
                                                    "index_price": [100_000.0, 90.0, 10.0]})}),
                         model="okx_pm", valuation_time=VT)
    assert mon.units.column("mr8").to_pylist() == want.units.column("mr8").to_pylist()
    assert want.units.column("mr8").to_pylist() == [pytest.approx(0.02 * 30 * 90.0)]


def test_spec_names_of_imr_factor_and_spot_taker_fee():
    """SPEC 14 names OKX's IM factor ``imr_factor`` and the liquidation cost's fee
    ``spot_taker_fee``; ``im_factor`` (SPEC 6) and ``liquidation_fee`` (the fee's name before)
    are the same parameters.  Either name reads and overrides; both at once is an error."""
    m = pmrisk.Model.preset("okx_pm")
    assert m["imr_factor"] == m["im_factor"] == 1.3
    assert m["spot_taker_fee"] == m["liquidation_fee"] == 0.001
    book = [("a", "LTC-USDT-SWAP", 10)]
    bal = [("a", "USDT", -50_000), ("a", "BTC", 1.0)]
    base = margin(book, balances=bal)
    for over in ({"imr_factor": 1.5, "spot_taker_fee": 0.002},
                 {"im_factor": 1.5, "liquidation_fee": 0.002}):
        r = margin(book, balances=bal, model=m.with_overrides(over))
        u, a = unit(r, "LTC"), r.accounts.to_pylist()[0]
        assert u["imr"] == pytest.approx(1.5 * u["mmr"])
        assert a["liquidation_cost"] == pytest.approx(
            2 * base.accounts.column("liquidation_cost")[0].as_py())
    with pytest.raises(MarginError, match="imr_factor.*two names of one parameter"):
        m.with_overrides({"imr_factor": 1.5, "im_factor": 1.5})
    with pytest.raises(MarginError, match="spot_taker_fee"):
        m.with_overrides({"spot_taker_fee": 2.0})
    # an error about a value given under the other name says which name it was given as
    with pytest.raises(MarginError, match="spot_taker_fee: .*Given as 'liquidation_fee'"):
        m.with_overrides({"liquidation_fee": 2.0})
    with pytest.raises(MarginError, match="im_factor >= mm_factor.*Given as 'imr_factor'"):
        m.with_overrides({"imr_factor": 0.5})
    assert pmrisk.Model.from_dict({"preset": "okx_pm", "imr_factor": 1.4})["im_factor"] == 1.4


def test_mr8_files_a_spot_position_under_its_coin():
    """SPEC 14's MR8 looks at each asset's equity: spot BTC-USDT held is BTC, not USDT.  10 BTC
    bought with 1,000,000 USDT borrowed (and hedged by a short perpetual) leave USDT at
    -1,000,000: borrow_mmr 0.02 x 1e6, borrow_imr 0.10 x 1e6, liquidation cost 1e6 x 1.02 x
    0.001, the same as with the BTC given as a balance.  Spot sold short (-2 BTC, the
    200,000 USDT it raised held) is BTC borrowed: the BTC unit's mr8."""
    hedge = ("a", "BTC-USDT-SWAP", -1000)
    r = margin([("a", "BTC-USDT", 10), hedge], balances=[("a", "USDT", -1_000_000)])
    as_balance = margin([hedge], balances=[("a", "USDT", -1_000_000), ("a", "BTC", 10)])
    for x in (r, as_balance):
        a = x.accounts.to_pylist()[0]
        assert a["borrow_mmr"] == pytest.approx(20_000.0)
        assert a["borrow_imr"] == pytest.approx(100_000.0)
        assert a["liquidation_cost"] == pytest.approx(1020.0)
        assert unit(x, "BTC")["mr8"] == 0.0             # USDT borrowed: no unit
    a = r.accounts.to_pylist()[0]
    assert a["equity"] == pytest.approx(0.0, abs=1e-6)  # 10 BTC at 100,000 less the loan
    assert a["maintenance_margin"] == pytest.approx(a["derivatives_mmr"] + 20_000.0)
    short = margin([("a", "BTC-USDT", -2)], balances=[("a", "USDT", 200_000)])
    a = short.accounts.to_pylist()[0]
    assert a["borrow_mmr"] == pytest.approx(0.02 * 200_000)
    assert unit(short, "BTC")["mr8"] == pytest.approx(0.02 * 200_000)


@pytest.mark.parametrize("rates", [{}, {"borrow_mmr": 0.0}])
def test_borrowing_rows_sum_to_mm_and_im(rates):
    """The loans' row carries MR8's borrow_mmr as MM and borrow_imr as IM: the positions'
    contributions sum to the account's MM and IM (SPEC 8), also when borrow_mmr is 0 and the
    IM alone counts the loan (the row is there for the IM); a Monitor's table has it too."""
    t = tables([("a", "LTC-USDT-SWAP", 1)], balances=[("a", "USDT", -50_000), ("a", "BTC", 1.0)])
    model = pmrisk.Model.preset("okx_pm").with_overrides(rates)
    r = pmrisk.margin(**t, model=model, valuation_time=VT)
    mon = pmrisk.Monitor(**t, model=model, valuation_time=VT)
    assert mon.positions.equals(r.positions)
    a = r.accounts.to_pylist()[0]
    rows = r.positions.to_pylist()
    loans = [x for x in rows if x["unit"] == "loans"]
    assert len(loans) == 1
    assert loans[0]["mm_contribution_usd"] == a["borrow_mmr"]
    assert loans[0]["im_contribution_usd"] == a["borrow_imr"]
    assert sum(x["mm_contribution_usd"] for x in rows) == pytest.approx(
        a["maintenance_margin"], rel=1e-12)
    assert sum(x["im_contribution_usd"] for x in rows) == pytest.approx(
        a["initial_margin"], rel=1e-12)


def test_classes_and_units_merge_settlements():
    r = margin([("a", "LTC-USDT-SWAP", 10), ("a", "SOLX-USDT-SWAP", 10),
                ("a", "BTC-USDT-SWAP", 1), ("a", "BTC-USD-SWAP", 1)])
    assert sorted(u["unit"] for u in r.units.to_pylist()) == ["BTC", "LTC", "SOLX"]
    assert unit(r, "LTC")["mr1"] == pytest.approx(1000 * 0.18)         # mid
    assert unit(r, "SOLX")["mr1"] == pytest.approx(100 * 0.25)         # other
    assert unit(r, "SOLX")["mr7_raw"] == pytest.approx(100 * 0.01)


# -- published reference cases, reproduced by method on a constructed book -----------------------

def test_reference_mr9_through_margin():
    case = load("okx_mr9_stablecoin")
    n = case["inputs"]["hedged_notional_usd"]
    r = margin([("a", "BTC-USDT-SWAP", n / 1000), ("a", "BTC-USD-SWAP", -n / 100)])
    expected = case["expected"]["MR9"]
    assert unit(r, "BTC")["mr9"] == pytest.approx(expected, abs=case["tolerance"]["abs"])


def test_reference_mr7_tier_scaling_through_margin():
    """MR7 raw 30,000 on the older BTC tiers (before 15 Jan 2025) gives 50,000; a book whose
    MR1+MR4 is below that has MMR = MR7 adjusted (the reference's MR is not a book's)."""
    case = load("okx_mr7_tier_scaling")
    raw = case["inputs"]["MR7_raw"]
    model = pmrisk.Model.preset("okx_pm", as_of="2025-01-10")
    # spot-hedged perpetual: no MR1, MR7 raw = 0.45 % of |delta_usd|
    tab = tables([("a", "BTC-USDT-SWAP", raw / 0.0045 / 1000)])
    r = pmrisk.margin(**tab, model=model, valuation_time=VT)
    u = unit(r, "BTC")
    assert u["mr7_raw"] == pytest.approx(raw, rel=1e-12)
    assert u["mr7"] == pytest.approx(case["expected"]["MR7_adjusted"],
                                     abs=case["tolerance"]["abs"] + 1e-9 * raw)


def test_as_of_picks_older_sets():
    old = pmrisk.Model.preset("okx_pm", as_of="2024-06-01")
    assert old.effective == ("2024-05-11",)
    assert old.underlying("BTC")["price_range"] == 0.15
    assert old.underlying("BTC")["mr4_min_move"] == 0.006
    assert old.underlying("BTC")["mr7_tiers"][0] == [0.0, 10_000.0, 1.0]
    r = margin([("a", "BTC-USDT-SWAP", 10)], model=old)
    assert unit(r, "BTC")["mr1"] == pytest.approx(10_000 * 0.15)


def test_mr1_cells_in_okx_order():
    rv = pmrisk.margin(**tables([("a", "BTC-USDT-SWAP", 10)]), model="okx_pm",
                       valuation_time=VT, risk_vectors=True).unit_risk_vectors
    std = [x for x in rv.to_pylist() if x["table"] == "standard"]
    assert len(std) == 21
    # OKX's mr1Scenarios: volShockDown, volSame, volShockUp; moves -a..+a in each
    assert [x["vol_state"] for x in std[::7]] == ["down", "same", "up"]
    assert [x["price_shock"] for x in std[:7]] == pytest.approx(
        [-0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12])
    assert [x["scenario"] for x in std] == list(range(21))
    ext = [x for x in rv.to_pylist() if x["table"] == "extreme"]
    assert [x["price_shock"] for x in ext] == pytest.approx([0.24, -0.24])


def test_excluded_lists_refused():
    with pytest.raises(pmrisk.MarginError) as e:
        margin([("a", "BTC-USDT-SWAP", 1)],
               model=pmrisk.Model.preset("okx_pm").with_overrides(
                   {"exclude": {"kinds": ["option"]}}))
    assert e.value.table == "model" and e.value.column == "exclude"


def test_risk_arrays_refused():
    ra = pa.table({"symbol": ["X"], "scenario": [0], "pnl": [1.0]})
    pos = pa.table({"account": ["a"], "symbol": ["X"], "quantity": [1.0]})
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin_from_risk_arrays(pos, ra, model="okx_pm")
    assert e.value.table == "model" and e.value.column == "margin_rules"


# -- properties ----------------------------------------------------------------------------------

SYMS = [s[0] for s in INSTR]


@st.composite
def okx_books(draw):
    n = draw(st.integers(1, 5))
    syms = draw(st.lists(st.sampled_from(SYMS), min_size=n, max_size=n, unique=True))
    qty = [draw(st.floats(-50, 50).filter(lambda x: abs(x) > 1e-3)) for _ in syms]
    return [("a", s, q) for s, q in zip(syms, qty)]


@given(book=okx_books(), scale=st.floats(1.0, 4.0))
def test_mmr_non_decreasing_in_size(book, scale):
    small = margin(book)
    big = margin([(a, s, q * scale) for a, s, q in book])
    for u in small.units.to_pylist():
        b = unit(big, u["unit"])
        assert b["mmr"] >= u["mmr"] * (1 - 1e-9) - 1e-9
        for r in (u, b):
            assert r["imr"] == pytest.approx(1.3 * r["mmr"], rel=1e-12, abs=1e-12)
            for k in ("mr1", "mr2", "mr3", "mr4", "mr5", "mr6", "mr7", "mr9", "mmr"):
                assert r[k] >= 0.0
    acc = big.accounts.to_pylist()[0]
    assert acc["maintenance_margin"] >= 0 and acc["initial_margin"] >= 0


@given(book=okx_books(), move=st.floats(0.9, 1.1), usdt=st.sampled_from([1.0, 0.98]))
def test_margin_monitor_backtest_agree(book, move, usdt):
    t = tables(book, balances=[("a", "USDT", 10_000)], index=dict(INDEX, USDT=1.0))
    mon = pmrisk.Monitor(**t, model="okx_pm", valuation_time=VT)
    new_index = {k: v * move for k, v in INDEX.items()} | {"USDT": usdt}
    mon.update(index=pa.table({"underlying": list(new_index),
                               "index_price": list(new_index.values())}))
    direct = pmrisk.margin(**tables(book, balances=[("a", "USDT", 10_000)],
                                    index=new_index), model="okx_pm", valuation_time=VT)
    cols = ["maintenance_margin", "initial_margin", "equity", "margin_ratio",
            "derivatives_mmr", "liquidation_cost"]
    got = mon.accounts.select(cols).to_pylist()[0]
    want = direct.accounts.select(cols).to_pylist()[0]
    for k in cols:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-9)
    # backtest over a one-snapshot history
    t2 = tables(book, balances=[("a", "USDT", 10_000)], index=new_index)
    time = pa.array([VT] * t2["market"].num_rows, TS)
    timed = dict(t2, market=t2["market"].append_column("time", time),
                 index=t2["index"].append_column("time", pa.array(
                     [VT] * t2["index"].num_rows, TS)))
    bt = pmrisk.backtest(**timed, model="okx_pm", progress=False)
    row = bt.accounts.select(cols).to_pylist()[0]
    for k in cols:
        assert row[k] == pytest.approx(want[k], rel=1e-9, abs=1e-9)


def test_mr9_kernel_tiers_match_reference():
    case = load("okx_mr9_stablecoin")
    n = case["inputs"]["hedged_notional_usd"]
    charge, _ = mr9(np.array([[n, 0.0, -n]]))
    assert charge[0] == pytest.approx(case["expected"]["MR9"])


# -- the unit kernel against its numpy twin --------------------------------------------------------

def _engine_outcome(seed, n_accounts, ppa, unds, option_share, inverse_share):
    import warnings

    from pmrisk import samples
    from pmrisk.engine import core
    from pmrisk.io.book import load_book
    t = samples.book(n_accounts=n_accounts, positions_per_account=ppa, underlyings=unds,
                     option_share=option_share, inverse_share=inverse_share, seed=seed)
    vt = t.pop("valuation_time")
    model = pmrisk.Model.preset("okx_pm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        book = load_book(**t, model=model, valuation_time=vt, balances=None, open_orders=None,
                         reserves=None)
    return core.run(book, model), model


@given(seed=st.integers(0, 10_000), n_accounts=st.integers(1, 80), ppa=st.integers(1, 12),
       unds=st.sampled_from([("BTC",), ("BTC", "ETH", "SOL")]),
       option_share=st.sampled_from([0.0, 0.5, 0.9]),
       inverse_share=st.sampled_from([0.0, 0.5, 1.0]), pick=st.integers(0, 2**31))
def test_unit_kernel_matches_oracle(seed, n_accounts, ppa, unds, option_share, inverse_share,
                                    pick):
    import copy

    import oracles
    from pmrisk.engine import okx as engine_okx
    from pmrisk.kernel import okx as KO
    out, model = _engine_outcome(seed, n_accounts, ppa, unds, option_share, inverse_share)
    n_units = len(out.units)
    rng = np.random.default_rng(pick)
    sel = np.sort(rng.choice(n_units, size=rng.integers(1, n_units + 1), replace=False))
    args = engine_okx.charge_arguments(out, model)
    results = []
    for fn in (KO.unit_charges, KO.unit_charges_serial, oracles.okx_unit_charges):
        a = copy.deepcopy(args)
        fn(sel.astype(np.int64), *a)
        results.append(a)
    for got, other in ((results[0], results[2]), (results[1], results[2]),
                       (results[0], results[1])):
        # every input and output but the two group scratch arrays (the kernel's own)
        for k, (x, y) in enumerate(zip(got, other)):
            if isinstance(x, np.ndarray) and k not in (len(args) - 4, len(args) - 3):
                np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)


def test_each_snapshot_uses_the_set_in_force():
    """as_of="valuation_time": a history across 6 Jan 2025 takes MR1's 15 % move before and
    12 % after."""
    t = tables([("a", "BTC-USDT-SWAP", 10)], balances=[("a", "USDT", 10_000)])
    times = [datetime(2024, 12, 1, tzinfo=timezone.utc), datetime(2025, 2, 1, tzinfo=timezone.utc)]

    def timed(tab):
        return pa.concat_tables([tab.append_column("time", pa.array([x] * tab.num_rows, TS))
                                 for x in times])
    t = {k: timed(v) if k != "instruments" else v for k, v in t.items()}
    r = pmrisk.margin(**t, model=pmrisk.Model.preset("okx_pm", as_of="valuation_time"))
    assert r.units.column("mr1").to_pylist() == pytest.approx([1500.0, 1200.0])


@pytest.mark.parametrize("where, value", [
    (("BTC", "mr7_tiers"), [[0, 10, 1], [5, 20, 2], [4, 30, 3]]),      # first column falls
    (("BTC", "mr7_tiers"), [[0, 10]]),                                  # not three numbers
    (("BTC", "mr1_vol_up"), [[0, -0.3, 0.5]]),                          # negative
    (("BTC", "mr1_vol_up"), []),                                        # empty
    (("mr9_tiers",), [[0, 1e6, float("nan")]]),                         # NaN
    (("BTC", "okx_class"), "large"),                                    # unknown class
])
def test_bad_okx_parameters(where, value):
    over = {where[0]: value} if len(where) == 1 else {where[0]: {where[1]: value}}
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.Model.preset("okx_pm").with_overrides(over)
    assert e.value.table == "model" and e.value.column == ".".join(where)


# -- classes (SPEC 14: okx_class per underlying) -----------------------------------------------

@pytest.mark.parametrize("as_of", ["2024-06-01", None])
def test_okx_class_gives_the_class_numbers(as_of):
    """An underlying outside OKX's lists is class "other"; naming it "mid" (or "major") gives
    it that class's numbers in force at the date, as the listed underlyings have them, and its
    own section still wins key by key."""
    base = pmrisk.Model.preset("okx_pm", as_of=as_of)
    keys = ("price_range", "mr4_annual_move", "mr4_min_move", "mr4_basis_move", "mr7_rate",
            "mr7_tiers")
    assert base.underlying("OKB")["okx_class"] == "other"
    for cls, like in (("mid", "SOL"), ("major", "BTC"), ("other", "TON")):
        m = base.with_overrides({"OKB": {"okx_class": cls}})
        got, want = m.underlying("OKB"), base.underlying(like)
        assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
    m = base.with_overrides({"OKB": {"okx_class": "mid", "price_range": 0.3}})
    assert m.underlying("OKB")["price_range"] == 0.3
    assert m.underlying("OKB")["mr7_rate"] == base.underlying("SOL")["mr7_rate"]
    m = base.with_overrides({"okx_classes": {"mid": {"mr7_rate": 0.02}}})
    assert [m.underlying(u)["mr7_rate"] for u in ("SOL", "ADA", "BTC")] == \
        [0.02, 0.02, base.underlying("BTC")["mr7_rate"]]


def test_okx_class_changes_the_margin():
    """The class reaches the engine: a short OKB perpetual is charged MR1 at a = 0.25
    (other), 0.18 (mid) or 0.12 (major) of its notional."""
    tables = {
        "positions": pa.table({"account": ["a"], "symbol": ["OKB-USDT-SWAP"],
                               "quantity": [-100.0]}),
        "instruments": pa.table({"symbol": ["OKB-USDT-SWAP"], "underlying": ["OKB"],
                                 "kind": ["perpetual"], "settlement": ["linear"],
                                 "contract_size": [1.0]}),
        "market": pa.table({"symbol": ["OKB-USDT-SWAP"], "mark_price": [50.0]}),
        "index": pa.table({"underlying": ["OKB", "USDT"], "index_price": [50.0, 1.0]})}
    base = pmrisk.Model.preset("okx_pm")
    for cls, a in (("other", 0.25), ("mid", 0.18), ("major", 0.12)):
        model = base.with_overrides({"OKB": {"okx_class": cls}})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pmrisk.MarginWarning)
            r = pmrisk.margin(**tables, model=model, valuation_time="2025-06-01T00:00:00Z")
        assert r.units["mr1"][0].as_py() == pytest.approx(100 * 50.0 * a, rel=1e-12)


@pytest.mark.parametrize("bad", [{"okx_classes": {"small": {"price_range": 0.1}}},
                                 {"okx_classes": {"mid": {"okx_class": "major"}}},
                                 {"okx_classes": {"mid": {"price_rnge": 0.1}}},
                                 {"okx_classes": {"mid": 0.1}}])
def test_okx_classes_checked(bad):
    with pytest.raises(MarginError) as exc:
        pmrisk.Model.preset("okx_pm").with_overrides(bad)
    assert exc.value.column.startswith("okx_classes")


# -- every number of SPEC 14 in the shipped preset -------------------------------------------

MID = ("SOL", "DOGE", "PEPE", "XRP", "BNB", "SHIB", "LTC", "ORDI", "WLD", "BCH", "ADA")


def test_preset_holds_spec_14_numbers():
    """The latest okx_pm set against SPEC 14 line by line (class lists, MR1 moves and vol
    nodes, MR4, MR6, MR7 rates and tiers, the option charges, MR9, IMR, MR8, the fee and the
    liquidation level); the MR7 tiers before 15 Jan 2025 from the set in force then."""
    from pmrisk.kernel.okx import MIN_VOL
    m = pmrisk.Model.preset("okx_pm")
    cls = {"major": ("BTC", "ETH"), "mid": MID, "other": ("TON", "AVAX", "LINK")}
    for c, names in cls.items():
        assert {m.underlying(u)["okx_class"] for u in names} == {c}
    nodes = [[0.0, 0.30, 0.50], [30.0, 0.25, 0.35], [60.0, 0.20, 0.25]]
    want = {"major": (0.12, 0.05, 0.002, 0.0045), "mid": (0.18, 0.15, 0.008, 0.0070),
            "other": (0.25, 0.30, 0.01, 0.0100)}
    for c, (a, annual, min_move, rate) in want.items():
        u = m.underlying(cls[c][0])
        assert u["price_range"] == a and u["buckets_count"] == 3      # 0, a/3, 2a/3, a
        assert u["extreme_multiple"] * a == pytest.approx({"major": 0.24, "mid": 0.36,
                                                           "other": 0.50}[c])   # MR6's b
        assert u["mr1_vol_up"] == nodes and u["mr1_vol_down"] == nodes
        assert (u["mr4_annual_move"], u["mr4_min_move"], u["mr7_rate"]) == (
            annual, min_move, rate)
    assert MIN_VOL == 0.01                                  # the down shock's sigma floor
    edges = [0, 250e3, 500e3, 1e6, 2e6, 3e6, 4e6, math.inf]
    assert m.underlying("BTC")["mr7_tiers"] == [
        [lo, hi, f] for lo, hi, f in zip(edges, edges[1:], (1, 2, 4, 6, 8, 10, 12))]
    old = pmrisk.Model.preset("okx_pm", as_of="2025-01-14").underlying("ETH")["mr7_tiers"]
    assert [t[0] for t in old[1:]] == [10e3, 70e3, 170e3, 300e3, 470e3, 700e3]
    assert (m["mr7_option_min"], m["mr7_option_fee_cap"], m["mr7_option_fee"]) == (
        0.02, 0.125, 0.0003)
    assert m["mr9_tiers"] == [[0, 1e6, 0.0075], [1e6, 5e6, 0.0175], [5e6, math.inf, 0.025]]
    assert (m["imr_factor"], m["borrow_mmr"], m["borrow_imr"], m["spot_taker_fee"]) == (
        1.3, 0.02, 0.10, 0.001)
    assert (m["mr2_days"], m["mr3_rate"], m["mr5_rate"]) == (1.0, 0.0, 0.0)
    assert m["thresholds"]["liquidation"] == math.nextafter(1.0, 2.0)   # ratio <= 1.00


def test_status_at_a_margin_ratio_of_exactly_one_is_liquidation():
    """SPEC 14: status ``liquidation`` at margin_ratio <= 1.00, so at exactly 1.00 too: an
    account whose USDT balance equals its MM plus liquidation cost (an LTC perpetual held,
    nothing borrowed: the liquidation cost is 0)."""
    book = [("a", "LTC-USDT-SWAP", 100)]
    r = margin(book)
    mm = r.accounts.column("maintenance_margin")[0].as_py()
    # the position's own value is 0 (no entry price): equity is the balance
    for bal, status in ((mm, "liquidation"), (mm * (1 + 1e-9), "margin_call")):
        a = margin(book, balances=[("a", "USDT", bal)]).accounts.to_pylist()[0]
        assert a["liquidation_cost"] == 0.0
        assert a["status"] == status, (a["margin_ratio"], status)

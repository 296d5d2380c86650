"""Hand-checked numbers for each part of the engine (SPEC §2, §4, §6, §7, §9)."""

import math

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk.kernel.black76 import black76_greeks, black76_price
from pmrisk.results import status_of

T0 = "2024-06-17T00:00:00Z"
EXP = "2024-07-17T00:00:00Z"            # 30 days later
YEARS = 30 / 365

INSTR = pa.Table.from_pylist([
    dict(symbol="BTC-PERP", underlying="BTC", kind="perpetual", settlement="inverse",
         contract_size=10.0, expiry=None, strike=None, option_type=None),
    dict(symbol="BTC-FUT", underlying="BTC", kind="future", settlement="inverse",
         contract_size=10.0, expiry=EXP, strike=None, option_type=None),
    dict(symbol="BTC-C", underlying="BTC", kind="option", settlement="inverse",
         contract_size=1.0, expiry=EXP, strike=60000.0, option_type="call"),
    dict(symbol="BTC-P", underlying="BTC", kind="option", settlement="inverse",
         contract_size=1.0, expiry=EXP, strike=50000.0, option_type="put"),
    dict(symbol="BTC-DP", underlying="BTC", kind="option", settlement="inverse",
         contract_size=1.0, expiry=EXP, strike=30000.0, option_type="put"),
    dict(symbol="BTCUSDT", underlying="BTC", kind="perpetual", settlement="linear",
         contract_size=0.001, expiry=None, strike=None, option_type=None),
    dict(symbol="BTC-LC", underlying="BTC", kind="option", settlement="linear",
         contract_size=0.01, expiry=EXP, strike=55000.0, option_type="call"),
    dict(symbol="BTC-SPOT", underlying="BTC", kind="spot", settlement="linear",
         contract_size=1.0, expiry=None, strike=None, option_type=None),
])
MARKET = pa.Table.from_pylist([
    dict(symbol="BTC-PERP", mark_price=50000.0, mark_iv=None, underlying_price=None),
    dict(symbol="BTC-FUT", mark_price=50500.0, mark_iv=None, underlying_price=None),
    dict(symbol="BTC-C", mark_price=0.01, mark_iv=0.6, underlying_price=50500.0),
    dict(symbol="BTC-P", mark_price=0.02, mark_iv=0.7, underlying_price=50500.0),
    dict(symbol="BTC-DP", mark_price=0.0005, mark_iv=0.9, underlying_price=50500.0),
    dict(symbol="BTCUSDT", mark_price=50010.0, mark_iv=None, underlying_price=None),
    dict(symbol="BTC-LC", mark_price=800.0, mark_iv=0.55, underlying_price=50500.0),
    dict(symbol="BTC-SPOT", mark_price=50000.0, mark_iv=None, underlying_price=None),
])
INDEX = pa.table({"underlying": ["BTC"], "index_price": [50000.0]})


def margin(rows, model="deribit_pme", **kw):
    pos = pa.Table.from_pylist([dict(account=r[0], symbol=r[1], quantity=float(r[2]),
                                     entry_price=(r[3] if len(r) > 3 else None))
                                for r in rows],
                               schema=pa.schema([("account", pa.string()),
                                                 ("symbol", pa.string()),
                                                 ("quantity", pa.float64()),
                                                 ("entry_price", pa.float64())]))
    return pmrisk.margin(pos, INSTR, MARKET, INDEX, model=model, valuation_time=T0, **kw)


def one(table, **match):
    rows = [r for r in table.to_pylist() if all(r[k] == v for k, v in match.items())]
    assert len(rows) == 1, rows
    return rows[0]


def test_inverse_perpetual_grid_and_roll():
    r = margin([("a", "BTC-PERP", 100_000)])          # 1,000,000 USD face = 20 BTC
    u = one(r.units, account="a")
    assert u["unit"] == "BTC/BTC"
    assert u["worst_case"] == pytest.approx(20 * (1 / 0.84 - 1), rel=1e-14)   # > 0: a loss
    assert u["binding_price_shock"] == pytest.approx(-0.16)
    assert u["binding_vol_state"] == "same"               # tie among up/same/down -> same
    assert u["roll_shock"] == pytest.approx(0.01 * 20, rel=1e-14)
    assert u["delta"] == pytest.approx(20.0)
    assert u["worst_case_usd"] == pytest.approx(u["worst_case"] * 50000.0)


def test_linear_perpetual_in_settlement_currency():
    r = margin([("a", "BTCUSDT", 2000, 49000.0)])       # 2 BTC long, linear
    u = one(r.units, account="a")
    assert u["unit"] == "BTC/USDC"                        # deribit_pme: linear settle in USDC
    assert u["worst_case"] == pytest.approx(2 * 50010.0 * 0.16, rel=1e-14)
    assert u["roll_shock"] == pytest.approx(0.01 * 2 * 50000.0, rel=1e-14)   # x index
    p = one(r.positions, symbol="BTCUSDT")
    assert p["unrealised_pnl"] == pytest.approx(2 * (50010.0 - 49000.0))
    assert p["value"] == p["unrealised_pnl"] == p["model_value"]
    acc = one(r.accounts, account="a")
    assert acc["equity"] == pytest.approx(2 * 1010.0)


def test_inverse_future_unrealised_pnl_in_coin_and_usd():
    r = margin([("a", "BTC-FUT", 10_000, 48_000.0)])
    p = one(r.positions, symbol="BTC-FUT")
    want = 10_000 * 10 * (1 / 48_000 - 1 / 50_500)
    assert p["unrealised_pnl"] == pytest.approx(want, rel=1e-14)
    assert p["unrealised_pnl_usd"] == pytest.approx(want * 50_000, rel=1e-14)
    # dated future roll: max(0.01, exp(0.075*T) - 1) on its coin delta
    u = one(r.units, account="a")
    rate = max(0.01, math.expm1(0.075 * YEARS))
    assert u["roll_shock"] == pytest.approx(rate * 10_000 * 10 / 50_500, rel=1e-12)


def test_inverse_option_values_and_greeks():
    r = margin([("a", "BTC-C", -3)])
    p = one(r.positions, symbol="BTC-C")
    assert p["value"] == pytest.approx(-3 * 0.01)           # at the mark, coin
    v = black76_price(50500.0, 60000.0, YEARS, 0.6, True, 0.0)
    assert p["model_value"] == pytest.approx(-3 * v / 50500.0, rel=1e-12)
    _, d, g, vega, theta = black76_greeks(50500.0, 60000.0, YEARS, 0.6, True, 0.0)
    assert p["delta"] == pytest.approx(-3 * (d - v / 50500.0), rel=1e-12)
    assert p["vega"] == pytest.approx(-3 * vega / 50500.0, rel=1e-12)
    assert p["theta"] == pytest.approx(-3 * theta / 50500.0, rel=1e-12)
    assert p["gamma"] == pytest.approx(-3 * g, rel=1e-12)
    acc = one(r.accounts, account="a")
    assert acc["equity"] == pytest.approx(-3 * 0.01 * 50000.0)


def test_option_scenario_cell_by_hand():
    """One cell of an inverse call, revalued by hand: vol up at +8 %."""
    r = margin([("a", "BTC-C", 1)], risk_vectors=True)
    rv = r.risk_vectors.to_pylist()
    cell = [c for c in rv if c["table"] == "standard" and c["price_shock"] == pytest.approx(0.08)
            and c["vol_state"] == "up"][0]
    dte = 30.0
    up = max(0.6 * (1 + 0.5 * (30 / dte) ** 0.13), 0.5)    # DTE = 30 -> long-term power
    f = 50500.0 * 1.08
    v_s = black76_price(f, 60000.0, YEARS, up, True, 0.0) / f
    v_0 = black76_price(50500.0, 60000.0, YEARS, 0.6, True, 0.0) / 50500.0
    assert cell["pnl"] == pytest.approx(v_s - v_0, rel=1e-12)


def test_linear_option_and_spot():
    r = margin([("a", "BTC-LC", 10), ("a", "BTC-SPOT", 0.5)])
    p = one(r.positions, symbol="BTC-LC")
    assert p["value"] == pytest.approx(10 * 0.01 * 800.0)
    v = black76_price(50500.0, 55000.0, YEARS, 0.55, True, 0.0)
    assert p["model_value"] == pytest.approx(10 * 0.01 * v, rel=1e-12)
    s = one(r.positions, symbol="BTC-SPOT")
    assert s["value"] == pytest.approx(0.5 * 50000.0)
    assert s["delta"] == pytest.approx(0.5)
    acc = one(r.accounts, account="a")
    assert acc["equity"] == pytest.approx(80.0 + 25000.0)


def test_extended_table_and_dampener_by_hand():
    """Short far out-of-the-money puts: the -66 % extended cell binds (deribit_pme, BTC)."""
    r = margin([("a", "BTC-DP", -200)], risk_vectors=True)
    u = one(r.units, account="a")
    assert u["binding_table"] == "extended"
    assert u["binding_price_shock"] == pytest.approx(-0.66)
    s, pr = -0.66, 0.16
    up = max(0.9 * (1 + 0.5 * (30 / 30) ** 0.13), 0.5)
    f = 50500.0 * (1 + s)
    raw = -200 * (black76_price(f, 30000.0, YEARS, up, False, 0.0) / f
                  - black76_price(50500.0, 30000.0, YEARS, 0.9, False, 0.0) / 50500.0)
    scaled = raw * (pr / abs(s)) * (1 + s) / (1 - pr)
    damp = (abs(s) / pr - 1) * 100_000 / ((1 - pr) * 50000.0)
    assert u["worst_case"] == pytest.approx(-(scaled + min(damp, abs(scaled))), rel=1e-12)


def test_open_order_margin_is_the_increase_and_never_negative():
    pos = [("a", "BTC-PERP", 100_000)]
    base = margin(pos)
    orders = pa.table({"account": ["a", "a"], "order_id": [1, 2],
                       "symbol": ["BTC-PERP", "BTC-PERP"], "quantity": [50_000.0, -50_000.0],
                       "price": [50000.0, 50000.0]})
    pos_t = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=100_000.0)])
    r = pmrisk.margin(pos_t, INSTR, MARKET, INDEX, open_orders=orders, model="deribit_pme",
                      valuation_time=T0)
    u0, u = one(base.units, account="a"), one(r.units, account="a")
    # the buy adds half the worst case; the sell reduces risk and costs nothing
    assert u["open_orders_margin"] == pytest.approx(0.5 * u0["worst_case"], rel=1e-12)
    assert u["initial_margin"] == pytest.approx(u0["initial_margin"] + 0.5 * u0["worst_case"],
                                                rel=1e-12)
    assert u["maintenance_margin"] == pytest.approx(u0["maintenance_margin"], rel=1e-15)


def test_reserves_are_initial_margin_only():
    pos_t = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=100_000.0)])
    res = pa.table({"account": ["a"], "unit": ["BTC/BTC"], "mmp_margin": [0.3],
                    "open_orders_margin": [0.2]})
    r0 = pmrisk.margin(pos_t, INSTR, MARKET, INDEX, valuation_time=T0)
    r = pmrisk.margin(pos_t, INSTR, MARKET, INDEX, reserves=res, valuation_time=T0)
    u0, u = one(r0.units, account="a"), one(r.units, account="a")
    assert u["initial_margin"] == pytest.approx(u0["initial_margin"] + 0.5)
    assert u["maintenance_margin"] == u0["maintenance_margin"]


def test_delta_shock_above_threshold():
    r = margin([("a", "BTC-PERP", 3_000_000)])     # 30M USD face = 600 BTC at 50k
    u = one(r.units, account="a")
    delta = 3_000_000 * 10 / 50000.0
    notional = delta * 50000.0
    want = min((notional - 20e6) * delta * 5e-5, 0.1 * notional) / 50000.0
    assert u["delta_shock"] == pytest.approx(want, rel=1e-12)
    assert u["risk_matrix_margin"] == pytest.approx(
        u["worst_case"] + u["roll_shock"] + u["delta_shock"], rel=1e-15)


def test_short_option_minimum_and_factors():
    m = pmrisk.Model.preset("span").with_overrides(
        {"default_underlying": {"short_option_minimum": 0.002}, "im_factor": 1.25,
         "risk_multiplier": 1.2})
    r = margin([("a", "BTC-C", -7), ("a", "BTC-P", 4)], model=m)
    u = one(r.units, account="a")
    assert u["short_option_minimum"] == pytest.approx(7 * 0.002)
    rmm = u["worst_case"] + u["roll_shock"] + u["delta_shock"] + u["short_option_minimum"]
    assert u["risk_matrix_margin"] == pytest.approx(rmm)
    assert u["maintenance_margin"] == pytest.approx(1.2 * 1.0 * rmm)
    assert u["initial_margin"] == pytest.approx(1.2 * 1.25 * rmm)


def test_span_model_uses_16_scenarios_and_horizon():
    r = margin([("a", "BTC-C", 1)], model="span", risk_vectors=True)
    rv = r.risk_vectors
    assert rv.num_rows == 16
    assert rv["table"].to_pylist()[14:] == ["extreme", "extreme"]
    # one day of decay at price 0 and vol same is not in SPAN's set; vol up/down at price 0:
    up = rv["pnl"][0].as_py()
    down = rv["pnl"][1].as_py()
    assert up > 0 > down


def test_equity_balances_collateral_and_loans():
    m = pmrisk.Model.preset("deribit_pme").with_overrides(
        {"collateral": {"BTC": {"rate": 0.9}}, "loan_mmr": 0.1})
    pos_t = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=10_000.0)])
    bal = pa.table({"account": ["a", "a"], "asset": ["BTC", "USDT"],
                    "amount": [2.0, -10_000.0]})
    r = pmrisk.margin(pos_t, INSTR, MARKET, INDEX, balances=bal, model=m, valuation_time=T0)
    acc = one(r.accounts, account="a")
    assert acc["equity"] == pytest.approx(2 * 50000 * 0.9 - 10_000)
    assert acc["actual_equity"] == pytest.approx(2 * 50000 - 10_000)
    u = one(r.units, account="a")
    assert acc["maintenance_margin"] == pytest.approx(u["maintenance_margin_usd"] + 1000.0)
    assert acc["margin_ratio"] == pytest.approx(acc["equity"] / acc["maintenance_margin"])
    assert acc["available_margin"] == pytest.approx(acc["equity"] - acc["initial_margin"])
    want_wd = max(0.0, min(acc["equity"] - 1.01 * acc["maintenance_margin"],
                           acc["equity"] - acc["initial_margin"]))
    assert acc["max_withdrawable"] == pytest.approx(want_wd)
    loans = one(r.positions, account="a", unit="loans")
    assert loans["mm_contribution_usd"] == pytest.approx(1000.0)


def test_account_with_only_balances_has_infinite_ratio():
    pos_t = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=1.0)])
    bal = pa.table({"account": ["b"], "asset": ["BTC"], "amount": [1.0]})
    r = pmrisk.margin(pos_t, INSTR, MARKET, INDEX, balances=bal, valuation_time=T0)
    b = one(r.accounts, account="b")
    assert b["maintenance_margin"] == 0.0
    assert b["margin_ratio"] == math.inf and b["status"] == "normal"


TH = {"warning": [1.10, 1.05, 1.01], "margin_call": 1.00, "liquidation": 0.75}


@pytest.mark.parametrize("level, at, below", [
    (1.10, "normal", "warning_1"), (1.05, "warning_1", "warning_2"),
    (1.01, "warning_2", "warning_3"), (1.00, "warning_3", "margin_call"),
    (0.75, "margin_call", "liquidation")])
def test_status_at_each_threshold(level, at, below):
    ratios = np.array([level, np.nextafter(level, 0.0)])
    assert status_of(ratios, TH) == [at, below]


def test_status_custom_bands_binance_like():
    th = {"warning": [1.50, 1.20, 1.05], "margin_call": 1.00, "liquidation": 0.75}
    assert status_of(np.array([1.5, 1.3, 1.1, 1.02, 0.9, 0.5, np.inf]), th) == [
        "normal", "warning_1", "warning_2", "warning_3", "margin_call", "liquidation",
        "normal"]


def test_custom_scenarios_via_with_scenarios():
    scen = pa.table({"price_shock": [-0.3, 0.0, 0.3], "vol_state": ["same", "up", "same"],
                     "loss_weight": [1.0, 1.0, 0.5], "gain_weight": [1.0, 1.0, 1.0],
                     "table": ["standard", "standard", "extreme"]})
    m = pmrisk.Model.preset("deribit_pme").with_scenarios(scen)
    r = margin([("a", "BTC-PERP", 100_000)], model=m, risk_vectors=True)
    assert r.risk_vectors.num_rows == 3
    u = one(r.units, account="a")
    assert u["worst_case"] == pytest.approx(20 * (1 / 0.7 - 1), rel=1e-12)


def test_vol_factor_scenarios():
    rows = [{"price_shock": 0.0, "vol_factor": 1.5}, {"price_shock": 0.0, "vol_factor": 0.5}]
    m = pmrisk.Model.preset("deribit_pme").with_overrides({"scenarios": rows})
    r = margin([("a", "BTC-C", -1)], model=m, risk_vectors=True)
    pnl = r.risk_vectors["pnl"].to_pylist()
    assert pnl[0] < 0 < pnl[1]
    assert r.risk_vectors["vol_state"].to_pylist() == ["factor", "factor"]


def test_model_from_toml_example(tmp_path):
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "model.example.toml"
    m = pmrisk.Model.from_toml(str(path))
    assert m["risk_multiplier"] == 1.2 and m.underlying("BTC")["vol_floor"] == 0.25
    r = margin([("a", "BTC-C", -1)], model=str(path))
    assert r.units["maintenance_margin"][0].as_py() > 0


def test_vol_floor_raises_short_option_margin():
    lo = margin([("a", "BTC-C", -10)])
    hi = margin([("a", "BTC-C", -10)], model=pmrisk.Model.preset("deribit_pme").with_overrides(
        {"BTC": {"vol_floor": 0.9}}))
    assert hi.units["worst_case"][0].as_py() > lo.units["worst_case"][0].as_py()


def test_valuation_time_default_is_now():
    pos_t = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=1.0)])
    r = pmrisk.margin(pos_t, INSTR, MARKET, INDEX)
    assert r.units.num_rows == 1


def test_positions_table_contributions_and_unallocated_rows():
    r = margin([("a", "BTC-PERP", 100_000), ("a", "BTC-FUT", -90_000)])
    rows = r.positions.to_pylist()
    un = [p for p in rows if p["symbol"] == "unallocated"]
    assert len(un) == 1 and un[0]["unit"] == "BTC/BTC"
    perp = one(r.positions, symbol="BTC-PERP")
    fut = one(r.positions, symbol="BTC-FUT")
    # the long perpetual loses in the binding -16 % cell; the short future hedges it
    assert u_bind(r) == pytest.approx(-0.16)
    assert perp["mm_contribution"] > 0 > fut["mm_contribution"]
    total = sum(p["mm_contribution"] for p in rows)
    assert total == pytest.approx(r.units["maintenance_margin"][0].as_py(), rel=1e-12)


def test_deribit_legacy_vol_shock_term_structure():
    """Deribit's legacy page: 'maximum implied volatility change of (30/DTE)^0.30 x 38 %;
    15 days: (30/15)^0.30 x 38 %' = 46.78 %; 30 days: 38 %."""
    from pmrisk.kernel.volshock import shocked_vols
    same, up, down = shocked_vols(np.array([1.0, 1.0]), np.array([15.0, 30.0]), 0.0, 0.38,
                                  0.38, 0.30, 0.30, 0.0, np.array([False, False]), 0.0)
    np.testing.assert_allclose(up - 1.0, [(30 / 15) ** 0.3 * 0.38, 0.38], rtol=1e-14)
    assert round(float(up[0] - 1.0), 5) == 0.46783
    np.testing.assert_allclose(1.0 - down, up - 1.0, rtol=1e-14)


def test_dederi_linear_future_grid():
    """Dederi wiki (a Deribit clone): 10 long ETH futures at F0 = 2,253.2 over -15..+15 %
    in 3 % steps give -3380, -2704, ..., 3380 (rounded); worst case 3,380."""
    instr = pa.table({"symbol": ["ETH-10JAN24"], "underlying": ["ETH"], "kind": ["future"],
                      "settlement": ["linear"], "contract_size": [1.0],
                      "expiry": ["2024-01-10T08:00:00Z"]})
    mkt = pa.table({"symbol": ["ETH-10JAN24"], "mark_price": [2253.2]})
    idx = pa.table({"underlying": ["ETH"], "index_price": [2243.3]})
    pos = pa.table({"account": ["d"], "symbol": ["ETH-10JAN24"], "quantity": [10.0]})
    m = pmrisk.Model.preset("deribit_pme").with_overrides(
        {"extended_table": False,
         "ETH": {"price_range": 0.15, "buckets_count": 5, "pnl_offset": 1.0,
                 "max_offsetable_pnl": float("inf")}})
    r = pmrisk.margin(pos, instr, mkt, idx, model=m, valuation_time="2023-12-21T08:00:00Z",
                      risk_vectors=True)
    per_bucket = np.round(np.asarray(r.risk_vectors["pnl"].to_numpy())[1::3])
    assert per_bucket.tolist() == [-3380, -2704, -2028, -1352, -676, 0, 676, 1352, 2028,
                                   2704, 3380]
    assert r.units["worst_case"][0].as_py() == pytest.approx(0.15 * 10 * 2253.2)


def u_bind(result):
    return result.units["binding_price_shock"][0].as_py()


def test_tables_builds_only_what_is_asked():
    from pmrisk import samples
    d = samples.demo_book()
    full = pmrisk.margin(**d)
    only = pmrisk.margin(**d, tables=("accounts",))
    assert only.units is None and only.positions is None
    assert only.accounts.equals(full.accounts)
    assert pmrisk.margin(**d, tables=["accounts", "units"]).units.equals(full.units)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(**d, tables=("accounts", "position"))
    assert e.value.column == "tables" and "position" in str(e.value)

"""Pins for behaviour a mutation review showed the rest of the suite could miss: each test
fixes one formula or parameter by hand so that changing it fails here."""

import math

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk.model import presets
from pmrisk.kernel import black76_price
from test_engine import INDEX, INSTR, MARKET, T0, margin, one

# --- Black-76 tails, against 50-digit mpmath values (computed once, pasted here) ----------
TAILS = [  # F, K, T, sigma, call, price
    (100.0, 160.0, 0.25, 0.3, True, 0.004480592792860249611252435),
    (100.0, 60.0, 0.25, 0.3, False, 0.000983107877637081874272672),
    (65000.0, 120000.0, 0.1, 0.6, True, 2.751374209088026339745769),
    (3400.0, 1500.0, 0.05, 0.8, False, 0.0001935442454070581492151081),
    (100.0, 250.0, 1.0, 0.4, True, 0.234101768288622496033496),
    (1.0, 1.3, 0.02, 0.5, True, 0.000002000229837552579192119886),
]


@pytest.mark.parametrize("F, K, T, sigma, call, want", TAILS)
def test_black76_tails_are_accurate_relative_to_the_price(F, K, T, sigma, call, want):
    """Deep out-of-the-money prices to 1e-11 *relative* (QuantLib's 1+erf CDF cannot do
    this; erfc can): the price is not swamped by rounding of order F."""
    assert black76_price(F, K, T, sigma, call, 0.0) == pytest.approx(want, rel=1e-11)


# --- roll shock ---------------------------------------------------------------------------
LONG_EXP = "2024-12-14T00:00:00Z"        # 180 days after T0

EXTRA = pa.Table.from_pylist([
    dict(symbol="BTC-DEC", underlying="BTC", kind="future", settlement="inverse",
         contract_size=10.0, expiry=LONG_EXP, strike=None, option_type=None),
    dict(symbol="BTC-FUT2", underlying="BTC", kind="future", settlement="inverse",
         contract_size=10.0, expiry="2024-07-17T00:00:00Z", strike=None, option_type=None),
    dict(symbol="BTC-PERP2", underlying="BTC", kind="perpetual", settlement="inverse",
         contract_size=10.0, expiry=None, strike=None, option_type=None),
])
EXTRA_MKT = pa.Table.from_pylist([
    dict(symbol="BTC-DEC", mark_price=52000.0, mark_iv=None, underlying_price=None),
    dict(symbol="BTC-FUT2", mark_price=50500.0, mark_iv=None, underlying_price=None),
    dict(symbol="BTC-PERP2", mark_price=50000.0, mark_iv=None, underlying_price=None),
])
INS2 = pa.concat_tables([INSTR, EXTRA.cast(INSTR.schema)])
MKT2 = pa.concat_tables([MARKET, EXTRA_MKT.cast(MARKET.schema)])


def run(rows, model="deribit_pme", **kw):
    pos = pa.Table.from_pylist([dict(account=a, symbol=s, quantity=float(q))
                                for a, s, q in rows])
    return pmrisk.margin(pos, INS2, MKT2, INDEX, model=model, valuation_time=T0, **kw)


def test_roll_shock_of_a_long_dated_future_uses_its_time():
    u = one(run([("a", "BTC-DEC", 10_000)]).units, account="a")
    rate = math.expm1(0.075 * 180 / 365)
    assert rate > 0.01
    assert u["roll_shock"] == pytest.approx(rate * 10_000 * 10 / 52_000, rel=1e-12)


def test_roll_shock_nets_delta_within_an_expiry_group():
    u = one(run([("a", "BTC-FUT", 10_000), ("a", "BTC-FUT2", -6_000)]).units, account="a")
    assert u["roll_shock"] == pytest.approx(0.01 * 4_000 * 10 / 50_500, rel=1e-12)


def test_each_perpetual_is_its_own_roll_group():
    u = one(run([("a", "BTC-PERP", 10_000), ("a", "BTC-PERP2", -10_000)]).units, account="a")
    assert u["roll_shock"] == pytest.approx(0.01 * 2 * 10_000 * 10 / 50_000, rel=1e-12)
    assert u["worst_case"] == pytest.approx(0.0, abs=1e-15)


def test_delta_shock_uses_net_delta():
    """A huge but delta-neutral book: gross 1,200 BTC, net 0 -> no delta shock."""
    u = one(run([("a", "BTC-PERP", 3_000_000), ("a", "BTC-PERP2", -3_000_000)]).units,
            account="a")
    assert u["delta_shock"] == 0.0


# --- vol shock floors ----------------------------------------------------------------------
def _cell(result, shock, state):
    rv = result.risk_vectors.to_pylist()
    return [c for c in rv if c["table"] == "standard" and c["vol_state"] == state
            and c["price_shock"] == pytest.approx(shock)][0]["pnl"]


def test_min_volatility_for_shock_up_floors_the_up_vol():
    lc = MARKET.to_pylist()
    r = pmrisk.margin(pa.Table.from_pylist([dict(account="a", symbol="BTC-C", quantity=1.0)]),
                      INSTR, pa.Table.from_pylist(
                          [dict(m, mark_iv=0.3) if m["symbol"] == "BTC-C" else m for m in lc],
                          schema=MARKET.schema),
                      INDEX, valuation_time=T0, risk_vectors=True, model="deribit_pme")
    years = 30 / 365
    up = max(0.3 * (1 + 0.5 * 1.0), 0.5)          # 0.45 -> floored to 0.5 (DTE 30: term 1)
    assert up == 0.5
    f = 50500.0
    want = (black76_price(f, 60000.0, years, up, True, 0.0)
            - black76_price(f, 60000.0, years, 0.3, True, 0.0)) / f
    assert _cell(r, 0.0, "up") == pytest.approx(want, rel=1e-12)


def test_dte_is_floored_at_one_day():
    t0 = "2024-07-16T12:00:00Z"                     # 12 hours before BTC-C expires
    r = pmrisk.margin(pa.Table.from_pylist([dict(account="a", symbol="BTC-C", quantity=1.0)]),
                      INSTR, MARKET, INDEX, valuation_time=t0, risk_vectors=True)
    years = 0.5 / 365
    up = 0.6 * (1 + 0.5 * (30 / 1.0) ** 0.3)        # floored DTE 1, not 0.5
    f = 50500.0
    want = (black76_price(f, 60000.0, years, up, True, 0.0)
            - black76_price(f, 60000.0, years, 0.6, True, 0.0)) / f
    assert _cell(r, 0.0, "up") == pytest.approx(want, rel=1e-12)


# --- SPAN ---------------------------------------------------------------------------------
def test_span_scenarios_use_the_one_day_horizon_and_absolute_vol():
    r = margin([("a", "BTC-C", 1)], model="span", risk_vectors=True)
    years = 30 / 365
    f = 50500.0
    base = black76_price(f, 60000.0, years, 0.6, True, 0.0) / f
    for k, (s, vol) in enumerate([(0.0, 0.64), (0.0, 0.56)]):
        want = black76_price(f * (1 + s), 60000.0, years - 1 / 365, vol, True, 0.0) / (
            f * (1 + s)) - base
        assert r.risk_vectors["pnl"][k].as_py() == pytest.approx(want, rel=1e-12)
    shocks = r.risk_vectors["price_shock"].to_pylist()
    assert shocks[14] == pytest.approx(0.3) and shocks[15] == pytest.approx(-0.3)


def test_risk_array_extreme_cells_are_final_values():
    """Row 16 holds the covered extreme loss already: no cover fraction again."""
    pnl = [0.0] * 15 + [-5000.0]
    r = pmrisk.margin_from_risk_arrays(
        {"account": ["a"], "symbol": ["F"], "quantity": [1.0]},
        {"symbol": ["F"] * 16, "scenario": list(range(16)), "pnl": pnl}, model="span")
    u = r.units.to_pylist()[0]
    assert u["worst_case"] == 5000.0 and u["binding_scenario"] == 15


# --- MM / IM composition ------------------------------------------------------------------
def test_risk_multiplier_scales_only_the_risk_part_of_im():
    m = pmrisk.Model.preset("deribit_pme").with_overrides({"risk_multiplier": 1.2})
    pos = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=100_000.0)])
    orders = pa.table({"account": ["a"], "order_id": [1], "symbol": ["BTC-PERP"],
                       "quantity": [50_000.0], "price": [50_000.0]})
    res = pa.table({"account": ["a"], "unit": ["BTC/BTC"], "mmp_margin": [0.3],
                    "open_orders_margin": [0.2]})
    u = pmrisk.margin(pos, INSTR, MARKET, INDEX, open_orders=orders, reserves=res, model=m,
                      valuation_time=T0).units.to_pylist()[0]
    assert u["open_orders_margin"] == pytest.approx(0.5 * u["worst_case"] + 0.2, rel=1e-12)
    assert u["initial_margin"] == pytest.approx(
        1.2 * 1.0 * u["risk_matrix_margin"] + u["open_orders_margin"] + 0.3, rel=1e-12)
    assert u["maintenance_margin"] == pytest.approx(1.2 * 0.8 * u["risk_matrix_margin"],
                                                    rel=1e-12)


def test_linear_unit_usd_columns():
    idx = pa.table({"underlying": ["BTC", "USDC"], "index_price": [50000.0, 0.999]})
    pos = pa.Table.from_pylist([dict(account="a", symbol="BTC-LC", quantity=10.0),
                                dict(account="a", symbol="BTCUSDT", quantity=1000.0)])
    r = pmrisk.margin(pos, INSTR, MARKET, idx, valuation_time=T0, model="deribit_pme")
    u = one(r.units, account="a")
    assert u["unit"] == "BTC/USDC" and u["settlement_price_usd"] == 0.999
    for col in ("worst_case", "roll_shock", "maintenance_margin", "initial_margin", "vega",
                "theta"):
        assert u[col + "_usd"] == pytest.approx(u[col] * 0.999, rel=1e-15), col
    assert u["delta_usd"] == pytest.approx(u["delta"] * 50000.0, rel=1e-15)
    assert u["gamma_usd"] == pytest.approx(u["gamma"] * 50000.0 ** 2 / 100, rel=1e-15)
    assert u["roll_shock"] == pytest.approx(0.01 * abs(u["delta"]) * 50000.0 / 0.999,
                                            rel=1e-12)
    p = one(r.positions, symbol="BTC-LC")
    assert p["value_usd"] == pytest.approx(p["value"] * 0.999, rel=1e-15)


def test_worst_scenario_names_the_largest_unit():
    pos = [("a", "BTC-PERP", 1_000), ("a", "BTCUSDT", -20_000)]   # USDC unit is larger
    r = margin(pos)
    acc = one(r.accounts, account="a")
    big = max(r.units.to_pylist(), key=lambda u: u["worst_case_usd"])
    assert big["unit"] == "BTC/USDC" and acc["worst_scenario"].startswith("BTC/USDC")


def test_max_withdrawable_warning_leg():
    """Under span (MM = IM) the lowest warning level binds: equity - 1.01 x MM."""
    bal = pa.table({"account": ["a"], "asset": ["BTC"], "amount": [10.0]})
    pos = pa.Table.from_pylist([dict(account="a", symbol="BTC-PERP", quantity=100_000.0)])
    acc = pmrisk.margin(pos, INSTR, MARKET, INDEX, balances=bal, model="span",
                        valuation_time=T0).accounts.to_pylist()[0]
    assert acc["maintenance_margin"] == pytest.approx(acc["initial_margin"])
    assert acc["max_withdrawable"] == pytest.approx(
        acc["equity"] - 1.01 * acc["maintenance_margin"], rel=1e-12)


@pytest.mark.parametrize("t, ok", [("2024-07-17T00:00:00Z", True),
                                   ("2024-07-17T00:00:00.000000001Z", False)])
def test_expiry_boundary(t, ok):
    pos = pa.Table.from_pylist([dict(account="a", symbol="BTC-C", quantity=1.0)])
    if ok:
        r = pmrisk.margin(pos, INSTR, MARKET, INDEX, valuation_time=t)
        assert r.positions["model_value"][0].as_py() == 0.0      # OTM at expiry: intrinsic 0
    else:
        with pytest.raises(pmrisk.MarginError):
            pmrisk.margin(pos, INSTR, MARKET, INDEX, valuation_time=t)


# --- presets pinned to the published parameters ---------------------------------------------
@pytest.mark.parametrize("und", ["BTC", "ETH"])
def test_deribit_preset_matches_published_parameters(und):
    params = presets.presets()["deribit_pme"].sets[-1].model[und]     # the shipped data file
    published = {
        "BTC": dict(price_range=0.16, buckets_count=4, volatility_range_up=0.5,
                    volatility_range_down=0.25, short_term_vega_power=0.3,
                    long_term_vega_power=0.13, min_volatility_for_shock_up=0.5,
                    extended_table_factor=1.0, max_delta_shock=0.1,
                    delta_total_liq_shock_threshold=20_000_000, m_inc=0.00005,
                    annualised_move_risk=0.075, min_annualised_move=0.01,
                    extended_dampener_usd=100_000, pnl_offset=0.0, max_offsetable_pnl=0.0),
        "ETH": dict(price_range=0.18, buckets_count=4, volatility_range_up=0.4,
                    volatility_range_down=0.25, short_term_vega_power=0.3,
                    long_term_vega_power=0.13, min_volatility_for_shock_up=0.5,
                    extended_table_factor=1.0, max_delta_shock=0.1,
                    delta_total_liq_shock_threshold=20_000_000, m_inc=0.000004,
                    annualised_move_risk=0.05, min_annualised_move=0.005,
                    extended_dampener_usd=200_000, pnl_offset=0.6,
                    max_offsetable_pnl=20_000_000)}[und]
    got = pmrisk.Model.preset("deribit_pme").underlying(und)
    for k, v in published.items():
        assert got[k] == v, k
    assert pmrisk.Model.preset("deribit_pme")["mm_factor"] == 0.8
    assert params == {k: got[k] for k in params}


def test_unallocated_is_zero_without_dampener_caps_orders_or_reserves():
    """Under span (no dampener, no gain caps) contributions alone add up to MM."""
    pos = [("a", "BTC-C", -7), ("a", "BTC-P", 4), ("a", "BTC-FUT", 20_000),
           ("a", "BTC-PERP", -5_000)]
    r = margin(pos, model="span")
    un = one(r.positions, symbol="unallocated")
    mm = r.units["maintenance_margin"][0].as_py()
    assert abs(un["mm_contribution"]) <= 1e-12 * mm
    np.testing.assert_allclose(un["im_contribution"], 0.0, atol=1e-12 * mm)

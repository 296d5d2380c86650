"""Regressions for findings of the independent review (each was reproduced first)."""

import json
import math
import pathlib

import pyarrow as pa
import pytest

import pmrisk
from pmrisk.kernel import black76_price
from reference_cases import load, run_pme

from test_engine import INDEX, INSTR, MARKET, T0


def pos(*rows):
    return pa.Table.from_pylist([dict(account=a, symbol=s, quantity=float(q))
                                 for a, s, q in rows])


def test_repeated_balance_rows_are_one_holding_not_double_tiering():
    """Two rows of 1 BTC were refused so as not to tier each row alone; SPEC 1 allows several
    rows per (account, asset), and they are one holding of 2 BTC, tiered once: the same
    account figures as one row of 2 BTC, under tiers that a per-row tiering would beat."""
    tiered = pmrisk.Model.preset("standard").with_overrides(
        {"collateral": {"BTC": {"tiers_usd": [[0, 50_000, 1.0], [50_000, math.inf, 0.5]]}}})
    out = []
    for amounts in ([1.0, 1.0], [2.0]):
        bal = pa.table({"account": ["a"] * len(amounts), "asset": ["BTC"] * len(amounts),
                        "amount": amounts})
        out.append(pmrisk.margin(pos(("a", "BTC-PERP", 1)), INSTR, MARKET, INDEX,
                                 balances=bal, model=tiered, valuation_time=T0).accounts)
    assert out[0].equals(out[1])
    px = INDEX["index_price"][INDEX["underlying"].to_pylist().index("BTC")].as_py()
    held = 2 * px
    assert held > 50_000
    want = 50_000 + 0.5 * (held - 50_000)
    assert out[0]["equity"][0].as_py() - out[0]["actual_equity"][0].as_py() == \
        pytest.approx(want - held)


@pytest.mark.parametrize("warning", [[], 1.1, "1.1"])
def test_bad_warning_thresholds_fail_at_model_construction(warning):
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.Model.preset("deribit_pme").with_overrides({"thresholds": {"warning": warning}})
    assert "thresholds" in str(e.value)


def test_black76_nan_stays_nan_and_infinite_vol_is_the_limit():
    assert math.isnan(black76_price(100.0, 100.0, 0.5, math.nan, True, 0.0))
    assert black76_price(100.0, 90.0, 0.5, math.inf, True, 0.0) == 100.0
    assert black76_price(100.0, 90.0, 0.5, math.inf, False, 0.0) == 90.0


def test_absurd_mark_iv_is_rejected():
    mkt = MARKET.set_column(2, "mark_iv", pa.array(
        [1.5e308 if s == "BTC-C" else v for s, v in
         zip(MARKET["symbol"].to_pylist(), MARKET["mark_iv"].to_pylist())], pa.float64()))
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(pos(("a", "BTC-C", 1)), INSTR, mkt, INDEX, valuation_time=T0)
    assert e.value.column == "mark_iv" and "BTC-C" in str(e.value)


def test_ties_survive_rounding_without_dampener():
    """With the dampener at 0 a future's extended cells equal the grid edge up to rounding;
    the standard vol-same cell must still bind (D1: index 1)."""
    case = load("deribit_pme_btc_d1")
    case = json.loads(json.dumps(case))
    case["inputs"]["model"]["BTC"]["extended_dampener_usd"] = 0.0
    r = run_pme(case)
    u = r.units.to_pylist()[0]
    assert (u["binding_scenario"], u["binding_table"]) == (1, "standard")
    assert u["worst_case"] == pytest.approx(case["expected"]["worst_case_coin"], rel=1e-12)


@pytest.mark.parametrize("text", ["2024-06-17 00:00:00", "2024-06-17T00:00:00",
                                  "2024-06-17", "2024-06-17T00:00:00Z"])
def test_naive_and_date_only_strings_are_utc(text):
    a = pmrisk.margin(pos(("a", "BTC-C", 1)), INSTR, MARKET, INDEX, valuation_time=text)
    b = pmrisk.margin(pos(("a", "BTC-C", 1)), INSTR, MARKET, INDEX, valuation_time=T0)
    assert a.units.equals(b.units)


def test_naive_expiry_strings_are_utc():
    ins = INSTR.set_column(5, "expiry", pa.array(
        [None if e is None else e.replace("Z", "") for e in INSTR["expiry"].to_pylist()]))
    a = pmrisk.margin(pos(("a", "BTC-C", 1)), ins, MARKET, INDEX, valuation_time=T0)
    b = pmrisk.margin(pos(("a", "BTC-C", 1)), INSTR, MARKET, INDEX, valuation_time=T0)
    assert a.units.equals(b.units)


def test_model_accepts_a_path():
    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "model.example.toml"
    assert pmrisk.Model.coerce(path)["risk_multiplier"] == 1.2


def test_collateral_override_can_switch_tiers_for_a_rate():
    m = pmrisk.Model.preset("deribit_pme").with_overrides(
        {"collateral": {"BTC": {"tiers_usd": [[0, 1e6, 1.0], [1e6, 2e6, 0.5]]}}})
    m2 = m.with_overrides({"collateral": {"BTC": {"rate": 0.9}}})
    assert m2["collateral"]["BTC"] == {"rate": 0.9}


def test_reserves_in_a_unit_the_model_cannot_form_are_an_error():
    res = pa.table({"account": ["a"], "unit": ["BTC/USDT"], "mmp_margin": [1.0],
                    "open_orders_margin": [0.0]})
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(pos(("a", "BTC-PERP", 1)), INSTR, MARKET, INDEX, reserves=res,
                      model="deribit_pme", valuation_time=T0)
    assert e.value.table == "reserves" and "BTC/USDT" in str(e.value)

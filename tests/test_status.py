"""Status bands (SPEC §7): exact threshold boundaries (>= stays, < drops), engineered books
landing in every band under each preset's thresholds, and max_withdrawable."""

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk.results import status_of

DEFAULT = {"warning": [1.10, 1.05, 1.01], "margin_call": 1.00, "liquidation": 0.75}
def levels(th):
    return list(th["warning"]) + [th["margin_call"], th["liquidation"]]


def names(th):
    """Status names from the best band down: normal, warning_1..k, margin_call, liquidation."""
    return (["normal"] + [f"warning_{k + 1}" for k in range(len(th["warning"]))]
            + ["margin_call", "liquidation"])


@pytest.mark.parametrize("preset", ["standard", "binance_pm_pro", "deribit_pme", "span"])
def test_status_exactly_at_each_threshold(preset):
    th = pmrisk.Model.preset(preset)["thresholds"]
    lv = levels(th)
    at = np.array(lv)
    below = np.nextafter(at, -np.inf)
    assert status_of(at, th) == names(th)[:len(lv)]          # >= a level keeps the band above
    assert status_of(below, th) == names(th)[1:len(lv) + 1]  # just below drops into the next
    assert status_of(np.array([np.inf, 1e9, 0.0, -1.0, -np.inf]), th) == [
        "normal", "normal", "liquidation", "liquidation", "liquidation"]


def test_preset_thresholds():
    assert levels(pmrisk.Model.preset("standard")["thresholds"]) == [1.10, 1.05, 1.01, 1.00,
                                                                    0.75]
    # Binance PM Pro's band edges: reminder below 150 %, reduce-only below 120 %,
    # liquidation starts below 105 %, loss claim below 100 %
    assert levels(pmrisk.Model.preset("binance_pm_pro")["thresholds"]) == [1.50, 1.20, 1.05,
                                                                          1.00]


def book(balance_usdt, qty=10.0):
    """One account: long ``qty`` BTC linear perpetual (no entry price) and a USDT balance."""
    return dict(
        positions=pa.table({"account": ["a"], "symbol": ["BTC-USDT-PERP"], "quantity": [qty]}),
        instruments=pa.table({"symbol": ["BTC-USDT-PERP"], "underlying": ["BTC"],
                              "kind": ["perpetual"], "settlement": ["linear"],
                              "contract_size": [1.0]}),
        market=pa.table({"symbol": ["BTC-USDT-PERP"], "mark_price": [64_000.0]}),
        index=pa.table({"underlying": ["BTC"], "index_price": [64_000.0]}),
        balances=pa.table({"account": ["a"], "asset": ["USDT"], "amount": [balance_usdt]}),
        valuation_time="2026-01-01T00:00:00Z")


@pytest.mark.parametrize("preset", ["standard", "binance_pm_pro"])
def test_engineered_books_land_in_every_band(preset):
    model = pmrisk.Model.preset(preset)
    mm = pmrisk.margin(**book(1.0), model=model).accounts["maintenance_margin"][0].as_py()
    lv = [np.inf] + levels(model["thresholds"]) + [0.0]
    for k, name in enumerate(names(model["thresholds"])):
        hi, lo = lv[k], lv[k + 1]
        target = lo * 1.02 if np.isinf(hi) else 0.5 * (hi + lo)
        acc = pmrisk.margin(**book(target * mm), model=model).accounts
        assert acc["maintenance_margin"][0].as_py() == pytest.approx(mm, rel=1e-12)
        assert acc["margin_ratio"][0].as_py() == pytest.approx(target, rel=1e-12)
        assert acc["status"][0].as_py() == name, (name, target)


def test_standard_mm_of_a_linear_position_is_its_range():
    """One long BTC perpetual under standard: worst = 15 % move (price_range), 2x range
    extremes covered 35 % = 10.5 % < 15 %; MM = 1.0 x worst, IM = 1.25 x worst."""
    acc = pmrisk.margin(**book(0.0), model="standard").accounts
    assert acc["maintenance_margin"][0].as_py() == pytest.approx(10 * 64_000 * 0.15, rel=1e-12)
    assert acc["initial_margin"][0].as_py() == pytest.approx(1.25 * 10 * 64_000 * 0.15,
                                                             rel=1e-12)


@pytest.mark.parametrize("balance", [50_000.0, 105_000.0, 200_000.0, 1_000_000.0])
def test_max_withdrawable_keeps_the_lowest_warning_and_available_margin(balance):
    model = pmrisk.Model.preset("standard")
    acc = pmrisk.margin(**book(balance), model=model).accounts
    wd = acc["max_withdrawable"][0].as_py()
    assert wd >= 0.0
    if wd > 0:
        after = pmrisk.margin(**book(balance - wd), model=model).accounts
        low = min(model["thresholds"]["warning"])
        assert after["margin_ratio"][0].as_py() >= low * (1 - 1e-12)
        assert after["available_margin"][0].as_py() >= -1e-6
        # and a cent more breaks one of the two
        more = pmrisk.margin(**book(balance - wd - 0.01), model=model).accounts
        assert (more["margin_ratio"][0].as_py() < low
                or more["available_margin"][0].as_py() < 0)


def test_example_toml_is_the_standard_model_with_its_knobs():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    m = pmrisk.Model.from_toml(root / "docs" / "model.example.toml")
    assert m.name == "standard" and m["cross_unit"] == "correlated"
    assert m["risk_multiplier"] == 1.2 and m["im_factor"] == 1.25
    assert m.underlying("BTC")["vol_floor"] == 0.25 and m.underlying("SOL")["price_range"] == 0.3
    assert levels(m["thresholds"]) == [1.10, 1.05, 1.01, 1.00, 0.75]
    c = pmrisk.correlation_matrix(["BTC", "ETH", "SOL"], m).matrix
    assert c[1, 2] == 0.9 and c[0, 2] == 0.6
    r = pmrisk.margin(**book(100_000.0), model=root / "docs" / "model.example.toml")
    assert r.accounts["maintenance_margin"][0].as_py() == pytest.approx(
        1.2 * 10 * 64_000 * 0.15, rel=1e-12)
    d = pmrisk.Model.from_toml(root / "docs" / "model.deribit.toml")
    assert d.name == "deribit_pme"

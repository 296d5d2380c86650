"""Metamorphic properties of the whole engine (hypothesis over random books)."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pmrisk
from books import (INDEX, MARKET, TIME, UNIVERSE, assert_no_nan, books, scaled,
                   with_negated_instruments)

MODELS = ["deribit_pme", "span"]


def run(pos, model="deribit_pme", instruments=UNIVERSE, market=MARKET, **kw):
    return pmrisk.margin(pos, instruments, market, INDEX, model=model, valuation_time=TIME,
                         **kw)


def col(t, name):
    return np.asarray(t[name].to_numpy(zero_copy_only=False), dtype=np.float64)


@pytest.mark.parametrize("model", MODELS)
@given(pos=books())
def test_margin_non_negative_and_finite(model, pos):
    r = run(pos, model)
    assert_no_nan(r)
    # cross_unit "sum": a unit is part of the margin exactly when it has a loss (a unit whose
    # every scenario gains, e.g. hedged options, has a null scenario_price_shock)
    null = r.units["scenario_price_shock"].is_null().to_numpy(zero_copy_only=False)
    assert (null == (col(r.units, "worst_case") == 0)).all()
    for name in ("worst_case", "roll_shock", "delta_shock", "short_option_minimum",
                 "risk_matrix_margin", "maintenance_margin", "initial_margin"):
        assert (col(r.units, name) >= 0).all(), name
    assert (col(r.accounts, "maintenance_margin") >= 0).all()


def test_unit_without_a_loss_takes_no_part():
    """A unit whose every scenario is a gain (ETH/ETH here: long puts and calls around a short
    call; found by the nightly fuzz) has worst case 0, no share of the margin and a null
    ``scenario_price_shock`` under ``cross_unit = "sum"``, never a NaN."""
    pos = pa.table({"account": ["acct-0"] * 11, "symbol": [
        "BTC-PERPETUAL", "ETH-28JUN24-2900-P", "ETH-27SEP24", "ETH-PERPETUAL",
        "ETH-28JUN24-3400-C", "BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL", "ETH-27SEP24-2950-C",
        "ETH-28JUN24-3950-P", "BTC-28JUN24", "ETH-28JUN24-2900-C"],
        "quantity": [1.0, 1, 1, 1, 1, 1, 1, -6, 16, 1, 25]})
    r = run(pos, "deribit_pme")
    assert_no_nan(r)
    u = r.units.to_pylist()
    eth = next(x for x in u if x["unit"] == "ETH/ETH")
    assert eth["worst_case"] == 0 and eth["scenario_margin"] == 0
    assert eth["scenario_price_shock"] is None and eth["scenario_vol_state"] is None
    assert all(x["scenario_price_shock"] == x["binding_price_shock"] for x in u if x is not eth)


# Deribit's extended-table dampener and the max_offsetable_pnl cap are absolute USD amounts,
# so the deribit_pme worst case is not homogeneous in quantity (a 2x book is charged slightly
# more than 2x once an extended cell binds).  The homogeneous variant sets both to 0 / inf;
# the raw risk vectors of the full preset must still scale exactly.
HOMOGENEOUS = {
    "deribit_pme": pmrisk.Model.preset("deribit_pme").with_overrides({
        u: {"extended_dampener_usd": 0.0, "max_offsetable_pnl": float("inf")}
        for u in ("BTC", "ETH", "default_underlying")}),
    "span": "span",
}


@pytest.mark.parametrize("model", MODELS)
@given(pos=books(), k=st.floats(0.01, 100.0))
def test_linear_scaling_in_quantity(model, pos, k):
    m = HOMOGENEOUS[model]
    a, b = run(pos, m), run(scaled(pos, k), m)
    for name in ("worst_case", "roll_shock"):
        np.testing.assert_allclose(col(b.units, name), k * col(a.units, name),
                                   rtol=1e-9, atol=1e-12)
    a, b = run(pos, model, risk_vectors=True), run(scaled(pos, k), model, risk_vectors=True)
    np.testing.assert_allclose(col(b.risk_vectors, "pnl"), k * col(a.risk_vectors, "pnl"),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(col(b.units, "roll_shock"), k * col(a.units, "roll_shock"),
                               rtol=1e-9, atol=1e-12)


def test_dampener_makes_deribit_worst_case_sub_linear_in_size():
    """The documented exception above, pinned: with the extended table binding, doubling the
    book more than doubles the charge (the fixed USD dampener matters less)."""
    pos = pa.Table.from_pylist([{"account": "a", "symbol": "BTC-28JUN24-56000-P",
                                 "quantity": -200.0}])
    one, two = run(pos), run(scaled(pos, 2.0))
    assert one.units["binding_table"][0].as_py() == "extended"
    assert col(two.units, "worst_case")[0] > 2 * col(one.units, "worst_case")[0]


@pytest.mark.parametrize("model", MODELS)
@given(pos=books(max_accounts=1))
def test_book_plus_negation_has_no_scenario_loss(model, pos):
    ins, mkt = with_negated_instruments()
    neg = pos.set_column(1, "symbol", pa.array([s + "-NEG" for s in pos["symbol"].to_pylist()]))
    neg = scaled(neg, -1.0)
    r = run(pa.concat_tables([pos, neg]), model, instruments=ins, market=mkt,
            risk_vectors="positions")
    # zero up to the rounding of summing +x and -x in some order: 1e-12 of the gross P&L
    gross = np.abs(col(r.position_risk_vectors, "pnl")).max()
    assert (col(r.units, "worst_case") <= 1e-12 * gross).all()
    assert (np.abs(col(r.unit_risk_vectors, "pnl")) <= 1e-12 * gross).all()
    assert r.risk_vectors.equals(r.position_risk_vectors)      # SPEC §9: per position


@pytest.mark.parametrize("model", MODELS)
@given(pos=books(), data=st.data())
def test_permuting_rows_changes_nothing(model, pos, data):
    perm = data.draw(st.permutations(range(pos.num_rows)))
    a = run(pos, model)
    b = run(pos.take(pa.array(perm, pa.int64())), model)
    key = lambda t: sorted(zip(t["account"].to_pylist(), t["unit"].to_pylist()))  # noqa: E731
    assert key(a.units) == key(b.units)
    sa = a.units.sort_by([("account", "ascending"), ("unit", "ascending")])
    sb = b.units.sort_by([("account", "ascending"), ("unit", "ascending")])
    for name in ("worst_case", "roll_shock", "maintenance_margin", "initial_margin", "delta"):
        np.testing.assert_allclose(col(sb, name), col(sa, name), rtol=1e-12, atol=1e-12)
    assert sa["binding_scenario"].to_pylist() == sb["binding_scenario"].to_pylist() or \
        np.allclose(col(sa, "worst_case"), 0.0)


@pytest.mark.parametrize("model", MODELS)
@given(pos=books())
def test_worst_case_bounds_every_weighted_cell(model, pos):
    r = run(pos, model, risk_vectors=True)
    rv = r.risk_vectors
    worst = dict(zip(zip(r.units["account"].to_pylist(), r.units["unit"].to_pylist()),
                     col(r.units, "worst_case")))
    for a, u, w in zip(rv["account"].to_pylist(), rv["unit"].to_pylist(),
                       col(rv, "weighted_pnl")):
        assert worst[(a, u)] >= -w - 1e-12 * max(1.0, abs(w))
    # and the binding cell attains it
    for row in r.units.to_pylist():
        cells = rv.filter(pa.compute.and_(
            pa.compute.equal(rv["account"], row["account"]),
            pa.compute.equal(rv["unit"], row["unit"])))
        wb = cells["weighted_pnl"][row["binding_scenario"]].as_py()
        assert row["worst_case"] == pytest.approx(max(0.0, -wb), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("model", MODELS)
@given(pos=books())
def test_contributions_sum_to_margin(model, pos):
    r = run(pos, model)
    acc = {a: (m, i) for a, m, i in zip(r.accounts["account"].to_pylist(),
                                        col(r.accounts, "maintenance_margin"),
                                        col(r.accounts, "initial_margin"))}
    mm, im = {}, {}
    for a, c, d in zip(r.positions["account"].to_pylist(),
                       col(r.positions, "mm_contribution_usd"),
                       col(r.positions, "im_contribution_usd")):
        mm[a] = mm.get(a, 0.0) + c
        im[a] = im.get(a, 0.0) + d
    for a, (m, i) in acc.items():
        assert mm[a] == pytest.approx(m, rel=1e-9, abs=1e-9)
        assert im[a] == pytest.approx(i, rel=1e-9, abs=1e-9)
    if model == "span":
        # no dampener, caps, orders or reserves: the positions alone add up to the margin,
        # so the unallocated rows are 0 (this is what makes the sum above a real check)
        un = r.positions.filter(pa.compute.equal(r.positions["symbol"], "unallocated"))
        scale = max([1.0] + [m for m, _ in acc.values()])
        assert np.abs(col(un, "mm_contribution_usd")).max(initial=0.0) <= 1e-9 * scale


@given(pos=books(), rm=st.floats(0.8, 1.5))
def test_risk_multiplier_scales_margin(pos, rm):
    base = run(pos)
    m = pmrisk.Model.preset("deribit_pme").with_overrides({"risk_multiplier": rm})
    r = run(pos, m)
    np.testing.assert_allclose(col(r.units, "maintenance_margin"),
                               rm * col(base.units, "maintenance_margin"), rtol=1e-12, atol=0)

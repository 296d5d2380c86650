"""OKX MR9: the stablecoin-hedged notional of a unit (pairs USDT-USD, USDT-USDC, USDC-USD, in
that order, opposite-sign net cash deltas offsetting) charged progressively by tier."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from pmrisk.kernel.addons import tiered
from pmrisk.kernel.okx import MR9_TIERS, PAIRS, mr9, stablecoin_hedged

M = 1e6


@pytest.mark.parametrize("usdt,usdc,usd,hedged", [
    (10 * M, 0.0, -10 * M, [10 * M, 0, 0]),           # OKX's example: 10 M hedged
    (10 * M, -4 * M, -7 * M, [7 * M, 3 * M, 0]),      # USDT-USD first, then USDT-USDC
    (-3 * M, 10 * M, -4 * M, [0, 3 * M, 4 * M]),      # USDT and USD both short: USDC carries
    (5 * M, -5 * M, -5 * M, [5 * M, 0, 0]),           # USDT consumed by USD: USDC unmatched
    (0.0, 5 * M, -2 * M, [0, 0, 2 * M]),
    (4 * M, 3 * M, 1 * M, [0, 0, 0]),                 # all long: nothing hedged
    (0.0, 0.0, -8 * M, [0, 0, 0]),                    # one currency only
    (0.0, 0.0, 0.0, [0, 0, 0]),
])
def test_hedged_notional_by_pair(usdt, usdc, usd, hedged):
    got = stablecoin_hedged(np.array([[usdt, usdc, usd]]))
    np.testing.assert_array_equal(got, [hedged])
    np.testing.assert_array_equal(oracles.stablecoin_hedged([[usdt, usdc, usd]]), [hedged])


deltas = st.one_of(st.just(0.0), st.floats(-1e9, 1e9, allow_subnormal=False),
                   st.sampled_from([-5e6, 5e6, -1e6, 1e6]))
units = st.lists(st.tuples(deltas, deltas, deltas), min_size=1, max_size=20)


@given(units)
def test_hedged_agrees_with_oracle(rows):
    cd = np.array(rows)
    np.testing.assert_allclose(stablecoin_hedged(cd), oracles.stablecoin_hedged(cd), rtol=1e-12,
                               atol=0)


@given(units)
def test_total_hedged_is_the_smaller_side_whatever_the_order(rows):
    """Total matched = min(sum of longs, |sum of shorts|); flipping every sign changes
    nothing; the input is not modified."""
    cd = np.array(rows)
    before = cd.copy()
    h = stablecoin_hedged(cd)
    np.testing.assert_array_equal(cd, before)
    longs = np.where(cd > 0, cd, 0.0).sum(axis=1)
    shorts = -np.where(cd < 0, cd, 0.0).sum(axis=1)
    np.testing.assert_allclose(h.sum(axis=1), np.minimum(longs, shorts), rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(stablecoin_hedged(-cd), h)
    assert (h >= 0).all()


@given(units)
def test_mr9_is_the_tiered_charge_per_pair(rows):
    cd = np.array(rows)
    charge, h = mr9(cd)
    want = sum(tiered(h[:, j], MR9_TIERS) for j in range(len(PAIRS)))
    np.testing.assert_allclose(charge, want, rtol=1e-12, atol=0)
    assert (charge >= 0).all() and (charge <= 0.025 * h.sum(axis=1) + 1e-6).all()


def test_mr9_published_example_and_open_ended_tier():
    tiers = [[0, 1_000_000, 0.0075], [1_000_000, 5_000_000, 0.0175], [5_000_000, None, 0.025]]
    charge, hedged = mr9(np.array([[10 * M, 0.0, -10 * M], [0.0, -10 * M, 10 * M]]), tiers)
    assert charge.tolist() == pytest.approx([202_500.0, 202_500.0], abs=1e-6)
    assert hedged.tolist() == [[10 * M, 0, 0], [0, 0, 10 * M]]


def test_mr9_tiers_apply_to_each_pair_separately():
    """10 M hedged as 5 M USDT-USD + 5 M USDT-USDC: each pair pays the low tiers (assumption)."""
    charge, _ = mr9(np.array([[10 * M, -5 * M, -5 * M]]))
    assert charge[0] == pytest.approx(2 * (7_500 + 70_000), abs=1e-6)


def test_mr9_per_pair_tables():
    flat = [(0, None, 0.01)]
    charge, _ = mr9(np.array([[10 * M, -4 * M, -7 * M]]),
                    (flat, [(0, None, 0.02)], [(0, None, 0.5)]))
    assert charge[0] == pytest.approx(7 * M * 0.01 + 3 * M * 0.02, abs=1e-6)

"""Black-76 kernels (SPEC §2): QuantLib agreement, Greeks vs finite differences, edge cases.

Tolerances.  A Black-76 price is a difference of terms of order ``max(F, K)``, so its absolute
rounding error scales with the forward, not with the price: prices are compared to
``1e-12*max(|price|, F)``.  Finite-difference Greeks are compared in each Greek's natural
units (delta is O(1); gamma is measured against ``1/(F*sd)``, vega against ``F*sqrt(T)``,
theta against ``F*sigma/sqrt(T)``), with steps in F proportional to ``F*min(sd, 1)`` (the
scale on which V varies), so that truncation and rounding errors both stay far below the
tolerances.

Hypothesis profiles come from ``tests/conftest.py`` (``HYPOTHESIS_PROFILE=nightly`` searches
harder).
"""

import math

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import (black76_greeks, black76_greeks_array, black76_price,
                           black76_price_array)

PRICE_RTOL = 1e-12


# -- strategies ----------------------------------------------------------------------------

forwards = st.floats(1.0, 1e6)
log_moneyness = st.floats(-3.0, 3.0)
years = st.floats(1.0 / 365.0, 5.0)
vols = st.floats(0.01, 3.0)
calls = st.booleans()
rates = st.floats(0.0, 0.1)

# (F, K, T, sigma, is_call)
contracts = st.builds(lambda F, u, T, sigma, call: (F, F * math.exp(u), T, sigma, call),
                      forwards, log_moneyness, years, vols, calls)


def quantlib_price(F, K, T, sigma, call, rate):
    kind = ql.Option.Call if call else ql.Option.Put
    return ql.blackFormula(kind, K, F, sigma * math.sqrt(T), math.exp(-rate * T))


def assert_price_close(actual, expected, F):
    tol = PRICE_RTOL * max(abs(expected), F)
    assert abs(actual - expected) <= tol, (actual, expected, actual - expected, tol)


def as_arrays(rows):
    """Contract tuples -> the kernel's array arguments (float64 and int64, C-contiguous)."""
    cols = list(zip(*rows)) if rows else [(), (), (), (), ()]
    F, K, T, sigma = (np.array(c, dtype=np.float64) for c in cols[:4])
    is_call = np.array(cols[4], dtype=np.int64)
    return F, K, T, sigma, is_call


# -- (a) QuantLib ------------------------------------------------------------------------------

def _check_scalar_against_quantlib(contract, rate):
    F, K, T, sigma, call = contract
    expected = quantlib_price(F, K, T, sigma, call, rate)
    assert_price_close(black76_price(F, K, T, sigma, call, rate), expected, F)
    assert_price_close(black76_price(F, K, T, sigma, int(call), rate), expected, F)
    assert_price_close(black76_greeks(F, K, T, sigma, call, rate)[0], expected, F)


@given(contracts)
def test_scalar_price_matches_quantlib_undiscounted(contract):
    _check_scalar_against_quantlib(contract, 0.0)


@given(contracts, rates)
def test_scalar_price_matches_quantlib_discounted(contract, rate):
    _check_scalar_against_quantlib(contract, rate)


@given(st.lists(contracts, min_size=0, max_size=40), st.one_of(st.just(0.0), rates))
def test_array_price_matches_quantlib(rows, rate):
    F, K, T, sigma, is_call = as_arrays(rows)
    prices = black76_price_array(F, K, T, sigma, is_call, rate)
    greeks = black76_greeks_array(F, K, T, sigma, is_call, rate)
    assert prices.shape == (len(rows),)
    assert greeks.shape == (5, len(rows))
    for i, (f, k, t, s, c) in enumerate(rows):
        expected = quantlib_price(f, k, t, s, c, rate)
        assert_price_close(prices[i], expected, f)
        assert_price_close(greeks[0, i], expected, f)


@given(st.lists(contracts, min_size=0, max_size=40), st.one_of(st.just(0.0), rates))
def test_arrays_match_numpy_oracle(rows, rate):
    F, K, T, sigma, is_call = as_arrays(rows)
    scale = np.maximum(F, K)
    prices = black76_price_array(F, K, T, sigma, is_call, rate)
    want_prices = oracles.black76_price_array(F, K, T, sigma, is_call, rate)
    assert np.all(np.abs(prices - want_prices) <= 1e-12 * (np.abs(want_prices) + scale))
    got = black76_greeks_array(F, K, T, sigma, is_call, rate)
    want = oracles.black76_greeks_array(F, K, T, sigma, is_call, rate)
    sd = sigma * np.sqrt(T)
    natural = np.stack([scale, np.ones_like(F), 1.0 / (F * sd), F * np.sqrt(T),
                        (F * sigma / np.sqrt(T) + rate * scale) / 365.0])
    assert np.all(np.abs(got - want) <= 1e-12 * (np.abs(want) + natural)), got - want


# -- (b) Greeks vs central finite differences ---------------------------------------------------

def _fd_greeks(F, K, T, sigma, call, rate):
    """(delta, gamma, vega, theta_per_day) by central differences of the kernel's price."""
    V = lambda f=F, t=T, s=sigma: black76_price(f, K, t, s, call, rate)  # noqa: E731
    width = F * min(sigma * math.sqrt(T), 1.0)   # V varies on this scale of F (kink or 1/F)
    hf = 1e-3 * width
    delta = (V(f=F + hf) - V(f=F - hf)) / (2 * hf)
    hg = 2e-2 * width
    gamma = (V(f=F + hg) - 2 * V() + V(f=F - hg)) / (hg * hg)
    hs = 1e-4 * sigma
    vega = (V(s=sigma + hs) - V(s=sigma - hs)) / (2 * hs)
    ht = 1e-4 * T
    theta = -(V(t=T + ht) - V(t=T - ht)) / (2 * ht) / 365.0
    return delta, gamma, vega, theta


def _check_greeks_fd(contract, rate):
    F, K, T, sigma, call = contract
    price, delta, gamma, vega, theta = black76_greeks(F, K, T, sigma, call, rate)
    fd_delta, fd_gamma, fd_vega, fd_theta = _fd_greeks(F, K, T, sigma, call, rate)
    sd = sigma * math.sqrt(T)
    big = max(F, K)
    # each Greek divided by its natural unit is O(1) at most; compare there
    checks = {
        "delta": (delta, fd_delta, 1.0, 1e-6),
        "gamma": (gamma, fd_gamma, 1.0 / (F * sd), 5e-4),
        "vega": (vega, fd_vega, F * math.sqrt(T), 1e-6),
        "theta": (theta, fd_theta, (F * sigma / math.sqrt(T) + rate * big) / 365.0, 1e-6),
    }
    for name, (exact, fd, unit, tol) in checks.items():
        err = abs(exact - fd) / unit
        assert err <= tol * (1.0 + abs(exact) / unit), (name, exact, fd, err)
    # signs that hold for every contract
    assert gamma >= 0.0 and vega >= 0.0
    assert (0.0 <= delta <= 1.0) if call else (-1.0 <= delta <= 0.0)
    assert price >= 0.0


@given(contracts)
def test_greeks_match_finite_differences_undiscounted(contract):
    _check_greeks_fd(contract, 0.0)


@given(contracts, rates)
def test_greeks_match_finite_differences_discounted(contract, rate):
    _check_greeks_fd(contract, rate)


@given(st.lists(contracts, min_size=0, max_size=20), st.one_of(st.just(0.0), rates))
def test_greeks_array_matches_scalar(rows, rate):
    F, K, T, sigma, is_call = as_arrays(rows)
    got = black76_greeks_array(F, K, T, sigma, is_call, rate)
    for i, (f, k, t, s, c) in enumerate(rows):
        assert tuple(got[:, i]) == black76_greeks(f, k, t, s, int(c), rate)


# -- (c) edge cases ----------------------------------------------------------------------------

# (T, sigma): every combination is degenerate (intrinsic)
DEGENERATE = {
    "T=0": (0.0, 0.6),
    "T<0": (-0.25, 0.6),
    "T=-inf-ish": (-1e6, 0.6),
    "sigma=0": (0.5, 0.0),
    "sd=1e-14": (1.0, 1e-14),
    "sd=1e-14 short": (1e-4, 1e-12),
}
MONEYNESS = {"itm_call": 0.8, "atm": 1.0, "otm_call": 1.25}


@pytest.mark.parametrize("rate", [0.0, 0.05])
@pytest.mark.parametrize("call", [True, False], ids=["call", "put"])
@pytest.mark.parametrize("k_over_f", MONEYNESS.values(), ids=MONEYNESS.keys())
@pytest.mark.parametrize("T, sigma", DEGENERATE.values(), ids=DEGENERATE.keys())
@pytest.mark.parametrize("F", [1.0, 65_000.0, 1e6])
def test_degenerate_gives_intrinsic(F, T, sigma, k_over_f, call, rate):
    K = F * k_over_f
    disc = math.exp(-rate * T) if T > 0 else 1.0
    intrinsic = disc * max((F - K) if call else (K - F), 0.0)
    price = black76_price(F, K, T, sigma, call, rate)
    assert price == pytest.approx(intrinsic, rel=1e-15, abs=0.0)
    p, delta, gamma, vega, theta = black76_greeks(F, K, T, sigma, call, rate)
    assert p == price
    if K == F:
        assert price == 0.0
        assert delta == (0.5 if call else -0.5) * disc
    elif F > K:
        assert delta == (1.0 if call else 0.0) * disc
    else:
        assert delta == (0.0 if call else -1.0) * disc
    assert gamma == 0.0 and vega == 0.0
    assert theta == pytest.approx(rate * price / 365.0, rel=1e-15, abs=0.0)
    # the array kernels take the same branch
    args = [np.array([x], dtype=np.float64) for x in (F, K, T, sigma)]
    is_call = np.array([int(call)], dtype=np.int64)
    assert black76_price_array(*args, is_call, rate)[0] == price
    assert tuple(black76_greeks_array(*args, is_call, rate)[:, 0]) == (p, delta, gamma, vega,
                                                                       theta)


@pytest.mark.parametrize("T", [0.0, -1.0])
def test_atm_at_expiry(T):
    F = K = 65_000.0
    assert black76_price(F, K, T, 0.6, True, 0.0) == 0.0
    assert black76_price(F, K, T, 0.6, False, 0.0) == 0.0
    assert black76_greeks(F, K, T, 0.6, True, 0.0) == (0.0, 0.5, 0.0, 0.0, 0.0)
    assert black76_greeks(F, K, T, 0.6, False, 0.0) == (0.0, -0.5, 0.0, 0.0, 0.0)


def test_just_above_the_stddev_cutoff_is_continuous():
    """Just above sd = 1e-12 the Black formula runs; it must agree with intrinsic there."""
    F, T = 65_000.0, 1.0
    for K in (60_000.0, 65_000.0, 70_000.0):
        for call in (True, False):
            below = black76_price(F, K, T, 0.99e-12, call, 0.0)
            above = black76_price(F, K, T, 1.01e-12, call, 0.0)
            assert abs(above - below) <= 1e-12 * F


EXTREMES = {"deep_itm_call": 1e-6, "deep_otm_call": 1e6}


@pytest.mark.parametrize("k_over_f", EXTREMES.values(), ids=EXTREMES.keys())
@pytest.mark.parametrize("F", [1.0, 100.0, 65_000.0, 1e6])
@pytest.mark.parametrize("T", [1 / 365, 0.25, 5.0])
@pytest.mark.parametrize("sigma", [0.01, 0.6, 3.0])
def test_deep_itm_otm_finite_and_put_call_parity(F, k_over_f, T, sigma):
    K = F * k_over_f
    c = black76_price(F, K, T, sigma, True, 0.0)
    p = black76_price(F, K, T, sigma, False, 0.0)
    assert math.isfinite(c) and math.isfinite(p)
    assert c >= 0.0 and p >= 0.0
    assert abs((c - p) - (F - K)) <= 1e-12 * max(F, K), (c, p, c - p, F - K)
    for call in (True, False):
        greeks = black76_greeks(F, K, T, sigma, call, 0.0)
        assert all(math.isfinite(g) for g in greeks), greeks
        assert greeks[0] >= 0.0 and greeks[2] >= 0.0 and greeks[3] >= 0.0
    for greeks_call, greeks_put in [(black76_greeks(F, K, T, sigma, True, 0.0),
                                     black76_greeks(F, K, T, sigma, False, 0.0))]:
        # parity for the Greeks: delta_c - delta_p = 1, gamma and vega equal
        assert greeks_call[1] - greeks_put[1] == pytest.approx(1.0, abs=1e-12)
        assert greeks_call[2] == greeks_put[2] and greeks_call[3] == greeks_put[3]


@given(contracts, st.one_of(st.just(0.0), rates))
def test_put_call_parity(contract, rate):
    F, K, T, sigma, _ = contract
    c = black76_price(F, K, T, sigma, True, rate)
    p = black76_price(F, K, T, sigma, False, rate)
    assert abs((c - p) - math.exp(-rate * T) * (F - K)) <= 1e-12 * max(F, K)


def test_no_nan_anywhere_on_an_extreme_grid():
    Fs = [1.0, 1e3, 1e6]
    ratios = [1e-6, 1e-3, 0.5, 1.0, 2.0, 1e3, 1e6]
    Ts = [-1.0, 0.0, 1e-12, 1e-8, 1 / 365, 1.0, 5.0, 50.0]
    sigmas = [0.0, 1e-14, 1e-6, 0.01, 0.6, 3.0, 10.0]
    grid = np.array([(f, f * r, t, s, c) for f in Fs for r in ratios for t in Ts
                     for s in sigmas for c in (0, 1)], dtype=np.float64)
    F, K, T, sigma = (np.ascontiguousarray(grid[:, j]) for j in range(4))
    is_call = np.ascontiguousarray(grid[:, 4].astype(np.int64))
    for rate in (0.0, 0.1):
        prices = black76_price_array(F, K, T, sigma, is_call, rate)
        greeks = black76_greeks_array(F, K, T, sigma, is_call, rate)
        assert np.isfinite(prices).all()
        assert np.isfinite(greeks).all(), grid[~np.isfinite(greeks).all(axis=0)][:5]
        assert (prices >= 0.0).all()
        assert (greeks[2] >= 0.0).all() and (greeks[3] >= 0.0).all()
        # and the oracle agrees everywhere on this grid too
        want = oracles.black76_greeks_array(F, K, T, sigma, is_call, rate)
        assert np.isfinite(want).all()
        assert np.all(np.abs(prices - want[0]) <= 1e-12 * (np.abs(want[0]) + np.maximum(F, K)))

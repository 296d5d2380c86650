"""Every kernel in :mod:`pmrisk.kernel` against its plain-numpy twin in :mod:`oracles`.

Books are random (a seeded numpy generator whose seed and sizes hypothesis draws, so failures
shrink to a small book), over mixes of spot/perpetual/future/option, linear/inverse, and over
padded scenario sets of several underlyings with different lengths.  Explicit cases cover
empty inputs, a single position, ties, capped gains and the extended-table dampener.

Tolerances: ``rtol = 1e-12`` plus ``atol = 1e-12 x`` the natural magnitude of each cell (an
option cell is a difference of terms of order ``c*max(F, K)``; a risk vector cell a sum of
``|q x cell|``), never a bare absolute number.  Hypothesis profiles come from
``tests/conftest.py``.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from pmrisk import kernel as K
from pmrisk.kernel import scenarios as S
from pmrisk.kernel.aggregate import standalone_worst
from pmrisk.kernel.instruments import CALL, INVERSE, LINEAR, OPTION, SPOT
from pmrisk.kernel.volshock import shocked_vols

RTOL = 1e-12

# -- scenario sets -------------------------------------------------------------------------------

SETS = {
    "grid+extended": S.concat(S.grid(0.16, 4), S.extended(0.16, 1.0, 1e5)),
    "span16": S.span16(0.1, 3.0, 0.33),
    # explicit vol factors (code 3), one of them small enough to hit the intrinsic branch
    "custom": S.custom(
        price_shock=np.array([-0.5, -0.2, 0.0, 0.0, 0.1, 0.35, 1.5]),
        vol_code=np.array([3, 3, 3, 1, 0, 3, 2]),
        vol_factor=np.array([1.5, 0.5, 1e-13, 1.0, 1.0, 2.0, 1.0]),
        loss_weight=np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0]),
        gain_weight=np.array([1.0, 0.5, 1.0, 1.0, 1.0, 0.0, 1.0]),
        table=np.zeros(7, dtype=np.int64)),
    "grid capped": S.grid(0.25, 5, gain_weight=0.6, gain_cap_usd=2e7),
}
PADDINGS = {
    "three underlyings": ["grid+extended", "span16", "custom"],
    "four underlyings": ["custom", "grid capped", "grid+extended", "span16"],
    "one underlying": ["grid+extended"],
    "short first": ["custom", "grid+extended"],
}


def padded(names):
    return S.pad([SETS[n] for n in names])


# -- random books --------------------------------------------------------------------------------

def random_instruments(rng, n_instr, n_und, rate=0.0):
    """Instrument arrays as the bindings build them (codes int64, amounts float64)."""
    und = rng.integers(0, n_und, n_instr) if n_und else np.zeros(n_instr, dtype=np.int64)
    und_px = 10.0 ** rng.uniform(-1.0, 5.0, max(n_und, 1))
    kind = rng.integers(0, 4, n_instr)
    settlement = np.where(kind == SPOT, LINEAR, rng.integers(0, 2, n_instr))
    option = kind == OPTION
    contract_size = rng.choice([1.0, 10.0, 100.0, 0.1, 0.001], n_instr)
    mark = und_px[und] * np.exp(rng.normal(0.0, 0.01, n_instr))
    forward = und_px[und] * np.exp(rng.normal(0.0, 0.01, n_instr))
    strike = np.where(option, forward * np.exp(rng.uniform(-1.5, 1.5, n_instr)), 1.0)
    is_call = np.where(option, rng.integers(0, 2, n_instr), CALL)
    # years to expiry: mostly ordinary, some expiring inside the horizon, some at 0
    t_any = np.select([rng.random(n_instr) < 0.1, rng.random(n_instr) < 0.1],
                      [0.0, rng.uniform(0.0, 1.0 / 365.0, n_instr)],
                      rng.uniform(1.0 / 365.0, 2.0, n_instr))
    t_now = np.where(option, t_any, 0.0)
    horizon = rng.choice([0.0, 1.0], n_instr) / 365.0
    t_scen = np.maximum(t_now - horizon, 0.0)
    sig_mark = np.where(option, rng.uniform(0.05, 2.0, n_instr), 0.0)
    absolute = rng.random(n_instr) < 0.3
    same, up, down = shocked_vols(sig_mark, t_now * 365.0, 0.25, 0.5, 0.25, 0.3, 0.13, 0.5,
                                  absolute, 0.04)
    c = np.ascontiguousarray
    return dict(
        kind=c(kind, dtype=np.int64), settlement=c(settlement, dtype=np.int64),
        contract_size=c(contract_size), mark=c(mark), forward=c(forward), strike=c(strike),
        is_call=c(is_call, dtype=np.int64), t_now=c(t_now), t_scen=c(t_scen),
        sig_mark=c(sig_mark), sig_up=c(up), sig_same=c(same), sig_down=c(down),
        und=c(und, dtype=np.int64), rate=float(rate))


def pnl_args(instr, scen):
    """Arguments of ``instrument_pnl`` in order."""
    return (instr["kind"], instr["settlement"], instr["contract_size"], instr["mark"],
            instr["forward"], instr["strike"], instr["is_call"], instr["t_now"],
            instr["t_scen"], instr["sig_mark"], instr["sig_up"], instr["sig_same"],
            instr["sig_down"], instr["und"], instr["rate"], scen.n_scen, scen.price_shock,
            scen.log1p_shock, scen.vol_code, scen.vol_factor, scen.pnl_scale)


def greeks_args(instr):
    return (instr["kind"], instr["settlement"], instr["contract_size"], instr["mark"],
            instr["forward"], instr["strike"], instr["is_call"], instr["t_now"],
            instr["sig_mark"], instr["rate"])


def pnl_magnitude(instr, scen):
    """Natural magnitude of each instrument_pnl cell (what rounding errors scale with)."""
    u = instr["und"]
    s = scen.price_shock[u]
    scale = np.abs(scen.pnl_scale[u])
    F = instr["forward"][:, None]
    Fs = F * (1.0 + s)
    Kk = instr["strike"][:, None]
    M = instr["mark"][:, None]
    inverse = (instr["settlement"] == INVERSE)[:, None]
    option = (instr["kind"] == OPTION)[:, None]
    opt = np.where(inverse, np.maximum(Fs, Kk) / Fs + np.maximum(F, Kk) / F,
                   np.maximum(Fs, Kk) + np.maximum(F, Kk))
    fut = np.where(inverse, 1.0 / M, M)
    return instr["contract_size"][:, None] * scale * np.where(option, opt, fut)


def assert_close(actual, expected, magnitude, rtol=RTOL, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (what, actual.dtype, expected.dtype)
    err = np.abs(actual - expected)
    ok = err <= rtol * (np.abs(expected) + magnitude)
    if not ok.all():
        idx = np.argwhere(~ok)[:5]
        rows = [(tuple(i), float(actual[tuple(i)]), float(expected[tuple(i)])) for i in idx]
        raise AssertionError(f"{what}: {int((~ok).sum())} cells differ, first: {rows}")


def random_positions(rng, n_pos, n_instr, instr_und, unit_und_choices):
    """Positions over random units; each position's unit is one of its underlying's units."""
    pos_instr = rng.integers(0, n_instr, n_pos) if n_instr else np.zeros(0, dtype=np.int64)
    quantity = rng.normal(0.0, 10.0, n_pos) * rng.choice([1.0, 1e3, 1e-3], n_pos)
    quantity[rng.random(n_pos) < 0.1] = 0.0
    pos_unit = np.array([rng.choice(unit_und_choices[instr_und[i]]) for i in pos_instr],
                        dtype=np.int64)
    return (np.ascontiguousarray(pos_unit, dtype=np.int64),
            np.ascontiguousarray(pos_instr, dtype=np.int64), np.ascontiguousarray(quantity))


def random_units(rng, n_und, n_units):
    """``unit_und`` (each underlying gets at least one unit when possible), ``unit_px``, and
    for each underlying the list of its units."""
    unit_und = np.concatenate([np.arange(min(n_und, n_units)),
                               rng.integers(0, n_und, max(n_units - n_und, 0))])
    unit_und = rng.permutation(unit_und.astype(np.int64))
    unit_px = np.where(rng.random(n_units) < 0.5, 1.0, 10.0 ** rng.uniform(0.0, 5.0, n_units))
    choices = {k: np.flatnonzero(unit_und == k) for k in range(n_und)}
    return (np.ascontiguousarray(unit_und, dtype=np.int64), np.ascontiguousarray(unit_px),
            choices)


def scen_weights(scen):
    return (scen.n_scen, scen.loss_weight, scen.gain_weight, scen.gain_cap_usd,
            scen.dampener_usd, scen.vol_code)


# -- instrument_pnl ------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", PADDINGS.values(), ids=PADDINGS.keys())
@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 60),
       rate=st.sampled_from([0.0, 0.05]))
def test_instrument_pnl_matches_oracle(padding, seed, n_instr, rate):
    rng = np.random.default_rng(seed)
    scen = padded(padding)
    instr = random_instruments(rng, n_instr, len(padding), rate)
    got = K.instrument_pnl(*pnl_args(instr, scen))
    want = oracles.instrument_pnl(*pnl_args(instr, scen))
    assert_close(got, want, pnl_magnitude(instr, scen), what="instrument_pnl")


@pytest.mark.parametrize("n_instr", [0, 1, 2, 1000])
def test_instrument_pnl_sizes(n_instr):
    rng = np.random.default_rng(n_instr)
    scen = padded(PADDINGS["three underlyings"])
    instr = random_instruments(rng, n_instr, 3)
    got = K.instrument_pnl(*pnl_args(instr, scen))
    assert got.shape == (n_instr, scen.price_shock.shape[1])
    assert np.isfinite(got).all()
    assert_close(got, oracles.instrument_pnl(*pnl_args(instr, scen)),
                 pnl_magnitude(instr, scen), what="instrument_pnl")


def test_instrument_pnl_padding_cells_are_zero():
    rng = np.random.default_rng(7)
    scen = padded(PADDINGS["three underlyings"])
    instr = random_instruments(rng, 200, 3)
    got = K.instrument_pnl(*pnl_args(instr, scen))
    for i, u in enumerate(instr["und"]):
        assert (got[i, scen.n_scen[u]:] == 0.0).all()


def test_instrument_pnl_with_no_underlyings():
    scen = S.pad([])
    instr = random_instruments(np.random.default_rng(0), 0, 0)
    got = K.instrument_pnl(*pnl_args(instr, scen))
    assert got.shape == (0, S.VECTOR)     # one whole vector of padding


def test_instrument_pnl_futures_closed_form():
    """One linear and one inverse perpetual on the Deribit grid: the SPEC §2 formulas."""
    scen = padded(["grid+extended"])
    n = scen.n_scen[0]
    s = scen.price_shock[0, :n]
    scale = scen.pnl_scale[0, :n]
    instr = random_instruments(np.random.default_rng(0), 2, 1)
    instr.update(kind=np.array([1, 1], dtype=np.int64),
                 settlement=np.array([LINEAR, INVERSE], dtype=np.int64),
                 contract_size=np.array([0.001, 10.0]), mark=np.array([65_000.0, 65_000.0]))
    got = K.instrument_pnl(*pnl_args(instr, scen))
    assert (got[:, n:] == 0.0).all()        # the padding to whole vectors
    got = got[:, :n]
    np.testing.assert_allclose(got[0], 0.001 * 65_000.0 * s * scale, rtol=1e-15)
    np.testing.assert_allclose(got[1], 10.0 / 65_000.0 * s / (1.0 + s) * scale, rtol=1e-13,
                               atol=1e-20)
    # SPEC §3: for an inverse future the extended table equals the grid's edge
    ext = scen.n_scen[0] - len(S.EXTENDED_MOVES)
    moves = np.array(S.EXTENDED_MOVES)
    edge_down, edge_up = got[1, 0], got[1, 3 * 8]
    np.testing.assert_allclose(got[1, ext:][moves < 0], edge_down, rtol=1e-12)
    np.testing.assert_allclose(got[1, ext:][moves > 0], edge_up, rtol=1e-12)


def test_instrument_pnl_unshocked_scenario_is_exactly_zero():
    """SPEC §2: 'the unshocked scenario is exactly 0' when the scenario's vol state and time
    equal the marks' (no floor bites, no horizon)."""
    rng = np.random.default_rng(11)
    n = 2000
    scen = padded(["grid+extended"])
    instr = random_instruments(rng, n, 1)
    instr["kind"][:] = OPTION
    instr["t_now"] = rng.uniform(0.01, 2.0, n)
    instr["t_scen"] = instr["t_now"].copy()
    instr["sig_mark"] = rng.uniform(0.3, 1.5, n)
    instr["sig_same"] = instr["sig_mark"].copy()
    instr["strike"] = instr["forward"] * np.exp(rng.uniform(-1.0, 1.0, n))
    got = K.instrument_pnl(*pnl_args(instr, scen))
    n_s = scen.n_scen[0]     # (the padding cells are unshocked too)
    unshocked = np.flatnonzero((scen.price_shock[0, :n_s] == 0.0) & (scen.vol_code[0, :n_s] == 1))
    assert len(unshocked) == 1
    cell = got[:, unshocked[0]]
    nonzero = np.flatnonzero(cell != 0.0)
    notional = instr["contract_size"] * np.maximum(instr["forward"], instr["strike"])
    assert len(nonzero) == 0, (
        f"{len(nonzero)} of {n} options have a nonzero unshocked cell, e.g. "
        f"{cell[nonzero[:3]].tolist()} (max |cell|/(c*max(F,K)) = "
        f"{np.max(np.abs(cell) / notional):.2e})")


# -- instrument_greeks ---------------------------------------------------------------------------

def greeks_magnitude(instr):
    c = instr["contract_size"]
    F = instr["forward"]
    Kk = instr["strike"]
    M = instr["mark"]
    T = np.maximum(instr["t_now"], 0.0)
    sig = instr["sig_mark"]
    sd = np.maximum(sig * np.sqrt(T), 1e-300)
    big = np.maximum(F, Kk)
    inverse = instr["settlement"] == INVERSE
    option = instr["kind"] == OPTION
    coin = np.where(inverse, 1.0 / F, 1.0)
    value = c * big * coin
    delta = np.where(option, c * (1.0 + np.where(inverse, big / F, 0.0)),
                     np.where(inverse, c / M, c))
    gamma = c / (F * sd)
    vega = c * F * np.sqrt(T) * coin
    theta = c * (F * sig / np.sqrt(np.where(T > 0, T, 1.0)) + instr["rate"] * big) * coin / 365
    return np.stack([value, delta, gamma, vega, theta])


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 60),
       rate=st.sampled_from([0.0, 0.05]))
def test_instrument_greeks_matches_oracle(seed, n_instr, rate):
    rng = np.random.default_rng(seed)
    instr = random_instruments(rng, n_instr, 3, rate)
    got = K.instrument_greeks(*greeks_args(instr))
    want = oracles.instrument_greeks(*greeks_args(instr))
    assert_close(got, want, greeks_magnitude(instr), what="instrument_greeks")


@pytest.mark.parametrize("n_instr", [0, 1, 1000])
def test_instrument_greeks_sizes(n_instr):
    instr = random_instruments(np.random.default_rng(n_instr), n_instr, 2)
    got = K.instrument_greeks(*greeks_args(instr))
    assert got.shape == (5, n_instr)
    assert np.isfinite(got).all()
    assert_close(got, oracles.instrument_greeks(*greeks_args(instr)),
                 greeks_magnitude(instr), what="instrument_greeks")


def test_instrument_greeks_inverse_option_net_delta():
    """SPEC §2: inverse option delta is c*(N(d1) - V/F) (call), c*(N(d1) - 1 - V/F) (put)."""
    F, Kk, T, sig, c = 65_000.0, 70_000.0, 0.1, 0.6, 1.0
    N = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
    d1 = (math.log(F / Kk) + 0.5 * sig * sig * T) / (sig * math.sqrt(T))
    d2 = d1 - sig * math.sqrt(T)
    call = F * N(d1) - Kk * N(d2)
    put = Kk * N(-d2) - F * N(-d1)
    one = lambda x: np.array([x, x])  # noqa: E731
    got = K.instrument_greeks(np.array([OPTION, OPTION], dtype=np.int64),
                              np.array([INVERSE, INVERSE], dtype=np.int64), one(c), one(F),
                              one(F), one(Kk), np.array([1, 0], dtype=np.int64), one(T),
                              one(sig), 0.0)
    np.testing.assert_allclose(got[0], [call / F, put / F], rtol=1e-13)
    np.testing.assert_allclose(got[1], [N(d1) - call / F, N(d1) - 1.0 - put / F], rtol=1e-12)


# -- unit_risk_vectors ---------------------------------------------------------------------------

def book(rng, n_instr, n_pos, n_units, padding=PADDINGS["three underlyings"]):
    """A random book: instruments revalued on ``padding``'s scenario sets, units, and
    positions whose unit is always one of its instrument's underlying's units."""
    scen = padded(padding)
    unit_und, unit_px, choices = random_units(rng, len(padding), n_units)
    instr = random_instruments(rng, n_instr, len(padding))
    if n_units:         # instruments only on underlyings that have a unit
        instr["und"] = np.ascontiguousarray(rng.choice(np.unique(unit_und), n_instr),
                                            dtype=np.int64)
    instr_pnl = K.instrument_pnl(*pnl_args(instr, scen))
    usable = n_pos if (n_instr and n_units) else 0
    pos_unit, pos_instr, quantity = random_positions(rng, usable, n_instr, instr["und"],
                                                     choices)
    return dict(scen=scen, instr=instr, instr_pnl=instr_pnl, unit_und=unit_und,
                unit_px=unit_px, choices=choices, instr_und=instr["und"], pos_unit=pos_unit,
                pos_instr=pos_instr, quantity=quantity, n_units=n_units)


def vectors_magnitude(b):
    mag = np.zeros((b["n_units"], b["instr_pnl"].shape[1]))
    np.add.at(mag, b["pos_unit"], np.abs(b["quantity"][:, None] * b["instr_pnl"][b["pos_instr"]]))
    return mag


def _check_risk_vectors(b):
    args = (b["pos_unit"], b["pos_instr"], b["quantity"], b["instr_pnl"], b["n_units"])
    got = K.unit_risk_vectors(*args)
    want = oracles.unit_risk_vectors(*args)
    assert_close(got, want, vectors_magnitude(b), what="unit_risk_vectors")


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 30),
       n_pos=st.integers(0, 80), n_units=st.integers(0, 6))
def test_unit_risk_vectors_matches_oracle(seed, n_instr, n_pos, n_units):
    _check_risk_vectors(book(np.random.default_rng(seed), n_instr, n_pos, n_units))


@pytest.mark.parametrize("n_instr, n_pos, n_units", [
    (0, 0, 0), (0, 0, 3), (5, 0, 2), (1, 1, 1), (3, 1, 4), (200, 5000, 9)])
def test_unit_risk_vectors_sizes(n_instr, n_pos, n_units):
    b = book(np.random.default_rng(n_pos), n_instr, n_pos, n_units)
    _check_risk_vectors(b)
    got = K.unit_risk_vectors(b["pos_unit"], b["pos_instr"], b["quantity"], b["instr_pnl"],
                              n_units)
    assert got.shape == (n_units, b["instr_pnl"].shape[1])


def test_unit_risk_vectors_is_linear_and_permutation_free():
    rng = np.random.default_rng(5)
    b = book(rng, 40, 300, 5)
    args = lambda q, perm=slice(None): (b["pos_unit"][perm], b["pos_instr"][perm],  # noqa
                                        np.ascontiguousarray(q[perm]), b["instr_pnl"], 5)
    base = K.unit_risk_vectors(*args(b["quantity"]))
    mag = vectors_magnitude(b)
    assert_close(K.unit_risk_vectors(*args(-b["quantity"])), -base, mag, what="sign flip")
    assert_close(K.unit_risk_vectors(*args(2.5 * b["quantity"])), 2.5 * base, 2.5 * mag,
                 what="scaling")
    perm = rng.permutation(300)
    assert_close(K.unit_risk_vectors(*args(b["quantity"], perm)), base, mag, what="permutation")


# -- weighted_worst ------------------------------------------------------------------------------

def random_vectors(rng, n_units, width, unit_px):
    """Risk vectors with many exact ties (values from a small set) and continuous parts;
    magnitudes comparable to the dampener and gain caps in coin."""
    mag = (10.0 ** rng.uniform(-1.0, 3.0, n_units)) * np.where(unit_px > 1.0, 1.0, 5e4)
    discrete = rng.choice([-3.0, -1.0, -1.0, 0.0, 0.0, 1.0, 2.0, 400.0], (n_units, width))
    continuous = rng.normal(0.0, 1.0, (n_units, width))
    use = rng.random(n_units) < 0.5
    return np.ascontiguousarray(np.where(use[:, None], discrete, continuous) * mag[:, None])


def ww_args(vectors, unit_und, unit_px, scen):
    return (vectors, unit_und, unit_px) + scen_weights(scen)


def assert_weighted_worst_matches(vectors, unit_und, unit_px, scen):
    got = K.weighted_worst(*ww_args(vectors, unit_und, unit_px, scen))
    want = oracles.weighted_worst(*ww_args(vectors, unit_und, unit_px, scen))
    mag = np.abs(vectors) + (scen.dampener_usd[unit_und] / unit_px[:, None]
                             if len(unit_und) else 0.0)
    assert_close(got[0], want[0], mag, what="weighted")
    assert_close(got[1], want[1], np.abs(vectors).max(axis=1, initial=0.0), what="worst")
    assert got[2].dtype == np.int64
    np.testing.assert_array_equal(got[2], want[2], err_msg="binding")
    return got


@pytest.mark.parametrize("padding", PADDINGS.values(), ids=PADDINGS.keys())
@given(seed=st.integers(0, 2**32 - 1), n_units=st.integers(0, 12))
def test_weighted_worst_matches_oracle(padding, seed, n_units):
    rng = np.random.default_rng(seed)
    scen = padded(padding)
    unit_und, unit_px, _ = random_units(rng, len(padding), n_units)
    vectors = random_vectors(rng, n_units, scen.price_shock.shape[1], unit_px)
    assert_weighted_worst_matches(vectors, unit_und, unit_px, scen)


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(1, 30), n_pos=st.integers(1, 60),
       n_units=st.integers(1, 5))
def test_weighted_worst_matches_oracle_on_revalued_books(seed, n_instr, n_pos, n_units):
    b = book(np.random.default_rng(seed), n_instr, n_pos, n_units)
    vectors = K.unit_risk_vectors(b["pos_unit"], b["pos_instr"], b["quantity"],
                                  b["instr_pnl"], n_units)
    assert_weighted_worst_matches(vectors, b["unit_und"], b["unit_px"], b["scen"])


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(1, 30), n_pos=st.integers(0, 60),
       n_units=st.integers(1, 5))
def test_standalone_worst_matches_oracle(seed, n_instr, n_pos, n_units):
    """Each position alone (excluded instruments): the kernel, without a positions x
    scenarios matrix, equals weighing each position's own risk vector."""
    b = book(np.random.default_rng(seed), n_instr, n_pos, n_units)
    und_row = b["unit_und"][b["pos_unit"]]
    px = b["unit_px"][b["pos_unit"]]
    args = (b["pos_instr"], b["quantity"], und_row, px, b["instr_pnl"]) + \
        scen_weights(b["scen"])
    got = standalone_worst(*args)
    want = oracles.standalone_worst(*args)
    mag = np.abs(b["quantity"][:, None] * b["instr_pnl"][b["pos_instr"]]).max(axis=1,
                                                                              initial=0.0)
    assert_close(got, want, mag, what="standalone worst")


def _one_unit(scenario_set, cells, px=1.0):
    scen = S.pad([scenario_set])
    v = np.zeros((1, scen.price_shock.shape[1]))
    for s, x in cells.items():
        v[0, s] = x
    return v, np.zeros(1, dtype=np.int64), np.array([px]), scen


# grid(0.16, 4): 27 cells, vol codes up/same/down repeating, so "same" cells are 1, 4, 7, ...
TIES = {
    "all zero -> first same cell": ({}, 0.0, 1),
    "up before same -> same": ({0: -5.0, 4: -5.0, 7: -5.0}, 5.0, 4),
    "no same among ties -> lowest": ({0: -5.0, 2: -5.0, 3: -5.0}, 5.0, 0),
    "lower up vs later same -> same": ({9: -5.0, 10: -5.0}, 5.0, 10),
    "same then later up -> same": ({10: -5.0, 12: -5.0}, 5.0, 10),
    "strict minimum wins": ({4: -5.0, 20: -5.0000001}, 5.0000001, 20),
    "all equal losses -> first same": ({s: -1.0 for s in range(27)}, 1.0, 1),
    "only gains -> smallest gain": ({s: 3.0 for s in range(27)} | {5: 2.0}, 0.0, 5),
}


@pytest.mark.parametrize("cells, worst, binding", TIES.values(), ids=TIES.keys())
def test_weighted_worst_ties(cells, worst, binding):
    v, uu, px, scen = _one_unit(S.grid(0.16, 4), cells)
    got = assert_weighted_worst_matches(v, uu, px, scen)
    assert got[1][0] == worst
    assert got[2][0] == binding


def test_weighted_worst_gains_capped():
    # gain weight 0.6, cap 2e7 USD; a BTC-settled unit at 50 000 USD: cap = 400 coin
    scen = padded(["grid capped"])
    width = scen.price_shock.shape[1]
    v = np.full((2, width), 1000.0)
    v[1, :] = 100.0
    v[1, 7] = -30.0
    uu = np.zeros(2, dtype=np.int64)
    px = np.array([50_000.0, 50_000.0])
    weighted, worst, binding = assert_weighted_worst_matches(v, uu, px, scen)
    assert (weighted[0, :scen.n_scen[0]] == 400.0).all()    # min(0.6*1000, 400)
    assert weighted[1, 0] == pytest.approx(60.0) and weighted[1, 7] == -30.0
    assert worst.tolist() == [0.0, 30.0] and binding[1] == 7


def test_weighted_worst_extended_dampener():
    """Extended cells: gains count 0; a loss x becomes x + min(d, |x|) (SPEC §3)."""
    scen = padded(["grid+extended"])
    ext = 27
    px = 50_000.0
    d_coin = scen.dampener_usd[0, ext:scen.n_scen[0]] / px
    moves = np.array(S.EXTENDED_MOVES)
    # -0.66: d = (0.66/0.16 - 1)*1e5/0.84 USD ~ 7.4 coin; +5: d = (5/0.16-1)*1e5/1.16 ~ 52 coin
    assert d_coin[0] > 0 and (d_coin[moves > 0.16] > 0).all()
    cells = {ext + 0: -0.5 * d_coin[0],     # fully absorbed -> 0
             ext + 1: -3.0 * d_coin[1],     # reduced by d
             ext + 7: -2.0 * d_coin[7],
             ext + 3: 10.0}                 # a gain counts 0 on the extended table
    v, uu, pxa, _ = _one_unit(SETS["grid+extended"], cells, px)
    weighted, worst, binding = assert_weighted_worst_matches(v, uu, pxa, scen)
    assert weighted[0, ext + 0] == 0.0
    assert weighted[0, ext + 1] == pytest.approx(-2.0 * d_coin[1], rel=1e-15)
    assert weighted[0, ext + 7] == pytest.approx(-d_coin[7], rel=1e-15)
    assert weighted[0, ext + 3] == 0.0
    expected = max(2.0 * d_coin[1], d_coin[7])
    assert worst[0] == pytest.approx(expected, rel=1e-15)
    assert binding[0] == (ext + 1 if 2.0 * d_coin[1] > d_coin[7] else ext + 7)


def test_weighted_worst_extreme_cover_fraction():
    scen = padded(["span16"])
    v = np.zeros((1, 16))
    v[0, 14] = -10.0      # +3 ranges, covered 33 %
    v[0, 15] = -12.0
    v[0, 12] = -3.0
    weighted, worst, binding = assert_weighted_worst_matches(
        v, np.zeros(1, dtype=np.int64), np.ones(1), scen)
    assert weighted[0, 15] == pytest.approx(-3.96) and worst[0] == pytest.approx(3.96)
    assert binding[0] == 15


def test_weighted_worst_unit_without_scenarios():
    scen = S.pad([S.grid(0.16, 4), S.custom(np.zeros(0), np.zeros(0, dtype=np.int64),
                                            np.zeros(0), np.zeros(0), np.zeros(0),
                                            np.zeros(0, dtype=np.int64))])
    v = np.full((2, scen.price_shock.shape[1]), -1.0)     # 27 cells and the padding
    v[1] = 0.0
    got = assert_weighted_worst_matches(v, np.array([0, 1], dtype=np.int64), np.ones(2), scen)
    assert got[1].tolist() == [1.0, 0.0]


def test_weighted_worst_does_not_hide_nan():
    """A NaN cell must stay visible (kernel/_config.py: 'risk code must see a NaN if one ever
    appears'); it must not be weighted into the gain cap and skipped by the worst case."""
    v, uu, px, scen = _one_unit(S.grid(0.16, 4), {0: -1.0, 5: np.nan})
    weighted, worst, _ = K.weighted_worst(*ww_args(v, uu, px, scen))
    assert np.isnan(weighted[0, 5]), f"NaN cell weighted to {weighted[0, 5]}"
    assert np.isnan(worst[0]), f"worst case {worst[0]} ignores a NaN cell"


# -- order_margin --------------------------------------------------------------------------------

def order_args(b, order_unit, order_instr, order_qty, vectors, base_worst):
    return (order_unit, order_instr, order_qty, vectors, b["instr_pnl"], b["unit_und"],
            b["unit_px"], base_worst) + scen_weights(b["scen"])


def _check_order_margin(b, n_orders, rng):
    vectors = K.unit_risk_vectors(b["pos_unit"], b["pos_instr"], b["quantity"],
                                  b["instr_pnl"], b["n_units"])
    _, base_worst, _ = K.weighted_worst(*ww_args(vectors, b["unit_und"], b["unit_px"],
                                                 b["scen"]))
    n_instr = b["instr_pnl"].shape[0]
    if n_instr == 0 or b["n_units"] == 0:
        n_orders = 0
    order_unit, order_instr, order_qty = random_positions(rng, n_orders, n_instr,
                                                          b["instr_und"], b["choices"])
    # some orders exactly offset or double an existing position
    if n_orders and len(b["quantity"]):
        k = rng.integers(0, len(b["quantity"]), n_orders)
        mirror = rng.random(n_orders) < 0.3
        order_unit = np.where(mirror, b["pos_unit"][k], order_unit)
        order_instr = np.where(mirror, b["pos_instr"][k], order_instr)
        order_qty = np.where(mirror, b["quantity"][k] * rng.choice([-1.0, 1.0], n_orders),
                             order_qty)
    args = order_args(b, np.ascontiguousarray(order_unit), np.ascontiguousarray(order_instr),
                      np.ascontiguousarray(order_qty), vectors, base_worst)
    got = K.order_margin(*args)
    want = oracles.order_margin(*args)
    mag = (np.abs(vectors).max(axis=1, initial=0.0)[order_unit]
           + np.abs(order_qty * np.abs(b["instr_pnl"]).max(axis=1, initial=0.0)[order_instr])
           if n_orders else np.zeros(0))
    assert_close(got, want, mag, what="order_margin")
    assert (got >= 0.0).all()
    return got


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 20), n_pos=st.integers(0, 40),
       n_units=st.integers(0, 5), n_orders=st.integers(0, 30))
def test_order_margin_matches_oracle(seed, n_instr, n_pos, n_units, n_orders):
    rng = np.random.default_rng(seed)
    _check_order_margin(book(rng, n_instr, n_pos, n_units), n_orders, rng)


@pytest.mark.parametrize("n_instr, n_pos, n_units, n_orders", [
    (0, 0, 0, 0), (3, 5, 2, 0), (1, 1, 1, 1), (1, 0, 1, 1), (100, 1000, 6, 500)])
def test_order_margin_sizes(n_instr, n_pos, n_units, n_orders):
    rng = np.random.default_rng(n_orders)
    got = _check_order_margin(book(rng, n_instr, n_pos, n_units), n_orders, rng)
    assert got.shape == (n_orders if n_instr and n_units else 0,)


def test_order_margin_hedge_and_double():
    """A closing order adds nothing; an order doubling a lone position adds its worst case."""
    scen = S.pad([S.grid(0.16, 4)])
    instr_pnl = np.ascontiguousarray(np.linspace(-2.0, 2.0, 27)[None, :])  # long-ish row
    vectors = 3.0 * instr_pnl
    uu = np.zeros(1, dtype=np.int64)
    px = np.ones(1)
    _, base, _ = K.weighted_worst(*ww_args(vectors, uu, px, scen))
    assert base[0] == 6.0
    z = np.zeros(2, dtype=np.int64)
    args = (z, z, np.array([-3.0, 3.0]), vectors, instr_pnl, uu, px, base) + scen_weights(scen)
    got = K.order_margin(*args)
    np.testing.assert_array_equal(got, oracles.order_margin(*args))
    assert got.tolist() == [0.0, 6.0]


# -- one compiled signature per kernel after calls through pmrisk.margin ------------------------

_SIGNATURE_SCRIPT = textwrap.dedent("""
    import json, sys
    import pmrisk
    from pmrisk import kernel as K
    from pmrisk.kernel import aggregate, assemble, black76, layout, revalue

    VT = "2024-06-17T10:22:20Z"
    instruments = {
        "symbol": ["BTC-PERPETUAL", "BTC-28JUN24", "BTC-28JUN24-70000-C", "BTC-28JUN24-60000-P",
                   "BTC_USDC-PERPETUAL", "BTC_USDC-28JUN24-70000-C", "ETH-PERPETUAL"],
        "underlying": ["BTC", "BTC", "BTC", "BTC", "BTC", "BTC", "ETH"],
        "kind": ["perpetual", "future", "option", "option", "perpetual", "option", "perpetual"],
        "settlement": ["inverse", "inverse", "inverse", "inverse", "linear", "linear",
                       "inverse"],
        "contract_size": [10.0, 10.0, 1.0, 1.0, 0.001, 0.01, 1.0],
        "expiry": [None, "2024-06-28T08:00:00Z", "2024-06-28T08:00:00Z",
                   "2024-06-28T08:00:00Z", None, "2024-06-28T08:00:00Z", None],
        "strike": [None, None, 70000.0, 60000.0, None, 70000.0, None],
        "option_type": [None, None, "call", "put", None, "call", None],
    }
    market = {
        "symbol": instruments["symbol"],
        "mark_price": [65910.57, 67371.75, 0.012, 0.01, 65900.0, 800.0, 3500.0],
        "mark_iv": [None, None, 0.55, 0.6, None, 0.55, None],
        "underlying_price": [None, None, 66500.0, 66500.0, None, 66500.0, None],
    }
    index = {"underlying": ["BTC", "ETH"], "index_price": [65666.19, 3490.0]}
    positions = {
        "account": ["a", "a", "a", "a", "b", "b", "b"],
        "symbol": ["BTC-PERPETUAL", "BTC-28JUN24-70000-C", "BTC-28JUN24-60000-P",
                   "BTC_USDC-PERPETUAL", "BTC-28JUN24", "BTC_USDC-28JUN24-70000-C",
                   "ETH-PERPETUAL"],
        "quantity": [2000.0, -5.0, 3.0, 10.0, -400.0, 7.0, 1000.0],
    }
    orders = {"account": ["a", "b"], "order_id": ["o1", "o2"],
              "symbol": ["BTC-28JUN24-70000-C", "ETH-PERPETUAL"],
              "quantity": [-2.0, 500.0], "price": [0.013, 3500.0]}

    KERNELS = {
        # margin() revalues every row and instrument in one pass (instrument_pnl and
        # instrument_greeks alone: the Monitor's moved rows)
        "instrument_pnl_greeks": revalue.instrument_pnl_greeks,
        "assemble.csr": assemble.csr, "layout.expiry_groups": layout.expiry_groups,
        "assemble.position_expiry_keys": assemble.position_expiry_keys,
        "assemble.unit_figures": assemble.unit_figures,
        "assemble.unit_margins": assemble.unit_margins,
        "assemble.account_figures": assemble.account_figures,
        "assemble.unit_figures_serial": assemble.unit_figures_serial,
        "assemble.unit_margins_serial": assemble.unit_margins_serial,
        "assemble.account_figures_serial": assemble.account_figures_serial,
        # jitted helpers the kernels call
        # (black76.undiscounted_price is inline="always": inlined IR, no signatures)
        "black76.black76_greeks_at": black76.black76_greeks_at,
        "black76.norm_cdf": black76.norm_cdf, "aggregate.worst_of": aggregate.worst_of,
    }

    def counts():
        return {k: len(f.signatures) for k, f in KERNELS.items()}

    mode = sys.argv[1]
    out = {}
    pmrisk.margin(positions, instruments, market, index, open_orders=orders,
                  model="deribit_pme", valuation_time=VT)
    out["one call"] = counts()
    if mode == "varied":
        import pyarrow as pa
        # the same book as Arrow tables (zero-copy, read-only numpy views), without orders,
        # and under another preset
        pmrisk.margin(pa.table(positions), pa.table(instruments), pa.table(market),
                      pa.table(index), open_orders=pa.table(orders), model="deribit_pme",
                      valuation_time=VT)
        out["arrow tables"] = counts()
        pmrisk.margin(positions, instruments, market, index, model="deribit_pme",
                      valuation_time=VT)
        out["no orders"] = counts()
        pmrisk.margin(pa.table(positions), instruments, market, index, model="span",
                      valuation_time=VT)
        out["span preset"] = counts()
        # positions arriving in two record batches (a chunked column)
        t = pa.table(positions)
        pmrisk.margin(pa.concat_tables([t.slice(0, 3), t.slice(3)]), instruments, market,
                      index, open_orders=orders, model="deribit_pme", valuation_time=VT)
        out["chunked positions"] = counts()
        # an expired instrument, ignored by the model (positions are filtered)
        expired = {k: list(v) for k, v in instruments.items()}
        for k, v in dict(symbol="BTC-14JUN24", underlying="BTC", kind="future",
                         settlement="inverse", contract_size=10.0,
                         expiry="2024-06-14T08:00:00Z", strike=None, option_type=None).items():
            expired[k].append(v)
        mkt = {k: list(v) for k, v in market.items()}
        for k, v in dict(symbol="BTC-14JUN24", mark_price=65000.0, mark_iv=None,
                         underlying_price=None).items():
            mkt[k].append(v)
        pos = {k: list(v) + [x] for (k, v), x in zip(positions.items(),
                                                     ["a", "BTC-14JUN24", 100.0])}
        pmrisk.margin(pos, expired, mkt, index, open_orders=orders,
                      model={"preset": "deribit_pme", "expired_positions": "ignore"},
                      valuation_time=VT)
        out["expired ignored"] = counts()
        # warmup() loads the parallel phase kernels too (a book of PARALLEL_MIN accounts)
        pmrisk.warmup(models=["deribit_pme"])
        out["warmup"] = counts()
    print(json.dumps(out))
""")


def _signature_counts(mode, tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    proc = subprocess.run([sys.executable, "-c", _SIGNATURE_SCRIPT, mode], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["single", "varied"])
def test_one_compiled_signature_per_kernel(mode, tmp_path):
    """In a fresh process (so this test file's own calls do not count), calls through
    ``pmrisk.margin`` compile each kernel exactly once: no silent recompilation for
    read-only vs writeable arrays or optional inputs."""
    stages = _signature_counts(mode, tmp_path)
    # the phase kernels come in a parallel and a serial twin (pmrisk.engine picks by the
    # selection's size): each twin compiles at most once, one of the pair at least once
    pairs = {k: k + "_serial" for k in ("assemble.unit_figures", "assemble.unit_margins",
                                         "assemble.account_figures")}
    twins = set(pairs) | set(pairs.values())
    bad = {stage: {k: n for k, n in c.items()
                   if (n > 1 if k in twins else n != 1)
                   or (k in pairs and c[k] + c[pairs[k]] == 0)}
           for stage, c in stages.items()}
    if "warmup" in stages:
        missing = {k: n for k, n in stages["warmup"].items() if k in twins and n != 1}
        assert not missing, f"phase kernels warmup() leaves uncompiled: {missing}"
    bad = {stage: c for stage, c in bad.items() if c}
    assert not bad, f"kernels with != 1 compiled signature after each stage: {bad}"


# -- instrument_pnl_greeks ---------------------------------------------------------------------

@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 150),
       n_g=st.integers(0, 150), rate=st.sampled_from([0.0, 0.05]))
def test_instrument_pnl_greeks_is_both_kernels(seed, n_instr, n_g, rate):
    """The fused pass gives instrument_pnl's bits on every row and instrument_greeks' bits
    on the first ``n_g`` rows' columns (an option's value at the marks priced once for
    both), and so their twins'."""
    rng = np.random.default_rng(seed)
    scen = padded(["grid+extended", "custom"])
    instr = random_instruments(rng, n_instr, 2, rate)
    n_g = min(n_g, n_instr)
    pnl = np.full((n_instr, scen.price_shock.shape[1]), np.nan)   # every cell written
    greeks = np.full((5, n_g), np.nan)
    K.revalue.instrument_pnl_greeks(*pnl_args(instr, scen), n_g, pnl, greeks)
    want_pnl = K.instrument_pnl(*pnl_args(instr, scen))
    first = [a[:n_g] for a in greeks_args(instr)[:-1]]
    want_greeks = K.instrument_greeks(*first, rate)
    assert pnl.view(np.int64).tolist() == want_pnl.view(np.int64).tolist()
    assert greeks.view(np.int64).tolist() == want_greeks.view(np.int64).tolist()
    o_pnl, o_greeks = oracles.instrument_pnl_greeks(*pnl_args(instr, scen), n_g)
    assert_close(pnl, o_pnl, pnl_magnitude(instr, scen), what="instrument_pnl_greeks pnl")
    g_instr = {k: v[:n_g] if isinstance(v, np.ndarray) else v for k, v in instr.items()}
    assert_close(greeks, o_greeks, greeks_magnitude(g_instr), what="instrument_pnl_greeks")

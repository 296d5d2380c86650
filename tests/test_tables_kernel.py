"""The result tables' column kernels (:mod:`pmrisk.kernel.tables`) against their numpy
twins in ``tests/oracles.py`` on arrays drawn by hypothesis: every value equal to the bit
(NaN and infinities included)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import tables

VALUES = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf]))


def _floats(data, n, elements=VALUES):
    return np.array(data.draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float64)


def _equal(got, want):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # the same bits, so signed zeros agree too
    assert (np.signbit(np.asarray(got, dtype=np.float64))
            == np.signbit(np.asarray(want, dtype=np.float64))).all()


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12))
def test_unit_columns_agree_with_twin(data, n):
    figures = np.array([_floats(data, n) for _ in tables.UNIT_FIGURES]).reshape(
        len(tables.UNIT_FIGURES), n)
    greeks = np.array([_floats(data, n) for _ in tables.UNIT_GREEKS]).reshape(4, n)
    px, ipx = _floats(data, n), _floats(data, n)
    got = tables.unit_columns(figures, greeks, px, ipx)
    assert got.shape == (len(tables.UNIT_COLUMNS), n)
    _equal(got, oracles.unit_columns(figures, greeks, px, ipx))


@settings(deadline=None)
@given(data=st.data(), n_pos=st.integers(0, 30), n_units=st.integers(0, 5),
       n_loan=st.integers(0, 3))
def test_position_columns_agree_with_twin(data, n_pos, n_units, n_loan):
    """Positions, one unallocated row per unit (its margin less its positions' sum, in
    position order) and one row per loan."""
    n_pos = n_pos if n_units else 0
    pos_unit = np.array(data.draw(st.lists(st.integers(0, max(n_units - 1, 0)),
                                           min_size=n_pos, max_size=n_pos)), dtype=np.int64)
    finite = st.floats(-1e6, 1e6)
    args = (pos_unit, _floats(data, n_pos), _floats(data, n_units, finite),
            *[_floats(data, n_pos, finite) for _ in range(9)],
            _floats(data, n_units, finite), _floats(data, n_units, finite),
            _floats(data, n_loan, finite))
    got = tables.position_columns(*args)
    assert got.shape == (len(tables.POSITION_COLUMNS), n_pos + n_units + n_loan)
    _equal(got, oracles.position_columns(*args))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12))
def test_account_columns_agree_with_twin(data, n):
    """Ratio (inf / -inf without margin), available, most withdrawable and band."""
    eq, mm, im, liq = (_floats(data, n) for _ in range(4))
    mm = np.where(data.draw(st.booleans()), np.abs(mm), mm)
    levels = np.array([1.1, 1.05, 1.01, 1.0, 0.75])
    got = tables.account_columns(eq, mm, im, liq, 1.01, levels)
    want = oracles.account_columns(eq, mm, im, liq, 1.01, levels)
    for g, w in zip(got, want):
        _equal(g, w)


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12))
def test_margin_ratios_agree_with_twin(data, n):
    """The one margin ratio (:func:`pmrisk.kernel.tables.ratio_of`), as
    ``pmrisk.results.margin_ratio`` returns it: inf / -inf where MM is not above 0 (NaN
    included), equity / MM elsewhere."""
    from pmrisk.results import margin_ratio
    eq, den = _floats(data, n), _floats(data, n)
    want = oracles.margin_ratios(eq, den)
    _equal(tables.margin_ratios(eq, den), want)
    _equal(margin_ratio(eq, den), want)
    _equal(margin_ratio(eq.reshape(1, n), den.reshape(1, n)), want.reshape(1, n))

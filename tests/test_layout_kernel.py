"""The layout kernels (:mod:`pmrisk.kernel.layout`) against their numpy twins in
``tests/oracles.py`` on arrays drawn by hypothesis: the same rows, and every figure equal
to the bit (the kernels do the twins' scalar arithmetic in the same order)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import assemble
from pmrisk.kernel import layout
from pmrisk.kernel.instruments import OPTION, SPOT

KINDS = st.integers(0, 3)
VOLS = st.sampled_from([0.0, 0.05, 0.3, 0.3000000001, 0.8, 1.5])
QTY = st.sampled_from([-3.0, -1e-9, 0.0, 1e-9, 2.5, -0.0])


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, (bool, np.bool_)):
            assert bool(g) == bool(w)
            continue
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape
        np.testing.assert_array_equal(g.astype(w.dtype) if w.dtype == bool else g, w)


def _ints(data, n, lo, hi):
    return np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                    dtype=np.int64)


def _floats(data, n, elements):
    return np.array(data.draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float64)


@settings(deadline=None)
def _holdings(data, n, n_pos, n_ord):
    """Positions and orders on ``n`` instruments: their instrument rows and quantities."""
    hi = max(n - 1, 0)
    pos_instr = _ints(data, n_pos if n else 0, 0, hi)
    ord_instr = _ints(data, n_ord if n else 0, 0, hi)
    return (pos_instr, _floats(data, len(pos_instr), QTY), ord_instr,
            _floats(data, len(ord_instr), QTY))


@given(data=st.data(), n=st.integers(0, 30), n_pos=st.integers(0, 40),
       n_ord=st.integers(0, 10))
def test_revaluation_rows_agree_with_twin(data, n, n_pos, n_ord):
    """Short options below their floor get a copy; short positions and sell orders on them
    use it, and nothing else does."""
    kind = _ints(data, n, 0, 3)
    mark_iv = _floats(data, n, VOLS)
    floor = _floats(data, n, VOLS)
    pos_instr, quantity, ord_instr, ord_qty = _holdings(data, n, n_pos, n_ord)
    args = (kind, mark_iv, floor, pos_instr, quantity, ord_instr, ord_qty)
    _same(layout.revaluation_rows(*args), oracles.revaluation_rows(*args))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 25), n_types=st.integers(1, 3),
       copies=st.integers(0, 8))
def test_row_arrays_agree_with_twin(data, n, n_types, copies):
    """Every per-row argument, the vol states under relative and absolute shocks, short and
    long dated, with and without the floor, equal to the bit."""
    itype = _ints(data, n, 0, n_types - 1)
    kind = _ints(data, n, 0, 3)
    settlement = _ints(data, n, 0, 1)
    cs = _floats(data, n, st.sampled_from([1.0, 0.1, 10.0]))
    mark = _floats(data, n, st.floats(1e-3, 1e5))
    fwd = _floats(data, n, st.floats(1.0, 1e5))
    strike = _floats(data, n, st.floats(1.0, 1e5))
    is_call = _ints(data, n, 0, 1)
    years = _floats(data, n, st.sampled_from([-0.01, -0.0, 0.0, 1e-4, 1 / 365, 29.9 / 365,
                                              30 / 365, 0.25, 2.0]))
    mark_iv = _floats(data, n, VOLS)
    per = {k: _floats(data, n_types, el) for k, el in (
        ("vol_floor", VOLS), ("r_up", st.sampled_from([0.0, 0.5, 1.2])),
        ("r_down", st.sampled_from([0.0, 0.25, 0.9])), ("p_short", st.sampled_from([0.3, 0.5])),
        ("p_long", st.sampled_from([0.13, 0.2])), ("min_up", VOLS),
        ("scan", st.sampled_from([0.0, 0.1, 0.5])),
        ("horizon", st.sampled_from([0.0, 1.0, 2.5])))}
    absolute = _ints(data, n_types, 0, 1)
    und_row = _ints(data, n_types, 0, 4)
    row_instr = np.concatenate([np.arange(n), _ints(data, copies if n else 0, 0, max(n - 1, 0))])
    rows = np.array(data.draw(st.permutations(range(len(row_instr)))), dtype=np.int64)
    args = (rows, row_instr, n, itype, kind, settlement, cs, mark, fwd, strike, is_call, years,
            mark_iv, per["vol_floor"], per["r_up"], per["r_down"], per["p_short"],
            per["p_long"], per["min_up"], absolute, per["scan"], per["horizon"], und_row)
    _same(layout.row_arrays(*args), oracles.row_arrays(*args))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(1, 20), n_pos=st.integers(0, 40),
       n_ord=st.integers(0, 6), n_types=st.integers(1, 3))
def test_position_layout_agrees_with_twin(data, n, n_pos, n_ord, n_types):
    kind = _ints(data, n, 0, 3)
    excluded = _ints(data, n, 0, 1).astype(bool)
    itype = _ints(data, n, 0, n_types - 1)
    som = _floats(data, n_types, st.sampled_from([0.0, 1e-4, 0.01]))
    pos_instr = _ints(data, n_pos, 0, n - 1)
    quantity = _floats(data, n_pos, QTY)
    ord_instr = _ints(data, n_ord, 0, n - 1)
    args = (pos_instr, quantity, kind, excluded.astype(np.int64), itype, som, ord_instr)
    _same(layout.position_layout(*args),
          oracles.position_layout(pos_instr, quantity, kind, excluded, itype, som, ord_instr))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(1, 30), n_pos=st.integers(0, 80),
       n_units=st.integers(1, 4), n_types=st.integers(1, 3))
def test_roll_groups_agree_with_twin(data, n, n_pos, n_units, n_types):
    """Groups per unit and expiry (perpetuals one each, spot none) and their rates."""
    kind = _ints(data, n, 0, 3)
    expiry = _ints(data, n, 0, 5) * 86_400 * 10**9
    years = _floats(data, n, st.sampled_from([-0.1, 0.0, 0.01, 0.5, 3.0]))
    pos_instr = _ints(data, n_pos, 0, n - 1)
    pos_unit = _ints(data, n_pos, 0, n_units - 1)
    unit_type = _ints(data, n_units, 0, n_types - 1)
    amr = _floats(data, n_types, st.sampled_from([0.0, 0.075, 0.3]))
    floor = _floats(data, n_types, st.sampled_from([0.0, 0.01, 0.05]))
    start, order = assemble.csr(pos_unit, n_units)
    args = (start, order, pos_instr, kind, expiry, years, unit_type, amr, floor)
    g, rate, gu = layout.roll_groups(*args)
    g2, rate2, gu2 = oracles.roll_groups(*args)
    assert g.tolist() == g2.tolist() and gu.tolist() == gu2.tolist()
    np.testing.assert_array_equal(rate, rate2)
    assert (g[kind[pos_instr] == SPOT] < 0).all()     # spot positions: no group


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 20))
def test_option_vols_agree_with_twin(data, n):
    kind = _ints(data, n, 0, 3)
    iv = _floats(data, n, VOLS)
    got = layout.option_vols(kind, iv)
    np.testing.assert_array_equal(got, oracles.option_vols(kind, iv))
    assert (got[kind != OPTION] == 0.0).all()


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(0, 12), n_types=st.integers(1, 4),
       n_snap=st.integers(1, 3), n_assets=st.integers(0, 4))
def test_unit_prices_agree_with_twin(data, n_units, n_types, n_snap, n_assets):
    """A type's asset price at the unit's snapshot; NaN without a row, 1 for a stablecoin."""
    col = _ints(data, n_types, -1, n_assets - 1)
    stable = _ints(data, n_types, 0, 1)
    utype = _ints(data, n_units, 0, n_types - 1)
    snap = _ints(data, n_units, 0, n_snap - 1)
    asset_px = _floats(data, n_snap * n_assets, st.sampled_from([np.nan, 1.0, 2.5e4])).reshape(
        n_snap, n_assets)
    args = (col, stable, utype, snap, asset_px)
    np.testing.assert_array_equal(layout.unit_prices(*args), oracles.unit_prices(*args))


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(1, 5), n_res=st.integers(0, 12))
def test_reserve_sums_agree_with_twin(data, n_units, n_res):
    res_unit = _ints(data, n_res, 0, n_units - 1)
    oo = _floats(data, n_res, st.floats(-1e3, 1e3))
    mmp = _floats(data, n_res, st.floats(0, 1e3))
    _same(layout.reserve_sums(res_unit, oo, mmp, n_units),
          oracles.reserve_sums(res_unit, oo, mmp, n_units))


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n_units=st.integers(1, 5), n_pos=st.integers(0, 300),
       n_keys=st.sampled_from([3, 12, 64, 65, 300]),
       scale=st.sampled_from([1, 86_400 * 10**9, -(2**62)]))
def test_expiry_groups_agree_with_oracle(data, n_units, n_pos, n_keys, scale):
    """Small units sort in place; a unit of more than 32 dated positions hashes its keys and
    sorts the distinct ones (keys as far apart as expiries in ns, or near the int64 edge)."""
    unit = _ints(data, n_pos, 0, n_units - 1)
    key = _ints(data, n_pos, -5, n_keys - 6) * scale
    dated = _ints(data, n_pos, 0, 1)
    start, order = assemble.csr(unit, n_units)
    g, gu, first = layout.expiry_groups(start, order, key, dated)
    g2, gu2, first2 = oracles.expiry_groups(start, order, key, dated)
    assert g.tolist() == g2.tolist() and gu.tolist() == gu2.tolist()
    assert first.tolist() == first2.tolist()


# -- revaluation_layout ---------------------------------------------------------------

@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 25), n_types=st.integers(1, 3),
       n_pos=st.integers(0, 30), n_ord=st.integers(0, 8))
def test_revaluation_layout_agrees_with_twin(data, n, n_types, n_pos, n_ord):
    """revaluation_rows at each instrument's type floor and row_arrays of every row, in one
    call: the same rows, copies and per-row arguments to the bit."""
    itype = _ints(data, n, 0, n_types - 1)
    kind = _ints(data, n, 0, 3)
    mark_iv = _floats(data, n, VOLS)
    pos_instr, quantity, ord_instr, ord_qty = _holdings(data, n, n_pos, n_ord)
    cols = (_ints(data, n, 0, 1), _floats(data, n, st.sampled_from([1.0, 0.1, 10.0])),
            _floats(data, n, st.floats(1e-3, 1e5)), _floats(data, n, st.floats(1.0, 1e5)),
            _floats(data, n, st.floats(1.0, 1e5)), _ints(data, n, 0, 1),
            _floats(data, n, st.sampled_from([-0.01, 0.0, 1e-4, 29.9 / 365, 30 / 365, 2.0])))
    per = [_floats(data, n_types, el) for el in (
        VOLS, st.sampled_from([0.0, 0.5, 1.2]), st.sampled_from([0.0, 0.25, 0.9]),
        st.sampled_from([0.3, 0.5]), st.sampled_from([0.13, 0.2]), VOLS)]
    tail = (_ints(data, n_types, 0, 1), _floats(data, n_types, st.sampled_from([0.0, 0.1])),
            _floats(data, n_types, st.sampled_from([0.0, 1.0, 2.5])),
            _ints(data, n_types, 0, 4))
    args = (kind, mark_iv, pos_instr, quantity, ord_instr, ord_qty, itype, *cols, *per, *tail)
    got = layout.revaluation_layout(*args)
    want = oracles.revaluation_layout(*args)
    _same(got[:4], want[:4])
    _same(got[4], want[4])


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n=st.integers(1, 20), n_pos=st.integers(0, 60), n_ord=st.integers(0, 6),
       n_units=st.integers(1, 4), n_acc=st.integers(1, 3), n_bal=st.integers(0, 5),
       n_res=st.integers(0, 4), n_types=st.integers(1, 3))
def test_book_layout_agrees_with_twin(data, n, n_pos, n_ord, n_units, n_acc, n_bal, n_res,
                                      n_types):
    """position_layout, the five CSR indexes, roll_groups and reserve_sums in one call: the
    same arrays as the twins one after the other."""
    kind = _ints(data, n, 0, 3)
    excluded = _ints(data, n, 0, 1)
    itype = _ints(data, n, 0, n_types - 1)
    som = _floats(data, n_types, st.sampled_from([0.0, 1e-4, 0.01]))
    pos_instr = _ints(data, n_pos, 0, n - 1)
    quantity = _floats(data, n_pos, QTY)
    ord_instr = _ints(data, n_ord, 0, n - 1)
    args = (pos_instr, quantity, kind, excluded, itype, som, ord_instr,
            _ints(data, n_pos, 0, n_units - 1), _ints(data, n_ord, 0, n_units - 1), n_units,
            _ints(data, n_pos, 0, n_acc - 1), _ints(data, n_bal, -1, n_acc - 1),
            _ints(data, n_units, 0, n_acc - 1), n_acc, _ints(data, n, 0, 5) * 86_400 * 10**9,
            _floats(data, n, st.sampled_from([-0.1, 0.0, 0.01, 0.5, 3.0])),
            _ints(data, n_units, 0, n_types - 1),
            _floats(data, n_types, st.sampled_from([0.0, 0.075, 0.3])),
            _floats(data, n_types, st.sampled_from([0.0, 0.01, 0.05])),
            _ints(data, n_res, 0, n_units - 1), _floats(data, n_res, st.floats(-1e3, 1e3)),
            _floats(data, n_res, st.floats(0, 1e3)))
    want = oracles.book_layout(*args)
    twin_args = list(args[:7])
    twin_args[3] = excluded.astype(bool)
    for got in (layout.book_layout_serial(*args), _threads(args)):
        _same(got[0], oracles.position_layout(*twin_args))
        for g, w in zip(got[1:], want[1:]):
            _same(g, w)


def _threads(args, fill=None):
    """:func:`layout.book_layout` on ``args`` (the serial form's), into arrays of its own
    (``fill``: set to that first, as reused memory would be)."""
    n = len(args[0])
    out = (np.empty(n, dtype=bool), np.empty((layout.LAYOUT_F8, n)),
           np.empty((layout.LAYOUT_I8, n), dtype=np.int64))
    if fill is not None:
        for a in out:
            a.fill(fill)
    return layout.book_layout(*args, *out)


def _nested_same(got, want):
    if isinstance(want, tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _nested_same(g, w)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.view(np.uint8).tobytes() == want.view(np.uint8).tobytes()
    else:
        assert got == want


@pytest.mark.parametrize("seed", range(4))
def test_book_layout_threads_give_the_serial_bits(seed):
    """A book of many units, like a backtest's (some with more than 32 dated positions, so
    the hashed groups run too; accounts of one to three units; spot, perpetual and dated
    kinds; excluded instruments): the parallel form's runs of positions, units and groups
    give :func:`book_layout_serial`'s arrays to the bit."""
    rng = np.random.default_rng(seed)
    n, n_acc, n_types = 300, 400, 3
    kind = rng.integers(0, 4, n)
    expiry = rng.integers(0, 9, n) * 86_400 * 10**9
    years = rng.choice([-0.1, 0.0, 0.01, 0.5, 3.0], n)
    units_of = rng.integers(1, 4, n_acc)
    if seed % 2:
        units_of[rng.integers(0, n_acc, 3)] = 1     # a few units of many positions below
    unit_account = np.repeat(np.arange(n_acc), units_of)
    n_units = len(unit_account)
    per_unit = rng.integers(0, 12, n_units)
    per_unit[rng.integers(0, n_units, 5)] = rng.integers(33, 200, 5)
    pos_unit = np.repeat(np.arange(n_units), per_unit)
    if seed >= 2:                                   # positions of a unit not contiguous
        pos_unit = pos_unit[rng.permutation(len(pos_unit))]
    n_pos = len(pos_unit)
    args = (rng.integers(0, n, n_pos), rng.choice([-3.0, -1e-9, 0.0, 2.5], n_pos), kind,
            (rng.random(n) < 0.05).astype(np.int64), rng.integers(0, n_types, n),
            np.array([0.0, 1e-4, 0.01]), rng.integers(0, n, 7), pos_unit,
            rng.integers(0, n_units, 7), n_units, unit_account[pos_unit],
            rng.integers(-1, n_acc, 50), unit_account, n_acc, expiry, years,
            rng.integers(0, n_types, n_units), np.array([0.0, 0.075, 0.3]),
            np.array([0.0, 0.01, 0.05]), rng.integers(0, n_units, 9), rng.random(9),
            rng.random(9))
    want = layout.book_layout_serial(*args)
    for fill in (None, 1, -7):
        _nested_same(_threads(args, fill), want)

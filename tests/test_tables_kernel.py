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


def _ints(data, n, lo, hi):
    return np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                    dtype=np.int64)


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12), n_types=st.integers(1, 3),
       width=st.integers(1, 4), timed=st.booleans())
def test_unit_block_agrees_with_twin(data, n, n_types, width, timed):
    """The prices, the binding cell's shock and codes (a negative cell wraps, as numpy's
    index), the scenario shock (NaN counted), every figure and its USD value, the time."""
    utype = _ints(data, n, 0, n_types - 1)
    type_und = _ints(data, n_types, 0, 1)
    binding = _ints(data, n, -1, width - 1)
    shock = _floats(data, 2 * width).reshape(2, width)
    table, vol = _ints(data, 2 * width, 0, 3).reshape(2, width), _ints(
        data, 2 * width, 0, 2).reshape(2, width)
    per_unit = [_floats(data, n) for _ in range(3 + len(tables.UNIT_FIGURES) + 4)]
    unit_account = _ints(data, n, 0, 2)
    acc_snap = _ints(data, 3 if timed else 0, 0, 1)
    snap_ns = np.array([5, 7], dtype=np.int64)
    args = (utype, type_und, binding, shock, table, vol, *per_unit, unit_account, acc_snap,
            snap_ns)
    out, codes = np.empty((len(tables.UNIT_BLOCK), n)), np.empty((2, n), dtype=np.int64)
    time = np.empty(n if timed else 0, dtype=np.int64)
    n_nan = tables.unit_block(*args, out, codes, time)
    want = oracles.unit_block(*args)
    _equal(out, want[0])
    assert np.array_equal(codes, want[1]) and np.array_equal(time, want[2])
    assert n_nan == want[3]


@settings(deadline=None)
@given(data=st.data(), n_pos=st.integers(0, 30), n_units=st.integers(0, 5),
       n_loan=st.integers(0, 3), n_snap=st.integers(0, 3))
def test_position_index_and_columns_agree_with_twins(data, n_pos, n_units, n_loan, n_snap):
    """The rows (positions, one unallocated row per unit, one per loan; by snapshot, stably,
    when timed), each row's account, symbol, unit name and time; and the numeric block in
    that order (an unallocated row: its unit's margin less its positions' sum, in position
    order)."""
    n_pos = n_pos if n_units else 0
    n_acc = 4
    pos_unit = _ints(data, n_pos, 0, max(n_units - 1, 0))
    unit_account = _ints(data, n_units, 0, n_acc - 1)
    pos_account = unit_account[pos_unit] if n_pos else np.zeros(0, dtype=np.int64)
    loans = _ints(data, n_loan, 0, n_acc - 1)
    acc_snap = _ints(data, n_acc if n_snap else 0, 0, max(n_snap - 1, 0))
    snap_ns = np.arange(n_snap, dtype=np.int64) * 10 + 3
    idx_args = (pos_account, _ints(data, n_pos, 0, 6), pos_unit, unit_account,
                _ints(data, n_units, 0, 1), loans, acc_snap, snap_ns, 7, 2)
    n = n_pos + n_units + n_loan
    index, time = np.empty((4, n), dtype=np.int64), np.empty(n if n_snap else 0, np.int64)
    one = tables.position_index(*idx_args, index, time)
    want_index, want_time, *want_one = oracles.position_index(*idx_args)
    assert np.array_equal(index, want_index) and np.array_equal(time, want_time)
    assert one == tuple(want_one)
    finite = st.floats(-1e6, 1e6)
    args = (index[0], pos_unit, _floats(data, n_pos), _floats(data, n_units, finite),
            *[_floats(data, n_pos, finite) for _ in range(9)],
            _floats(data, n_units, finite), _floats(data, n_units, finite),
            _floats(data, n_loan, finite), _floats(data, n_loan, finite))
    out = np.empty((len(tables.POSITION_COLUMNS), n))
    tables.position_columns(*args, out)
    _equal(out, oracles.position_columns(*args))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12), every=st.booleans())
def test_account_block_agrees_with_twin(data, n, every):
    """Figures, ratio (inf / -inf without margin), available, most withdrawable and band,
    for every account or a selection."""
    eq, actual, mm, im, liq, scen, loan = (_floats(data, n) for _ in range(7))
    mm = np.where(data.draw(st.booleans()), np.abs(mm), mm)
    acc = np.zeros(0, dtype=np.int64) if every or not n else _ints(data, 3, 0, n - 1)
    levels = np.array([1.1, 1.05, 1.01, 1.0, 0.75])
    k = n if every else len(acc)
    out, band = np.empty((len(tables.ACCOUNT_BLOCK), k)), np.empty(k, dtype=np.int64)
    tables.account_block(acc, every, eq, actual, mm, im, liq, scen, loan, 1.01, levels, out,
                         band)
    want = oracles.account_block(acc, every, eq, actual, mm, im, liq, scen, loan, 1.01, levels)
    _equal(out, want[0])
    assert np.array_equal(band, want[1])


@settings(deadline=None)
@given(data=st.data(), n_acc=st.integers(0, 6), every=st.booleans(),
       any_excluded=st.booleans())
def test_account_cells_agrees_with_twin(data, n_acc, every, any_excluded):
    """The binding cell of each account's largest unit (ties the first, NaN passed over),
    when its worst case is above 0, else excluded positions only, else none; the cells
    numbered in order of first use."""
    per_acc = _ints(data, n_acc, 0, 3)
    ua_start = np.concatenate([[0], np.cumsum(per_acc)]).astype(np.int64)
    n_units = int(ua_start[-1])
    worst = _floats(data, n_units, st.sampled_from([0.0, 1.0, 2.0, -1.0, np.nan]))
    px = _floats(data, n_units, st.sampled_from([1.0, 2.0, 0.5]))
    excl = _floats(data, n_units, st.sampled_from([0.0, 1.0, -1.0]))
    binding, utype = _ints(data, n_units, 0, 2), _ints(data, n_units, 0, 1)
    acc = np.zeros(0, dtype=np.int64) if every or not n_acc else np.unique(
        _ints(data, 3, 0, n_acc - 1))
    code = np.empty(n_acc if every else len(acc), dtype=np.int64)
    cells = tables.account_cells(acc, every, ua_start, worst, px, excl, any_excluded,
                                 binding, utype, 3, code)
    want_code, want_cells = oracles.account_cells(acc, every, ua_start, worst, px, excl,
                                                  any_excluded, binding, utype, 3)
    assert np.array_equal(code, want_code) and np.array_equal(cells, want_cells)


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


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12), m=st.integers(0, 4))
def test_positive_rows_and_every_flag_set_agree_with_twins(data, n, m):
    """The loans' rows (above 0; NaN is not) and the finiteness check (every flag 1.0)."""
    values = _floats(data, n)
    assert np.array_equal(tables.positive_rows(values), oracles.positive_rows(values))
    flags = st.sampled_from([1.0, 0.0, np.nan])
    u, a = _floats(data, n, flags), _floats(data, m, flags)
    assert tables.every_flag_set(u, a) == oracles.every_flag_set(u, a)


@settings(deadline=None)
@given(strings=st.lists(st.text(max_size=6), max_size=6),
       extra=st.lists(st.text(max_size=4), max_size=2), data=st.data())
def test_take_strings_agrees_with_twin_and_pyarrow(strings, extra, data):
    """The gathered strings (the array's, then the extra names) are pyarrow's take of the
    two arrays concatenated, and the twin's buffers; a sliced array reads from its
    offset."""
    import pyarrow as pa
    from pmrisk.io.arrow import name_buffers, str_buffers
    arr = pa.array(["x"] + strings, pa.string()).slice(1)
    n = len(strings) + len(extra)
    rows = _ints(data, data.draw(st.integers(0, 8)), 0, n - 1) if n else np.zeros(
        0, dtype=np.int64)
    parts = str_buffers(arr) + name_buffers(tuple(extra))
    offsets, got = tables.take_strings(*parts, rows)
    want = oracles.take_strings(*parts, rows)
    assert np.array_equal(offsets, want[0]) and np.array_equal(got, want[1])
    col = pa.Array.from_buffers(pa.string(), len(rows), [None, pa.py_buffer(offsets),
                                                         pa.py_buffer(got)])
    assert col.equals(pa.concat_arrays([arr, pa.array(extra, pa.string())]).take(rows))


# -- (s20-tables) the parallel forms, their serial twins and the large string gather ------------

FORMS = ("", "_serial")
SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf])


def _rng_floats(rng, n, special=True):
    """``n`` floats in (-1e6, 1e6), a tenth of them (with ``special``) 0, -0, NaN or +-inf:
    large draws from a seed (hypothesis' own draws stay small)."""
    v = rng.uniform(-1e6, 1e6, n)
    if special:
        hit = rng.random(n) < 0.1
        v[hit] = rng.choice(SPECIAL, int(hit.sum()))
    return v


def _rng_ints(rng, n, lo, hi):
    return rng.integers(lo, hi + 1, n).astype(np.int64)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 150), timed=st.booleans())
def test_unit_block_forms_agree_with_twin(seed, n, timed):
    """The parallel form (the units cut in runs over the threads) and the serial one give
    the twin's block, codes, time and NaN count, on more units than runs."""
    rng = np.random.default_rng(seed)
    utype = _rng_ints(rng, n, 0, 1)
    type_und = np.array([0, 1], dtype=np.int64)
    binding = _rng_ints(rng, n, 0, 2)
    shock = _rng_floats(rng, 6).reshape(2, 3)
    table, vol = _rng_ints(rng, 6, 0, 3).reshape(2, 3), _rng_ints(rng, 6, 0, 2).reshape(2, 3)
    per_unit = [_rng_floats(rng, n) for _ in range(3 + len(tables.UNIT_FIGURES) + 4)]
    acc_snap = _rng_ints(rng, 3 if timed else 0, 0, 1)
    args = (utype, type_und, binding, shock, table, vol, *per_unit, _rng_ints(rng, n, 0, 2),
            acc_snap, np.array([5, 7], dtype=np.int64))
    want = oracles.unit_block(*args)
    for form in FORMS:
        out, codes = np.empty((len(tables.UNIT_BLOCK), n)), np.empty((2, n), dtype=np.int64)
        time = np.empty(n if timed else 0, dtype=np.int64)
        n_nan = getattr(tables, "unit_block" + form)(*args, out, codes, time)
        _equal(out, want[0])
        assert np.array_equal(codes, want[1]) and np.array_equal(time, want[2])
        assert n_nan == want[3]


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_pos=st.integers(0, 200), n_units=st.integers(1, 12),
       n_loan=st.integers(0, 3), n_snap=st.integers(0, 4), n_acc=st.integers(1, 4),
       n_types=st.integers(1, 2))
def test_position_index_and_columns_forms_agree_with_twins(seed, n_pos, n_units, n_loan,
                                                           n_snap, n_acc, n_types):
    """Both forms of the positions table's index (one account or unit type throughout
    included) and numeric block give the twins' values, on more rows than runs; the order
    and the unit sums alone as well."""
    rng = np.random.default_rng(seed)
    pos_unit = _rng_ints(rng, n_pos, 0, n_units - 1)
    unit_account = _rng_ints(rng, n_units, 0, n_acc - 1)
    pos_account = unit_account[pos_unit]
    loans = _rng_ints(rng, n_loan, 0, n_acc - 1)
    acc_snap = _rng_ints(rng, n_acc if n_snap else 0, 0, max(n_snap - 1, 0))
    snap_ns = np.arange(n_snap, dtype=np.int64) * 10 + 3
    idx_args = (pos_account, _rng_ints(rng, n_pos, 0, 6), pos_unit, unit_account,
                _rng_ints(rng, n_units, 0, n_types - 1), loans, acc_snap, snap_ns, 7, 2)
    n = n_pos + n_units + n_loan
    want_index, want_time, *want_one = oracles.position_index(*idx_args)
    rows = np.empty(n, dtype=np.int64)
    tables.position_order(pos_account, unit_account, loans, acc_snap, n_snap, rows)
    assert np.array_equal(rows, oracles.position_order(pos_account, unit_account, loans,
                                                       acc_snap, n_snap))
    contrib = [_rng_floats(rng, n_pos, False) for _ in range(2)]
    for got, want in zip(tables.unit_sums(pos_unit, *contrib, n_units),
                         oracles.unit_sums(pos_unit, *contrib, n_units)):
        _equal(got, want)
    num = (pos_unit, _rng_floats(rng, n_pos), _rng_floats(rng, n_units, False),
           *[_rng_floats(rng, n_pos, False) for _ in range(7)], *contrib,
           _rng_floats(rng, n_units, False), _rng_floats(rng, n_units, False),
           _rng_floats(rng, n_loan, False), _rng_floats(rng, n_loan, False))
    want_block = oracles.position_columns(want_index[0], *num)
    for form in FORMS:
        index, time = np.empty((4, n), dtype=np.int64), np.empty(n if n_snap else 0, np.int64)
        one = getattr(tables, "position_index" + form)(*idx_args, index, time)
        assert np.array_equal(index, want_index) and np.array_equal(time, want_time)
        assert one == tuple(want_one)
        out = np.empty((len(tables.POSITION_COLUMNS), n))
        getattr(tables, "position_columns" + form)(index[0], *num, out)
        _equal(out, want_block)


@settings(deadline=None)
@given(strings=st.lists(st.text(max_size=6), max_size=6),
       extra=st.lists(st.text(max_size=4), max_size=2), seed=st.integers(0, 2**32 - 1),
       n=st.integers(0, 200))
def test_gather_strings_agrees_with_twins(strings, extra, seed, n):
    """The offsets and the bytes gathered into the caller's buffers, by both forms (on more
    rows than runs), are the twins' and :func:`take_strings`' own."""
    import pyarrow as pa
    from pmrisk.io.arrow import name_buffers, str_buffers
    arr = pa.array(["x"] + strings, pa.string()).slice(1)
    n_names = len(strings) + len(extra)
    rows = _rng_ints(np.random.default_rng(seed), n if n_names else 0, 0, n_names - 1)
    offs, data, extra_offs, extra_data = str_buffers(arr) + name_buffers(tuple(extra))
    want_offsets, total = oracles.string_offsets(offs, extra_offs, rows)
    for form in FORMS:
        offsets = np.empty(len(rows) + 1, dtype=np.int32)
        assert getattr(tables, "string_offsets" + form)(offs, extra_offs, rows, offsets) == total
        assert np.array_equal(offsets, want_offsets)
    want = oracles.gather_strings(offs, data, extra_offs, extra_data, rows)
    for form in FORMS:
        got = np.empty(total, dtype=np.uint8)
        getattr(tables, "gather_strings" + form)(offs, data, extra_offs, extra_data, rows,
                                                  offsets, got)
        assert np.array_equal(got, want)
    taken = tables.take_strings(offs, data, extra_offs, extra_data, rows)
    assert np.array_equal(taken[0], offsets) and np.array_equal(taken[1], want)

"""The Monitor tick's bookkeeping kernels (:mod:`pmrisk.kernel.ticks`: a tick's market rows
merged into the monitor's marks, the moved marks written into a block's book, what a tick
touches in a block) against their numpy twins in ``tests/oracles.py``: the same bits, the
same indices, rows outside the tick untouched."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import ticks

VALUE = st.one_of(st.floats(allow_nan=True, allow_infinity=False),
                  st.sampled_from([np.nan, 1.0, 0.0, -0.0, 2.5]))


def _floats(data, n):
    return np.array(data.draw(st.lists(VALUE, min_size=n, max_size=n)), dtype=np.float64)


@settings(deadline=None)
@given(data=st.data(), n_cur=st.integers(0, 6), n=st.integers(0, 6))
def test_market_rows_agree_with_twins(data, n_cur, n):
    """A tick's rows on known and new symbols: the checks, the values written and the rows
    reported changed."""
    known = data.draw(st.lists(st.integers(0, max(n_cur - 1, 0)), unique=True,
                               max_size=min(n, n_cur))) if n_cur else []
    n_new = n - len(known)
    rows = np.array(known + [-1] * n_new, dtype=np.int64)
    order = np.array(data.draw(st.permutations(range(n))), dtype=np.int64)
    rows = rows[order] if n else rows
    mark, iv, fwd = _floats(data, n), _floats(data, n), _floats(data, n)
    is_opt = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    cur = [_floats(data, n_cur) for _ in range(3)]
    got = ticks.market_checks(rows, mark, iv, is_opt, cur[1])
    want = oracles.market_checks(rows, mark, iv, is_opt, cur[1])
    for g, w in zip(got, want):
        assert g.tolist() == w.tolist()
    # the new symbols appended, as the monitor does, then the rows written
    rows = rows.copy()
    rows[rows < 0] = n_cur + np.arange(n_new)
    cur = [np.concatenate([a, np.full(n_new, np.nan)]) for a in cur]
    has_fwd = data.draw(st.booleans())
    a, b = [x.copy() for x in cur], [x.copy() for x in cur]
    got = ticks.write_marks(rows, n_cur, mark, iv, fwd, has_fwd, *a)
    want = oracles.write_marks(rows, n_cur, mark, iv, fwd, has_fwd, *b)
    assert got.tolist() == want.tolist()
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(0, 8), n_rows=st.integers(1, 5))
def test_book_marks_agrees_with_twin(data, n_instr, n_rows):
    instr = np.array(sorted(data.draw(st.sets(st.integers(0, max(n_instr - 1, 0)),
                                              max_size=n_instr))), dtype=np.int64)[:n_instr]
    mrow = np.array(data.draw(st.lists(st.integers(0, n_rows - 1), min_size=len(instr),
                                       max_size=len(instr))), dtype=np.int64)
    und_px = _floats(data, len(instr))
    market = [_floats(data, n_rows) for _ in range(3)]
    start = [_floats(data, n_instr) for _ in range(3)]
    a, b = [x.copy() for x in start], [x.copy() for x in start]
    ticks.book_marks(instr, mrow, und_px, *market, *a)
    oracles.book_marks(instr, mrow, und_px, *market, *b)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(0, 6), n_types=st.integers(1, 4),
       n_units=st.integers(0, 12), n_acc=st.integers(1, 5), n_bal=st.integers(0, 6),
       n_rev=st.integers(0, 10))
def test_tick_selection_agrees_with_twin(data, n_instr, n_types, n_units, n_acc, n_bal,
                                         n_rev):
    def bools(n):
        return np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)),
                        dtype=bool)

    def ints(n, hi):
        return np.array(data.draw(st.lists(st.integers(0, hi - 1), min_size=n, max_size=n)),
                        dtype=np.int64)
    instr_hit, type_hit, live = bools(n_instr), bools(n_types), bools(n_acc)
    utype, unit_account = ints(n_units, n_types), np.sort(ints(n_units, n_acc))
    bal_account = ints(n_bal, n_acc)
    bal_hit = np.flatnonzero(bools(n_bal))
    row_instr = ints(n_rev, n_instr) if n_instr else np.zeros(0, dtype=np.int64)
    all_units = data.draw(st.booleans())
    got = ticks.tick_selection(instr_hit, type_hit, utype, unit_account, live, bal_account,
                               bal_hit, row_instr, all_units)
    want = oracles.tick_selection(instr_hit, type_hit, utype, unit_account, live, bal_account,
                                  bal_hit, row_instr, all_units)
    for g, w in zip(got, want):
        assert g.dtype == np.int64 and g.tolist() == w.tolist()


def test_write_marks_reports_new_symbols_and_only_real_changes():
    """A new symbol is a change even when none of its values is given; re-sent values
    (NaN equal to NaN) are none."""
    nan = np.nan
    cur = [np.array([1.0, nan, nan]), np.array([0.5, nan, nan]), np.array([nan, nan, nan])]
    rows = np.array([0, 1, 2], dtype=np.int64)
    changed = ticks.write_marks(rows, 1, np.array([1.0, nan, nan]), np.array([nan, nan, nan]),
                                np.array([nan, nan, nan]), True, *cur)
    assert changed.tolist() == [False, True, True]
    changed = ticks.write_marks(rows[:1], 3, np.array([1.0]), np.array([0.6]), np.array([nan]),
                                False, *cur)
    assert changed.tolist() == [True] and cur[1][0] == 0.6


@settings(deadline=None)
@given(data=st.data(), n_acc=st.integers(1, 6), n=st.integers(0, 12))
def test_kept_rows_agrees_with_twin(data, n_acc, n):
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=n_acc, max_size=n_acc)))
    new = np.full(n_acc, -1, dtype=np.int64)
    new[keep] = np.arange(keep.sum())
    account = np.array(data.draw(st.lists(st.integers(0, n_acc - 1), min_size=n,
                                          max_size=n)), dtype=np.int64)
    got, want = ticks.kept_rows(new, account), oracles.kept_rows(new, account)
    for g, w in zip(got, want):
        assert g.dtype == np.int64 and g.tolist() == w.tolist()



@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 6), n_copies=st.integers(0, 4),
       n_block=st.integers(1, 8))
def test_row_sources_agrees_with_twin(data, n_instr, n_copies, n_block):
    """A what-if book's revaluation rows (one per instrument, then floored copies) matched
    to a block's: held or not, floored in the block or not."""
    mine = np.array(data.draw(st.lists(st.integers(-1, n_block - 1), min_size=n_instr,
                                       max_size=n_instr)), dtype=np.int64)
    copies = data.draw(st.lists(st.integers(0, n_instr - 1), max_size=n_copies))
    row_instr = np.array(list(range(n_instr)) + copies, dtype=np.int64)
    floored = np.array(sorted(data.draw(st.sets(st.integers(0, n_block - 1)))),
                       dtype=np.int64)
    args = (mine, row_instr, n_instr, floored, n_block)
    for g, w in zip(ticks.row_sources(*args), oracles.row_sources(*args)):
        assert g.dtype == np.int64 and g.tolist() == w.tolist()

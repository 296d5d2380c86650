"""The binding joint scenario in words (:mod:`pmrisk.kernel.describe`) against its twin in
``tests/oracles.py`` (account by account in Python, every move through ``"%+.2f%%"``): the
same text for random groups, joint rows, delta directions, units and moves, rounding ties,
signed zeros, NaN and infinities included."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel.describe import lexicon, odd_moves, scenario_words
from pmrisk.kernel.directions import KINDS
from pmrisk.kernel.groups import row_sets
from pmrisk.kernel.joint import BIND_JOINT
from pmrisk.kernel.scenarios import VOL_SAME, VOL_STATES

MOVES = st.one_of(
    st.floats(-3.0, 3.0),
    st.integers(-3000, 3000).map(lambda k: k / 10000 + 5e-5),      # ties at the 2nd decimal
    st.integers(-30000, 30000).map(lambda k: k / 100000),
    st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 12345678.9, np.inf, -np.inf,
                     np.nan, 0.00125, -0.00125, 0.005, 1 / 3]))
NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0,
                max_size=5)


def kernel_words(acc, *args, names, types):
    """The words as pmrisk.engine.correlated writes them: one pass, and a second with
    Python's words for the odd moves when the first asks for them."""
    lex, off, firsts = lexicon(names, types, KINDS, VOL_STATES)
    odd = np.zeros(0, dtype=np.int64)
    offsets, data, complete = scenario_words(acc, *args, lex, off, *firsts[:4], len(off) - 1,
                                             odd)
    if not complete:
        g_d, j_shock = args[6], args[10]
        odd = odd_moves(acc, *args[:5], g_d, j_shock)
        assert len(odd)
        lex, off, firsts = lexicon(names, types, KINDS, VOL_STATES,
                                   ["%+.2f%%" % v for v in odd.view(np.float64).tolist()])
        offsets, data, complete = scenario_words(acc, *args, lex, off, *firsts, odd)
        assert complete
    raw = bytes(data)
    return [raw[offsets[i]:offsets[i + 1]].decode() for i in range(len(acc))]


@settings(deadline=None)
@given(data=st.data(), n_rows=st.integers(1, 4), n_groups=st.integers(1, 3),
       n_acc=st.integers(1, 8), n_types=st.integers(1, 3))
def test_scenario_words_agree_with_twin(data, n_rows, n_groups, n_acc, n_types):
    draw = data.draw
    names = draw(st.lists(NAMES, min_size=n_rows, max_size=n_rows))
    types = draw(st.lists(NAMES, min_size=n_types, max_size=n_types))
    groups = [sorted(draw(st.sets(st.integers(0, n_rows - 1), min_size=1)))
              for _ in range(n_groups)]
    d_max = max(len(r) for r in groups)
    g_d = np.array([len(r) for r in groups], dtype=np.int64)
    g_rows = np.zeros((n_groups, d_max), dtype=np.int64)
    g_col = np.full((n_groups, n_rows), -1, dtype=np.int64)
    for g, rows in enumerate(groups):
        g_rows[g, :len(rows)] = rows
        g_col[g, rows] = np.arange(len(rows))
    g_buckets = np.array(draw(st.lists(st.integers(1, 12), min_size=n_groups,
                                       max_size=n_groups)), dtype=np.int64)
    sizes = draw(st.lists(st.integers(1, 5), min_size=n_groups, max_size=n_groups))
    g_j0 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    nj = int(g_j0[-1])
    j_shock = np.array(draw(st.lists(MOVES, min_size=nj * d_max, max_size=nj * d_max)),
                       dtype=np.float64).reshape(nj, d_max)
    j_meta = np.array([[draw(st.integers(-1, 12)), draw(st.integers(-1, 1234)),
                        draw(st.integers(0, len(KINDS) - 1))] for _ in range(nj)],
                      dtype=np.int64).reshape(nj, 3)
    acc_group = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=n_acc,
                                       max_size=n_acc)), dtype=np.int64)
    bind_kind = np.array(draw(st.lists(st.sampled_from([BIND_JOINT, 1]), min_size=n_acc,
                                       max_size=n_acc)), dtype=np.int64)
    bind_index = np.array([draw(st.integers(int(g_j0[g]), int(g_j0[g + 1]) - 1)) if
                           k == BIND_JOINT else draw(st.integers(0, 2 * g_buckets[g] + 1))
                           for g, k in zip(acc_group.tolist(), bind_kind.tolist())],
                          dtype=np.int64)
    bind_shock = np.array(draw(st.lists(MOVES, min_size=n_acc * d_max,
                                        max_size=n_acc * d_max)),
                          dtype=np.float64).reshape(n_acc, d_max)
    worst = np.array(draw(st.lists(st.sampled_from([1.0, 0.0, -1.0, 1e-300, np.nan, np.inf]),
                                   min_size=n_acc, max_size=n_acc)), dtype=np.float64)
    n_units = draw(st.lists(st.integers(0, 4), min_size=n_acc, max_size=n_acc))
    ua_start = np.concatenate([[0], np.cumsum(n_units)]).astype(np.int64)
    m = int(ua_start[-1])
    unit_row = np.array(draw(st.lists(st.integers(0, n_rows - 1), min_size=m, max_size=m)),
                        dtype=np.int64)
    active = np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)), dtype=bool)
    unit_vol = np.array(draw(st.lists(st.integers(0, len(VOL_STATES) - 1), min_size=m,
                                      max_size=m)), dtype=np.int64)
    utype = np.array(draw(st.lists(st.integers(0, n_types - 1), min_size=m, max_size=m)),
                     dtype=np.int64)
    acc = np.array(draw(st.lists(st.integers(0, n_acc - 1), max_size=2 * n_acc)),
                   dtype=np.int64)
    args = (worst, acc_group, bind_kind, bind_index, bind_shock, g_j0, g_d, g_rows, g_col,
            g_buckets, j_shock, j_meta, ua_start, active, unit_row, unit_vol, utype, VOL_SAME)
    got = kernel_words(acc, *args, names=names, types=types)
    want = oracles.scenario_words(acc, *args, names, types, KINDS, VOL_STATES,
                                  bind_joint=BIND_JOINT)
    assert got == want


def test_rounding_ties_and_odd_values_are_python_formatted():
    """A move on a rounding tie of the hundredths, a huge one and NaN take the second pass;
    the others are written from their hundredths."""
    moves = np.array([[0.00125, -0.0, 1e300, np.nan, 0.1234, -0.98765]])
    i64 = lambda *v: np.array(v, dtype=np.int64)          # noqa: E731
    args = (np.array([1.0]), i64(0), i64(BIND_JOINT), i64(0), np.zeros((1, 6)), i64(0, 1),
            i64(6), i64([0, 1, 2, 3, 4, 5]), i64([0, 1, 2, 3, 4, 5]), i64(1), moves,
            i64([1, 2, 0]), i64(0, 0), np.zeros(0, bool), i64(), i64(), i64(), VOL_SAME)
    names = ["A", "B", "C", "D", "E", "F"]
    got = kernel_words(i64(0), *args, names=names, types=["t"])
    assert got == oracles.scenario_words(i64(0), *args, names, ["t"], KINDS, VOL_STATES)
    assert got == ["joint shell 1/1 axis direction 2: A +0.12% vol same, B -0.00% vol "
                   "same, C +" + "%.2f" % 1e302 + "% vol same, D +nan% vol same, E +12.34% "
                   "vol same, F -98.77% vol same"]


@settings(deadline=None)
@given(data=st.data(), n_acc=st.integers(0, 12), n_units=st.integers(0, 20),
       n_pos=st.integers(0, 30), n_rows=st.sampled_from([1, 3, 63, 64, 65, 130]))
def test_row_sets_agree_with_twin(data, n_acc, n_units, n_pos, n_rows):
    """Accounts by their set of underlying rows (pmrisk.kernel.groups): the same active
    units, sets (in first-account order) and account sets as the numpy twin, one word of
    rows or several."""
    draw = data.draw
    if n_acc == 0:
        n_units = 0
    if n_units == 0:
        n_pos = 0
    def ints(n, hi):
        return np.array(draw(st.lists(st.integers(0, max(hi, 0)), min_size=n, max_size=n)),
                        dtype=np.int64)
    pos_unit = ints(n_pos, n_units - 1)
    quantity = np.array(draw(st.lists(st.sampled_from([0.0, -0.0, 1.0, -2.5, np.nan, np.inf]),
                                      min_size=n_pos, max_size=n_pos)), dtype=np.float64)
    unit_account = np.sort(ints(n_units, n_acc - 1))
    unit_row = ints(n_units, min(n_rows - 1, draw(st.sampled_from([2, n_rows - 1]))))
    got = row_sets(pos_unit, quantity, unit_account, unit_row, n_acc, n_rows)
    want = oracles.row_sets(pos_unit, quantity, unit_account, unit_row, n_acc, n_rows)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape and (g == w).all(), (g, w)

"""The Monitor tick's selection helpers in :mod:`pmrisk.kernel.assemble` (``prices_at``: the
moved prices written per unit; ``all_set``: the finite flags of a selection) against their
numpy twins in ``tests/oracles.py``, on drawn selections: the same bits, rows outside the
selection untouched."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import assemble

PRICE = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([0.0, -0.0, 1.0, np.nan]))


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(0, 30), n_types=st.integers(1, 5))
def test_prices_at_agrees_with_twin(data, n_units, n_types):
    sel = np.array(sorted(data.draw(st.sets(st.integers(0, max(n_units - 1, 0)),
                                            max_size=n_units))), dtype=np.int64)[:n_units]
    utype = np.array(data.draw(st.lists(st.integers(0, n_types - 1), min_size=len(sel),
                                        max_size=len(sel))), dtype=np.int64)
    by_type = [np.array(data.draw(st.lists(PRICE, min_size=n_types, max_size=n_types)))
               for _ in range(2)]
    start = [np.array(data.draw(st.lists(PRICE, min_size=n_units, max_size=n_units)))
             for _ in range(2)]
    got = [a.copy() for a in start]
    want = [a.copy() for a in start]
    assemble.prices_at(sel, utype, *by_type, *got)
    oracles.prices_at(sel, utype, *by_type, *want)
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes()


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 30))
def test_all_set_agrees_with_twin(data, n):
    flags = np.array(data.draw(st.lists(st.sampled_from([1.0, 0.0, np.nan, 1.0, 1.0]),
                                        min_size=n, max_size=n)))
    sel = np.flatnonzero(np.array(data.draw(st.lists(st.booleans(), min_size=n,
                                                     max_size=n)), dtype=bool))
    assert assemble.all_set(flags, sel) is oracles.all_set(flags, sel)


def test_all_set_reads_only_the_selection():
    flags = np.array([1.0, 0.0, 1.0, np.nan])
    assert assemble.all_set(flags, np.array([0, 2], dtype=np.int64))
    assert not assemble.all_set(flags, np.array([0, 1], dtype=np.int64))
    assert not assemble.all_set(flags, np.array([3], dtype=np.int64))
    assert assemble.all_set(flags, np.zeros(0, dtype=np.int64))


# a lowest cell and cells at, just above and far from it, of either sign, and the infinities
CELL = st.one_of(st.floats(allow_nan=False, allow_infinity=True),
                 st.sampled_from([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324]))


@settings(deadline=None)
@given(data=st.data(), ns=st.integers(1, 12))
def test_binding_cell_agrees_with_twin(data, ns):
    """``binding_cell`` (a shorter tie test when the lowest cell is a loss) against the tie
    rule written plainly, on rows whose cells sit at, one or a few ulps and 1e-12 relative
    from the lowest, at +-0, subnormals and the infinities."""
    base = data.draw(CELL)
    cells = []
    for _ in range(ns):
        kind = data.draw(st.integers(0, 3))
        if kind == 0:
            cells.append(data.draw(CELL))
        elif kind == 1:
            cells.append(float(np.nextafter(base, np.inf) if data.draw(st.booleans())
                               else base))
        elif kind == 2:
            cells.append(base + abs(base) * data.draw(st.sampled_from([1e-12, 9.9e-13,
                                                                       1.01e-12, 2e-12])))
        else:
            k = data.draw(st.integers(1, 4))
            x = base
            for _ in range(k):
                x = np.nextafter(x, np.inf)
            cells.append(float(x))
    wrow = np.array(cells + [7.0] * 3)            # the row is wider than its ns cells
    wrow[np.isnan(wrow)] = base if base == base else 0.0
    lowest = float(wrow[:ns].min())
    vol_code = np.array([data.draw(st.lists(st.integers(0, 2), min_size=ns + 3,
                                            max_size=ns + 3))], dtype=np.int64)
    got = assemble.binding_cell(wrow, ns, lowest, vol_code, 0)
    want = oracles.binding_cell(wrow, ns, lowest, vol_code, 0)
    assert got[0] == want[0]
    assert np.float64(got[1]).tobytes() == np.float64(want[1]).tobytes()

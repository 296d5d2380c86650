"""kernel/asof.py and kernel/instances.py against their numpy twins in tests/oracles.py (the
code of ``pmrisk.io.fill`` and ``pmrisk.io.book`` they replaced)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from twins import assert_same as _same, int_array as _ints
from pmrisk.kernel import asof, instances


@settings(deadline=None)
@given(data=st.data(), n_key=st.integers(1, 5), n_snap=st.integers(0, 6),
       n=st.integers(0, 25))
def test_forward_rows_agree_with_twin(data, n_key, n_snap, n):
    snap_ns = np.unique(_ints(data, n_snap, -5, 20) * 10)
    n_snap = len(snap_ns)
    # (key, time) pairs without repeats; times on and between the snapshot times
    pairs = sorted(set(zip(_ints(data, n, 0, n_key - 1).tolist(),
                           (_ints(data, n, -6, 21) * 5).tolist())))
    pairs = data.draw(st.permutations(pairs))
    key = np.array([p[0] for p in pairs], dtype=np.int64)
    ns = np.array([p[1] for p in pairs], dtype=np.int64)
    needed = np.unique(_ints(data, data.draw(st.integers(0, 12)), 0,
                             max(n_key * n_snap - 1, 0))) if n_snap else np.zeros(0, np.int64)
    order = np.lexsort((ns, key))
    _same(asof.forward_rows(key, ns, order, snap_ns, needed),
          oracles.forward_rows(key, ns, order, snap_ns, needed))


@settings(deadline=None)
@given(data=st.data(), n_ins=st.integers(1, 6), n_snap=st.integers(1, 4),
       n=st.integers(0, 20))
def test_instance_columns_agree_with_twin(data, n_ins, n_snap, n):
    nat = np.iinfo(np.int64).min
    snap_ns = np.unique(_ints(data, n_snap, -10**18, 4 * 10**18))
    n_snap = len(snap_ns)
    kind = _ints(data, n_ins, 0, 3)
    expiry = np.array(data.draw(st.lists(st.one_of(st.just(nat),
                                                    st.integers(-10**18, 4 * 10**18)),
                                          min_size=n_ins, max_size=n_ins)), dtype=np.int64)
    floats = st.one_of(st.just(np.nan), st.floats(-1e6, 1e6))
    strike = np.array(data.draw(st.lists(floats, min_size=n_ins, max_size=n_ins)))
    is_call = _ints(data, n_ins, 0, 1)
    n_m = data.draw(st.integers(1, 8))
    fwd = np.array(data.draw(st.lists(floats, min_size=n_m, max_size=n_m)))
    args = (_ints(data, n, 0, n_ins - 1), _ints(data, n, 0, n_snap - 1), kind, expiry, strike,
            is_call, _ints(data, n, 0, n_m - 1), fwd,
            np.array(data.draw(st.lists(floats, min_size=n, max_size=n))), snap_ns)
    got = instances.instance_columns(*args)
    want = oracles.instance_columns(*args)
    _same(tuple(g.view(np.int64) for g in got), tuple(w.view(np.int64) for w in want))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(1, 9), n_a=st.integers(0, 20), n_b=st.integers(0, 6),
       shift=st.integers(0, 1))
def test_pair_keys_agree_with_twin(data, n, n_a, n_b, shift):
    args = (n, _ints(data, n_a, -shift, 10**9), _ints(data, n_a, 0, n - 1),
            _ints(data, n_b, -shift, 10**9), _ints(data, n_b, 0, n - 1), shift)
    _same(instances.pair_keys(*args), oracles.pair_keys(*args))

"""Helpers of the kernel-twin agreement tests (``test_rowkeys.py``, ``test_fill_kernels.py``):
an int64 array drawn by hypothesis, and the exact comparison of a kernel's outputs with its
twin's."""

import numpy as np
from hypothesis import strategies as st


def int_array(data, n, lo, hi):
    """``n`` int64 values in ``[lo, hi]`` drawn from hypothesis' ``data``."""
    return np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                    dtype=np.int64)


def assert_same(got, want):
    """A kernel's output (an array, or a tuple of arrays and scalars) equals its twin's:
    the same dtypes, shapes and values."""
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype and g.shape == w.shape, (g, w)
            assert np.array_equal(g, w), (g, w)
        else:
            assert g == w

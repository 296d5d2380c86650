"""One place for the numba options every kernel uses.

``error_model="numpy"``: IEEE semantics for division (inf/nan instead of ZeroDivisionError);
the kernels branch explicitly on T <= 0 and tiny sigma*sqrt(T) so neither ever reaches a
division, but a stray zero must not raise from inside a hot loop.  No ``fastmath``: it implies
``nnan``/``ninf`` and risk code must see a NaN if one ever appears.
"""

import numba as nb

JIT = dict(cache=True, nogil=True, error_model="numpy")


def njit(*args, **kwargs):
    """``numba.njit`` with the house options (cache, nogil, numpy error model)."""
    opts = dict(JIT)
    opts.update(kwargs)
    return nb.njit(*args, **opts)

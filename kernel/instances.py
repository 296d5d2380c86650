"""Per instrument instance (instrument, snapshot) work of ``pmrisk.io.book``'s general path,
in one pass each (the one-snapshot path is ``validate.one_snapshot``):

* ``instance_columns``: the forward with its fallback to the underlying's index price, the
  years to expiry, the strike and the option type the kernels read;
* ``pair_keys``: the keys ``snapshot * n + instrument`` (or account name) the book groups and
  looks rows up by (``rowkeys.split_pairs`` splits them).
"""

import numpy as np

from ._config import njit
from .instruments import CALL, OPTION, PERPETUAL, SPOT
from .validate import NAT, NS_PER_YEAR


@njit
def instance_columns(inst_ins, inst_snap, kind, expiry, strike, is_call, m_rows,
                     underlying_price, und_px, snap_ns):
    """``(forward, years, strike, is_call)`` of each instance ``k`` of instrument
    ``inst_ins[k]`` at snapshot ``inst_snap[k]`` (market row ``m_rows[k]``): the market's
    ``underlying_price``, else (NaN) the index price ``und_px[k]``; years from the snapshot's
    time ``snap_ns`` to ``expiry`` (0 without an expiry or for a spot or perpetual); the strike,
    1 where NaN; ``is_call``, a call unless an option."""
    n = inst_ins.shape[0]
    forward = np.empty(n)
    years = np.empty(n)
    a_strike = np.empty(n)
    a_call = np.empty(n, dtype=np.int64)
    for k in range(n):
        r = inst_ins[k]
        f = underlying_price[m_rows[k]]
        forward[k] = und_px[k] if f != f else f
        kd = kind[r]
        e = expiry[r]
        if kd == SPOT or kd == PERPETUAL or e == NAT:
            years[k] = 0.0
        else:
            years[k] = np.float64(e - snap_ns[inst_snap[k]]) / np.float64(NS_PER_YEAR)
        s = strike[r]
        a_strike[k] = 1.0 if s != s else s
        a_call[k] = is_call[r] if kd == OPTION else CALL
    return forward, years, a_strike, a_call


@njit
def pair_keys(n, hi_a, lo_a, hi_b, lo_b, shift):
    """The keys ``(hi + shift) * n + lo`` of the pairs ``(hi_a, lo_a)`` then ``(hi_b, lo_b)``
    (int64; ``lo < n``): an instance's (snapshot, instrument), a market row's (snapshot or -1
    with ``shift`` 1, instrument), an account's (snapshot, name)."""
    n_a = hi_a.shape[0]
    n_b = hi_b.shape[0]
    out = np.empty(n_a + n_b, dtype=np.int64)
    for i in range(n_a):
        out[i] = (hi_a[i] + shift) * n + lo_a[i]
    for i in range(n_b):
        out[n_a + i] = (hi_b[i] + shift) * n + lo_b[i]
    return out

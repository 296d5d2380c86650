"""The as-of join of ``pmrisk.io.fill`` (``fill_market="forward"``) in one pass: for each
(key, snapshot) pair a snapshot needs, the key's latest row at or before the snapshot's time.
"""

import numpy as np

from ._config import njit


@njit
def forward_rows(key, ns, order, snap_ns, needed):
    """``(src, snap)`` of each row to add: for each pair ``needed`` (``key * n_snap +
    snapshot``, ascending) whose key has no row at the snapshot's time ``snap_ns[snapshot]``,
    the key's latest row before that time (``src``, a row of ``key``/``ns``) and the
    snapshot; a pair whose key has no earlier row gets nothing (never backward).  ``order``:
    the rows sorted by (key, ns), no two alike; ``key`` >= 0."""
    n = order.shape[0]
    n_snap = snap_ns.shape[0]
    n_need = needed.shape[0]
    src = np.empty(n_need, dtype=np.int64)
    snap = np.empty(n_need, dtype=np.int64)
    m = 0
    g = 0                                   # the current key's run: order[g:g_end]
    g_end = 0
    g_key = -1
    for j in range(n_need):
        k = needed[j] // n_snap
        s = needed[j] % n_snap
        if k != g_key:                      # needed ascends: keys ascend, runs follow
            g_key = k
            lo, hi = 0, n                   # the first row of key >= k
            while lo < hi:
                mid = (lo + hi) >> 1
                if key[order[mid]] < k:
                    lo = mid + 1
                else:
                    hi = mid
            g = lo
            g_end = g
            while g_end < n and key[order[g_end]] == k:
                g_end += 1
        t = snap_ns[s]
        lo, hi = g, g_end                   # the first row of the run with ns > t
        while lo < hi:
            mid = (lo + hi) >> 1
            if ns[order[mid]] <= t:
                lo = mid + 1
            else:
                hi = mid
        if lo > g:
            r = order[lo - 1]
            if ns[r] != t:                  # a row at t: nothing to fill
                src[m] = r
                snap[m] = s
                m += 1
    return src[:m], snap[:m]

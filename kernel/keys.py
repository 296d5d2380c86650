"""Key checks of input validation in one pass over the rows (no sort, no hash table).

``duplicated_in_groups(group, key, n_key)``: which rows repeat an earlier row's ``(group,
key)`` pair, for ``group`` non-decreasing (rows of one group contiguous: the positions of an
account, the rows of a snapshot) and ``0 <= key < n_key``.  A stamp per key remembers the last
group it was seen in, so the pass is O(rows) with an array of ``n_key`` int64 (the symbols of
the venue), not O(rows log rows) like a sort of the pairs; groups must be >= 0.  Every
occurrence but the first is flagged, as ``numpy.unique(pairs, return_index=True)`` would say.
"""

import numpy as np

from ._config import njit


@njit
def duplicated_in_groups(group, key, n_key):
    """``(mask, ok)``: the rows that repeat an earlier ``(group, key)``, and ``ok`` False
    (the mask then unfinished) when ``group`` decreases somewhere: the caller sorts instead."""
    n = key.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    stamp = np.full(n_key, -1, dtype=np.int64)
    for i in range(n):
        k = key[i]
        g = group[i]
        if i and g < group[i - 1]:
            return out, False
        if stamp[k] == g:
            out[i] = True
        else:
            stamp[k] = g
    return out, True


@njit
def match_strings(offsets, data, null, allowed_offsets, allowed_data):
    """Index in ``allowed`` of each string of an Arrow string array (``offsets``, ``data``:
    its buffers, offsets already sliced to the array), -1 where ``null`` or not allowed;
    ``allowed`` given the same way (a handful of short names: kinds, settlements)."""
    n = offsets.shape[0] - 1
    n_allowed = allowed_offsets.shape[0] - 1
    out = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if null[i]:
            continue
        a = np.int64(offsets[i])
        length = np.int64(offsets[i + 1]) - a
        for j in range(n_allowed):
            b = np.int64(allowed_offsets[j])
            if np.int64(allowed_offsets[j + 1]) - b == length:
                q = 0
                while q < length and data[a + q] == allowed_data[b + q]:
                    q += 1
                if q == length:
                    out[i] = j
                    break
    return out

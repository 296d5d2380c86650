"""The resource estimate's pass over a book's accounts (:mod:`pmrisk.engine.resources`):
accounts grouped by the set of underlyings their positions hold (one joint scenario set per
group under ``cross_unit = "correlated"``)."""

import numpy as np

from ._config import njit
from .groups import mask_sets
from .layout import fmax


@njit
def account_groups(pos_account, pos_instr, und_code, quantity, unit_key, key_div, n_acc, n_und,
                   buckets, extreme):
    """Accounts grouped by the set of underlyings (``und_code`` of their instruments) of their
    positions with a non-zero quantity, groups in the order of their first account (by
    account index); accounts without one are in no group.  Per group: ``d`` (how many
    underlyings), ``count`` (accounts), ``most`` (the most units one of them holds: units
    are ``unit_key // key_div``, an account index per unit), and of the underlyings the
    largest ``buckets`` and ``extreme`` (``numpy.maximum`` in underlying order).

    One bit mask per account and a hash table over the masks: one pass over the positions,
    one over the accounts.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.resources import account_groups
    >>> d, count, most, b, e = account_groups(
    ...     np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 1, 0]), np.array([0, 1]),
    ...     np.array([1.0, 1.0, 1.0, 2.0, -1.0]), np.array([0, 0, 1, 2, 2]), 1, 3, 2,
    ...     np.array([5, 7]), np.array([2.0, 3.0]))
    >>> d.tolist(), count.tolist(), most.tolist(), b.tolist(), e.tolist()
    ([2, 1], [2, 1], [2, 1], [7, 7], [3.0, 3.0])
    """
    words = (n_und + 63) // 64
    masks = np.zeros((n_acc, words), dtype=np.uint64)
    held = np.zeros(n_acc, dtype=np.bool_)
    one = np.uint64(1)
    for p in range(pos_account.shape[0]):
        if quantity[p] != 0.0:
            a = pos_account[p]
            k = und_code[pos_instr[p]]
            masks[a, k >> 6] |= one << np.uint64(k & 63)
            held[a] = True
    units = np.zeros(n_acc, dtype=np.int64)
    for j in range(unit_key.shape[0]):
        units[unit_key[j] // key_div] += 1
    lead = np.empty(n_acc, dtype=np.int64)
    acc_set = np.full(n_acc, -1, dtype=np.int64)
    n_g = mask_sets(masks, held, lead, acc_set)
    count = np.zeros(n_g, dtype=np.int64)
    most = np.zeros(n_g, dtype=np.int64)
    for a in range(n_acc):
        g = acc_set[a]
        if g >= 0:
            count[g] += 1
            most[g] = max(most[g], units[a])
    d = np.zeros(n_g, dtype=np.int64)
    b = np.zeros(n_g, dtype=np.int64)
    e = np.zeros(n_g)
    for g in range(n_g):
        a = lead[g]
        for k in range(n_und):
            if (masks[a, k >> 6] >> np.uint64(k & 63)) & one:
                if d[g] == 0:
                    b[g] = buckets[k]
                    e[g] = extreme[k]
                else:
                    b[g] = max(b[g], buckets[k])
                    e[g] = fmax(e[g], extreme[k])
                d[g] += 1
    return d, count, most, b, e

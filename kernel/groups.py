"""Accounts by the set of underlying rows their units hold, for the joint stress of
``cross_unit = "correlated"`` (:class:`pmrisk.engine.correlated.JointStress`): one pass over
the positions, one over the units, one over the accounts (a bit mask per account and a hash
table over the masks)."""

import numpy as np

from ._config import njit


@njit
def mask_sets(mask, held, lead, acc_set):
    """The distinct bit masks ``mask[a]`` (rows of uint64 words) of the accounts ``a`` with
    ``held[a]``, by a hash table over the masks: ``acc_set[a]`` each account's set (left as
    it is where not held), ``lead[s]`` each set's first account (sets in the order of their
    first account); returns the number of sets.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.groups import mask_sets
    >>> mask = np.array([[5], [2], [5]], dtype=np.uint64)
    >>> lead, acc_set = np.zeros(3, dtype=np.int64), np.full(3, -1)
    >>> mask_sets(mask, np.array([True, True, True]), lead, acc_set), acc_set.tolist()
    (2, [0, 1, 0])
    """
    n_acc, words = mask.shape
    size = 1
    while size < 2 * n_acc:
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    n_sets = 0
    for a in range(n_acc):
        if not held[a]:
            continue
        h = np.uint64(14695981039346656037)
        for w in range(words):
            h = (h ^ mask[a, w]) * np.uint64(1099511628211)
        h ^= h >> np.uint64(29)
        slot = np.int64(h & np.uint64(size - 1))
        while True:
            s = table[slot]
            if s < 0:
                table[slot] = n_sets
                lead[n_sets] = a
                acc_set[a] = n_sets
                n_sets += 1
                break
            same = True
            for w in range(words):
                if mask[lead[s], w] != mask[a, w]:
                    same = False
                    break
            if same:
                acc_set[a] = s
                break
            slot = (slot + 1) & (size - 1)
    return n_sets


@njit
def row_sets(pos_unit, quantity, unit_account, unit_row, n_acc, n_rows):
    """``(active, masks, acc_set)``: per unit whether a position of it has a non-zero
    quantity (``pos_unit``: each position's unit); the distinct non-empty sets of underlying
    rows (``unit_row``) of the active units of an account (``unit_account``), as bit masks
    (row r: bit ``r % 64`` of word ``r // 64``), in the order of their first account; and per
    account its set's index into ``masks`` (-1: no active unit).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.groups import row_sets
    >>> active, masks, acc_set = row_sets(
    ...     np.array([0, 1, 2, 3, 3]), np.array([1.0, 0.0, 2.0, 0.0, -1.0]),
    ...     np.array([0, 1, 1, 2]), np.array([2, 0, 0, 1]), 4, 3)
    >>> active.tolist(), masks[:, 0].tolist(), acc_set.tolist()
    ([True, False, True, True], [4, 1, 2], [0, 1, 2, -1])
    """
    n_units = unit_account.shape[0]
    active = np.zeros(n_units, dtype=np.bool_)
    for p in range(pos_unit.shape[0]):
        if quantity[p] != 0.0:
            active[pos_unit[p]] = True
    words = max((n_rows + 63) // 64, 1)
    mask = np.zeros((n_acc, words), dtype=np.uint64)
    held = np.zeros(n_acc, dtype=np.bool_)
    one = np.uint64(1)
    for u in range(n_units):
        if active[u]:
            a, r = unit_account[u], unit_row[u]
            mask[a, r >> 6] |= one << np.uint64(r & 63)
            held[a] = True
    lead = np.empty(n_acc, dtype=np.int64)          # per set, its first account
    acc_set = np.full(n_acc, -1, dtype=np.int64)
    n_sets = mask_sets(mask, held, lead, acc_set)
    masks = np.empty((n_sets, words), dtype=np.uint64)
    for s in range(n_sets):
        masks[s] = mask[lead[s]]
    return active, masks, acc_set

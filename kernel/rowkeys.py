"""Keys the bindings group input rows by, computed in one pass each (the arithmetic on
per-instrument, per-position and per-unit arrays that ``pmrisk.engine.units``,
``pmrisk.engine.risk_arrays`` and ``pmrisk.backtest`` did with numpy):

* ``settlement_combos``: an instrument's (underlying, settlement kind) as one int64 key;
* ``unit_keys`` and ``split_pairs``: the (account, unit type) pair of each position, open
  order and reserve as ``account * n_types + type``, and back;
* ``settlement_types`` and ``unit_pairs``: the same keys made distinct in the same pass (a
  table of every key, no sort), as ``pmrisk.engine.units.build_units`` groups by them;
* ``time_runs``: the distinct values of a time column and how many rows hold each, when the
  column never decreases.
"""

import numpy as np

from ._config import njit
from .instruments import INVERSE


@njit
def settlement_combos(und_code, settlement):
    """Per instrument ``2 * und_code + 1`` for an inverse instrument, ``2 * und_code``
    otherwise (int64): one key per (underlying, settlement kind)."""
    n = und_code.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = 2 * und_code[i] + (1 if settlement[i] == INVERSE else 0)
    return out


@njit
def unit_keys(n_types, instr_type, pos_account, pos_instr, ord_account, ord_instr,
              res_account, res_type):
    """The key ``account * n_types + unit type`` of each position, then each open order, then
    each reserve (int64, in that order): a position's and an order's type is its instrument's
    (``instr_type[instr]``), a reserve's is given."""
    n_p = pos_account.shape[0]
    n_o = ord_account.shape[0]
    n_r = res_account.shape[0]
    out = np.empty(n_p + n_o + n_r, dtype=np.int64)
    for i in range(n_p):
        out[i] = pos_account[i] * n_types + instr_type[pos_instr[i]]
    for i in range(n_o):
        out[n_p + i] = ord_account[i] * n_types + instr_type[ord_instr[i]]
    for i in range(n_r):
        out[n_p + n_o + i] = res_account[i] * n_types + res_type[i]
    return out


@njit
def split_pairs(pair, n_types):
    """``(account, unit type)`` of each key ``account * n_types + type`` (keys >= 0)."""
    n = pair.shape[0]
    account = np.empty(n, dtype=np.int64)
    utype = np.empty(n, dtype=np.int64)
    for i in range(n):
        account[i] = pair[i] // n_types
        utype[i] = pair[i] % n_types
    return account, utype


@njit(inline="always")
def _dense_ranks(keys, hi):
    """Each key's rank among the distinct ``keys`` (all in ``0 <= key < hi``), by a table of
    the ``hi`` values: ``(rank per value, -1 where absent; number of distinct keys;
    rank of each key)``."""
    n = keys.shape[0]
    rank = np.full(hi, -1, dtype=np.int64)
    for i in range(n):
        rank[keys[i]] = 0
    m = 0
    for v in range(hi):
        if rank[v] == 0:
            rank[v] = m
            m += 1
    inverse = np.empty(n, dtype=np.int64)
    for i in range(n):
        inverse[i] = rank[keys[i]]
    return rank, m, inverse


@njit
def settlement_types(und_code, settlement):
    """The distinct :func:`settlement_combos` keys of the instruments, sorted, and each
    instrument's index among them (``numpy.unique(keys, return_inverse=True)``), by a table
    of every key up to the largest (two per underlying code, ``und_code >= 0``)."""
    keys = settlement_combos(und_code, settlement)
    hi = 0
    for i in range(keys.shape[0]):
        if keys[i] >= hi:
            hi = keys[i] + 1
    rank, m, inverse = _dense_ranks(keys, hi)
    present = np.empty(m, dtype=np.int64)
    for v in range(hi):
        if rank[v] >= 0:
            present[rank[v]] = v
    return present, inverse


@njit
def unit_pairs(n_types, instr_type, pos_account, pos_instr, ord_account, ord_instr,
               res_account, res_type):
    """The distinct :func:`unit_keys` pairs, sorted (by account, then type), split as
    :func:`split_pairs` does, and each row's index among them: ``(ok, account, utype,
    inverse)``, by a table of every key when the keys are not much sparser than the rows
    (``max key < max(8 * rows, 65536)``, the rule of ``pmrisk.io.arrow.unique_keys``); else
    ``ok`` False and the rest empty (the caller sorts)."""
    keys = unit_keys(n_types, instr_type, pos_account, pos_instr, ord_account, ord_instr,
                     res_account, res_type)
    n = keys.shape[0]
    none = np.zeros(0, dtype=np.int64)
    hi = 0
    for i in range(n):
        if keys[i] < 0:
            return False, none, none, none
        if keys[i] >= hi:
            hi = keys[i] + 1
    if n == 0 or hi > max(8 * n, 1 << 16):
        return n == 0, none, none, none
    rank, m, inverse = _dense_ranks(keys, hi)
    account = np.empty(m, dtype=np.int64)
    utype = np.empty(m, dtype=np.int64)
    for v in range(hi):
        if rank[v] >= 0:
            account[rank[v]] = v // n_types
            utype[rank[v]] = v % n_types
    return True, account, utype, inverse


@njit
def time_runs(ns):
    """``(values, counts, ok)`` of an int64 column: its distinct values in order and the
    number of rows holding each, when the column never decreases; ``ok`` False (and both
    empty) when it decreases somewhere (the caller sorts it and asks again)."""
    n = ns.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), True
    k = 1
    down = 0
    for i in range(1, n):               # branch-free: one comparison pass the loop vectorises
        k += ns[i] != ns[i - 1]
        down += ns[i] < ns[i - 1]
    if down:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), False
    values = np.empty(k, dtype=np.int64)
    counts = np.empty(k, dtype=np.int64)
    start = 0
    for j in range(k):                  # each run's end by galloping, then bisection
        v = ns[start]
        lo = start                      # ns[lo] == v
        step = 1
        hi = start + 1
        while hi < n and ns[hi] == v:
            lo = hi
            step *= 2
            hi = start + step
        hi = min(hi, n)
        # ns[lo] == v and (hi == n or ns[hi] != v): the run ends in (lo, hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ns[mid] == v:
                lo = mid
            else:
                hi = mid
        values[j] = v
        counts[j] = hi - start
        start = hi
    return values, counts, True

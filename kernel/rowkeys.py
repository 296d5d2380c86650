"""Keys the bindings group input rows by, computed in one pass each (the arithmetic on
per-instrument, per-position and per-unit arrays that ``pmrisk.engine.units``,
``pmrisk.engine.risk_arrays`` and ``pmrisk.backtest`` did with numpy):

* ``settlement_combos``: an instrument's (underlying, settlement kind) as one int64 key;
* ``unit_keys`` and ``split_pairs``: the (account, unit type) pair of each position, open
  order and reserve as ``account * n_types + type``, and back;
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

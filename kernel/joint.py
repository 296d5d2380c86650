"""Joint stress across units (``cross_unit = "correlated"``).

Each joint scenario j moves every underlying row r by its own shock.  A unit's P&L at that
move is read from its risk vector over revaluation cells (see :mod:`pmrisk.engine.correlated`):

    value(v) = sum_k weight[j, r, k] * vector[idx[j, r] + k*stride[j, r] + v],  k < n_terms

for vol index v < n_vol[j, r].  With ``n_terms = 1`` (weight 1) the cells are the exact
revaluation at the move; with ``n_terms = 4`` they are the four grid nodes around it and the
weights are cubic Lagrange weights.  In each joint scenario a unit takes its worst weighted vol
state (ties, within ``TIE_RTOL``, prefer vol ``same``, then the first); the account's joint
P&L is the sum over its units in USD; the joint worst is the largest joint loss.
"""

import numpy as np
from numba import prange

from ._config import njit
from .aggregate import TIE_RTOL, weigh_cell
from .scenarios import VOL_SAME


@njit(inline="always")
def _state_value(vec, i0, stride, v, w, n_terms):
    x = w[0] * vec[i0 + v]
    for k in range(1, n_terms):
        x += w[k] * vec[i0 + k * stride + v]
    return x


@njit(inline="always")
def _better(y, c, best, best_c, vol_code_row):
    """Is vol cell ``c`` with weighted value ``y`` preferred to the best so far?  Lower wins;
    within ``TIE_RTOL`` vol ``same`` wins, then the earlier cell (NaN always wins)."""
    if y != y:
        return True
    if best != best:
        return False
    if y - best <= TIE_RTOL * max(abs(y), abs(best)) and \
            best - y <= TIE_RTOL * max(abs(y), abs(best)):
        return vol_code_row[c] == VOL_SAME and vol_code_row[best_c] != VOL_SAME
    return y < best


@njit(inline="always")
def _unit_value(vec, i0, stride, nv, w, n_terms, vol_code_row, lw, gw, cap):
    """(weighted value, vol index) of a unit in one joint scenario: each vol state's value is
    interpolated once (nv <= 3)."""
    best = weigh_cell(_state_value(vec, i0, stride, 0, w, n_terms), lw, gw, cap, 0.0)
    best_v = 0
    for v in range(1, nv):
        y = weigh_cell(_state_value(vec, i0, stride, v, w, n_terms), lw, gw, cap, 0.0)
        if _better(y, i0 + v, best, i0 + best_v, vol_code_row):
            best = y
            best_v = v
    return best, best_v


@njit(inline="always")
def _account_totals(vectors, unit_row, unit_px, lo, hi, idx, stride, n_vol, wts, n_terms,
                    loss_weight, gain_weight, gain_cap_usd, vol_code, total):
    """Fill ``total[j]`` (USD) for the units ``lo:hi`` of one account; return the lowest."""
    lowest = np.inf
    for j in range(idx.shape[0]):
        t = 0.0
        for u in range(lo, hi):
            r = unit_row[u]
            px = unit_px[u]
            y, _ = _unit_value(vectors[u], idx[j, r], stride[j, r], n_vol[j, r], wts[j, r],
                               n_terms, vol_code[r], loss_weight[j, r], gain_weight[j, r],
                               gain_cap_usd[r] / px)
            t += y * px
        total[j] = t
        if t < lowest or t != t:
            lowest = t
    return lowest


@njit
def joint_worst(vectors, unit_row, unit_px, acc_start, idx, stride, n_vol, wts, n_terms,
                loss_weight, gain_weight, gain_cap_usd, vol_code):
    """Joint worst case per account.

    Parameters
    ----------
    vectors : float64[n_units, W]
        Unit risk vectors over the revaluation cells (settlement currency).
    unit_row : int64[n_units];  unit_px : float64[n_units]
        Scenario row of each unit and the USD price of its settlement currency.
    acc_start : int64[n_acc + 1]
        Units are sorted by account; account a owns units ``acc_start[a]:acc_start[a+1]``.
    idx, stride, n_vol : int64[n_joint, n_rows];  wts : float64[n_joint, n_rows, 4]
        Cells of each row's move in each joint scenario (module docstring).
    loss_weight, gain_weight : float64[n_joint, n_rows];  gain_cap_usd : float64[n_rows]
    vol_code : int64[n_rows, W]
        Vol state of each cell (ties prefer ``same``).

    Returns
    -------
    worst : float64[n_acc]         max(0, -min_j joint P&L), USD
    binding : int64[n_acc]         binding joint scenario (ties: the lowest index)
    unit_value : float64[n_units]  weighted P&L of each unit there (settlement currency)
    unit_vol : int64[n_units]      the vol index it took there
    """
    n_acc = acc_start.shape[0] - 1
    n_joint = idx.shape[0]
    worst = np.zeros(n_acc)
    binding = np.zeros(n_acc, dtype=np.int64)
    unit_value = np.zeros(vectors.shape[0])
    unit_vol = np.zeros(vectors.shape[0], dtype=np.int64)
    total = np.zeros(n_joint)                    # scratch, one account at a time
    for a in range(n_acc):
        lo = acc_start[a]
        hi = acc_start[a + 1]
        if n_joint == 0 or hi == lo:
            continue
        lowest = _account_totals(vectors, unit_row, unit_px, lo, hi, idx, stride, n_vol,
                                 wts, n_terms, loss_weight, gain_weight, gain_cap_usd,
                                 vol_code, total)
        bind = 0
        for j in range(n_joint):
            if total[j] != total[j] or (
                    total[j] - lowest <= TIE_RTOL * max(abs(total[j]), abs(lowest))):
                bind = j
                break
        binding[a] = bind
        b = total[bind]
        worst[a] = -b if (b < 0.0 or b != b) else 0.0
        for u in range(lo, hi):
            r = unit_row[u]
            px = unit_px[u]
            unit_value[u], unit_vol[u] = _unit_value(
                vectors[u], idx[bind, r], stride[bind, r], n_vol[bind, r], wts[bind, r],
                n_terms, vol_code[r], loss_weight[bind, r], gain_weight[bind, r],
                gain_cap_usd[r] / px)
    return worst, binding, unit_value, unit_vol


@njit(parallel=True)
def joint_candidates(vectors, unit_row, unit_px, acc_start, idx, stride, n_vol, wts, n_terms,
                     loss_weight, gain_weight, gain_cap_usd, vol_code, tol, max_candidates):
    """The joint scenarios that may bind, from approximate (interpolated) totals: every j whose
    total is within ``2*tol[a]`` (USD) of the account's lowest, where ``tol[a]`` bounds the
    approximation error of any total.  The true binding scenario is always among them.

    Returns ``(count int64[n_acc], candidates int64[n_acc, max_candidates])``, candidates in
    increasing j; ``count > max_candidates`` means "too many: take them all".  Accounts run in
    parallel (``NUMBA_NUM_THREADS``); each is computed by one thread, so the result does not
    depend on the number of threads.
    """
    n_acc = acc_start.shape[0] - 1
    n_joint = idx.shape[0]
    count = np.zeros(n_acc, dtype=np.int64)
    cand = np.zeros((n_acc, max_candidates), dtype=np.int64)
    for a in prange(n_acc):                      # accounts are independent: one per thread
        lo = acc_start[a]
        hi = acc_start[a + 1]
        if n_joint == 0 or hi == lo:
            continue
        total = np.empty(n_joint)                # scratch of this account
        lowest = _account_totals(vectors, unit_row, unit_px, lo, hi, idx, stride, n_vol,
                                 wts, n_terms, loss_weight, gain_weight, gain_cap_usd,
                                 vol_code, total)
        band = lowest + 2.0 * tol[a]
        k = 0
        for j in range(n_joint):
            if total[j] <= band or total[j] != total[j] or lowest != lowest:
                if k < max_candidates:
                    cand[a, k] = j
                k += 1
        count[a] = k
    return count, cand

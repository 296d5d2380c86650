"""Joint stress across units (SPEC §5, ``cross_unit = "correlated"``).

Each joint scenario j moves every underlying row r by its own shock; a unit's P&L at that move
was revalued beforehand into cells of the unit's risk vector (one cell per vol state, see
:mod:`pmrisk.correlated`): ``cell0[j, r]`` is the first of ``n_vol[j]`` consecutive cells
(3: up, same, down for the shells; 1: same, for the tails).  In each joint scenario a unit
takes its worst weighted vol cell; the account's joint P&L is the sum over its units in USD;
the joint worst is the largest joint loss.
"""

import numpy as np

from ._config import njit
from .aggregate import TIE_RTOL, weigh_cell
from .scenarios import VOL_SAME


@njit(inline="always")
def _unit_cell(vec, cell0, nv, vol_code_row, lw, gw, cap):
    """(weighted value, cell) of a unit in one joint scenario: its worst vol cell, ties
    (within ``TIE_RTOL``) preferring vol ``same``, then the first cell."""
    lowest = np.inf
    for c in range(cell0, cell0 + nv):
        w = weigh_cell(vec[c], lw, gw, cap, 0.0)
        if w != w:
            return w, c
        if w < lowest:
            lowest = w
    bind = -1
    bind_w = 0.0
    for c in range(cell0, cell0 + nv):
        w = weigh_cell(vec[c], lw, gw, cap, 0.0)
        if w - lowest <= TIE_RTOL * max(abs(w), abs(lowest)):
            if bind < 0 or (vol_code_row[c] == VOL_SAME and vol_code_row[bind] != VOL_SAME):
                bind = c
                bind_w = w
    return bind_w, bind


@njit
def joint_worst(vectors, unit_row, unit_px, acc_start, cell0, n_vol, loss_weight, gain_weight,
                gain_cap_usd, vol_code):
    """Joint worst case per account.

    Parameters
    ----------
    vectors : float64[n_units, W]
        Unit risk vectors over the revalued cells (settlement currency).
    unit_row : int64[n_units]
        Underlying row of each unit; ``unit_px`` float64[n_units]: USD per settlement unit.
    acc_start : int64[n_acc + 1]
        Units are sorted by account; account a owns units ``acc_start[a]:acc_start[a+1]``.
    cell0 : int64[n_joint, n_rows];  n_vol : int64[n_joint]
        First revalued cell of each row's move in each joint scenario, and how many vol cells.
    loss_weight, gain_weight : float64[n_joint, n_rows];  gain_cap_usd : float64[n_rows]
    vol_code : int64[n_rows, W]
        Vol state of each revalued cell (ties prefer ``same``).

    Returns
    -------
    worst : float64[n_acc]       max(0, -min_j joint P&L), USD
    binding : int64[n_acc]       binding joint scenario (ties: the lowest index)
    unit_value : float64[n_units] weighted P&L of each unit in its account's binding scenario
                                  (settlement currency; negative = loss)
    unit_cell : int64[n_units]   the cell (vol state) the unit took there
    """
    n_acc = acc_start.shape[0] - 1
    n_joint = cell0.shape[0]
    worst = np.zeros(n_acc)
    binding = np.zeros(n_acc, dtype=np.int64)
    unit_value = np.zeros(vectors.shape[0])
    unit_cell = np.zeros(vectors.shape[0], dtype=np.int64)
    total = np.zeros(n_joint)                    # scratch, one account at a time
    for a in range(n_acc):
        lo = acc_start[a]
        hi = acc_start[a + 1]
        lowest = np.inf
        for j in range(n_joint):
            t = 0.0
            for u in range(lo, hi):
                r = unit_row[u]
                px = unit_px[u]
                w, _ = _unit_cell(vectors[u], cell0[j, r], n_vol[j], vol_code[r],
                                  loss_weight[j, r], gain_weight[j, r], gain_cap_usd[r] / px)
                t += w * px
            total[j] = t
            if t < lowest or t != t:
                lowest = t
        bind = 0
        for j in range(n_joint):
            if total[j] != total[j] or (
                    total[j] - lowest <= TIE_RTOL * max(abs(total[j]), abs(lowest))):
                bind = j
                break
        binding[a] = bind
        b = total[bind] if n_joint > 0 else 0.0
        worst[a] = -b if (b < 0.0 or b != b) else 0.0
        for u in range(lo, hi):
            r = unit_row[u]
            px = unit_px[u]
            if n_joint > 0:
                unit_value[u], unit_cell[u] = _unit_cell(
                    vectors[u], cell0[bind, r], n_vol[bind], vol_code[r],
                    loss_weight[bind, r], gain_weight[bind, r], gain_cap_usd[r] / px)
    return worst, binding, unit_value, unit_cell

"""Risk vectors per (account, unit), weighting, worst case and binding cell.

The weighting of one cell ``x`` of a unit whose settlement currency is worth ``px`` USD:

* ``x < 0``: ``min(loss_weight*x + dampener_usd/px, 0)``  (Deribit's extended dampener is the
  ``dampener_usd`` term; it is 0 on every other table),
* ``x >= 0``: ``min(gain_weight*x, gain_cap_usd/px)``    (Deribit ``pnl_offset`` and
  ``max_offsetable_pnl``).

``worst_case = max(0, -min weighted cell)``; ties (cells within 1e-12 relative of the lowest)
prefer vol state ``same``, then the lowest index.
"""

import numpy as np
from numba import prange

from ._config import njit
from .scenarios import VOL_SAME

TIE_RTOL = 1e-12    # cells within this relative distance of the lowest are tied


@njit
def unit_risk_vectors(pos_unit, pos_instr, quantity, instr_pnl, n_units):
    """Sum ``quantity x instrument row`` into one risk vector per unit.

    ``pos_unit``, ``pos_instr``: int64[n_pos]; ``quantity``: float64[n_pos];
    ``instr_pnl``: float64[n_instr, S] from :func:`revalue.instrument_pnl`.
    Returns float64[n_units, S].  Each position is one pass over S cells: no positions x
    scenarios matrix.
    """
    width = instr_pnl.shape[1]
    out = np.zeros((n_units, width))
    for p in range(pos_unit.shape[0]):
        u = pos_unit[p]
        i = pos_instr[p]
        q = quantity[p]
        for s in range(width):
            out[u, s] += q * instr_pnl[i, s]
    return out


@njit(inline="always")
def weigh_cell(x, loss_weight, gain_weight, gain_cap, dampener):
    """A loss ``x < 0`` weighted and dampened (never above 0), a gain weighted and capped,
    NaN kept.  Both sides are computed and one is selected: no branch on the sign of the
    cell, which a CPU cannot predict."""
    loss = loss_weight * x + dampener
    loss = loss if loss < 0.0 else 0.0
    gain = gain_weight * x
    gain = gain if gain < gain_cap else gain_cap
    y = loss if x < 0.0 else gain
    return x if x != x else y       # NaN: never hide it behind a cap or a zero


@njit
def worst_of(vec, u_und, px, n_scen, loss_weight, gain_weight, gain_cap_usd, dampener_usd,
              vol_code, extra, extra_qty):
    """(worst_case, binding) of ``vec + extra_qty*extra``, weighted.

    Two passes: the lowest weighted cell, then the binding cell among the cells within
    ``TIE_RTOL`` of it (vol state ``same`` first, then the lowest index).  The tolerance makes
    ties survive rounding: Deribit's extended cells of a future equal the grid edge in exact
    arithmetic but not always in floating point.  ``worst`` is minus the binding cell's value.
    """
    n = n_scen[u_und]
    lowest = np.inf
    for s in range(n):
        x = vec[s] + extra_qty * extra[s]
        w = weigh_cell(x, loss_weight[u_und, s], gain_weight[u_und, s],
                       gain_cap_usd[u_und, s] / px, dampener_usd[u_und, s] / px)
        if w != w:                  # NaN cell: the worst case is unknown, say so
            return w, s
        if w < lowest:
            lowest = w
    bind = -1
    bind_w = 0.0
    for s in range(n):
        x = vec[s] + extra_qty * extra[s]
        w = weigh_cell(x, loss_weight[u_und, s], gain_weight[u_und, s],
                       gain_cap_usd[u_und, s] / px, dampener_usd[u_und, s] / px)
        if w - lowest <= TIE_RTOL * max(abs(w), abs(lowest)):
            if bind < 0 or (vol_code[u_und, s] == VOL_SAME
                            and vol_code[u_und, bind] != VOL_SAME):
                bind = s
                bind_w = w
    if bind < 0:
        return 0.0, 0
    return (-bind_w if bind_w < 0.0 else 0.0), bind


@njit(parallel=True)
def weighted_worst(vectors, unit_und, unit_px, n_scen, loss_weight, gain_weight,
                   gain_cap_usd, dampener_usd, vol_code):
    """Weighted vectors, worst case and binding cell per unit.

    ``vectors``: float64[n_units, S]; ``unit_und``: int64[n_units] (row of the scenario
    arrays); ``unit_px``: float64[n_units], USD value of one unit of settlement currency.
    Returns ``(weighted float64[n_units, S], worst float64[n_units], binding int64[n_units])``.
    Units run in parallel (``NUMBA_NUM_THREADS``), each on one thread, so the result does not
    depend on the number of threads.
    """
    n_units, width = vectors.shape
    weighted = np.zeros((n_units, width))
    worst = np.zeros(n_units)
    binding = np.zeros(n_units, dtype=np.int64)
    for u in prange(n_units):                    # units are independent: one per thread
        k = unit_und[u]
        px = unit_px[u]
        for s in range(n_scen[k]):
            weighted[u, s] = weigh_cell(vectors[u, s], loss_weight[k, s], gain_weight[k, s],
                                        gain_cap_usd[k, s] / px, dampener_usd[k, s] / px)
        # ``extra`` = the row itself with weight 0: same array types as order_margin's call,
        # so the helper compiles once
        worst[u], binding[u] = worst_of(vectors[u], k, px, n_scen, loss_weight, gain_weight,
                                         gain_cap_usd, dampener_usd, vol_code, vectors[u], 0.0)
    return weighted, worst, binding


@njit
def order_margin(order_unit, order_instr, order_qty, vectors, instr_pnl, unit_und, unit_px,
                 base_worst, n_scen, loss_weight, gain_weight, gain_cap_usd, dampener_usd,
                 vol_code):
    """Initial margin of each open order: the increase of its unit's worst case if the order
    alone filled, never negative.  Returns float64[n_orders]."""
    n = order_unit.shape[0]
    out = np.zeros(n)
    for o in range(n):
        u = order_unit[o]
        w, _ = worst_of(vectors[u], unit_und[u], unit_px[u], n_scen, loss_weight,
                         gain_weight, gain_cap_usd, dampener_usd, vol_code,
                         instr_pnl[order_instr[o]], order_qty[o])
        d = w - base_worst[u]
        out[o] = d if d > 0.0 else 0.0
    return out


@njit
def standalone_worst(rows, qty, und_row, px, instr_pnl, n_scen, loss_weight, gain_weight,
                     gain_cap_usd, dampener_usd, vol_code):
    """Worst weighted loss of ``qty[p]`` contracts of revaluation row ``rows[p]`` held alone
    (the excluded instruments' SPAN standalone margin): :func:`worst_of` of
    ``qty[p] * instr_pnl[rows[p]]`` on scenario row ``und_row[p]``, the settlement currency
    worth ``px[p]`` USD.  One pass over the row's cells per position, no positions x scenarios
    matrix.  Returns float64[n]."""
    n = rows.shape[0]
    out = np.zeros(n)
    zero = np.zeros(instr_pnl.shape[1])
    for p in range(n):
        out[p], _ = worst_of(zero, und_row[p], px[p], n_scen, loss_weight, gain_weight,
                             gain_cap_usd, dampener_usd, vol_code, instr_pnl[rows[p]], qty[p])
    return out

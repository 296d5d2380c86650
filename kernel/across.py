"""The across-units step of ``cross_unit = "correlated"`` after the joint stress, per account,
in one pass (:func:`correlated_shares`).

The joint stress gives each account its worst joint scenario (``worst``, USD) and, in it,
each unit's weighted P&L, move and vol state and each position's own loss.  Some cells stay
per unit (the extended table; the extremes with ``tail_mode = "per_unit"``): each unit's worst
such cell is its *tail*.  Per account, the largest tail (USD) binds when it is above the joint
worst; then that unit alone carries the account's scenario margin, at its tail cell.
Otherwise every unit carries its share of the joint scenario (when the joint worst is a loss).
"""

import numpy as np
from numba import prange

from ._config import njit
from .assemble import CHUNKS
from .layout import fmax


@njit
def _tail_cell(weighted, v, n_scen_u, per_unit, k):
    """``numpy.argmin`` of unit ``v``'s weighted cells that stay per unit (others +inf;
    the first NaN wins) and that cell's value."""
    width = weighted.shape[1]
    best = 0
    bv = np.inf
    for c in range(width):
        x = weighted[v, c] if (c < n_scen_u and per_unit[k, c]) else np.inf
        if c == 0:
            bv = x
            if x != x:
                break
            continue
        if x != x:
            best = c
            bv = x
            break
        if x < bv:
            best = c
            bv = x
    return best, bv


@njit(parallel=True)
def correlated_shares(acc, ua_start, pu_start, pu_order, unit_und, unit_px, weighted, n_scen,
                      per_unit, price_shock, vol_code, loss_weight, q_port, pos_row, instr_pnl,
                      worst, unit_value, unit_shock, unit_vol, pos_loss, scenario_margin,
                      scenario_price_shock, scenario_vol_state, own_loss):
    """For each account of ``acc``: its units' tails, the largest (ties: the first unit) and
    whether the joint scenario binds (``worst >= `` the largest tail, USD), then writes its
    units' ``scenario_margin`` (settlement currency), ``scenario_price_shock`` and
    ``scenario_vol_state`` (NaN / -1: not part of it) and its positions' ``own_loss``.
    Returns, per account of ``acc``, the unit whose tail binds (-1: the joint scenario) and
    that unit's tail cell.  Accounts are independent: the selection is cut in ``CHUNKS``
    runs over the threads (:func:`correlated_shares_serial`: on the calling thread)."""
    n_sel = acc.shape[0]
    # np.empty, each entry written by its run (np.full would be a parallel region of its own)
    tail_unit = np.empty(n_sel, dtype=np.int64)
    tail_at = np.empty(n_sel, dtype=np.int64)
    chunks = min(n_sel, CHUNKS)
    for c in prange(chunks):
        _shares_rows(c * n_sel // chunks, (c + 1) * n_sel // chunks, acc, ua_start, pu_start,
                     pu_order, unit_und, unit_px, weighted, n_scen, per_unit, price_shock,
                     vol_code, loss_weight, q_port, pos_row, instr_pnl, worst, unit_value,
                     unit_shock, unit_vol, pos_loss, scenario_margin, scenario_price_shock,
                     scenario_vol_state, own_loss, tail_unit, tail_at)
    return tail_unit, tail_at


@njit
def correlated_shares_serial(acc, ua_start, pu_start, pu_order, unit_und, unit_px, weighted,
                             n_scen, per_unit, price_shock, vol_code, loss_weight, q_port,
                             pos_row, instr_pnl, worst, unit_value, unit_shock, unit_vol,
                             pos_loss, scenario_margin, scenario_price_shock,
                             scenario_vol_state, own_loss):
    """:func:`correlated_shares` on the calling thread (small selections)."""
    n_sel = acc.shape[0]
    tail_unit = np.empty(n_sel, dtype=np.int64)
    tail_at = np.empty(n_sel, dtype=np.int64)
    _shares_rows(0, n_sel, acc, ua_start, pu_start, pu_order, unit_und, unit_px, weighted, n_scen,
                 per_unit, price_shock, vol_code, loss_weight, q_port, pos_row, instr_pnl,
                 worst, unit_value, unit_shock, unit_vol, pos_loss, scenario_margin,
                 scenario_price_shock, scenario_vol_state, own_loss, tail_unit, tail_at)
    return tail_unit, tail_at


@njit(inline="always")
def _shares_rows(lo, hi, acc, ua_start, pu_start, pu_order, unit_und, unit_px, weighted, n_scen,
                 per_unit, price_shock, vol_code, loss_weight, q_port, pos_row, instr_pnl,
                 worst, unit_value, unit_shock, unit_vol, pos_loss, scenario_margin,
                 scenario_price_shock, scenario_vol_state, own_loss, tail_unit, tail_at):
    """:func:`correlated_shares` on the accounts ``acc[lo:hi]``, into ``tail_unit`` and
    ``tail_at``."""
    for i in range(lo, hi):
        a = acc[i]
        tail_unit[i] = -1
        tail_at[i] = 0
        lead = -1
        lead_usd = 0.0
        lead_cell = 0
        lead_worst = 0.0
        for v in range(ua_start[a], ua_start[a + 1]):
            k = unit_und[v]
            c, tw = _tail_cell(weighted, v, n_scen[k], per_unit, k) if weighted.shape[1] \
                else (0, np.inf)
            tw_ = fmax(-tw, 0.0) if (tw == tw and tw != np.inf and tw != -np.inf) else 0.0
            usd = tw_ * unit_px[v]
            # largest_units: ties the first, a NaN lead gives way to a number
            if lead < 0 or usd > lead_usd or (lead_usd != lead_usd and usd == usd):
                lead = v
                lead_usd = usd
                lead_cell = c
                lead_worst = tw_
        best_tail = 0.0
        if lead >= 0 and lead_usd > 0.0:
            best_tail = lead_usd
        else:
            lead = -1
        w = worst[a]
        binds = w >= best_tail
        taking_part = binds and w > 0.0
        for v in range(ua_start[a], ua_start[a + 1]):
            if taking_part:
                scenario_margin[v] = -unit_value[v]
                scenario_price_shock[v] = unit_shock[v]
                scenario_vol_state[v] = unit_vol[v]
            else:
                scenario_margin[v] = 0.0
                scenario_price_shock[v] = np.nan
                scenario_vol_state[v] = -1
            for j in range(pu_start[v], pu_start[v + 1]):
                p = pu_order[j]
                own_loss[p] = pos_loss[p] if taking_part else 0.0
        if not binds and lead >= 0:         # the largest tail binds: that unit alone
            k = unit_und[lead]
            c = lead_cell
            scenario_margin[lead] = lead_worst
            scenario_price_shock[lead] = price_shock[k, c]
            scenario_vol_state[lead] = vol_code[k, c]
            lw = loss_weight[k, c]
            for j in range(pu_start[lead], pu_start[lead + 1]):
                p = pu_order[j]
                own_loss[p] = -lw * q_port[p] * instr_pnl[pos_row[p], c]
            tail_unit[i] = lead
            tail_at[i] = c

"""Excluded instruments' SPAN standalone margin per position and its sums per unit, in one
pass (:func:`excluded_margins`): each excluded position's worst weighted loss held alone
over its underlying's SPAN scenarios (:func:`pmrisk.kernel.aggregate.worst_of`), plus its
short option minimum; per unit the sum of its positions' standalone margins, and its open
orders' margin (the orders' margins summed, plus its reserves').  Open orders on excluded
instruments (:func:`excluded_order_margin`): the increase of the standalone margin of the
account's position in the instrument if the order filled."""

import numpy as np

from ._config import njit
from .aggregate import worst_of
from .instruments import OPTION


@njit
def excluded_margins(pos_unit, pos_row, excluded, quantity, short_all, som_rate, conv, unit_und,
                     unit_px, span_pnl, n_scen, loss_weight, gain_weight, gain_cap_usd,
                     dampener_usd, vol_code, ord_unit, order_im, res_oo, pos_margin,
                     unit_margin, open_orders):
    """Writes each position's ``pos_margin`` (0 unless ``excluded``): its standalone worst
    loss on ``span_pnl`` (revaluation rows x SPAN scenarios of its unit's underlying), the
    settlement currency worth ``unit_px`` USD, plus ``short_all * som_rate * conv`` of its
    unit; each unit's ``unit_margin`` (the sum of its positions', in position order) and
    ``open_orders`` (its orders' ``order_im`` summed in order, plus ``res_oo``)."""
    n_units = unit_margin.shape[0]
    zero = np.zeros(span_pnl.shape[1])
    for u in range(n_units):
        unit_margin[u] = 0.0
        open_orders[u] = 0.0
    for p in range(pos_unit.shape[0]):
        u = pos_unit[p]
        m = 0.0
        if excluded[p]:
            w, _ = worst_of(zero, unit_und[u], unit_px[u], n_scen, loss_weight, gain_weight,
                            gain_cap_usd, dampener_usd, vol_code, span_pnl[pos_row[p]],
                            quantity[p])
            m = w + short_all[p] * som_rate[p] * conv[u]
        pos_margin[p] = m
        unit_margin[u] += m
    for o in range(ord_unit.shape[0]):
        open_orders[ord_unit[o]] += order_im[o]
    for u in range(n_units):
        open_orders[u] = open_orders[u] + res_oo[u]


@njit(inline="always")
def _standalone_cost(qty, row_short, row_long, option, rate, zero, und, px, span_pnl, n_scen,
                     loss_weight, gain_weight, gain_cap_usd, dampener_usd, vol_code):
    """The standalone cost of ``qty`` contracts (:func:`excluded_order_margin`): the worst
    weighted loss on row ``row_short`` (a short quantity) or ``row_long``, plus the short
    option minimum ``max(-qty, 0) x rate`` of an ``option``."""
    short = -qty
    short = short if (short != short or short > 0.0) else 0.0
    som = (short if option else 0.0) * rate
    w, _ = worst_of(zero, und, px, n_scen, loss_weight, gain_weight, gain_cap_usd,
                    dampener_usd, vol_code, span_pnl[row_short if qty < 0 else row_long], qty)
    return w + som


@njit
def excluded_order_margin(sel, ou_start, ou_order, excluded_instr, ord_account, ord_instr,
                          ord_qty, ord_row, pa_start, pa_order, pos_instr, quantity, kind, itype,
                          som_type, conv, unit_und, unit_px, span_pnl, n_scen, loss_weight,
                          gain_weight, gain_cap_usd, dampener_usd, vol_code, order_im):
    """Writes ``order_im`` of the open orders on excluded instruments (``excluded_instr``) of
    the units ``sel`` (rows ``ou_order[ou_start[u]:ou_start[u+1]]``): the standalone cost of
    the account's position in the order's instrument (0 if none; found among its positions
    ``pa_order[pa_start[a]:pa_start[a+1]]``) after the order filled minus before, never
    negative.  A cost is the worst weighted loss of the quantity on ``span_pnl`` (the
    instrument's row, or the order's row ``ord_row`` for a short quantity: the floored
    copy), plus for an option the short contracts times the short option minimum
    (``som_type`` of its unit type ``itype``, times the unit's ``conv``).  Orders on other
    instruments are left as they are."""
    zero = np.zeros(span_pnl.shape[1])
    for k in range(sel.shape[0]):
        u = sel[k]
        und = unit_und[u]
        px = unit_px[u]
        for j in range(ou_start[u], ou_start[u + 1]):
            o = ou_order[j]
            i = ord_instr[o]
            if not excluded_instr[i]:
                continue
            a = ord_account[o]
            before = 0.0
            for m in range(pa_start[a], pa_start[a + 1]):
                p = pa_order[m]
                if pos_instr[p] == i:       # (account, instrument) is unique over positions
                    before = quantity[p]
                    break
            after = before + ord_qty[o]
            rate = som_type[itype[i]] * conv[u]
            r = ord_row[o]
            option = kind[i] == OPTION
            d = _standalone_cost(after, r, i, option, rate, zero, und, px, span_pnl, n_scen,
                                 loss_weight, gain_weight, gain_cap_usd, dampener_usd,
                                 vol_code) \
                - _standalone_cost(before, r, i, option, rate, zero, und, px, span_pnl, n_scen,
                                   loss_weight, gain_weight, gain_cap_usd, dampener_usd,
                                   vol_code)
            order_im[o] = d if (d != d or d > 0.0) else 0.0

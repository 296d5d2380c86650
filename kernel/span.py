"""Excluded instruments' SPAN standalone margin per position and its sums per unit, in one
pass (:func:`excluded_margins`): each excluded position's worst weighted loss held alone
over its underlying's SPAN scenarios (:func:`pmrisk.kernel.aggregate.worst_of`), plus its
short option minimum; per unit the sum of its positions' standalone margins, and its open
orders' margin (the orders' margins summed, plus its reserves')."""

import numpy as np

from ._config import njit
from .aggregate import worst_of


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

"""The result tables' numeric columns, each table's in one pass into one block.

:mod:`pmrisk.results` cuts a block's rows into Arrow columns (one Arrow array, sliced): a
table costs one allocation and one conversion instead of one numpy expression and one Arrow
array per column.  The arithmetic is the numpy formulas' own, in the same order (twins in
``tests/oracles.py``):

* :func:`unit_columns`: the units table's figures and their USD values;
* :func:`position_columns`: the positions table's rows (positions, then one ``unallocated``
  row per unit, then one per account with loans): quantities, values, Greeks and MM/IM
  contributions, in the settlement currency and in USD;
* :func:`account_columns`: the accounts table's margin ratio (:func:`ratio_of`), available
  margin, most withdrawable amount and status code.
"""

import numpy as np

from ._config import njit
from .layout import fmax, fmin

# rows of unit_columns' block, in the units table's order (each figure, then its USD value)
UNIT_FIGURES = ("worst_case", "roll_shock", "delta_shock", "short_option_minimum",
                "scenario_margin", "excluded_margin", "risk_matrix_margin",
                "open_orders_margin", "mmp_margin", "maintenance_margin", "initial_margin")
UNIT_GREEKS = ("delta", "gamma", "vega", "theta")
UNIT_COLUMNS = tuple(c for f in UNIT_FIGURES for c in (f, f + "_usd")) + tuple(
    c for f in UNIT_GREEKS for c in (f, f + "_usd"))
# rows of position_columns' block, in the positions table's order
POSITION_COLUMNS = ("quantity", "value", "value_usd", "model_value", "model_value_usd",
                    "unrealised_pnl", "unrealised_pnl_usd", "delta", "gamma", "vega", "theta",
                    "mm_contribution", "mm_contribution_usd", "im_contribution",
                    "im_contribution_usd")


@njit
def unit_columns(figures, greeks, unit_px, index_px):
    """The units table's numeric block (rows :data:`UNIT_COLUMNS`): each of ``figures``
    (k x n_units, in :data:`UNIT_FIGURES` order) and its USD value (x ``unit_px``), then
    each Greek of ``greeks`` (delta, gamma, vega, theta) and its USD value: delta x index
    price, gamma x index price^2 / 100 (cash gamma per 1 % move), vega and theta x
    ``unit_px``."""
    k, n = figures.shape
    out = np.empty((2 * k + 8, n))
    for u in range(n):
        px = unit_px[u]
        ipx = index_px[u]
        for f in range(k):
            v = figures[f, u]
            out[2 * f, u] = v
            out[2 * f + 1, u] = v * px
        r = 2 * k
        d = greeks[0, u]
        g = greeks[1, u]
        vg = greeks[2, u]
        th = greeks[3, u]
        out[r, u] = d
        out[r + 1, u] = d * ipx
        out[r + 2, u] = g
        out[r + 3, u] = g * ipx * ipx / 100.0
        out[r + 4, u] = vg
        out[r + 5, u] = vg * px
        out[r + 6, u] = th
        out[r + 7, u] = th * px
    return out


@njit
def position_columns(pos_unit, quantity, unit_px, value, model_value, upnl, delta, gamma, vega,
                     theta, mm_contribution, im_contribution, unit_mm, unit_im, loan_usd):
    """The positions table's numeric block (rows :data:`POSITION_COLUMNS`) over its rows:
    the positions, then one ``unallocated`` row per unit (quantity, values and Greeks 0; its
    MM/IM less its positions' contributions, summed in position order), then one row per
    account with loans (its loan maintenance margin, USD, as MM and IM)."""
    n_pos = pos_unit.shape[0]
    n_units = unit_px.shape[0]
    n_loan = loan_usd.shape[0]
    n = n_pos + n_units + n_loan
    out = np.zeros((15, n))
    mm_sum = np.zeros(n_units)
    im_sum = np.zeros(n_units)
    for p in range(n_pos):
        u = pos_unit[p]
        px = unit_px[u]
        out[0, p] = quantity[p]
        out[1, p] = value[p]
        out[2, p] = value[p] * px
        out[3, p] = model_value[p]
        out[4, p] = model_value[p] * px
        out[5, p] = upnl[p]
        out[6, p] = upnl[p] * px
        out[7, p] = delta[p]
        out[8, p] = gamma[p]
        out[9, p] = vega[p]
        out[10, p] = theta[p]
        out[11, p] = mm_contribution[p]
        out[12, p] = mm_contribution[p] * px
        out[13, p] = im_contribution[p]
        out[14, p] = im_contribution[p] * px
        mm_sum[u] += mm_contribution[p]
        im_sum[u] += im_contribution[p]
    for u in range(n_units):
        r = n_pos + u
        mm = unit_mm[u] - mm_sum[u]
        im = unit_im[u] - im_sum[u]
        out[11, r] = mm
        out[12, r] = mm * unit_px[u]
        out[13, r] = im
        out[14, r] = im * unit_px[u]
    for a in range(n_loan):
        r = n_pos + n_units + a
        out[11, r] = loan_usd[a]
        out[12, r] = loan_usd[a]
        out[13, r] = loan_usd[a]
        out[14, r] = loan_usd[a]
    return out


@njit(inline="always")
def ratio_of(equity, den):
    """The margin ratio as the accounts table shows it: ``equity / den`` (``den``: MM plus
    the liquidation cost), ``inf`` (``-inf`` for negative equity) when ``den`` is not above
    0 (NaN included).  The one definition: :func:`margin_ratios`, :func:`account_columns`
    and the Monitor's alert step (:func:`pmrisk.kernel.alerts.account_alerts`) call it.

    >>> from pmrisk.kernel.tables import ratio_of
    >>> ratio_of(2.0, 1.0), ratio_of(1.0, 0.0), ratio_of(-1.0, 0.0)
    (2.0, inf, -inf)
    """
    if den > 0.0:
        return equity / den
    return np.inf if equity >= 0.0 else -np.inf


@njit
def margin_ratios(equity, den):
    """:func:`ratio_of` per element of ``equity`` and ``den`` (float64, same length).

    >>> import numpy as np
    >>> from pmrisk.kernel.tables import margin_ratios
    >>> margin_ratios(np.array([2.0, 1.0, -1.0]), np.array([1.0, 0.0, np.nan])).tolist()
    [2.0, inf, -inf]
    """
    n = equity.shape[0]
    out = np.empty(n)
    for k in range(n):
        out[k] = ratio_of(equity[k], den[k])
    return out


@njit
def account_columns(equity, mm, im, liquidation_cost, low, levels):
    """Per account: ``(margin_ratio, available_margin, max_withdrawable, band)``.  The ratio
    is equity / (MM + liquidation cost), ``inf`` (``-inf`` for negative equity) when that is
    not positive; available margin equity - IM; the most withdrawable ``max(0, min(equity -
    low x MM, equity - IM))``; the band the number of ``levels`` (decreasing) the ratio is
    below."""
    n = equity.shape[0]
    ratio = np.empty(n)
    avail = np.empty(n)
    max_wd = np.empty(n)
    band = np.zeros(n, dtype=np.int64)
    for a in range(n):
        eq = equity[a]
        r = ratio_of(eq, mm[a] + liquidation_cost[a])
        ratio[a] = r
        avail[a] = eq - im[a]
        max_wd[a] = fmax(0.0, fmin(eq - low * mm[a], eq - im[a]))
        b = 0
        for lv in levels:
            if r < lv:
                b += 1
        band[a] = b
    return ratio, avail, max_wd, band

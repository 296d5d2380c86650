"""Scenario revaluation per instrument.

The P&L of one *contract* of each instrument in every scenario of its underlying's set, in the
instrument's settlement currency.  Positions are then ``quantity x row`` (see
:mod:`pmrisk.kernel.aggregate`), so an instrument held by many accounts (a backtest, a monitor)
is revalued once, and no positions x scenarios matrix is ever built.

Per-instrument constants (log-moneyness, sqrt(T), the three shocked sigma*sqrt(T), the value at
the marks) are hoisted out of the scenario loop; ``log(1+s)`` comes precomputed per scenario,
so an option cell costs two ``erfc`` and no ``log``.
"""


import math

import numpy as np
from numba import prange

from ._config import njit
from .black76 import (MIN_STDDEV, SQRT2, black76_greeks, option_constants,
                      undiscounted_price)
from .instruments import INVERSE, OPTION
from .scenarios import VOL_DOWN, VOL_SAME, VOL_UP


BLOCKS = 64     # instrument_pnl: rows dealt to the threads in this many interleaved blocks


@njit
def _cells_by_state(n_scen, price_shock, log1p_shock, vol_code, vol_factor, pnl_scale):
    """Each underlying's cells grouped by vol state: ``(start, cell, shock, log1p, factor,
    scale)``.  The cells of underlying ``u`` in state ``v`` (0 up, 1 same, 2 down, 3 any other
    code: vol same times ``vol_factor``) are ``cell[u, start[u, v]:start[u, v + 1]]``, with
    their moves, ``log1p`` of them, vol factors and pnl scales at the same places of the
    other outputs (so a pass over a state reads them contiguously)."""
    n_und, width = price_shock.shape
    start = np.zeros((n_und, 5), np.int64)
    cell = np.zeros((n_und, width), np.int64)
    shock = np.zeros((n_und, width))
    log1p = np.zeros((n_und, width))
    factor = np.zeros((n_und, width))
    scale = np.zeros((n_und, width))
    for u in range(n_und):
        m = 0
        for v in range(4):
            start[u, v] = m
            for s in range(n_scen[u]):
                code = vol_code[u, s]
                state = code if code == VOL_UP or code == VOL_SAME or code == VOL_DOWN else 3
                if state == v:
                    cell[u, m] = s
                    shock[u, m] = price_shock[u, s]
                    log1p[u, m] = log1p_shock[u, s]
                    factor[u, m] = vol_factor[u, s]
                    scale[u, m] = pnl_scale[u, s]
                    m += 1
        start[u, 4] = m
    return start, cell, shock, log1p, factor, scale


@njit(inline="always")
def _normal(sd):
    """``sd`` is priced by :func:`undiscounted_price`'s formula (not NaN, not below
    ``MIN_STDDEV``, not infinite)."""
    return sd >= MIN_STDDEV and sd < math.inf


@njit
def _option_row_cells(i, u, ns, F, K, call, inverse, c, base0, ln_fk, disc, sd_up, sd_same,
                      sd_down, price_shock, log1p_shock, vol_code, vol_factor, pnl_scale, out):
    """Option row ``i`` cell by cell (:func:`undiscounted_price`'s own branches: a row with
    some sigma*sqrt(T) below ``MIN_STDDEV``, infinite or NaN)."""
    for s in range(ns):
        code = vol_code[u, s]
        if code == VOL_UP:
            sd = sd_up
        elif code == VOL_SAME:
            sd = sd_same
        elif code == VOL_DOWN:
            sd = sd_down
        else:
            sd = sd_same * vol_factor[u, s]
        fs = F * (1.0 + price_shock[u, s])
        v = disc * undiscounted_price(fs, K, ln_fk + log1p_shock[u, s], sd, call)
        if inverse:
            v /= fs
        out[i, s] = c * (v - base0) * pnl_scale[u, s]


@njit
def _pnl_row(i, kind, settlement, contract_size, mark, forward, strike, is_call, t_now, t_scen,
             sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen, price_shock, log1p_shock,
             vol_code, vol_factor, pnl_scale, cells, arg1, arg2, out):
    """Row ``i`` of :func:`instrument_pnl` (``cells``: :func:`_cells_by_state`; ``arg1``,
    ``arg2``: scratch of the scenarios' width).

    An option whose sigma*sqrt(T) is normal (at least ``MIN_STDDEV``, finite) in every cell
    is priced in three passes over its cells grouped by vol state: the two ``erfc`` arguments
    of every cell (no calls: the compiler vectorises it), the ``erfc`` calls alone, then the
    values.  Each cell is the same arithmetic, in the same order, as
    :func:`undiscounted_price`'s formula branch (``norm_cdf(x) = 0.5 * erfc(-x / SQRT2)``),
    so the same bits as cell by cell; any other option row is priced cell by cell."""
    u = und[i]
    ns = n_scen[u]
    c = contract_size[i]
    inverse = settlement[i] == INVERSE
    if kind[i] != OPTION:
        if inverse:
            base = c / mark[i]          # face value / mark = position in coin
            for s in range(ns):
                out[i, s] = base * (1.0 - 1.0 / (1.0 + price_shock[u, s])) * pnl_scale[u, s]
        else:
            base = c * mark[i]
            for s in range(ns):
                out[i, s] = base * price_shock[u, s] * pnl_scale[u, s]
        return
    F = forward[i]
    K = strike[i]
    call = is_call[i] == 1
    base0, ln_fk, disc, sd_up, sd_same, sd_down = option_constants(
        F, K, t_now[i], sig_mark[i], t_scen[i], sig_up[i], sig_same[i], sig_down[i], rate,
        call, inverse)
    start, cell, shock, log1p, factor, scale = cells
    normal = _normal(sd_up) and _normal(sd_same) and _normal(sd_down)
    if normal:
        for k in range(start[u, 3], start[u, 4]):       # vol factor cells (custom sets)
            if not _normal(sd_same * factor[u, k]):
                normal = False
    if not normal:
        _option_row_cells(i, u, ns, F, K, call, inverse, c, base0, ln_fk, disc, sd_up,
                          sd_same, sd_down, price_shock, log1p_shock, vol_code, vol_factor,
                          pnl_scale, out)
        return
    for v in range(3):          # erfc arguments: call N(d1), N(d2); put N(-d2), N(-d1)
        sd = sd_up if v == 0 else (sd_same if v == 1 else sd_down)
        half = 0.5 * sd
        if call:
            for k in range(start[u, v], start[u, v + 1]):
                d1 = (ln_fk + log1p[u, k]) / sd + half
                d2 = d1 - sd
                arg1[k] = -d1 / SQRT2
                arg2[k] = -d2 / SQRT2
        else:
            for k in range(start[u, v], start[u, v + 1]):
                d1 = (ln_fk + log1p[u, k]) / sd + half
                d2 = d1 - sd
                arg1[k] = d2 / SQRT2
                arg2[k] = d1 / SQRT2
    for k in range(start[u, 3], start[u, 4]):
        sd = sd_same * factor[u, k]
        d1 = (ln_fk + log1p[u, k]) / sd + 0.5 * sd
        d2 = d1 - sd
        arg1[k] = -d1 / SQRT2 if call else d2 / SQRT2
        arg2[k] = -d2 / SQRT2 if call else d1 / SQRT2
    m = start[u, 4]
    for k in range(m):
        arg1[k] = math.erfc(arg1[k])
        arg2[k] = math.erfc(arg2[k])
    for k in range(m):
        fs = F * (1.0 + shock[u, k])
        if call:
            v = fs * (0.5 * arg1[k]) - K * (0.5 * arg2[k])
        else:
            v = K * (0.5 * arg1[k]) - fs * (0.5 * arg2[k])
        v = disc * (v if (v > 0.0 or v != v) else 0.0)
        if inverse:
            v /= fs
        out[i, cell[u, k]] = c * (v - base0) * scale[u, k]


@njit(parallel=True)
def instrument_pnl(kind, settlement, contract_size, mark, forward, strike, is_call,
                   t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate,
                   n_scen, price_shock, log1p_shock, vol_code, vol_factor, pnl_scale):
    """Scenario P&L per contract.

    Parameters
    ----------
    kind, settlement, is_call, und : int64[n_instr]
        Codes from :mod:`pmrisk.kernel.instruments`; ``und`` indexes the scenario rows.
    contract_size, mark, forward, strike : float64[n_instr]
        ``mark`` is the futures/spot mark; ``forward`` the option's underlying (forward) price.
    t_now, t_scen : float64[n_instr]
        Years to expiry at valuation and after the scenario horizon (options only).
    sig_mark : float64[n_instr]
        Vol at the marks (model value at the marks uses it).
    sig_up, sig_same, sig_down : float64[n_instr]
        Scenario vols of each vol state (floors and shocks already applied).
    rate : float
        Discount rate of Black-76 (0: undiscounted).
    n_scen : int64[n_und];  price_shock, log1p_shock, vol_factor, pnl_scale : float64[n_und, S]
    vol_code : int64[n_und, S]
        Scenario set per underlying, padded to S columns (:func:`scenarios.pad`).

    Returns
    -------
    float64[n_instr, S]
        Model value in the scenario minus model value at the marks, times ``pnl_scale``;
        linear instruments in quote currency, inverse ones in coin.  Padding cells are 0.
        Instruments run in parallel (``NUMBA_NUM_THREADS``), each row on one thread, so the
        result does not depend on the number of threads.
    """
    n_instr = kind.shape[0]
    width = price_shock.shape[1]
    out = np.zeros((n_instr, width))
    cells = _cells_by_state(n_scen, price_shock, log1p_shock, vol_code, vol_factor, pnl_scale)
    n_blocks = min(n_instr, BLOCKS)
    for b in prange(n_blocks):                   # rows are independent
        arg1 = np.empty(width)
        arg2 = np.empty(width)
        for i in range(b, n_instr, n_blocks):
            _pnl_row(i, kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
                     t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
                     price_shock, log1p_shock, vol_code, vol_factor, pnl_scale, cells, arg1,
                     arg2, out)
    return out


@njit
def instrument_greeks(kind, settlement, contract_size, mark, forward, strike, is_call,
                      t_now, sig_mark, rate):
    """Model value and Greeks per contract at the marks, in settlement currency.

    Returns ``float64[5, n_instr]``: model value, delta (base units), gamma, vega (per 1.00 of
    vol), theta (per day).  Futures and spot: value 0 (their value is the position's unrealised
    P&L), delta ``c`` (linear) or ``c/mark`` (inverse: face value in coin), no other Greeks.
    Inverse options: value ``V/F`` in coin, delta Deribit's net transaction delta
    ``c*(delta_Black - V/F)``, gamma the Black gamma, vega and theta divided by ``F`` (coin).
    """
    n = kind.shape[0]
    out = np.zeros((5, n))
    for i in range(n):
        c = contract_size[i]
        inverse = settlement[i] == INVERSE
        if kind[i] != OPTION:
            out[1, i] = c / mark[i] if inverse else c
            continue
        F = forward[i]
        p, d, g, v, t = black76_greeks(F, strike[i], t_now[i], sig_mark[i],
                                       is_call[i] == 1, rate)
        if inverse:
            out[0, i] = c * p / F
            out[1, i] = c * (d - p / F)
            out[2, i] = c * g
            out[3, i] = c * v / F
            out[4, i] = c * t / F
        else:
            out[0, i] = c * p
            out[1, i] = c * d
            out[2, i] = c * g
            out[3, i] = c * v
            out[4, i] = c * t
    return out

"""Scenario revaluation per instrument.

The P&L of one *contract* of each instrument in every scenario of its underlying's set, in the
instrument's settlement currency.  Positions are then ``quantity x row`` (see
:mod:`pmrisk.kernel.aggregate`), so an instrument held by many accounts (a backtest, a monitor)
is revalued once, and no positions x scenarios matrix is ever built.

Per-instrument constants (log-moneyness, sqrt(T), the three shocked sigma*sqrt(T), the value at
the marks) are hoisted out of the scenario loop; ``log(1+s)`` comes precomputed per scenario,
so an option cell costs two ``erfc`` and no ``log``.
"""


import numpy as np
from numba import prange

from ._config import njit
from .black76 import (black76_greeks, black76_greeks_at, mark_value, scenario_constants,
                      undiscounted_price)
from .instruments import INVERSE, OPTION
from .scenarios import VOL_DOWN, VOL_SAME, VOL_UP, whole_vectors

# instrument_pnl deals its rows to this many parallel tasks, round-robin in blocks of
# ROW_BLOCK rows (8 float64: one cache line of each per-row input)
CHUNKS = 64
ROW_BLOCK = 8


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
        result does not depend on the number of threads; rows are dealt to the threads
        round-robin in blocks of :data:`ROW_BLOCK`, so blocks of options and futures share
        the work evenly.
    """
    n_instr = kind.shape[0]
    out = np.empty((n_instr, price_shock.shape[1]))    # every cell written (padding: 0)
    # rows dealt round-robin to CHUNKS tasks (numba hands each thread a contiguous run of
    # tasks): a book's options and futures are often in blocks, and contiguous runs of rows
    # would give one thread most of the options.  Dealt in blocks of ROW_BLOCK rows, not
    # row by row: a task striding row by row through a long book reads one value of each
    # input's cache lines and leaves the other seven to tasks that come later, so a
    # 200,000-row book read its inputs from memory 8 times (the backtest-100k rows, one
    # thread, process time: 89 ms row by row, 72 ms in blocks)
    n_blocks = (n_instr + ROW_BLOCK - 1) // ROW_BLOCK
    chunks = min(CHUNKS, n_blocks)
    no_greeks = np.empty((5, 0))
    for c in prange(chunks):
        for b in range(c, n_blocks, chunks):
            for i in range(b * ROW_BLOCK, min(b * ROW_BLOCK + ROW_BLOCK, n_instr)):
                _pnl_row(i, out, kind, settlement, contract_size, mark, forward, strike,
                         is_call, t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und,
                         rate, n_scen, price_shock, log1p_shock, vol_code, vol_factor,
                         pnl_scale, no_greeks, False)
    return out


@njit(inline="always")
def _pnl_row(i, out, kind, settlement, contract_size, mark, forward, strike, is_call,
             t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
             price_shock, log1p_shock, vol_code, vol_factor, pnl_scale, greeks, with_greeks):
    """Row ``i`` of :func:`instrument_pnl`, written into ``out[i]`` (its padding cells 0);
    ``with_greeks``: also :func:`instrument_greeks`' column ``i`` of the row's columns into
    ``greeks[:, i]`` (an option's value at the marks priced once for both)."""
    u = und[i]
    ns = n_scen[u]
    width = out.shape[1]
    # the loops run to whole vectors (:func:`whole_vectors`): the padding cells they price
    # are inert (no shock, vol same, scale 0) and are zeroed after
    nv = whole_vectors(ns, width)
    c = contract_size[i]
    inverse = settlement[i] == INVERSE
    if kind[i] != OPTION:
        if inverse:
            base = c / mark[i]          # face value / mark = position in coin
            for s in range(nv):
                out[i, s] = base * (1.0 - 1.0 / (1.0 + price_shock[u, s])) * pnl_scale[u, s]
        else:
            base = c * mark[i]
            for s in range(nv):
                out[i, s] = base * price_shock[u, s] * pnl_scale[u, s]
        for s in range(ns, width):
            out[i, s] = 0.0
        if with_greeks:
            for k in range(5):
                greeks[k, i] = 0.0
            greeks[1, i] = c / mark[i] if inverse else c
        return
    F = forward[i]
    K = strike[i]
    call = is_call[i] == 1
    # black76.option_constants, with the value at the marks' parts kept for the Greeks
    v0, ln_fk, sd0, disc0 = mark_value(F, K, t_now[i], sig_mark[i], rate, call)
    base0 = v0 / F if inverse else v0
    disc, sd_up, sd_same, sd_down = scenario_constants(t_scen[i], sig_up[i], sig_same[i],
                                                       sig_down[i], rate)
    for s in range(nv):
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
    for s in range(ns, width):
        out[i, s] = 0.0
    if with_greeks:
        p, d, g, v, t = black76_greeks_at(F, K, t_now[i], sig_mark[i], call, rate, ln_fk,
                                          sd0, disc0, v0)
        _greeks_of(i, greeks, c, inverse, F, p, d, g, v, t)


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
        _greeks_row(i, out, kind, settlement, contract_size, mark, forward, strike, is_call,
                    t_now, sig_mark, rate)
    return out


@njit(parallel=True)
def instrument_pnl_greeks(kind, settlement, contract_size, mark, forward, strike, is_call,
                          t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate,
                          n_scen, price_shock, log1p_shock, vol_code, vol_factor, pnl_scale,
                          n_g, out, greeks):
    """:func:`instrument_pnl` of its first 21 arguments into ``out`` (float64[n_instr, S],
    every cell written, padding 0) and :func:`instrument_greeks` of the first ``n_g`` rows'
    columns (``kind`` ... ``t_now``, ``sig_mark``, ``rate``) into ``greeks`` (float64[5,
    n_g]) in one parallel pass, the same bits as the two kernels.  A whole book's
    revaluation (:func:`pmrisk.engine.core.compute` on every row and instrument, whose
    rows ``0 .. n_instr - 1`` are the instruments at their mark vol): an option's Greeks
    reuse its value at the marks, which its scenario row computes anyway (one ``erfc`` and
    one ``exp`` more per option, not a second pricing), on the threads the rows wake.

    The caller hands the outputs in, allocated by numpy: numpy asks the system for huge
    pages from 4 MB up, numba's allocator does not, and the system clears every fresh page
    on its first write (a 100k-snapshot backtest's 66 MB of scenario P&L: 14,063 faults
    and 25-40 ms of system time a call in 4 kB pages, ~800 faults and 12-14 ms in huge
    pages)."""
    n_instr = kind.shape[0]
    n_blocks = (n_instr + ROW_BLOCK - 1) // ROW_BLOCK  # blocks round-robin, as instrument_pnl
    chunks = min(CHUNKS, n_blocks)
    for c in prange(chunks):
        for b in range(c, n_blocks, chunks):
            for i in range(b * ROW_BLOCK, min(b * ROW_BLOCK + ROW_BLOCK, n_instr)):
                _pnl_row(i, out, kind, settlement, contract_size, mark, forward, strike,
                         is_call, t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und,
                         rate, n_scen, price_shock, log1p_shock, vol_code, vol_factor,
                         pnl_scale, greeks, i < n_g)


@njit(inline="always")
def _greeks_row(i, out, kind, settlement, contract_size, mark, forward, strike, is_call,
                t_now, sig_mark, rate):
    """Column ``i`` of :func:`instrument_greeks`, written into ``out[:, i]`` (zeros: left
    as they are for futures and spot)."""
    c = contract_size[i]
    inverse = settlement[i] == INVERSE
    if kind[i] != OPTION:
        out[1, i] = c / mark[i] if inverse else c
        return
    F = forward[i]
    p, d, g, v, t = black76_greeks(F, strike[i], t_now[i], sig_mark[i], is_call[i] == 1, rate)
    _greeks_of(i, out, c, inverse, F, p, d, g, v, t)


@njit(inline="always")
def _greeks_of(i, out, c, inverse, F, p, d, g, v, t):
    """``out[:, i]``: an option's Black-76 figures per unit (``p, d, g, v, t``) per
    contract of size ``c`` in its settlement currency (coin for an ``inverse`` one)."""
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

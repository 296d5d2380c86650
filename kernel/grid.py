"""Grid curves of the joint stress: every revaluation row's P&L per contract on its
underlying's grid, and the row's exact-pricing constants, in one pass.

The grid of an underlying (see :mod:`pmrisk.engine.correlated`) is shell nodes x 3 vol states
then tail nodes (vol same); where a tail node's move is a shell node's to the bit, the two
cells are the same cell.  ``src[u, s]`` names, for each cell ``s`` of underlying ``u``, the
first cell with the same move (same bits) and vol state: a cell with ``src[u, s] == s`` is
priced, any other is a copy of the cell it names (priced earlier in the row).  So each
distinct cell is priced once, and every cell holds the bits
:func:`pmrisk.kernel.instrument_pnl` gives it on the same scenarios (pnl scale 1): the same
constants (those of :func:`pmrisk.kernel.joint.pricing_constants`), the same cell arithmetic.

Rows are independent: :func:`grid_curves` spreads them over the threads,
:func:`grid_curves_serial` runs them on the calling thread (a Monitor's few moved rows); both
call :func:`grid_row`, so the result does not depend on the form or the thread count.  The
outputs are written in place at the rows ``rows`` (row ``i`` of the inputs goes to row
``rows[i]``), so a tick reprices its moved rows without an intermediate array.
"""


import math

import numpy as np
from numba import prange

from ._config import njit
from .black76 import MIN_STDDEV, SQRT2, option_constants, undiscounted_price
from .instruments import INVERSE, OPTION
from .normal import erfc
from .scenarios import VOL_DOWN, VOL_UP

BLOCKS = 64     # grid_curves: rows dealt to the threads in this many interleaved blocks


@njit
def _priced_cells(n_scen, shock, log1p_shock, vol_code, src):
    """The cells of each underlying's grid that are priced (``src[u, s] == s``), grouped by
    vol state, and those that are copies: ``(start, cell, cell_shock, cell_log1p, copy,
    inv_move)``.  The priced cells of underlying ``u`` in vol state ``v`` (0 up, 1 same, 2
    down) are at ``start[u, v]:start[u, v + 1]`` of ``cell[u]`` (their cells),
    ``cell_shock[u]`` and ``cell_log1p[u]`` (their moves and ``log1p`` of them); its copies
    are the cells ``cell[u, start[u, 3]:copy[u]]`` (in cell order), each of ``src`` of it.
    ``inv_move[u, s]``: ``1 - 1/(1 + shock)`` of every cell ``s``, an inverse future's P&L
    per unit of its base there (:func:`grid_row`)."""
    n_und, width = shock.shape
    start = np.zeros((n_und, 4), np.int64)
    copy = np.zeros(n_und, np.int64)
    cell = np.zeros((n_und, width), np.int64)
    cell_shock = np.zeros((n_und, width))
    cell_log1p = np.zeros((n_und, width))
    inv_move = np.zeros((n_und, width))
    for u in range(n_und):
        for s in range(n_scen[u]):
            inv_move[u, s] = 1.0 - 1.0 / (1.0 + shock[u, s])
        m = 0
        for v in range(3):          # any code but up and down prices as vol same
            start[u, v] = m
            for s in range(n_scen[u]):
                code = vol_code[u, s]
                state = 0 if code == VOL_UP else (2 if code == VOL_DOWN else 1)
                if src[u, s] == s and state == v:
                    cell[u, m] = s
                    cell_shock[u, m] = shock[u, s]
                    cell_log1p[u, m] = log1p_shock[u, s]
                    m += 1
        start[u, 3] = m
        for s in range(n_scen[u]):
            if src[u, s] != s:
                cell[u, m] = s
                m += 1
        copy[u] = m
    return start, cell, cell_shock, cell_log1p, copy, inv_move


@njit(inline="always")
def _normal(sd):
    """``sd`` is priced by :func:`undiscounted_price`'s formula (not NaN, not below
    ``MIN_STDDEV``, not infinite)."""
    return sd >= MIN_STDDEV and sd < math.inf


@njit
def _option_cells(r, u, ns, F, K, call, inverse, c, base0, ln_fk, disc, sd_up, sd_same,
                  sd_down, shock, log1p_shock, vol_code, src, curve):
    """An option's priced cells one by one (a row whose sigma*sqrt(T) is below
    ``MIN_STDDEV``, infinite or NaN in some vol state: :func:`undiscounted_price`'s own
    branches)."""
    for s in range(ns):
        if src[u, s] != s:
            continue
        code = vol_code[u, s]
        sd = sd_up if code == VOL_UP else (sd_down if code == VOL_DOWN else sd_same)
        fs = F * (1.0 + shock[u, s])
        v = disc * undiscounted_price(fs, K, ln_fk + log1p_shock[u, s], sd, call)
        if inverse:
            v /= fs
        curve[r, s] = c * (v - base0)


@njit(inline="always")
def _copies(r, u, cell, start, copy, src, curve):
    """The copied cells of row ``r`` (underlying ``u``), from the cells they name."""
    for k in range(start[u, 3], copy[u]):
        s = cell[u, k]
        curve[r, s] = curve[r, src[u, s]]


@njit
def grid_row(i, r, kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
             t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen, shock,
             log1p_shock, vol_code, src, cells, arg1, arg2, const, curve):
    """Input row ``i`` into ``const[r]`` (base, ln(F/K), discount, sigma*sqrt(T) up, same,
    down) and ``curve[r]`` (cells beyond ``n_scen[und[i]]``: 0).  ``cells``:
    :func:`_priced_cells`; ``arg1``, ``arg2``: scratch of the grid's width.

    An option whose three sigma*sqrt(T) are normal (at least ``MIN_STDDEV``, finite) is
    priced in three passes over its priced cells: the two ``erfc`` arguments of every cell
    (one vol state at a time, no calls: the compiler vectorises it), the ``erfc`` calls
    alone, then the values.  Each cell is the same arithmetic, in the same order, as
    :func:`undiscounted_price`'s formula branch (``norm_cdf(x) = 0.5 * erfc(-x / SQRT2)``),
    so the same bits.

    Measured on the seed book (5,000 options x 259 cells, one thread) while ``erfc`` was
    glibc's: 37 ms cell by cell, 29 ms in passes, of which the ``erfc`` calls were about
    22 ms; one ``erfc`` loop per argument instead of one for both was no faster.  The
    ``erfc`` pass now runs :func:`pmrisk.kernel.normal.erfc`, which the compiler
    vectorises."""
    u = und[i]
    ns = n_scen[u]
    width = curve.shape[1]
    for s in range(ns, width):
        curve[r, s] = 0.0
    for k in range(6):
        const[r, k] = 0.0
    c = contract_size[i]
    inverse = settlement[i] == INVERSE
    start, cell, cell_shock, cell_log1p, copy, inv_move = cells
    if kind[i] != OPTION:
        # every cell in order, copies too (a copy has its source's move bits, so its
        # value): one contiguous run the compiler vectorises, each cell the same product
        # base * (1 - 1/(1 + shock)) (inverse) or base * shock (linear) as priced alone
        if inverse:
            base = c / mark[i]
            const[r, 0] = base
            for s in range(ns):
                curve[r, s] = base * inv_move[u, s]
        else:
            base = c * mark[i]
            const[r, 0] = base
            for s in range(ns):
                curve[r, s] = base * shock[u, s]
        return
    F = forward[i]
    K = strike[i]
    call = is_call[i] == 1
    base0, ln_fk, disc, sd_up, sd_same, sd_down = option_constants(
        F, K, t_now[i], sig_mark[i], t_scen[i], sig_up[i], sig_same[i], sig_down[i], rate, call,
        inverse)
    const[r, 0] = base0
    const[r, 1] = ln_fk
    const[r, 2] = disc
    const[r, 3] = sd_up
    const[r, 4] = sd_same
    const[r, 5] = sd_down
    if not (_normal(sd_up) and _normal(sd_same) and _normal(sd_down)):
        _option_cells(r, u, ns, F, K, call, inverse, c, base0, ln_fk, disc, sd_up, sd_same,
                      sd_down, shock, log1p_shock, vol_code, src, curve)
    else:
        for v in range(3):          # erfc arguments: call N(d1), N(d2); put N(-d2), N(-d1)
            sd = sd_up if v == 0 else (sd_same if v == 1 else sd_down)
            half = 0.5 * sd
            if call:
                for k in range(start[u, v], start[u, v + 1]):
                    d1 = (ln_fk + cell_log1p[u, k]) / sd + half
                    d2 = d1 - sd
                    arg1[k] = -d1 / SQRT2
                    arg2[k] = -d2 / SQRT2
            else:
                for k in range(start[u, v], start[u, v + 1]):
                    d1 = (ln_fk + cell_log1p[u, k]) / sd + half
                    d2 = d1 - sd
                    arg1[k] = d2 / SQRT2
                    arg2[k] = d1 / SQRT2
        m = start[u, 3]
        for k in range(m):
            arg1[k] = erfc(arg1[k])
            arg2[k] = erfc(arg2[k])
        for k in range(m):
            fs = F * (1.0 + cell_shock[u, k])
            if call:
                v = fs * (0.5 * arg1[k]) - K * (0.5 * arg2[k])
            else:
                v = K * (0.5 * arg1[k]) - fs * (0.5 * arg2[k])
            v = disc * (v if (v > 0.0 or v != v) else 0.0)
            if inverse:
                v /= fs
            curve[r, cell[u, k]] = c * (v - base0)
    _copies(r, u, cell, start, copy, src, curve)


@njit(parallel=True)
def grid_curves(rows, kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
                t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen, shock,
                log1p_shock, vol_code, src, const, curve):
    """Grid curves and pricing constants of the input rows, written at ``rows``.

    Parameters
    ----------
    rows : int64[n]
        Output row of each input row.
    kind ... und, rate
        The instrument columns and rate of :func:`pmrisk.kernel.instrument_pnl` (``n``
        rows).
    n_scen : int64[n_und];  shock, log1p_shock : float64[n_und, W]
        The grid per underlying: its cells' moves and ``log1p`` of them.
    vol_code : int64[n_und, W]
        Vol state of each cell: up, same or down (no vol factor on the grid).
    src : int64[n_und, W]
        The first cell with the same move bits and vol state (``s`` itself, or an earlier
        cell).
    const : float64[R, 6];  curve : float64[R, W]
        Written at ``rows``: :func:`pmrisk.kernel.joint.pricing_constants` and the P&L per
        contract in every cell (settlement currency; cells beyond ``n_scen``: 0), to the bit
        :func:`pmrisk.kernel.instrument_pnl`'s on the same scenarios with pnl scale 1.

    Notes
    -----
    The rows are dealt to the threads in ``BLOCKS`` interleaved blocks (block ``b``: rows
    ``b, b + BLOCKS, ...``), so that options and futures, which cost very differently, are
    shared evenly however the rows are ordered.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.grid import grid_curves
    >>> i1, f1 = np.ones(1, np.int64), np.ones(1)
    >>> shock = np.array([[-0.1, 0.0, 0.1, 0.0]])
    >>> src = np.array([[0, 1, 2, 1]])           # cell 3 is cell 1 again
    >>> const, curve = np.zeros((1, 6)), np.zeros((1, 4))
    >>> grid_curves(np.zeros(1, np.int64), i1 * 0, i1 * 0, f1, f1 * 100.0, f1 * 100.0,
    ...             f1, i1, f1, f1, f1, f1, f1, f1, i1 * 0, 0.0, np.array([4]), shock,
    ...             np.log1p(shock), np.ones((1, 4), np.int64), src, const, curve)
    >>> curve.round(6).tolist()
    [[-10.0, 0.0, 10.0, 0.0]]
    """
    cells = _priced_cells(n_scen, shock, log1p_shock, vol_code, src)
    n = rows.shape[0]
    n_blocks = min(n, BLOCKS)
    width = shock.shape[1]
    for b in prange(n_blocks):
        arg1 = np.empty(width)
        arg2 = np.empty(width)
        for i in range(b, n, n_blocks):
            grid_row(i, rows[i], kind, settlement, contract_size, mark, forward, strike,
                     is_call, t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate,
                     n_scen, shock, log1p_shock, vol_code, src, cells, arg1, arg2, const,
                     curve)


@njit
def grid_curves_serial(rows, kind, settlement, contract_size, mark, forward, strike, is_call,
                       t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
                       shock, log1p_shock, vol_code, src, const, curve):
    """:func:`grid_curves` on the calling thread (a few rows)."""
    cells = _priced_cells(n_scen, shock, log1p_shock, vol_code, src)
    width = shock.shape[1]
    arg1 = np.empty(width)
    arg2 = np.empty(width)
    for i in range(rows.shape[0]):
        grid_row(i, rows[i], kind, settlement, contract_size, mark, forward, strike, is_call,
                 t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
                 shock, log1p_shock, vol_code, src, cells, arg1, arg2, const, curve)

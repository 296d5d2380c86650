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


from numba import prange

from ._config import njit
from .black76 import option_constants, undiscounted_price
from .instruments import INVERSE, OPTION
from .scenarios import VOL_DOWN, VOL_UP


@njit(inline="always")
def grid_row(i, r, kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
             t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen, shock,
             log1p_shock, vol_code, src, const, curve):
    """Input row ``i`` into ``const[r]`` (base, ln(F/K), discount, sigma*sqrt(T) up, same,
    down) and ``curve[r]`` (cells beyond ``n_scen[und[i]]``: 0)."""
    u = und[i]
    ns = n_scen[u]
    width = curve.shape[1]
    for s in range(ns, width):
        curve[r, s] = 0.0
    for k in range(6):
        const[r, k] = 0.0
    c = contract_size[i]
    inverse = settlement[i] == INVERSE
    if kind[i] != OPTION:
        if inverse:
            base = c / mark[i]
            const[r, 0] = base
            for s in range(ns):
                if src[u, s] != s:
                    curve[r, s] = curve[r, src[u, s]]
                else:
                    curve[r, s] = base * (1.0 - 1.0 / (1.0 + shock[u, s]))
        else:
            base = c * mark[i]
            const[r, 0] = base
            for s in range(ns):
                if src[u, s] != s:
                    curve[r, s] = curve[r, src[u, s]]
                else:
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
    for s in range(ns):
        if src[u, s] != s:
            curve[r, s] = curve[r, src[u, s]]
            continue
        code = vol_code[u, s]
        sd = sd_up if code == VOL_UP else (sd_down if code == VOL_DOWN else sd_same)
        fs = F * (1.0 + shock[u, s])
        v = disc * undiscounted_price(fs, K, ln_fk + log1p_shock[u, s], sd, call)
        if inverse:
            v /= fs
        curve[r, s] = c * (v - base0)


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
    for i in prange(rows.shape[0]):
        grid_row(i, rows[i], kind, settlement, contract_size, mark, forward, strike, is_call,
                 t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
                 shock, log1p_shock, vol_code, src, const, curve)


@njit
def grid_curves_serial(rows, kind, settlement, contract_size, mark, forward, strike, is_call,
                       t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
                       shock, log1p_shock, vol_code, src, const, curve):
    """:func:`grid_curves` on the calling thread (a few rows)."""
    for i in range(rows.shape[0]):
        grid_row(i, rows[i], kind, settlement, contract_size, mark, forward, strike, is_call,
                 t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen,
                 shock, log1p_shock, vol_code, src, const, curve)

"""Notional brackets (Binance USDⓈ-M and COIN-M futures): bracket lookup and maintenance margin.

A ladder is rows ``b`` of ``(floor_b, cap_b, mmr_b, cum_b)``; a position of notional ``N`` is in
bracket ``b`` when ``floor_b < N <= cap_b`` (the first bracket also holds ``N = 0``) and its
maintenance margin is ``MM = N*mmr_b - cum_b``.  ``cum`` (Binance's "maintenance amount") makes
MM continuous at every edge: ``cum_b = cum_{b-1} + floor_b*(mmr_b - mmr_{b-1})``.

Several ladders travel as one set of flat arrays: ladder ``k`` is rows
``offsets[k] .. offsets[k+1]-1``, ordered by floor.  The ladders are validated in
:mod:`pmrisk.venues.brackets` (contiguous, ``mmr`` non-decreasing, ``cum`` rebuilt); these kernels
trust that.

Notional units: USDⓈ-M ``N = |quantity * contract_size * mark|`` (USD, contract_size in coin);
COIN-M ``N = |quantity * contract_size_usd / mark|`` (coin), so MM is in coin.
"""

import numpy as np
from numba import prange

from ._config import njit
from .assemble import CHUNKS
from .instruments import FUTURE, INVERSE, PERPETUAL


@njit
def bracket_notional(quantity, contract_size, mark, coin_margined):
    """Bracket notional per position.

    ``quantity``, ``contract_size``, ``mark``: float64[n_pos]; ``coin_margined``: int64[n_pos],
    1 for COIN-M (``contract_size`` in USD per contract, notional in coin), 0 for USDⓈ-M
    (``contract_size`` in coin, notional in USD).  Returns float64[n_pos] ``>= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import bracket_notional
    >>> f = lambda *a: np.array(a, dtype=np.float64)
    >>> bracket_notional(f(100.0, -2.0), f(100.0, 1.0), f(25000.0, 60000.0),
    ...                  np.array([1, 0])).tolist()
    [0.4, 120000.0]
    """
    n_pos = quantity.shape[0]
    out = np.empty(n_pos)
    for p in range(n_pos):
        if coin_margined[p]:
            out[p] = abs(quantity[p] * contract_size[p] / mark[p])
        else:
            out[p] = abs(quantity[p] * contract_size[p] * mark[p])
    return out


@njit
def bracket_margin_usd(mm, coin_margined, index):
    """Maintenance margin per position in USD: a COIN-M position's (``coin_margined`` 1, in
    coin) times its underlying's ``index`` price, a USDⓈ-M position's (in USD) as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import bracket_margin_usd
    >>> f = lambda *a: np.array(a, dtype=np.float64)
    >>> bracket_margin_usd(f(0.5, 200.0), np.array([1, 0]), f(60000.0, 60000.0)).tolist()
    [30000.0, 200.0]
    """
    n_pos = mm.shape[0]
    out = np.empty(n_pos)
    for p in range(n_pos):
        out[p] = mm[p] * index[p] if coin_margined[p] == 1 else mm[p]
    return out


@njit
def bracket_margin(notional, pos_ladder, floor, cap, mmr, cum, offsets):
    """Bracket row and maintenance margin per position.

    Parameters
    ----------
    notional : float64[n_pos]
        Bracket notional (>= 0), in the ladder's unit (USD or coin).
    pos_ladder : int64[n_pos]
        The ladder of each position (index into ``offsets``).
    floor, cap, mmr, cum : float64[n_rows]
        The ladders' rows, flat; ladder ``k`` is rows ``offsets[k]:offsets[k+1]``.
    offsets : int64[n_ladders + 1]

    Returns
    -------
    row : int64[n_pos]
        The bracket's row in the flat arrays (the bracket number is
        ``row - offsets[pos_ladder] + 1``); -1 when ``notional`` is above the ladder's last cap,
        negative or NaN.
    mm : float64[n_pos]
        ``notional*mmr[row] - cum[row]``; NaN where ``row`` is -1 (the caller must refuse
        those positions: a venue does not accept them).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import bracket_margin
    >>> f = lambda *a: np.array(a, dtype=np.float64)
    >>> row, mm = bracket_margin(f(50000.0, 60000.0, 3e5), np.zeros(3, dtype=np.int64),
    ...                          f(0, 5e4), f(5e4, 2.5e5), f(0.004, 0.005), f(0, 50),
    ...                          np.array([0, 2]))
    >>> row.tolist(), np.round(mm, 9).tolist()
    ([0, 1, -1], [200.0, 250.0, nan])
    """
    n_pos = notional.shape[0]
    row = np.full(n_pos, -1, dtype=np.int64)
    mm = np.full(n_pos, np.nan)
    for p in range(n_pos):
        n = notional[p]
        if not n >= 0.0:            # negative or NaN: no bracket
            continue
        k = pos_ladder[p]
        first = offsets[k]
        for b in range(first, offsets[k + 1]):
            # floor_b < N <= cap_b; the first bracket also holds N = floor = 0
            if n <= cap[b] and (n > floor[b] or b == first and n == floor[b]):
                row[p] = b
                mm[p] = n * mmr[b] - cum[b]
                break
    return row, mm


@njit
def bracket_units_rows(sel, lo, hi, pu_start, pu_order, pos_instr, quantity, contract_size, mark,
                       coin_margined, pos_ladder, leverage, floor, cap, mmr, cum, max_leverage,
                       offsets, value, upnl, unit_mm, unit_im, notional, row, mm, im, finite):
    """Rows ``sel[lo:hi]`` of :func:`bracket_units` (shared by the parallel and the serial
    kernel)."""
    for k in range(lo, hi):
        u = sel[k]
        s_mm = 0.0
        s_im = 0.0
        probe = 0.0
        for j in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[j]
            i = pos_instr[p]
            if coin_margined[i]:
                n = abs(quantity[p] * contract_size[i] / mark[i])
            else:
                n = abs(quantity[p] * contract_size[i] * mark[i])
            notional[p] = n
            r = -1
            lad = pos_ladder[p]
            first = offsets[lad]
            if n >= 0.0:
                for b in range(first, offsets[lad + 1]):
                    if n <= cap[b] and (n > floor[b] or b == first and n == floor[b]):
                        r = b
                        break
            row[p] = r
            if r < 0:
                m = np.nan
                i_m = np.nan
            else:
                m = n * mmr[r] - cum[r]
                lev = leverage[p] if leverage[p] > 0.0 else max_leverage[r]
                i_m = n / lev
            mm[p] = m
            im[p] = i_m
            s_mm += m
            s_im += i_m
            probe += m * 0.0 + i_m * 0.0 + value[p] * 0.0 + upnl[p] * 0.0
        unit_mm[u] = s_mm
        unit_im[u] = s_im
        finite[u] = 1.0 if probe + s_mm * 0.0 + s_im * 0.0 == 0.0 else 0.0


@njit(parallel=True)
def bracket_units(sel, pu_start, pu_order, pos_instr, quantity, contract_size, mark,
                  coin_margined, pos_ladder, leverage, floor, cap, mmr, cum, max_leverage, offsets,
                  value, upnl, unit_mm, unit_im, notional, row, mm, im, finite):
    """Per selected unit (rows ``pu_order[pu_start[u]:pu_start[u+1]]`` are its positions):
    each position's bracket notional (``coin_margined[instr]``: COIN-M, in coin; else USD),
    bracket ``row`` in the flat ladders (-1: above the last cap, negative or NaN; then ``mm``
    and ``im`` are NaN and the unit is flagged not finite), ``mm = N x mmr - cum`` and ``im =
    N / leverage`` (the position's ``leverage`` when > 0, else the bracket's maximum), and the
    unit's sums ``unit_mm``, ``unit_im``; ``finite[u]`` is 1.0 when every figure of the unit
    and its positions (with ``value`` and ``upnl``) is finite.  Written in place.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import bracket_units_serial
    >>> f = lambda *a: np.array(a, dtype=np.float64)
    >>> i8 = lambda *a: np.array(a, dtype=np.int64)
    >>> out = [np.zeros(1), np.zeros(1), np.zeros(2), np.zeros(2, np.int64), np.zeros(2),
    ...        np.zeros(2), np.zeros(1)]
    >>> bracket_units_serial(i8(0), i8(0, 2), i8(0, 1), i8(0, 1), f(0.5, -100.0),
    ...                      f(1.0, 100.0), f(60000.0, 25000.0), i8(0, 1), i8(0, 1), f(0.0, 0.0),
    ...                      f(0.0, 0.0), f(5e4, 5.0), f(0.004, 0.004), f(0.0, 0.0),
    ...                      f(125.0, 125.0), i8(0, 1, 2), np.zeros(2), np.zeros(2), *out)
    >>> out[2].tolist(), np.round(out[4], 9).tolist(), out[0].tolist()
    ([30000.0, 0.4], [120.0, 0.0016], [120.0016])
    """
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        lo = c * n // chunks
        hi = (c + 1) * n // chunks
        bracket_units_rows(sel, lo, hi, pu_start, pu_order, pos_instr, quantity, contract_size,
                           mark, coin_margined, pos_ladder, leverage, floor, cap, mmr, cum,
                           max_leverage, offsets, value, upnl, unit_mm, unit_im, notional, row,
                           mm, im, finite)


@njit
def bracket_units_serial(sel, pu_start, pu_order, pos_instr, quantity, contract_size, mark,
                         coin_margined, pos_ladder, leverage, floor, cap, mmr, cum, max_leverage,
                         offsets, value, upnl, unit_mm, unit_im, notional, row, mm, im, finite):
    """:func:`bracket_units` on one thread (small selections: no thread wake-up)."""
    bracket_units_rows(sel, 0, sel.shape[0], pu_start, pu_order, pos_instr, quantity,
                       contract_size, mark, coin_margined, pos_ladder, leverage, floor, cap, mmr,
                       cum, max_leverage, offsets, value, upnl, unit_mm, unit_im, notional, row,
                       mm, im, finite)


@njit
def bracket_inputs(pos_instr, kind, settlement, leverage):
    """The bracket layout's inputs in one pass: per position its own leverage (0.0 where NaN:
    none given), per instrument 1 for COIN-M (inverse settlement) else 0, and the positions
    brackets do not margin (instrument neither a perpetual nor a future), as sorted row
    indices (empty: none).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import bracket_inputs
    >>> lev, coin, bad = bracket_inputs(np.array([0, 1]), np.array([1, 3]), np.array([1, 0]),
    ...                                 np.array([np.nan, 20.0]))
    >>> lev.tolist(), coin.tolist(), bad.tolist()
    ([0.0, 20.0], [1, 0], [1])
    """
    n_pos = pos_instr.shape[0]
    lev = np.empty(n_pos)
    coin = np.empty(kind.shape[0], dtype=np.int64)
    for i in range(kind.shape[0]):
        coin[i] = 1 if settlement[i] == INVERSE else 0
    n_bad = 0
    for p in range(n_pos):
        x = leverage[p]
        lev[p] = 0.0 if x != x else x
        k = kind[pos_instr[p]]
        if not (k == PERPETUAL or k == FUTURE):
            n_bad += 1
    bad = np.empty(n_bad, dtype=np.int64)
    j = 0
    for p in range(n_pos if n_bad else 0):
        k = kind[pos_instr[p]]
        if not (k == PERPETUAL or k == FUTURE):
            bad[j] = p
            j += 1
    return lev, coin, bad


@njit
def position_ladders(pos_instr, instr_ladder):
    """Per position its instrument's ladder (``instr_ladder``, -1: none) and the positions
    without one, as sorted row indices.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import position_ladders
    >>> lad, missing = position_ladders(np.array([1, 0, 1]), np.array([-1, 2]))
    >>> lad.tolist(), missing.tolist()
    ([2, -1, 2], [1])
    """
    n_pos = pos_instr.shape[0]
    out = np.empty(n_pos, dtype=np.int64)
    n_bad = 0
    for p in range(n_pos):
        out[p] = instr_ladder[pos_instr[p]]
        if out[p] < 0:
            n_bad += 1
    bad = np.empty(n_bad, dtype=np.int64)
    j = 0
    for p in range(n_pos if n_bad else 0):
        if out[p] < 0:
            bad[j] = p
            j += 1
    return out, bad


@njit
def bracket_checks(sel, pu_start, pu_order, finite, row, leverage, max_leverage,
                   risk_matrix_margin):
    """After :func:`bracket_units` over the units ``sel``: sets their ``risk_matrix_margin``
    to 0 (brackets have no scenarios) and returns the positions Binance refuses, as row
    indices in unit order: ``beyond`` (no bracket, ``row`` -1, in a unit not flagged finite)
    and ``over`` (a ``leverage`` of its own, > 0, above its bracket's ``max_leverage``; a row
    of -1 reads the last, as numpy's index would).  One pass over the selected units'
    positions when nothing is refused.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.brackets import bracket_checks
    >>> rmm = np.ones(2)
    >>> beyond, over = bracket_checks(np.array([0, 1]), np.array([0, 1, 3]),
    ...                               np.array([0, 1, 2]), np.array([1.0, 0.0]),
    ...                               np.array([0, -1, 1]), np.array([50.0, 0.0, 10.0]),
    ...                               np.array([20.0, 20.0]), rmm)
    >>> beyond.tolist(), over.tolist(), rmm.tolist()
    ([1], [0], [0.0, 0.0])
    """
    n_rows = max_leverage.shape[0]
    n_beyond = 0
    n_over = 0
    for k in range(sel.shape[0]):
        u = sel[k]
        risk_matrix_margin[u] = 0.0
        flagged = finite[u] != 1.0
        for j in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[j]
            r = row[p]
            if flagged and r < 0:
                n_beyond += 1
            if leverage[p] > 0.0 and leverage[p] > max_leverage[r if r >= 0 else r + n_rows]:
                n_over += 1
    beyond = np.empty(n_beyond, dtype=np.int64)
    over = np.empty(n_over, dtype=np.int64)
    if n_beyond or n_over:
        n_beyond = 0
        n_over = 0
        for k in range(sel.shape[0]):
            u = sel[k]
            flagged = finite[u] != 1.0
            for j in range(pu_start[u], pu_start[u + 1]):
                p = pu_order[j]
                r = row[p]
                if flagged and r < 0:
                    beyond[n_beyond] = p
                    n_beyond += 1
                if leverage[p] > 0.0 and \
                        leverage[p] > max_leverage[r if r >= 0 else r + n_rows]:
                    over[n_over] = p
                    n_over += 1
    return beyond, over

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
from numba import float64, int64, types

from ._config import njit

F8_1D = types.Array(float64, 1, "C", readonly=True)
I8_1D = types.Array(int64, 1, "C", readonly=True)


@njit(float64[::1](F8_1D, F8_1D, F8_1D, I8_1D))
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


@njit(types.Tuple((int64[::1], float64[::1]))(F8_1D, I8_1D, F8_1D, F8_1D, F8_1D, F8_1D, I8_1D))
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

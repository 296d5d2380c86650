"""A :class:`pmrisk.Monitor` update's per-account step in one pass: margin ratios, whether the
reported figures changed, and the alert levels crossed.

After a tick the monitor looks at every account it recomputed (all the accounts holding the
moved underlying: thousands).  :func:`account_alerts` does, per selected account, what
three numpy passes over those accounts did: the margin ratio as the accounts table shows it
(:func:`pmrisk.kernel.tables.ratio_of`), the comparison of the account's figures with those last
reported (and their update), and the crossings of the alert levels with hysteresis
(``pmrisk.monitor.alerts.AlertRules.step``, whose docstring has the rules), in the same
order and to the same bits.
"""

import numpy as np

from ._config import njit
from .tables import ratio_of


@njit
def account_alerts(acc, equity, mm, liq_cost, figures, fig, ratio, below, armed, levels, h):
    """Per selected account ``a = acc[k]`` (int64 indices, increasing):

    * its margin ratio ``r = equity / (mm + liq_cost)``, ``inf`` (``-inf`` for negative
      equity) when that sum is not above 0, written to ``ratio[a]``;
    * whether any of ``figures`` (a tuple of per-account float64 arrays) differs from the
      last reported ``fig[f, a]`` (NaN differs from everything), then ``fig[:, a]``
      set to them;
    * the levels crossed: level ``l`` (``levels`` strictly decreasing) falls when it was
      not below it (``below[a, l]`` false) and ``r < levels[l] - slack``, rises when it was
      and ``r >= levels[l] + slack``, ``slack = h`` once the level has alerted
      (``armed[a, l]``), else 0; ``below`` and ``armed`` are updated in place.

    Returns ``(after float64[n], changed bool[n], rows int64[m], kinds int64[m],
    crossed int64[m])``: the ratios and changes per selected account, and one row per
    crossing: the account's position ``k`` in ``acc``, its kind (the level's index for a
    fall, ``len(levels)`` for a rise) and the level's index; by account, then falls from
    the highest level, then rises from the lowest."""
    n = acc.shape[0]
    n_lv = levels.shape[0]
    n_fig = fig.shape[0]
    after = np.empty(n)
    changed = np.zeros(n, dtype=np.bool_)
    cap = 16
    rows = np.empty(cap, dtype=np.int64)
    kinds = np.empty(cap, dtype=np.int64)
    crossed = np.empty(cap, dtype=np.int64)
    fell = np.zeros(n_lv, dtype=np.bool_)
    rose = np.zeros(n_lv, dtype=np.bool_)
    m = 0
    for f in range(n_fig):                      # figure by figure: rows of ``fig`` in turn
        arr = figures[f]
        for k in range(n):
            a = np.uint64(acc[k])         # never negative: no wraparound
            now = arr[a]
            changed[k] |= now != fig[f, a]
            fig[f, a] = now
    for k in range(n):
        a = np.uint64(acc[k])
        r = ratio_of(equity[a], mm[a] + liq_cost[a])
        after[k] = r
        ratio[a] = r
        # only an account whose exact band disagrees with ``below`` can cross a level (a
        # fall needs r < L, a rise r >= L): the rest is skipped
        off = False
        for lv in range(n_lv):
            off |= (r < levels[lv]) != below[a, lv]
        if not off:
            continue
        if m + 2 * n_lv > cap:
            cap = 2 * cap + 2 * n_lv
            rows = _grown(rows, cap)
            kinds = _grown(kinds, cap)
            crossed = _grown(crossed, cap)
        for lv in range(n_lv):                  # from the state before this update
            slack = h if armed[a, lv] else 0.0
            fell[lv] = not below[a, lv] and r < levels[lv] - slack
            rose[lv] = below[a, lv] and r >= levels[lv] + slack
        for lv in range(n_lv):                  # falls, from the highest level
            if fell[lv]:
                below[a, lv] = True
                armed[a, lv] = True
                rows[m] = k
                kinds[m] = lv
                crossed[m] = lv
                m += 1
        for lv in range(n_lv - 1, -1, -1):      # rises, from the lowest level
            if rose[lv]:
                below[a, lv] = False
                armed[a, lv] = True
                rows[m] = k
                kinds[m] = n_lv
                crossed[m] = lv
                m += 1
    return after, changed, rows[:m], kinds[:m], crossed[:m]


@njit
def _grown(a, cap):
    """``a`` copied into a new array of ``cap`` elements (the rest uninitialised)."""
    b = np.empty(cap, dtype=a.dtype)
    b[:a.shape[0]] = a
    return b

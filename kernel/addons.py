"""Per-unit add-ons: roll shock, delta shock, short option minimum.

Plain numpy: each is a group-by over positions or an element-wise formula over units, linear
in the number of positions; numba buys nothing here.  Amounts are in coin (base units); the
caller multiplies by the index price for linear (quote-settled) units.  The progressive tiers
have a numba form too (:func:`tier_table`, :func:`tiered_value`) for kernels that charge one
unit at a time.
"""

import numpy as np

from ._config import njit


def roll_rate(years, annualised_move_risk, min_annualised_move):
    """``max(min_annualised_move, exp(annualised_move_risk*T) - 1)`` per expiry group
    (perpetuals have T = 0, so they take the floor).

    >>> import numpy as np
    >>> from pmrisk.kernel.addons import roll_rate
    >>> float(roll_rate(np.array([0.0]), 0.075, 0.01)[0])
    0.01
    """
    return np.maximum(min_annualised_move, np.expm1(annualised_move_risk * np.maximum(years, 0.0)))


def roll_shock(pos_group, pos_delta, group_rate, group_unit, n_units):
    """Roll shock per unit: ``sum over expiry groups e of rate_e*|net base delta_e|``.

    ``pos_group``: int64[n_pos] expiry group of each position (-1: none, e.g. spot);
    ``group_rate``, ``group_unit``: per group.  Returns ``(per_unit, per_group, group_net)``.
    """
    n_groups = len(group_rate)
    held = pos_group >= 0
    net = np.bincount(pos_group[held], weights=pos_delta[held], minlength=n_groups)
    per_group = group_rate * np.abs(net)
    per_unit = np.bincount(group_unit, weights=per_group, minlength=n_units).astype(np.float64)
    return per_unit, per_group, net


def delta_shock(delta, index_price, threshold_usd, m_inc, max_delta_shock):
    """``min(max(|d|*S - threshold, 0)*|d|*m_inc, max_delta_shock*|d|*S)/S`` (coin).

    >>> import numpy as np
    >>> from pmrisk.kernel.addons import delta_shock
    >>> float(delta_shock(np.array([500.0]), np.array([60000.0]), 2e7, 5e-5, 0.1)[0])
    4.166666666666667
    """
    notional = np.abs(delta) * index_price
    part1 = np.maximum(notional - threshold_usd, 0.0) * np.abs(delta) * m_inc
    part2 = max_delta_shock * notional
    return np.minimum(part1, part2) / index_price


def short_option_minimum(pos_unit, short_contracts, rate_per_contract, n_units):
    """``rate x number of short option contracts`` per unit (``rate_per_contract`` per
    position, the rate of its underlying)."""
    return np.bincount(pos_unit, weights=short_contracts * rate_per_contract,
                       minlength=n_units).astype(np.float64)


def tiered(value, tiers):
    """Progressive tiers: each slice ``[from, to)`` of ``value`` counts at its tier's factor
    (Binance tiered collateral rates; OKX MR7 scaling).  Above the last tier nothing counts;
    give the last tier ``to = inf`` to keep counting.

    >>> import numpy as np
    >>> from pmrisk.kernel.addons import tiered
    >>> float(tiered(np.array([120e6]), [(0, 100e6, 1.0), (100e6, 120e6, 0.975)])[0])
    119500000.0
    >>> float(tiered(np.array([30000.0]), [(0, 10000, 1), (10000, 70000, 2)])[0])
    50000.0
    """
    v = np.asarray(value, dtype=np.float64)
    out = np.zeros_like(v)
    for lo, hi, factor in tiers:
        out += np.clip(v - lo, 0.0, hi - lo) * factor
    return out


def tier_table(tiers):
    """The rows of ``tiers`` (``(from, to, factor)``; ``to`` None: open-ended) as
    :func:`tiered_value` reads them: float64[n, 3] of ``from``, ``to - from`` and ``factor``,
    each as :func:`tiered` converts it.

    >>> from pmrisk.kernel.addons import tier_table
    >>> tier_table([(0, 10000, 1), (10000, None, 2)]).tolist()
    [[0.0, 10000.0, 1.0], [10000.0, inf, 2.0]]
    """
    rows = [(float(lo), float(np.inf if hi is None else hi - lo), float(f))
            for lo, hi, f in tiers]
    return np.array(rows, dtype=np.float64).reshape(len(rows), 3)


@njit
def tiered_value(v, table, n):
    """:func:`tiered` of one value over the first ``n`` rows of a :func:`tier_table`, the
    same arithmetic in the same order (a NaN stays NaN).

    >>> from pmrisk.kernel.addons import tier_table, tiered_value
    >>> float(tiered_value(30000.0, tier_table([(0, 10000, 1), (10000, 70000, 2)]), 2))
    50000.0
    """
    out = 0.0
    for k in range(n):
        x = v - table[k, 0]
        if x < 0.0:
            x = 0.0
        if x > table[k, 1]:
            x = table[k, 1]
        out += x * table[k, 2]
    return out

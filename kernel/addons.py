"""Per-unit add-ons: roll shock, delta shock, short option minimum; and collateral values.

The add-ons are plain numpy formulas (the engine's fused kernels in
:mod:`pmrisk.kernel.assemble` compute them per unit with the same arithmetic; these are
their reference forms).  Amounts are in coin (base units); the caller multiplies by the
index price for linear (quote-settled) units.

The progressive tiers have one numba form, :func:`tiered_span` (:func:`tiered`'s arithmetic
on one value), read by the kernels that charge one unit at a time (:func:`tiered_value`, over
a :func:`tier_table`) and by collateral (:func:`collateral_rows`, :func:`collateral_values`:
each balance row's USD value and collateral value in one pass, an asset's ``rate`` or
progressive ``tiers_usd`` on an account's summed holding of the asset).
"""

import numpy as np

from ._config import njit

NO_HAIRCUT, FLAT_RATE, TIERS = 0, 1, 2      # an asset's collateral rule (``spec`` codes)


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


@njit(inline="always")
def tiered_span(v, lo, width, factor, start, stop):
    """:func:`tiered` of one value over the tiers ``start:stop`` given as each tier's lower
    edge ``lo``, ``width`` (``to - from``; inf: open-ended) and ``factor``: the same
    arithmetic in the same order (the part of ``v`` in each tier, clipped to ``[0, width]``,
    times its factor, summed from the first tier; a NaN stays NaN).

    >>> import numpy as np
    >>> from pmrisk.kernel.addons import tiered_span
    >>> float(tiered_span(30000.0, np.array([0.0, 1e4]), np.array([1e4, 6e4]),
    ...                   np.array([1.0, 2.0]), 0, 2))
    50000.0
    """
    out = 0.0
    for t in range(start, stop):
        x = v - lo[t]
        if x < 0.0:
            x = 0.0
        if x > width[t]:
            x = width[t]
        out += x * factor[t]
    return out


@njit(inline="always")
def _collateral(v, spec, rate, start, stop, tier_lo, tier_width, tier_factor):
    """The collateral value of the USD amount ``v`` under one asset's rule: ``v``
    (:data:`NO_HAIRCUT`), ``v * rate`` (:data:`FLAT_RATE`) or the tiers ``start:stop`` of the
    flat tier arrays (:data:`TIERS`: :func:`tiered`'s ``numpy.clip`` in the same order)."""
    if spec == FLAT_RATE:
        return v * rate
    if spec != TIERS:
        return v
    return tiered_span(v, tier_lo, tier_width, tier_factor, start, stop)


@njit
def collateral_values(value_usd, spec, rate, tier_lo, tier_width, tier_factor):
    """The collateral value of each USD amount of ``value_usd`` under one asset's rule
    (``spec``: :data:`NO_HAIRCUT`, :data:`FLAT_RATE` at ``rate``, or :data:`TIERS` given as
    each tier's ``from_usd``, ``to_usd - from_usd`` and rate), every amount as given.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.addons import TIERS, collateral_values
    >>> collateral_values(np.array([150.0, 500.0]), TIERS, 0.0, np.array([0.0, 100.0]),
    ...                   np.array([100.0, 100.0]), np.array([1.0, 0.5])).tolist()
    [125.0, 150.0]
    """
    n = value_usd.shape[0]
    out = np.empty(n)
    for k in range(n):
        out[k] = _collateral(value_usd[k], spec, rate, 0, tier_lo.shape[0], tier_lo,
                             tier_width, tier_factor)
    return out


@njit
def collateral_rows(rows, code, group, g_start, g_order, bal_account, acc_snap, amount, col,
                    stable, asset_px, spec, rate, tier_start, tier_lo, tier_width, tier_factor,
                    coll, usd):
    """Per (account, asset) group of balance rows whose first row is among ``rows`` (a
    group's rows: ``g_order[g_start[g]:g_start[g + 1]]``, in row order; row ``r`` is in
    group ``group[r]`` and of asset ``code[r]``): ``usd`` = each row's amount x the asset's
    USD price at its account's snapshot (``asset_px[snap, col[c]]``; NaN without a column;
    1 for a stablecoin, ``stable[c]``, whose price is NaN) and ``coll`` its collateral
    value.  Negative rows (loans) count at full value.  The asset's rule (``spec[c]``,
    ``rate[c]``, tiers ``tier_start[c]:tier_start[c+1]``) applies once per group, to the
    summed positive amount (in row order) x the price, and each positive row takes its
    share ``amount / summed amount`` of that value; a group of one row is valued alone (the
    rule on its own USD value).  Written in place at the groups' rows; a row of ``rows``
    whose group's first row is not in ``rows`` writes nothing (a caller selects whole
    groups: every row, or every row of some assets).

    Examples
    --------
    Two BTC rows of one account (a holding of 2 and a loan of 0.5) and a USDT loan of
    another; BTC at 60,000 and a 0.95 rate:

    >>> import numpy as np
    >>> from pmrisk.kernel.addons import NO_HAIRCUT, FLAT_RATE, collateral_rows
    >>> coll, usd = np.zeros(3), np.zeros(3)
    >>> collateral_rows(np.array([0, 1, 2]), np.array([0, 0, 1]), np.array([0, 0, 1]),
    ...                 np.array([0, 2, 3]), np.array([0, 1, 2]), np.array([0, 0, 1]),
    ...                 np.array([0, 0]), np.array([2.0, -0.5, -50.0]), np.array([0, -1]),
    ...                 np.array([0, 1]), np.array([[60000.0]]),
    ...                 np.array([FLAT_RATE, NO_HAIRCUT]), np.array([0.95, 0.0]),
    ...                 np.zeros(3, np.int64), np.zeros(0), np.zeros(0), np.zeros(0), coll, usd)
    >>> usd.tolist(), coll.tolist()
    ([120000.0, -30000.0, -50.0], [114000.0, -30000.0, -50.0])
    """
    n_col = asset_px.shape[1]
    for k in range(rows.shape[0]):
        r = rows[k]
        g = group[r]
        lo = g_start[g]
        hi = g_start[g + 1]
        if g_order[lo] != r:
            continue                    # written with its group's first row
        c = code[r]
        j = col[c]
        px = asset_px[acc_snap[bal_account[r]], j] if (j >= 0 and n_col) else np.nan
        if px != px and stable[c]:
            px = 1.0
        t0 = tier_start[c]
        t1 = tier_start[c + 1]
        if hi - lo == 1:                # one row: its own value
            v = amount[r] * px
            usd[r] = v
            coll[r] = _collateral(v, spec[c], rate[c], t0, t1, tier_lo, tier_width,
                                  tier_factor) if v > 0.0 else v
            continue
        held = 0.0
        for i in range(lo, hi):
            a = amount[g_order[i]]
            if a > 0.0:
                held += a
        whole = held * px
        if whole > 0.0:
            whole = _collateral(whole, spec[c], rate[c], t0, t1, tier_lo, tier_width,
                                tier_factor)
        for i in range(lo, hi):
            b = g_order[i]
            v = amount[b] * px
            usd[b] = v
            coll[b] = whole * (amount[b] / held) if v > 0.0 else v


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
    return tiered_span(v, table[:, 0], table[:, 1], table[:, 2], 0, n)

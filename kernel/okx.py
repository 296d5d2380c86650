"""OKX portfolio margin building blocks: MR9, the stablecoin-hedge charge.

Plain numpy, like :mod:`.addons`: element-wise over units, three pairs each; numba buys
nothing here.  Amounts are in USD.

**MR9** applies when a risk unit's derivatives settle in more than one of USDT, USDC and USD.
OKX publishes the pair order (USDT-USD first, then USDT-USDC, then USDC-USD), progressive
hedge-size tiers and that the rates depend on the stablecoin's index.  What OKX does not
publish, and this module therefore *assumes*:

* **Hedged notional of a pair** from the unit's net cash delta per settlement currency
  (``d_USDT``, ``d_USDC``, ``d_USD``, USD): two legs of opposite sign offset by
  ``h = min(|a|, |b|)``, pairs taken in the order above, each match consuming ``h`` from both
  legs (so a leg is never matched twice).  Legs of the same sign, or a zero leg, hedge nothing.
  The total over the pairs, ``min(sum of longs, sum of shorts)``, does not depend on the order;
  the order decides which pair carries it, which matters once pairs have different rates.
* **Tiers per pair**: each pair's hedged notional is charged progressively by its own tier
  table (one table for all three pairs by default) and MR9 is the sum over pairs.
* **Rates**: :data:`MR9_TIERS`, 0.75 % up to 1 M USD, 1.75 % up to 5 M, 2.5 % above, the
  rates of OKX's worked example (10 M USD hedged: 202,500 USD).  Which stablecoin index level
  gives these rates is unpublished; give other tables for other index levels.
"""

import numpy as np

from .addons import tiered

CURRENCIES = ("USDT", "USDC", "USD")           # columns of ``cash_delta``
PAIRS = (("USDT", "USD"), ("USDT", "USDC"), ("USDC", "USD"))   # OKX's published order
MR9_TIERS = ((0.0, 1e6, 0.0075), (1e6, 5e6, 0.0175), (5e6, np.inf, 0.025))

_PAIR_COLS = tuple((CURRENCIES.index(a), CURRENCIES.index(b)) for a, b in PAIRS)


def stablecoin_hedged(cash_delta):
    """Hedged notional per unit and pair (USD), pairs in :data:`PAIRS` order.

    ``cash_delta``: float64[n_units, 3], each unit's net cash delta (USD) of its derivatives
    settled in USDT, USDC and USD (:data:`CURRENCIES` order).  Returns float64[n_units, 3],
    ``>= 0``.  The matching rule is the module docstring's (an assumption).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.okx import stablecoin_hedged
    >>> stablecoin_hedged(np.array([[10e6, -4e6, -7e6]])).tolist()     # USDT long 10 M
    [[7000000.0, 3000000.0, 0.0]]
    """
    left = np.array(cash_delta, dtype=np.float64, ndmin=2, copy=True)
    out = np.zeros(left.shape)
    for j, (a, b) in enumerate(_PAIR_COLS):
        opposite = left[:, a] * left[:, b] < 0.0
        h = np.where(opposite, np.minimum(np.abs(left[:, a]), np.abs(left[:, b])), 0.0)
        out[:, j] = h
        left[:, a] -= np.sign(left[:, a]) * h
        left[:, b] -= np.sign(left[:, b]) * h
    return out


def mr9(cash_delta, tiers=MR9_TIERS):
    """MR9 per unit (USD): each pair's hedged notional charged progressively by tier.

    Parameters
    ----------
    cash_delta : float64[n_units, 3]
        Net cash delta (USD) per settlement currency USDT, USDC, USD.
    tiers : sequence of (from, to, rate), or three such sequences (one per pair, :data:`PAIRS`
        order)
        Each slice ``[from, to)`` of a pair's hedged notional is charged at ``rate``; ``to``
        None (or inf) is open-ended.  Default :data:`MR9_TIERS` (rates partly assumed: see the
        module docstring).

    Returns
    -------
    mr9 : float64[n_units]
    hedged : float64[n_units, 3]
        From :func:`stablecoin_hedged`.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.okx import mr9
    >>> charge, hedged = mr9(np.array([[10e6, 0.0, -10e6]]))        # USDT long, USD short
    >>> float(charge[0]), hedged.tolist()
    (202500.0, [[10000000.0, 0.0, 0.0]])
    """
    hedged = stablecoin_hedged(cash_delta)
    per_pair = tiers if _is_per_pair(tiers) else (tiers,) * len(PAIRS)
    out = np.zeros(hedged.shape[0])
    for j, table in enumerate(per_pair):
        out += tiered(hedged[:, j], [(lo, np.inf if hi is None else hi, rate)
                                     for lo, hi, rate in table])
    return out, hedged


def _is_per_pair(tiers):
    """Three tables (one per pair) rather than one table of (from, to, rate) rows."""
    first = tiers[0]
    return len(tiers) == len(PAIRS) and len(first) > 0 and not np.isscalar(first[0])

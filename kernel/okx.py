"""OKX portfolio margin building blocks: MR9, the stablecoin-hedge charge.

MR9 is plain numpy, like :mod:`.addons`: element-wise over units, three pairs each; numba
buys nothing there.  The per-unit charges MR1-MR7 (:func:`unit_charges`) and the conversion of
revaluation rows to USD (:func:`usd_rows`) are numba kernels.  Amounts are in USD.

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

import math

import numpy as np
from numba import prange

from ._config import njit
from .addons import tiered
from .assemble import group_span
from .black76 import undiscounted_price
from .instruments import INVERSE, OPTION, SPOT
from .scenarios import TABLE_EXTREME, TABLE_STANDARD

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


# -- the risk unit's charges (numba): MR1-MR7 and the cash deltas of MR9 ------------------------
N_UNIT = 10     # columns of unit_charges' ``unit_out``: see UNIT_COLUMNS
UNIT_COLUMNS = ("mr1", "mr2", "mr3", "mr4", "mr5", "mr6", "mr7_raw", "delta_usd",
                "mr1_cell", "mr6_cell")


@njit
def usd_rows(instr_pnl, rows, inverse, factor, und, price_shock):
    """In place: revaluation rows ``rows`` of ``instr_pnl`` (settlement currency) to USD.
    Row r is multiplied by ``factor[r]``, and an inverse row's cell s also by ``1 + shock``
    (its coin P&L is converted at the moved index ``S*(1+m)``; ``factor`` = S)."""
    for k in range(rows.shape[0]):
        r = rows[k]
        u = und[r]
        f = factor[r]
        for s in range(instr_pnl.shape[1]):
            instr_pnl[r, s] *= f * (1.0 + price_shock[u, s]) if inverse[r] else f


@njit
def option_value(F, K, T, sig, call, rate):
    """Black-76 value per unit of underlying (discounted at ``rate``); intrinsic at T <= 0."""
    if T <= 0.0:
        return max(F - K, 0.0) if call else max(K - F, 0.0)
    v = undiscounted_price(F, K, math.log(F / K), sig * math.sqrt(T), call)
    return v * math.exp(-rate * T)


CHUNKS = 64     # the parallel kernel cuts its selection into this many runs of rows


@njit(parallel=True)
def unit_charges(sel, *args):
    """Per selected unit (USD), OKX's charges from its positions and kept risk vector.

    Arguments after ``sel`` as :func:`unit_charges_rows`; the selection is cut into
    :data:`CHUNKS` runs of rows, spread over the threads (each unit is computed from its own
    rows only, so the result does not depend on the threads).  :func:`unit_charges_serial`
    is the same on the calling thread.
    """
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        unit_charges_rows(sel, c * n // chunks, (c + 1) * n // chunks, *args)


@njit
def unit_charges_serial(sel, *args):
    """:func:`unit_charges` on the calling thread (small selections)."""
    unit_charges_rows(sel, 0, sel.shape[0], *args)


@njit
def unit_charges_rows(sel, lo, hi, pu_start, pu_order, pos_instr, q, pos_group, kind,
                      settlement, contract_size, mark, forward, strike, is_call, years, sig,
                      s_px, p_px, leg, greeks, vectors, table, loss_weight, unit_und, n_scen,
                      group_rate, unit_basis, unit_mr7_rate, mr2_years, mr3_rate, mr5_rate,
                      opt_min, opt_fee, opt_fee_cap, rate, value, model_value, upnl, vega,
                      theta, unit_vega, unit_theta, pos_delta_usd, g_delta, g_vega, unit_out,
                      cash_leg):
    """Units ``sel[lo:hi]``: OKX's charges from their positions and kept risk vectors.

    Per position p (instrument i, q contracts, contract size c, index S, settlement
    currency price P): ``delta_usd`` = ``q c mark P`` (linear futures, perpetuals, spot),
    ``q delta_i S`` (inverse and options).  Amounts in settlement currency (``value``,
    ``model_value``, ``upnl``, ``vega``, ``theta``) are converted in place to USD (times P,
    or S for inverse instruments).  Unit columns (``unit_out``, :data:`UNIT_COLUMNS`):

    * MR1 = max(0, -min of the standard cells), MR6 = max(0, -min of loss_weight x the extreme
      cells), and the cells that set them;
    * MR2 = max(0, -sum of the options' change in value ``mr2_years`` later, inputs unchanged);
    * MR3 = ``mr3_rate`` x sum over expiry groups of |vega_usd|; MR5 = ``mr5_rate`` x sum of
      |rho_usd| (Black-76 rho = -T V per 1.00 of rate);
    * MR4 = sum over expiry groups of |delta_usd| x ``group_rate`` plus ``unit_basis`` x
      sum of |delta_usd| |mark/S - 1| of futures and perpetuals;
    * MR7 raw = ``unit_mr7_rate`` x sum of |delta_usd| of linear futures and perpetuals (any
      settlement) plus, per option contract, ``max(opt_min, opt_min |delta|) c S`` (long:
      at most its mark value) and ``min(opt_fee c S, opt_fee_cap x mark value)``;
    * ``cash_leg[u, k]``: sum of delta_usd of derivatives on leg k (0 USDT, 1 USDC, 2 USD).
    """
    for k in range(lo, hi):
        u = sel[k]
        r = unit_und[u]
        mr2 = 0.0
        mr5 = 0.0
        basis = 0.0
        mr7 = 0.0
        d_unit = 0.0
        uv = 0.0
        ut = 0.0
        for c in range(3):
            cash_leg[u, c] = 0.0
        p0, p1 = pu_start[u], pu_start[u + 1]
        g_lo, g_hi = group_span(pu_start, pu_order, pos_group, u)
        for g in range(g_lo, g_hi + 1):
            g_delta[g] = 0.0
            g_vega[g] = 0.0
        for j in range(p0, p1):
            p = pu_order[j]
            i = pos_instr[p]
            qty = q[p]
            c = contract_size[i]
            S = s_px[i]
            inv = settlement[i] == INVERSE
            f = S if inv else p_px[i]
            value[p] *= f
            model_value[p] *= f
            upnl[p] *= f
            vega[p] *= f
            theta[p] *= f
            uv += vega[p]
            ut += theta[p]
            is_opt = kind[i] == OPTION
            if is_opt or inv:
                d = qty * greeks[1, i] * S
            else:
                d = qty * c * mark[i] * p_px[i]
            pos_delta_usd[p] = d
            d_unit += d
            g = pos_group[p]
            if g >= 0:
                g_delta[g] += d
                g_vega[g] += vega[p]
            if kind[i] != SPOT and leg[i] >= 0:
                cash_leg[u, leg[i]] += d
            if is_opt:
                F = forward[i]
                call = is_call[i] == 1
                T = years[i]
                v0 = option_value(F, strike[i], T, sig[i], call, rate)
                v1 = option_value(F, strike[i], T - mr2_years, sig[i], call, rate)
                # per contract in USD: linear options in quote currency, inverse in coin
                conv = S / F if inv else p_px[i]
                mr2 += qty * c * (v1 - v0) * conv
                mr5 += abs(qty * c * T * v0 * conv)
                mark_usd = c * mark[i] * (S if inv else p_px[i])
                dlt = abs(greeks[1, i] / c) if c > 0.0 else 0.0
                slip = max(opt_min, opt_min * dlt) * c * S
                if qty > 0.0:
                    slip = min(slip, mark_usd)
                fee = min(opt_fee * c * S, opt_fee_cap * mark_usd)
                mr7 += abs(qty) * (slip + fee)
            elif kind[i] != SPOT:
                mr7 += abs(d) * unit_mr7_rate[u]
                basis += abs(d) * abs(mark[i] / S - 1.0)
        mr3 = 0.0
        mr4 = 0.0
        for g in range(g_lo, g_hi + 1):
            mr4 += abs(g_delta[g]) * group_rate[g]
            mr3 += abs(g_vega[g])
        unit_vega[u] = uv
        unit_theta[u] = ut
        # MR1 and MR6 from the unit's risk vector (USD)
        lo1 = 0.0
        c1 = 0
        lo6 = 0.0
        c6 = -1
        for s in range(n_scen[r]):
            x = vectors[u, s]
            if table[r, s] == TABLE_STANDARD:
                if x < lo1:
                    lo1 = x
                    c1 = s
            elif table[r, s] == TABLE_EXTREME:
                w = loss_weight[r, s] * x
                if c6 < 0 or w < lo6:
                    lo6 = w
                    c6 = s
        unit_out[u, 0] = -lo1
        unit_out[u, 1] = -mr2 if mr2 < 0.0 else 0.0
        unit_out[u, 2] = mr3_rate * mr3
        unit_out[u, 3] = mr4 + unit_basis[u] * basis
        unit_out[u, 4] = mr5_rate * mr5
        unit_out[u, 5] = max(-lo6, 0.0)
        unit_out[u, 6] = mr7
        unit_out[u, 7] = d_unit
        unit_out[u, 8] = c1
        unit_out[u, 9] = c6

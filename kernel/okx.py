"""OKX portfolio margin building blocks: MR9, the stablecoin-hedge charge.

:func:`mr9` and :func:`stablecoin_hedged` are plain numpy over arrays of units (the public
building blocks).  The engine's phases are numba kernels over a selection: the conversion of
revaluation rows to USD (:func:`usd_rows`), OKX's vol shocks (:func:`okx_vols`), the MR4 rate
inputs per expiry group (:func:`group_terms`), the per-unit charges MR1-MR7
(:func:`unit_charges`), then MR7 tiers, MR9, MMR, IMR and contributions
(:func:`unit_margins`), and the account's borrowing (:func:`account_borrowing`).  Amounts are
in USD.

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
from .addons import tier_table, tiered, tiered_value
from .assemble import group_span
from .black76 import undiscounted_price
from .instruments import INVERSE, OPTION, PERPETUAL, SPOT
from .scenarios import TABLE_EXTREME, TABLE_STANDARD
from .volshock import MIN_VOL

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
def usd_rows(instr_pnl, rows, row_instr, settlement, kind, mark, s_px, p_px, instr_type,
             und_row, price_shock):
    """In place: revaluation rows ``rows`` of ``instr_pnl`` (settlement currency) to USD.

    Row r (instrument i, index S, settlement currency price P, both USD) is multiplied by a
    factor: S for an inverse row, whose cell s is also multiplied by ``1 + shock`` (its coin
    P&L is converted at the moved index ``S*(1+m)``); P for a linear option; ``P / mark * S /
    P`` for a linear future, perpetual or spot (it moves by its index, not its mark:
    ``q c S m``).  ``und_row[instr_type[i]]``: the row of ``price_shock`` of i's underlying."""
    for k in range(rows.shape[0]):
        r = rows[k]
        i = row_instr[r]
        u = und_row[instr_type[i]]
        inv = settlement[i] == INVERSE
        f = s_px[i] if inv else p_px[i]
        if not inv and kind[i] != OPTION:
            f = f / mark[i] * s_px[i] / p_px[i]
        for s in range(instr_pnl.shape[1]):
            instr_pnl[r, s] *= f * (1.0 + price_shock[u, s]) if inv else f


@njit
def maximum(a, b):
    """``numpy.maximum`` of two floats: the larger, a NaN in either wins."""
    return a if (a >= b or a != a) else b


@njit
def interp(x, nodes, n, col):
    """``numpy.interp(x, nodes[:n, 0], nodes[:n, col])`` for one x (nodes increasing in
    column 0), the same arithmetic: flat beyond the ends, a node's own value at a node."""
    if x != x:
        return x
    if n == 1 or x < nodes[0, 0]:
        return nodes[0, col]
    if x >= nodes[n - 1, 0]:
        return nodes[n - 1, col]
    j = 0
    while nodes[j + 1, 0] <= x:
        j += 1
    if nodes[j, 0] == x:
        return nodes[j, col]
    x0, x1, y0, y1 = nodes[j, 0], nodes[j + 1, 0], nodes[j, col], nodes[j + 1, col]
    slope = (y1 - y0) / (x1 - x0)
    y = slope * (x - x0) + y0
    if y != y:
        y = slope * (x - x1) + y1
        if y != y and y0 == y1:
            y = y0
    return y


def vol_nodes(n_types, okx_vol):
    """The node tables of the unit types with OKX's vol shocks, as :func:`okx_vols` reads
    them: ``(on int64[n_types], nodes float64[n_types, 2, n, 3], n_nodes int64[n_types,
    2])`` from ``okx_vol`` ((type, up nodes, down nodes) rows of ``[days, points,
    fraction]``); table 0 is up, 1 down."""
    tables = [(t, k, np.asarray(nodes, dtype=np.float64).reshape(-1, 3))
              for t, up, down in okx_vol for k, nodes in enumerate((up, down))]
    width = max([len(n) for _, _, n in tables], default=1)
    on = np.zeros(n_types, dtype=np.int64)
    nodes = np.zeros((n_types, 2, width, 3))
    n_nodes = np.zeros((n_types, 2), dtype=np.int64)
    for t, k, n in tables:
        on[t] = 1
        nodes[t, k, :len(n)] = n
        n_nodes[t, k] = len(n)
    return on, nodes, n_nodes


@njit
def okx_vols(rows, row_instr, itype, n_instr, vol_floor, years, on, nodes, n_nodes, sig, up,
             same, down):
    """In place, the vol states of the revaluation rows ``rows`` whose unit type has OKX's
    shocks (``on``): ``same = max(sigma, floor)`` (floor: ``vol_floor`` of the type for a
    floored copy, a row at or past ``n_instr``, else 0), ``up = same + max(points(T),
    pct(T) same)``, ``down = max(same - max(points_d(T), pct_d(T) same), MIN_VOL)``;
    points and pct linear in days to expiry T = 365 ``years`` between the nodes, flat beyond
    (:func:`pmrisk.kernel.volshock.okx_shocked_vols`, row by row).  ``sig``, ``up``,
    ``same``, ``down``: per entry of ``rows``."""
    for k in range(rows.shape[0]):
        i = row_instr[rows[k]]
        t = itype[i]
        if not on[t]:
            continue
        s = maximum(sig[k], vol_floor[t] if rows[k] >= n_instr else 0.0)
        dte = years[i] * 365.0
        nu, nd = n_nodes[t, 0], n_nodes[t, 1]
        shock_up = maximum(interp(dte, nodes[t, 0], nu, 1), interp(dte, nodes[t, 0], nu, 2) * s)
        shock_dn = maximum(interp(dte, nodes[t, 1], nd, 1), interp(dte, nodes[t, 1], nd, 2) * s)
        same[k] = s
        up[k] = s + shock_up
        down[k] = maximum(s - shock_dn, MIN_VOL)


@njit
def group_terms(pos_group, pos_instr, pos_unit, kind, years, utype, annual_move, min_move,
                n_groups):
    """Per expiry group, the inputs of its MR4 rate
    (:func:`pmrisk.kernel.addons.roll_rate`): its years to expiry (0 for perpetuals) and the
    ``annual_move`` and ``min_move`` of its unit's type (per type), from its positions (the
    last position of a group sets them; they agree; a group without one: type 0's)."""
    g_years = np.zeros(n_groups)
    g_annual = np.full(n_groups, annual_move[0] if annual_move.shape[0] else 0.0)
    g_min = np.full(n_groups, min_move[0] if min_move.shape[0] else 0.0)
    for p in range(pos_group.shape[0]):
        g = pos_group[p]
        if g >= 0:
            i = pos_instr[p]
            t = utype[pos_unit[p]]
            g_years[g] = 0.0 if kind[i] == PERPETUAL else years[i]
            g_annual[g] = annual_move[t]
            g_min[g] = min_move[t]
    return g_years, g_annual, g_min


@njit
def option_value(F, K, T, sig, call, rate):
    """Black-76 value per unit of underlying (discounted at ``rate``); intrinsic at T <= 0."""
    if T <= 0.0:
        return max(F - K, 0.0) if call else max(K - F, 0.0)
    v = undiscounted_price(F, K, math.log(F / K), sig * math.sqrt(T), call)
    return v * math.exp(-rate * T)


CHUNKS = 64     # the parallel kernel cuts its selection into this many runs of rows


@njit(parallel=True)
def unit_charges(sel, pu_start, pu_order, pos_instr, q, pos_group, kind, settlement,
                 contract_size, mark, forward, strike, is_call, years, sig, s_px, p_px, leg,
                 greeks, vectors, table, loss_weight, unit_und, n_scen, group_rate, unit_basis,
                 unit_mr7_rate, mr2_years, mr3_rate, mr5_rate, opt_min, opt_fee, opt_fee_cap,
                 rate, value, model_value, upnl, vega, theta, unit_vega, unit_theta,
                 pos_delta_usd, g_delta, g_vega, unit_out, cash_leg):
    """Per selected unit (USD), OKX's charges from its positions and kept risk vector.

    The options' values (:func:`option_values`) first, once per instrument; then the
    arguments as :func:`unit_charges_rows`, the selection cut into :data:`CHUNKS` runs of
    rows spread over the threads (each unit is computed from its own rows only, so the result
    does not depend on the threads).  :func:`unit_charges_serial` is the same on the calling
    thread.
    """
    v0, v1 = option_values(sel, pu_start, pu_order, pos_instr, kind, forward, strike, is_call,
                           years, sig, rate, mr2_years)
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        unit_charges_rows(sel, c * n // chunks, (c + 1) * n // chunks, pu_start, pu_order,
                          pos_instr, q, pos_group, kind, settlement, contract_size, mark,
                          forward, years, v0, v1, s_px, p_px, leg, greeks, vectors, table,
                          loss_weight, unit_und, n_scen, group_rate, unit_basis, unit_mr7_rate,
                          mr3_rate, mr5_rate, opt_min, opt_fee, opt_fee_cap, value,
                          model_value, upnl, vega, theta, unit_vega, unit_theta, pos_delta_usd,
                          g_delta, g_vega, unit_out, cash_leg)


@njit
def unit_charges_serial(sel, pu_start, pu_order, pos_instr, q, pos_group, kind, settlement,
                        contract_size, mark, forward, strike, is_call, years, sig, s_px, p_px,
                        leg, greeks, vectors, table, loss_weight, unit_und, n_scen, group_rate,
                        unit_basis, unit_mr7_rate, mr2_years, mr3_rate, mr5_rate, opt_min,
                        opt_fee, opt_fee_cap, rate, value, model_value, upnl, vega, theta,
                        unit_vega, unit_theta, pos_delta_usd, g_delta, g_vega, unit_out,
                        cash_leg):
    """:func:`unit_charges` on the calling thread (small selections)."""
    v0, v1 = option_values(sel, pu_start, pu_order, pos_instr, kind, forward, strike, is_call,
                           years, sig, rate, mr2_years)
    unit_charges_rows(sel, 0, sel.shape[0], pu_start, pu_order, pos_instr, q, pos_group, kind,
                      settlement, contract_size, mark, forward, years, v0, v1, s_px, p_px, leg,
                      greeks, vectors, table, loss_weight, unit_und, n_scen, group_rate,
                      unit_basis, unit_mr7_rate, mr3_rate, mr5_rate, opt_min, opt_fee,
                      opt_fee_cap, value, model_value, upnl, vega, theta, unit_vega,
                      unit_theta, pos_delta_usd, g_delta, g_vega, unit_out, cash_leg)


@njit
def option_values(sel, pu_start, pu_order, pos_instr, kind, forward, strike, is_call, years,
                  sig, rate, mr2_years):
    """Per option instrument held in the units ``sel``, its value (:func:`option_value`)
    now (``v0``) and ``mr2_years`` later, inputs unchanged (``v1``); 0 for the other
    instruments.  Once per instrument, however many positions hold it."""
    n = kind.shape[0]
    v0 = np.zeros(n)
    v1 = np.zeros(n)
    done = np.zeros(n, dtype=np.bool_)
    for k in range(sel.shape[0]):
        u = sel[k]
        for j in range(pu_start[u], pu_start[u + 1]):
            i = pos_instr[pu_order[j]]
            if kind[i] == OPTION and not done[i]:
                done[i] = True
                call = is_call[i] == 1
                v0[i] = option_value(forward[i], strike[i], years[i], sig[i], call, rate)
                v1[i] = option_value(forward[i], strike[i], years[i] - mr2_years, sig[i], call,
                                     rate)
    return v0, v1


@njit
def unit_charges_rows(sel, lo, hi, pu_start, pu_order, pos_instr, q, pos_group, kind,
                      settlement, contract_size, mark, forward, years, v0, v1, s_px, p_px, leg,
                      greeks, vectors, table, loss_weight, unit_und, n_scen, group_rate,
                      unit_basis, unit_mr7_rate, mr3_rate, mr5_rate, opt_min, opt_fee,
                      opt_fee_cap, value, model_value, upnl, vega, theta, unit_vega, unit_theta,
                      pos_delta_usd, g_delta, g_vega, unit_out, cash_leg):
    """Units ``sel[lo:hi]``: OKX's charges from their positions and kept risk vectors.

    Per position p (instrument i, q contracts, contract size c, index S, settlement
    currency price P): ``delta_usd`` = ``q c mark P`` (linear futures, perpetuals, spot),
    ``q delta_i S`` (inverse and options).  Amounts in settlement currency (``value``,
    ``model_value``, ``upnl``, ``vega``, ``theta``) are converted in place to USD (times P,
    or S for inverse instruments).  Unit columns (``unit_out``, :data:`UNIT_COLUMNS`):

    * MR1 = max(0, -min of the standard cells), MR6 = max(0, -min of loss_weight x the extreme
      cells), and the cells that set them;
    * MR2 = max(0, -sum of the options' change in value ``v1 - v0`` (per instrument,
      :func:`option_values`: now and ``mr2_years`` later, inputs unchanged));
    * MR3 = ``mr3_rate`` x sum over expiry groups of |vega_usd|; MR5 = ``mr5_rate`` x sum of
      |rho_usd| (Black-76 rho = -T ``v0`` per 1.00 of rate);
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
                T = years[i]
                # per contract in USD: linear options in quote currency, inverse in coin
                conv = S / F if inv else p_px[i]
                mr2 += qty * c * (v1[i] - v0[i]) * conv
                mr5 += abs(qty * c * T * v0[i] * conv)
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


# -- the risk unit's margins (numba): MR7 tiers, MR9, MMR, IMR, contributions -------------------

def tier_tables(tables):
    """Tier tables as the kernels read them: ``(float64[n_tables, n, 3] of
    :func:`pmrisk.kernel.addons.tier_table` rows, int64[n_tables] row counts)``."""
    rows = [tier_table([tuple(r) for r in t]) for t in tables]
    width = max([len(r) for r in rows], default=1)
    out = np.zeros((len(rows), max(width, 1), 3))
    for k, r in enumerate(rows):
        out[k, :len(r)] = r
    return out, np.array([len(r) for r in rows], dtype=np.int64)


def mr9_tables(tiers=MR9_TIERS):
    """:func:`tier_tables` of :func:`mr9`'s ``tiers`` (one table, or one per pair), one
    table per pair in :data:`PAIRS` order."""
    return tier_tables(tiers if _is_per_pair(tiers) else (tiers,) * len(PAIRS))


@njit
def sign(x):
    """``numpy.sign`` of a float (0.0 for either zero, NaN for NaN)."""
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else (0.0 if x == 0.0 else x))


@njit
def _hedge(x, y):
    """One pair of :func:`stablecoin_hedged`: the hedged notional h of legs x and y and
    what is left of them."""
    h = min(abs(x), abs(y)) if x * y < 0.0 else 0.0
    return h, x - sign(x) * h, y - sign(y) * h


@njit
def unit_mr9(cash_leg, u, tables, n_rows):
    """:func:`mr9` of unit ``u`` (``cash_leg[u]``: USDT, USDC, USD), the same arithmetic:
    pairs matched in :data:`PAIRS` order, each pair's hedged notional charged by its table."""
    usdt, usdc, usd = cash_leg[u, 0], cash_leg[u, 1], cash_leg[u, 2]
    h0, usdt, usd = _hedge(usdt, usd)           # USDT-USD
    h1, usdt, usdc = _hedge(usdt, usdc)         # USDT-USDC
    h2, usdc, usd = _hedge(usdc, usd)           # USDC-USD
    out = 0.0
    out += tiered_value(h0, tables[0], n_rows[0])
    out += tiered_value(h1, tables[1], n_rows[1])
    out += tiered_value(h2, tables[2], n_rows[2])
    return out


@njit
def unit_margins(sel, charges, cash_leg, utype, mr7_tables, mr7_rows, mr9_tables, mr9_rows,
                 im_factor, pu_start, pu_order, pos_row, q, unit_und, loss_weight, instr_pnl,
                 worst_case, binding, open_orders, mmp, mr7, mr9, mmr, imr, scenario_margin,
                 risk_matrix_margin, maintenance_margin, initial_margin, own_loss,
                 mm_contribution, im_contribution, finite):
    """Per unit of ``sel``, from its :func:`unit_charges` (``charges``, ``cash_leg``):

    * ``mr7``: MR7 raw through its type's tier table (``mr7_tables[utype[u]]``,
      :func:`tier_tables`); ``mr9``: :func:`unit_mr9`;
    * ``mmr = max(max(MR1, MR2, MR6) + MR3 + MR4 + MR5 + MR9, MR7)``, ``imr = im_factor mmr``;
    * the engine's unit figures: ``scenario_margin`` = ``worst_case``, risk-matrix and
      maintenance margin = mmr, initial margin = imr + open orders + MMP margin, ``finite``
      (1.0: every charge and both margins finite, else 0.0);
    * per position p of u (``pu_start``/``pu_order``): its own loss in the unit's binding
      cell c, ``-loss_weight[und, c] q[p] instr_pnl[pos_row[p], c]`` (0 when the unit's
      worst case is not positive), as its MM contribution and, times ``im_factor``, its IM
      contribution.
    """
    n_col = charges.shape[1]
    for k in range(sel.shape[0]):
        u = sel[k]
        t = utype[u]
        m7 = tiered_value(charges[u, 6], mr7_tables[t], mr7_rows[t])
        m9 = unit_mr9(cash_leg, u, mr9_tables, mr9_rows)
        scen = maximum(maximum(charges[u, 0], charges[u, 1]), charges[u, 5])
        mm = maximum(scen + charges[u, 2] + charges[u, 3] + charges[u, 4] + m9, m7)
        im = im_factor * mm
        mr7[u] = m7
        mr9[u] = m9
        mmr[u] = mm
        imr[u] = im
        scenario_margin[u] = worst_case[u]
        risk_matrix_margin[u] = mm
        maintenance_margin[u] = mm
        initial = im + open_orders[u] + mmp[u]
        initial_margin[u] = initial
        ok = math.isfinite(mm) and math.isfinite(initial)
        for c in range(n_col):
            ok = ok and math.isfinite(charges[u, c])
        finite[u] = 1.0 if ok else 0.0
        cell = binding[u]
        w = loss_weight[unit_und[u], cell]
        bound = worst_case[u] > 0.0
        for j in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[j]
            own = -w * q[p] * instr_pnl[pos_row[p], cell] if bound else 0.0
            own_loss[p] = own
            mm_contribution[p] = own
            im_contribution[p] = im_factor * own


# -- the account's borrowing (numba): MR8 and the liquidation cost ---------------------------

@njit
def asset_price(col, stable, snap, asset_px):
    """USD price of an asset at snapshot ``snap``: ``asset_px[snap, col]`` (``col`` -1:
    none), NaN without one, 1 for a stablecoin (``stable``) whose price is NaN."""
    px = asset_px[snap, col] if (col >= 0 and asset_px.shape[1]) else np.nan
    return 1.0 if (px != px and stable) else px


@njit
def account_borrowing(acc, pa_start, pa_order, ba_start, ba_order, pos_asset, bal_asset, value,
                      bal_amount, acc_snap, asset_col, asset_stable, asset_px, ua_start,
                      unit_asset, borrow_mmr_rate, borrow_imr_rate, spot_taker_fee,
                      maintenance_margin, initial_margin, loan_maintenance_margin,
                      loan_initial_margin, liquidation_cost, finite, derivatives_mmr, borrow_mmr,
                      borrow_imr, okx_liquidation_cost, unit_mr8):
    """Per account a of ``acc``: MR8 (borrowing) and the liquidation cost, in place.

    An asset's equity (asset k: ``asset_col[k]``, ``asset_stable[k]`` as
    :func:`asset_price` reads them) is the sum, in row order, of the values of a's positions
    held in it (``pos_asset``: a spot position's coin, a derivative's settlement currency;
    ``value``, USD, divided by the asset's price; 0 where that price is not positive), then
    of a's balances in it.  Where negative, its USD value is borrowed; L is
    the sum over the assets in code order.  Then ``borrow_mmr = borrow_mmr_rate L``,
    ``borrow_imr = borrow_imr_rate L``, ``liquidation_cost = L (1 + borrow_mmr_rate)
    spot_taker_fee``; the account's maintenance margin becomes ``derivatives_mmr +
    borrow_mmr`` (``derivatives_mmr``: its maintenance margin less its loans' MM), its
    initial margin ``initial - loans' IM + borrow_imr``, its loans' MM and IM ``borrow_mmr``
    and ``borrow_imr`` (MR8 in place of the loan margin the accounts phase counted);
    ``finite`` is set to 0.0 where one of the new figures is not finite.  Per unit w of a
    (rows ``ua_start[a]:ua_start[a + 1]``), ``unit_mr8[w]`` is the part of ``borrow_mmr``
    owed in the unit's own underlying (asset ``unit_asset[w]``, -1: none): OKX's ``mr8`` of
    the risk unit; a borrowed stablecoin has no unit and counts in the account's figure only.
    """
    n_a = asset_col.shape[0]
    eq = np.zeros(n_a)
    held = np.zeros(n_a, dtype=np.bool_)
    for k in range(acc.shape[0]):
        a = acc[k]
        snap = acc_snap[a]
        for c in range(n_a):
            eq[c] = 0.0
            held[c] = False
        for j in range(pa_start[a], pa_start[a + 1]):
            p = pa_order[j]
            c = pos_asset[p]
            px = asset_price(asset_col[c], asset_stable[c], snap, asset_px)
            eq[c] += value[p] / px if px > 0.0 else 0.0
            held[c] = True
        for j in range(ba_start[a], ba_start[a + 1]):
            b = ba_order[j]
            c = bal_asset[b]
            eq[c] += bal_amount[b]
            held[c] = True
        owed = 0.0
        for c in range(n_a):
            if held[c]:
                owed += -eq[c] * asset_price(asset_col[c], asset_stable[c], snap, asset_px) \
                    if eq[c] < 0.0 else 0.0
        for w in range(ua_start[a], ua_start[a + 1]):
            c = unit_asset[w]
            unit_mr8[w] = borrow_mmr_rate * (
                -eq[c] * asset_price(asset_col[c], asset_stable[c], snap, asset_px)) \
                if c >= 0 and held[c] and eq[c] < 0.0 else 0.0
        deriv = maintenance_margin[a] - loan_maintenance_margin[a]
        unit_im = initial_margin[a] - loan_initial_margin[a]
        b_mm = borrow_mmr_rate * owed
        b_im = borrow_imr_rate * owed
        liq = owed * (1.0 + borrow_mmr_rate) * spot_taker_fee
        derivatives_mmr[a] = deriv
        borrow_mmr[a] = b_mm
        borrow_imr[a] = b_im
        okx_liquidation_cost[a] = liq
        loan_maintenance_margin[a] = b_mm
        loan_initial_margin[a] = b_im
        maintenance_margin[a] = deriv + b_mm
        initial_margin[a] = unit_im + b_im
        liquidation_cost[a] = liq
        if not (math.isfinite(deriv + b_mm) and math.isfinite(unit_im + b_im)
                and math.isfinite(liq)):
            finite[a] = 0.0

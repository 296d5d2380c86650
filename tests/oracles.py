"""Plain-numpy twins of the numba kernels in :mod:`pmrisk.kernel` (the test oracles).

Written for obviousness, not speed: vectorised numpy or plain Python loops over the documented
formulas, no hoisting, no shared code with the kernels.  Each oracle takes the same arguments
as its kernel and returns the same shapes and dtypes.  numpy and :mod:`math` only (scipy is not
a dependency): the normal CDF is ``0.5*erfc(-x/sqrt(2))`` from :mod:`math`, element-wise.

Units and conventions are those of the kernels' docstrings (SPEC §2-§4, §6):

* Black-76 is undiscounted unless ``rate`` is given (then times ``exp(-rate*T)``); for
  ``T <= 0`` or ``sigma*sqrt(T) < 1e-12`` the value is the (discounted, but never for
  ``T <= 0``) intrinsic value of the forward, delta 1/0 or 0/-1 by moneyness and +-1/2 exactly
  at the money, gamma = vega = 0 and theta = ``rate*price/365``.
* Scenario P&L of one contract = model value in the scenario minus model value at the marks,
  times the scenario's ``pnl_scale``; padding cells (beyond ``n_scen[u]``) are 0.
* Weighting of a cell x in a unit whose settlement currency is worth ``px`` USD:
  ``x < 0 -> min(loss_weight*x + dampener_usd/px, 0)``,
  ``x >= 0 -> min(gain_weight*x, gain_cap_usd/px)``;
  ``worst = max(0, -min weighted)``; the binding cell is the minimising cell, ties preferring
  vol state ``same`` (code 1) and then the lowest index.
"""

import math
from dataclasses import dataclass

import numpy as np

MIN_STDDEV = 1e-12
DAYS_PER_YEAR = 365.0
VOL_UP, VOL_SAME, VOL_DOWN, VOL_FACTOR = 0, 1, 2, 3
SPOT, PERPETUAL, FUTURE, OPTION = 0, 1, 2, 3
LINEAR, INVERSE = 0, 1

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def norm_cdf(x):
    """Standard normal CDF, element-wise (``erfc`` keeps both tails accurate)."""
    return 0.5 * _erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


def norm_pdf(x):
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _black76_arrays(F, K, T, sigma, is_call, rate):
    F, K, T, sigma = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                           for a in (F, K, T, sigma)))
    call = np.broadcast_to(np.asarray(is_call).astype(bool), F.shape)
    return F, K, T, sigma, call, float(rate)


def black76_price(F, K, T, sigma, is_call, rate):
    """Black-76 price per unit of underlying, element-wise over broadcastable arrays."""
    F, K, T, sigma, call, rate = _black76_arrays(F, K, T, sigma, is_call, rate)
    live = T > 0.0
    disc = np.where(live, np.exp(-rate * np.where(live, T, 0.0)), 1.0)
    sd = np.where(live, sigma * np.sqrt(np.where(live, T, 0.0)), 0.0)
    degenerate = sd < MIN_STDDEV

    intrinsic = np.maximum(np.where(call, F - K, K - F), 0.0)

    safe_sd = np.where(degenerate, 1.0, sd)
    d1 = (np.log(F / K) + 0.5 * safe_sd ** 2) / safe_sd
    d2 = d1 - safe_sd
    call_value = F * norm_cdf(d1) - K * norm_cdf(d2)
    put_value = K * norm_cdf(-d2) - F * norm_cdf(-d1)
    value = np.maximum(np.where(call, call_value, put_value), 0.0)

    return disc * np.where(degenerate, intrinsic, value)


def black76_greeks(F, K, T, sigma, is_call, rate):
    """``(price, delta, gamma, vega, theta_per_day)`` element-wise, stacked as ``(5, ...)``.

    Delta is dV/dF (so it carries the discount factor), vega per 1.00 of vol, theta
    ``-dV/dT / 365``."""
    F, K, T, sigma, call, rate = _black76_arrays(F, K, T, sigma, is_call, rate)
    price = black76_price(F, K, T, sigma, call, rate)
    live = T > 0.0
    Tpos = np.where(live, T, 0.0)
    disc = np.where(live, np.exp(-rate * Tpos), 1.0)
    sqrt_t = np.sqrt(Tpos)
    sd = sigma * sqrt_t
    degenerate = sd < MIN_STDDEV

    # -- degenerate (expired or zero-variance) branch ---------------------------------------
    moneyness_delta = np.where(
        F > K, np.where(call, 1.0, 0.0),
        np.where(F < K, np.where(call, 0.0, -1.0), np.where(call, 0.5, -0.5)))

    # -- regular branch -----------------------------------------------------------------------
    safe_sd = np.where(degenerate, 1.0, sd)
    safe_sqrt_t = np.where(degenerate, 1.0, sqrt_t)
    d1 = (np.log(F / K) + 0.5 * safe_sd ** 2) / safe_sd
    pdf = norm_pdf(d1)
    black_delta = np.where(call, norm_cdf(d1), norm_cdf(d1) - 1.0)
    gamma = disc * pdf / (F * safe_sd)
    vega = disc * F * pdf * safe_sqrt_t
    theta_year = rate * price - disc * F * pdf * sigma / (2.0 * safe_sqrt_t)

    delta = disc * np.where(degenerate, moneyness_delta, black_delta)
    gamma = np.where(degenerate, 0.0, gamma)
    vega = np.where(degenerate, 0.0, vega)
    theta = np.where(degenerate, rate * price, theta_year) / DAYS_PER_YEAR
    return np.stack([price, delta, gamma, vega, theta])


def black76_price_array(F, K, T, sigma, is_call, rate):
    return black76_price(F, K, T, sigma, is_call, rate)


def black76_greeks_array(F, K, T, sigma, is_call, rate):
    return black76_greeks(F, K, T, sigma, is_call, rate).reshape(5, -1)


def instrument_pnl(kind, settlement, contract_size, mark, forward, strike, is_call,
                   t_now, t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate,
                   n_scen, price_shock, log1p_shock, vol_code, vol_factor, pnl_scale):
    """Scenario P&L per contract, float64[n_instr, S] (twin of ``revalue.instrument_pnl``).

    * linear future/perpetual/spot: ``c*M*s*scale`` (quote currency);
    * inverse future/perpetual: ``(c/M)*(1 - 1/(1+s))*scale`` (coin);
    * option: ``c*(V(F(1+s), K, t_scen, sigma_state) - V(F, K, t_now, sig_mark))*scale``
      with ``sigma_state`` = up / same / down / ``same*vol_factor``; inverse options divide
      each value by its own forward (``F(1+s)`` in the scenario, ``F`` at the marks).

    ``log1p_shock`` is accepted for signature parity and deliberately ignored: the oracle
    takes ``log(F(1+s)/K)`` directly, so it also checks the kernel's hoisted ``log1p``.
    """
    n_instr = len(kind)
    width = price_shock.shape[1]
    out = np.zeros((n_instr, width))
    for i in range(n_instr):
        u = und[i]
        n = n_scen[u]
        s = price_shock[u, :n]
        scale = pnl_scale[u, :n]
        c = contract_size[i]
        inverse = settlement[i] == INVERSE
        if kind[i] != OPTION:
            if inverse:
                out[i, :n] = (c / mark[i]) * (1.0 - 1.0 / (1.0 + s)) * scale
            else:
                out[i, :n] = c * mark[i] * s * scale
            continue
        codes = vol_code[u, :n]
        sigma = np.select(
            [codes == VOL_UP, codes == VOL_SAME, codes == VOL_DOWN],
            [sig_up[i], sig_same[i], sig_down[i]],
            default=sig_same[i] * vol_factor[u, :n])
        F = forward[i]
        Fs = F * (1.0 + s)
        at_marks = black76_price(F, strike[i], t_now[i], sig_mark[i], is_call[i], rate)
        in_scen = black76_price(Fs, strike[i], t_scen[i], sigma, is_call[i], rate)
        if inverse:
            at_marks = at_marks / F
            in_scen = in_scen / Fs
        out[i, :n] = c * (in_scen - at_marks) * scale
    return out


def instrument_greeks(kind, settlement, contract_size, mark, forward, strike, is_call,
                      t_now, sig_mark, rate):
    """``float64[5, n_instr]``: model value, delta, gamma, vega, theta per contract
    (twin of ``revalue.instrument_greeks``)."""
    kind = np.asarray(kind)
    c = np.asarray(contract_size, dtype=np.float64)
    inverse = np.asarray(settlement) == INVERSE
    option = kind == OPTION
    out = np.zeros((5, len(kind)))
    # futures, perpetuals, spot: delta c (linear) or face value in coin c/M (inverse)
    out[1] = np.where(option, 0.0, np.where(inverse, c / mark, c))
    if option.any():
        p, d, g, v, t = black76_greeks(forward[option], strike[option], t_now[option],
                                       sig_mark[option], is_call[option], rate)
        F = forward[option]
        co = c[option]
        inv = inverse[option]
        out[0, option] = np.where(inv, co * p / F, co * p)
        out[1, option] = np.where(inv, co * (d - p / F), co * d)
        out[2, option] = co * g
        out[3, option] = np.where(inv, co * v / F, co * v)
        out[4, option] = np.where(inv, co * t / F, co * t)
    return out


def instrument_pnl_greeks(*args):
    """Twin of ``revalue.instrument_pnl_greeks``: :func:`instrument_pnl` of the first 21
    arguments and :func:`instrument_greeks` of the first ``n_g`` (the last argument) rows'
    columns with ``rate``."""
    pnl_args, n_g = args[:21], args[21]
    g_args = [pnl_args[k][:n_g] for k in (0, 1, 2, 3, 4, 5, 6, 7, 9)]
    return instrument_pnl(*pnl_args), instrument_greeks(*g_args, pnl_args[14])


def unit_risk_vectors(pos_unit, pos_instr, quantity, instr_pnl, n_units):
    """``float64[n_units, S]``: the sum of ``quantity x instrument row`` per unit."""
    out = np.zeros((n_units, instr_pnl.shape[1]))
    np.add.at(out, pos_unit, quantity[:, None] * instr_pnl[pos_instr])
    return out


def weigh(x, loss_weight, gain_weight, gain_cap, dampener):
    """Weighted value of cells ``x`` (all amounts already in settlement currency)."""
    loss = np.minimum(loss_weight * x + dampener, 0.0)
    gain = np.minimum(gain_weight * x, gain_cap)
    return np.where(x < 0.0, loss, gain)


def worst_and_binding(weighted, codes):
    """``(worst, binding)`` of one unit's weighted cells: the minimum, ties to vol state
    ``same`` and then the lowest index."""
    if len(weighted) == 0:
        return 0.0, 0
    lowest = weighted.min()
    # ties: within 1e-12 relative of the lowest (rounding must not decide the binding cell)
    tied = np.flatnonzero(weighted - lowest <= 1e-12 * np.maximum(np.abs(weighted),
                                                                  abs(lowest)))
    same = tied[codes[tied] == VOL_SAME]
    binding = int(same[0]) if len(same) else int(tied[0])
    return max(0.0, -weighted[binding]), binding


def _weighted_row(x, k, px, n_scen, loss_weight, gain_weight, gain_cap_usd, dampener_usd):
    n = n_scen[k]
    return weigh(x[:n], loss_weight[k, :n], gain_weight[k, :n],
                 gain_cap_usd[k, :n] / px, dampener_usd[k, :n] / px)


def weighted_worst(vectors, unit_und, unit_px, n_scen, loss_weight, gain_weight,
                   gain_cap_usd, dampener_usd, vol_code):
    """``(weighted float64[n_units, S], worst float64[n_units], binding int64[n_units])``."""
    n_units, width = vectors.shape
    weighted = np.zeros((n_units, width))
    worst = np.zeros(n_units)
    binding = np.zeros(n_units, dtype=np.int64)
    for u in range(n_units):
        k = unit_und[u]
        n = n_scen[k]
        w = _weighted_row(vectors[u], k, unit_px[u], n_scen, loss_weight, gain_weight,
                          gain_cap_usd, dampener_usd)
        weighted[u, :n] = w
        worst[u], binding[u] = worst_and_binding(w, vol_code[k, :n])
    return weighted, worst, binding


def standalone_worst(rows, qty, und_row, px, instr_pnl, n_scen, loss_weight, gain_weight,
                     gain_cap_usd, dampener_usd, vol_code):
    """Each position's own risk vector, then :func:`weighted_worst` on it."""
    vectors = np.asarray(qty, dtype=np.float64)[:, None] * instr_pnl[rows]
    _, worst, _ = weighted_worst(vectors, und_row, px, n_scen, loss_weight, gain_weight,
                                 gain_cap_usd, dampener_usd, vol_code)
    return worst


def order_margin(order_unit, order_instr, order_qty, vectors, instr_pnl, unit_und, unit_px,
                 base_worst, n_scen, loss_weight, gain_weight, gain_cap_usd, dampener_usd,
                 vol_code):
    """``float64[n_orders]``: ``max(worst(vector + qty*instrument row) - base_worst, 0)``."""
    out = np.zeros(len(order_unit))
    for o in range(len(order_unit)):
        u = order_unit[o]
        k = unit_und[u]
        filled = vectors[u] + order_qty[o] * instr_pnl[order_instr[o]]
        w = _weighted_row(filled, k, unit_px[u], n_scen, loss_weight, gain_weight,
                          gain_cap_usd, dampener_usd)
        worst, _ = worst_and_binding(w, vol_code[k, :n_scen[k]])
        out[o] = max(worst - base_worst[u], 0.0)
    return out


@dataclass
class DeltaDirections:
    """The accounts' own delta directions (same layout for every account of a group):
    ``shock`` (n_acc, m, d); ``loss_weight``, ``gain_weight`` (m, d); ``n_vol``, ``shell`` and
    ``sign`` (m: 0 for -z*, 1 for +z*)."""
    shock: np.ndarray
    loss_weight: np.ndarray
    gain_weight: np.ndarray
    n_vol: np.ndarray
    shell: np.ndarray
    sign: np.ndarray

    @property
    def size(self):
        return len(self.n_vol)


def delta_directions(js, rho, params, model, g):
    """Twin of the delta directions of :func:`pmrisk.kernel.joint.joint_stress`: each
    account's own directions +-z*, z* = rho g / sqrt(g' rho g) with ``g`` its
    range-scaled USD slopes per underlying (rows of ``g``): for a linear book -z* is the point
    of the ellipsoid with the largest loss, so the joint worst is exact whatever the number of
    quasi-random directions; for options it is the first-order guess.  Shells (and tails) as
    for every direction.  Accounts with no slope, and groups of one underlying, get zero moves
    (a repeat of the no-move scenario) or none."""
    n, d = g.shape
    pr = np.array([params[r]["price_range"] for r in js.rows])
    gw = np.array([params[r]["pnl_offset"] for r in js.rows])
    if d < 2:
        e = np.zeros((0, d))
        return DeltaDirections(np.zeros((n, 0, d)), e, e, np.zeros(0, np.int64),
                               np.zeros(0, np.int64), np.zeros(0, np.int64))
    q = np.einsum("ad,de,ae->a", g, rho, g)
    ok = q > 0.0
    z1 = np.where(ok[:, None], (g @ rho) / np.sqrt(np.where(ok, q, 1.0))[:, None], 0.0)
    z = np.stack([-z1, z1], axis=1).clip(-1.0, 1.0)          # (n, 2, d)
    scale = [(k / js.buckets) * pr for k in range(1, js.buckets + 1)]
    shock = [z * c for c in scale]                              # each (n, 2, d)
    lw = [np.ones((2, d))] * js.buckets
    gws = [np.tile(gw, (2, 1))] * js.buckets
    nv = [3] * (2 * js.buckets)
    shell = np.repeat(np.arange(1, js.buckets + 1), 2).tolist()
    if bool(model["extreme_scenarios"]) and model["tail_mode"] == "joint":
        mult = np.array([params[r]["extreme_multiple"] for r in js.rows])
        cover = np.array([params[r]["cover_fraction"] for r in js.rows])
        shock.append(z * (mult * pr))
        lw.append(np.tile(cover, (2, 1)))
        gws.append(np.tile(cover, (2, 1)))
        nv += [1, 1]
        shell += [-1, -1]
    return DeltaDirections(
        shock=np.concatenate(shock, axis=1), loss_weight=np.vstack(lw),
        gain_weight=np.vstack(gws), n_vol=np.array(nv, dtype=np.int64),
        shell=np.array(shell, dtype=np.int64),
        sign=np.tile([0, 1], len(shell) // 2).astype(np.int64))


def joint_scenario_margin(book, model):
    """Correlated mode's joint worst case per account in USD (SPEC §5), by exact revaluation at
    every joint scenario: twin of :func:`pmrisk.engine.correlated.run_joint` (without the per-unit
    tails of ``tail_mode = "per_unit"`` and Deribit's extended table).

    Per account: its units that hold risk (a non-zero position after exclusions) fix its set of
    underlyings, whose correlation submatrix gives the shared joint scenarios
    (:func:`pmrisk.engine.correlated.joint_scenarios`) plus the account's own delta directions
    (:func:`delta_directions` above, from the units' first-order USD P&L per
    relative move, computed here with :func:`instrument_greeks`).  The scenario sets
    themselves are the implementation's, which tests/test_correlated.py checks on their own.
    Then, per joint scenario: every instrument is revalued (:func:`instrument_pnl` above) at
    its underlying's move with each allowed vol state; each unit sums its positions, weighs
    each vol cell and keeps the worst; the units' values in USD are added.
    """
    from pmrisk.engine.correlated import joint_scenarios
    from pmrisk.model.correlation import correlation_matrix
    from pmrisk.engine.core import revaluation_inputs
    from pmrisk.engine.excluded import excluded_positions

    rv = revaluation_inputs(book, model)
    units, pos_unit, instr = rv.units, rv.pos_unit, (*rv.args.instruments(), rv.args.rate)
    q = np.where(excluded_positions(book, model), 0.0, book.quantity)
    unit_row = units.type_und_code[units.utype]
    unit_px = units.settle_px
    n_rows = len(units.underlyings)
    params = [model.underlying(u) for u in units.underlyings]
    sig = np.where(book.kind == OPTION, book.mark_iv, 0.0)
    greeks = instrument_greeks(book.kind, book.settlement, book.contract_size, book.mark,
                               book.forward, book.strike, book.is_call, book.years, sig,
                               float(model["rate"]))
    pi_ = book.pos_instr
    # first-order USD P&L per relative move: linear positions move from their mark (futures,
    # spot) or forward (options); inverse deltas are coin P&L per relative move
    ref = np.where(book.kind[pi_] == OPTION, book.forward[pi_], book.mark[pi_])
    slope = q * greeks[1, pi_] * np.where(book.settlement[pi_] == INVERSE, 1.0, ref)
    unit_delta_usd = np.bincount(pos_unit, weights=slope, minlength=len(units)) * unit_px
    out = np.zeros(len(book.accounts))
    for a in range(len(book.accounts)):
        us = [u for u in np.flatnonzero(units.account == a) if (q[pos_unit == u] != 0).any()]
        if not us:
            continue
        rows = sorted({int(unit_row[u]) for u in us})
        rho = correlation_matrix([units.underlyings[r] for r in rows], model).matrix
        js = joint_scenarios(rows, rho, params, model)
        g = np.zeros(len(rows))
        for u in us:
            g[rows.index(int(unit_row[u]))] += unit_delta_usd[u]
        g *= np.array([params[r]["price_range"] for r in rows])
        extra = delta_directions(js, rho, params, model, g[None, :])
        shocks = np.vstack([js.shock, extra.shock[0]])
        lws = np.vstack([js.loss_weight, extra.loss_weight])
        gws = np.vstack([js.gain_weight, extra.gain_weight])
        nvs = np.concatenate([js.n_vol, extra.n_vol])
        totals = []
        for j in range(len(nvs)):
            states = [VOL_UP, VOL_SAME, VOL_DOWN] if nvs[j] == 3 else [VOL_SAME]
            shock = np.zeros((n_rows, len(states)))
            for k, r in enumerate(rows):
                shock[r, :] = shocks[j, k]
            ones = np.ones_like(shock)
            pnl = instrument_pnl(*instr, np.full(n_rows, len(states)), shock, np.log1p(shock),
                                 np.tile(np.array(states), (n_rows, 1)), ones, ones)
            total = 0.0
            for u in us:
                on = pos_unit == u
                vec = (q[on][:, None] * pnl[rv.pos_row[on]]).sum(axis=0)
                k = rows.index(int(unit_row[u]))
                cap = params[unit_row[u]]["max_offsetable_pnl"] / unit_px[u]
                cells = weigh(vec, lws[j, k], gws[j, k], cap, 0.0)
                total += cells.min() * unit_px[u]
            totals.append(total)
        out[a] = max(0.0, -min(totals))
    return out


def bracket_notional(quantity, contract_size, mark, coin_margined):
    """Binance bracket notional: COIN-M ``|q*cs_usd/mark|`` (coin), USD-M ``|q*cs*mark|``."""
    q, cs, m = (np.asarray(a, dtype=np.float64) for a in (quantity, contract_size, mark))
    return np.where(np.asarray(coin_margined) == 1, np.abs(q * cs / m), np.abs(q * cs * m))


def bracket_margin_usd(mm, coin_margined, index):
    """A position's bracket MM in USD: COIN-M (in coin) times its index price, USDⓈ-M as is."""
    mm = np.asarray(mm, dtype=np.float64)
    return np.where(np.asarray(coin_margined) == 1, mm * np.asarray(index, dtype=np.float64), mm)


def bracket_margin(notional, pos_ladder, floor, cap, mmr, cum, offsets):
    """Bracket row (``floor < N <= cap``, the first bracket also holding ``N = 0``; -1 if none)
    and ``MM = N*mmr - cum`` (NaN where no bracket), one position at a time."""
    rows, mms = [], []
    for n, k in zip(notional, pos_ladder):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        hits = [b for b in range(lo, hi)
                if floor[b] < n <= cap[b] or (b == lo and n == 0.0 == floor[b])]
        rows.append(hits[0] if hits else -1)
        mms.append(n * mmr[hits[0]] - cum[hits[0]] if hits else np.nan)
    return np.array(rows, dtype=np.int64), np.array(mms, dtype=np.float64)


def stablecoin_hedged(cash_delta):
    """Hedged notional per (unit, pair) for pairs USDT-USD, USDT-USDC, USDC-USD (in that
    order): opposite-sign net cash deltas offset by ``min(|a|, |b|)``, which both legs then
    lose.  ``cash_delta``: (n_units, 3) columns USDT, USDC, USD."""
    out = np.zeros((len(cash_delta), 3))
    for u, row in enumerate(np.asarray(cash_delta, dtype=np.float64)):
        left = {"USDT": row[0], "USDC": row[1], "USD": row[2]}
        for j, (a, b) in enumerate((("USDT", "USD"), ("USDT", "USDC"), ("USDC", "USD"))):
            if left[a] * left[b] < 0:
                h = min(abs(left[a]), abs(left[b]))
                out[u, j] = h
                left[a] -= math.copysign(h, left[a])
                left[b] -= math.copysign(h, left[b])
    return out

def _seed_cov(r, ok, i, j, seed_obs):
    rows = [t for t in range(seed_obs) if ok[t][i] and ok[t][j]]
    if len(rows) < 2:
        return float("nan"), len(rows)
    mi = sum(r[t][i] for t in rows) / len(rows)
    mj = sum(r[t][j] for t in rows) / len(rows)
    return sum((r[t][i] - mi) * (r[t][j] - mj) for t in rows) / (len(rows) - 1), len(rows)


def ewma_variance(r, ok, lam, seed_obs):
    """EWMA variance path (kernel/ewma.py), plain Python: the seed (sample variance of the
    first seed_obs returns, divisor n - 1), then sigma2 = lam*sigma2 + (1-lam)*r**2 on rows
    where the return exists."""
    T, d = len(r), len(r[0])
    out = np.empty((T - seed_obs + 1, d))
    for i in range(d):
        v, _ = _seed_cov(r, ok, i, i, seed_obs)
        path = [v]
        for t in range(seed_obs, T):
            if ok[t][i]:
                v = lam * v + (1.0 - lam) * r[t][i] ** 2
            path.append(v)
        out[:, i] = path
    return out


def ewma_covariance(r, ok, lam, seed_obs):
    """EWMA covariance after the last row and the rows that fed each pair, plain Python."""
    T, d = len(r), len(r[0])
    cov = np.empty((d, d))
    used = np.zeros((d, d), dtype=np.int64)
    for i in range(d):
        for j in range(i, d):
            c, n = _seed_cov(r, ok, i, j, seed_obs)
            for t in range(seed_obs, T):
                if ok[t][i] and ok[t][j]:
                    c = lam * c + (1.0 - lam) * r[t][i] * r[t][j]
                    n += 1
            cov[i, j] = cov[j, i] = c
            used[i, j] = used[j, i] = n
    return cov, used


def fhs_quantile(moves, sigma_then, sigma_now, quantile):
    """Quantile of |move| * sigma_now / sigma_then with linear interpolation between the
    sorted values (numpy's default), written out."""
    x = sorted(abs(m) * sigma_now / s for m, s in zip(moves, sigma_then))
    pos = quantile * (len(x) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(x) - 1)
    return x[lo] + (x[hi] - x[lo]) * (pos - lo)


# -- pmrisk.kernel.assemble: the engine's phases, as numpy over every row ----------------------

def csr(keys, n_groups):
    """``(start, order)``: members of each group in row order (negative keys left out)."""
    keys = np.asarray(keys, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    order = order[keys[order] >= 0]
    start = np.concatenate([[0], np.cumsum(np.bincount(keys[keys >= 0],
                                                       minlength=n_groups))]).astype(np.int64)
    return start, order.astype(np.int64)


def _members(start, order, n_rows):
    """Group of each row from a CSR index (-1: none)."""
    group = np.full(n_rows, -1, dtype=np.int64)
    for g in range(len(start) - 1):
        group[order[start[g]:start[g + 1]]] = g
    return group


def unit_figures(sel, pu_start, pu_order, pos_instr, pos_row, quantity, q_port, entry_price,
                 short_opt, som_rate, pos_group, pos_excluded,
                 kind, settlement, contract_size, mark, forward, instr_greeks, instr_pnl,
                 unit_und, unit_px, index_px, coin_settled, threshold_usd, m_inc,
                 max_delta_shock, group_rate, ou_start, ou_order, ord_row, ord_qty, res_oo,
                 n_scen, price_shock, loss_weight, gain_weight, gain_cap_usd, dampener_usd,
                 vol_code, keep_vectors,
                 vectors, weighted, worst, binding, scenario_shock, scenario_vol, order_im,
                 open_orders, roll_group, roll_coin, delta_coin, som_coin, conv, unit_delta,
                 unit_gamma, unit_vega, unit_theta, value, model_value, upnl, delta, gamma, vega,
                 theta, pos_delta, slope_usd, finite):
    """The old engine's numpy: every unit computed, the rows of ``sel`` (and of their
    positions, orders and groups) written."""
    n_units = len(unit_und)
    pos_unit = _members(pu_start, pu_order, len(quantity))
    ord_unit = _members(ou_start, ou_order, len(ord_qty))
    vec = unit_risk_vectors(pos_unit, pos_row, q_port, instr_pnl, n_units)
    w, wc, b = weighted_worst(vec, unit_und, unit_px, n_scen, loss_weight, gain_weight,
                              gain_cap_usd, dampener_usd, vol_code)
    oim = order_margin(ord_unit, ord_row, ord_qty, vec, instr_pnl, unit_und, unit_px, wc,
                       n_scen, loss_weight, gain_weight, gain_cap_usd, dampener_usd, vol_code)
    # positions: value, unrealised P&L, model value, Greeks
    pi, q = pos_instr, quantity
    k, inverse, cs, m = kind[pi], settlement[pi] == 1, contract_size[pi], mark[pi]
    has_entry = ~np.isnan(entry_price)
    e = np.where(has_entry, entry_price, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fut = np.where(inverse, q * cs * (1.0 / e - 1.0 / m), q * cs * (m - e))
    up = np.where(has_entry, np.where(k == 3, q * cs * (m - e), fut), 0.0)
    val = np.where((k == 3) | (k == 0), q * cs * m, up)
    mv = np.where(k == 3, q * instr_greeks[0, pi], val)
    g = q * instr_greeks[1:, pi]
    pd = np.where(pos_excluded != 0, 0.0, g[0])
    ref = np.where(k == 3, forward[pi], m)
    slope = np.bincount(pos_unit, weights=pd * np.where(inverse, 1.0, ref),
                        minlength=n_units) * unit_px
    ug = np.vstack([np.bincount(pos_unit, weights=g[j], minlength=n_units) for j in range(4)])
    # add-ons in coin
    held = pos_group >= 0
    net = np.bincount(pos_group[held], weights=pd[held], minlength=len(group_rate))
    rg = group_rate * np.abs(net)
    group_unit = np.full(len(group_rate), -1, dtype=np.int64)
    group_unit[pos_group[held]] = pos_unit[held]
    rc = np.bincount(group_unit[group_unit >= 0], weights=rg[group_unit >= 0],
                     minlength=n_units)
    d_unit = np.bincount(pos_unit, weights=pd, minlength=n_units)
    notional = np.abs(d_unit) * index_px
    dc = np.minimum(np.maximum(notional - threshold_usd, 0.0) * np.abs(d_unit) * m_inc,
                    max_delta_shock * notional) / index_px
    sc = np.bincount(pos_unit, weights=short_opt * som_rate, minlength=n_units)
    cv = np.where(coin_settled != 0, 1.0, index_px / unit_px)
    oo = np.bincount(ord_unit, weights=oim, minlength=n_units) + res_oo
    worst_positive = wc > 0
    r = unit_und
    shock = np.where(worst_positive, price_shock[r, b], np.nan)
    volc = np.where(worst_positive, vol_code[r, b], -1)
    P = np.isin(pos_unit, sel)
    OD = np.isin(ord_unit, sel)
    G = np.isin(group_unit, sel)
    if keep_vectors:
        vectors[sel] = vec[sel]
        weighted[sel] = w[sel]
    for dst, src, rows in ((worst, wc, sel),
                           (binding, b, sel), (scenario_shock, shock, sel),
                           (scenario_vol, volc, sel), (order_im, oim, OD),
                           (open_orders, oo, sel), (roll_group, rg, G), (roll_coin, rc, sel),
                           (delta_coin, dc, sel), (som_coin, sc, sel), (conv, cv, sel),
                           (unit_delta, ug[0], sel), (unit_gamma, ug[1], sel),
                           (unit_vega, ug[2], sel), (unit_theta, ug[3], sel),
                           (value, val, P), (model_value, mv, P), (upnl, up, P),
                           (delta, g[0], P), (gamma, g[1], P), (vega, g[2], P),
                           (theta, g[3], P), (pos_delta, pd, P), (slope_usd, slope, sel)):
        dst[rows] = src[rows]
    # every position's value, unrealised P&L, model value and Greeks finite
    pos_ok = np.isfinite(np.vstack([val, up, mv, g])).all(axis=0)
    bad = np.bincount(pos_unit, weights=~pos_ok, minlength=n_units) > 0
    finite[sel] = np.where(bad, 0.0, 1.0)[sel]


def unit_margins(sel, pu_start, pu_order, pos_group, pos_delta, short_opt, som_rate,
                 excluded_pos, own_given, own_from_binding, pos_row, q_port, instr_pnl,
                 unit_und, loss_weight, binding, worst, scenario_margin, roll_group, roll_coin,
                 delta_coin, som_coin, conv, excluded, open_orders, mmp, risk_multiplier,
                 mm_factor, im_factor, group_den, unit_delta, unit_gamma, unit_vega,
                 unit_theta,
                 roll, delta_shock, som, rmm, mm, im, own_loss, mm_contrib, im_contrib, finite,
                 positions=True):
    """The old engine's numpy for margins and contributions; rows of ``sel`` written
    (without ``positions``: the units' rows only, ``finite`` from the units' figures)."""
    n_units = len(unit_und)
    pos_unit = _members(pu_start, pu_order, len(pos_delta))
    ro, ds, so = roll_coin * conv, delta_coin * conv, som_coin * conv
    x = scenario_margin + ro + ds + so
    m_ = risk_multiplier * mm_factor * x + excluded
    i_ = risk_multiplier * im_factor * x + im_factor * excluded + open_orders + mmp
    b = binding[pos_unit]
    if own_from_binding:
        cell = q_port * instr_pnl[pos_row, b]
        own = np.where(worst[pos_unit] > 0.0, -loss_weight[unit_und[pos_unit], b] * cell, 0.0)
    else:
        own = own_given.copy()
    absd = np.abs(pos_delta)

    def share(total, group):
        out = np.zeros(len(group))
        h = group >= 0
        den = np.bincount(group[h], weights=absd[h], minlength=len(total))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[h] = np.where(den[group[h]] > 0, total[group[h]] * absd[h] / den[group[h]], 0.0)
        return out

    base = own + (share(roll_group, pos_group) + share(delta_coin, pos_unit)
                  + short_opt * som_rate) * conv[pos_unit]
    mc = risk_multiplier * mm_factor * base + excluded_pos
    ic = risk_multiplier * im_factor * base + im_factor * excluded_pos
    P = np.isin(pos_unit, sel) & positions
    for dst, src, rows in ((roll, ro, sel), (delta_shock, ds, sel), (som, so, sel),
                           (rmm, x, sel), (mm, m_, sel), (im, i_, sel), (own_loss, own, P),
                           (mm_contrib, mc, P), (im_contrib, ic, P)):
        dst[rows] = src[rows]
    pos_ok = np.isfinite(np.vstack([mc, ic])).all(axis=0)
    unit_ok = np.isfinite(np.vstack([worst, ro, ds, so, open_orders, mmp, scenario_margin,
                                     excluded, x, m_, i_, unit_delta, unit_gamma, unit_vega,
                                     unit_theta])).all(axis=0)
    bad = np.bincount(pos_unit, weights=~pos_ok & positions, minlength=n_units) > 0
    # the positions' values and Greeks: as unit_figures left finite
    finite[sel] = np.where(unit_ok & ~bad & (finite == 1.0), 1.0, 0.0)[sel]


def unit_tick(sel, figures, margins, worst, scenario_margin):
    """:func:`unit_figures`, the units' own worst case as their scenario margin, then
    :func:`unit_margins` without the positions' figures: of those, ``value`` alone is
    written (the others go to scratch copies)."""
    scratch = {id(a): a.copy() for a in figures[-9:-2]}       # model_value ... pos_delta

    def swapped(args):
        return [scratch.get(id(a), a) if isinstance(a, np.ndarray) else a for a in args]
    unit_figures(sel, *swapped(figures))
    scenario_margin[sel] = worst[sel]
    unit_margins(sel, *swapped(margins), positions=False)


def account_figures(sel, pa_start, pa_order, pos_unit, value, unit_px, ua_start, mm, im,
                    scenario_margin, ba_start, ba_order, collateral_usd, balance_usd, loan_mmr,
                    loan_im_factor, equity, actual_equity, loan_mm, loan_im, acc_mm, acc_im,
                    acc_scen, finite):
    """Account sums by ``numpy.bincount``; rows of ``sel`` written (the loans' IM:
    ``loan_im_factor`` times their MM)."""
    n_acc = len(ua_start) - 1
    pos_account = _members(pa_start, pa_order, len(value))
    bal_account = _members(ba_start, ba_order, len(balance_usd))
    unit_account = np.repeat(np.arange(n_acc), np.diff(ua_start))
    eq_pos = np.bincount(pos_account, weights=value * unit_px[pos_unit], minlength=n_acc)
    lm = loan_mmr * np.bincount(bal_account, weights=np.abs(np.minimum(balance_usd, 0.0)),
                                minlength=n_acc)
    li = loan_im_factor * lm
    figures = (eq_pos + np.bincount(bal_account, weights=collateral_usd, minlength=n_acc),
               eq_pos + np.bincount(bal_account, weights=balance_usd, minlength=n_acc), lm, li,
               np.bincount(unit_account, weights=mm * unit_px, minlength=n_acc) + lm,
               np.bincount(unit_account, weights=im * unit_px, minlength=n_acc) + li,
               np.bincount(unit_account, weights=scenario_margin * unit_px, minlength=n_acc))
    for dst, src in zip((equity, actual_equity, loan_mm, loan_im, acc_mm, acc_im, acc_scen),
                        figures):
        dst[sel] = src[sel]
    finite[sel] = np.where(np.isfinite(np.vstack(figures)).all(axis=0), 1.0, 0.0)[sel]


def position_expiry_keys(pos_instr, kind, expiry_ns):
    """Twin of :func:`pmrisk.kernel.assemble.position_expiry_keys` (numpy)."""
    from pmrisk.kernel.instruments import FUTURE, OPTION, PERPETUAL
    key_i = np.where(kind == PERPETUAL, -1 - np.arange(len(kind)), expiry_ns)
    k = kind[pos_instr]
    dated = (k == FUTURE) | (k == OPTION) | (k == PERPETUAL)
    return key_i[pos_instr].astype(np.int64), dated.astype(np.int64)


def expiry_groups(pu_start, pu_order, pos_key, dated):
    """Groups by ``numpy.unique`` of (unit, key) over the dated positions."""
    pos_unit = _members(pu_start, pu_order, len(pos_key))
    pos_group = np.full(len(pos_key), -1, dtype=np.int64)
    d = np.flatnonzero(np.asarray(dated, dtype=bool))
    if not len(d):
        return pos_group, np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, code = np.unique(pos_key[d], return_inverse=True)
    n_k = int(code.max()) + 1
    uniq, inv = np.unique(pos_unit[d] * n_k + code.ravel(), return_inverse=True)
    pos_group[d] = inv.ravel()
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inv.ravel()[::-1]] = d[::-1]                 # the first member of each group
    return pos_group, (uniq // n_k).astype(np.int64), first


def largest_units(sel, ua_start, worst):
    """Per selected account its unit of largest ``worst`` by ``numpy.fmax.reduceat`` over
    the runs of units (ties: the first; all NaN: the first), -1 without units."""
    n_acc = len(ua_start) - 1
    unit_account = np.repeat(np.arange(n_acc), np.diff(ua_start))
    lead = np.full(n_acc, -1, dtype=np.int64)
    if len(unit_account):
        starts = np.flatnonzero(np.r_[True, unit_account[1:] != unit_account[:-1]])
        top = np.fmax.reduceat(worst, starts)
        lengths = np.diff(np.r_[starts, len(worst)])
        hit = (worst == np.repeat(top, lengths)) | np.repeat(np.isnan(top), lengths)
        first = np.minimum.reduceat(np.where(hit, np.arange(len(worst)), len(worst)), starts)
        lead[unit_account[starts]] = first
    return lead[np.asarray(sel, dtype=np.int64)]


# -- kernel.keys: the key checks of input validation ------------------------------------------

def duplicated_in_groups(group, key, n_key):
    """Rows whose (group, key) pair appeared before, by a sort (numpy.unique); ``ok`` is
    whether ``group`` never decreases (the kernel's precondition)."""
    group = np.asarray(group, dtype=np.int64)
    key = np.asarray(key, dtype=np.int64)
    ok = bool(np.all(np.diff(group) >= 0))
    if not len(key):
        return np.zeros(0, dtype=bool), ok
    pairs = np.stack([group, key], axis=1)
    _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    return first[inverse.ravel()] != np.arange(len(key)), ok


def value_range(values):
    """Least and greatest non-NaN value (inf, -inf when none) and the number of NaNs."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return (float(finite.min()) if len(finite) else math.inf,
            float(finite.max()) if len(finite) else -math.inf,
            int(np.isnan(values).sum()))


def match_strings(strings, allowed):
    """Index in ``allowed`` of each string (a Python list; None for null), -1 when absent."""
    return np.array([allowed.index(s) if s in allowed else -1 for s in strings],
                    dtype=np.int64)


def sorted_runs(ns):
    """Distinct values of a column and the index of each row's value among them, and whether
    the column never decreases."""
    ns = np.asarray(ns, dtype=np.int64)
    values, inverse = np.unique(ns, return_inverse=True)
    return values, inverse.ravel().astype(np.int64), bool(np.all(np.diff(ns) >= 0))


def pairs_in_order(group, name, n_names):
    """(group, name) pairs numbered by group, then by the row of their first appearance; the
    code of each row, each pair's group and name, and whether ``group`` never decreases."""
    group = np.asarray(group, dtype=np.int64).tolist()
    name = np.asarray(name, dtype=np.int64).tolist()
    first = {}
    for i, pair in enumerate(zip(group, name)):
        first.setdefault(pair, i)
    order = sorted(first, key=lambda pair: (pair[0], first[pair]))
    rank = {pair: i for i, pair in enumerate(order)}
    return (np.array([rank[pair] for pair in zip(group, name)], dtype=np.int64),
            np.array([pair[0] for pair in order], dtype=np.int64),
            np.array([pair[1] for pair in order], dtype=np.int64),
            bool(np.all(np.diff(np.asarray(group, dtype=np.int64)) >= 0)))


def dense_unique(keys, hi):
    """``numpy.unique`` with the first index and the inverse, as int64."""
    uniq, first, inverse = np.unique(np.asarray(keys, dtype=np.int64), return_index=True,
                                     return_inverse=True)
    return (uniq.astype(np.int64), inverse.ravel().astype(np.int64),
            first.astype(np.int64))


def str_codes(strings):
    """Codes of a list of strings in order of first appearance, and each code's first row."""
    code_of, first = {}, []
    codes = []
    for i, v in enumerate(strings):
        if v not in code_of:
            code_of[v] = len(first)
            first.append(i)
        codes.append(code_of[v])
    return np.array(codes, dtype=np.int64), np.array(first, dtype=np.int64)


# -- kernel.validate: one pass per input table ---------------------------------------------
# Columns as Python lists (None for null); an absent optional column is None.

def bad_number(v, positive, bounds):
    """A number that is not finite, above ``bounds[0]`` in magnitude, or (``positive``)
    below ``bounds[1]``."""
    return not (math.isfinite(v) and abs(v) <= bounds[0]) or (positive and v < bounds[1])


def _count_bad(values, positive, bounds):
    return sum(1 for v in (values or []) if v is not None and bad_number(v, positive, bounds))


def lookup_rows(strings, values):
    """Row in ``values`` of the first occurrence of each string (None / absent: -1)."""
    first = {}
    for r, v in enumerate(values):
        first.setdefault(v, r)
    return np.array([-1 if s is None else first.get(s, -1) for s in strings], dtype=np.int64)


def validate_instruments(symbol, underlying, kind, settlement, option_type, contract_size,
                         strike, expiry, names, bounds):
    """``(kind, settlement, is_call, und_codes, und_first, sym_codes, sym_first, bad)``;
    ``names`` the allowed (kinds, settlements, option_types) as tuples of str; ``expiry``
    ints with ``NAT`` for null."""
    kinds, settlements, option_types = names
    n = len(symbol)
    k = match_strings(kind, kinds)
    s = match_strings(settlement, settlements)
    o = match_strings(option_type, option_types) if option_type is not None \
        else np.full(n, -1, dtype=np.int64)
    sym_codes, sym_first = str_codes(symbol)
    und_codes, und_first = str_codes(underlying)
    opt = k == OPTION
    dated = opt | (k == FUTURE)
    nat = np.iinfo(np.int64).min
    no_expiry = np.ones(n, dtype=bool) if expiry is None else \
        np.array([e == nat for e in expiry], dtype=bool)
    no_strike = np.ones(n, dtype=bool) if strike is None else \
        np.array([v is None for v in strike], dtype=bool)
    bad = np.array([
        n - len(sym_first),
        sum(1 for c, v in zip(k, kind) if c < 0 and v is not None),
        sum(1 for c, v in zip(s, settlement) if c < 0 and v is not None),
        _count_bad(contract_size, True, bounds),
        int((dated & no_expiry).sum()),
        _count_bad(strike, True, bounds),
        int((opt & no_strike).sum()),
        0 if option_type is None else sum(1 for c, v in zip(o, option_type)
                                          if c < 0 and v is not None),
        int((opt & (o < 0)).sum()),
        int(((k == SPOT) & (s == INVERSE)).sum()),
    ], dtype=np.int64)
    return k, s, (o == 1).astype(np.int64), und_codes, und_first, sym_codes, sym_first, bad


def _repeated_pairs(group, key):
    """Rows whose (group, key) an earlier row has (key -1 skipped); -1 when ``group``
    decreases somewhere."""
    if np.any(np.diff(np.asarray(group, dtype=np.int64)) < 0):
        return -1
    pairs = [(g, k) for g, k in zip(group.tolist(), key.tolist()) if k >= 0]
    return len(pairs) - len(set(pairs))


def validate_positions(symbol, account, quantity, entry_price, leverage, ins_symbol, bounds):
    """``(ins_row, acc_codes, acc_first, repeated, bad)``."""
    ins_row = lookup_rows(symbol, ins_symbol)
    acc_codes, acc_first = str_codes(account)
    repeated = _repeated_pairs(acc_codes, ins_row)
    bad = np.array([int((ins_row < 0).sum()), _count_bad(quantity, False, bounds),
                    _count_bad(entry_price, True, bounds), _count_bad(leverage, True, bounds)],
                   dtype=np.int64)
    return ins_row, acc_codes, acc_first, repeated, bad


def validate_market(symbol, mark_price, mark_iv, underlying_price, max_iv, ins_symbol, bounds):
    """``(ins_row, repeated, bad)``."""
    ins_row = lookup_rows(symbol, ins_symbol)
    repeated = _repeated_pairs(np.zeros(len(ins_row), dtype=np.int64), ins_row)
    bad = np.array([int((ins_row < 0).sum()), _count_bad(mark_price, True, bounds),
                    _count_bad(mark_iv, True, bounds),
                    sum(1 for v in (mark_iv or []) if v is not None and v > max_iv),
                    _count_bad(underlying_price, True, bounds)], dtype=np.int64)
    return ins_row, repeated, bad


# -- the fused joint stress (kernel.joint.joint_stress): grid curves, band, exact refinement --

def _lagrange_weights(t, n_nodes):
    i0 = int(np.clip(math.floor(t) - 1, 0, n_nodes - 4))
    u = t - i0
    return i0, np.array([-(u - 1) * (u - 2) * (u - 3) / 6, u * (u - 2) * (u - 3) / 2,
                         -u * (u - 1) * (u - 3) / 2, u * (u - 1) * (u - 2) / 6])



def _interpolated_totals(st, us, col, curves, moves, lws, gws, nvs, pr, unit_px):
    """Per scenario (``moves`` etc. from :func:`_account_scenarios`), the account's total
    (USD) of its units' curves interpolated on the grid (cubic Lagrange on 4 nodes), each at
    its worst weighted vol state."""
    grid = st.grid
    ns, tail0 = grid.n_side, grid.tail0
    approx = np.zeros(len(moves))
    for j in range(len(moves)):
        for u, c, cv in zip(us, col, curves):
            r = int(st.unit_row[u])
            s = moves[j][c]
            if nvs[j] == 3:
                i0, w = _lagrange_weights((s / pr[c] + 1.0) * ns, 2 * ns + 1)
                x = np.array([w @ cv[3 * i0 + v:3 * i0 + v + 12:3] for v in range(3)])
            else:
                m = int(grid.tail_side[r])
                i0, w = _lagrange_weights((s / grid.tail_range[r] + 1.0) * m, 2 * m + 1)
                x = np.array([w @ cv[tail0 + i0:tail0 + i0 + 4]])
            cap = st.params[r]["max_offsetable_pnl"] / unit_px[u]
            approx[j] += weigh(x, lws[j][c], gws[j][c], cap, 0.0).min() * unit_px[u]
    return approx


def _account_scenarios(st, a, slope_usd):
    """Account ``a``'s active units, their group columns, and its scenarios' moves, loss
    weights, gain weights and vol-state counts (the group's joint scenarios, then its delta
    directions: per shell -z*, +z*, then the tails; engine.correlated's layout) for a
    :class:`pmrisk.engine.correlated.JointStress` ``st``."""
    g = int(st.acc_group[a])
    js, rows = st.js[g], st.groups[g]
    d, B = len(rows), js.buckets
    us = [u for u in range(st.ua_start[a], st.ua_start[a + 1]) if st.active[u]]
    col = [rows.index(int(st.unit_row[u])) for u in us]
    pr = np.array([st.params[r]["price_range"] for r in rows])
    gv = np.zeros(d)
    for u, c in zip(us, col):
        gv[c] += slope_usd[u]
    gv *= pr
    rho = st.correlation[g].matrix
    qq = gv @ rho @ gv
    z = np.clip((gv @ rho) / math.sqrt(qq), -1, 1) if qq > 0 else np.zeros(d)
    moves, lws, gws, nvs = list(js.shock), list(js.loss_weight), list(js.gain_weight), \
        list(js.n_vol)
    if d >= 2:
        gw = np.array([st.params[r]["pnl_offset"] for r in rows])
        for k in range(1, B + 1):
            for sgn in (-1.0, 1.0):
                moves.append((k / B) * pr * (sgn * z))
                lws.append(np.ones(d))
                gws.append(gw)
                nvs.append(3)
        if st.grp[15]:
            mult = np.array([st.params[r]["extreme_multiple"] for r in rows])
            cover = np.array([st.params[r]["cover_fraction"] for r in rows])
            for sgn in (-1.0, 1.0):
                moves.append((sgn * z) * (mult * pr))
                lws.append(cover)
                gws.append(cover)
                nvs.append(1)
    return us, col, moves, lws, gws, nvs


def joint_stress_twin(js_state, pnl_args, unit_px, slope_usd, counts=False):
    """Numpy twin of :func:`pmrisk.kernel.joint.joint_stress` on the inputs of a
    :class:`pmrisk.engine.correlated.JointStress` (``js_state``: its groups, joint scenarios,
    grid and CSR indexes), every account, scanning every scenario (no skipped directions).

    Per account: its active units' curves (quantity x :func:`instrument_pnl` on the grid),
    the bound ``tol`` (largest 4th difference plus 1e-9 of the curve, USD), the interpolated
    total of every joint scenario and delta direction, the band ``lowest + 2 tol``, the exact
    totals of the candidates (every scenario above ``MAX_CANDIDATES`` joint candidates or
    without a grid), the first within ``TIE_RTOL`` of the lowest.  Returns per account
    ``worst`` (USD), ``kind`` (0 joint, 1 delta, -1 none) and ``index`` (the account's scenario
    number: joint scenarios, then delta directions), and per unit ``value`` (weighted, its
    settlement currency) and ``vol`` (code) there; with ``counts``, also per account the
    number of scenarios revalued exactly (the kernel's ``n_exact``)."""
    st = js_state
    grid = st.grid
    n_acc = len(st.worst)
    worst = np.zeros(n_acc)
    kind = np.full(n_acc, -1)
    index = np.full(n_acc, -1)
    value = np.zeros(len(st.unit_row))
    vol = np.full(len(st.unit_row), 1)
    n_exact = np.zeros(n_acc, dtype=np.int64)
    instr = (*pnl_args.instruments(), pnl_args.rate)
    one = np.ones_like(grid.shock)
    curves_all = instrument_pnl(*instr, grid.n_scen, grid.shock, np.log1p(grid.shock),
                                grid.vol_code, one, one)
    tail0 = grid.tail0
    for a in range(n_acc):
        g = int(st.acc_group[a])
        if g < 0:
            continue
        js, rows = st.js[g], st.groups[g]
        us, col, moves, lws, gws, nvs = _account_scenarios(st, a, slope_usd)
        pos = [st.pu_order[st.pu_start[u]:st.pu_start[u + 1]] for u in us]
        pr = np.array([st.params[r]["price_range"] for r in rows])
        n_all, n_js = len(moves), js.size

        def unit_cap(u):
            return st.params[int(st.unit_row[u])]["max_offsetable_pnl"] / unit_px[u]

        cand = np.arange(n_all)
        if st.grid_mode:
            curves = [(st.q[p][:, None] * curves_all[st.pos_row[p]]).sum(axis=0) for p in pos]
            tol = 0.0
            for u, cv in zip(us, curves):
                r = int(st.unit_row[u])
                sh = cv[:tail0].reshape(-1, 3)
                err = np.abs(np.diff(sh, n=4, axis=0)).max()
                m = int(grid.tail_side[r])
                if m:
                    err = max(err, np.abs(np.diff(cv[tail0:tail0 + 2 * m + 1], n=4)).max())
                tol += (err + 1e-9 * np.abs(cv).max()) * unit_px[u]
            approx = _interpolated_totals(st, us, col, curves, moves, lws, gws, nvs, pr,
                                          unit_px)
            band = approx.min() + 2.0 * tol
            cand = np.flatnonzero((approx <= band) | np.isnan(band))
            if (cand < n_js).sum() > st.grp[16]:
                cand = np.arange(n_all)
        n_exact[a] = len(cand)
        totals, picks = [], []
        for j in cand:
            t, vs = 0.0, []
            for u, c, p in zip(us, col, pos):
                states = [VOL_UP, VOL_SAME, VOL_DOWN] if nvs[j] == 3 else [VOL_SAME]
                s = np.full((len(pnl_args.n_scen), len(states)), moves[j][c])
                ones = np.ones_like(s)
                pnl = instrument_pnl(*instr, np.full(len(s), len(states)), s, np.log1p(s),
                                     np.tile(np.array(states), (len(s), 1)), ones, ones)
                vec = (st.q[p][:, None] * pnl[st.pos_row[p]]).sum(axis=0)
                y = weigh(vec, lws[j][c], gws[j][c], unit_cap(u), 0.0)
                k = int(np.argmin(y))
                near = np.abs(y - y[k]) <= 1e-12 * np.maximum(np.abs(y), abs(y[k]))
                if len(states) == 3 and near[1]:
                    k = 1                                   # ties prefer vol same
                t += y[k] * unit_px[u]
                vs.append((y[k], states[k]))
            totals.append(t)
            picks.append(vs)
        totals = np.array(totals)
        low = totals.min()
        b = int(np.flatnonzero(totals - low <= 1e-12 * np.maximum(np.abs(totals), abs(low)))[0])
        worst[a] = max(0.0, -totals[b])
        j = int(cand[b])
        kind[a], index[a] = (0, j) if j < n_js else (1, j - n_js)
        for u, (y, v) in zip(us, picks[b]):
            value[u], vol[u] = y, v
    if counts:
        return worst, kind, index, value, vol, n_exact
    return worst, kind, index, value, vol


# -- okx_pm: the risk unit's charges (twin of pmrisk.kernel.okx.unit_charges) ----------------------

def okx_unit_charges(sel, pu_start, pu_order, pos_instr, q, pos_group, kind, settlement,
                     contract_size, mark, forward, strike, is_call, years, sig, s_px, p_px, leg,
                     greeks, vectors, table, loss_weight, unit_und, n_scen, group_rate,
                     unit_basis, unit_mr7_rate, mr2_years, mr3_rate, mr5_rate, opt_min, opt_fee,
                     opt_fee_cap, rate, value, model_value, upnl, vega, theta, unit_vega,
                     unit_theta, pos_delta_usd, g_delta, g_vega, unit_out, cash_leg):
    """Same arguments and in-place outputs as the kernel, computed with numpy per unit:
    position terms as arrays, expiry groups with ``numpy.bincount``."""
    from pmrisk.kernel.instruments import INVERSE, OPTION, SPOT
    OPTION_, INVERSE_, SPOT_ = OPTION, INVERSE, SPOT

    def value_of(F, K, T, s, call):
        if T <= 0.0:
            return max(F - K, 0.0) if call else max(K - F, 0.0)
        return black76_price(F, K, T, s, call, rate)

    for u in np.asarray(sel).tolist():
        pos = pu_order[pu_start[u]:pu_start[u + 1]]
        i = pos_instr[pos]
        inv = settlement[i] == INVERSE_
        opt = kind[i] == OPTION_
        S = s_px[i]
        f = np.where(inv, S, p_px[i])
        for arr in (value, model_value, upnl, vega, theta):
            arr[pos] = arr[pos] * f
        unit_vega[u] = vega[pos].sum()
        unit_theta[u] = theta[pos].sum()
        d = np.where(opt | inv, q[pos] * greeks[1, i] * S,
                     q[pos] * contract_size[i] * mark[i] * p_px[i])
        pos_delta_usd[pos] = d
        deriv = (kind[i] != SPOT_) & (leg[i] >= 0)
        cash_leg[u] = np.bincount(leg[i][deriv], weights=d[deriv], minlength=3)[:3]
        g = pos_group[pos]
        on = g >= 0
        mr4 = mr3 = 0.0
        if on.any():
            gs = np.unique(g[on])
            gd = np.array([d[on][g[on] == k].sum() for k in gs])
            gv = np.array([vega[pos][on][g[on] == k].sum() for k in gs])
            mr4 = float(np.sum(np.abs(gd) * group_rate[gs]))
            mr3 = float(np.sum(np.abs(gv)))
        mr2 = mr5 = mr7 = basis = 0.0
        for j, p in enumerate(pos.tolist()):
            ii = pos_instr[p]
            c = contract_size[ii]
            if opt[j]:
                F, K, T = forward[ii], strike[ii], years[ii]
                call = is_call[ii] == 1
                v0 = value_of(F, K, T, sig[ii], call)
                v1 = value_of(F, K, T - mr2_years, sig[ii], call)
                conv = S[j] / F if inv[j] else p_px[ii]
                mr2 += q[p] * c * (v1 - v0) * conv
                mr5 += abs(q[p] * c * T * v0 * conv)
                mark_usd = c * mark[ii] * (S[j] if inv[j] else p_px[ii])
                slip = max(opt_min, opt_min * abs(greeks[1, ii] / c)) * c * S[j]
                if q[p] > 0:
                    slip = min(slip, mark_usd)
                mr7 += abs(q[p]) * (slip + min(opt_fee * c * S[j], opt_fee_cap * mark_usd))
            elif kind[ii] != SPOT_:
                mr7 += abs(d[j]) * unit_mr7_rate[u]
                basis += abs(d[j]) * abs(mark[ii] / S[j] - 1.0)
        r = unit_und[u]
        cells = vectors[u, :n_scen[r]]
        std = table[r, :n_scen[r]] == 0
        ext = table[r, :n_scen[r]] == 2
        lo1 = min(0.0, cells[std].min()) if std.any() else 0.0
        c1 = int(np.flatnonzero(std & (cells == lo1))[0]) if lo1 < 0 else 0
        w6 = loss_weight[r, :n_scen[r]] * cells
        c6 = int(np.flatnonzero(ext)[np.argmin(w6[ext])]) if ext.any() else -1
        lo6 = w6[c6] if c6 >= 0 else 0.0
        unit_out[u] = [-lo1, max(-mr2, 0.0), mr3_rate * mr3, mr4 + unit_basis[u] * basis,
                       mr5_rate * mr5, max(-lo6, 0.0), mr7, d.sum(), c1, c6]


# -- pmrisk.kernel.brackets.bracket_units: the binance_um phase, as numpy ----------------------

def bracket_units(sel, pu_start, pu_order, pos_instr, quantity, contract_size, mark,
                  coin_margined, pos_ladder, leverage, floor, cap, mmr, cum, max_leverage,
                  offsets):
    """Per position (of the units ``sel``) notional, bracket row, MM and IM (NaN and -1 for
    positions not in ``sel``); per unit of ``sel`` the sums of MM and IM (NaN elsewhere)."""
    group = _members(pu_start, pu_order, len(quantity))
    sel = np.asarray(sel, dtype=np.int64)
    inside = np.isin(group, sel)
    i = np.asarray(pos_instr)
    n = bracket_notional(quantity, contract_size[i], mark[i], coin_margined[i])
    row, mm = bracket_margin(n, pos_ladder, floor, cap, mmr, cum, offsets)
    lev = np.where(leverage > 0, leverage, max_leverage[np.maximum(row, 0)])
    im = np.where(row >= 0, n / lev, np.nan)
    n_units = len(pu_start) - 1
    unit_mm, unit_im = np.full(n_units, np.nan), np.full(n_units, np.nan)
    for u in sel:
        unit_mm[u] = mm[group == u].sum()
        unit_im[u] = im[group == u].sum()
    return (unit_mm, unit_im, np.where(inside, n, np.nan), np.where(inside, row, -1),
            np.where(inside, mm, np.nan), np.where(inside, im, np.nan))


# -- the incremental tick (kernel.joint_tick): the change bound and the fast path's test -------

def joint_account_totals(st, a, unit_px, slope_usd):
    """Interpolated totals (USD) of every scenario of account ``a`` of a
    :class:`pmrisk.engine.correlated.JointStress` ``st`` at its current curves (joint
    scenarios, then delta directions; nothing skipped), the account's ``tol`` and its curve
    size (sum over units of px x max |cell|).  None without a group."""
    g = int(st.acc_group[a])
    if g < 0:
        return None
    grid = st.grid
    js, rows = st.js[g], st.groups[g]
    us, col, moves, lws, gws, nvs = _account_scenarios(st, a, slope_usd)
    pr = np.array([st.params[r]["price_range"] for r in rows])
    tail0 = grid.tail0
    curves = [(st.q[p][:, None] * st.icurve[st.pos_row[p]]).sum(axis=0)
              for p in (st.pu_order[st.pu_start[u]:st.pu_start[u + 1]] for u in us)]
    tol = size = 0.0
    for u, cv in zip(us, curves):
        r = int(st.unit_row[u])
        err = np.abs(np.diff(cv[:tail0].reshape(-1, 3), n=4, axis=0)).max()
        m = int(grid.tail_side[r])
        if m:
            err = max(err, np.abs(np.diff(cv[tail0:tail0 + 2 * m + 1], n=4)).max())
        tol += (err + 1e-9 * np.abs(cv).max()) * unit_px[u]
        size += np.abs(cv).max() * unit_px[u]
    approx = _interpolated_totals(st, us, col, curves, moves, lws, gws, nvs, pr, unit_px)
    return approx, js.size, tol, size


def curve_tol_twin(cv, n_shell, ts, tail0, error_factor):
    """Numpy twin of :func:`pmrisk.kernel.joint.curve_tol` (and of
    :func:`pmrisk.kernel.joint_tick.curve_tol_fast`): ``(tol, size)`` of one unit curve,
    ``error_factor`` x the largest |4th difference| of each vol state's shell nodes and of
    the tail's ``2 ts + 1`` nodes, plus 1e-9 of the largest |cell| (NaN if any is NaN)."""
    cv = np.asarray(cv, dtype=np.float64)
    d4 = [np.abs(np.diff(cv[v:3 * n_shell:3], n=4)) for v in range(3)]
    if ts > 0:
        d4.append(np.abs(np.diff(cv[tail0:tail0 + 2 * ts + 1], n=4)))
    d4 = np.concatenate(d4)
    err = np.nan if np.isnan(d4).any() else d4.max(initial=0.0)
    size = np.nan if np.isnan(cv).any() else np.abs(cv).max(initial=0.0)
    return error_factor * err + 1e-9 * size, size


def joint_tick_twin(st, before, unit_px, slope_usd, accounts):
    """Numpy twin of :func:`pmrisk.kernel.joint_tick.joint_tick`'s decision: for each
    account of ``accounts`` with a record in ``before`` (the JointStress's ``keep``,
    ``px_prev`` and ``pending`` copied before the tick), its drift: per unit that moved
    ``LEBESGUE`` x the largest USD distance from its recorded curve (``urec``) of a shell
    cell times ``max(1, pnl_offset)`` plus of a tail cell times ``cover_fraction``, per unit
    that did not its drift before (``udrift``); its bound (the recorded one, ``keep_lb0``,
    less the drift), the band ``lowest + 2 tol`` of the kept joint scenarios and the delta
    directions, and whether the account is fast (bound above the band).  Returns
    ``{account: (fast, bound, band, size)}``."""
    from pmrisk.kernel.joint_tick import K_KEEP, LEBESGUE  # noqa: F401
    keep_j, keep_n, urec, udrift, keep_lb0 = (before["keep"][i] for i in (0, 2, 7, 8, 9))
    px_prev, pending = before["px_prev"], before["pending"]
    tail0 = st.grid.tail0
    out = {}
    for a in np.asarray(accounts).tolist():
        n = int(keep_n[a])
        if n < 0 or st.acc_group[a] < 0:
            continue
        us = [u for u in range(st.ua_start[a], st.ua_start[a + 1]) if st.active[u]]
        drift = 0.0
        for u in us:
            p = st.pu_order[st.pu_start[u]:st.pu_start[u + 1]]
            p = p[st.q[p] != 0.0]
            if px_prev[u] == unit_px[u] and not pending[st.pos_row[p]].any():
                drift += udrift[u]
                continue
            r = int(st.unit_row[u])
            new = (st.q[p][:, None] * st.icurve[st.pos_row[p]]).sum(axis=0)
            y = np.abs(unit_px[u] * new - urec[u])
            drift += LEBESGUE * (max(1.0, st.params[r]["pnl_offset"]) * y[:tail0].max()
                                + st.params[r]["cover_fraction"] *
                                (y[tail0:].max() if len(y) > tail0 else 0.0))
        approx, n_js, tol, size = joint_account_totals(st, a, unit_px, slope_usd)
        lb = keep_lb0[a] - drift
        lowest = min(approx[keep_j[a, :n]].min(initial=np.inf), approx[n_js:].min(initial=np.inf))
        band = lowest + 2.0 * tol
        out[a] = (bool(lb > band), lb, band, size)
    return out


def grid_curves(rows, kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
                t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen, shock,
                log1p_shock, vol_code, src, const, curve):
    """Twin of ``grid.grid_curves``: writes ``const[rows]`` (base, ln(F/K), discount to the
    scenario's expiry, sigma*sqrt(T) up, same, down; base ``c/M``, ``c*M`` or the option's
    value at the marks, in coin if inverse) and ``curve[rows]`` (:func:`instrument_pnl` on
    the grid, pnl scale 1).  Every cell is priced here: ``src`` (which cells the kernel copies
    instead of pricing) is ignored, so the copies are checked too."""
    n = len(kind)
    if not n:
        return
    instr = (kind, settlement, contract_size, mark, forward, strike, is_call, t_now, t_scen,
             sig_mark, sig_up, sig_same, sig_down, und)
    one = np.ones_like(shock)
    curve[rows] = instrument_pnl(*instr, rate, n_scen, shock, log1p_shock, vol_code, one, one)
    option = kind == OPTION
    inverse = settlement == INVERSE
    base = np.where(inverse, contract_size / mark, contract_size * mark)
    v0 = black76_price(forward, strike, t_now, sig_mark, is_call, rate)
    v0 = np.where(inverse, v0 / forward, v0)
    root = np.sqrt(np.maximum(t_scen, 0.0))
    out = np.zeros((n, 6))
    out[:, 0] = np.where(option, v0, base)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 1] = np.where(option, np.log(forward / strike), 0.0)
    out[:, 2] = np.where(option, np.where(t_scen > 0.0, np.exp(-rate * t_scen), 1.0), 0.0)
    for k, sig in enumerate((sig_up, sig_same, sig_down)):
        out[:, 3 + k] = np.where(option, sig * root, 0.0)
    const[rows] = out


# -- kernel/layout.py twins: the numpy formulas the layout kernels replaced ----------------------

def revaluation_rows(kind, mark_iv, floor, pos_instr, quantity, ord_instr, ord_qty):
    """Twin of :func:`pmrisk.kernel.layout.revaluation_rows` (numpy masks and ``where``)."""
    from pmrisk.kernel.instruments import OPTION
    n = len(kind)
    short = np.zeros(n, dtype=bool)
    short[pos_instr[quantity < 0]] = True
    short[ord_instr[ord_qty < 0]] = True
    sig_mark = np.where(kind == OPTION, mark_iv, 0.0)
    copies = np.flatnonzero((kind == OPTION) & (floor > sig_mark) & short).astype(np.int64)
    row_instr = np.concatenate([np.arange(n), copies]).astype(np.int64)
    row_of_copy = np.full(n, -1, dtype=np.int64)
    row_of_copy[copies] = n + np.arange(len(copies))

    def row_of(instr, qty):
        fl = row_of_copy[instr] if len(instr) else instr
        return np.where((qty < 0) & (fl >= 0), fl, instr).astype(np.int64)
    return row_instr, copies, row_of(pos_instr, quantity), row_of(ord_instr, ord_qty)


def row_arrays(rows, row_instr, n_instr, itype, kind, settlement, contract_size, mark,
               forward, strike, is_call, years, mark_iv, vol_floor, r_up, r_down, p_short,
               p_long, min_up, absolute, scan_range, horizon_days, und_row):
    """Twin of :func:`pmrisk.kernel.layout.row_arrays`: gathers, then
    :func:`pmrisk.kernel.volshock.shocked_vols` on the arrays."""
    from pmrisk.kernel.instruments import OPTION
    from pmrisk.kernel.volshock import shocked_vols
    r = row_instr[rows]
    t = itype[r]
    sig = np.where(kind[r] == OPTION, mark_iv[r], 0.0)
    floor_r = np.where(rows >= n_instr, vol_floor[t], 0.0)
    same, up, down = shocked_vols(sig, years[r] * 365.0, floor_r, r_up[t], r_down[t],
                                  p_short[t], p_long[t], min_up[t],
                                  np.asarray(absolute, dtype=bool)[t], scan_range[t])
    t_scen = np.maximum(years[r] - horizon_days[t] / 365.0, 0.0)
    return (kind[r], settlement[r], contract_size[r], mark[r], forward[r], strike[r],
            is_call[r], years[r], t_scen, sig, up, same, down, und_row[t])


def position_layout(pos_instr, quantity, kind, excluded_instr, itype, som_type, ord_instr):
    """Twin of :func:`pmrisk.kernel.layout.position_layout` (numpy ``where``)."""
    from pmrisk.kernel.instruments import OPTION
    excl = np.asarray(excluded_instr, dtype=bool)[pos_instr]
    short_all = np.where((kind[pos_instr] == OPTION) & (quantity < 0), -quantity, 0.0)
    any_excl = bool(excl.any()) or bool(np.asarray(excluded_instr, dtype=bool)[ord_instr].any())
    return (excl, np.where(excl, 0.0, quantity), np.where(excl, 0.0, short_all), short_all,
            som_type[itype][pos_instr], any_excl)


def roll_groups(pu_start, pu_order, pos_instr, kind, expiry_ns, years, unit_type,
                annualised_move_risk, min_annualised_move):
    """Twin of :func:`pmrisk.kernel.layout.roll_groups`: the groups by ``numpy.unique``
    (:func:`expiry_groups`) and :func:`pmrisk.kernel.addons.roll_rate` on the arrays."""
    from pmrisk.kernel.addons import roll_rate
    from pmrisk.kernel.instruments import PERPETUAL
    key, dated = position_expiry_keys(pos_instr, kind, expiry_ns)
    pos_group, group_unit, first = expiry_groups(pu_start, pu_order, key, dated)
    fi = pos_instr[first]
    y = np.where(kind[fi] == PERPETUAL, 0.0, years[fi])
    gtype = unit_type[group_unit]
    return pos_group, roll_rate(y, annualised_move_risk[gtype], min_annualised_move[gtype]), \
        group_unit


def option_vols(kind, mark_iv):
    """Twin of :func:`pmrisk.kernel.layout.option_vols`."""
    from pmrisk.kernel.instruments import OPTION
    return np.where(kind == OPTION, mark_iv, 0.0)


# -- kernel/tables.py twins: the result tables' numpy column formulas ----------------------------

def unit_columns(figures, greeks, unit_px, index_px):
    """The units table's figures and their USD values (rows ``tables.UNIT_COLUMNS``), as
    numpy expressions (part of :func:`unit_block`'s twin)."""
    rows = []
    with np.errstate(invalid="ignore", over="ignore"):     # inf x 0 is NaN, as in the kernel
        for v in figures:
            rows += [v, v * unit_px]
        d, g, vg, th = greeks
        rows += [d, d * index_px, g, g * index_px * index_px / 100.0, vg, vg * unit_px, th,
                 th * unit_px]
    return np.array(rows).reshape(len(rows), len(unit_px))


def unit_block(utype, type_und, binding, price_shock, table, vol_code, index_px, unit_px,
               scenario_shock, *rest):
    """Twin of :func:`pmrisk.kernel.tables.unit_block` (fancy indexing and
    :func:`unit_columns`): ``(block, codes, time, n_nan)``."""
    figures, greeks = np.array(rest[:11]).reshape(11, len(utype)), np.array(
        rest[11:15]).reshape(4, len(utype))
    unit_account, acc_snap, snap_ns = rest[15:]
    und = type_und[utype]
    block = np.concatenate([np.array([index_px, unit_px, price_shock[und, binding],
                                      scenario_shock]).reshape(4, len(utype)),
                            unit_columns(figures, greeks, unit_px, index_px)])
    codes = np.array([table[und, binding], vol_code[und, binding]]).reshape(2, len(utype))
    time = snap_ns[acc_snap[unit_account]] if len(acc_snap) else np.zeros(0, np.int64)
    return block, codes.astype(np.int64), time, int(np.isnan(scenario_shock).sum())


def position_columns(rows, pos_unit, quantity, unit_px, value, model_value, upnl, delta, gamma,
                     vega, theta, mm_contribution, im_contribution, unit_mm, unit_im, loan_mm,
                     loan_im):
    """Twin of :func:`pmrisk.kernel.tables.position_columns` (concatenations and
    ``numpy.bincount``; the block it writes, returned)."""
    n_units = len(unit_px)
    pos_px = unit_px[pos_unit]
    zeros = np.zeros(n_units + len(loan_mm))
    cols = [np.concatenate([quantity, zeros])]
    for v in (value, model_value, upnl):
        cols += [np.concatenate([v, zeros]), np.concatenate([v * pos_px, zeros])]
    cols += [np.concatenate([v, zeros]) for v in (delta, gamma, vega, theta)]
    for contrib, unit, loan in ((mm_contribution, unit_mm, loan_mm),
                                (im_contribution, unit_im, loan_im)):
        unalloc = unit - np.bincount(pos_unit, weights=contrib, minlength=n_units)
        cols += [np.concatenate([contrib, unalloc, loan]),
                 np.concatenate([contrib * pos_px, unalloc * unit_px, loan])]
    return np.array(cols).reshape(len(cols), len(pos_unit) + len(zeros))[:, rows]


def position_index(pos_account, pos_instr, pos_unit, unit_account, unit_type, loans, acc_snap,
                   snap_ns, n_symbols, n_types):
    """Twin of :func:`pmrisk.kernel.tables.position_index` (concatenations and a stable
    ``numpy.argsort``): ``(index block, time, one account, one unit type)``."""
    account = np.concatenate([pos_account, unit_account, loans]).astype(np.int64)
    symbol = np.concatenate([pos_instr, np.full(len(unit_account) + len(loans), n_symbols)])
    name = np.concatenate([unit_type[pos_unit], unit_type, np.full(len(loans), n_types)])
    rows = np.arange(len(account))
    if len(acc_snap):
        rows = np.argsort(acc_snap[account], kind="stable")
    index = np.array([rows, account[rows], symbol[rows], name[rows]],
                     dtype=np.int64).reshape(4, len(rows))
    time = snap_ns[acc_snap[account[rows]]] if len(acc_snap) else np.zeros(0, np.int64)
    return index, time, len(set(account.tolist())) <= 1, len(set(name.tolist())) <= 1


def take_strings(offsets, data, extra_offsets, extra_data, rows):
    """Twin of :func:`pmrisk.kernel.tables.take_strings` (Python bytes, joined)."""
    n_main = len(offsets) - 1
    parts = [bytes(data[offsets[r]:offsets[r + 1]]) if r < n_main else
             bytes(extra_data[extra_offsets[r - n_main]:extra_offsets[r - n_main + 1]])
             for r in rows.tolist()]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    out_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return out_offsets, np.frombuffer(b"".join(parts), dtype=np.uint8).copy()


# (s20-tables) the parallel tables kernels' parts and the large string columns' gather

def unit_sums(pos_unit, mm_contribution, im_contribution, n_units):
    """Twin of :func:`pmrisk.kernel.tables.unit_sums` (``numpy.bincount``)."""
    return tuple(np.bincount(pos_unit, weights=c, minlength=n_units).astype(np.float64)
                 for c in (mm_contribution, im_contribution))


def position_order(pos_account, unit_account, loans, acc_snap, n_snap):
    """Twin of :func:`pmrisk.kernel.tables.position_order` (a stable ``numpy.argsort``):
    the rows."""
    account = np.concatenate([pos_account, unit_account, loans]).astype(np.int64)
    if len(acc_snap):
        return np.argsort(acc_snap[account], kind="stable").astype(np.int64)
    return np.arange(len(account), dtype=np.int64)


def string_offsets(offsets, extra_offsets, rows):
    """Twin of :func:`pmrisk.kernel.tables.string_offsets`: ``(offsets, total)``."""
    lengths = np.concatenate([np.diff(offsets), np.diff(extra_offsets)]).astype(np.int64)
    out = np.concatenate([[0], np.cumsum(lengths[rows])]).astype(np.int64)
    return out.astype(np.int32), int(out[-1])


def gather_strings(offsets, data, extra_offsets, extra_data, rows):
    """Twin of :func:`pmrisk.kernel.tables.gather_strings` and its serial form: the bytes
    (those of :func:`take_strings`' twin)."""
    return take_strings(offsets, data, extra_offsets, extra_data, rows)[1]


def positive_rows(values):
    """Twin of :func:`pmrisk.kernel.tables.positive_rows`."""
    return np.flatnonzero(values > 0).astype(np.int64)


def every_flag_set(unit_flags, account_flags):
    """Twin of :func:`pmrisk.kernel.tables.every_flag_set`."""
    return bool((unit_flags == 1.0).all() and (account_flags == 1.0).all())


def account_block(acc, every, equity, actual_equity, mm, im, liquidation_cost,
                  scenario_margin, loan_mm, low, levels):
    """Twin of :func:`pmrisk.kernel.tables.account_block` (``numpy.where`` and
    comparisons): ``(block, band)``."""
    sel = np.arange(len(equity)) if every else acc
    eq, m, i = equity[sel], mm[sel], im[sel]
    with np.errstate(invalid="ignore", over="ignore"):     # inf - inf is NaN, as in the kernel
        ratio = margin_ratios(eq, m + liquidation_cost[sel])
        band = np.zeros(len(ratio), dtype=np.int64)
        for lv in levels:
            band += ratio < lv
        block = np.array([eq, actual_equity[sel], m, i, eq - i,
                          np.maximum(0.0, np.minimum(eq - low * m, eq - i)), ratio,
                          scenario_margin[sel], loan_mm[sel]]).reshape(9, len(sel))
    return block, band


def account_cells(acc, every, ua_start, worst_case, unit_px, excluded_margin, any_excluded,
                  binding, utype, width):
    """Twin of :func:`pmrisk.kernel.tables.account_cells` (``numpy.bincount``,
    :func:`largest_units` and ``numpy.unique``): ``(code, cells)``; the cells in order of
    first use."""
    n_acc = len(ua_start) - 1
    sel = np.arange(n_acc) if every else np.asarray(acc, dtype=np.int64)
    unit_account = np.repeat(np.arange(n_acc), np.diff(ua_start))
    with np.errstate(invalid="ignore", over="ignore"):
        excl = np.bincount(unit_account, weights=excluded_margin * unit_px,
                           minlength=n_acc)[sel] if any_excluded else np.zeros(len(sel))
        worst = worst_case * unit_px
    code = np.where(excl > 0, 1, 0).astype(np.int64)
    lead = largest_units(sel, ua_start, worst)
    live = np.flatnonzero(lead >= 0)
    live = live[worst[lead[live]] > 0]
    keys = utype[lead[live]] * width + binding[lead[live]]
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")            # cells in order of first use
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    code[live] = 2 + rank[inv.ravel()]
    return code, uniq[order].astype(np.int64)


def margin_ratios(equity, den):
    """Twin of :func:`pmrisk.kernel.tables.margin_ratios` (``numpy.where``): equity / den,
    ``inf`` (``-inf`` for negative equity) where den is not above 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, equity / np.where(den > 0, den, 1.0),
                        np.where(equity >= 0, np.inf, -np.inf))


# -- kernel/across.py twin ----------------------------------------------------------------------

def correlated_shares(acc, ua_start, pu_start, pu_order, unit_und, unit_px, weighted, n_scen,
                      per_unit, price_shock, vol_code, loss_weight, q_port, pos_row, instr_pnl,
                      worst, unit_value, unit_shock, unit_vol, pos_loss, scenario_margin,
                      scenario_price_shock, scenario_vol_state, own_loss):
    """Twin of :func:`pmrisk.kernel.across.correlated_shares`: ``numpy.argmin`` over the
    masked weighted cells, :func:`largest_units` over the tails and ``numpy.where`` for the
    shares (the engine's numpy form before the kernel)."""
    n_units = len(unit_px)
    n_acc = len(ua_start) - 1
    unit_account = np.repeat(np.arange(n_acc), np.diff(ua_start))
    pos_unit = _members(pu_start, pu_order, len(q_port))
    acc = np.asarray(acc, dtype=np.int64)
    mask = np.zeros(n_acc, dtype=bool)
    mask[acc] = True
    U = np.flatnonzero(mask[unit_account])
    P = np.flatnonzero(mask[unit_account[pos_unit]]) if len(pos_unit) else np.zeros(0, np.int64)
    per_unit = np.asarray(per_unit, dtype=bool)
    tail_cell = np.zeros(n_units, dtype=np.int64)
    tail_worst = np.zeros(n_units)
    if per_unit.any() and len(U) and weighted.shape[1]:
        w = weighted[U]
        uu = unit_und[U]
        real = np.arange(w.shape[1])[None, :] < n_scen[uu][:, None]
        cells = np.where(per_unit[uu] & real, w, np.inf)
        tc = np.argmin(cells, axis=1)
        tw = cells[np.arange(len(U)), tc]
        tail_cell[U] = tc
        with np.errstate(invalid="ignore"):
            tail_worst[U] = np.where(np.isfinite(tw), np.maximum(-tw, 0.0), 0.0)
    tail_usd = tail_worst * unit_px
    best_tail = np.zeros(n_acc)
    tail_unit = np.full(n_acc, -1, dtype=np.int64)
    if n_units and tail_usd.any():
        lead = largest_units(acc, ua_start, tail_usd)
        lead = lead[lead >= 0]
        lead = lead[tail_usd[lead] > 0.0]
        tail_unit[unit_account[lead]] = lead
        best_tail[unit_account[lead]] = tail_usd[lead]
    with np.errstate(invalid="ignore"):
        binds = worst >= best_tail
        ua = unit_account[U]
        part = binds[ua] & (worst[ua] > 0.0)
        pa_ = unit_account[pos_unit[P]]
        scenario_margin[U] = np.where(part, -unit_value[U], 0.0)
        scenario_price_shock[U] = np.where(part, unit_shock[U], np.nan)
        scenario_vol_state[U] = np.where(part, unit_vol[U], -1)
        own_loss[P] = np.where(binds[pa_] & (worst[pa_] > 0.0), pos_loss[P], 0.0)
    tail_acc = acc[~binds[acc] & (tail_unit[acc] >= 0)]
    tu = tail_unit[tail_acc]
    if len(tu):
        und = unit_und[tu]
        c = tail_cell[tu]
        scenario_margin[tu] = tail_worst[tu]
        scenario_price_shock[tu] = price_shock[und, c]
        scenario_vol_state[tu] = vol_code[und, c]
        in_tail = np.zeros(n_units, dtype=bool)
        in_tail[tu] = True
        on = np.flatnonzero(in_tail[pos_unit])
        cp = tail_cell[pos_unit[on]]
        own_loss[on] = -loss_weight[unit_und[pos_unit[on]], cp] * q_port[on] \
            * instr_pnl[pos_row[on], cp]
    out_unit = np.where(~binds[acc] & (tail_unit[acc] >= 0), tail_unit[acc], -1)
    out_cell = np.zeros(len(acc), dtype=np.int64)
    out_cell[out_unit >= 0] = tail_cell[out_unit[out_unit >= 0]]
    return out_unit, out_cell


# -- kernel/span.py twin ------------------------------------------------------------------------

def excluded_margins(pos_unit, pos_row, excluded, quantity, short_all, som_rate, conv, unit_und,
                     unit_px, span_pnl, n_scen, loss_weight, gain_weight, gain_cap_usd,
                     dampener_usd, vol_code, ord_unit, order_im, res_oo):
    """Twin of :func:`pmrisk.kernel.span.excluded_margins` (returns its three outputs):
    :func:`standalone_worst` on the excluded positions and ``numpy.bincount``."""
    n_units = len(unit_px)
    pos_margin = np.zeros(len(pos_unit))
    sel = np.flatnonzero(np.asarray(excluded, dtype=bool))
    if len(sel):
        u = pos_unit[sel]
        pos_margin[sel] = standalone_worst(pos_row[sel], quantity[sel], unit_und[u], unit_px[u],
                                           span_pnl, n_scen, loss_weight, gain_weight,
                                           gain_cap_usd, dampener_usd, vol_code) \
            + (short_all * som_rate * conv[pos_unit])[sel]
    return (pos_margin, np.bincount(pos_unit, weights=pos_margin, minlength=n_units),
            np.bincount(ord_unit, weights=order_im, minlength=n_units) + res_oo)


def unit_prices(col, stable, utype, snap, asset_px):
    """Twin of :func:`pmrisk.kernel.layout.unit_prices` (``numpy.where``)."""
    c = col[utype]
    px = np.where(c >= 0, asset_px[snap, np.maximum(c, 0)], np.nan) if asset_px.shape[1] \
        else np.full(len(utype), np.nan)
    return np.where(np.isnan(px) & np.asarray(stable, dtype=bool)[utype], 1.0, px)


def reserve_sums(res_unit, res_oo, res_mmp, n_units):
    """Twin of :func:`pmrisk.kernel.layout.reserve_sums` (``numpy.bincount``)."""
    return (np.bincount(res_unit, weights=res_oo, minlength=n_units).astype(np.float64),
            np.bincount(res_unit, weights=res_mmp, minlength=n_units).astype(np.float64))


# -- the Monitor's per-account step (kernel/alerts.py) ------------------------------------------

def account_alerts(acc, equity, mm, liq_cost, figures, fig, ratio, below, armed, levels, h):
    """Twin of :func:`pmrisk.kernel.alerts.account_alerts` (same in-place updates and
    outputs): ``numpy.where`` for the ratio, a compare per figure, and the crossings over
    arrays of accounts x levels, ordered by ``numpy.lexsort``."""
    den = mm[acc] + liq_cost[acc]
    e = equity[acc]
    with np.errstate(divide="ignore", invalid="ignore"):
        after = np.where(den > 0, e / np.where(den > 0, den, 1.0),
                         np.where(e >= 0, np.inf, -np.inf))
    ratio[acc] = after
    changed = np.zeros(len(acc), dtype=bool)
    for f, arr in enumerate(figures):
        changed |= arr[acc] != fig[f, acc]
        fig[f, acc] = arr[acc]
    lv = levels[None, :]
    r = after[:, None]
    b, a = below[acc], armed[acc]
    slack = h * a
    down = ~b & (r < lv - slack)
    up = b & (r >= lv + slack)
    below[acc] = b ^ (down | up)
    armed[acc] = a | down | up
    k = down.shape[1]
    acc_d, lev_d = np.nonzero(down)
    acc_u, lev_u = np.nonzero(up)
    rows = np.concatenate([acc_d, acc_u])
    rank = np.concatenate([lev_d, 2 * k - lev_u])
    order = np.lexsort((rank, rows))
    kinds = np.concatenate([lev_d, np.full(len(lev_u), k)])[order]
    crossed = np.concatenate([lev_d, lev_u])[order]
    return after, changed, rows[order].astype(np.int64), kinds.astype(np.int64), \
        crossed.astype(np.int64)
# -- s15: bindings' last numpy on positions, units and accounts, as kernels --------------------
# (kernel/brackets.py bracket_inputs, position_ladders, bracket_checks; kernel/addons.py
# collateral_values, collateral_rows; kernel/span.py excluded_order_margin;
# kernel/resources.py account_groups): the numpy each replaced, as it was in bindings/

def bracket_inputs(pos_instr, kind, settlement, leverage):
    """Twin of :func:`pmrisk.kernel.brackets.bracket_inputs` (masks and ``numpy.where``)."""
    kind_p = np.asarray(kind)[pos_instr]
    ladderless = ~((kind_p == PERPETUAL) | (kind_p == FUTURE))
    return (np.where(np.isnan(leverage), 0.0, leverage),
            (np.asarray(settlement) == INVERSE).astype(np.int64), np.flatnonzero(ladderless))


def position_ladders(pos_instr, instr_ladder):
    """Twin of :func:`pmrisk.kernel.brackets.position_ladders` (a gather and a mask)."""
    pos_ladder = np.asarray(instr_ladder, dtype=np.int64)[pos_instr]
    return pos_ladder, np.flatnonzero(pos_ladder < 0)


def bracket_checks(sel, pu_start, pu_order, finite, row, leverage, max_leverage,
                   risk_matrix_margin):
    """Twin of :func:`pmrisk.kernel.brackets.bracket_checks` as ``engine.binance`` had it (the
    refused positions as sorted row indices: the kernel's are in unit order)."""
    sel = np.asarray(sel, dtype=np.int64)
    risk_matrix_margin[sel] = 0.0
    n_pos = len(row)
    flagged = sel[finite[sel] != 1.0]
    beyond = np.zeros(n_pos, dtype=bool)
    if len(flagged):
        members = np.concatenate([pu_order[pu_start[u]:pu_start[u + 1]]
                                  for u in flagged.tolist()]).astype(np.int64)
        beyond[members] = row[members] < 0
    given = leverage > 0.0
    in_sel = np.zeros(len(pu_start) - 1, dtype=bool)
    in_sel[sel] = True
    members = np.flatnonzero(given & in_sel[_members(pu_start, pu_order, n_pos)])
    over = np.zeros(n_pos, dtype=bool)
    over[members[leverage[members] > max_leverage[row[members]]]] = True
    return np.flatnonzero(beyond), np.flatnonzero(over)


def collateral_values(value_usd, spec, rate, tier_lo, tier_width, tier_factor):
    """Twin of :func:`pmrisk.kernel.addons.collateral_values`: the model's old
    ``collateral_value`` (a copy, ``v * rate``, or per tier ``numpy.clip`` as
    :func:`pmrisk.kernel.addons.tiered`)."""
    v = np.asarray(value_usd, dtype=np.float64)
    if spec == 1:
        return v * rate
    if spec != 2:
        return v.copy()
    out = np.zeros_like(v)
    for lo, w, f in zip(tier_lo, tier_width, tier_factor):
        out += np.clip(v - lo, 0.0, w) * f
    return out


def collateral_rows(rows, code, group, g_start, g_order, bal_account, acc_snap, amount, col,
                    stable, asset_px, spec, rate, tier_start, tier_lo, tier_width, tier_factor,
                    coll, usd):
    """Twin of :func:`pmrisk.kernel.addons.collateral_rows`: the groups whose first row is
    selected, each priced by ``numpy.where`` (``Book.prices``); a one-row group's positive
    value by the asset's rule as ``engine.core`` had it per row, a larger group's summed
    positive amount (``numpy.cumsum``: summed in row order) valued once and shared pro rata;
    loans at full value (written in place, as the kernel)."""
    rows = np.asarray(rows, dtype=np.int64)
    heads = np.asarray(g_order)[np.asarray(g_start)[:-1]]
    for g in np.flatnonzero(np.isin(heads, rows)).tolist():
        m = np.asarray(g_order[g_start[g]:g_start[g + 1]], dtype=np.int64)
        k = int(code[m[0]])
        snap = acc_snap[bal_account[m[0]]]
        c = col[k]
        px = asset_px[snap, c] if c >= 0 and asset_px.shape[1] else np.nan
        px = 1.0 if np.isnan(px) and stable[k] != 0 else px
        v = amount[m] * px
        lo, hi = tier_start[k], tier_start[k + 1]
        rule = (spec[k], rate[k], tier_lo[lo:hi], tier_width[lo:hi], tier_factor[lo:hi])
        usd[m] = v
        if len(m) == 1:
            coll[m] = np.where(v > 0, collateral_values(v, *rule), v)
            continue
        pos = amount[m][amount[m] > 0]
        held = float(np.cumsum(pos)[-1]) if len(pos) else 0.0
        whole = held * px
        if whole > 0:
            whole = float(collateral_values(np.array([whole]), *rule)[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            coll[m] = np.where(v > 0, whole * (amount[m] / held), v)


def balance_groups(ba_start, ba_order, code, n_codes):
    """Twin of :func:`pmrisk.kernel.layout.balance_groups`: groups numbered in order of
    first appearance of (account, asset) along ``ba_order`` (a dict), members by a stable
    ``numpy.argsort``."""
    n = len(code)
    bal_account = _members(ba_start, ba_order, n)
    number = {}
    group = np.empty(n, dtype=np.int64)
    for b in np.asarray(ba_order).tolist():
        group[b] = number.setdefault((int(bal_account[b]), int(code[b])), len(number))
    order = np.argsort(group, kind="stable").astype(np.int64)
    start = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=len(number)))])
    return group, start.astype(np.int64), order


def excluded_order_margin(sel, ou_start, ou_order, excluded_instr, ord_account, ord_instr,
                          ord_qty, ord_row, pa_start, pa_order, pos_instr, quantity, kind, itype,
                          som_type, conv, unit_und, unit_px, span_pnl, n_scen, loss_weight,
                          gain_weight, gain_cap_usd, dampener_usd, vol_code, order_im):
    """Twin of :func:`pmrisk.kernel.span.excluded_order_margin` as ``engine.core`` had it: a
    sorted (account, instrument) lookup of the positions, then :func:`standalone_worst`
    before and after each order (in place, as the kernel)."""
    sel = np.asarray(sel, dtype=np.int64)
    ord_unit = _members(ou_start, ou_order, len(ord_qty))
    in_sel = np.zeros(len(ou_start) - 1, dtype=bool)
    in_sel[sel] = True
    o = np.flatnonzero(np.asarray(excluded_instr, dtype=bool)[ord_instr] & in_sel[ord_unit])
    if not len(o):
        return
    pos_account = _members(pa_start, pa_order, len(quantity))
    n_i = len(kind)
    held_key = pos_account * n_i + pos_instr
    by_key = np.argsort(held_key, kind="stable")
    want = ord_account[o] * n_i + ord_instr[o]
    at = np.minimum(np.searchsorted(held_key[by_key], want), max(len(by_key) - 1, 0))
    found = held_key[by_key[at]] == want if len(by_key) else np.zeros(len(o), dtype=bool)
    before = np.where(found, quantity[by_key[at]] if len(by_key) else 0.0, 0.0)
    after = before + ord_qty[o]
    instr = ord_instr[o]
    u = ord_unit[o]
    rate = som_type[itype[instr]] * conv[u]
    is_opt = kind[instr] == OPTION
    cost = []
    for qty in (before, after):
        row = np.where(qty < 0, ord_row[o], instr)
        som = np.where(is_opt, np.maximum(-qty, 0.0), 0.0) * rate
        cost.append(standalone_worst(row, qty, unit_und[u], unit_px[u], span_pnl, n_scen,
                                     loss_weight, gain_weight, gain_cap_usd, dampener_usd,
                                     vol_code) + som)
    order_im[o] = np.maximum(cost[1] - cost[0], 0.0)


def account_groups(pos_account, pos_instr, und_code, quantity, unit_key, key_div, n_acc, n_und,
                   buckets, extreme):
    """Twin of :func:`pmrisk.kernel.resources.account_groups` as ``engine.resources`` had it:
    bit masks per (account, underlying) pair, ``numpy.bitwise_or.reduceat`` per account,
    ``numpy.unique`` of the masks, groups ordered by their first account."""
    held = quantity != 0.0
    acc = pos_account[held]
    und = und_code[pos_instr[held]]
    pairs = np.unique(acc * n_und + und)
    empty = np.zeros(0, dtype=np.int64)
    if not len(pairs):
        return empty, empty, empty, empty, np.zeros(0)
    acc, und = pairs // n_und, pairs % n_und
    units = np.bincount(np.asarray(unit_key) // key_div, minlength=n_acc)
    start = np.flatnonzero(np.concatenate([[True], acc[1:] != acc[:-1]]))
    words = (n_und + 63) // 64
    bits = np.zeros((len(pairs), words), dtype=np.uint64)
    bits[np.arange(len(pairs)), und // 64] = np.left_shift(np.uint64(1),
                                                         (und % 64).astype(np.uint64))
    masks = np.bitwise_or.reduceat(bits, start, axis=0)
    _, first, inv = np.unique(masks, axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    gid = rank[inv]
    n_g = len(order)
    count = np.bincount(gid, minlength=n_g)
    most = np.zeros(n_g, dtype=np.int64)
    np.maximum.at(most, gid, units[acc[start]])
    d = np.diff(np.append(start, len(pairs)))
    b_acc = np.maximum.reduceat(np.asarray(buckets)[und], start)
    e_acc = np.maximum.reduceat(np.asarray(extreme, dtype=np.float64)[und], start)
    lead = first[order]
    return (d[lead].astype(np.int64), count.astype(np.int64), most, b_acc[lead].astype(np.int64),
            e_acc[lead])
# -- okx_pm phases (twins of pmrisk.kernel.okx's usd_rows, okx_vols, group_terms, unit_margins,
# -- account_borrowing, and of pmrisk.kernel.addons.tiered_value) ------------------------------

def okx_usd_rows(instr_pnl, rows, row_instr, settlement, kind, mark, s_px, p_px, instr_type,
                 und_row, price_shock):
    """Twin of :func:`pmrisk.kernel.okx.usd_rows`: the factors with ``numpy.where`` over the
    rows (``rows`` without repeats), the product as one array operation."""
    i = row_instr[rows]
    inv = settlement[i] == INVERSE
    f = np.where(inv, s_px[i], p_px[i])
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(~inv & (kind[i] != OPTION), f / mark[i] * s_px[i] / p_px[i], f)
    shock = price_shock[und_row[instr_type[i]]]
    with np.errstate(invalid="ignore"):
        instr_pnl[rows] *= np.where(inv[:, None], f[:, None] * (1.0 + shock), f[:, None])


def okx_vols(rows, row_instr, itype, n_instr, vol_floor, years, on, nodes, n_nodes, sig, up,
             same, down):
    """Twin of :func:`pmrisk.kernel.okx.okx_vols`: per type with OKX's shocks, the masked
    rows with ``numpy.interp`` on its node tables."""
    i = row_instr[rows]
    t = itype[i]
    floor = np.where(rows >= n_instr, vol_floor[t], 0.0)
    for code in np.flatnonzero(on).tolist():
        m = t == code
        s = np.maximum(sig[m], floor[m])
        dte = years[i[m]] * 365.0
        shock = []
        for k in range(2):
            n = nodes[code, k, :n_nodes[code, k]]
            shock.append(np.maximum(np.interp(dte, n[:, 0], n[:, 1]),
                                    np.interp(dte, n[:, 0], n[:, 2]) * s))
        same[m], up[m], down[m] = s, s + shock[0], np.maximum(s - shock[1], 0.01)


def okx_group_terms(pos_group, pos_instr, pos_unit, kind, years, utype, annual_move, min_move,
                    n_groups):
    """Twin of :func:`pmrisk.kernel.okx.group_terms` (fancy-index assignment, the last
    position of a group winning; a group without a position: type 0's)."""
    g_years = np.zeros(n_groups)
    g_type = np.zeros(n_groups, dtype=np.int64)
    on = pos_group >= 0
    pi = pos_instr[on]
    g_years[pos_group[on]] = np.where(kind[pi] == PERPETUAL, 0.0, years[pi])
    g_type[pos_group[on]] = utype[pos_unit[on]]
    if not len(annual_move):
        return g_years, np.zeros(n_groups), np.zeros(n_groups)
    return g_years, annual_move[g_type], min_move[g_type]


def tiered_value(v, table, n):
    """Twin of :func:`pmrisk.kernel.addons.tiered_value`: ``numpy.clip`` per tier row."""
    return float(sum((np.clip(np.float64(v) - lo, 0.0, w) * f for lo, w, f in table[:n]),
                     np.float64(0.0)))


def okx_unit_margins(sel, charges, cash_leg, utype, mr7_tables, mr7_rows, mr9_tables, mr9_rows,
                     im_factor, pu_start, pu_order, pos_row, q, unit_und, loss_weight,
                     instr_pnl, worst_case, binding, open_orders, mmp, mr7, mr9, mmr, imr,
                     scenario_margin, risk_matrix_margin, maintenance_margin, initial_margin,
                     own_loss, mm_contribution, im_contribution, finite):
    """Twin of :func:`pmrisk.kernel.okx.unit_margins`: array operations over ``sel`` (MR9 by
    :func:`stablecoin_hedged`), contributions over the selected units' positions."""
    sel = np.asarray(sel)
    ch = charges[sel]
    m7 = np.array([tiered_value(ch[k, 6], mr7_tables[utype[u]], mr7_rows[utype[u]])
                   for k, u in enumerate(sel.tolist())])
    hedged = stablecoin_hedged(cash_leg[sel])
    m9 = np.zeros(len(sel))
    for j in range(3):
        m9 = m9 + np.array([tiered_value(h, mr9_tables[j], mr9_rows[j]) for h in hedged[:, j]])
    scen = np.maximum(np.maximum(ch[:, 0], ch[:, 1]), ch[:, 5])
    mm = np.maximum(scen + ch[:, 2] + ch[:, 3] + ch[:, 4] + m9, m7)
    mr7[sel], mr9[sel], mmr[sel], imr[sel] = m7, m9, mm, im_factor * mm
    scenario_margin[sel] = worst_case[sel]
    risk_matrix_margin[sel] = mm
    maintenance_margin[sel] = mm
    initial_margin[sel] = im_factor * mm + open_orders[sel] + mmp[sel]
    finite[sel] = (np.isfinite(ch).all(axis=1) & np.isfinite(mm)
                   & np.isfinite(initial_margin[sel])).astype(np.float64)
    for u in sel.tolist():
        pos = pu_order[pu_start[u]:pu_start[u + 1]]
        cell = binding[u]
        own = -loss_weight[unit_und[u], cell] * q[pos] * instr_pnl[pos_row[pos], cell]
        own = own if worst_case[u] > 0.0 else np.zeros(len(pos))
        own_loss[pos], mm_contribution[pos], im_contribution[pos] = own, own, im_factor * own


def okx_account_borrowing(acc, pa_start, pa_order, ba_start, ba_order, pos_asset, bal_asset,
                          value, bal_amount, acc_snap, asset_col, asset_stable, asset_px,
                          ua_start, unit_asset, borrow_mmr_rate, borrow_imr_rate, spot_taker_fee,
                          maintenance_margin, initial_margin, loan_maintenance_margin,
                          loan_initial_margin, liquidation_cost, finite, derivatives_mmr,
                          borrow_mmr, borrow_imr, okx_liquidation_cost, unit_mr8):
    """Twin of :func:`pmrisk.kernel.okx.account_borrowing`: equity per (account, asset) with
    ``numpy.unique`` and ``numpy.bincount`` over the selected accounts' positions, then
    balances; the liabilities summed per account with ``numpy.bincount``; a unit's MR8 looked
    up among its account's liabilities by (account, asset) key with ``numpy.searchsorted``."""
    acc = np.asarray(acc)
    n_acc, n_a = len(pa_start) - 1, max(len(asset_col), 1)

    def price(code, snap):
        col = asset_col[code]
        px = np.where(col >= 0, asset_px[snap, np.maximum(col, 0)], np.nan) \
            if asset_px.shape[1] else np.full(len(code), np.nan)
        return np.where(np.isnan(px) & (asset_stable[code] != 0), 1.0, px)
    pos_account = np.zeros(len(pos_asset), dtype=np.int64)
    bal_account = np.zeros(len(bal_asset), dtype=np.int64)
    for a in range(n_acc):
        pos_account[pa_order[pa_start[a]:pa_start[a + 1]]] = a
        bal_account[ba_order[ba_start[a]:ba_start[a + 1]]] = a
    chosen = np.zeros(n_acc, dtype=bool)
    chosen[acc] = True
    pos = np.flatnonzero(chosen[pos_account])
    bal = np.flatnonzero(chosen[bal_account])
    px = price(pos_asset[pos], acc_snap[pos_account[pos]])
    with np.errstate(divide="ignore", invalid="ignore"):
        native = np.where(px > 0, value[pos] / px, 0.0)
    keys = np.concatenate([pos_account[pos] * n_a + pos_asset[pos],
                           bal_account[bal] * n_a + bal_asset[bal]])
    uniq, inv = np.unique(keys, return_inverse=True)
    eq = np.bincount(inv.ravel(), weights=np.concatenate([native, bal_amount[bal]]),
                     minlength=len(uniq)).astype(np.float64)
    a_of = uniq // n_a
    with np.errstate(invalid="ignore"):
        liab = np.where(eq < 0.0, -eq * price(uniq % n_a, acc_snap[a_of]), 0.0)
    owed = np.bincount(a_of, weights=liab, minlength=n_acc).astype(np.float64)[acc]
    units = np.concatenate([np.arange(ua_start[a], ua_start[a + 1]) for a in acc] +
                           [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    unit_account = np.repeat(acc, np.diff(ua_start)[acc])
    key = unit_account * n_a + unit_asset[units]
    at = np.minimum(np.searchsorted(uniq, key), max(len(uniq) - 1, 0))
    found = (unit_asset[units] >= 0) & (uniq[at] == key) if len(uniq) else \
        np.zeros(len(units), dtype=bool)
    unit_mr8[units] = np.where(found, borrow_mmr_rate * liab[at] if len(uniq) else 0.0, 0.0)
    deriv = maintenance_margin[acc] - loan_maintenance_margin[acc]
    unit_im = initial_margin[acc] - loan_initial_margin[acc]
    derivatives_mmr[acc] = deriv
    borrow_mmr[acc] = borrow_mmr_rate * owed
    borrow_imr[acc] = borrow_imr_rate * owed
    okx_liquidation_cost[acc] = owed * (1.0 + borrow_mmr_rate) * spot_taker_fee
    loan_maintenance_margin[acc] = borrow_mmr[acc]
    loan_initial_margin[acc] = borrow_imr[acc]
    maintenance_margin[acc] = deriv + borrow_mmr[acc]
    initial_margin[acc] = unit_im + borrow_imr[acc]
    liquidation_cost[acc] = okx_liquidation_cost[acc]
    ok = np.isfinite(maintenance_margin[acc]) & np.isfinite(initial_margin[acc]) \
        & np.isfinite(liquidation_cost[acc])
    finite[acc] = np.where(ok, finite[acc], 0.0)


def okx_option_values(sel, pu_start, pu_order, pos_instr, kind, forward, strike, is_call, years,
                      sig, rate, mr2_years):
    """Twin of :func:`pmrisk.kernel.okx.option_values`: :func:`black76_price` (intrinsic at
    T <= 0) of the option instruments held in the units ``sel``, now and ``mr2_years`` later."""
    held = np.zeros(len(kind), dtype=bool)
    for u in np.asarray(sel).tolist():
        held[pos_instr[pu_order[pu_start[u]:pu_start[u + 1]]]] = True
    i = np.flatnonzero(held & (kind == OPTION))
    v0, v1 = np.zeros(len(kind)), np.zeros(len(kind))
    call = is_call[i] == 1
    v0[i] = black76_price(forward[i], strike[i], years[i], sig[i], call, rate)
    v1[i] = black76_price(forward[i], strike[i], years[i] - mr2_years, sig[i], call, rate)
    return v0, v1
# -- kernel.validate: the book's instruments of a one-snapshot book -------------------------
# (load_book's rule-by-rule path as it was: numpy.searchsorted, numpy.unique, numpy.where)

def expired(pos_row, pos_snap, ord_row, ord_snap, kind, expiry, snap_ns):
    """Twin of :func:`pmrisk.kernel.validate.expired`."""
    nat = np.iinfo(np.int64).min
    kind, expiry = np.asarray(kind), np.asarray(expiry, dtype=np.int64)
    dated = ((kind == FUTURE) | (kind == OPTION)) & (expiry != nat)
    expired_from = np.searchsorted(snap_ns, np.where(dated, expiry, np.iinfo(np.int64).max),
                                   side="right")
    pos = np.asarray(pos_snap) >= expired_from[pos_row]
    ords = np.asarray(ord_snap) >= expired_from[ord_row]
    return pos, ords, int(pos.sum() + ords.sum())


def index_prices(underlying, price, names, bounds):
    """Twin of :func:`pmrisk.kernel.validate.index_prices`; columns as lists (None null)."""
    col = lookup_rows(names, underlying)
    px = np.array([price[c] if c >= 0 and price[c] is not None else np.nan for c in col],
                  dtype=np.float64)
    return col, px, len(underlying) - len(set(underlying)), _count_bad(price, True, bounds)


def one_snapshot(pos_row, ord_row, kind, settlement, contract_size, expiry, strike, is_call,
                 und_code, mkt_ins, mark, mark_iv, underlying_price, und_price, vt):
    """Twin of :func:`pmrisk.kernel.validate.one_snapshot`: ``(status, outputs)``, the
    outputs None unless the status is 0 (every instrument priced)."""
    nat = np.iinfo(np.int64).min
    held = np.concatenate([pos_row, ord_row]).astype(np.int64)
    _, first = np.unique(held, return_index=True)
    ins_row = held[np.sort(first)]      # in the order the positions, then orders, hold them
    number = np.full(len(kind), -1, dtype=np.int64)
    number[ins_row] = np.arange(len(ins_row))
    inv = number[held]
    mkt_of = np.full(len(kind), -1, dtype=np.int64)
    mkt_of[mkt_ins] = np.arange(len(mkt_ins))
    m = mkt_of[ins_row]                 # -1: none, which reads the NaN appended below
    mark, mark_iv, underlying_price = (np.append(np.asarray(v, dtype=np.float64), np.nan)
                                       for v in (mark, mark_iv, underlying_price))
    k = np.asarray(kind)[ins_row]
    iv = mark_iv[m]
    und_px = np.asarray(und_price)[np.asarray(und_code)[ins_row]]
    fails = [(m < 0, 1), ((k == OPTION) & np.isnan(iv), 2), (np.isnan(und_px), 3)]
    for i in range(len(m)):             # the first instrument that fails, its first rule
        for bad, code in fails:
            if bad[i]:
                return code, None
    used, und = np.unique(np.asarray(und_code)[ins_row], return_inverse=True)
    fwd = underlying_price[m]
    e = np.asarray(expiry, dtype=np.int64)[ins_row]
    years = np.where(e == nat, 0.0, (e - vt) / (365 * 86_400 * 10**9))
    years = np.where((k == SPOT) | (k == PERPETUAL), 0.0, years)
    s = np.asarray(strike)[ins_row]
    return 0, (ins_row, inv[:len(pos_row)], inv[len(pos_row):], und.ravel(), used, k,
               np.asarray(settlement)[ins_row], np.asarray(contract_size)[ins_row], e,
               mark[m], np.where(np.isnan(fwd), und_px, fwd),
               np.where(np.isnan(s), 1.0, s),
               np.where(k == OPTION, np.asarray(is_call)[ins_row], 1), years, iv)


def bind_cells_twin(st, pnl_args, sel):
    """Numpy twin of :func:`pmrisk.kernel.joint_tick.bind_slots` and ``bind_cells`` with
    every revaluation row repriced: the distinct binding joint scenarios of the accounts
    ``sel`` in order of first appearance, and per scenario and row that those accounts hold
    (the ``need`` mask) the row's P&L per contract (:func:`instrument_pnl`) at the
    scenario's move of the row's underlying, vol up, same, down."""
    from pmrisk.kernel.joint import BIND_JOINT
    sel = np.asarray(sel)
    joint = sel[st.bind_kind[sel] == BIND_JOINT]
    jj_all = st.bind_index[joint]
    _, first = np.unique(jj_all, return_index=True)
    jjs = jj_all[np.sort(first)]
    slot = {int(j): d for d, j in enumerate(jjs)}
    n_rows = len(st.pending)
    need = np.zeros((len(jjs), n_rows), dtype=bool)
    cells = np.zeros((len(jjs), n_rows, 3))
    instr = (*pnl_args.instruments(), pnl_args.rate)
    g_col, js_shock = st.grp[2], st.grp[6]
    for a in joint.tolist():
        jj = int(st.bind_index[a])
        d, g = slot[jj], int(st.acc_group[a])
        for u in range(st.ua_start[a], st.ua_start[a + 1]):
            c = g_col[g, st.unit_row[u]]
            if c < 0:
                continue
            for p in st.pu_order[st.pu_start[u]:st.pu_start[u + 1]]:
                i = int(st.pos_row[p])
                need[d, i] = True
                s = np.full((n_rows, 3), js_shock[jj, c])
                one = np.ones_like(s)
                pnl = instrument_pnl(*instr, np.full(n_rows, 3), s, np.log1p(s),
                                     np.tile(np.array([VOL_UP, VOL_SAME, VOL_DOWN]),
                                             (n_rows, 1)), one, one)
                cells[d, i] = pnl[i]
    return jjs, need, cells


def scenario_words(acc, worst, acc_group, bind_kind, bind_index, bind_shock, g_j0, g_d, g_rows,
                   g_col, g_buckets, j_shock, j_meta, ua_start, active, unit_row, unit_vol,
                   utype, vol_same, und_names, type_names, kind_names, vol_names,
                   bind_joint=0):
    """Twin of :func:`pmrisk.kernel.describe.scenario_words` (with :func:`odd_moves`): the
    words of each account of ``acc`` as a list of str, built account by account in Python;
    the strings come as lists (``und_names``, ``type_names``, ``kind_names``,
    ``vol_names``) instead of byte blobs, and every move is formatted by ``"%+.2f%%"``."""
    out = []
    for a in np.asarray(acc).tolist():
        if not worst[a] > 0.0:
            out.append("none")
            continue
        g, k = int(acc_group[a]), int(bind_index[a])
        joint = int(bind_kind[a]) == bind_joint
        if joint:
            kg = int(np.searchsorted(g_j0, k, "right")) - 1
            shell, direction, kind = (int(v) for v in j_meta[k])
            where = f"{kind_names[kind]} direction {direction}" if direction >= 0 else ""
            b = int(g_buckets[kg])
        else:
            b = int(g_buckets[g])
            shell = k // 2 + 1 if k < 2 * b else -1
            where = f"delta direction {'-+'[k % 2]}"
        head = f"joint shell {shell}/{b}" if shell >= 0 else "joint extreme"
        head = f"{head} {where}" if where else head
        pieces = []
        for c in range(int(g_d[g])):
            move = j_shock[k, c] if joint else bind_shock[a, c]
            vols = [(int(u), int(unit_vol[u])) for u in range(ua_start[a], ua_start[a + 1])
                    if active[u] and g_col[g, unit_row[u]] == c]
            states = {v for _, v in vols}
            if len(states) <= 1:
                words = f"vol {vol_names[states.pop() if states else vol_same]}"
            else:
                words = "(" + ", ".join(f"{type_names[utype[u]]} vol {vol_names[v]}"
                                        for u, v in vols) + ")"
            pieces.append(f"{und_names[g_rows[g, c]]} {'%+.2f%%' % (move * 100.0)} {words}")
        out.append(f"{head}: {', '.join(pieces)}")
    return out


def row_sets(pos_unit, quantity, unit_account, unit_row, n_acc, n_rows):
    """Twin of :func:`pmrisk.kernel.groups.row_sets`: a boolean member matrix (accounts x
    rows), its rows packed into uint64 words and ``numpy.unique`` over them, the sets
    renumbered in the order of their first account."""
    n_units = len(unit_account)
    held = np.asarray(quantity) != 0.0
    active = np.bincount(np.asarray(pos_unit)[held], minlength=n_units) > 0
    active = active[:n_units] if n_units else np.zeros(0, dtype=bool)
    words = max((n_rows + 63) // 64, 1)
    member = np.zeros((n_acc, 64 * words), dtype=bool)
    member[np.asarray(unit_account)[active], np.asarray(unit_row)[active]] = True
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    mask = np.stack([(member[:, 64 * w:64 * (w + 1)] * weights).sum(axis=1, dtype=np.uint64)
                     for w in range(words)], axis=1).reshape(n_acc, words)
    some = member.any(axis=1)
    if not some.any():
        return active, np.zeros((0, words), dtype=np.uint64), np.full(n_acc, -1, np.int64)
    keys, first, inv = np.unique(mask[some], axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(keys))
    acc_set = np.full(n_acc, -1, dtype=np.int64)
    acc_set[some] = rank[inv.ravel()]
    return active, keys[np.argsort(first, kind="stable")], acc_set


def prices_at(sel, utype, settle_by_type, index_by_type, settle_px, index_px):
    """Twin of :func:`pmrisk.kernel.assemble.prices_at` (in place)."""
    settle_px[sel] = np.asarray(settle_by_type)[utype]
    index_px[sel] = np.asarray(index_by_type)[utype]


def all_set(flags, sel):
    """Twin of :func:`pmrisk.kernel.assemble.all_set`."""
    return bool((np.asarray(flags)[sel] == 1.0).all())


def binding_cell(wrow, ns, lowest, vol_code, r):
    """Twin of :func:`pmrisk.kernel.assemble.binding_cell`: the cells of ``wrow[:ns]`` with
    ``w - lowest <= 1e-12 * max(|w|, |lowest|)`` tie; the first of vol state same among
    them, else the first; ``(-1, 0.0)`` when none ties."""
    w = np.asarray(wrow[:ns], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        tied = np.flatnonzero(w - lowest <= 1e-12 * np.maximum(np.abs(w), abs(lowest)))
    if not len(tied):
        return -1, 0.0
    same = tied[vol_code[r, tied] == VOL_SAME]
    b = int(same[0]) if len(same) else int(tied[0])
    return b, float(w[b])


def market_checks(rows, mark, iv, is_opt, cur_iv):
    """Twin of :func:`pmrisk.kernel.ticks.market_checks`."""
    rows = np.asarray(rows)
    no_mark = (rows < 0) & np.isnan(mark)
    old_iv = np.where(rows >= 0, cur_iv[np.maximum(rows, 0)], np.nan) if len(cur_iv) \
        else np.full(len(rows), np.nan)
    new_iv = np.where(np.isnan(iv), old_iv, iv)
    return no_mark, np.asarray(is_opt, dtype=bool) & np.isnan(new_iv)


def write_marks(rows, n_old, mark, iv, fwd, has_fwd, cur_mark, cur_iv, cur_fwd):
    """Twin of :func:`pmrisk.kernel.ticks.write_marks` (in place; rows distinct)."""
    before = [a[rows] for a in (cur_mark, cur_iv, cur_fwd)]
    given = ~np.isnan(mark)
    cur_mark[rows[given]] = mark[given]
    given = ~np.isnan(iv)
    cur_iv[rows[given]] = iv[given]
    if has_fwd:
        cur_fwd[rows] = fwd
    same = rows < n_old
    for old, now in zip(before, (cur_mark[rows], cur_iv[rows], cur_fwd[rows])):
        same = same & ((old == now) | (np.isnan(old) & np.isnan(now)))
    return ~same


def book_marks(instr, mrow, und_px, mark, iv, fwd, book_mark, book_iv, book_fwd):
    """Twin of :func:`pmrisk.kernel.ticks.book_marks` (in place)."""
    book_mark[instr] = mark[mrow]
    book_iv[instr] = iv[mrow]
    f = fwd[mrow]
    book_fwd[instr] = np.where(np.isnan(f), und_px, f)


def tick_selection(instr_hit, type_hit, utype, unit_account, live, bal_account, bal_hit,
                   row_instr, all_units):
    """Twin of :func:`pmrisk.kernel.ticks.tick_selection`."""
    unit_hit = type_hit[utype] if len(utype) else np.zeros(0, dtype=bool)
    acc_hit = np.zeros(len(live), dtype=bool)
    acc_hit[unit_account[unit_hit]] = True
    acc_hit[bal_account[bal_hit]] = True
    on = live[unit_account] if len(utype) else np.zeros(0, dtype=bool)
    hit = acc_hit[unit_account] & on if all_units else unit_hit & on
    return (np.flatnonzero(instr_hit), np.flatnonzero(instr_hit[row_instr]),
            np.flatnonzero(hit), np.flatnonzero(acc_hit & live), np.flatnonzero(unit_hit & on))


def kept_rows(new, account):
    """Twin of :func:`pmrisk.kernel.ticks.kept_rows`."""
    rows = np.flatnonzero(new[account] >= 0) if len(account) else np.zeros(0, dtype=np.int64)
    return rows, new[account[rows]]



def row_sources(mine, row_instr, n_instr, floored, n_held):
    """Twin of :func:`pmrisk.kernel.ticks.row_sources`."""
    k = mine[row_instr]
    copy = np.arange(len(k)) >= n_instr
    at = np.minimum(np.searchsorted(floored, k), max(len(floored) - 1, 0))
    has = (k >= 0) & (~copy | ((floored[at] == k) if len(floored) else False))
    src = np.where(copy, n_held + at, k)
    use = np.flatnonzero(has)
    return use, src[use], np.flatnonzero(~has)


# -- s18: kernel/rowkeys.py twins: the numpy each replaced in bindings/ (engine.units,
# -- engine.risk_arrays, backtest) --------------------------------------------------------------

def settlement_combos(und_code, settlement):
    """Twin of :func:`pmrisk.kernel.rowkeys.settlement_combos` (``und * 2 + inverse``)."""
    return np.asarray(und_code, dtype=np.int64) * 2 + (np.asarray(settlement) == INVERSE)


def unit_keys(n_types, instr_type, pos_account, pos_instr, ord_account, ord_instr,
              res_account, res_type):
    """Twin of :func:`pmrisk.kernel.rowkeys.unit_keys` (three gathers and a concatenation)."""
    instr_type = np.asarray(instr_type, dtype=np.int64)
    return np.concatenate([np.asarray(pos_account, np.int64) * n_types
                           + instr_type[np.asarray(pos_instr, np.int64)],
                           np.asarray(ord_account, np.int64) * n_types
                           + instr_type[np.asarray(ord_instr, np.int64)],
                           np.asarray(res_account, np.int64) * n_types
                           + np.asarray(res_type, np.int64)]).astype(np.int64)


def split_pairs(pair, n_types):
    """Twin of :func:`pmrisk.kernel.rowkeys.split_pairs` (``//`` and ``%``)."""
    pair = np.asarray(pair, dtype=np.int64)
    return (pair // n_types).astype(np.int64), (pair % n_types).astype(np.int64)


def settlement_types(und_code, settlement):
    """Twin of :func:`pmrisk.kernel.rowkeys.settlement_types` (``numpy.unique`` of the keys)."""
    present, inverse = np.unique(settlement_combos(und_code, settlement), return_inverse=True)
    return present.astype(np.int64), inverse.ravel().astype(np.int64)


def unit_pairs(n_types, instr_type, pos_account, pos_instr, ord_account, ord_instr,
               res_account, res_type):
    """Twin of :func:`pmrisk.kernel.rowkeys.unit_pairs` (``numpy.unique`` of the keys, then
    ``//`` and ``%``; the same rule for giving up on sparse keys)."""
    keys = unit_keys(n_types, instr_type, pos_account, pos_instr, ord_account, ord_instr,
                     res_account, res_type)
    none = np.zeros(0, dtype=np.int64)
    if len(keys) and (keys.min() < 0 or keys.max() + 1 > max(8 * len(keys), 1 << 16)):
        return False, none, none, none
    pair, inverse = np.unique(keys, return_inverse=True)
    account, utype = split_pairs(pair, n_types)
    return True, account, utype, inverse.ravel().astype(np.int64)


def time_runs(ns):
    """Twin of :func:`pmrisk.kernel.rowkeys.time_runs` (the run starts by a shifted
    comparison, their lengths by a difference)."""
    ns = np.asarray(ns, dtype=np.int64)
    if len(ns) and (np.diff(ns) < 0).any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), False
    if not len(ns):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), True
    start = np.flatnonzero(np.r_[True, ns[1:] != ns[:-1]])
    return ns[start], np.diff(np.r_[start, len(ns)]).astype(np.int64), True


# -- kernel/asof.py and kernel/instances.py twins: the numpy each replaced in
# -- bindings/io/fill.py and bindings/io/book.py ---------------------------------------------

def forward_rows(key, ns, order, snap_ns, needed):
    """Twin of :func:`pmrisk.kernel.asof.forward_rows`: the pairs with a row at their time
    dropped (``isin``), the rest as-of joined by sorted (key, time rank) keys (the code of
    ``pmrisk.io.fill`` before the kernel)."""
    key, ns, snap_ns, needed = (np.asarray(a, dtype=np.int64)
                                for a in (key, ns, snap_ns, needed))
    n_snap = len(snap_ns)
    at = np.minimum(np.searchsorted(snap_ns, ns), max(n_snap - 1, 0))
    exact = (snap_ns[at] == ns) if n_snap else np.zeros(len(ns), dtype=bool)
    have = np.unique(key[exact] * n_snap + at[exact])
    missing = needed[~np.isin(needed, have)]
    empty = np.zeros(0, dtype=np.int64)
    if not len(missing) or not len(ns):         # nothing to fill, or no row to fill from
        return empty, empty
    q_key, q_snap = missing // n_snap, missing % n_snap
    q_ns = snap_ns[q_snap]
    every = np.unique(np.concatenate([ns, q_ns]))
    n = len(every)
    k = key * n + np.searchsorted(every, ns)
    srt = np.argsort(k, kind="stable")
    ks = k[srt]
    q = q_key * n + np.searchsorted(every, q_ns)
    at = np.searchsorted(ks, q, side="right") - 1
    ok = at >= 0
    ok[ok] = ks[at[ok]] // n == q_key[ok]
    src = np.where(ok, srt[np.maximum(at, 0)], -1)
    return src[ok].astype(np.int64), q_snap[ok].astype(np.int64)


def instance_columns(inst_ins, inst_snap, kind, expiry, strike, is_call, m_rows,
                     underlying_price, und_px, snap_ns):
    """Twin of :func:`pmrisk.kernel.instances.instance_columns` (gathers and ``np.where``:
    the code of ``pmrisk.io.book`` before the kernel)."""
    NAT, CALL = np.iinfo(np.int64).min, 1
    inst_ins = np.asarray(inst_ins, dtype=np.int64)
    a_kind = np.asarray(kind)[inst_ins]
    a_exp = np.asarray(expiry, dtype=np.int64)[inst_ins]
    fwd = np.asarray(underlying_price)[np.asarray(m_rows, dtype=np.int64)]
    forward = np.where(np.isnan(fwd), und_px, fwd).astype(np.float64)
    vt = np.asarray(snap_ns)[inst_snap] if len(snap_ns) else np.zeros(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        years = np.where(a_exp == NAT, 0.0, (a_exp - vt) / (365 * 86_400 * 10**9))
    years = np.where(a_kind == SPOT, 0.0, np.where(a_kind == PERPETUAL, 0.0, years))
    a_strike = np.asarray(strike, dtype=np.float64)[inst_ins]
    return (forward, years.astype(np.float64), np.where(np.isnan(a_strike), 1.0, a_strike),
            np.where(a_kind == OPTION, np.asarray(is_call)[inst_ins], CALL).astype(np.int64))


def pair_keys(n, hi_a, lo_a, hi_b, lo_b, shift):
    """Twin of :func:`pmrisk.kernel.instances.pair_keys` (``(hi + shift) * n + lo``)."""
    return np.concatenate([(np.asarray(hi_a, np.int64) + shift) * n + np.asarray(lo_a, np.int64),
                           (np.asarray(hi_b, np.int64) + shift) * n
                           + np.asarray(lo_b, np.int64)]).astype(np.int64)


# -- io.arrow: the column readers ---------------------------------------------------------------

NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def time_column(values, unit):
    """Twin of :func:`pmrisk.io.arrow.time_column` on a timestamp column of ``unit`` (a list
    of ints, None for null): int64 ns since the epoch, ``NAT`` (int64's least) at nulls; None
    when a time is beyond int64 nanoseconds (the column is refused)."""
    ns = [None if v is None else v * NS_PER_UNIT[unit] for v in values]
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    if any(v is not None and not lo < v <= hi for v in ns):
        return None
    return np.array([lo if v is None else v for v in ns], dtype=np.int64)


# -- kernel.validate.one_snapshot_book: the table passes of a one-snapshot book, chained ---------

def one_snapshot_book(ins, pos, mkt, idx, names, bounds, max_iv, vt):
    """Twin of :func:`pmrisk.kernel.validate.one_snapshot_book` by the twins of the table
    passes: columns as lists (None null; an absent column None), ``expiry`` ints (``NAT``
    null), ``names`` the allowed (kinds, settlements, option_types) as tuples of str.
    Returns ``(status, outputs)``, the outputs ``(und_first, pos_row, acc_codes, acc_first,
    asset_px, one_snapshot's outputs)`` None unless the status is 0."""
    nat = np.iinfo(np.int64).min
    sym, und, kind, settlement, option_type, csize, strike, expiry = ins
    n = len(sym)
    k, s, is_call, und_codes, und_first, _codes, _first, bad = validate_instruments(
        sym, und, kind, settlement, option_type, csize, strike, expiry, names, bounds)
    if bad.any():
        return 1, None
    p_sym, p_acc, qty, entry, lev = pos
    pos_row, acc_codes, acc_first, repeated, bad = validate_positions(
        p_sym, p_acc, qty, entry, lev, sym, bounds)
    if bad.any() or repeated != 0:
        return 2, None
    none = np.zeros(0, dtype=np.int64)
    expiry = np.array(expiry if expiry is not None else [nat] * n, dtype=np.int64)
    if expired(pos_row, np.zeros(len(pos_row), dtype=np.int64), none, none, k, expiry,
               np.array([vt], dtype=np.int64))[2]:
        return 3, None
    m_sym, mark, iv, fwd = mkt
    mkt_ins, repeated, bad = validate_market(m_sym, mark, iv, fwd, max_iv, sym, bounds)
    if bad.any() or repeated != 0:
        return 4, None
    i_und, price = idx
    _col, und_px, repeated, n_bad = index_prices(i_und, price, [und[r] for r in und_first],
                                                 bounds)
    if repeated or n_bad:
        return 5, None

    def nan_at_nulls(values, n_rows):
        return np.array([np.nan if v is None else v for v in (values or [None] * n_rows)],
                        dtype=np.float64)

    status, out = one_snapshot(pos_row, none, k, s, np.array(csize, dtype=np.float64), expiry,
                               nan_at_nulls(strike, n), is_call, und_codes, mkt_ins,
                               np.array(mark, dtype=np.float64), nan_at_nulls(iv, len(m_sym)),
                               nan_at_nulls(fwd, len(m_sym)), und_px, vt)
    if status:
        return 6, None
    return 0, (und_first, pos_row, acc_codes, acc_first, nan_at_nulls(price, len(i_und)), out)


# -- kernel/layout.py revaluation_layout -----------------------------------------------------------

def revaluation_layout(kind, mark_iv, pos_instr, quantity, ord_instr, ord_qty, itype,
                       settlement, contract_size, mark, forward, strike, is_call, years,
                       vol_floor, r_up, r_down, p_short, p_long, min_up, absolute,
                       scan_range, horizon_days, und_row):
    """Twin of :func:`pmrisk.kernel.layout.revaluation_layout`: :func:`revaluation_rows` at
    each instrument's type floor, then :func:`row_arrays` of every row."""
    floor = vol_floor[itype] if len(kind) else np.zeros(0)
    row_instr, copies, pos_row, ord_row = revaluation_rows(kind, mark_iv, floor, pos_instr,
                                                           quantity, ord_instr, ord_qty)
    return row_instr, copies, pos_row, ord_row, row_arrays(
        np.arange(len(row_instr), dtype=np.int64), row_instr, len(kind), itype, kind,
        settlement, contract_size, mark, forward, strike, is_call, years, mark_iv, vol_floor,
        r_up, r_down, p_short, p_long, min_up, absolute, scan_range, horizon_days, und_row)


def book_layout(pos_instr, quantity, kind, excluded_instr, itype, som_type, ord_instr,
                pos_unit, ord_unit, n_units, pos_account, bal_account, unit_account, n_acc,
                expiry_ns, years, unit_type, annualised_move_risk, min_annualised_move,
                res_unit, res_oo, res_mmp):
    """Twin of :func:`pmrisk.kernel.layout.book_layout`: the twins of
    :func:`position_layout`, :func:`csr` (five times), :func:`roll_groups` and
    :func:`reserve_sums` one after the other."""
    pu_start, pu_order = csr(pos_unit, n_units)
    idx = (pu_start, pu_order, *csr(ord_unit, n_units), *csr(pos_account, n_acc),
           *csr(bal_account, n_acc), csr(unit_account, n_acc)[0])
    pos_group, group_rate, _ = roll_groups(pu_start, pu_order, pos_instr, kind, expiry_ns,
                                           years, unit_type, annualised_move_risk,
                                           min_annualised_move)
    return (position_layout(pos_instr, quantity, kind, excluded_instr, itype, som_type,
                            ord_instr), idx, (pos_group, group_rate),
            reserve_sums(res_unit, res_oo, res_mmp, n_units))


# -- kernel/joint.py _lowest: the tails' one bound in _scan ---------------------------------------

def lowest(x, n):
    """Twin of ``joint._lowest``: the lowest of ``x[:n]``, NaN if any is, ``-inf`` if
    ``n`` is 0."""
    if n <= 0:
        return -np.inf
    part = np.asarray(x[:n], dtype=np.float64)
    return np.nan if np.isnan(part).any() else float(part.min())


def running_min(x, c, n):
    """Twin of ``joint._running_min``: ``x[:n]`` with each side of the centre ``c`` replaced
    by its running minimum outward (``x[i:c].min()`` left of ``c``, ``x[c:i + 1].min()``
    from ``c`` to ``2 c - 1``; NaN handled as ``x < y`` does: a NaN is kept where it is,
    the next value replaces it)."""
    out = np.array(x[:n], dtype=np.float64)
    if c < 1:
        return out
    y = out[c - 1]
    for i in range(c - 2, -1, -1):
        y = y if y < out[i] else out[i]
        out[i] = y
    y = out[c]
    for i in range(c + 1, 2 * c):
        y = y if y < out[i] else out[i]
        out[i] = y
    return out

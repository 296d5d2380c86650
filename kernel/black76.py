"""Black-76 value and Greeks, undiscounted unless a rate is given.

Scalar ``@njit`` functions (inlined into the revaluation loops) plus array wrappers.
Conventions: ``F`` forward, ``K`` strike, ``T`` years (365-day year), ``sigma`` annualised
decimal, ``is_call`` 1 or 0, ``rate`` continuously compounded.  Vega is per 1.00 of vol, theta
per calendar day (``dV/dt``, i.e. minus the derivative in T, divided by 365).

Edge cases (defined, tested): for ``T <= 0`` or ``sigma*sqrt(T) < 1e-12`` the value is the
(discounted) intrinsic value of the forward; delta is then 1/0 (call) or 0/-1 (put) by
moneyness, and 1/2 (or -1/2) exactly at the money; gamma, vega and theta are 0.
"""

import math

import numpy as np

from ._config import njit
from .normal import erfc

SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
MIN_STDDEV = 1e-12
DAYS_PER_YEAR = 365.0


@njit(inline="always")
def ncdf(x):
    """Standard normal CDF via ``erfc`` (accurate in both tails, no 1 + erf cancellation):
    :func:`pmrisk.kernel.normal.erfc`, inlined, so a loop of it vectorises."""
    return 0.5 * erfc(-x / SQRT2)


@njit
def norm_cdf(x):
    """:func:`ncdf` as a function of its own (the same bits), for scalar callers."""
    return ncdf(x)


@njit
def norm_pdf(x):
    return INV_SQRT_2PI * math.exp(-0.5 * x * x)


@njit(inline="always")
def undiscounted_price(F, K, ln_fk, sd, is_call):
    """Undiscounted Black-76 from ``ln(F/K)`` and ``sd = sigma*sqrt(T)``: the one formula
    every valuation uses (at the marks and in every scenario), so an unshocked scenario
    reproduces the value at the marks bit for bit.  ``sd < MIN_STDDEV``: intrinsic.

    Branch-free in ``sd``: the formula runs on every ``sd`` (on 1.0 in place of a tiny or
    infinite one) and the edge cases are chosen after it, so a scenario loop whose ``sd``
    varies from cell to cell still vectorises (:func:`pmrisk.kernel.normal.erfc` is
    arithmetic only); a normal ``sd`` gives the formula's bits, as before."""
    tiny = sd < MIN_STDDEV
    infinite = sd == math.inf               # the sigma -> infinity limit
    sdf = 1.0 if (tiny or infinite) else sd     # NaN stays NaN
    d1 = ln_fk / sdf + 0.5 * sdf
    d2 = d1 - sdf
    # call F N(d1) - K N(d2), put K N(-d2) - F N(-d1): the two CDFs taken once, at arguments
    # chosen first (a loop whose is_call is not known to the compiler prices one formula)
    n1 = ncdf(d1 if is_call else -d2)
    n2 = ncdf(d2 if is_call else -d1)
    v = F * n1 - K * n2 if is_call else K * n1 - F * n2
    if tiny:
        v = F - K if is_call else K - F
    elif infinite:
        v = F if is_call else K
    return v if (v > 0.0 or v != v) else 0.0        # a NaN input stays visible


@njit(inline="always")
def discount(rate, T):
    """``exp(-rate*T)``, 1 when ``T <= 0``; at ``rate = 0`` (the default) 1 without the
    libm call, which is the same value (``exp(-0.0) = 1``) for every finite ``T``."""
    return math.exp(-rate * T) if (T > 0.0 and rate != 0.0) else 1.0


@njit(inline="always")
def mark_value(F, K, t_now, sig_mark, rate, is_call):
    """An option's value at the marks and what its Greeks reuse: ``(value, ln(F/K),
    sigma*sqrt(T), discount)`` (``T = t_now``; value discounted, quote currency).  The
    revaluation's value at the marks and :func:`black76_greeks_at` share it, so the fused
    pass prices each option at its marks once."""
    ln_fk = math.log(F / K)
    sd0 = sig_mark * math.sqrt(t_now) if t_now > 0.0 else 0.0
    v0 = undiscounted_price(F, K, ln_fk, sd0, is_call)
    disc0 = discount(rate, t_now)
    return v0 * disc0, ln_fk, sd0, disc0


@njit(inline="always")
def option_constants(F, K, t_now, sig_mark, t_scen, sig_up, sig_same, sig_down, rate, is_call,
                     inverse):
    """What a revaluation hoists out of its scenario loop for one option: ``(base, ln(F/K),
    discount to the scenario's expiry, sigma*sqrt(T) of vol up, same, down)``, ``base`` the
    value at the marks (``sig_mark``, ``t_now``; coin for an ``inverse`` option).  The one
    definition :func:`pmrisk.kernel.instrument_pnl`, the joint stress's pricing constants
    and its grid curves share, so their cells are the same bits."""
    v0, ln_fk, _, _ = mark_value(F, K, t_now, sig_mark, rate, is_call)
    base = v0 / F if inverse else v0
    disc, sd_up, sd_same, sd_down = scenario_constants(t_scen, sig_up, sig_same, sig_down, rate)
    return base, ln_fk, disc, sd_up, sd_same, sd_down


@njit(inline="always")
def scenario_constants(t_scen, sig_up, sig_same, sig_down, rate):
    """The scenario half of :func:`option_constants`: ``(discount to the scenario's expiry,
    sigma*sqrt(T) of vol up, same, down)`` at ``T = t_scen``."""
    sqrt_t = math.sqrt(t_scen) if t_scen > 0.0 else 0.0
    disc = discount(rate, t_scen)
    return disc, sig_up * sqrt_t, sig_same * sqrt_t, sig_down * sqrt_t


@njit
def black76_price(F, K, T, sigma, is_call, rate):
    """Black-76 price per unit of underlying, in quote currency."""
    disc = discount(rate, T)
    sd = sigma * math.sqrt(T) if T > 0.0 else 0.0
    return disc * undiscounted_price(F, K, math.log(F / K), sd, is_call)


@njit
def black76_greeks(F, K, T, sigma, is_call, rate):
    """(price, delta, gamma, vega, theta_per_day) per unit of underlying."""
    disc = discount(rate, T)
    sd = sigma * math.sqrt(T) if T > 0.0 else 0.0
    if sd < MIN_STDDEV:
        return black76_greeks_at(F, K, T, sigma, is_call, rate, 0.0, sd, disc, 0.0)
    ln_fk = math.log(F / K)
    return black76_greeks_at(F, K, T, sigma, is_call, rate, ln_fk, sd, disc,
                             disc * undiscounted_price(F, K, ln_fk, sd, is_call))


@njit
def black76_greeks_at(F, K, T, sigma, is_call, rate, ln_fk, sd, disc, price):
    """:func:`black76_greeks` from its parts: ``ln(F/K)``, ``sd = sigma*sqrt(T)`` (0 when
    ``T <= 0``), ``disc = exp(-rate*T)`` (1 when ``T <= 0``) and ``price``, the discounted
    Black-76 value (:func:`mark_value`'s; ``ln_fk`` and ``price`` unused when ``sd <
    MIN_STDDEV``)."""
    if sd < MIN_STDDEV:
        intrinsic = F - K if is_call else K - F
        price = disc * intrinsic if intrinsic > 0.0 else 0.0
        if F > K:
            delta = 1.0 if is_call else 0.0
        elif F < K:
            delta = 0.0 if is_call else -1.0
        else:
            delta = 0.5 if is_call else -0.5
        return price, disc * delta, 0.0, 0.0, rate * price / DAYS_PER_YEAR
    sqrt_t = math.sqrt(T)
    d1 = ln_fk / sd + 0.5 * sd
    pdf = norm_pdf(d1)
    delta = norm_cdf(d1) if is_call else norm_cdf(d1) - 1.0
    gamma = disc * pdf / (F * sd)
    vega = disc * F * pdf * sqrt_t
    theta_year = rate * price - disc * F * pdf * sigma / (2.0 * sqrt_t)
    return price, disc * delta, gamma, vega, theta_year / DAYS_PER_YEAR


@njit
def black76_price_array(F, K, T, sigma, is_call, rate):
    """Element-wise :func:`black76_price` over equal-length arrays (``rate`` scalar)."""
    n = F.shape[0]
    out = np.empty(n)
    for i in range(n):
        out[i] = black76_price(F[i], K[i], T[i], sigma[i], is_call[i], rate)
    return out


@njit
def black76_greeks_array(F, K, T, sigma, is_call, rate):
    """Element-wise :func:`black76_greeks`; returns a ``(5, n)`` array
    (price, delta, gamma, vega, theta per day)."""
    n = F.shape[0]
    out = np.empty((5, n))
    for i in range(n):
        p, d, g, v, t = black76_greeks(F[i], K[i], T[i], sigma[i], is_call[i], rate)
        out[0, i] = p
        out[1, i] = d
        out[2, i] = g
        out[3, i] = v
        out[4, i] = t
    return out

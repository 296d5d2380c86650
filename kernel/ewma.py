"""EWMA volatility and covariance of log returns (RiskMetrics), and the filtered historical
simulation quantile, over a grid of returns: rows are intervals in time order, columns are
underlyings.

Returns ``r`` (float64[T, d]) come with ``ok`` (int64[T, d], 1 where the return exists: a
gap in an underlying's prices leaves its returns across the gap out).  The first ``seed_obs``
rows seed the recursion with the sample (co)variance (about the sample mean, divisor n - 1)
over the rows where the return (both returns, for a pair) exists; from row ``seed_obs`` on

    sigma2[t] = lam * sigma2[t-1] + (1 - lam) * r[t]**2           (a row where r[t] exists)
    cov[t]    = lam * cov[t-1]    + (1 - lam) * r_i[t] * r_j[t]   (a row where both exist)

and a row without the return (pair) keeps the previous value.  Pairs estimated over
different rows need not form a positive semidefinite matrix: the caller checks and repairs.
"""

import numpy as np

from ._config import njit


@njit
def _seed(r, ok, i, j, seed_obs):
    """Sample covariance of columns i and j over the first seed_obs rows where both exist
    (divisor n - 1), and n."""
    n = 0
    si = 0.0
    sj = 0.0
    for t in range(seed_obs):
        if ok[t, i] and ok[t, j]:
            n += 1
            si += r[t, i]
            sj += r[t, j]
    if n < 2:
        return np.nan, n
    mi = si / n
    mj = sj / n
    s = 0.0
    for t in range(seed_obs):
        if ok[t, i] and ok[t, j]:
            s += (r[t, i] - mi) * (r[t, j] - mj)
    return s / (n - 1), n


@njit
def ewma_variance(r, ok, lam, seed_obs):
    """EWMA variance path: float64[T - seed_obs + 1, d]; row 0 is the seed (the variance
    known after row ``seed_obs - 1``), row k the variance after return row ``seed_obs - 1 + k``
    (the forecast for the next interval).  A column with fewer than 2 returns in the seed rows
    is NaN throughout (the caller rejects it first)."""
    T, d = r.shape
    out = np.empty((T - seed_obs + 1, d))
    for i in range(d):
        v, _ = _seed(r, ok, i, i, seed_obs)
        out[0, i] = v
        for t in range(seed_obs, T):
            if ok[t, i]:
                v = lam * v + (1.0 - lam) * r[t, i] * r[t, i]
            out[t - seed_obs + 1, i] = v
    return out


@njit
def ewma_covariance(r, ok, lam, seed_obs):
    """The EWMA covariance matrix after the last row: float64[d, d] (the diagonal equals the
    last row of :func:`ewma_variance`), and int64[d, d] the rows that fed each pair."""
    T, d = r.shape
    cov = np.empty((d, d))
    used = np.zeros((d, d), dtype=np.int64)
    for i in range(d):
        for j in range(i, d):
            c, n = _seed(r, ok, i, j, seed_obs)
            for t in range(seed_obs, T):
                if ok[t, i] and ok[t, j]:
                    c = lam * c + (1.0 - lam) * r[t, i] * r[t, j]
                    n += 1
            cov[i, j] = c
            cov[j, i] = c
            used[i, j] = n
            used[j, i] = n
    return cov, used


def fhs_quantile(moves, sigma_then, sigma_now, quantile):
    """Filtered historical simulation: the ``quantile`` of ``|moves| * sigma_now /
    sigma_then`` (each h-interval log move rescaled from the volatility when it started to
    today's), numpy's linear interpolation between order statistics.  NaN when empty.

    >>> import numpy as np
    >>> from pmrisk.kernel.ewma import fhs_quantile
    >>> fhs_quantile(np.array([0.01, -0.04, 0.02]), np.array([0.01, 0.02, 0.01]), 0.01, 1.0)
    0.02
    """
    moves = np.asarray(moves, dtype=np.float64)
    if moves.size == 0:
        return float("nan")
    scaled = np.abs(moves) * (sigma_now / np.asarray(sigma_then, dtype=np.float64))
    return float(np.quantile(scaled, quantile))

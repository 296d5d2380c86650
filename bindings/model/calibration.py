"""Risk parameters from market data: price ranges, vol shocks and correlations calibrated from a
price history (``pmrisk.calibrate``), the exceedance check of a calibration
(``pmrisk.exceedances``, Kupiec's proportion-of-failures test) and the schedule a backtest
recalibrates on (:class:`CalibrationSchedule`).

The method, step by step:

1. **Resample.** ``prices`` is an index-shaped table ``time, underlying, index_price`` (times
   strictly increasing per underlying).  Each underlying's last price in each ``interval``
   (``"1d"``, ``"4h"``, ``"15m"``, ...; intervals aligned to 1970-01-01 UTC) is kept; every
   interval from the first row's to the last row's forms the grid, and an underlying without
   a price in one of them has a gap there (an interval where no underlying has a price is a
   gap for all of them).
2. **Returns.** ``r_t = ln(P_t / P_{t-1})`` between consecutive grid intervals (none across
   a gap).
3. **EWMA** (RiskMetrics): the first ``seed_obs`` returns seed the variance and covariance
   with their sample values (about the sample mean, divisor n - 1); then
   ``sigma2_t = lam*sigma2_{t-1} + (1-lam)*r_t**2`` and the same for each pair's
   covariance; ``rho = cov / (sigma_i*sigma_j)``.  Pairs estimated over different
   intervals (gaps) can give a matrix that is not positive semidefinite: it is replaced by
   Higham's nearest correlation matrix (with a ``CorrelationRepaired`` warning), or refused
   with an error naming the pair when ``repair = "none"`` (the argument, or the base model's
   ``[correlations]`` setting).
4. **Ranges.** With sigma the latest EWMA volatility (the forecast for the next interval),
   ``range_up = exp(k*sigma*sqrt(h)) - 1`` and ``range_down = 1 - exp(-k*sigma*sqrt(h))``
   (k = ``k_sigma``, h = ``horizon`` in intervals); the model's ``price_range`` is
   ``max(floor, range_up)``.  ``method="historical"`` (filtered historical simulation)
   replaces k*sigma*sqrt(h) by q, the ``quantile`` (numpy's linear interpolation) of the
   absolute h-interval log moves ``|ln(P[p+h] / P[p])|``, each rescaled by sigma_now /
   sigma_p (sigma_p the EWMA volatility known at price row p), over every start
   ``seed_obs <= p <= last - h`` (overlapping when h > 1; moves starting inside the seed
   period and moves across a gap are skipped): ``range_up = exp(q) - 1``,
   ``range_down = 1 - exp(-q)``; ``k_sigma`` is not used.
5. **Vol shocks** (optional): from ``iv``, a table ``time, underlying, mark_iv`` of an
   at-the-money implied volatility per underlying (a decimal: 0.55 for 55 %, ideally a
   constant 30-day maturity as the shocks are scaled from 30 days), resampled the same way:
   ``volatility_range_up`` = the ``quantile`` of its h-interval relative changes
   ``iv_{t+h}/iv_t - 1`` (at least 0), ``volatility_range_down`` = minus their
   ``1 - quantile`` quantile (at least 0, below 1); for an underlying whose model moves
   vol in absolute points (``vol_shock = "absolute"``, SPAN), ``vol_scan_range`` = the larger
   tail quantile of the absolute changes ``iv_{t+h} - iv_t`` instead.

The calibrated model is the base model with, per calibrated underlying, ``price_range`` (and
the two vol ranges when ``iv`` is given) replaced, and a ``[correlations]`` entry per pair;
everything else (buckets, extreme multiple, thresholds, the default correlation of other
pairs) is the base model's.  No look-ahead: ``as_of`` uses rows with ``time <= as_of`` only.
"""

import inspect
import math
import re
import warnings

import numpy as np
import pyarrow as pa

from pmrisk.kernel.ewma import ewma_covariance, ewma_variance, fhs_quantile

from ..io.arrow import (as_table, check_columns, codes, float_column, iso_ns, raise_rows,
                        str_column, time_column, to_ns)
from .correlation import CorrelationRepaired, correlation_matrix
from ..errors import MarginError
from .model import Model
from ..io.schema import TIME, TIME_TYPE

NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9,
      "w": 7 * 86_400 * 10**9}
YEAR_NS = 365 * NS["d"]            # crypto trades every day: sigma * sqrt(intervals per year)
PRICES = {TIME: ("time", True, False), "underlying": ("str", True, False),
          "index_price": ("float", True, False)}
IV = {TIME: ("time", True, False), "underlying": ("str", True, False),
      "mark_iv": ("float", True, False)}
METHODS = ("ewma", "historical")

REPORT_SCHEMA = pa.schema([
    ("kind", pa.string()),              # "underlying" or "pair"
    ("underlying", pa.string()),        # the underlying; a pair's first
    ("other", pa.string()),             # a pair's second (null on underlying rows)
    ("as_of", TIME_TYPE),               # the last price time used
    ("observations", pa.int64()),       # returns that fed the estimate (seed included)
    ("sigma", pa.float64()),            # EWMA volatility per interval
    ("sigma_annualised", pa.float64()),
    ("range_up", pa.float64()),         # exp(k sigma sqrt(h)) - 1 (or the FHS quantile's)
    ("range_down", pa.float64()),       # 1 - exp(-k sigma sqrt(h))
    ("price_range", pa.float64()),      # max(floor, range_up): the model's value
    ("floor_hit", pa.bool_()),
    ("extreme_move", pa.float64()),     # extreme_multiple x price_range
    ("volatility_range_up", pa.float64()),
    ("volatility_range_down", pa.float64()),
    ("vol_scan_range", pa.float64()),   # absolute vol shock, vol points (SPAN-style models)
    ("rho", pa.float64()),              # pair rows: the correlation the model uses
    ("rho_estimate", pa.float64()),     # pair rows: the EWMA estimate before any repair
])


MAX_INTERVAL_NS = 100 * YEAR_NS   # 36500d: longer is a typo (and int64 ns end in 2262)
MAX_INTERVALS = 10_000_000       # grid rows, first row to last interval: 80 MB a column


def parse_interval(text, what="interval"):
    """``"1d"``, ``"4h"``, ``"15m"``, ``"30s"``, ``"1w"`` -> nanoseconds, from 1 s to 100
    years (36500d).

    >>> from pmrisk.model.calibration import parse_interval
    >>> parse_interval("4h") == 4 * 3600 * 10**9
    True
    >>> parse_interval("999999999999d", "every")
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: arguments.every: expected a whole number and a unit among s, \
m, h, d, w ("1d", "4h", "15m"), from 1s to 36500d (100 years), got '999999999999d'
    """
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text) if isinstance(text, str) else None
    ns = int(m.group(1)) * NS[m.group(2)] if m else 0
    if not 1 <= ns <= MAX_INTERVAL_NS:
        raise MarginError("arguments", what, "a whole number and a unit among s, m, h, d, w "
                          "(\"1d\", \"4h\", \"15m\"), from 1s to 36500d (100 years), got "
                          f"{text!r}")
    return ns


def log_ranges(sigma, k_sigma=3.0, horizon=1):
    """SEBI/Varma's log form: ``(exp(k*sigma*sqrt(h)) - 1, 1 - exp(-k*sigma*sqrt(h)))``, the
    up and down moves of a k-sigma log move over h intervals (``expm1`` keeps small ranges
    exact).

    >>> from pmrisk.model.calibration import log_ranges
    >>> up, down = log_ranges(0.02, 3, 1)
    >>> round(100 * float(up), 4), round(100 * float(down), 4)
    (6.1837, 5.8235)
    """
    x = k_sigma * np.asarray(sigma, dtype=np.float64) * math.sqrt(horizon)
    return np.expm1(x), -np.expm1(-x)


# -- the history: validated, cut, resampled ----------------------------------------------------

class _Grid:
    """Resampled levels of one table: ``names`` (underlyings), ``level`` float64[G, d] (NaN:
    no row in that interval), one row per interval from the first row's to the last row's,
    ``last`` int64[G] (the last row time in each interval; an interval without rows: its
    last nanosecond)."""

    def __init__(self, names, level, last, cut=None):
        self.names, self.level, self.last, self.cut = names, level, last, cut

    def returns(self):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.log(self.level[1:] / self.level[:-1])
        ok = np.isfinite(r)
        return np.ascontiguousarray(np.where(ok, r, 0.0)), ok.astype(np.int64)


def _history(obj, name, value, interval_ns, cut=None, underlyings=None):
    """Validate ``obj`` (a ``time, underlying, <value>`` table), keep rows up to ``cut``
    (``(ns, inclusive)``) and resample to ``interval_ns``."""
    t = as_table(obj, name)
    if t is None:
        raise MarginError(name, None, "a table (time, underlying, " + value + ")")
    check_columns(t, name, {TIME: PRICES[TIME], "underlying": PRICES["underlying"],
                            value: ("float", True, False)})
    ns = time_column(t, name, TIME)
    level = float_column(t, name, value, positive=True)
    und, dictionary = codes(str_column(t, "underlying"))
    # times strictly increasing per underlying, in the table's order
    order = np.lexsort((np.arange(len(ns)), und))
    same = und[order][1:] == und[order][:-1]
    step = np.diff(ns[order])
    for bad, what in ((same & (step == 0), "one row per (underlying, time): a duplicate time"),
                      (same & (step < 0), "times increasing per underlying (sort the table by "
                       "time): a time earlier than the row before it")):
        if bad.any():
            mask = np.zeros(len(ns), dtype=bool)
            mask[order[1:][bad]] = True
            raise_rows(t, name, TIME, mask, what)
    names_all = dictionary.to_pylist()
    if underlyings is not None:
        wanted = _underlyings(underlyings)
        unknown = [u for u in wanted if u not in names_all]
        if unknown:
            raise MarginError(name, "underlying", f"prices for every underlying asked for; no "
                              f"row for {unknown}", rows=[(u,) for u in unknown],
                              keys=("underlying",), hint=f"Underlyings in {name}: {names_all}")
    else:
        wanted = sorted(names_all)
    keep = np.isin(und, [names_all.index(u) for u in wanted])
    if cut is not None:
        keep &= (ns <= cut[0]) if cut[1] else (ns < cut[0])
    ns, level, und = ns[keep], level[keep], und[keep]
    bucket = ns // interval_ns
    # every interval from the first to the last, those without a price empty (NaN): no return
    # into or out of them, so a move across a gap is never taken for a one-interval return
    first = int(bucket.min()) if len(bucket) else 0
    n_grid = int(bucket.max()) - first + 1 if len(bucket) else 0
    if n_grid > MAX_INTERVALS:
        raise MarginError(name, TIME, f"at most {MAX_INTERVALS:,} intervals from the first row "
                          f"to the last, got {n_grid:,}", hint="Give a longer interval or a "
                          "shorter history")
    g = bucket - first
    grid = np.arange(first, first + n_grid)
    col = np.full(len(names_all), -1, dtype=np.int64)
    col[[names_all.index(u) for u in wanted]] = np.arange(len(wanted))
    out = np.full((len(grid), len(wanted)), np.nan)
    o = np.lexsort((ns, und))                      # per underlying, in time order
    last_row = np.r_[(und[o][1:] != und[o][:-1]) | (bucket[o][1:] != bucket[o][:-1]), True] \
        if len(o) else np.zeros(0, dtype=bool)
    rows = o[last_row]                             # the last row of each (underlying, bucket)
    out[g[rows], col[und[rows]]] = level[rows]
    last = (grid + 1) * interval_ns - 1            # an empty interval: its end
    have = np.zeros(len(grid), dtype=bool)
    have[g] = True
    last[have] = np.iinfo(np.int64).min
    np.maximum.at(last, g, ns)
    return _Grid(wanted, out, last, cut)


def _underlyings(underlyings):
    """``underlyings`` as a list: one name or a sequence of distinct names, at least one."""
    wanted = [underlyings] if isinstance(underlyings, str) else underlyings
    if not isinstance(wanted, (list, tuple)) or not wanted or \
            not all(isinstance(u, str) for u in wanted):
        raise MarginError("arguments", "underlyings", "a name or a non-empty list of names "
                          f"(default None: every underlying in prices), got {underlyings!r}")
    dup = sorted({u for u in wanted if wanted.count(u) > 1})
    if dup:
        raise MarginError("arguments", "underlyings", f"each underlying once, got {dup} more "
                          "than once", rows=[(u,) for u in dup], keys=("underlying",))
    return list(wanted)


def _seed_check(grid, ok, seed_obs, name):
    """Every underlying and pair has at least 2 returns in the seed rows, and there are more
    than ``seed_obs`` intervals."""
    n_ret = len(ok)
    expect = (f"at least seed_obs + 1 = {seed_obs + 1} intervals with prices, with 2 or more "
              f"returns of every underlying (and pair) among the first {seed_obs} (the EWMA "
              "seed)")
    few = [u for j, u in enumerate(grid.names) if n_ret < seed_obs or ok[:seed_obs, j].sum() < 2]
    if not grid.names:                     # no row at all (up to as_of)
        raise MarginError(name, TIME, expect + "; the history has no rows" + (
            "" if grid.cut is None else f" up to {iso_ns(grid.cut[0])}"),
            hint="Give a longer history, a shorter interval or a smaller seed_obs")
    if few:
        have = {u: int(np.isfinite(grid.level[:, j]).sum()) for j, u in enumerate(grid.names)}
        raise MarginError(name, TIME, expect + f"; intervals with prices: {have}",
                          rows=[(u,) for u in few], keys=("underlying",),
                          hint="Give a longer history, a shorter interval or a smaller seed_obs")
    d = len(grid.names)
    for i in range(d):
        for j in range(i + 1, d):
            if (ok[:seed_obs, i] & ok[:seed_obs, j]).sum() < 2:
                pair = (grid.names[i], grid.names[j])
                raise MarginError(name, TIME, expect + f"; the pair {pair} has fewer than 2 "
                                  "common returns there", rows=[pair], keys=("underlying",
                                                                             "underlying"),
                                  hint="Give a longer history or a smaller seed_obs")


# -- the estimate ----------------------------------------------------------------------------

class _Estimate:
    """Everything one calibration computes (arrays over ``names``)."""


def _check_args(lam, horizon, k_sigma, seed_obs, quantile, method):
    if method not in METHODS:
        raise MarginError("arguments", "method", f"one of {METHODS}, got {method!r}")
    checks = (("lam", lam, lambda v: 0.0 < v < 1.0, "a number in (0, 1)"),
              ("k_sigma", k_sigma, lambda v: 0.0 < v < 1e3, "a number > 0 and below 1000"),
              ("quantile", quantile, lambda v: 0.5 < v < 1.0, "a number in (0.5, 1)"))
    for what, v, ok, expected in checks:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not math.isfinite(v) or not ok(v):
            raise MarginError("arguments", what, f"{expected}, got {v!r}")
    for what, v, lo in (("horizon", horizon, 1), ("seed_obs", seed_obs, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise MarginError("arguments", what, f"a whole number >= {lo}, got {v!r}")


def _floors(floors, names):
    if floors is None:
        return np.zeros(len(names))
    if isinstance(floors, dict):
        unknown = [k for k in floors if k != "default" and k not in names]
        if unknown:
            raise MarginError("arguments", "floors", f"underlyings being calibrated "
                              f"({names}) or \"default\", got {unknown}")
        vals = [floors.get(u, floors.get("default", 0.0)) for u in names]
    else:
        vals = [floors] * len(names)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not (0.0 <= v < 1.0):
            raise MarginError("arguments", "floors", f"a number in [0, 1) or a dict of them "
                              f"per underlying, got {floors!r}")
    return np.array(vals, dtype=np.float64)


def _estimate(grid, lam, seed_obs, horizon, k_sigma, method, quantile, name):
    r, ok = grid.returns()
    _seed_check(grid, ok, seed_obs, name)
    var_path = ewma_variance(r, ok, float(lam), int(seed_obs))
    cov, used = ewma_covariance(r, ok, float(lam), int(seed_obs))
    e = _Estimate()
    e.var_path = var_path
    e.sigma = np.sqrt(var_path[-1])
    e.cov, e.used = cov, used
    if method == "ewma":
        e.log_move = k_sigma * e.sigma * math.sqrt(horizon)
    else:
        e.log_move = np.array([_fhs(grid, var_path, seed_obs, horizon, quantile, j,
                                    len(grid.level) - 1, name)
                               for j in range(len(grid.names))])
    return e


def _fhs(grid, var_path, seed_obs, horizon, quantile, j, p_now, name):
    """FHS quantile for column j with information up to price row ``p_now``: moves from rows
    p >= seed_obs with p + h <= p_now, rescaled by sigma(p_now) / sigma(p)."""
    level = grid.level[:, j]
    p = np.arange(seed_obs, p_now - horizon + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        moves = np.log(level[p + horizon] / level[p]) if len(p) else np.zeros(0)
    sig = np.sqrt(var_path[p - seed_obs, j]) if len(p) else np.zeros(0)
    good = np.isfinite(moves) & (sig > 0)
    if not good.any():
        raise MarginError(name, TIME, f"at least one {horizon}-interval move after the EWMA "
                          f"seed ({seed_obs} returns) for method=\"historical\"",
                          rows=[(grid.names[j],)], keys=("underlying",),
                          hint="Give a longer history or a smaller seed_obs")
    return fhs_quantile(moves[good], sig[good], math.sqrt(var_path[p_now - seed_obs, j]),
                        quantile)


def _vol_ranges(iv, names, interval_ns, cut, horizon, quantile):
    """``{underlying: {volatility_range_up, volatility_range_down, vol_scan_range}}`` from
    the h-interval changes of ``mark_iv``: relative (up: the ``quantile``, down: minus the
    ``1 - quantile`` quantile) and absolute (vol points: the larger of the two tails)."""
    g = _history(iv, "iv", "mark_iv", interval_ns, cut)
    unknown = [u for u in g.names if u not in names]
    if unknown:
        raise MarginError("iv", "underlying", f"underlyings being calibrated ({names}), got "
                          f"{unknown}", rows=[(u,) for u in unknown], keys=("underlying",))
    pct = [u for j, u in enumerate(g.names) if np.nanmax(g.level[:, j], initial=0.0) > 5.0]
    if pct:
        raise MarginError("iv", "mark_iv", "implied vols as decimals (0.55 for 55 %), got "
                          "values above 5", rows=[(u,) for u in pct], keys=("underlying",),
                          hint="Divide a percentage column by 100")
    out = {}
    short = len(g.level) <= horizon
    rel = np.zeros((0, len(g.names))) if short else g.level[horizon:] / g.level[:-horizon] - 1
    pts = np.zeros((0, len(g.names))) if short else g.level[horizon:] - g.level[:-horizon]
    for j, u in enumerate(g.names):
        ok = np.isfinite(rel[:, j])
        if ok.sum() < 2:
            raise MarginError("iv", TIME, f"at least 2 {horizon}-interval changes of mark_iv "
                              "per underlying", rows=[(u,)], keys=("underlying",))
        c, a = rel[ok, j], pts[ok, j]
        out[u] = {"volatility_range_up": max(float(np.quantile(c, quantile)), 0.0),
                  "volatility_range_down": min(max(-float(np.quantile(c, 1.0 - quantile)),
                                                   0.0), 0.99),
                  "vol_scan_range": max(float(np.quantile(a, quantile)),
                                        -float(np.quantile(a, 1.0 - quantile)), 0.0)}
    return out


def _correlations(names, cov, repair, name):
    """``(rho used, rho estimated)`` over ``names``; not PSD: refused or repaired."""
    d = len(names)
    s = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        est = cov / np.outer(s, s)
    est = np.where(np.isfinite(est), est, 0.0)
    np.fill_diagonal(est, 1.0)
    if d < 2:
        return est, est
    section = {f"{names[i]},{names[j]}": float(est[i, j])
               for i in range(d) for j in range(i + 1, d)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorrelationRepaired)
            cm = correlation_matrix(names, {"correlations": section}, repair=repair)
    except MarginError as exc:
        raise MarginError(name, "index_price", "price histories whose EWMA correlation "
                          f"estimate is positive semidefinite ({exc})",
                          hint="Gaps in one underlying's prices give pairs estimated over "
                          "different intervals; fill the gaps, or pass repair=\"nearest\" (or "
                          "set repair = \"nearest\" in the base model's [correlations]) for "
                          "Higham's nearest correlation matrix") from None
    if cm.changes:
        worst = max(abs(a - b) for _, a, b in cm.changes)
        warnings.warn(f"the EWMA correlation estimate over {names} was not positive "
                      f"semidefinite; replaced by the nearest correlation matrix, "
                      f"{len(cm.changes)} pairs changed, largest change {worst:.6g}",
                      CorrelationRepaired, stacklevel=4)
    return cm.matrix, est


# -- the entry points --------------------------------------------------------------------------

def calibrate(prices, base_model="standard", method="ewma", lam=0.94, interval="1d", horizon=1,
              k_sigma=3.0, floors=None, as_of=None, seed_obs=30, quantile=0.99, iv=None,
              underlyings=None, repair=None):
    """Calibrate price ranges, vol shocks and correlations from a price history.

    Parameters
    ----------
    prices : Arrow table-like
        ``time, underlying, index_price``: times strictly increasing per underlying (the
        index table of a backtest history is one).
    base_model : str, dict, path or Model
        The model whose keys are replaced (default ``standard``).
    method : {"ewma", "historical"}
        ``"ewma"``: the range is a ``k_sigma`` log move of the EWMA volatility;
        ``"historical"``: the ``quantile`` of the filtered-historical h-interval log moves.
    lam : float
        EWMA decay (0.94: RiskMetrics daily; 0.97 monthly; 0.99 in some CCPs).
    interval : str
        The return interval: ``"1d"``, ``"4h"``, ``"15m"``, ... (the last price per interval).
    horizon : int
        Intervals the range must cover (the margin period of risk), ``h``.
    k_sigma : float
        Standard deviations of the range (3: 99.7 % two-sided for normal returns).
    floors : float or dict, optional
        Lowest ``price_range``: one number, or ``{"BTC": 0.08, "default": 0.1}``.
    as_of : datetime or str, optional
        Use rows with ``time <= as_of`` only (no look-ahead).
    seed_obs : int
        Returns that seed the EWMA with their sample (co)variance (default 30).
    quantile : float
        The historical method's quantile and the vol shocks' (default 0.99).
    iv : Arrow table-like, optional
        ``time, underlying, mark_iv`` (a decimal) of an at-the-money implied vol per
        underlying: calibrates ``volatility_range_up`` / ``volatility_range_down`` (or
        ``vol_scan_range`` where the model's ``vol_shock`` is ``"absolute"``).
    underlyings : list of str, optional
        Calibrate these only (default every underlying in ``prices``).
    repair : {"none", "nearest"}, optional
        A correlation estimate that is not positive semidefinite: replaced by the nearest
        correlation matrix (the default, with a ``CorrelationRepaired`` warning) or refused
        (``"none"``); default the base model's ``correlations.repair`` when it sets one.  An
        explicit ``"nearest"`` is also written into the calibrated model (the matrix of a
        book whose underlyings mix calibrated pairs with the base model's other pairs or
        default is then repaired at margin time too).

    Returns
    -------
    (Model, pyarrow.Table)
        The base model with the calibrated keys replaced, and the report: one row per
        underlying (``kind = "underlying"``: sigma, sigma_annualised, range_up, range_down,
        price_range, floor_hit, extreme_move, and the vol ranges when ``iv`` is given) then
        one per pair (``kind = "pair"``: underlying, other, rho, rho_estimate); columns that
        do not apply to a row are null.  Annualised volatility assumes trading every day of
        365.

    Raises
    ------
    MarginError
        Bad prices (nulls, prices <= 0, unsorted or duplicate times: naming the rows), an
        underlying not in ``prices``, too few intervals for ``seed_obs``, a correlation
        estimate that is not positive semidefinite with ``repair = "none"``, or a range the
        model rejects.

    Examples
    --------
    >>> import pmrisk
    >>> from pmrisk import samples
    >>> model, report = pmrisk.calibrate(samples.prices(), as_of="2024-04-01")  # calm regime
    >>> [(r["underlying"], round(r["sigma_annualised"], 2), round(r["price_range"], 4))
    ...  for r in report.to_pylist() if r["kind"] == "underlying"]
    [('BTC', 0.43, 0.0693), ('ETH', 0.55, 0.0901), ('SOL', 0.61, 0.1)]
    >>> model.underlying("BTC")["price_range"] == report["price_range"][0].as_py()
    True
    >>> [(r["underlying"], r["other"], round(r["rho"], 2)) for r in report.to_pylist()
    ...  if r["kind"] == "pair"]
    [('BTC', 'ETH', 0.79), ('BTC', 'SOL', 0.44), ('ETH', 'SOL', 0.61)]
    """
    cut = None if as_of is None else (to_ns(as_of, "as_of"), True)
    return _calibrate(prices, base_model, method, lam, interval, horizon, k_sigma, floors, cut,
                      seed_obs, quantile, iv, underlyings, repair)


def _calibrate(prices, base_model, method, lam, interval, horizon, k_sigma, floors, cut,
               seed_obs, quantile, iv, underlyings, repair):
    base = Model.coerce(base_model)
    _check_args(lam, horizon, k_sigma, seed_obs, quantile, method)
    interval_ns = parse_interval(interval)
    asked = repair if repair is not None else base["correlations"].get("repair")
    if asked not in (None, "none", "nearest"):
        raise MarginError("arguments", "repair", f"\"none\" or \"nearest\", got {repair!r}")
    repair = asked or "nearest"         # SPEC 16: the estimate is repaired unless refused
    grid = _history(prices, "prices", "index_price", interval_ns, cut, underlyings)
    names = grid.names
    floor = _floors(floors, names)
    e = _estimate(grid, lam, seed_obs, horizon, k_sigma, method, quantile, "prices")
    up, down = log_ranges(e.sigma, k_sigma, horizon) if method == "ewma" else \
        log_ranges(e.log_move, 1.0, 1)
    price_range = np.maximum(floor, up)
    rho, est = _correlations(names, e.cov, repair, "prices")
    shocks = {} if iv is None else _vol_ranges(iv, names, interval_ns, cut, horizon,
                                               quantile)
    over = {}
    for j, u in enumerate(names):
        sec = {"price_range": float(price_range[j])}
        if u in shocks:                   # the keys the model's vol shock reads
            keys = ("vol_scan_range",) if base.underlying(u)["vol_shock"] == "absolute" \
                else ("volatility_range_up", "volatility_range_down")
            sec.update({k: shocks[u][k] for k in keys})
        over[u] = sec
    d = len(names)
    if d > 1:
        over["correlations"] = {f"{names[i]},{names[j]}": float(rho[i, j])
                                for i in range(d) for j in range(i + 1, d)}
        if asked == "nearest":          # asked for: the margin-time matrix is repaired too
            over["correlations"]["repair"] = "nearest"
    try:
        model = base.with_overrides(over)
    except MarginError as exc:
        hint = ("The calibrated pairs, the base model's other pairs and its default "
                "correlation together are not positive semidefinite: calibrate every "
                "underlying the base model's [correlations] names, or pass repair=\"nearest\""
                if str(exc.column).startswith("correlations") else
                "Lower k_sigma or horizon, or use a base model whose extreme_multiple x "
                "price_range stays below 1")
        raise MarginError("prices", "index_price", f"a history whose calibrated parameters "
                          f"the model accepts ({exc})", hint=hint) from None
    as_of_ns = int(grid.last[-1])
    ann = math.sqrt(YEAR_NS / interval_ns)
    rows = []
    for j, u in enumerate(names):
        rows.append({
            "kind": "underlying", "underlying": u, "other": None, "as_of": as_of_ns,
            "observations": int(e.used[j, j]), "sigma": float(e.sigma[j]),
            "sigma_annualised": float(e.sigma[j] * ann), "range_up": float(up[j]),
            "range_down": float(down[j]), "price_range": float(price_range[j]),
            "floor_hit": bool(floor[j] > up[j]),
            "extreme_move": float(model.underlying(u)["extreme_multiple"] * price_range[j]),
            **{k: shocks.get(u, {}).get(k) for k in ("volatility_range_up",
                                                     "volatility_range_down",
                                                     "vol_scan_range")},
            "rho": None, "rho_estimate": None})
    for i in range(d):
        for j in range(i + 1, d):
            rows.append({"kind": "pair", "underlying": names[i], "other": names[j],
                         "as_of": as_of_ns, "observations": int(e.used[i, j]),
                         "rho": float(rho[i, j]), "rho_estimate": float(est[i, j])})
    report = pa.Table.from_pylist(rows, schema=REPORT_SCHEMA)
    meta = {"method": method, "lam": repr(float(lam)), "interval": str(interval),
            "horizon": str(int(horizon)), "k_sigma": repr(float(k_sigma)),
            "seed_obs": str(int(seed_obs)), "quantile": repr(float(quantile))}
    return model, report.replace_schema_metadata(meta)


_KWARGS = [p for p in inspect.signature(calibrate).parameters if p not in ("prices", "as_of")]


def volatility_paths(prices, lam=0.94, interval="1d", seed_obs=30, underlyings=None,
                     as_of=None):
    """The EWMA volatility per interval over time, for plots: a table ``time, underlying,
    sigma, log_return`` (time: the last price time of the interval; sigma: the estimate
    including that interval's return, the first row of each underlying being the seed;
    log_return: the interval's return, null across a gap).

    >>> from pmrisk.model.calibration import volatility_paths
    >>> from pmrisk import samples
    >>> t = volatility_paths(samples.prices(days=60))
    >>> t.column_names, t.num_rows == 3 * (60 - 30)
    (['time', 'underlying', 'sigma', 'log_return'], True)
    """
    _check_args(lam, 1, 3.0, seed_obs, 0.99, "ewma")
    interval_ns = parse_interval(interval)
    cut = None if as_of is None else (to_ns(as_of, "as_of"), True)
    grid = _history(prices, "prices", "index_price", interval_ns, cut, underlyings)
    r, ok = grid.returns()
    _seed_check(grid, ok, seed_obs, "prices")
    path = np.sqrt(ewma_variance(r, ok, float(lam), int(seed_obs)))
    times = grid.last[seed_obs:]
    n, d = path.shape
    ret = r[seed_obs - 1:]
    return pa.table({"time": pa.array(np.repeat(times, d), TIME_TYPE),
                     "underlying": pa.array(grid.names * n, pa.string()),
                     "sigma": pa.array(path.ravel(), pa.float64()),
                     "log_return": pa.array(ret.ravel(), pa.float64(),
                                            mask=~ok[seed_obs - 1:].astype(bool).ravel())})


def exceedances(prices, method="ewma", lam=0.94, interval="1d", horizon=1, k_sigma=3.0,
                floors=None, seed_obs=30, quantile=0.99, underlyings=None, as_of=None,
                expected_rate=None):
    """How often the realised h-interval move left the calibrated range, per underlying, with
    Kupiec's proportion-of-failures test.

    At every interval end p after the seed, the range is calibrated from prices up to p only
    (the EWMA volatility then, or the historical quantile of the moves completed by then);
    the realised move is ``P_{p+h} / P_p - 1`` and it exceeds when above ``max(floor,
    range_up)`` or below ``-max(floor, range_down)``.  Kupiec's statistic
    ``LR = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x]`` is chi-square with 1
    degree of freedom under a correct rate p; the p-value is ``erfc(sqrt(LR/2))``.  With
    ``horizon > 1`` consecutive windows overlap, so the test is only indicative.

    Parameters
    ----------
    prices, method, lam, interval, horizon, k_sigma, floors, seed_obs, quantile, underlyings,
    as_of
        As for :func:`calibrate`.
    expected_rate : float, optional
        The exceedance rate of a correct range (default: ``erfc(k_sigma/sqrt(2))``, a
        two-sided normal tail, for ``"ewma"``; ``1 - quantile`` for ``"historical"``).

    Returns
    -------
    pyarrow.Table
        Per underlying: ``observations``, ``exceedances`` (``up``, ``down``), ``rate``,
        ``expected_rate``, ``kupiec_lr``, ``p_value``.

    Examples
    --------
    >>> from pmrisk.model.calibration import exceedances
    >>> from pmrisk import samples
    >>> t = exceedances(samples.prices(days=200))
    >>> t.column_names[:4], t.num_rows
    (['underlying', 'observations', 'exceedances', 'up'], 3)
    """
    _check_args(lam, horizon, k_sigma, seed_obs, quantile, method)
    interval_ns = parse_interval(interval)
    cut = None if as_of is None else (to_ns(as_of, "as_of"), True)
    grid = _history(prices, "prices", "index_price", interval_ns, cut, underlyings)
    r, ok = grid.returns()
    _seed_check(grid, ok, seed_obs, "prices")
    var_path = ewma_variance(r, ok, float(lam), int(seed_obs))
    floor = _floors(floors, grid.names)
    if expected_rate is None:
        expected_rate = math.erfc(k_sigma / math.sqrt(2.0)) if method == "ewma" \
            else 1.0 - quantile
    if not (isinstance(expected_rate, (int, float)) and 0.0 < expected_rate < 1.0):
        raise MarginError("arguments", "expected_rate", f"a number in (0, 1), got "
                          f"{expected_rate!r}")
    G = len(grid.level)
    rows = []
    for j, u in enumerate(grid.names):
        n = x_up = x_down = 0
        for p in range(seed_obs, G - horizon):
            now, later = grid.level[p, j], grid.level[p + horizon, j]
            if not (np.isfinite(now) and np.isfinite(later)):
                continue
            if method == "ewma":
                move = k_sigma * math.sqrt(var_path[p - seed_obs, j]) * math.sqrt(horizon)
            else:
                if p - horizon < seed_obs:
                    continue                # no completed move to take a quantile of yet
                move = _fhs(grid, var_path, seed_obs, horizon, quantile, j, p, "prices")
            rel = later / now - 1.0
            n += 1
            if rel > max(floor[j], math.expm1(move)):
                x_up += 1
            elif rel < -max(floor[j], -math.expm1(-move)):
                x_down += 1
        x = x_up + x_down
        lr, pv = kupiec(n, x, expected_rate)
        rows.append({"underlying": u, "observations": n, "exceedances": x, "up": x_up,
                     "down": x_down, "rate": x / n if n else None,
                     "expected_rate": float(expected_rate), "kupiec_lr": lr, "p_value": pv})
    schema = pa.schema([("underlying", pa.string()), ("observations", pa.int64()),
                        ("exceedances", pa.int64()), ("up", pa.int64()), ("down", pa.int64()),
                        ("rate", pa.float64()), ("expected_rate", pa.float64()),
                        ("kupiec_lr", pa.float64()), ("p_value", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def kupiec(n, x, p):
    """Kupiec's proportion-of-failures likelihood ratio for x exceedances in n trials at a
    correct rate p, and its chi-square(1) p-value ``erfc(sqrt(LR/2))``; ``(None, None)``
    when n = 0.

    >>> from pmrisk.model.calibration import kupiec
    >>> lr, pv = kupiec(250, 2, 0.01)
    >>> round(lr, 4), round(pv, 4)
    (0.1084, 0.7419)
    """
    if n == 0:
        return None, None

    def xlogy(a, b):
        return 0.0 if a == 0 else a * math.log(b)
    lr = -2.0 * (xlogy(n - x, 1.0 - p) + xlogy(x, p)) \
        + 2.0 * (xlogy(n - x, 1.0 - x / n) + xlogy(x, x / n))
    lr = max(lr, 0.0)
    return lr, math.erfc(math.sqrt(lr / 2.0))


class CalibrationSchedule:
    """Recalibrate a backtest's model on a schedule, from prices strictly before each
    snapshot: ``pmrisk.backtest(..., calibrate=CalibrationSchedule(prices, every="1d"))`` or
    ``calibrate={"prices": prices, "every": "1d", ...}``.

    The history is cut into periods of ``every`` (aligned to 1970-01-01 UTC); every snapshot
    in the period starting at ``b`` is margined with the model :func:`calibrate` gives from
    the rows of ``prices`` with ``time < b`` (and the backtest's model as the base model
    unless ``base_model`` is given): a snapshot later in the period sees no price from ``b``
    on, not even those before it.  Other keyword arguments are :func:`calibrate`'s.
    A period without enough history before it is an error naming it.

    ``max_age`` (an interval such as ``"3d"``; default three periods of ``every``) bounds how
    old the last price of a period's calibration may be: a period starting more than
    ``max_age`` after the last price before it is an error naming the period start and that
    price's time, so that a history that ends (or has a hole) never margins later snapshots
    with stale ranges silently.  ``prices`` is a table; ``pmrisk.backtest(...,
    calibrate={"prices": PATH, ...})`` also reads a Parquet file or dataset directory.

    >>> import numpy as np
    >>> from pmrisk.model.calibration import CalibrationSchedule
    >>> from pmrisk import samples
    >>> s = CalibrationSchedule(samples.prices(days=60), every="1d")
    >>> m = s.model_before(s.period_start(np.datetime64("2024-02-15T12:00", "ns")
    ...                    .astype(np.int64)), "standard")
    >>> round(m.underlying("BTC")["price_range"], 3) > 0
    True
    """

    def __init__(self, prices, every="1d", max_age=None, **kwargs):
        check_kwargs(kwargs, ())
        self.prices = as_table(prices, "prices")
        if self.prices is None:
            raise MarginError("prices", None, "a table (time, underlying, index_price)")
        self.every_ns = parse_interval(every, "every")
        self.max_age_ns = 3 * self.every_ns if max_age is None else \
            parse_interval(max_age, "max_age")
        self._max_age = f"3 x every = 3 x {every}" if max_age is None else str(max_age)
        self.kwargs = kwargs
        self._cache = {}
        self.reports = {}         # period start (ns) -> the report of its calibration

    def period_start(self, ns):
        """The start of the period ``ns`` (nanoseconds since the epoch, UTC) falls in."""
        return (int(ns) // self.every_ns) * self.every_ns

    def model_before(self, start, base_model):
        """The model for the period starting at ``start`` (ns): calibrated from prices with
        ``time < start``."""
        if start not in self._cache:
            kw = dict(self.kwargs)
            base = kw.pop("base_model", base_model)
            args = {k: kw.get(k, inspect.signature(calibrate).parameters[k].default)
                    for k in _KWARGS if k != "base_model"}
            try:
                model, report = _calibrate(self.prices, base, cut=(int(start), False), **args)
            except MarginError as exc:
                exc.args = (f"{exc.args[0]} (recalibrating for the snapshots from "
                            f"{pa.scalar(int(start), TIME_TYPE).as_py().isoformat()}, from "
                            "prices strictly before)",)
                raise
            last = int(report["as_of"][0].value)
            if int(start) - last > self.max_age_ns:
                raise MarginError(
                    "prices", TIME, f"a price within max_age ({self._max_age})"
                    f" before the snapshots from {iso_ns(start)}; the last price before them "
                    f"is at {iso_ns(last)}, {(int(start) - last) / NS['d']:.1f} days earlier",
                    hint="Give prices up to the backtest's snapshots, or a longer max_age "
                    "(e.g. max_age=\"30d\") to margin with older ranges on purpose")
            self._cache[start] = model
            self.reports[start] = report
        return self._cache[start]


def check_kwargs(kwargs, extra, context="every, max_age"):
    """Keyword arguments meant for :func:`calibrate` (``prices`` and ``as_of`` aside) or among
    ``extra``: anything else is a :class:`MarginError` listing them (and ``context``, the
    caller's own arguments).

    >>> from pmrisk.model.calibration import check_kwargs
    >>> check_kwargs({"lam": 0.97}, ())
    >>> check_kwargs({"lamda": 0.97}, ("as_of",), "at")
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: arguments.calibrate: expected calibrate's keyword arguments \
(base_model, method, lam, interval, horizon, k_sigma, floors, seed_obs, quantile, iv, \
underlyings, repair, as_of) and at, got ['lamda']
    """
    names = _KWARGS + [k for k in extra if k not in _KWARGS]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise MarginError("arguments", "calibrate", f"calibrate's keyword arguments "
                          f"({', '.join(names)}) and {context}, got {unknown}")

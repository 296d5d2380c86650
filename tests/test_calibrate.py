"""pmrisk.calibrate: EWMA kernels equal their plain-Python twins, estimates recover known
sigma and rho, the Varma log ranges, FHS and vol shocks, PSD repair or refusal, no look-ahead
(calibrate's as_of and the recalibrated backtest), calibrated models through margin(), Monitor
and backtest, exceedances with Kupiec's test, bad inputs, the CLI (TOML round trip, plot)."""

import math
import tomllib
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pmrisk
from pmrisk import CorrelationRepaired, MarginError, samples
from pmrisk.model import toml as model_toml
from pmrisk.model.calibration import (CalibrationSchedule, kupiec, log_ranges, parse_interval,
                                      volatility_paths)
from pmrisk.cli.commands import main
from pmrisk.kernel.correlation import min_eigenvalue
from pmrisk.kernel.ewma import ewma_covariance, ewma_variance, fhs_quantile

import oracles

DAY = 86_400 * 10**9
T0 = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64)


def price_table(level, names, step=DAY, t0=T0, missing=None):
    """A prices table from levels float[G, d] (NaN or ``missing[g, j]``: no row)."""
    rows = {"time": [], "underlying": [], "index_price": []}
    for g in range(level.shape[0]):
        for j, u in enumerate(names):
            if np.isnan(level[g, j]) or (missing is not None and missing[g, j]):
                continue
            rows["time"].append(int(t0 + g * step))
            rows["underlying"].append(u)
            rows["index_price"].append(float(level[g, j]))
    return pa.table({"time": pa.array(rows["time"], pa.timestamp("ns", tz="UTC")),
                     "underlying": pa.array(rows["underlying"]),
                     "index_price": pa.array(rows["index_price"], pa.float64())})


def simulate(sigma, rho, n, seed):
    """Gaussian log returns with daily vols ``sigma`` and correlation matrix ``rho``."""
    rng = np.random.default_rng(seed)
    cov = np.asarray(rho) * np.outer(sigma, sigma)
    r = rng.standard_normal((n, len(sigma))) @ np.linalg.cholesky(cov).T
    return 100.0 * np.exp(np.vstack([np.zeros((1, len(sigma))), np.cumsum(r, axis=0)]))


# -- kernels against the plain-Python twins ------------------------------------------------

@settings(max_examples=25)
@given(seed=st.integers(0, 2**31), lam=st.floats(0.8, 0.999), seed_obs=st.integers(2, 20),
       gaps=st.floats(0.0, 0.3))
def test_ewma_kernels_equal_plain_python(seed, lam, seed_obs, gaps):
    rng = np.random.default_rng(seed)
    T, d = 60, 3
    r = rng.standard_normal((T, d)) * 0.03
    ok = (rng.random((T, d)) >= gaps).astype(np.int64)
    ok[:seed_obs] = 1                                  # the seed has its 2 returns per pair
    r = np.where(ok == 1, r, 0.0)
    got = ewma_variance(r, ok, lam, seed_obs)
    want = oracles.ewma_variance(r.tolist(), ok.tolist(), lam, seed_obs)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    cov, used = ewma_covariance(r, ok, lam, seed_obs)
    cov_o, used_o = oracles.ewma_covariance(r.tolist(), ok.tolist(), lam, seed_obs)
    np.testing.assert_allclose(cov, cov_o, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(used, used_o)
    np.testing.assert_allclose(np.diag(cov), got[-1], rtol=1e-15, atol=0)


def test_fhs_quantile_equals_plain_python():
    rng = np.random.default_rng(3)
    moves, then = rng.standard_normal(101) * 0.02, rng.uniform(0.01, 0.05, 101)
    for q in (0.5, 0.9, 0.99, 0.999):
        assert fhs_quantile(moves, then, 0.03, q) == pytest.approx(
            oracles.fhs_quantile(moves, then, 0.03, q), rel=1e-14)


def test_calibrate_sigma_is_the_kernel_recursion_on_resampled_prices():
    """Prices every 6 hours resample to the last of each day; sigma is the EWMA of the daily
    log returns seeded with their sample variance (the twin, by hand)."""
    level = simulate([0.02, 0.03], [[1, 0.5], [0.5, 1]], 4 * 80 - 1, 1)
    t = price_table(level, ["BTC", "ETH"], step=DAY // 4)
    model, rep = pmrisk.calibrate(t, lam=0.9, seed_obs=10)
    daily = level[3::4]
    r = np.log(daily[1:] / daily[:-1])
    v = np.var(r[:10], axis=0, ddof=1)
    c = np.cov(r[:10].T, ddof=1)[0, 1]
    for x in r[10:]:
        v = 0.9 * v + 0.1 * x**2
        c = 0.9 * c + 0.1 * x[0] * x[1]
    und = rep.filter(pc.equal(rep["kind"], "underlying"))
    np.testing.assert_allclose(und["sigma"].to_numpy(), np.sqrt(v), rtol=1e-12)
    pair = rep.filter(pc.equal(rep["kind"], "pair")).to_pylist()[0]
    assert pair["rho"] == pytest.approx(c / math.sqrt(v[0] * v[1]), rel=1e-12)
    assert model["correlations"]["BTC,ETH"] == pair["rho"]
    up, down = log_ranges(np.sqrt(v), 3.0, 1)
    assert model.underlying("BTC")["price_range"] == pytest.approx(up[0], rel=1e-14)
    np.testing.assert_allclose(und["range_down"].to_numpy(), down, rtol=1e-14)
    ann = und["sigma_annualised"].to_numpy() / und["sigma"].to_numpy()
    np.testing.assert_allclose(ann, math.sqrt(365.0))


def test_an_interval_without_any_price_leaves_both_returns_out():
    """A day on which no underlying has a price (a data outage) is a gap: the two-day move
    across it is not a daily return (SPEC 16: prices resampled to the interval), so sigma is
    the recursion over the returns of consecutive days only, the seed over the days before."""
    level = simulate([0.02, 0.03], [[1, 0.5], [0.5, 1]], 60, 3)
    missing = np.zeros(level.shape, dtype=bool)
    missing[40] = True                              # day 40: no row at all
    model, rep = pmrisk.calibrate(price_table(level, ["BTC", "ETH"], missing=missing),
                                  lam=0.94, seed_obs=10)
    r = np.log(level[1:] / level[:-1])
    v = np.var(r[:10], axis=0, ddof=1)
    c = np.cov(r[:10].T, ddof=1)[0, 1]
    for t in range(10, len(r)):
        if t in (39, 40):                           # into and out of day 40
            continue
        v = 0.94 * v + 0.06 * r[t] ** 2
        c = 0.94 * c + 0.06 * r[t, 0] * r[t, 1]
    und = rep.filter(pc.equal(rep["kind"], "underlying"))
    np.testing.assert_allclose(und["sigma"].to_numpy(), np.sqrt(v), rtol=1e-12)
    assert und["observations"].to_pylist() == [len(r) - 2] * 2
    pair = rep.filter(pc.equal(rep["kind"], "pair")).to_pylist()[0]
    assert pair["rho"] == pytest.approx(c / math.sqrt(v[0] * v[1]), rel=1e-12)


def test_a_grid_too_long_is_refused():
    """Two prices 100 years apart at 1-second intervals: the grid would have 3e9 rows."""
    t = pa.table({"time": pa.array([0, 100 * 365 * 86_400 * 10**9], pa.timestamp("ns", "UTC")),
                  "underlying": ["BTC", "BTC"], "index_price": [1.0, 2.0]})
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(t, interval="1s")
    assert (exc.value.table, exc.value.column) == ("prices", "time") and "interval" in str(
        exc.value)


# -- estimates recover known sigma and rho ----------------------------------------------------

@settings(max_examples=20)
@given(s1=st.floats(0.005, 0.08), s2=st.floats(0.005, 0.08), rho=st.floats(-0.9, 0.95),
       lam=st.floats(0.97, 0.995), seed=st.integers(0, 2**31))
def test_estimates_within_sampling_tolerance(s1, s2, rho, lam, seed):
    """On Gaussian returns with known sigma and rho the EWMA estimate after the seed is
    forgotten has an effective sample of n = (1 + lam) / (1 - lam) returns: the relative
    error of sigma has a standard deviation of about sqrt(1 / (2 n)) and rho's about
    (1 - rho^2) / sqrt(n).  Tolerance: 6 of those (a false alarm about once in 10^8)."""
    n_eff = (1 + lam) / (1 - lam)
    n = 30 + int(25 / (1 - lam))
    level = simulate([s1, s2], [[1, rho], [rho, 1]], n, seed)
    _, rep = pmrisk.calibrate(price_table(level, ["BTC", "ETH"]), lam=lam, seed_obs=30)
    sig = rep.filter(pc.equal(rep["kind"], "underlying"))["sigma"].to_numpy()
    tol_sigma = 6 * math.sqrt(1 / (2 * n_eff))
    assert abs(sig[0] / s1 - 1) < tol_sigma and abs(sig[1] / s2 - 1) < tol_sigma
    got = rep.filter(pc.equal(rep["kind"], "pair"))["rho"][0].as_py()
    assert abs(got - rho) < 6 * (1 - rho**2) / math.sqrt(n_eff) + 0.02


# -- ranges: Varma's log form, floors, extreme moves, FHS, vol shocks ---------------------------

def test_varma_log_range_and_floor():
    up, down = log_ranges(0.02, 3, 1)
    assert round(100 * up, 4) == 6.1837 and round(100 * down, 4) == 5.8235
    up4, _ = log_ranges(0.02, 3, 4)
    assert up4 == pytest.approx(math.expm1(0.12))
    p = samples.prices(days=120)
    model, rep = pmrisk.calibrate(p, floors={"BTC": 0.3, "default": 0.0}, k_sigma=1.0)
    btc, eth = rep.slice(0, 2).to_pylist()
    assert btc["floor_hit"] and btc["price_range"] == 0.3 and btc["range_up"] < 0.3
    assert not eth["floor_hit"] and eth["price_range"] == eth["range_up"]
    assert btc["extreme_move"] == model.underlying("BTC")["extreme_multiple"] * 0.3


def test_historical_method_is_the_fhs_quantile():
    p = samples.prices(days=150, seed=4)
    model, rep = pmrisk.calibrate(p, method="historical", horizon=2, quantile=0.95, seed_obs=20)
    paths = volatility_paths(p, seed_obs=20)
    for j, u in enumerate(["BTC", "ETH", "SOL"]):
        sel = paths.filter(pc.equal(paths["underlying"], u))
        sig = sel["sigma"].to_numpy()
        daily = samples.prices(days=150, seed=4).filter(
            pc.equal(p["underlying"], u))["index_price"].to_numpy()[5::6]
        lv = daily                                   # last price per day (4-hour steps)
        starts = np.arange(20, len(lv) - 2)
        moves = np.log(lv[starts + 2] / lv[starts])
        q = oracles.fhs_quantile(moves, sig[starts - 20], sig[-1], 0.95)
        assert rep["range_up"][j].as_py() == pytest.approx(math.expm1(q), rel=1e-12)
        assert model.underlying(u)["price_range"] == pytest.approx(math.expm1(q), rel=1e-12)


def test_defaults_are_spec_16s():
    """SPEC 16's defaults: EWMA with lambda 0.94, k = 3 sigma, the historical method's
    quantile 0.99, a one-interval horizon."""
    import inspect
    d = {k: v.default for k, v in inspect.signature(pmrisk.calibrate).parameters.items()}
    assert (d["method"], d["lam"], d["k_sigma"], d["quantile"], d["horizon"]) == (
        "ewma", 0.94, 3.0, 0.99, 1)
    p = samples.prices(days=120)
    spelled, _ = pmrisk.calibrate(p, method="ewma", lam=0.94, k_sigma=3.0, horizon=1)
    default, _ = pmrisk.calibrate(p)
    assert default.underlying("BTC")["price_range"] == spelled.underlying("BTC")["price_range"]
    hist = pmrisk.calibrate(p, method="historical")[0].underlying("ETH")["price_range"]
    assert hist == pmrisk.calibrate(p, method="historical", quantile=0.99)[0].underlying(
        "ETH")["price_range"]


def test_historical_down_move_and_the_period_cut_as_documented():
    """README: the historical down move is 1 - e^{-q} beside e^q - 1; a recalibrated
    backtest's snapshot mid-period uses calibrate() on the prices before the period start."""
    p = samples.prices(days=90, seed=4)
    _, rep = pmrisk.calibrate(p, method="historical", seed_obs=20)
    for row in rep.filter(pc.equal(rep["kind"], "underlying")).to_pylist():
        q = math.log1p(row["range_up"])
        assert row["range_down"] == pytest.approx(-math.expm1(-q), rel=1e-12)
    sched = CalibrationSchedule(p, every="1d", method="historical", seed_obs=20)
    b = int(T0 + 70 * DAY)
    mid = sched.period_start(b + DAY // 2)
    assert mid == b
    cut = p.filter(pc.less(p["time"].cast(pa.int64()), b))
    want, _ = pmrisk.calibrate(cut, method="historical", seed_obs=20)
    got = sched.model_before(mid, "standard")
    for u in ("BTC", "ETH", "SOL"):
        assert got.underlying(u)["price_range"] == want.underlying(u)["price_range"]
    # a price between the period start and the snapshot is not seen
    extra = pa.table({"time": pa.array([b + DAY // 4], pa.timestamp("ns", tz="UTC")),
                      "underlying": ["BTC"], "index_price": [1.0]})
    later = CalibrationSchedule(pa.concat_tables([p.filter(pc.less_equal(
        p["time"].cast(pa.int64()), b)), extra.cast(p.schema)]), every="1d",
        method="historical", seed_obs=20)
    assert later.model_before(mid, "standard").underlying("BTC")["price_range"] == \
        want.underlying("BTC")["price_range"]


def test_vol_shocks_from_implied_vol_history():
    p = samples.prices(days=80)
    rng = np.random.default_rng(5)
    iv = np.exp(np.cumsum(rng.standard_normal(80) * 0.05)) * 0.6
    ivt = pa.table({"time": pa.array(T0 + np.arange(80) * DAY, pa.timestamp("ns", tz="UTC")),
                    "underlying": ["BTC"] * 80, "mark_iv": iv})
    model, rep = pmrisk.calibrate(p, iv=ivt, horizon=2, quantile=0.95)
    ch = iv[2:] / iv[:-2] - 1
    btc = model.underlying("BTC")
    assert btc["volatility_range_up"] == pytest.approx(np.quantile(ch, 0.95), rel=1e-14)
    assert btc["volatility_range_down"] == pytest.approx(-np.quantile(ch, 0.05), rel=1e-14)
    assert rep["volatility_range_up"][0].as_py() == btc["volatility_range_up"]
    assert rep["volatility_range_up"][1].as_py() is None          # ETH: no iv given
    base = pmrisk.Model.preset("standard").underlying("ETH")
    assert model.underlying("ETH")["volatility_range_up"] == base["volatility_range_up"]
    # a SPAN-style model moves vol in points: vol_scan_range from the absolute changes
    span, rep = pmrisk.calibrate(p, iv=ivt, horizon=2, quantile=0.95, base_model="span")
    pts = iv[2:] - iv[:-2]
    want = max(np.quantile(pts, 0.95), -np.quantile(pts, 0.05))
    assert span.underlying("BTC")["vol_scan_range"] == pytest.approx(want, rel=1e-14)
    assert span.underlying("BTC")["volatility_range_up"] == \
        pmrisk.Model.preset("span").underlying("BTC")["volatility_range_up"]
    assert rep["vol_scan_range"][0].as_py() == span.underlying("BTC")["vol_scan_range"]
    with pytest.raises(MarginError) as exc:             # percentages, not decimals
        pmrisk.calibrate(p, iv=ivt.set_column(2, "mark_iv", pa.array(iv * 100)))
    assert (exc.value.table, exc.value.column, exc.value.rows) == ("iv", "mark_iv",
                                                                   [("BTC",)])


# -- PSD: repaired or refused as the model says ---------------------------------------------

NAMES = ["BTC", "ETH", "SOL"]


def gappy_prices():
    """Three underlyings whose pairs are estimated over different days: BTC,ETH move
    together while SOL has no prices, ETH,SOL while BTC has none, BTC,SOL oppositely while
    ETH has none.  The estimates are near +1, +1, -1: not positive semidefinite."""
    rng = np.random.default_rng(7)
    seed = rng.standard_normal((12, 3)) * 0.02
    blocks = []
    for pattern in ([1, 1, 0], [0, 1, 1], [1, 0, -1]):
        z = rng.standard_normal((25, 1)) * 0.03
        blocks.append(z * np.array(pattern, dtype=float))
    r = np.vstack([seed] + blocks)
    level = 100 * np.exp(np.vstack([np.zeros((1, 3)), np.cumsum(r, axis=0)]))
    missing = np.zeros(level.shape, dtype=bool)
    for k, j in enumerate((2, 0, 1)):                 # the underlying absent in block k
        missing[13 + 25 * k:13 + 25 * (k + 1) - 1, j] = True
    return price_table(level, NAMES, missing=missing)


@pytest.mark.parametrize("how", ["argument", "model"])
def test_non_psd_estimate_refused_with_the_pair_named(how):
    kw = {"repair": "none"} if how == "argument" else {
        "base_model": pmrisk.Model.preset("standard").with_overrides(
            {"correlations": {"repair": "none"}})}
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(gappy_prices(), seed_obs=10, **kw)
    err = exc.value
    assert (err.table, err.column) == ("prices", "index_price")
    assert "positive semidefinite" in str(err) and "repair" in str(err)


@pytest.mark.parametrize("how", ["default", "argument", "model"])
def test_non_psd_estimate_repaired(how):
    """SPEC 16: the estimate is repaired to the nearest correlation matrix when not PSD; the
    repair setting is written into the model only when asked for."""
    kw = {"default": {}, "argument": {"repair": "nearest"}, "model": {
        "base_model": pmrisk.Model.preset("standard").with_overrides(
            {"correlations": {"repair": "nearest"}})}}[how]
    with pytest.warns(CorrelationRepaired):
        model, rep = pmrisk.calibrate(gappy_prices(), seed_obs=10, **kw)
    pairs = rep.filter(pc.equal(rep["kind"], "pair")).to_pylist()
    est = {(p["underlying"], p["other"]): p["rho_estimate"] for p in pairs}
    assert min(np.linalg.eigvalsh(_matrix(est))) < -0.1          # the estimate was not PSD
    used = {(p["underlying"], p["other"]): p["rho"] for p in pairs}
    assert min_eigenvalue(_matrix(used))[0] >= -1e-10
    m = pmrisk.correlation_matrix(NAMES, model).matrix
    np.testing.assert_allclose(m, _matrix(used))
    assert model["correlations"].get("repair") == (None if how == "default" else "nearest")


def _matrix(pairs):
    m = np.eye(3)
    for (a, b), v in pairs.items():
        m[NAMES.index(a), NAMES.index(b)] = m[NAMES.index(b), NAMES.index(a)] = v
    return m


# -- no look-ahead -----------------------------------------------------------------------------

def perturb_after(table, t_ns, factor_seed=11, inclusive=True, size=0.05):
    """Every price at time >= t (> t when not inclusive) multiplied by a random factor."""
    ns = table["time"].cast(pa.int64()).to_numpy()
    late = ns >= t_ns if inclusive else ns > t_ns
    rng = np.random.default_rng(factor_seed)
    px = table["index_price"].to_numpy().copy()
    px[late] *= np.exp(rng.standard_normal(late.sum()) * size)
    return table.set_column(2, "index_price", pa.array(px)), int(late.sum())


def test_as_of_uses_rows_up_to_it_only():
    p = samples.prices(days=120)
    as_of = "2024-03-15T08:00:00Z"
    t = pmrisk.calibrate(p, as_of=as_of)[1]
    moved, n = perturb_after(p, pmrisk.model.calibration.to_ns(as_of), inclusive=False)
    assert n > 100
    assert pmrisk.calibrate(moved, as_of=as_of)[1].equals(t)
    assert not pmrisk.calibrate(moved)[1].equals(pmrisk.calibrate(p)[1])
    assert t["as_of"][0].as_py().isoformat() == "2024-03-15T08:00:00+00:00"


def backtest_inputs():
    h = samples.history(days=4, accounts=4, step_minutes=360, seed=2)
    # the calibration history: 60 days of prices before the backtest, and during it
    p = samples.prices(days=66, step_hours=6, start="2024-04-01T00:00:00Z")
    p = p.filter(pc.is_in(p["underlying"], pa.array(["BTC", "ETH"])))
    return h, p


def run_backtest(h, prices, **kw):
    return pmrisk.backtest(h["positions"], h["instruments"], h["market"], h["index"],
                           h["balances"], model="standard", progress=False,
                           calibrate={"prices": prices, "every": "1d", **kw})


def test_recalibrated_backtest_never_uses_a_later_price():
    h, p = backtest_inputs()
    base = run_backtest(h, p, seed_obs=20)
    acc = base.accounts
    times = sorted(set(acc["time"].cast(pa.int64()).to_pylist()))
    t = times[len(times) // 2]                                 # a snapshot mid-history
    moved, n = perturb_after(p, t)
    assert n > 0
    after = run_backtest(h, moved, seed_obs=20).accounts
    early = pc.less_equal(acc["time"].cast(pa.int64()), t)
    assert acc.filter(early).equals(after.filter(early))      # up to t: not one bit moves
    late = pc.invert(early)
    assert not acc.filter(late).equals(after.filter(late))    # later: the perturbed prices count


def test_backtest_recalibrates_each_period_from_earlier_prices():
    h, p = backtest_inputs()
    sched = CalibrationSchedule(p, every="1d", seed_obs=20)
    r = pmrisk.backtest(h["positions"], h["instruments"], h["market"], h["index"],
                        h["balances"], model="standard", progress=False, calibrate=sched,
                        batch_rows=10**9)
    starts = sorted(sched.reports)
    assert len(starts) == 4                                   # one batch cut into 4 days
    for s in starts:
        as_of = sched.reports[s]["as_of"][0].as_py()
        assert pa.scalar(as_of).cast(pa.int64()).as_py() < s
    # each day's snapshots equal margin() with that day's model
    acc = r.accounts
    for s in starts:
        day = pc.and_(pc.greater_equal(acc["time"].cast(pa.int64()), s),
                      pc.less(acc["time"].cast(pa.int64()), s + DAY))
        ts = pc.unique(acc.filter(day)["time"])
        sel = {k: h[k].filter(pc.is_in(h[k]["time"], ts)) for k in
               ("positions", "market", "index", "balances")}
        ref = pmrisk.margin(**sel, instruments=h["instruments"], model=sched._cache[s])
        assert ref.accounts.equals(acc.filter(day))


def test_backtest_calibration_too_early_names_the_period():
    h, p = backtest_inputs()
    with pytest.raises(MarginError) as exc:
        run_backtest(h, p, seed_obs=80)
    assert exc.value.table == "prices" and "recalibrating for the snapshots from 2024-06-01" \
        in str(exc.value)


# -- calibrated models through margin() and Monitor ------------------------------------------

def test_calibrated_model_through_margin():
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    model, _ = pmrisk.calibrate(samples.prices(), base_model="standard", k_sigma=4.0)
    r = pmrisk.margin(**b, model=model, valuation_time=vt)
    std = pmrisk.margin(**b, model="standard", valuation_time=vt)
    assert r.accounts.num_rows == std.accounts.num_rows
    mm = r.accounts["maintenance_margin"].to_numpy()
    assert np.isfinite(mm).all() and not np.allclose(mm, std.accounts["maintenance_margin"])


def test_monitor_swaps_the_model_and_alerts():
    from test_monitor import assert_matches_margin, demo_monitor
    mon, _ = demo_monitor(model="standard")
    prices = samples.prices(days=300)                # volatile from day 100 to 200
    model, _ = pmrisk.calibrate(prices, k_sigma=5.0, as_of="2024-06-15",
                                underlyings=["BTC", "ETH"])
    before = mon.accounts
    up = mon.update(model=model, at="2024-06-17T09:00:00Z")
    assert mon.model is model
    assert_matches_margin(mon, model)
    assert not mon.accounts.sort_by("account").equals(before.sort_by("account"))
    assert up.alerts.num_rows > 0 and set(up.alerts["kind"].to_pylist()) <= {
        "threshold_down", "margin_call", "liquidation", "threshold_up"}
    # and back, through recalibrate: the calm first months
    up2, rep = mon.recalibrate(prices, as_of="2024-04-01", at="2024-06-17T09:01:00Z",
                               underlyings=["BTC", "ETH"])
    assert_matches_margin(mon, mon.model)
    assert rep["as_of"][0].as_py().isoformat().startswith("2024-04-01T00:00")
    assert up2.alerts.num_rows > 0


def test_monitor_model_with_other_thresholds_is_refused_and_changes_nothing():
    from test_monitor import demo_monitor
    mon, _ = demo_monitor(model="standard")
    before = mon.accounts
    other = pmrisk.Model.preset("standard").with_overrides(
        {"thresholds": {"liquidation": 0.7}})
    with pytest.raises(MarginError) as exc:
        mon.update(model=other)
    assert (exc.value.table, exc.value.column) == ("arguments", "model")
    assert mon.accounts.equals(before) and mon.model.name == "standard"


# -- exceedances and Kupiec ------------------------------------------------------------------

def test_kupiec_matches_scipy_chi2():
    from scipy.stats import chi2
    for n, x, p in ((250, 0, 0.01), (250, 2, 0.01), (250, 9, 0.01), (500, 30, 0.0027),
                    (40, 40, 0.05)):
        lr, pv = kupiec(n, x, p)
        want = -2 * ((n - x) * math.log(1 - p) + x * math.log(p))
        if 0 < x < n:
            want += 2 * ((n - x) * math.log(1 - x / n) + x * math.log(x / n))
        assert lr == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert pv == pytest.approx(chi2.sf(lr, 1), rel=1e-9, abs=1e-15)
    assert kupiec(0, 0, 0.01) == (None, None)


def test_exceedances_count_moves_outside_the_range_known_before():
    p = samples.prices(days=200, seed=1)
    t = pmrisk.exceedances(p, horizon=2, seed_obs=20, floors=0.05).to_pylist()
    paths = volatility_paths(p, seed_obs=20)
    for row in t:
        u = row["underlying"]
        sig = paths.filter(pc.equal(paths["underlying"], u))["sigma"].to_numpy()
        lv = p.filter(pc.equal(p["underlying"], u))["index_price"].to_numpy()[5::6]
        n = x = 0
        for k in range(len(sig) - 2):
            move = lv[20 + k + 2] / lv[20 + k] - 1
            up, down = log_ranges(sig[k], 3.0, 2)
            n += 1
            x += move > max(0.05, up) or move < -max(0.05, down)
        assert (row["observations"], row["exceedances"]) == (n, x)
        assert row["up"] + row["down"] == x
        assert row["expected_rate"] == pytest.approx(math.erfc(3 / math.sqrt(2)))
        assert (row["kupiec_lr"], row["p_value"]) == kupiec(n, x, row["expected_rate"])


def test_exceedances_flag_a_range_that_is_too_narrow():
    """k = 1 covers about 68 % of moves: Kupiec rejects a 0.27 % rate decisively."""
    t = pmrisk.exceedances(samples.prices(days=200), k_sigma=1.0, expected_rate=0.0027)
    assert all(r["rate"] > 0.15 and r["p_value"] < 1e-6 for r in t.to_pylist())
    h = pmrisk.exceedances(samples.prices(days=200), method="historical", quantile=0.95)
    assert all(r["observations"] > 100 for r in h.to_pylist())


# -- bad inputs --------------------------------------------------------------------------------

def _bad(kind):
    t = samples.prices(days=40).to_pylist()
    if kind == "unsorted":
        t[30], t[33] = t[33], t[30]                 # two BTC rows swapped
    elif kind == "duplicate":
        t[36]["time"] = t[33]["time"]               # two BTC rows at one time
    elif kind == "non_positive":
        t[31]["index_price"] = 0.0
    elif kind == "negative":
        t[32]["index_price"] = -5.0
    elif kind == "null_price":
        t[34]["index_price"] = None
    elif kind == "null_time":
        t[34]["time"] = None
    elif kind == "null_underlying":
        t[34]["underlying"] = None
    elif kind == "nan":
        t[35]["index_price"] = float("nan")
    return pa.Table.from_pylist(t, schema=samples.prices(days=1).schema)


BAD = [  # (case, kwargs, column, the bad row's index or the rows named)
    ("unsorted", {}, "time", 33),
    ("duplicate", {}, "time", 36),
    ("non_positive", {}, "index_price", 31),
    ("negative", {}, "index_price", 32),
    ("null_price", {}, "index_price", 34),
    ("nan", {}, "index_price", 35),
    ("null_time", {}, "time", 34),
    ("null_underlying", {}, "underlying", 34),
    ("ok", {"seed_obs": 40}, "time", [("BTC",), ("ETH",), ("SOL",)]),
    ("ok", {"underlyings": ["BTC", "DOGE"]}, "underlying", [("DOGE",)]),
    ("ok", {"as_of": "2024-01-03"}, "time", [("BTC",), ("ETH",), ("SOL",)]),
]


def _key(table, i):
    row = table.slice(i, 1).to_pylist()[0]
    t = row["time"]
    return (row["underlying"], None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize("case,kwargs,column,rows", BAD,
                         ids=[f"{c}-{'-'.join(k) or 'default'}" for c, k, _, _ in BAD])
def test_bad_prices_named(case, kwargs, column, rows):
    table = _bad(case)
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(table, **{"seed_obs": 10, **kwargs})
    err = exc.value
    assert (err.table, err.column) == ("prices", column), str(err)
    want = [_key(table, rows)] if isinstance(rows, int) else rows
    assert err.rows == want, str(err)


@pytest.mark.parametrize("kwargs,column", [
    ({"lam": 1.0}, "lam"), ({"lam": 0}, "lam"), ({"interval": "1y"}, "interval"),
    ({"interval": "0d"}, "interval"), ({"horizon": 0}, "horizon"), ({"seed_obs": 1},
                                                                      "seed_obs"),
    ({"k_sigma": -1}, "k_sigma"), ({"method": "garch"}, "method"),
    ({"quantile": 1.0}, "quantile"), ({"floors": 1.5}, "floors"),
    ({"floors": {"XRP": 0.1}}, "floors"), ({"repair": "yes"}, "repair"),
    ({"as_of": "not a time"}, "as_of")])
def test_bad_arguments_named(kwargs, column):
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(samples.prices(days=60), **kwargs)
    assert (exc.value.table, exc.value.column) == ("arguments", column)


def test_bad_iv_table_named():
    p = samples.prices(days=60)
    iv = pa.table({"time": pa.array(T0 + np.arange(60) * DAY, pa.timestamp("ns", tz="UTC")),
                   "underlying": ["XRP"] * 60, "mark_iv": [0.5] * 60})
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(p, iv=iv)
    assert (exc.value.table, exc.value.column, exc.value.rows) == ("iv", "underlying",
                                                                   [("XRP",)])
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(p, iv=iv.set_column(2, "mark_iv", pa.array([0.0] * 60)))
    assert (exc.value.table, exc.value.column) == ("iv", "mark_iv")


def test_calibration_too_wide_for_the_model_is_an_error():
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(samples.prices(days=250), k_sigma=30.0)
    assert (exc.value.table, exc.value.column) == ("prices", "index_price")
    assert "extreme_multiple" in str(exc.value) or "price_range" in str(exc.value)


def test_schedule_and_backtest_arguments():
    with pytest.raises(MarginError) as exc:
        CalibrationSchedule(samples.prices(days=5), every="1d", lamda=0.9)
    assert exc.value.column == "calibrate"
    with pytest.raises(MarginError) as exc:
        CalibrationSchedule(samples.prices(days=5), every="daily")
    assert exc.value.column == "every"
    h, _ = backtest_inputs()
    with pytest.raises(MarginError) as exc:
        pmrisk.backtest(h["positions"], h["instruments"], h["market"], h["index"],
                        progress=False, calibrate="yes")
    assert exc.value.column == "calibrate"


# -- samples, TOML, CLI ---------------------------------------------------------------------

def test_sample_prices_deterministic_with_regimes():
    a, b = samples.prices(days=300, seed=3), samples.prices(days=300, seed=3)
    assert a.equals(b) and not a.equals(samples.prices(days=300, seed=4))
    paths = volatility_paths(a)
    btc = paths.filter(pc.equal(paths["underlying"], "BTC"))["sigma"].to_numpy()
    n = len(btc)
    calm, volatile = btc[n // 4], btc[n // 2 + 10]
    assert volatile > 1.8 * calm                               # the volatile regime shows
    _, early = pmrisk.calibrate(a, as_of="2024-07-01")
    _, late = pmrisk.calibrate(a)
    rho = {r["other"]: r["rho"] for r in early.to_pylist() if r["kind"] == "pair"
           and r["underlying"] == "BTC"}
    rho_late = {r["other"]: r["rho"] for r in late.to_pylist() if r["kind"] == "pair"
                and r["underlying"] == "BTC"}
    assert rho["SOL"] > 0.6 and rho_late["SOL"] < 0.4        # the correlation break


def test_model_toml_round_trip():
    model, _ = pmrisk.calibrate(samples.prices(days=90), base_model="deribit_pme")
    back = pmrisk.Model.from_dict(tomllib.loads(model_toml.dumps(model)))
    assert back.to_dict() == model.to_dict()
    for name in ("standard", "deribit_pme", "span", "binance_pm_pro"):
        m = pmrisk.Model.preset(name)
        assert pmrisk.Model.from_dict(tomllib.loads(model_toml.dumps(m))).to_dict() == \
            m.to_dict()


def test_cli_calibrate_round_trip_plot_and_backtest(tmp_path, capsys):
    prices = tmp_path / "prices.parquet"
    pq.write_table(samples.prices(days=120), prices)
    before = prices.read_bytes()
    out, png = tmp_path / "model.toml", tmp_path / "cal.png"
    assert main(["calibrate", "--prices", str(prices), "--out", str(out), "--plot", str(png),
                 "--backtest"]) == 0
    text = capsys.readouterr().out
    assert "Kupiec" in text and "rho BTC,ETH" in text and "price_range" in text
    assert prices.read_bytes() == before
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    model, _ = pmrisk.calibrate(samples.prices(days=120))
    assert pmrisk.Model.from_toml(out).to_dict() == model.to_dict()
    # the TOML is a model `pmrisk margin --model` reads
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    args = []
    for name, t in b.items():
        pq.write_table(t, tmp_path / f"{name}.parquet")
        if name in ("positions", "instruments", "market", "index", "balances"):
            args += [f"--{name}", str(tmp_path / f"{name}.parquet")]
    assert main(["margin", *args, "--model", str(out), "--valuation-time", vt,
                 "--out", str(tmp_path / "res")]) == 0
    got = pq.read_table(tmp_path / "res" / "accounts.parquet")
    want = pmrisk.margin(**b, model=model, valuation_time=vt).accounts
    np.testing.assert_allclose(got.sort_by("account")["maintenance_margin"].to_numpy(),
                               want.sort_by("account")["maintenance_margin"].to_numpy(),
                               rtol=1e-12)


def test_cli_calibrate_refuses_to_overwrite_its_input_and_reports_bad_input(tmp_path, capsys):
    prices = tmp_path / "prices.parquet"
    pq.write_table(samples.prices(days=20), prices)
    before = prices.read_bytes()
    assert main(["calibrate", "--prices", str(prices), "--out", str(prices)]) == 2
    assert prices.read_bytes() == before
    assert main(["calibrate", "--prices", str(prices)]) == 2             # 20 days < seed
    assert "prices.time" in capsys.readouterr().err


def test_parse_interval():
    assert parse_interval("15m") == 15 * 60 * 10**9 and parse_interval("1w") == 7 * DAY
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MarginError):
            parse_interval("1.5h")


def test_readme_calibration_example_runs(tmp_path, monkeypatch):
    import pathlib
    monkeypatch.chdir(tmp_path)          # the block writes prices.parquet for the CLI line
    import re
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Calibration from market data", 1)[1]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["report"].num_rows == 6 and ns["checks"].num_rows == 3
    assert ns["result"].accounts.num_rows == 6
    assert ns["model"].underlying("SOL")["price_range"] == ns["report"]["price_range"][2].as_py()


def test_plot_without_matplotlib_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import sys
    prices = tmp_path / "prices.parquet"
    pq.write_table(samples.prices(days=60), prices)
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib fails
    assert main(["calibrate", "--prices", str(prices), "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install matplotlib" in err
    assert not (tmp_path / "x.png").exists()


def test_recalibrated_backtest_on_dask_equals_single_process():
    import distributed                      # the test extra installs it: never skipped
    h, p = backtest_inputs()
    local = run_backtest(h, p, seed_obs=20).accounts
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        r = pmrisk.backtest(h["positions"], h["instruments"], h["market"], h["index"],
                            h["balances"], model="standard", progress=False, client=client,
                            batch_rows=40, calibrate={"prices": p, "every": "1d",
                                                      "seed_obs": 20})
    assert r.accounts.equals(local)


# -- review findings: empty histories, bounds, stale calibrations --------------------------

@pytest.mark.parametrize("prices, kwargs, table, column", [
    (samples.prices(days=60).slice(0, 0), {}, "prices", "time"),           # no row at all
    (samples.prices(days=60).slice(0, 1), {}, "prices", "time"),           # one row
    (samples.prices(days=60), {"as_of": "2023-01-01"}, "prices", "time"),  # none up to as_of
    (samples.prices(days=60), {"underlyings": []}, "arguments", "underlyings"),
    (samples.prices(days=60), {"underlyings": ["BTC", "BTC"]}, "arguments", "underlyings"),
    (samples.prices(days=60), {"underlyings": [5]}, "arguments", "underlyings"),
    (samples.prices(days=60), {"interval": "999999999999d"}, "arguments", "interval"),
    (samples.prices(days=60), {"interval": "36501d"}, "arguments", "interval"),
    (samples.prices(days=60), {"interval": 5}, "arguments", "interval"),
    (samples.prices(days=60), {"k_sigma": 1000}, "arguments", "k_sigma"),
])
def test_empty_history_and_bounds_are_named(prices, kwargs, table, column):
    with pytest.raises(MarginError) as exc:
        pmrisk.calibrate(prices, **kwargs)
    assert (exc.value.table, exc.value.column) == (table, column)


def test_error_texts_say_what_to_fix():
    p = samples.prices(days=60)
    with pytest.raises(MarginError, match="below 1000"):
        pmrisk.calibrate(p, k_sigma=1000)
    with pytest.raises(MarginError, match="once") as exc:
        pmrisk.calibrate(p, underlyings=["BTC", "BTC"])
    assert exc.value.rows == [("BTC",)]
    with pytest.raises(MarginError, match="36500d"):
        CalibrationSchedule(p, every="999999999999d")
    assert parse_interval("36500d") == 36500 * DAY and parse_interval("1s") == 10**9


def test_monitor_recalibrate_bad_keywords_named():
    b = samples.demo_book()
    mon = pmrisk.Monitor(**b)
    p = samples.prices(days=60)
    for kwargs, column in (({"foo": 1}, "calibrate"), ({"base_model": "span"}, "base_model")):
        with pytest.raises(MarginError) as exc:
            mon.recalibrate(p, **kwargs)
        assert (exc.value.table, exc.value.column) == ("arguments", column)
    with pytest.raises(MarginError) as exc:
        mon.recalibrate(p.slice(0, 0))
    assert (exc.value.table, exc.value.column) == ("prices", "time")


def test_stale_calibration_is_an_error_naming_both_times():
    h, _ = backtest_inputs()
    with pytest.raises(MarginError) as exc:
        run_backtest(h, samples.prices(days=60), seed_obs=5)       # prices end in March
    assert (exc.value.table, exc.value.column) == ("prices", "time")
    assert "2024-06-01T00:00:00Z" in str(exc.value) and "2024-02-29T20:00:00Z" in str(exc.value)
    # a longer max_age margins with the older ranges on purpose
    r = run_backtest(h, samples.prices(days=60), seed_obs=5, max_age="100d")
    assert r.accounts.num_rows == 64
    with pytest.raises(MarginError) as exc:
        run_backtest(h, samples.prices(days=60), seed_obs=5, max_age="soon")
    assert (exc.value.table, exc.value.column) == ("arguments", "max_age")


def test_backtest_calibration_prices_from_a_parquet_path(tmp_path):
    h, p = backtest_inputs()
    pq.write_table(p, tmp_path / "prices.parquet")
    (tmp_path / "ds").mkdir()
    pq.write_table(p, tmp_path / "ds" / "part-0.parquet")
    want = run_backtest(h, p, seed_obs=20).accounts
    assert run_backtest(h, str(tmp_path / "prices.parquet"), seed_obs=20).accounts.equals(want)
    assert run_backtest(h, tmp_path / "ds", seed_obs=20).accounts.equals(want)
    with pytest.raises(MarginError) as exc:
        run_backtest(h, str(tmp_path / "nope.parquet"), seed_obs=20)
    assert exc.value.table == "prices"


@pytest.mark.parametrize("extra, flag", [
    (["--plot", "{tmp}/x.unknownext"], "--plot"),
    (["--out", "{tmp}"], "--out"),
    (["--out", "{tmp}/nodir/sub/x.toml"], "--out"),
    (["--plot", "{tmp}/nodir/x.png"], "--plot"),
    (["--interval", "999999999999d"], "interval"),
])
def test_cli_calibrate_bad_outputs_are_one_line(tmp_path, capsys, extra, flag):
    prices = tmp_path / "prices.parquet"
    pq.write_table(samples.prices(days=60), prices)
    args = [a.format(tmp=tmp_path) for a in extra]
    assert main(["calibrate", "--prices", str(prices), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"arguments.{flag}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.parquet"]


def test_cli_calibrate_empty_history_is_one_line(tmp_path, capsys):
    prices = tmp_path / "prices.parquet"
    pq.write_table(samples.prices(days=60).slice(0, 0), prices)
    assert main(["calibrate", "--prices", str(prices)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "prices.time" in err

"""Margin benchmarks (pytest-benchmark).  `make test` runs each once as a smoke test
(``--benchmark-disable``); `make bench` times them and writes benchmarks/results.json.

Group ``grid-1acct-2k``: one account, 2,000 positions (1,600 options) on BTC, inverse,
``deribit_pme`` (27 + 8 scenarios).  The same options are also revalued by the numpy oracle
(on 200 options: it loops in Python), a vectorised numpy/scipy implementation, the minimal
hand-written numba kernel and QuantLib's ``blackFormula``, so figures compare as ratios.
Group ``accounts-10k``: 10,000 accounts x 10 positions (half options), one valuation time,
in one call.  Group ``snapshots-100``: the ``time`` column path, 100 snapshots x 10 accounts x
10 positions (one engine pass per snapshot).
"""

import numpy as np
import pytest

import pmrisk
from pmrisk import kernel as K
from pmrisk import samples
from pmrisk.book import load_book
from pmrisk.engine import revaluation_inputs

import baselines
import oracles

MODEL = pmrisk.Model.preset("deribit_pme")


def _book(**kw):
    b = samples.book(**kw)
    vt = b.pop("valuation_time")
    return b, vt


@pytest.fixture(scope="module")
def grid2k():
    b, vt = _book(n_accounts=1, positions_per_account=2000, underlyings=("BTC",),
                  option_share=0.8, inverse_share=1.0, seed=1)
    book = load_book(b["positions"], b["instruments"], b["market"], b["index"], None, None,
                     None, MODEL, vt)
    rv = revaluation_inputs(book, MODEL)
    scen, args = rv.scen, rv.args
    return b, vt, book, scen, args


def _option_slice(book, args, scen, n):
    """Arrays for the option-only baselines: the first n options, BTC row of the scenarios."""
    opt = np.flatnonzero(book.kind == 3)[:n]
    ns = scen.n_scen[0]
    qty = np.zeros(len(book.kind))
    np.add.at(qty, book.pos_instr, book.quantity)
    return dict(F=book.forward[opt], K=book.strike[opt], T=args[8][opt], sig_up=args[10][opt],
                sig_same=args[11][opt], sig_down=args[12][opt], qty=qty[opt],
                is_call=book.is_call[opt], shock=scen.price_shock[0, :ns].copy(),
                vol_code=scen.vol_code[0, :ns].copy())


@pytest.mark.benchmark(group="grid-1acct-2k")
def test_margin_call(warm_benchmark, grid2k):
    b, vt, *_ = grid2k
    r = warm_benchmark(pmrisk.margin, **b, model=MODEL, valuation_time=vt)
    assert r.units.num_rows == 1


@pytest.mark.benchmark(group="grid-1acct-2k")
def test_kernels_only(warm_benchmark, grid2k):
    _, _, book, scen, args = grid2k

    def kernels():
        pnl = K.instrument_pnl(*args)
        vec = K.unit_risk_vectors(np.zeros(len(book.quantity), np.int64), book.pos_instr,
                                  book.quantity, pnl, 1)
        return K.weighted_worst(vec, np.zeros(1, np.int64), np.array([65000.0]), scen.n_scen,
                                scen.loss_weight, scen.gain_weight, scen.gain_cap_usd,
                                scen.dampener_usd, scen.vol_code)
    w = warm_benchmark(kernels)
    assert w[1][0] > 0


@pytest.mark.benchmark(group="grid-1acct-2k")
def test_instrument_pnl_kernel(warm_benchmark, grid2k):
    *_, args = grid2k
    out = warm_benchmark(K.instrument_pnl, *args)
    assert np.isfinite(out).all()


@pytest.mark.benchmark(group="grid-1acct-2k-oracle200")
def test_numpy_oracle_200(benchmark, grid2k):
    """The numpy oracle on the first 200 instruments (it loops per instrument in Python)."""
    *_, args = grid2k
    cut = tuple(a[:200] if isinstance(a, np.ndarray) and a.ndim == 1 and i < 14 else a
                for i, a in enumerate(args))
    out = benchmark(oracles.instrument_pnl, *cut)
    np.testing.assert_allclose(out, K.instrument_pnl(*cut), rtol=1e-9, atol=1e-12)


@pytest.mark.benchmark(group="grid-1acct-2k-oracle200")
def test_instrument_pnl_kernel_200(warm_benchmark, grid2k):
    *_, args = grid2k
    cut = tuple(a[:200] if isinstance(a, np.ndarray) and a.ndim == 1 and i < 14 else a
                for i, a in enumerate(args))
    warm_benchmark(K.instrument_pnl, *cut)


@pytest.mark.benchmark(group="grid-1acct-2k-options")
def test_minimal_option_kernel(warm_benchmark, grid2k):
    _, _, book, scen, args = grid2k
    kw = _option_slice(book, args, scen, 1600)
    out = warm_benchmark(baselines.minimal_option_kernel, **kw)
    assert np.isfinite(out).all()


@pytest.mark.benchmark(group="grid-1acct-2k-options")
def test_numpy_vectorised(benchmark, grid2k):
    pytest.importorskip("scipy")
    _, _, book, scen, args = grid2k
    kw = _option_slice(book, args, scen, 1600)
    out = benchmark(baselines.numpy_vectorised_pnl, **kw)
    np.testing.assert_allclose(out, baselines.minimal_option_kernel(**kw), rtol=1e-9)


@pytest.mark.benchmark(group="grid-1acct-2k-options")
def test_instrument_pnl_options_only(warm_benchmark, grid2k):
    _, _, book, scen, args = grid2k
    opt = np.flatnonzero(book.kind == 3)[:1600]
    cut = tuple(a[opt] if isinstance(a, np.ndarray) and a.ndim == 1 and i < 14 else a
                for i, a in enumerate(args))
    warm_benchmark(K.instrument_pnl, *cut)


@pytest.mark.benchmark(group="grid-1acct-2k-options")
def test_quantlib_blackformula_loop(benchmark, grid2k):
    """QuantLib blackFormula, one call per option and scenario (1,600 x 35) is too slow to
    repeat: it runs on 100 options x 35 scenarios; compare per evaluation."""
    ql = pytest.importorskip("QuantLib")
    del ql
    _, _, book, scen, args = grid2k
    kw = _option_slice(book, args, scen, 100)
    ns = len(kw["shock"])
    F = np.repeat(kw["F"], ns) * np.tile(1 + kw["shock"], len(kw["F"]))
    sig = np.stack([kw["sig_up"], kw["sig_same"], kw["sig_down"]])[
        np.tile(kw["vol_code"], len(kw["F"])), np.repeat(np.arange(len(kw["F"])), ns)]
    benchmark(baselines.quantlib_loop, F, np.repeat(kw["K"], ns), np.repeat(kw["T"], ns),
              sig, np.repeat(kw["is_call"], ns))


@pytest.mark.benchmark(group="accounts-10k")
def test_accounts_10k_one_time(warm_benchmark):
    b, vt = _book(n_accounts=10_000, positions_per_account=10, underlyings=("BTC", "ETH"),
                  option_share=0.5, inverse_share=1.0, seed=2)
    r = warm_benchmark(pmrisk.margin, **b, model=MODEL, valuation_time=vt)
    assert r.accounts.num_rows == 10_000


@pytest.mark.benchmark(group="snapshots-100")
def test_snapshots_100_time_column(warm_benchmark):
    import pyarrow as pa
    b, vt = _book(n_accounts=10, positions_per_account=10, underlyings=("BTC", "ETH"),
                  option_share=0.5, inverse_share=1.0, seed=3)
    t0 = pa.scalar(vt).cast(pa.timestamp("ns", tz="UTC")).value
    times = t0 + np.arange(100, dtype=np.int64) * 600 * 10**9      # every 10 minutes
    n = b["positions"].num_rows
    pos = pa.concat_tables([b["positions"]] * len(times)).add_column(
        0, "time", pa.array(np.repeat(times, n)).cast(pa.timestamp("ns", tz="UTC")))
    r = warm_benchmark(pmrisk.margin, pos, b["instruments"], b["market"], b["index"],
                       model=MODEL)
    assert r.accounts.num_rows == 100 * 10

"""The seed's model at real-time speed (issue 12): ``standard`` on accounts holding several
underlyings, each case with ``deribit_pme`` on the same book beside it (the ratio is the
issue's first target).

* ``accounts-10k``: ``test_accounts_10k_multi[standard|deribit_pme]``, one ``margin()`` on
  10,000 accounts x 10 positions from a venue of 300 instruments on BTC, ETH and SOL (half
  options, inverse), each account on 2 or 3 underlyings (``cases.multi_book``), a USDT
  balance each.  Smoke: 200 accounts.
* ``backtest-100k``: ``test_backtest_100k_multi[standard|deribit_pme]``, one ``margin()`` over
  a ``time`` column, 1,000 times x 100 accounts x 10 positions from a venue of 200 instruments
  on BTC, ETH and SOL (``cases.backtest(underlyings=...)``: 96 of the 100 accounts hold 3
  underlyings, 4 hold 2), ``tables=("accounts",)``; snapshots/s.  Smoke: 5 times.
* ``monitor-10k[standard]`` is in ``test_bench_monitor.py`` (1,000 ticks, or fewer within
  a time budget).
* ``what-if``: ``test_what_if[standard|deribit_pme]``, :meth:`pmrisk.Monitor.what_if` on one
  20-position account of the ``monitor-10k`` monitor (10,000 accounts on BTC, ETH and SOL) with
  a hedged three-leg BTC basket (a future bought, a put bought, a call sold: 8 states of the
  account in one engine call); 500 calls after 5 untimed ones, p50 and p99 in ``extra_info``.
  Smoke: 50 accounts, 5 calls.
"""

import time
import warnings

import numpy as np
import pytest

import pmrisk

import cases

MODELS = ("standard", "deribit_pme")


@pytest.fixture(scope="module")
def multi_10k(full):
    return cases.multi_book(10_000 if full else 200)


@pytest.mark.benchmark(group="accounts-10k")
@pytest.mark.parametrize("model", MODELS)
def test_accounts_10k_multi(margin_benchmark, multi_10k, model):
    tables, vt = multi_10k
    n_acc = len(set(tables["positions"]["account"].to_pylist()))
    # both models calibrated by pytest-benchmark (a call of ~20-100 ms: 10-50 rounds), not a
    # fixed 3 for standard: of 3 rounds one is the pool's second set of blocks (the previous
    # result still held), 1.5-2x the others, and the median of 3 then swings with it
    r = margin_benchmark({"accounts": n_acc, "positions": tables["positions"].num_rows},
                         **tables, model=model, valuation_time=vt)
    assert r.accounts.num_rows == n_acc


@pytest.fixture(scope="module")
def backtest_multi(full):
    n_times, n_accounts = cases.backtest_size(full)
    return (cases.backtest(n_times=n_times, n_accounts=n_accounts,
                           underlyings=cases.MULTI_UNDERLYINGS), n_times * n_accounts)


@pytest.mark.benchmark(group="backtest-100k")
@pytest.mark.parametrize("model", MODELS)
def test_backtest_100k_multi(margin_benchmark, backtest_multi, model):
    tables, n_snap = backtest_multi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pmrisk.MarginWarning)        # no balances
        r = margin_benchmark({"snapshots": n_snap, "positions": tables["positions"].num_rows},
                             **tables, model=model, tables=("accounts",), rounds=3)
    assert r.accounts.num_rows == n_snap
    assert np.isfinite(r.accounts["maintenance_margin"].to_numpy()).all()


@pytest.mark.benchmark(group="what-if")
@pytest.mark.parametrize("model", MODELS)
def test_what_if(benchmark, full, model):
    book, vt = cases.monitor_book(10_000 if full else 50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pmrisk.MarginWarning)        # no balances
        mon = pmrisk.Monitor(**book, model=model, valuation_time=vt)
    account = book["positions"]["account"][0].as_py()
    n_pos = sum(a == account for a in book["positions"]["account"].to_pylist())
    trades = cases.what_if_trades(book)
    n_calls = 500 if full else 5
    for _ in range(5 if full else 1):
        mon.what_if(account, trades)
    latency = []

    def calls():
        for _ in range(n_calls):
            t = time.perf_counter()
            mon.what_if(account, trades)
            latency.append(time.perf_counter() - t)

    benchmark.pedantic(calls, rounds=1, iterations=1)
    lat = np.array(latency)
    w = mon.what_if(account, trades)
    benchmark.extra_info.update(
        work={"what-ifs": n_calls}, model=model, positions=n_pos, trades=trades.num_rows,
        accounts=len(mon.accounts), p50_ms=float(np.percentile(lat, 50)) * 1e3,
        p99_ms=float(np.percentile(lat, 99)) * 1e3, max_ms=float(lat.max()) * 1e3,
        overcharge_im=w.summary["overcharge"][0].as_py())
    assert n_pos == 20 and w.accounts.num_rows == 2

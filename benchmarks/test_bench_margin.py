"""In-process benchmarks of the performance issue (pytest-benchmark groups = the issue's ids).

`make test` runs each once as a smoke test (``--benchmark-disable``, smoke sizes); `make bench`
times them at full size and writes benchmarks/results.json (see README.md here).

* ``grid-1acct-2k``: ``margin()`` end to end on 1 account, 2,000 positions (1,600 options) on
  BTC, inverse, ``deribit_pme`` (35 scenarios); and the revaluation kernel alone on its
  instruments.
* ``validate-2k``: ``load_book`` alone on the ``grid-1acct-2k`` tables: every input check and
  the Arrow -> array conversion of 2,000 positions, instruments and market rows.
* ``seed-1acct-6k``: ``margin()`` on 1 account, 6,000 positions (5,000 options) over 10
  underlyings under ``standard`` (3,433 joint scenarios, 2,861 of them x 3 vol states).
* ``backtest-100k``: one ``margin()`` call over a ``time`` column: 1,000 times x 100 accounts x
  10 positions (half options), ``deribit_pme`` (smoke: 5 times).
* ``baselines-oracle``: the numpy oracle of tests/oracles.py against the kernel on the first
  200 instruments of ``grid-1acct-2k`` (the oracle loops per instrument in Python).
* ``baselines-options``: the kernel on the 1,600 options of ``grid-1acct-2k`` x 35 scenarios
  against the minimal hand-written numba loop (serial and ``prange``), numpy + scipy ``ndtr``,
  and QuantLib ``blackFormula`` in a Python loop (on 100 options: compare per revaluation).
* ``accounts-10k`` (extra): 10,000 accounts x 10 positions in one call.
* ``scaling``: ``margin()`` on a sweep of book sizes (report.py draws scaling.png from it).
"""


import numpy as np
import pytest

import pmrisk
from pmrisk import kernel as K
from pmrisk.io.book import load_book
from pmrisk.kernel.instruments import OPTION

import baselines
import cases
import oracles

PME = pmrisk.Model.preset("deribit_pme")
STANDARD = pmrisk.Model.preset("standard")


@pytest.fixture(scope="module")
def grid2k():
    return cases.grid_1acct_2k_inputs()


_rows = cases.pnl_rows
_n_scen = cases.n_scenarios
_options = cases.option_arrays


# -- grid-1acct-2k ----------------------------------------------------------------------

@pytest.mark.benchmark(group="grid-1acct-2k")
def test_grid_1acct_2k(margin_benchmark, grid2k):
    tables, vt, book, rv = grid2k
    n = tables["positions"].num_rows
    r = margin_benchmark({"positions": n, "cells": n * _n_scen(rv)}, **tables, model=PME,
                         valuation_time=vt)
    assert n == 2000 and int((np.asarray(book.kind) == OPTION).sum()) == 1600
    assert r.units.num_rows == 1 and r.accounts["scenario_margin"][0].as_py() > 0


@pytest.mark.benchmark(group="grid-1acct-2k")
def test_grid_1acct_2k_revaluation_kernel(warm_benchmark, benchmark, grid2k):
    """``instrument_pnl`` alone on every revaluation row of the book."""
    *_, rv = grid2k
    out = warm_benchmark(K.instrument_pnl, *rv.args)
    benchmark.extra_info["work"] = {"cells": out.shape[0] * _n_scen(rv)}
    assert np.isfinite(out).all()


# -- validate-2k --------------------------------------------------------------------------

@pytest.mark.benchmark(group="validate-2k")
def test_validate_2k(warm_benchmark, benchmark, grid2k):
    """``load_book`` on the ``grid-1acct-2k`` tables: the checks and the Arrow -> array
    conversion that ``margin()`` reports as ``timings["validate"]``."""
    tables, vt, *_ = grid2k
    book = warm_benchmark(load_book, tables["positions"], tables["instruments"],
                          tables["market"], tables["index"], None, None, None, PME, vt)
    benchmark.extra_info["work"] = {"positions": tables["positions"].num_rows}
    assert len(book.quantity) == 2000 and len(book.accounts) == 1


# -- baselines: the numpy oracle ----------------------------------------------------------

@pytest.mark.benchmark(group="baselines-oracle")
def test_oracle_numpy_200(benchmark, grid2k):
    """The numpy oracle on the first 200 revaluation rows (it loops per row in Python)."""
    *_, rv = grid2k
    cut = _rows(rv.args, np.arange(200))
    out = benchmark(oracles.instrument_pnl, *cut)
    benchmark.extra_info["work"] = {"cells": 200 * _n_scen(rv)}
    np.testing.assert_allclose(out, K.instrument_pnl(*cut), rtol=1e-9, atol=1e-12)


@pytest.mark.benchmark(group="baselines-oracle")
def test_oracle_pmrisk_kernel_200(warm_benchmark, benchmark, grid2k):
    *_, rv = grid2k
    warm_benchmark(K.instrument_pnl, *_rows(rv.args, np.arange(200)))
    benchmark.extra_info["work"] = {"cells": 200 * _n_scen(rv)}


# -- baselines: option revaluation throughput ------------------------------------------------

@pytest.mark.benchmark(group="baselines-options")
def test_options_pmrisk_kernel(warm_benchmark, benchmark, grid2k):
    """``instrument_pnl`` on the 1,600 option rows only (per contract, every scenario)."""
    _, _, book, rv = grid2k
    opt, _ = _options(book, rv, 1600)
    out = warm_benchmark(K.instrument_pnl, *_rows(rv.args, opt))
    benchmark.extra_info["work"] = {"option revaluations": len(opt) * _n_scen(rv)}
    assert np.isfinite(out).all()


@pytest.mark.benchmark(group="baselines-options")
def test_options_minimal_loop(warm_benchmark, benchmark, grid2k):
    _, _, book, rv = grid2k
    opt, kw = _options(book, rv, 1600)
    out = warm_benchmark(baselines.minimal_option_kernel, **kw)
    benchmark.extra_info["work"] = {"option revaluations": len(opt) * _n_scen(rv)}
    assert np.isfinite(out).all()


@pytest.mark.benchmark(group="baselines-options")
def test_options_minimal_loop_parallel(warm_benchmark, benchmark, grid2k):
    _, _, book, rv = grid2k
    opt, kw = _options(book, rv, 1600)
    out = warm_benchmark(baselines.minimal_option_kernel_parallel, **kw)
    benchmark.extra_info["work"] = {"option revaluations": len(opt) * _n_scen(rv)}
    np.testing.assert_allclose(out, baselines.minimal_option_kernel(**kw), rtol=1e-9)


@pytest.mark.benchmark(group="baselines-options")
def test_options_numpy_scipy(benchmark, grid2k):
    pytest.importorskip("scipy")
    _, _, book, rv = grid2k
    opt, kw = _options(book, rv, 1600)
    out = benchmark(baselines.numpy_vectorised_pnl, **kw)
    benchmark.extra_info["work"] = {"option revaluations": len(opt) * _n_scen(rv)}
    np.testing.assert_allclose(out, baselines.minimal_option_kernel(**kw), rtol=1e-9)


@pytest.mark.benchmark(group="baselines-options")
def test_options_quantlib_blackformula(benchmark, grid2k):
    """QuantLib ``blackFormula``, one call per option and scenario, on 100 options x 35
    scenarios (1,600 x 35 would only take longer, not change the rate)."""
    pytest.importorskip("QuantLib")
    _, _, book, rv = grid2k
    opt, kw = _options(book, rv, 100)
    ns = len(kw["shock"])
    F = np.repeat(kw["F"], ns) * np.tile(1 + kw["shock"], len(kw["F"]))
    sig = np.stack([kw["sig_up"], kw["sig_same"], kw["sig_down"]])[
        np.tile(kw["vol_code"], len(kw["F"])), np.repeat(np.arange(len(kw["F"])), ns)]
    out = benchmark(baselines.quantlib_loop, F, np.repeat(kw["K"], ns), np.repeat(kw["T"], ns),
                    sig, np.repeat(kw["is_call"], ns))
    benchmark.extra_info["work"] = {"option revaluations": len(opt) * ns}
    assert np.isfinite(out)


# -- seed-1acct-6k --------------------------------------------------------------------------

@pytest.mark.benchmark(group="seed-1acct-6k")
def test_seed_1acct_6k(margin_benchmark, benchmark):
    tables, vt = cases.seed_1acct_6k()
    n_joint, n_joint_3vol, vol_cells = cases.joint_scenarios_10()
    n = tables["positions"].num_rows
    r = margin_benchmark({"positions": n, "cells": n * vol_cells}, **tables, model=STANDARD,
                         valuation_time=vt)
    benchmark.extra_info.update(joint_scenarios=n_joint, joint_scenarios_3_vol_states=n_joint_3vol,
                                joint_scenario_cells=vol_cells)
    assert n == 6000 and n_joint_3vol >= 2000
    assert r.accounts.num_rows == 1 and r.accounts["scenario_margin"][0].as_py() > 0
    assert r.accounts["worst_scenario"][0].as_py().startswith("joint")


# -- backtest-100k --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backtest_tables(full):
    n_times, n_accounts = cases.backtest_size(full)
    return cases.backtest(n_times=n_times, n_accounts=n_accounts), n_times * n_accounts


@pytest.mark.benchmark(group="backtest-100k")
@pytest.mark.parametrize("wanted", [("accounts", "units", "positions"), ("accounts",)],
                         ids=["all-tables", "accounts-only"])
def test_backtest_100k(margin_benchmark, backtest_tables, wanted):
    """All three result tables, and only the accounts table (what a backtest of margin ratios
    needs; the per-position table is a third of the time at 10 positions per account)."""
    tables, n_snap = backtest_tables
    r = margin_benchmark({"snapshots": n_snap, "positions": tables["positions"].num_rows},
                         **tables, model=PME, tables=wanted, rounds=5)
    assert r.accounts.num_rows == n_snap
    assert (r.positions is None) == (wanted == ("accounts",))
    assert np.isfinite(r.accounts["maintenance_margin"].to_numpy()).all()


# -- accounts-10k (extra) ---------------------------------------------------------------------

@pytest.mark.benchmark(group="accounts-10k")
@pytest.mark.parametrize("model", ["deribit_pme", "okx_pm"])
def test_accounts_10k(margin_benchmark, model):
    tables, vt = cases.accounts_10k()
    r = margin_benchmark({"accounts": 10_000, "positions": tables["positions"].num_rows},
                         **tables, model=pmrisk.Model.preset(model), valuation_time=vt)
    assert r.accounts.num_rows == 10_000


# -- scaling sweep ----------------------------------------------------------------------------

@pytest.mark.benchmark(group="scaling")
def test_scaling(margin_benchmark, benchmark, sweep_point):
    series, model, unds, n_pos = sweep_point
    tables, vt = cases.sweep_book(unds, n_pos)
    n = tables["positions"].num_rows
    cells = cases.scenario_cells(model, unds)
    margin_benchmark({"positions": n, "cells": n * cells}, **tables, model=model,
                     valuation_time=vt, rounds=5 if n_pos >= 6000 else None)
    benchmark.extra_info.update(series=series, model=model, underlyings=len(unds),
                                scenario_cells=cells)

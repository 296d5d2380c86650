"""The benchmark books, built deterministically in code (no data files): one function per case
of the performance issue, shared by the pytest-benchmark suite, the fresh-process probes
(``probes.py``) and the scaling sweep.

Sizes come in two flavours: ``full`` (the issue's sizes, timed by ``make bench``) and
``smoke`` (what ``make test`` runs once).  Only the backtest and the scaling sweep differ; see
:func:`full_size`.
"""

import inspect
import os

import numpy as np
import pyarrow as pa

import pmrisk
from pmrisk import samples
from pmrisk.kernel import black76_price_array, instrument_pnl

UNDERLYINGS_10 = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "LTC")
TIME_TYPE = pa.timestamp("ns", tz="UTC")
NS_MINUTE = 60 * 10**9
NS_YEAR = 365 * 86_400 * 10**9


def full_size(config=None):
    """Whether to build the issue's full sizes: ``PMRISK_BENCH_SIZE=full|smoke`` decides when
    set; otherwise full exactly when pytest-benchmark's timing is on (``--benchmark-enable``,
    as ``make bench`` runs), smoke when it is off (``--benchmark-disable``, the default from
    pyproject.toml, as ``make test`` runs)."""
    env = os.environ.get("PMRISK_BENCH_SIZE", "").strip().lower()
    if env in ("full", "smoke"):
        return env == "full"
    if env:
        raise ValueError(f"PMRISK_BENCH_SIZE must be 'full' or 'smoke', got {env!r}")
    if config is None:
        return False
    return bool(config.getoption("benchmark_enable", False)) or not config.getoption(
        "benchmark_disable", False)


def _split(b):
    b = dict(b)
    return b, b.pop("valuation_time")


def grid_1acct_2k():
    """``grid-1acct-2k``: 1 account, 2,000 positions (1,600 options) on BTC, all inverse;
    returns (tables, valuation_time); the model is ``deribit_pme``."""
    return _split(samples.book(n_accounts=1, positions_per_account=2000, underlyings=("BTC",),
                               option_share=0.8, inverse_share=1.0, seed=1))


def grid_1acct_2k_inputs():
    """``grid-1acct-2k`` with the engine's revaluation inputs, for the kernel-level cases:
    ``(tables, valuation_time, book, rv)`` (``rv.args``: ``kernel.instrument_pnl``'s
    arguments, one row per instrument)."""
    from pmrisk.io.book import load_book
    from pmrisk.engine.core import revaluation_inputs

    pme = pmrisk.Model.preset("deribit_pme")
    tables, vt = grid_1acct_2k()
    book = load_book(tables["positions"], tables["instruments"], tables["market"],
                     tables["index"], None, None, None, pme, vt)
    return tables, vt, book, revaluation_inputs(book, pme)


def _pnl_args():
    return list(inspect.signature(instrument_pnl.py_func).parameters)


def pnl_rows(args, rows):
    """instrument_pnl's arguments restricted to revaluation rows ``rows`` (the per-row arrays
    are the ones before ``rate``)."""
    from pmrisk.io.arrow import kernel_args
    n_row_args = _pnl_args().index("rate")
    return kernel_args(*[a[rows] if i < n_row_args else a for i, a in enumerate(args)])


def n_scenarios(rv):
    """Scenarios per revaluation row (one underlying: BTC's)."""
    return int(rv.scen.n_scen[0])


def option_arrays(book, rv, n):
    """Arrays for the option-only baselines (``baselines.minimal_option_kernel``'s keyword
    arguments): the first ``n`` option rows, BTC's scenario row.  Returns (rows, arrays)."""
    from pmrisk.kernel.instruments import OPTION
    a = dict(zip(_pnl_args(), rv.args))
    opt = np.flatnonzero(np.asarray(a["kind"]) == OPTION)[:n]
    ns = n_scenarios(rv)
    qty = np.zeros(len(a["kind"]))
    np.add.at(qty, rv.pos_row, book.quantity)
    return opt, dict(F=a["forward"][opt], K=a["strike"][opt], T=a["t_scen"][opt],
                     sig_up=a["sig_up"][opt], sig_same=a["sig_same"][opt],
                     sig_down=a["sig_down"][opt], qty=qty[opt], is_call=a["is_call"][opt],
                     shock=a["price_shock"][0, :ns].copy(), vol_code=a["vol_code"][0, :ns].copy())


def seed_1acct_6k():
    """``seed-1acct-6k``: 1 account, 6,000 positions (5,000 options) over 10 underlyings,
    half inverse; the model is ``standard``."""
    return _split(samples.book(n_accounts=1, positions_per_account=6000,
                               underlyings=UNDERLYINGS_10, option_share=5000 / 6000,
                               inverse_share=0.5, seed=4))


def joint_scenarios_10(model="standard"):
    """The joint scenario set ``standard`` stresses a 10-underlying account on (independent of
    the positions: directions on the correlation ellipsoid x shells x tails).  Returns
    ``(n_joint, n_with_3_vol_states, n_vol_cells)``."""
    from pmrisk.engine.correlated import joint_scenarios
    from pmrisk.model.correlation import correlation_matrix

    m = pmrisk.Model.coerce(model)
    corr = correlation_matrix(list(UNDERLYINGS_10), m)
    params = [m.underlying(u) for u in UNDERLYINGS_10]
    js = joint_scenarios(tuple(range(len(UNDERLYINGS_10))), corr.matrix, params, m)
    return int(js.size), int((js.n_vol == 3).sum()), int(js.n_vol.sum())


def accounts_10k():
    """Extra case ``accounts-10k``: 10,000 accounts x 10 positions (half options), BTC and
    ETH, one valuation time, ``deribit_pme``."""
    return _split(samples.book(n_accounts=10_000, positions_per_account=10,
                               underlyings=("BTC", "ETH"), option_share=0.5, inverse_share=1.0,
                               seed=2))


def backtest(n_times=1000, n_accounts=100, positions_per_account=10, n_instruments=200,
             seed=3, underlyings=("BTC", "ETH")):
    """``backtest-100k``: ``n_times`` snapshot times one minute apart x ``n_accounts``
    accounts x ``positions_per_account`` positions (half options), on ``underlyings`` (BTC
    and ETH), inverse.

    A venue of ``n_instruments`` shared instruments (half options); each account holds a fixed
    set of instruments whose quantities breathe deterministically over time.  Per time, the
    index of each underlying follows a seeded random walk (1-minute vol ~0.1 %), futures marks
    and option forwards move with it, option marks are Black-76 at the instrument's own vol
    and the remaining time to expiry.  Returns the ``positions``, ``instruments``, ``market``
    and ``index`` tables; every table but ``instruments`` carries a ``time`` column.
    """
    rng = np.random.default_rng(seed)
    venue = samples.book(n_accounts=1, positions_per_account=n_instruments,
                         underlyings=underlyings, option_share=0.5, inverse_share=1.0,
                         seed=seed)
    instruments, market0, index0 = venue["instruments"], venue["market"], venue["index"]
    t0 = pa.scalar(venue["valuation_time"]).cast(TIME_TYPE).value
    times = t0 + np.arange(n_times, dtype=np.int64) * NS_MINUTE

    # positions: each account a fixed set of instruments (half options), quantities breathing
    kind = np.array(instruments.column("kind").to_pylist(), dtype=object)
    opt, fut = np.flatnonzero(kind == "option"), np.flatnonzero(kind != "option")
    n_opt = positions_per_account // 2
    picks = np.concatenate([
        np.concatenate([rng.choice(opt, n_opt, replace=False),
                        rng.choice(fut, positions_per_account - n_opt, replace=False)])
        for _ in range(n_accounts)])
    acct = np.repeat(np.arange(n_accounts), positions_per_account)
    size = np.where(kind[picks] == "option", rng.normal(0, 20, len(picks)),
                    rng.normal(0, 50_000, len(picks))).round(1)
    size[size == 0] = 1.0
    phase = rng.uniform(0, 2 * np.pi, len(picks))
    breathe = 1.0 + 0.1 * np.sin(2 * np.pi * np.arange(n_times)[:, None] / 97 + phase)
    qty = (size * breathe).ravel()
    symbols = np.array(instruments.column("symbol").to_pylist(), dtype=object)
    names = np.array([f"acct-{a:04d}" for a in range(n_accounts)], dtype=object)
    positions = pa.table({
        "time": pa.array(np.repeat(times, len(picks))).cast(TIME_TYPE),
        "account": pa.DictionaryArray.from_arrays(
            pa.array(np.tile(acct, n_times)), pa.array(names.tolist())).cast(pa.string()),
        "symbol": pa.DictionaryArray.from_arrays(
            pa.array(np.tile(picks, n_times)), pa.array(symbols.tolist())).cast(pa.string()),
        "quantity": qty})

    # index: a random walk per underlying
    und = index0.column("underlying").to_pylist()
    px0 = np.array(index0.column("index_price").to_pylist())
    walk = np.exp(np.cumsum(rng.normal(0, 0.001, (n_times, len(und))), axis=0))
    walk[0] = 1.0
    level = px0 * walk                                             # (n_times, n_und)
    index = pa.table({"time": pa.array(np.repeat(times, len(und))).cast(TIME_TYPE),
                      "underlying": und * n_times, "index_price": level.ravel()})

    # market: every instrument at every time, moving with its underlying
    u_of = np.array([und.index(u) for u in instruments.column("underlying").to_pylist()])
    move = walk[:, u_of]                                            # (n_times, n_instr)
    mark0 = market0.column("mark_price").to_numpy(zero_copy_only=False)
    iv = market0.column("mark_iv").to_numpy(zero_copy_only=False)
    fwd0 = market0.column("underlying_price").to_numpy(zero_copy_only=False)
    is_opt = kind == "option"
    mark = np.where(is_opt, np.nan, mark0 * move)
    fwd = np.where(is_opt, fwd0 * move, np.nan)
    expiry = instruments.column("expiry").cast(pa.int64()).to_numpy(zero_copy_only=False)
    strike = instruments.column("strike").to_numpy(zero_copy_only=False)
    call = np.array([t == "call" for t in instruments.column("option_type").to_pylist()])
    o = np.flatnonzero(is_opt)
    years = (expiry[o][None, :] - times[:, None]) / NS_YEAR           # (n_times, n_opt)
    F = fwd[:, o].ravel()
    price = black76_price_array(F, np.tile(strike[o], n_times), years.ravel(),
                                np.tile(iv[o], n_times), np.tile(call[o], n_times).astype(
                                    np.int64), 0.0)
    mark[:, o] = np.maximum(price / F, 1e-8).reshape(n_times, len(o))   # inverse: in coin
    n_instr = len(symbols)
    market = pa.table({
        "time": pa.array(np.repeat(times, n_instr)).cast(TIME_TYPE),
        "symbol": pa.DictionaryArray.from_arrays(
            pa.array(np.tile(np.arange(n_instr), n_times)),
            pa.array(symbols.tolist())).cast(pa.string()),
        "mark_price": mark.ravel(),
        "mark_iv": pa.array(np.tile(iv, n_times), mask=np.tile(~is_opt, n_times)),
        "underlying_price": pa.array(fwd.ravel(), mask=np.tile(~is_opt, n_times))})
    return {"positions": positions, "instruments": instruments, "market": market,
            "index": index}


def backtest_size(full):
    """(n_times, n_accounts): the issue's 1,000 x 100 = 100,000 (time, account) snapshots in
    full; 5 x 100 = 500 as a smoke test."""
    return (1000, 100) if full else (5, 100)


def write_backtest_dataset(root, n_chunks, chunk_times=100, n_accounts=1000):
    """``backtest-dask``: a history of ``n_chunks * chunk_times`` times one minute apart x
    ``n_accounts`` accounts x 10 positions written as Parquet datasets under ``root``
    (``positions/``, ``market/``, ``index/``: a file per chunk, in time order;
    ``instruments.parquet``), never all in memory: chunk k is :func:`backtest`'s history
    (same seed: same venue and books) shifted ``k * chunk_times`` minutes later.  Returns
    ``(paths, n_snapshots)``; ``paths`` are the inputs of :func:`pmrisk.backtest`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = os.fspath(root)
    paths = {"instruments": os.path.join(root, "instruments.parquet")}
    for name in ("positions", "market", "index"):
        paths[name] = os.path.join(root, name)
        os.makedirs(paths[name], exist_ok=True)
    for k in range(n_chunks):
        chunk = backtest(n_times=chunk_times, n_accounts=n_accounts)
        shift = pa.scalar(k * chunk_times * NS_MINUTE, pa.duration("ns"))
        for name in ("positions", "market", "index"):
            t = chunk[name]
            t = t.set_column(0, "time", pc.add(t["time"], shift))
            pq.write_table(t, os.path.join(paths[name], f"part-{k:05d}.parquet"),
                           row_group_size=128 * 1024)
        if k == 0:
            pq.write_table(chunk["instruments"], paths["instruments"])
    return paths, n_chunks * chunk_times * n_accounts


# -- the scaling sweep: margin() time vs positions x scenario cells ------------------------

# (id, series, model, underlyings, positions per point); the smoke run takes each series' first
SWEEP = (
    ("pme-btc", "deribit_pme, BTC, 1 account", "deribit_pme", ("BTC",),
     (250, 1000, 4000, 16_000, 64_000)),
    ("std-10und", "standard, 10 underlyings, 1 account", "standard", UNDERLYINGS_10,
     (250, 1000, 3000, 6000, 20_000)),
    ("std-6kpos", "standard, 6,000 positions, 1 to 10 underlyings", "standard", None,
     (1, 2, 3, 5, 10)),
)


def sweep_points(full):
    """``[(id, series, model, underlyings, n_positions), ...]`` of the scaling sweep."""
    out = []
    for key, series, model, unds, sizes in SWEEP:
        for s in (sizes if full else sizes[:1]):
            if unds is None:           # sweep the number of underlyings at 6,000 positions
                out.append((f"{key}-und={s}", series, model, UNDERLYINGS_10[:s], 6000))
            else:
                out.append((f"{key}-pos={s}", series, model, unds, s))
    return out


def sweep_book(underlyings, n_positions):
    """One account, ``n_positions`` positions (5/6 options) over ``underlyings``."""
    return _split(samples.book(n_accounts=1, positions_per_account=n_positions,
                               underlyings=tuple(underlyings), option_share=5 / 6,
                               inverse_share=0.5, seed=7))


def scenario_cells(model, underlyings):
    """Scenario cells a position is stressed on (price moves x vol states): the underlying's
    grid for a per-unit model, the account's joint scenario set for ``standard``."""
    m = pmrisk.Model.coerce(model)
    if m["cross_unit"] == "correlated":
        from pmrisk.engine.correlated import joint_scenarios
        from pmrisk.model.correlation import correlation_matrix
        corr = correlation_matrix(list(underlyings), m)
        params = [m.underlying(u) for u in underlyings]
        return int(joint_scenarios(tuple(range(len(underlyings))), corr.matrix, params,
                                   m).n_vol.sum())
    from pmrisk.model.scenario_table import scenario_set_for
    return int(round(np.mean([scenario_set_for(m, u).size for u in underlyings])))


# -- monitor-10k: a book and its ticks ----------------------------------------------------------

MONITOR_UNDERLYINGS = ("BTC", "ETH", "SOL")


def monitor_book(n_accounts, linear=False):
    """``monitor-10k``: ``n_accounts`` accounts x 20 positions on BTC, ETH and SOL (20 shared
    instruments, 16 of them options), all inverse; ``linear``: all USDT-settled instead, with
    a USDT index row (1.0).  Returns (tables, valuation_time)."""
    b = samples.book(n_accounts=n_accounts, positions_per_account=20,
                     underlyings=MONITOR_UNDERLYINGS, seed=5,
                     inverse_share=0.0 if linear else 1.0)
    if linear:
        x = b["index"]
        b["index"] = pa.table({"underlying": x["underlying"].to_pylist() + ["USDT"],
                               "index_price": x["index_price"].to_pylist() + [1.0]})
    return _split(b)


def monitor_ticks(book, valuation_time, n, seed=11, whole_index=False):
    """``n`` (market, index) updates, underlyings in turn, each moving by a seeded 0.1 %: the
    moved underlying's market rows (futures re-marked, options' forwards moved and re-marked
    with Black-76 at their vol) and its index row; ``whole_index``: the index table carries
    every underlying of ``book["index"]``, the others at their current (unchanged) prices, as
    a feed that re-sends its whole table does."""
    rng = np.random.default_rng(seed)
    ins, mkt = book["instruments"], book["market"]
    und = np.array(ins["underlying"].to_pylist(), dtype=object)
    sym = np.array(ins["symbol"].to_pylist(), dtype=object)
    is_opt = np.array([k == "option" for k in ins["kind"].to_pylist()])
    mark0 = mkt["mark_price"].to_numpy(zero_copy_only=False)
    iv = mkt["mark_iv"].to_numpy(zero_copy_only=False)
    fwd0 = mkt["underlying_price"].to_numpy(zero_copy_only=False)
    strike = ins["strike"].to_numpy(zero_copy_only=False)
    call = np.array([t == "call" for t in ins["option_type"].to_pylist()], dtype=np.int64)
    t0 = pa.scalar(valuation_time).cast(TIME_TYPE).value
    years = (ins["expiry"].cast(pa.int64()).to_numpy(zero_copy_only=False) - t0) / NS_YEAR
    index0 = dict(zip(book["index"]["underlying"].to_pylist(),
                      book["index"]["index_price"].to_pylist()))
    level = dict.fromkeys(index0, 1.0)
    out = []
    for k in range(n):
        u = MONITOR_UNDERLYINGS[k % len(MONITOR_UNDERLYINGS)]
        level[u] *= float(np.exp(rng.normal(0.0, 0.001)))
        on = und == u
        o = on & is_opt
        f = ~is_opt & on
        mark = np.where(on, mark0 * level[u], np.nan)
        fwd = np.where(o, fwd0 * level[u], np.nan)
        mark[o] = np.maximum(black76_price_array(fwd[o], strike[o], years[o], iv[o], call[o],
                                                 0.0) / fwd[o], 1e-8)
        market = pa.table({
            "symbol": pa.array(sym[on].tolist(), pa.string()),
            "mark_price": mark[on],
            "mark_iv": pa.array(iv[on], mask=~is_opt[on]),
            "underlying_price": pa.array(fwd[on], mask=f[on])})
        sent = list(index0) if whole_index else [u]
        index = pa.table({"underlying": sent,
                          "index_price": [index0[v] * level[v] for v in sent]})
        out.append((market, index))
    return out


# -- issue 12: the seed's model (standard) on multi-underlying accounts ----------------------------

MULTI_UNDERLYINGS = ("BTC", "ETH", "SOL")


def multi_book(n_accounts, positions_per_account=10, n_instruments=300, seed=12):
    """``accounts-10k`` on several underlyings: a venue of ``n_instruments`` shared
    instruments on BTC, ETH and SOL (half options, all inverse); each account holds
    ``positions_per_account`` of them on 2 or 3 of the underlyings (seeded per account, at
    least one position on each) and a 50,000 USDT balance.  Returns (tables,
    valuation_time)."""
    rng = np.random.default_rng(seed)
    venue = samples.book(n_accounts=1, positions_per_account=n_instruments,
                         underlyings=MULTI_UNDERLYINGS, option_share=0.5, inverse_share=1.0,
                         seed=seed)
    ins = venue["instruments"]
    und = np.array(ins.column("underlying").to_pylist(), dtype=object)
    kind = np.array(ins.column("kind").to_pylist(), dtype=object)
    by_und = {u: np.flatnonzero(und == u) for u in MULTI_UNDERLYINGS}
    picks = []
    for _ in range(n_accounts):
        mine = rng.choice(len(MULTI_UNDERLYINGS), size=int(rng.integers(2, 4)), replace=False)
        pool = np.concatenate([by_und[MULTI_UNDERLYINGS[k]] for k in mine])
        first = [int(rng.choice(by_und[MULTI_UNDERLYINGS[k]])) for k in mine]
        rest = rng.choice(np.setdiff1d(pool, first), size=positions_per_account - len(first),
                          replace=False)
        picks.append(np.concatenate([first, rest]))
    pick = np.concatenate(picks)
    acct = np.repeat(np.arange(n_accounts), positions_per_account)
    qty = np.where(kind[pick] == "option", np.round(rng.normal(0.0, 20.0, len(pick)), 1),
                   np.round(rng.normal(0.0, 50_000.0, len(pick)), 0))
    qty[qty == 0] = 1.0
    names = [f"acct-{a:06d}" for a in range(n_accounts)]
    symbols = np.array(ins.column("symbol").to_pylist(), dtype=object)
    b = {"positions": pa.table({"account": pa.array([names[a] for a in acct], pa.string()),
                                "symbol": pa.array(symbols[pick].tolist(), pa.string()),
                                "quantity": qty.astype(np.float64)}),
         "instruments": ins, "market": venue["market"], "index": venue["index"],
         "balances": pa.table({"account": names, "asset": ["USDT"] * n_accounts,
                               "amount": np.full(n_accounts, 50_000.0)}),
         "valuation_time": venue["valuation_time"]}
    return _split(b)


def what_if_trades(book):
    """A hedged three-leg basket on BTC for ``what-if``: the first BTC future or perpetual
    bought, the first BTC put bought and the first BTC call sold."""
    ins = book["instruments"].to_pylist()
    btc = [r for r in ins if r["underlying"] == "BTC"]
    fut = next(r["symbol"] for r in btc if r["kind"] != "option")
    put = next(r["symbol"] for r in btc if r["option_type"] == "put")
    call = next(r["symbol"] for r in btc if r["option_type"] == "call")
    return pa.table({"symbol": [fut, put, call], "quantity": [20_000.0, 10.0, -10.0]})

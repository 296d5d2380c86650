"""Deterministic sample books (no files, no network): the demo book and synthetic books of any
size for tests and benchmarks.

>>> from pmrisk.samples import demo_book
>>> b = demo_book()
>>> sorted(b)[:4], b["positions"].num_rows > 10
(['balances', 'index', 'instruments', 'market'], True)
"""

import numpy as np
import pyarrow as pa

from pmrisk.kernel.black76 import black76_price

from .io.arrow import iso_ns, to_ns
from .errors import MarginError

DEMO_TIME = "2024-06-17T08:00:00Z"
_NS_DAY = 86_400 * 10**9
MAX_ROWS = 50_000_000      # rows one sample may generate (about 0.4 GB per column of them)
MAX_INSTRUMENTS = 100_000  # book() prices its instruments one by one
_LAST_NS = np.iinfo(np.int64).max       # 2262-04-11T23:47:16Z: the end of int64 nanoseconds


def _check_args(fn, whole=None, numbers=None, seed=0, start=None, span_ns=None, rows=None,
                sizes=()):
    """The one argument check of the sample functions (``fn`` names the function in errors):
    ``whole`` ``{name: (value, lo, hi)}`` whole numbers in [lo, hi]; ``numbers`` the same
    for any real number; ``seed`` a whole number >= 0; ``start`` ``(name, value)`` read by
    :func:`pmrisk.io.arrow.to_ns`, whose generated times (``span_ns()`` after it) must end
    before 2262; ``rows()`` the rows the arguments ``sizes`` generate, at most
    :data:`MAX_ROWS` (both called once the numbers are checked).  Returns the start in ns
    (or None)."""
    checks = dict(whole or {})
    checks["seed"] = (seed, 0, 2**63 - 1)
    for name, (v, lo, hi) in checks.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise MarginError("arguments", name, f"a whole number from {lo:,} to {hi:,} "
                              f"(samples.{fn}), got {v!r}")
    for name, (v, lo, hi) in (numbers or {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not lo <= v <= hi:
            raise MarginError("arguments", name, f"a number from {lo:g} to {hi:g} "
                              f"(samples.{fn}), got {v!r}")
        checks[name] = (v, lo, hi)
    n_rows = rows() if rows else 0
    if n_rows > MAX_ROWS:
        given = ", ".join(f"{k}={checks[k][0]!r}" for k in sizes)
        raise MarginError("arguments", sizes[0], f"arguments generating at most {MAX_ROWS:,} "
                          f"rows (samples.{fn}); {given} generate about {n_rows:,}",
                          hint="Generate a shorter or smaller sample, or several")
    if start is None:
        return None
    name, value = start
    t0 = to_ns(value, name)
    span = span_ns() if span_ns else 0
    if t0 + span > _LAST_NS:
        raise MarginError("arguments", name, f"a {name} whose generated times end before "
                          f"{iso_ns(_LAST_NS)} (int64 nanoseconds); from {iso_ns(t0)} they "
                          f"would run {span / _NS_DAY:,.0f} days", hint="Start earlier or "
                          "generate a shorter sample")
    return t0


def _ts(s, what="valuation_time"):
    return to_ns(s, what)


def _option_mark(fwd, strike, years, iv, call, inverse):
    v = black76_price(fwd, strike, years, iv, call, 0.0)
    return v / fwd if inverse else v


def demo_book():
    """A small, realistic Deribit-style book: BTC and ETH; inverse and linear perpetuals,
    dated futures, calls and puts; six accounts from fully hedged to nearly liquidated.

    Returns a dict of pyarrow Tables (positions, instruments, market, index, balances,
    open_orders) plus ``valuation_time``.
    """
    t0 = _ts(DEMO_TIME)
    jun, sep = _ts("2024-06-28T08:00:00Z"), _ts("2024-09-27T08:00:00Z")
    idx = {"BTC": 65_000.0, "ETH": 3_400.0}
    fwd = {("BTC", jun): 65_400.0, ("BTC", sep): 66_600.0,
           ("ETH", jun): 3_415.0, ("ETH", sep): 3_470.0}
    rows, market = [], []

    def add(symbol, und, kind, settlement, cs, expiry=None, strike=None, otype=None,
            mark=None, iv=None, f=None):
        rows.append(dict(symbol=symbol, underlying=und, kind=kind, settlement=settlement,
                         contract_size=cs, expiry=expiry, strike=strike, option_type=otype))
        market.append(dict(symbol=symbol, mark_price=mark, mark_iv=iv, underlying_price=f))

    add("BTC-PERPETUAL", "BTC", "perpetual", "inverse", 10.0, mark=65_020.0)
    add("ETH-PERPETUAL", "ETH", "perpetual", "inverse", 1.0, mark=3_401.0)
    add("BTC_USDC-PERPETUAL", "BTC", "perpetual", "linear", 0.001, mark=65_030.0)
    add("ETH_USDC-PERPETUAL", "ETH", "perpetual", "linear", 0.01, mark=3_402.0)
    for und in ("BTC", "ETH"):
        for exp, tag in ((jun, "28JUN24"), (sep, "27SEP24")):
            f = fwd[(und, exp)]
            add(f"{und}-{tag}", und, "future", "inverse", 10.0 if und == "BTC" else 1.0,
                expiry=exp, mark=f)
            years = (exp - t0) / (365 * _NS_DAY)
            for moneyness, base_iv in ((0.85, 0.62), (1.0, 0.55), (1.15, 0.58)):
                k = round(f * moneyness / (1000 if und == "BTC" else 50)) * (
                    1000 if und == "BTC" else 50)
                for otype in ("call", "put"):
                    iv = base_iv + (0.03 if tag == "27SEP24" else 0.0)
                    mark = _option_mark(f, k, years, iv, otype == "call", True)
                    add(f"{und}-{tag}-{int(k)}-{otype[0].upper()}", und, "option", "inverse",
                        1.0, expiry=exp, strike=float(k), otype=otype,
                        mark=max(round(mark, 4), 0.0001), iv=iv, f=f)
    instruments = pa.Table.from_pylist(rows, schema=pa.schema([
        ("symbol", pa.string()), ("underlying", pa.string()), ("kind", pa.string()),
        ("settlement", pa.string()), ("contract_size", pa.float64()),
        ("expiry", pa.timestamp("ns", tz="UTC")), ("strike", pa.float64()),
        ("option_type", pa.string())]))
    market_t = pa.Table.from_pylist(market, schema=pa.schema([
        ("symbol", pa.string()), ("mark_price", pa.float64()), ("mark_iv", pa.float64()),
        ("underlying_price", pa.float64())]))

    P = []

    def pos(account, symbol, qty, entry=None):
        P.append(dict(account=account, symbol=symbol, quantity=float(qty), entry_price=entry))

    # fully hedged: a calendar basis trade, long perp against short futures of equal face
    pos("hedged-calendar", "BTC-PERPETUAL", 30_000, 64_100.0)
    pos("hedged-calendar", "BTC-28JUN24", -15_000, 64_800.0)
    pos("hedged-calendar", "BTC-27SEP24", -15_000, 65_900.0)
    # directional: long BTC through the perpetual, short puts for premium
    pos("directional", "BTC-PERPETUAL", 20_000, 61_500.0)
    pos("directional", "BTC-28JUN24-56000-P", -4)
    pos("directional", "BTC-27SEP24-57000-P", -3)
    # ETH short strangle, delta-hedged with the perpetual
    pos("eth-vol-seller", "ETH-27SEP24-2950-P", -40)
    pos("eth-vol-seller", "ETH-27SEP24-4000-C", -40)
    pos("eth-vol-seller", "ETH-PERPETUAL", 9_000, 3_350.0)
    # linear (USDC-settled): long BTC, short ETH
    pos("linear-pair", "BTC_USDC-PERPETUAL", 2_000, 63_000.0)
    pos("linear-pair", "ETH_USDC-PERPETUAL", -3_500, 3_300.0)
    # option book across expiries, long vol, mixed
    pos("long-vol", "BTC-28JUN24-65000-C", 5)
    pos("long-vol", "BTC-28JUN24-65000-P", 5)
    pos("long-vol", "BTC-27SEP24-77000-C", -2)
    pos("long-vol", "ETH-28JUN24-3400-C", 30)
    # nearly liquidated: short upside calls and a losing long future on a thin balance
    pos("nearly-liquidated", "BTC-28JUN24-75000-C", -25)
    pos("nearly-liquidated", "BTC-27SEP24-77000-C", -12)
    pos("nearly-liquidated", "BTC-28JUN24", 20_000, 69_000.0)
    positions = pa.Table.from_pylist(P, schema=pa.schema([
        ("account", pa.string()), ("symbol", pa.string()), ("quantity", pa.float64()),
        ("entry_price", pa.float64())]))
    balances = pa.table({
        "account": ["hedged-calendar", "directional", "eth-vol-seller", "linear-pair",
                    "long-vol", "nearly-liquidated"],
        "asset": ["BTC", "BTC", "ETH", "USDC", "BTC", "BTC"],
        "amount": [0.5, 1.2, 15.0, 40_000.0, 1.0, 2.87],
    })
    open_orders = pa.table({
        "account": ["directional", "nearly-liquidated"],
        "order_id": ["o-1001", "o-1002"],
        "symbol": ["BTC-27SEP24-77000-C", "BTC-PERPETUAL"],
        "quantity": [-2.0, 5_000.0],
        "price": [0.021, 64_900.0],
    })
    index = pa.table({"underlying": list(idx), "index_price": list(idx.values())})
    return {"positions": positions, "instruments": instruments, "market": market_t,
            "index": index, "balances": balances, "open_orders": open_orders,
            "valuation_time": DEMO_TIME}


def book(n_accounts=1, positions_per_account=100, underlyings=("BTC",), option_share=0.8,
         inverse_share=1.0, n_expiries=6, seed=0, valuation_time=DEMO_TIME):
    """A synthetic book: ``n_accounts`` accounts of ``positions_per_account`` positions each
    over ``underlyings``, a share ``option_share`` of options (calls and puts across
    ``n_expiries`` expiries and many strikes), the rest perpetuals and dated futures;
    ``inverse_share`` of instruments coin-settled.  Deterministic for a given ``seed``.

    Instruments are shared between accounts (as on a venue), so revaluation cost grows with
    the number of distinct instruments, aggregation with the number of positions.

    Arguments are checked (a :class:`~pmrisk.MarginError` naming the argument): whole
    numbers of at least 1 (``positions_per_account`` at most 100,000, ``n_expiries`` at most
    8), shares from 0 to 1, distinct underlyings, and at most 50 million positions.
    """
    und = [underlyings] if isinstance(underlyings, str) else underlyings
    if not isinstance(und, (list, tuple)) or not und or \
            not all(isinstance(u, str) and u for u in und) or len(set(und)) < len(und):
        raise MarginError("arguments", "underlyings", "a name or a non-empty sequence of "
                          f"distinct names (samples.book), got {underlyings!r}")
    und = list(und)
    t0 = _check_args(
        "book", whole={"n_accounts": (n_accounts, 1, MAX_ROWS),
                       "positions_per_account": (positions_per_account, 1, MAX_INSTRUMENTS),
                       "n_expiries": (n_expiries, 1, 8)},
        numbers={"option_share": (option_share, 0.0, 1.0),
                 "inverse_share": (inverse_share, 0.0, 1.0)}, seed=seed,
        start=("valuation_time", valuation_time), span_ns=lambda: 540 * _NS_DAY,
        rows=lambda: n_accounts * positions_per_account, sizes=("n_accounts",
                                                                "positions_per_account"))
    rng = np.random.default_rng(seed)
    base_px = {u: float(rng.uniform(5, 80_000)) for u in und}
    base_px.update({k: v for k, v in (("BTC", 65_000.0), ("ETH", 3_400.0)) if k in base_px})
    n_pos_total = n_accounts * positions_per_account
    n_opt = int(round(positions_per_account * option_share))
    # distinct instruments: enough options that a single account can hold all distinct ones
    n_opt_instr = max(n_opt, 1)
    n_fut_instr = max(positions_per_account - n_opt, 1)
    expiries = t0 + (np.array([2, 9, 30, 60, 120, 250, 365, 540])[:max(n_expiries, 1)]
                     * _NS_DAY).astype(np.int64)
    sym, u_, kind, sett, cs, exp, strike, otype = [], [], [], [], [], [], [], []
    mark, iv, fw = [], [], []
    for j in range(n_opt_instr + n_fut_instr):
        u = und[j % len(und)]
        s0 = base_px[u]
        inverse = rng.random() < inverse_share
        if j < n_opt_instr:
            e = int(expiries[rng.integers(len(expiries))])
            years = (e - t0) / (365 * _NS_DAY)
            f = s0 * (1.0 + 0.05 * years)
            k = float(np.round(f * np.exp(rng.normal(0.0, 0.25)), 6))
            call = bool(rng.random() < 0.5)
            vol = float(rng.uniform(0.35, 1.1))
            sym.append(f"{u}-O{j}")
            kind.append("option")
            exp.append(e)
            strike.append(k)
            otype.append("call" if call else "put")
            cs.append(1.0)
            m = _option_mark(f, k, years, vol, call, inverse)
            mark.append(max(m, 1e-8))
            iv.append(vol)
            fw.append(f)
        else:
            perp = rng.random() < 0.4
            e = None if perp else int(expiries[rng.integers(len(expiries))])
            years = 0.0 if perp else (e - t0) / (365 * _NS_DAY)
            sym.append(f"{u}-F{j}")
            kind.append("perpetual" if perp else "future")
            exp.append(e)
            strike.append(None)
            otype.append(None)
            cs.append(10.0 if inverse else 0.01)
            mark.append(s0 * (1.0 + 0.05 * years))
            iv.append(None)
            fw.append(None)
        u_.append(u)
        sett.append("inverse" if inverse else "linear")
    instruments = pa.table({
        "symbol": sym, "underlying": u_, "kind": kind, "settlement": sett,
        "contract_size": pa.array(cs, pa.float64()),
        "expiry": pa.array(exp, pa.timestamp("ns", tz="UTC")),
        "strike": pa.array(strike, pa.float64()), "option_type": pa.array(otype, pa.string())})
    market = pa.table({"symbol": sym, "mark_price": pa.array(mark, pa.float64()),
                       "mark_iv": pa.array(iv, pa.float64()),
                       "underlying_price": pa.array(fw, pa.float64())})
    # each account holds n_opt distinct options and the rest futures, sampled without
    # replacement from the shared instrument list
    acc = np.repeat(np.arange(n_accounts), positions_per_account)
    picks = []
    for _ in range(n_accounts):
        o = rng.choice(n_opt_instr, size=n_opt, replace=False) if n_opt else np.zeros(0, int)
        f = n_opt_instr + rng.choice(n_fut_instr, size=positions_per_account - n_opt,
                                     replace=n_fut_instr < positions_per_account - n_opt)
        picks.append(np.concatenate([o, f]))
    pick = np.concatenate(picks) if picks else np.zeros(0, int)
    if len(pick):
        # futures sampled with replacement may repeat within an account: make them unique
        key = acc * (n_opt_instr + n_fut_instr) + pick
        _, first = np.unique(key, return_index=True)
        keep = np.sort(first)
        acc, pick = acc[keep], pick[keep]
    qty = np.where(np.array(kind, dtype=object)[pick] == "option",
                   np.round(rng.normal(0.0, 20.0, len(pick)), 1),
                   np.round(rng.normal(0.0, 50_000.0, len(pick)), 0))
    qty[qty == 0] = 1.0
    positions = pa.table({
        "account": pa.array([f"acct-{a:06d}" for a in acc], pa.string()),
        "symbol": pa.array(np.array(sym, dtype=object)[pick], pa.string()),
        "quantity": qty.astype(np.float64)})
    index = pa.table({"underlying": und, "index_price": [base_px[u] for u in und]})
    _ = n_pos_total
    return {"positions": positions, "instruments": instruments, "market": market,
            "index": index, "valuation_time": valuation_time}


# -- a synthetic history for backtests ----------------------------------------------------------

HISTORY_START = "2024-06-01T00:00:00Z"
_PROFILES = ("long-perp", "short-puts", "eth-strangle", "basis", "long-vol", "linear-pair")
# highest leverage (notional / collateral) per profile: every book starts above its margin
_LEVERAGE = {"long-perp": 4.5, "short-puts": 4.0, "eth-strangle": 6.0, "basis": 10.0,
             "long-vol": 5.0, "linear-pair": 3.5}


def history(days=30, accounts=100, step_minutes=60, seed=0, start=HISTORY_START, out=None):
    """A deterministic synthetic history for backtests: every ``step_minutes`` over ``days``,
    marks, vols and evolving books of ``accounts`` accounts, with a crash.

    * **Prices.** BTC and ETH index levels follow a seeded correlated random walk (60 % and
      75 % annual vol, correlation 0.8) that is back at its start when, at 60 % of the
      history, both crash over six hours
      (BTC -22 %, ETH -28 %) and implied vols jump (x1.8, decaying with a 3-day half-life).
    * **Instruments** (static): inverse BTC and ETH perpetuals and a dated future each,
      USDT-margined perpetuals, and calls and puts at 70-130 % of the first index level on
      two expiries after the history's end.  Option marks are Black-76 at a smile around
      the ATM vol; every instrument has a market row at every time.
    * **Accounts** cycle through six profiles (a levered long perpetual, short BTC puts with
      a perpetual, a short ETH strangle, a perpetual-vs-future basis trade, long BTC
      straddles, a linear long-BTC / short-ETH pair), each with its own size and leverage
      (collateral = notional / 1 to 3.5-10 by profile).  **Books evolve**: about once a day
      an account scales its whole book by x0.8-1.2, drifting back towards its starting
      size; futures' entry prices average in, reductions realise P&L
      into the balance and options trade at the mark for premium, so equity carries over a
      trade.  Nobody liquidates anybody: the levered books of the crash show where a venue
      would have.
    * **Balances** at every time: the account's collateral asset (BTC, ETH or USDT).

    Parameters
    ----------
    days, accounts, step_minutes, seed : int
        Length (1 to 36,500), number of accounts, spacing of the snapshot times (at most a
        year), random seed (>= 0).  At most about 50 million rows are generated: larger
        arguments are a :class:`~pmrisk.MarginError` naming them and the estimate.
    start : str, datetime or datetime64
        The first time (UTC); the history (and its options' expiries) must end before 2262.
    out : path, optional
        A new or empty directory to write the history to as Parquet instead of returning
        it: ``out/instruments.parquet`` and one dataset per timed table
        (``out/positions/part-00000.parquet``, ... one file per day, in time order), the
        layout ``pmrisk backtest --data`` reads.

    Returns
    -------
    dict
        ``positions``, ``instruments``, ``market``, ``index``, ``balances`` as pyarrow Tables
        (all but ``instruments`` with a ``time`` column), or with ``out`` their paths.

    Examples
    --------
    >>> from pmrisk.samples import history
    >>> h = history(days=2, accounts=3, step_minutes=240)
    >>> h["positions"].column_names[:3], h["balances"].num_rows
    (['time', 'account', 'symbol'], 36)
    """
    from pmrisk.kernel import black76_price_array

    _check_history(out=out)
    t0 = _check_args(
        "history", whole={"days": (days, 1, 100 * 365), "accounts": (accounts, 1, MAX_ROWS),
                          "step_minutes": (step_minutes, 1, 1440 * 365)}, seed=seed,
        start=("start", start),
        span_ns=lambda: (max(days * 1440 // step_minutes, 1) - 1) * step_minutes * 60 * 10**9
        + 80 * _NS_DAY,                                       # the last options' expiry
        rows=lambda: max(days * 1440 // step_minutes, 1) * (64 + 3 * accounts),
        sizes=("days", "accounts", "step_minutes"))
    rng = np.random.default_rng(seed)
    step_ns = int(step_minutes) * 60 * 10**9
    n = max(int(days) * 1440 // int(step_minutes), 1)
    times = t0 + np.arange(n, dtype=np.int64) * step_ns
    year_steps = 365 * 1440 / step_minutes

    # -- index: correlated random walk with a crash; ATM vols that jump and decay
    und = ["BTC", "ETH"]
    s0 = np.array([65_000.0, 3_400.0])
    chol = np.array([[1.0, 0.0], [0.8, 0.6]])
    ret = rng.standard_normal((n, 2)) @ chol.T * np.array([0.60, 0.75]) / np.sqrt(year_steps)
    ret[0] = 0.0
    i_crash = int(0.6 * n)
    if i_crash > 1:                                       # back to the start by the crash
        ret[1:i_crash] -= ret[1:i_crash].mean(axis=0)
    k = max(1, min(360 // int(step_minutes), n - i_crash))
    ret[i_crash:i_crash + k] += np.log([0.78, 0.72]) / k
    level = s0 * np.exp(np.cumsum(ret, axis=0))                       # (n, 2)
    since = np.maximum(np.arange(n) - i_crash, 0) * step_minutes / 1440.0
    jump = np.where(np.arange(n) >= i_crash, 0.8 * 0.5 ** (since / 3.0), 0.0)
    atm = np.array([0.50, 0.65]) * (1.0 + jump[:, None]) * np.exp(
        0.02 * np.cumsum(rng.standard_normal((n, 2)), axis=0) / np.sqrt(max(n, 1)))

    # -- instruments
    end = int(times[-1])
    expiries = [end + d * _NS_DAY for d in (20, 80)]
    fut_expiry = end + 60 * _NS_DAY
    rows = []

    def add(symbol, u, kind, settlement, cs, expiry=None, strike=None, otype=None):
        rows.append(dict(symbol=symbol, underlying=u, kind=kind, settlement=settlement,
                         contract_size=cs, expiry=expiry, strike=strike, option_type=otype))
        return len(rows) - 1

    def tag(ns):
        return pa.scalar(ns, pa.timestamp("ns", tz="UTC")).as_py().strftime("%d%b%y").upper()

    perp = {u: add(f"{u}-PERPETUAL", u, "perpetual", "inverse", 10.0 if u == "BTC" else 1.0)
            for u in und}
    lin = {u: add(f"{u}_USDT-PERPETUAL", u, "perpetual", "linear",
                  0.001 if u == "BTC" else 0.01) for u in und}
    fut = {u: add(f"{u}-{tag(fut_expiry)}", u, "future", "inverse",
                  10.0 if u == "BTC" else 1.0, expiry=fut_expiry) for u in und}
    moneyness = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
    opt = {}
    for j, u in enumerate(und):
        grid = 1000.0 if u == "BTC" else 50.0
        for e, exp in enumerate(expiries):
            for m_i, m in enumerate(moneyness):
                strike = float(round(s0[j] * m / grid) * grid)
                for ot in ("call", "put"):
                    opt[(u, e, m_i, ot)] = add(f"{u}-{tag(exp)}-{int(strike)}-{ot[0].upper()}",
                                               u, "option", "inverse", 1.0, expiry=exp,
                                               strike=strike, otype=ot)
    instruments = pa.Table.from_pylist(rows, schema=pa.schema([
        ("symbol", pa.string()), ("underlying", pa.string()), ("kind", pa.string()),
        ("settlement", pa.string()), ("contract_size", pa.float64()),
        ("expiry", pa.timestamp("ns", tz="UTC")), ("strike", pa.float64()),
        ("option_type", pa.string())]))
    n_ins = len(rows)
    u_of = np.array([und.index(r["underlying"]) for r in rows])
    kind = np.array([r["kind"] for r in rows], dtype=object)
    is_opt = kind == "option"
    expiry = np.array([r["expiry"] if r["expiry"] is not None else 0 for r in rows],
                      dtype=np.int64)
    strike = np.array([r["strike"] or np.nan for r in rows])
    call = np.array([r["option_type"] == "call" for r in rows])

    # -- market: every instrument at every time
    spot = level[:, u_of]                                                # (n, n_ins)
    years = np.where(kind == "perpetual", 0.0, (expiry[None, :] - times[:, None]) /
                     (365 * _NS_DAY))
    fwd = spot * np.exp(0.05 * years)
    basis = 1.0 + 0.0005 * np.tanh(rng.standard_normal((n, n_ins)))
    mark = np.where(kind == "perpetual", spot * basis, fwd)
    o = np.flatnonzero(is_opt)
    lnk = np.log(strike[o][None, :] / fwd[:, o])
    iv = np.clip(atm[:, u_of[o]] * (1.0 + 0.8 * lnk**2) - 0.1 * lnk, 0.1, 3.0)
    px = black76_price_array(fwd[:, o].ravel(), np.tile(strike[o], n), years[:, o].ravel(),
                             iv.ravel(), np.tile(call[o], n).astype(np.int64), 0.0)
    mark[:, o] = np.maximum(px.reshape(n, len(o)) / fwd[:, o], 1e-6)     # inverse: coin
    iv_all = np.full((n, n_ins), np.nan)
    iv_all[:, o] = iv
    fwd_all = np.where(is_opt[None, :], fwd, np.nan)
    rep = np.repeat(times, n_ins)
    market = pa.table({
        "time": pa.array(rep).cast(pa.timestamp("ns", tz="UTC")),
        "symbol": pa.array([r["symbol"] for r in rows] * n, pa.string()),
        "mark_price": mark.ravel(),
        "mark_iv": pa.array(iv_all.ravel(), mask=np.isnan(iv_all.ravel())),
        "underlying_price": pa.array(fwd_all.ravel(), mask=np.isnan(fwd_all.ravel()))})
    index = pa.table({
        "time": pa.array(np.repeat(times, 2)).cast(pa.timestamp("ns", tz="UTC")),
        "underlying": und * n, "index_price": level.ravel()})

    # -- accounts: a profile, a size and a leverage each; slots (instrument, quantity at t0)
    slot_acc, slot_ins, slot_q = [], [], []
    names, assets, collateral = [], [], []
    for a in range(int(accounts)):
        profile = _PROFILES[a % len(_PROFILES)]
        notional = float(10 ** rng.uniform(4.5, 6.5))
        lev = float(rng.uniform(1.0, _LEVERAGE[profile]))
        b0, e0 = s0
        if profile == "long-perp":
            legs, asset = [(perp["BTC"], notional / 10)], "BTC"
        elif profile == "short-puts":
            legs, asset = [(opt[("BTC", 0, 1, "put")], -notional / b0 / 2),
                           (opt[("BTC", 0, 2, "put")], -notional / b0 / 2),
                           (perp["BTC"], notional / 40)], "BTC"
        elif profile == "eth-strangle":
            legs, asset = [(opt[("ETH", 0, 1, "put")], -notional / e0 / 2),
                           (opt[("ETH", 0, 5, "call")], -notional / e0 / 2)], "ETH"
        elif profile == "basis":
            legs, asset = [(perp["BTC"], notional / 10), (fut["BTC"], -notional / 10)], "BTC"
        elif profile == "long-vol":
            legs, asset = [(opt[("BTC", 1, 3, "call")], notional / b0 / 2),
                           (opt[("BTC", 1, 3, "put")], notional / b0 / 2)], "BTC"
        else:
            legs, asset = [(lin["BTC"], notional / b0 / 0.001),
                           (lin["ETH"], -notional / e0 / 0.01)], "USDT"
        price0 = {"BTC": b0, "ETH": e0, "USDT": 1.0}[asset]
        names.append(f"{profile}-{a:04d}")
        assets.append(asset)
        collateral.append(notional / lev / price0)
        for ins, q in legs:
            slot_acc.append(a)
            slot_ins.append(ins)
            slot_q.append(float(np.round(q, 4)))
    slot_acc = np.array(slot_acc, dtype=np.int64)
    slot_ins = np.array(slot_ins, dtype=np.int64)
    n_slot = len(slot_ins)
    cs = np.array([r["contract_size"] for r in rows])[slot_ins]
    inverse = np.array([r["settlement"] == "inverse" for r in rows])[slot_ins]
    s_opt = is_opt[slot_ins]
    qty = np.empty((n, n_slot))
    entry = np.full((n, n_slot), np.nan)
    bal = np.empty((n, len(names)))
    q_now = np.array(slot_q)
    e_now = np.where(s_opt, np.nan, mark[0, slot_ins])
    b_now = np.array(collateral)
    # options are bought and sold at the mark: premium out of (into) the balance
    np.subtract.at(b_now, slot_acc, np.where(s_opt, q_now * cs * mark[0, slot_ins], 0.0))

    # -- trades: about one a day per account, scaling its book
    n_trades = rng.poisson(max(days, 1), size=len(names))
    events = sorted((int(i), a) for a in range(len(names))
                    for i in rng.integers(1, max(n, 2), size=n_trades[a]) if i < n)
    noise = rng.uniform(-0.2, 0.2, size=len(events))
    q_start = np.array(slot_q)
    slots_of = [np.flatnonzero(slot_acc == a) for a in range(len(names))]
    last = 0
    for (i, a), eps in zip(events, noise):
        qty[last:i], entry[last:i], bal[last:i] = q_now, e_now, b_now
        last = i
        s = slots_of[a]
        # the whole book scaled, drifting back towards its starting size
        f = np.exp(eps - 0.3 * np.log(q_now[s[0]] / q_start[s[0]]))
        p = mark[i, slot_ins[s]]
        old, new = q_now[s], np.round(q_now[s] * f, 4)
        d = new - old
        fu = ~s_opt[s]
        grow = fu & (np.abs(new) > np.abs(old))
        inv_entry = np.where(inverse[s], (old / e_now[s] + d / p) / np.where(new == 0, 1, new),
                             0.0)
        lin_entry = (old * e_now[s] + d * p) / np.where(new == 0, 1, new)
        e_new = np.where(grow, np.where(inverse[s], 1.0 / np.where(inv_entry > 0, inv_entry,
                                                                   np.nan), lin_entry),
                         e_now[s])
        shrink = fu & ~grow
        realised = np.where(shrink, -d * cs[s] * np.where(inverse[s], 1.0 / e_now[s] - 1.0 / p,
                                                          p - e_now[s]), 0.0)
        premium = np.where(s_opt[s], d * cs[s] * p, 0.0)
        b_now[a] += float(np.nansum(realised) - premium.sum())
        q_now[s], e_now[s] = new, e_new
    qty[last:], entry[last:], bal[last:] = q_now, e_now, b_now

    symbols = np.array([r["symbol"] for r in rows], dtype=object)
    name_arr = np.array(names, dtype=object)
    keep = qty.ravel() != 0
    positions = pa.table({
        "time": pa.array(np.repeat(times, n_slot)[keep]).cast(pa.timestamp("ns", tz="UTC")),
        "account": pa.array(np.tile(name_arr[slot_acc], n)[keep].tolist(), pa.string()),
        "symbol": pa.array(np.tile(symbols[slot_ins], n)[keep].tolist(), pa.string()),
        "quantity": qty.ravel()[keep],
        "entry_price": pa.array(entry.ravel()[keep], mask=np.isnan(entry.ravel()[keep]))})
    balances = pa.table({
        "time": pa.array(np.repeat(times, len(names))).cast(pa.timestamp("ns", tz="UTC")),
        "account": pa.array(np.tile(name_arr, n).tolist(), pa.string()),
        "asset": pa.array(np.tile(np.array(assets, dtype=object), n).tolist(), pa.string()),
        "amount": bal.ravel()})
    tables = {"positions": positions, "instruments": instruments, "market": market,
              "index": index, "balances": balances}
    return tables if out is None else _write_history(tables, out)


def _check_history(out):
    """An ``out`` that is new or an empty directory (the history's parts must not mix with
    files already there, nor replace them)."""
    import os
    if out is not None and os.path.lexists(out) and (
            not os.path.isdir(out) or os.listdir(out)):
        raise MarginError("arguments", "out", "a new or empty directory for the history; "
                          f"{os.fspath(out)!r} " + ("holds files" if os.path.isdir(out) else
                                                    "is not a directory"))


def _write_history(tables, out):
    """``out/instruments.parquet`` and one Parquet dataset per timed table, a file per day."""
    import os

    import pyarrow.parquet as pq
    os.makedirs(out, exist_ok=True)
    paths = {}
    for name, t in tables.items():
        if "time" not in t.column_names:
            paths[name] = os.path.join(out, f"{name}.parquet")
            pq.write_table(t, paths[name])
            continue
        paths[name] = d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        day = t["time"].cast(pa.int64()).to_numpy() // _NS_DAY
        cut = np.flatnonzero(np.r_[True, day[1:] != day[:-1], True])
        for k, (a, b) in enumerate(zip(cut[:-1], cut[1:])):
            pq.write_table(t.slice(a, b - a), os.path.join(d, f"part-{k:05d}.parquet"),
                           row_group_size=256 * 1024)
    return paths


PRICES_START = "2024-01-01T00:00:00Z"
# (annual vols BTC, ETH, SOL; correlations BTC-ETH, BTC-SOL, ETH-SOL) per regime
_REGIMES = (("calm", (0.40, 0.55, 0.75), (0.80, 0.60, 0.65)),
            ("volatile", (1.00, 1.30, 1.70), (0.92, 0.85, 0.88)),
            ("correlation break", (0.50, 0.65, 0.90), (0.45, 0.05, 0.10)))


def prices(days=365, seed=0, step_hours=4, start=PRICES_START):
    """A deterministic multi-underlying price history with regime changes, for calibration:
    ``time, underlying, index_price`` every ``step_hours`` for BTC, ETH and SOL.

    Three regimes of equal length: **calm** (annual vols 40 / 55 / 75 %, correlations
    BTC-ETH 0.80, BTC-SOL 0.60, ETH-SOL 0.65), **volatile** (100 / 130 / 170 %, correlations
    0.92, 0.85, 0.88) and a **correlation break** (50 / 65 / 90 %, BTC-ETH 0.45, SOL almost
    uncorrelated: 0.05 and 0.10).  Log returns are Gaussian with those moments, from a
    seeded generator: the same arguments give the same table.  Start levels 42,000 /
    2,300 / 100.

    ``days`` is a whole number from 1 to 36,500, ``step_hours`` from 1 s (1/3600) to 24,
    ``seed`` a whole number >= 0, ``start`` a time the generated times keep before 2262, and
    at most 50 million rows are generated; anything else is a :class:`~pmrisk.MarginError`
    naming the argument.

    >>> from pmrisk.samples import prices
    >>> t = prices(days=10)
    >>> t.column_names, t.num_rows
    (['time', 'underlying', 'index_price'], 180)
    >>> t.slice(0, 3)["underlying"].to_pylist()
    ['BTC', 'ETH', 'SOL']
    """
    t0 = _check_args(
        "prices", whole={"days": (days, 1, 100 * 365)},
        numbers={"step_hours": (step_hours, 1 / 3600, 24.0)}, seed=seed,
        start=("start", start),
        span_ns=lambda: days * max(int(round(24 / step_hours)), 1)
        * int(step_hours * 3600 * 10**9),
        rows=lambda: 3 * days * max(int(round(24 / step_hours)), 1), sizes=("days",
                                                                            "step_hours"))
    rng = np.random.default_rng(seed)
    per_day = max(int(round(24 / step_hours)), 1)
    n = days * per_day
    dt = step_hours / (24.0 * 365.0)
    names = ["BTC", "ETH", "SOL"]
    level0 = np.log([42_000.0, 2_300.0, 100.0])
    z = rng.standard_normal((n, 3))
    r = np.empty((n, 3))
    bounds = np.linspace(0, n, len(_REGIMES) + 1).astype(int)
    for (_, vols, (c01, c02, c12)), a, b in zip(_REGIMES, bounds[:-1], bounds[1:]):
        rho = np.array([[1.0, c01, c02], [c01, 1.0, c12], [c02, c12, 1.0]])
        s = np.asarray(vols) * np.sqrt(dt)
        chol = np.linalg.cholesky(rho * np.outer(s, s))
        r[a:b] = z[a:b] @ chol.T - 0.5 * s**2
    logp = level0 + np.vstack([np.zeros((1, 3)), np.cumsum(r, axis=0)[:-1]])
    times = t0 + np.arange(n, dtype=np.int64) * int(step_hours * 3600 * 10**9)
    return pa.table({
        "time": pa.array(np.repeat(times, 3), pa.timestamp("ns", tz="UTC")),
        "underlying": pa.array(names * n, pa.string()),
        "index_price": pa.array(np.round(np.exp(logp).ravel(), 6), pa.float64())})


def futures_book(n_accounts=6, seed=0, valuation_time=DEMO_TIME):
    """A deterministic futures-only book for bracket models (``binance_um``): Binance's
    BTCUSDT (USDⓈ-M perpetual, 1 BTC per contract) and BTCUSD_PERP (COIN-M perpetual, 100 USD
    per contract), the symbols whose ladders pmrisk ships; balances in USDT and BTC, some
    accounts borrowing (negative amounts: margin loans).  Notionals span the first few
    brackets, one account reaching well into the ladder.

    Returns the keyword arguments of :func:`pmrisk.margin` (``positions``, ``instruments``,
    ``market``, ``index``, ``balances``) plus ``valuation_time``.

    >>> import pmrisk
    >>> from pmrisk.samples import futures_book
    >>> b = futures_book()
    >>> b["positions"].num_rows, sorted(set(b["instruments"]["kind"].to_pylist()))
    (12, ['perpetual'])
    >>> r = pmrisk.margin(**b, model="binance_um")
    >>> r.accounts.num_rows
    6
    """
    _check_args("futures_book", whole={"n_accounts": (n_accounts, 1, 1_000_000)}, seed=seed)
    rng = np.random.default_rng(seed)
    px = 66_000.0
    instruments = pa.table({
        "symbol": ["BTCUSDT", "BTCUSD_PERP"], "underlying": ["BTC", "BTC"],
        "kind": ["perpetual", "perpetual"], "settlement": ["linear", "inverse"],
        "contract_size": [1.0, 100.0]})
    market = pa.table({"symbol": ["BTCUSDT", "BTCUSD_PERP"],
                       "mark_price": [px * 1.0002, px * 0.9998]})
    index = pa.table({"underlying": ["BTC"], "index_price": [px]})
    acc, sym, qty, entry = [], [], [], []
    b_acc, b_asset, b_amt = [], [], []
    for a in range(n_accounts):
        name = f"um-{a:05d}" if n_accounts > 99 else f"um-{a:02d}"
        # USDⓈ-M notional from 20k USD to ~40M USD (log-uniform), COIN-M the opposite side
        usd_m = float(np.exp(rng.uniform(np.log(2e4), np.log(4e7))))
        side = 1.0 if rng.random() < 0.6 else -1.0
        hedge = float(rng.uniform(0.5, 1.0))
        q_um = round(side * usd_m / px, 3) or side * 0.001
        q_cm = -side * max(1.0, round(hedge * usd_m / 100.0))
        acc += [name, name]
        sym += ["BTCUSDT", "BTCUSD_PERP"]
        qty += [q_um, q_cm]
        e = round(px * (1.0 - float(rng.uniform(-0.01, 0.01))), 1)     # one entry: a hedge
        entry += [e, e]
        lev = float(rng.uniform(2.0, 40.0))                 # notional / collateral
        b_acc += [name, name]
        b_asset += ["USDT", "BTC"]
        borrow = rng.random() < 0.3
        b_amt += [round(usd_m / lev, 2), round(-0.1 * usd_m / lev / px, 6) if borrow
                  else round(0.2 * usd_m / lev / px, 6)]
    positions = pa.table({"account": acc, "symbol": sym, "quantity": qty,
                          "entry_price": entry})
    balances = pa.table({"account": b_acc, "asset": b_asset, "amount": b_amt})
    return {"positions": positions, "instruments": instruments, "market": market,
            "index": index, "balances": balances, "valuation_time": valuation_time}

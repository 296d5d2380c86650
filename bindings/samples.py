"""Deterministic sample books (no files, no network): the demo book and synthetic books of any
size for tests and benchmarks.

>>> b = demo_book()
>>> sorted(b)[:4], b["positions"].num_rows > 10
(['balances', 'index', 'instruments', 'market'], True)
"""

import numpy as np
import pyarrow as pa

from pmrisk.kernel.black76 import black76_price

DEMO_TIME = "2024-06-17T08:00:00Z"
_NS_DAY = 86_400 * 10**9


def _ts(s):
    return pa.scalar(s).cast(pa.timestamp("ns", tz="UTC")).value


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
    """
    rng = np.random.default_rng(seed)
    t0 = _ts(valuation_time)
    und = list(underlyings)
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

"""Validated inputs of one margin call as plain arrays (SPEC §1, §11).

``load_book`` does every check before anything is computed, so a call that fails validation
computes nothing.  Instruments are compacted to the *active* ones (held or ordered).
"""

import time as _time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pmrisk.kernel.instruments import (CALL, FUTURE, INVERSE, KINDS, OPTION, OPTION_TYPES,
                                       PERPETUAL, SETTLEMENTS, SPOT)  # noqa: F401

from . import schema
from ._arrow import (NAT, as_table, check_columns, codes, duplicated, float_column, has,
                     lookup, raise_rows, str_column, time_column, to_ns)
from .errors import MarginError
from .units import is_priced

NS_PER_DAY = 86_400 * 10**9
MAX_IV = 100.0          # 10,000 %: anything above is a unit mistake (percent, not decimal)
NS_PER_YEAR = 365 * NS_PER_DAY


@dataclass
class Book:
    valuation_ns: int
    accounts: pa.Array          # account names (string), code = row
    # active instruments (held or ordered), compact codes 0..n_instr-1
    symbols: pa.Array
    und_code: np.ndarray        # per active instrument, row in und_names
    und_names: list             # underlying names of the active instruments
    kind: np.ndarray
    settlement: np.ndarray
    contract_size: np.ndarray
    mark: np.ndarray
    forward: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    expiry_ns: np.ndarray
    years: np.ndarray           # (expiry - valuation)/365d, 0 for spot/perpetual
    mark_iv: np.ndarray         # NaN for non-options
    index_prices: dict          # asset name -> USD price (index table)
    # positions
    pos_account: np.ndarray
    pos_instr: np.ndarray
    quantity: np.ndarray
    entry_price: np.ndarray     # NaN when absent
    # open orders
    ord_account: np.ndarray
    ord_instr: np.ndarray
    ord_qty: np.ndarray
    ord_id: pa.Array
    # balances
    bal_account: np.ndarray
    bal_asset: list
    bal_amount: np.ndarray
    # reserves
    res_account: np.ndarray
    res_unit: list
    res_mmp: np.ndarray
    res_oo: np.ndarray


def read_index(idx):
    """``{underlying: USD price}`` of a validated index table (one row per underlying,
    prices finite and > 0)."""
    und = str_column(idx, "underlying")
    dup = duplicated(codes(und)[0])
    if dup.any():
        raise_rows(idx, "index", "underlying", dup, "one row per underlying")
    px = float_column(idx, "index", "index_price", positive=True)
    return dict(zip(und.to_pylist(), px.tolist()))


def _enum(table, name, col, allowed):
    """Codes (index into ``allowed``) of a string column; -1 for nulls; unknown -> error."""
    arr = str_column(table, col)
    code = lookup(arr, pa.array(allowed, pa.string()))
    bad = (code < 0) & ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    if bad.any():
        raise_rows(table, name, col, bad, f"one of {allowed}")
    return code


def load_book(positions, instruments, market, index, balances, open_orders, reserves,
              model, valuation_time):
    tables = {
        "positions": as_table(positions, "positions"),
        "instruments": as_table(instruments, "instruments"),
        "market": as_table(market, "market"),
        "index": as_table(index, "index"),
        "balances": as_table(balances, "balances"),
        "open_orders": as_table(open_orders, "open_orders"),
        "reserves": as_table(reserves, "reserves"),
    }
    specs = {"positions": schema.POSITIONS, "instruments": schema.INSTRUMENTS,
             "market": schema.MARKET, "index": schema.INDEX, "balances": schema.BALANCES,
             "open_orders": schema.OPEN_ORDERS, "reserves": schema.RESERVES}
    for name in ("positions", "instruments", "market", "index"):
        if tables[name] is None:
            raise MarginError(name, None, "a table (it is required)")
    for name, t in tables.items():
        if t is not None:
            check_columns(t, name, specs[name])
    ins, pos, mkt, idx = (tables[k] for k in ("instruments", "positions", "market", "index"))
    bal, oo, res = tables["balances"], tables["open_orders"], tables["reserves"]
    vt = int(_time.time_ns()) if valuation_time is None else to_ns(valuation_time)

    # -- instruments -------------------------------------------------------------------------
    sym = str_column(ins, "symbol")
    sym_codes, _ = codes(sym)
    dup = duplicated(sym_codes)
    if dup.any():
        raise_rows(ins, "instruments", "symbol", dup, "unique symbols (one row per instrument)")
    kind = _enum(ins, "instruments", "kind", KINDS)
    settlement = _enum(ins, "instruments", "settlement", SETTLEMENTS)
    csize = float_column(ins, "instruments", "contract_size", positive=True)
    n_ins = ins.num_rows
    is_opt = kind == OPTION
    dated = (kind == FUTURE) | is_opt
    if has(ins, "expiry"):
        expiry = time_column(ins, "instruments", "expiry")
    else:
        expiry = np.full(n_ins, NAT, dtype=np.int64)
    if (dated & (expiry == NAT)).any():
        raise_rows(ins, "instruments", "expiry", dated & (expiry == NAT),
                   "an expiry for every future and option", hint="Add an 'expiry' timestamp")
    if has(ins, "strike"):
        strike = float_column(ins, "instruments", "strike", positive=True, nullable=True)
    else:
        strike = np.full(n_ins, np.nan)
    if (is_opt & np.isnan(strike)).any():
        raise_rows(ins, "instruments", "strike", is_opt & np.isnan(strike),
                   "a strike > 0 for every option")
    ot = (_enum(ins, "instruments", "option_type", OPTION_TYPES) if has(ins, "option_type")
          else np.full(n_ins, -1, dtype=np.int64))
    missing_ot = is_opt & (ot < 0)
    if missing_ot.any():
        raise_rows(ins, "instruments", "option_type", missing_ot, "'call' or 'put' for options")
    is_call = (ot == CALL).astype(np.int64)
    bad = (kind == SPOT) & (settlement == INVERSE)
    if bad.any():
        raise_rows(ins, "instruments", "settlement", bad, "'linear' for spot instruments")
    und_all_code, und_all_names = codes(str_column(ins, "underlying"))

    # -- positions and orders: symbols must be known ------------------------------------------
    pos_sym = str_column(pos, "symbol")
    pos_row = lookup(pos_sym, sym)
    if (pos_row < 0).any():
        raise_rows(pos, "positions", "symbol", pos_row < 0, "symbols listed in instruments")
    quantity = float_column(pos, "positions", "quantity")
    entry = (float_column(pos, "positions", "entry_price", positive=True, nullable=True)
             if has(pos, "entry_price") else np.full(pos.num_rows, np.nan))
    if oo is not None:
        ord_row = lookup(str_column(oo, "symbol"), sym)
        if (ord_row < 0).any():
            raise_rows(oo, "open_orders", "symbol", ord_row < 0, "symbols listed in instruments")
        ord_qty = float_column(oo, "open_orders", "quantity")
        float_column(oo, "open_orders", "price", positive=True)
    else:
        ord_row = np.zeros(0, dtype=np.int64)
        ord_qty = np.zeros(0)

    # -- accounts (positions, balances, orders, reserves) ------------------------------------
    acc_parts = [str_column(pos, "account")]
    for t in (bal, oo, res):
        if t is not None:
            acc_parts.append(str_column(t, "account"))
    all_acc = pa.concat_arrays(acc_parts)
    acc_codes, accounts = codes(all_acc)
    split = np.cumsum([len(a) for a in acc_parts])[:-1]
    acc_chunks = np.split(acc_codes, split)
    pos_account = acc_chunks[0]
    k = 1
    bal_account = ord_account = res_account = np.zeros(0, dtype=np.int64)
    if bal is not None:
        bal_account = acc_chunks[k]
        k += 1
    if oo is not None:
        ord_account = acc_chunks[k]
        k += 1
    if res is not None:
        res_account = acc_chunks[k]
    dup = duplicated(pos_account, pos_row)
    if dup.any():
        raise_rows(pos, "positions", "symbol", dup,
                   "one row per (account, symbol)", hint="Aggregate duplicate rows first")

    # -- expired instruments --------------------------------------------------------------
    expired_ins = dated & (expiry != NAT) & (expiry < vt)
    if expired_ins.any():
        if model["expired_positions"] == "ignore":
            keep = ~expired_ins[pos_row]
            pos_row, quantity, entry, pos_account = (a[keep] for a in
                                                     (pos_row, quantity, entry, pos_account))
            pos = pos.filter(pa.array(keep))
            okeep = ~expired_ins[ord_row]
            ord_row, ord_qty, ord_account = ord_row[okeep], ord_qty[okeep], ord_account[okeep]
            if oo is not None:
                oo = oo.filter(pa.array(okeep))
        else:
            held = expired_ins[pos_row]
            if held.any():
                raise_rows(pos, "positions", "symbol", held,
                           "instruments not past expiry at the valuation time",
                           hint="Drop them, or set expired_positions = 'ignore' in the model")
            if expired_ins[ord_row].any():
                raise_rows(oo, "open_orders", "symbol", expired_ins[ord_row],
                           "instruments not past expiry at the valuation time")

    # -- market ---------------------------------------------------------------------------
    mkt_sym = str_column(mkt, "symbol")
    mkt_row = lookup(mkt_sym, sym)
    if (mkt_row < 0).any():
        raise_rows(mkt, "market", "symbol", mkt_row < 0, "symbols listed in instruments")
    mkt_codes, _ = codes(mkt_sym)
    dup = duplicated(mkt_codes)
    if dup.any():
        raise_rows(mkt, "market", "symbol", dup, "one row per symbol")
    mark_m = float_column(mkt, "market", "mark_price", positive=True)
    iv_m = (float_column(mkt, "market", "mark_iv", positive=True, nullable=True)
            if has(mkt, "mark_iv") else np.full(mkt.num_rows, np.nan))
    if (iv_m > MAX_IV).any():
        raise_rows(mkt, "market", "mark_iv", iv_m > MAX_IV,
                   f"annualised vols as decimals <= {MAX_IV:g} (0.6 = 60 %)")
    fwd_m = (float_column(mkt, "market", "underlying_price", positive=True, nullable=True)
             if has(mkt, "underlying_price") else np.full(mkt.num_rows, np.nan))

    # -- active instruments -----------------------------------------------------------------
    active = np.unique(np.concatenate([pos_row, ord_row]))
    ins_to_active = np.full(n_ins, -1, dtype=np.int64)
    ins_to_active[active] = np.arange(len(active))
    mkt_of_ins = np.full(n_ins, -1, dtype=np.int64)
    mkt_of_ins[mkt_row] = np.arange(len(mkt_row))
    no_mark = mkt_of_ins[active] < 0
    if no_mark.any():
        missing = np.isin(pos_row, active[no_mark])
        if missing.any():
            raise_rows(pos, "positions", "symbol", missing, "a market row for every held symbol")
        raise_rows(oo, "open_orders", "symbol", np.isin(ord_row, active[no_mark]),
                   "a market row for every ordered symbol")
    m_rows = mkt_of_ins[active]
    a_kind = kind[active]
    opt_no_iv = (a_kind == OPTION) & np.isnan(iv_m[m_rows])
    if opt_no_iv.any():
        mask = np.zeros(mkt.num_rows, dtype=bool)
        mask[m_rows[opt_no_iv]] = True
        raise_rows(mkt, "market", "mark_iv", mask, "a mark_iv > 0 for every held option")

    # -- index ----------------------------------------------------------------------------
    index_prices = read_index(idx)
    # compact underlying codes of the active instruments
    used, a_und_code = np.unique(und_all_code[active], return_inverse=True)
    a_und_code = a_und_code.ravel().astype(np.int64)
    und_names = und_all_names.take(pa.array(used, pa.int64())).to_pylist()
    missing = sorted(u for u in und_names if u not in index_prices)
    if missing:
        raise MarginError("index", "underlying", "a row for every underlying held",
                          rows=[(u,) for u in missing], keys=("underlying",),
                          hint="Add its index_price")

    und_px = np.array([index_prices[u] for u in und_names], dtype=np.float64)
    forward = np.where(np.isnan(fwd_m[m_rows]), und_px[a_und_code], fwd_m[m_rows])
    a_exp = expiry[active]
    years = np.where(a_exp == NAT, 0.0, (a_exp - vt) / NS_PER_YEAR)
    years = np.where(a_kind == SPOT, 0.0, np.where(a_kind == PERPETUAL, 0.0, years))

    # -- balances and reserves --------------------------------------------------------------
    if bal is not None:
        bal_asset = str_column(bal, "asset").to_pylist()
        bal_amount = float_column(bal, "balances", "amount")
        asset_codes, _ = codes(str_column(bal, "asset"))
        dup = duplicated(bal_account, asset_codes)
        if dup.any():
            raise_rows(bal, "balances", "asset", dup, "one row per (account, asset)",
                       hint="Add the amounts up first (collateral tiers apply to the total)")
    else:
        bal_asset, bal_amount = [], np.zeros(0)
    if res is not None:
        res_unit = str_column(res, "unit").to_pylist()
        lin = model["linear_settlement_currency"]
        bad = np.array([len(u.split("/")) != 2 or not all(u.split("/"))
                        or u.split("/")[1] not in (u.split("/")[0], lin) for u in res_unit],
                       dtype=bool)
        if bad.any():
            raise_rows(res, "reserves", "unit", bad, "units this model forms: 'COIN/COIN' "
                       f"(inverse) or 'COIN/{lin}' (linear)")
        res_mmp = (float_column(res, "reserves", "mmp_margin")
                   if has(res, "mmp_margin") else np.zeros(res.num_rows))
        res_oo = (float_column(res, "reserves", "open_orders_margin")
                  if has(res, "open_orders_margin") else np.zeros(res.num_rows))
        for col, v in (("mmp_margin", res_mmp), ("open_orders_margin", res_oo)):
            if (v < 0).any():
                raise_rows(res, "reserves", col, v < 0, "amounts >= 0")
    else:
        res_unit, res_mmp, res_oo = [], np.zeros(0), np.zeros(0)

    # -- every asset that must be priced in USD is priced (index row or stablecoin) --------
    stable = set(model["stablecoins"])
    priced = lambda a: is_priced(a, index_prices, stable)  # noqa: E731
    lin = model["linear_settlement_currency"]
    if (settlement[active] != INVERSE).any() and not priced(lin):
        raise MarginError("index", "underlying", "an index row for the linear settlement "
                          f"currency {lin!r} (or list it in the model's stablecoins)",
                          rows=[(lin,)], keys=("underlying",))
    if bal is not None:
        bad = np.array([not priced(a) for a in bal_asset], dtype=bool)
        if bad.any():
            raise_rows(bal, "balances", "asset", bad, "assets with an index row or a "
                       "stablecoin", hint="Add an index_price for the asset")
    if res is not None:
        bad = np.array([not all(priced(x) for x in u.split("/")) for u in res_unit], dtype=bool)
        if bad.any():
            raise_rows(res, "reserves", "unit", bad, "units whose underlying and settlement "
                       "currency have an index row (or are stablecoins)")

    return Book(
        valuation_ns=vt, accounts=accounts,
        symbols=sym.take(pa.array(active, type=pa.int64())), und_code=a_und_code,
        und_names=und_names,
        kind=a_kind, settlement=settlement[active], contract_size=csize[active],
        mark=mark_m[m_rows], forward=np.ascontiguousarray(forward),
        strike=np.where(np.isnan(strike[active]), 1.0, strike[active]),
        is_call=np.ascontiguousarray(np.where(a_kind == OPTION, is_call[active], CALL)),
        expiry_ns=a_exp, years=np.ascontiguousarray(years, dtype=np.float64),
        mark_iv=iv_m[m_rows], index_prices=index_prices,
        pos_account=pos_account, pos_instr=ins_to_active[pos_row], quantity=quantity,
        entry_price=entry,
        ord_account=ord_account, ord_instr=ins_to_active[ord_row], ord_qty=ord_qty,
        ord_id=(oo.column("order_id").combine_chunks() if oo is not None else pa.array([])),
        bal_account=bal_account, bal_asset=bal_asset, bal_amount=bal_amount,
        res_account=res_account, res_unit=res_unit, res_mmp=res_mmp, res_oo=res_oo,
    )

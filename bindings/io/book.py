"""Validated inputs of one margin call as plain arrays.

``load_book`` does every check before anything is computed, so a call that fails validation
computes nothing.

Snapshots: any input but ``instruments`` may carry a ``time`` column; each distinct
time is a snapshot, valued at that time with the rows of that time, and the whole history is
one book: an *account* is an (account, snapshot) pair and an *instrument* an (instrument,
snapshot) instance (its marks and time to expiry are the snapshot's), so one engine pass
margins every snapshot.  The snapshot times are those of the timed account-state tables
(positions, balances, open orders, reserves: an account that is flat at some time but holds
balances is still a snapshot), or, when none of those is timed, of the timed market tables.
An untimed account-state table applies to every snapshot; an untimed market or index table
to every snapshot as well.  Rows match a snapshot by exact time (no as-of join); market rows
at other times are not used.  Without any ``time`` column the book is one snapshot at
``valuation_time``.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pmrisk.kernel.instruments import (CALL, FUTURE, INVERSE, KINDS, OPTION, OPTION_TYPES,
                                       SETTLEMENTS, SPOT)

from pmrisk.kernel import validate
from pmrisk.kernel.instances import instance_columns, pair_keys
from pmrisk.kernel.keys import pairs_in_order, sorted_runs
from pmrisk.kernel.rowkeys import split_pairs
from pmrisk.kernel.layout import unit_prices

from . import schema
from .arrow import (BOUNDS, NAT, NO_NUMBERS, NO_STRINGS, SMALL, as_table, check_columns, codes,
                    duplicated, enum_codes, float_column, has, kernel_args, lookup, name_buffers,
                    number_parts, raise_rows, row_keys, str_buffers, str_column, str_parts,
                    time_column, unique_keys, valuation_ns)
from ..errors import MarginError
from .schema import ACCOUNT_STATE, TIME, snapshot_tables

FILL_HINT = ("Pass fill_market=\"forward\" to carry each symbol's latest earlier market row "
             "(and each underlying's index row) forward to the snapshot times it lacks")


@dataclass
class Book:
    """The validated arrays of one margin call.  Every numeric array is read-only (the
    engine's kernels take them as they are); :meth:`with_own_market` gives writeable market
    values to a caller that moves them."""
    timed: bool                 # the inputs carried a time column (results get one)
    snap_ns: np.ndarray         # valuation time of each snapshot, ns UTC
    accounts: pa.Array          # account name of each (account, snapshot) pair, code = row
    acc_snap: np.ndarray        # snapshot of each account pair
    # active instrument instances (held or ordered), compact codes 0..n_instr-1
    symbols: pa.Array
    instr_snap: np.ndarray      # snapshot of each instance
    und_code: np.ndarray        # per instance, row in und_names
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
    assets: list                # names of the index table's underlyings
    asset_px: np.ndarray        # (n_snap, n_assets) USD price, NaN where no index row
    stablecoins: frozenset
    # positions
    pos_account: np.ndarray
    pos_instr: np.ndarray
    quantity: np.ndarray
    entry_price: np.ndarray     # NaN when absent
    leverage: np.ndarray        # the position's own leverage (binance_um IM), NaN when absent
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

    def with_own_market(self):
        """This book with writeable copies of its market values (``mark``, ``mark_iv``,
        ``forward``, ``asset_px``), for a caller that moves them in place (the Monitor's
        ticks).  :func:`load_book` returns every numeric array read-only: nothing else
        writes them, and the kernels take them as they are."""
        return dataclasses.replace(self, mark=self.mark.copy(), mark_iv=self.mark_iv.copy(),
                                   forward=self.forward.copy(), asset_px=self.asset_px.copy())

    @property
    def valuation_ns(self):
        return int(self.snap_ns[0]) if len(self.snap_ns) else 0

    def price_of(self, asset, snap):
        """USD price of one asset at the snapshots ``snap``: its index row, else 1 for a
        stablecoin, else NaN (unpriced)."""
        snap = np.asarray(snap, dtype=np.int64)
        if asset in self.assets:
            px = self.asset_px[snap, self.assets.index(asset)]
        else:
            px = np.full(len(snap), np.nan)
        return np.where(np.isnan(px) & (asset in self.stablecoins), 1.0, px)

    def prices(self, assets, snap):
        """USD price of each asset name at each snapshot: its index row, else 1 for a
        stablecoin, else NaN (unpriced).  One dictionary pass over the names."""
        snap = np.asarray(snap, dtype=np.int64)
        if not len(assets):
            return np.zeros(0)
        code, names = codes(pa.array(assets, pa.string()))
        col_of = {a: i for i, a in enumerate(self.assets)}
        col = np.array([col_of.get(a, -1) for a in names.to_pylist()], dtype=np.int64)
        stable = np.array([a in self.stablecoins for a in names.to_pylist()], dtype=np.int64)
        return unit_prices(*kernel_args(col, stable, code, snap, self.asset_px))


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
    code = enum_codes(arr, allowed)
    # -1 only for nulls (each null is -1): nothing unknown
    if int(np.count_nonzero(code < 0)) == arr.null_count:
        return code
    bad = (code < 0) & ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    if bad.any():
        raise_rows(table, name, col, bad, f"one of {allowed}")
    return code


class _Rows:
    """The rows of one input table as the book sees them: ``row[k]`` (a row of the table) at
    snapshot ``snap[k]`` (-1: every snapshot, for untimed market and index tables)."""

    def __init__(self, table, row, snap, every=False):
        self.table = table
        self.row = row
        self.snap = snap
        self.every = every          # row is arange(table.num_rows): every row, in order

    def pick(self, values):
        """``values`` (one per table row) at the book's rows."""
        return values if self.every else values[self.row]

    def __len__(self):
        return len(self.row)

    def period(self):
        """Rows of the first snapshot when every row is a book row in snapshot order (a
        history whose snapshots may repeat the same rows: a guess the kernels check), else
        0."""
        if not (self.every and len(self.snap)):
            return 0
        return int(np.searchsorted(self.snap, self.snap[0], side="right"))

    def table_mask(self, bad):
        """Mask over the table's rows of the book rows where ``bad``."""
        m = np.zeros(self.table.num_rows, dtype=bool)
        m[self.row[bad]] = True
        return m


def _raise(rows, name, column, bad, expected, snap_ns, hint=None, timed=False):
    """MarginError for the book rows ``bad`` of ``rows`` at the first snapshot that has any:
    names the table rows' keys and, when the inputs are timed, that snapshot's time
    (``err.time``)."""
    when = None
    if timed and len(snap_ns):
        s = rows.snap[bad]
        s = s[s >= 0]
        if len(s):
            first = s.min()
            bad = bad & ((rows.snap == first) | (rows.snap < 0))
            when = snap_ns[first]
    mask = rows.table_mask(bad)
    keys_rows, keys = row_keys(rows.table, name, mask)
    raise MarginError(name, column, expected, rows=keys_rows, keys=keys,
                      n_bad=int(mask.sum()), hint=hint, time=when)


def _snapshots(tables, valuation_time):
    """Snapshot times and, per table, its :class:`_Rows`."""
    timed = [k for k, t in tables.items() if has(t, TIME)]
    if "instruments" in timed:
        raise MarginError("instruments", TIME, "no time column: instruments are static "
                          "reference data (one row per symbol)",
                          hint="Give time-varying marks in the market table")
    if not timed:
        vt = valuation_ns(valuation_time)
        return np.array([vt], dtype=np.int64), {
            k: _Rows(t, np.arange(t.num_rows), np.zeros(t.num_rows, dtype=np.int64), True)
            for k, t in tables.items() if t is not None}, False
    valuation_ns(valuation_time, timed=True)
    ns = {}
    for k in timed:
        check_columns(tables[k], k, {TIME: ("time", True, False)})
        t = time_column(tables[k], k, TIME)
        if (t == NAT).any():
            raise_rows(tables[k], k, TIME, t == NAT, "a time on every row (no nulls)")
        ns[k] = t
    state = snapshot_tables(timed)
    runs = {k: _runs(ns[k]) for k in timed}
    snap_ns = np.unique(np.concatenate([runs[k][0] if runs[k] else ns[k] for k in state]))
    n_snap = len(snap_ns)
    rows = {}
    for k, t in tables.items():
        if t is None:
            continue
        if k in ns:
            # rows in time order: match each distinct time once, not every row
            values, run_of = runs[k] if runs[k] else (ns[k], None)
            s = np.searchsorted(snap_ns, values)
            s_clip = np.minimum(s, max(n_snap - 1, 0))
            keep = (s < n_snap) & (snap_ns[s_clip] == values) if n_snap else \
                np.zeros(len(values), dtype=bool)
            every = False
            if run_of is None:
                r, s = np.flatnonzero(keep), s[keep]
            elif keep.all():
                r, s, every = np.arange(t.num_rows), s[run_of], True
            else:
                r = np.flatnonzero(keep[run_of])
                s = s[run_of[r]]
            rows[k] = _Rows(t, r, s.astype(np.int64, copy=False), every)
        elif k in ACCOUNT_STATE:             # applies to every snapshot
            rows[k] = _Rows(t, np.tile(np.arange(t.num_rows), n_snap),
                            np.repeat(np.arange(n_snap), t.num_rows))
        else:                                # market, index, instruments: any snapshot
            rows[k] = _Rows(t, np.arange(t.num_rows), np.full(t.num_rows, -1, np.int64), True)
    return snap_ns, rows, True


def _split_rows(values, names, lengths):
    """``{name: its run of values}`` of consecutive runs of ``lengths`` (views)."""
    out, start = {}, 0
    for name, n in zip(names, lengths):
        out[name] = values[start:start + n]
        start += n
    return out


def _joined(arrays):
    """``numpy.concatenate(arrays)``, without the copy when there is one array."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _runs(ns):
    """``(distinct times, run of each row)`` of a time column in non-decreasing order (one
    pass, no sort), else None."""
    values, run, ok = sorted_runs(*kernel_args(ns))
    return (values, run) if ok else None


def check_mark_iv(market, iv, max_iv):
    """Refuse market rows whose ``mark_iv`` is above ``max_iv`` (the model's bound, default
    5.0 = 500 %): ``mark_iv`` is an annualised vol as a decimal (0.60 for 60 %), and a value
    like 60 is almost always a percentage as venues' APIs publish it."""
    bad = iv > max_iv
    if bad.any():
        raise_rows(market, "market", "mark_iv", bad, f"annualised vols as decimals <= "
                   f"{max_iv:g} (model parameter max_iv)", hint="mark_iv is a decimal: 0.60 "
                   "for 60 %; a value like 60 is a percentage (as Deribit's API publishes "
                   "it): divide by 100")


@dataclass
class Instruments:
    """The instruments table read and checked: per row, its codes and values."""
    symbol: pa.Array            # the symbols (a plain string array)
    index: tuple                # kernel.keys.str_index of the symbols (None: by Arrow)
    kind: np.ndarray
    settlement: np.ndarray
    contract_size: np.ndarray
    expiry: np.ndarray          # ns UTC, NAT when none
    strike: np.ndarray          # NaN when none
    is_call: np.ndarray         # 1 for a call, else 0
    und_code: np.ndarray        # code of the underlying, in order of first appearance
    und_names: pa.Array         # the underlying of each code

    def rows_of(self, symbols):
        """Row of each of ``symbols`` (a string array) in the table, -1 when not listed."""
        if self.index is None:
            return lookup(symbols, self.symbol)
        return validate.lookup_rows(str_parts(symbols), str_buffers(self.symbol), self.index,
                                    0)


def read_instruments(ins):
    """:class:`Instruments` of the instruments table: one kernel pass
    (:func:`pmrisk.kernel.validate.instruments`) when every row passes, else the checks rule
    by rule, which name the rows of the first rule broken."""
    got = _instruments_in_one_pass(ins)
    return got if got is not None else _instruments_by_rule(ins)


def _instruments_in_one_pass(ins):
    """:class:`Instruments` by one kernel pass, or None when a rule is broken or a column is
    of a layout the kernel does not read (the checks by rule then run)."""
    n = ins.num_rows
    sym = str_column(ins, "symbol")
    csize = number_parts(ins, "contract_size")
    strike = number_parts(ins, "strike") if has(ins, "strike") else (NO_NUMBERS, None)
    if csize is None or strike is None:
        return None
    expiry = None
    if has(ins, "expiry"):
        try:
            expiry = time_column(ins, "instruments", "expiry")
        except MarginError:
            return None
    und = str_column(ins, "underlying")
    kind, settlement, is_call, und_code, und_first, index, bad = validate.instruments(
        str_parts(sym), str_parts(und), str_parts(str_column(ins, "kind")),
        str_parts(str_column(ins, "settlement")),
        str_parts(str_column(ins, "option_type")) if has(ins, "option_type") else NO_STRINGS,
        csize[0], strike[0],
        kernel_args(expiry)[0] if expiry is not None else NO_NUMBERS[0].view(np.int64),
        _NAMES, BOUNDS)
    if bad.any():
        return None
    return Instruments(
        symbol=sym, index=index, kind=kind, settlement=settlement, contract_size=csize[1],
        expiry=expiry if expiry is not None else np.full(n, NAT, dtype=np.int64),
        strike=strike[1] if strike[1] is not None else np.full(n, np.nan), is_call=is_call,
        und_code=und_code,
        und_names=und.slice(int(und_first[0]), 1) if len(und_first) == 1
        else und.take(pa.array(und_first, pa.int64())))


def _instruments_by_rule(ins):
    """:class:`Instruments` by the checks one rule at a time (the first broken is raised)."""
    sym = str_column(ins, "symbol")
    dup = duplicated(codes(sym)[0])
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
    und_code, und_names = codes(str_column(ins, "underlying"))
    return Instruments(symbol=sym, index=None, kind=kind, settlement=settlement,
                       contract_size=csize, expiry=expiry, strike=strike, is_call=is_call,
                       und_code=und_code, und_names=und_names)


@dataclass
class Positions:
    """The positions table read and checked, per row of the table."""
    ins_row: np.ndarray         # instruments row of the symbol
    quantity: np.ndarray
    entry_price: np.ndarray     # NaN when none
    leverage: np.ndarray        # NaN when none
    account_codes: np.ndarray   # codes of the account names (None: not coded here)
    account_names: pa.Array     # the name of each code
    repeated: int = -1          # rows repeating an earlier (account, symbol); -1 not counted


def read_positions(pos, instruments, period=0):
    """:class:`Positions` of the positions table (``instruments``: :class:`Instruments`):
    one kernel pass (:func:`pmrisk.kernel.validate.positions`) when every row passes, else
    the checks rule by rule.  ``period``: the rows of the first snapshot when the table's
    snapshots repeat its rows in the same order (a guess the kernel checks; 0: none)."""
    if instruments.index is not None:
        got = _positions_in_one_pass(pos, instruments, period)
        if got is not None:
            return got
    return _positions_by_rule(pos, instruments)


def _optional_numbers(table, col, values=True):
    return number_parts(table, col, values) if has(table, col) else (NO_NUMBERS, None)


def _positions_in_one_pass(pos, instruments, period):
    n = pos.num_rows
    qty, entry, lev = (number_parts(pos, "quantity"), _optional_numbers(pos, "entry_price"),
                       _optional_numbers(pos, "leverage"))
    if qty is None or entry is None or lev is None:
        return None
    acc = str_column(pos, "account")
    ins_row, acc_code, acc_first, repeated, bad = validate.positions(
        str_parts(str_column(pos, "symbol")), str_parts(acc), qty[0], entry[0], lev[0],
        str_buffers(instruments.symbol), instruments.index, period, BOUNDS)
    if bad.any():
        return None
    return Positions(
        ins_row=ins_row, quantity=qty[1],
        entry_price=entry[1] if entry[1] is not None else np.full(n, np.nan),
        leverage=lev[1] if lev[1] is not None else np.full(n, np.nan),
        # the accounts coded in the same pass, a long column too: a row equal to the one
        # before (an account's run of positions) or a period before (the same rows at the
        # next snapshot) is not hashed; Arrow's hash took 5 ms more CPU on backtest-100k
        account_codes=acc_code,
        account_names=acc.slice(int(acc_first[0]), 1)
        if len(acc_first) == 1 else acc.take(pa.array(acc_first, pa.int64())),
        repeated=int(repeated))


def _positions_by_rule(pos, instruments):
    pos_row = instruments.rows_of(str_column(pos, "symbol"))
    if (pos_row < 0).any():
        raise_rows(pos, "positions", "symbol", pos_row < 0, "symbols listed in instruments")
    quantity = float_column(pos, "positions", "quantity")
    entry = (float_column(pos, "positions", "entry_price", positive=True, nullable=True)
             if has(pos, "entry_price") else np.full(pos.num_rows, np.nan))
    lev = (float_column(pos, "positions", "leverage", positive=True, nullable=True)
           if has(pos, "leverage") else np.full(pos.num_rows, np.nan))
    return Positions(ins_row=pos_row, quantity=quantity, entry_price=entry, leverage=lev,
                     account_codes=None, account_names=None)


@dataclass
class Market:
    """The market table read and checked, per row of the table."""
    ins_row: np.ndarray         # instruments row of the symbol
    mark_price: np.ndarray
    mark_iv: np.ndarray         # NaN when none
    underlying_price: np.ndarray  # NaN when none
    repeated: int = -1          # rows whose symbol an earlier row has; -1 not counted


def read_market(mkt, instruments, max_iv):
    """:class:`Market` of the market table: one kernel pass
    (:func:`pmrisk.kernel.validate.market`) when every row passes, else the checks rule by
    rule."""
    if instruments.index is not None:
        got = _market_in_one_pass(mkt, instruments, max_iv)
        if got is not None:
            return got
    return _market_by_rule(mkt, instruments, max_iv)


def _market_in_one_pass(mkt, instruments, max_iv):
    n = mkt.num_rows
    mark, iv, fwd = (number_parts(mkt, "mark_price"), _optional_numbers(mkt, "mark_iv"),
                     _optional_numbers(mkt, "underlying_price"))
    if mark is None or iv is None or fwd is None:
        return None
    ins_row, repeated, bad = validate.market(
        str_parts(str_column(mkt, "symbol")), mark[0], iv[0], fwd[0], float(max_iv),
        str_buffers(instruments.symbol), instruments.index, BOUNDS)
    if bad.any():
        return None
    return Market(ins_row=ins_row, mark_price=mark[1],
                  mark_iv=iv[1] if iv[1] is not None else np.full(n, np.nan),
                  underlying_price=fwd[1] if fwd[1] is not None else np.full(n, np.nan),
                  repeated=int(repeated))


def _market_by_rule(mkt, instruments, max_iv):
    ins_row = instruments.rows_of(str_column(mkt, "symbol"))
    if (ins_row < 0).any():
        raise_rows(mkt, "market", "symbol", ins_row < 0, "symbols listed in instruments")
    mark = float_column(mkt, "market", "mark_price", positive=True)
    iv = (float_column(mkt, "market", "mark_iv", positive=True, nullable=True)
          if has(mkt, "mark_iv") else np.full(mkt.num_rows, np.nan))
    check_mark_iv(mkt, iv, max_iv)
    fwd = (float_column(mkt, "market", "underlying_price", positive=True, nullable=True)
           if has(mkt, "underlying_price") else np.full(mkt.num_rows, np.nan))
    return Market(ins_row=ins_row, mark_price=mark, mark_iv=iv, underlying_price=fwd)


_NAMES = (name_buffers(KINDS), name_buffers(SETTLEMENTS), name_buffers(OPTION_TYPES))
_NO_ORDER_IDS = pa.array([], pa.null())         # Arrow arrays are immutable: one for all


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
    snap_ns, R, timed = _snapshots(tables, valuation_time)
    ins = tables["instruments"]

    P = R["positions"]
    OR = R.get("open_orders")
    M = R["market"]
    # one snapshot without open orders: every table's pass in one kernel call; else (or when
    # a check fails there) the passes one by one below, and the checks rule by rule
    # (a long positions column, coded by Arrow's hash, takes the passes one by one)
    one = (_one_snapshot_book(R, model, snap_ns[0])
           if not timed and OR is None and P.table.num_rows <= SMALL else None)
    if one is None:
        # -- instruments ---------------------------------------------------------------------
        INS = read_instruments(ins)
        # -- positions and orders: symbols must be known (checked on the table's rows) ------
        PT = read_positions(P.table, INS, P.period() if timed else 0)
    else:
        PT, ins_fields = one
    pos_row, quantity, entry = P.pick(PT.ins_row), P.pick(PT.quantity), P.pick(PT.entry_price)
    leverage = P.pick(PT.leverage)
    pos_snap = P.snap
    if OR is not None:
        ord_row_t = INS.rows_of(str_column(OR.table, "symbol"))
        if (ord_row_t < 0).any():
            raise_rows(OR.table, "open_orders", "symbol", ord_row_t < 0,
                       "symbols listed in instruments")
        ord_qty_t = float_column(OR.table, "open_orders", "quantity")
        float_column(OR.table, "open_orders", "price", positive=True)
        ord_row, ord_qty, ord_snap = ord_row_t[OR.row], ord_qty_t[OR.row], OR.snap
        ord_id_code_t = codes(OR.table.column("order_id").combine_chunks())[0]
    else:
        ord_row = ord_snap = np.zeros(0, dtype=np.int64)
        ord_qty = np.zeros(0)

    # -- accounts: (account, snapshot) pairs from every account-state table --------------------
    state = [(k, R[k]) for k in ACCOUNT_STATE if k in R]
    names_t = [str_column(r.table, "account") for _, r in state]
    if PT.account_codes is not None and len(state) == 1:     # coded by the positions pass
        name_codes, names = PT.account_codes, PT.account_names
    else:
        name_codes, names = codes(pa.concat_arrays(names_t) if len(names_t) > 1
                                  else names_t[0])
    name_chunks = _split_rows(name_codes, [k for k, _ in state], [len(a) for a in names_t])
    n_names = max(len(names), 1)
    if not timed:
        # one snapshot, every row once: the accounts are the names, in order of first
        # appearance (the codes' order), as the general rule below gives
        acc_code, acc_snap = name_codes, np.zeros(len(names), dtype=np.int64)
        accounts = names if len(names) else pa.array([], pa.string())
        ok = True
    else:
        # rows in snapshot order (a history sorted by time): number the pairs in one pass
        acc_code, acc_snap, acc_name, ok = pairs_in_order(*kernel_args(
            _joined([r.snap for _, r in state]),
            _joined([r.pick(name_chunks[k]) for k, r in state])), n_names)
        if ok:
            accounts = names.take(pa.array(acc_name, pa.int64())) if len(acc_name) \
                else pa.array([], pa.string())
    if not ok:
        none = np.zeros(0, dtype=np.int64)
        pair_key = pair_keys(*kernel_args(
            n_names, _joined([r.snap for _, r in state]),
            _joined([name_chunks[k][r.row] for k, r in state]), none, none, 0))
        uniq, inv, first = unique_keys(pair_key, return_first=True)
        u_snap, u_name = split_pairs(*kernel_args(uniq, n_names))
        # account order: by snapshot, then by first appearance within it (positions first)
        order = np.lexsort((first, u_snap))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        acc_code = rank[inv.ravel()]
        acc_snap = u_snap[order]
        accounts = names.take(pa.array(u_name[order], pa.int64())) if len(uniq) \
            else pa.array([], pa.string())
    acc_of = _split_rows(acc_code, [k for k, _ in state], [len(r) for _, r in state])
    pos_account = acc_of["positions"]
    ord_account = acc_of.get("open_orders", np.zeros(0, dtype=np.int64))
    bal_account = acc_of.get("balances", np.zeros(0, dtype=np.int64))
    res_account = acc_of.get("reserves", np.zeros(0, dtype=np.int64))
    # one snapshot, every row: the positions pass counted the repeated (account, symbol)
    if timed or not P.every or PT.repeated != 0:
        dup = duplicated(pos_account, pos_row)
        if dup.any():
            _raise(P, "positions", "symbol", dup, "one row per (account, symbol)", snap_ns,
                   hint="Aggregate duplicate rows first", timed=timed)
    if OR is not None:
        dup = duplicated(ord_account, ord_id_code_t[OR.row])
        if dup.any():
            _raise(OR, "open_orders", "order_id", dup, "one row per (account, order_id)",
                   snap_ns, hint="Each order once: a repeated row would be charged twice",
                   timed=timed)

    if one is None:
        # -- expired instruments ----------------------------------------------------------
        pos_expired, ord_expired, n_expired = validate.expired(*kernel_args(
            pos_row, pos_snap, ord_row, ord_snap, INS.kind, INS.expiry, snap_ns))
        if n_expired:
            if model["expired_positions"] == "ignore":
                keep = ~pos_expired
                pos_row, quantity, entry, leverage, pos_account, pos_snap = (
                    a[keep] for a in (pos_row, quantity, entry, leverage, pos_account,
                                      pos_snap))
                P = _Rows(P.table, P.row[keep], P.snap[keep])
                okeep = ~ord_expired
                ord_row, ord_qty, ord_account, ord_snap = (
                    a[okeep] for a in (ord_row, ord_qty, ord_account, ord_snap))
                if OR is not None:
                    OR = _Rows(OR.table, OR.row[okeep], OR.snap[okeep])
            elif pos_expired.any():
                _raise(P, "positions", "symbol", pos_expired,
                       "instruments not past expiry at the valuation time", snap_ns,
                       hint="Drop them, or set expired_positions = 'ignore' in the model",
                       timed=timed)
            else:
                _raise(OR, "open_orders", "symbol", ord_expired,
                       "instruments not past expiry at the valuation time", snap_ns,
                       timed=timed)

        # -- market, index and the book's instruments -------------------------------------
        MT = read_market(M.table, INS, model["max_iv"])
        # one snapshot (an untimed market table without a symbol twice): one kernel pass,
        # else (or when a check fails there) the checks rule by rule
        ins_fields = (_one_snapshot(INS, pos_row, ord_row, MT, R["index"].table, snap_ns)
                      if not timed and MT.repeated == 0 else None)
        if ins_fields is None:
            ins_fields = _instances_by_rule(INS, P, OR, M, MT, R["index"], pos_row, pos_snap,
                                            ord_row, ord_snap, snap_ns, timed, model)
    pos_instr, ord_instr = ins_fields.pop("pos_instr"), ins_fields.pop("ord_instr")

    # -- balances and reserves --------------------------------------------------------------
    B = R.get("balances")
    if B is not None:
        # several rows per (account, asset) are summed as SPEC 7 reads them: positive rows
        # are one holding (the collateral rule on its total), negative rows loans
        bal_asset_t = str_column(B.table, "asset")
        bal_amount = float_column(B.table, "balances", "amount")[B.row]
        bal_asset_list = bal_asset_t.to_pylist()
        bal_asset = [bal_asset_list[i] for i in B.row]
    else:
        bal_asset, bal_amount = [], np.zeros(0)
    S_ = R.get("reserves")
    if S_ is not None:
        res = S_.table
        res_unit_t = str_column(res, "unit").to_pylist()
        lin = model["linear_settlement_currency"]
        bad = np.array([len(u.split("/")) != 2 or not all(u.split("/"))
                        or u.split("/")[1] not in (u.split("/")[0], lin) for u in res_unit_t],
                       dtype=bool)
        if bad.any():
            raise_rows(res, "reserves", "unit", bad, "units this model forms: 'COIN/COIN' "
                       f"(inverse) or 'COIN/{lin}' (linear)")
        res_mmp_t = (float_column(res, "reserves", "mmp_margin")
                     if has(res, "mmp_margin") else np.zeros(res.num_rows))
        res_oo_t = (float_column(res, "reserves", "open_orders_margin")
                    if has(res, "open_orders_margin") else np.zeros(res.num_rows))
        for col, v in (("mmp_margin", res_mmp_t), ("open_orders_margin", res_oo_t)):
            if (v < 0).any():
                raise_rows(res, "reserves", col, v < 0, "amounts >= 0")
        dup = duplicated(res_account, codes(str_column(res, "unit"))[0][S_.row])
        if dup.any():
            _raise(S_, "reserves", "unit", dup, "one row per (account, unit)", snap_ns,
                   hint="Add the reserves up first: a repeated row would be charged twice",
                   timed=timed)
        res_unit = [res_unit_t[i] for i in S_.row]
        res_mmp, res_oo = res_mmp_t[S_.row], res_oo_t[S_.row]
    else:
        res_unit, res_mmp, res_oo = [], np.zeros(0), np.zeros(0)

    book = Book(
        timed=timed, snap_ns=snap_ns, accounts=accounts, acc_snap=acc_snap, **ins_fields,
        stablecoins=frozenset(model["stablecoins"]),
        pos_account=pos_account, pos_instr=pos_instr, quantity=quantity, entry_price=entry,
        leverage=leverage,
        ord_account=ord_account, ord_instr=ord_instr, ord_qty=ord_qty,
        ord_id=(OR.table.column("order_id").combine_chunks().take(pa.array(OR.row, pa.int64()))
                if OR is not None else _NO_ORDER_IDS),
        bal_account=bal_account, bal_asset=bal_asset, bal_amount=bal_amount,
        res_account=res_account, res_unit=res_unit, res_mmp=res_mmp, res_oo=res_oo,
    )
    for a in vars(book).values():       # nothing downstream writes them: see Book
        if isinstance(a, np.ndarray):
            a.setflags(False)           # positional: the keyword form parses slower
    _check_priced(book, model, R, snap_ns, book.instr_snap)
    return book


def _first_rows(arr, first):
    """The rows ``first`` of a string array (a slice when there is one)."""
    return arr.slice(int(first[0]), 1) if len(first) == 1 \
        else arr.take(pa.array(first, pa.int64()))


def _one_snapshot_book(R, model, vt):
    """:class:`Positions` and what :func:`_instances_by_rule` returns, for a one-snapshot
    book without open orders and of up to :data:`SMALL` positions (``R``: the
    :class:`_Rows` of its tables, valued at ``vt``) by one kernel call
    (:func:`pmrisk.kernel.validate.one_snapshot_book`); None when a check fails or a column
    is of a layout the kernels do not read (the table passes one by one then run, and the
    checks rule by rule raise)."""
    ins, pos, mkt, idx = (R[k].table for k in ("instruments", "positions", "market", "index"))
    # the kernel reads strike, mark_iv, underlying_price and index_price with their nulls
    numbers = (number_parts(ins, "contract_size"), _optional_numbers(ins, "strike", False),
               number_parts(pos, "quantity"), _optional_numbers(pos, "entry_price"),
               _optional_numbers(pos, "leverage"), number_parts(mkt, "mark_price"),
               _optional_numbers(mkt, "mark_iv", False),
               _optional_numbers(mkt, "underlying_price", False),
               number_parts(idx, "index_price", False))
    i_und = str_column(idx, "underlying")
    if i_und.null_count or any(x is None for x in numbers):
        return None
    csize, strike, qty, entry, lev, mark, iv, fwd, price = numbers
    expiry = NO_NUMBERS[0].view(np.int64)
    if has(ins, "expiry"):
        try:
            expiry = kernel_args(time_column(ins, "instruments", "expiry"))[0]
        except MarginError:
            return None
    sym, und, acc = str_column(ins, "symbol"), str_column(ins, "underlying"), \
        str_column(pos, "account")
    n = pos.num_rows
    status, und_first, pos_row, acc_code, acc_first, asset_px, out = \
        validate.one_snapshot_book(
            (str_parts(sym), str_parts(und), str_parts(str_column(ins, "kind")),
             str_parts(str_column(ins, "settlement")),
             str_parts(str_column(ins, "option_type")) if has(ins, "option_type")
             else NO_STRINGS, csize[0], strike[0], expiry),
            (str_parts(str_column(pos, "symbol")), str_parts(acc), qty[0], entry[0], lev[0]),
            (str_parts(str_column(mkt, "symbol")), mark[0], iv[0], fwd[0]),
            (str_buffers(i_und), price[0]), _NAMES, BOUNDS, float(model["max_iv"]), int(vt))
    if status != validate.BOOK_OK:
        return None
    positions = Positions(
        ins_row=pos_row, quantity=qty[1],
        entry_price=entry[1] if entry[1] is not None else np.full(n, np.nan),
        leverage=lev[1] if lev[1] is not None else np.full(n, np.nan),
        account_codes=acc_code, account_names=_first_rows(acc, acc_first), repeated=0)
    return positions, _instance_fields(sym, _first_rows(und, und_first), out,
                                       i_und.to_pylist(), asset_px)


def _one_snapshot(INS, pos_row, ord_row, MT, index, snap_ns):
    """What :func:`_instances_by_rule` returns, for a one-snapshot book whose market table
    has no symbol twice, by two kernel passes (:func:`pmrisk.kernel.validate.index_prices`,
    :func:`pmrisk.kernel.validate.one_snapshot`); None when a check fails or the index
    table is of a layout the kernels do not read (the checks by rule then raise)."""
    und = str_column(index, "underlying")
    price = number_parts(index, "index_price")
    if und.null_count or price is None:
        return None
    name_col, name_price, repeated, n_bad = validate.index_prices(
        str_buffers(und), price[0], str_buffers(INS.und_names), BOUNDS)
    if repeated or n_bad:
        return None
    status, *out = validate.one_snapshot(
        *kernel_args(pos_row, ord_row, INS.kind, INS.settlement, INS.contract_size,
                     INS.expiry, INS.strike, INS.is_call, INS.und_code, MT.ins_row,
                     MT.mark_price, MT.mark_iv, MT.underlying_price, name_price),
        int(snap_ns[0]))
    if status != validate.ONE_OK:
        return None
    return _instance_fields(INS.symbol, INS.und_names, out, und.to_pylist(), price[1])


def _instance_fields(sym, und_names, out, assets, asset_px):
    """What :func:`_instances_by_rule` returns, from :func:`pmrisk.kernel.validate.
    one_snapshot`'s outputs ``out`` (its status left out; :func:`pmrisk.kernel.validate.
    one_snapshot_book`'s last output is the same): ``sym`` the instruments' symbols,
    ``und_names`` the distinct underlyings (a string array, a handful), ``assets`` and
    ``asset_px`` the index table's underlyings and prices."""
    (ins_row, pos_instr, ord_instr, und_code, und_used, kind, settlement, csize, expiry,
     mark, forward, strike, is_call, years, mark_iv) = out
    und_all = und_names.to_pylist()
    return dict(
        symbols=sym if validate.rows_in_order(ins_row, len(sym)) else
        sym.take(pa.array(ins_row, pa.int64())),
        instr_snap=np.zeros(len(ins_row), dtype=np.int64), und_code=und_code,
        und_names=[und_all[i] for i in und_used.tolist()], kind=kind, settlement=settlement,
        contract_size=csize, mark=mark, forward=forward, strike=strike, is_call=is_call,
        expiry_ns=expiry, years=years, mark_iv=mark_iv, assets=assets,
        asset_px=asset_px.reshape(1, -1), pos_instr=pos_instr, ord_instr=ord_instr)


def _instances_by_rule(INS, P, OR, M, MT, X, pos_row, pos_snap, ord_row, ord_snap, snap_ns,
                       timed, model):
    """The book's instrument instances (instrument, snapshot) held or ordered, their market
    rows and index prices, checked rule by rule: ``Book``'s instrument fields and
    ``pos_instr``, ``ord_instr`` (a dict).  ``INS``, ``MT``: the instruments and market
    tables read; ``P``, ``OR``, ``M``, ``X``: the positions', orders', market and index
    :class:`_Rows`."""
    mkt = M.table
    sym, kind, settlement, csize = INS.symbol, INS.kind, INS.settlement, INS.contract_size
    expiry, strike, is_call = INS.expiry, INS.strike, INS.is_call
    n_ins = len(kind)
    n_snap = len(snap_ns)
    mkt_ins_t, mark_t, iv_t, fwd_t = MT.ins_row, MT.mark_price, MT.mark_iv, MT.underlying_price
    mkt_ins = mkt_ins_t[M.row]
    none = np.zeros(0, dtype=np.int64)
    # snapshot -1 (any) -> block 0
    mkt_key = pair_keys(*kernel_args(n_ins, M.snap, mkt_ins, none, none, 1))
    # an untimed market table: the market pass counted the repeated symbols
    dup = (np.zeros(0, dtype=bool) if not has(mkt, TIME) and MT.repeated == 0
           else duplicated(mkt_key))
    if dup.any():
        _raise(M, "market", "symbol", dup, "one row per symbol" +
               (" and time" if has(mkt, TIME) else ""), snap_ns, timed=timed)

    # -- active instrument instances (instrument, snapshot) ----------------------------------
    inst_key = pair_keys(*kernel_args(n_ins, pos_snap, pos_row, ord_snap, ord_row, 0))
    active_key, inst_inv, first = unique_keys(inst_key, return_first=True)
    if not timed:   # numbered as the positions, then the orders, first hold them (as the
        order = np.argsort(first, kind="stable")    # one-pass kernels number them)
        number = np.empty(len(order), dtype=np.int64)
        number[order] = np.arange(len(order))
        active_key, inst_inv = active_key[order], number[inst_inv]
    inst_snap, inst_ins = split_pairs(*kernel_args(active_key, n_ins))
    pos_instr = inst_inv[:len(pos_row)]
    ord_instr = inst_inv[len(pos_row):]
    # one snapshot and every instrument active in row order: the instances are the table's
    # rows
    every_ins = n_snap == 1 and validate.rows_in_order(*kernel_args(inst_ins), n_ins)

    def of_ins(values):
        """``values`` (one per instruments row) of each active instance."""
        return values if every_ins else values[inst_ins]

    # market row of each instance: its snapshot's row, else the untimed row
    n_keys = (max(n_snap, 0) + 1) * n_ins          # mkt_key < n_keys, and no two alike
    if n_keys <= max(8 * len(mkt_key), 1 << 16):
        # a table of every key (no sort): the market row of each key, -1 when none
        row_of_key = np.full(n_keys, -1, dtype=np.int64)
        row_of_key[mkt_key] = np.arange(len(mkt_key))

        def find(keys):
            return row_of_key[keys]
    else:
        m_sorted = np.argsort(mkt_key, kind="stable")
        m_keys = mkt_key[m_sorted]

        def find(keys):
            if not len(m_keys):
                return np.full(len(keys), -1, dtype=np.int64)
            at = np.minimum(np.searchsorted(m_keys, keys), len(m_keys) - 1)
            return np.where(m_keys[at] == keys, m_sorted[at], -1)

    if timed and not has(mkt, TIME):      # market rows for any snapshot (block 0)
        m_of = find(inst_ins)
    else:                                   # rows of the instance's snapshot
        m_of = find(pair_keys(*kernel_args(n_ins, inst_snap, inst_ins, none, none, 1)))
    no_mark = m_of < 0
    if no_mark.any():
        held = no_mark[pos_instr]
        if held.any():
            _raise(P, "positions", "symbol", held, "a market row for every held symbol" +
                   (" at every snapshot time" if timed else ""), snap_ns, timed=timed,
                   hint=FILL_HINT if timed else None)
        _raise(OR, "open_orders", "symbol", no_mark[ord_instr],
               "a market row for every ordered symbol" +
               (" at every snapshot time" if timed else ""), snap_ns, timed=timed,
               hint=FILL_HINT if timed else None)
    m_rows = M.row[m_of]
    a_kind = of_ins(kind)
    opt_no_iv = (a_kind == OPTION) & np.isnan(iv_t[m_rows])
    if opt_no_iv.any():
        mask = np.zeros(mkt.num_rows, dtype=bool)
        mask[m_rows[opt_no_iv]] = True
        raise_rows(mkt, "market", "mark_iv", mask, "a mark_iv > 0 for every held option")

    # -- index: price of each asset at each snapshot -------------------------------------------
    idx_und = str_column(X.table, "underlying")
    idx_code_t, asset_arr = codes(idx_und)
    idx_px_t = float_column(X.table, "index", "index_price", positive=True)
    dup = duplicated(X.snap + 1, idx_code_t[X.row])
    if dup.any():
        _raise(X, "index", "underlying", dup, "one row per underlying" +
               (" and time" if has(X.table, TIME) else ""), snap_ns, timed=timed)
    assets = asset_arr.to_pylist()
    asset_px = np.full((max(n_snap, 1), len(assets)), np.nan)
    static = X.snap < 0
    asset_px[:, idx_code_t[X.row[static]]] = idx_px_t[X.row[static]]
    asset_px[X.snap[~static], idx_code_t[X.row[~static]]] = idx_px_t[X.row[~static]]

    # compact underlying codes of the active instruments
    used, a_und_code = unique_keys(of_ins(INS.und_code))
    und_all = INS.und_names.to_pylist()           # the distinct names: a handful
    und_names = [und_all[i] for i in used.tolist()]
    col_of = {a: i for i, a in enumerate(assets)}
    und_col = np.array([col_of.get(u, -1) for u in und_names], dtype=np.int64)
    # NaN without an index row (no stablecoin rule here: the index table's prices only)
    und_px = unit_prices(*kernel_args(und_col, np.zeros(len(und_col), dtype=np.int64),
                                      a_und_code, inst_snap, asset_px))
    missing = np.isnan(und_px)
    if missing.any():
        first = int(inst_snap[missing].min())
        missing &= inst_snap == first
        bad_und = sorted({und_names[c] for c in a_und_code[missing]})
        raise MarginError("index", "underlying", "a row for every underlying held" +
                          (" at every snapshot time" if timed else ""),
                          rows=[(u,) for u in bad_und], keys=("underlying",),
                          hint="Add its index_price" + (", or " + FILL_HINT[0].lower() +
                                                        FILL_HINT[1:] if timed else ""),
                          time=snap_ns[first] if timed else None)

    forward, years, a_strike, a_call = instance_columns(*kernel_args(
        inst_ins, inst_snap, kind, expiry, strike, is_call, m_rows, fwd_t, und_px, snap_ns))
    return dict(
        symbols=sym if every_ins else sym.take(pa.array(inst_ins, type=pa.int64())),
        instr_snap=inst_snap, und_code=a_und_code, und_names=und_names,
        kind=a_kind, settlement=of_ins(settlement), contract_size=of_ins(csize),
        mark=mark_t[m_rows], forward=forward, strike=a_strike, is_call=a_call,
        expiry_ns=of_ins(expiry), years=years,
        mark_iv=iv_t[m_rows], assets=assets, asset_px=asset_px,
        pos_instr=pos_instr, ord_instr=ord_instr)


def _check_priced(book, model, R, snap_ns, inst_snap):
    """Every asset that must be priced in USD is priced at its snapshot (an index row or a
    stablecoin): the linear settlement currency, balance assets, reserve units."""
    lin = model["linear_settlement_currency"]
    linear = book.settlement != INVERSE
    if linear.any():
        snaps = np.unique(inst_snap[linear])
        px = book.price_of(lin, snaps)
        if np.isnan(px).any():
            raise MarginError("index", "underlying", "an index row for the linear settlement "
                              f"currency {lin!r} (or list it in the model's stablecoins)",
                              rows=[(lin,)], keys=("underlying",),
                              time=snap_ns[snaps[np.isnan(px)][0]] if book.timed else None)
    B = R.get("balances")
    if B is not None and len(book.bal_asset):
        px = book.prices(book.bal_asset, book.acc_snap[book.bal_account])
        bad = np.isnan(px)
        if bad.any():
            _raise(B, "balances", "asset", bad, "assets with an index row or a stablecoin",
                   snap_ns, hint="Add an index_price for the asset", timed=book.timed)
    S_ = R.get("reserves")
    if S_ is not None and len(book.res_unit):
        snap = book.acc_snap[book.res_account]
        und = [u.split("/")[0] for u in book.res_unit]
        ccy = [u.split("/")[1] for u in book.res_unit]
        bad = np.isnan(book.prices(und, snap)) | np.isnan(book.prices(ccy, snap))
        if bad.any():
            _raise(S_, "reserves", "unit", bad, "units whose underlying and settlement "
                   "currency have an index row (or are stablecoins)", snap_ns,
                   timed=book.timed)


def add_cash(rows, asset, cash):
    """One account's balance rows ``rows`` (a list of ``(asset, amount)``) with ``cash`` of
    ``asset`` paid in (negative: paid out), as a new list: added to the asset's first row
    with a positive amount (its holding), else to its first row, else as a new row.  With
    one row per asset that is the asset's row, whatever its sign (a holding paid below zero
    becomes a loan); a loan row beside a holding stays as it is.

    >>> from pmrisk.io.book import add_cash
    >>> add_cash([("BTC", -0.04), ("BTC", 0.1)], "BTC", -0.01)
    [('BTC', -0.04), ('BTC', 0.09000000000000001)]
    >>> add_cash([("USDT", 5.0)], "BTC", 0.5)
    [('USDT', 5.0), ('BTC', 0.5)]
    """
    at = next((k for k, (a, v) in enumerate(rows) if a == asset and v > 0), None)
    if at is None:
        at = next((k for k, (a, _) in enumerate(rows) if a == asset), None)
    out = list(rows)
    if at is None:
        out.append((asset, 0.0 + cash))
    else:
        out[at] = (asset, rows[at][1] + cash)
    return out

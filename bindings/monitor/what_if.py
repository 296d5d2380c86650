"""Pre-trade what-if: the margin of one account after hypothetical trades, and what each trade
adds (:meth:`pmrisk.Monitor.what_if`, ``pmrisk what-if``).

The trades table
----------------
One row per trade: ``symbol`` (an instrument the monitor knows: listed in its instruments and
marked in its market), ``quantity`` (signed, not 0: + buys, - sells), optional ``price`` (> 0;
null or absent: the mark) and optional ``kind``: ``fill`` (default; the trade is done) or
``order`` (an open order resting on the book: it adds to IM only, as open orders do).

A **fill** of quantity ``t`` at price ``p`` changes the account as the venue would:

* the position in the symbol becomes ``q + t`` (closed at 0); a new position takes ``p`` as its
  entry price (none when no price is given), an existing one keeps its entry price;
* an option or spot fill pays (bought) or receives (sold) ``t x contract_size x p`` from the
  balance of its settlement currency (the coin of an inverse instrument, the model's
  ``linear_settlement_currency`` for a linear one): the currency's first balance row with a
  positive amount, else its first row, else a new row (:func:`pmrisk.io.book.add_cash`; a
  loan row beside a holding stays as it is);
* a future or perpetual fill away from the mark moves that balance by its P&L from ``p`` to the
  mark, less what the position's own entry price already books for it, so that equity changes
  by exactly ``t x contract_size x (mark - p)`` (linear; inverse: ``t x contract_size x
  (1/p - 1/mark)``).  At the mark (no price) equity does not change.

An **order** adds an open-order row (``quantity``, ``price``; the mark when no price).

Incremental margin
------------------
For the margin M (maintenance ``mm`` or initial ``im``, USD) of the account with a set of the
trades applied, trade ``i`` of the set ``T``:

* **standalone** ``M(account + i) - M(account)``: what the trade adds alone, as a broker that
  margins each leg on its own charges it;
* **marginal** ``M(account + T) - M(account + T without i)``: what the trade adds to the rest of
  the basket (dropping it saves that much).

The basket's real increase is ``M(account + T) - M(account)``.  The sum of the standalone
increases is what leg-by-leg margining charges: on a hedged basket it is several times the
basket's increase (``summary.overcharge``).

One engine
----------
Every state needed (the account before, after the whole basket, with each trade alone and
without each trade: at most ``2 n + 2`` copies of the account for ``n`` trades) is one account
of a single small book margined in one pass of the engine :func:`pmrisk.margin` runs
(:func:`pmrisk.engine.core.prepare` and :func:`~pmrisk.engine.core.compute`): the figures are
those of ``pmrisk.margin()`` on the account's state with the trades applied, under any model.
Nothing of the caller's state changes.

A monitor builds that book from what it holds, already validated (:func:`what_if_held`): the
account's rows and the instruments' current marks from its blocks' arrays; an instrument no
account holds is validated once by :func:`pmrisk.io.book.load_book` and then read at its
current mark.  :func:`what_if` does the same from input tables (validated by ``load_book``).
"""

import weakref
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pmrisk.kernel.instruments import INVERSE, KINDS as INSTRUMENT_KINDS
from pmrisk.kernel.layout import position_layout
from pmrisk.kernel.ticks import row_sources

from ..engine.core import compute, floored_copies, prepare, run
from ..engine.correlated import JointStress
from ..engine.units import prices_by_type
from ..errors import MarginError
from ..io.arrow import as_table, check_columns, float_column, kernel_args, raise_rows, \
    str_column
from ..io.book import add_cash, load_book
from ..results import accounts_table, check_finite, margin_ratio, status_array

TRADES = {
    "symbol": ("str", True, False),
    "quantity": ("float", True, False),
    "price": ("float", False, True),
    "kind": ("str", False, True),
}
KINDS = ("fill", "order")
FIGURES = ("initial_margin", "maintenance_margin")
ORDER_PREFIX = "what-if-"
_F8, _STR = pa.float64(), pa.string()
STATES = pa.array(["before", "after"], _STR)
SUMMARY = pa.schema([("figure", _STR), ("before", _F8), ("after", _F8), ("increase", _F8),
                     ("standalone_sum", _F8), ("marginal_sum", _F8), ("overcharge", _F8)])
TRADES_OUT = pa.schema([("trade", pa.int64()), ("symbol", _STR), ("kind", _STR)] + [
    (c, _F8) for c in ("quantity", "price", "im_standalone", "mm_standalone", "im_marginal",
                       "mm_marginal")])
SCHEMAS = {   # the small book's account-state tables
    "positions": pa.schema([("account", _STR), ("symbol", _STR), ("quantity", _F8),
                            ("entry_price", _F8), ("leverage", _F8)]),
    "balances": pa.schema([("account", _STR), ("asset", _STR), ("amount", _F8)]),
    "open_orders": pa.schema([("account", _STR), ("order_id", _STR), ("symbol", _STR),
                              ("quantity", _F8), ("price", _F8)]),
    "reserves": pa.schema([("account", _STR), ("unit", _STR), ("mmp_margin", _F8),
                           ("open_orders_margin", _F8)]),
}


@dataclass(frozen=True)
class WhatIf:
    """The result of :meth:`pmrisk.Monitor.what_if`: three Arrow tables.

    ``accounts``: two rows, ``state`` ``before`` and ``after`` (the whole basket applied), with
    the columns of :func:`pmrisk.margin`'s accounts table (``equity``, ``maintenance_margin``,
    ``initial_margin``, ``margin_ratio``, ``status``, ``worst_scenario`` (the binding
    scenario), ...).

    ``trades``: one row per trade, in input order: ``trade`` (its row), ``symbol``, ``kind``,
    ``quantity``, ``price`` (as applied: the mark when none was given), then ``im_standalone``,
    ``mm_standalone``, ``im_marginal``, ``mm_marginal`` (USD; see the module docstring).

    ``summary``: one row per figure (``initial_margin``, ``maintenance_margin``): ``before``,
    ``after``, ``increase`` (after - before), ``standalone_sum`` (the per-leg sum),
    ``marginal_sum`` and ``overcharge`` (standalone_sum / increase; null unless the basket
    increases the figure).

    Examples
    --------
    Long $100,000 of the BTC inverse perpetual on $18,000: what would closing half of it,
    or opening a sell order for the rest, do?

    >>> import pmrisk
    >>> mon = pmrisk.Monitor(
    ...     positions={"account": ["a"], "symbol": ["BTC-PERPETUAL"], "quantity": [100000.0],
    ...                "entry_price": [50000.0]},
    ...     instruments={"symbol": ["BTC-PERPETUAL"], "underlying": ["BTC"],
    ...                  "kind": ["perpetual"], "settlement": ["inverse"],
    ...                  "contract_size": [1.0]},
    ...     market={"symbol": ["BTC-PERPETUAL"], "mark_price": [50000.0]},
    ...     index={"underlying": ["BTC"], "index_price": [50000.0]},
    ...     balances={"account": ["a"], "asset": ["USDT"], "amount": [18000.0]},
    ...     model="deribit_pme", valuation_time="2024-01-01T00:00:00Z")
    >>> w = mon.what_if("a", {"symbol": ["BTC-PERPETUAL", "BTC-PERPETUAL"],
    ...                       "quantity": [-50000.0, -50000.0], "kind": ["fill", "order"]})
    >>> w
    WhatIf(account='a', 2 trades, IM 20,047.62 -> 10,023.81, status normal -> normal)
    >>> [(r["state"], round(r["maintenance_margin"], 2), round(r["margin_ratio"], 4))
    ...  for r in w.accounts.to_pylist()]
    [('before', 16038.1, 1.1223), ('after', 8019.05, 2.2447)]
    >>> [(r["kind"], round(r["mm_standalone"], 2), round(r["im_standalone"], 2))
    ...  for r in w.trades.to_pylist()]
    [('fill', -8019.05, -10023.81), ('order', 0.0, 0.0)]

    The sell order would only reduce the position: it adds no IM.
    """
    account: str
    accounts: pa.Table
    trades: pa.Table
    summary: pa.Table

    def figure(self, state, column):
        """One value of ``accounts``: ``state`` ``"before"`` or ``"after"``."""
        return self.accounts[column][0 if state == "before" else 1].as_py()

    def __repr__(self):
        s = {r["figure"]: r for r in self.summary.to_pylist()}
        im = s["initial_margin"]
        over = "" if im["overcharge"] is None else f", per-leg sum {im['overcharge']:.2f}x"
        return (f"WhatIf(account={self.account!r}, {self.trades.num_rows} trades, IM "
                f"{im['before']:,.2f} -> {im['after']:,.2f}{over}, status "
                f"{self.figure('before', 'status')} -> {self.figure('after', 'status')})")


def trades_table(trades):
    """The trades as a table with its columns checked (present, typed) and at least one row."""
    t = as_table(trades, "trades")
    if t is None:
        raise MarginError("trades", None, "a table of trades (symbol, quantity [, price, kind])")
    check_columns(t, "trades", TRADES)
    if t.num_rows == 0:
        raise MarginError("trades", None, "at least one trade")
    return t


def read_trades(t, symbols, marks):
    """The checked trades of table ``t``: ``(symbol list, quantity, price (NaN: none),
    is_order)``.  ``symbols``: the known symbols (a set), ``marks``: ``{symbol: mark}``."""
    sym = str_column(t, "symbol").to_pylist()
    unknown = np.array([s not in symbols or s not in marks for s in sym])
    if unknown.any():
        raise_rows(t, "trades", "symbol", unknown, "symbols the monitor knows (listed in its "
                   "instruments, with a market row)", hint="List the instrument and give it a mark "
                   "(Monitor.update(market=...); on the command line, the --instruments and "
                   "--market files)")
    qty = float_column(t, "trades", "quantity")
    if (qty == 0).any():
        raise_rows(t, "trades", "quantity", qty == 0, "a signed quantity, not 0")
    price = float_column(t, "trades", "price", positive=True, nullable=True) \
        if "price" in t.column_names else np.full(t.num_rows, np.nan)
    if "kind" in t.column_names:
        kind = str_column(t, "kind").to_pylist()
        bad = np.array([k is not None and k not in KINDS for k in kind])
        if bad.any():
            raise_rows(t, "trades", "kind", bad, "'fill' or 'order' (null: fill)")
        is_order = np.array([k == "order" for k in kind], dtype=bool)
    else:
        is_order = np.zeros(t.num_rows, dtype=bool)
    return sym, qty, price, is_order


def _rows(table, cols):
    """The rows of a table (None: none) as a list of dicts of ``cols`` (missing: None)."""
    if table is None or table.num_rows == 0:
        return []
    have = [c for c in cols if c in table.column_names]
    data = {c: (str_column(table, c).to_pylist() if c in ("account", "symbol", "asset", "unit")
                else table.column(c).to_pylist()) for c in have}
    return [{c: data[c][i] if c in data else None for c in cols}
            for i in range(table.num_rows)]


def _booked(q, e, cs, mark, inverse):
    """What a future's or perpetual's position row books in equity: its P&L from its entry
    price ``e`` to the mark (nothing without an entry price)."""
    if q == 0.0 or e is None or e != e:
        return 0.0
    return q * cs * (1.0 / e - 1.0 / mark) if inverse else q * cs * (mark - e)


class _Account:
    """One account's rows as plain values, and the same rows with a set of trades applied."""

    @classmethod
    def of_book(cls, book, layout, i, account, linear_ccy):
        """The rows of account ``i`` of a validated book (``layout``: its engine layout,
        whose CSR indexes list the account's positions and balances)."""
        self = cls.__new__(cls)
        self.name, self.info, self.linear_ccy = account, {}, linear_ccy
        P = layout.pa_order[layout.pa_start[i]:layout.pa_start[i + 1]]
        names = book.symbols.take(pa.array(book.pos_instr[P])).to_pylist()
        # entry price and leverage as the book holds them (NaN: none), as applied() reads them
        self.pos = dict(zip(names, zip(book.quantity[P].tolist(), book.entry_price[P].tolist(),
                                       book.leverage[P].tolist())))
        B = layout.ba_order[layout.ba_start[i]:layout.ba_start[i + 1]]
        # (asset, amount) per balance row, several per asset as the book holds them
        self.bal = [(book.bal_asset[b], a) for b, a in zip(B.tolist(),
                                                           book.bal_amount[B].tolist())]
        OD = np.flatnonzero(book.ord_account == i) if len(book.ord_account) else B[:0]
        # the engine reads an order's symbol and quantity only (ids and prices are checked
        # input, never figures): the small book needs no ids
        self.orders = [{"symbol": x, "quantity": q} for x, q in zip(
            book.symbols.take(pa.array(book.ord_instr[OD])).to_pylist(),
            book.ord_qty[OD].tolist())] if len(OD) else []
        R = np.flatnonzero(book.res_account == i) if len(book.res_account) else B[:0]
        self.reserves = [{"unit": book.res_unit[r], "mmp_margin": m, "open_orders_margin": o}
                         for r, m, o in zip(R.tolist(), book.res_mmp[R].tolist(),
                                            book.res_oo[R].tolist())]
        self.prefix = ORDER_PREFIX
        # what these rows were read from, to the bit (NaN included), in one comparable key
        self.key = (names, tuple(a for a, _ in self.bal), [o["symbol"] for o in self.orders],
                    [r["unit"] for r in self.reserves],
                    b"".join(a.tobytes() for a in (
                        P, book.quantity[P], book.entry_price[P], book.leverage[P], B,
                        book.bal_amount[B], OD, book.ord_instr[OD], book.ord_qty[OD], R,
                        book.res_mmp[R], book.res_oo[R])))
        return self

    def __init__(self, tables, account, linear_ccy):
        self.name = account
        self.info, self.linear_ccy = {}, linear_ccy
        # symbol -> (quantity, entry price, own leverage: None for the bracket's maximum)
        self.pos = {r["symbol"]: (r["quantity"], r["entry_price"], r["leverage"])
                    for r in _rows(tables.get("positions"), ("symbol", "quantity",
                                                             "entry_price", "leverage"))}
        self.bal = [(r["asset"], r["amount"])
                    for r in _rows(tables.get("balances"), ("asset", "amount"))]
        oo = tables.get("open_orders")
        self.orders = [] if oo is None or oo.num_rows == 0 else [
            dict(r, order_id=str(r["order_id"])) for r in _rows(
                oo, ("order_id", "symbol", "quantity", "price"))]
        self.reserves = _rows(tables.get("reserves"), ("unit", "mmp_margin",
                                                       "open_orders_margin"))
        used = {o["order_id"] for o in self.orders}
        self.prefix = ORDER_PREFIX
        while any(u.startswith(self.prefix) for u in used):
            self.prefix = "_" + self.prefix

    def currency(self, symbol):
        und, _, settlement, _, _ = self.info[symbol]
        return und if settlement == "inverse" else self.linear_ccy

    def applied(self, trades):
        """(positions, balances, orders) after ``trades``: (row, symbol, quantity, price,
        is_order, priced) tuples, price the one applied (never NaN), ``priced``: given in
        the trades table."""
        pos, bal, orders = dict(self.pos), list(self.bal), list(self.orders)
        for row, s, t, p, is_order, priced in trades:
            if is_order:
                orders.append({"order_id": f"{self.prefix}{row}", "symbol": s, "quantity": t,
                               "price": p})
                continue
            und, kind, settlement, cs, mark = self.info[s]
            q0, e0, lev = pos.get(s, (0.0, None, None))   # a trade keeps the leverage
            q1 = 0.0 if t == -q0 else q0 + t
            e1 = e0 if s in pos else p if priced else None
            ccy = self.currency(s)
            if kind in ("option", "spot"):
                cash = -t * cs * p
            else:
                inverse = settlement == "inverse"
                cash = (_booked(q0, e0, cs, mark, inverse) + _booked(t, p, cs, mark, inverse)
                        - _booked(q1, e1, cs, mark, inverse))
            if cash != 0.0:
                bal = add_cash(bal, ccy, cash)
            if q1 == 0.0:
                pos.pop(s, None)
            else:
                pos[s] = (q1, e1, lev)
        return pos, bal, orders


def what_if(tables, account, trades, model, valuation_time):
    """The margin of ``account`` (its rows in ``tables``: positions, balances, open_orders,
    reserves of that account, with instruments, market and index) after ``trades``, under
    ``model`` at ``valuation_time``: a :class:`WhatIf`.  See the module docstring."""
    ins, mkt = tables["instruments"], tables["market"]
    t = trades_table(trades)
    # the instruments the account holds, orders or trades: the small book's universe
    acc = _Account(tables, account, model["linear_settlement_currency"])
    used = pa.array(sorted(set(acc.pos) | {o["symbol"] for o in acc.orders}
                           | set(str_column(t, "symbol").to_pylist()) - {None}), pa.string())
    ins_u = ins.filter(pc.is_in(str_column(ins, "symbol"), value_set=used))
    mkt_u = mkt.filter(pc.is_in(str_column(mkt, "symbol"), value_set=used))
    marks = dict(zip(str_column(mkt_u, "symbol").to_pylist(),
                     mkt_u.column("mark_price").to_pylist()))
    cols = {c: (str_column(ins_u, c).to_pylist() if c != "contract_size"
                else ins_u.column(c).to_pylist())
            for c in ("symbol", "underlying", "kind", "settlement", "contract_size")}
    trade = read_trades(t, set(cols["symbol"]), marks)
    acc.info = {s: (u, k, st, cs, marks.get(s)) for s, u, k, st, cs in zip(
        cols["symbol"], cols["underlying"], cols["kind"], cols["settlement"],
        cols["contract_size"])}
    legs, sets, distinct = _legs(acc, *trade)
    rows, figures = _margin_states(acc, legs, distinct, tables, ins_u, mkt_u, model,
                                   valuation_time)
    return _what_if(acc.name, trade, legs, sets, distinct, pa.concat_tables(rows), figures)


def what_if_held(place, blocks, account, trades, model, market, catalog, instruments,
                 valuation_time, memo=None):
    """:func:`what_if` on a monitor's own validated state, without Arrow input tables: the
    account's rows and the instruments' marks come from the arrays of its blocks
    (:class:`pmrisk.monitor.block.Block`, kept current by every update), and the states of
    the account are one small :class:`~pmrisk.io.book.Book` built from them, margined by
    :func:`pmrisk.engine.core.prepare` and :func:`~pmrisk.engine.core.compute` (the engine
    :func:`pmrisk.margin` runs).  ``place``: the account's ``(block, index)``; ``market``:
    the monitor's :class:`~pmrisk.monitor.state.MarketState` (which symbols it knows, their
    current marks).

    A traded symbol that no block holds (nobody holds or orders it) is validated once by
    :func:`~pmrisk.io.book.load_book` (one row of it, with the monitor's ``instruments``,
    market and index, at ``valuation_time``) and kept in ``catalog`` (a dict the caller keeps
    for its model and valuation time: symbol -> (book, index)); its marks are read from
    ``market`` at every call.  Returns None when that validation fails (the caller then runs
    :func:`what_if` on the state's tables, which reports the problem).

    ``memo`` (a dict the caller keeps with ``catalog``; None: none) keeps, per account, the
    prepared small book of its last what-if: the next what-if whose states lay out the same
    (the same positions, orders, balances and reserves, the same of them short: the same
    symbols traded the same way, in any quantities, at any prices) reads the quantities,
    prices, marks, balances and reused rows into it and recomputes every figure, without
    laying the book out again (see :class:`_Prepared`)."""
    block, i = place
    t = trades_table(trades)
    # known symbols: listed in the instruments with a market row, as for what_if
    trade = read_trades(t, market.instr_und, market.row)
    book = block.book
    src = {}                             # symbol -> (book, instrument index)
    new = []
    for s in dict.fromkeys(trade[0]):
        k = block.sym_index.get(s)
        if k is not None:
            src[s] = (book, k)
            continue
        b = next((b for b in blocks if s in b.sym_index), None)
        if b is not None:
            src[s] = (b.book, b.sym_index[s])
        else:
            new.append(s)
    if new and not _listed(new, catalog, market, instruments, model, valuation_time):
        return None
    for s in new:
        b, k = src[s] = catalog[s]
        r = market.row[s]                 # the current marks (forward: the index if none)
        b.mark[k], b.mark_iv[k] = market.mark[r], market.iv[r]
        fwd = market.fwd[r]
        b.forward[k] = market.index[b.und_names[b.und_code[k]]] if fwd != fwd else fwd
    acc = _Account.of_book(book, block.out.layout, i, account,
                           model["linear_settlement_currency"])
    for s in list(acc.pos) + [o["symbol"] for o in acc.orders]:
        if s not in src:
            src[s] = (book, block.sym_index[s])
    acc.info = _info(src)
    legs, sets, distinct = _legs(acc, *trade)
    symbols = sorted(src)
    code = {x: j for j, x in enumerate(symbols)}
    prep = memo.get(account) if memo is not None else None
    # the states' rows depend on the account's rows, the trades as applied and the
    # instruments' figures only: the kept ones when those are the same
    key = (acc.key, legs, acc.info, symbols)
    states = prep.states if prep is not None and prep.key == key else \
        _state_rows(acc, legs, distinct, code)
    where = states.where
    ends = [where[0], where[1]]          # the states before and after
    shown = sorted({k for k in ends if k >= 0})
    if prep is None or not prep.refresh(block, src, symbols, states):
        mini = _states_book(states, src, symbols, book)
        out = prepare(mini, model)
        # the account's own instruments: their revaluation rows are its block's, already
        # priced
        own = {code[x]: block.sym_index[x] for x in list(acc.pos) + [o["symbol"]
                                                                      for o in acc.orders]}
        plan = _reuse_rows(out, model, block.out, own)
        rows = None if plan is None else plan[0]
        if out.joint is not None:       # the others' binding scenario is never shown
            out.joint.described = np.array(shown, dtype=np.int64)
        if memo is not None:
            memo.pop(account, None)
            if plan is not None and _Prepared.fits(out):
                if len(memo) >= MEMO_SIZE:
                    memo.pop(next(iter(memo)))
                memo[account] = _Prepared(out, block, src, symbols, states, plan)
                memo[account].key = key
        compute(out, model, rows=rows)
    else:
        out = prep.out
        prep.key = key
        compute(out, model, rows=prep.rows)
    check_finite(out)
    af = out.account
    figures = [{f: float(getattr(af, f)[k]) if k >= 0 else 0.0 for f in FIGURES}
               for k in where]
    table = accounts_table(out, model, acc=np.array(shown, dtype=np.int64))
    if shown != ends:                   # a state with no rows at all
        table = pa.concat_tables([table.slice(shown.index(k), 1) if k >= 0 else
                                  _empty_row(table, account, model) for k in ends])
    table = table.set_column(0, "account", pa.array([account, account], pa.string()))
    return _what_if(account, trade, legs, sets, distinct, table, figures)


def _info(src):
    """``{symbol: (underlying, kind, settlement, contract size, mark)}`` of the instruments
    ``src`` (symbol -> (book, index)), read per book in one gather of each column."""
    by_book = {}
    for s, (b, k) in src.items():
        by_book.setdefault(id(b), (b, [], []))
        by_book[id(b)][1].append(s)
        by_book[id(b)][2].append(k)
    info = {}
    for b, names, ks in by_book.values():
        ks = np.array(ks, dtype=np.int64)
        und = [b.und_names[c] for c in b.und_code[ks].tolist()]
        kind = [INSTRUMENT_KINDS[c] for c in b.kind[ks].tolist()]
        settle = ["inverse" if c == INVERSE else "linear" for c in b.settlement[ks].tolist()]
        info.update(zip(names, zip(und, kind, settle, b.contract_size[ks].tolist(),
                                   b.mark[ks].tolist())))
    return info


def _listed(symbols, catalog, market, instruments, model, valuation_time):
    """Validate the instruments ``symbols`` not yet in ``catalog`` as
    :func:`~pmrisk.io.book.load_book` does for a held symbol (one position of each) and add
    them; False when one does not pass (expired, no mark_iv, no index row, ...)."""
    todo = [s for s in symbols if s not in catalog]
    if todo:
        mkt, idx = market.tables()
        try:
            b = load_book({"account": ["what-if"] * len(todo), "symbol": todo,
                           "quantity": [1.0] * len(todo)}, instruments, mkt, idx, None, None,
                          None, model, valuation_time)
        except MarginError:
            return False
        got = b.symbols.to_pylist()
        if sorted(got) != sorted(todo):     # an expired instrument the model ignores
            return False
        b.mark, b.mark_iv, b.forward = b.mark.copy(), b.mark_iv.copy(), b.forward.copy()
        catalog.update({s: (b, k) for k, s in enumerate(got)})
    return True


def _reuse_rows(out, model, held, own):
    """Copy into ``out`` (the small book's outcome, prepared) the revaluation rows of the
    instruments ``own`` (small book's instrument -> the block's) that the block's outcome
    ``held`` has priced: their scenario P&L rows and, under ``cross_unit = "correlated"``,
    their joint stress grid curves and pricing constants (a :class:`JointStress` built here
    as the engine builds it).  These are the instruments the account holds or orders: every
    update that moves their marks reprices their rows in the account's block, so they are
    the rows the engine would compute here, at the same marks, to the bit.  Returns None
    (nothing reused: :func:`pmrisk.engine.core.compute` prices every row) or ``(rows left
    to price, (rows copied, the block's rows they copy))``."""
    rv, n = out.rev, len(out.book.kind)
    if not own or out.params.margin_rules != "scenario" or \
            (out.params.cross_unit == "correlated" and held.joint is None):
        return None
    mine = np.full(n, -1, dtype=np.int64)
    mine[list(own)] = list(own.values())
    # each row's block instrument; rows from n on are floored copies: the block's copy
    use, src, left = row_sources(mine, *kernel_args(rv.row_instr), n,
                                 *kernel_args(held.rev.floored), len(held.book.kind))
    if not len(use):
        return None
    if out.params.cross_unit == "correlated":
        lay = out.layout
        js = JointStress(model, out.units, out.pos_unit, lay.pu_start, lay.pu_order,
                         lay.ua_start, lay.q_port, out.pos_row, len(out.book.accounts),
                         len(rv.row_instr))
        js.incremental = False          # one run: no records for ticks to come
        out.joint = js
    _copy_rows(out, held, use, src)
    return left, (use, src)


def _copy_rows(out, held, use, src):
    """Copy the block outcome ``held``'s revaluation rows ``src`` into ``out``'s rows
    ``use``: scenario P&L and, with a joint stress, its pricing constants and grid curves."""
    w = min(out.instr_pnl.shape[1], held.instr_pnl.shape[1])   # padding beyond: zeros
    out.instr_pnl[use, :w] = held.instr_pnl[src, :w]
    js, hj = out.joint, held.joint
    if js is not None:
        for mine_c, held_c in zip(js.ins, hj.ins):
            mine_c[use] = held_c[src]
        w = min(js.icurve.shape[1], hj.icurve.shape[1])
        js.icurve[use, :w] = hj.icurve[src, :w]


MEMO_SIZE = 64          # accounts whose last what-if a monitor keeps prepared


class _Prepared:
    """A what-if's small book laid out (:func:`pmrisk.engine.core.prepare`), its reused
    rows' plan and what it was built from, kept for the next what-if of the account.

    The layout (units, CSR indexes, expiry groups, the joint stress's groups, floored rows)
    depends on which rows the states have and which of them are short; the quantities,
    entry prices, marks, forwards, vols, index prices and balances are read again at every
    call.  :meth:`refresh` takes the new state in and says whether the layout still holds:
    the same block, the same instruments from the same books, states that lay out the same
    (:meth:`_States.same_layout`) and the same options at the vol floor.  Then
    :func:`pmrisk.engine.core.compute` over everything (every unit, account and balance;
    the rows not copied from the block priced anew) computes exactly what it computes on
    a fresh layout, as a Monitor's tick does."""

    @staticmethod
    def fits(out):
        """Whether a layout can be kept: scenario rules without excluded instruments (whose
        revaluation arguments are read from the layout)."""
        return out.params.margin_rules == "scenario" and not out.layout.excluded_any \
            and out.okx is None

    def __init__(self, out, block, src, symbols, states, plan):
        self.out, self.rows, (self.use, self.src) = out, plan[0], plan[1]
        self.key = None                 # what_if_held's key of ``states``
        # what the layout was built from, by weak reference (a block the monitor rebuilt
        # must not stay alive for this); the block outcome's revaluation rows (a tick's
        # copy of the outcome keeps them, a run of the whole block does not)
        self.block, self.base = weakref.ref(block), weakref.ref(block.book)
        self.rows_of = weakref.ref(block.out.rev.row_instr)
        self.symbols, self.states = symbols, states
        self.from_ = [(id(src[x][0]), src[x][1]) for x in symbols]
        # the books the instruments come from (alive: their ids are theirs), and per book
        # the small book's instruments and theirs, to read the marks in one gather
        gather = {}
        for j, x in enumerate(symbols):
            b, k = src[x]
            gather.setdefault(id(b), (weakref.ref(b), [], []))
            gather[id(b)][1].append(j)
            gather[id(b)][2].append(k)
        self.gather = [(b, np.array(at, dtype=np.int64), np.array(ks, dtype=np.int64))
                       for b, at, ks in gather.values()]

    def refresh(self, block, src, symbols, states):
        """Take the current marks and balances in; False (nothing kept) when the layout
        no longer holds."""
        if block is not self.block() or block.book is not self.base() \
                or block.out.rev.row_instr is not self.rows_of() or symbols != self.symbols \
                or any(b() is None for b, _, _ in self.gather) \
                or [(id(src[x][0]), src[x][1]) for x in symbols] != self.from_ \
                or not (states is self.states or states.same_layout(self.states)):
            return False
        out = self.out
        book = out.book
        pv = states.pos_v
        book.quantity[:], book.entry_price[:], book.leverage[:] = pv[:, 0], pv[:, 1], pv[:, 2]
        book.ord_qty[:] = states.ord_q
        for b, at, ks in self.gather:
            b = b()
            book.mark[at], book.forward[at], book.mark_iv[at] = b.mark[ks], b.forward[ks], \
                b.mark_iv[ks]
        floor = out.params.per_type["vol_floor"][out.instr_type]
        copies = floored_copies(book, floor)
        if len(copies) != len(out.rev.floored) or (copies != out.rev.floored).any():
            return False                # a vol floor started or stopped binding
        book.bal_amount[:] = states.bal_v
        # the quantities' layout columns, by lay_out's own kernel
        lay = out.layout
        lay.q_port[:], lay.short_opt[:] = position_layout(*kernel_args(
            book.pos_instr, book.quantity, book.kind, lay.excluded_instr, out.instr_type,
            out.params.per_type["short_option_minimum"], book.ord_instr))[1:3]
        if out.joint is not None and out.joint.q is not lay.q_port:
            out.joint.q[:] = lay.q_port
        self.states = states
        units = out.units
        snap = book.acc_snap[units.account]
        units.index_px[:] = prices_by_type(book, units.type_und, units.utype, snap)
        units.settle_px[:] = prices_by_type(book, units.type_ccy, units.utype, snap)
        _copy_rows(out, block.out, self.use, self.src)
        return True


def _legs(acc, sym, qty, price, is_order):
    """The trades as (row, symbol, quantity, price applied, is_order, priced) tuples, and the
    sets of them whose states are margined: ``(legs, sets, distinct sets)``."""
    marks = np.array([acc.info[s][4] for s in sym])
    applied_px = np.where(np.isnan(price), marks, price)
    n = len(sym)
    legs = [(i, sym[i], float(qty[i]), float(applied_px[i]), bool(is_order[i]),
             not np.isnan(price[i])) for i in range(n)]
    # the states: before, after, each trade alone, the basket without each trade
    sets = [(), tuple(range(n))] + [(i,) for i in range(n)] + \
        [tuple(j for j in range(n) if j != i) for i in range(n)]
    return legs, sets, list(dict.fromkeys(sets))


def _what_if(account, trade, legs, sets, distinct, accounts, figures):
    """The :class:`WhatIf` of the figures of each distinct set (``figures``: per set
    ``{figure: USD}``) and the accounts-table rows ``accounts`` of the states before and
    after."""
    sym, qty, _, is_order = trade
    n = len(legs)
    by_set = {s: figures[k] for k, s in enumerate(distinct)}
    before, after = by_set[()], by_set[tuple(range(n))]
    if accounts.column_names[1] != "state":
        accounts = accounts.add_column(1, "state", STATES)
    inc = {}
    for f in FIGURES:
        alone = np.array([by_set[(i,)][f] - before[f] for i in range(n)])
        marginal = np.array([after[f] - by_set[sets[2 + n + i]][f] for i in range(n)])
        inc[f] = (alone, marginal)
    fig = {k: [] for k in SUMMARY.names}
    for f in FIGURES:
        alone, marginal = inc[f]
        increase = after[f] - before[f]
        legs_sum = float(alone.sum())
        for k, v in (("figure", f), ("before", before[f]), ("after", after[f]),
                     ("increase", increase), ("standalone_sum", legs_sum),
                     ("marginal_sum", float(marginal.sum())),
                     ("overcharge", legs_sum / increase if increase > 0 else None)):
            fig[k].append(v)
    # one Arrow array per type, cut into the columns (each conversion has a fixed cost)
    (im_a, im_m), (mm_a, mm_m) = inc["initial_margin"], inc["maintenance_margin"]
    f8 = pa.array(qty.tolist() + [g[3] for g in legs] + im_a.tolist() + mm_a.tolist()
                  + im_m.tolist() + mm_m.tolist()
                  + [v for k in SUMMARY.names[1:] for v in fig[k]], _F8)
    st = pa.array(list(sym) + ["order" if o else "fill" for o in is_order] + fig["figure"],
                  _STR)
    trades = pa.Table.from_arrays(
        [pa.array(range(n), pa.int64()), st.slice(0, n), st.slice(n, n)]
        + [f8.slice(j * n, n) for j in range(6)], schema=TRADES_OUT)
    m = len(FIGURES)
    summary = pa.Table.from_arrays([st.slice(2 * n, m)] + [
        f8.slice(6 * n + j * m, m) for j in range(len(SUMMARY) - 1)], schema=SUMMARY)
    return WhatIf(account=account, accounts=accounts, trades=trades, summary=summary)


class _States(NamedTuple):
    """The rows of the small book's accounts (account k: the account with a set of trades
    applied): ``where`` the account of each set (-1: no rows at all, which a book leaves
    out), then position, order, balance and reserve columns (instruments by their code
    in the small book); ``bal_v``, the balance amounts, last (they move with the marks)."""
    where: list
    pos_a: np.ndarray
    pos_i: np.ndarray
    pos_v: np.ndarray           # (n, 3): quantity, entry price, leverage; NaN: absent
    ord_a: np.ndarray
    ord_i: np.ndarray
    ord_q: np.ndarray
    bal_a: np.ndarray
    bal_s: list
    res_a: np.ndarray
    res_u: list
    res_m: np.ndarray
    res_o: np.ndarray
    bal_v: np.ndarray

    def same_layout(self, other):
        """Whether ``other`` lays out as these rows: the same positions, orders, balances
        and reserves, the same of them short; quantities, entry prices, leverages and
        balance amounts aside (a layout reads those again)."""
        return self.where == other.where and self.bal_s == other.bal_s and \
            self.res_u == other.res_u and all(
                a.shape == b.shape and a.tobytes() == b.tobytes()     # to the bit
                for a, b in ((self.pos_a, other.pos_a), (self.pos_i, other.pos_i),
                             (self.pos_v[:, 0] < 0, other.pos_v[:, 0] < 0),
                             (self.ord_a, other.ord_a), (self.ord_i, other.ord_i),
                             (self.ord_q < 0, other.ord_q < 0), (self.bal_a, other.bal_a),
                             (self.res_a, other.res_a), (self.res_m, other.res_m),
                             (self.res_o, other.res_o)))


def _state_rows(acc, legs, sets, code):
    """The :class:`_States` of the account with the trades of each of ``sets`` applied
    (``code``: symbol -> its instrument in the small book)."""
    pos_a, pos_s, pos_v = [], [], []
    ord_a, ord_i, ord_q = [], [], []
    bal_a, bal_s, bal_v = [], [], []
    res_a, res_u, res_m, res_o = [], [], [], []
    where = []
    k = 0
    for s in sets:
        pos, bal, orders = acc.applied([legs[i] for i in s])
        if not (pos or bal or orders or acc.reserves):
            where.append(-1)
            continue
        where.append(k)
        pos_a += [k] * len(pos)
        pos_s += pos.keys()
        pos_v += pos.values()           # (quantity, entry price, leverage); None: absent
        for o in orders:
            ord_a.append(k)
            ord_i.append(code[o["symbol"]])
            ord_q.append(o["quantity"])
        bal_a += [k] * len(bal)
        bal_s += [a for a, _ in bal]
        bal_v += [v for _, v in bal]
        for r in acc.reserves:
            res_a.append(k)
            res_u.append(r["unit"])
            res_m.append(r["mmp_margin"] or 0.0)
            res_o.append(r["open_orders_margin"] or 0.0)
        k += 1
    i8, f8 = np.int64, np.float64
    return _States(
        where, np.array(pos_a, i8), np.array([code[x] for x in pos_s], i8),
        np.array(pos_v, dtype=f8).reshape(-1, 3), np.array(ord_a, i8), np.array(ord_i, i8),
        np.array(ord_q, f8), np.array(bal_a, i8), bal_s, np.array(res_a, i8), res_u,
        np.array(res_m, f8), np.array(res_o, f8), np.array(bal_v, f8))


def _states_book(states, src, symbols, base):
    """One validated :class:`~pmrisk.io.book.Book` whose accounts are the rows ``states``
    (:class:`_States`), built from validated arrays: the instruments ``symbols`` (sorted;
    ``src``: symbol -> (book, index), marks as those books hold them now), the valuation
    time and index prices of ``base``."""
    code = {s: j for j, s in enumerate(symbols)}
    und_names = sorted({b.und_names[b.und_code[k]] for b, k in src.values()})
    und_of = {u: j for j, u in enumerate(und_names)}
    n = len(symbols)
    fields = ("kind", "settlement", "contract_size", "mark", "forward", "strike", "is_call",
              "expiry_ns", "years", "mark_iv", "instr_snap")
    cols = {f: np.empty(n, dtype=getattr(base, f).dtype) for f in fields}
    und_code = np.empty(n, dtype=np.int64)
    groups = {}
    for s, (b, k) in src.items():
        groups.setdefault(id(b), (b, [], []))
        groups[id(b)][1].append(code[s])
        groups[id(b)][2].append(k)
    for b, at, ks in groups.values():
        at, ks = np.array(at, dtype=np.int64), np.array(ks, dtype=np.int64)
        for f in fields:
            cols[f][at] = getattr(b, f)[ks]
        und_code[at] = [und_of[b.und_names[c]] for c in b.und_code[ks].tolist()]
    k = sum(w >= 0 for w in states.where)
    i8, pv = np.int64, states.pos_v
    return replace(
        base, accounts=pa.array([str(j) for j in range(k)], pa.string()),
        acc_snap=np.zeros(k, dtype=i8), symbols=pa.array(symbols, pa.string()),
        und_code=und_code, und_names=und_names, **cols,
        pos_account=states.pos_a, pos_instr=states.pos_i,
        quantity=pv[:, 0].copy(), entry_price=pv[:, 1].copy(), leverage=pv[:, 2].copy(),
        ord_account=states.ord_a, ord_instr=states.ord_i, ord_qty=states.ord_q.copy(),
        ord_id=pa.array([str(j) for j in range(len(states.ord_a))], pa.string()),
        bal_account=states.bal_a, bal_asset=states.bal_s, bal_amount=states.bal_v.copy(),
        res_account=states.res_a, res_unit=states.res_u, res_mmp=states.res_m,
        res_oo=states.res_o)


def _margin_states(acc, legs, sets, tables, instruments, market, model, valuation_time):
    """Margin of the account with each set of trades applied, all in one engine call (each
    set is one account of one small book, validated by load_book).  Returns the
    accounts-table rows of the states before and after (the first two sets) and, per set,
    ``{figure: USD}``."""
    names = [f"{k}" for k in range(len(sets))]
    rows = {"positions": [], "balances": [], "open_orders": [], "reserves": []}
    for name, s in zip(names, sets):
        pos, bal, orders = acc.applied([legs[i] for i in s])
        rows["positions"] += [{"account": name, "symbol": x, "quantity": q, "entry_price": e,
                               "leverage": lev} for x, (q, e, lev) in pos.items()]
        rows["balances"] += [{"account": name, "asset": a, "amount": v} for a, v in bal]
        rows["open_orders"] += [dict(o, account=name) for o in orders]
        rows["reserves"] += [{"account": name, "unit": r["unit"],
                              "mmp_margin": r["mmp_margin"] or 0.0,
                              "open_orders_margin": r["open_orders_margin"] or 0.0}
                             for r in acc.reserves]
    t = {k: pa.Table.from_pylist(v, schema=SCHEMAS[k]) if v else None for k, v in rows.items()}
    positions = t["positions"] if t["positions"] is not None else SCHEMAS["positions"].empty_table()
    balances, orders, reserves = t["balances"], t["open_orders"], t["reserves"]
    book = load_book(positions, instruments, market, tables["index"], balances, orders,
                     reserves, model, valuation_time)
    out = run(book, model)
    check_finite(out)
    table = accounts_table(out, model)
    where = {a: i for i, a in enumerate(table.column("account").to_pylist())}
    result, figures = [], []
    for name in names:
        i = where.get(name)
        if i is None:           # nothing left at all (no rows): nothing held, nothing charged
            row = _empty_row(table, acc.name, model)
        else:
            row = table.slice(i, 1)
            row = row.set_column(0, "account", pa.array([acc.name], pa.string()))
        result.append(row)
        figures.append({f: row.column(f)[0].as_py() for f in FIGURES})
    return result[:2], figures


def _empty_row(table, name, model):
    """The accounts-table row of an account with no rows at all."""
    ratio = margin_ratio(np.zeros(1), np.zeros(1))
    values = {c: [0.0] for c in table.column_names}
    values.update(account=[name], margin_ratio=ratio, worst_scenario=["none"],
                  status=status_array(ratio, model["thresholds"]))
    return pa.table({c: pa.array(values[c], table.schema.field(c).type)
                     for c in table.column_names})

"""``pmrisk.liquidation_plan``: the ordered actions that bring an account in ``liquidation``
status back to the model's ``liquidation_target``.

The plan is built on top of :func:`pmrisk.margin`, used as a black box: after every action the
account's reduced book is margined again, on its own (the inputs filtered to that account and
its instruments, so each call is small: a cancellation costs one, a reduction a few dozen
for its search).

Choices:

- **Order.**  All of the account's open orders are cancelled first, one ``cancel_order`` row
  each, in ``order_id`` order.  Orders only add initial margin, so these rows normally leave
  ``margin_ratio_after`` unchanged; they are still recomputed.  Then the position with the
  largest positive ``mm_contribution_usd`` (USD, so that coin- and stablecoin-settled units
  compare; ties by symbol) is reduced, and the book is margined again before the next pick.
  Positions with a zero or negative contribution (hedges) are never touched.
- **Smallest reduction.**  The chosen position is reduced by the smallest amount after which
  ``margin_ratio >= target``, found by bisection on the reduced amount in ``(0, |quantity|]``
  (lower end failing, upper end passing, down to a relative width of 1e-9; the upper end is
  returned, so the step really reaches the target).  The ratio need not rise all the way to a
  close: a position that is part risk and part hedge (short puts against a short future) can
  restore the target when partly bought back and miss it when closed.  Equity minus
  ``target x MM`` is concave in the amount (equity linear, MM a worst case over scenarios,
  i.e. convex), so the amounts that reach the target form one interval; when closing misses,
  its maximum is searched first (golden section) and the bisection runs below it.  Only when
  no amount reaches the target is the position closed (``close``) and the next contributor
  taken.  The plan ends when the ratio reaches the target or when no position with a
  positive contribution is left (the book is closed as far as it can be; the last ratio is
  then below the target).
- **Lots.**  Quantities are continuous unless ``lot_sizes`` gives a lot per symbol: a
  reduction is then a whole number of lots (the searches run on the lot count, so the
  smallest number of lots is found: the continuous amount rounded up), or the whole position
  when that is less.
- **At the mark.**  Every trade is executed at the mark.  What the reduced part was worth in
  equity moves into the account's balance of the unit's settlement currency (the coin for
  inverse units, the model's ``linear_settlement_currency`` for linear ones): for an option or
  spot position its value ``quantity x contract_size x mark``; for a future or perpetual with
  an ``entry_price`` its unrealised P&L (the rest of the position keeps its entry price); for
  one without an entry price nothing (its P&L is already in the balances).  Actual
  equity is therefore unchanged by a step.  Equity can change, as it would on the venue: the
  realised amount is now a balance, valued at its asset's collateral rate (a haircut, or a
  tier boundary crossed), and a realised loss larger than the balance becomes a loan, charged
  ``loan_mmr``.
- **Untouched.**  Reserves (MMP and open-order reserves) are kept: they only add IM.
- **Scope.**  Only accounts whose status is ``liquidation`` get rows; ``accounts`` restricts
  which accounts are considered (an account not in the inputs is an error).  A plan is for
  one snapshot: inputs with a ``time`` column are rejected.
"""

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..io.arrow import is_string_type, as_table, has, str_column, valuation_ns
from ..io.book import add_cash
from ..errors import MarginError
from .margin import margin
from ..model.model import Model
from ..io.schema import TIME
from .snapshots import timed

CANCEL, REDUCE, CLOSE = "cancel_order", "reduce", "close"
LIQUIDATION = "liquidation"
UNALLOCATED = "unallocated"
REL_WIDTH = 1e-9          # bisection stops when (hi - lo) <= REL_WIDTH * hi
MAX_ITER = 60


def liquidation_plan(positions, instruments, market, index, balances=None, open_orders=None,
                     reserves=None, model=None, valuation_time=None, accounts=None,
                     target=None, lot_sizes=None):
    """The liquidation plan of every account in ``liquidation`` status.

    Parameters
    ----------
    positions, instruments, market, index, balances, open_orders, reserves
        As for :func:`pmrisk.margin`, for one snapshot: no ``time`` column.
    model : str, dict, path or Model
        As for :func:`pmrisk.margin` (default ``standard``).  Its ``thresholds`` decide
        which accounts are in liquidation.
    valuation_time : datetime, str or numpy datetime64, optional
        When the book is valued (default: now, UTC, fixed once for the whole plan).
    accounts : list of str, optional
        Consider only these accounts (still only those in ``liquidation`` status get rows).
    target : float, optional
        Margin ratio to restore (default: the model's ``liquidation_target``).
    lot_sizes : dict, optional
        ``{symbol: lot}``: reductions of these symbols are whole numbers of lots (rounded up),
        or the whole position.  Other symbols trade in any quantity.

    Returns
    -------
    pyarrow.Table
        One row per action, in execution order: ``account``, ``step`` (int64, from 1 per
        account), ``action`` (``cancel_order``, ``reduce`` or ``close``), ``symbol``,
        ``order_id`` (the cancelled order; null for trades), ``quantity`` (the signed trade:
        reducing a long is negative; null for a cancellation) and ``margin_ratio_after``
        (the account's margin ratio once the action is done; ``inf`` once nothing is
        charged).

    Raises
    ------
    MarginError
        On any input problem (as :func:`pmrisk.margin`), a ``time`` column, an unknown
        account, a target that is not a finite number > 0 or a lot that is not > 0.

    Examples
    --------
    Twenty short calls on 1 BTC of balance, below the 0.75 liquidation level of ``deribit_pme``:
    buying back part of the call restores a margin ratio of 1.

    >>> import pmrisk
    >>> from pmrisk.engine.liquidation import liquidation_plan
    >>> book = dict(
    ...     positions={"account": ["a"], "symbol": ["BTC-C"], "quantity": [-20.0]},
    ...     instruments={"symbol": ["BTC-C"], "underlying": ["BTC"], "kind": ["option"],
    ...                  "settlement": ["inverse"], "contract_size": [1.0],
    ...                  "expiry": ["2024-03-29T08:00:00Z"], "strike": [60000.0],
    ...                  "option_type": ["call"]},
    ...     market={"symbol": ["BTC-C"], "mark_price": [0.02], "mark_iv": [0.6]},
    ...     index={"underlying": ["BTC"], "index_price": [50000.0]},
    ...     balances={"account": ["a"], "asset": ["BTC"], "amount": [1.0]},
    ...     valuation_time="2024-01-01T00:00:00Z", model="deribit_pme")
    >>> pmrisk.margin(**book).accounts["status"][0].as_py()
    'liquidation'
    >>> plan = liquidation_plan(**book)
    >>> plan.select(["step", "action", "symbol"]).to_pylist()
    [{'step': 1, 'action': 'reduce', 'symbol': 'BTC-C'}]
    >>> round(plan["quantity"][0].as_py(), 3)    # 12.929 of the 20 calls bought back
    12.929
    >>> round(plan["margin_ratio_after"][0].as_py(), 6)
    1.0
    """
    model = Model.coerce(model)
    tables = {"positions": positions, "instruments": instruments, "market": market,
              "index": index, "balances": balances, "open_orders": open_orders,
              "reserves": reserves}
    tables = {k: as_table(v, k) for k, v in tables.items()}
    with_time = timed(tables)
    if with_time:
        raise MarginError(with_time[0], TIME, "no time column: a liquidation plan is for one "
                          "snapshot", hint="Filter the inputs to one time and pass it as "
                          "valuation_time")
    # one valuation time for every margin call of the plan (and the model in force then)
    vt = np.datetime64(valuation_ns(valuation_time), "ns")
    model = model.at(int(vt.astype(np.int64)))
    target = _target(model, target)
    lots = _lots(lot_sizes)

    whole = margin(**tables, model=model, valuation_time=vt)
    names = whole.accounts["account"].to_pylist()
    status = whole.accounts["status"].to_pylist()
    chosen = _chosen(accounts, names)
    order_id_type = (_order_id_type(tables["open_orders"])
                     if tables["open_orders"] is not None else pa.string())

    rows, plain = [], None
    for name, st in zip(names, status):
        if st != LIQUIDATION or (chosen is not None and name not in chosen):
            continue
        if plain is None:
            plain = {k: _plain(v) for k, v in tables.items()}
        book = _AccountBook(plain, name, model, vt)
        rows.extend(book.plan(target, lots))
    return plan_table(rows, order_id_type)


def _target(model, target):
    t = model["liquidation_target"] if target is None else target
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) \
            or not math.isfinite(t) or t <= 0:
        raise MarginError("arguments", "target", f"a finite margin ratio > 0, got {t!r}")
    return float(t)


def _lots(lot_sizes):
    if lot_sizes is None:
        return {}
    if not isinstance(lot_sizes, dict):
        raise MarginError("arguments", "lot_sizes", "a dict {symbol: lot}, got "
                          f"{type(lot_sizes).__name__}")
    bad = [(s,) for s, v in lot_sizes.items()
           if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
           or not (math.isfinite(v) and v > 0)]
    if bad:
        raise MarginError("arguments", "lot_sizes", "lots that are finite numbers > 0",
                          rows=bad, keys=("symbol",))
    return {s: float(v) for s, v in lot_sizes.items()}


def _chosen(accounts, names):
    if accounts is None:
        return None
    if not isinstance(accounts, (str, list, tuple, set, frozenset)) or not all(
            isinstance(a, str) for a in ([accounts] if isinstance(accounts, str) else accounts)):
        raise MarginError("arguments", "accounts", "an account name or a list of account "
                          f"names (str), got {accounts!r}")
    chosen = [accounts] if isinstance(accounts, str) else list(accounts)
    known = set(names)
    unknown = [(a,) for a in chosen if a not in known]
    if unknown:
        raise MarginError("arguments", "accounts", "accounts present in the inputs",
                          rows=unknown, keys=("account",))
    return set(chosen)


def _plain(table):
    """String-like columns (views, large strings, dictionaries: polars, pandas) as plain
    ``string``, which every Arrow kernel here (filter, take, sort) takes."""
    if table is None:
        return None
    for i, field in enumerate(table.schema):
        if is_string_type(field.type) and not pa.types.is_string(field.type):
            table = table.set_column(i, field.name, str_column(table, field.name))
    return table


def _of_account(table, name):
    if table is None:
        return None
    return table.filter(pc.equal(table["account"], name))


def _order_id_type(open_orders):
    """Order ids keep their type, except that every string-like type becomes ``string``."""
    t = open_orders.schema.field("order_id").type
    return pa.string() if is_string_type(t) else t


def _order_ids(open_orders):
    return open_orders["order_id"].combine_chunks()


def _of_symbols(table, symbols):
    return table.filter(pc.is_in(table["symbol"], value_set=symbols))


class _AccountBook:
    """One account's book as it is liquidated: positions and balances as plain Python state,
    margined by :func:`pmrisk.margin` on tables rebuilt from it."""

    def __init__(self, tables, name, model, vt):
        self.name, self.model, self.vt = name, model, vt
        pos = _of_account(tables["positions"], name)
        oo = _of_account(tables["open_orders"], name)
        # only the account's instruments: each margin call then validates a small universe
        held = pc.unique(pa.chunked_array(
            [str_column(pos, "symbol")] + ([str_column(oo, "symbol")] if oo is not None else []),
            pa.string()))
        self.static = {
            "instruments": _of_symbols(tables["instruments"], held),
            "market": _of_symbols(tables["market"], held),
            "index": tables["index"],
        }
        self.has_entry = has(pos, "entry_price")
        self.symbols = str_column(pos, "symbol").to_pylist()
        self.qty = dict(zip(self.symbols, pos["quantity"].cast(pa.float64()).to_pylist()))
        self.entry = dict(zip(self.symbols, pos["entry_price"].cast(pa.float64()).to_pylist()
                              if self.has_entry else [None] * len(self.symbols)))
        self.has_leverage = has(pos, "leverage")
        self.leverage = dict(zip(self.symbols, pos["leverage"].cast(pa.float64()).to_pylist()
                                 if self.has_leverage else [None] * len(self.symbols)))
        bal = _of_account(tables["balances"], name)
        # (asset, amount) per row: several rows of an asset stay apart (holdings, loans)
        self.balances = [] if bal is None else list(zip(
            str_column(bal, "asset").to_pylist(), bal["amount"].cast(pa.float64()).to_pylist()))
        if oo is not None and oo.num_rows:
            oo = oo.take(pc.sort_indices(_order_ids(oo)))
        self.orders = oo
        self.reserves = _of_account(tables["reserves"], name)
        self.n_cancelled = 0
        # per symbol: value per contract in equity (settlement currency) and that currency
        res = self.margin()
        self.per_contract, self.currency = {}, {}
        for s, unit, q, v in self._rows(res.positions, "unit", "quantity", "value"):
            self.per_contract[s] = v / q if q != 0 else 0.0
            # a unit "COIN/CCY" settles in CCY; an okx_pm unit ("COIN") is in USD
            self.currency[s] = unit.split("/", 1)[1] if "/" in unit else "USD"
        self.result = res

    # -- the book after a trade at the mark, and its margin ---------------------------------
    def traded(self, symbol, trade):
        """(quantities, balances) after trading ``trade`` (signed) of ``symbol`` at the mark:
        the traded part's value in equity moves into the settlement currency's balance
        (its first row with a positive amount, else its first row, else a new row:
        :func:`pmrisk.io.book.add_cash`)."""
        qty, bal = dict(self.qty), list(self.balances)
        q = qty[symbol]
        qty[symbol] = 0.0 if trade == -q else q + trade      # a close is exact
        v = self.per_contract[symbol]
        if v != 0.0:
            ccy = self.currency[symbol]
            bal = add_cash(bal, ccy, -v * trade)
        return qty, bal

    def tables(self, qty, bal):
        held = [s for s in self.symbols if qty[s] != 0.0]
        pos = {"account": pa.array([self.name] * len(held), pa.string()),
               "symbol": pa.array(held, pa.string()),
               "quantity": pa.array([qty[s] for s in held], pa.float64())}
        if self.has_entry:
            pos["entry_price"] = pa.array([self.entry[s] for s in held], pa.float64())
        if self.has_leverage:
            pos["leverage"] = pa.array([self.leverage[s] for s in held], pa.float64())
        out = dict(self.static)
        out["positions"] = pa.table(pos)
        out["balances"] = pa.table({"account": pa.array([self.name] * len(bal), pa.string()),
                                    "asset": pa.array([a for a, _ in bal], pa.string()),
                                    "amount": pa.array([v for _, v in bal], pa.float64())})
        out["open_orders"] = (self.orders.slice(self.n_cancelled)
                              if self.orders is not None else None)
        out["reserves"] = self.reserves
        return out

    def margin(self, trial=None):
        """Margin of the current book, or of the book after ``trial = (symbol, trade)``."""
        qty, bal = (self.qty, self.balances) if trial is None else self.traded(*trial)
        return margin(**self.tables(qty, bal), model=self.model, valuation_time=self.vt)

    def apply(self, symbol, trade):
        self.qty, self.balances = self.traded(symbol, trade)
        self.result = self.margin()

    @staticmethod
    def _account(res):
        """(equity, maintenance margin, margin ratio) of the one account in ``res``."""
        if res.accounts.num_rows == 0:
            return 0.0, 0.0, math.inf      # nothing left at all: nothing charged
        row = res.accounts.select(["equity", "maintenance_margin", "margin_ratio"])
        return tuple(row.to_pylist()[0].values())

    @classmethod
    def ratio(cls, res):
        return cls._account(res)[2]

    @staticmethod
    def _rows(positions, *cols):
        t = positions.filter(pc.not_equal(positions["symbol"], UNALLOCATED))
        return zip(t["symbol"].to_pylist(), *(t[c].to_pylist() for c in cols))

    # -- the plan ----------------------------------------------------------------------------
    def plan(self, target, lots):
        rows = []

        def add(action, symbol, order_id, quantity):
            rows.append((self.name, len(rows) + 1, action, symbol, order_id, quantity,
                         self.ratio(self.result)))

        n_orders = self.orders.num_rows if self.orders is not None else 0
        if n_orders:
            ids = _order_ids(self.orders).to_pylist()
            symbols = str_column(self.orders, "symbol").to_pylist()
        for k in range(n_orders):
            self.n_cancelled = k + 1
            self.result = self.margin()
            add(CANCEL, symbols[k], ids[k], None)
        while self.ratio(self.result) < target:
            symbol = self._largest_contributor()
            if symbol is None:
                break                      # closed as far as it can be
            q = self.qty[symbol]
            amount = self._smallest_reduction(symbol, target, lots.get(symbol))
            close = amount >= abs(q)
            trade = -q if close else -math.copysign(amount, q)
            self.apply(symbol, trade)
            add(CLOSE if close else REDUCE, symbol, None, trade)
        return rows

    def _largest_contributor(self):
        """The open position with the largest positive contribution in USD (ties: symbol)."""
        best = None
        for s, c in self._rows(self.result.positions, "mm_contribution_usd"):
            if self.qty.get(s, 0.0) == 0.0 or not c > 0.0:
                continue
            if best is None or (-c, s) < best:
                best = (-c, s)
        return None if best is None else best[1]

    def _smallest_reduction(self, symbol, target, lot):
        """Smallest amount (> 0, <= |q|) to trade ``symbol`` toward zero after which the ratio
        is >= ``target``; ``|q|`` when no amount reaches it.

        The search is on ``g(x) = equity - target * MM`` after reducing by ``x`` (>= 0 exactly
        when the ratio is >= target).  Equity is linear in ``x`` (concave with collateral
        tiers) and MM convex (a worst case over scenarios plus |delta|-driven add-ons), so
        ``g`` is concave and the amounts that reach the target form one interval.  When the
        whole position reaches it, the interval ends at ``|q|`` and a bisection finds its
        start.  When it does not, the interval may still lie inside (a position that is part
        risk and part hedge: short puts against a short future, say), so the maximum of ``g``
        is searched first (golden section) and the bisection then runs below it.  Only the
        delta shock's cap breaks the concavity; the search is then a best effort.
        """
        q = self.qty[symbol]
        size = abs(q)
        memo = {}
        # with lots, x counts lots; the amount traded is at most the position
        amount = (lambda n: min(n * lot, size)) if lot is not None else (lambda x: x)
        top = math.ceil(size / lot) if lot is not None else size

        def g(x):
            if x not in memo:
                a = min(amount(x), size)
                trade = -q if a >= size else -math.copysign(a, q)
                eq, mm, ratio = self._account(self.margin((symbol, trade)))
                memo[x] = (ratio >= target, eq - target * mm)
            return memo[x]

        if g(top)[0]:
            best = top
        else:
            best = _concave_search(g, top, lot is not None)
            if best is None:
                return size
        return min(amount(_first_passing(g, best, lot is not None)), size)


def _first_passing(g, hi, discrete):
    """Smallest x in (0, hi] that passes, given 0 fails, ``hi`` passes and g is increasing
    on [0, hi] (bisection; the upper end is returned, so the result passes)."""
    lo = 0
    if discrete:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if g(mid)[0] else (mid, hi)
        return hi
    for _ in range(MAX_ITER):
        if hi - lo <= REL_WIDTH * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if g(mid)[0] else (mid, hi)
    return hi


def _concave_search(g, top, discrete):
    """A point of (0, top] that passes, searching for the maximum of the concave ``g[1]``
    (ternary search on integers, golden section on reals); None when none passes."""
    if discrete:
        a, b = 1, top
        while b - a > 2:
            m1, m2 = a + (b - a) // 3, b - (b - a) // 3
            for m in (m1, m2):
                if g(m)[0]:
                    return m
            g1, g2 = g(m1)[1], g(m2)[1]
            a, b = (m1, b) if g1 < g2 else (a, m2) if g1 > g2 else (m1, m2)
        return next((m for m in range(a, b + 1) if g(m)[0]), None)
    inv = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = 0.0, top
    c, d = b - inv * (b - a), a + inv * (b - a)
    for _ in range(2 * MAX_ITER):
        for x in (c, d):
            if g(x)[0]:
                return x
        if b - a <= REL_WIDTH * top:
            break
        if g(c)[1] > g(d)[1]:
            b, d = d, c
            c = b - inv * (b - a)
        else:
            a, c = c, d
            d = a + inv * (b - a)
    return None


def plan_table(rows, order_id_type):
    cols = list(zip(*rows)) if rows else [[]] * 7
    return pa.table({
        "account": pa.array(cols[0], pa.string()),
        "step": pa.array(cols[1], pa.int64()),
        "action": pa.array(cols[2], pa.string()),
        "symbol": pa.array(cols[3], pa.string()),
        "order_id": pa.array(cols[4], order_id_type),
        "quantity": pa.array(cols[5], pa.float64()),
        "margin_ratio_after": pa.array(cols[6], pa.float64()),
    })

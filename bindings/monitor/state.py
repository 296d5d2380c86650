"""The inputs a :class:`pmrisk.Monitor` holds, as it holds them: account-state tables whose
rows are replaced account by account, and the market (marks and index prices) as arrays that
a tick overwrites.

Everything here is plain bookkeeping (no margin arithmetic).  An update is first turned into
new values without touching the current ones (``AccountRows.upsert`` returns the accounts'
new rows, ``MarketState.apply`` a new ``MarketState``), so that a bad update can be rejected
before anything changes; the monitor commits them once every check has passed.

Update rules (the monitor's docs repeat them):

* account-state rows are keyed within their account: positions by ``symbol``, balances by
  ``asset``, open orders by ``order_id``.  A row replaces the row with the same key (columns
  absent from the update keep their value; a new row gets nulls there), or is appended.
  A position or an order with ``quantity`` 0, or a balance with ``amount`` 0, is removed.
  A key twice within one update is an input error (as in :func:`pmrisk.margin`), except
  for balances, which may hold several rows per (account, asset) (SPEC 7: positive rows
  one holding, negative rows loans): an update's rows for an (account, asset) replace
  *every* current row of that key, in the place of its first one (or appended); its rows
  of ``amount`` 0 are dropped, so one row of 0 removes the asset.  With one row per key
  this is the rule above.
* market rows replace the symbol's row (columns absent from the update keep their values, and
  so does a null ``mark_price`` or ``mark_iv``; a null ``underlying_price`` is a null: the
  forward then defaults to the index); index rows replace the underlying's price (a null
  keeps it).  New symbols (listed in ``instruments``) and new index assets are added, and
  need a ``mark_price`` (an option also a ``mark_iv``) or an ``index_price``.
* a market row whose ``mark_price``, ``mark_iv`` and ``underlying_price`` equal the current
  values (exactly), and an index row whose ``index_price`` equals the current one, change
  nothing: :meth:`MarketState.apply` leaves them out of what changed, so a feed that re-sends
  unchanged rows recomputes nothing for them.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..io import schema
from ..io.arrow import (is_string_type, as_table, check_columns, codes, duplicated, float_column,
                        has, kernel_args, raise_rows, str_column)
from ..io.book import check_mark_iv
from ..errors import MarginError
from ..io.schema import TIME
from pmrisk.kernel.assemble import csr
from pmrisk.kernel.ticks import market_checks, write_marks

F8 = pa.float64()
STR = pa.string()

# per account-state table: (its columns in the monitor's state with their types: None keeps
# the input's type; the key of a row within its account; the column whose 0 removes a row)
ACCOUNT_TABLES = {
    "positions": ((("account", STR), ("symbol", STR), ("quantity", F8), ("entry_price", F8),
                   ("leverage", F8)), "symbol", "quantity"),
    "balances": ((("account", STR), ("asset", STR), ("amount", F8)), "asset", "amount"),
    "open_orders": ((("account", STR), ("order_id", None), ("symbol", STR), ("quantity", F8),
                     ("price", F8)), "order_id", "quantity"),
    "reserves": ((("account", STR), ("unit", STR), ("mmp_margin", F8),
                  ("open_orders_margin", F8)), "unit", None),
}
SPECS = {"positions": schema.POSITIONS, "balances": schema.BALANCES,
         "open_orders": schema.OPEN_ORDERS, "reserves": schema.RESERVES}
# columns an account-state table may leave out, and what they mean then
_DEFAULTS = {"entry_price": None, "leverage": None, "mmp_margin": 0.0,
             "open_orders_margin": 0.0}
# columns a new row must carry when its table's update may leave them out
_NEW_ROW = {"open_orders": ("symbol", "price")}


def no_time(tables):
    """A monitor holds one snapshot: inputs with a ``time`` column are an input error."""
    for name, t in tables.items():
        if has(t, TIME):
            raise MarginError(name, TIME, "no time column: a monitor holds the current state "
                              "(one snapshot); pass updates as they happen",
                              hint="Replay a history with Monitor.update, or margin it with "
                                   "pmrisk.margin")


def _plain(col):
    """A column with every string-like type as ``string`` (one type to concatenate)."""
    if is_string_type(col.type) and not pa.types.is_string(col.type):
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.dictionary(col.type.index_type, STR))
        return col.cast(STR)
    return col


def normalise(table, name, order_id_type=None):
    """``table`` with exactly the monitor's columns of ``name`` and their types (after the
    checks of :func:`pmrisk.margin`'s schema: a wrong type is an error, not a cast)."""
    cols, _, _ = ACCOUNT_TABLES[name]
    check_columns(table, name, SPECS[name])
    out = {}
    for col, typ in cols:
        if col not in table.column_names:
            default = _DEFAULTS.get(col)
            out[col] = pa.nulls(table.num_rows, F8) if default is None else \
                pa.array(np.full(table.num_rows, default), F8)
            continue
        c = _plain(table.column(col))
        if typ is None:
            typ = order_id_type or c.type
        if typ == F8:               # checked first (finite, bounded): the cast cannot fail
            float_column(table, name, col, nullable=True)
            c = c.cast(F8, safe=False)
        out[col] = c.cast(typ)
    return pa.table(out)


class AccountRows:
    """One account-state table (positions, balances, open orders or reserves) as the monitor
    holds it: the rows it started with (``base``) plus, for every account changed since, that
    account's rows in a small table of their own.  Rows stay grouped by account in their order
    of arrival, so each account's rows keep their relative order in :meth:`table` (what a
    from-scratch :func:`pmrisk.margin` on the monitor's state sees)."""

    def __init__(self, name, table):
        self.name = name
        self.columns, self.key, self.zero = ACCOUNT_TABLES[name]
        t = normalise(table, name) if table is not None else None
        if t is None:
            t = pa.table({c: pa.array([], typ or STR) for c, typ in self.columns})
        self.schema = t.schema
        self._set_base(t)

    def _set_base(self, t):
        self.base = t
        self.changed = {}                  # account -> its current rows (pa.Table, maybe empty)
        self._table = t
        if t.num_rows:
            enc = pc.dictionary_encode(t.column("account")).combine_chunks()
            # each account's rows, in order (one compiled signature: the engine's arguments)
            bounds, order = csr(*kernel_args(enc.indices.to_numpy(zero_copy_only=False),
                                             len(enc.dictionary)))
            self._rows = {a: order[bounds[k]:bounds[k + 1]]
                          for k, a in enumerate(enc.dictionary.to_pylist())}
        else:
            self._rows = {}

    # -- reading --------------------------------------------------------------------------
    def accounts(self):
        """Names of the accounts with at least one row."""
        names = [a for a in self._rows if a not in self.changed]
        return names + [a for a, t in self.changed.items() if t.num_rows]

    def has_rows(self, account):
        t = self.changed.get(account)
        return t.num_rows > 0 if t is not None else account in self._rows

    def rows_of(self, accounts):
        """The rows of ``accounts`` (each account's rows in their order), one table."""
        return self.rows_of_later(accounts)()

    def rows_of_later(self, accounts):
        """:meth:`rows_of` as the rows are now, built when called (a function of no
        arguments).  What it reads is picked now: the base table, the accounts' rows in it
        and their changed tables, which later updates replace but never change."""
        table = self.base
        base = [self._rows[a] for a in accounts if a not in self.changed and a in self._rows]
        new = [self.changed[a] for a in accounts if a in self.changed]

        def build():
            parts = [table.take(pa.array(np.concatenate(base), pa.int64()))] if base else []
            parts += new
            return pa.concat_tables(parts) if parts else table.slice(0, 0)
        return build

    def table(self):
        """Every current row: the base rows of unchanged accounts, then the changed accounts."""
        if self._table is None:
            if self.changed and self.base.num_rows:
                gone = pc.is_in(self.base.column("account"),
                                value_set=pa.array(list(self.changed), STR))
                kept = self.base.filter(pc.invert(gone))
            else:
                kept = self.base
            self._table = pa.concat_tables([kept, *self.changed.values()])
        return self._table

    def fold(self):
        """Make the current rows the new base (after many accounts changed)."""
        if self.changed:
            self._set_base(self.table().combine_chunks())

    # -- updating -------------------------------------------------------------------------
    def prepare(self, update):
        """Normalise and check an update table (changed rows only)."""
        update = as_table(update, self.name)
        if has(update, TIME):
            no_time({self.name: update})
        spec = dict(SPECS[self.name])
        if self.name == "open_orders":
            # a cancellation (quantity 0) need not repeat the order's symbol and price: the
            # columns may be left out or null there (a new order without them is refused
            # in upsert, which knows which orders exist)
            spec.update(symbol=("str", False, True), price=("float", False, True))
        check_columns(update, self.name, spec)
        cols = [c for c, _ in self.columns if c in update.column_names]
        out = {}
        for c in cols:
            col = _plain(update.column(c))
            typ = self.schema.field(c).type
            if typ == F8:           # checked first (finite, bounded): the cast cannot fail
                float_column(update, self.name, c, nullable=True)
                col = col.cast(F8, safe=False)
            try:
                out[c] = col.cast(typ)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise MarginError(self.name, c, f"values of type {typ} (as in the monitor's "
                                  f"{self.name}), got {col.type}") from None
        t = pa.table(out)
        if self.name == "open_orders":
            q = float_column(t, self.name, "quantity")
            for c in ("symbol", "price"):
                if c not in t.column_names:
                    continue
                bad = (q != 0) & np.asarray(t.column(c).is_null().to_numpy(
                    zero_copy_only=False))
                if bad.any():
                    raise_rows(t, self.name, c, bad, "a value on every order that is not a "
                               "cancellation (quantity 0)")
            if "price" in t.column_names:
                price = float_column(t, self.name, "price", nullable=True)
                bad = (q != 0) & ~(price > 0)
                if bad.any():
                    raise_rows(t, self.name, "price", bad, "numbers > 0")
        dup = duplicated(*(codes(t.column(c).combine_chunks())[0]
                           for c in ("account", self.key))) if self.name != "balances" \
            else np.zeros(t.num_rows, dtype=bool)   # several rows of a key: its new rows
        if dup.any():       # as margin() refuses them: which row was meant is not known
            raise_rows(t, self.name, self.key, dup, f"one row per (account, {self.key}) in "
                       "an update", hint="Send each row once, with its final values")
        return t

    def upsert(self, update):
        """The new rows of every account ``update`` touches: ``{account: pa.Table}`` (empty
        when nothing is left).  Nothing changes here; :meth:`commit` does."""
        names = [c for c, _ in self.columns]
        given = set(update.column_names)
        new = {}
        if self.name == "balances":
            return self._replace_keys(update, names)
        for r in update.to_pylist():
            a = r["account"]
            if a not in new:
                new[a] = self.rows_of([a]).to_pylist()
            rows = new[a]
            at = next((i for i, x in enumerate(rows) if x[self.key] == r[self.key]), None)
            if self.zero is not None and r[self.zero] == 0:
                if at is not None:
                    del rows[at]
            elif at is not None:
                rows[at].update({c: r[c] for c in names if c in given})
            else:
                row = {c: r.get(c, _DEFAULTS.get(c)) for c in names}
                missing = [c for c in _NEW_ROW.get(self.name, ()) if row[c] is None]
                if missing:
                    raise MarginError(self.name, missing[0], "a value on every new order "
                                      "(only a cancellation or a change of a known order "
                                      "may leave it out)", rows=[(a, r[self.key])],
                                      keys=("account", self.key))
                rows.append(row)
        return {a: pa.Table.from_pylist(rows, schema=self.schema) for a, rows in new.items()}

    def _replace_keys(self, update, names):
        """:meth:`upsert` of balances: the update's rows of each (account, asset), those of
        ``amount`` 0 left out, replace every current row of that key, in the place of the
        first (appended when the key is new)."""
        by_key = {}
        for r in update.to_pylist():
            by_key.setdefault((r["account"], r[self.key]), []).append(r)
        new = {}
        for (a, k), given in by_key.items():
            if a not in new:
                new[a] = self.rows_of([a]).to_pylist()
            rows = new[a]
            kept = [{c: r.get(c) for c in names} for r in given if r[self.zero] != 0]
            at = [i for i, x in enumerate(rows) if x[self.key] == k]
            if at:
                rows[at[0]:at[0] + 1] = kept
                drop = set(i + len(kept) - 1 for i in at[1:])
                rows[:] = [x for i, x in enumerate(rows) if i not in drop]
            else:
                rows.extend(kept)
        return {a: pa.Table.from_pylist(rows, schema=self.schema) for a, rows in new.items()}

    def commit(self, new):
        self.changed.update(new)
        self._table = None
        if len(self.changed) > max(1000, len(self._rows) // 4):
            self.fold()


class MarketState:
    """Marks and index prices as arrays, one row per symbol (``row``) and a dict of index
    prices; :meth:`apply` returns a new state (the arrays are small: one row per instrument
    with a mark, not per position)."""

    def __init__(self, market, index, instruments, max_iv):
        # the columns read below, checked before they are read (load_book checks the rest)
        check_columns(market, "market", schema.MARKET)
        check_columns(index, "index", schema.INDEX)
        check_columns(instruments, "instruments", schema.INSTRUMENTS)
        m = market
        self.max_iv = max_iv             # the model's bound on mark_iv (a decimal vol)
        self.symbols = str_column(m, "symbol").to_pylist()
        self.row = {s: i for i, s in enumerate(self.symbols)}
        self.mark = float_column(m, "market", "mark_price", positive=True).copy()
        self.iv = (float_column(m, "market", "mark_iv", positive=True, nullable=True)
                   if has(m, "mark_iv") else np.full(m.num_rows, np.nan)).copy()
        self.fwd = (float_column(m, "market", "underlying_price", positive=True, nullable=True)
                    if has(m, "underlying_price") else np.full(m.num_rows, np.nan)).copy()
        idx = index
        self.index = dict(zip(str_column(idx, "underlying").to_pylist(),
                              float_column(idx, "index", "index_price", positive=True).tolist()))
        sym = str_column(instruments, "symbol")
        self.instr_symbols = sym
        self.instr_und = dict(zip(sym.to_pylist(),
                                  str_column(instruments, "underlying").to_pylist()))
        self.instr_option = dict(zip(sym.to_pylist(),
                                     [k == "option" for k in
                                      str_column(instruments, "kind").to_pylist()]))
        self._tables = None

    def _copy(self):
        c = MarketState.__new__(MarketState)
        c.__dict__.update(self.__dict__)
        c.symbols, c.row, c.index = list(self.symbols), dict(self.row), dict(self.index)
        c.mark, c.iv, c.fwd = self.mark.copy(), self.iv.copy(), self.fwd.copy()
        c._tables = None
        return c

    def apply(self, market=None, index=None):
        """``(new state, symbols whose market row changed, assets whose index price
        changed)`` after the market and index rows of a tick.  Raises :class:`MarginError`
        on a bad row (nothing changes)."""
        new = self._copy()
        symbols, assets = set(), set()
        if market is not None:
            symbols = new._apply_market(as_table(market, "market"))
        if index is not None:
            assets = new._apply_index(as_table(index, "index"))
        return new, symbols, assets

    def _apply_market(self, m):
        if has(m, TIME):
            no_time({"market": m})
        # a null mark_price or mark_iv keeps the symbol's value, as a column left out does
        spec = {"symbol": ("str", True, False), "mark_price": ("float", False, True),
                "mark_iv": ("float", False, True), "underlying_price": ("float", False, True)}
        check_columns(m, "market", spec)
        sym = str_column(m, "symbol")
        names = sym.to_pylist()
        # a tick has a few rows: Python sets beat building Arrow hash tables for them
        unknown = np.array([s not in self.instr_und for s in names], dtype=bool)
        if unknown.any():
            raise_rows(m, "market", "symbol", unknown, "symbols listed in instruments")
        dup = _repeated(names)
        if dup.any():
            raise_rows(m, "market", "symbol", dup, "one row per symbol in a tick")
        n = m.num_rows
        mark = (float_column(m, "market", "mark_price", positive=True, nullable=True)
                if has(m, "mark_price") else None)
        iv = (float_column(m, "market", "mark_iv", positive=True, nullable=True)
              if has(m, "mark_iv") else None)
        fwd = (float_column(m, "market", "underlying_price", positive=True, nullable=True)
               if has(m, "underlying_price") else None)
        if iv is not None:
            check_mark_iv(m, iv, self.max_iv)
        rows = np.array([self.row.get(s, -1) for s in names], dtype=np.int64)
        is_opt = np.array([self.instr_option[s] for s in names], dtype=bool)
        nan = np.full(n, np.nan)             # a column left out: no value in any row
        mark = nan if mark is None else np.array(mark, dtype=np.float64)
        iv = nan if iv is None else np.array(iv, dtype=np.float64)
        no_mark, bad = market_checks(rows, mark, iv, is_opt, self.iv)
        if no_mark.any():
            raise_rows(m, "market", "mark_price", no_mark, "a mark_price for a new symbol")
        if bad.any():
            raise_rows(m, "market", "mark_iv", bad, "a mark_iv > 0 for every option")
        n_old = len(self.symbols)
        fresh = [j for j, r in enumerate(rows.tolist()) if r < 0]
        if fresh:                            # symbols without a market row yet: append
            for k, j in enumerate(fresh):
                rows[j] = n_old + k
                self.symbols.append(names[j])
                self.row[names[j]] = n_old + k
            pad = np.full(len(fresh), np.nan)
            self.mark = np.concatenate([self.mark, pad])
            self.iv = np.concatenate([self.iv, pad])
            self.fwd = np.concatenate([self.fwd, pad])
        # the symbols whose row changed: new ones, and known ones with another mark_price,
        # mark_iv or underlying_price (exactly; NaN, no value, equals NaN): a feed that
        # re-sends its current values recomputes nothing
        changed = write_marks(rows, n_old, mark, iv, nan if fwd is None else
                              np.array(fwd, dtype=np.float64), fwd is not None, self.mark,
                              self.iv, self.fwd)
        return {s for s, c in zip(names, changed.tolist()) if c}

    def _apply_index(self, x):
        if has(x, TIME):
            no_time({"index": x})
        # a null index_price keeps the underlying's price, as for a market row's mark
        check_columns(x, "index", {**schema.INDEX, "index_price": ("float", True, True)})
        und_arr = str_column(x, "underlying")
        und = und_arr.to_pylist()
        px = float_column(x, "index", "index_price", positive=True, nullable=True).tolist()
        dup = _repeated(und)
        if dup.any():
            raise_rows(x, "index", "underlying", dup, "one row per underlying in a tick")
        new = np.array([p != p and u not in self.index for u, p in zip(und, px)], dtype=bool)
        if new.any():
            raise_rows(x, "index", "index_price", new, "an index_price for a new underlying")
        # an index_price equal to the current one changes nothing (a null, NaN, keeps it)
        changed = {u: p for u, p in zip(und, px) if p == p and self.index.get(u) != p}
        self.index.update(changed)
        return set(changed)

    def tables(self):
        """``(market, index)`` as Arrow tables (built once per state)."""
        if self._tables is None:
            market = pa.table({
                "symbol": pa.array(self.symbols, STR),
                "mark_price": pa.array(self.mark, F8),
                "mark_iv": pa.array(self.iv, F8, mask=np.isnan(self.iv)),
                "underlying_price": pa.array(self.fwd, F8, mask=np.isnan(self.fwd)),
            })
            index = pa.table({"underlying": pa.array(list(self.index), STR),
                              "index_price": pa.array(list(self.index.values()), F8)})
            self._tables = (market, index)
        return self._tables


def _repeated(keys):
    """Rows whose key appeared in an earlier row (a tick's few rows, by a Python set)."""
    seen = set()
    dup = np.zeros(len(keys), dtype=bool)
    for j, k in enumerate(keys):
        if k in seen:
            dup[j] = True
        seen.add(k)
    return dup

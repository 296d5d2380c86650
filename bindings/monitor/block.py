"""A block of a monitor's accounts margined together: one validated book and one engine
outcome, recomputed in parts when marks move (:class:`pmrisk.Monitor`; its module docstring
has the overview).

Exactness.  Every figure of an account depends only on that account's rows and on the marks of
the instruments it holds: per account under ``cross_unit = "correlated"`` (an account is
stressed on the ellipsoid of its own underlyings), per unit under ``"sum"``.  So the engine's
phases can run on any selection and give the figures of one run over everything.

A tick recomputes with the engine's own code (:mod:`pmrisk.engine`):
:func:`pmrisk.engine.core.compute` on the revaluation rows of the moved instruments, the units
on the moved names (under ``"correlated"``: every unit of the accounts holding one, whose
shares of the account's joint scenario may change) and their accounts, in place on the block's
outcome.  Under ``"correlated"`` the joint stress (:class:`pmrisk.engine.correlated.JointStress`,
kept in the outcome) reprices only the moved rows' grid curves and settles those accounts
incrementally (:meth:`pmrisk.engine.correlated.JointStress.tick`: from each account's kept
joint scenarios while a bound excludes the others, else the fused kernel), with the same
figures as the fused kernel.  The phases' kernels write only the selected rows, each from
its own inputs, so the figures equal those of a run over the whole block to the bit.  Under
``"sum"`` the units' phases run fused and leave the positions' figures but ``value`` as they
were (:func:`pmrisk.engine.core.compute` with ``positions=False``); the block remembers the
units ticked since and writes their positions' figures before it builds a table
(:func:`pmrisk.engine.core.unit_phases`, the same kernels on the same inputs).  When
the selection cannot be exact (excluded instruments in the block, or a vol floor that starts
or stops binding on a short option, which changes the revaluation rows) the block runs the
engine on everything.
"""

import contextlib
import dataclasses
import threading
import weakref

import numba
import numpy as np
import pyarrow as pa

from ..io.arrow import kernel_args
from ..io.book import load_book
from ..engine.core import compute, floored_copies, fuses, run, short_instruments, unit_phases
from ..results import (TABLE_NAMES, accounts_table, all_finite, build, check_finite, loan_rows,
                       margin_ratio)
from ..engine.units import prices_by_type
from pmrisk.kernel.assemble import all_set, prices_at
from pmrisk.kernel.ticks import book_marks, kept_rows, tick_selection

_EMPTY_I = np.zeros(0, dtype=np.int64)
BIG_RUN = 256          # accounts: an engine run (or a joint-stress tick) this large uses
                       # the monitor's big_threads
# the account figures the monitor compares to decide whether an account's row changed
ACCOUNT_FIELDS = ("equity", "actual_equity", "loan_maintenance_margin", "maintenance_margin",
                  "initial_margin", "scenario_margin")


@contextlib.contextmanager
def numba_threads(n):
    """numba's thread count for the calling thread (numba keeps it per thread), restored;
    ``None`` leaves it as it is."""
    if not n:
        yield
        return
    prev = numba.get_num_threads()
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(prev)


def slice_book(book, acc):
    """The sub-book of accounts ``acc`` (sorted local indices): their positions, orders,
    balances and reserves in their order, instruments and market unchanged.  Returns
    ``(sub_book, positions, orders)`` (the kept rows' indices)."""
    new = np.full(len(book.accounts), -1, dtype=np.int64)
    new[acc] = np.arange(len(acc))
    (P, pos_acc), (OD, ord_acc), (B, bal_acc), (R, res_acc) = (
        kept_rows(new, *kernel_args(a)) for a in (book.pos_account, book.ord_account,
                                                  book.bal_account, book.res_account))
    sub = dataclasses.replace(
        book, accounts=book.accounts.take(pa.array(acc, pa.int64())),
        acc_snap=book.acc_snap[acc],
        pos_account=pos_acc, pos_instr=book.pos_instr[P],
        quantity=book.quantity[P], entry_price=book.entry_price[P], leverage=book.leverage[P],
        ord_account=ord_acc, ord_instr=book.ord_instr[OD],
        ord_qty=book.ord_qty[OD],
        ord_id=book.ord_id.take(pa.array(OD, pa.int64())) if len(book.ord_id) else book.ord_id,
        bal_account=bal_acc, bal_asset=[book.bal_asset[i] for i in B],
        bal_amount=book.bal_amount[B],
        res_account=res_acc, res_unit=[book.res_unit[i] for i in R],
        res_mmp=book.res_mmp[R], res_oo=book.res_oo[R])
    return sub, P, OD


@dataclasses.dataclass
class TickPath:
    """What a tick on a set of names touches in a block (built once per set): the moved
    instruments (``instr``) and their market rows (``mrow``) and underlyings
    (``instr_und``), their revaluation ``rows``, the ``units`` recomputed (and their
    ``utype``; ``moved_units``: those on a moved name, whose own figures change), the live
    accounts ``acc``, the balance rows in a moved asset (``balances``), and the (asset,
    column) of moved index prices in the book."""
    instr: np.ndarray
    mrow: np.ndarray
    instr_und: list
    rows: np.ndarray
    units: np.ndarray
    utype: np.ndarray
    acc: np.ndarray
    balances: np.ndarray
    asset_cols: list
    moved_units: np.ndarray


class Block:
    """Accounts margined together: ``book`` (validated arrays), ``out`` (the engine's
    :class:`~pmrisk.engine.core.Outcome`), ``live`` (accounts that still belong here: an account
    whose rows change moves to a new block) and what the monitor last reported per account
    (``ratio``, ``fig``, alert state ``below`` / ``armed``)."""

    def __init__(self, book, model, market, big_threads=None):
        self.book, self.model = book, model
        self.big_threads = big_threads   # numba threads for engine runs over many accounts
        self.names = book.accounts.to_pylist()
        self.index = {a: i for i, a in enumerate(self.names)}
        self.live = np.ones(len(self.names), dtype=bool)
        self.n_live = len(self.names)
        symbols = book.symbols.to_pylist()
        self.sym_index = {x: i for i, x in enumerate(symbols)}
        self.mrow = np.array([market.row[x] for x in symbols], dtype=np.int64)
        self.und = np.array(book.und_names, dtype=object)[book.und_code] if len(book.kind) \
            else np.zeros(0, dtype=object)
        self.bal_rows = {}                # asset -> its balance rows
        for r, a in enumerate(book.bal_asset):
            self.bal_rows.setdefault(a, []).append(r)
        self.bal_rows = {a: np.array(r, dtype=np.int64) for a, r in self.bal_rows.items()}
        self.short = short_instruments(book)     # positions and orders stay in a block
        self.sum_mode = model["cross_unit"] != "correlated"
        self._later = []                 # account_rows_later functions handed out (weakrefs)
        self.run_all()
        self.ratio = self.ratios()
        self.fig = self.account_figures(slice(None))
        self.below = self.armed = None

    @classmethod
    def from_tables(cls, tables, model, valuation_time, market, big_threads=None):
        book = load_book(**tables, model=model, valuation_time=valuation_time)
        return cls(book.with_own_market(), model, market, big_threads)

    def _run(self, book):
        """The engine on ``book``; over BIG_RUN accounts or more with ``big_threads``."""
        many = len(book.accounts) >= BIG_RUN
        with numba_threads(self.big_threads if many else None):
            return run(book, self.model)

    # -- the whole block ----------------------------------------------------------------------
    def run_all(self):
        out = self._run(self.book)
        check_finite(out)                # before anything of the block changes
        self.out = out
        self.frozen = False              # True while built result tables share the arrays
        self._tables = {}
        self._paths = {}                 # moved names -> TickPath
        # units whose positions' figures (but value) a fused tick left as they were: the
        # units arrays of the ticks since the last _settle (by id: each path's array once),
        # marked in _stale when settled
        self._stale = np.zeros(len(out.units), dtype=bool)
        self._ticked = {}

    def ratios(self, acc=slice(None)):
        af = self.out.account
        return margin_ratio(af.equity[acc], af.maintenance_margin[acc]
                            + af.liquidation_cost[acc])

    def account_figures(self, acc):
        af = self.out.account
        return np.vstack([getattr(af, f)[acc] for f in ACCOUNT_FIELDS])

    def drop(self, acc):
        """Accounts ``acc`` (local indices) left this block."""
        self.live[acc] = False
        self.n_live = int(self.live.sum())
        self._tables = {}
        self._paths = {}

    # -- ticks ----------------------------------------------------------------------------------
    def tick(self, market, symbols, assets):
        """The market rows of ``symbols`` and the index prices of ``assets`` changed (the new
        values are in ``market``): update the book and recompute what depends on them.
        Returns the live accounts recomputed (local indices; the caller must not change the
        array)."""
        book = self.book
        moved = {self.und[i] for i in (self.sym_index.get(x) for x in symbols)
                 if i is not None} | set(assets)
        if not moved:
            return _EMPTY_I
        key = frozenset(moved)
        path = self._paths.get(key)
        if path is None:                 # once per set of moved names (until accounts move)
            path = self._paths[key] = self._path(key)
        self._keep_rows()
        for a, col in path.asset_cols:
            book.asset_px[:, col] = market.index[a]
        on = path.instr
        if len(on):
            book_marks(on, path.mrow, np.array([market.index[u] for u in path.instr_und]),
                       market.mark, market.iv, market.fwd, book.mark, book.mark_iv,
                       book.forward)
        okx = self.out.okx
        if okx is not None and moved & set(okx.lin_ccy):
            self.run_all()      # okx_pm: a settlement currency moved: every unit's USD figures
            return np.flatnonzero(self.live)
        if not len(path.acc):
            return path.acc
        self._thaw()
        if not self._tick_units(path):
            self.run_all()
        return path.acc

    def _path(self, key):
        """What a tick on the names in ``key`` touches (:class:`TickPath`), from the block's
        layout: built once per set of moved names, so that a tick costs its selection."""
        book, out = self.book, self.out
        units = out.units
        instr_hit = np.array([u in key for u in self.und.tolist()], dtype=bool)
        type_hit = np.array([u in key or c in key for u, c in
                             zip(units.type_und, units.type_ccy)], dtype=bool)
        bal_hit = [self.bal_rows[a] for a in key if a in self.bal_rows]
        bal_hit = np.sort(np.concatenate(bal_hit)) if bal_hit else _EMPTY_I
        # under "correlated" every unit of the accounts: their shares move
        utype, account, bal_account, row_instr = kernel_args(
            units.utype, units.account, book.bal_account, out.rev.row_instr)
        instr, rows, uidx, acc, moved_u = tick_selection(
            instr_hit, type_hit, utype, account, self.live, bal_account, kernel_args(bal_hit)[0],
            row_instr, not self.sum_mode)
        return TickPath(instr=instr, mrow=self.mrow[instr],
                        instr_und=self.und[instr].tolist(), rows=rows, units=uidx,
                        utype=units.utype[uidx], acc=acc, balances=bal_hit,
                        asset_cols=[(a, book.assets.index(a)) for a in key
                                    if a in book.assets], moved_units=moved_u)

    def _thaw(self):
        """Copy the outcome's arrays before changing them if result tables share them (tables
        handed out stay as they were)."""
        self._tables = {}
        if self.frozen:
            self.out = self.out.copy()
            self.frozen = False

    def _tick_units(self, path):
        """A tick along ``path`` (:class:`TickPath`): the engine's phases on the moved
        instruments, their revaluation rows, the units on the moved names (under
        ``"correlated"``: every unit of the accounts, whose joint scenario may change) and the
        accounts; the joint stress reprices the moved rows' curves only.  False (nothing
        changed) when a selection cannot be exact here (see the module docstring)."""
        out, book = self.out, self.book
        if out.layout.excluded_any:
            return False
        floor = out.params.per_type["vol_floor"][out.instr_type] if len(book.kind) else \
            np.zeros(0)
        copies = floored_copies(book, floor, self.short)
        if len(copies) != len(out.rev.floored) or (copies != out.rev.floored).any():
            return False                    # a vol floor started or stopped binding
        uidx = path.units
        units = out.units
        type_und = np.array(units.type_und, dtype=object)
        type_ccy = np.array(units.type_ccy, dtype=object)
        if book.asset_px.shape[0] == 1:     # one snapshot: a price per unit type, written
            types = np.arange(len(type_und))
            at = np.zeros(len(types), dtype=np.int64)
            prices_at(uidx, path.utype, prices_by_type(book, type_ccy, types, at),
                      prices_by_type(book, type_und, types, at), units.settle_px,
                      units.index_px)
        else:
            snap = book.acc_snap[units.account[uidx]]
            units.settle_px[uidx] = prices_by_type(book, type_ccy, path.utype, snap)
            units.index_px[uidx] = prices_by_type(book, type_und, path.utype, snap)
        # a figure that is not finite raises here; the monitor then rebuilds its blocks from
        # the inputs before the update (Monitor._tick)
        # a tick that moves the joint stress of many accounts is an engine run's worth of
        # work: big_threads, as for a run of BIG_RUN accounts
        big = out.joint is not None and len(path.acc) >= BIG_RUN
        with numba_threads(self.big_threads if big else None):
            compute(out, self.model, rows=path.rows, instruments=path.instr, units=uidx,
                    accounts=path.acc, balances=path.balances, positions=False,
                    moved_units=path.moved_units)
        if fuses(out):                  # the positions' figures: when tables are read
            self._ticked.setdefault(id(uidx), uidx)
        if not (all_set(out.unit.finite, uidx) and all_set(out.account.finite, path.acc)):
            self._settle()
            check_finite(out)           # names the rows and raises
        return True

    def _settle(self):
        """Write the positions' figures that fused ticks left out (every figure of the
        units ticked since, from the current inputs: as the ticks would have)."""
        for sel in self._ticked.values():
            self._stale[sel] = True
        self._ticked = {}
        if not self._stale.any():
            return
        self._keep_rows()
        self._thaw()
        sel = np.flatnonzero(self._stale)
        unit_phases(self.out, self.model, sel)
        self._stale[:] = False
        if not all_finite(self.out, sel):
            check_finite(self.out)

    # -- result tables ------------------------------------------------------------------------
    def tables(self, names=TABLE_NAMES):
        """The result tables ``names`` (among accounts, units, positions) of the live
        accounts, built by :func:`pmrisk.results.build` (each cached until the block
        changes); returns ``{name: table}``."""
        self._settle()
        missing = [n for n in names if n not in self._tables]
        if missing:
            r = build(self.out, self.model, tables=missing)
            out = self.out
            for n in missing:
                t = getattr(r, n)
                if self.n_live < len(self.names):
                    live = self.live
                    if n == "accounts":
                        rows = live
                    elif n == "units":
                        rows = live[out.units.account]
                    else:
                        loans = loan_rows(out)
                        rows = live[np.concatenate([self.book.pos_account, out.units.account,
                                                    loans])]
                    t = t.filter(pa.array(rows))
                self._tables[n] = t
            self.frozen = True
        return {n: self._tables[n] for n in names}

    def account_rows(self, acc, ratio=None):
        """Rows of the accounts table for accounts ``acc`` (local indices, or ``slice(None)``
        for all), as :func:`pmrisk.results.build` makes them (the same function), without
        building the whole table; ``ratio``: their margin ratios if already known."""
        return accounts_table(self.out, self.model,
                              None if isinstance(acc, slice) else acc, ratio)

    def account_rows_later(self, acc, ratio=None):
        """:meth:`account_rows` of the figures as they are now, built when called: returns a
        function of no arguments.  Nothing is copied while the block stays as it is: the
        rows are built from the block's arrays when read.  Before the block next changes
        those arrays in place (a tick, writing the positions'
        figures), a function still referenced somewhere keeps what its rows read: the
        accounts' rows themselves for a few accounts of a large block (under an eighth) and
        for okx_pm (more columns read), else copies of the few arrays the rows read (the
        accounts' figures, the units' worst cases, binding cells, excluded margin and
        settlement prices).  So an update whose rows are never read costs no copy, and rows
        read after later ticks are still that update's own figures."""
        few = not isinstance(acc, slice) and len(acc) * 8 < len(self.names)
        later = _RowsLater(self.out, self.model, None if isinstance(acc, slice) else
                           np.array(acc, dtype=np.int64),
                           None if ratio is None else np.array(ratio, dtype=np.float64),
                           few or self.out.okx is not None)
        self._later.append(weakref.ref(later))
        return later

    def _keep_rows(self):
        """Before the outcome's arrays change in place: every :meth:`account_rows_later`
        function still alive keeps what its rows read."""
        if self._later:
            for ref in self._later:
                later = ref()
                if later is not None:
                    later.keep()
            self._later = []


class _RowsLater:
    """The accounts' rows of :meth:`Block.account_rows_later`: built from ``out`` when called,
    or from what :meth:`keep` kept before the block changed ``out`` in place (a lock keeps a
    reader in another thread from building from arrays a tick is changing)."""

    __slots__ = ("out", "model", "acc", "ratio", "build_now", "table", "lock", "__weakref__")

    def __init__(self, out, model, acc, ratio, build_now):
        self.out, self.model, self.acc, self.ratio = out, model, acc, ratio
        self.build_now = build_now          # keep: the rows themselves, not array copies
        self.table = None
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            if self.table is None:
                self.table = accounts_table(self.out, self.model, self.acc, self.ratio)
                self.out = None
            return self.table

    def keep(self):
        with self.lock:
            if self.table is not None:
                return
            out = self.out
            if self.build_now:
                self.table = accounts_table(out, self.model, self.acc, self.ratio)
                self.out = None
                return
            af, u = out.account, out.unit
            account = dataclasses.replace(af, **{
                f.name: getattr(af, f.name).copy() for f in dataclasses.fields(af)
                if f.name != "finite" and getattr(af, f.name) is not None})
            unit = _UnitRowsSnapshot(worst_case=u.worst_case.copy(),
                                     binding_scenario=u.binding_scenario.copy(),
                                     excluded_margin=u.excluded_margin.copy())
            units = dataclasses.replace(out.units, settle_px=out.units.settle_px.copy())
            self.out = dataclasses.replace(out, units=units, unit=unit, account=account,
                                           arg_memo={})


@dataclasses.dataclass
class _UnitRowsSnapshot:
    """The units' figures the accounts table reads (:meth:`Block.account_rows_later`)."""
    worst_case: np.ndarray
    binding_scenario: np.ndarray
    excluded_margin: np.ndarray

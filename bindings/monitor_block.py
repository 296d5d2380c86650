"""A block of a monitor's accounts margined together: one validated book and one engine
outcome, recomputed in parts when marks move (:class:`pmrisk.Monitor`; its module docstring
has the overview).

Exactness.  Every figure of an account depends only on that account's rows and on the marks of
the instruments it holds: per account under ``cross_unit = "correlated"`` (an account is
stressed on the ellipsoid of its own underlyings), per unit under ``"sum"``.  So the engine can
be run on any subset of accounts (a sub-book: :func:`slice_book`) or, under ``"sum"``, on any
subset of units, and the numbers equal those of one run over everything.  Subsets keep the
rows' order, so under ``"sum"`` even sums come out equal to the bit.  (Under
``"correlated"``, the engine's joint stress of an account can differ in the last bit with the
set of accounts in the call: there the agreement is to rounding.)

Three ways to recompute, from the most general:

* :meth:`Block.run_all`: :func:`pmrisk.engine.run` on the whole block (a new block, or a tick
  the per-unit path declines);
* :meth:`Block.recompute_accounts`: the engine on the sub-book of some accounts, scattered back
  (ticks under ``correlated``: the accounts holding a unit on a moved underlying);
* the per-unit path (``cross_unit = "sum"`` only): the units on the moved underlyings, below
  the engine.  A tick runs :meth:`Block._unit_phase`: the revaluation arguments of the moved
  instruments' rows and their scenario P&L (``kernel.instrument_pnl`` on those rows), the units'
  risk vectors, worst cases, open-order margin, add-ons, MM and IM, and the positions' values
  and deltas; then the accounts' equity and margin (:meth:`Block._account_level`).  What only
  the ``units`` and ``positions`` tables show (per-position Greeks, model values and
  contributions; the units' Greeks) is brought up to date when a table is read
  (:meth:`Block._position_phase`).  Both phases are ``engine.run``'s and
  ``engine.revaluation_inputs``' arithmetic restricted to those units and rows, with the same
  kernels and helpers, in the same order.  The path declines (and :meth:`run_all` runs) when
  the moved units hold excluded instruments or a vol floor starts or stops binding on a short
  option (the engine's revaluation rows would change).  It also checks itself: whenever the
  engine has run on the whole block (:meth:`run_all`), the path recomputes every unit at the
  same marks and compares the result with the engine's outcome to the bit; on any difference
  it warns and the block keeps to engine runs.  (The units' risk vectors, ``out.vectors`` /
  ``out.weighted``, are not kept current on this path: the monitor's tables do not show
  them.)
"""

import contextlib
import dataclasses
import warnings
from types import SimpleNamespace

import numba
import numpy as np
import pyarrow as pa

from pmrisk import kernel as K
from pmrisk.kernel import addons
from pmrisk.kernel.instruments import INVERSE, OPTION, SPOT
from pmrisk.kernel.scenarios import TABLES, VOL_STATES
from pmrisk.kernel.volshock import shocked_vols

from ._arrow import kernel_args, sum_by, unique_keys
from .book import load_book
from .engine import (collateral_usd, expiry_groups, per_instr, position_values, pro_rata_share,
                     und_param, revaluation_inputs, run)
from .excluded import excluded_instruments, excluded_positions
from .results import TABLE_NAMES, status_array, build, check_finite, describe
from .units import prices_by_type

_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0)
BIG_RUN = 256          # accounts: an engine run this large uses the monitor's big_threads
ACCOUNT_FIELDS = ("equity", "actual_equity", "loan_mm", "acc_mm", "acc_im", "acc_scen")
UNIT_FIELDS = ("worst", "binding", "roll", "dshock", "som", "orders", "mmp", "scen_margin",
               "scen_shock", "scen_vol", "excluded", "rmm", "mm", "im")
POSITION_FIELDS = ("value", "model_value", "upnl", "mm_contrib", "im_contrib")
# the unit phase's figures that must be finite (a tick that overflows is rejected)
_FINITE_UNIT = ("worst", "roll", "dshock", "som", "orders", "rmm", "mm", "im", "value")
# revaluation_inputs' per-instrument parameters of the vol shocks
_VOL_PARAMS = ("volatility_range_up", "volatility_range_down", "short_term_vega_power",
               "long_term_vega_power", "min_volatility_for_shock_up", "vol_scan_range")


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


def ratio_of(equity, mm):
    """Margin ratio as the accounts table computes it (``inf``/``-inf`` when MM = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mm > 0, equity / np.where(mm > 0, mm, 1.0),
                        np.where(equity >= 0, np.inf, -np.inf))


def slice_book(book, acc):
    """The sub-book of accounts ``acc`` (sorted local indices): their positions, orders,
    balances and reserves in their order, instruments and market unchanged.  Returns
    ``(sub_book, positions, orders)`` (the kept rows' indices)."""
    new = np.full(len(book.accounts), -1, dtype=np.int64)
    new[acc] = np.arange(len(acc))

    def keep(account):
        return np.flatnonzero(new[account] >= 0) if len(account) else _EMPTY_I

    P, OD, B, R = (keep(a) for a in (book.pos_account, book.ord_account, book.bal_account,
                                    book.res_account))
    sub = dataclasses.replace(
        book, accounts=book.accounts.take(pa.array(acc, pa.int64())),
        acc_snap=book.acc_snap[acc],
        pos_account=new[book.pos_account[P]], pos_instr=book.pos_instr[P],
        quantity=book.quantity[P], entry_price=book.entry_price[P],
        ord_account=new[book.ord_account[OD]], ord_instr=book.ord_instr[OD],
        ord_qty=book.ord_qty[OD],
        ord_id=book.ord_id.take(pa.array(OD, pa.int64())) if len(book.ord_id) else book.ord_id,
        bal_account=new[book.bal_account[B]], bal_asset=[book.bal_asset[i] for i in B],
        bal_amount=book.bal_amount[B],
        res_account=new[book.res_account[R]], res_unit=[book.res_unit[i] for i in R],
        res_mmp=book.res_mmp[R], res_oo=book.res_oo[R])
    return sub, P, OD


def _local(index, n):
    """Map of global indices ``index`` to 0..len-1 (-1 elsewhere), length n."""
    m = np.full(n, -1, dtype=np.int64)
    m[index] = np.arange(len(index))
    return m


def _largest_unit(unit_account, worst_usd, acc, n_acc):
    """Per account of ``acc``, its unit with the largest ``worst_usd`` (ties: the first), as
    ``results`` picks the unit that names the binding scenario (there by a lexsort, 4 ms for
    30,000 units; units are sorted by account, so a max over each account's run of units gives
    the same unit in O(n))."""
    if len(acc) == n_acc:
        UA = np.arange(len(unit_account))
    else:
        mask = np.zeros(n_acc, dtype=bool)
        mask[acc] = True
        UA = np.flatnonzero(mask[unit_account])
    if not len(UA):
        return _EMPTY_I
    a = unit_account[UA]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    w = worst_usd[UA]
    top = np.fmax.reduceat(w, starts)
    lengths = np.diff(np.r_[starts, len(UA)])
    hit = (w == np.repeat(top, lengths)) | np.repeat(np.isnan(top), lengths)
    return UA[np.minimum.reduceat(np.where(hit, np.arange(len(UA)), len(UA)), starts)]


def _describe(units, scen, binding, worst_usd, first, acc_excl, acc):
    """``results._describe_units`` for the accounts ``acc`` only (``first``: each one's
    largest unit, in the order of ``acc``): the same words, with an O(n) unique."""
    code = np.where(acc_excl[acc] > 0, 1, 0)
    texts = ["none", "excluded positions only (SPAN standalone)"]
    on = worst_usd[first] > 0 if len(first) else np.zeros(0, dtype=bool)
    live = first[on]
    if len(live):
        width = scen.price_shock.shape[1]
        uniq, inv = unique_keys(units.utype[live] * width + binding[live])
        for k in uniq.tolist():
            t, c = divmod(k, width)
            r = units.type_und_code[t]
            texts.append(describe(units.type_names[t], TABLES[scen.table[r, c]],
                                  scen.price_shock[r, c], VOL_STATES[scen.vol_code[r, c]]))
        pos = _local(acc, int(acc.max()) + 1)[units.account[live]]
        code[pos] = 2 + inv
    return pa.array(texts, pa.string()).take(pa.array(code, pa.int64()))


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


class Block:
    """Accounts margined together: ``book`` (validated arrays), ``out`` (the engine's
    :class:`~pmrisk.engine.Outcome`), ``live`` (accounts that still belong here: an account
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
        self.bal_asset = np.array(book.bal_asset, dtype=object)
        self.sum_mode = model["cross_unit"] != "correlated"
        self.run_all()
        self.ratio = self.ratios()
        self.fig = self.account_figures(slice(None))
        self.below = self.armed = None

    @classmethod
    def from_tables(cls, tables, model, valuation_time, market, big_threads=None):
        book = load_book(**tables, model=model, valuation_time=valuation_time)
        return cls(book, model, market, big_threads)

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
        self._slices = {}
        self._stale = set()              # moved names whose units await the position phase
        # the per-unit path (False: off), prepared while the outcome matches the book's marks
        self._fast = self._prepare() if self.sum_mode else False

    def ratios(self, acc=slice(None)):
        out = self.out
        return ratio_of(out.equity[acc], out.acc_mm[acc])

    def account_figures(self, acc):
        return np.vstack([getattr(self.out, f)[acc] for f in ACCOUNT_FIELDS])

    def drop(self, acc):
        """Accounts ``acc`` (local indices) left this block."""
        self.live[acc] = False
        self.n_live = int(self.live.sum())
        self._tables = {}
        self._slices = {}

    # -- ticks ----------------------------------------------------------------------------------
    def tick(self, market, symbols, assets):
        """The market rows of ``symbols`` and the index prices of ``assets`` changed (the new
        values are in ``market``): update the book and recompute what depends on them.
        Returns the live accounts recomputed (local indices)."""
        book = self.book
        moved = {self.und[i] for i in (self.sym_index.get(x) for x in symbols)
                 if i is not None} | set(assets)
        if not moved:
            return _EMPTY_I
        moved_l = list(moved)
        for a in assets:
            if a in book.assets:
                book.asset_px[:, book.assets.index(a)] = market.index[a]
        on = np.isin(self.und, moved_l) if len(self.und) else np.zeros(0, dtype=bool)
        if on.any():
            r = self.mrow[on]
            book.mark[on] = market.mark[r]
            book.mark_iv[on] = market.iv[r]
            fwd = market.fwd[r]
            und_px = np.array([market.index[u] for u in self.und[on]])
            book.forward[on] = np.where(np.isnan(fwd), und_px, fwd)
        units = self.out.units
        type_hit = np.array([u in moved or c in moved for u, c in
                             zip(units.type_und, units.type_ccy)], dtype=bool)
        unit_hit = type_hit[units.utype] if len(units) else np.zeros(0, dtype=bool)
        acc_hit = np.zeros(len(self.names), dtype=bool)
        acc_hit[units.account[unit_hit]] = True
        if len(book.bal_account):
            acc_hit[book.bal_account[np.isin(self.bal_asset, moved_l)]] = True
        acc = np.flatnonzero(acc_hit & self.live)
        if not len(acc):
            return acc
        self._thaw()
        if not self.sum_mode:
            self.recompute_accounts(acc)
        elif not (self._fast and self._tick_units(frozenset(moved), np.flatnonzero(unit_hit),
                                                  acc)):
            self.run_all()
        return acc

    def _thaw(self):
        """Copy the outcome's arrays before changing them if result tables share them (tables
        handed out stay as they were)."""
        self._tables = {}
        if not self.frozen:
            return
        out = self.out
        arrays = {f.name: getattr(out, f.name).copy() for f in dataclasses.fields(out)
                  if isinstance(getattr(out, f.name), np.ndarray)}
        if out.acc_desc is not None:
            arrays["acc_desc"] = list(out.acc_desc)
        units = dataclasses.replace(out.units, settle_px=out.units.settle_px.copy(),
                                    index_px=out.units.index_px.copy())
        self.out = dataclasses.replace(out, units=units, **arrays)
        self.frozen = False

    # -- a subset of accounts through the engine ------------------------------------------------
    def recompute_accounts(self, acc):
        """Run the engine on the sub-book of accounts ``acc`` and scatter the results."""
        if len(acc) == len(self.names):
            self.run_all()
            return
        self._thaw()
        out = self.out
        sub, P, _ = slice_book(self.book, acc)
        o = self._run(sub)
        check_finite(o)
        units, su = out.units, o.units
        code = {n: i for i, n in enumerate(units.type_names)}
        n_t = max(len(units.type_names), 1)
        key = units.account * n_t + units.utype
        known = all(n in code for n in su.type_names)
        tmap = np.array([code.get(n, -1) for n in su.type_names], dtype=np.int64)
        skey = acc[su.account] * n_t + tmap[su.utype] if len(su) else _EMPTY_I
        U = np.searchsorted(key, skey)
        if not known or (len(U) and (U.max() >= len(key) or (key[U] != skey).any())) or \
                o.vectors.shape[1] != out.vectors.shape[1]:
            self.run_all()                                     # not the same units: rebuild
            return
        for f in ("vectors", "weighted") + UNIT_FIELDS:
            getattr(out, f)[U] = getattr(o, f)
        out.unit_greeks[:, U] = o.unit_greeks
        units.settle_px[U] = su.settle_px
        units.index_px[U] = su.index_px
        for f in POSITION_FIELDS + ("excluded_pos",):
            getattr(out, f)[P] = getattr(o, f)
        out.greeks[:, P] = o.greeks
        for f in ACCOUNT_FIELDS:
            getattr(out, f)[acc] = getattr(o, f)
        if out.acc_desc is not None:
            for j, a in enumerate(acc.tolist()):
                out.acc_desc[a] = o.acc_desc[j]
        self._fast = False               # `out`'s revaluation rows are not kept current here

    # -- the per-unit path (cross_unit = "sum") --------------------------------------------------
    def _prepare(self):
        """What the per-unit path needs that does not move with the marks, checked against
        the engine's outcome (see the module docstring); False when the path is off here."""
        book, out, model = self.book, self.out, self.model
        rv = revaluation_inputs(book, model)
        units = out.units
        n_i = len(book.kind)
        itype = rv.itype
        pi = lambda key: per_instr(model, units, itype, key) if n_i else _EMPTY_F  # noqa
        short = np.zeros(n_i, dtype=bool)
        short[book.pos_instr[book.quantity < 0]] = True
        short[book.ord_instr[book.ord_qty < 0]] = True
        excl = excluded_positions(book, model)
        unit_excl = np.zeros(len(units), dtype=bool)
        unit_excl[out.pos_unit[excl]] = True
        if len(book.ord_instr):
            unit_excl[rv.ord_unit[excluded_instruments(book, model)[book.ord_instr]]] = True
        up_ = lambda key: und_param(model, units.type_und, key)[units.utype]  # noqa: E731
        scen = rv.scen
        q = book.quantity
        short_all = np.where((book.kind[book.pos_instr] == OPTION) & (q < 0), -q, 0.0)
        f = SimpleNamespace(
            rv=rv, short=short, floor=pi("vol_floor"), params={k: pi(k) for k in _VOL_PARAMS},
            absolute=np.array([model.underlying(u)["vol_shock"] == "absolute"
                               for u in units.type_und], dtype=bool)[itype],
            und_row=units.type_und_code[itype] if n_i else _EMPTY_I,
            t_scen=np.ascontiguousarray(rv.args[8]), rate=float(model["rate"]),
            unit_excl=unit_excl, excl=excl, q_port=np.where(excl, 0.0, q),
            short_opt=np.where(excl, 0.0, short_all),
            som_rate=pi("short_option_minimum")[book.pos_instr] if len(q) else q,
            groups=expiry_groups(book, model, units, out.pos_unit),
            coin_settled=np.array([u == c for u, c in zip(units.type_und, units.type_ccy)],
                                  dtype=bool)[units.utype],
            thr=up_("delta_total_liq_shock_threshold"), m_inc=up_("m_inc"),
            max_ds=up_("max_delta_shock"), unit_und=units.type_und_code[units.utype],
            type_und=np.array(units.type_und, dtype=object),
            type_ccy=np.array(units.type_ccy, dtype=object),
            sc=kernel_args(scen.n_scen, scen.loss_weight, scen.gain_weight, scen.gain_cap_usd,
                           scen.dampener_usd, scen.vol_code))
        f.copies = self._copies(f)
        f.row_instr = np.concatenate([np.arange(n_i), f.copies]).astype(np.int64)
        self._fast = f
        reason = self._check(f)
        if reason:
            warnings.warn(f"pmrisk.Monitor: the per-unit path disagrees with the engine "
                          f"({reason}); this block recomputes through the engine instead",
                          RuntimeWarning, stacklevel=4)
            return False
        return f

    def _copies(self, f):
        """Instruments with a revaluation row at the vol floor (revaluation_inputs: the floor
        binds and a position or an order is short)."""
        book = self.book
        sig_mark = np.where(book.kind == OPTION, book.mark_iv, 0.0)
        return np.flatnonzero((book.kind == OPTION) & (f.floor > sig_mark) & f.short)

    def _args(self, f, rows):
        """``instrument_pnl``'s arguments for revaluation rows ``rows`` at the current marks
        (``revaluation_inputs``' construction, on those rows only)."""
        book = self.book
        r = f.row_instr[rows]
        copy = rows >= len(book.kind)
        sig = np.where(book.kind[r] == OPTION, book.mark_iv[r], 0.0)
        floor_r = np.where(copy, f.floor[r], 0.0)
        p = [f.params[k][r] for k in _VOL_PARAMS]
        same, up, down = shocked_vols(sig, book.years[r] * 365.0, floor_r, p[0], p[1], p[2],
                                      p[3], p[4], f.absolute[r], p[5])
        scen = f.rv.scen
        c = np.ascontiguousarray
        return kernel_args(book.kind[r], book.settlement[r], book.contract_size[r],
                           book.mark[r], book.forward[r], book.strike[r], book.is_call[r],
                           book.years[r], c(f.t_scen[rows]), c(sig), c(up), c(same), c(down),
                           c(f.und_row[r]), f.rate, scen.n_scen, scen.price_shock,
                           scen.log1p_shock, scen.vol_code, scen.vol_factor, scen.pnl_scale)

    def _check(self, f):
        """Recompute every live unit and account at the current marks through the per-unit
        path and compare with the engine's outcome; the first difference, or None."""
        out = self.out
        units = out.units
        n_rows = len(f.row_instr)
        if n_rows != out.instr_pnl.shape[0]:
            return "revaluation rows"
        rows = np.arange(n_rows)
        args = self._args(f, rows)
        for name, a, b in zip(("kind", "settlement", "contract_size", "mark", "forward",
                               "strike", "is_call", "t_now", "t_scen", "sig_mark", "sig_up",
                               "sig_same", "sig_down", "und"), args, f.rv.args):
            if not _same(a, b):
                return f"revaluation argument {name}"
        if n_rows and not _same(K.instrument_pnl(*args), out.instr_pnl):
            return "instrument_pnl"
        # every live unit without excluded positions or orders (those decline the path)
        key = ("check", frozenset(units.type_und) | frozenset(units.type_ccy))
        s = self._slice(key, np.flatnonzero(~f.unit_excl), np.flatnonzero(self.live))
        u = self._unit_phase(s, f)
        for name in UNIT_FIELDS:
            if not _same(u[name], getattr(out, name)[s.uidx]):
                return f"units.{name}"
        if not (_same(u["settle_px"], units.settle_px[s.uidx])
                and _same(u["index_px"], units.index_px[s.uidx])):
            return "unit prices"
        if not _same(u["value"], out.value[s.P]):
            return "positions.value"
        p = self._position_phase(s, f)
        for name in POSITION_FIELDS:
            if not _same(p[name], getattr(out, name)[s.P]):
                return f"positions.{name}"
        if not (_same(p["greeks"], out.greeks[:, s.P])
                and _same(p["unit_greeks"], out.unit_greeks[:, s.uidx])):
            return "Greeks"
        a = self._account_level(s)
        del self._slices[key]
        for name in ACCOUNT_FIELDS:
            if not _same(a[name], getattr(out, name)[s.acc]):
                return f"accounts.{name}"
        return None

    def _slice(self, key, uidx, acc):
        """Index arrays of the live units ``uidx`` (those on the names in ``key``): their
        positions, orders, reserves, expiry groups and revaluation rows, and of the accounts
        ``acc``; cached per ``key`` while the block's accounts stay."""
        s = self._slices.get(key)
        if s is not None:
            return s
        book, out, f = self.book, self.out, self._fast
        units = out.units
        rv = f.rv
        uidx = uidx[self.live[units.account[uidx]]] if len(uidx) else _EMPTY_I
        loc = _local(uidx, len(units))
        P = np.flatnonzero(loc[out.pos_unit] >= 0)
        OD = np.flatnonzero(loc[rv.ord_unit] >= 0) if len(rv.ord_unit) else _EMPTY_I
        R = np.flatnonzero(loc[rv.res_unit] >= 0) if len(rv.res_unit) else _EMPTY_I
        pos_group, group_rate, group_unit = f.groups
        G = np.flatnonzero(loc[group_unit] >= 0) if len(group_unit) else _EMPTY_I
        gloc = _local(G, len(group_unit))
        pg = pos_group[P]
        n_u = len(uidx)
        lpu = loc[out.pos_unit[P]]
        pi_ = book.pos_instr[P]
        q = book.quantity[P]
        kind = book.kind[pi_]
        entry = book.entry_price[P]
        has_entry = ~np.isnan(entry)
        n_acc = len(self.names)
        everyone = len(acc) == n_acc
        aloc = _local(acc, n_acc)
        PA = None if everyone else np.flatnonzero(aloc[book.pos_account] >= 0)
        UA = None if everyone else np.flatnonzero(aloc[units.account] >= 0)
        BA = None if everyone else np.flatnonzero(aloc[book.bal_account] >= 0)
        short_opt, som_rate = f.short_opt[P], f.som_rate[P]
        s = SimpleNamespace(
            key=key, uidx=uidx, P=P, lpu=lpu, OD=OD, lou=loc[rv.ord_unit[OD]], R=R,
            lru=loc[rv.res_unit[R]], lgu=loc[group_unit[G]],
            lpg=np.where(pg >= 0, gloc[np.maximum(pg, 0)], -1), group_rate=group_rate[G],
            rows=np.flatnonzero(np.isin(self.und[f.row_instr], list(key)))
            if len(f.row_instr) else _EMPTY_I,
            # the book restricted to these positions (instruments shared: marks stay current)
            view=dataclasses.replace(book, pos_instr=pi_, quantity=q, entry_price=entry,
                                     pos_account=book.pos_account[P]),
            pi=pi_, q=q, qcs=q * book.contract_size[pi_],
            opt_or_spot=np.flatnonzero((kind == OPTION) | (kind == SPOT)),
            futures_entry=np.flatnonzero(has_entry & (kind != OPTION) & (kind != SPOT)),
            options_entry=np.flatnonzero(has_entry & (kind == OPTION)),
            inverse=book.settlement[pi_] == INVERSE, entry=np.where(has_entry, entry, 1.0),
            pos_row=out.pos_row[P], q_port=f.q_port[P], excl=f.excl[P],
            short_opt=short_opt, som_rate=som_rate,
            som_coin=addons.short_option_minimum(lpu, short_opt, som_rate, n_u),
            ord_row=rv.ord_row[OD], ord_qty=book.ord_qty[OD],
            res_oo=sum_by(loc[rv.res_unit[R]], weights=book.res_oo[R], minlength=n_u),
            mmp=sum_by(loc[rv.res_unit[R]], weights=book.res_mmp[R], minlength=n_u),
            unit_und=f.unit_und[uidx], utype=units.utype[uidx],
            snap=book.acc_snap[units.account[uidx]], coin=f.coin_settled[uidx],
            thr=f.thr[uidx], m_inc=f.m_inc[uidx], max_ds=f.max_ds[uidx],
            excluded=bool(f.unit_excl[uidx].any()),
            acc=acc, PA=PA, lpa=None if PA is None else aloc[book.pos_account[PA]],
            UA=UA, lua=None if UA is None else aloc[units.account[UA]],
            lba=None if BA is None else aloc[book.bal_account[BA]],
            bal=None if BA is None else dataclasses.replace(
                book, bal_asset=[book.bal_asset[i] for i in BA], bal_amount=book.bal_amount[BA],
                bal_account=book.bal_account[BA]))
        self._slices[key] = s
        return s

    def _tick_units(self, key, unit_hit, acc):
        """A tick on the names in ``key`` under ``"sum"``: the unit phase for the units hit,
        then their accounts.  False (nothing changed) when the path cannot be exact here."""
        f, out = self._fast, self.out
        s = self._slice(key, unit_hit, acc)
        if s.excluded:
            return False
        copies = self._copies(f)
        if len(copies) != len(f.copies) or (copies != f.copies).any():
            return False                    # a vol floor started or stopped binding
        if len(s.rows):
            out.instr_pnl[s.rows] = K.instrument_pnl(*self._args(f, s.rows))
        u = self._unit_phase(s, f)
        for name in UNIT_FIELDS:
            getattr(out, name)[s.uidx] = u[name]
        out.units.settle_px[s.uidx] = u["settle_px"]
        out.units.index_px[s.uidx] = u["index_px"]
        out.value[s.P] = u["value"]
        a = self._account_level(s)
        if not all(np.isfinite(v).all() for v in (*a.values(), *(u[k] for k in _FINITE_UNIT))):
            return False                    # run_all: check_finite names the rows and raises
        for name in ACCOUNT_FIELDS:
            if s.PA is None:
                setattr(out, name, a[name])
            else:
                getattr(out, name)[acc] = a[name]
        self._stale |= key
        return True

    def _add_ons(self, s, index_px, unit_px, pos_delta):
        n_u = len(s.uidx)
        conv_u = np.where(s.coin, 1.0, index_px / unit_px)
        roll_coin, roll_group, _ = addons.roll_shock(s.lpg, pos_delta, s.group_rate, s.lgu,
                                                     n_u)
        unit_delta = sum_by(s.lpu, weights=pos_delta, minlength=n_u)
        dshock_coin = addons.delta_shock(unit_delta, index_px, s.thr, s.m_inc, s.max_ds)
        return conv_u, roll_coin, roll_group, dshock_coin

    def _unit_phase(self, s, f):
        """engine.run's per-unit figures of the units of ``s`` at the current marks (and the
        positions' values, for equity); ``out.instr_pnl`` must be current on their rows."""
        book, model, out = self.book, self.model, self.out
        instr_pnl = out.instr_pnl
        n_u = len(s.uidx)
        settle_px = prices_by_type(book, f.type_ccy, s.utype, s.snap)
        index_px = prices_by_type(book, f.type_und, s.utype, s.snap)
        unit_px = settle_px
        vectors = K.unit_risk_vectors(*kernel_args(s.lpu, s.pos_row, s.q_port, instr_pnl), n_u)
        _, worst, binding = K.weighted_worst(*kernel_args(vectors, s.unit_und, unit_px), *f.sc)
        order_im = K.order_margin(*kernel_args(s.lou, s.ord_row, s.ord_qty, vectors,
                                               instr_pnl, s.unit_und, unit_px, worst), *f.sc) \
            if len(s.OD) else _EMPTY_F
        g = self._greeks(f)
        pos_delta = np.where(s.excl, 0.0, s.q * g[1, s.pi])
        conv_u, roll_coin, _, dshock_coin = self._add_ons(s, index_px, unit_px, pos_delta)
        roll = roll_coin * conv_u
        dshock = dshock_coin * conv_u
        som = s.som_coin * conv_u
        orders = sum_by(s.lou, weights=order_im, minlength=n_u)
        orders = orders + s.res_oo
        excluded = np.zeros(n_u)
        scen = f.rv.scen
        u_shock = np.where(worst > 0, scen.price_shock[s.unit_und, binding], np.nan) \
            if n_u else _EMPTY_F
        u_vol = np.where(worst > 0, scen.vol_code[s.unit_und, binding], -1) \
            if n_u else _EMPTY_I
        rm = float(model["risk_multiplier"])
        rmm = worst + roll + dshock + som
        mm = rm * model["mm_factor"] * rmm + excluded
        im = rm * model["im_factor"] * rmm + model["im_factor"] * excluded + orders + s.mmp
        return {"worst": worst, "binding": binding, "roll": roll, "dshock": dshock, "som": som,
                "orders": orders, "mmp": s.mmp, "scen_margin": worst, "scen_shock": u_shock,
                "scen_vol": u_vol, "excluded": excluded, "rmm": rmm, "mm": mm, "im": im,
                "settle_px": settle_px, "index_px": index_px, "value": self._values(s)}

    def _greeks(self, f):
        book = self.book
        sig_mark = np.where(book.kind == OPTION, book.mark_iv, 0.0)
        return K.instrument_greeks(*kernel_args(book.kind, book.settlement, book.contract_size,
                                                book.mark, book.forward, book.strike,
                                                book.is_call, book.years, sig_mark), f.rate)

    def _values(self, s):
        """Positions' value at the mark (engine._position_values' ``value``, computed only
        where it is not 0: options and spot, futures with an entry price)."""
        mark = self.book.mark[s.pi]
        value = np.zeros(len(s.P))
        i = s.opt_or_spot
        value[i] = s.qcs[i] * mark[i]
        i = s.futures_entry
        if len(i):
            m, e = mark[i], s.entry[i]
            value[i] = np.where(s.inverse[i], s.qcs[i] * (1.0 / e - 1.0 / m),
                                s.qcs[i] * (m - e))
        return value

    def _position_phase(self, s, f):
        """engine.run's per-position figures and the units' Greeks for the units of ``s``,
        from the current marks and unit figures."""
        out, model = self.out, self.model
        n_u = len(s.uidx)
        units = out.units
        g = self._greeks(f)
        value, model_value, upnl, greeks = position_values(s.view, g)
        unit_greeks = np.vstack([sum_by(s.lpu, weights=greeks[k], minlength=n_u)
                                 for k in range(4)]) if n_u else np.zeros((4, 0))
        pos_delta = np.where(s.excl, 0.0, greeks[0])
        unit_px = units.settle_px[s.uidx]
        conv_u, _, roll_group, dshock_coin = self._add_ons(s, units.index_px[s.uidx], unit_px,
                                                           pos_delta)
        worst = out.worst[s.uidx]
        b = out.binding[s.uidx][s.lpu]
        cell = s.q_port * out.instr_pnl[s.pos_row, b] if len(s.P) else s.q_port
        own_loss = np.where(worst[s.lpu] > 0.0,
                            -f.rv.scen.loss_weight[s.unit_und[s.lpu], b] * cell, 0.0)
        absd = np.abs(pos_delta)
        roll_share = pro_rata_share(roll_group, s.lpg, absd)
        ds_share = pro_rata_share(dshock_coin, s.lpu, absd)
        base = own_loss + (roll_share + ds_share + s.short_opt * s.som_rate) * conv_u[s.lpu]
        rm = float(model["risk_multiplier"])
        zero = np.zeros(len(s.P))
        return {"value": value, "model_value": model_value, "upnl": upnl, "greeks": greeks,
                "unit_greeks": unit_greeks,
                "mm_contrib": rm * model["mm_factor"] * base + zero,
                "im_contrib": rm * model["im_factor"] * base + model["im_factor"] * zero}

    def _settle(self):
        """Bring per-position figures and units' Greeks up to date (before building tables)."""
        if not self._stale:
            return
        key = frozenset(self._stale)
        units = self.out.units
        hit = np.array([u in key or c in key for u, c in zip(units.type_und, units.type_ccy)],
                       dtype=bool)
        uidx = np.flatnonzero(hit[units.utype]) if len(units) else _EMPTY_I
        s = self._slice(("settle", key), uidx, _EMPTY_I)
        p = self._position_phase(s, self._fast)
        out = self.out
        for name in POSITION_FIELDS:
            getattr(out, name)[s.P] = p[name]
        out.greeks[:, s.P] = p["greeks"]
        out.unit_greeks[:, s.uidx] = p["unit_greeks"]
        self._stale = set()

    def _account_level(self, s):
        """Equity, loans, MM, IM and scenario margin of the accounts ``s.acc`` from the
        current per-position and per-unit arrays (engine.run's account block)."""
        book, out, model = self.book, self.out, self.model
        units = out.units
        unit_px = units.settle_px
        if s.PA is None:                                   # every account of the block
            n = len(self.names)
            pos_account, pos_unit, value = book.pos_account, out.pos_unit, out.value
            bal_book, bal_account = book, book.bal_account
            u_account, UA = units.account, slice(None)
        else:
            n = len(s.acc)
            pos_account, pos_unit, value = s.lpa, out.pos_unit[s.PA], out.value[s.PA]
            bal_book, bal_account = s.bal, s.lba
            u_account, UA = s.lua, s.UA
        mm, im, sm, upx = out.mm[UA], out.im[UA], out.scen_margin[UA], unit_px[UA]
        eq_pos = sum_by(pos_account, weights=value * unit_px[pos_unit], minlength=n)
        coll, bal_usd = collateral_usd(bal_book, model) if len(bal_account) else \
            (_EMPTY_F, _EMPTY_F)
        loan_mm = model["loan_mmr"] * sum_by(bal_account,
                                             weights=np.abs(np.minimum(bal_usd, 0.0)),
                                             minlength=n)
        return {"equity": eq_pos + sum_by(bal_account, weights=coll, minlength=n),
                "actual_equity": eq_pos + sum_by(bal_account, weights=bal_usd, minlength=n),
                "loan_mm": loan_mm,
                "acc_mm": sum_by(u_account, weights=mm * upx, minlength=n) + loan_mm,
                "acc_im": sum_by(u_account, weights=im * upx, minlength=n) + loan_mm,
                "acc_scen": sum_by(u_account, weights=sm * upx, minlength=n).astype(np.float64)}

    # -- result tables ------------------------------------------------------------------------
    def tables(self, names=TABLE_NAMES):
        """The result tables ``names`` (among accounts, units, positions) of the live
        accounts, built by :func:`pmrisk.results.build` (each cached until the block
        changes); returns ``{name: table}``."""
        missing = [n for n in names if n not in self._tables]
        if missing:
            if self._stale:
                self._thaw()
                self._settle()
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
                        loans = np.flatnonzero(out.loan_mm > 0)
                        rows = live[np.concatenate([self.book.pos_account, out.units.account,
                                                    loans])]
                    t = t.filter(pa.array(rows))
                self._tables[n] = t
            self.frozen = True
        return {n: self._tables[n] for n in names}

    def account_rows(self, acc, ratio=None):
        """Rows of the accounts table for accounts ``acc`` (local indices, or ``slice(None)``
        for all), as :func:`pmrisk.results.build` makes them, without building the whole
        table; ``ratio``: their margin ratios if already known."""
        out, model, units = self.out, self.model, self.out.units
        n_acc = len(self.names)
        every = isinstance(acc, slice)
        eq, mm, im = out.equity[acc], out.acc_mm[acc], out.acc_im[acc]
        ratio = ratio_of(eq, mm) if ratio is None else ratio
        th = model["thresholds"]
        low = min(th["warning"])
        unit_px = units.settle_px
        acc_excl = sum_by(units.account, weights=out.excluded * unit_px, minlength=n_acc)
        idx = np.arange(n_acc) if every else acc
        if out.acc_desc is not None:
            desc = ["none" if not s > 0 else d for d, s in
                    zip((out.acc_desc[a] for a in idx.tolist()), out.acc_scen[acc])]
            desc = pa.array([("excluded positions only (SPAN standalone)"
                              if d == "none" and e > 0 else d)
                             for d, e in zip(desc, acc_excl[acc])], pa.string())
        else:
            worst_usd = out.worst * unit_px
            first = _largest_unit(units.account, worst_usd, idx, n_acc)
            desc = _describe(units, out.scen, out.binding, worst_usd, first, acc_excl, idx)
        return pa.table({
            "account": self.book.accounts if every else
            self.book.accounts.take(pa.array(acc, pa.int64())),
            "equity": eq,
            "actual_equity": out.actual_equity[acc],
            "maintenance_margin": mm,
            "initial_margin": im,
            "used_margin": im,
            "available_margin": eq - im,
            "max_withdrawable": np.maximum(0.0, np.minimum(eq - low * mm, eq - im)),
            "margin_ratio": ratio,
            "status": status_array(ratio, th),
            "worst_scenario": desc,
            "scenario_margin": out.acc_scen[acc],
            "loan_maintenance_margin": out.loan_mm[acc],
        })

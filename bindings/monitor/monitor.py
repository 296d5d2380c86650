"""``pmrisk.Monitor``: many accounts' margin kept current as ticks and account changes arrive,
with threshold alerts and liquidation plans.

Design
------
**State.**  The monitor keeps its inputs (account-state rows grouped by account, marks and
index prices as arrays: :mod:`pmrisk.monitor.state`) and the last results, as *blocks*
(:mod:`pmrisk.monitor.block`): a block is a set of accounts validated and margined together —
one :class:`~pmrisk.io.book.Book` and one engine :class:`~pmrisk.engine.core.Outcome` of plain
arrays. The monitor starts with one block holding every account.

**Incremental.**

* A tick (``market`` / ``index`` rows) on underlying U updates each block's marks in place
  and recomputes only what holds U, with the engine's own phases
  (:func:`pmrisk.engine.core.compute`).  Under ``cross_unit = "sum"`` (``deribit_pme``, ``span``:
  units are independent) that is the phases on a selection: U's instruments' scenario P&L rows
  and Greeks, then the units on U (risk vectors, worst cases, open-order margin, Greeks,
  add-ons, MM/IM and contributions), then the equity and margin of their accounts.  Under
  ``"correlated"`` (``standard``: an account's joint stress involves all its underlyings) it is
  every account holding a unit on U, through the engine on the sub-book of those accounts.  An
  index move of a settlement currency or of a balance's
  asset reaches the units and accounts priced in it.  Rows that re-send the current values
  (equal floats) are no move: a feed may send its whole table with every tick.
* A position, balance or open-order change recomputes only its account: the account's rows
  are validated and margined alone (``load_book`` and the engine on that account) as a new
  block, and its old rows leave their block.  Small blocks are merged once there are more than
  ``MAX_BLOCKS`` of them, and a block that lost half its accounts is rebuilt (both on account
  changes, never on ticks).
* A new ``valuation_time`` moves every option's and future's time to expiry: it recomputes
  every account (one engine pass over the whole state, no result tables).  Without one, an
  update keeps the monitor's valuation time: pass ``valuation_time`` when it should advance
  (say once a minute) and ``at`` to stamp the alerts of every update.

**Exact.**  Every figure of an account depends only on its own rows and on the marks of what it
holds, and the engine's phase kernels write each selected row from its own inputs, so a
selection of units (under ``"sum"``) or accounts gives the numbers one run over everything
gives.  Under ``"sum"`` they are equal to the bit: after any sequence of updates,
``accounts`` / ``units`` / ``positions`` equal :func:`pmrisk.margin` on :meth:`Monitor.state`
bit for bit (a hypothesis state machine checks it); there is no second copy of the arithmetic
to drift.  Under ``"correlated"`` the engine's joint stress itself can differ in the last bit
between calls over different sets of accounts (an account alone or with others), so there the
monitor agrees with one ``margin()`` over everything to rounding (tested to 1e-12 of each
column's scale).  A block is recomputed whole when it holds excluded instruments or a vol floor
starts or stops binding on a short option (the revaluation rows change; see
:mod:`pmrisk.monitor.block`).

**Tables.**  ``accounts``, ``units`` and ``positions`` are built from the blocks on first read
after a change (:func:`pmrisk.results.build`, rows of live accounts, blocks one after the
other: sort them if order matters).  They are immutable Arrow tables: an update never changes
a table already handed out (the arrays are copied before the next change if a table shares
them).  ``update()`` returns the changed accounts' rows at once.

**Threads.**  One ``threading.RLock`` guards every update and every read, so a reader thread
sees the state before or after an update, never half of it.  Alert callbacks run in the
updating thread after the lock is released.  No global mutable state: numba's thread count is
set per update with ``threads`` (thread-local in numba) and restored.

**Alerts.**  See :mod:`pmrisk.monitor.alerts` (kinds, ordering, hysteresis).  They come back in
``update().alerts``, go to ``on_alert`` (one ``pyarrow.RecordBatch`` per update with alerts)
and into a bounded queue read by :meth:`Monitor.alerts`.  Accounts that enter ``liquidation``
get their plan (:func:`pmrisk.liquidation_plan` on the account's state at that update) in
``update().liquidation_plans``, computed on first access so that the update stays fast.
"""

import collections
import threading
import time as _time
from dataclasses import dataclass, field

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..io.arrow import as_table, to_ns, valuation_ns
from .alerts import LIQUIDATION, SCHEMA as ALERT_SCHEMA, AlertRules
from ..errors import MarginError, warn_no_balances
from ..model.model import Model
from ..results import MarginResult
from .block import ACCOUNT_FIELDS, Block, numba_threads, slice_book
from .state import ACCOUNT_TABLES, AccountRows, MarketState, no_time
from ..io.schema import TIME_TYPE

MAX_BLOCKS = 8


@dataclass
class MonitorUpdate:
    """What one :meth:`Monitor.update` did.

    ``accounts``: rows of the accounts table for the accounts whose figures changed (equity,
    actual equity, MM, IM, loan MM or scenario margin) and for new accounts, as they were
    after this update (built on first access, so that an update stays fast); ``alerts``: one
    row per level crossed (:data:`pmrisk.monitor.alerts.SCHEMA`); ``removed``: accounts that left
    (no rows in any table); ``time``: the alerts' time; ``seconds``: how long the update took;
    ``liquidation_plans``: the plans of the accounts that entered ``liquidation``
    (:func:`pmrisk.liquidation_plan`'s table), computed on first access.

    Examples
    --------
    >>> import pmrisk
    >>> from pmrisk import samples
    >>> book = samples.demo_book()
    >>> vt = book.pop("valuation_time")
    >>> mon = pmrisk.Monitor(**book, model="deribit_pme", valuation_time=vt)
    >>> up = mon.update(index={"underlying": ["BTC"], "index_price": [50_000.0]})
    >>> up
    MonitorUpdate(accounts=... rows, alerts=... rows, removed=0, seconds=...)
    >>> up.alerts.column_names[:4]
    ['account', 'time', 'kind', 'threshold']
    >>> up.liquidation_plans.column_names[:3]
    ['account', 'step', 'action']
    """
    _account_rows: list = field(repr=False)   # functions returning the accounts' rows
    alerts: pa.Table
    removed: list
    time: object
    seconds: float
    _plan_inputs: dict = field(default=None, repr=False)
    _plans: pa.Table = field(default=None, repr=False)
    _accounts: pa.Table = field(default=None, repr=False)

    @property
    def accounts(self):
        if self._accounts is None:
            parts = [f() for f in self._account_rows]
            self._accounts = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        return self._accounts

    @property
    def liquidation_plans(self):
        if self._plans is None:
            from ..engine.liquidation import plan_table, liquidation_plan
            p = self._plan_inputs
            if p is None:
                self._plans = plan_table([], pa.string())
            else:
                with numba_threads(p["threads"]):
                    self._plans = liquidation_plan(**p["tables"](), model=p["model"],
                                                   valuation_time=p["valuation_time"],
                                                   accounts=p["accounts"])
        return self._plans

    def __repr__(self):
        return (f"MonitorUpdate(accounts={self.accounts.num_rows} rows, alerts="
                f"{self.alerts.num_rows} rows, removed={len(self.removed)}, "
                f"seconds={self.seconds:.6f})")


class Monitor:
    """Margin of many accounts, kept current as marks, index prices, positions, balances and
    open orders change; alerts when a margin ratio crosses a threshold.

    Parameters
    ----------
    positions, instruments, market, index, balances, open_orders, reserves, model
        As for :func:`pmrisk.margin` (one snapshot: no ``time`` column).  Without
        ``balances`` every account's collateral is 0 (a :class:`pmrisk.MarginWarning`).
    valuation_time : datetime, str or numpy datetime64, optional
        When the book is valued (default: now, UTC, fixed until an update gives another).
    hysteresis : float, optional
        Once an alert fired at a level, the next alert across that level needs the ratio
        beyond it by this much (default 0: every crossing alerts).  See
        :mod:`pmrisk.monitor.alerts`.
    on_alert : callable, optional
        Called with a ``pyarrow.RecordBatch`` of the alerts of every update that has some,
        in the updating thread, after the update is complete (an exception it raises reaches
        the caller of :meth:`update`, whose change is then already applied and queued).
    alert_queue : int >= 0, optional
        How many alert batches :meth:`alerts` keeps for readers (oldest dropped first; 0: no
        queue).  Default 10,000.
    threads : "auto", int or None, optional
        numba threads for the kernels of an update.  ``"auto"`` (default): 1 thread, and
        numba's own setting for engine runs over 256 accounts or more (a valuation-time
        change) and for ticks that move the joint stress (``cross_unit = "correlated"``) of
        256 accounts or more (a tick on a popular underlying).  An incremental update is
        small, and on a busy 2-core machine every parallel region can wait up to a scheduler
        quantum (~15 ms measured) for its threads; one thread gives the steadiest latency.  A
        big correlated tick is an engine run's worth of work: on a quiet 2-core machine two
        threads took a 10,000-account ``standard`` tick from p50 85 to 51 ms.  An int: that
        many threads throughout; None: numba's setting throughout.

    Attributes
    ----------
    accounts, units, positions : pyarrow.Table
        The current result tables, as :func:`pmrisk.margin` returns them (rows of one account
        together; sort them if order matters).  :meth:`result` gives all three of one state.
    valuation_time : numpy.datetime64

    Raises
    ------
    MarginError
        On any input problem, as :func:`pmrisk.margin`; an update that fails validation
        changes nothing.

    Examples
    --------
    Long $100,000 of the BTC inverse perpetual from 50,000 on $18,000 of collateral; BTC
    dips to 49,600:

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
    >>> round(mon.accounts["margin_ratio"][0].as_py(), 4)
    1.1223
    >>> up = mon.update(index={"underlying": ["BTC"], "index_price": [49600.0]},
    ...                 market={"symbol": ["BTC-PERPETUAL"], "mark_price": [49600.0]})
    >>> up.alerts.select(["account", "kind", "threshold", "status_after"]).to_pylist()
    [{'account': 'a', 'kind': 'threshold_down', 'threshold': 1.1, 'status_after': 'warning_1'}]
    >>> round(up.alerts["ratio_after"][0].as_py(), 4)
    1.0724
    """

    def __init__(self, positions, instruments, market, index, balances=None, open_orders=None,
                 reserves=None, model=None, valuation_time=None, *, hysteresis=0.0,
                 on_alert=None, alert_queue=10_000, threads="auto"):
        # a dated model (as_of="valuation_time"): the set in force at the monitor's start
        self.model = Model.coerce(model).at(valuation_ns(valuation_time))
        self._rules = AlertRules(self.model["thresholds"], hysteresis)
        tables = {"positions": positions, "instruments": instruments, "market": market,
                  "index": index, "balances": balances, "open_orders": open_orders,
                  "reserves": reserves}
        tables = {k: as_table(v, k) for k, v in tables.items()}
        for name in ("positions", "instruments", "market", "index"):
            if tables[name] is None:
                raise MarginError(name, None, "a table (it is required)")
        no_time(tables)
        warn_no_balances(tables, stacklevel=3)
        self._vt = valuation_ns(valuation_time)
        self._lock = threading.RLock()
        if on_alert is not None and not callable(on_alert):
            raise MarginError("arguments", "on_alert", "a callable taking one alert batch "
                              f"(pyarrow.RecordBatch) or None, got {on_alert!r}")
        self._on_alert = on_alert
        if not (threads in ("auto", None) or (isinstance(threads, (int, np.integer))
                                               and not isinstance(threads, bool)
                                               and threads > 0)):
            raise MarginError("arguments", "threads", f"'auto', None or an int > 0, got "
                              f"{threads!r}")
        if threads == "auto":
            self._threads, self._big_threads = 1, numba.config.NUMBA_NUM_THREADS
        else:
            self._threads = self._big_threads = threads
        if isinstance(alert_queue, bool) or not isinstance(alert_queue, (int, np.integer)) \
                or alert_queue < 0:
            raise MarginError("arguments", "alert_queue", "an int >= 0 (how many alert batches "
                              f"to keep; 0: no queue), got {alert_queue!r}")
        self._queue = collections.deque(maxlen=int(alert_queue)) if alert_queue else None
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self.dropped_alert_batches = 0
        self._instruments = tables["instruments"]
        self._market = MarketState(tables["market"], tables["index"], self._instruments,
                                   self.model["max_iv"])
        self._rows = {k: AccountRows(k, tables[k]) for k in ACCOUNT_TABLES}
        self._blocks = []
        self._where = {}
        self._register(self._new_block(self._state_tables(None, self._market), self._market),
                       {}, initial=True)
        self._cache = {}
        self.version = 0

    # -- reading --------------------------------------------------------------------------
    @property
    def valuation_time(self):
        return np.datetime64(self._vt, "ns")

    def _tables(self, names):
        """``{name: table}`` of the current state (each built on first read after a
        change)."""
        with self._lock:
            missing = [n for n in names if n not in self._cache]
            if missing:
                parts = [b.tables(missing) for b in self._blocks]
                for n in missing:
                    self._cache[n] = parts[0][n] if len(parts) == 1 else \
                        pa.concat_tables([p[n] for p in parts])
            return {n: self._cache[n] for n in names}

    def result(self):
        """The three tables of one state as a :class:`pmrisk.MarginResult` (reading the
        properties one after the other from another thread can straddle an update)."""
        return MarginResult(**self._tables(("accounts", "units", "positions")))

    @property
    def accounts(self):
        """The accounts table, as :func:`pmrisk.margin` returns it."""
        return self._tables(("accounts",))["accounts"]

    @property
    def units(self):
        """The units table."""
        return self._tables(("units",))["units"]

    @property
    def positions(self):
        """The positions table, with the ``unallocated`` rows."""
        return self._tables(("positions",))["positions"]

    def state(self):
        """The current inputs as tables: ``pmrisk.margin(**monitor.state(), model=...)``
        recomputes the monitor's figures from scratch."""
        with self._lock:
            market, index = self._market.tables()
            out = {k: r.table() for k, r in self._rows.items()}
            out.update(instruments=self._instruments, market=market, index=index,
                       valuation_time=self.valuation_time)
            return out

    def what_if(self, account, trades):
        """The margin of ``account`` after hypothetical trades, without changing the monitor.

        Parameters
        ----------
        account : str
            An account the monitor holds.
        trades : Arrow table-like
            ``symbol``, ``quantity`` (signed, not 0), optional ``price`` (default the mark)
            and ``kind`` (``fill``, the default, or ``order``: an open order, IM only).  See
            :mod:`pmrisk.monitor.what_if` for how a fill moves positions and balances.

        Returns
        -------
        pmrisk.monitor.what_if.WhatIf
            ``accounts`` (the account ``before`` and ``after``: MM, IM, ratio, status,
            binding scenario, as :func:`pmrisk.margin`'s accounts table), ``trades`` (each
            trade's ``standalone`` and ``marginal`` increase of IM and MM) and ``summary``
            (the basket's increase against the per-leg sum).

        Raises
        ------
        MarginError
            An account the monitor does not hold (``arguments.account``); a bad trades table
            (``trades``: a symbol the monitor does not know, a quantity of 0, ...).

        Examples
        --------
        An account about to put on a collar, long 1 BTC through the perpetual (6,500
        contracts of $10), long the June 65,000 put and short the June 75,000 call, checks it
        first.  Each leg margined alone adds $19,104 of IM; the basket adds $3,060: 6.2
        times less.  Each leg's marginal figure is negative (dropping any one of them from
        the basket would raise the margin: the other two hedge each other less):

        >>> import pmrisk
        >>> from pmrisk import samples
        >>> book = samples.demo_book()
        >>> vt = book.pop("valuation_time")
        >>> mon = pmrisk.Monitor(**book, model="standard", valuation_time=vt)
        >>> trades = {"symbol": ["BTC-PERPETUAL", "BTC-28JUN24-65000-P", "BTC-28JUN24-75000-C"],
        ...           "quantity": [6_500.0, 1.0, -1.0]}
        >>> w = mon.what_if("hedged-calendar", trades)
        >>> for r in w.accounts.to_pylist():
        ...     print(f"{r['state']:<7} IM {r['initial_margin']:>6,.0f}  MM "
        ...           f"{r['maintenance_margin']:>6,.0f}  ratio {r['margin_ratio']:5.1f}  "
        ...           f"{r['status']}")
        before  IM    977  MM    782  ratio  43.3  normal
        after   IM  4,037  MM  3,230  ratio  10.5  normal
        >>> for r in w.trades.to_pylist():
        ...     print(f"{r['symbol']:<20} alone {r['im_standalone']:>+7,.0f}  "
        ...           f"in the basket {r['im_marginal']:>+7,.0f}")
        BTC-PERPETUAL        alone +14,334  in the basket  -2,117
        BTC-28JUN24-65000-P  alone  +1,251  in the basket -11,165
        BTC-28JUN24-75000-C  alone  +3,520  in the basket    -350
        >>> im = w.summary.to_pylist()[0]
        >>> print(f"basket +{im['increase']:,.0f}, legs alone +{im['standalone_sum']:,.0f}: "
        ...       f"{im['overcharge']:.1f}x")
        basket +3,060, legs alone +19,104: 6.2x
        >>> round(mon.accounts["initial_margin"][0].as_py())   # the monitor is unchanged
        977
        """
        from .what_if import what_if, what_if_held
        with self._lock:
            if account not in self._where:
                raise MarginError("arguments", "account", f"an account of the monitor, got "
                                  f"{account!r}", hint="Monitor.accounts lists them")
            key = (self._vt, self.model)            # instruments no account holds yet
            if getattr(self, "_catalog", (None,))[0] != key:
                self._catalog = (key, {}, {})       # and the accounts' last what-ifs
            with numba_threads(self._threads):      # the blocks' arrays, read under the lock
                w = what_if_held(self._where[account], self._blocks, account, trades,
                                 self.model, self._market, self._catalog[1], self._instruments,
                                 self.valuation_time, memo=self._catalog[2])
            if w is not None:
                return w
            tables = self._state_tables([account], self._market)
            model, vt = self.model, self.valuation_time
        with numba_threads(self._threads):
            return what_if(tables, account, trades, model, vt)

    def alerts(self, timeout=0.0):
        """Iterate over the queued alert batches (``pyarrow.RecordBatch``, oldest first),
        taking them off the queue.  ``timeout``: how long to wait for the next batch when
        the queue is empty (0: stop at once; None: wait until :meth:`close`)."""
        if self._queue is None:
            return
        while True:
            with self._cond:
                if not self._queue:
                    if self._closed or timeout == 0:
                        return
                    self._cond.wait_for(lambda: self._queue or self._closed, timeout)
                    if not self._queue:
                        return
                batch = self._queue.popleft()
            yield batch

    def close(self):
        """End every :meth:`alerts` iterator waiting for more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __repr__(self):
        return (f"Monitor({len(self._where)} accounts, {len(self._blocks)} blocks, model "
                f"{self.model.name!r}, valuation_time {self.valuation_time})")

    # -- updating -------------------------------------------------------------------------
    def update(self, market=None, index=None, positions=None, balances=None,
               open_orders=None, valuation_time=None, *, at=None, model=None):
        """Apply a change and recompute what depends on it.

        Parameters
        ----------
        market, index : Arrow table-like, optional
            Changed rows only: ``symbol`` plus any of ``mark_price``, ``mark_iv`` (an
            annualised vol as a decimal, 0.60 for 60 %; above the model's ``max_iv`` a tick
            is refused), ``underlying_price`` (columns left out keep their values, and so
            does a null ``mark_price`` or ``mark_iv``); ``underlying``, ``index_price`` (a
            null keeps the price).
        positions, balances, open_orders : Arrow table-like, optional
            Changed rows only, keyed by (account, symbol), (account, asset) and (account,
            order_id): a row replaces the row with its key or is added; ``quantity`` 0 closes
            a position or cancels an order, ``amount`` 0 removes a balance.  Balances may
            hold several rows per (account, asset): an update's rows for a key replace every
            row of it (its rows of ``amount`` 0 dropped; see :mod:`pmrisk.monitor.state`).
        valuation_time : datetime, str or numpy datetime64, optional
            A new valuation time: every account is recomputed (times to expiry move).
        at : datetime, str or numpy datetime64, optional
            The time on the alerts (default: ``valuation_time`` if given, else now).
        model : str, dict, path or Model, optional
            A new risk model (e.g. recalibrated, see :meth:`recalibrate`): every account is
            recomputed with it and alerts fire as on any update.  Its thresholds must be the
            monitor's (the alert state is kept per level).

        Returns
        -------
        MonitorUpdate
        """
        t0 = _time.perf_counter()
        at_ns = to_ns(at, "at") if at is not None else valuation_ns(valuation_time)
        with self._lock, numba_threads(self._threads):
            res = self._update(market, index, positions, balances, open_orders,
                               valuation_time, at_ns, model)
            res.seconds = _time.perf_counter() - t0
            if res.alerts.num_rows and self._queue is not None:
                for batch in res.alerts.to_batches():
                    if len(self._queue) == self._queue.maxlen:
                        self.dropped_alert_batches += 1
                    self._queue.append(batch)
                self._cond.notify_all()
        if res.alerts.num_rows and self._on_alert is not None:
            for batch in res.alerts.to_batches():
                self._on_alert(batch)
        return res

    def recalibrate(self, prices, *, at=None, **kwargs):
        """Recalibrate the model from a price history (:func:`pmrisk.calibrate` with the
        monitor's model as the base model and ``kwargs``) and swap it in: every account is
        recomputed and alerts fire as on any update.  Returns ``(MonitorUpdate, report)``."""
        from ..model.calibration import calibrate, check_kwargs
        if "base_model" in kwargs:
            raise MarginError("arguments", "base_model", "no base_model: the monitor's model is "
                              "the base model of its recalibration",
                              hint="Start a new Monitor to change the model's other keys")
        check_kwargs(kwargs, ("as_of",), "at")
        model, report = calibrate(prices, base_model=self.model, **kwargs)
        return self.update(model=model, at=at), report

    def _update(self, market, index, positions, balances, open_orders, valuation_time, at_ns,
                model=None):
        # 1. check everything, change nothing
        if model is not None:
            model = Model.coerce(model).at(self._vt)
            if model["thresholds"] != self.model["thresholds"]:
                raise MarginError("arguments", "model", "a model with the monitor's thresholds "
                                  f"{self.model['thresholds']}, got {model['thresholds']}",
                                  hint="Start a new Monitor to change the alert levels")
        if market is not None or index is not None:
            new_market, symbols, assets = self._market.apply(market, index)
        else:
            new_market, symbols, assets = self._market, set(), set()
        ups = {}
        for name, upd in (("positions", positions), ("balances", balances),
                          ("open_orders", open_orders)):
            if upd is not None:
                rows = self._rows[name]
                ups[name] = rows.upsert(rows.prepare(upd))
        changed = list(dict.fromkeys(a for u in ups.values() for a in u))
        vt = to_ns(valuation_time) if valuation_time is not None else self._vt
        full = vt != self._vt or bool(set(new_market.index) - set(self._market.index)) \
            or model is not None
        keep = [a for a in changed if any(
            (ups[k][a].num_rows > 0) if k in ups and a in ups[k] else r.has_rows(a)
            for k, r in self._rows.items())]
        removed = [a for a in changed if a not in set(keep) and a in self._where]
        if full:
            old_vt, self._vt = self._vt, vt
            old_model, self.model = self.model, model if model is not None else self.model
            try:
                block = self._new_block(self._state_tables(None, new_market, ups), new_market)
            except Exception:
                self._vt, self.model = old_vt, old_model
                raise
        else:
            block = self._new_block(self._state_tables(keep, new_market, ups), new_market) \
                if keep else None

        # 2. ticks: blocks recompute in place; a figure that is not finite (MarginError)
        # puts every block back as it was before the update is rejected
        before = {a: self._ratio_of(a) for a in changed}
        out_rows, batches = [], []
        moving = set(changed)
        if not full and (symbols or assets):
            self._tick(new_market, symbols, assets, moving, at_ns, batches, out_rows)

        # 3. commit: market, rows, blocks; collect what changed and alert
        self._market = new_market
        for name, new in ups.items():
            self._rows[name].commit(new)
        self._cache = {}
        self.version += 1
        if full:
            ratio_before = {a: self._ratio_of(a) for a in self._where}
            ratio_before.update(before)
            olds = dict(self._where)
            self._blocks, self._where = [], {}
            self._register(block, olds)
            names = block.names
            idx = np.arange(len(names))
            self._alert_block(block, idx, np.array([ratio_before.get(a, np.nan)
                                                    for a in names]),
                              at_ns, batches, out_rows)
        else:
            if changed:
                olds = {a: self._where[a] for a in changed if a in self._where}
                for b, group in _by_block(olds).items():
                    b.drop(np.array(group, dtype=np.int64))
                for a in removed:
                    del self._where[a]
                if block is not None:
                    self._register(block, olds)
                    idx = np.array([block.index[a] for a in keep], dtype=np.int64)
                    self._alert_block(block, idx, np.array([before[a] for a in keep]),
                                      at_ns, batches, out_rows)
                self._blocks = [b for b in self._blocks if b.n_live] or self._blocks[-1:]
                self._compact()
        # one record batch per update, whichever blocks the alerts came from
        alerts = ALERT_SCHEMA.empty_table() if not batches else \
            pa.Table.from_batches(batches, schema=ALERT_SCHEMA) if len(batches) == 1 else \
            pa.Table.from_batches(batches, schema=ALERT_SCHEMA).combine_chunks()
        if not out_rows:
            out_rows = [self._blocks[0].account_rows_later(np.zeros(0, dtype=np.int64))
                        if self._blocks else (lambda: None)]
        res = MonitorUpdate(_account_rows=out_rows, alerts=alerts, removed=removed,
                            time=pa.scalar(at_ns, TIME_TYPE).as_py(), seconds=0.0)
        liq = [a for b in batches for a, k in zip(b.column(0).to_pylist(),
                                                  b.column(2).to_pylist()) if k == LIQUIDATION]
        if liq:
            names = list(dict.fromkeys(liq))
            res._plan_inputs = {"tables": self._plan_tables_later(names), "model": self.model,
                                "valuation_time": self.valuation_time, "accounts": names,
                                "threads": self._threads}
        return res

    def _tick(self, market, symbols, assets, moving, at_ns, batches, out_rows):
        """Ticks through every block, alerting the accounts that moved (not those in
        ``moving``: their rows change in this update).  On a :class:`MarginError` (a figure
        that is not finite) the alert state is restored and the blocks are rebuilt from the
        inputs before the update, then the error propagates: the monitor is unchanged."""
        undo = []
        blocks = list(self._blocks)
        try:
            for k, b in enumerate(blocks):
                acc = b.tick(market, symbols, assets)
                if len(acc) and moving:
                    acc = acc[[b.names[i] not in moving for i in acc.tolist()]]
                if len(acc):
                    at = slice(None) if len(acc) == len(b.names) else acc  # acc is sorted
                    if k + 1 < len(blocks):     # a later block's tick may raise
                        undo.append((b, at, b.ratio[at].copy(), b.fig[:, at].copy(),
                                     b.below[at].copy(), b.armed[at].copy()))
                    self._alert_block(b, acc, b.ratio[at].copy(), at_ns, batches, out_rows)
        except MarginError:
            for b, acc, ratio, fig, below, armed in undo:
                b.ratio[acc], b.fig[:, acc], b.below[acc], b.armed[acc] = ratio, fig, below, armed
            olds = dict(self._where)
            block = self._new_block(self._state_tables(None, self._market), self._market)
            self._blocks, self._where = [], {}
            self._register(block, olds)
            raise

    # -- helpers ----------------------------------------------------------------------------
    def _ratio_of(self, name):
        w = self._where.get(name)
        return float(w[0].ratio[w[1]]) if w is not None else np.nan

    def _state_tables(self, accounts, market, ups=None):
        """Input tables of ``accounts`` (None: every account) with the pending row changes
        ``ups`` applied, and the market state ``market``."""
        ups = ups or {}
        out = {}
        for name, rows in self._rows.items():
            new = ups.get(name, {})
            if accounts is None:
                base = rows.table()
                if new:
                    gone = pc.is_in(base.column("account"),
                                    value_set=pa.array(list(new), pa.string()))
                    base = base.filter(pc.invert(gone))
                parts = [base] + list(new.values())
            else:
                parts = [rows.rows_of([a for a in accounts if a not in new])] + \
                    [new[a] for a in accounts if a in new]
            out[name] = pa.concat_tables(parts)
        m, x = market.tables()
        out.update(instruments=self._instruments, market=m, index=x)
        return out

    def _new_block(self, tables, market):
        return Block.from_tables(tables, self.model, np.datetime64(self._vt, "ns"), market,
                                 self._big_threads)

    def _register(self, block, olds, initial=False):
        """Add ``block``: its accounts' alert state comes from their old place ``olds``
        (name -> (block, index)); accounts new to the monitor start above every level (or,
        with ``initial``, in their exact band with nothing alerted)."""
        n = len(block.names)
        below, armed = self._rules.initial(block.ratio if initial else np.full(n, np.nan))
        if not initial:            # what was last reported: nothing for a new account
            block.fig[:] = np.nan
        for name, (ob, oi) in olds.items():
            j = block.index.get(name)
            if j is not None:
                below[j], armed[j] = ob.below[oi], ob.armed[oi]
                block.fig[:, j] = ob.fig[:, oi]
        block.below, block.armed = below, armed
        self._blocks.append(block)
        for i, a in enumerate(block.names):
            if block.live[i]:
                self._where[a] = (block, i)

    def _alert_block(self, block, idx, before, at_ns, batches, out_rows):
        """Alerts and changed rows of accounts ``idx`` of ``block`` just recomputed; their
        ratios before were ``before`` (``block.fig`` holds their figures last reported)."""
        # every account of the block (idx is sorted and unique): whole arrays, no gathers
        at = slice(None) if len(idx) == len(block.names) else idx
        after, changed, rows, kinds, th = self._rules.step(
            np.ascontiguousarray(idx, dtype=np.int64), block.out.account, ACCOUNT_FIELDS,
            block.fig, block.ratio, block.below, block.armed)
        if len(rows):
            names = [block.names[j] for j in idx[rows].tolist()]
            batches.append(self._rules.batch(names, at_ns, kinds, th, before[rows],
                                             after[rows]))
        if changed.all():
            out_rows.append(block.account_rows_later(at, after))
        elif changed.any():
            out_rows.append(block.account_rows_later(idx[changed], after[changed]))

    def _compact(self):
        """Merge small blocks once there are more than MAX_BLOCKS; rebuild a block that lost
        half of its accounts (same figures: only the arrays are regrouped)."""
        if len(self._blocks) > MAX_BLOCKS:
            largest = max(self._blocks, key=lambda b: b.n_live)
            others = [b for b in self._blocks if b is not largest]
            names = [a for b in others for a, on in zip(b.names, b.live) if on]
            olds = {a: self._where[a] for a in names}
            block = self._new_block(self._state_tables(names, self._market), self._market)
            self._blocks = [largest]
            self._register(block, olds)
        for b in list(self._blocks):
            if b.n_live * 2 < len(b.names) and len(b.names) > 64:
                live = np.flatnonzero(b.live)
                sub, _, _ = slice_book(b.book, live)
                block = Block(sub, self.model, self._market, self._big_threads)
                olds = {b.names[i]: (b, i) for i in live.tolist()}
                self._blocks.remove(b)
                self._register(block, olds)

    def _plan_tables_later(self, names):
        """The input tables of accounts ``names`` in the current state, built when called (a
        function of no arguments; later updates replace the rows and the market state it
        picked, never change them): the plans of an update are computed on first access."""
        rows = {k: r.rows_of_later(names) for k, r in self._rows.items()}
        market, instruments = self._market, self._instruments

        def build():
            out = {k: f() for k, f in rows.items()}
            m, x = market.tables()
            out.update(instruments=instruments, market=m, index=x)
            return out
        return build


def _by_block(where):
    """``{block: [index, ...]}`` of ``{name: (block, index)}``."""
    groups = {}
    for b, i in where.values():
        groups.setdefault(b, []).append(i)
    return groups

"""pmrisk.Monitor: incremental figures equal pmrisk.margin() on the same state after any
sequence of updates (hypothesis state machine), every alert kind at exact thresholds,
hysteresis, recovery, liquidation plans, callbacks and queues, threads, bad updates, and the
command line (``pmrisk monitor --replay``, ``pmrisk demo --monitor``)."""

import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import pmrisk
from pmrisk import Monitor, samples
from pmrisk.monitor.alerts import SCHEMA

from books import INDEX, KINDS, MARKET, SYMBOLS, TIME, UNIVERSE, books

# a Monitor must never warn (RuntimeWarning from pmrisk.Monitor is an error here)
pytestmark = pytest.mark.filterwarnings("error:pmrisk.Monitor:RuntimeWarning")

KEYS = {"accounts": ["account"], "units": ["account", "unit"],
        "positions": ["account", "unit", "symbol"]}
UND_OF = dict(zip(UNIVERSE["symbol"].to_pylist(), UNIVERSE["underlying"].to_pylist()))
ACCOUNTS = ["acct-0", "acct-1", "acct-2", "acct-3"]
# deribit_pme with a BTC vol floor (revaluation rows at the floor come and go with the marks)
# and one excluded symbol (its block is recomputed whole): every path of a tick
PME = pmrisk.Model.preset("deribit_pme").with_overrides(
    {"BTC": {"vol_floor": 0.5}, "exclude": {"symbols": ["ETH-27SEP24-3000-P"]},
     # BTC tiers an account's summed holding crosses (its rows are tiered together)
     "collateral": {"BTC": {"tiers_usd": [[0, 50_000, 1.0], [50_000, 150_000, 0.9],
                                          [150_000, float("inf"), 0.8]]}},
     "loan_mmr": 0.1})
STANDARD = pmrisk.Model.preset("standard")


def _sorted(t, name):
    return t.sort_by([(k, "ascending") for k in KEYS[name]])


def assert_tables_equal(a, b, name, rtol=1e-12):
    """Same rows (sorted by key), same strings, numbers within ``rtol`` of the column's
    largest magnitude (``rtol=0``: equal to the bit)."""
    a, b = _sorted(a, name), _sorted(b, name)
    assert a.column_names == b.column_names, name
    assert a.num_rows == b.num_rows, (name, a.num_rows, b.num_rows)
    for c in a.column_names:
        x, y = a[c], b[c]
        if pa.types.is_floating(x.type):
            x = x.to_numpy(zero_copy_only=False)
            y = y.to_numpy(zero_copy_only=False)
            finite = y[np.isfinite(y)]
            scale = np.abs(finite).max() if len(finite) else 0.0
            with np.errstate(invalid="ignore"):                  # inf - inf
                ok = (x == y) | (np.abs(x - y) <= rtol * scale) | (np.isnan(x) & np.isnan(y))
            assert ok.all(), (name, c, x[~ok][:5], y[~ok][:5])
        else:
            assert x.to_pylist() == y.to_pylist(), (name, c)


def assert_matches_margin(mon, model, rtol=1e-12):
    ref = pmrisk.margin(**mon.state(), model=model)
    for name in KEYS:
        assert_tables_equal(getattr(mon, name), getattr(ref, name), name, rtol)


def demo_monitor(model="deribit_pme", **kw):
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    return Monitor(**b, model=model, valuation_time=vt, **kw), b


def tick_tables(market, und, factor, iv_factor=1.0, symbols=None, instruments=UNIVERSE):
    """Market and index rows moving ``und`` by ``factor`` (futures marks and option forwards
    scale, options' marks and vols by ``iv_factor``) from the ``market`` table's rows."""
    und_of = dict(zip(instruments["symbol"].to_pylist(),
                      instruments["underlying"].to_pylist()))
    rows = []
    for r in market.to_pylist():
        if und_of[r["symbol"]] != und or (symbols is not None and r["symbol"] not in symbols):
            continue
        r = dict(r)
        if r["mark_iv"] is not None:
            r["mark_iv"] = min(max(r["mark_iv"] * iv_factor, 0.05), 5.0)
            r["underlying_price"] = r["underlying_price"] * factor
            r["mark_price"] = r["mark_price"] * iv_factor
        else:
            r["mark_price"] = r["mark_price"] * factor
        rows.append(r)
    return pa.Table.from_pylist(rows, schema=MARKET.schema)


# -- the state machine: the monitor equals margin() after every step -----------------------

class MonitorMachine(RuleBasedStateMachine):
    """Under ``cross_unit = "sum"`` the monitor equals margin() to the bit."""
    model = PME
    rtol = 0.0

    def __init__(self):
        super().__init__()
        self.mon = None
        self.last = None

    @initialize(book=books(max_accounts=3, max_positions=6),
                cash=st.lists(st.floats(0, 2e5), min_size=3, max_size=3))
    def start(self, book, cash):
        self.open(book, cash)

    def open(self, book, cash):
        # acct-1's BTC in two rows, a holding and a loan (several rows per (account, asset))
        balances = pa.table({"account": ["acct-0", "acct-1", "acct-2", "acct-1"],
                             "asset": ["USDC", "BTC", "ETH", "BTC"],
                             "amount": [cash[0], cash[1] / 65000, cash[2] / 3400, -0.01]})
        self.mon = Monitor(book, UNIVERSE, MARKET, INDEX, balances=balances, model=self.model,
                           valuation_time=TIME)
        self.market = MARKET
        self.index = {"BTC": 65000.0, "ETH": 3400.0}

    def _apply(self, **kw):
        before = self.mon.accounts
        try:
            self.last = self.mon.update(**kw)
        except pmrisk.MarginError:
            # e.g. the valuation time moved past a held future's expiry: nothing changed
            self.last = None
            assert self.mon.accounts.equals(before)

    @rule(und=st.sampled_from(["BTC", "ETH"]), factor=st.floats(0.85, 1.15),
          iv=st.floats(0.7, 1.4), part=st.booleans(), index_too=st.booleans())
    def tick(self, und, factor, iv, part, index_too):
        cur = self.mon.state()["market"]
        syms = None
        if part:                                 # a few symbols only
            syms = [s for s in SYMBOLS if UND_OF[s] == und][::3]
        market = tick_tables(cur, und, factor, iv, syms)
        if part:                                 # and only the mark_price column
            market = market.select(["symbol", "mark_price"])
        index = None
        if index_too:
            self.index[und] *= factor
            index = {"underlying": [und], "index_price": [self.index[und]]}
        self._apply(market=market, index=index)

    @rule(und=st.sampled_from(["BTC", "ETH", "USDC"]), factor=st.floats(0.9, 1.1))
    def index_tick(self, und, factor):
        px = self.index.get(und, 1.0) * factor
        self.index[und] = px
        self._apply(index={"underlying": [und], "index_price": [px]})

    @rule(acc=st.sampled_from(ACCOUNTS), i=st.integers(0, len(SYMBOLS) - 1),
          size=st.floats(-1.0, 1.0), entry=st.none() | st.floats(0.5, 1.5))
    def position(self, acc, i, size, entry):
        scale = 50.0 if KINDS[i] == "option" else 1e5
        q = round(size * scale, 3)
        row = {"account": [acc], "symbol": [SYMBOLS[i]], "quantity": [q]}
        if KINDS[i] != "option" and entry is not None:
            px = self.mon.state()["market"].filter(pc.equal(pc.field("symbol"), SYMBOLS[i]))
            row["entry_price"] = [px["mark_price"][0].as_py() * entry]
        self._apply(positions=row)

    @precondition(lambda self: self.mon is not None and self.mon.positions.num_rows > 0)
    @rule(data=st.data())
    def close(self, data):
        pos = self.mon.state()["positions"]
        if not pos.num_rows:
            return
        k = data.draw(st.integers(0, pos.num_rows - 1))
        self._apply(positions={"account": [pos["account"][k].as_py()],
                               "symbol": [pos["symbol"][k].as_py()], "quantity": [0.0]})

    @rule(acc=st.sampled_from(ACCOUNTS), asset=st.sampled_from(["USDC", "BTC", "ETH"]),
          usd=st.lists(st.floats(-2e4, 2e5), min_size=1, max_size=3))
    def balance(self, acc, asset, usd):
        """One row or several for the (account, asset): they replace all of its rows
        (holdings and loans apart; a 0 among them is dropped)."""
        px = {"USDC": 1.0, "BTC": 65000.0, "ETH": 3400.0}[asset]
        self._apply(balances={"account": [acc] * len(usd), "asset": [asset] * len(usd),
                              "amount": [round(u / px, 6) for u in usd]})

    @rule(acc=st.sampled_from(ACCOUNTS), i=st.integers(0, len(SYMBOLS) - 1),
          q=st.floats(-10.0, 10.0), oid=st.sampled_from(["o-1", "o-2"]))
    def order(self, acc, i, q, oid):
        qty = round(q * (1.0 if KINDS[i] == "option" else 1e4), 3)
        self._apply(open_orders={"account": [acc], "order_id": [oid], "symbol": [SYMBOLS[i]],
                                 "quantity": [qty], "price": [1.0]})

    @rule(hours=st.integers(1, 48))
    def advance_time(self, hours):
        vt = self.mon.valuation_time + np.timedelta64(hours, "h")
        self._apply(valuation_time=vt)

    @invariant()
    def equals_margin(self):
        if self.mon is None:
            return
        assert_matches_margin(self.mon, self.model, self.rtol)
        if self.last is not None and self.last.accounts.num_rows:
            # the update's rows are the accounts table's rows for those accounts
            names = self.last.accounts["account"]
            now = self.mon.accounts.filter(pc.is_in(self.mon.accounts["account"],
                                                    value_set=names))
            assert_tables_equal(self.last.accounts, now, "accounts", rtol=0)


def _multi_underlying(book, draw):
    """``book`` plus, for each of its accounts, a position on BTC and one on ETH (drawn), so
    every account holds two underlyings and gets the joint stress proper."""
    rows = book.to_pylist()
    for a in sorted({r["account"] for r in rows}):
        held = {r["symbol"] for r in rows if r["account"] == a}
        for und in ("BTC", "ETH"):
            free = [i for i, x in enumerate(SYMBOLS) if UND_OF[x] == und and x not in held]
            i = draw(st.sampled_from(free))
            scale = 50.0 if KINDS[i] == "option" else 1e5
            q = draw(st.floats(-1.0, 1.0).filter(lambda x: abs(x) > 1e-3))
            rows.append({**{k: None for k in book.column_names}, "account": a,
                         "symbol": SYMBOLS[i], "quantity": round(q * scale, 3) or 1.0})
            held.add(SYMBOLS[i])
    return pa.Table.from_pylist(rows, schema=book.schema)


class CorrelatedMachine(MonitorMachine):
    """``standard`` (the correlated joint stress) with every account on BTC and ETH at the
    start: a tick reprices the moved underlying's curves and reruns the joint stress of the
    accounts holding it; the monitor equals margin() on the same state to 1e-12 of each
    column's scale."""
    model = STANDARD
    rtol = 1e-12

    @initialize(book=books(max_accounts=3, max_positions=6),
                cash=st.lists(st.floats(0, 2e5), min_size=3, max_size=3), data=st.data())
    def start(self, book, cash, data):
        self.open(_multi_underlying(book, data.draw), cash)


# a few seconds with the dev profile; HYPOTHESIS_PROFILE=nightly runs ~4x more sequences
_N = settings.default.max_examples
TestMonitorMatchesMargin = MonitorMachine.TestCase
TestMonitorMatchesMargin.settings = settings(max_examples=max(25, _N // 20),
                                             stateful_step_count=10, deadline=None)
TestCorrelatedMonitorMatchesMargin = CorrelatedMachine.TestCase
TestCorrelatedMonitorMatchesMargin.settings = settings(max_examples=max(12, _N // 40),
                                                       stateful_step_count=8, deadline=None)


# -- alerts at exact thresholds ----------------------------------------------------------

LEVELS = [1.10, 1.05, 1.01, 1.00, 0.75]
DOWN_KIND = ["threshold_down"] * 3 + ["margin_call", "liquidation"]
STATUS_AT = ["normal", "warning_1", "warning_2", "warning_3", "margin_call"]
STATUS_BELOW = ["warning_1", "warning_2", "warning_3", "margin_call", "liquidation"]


class Cash:
    """One account: a linear perpetual without entry price (value 0) and a USDC balance, so
    equity is exactly the balance and the ratio is balance / MM: a balance update puts the
    ratio exactly at a level, or one float below it."""

    def __init__(self, **kw):
        self.tables = dict(
            positions={"account": ["a"], "symbol": ["BTC_USDC-PERPETUAL"], "quantity": [800.0]},
            instruments=UNIVERSE, market=MARKET, index=INDEX)
        self.mm = pmrisk.margin(**self.tables, model="deribit_pme", valuation_time=TIME) \
            .accounts["maintenance_margin"][0].as_py()
        self.mon = Monitor(**self.tables, balances=self.balance(self.at(1.5)),
                           model="deribit_pme", valuation_time=TIME, **kw)

    @staticmethod
    def balance(amount):
        return {"account": ["a"], "asset": ["USDC"], "amount": [amount]}

    def at(self, level):
        """The balance whose ratio is ``level`` exactly (as a float)."""
        a = level * self.mm
        while a / self.mm < level:
            a = np.nextafter(a, np.inf)
        while a / self.mm > level:
            a = np.nextafter(a, -np.inf)
        assert a / self.mm == level
        return float(a)

    def below(self, level):
        """The largest balance whose ratio is below ``level``."""
        a = self.at(level)
        while a / self.mm >= level:
            a = np.nextafter(a, -np.inf)
        return float(a)

    def to(self, amount):
        return self.mon.update(balances=self.balance(amount))

    def ratio(self):
        return self.mon.accounts["margin_ratio"][0].as_py()


def rows(up):
    return [(r["kind"], r["threshold"]) for r in up.alerts.to_pylist()]


def test_every_kind_at_exact_thresholds_down_then_up():
    c = Cash()
    for level, kind, at, below in zip(LEVELS, DOWN_KIND, STATUS_AT, STATUS_BELOW):
        up = c.to(c.at(level))               # exactly at the level: the better band, no alert
        assert c.ratio() == level
        assert c.mon.accounts["status"][0].as_py() == at
        assert rows(up) == []
        up = c.to(c.below(level))            # one float below: the alert of that level
        assert rows(up) == [(kind, level)]
        a = up.alerts.to_pylist()[0]
        assert a["account"] == "a" and a["ratio_before"] == level and a["ratio_after"] < level
        assert (a["status_before"], a["status_after"]) == (at, below)
        assert up.alerts.schema == SCHEMA
    for level, at in reversed(list(zip(LEVELS, STATUS_AT))):
        up = c.to(c.at(level))               # back exactly to a level: recovered
        assert rows(up) == [("threshold_up", level)]
        assert up.alerts["status_after"][0].as_py() == at


def test_liquidation_alert_carries_the_plan():
    c = Cash()
    c.to(c.at(0.8))
    up = c.to(c.below(0.75))
    assert rows(up) == [("liquidation", 0.75)]
    plan = up.liquidation_plans
    assert plan.num_rows >= 1 and set(plan["account"].to_pylist()) == {"a"}
    ref = pmrisk.liquidation_plan(**c.mon.state(), model="deribit_pme")
    assert plan.to_pylist() == ref.to_pylist()
    assert plan["margin_ratio_after"][plan.num_rows - 1].as_py() >= 1.0
    # no new alert, no plan, while it stays in liquidation
    up = c.to(c.below(0.75) * 0.9)
    assert rows(up) == [] and up.liquidation_plans.num_rows == 0


def test_liquidation_plan_read_after_later_updates_is_that_updates():
    """An update's liquidation plans are computed on first access, from the state right
    after that update: later balance changes and ticks do not reach them."""
    c = Cash()
    c.to(c.at(0.8))
    up = c.to(c.below(0.75))
    state = c.mon.state()
    c.to(c.at(0.5))
    btc = INDEX["index_price"][0].as_py() * 1.1
    c.mon.update(index={"underlying": ["BTC"], "index_price": [btc]})
    ref = pmrisk.liquidation_plan(**state, model="deribit_pme")
    assert up.liquidation_plans.to_pylist() == ref.to_pylist()
    assert c.mon.state()["balances"]["amount"][0] != state["balances"]["amount"][0]


def test_one_update_across_every_level():
    c = Cash()
    up = c.to(c.at(0.5))
    assert rows(up) == list(zip(DOWN_KIND, LEVELS))          # most severe last
    assert up.alerts["ratio_before"].to_pylist() == [1.5] * 5
    up = c.to(c.at(1.5))
    assert rows(up) == [("threshold_up", lv) for lv in reversed(LEVELS)]   # lowest first


def test_recovery_out_of_margin_call_is_threshold_up():
    c = Cash()
    c.to(c.at(0.9))
    up = c.to(c.at(1.02))
    assert rows(up) == [("threshold_up", 1.0), ("threshold_up", 1.01)]
    assert up.alerts["status_after"].to_pylist() == ["warning_2"] * 2


def test_hysteresis_stops_flapping():
    hover = [1.0501, 1.0499, 1.0502, 1.0498, 1.05, 1.0497, 1.0503, 1.0499]
    c = Cash()
    c.to(c.at(1.07))
    flaps = [rows(c.to(c.at(r))) for r in hover]
    assert sum(len(f) for f in flaps) == 7                    # h = 0: every crossing alerts

    c = Cash(hysteresis=0.01)
    c.to(c.at(1.07))
    alerts = [rows(c.to(c.at(r))) for r in hover]
    assert alerts[1] == [("threshold_down", 1.05)] and sum(len(a) for a in alerts) == 1
    assert c.mon.accounts["status"][0].as_py() == "warning_2"  # status stays exact
    assert rows(c.to(c.at(1.0599))) == []                     # up needs >= 1.05 + 0.01
    assert rows(c.to(c.at(1.061))) == [("threshold_up", 1.05)]
    assert rows(c.to(c.at(1.045))) == []                      # down now needs < 1.04
    assert rows(c.to(c.at(1.0399))) == [("threshold_down", 1.05)]
    # a level that has not alerted yet is crossed at the level itself
    assert rows(c.to(c.below(1.01))) == [("threshold_down", 1.01)]


def test_new_account_below_levels_alerts_from_nothing():
    mon, _ = demo_monitor()
    up = mon.update(positions={"account": ["newbie"], "symbol": ["BTC-PERPETUAL"],
                               "quantity": [10000.0]})
    assert rows(up) == list(zip(DOWN_KIND, LEVELS))           # no collateral: ratio 0
    assert up.alerts["ratio_before"].null_count == 5
    assert up.alerts["status_before"].null_count == 5
    assert up.accounts["account"].to_pylist() == ["newbie"]
    up = mon.update(positions={"account": ["newbie"], "symbol": ["BTC-PERPETUAL"],
                               "quantity": [0.0]})
    assert up.removed == ["newbie"] and up.alerts.num_rows == 0
    assert "newbie" not in mon.accounts["account"].to_pylist()
    assert_matches_margin(mon, "deribit_pme")


def test_ticks_alert_as_ratios_cross():
    """A BTC crash through the engine's phases on a selection: the alerts are exactly the
    crossings of the ratios margin() gives before and after each tick."""
    mon, b = demo_monitor()
    th = LEVELS
    before = dict(zip(mon.accounts["account"].to_pylist(),
                      mon.accounts["margin_ratio"].to_pylist()))
    market = b["market"]
    for k, f in enumerate([0.99, 0.97, 0.95, 0.93, 0.96]):
        m = tick_tables(market, "BTC", f)
        up = mon.update(market=m, index={"underlying": ["BTC"], "index_price": [65000 * f]})
        ref = pmrisk.margin(**mon.state(), model="deribit_pme")
        after = dict(zip(ref.accounts["account"].to_pylist(),
                         ref.accounts["margin_ratio"].to_pylist()))
        want = sorted((a, lv) for a in after for lv in th
                      if (before[a] < lv) != (after[a] < lv))
        got = sorted(zip(up.alerts["account"].to_pylist(), up.alerts["threshold"].to_pylist()))
        assert got == want, k
        assert_matches_margin(mon, "deribit_pme")
        before = after
    assert mon.update().alerts.num_rows == 0


# -- delivery: callback, iterator, queue ---------------------------------------------------

def test_alerts_reach_the_callback_and_the_iterator_as_record_batches():
    got = []
    c = Cash(on_alert=got.append, alert_queue=2)
    c.to(c.at(0.5))
    c.to(c.at(1.5))
    c.to(c.at(1.2))                                          # no level crossed
    assert c.mon.update().alerts.num_rows == 0                # no alerts, no batch
    assert len(got) == 2 and all(isinstance(b, pa.RecordBatch) for b in got)
    assert all(b.schema == SCHEMA for b in got)
    assert [b.num_rows for b in got] == [5, 5]
    c.to(c.at(0.9))                                          # a third batch: the queue keeps 2
    queued = list(c.mon.alerts())
    assert [b.num_rows for b in queued] == [5, 4] and c.mon.dropped_alert_batches == 1
    assert queued[0].equals(got[1])
    assert list(c.mon.alerts()) == []                        # taken off the queue


def test_one_batch_per_update_across_blocks():
    got = []
    mon, b = demo_monitor(on_alert=got.append)
    # the same balance again: linear-pair's rows are re-validated into a block of their own
    up = mon.update(balances={"account": ["linear-pair"], "asset": ["USDC"],
                              "amount": [40000.0]})
    assert len(mon._blocks) == 2 and up.alerts.num_rows == 0 and up.accounts.num_rows == 0
    up = mon.update(market=tick_tables(b["market"], "BTC", 0.9),
                    index={"underlying": ["BTC"], "index_price": [58500.0]})
    assert {"linear-pair", "directional"} <= set(up.alerts["account"].to_pylist())
    assert len(got) == 1 and got[0].num_rows == up.alerts.num_rows
    assert_matches_margin(mon, "deribit_pme", 0.0)


def test_alert_iterator_waits_for_batches_until_closed():
    c = Cash()
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(c.mon.alerts(timeout=None)))
    reader.start()
    c.to(c.at(1.02))
    c.to(c.at(1.5))
    c.mon.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert [b.num_rows for b in seen] == [2, 2]


# -- threads, immutability, bad updates -----------------------------------------------------

def test_reader_thread_sees_whole_states_while_another_updates():
    mon, b = demo_monitor()
    stop, seen, errors = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            r = mon.result()                    # the three tables of one state
            acc, pos = r.accounts, r.positions
            try:
                # a table is never half updated: each one adds up within itself
                mm = dict(zip(acc["account"].to_pylist(),
                              acc["maintenance_margin"].to_pylist()))
                by = pos.group_by("account").aggregate([("mm_contribution_usd", "sum")])
                for a, s in zip(by["account"].to_pylist(),
                                by["mm_contribution_usd_sum"].to_pylist()):
                    assert abs(s - mm[a]) <= 1e-9 * max(abs(mm[a]), 1.0)
                seen.append(acc)
            except Exception as exc:            # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for k in range(30):
            f = 1.0 + 0.02 * np.sin(k)
            mon.update(market=tick_tables(b["market"], "BTC", f),
                       index={"underlying": ["BTC"], "index_price": [65000 * f]})
            if k % 5 == 0:
                mon.update(positions={"account": ["directional"], "symbol": ["ETH-PERPETUAL"],
                                      "quantity": [float(100 * k)]})
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(seen) > 0
    assert_matches_margin(mon, "deribit_pme")


def test_tables_handed_out_never_change():
    mon, b = demo_monitor()
    acc, units, pos = mon.accounts, mon.units, mon.positions
    copies = [t.to_pylist() for t in (acc, units, pos)]
    mon.update(market=tick_tables(b["market"], "BTC", 0.9),
               index={"underlying": ["BTC"], "index_price": [58500.0]})
    mon.update(balances={"account": ["long-vol"], "asset": ["BTC"], "amount": [3.0]})
    assert [t.to_pylist() for t in (acc, units, pos)] == copies
    assert mon.accounts.to_pylist() != copies[0]


def test_update_rows_read_later_are_that_updates_figures():
    """``MonitorUpdate.accounts`` is built on first access: read after later ticks (which
    change the monitor's arrays in place), it still holds the figures of its own update,
    those of ``margin()`` on the state right after it."""
    mon, b = demo_monitor()
    ups, states = [], []
    for move in (0.9, 1.05, 0.97, 1.02):
        ups.append(mon.update(market=tick_tables(b["market"], "BTC", move),
                              index={"underlying": ["BTC"], "index_price": [65000.0 * move]}))
        states.append(mon.state())
        if move == 1.05:                # read at once, before the next tick, then again later
            first = ups[-1].accounts
    assert ups[1].accounts is first
    for up, state in zip(ups, states):
        assert up.accounts.num_rows > 0
        want = pmrisk.margin(**state, model="deribit_pme").accounts
        want = want.filter(pc.is_in(want["account"], value_set=up.accounts["account"]))
        assert up.accounts.sort_by("account").to_pylist() == \
            want.sort_by("account").to_pylist()


@pytest.mark.parametrize("kw, table, column", [
    (dict(market={"symbol": ["BTC-PERPETUAL"], "mark_price": [-1.0]}), "market", "mark_price"),
    (dict(market={"symbol": ["NOPE"], "mark_price": [1.0]}), "market", "symbol"),
    (dict(market={"symbol": ["BTC-28JUN24-65000-C"], "mark_iv": [np.nan]}), "market",
     "mark_iv"),
    (dict(index={"underlying": ["BTC", "BTC"], "index_price": [1.0, 2.0]}), "index",
     "underlying"),
    (dict(positions={"account": ["x"], "symbol": ["NOPE"], "quantity": [1.0]}), "positions",
     "symbol"),
    (dict(positions={"account": ["x"], "symbol": ["BTC-PERPETUAL"], "quantity": [np.inf]}),
     "positions", "quantity"),
    (dict(balances={"account": ["x"], "asset": ["DOGE"], "amount": [1.0]}), "balances", "asset"),
    (dict(open_orders={"account": ["x"], "order_id": ["o"], "symbol": ["BTC-PERPETUAL"],
                       "quantity": [1.0], "price": [None]}), "open_orders", "price"),
    (dict(valuation_time="2024-12-31T00:00:00Z"), "positions", "symbol"),     # past expiry
    (dict(market={"time": ["2024-06-17T08:00:00Z"], "symbol": ["BTC-PERPETUAL"],
                  "mark_price": [1.0]}), "market", "time"),
])
def test_a_bad_update_changes_nothing(kw, table, column):
    mon, _ = demo_monitor()
    before = mon.state()
    acc = mon.accounts
    with pytest.raises(pmrisk.MarginError) as err:
        mon.update(**kw)
    assert (err.value.table, err.value.column) == (table, column)
    after = mon.state()
    assert all(after[k].equals(before[k]) for k in before if k != "valuation_time")
    assert after["valuation_time"] == before["valuation_time"]
    assert mon.accounts.equals(acc)
    assert_matches_margin(mon, "deribit_pme")


@pytest.mark.parametrize("on_alert", [5, "print", [print], True])
def test_on_alert_must_be_callable_or_none(on_alert):
    b = samples.demo_book()
    with pytest.raises(pmrisk.MarginError) as err:
        Monitor(**b, on_alert=on_alert)
    assert (err.value.table, err.value.column, err.value.rows) == ("arguments", "on_alert", [])


def test_a_failing_on_alert_sees_a_whole_update():
    """The callback runs after the update is complete: its exception reaches the caller,
    and the monitor holds the whole update (every account, the alert queue), not part."""
    seen = []

    def boom(batch):
        seen.append(batch)
        raise RuntimeError("user callback")

    mon, b = demo_monitor(on_alert=boom)
    tick = dict(market=tick_tables(b["market"], "BTC", 0.9),
                index={"underlying": ["BTC"], "index_price": [58500.0]})
    with pytest.raises(RuntimeError, match="user callback"):
        mon.update(**tick)
    assert len(seen) == 1 and mon.version == 1
    ref, _ = demo_monitor()
    up = ref.update(**tick)
    assert seen[0].num_rows == up.alerts.num_rows > 0
    assert mon.accounts.equals(ref.accounts)
    assert [q.num_rows for q in mon.alerts()] == [up.alerts.num_rows]
    assert_matches_margin(mon, "deribit_pme")


def test_inputs_with_a_time_column_are_refused():
    b = samples.demo_book()
    b.pop("valuation_time")
    pos = b["positions"].append_column(
        "time", pa.array([0] * b["positions"].num_rows, pa.timestamp("ns", tz="UTC")))
    with pytest.raises(pmrisk.MarginError, match="time"):
        Monitor(**{**b, "positions": pos})


def test_account_changes_regroup_blocks_and_stay_exact(monkeypatch):
    monkeypatch.setattr("pmrisk.monitor.monitor.MAX_BLOCKS", 2)
    b = samples.book(n_accounts=80, positions_per_account=4, underlyings=("BTC", "ETH"),
                     seed=3)
    vt = b.pop("valuation_time")
    mon = Monitor(**b, model=PME, valuation_time=vt)
    names = mon.accounts["account"].to_pylist()
    pos = b["positions"]
    for k, a in enumerate(names[:50]):          # each account changes: a block of its own
        row = pos.filter(pc.equal(pos["account"], a)).slice(0, 1)
        mon.update(positions=row.set_column(2, "quantity",
                                            pa.array([row["quantity"][0].as_py() * 2])))
        if k % 10 == 0:
            mon.update(market=tick_tables(mon.state()["market"], "BTC", 1.01,
                                          instruments=b["instruments"]))
        assert len(mon._blocks) <= 3
    assert_matches_margin(mon, PME, 0.0)
    assert len(mon._blocks[0].names) < 80           # the first block was rebuilt smaller


def test_reserves_and_orders_follow_ticks():
    mon, b = demo_monitor(reserves={"account": ["long-vol"], "unit": ["BTC/BTC"],
                                    "mmp_margin": [0.2], "open_orders_margin": [0.1]})
    for f in (0.97, 1.02):
        mon.update(market=tick_tables(b["market"], "BTC", f),
                   index={"underlying": ["BTC"], "index_price": [65000 * f]})
        assert_matches_margin(mon, "deribit_pme", 0.0)
    mon.update(open_orders={"account": ["directional"], "order_id": ["o-1001"],
                            "symbol": [None], "quantity": [0.0], "price": [None]})
    assert mon.state()["open_orders"].num_rows == 1
    assert_matches_margin(mon, "deribit_pme", 0.0)


# -- the command line ----------------------------------------------------------------------

def _write(table, path):
    import pyarrow.feather as feather
    if str(path).endswith(".parquet"):
        pq.write_table(table, path)
    else:
        feather.write_feather(table, path)
    return str(path)


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_cli_monitor_replays_a_tick_file(tmp_path, capsys, fmt):
    from pmrisk.cli import commands as cli
    from pmrisk.cli.monitor_view import crash_ticks
    book = samples.demo_book()
    ticks = crash_ticks(book, minutes=1, step_seconds=10)      # BTC -25 % in a minute
    args = ["monitor", "--replay", _write(ticks, tmp_path / f"ticks.{fmt}"), "--model",
            "deribit_pme", "--no-live"]
    for name in ("positions", "instruments", "market", "index", "balances", "open_orders"):
        args += [f"--{name.replace('_', '-')}", _write(book[name], tmp_path / f"{name}.{fmt}")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "pmrisk monitor: 6 accounts, 7 updates" in out
    for word in ("threshold_down", "margin_call", "liquidation", "liquidation plan",
                 "directional", "update latency p50"):
        assert word in out
    assert "\x1b[" not in out                                  # no colours in a pipe


def test_cli_monitor_reports_a_bad_tick_file(tmp_path, capsys):
    from pmrisk.cli import commands as cli
    book = samples.demo_book()
    args = ["monitor", "--replay", _write(pa.table({"symbol": ["BTC-PERPETUAL"]}),
                                          tmp_path / "t.parquet")]
    for name in ("positions", "instruments", "market", "index"):
        args += [f"--{name}", _write(book[name], tmp_path / f"{name}.parquet")]
    assert cli.main(args) == 2
    assert "ticks.time" in capsys.readouterr().err


T0 = pa.scalar("2024-06-17T08:00:00Z").cast(pa.timestamp("ns", tz="UTC"))
BAD_TICKS = {
    "int_time": (pa.table({"time": pa.array([1718611200], pa.int64()), "kind": ["index"],
                           "underlying": ["BTC"], "index_price": [65000.0]}),
                 "ticks", "time", []),
    "null_time": (pa.table({"time": pa.array([T0.value, None], pa.timestamp("ns", tz="UTC")),
                            "kind": ["index", "index"], "underlying": ["BTC", "BTC"],
                            "index_price": [65000.0, 64000.0]}),
                  "ticks", "time", [(1,)]),
    "bad_time_string": (pa.table({"time": ["2024-06-17T08:00:00Z", "soon"],
                                  "kind": ["index", "index"], "underlying": ["BTC", "BTC"],
                                  "index_price": [65000.0, 64000.0]}),
                        "ticks", "time", [(1,)]),
    "float_time": (pa.table({"time": [1.7e9], "kind": ["index"], "underlying": ["BTC"],
                             "index_price": [65000.0]}), "ticks", "time", []),
}


@pytest.mark.parametrize("case", list(BAD_TICKS))
def test_a_bad_ticks_time_names_ticks_time(case):
    from pmrisk.cli.monitor_view import tick_updates
    ticks, table, column, rows = BAD_TICKS[case]
    with pytest.raises(pmrisk.MarginError) as err:
        tick_updates(ticks)
    assert (err.value.table, err.value.column, err.value.rows) == (table, column, rows)


@pytest.mark.parametrize("case", ["int_time", "null_time"])
def test_cli_monitor_a_bad_ticks_time_is_one_line(tmp_path, capsys, case):
    from pmrisk.cli import commands as cli
    book = samples.demo_book()
    args = ["monitor", "--no-live", "--replay", _write(BAD_TICKS[case][0],
                                                        tmp_path / "t.parquet")]
    for name in ("positions", "instruments", "market", "index", "balances"):
        args += [f"--{name}", _write(book[name], tmp_path / f"{name}.parquet")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "ticks.time: expected" in err and err.count("\n") == 1


@pytest.mark.parametrize("top, speed, flag", [
    (-5, None, "--top"), (0, None, "--top"), (2.5, None, "--top"), ("x", None, "--top"),
    (True, None, "--top"), (20, -1.0, "--speed"), (20, float("inf"), "--speed"),
    (20, float("nan"), "--speed"), (20, "fast", "--speed")])
def test_monitor_view_flags_are_checked(top, speed, flag):
    from pmrisk.cli.monitor_view import check_view_args
    with pytest.raises(pmrisk.MarginError) as err:
        check_view_args(top, speed)
    assert (err.value.table, err.value.column, err.value.rows) == ("arguments", flag, [])


@pytest.mark.parametrize("flag, value", [
    ("--top", "-5"), ("--top", "0"), ("--top", "2.5"), ("--top", "x"),
    ("--speed", "-1"), ("--speed", "inf"), ("--speed", "nan"), ("--speed", "fast")])
def test_cli_monitor_bad_view_flags_are_one_line(tmp_path, capsys, flag, value):
    from pmrisk.cli import commands as cli
    argv = ["monitor", "--replay", str(tmp_path / "missing.parquet"), flag, value]
    for name in ("positions", "instruments", "market", "index"):
        argv += [f"--{name}", str(tmp_path / f"{name}.parquet")]      # checked before reading
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pmrisk: input error: arguments.{flag}: expected") and \
        err.count("\n") == 1


def test_cli_monitor_a_null_in_a_tick_keeps_the_value(tmp_path, capsys):
    """A ticks row with a new vol and no mark (the other value columns null) keeps the mark;
    the index row of the same update has null market columns."""
    from pmrisk.cli import commands as cli
    book = samples.demo_book()
    opt = [r for r in book["market"].to_pylist() if r["mark_iv"] is not None][0]
    t = [T0.value, T0.value]
    ticks = pa.table({"time": pa.array(t, pa.timestamp("ns", tz="UTC")),
                      "kind": ["market", "index"], "symbol": [opt["symbol"], None],
                      "mark_price": pa.array([None, None], pa.float64()),
                      "mark_iv": [opt["mark_iv"] * 1.2, None],
                      "underlying_price": [opt["underlying_price"], None],
                      "underlying": [None, "BTC"], "index_price": [None, 64000.0]})
    args = ["monitor", "--no-live", "--replay", _write(ticks, tmp_path / "t.parquet")]
    for name in ("positions", "instruments", "market", "index", "balances"):
        args += [f"--{name}", _write(book[name], tmp_path / f"{name}.parquet")]
    assert cli.main(args) == 0
    assert "1 updates" in capsys.readouterr().out


def test_cli_demo_monitor_crosses_every_level(capsys):
    from pmrisk.cli import commands as cli
    assert cli.main(["demo", "--monitor", "--model", "deribit_pme"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("2024-")]
    kinds = {(ln.split()[2], ln.split()[3]) for ln in lines}
    for level in ("110.0%", "105.0%", "101.0%"):
        assert ("threshold_down", level) in kinds
        assert ("threshold_up", level) in kinds
    assert ("margin_call", "100.0%") in kinds and ("liquidation", "75.0%") in kinds
    assert "liquidation plan" in out and "301 updates" in out


def test_accounts_rows_of_every_account_in_another_order():
    """``accounts_table`` over every account given in another order than 0..n-1 names each
    row's binding cell for that row's own account (the words are not indexed by the global
    account where the selection is a permutation)."""
    from pmrisk.engine.core import run
    from pmrisk.io.book import load_book
    from pmrisk.model.model import Model
    from pmrisk.results import accounts_table
    b = samples.book(n_accounts=7, positions_per_account=4, seed=5)
    vt = b.pop("valuation_time")
    model = Model.coerce("deribit_pme")
    book = load_book(b["positions"], b["instruments"], b["market"], b["index"],
                     b.get("balances"), None, None, model, vt)
    out = run(book, model)
    whole = accounts_table(out, model)
    perm = np.array([3, 0, 6, 1, 5, 2, 4], dtype=np.int64)
    got = accounts_table(out, model, acc=perm)
    assert got.column("account").to_pylist() == [whole.column("account")[k].as_py()
                                                 for k in perm]
    assert got.column("worst_scenario").to_pylist() == [
        whole.column("worst_scenario")[k].as_py() for k in perm]

"""Time snapshots: every input may carry a ``time`` column; each distinct time is
a separate snapshot, valued at that time with the rows of that time.

A table without a ``time`` column applies to every snapshot (static instruments, a constant
balance sheet).  The snapshot times are the distinct times of the timed account-state tables
(positions, balances, open orders, reserves: an account that is flat at some time but holds
balances is still a snapshot), or, when none of those is timed, of the timed market tables.
Rows match a snapshot by exact time (no as-of join): market data must carry every snapshot
time it is needed at.  Results carry ``time`` after ``account``.

This is one engine pass per snapshot: correct for any history and fine for thousands of
snapshots; vectorised multi-snapshot kernels for long backtests are separate work.
"""

import numpy as np
import pyarrow as pa

from ..io.arrow import NAT, as_table, check_columns, has, raise_rows, time_column, valuation_ns
from ..errors import MarginError
from ..io.schema import ACCOUNT_STATE, TIME, TIME_TYPE, snapshot_tables



def timed(tables):
    """Names of the tables that carry a time column."""
    return [name for name, t in tables.items() if has(t, TIME)]


class _Splitter:
    """Rows of one table per snapshot time, by one stable sort and binary search."""

    def __init__(self, table, name):
        ns = time_column(table, name, TIME)
        if (ns == NAT).any():
            raise_rows(table, name, TIME, ns == NAT, "a time on every row (no nulls)")
        self.order = np.argsort(ns, kind="stable")
        self.sorted = ns[self.order]
        self.table = table.drop_columns([TIME])

    def times(self):
        return np.unique(self.sorted)

    def at(self, t):
        lo, hi = np.searchsorted(self.sorted, [t, t + 1])
        return self.table.take(pa.array(self.order[lo:hi], pa.int64()))


def margin_snapshots(tables, valuation_time, run_one):
    """Call ``run_one(tables_at_t, valuation_time=t)`` per snapshot (``t`` a numpy
    ``datetime64[ns]``) and stack the results."""
    valuation_ns(valuation_time, timed=True)
    tables = {k: as_table(v, k) for k, v in tables.items()}
    for name in timed(tables):
        check_columns(tables[name], name, {TIME: ("time", True, False)})
    splitters = {name: _Splitter(tables[name], name) for name in timed(tables)}
    state = [splitters[k] for k in snapshot_tables(list(splitters))]
    times = np.unique(np.concatenate([s.times() for s in state])) if state else \
        np.zeros(0, dtype=np.int64)
    if len(times) == 0:
        # nothing at any time: the empty result, with its normal schema and a time column
        # (untimed account-state tables apply to every snapshot: to none)
        empty = {k: (s.table.slice(0, 0)) for k, s in splitters.items()}
        at_t = {k: empty.get(k, v.slice(0, 0) if k in ACCOUNT_STATE and v is not None else v)
                for k, v in tables.items()}
        return _stack([run_one(at_t, np.datetime64(0, "ns"))], np.zeros(1, dtype=np.int64))
    results = []
    for t in times:
        at_t = {k: (splitters[k].at(t) if k in splitters else v) for k, v in tables.items()}
        try:
            results.append(run_one(at_t, np.datetime64(int(t), "ns")))
        except MarginError as err:
            raise err.at_time(t).with_traceback(err.__traceback__) from None
    return _stack(results, times)


def _with_time(table, t):
    col = pa.array(np.full(table.num_rows, t, dtype=np.int64)).cast(TIME_TYPE)
    return table.add_column(1, TIME, col)


def _stack(results, times):
    """One result of per-snapshot ``results``, each table given its snapshot's time."""
    out = _concat(results, lambda p, k: _with_time(p, times[k]))
    out.timings["snapshots"] = len(results)
    return out


def by_parameter_set(tables, model, valuation_time, run_one):
    """``run_one(tables, model_then)`` once per period in which a :attr:`dated
    <pmrisk.Model.dated>` model's parameters stay the same, on the snapshots of that period,
    and the results concatenated in time order (a model that is not dated: one call).

    Without a ``time`` column the one period is the valuation time's (now when None)."""
    names = timed(tables)
    if not model.dated:
        return run_one(tables, model)
    if not names:
        return run_one(tables, model.at(valuation_ns(valuation_time)))
    valuation_ns(valuation_time, timed=True)
    cuts = model.change_times()
    for name in names:
        check_columns(tables[name], name, {TIME: ("time", True, False)})
    period = {n: np.searchsorted(cuts, time_column(tables[n], n, TIME), side="right")
              for n in names}
    used = np.unique(np.concatenate([period[n] for n in snapshot_tables(names)]))
    if len(used) <= 1:
        p = int(used[0]) if len(used) else len(cuts)
        return run_one(tables, model.at(_period_time(cuts, p)))
    results = []
    for p in used.tolist():
        part = {k: (v.filter(pa.array(period[k] == p)) if k in period else v)
                for k, v in tables.items()}
        results.append(run_one(part, model.at(_period_time(cuts, p))))
    return _concat(results)


def _period_time(cuts, p):
    """A time inside period ``p`` (before the first change time: just before it)."""
    if p > 0:
        return int(cuts[p - 1])
    return int(cuts[0]) - 1 if len(cuts) else 0


def _concat(results, prepare=None):
    """The tables of ``results`` (each passed through ``prepare(table, k)`` for result ``k``
    first, when given) concatenated in order; timings summed."""
    from ..results import MarginResult
    out = MarginResult(accounts=None, units=None, positions=None)
    for name in ("accounts", "units", "positions", "risk_vectors", "unit_risk_vectors",
                 "position_risk_vectors"):
        parts = [getattr(r, name) for r in results]
        if parts and parts[0] is not None:
            setattr(out, name, pa.concat_tables(
                [prepare(p, k) if prepare else p for k, p in enumerate(parts)]))
    keys = results[0].timings.keys() if results else ()
    out.timings = {k: sum(r.timings.get(k, 0) for r in results) for k in keys}
    return out

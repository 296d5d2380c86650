"""Time snapshots (SPEC §1): every input may carry a ``time`` column; each distinct time is
a separate snapshot, valued at that time with the rows of that time.

A table without a ``time`` column applies to every snapshot (static instruments, a constant
balance sheet).  The snapshot times are the distinct times of ``positions`` when it has the
column, else those of the other timed tables.  Results carry ``time`` after ``account``.

This is one engine pass per snapshot: correct for any history and fine for thousands of
snapshots; vectorised multi-snapshot kernels for long backtests are separate work.
"""

import numpy as np
import pyarrow as pa

from ._arrow import NAT, as_table, has, raise_rows, time_column
from .errors import MarginError

TIME = "time"
TIME_TYPE = pa.timestamp("ns", tz="UTC")


def timed(tables):
    """Names of the tables that carry a time column."""
    return [name for name, t in tables.items() if has(t, TIME)]


def _iso(ns):
    return pa.scalar(int(ns), TIME_TYPE).as_py().isoformat().replace("+00:00", "Z")


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
    """Call ``run_one(tables_at_t, valuation_time=t)`` per snapshot and stack the results."""
    if valuation_time is not None:
        raise MarginError("arguments", "valuation_time", "None when the inputs carry a time "
                          "column (each snapshot is valued at its own time)")
    tables = {k: as_table(v, k) for k, v in tables.items()}
    splitters = {name: _Splitter(tables[name], name) for name in timed(tables)}
    if "positions" in splitters:
        times = splitters["positions"].times()
    else:
        times = np.unique(np.concatenate([s.times() for s in splitters.values()]))
    results = []
    for t in times:
        at_t = {k: (splitters[k].at(t) if k in splitters else v) for k, v in tables.items()}
        try:
            results.append(run_one(at_t, int(t)))
        except MarginError as err:
            err.time = _iso(t)
            err.args = (f"{err.args[0]} [snapshot time {err.time}]",)
            raise
    return _stack(results, times)


def _with_time(table, t):
    col = pa.array(np.full(table.num_rows, t, dtype=np.int64)).cast(TIME_TYPE)
    return table.add_column(1, TIME, col)


def _stack(results, times):
    from .results import MarginResult
    out = MarginResult(accounts=None, units=None, positions=None)
    for name in ("accounts", "units", "positions", "risk_vectors", "position_risk_vectors"):
        parts = [getattr(r, name) for r in results]
        if parts and parts[0] is not None:
            setattr(out, name, pa.concat_tables([_with_time(p, t)
                                                 for p, t in zip(parts, times)]))
    keys = results[0].timings.keys() if results else ()
    out.timings = {k: sum(r.timings[k] for r in results) for k in keys}
    out.timings["snapshots"] = len(results)
    return out

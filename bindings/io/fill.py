"""Forward-fill of market and index rows over snapshot times (``fill_market="forward"``).

A snapshot values the positions of time t with the market rows of time t, and a held symbol
without a row at t is an error that names the symbol and the time.  A caller whose marks are
sparser than its snapshots (options marked hourly, books snapshotted every minute; a feed
gap) can ask for the last known row instead: :func:`forward_fill` adds, for every snapshot
time t and

* every **market** symbol held or ordered at t (positions, open orders) that has no row at t,
* every **index** underlying that has no row at t,

a copy of the symbol's (underlying's) latest row at a time before t, re-stamped t.  Never
backward: a symbol with no earlier row gets nothing and the book's usual error names it and
the time.  Untimed market or index tables already apply to every snapshot and are left alone.
This happens before :func:`pmrisk.io.book.load_book` sees the tables, so the book's one rule
(rows match snapshots by exact time) stays the only rule it knows.

A streamed backtest fills batch by batch: ``carry`` holds the latest row per symbol of the
earlier batches (:func:`advance_carry`), so a batch fills from rows before its own time range
exactly as one call over the whole history would.
"""

import numpy as np
import pyarrow as pa

from pmrisk.kernel.asof import forward_rows
from pmrisk.kernel.instances import pair_keys

from .arrow import (NAT, check_columns, codes, duplicated, has, kernel_args, lookup, raise_rows,
                    str_column, time_column)
from ..errors import MarginError
from .schema import TIME, TIME_TYPE, snapshot_tables

FILL_MODES = ("none", "forward")
KEYS = {"market": "symbol", "index": "underlying"}      # the tables filled, by their key


def check_mode(fill_market):
    """``fill_market`` validated: ``"none"`` or ``"forward"``."""
    if fill_market is None or fill_market is False:
        return "none"
    if fill_market not in FILL_MODES:
        raise MarginError("arguments", "fill_market", f"one of {FILL_MODES}, got "
                          f"{fill_market!r}")
    return fill_market


def _times(table, name):
    """``time`` of every row as int64 ns UTC, checked (type, no nulls)."""
    check_columns(table, name, {TIME: ("time", True, False)})
    ns = time_column(table, name, TIME)
    if (ns == NAT).any():
        raise_rows(table, name, TIME, ns == NAT, "a time on every row (no nulls)")
    return ns


def snapshot_times(tables):
    """Sorted distinct snapshot times (ns) by the rule of :func:`pmrisk.io.schema.snapshot_tables`:
    the times of the timed account-state tables, else of every timed table; ``None`` when
    nothing is timed."""
    state = snapshot_tables([k for k, t in tables.items() if has(t, TIME)])
    if not state:
        return None
    return np.unique(np.concatenate([_times(tables[k], k) for k in state]))


def _stamped(table, ns):
    """``table`` with its time column replaced by ``ns`` as ``timestamp[ns, UTC]``."""
    i = table.column_names.index(TIME)
    return table.set_column(i, TIME, pa.array(ns, pa.int64()).cast(TIME_TYPE))


def _with_carry(table, name, carry):
    """(rows of ``carry`` then of ``table``, time normalised; their times in ns; number of
    carry rows)."""
    ns = _times(table, name)
    table = _stamped(table, ns)
    if carry is None or carry.num_rows == 0:
        return table, ns, 0
    carry = carry.select(table.column_names)
    both = pa.concat_tables([carry, table], promote_options="permissive")
    return both, np.concatenate([_times(carry, name), ns]), carry.num_rows


def _needed_symbols(tables, snap_ns, dictionary):
    """(symbol code, snapshot) pairs held or ordered, as codes into ``dictionary``."""
    keys = []
    n_snap = len(snap_ns)
    none = np.zeros(0, dtype=np.int64)
    for name in ("positions", "open_orders"):
        t = tables.get(name)
        if t is None or t.num_rows == 0:
            continue
        code = lookup(str_column(t, "symbol"), dictionary)
        if has(t, TIME):
            snap = np.searchsorted(snap_ns, _times(t, name))
            ok = code >= 0
            keys.append(pair_keys(*kernel_args(n_snap, code[ok], snap[ok], none, none, 0)))
        else:                                   # held at every snapshot
            code = np.unique(code[code >= 0])
            keys.append(pair_keys(*kernel_args(n_snap, np.repeat(code, n_snap),
                                               np.tile(np.arange(n_snap), len(code)), none,
                                               none, 0)))
    return np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)


def _fill_one(tables, name, snap_ns, carry):
    table = tables[name]
    key_col = KEYS[name]
    both, ns, n_carry = _with_carry(table, name, carry)
    check_columns(both, name, {key_col: ("str", True, False)})
    key, dictionary = codes(str_column(both, key_col))
    n_snap = len(snap_ns)
    dup = duplicated(key, np.searchsorted(np.unique(ns), ns))
    if dup.any():
        raise_rows(both, name, key_col, dup, f"one row per {key_col} and time")
    if name == "market":
        needed = _needed_symbols(tables, snap_ns, dictionary)
    else:                                       # every underlying at every snapshot
        n_key = len(dictionary)
        needed = np.arange(n_key * n_snap, dtype=np.int64)
    body = both.slice(n_carry)
    # never backward: a pair whose key has no earlier row gets no row
    src, snap = forward_rows(*kernel_args(key, ns, np.lexsort((ns, key)), snap_ns, needed))
    if not len(src):
        return body
    filled = _stamped(both.take(pa.array(src, pa.int64())), snap_ns[snap])
    return pa.concat_tables([body, filled])


def forward_fill(tables, carry=None):
    """The input tables with the market and index tables forward-filled to every snapshot
    time (see the module docstring); other tables are returned as they are.

    Parameters
    ----------
    tables : dict of str -> pyarrow.Table or None
        The inputs of one margin call by name (``positions``, ``market``, ``index``, ...).
    carry : dict, optional
        ``{"market": Table, "index": Table}``: rows from before these tables' time range to
        fill from (a streamed backtest's earlier batches, :func:`advance_carry`).

    Returns
    -------
    dict
        The same tables, ``market`` and ``index`` with filled rows appended (their ``time``
        column as ``timestamp[ns, UTC]``).

    Examples
    --------
    >>> from pmrisk.io.fill import forward_fill
    >>> import pyarrow as pa
    >>> t = pa.timestamp("ns", tz="UTC")
    >>> pos = pa.table({"time": pa.array([0, 60], t), "account": ["a", "a"],
    ...                 "symbol": ["X", "X"], "quantity": [1.0, 1.0]})
    >>> mkt = pa.table({"time": pa.array([0], t), "symbol": ["X"], "mark_price": [5.0]})
    >>> idx = pa.table({"time": pa.array([0], t), "underlying": ["X"], "index_price": [5.0]})
    >>> out = forward_fill({"positions": pos, "market": mkt, "index": idx})
    >>> out["market"]["time"].cast(pa.int64()).to_pylist(), out["index"].num_rows
    ([0, 60], 2)
    """
    snap_ns = snapshot_times(tables)
    if snap_ns is None:
        return dict(tables)
    carry = carry or {}
    out = dict(tables)
    for name in KEYS:
        if has(tables.get(name), TIME):
            out[name] = _fill_one(tables, name, snap_ns, carry.get(name))
    return out


def advance_carry(carry, tables):
    """The carry after ``tables`` (one batch of a stream): per market symbol and index
    underlying, its latest row among ``carry`` and the batch's rows."""
    carry = dict(carry or {})
    for name, key_col in KEYS.items():
        table = tables.get(name)
        if not has(table, TIME):
            continue
        both, ns, _ = _with_carry(table, name, carry.get(name))
        if both.num_rows == 0:
            carry[name] = both
            continue
        key, _ = codes(str_column(both, key_col))
        order = np.lexsort((ns, key))
        last = np.ones(len(order), dtype=bool)
        last[:-1] = key[order][1:] != key[order][:-1]
        carry[name] = both.take(pa.array(order[last], pa.int64()))
    return carry

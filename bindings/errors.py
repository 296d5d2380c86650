"""The one input-error type."""

import datetime as _dt


class MarginError(ValueError):
    """Bad input: names the table, the column, the offending rows' keys and what was expected.

    Attributes ``table``, ``column`` and ``rows`` (a list of key tuples, first few) are kept for
    programs, and ``time``: the offending snapshot's time as ISO-8601 text when the error
    concerns one snapshot of a history, else None.  ``str(err)`` is the message for people.

    ``time=`` is a snapshot time as int nanoseconds since the epoch (UTC) or a numpy
    ``datetime64``; the message then ends in ``[snapshot time ...]``.

    >>> from pmrisk.errors import MarginError
    >>> err = MarginError("positions", "quantity", "a finite number", rows=[("a1", "BTC-PERP")],
    ...                   keys=("account", "symbol"))
    >>> str(err)
    "positions.quantity: expected a finite number; rows (account, symbol): ('a1', 'BTC-PERP')"
    >>> err.at_time(1718611200 * 10**9).time
    '2024-06-17T08:00:00Z'
    >>> str(MarginError("index", "underlying", "a row for every underlying held",
    ...                 rows=[("ETH",)], keys=("underlying",), time=1718611200 * 10**9))
    "index.underlying: expected a row for every underlying held; rows (underlying): 'ETH' \
[snapshot time 2024-06-17T08:00:00Z]"
    """

    def __init__(self, table, column, expected, rows=None, keys=None, n_bad=None, hint=None,
                 time=None):
        self.table = table
        self.column = column
        self.rows = list(rows or [])
        self.expected, self.keys, self.n_bad, self.hint = expected, keys, n_bad, hint
        self.time = None if time is None else iso_ns(_ns(time))
        where = f"{table}.{column}" if column else table
        msg = f"{where}: expected {expected}"
        if self.rows:
            shown = ", ".join(repr(r[0] if len(r) == 1 else tuple(r)) for r in self.rows[:5])
            label = "(" + ", ".join(keys) + ")" if keys else "(row)"
            more = ""
            if n_bad is not None and n_bad > len(self.rows[:5]):
                more = f" and {n_bad - len(self.rows[:5])} more"
            msg += f"; rows {label}: {shown}{more}"
        if hint:
            msg += f". {hint}"
        if self.time is not None:
            msg += f" [snapshot time {self.time}]"
        super().__init__(msg)

    def at_time(self, time):
        """The same error about the snapshot at ``time`` (int ns or numpy ``datetime64``): for
        an error raised while one snapshot of a history was being valued."""
        return type(self)(self.table, self.column, self.expected, rows=self.rows,
                          keys=self.keys, n_bad=self.n_bad, hint=self.hint, time=time)

    def __reduce__(self):
        # picklable as it is (message, table, column, rows, snapshot time): an error raised in
        # a Dask worker reaches the caller as the same MarginError
        return _restore, (type(self), self.args, dict(self.__dict__))


def _ns(time):
    """A snapshot time as int ns since the epoch: int, numpy integer or datetime64."""
    if hasattr(time, "dtype") and time.dtype.kind == "M":
        return int(time.astype("datetime64[ns]").astype("int64"))
    return int(time)


def iso_ns(ns):
    """ns since the epoch -> '2024-06-17T08:00:00Z' (fractional seconds only when present).

    >>> from pmrisk.errors import iso_ns
    >>> iso_ns(1718611200 * 10**9 + 500_000_000)
    '2024-06-17T08:00:00.5Z'
    """
    sec, frac = divmod(int(ns), 10**9)
    text = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def _restore(cls, args, state):
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class MarginWarning(UserWarning):
    """Input that is valid but probably not what was meant (the result is computed as
    documented): e.g. a book without ``balances``, whose accounts then have no collateral.

    >>> from pmrisk.errors import warn_no_balances
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_no_balances({"positions": object(), "balances": None})
    >>> w[0].category.__name__
    'MarginWarning'
    """


def warn_no_balances(tables, stacklevel=3):
    """A :class:`MarginWarning` when a book has positions but no ``balances`` table: every
    account's equity is then its positions' value alone (collateral 0), so a book of
    positions bought with collateral shows as under-margined, often in ``liquidation``."""
    import warnings
    pos = tables.get("positions")
    if tables.get("balances") is None and pos is not None and getattr(pos, "num_rows", 1):
        warnings.warn("pmrisk: no balances table: every account's collateral is 0, so equity "
                      "is the positions' value alone (often status 'liquidation'). Pass "
                      "balances=... (account, asset, amount; rows of amount 0 to mean no "
                      "collateral)", MarginWarning, stacklevel=stacklevel + 1)

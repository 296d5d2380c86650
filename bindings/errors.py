"""The one input-error type."""


class MarginError(ValueError):
    """Bad input: names the table, the column, the offending rows' keys and what was expected.

    Attributes ``table``, ``column`` and ``rows`` (a list of key tuples, first few) are kept for
    programs; ``str(err)`` is the message for people.

    >>> from pmrisk.errors import MarginError
    >>> err = MarginError("positions", "quantity", "a finite number", rows=[("a1", "BTC-PERP")],
    ...                   keys=("account", "symbol"))
    >>> str(err)
    "positions.quantity: expected a finite number; rows (account, symbol): ('a1', 'BTC-PERP')"
    """

    def __init__(self, table, column, expected, rows=None, keys=None, n_bad=None, hint=None):
        self.table = table
        self.column = column
        self.rows = list(rows or [])
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
        super().__init__(msg)

    def __reduce__(self):
        # picklable as it is (message, table, column, rows, snapshot time): an error raised in
        # a Dask worker reaches the caller as the same MarginError
        return _restore, (type(self), self.args, dict(self.__dict__))


def _restore(cls, args, state):
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err

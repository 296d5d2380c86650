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

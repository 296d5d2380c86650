"""Threshold alerts of :class:`pmrisk.Monitor`: which levels an account's margin ratio crossed,
with optional hysteresis, as Arrow record batches.

The levels are the model's ``thresholds``: the warning levels, then ``margin_call``,
then ``liquidation``, strictly decreasing.  A ratio *at* a level is on its better side, as in
the ``status`` column (``status_of``: a ratio of exactly 1.10 is ``normal``).

Kinds:

* ``threshold_down``: the ratio fell below a warning level;
* ``margin_call``: it fell below the ``margin_call`` level;
* ``liquidation``: it fell below the ``liquidation`` level (the monitor adds the account's
  liquidation plan);
* ``threshold_up``: it rose back to or above any level, the margin-call and liquidation levels
  included (recovering out of a margin call is a ``threshold_up`` at the margin-call level).

One row per level crossed: a ratio falling from 1.2 to 0.7 in one update crosses every level
and gives five rows (``threshold_down`` at each warning level, then ``margin_call``, then
``liquidation``), most severe last; rising, the lowest level comes first.

Hysteresis ``h``: once an alert has fired at a level L, the next alert across L needs the ratio
beyond L by h (below ``L - h`` to fall, at or above ``L + h`` to rise), so a ratio hovering at a
level does not flap.  Until a level has alerted, it is crossed at the level itself.  The
``status`` columns of the result tables are never hysteretic: they always show the exact band.
"""

import numpy as np
import pyarrow as pa

from pmrisk.kernel.alerts import account_alerts

from ..errors import MarginError
from ..results import status_array, status_of
from ..io.schema import TIME_TYPE

THRESHOLD_DOWN, THRESHOLD_UP = "threshold_down", "threshold_up"
MARGIN_CALL, LIQUIDATION = "margin_call", "liquidation"
KINDS = (THRESHOLD_DOWN, THRESHOLD_UP, MARGIN_CALL, LIQUIDATION)
SCHEMA = pa.schema([
    ("account", pa.string()),
    ("time", TIME_TYPE),
    ("kind", pa.string()),
    ("threshold", pa.float64()),
    ("ratio_before", pa.float64()),
    ("ratio_after", pa.float64()),
    ("status_before", pa.string()),
    ("status_after", pa.string()),
])


class AlertRules:
    """The levels of a model's thresholds and the hysteresis; computes crossings over arrays
    of accounts (no per-account Python).

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from pmrisk.monitor.alerts import AlertRules
    >>> rules = AlertRules({"warning": [1.1, 1.05, 1.01], "margin_call": 1.0,
    ...                     "liquidation": 0.75})
    >>> below, armed = rules.initial(np.array([1.2]))
    >>> account = SimpleNamespace(equity=np.array([100.0]), maintenance_margin=np.array([100.0]),
    ...                           liquidation_cost=np.zeros(1))
    >>> fig, ratio = np.full((1, 1), np.nan), np.full(1, 1.2)
    >>> after, changed, rows, kinds, th = rules.step(np.array([0]), account, ("equity",), fig,
    ...                                              ratio, below, armed)
    >>> after.tolist(), changed.tolist(), [rules.kind[k] for k in kinds], th.tolist()
    ([1.0], [True], ['threshold_down', 'threshold_down', 'threshold_down'], [1.1, 1.05, 1.01])
    """

    def __init__(self, thresholds, hysteresis=0.0):
        h = hysteresis
        if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(h) and h >= 0):
            raise MarginError("arguments", "hysteresis", f"a finite number >= 0, got {h!r}")
        self.thresholds = thresholds
        warning = list(thresholds["warning"])
        self.levels = np.array(warning + [thresholds["margin_call"], thresholds["liquidation"]],
                               dtype=np.float64)
        self.down_kind = [THRESHOLD_DOWN] * len(warning) + [MARGIN_CALL, LIQUIDATION]
        self.kind = self.down_kind + [THRESHOLD_UP]
        self.h = float(h)
        # the status of a ratio below k levels, k = 0 .. n_levels (a ratio at a level is on
        # its better side): status_of's names, for batch's few rows
        self.status = status_of(np.array([np.inf, *self.levels[1:], -np.inf]), thresholds)

    @property
    def n_levels(self):
        return len(self.levels)

    def initial(self, ratio):
        """``(below, armed)`` of accounts seen for the first time with ``ratio`` (exact bands;
        nothing alerted yet).  NaN (an account that did not exist) is above every level."""
        below = np.asarray(ratio, dtype=np.float64)[:, None] < self.levels[None, :]
        return below, np.zeros_like(below)

    def step(self, acc, account, figures, fig, ratio, below, armed):
        """One update of accounts ``acc`` (int64 indices) from their figures ``account`` (an
        engine outcome's account figures): their margin ratios (written to ``ratio``), whether
        the ``figures`` (names of ``account``'s arrays) differ from the last reported ``fig``
        (rows of ``fig`` in that order, updated), and the levels crossed given the state
        ``below`` / ``armed`` (accounts x levels, updated; an account that just appeared starts
        from :meth:`initial` of NaN: above every level), in one pass
        (:func:`pmrisk.kernel.alerts.account_alerts`).  Returns ``(after, changed, rows,
        kinds, thresholds)``: ratios and changes per account of ``acc``; per alert its
        position in ``acc``, its kind (an index into :attr:`kind`) and level, ordered by
        account, then falling levels from the highest, rising levels from the lowest."""
        after, changed, rows, kinds, crossed = account_alerts(
            acc, account.equity, account.maintenance_margin, account.liquidation_cost,
            tuple(getattr(account, f) for f in figures), fig, ratio, below, armed,
            self.levels, self.h)
        return after, changed, rows, kinds, self.levels[crossed]

    def batch(self, names, time_ns, kinds, thresholds, before, after):
        """A :data:`SCHEMA` record batch, one row per alert (``before`` NaN: a new account).
        A tick's few alerts are built from Python lists (a third of the Arrow calls' fixed
        cost); many, from arrays."""
        new = np.isnan(before)
        if len(names) <= FEW:
            lv, status = self.levels.tolist(), self.status
            return pa.RecordBatch.from_arrays([
                pa.array(names, pa.string()),
                pa.array([time_ns] * len(names), TIME_TYPE),
                pa.array([self.kind[k] for k in kinds.tolist()], pa.string()),
                pa.array(thresholds, pa.float64()),
                pa.array(before, pa.float64(), mask=new if new.any() else None),
                pa.array(after, pa.float64()),
                pa.array([None if x != x else status[sum(x < v for v in lv)]
                          for x in before.tolist()], pa.string()),
                pa.array([status[sum(x < v for v in lv)] for x in after.tolist()],
                         pa.string()),
            ], schema=SCHEMA)
        th = self.thresholds
        status_b = status_array(np.where(new, np.inf, before), th)
        if new.any():
            status_b = pa.array(status_b.to_pylist(), pa.string(), mask=new)
        return pa.RecordBatch.from_arrays([
            pa.array(names, pa.string()),
            pa.array(np.full(len(names), time_ns, dtype=np.int64), TIME_TYPE),
            pa.array([self.kind[k] for k in kinds], pa.string()),
            pa.array(thresholds, pa.float64()),
            pa.array(before, pa.float64(), mask=new if new.any() else None),
            pa.array(after, pa.float64()),
            status_b,
            status_array(after, th),
        ], schema=SCHEMA)


FEW = 64    # AlertRules.batch: alerts built from Python lists up to this many


def empty_batch():
    return pa.RecordBatch.from_pylist([], schema=SCHEMA)

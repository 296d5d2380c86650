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

from ..errors import MarginError
from ..results import status_array
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
    >>> from pmrisk.monitor.alerts import AlertRules
    >>> rules = AlertRules({"warning": [1.1, 1.05, 1.01], "margin_call": 1.0,
    ...                     "liquidation": 0.75})
    >>> below, armed = rules.initial(np.array([1.2]))
    >>> rows = rules.step(below, armed, np.array([1.0]))
    >>> [rules.kind[k] for k in rows[1]], rows[2].tolist()
    (['threshold_down', 'threshold_down', 'threshold_down'], [1.1, 1.05, 1.01])
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

    @property
    def n_levels(self):
        return len(self.levels)

    def initial(self, ratio):
        """``(below, armed)`` of accounts seen for the first time with ``ratio`` (exact bands;
        nothing alerted yet).  NaN (an account that did not exist) is above every level."""
        below = np.asarray(ratio, dtype=np.float64)[:, None] < self.levels[None, :]
        return below, np.zeros_like(below)

    def step(self, below, armed, after):
        """Crossings of accounts whose ratio is now ``after``, given their state ``below`` /
        ``armed`` (n, levels; updated in place; an account that just appeared starts from
        :meth:`initial` of NaN: above every level).  Returns ``(row, kind, threshold)`` per
        alert, ordered by account, then falling levels from the highest, rising levels from
        the lowest."""
        lv = self.levels[None, :]
        r = np.asarray(after, dtype=np.float64)[:, None]
        # a fall needs r < L (below L, with or without slack), a rise r >= L: only accounts
        # whose exact band disagrees with ``below`` can cross a level
        off = np.zeros(len(r), dtype=bool)
        for k, level in enumerate(self.levels.tolist()):
            off |= (r[:, 0] < level) != below[:, k]
        cand = np.flatnonzero(off)
        b, a, rc = below[cand], armed[cand], r[cand]
        slack = self.h * a
        down = ~b & (rc < lv - slack)
        up = b & (rc >= lv + slack)
        below[cand] = b ^ (down | up)
        armed[cand] = a | down | up
        k = down.shape[1]
        acc_d, lev_d = np.nonzero(down)
        acc_u, lev_u = np.nonzero(up)
        acc = cand[np.concatenate([acc_d, acc_u])]
        # order within an account: falls by level index (highest level first), then rises
        # from the lowest level
        rank = np.concatenate([lev_d, 2 * k - lev_u])
        order = np.lexsort((rank, acc))
        kinds = np.concatenate([lev_d, np.full(len(lev_u), k)])[order]
        levels = np.concatenate([lev_d, lev_u])[order]
        return acc[order], kinds, self.levels[levels]

    def batch(self, names, time_ns, kinds, thresholds, before, after):
        """A :data:`SCHEMA` record batch, one row per alert (``before`` NaN: a new account)."""
        th = self.thresholds
        new = np.isnan(before)
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


def empty_batch():
    return pa.RecordBatch.from_pylist([], schema=SCHEMA)

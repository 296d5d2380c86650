"""Scenario sets as plain arrays: the standard grid, Deribit's extended table,
SPAN's 16 and custom tables.  Built with plain numpy, once per call, never in a hot loop;
the one jitted helper, :func:`whole_vectors`, tells the kernels' loops over a row how far
to run (to whole vectors of :data:`VECTOR` cells, which :func:`pad` makes room for).

A scenario set is a :class:`ScenarioSet` of equal-length 1-D arrays, one entry per scenario:

``price_shock``   relative move s of the underlying (every forward moves by 1 + s), > -1
``vol_code``      0 up, 1 same, 2 down, 3 explicit multiplicative ``vol_factor``
``vol_factor``    multiplier applied to the (floored) vol when ``vol_code == 3``
``pnl_scale``     factor applied to the revalued P&L (Deribit's extended-table fraction)
``loss_weight``   fraction of a loss that counts
``gain_weight``   fraction of a gain that counts
``gain_cap_usd``  cap on a counted gain, USD (Deribit ``max_offsetable_pnl``; inf = none)
``dampener_usd``  amount a loss is reduced by, USD, never below 0 (Deribit extended dampener)
``table``         0 standard, 1 extended, 2 extreme

Weighting one cell x of a risk vector in a unit whose settlement currency is worth ``px`` USD:
``x < 0 -> min(loss_weight*x + dampener_usd/px, 0)``,
``x >= 0 -> min(gain_weight*x, gain_cap_usd/px)`` (see :mod:`pmrisk.kernel.aggregate`).
"""

from typing import NamedTuple

import numpy as np

from ._config import njit

VOL_UP, VOL_SAME, VOL_DOWN, VOL_FACTOR = 0, 1, 2, 3
VOL_STATES = ("up", "same", "down", "factor")
TABLE_STANDARD, TABLE_EXTENDED, TABLE_EXTREME = 0, 1, 2
TABLES = ("standard", "extended", "extreme")

# Deribit's extended-table moves (support article "Portfolio Margin"), all with vol up.
EXTENDED_MOVES = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)


# scenario rows are padded to a multiple of this many cells (:func:`pad`): four float64, one
# AVX2 vector, so a loop over a row's cells runs in whole vectors (:func:`whole_vectors`)
# and has no scalar remainder (on the 35 cells of deribit_pme's set, the 3 cells of the
# remainder cost as much as 12 cells of the vector loop)
VECTOR = 4


@njit(inline="always")
def whole_vectors(n, width):
    """The ``n`` cells of a padded row (``width`` cells) rounded up to whole vectors of
    :data:`VECTOR`, at most ``width``: the cells a loop runs over to have no scalar
    remainder (the padding cells it meets are :func:`pad`'s inert ones).

    >>> from pmrisk.kernel.scenarios import whole_vectors
    >>> whole_vectors(35, 36), whole_vectors(36, 36), whole_vectors(5, 6)
    (36, 36, 6)
    """
    m = (n + VECTOR - 1) // VECTOR * VECTOR
    return m if m < width else width


class ScenarioSet(NamedTuple):
    price_shock: np.ndarray
    vol_code: np.ndarray
    vol_factor: np.ndarray
    pnl_scale: np.ndarray
    loss_weight: np.ndarray
    gain_weight: np.ndarray
    gain_cap_usd: np.ndarray
    dampener_usd: np.ndarray
    table: np.ndarray

    @property
    def size(self):
        """Number of scenarios (``len()`` of a NamedTuple is its field count)."""
        return len(self.price_shock)


def _make(shock, vol_code, *, vol_factor=None, pnl_scale=None, loss_weight=None,
          gain_weight=None, gain_cap_usd=None, dampener_usd=None, table=TABLE_STANDARD):
    shock = np.asarray(shock, dtype=np.float64)
    n = len(shock)

    def full(value, default):
        arr = np.full(n, default, dtype=np.float64) if value is None else value
        return np.ascontiguousarray(np.broadcast_to(np.asarray(arr, np.float64), (n,)))

    return ScenarioSet(
        price_shock=shock,
        vol_code=np.ascontiguousarray(np.broadcast_to(np.asarray(vol_code, np.int64), (n,))),
        vol_factor=full(vol_factor, 1.0),
        pnl_scale=full(pnl_scale, 1.0),
        loss_weight=full(loss_weight, 1.0),
        gain_weight=full(gain_weight, 1.0),
        gain_cap_usd=full(gain_cap_usd, np.inf),
        dampener_usd=full(dampener_usd, 0.0),
        table=np.ascontiguousarray(np.broadcast_to(np.asarray(table, np.int64), (n,))),
    )


def concat(*sets):
    """Concatenate scenario sets in order (row numbers follow)."""
    return ScenarioSet(*(np.concatenate(cols) for cols in zip(*sets)))


def grid(price_range, buckets, *, gain_weight=1.0, gain_cap_usd=np.inf):
    """The standard grid: ``s_k = price_range*k/buckets``, k = -buckets..buckets, each with vol
    up, same, down; cell index = 3*bucket + vol index, bucket 0 = most negative move.

    >>> from pmrisk.kernel.scenarios import grid
    >>> g = grid(0.16, 4)
    >>> g.size, g.price_shock[:3].tolist(), g.vol_code[:3].tolist()
    (27, [-0.16, -0.16, -0.16], [0, 1, 2])
    """
    k = np.arange(-buckets, buckets + 1, dtype=np.float64)
    shock = np.repeat(price_range * k / buckets, 3)
    vol = np.tile(np.array([VOL_UP, VOL_SAME, VOL_DOWN]), len(k))
    return _make(shock, vol, gain_weight=gain_weight, gain_cap_usd=gain_cap_usd)


def extended(price_range, table_factor, dampener_usd, moves=EXTENDED_MOVES):
    """Deribit's extended table: vol up, P&L scaled by ``f*(1+s)/(1+sign(s)*price_range)`` with
    ``f = table_factor*price_range/|s|``; gains count 0, losses are reduced by
    ``(max(|s|/price_range, 1) - 1)*dampener_usd/(1 + sign(s)*price_range)`` (USD).

    For an inverse future the scaled P&L equals the edge of the standard grid.
    """
    s = np.asarray(moves, dtype=np.float64)
    edge = 1.0 + np.sign(s) * price_range
    scale = table_factor * price_range / np.abs(s) * (1.0 + s) / edge
    damp = (np.maximum(np.abs(s) / price_range, 1.0) - 1.0) * dampener_usd / edge
    return _make(s, VOL_UP, pnl_scale=scale, gain_weight=0.0, dampener_usd=damp,
                 table=TABLE_EXTENDED)


def extremes(price_range, multiple, cover_fraction):
    """SPAN-style extremes: +/- ``multiple*price_range``, vol same, weights = cover fraction."""
    s = np.array([multiple * price_range, -multiple * price_range])
    return _make(s, VOL_SAME, loss_weight=cover_fraction, gain_weight=cover_fraction,
                 table=TABLE_EXTREME)


def span16(price_range, multiple, cover_fraction):
    """SPAN's 16 scenarios in SPAN's own order (risk-array row numbers refer to it):
    1/2 price 0 vol up/down; 3/4 +1/3 range; 5/6 -1/3; 7/8 +2/3; 9/10 -2/3; 11/12 +1;
    13/14 -1; 15/16 +/- extreme with vol unchanged and the cover fraction as weight.

    >>> from pmrisk.kernel.scenarios import span16
    >>> s = span16(0.1, 3.0, 0.33)
    >>> s.size, float(s.price_shock[12]), int(s.vol_code[13]), float(s.loss_weight[15])
    (16, -0.1, 2, 0.33)
    """
    fractions = (0.0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1.0, -1.0)
    shock = np.repeat(np.array(fractions) * price_range, 2)
    vol = np.tile(np.array([VOL_UP, VOL_DOWN]), len(fractions))
    return concat(_make(shock, vol), extremes(price_range, multiple, cover_fraction))


def custom(price_shock, vol_code, vol_factor, loss_weight, gain_weight, table):
    """A caller's scenario table (custom or historical scenarios), validated by the caller."""
    return _make(price_shock, vol_code, vol_factor=vol_factor, loss_weight=loss_weight,
                 gain_weight=gain_weight, table=table)


class PaddedScenarios(NamedTuple):
    """Scenario sets of several underlyings as ``(n_und, n_scen_max)`` arrays; ``n_scen[u]``
    says how many leading cells of row ``u`` are real."""
    n_scen: np.ndarray
    price_shock: np.ndarray
    log1p_shock: np.ndarray
    vol_code: np.ndarray
    vol_factor: np.ndarray
    pnl_scale: np.ndarray
    loss_weight: np.ndarray
    gain_weight: np.ndarray
    gain_cap_usd: np.ndarray
    dampener_usd: np.ndarray
    table: np.ndarray


def pad(sets):
    """Stack per-underlying scenario sets into :class:`PaddedScenarios` (padding is inert:
    zero shock, zero weights), ``width`` a multiple of :data:`VECTOR` cells.

    >>> from pmrisk.kernel.scenarios import grid, pad
    >>> p = pad([grid(0.16, 4)])
    >>> int(p.n_scen[0]), p.price_shock.shape
    (27, (1, 28))
    """
    n_und = len(sets)
    width = max([s.size for s in sets] + [1])
    width = -(-width // VECTOR) * VECTOR
    n_scen = np.array([s.size for s in sets], dtype=np.int64)
    defaults = dict(price_shock=0.0, vol_code=VOL_SAME, vol_factor=1.0, pnl_scale=0.0,
                    loss_weight=0.0, gain_weight=0.0, gain_cap_usd=0.0, dampener_usd=0.0,
                    table=TABLE_STANDARD)
    cols = {}
    for name, fill in defaults.items():
        dtype = np.int64 if name in ("vol_code", "table") else np.float64
        arr = np.full((n_und, width), fill, dtype=dtype)
        for u, s in enumerate(sets):
            arr[u, :s.size] = getattr(s, name)
        cols[name] = arr
    cols["log1p_shock"] = np.log1p(cols["price_shock"])
    return PaddedScenarios(n_scen=n_scen, **cols)


def okx_grid(price_range, buckets, *, gain_weight=1.0):
    """OKX's MR1 cells in the order of its ``mr1Scenarios``: vol down (``volShockDown``),
    same (``volSame``), up (``volShockUp``); in each, moves ``price_range*k/buckets`` for
    k = -buckets..buckets.

    >>> from pmrisk.kernel.scenarios import okx_grid
    >>> g = okx_grid(0.12, 3)
    >>> g.size, g.price_shock[:3].round(2).tolist(), g.vol_code[[0, 7, 14]].tolist()
    (21, [-0.12, -0.08, -0.04], [2, 1, 0])
    """
    k = np.arange(-buckets, buckets + 1, dtype=np.float64)
    shock = np.tile(price_range * k / buckets, 3)
    vol = np.repeat(np.array([VOL_DOWN, VOL_SAME, VOL_UP]), len(k))
    return _make(shock, vol, gain_weight=gain_weight)

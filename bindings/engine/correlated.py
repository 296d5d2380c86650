"""``cross_unit = "correlated"``: joint stress of an account's units on the correlation
ellipsoid.

Accounts are grouped by the set of underlyings they hold (the ellipsoid of a subset is the
projection of the full one, so each group gets directions of its own dimension: an account on
one underlying is stressed exactly on its grid).  Per group:

* joint scenarios: shell 0 (no move), shells ``c = k/B`` (k = 1..B, B the largest
  ``buckets_count`` of the group times the model's ``shell_steps``) along every direction of
  :func:`pmrisk.kernel.directions.joint_moves`, underlying u moving by
  ``c*price_range_u*z_u`` with vol up/same/down; with ``tail_mode = "joint"`` and the model's
  extremes on, the same directions at ``c = extreme_multiple_u`` with vol same and weights
  ``cover_fraction_u``.

Two ways to find the worst joint scenario, both exact in the result, both in one fused kernel
per account (:func:`pmrisk.kernel.joint.joint_stress`, parallel over accounts):

* ``joint_revaluation = "exact"``: every joint scenario (and the account's delta directions)
  is revalued exactly: each position at its unit's move, three vol states.  Cost: positions x
  3 x joint scenarios per account.
* ``joint_revaluation = "grid"`` (default): instruments are priced once per call on a uniform
  grid of moves per underlying (``joint_grid_nodes`` steps per side of the price range; the
  tails on the same step out to ``extreme_multiple`` ranges), whoever holds them, each
  distinct cell once (:func:`pmrisk.kernel.grid.grid_curves`: a tail node on a shell node is
  that node's vol-same cell); each unit's curve is the quantity-weighted sum of its
  positions' curves, and every joint scenario is *interpolated* (cubic, 4 nodes) from the
  unit curves.  The interpolation error of each unit
  is bounded from the curve's own 4th differences (``ERROR_FACTOR * max |D4|``); every
  scenario whose interpolated total is within twice the account's bound of the lowest is a
  candidate, and only the candidates are then revalued exactly.  The true worst is always a
  candidate, so the reported worst, binding scenario and vol states are those of exact
  revaluation; a curve with kinks (options expiring inside the horizon) widens the band and
  costs more exact scenarios, never accuracy.  Above ``MAX_CANDIDATES`` joint candidates
  every scenario is revalued exactly.

:class:`JointStress` keeps what does not move with the marks (groups, scenarios, grid cells)
so that a :class:`pmrisk.Monitor` tick reprices only the moved rows' curves, and settles the
accounts holding them incrementally (:meth:`JointStress.tick`,
:mod:`pmrisk.kernel.joint_tick`): each account keeps its lowest joint scenarios and a bound
of the others' interpolated totals, lowered by each tick's change of the moved curves; while
the bound stays above the account's band the kept scenarios and its delta directions decide
it exactly as the full kernel would, otherwise the full kernel runs.  No positions x
scenarios array exists.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from pmrisk.kernel.describe import lexicon, odd_moves, scenario_words
from pmrisk.kernel.directions import KINDS, joint_moves
from pmrisk.kernel.grid import grid_curves, grid_curves_serial
from pmrisk.kernel.groups import row_sets
from pmrisk.kernel.joint import (joint_stress, joint_stress_serial, joint_stress_set,
                                 pricing_constants, scan_setup, shell_intervals)
from pmrisk.kernel.joint_tick import (FULL, K_KEEP, RECORD_GAP, SAME, bind_cells, bind_slots,
                                      joint_record, joint_record_serial, joint_tick,
                                      joint_tick_serial, row_bounds)
from pmrisk.kernel.scenarios import (TABLE_EXTENDED, TABLE_EXTREME, VOL_DOWN, VOL_SAME,
                                     VOL_STATES, VOL_UP)

from ..io.arrow import kernel_args
from ..model.correlation import correlation_matrix

PARALLEL_MIN = 64      # fewer accounts than this: the kernel's serial twin
BIND_CELLS_MAX = 4_000_000  # a tick's table of binding-scenario cells (x3 vol states) at most
PRICE_PARALLEL_MIN = 8  # fewer revaluation rows than this: grid curves on the calling thread
RECORD_MAX = 64     # a tick records at most this many accounts that had a record (see _to_record)
DEFER_BYTES = 64 << 20     # grid curves above this: priced block by block (see run)
BLOCK_POSITIONS = 65_536   # a block's accounts hold about this many positions
SPAN_NUM, SPAN_DEN = 17, 16    # a block prices its rows' whole span up to 17/16 of its rows

ERROR_FACTOR = 1.0         # interpolation error bound = ERROR_FACTOR * max |4th difference|
MAX_CANDIDATES = 256       # more candidates than this: revalue every joint scenario exactly
_VOLS = np.array([VOL_UP, VOL_SAME, VOL_DOWN], dtype=np.int64)
_NO_ODD = np.zeros(0, dtype=np.int64)
_NO_ODD.setflags(write=False)


@dataclass
class JointScenarios:
    """Joint scenarios of one group of underlying rows (``rows``): per scenario j and group
    column a, ``shock[j, a]``, ``loss_weight``, ``gain_weight``; ``n_vol[j]`` vol cells (3 or 1);
    ``shell[j]`` (k of c = k/B, or -1 for a tail), ``direction[j]`` (row of ``z``) and
    ``kind[j]`` (:data:`pmrisk.kernel.directions.KINDS`)."""
    rows: tuple
    shock: np.ndarray
    loss_weight: np.ndarray
    gain_weight: np.ndarray
    n_vol: np.ndarray
    shell: np.ndarray
    direction: np.ndarray
    kind: np.ndarray
    buckets: int

    @property
    def size(self):
        return len(self.n_vol)


@lru_cache(maxsize=256)
def _moves(rho_bytes, d, n_directions):
    rho = np.frombuffer(rho_bytes).reshape(d, d)
    return joint_moves(rho, n_directions)


def per_unit_cells(scen, tail_mode):
    """Which scenario cells of ``scen`` stay per unit beside the joint stress (bool, as
    ``scen.table``): Deribit's extended table always, the extremes with ``tail_mode =
    "per_unit"``.  None of them (``standard``): no unit needs its weighted risk vector."""
    per_unit = scen.table == TABLE_EXTENDED
    if tail_mode == "per_unit":
        per_unit = per_unit | (scen.table == TABLE_EXTREME)
    return per_unit


def joint_tails(model):
    return bool(model["extreme_scenarios"]) and model["tail_mode"] == "joint"


def joint_scenarios(rows, rho, params, model):
    """Joint scenario set of the underlying rows ``rows`` with correlation submatrix ``rho``;
    ``params[r]`` is the model's parameter dict of row r."""
    d = len(rows)
    z, kind = _moves(np.ascontiguousarray(rho, dtype=np.float64).tobytes(), d,
                     int(model["n_directions"]))
    m = len(z)
    pr = np.array([params[r]["price_range"] for r in rows])
    buckets = max(int(params[r]["buckets_count"]) for r in rows) * int(model["shell_steps"])
    gw = np.array([params[r]["pnl_offset"] for r in rows])
    parts = [(np.zeros((1, d)), np.ones((1, d)), gw[None, :], 3, 0, np.array([-1]),
              np.array([-1]))]
    for k in range(1, buckets + 1):
        parts.append((k / buckets * pr * z, np.ones((m, d)), np.tile(gw, (m, 1)), 3, k,
                      np.arange(m), kind))
    if joint_tails(model):
        mult = np.array([params[r]["extreme_multiple"] for r in rows])
        cover = np.array([params[r]["cover_fraction"] for r in rows])
        parts.append((mult * pr * z, np.tile(cover, (m, 1)), np.tile(cover, (m, 1)), 1, -1,
                      np.arange(m), kind))
    return JointScenarios(
        rows=tuple(rows),
        shock=np.vstack([p[0] for p in parts]),
        loss_weight=np.vstack([p[1] for p in parts]),
        gain_weight=np.vstack([p[2] for p in parts]),
        n_vol=np.concatenate([np.full(len(p[0]), p[3], dtype=np.int64) for p in parts]),
        shell=np.concatenate([np.full(len(p[0]), p[4], dtype=np.int64) for p in parts]),
        direction=np.concatenate([p[5] for p in parts]).astype(np.int64),
        kind=np.concatenate([p[6] for p in parts]).astype(np.int64),
        buckets=buckets,
    )


# -- the grid: per underlying row, shell nodes x 3 vol states, then tail nodes (vol same) ----

@dataclass
class Grid:
    n_side: int                 # shell nodes per side: 2*n_side + 1 nodes over +-price_range
    tail_side: np.ndarray       # per row: tail nodes per side over +-extreme range (0: none)
    price_range: np.ndarray     # per row
    tail_range: np.ndarray      # per row: extreme_multiple * price_range
    n_scen: np.ndarray
    shock: np.ndarray           # (n_rows, W)
    vol_code: np.ndarray        # (n_rows, W)
    log1p: np.ndarray           # (n_rows, W): log1p(shock)
    src: np.ndarray             # (n_rows, W): the first cell of the same move bits and vol

    @property
    def tail0(self):
        return 3 * (2 * self.n_side + 1)


def make_grid(params, model):
    n = int(model["joint_grid_nodes"])
    pr = np.array([p["price_range"] for p in params])
    if joint_tails(model):
        tr = np.array([p["extreme_multiple"] for p in params]) * pr
        ts = np.where(tr > 0, np.maximum(np.ceil(n * tr / pr - 1e-9), 2), 0).astype(np.int64)
    else:
        tr = np.zeros(len(params))
        ts = np.zeros(len(params), dtype=np.int64)
    n_shell = 2 * n + 1
    width = 3 * n_shell + int((2 * ts + 1).max() if len(ts) else 0)
    shock = np.zeros((len(params), width))
    vol_code = np.full((len(params), width), VOL_SAME, dtype=np.int64)
    n_scen = np.zeros(len(params), dtype=np.int64)
    for r in range(len(params)):
        shock[r, :3 * n_shell] = np.repeat(pr[r] * np.arange(-n, n + 1) / n, 3)
        vol_code[r, :3 * n_shell] = np.tile(_VOLS, n_shell)
        n_scen[r] = 3 * n_shell
        if ts[r]:
            m = int(ts[r])
            shock[r, 3 * n_shell:3 * n_shell + 2 * m + 1] = tr[r] * np.arange(-m, m + 1) / m
            n_scen[r] += 2 * m + 1
    return Grid(n_side=n, tail_side=ts, price_range=pr, tail_range=tr, n_scen=n_scen,
                shock=shock, vol_code=vol_code, log1p=np.log1p(shock),
                src=_first_same_cell(shock, vol_code, n_scen))


def _first_same_cell(shock, vol_code, n_scen):
    """Per row and cell, the first cell of the row with the same move (bits) and vol state:
    a tail node on a shell node is that shell node's vol-same cell, priced once
    (:func:`pmrisk.kernel.grid.grid_curves`)."""
    src = np.tile(np.arange(shock.shape[1], dtype=np.int64), (shock.shape[0], 1))
    for r, ns in enumerate(n_scen.tolist()):
        key = np.stack([shock[r, :ns].view(np.int64), vol_code[r, :ns]], axis=1)
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        src[r, :ns] = first[inv.ravel()]
    return src


def group_scenarios(model, underlyings, rows, params):
    """``(CorrelationMatrix, JointScenarios)`` of the underlying rows ``rows`` (a tuple) of
    ``underlyings`` (names; ``params[r]``: the model's parameters of row r), built once per
    model, names and rows: both are pure functions of them (a Monitor's what-ifs and blocks
    build the same groups again and again).  A matrix the model's ``repair`` had to change
    is rebuilt on every call (its warning is each call's)."""
    memo = model.cached(("joint_groups",), dict)
    key = (tuple(underlyings), tuple(rows))
    hit = memo.get(key)
    if hit is None:
        corr = correlation_matrix([underlyings[r] for r in rows], model)
        hit = (corr, joint_scenarios(rows, corr.matrix, params, model))
        if not corr.changes:
            memo[key] = hit
    return hit


def model_grid(model, underlyings, params):
    """:func:`make_grid` of the underlyings ``underlyings`` (``params``: their parameters),
    built once per model and names."""
    return model.cached(("joint_grid", tuple(underlyings)), lambda: make_grid(params, model))


@dataclass
class JointResult:
    """Per account: ``worst_usd``, ``description`` of the binding joint scenario,
    ``n_scenarios`` (joint scenarios, the account's delta directions included) and ``n_exact``
    (how many were revalued exactly).  Per unit, in the binding scenario: ``unit_value``
    (weighted P&L, settlement currency), ``unit_shock`` and ``unit_vol`` (its move and vol
    state).  Per position: ``pos_loss``, its own loss there (settlement currency, times the
    unit's loss weight).  ``correlation``: one CorrelationMatrix per set of underlyings."""
    worst_usd: np.ndarray
    description: np.ndarray       # str objects, "none" before a joint loss
    n_scenarios: np.ndarray
    n_exact: np.ndarray
    unit_value: np.ndarray
    unit_shock: np.ndarray
    unit_vol: np.ndarray
    pos_loss: np.ndarray
    correlation: list


class JointStress:
    """The joint stress of one book's accounts, kept between calls (a Monitor's block reruns
    it on the accounts a tick touched, after :meth:`reprice` of the moved rows only).

    Built once from what does not move with the marks: which units hold risk (so each
    account's group of underlying rows, its correlation submatrix and joint scenarios, and
    their grid cells), the CSR indexes and quantities.  :meth:`reprice` prices revaluation
    rows' grid curves and exact-pricing constants; :meth:`run` runs the fused kernel
    (:func:`pmrisk.kernel.joint.joint_stress`) on a selection of accounts.
    """

    def __init__(self, model, units, pos_unit, pu_start, pu_order, ua_start, quantity, pos_row,
                 n_acc, n_rev_rows):
        self.model, self.units = model, units
        n_units, n_rows = len(units), len(units.underlyings)
        self.unit_row = np.ascontiguousarray(units.type_und_code[units.utype], dtype=np.int64)
        params = [model.underlying(u) for u in units.underlyings]
        self.params = params
        self.grid_mode = model["joint_revaluation"] == "grid"
        grid = model_grid(model, units.underlyings, params) if n_rows else None
        self.grid = grid
        self.q = np.ascontiguousarray(quantity, dtype=np.float64)
        self.pos_row = np.ascontiguousarray(pos_row, dtype=np.int64)
        self.pu_start, self.pu_order, self.ua_start = pu_start, pu_order, ua_start
        # a unit without risk is left out (it must not change the account's underlyings)
        active, masks, acc_set = row_sets(*kernel_args(
            pos_unit, self.q, units.account, self.unit_row, n_acc, n_rows))
        self.active = active
        sets = [tuple(r for r in range(n_rows) if (m[r >> 6] >> (r & 63)) & 1)
                for m in masks.tolist()]
        order = sorted((rows, k) for k, rows in enumerate(sets))
        gid = np.full(len(sets) + 1, -1, dtype=np.int64)     # the last: no set
        for g, (_, k) in enumerate(order):
            gid[k] = g
        self.acc_group = gid[acc_set]
        self.groups = [rows for rows, _ in order]
        memo = model.cached(("joint_group_arrays",), dict)
        key = (tuple(units.underlyings), tuple(self.groups))
        hit = memo.get(key)
        if hit is None:
            hit = self._group_arrays(model, units.underlyings, self.groups, params, grid)
            if not any(c.changes for c in hit[0]):     # a repaired matrix warns each call
                if len(memo) >= 256:
                    memo.clear()
                memo[key] = hit
        correlation, self.js, self.g_j0, self.grp, self.j_meta = hit
        self.correlation = list(correlation)
        d_max = self.grp[1].shape[1]
        # per revaluation row: instrument columns and their grid curves (filled by reprice)
        self.ins = [np.zeros(n_rev_rows, np.int64), np.zeros(n_rev_rows, np.int64),
                    np.zeros(n_rev_rows), np.zeros(n_rev_rows), np.zeros(n_rev_rows),
                    np.zeros(n_rev_rows, np.int64), np.zeros((n_rev_rows, 6))]
        width = grid.shock.shape[1] if grid is not None and self.grid_mode else 1
        self.width = width
        self._icurve = np.zeros((n_rev_rows, width))
        self.curve_of_row = np.arange(n_rev_rows, dtype=np.int64)
        self._deferred = None      # PnlArgs of every row while their curves wait (see run)
        # per curve row, for the tick's tol bound (pmrisk.kernel.joint_tick.row_bounds):
        # taken when a tick first needs them after the row is repriced
        self.row_t = np.zeros(n_rev_rows)
        self.row_s = np.zeros(n_rev_rows)
        self.row_ok = np.zeros(n_rev_rows, dtype=bool)
        if grid is not None:
            self._grid_rest = (grid.n_side, grid.tail_side,
                               np.ascontiguousarray(grid.tail_range), grid.vol_code,
                               ERROR_FACTOR)
        else:
            self._grid_rest = (1, np.zeros(1, np.int64), np.zeros(1),
                               np.zeros((1, 1), np.int64), ERROR_FACTOR)
        self.worst = np.zeros(n_acc)
        self.n_joint = np.zeros(n_acc, dtype=np.int64)
        self.n_exact = np.zeros(n_acc, dtype=np.int64)
        self.bind_kind = np.full(n_acc, -1, dtype=np.int64)
        self.bind_index = np.full(n_acc, -1, dtype=np.int64)
        self.bind_shock = np.zeros((n_acc, d_max))
        self.unit_value = np.zeros(n_units)
        self.unit_vol = np.full(n_units, VOL_SAME, dtype=np.int64)
        self.unit_shock = np.zeros(n_units)
        self.unit_lw = np.ones(n_units)
        self.pos_loss = np.zeros(len(self.q))
        self.description = np.full(n_acc, "none", dtype=object)
        # the incremental tick (tick): per account its kept joint scenarios and bound, per
        # unit its curve, bound and size there (pmrisk.kernel.joint_tick; allocated by the
        # first tick), the prices they were taken at and the rows repriced since
        self.keep = None
        self._words = None         # _describe's lexicon, built when first needed
        self._odd_ready = None
        self.incremental = True    # False: a one-shot stress (a what-if's): ticks run in full
        self.described = None      # accounts whose binding scenario run() puts in words: all
        self.pending = np.zeros(n_rev_rows, dtype=bool)
        self.px_prev = np.full(n_units, np.nan)
        self.n_fast = 0            # accounts a tick settled from their record
        self.n_full = 0            # accounts a tick sent to the full kernel
        self.last_full = np.zeros(0, dtype=np.int64)      # those of the last tick

    @property
    def icurve(self):
        """Every revaluation row's grid curve (``float64[n_rev_rows, W]``), priced now if
        :meth:`run` priced them block by block."""
        self._materialize()
        return self._icurve

    @property
    def grid_args(self):
        """The kernels' ``grid`` argument on every row's curve (:attr:`icurve`)."""
        self._materialize()
        return (self.grid_mode, self._icurve, self.curve_of_row) + self._grid_rest

    def _materialize(self):
        """The curves of every row in :attr:`icurve`, if they were left to :meth:`run`'s
        blocks (a tick, a what-if's copy or a run the blocks do not suit needs them all)."""
        args = self._deferred
        if args is None:
            return
        self._deferred = None
        self.curve_of_row[:] = np.arange(len(self.curve_of_row))
        self._price(args, None)

    @staticmethod
    def _group_arrays(model, underlyings, groups, params, grid):
        """What the kernels read of the accounts' groups ``groups`` (tuples of rows of
        ``underlyings``): ``(correlation matrices, joint scenario sets, g_j0, grp,
        j_meta)``, pure
        functions of the model, names and groups (:meth:`__init__` keeps them per model)."""
        n_rows = len(underlyings)
        correlation = []
        js_all = []
        d_max = max([len(r) for r in groups], default=1)
        G = len(groups)
        g_rows = np.zeros((G, d_max), dtype=np.int64)
        g_col = np.full((G, max(n_rows, 1)), -1, dtype=np.int64)
        g_rho = np.zeros((G, d_max, d_max))
        for g, rows in enumerate(groups):
            corr, js = group_scenarios(model, underlyings, rows, params)
            correlation.append(corr)
            js_all.append(js)
            d = len(rows)
            g_rows[g, :d] = rows
            g_col[g, list(rows)] = np.arange(d)
            g_rho[g, :d, :d] = corr.matrix
        sizes = [j.size for j in js_all]
        g_j0 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        nj = int(g_j0[-1])

        def pad(values, shape_tail=(), dtype=np.float64):
            out = np.zeros((nj, d_max) + shape_tail, dtype=dtype)
            for g, v in enumerate(values):
                out[g_j0[g]:g_j0[g + 1], :v.shape[1]] = v
            return out

        col = lambda key: np.array([p[key] for p in params], dtype=np.float64)  # noqa: E731
        tails = int(joint_tails(model))
        g_m = np.array([(j.size - 1) // (j.buckets + tails) for j in js_all], dtype=np.int64)
        grp = (
            np.array([len(r) for r in groups], dtype=np.int64), g_rows, g_col, g_j0,
            np.array([j.buckets for j in js_all], dtype=np.int64), g_rho,
            pad([j.shock for j in js_all]), pad([j.loss_weight for j in js_all]),
            pad([j.gain_weight for j in js_all]),
            np.concatenate([j.n_vol for j in js_all] + [np.zeros(0, np.int64)]).astype(
                np.int64),
            col("price_range"), col("pnl_offset"), col("max_offsetable_pnl"),
            col("extreme_multiple"), col("cover_fraction"), bool(joint_tails(model)),
            MAX_CANDIDATES,
            g_m, np.concatenate([[0], np.cumsum(g_m)]).astype(np.int64),
            *JointStress._direction_intervals(js_all, g_m, d_max, grid))
        grp += (shell_intervals(grp[0], g_rows, g_j0, grp[6], grp[9], grp[10],
                                grid.n_side if grid is not None else 1),)
        # per joint row, for the words of a binding scenario: shell, direction, kind
        j_meta = np.concatenate([np.stack([j.shell, j.direction, j.kind], axis=1)
                                 for j in js_all] + [np.zeros((0, 3), np.int64)]).astype(
                                     np.int64)
        return correlation, js_all, g_j0, grp, j_meta

    @staticmethod
    def _direction_intervals(js_all, g_m, d_max, grid):
        """Per group direction (rows ``g_dir0[g] + dr``) and column: the grid interval of its
        outer shell's move and of its tail's move (0 without a grid)."""
        n = int(g_m.sum())
        iv = np.zeros((n, d_max), dtype=np.int64)
        ivt = np.zeros((n, d_max), dtype=np.int64)
        if grid is None:
            return iv, ivt
        k = 0
        for js, m in zip(js_all, g_m.tolist()):
            outer = 1 + (js.buckets - 1) * m + np.arange(m)
            tail = 1 + js.buckets * m + np.arange(m)
            for a, r in enumerate(js.rows):
                ns = grid.n_side
                t = np.floor((js.shock[outer, a] / grid.price_range[r] + 1.0) * ns)
                iv[k:k + m, a] = np.clip(t, 0, 2 * ns - 1)
                ts = int(grid.tail_side[r])
                if ts and js.size > tail[-1]:
                    t = np.floor((js.shock[tail, a] / grid.tail_range[r] + 1.0) * ts)
                    ivt[k:k + m, a] = np.clip(t, 0, 2 * ts - 1)
            k += m
        return iv, ivt

    def reprice(self, args, rows=None):
        """Exact-pricing constants and grid curves of the revaluation rows ``rows`` (None:
        all) from ``args`` (:class:`pmrisk.engine.core.PnlArgs` of those rows)."""
        cols = args.instruments()
        sel = slice(None) if rows is None else rows
        if rows is not None and not len(rows):
            return
        if rows is not None:
            self.pending[rows] = True
        self.row_ok[sel] = False
        kind, settlement, cs, _, fwd, strike, is_call = cols[:7]
        for k, v in enumerate((kind, settlement, cs, fwd, strike, is_call)):
            self.ins[k][sel] = v
        if not (self.grid_mode and self.grid is not None):
            self.ins[6][sel] = pricing_constants(*cols[:13], args.rate)
        elif rows is None and len(kind) * self.width * 8 > DEFER_BYTES:
            # many rows (a long history): the constants now, the curves by run()'s blocks
            self.ins[6][:] = pricing_constants(*cols[:13], args.rate)
            self._deferred = args
        else:
            if rows is None:                # every row: nothing deferred stays
                self._deferred = None
                self.curve_of_row[:] = np.arange(len(self.curve_of_row))
            self._materialize()
            self._price(args, rows)

    def _price(self, args, rows):
        """Constants and grid curves of the rows ``rows`` (None: all) in one pass, each
        distinct grid cell priced once, into ``ins`` and :attr:`icurve`."""
        g = self.grid
        cols = args.instruments()
        at = np.arange(len(cols[0]), dtype=np.int64) if rows is None else \
            np.asarray(rows, dtype=np.int64)
        at, *cells = kernel_args(at, g.n_scen, g.shock, g.log1p, g.vol_code, g.src)
        (grid_curves if len(at) >= PRICE_PARALLEL_MIN else grid_curves_serial)(
            at, *cols, args.rate, *cells, self.ins[6], self._icurve)

    def run(self, unit_px, slope_usd, accounts=None):
        """The fused kernel on ``accounts`` (None: all) at the units' USD prices
        ``unit_px`` and slopes ``slope_usd``; fills this object's per-account, per-unit and
        per-position arrays there and the accounts' ``description``."""
        n_acc = len(self.worst)
        sel = np.arange(n_acc, dtype=np.int64) if accounts is None else \
            np.ascontiguousarray(accounts, dtype=np.int64)
        if not len(sel) or not self.groups:
            return
        acc = (self.ua_start, self.pu_start, self.pu_order, self.q, self.pos_row,
               self.unit_row, np.ascontiguousarray(unit_px, dtype=np.float64),
               np.ascontiguousarray(slope_usd, dtype=np.float64), self.acc_group)
        outs = (self.worst, self.n_joint, self.n_exact, self.bind_kind, self.bind_index,
                self.bind_shock, self.unit_value, self.unit_vol, self.unit_shock, self.unit_lw,
                self.pos_loss)
        blocks = self._blocks(sel) if self._deferred is not None else None
        if blocks is None:
            kernel = joint_stress if len(sel) >= PARALLEL_MIN else joint_stress_serial
            kernel(sel, acc, self.grp, tuple(self.ins), self.grid_args, outs)
        else:
            self._run_blocks(sel, blocks, acc, outs)
        # records no longer match these accounts (nor, after a reprice, any account)
        if self.keep is not None:
            self.keep[2][sel] = -1
            if self.pending.any():
                self.keep[2][:] = -1
        self._settle(unit_px, sel)
        self._describe(sel if self.described is None else np.intersect1d(sel, self.described))

    def _blocks(self, sel):
        """Runs of the accounts ``sel`` (increasing) holding about ``BLOCK_POSITIONS``
        positions each, with the revaluation rows their positions use, for :meth:`run` on
        deferred curves: ``[(lo, hi, rows)]``, or None where blocks would not pay (``sel``
        not increasing, or blocks sharing so many rows that each would price most of them).
        """
        if len(sel) > 1 and not (np.diff(sel) > 0).all():
            return None
        p0 = self.pu_start[self.ua_start[sel]]
        p1 = self.pu_start[self.ua_start[sel + 1]]
        held = np.cumsum(p1 - p0)
        cut = np.flatnonzero(np.diff(held // BLOCK_POSITIONS)) + 1
        bounds = np.concatenate([[0], cut, [len(sel)]]).tolist()
        n_rows = len(self.curve_of_row)
        mark = np.zeros(n_rows, dtype=bool)
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            mark[self.pos_row[self.pu_order[p0[lo]:p1[hi - 1]]]] = True
            rows = np.flatnonzero(mark)
            mark[rows] = False
            out.append((lo, hi, rows))
        if max(len(r) for _, _, r in out) * 2 > n_rows:
            return None
        return out

    def _run_blocks(self, sel, blocks, acc, outs):
        """:meth:`run` on deferred curves: per block of accounts (:meth:`_blocks`), its
        rows' curves priced into one buffer (each row at its slot, ``curve_of_row``), then
        the kernel on its accounts.  An account's figures do not depend on where its rows'
        curves are kept (the cells are each row's own, :func:`grid_curves`; the kernel reads
        them through ``curve_of_row``), so they are those of one run over every curve; a
        long history's curves (0.5 GB for 1,000 times x 200 instruments) are never all held,
        and their pages never all cleared by the system."""
        args = self._deferred
        cols = args.instruments()
        g = self.grid
        cells = kernel_args(g.n_scen, g.shock, g.log1p, g.vol_code, g.src)
        # a block whose rows are nearly one run (a history's times in order: a few of a
        # time's instruments held by none of the block's accounts) prices the whole run,
        # from views of the columns (no copies)
        takes = [slice(int(r[0]), int(r[-1]) + 1) if len(r) and
                 (int(r[-1]) + 1 - int(r[0])) * SPAN_DEN <= len(r) * SPAN_NUM else r
                 for _, _, r in blocks]
        size = max(t.stop - t.start if isinstance(t, slice) else len(t) for t in takes)
        curve = np.empty((size, self.width))
        const = np.empty((size, 6))
        grid = (self.grid_mode, curve, self.curve_of_row) + self._grid_rest
        ins = tuple(self.ins)
        # the scan's clusters and tables once, not per block (none if every block is serial)
        setup = scan_setup(len(sel), self.grp, grid) if any(
            hi - lo >= PARALLEL_MIN for lo, hi, _ in blocks) else None
        for (lo, hi, _), take in zip(blocks, takes):
            n = take.stop - take.start if isinstance(take, slice) else len(take)
            at = np.arange(n, dtype=np.int64)
            self.curve_of_row[take] = at
            (grid_curves if n >= PRICE_PARALLEL_MIN else grid_curves_serial)(
                *kernel_args(at, *(c[take] for c in cols)), args.rate, *cells, const, curve)
            part = sel[lo:hi]
            if len(part) >= PARALLEL_MIN:
                joint_stress_set(part, acc, self.grp, ins, grid, outs, setup)
            else:
                joint_stress_serial(part, acc, self.grp, ins, grid, outs)

    def tick(self, unit_px, slope_usd, accounts):
        """:meth:`run` on ``accounts`` after a tick (:meth:`reprice` of the moved rows, the
        units' new ``unit_px`` and ``slope_usd``), incrementally: each account is settled
        from what its last run kept (:func:`pmrisk.kernel.joint_tick.joint_tick`) or, where
        the kept bound cannot exclude the other joint scenarios, by the full kernel, then
        recorded again (:func:`pmrisk.kernel.joint_tick.joint_record`).  The figures are
        those of :meth:`run` to the bit; ``n_fast`` and ``n_full`` count the accounts of
        either kind."""
        sel = np.ascontiguousarray(accounts, dtype=np.int64)
        if not len(sel) or not self.groups:
            self._settle(unit_px, sel)
            return
        if not self.grid_mode:
            self.run(unit_px, slope_usd, sel)
            return
        px = np.ascontiguousarray(unit_px, dtype=np.float64)
        acc = (self.ua_start, self.pu_start, self.pu_order, self.q, self.pos_row,
               self.unit_row, px, np.ascontiguousarray(slope_usd, dtype=np.float64),
               self.acc_group)
        outs = (self.worst, self.n_joint, self.n_exact, self.bind_kind, self.bind_index,
                self.bind_shock, self.unit_value, self.unit_vol, self.unit_shock, self.unit_lw,
                self.pos_loss)
        if self.keep is None:
            n_acc, n_units = len(self.worst), len(self.unit_row)
            width = self.icurve.shape[1]
            self.keep = (np.zeros((n_acc, K_KEEP), dtype=np.int64), np.zeros((n_acc, K_KEEP)),
                         np.full(n_acc, -1, dtype=np.int64), np.full(n_acc, -np.inf),
                         np.zeros((n_units, width)), np.zeros(n_units), np.zeros(n_units),
                         np.zeros((n_units, width)), np.zeros(n_units),
                         np.full(n_acc, -np.inf), np.zeros(n_units, dtype=bool),
                         np.zeros(n_units), np.zeros((n_acc, K_KEEP)),
                         np.zeros((n_units, max(2 * self.grid.n_side, 1))))
        stale = np.flatnonzero(~self.row_ok)
        if len(stale):
            g = self.grid
            row_bounds(self.icurve, stale, 2 * g.n_side + 1, g.tail_side, g.tail0,
                       self.row_t, self.row_s)
            self.row_ok[stale] = True
        how = np.zeros(len(sel), dtype=np.int64)
        small = len(sel) < PARALLEL_MIN
        cells = self._bind_cells(sel, acc, small)
        (joint_tick_serial if small else joint_tick)(
            sel, acc, self.grp, tuple(self.ins), self.grid_args, outs, self.keep,
            (self.px_prev, self.pending, self.row_t, self.row_s) + cells, how)
        back = sel[how == FULL]
        if len(back):
            small = len(back) < PARALLEL_MIN
            (joint_stress_serial if small else joint_stress)(
                back, acc, self.grp, tuple(self.ins), self.grid_args, outs)
            rec = self._to_record(back)
            small = len(rec) < PARALLEL_MIN
            (joint_record_serial if small else joint_record)(
                rec, acc, self.grp, self.grid_args, self.keep, RECORD_GAP)
        self.n_full += len(back)
        self.n_fast += len(sel) - len(back)
        self.last_full = back
        self._settle(px, sel)
        self._describe(sel[how != SAME])      # the others' binding scenario is unchanged

    def _to_record(self, back):
        """Which of the accounts ``back``, just run by the full kernel, a tick records: those
        without a record (``keep_n`` -1: new, changed, never recorded) and at most
        ``RECORD_MAX`` of the others, those deferred before first; the rest are marked
        deferred (``keep_n`` -2) and take the full kernel until a tick records them.  A
        common move can send hundreds of accounts back on one tick; their records, each
        several full runs' worth, are spread over the ticks after."""
        if len(back) <= RECORD_MAX:
            return back
        n_keep = self.keep[2]
        k = n_keep[back]
        waiting = np.concatenate([back[k == -2], back[k >= 0]])
        n_keep[waiting[RECORD_MAX:]] = -2
        return np.concatenate([back[k == -1], waiting[:RECORD_MAX]])

    def _bind_cells(self, sel, acc, small):
        """The cells of the repriced rows at the accounts' binding joint scenarios, each
        priced once (:func:`pmrisk.kernel.joint_tick.bind_cells`), as the tick kernel takes
        them: ``(jslot, row_slot, need, cache)``; none for a small selection, or when the
        table would exceed ``BIND_CELLS_MAX`` cells."""
        n_js = self.grp[6].shape[0]
        jslot = np.full(n_js, -1, dtype=np.int64)
        rows = np.flatnonzero(self.pending)
        n_d = 0
        if not small and len(rows):
            jj_of = np.empty(min(len(sel), n_js), dtype=np.int64)
            n_d = bind_slots(sel, self.bind_kind, self.bind_index, jslot, jj_of)
        if not n_d or n_d * len(rows) > BIND_CELLS_MAX:
            jslot[:] = -1
            return (jslot, np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=bool),
                    np.zeros((0, 0, 3)))
        row_slot = np.full(len(self.pending), -1, dtype=np.int64)
        row_slot[rows] = np.arange(len(rows))
        need = np.zeros((n_d, len(rows)), dtype=bool)
        cache = np.empty((n_d, len(rows), 3))
        bind_cells(sel, acc, self.grp, tuple(self.ins), self.bind_kind, self.bind_index, jslot,
                   jj_of, rows, row_slot, need, cache)
        return jslot, row_slot, need, cache

    def _settle(self, unit_px, sel):
        """After a run on the accounts ``sel``: their units' prices and the repriced rows'
        curves become those the next tick moves from."""
        mask = np.zeros(len(self.worst), dtype=bool)
        mask[sel] = True
        on = mask[self.units.account] if len(self.px_prev) else np.zeros(0, dtype=bool)
        self.px_prev[on] = np.asarray(unit_px)[on]
        self.pending[:] = False

    def _describe(self, sel):
        """The binding joint scenario in words for the accounts ``sel`` (``none`` without a
        joint loss: a Monitor's account may have lost its loss), written by
        :func:`pmrisk.kernel.describe.scenario_words` in one pass over the accounts."""
        if not len(sel):
            return
        if self._words is None:
            # the lexicon, and read-only views (kernel_args) of the arrays fixed with this
            # object: one compiled signature whoever built it
            grp = self.grp
            self._words = (lexicon(self.units.underlyings, self.units.type_names, KINDS,
                                   VOL_STATES),
                           kernel_args(self.g_j0, grp[0], grp[1], grp[2], grp[4], grp[6],
                                       self.j_meta, self.ua_start),
                           kernel_args(self.unit_row, self.units.utype))
        (lex, lex_off, firsts), fixed, (unit_row, utype) = self._words
        # the kernels' outputs as they are (writeable, allocated by __init__)
        per_account = (*kernel_args(sel), self.worst, self.acc_group, self.bind_kind,
                       self.bind_index, self.bind_shock)
        if self._odd_ready is None:
            # odd_moves on no accounts, with the arguments' types: compiled (or loaded) now,
            # by pmrisk.warmup() too, not inside a tick the first time a move needs it
            self._odd_ready = odd_moves(*kernel_args(sel[:0]), *per_account[1:], fixed[1],
                                        fixed[5])
        rest = (*fixed, self.active, unit_row, self.unit_vol, utype, VOL_SAME)
        odd = _NO_ODD
        offsets, data, complete = scenario_words(*per_account, *rest, lex, lex_off,
                                                 *firsts[:4], len(lex_off) - 1, odd)
        if not complete:        # rare: moves worded by Python's own formatting
            odd = kernel_args(odd_moves(*per_account, fixed[1], fixed[5]))[0]
            lex, lex_off, firsts = lexicon(
                self.units.underlyings, self.units.type_names, KINDS, VOL_STATES,
                ["%+.2f%%" % v for v in odd.view(np.float64).tolist()])
            offsets, data, _ = scenario_words(*per_account, *rest, lex, lex_off, *firsts, odd)
        text = pa.LargeStringArray.from_buffers(len(sel), pa.py_buffer(offsets),
                                                pa.py_buffer(data))
        self.description[sel] = text.to_numpy(zero_copy_only=False)

    def result(self):
        return JointResult(worst_usd=self.worst, description=self.description,
                           n_scenarios=self.n_joint, n_exact=self.n_exact,
                           unit_value=self.unit_value, unit_shock=self.unit_shock,
                           unit_vol=self.unit_vol, pos_loss=self.pos_loss,
                           correlation=self.correlation)


def run_joint(model, units, pos_unit, pu_start, pu_order, ua_start, quantity, pos_row,
              pnl_args, unit_px, unit_delta_usd, n_acc):
    """Joint stress of every account (see the module docstring): a :class:`JointStress`
    built, priced and run over everything.  ``pos_row`` is each position's revaluation row
    in ``pnl_args``; ``quantity`` the positions' quantity with excluded positions zeroed;
    ``unit_delta_usd`` each unit's USD P&L per unit relative move of its underlying (the
    account's own delta directions come from it).  Returns the :class:`JointStress`."""
    st = JointStress(model, units, pos_unit, pu_start, pu_order, ua_start, quantity, pos_row,
                     n_acc, len(pnl_args.kind))
    st.reprice(pnl_args)
    st.run(unit_px, unit_delta_usd)
    return st

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

Two ways to find the worst joint scenario, both exact in the result:

* ``joint_revaluation = "exact"``: every position is revalued at every joint scenario's move
  of its underlying (:func:`pmrisk.kernel.instrument_pnl`), summed per unit and scanned by
  :func:`pmrisk.kernel.joint.joint_worst`.  Cost: positions x 3 x joint scenarios.
* ``joint_revaluation = "grid"`` (default): instruments are revalued once on a uniform grid of
  moves per underlying (``joint_grid_nodes`` steps per side of the price range; the tails on
  the same step out to ``extreme_multiple`` ranges), units sum them, and every joint scenario
  is *interpolated* (cubic, 4 nodes) from the unit curves.  The interpolation error of each unit
  is bounded from the curve's own 4th differences (``ERROR_FACTOR * max |D4|``); every joint
  scenario whose interpolated total is within twice the account's bound of the lowest is a
  candidate (:func:`pmrisk.kernel.joint.joint_candidates`), and only the candidates are then
  revalued exactly.  The true worst is always a candidate, so the reported worst, binding
  scenario and vol states are those of exact revaluation; a curve with kinks (options expiring
  inside the horizon) widens the band and costs more exact scenarios, never accuracy.

Everything is done in blocks of accounts and instruments so that no array holds more than
``BLOCK_CELLS`` numbers; no positions x scenarios matrix beyond one block.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pmrisk import kernel as K
from pmrisk.kernel.directions import KINDS, joint_moves
from pmrisk.kernel.joint import joint_candidates, joint_worst
from pmrisk.kernel.scenarios import VOL_DOWN, VOL_SAME, VOL_STATES, VOL_UP

from ..io.arrow import kernel_args
from ..model.correlation import correlation_matrix

BLOCK_CELLS = 1 << 21      # numbers per block (16 MB of float64)
ERROR_FACTOR = 1.0         # interpolation error bound = ERROR_FACTOR * max |4th difference|
MAX_CANDIDATES = 256       # more candidates than this: revalue every joint scenario exactly
_VOLS = np.array([VOL_UP, VOL_SAME, VOL_DOWN], dtype=np.int64)


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
                shock=shock, vol_code=vol_code)


def _lagrange(t, n_nodes):
    """Window start and cubic Lagrange weights of positions ``t`` (in node units) on
    ``n_nodes`` uniform nodes."""
    i0 = np.clip(np.floor(t).astype(np.int64) - 1, 0, n_nodes - 4)
    u = t - i0
    w = np.stack([-(u - 1) * (u - 2) * (u - 3) / 6, u * (u - 2) * (u - 3) / 2,
                  -u * (u - 1) * (u - 3) / 2, u * (u - 1) * (u - 2) / 6], axis=-1)
    return i0, w


def interpolation_cells(js, grid, n_rows):
    """(idx, stride, n_vol, wts) of every joint scenario's move on the grid."""
    n = js.size
    idx = np.zeros((n, n_rows), dtype=np.int64)
    stride = np.zeros((n, n_rows), dtype=np.int64)
    n_vol = np.ones((n, n_rows), dtype=np.int64)
    wts = np.zeros((n, n_rows, 4))
    tail = js.n_vol == 1
    for a, r in enumerate(js.rows):
        s = js.shock[:, a]
        ns = grid.n_side
        i0, w = _lagrange((s[~tail] / grid.price_range[r] + 1.0) * ns, 2 * ns + 1)
        idx[~tail, r] = 3 * i0
        stride[~tail, r] = 3
        n_vol[~tail, r] = 3
        wts[~tail, r] = w
        if tail.any():
            m = int(grid.tail_side[r])
            i0, w = _lagrange((s[tail] / grid.tail_range[r] + 1.0) * m, 2 * m + 1)
            idx[tail, r] = grid.tail0 + i0
            stride[tail, r] = 1
            wts[tail, r] = w
    return idx, stride, n_vol, wts


def interpolation_error(vectors, unit_row, grid):
    """Bound on the cubic interpolation error of each unit's curves (settlement currency):
    ``ERROR_FACTOR`` times the largest 4th difference along the grid (the smooth-function bound
    is 9/384 of it), floored at 1e-9 of the curve's size for rounding."""
    n_u = len(vectors)
    n_shell = 2 * grid.n_side + 1
    shells = vectors[:, :3 * n_shell].reshape(n_u, n_shell, 3)
    err = np.abs(np.diff(shells, n=4, axis=1)).max(axis=(1, 2)) if n_u else np.zeros(0)
    size = np.abs(vectors).max(axis=1) if n_u else np.zeros(0)
    for r in np.unique(unit_row):
        m = int(grid.tail_side[r])
        if m:
            on = unit_row == r
            t = vectors[on, grid.tail0:grid.tail0 + 2 * m + 1]
            err[on] = np.maximum(err[on], np.abs(np.diff(t, n=4, axis=1)).max(axis=1))
    return ERROR_FACTOR * err + 1e-9 * size


@dataclass
class JointResult:
    """Per account: ``worst_usd``, ``description`` of the binding joint scenario,
    ``n_scenarios`` (joint scenarios, the account's delta directions included) and ``n_exact``
    (how many were revalued exactly).  Per unit, in the binding scenario: ``unit_value``
    (weighted P&L, settlement currency), ``unit_shock`` and ``unit_vol`` (its move and vol
    state).  Per position: ``pos_loss``, its own loss there (settlement currency, times the
    unit's loss weight).  ``correlation``: one CorrelationMatrix per set of underlyings."""
    worst_usd: np.ndarray
    description: list
    n_scenarios: np.ndarray
    n_exact: np.ndarray
    unit_value: np.ndarray
    unit_shock: np.ndarray
    unit_vol: np.ndarray
    pos_loss: np.ndarray
    correlation: list


def run_joint(book, model, units, pos_unit, pos_row, quantity, pnl_args, unit_px,
              unit_delta_usd):
    """Joint stress of every account (see the module docstring).  ``pos_row`` is each
    position's revaluation row in ``pnl_args``; ``quantity`` the positions' quantity with
    excluded positions zeroed; ``unit_delta_usd`` each unit's USD P&L per unit relative move
    of its underlying (the account's own delta directions come from it)."""
    n_acc = len(book.accounts)
    n_units = len(units)
    n_rows = len(units.underlyings)
    unit_row = units.type_und_code[units.utype]
    params = [model.underlying(u) for u in units.underlyings]
    cap = np.array([p["max_offsetable_pnl"] for p in params])
    grid_mode = model["joint_revaluation"] == "grid"
    grid = make_grid(params, model) if grid_mode and n_rows else None
    res = _Acc(n_acc, n_units)
    instr_cols = pnl_args.instruments()
    rate = pnl_args.rate

    # positions with risk, by unit; a unit without any is left out of the joint stress (it
    # must not change the account's set of underlyings, hence its directions)
    held = quantity != 0.0
    pos_order = np.argsort(pos_unit, kind="stable")
    pos_order = pos_order[held[pos_order]]
    unit_pos_lo = np.searchsorted(pos_unit[pos_order], np.arange(n_units), side="left")
    unit_pos_hi = np.searchsorted(pos_unit[pos_order], np.arange(n_units), side="right")
    active = unit_pos_hi > unit_pos_lo
    acc_units = {}
    for u in np.flatnonzero(active):
        acc_units.setdefault(int(units.account[u]), []).append(int(u))
    groups = {}
    for a, us in acc_units.items():
        groups.setdefault(tuple(sorted({int(unit_row[u]) for u in us})), []).append(a)
    correlations = []

    for rows, accs in sorted(groups.items()):
        corr = correlation_matrix([units.underlyings[r] for r in rows], model)
        correlations.append(corr)
        js = joint_scenarios(rows, corr.matrix, params, model)
        accs = np.array(sorted(accs), dtype=np.int64)
        if grid_mode:
            interp = interpolation_cells(js, grid, n_rows)
            lw, gw = _row_weights(js, n_rows)
            per_chunk = max(1, BLOCK_CELLS // (grid.shock.shape[1] * len(rows)))
        else:
            per_chunk = max(1, BLOCK_CELLS // (3 * js.size * len(rows)))
        for c0 in range(0, len(accs), per_chunk):
            chunk = accs[c0:c0 + per_chunk]
            uids = np.concatenate([acc_units[a] for a in chunk]).astype(np.int64)
            sel = np.concatenate([pos_order[unit_pos_lo[u]:unit_pos_hi[u]] for u in uids])
            acc_start = np.concatenate(
                [[0], np.cumsum([len(acc_units[a]) for a in chunk])]).astype(np.int64)
            if grid_mode:
                count, cand = _grid_candidates(pos_row, quantity, pos_unit, sel, uids,
                                               acc_start, instr_cols, rate, grid, unit_row,
                                               unit_px, interp, lw, gw, cap)
            else:
                count = np.full(len(chunk), MAX_CANDIDATES + 1, dtype=np.int64)
                cand = np.zeros((len(chunk), 0), dtype=np.int64)
            g = _account_slopes(js, params, uids, acc_start, unit_row, unit_delta_usd)
            extra = delta_directions(js, corr.matrix, params, model, g)
            res.n_joint[chunk] = js.size + extra.size
            over = count > MAX_CANDIDATES                # revalue every joint scenario
            for part in (np.flatnonzero(~over), np.flatnonzero(over)):
                if not len(part):
                    continue
                if over[part[0]]:
                    # every scenario, as a view: no accounts x scenarios copy
                    cpart = np.broadcast_to(np.arange(js.size), (len(part), js.size))
                    npart = np.full(len(part), js.size)
                else:
                    npart = count[part]
                    cpart = _pad_candidates(cand[part], npart)
                _exact(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, part,
                       cpart, npart, extra, js, instr_cols, rate, unit_row, unit_px, cap,
                       res, units)
    pos_loss = _position_loss(pos_row, pos_unit, quantity, instr_cols, rate, res.unit_shock,
                              res.unit_vol, res.unit_lw)
    return JointResult(worst_usd=res.worst, description=res.description,
                       n_scenarios=res.n_joint, n_exact=res.n_exact, unit_value=res.unit_value,
                       unit_shock=res.unit_shock, unit_vol=res.unit_vol, pos_loss=pos_loss,
                       correlation=correlations)


@dataclass
class DeltaDirections:
    """The accounts' own delta directions (same layout for every account of a group):
    ``shock`` (n_acc, m, d); ``loss_weight``, ``gain_weight`` (m, d); ``n_vol``, ``shell`` and
    ``sign`` (m: 0 for -z*, 1 for +z*)."""
    shock: np.ndarray
    loss_weight: np.ndarray
    gain_weight: np.ndarray
    n_vol: np.ndarray
    shell: np.ndarray
    sign: np.ndarray

    @property
    def size(self):
        return len(self.n_vol)


def _account_slopes(js, params, uids, acc_start, unit_row, unit_delta_usd):
    """g[a, c]: account a's first-order USD P&L per full price range of group column c."""
    col = np.full(int(unit_row.max()) + 1 if len(unit_row) else 0, -1, dtype=np.int64)
    col[list(js.rows)] = np.arange(len(js.rows))
    acc = np.repeat(np.arange(len(acc_start) - 1), np.diff(acc_start))
    g = np.zeros((len(acc_start) - 1, len(js.rows)))
    np.add.at(g, (acc, col[unit_row[uids]]), unit_delta_usd[uids])
    pr = np.array([params[r]["price_range"] for r in js.rows])
    return g * pr


def delta_directions(js, rho, params, model, g):
    """Each account's own directions +-z*, z* = rho g / sqrt(g' rho g) with ``g`` its
    range-scaled USD slopes per underlying (rows of ``g``): for a linear book -z* is the point
    of the ellipsoid with the largest loss, so the joint worst is exact whatever the number of
    quasi-random directions; for options it is the first-order guess.  Shells (and tails) as
    for every direction.  Accounts with no slope, and groups of one underlying, get zero moves
    (a repeat of the no-move scenario) or none."""
    n, d = g.shape
    pr = np.array([params[r]["price_range"] for r in js.rows])
    gw = np.array([params[r]["pnl_offset"] for r in js.rows])
    if d < 2:
        e = np.zeros((0, d))
        return DeltaDirections(np.zeros((n, 0, d)), e, e, np.zeros(0, np.int64),
                               np.zeros(0, np.int64), np.zeros(0, np.int64))
    q = np.einsum("ad,de,ae->a", g, rho, g)
    ok = q > 0.0
    z1 = np.where(ok[:, None], (g @ rho) / np.sqrt(np.where(ok, q, 1.0))[:, None], 0.0)
    z = np.stack([-z1, z1], axis=1).clip(-1.0, 1.0)          # (n, 2, d)
    scale = [(k / js.buckets) * pr for k in range(1, js.buckets + 1)]
    shock = [z * c for c in scale]                              # each (n, 2, d)
    lw = [np.ones((2, d))] * js.buckets
    gws = [np.tile(gw, (2, 1))] * js.buckets
    nv = [3] * (2 * js.buckets)
    shell = np.repeat(np.arange(1, js.buckets + 1), 2).tolist()
    if joint_tails(model):
        mult = np.array([params[r]["extreme_multiple"] for r in js.rows])
        cover = np.array([params[r]["cover_fraction"] for r in js.rows])
        shock.append(z * (mult * pr))
        lw.append(np.tile(cover, (2, 1)))
        gws.append(np.tile(cover, (2, 1)))
        nv += [1, 1]
        shell += [-1, -1]
    return DeltaDirections(
        shock=np.concatenate(shock, axis=1), loss_weight=np.vstack(lw),
        gain_weight=np.vstack(gws), n_vol=np.array(nv, dtype=np.int64),
        shell=np.array(shell, dtype=np.int64),
        sign=np.tile([0, 1], len(shell) // 2).astype(np.int64))


def _pad_candidates(cand, count):
    """Candidate rows padded to the longest with each row's last candidate (a repeat never
    changes a minimum, and ties keep the earlier copy)."""
    k = max(int(count.max()), 1)
    out = cand[:, :k]
    last = out[np.arange(len(out)), np.maximum(count - 1, 0)]
    return np.where(np.arange(k)[None, :] >= count[:, None], last[:, None], out)


class _Acc:
    """Per-account and per-unit outputs, filled chunk by chunk."""

    def __init__(self, n_acc, n_units):
        self.worst = np.zeros(n_acc)
        self.n_joint = np.zeros(n_acc, dtype=np.int64)
        self.n_exact = np.zeros(n_acc, dtype=np.int64)
        self.description = ["none"] * n_acc
        self.unit_value = np.zeros(n_units)
        self.unit_vol = np.full(n_units, VOL_SAME, dtype=np.int64)
        self.unit_shock = np.zeros(n_units)
        self.unit_lw = np.ones(n_units)


def _row_weights(js, n_rows):
    lw = np.zeros((js.size, n_rows))
    gw = np.zeros((js.size, n_rows))
    lw[:, list(js.rows)] = js.loss_weight
    gw[:, list(js.rows)] = js.gain_weight
    return lw, gw


def _unit_vectors(pos_row, quantity, sel, local_unit, n_units, instr_cols, rate, scen_args,
                  width, und=None):
    """Risk vectors of ``n_units`` units over ``width`` cells: the positions ``sel`` (their
    unit's local index ``local_unit``), revalued in blocks of instruments.  With ``und`` given,
    every position is its own instrument with scenario row ``und[k]``."""
    vectors = np.zeros((n_units, width))
    if und is None:
        instrs, inv = np.unique(pos_row[sel], return_inverse=True)
        inv = inv.ravel()
    else:
        instrs, inv = pos_row[sel], np.arange(len(sel))
    step = max(1, BLOCK_CELLS // max(width, 1))
    for i0 in range(0, len(instrs), step):
        blk = instrs[i0:i0 + step]
        pick = np.flatnonzero((inv >= i0) & (inv < i0 + len(blk)))
        cols = [col[blk] for col in instr_cols[:13]]
        rows = instr_cols[13][blk] if und is None else und[i0:i0 + len(blk)]
        ipnl = K.instrument_pnl(*kernel_args(*cols, rows), rate, *scen_args)
        vectors += K.unit_risk_vectors(*kernel_args(
            local_unit[pick], inv[pick] - i0, quantity[sel[pick]], ipnl), n_units)
    return vectors


def _scen_args(n_scen, shock, vol_code):
    one = np.ones_like(shock)
    return kernel_args(n_scen, shock, np.log1p(shock), vol_code, one, one)


def _grid_candidates(pos_row, quantity, pos_unit, sel, uids, acc_start, instr_cols, rate, grid,
                     unit_row, unit_px, interp, lw, gw, cap):
    """Per account of the chunk, the joint scenarios that may bind (grid interpolation):
    ``(count, candidates)`` of :func:`pmrisk.kernel.joint.joint_candidates`."""
    local = np.full(len(pos_unit), -1, dtype=np.int64)
    local_of_unit = np.full(int(uids.max()) + 1 if len(uids) else 0, -1, dtype=np.int64)
    local_of_unit[uids] = np.arange(len(uids))
    local[sel] = local_of_unit[pos_unit[sel]]
    width = grid.shock.shape[1]
    vectors = _unit_vectors(pos_row, quantity, sel, local[sel], len(uids), instr_cols, rate,
                            _scen_args(grid.n_scen, grid.shock, grid.vol_code), width)
    rows_u = unit_row[uids]
    px_u = unit_px[uids]
    err = interpolation_error(vectors, rows_u, grid) * px_u
    tol = np.add.reduceat(err, acc_start[:-1]) if len(err) else np.zeros(0)
    idx, stride, n_vol, wts = interp
    count, cand = joint_candidates(*kernel_args(
        vectors, rows_u, px_u, acc_start, idx, stride, n_vol, wts), 4,
        *kernel_args(lw, gw, cap, grid.vol_code, tol), MAX_CANDIDATES)
    return count, cand


def _exact(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, part, cand, count,
           extra, js, instr_cols, rate, unit_row, unit_px, cap, res, units):
    """Revalue the candidate joint scenarios (``cand[i, :count[i]]``, padded) and the delta
    directions of the accounts ``chunk[part]`` exactly, and keep each account's worst.

    Every (account, underlying) pair gets a scenario row of its own whose cells are its
    account's scenarios (3 vol cells each), so accounts with different candidates share one
    call; accounts go in blocks that keep the cells under ``BLOCK_CELLS``."""
    d = len(js.rows)
    m = cand.shape[1] + extra.size
    per_block = max(1, BLOCK_CELLS // max(3 * m * d, 1))
    for b0 in range(0, len(part), per_block):
        blk = slice(b0, b0 + per_block)
        _exact_block(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, part[blk],
                     cand[blk], count[blk], extra, js, instr_cols, rate, unit_row, unit_px,
                     cap, res, units)


def _exact_block(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, part, cand, count,
                 extra, js, instr_cols, rate, unit_row, unit_px, cap, res, units):
    d = len(js.rows)
    n = len(part)
    k_sh = cand.shape[1]
    m = k_sh + extra.size
    # each account's scenarios: its candidates, then its delta directions
    shock = np.concatenate([js.shock[cand], extra.shock[part]], axis=1)        # (n, m, d)
    lw = np.concatenate([js.loss_weight[cand],
                         np.broadcast_to(extra.loss_weight, (n, extra.size, d))], axis=1)
    gw = np.concatenate([js.gain_weight[cand],
                         np.broadcast_to(extra.gain_weight, (n, extra.size, d))], axis=1)
    tail = np.concatenate([js.n_vol[cand], np.broadcast_to(extra.n_vol, (n, extra.size))],
                          axis=1) == 1                                          # (n, m)
    # scenario rows a*d + c, cells 3k .. 3k+2 (vol up, same, down; a tail uses "same")
    shock2 = np.repeat(shock.transpose(0, 2, 1).reshape(n * d, m), 3, axis=1)
    vol_code = np.tile(_VOLS, (n * d, m))
    idx = np.repeat(3 * np.arange(m)[None, :] + tail, d, axis=0).T.copy()      # (m, n*d)
    n_vol = np.where(np.repeat(tail, d, axis=0).T, 1, 3).astype(np.int64)
    lw2 = lw.transpose(1, 0, 2).reshape(m, n * d)
    gw2 = gw.transpose(1, 0, 2).reshape(m, n * d)
    cap2 = np.tile(cap[list(js.rows)], n)
    # the block's units (each account's are contiguous in uids) and their positions
    accs = chunk[part]
    per_acc = [np.arange(acc_start[i], acc_start[i + 1]) for i in part]
    loc = np.concatenate(per_acc)
    blk_units = uids[loc]
    acc_of_unit = np.repeat(np.arange(n), [len(p) for p in per_acc])
    col_of_row = np.full(len(units.underlyings), -1, dtype=np.int64)
    col_of_row[list(js.rows)] = np.arange(d)
    unit_col = col_of_row[unit_row[blk_units]]
    row_of_unit = acc_of_unit * d + unit_col
    local_of_unit = np.full(int(blk_units.max()) + 1, -1, dtype=np.int64)
    local_of_unit[blk_units] = np.arange(len(blk_units))
    in_blk = sel[np.isin(pos_unit[sel], blk_units)]
    lu = local_of_unit[pos_unit[in_blk]]
    vectors = _unit_vectors(pos_row, quantity, in_blk, lu, len(blk_units), instr_cols, rate,
                            _scen_args(np.full(n * d, 3 * m), shock2, vol_code), 3 * m,
                            und=row_of_unit[lu])
    a_start = np.concatenate([[0], np.cumsum([len(p) for p in per_acc])]).astype(np.int64)
    wts = np.zeros((m, n * d, 4))
    wts[:, :, 0] = 1.0
    worst, bind, uv, uvol = joint_worst(*kernel_args(
        vectors, row_of_unit, unit_px[blk_units], a_start, idx, np.zeros_like(idx), n_vol,
        wts), 1, *kernel_args(lw2, gw2, cap2, vol_code))
    res.worst[accs] = worst
    res.n_exact[accs] = count + extra.size
    k_u = bind[acc_of_unit]
    res.unit_value[blk_units] = uv
    res.unit_vol[blk_units] = vol_code[row_of_unit, idx[k_u, row_of_unit] + uvol]
    res.unit_shock[blk_units] = shock[acc_of_unit, k_u, unit_col]
    res.unit_lw[blk_units] = lw[acc_of_unit, k_u, unit_col]
    for i in np.flatnonzero(worst > 0.0):
        k = int(bind[i])
        if k < k_sh:
            j = int(cand[i, k])
            shell, where = js.shell[j], (f"{KINDS[js.kind[j]]} direction {js.direction[j]}"
                                         if js.direction[j] >= 0 else "")
        else:
            e = k - k_sh
            shell, where = extra.shell[e], f"delta direction {'-+'[extra.sign[e]]}"
        us = blk_units[a_start[i]:a_start[i + 1]]
        res.description[accs[i]] = _describe(shell, where, shock[i, k], js, us,
                                             res.unit_vol[us], units)


def _describe(shell, where, moves, js, unit_ids, unit_vols, units):
    """The binding joint scenario in words: shell (or extreme), direction, each underlying's
    move, and the vol state of each unit (units of one underlying may differ)."""
    head = f"joint shell {shell}/{js.buckets}" if shell >= 0 else "joint extreme"
    if where:
        head += " " + where
    vols = {}
    for u, v in zip(unit_ids, unit_vols):
        r = int(units.type_und_code[units.utype[u]])
        vols.setdefault(r, []).append((units.type_names[units.utype[u]], VOL_STATES[v]))
    parts = []
    for a, r in enumerate(js.rows):
        vs = vols.get(r, [])
        if len({v for _, v in vs}) <= 1:
            vol = f"vol {vs[0][1] if vs else 'same'}"
        else:
            vol = "(" + ", ".join(f"{nm} vol {v}" for nm, v in vs) + ")"
        parts.append(f"{units.underlyings[r]} {moves[a]:+.2%} {vol}")
    return f"{head}: " + ", ".join(parts)


def _position_loss(pos_row, pos_unit, quantity, instr_cols, rate, unit_shock, unit_vol,
                   unit_lw):
    """Each position's own loss (settlement currency, times its unit's loss weight) at its
    unit's move and vol state in the binding joint scenario: one revaluation cell per
    position (positive = loss)."""
    n = len(pos_unit)
    if n == 0:
        return np.zeros(0)
    cols = [col[pos_row] for col in instr_cols[:13]]
    shock = unit_shock[pos_unit][:, None]
    one = np.ones((n, 1))
    pnl = K.instrument_pnl(*kernel_args(*cols, np.arange(n, dtype=np.int64)), rate,
                           *kernel_args(np.ones(n, dtype=np.int64), shock, np.log1p(shock),
                                        unit_vol[pos_unit][:, None], one, one))
    return -unit_lw[pos_unit] * quantity * pnl[:, 0]

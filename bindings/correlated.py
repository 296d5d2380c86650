"""``cross_unit = "correlated"`` (SPEC §5): joint stress of an account's units on the correlation
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

from ._arrow import kernel_args
from .correlation import correlation_matrix

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
    instr_cols = tuple(pnl_args[:14])
    rate = pnl_args[14]

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
                cands = _grid_candidates(pos_row, quantity, pos_unit, sel, uids, acc_start,
                                         instr_cols, rate, grid, unit_row, unit_px, interp,
                                         lw, gw, cap)
            else:
                cands = [np.arange(js.size)] * len(chunk)
            extra = [_delta_scenarios(js, corr.matrix, params, model,
                                      unit_delta_usd[uids[acc_start[i]:acc_start[i + 1]]],
                                      unit_row[uids[acc_start[i]:acc_start[i + 1]]])
                     for i in range(len(chunk))]
            sets = [_candidate_set(js, c, e) for c, e in zip(cands, extra)]
            res.n_joint[chunk] = js.size + np.array([len(e.shell) for e in extra])
            _exact(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, sets, js,
                   instr_cols, rate, unit_row, unit_px, cap, res, units)
    pos_loss = _position_loss(pos_row, pos_unit, quantity, instr_cols, rate, res.unit_shock,
                              res.unit_vol, res.unit_lw)
    return JointResult(worst_usd=res.worst, description=res.description,
                       n_scenarios=res.n_joint, n_exact=res.n_exact, unit_value=res.unit_value,
                       unit_shock=res.unit_shock, unit_vol=res.unit_vol, pos_loss=pos_loss,
                       correlation=correlations)


@dataclass
class _Scenarios:
    """Joint scenarios of one account as plain rows (the shared candidates and the account's
    own delta directions): ``shock``, ``loss_weight``, ``gain_weight`` (m x d), ``n_vol``,
    ``shell``, ``kind`` (a name) and ``direction`` (m)."""
    shock: np.ndarray
    loss_weight: np.ndarray
    gain_weight: np.ndarray
    n_vol: np.ndarray
    shell: np.ndarray
    kind: list
    direction: np.ndarray


def _delta_scenarios(js, rho, params, model, delta_usd, rows_of_units):
    """The account's own directions: +-z* with z* = rho g / sqrt(g' rho g), g the account's USD
    delta per underlying times its price range.  For a linear book z* is the point of the
    ellipsoid with the largest loss, so the joint worst is exact whatever the number of
    quasi-random directions; for options it is the first-order guess.  Shells and tails as for
    every direction."""
    d = len(js.rows)
    col = {r: a for a, r in enumerate(js.rows)}
    pr = np.array([params[r]["price_range"] for r in js.rows])
    g = np.zeros(d)
    for dl, r in zip(delta_usd, rows_of_units):
        g[col[int(r)]] += dl
    g = g * pr
    q = float(g @ rho @ g)
    if not q > 0.0 or d < 2:
        return _Scenarios(np.zeros((0, d)), np.zeros((0, d)), np.zeros((0, d)),
                          np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), [],
                          np.zeros(0, dtype=np.int64))
    z1 = np.clip(rho @ g / np.sqrt(q), -1.0, 1.0)
    z = np.vstack([-z1, z1])                       # -z*: the loss of a linear book
    gw = np.array([params[r]["pnl_offset"] for r in js.rows])
    shock, lw, gws, nv, shell, direction = [], [], [], [], [], []
    for k in range(1, js.buckets + 1):
        for i in range(2):
            shock.append(k / js.buckets * pr * z[i])
            lw.append(np.ones(d))
            gws.append(gw)
            nv.append(3)
            shell.append(k)
            direction.append(i)
    if joint_tails(model):
        mult = np.array([params[r]["extreme_multiple"] for r in js.rows])
        cover = np.array([params[r]["cover_fraction"] for r in js.rows])
        for i in range(2):
            shock.append(mult * pr * z[i])
            lw.append(cover)
            gws.append(cover)
            nv.append(1)
            shell.append(-1)
            direction.append(i)
    return _Scenarios(np.array(shock), np.array(lw), np.array(gws),
                      np.array(nv, dtype=np.int64), np.array(shell, dtype=np.int64),
                      ["delta"] * len(shell), np.array(direction, dtype=np.int64))


def _candidate_set(js, cand, extra):
    c = np.asarray(cand, dtype=np.int64)
    return _Scenarios(
        shock=np.vstack([js.shock[c], extra.shock]),
        loss_weight=np.vstack([js.loss_weight[c], extra.loss_weight]),
        gain_weight=np.vstack([js.gain_weight[c], extra.gain_weight]),
        n_vol=np.concatenate([js.n_vol[c], extra.n_vol]),
        shell=np.concatenate([js.shell[c], extra.shell]),
        kind=[KINDS[k] if k >= 0 else "none" for k in js.kind[c]] + extra.kind,
        direction=np.concatenate([js.direction[c], extra.direction]))


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
    """Per account of the chunk, the joint scenarios that may bind (grid interpolation)."""
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
    n_joint = idx.shape[0]
    return [np.arange(n_joint) if c > MAX_CANDIDATES else cand[a, :c]
            for a, c in enumerate(count)]


def _exact(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, sets, js, instr_cols,
           rate, unit_row, unit_px, cap, res, units):
    """Revalue each account's candidate joint scenarios exactly and keep the worst.

    Every (account, underlying) pair gets a scenario row of its own whose cells are its
    account's candidates (3 vol cells each), so accounts with different candidates share one
    call; accounts are processed in sub-chunks that keep the cells under ``BLOCK_CELLS``."""
    d = len(js.rows)
    k_acc = np.array([max(len(s.n_vol), 1) for s in sets])
    start = 0
    while start < len(chunk):
        stop = start + 1
        cells = d * 3 * k_acc[start]
        while stop < len(chunk) and cells + d * 3 * k_acc[stop] <= BLOCK_CELLS:
            cells += d * 3 * k_acc[stop]
            stop += 1
        _exact_block(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, sets, js,
                     instr_cols, rate, unit_row, unit_px, cap, res, units, start, stop)
        start = stop


def _exact_block(pos_row, quantity, pos_unit, sel, uids, chunk, acc_start, sets, js,
                 instr_cols, rate, unit_row, unit_px, cap, res, units, start, stop):
    d = len(js.rows)
    col_of = {r: a for a, r in enumerate(js.rows)}
    accs = chunk[start:stop]
    kmax = max(max(len(s.n_vol), 1) for s in sets[start:stop])
    n_rows2 = len(accs) * d
    shock = np.zeros((n_rows2, 3 * kmax))
    vol_code = np.tile(np.tile(_VOLS, kmax), (n_rows2, 1))
    idx = np.zeros((kmax, n_rows2), dtype=np.int64)
    n_vol = np.ones((kmax, n_rows2), dtype=np.int64)
    lw = np.zeros((kmax, n_rows2))
    gw = np.zeros((kmax, n_rows2))
    cap2 = np.zeros(n_rows2)
    for i, sc in enumerate(sets[start:stop]):
        m = len(sc.n_vol)
        pad = np.concatenate([np.arange(m), np.full(kmax - m, max(m - 1, 0))]) \
            .astype(np.int64)
        tail = sc.n_vol[pad] == 1 if m else np.zeros(kmax, dtype=bool)
        for a, r in enumerate(js.rows):
            row = i * d + a
            if m:
                shock[row] = np.repeat(sc.shock[pad, a], 3)
                lw[:, row] = sc.loss_weight[pad, a]
                gw[:, row] = sc.gain_weight[pad, a]
            idx[:, row] = 3 * np.arange(kmax) + tail
            n_vol[:, row] = np.where(tail, 1, 3)
            cap2[row] = cap[r]
    u_lo, u_hi = acc_start[start], acc_start[stop]
    blk_units = uids[u_lo:u_hi]
    acc_of_unit = np.repeat(np.arange(len(accs)), np.diff(acc_start[start:stop + 1]))
    row_of_unit = acc_of_unit * d + np.array([col_of[int(r)] for r in unit_row[blk_units]],
                                             dtype=np.int64)
    local_of_unit = np.full(int(blk_units.max()) + 1, -1, dtype=np.int64)
    local_of_unit[blk_units] = np.arange(len(blk_units))
    in_blk = sel[np.isin(pos_unit[sel], blk_units)]
    lu = local_of_unit[pos_unit[in_blk]]
    vectors = _unit_vectors(pos_row, quantity, in_blk, lu, len(blk_units), instr_cols, rate,
                            _scen_args(np.full(n_rows2, 3 * kmax), shock, vol_code),
                            3 * kmax, und=row_of_unit[lu])
    a_start = (acc_start[start:stop + 1] - u_lo).astype(np.int64)
    wts = np.zeros((kmax, n_rows2, 4))
    wts[:, :, 0] = 1.0
    worst, bind, uv, uvol = joint_worst(*kernel_args(
        vectors, row_of_unit, unit_px[blk_units], a_start, idx, np.zeros_like(idx), n_vol,
        wts), 1, *kernel_args(lw, gw, cap2, vol_code))
    for i, a in enumerate(accs):
        sc = sets[start + i]
        k = int(bind[i])
        res.worst[a] = worst[i]
        res.n_exact[a] = len(sc.n_vol)
        for p in range(a_start[i], a_start[i + 1]):
            u = blk_units[p]
            row = row_of_unit[p]
            c = col_of[int(unit_row[u])]
            res.unit_value[u] = uv[p]
            res.unit_vol[u] = vol_code[row, idx[k, row] + uvol[p]]
            res.unit_shock[u] = sc.shock[k, c] if len(sc.n_vol) else 0.0
            res.unit_lw[u] = sc.loss_weight[k, c] if len(sc.n_vol) else 1.0
        if len(sc.n_vol):
            us = blk_units[a_start[i]:a_start[i + 1]]
            res.description[a] = _describe(sc, k, js, us, res.unit_vol[us], worst[i], units)


def _describe(sc, k, js, unit_ids, unit_vols, worst, units):
    """The binding joint scenario in words: shell (or extreme), direction, each underlying's
    move, and the vol state of each unit (units of one underlying may differ)."""
    if worst <= 0.0:
        return "none"
    shell = sc.shell[k]
    where = f"joint shell {shell}/{js.buckets}" if shell >= 0 else "joint extreme"
    if sc.direction[k] >= 0:
        where += (f" {sc.kind[k]} direction {'-+'[sc.direction[k]]}" if sc.kind[k] == "delta"
                  else f" {sc.kind[k]} direction {sc.direction[k]}")
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
            vol = "(" + ", ".join(f"{n} vol {v}" for n, v in vs) + ")"
        parts.append(f"{units.underlyings[r]} {sc.shock[k, a]:+.2%} {vol}")
    return f"{where}: " + ", ".join(parts)


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

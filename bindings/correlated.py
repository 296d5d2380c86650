"""``cross_unit = "correlated"`` (SPEC §5): joint stress of an account's units on the correlation
ellipsoid, revalued exactly at every joint scenario.

Accounts are grouped by the set of underlyings they hold (the ellipsoid of a subset is the
projection of the full one, so each group gets directions of its own dimension: an account on
one underlying is stressed exactly on its grid).  Per group:

* joint scenarios: shell 0 (no move), shells ``c = k/B`` (k = 1..B, B the largest
  ``buckets_count`` of the group) along every direction of
  :func:`pmrisk.kernel.directions.joint_moves`, underlying u moving by
  ``c*price_range_u*z_u`` with vol up/same/down; with ``tail_mode = "joint"`` and the model's
  extremes on, the same directions at ``c = extreme_multiple_u`` with vol same and weights
  ``cover_fraction_u``;
* each underlying's distinct moves become revaluation cells (3 vol states per shell move, 1
  per tail move); instruments are revalued there by :func:`pmrisk.kernel.instrument_pnl` and
  summed per unit by :func:`pmrisk.kernel.unit_risk_vectors`, in blocks so that no block holds
  more than ``BLOCK_CELLS`` numbers;
* :func:`pmrisk.kernel.joint.joint_worst` takes each unit's worst weighted vol cell per joint
  scenario, sums the account in USD and returns the worst joint loss and its scenario.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pmrisk import kernel as K
from pmrisk.kernel.directions import KINDS, joint_moves
from pmrisk.kernel.joint import joint_worst
from pmrisk.kernel.scenarios import VOL_DOWN, VOL_SAME, VOL_STATES, VOL_UP

from ._arrow import kernel_args
from .correlation import correlation_matrix

BLOCK_CELLS = 1 << 21      # numbers per revaluation block (16 MB of float64)


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


def joint_scenarios(rows, rho, params, model):
    """Joint scenario set of the underlying rows ``rows`` with correlation submatrix ``rho``;
    ``params[r]`` is the model's parameter dict of row r."""
    d = len(rows)
    z, kind = _moves(np.ascontiguousarray(rho, dtype=np.float64).tobytes(), d,
                     int(model["n_directions"]))
    m = len(z)
    pr = np.array([params[r]["price_range"] for r in rows])
    buckets = max(int(params[r]["buckets_count"]) for r in rows)
    gw = np.array([params[r]["pnl_offset"] for r in rows])
    parts = [(np.zeros((1, d)), np.ones((1, d)), gw[None, :], 3, 0, np.array([-1]),
              np.array([-1]))]
    for k in range(1, buckets + 1):
        parts.append((k / buckets * pr * z, np.ones((m, d)), np.tile(gw, (m, 1)), 3, k,
                      np.arange(m), kind))
    if model["extreme_scenarios"] and model["tail_mode"] == "joint":
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


def _cells(js, n_rows):
    """Revaluation cells per underlying row: each distinct shell move with vol up, same and
    down, each distinct tail move with vol same.  Returns padded ``(n_scen, shock, vol_code)``
    over all ``n_rows`` rows and ``cell0[j, row]``."""
    cell0 = np.zeros((js.size, n_rows), dtype=np.int64)
    per_row = []
    for a, r in enumerate(js.rows):
        shocks, codes = [], []
        for nv, states in ((3, (VOL_UP, VOL_SAME, VOL_DOWN)), (1, (VOL_SAME,))):
            sel = np.flatnonzero(js.n_vol == nv)
            if not len(sel):
                continue
            uniq, inv = np.unique(js.shock[sel, a], return_inverse=True)
            cell0[sel, r] = len(shocks) + nv * inv.ravel()
            shocks.extend(np.repeat(uniq, nv))
            codes.extend(np.tile(states, len(uniq)))
        per_row.append((r, np.array(shocks), np.array(codes, dtype=np.int64)))
    width = max(len(s) for _, s, _ in per_row)
    n_scen = np.zeros(n_rows, dtype=np.int64)
    shock = np.zeros((n_rows, width))
    vol_code = np.full((n_rows, width), VOL_SAME, dtype=np.int64)
    for r, s, c in per_row:
        n_scen[r] = len(s)
        shock[r, :len(s)] = s
        vol_code[r, :len(s)] = c
    return n_scen, shock, vol_code, cell0


@dataclass
class JointResult:
    """Per account (``worst_usd``, ``binding``, ``description``), per unit (``value``: weighted
    P&L in the binding scenario, settlement currency) and per position (``loss``: its own
    loss there, settlement currency, times the unit's loss weight)."""
    worst_usd: np.ndarray
    binding: np.ndarray
    description: list
    n_scenarios: np.ndarray
    unit_value: np.ndarray
    pos_loss: np.ndarray
    correlation: object


def run_joint(book, model, units, pos_unit, quantity, pnl_args, unit_px):
    """Joint stress of every account (see the module docstring).  ``quantity`` is the
    positions' quantity with excluded positions zeroed."""
    n_acc = len(book.accounts)
    n_units = len(units)
    n_rows = len(units.underlyings)
    unit_row = units.type_und_code[units.utype]
    corr = correlation_matrix(units.underlyings, model)
    params = [model.underlying(u) for u in units.underlyings]
    worst = np.zeros(n_acc)
    binding = np.full(n_acc, -1, dtype=np.int64)
    n_joint = np.zeros(n_acc, dtype=np.int64)
    unit_value = np.zeros(n_units)
    unit_vol = np.full(n_units, VOL_SAME, dtype=np.int64)
    unit_cell_shock = np.zeros(n_units)
    unit_lw = np.ones(n_units)
    description = ["none"] * n_acc

    # accounts grouped by the underlying rows they hold
    acc_rows = {}
    for u in range(n_units):
        acc_rows.setdefault(int(units.account[u]), set()).add(int(unit_row[u]))
    groups = {}
    for a, rows in acc_rows.items():
        groups.setdefault(tuple(sorted(rows)), []).append(a)

    unit_lo = np.searchsorted(units.account, np.arange(n_acc), side="left")
    unit_hi = np.searchsorted(units.account, np.arange(n_acc), side="right")
    (kind, settlement, cs, mark, fwd, strike, is_call, t_now, t_scen, sig_mark, up, same,
     down, und, rate) = pnl_args[:15]
    instr_cols = (kind, settlement, cs, mark, fwd, strike, is_call, t_now, t_scen, sig_mark,
                  up, same, down, und)
    order = np.argsort(pos_unit, kind="stable")        # positions by unit

    for rows, accs in groups.items():
        js = joint_scenarios(rows, corr.matrix[np.ix_(rows, rows)], params, model)
        n_scen, shock, vol_code, cell0 = _cells(js, n_rows)
        width = shock.shape[1]
        lw = np.zeros((js.size, n_rows))
        gw = np.zeros((js.size, n_rows))
        lw[:, list(rows)] = js.loss_weight
        gw[:, list(rows)] = js.gain_weight
        cap = np.array([p["max_offsetable_pnl"] for p in params])
        scen_args = kernel_args(n_scen, shock, np.log1p(shock), vol_code,
                                np.ones_like(shock), np.ones_like(shock))
        accs = np.array(sorted(accs), dtype=np.int64)
        per_chunk = max(1, BLOCK_CELLS // max(width * max(len(rows), 1), 1))
        for c0 in range(0, len(accs), per_chunk):
            chunk = accs[c0:c0 + per_chunk]
            uids = np.concatenate([np.arange(unit_lo[a], unit_hi[a]) for a in chunk])
            local = np.full(n_units, -1, dtype=np.int64)
            local[uids] = np.arange(len(uids))
            sel = order[np.isin(pos_unit[order], uids)]
            sel = sel[quantity[sel] != 0.0]
            vectors = np.zeros((len(uids), width))
            instrs, inv = np.unique(book.pos_instr[sel], return_inverse=True)
            inv = inv.ravel()
            step = max(1, BLOCK_CELLS // width)
            for i0 in range(0, len(instrs), step):
                blk = instrs[i0:i0 + step]
                pick = (inv >= i0) & (inv < i0 + len(blk))
                cols = kernel_args(*(col[blk] for col in instr_cols))
                ipnl = K.instrument_pnl(*cols[:13], cols[13], rate, *scen_args)
                vectors += K.unit_risk_vectors(
                    *kernel_args(local[pos_unit[sel[pick]]], inv[pick] - i0,
                                 quantity[sel[pick]], ipnl), len(uids))
            acc_start = np.concatenate([[0], np.cumsum(unit_hi[chunk] - unit_lo[chunk])])
            w, b, uv, uc = joint_worst(*kernel_args(
                vectors, unit_row[uids], unit_px[uids], acc_start.astype(np.int64), cell0,
                js.n_vol, lw, gw, cap, vol_code))
            worst[chunk] = w
            binding[chunk] = b
            n_joint[chunk] = js.size
            unit_value[uids] = uv
            r_u = unit_row[uids]
            unit_vol[uids] = vol_code[r_u, uc]
            unit_cell_shock[uids] = shock[r_u, uc]
            unit_lw[uids] = lw[b[np.repeat(np.arange(len(chunk)),
                                           unit_hi[chunk] - unit_lo[chunk])], r_u]
            for k, a in enumerate(chunk):
                description[a] = _describe(js, b[k], rows, units.underlyings,
                                           vol_code[r_u, uc], unit_row[uids], w[k], k,
                                           acc_start)
    pos_loss = _position_loss(book, pos_unit, quantity, instr_cols, rate, unit_cell_shock,
                              unit_vol, unit_lw)
    return JointResult(worst_usd=worst, binding=binding, description=description,
                       n_scenarios=n_joint, unit_value=unit_value, pos_loss=pos_loss,
                       correlation=corr)


def _describe(js, j, rows, names, cell_vol, cell_row, worst, k, acc_start):
    if worst <= 0.0:
        return "none"
    shell = js.shell[j]
    where = (f"joint shell {shell}/{js.buckets}" if shell >= 0 else "joint extreme") + \
        (f" {KINDS[js.kind[j]]} direction {js.direction[j]}" if js.direction[j] >= 0 else "")
    vols = {}
    for i in range(acc_start[k], acc_start[k + 1]):
        vols.setdefault(int(cell_row[i]), VOL_STATES[cell_vol[i]])
    moves = ", ".join(f"{names[r]} {js.shock[j, a]:+.2%} vol {vols.get(r, 'same')}"
                      for a, r in enumerate(rows))
    return f"{where}: {moves}"


def _position_loss(book, pos_unit, quantity, instr_cols, rate, unit_shock, unit_vol,
                   unit_lw):
    """Each position's own loss (settlement currency, times its unit's loss weight) at its
    unit's move and vol state in the binding joint scenario: one revaluation cell per
    position (positive = loss)."""
    n = len(pos_unit)
    if n == 0:
        return np.zeros(0)
    pi_ = book.pos_instr
    cols = [col[pi_] for col in instr_cols[:13]]
    shock = unit_shock[pos_unit][:, None]
    one = np.ones((n, 1))
    pnl = K.instrument_pnl(*kernel_args(*cols, np.arange(n, dtype=np.int64)), rate,
                           *kernel_args(np.ones(n, dtype=np.int64), shock, np.log1p(shock),
                                        unit_vol[pos_unit][:, None], one, one))
    return -unit_lw[pos_unit] * quantity * pnl[:, 0]

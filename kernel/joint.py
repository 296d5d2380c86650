"""Joint stress across units (``cross_unit = "correlated"``) as one fused kernel per account.

An account's *active* units (those holding a non-zero position) fix its group of underlying
rows and so its joint scenarios (see :mod:`pmrisk.engine.correlated`).  For one account
:func:`joint_stress` does, without leaving the kernel:

1. **curves**: each active unit's P&L curve on the grid of its underlying row, the
   quantity-weighted sum of its positions' instrument curves (``icurve``: one row per
   revaluation row, priced once per call on the grid by :func:`pmrisk.kernel.grid.grid_curves`
   with :func:`pmrisk.kernel.instrument_pnl`'s arithmetic, whoever holds it;
   :func:`unit_curve`); with ``grid`` off (``joint_revaluation = "exact"``) there are none;
2. **bound**: each curve's interpolation error, ``error_factor`` times its largest 4th
   difference along the grid plus 1e-9 of its size (:func:`curve_tol`), times the unit's USD
   price; the account's ``tol`` is their sum;
3. **interpolated totals**: every joint scenario of the group and the account's own delta
   directions (``+-z*``, ``z* = rho g / sqrt(g' rho g)``, ``g`` the range-scaled USD slopes),
   each unit at its move (cubic Lagrange on 4 nodes), its worst weighted vol state, summed
   in USD;
4. **candidates**: every scenario whose interpolated total is within ``2 tol`` of the lowest
   (the true worst is always one of them: its interpolated total is within ``tol`` of its
   exact one); more than ``max_candidates``, or ``grid`` off: every scenario;
5. **exact refinement**: each candidate revalued exactly (every position of every active
   unit at its unit's move, the three vol states at once), weighed, worst vol state per unit,
   summed in USD; the lowest total binds (ties within ``TIE_RTOL``: the first, joint
   scenarios in their order before the delta directions);
6. **outputs**: the account's worst (USD), binding scenario, each active unit's weighted
   value, vol state, move and loss weight there, and each of their positions' own loss there.

A unit's value in a scenario:  ``value(v) = sum_k w[k] * curve[i0 + k*stride + v]`` (k < 4,
interpolated) or the exact sum over its positions; it takes its worst weighted vol state
(ties, within ``TIE_RTOL``, prefer vol ``same``, then the first).  The exact cell is
:func:`pmrisk.kernel.instrument_pnl`'s arithmetic (per-row constants from
:func:`pricing_constants`), so the result is exact revaluation's to the bit.

The incremental tick (:mod:`pmrisk.kernel.joint_tick`) computes the same bits with the
same functions, each defined once here: :func:`active_units`, :func:`reset_account`,
:func:`unit_curve`, :func:`curve_tol`, :func:`delta_direction`, :func:`interp_add`,
:func:`interp_delta`, :func:`scenario`, :func:`exact_unit`, :func:`exact_total` and
:func:`cell` (and :func:`interval_bounds` for its record's bounds).

Accounts are independent: :func:`joint_stress` cuts the selection into ``CHUNKS`` runs of
accounts over the threads, :func:`joint_stress_serial` runs it on the calling thread; both
call :func:`joint_stress_rows`, so the result does not depend on the form or the thread count.
Scratch is allocated once per run of accounts; no positions x scenarios array exists.
"""

import math

import numpy as np
from numba import prange

from ._config import njit
from .aggregate import TIE_RTOL, weigh_cell
from .assemble import CHUNKS
from .black76 import MIN_STDDEV, SQRT2, option_constants, undiscounted_price
from .instruments import INVERSE, OPTION
from .normal import erfc
from .scenarios import VOL_DOWN, VOL_SAME, VOL_UP

# binding scenario kinds (``bind_kind``)
BIND_NONE, BIND_JOINT, BIND_DELTA = -1, 0, 1
CLUSTER = 8          # directions per cluster of the scan's bound (see direction_clusters)
CLUSTER_MIN = 64     # accounts from which a run builds clusters of CLUSTER directions
TABLE_MIN = 1024     # accounts from which a run tabulates the joint scenarios' weights


@njit(parallel=True)
def pricing_constants(kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
                      t_scen, sig_mark, sig_up, sig_same, sig_down, rate):
    """Per revaluation row, what :func:`pmrisk.kernel.instrument_pnl` hoists out of its
    scenario loop: ``float64[n, 6]`` = (base, ln(F/K), discount to the scenario's expiry,
    sigma*sqrt(T) of vol up, same, down).  ``base`` is ``c/mark`` (inverse futures),
    ``c*mark`` (linear futures and spot) or the option's value at the marks (coin for
    inverse ones).  Rows are independent: spread over the threads (a long history's
    200,000 rows, ~10 ms on one)."""
    n = kind.shape[0]
    out = np.zeros((n, 6))
    for i in prange(n):
        c = contract_size[i]
        inverse = settlement[i] == INVERSE
        if kind[i] != OPTION:
            out[i, 0] = c / mark[i] if inverse else c * mark[i]
            continue
        k = option_constants(forward[i], strike[i], t_now[i], sig_mark[i], t_scen[i], sig_up[i],
                             sig_same[i], sig_down[i], rate, is_call[i] == 1, inverse)
        for j in range(6):
            out[i, j] = k[j]
    return out


@njit(_nrt=False)
def cell(i, shock, l1p, v, kind, settlement, contract_size, forward, strike, is_call, const):
    """P&L per contract of revaluation row ``i`` at ``shock`` (``l1p = log1p(shock)``) with
    vol state ``v`` (0 up, 1 same, 2 down): :func:`instrument_pnl`'s cell (pnl scale 1)."""
    if kind[i] != OPTION:
        if settlement[i] == INVERSE:
            return const[i, 0] * (1.0 - 1.0 / (1.0 + shock)) * 1.0
        return const[i, 0] * shock * 1.0
    fs = forward[i] * (1.0 + shock)
    x = const[i, 2] * undiscounted_price(fs, strike[i], const[i, 1] + l1p, const[i, 3 + v],
                                         is_call[i] == 1)
    if settlement[i] == INVERSE:
        x /= fs
    return contract_size[i] * (x - const[i, 0]) * 1.0


@njit(inline="always")
def _better(y, c, best, best_c):
    """Is vol state ``c`` (0 up, 1 same, 2 down) with weighted value ``y`` preferred to the
    best so far?  Lower wins; within ``TIE_RTOL`` vol ``same`` wins, then the earlier state
    (NaN always wins)."""
    if y != y:
        return True
    if best != best:
        return False
    if y - best <= TIE_RTOL * max(abs(y), abs(best)) and \
            best - y <= TIE_RTOL * max(abs(y), abs(best)):
        return c == 1 and best_c != 1
    return y < best


@njit(_nrt=False)
def _lagrange(t, n_nodes, w):
    """Window start of position ``t`` (node units) on ``n_nodes`` uniform nodes; fills ``w``
    with the cubic Lagrange weights."""
    i0 = int(math.floor(t)) - 1
    if i0 > n_nodes - 4:
        i0 = n_nodes - 4
    if i0 < 0:
        i0 = 0
    u = t - i0
    w[0] = -(u - 1) * (u - 2) * (u - 3) / 6
    w[1] = u * (u - 2) * (u - 3) / 2
    w[2] = -u * (u - 1) * (u - 3) / 2
    w[3] = u * (u - 1) * (u - 2) / 6
    return i0


@njit(inline="always")
def _weigh(x, lw, gw, cap):
    """:func:`pmrisk.kernel.aggregate.weigh_cell` without branches (no dampener; ``lw``,
    ``cap`` >= 0; NaN not handled: the caller checks the curves)."""
    return lw * min(x, 0.0) + min(gw * max(x, 0.0), cap)


@njit(_nrt=False)
def _min3(cv, i0, w, lw, gw, cap):
    """Lowest weighted value of the three vol states interpolated at window ``i0`` (cells
    ``i0 .. i0+11``: 4 nodes x up, same, down).  Ties need no rule here: only the value
    counts for the candidate band."""
    x0 = w[0] * cv[i0] + w[1] * cv[i0 + 3] + w[2] * cv[i0 + 6] + w[3] * cv[i0 + 9]
    x1 = w[0] * cv[i0 + 1] + w[1] * cv[i0 + 4] + w[2] * cv[i0 + 7] + w[3] * cv[i0 + 10]
    x2 = w[0] * cv[i0 + 2] + w[1] * cv[i0 + 5] + w[2] * cv[i0 + 8] + w[3] * cv[i0 + 11]
    return min(_weigh(x0, lw, gw, cap), min(_weigh(x1, lw, gw, cap), _weigh(x2, lw, gw, cap)))


@njit(_nrt=False)
def interval_bounds(cv, c0, nv, n_nodes, lw, gw, cap, d2, out):
    """``out[i]``: a lower bound of the lowest weighted value over the vol states of the
    cubic interpolant of curve ``cv`` (nodes at ``c0 + nv*i + v``) on node interval
    ``[i, i+1]``, whichever 4-node window covers it: min of the two nodes minus 0.2 x the
    |2nd differences| at nodes i-1 .. i+2 (clipped to the grid).  ``d2``: scratch."""
    for i in range(n_nodes - 1):
        out[i] = np.inf
    for v in range(nv):
        for k in range(1, n_nodes - 1):
            d2[k] = abs(cv[c0 + nv * (k - 1) + v] - 2.0 * cv[c0 + nv * k + v]
                        + cv[c0 + nv * (k + 1) + v])
        d2[0] = d2[1]
        d2[n_nodes - 1] = d2[n_nodes - 2]
        for i in range(n_nodes - 1):
            a = cv[c0 + nv * i + v]
            b = cv[c0 + nv * (i + 1) + v]
            lo = a if a < b else b
            slack = d2[max(i - 1, 0)] + d2[i] + d2[i + 1] + d2[min(i + 2, n_nodes - 1)]
            y = _weigh(lo - 0.2 * slack, lw, gw, cap)
            if y < out[i]:
                out[i] = y


@njit(_nrt=False, inline="always")
def interp_add(cv, u, c, unit_row, unit_px, cap_usd, ja, jb, j0, js_shock, js_lw, js_gw,
               js_nvol, pr, tail_range, tail_side, n_side, w, tot):
    """Add unit ``u``'s interpolated weighted value (USD) in the group's joint scenarios
    ``ja:jb`` to ``tot[j]``."""
    r = unit_row[u]
    px = unit_px[u]
    cap = cap_usd[r] / px
    for j in range(ja, jb):
        jj = j0 + j
        sh = js_shock[jj, c]
        if js_nvol[jj] == 3:
            i0 = _lagrange((sh / pr[r] + 1.0) * n_side, 2 * n_side + 1, w)
            y = _min3(cv, 3 * i0, w, js_lw[jj, c], js_gw[jj, c], cap)
        else:
            i0 = 3 * (2 * n_side + 1) + _lagrange((sh / tail_range[r] + 1.0) * tail_side[r],
                                                  2 * tail_side[r] + 1, w)
            y = _weigh(w[0] * cv[i0] + w[1] * cv[i0 + 1] + w[2] * cv[i0 + 2]
                       + w[3] * cv[i0 + 3], js_lw[jj, c], js_gw[jj, c], cap)
        tot[j] += y * px


@njit(_nrt=False, inline="always")
def interp_delta(cv, u, c, unit_row, unit_px, cap_usd, n_js, n_all, B, zpos, pr, gw_row,
                 mult, cover, tail_range, tail_side, n_side, w, tot):
    """Add unit ``u``'s interpolated weighted value (USD) in the account's delta directions
    (scenarios ``n_js:n_all``, see :func:`scenario`) to ``tot``."""
    for e in range(n_all - n_js):
        tot[n_js + e] += interp_direction(cv, u, c, unit_row, unit_px, cap_usd, e, B, zpos, pr,
                                          gw_row, mult, cover, tail_range, tail_side, n_side,
                                          w)


@njit(_nrt=False, inline="always")
def interp_direction(cv, u, c, unit_row, unit_px, cap_usd, e, B, zpos, pr, gw_row, mult,
                     cover, tail_range, tail_side, n_side, w):
    """Unit ``u``'s interpolated weighted value (USD) in the account's delta direction
    ``e`` (scenario ``n_js + e``, see :func:`scenario`): what :func:`interp_delta` adds."""
    r = unit_row[u]
    px = unit_px[u]
    cap = cap_usd[r] / px
    sign = -1.0 if e % 2 == 0 else 1.0
    if e < 2 * B:
        sh = (((e // 2 + 1) / B) * pr[r]) * (sign * zpos[c])
        i0 = _lagrange((sh / pr[r] + 1.0) * n_side, 2 * n_side + 1, w)
        y = _min3(cv, 3 * i0, w, 1.0, gw_row[r], cap)
    else:
        sh = (sign * zpos[c]) * (mult[r] * pr[r])
        i0 = 3 * (2 * n_side + 1) + _lagrange((sh / tail_range[r] + 1.0) * tail_side[r],
                                              2 * tail_side[r] + 1, w)
        y = _weigh(w[0] * cv[i0] + w[1] * cv[i0 + 1] + w[2] * cv[i0 + 2]
                   + w[3] * cv[i0 + 3], cover[r], cover[r], cap)
    return y * px


@njit(_nrt=False)
def exact_unit(u, pu_start, pu_order, q, pos_row, shock, nv, lw, gw, cap, kind, settlement,
               contract_size, forward, strike, is_call, const):
    """(weighted value, vol state) of unit ``u`` revalued exactly at ``shock``: ``nv = 3``
    the vol states up, same, down, ``nv = 1`` vol same only (tails)."""
    l1p = math.log1p(shock)
    x0 = 0.0
    x1 = 0.0
    x2 = 0.0
    for k in range(pu_start[u], pu_start[u + 1]):
        p = pu_order[k]
        qp = q[p]
        if qp == 0.0:
            continue
        i = pos_row[p]
        if nv == 1:
            x1 += qp * cell(i, shock, l1p, 1, kind, settlement, contract_size, forward,
                            strike, is_call, const)
        elif kind[i] != OPTION:
            y = qp * cell(i, shock, l1p, 0, kind, settlement, contract_size, forward, strike,
                          is_call, const)
            x0 += y
            x1 += y
            x2 += y
        else:
            x0 += qp * cell(i, shock, l1p, 0, kind, settlement, contract_size, forward,
                            strike, is_call, const)
            x1 += qp * cell(i, shock, l1p, 1, kind, settlement, contract_size, forward,
                            strike, is_call, const)
            x2 += qp * cell(i, shock, l1p, 2, kind, settlement, contract_size, forward,
                            strike, is_call, const)
    return weighted_best(x0, x1, x2, nv, lw, gw, cap)


@njit(_nrt=False)
def weighted_best(x0, x1, x2, nv, lw, gw, cap):
    """(weighted value, vol state) of a unit whose P&L in the vol states up, same, down is
    ``x0, x1, x2`` (``nv = 1``: vol same only): the lowest weighted value, ties as
    :func:`_better`."""
    if nv == 1:
        return weigh_cell(x1, lw, gw, cap, 0.0), 1
    best = weigh_cell(x0, lw, gw, cap, 0.0)
    best_v = 0
    y = weigh_cell(x1, lw, gw, cap, 0.0)
    if _better(y, 1, best, best_v):
        best = y
        best_v = 1
    y = weigh_cell(x2, lw, gw, cap, 0.0)
    if _better(y, 2, best, best_v):
        best = y
        best_v = 2
    return best, best_v


@njit
def shell_intervals(g_d, g_rows, g_j0, js_shock, js_nvol, pr, n_side):
    """Per joint scenario with three vol states and group column: the grid interval of its
    move, ``floor(t)`` clipped to ``0 .. 2 n_side - 1`` for ``t`` as in :func:`interp_add`
    (so the move lies in it); 0 for the tails.  ``int64[NJ, D]``."""
    out = np.zeros(js_shock.shape, dtype=np.int64)
    for g in range(g_d.shape[0]):
        for jj in range(g_j0[g], g_j0[g + 1]):
            if js_nvol[jj] != 3:
                continue
            for c in range(g_d[g]):
                r = g_rows[g, c]
                i = int(math.floor((js_shock[jj, c] / pr[r] + 1.0) * n_side))
                out[jj, c] = min(max(i, 0), 2 * n_side - 1)
    return out


@njit
def direction_clusters(g_d, g_m, g_dir0, dir_iv, dir_ivt, size):
    """The groups' directions in clusters of at most ``size`` near ones, for
    :func:`_scan`'s bound over a cluster: each group's directions split in halves along the
    column whose outer-shell intervals (``dir_iv``) spread most, until a part has ``size``
    or fewer (``size`` 1: each direction alone, in its order).  Returns ``(order, g_c0,
    c_start, c_lo, c_hi, t_lo, t_hi)``: the directions (rows of ``dir_iv``) cluster by
    cluster, group ``g``'s clusters ``g_c0[g] .. g_c0[g + 1]``, cluster ``k``'s directions
    ``order[c_start[k]:c_start[k + 1]]``, and per cluster and column the lowest and highest
    interval of its directions' outer shells (``c_lo``, ``c_hi``) and tails (``t_lo``,
    ``t_hi``).  Which directions share a cluster changes how fast a scan is, never what it
    finds."""
    n_dir = dir_iv.shape[0]
    d_max = dir_iv.shape[1]
    n_g = g_d.shape[0]
    order = np.arange(n_dir)
    c_start = np.empty(n_dir + 1, dtype=np.int64)
    g_c0 = np.zeros(n_g + 1, dtype=np.int64)
    st_lo = np.empty(n_dir + 1, dtype=np.int64)
    st_hi = np.empty(n_dir + 1, dtype=np.int64)
    keys = np.empty(n_dir, dtype=np.int64)
    n_cl = 0
    for g in range(n_g):
        g_c0[g] = n_cl
        sp = 0
        if g_m[g] > 0:
            st_lo[0] = g_dir0[g]
            st_hi[0] = g_dir0[g] + g_m[g]
            sp = 1
        while sp > 0:                           # depth first, left part first
            sp -= 1
            lo = st_lo[sp]
            hi = st_hi[sp]
            if size <= 1:                       # each direction alone, in its order
                for i in range(lo, hi):
                    c_start[n_cl] = i
                    n_cl += 1
                continue
            if hi - lo <= size:
                c_start[n_cl] = lo
                n_cl += 1
                continue
            best_c = 0
            best_w = -1
            for c in range(g_d[g]):
                mn = dir_iv[order[lo], c]
                mx = mn
                for i in range(lo + 1, hi):
                    x = dir_iv[order[i], c]
                    mn = x if x < mn else mn
                    mx = x if x > mx else mx
                if mx - mn > best_w:
                    best_w = mx - mn
                    best_c = c
            for i in range(lo, hi):
                keys[i] = dir_iv[order[i], best_c]
            o = np.argsort(keys[lo:hi], kind="mergesort")
            part = order[lo:hi].copy()
            for i in range(hi - lo):
                order[lo + i] = part[o[i]]
            mid = (lo + hi) // 2
            st_lo[sp] = mid
            st_hi[sp] = hi
            st_lo[sp + 1] = lo
            st_hi[sp + 1] = mid
            sp += 2
    g_c0[n_g] = n_cl
    c_start[n_cl] = n_dir
    c_lo = np.empty((n_cl, d_max), dtype=np.int64)
    c_hi = np.empty((n_cl, d_max), dtype=np.int64)
    t_lo = np.empty((n_cl, d_max), dtype=np.int64)
    t_hi = np.empty((n_cl, d_max), dtype=np.int64)
    for k in range(n_cl):
        for c in range(d_max):
            p = order[c_start[k]]
            c_lo[k, c] = c_hi[k, c] = dir_iv[p, c]
            t_lo[k, c] = t_hi[k, c] = dir_ivt[p, c]
            for i in range(c_start[k] + 1, c_start[k + 1]):
                p = order[i]
                c_lo[k, c] = min(c_lo[k, c], dir_iv[p, c])
                c_hi[k, c] = max(c_hi[k, c], dir_iv[p, c])
                t_lo[k, c] = min(t_lo[k, c], dir_ivt[p, c])
                t_hi[k, c] = max(t_hi[k, c], dir_ivt[p, c])
    return order, g_c0, c_start[:n_cl + 1], c_lo, c_hi, t_lo, t_hi


@njit(_nrt=False)
def curve_tol(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t, bounds):
    """(tol, size) of one unit curve ``cv`` (settlement currency), the bound of its
    interpolation error: ``error_factor`` x its largest |4th difference| along the grid
    (each vol state's ``n_shell`` shell nodes, then the tail's ``2 ts + 1`` nodes from
    ``tail0``; NaN if any is NaN) plus 1e-9 of its size, the largest |cell| (NaN if any).
    On the way, with ``bounds``, for :func:`_curve_bounds`: ``d2[k]`` (``k = 1 ..
    n_shell - 2``) the largest |2nd difference| over the vol states at shell node ``k``,
    ``d2t[k]`` (``k = 1 .. 2 ts - 1``) the tail's.  ``bb``: scratch (2nd differences).

    One pass along the shell nodes (the three vol states side by side, each keeping its
    last three 2nd differences) and one along the tail: the differences of
    :func:`_curve_tol_plain`, the same maxima; a curve with a NaN or an infinite value (a
    cell or a difference) goes to :func:`_curve_tol_plain` for its NaN rule."""
    # x - x: NaN once any x is NaN or infinite (sums of zeros, or NaN, whatever their
    # order); the size (largest |cell|) and the checks in four independent runs of cells
    n = cv.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    h0 = h1 = h2 = h3 = 0.0
    for s in range(0, n - 3, 4):
        x = abs(cv[s])
        s0 = x if x > s0 else s0
        h0 += x - x
        x = abs(cv[s + 1])
        s1 = x if x > s1 else s1
        h1 += x - x
        x = abs(cv[s + 2])
        s2 = x if x > s2 else s2
        h2 += x - x
        x = abs(cv[s + 3])
        s3 = x if x > s3 else s3
        h3 += x - x
    for s in range(n - n % 4, n):
        x = abs(cv[s])
        s0 = x if x > s0 else s0
        h0 += x - x
    s0 = s1 if s1 > s0 else s0
    s2 = s3 if s3 > s2 else s2
    size = s2 if s2 > s0 else s0
    chk0 = h0 + h1
    chk1 = h2 + h3
    chk2 = 0.0
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    a0 = cv[0]
    a1 = cv[1]
    a2 = cv[2]
    c0 = cv[3]
    c1 = cv[4]
    c2 = cv[5]
    p0 = p1 = p2 = q0 = q1 = q2 = 0.0          # 2nd differences at k - 2, k - 1
    for k in range(n_shell - 2):
        n0 = cv[3 * k + 6]
        n1 = cv[3 * k + 7]
        n2 = cv[3 * k + 8]
        b0 = (n0 - c0) - (c0 - a0)
        b1 = (n1 - c1) - (c1 - a1)
        b2 = (n2 - c2) - (c2 - a2)
        if bounds:
            x = abs(b0)
            y = abs(b1)
            x = y if y > x else x
            y = abs(b2)
            d2[k + 1] = y if y > x else x
        if k >= 2:
            x = abs((b0 - q0) - (q0 - p0))
            e0 = x if x > e0 else e0
            chk0 += x - x
            x = abs((b1 - q1) - (q1 - p1))
            e1 = x if x > e1 else e1
            chk1 += x - x
            x = abs((b2 - q2) - (q2 - p2))
            e2 = x if x > e2 else e2
            chk2 += x - x
        p0 = q0
        p1 = q1
        p2 = q2
        q0 = b0
        q1 = b1
        q2 = b2
        a0 = c0
        a1 = c1
        a2 = c2
        c0 = n0
        c1 = n1
        c2 = n2
    e1 = e1 if e1 > e0 else e0
    err = e2 if e2 > e1 else e1
    if ts > 0:
        e0 = 0.0
        a0 = cv[tail0]
        c0 = cv[tail0 + 1]
        p0 = q0 = 0.0
        for k in range(2 * ts - 1):
            n0 = cv[tail0 + k + 2]
            b0 = (n0 - c0) - (c0 - a0)
            if bounds:
                d2t[k + 1] = abs(b0)
            if k >= 2:
                x = abs((b0 - q0) - (q0 - p0))
                e0 = x if x > e0 else e0
                chk2 += x - x
            p0 = q0
            q0 = b0
            a0 = c0
            c0 = n0
        err = e0 if e0 > err else err
    chk = chk0 + chk1 + chk2
    if chk != chk:
        return _curve_tol_plain(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t, bounds)
    return error_factor * err + 1e-9 * size, size


# unsigned index steps: an index that is a sum of unsigned ones needs no wraparound select
# (a signed sum does, and turns the compiler's vectorised loads into gathers)
U1, U2, U3, U6 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(6)
FINITE_BITS = 0x7FF0000000000000   # bits of +inf: a non-negative double's bits below it: finite
ABS_BITS = 0x7FFFFFFFFFFFFFFF      # a double's bits but the sign: its |x|'s


@njit(_nrt=False)
def bits_max(xi, lo, hi):
    """The bits of the largest |x| of ``xi[lo:hi]`` (doubles' bits as int64; ``|x|``'s are
    ``x``'s without the sign bit, ordered as the |x| are, inf and NaN above every finite
    one); 0 if the range is empty.  An integer maximum, which the compiler vectorises."""
    m = 0
    for s in range(lo, hi):
        v = xi[np.uint64(s)] & ABS_BITS
        m = v if v > m else m
    return m


@njit(_nrt=False)
def _tol_bounds(cv, cvi, n_shell, ts, tail0, error_factor, gw, cap, cover, px, b4, e4, e4i, bb,
                mn, d2, d2t, lvr, lvt):
    """:func:`curve_tol` (with ``bounds``) then :func:`_curve_bounds` of one unit curve
    ``cv`` (``cvi``: its bits, as int64; ``px``: the unit's USD price, the bounds' scale):
    the same (tol, size) and bounds to the bit, in loops the compiler vectorises.

    The 2nd differences of the three vol states are one run over the interleaved shell cells
    (cell ``s`` and ``s + 3``, ``s + 6``) into ``b4``, the tail's after them; the |4th
    differences of each likewise into ``e4``, by :func:`curve_tol`'s arithmetic.  The
    largest |cell| and |4th difference| are taken over their bits (``cvi``; ``e4i``, ``e4``
    viewed as int64: a maximum does not depend on the order); bits at or above +inf's mean an
    infinite or NaN cell or difference, where :func:`curve_tol` applies its NaN rule (it is
    called then, as for grids too short for the runs)."""
    n = cv.shape[0]
    if n_shell < 5 or 0 < ts < 2:
        tol, size = curve_tol(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t, True)
        _curve_bounds(cv, n_shell, ts, tail0, gw, cap, cover, px, mn, d2, d2t, lvr, lvt)
        return tol, size
    size_b = bits_max(cvi, 0, n)
    ns = 3 * (n_shell - 2)
    for s in range(ns):
        i = np.uint64(s)
        b4[i] = (cv[i + U6] - cv[i + U3]) - (cv[i + U3] - cv[i])
    ne = 3 * (n_shell - 4)
    for s in range(ne):
        i = np.uint64(s)
        e4[i] = (b4[i + U6] - b4[i + U3]) - (b4[i + U3] - b4[i])
    nt = 2 * ts - 1
    if ts > 0:
        for k in range(nt):
            i = np.uint64(tail0 + k)
            b4[np.uint64(ns + k)] = (cv[i + U2] - cv[i + U1]) - (cv[i + U1] - cv[i])
        for k in range(nt - 2):
            i = np.uint64(ns + k)
            e4[np.uint64(ne + k)] = (b4[i + U2] - b4[i + U1]) - (b4[i + U1] - b4[i])
        ne += nt - 2
    err_b = bits_max(e4i, 0, ne)
    if size_b >= FINITE_BITS or err_b >= FINITE_BITS:
        tol, size = curve_tol(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t, True)
    else:
        e4i[0] = size_b
        e4i[1] = err_b
        size = e4[0]
        tol = error_factor * e4[1] + 1e-9 * size
        for k in range(n_shell - 2):
            i = np.uint64(3 * k)
            x = abs(b4[i])
            y = abs(b4[i + U1])
            x = y if y > x else x
            y = abs(b4[i + U2])
            d2[np.uint64(k) + U1] = y if y > x else x
        if ts > 0:
            for k in range(nt):
                d2t[np.uint64(k) + U1] = abs(b4[np.uint64(ns + k)])
    _curve_bounds(cv, n_shell, ts, tail0, gw, cap, cover, px, mn, d2, d2t, lvr, lvt)
    return tol, size


@njit(_nrt=False)
def _curve_tol_plain(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t, bounds):
    """:func:`curve_tol` one vol state and one difference at a time, with its NaN rule at
    every step (the arithmetic :func:`curve_tol` reproduces; it comes here when a curve has
    a NaN or an infinite cell or difference)."""
    err = 0.0
    if bounds:
        for k in range(n_shell):
            d2[k] = 0.0
    for v in range(3):
        for k in range(n_shell - 2):
            b = (cv[3 * (k + 2) + v] - cv[3 * (k + 1) + v]) - \
                (cv[3 * (k + 1) + v] - cv[3 * k + v])
            bb[k] = b
            if bounds and abs(b) > d2[k + 1]:
                d2[k + 1] = abs(b)
        for i in range(n_shell - 4):
            x = abs((bb[i + 2] - bb[i + 1]) - (bb[i + 1] - bb[i]))
            if x > err or x != x:
                err = x
    if ts > 0:
        n = 2 * ts + 1
        for k in range(n - 2):
            b = (cv[tail0 + k + 2] - cv[tail0 + k + 1]) - (cv[tail0 + k + 1] - cv[tail0 + k])
            bb[k] = b
            if bounds:
                d2t[k + 1] = abs(b)
        for i in range(n - 4):
            x = abs((bb[i + 2] - bb[i + 1]) - (bb[i + 1] - bb[i]))
            if x > err or x != x:
                err = x
    size = 0.0
    for s in range(cv.shape[0]):
        x = abs(cv[s])
        if x > size or x != x:
            size = x
    return error_factor * err + 1e-9 * size, size


@njit(_nrt=False)
def _curve_bounds(cv, n_shell, ts, tail0, gw, cap, cover, px, mn, d2, d2t, lvr, lvt):
    """Lower bounds of one unit curve ``cv``'s interpolated weighted value per grid
    interval, from the largest |2nd differences| :func:`curve_tol` left in ``d2`` (shells)
    and ``d2t`` (tail): ``lvr`` (shells, loss weight 1, gain weight ``gw``; the lowest vol
    state) and ``lvt`` (tail, weights ``cover``; ``-inf`` without a tail grid).  The bound
    of interval ``[i, i+1]``: the lower of its two nodes (lowest vol state) minus 0.2 x the
    largest |2nd differences| (over the vol states) at nodes i-1 .. i+2 (clipped to the
    grid): whichever 4-node window covers it, a cubic's gap to its chord there is below
    that (as :func:`interval_bounds`, which bounds each vol state apart).  Each bound is
    written times ``px`` (the unit's USD price).  ``mn``: scratch."""
    for k in range(n_shell):
        i = np.uint64(3 * k)
        lo = np.inf
        x = cv[i]
        lo = x if x < lo else lo
        x = cv[i + U1]
        lo = x if x < lo else lo
        x = cv[i + U2]
        mn[k] = x if x < lo else lo
    _chord_bounds(mn, d2, n_shell, 1.0, gw, cap, px, lvr)
    if ts > 0:
        n = 2 * ts + 1
        for k in range(n):
            mn[k] = cv[tail0 + k]
        _chord_bounds(mn, d2t, n, cover, cover, cap, px, lvt)
    else:
        for i in range(lvt.shape[0]):
            lvt[i] = -np.inf * px       # no tail grid: no bound


@njit(_nrt=False)
def _chord_bounds(mn, d2, n, lw, gw, cap, px, out):
    """``out[i]`` for the ``n - 1`` intervals of :func:`_curve_bounds` from the nodes' lowest
    values ``mn`` and largest |2nd differences| ``d2[1 .. n-2]`` (its ends are set here).
    The two end intervals clip their window to the grid (:func:`_chord_one`); the others
    run without a branch."""
    d2[0] = d2[1]
    d2[n - 1] = d2[n - 2]
    out[0] = _chord_one(mn, d2, n, lw, gw, cap, 0) * px
    for k in range(n - 3):
        i = np.uint64(k)            # interval k + 1
        a = mn[i + U1]
        b = mn[i + U2]
        lo = a if a < b else b
        slack = d2[i] + d2[i + U1] + d2[i + U2] + d2[i + U3]
        out[i + U1] = _weigh(lo - 0.2 * slack, lw, gw, cap) * px
    if n > 2:
        out[n - 2] = _chord_one(mn, d2, n, lw, gw, cap, n - 2) * px


@njit(inline="always")
def _chord_one(mn, d2, n, lw, gw, cap, i):
    """:func:`_chord_bounds`' bound of interval ``i``, its window clipped to the grid."""
    a = mn[i]
    b = mn[i + 1]
    lo = a if a < b else b
    slack = d2[max(i - 1, 0)] + d2[i] + d2[i + 1] + d2[min(i + 2, n - 1)]
    return _weigh(lo - 0.2 * slack, lw, gw, cap)


@njit(_nrt=False)
def _interp_one(cv, c, r, px, cap, jj, js_shock, js_lw, js_gw, js_nvol, pr, tail_range,
                tail_side, n_side, w):
    """One unit's interpolated weighted value (USD) in the group's joint scenario ``jj``:
    :func:`interp_add`'s arithmetic for one scenario."""
    sh = js_shock[jj, c]
    if js_nvol[jj] == 3:
        i0 = _lagrange((sh / pr[r] + 1.0) * n_side, 2 * n_side + 1, w)
        y = _min3(cv, 3 * i0, w, js_lw[jj, c], js_gw[jj, c], cap)
    else:
        i0 = 3 * (2 * n_side + 1) + _lagrange((sh / tail_range[r] + 1.0) * tail_side[r],
                                              2 * tail_side[r] + 1, w)
        y = _weigh(w[0] * cv[i0] + w[1] * cv[i0 + 1] + w[2] * cv[i0 + 2]
                   + w[3] * cv[i0 + 3], js_lw[jj, c], js_gw[jj, c], cap)
    return y * px


@njit(_nrt=False, inline="always")
def _interp_tab(cv, c, px, cap, jj, js_lw, js_gw, js_nvol, t_i0, t_w):
    """:func:`_interp_one` with the window and weights of scenario ``jj``, column ``c``
    taken from :func:`_interp_table` (``t_i0``, ``t_w``): the same products and sums in the
    same order, so the same bits."""
    i0 = t_i0[jj, c]
    w0 = t_w[jj, c, 0]
    w1 = t_w[jj, c, 1]
    w2 = t_w[jj, c, 2]
    w3 = t_w[jj, c, 3]
    lw = js_lw[jj, c]
    gw = js_gw[jj, c]
    if js_nvol[jj] == 3:
        x0 = w0 * cv[i0] + w1 * cv[i0 + 3] + w2 * cv[i0 + 6] + w3 * cv[i0 + 9]
        x1 = w0 * cv[i0 + 1] + w1 * cv[i0 + 4] + w2 * cv[i0 + 7] + w3 * cv[i0 + 10]
        x2 = w0 * cv[i0 + 2] + w1 * cv[i0 + 5] + w2 * cv[i0 + 8] + w3 * cv[i0 + 11]
        y = min(_weigh(x0, lw, gw, cap), min(_weigh(x1, lw, gw, cap), _weigh(x2, lw, gw, cap)))
    else:
        y = _weigh(w0 * cv[i0] + w1 * cv[i0 + 1] + w2 * cv[i0 + 2] + w3 * cv[i0 + 3], lw, gw,
                   cap)
    return y * px


@njit
def _interp_table(g_d, g_rows, g_j0, js_shock, js_nvol, pr, tail_range, tail_side, n_side):
    """Per joint scenario ``jj`` and column ``c`` of its group (row ``r``), the window and
    cubic Lagrange weights :func:`_interp_one` computes for it (they depend on the scenario's
    move and the row only, not on the account): ``(t_i0 int64[NJ, D], t_w float64[NJ, D,
    4])``, ``t_i0`` the window's first cell in a unit curve (``3 i0`` on the shells,
    ``3 (2 n_side + 1) + i0`` on the tail).  Columns beyond a group's are left 0."""
    nj = js_shock.shape[0]
    d_max = js_shock.shape[1]
    t_i0 = np.zeros((nj, d_max), dtype=np.int64)
    t_w = np.zeros((nj, d_max, 4))
    for g in range(g_d.shape[0]):
        for jj in range(g_j0[g], g_j0[g + 1]):
            for c in range(g_d[g]):
                r = g_rows[g, c]
                sh = js_shock[jj, c]
                w = t_w[jj, c]
                if js_nvol[jj] == 3:
                    t_i0[jj, c] = 3 * _lagrange((sh / pr[r] + 1.0) * n_side, 2 * n_side + 1, w)
                else:
                    t_i0[jj, c] = 3 * (2 * n_side + 1) + _lagrange(
                        (sh / tail_range[r] + 1.0) * tail_side[r], 2 * tail_side[r] + 1, w)
    return t_i0, t_w


@njit
def _shell_table(g_d, g_j0, g_buckets, g_m, g_dir0, js_iv):
    """``js_iv`` of each group direction's shells side by side: ``t_iv[g_dir0[g] + dr, k,
    c]`` is ``js_iv[g_j0[g] + 1 + k g_m[g] + dr, c]`` (shell ``k + 1`` of direction ``dr``),
    so that :func:`_scan`'s shell bounds of one direction read one short run."""
    d_max = js_iv.shape[1]
    b_max = 1
    for g in range(g_d.shape[0]):
        b_max = max(b_max, g_buckets[g])
    t_iv = np.zeros((max(g_dir0[g_d.shape[0]], 1), b_max, d_max), dtype=np.int64)
    for g in range(g_d.shape[0]):
        for dr in range(g_m[g]):
            for k in range(g_buckets[g]):
                for c in range(d_max):
                    t_iv[g_dir0[g] + dr, k, c] = js_iv[g_j0[g] + 1 + k * g_m[g] + dr, c]
    return t_iv


@njit
def _slot_table(g_d, g_j0, g_buckets, g_m, g_dir0, js_iv, dir_ivt, clusters):
    """Each group's shells and tails in the order of its directions' clusters (``clusters``:
    :func:`direction_clusters`), so that :func:`_scan` bounds a cluster's shells (and
    tails) column by column in one run: cluster ``k``'s shells are the slots ``s_c0[k] ..
    s_c0[k + 1]`` (per direction in the cluster's order, its shells 1 .. B), slot ``S``'s
    grid interval in column ``c`` is ``s_iv[c, S]`` and its joint scenario (in the group)
    ``s_j[S]``; its tails are the cluster's directions ``c_start[k] .. c_start[k + 1]``,
    ``i``'s interval ``t_ivc[c, i]`` and scenario ``t_j[i]``; ``c_rng[q, c, k]`` is the
    clusters' ``c_lo``, ``c_hi``, ``t_lo``, ``t_hi`` (``q`` 0 .. 3) by column.  Returns
    ``(s_c0, s_iv, s_j, t_ivc, t_j, c_rng)``."""
    order, g_c0, c_start = clusters[0], clusters[1], clusters[2]
    d_max = js_iv.shape[1]
    n_k = clusters[3].shape[0]
    c_rng = np.empty((4, d_max, n_k), dtype=np.int64)
    for c in range(d_max):
        for k in range(n_k):
            c_rng[0, c, k] = clusters[3][k, c]
            c_rng[1, c, k] = clusters[4][k, c]
            c_rng[2, c, k] = clusters[5][k, c]
            c_rng[3, c, k] = clusters[6][k, c]
    n_g = g_d.shape[0]
    n_cl = g_c0[n_g]
    n_dir = max(order.shape[0], 1)
    s_c0 = np.zeros(n_cl + 1, dtype=np.int64)
    for g in range(n_g):
        for k in range(g_c0[g], g_c0[g + 1]):
            s_c0[k + 1] = s_c0[k] + (c_start[k + 1] - c_start[k]) * g_buckets[g]
    n_slot = max(s_c0[n_cl], 1)
    s_iv = np.zeros((d_max, n_slot), dtype=np.int64)
    s_j = np.zeros(n_slot, dtype=np.int64)
    t_ivc = np.zeros((d_max, n_dir), dtype=np.int64)
    t_j = np.zeros(n_dir, dtype=np.int64)
    for g in range(n_g):
        m_dir = g_m[g]
        B = g_buckets[g]
        for k in range(g_c0[g], g_c0[g + 1]):
            S = s_c0[k]
            for i in range(c_start[k], c_start[k + 1]):
                dr = order[i] - g_dir0[g]
                for ks in range(B):
                    j = 1 + ks * m_dir + dr
                    s_j[S] = j
                    for c in range(d_max):
                        s_iv[c, S] = js_iv[g_j0[g] + j, c]
                    S += 1
                t_j[i] = 1 + B * m_dir + dr
                for c in range(d_max):
                    t_ivc[c, i] = dir_ivt[order[i], c]
    return s_c0, s_iv, s_j, t_ivc, t_j, c_rng


@njit(_nrt=False)
def binding_candidate(tot, n_c):
    """The binding one of ``n_c`` candidates' exact totals ``tot[:n_c]`` (in scenario
    order): the first NaN, else the first within ``TIE_RTOL`` of the lowest."""
    lowest = np.inf
    for i in range(n_c):
        if tot[i] < lowest or tot[i] != tot[i]:
            lowest = tot[i]
    for i in range(n_c):
        if tot[i] != tot[i] or (tot[i] - lowest <= TIE_RTOL * max(abs(tot[i]), abs(lowest))):
            return i
    return 0


@njit(_nrt=False)
def record_binding(a, j, b, n_js, j0, worst, bind_kind, bind_index):
    """Account ``a``'s worst (``-b``, 0 for a gain) and binding scenario ``j`` (a joint
    scenario of the group before ``n_js``, else a delta direction)."""
    worst[a] = -b if (b < 0.0 or b != b) else 0.0
    if j < n_js:
        bind_kind[a] = BIND_JOINT
        bind_index[a] = j0 + j
    else:
        bind_kind[a] = BIND_DELTA
        bind_index[a] = j - n_js


@njit(_nrt=False, inline="always")
def _slots(nu, ucol, curves, upx, ucap, lvx, s0, s1, s_iv, s_j, j0, js_lw, js_gw, js_nvol,
           t_i0, t_w, tol, lowest, lbs, ev_j, ev_t, ne, near):
    """:func:`_scan` over the slots ``s0 .. s1`` of :func:`_slot_table` (one cluster's
    shells, or its tails): each slot's bound, the sum over the units (in their order, from
    ``0.0``) of ``lvx`` (the units' interval bounds, USD) at its interval, in one run (no
    branch; two or three units in one pass, more one run per unit); then each slot whose
    bound is within ``2.5 tol`` of ``lowest`` interpolated (:func:`_interp_tab`) into
    ``ev_j``/``ev_t`` from ``ne``.  Returns ``(lowest, ne)``.

    The slots within the band at the entry's ``lowest`` are listed first, without a branch
    (``near``), then checked again as they are interpolated (``lowest`` only falls): the
    slots of one check per slot in order, in their order.  ``lbs``, ``near``: scratch."""
    n = s1 - s0
    if nu == 3:
        iv0 = s_iv[ucol[0], s0:]
        iv1 = s_iv[ucol[1], s0:]
        iv2 = s_iv[ucol[2], s0:]
        l0 = lvx[0]
        l1 = lvx[1]
        l2 = lvx[2]
        for s in range(n):
            lbs[s] = ((0.0 + l0[np.uint64(iv0[s])]) + l1[np.uint64(iv1[s])]) + \
                l2[np.uint64(iv2[s])]
    elif nu == 2:
        iv0 = s_iv[ucol[0], s0:]
        iv1 = s_iv[ucol[1], s0:]
        l0 = lvx[0]
        l1 = lvx[1]
        for s in range(n):
            lbs[s] = (0.0 + l0[np.uint64(iv0[s])]) + l1[np.uint64(iv1[s])]
    else:
        for s in range(n):
            lbs[s] = 0.0
        for m in range(nu):
            iv = s_iv[ucol[m], s0:]
            lvm = lvx[m]
            for s in range(n):
                lbs[s] += lvm[np.uint64(iv[s])]
    n_near = 0
    for s in range(n):
        near[n_near] = s
        n_near += not (lbs[s] - lowest > 2.5 * tol)
    for i in range(n_near):
        s = near[i]
        if lbs[s] - lowest > 2.5 * tol:
            continue
        j = s_j[s0 + s]
        t = 0.0
        for m in range(nu):
            t += _interp_tab(curves[m], ucol[m], upx[m], ucap[m], j0 + j, js_lw, js_gw,
                             js_nvol, t_i0, t_w)
        ev_j[ne] = j
        ev_t[ne] = t
        ne += 1
        if t < lowest or t != t:
            lowest = t
    return lowest, ne


@njit(_nrt=False, inline="always")
def _running_min(x, out, c, n):
    """``out[:n]``: ``x[:n]``'s running minimum outward from the centre ``c`` (``out[i]``
    the lowest of ``x[i:c]`` for ``i < c``, of ``x[c:i + 1]`` from ``c`` on; ``x`` beyond
    ``2 c`` copied as it is), one carried value per side (the minimum with ``x < y``, so a
    NaN in ``x`` stops at the next value)."""
    for i in range(n):
        out[i] = x[i]
    if c < 1:
        return
    y = x[c - 1]
    for k in range(c - 1):                      # c - 2 .. 0
        i = np.uint64(c - 2 - k)
        v = x[i]
        y = y if y < v else v
        out[i] = y
    y = x[c]
    for i in range(c + 1, 2 * c):
        v = x[i]
        y = y if y < v else v
        out[i] = y


@njit(_nrt=False, inline="always")
def _lowest(x, n):
    """The lowest of ``x[:n]`` (NaN if any is; ``-inf`` if ``n`` is 0), in four runs (no
    chain of dependent comparisons through the whole row)."""
    if n <= 0:
        return -np.inf
    a0 = a1 = a2 = a3 = x[0]
    n4 = 1 + (n - 1) // 4 * 4
    for i in range(1, n4, 4):
        y = x[i]
        a0 = y if (y < a0 or y != y) else a0
        y = x[i + 1]
        a1 = y if (y < a1 or y != y) else a1
        y = x[i + 2]
        a2 = y if (y < a2 or y != y) else a2
        y = x[i + 3]
        a3 = y if (y < a3 or y != y) else a3
    for i in range(n4, n):
        y = x[i]
        a0 = y if (y < a0 or y != y) else a0
    a0 = a1 if (a1 < a0 or a1 != a1) else a0
    a0 = a2 if (a2 < a0 or a2 != a2) else a0
    return a3 if (a3 < a0 or a3 != a3) else a0


@njit(_nrt=False)
def _scan(nu, units, ucol, unit_row, unit_px, cap_usd, curves, tol, g, j0, n_js, n_all, B,
          zpos, pr, gw_row, mult, cover, js_shock, js_lw, js_gw, js_nvol, js_iv, g_m, g_dir0,
          dir_iv, dir_ivt, tails, tail_range, tail_side, n_side, max_candidates, w, lv, lvr,
          lvt, lbd, lbt, upx, ucap, urow, ev_j, ev_t, cand, clusters, ltv, tab, lbs):
    """The candidates of one account (finite ``tol``): every scenario whose interpolated total
    is within ``2 tol`` of the lowest interpolated total, in scenario order, into ``cand``;
    returns their number (``n_all``: every scenario, more than ``max_candidates`` joint
    ones).

    Branch and bound, so that only scenarios that can be within the band are interpolated:
    each unit's lower bound per grid interval (:func:`_curve_bounds`; ``lvr``) and its
    running minimum outward from the centre (``lv``: one look-up bounds every shell of a
    direction, they all lie between 0 and its outer move); a direction whose bound is above
    ``lowest + 2.5 tol`` is skipped, else each shell whose own bound (its intervals) is not
    is interpolated.  Before its directions, a cluster of near directions
    (:func:`direction_clusters`, ``clusters``) is skipped whole when the sum over the units of
    ``lv``'s lower end over the cluster's intervals is above that (``lv`` falls outward from
    the centre, so its lowest over a range of intervals is at one of the range's ends); the
    tails likewise with ``ltv``, ``lvt``'s running minimum (scratch), after one bound of all
    the tails (each unit's lowest ``lvt``) has not ruled them all out.  ``lowest`` only falls,
    so a skipped scenario's total is above the final ``lowest + 2 tol``: the candidates, and
    so the result, are those of a scan of every scenario.  The no-move scenario, the delta
    directions and the cluster of the lowest bound go first (a good ``lowest`` early).

    A bound is the sum over the units (in their order) of the unit's bound times its USD
    price; the tables come scaled by the price (``lvr``, ``lvt``: :func:`_curve_bounds`),
    ``lv`` and ``ltv`` their running minima, and the bounds of every cluster (``lbd``) and
    of its tails (``lbt``)
    summed unit by unit over the clusters.  ``upx``, ``ucap``, ``urow``: scratch (each
    unit's price, gain cap in its settlement currency, underlying row).  ``tab``:
    :func:`scan_tables` (windows and weights of the joint scenarios, each direction's shell
    intervals side by side), or empty arrays (computed or read from ``js_iv`` here): the
    same values either way, so the same scenarios are bounded and interpolated to the same
    bits."""
    n_iv = 2 * n_side
    for m in range(nu):
        u = units[m]
        r = unit_row[u]
        px = unit_px[u]
        upx[m] = px
        ucap[m] = cap_usd[r] / px
        urow[m] = r
        _running_min(lvr[m], lv[m], n_side, n_iv)
    # the no-move scenario and the delta directions (ev_t as scratch: slot 0 no move,
    # 1 + e delta direction e)
    n_dd = n_all - n_js
    for e in range(n_dd + 1):
        ev_t[e] = 0.0
    for m in range(nu):
        interp_add(curves[m], units[m], ucol[m], unit_row, unit_px, cap_usd, 0, 1, j0,
                   js_shock, js_lw, js_gw, js_nvol, pr, tail_range, tail_side, n_side, w,
                   ev_t)
        interp_delta(curves[m], units[m], ucol[m], unit_row, unit_px, cap_usd, 1, n_dd + 1,
                     B, zpos, pr, gw_row, mult, cover, tail_range, tail_side, n_side, w,
                     ev_t)
    lowest = np.inf
    ev_j[0] = 0
    for e in range(n_dd):
        ev_j[1 + e] = n_js + e
    ne = n_dd + 1
    for i in range(ne):
        if ev_t[i] < lowest or ev_t[i] != ev_t[i]:
            lowest = ev_t[i]
    # the tails: one bound of them all first, the sum over the units of their lowest tail
    # interval bound (of the row's 2 ts intervals; -inf without a tail grid; NaN if any is):
    # above the band, no tail is looked at (``lowest`` only falls; three accounts in four
    # on the multi_book), else each unit's running minimum outward for the clusters' bounds
    if tails:
        lb = 0.0
        for m in range(nu):
            ts = tail_side[urow[m]]
            lb += _lowest(lvt[m], 2 * ts)
        tails = not lb - lowest > 2.5 * tol
    if tails:
        for m in range(nu):
            _running_min(lvt[m], ltv[m], tail_side[urow[m]], lvt.shape[1])
    # per cluster of directions: a bound of its directions' shells (and of their tails):
    # ``lv`` (``ltv``) falls outward from the centre, so its lowest over a cluster's
    # intervals in a column is at one of their two ends
    (order, g_c0, c_start, c_lo, c_hi, t_lo, t_hi) = clusters
    t_i0, t_w, t_iv, s_c0, s_iv, s_j, t_ivc, t_j, c_rng = tab
    table = t_i0.shape[0] > 0
    m_dir = g_m[g]
    d0 = g_dir0[g]
    k0 = g_c0[g]
    n_cl = g_c0[g + 1] - k0
    for k in range(n_cl):
        lbd[k] = 0.0
        lbt[k] = 0.0
    for m in range(nu):
        c = ucol[m]
        if table:               # the same sums, the clusters' ranges of column c in one run
            lvm = lv[m]
            lo = c_rng[0, c, k0:]
            hi = c_rng[1, c, k0:]
            for k in range(n_cl):
                a = lvm[np.uint64(lo[k])]
                b = lvm[np.uint64(hi[k])]
                lbd[k] += a if a < b else b
            if tails:
                lvm = ltv[m]
                lo = c_rng[2, c, k0:]
                hi = c_rng[3, c, k0:]
                for k in range(n_cl):
                    a = lvm[np.uint64(lo[k])]
                    b = lvm[np.uint64(hi[k])]
                    lbt[k] += a if a < b else b
            continue
        for k in range(n_cl):
            a = lv[m, c_lo[k0 + k, c]]
            b = lv[m, c_hi[k0 + k, c]]
            lbd[k] += a if a < b else b
        if tails:
            for k in range(n_cl):
                a = ltv[m, t_lo[k0 + k, c]]
                b = ltv[m, t_hi[k0 + k, c]]
                lbt[k] += a if a < b else b
    best_k = -1
    best_lb = np.inf
    for k in range(n_cl):
        if lbd[k] < best_lb:
            best_lb = lbd[k]
            best_k = k
    for kk in range(-1, n_cl):                  # the cluster of the lowest bound first
        k = best_k if kk < 0 else kk
        if k < 0 or (kk >= 0 and k == best_k):
            continue
        shells = not lbd[k] - lowest > 2.5 * tol
        tail = tails and not lbt[k] - lowest > 2.5 * tol
        if not shells and not tail:
            continue
        if table:
            if shells:
                lowest, ne = _slots(nu, ucol, curves, upx, ucap, lvr, s_c0[k0 + k],
                                    s_c0[k0 + k + 1], s_iv, s_j, j0, js_lw, js_gw, js_nvol,
                                    t_i0, t_w, tol, lowest, lbs, ev_j, ev_t, ne, cand)
            if tail:
                lowest, ne = _slots(nu, ucol, curves, upx, ucap, lvt, c_start[k0 + k],
                                    c_start[k0 + k + 1], t_ivc, t_j, j0, js_lw, js_gw,
                                    js_nvol, t_i0, t_w, tol, lowest, lbs, ev_j, ev_t, ne, cand)
            continue
        for i in range(c_start[k0 + k], c_start[k0 + k + 1]):
            dr = order[i] - d0
            if shells:
                lb = 0.0
                for m in range(nu):
                    lb += lv[m, dir_iv[d0 + dr, ucol[m]]]
                if not lb - lowest > 2.5 * tol:
                    for ks in range(B):
                        j = 1 + ks * m_dir + dr
                        jj = j0 + j
                        lb = 0.0
                        if table:
                            for m in range(nu):
                                lb += lvr[m, t_iv[d0 + dr, ks, ucol[m]]]
                        else:
                            for m in range(nu):
                                lb += lvr[m, js_iv[jj, ucol[m]]]
                        if lb - lowest > 2.5 * tol:
                            continue
                        t = 0.0
                        for m in range(nu):
                            if table:
                                t += _interp_tab(curves[m], ucol[m], upx[m], ucap[m], jj,
                                                 js_lw, js_gw, js_nvol, t_i0, t_w)
                            else:
                                t += _interp_one(curves[m], ucol[m], urow[m], upx[m],
                                                 ucap[m], jj, js_shock, js_lw, js_gw,
                                                 js_nvol, pr, tail_range, tail_side, n_side,
                                                 w)
                        ev_j[ne] = j
                        ev_t[ne] = t
                        ne += 1
                        if t < lowest or t != t:
                            lowest = t
            if not tail:
                continue
            lb = 0.0
            for m in range(nu):
                lb += lvt[m, dir_ivt[d0 + dr, ucol[m]]]
            if lb - lowest > 2.5 * tol:
                continue
            jt = 1 + B * m_dir + dr
            t = 0.0
            for m in range(nu):
                if table:
                    t += _interp_tab(curves[m], ucol[m], upx[m], ucap[m], j0 + jt, js_lw,
                                     js_gw, js_nvol, t_i0, t_w)
                else:
                    t += _interp_one(curves[m], ucol[m], urow[m], upx[m], ucap[m], j0 + jt,
                                     js_shock, js_lw, js_gw, js_nvol, pr, tail_range,
                                     tail_side, n_side, w)
            ev_j[ne] = jt
            ev_t[ne] = t
            ne += 1
            if t < lowest or t != t:
                lowest = t
    band = lowest + 2.0 * tol
    if band != band:
        return n_all
    # the candidates in scenario order (insertion into the sorted run)
    n_c = 0
    n_grid = 0
    for i in range(ne):
        if ev_t[i] <= band:
            j = ev_j[i]
            k = n_c
            while k > 0 and cand[k - 1] > j:
                cand[k] = cand[k - 1]
                k -= 1
            cand[k] = j
            n_c += 1
            if j < n_js:
                n_grid += 1
    if n_grid > max_candidates:
        return n_all
    return n_c


@njit(_nrt=False)
def reset_account(a, worst, bind_kind, bind_index, n_joint, n_exact, bind_shock):
    """Account ``a``'s figures before its scenarios: no joint loss, no binding scenario."""
    worst[a] = 0.0
    bind_kind[a] = BIND_NONE
    bind_index[a] = -1
    n_joint[a] = 0
    n_exact[a] = 0
    for c in range(bind_shock.shape[1]):
        bind_shock[a, c] = 0.0


@njit(_nrt=False)
def active_units(a, g, ua_start, pu_start, pu_order, q, unit_row, g_col, units, ucol, outs,
                 reset):
    """Account ``a``'s active units (holding a non-zero position) and their group columns
    into ``units``/``ucol``; returns their number (0 without a group, ``g < 0``).  With
    ``reset``, every unit's and position's outputs (``outs[6:11]``) set as before a binding
    scenario is written: inactive units take no part (value 0, shock 0, vol same, loss
    weight 1), positions lose 0."""
    nu = 0
    for u in range(ua_start[a], ua_start[a + 1]):
        if reset:
            outs[6][u] = 0.0
            outs[7][u] = VOL_SAME
            outs[8][u] = 0.0
            outs[9][u] = 1.0
        held = False
        for m in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[m]
            if reset:
                outs[10][p] = 0.0
            if q[p] != 0.0:
                held = True
        if held and g >= 0:
            units[nu] = u
            ucol[nu] = g_col[g, unit_row[u]]
            nu += 1
    return nu


@njit(_nrt=False)
def delta_direction(g, nu, units, ucol, slope, g_d, g_rows, g_rho, pr, gvec, zpos):
    """The account's delta direction into ``zpos``: ``z* = rho s / sqrt(s' rho s)`` clipped
    to +-1 (0 if ``s' rho s`` is not positive), ``s`` per column of group ``g`` its active
    units' USD slopes summed, times the row's price range.  ``gvec``: scratch."""
    d = g_d[g]
    for c in range(d):
        gvec[c] = 0.0
    for m in range(nu):
        gvec[ucol[m]] += slope[units[m]]
    for c in range(d):
        gvec[c] *= pr[g_rows[g, c]]
    qq = 0.0
    for c in range(d):
        s = 0.0
        for e in range(d):
            s += g_rho[g, c, e] * gvec[e]
        qq += gvec[c] * s
    root = math.sqrt(qq) if qq > 0.0 else 1.0
    for e in range(d):
        s = 0.0
        for c in range(d):
            s += gvec[c] * g_rho[g, c, e]
        z = s / root if qq > 0.0 else 0.0
        zpos[e] = min(max(z, -1.0), 1.0)


@njit(inline="always")
def group_directions(g, nu, units, ucol, slope, g_d, g_j0, g_buckets, g_rows, g_rho, pr, gvec,
                     zpos, tails):
    """An account of group ``g``: its delta direction into ``zpos``
    (:func:`delta_direction`) and its group's counts ``(d, j0, n_js, B, n_dd, n_all)``: the
    group's dimension, its first joint scenario and their number, its buckets, the number
    of delta-direction scenarios (``2 B``, and the two tails when ``tails``; none in one
    dimension) and of all its scenarios.  The full kernel, the record and the tick read
    them alike."""
    d = g_d[g]
    j0 = g_j0[g]
    n_js = g_j0[g + 1] - j0
    B = g_buckets[g]
    delta_direction(g, nu, units, ucol, slope, g_d, g_rows, g_rho, pr, gvec, zpos)
    n_dd = 0 if d < 2 else 2 * B + (2 if tails else 0)
    return d, j0, n_js, B, n_dd, n_js + n_dd


@njit(_nrt=False)
def unit_curve(u, pu_start, pu_order, q, pos_row, icurve, curve_of_row, out):
    """Unit ``u``'s grid curve into ``out``: the quantity-weighted sum of its positions' rows
    of ``icurve`` (positions without quantity skipped), summed in their order from ``0.0``,
    two positions' rows per pass over ``out`` (``(out + q1 x1) + q2 x2``: the same sums in
    the same order as one row per pass)."""
    width = icurve.shape[1]
    first = True
    pend = -1
    pend_q = 0.0
    for mm in range(pu_start[u], pu_start[u + 1]):
        p = pu_order[mm]
        qp = q[p]
        if qp == 0.0:
            continue
        ci = curve_of_row[pos_row[p]]
        if pend < 0:
            pend = ci
            pend_q = qp
            continue
        if first:
            for s in range(width):
                out[s] = (0.0 + pend_q * icurve[pend, s]) + qp * icurve[ci, s]
            first = False
        else:
            for s in range(width):
                out[s] = (out[s] + pend_q * icurve[pend, s]) + qp * icurve[ci, s]
        pend = -1
    if pend >= 0:
        if first:
            for s in range(width):
                out[s] = 0.0 + pend_q * icurve[pend, s]
        else:
            for s in range(width):
                out[s] += pend_q * icurve[pend, s]
    elif first:
        for s in range(width):
            out[s] = 0.0


@njit
def joint_stress_rows(sel, lo, hi, acc, grp, ins, grid, outs, clusters, tab):
    """:func:`joint_stress` for the accounts ``sel[lo:hi]`` (one run of accounts, one
    scratch set; ``clusters``: :func:`direction_clusters`; ``tab``: :func:`scan_tables`, or
    empty arrays): the scratch, sized here, then the loop (:func:`_accounts`)."""
    ua_start, pu_start, acc_group = acc[0], acc[1], acc[8]
    g_rows, g_j0, g_buckets = grp[1], grp[3], grp[4]
    use_grid, icurve, n_side, tail_side = grid[0], grid[1], grid[3], grid[4]
    d_max = g_rows.shape[1]
    width = icurve.shape[1]
    max_units = 1
    max_scen = 1
    max_pos = 1
    for k in range(lo, hi):
        a = sel[k]
        if ua_start[a + 1] - ua_start[a] > max_units:
            max_units = ua_start[a + 1] - ua_start[a]
        n = pu_start[ua_start[a + 1]] - pu_start[ua_start[a]]
        if n > max_pos:
            max_pos = n
        g = acc_group[a]
        if g >= 0:
            n = g_j0[g + 1] - g_j0[g] + 2 * g_buckets[g] + 2
            if n > max_scen:
                max_scen = n
    units = np.empty(max_units, dtype=np.int64)
    ucol = np.empty(max_units, dtype=np.int64)
    curves = np.zeros((max_units, width if use_grid else 1))
    tot = np.empty(max_scen)
    cells = np.empty((2, max_pos, 3))          # the exact cells: candidate, lowest so far
    earg = np.empty((2, 3 * max_pos))          # (their erfc arguments, erfc values, slots)
    eslot = np.empty(3 * max_pos, dtype=np.int64)
    uval = np.empty((2, max_units))
    uvol = np.empty((2, max_units), dtype=np.int64)
    cand = np.empty(max_scen, dtype=np.int64)
    gvec = np.empty(d_max)
    zpos = np.empty(d_max)
    w = np.empty(4)
    lv = np.empty((max_units, 2 * n_side))                  # shell interval bounds
    lvr = np.empty((max_units, 2 * n_side))                 # (running min outward: lv)
    lbd = np.empty(max_scen)                                # per direction: a lower bound
    lbt = np.empty(max_scen)                                # (of its tail)
    lbs = np.empty(max_scen)                                # (of a cluster's slots)
    upx = np.empty(max_units)                               # per active unit: USD price,
    ucap = np.empty(max_units)                              # gain cap, underlying row
    urow = np.empty(max_units, dtype=np.int64)
    ev_j = np.empty(max_scen, dtype=np.int64)               # scenarios interpolated
    ev_t = np.empty(max_scen)                               # and their totals
    lvt = np.empty((max_units, max(2 * tail_side.max(), 1)))  # tail interval bounds
    ltv = np.empty(lvt.shape)                                 # (running min outward)
    d2 = np.empty(max(2 * n_side + 1, 2 * tail_side.max() + 1))
    d2t = np.empty(d2.shape[0])
    bb = np.empty(d2.shape[0])
    mn = np.empty(d2.shape[0])
    b4 = np.empty(width)                        # _tol_bounds: 2nd, |4th| differences
    e4 = np.empty(width)
    _accounts(sel, lo, hi, acc, grp, ins, grid, outs, clusters, tab,
              (units, ucol, curves, tot, cells, earg, eslot, uval, uvol, cand, gvec, zpos, w, lv,
               lvr, lbd, lbt, upx, ucap, urow, ev_j, ev_t, lvt, ltv, d2, d2t, bb,
               mn, b4, e4, e4.view(np.int64), lbs, curves.view(np.int64)))


@njit(_nrt=False)
def _accounts(sel, lo, hi, acc, grp, ins, grid, outs, clusters, tab, scratch):
    """:func:`joint_stress_rows`' loop over its accounts, with its scratch arrays
    (``scratch``).  Compiled without reference counting: it allocates nothing, and every
    array it touches lives in the caller, so no call or slice inside the loop increfs or
    decrefs an array (atomic operations, once the largest cost of the loop)."""
    (ua_start, pu_start, pu_order, q, pos_row, unit_row, unit_px, slope, acc_group) = acc
    (g_d, g_rows, g_col, g_j0, g_buckets, g_rho, js_shock, js_lw, js_gw, js_nvol, pr, gw_row,
     cap_usd, mult, cover, tails, max_candidates, g_m, g_dir0, dir_iv, dir_ivt, js_iv) = grp
    (kind, settlement, contract_size, forward, strike, is_call, const) = ins
    (use_grid, icurve, curve_of_row, n_side, tail_side, tail_range, vol_code,
     error_factor) = grid
    (worst, n_joint, n_exact, bind_kind, bind_index, bind_shock, unit_value, unit_vol,
     unit_shock, unit_lw, pos_loss) = outs
    (units, ucol, curves, tot, cells, earg, eslot, uval, uvol, cand, gvec, zpos, w, lv,
     lvr, lbd, lbt, upx, ucap, urow, ev_j, ev_t, lvt, ltv, d2, d2t, bb, mn, b4, e4,
     e4i, lbs, curves_i) = scratch
    n_shell = 2 * n_side + 1
    tail0 = 3 * n_shell
    for k in range(lo, hi):
        a = sel[k]
        g = acc_group[a]
        reset_account(a, worst, bind_kind, bind_index, n_joint, n_exact, bind_shock)
        nu = active_units(a, g, ua_start, pu_start, pu_order, q, unit_row, g_col, units, ucol,
                          outs, True)
        if g < 0 or nu == 0:
            continue
        # the account's delta directions: +-z*
        d, j0, n_js, B, n_dd, n_all = group_directions(
            g, nu, units, ucol, slope, g_d, g_j0, g_buckets, g_rows, g_rho, pr, gvec, zpos,
            tails)
        n_joint[a] = n_all
        # -- candidates: interpolated totals within 2 tol of the lowest, or all ---------------
        n_c = n_all
        if use_grid:
            tol = 0.0
            for m in range(nu):
                u = units[m]
                r = unit_row[u]
                unit_curve(u, pu_start, pu_order, q, pos_row, icurve, curve_of_row, curves[m])
                e, _ = _tol_bounds(curves[m], curves_i[m], n_shell, tail_side[r], tail0,
                                   error_factor, gw_row[r], cap_usd[r] / unit_px[u], cover[r],
                                   unit_px[u], b4, e4, e4i, bb, mn, d2, d2t, lvr[m], lvt[m])
                tol += e * unit_px[u]
            if not tol < np.inf:
                n_c = n_all        # a curve is not finite (or overflows): every scenario
            else:
                n_c = _scan(nu, units, ucol, unit_row, unit_px, cap_usd, curves, tol, g, j0,
                            n_js, n_all, B, zpos, pr, gw_row, mult, cover, js_shock, js_lw,
                            js_gw, js_nvol, js_iv, g_m, g_dir0, dir_iv, dir_ivt, tails,
                            tail_range, tail_side, n_side, max_candidates, w, lv, lvr, lvt,
                            lbd, lbt, upx, ucap, urow, ev_j, ev_t, cand, clusters, ltv, tab,
                            lbs)
        if n_c == n_all:
            for j in range(n_all):
                cand[j] = j
        n_exact[a] = n_c
        refine(a, cand, n_c, tot, n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row,
               cap_usd, mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start,
               pu_order, q, pos_row, kind, settlement, contract_size, forward, strike, is_call,
               const, pu_start[ua_start[a]], cells, uval, uvol, earg, eslot, outs)


@njit(_nrt=False)
def scenario(j, n_js, j0, B, c, r, pr, gw_row, mult, cover, zpos, js_shock, js_lw, js_gw,
             js_nvol):
    """(move, loss weight, gain weight, vol states) of group column ``c`` (row ``r``) in the
    account's scenario ``j``: the group's joint scenarios, then its delta directions (per
    shell -z*, +z*; then the tails)."""
    if j < n_js:
        jj = j0 + j
        return js_shock[jj, c], js_lw[jj, c], js_gw[jj, c], js_nvol[jj]
    e = j - n_js
    sign = -1.0 if e % 2 == 0 else 1.0
    if e < 2 * B:
        return (((e // 2 + 1) / B) * pr[r]) * (sign * zpos[c]), 1.0, gw_row[r], 3
    return (sign * zpos[c]) * (mult[r] * pr[r]), cover[r], cover[r], 1


@njit(_nrt=False)
def exact_total(j, n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row, cap_usd,
                mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start, pu_order, q,
                pos_row, kind, settlement, contract_size, forward, strike, is_call, const,
                outs, write):
    """The account's exact joint P&L (USD) in its scenario ``j``; with ``write``, each unit's
    figures there and its positions' own losses into ``outs``."""
    t = 0.0
    for m in range(nu):
        u = units[m]
        r = unit_row[u]
        c = ucol[m]
        px = unit_px[u]
        sh, lw, gw, nv = scenario(j, n_js, j0, B, c, r, pr, gw_row, mult, cover, zpos,
                                  js_shock, js_lw, js_gw, js_nvol)
        y, v = exact_unit(u, pu_start, pu_order, q, pos_row, sh, nv, lw, gw, cap_usd[r] / px,
                          kind, settlement, contract_size, forward, strike, is_call, const)
        t += y * px
        if write:
            outs[6][u] = y
            outs[7][u] = (VOL_UP, VOL_SAME, VOL_DOWN)[v]
            outs[8][u] = sh
            outs[9][u] = lw
            l1p = math.log1p(sh)
            for k in range(pu_start[u], pu_start[u + 1]):
                p = pu_order[k]
                outs[10][p] = -lw * q[p] * cell(pos_row[p], sh, l1p, v, kind, settlement,
                                                contract_size, forward, strike, is_call,
                                                const)
    return t


@njit(_nrt=False)
def refine(a, cand, n_c, tot, n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row,
           cap_usd, mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start, pu_order, q,
           pos_row, kind, settlement, contract_size, forward, strike, is_call, const, k0,
           cells, uval, uvol, earg, eslot, outs):
    """The exact refinement of account ``a``: its ``n_c`` candidates ``cand`` (scenario
    order) revalued exactly (:func:`exact_cells`, totals into ``tot``), the binding one
    (:func:`binding_candidate`) recorded and its figures written into ``outs`` (from the
    cells kept while it was the lowest, :func:`write_cells`, else revalued again).  The full
    kernel's and the Monitor's tick's (:func:`pmrisk.kernel.joint_tick.joint_tick`) one
    pass, so a tick settles an account with the full kernel's bits; ``k0`` the account's
    first position, ``cells`` ... ``eslot`` the scratch of :func:`exact_cells`."""
    worst, _, _, bind_kind, bind_index, bind_shock, _, _, unit_shock, _, _ = outs
    lowest = np.inf
    cur = 0
    i_low = -1
    for i in range(n_c):
        t = exact_cells(cand[i], n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row,
                        cap_usd, mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start,
                        pu_order, q, pos_row, kind, settlement, contract_size, forward, strike,
                        is_call, const, k0, cells[cur], uval[cur], uvol[cur], earg, eslot)
        tot[i] = t
        if t < lowest or t != t:
            lowest = t
            i_low = i
            cur = 1 - cur
    bind = binding_candidate(tot, n_c)
    j = cand[bind]
    record_binding(a, j, tot[bind], n_js, j0, worst, bind_kind, bind_index)
    # the binding scenario: each unit's value, vol, move, loss weight and its positions'
    # own losses (from the kept cells when it is the lowest, else revalued again)
    if bind == i_low:
        write_cells(j, n_js, j0, B, nu, units, ucol, unit_row, pr, gw_row, mult, cover, zpos,
                    js_shock, js_lw, js_gw, js_nvol, pu_start, pu_order, q, pos_row, kind,
                    settlement, contract_size, forward, strike, is_call, const, k0,
                    cells[1 - cur], uval[1 - cur], uvol[1 - cur], outs)
    else:
        exact_total(j, n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row, cap_usd,
                    mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start, pu_order, q,
                    pos_row, kind, settlement, contract_size, forward, strike, is_call, const,
                    outs, True)
    for m in range(nu):
        bind_shock[a, ucol[m]] = unit_shock[units[m]]


@njit(_nrt=False)
def exact_cells(j, n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row, cap_usd,
                 mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start, pu_order, q,
                 pos_row, kind, settlement, contract_size, forward, strike, is_call, const, k0,
                 cells, uval, uvol, earg, eslot):
    """:func:`exact_total` (same arithmetic, same total) keeping each position's cells
    (``cells[k - k0, v]``, ``k`` its place in ``pu_order``; positions without quantity are
    skipped) and each unit's weighted value and vol state (``uval``, ``uvol``, by ``m``).

    Per unit, the cells of its options whose sigma*sqrt(T) is normal (at least
    ``MIN_STDDEV``, finite) are priced in passes, as :func:`pmrisk.kernel.grid.grid_row`
    prices a row: the two ``erfc`` arguments of every such cell (``earg``, with its slot
    ``3 s + v`` in ``eslot``), the ``erfc`` calls alone, then the values; each is
    :func:`cell`'s arithmetic in its order, so the same bits.  Other cells go through
    :func:`cell`.  The unit's sums then run over its positions in their order."""
    t = 0.0
    for m in range(nu):
        u = units[m]
        r = unit_row[u]
        c = ucol[m]
        px = unit_px[u]
        sh, lw, gw, nv = scenario(j, n_js, j0, B, c, r, pr, gw_row, mult, cover, zpos,
                                  js_shock, js_lw, js_gw, js_nvol)
        l1p = math.log1p(sh)
        v_lo = 1 if nv == 1 else 0
        v_hi = 2 if nv == 3 else 1
        n_e = 0
        for k in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[k]
            if q[p] == 0.0:
                continue
            i = pos_row[p]
            s = k - k0
            if kind[i] != OPTION:
                y = cell(i, sh, l1p, v_lo, kind, settlement, contract_size, forward, strike,
                         is_call, const)
                cells[s, 0] = y
                cells[s, 1] = y
                cells[s, 2] = y
                continue
            ln_fk = const[i, 1] + l1p
            call = is_call[i] == 1
            for v in range(v_lo, v_hi + 1):
                sd = const[i, 3 + v]
                if not (sd >= MIN_STDDEV and sd < math.inf):
                    cells[s, v] = cell(i, sh, l1p, v, kind, settlement, contract_size,
                                       forward, strike, is_call, const)
                    continue
                d1 = ln_fk / sd + 0.5 * sd
                d2 = d1 - sd
                if call:        # N(d1), N(d2) = erfc(-d / SQRT2) / 2; put N(-d2), N(-d1)
                    earg[0, n_e] = -d1 / SQRT2
                    earg[1, n_e] = -d2 / SQRT2
                else:
                    earg[0, n_e] = d2 / SQRT2
                    earg[1, n_e] = d1 / SQRT2
                eslot[n_e] = 3 * s + v
                n_e += 1
        for e in range(n_e):
            earg[0, e] = erfc(earg[0, e])
            earg[1, e] = erfc(earg[1, e])
        for e in range(n_e):
            s = eslot[e] // 3
            v = eslot[e] - 3 * s
            i = pos_row[pu_order[k0 + s]]
            fs = forward[i] * (1.0 + sh)
            K = strike[i]
            if is_call[i] == 1:
                x = fs * (0.5 * earg[0, e]) - K * (0.5 * earg[1, e])
            else:
                x = K * (0.5 * earg[0, e]) - fs * (0.5 * earg[1, e])
            x = const[i, 2] * (x if (x > 0.0 or x != x) else 0.0)
            if settlement[i] == INVERSE:
                x /= fs
            cells[s, v] = contract_size[i] * (x - const[i, 0]) * 1.0
        x0 = 0.0
        x1 = 0.0
        x2 = 0.0
        for k in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[k]
            qp = q[p]
            if qp == 0.0:
                continue
            s = k - k0
            if nv == 1:
                x1 += qp * cells[s, 1]
            elif kind[pos_row[p]] != OPTION:
                y = qp * cells[s, 0]
                x0 += y
                x1 += y
                x2 += y
            else:
                x0 += qp * cells[s, 0]
                x1 += qp * cells[s, 1]
                x2 += qp * cells[s, 2]
        cap = cap_usd[r] / px
        if nv == 1:
            y = weigh_cell(x1, lw, gw, cap, 0.0)
            v = 1
        else:
            y = weigh_cell(x0, lw, gw, cap, 0.0)
            v = 0
            y1 = weigh_cell(x1, lw, gw, cap, 0.0)
            if _better(y1, 1, y, v):
                y = y1
                v = 1
            y2 = weigh_cell(x2, lw, gw, cap, 0.0)
            if _better(y2, 2, y, v):
                y = y2
                v = 2
        uval[m] = y
        uvol[m] = v
        t += y * px
    return t


@njit(_nrt=False)
def write_cells(j, n_js, j0, B, nu, units, ucol, unit_row, pr, gw_row, mult, cover, zpos,
                 js_shock, js_lw, js_gw, js_nvol, pu_start, pu_order, q, pos_row, kind,
                 settlement, contract_size, forward, strike, is_call, const, k0, cells, uval,
                 uvol, outs):
    """:func:`exact_total`'s ``write`` from the cells :func:`exact_cells` kept for scenario
    ``j`` (a position without quantity: its cell again, for the sign of its zero loss)."""
    for m in range(nu):
        u = units[m]
        r = unit_row[u]
        sh, lw, gw, nv = scenario(j, n_js, j0, B, ucol[m], r, pr, gw_row, mult, cover, zpos,
                                  js_shock, js_lw, js_gw, js_nvol)
        v = uvol[m]
        outs[6][u] = uval[m]
        outs[7][u] = (VOL_UP, VOL_SAME, VOL_DOWN)[v]
        outs[8][u] = sh
        outs[9][u] = lw
        for k in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[k]
            if q[p] == 0.0:
                outs[10][p] = -lw * q[p] * cell(pos_row[p], sh, math.log1p(sh), v, kind,
                                                settlement, contract_size, forward, strike,
                                                is_call, const)
            else:
                outs[10][p] = -lw * q[p] * cells[k - k0, v]


@njit(parallel=True)
def joint_stress(sel, acc, grp, ins, grid, outs):
    """Joint worst case of the accounts ``sel`` (module docstring), written into ``outs``.

    Parameters
    ----------
    sel : int64[n_sel]
        Accounts to compute.
    acc : tuple
        ``(ua_start, pu_start, pu_order, q, pos_row, unit_row, unit_px, slope, acc_group)``:
        units by account (CSR over units sorted by account), positions by unit (CSR),
        positions' quantity (0 = no risk) and revaluation row, units' underlying row, USD price
        of the settlement currency and USD P&L per unit relative move, accounts' group (-1:
        none).
    grp : tuple
        Groups of underlying rows: ``g_d[G]``, ``g_rows[G, D]``, ``g_col[G, n_rows]`` (column
        of a row, -1), ``g_j0[G+1]`` (their joint scenarios' offsets), ``g_buckets[G]``,
        ``g_rho[G, D, D]``; joint scenarios ``js_shock, js_lw, js_gw [NJ, D]``,
        ``js_nvol[NJ]``; per row ``pr`` (price range), ``gw_row`` (gain weight),
        ``cap_usd``, ``mult`` (extreme multiple), ``cover``; ``tails`` (joint tails on),
        ``max_candidates``; the groups' directions ``g_m[G]`` (a group's scenarios are the
        no-move one, then per shell k = 1..B its ``g_m`` directions, then their tails) and
        per direction (rows ``g_dir0[g] + dr``) and column the grid interval of its outer
        shell's move ``dir_iv`` and of its tail's ``dir_ivt``.
    ins : tuple
        Revaluation rows: ``(kind, settlement, contract_size, forward, strike, is_call,
        const)``, ``const`` from :func:`pricing_constants`.
    grid : tuple
        ``(use_grid, icurve[R, W], curve_of_row[n_rev_rows], n_side, tail_side[n_rows],
        tail_range[n_rows], vol_code[n_rows, W], error_factor)``.
    outs : tuple
        Written at the selected accounts, their units and positions: ``worst`` (USD),
        ``n_joint``, ``n_exact``, ``bind_kind`` (:data:`BIND_JOINT`, :data:`BIND_DELTA`,
        :data:`BIND_NONE`), ``bind_index`` (global joint scenario or delta direction),
        ``bind_shock[n_acc, D]``; per unit ``unit_value`` (weighted, settlement currency),
        ``unit_vol`` (vol code), ``unit_shock``, ``unit_lw``; per position ``pos_loss``.
    """
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    clusters, tab = scan_setup(n, grp, grid)
    for c in prange(chunks):
        joint_stress_rows(sel, c * n // chunks, (c + 1) * n // chunks, acc, grp, ins, grid,
                          outs, clusters, tab)


@njit(parallel=True)
def joint_stress_set(sel, acc, grp, ins, grid, outs, setup):
    """:func:`joint_stress` with the scan's clusters and tables ``setup`` given
    (:func:`scan_setup`, built once for a run cut in blocks of accounts, each block a call:
    what they hold changes how fast a scan is, never what it finds)."""
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    clusters, tab = setup
    for c in prange(chunks):
        joint_stress_rows(sel, c * n // chunks, (c + 1) * n // chunks, acc, grp, ins, grid,
                          outs, clusters, tab)


@njit
def joint_stress_serial(sel, acc, grp, ins, grid, outs):
    """:func:`joint_stress` on the calling thread (small selections)."""
    clusters, tab = scan_setup(sel.shape[0], grp, grid)
    joint_stress_rows(sel, 0, sel.shape[0], acc, grp, ins, grid, outs, clusters, tab)


@njit
def scan_setup(n_sel, grp, grid):
    """``(clusters, tab)`` of a run on ``n_sel`` accounts: the directions' clusters
    (:func:`_clusters`) and the scan's tables (:func:`scan_tables`), pure functions of the
    groups, the grid and whether ``n_sel`` reaches ``CLUSTER_MIN`` and ``TABLE_MIN``."""
    clusters = _clusters(n_sel, grp)
    return clusters, scan_tables(n_sel, grp, grid, clusters)


@njit
def _clusters(n_sel, grp):
    """The directions' clusters for a run on ``n_sel`` accounts: of ``CLUSTER`` directions
    from ``CLUSTER_MIN`` accounts on (building them pays there), else of one."""
    return direction_clusters(grp[0], grp[17], grp[18], grp[19], grp[20],
                              CLUSTER if n_sel >= CLUSTER_MIN else 1)



@njit
def scan_tables(n_sel, grp, grid, clusters):
    """The tables :func:`_scan` reads for a run on ``n_sel`` accounts with the directions'
    ``clusters`` (:func:`direction_clusters`): ``(t_i0, t_w, t_iv, s_c0, s_iv, s_j, t_ivc,
    t_j)``, the joint scenarios' windows and weights (:func:`_interp_table`), the
    directions' shell intervals side by side (:func:`_shell_table`) and the clusters' shells
    and tails in slots (:func:`_slot_table`).  Built from ``TABLE_MIN`` accounts on (~0.5 ms
    for three groups of 3,000 scenarios; each account interpolates a few dozen scenarios and
    bounds a few hundred shells, so tabulating pays there), else empty (each computed or
    read where needed).  Either way the same scenarios are candidates, interpolated to the
    same bits."""
    if n_sel >= TABLE_MIN and grid[0]:
        t_i0, t_w = _interp_table(grp[0], grp[1], grp[3], grp[6], grp[9], grp[10], grid[5],
                                 grid[4], grid[3])
        s_c0, s_iv, s_j, t_ivc, t_j, c_rng = _slot_table(grp[0], grp[3], grp[4], grp[17],
                                                         grp[18], grp[21], grp[20], clusters)
        return (t_i0, t_w, _shell_table(grp[0], grp[3], grp[4], grp[17], grp[18], grp[21]),
                s_c0, s_iv, s_j, t_ivc, t_j, c_rng)
    e1 = np.zeros(0, dtype=np.int64)
    e2 = np.zeros((0, 0), dtype=np.int64)
    return (np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1, 4)),
            np.zeros((0, 1, 1), dtype=np.int64), e1, e2, e1, e2, e1,
            np.zeros((4, 0, 0), dtype=np.int64))

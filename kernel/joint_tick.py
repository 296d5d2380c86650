"""Joint stress on a Monitor tick, incrementally: :func:`joint_tick` settles an account from
what the last full run kept, or sends it back to the full kernel (:func:`pmrisk.kernel.joint.
joint_stress`), and the figures are the full kernel's to the bit either way.

Why the full kernel's result follows from a few scenarios.  The full kernel
(:func:`pmrisk.kernel.joint.joint_stress_rows`) computes, per account, its units' grid
curves, their bound ``tol``, the *interpolated* total of every scenario it does not prune
(the group's joint scenarios, the account's delta directions), ``lowest`` (the least of
them: a pruned direction's scenarios all lie above ``lowest + 2.5 tol``), the band
``lowest + 2 tol`` and its candidates (every scenario whose interpolated total is in the
band), which it revalues exactly, in scenario order; the lowest exact total binds (ties: the
first).  Its result depends on the candidates only.  So if, for an account, a set ``S`` of
joint scenarios is known such that **every joint scenario outside S has an interpolated
total above the band**, then the candidates are those of S and of the delta directions whose
interpolated totals are in the band; computing those interpolated totals with the same
functions, in the same order, gives the same ``lowest``, the same band, the same candidates,
and the same exact refinement (:func:`pmrisk.kernel.joint.refine`, the same function)
gives the same bits.  No assumption on the interpolation error is needed for this
equality: it holds whenever the full kernel's own result holds.

What is kept per account (``keep = (keep_j, keep_v, keep_n, keep_lb, ucurve, utol,
usize, urec, udrift, keep_lb0, utol_ok, upath, keep_p, ulv)``):

* ``keep_j[a, :keep_n[a]]``: up to ``K_KEEP`` joint scenarios (the account's scenario
  numbers, ascending), the lowest interpolated totals at the last record
  (:func:`joint_record`), which must include every joint candidate of the band (else no
  record); ``keep_v[a, i]``: scenario ``keep_j[a, i]``'s interpolated total when last
  computed less the account's drift then (below: ``keep_v[a, i] - drift`` is a lower bound
  of it now);
* ``keep_lb[a]`` (USD): a lower bound of the interpolated total of every *other* joint
  scenario at the current curves, ``keep_lb0[a]`` (the bound at the record) less the
  account's drift and a rounding allowance; ``keep_lb0[a]`` is the least of the other
  computed totals and of the lower bounds of the scenarios not computed (the full kernel's
  own interval bounds, :func:`pmrisk.kernel.joint.interval_bounds`: per direction their
  running minima outward from the centre, per shell its own intervals), minus a rounding
  allowance.  A record computes a scenario when its bound is within ``gap`` x ``|lowest|``
  of ``lowest`` (far more than the full kernel's ``2.5 tol``, so that the bound leaves room
  for the ticks to come) and not above the ``K + 1``-th lowest total computed so far (a
  scenario above that could be neither kept nor the least of the others), the directions of
  lowest bound first; so ``keep_lb0[a]`` is the ``K + 1``-th lowest total itself whenever
  the gap does not bind;
* ``keep_n[a] < 0``: no record (-1: never recorded, too many band candidates, a curve not
  finite; -2: its record deferred by the caller,
  :meth:`pmrisk.engine.correlated.JointStress.tick`): the account takes the full kernel;
* per unit of a recorded account: ``ucurve[u]``, its curve at the current marks (the full
  kernel's arithmetic, so the same bits), ``utol[u]`` and ``usize[u]``, its share of
  ``tol`` and its size (USD; ``utol_ok[u]`` False: ``utol[u]`` is an upper bound of it,
  below); ``urec[u]``, its curve in USD (``px c``) at the record, and
  ``udrift[u]``, the bound below of how far its USD curve has moved from there, and
  ``upath[u]`` of the length of the path it took (below); per kept scenario ``keep_p[a,
  i]``, its total when last computed plus the account's path then; ``ulv[u, i]``, the
  full kernel's interval bound (:func:`pmrisk.kernel.joint.interval_bounds`, USD: loss
  weight 1, gain weight ``pnl_offset``, as the shells weigh) of its curve at the record on
  shell node interval ``i``.  A tick rebuilds only the units that moved.

How a tick moves the bounds.  A joint scenario's moves, loss and gain weights do not change
with the marks.  Its interpolated total is ``sum_u W_u``, ``W_u`` the unit's USD value:
``min`` over its vol states of ``px * weigh(P c (s), lw, gw, cap_usd / px)`` with ``P c``
the cubic (4-node Lagrange) interpolant of the unit's curve ``c`` (settlement currency) at
its move ``s`` and ``px`` its USD price.  For ``px > 0`` this is
``weigh(P(px c)(s), lw, gw, cap_usd)``; ``weigh`` is ``max(lw, gw)``-Lipschitz, the
minimum over vol states 1-Lipschitz, and ``P`` linear with ``|P y (s)| <= LEBESGUE *
max |y|`` over the nodes (the Lebesgue constant of 4 equispaced nodes is 1.631 anywhere in
their span, edge windows included).  So from one state (curve ``c'``, price ``px'``) to
another, every joint scenario's interpolated total moves by at most the sum, over the units,
of ``LEBESGUE x (max(1, pnl_offset) x max |px c - px' c'| over the shell cells +
cover_fraction x the same over the tail cells)`` (the shells weigh losses 1 and gains
``pnl_offset``, the tails both ``cover_fraction``).  ``px c - px' c'`` is taken cell by
cell, so a unit whose USD P&L does not move with its settlement price (an inverse future)
costs nothing.  A tick takes that distance from the *record* (``urec``), not from the tick
before: a unit's ``udrift`` is the distance of its current USD curve from its record (plus
``1e-12`` of both sizes, for rounding), recomputed when it moves, and an account's
``drift`` is the sum over its units.  Marks that wander up and down cost the distance
travelled from the record, not the sum of the steps.  ``keep_lb0 - drift`` bounds every
other joint scenario now; a kept scenario computed at a tick with drift ``D'`` to a total
``T'`` is at least ``T' - D' - drift`` now (the distance between two states is at most the
sum of their distances to the record), so ``keep_v`` holds ``T' - D'`` (the larger of that
and what it held).  A kept scenario computed recently has a tighter bound from the steps
since: a unit's ``upath`` is the sum of the same distance between its curves at the
account's successive runs since the record (each step from the last run's curve and price
to the new ones), an account's ``path`` the sum over its units, and ``keep_p`` holds
``T' + P'`` (``P'`` the path then; the larger of that and what it held), so
``keep_p - path`` bounds the scenario's total now (the distance between two states is at
most the sum of the steps between them).  A kept scenario is computed when the larger of
its two bounds reaches the band: near the band, each tick's step; further above, rarely;
without the path bound the record's distance grows over the ticks (the benchmark's random
walk: ~sqrt(ticks)) until every kept scenario is computed on every tick.  Every comparison
also subtracts ``1e-12`` of the sizes involved.  The bounds hold over any number of ticks;
a full run records afresh.  The bound needs no
assumption on the interpolation error: it is about interpolated totals, which is what the
full kernel's band compares.

The tick, per account of the selection (:func:`joint_tick_rows`):

1. the curves of its units that moved (a position's revaluation row in ``row_moved``, or
   the USD price against ``px_prev``), rebuilt as the full kernel builds them (in place of
   the kept curve); their size and ``udrift`` against the record; for their share of
   ``tol``, an upper bound (:func:`tol_bound`: the curve is a quantity-weighted sum of
   its rows' curves, so its largest 4th difference is at most the ``|q|``-weighted sum of
   theirs, :func:`row_bounds`, taken once per repriced row);
2. ``keep_lb`` = ``keep_lb0`` less the account's drift;
3. the delta directions ``+-z*`` (the units' slopes move every tick): their tails' and the
   shell direction of least bound's interpolated totals, then those of each other shell
   direction whose bound reaches the band so far (:func:`_direction_bounds`: per unit the
   record's interval bound ``ulv`` at the direction's move, which bounds the unit's
   weighted interpolant there at the record, less the account's drift, as the kept
   scenarios'; the band only narrows as totals come in, so a direction above it stays
   above the final band); then the kept joint scenarios whose bound reaches the band so
   far, the one of lowest bound first; ``lowest`` the least total, the band
   ``lowest + 2 tol``;
   With bounds in ``tol``, the band is bracketed by those of the lower tol (the bounds
   left out) and the upper (the bounds in): when ``keep_lb`` is above the upper band and
   no total lies between the two, the candidates are the same as at the exact tol;
   otherwise those units' exact tol (:func:`curve_tol_fast` of the rebuilt curve, the
   full kernel's bits) replaces their bound first;
4. **fast** if ``keep_lb > band``: every other joint scenario lies above the band (so above
   ``lowest``: ``lowest`` is the full kernel's, so is the band), the candidates are the
   full kernel's, revalued exactly as it revalues them and the outputs written as it
   writes them (its exact pass, :func:`pmrisk.kernel.joint.refine`: the cells kept, the
   ``erfc`` calls in a vectorised loop, the figures written from the kept cells).  When
   the one candidate is the
   joint scenario that bound before, the units that did not move keep their figures there
   (the same bits) and only the moved units are revalued; the account is ``SAME`` if its
   description cannot change (same scenario, same vol states, a loss before and after);
5. otherwise ``FULL``: the caller runs the full kernel on those accounts and records them
   afresh (:func:`joint_record`).

An account without a group or active units is written as the full kernel writes it (no
joint loss).  NaN anywhere (curve, price, bound, totals) fails the test ``keep_lb > band``
and takes the full kernel, which reports it.  ``joint_revaluation = "exact"`` (no curves)
always takes the full kernel (:meth:`pmrisk.engine.correlated.JointStress.tick`).

Memory: per account ``K_KEEP`` scenario numbers and two bounds, per unit two curves
(``W`` float64 each, the grid's width: 324 with the ``standard`` preset) and the shells'
interval bounds (``2 n_side``: 80).  The tick is bound by memory more than by arithmetic,
so it asks the CPU early for what it will read (a hint, no figure depends on it): the next
account's state that it reads whole (:func:`_ask_ahead`), and, before rebuilding an
account's moved curves, the windows of the kept curves its direction of least bound, its
tails and its kept scenario of least bound will interpolate (:func:`_ask_windows`).

Accounts are independent: the parallel forms cut the selection into ``CHUNKS`` runs over the
threads, the ``_serial`` forms run on the calling thread; both call the same row function.
"""

import math

import llvmlite.ir as ir
import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import njit
from .assemble import CHUNKS
from .instruments import OPTION
from .joint import (BIND_JOINT, active_units, cell, curve_tol, group_directions, interp_add,
                    interp_delta, interp_direction, interval_bounds, refine, reset_account,
                    scenario, unit_curve, weighted_best)
from .scenarios import VOL_DOWN, VOL_SAME, VOL_UP

FAST, FULL, SAME = 0, 1, 2   # how a tick settled an account (SAME: fast, description unchanged)
K_KEEP = 64          # joint scenarios kept per account (more: fewer full runs, more to bound)
LEBESGUE = 1.7       # >= max over [0, 3] of sum_k |l_k(u)| for 4 equispaced nodes (1.6311)
ROUND = 1e-12        # rounding allowance, relative to the sizes involved
RECORD_GAP = 0.25    # a record computes the directions whose bound is within this share of
#                      |lowest| (and of 1e-3 of the account's curve size) above lowest
AHEAD = 1            # accounts: a tick asks for the state of the account this far ahead
LINE = 8             # float64 (or int64) values per cache line (64 bytes)


@intrinsic
def _prefetch(typingctx, ary, i):
    """Ask the CPU to bring the cache line of ``ary.flat[i]`` (a C-contiguous array) into
    its caches (LLVM's ``llvm.prefetch``, for reading): a hint, nothing is read or written,
    so no figure depends on it."""
    sig = types.void(ary, i)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        # read, locality 3 (keep in every level), data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _prefetch_rows(ary, r0, r1):
    """:func:`_prefetch` every cache line of the rows ``r0:r1`` of the 2-D array ``ary``."""
    width = ary.shape[1]
    for i in range(r0 * width, r1 * width, LINE):
        _prefetch(ary, i)


@njit(_nrt=False)
def _ask_ahead(b, ua_start, unit_px, px_prev, keep_n, keep_j, keep_v, keep_p, ucurve, urec,
               ulv):
    """Ask for what the tick reads whole of account ``b`` (:func:`_tick_accounts`), an
    account or so before it gets there: its units' interval bounds, the kept curve and the
    record of those whose price moved, its kept scenarios; asked early, the lines arrive
    while the account before is computed.  The other units' curves are read in a few
    windows only, asked for by :func:`_ask_windows` (asking for the whole curves costs
    more bandwidth than it saves waiting)."""
    u0 = ua_start[b]
    u1 = ua_start[b + 1]
    _prefetch_rows(ulv, u0, u1)
    for u in range(u0, u1):
        if px_prev[u] != unit_px[u]:
            _prefetch_rows(ucurve, u, u + 1)
            _prefetch_rows(urec, u, u + 1)
    n = keep_n[b]
    if n > 0:
        K = keep_v.shape[1]
        for i in range(b * K, b * K + n, LINE):
            _prefetch(keep_v, i)
            _prefetch(keep_p, i)
            _prefetch(keep_j, i)


@njit(inline="always")
def _ask_window(cv, t, n_nodes, c0, nv):
    """:func:`_prefetch` the cells of the flat ``cv`` a 4-node window at node position
    ``t`` reads (nodes at ``c0 + nv*i``; ``t`` approximate: it only asks)."""
    if t >= 0.0 and t <= n_nodes:
        i0 = min(max(int(t) - 1, 0), n_nodes - 4)
        _prefetch(cv, c0 + nv * i0)
        _prefetch(cv, c0 + nv * (i0 + 3) + nv - 1)


@njit(_nrt=False)
def _ask_windows(nu, units, ucol, unit_row, zpos, e_min, B, n_tails, jj, js_shock, js_nvol,
                 pr, mult, tail_range, tail_side, n_side, ucurve):
    """Ask for the lines of the kept curves ``ucurve`` that the shell direction ``e_min``,
    the tail directions (``n_tails``) and the joint scenario ``jj`` (-1: none) will read,
    per active unit (a unit that moved is rebuilt: its lines are asked for anyway)."""
    n_shell = 2 * n_side + 1
    width = ucurve.shape[1]
    for m in range(nu):
        u = units[m]
        c = ucol[m]
        r = unit_row[u]
        z = zpos[c]
        base = u * width
        if e_min >= 0:
            sign = -1.0 if e_min % 2 == 0 else 1.0
            _ask_window(ucurve, n_side * (1.0 + sign * ((e_min // 2 + 1) / B) * z), n_shell,
                        base, 3)
        ts = tail_side[r]
        if n_tails > 0 and ts > 0:
            x = z * mult[r] * pr[r] / tail_range[r]
            _ask_window(ucurve, (1.0 - x) * ts, 2 * ts + 1, base + 3 * n_shell, 1)
            _ask_window(ucurve, (1.0 + x) * ts, 2 * ts + 1, base + 3 * n_shell, 1)
        if jj >= 0:
            sh = js_shock[jj, c]
            if js_nvol[jj] == 3:
                _ask_window(ucurve, (sh / pr[r] + 1.0) * n_side, n_shell, base, 3)
            elif ts > 0:
                _ask_window(ucurve, (sh / tail_range[r] + 1.0) * ts, 2 * ts + 1,
                            base + 3 * n_shell, 1)


@njit(inline="always")
def _insert(bj, bv, nb, j, v):
    """Keep the ``len(bv)`` lowest values (ascending, ties: first come first) with their
    scenario numbers; returns the new count."""
    cap = bv.shape[0]
    if nb == cap and not v < bv[cap - 1]:
        return nb
    i = nb if nb < cap else cap - 1
    while i > 0 and bv[i - 1] > v:
        bv[i] = bv[i - 1]
        bj[i] = bj[i - 1]
        i -= 1
    bv[i] = v
    bj[i] = j
    return nb + 1 if nb < cap else nb


@njit(inline="always")
def _max(x, m):
    """``max(m, x)``, NaN sticky (a NaN ``x`` or ``m`` stays), without a branch."""
    return x if (x > m) | (x != x) else m


@njit(inline="always")
def _near(keep_v, keep_p, a, n, first, drift, path, scale, band, bnd, out):
    """The kept scenarios of account ``a`` but ``first`` whose bound (the larger of the
    drift's and the path's, as :func:`_tick_accounts` takes it) is not above ``band``, in
    order, into ``out``; returns their count.  The bounds in one loop without a branch
    (into ``bnd``: vectorised), then the count moves by the test on each."""
    for i in range(n):
        v = keep_v[a, i]
        bound = v - drift - ROUND * (LEBESGUE * scale + abs(v))
        vp = keep_p[a, i]
        bp = vp - path - ROUND * (LEBESGUE * scale + abs(vp) + path)
        bnd[i] = bp if bp > bound else bound
    m = 0
    for i in range(n):
        out[m] = i
        m += (bnd[i] <= band) & (i != first)
    return m


@njit(_nrt=False)
def _direction_bounds(nu, units, ucol, zpos, ulv, n_side, B, dlb):
    """Lower bounds (USD) of the account's shell delta directions' interpolated totals at
    the record, into ``dlb[:2 B]``: per unit the least of the record's interval bounds
    (``ulv``, the full kernel's :func:`pmrisk.kernel.joint.interval_bounds` at the recorded
    curve, loss weight 1 and gain weight ``pnl_offset`` as the directions weigh them) over
    the interval of the direction's move and its two neighbours (the move's rounding),
    summed over the units (the caller subtracts the account's drift since the record and
    the rounding allowance, as for the kept scenarios' bounds).  A move not in the grid, or
    NaN, bounds by ``-inf``.  Returns the direction of least bound (-1: none; NaN first)."""
    n_iv = 2 * n_side
    e_min = -1
    least = np.inf
    for e in range(2 * B):
        sign = -1.0 if e % 2 == 0 else 1.0
        f = (e // 2 + 1) / B
        lb = 0.0
        for m in range(nu):
            u = units[m]
            t = n_side * (1.0 + sign * f * zpos[ucol[m]])   # the move, in node intervals
            if not (t >= 0.0 and t <= n_iv):
                lb = -np.inf
                break
            i = int(t)
            x = ulv[u, i - 1] if i > 0 else np.inf
            y = ulv[u, i] if i < n_iv else np.inf
            z = ulv[u, i + 1] if i + 1 < n_iv else np.inf
            lb += min(x, min(y, z))
        b = lb
        dlb[e] = b
        if e_min < 0 or b < least or (b != b and least == least):
            e_min = e
            least = b
    return e_min


@njit(_nrt=False)
def _distances(new, rec, old, px, pp, lo, hi):
    """Over the cells ``lo:hi`` of a moved unit's new curve ``new`` (price ``px``): the
    largest USD distance from its record ``rec`` (``|px new - rec|``), from its last run
    ``old`` at price ``pp`` (``|px new - pp old|``), and the largest ``|new|``; then ``old``
    becomes ``new``.  The three maxima in one pass without a store (then the copy), taken
    over the doubles' bits (int64: ``|x|``'s bits are ordered as the ``|x|``, NaN above
    every other, so sticky; as :func:`pmrisk.kernel.joint.bits_max`); 0 if none."""
    my = 0
    mq = 0
    mz = 0
    for s in range(lo, hi):
        c = new[s]
        x = px * c
        b = np.float64(abs(x - rec[s])).view(np.int64)
        my = b if b > my else my
        b = np.float64(abs(x - pp * old[s])).view(np.int64)
        mq = b if b > mq else mq
        b = np.float64(abs(c)).view(np.int64)
        mz = b if b > mz else mz
    for s in range(lo, hi):
        old[s] = new[s]
    return (np.int64(my).view(np.float64), np.int64(mq).view(np.float64),
            np.int64(mz).view(np.float64))


@njit(inline="always")
def curve_tol_fast(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t):
    """:func:`pmrisk.kernel.joint.curve_tol` (without ``bounds``) to the bit: the same 4th
    differences by the same arithmetic, their largest and the largest |cell| taken in
    another order (a maximum does not depend on it), the three vol states side by side in
    one pass with the 2nd differences kept in registers.  Grids too short for that take
    :func:`pmrisk.kernel.joint.curve_tol` itself."""
    if n_shell < 5 or (0 < ts < 2):
        return curve_tol(cv, n_shell, ts, tail0, error_factor, bb, d2, d2t, False)
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    c20 = cv[6]
    c21 = cv[7]
    c22 = cv[8]
    c30 = cv[9]
    c31 = cv[10]
    c32 = cv[11]
    b00 = (cv[6] - cv[3]) - (cv[3] - cv[0])
    b01 = (cv[7] - cv[4]) - (cv[4] - cv[1])
    b02 = (cv[8] - cv[5]) - (cv[5] - cv[2])
    b10 = (c30 - c20) - (c20 - cv[3])
    b11 = (c31 - c21) - (c21 - cv[4])
    b12 = (c32 - c22) - (c22 - cv[5])
    for k in range(2, n_shell - 2):
        n0 = cv[3 * (k + 2)]
        n1 = cv[3 * (k + 2) + 1]
        n2 = cv[3 * (k + 2) + 2]
        b20 = (n0 - c30) - (c30 - c20)
        b21 = (n1 - c31) - (c31 - c21)
        b22 = (n2 - c32) - (c32 - c22)
        e0 = _max(abs((b20 - b10) - (b10 - b00)), e0)
        e1 = _max(abs((b21 - b11) - (b11 - b01)), e1)
        e2 = _max(abs((b22 - b12) - (b12 - b02)), e2)
        b00 = b10
        b01 = b11
        b02 = b12
        b10 = b20
        b11 = b21
        b12 = b22
        c20 = c30
        c21 = c31
        c22 = c32
        c30 = n0
        c31 = n1
        c32 = n2
    err = _max(e2, _max(e1, e0))
    if ts > 0:
        t = tail0
        b0 = (cv[t + 2] - cv[t + 1]) - (cv[t + 1] - cv[t])
        b1 = (cv[t + 3] - cv[t + 2]) - (cv[t + 2] - cv[t + 1])
        for k in range(2, 2 * ts - 1):
            b2 = (cv[t + k + 2] - cv[t + k + 1]) - (cv[t + k + 1] - cv[t + k])
            err = _max(abs((b2 - b1) - (b1 - b0)), err)
            b0 = b1
            b1 = b2
    z0 = 0.0
    z1 = 0.0
    z2 = 0.0
    width = cv.shape[0]
    for s in range(0, width - 2, 3):
        z0 = _max(abs(cv[s]), z0)
        z1 = _max(abs(cv[s + 1]), z1)
        z2 = _max(abs(cv[s + 2]), z2)
    for s in range(width - width % 3, width):
        z0 = _max(abs(cv[s]), z0)
    size = _max(z2, _max(z1, z0))
    return error_factor * err + 1e-9 * size, size


@njit(inline="always")
def tol_bound(u, pu_start, pu_order, q, pos_row, curve_of_row, row_t, row_s, error_factor):
    """An upper bound of unit ``u``'s :func:`curve_tol_fast` tol (settlement currency)
    from its rows' (:func:`row_bounds`): its curve is the quantity-weighted sum of theirs,
    so its largest |4th difference| is at most ``sum |q| row_t`` and its size at most
    ``sum |q| row_s``; plus the rounding of that sum and of the differences (``1e-14`` of
    ``sum |q| row_s`` per position, and 10 more).  NaN or inf if a row's is."""
    t = 0.0
    a = 0.0
    n = 0
    for mm in range(pu_start[u], pu_start[u + 1]):
        p = pu_order[mm]
        qp = q[p]
        if qp == 0.0:
            continue
        ci = curve_of_row[pos_row[p]]
        t += abs(qp) * row_t[ci]
        a += abs(qp) * row_s[ci]
        n += 1
    return error_factor * t + (1e-9 + error_factor * (n + 10) * 1e-14) * a


@njit
def row_bounds(icurve, rows, n_shell, tail_side, tail0, row_t, row_s):
    """For the grid curves ``icurve[rows]``: ``row_t`` at least the largest |4th
    difference| (:func:`curve_tol_fast` with error factor 1: that plus 1e-9 of the size,
    the tail taken to the longest tail of ``tail_side``, a superset of its own), ``row_s``
    the largest |cell|; what :func:`tol_bound` sums.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.joint_tick import row_bounds
    >>> cv = np.zeros((1, 3 * 9 + 9))
    >>> cv[0, :27] = np.repeat(np.arange(9.0) ** 4, 3)     # x^4: 4th difference 24
    >>> t, s = np.zeros(1), np.zeros(1)
    >>> row_bounds(cv, np.array([0]), 9, np.array([4]), 27, t, s)
    >>> bool(24.0 <= t[0] <= 24.0 + 1e-9 * 4096.0 * 1.001), float(s[0])
    (True, 4096.0)
    """
    ts = tail_side.max() if tail_side.shape[0] else 0
    m = max(n_shell, 2 * ts + 1)
    bb = np.empty(m)
    d2 = np.empty(m)
    d2t = np.empty(m)
    for k in range(rows.shape[0]):
        i = rows[k]
        t, s = curve_tol_fast(icurve[i], n_shell, ts, tail0, 1.0, bb, d2, d2t)
        row_t[i] = t
        row_s[i] = s


@njit(_nrt=False)
def _kth(x, n, k):
    """The ``k``-th smallest of ``x[:n]`` (0: the least; NaN last), reordering ``x[:n]`` in
    place (Hoare's selection: no allocation).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.joint_tick import _kth
    >>> float(_kth(np.array([5.0, 1.0, 4.0, 2.0, 3.0]), 5, 1))
    2.0
    """
    lo = 0
    hi = n - 1
    while lo < hi:
        pivot = x[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while x[i] < pivot or (pivot != pivot and x[i] == x[i]):
                i += 1
            while pivot < x[j] or (x[j] != x[j] and pivot == pivot):
                j -= 1
            if i <= j:
                t = x[i]
                x[i] = x[j]
                x[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return x[k]
    return x[k]


@njit
def joint_record_rows(sel, lo, hi, acc, grp, grid, keep, gap):
    """:func:`joint_record` for the accounts ``sel[lo:hi]``: the scratch, then the loop."""
    ua_start, acc_group = acc[0], acc[8]
    g_rows, g_j0, g_buckets, g_m = grp[1], grp[3], grp[4], grp[17]
    icurve, n_side, tail_side = grid[1], grid[3], grid[4]
    K = keep[0].shape[1]
    d_max = g_rows.shape[1]
    width = icurve.shape[1]
    max_units = 1
    max_scen = 1
    for k in range(lo, hi):
        a = sel[k]
        max_units = max(max_units, ua_start[a + 1] - ua_start[a])
        g = acc_group[a]
        if g >= 0:
            max_scen = max(max_scen, g_j0[g + 1] - g_j0[g] + 2 * g_buckets[g] + 2)
    units = np.empty(max_units, dtype=np.int64)
    ucol = np.empty(max_units, dtype=np.int64)
    curves = np.zeros((max_units, width))
    tot = np.empty(max_scen)
    gvec = np.empty(d_max)
    zpos = np.empty(d_max)
    w = np.empty(4)
    lv = np.empty((max_units, 2 * n_side))
    lvr = np.empty((max_units, 2 * n_side))
    lvt = np.empty((max_units, max(2 * tail_side.max(), 1)))
    d2 = np.empty(max(2 * n_side + 1, 2 * tail_side.max() + 1))
    d2t = np.empty(d2.shape[0])
    bb = np.empty(d2.shape[0])
    bj = np.empty(K + 1, dtype=np.int64)
    bv = np.empty(K + 1)
    m_max = g_m.max() if g_m.shape[0] else 0
    dlb = np.empty(m_max)
    dlbt = np.empty(m_max)
    srt = np.empty(m_max)
    dummy = (np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
             np.empty(0, np.int64), np.empty((0, 0)), np.empty(0), np.empty(0, np.int64),
             np.empty(0), np.empty(0), np.empty(0))
    _record_accounts(sel, lo, hi, acc, grp, grid, keep, gap, units, ucol, curves, tot, gvec,
                     zpos, w, lv, lvr, lvt, d2, d2t, bb, bj, bv, dlb, dlbt, srt, dummy)


@njit(_nrt=False)
def _record_accounts(sel, lo, hi, acc, grp, grid, keep, gap, units, ucol, curves, tot, gvec,
                     zpos, w, lv, lvr, lvt, d2, d2t, bb, bj, bv, dlb, dlbt, srt, dummy):
    """:func:`joint_record_rows`' loop over its accounts, with the scratch it allocated:
    compiled without reference counting (it allocates nothing), as :func:`_tick_accounts`."""
    (ua_start, pu_start, pu_order, q, pos_row, unit_row, unit_px, slope, acc_group) = acc
    (g_d, g_rows, g_col, g_j0, g_buckets, g_rho, js_shock, js_lw, js_gw, js_nvol, pr, gw_row,
     cap_usd, mult, cover, tails, max_candidates, g_m, g_dir0, dir_iv, dir_ivt, js_iv) = grp
    (use_grid, icurve, curve_of_row, n_side, tail_side, tail_range, vol_code,
     error_factor) = grid
    (keep_j, keep_v, keep_n, keep_lb, ucurve, utol, usize, urec, udrift, keep_lb0,
     utol_ok, upath, keep_p, ulv) = keep
    K = keep_j.shape[1]
    width = icurve.shape[1]
    n_shell = 2 * n_side + 1
    tail0 = 3 * n_shell
    for k in range(lo, hi):
        a = sel[k]
        keep_n[a] = -1
        keep_lb[a] = -np.inf
        g = acc_group[a]
        if not use_grid or g < 0:
            continue
        nu = active_units(a, g, ua_start, pu_start, pu_order, q, unit_row, g_col, units, ucol,
                          dummy, False)
        if nu == 0:
            continue
        tol = 0.0
        scale = 0.0
        for m in range(nu):
            u = units[m]
            if not unit_px[u] > 0.0:            # the drift bound needs a positive price
                tol = np.nan
            unit_curve(u, pu_start, pu_order, q, pos_row, icurve, curve_of_row, curves[m])
            e, size = curve_tol(curves[m], n_shell, tail_side[unit_row[u]], tail0,
                                error_factor, bb, d2, d2t, False)
            utol[u] = e * unit_px[u]
            utol_ok[u] = True
            usize[u] = size * unit_px[u]
            tol += utol[u]
            scale += usize[u]
            udrift[u] = 0.0
            upath[u] = 0.0
            for s in range(width):
                ucurve[u, s] = curves[m, s]
                urec[u, s] = unit_px[u] * curves[m, s]
        if not (abs(tol) < np.inf and abs(scale) < np.inf):
            continue
        d, j0, n_js, B, n_dd, n_all = group_directions(
            g, nu, units, ucol, slope, g_d, g_j0, g_buckets, g_rows, g_rho, pr, gvec, zpos,
            tails)
        for m in range(nu):
            r = unit_row[units[m]]
            interval_bounds(curves[m], 0, 3, n_shell, 1.0, gw_row[r],
                            cap_usd[r] / unit_px[units[m]], d2, lv[m])
            for i in range(2 * n_side):
                lvr[m, i] = lv[m, i] * unit_px[units[m]]
                ulv[units[m], i] = lvr[m, i]
            for i in range(n_side, 2 * n_side):
                if i > n_side and lv[m, i - 1] < lv[m, i]:
                    lv[m, i] = lv[m, i - 1]
            for i in range(n_side - 1, -1, -1):
                if i < n_side - 1 and lv[m, i + 1] < lv[m, i]:
                    lv[m, i] = lv[m, i + 1]
            ts = tail_side[r]
            if ts > 0:
                interval_bounds(curves[m], tail0, 1, 2 * ts + 1, cover[r], cover[r],
                                cap_usd[r] / unit_px[units[m]], d2, lvt[m])
        for j in range(n_js, n_all):
            tot[j] = 0.0
        tot[0] = 0.0
        for m in range(nu):
            interp_add(curves[m], units[m], ucol[m], unit_row, unit_px, cap_usd, 0, 1, j0,
                       js_shock, js_lw, js_gw, js_nvol, pr, tail_range, tail_side, n_side, w,
                       tot)
            interp_delta(curves[m], units[m], ucol[m], unit_row, unit_px, cap_usd, n_js,
                         n_all, B, zpos, pr, gw_row, mult, cover, tail_range, tail_side,
                         n_side, w, tot)
        lowest = tot[0]
        for j in range(n_js, n_all):
            if tot[j] < lowest or tot[j] != tot[j]:
                lowest = tot[j]
        if lowest != lowest:
            continue
        nb = _insert(bj, bv, 0, 0, tot[0])
        m_dir = g_m[g]
        for dr in range(m_dir):             # each direction's lower bound, shell and tail
            dd = g_dir0[g] + dr
            lb = 0.0
            for m in range(nu):
                lb += lv[m, dir_iv[dd, ucol[m]]] * unit_px[units[m]]
            dlb[dr] = lb
            lb = np.inf
            if tails:
                lb = 0.0
                for m in range(nu):
                    lb += lvt[m, dir_ivt[dd, ucol[m]]] * unit_px[units[m]]
            dlbt[dr] = lb
        # the directions of lowest bound first (enough shells for K + 1 totals), then
        # the others; a direction is computed when its bound is within the gap of
        # ``lowest`` and below the (K+1)-th lowest total so far (both only fall), else its
        # bound counts: either way every other joint scenario ends above the bound kept
        for s in range(m_dir):
            srt[s] = dlb[s]
        first = _kth(srt, m_dir, min((K + B) // max(B, 1), m_dir - 1)) if m_dir > 0 \
            else np.inf
        unc = np.inf                  # least bound of the directions not computed
        for rnd in range(2):
            for dr in range(m_dir):
                lo_round = dlb[dr] <= first
                thr = lowest + gap * max(abs(lowest), 1e-3 * scale) + 2.5 * tol
                if nb > K and bv[K] < thr:
                    thr = bv[K]
                if lo_round == (rnd == 1):
                    continue                # computed (or counted) in the other round
                lb = dlb[dr]
                if lb > thr:
                    if lb < unc:
                        unc = lb
                else:
                    for kk in range(B):
                        j = 1 + kk * m_dir + dr
                        lb = 0.0            # the shell's own bound (its intervals)
                        for m in range(nu):
                            lb += lvr[m, js_iv[j0 + j, ucol[m]]]
                        if lb > thr:
                            if lb < unc:
                                unc = lb
                            continue
                        tot[j] = 0.0
                        for m in range(nu):
                            interp_add(curves[m], units[m], ucol[m], unit_row, unit_px,
                                       cap_usd, j, j + 1, j0, js_shock, js_lw, js_gw, js_nvol,
                                       pr, tail_range, tail_side, n_side, w, tot)
                        if tot[j] < lowest:
                            lowest = tot[j]
                        nb = _insert(bj, bv, nb, j, tot[j])
                if not tails:
                    continue
                thr = lowest + gap * max(abs(lowest), 1e-3 * scale) + 2.5 * tol
                if nb > K and bv[K] < thr:
                    thr = bv[K]
                jt = 1 + B * m_dir + dr
                lb = dlbt[dr]
                if lb > thr:
                    if lb < unc:
                        unc = lb
                else:
                    tot[jt] = 0.0
                    for m in range(nu):
                        interp_add(curves[m], units[m], ucol[m], unit_row, unit_px, cap_usd,
                                   jt, jt + 1, j0, js_shock, js_lw, js_gw, js_nvol, pr,
                                   tail_range, tail_side, n_side, w, tot)
                    if tot[jt] < lowest:
                        lowest = tot[jt]
                    nb = _insert(bj, bv, nb, jt, tot[jt])
        # every joint candidate of the band must be kept
        band = lowest + 2.0 * tol
        n_keep = nb if nb < K else K
        nxt = bv[K] if nb > K else np.inf
        if not (nxt > band) or not (unc > band) or lowest != lowest:
            continue
        lb = min(nxt, unc)
        lb -= ROUND * (scale + abs(lb))
        for i in range(n_keep):             # ascending scenario order
            keep_j[a, i] = bj[i]
            keep_v[a, i] = bv[i]
        for i in range(1, n_keep):
            x = keep_j[a, i]
            y = keep_v[a, i]
            t = i
            while t > 0 and keep_j[a, t - 1] > x:
                keep_j[a, t] = keep_j[a, t - 1]
                keep_v[a, t] = keep_v[a, t - 1]
                t -= 1
            keep_j[a, t] = x
            keep_v[a, t] = y
        for i in range(n_keep):
            keep_p[a, i] = keep_v[a, i]
        keep_n[a] = n_keep
        keep_lb[a] = lb
        keep_lb0[a] = lb


@njit(parallel=True)
def joint_record(sel, acc, grp, grid, keep, gap):
    """Record, for each account of ``sel``, what :func:`joint_tick` needs (module
    docstring): the ``K`` lowest joint scenarios' numbers into ``keep_j[a]`` (ascending),
    their count into ``keep_n[a]`` (-1: none) and a lower bound of every other joint
    scenario's interpolated total (USD) into ``keep_lb[a]``, at the current curves.

    Parameters
    ----------
    sel : int64[n_sel]
        Accounts to record.
    acc, grp, grid : tuple
        As for :func:`pmrisk.kernel.joint.joint_stress`.
    keep : tuple
        ``(keep_j int64[n_acc, K], keep_v[n_acc, K], keep_n int64[n_acc], keep_lb[n_acc],
        ucurve[n_units, W], utol[n_units], usize[n_units], urec[n_units, W],
        udrift[n_units], keep_lb0[n_acc], utol_ok bool[n_units], upath[n_units],
        keep_p[n_acc, K], ulv[n_units, 2 n_side])``, written at ``sel`` and
        their active units.
    gap : float
        Directions whose lower bound is within ``gap`` x ``|lowest|`` of ``lowest`` are
        computed (the others count by their bound).

    Examples
    --------
    A Monitor records its accounts on its first tick under ``standard``; the ticks after
    settle most accounts from their record:

    >>> import pmrisk
    >>> from pmrisk import samples
    >>> t = samples.book(n_accounts=3, positions_per_account=6, underlyings=("BTC", "ETH"),
    ...                  seed=1)
    >>> vt = t.pop("valuation_time")
    >>> model = pmrisk.Model.preset("standard").with_overrides({"n_directions": 24})
    >>> import warnings
    >>> with warnings.catch_warnings():         # no balances: equity is the positions' value
    ...     warnings.simplefilter("ignore")
    ...     mon = pmrisk.Monitor(**t, model=model, valuation_time=vt)
    ...     for px in (65010.0, 65020.0):
    ...         _ = mon.update(index={"underlying": ["BTC"], "index_price": [px]})
    >>> js = mon._blocks[0].out.joint
    >>> int(js.n_full), int(js.n_fast)
    (3, 3)
    """
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        joint_record_rows(sel, c * n // chunks, (c + 1) * n // chunks, acc, grp, grid, keep,
                          gap)


@njit
def joint_record_serial(sel, acc, grp, grid, keep, gap):
    """:func:`joint_record` on the calling thread."""
    joint_record_rows(sel, 0, sel.shape[0], acc, grp, grid, keep, gap)


@njit
def bind_slots(sel, bind_kind, bind_index, jslot, jj_of):
    """Number the distinct joint scenarios that bind the accounts ``sel`` (``bind_index``
    where ``bind_kind`` is :data:`pmrisk.kernel.joint.BIND_JOINT`): ``jslot[jj]`` its slot,
    ``jj_of[slot]`` the scenario; returns their count.  ``jslot``: -1 where none.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.joint_tick import bind_slots
    >>> jslot, jj_of = np.full(10, -1), np.zeros(3, dtype=np.int64)
    >>> bind_slots(np.arange(3), np.array([0, 0, -1]), np.array([7, 7, 2]), jslot, jj_of)
    1
    >>> int(jslot[7]), int(jj_of[0])
    (0, 7)
    """
    n_d = 0
    for k in range(sel.shape[0]):
        a = sel[k]
        if bind_kind[a] == BIND_JOINT:
            jj = bind_index[a]
            if jslot[jj] < 0:
                jslot[jj] = n_d
                jj_of[n_d] = jj
                n_d += 1
    return n_d


@njit(parallel=True)
def bind_cells(sel, acc, grp, ins, bind_kind, bind_index, jslot, jj_of, rows, row_slot,
               need, cache):
    """Per distinct binding joint scenario of the accounts ``sel`` (:func:`bind_slots`) and
    repriced revaluation row ``rows[rs]`` (``row_slot``: its index there, -1 if not
    repriced) that those accounts hold: the row's :func:`pmrisk.kernel.joint.cell` in the
    vol states up, same, down at the scenario's move, into ``cache[slot, rs]`` (``need``
    marks them).  A tick's accounts whose binding scenario stays the only candidate revalue
    their moved units there (:func:`joint_tick`): with thousands of accounts on a few
    hundred binding scenarios and shared instruments, each cell is priced once instead of
    once per account, with the same function and arguments, so the same bits."""
    (ua_start, pu_start, pu_order, q, pos_row, unit_row, unit_px, slope, acc_group) = acc
    g_col, js_shock = grp[2], grp[6]
    (kind, settlement, contract_size, forward, strike, is_call, const) = ins
    n_d = need.shape[0]
    n_r = rows.shape[0]
    g_of = np.empty(n_d, dtype=np.int64)
    row_und = np.zeros(n_r, dtype=np.int64)
    for k in range(sel.shape[0]):
        a = sel[k]
        if bind_kind[a] != BIND_JOINT:
            continue
        d = jslot[bind_index[a]]
        g_of[d] = acc_group[a]
        for u in range(ua_start[a], ua_start[a + 1]):
            for mm in range(pu_start[u], pu_start[u + 1]):
                rs = row_slot[pos_row[pu_order[mm]]]
                if rs >= 0:
                    need[d, rs] = True
                    row_und[rs] = unit_row[u]
    for d in prange(n_d):
        jj = jj_of[d]
        g = g_of[d]
        for rs in range(n_r):
            if not need[d, rs]:
                continue
            c = g_col[g, row_und[rs]]
            i = rows[rs]
            if c < 0:
                need[d, rs] = False
                continue
            sh = js_shock[jj, c]
            l1p = math.log1p(sh)
            if kind[i] != OPTION:
                x = cell(i, sh, l1p, 0, kind, settlement, contract_size, forward, strike,
                         is_call, const)
                cache[d, rs, 0] = x
                cache[d, rs, 1] = x
                cache[d, rs, 2] = x
            else:
                for v in range(3):
                    cache[d, rs, v] = cell(i, sh, l1p, v, kind, settlement, contract_size,
                                           forward, strike, is_call, const)


@njit(_nrt=False)
def _bind_cell(p, d, sh, l1p, v, pos_row, row_slot, need, cache, kind, settlement,
               contract_size, forward, strike, is_call, const):
    """Position ``p``'s row's cell at the binding scenario (slot ``d``, move ``sh``) in vol
    state ``v``: from ``cache`` when :func:`bind_cells` priced it, else priced here."""
    i = pos_row[p]
    rs = row_slot[i] if d >= 0 else -1
    if rs >= 0 and need[d, rs]:
        return cache[d, rs, v]
    return cell(i, sh, l1p, v, kind, settlement, contract_size, forward, strike, is_call,
                const)


@njit(_nrt=False)
def _bind_unit(u, d, pu_start, pu_order, q, pos_row, row_slot, need, cache, shock, nv, lw,
               gw, cap, kind, settlement, contract_size, forward, strike, is_call, const):
    """:func:`pmrisk.kernel.joint.exact_unit` of unit ``u`` at the binding scenario (slot
    ``d``), its cells from :func:`_bind_cell`: the same sums in the same order."""
    l1p = math.log1p(shock)
    x0 = 0.0
    x1 = 0.0
    x2 = 0.0
    for k in range(pu_start[u], pu_start[u + 1]):
        p = pu_order[k]
        qp = q[p]
        if qp == 0.0:
            continue
        if nv == 1:
            x1 += qp * _bind_cell(p, d, shock, l1p, 1, pos_row, row_slot, need, cache, kind,
                                  settlement, contract_size, forward, strike, is_call, const)
        elif kind[pos_row[p]] != OPTION:
            y = qp * _bind_cell(p, d, shock, l1p, 0, pos_row, row_slot, need, cache, kind,
                                settlement, contract_size, forward, strike, is_call, const)
            x0 += y
            x1 += y
            x2 += y
        else:
            x0 += qp * _bind_cell(p, d, shock, l1p, 0, pos_row, row_slot, need, cache, kind,
                                  settlement, contract_size, forward, strike, is_call, const)
            x1 += qp * _bind_cell(p, d, shock, l1p, 1, pos_row, row_slot, need, cache, kind,
                                  settlement, contract_size, forward, strike, is_call, const)
            x2 += qp * _bind_cell(p, d, shock, l1p, 2, pos_row, row_slot, need, cache, kind,
                                  settlement, contract_size, forward, strike, is_call, const)
    return weighted_best(x0, x1, x2, nv, lw, gw, cap)


@njit
def joint_tick_rows(sel, lo, hi, acc, grp, ins, grid, outs, keep, prev, how):
    """:func:`joint_tick` for the accounts ``sel[lo:hi]``: the scratch, then the loop."""
    ua_start = acc[0]
    g_rows, g_buckets = grp[1], grp[4]
    icurve, n_side, tail_side = grid[1], grid[3], grid[4]
    K = keep[0].shape[1]
    d_max = g_rows.shape[1]
    width = icurve.shape[1]
    pu_start = acc[1]
    max_units = 1
    max_pos = 1
    for k in range(lo, hi):
        a = sel[k]
        max_units = max(max_units, ua_start[a + 1] - ua_start[a])
        max_pos = max(max_pos, pu_start[ua_start[a + 1]] - pu_start[ua_start[a]])
    n_scen = K + 2 * g_buckets.max() + 2 if g_buckets.shape[0] else K
    units = np.empty(max_units, dtype=np.int64)
    ucol = np.empty(max_units, dtype=np.int64)
    umoved = np.zeros(max_units, dtype=np.bool_)
    scen = np.empty(n_scen, dtype=np.int64)      # account scenario numbers evaluated
    tot = np.empty(n_scen)
    cand = np.empty(n_scen, dtype=np.int64)
    gvec = np.empty(d_max)
    zpos = np.empty(d_max)
    w = np.empty(4)
    d2 = np.empty(max(2 * n_side + 1, 2 * tail_side.max() + 1))  # curve_tol's scratch
    d2t = np.empty(d2.shape[0])
    bb = np.empty(d2.shape[0])
    fresh = np.empty(width)          # a moved unit's new curve
    cells = np.empty((2, max_pos, 3))          # the exact cells: candidate, lowest so far
    earg = np.empty((2, 3 * max_pos))          # (their erfc arguments, erfc values, slots)
    eslot = np.empty(3 * max_pos, dtype=np.int64)
    uval = np.empty((2, max_units))
    uvol = np.empty((2, max_units), dtype=np.int64)
    bnd = np.empty(K)                # the kept scenarios' bounds
    dlb = np.empty(max(2 * g_buckets.max(), 1) if g_buckets.shape[0] else 1)  # directions'
    _tick_accounts(sel, lo, hi, acc, grp, ins, grid, outs, keep, prev, how, units, ucol,
                   umoved, scen, tot, cand, gvec, zpos, w, d2, d2t, bb, fresh,
                   (cells, earg, eslot, uval, uvol, bnd, dlb))


@njit(_nrt=False)
def _tick_accounts(sel, lo, hi, acc, grp, ins, grid, outs, keep, prev, how, units, ucol,
                   umoved, scen, tot, cand, gvec, zpos, w, d2, d2t, bb, fresh, exact):
    """:func:`joint_tick_rows`' loop over its accounts, with the scratch it allocated:
    compiled without reference counting (it allocates nothing), so that the arrays passed
    to the helpers on every unit and scenario (``ucurve[u]`` and the like) cost no atomic
    increments and decrements."""
    (ua_start, pu_start, pu_order, q, pos_row, unit_row, unit_px, slope, acc_group) = acc
    (g_d, g_rows, g_col, g_j0, g_buckets, g_rho, js_shock, js_lw, js_gw, js_nvol, pr, gw_row,
     cap_usd, mult, cover, tails, max_candidates, g_m, g_dir0, dir_iv, dir_ivt, _) = grp
    (kind, settlement, contract_size, forward, strike, is_call, const) = ins
    (use_grid, icurve, curve_of_row, n_side, tail_side, tail_range, vol_code,
     error_factor) = grid
    (worst, n_joint, n_exact, bind_kind, bind_index, bind_shock, unit_value, unit_vol,
     unit_shock, unit_lw, pos_loss) = outs
    (keep_j, keep_v, keep_n, keep_lb, ucurve, utol, usize, urec, udrift, keep_lb0,
     utol_ok, upath, keep_p, ulv) = keep
    px_prev, row_moved, row_t, row_s, jslot, row_slot, need, cache = prev
    cells, earg, eslot, uval, uvol, bnd, dlb = exact
    width = icurve.shape[1]
    n_shell = 2 * n_side + 1
    tail0 = 3 * n_shell
    for k in range(lo, hi):
        a = sel[k]
        if k + AHEAD < hi:
            _ask_ahead(sel[k + AHEAD], ua_start, unit_px, px_prev, keep_n, keep_j, keep_v,
                       keep_p, ucurve, urec, ulv)
        how[k] = FAST
        g = acc_group[a]
        prev_bind = bind_index[a] if bind_kind[a] == BIND_JOINT else -1
        nu = active_units(a, g, ua_start, pu_start, pu_order, q, unit_row, g_col, units, ucol,
                          outs, False)
        if g < 0 or nu == 0:
            reset_account(a, worst, bind_kind, bind_index, n_joint, n_exact, bind_shock)
            active_units(a, g, ua_start, pu_start, pu_order, q, unit_row, g_col, units, ucol,
                         outs, True)
            continue
        n = keep_n[a]
        if n < 0 or not use_grid:
            how[k] = FULL
            continue
        # the delta direction (slopes, not curves) and its shell directions' bounds from the
        # record first: the kept curves' lines the directions of least bound and the kept
        # scenario of least bound will read are asked for now, and arrive during step 1
        d, j0, n_js, B, n_dd, n_all = group_directions(
            g, nu, units, ucol, slope, g_d, g_j0, g_buckets, g_rows, g_rho, pr, gvec, zpos,
            tails)
        e_min = _direction_bounds(nu, units, ucol, zpos, ulv, n_side, B if n_dd else 0, dlb)
        first = 0           # the first of the least keep_v (a NaN first: it)
        least = keep_v[a, 0]
        for i in range(n):
            x = keep_v[a, i]
            first = i if x < least else first
            least = x if x < least else least
        _ask_windows(nu, units, ucol, unit_row, zpos, e_min, B, n_dd - 2 * B,
                     j0 + keep_j[a, first] if n > 0 else -1, js_shock, js_nvol, pr, mult,
                     tail_range, tail_side, n_side, ucurve)
        # 1. curves and tol (the full kernel's arithmetic) of the units that moved, kept
        # for the others; their drift from the record; 2. the bound
        tol = 0.0           # with the moved units' bounds: at least the full kernel's tol
        tol_lo = 0.0        # without them: at most
        n_bound = 0
        scale = 0.0
        drift = 0.0
        path = 0.0          # the units' path lengths since the record
        for m in range(nu):
            u = units[m]
            r = unit_row[u]
            px = unit_px[u]
            moved = px_prev[u] != px
            if not moved:
                for mm in range(pu_start[u], pu_start[u + 1]):
                    p = pu_order[mm]
                    if q[p] != 0.0 and row_moved[pos_row[p]]:
                        moved = True
                        break
            umoved[m] = moved
            if moved:
                new = fresh
                unit_curve(u, pu_start, pu_order, q, pos_row, icurve, curve_of_row, new)
                rec = urec[u]
                old = ucurve[u]     # the curve at the account's last run, price px_prev
                pp = px_prev[u]
                # the USD distances of each cell from the record and from the last run: their
                # largest (and the largest |cell|) over the shells and over the tails
                y_sh, q_sh, z_sh = _distances(new, rec, old, px, pp, 0, tail0)
                y_tl, q_tl, z_tl = _distances(new, rec, old, px, pp, tail0, width)
                size = _max(z_tl, z_sh)
                # tol: an upper bound from its rows' (exact later, only if a decision needs it)
                ub = tol_bound(u, pu_start, pu_order, q, pos_row, curve_of_row, row_t, row_s,
                               error_factor) * px
                if px > 0.0 and ub < np.inf:
                    utol[u] = ub * (1.0 + 1e-12)
                    utol_ok[u] = False
                else:
                    e, _ = curve_tol_fast(new, n_shell, tail_side[r], tail0, error_factor, bb,
                                          d2, d2t)
                    utol[u] = e * px
                    utol_ok[u] = True
                usize[u] = size * px
                w_sh = max(1.0, gw_row[r])
                w_tl = cover[r]
                # rounding: 1e-12 of both curves' sizes (the record's is at most the new
                # one's plus the distance)
                udrift[u] = LEBESGUE * (w_sh * y_sh + w_tl * y_tl) \
                    + ROUND * (LEBESGUE * max(w_sh, w_tl)
                               * (2.0 * usize[u] + _max(y_tl, y_sh))) \
                    if px > 0.0 else np.nan
                # the step's bound, the same way (NaN if the last run's price was not > 0)
                upath[u] += LEBESGUE * (w_sh * q_sh + w_tl * q_tl) \
                    + ROUND * (LEBESGUE * max(w_sh, w_tl)
                               * (2.0 * usize[u] + _max(q_tl, q_sh))) \
                    if px > 0.0 and pp > 0.0 else np.nan
            tol += utol[u]
            tol_lo += utol[u] if utol_ok[u] else 0.0
            n_bound += 0 if utol_ok[u] else 1
            scale += usize[u]
            drift += udrift[u]
            path += upath[u]
        lb = keep_lb0[a] - drift - ROUND * (LEBESGUE * scale + abs(keep_lb0[a]))
        keep_lb[a] = lb
        # 3. interpolated totals of the kept joint scenarios and the delta directions
        for e in range(2 * B if n_dd else 0):
            x = dlb[e]
            dlb[e] = x - drift - ROUND * (LEBESGUE * scale + abs(x))
        # the delta directions first, then the kept joint scenarios: the lowest bound first,
        # then, in scenario order, each whose bound (its last interpolated total lowered by
        # the ticks since) reaches the band so far (the band only narrows, so one above it
        # stays above the final band); a computed one's bound becomes its total.  Those
        # computed go to ``scen``/``tot`` after the directions (the others are above the
        # band: no candidates)
        # of the directions, the tails and the shell direction of least bound (below), then
        # each other shell direction whose bound reaches the band so far (as the kept
        # scenarios: the band only narrows, so one above it stays above the final band)
        lowest = np.inf
        n_ev = 0
        for ee in range(-1, n_dd):
            if ee < 0:
                e = e_min
                if e < 0:
                    continue
            else:
                e = ee + 2 * B if ee < n_dd - 2 * B else ee - (n_dd - 2 * B)  # tails first
                if e == e_min:
                    continue
                if e < 2 * B and dlb[e] > lowest + 2.0 * tol:
                    continue                # above the band: not a candidate
            te = 0.0
            for m in range(nu):
                te += interp_direction(ucurve[units[m]], units[m], ucol[m], unit_row, unit_px,
                                       cap_usd, e, B, zpos, pr, gw_row, mult, cover,
                                       tail_range, tail_side, n_side, w)
            scen[n_ev] = n_js + e
            tot[n_ev] = te
            if te < lowest or te != te:
                lowest = te
            n_ev += 1
        n_near = 0
        for ii in range(-1, n if n > 0 else -1):
            if ii < 0:
                i = first
            else:
                if ii == 0:
                    # the others whose bound reaches the band so far, in one branch-free
                    # pass (into cand, read here before the candidates are written to it)
                    n_near = _near(keep_v, keep_p, a, n, first, drift, path, scale,
                                   lowest + 2.0 * tol, bnd, cand)
                if ii >= n_near:
                    break
                i = cand[ii]
                v = keep_v[a, i]
                bound = v - drift - ROUND * (LEBESGUE * scale + abs(v))
                vp = keep_p[a, i]
                bp = vp - path - ROUND * (LEBESGUE * scale + abs(vp) + path)
                if bp > bound:              # (NaN: not taken)
                    bound = bp
                if not bound <= lowest + 2.0 * tol:
                    continue                # above the band: not a candidate
            j = keep_j[a, i]
            scen[n_ev] = j
            tot[n_ev] = 0.0
            for m in range(nu):
                interp_add(ucurve[units[m]], units[m], ucol[m], unit_row, unit_px, cap_usd,
                           n_ev, n_ev + 1, j0 + j - n_ev, js_shock, js_lw, js_gw, js_nvol,
                           pr, tail_range, tail_side, n_side, w, tot)
            te = tot[n_ev]
            if te - drift > keep_v[a, i]:
                keep_v[a, i] = te - drift
            if te + path > keep_p[a, i]:
                keep_p[a, i] = te + path
            if te < lowest or te != te:
                lowest = te
            n_ev += 1
        band = lowest + 2.0 * tol
        # a unit's tol bound decides as its tol would when the bound is above the band
        # and no total lies between the bands of the lower and the upper tol; else the
        # exact tol (the same bits as the full kernel's) of the units that have a bound
        if n_bound > 0:
            exact = not lb > band
            if not exact:
                band_lo = lowest + 2.0 * tol_lo
                for i in range(n_ev):
                    if band_lo < tot[i] and tot[i] <= band:
                        exact = True
                        break
            if exact:
                tol = 0.0
                for m in range(nu):
                    u = units[m]
                    if not utol_ok[u]:
                        e, _ = curve_tol_fast(ucurve[u], n_shell, tail_side[unit_row[u]],
                                              tail0, error_factor, bb, d2, d2t)
                        utol[u] = e * unit_px[u]
                        utol_ok[u] = True
                    tol += utol[u]
                band = lowest + 2.0 * tol
        # 4. every other joint scenario above the band: the candidates are these
        if not lb > band:
            how[k] = FULL
            continue
        n_c = 0
        n_grid = 0
        for i in range(n_ev):               # the candidates in scenario order
            if tot[i] <= band:
                sj = scen[i]
                ci = n_c
                while ci > 0 and cand[ci - 1] > sj:
                    cand[ci] = cand[ci - 1]
                    ci -= 1
                cand[ci] = sj
                n_c += 1
                if sj < n_js:
                    n_grid += 1
        if n_grid > max_candidates:
            how[k] = FULL
            continue
        if n_c == 1 and cand[0] < n_js and j0 + cand[0] == prev_bind:
            # the one candidate is the joint scenario that bound before: the units whose
            # curve and price did not move keep their figures there (the same bits)
            j = cand[0]
            t = 0.0
            same = True
            for m in range(nu):
                u = units[m]
                if not umoved[m]:
                    t += unit_value[u] * unit_px[u]
                    continue
                r = unit_row[u]
                px = unit_px[u]
                sh, lw, gw, nv = scenario(j, n_js, j0, B, ucol[m], r, pr, gw_row, mult, cover,
                                          zpos, js_shock, js_lw, js_gw, js_nvol)
                d = jslot[prev_bind]
                y, v = _bind_unit(u, d, pu_start, pu_order, q, pos_row, row_slot, need,
                                  cache, sh, nv, lw, gw, cap_usd[r] / px, kind, settlement,
                                  contract_size, forward, strike, is_call, const)
                t += y * px
                unit_value[u] = y
                if unit_vol[u] != (VOL_UP, VOL_SAME, VOL_DOWN)[v]:
                    same = False
                unit_vol[u] = (VOL_UP, VOL_SAME, VOL_DOWN)[v]
                unit_shock[u] = sh
                unit_lw[u] = lw
                l1p = math.log1p(sh)
                for kk in range(pu_start[u], pu_start[u + 1]):
                    p = pu_order[kk]
                    pos_loss[p] = -lw * q[p] * _bind_cell(p, d, sh, l1p, v, pos_row,
                                                          row_slot, need, cache, kind,
                                                          settlement, contract_size,
                                                          forward, strike, is_call, const)
            before = worst[a] > 0.0
            worst[a] = -t if (t < 0.0 or t != t) else 0.0
            n_joint[a] = n_all
            n_exact[a] = 1
            if same and before == (worst[a] > 0.0):
                how[k] = SAME
            continue
        reset_account(a, worst, bind_kind, bind_index, n_joint, n_exact, bind_shock)
        active_units(a, g, ua_start, pu_start, pu_order, q, unit_row, g_col, units, ucol, outs,
                     True)
        n_joint[a] = n_all
        n_exact[a] = n_c
        # -- exact refinement, as the full kernel (the same function)
        refine(a, cand, n_c, tot, n_js, j0, B, nu, units, ucol, unit_row, unit_px, pr, gw_row,
               cap_usd, mult, cover, zpos, js_shock, js_lw, js_gw, js_nvol, pu_start,
               pu_order, q, pos_row, kind, settlement, contract_size, forward, strike, is_call,
               const, pu_start[ua_start[a]], cells, uval, uvol, earg, eslot, outs)


@njit(parallel=True)
def joint_tick(sel, acc, grp, ins, grid, outs, keep, prev, how):
    """The joint stress of the accounts ``sel`` after a tick (module docstring): each
    account settled from its record (``keep``, lowered by the tick's change bound) exactly
    as :func:`pmrisk.kernel.joint.joint_stress` would settle it, or ``how[k] = FULL`` (the
    caller runs the full kernel on those and records them again).

    Parameters
    ----------
    sel, acc, grp, ins, grid, outs : array, tuple
        As for :func:`pmrisk.kernel.joint.joint_stress` (``outs`` written for the accounts
        settled here).
    keep : tuple
        As for :func:`joint_record`; bounds lowered and moved units' curves replaced in
        place.
    prev : tuple
        ``(px_prev[n_units], row_moved[n_rev_rows], row_t[R], row_s[R], jslot, row_slot,
        need, cache)``: the units' USD prices at the accounts' last run, the revaluation
        rows repriced since, each curve row's :func:`row_bounds` at its current curve, and
        the cells of the binding joint scenarios (:func:`bind_slots`, :func:`bind_cells`;
        ``jslot`` all -1 and the others empty: none).
    how : int64[n_sel]
        Written: :data:`FAST`, :data:`SAME` (fast, description unchanged) or :data:`FULL`
        (the account needs the full kernel).

    Examples
    --------
    The change bound's constant covers the cubic windows' Lebesgue constant:

    >>> import numpy as np
    >>> from pmrisk.kernel.joint_tick import LEBESGUE
    >>> u = np.linspace(0.0, 3.0, 3001)
    >>> lam = (abs((u - 1) * (u - 2) * (u - 3)) / 6 + abs(u * (u - 2) * (u - 3)) / 2
    ...        + abs(u * (u - 1) * (u - 3)) / 2 + abs(u * (u - 1) * (u - 2)) / 6)
    >>> bool(lam.max() < LEBESGUE)
    True
    """
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        joint_tick_rows(sel, c * n // chunks, (c + 1) * n // chunks, acc, grp, ins, grid, outs,
                        keep, prev, how)


@njit
def joint_tick_serial(sel, acc, grp, ins, grid, outs, keep, prev, how):
    """:func:`joint_tick` on the calling thread (small selections)."""
    joint_tick_rows(sel, 0, sel.shape[0], acc, grp, ins, grid, outs, keep, prev, how)

"""The engine's per-unit, per-position and per-account assembly as fused kernels.

After revaluation (:func:`pmrisk.kernel.instrument_pnl`, :func:`pmrisk.kernel.instrument_greeks`)
the engine's phases are three kernels, each over a *selection*: every unit or account for
:func:`pmrisk.margin`, the ones a tick touched for :class:`pmrisk.Monitor`.  Each writes its
figures into the caller's arrays at the selected rows only, so a selection costs its own size,
and the figures of one row depend only on that row's inputs: a run over a selection equals a
run over everything, to the bit.

* :func:`unit_figures`: per unit, its risk vector (quantity-weighted sum of its positions'
  rows), weighted vector, worst case and binding cell, its open orders' margin, its positions'
  values, unrealised P&L, model values and Greeks, and the add-ons (roll shock per expiry
  group, delta shock, short option minimum).
* :func:`unit_margins`: per unit, risk-matrix margin, MM and IM from the scenario margin that
  the across-units step chose (the unit's own worst case, or its share of a joint scenario),
  and each position's MM/IM contribution: its own loss in that cell plus pro-rata shares of
  the add-ons.
* :func:`account_figures`: per account, equity, loans, MM, IM and scenario margin (USD).
* :func:`largest_units`: per account, its unit with the largest worst case (the accounts
  table's ``worst_scenario`` words, the correlated step's per-unit tail).

Rows are addressed through CSR indexes (:func:`csr`): the members of group ``g`` are
``order[start[g]:start[g + 1]]``, in increasing row order, so every sum runs in the row order
of a ``numpy.bincount`` over the same rows.  Each kernel has a parallel form (the selection cut
into ``CHUNKS`` runs of rows, spread over the threads) and a ``_serial`` twin for small
selections; both call the same ``*_rows`` function, and every row is computed from its own
inputs, so results do not depend on the form or the thread count.  Nothing is allocated per
unit (a few scratch arrays per run of rows) and no positions x scenarios array exists.  Amounts
are in the unit's settlement currency unless named ``_usd``.  The roll-shock groups are
numbered unit by unit (:func:`pmrisk.kernel.layout.expiry_groups`).

Row indices read from index arrays (units, positions, instruments, revaluation rows,
underlyings, accounts, balances; never -1 there) are cast to ``uint64`` in the hot loops:
numba then indexes with them directly instead of first adding the array's length to a
negative index (two more loads and a spilled shape per access, in loops that keep some 70
arrays live).  The arithmetic is unchanged, so are the figures.
"""

import numpy as np
from numba import prange

from ._config import njit
from .aggregate import TIE_RTOL, weigh_cell, worst_of
from .instruments import FUTURE, INVERSE, OPTION, PERPETUAL, SPOT
from .scenarios import VOL_SAME, whole_vectors

CHUNKS = 64  # a parallel kernel's selection is cut in this many runs of rows, one per task


@njit(inline="always")
def group_span(pu_start, pu_order, pos_group, u):
    """(lowest, highest) expiry group of unit ``u``'s positions (a unit's groups are
    consecutive, :func:`pmrisk.kernel.layout.expiry_groups`); ``(1 << 62, -1)`` when it has
    none, an empty range."""
    g_lo = 1 << 62
    g_hi = -1
    for j in range(pu_start[u], pu_start[u + 1]):
        g = pos_group[pu_order[j]]
        if g >= 0:
            if g < g_lo:
                g_lo = g
            if g > g_hi:
                g_hi = g
    return g_lo, g_hi

@njit(inline="always")
def lowest_cell(cells, n):
    """(lowest of ``cells[:n]``, index of its first NaN or -1).  A NaN cell is never the
    lowest; +0 and -0 may come out either way, which no caller can tell apart (the binding
    rule compares ``cell - lowest`` and ``abs(lowest)``).  Four running minima: the cells'
    compares do not wait on one another."""
    l0 = np.inf
    l1 = np.inf
    l2 = np.inf
    l3 = np.inf
    nan = False
    s = 0
    while s + 4 <= n:
        w0 = cells[s]
        w1 = cells[s + 1]
        w2 = cells[s + 2]
        w3 = cells[s + 3]
        l0 = w0 if w0 < l0 else l0
        l1 = w1 if w1 < l1 else l1
        l2 = w2 if w2 < l2 else l2
        l3 = w3 if w3 < l3 else l3
        nan |= (w0 != w0) | (w1 != w1) | (w2 != w2) | (w3 != w3)
        s += 4
    while s < n:
        w0 = cells[s]
        l0 = w0 if w0 < l0 else l0
        nan |= w0 != w0
        s += 1
    l0 = l1 if l1 < l0 else l0
    l2 = l3 if l3 < l2 else l2
    lowest = l2 if l2 < l0 else l0
    if nan:
        for s in range(n):
            if cells[s] != cells[s]:
                return lowest, s
    return lowest, -1


@njit(inline="always")
def binding_cell(wrow, ns, lowest, vol_code, r):
    """(binding cell, its weighted value) among ``wrow[:ns]`` (no NaN), ``lowest`` their
    lowest: the cells within ``TIE_RTOL`` of it tie, the first of vol state same among them,
    else the first (``(-1, 0.0)`` when no cell ties).  The ties are counted first, in a loop
    without branches: a lone tie, the usual case, is the binding cell."""
    count = 0
    at = 0
    if lowest < 0.0:
        # the same ties in fewer operations: a cell in [lowest, 0) has max(|ws|, |lowest|)
        # = -lowest; a finite cell >= 0 ties with nothing (ws - lowest >= -lowest >
        # TIE_RTOL * max(|ws|, |lowest|)); +inf ties (inf <= inf)
        rl = TIE_RTOL * -lowest
        for s in range(ns):
            ws = wrow[s]
            tie = (ws - lowest <= rl) | (ws == np.inf)
            count += tie
            at += tie * s
    else:
        for s in range(ns):
            ws = wrow[s]
            tie = ws - lowest <= TIE_RTOL * max(abs(ws), abs(lowest))
            count += tie
            at += tie * s
    if count == 1:
        return at, wrow[at]
    b = -1
    bw = 0.0
    for s in range(ns):
        ws = wrow[s]
        if ws - lowest <= TIE_RTOL * max(abs(ws), abs(lowest)):
            if b < 0 or (vol_code[r, s] == VOL_SAME and vol_code[r, b] != VOL_SAME):
                b = s
                bw = ws
    return b, bw


@njit
def csr(keys, n_groups):
    """Counting sort of ``keys`` (int64 in ``[0, n_groups)``; negative keys are left out):
    returns ``(start int64[n_groups + 1], order int64[n_members])``, members of each group in
    increasing row order."""
    start = np.zeros(n_groups + 1, dtype=np.int64)
    csr_count(keys, start)
    order = np.empty(start[n_groups], dtype=np.int64)
    csr_fill(keys, start, order)
    return start, order


@njit
def unit_figures_rows(sel, lo, hi, positions, pu_start, pu_order, pos_instr, pos_row, quantity,
                      q_port, entry_price, short_opt, som_rate, pos_group, pos_excluded, kind,
                      settlement, contract_size, mark, forward, instr_greeks, instr_pnl, unit_und,
                      unit_px, index_px, coin_settled, threshold_usd, m_inc, max_delta_shock,
                      group_rate, ou_start, ou_order, ord_row, ord_qty, res_oo, n_scen, price_shock,
                      loss_weight, gain_weight, gain_cap_usd, dampener_usd, vol_code, keep_vectors,
                      vectors, weighted, worst, binding, scenario_shock, scenario_vol, order_im,
                      open_orders, roll_group, roll_coin, delta_coin, som_coin, conv, unit_delta,
                      unit_gamma, unit_vega, unit_theta, value, model_value, upnl, delta, gamma,
                      vega, theta, pos_delta, slope_usd, finite):
    """Rows ``sel[lo:hi]`` of :func:`unit_figures` (shared by the parallel and the serial kernel:
    one call per chunk of rows, so no per-row call cost).  Without ``positions`` the
    positions' figures other than ``value`` are not written (:func:`unit_tick`)."""
    width = vectors.shape[1]
    vec = np.empty(width)               # the unit's risk vector and weighted vector: one
    wrow = np.empty(width)              # scratch pair per run of rows, copied out if kept
    cap = np.empty(width)               # gain caps and dampeners / px of the last unit
    damp = np.empty(width)
    cap_und = np.uint64(n_scen.shape[0])   # no underlying's row: the first unit sets the caps
    cap_px = np.nan                     # NaN != NaN: a NaN price recomputes every time
    # the unit's positions' expiry groups and deltas, in order: its groups' range is found
    # in the positions' one pass, then the groups are zeroed and summed from these
    pg = np.empty(16, dtype=np.int64)
    pd = np.empty(16)
    for k in range(lo, hi):
        u = np.uint64(sel[k])
        r = np.uint64(unit_und[u])
        px = unit_px[u]
        for s in range(width):
            vec[s] = 0.0
            wrow[s] = 0.0
        nv = whole_vectors(n_scen[r], width)
        p0, p1 = pu_start[u], pu_start[u + 1]
        if p1 - p0 > pg.shape[0]:
            pg = np.empty(2 * (p1 - p0), dtype=np.int64)
            pd = np.empty(2 * (p1 - p0))
        g_lo = 1 << 62
        g_hi = -1
        d_unit = 0.0
        slope = 0.0
        som = 0.0
        fprobe = 0.0
        ug0 = 0.0
        ug1 = 0.0
        ug2 = 0.0
        ug3 = 0.0
        for j in range(p0, p1):
            p = np.uint64(pu_order[j])
            q = q_port[p]
            row = np.uint64(pos_row[p])
            for s in range(nv):         # whole vectors: the padding cells add 0
                vec[s] += q * instr_pnl[row, s]
            # value, unrealised P&L, model value and Greeks at the marks
            i = np.uint64(pos_instr[p])
            qty = quantity[p]
            cs = contract_size[i]
            m = mark[i]
            e = entry_price[p]
            has_entry = e == e
            ee = e if has_entry else 1.0
            if settlement[i] == INVERSE:
                fut = qty * cs * (1.0 / ee - 1.0 / m)
            else:
                fut = qty * cs * (m - ee)
            if has_entry:
                up = qty * cs * (m - ee) if kind[i] == OPTION else fut
            else:
                up = 0.0
            v = qty * cs * m if (kind[i] == OPTION or kind[i] == SPOT) else up
            value[p] = v
            mv = qty * instr_greeks[0, i] if kind[i] == OPTION else v
            g1 = qty * instr_greeks[1, i]
            g2 = qty * instr_greeks[2, i]
            g3 = qty * instr_greeks[3, i]
            g4 = qty * instr_greeks[4, i]
            ug0 += g1
            ug1 += g2
            ug2 += g3
            ug3 += g4
            d = 0.0 if pos_excluded[p] else g1
            if positions:
                upnl[p] = up
                model_value[p] = mv
                delta[p] = g1
                gamma[p] = g2
                vega[p] = g3
                theta[p] = g4
                pos_delta[p] = d
            d_unit += d
            # first-order P&L per unit relative move: a linear position moves from its own
            # mark (futures, spot) or forward (options); an inverse position's delta already
            # is its coin P&L per relative move
            if settlement[i] == INVERSE:
                slope += d
            else:
                slope += d * (forward[i] if kind[i] == OPTION else m)
            g = pos_group[p]
            pg[j - p0] = g
            pd[j - p0] = d
            if g >= 0:
                g_lo = g if g < g_lo else g_lo
                g_hi = g if g > g_hi else g_hi
            som += short_opt[p] * som_rate[p]
            # x * 0.0 is 0 for a finite x and NaN otherwise: one probe per position
            fprobe += (up * 0.0 + v * 0.0 + mv * 0.0 + g1 * 0.0 + g2 * 0.0 + g3 * 0.0
                       + g4 * 0.0)
        finite[u] = 1.0 if fprobe == 0.0 else 0.0
        for g in range(g_lo, g_hi + 1):
            roll_group[g] = 0.0
        for j in range(p1 - p0):
            g = pg[j]
            if g >= 0:
                roll_group[g] += pd[j]
        unit_delta[u] = ug0
        unit_gamma[u] = ug1
        unit_vega[u] = ug2
        unit_theta[u] = ug3
        slope_usd[u] = slope * px
        # weighted vector, then worst case and binding cell from it (aggregate.worst_of's
        # rule: the lowest weighted cell, ties within TIE_RTOL to vol state same, then the
        # lowest index; a NaN cell makes the worst case NaN at the first such cell)
        ns = n_scen[r]
        if r != cap_und or px != cap_px:    # the USD caps in the unit's currency: once per
            for s in range(ns):             # run of units on one underlying and price
                cap[s] = gain_cap_usd[r, s] / px
                damp[s] = dampener_usd[r, s] / px
            cap_und = r
            cap_px = px
        for s in range(ns):
            wrow[s] = weigh_cell(vec[s], loss_weight[r, s], gain_weight[r, s], cap[s], damp[s])
        lowest, nan_at = lowest_cell(wrow, ns)
        if nan_at >= 0:
            w = np.nan
            b = nan_at
        else:
            b, bw = binding_cell(wrow, ns, lowest, vol_code, r)
            if b < 0:
                w = 0.0
                b = 0
            else:
                w = -bw if bw < 0.0 else 0.0
        worst[u] = w
        binding[u] = b
        if keep_vectors:
            for s in range(width):
                vectors[u, s] = vec[s]
                weighted[u, s] = wrow[s]
        if w > 0.0:
            scenario_shock[u] = price_shock[r, b]
            scenario_vol[u] = vol_code[r, b]
        else:
            scenario_shock[u] = np.nan
            scenario_vol[u] = -1
        # open orders: the increase of the worst case if the order alone filled
        oo = 0.0
        for j in range(ou_start[u], ou_start[u + 1]):
            o = ou_order[j]
            wo, _ = worst_of(vec, r, px, n_scen, loss_weight, gain_weight, gain_cap_usd,
                             dampener_usd, vol_code, instr_pnl[ord_row[o]], ord_qty[o])
            dw = wo - w
            dw = dw if dw > 0.0 else 0.0
            order_im[o] = dw
            oo += dw
        open_orders[u] = oo + res_oo[u]
        # add-ons, in coin: roll shock per expiry group, delta shock, short option minimum
        roll = 0.0
        for g in range(g_lo, g_hi + 1):
            net = roll_group[g]
            rg = group_rate[g] * abs(net)
            roll_group[g] = rg
            roll += rg
        roll_coin[u] = roll
        ip = index_px[u]
        notional = abs(d_unit) * ip
        part1 = max(notional - threshold_usd[u], 0.0) * abs(d_unit) * m_inc[u]
        part2 = max_delta_shock[u] * notional
        delta_coin[u] = min(part1, part2) / ip
        som_coin[u] = som
        conv[u] = 1.0 if coin_settled[u] else ip / px


@njit(parallel=True)
def unit_figures(sel, pu_start, pu_order, pos_instr, pos_row, quantity, q_port, entry_price,
                 short_opt, som_rate, pos_group, pos_excluded, kind, settlement, contract_size,
                 mark, forward, instr_greeks, instr_pnl, unit_und, unit_px, index_px, coin_settled,
                 threshold_usd, m_inc, max_delta_shock, group_rate, ou_start, ou_order, ord_row,
                 ord_qty, res_oo, n_scen, price_shock, loss_weight, gain_weight, gain_cap_usd,
                 dampener_usd, vol_code, keep_vectors, vectors, weighted, worst, binding,
                 scenario_shock, scenario_vol, order_im, open_orders, roll_group, roll_coin,
                 delta_coin, som_coin, conv, unit_delta, unit_gamma, unit_vega, unit_theta, value,
                 model_value, upnl, delta, gamma, vega, theta, pos_delta, slope_usd, finite):
    """Per selected unit ``u = sel[k]``: everything that does not depend on the across-units
    step.  Outputs (written at the unit's rows, its positions' rows, its orders' rows and its
    expiry groups' rows): ``vectors``/``weighted`` (n_units, S), ``worst``, ``binding``,
    ``scenario_shock``/``scenario_vol`` (the binding cell's move and vol state, NaN/-1 when the
    worst case is 0), ``order_im`` per order, ``open_orders`` (orders' IM plus reserved
    open-order margin ``res_oo``), ``roll_group`` (coin, per expiry group),
    ``roll_coin``/``delta_coin``/``som_coin`` (coin), ``conv`` (coin -> settlement currency:
    1, or index/settlement price for linear units), the unit's Greeks (``unit_delta`` ...
    ``unit_theta``); per position ``value``, ``model_value``, ``upnl``, Greeks (``delta`` ...
    ``theta``) and ``pos_delta`` (delta left
    in the portfolio: 0 for excluded positions); ``slope_usd`` per unit, its USD P&L per unit
    relative move of its underlying (the joint stress's delta directions); ``finite`` per unit:
    1.0 when its positions' values and Greeks are all finite, else 0.0 (:func:`unit_margins`
    adds the unit's own figures).

    ``vectors``/``weighted`` are written only with ``keep_vectors`` (risk vectors asked for,
    or the correlated step's per-unit tail cells); else they may be ``(0, S)`` arrays.

    ``pos_group``: expiry group per position (-1: none); a unit's groups are numbered after
    those of the units before it, so group sums of one unit never touch another's.
    """
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        lo = c * n // chunks
        hi = (c + 1) * n // chunks
        unit_figures_rows(sel, lo, hi, True, pu_start, pu_order, pos_instr, pos_row, quantity,
            q_port, entry_price, short_opt, som_rate, pos_group, pos_excluded, kind, settlement,
            contract_size, mark, forward, instr_greeks, instr_pnl, unit_und, unit_px, index_px,
            coin_settled, threshold_usd, m_inc, max_delta_shock, group_rate, ou_start, ou_order,
            ord_row, ord_qty, res_oo, n_scen, price_shock, loss_weight, gain_weight, gain_cap_usd,
            dampener_usd, vol_code, keep_vectors, vectors, weighted, worst, binding, scenario_shock,
            scenario_vol, order_im, open_orders, roll_group, roll_coin, delta_coin, som_coin, conv,
            unit_delta, unit_gamma, unit_vega, unit_theta, value, model_value, upnl, delta, gamma,
            vega, theta, pos_delta, slope_usd, finite)


@njit
def unit_figures_serial(sel, pu_start, pu_order, pos_instr, pos_row, quantity, q_port, entry_price,
                        short_opt, som_rate, pos_group, pos_excluded, kind, settlement,
                        contract_size, mark, forward, instr_greeks, instr_pnl, unit_und, unit_px,
                        index_px, coin_settled, threshold_usd, m_inc, max_delta_shock, group_rate,
                        ou_start, ou_order, ord_row, ord_qty, res_oo, n_scen, price_shock,
                        loss_weight, gain_weight, gain_cap_usd, dampener_usd, vol_code,
                        keep_vectors, vectors, weighted, worst, binding, scenario_shock,
                        scenario_vol, order_im, open_orders, roll_group, roll_coin, delta_coin,
                        som_coin, conv, unit_delta, unit_gamma, unit_vega, unit_theta, value,
                        model_value, upnl, delta, gamma, vega, theta, pos_delta, slope_usd, finite):
    """:func:`unit_figures` on one thread (small selections: no thread wake-up)."""
    unit_figures_rows(sel, 0, sel.shape[0], True, pu_start, pu_order, pos_instr, pos_row, quantity,
                      q_port, entry_price, short_opt, som_rate, pos_group, pos_excluded, kind,
                      settlement, contract_size, mark, forward, instr_greeks, instr_pnl, unit_und,
                      unit_px, index_px, coin_settled, threshold_usd, m_inc, max_delta_shock,
                      group_rate, ou_start, ou_order, ord_row, ord_qty, res_oo, n_scen,
                      price_shock, loss_weight, gain_weight, gain_cap_usd, dampener_usd, vol_code,
                      keep_vectors, vectors, weighted, worst, binding, scenario_shock,
                      scenario_vol, order_im, open_orders, roll_group, roll_coin, delta_coin,
                      som_coin, conv, unit_delta, unit_gamma, unit_vega, unit_theta, value,
                      model_value, upnl, delta, gamma, vega, theta, pos_delta, slope_usd, finite)


@njit
def unit_margins_rows(sel, lo, hi, positions, pu_start, pu_order, pos_group, pos_delta, short_opt,
                      som_rate, excluded_pos, own_given, own_from_binding, pos_row, q_port,
                      instr_pnl, unit_und, loss_weight, binding, worst, scenario_margin, roll_group,
                      roll_coin, delta_coin, som_coin, conv, excluded, open_orders, mmp,
                      risk_multiplier, mm_factor, im_factor, group_den, unit_delta, unit_gamma,
                      unit_vega, unit_theta, roll, delta_shock, som, rmm, mm, im, own_loss,
                      mm_contrib, im_contrib, finite):
    """Rows ``sel[lo:hi]`` of :func:`unit_margins` (shared by the parallel and the serial kernel:
    one call per chunk of rows, so no per-row call cost).  Without ``positions`` only the
    units' figures are written (:func:`unit_tick`)."""
    for k in range(lo, hi):
        u = np.uint64(sel[k])
        r = np.uint64(unit_und[u])
        cv = conv[u]
        ro = roll_coin[u] * cv
        ds = delta_coin[u] * cv
        so = som_coin[u] * cv
        roll[u] = ro
        delta_shock[u] = ds
        som[u] = so
        x = scenario_margin[u] + ro + ds + so
        rmm[u] = x
        mm[u] = risk_multiplier * mm_factor * x + excluded[u]
        im[u] = risk_multiplier * im_factor * x + im_factor * excluded[u] + open_orders[u] + mmp[u]
        b = binding[u]
        w = worst[u]
        probe = (w * 0.0 + ro * 0.0 + ds * 0.0 + so * 0.0 + open_orders[u] * 0.0
                 + mmp[u] * 0.0 + scenario_margin[u] * 0.0 + excluded[u] * 0.0 + x * 0.0
                 + mm[u] * 0.0 + im[u] * 0.0 + unit_delta[u] * 0.0 + unit_gamma[u] * 0.0
                 + unit_vega[u] * 0.0 + unit_theta[u] * 0.0)
        if not positions:
            finite[u] = 1.0 if probe == 0.0 and finite[u] == 1.0 else 0.0
            continue
        p0, p1 = pu_start[u], pu_start[u + 1]
        den_u = 0.0
        for j in range(p0, p1):
            p = np.uint64(pu_order[j])
            g = pos_group[p]
            if g >= 0:
                group_den[g] = 0.0
        for j in range(p0, p1):
            p = np.uint64(pu_order[j])
            a = abs(pos_delta[p])
            den_u += a
            g = pos_group[p]
            if g >= 0:
                group_den[g] += a
        for j in range(p0, p1):
            p = np.uint64(pu_order[j])
            if own_from_binding:
                if w > 0.0:
                    own = -loss_weight[r, b] * (q_port[p] * instr_pnl[np.uint64(pos_row[p]), b])
                else:
                    own = 0.0
            else:
                own = own_given[p]
            own_loss[p] = own
            a = abs(pos_delta[p])
            g = pos_group[p]
            rs = 0.0
            if g >= 0 and group_den[g] > 0.0:
                rs = roll_group[g] * a / group_den[g]
            dss = delta_coin[u] * a / den_u if den_u > 0.0 else 0.0
            base = own + (rs + dss + short_opt[p] * som_rate[p]) * cv
            mc = risk_multiplier * mm_factor * base + excluded_pos[p]
            ic = risk_multiplier * im_factor * base + im_factor * excluded_pos[p]
            mm_contrib[p] = mc
            im_contrib[p] = ic
            # x * 0.0 is 0 for a finite x and NaN otherwise: one probe for every figure
            probe += mc * 0.0 + ic * 0.0
        # its positions' values and Greeks: as unit_figures found them
        finite[u] = 1.0 if probe == 0.0 and finite[u] == 1.0 else 0.0


@njit(parallel=True)
def unit_margins(sel, pu_start, pu_order, pos_group, pos_delta, short_opt, som_rate, excluded_pos,
                 own_given, own_from_binding, pos_row, q_port, instr_pnl, unit_und, loss_weight,
                 binding, worst, scenario_margin, roll_group, roll_coin, delta_coin, som_coin,
                 conv, excluded, open_orders, mmp, risk_multiplier, mm_factor, im_factor,
                 group_den, unit_delta,
                 unit_gamma, unit_vega, unit_theta, roll, delta_shock, som, rmm, mm, im, own_loss,
                 mm_contrib, im_contrib, finite):
    """Per selected unit: add-ons in settlement currency (``roll``, ``delta_shock``,
    ``som``), risk-matrix margin ``rmm = scenario_margin + add-ons``, ``mm = rm x mm_factor x
    rmm + excluded``, ``im = rm x im_factor x rmm + im_factor x excluded + open_orders +
    mmp``; per position its own loss in the scenario that sets the margin (``own_loss``: from
    the unit's binding cell when ``own_from_binding``, else ``own_given``) and contributions
    ``rm x factor x (own loss + shares of roll and delta shock by |delta| + its short option
    minimum) + excluded margin``.  ``finite[u]`` (1.0 from :func:`unit_figures` when the
    positions' values and Greeks are finite) stays 1.0 only if every figure written here is
    finite too."""
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        lo = c * n // chunks
        hi = (c + 1) * n // chunks
        unit_margins_rows(sel, lo, hi, True, pu_start, pu_order, pos_group, pos_delta, short_opt,
            som_rate, excluded_pos, own_given, own_from_binding, pos_row, q_port, instr_pnl,
            unit_und, loss_weight, binding, worst, scenario_margin, roll_group, roll_coin,
            delta_coin, som_coin, conv, excluded, open_orders, mmp, risk_multiplier, mm_factor,
            im_factor, group_den, unit_delta,
            unit_gamma, unit_vega, unit_theta, roll, delta_shock, som, rmm, mm, im, own_loss,
            mm_contrib, im_contrib, finite)


@njit
def unit_margins_serial(sel, pu_start, pu_order, pos_group, pos_delta, short_opt, som_rate,
                        excluded_pos, own_given, own_from_binding, pos_row, q_port, instr_pnl,
                        unit_und, loss_weight, binding, worst, scenario_margin, roll_group,
                        roll_coin, delta_coin, som_coin, conv, excluded, open_orders, mmp,
                        risk_multiplier, mm_factor, im_factor, group_den,
                        unit_delta, unit_gamma, unit_vega, unit_theta,
                        roll, delta_shock, som, rmm, mm, im, own_loss, mm_contrib, im_contrib,
                        finite):
    """:func:`unit_margins` on one thread (small selections: no thread wake-up)."""
    unit_margins_rows(sel, 0, sel.shape[0], True,  pu_start, pu_order, pos_group, pos_delta,
                      short_opt, som_rate, excluded_pos, own_given, own_from_binding, pos_row,
                      q_port, instr_pnl, unit_und, loss_weight, binding, worst, scenario_margin,
                      roll_group, roll_coin, delta_coin, som_coin, conv, excluded, open_orders, mmp,
                      risk_multiplier, mm_factor, im_factor, group_den, unit_delta, unit_gamma,
                      unit_vega, unit_theta, roll, delta_shock, som, rmm, mm, im, own_loss,
                      mm_contrib, im_contrib, finite)


RUN = 512  # units per run of :func:`unit_tick`: both phases on a run while it is in cache;
# a run of 512 spreads the rows functions' calls and scratch arrays over enough units


@njit
def unit_tick_rows(sel, lo, hi, figures, margins, worst, scenario_margin):
    """Rows ``sel[lo:hi]`` of :func:`unit_tick`, a run of ``RUN`` units at a time."""
    for a in range(lo, hi, RUN):
        b = min(a + RUN, hi)
        unit_figures_rows(sel, a, b, False, *figures)
        for k in range(a, b):
            scenario_margin[sel[k]] = worst[sel[k]]
        unit_margins_rows(sel, a, b, False, *margins)


@njit(parallel=True)
def unit_tick(sel, figures, margins, worst, scenario_margin):
    """:func:`unit_figures`, then :func:`unit_margins` with each unit's own worst case as its
    scenario margin (``cross_unit = "sum"``), on the selected units only: the units' figures
    as those two kernels write them, and of the positions' figures ``value`` alone (the
    others are left as they were: a caller that needs them runs the two kernels).
    ``figures`` and ``margins`` are the two kernels' arguments after ``sel`` (tuples; the
    margins' ``own_from_binding`` true); ``worst`` and ``scenario_margin`` are the arrays
    of those names among them.  A :class:`pmrisk.Monitor` tick under ``"sum"``: one pass
    over the units' positions instead of two, and none of the per-position stores."""
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        unit_tick_rows(sel, c * n // chunks, (c + 1) * n // chunks, figures, margins, worst,
                       scenario_margin)


@njit
def unit_tick_serial(sel, figures, margins, worst, scenario_margin):
    """:func:`unit_tick` on one thread (small selections: no thread wake-up)."""
    unit_tick_rows(sel, 0, sel.shape[0], figures, margins, worst, scenario_margin)


@njit
def account_figures_rows(sel, lo, hi, pa_start, pa_order, pos_unit, value, unit_px, ua_start, mm,
                         im, scenario_margin, ba_start, ba_order, collateral_usd, balance_usd,
                         loan_mmr, loan_im_factor, equity, actual_equity, loan_mm, loan_im, acc_mm,
                         acc_im, acc_scen, finite):
    """Rows ``sel[lo:hi]`` of :func:`account_figures` (shared by the parallel and the serial kernel:
    one call per chunk of rows, so no per-row call cost)."""
    for k in range(lo, hi):
        a = np.uint64(sel[k])
        eq = 0.0
        for j in range(pa_start[a], pa_start[a + 1]):
            p = np.uint64(pa_order[j])
            eq += value[p] * unit_px[np.uint64(pos_unit[p])]
        coll = 0.0
        usd = 0.0
        loans = 0.0
        for j in range(ba_start[a], ba_start[a + 1]):
            b = np.uint64(ba_order[j])
            coll += collateral_usd[b]
            usd += balance_usd[b]
            loans += abs(min(balance_usd[b], 0.0))
        equity[a] = eq + coll
        actual_equity[a] = eq + usd
        lm = loan_mmr * loans
        li = loan_im_factor * lm
        loan_mm[a] = lm
        loan_im[a] = li
        s_mm = 0.0
        s_im = 0.0
        s_sc = 0.0
        for w in range(ua_start[a], ua_start[a + 1]):
            v = np.uint64(w)
            s_mm += mm[v] * unit_px[v]
            s_im += im[v] * unit_px[v]
            s_sc += scenario_margin[v] * unit_px[v]
        acc_mm[a] = s_mm + lm
        acc_im[a] = s_im + li
        acc_scen[a] = s_sc
        probe = (equity[a] * 0.0 + actual_equity[a] * 0.0 + lm * 0.0 + acc_mm[a] * 0.0
                 + acc_im[a] * 0.0 + s_sc * 0.0)
        finite[a] = 1.0 if probe == 0.0 else 0.0


@njit(parallel=True)
def account_figures(sel, pa_start, pa_order, pos_unit, value, unit_px, ua_start, mm, im,
                    scenario_margin, ba_start, ba_order, collateral_usd, balance_usd, loan_mmr,
                    loan_im_factor, equity, actual_equity, loan_mm, loan_im, acc_mm, acc_im,
                    acc_scen, finite):
    """Per selected account (USD): positions' value plus collateral (``equity``; at full
    value: ``actual_equity``), the loans' MM ``loan_mm = loan_mmr x loans`` and IM
    ``loan_im = loan_im_factor x loan_mm``, MM and IM summed over its units (units of
    account ``a`` are rows ``ua_start[a]:ua_start[a + 1]``) plus the loans', and scenario
    margin summed over its units."""
    n = sel.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        lo = c * n // chunks
        hi = (c + 1) * n // chunks
        account_figures_rows(sel, lo, hi, pa_start, pa_order, pos_unit, value, unit_px, ua_start,
            mm, im, scenario_margin, ba_start, ba_order, collateral_usd, balance_usd, loan_mmr,
            loan_im_factor, equity, actual_equity, loan_mm, loan_im, acc_mm, acc_im, acc_scen,
            finite)


@njit
def account_figures_serial(sel, pa_start, pa_order, pos_unit, value, unit_px, ua_start, mm, im,
                           scenario_margin, ba_start, ba_order, collateral_usd, balance_usd,
                           loan_mmr, loan_im_factor, equity, actual_equity, loan_mm, loan_im,
                           acc_mm, acc_im, acc_scen, finite):
    """:func:`account_figures` on one thread (small selections: no thread wake-up)."""
    account_figures_rows(sel, 0, sel.shape[0], pa_start, pa_order, pos_unit, value, unit_px,
                         ua_start, mm, im, scenario_margin, ba_start, ba_order, collateral_usd,
                         balance_usd, loan_mmr, loan_im_factor, equity, actual_equity, loan_mm,
                         loan_im, acc_mm, acc_im, acc_scen, finite)


@njit
def prices_at(sel, utype, settle_by_type, index_by_type, settle_px, index_px):
    """Per selected unit ``u = sel[k]``, of unit type ``utype[k]``: ``settle_px[u]`` and
    ``index_px[u]`` from the prices per unit type (a Monitor tick's moved prices, written in
    one pass instead of a gather and a scatter per array)."""
    for k in range(sel.shape[0]):
        u = np.uint64(sel[k])
        t = np.uint64(utype[k])
        settle_px[u] = settle_by_type[t]
        index_px[u] = index_by_type[t]


@njit
def all_set(flags, sel):
    """Whether ``flags[sel[k]]`` is 1.0 for every ``k`` (the phase kernels' ``finite`` flags
    over a selection, without gathering them)."""
    for k in range(sel.shape[0]):
        if flags[np.uint64(sel[k])] != 1.0:
            return False
    return True


@njit
def largest_units(sel, ua_start, worst):
    """Per selected account ``a = sel[k]``: its unit with the largest ``worst`` (units of
    account ``a`` are rows ``ua_start[a]:ua_start[a + 1]``; ties: the first; NaN is passed
    over unless every unit is NaN, then the first), or -1 when it has no unit.  O(units of
    the selection)."""
    lead = np.full(sel.shape[0], -1, dtype=np.int64)
    for k in range(sel.shape[0]):
        a = sel[k]
        best = -1
        bw = 0.0
        for v in range(ua_start[a], ua_start[a + 1]):
            w = worst[v]
            if best < 0 or w > bw or (bw != bw and w == w):
                best = v
                bw = w
        lead[k] = best
    return lead


@njit
def position_expiry_keys(pos_instr, kind, expiry_ns):
    """``(key, dated)`` per position for :func:`pmrisk.kernel.layout.expiry_groups`, in one
    pass: a perpetual's key is its own (``-1 - instrument``), a future's or option's its
    expiry; ``dated`` (0/1) for futures, options and perpetuals (spot positions belong to no
    group)."""
    n = pos_instr.shape[0]
    key = np.empty(n, dtype=np.int64)
    dated = np.empty(n, dtype=np.int64)
    expiry_keys_rows(0, n, pos_instr, kind, expiry_ns, key, dated)
    return key, dated


@njit(inline="always")
def expiry_keys_rows(lo, hi, pos_instr, kind, expiry_ns, key, dated):
    """:func:`position_expiry_keys` of the positions ``lo .. hi - 1``, written into ``key``
    and ``dated``."""
    for j in range(lo, hi):
        i = pos_instr[j]
        k = kind[i]
        key[j] = -1 - i if k == PERPETUAL else expiry_ns[i]
        dated[j] = 1 if (k == FUTURE or k == OPTION or k == PERPETUAL) else 0


@njit(inline="always")
def csr_count(keys, start):
    """The first half of :func:`csr`: ``start`` (zeros, ``n_groups + 1``) becomes the start
    of each group's run (counts, then their running sum)."""
    for r in range(keys.shape[0]):
        k = keys[r]
        if k >= 0:
            start[k + 1] += 1
    for g in range(start.shape[0] - 1):
        start[g + 1] += start[g]


@njit(inline="always")
def csr_fill(keys, start, order):
    """The second half of :func:`csr`: ``order`` (``start[-1]`` rows) the members of each
    group in increasing row order."""
    fill = start[:-1].copy()
    for r in range(keys.shape[0]):
        k = keys[r]
        if k >= 0:
            order[fill[k]] = r
            fill[k] += 1

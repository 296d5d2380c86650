"""The margin computation on validated arrays: kernels in order, no pyarrow.

``run(book, model)`` returns an :class:`Outcome` of plain numpy arrays; :mod:`pmrisk.results`
turns it into Arrow tables.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from pmrisk import kernel as K
from pmrisk.kernel import addons
from pmrisk.kernel import scenarios as S
from pmrisk.kernel.instruments import FUTURE, INVERSE, OPTION, PERPETUAL, SPOT
from pmrisk.kernel.volshock import shocked_vols

from ._arrow import codes, kernel_args, sum_by, unique_keys
from .correlated import run_joint
from .excluded import (Standalone, excluded_instruments, excluded_positions,
                       standalone_margin)
from .model import collateral_value_usd
from .resources import check_memory, shape_of
from .scenario_table import scenario_set_for
from .units import build_units


@dataclass
class Outcome:
    book: object
    units: object
    scen: S.PaddedScenarios
    instr_type: np.ndarray
    pos_unit: np.ndarray
    # per unit (settlement currency unless *_usd)
    vectors: np.ndarray
    weighted: np.ndarray
    worst: np.ndarray
    binding: np.ndarray
    roll: np.ndarray
    dshock: np.ndarray
    som: np.ndarray
    orders: np.ndarray
    mmp: np.ndarray
    scen_margin: np.ndarray        # the unit's part of its account's scenario margin
    scen_shock: np.ndarray         # the unit's move in that scenario (NaN: not part of it)
    scen_vol: np.ndarray           # its vol state there (-1: not part of it)
    excluded: np.ndarray           # SPAN standalone margin of the unit's excluded positions
    rmm: np.ndarray
    mm: np.ndarray
    im: np.ndarray
    unit_greeks: np.ndarray        # (4, n_units): delta, gamma, vega, theta
    # per position
    value: np.ndarray
    model_value: np.ndarray
    upnl: np.ndarray
    greeks: np.ndarray             # (4, n_pos)
    mm_contrib: np.ndarray
    im_contrib: np.ndarray
    # per account (USD)
    equity: np.ndarray
    actual_equity: np.ndarray
    loan_mm: np.ndarray
    acc_mm: np.ndarray
    acc_im: np.ndarray
    acc_scen: np.ndarray           # scenario margin per account, USD
    acc_desc: list                 # binding scenario per account, described
    excluded_pos: np.ndarray       # bool per position
    correlation: object            # CorrelationMatrix in correlated mode, else None
    instr_pnl: np.ndarray          # per revaluation row (pos_row) and scenario
    pos_row: np.ndarray


def und_param(model, names, key):
    return np.array([model.underlying(u)[key] for u in names], dtype=np.float64)


def per_instr(model, units, instr_type, key):
    return und_param(model, units.type_und, key)[instr_type]


class Revaluation(NamedTuple):
    """What :func:`revaluation_inputs` prepares: the units, the per-underlying scenario sets,
    the argument tuple of :func:`pmrisk.kernel.instrument_pnl` over the revaluation rows, and
    each position's and order's row (``pos_row``, ``ord_row``)."""
    units: object
    itype: np.ndarray           # unit type per active instrument
    pos_unit: np.ndarray
    ord_unit: np.ndarray
    res_unit: np.ndarray
    scen: S.PaddedScenarios
    args: tuple
    pos_row: np.ndarray
    ord_row: np.ndarray


def revaluation_inputs(book, model):
    """Units, scenario sets and the arguments of :func:`pmrisk.kernel.instrument_pnl` for a
    validated book (shared by :func:`run`, the benchmarks and the oracle tests).

    Revaluation rows are the active instruments at their market vol, followed by a copy at
    the model's vol floor of every option whose floor binds (floor > mark_iv) and that is
    held short or sold by an open order.  Short positions and sell orders use the floored
    copy, everything else the market row: the floor makes a short option's scenarios worse
    and never values a long option above its market vol, so margin can only rise with the
    floor (sigma is raised to the floor; docs/methodology.md, "Vol floor").
    """
    units, itype, pos_unit, ord_unit, res_unit = build_units(book, model)
    scen = S.pad([scenario_set_for(model, u) for u in units.underlyings])
    und = units.type_und_code[itype] if len(itype) else np.zeros(0, dtype=np.int64)
    pi = lambda key: per_instr(model, units, itype, key)  # noqa: E731
    sig_mark = np.where(book.kind == OPTION, book.mark_iv, 0.0)
    floor = pi("vol_floor") if len(itype) else np.zeros(0)
    binds = (book.kind == OPTION) & (floor > sig_mark)
    short = np.zeros(len(book.kind), dtype=bool)
    short[book.pos_instr[book.quantity < 0]] = True
    short[book.ord_instr[book.ord_qty < 0]] = True
    copy = np.flatnonzero(binds & short)
    rows = np.concatenate([np.arange(len(book.kind)), copy])
    row_of_copy = np.full(len(book.kind), -1, dtype=np.int64)
    row_of_copy[copy] = len(book.kind) + np.arange(len(copy))
    floor_r = np.concatenate([np.zeros(len(book.kind)), floor[copy]])
    absolute = np.array([model.underlying(u)["vol_shock"] == "absolute"
                         for u in units.type_und], dtype=bool)[itype]
    pr = lambda key: pi(key)[rows]  # noqa: E731
    same, up, down = shocked_vols(
        sig_mark[rows], book.years[rows] * 365.0, floor_r, pr("volatility_range_up"),
        pr("volatility_range_down"), pr("short_term_vega_power"), pr("long_term_vega_power"),
        pr("min_volatility_for_shock_up"), absolute[rows], pr("vol_scan_range"))
    t_scen = np.maximum(book.years[rows] - pr("horizon_days") / 365.0, 0.0)
    c = np.ascontiguousarray
    args = kernel_args(book.kind[rows], book.settlement[rows], book.contract_size[rows],
                       book.mark[rows], book.forward[rows], book.strike[rows],
                       book.is_call[rows], book.years[rows], c(t_scen), c(sig_mark[rows]),
                       c(up), c(same), c(down), c(und[rows]), float(model["rate"]),
                       scen.n_scen, scen.price_shock, scen.log1p_shock, scen.vol_code,
                       scen.vol_factor, scen.pnl_scale)

    def row_of(instr, qty):
        fl = row_of_copy[instr] if len(instr) else instr
        return np.where((qty < 0) & (fl >= 0), fl, instr).astype(np.int64)

    return Revaluation(units, itype, pos_unit, ord_unit, res_unit, scen, args,
                       row_of(book.pos_instr, book.quantity), row_of(book.ord_instr, book.ord_qty))


def run(book, model, risk_vectors=False):
    """The engine on a validated book; first refuses a call whose estimated peak memory
    (``risk_vectors``: the risk-vector tables the caller will build) is above the model's
    ``max_memory_gb`` (:func:`pmrisk.resources.check_memory`)."""
    check_memory(model, shape_of(book, model), risk_vectors)
    rv = revaluation_inputs(book, model)
    units, itype, pos_unit, ord_unit, res_unit, scen, pnl_args = rv[:7]
    pos_row = rv.pos_row
    n_units = len(units)
    n_acc = len(book.accounts)
    rate = float(model["rate"])
    sig_mark = np.where(book.kind == OPTION, book.mark_iv, 0.0)
    instr_pnl = K.instrument_pnl(*pnl_args)
    sc = kernel_args(scen.n_scen, scen.loss_weight, scen.gain_weight, scen.gain_cap_usd,
                     scen.dampener_usd, scen.vol_code)

    # -- excluded positions are left out of every portfolio figure ----------------
    excl = excluded_positions(book, model)
    q = book.quantity
    q_port = np.where(excl, 0.0, q)

    # -- unit risk vectors, weighting, worst case ---------------------------------------------
    unit_und = units.type_und_code[units.utype]
    unit_px = units.settle_px
    vectors = K.unit_risk_vectors(*kernel_args(pos_unit, pos_row, q_port, instr_pnl), n_units)
    weighted, worst, binding = K.weighted_worst(*kernel_args(vectors, unit_und, unit_px), *sc)
    order_im = K.order_margin(*kernel_args(ord_unit, rv.ord_row, book.ord_qty, vectors,
                                           instr_pnl, unit_und, unit_px, worst), *sc)

    g = K.instrument_greeks(*kernel_args(book.kind, book.settlement, book.contract_size,
                                         book.mark, book.forward, book.strike, book.is_call,
                                         book.years, sig_mark), rate)
    value, model_value, upnl, greeks = position_values(book, g)
    unit_greeks = np.vstack([sum_by(pos_unit, weights=greeks[k], minlength=n_units)
                             for k in range(4)]) if n_units else np.zeros((4, 0))

    # -- add-ons (coin amounts; linear units convert at index/settlement price) ---------------
    coin_settled = np.array([u == c for u, c in zip(units.type_und, units.type_ccy)],
                            dtype=bool)[units.utype]
    conv_u = np.where(coin_settled, 1.0, units.index_px / unit_px)
    pos_delta = np.where(excl, 0.0, greeks[0])
    pos_group, group_rate, group_unit = expiry_groups(book, model, units, pos_unit)
    roll_coin, roll_group, _ = addons.roll_shock(pos_group, pos_delta, group_rate, group_unit,
                                                 n_units)
    unit_delta = sum_by(pos_unit, weights=pos_delta, minlength=n_units)
    up_ = lambda key: und_param(model, units.type_und, key)[units.utype]  # noqa: E731
    dshock_coin = addons.delta_shock(unit_delta, units.index_px,
                                     up_("delta_total_liq_shock_threshold"), up_("m_inc"),
                                     up_("max_delta_shock"))
    short_all = np.where((book.kind[book.pos_instr] == OPTION) & (q < 0), -q, 0.0)
    short_opt = np.where(excl, 0.0, short_all)
    som_rate = per_instr(model, units, itype, "short_option_minimum")[book.pos_instr] \
        if len(q) else q
    som_coin = addons.short_option_minimum(pos_unit, short_opt, som_rate, n_units)
    roll = roll_coin * conv_u
    dshock = dshock_coin * conv_u
    som = som_coin * conv_u
    orders = sum_by(ord_unit, weights=order_im, minlength=n_units)
    orders = orders + sum_by(res_unit, weights=book.res_oo, minlength=n_units)
    mmp = sum_by(res_unit, weights=book.res_mmp, minlength=n_units)
    span = Standalone(model, units, pnl_args) if excl.any() or \
        (len(book.ord_instr) and excluded_instruments(book, model)[book.ord_instr].any()) \
        else None
    excl_pos = standalone_margin(span, pos_unit, pos_row, excl, q, units, unit_px,
                                 short_all * som_rate * conv_u[pos_unit]) if span else \
        np.zeros(len(q))
    excluded = sum_by(pos_unit, weights=excl_pos, minlength=n_units).astype(np.float64)
    if span is not None:
        order_im = _excluded_order_margin(book, model, units, span, rv, order_im, unit_px,
                                          conv_u, itype)
        orders = sum_by(ord_unit, weights=order_im, minlength=n_units) \
            + sum_by(res_unit, weights=book.res_oo, minlength=n_units)

    # -- scenario margin: per unit (sum) or joint across the account's units (correlated) ----
    b = binding[pos_unit]
    cell = q_port * instr_pnl[pos_row, b] if len(q) else q
    own_loss = np.where(worst[pos_unit] > 0.0,
                        -scen.loss_weight[unit_und[pos_unit], b] * cell, 0.0)
    correlation = None
    if model["cross_unit"] == "correlated":
        scen_margin, own_loss, acc_desc, correlation, u_shock, u_vol = _correlated(
            book, model, units, pos_unit, pos_row, q_port, pnl_args, unit_px, weighted, scen,
            instr_pnl, _unit_slope_usd(book, pos_unit, pos_delta, n_units, unit_px))
    else:
        scen_margin = worst
        acc_desc = None
        u_shock = np.where(worst > 0, scen.price_shock[unit_und, binding], np.nan) \
            if n_units else np.zeros(0)
        u_vol = np.where(worst > 0, scen.vol_code[unit_und, binding], -1) \
            if n_units else np.zeros(0, np.int64)
    rm = float(model["risk_multiplier"])
    rmm = scen_margin + roll + dshock + som
    # the excluded positions' standalone margin is added to MM, x im_factor to IM
    mm = rm * model["mm_factor"] * rmm + excluded
    im = rm * model["im_factor"] * rmm + model["im_factor"] * excluded + orders + mmp

    # -- contributions: own loss in the binding cell + shares of each add-on ------
    absd = np.abs(pos_delta)
    roll_share = pro_rata_share(roll_group, pos_group, absd)
    ds_share = pro_rata_share(dshock_coin, pos_unit, absd)
    base = own_loss + (roll_share + ds_share + short_opt * som_rate) * conv_u[pos_unit]
    mm_contrib = rm * model["mm_factor"] * base + excl_pos
    im_contrib = rm * model["im_factor"] * base + model["im_factor"] * excl_pos

    # -- equity (USD) ------------------------------------------------------------------------
    eq_pos = sum_by(book.pos_account, weights=value * unit_px[pos_unit], minlength=n_acc)
    coll, bal_usd = collateral_usd(book, model)
    equity = eq_pos + sum_by(book.bal_account, weights=coll, minlength=n_acc)
    actual_equity = eq_pos + sum_by(book.bal_account, weights=bal_usd, minlength=n_acc)
    loan_mm = model["loan_mmr"] * sum_by(book.bal_account,
                                              weights=np.abs(np.minimum(bal_usd, 0.0)),
                                              minlength=n_acc)
    acc_mm = sum_by(units.account, weights=mm * unit_px, minlength=n_acc) + loan_mm
    acc_im = sum_by(units.account, weights=im * unit_px, minlength=n_acc) + loan_mm

    acc_scen = sum_by(units.account, weights=scen_margin * unit_px,
                           minlength=n_acc).astype(np.float64)
    return Outcome(book=book, units=units, scen=scen, instr_type=itype, pos_unit=pos_unit,
                   vectors=vectors, weighted=weighted, worst=worst, binding=binding,
                   roll=roll, dshock=dshock, som=som, orders=orders, mmp=mmp,
                   scen_margin=scen_margin, scen_shock=u_shock, scen_vol=u_vol,
                   excluded=excluded, rmm=rmm, mm=mm,
                   im=im, unit_greeks=unit_greeks, value=value, model_value=model_value,
                   upnl=upnl, greeks=greeks, mm_contrib=mm_contrib, im_contrib=im_contrib,
                   equity=equity, actual_equity=actual_equity, loan_mm=loan_mm, acc_mm=acc_mm,
                   acc_im=acc_im, acc_scen=acc_scen, acc_desc=acc_desc, excluded_pos=excl,
                   correlation=correlation, instr_pnl=instr_pnl, pos_row=pos_row)


def _correlated(book, model, units, pos_unit, pos_row, q_port, pnl_args, unit_px, weighted,
                scen, instr_pnl, unit_delta_usd):
    """Scenario margin per unit in correlated mode: each account's worst of the joint
    scenarios and, per unit, of the cells that stay per unit (Deribit's extended table always;
    the extremes with ``tail_mode = "per_unit"``).  Returns ``(unit share of the account's
    scenario margin, each position's own loss there, account descriptions, correlation)``."""
    n_acc = len(book.accounts)
    n_units = len(units)
    jr = run_joint(book, model, units, pos_unit, pos_row, q_port, pnl_args, unit_px,
                   unit_delta_usd)
    unit_und = units.type_und_code[units.utype]
    per_unit = scen.table == S.TABLE_EXTENDED
    if model["tail_mode"] == "per_unit":
        per_unit = per_unit | (scen.table == S.TABLE_EXTREME)
    cols = np.arange(weighted.shape[1])
    real = cols[None, :] < scen.n_scen[unit_und][:, None] if n_units else \
        np.zeros((0, weighted.shape[1]), dtype=bool)
    tail_cells = np.where(per_unit[unit_und] & real, weighted, np.inf)
    tail_cell = np.argmin(tail_cells, axis=1) if weighted.shape[1] else \
        np.zeros(n_units, dtype=np.int64)
    tail_w = tail_cells[np.arange(n_units), tail_cell] if n_units else np.zeros(0)
    tail_worst = np.where(np.isfinite(tail_w), np.maximum(-tail_w, 0.0), 0.0)
    tail_usd = tail_worst * unit_px
    # per account: the unit with the largest per-unit tail (ties: the first unit)
    best_tail = np.zeros(n_acc)
    tail_unit = np.full(n_acc, -1, dtype=np.int64)
    if n_units:
        order = np.lexsort((np.arange(n_units), -tail_usd, units.account))
        lead = order[np.r_[True, units.account[order][1:] != units.account[order][:-1]]]
        lead = lead[tail_usd[lead] > 0.0]
        tail_unit[units.account[lead]] = lead
        best_tail[units.account[lead]] = tail_usd[lead]
    joint_binds = jr.worst_usd >= best_tail
    share = np.where(joint_binds[units.account] & (jr.worst_usd[units.account] > 0.0),
                     -jr.unit_value, 0.0)
    pos_acc = units.account[pos_unit]
    own = np.where(joint_binds[pos_acc] & (jr.worst_usd[pos_acc] > 0.0), jr.pos_loss, 0.0)
    desc = list(jr.description)
    # each unit's move and vol state in the binding scenario (NaN / -1: not part of it)
    taking_part = joint_binds[units.account] & (jr.worst_usd[units.account] > 0.0)
    u_shock = np.where(taking_part, jr.unit_shock, np.nan)
    u_vol = np.where(taking_part, jr.unit_vol, -1)
    # accounts whose largest per-unit tail binds: that unit alone, at its tail cell
    tail_acc = np.flatnonzero(~joint_binds)
    tu = tail_unit[tail_acc]
    share[tu] = tail_worst[tu]
    u_shock[tu] = scen.price_shock[unit_und[tu], tail_cell[tu]]
    u_vol[tu] = scen.vol_code[unit_und[tu], tail_cell[tu]]
    in_tail = np.zeros(n_units, dtype=bool)
    in_tail[tu] = True
    on = in_tail[pos_unit]
    c = tail_cell[pos_unit[on]]
    own[on] = -scen.loss_weight[unit_und[pos_unit[on]], c] * q_port[on] \
        * instr_pnl[pos_row[on], c]
    for a, u in zip(tail_acc.tolist(), tu.tolist()):
        k, c = unit_und[u], tail_cell[u]
        desc[a] = (f"{units.type_names[units.utype[u]]} {S.TABLES[scen.table[k, c]]} "
                   f"{scen.price_shock[k, c]:+.2%} vol {S.VOL_STATES[scen.vol_code[k, c]]}")
    return share, own, desc, jr.correlation, u_shock, u_vol


def _unit_slope_usd(book, pos_unit, pos_delta, n_units, unit_px):
    """Each unit's first-order P&L per unit relative move of its underlying, in USD: a linear
    position moves from its own mark (futures, spot) or forward (options), so its slope is
    delta x that price; an inverse position's delta is already its coin P&L per relative move
    (the net transaction delta), valued at the coin's USD price."""
    pi_ = book.pos_instr
    linear = book.settlement[pi_] != INVERSE
    ref = np.where(book.kind[pi_] == OPTION, book.forward[pi_], book.mark[pi_])
    slope = pos_delta * np.where(linear, ref, 1.0)
    return sum_by(pos_unit, weights=slope, minlength=n_units) * unit_px


def _excluded_order_margin(book, model, units, span, rv, order_im, unit_px, conv_u, itype):
    """Open orders on excluded instruments: the increase of the standalone SPAN margin (plus
    short option minimum) of the account's position in that instrument if the order filled,
    never negative (the portfolio never sees them)."""
    ex = excluded_instruments(book, model)[book.ord_instr]
    if not ex.any():
        return order_im
    out = order_im.copy()
    held = {(a, i): book.quantity[p] for p, (a, i) in
            enumerate(zip(book.pos_account.tolist(), book.pos_instr.tolist()))}
    o = np.flatnonzero(ex)
    before = np.array([held.get((a, i), 0.0) for a, i in
                       zip(book.ord_account[o].tolist(), book.ord_instr[o].tolist())])
    after = before + book.ord_qty[o]
    instr = book.ord_instr[o]
    u = rv.ord_unit[o]
    und_row = units.type_und_code[units.utype[u]]
    px = unit_px[u]
    rate = per_instr(model, units, itype, "short_option_minimum")[instr] * conv_u[u]
    is_opt = book.kind[instr] == OPTION
    cost = []
    for qty in (before, after):
        # the floored copy of a row (if any) is the one a short position uses
        row = np.where(qty < 0, rv.ord_row[o], instr)
        som = np.where(is_opt, np.maximum(-qty, 0.0), 0.0) * rate
        cost.append(span.worst(row, qty, und_row, px) + som)
    out[o] = np.maximum(cost[1] - cost[0], 0.0)
    return out


def position_values(book, g):
    """Per position (settlement currency): value at the mark, model value, unrealised P&L,
    and Greeks ``(4, n_pos)`` from the per-contract Greeks ``g``."""
    pi_ = book.pos_instr
    q = book.quantity
    kind = book.kind[pi_]
    inverse = book.settlement[pi_] == INVERSE
    cs = book.contract_size[pi_]
    mark = book.mark[pi_]
    has_entry = ~np.isnan(book.entry_price)
    entry = np.where(has_entry, book.entry_price, 1.0)
    fut_upnl = np.where(inverse, q * cs * (1.0 / entry - 1.0 / mark), q * cs * (mark - entry))
    upnl = np.where(has_entry, np.where(kind == OPTION, q * cs * (mark - entry), fut_upnl), 0.0)
    value = np.where((kind == OPTION) | (kind == SPOT), q * cs * mark, upnl)
    model_value = np.where(kind == OPTION, q * g[0, pi_], value)
    return value, model_value, upnl, q * g[1:, pi_]


def pro_rata_share(total, group, weight):
    """Split ``total[g]`` over the members of each group ``g`` by ``weight`` (members with
    group -1, or groups whose weights sum to 0, get 0)."""
    out = np.zeros(len(group))
    held = group >= 0
    gid = group[held]
    den = sum_by(gid, weights=weight[held], minlength=len(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[held] = np.where(den[gid] > 0, total[gid] * weight[held] / den[gid], 0.0)
    return out


def collateral_usd(book, model):
    """(collateral value, plain USD value) of each balance row: positive amounts at their
    asset's collateral rate or tiers, loans at full value."""
    if not len(book.bal_asset):
        return np.zeros(0), np.zeros(0)
    snap = book.acc_snap[book.bal_account]
    usd = book.bal_amount * book.prices(book.bal_asset, snap)
    coll = usd.copy()
    code, names = codes(pa.array(book.bal_asset, pa.string()))
    order = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[order], np.arange(len(names) + 1))
    for k, asset in enumerate(names.to_pylist()):          # one pass per distinct asset
        rows = order[bounds[k]:bounds[k + 1]]
        rows = rows[usd[rows] > 0]
        coll[rows] = collateral_value_usd(model, asset, usd[rows])
    return coll, usd


def expiry_groups(book, model, units, pos_unit):
    """Expiry groups for the roll shock: per unit, one group per expiry of its futures and
    options, one per perpetual; spot positions belong to none (-1)."""
    pi_ = book.pos_instr
    kind = book.kind[pi_]
    # perpetuals: a key of their own (negative, per instrument); dated: the expiry.  Keys are
    # coded per instrument instance (fewer than positions), then looked up per position.
    key_i = np.where(book.kind == PERPETUAL, -1 - np.arange(len(book.kind)), book.expiry_ns)
    dated = (kind == FUTURE) | (kind == OPTION) | (kind == PERPETUAL)
    pos_group = np.full(len(pi_), -1, dtype=np.int64)
    if not dated.any():
        return pos_group, np.zeros(0), np.zeros(0, dtype=np.int64)
    _, code_i = np.unique(key_i, return_inverse=True)
    k2 = code_i.ravel()[pi_[dated]]
    n_k = int(k2.max()) + 1
    uniq, inv = unique_keys(pos_unit[dated] * n_k + k2)
    pos_group[dated] = inv
    group_unit = (uniq // n_k).astype(np.int64)
    # years to expiry of each group: from any member position
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inv] = np.flatnonzero(dated)
    years = np.where(kind[first] == PERPETUAL, 0.0, book.years[pi_[first]])
    gtype = units.utype[group_unit]
    amr = und_param(model, units.type_und, "annualised_move_risk")[gtype]
    mn = und_param(model, units.type_und, "min_annualised_move")[gtype]
    rate = addons.roll_rate(years, amr, mn)
    return pos_group, rate, group_unit

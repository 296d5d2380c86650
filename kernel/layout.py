"""The engine's layout of a book as fused kernels: which instruments get a revaluation row at
the vol floor, each revaluation row's arguments, the positions' portfolio quantities and
short-option figures, and the roll-shock expiry groups with their rates.

Each replaces a chain of numpy passes over the positions or instruments (masks, gathers,
``where``) by one pass, and computes every figure with the same scalar arithmetic, in the same
order, as the numpy formulas it replaces (their numpy twins are in ``tests/oracles.py``):

* :func:`short_instruments` and :func:`floored_copies`: instruments held short or sold by an
  open order, and options whose vol floor binds and that are short (a second revaluation row
  at the floor);
* :func:`revaluation_rows`: both of them, and each position's and order's revaluation row (a
  short position or sell order uses its instrument's floored copy);
* :func:`row_arrays`: the per-row arguments of :func:`pmrisk.kernel.instrument_pnl` (the
  instrument's columns, its scenario vols of
  :func:`pmrisk.kernel.volshock.shocked_vols` and its time at the horizon);
  :func:`revaluation_layout`: both of the above for a whole book, in one call;
* :func:`position_layout`: each position's excluded flag, portfolio quantity (0 when
  excluded), short option quantity and short option minimum rate;
* :func:`roll_groups`: the roll-shock expiry groups (:func:`expiry_groups`, the groups of
  :func:`pmrisk.kernel.assemble.expiry_groups` by a hash of the keys) and each group's rate
  (:func:`pmrisk.kernel.addons.roll_rate`);
* :func:`book_layout_serial`: :func:`position_layout`, the engine's CSR indexes,
  :func:`roll_groups` and :func:`reserve_sums` of a book in one call; :func:`book_layout`
  the same on numba's threads (a book of many units);
* :func:`option_vols`: the mark vol of options, 0 for the other kinds.
"""

import math

import numpy as np
from numba import prange

from ._config import njit
from .assemble import csr, csr_count, csr_fill, expiry_keys_rows, position_expiry_keys
from .instruments import OPTION, PERPETUAL
from .volshock import MIN_VOL

_MEMO = 8                               # row_arrays: (dte, power) -> term pairs kept


@njit
def fmax(a, b):
    """``numpy.maximum`` of two floats (NaN wins; on a tie the second, as numpy: -0.0 and
    0.0 keep numpy's sign)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a > b else b


@njit
def fmin(a, b):
    """``numpy.minimum`` of two floats (NaN wins; on a tie the second, as numpy)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a < b else b


@njit
def short_instruments(n_instr, pos_instr, quantity, ord_instr, ord_qty):
    """Bool per instrument: held short (a negative position) or sold by an open order."""
    short = np.zeros(n_instr, dtype=np.bool_)
    for p in range(pos_instr.shape[0]):
        if quantity[p] < 0:
            short[pos_instr[p]] = True
    for o in range(ord_instr.shape[0]):
        if ord_qty[o] < 0:
            short[ord_instr[o]] = True
    return short


@njit
def floored_copies(kind, mark_iv, floor, short):
    """Instruments (int64, increasing) that get a revaluation row at the vol floor: options
    whose ``floor`` (per instrument) is above their mark vol and that are ``short``."""
    n = kind.shape[0]
    out = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        if kind[i] == OPTION and floor[i] > mark_iv[i] and short[i]:
            out[m] = i
            m += 1
    return out[:m].copy()


@njit
def _rows_of(instr, qty, row_of_copy):
    out = np.empty(instr.shape[0], dtype=np.int64)
    for j in range(instr.shape[0]):
        i = instr[j]
        fl = row_of_copy[i]
        out[j] = fl if (qty[j] < 0 and fl >= 0) else i
    return out


@njit
def revaluation_rows(kind, mark_iv, floor, pos_instr, quantity, ord_instr, ord_qty):
    """The revaluation rows of a book: returns ``(row_instr, copies, pos_row, ord_row)``.

    Rows ``0 .. n-1`` are the instruments; rows ``n + k`` the floored copies ``copies[k]``
    (:func:`floored_copies` of the :func:`short_instruments`).  A position or order of
    negative quantity on an instrument with a copy uses the copy's row, everything else
    its instrument's row."""
    n = kind.shape[0]
    short = short_instruments(n, pos_instr, quantity, ord_instr, ord_qty)
    copies = floored_copies(kind, mark_iv, floor, short)
    m = copies.shape[0]
    row_instr = np.empty(n + m, dtype=np.int64)
    row_of_copy = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        row_instr[i] = i
    for k in range(m):
        row_instr[n + k] = copies[k]
        row_of_copy[copies[k]] = n + k
    return (row_instr, copies, _rows_of(pos_instr, quantity, row_of_copy),
            _rows_of(ord_instr, ord_qty, row_of_copy))


@njit
def row_arrays(rows, row_instr, n_instr, itype, kind, settlement, contract_size, mark,
               forward, strike, is_call, years, mark_iv, vol_floor, r_up, r_down, p_short,
               p_long, min_up, absolute, scan_range, horizon_days, und_row):
    """The per-row arguments of :func:`pmrisk.kernel.instrument_pnl` for the revaluation
    rows ``rows`` (a row at or past ``n_instr`` is a floored copy of ``row_instr[row]``): the
    instrument's columns, ``t_scen`` (years to expiry at the horizon, never negative), the
    option's mark vol (0 for other kinds) and its scenario vols (vol-same, up, down) by
    :func:`pmrisk.kernel.volshock.shocked_vols` with the floor on copies only; parameters
    per unit type (``itype`` per instrument).  Returns ``(kind, settlement, contract_size,
    mark, forward, strike, is_call, t_now, t_scen, sig_mark, sig_up, sig_same, sig_down,
    und)``."""
    n = rows.shape[0]
    o_kind = np.empty(n, dtype=np.int64)
    o_settle = np.empty(n, dtype=np.int64)
    o_cs = np.empty(n)
    o_mark = np.empty(n)
    o_fwd = np.empty(n)
    o_strike = np.empty(n)
    o_call = np.empty(n, dtype=np.int64)
    o_years = np.empty(n)
    o_tscen = np.empty(n)
    o_sig = np.empty(n)
    o_up = np.empty(n)
    o_same = np.empty(n)
    o_down = np.empty(n)
    o_und = np.empty(n, dtype=np.int64)
    # (30 / dte) ** power is the same for every row of one expiry and power: the last few
    # are kept (a book has few expiries; pow is most of a row's cost)
    memo_dte = np.full(_MEMO, np.nan)
    memo_pow = np.full(_MEMO, np.nan)
    memo_term = np.empty(_MEMO)
    slot = 0
    for j in range(n):
        r = row_instr[rows[j]]
        t = itype[r]
        k = kind[r]
        o_kind[j] = k
        o_settle[j] = settlement[r]
        o_cs[j] = contract_size[r]
        o_mark[j] = mark[r]
        o_fwd[j] = forward[r]
        o_strike[j] = strike[r]
        o_call[j] = is_call[r]
        y = years[r]
        o_years[j] = y
        sig = mark_iv[r] if k == OPTION else 0.0
        o_sig[j] = sig
        floor = vol_floor[t] if rows[j] >= n_instr else 0.0
        # shocked_vols, element by element
        same = fmax(sig, floor)
        dte = fmax(y * 365.0, 1.0)
        power = p_short[t] if dte < 30.0 else p_long[t]
        term = np.nan
        hit = False
        for m in range(_MEMO):
            if memo_dte[m] == dte and memo_pow[m] == power:
                term = memo_term[m]
                hit = True
                break
        if not hit:
            term = (30.0 / dte) ** power
            memo_dte[slot] = dte
            memo_pow[slot] = power
            memo_term[slot] = term
            slot = (slot + 1) % _MEMO
        if absolute[t]:
            up = same + scan_range[t]
            down = fmax(same - scan_range[t], MIN_VOL)
        else:
            up = fmax(same * (1.0 + r_up[t] * term), min_up[t])
            down = fmax(same * (1.0 - r_down[t] * term), MIN_VOL)
        o_same[j] = same
        o_up[j] = up
        o_down[j] = down
        o_tscen[j] = fmax(y - horizon_days[t] / 365.0, 0.0)
        o_und[j] = und_row[t]
    return (o_kind, o_settle, o_cs, o_mark, o_fwd, o_strike, o_call, o_years, o_tscen, o_sig,
            o_up, o_same, o_down, o_und)


@njit
def revaluation_layout(kind, mark_iv, pos_instr, quantity, ord_instr, ord_qty, itype,
                       settlement, contract_size, mark, forward, strike, is_call, years,
                       vol_floor, r_up, r_down, p_short, p_long, min_up, absolute,
                       scan_range, horizon_days, und_row):
    """:func:`revaluation_rows` (the floor of each instrument ``vol_floor`` of its unit
    type, ``itype``) and :func:`row_arrays` of every row it makes, in one call (a whole
    book's revaluation inputs): returns ``(row_instr, copies, pos_row, ord_row, columns)``,
    ``columns`` the tuple :func:`row_arrays` returns."""
    n = kind.shape[0]
    floor = np.empty(n)
    for i in range(n):
        floor[i] = vol_floor[itype[i]]
    row_instr, copies, pos_row, ord_row = revaluation_rows(
        kind, mark_iv, floor, pos_instr, quantity, ord_instr, ord_qty)
    rows = np.arange(row_instr.shape[0])
    return row_instr, copies, pos_row, ord_row, row_arrays(
        rows, row_instr, n, itype, kind, settlement, contract_size, mark, forward, strike,
        is_call, years, mark_iv, vol_floor, r_up, r_down, p_short, p_long, min_up, absolute,
        scan_range, horizon_days, und_row)


@njit
def position_layout(pos_instr, quantity, kind, excluded_instr, itype, som_type, ord_instr):
    """Per position: ``(excluded bool, q_port, short_opt, short_all, som_rate)`` and whether
    any position or order is on an excluded instrument.  ``short_all`` is the short option
    quantity (``-quantity`` of a short option, else 0); ``q_port`` and ``short_opt`` are the
    quantity and short option quantity left in the portfolio (0 when excluded); ``som_rate``
    the short option minimum rate of the position's unit type (``som_type`` per type)."""
    n = pos_instr.shape[0]
    excl = np.empty(n, dtype=np.bool_)
    q_port = np.empty(n)
    short_opt = np.empty(n)
    short_all = np.empty(n)
    som_rate = np.empty(n)
    any_excl = _position_rows(0, n, pos_instr, quantity, kind, excluded_instr, itype, som_type,
                              excl, q_port, short_opt, short_all, som_rate)
    return excl, q_port, short_opt, short_all, som_rate, _orders_excluded(
        any_excl, ord_instr, excluded_instr)


@njit(inline="always")
def _position_rows(lo, hi, pos_instr, quantity, kind, excluded_instr, itype, som_type, excl,
                   q_port, short_opt, short_all, som_rate):
    """:func:`position_layout`'s figures of the positions ``lo .. hi - 1``, written into its
    arrays; True when one of them is on an excluded instrument."""
    any_excl = False
    for p in range(lo, hi):
        i = pos_instr[p]
        q = quantity[p]
        e = excluded_instr[i]
        excl[p] = e
        if e:
            any_excl = True
        s = -q if (kind[i] == OPTION and q < 0) else 0.0
        short_all[p] = s
        q_port[p] = 0.0 if e else q
        short_opt[p] = 0.0 if e else s
        som_rate[p] = som_type[itype[i]]
    return any_excl


@njit(inline="always")
def _orders_excluded(any_excl, ord_instr, excluded_instr):
    """``any_excl``, or an order on an excluded instrument."""
    for o in range(ord_instr.shape[0]):
        if excluded_instr[ord_instr[o]]:
            any_excl = True
    return any_excl


@njit
def expiry_groups(pu_start, pu_order, pos_key, dated):
    """:func:`pmrisk.kernel.assemble.expiry_groups` (the same groups, numbers and first
    members) with a unit of many dated positions grouped through a hash table of its keys:
    only its distinct keys are sorted (a book of 2,000 positions has a few hundred), not one
    key per position.  Returns ``(pos_group, group_unit, group_first)``."""
    n_pos = pos_key.shape[0]
    n_units = pu_start.shape[0] - 1
    pos_group = np.full(n_pos, -1, dtype=np.int64)
    group_unit = np.empty(n_pos, dtype=np.int64)
    group_first = np.empty(n_pos, dtype=np.int64)
    run = np.empty(n_pos, dtype=np.int64)             # dated positions of one unit
    n_groups = _unit_groups(0, n_units, pu_start, pu_order, pos_key, dated, pos_group,
                            group_unit, group_first, run, 0)
    return pos_group, group_unit[:n_groups].copy(), group_first[:n_groups].copy()


@njit(inline="always")
def _unit_groups(lo, hi, pu_start, pu_order, pos_key, dated, pos_group, group_unit,
                 group_first, run, base):
    """:func:`expiry_groups` of the units ``lo .. hi - 1``: their groups numbered from
    ``base`` (``pos_group`` of their dated positions, ``group_unit``, ``group_first`` at
    those numbers), ``run`` scratch of as many rows as the largest unit's positions.
    Returns the number of groups."""
    n_groups = base
    for u in range(lo, hi):
        m = 0
        for j in range(pu_start[u], pu_start[u + 1]):
            p = pu_order[j]
            if dated[p]:
                run[m] = p
                m += 1
        if m == 0:
            continue
        if m > 32:
            n_groups += _hashed_groups(run, m, pos_key, pos_group, n_groups, group_unit,
                                       group_first, u)
            continue
        for i in range(1, m):                          # insertion sort by key, stable
            p = run[i]
            k = pos_key[p]
            t = i - 1
            while t >= 0 and pos_key[run[t]] > k:
                run[t + 1] = run[t]
                t -= 1
            run[t + 1] = p
        prev = 0
        for i in range(m):
            p = run[i]
            if i == 0 or pos_key[p] != prev:
                group_unit[n_groups] = u
                group_first[n_groups] = p
                n_groups += 1
                prev = pos_key[p]
            pos_group[p] = n_groups - 1
    return n_groups - base


@njit
def _hashed_groups(run, m, pos_key, pos_group, base, group_unit, group_first, u):
    """Group the ``m`` positions ``run[:m]`` of unit ``u`` by key: each distinct key once in
    a hash table (linear probing), the distinct keys ranked by a sort, each position's group
    ``base + rank of its key``, each group's first position in ``run`` order.  Returns the
    number of groups."""
    bits = 4
    while (1 << bits) < 2 * m:
        bits += 1
    mask = (1 << bits) - 1
    slots = np.full(1 << bits, -1, dtype=np.int64)
    distinct = np.empty(m, dtype=np.int64)
    of = np.empty(m, dtype=np.int64)                   # each position's distinct key
    k = 0
    last = -1
    for i in range(m):
        key = pos_key[run[i]]
        if last >= 0 and distinct[last] == key:       # a run of one expiry
            of[i] = last
            continue
        s = np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15))
                     >> np.uint64(64 - bits))
        while True:
            d = slots[s]
            if d < 0:
                slots[s] = k
                distinct[k] = key
                last = k
                k += 1
                break
            if distinct[d] == key:
                last = d
                break
            s = (s + 1) & mask
        of[i] = last
    order = np.argsort(distinct[:k])
    rank = np.empty(k, dtype=np.int64)
    for r in range(k):
        rank[order[r]] = r
        group_unit[base + r] = u
        group_first[base + r] = -1
    for i in range(m):
        p = run[i]
        g = base + rank[of[i]]
        pos_group[p] = g
        if group_first[g] < 0:
            group_first[g] = p
    return k


@njit
def roll_groups(pu_start, pu_order, pos_instr, kind, expiry_ns, years, unit_type,
                annualised_move_risk, min_annualised_move):
    """Roll-shock expiry groups of the positions (:func:`expiry_groups`
    on :func:`pmrisk.kernel.assemble.position_expiry_keys`) and each group's rate,
    ``max(min_annualised_move, expm1(annualised_move_risk * max(T, 0)))`` of its unit's type
    (T = 0 for a perpetual).  Returns ``(pos_group, group_rate, group_unit)``."""
    key, dated = position_expiry_keys(pos_instr, kind, expiry_ns)
    pos_group, group_unit, first = expiry_groups(pu_start, pu_order, key, dated)
    rate = np.empty(group_unit.shape[0])
    _group_rates(0, rate.shape[0], first, group_unit, pos_instr, kind, years, unit_type,
                 annualised_move_risk, min_annualised_move, rate,
                 np.empty(kind.shape[0]), np.full(kind.shape[0], -1, dtype=np.int64))
    return pos_group, rate, group_unit


@njit(inline="always")
def _group_rates(lo, hi, first, group_unit, pos_instr, kind, years, unit_type,
                 annualised_move_risk, min_annualised_move, rate, memo_rate, memo_type):
    """:func:`roll_groups`' rate of the groups ``lo .. hi - 1`` into ``rate``: computed once
    per (instrument, unit type), not per group (the accounts of a snapshot that hold one
    expiry share its first instrument's row: a backtest has ~4 groups per row), the last
    one kept per instrument in ``memo_rate`` and ``memo_type`` (-1: none yet)."""
    for g in range(lo, hi):
        i = pos_instr[first[g]]
        t = unit_type[group_unit[g]]
        if memo_type[i] == t:
            rate[g] = memo_rate[i]
            continue
        y = 0.0 if kind[i] == PERPETUAL else years[i]
        r = fmax(min_annualised_move[t], math.expm1(annualised_move_risk[t] * fmax(y, 0.0)))
        memo_rate[i] = r
        memo_type[i] = t
        rate[g] = r


@njit(parallel=True)
def book_layout(pos_instr, quantity, kind, excluded_instr, itype, som_type, ord_instr,
                pos_unit, ord_unit, n_units, pos_account, bal_account, unit_account, n_acc,
                expiry_ns, years, unit_type, annualised_move_risk, min_annualised_move,
                res_unit, res_oo, res_mmp, excl, f8, i8):
    """:func:`book_layout_serial` on numba's threads, into arrays the caller hands in: the
    same arrays, to the bit, whatever the number of threads (a backtest's 1M positions:
    ~46 ms on one thread, a third of it the system clearing ~40 MB of fresh pages).

    ``excl`` (bool, n_pos), ``f8`` (float64, (:data:`LAYOUT_F8`, n_pos)) and ``i8``
    (int64, (:data:`LAYOUT_I8`, n_pos)) hold every array of n_pos rows or fewer; the
    results are views of their rows (``i8`` rows 0-4 the expiry keys and scratch, then
    ``pos_group``, ``pu_order``, ``pa_order``, the groups' units and first positions;
    ``f8`` rows ``q_port``, ``short_opt``, ``short_all``, ``som_rate``, the groups'
    rates).

    The positions' figures and keys in :data:`LAYOUT_CHUNKS` runs of rows; the two long
    CSR indexes (positions by unit, by account) one per thread; the expiry groups in runs
    of units, each run numbering its groups from its first position's place in
    ``pu_order`` (a run has no more groups than positions), then moved down to their final
    numbers; the rates in :data:`RATE_CHUNKS` runs of groups, each with its own memo."""
    n_pos = pos_instr.shape[0]
    n_instr = kind.shape[0]
    q_port, short_opt, short_all, som_rate, rate_at = f8[0], f8[1], f8[2], f8[3], f8[4]
    key, dated, run, gu_at, gf_at = i8[0], i8[1], i8[2], i8[3], i8[4]
    pos_group = i8[5]
    chunks = LAYOUT_CHUNKS
    hit = np.zeros(chunks, dtype=np.bool_)
    for c in prange(chunks):
        lo = c * n_pos // chunks
        hi = (c + 1) * n_pos // chunks
        hit[c] = _position_rows(lo, hi, pos_instr, quantity, kind, excluded_instr, itype,
                                som_type, excl, q_port, short_opt, short_all, som_rate)
        expiry_keys_rows(lo, hi, pos_instr, kind, expiry_ns, key, dated)
        for p in range(lo, hi):
            pos_group[p] = -1
    any_excl = _orders_excluded(hit.any(), ord_instr, excluded_instr)
    pu_start = np.zeros(n_units + 1, dtype=np.int64)
    pa_start = np.zeros(n_acc + 1, dtype=np.int64)
    for t in prange(2):
        if t == 0:
            csr_count(pos_unit, pu_start)
        else:
            csr_count(pos_account, pa_start)
    pu_order = i8[6, :pu_start[n_units]]
    pa_order = i8[7, :pa_start[n_acc]]
    for t in prange(2):
        if t == 0:
            csr_fill(pos_unit, pu_start, pu_order)
        else:
            csr_fill(pos_account, pa_start, pa_order)
    ou_start, ou_order = csr(ord_unit, n_units)
    ba_start, ba_order = csr(bal_account, n_acc)
    ua_start, _ = csr(unit_account, n_acc)
    # the expiry groups: run c of units numbers its groups from pu_start[its first unit]
    count = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        lo = c * n_units // chunks
        hi = (c + 1) * n_units // chunks
        a, b = pu_start[lo], pu_start[hi]
        count[c] = _unit_groups(lo, hi, pu_start, pu_order, key, dated, pos_group, gu_at,
                                gf_at, run[a:b], a)
    at = np.zeros(chunks + 1, dtype=np.int64)
    for c in range(chunks):
        at[c + 1] = at[c] + count[c]
    n_groups = at[chunks]
    group_unit = i8[8, :n_groups]
    first = i8[9, :n_groups]
    for c in prange(chunks):
        lo = c * n_units // chunks
        hi = (c + 1) * n_units // chunks
        a, b = pu_start[lo], pu_start[hi]
        shift = a - at[c]
        for j in range(count[c]):
            group_unit[at[c] + j] = gu_at[a + j]
            first[at[c] + j] = gf_at[a + j]
        if shift != 0:
            for j in range(a, b):
                p = pu_order[j]
                if pos_group[p] >= 0:
                    pos_group[p] -= shift
    rate = rate_at[:n_groups]
    for c in prange(RATE_CHUNKS):
        _group_rates(c * n_groups // RATE_CHUNKS, (c + 1) * n_groups // RATE_CHUNKS, first,
                     group_unit, pos_instr, kind, years, unit_type, annualised_move_risk,
                     min_annualised_move, rate, np.empty(n_instr),
                     np.full(n_instr, -1, dtype=np.int64))
    return (excl, q_port, short_opt, short_all, som_rate, any_excl), (
        pu_start, pu_order, ou_start, ou_order, pa_start, pa_order, ba_start, ba_order,
        ua_start), (pos_group, rate), reserve_sums(res_unit, res_oo, res_mmp, n_units)


# book_layout: runs of positions and of units (more runs than threads: a run of units
# with many dated positions takes longer), and of groups for the rates (each run's memo is
# two arrays of the instruments' length)
LAYOUT_CHUNKS = 16
RATE_CHUNKS = 4
LAYOUT_F8 = 5           # book_layout's float64 rows and int64 rows
LAYOUT_I8 = 10


@njit
def book_layout_serial(pos_instr, quantity, kind, excluded_instr, itype, som_type, ord_instr,
                       pos_unit, ord_unit, n_units, pos_account, bal_account, unit_account,
                       n_acc, expiry_ns, years, unit_type, annualised_move_risk,
                       min_annualised_move, res_unit, res_oo, res_mmp):
    """What the engine lays out once per book, in one call: :func:`position_layout`; the
    CSR indexes (:func:`pmrisk.kernel.assemble.csr`) of positions and orders by unit
    (``pos_unit``, ``ord_unit``), of positions and balances by account (``pos_account``,
    ``bal_account``) and of units by account (``unit_account``; its start only); the roll
    groups of :func:`roll_groups`; the reserves' sums of :func:`reserve_sums`.  Returns
    ``(position_layout's six, (pu_start, pu_order, ou_start, ou_order, pa_start, pa_order,
    ba_start, ba_order, ua_start), (pos_group, group_rate), (res_oo, mmp))``."""
    pl = position_layout(pos_instr, quantity, kind, excluded_instr, itype, som_type, ord_instr)
    pu_start, pu_order = csr(pos_unit, n_units)
    ou_start, ou_order = csr(ord_unit, n_units)
    pa_start, pa_order = csr(pos_account, n_acc)
    ba_start, ba_order = csr(bal_account, n_acc)
    ua_start, _ = csr(unit_account, n_acc)
    pos_group, group_rate, _ = roll_groups(pu_start, pu_order, pos_instr, kind, expiry_ns,
                                           years, unit_type, annualised_move_risk,
                                           min_annualised_move)
    return pl, (pu_start, pu_order, ou_start, ou_order, pa_start, pa_order, ba_start,
                ba_order, ua_start), (pos_group, group_rate), reserve_sums(res_unit, res_oo,
                                                                           res_mmp, n_units)


@njit
def balance_groups(ba_start, ba_order, code, n_codes):
    """The (account, asset) groups of the balance rows (rows of account ``a``:
    ``ba_order[ba_start[a]:ba_start[a + 1]]``; ``code``: per row its asset's code in
    ``[0, n_codes)``): ``(group, g_start, g_order)``, per row its group (numbered by account,
    then by the asset's first row in the account) and the CSR of each group's rows in
    increasing row order.  O(rows + codes).

    >>> import numpy as np
    >>> from pmrisk.kernel.layout import balance_groups
    >>> g, s, o = balance_groups(np.array([0, 3, 4]), np.array([0, 1, 3, 2]),
    ...                          np.array([1, 0, 1, 1]), 2)
    >>> g.tolist(), s.tolist(), o.tolist()
    ([0, 1, 2, 0], [0, 2, 3, 4], [0, 3, 1, 2])
    """
    n = code.shape[0]
    group = np.empty(n, dtype=np.int64)
    slot = np.full(n_codes, -1, dtype=np.int64)
    n_g = 0
    for a in range(ba_start.shape[0] - 1):
        for j in range(ba_start[a], ba_start[a + 1]):
            b = ba_order[j]
            c = code[b]
            if slot[c] < 0:
                slot[c] = n_g
                n_g += 1
            group[b] = slot[c]
        for j in range(ba_start[a], ba_start[a + 1]):
            slot[code[ba_order[j]]] = -1
    # csr's body (csr_count, csr_fill inline): a call of csr would compile it for these
    # arrays too, a second signature beside the engine's
    g_start = np.zeros(n_g + 1, dtype=np.int64)
    csr_count(group, g_start)
    g_order = np.empty(g_start[n_g], dtype=np.int64)
    csr_fill(group, g_start, g_order)
    return group, g_start, g_order


@njit
def option_vols(kind, mark_iv):
    """The mark vol of each option, 0 for the other kinds (float64)."""
    out = np.empty(kind.shape[0])
    for i in range(kind.shape[0]):
        out[i] = mark_iv[i] if kind[i] == OPTION else 0.0
    return out


@njit
def unit_prices(col, stable, utype, snap, asset_px):
    """USD price per unit of its type's asset at its snapshot: ``asset_px[snap, col]`` of
    the type's column (``col`` per type, -1: none), NaN without one, 1 for a stablecoin
    (``stable`` per type) whose price is NaN."""
    n = utype.shape[0]
    out = np.empty(n)
    n_col = asset_px.shape[1]
    for u in range(n):
        t = utype[u]
        c = col[t]
        px = asset_px[snap[u], c] if (c >= 0 and n_col) else np.nan
        out[u] = 1.0 if (px != px and stable[t]) else px
    return out


@njit
def reserve_sums(res_unit, res_oo, res_mmp, n_units):
    """Per unit the sums of its reserves' open orders margin and MMP margin, in row order."""
    oo = np.zeros(n_units)
    mmp = np.zeros(n_units)
    for r in range(res_unit.shape[0]):
        oo[res_unit[r]] += res_oo[r]
        mmp[res_unit[r]] += res_mmp[r]
    return oo, mmp

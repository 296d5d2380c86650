"""The result tables' columns, each table's numbers in one pass into one block.

:mod:`pmrisk.results` cuts a block's rows into Arrow columns (one Arrow array, sliced): a
table costs one allocation and one conversion instead of one numpy expression and one Arrow
array per column.  The arithmetic is the numpy formulas' own, in the same order (twins in
``tests/oracles.py``):

* :func:`unit_block`: the units table's prices, binding cell and figures with their USD
  values, and the binding cell's table and vol state codes;
* :func:`position_index` and :func:`position_columns`: the positions table's rows
  (positions, then one ``unallocated`` row per unit, then one per account with loans; in a
  timed book stably by snapshot), each row's account, symbol, unit and time, and its
  quantities, values, Greeks and MM/IM contributions in the settlement currency and in USD;
* :func:`account_block` and :func:`account_cells`: the accounts table's figures, margin
  ratio (:func:`ratio_of`), available margin, most withdrawable amount and status code,
  and the binding cell of each account's largest unit;
* :func:`take_strings`, and for large columns :func:`string_offsets` and
  :func:`gather_strings`: string columns gathered from a string array's buffers.

The blocks are the caller's (``out``): :mod:`pmrisk.results` takes large ones from
:data:`pmrisk.blocks.BLOCKS`, whose blocks the next table reuses once a caller lets its
tables go.  The kernels of large tables have a parallel form (rows cut into :data:`CHUNKS`
runs spread over the threads) and a ``_serial`` twin; both call the same ``*_rows``
function, and every value is computed from its own inputs, so the tables do not depend on
the form or the thread count."""

import numpy as np
from numba import prange

from ._config import njit
from .layout import fmax, fmin

# the units table's figures, each then its USD value (UNIT_COLUMNS), in its order
UNIT_FIGURES = ("worst_case", "roll_shock", "delta_shock", "short_option_minimum",
                "scenario_margin", "excluded_margin", "risk_matrix_margin",
                "open_orders_margin", "mmp_margin", "maintenance_margin", "initial_margin")
UNIT_GREEKS = ("delta", "gamma", "vega", "theta")
UNIT_COLUMNS = tuple(c for f in UNIT_FIGURES for c in (f, f + "_usd")) + tuple(
    c for f in UNIT_GREEKS for c in (f, f + "_usd"))
CHUNKS = 64  # a parallel kernel's rows are cut in this many runs, one per task
# rows of position_columns' block, in the positions table's order
POSITION_COLUMNS = ("quantity", "value", "value_usd", "model_value", "model_value_usd",
                    "unrealised_pnl", "unrealised_pnl_usd", "delta", "gamma", "vega", "theta",
                    "mm_contribution", "mm_contribution_usd", "im_contribution",
                    "im_contribution_usd")


@njit
def unit_sums(pos_unit, mm_contribution, im_contribution, n_units):
    """Per unit, its positions' MM and IM contributions summed in position order."""
    mm_sum = np.zeros(n_units)
    im_sum = np.zeros(n_units)
    for p in range(pos_unit.shape[0]):
        u = pos_unit[p]
        mm_sum[u] += mm_contribution[p]
        im_sum[u] += im_contribution[p]
    return mm_sum, im_sum


@njit
def position_columns_rows(lo, hi, rows, pos_unit, quantity, unit_px, value, model_value, upnl,
                          delta, gamma, vega, theta, mm_contribution, im_contribution, unit_mm,
                          unit_im, loan_mm, loan_im, mm_sum, im_sum, out):
    """Columns ``lo:hi`` of :func:`position_columns`' block (``mm_sum``, ``im_sum``:
    :func:`unit_sums`)."""
    n_pos = pos_unit.shape[0]
    n_units = unit_px.shape[0]
    for k in range(lo, hi):
        r = rows[k]
        if r < n_pos:
            px = unit_px[pos_unit[r]]
            out[0, k] = quantity[r]
            out[1, k] = value[r]
            out[2, k] = value[r] * px
            out[3, k] = model_value[r]
            out[4, k] = model_value[r] * px
            out[5, k] = upnl[r]
            out[6, k] = upnl[r] * px
            out[7, k] = delta[r]
            out[8, k] = gamma[r]
            out[9, k] = vega[r]
            out[10, k] = theta[r]
            out[11, k] = mm_contribution[r]
            out[12, k] = mm_contribution[r] * px
            out[13, k] = im_contribution[r]
            out[14, k] = im_contribution[r] * px
            continue
        for f in range(11):
            out[f, k] = 0.0
        if r < n_pos + n_units:
            u = r - n_pos
            mm = unit_mm[u] - mm_sum[u]
            im = unit_im[u] - im_sum[u]
            out[11, k] = mm
            out[12, k] = mm * unit_px[u]
            out[13, k] = im
            out[14, k] = im * unit_px[u]
        else:
            j = r - n_pos - n_units
            out[11, k] = loan_mm[j]
            out[12, k] = loan_mm[j]
            out[13, k] = loan_im[j]
            out[14, k] = loan_im[j]


@njit(parallel=True)
def position_columns(rows, pos_unit, quantity, unit_px, value, model_value, upnl, delta, gamma,
                     vega, theta, mm_contribution, im_contribution, unit_mm, unit_im, loan_mm,
                     loan_im, out):
    """The positions table's numeric block, written into ``out`` (float64, (15, len(rows)),
    rows :data:`POSITION_COLUMNS`): its column k is the table row ``rows[k]`` of the
    positions, then one ``unallocated`` row per unit (quantity, values and Greeks 0; its
    MM/IM less its positions' contributions, summed in position order), then one row per
    account with loans (``loan_mm`` and ``loan_im``: its loans' MM and IM, USD).  ``rows``:
    :func:`position_index`'s order.  The columns cut into :data:`CHUNKS` runs over the
    threads (each value computed as on one thread); :func:`position_columns_serial` is its
    one-thread twin for small tables.

    ``out`` comes from the caller: numpy asks the OS for huge pages on a large allocation
    and numba's allocator does not; writing 1.2M rows took 62 ms into numba's memory and
    28 into numpy's."""
    mm_sum, im_sum = unit_sums(pos_unit, mm_contribution, im_contribution, unit_px.shape[0])
    n = rows.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        position_columns_rows(c * n // chunks, (c + 1) * n // chunks, rows, pos_unit, quantity,
                              unit_px, value, model_value, upnl, delta, gamma, vega, theta,
                              mm_contribution, im_contribution, unit_mm, unit_im, loan_mm,
                              loan_im, mm_sum, im_sum, out)


@njit
def position_columns_serial(rows, pos_unit, quantity, unit_px, value, model_value, upnl, delta,
                            gamma, vega, theta, mm_contribution, im_contribution, unit_mm,
                            unit_im, loan_mm, loan_im, out):
    """:func:`position_columns` on one thread (small tables: no thread wake-up)."""
    mm_sum, im_sum = unit_sums(pos_unit, mm_contribution, im_contribution, unit_px.shape[0])
    position_columns_rows(0, rows.shape[0], rows, pos_unit, quantity, unit_px, value,
                          model_value, upnl, delta, gamma, vega, theta, mm_contribution,
                          im_contribution, unit_mm, unit_im, loan_mm, loan_im, mm_sum, im_sum,
                          out)


@njit(inline="always")
def ratio_of(equity, den):
    """The margin ratio as the accounts table shows it: ``equity / den`` (``den``: MM plus
    the liquidation cost), ``inf`` (``-inf`` for negative equity) when ``den`` is not above
    0 (NaN included).  The one definition: :func:`margin_ratios`, :func:`account_block`
    and the Monitor's alert step (:func:`pmrisk.kernel.alerts.account_alerts`) call it.

    >>> from pmrisk.kernel.tables import ratio_of
    >>> ratio_of(2.0, 1.0), ratio_of(1.0, 0.0), ratio_of(-1.0, 0.0)
    (2.0, inf, -inf)
    """
    if den > 0.0:
        return equity / den
    return np.inf if equity >= 0.0 else -np.inf


@njit
def margin_ratios(equity, den):
    """:func:`ratio_of` per element of ``equity`` and ``den`` (float64, same length).

    >>> import numpy as np
    >>> from pmrisk.kernel.tables import margin_ratios
    >>> margin_ratios(np.array([2.0, 1.0, -1.0]), np.array([1.0, 0.0, np.nan])).tolist()
    [2.0, inf, -inf]
    """
    n = equity.shape[0]
    out = np.empty(n)
    for k in range(n):
        out[k] = ratio_of(equity[k], den[k])
    return out


@njit
def position_order(pos_account, unit_account, loans, acc_snap, n_snap, rows):
    """The order of :func:`position_index`'s rows, written into ``rows``: the positions
    0..n_pos-1, then units, then loans, stably ordered by snapshot (``acc_snap``: the
    snapshot of each account, ``n_snap`` snapshots; a counting sort), or in that order when
    ``acc_snap`` is empty."""
    n_pos = pos_account.shape[0]
    n_units = unit_account.shape[0]
    n_loan = loans.shape[0]
    if acc_snap.shape[0] == 0:
        for r in range(n_pos + n_units + n_loan):
            rows[r] = r
        return
    # (one loop per part: a helper per row ran 6x slower)
    start = np.zeros(n_snap + 1, dtype=np.int64)
    for p in range(n_pos):
        start[acc_snap[pos_account[p]] + 1] += 1
    for u in range(n_units):
        start[acc_snap[unit_account[u]] + 1] += 1
    for a in range(n_loan):
        start[acc_snap[loans[a]] + 1] += 1
    for s in range(n_snap):
        start[s + 1] += start[s]
    for p in range(n_pos):
        s = acc_snap[pos_account[p]]
        rows[start[s]] = p
        start[s] += 1
    for u in range(n_units):
        s = acc_snap[unit_account[u]]
        rows[start[s]] = n_pos + u
        start[s] += 1
    for a in range(n_loan):
        s = acc_snap[loans[a]]
        rows[start[s]] = n_pos + n_units + a
        start[s] += 1


@njit
def position_index_rows(lo, hi, pos_account, pos_instr, pos_unit, unit_account, unit_type, loans,
                        acc_snap, snap_ns, n_symbols, n_types, out, time):
    """Places ``lo:hi`` of :func:`position_index` (``out[0]``: the rows, already in
    order); returns whether each of them has the account and the unit type of place 0
    (written before)."""
    n_pos = pos_account.shape[0]
    n_units = unit_account.shape[0]
    timed = acc_snap.shape[0] > 0
    rows = out[0]
    account = out[1]
    symbol = out[2]
    name = out[3]
    one_account = True
    one_name = True
    for k in range(lo, hi):
        r = rows[k]
        if r < n_pos:
            a = pos_account[r]
            symbol[k] = pos_instr[r]
            name[k] = unit_type[pos_unit[r]]
        else:
            symbol[k] = n_symbols
            if r < n_pos + n_units:
                a = unit_account[r - n_pos]
                name[k] = unit_type[r - n_pos]
            else:
                a = loans[r - n_pos - n_units]
                name[k] = n_types
        account[k] = a
        if timed:
            time[k] = snap_ns[acc_snap[a]]
        one_account = one_account and a == account[0]
        one_name = one_name and name[k] == name[0]
    return one_account, one_name


@njit(parallel=True)
def position_index(pos_account, pos_instr, pos_unit, unit_account, unit_type, loans, acc_snap,
                   snap_ns, n_symbols, n_types, out, time):
    """The positions table's rows (the positions, one ``unallocated`` row per unit, one
    ``loans`` row per account of ``loans``), written into ``out`` (int64, (4, n_rows):
    ``rows``, ``account``, ``symbol``, ``name``) and ``time`` (int64, n_rows when timed,
    else empty); numpy's memory, as :func:`position_columns`.

    ``rows``: the row (positions 0..n_pos-1, then units, then loans) at each place of the
    table: in that order, or when ``acc_snap`` (the snapshot of each account) is not empty,
    stably ordered by snapshot (:func:`position_order`).  Per place: the account; the symbol
    (``n_symbols``: ``unallocated``); the unit type (``n_types``: ``loans``); the time
    (``snap_ns`` of the account's snapshot; empty when untimed).  Returns whether every
    row has the same account, and the same unit type (a column of one string, repeated).
    The places after the order cut into :data:`CHUNKS` runs over the threads;
    :func:`position_index_serial` is the one-thread twin."""
    position_order(pos_account, unit_account, loans, acc_snap, snap_ns.shape[0], out[0])
    n = out.shape[1]
    if n == 0:
        return True, True
    position_index_rows(0, 1, pos_account, pos_instr, pos_unit, unit_account, unit_type, loans,
                        acc_snap, snap_ns, n_symbols, n_types, out, time)
    chunks = min(n, CHUNKS)
    one = np.ones((chunks, 2), dtype=np.bool_)
    for c in prange(chunks):
        one[c, 0], one[c, 1] = position_index_rows(
            max(c * n // chunks, 1), (c + 1) * n // chunks, pos_account, pos_instr, pos_unit,
            unit_account, unit_type, loans, acc_snap, snap_ns, n_symbols, n_types, out, time)
    one_account = True
    one_name = True
    for c in range(chunks):
        one_account = one_account and one[c, 0]
        one_name = one_name and one[c, 1]
    return one_account, one_name


@njit
def position_index_serial(pos_account, pos_instr, pos_unit, unit_account, unit_type, loans,
                          acc_snap, snap_ns, n_symbols, n_types, out, time):
    """:func:`position_index` on one thread (small tables: no thread wake-up)."""
    position_order(pos_account, unit_account, loans, acc_snap, snap_ns.shape[0], out[0])
    return position_index_rows(0, out.shape[1], pos_account, pos_instr, pos_unit, unit_account,
                               unit_type, loans, acc_snap, snap_ns, n_symbols, n_types, out,
                               time)


# rows of unit_block's block: the prices and the binding cell's shocks, then UNIT_COLUMNS
UNIT_BLOCK = ("index_price", "settlement_price_usd", "binding_price_shock",
              "scenario_price_shock") + UNIT_COLUMNS


@njit
def unit_block_rows(lo, hi, utype, type_und, binding, price_shock, table, vol_code, index_px,
                    unit_px, scenario_shock, worst_case, roll_shock, delta_shock,
                    short_option_minimum, scenario_margin, excluded_margin, risk_matrix_margin,
                    open_orders_margin, mmp_margin, maintenance_margin, initial_margin, delta,
                    gamma, vega, theta, unit_account, acc_snap, snap_ns, out, codes, time):
    """Units ``lo:hi`` of :func:`unit_block`; returns their number of NaN scenario price
    shocks."""
    n_nan = 0
    for u in range(lo, hi):
        r = type_und[utype[u]]
        b = binding[u]
        px = unit_px[u]
        ipx = index_px[u]
        out[0, u] = ipx
        out[1, u] = px
        out[2, u] = price_shock[r, b]
        s = scenario_shock[u]
        out[3, u] = s
        if s != s:
            n_nan += 1
        codes[0, u] = table[r, b]
        codes[1, u] = vol_code[r, b]
        v = worst_case[u]
        out[4, u] = v
        out[5, u] = v * px
        v = roll_shock[u]
        out[6, u] = v
        out[7, u] = v * px
        v = delta_shock[u]
        out[8, u] = v
        out[9, u] = v * px
        v = short_option_minimum[u]
        out[10, u] = v
        out[11, u] = v * px
        v = scenario_margin[u]
        out[12, u] = v
        out[13, u] = v * px
        v = excluded_margin[u]
        out[14, u] = v
        out[15, u] = v * px
        v = risk_matrix_margin[u]
        out[16, u] = v
        out[17, u] = v * px
        v = open_orders_margin[u]
        out[18, u] = v
        out[19, u] = v * px
        v = mmp_margin[u]
        out[20, u] = v
        out[21, u] = v * px
        v = maintenance_margin[u]
        out[22, u] = v
        out[23, u] = v * px
        v = initial_margin[u]
        out[24, u] = v
        out[25, u] = v * px
        d = delta[u]
        g = gamma[u]
        out[26, u] = d
        out[27, u] = d * ipx
        out[28, u] = g
        out[29, u] = g * ipx * ipx / 100.0
        v = vega[u]
        out[30, u] = v
        out[31, u] = v * px
        v = theta[u]
        out[32, u] = v
        out[33, u] = v * px
        if acc_snap.shape[0]:
            time[u] = snap_ns[acc_snap[unit_account[u]]]
    return n_nan


@njit(parallel=True)
def unit_block(utype, type_und, binding, price_shock, table, vol_code, index_px, unit_px,
               scenario_shock, worst_case, roll_shock, delta_shock, short_option_minimum,
               scenario_margin, excluded_margin, risk_matrix_margin, open_orders_margin,
               mmp_margin, maintenance_margin, initial_margin, delta, gamma, vega, theta,
               unit_account, acc_snap, snap_ns, out, codes, time):
    """The units table's numbers in one pass, written into ``out`` (float64, (34, n_units),
    rows :data:`UNIT_BLOCK`: the index and settlement prices, the binding cell's price
    shock, the price shock in the scenario of the account's scenario margin, then
    :data:`UNIT_COLUMNS`: each figure of :data:`UNIT_FIGURES` and its USD value (x
    ``unit_px``), then each Greek and its USD value: delta x index price, gamma x index
    price^2 / 100 (cash gamma per 1 % move), vega and theta x ``unit_px``), ``codes``
    (int64, (2, n_units): the binding cell's table and vol state codes; the cell is
    ``(type_und[utype[u]], binding[u])`` of ``price_shock``, ``table`` and ``vol_code``)
    and ``time`` (int64: ``snap_ns`` of the
    unit's account's snapshot, when ``acc_snap`` is not empty).  Returns the number of
    NaN scenario price shocks (null in the table).  (No helper per figure: an inlined
    helper taking ``out`` ran several times slower.)  The units cut into :data:`CHUNKS`
    runs over the threads; :func:`unit_block_serial` is the one-thread twin."""
    n = utype.shape[0]
    chunks = min(n, CHUNKS)
    nans = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        nans[c] = unit_block_rows(
            c * n // chunks, (c + 1) * n // chunks, utype, type_und, binding, price_shock,
            table, vol_code, index_px, unit_px, scenario_shock, worst_case, roll_shock,
            delta_shock, short_option_minimum, scenario_margin, excluded_margin,
            risk_matrix_margin, open_orders_margin, mmp_margin, maintenance_margin,
            initial_margin, delta, gamma, vega, theta, unit_account, acc_snap, snap_ns, out,
            codes, time)
    n_nan = 0
    for c in range(chunks):
        n_nan += nans[c]
    return n_nan


@njit
def unit_block_serial(utype, type_und, binding, price_shock, table, vol_code, index_px, unit_px,
                      scenario_shock, worst_case, roll_shock, delta_shock, short_option_minimum,
                      scenario_margin, excluded_margin, risk_matrix_margin, open_orders_margin,
                      mmp_margin, maintenance_margin, initial_margin, delta, gamma, vega, theta,
                      unit_account, acc_snap, snap_ns, out, codes, time):
    """:func:`unit_block` on one thread (small tables: no thread wake-up)."""
    return unit_block_rows(0, utype.shape[0], utype, type_und, binding, price_shock, table,
                           vol_code, index_px, unit_px, scenario_shock, worst_case, roll_shock,
                           delta_shock, short_option_minimum, scenario_margin, excluded_margin,
                           risk_matrix_margin, open_orders_margin, mmp_margin,
                           maintenance_margin, initial_margin, delta, gamma, vega, theta,
                           unit_account, acc_snap, snap_ns, out, codes, time)


# rows of account_block's block, in the accounts table's order of its numbers
ACCOUNT_BLOCK = ("equity", "actual_equity", "maintenance_margin", "initial_margin",
                 "available_margin", "max_withdrawable", "margin_ratio", "scenario_margin",
                 "loan_maintenance_margin")


@njit
def account_block(acc, every, equity, actual_equity, mm, im, liquidation_cost, scenario_margin,
                  loan_mm, low, levels, out, band):
    """The accounts table's numbers for accounts ``acc`` (all of them, in order, when
    ``every``), written into ``out`` (float64, (9, n), rows :data:`ACCOUNT_BLOCK`) and
    ``band`` (int64, the status code): beside the account's own figures, the ratio
    equity / (MM + liquidation cost), ``inf`` (``-inf`` for negative equity) when that is
    not positive; available margin equity - IM; the most withdrawable ``max(0, min(equity
    - low x MM, equity - IM))``; the band, the number of ``levels`` (decreasing) the
    ratio is below."""
    n = equity.shape[0] if every else acc.shape[0]
    for k in range(n):
        a = k if every else acc[k]
        eq = equity[a]
        m = mm[a]
        i = im[a]
        r = ratio_of(eq, m + liquidation_cost[a])
        out[0, k] = eq
        out[1, k] = actual_equity[a]
        out[2, k] = m
        out[3, k] = i
        out[4, k] = eq - i
        out[5, k] = fmax(0.0, fmin(eq - low * m, eq - i))
        out[6, k] = r
        out[7, k] = scenario_margin[a]
        out[8, k] = loan_mm[a]
        b = 0
        for lv in levels:
            if r < lv:
                b += 1
        band[k] = b


@njit
def account_cells(acc, every, ua_start, worst_case, unit_px, excluded_margin, any_excluded,
                  binding, utype, width, code):
    """What the accounts table's ``worst_scenario`` names, per account of ``acc`` (all,
    when ``every``), written into ``code``: 0 none, 1 excluded positions only (its units'
    excluded margin x ``unit_px``, summed in unit order, is above 0; only when
    ``any_excluded``), else ``2 + j``: the j-th distinct binding cell (``utype x width +
    binding``) of the accounts' largest units (largest ``worst_case x unit_px``, ties the
    first, NaN passed over as :func:`pmrisk.kernel.assemble.largest_units`) whose worst
    case is above 0.  Returns the distinct cells, in order of first use.  Units are sorted
    by account (``ua_start``: where each account's units start)."""
    n = ua_start.shape[0] - 1 if every else acc.shape[0]
    n_dense = (utype.max() + 1) * width if utype.shape[0] else 0
    slot = np.full(n_dense, -1, dtype=np.int64)
    cells = np.empty(n, dtype=np.int64)
    n_cells = 0
    for k in range(n):
        a = k if every else acc[k]
        c = 0
        if any_excluded:
            e = 0.0
            for v in range(ua_start[a], ua_start[a + 1]):
                e += excluded_margin[v] * unit_px[v]
            if e > 0.0:
                c = 1
        best = -1
        bw = 0.0
        for v in range(ua_start[a], ua_start[a + 1]):
            w = worst_case[v] * unit_px[v]
            if best < 0 or w > bw or (bw != bw and w == w):
                best = v
                bw = w
        if best >= 0 and bw > 0.0:
            key = utype[best] * width + binding[best]
            j = -1
            if 0 <= key < n_dense:
                j = slot[key]
            else:                       # a cell outside the table (never in practice)
                for q in range(n_cells):
                    if cells[q] == key:
                        j = q
            if j < 0:
                j = n_cells
                cells[j] = key
                n_cells += 1
                if 0 <= key < n_dense:
                    slot[key] = j
            c = 2 + j
        code[k] = c
    return cells[:n_cells].copy()


@njit
def positive_rows(values):
    """The indices of the values above 0 (``numpy.flatnonzero(values > 0)``)."""
    n = 0
    for v in values:
        if v > 0.0:
            n += 1
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(values.shape[0]):
        if values[i] > 0.0:
            out[k] = i
            k += 1
    return out


@njit
def every_flag_set(unit_flags, account_flags):
    """Whether every flag is 1.0 (the phase kernels' finiteness flags)."""
    for v in unit_flags:
        if v != 1.0:
            return False
    for v in account_flags:
        if v != 1.0:
            return False
    return True


@njit
def string_lengths(lo, hi, offsets, extra_offsets, rows, out_offsets):
    """The lengths of the strings ``rows[lo:hi]`` (as :func:`string_offsets` reads them),
    written into ``out_offsets[lo + 1:hi + 1]``; returns their sum."""
    n_main = offsets.shape[0] - 1
    total = 0
    for k in range(lo, hi):
        r = rows[k]
        if r < n_main:
            m = offsets[r + 1] - offsets[r]
        else:
            m = extra_offsets[r - n_main + 1] - extra_offsets[r - n_main]
        out_offsets[k + 1] = m
        total += m
    return total


@njit
def add_offsets(lo, hi, base, out_offsets):
    """``out_offsets[lo + 1:hi + 1]``, lengths, made offsets from ``base`` on; returns the
    last (int64: above 2**31 - 1 the int32 offsets are not valid)."""
    total = base
    for k in range(lo, hi):
        total += out_offsets[k + 1]
        out_offsets[k + 1] = total
    return total


@njit(parallel=True)
def string_offsets(offsets, extra_offsets, rows, out_offsets):
    """The offsets of the strings ``rows`` of a string array (``offsets``, int32: its n + 1
    offsets) and of extra names after it (row ``r >= n``: extra name ``r - n``), from 0,
    written into ``out_offsets`` (int32, len(rows) + 1).  Returns their total length in
    bytes (int64; above 2**31 - 1 the offsets are not valid: too long for a ``string``
    array).  Two passes over :data:`CHUNKS` runs of rows on the threads (the lengths and
    each run's sum, then the offsets from the runs' running sum);
    :func:`string_offsets_serial` is the one-thread twin."""
    n = rows.shape[0]
    out_offsets[0] = 0
    chunks = min(n, CHUNKS)
    base = np.zeros(chunks + 1, dtype=np.int64)
    for c in prange(chunks):
        base[c + 1] = string_lengths(c * n // chunks, (c + 1) * n // chunks, offsets,
                                     extra_offsets, rows, out_offsets)
    for c in range(chunks):
        base[c + 1] += base[c]
    if base[chunks] >= 1 << 31:
        return base[chunks]
    for c in prange(chunks):
        add_offsets(c * n // chunks, (c + 1) * n // chunks, base[c], out_offsets)
    return base[chunks]


@njit
def string_offsets_serial(offsets, extra_offsets, rows, out_offsets):
    """:func:`string_offsets` on one thread."""
    n = rows.shape[0]
    out_offsets[0] = 0
    total = string_lengths(0, n, offsets, extra_offsets, rows, out_offsets)
    if total >= 1 << 31:
        return total
    return add_offsets(0, n, 0, out_offsets)


@njit
def gather_rows(lo, hi, offsets, data, extra_offsets, extra_data, rows, out_offsets, out):
    """The bytes of the strings ``rows[lo:hi]`` into ``out`` from ``out_offsets[lo]`` on.
    The copy runs on unsigned indices in a while loop: a ``for`` over each string's bytes
    ran 2-3x slower (a wrap-around check per byte)."""
    n_main = offsets.shape[0] - 1
    d = np.uint64(out_offsets[lo])
    one = np.uint64(1)
    for k in range(lo, hi):
        r = rows[k]
        if r < n_main:
            s = np.uint64(offsets[r])
            e = np.uint64(offsets[r + 1])
            while s < e:
                out[d] = data[s]
                d += one
                s += one
        else:
            s = np.uint64(extra_offsets[r - n_main])
            e = np.uint64(extra_offsets[r - n_main + 1])
            while s < e:
                out[d] = extra_data[s]
                d += one
                s += one


@njit(parallel=True)
def gather_strings(offsets, data, extra_offsets, extra_data, rows, out_offsets, out):
    """The bytes of the strings ``rows`` (as :func:`string_offsets` reads them) into
    ``out`` (uint8, the total length) at ``out_offsets`` (:func:`string_offsets`' own):
    the rows cut into :data:`CHUNKS` runs over the threads.  A large string column in
    memory the caller gives (:func:`take_strings` allocates its own)."""
    n = rows.shape[0]
    chunks = min(n, CHUNKS)
    for c in prange(chunks):
        gather_rows(c * n // chunks, (c + 1) * n // chunks, offsets, data, extra_offsets,
                    extra_data, rows, out_offsets, out)


@njit
def gather_strings_serial(offsets, data, extra_offsets, extra_data, rows, out_offsets, out):
    """:func:`gather_strings` on one thread."""
    gather_rows(0, rows.shape[0], offsets, data, extra_offsets, extra_data, rows, out_offsets,
                out)


@njit
def take_strings(offsets, data, extra_offsets, extra_data, rows):
    """The strings ``rows`` of a string array (``offsets``, int32: its n + 1 offsets into
    ``data``, uint8) and of extra names after it (row ``r >= n``: extra name ``r - n``), as
    an Arrow string array's buffers: ``(offsets, data)``, int32 offsets from 0 and the
    bytes (:func:`string_offsets_serial`, then :func:`gather_rows`)."""
    n = rows.shape[0]
    out_offsets = np.empty(n + 1, dtype=np.int32)
    total = string_offsets_serial(offsets, extra_offsets, rows, out_offsets)
    out = np.empty(total, dtype=np.uint8)
    gather_rows(0, n, offsets, data, extra_offsets, extra_data, rows, out_offsets, out)
    return out_offsets, out

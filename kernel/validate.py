"""Input validation's per-table pass: every per-row rule of one input table in one pass over
its columns, as Arrow holds them (no copy), and the keys the book needs from it.

Columns come as numpy views of Arrow buffers:

* a string column is ``(offsets, data, validity, bit0)``: the int32 offsets of its rows
  (sliced to the array), its uint8 bytes, its validity bitmap (empty: no nulls) and the
  array's bit offset into that bitmap;
* a numeric column is ``(values, validity, bit0)`` with float64 ``values`` (a null row's
  value is never read);
* an optional column the table lacks is passed empty (no rows).

Each table kernel returns its outputs and ``bad``: per rule, the number of rows that break
it.  All zero is the usual case, and then the caller is done; otherwise it runs the
row-by-row checks, which name the rows of the first rule broken.  Numbers follow
:func:`bad_number`: finite, of magnitude <= ``bounds[0]`` and, for a positive column,
>= ``bounds[1]``.

Strings are matched through a hash index (:func:`pmrisk.kernel.keys.str_index`: dense codes
in order of first appearance, a table of slots, linear probing), with two shortcuts before any
hashing: a row equal to the row before takes its answer (one account's positions, a time's
rows), and a looked-up row is first compared with the value after the previous row's match
(market rows in the instruments' order, a history's blocks of them).
"""

import numpy as np

from ._config import njit
from .instruments import CALL, FUTURE, INVERSE, OPTION, PERPETUAL, SPOT
from .keys import same_str, str_hash, str_index

NAT = np.iinfo(np.int64).min
NS_PER_YEAR = 365 * 86_400 * 10**9

# instruments: the rules, in the order they are reported
(INS_SYMBOL_REPEATED, INS_KIND, INS_SETTLEMENT, INS_CONTRACT_SIZE, INS_EXPIRY_MISSING,
 INS_STRIKE, INS_STRIKE_MISSING, INS_OPTION_TYPE, INS_OPTION_TYPE_MISSING,
 INS_SPOT_INVERSE) = range(10)
# positions
POS_SYMBOL_UNKNOWN, POS_QUANTITY, POS_ENTRY_PRICE, POS_LEVERAGE = range(4)
# market
MKT_SYMBOL_UNKNOWN, MKT_MARK_PRICE, MKT_MARK_IV, MKT_MARK_IV_ABOVE_MAX, \
    MKT_UNDERLYING_PRICE = range(5)


@njit(_nrt=False)        # no reference counting per row: see pmrisk.kernel.keys.str_hash
def is_valid(validity, bit0, i):
    """Row ``i`` is not null (``validity`` empty: no row is)."""
    if validity.shape[0] == 0:
        return True
    j = bit0 + i
    return (validity[j >> 3] >> (j & 7)) & 1 != 0


@njit(inline="always")
def bad_number(v, positive, bounds):
    """``v`` breaks the rule of a numeric input: not finite, of magnitude above ``bounds[0]``,
    or, when ``positive``, below ``bounds[1]`` (> 0 with room to divide)."""
    if not abs(v) <= bounds[0]:              # NaN, inf, too large
        return True
    return positive and not v >= bounds[1]


@njit
def count_bad(values, validity, bit0, positive, bounds):
    """Rows of a numeric column (``values``, ``validity``, ``bit0``) whose value breaks
    :func:`bad_number` (nulls are not counted; an absent column has no rows)."""
    n_bad = 0
    for i in range(values.shape[0]):
        if is_valid(validity, bit0, i) and bad_number(values[i], positive, bounds):
            n_bad += 1
    return n_bad


@njit
def match_names(offsets, data, validity, bit0, n_offsets, n_data):
    """Index among the names (``n_offsets``, ``n_data``: a handful of short names) of each
    string of a string column, -1 when null or none; and the number of non-null strings
    that are none of the names."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.int64)
    n_unknown = 0
    for i in range(n):
        out[i] = -1
        if not is_valid(validity, bit0, i):
            continue
        if i and out[i - 1] >= 0 and same_str(offsets, data, i, offsets, data, i - 1):
            out[i] = out[i - 1]             # a run of one name: the row before says
            continue
        for j in range(n_offsets.shape[0] - 1):
            if same_str(offsets, data, i, n_offsets, n_data, j):
                out[i] = j
                break
        if out[i] < 0:
            n_unknown += 1
    return out, n_unknown


@njit
def lookup_rows(column, values, index, period):
    """Row in ``values`` (the first of its value) of each string of ``column`` (``(offsets,
    data, validity, bit0)``), -1 when null or absent; ``index`` is :func:`str_index` of
    ``values``.  A row equal to the row before takes its answer; otherwise the match of the
    row ``period`` rows before (``period`` > 0: a history's snapshots of the same rows), then
    the value after the previous row's match are tried before the hash."""
    offsets, data, validity, bit0 = column
    v_offsets, v_data = values
    codes, first, code_hash, slots, bits = index
    mask = (1 << bits) - 1
    n = offsets.shape[0] - 1
    n_values = v_offsets.shape[0] - 1
    out = np.empty(n, dtype=np.int64)
    prev = -1                       # the previous row's match (a row of values)
    prev_valid = False
    for i in range(n):
        if not is_valid(validity, bit0, i):
            out[i] = -1
            prev_valid = False
            continue
        if prev_valid and same_str(offsets, data, i, offsets, data, i - 1):
            out[i] = out[i - 1]
            continue
        prev_valid = True
        if period > 0 and i >= period and out[i - period] >= 0 and same_str(
                offsets, data, i, v_offsets, v_data, out[i - period]):
            out[i] = out[i - period]
            prev = out[i]
            continue
        guess = prev + 1 if prev + 1 < n_values else 0
        if n_values and same_str(offsets, data, i, v_offsets, v_data, guess):
            out[i] = first[codes[guess]]
            prev = guess
            continue
        h = str_hash(offsets, data, i)          # the hash index (probes are rare)
        s = np.int64(h >> np.uint64(64 - bits))
        out[i] = -1
        while True:
            c = slots[s]
            if c < 0:
                break
            if code_hash[c] == h and same_str(offsets, data, i, v_offsets, v_data, first[c]):
                out[i] = first[c]
                prev = first[c]
                break
            s = (s + 1) & mask
    return out


@njit
def _repeated_pairs(group, key, n_key):
    """Rows whose ``(group, key)`` an earlier row has (keys -1 skipped), for ``group`` in
    non-decreasing order and ``0 <= key < n_key``; -1 when ``group`` decreases somewhere."""
    stamp = np.full(n_key, -1, dtype=np.int64)
    repeated = 0
    for i in range(key.shape[0]):
        g = group[i]
        if i and g < group[i - 1]:
            return -1
        k = key[i]
        if k < 0:
            continue
        if stamp[k] == g:
            repeated += 1
        else:
            stamp[k] = g
    return repeated


@njit
def instruments(symbol, underlying, kind, settlement, option_type, contract_size, strike,
                expiry, names, bounds):
    """The instruments table in one pass.

    ``symbol``, ``underlying``, ``kind``, ``settlement``, ``option_type`` are string columns,
    ``contract_size``, ``strike`` numeric columns, ``expiry`` int64 ns (``NAT`` for null);
    ``option_type``, ``strike`` and ``expiry`` may be absent (empty).  ``names`` is the
    allowed ``(kinds, settlements, option_types)``, each ``(offsets, data)``.

    Returns ``(kind, settlement, is_call, und_codes, und_first, sym_index, bad)``: the codes
    of kind and settlement (-1 unknown), 1 for a call (0 otherwise), the underlying's code
    (order of first appearance) and each code's first row, :func:`str_index` of the
    symbols, and the count of rows breaking each rule ``INS_*`` (a symbol's repeats; a kind,
    settlement or option type not among the names; a contract size or strike that breaks
    :func:`bad_number` (positive); a future or option without an expiry, an option without
    a strike or an option type; a spot instrument settled inverse)."""
    sym_off, sym_data, _v, _b = symbol
    n = sym_off.shape[0] - 1
    bad = np.zeros(10, dtype=np.int64)
    sym_index = str_index(sym_off, sym_data, 0)
    bad[INS_SYMBOL_REPEATED] = n - sym_index[1].shape[0]
    und_codes, und_first, _h, _s, _b = str_index(underlying[0], underlying[1], 0)
    (k_names_off, k_names), (s_names_off, s_names), (o_names_off, o_names) = names
    k_off, k_data, k_valid, k_bit0 = kind
    s_off, s_data, s_valid, s_bit0 = settlement
    o_off, o_data, o_valid, o_bit0 = option_type
    csize, c_valid, c_bit0 = contract_size
    strikes, st_valid, st_bit0 = strike
    has_ot = o_off.shape[0] == n + 1
    has_strike = strikes.shape[0] == n
    has_expiry = expiry.shape[0] == n
    kind_code, bad[INS_KIND] = match_names(k_off, k_data, k_valid, k_bit0, k_names_off,
                                           k_names)
    settle_code, bad[INS_SETTLEMENT] = match_names(s_off, s_data, s_valid, s_bit0,
                                                   s_names_off, s_names)
    if has_ot:
        ot_code, bad[INS_OPTION_TYPE] = match_names(o_off, o_data, o_valid, o_bit0,
                                                    o_names_off, o_names)
    else:
        ot_code = np.full(n, -1, dtype=np.int64)
    is_call = np.zeros(n, dtype=np.int64)
    for i in range(n):
        k = kind_code[i]
        if is_valid(c_valid, c_bit0, i) and bad_number(csize[i], True, bounds):
            bad[INS_CONTRACT_SIZE] += 1
        is_opt = k == OPTION
        if (k == FUTURE or is_opt) and (not has_expiry or expiry[i] == NAT):
            bad[INS_EXPIRY_MISSING] += 1
        struck = has_strike and is_valid(st_valid, st_bit0, i)
        if struck and bad_number(strikes[i], True, bounds):
            bad[INS_STRIKE] += 1
        if is_opt and not struck:
            bad[INS_STRIKE_MISSING] += 1
        o = ot_code[i]
        if is_opt and o < 0:
            bad[INS_OPTION_TYPE_MISSING] += 1
        if o == 1:
            is_call[i] = 1
        if k == SPOT and settle_code[i] == INVERSE:
            bad[INS_SPOT_INVERSE] += 1
    return kind_code, settle_code, is_call, und_codes, und_first, sym_index, bad


@njit
def positions(symbol, account, quantity, entry_price, leverage, ins_symbol, ins_index,
              period, bounds):
    """The positions table in one pass.

    ``symbol``, ``account``: string columns; ``quantity``, ``entry_price``, ``leverage``:
    numeric columns (the last two may be absent); ``ins_symbol`` the instruments' symbols
    ``(offsets, data)`` and ``ins_index`` their :func:`str_index`; ``period`` as in
    :func:`lookup_rows` (0: none; the accounts are coded with the same period).

    Returns ``(ins_row, acc_codes, acc_first, repeated, bad)``: the instruments row of each
    position's symbol (-1 unknown), the account codes (order of first appearance) and each
    code's first row, the number of rows that repeat an earlier row's (account, symbol) (-1
    when not counted: the accounts not in contiguous runs), and the count of rows
    breaking each rule ``POS_*`` (a symbol not among the instruments; a quantity that breaks
    :func:`bad_number`; an entry price or a leverage that breaks it as a positive
    number)."""
    bad = np.zeros(4, dtype=np.int64)
    ins_row = lookup_rows(symbol, ins_symbol, ins_index, period)
    for i in range(ins_row.shape[0]):
        if ins_row[i] < 0:
            bad[POS_SYMBOL_UNKNOWN] += 1
    acc_codes, acc_first, _h, _s, _b = str_index(account[0], account[1], period)
    repeated = _repeated_pairs(acc_codes, ins_row, ins_symbol[0].shape[0] - 1)
    bad[POS_QUANTITY] = count_bad(quantity[0], quantity[1], quantity[2], False, bounds)
    bad[POS_ENTRY_PRICE] = count_bad(entry_price[0], entry_price[1], entry_price[2], True,
                                     bounds)
    bad[POS_LEVERAGE] = count_bad(leverage[0], leverage[1], leverage[2], True, bounds)
    return ins_row, acc_codes, acc_first, repeated, bad


@njit
def market(symbol, mark_price, mark_iv, underlying_price, max_iv, ins_symbol, ins_index,
           bounds):
    """The market table in one pass.

    ``symbol``: a string column; ``mark_price``, ``mark_iv``, ``underlying_price``: numeric
    columns (the last two may be absent); ``max_iv``: the largest ``mark_iv`` allowed;
    ``ins_symbol``, ``ins_index`` as in :func:`positions`.

    Returns ``(ins_row, repeated, bad)``: the instruments row of each market row's symbol
    (-1 unknown), the number of rows whose symbol an earlier row has, and the count of rows
    breaking each rule ``MKT_*`` (a symbol not among the instruments; a mark price, mark_iv
    or underlying price that breaks :func:`bad_number` as a positive number; a mark_iv above
    ``max_iv``)."""
    bad = np.zeros(5, dtype=np.int64)
    ins_row = lookup_rows(symbol, ins_symbol, ins_index, 0)
    for i in range(ins_row.shape[0]):
        if ins_row[i] < 0:
            bad[MKT_SYMBOL_UNKNOWN] += 1
    bad[MKT_MARK_PRICE] = count_bad(mark_price[0], mark_price[1], mark_price[2], True, bounds)
    values, validity, bit0 = mark_iv
    bad[MKT_MARK_IV] = count_bad(values, validity, bit0, True, bounds)
    for i in range(values.shape[0]):
        if is_valid(validity, bit0, i) and values[i] > max_iv:
            bad[MKT_MARK_IV_ABOVE_MAX] += 1
    bad[MKT_UNDERLYING_PRICE] = count_bad(underlying_price[0], underlying_price[1],
                                          underlying_price[2], True, bounds)
    one = np.zeros(ins_row.shape[0], dtype=np.int64)
    return ins_row, _repeated_pairs(one, ins_row, ins_symbol[0].shape[0] - 1), bad


@njit
def expired(pos_row, pos_snap, ord_row, ord_snap, kind, expiry, snap_ns):
    """Which positions and orders hold an instrument past its expiry at their snapshot:
    a future or option whose ``expiry`` (ns, ``NAT`` none) is before the snapshot's time
    ``snap_ns[snap]`` (``snap_ns`` ascending).  Returns ``(pos_expired, ord_expired,
    n_expired)``."""
    n_ins = kind.shape[0]
    # past expiry at snapshot s <=> s >= the number of snapshot times <= expiry
    expired_from = np.empty(n_ins, dtype=np.int64)
    n_snap = snap_ns.shape[0]
    for r in range(n_ins):
        k = kind[r]
        e = expiry[r]
        if (k == FUTURE or k == OPTION) and e != NAT:
            lo, hi = 0, n_snap
            while lo < hi:
                mid = (lo + hi) >> 1
                if snap_ns[mid] <= e:
                    lo = mid + 1
                else:
                    hi = mid
            expired_from[r] = lo
        else:
            expired_from[r] = n_snap
    n_expired = 0
    pos_expired = np.empty(pos_row.shape[0], dtype=np.bool_)
    for i in range(pos_row.shape[0]):
        pos_expired[i] = pos_snap[i] >= expired_from[pos_row[i]]
        n_expired += pos_expired[i]
    ord_expired = np.empty(ord_row.shape[0], dtype=np.bool_)
    for i in range(ord_row.shape[0]):
        ord_expired[i] = ord_snap[i] >= expired_from[ord_row[i]]
        n_expired += ord_expired[i]
    return pos_expired, ord_expired, n_expired


@njit
def index_prices(underlying, price, names, bounds):
    """The index table of one snapshot in one pass, and the price of each of ``names``.

    ``underlying``: the table's string column ``(offsets, data)`` (no nulls); ``price`` its
    numeric column ``(values, validity, bit0)``; ``names``: the instruments' underlyings
    ``(offsets, data)``.  Returns ``(name_col, name_price, repeated, n_bad)``: the index row
    of each name (-1 none; its column in the book's prices when no underlying repeats), its
    price (NaN none or null), the number of rows whose underlying an earlier row has, and the number
    of prices breaking :func:`bad_number` as positive numbers."""
    index = str_index(underlying[0], underlying[1], 0)
    repeated = underlying[0].shape[0] - 1 - index[1].shape[0]
    values, validity, bit0 = price
    n_bad = count_bad(values, validity, bit0, True, bounds)
    name_col = lookup_rows((names[0], names[1], np.zeros(0, dtype=np.uint8), 0), underlying,
                           index, 0)
    name_price = np.empty(name_col.shape[0])
    for j in range(name_col.shape[0]):
        r = name_col[j]
        name_price[j] = values[r] if r >= 0 and is_valid(validity, bit0, r) else np.nan
    return name_col, name_price, repeated, n_bad


# one_snapshot: what stops the fast assembly (the caller then takes the rule-by-rule path,
# which raises the error)
ONE_OK, ONE_NO_MARK, ONE_NO_IV, ONE_UNPRICED = range(4)


@njit
def one_snapshot(pos_row, ord_row, kind, settlement, contract_size, expiry, strike, is_call,
                 und_code, mkt_ins, mark, mark_iv, underlying_price, und_price, vt):
    """The book's instruments of a one-snapshot book at valuation time ``vt`` (ns) in one
    pass: the instruments held (``pos_row``) or ordered (``ord_row``) in the order the
    positions, then the orders, first hold them, and each one's values.

    Per instruments row: ``kind``, ``settlement``, ``contract_size``, ``expiry`` (``NAT``
    none), ``strike`` (NaN none), ``is_call``, ``und_code`` (its underlying's code);
    per market row (no symbol twice): ``mkt_ins`` (its instruments row), ``mark``,
    ``mark_iv``, ``underlying_price`` (NaN none); ``und_price``: the index price of each
    underlying code (NaN none).

    Returns ``(status, ins_row, pos_instr, ord_instr, und, und_used, kind, settlement,
    contract_size, expiry, mark, forward, strike, is_call, years, mark_iv)``: ``status``
    ``ONE_OK``, or what is missing (an instrument without a market row, an option without a
    mark_iv, an underlying without a price; the rest is then unfinished); per instrument its
    instruments row and, for positions and orders, the instrument of each.  ``und`` is the
    instrument's underlying among ``und_used`` (the codes held, ascending).  The forward is
    the market's ``underlying_price``, else the index price; ``years`` to expiry is 0 for
    spot, perpetual and undated instruments; a strike absent is 1.0; ``is_call`` is 1 for
    anything but a put option."""
    n_ins = kind.shape[0]
    # instruments numbered as the positions, then the orders, first hold them: a book's
    # per-position passes then read the per-instrument arrays (and revaluation rows) in
    # order where each position holds its own instrument, not at random rows
    instr_of = np.full(n_ins, -1, dtype=np.int64)
    n = 0
    for i in range(pos_row.shape[0]):
        if instr_of[pos_row[i]] < 0:
            instr_of[pos_row[i]] = n
            n += 1
    for i in range(ord_row.shape[0]):
        if instr_of[ord_row[i]] < 0:
            instr_of[ord_row[i]] = n
            n += 1
    ins_row = np.empty(n, dtype=np.int64)
    for r in range(n_ins):
        if instr_of[r] >= 0:
            ins_row[instr_of[r]] = r
    pos_instr = np.empty(pos_row.shape[0], dtype=np.int64)
    for i in range(pos_row.shape[0]):
        pos_instr[i] = instr_of[pos_row[i]]
    ord_instr = np.empty(ord_row.shape[0], dtype=np.int64)
    for i in range(ord_row.shape[0]):
        ord_instr[i] = instr_of[ord_row[i]]
    mkt_of = np.full(n_ins, -1, dtype=np.int64)
    for m in range(mkt_ins.shape[0]):
        mkt_of[mkt_ins[m]] = m
    n_und = 0
    for r in range(n_ins):
        n_und = max(n_und, und_code[r] + 1)
    und_rank = np.full(n_und, -1, dtype=np.int64)
    a_kind = np.empty(n, dtype=np.int64)
    a_settlement = np.empty(n, dtype=np.int64)
    a_size = np.empty(n)
    a_expiry = np.empty(n, dtype=np.int64)
    a_mark = np.empty(n)
    forward = np.empty(n)
    a_strike = np.empty(n)
    a_call = np.empty(n, dtype=np.int64)
    years = np.empty(n)
    a_iv = np.empty(n)
    und = np.empty(n, dtype=np.int64)
    status = ONE_OK
    for k in range(n):
        r = ins_row[k]
        m = mkt_of[r]
        if m < 0:
            status = ONE_NO_MARK
            break
        kd = kind[r]
        iv = mark_iv[m]
        if kd == OPTION and iv != iv:
            status = ONE_NO_IV
            break
        px = und_price[und_code[r]]
        if px != px:
            status = ONE_UNPRICED
            break
        und_rank[und_code[r]] = 0
        a_kind[k] = kd
        a_settlement[k] = settlement[r]
        a_size[k] = contract_size[r]
        e = expiry[r]
        a_expiry[k] = e
        a_mark[k] = mark[m]
        f = underlying_price[m]
        forward[k] = px if f != f else f
        s = strike[r]
        a_strike[k] = 1.0 if s != s else s
        a_call[k] = is_call[r] if kd == OPTION else CALL
        if kd == SPOT or kd == PERPETUAL or e == NAT:
            years[k] = 0.0
        else:
            years[k] = np.float64(e - vt) / np.float64(NS_PER_YEAR)
        a_iv[k] = iv
    n_used = 0
    for c in range(n_und):
        if und_rank[c] == 0:
            und_rank[c] = n_used
            n_used += 1
    und_used = np.empty(n_used, dtype=np.int64)
    for c in range(n_und):
        if und_rank[c] >= 0:
            und_used[und_rank[c]] = c
    if status == ONE_OK:
        for k in range(n):
            und[k] = und_rank[und_code[ins_row[k]]]
    return (status, ins_row, pos_instr, ord_instr, und, und_used, a_kind, a_settlement, a_size,
            a_expiry, a_mark, forward, a_strike, a_call, years, a_iv)


# one_snapshot_book calls its own dispatchers of the passes: a call from compiled code compiles
# the callee for the caller's types (arrays it made, so writeable; literal constants), which
# would be a second compiled signature of the public kernels
_instruments, _positions, _expired, _market, _index_prices, _one_snapshot = (
    njit(f.py_func) for f in (instruments, positions, expired, market, index_prices,
                              one_snapshot))

# one_snapshot_book: what stops it (the caller then takes the table passes one by one, and
# the checks rule by rule, which raise the error)
BOOK_OK, BOOK_INSTRUMENTS, BOOK_POSITIONS, BOOK_EXPIRED, BOOK_MARKET, BOOK_INDEX, \
    BOOK_INSTANCES = range(7)


@njit
def rows_in_order(rows, n):
    """Whether ``rows`` is ``0, 1, ..., n - 1``."""
    if rows.shape[0] != n:
        return False
    for i in range(n):
        if rows[i] != i:
            return False
    return True


@njit
def _with_nan(column, n):
    """A numeric column's values with NaN at nulls (all NaN when absent: no rows)."""
    values, validity, bit0 = column
    out = np.full(n, np.nan)
    if values.shape[0] == n:
        for i in range(n):
            if is_valid(validity, bit0, i):
                out[i] = values[i]
    return out


@njit
def _rows_of_strings(offsets, data, rows):
    """``(offsets, data)`` of the strings ``rows`` of a string column (a handful: the
    underlyings' names)."""
    n = rows.shape[0]
    out_offsets = np.zeros(n + 1, dtype=np.int32)
    for j in range(n):
        r = rows[j]
        out_offsets[j + 1] = out_offsets[j] + offsets[r + 1] - offsets[r]
    out_data = np.empty(out_offsets[n], dtype=np.uint8)
    for j in range(n):
        r = rows[j]
        a = offsets[r]
        for q in range(offsets[r + 1] - a):
            out_data[out_offsets[j] + q] = data[a + q]
    return out_offsets, out_data


@njit
def one_snapshot_book(ins, pos, mkt, idx, names, bounds, max_iv, vt):
    """A one-snapshot book without open orders in one call: :func:`instruments`,
    :func:`positions`, :func:`expired`, :func:`market`, :func:`index_prices` and
    :func:`one_snapshot` in the order the book reads them, each on the last's outputs (no
    round trip to Python between them).

    ``ins``: the instruments' ``(symbol, underlying, kind, settlement, option_type,
    contract_size, strike, expiry)`` as :func:`instruments` takes them; ``pos``: the
    positions' ``(symbol, account, quantity, entry_price, leverage)`` (the accounts coded:
    a book of up to ``pmrisk.io.arrow.SMALL`` positions);
    ``mkt``: the market's ``(symbol, mark_price, mark_iv, underlying_price)``; ``idx``: the
    index's ``(underlying, index_price)`` (the underlying ``(offsets, data)``, no nulls);
    ``names``, ``bounds``, ``max_iv`` as the table passes take them; ``vt`` the valuation
    time (ns).

    Returns ``(status, und_first, pos_row, acc_codes, acc_first, asset_px, book)``:
    ``status`` ``BOOK_OK``, or the first pass that found a broken row, a repeated key (an
    (account, symbol), a market symbol, an index underlying), an expired holding or a
    missing market row, mark_iv or index price (the rest is then unfinished); the first
    row of each underlying's code, each position's instruments row, the account codes and
    each code's first row, the index prices with NaN at nulls, and
    :func:`one_snapshot`'s outputs but its status."""
    sym, und, kind, settlement, option_type, contract_size, strike, expiry = ins
    p_sym, p_acc, qty, entry, lev = pos
    m_sym, mark, mark_iv, fwd = mkt
    i_und, price = idx
    none = np.zeros(0, dtype=np.int64)
    no_px = np.zeros(0)
    empty = (none, none, none, none, none, none, none, no_px, none, no_px, no_px, no_px, none,
             no_px, no_px)
    n_ins = sym[0].shape[0] - 1
    kind_code, settle_code, is_call, und_code, und_first, sym_index, bad = _instruments(
        sym, und, kind, settlement, option_type, contract_size, strike, expiry, names, bounds)
    if bad.any():
        return BOOK_INSTRUMENTS, und_first, none, none, none, no_px, empty
    ins_symbol = (sym[0], sym[1])
    pos_row, acc_codes, acc_first, repeated, bad = _positions(
        p_sym, p_acc, qty, entry, lev, ins_symbol, sym_index, 0, bounds)
    if bad.any() or repeated != 0:
        return BOOK_POSITIONS, und_first, pos_row, acc_codes, acc_first, no_px, empty
    has_expiry = expiry.shape[0] == n_ins
    snap_ns = np.full(1, vt, dtype=np.int64)
    _pe, _oe, n_expired = _expired(pos_row, np.zeros(pos_row.shape[0], dtype=np.int64), none,
                                  none, kind_code,
                                  expiry if has_expiry else np.full(n_ins, NAT), snap_ns)
    if n_expired:
        return BOOK_EXPIRED, und_first, pos_row, acc_codes, acc_first, no_px, empty
    mkt_ins, repeated, bad = _market(m_sym, mark, mark_iv, fwd, max_iv, ins_symbol, sym_index,
                                    bounds)
    if bad.any() or repeated != 0:
        return BOOK_MARKET, und_first, pos_row, acc_codes, acc_first, no_px, empty
    und_names = _rows_of_strings(und[0], und[1], und_first)
    _col, name_price, repeated, n_bad = _index_prices(i_und, price, und_names, bounds)
    if repeated or n_bad:
        return BOOK_INDEX, und_first, pos_row, acc_codes, acc_first, no_px, empty
    n_mkt = m_sym[0].shape[0] - 1
    out = _one_snapshot(pos_row, none, kind_code, settle_code, contract_size[0],
                       expiry if has_expiry else np.full(n_ins, NAT),
                       _with_nan(strike, n_ins), is_call, und_code, mkt_ins, mark[0],
                       _with_nan(mark_iv, n_mkt), _with_nan(fwd, n_mkt), name_price, vt)
    asset_px = _with_nan(price, i_und[0].shape[0] - 1)
    if out[0] != ONE_OK:
        return BOOK_INSTANCES, und_first, pos_row, acc_codes, acc_first, asset_px, empty
    return (BOOK_OK, und_first, pos_row, acc_codes, acc_first, asset_px,
            (out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8], out[9], out[10],
             out[11], out[12], out[13], out[14], out[15]))

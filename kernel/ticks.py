"""A :class:`pmrisk.Monitor`'s bookkeeping as kernels: the market rows of a tick merged into
the monitor's marks (:func:`market_checks`, :func:`write_marks`), the moved marks written
into a block's book (:func:`book_marks`), what a tick on a set of names touches in a block
(:func:`tick_selection`), the rows of a block's sub-book (:func:`kept_rows`) and the
revaluation rows a what-if book copies from its block (:func:`row_sources`).  Each is one
or two passes over its rows, with the order and the bits of the numpy it replaced (twins in
``tests/oracles.py``)."""

import numpy as np

from ._config import njit


@njit
def market_checks(rows, mark, iv, is_opt, cur_iv):
    """Per market row ``j`` of a tick (``rows[j]``: its symbol's row in the monitor's
    arrays, -1 for a new symbol; ``mark``/``iv``: the row's values, NaN when not given):
    ``(no_mark, no_iv)``, bool arrays: a new symbol without a mark, an option left without
    a vol (its given ``iv``, else its current ``cur_iv``).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.ticks import market_checks
    >>> rows = np.array([0, -1], dtype=np.int64)
    >>> no_mark, no_iv = market_checks(rows, np.array([1.0, np.nan]), np.full(2, np.nan),
    ...                                np.array([True, False]), np.array([0.5]))
    >>> no_mark.tolist(), no_iv.tolist()
    ([False, True], [False, False])
    """
    n = rows.shape[0]
    no_mark = np.zeros(n, dtype=np.bool_)
    no_iv = np.zeros(n, dtype=np.bool_)
    for j in range(n):
        r = rows[j]
        no_mark[j] = r < 0 and mark[j] != mark[j]
        v = iv[j]
        if v != v:
            v = cur_iv[r] if r >= 0 else np.nan
        no_iv[j] = is_opt[j] and v != v
    return no_mark, no_iv


@njit
def write_marks(rows, n_old, mark, iv, fwd, has_fwd, cur_mark, cur_iv, cur_fwd):
    """Write a tick's market rows into the monitor's arrays at ``rows`` (distinct; rows from
    ``n_old`` on are new symbols): ``mark`` and ``iv`` where given (not NaN), ``fwd`` as
    given (NaN: none) when ``has_fwd``.  Returns ``changed`` (bool per row): a new symbol,
    or a mark, vol or forward other than before (exactly; NaN equals NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.ticks import write_marks
    >>> m, v, f = np.array([1.0, 2.0]), np.array([np.nan, 0.5]), np.full(2, np.nan)
    >>> rows = np.array([0, 1], dtype=np.int64)
    >>> write_marks(rows, 2, np.array([1.0, 3.0]), np.full(2, np.nan), np.zeros(2), False,
    ...             m, v, f).tolist(), m.tolist()
    ([False, True], [1.0, 3.0])
    """
    n = rows.shape[0]
    changed = np.zeros(n, dtype=np.bool_)
    for j in range(n):
        r = rows[j]
        m0 = cur_mark[r]
        v0 = cur_iv[r]
        f0 = cur_fwd[r]
        if mark[j] == mark[j]:
            cur_mark[r] = mark[j]
        if iv[j] == iv[j]:
            cur_iv[r] = iv[j]
        if has_fwd:
            cur_fwd[r] = fwd[j]
        m1 = cur_mark[r]
        v1 = cur_iv[r]
        f1 = cur_fwd[r]
        same = (m0 == m1 or (m0 != m0 and m1 != m1)) and (v0 == v1 or (v0 != v0 and v1 != v1)) \
            and (f0 == f1 or (f0 != f0 and f1 != f1))
        changed[j] = r >= n_old or not same
    return changed


@njit
def book_marks(instr, mrow, und_px, mark, iv, fwd, book_mark, book_iv, book_fwd):
    """Per moved instrument ``i = instr[k]`` (its market row ``mrow[k]``): the book's mark
    and vol from the monitor's ``mark``/``iv``, and its forward from ``fwd``, or the
    underlying's index price ``und_px[k]`` where ``fwd`` is NaN (none given).

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.ticks import book_marks
    >>> bm, bv, bf = np.zeros(2), np.zeros(2), np.zeros(2)
    >>> book_marks(np.array([1], dtype=np.int64), np.array([0], dtype=np.int64),
    ...            np.array([100.0]), np.array([5.0]), np.array([0.5]), np.array([np.nan]),
    ...            bm, bv, bf)
    >>> bm.tolist(), bf.tolist()
    ([0.0, 5.0], [0.0, 100.0])
    """
    for k in range(instr.shape[0]):
        i = instr[k]
        r = mrow[k]
        book_mark[i] = mark[r]
        book_iv[i] = iv[r]
        f = fwd[r]
        book_fwd[i] = und_px[k] if f != f else f


@njit
def _flat(mask):
    """Indices of the set entries of ``mask`` (bool), increasing."""
    n = 0
    for x in mask:
        n += x
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(mask.shape[0]):
        if mask[i]:
            out[k] = i
            k += 1
    return out


@njit
def tick_selection(instr_hit, type_hit, utype, unit_account, live, bal_account, bal_hit,
                   row_instr, all_units):
    """What a tick touches in a block, from the moved names' instruments ``instr_hit`` and
    unit types ``type_hit`` (bool): ``(instr, rows, units, acc, moved_units)``, int64
    indices, increasing: the moved instruments, their revaluation rows (``row_instr``), the
    units recomputed (``all_units``: every unit of the accounts touched, else those on a
    moved name; live accounts' only), the live accounts touched (holding a unit on a moved
    name or a balance row ``bal_hit``, sorted, of account ``bal_account``) and the live
    units on a moved name.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.ticks import tick_selection
    >>> i64 = lambda *x: np.array(x, dtype=np.int64)
    >>> out = tick_selection(np.array([True, False]), np.array([False, True]), i64(0, 1, 1),
    ...                      i64(0, 0, 1), np.array([True, True]), i64(), i64(), i64(0, 1),
    ...                      False)
    >>> [a.tolist() for a in out]
    [[0], [0], [1, 2], [0, 1], [1, 2]]
    """
    n_units = utype.shape[0]
    n_acc = live.shape[0]
    instr = _flat(instr_hit)
    rows_hit = np.zeros(row_instr.shape[0], dtype=np.bool_)
    for j in range(row_instr.shape[0]):
        rows_hit[j] = instr_hit[row_instr[j]]
    acc_hit = np.zeros(n_acc, dtype=np.bool_)
    unit_hit = np.zeros(n_units, dtype=np.bool_)
    for v in range(n_units):
        if type_hit[utype[v]]:
            unit_hit[v] = True
            acc_hit[unit_account[v]] = True
    for k in range(bal_hit.shape[0]):
        acc_hit[bal_account[bal_hit[k]]] = True
    for a in range(n_acc):
        acc_hit[a] = acc_hit[a] and live[a]
    moved = np.zeros(n_units, dtype=np.bool_)
    hit = np.zeros(n_units, dtype=np.bool_)
    for v in range(n_units):
        on = live[unit_account[v]]
        moved[v] = unit_hit[v] and on
        hit[v] = (acc_hit[unit_account[v]] and on) if all_units else moved[v]
    return instr, _flat(rows_hit), _flat(hit), _flat(acc_hit), _flat(moved)


@njit
def kept_rows(new, account):
    """The rows of a table of ``account`` (an account index per row) whose account is kept
    (``new[account] >= 0``: its index in a sub-book), in order, and their accounts' new
    indices: ``(rows, new_account)``, int64.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.ticks import kept_rows
    >>> rows, acc = kept_rows(np.array([-1, 0, 1]), np.array([2, 0, 1, 2]))
    >>> rows.tolist(), acc.tolist()
    ([0, 2, 3], [1, 0, 1])
    """
    n = 0
    for j in range(account.shape[0]):
        n += new[account[j]] >= 0
    rows = np.empty(n, dtype=np.int64)
    acc = np.empty(n, dtype=np.int64)
    k = 0
    for j in range(account.shape[0]):
        a = new[account[j]]
        if a >= 0:
            rows[k] = j
            acc[k] = a
            k += 1
    return rows, acc



@njit
def row_sources(mine, row_instr, n_instr, floored, n_held):
    """The revaluation rows of a small book (a what-if account's) that copy a block's: row
    ``j`` prices instrument ``row_instr[j]``, whose block instrument is ``mine[...]`` (-1:
    none); rows from ``n_instr`` on are floored copies, found among the block's floored
    instruments ``floored`` (sorted; the block's copy of ``floored[t]`` is row
    ``n_held + t``).  Returns ``(use, src, left)``, int64: the rows with a block row, that
    row, and the rows without one.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.ticks import row_sources
    >>> i64 = lambda *x: np.array(x, dtype=np.int64)
    >>> [a.tolist() for a in row_sources(i64(4, -1), i64(0, 1, 0), 2, i64(4), 9)]
    [[0, 2], [4, 9], [1]]
    """
    n = row_instr.shape[0]
    n_fl = floored.shape[0]
    has = np.zeros(n, dtype=np.bool_)
    src = np.empty(n, dtype=np.int64)
    n_use = 0
    for j in range(n):
        k = mine[row_instr[j]]
        if j < n_instr:
            has[j] = k >= 0
            src[j] = k
        else:
            lo = 0
            hi = n_fl
            while lo < hi:
                mid = (lo + hi) >> 1
                if floored[mid] < k:
                    lo = mid + 1
                else:
                    hi = mid
            at = min(lo, max(n_fl - 1, 0))
            has[j] = k >= 0 and n_fl > 0 and floored[at] == k
            src[j] = n_held + at
        n_use += has[j]
    use = np.empty(n_use, dtype=np.int64)
    out = np.empty(n_use, dtype=np.int64)
    left = np.empty(n - n_use, dtype=np.int64)
    a = 0
    b = 0
    for j in range(n):
        if has[j]:
            use[a] = j
            out[a] = src[j]
            a += 1
        else:
            left[b] = j
            b += 1
    return use, out, left

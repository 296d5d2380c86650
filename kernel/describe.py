"""The binding joint scenario of each account in words (:mod:`pmrisk.engine.correlated`), as
UTF-8 bytes in one kernel pass over the accounts: no per-account Python, no per-piece Arrow
joins.

An account with a joint loss reads ``<head>: <piece>, <piece>, ...``, one piece per
underlying of its group (in the group's order): ``<underlying> <move> <vol words>``.

* head: ``joint shell k/B`` (``joint extreme`` for a tail) followed, for a joint scenario,
  by ``<kind> direction <j>`` (none for the no-move scenario) or, for one of the account's
  own delta directions ``j``, by ``delta direction -`` / ``+`` (by parity; one pair per
  shell, then the tail);
* move: ``"%+.2f%%" % (m * 100.0)``.  Moves whose hundredths of a percent are within 1e-6
  of a rounding tie (or not finite, or beyond 1e9 hundredths) are formatted by Python
  (their distinct values, :func:`odd_moves`); the others from their rounded hundredths,
  which is the same text;
* vol words: ``vol <state>`` when the account's units on that underlying agree
  (``vol same`` without one), else ``(<unit> vol <state>, ...)`` in unit order.

An account without a joint loss reads ``none``.  Every string (:data:`WORDS`, then the
underlying names, unit type names, direction kinds, vol states and the odd moves' words)
comes in one byte blob with offsets, the "lexicon" (:func:`lexicon`).  One function, no
helpers taking arrays: numba would pass (and reference-count) every array on every call.
The twin is ``tests/oracles.py``'s ``scenario_words``: the words built account by
account in Python, with ``"%+.2f%%"`` applied to every move.
"""

import numpy as np

from ._config import njit
from .joint import BIND_JOINT

# the lexicon's first words
WORDS = ("joint shell ", "joint extreme", " direction ", " delta direction ", "vol ", " vol ",
         ", ", "none")
_SHELL, _EXTREME, _DIRECTION, _DELTA, _VOL, _VOL_IN, _COMMA, _NONE = range(len(WORDS))


def lexicon(*lists):
    """``(blob, offsets, firsts)``: :data:`WORDS` and the words of each of ``lists`` as one
    UTF-8 byte blob (word w: ``blob[offsets[w]:offsets[w + 1]]``) and each list's first
    word's index.

    >>> from pmrisk.kernel.describe import lexicon
    >>> blob, off, firsts = lexicon(["BTC", "ETH"], ["up"])
    >>> bytes(blob[off[firsts[0] + 1]:off[firsts[0] + 2]]).decode(), firsts
    ('ETH', [8, 10])
    """
    words = [w.encode() for w in WORDS]
    firsts = []
    for lst in lists:
        firsts.append(len(words))
        words += [w.encode() for w in lst]
    offsets = np.zeros(len(words) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(w) for w in words])
    offsets.setflags(write=False)           # read-only, as the blob (and kernel_args' arrays)
    return np.frombuffer(b"".join(words), dtype=np.uint8), offsets, firsts


@njit(inline="always")
def _hundredths(x):
    """``(safe, n)``: ``n = rint(x * 100)`` for a move in percent ``x``, and whether
    ``"%+.2f%%" % x`` is the text of ``n`` hundredths."""
    y = x * 100.0
    n = np.rint(y)
    return (abs(y - n) < 0.5 - 1e-6) and (abs(y) < 1e9), n


@njit(inline="always")
def _digits(v):
    """How many decimal digits ``v`` (>= 0) has."""
    n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


@njit
def odd_moves(acc, worst, acc_group, bind_kind, bind_index, bind_shock, g_d, j_shock):
    """The distinct moves in percent (``m * 100.0``, as int64 bits, sorted) of the accounts
    ``acc`` with a joint loss whose text :func:`scenario_words` cannot write from their
    hundredths; usually none."""
    bits = np.empty(0, dtype=np.int64)
    n = 0
    scratch = np.empty(1)
    scratch_bits = scratch.view(np.int64)
    for i in range(acc.shape[0]):
        a = acc[i]
        if not worst[a] > 0.0:
            continue
        g, k = acc_group[a], bind_index[a]
        joint = bind_kind[a] == BIND_JOINT
        for c in range(g_d[g]):
            x = (j_shock[k, c] if joint else bind_shock[a, c]) * 100.0
            safe, _ = _hundredths(x)
            if not safe:
                if n == bits.shape[0]:
                    grown = np.empty(2 * n + 4, dtype=np.int64)
                    grown[:n] = bits[:n]
                    bits = grown
                scratch[0] = x
                bits[n] = scratch_bits[0]
                n += 1
    return np.unique(bits[:n])


@njit
def scenario_words(acc, worst, acc_group, bind_kind, bind_index, bind_shock, g_j0, g_d, g_rows,
                   g_col, g_buckets, j_shock, j_meta, ua_start, active, unit_row, unit_vol,
                   utype, vol_same, lex, lex_off, und0, type0, kind0, vol0, odd0, odd_bits):
    """The words of the binding scenario of each account of ``acc`` (see the module
    docstring), as ``(offsets, data, complete)``: account ``acc[i]``'s UTF-8 bytes are
    ``data[offsets[i]:offsets[i + 1]]`` (an Arrow large_string's buffers); ``complete`` is
    False when a move needed a word of :func:`odd_moves` not given (then call again with
    them).

    Per account: ``worst`` (> 0: a joint loss), ``acc_group``, ``bind_kind`` and
    ``bind_index`` (the binding joint row, global over the groups, or delta direction),
    ``bind_shock`` (the delta direction's move per group column).  Per group: ``g_j0`` (first
    joint row; one more entry at the end), ``g_d`` (columns), ``g_rows`` (the columns'
    underlying rows), ``g_col`` (per underlying row its column, -1 outside), ``g_buckets``.
    Per joint row: ``j_shock`` (move per column) and ``j_meta`` (shell, direction, kind).
    Per unit: ``ua_start`` (per account, CSR), ``active``, ``unit_row``, ``unit_vol``,
    ``utype``.  ``lex``/``lex_off``: the lexicon (:func:`lexicon`), the underlying names from
    word ``und0``, the unit type names from ``type0``, the direction kinds from ``kind0``, the
    vol states from ``vol0`` and the words of :func:`odd_moves`' ``odd_bits`` from ``odd0``.

    Examples
    --------
    >>> import numpy as np
    >>> from pmrisk.kernel.describe import lexicon, scenario_words
    >>> lex, off, firsts = lexicon(["BTC"], ["BTC/BTC", "BTC/USDT"], ["axis", "", "", "quasi"],
    ...                            ["up", "same", "down", "factor"], [])
    >>> i64 = lambda *v: np.array(v, dtype=np.int64)
    >>> off, data, complete = scenario_words(
    ...     i64(0, 1), np.array([5.0, 0.0]), i64(0, 0), i64(0, 0), i64(2, 0),
    ...     np.zeros((2, 1)), i64(0, 3), i64(1), i64([0]), i64([0]), i64(1),
    ...     np.array([[0.0], [-0.05], [0.1]]), np.array([[0, -1, 0], [1, 0, 3], [1, 1, 3]]),
    ...     i64(0, 2, 2), np.array([True, True]), i64(0, 0), i64(0, 2), i64(0, 1), 1,
    ...     lex, off, *firsts, np.zeros(0, np.int64))
    >>> complete, bytes(data[off[0]:off[1]]).decode()
    (True, 'joint shell 1/1 quasi direction 1: BTC +10.00% (BTC/BTC vol up, BTC/USDT vol down)')
    >>> bytes(data[off[1]:off[2]]).decode()
    'none'
    """
    n = acc.shape[0]
    longest = 0
    for w in range(lex_off.shape[0] - 1):
        longest = max(longest, lex_off[w + 1] - lex_off[w])
    # an upper bound of the bytes: per account its head, then per column its name, move and
    # vol words (at most every unit of the account listed)
    size = 0
    for i in range(n):
        a = acc[i]
        if worst[a] > 0.0:
            size += 128 + longest + g_d[acc_group[a]] * (
                32 + 3 * longest + (ua_start[a + 1] - ua_start[a]) * (8 + 2 * longest))
        else:
            size += 4
    buf = np.empty(size, dtype=np.uint8)
    offsets = np.zeros(n + 1, dtype=np.int64)
    scratch = np.empty(1)
    scratch_bits = scratch.view(np.int64)
    complete = True
    pos = 0
    for i in range(n):
        a = acc[i]
        offsets[i] = pos
        if not worst[a] > 0.0:
            for j in range(lex_off[_NONE], lex_off[_NONE + 1]):
                buf[pos] = lex[j]
                pos += 1
            continue
        g, k = acc_group[a], bind_index[a]
        joint = bind_kind[a] == BIND_JOINT
        # the head
        if joint:
            lo, hi = 0, g_j0.shape[0]           # searchsorted(g_j0, k, "right") - 1
            while lo < hi:
                mid = (lo + hi) >> 1
                if g_j0[mid] <= k:
                    lo = mid + 1
                else:
                    hi = mid
            buckets = g_buckets[lo - 1]
            shell, direction = j_meta[k, 0], j_meta[k, 1]
        else:
            buckets = g_buckets[g]
            shell = k // 2 + 1 if k < 2 * buckets else -1
            direction = -1
        w = _SHELL if shell >= 0 else _EXTREME
        for j in range(lex_off[w], lex_off[w + 1]):
            buf[pos] = lex[j]
            pos += 1
        if shell >= 0:
            v = shell
            nd = _digits(v)
            for q in range(nd - 1, -1, -1):
                buf[pos + q] = 48 + v % 10
                v //= 10
            pos += nd
            buf[pos] = 47                                       # '/'
            pos += 1
            v = buckets
            nd = _digits(v)
            for q in range(nd - 1, -1, -1):
                buf[pos + q] = 48 + v % 10
                v //= 10
            pos += nd
        if joint and direction >= 0:
            buf[pos] = 32
            pos += 1
            w = kind0 + j_meta[k, 2]
            for j in range(lex_off[w], lex_off[w + 1]):
                buf[pos] = lex[j]
                pos += 1
            for j in range(lex_off[_DIRECTION], lex_off[_DIRECTION + 1]):
                buf[pos] = lex[j]
                pos += 1
            v = direction
            nd = _digits(v)
            for q in range(nd - 1, -1, -1):
                buf[pos + q] = 48 + v % 10
                v //= 10
            pos += nd
        elif not joint:
            for j in range(lex_off[_DELTA], lex_off[_DELTA + 1]):
                buf[pos] = lex[j]
                pos += 1
            buf[pos] = 45 if k % 2 == 0 else 43                 # '-' / '+'
            pos += 1
        buf[pos] = 58                                           # ':'
        pos += 1
        # one piece per column of the group: "<underlying> <move> <vol words>"
        lo_u, hi_u = ua_start[a], ua_start[a + 1]
        for c in range(g_d[g]):
            if c:
                buf[pos] = 44                                   # ','
                pos += 1
            buf[pos] = 32
            pos += 1
            w = und0 + g_rows[g, c]
            for j in range(lex_off[w], lex_off[w + 1]):
                buf[pos] = lex[j]
                pos += 1
            buf[pos] = 32
            pos += 1
            x = (j_shock[k, c] if joint else bind_shock[a, c]) * 100.0
            safe, h = _hundredths(x)
            if safe:
                buf[pos] = 45 if h < 0.0 or (h == 0.0 and np.signbit(h)) else 43
                pos += 1
                m = np.int64(abs(h))
                v = m // 100
                nd = _digits(v)
                for q in range(nd - 1, -1, -1):
                    buf[pos + q] = 48 + v % 10
                    v //= 10
                pos += nd
                buf[pos] = 46                                   # '.'
                buf[pos + 1] = 48 + (m % 100) // 10
                buf[pos + 2] = 48 + m % 10
                buf[pos + 3] = 37                               # '%'
                pos += 4
            else:
                scratch[0] = x
                lo, hi = 0, odd_bits.shape[0]               # searchsorted(odd_bits, bits)
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if odd_bits[mid] < scratch_bits[0]:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo < odd_bits.shape[0] and odd_bits[lo] == scratch_bits[0]:
                    w = odd0 + lo
                    for j in range(lex_off[w], lex_off[w + 1]):
                        buf[pos] = lex[j]
                        pos += 1
                else:
                    complete = False
            buf[pos] = 32
            pos += 1
            first = -1
            mixed = False
            for u in range(lo_u, hi_u):
                if active[u] and g_col[g, unit_row[u]] == c:
                    if first < 0:
                        first = unit_vol[u]
                    elif unit_vol[u] != first:
                        mixed = True
            if not mixed:
                for j in range(lex_off[_VOL], lex_off[_VOL + 1]):
                    buf[pos] = lex[j]
                    pos += 1
                w = vol0 + (vol_same if first < 0 else first)
                for j in range(lex_off[w], lex_off[w + 1]):
                    buf[pos] = lex[j]
                    pos += 1
                continue
            buf[pos] = 40                                       # '('
            pos += 1
            listed = False
            for u in range(lo_u, hi_u):
                if active[u] and g_col[g, unit_row[u]] == c:
                    if listed:
                        for j in range(lex_off[_COMMA], lex_off[_COMMA + 1]):
                            buf[pos] = lex[j]
                            pos += 1
                    listed = True
                    w = type0 + utype[u]
                    for j in range(lex_off[w], lex_off[w + 1]):
                        buf[pos] = lex[j]
                        pos += 1
                    for j in range(lex_off[_VOL_IN], lex_off[_VOL_IN + 1]):
                        buf[pos] = lex[j]
                        pos += 1
                    w = vol0 + unit_vol[u]
                    for j in range(lex_off[w], lex_off[w + 1]):
                        buf[pos] = lex[j]
                        pos += 1
            buf[pos] = 41                                       # ')'
            pos += 1
    offsets[n] = pos
    return offsets, buf[:pos], complete

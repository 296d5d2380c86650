"""Key checks of input validation in one pass over the rows (no sort, no hash table).

``duplicated_in_groups(group, key, n_key)``: which rows repeat an earlier row's ``(group,
key)`` pair, for ``group`` non-decreasing (rows of one group contiguous: the positions of an
account, the rows of a snapshot) and ``0 <= key < n_key``.  A stamp per key remembers the last
group it was seen in, so the pass is O(rows) with an array of ``n_key`` int64 (the symbols of
the venue), not O(rows log rows) like a sort of the pairs; groups must be >= 0.  Every
occurrence but the first is flagged, as ``numpy.unique(pairs, return_index=True)`` would say.
"""

import numpy as np

from ._config import njit


@njit
def duplicated_in_groups(group, key, n_key):
    """``(mask, ok)``: the rows that repeat an earlier ``(group, key)``, and ``ok`` False
    (the mask then unfinished) when ``group`` decreases somewhere: the caller sorts instead."""
    n = key.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    stamp = np.full(n_key, -1, dtype=np.int64)
    for i in range(n):
        k = key[i]
        g = group[i]
        if i and g < group[i - 1]:
            return out, False
        if stamp[k] == g:
            out[i] = True
        else:
            stamp[k] = g
    return out, True


@njit
def value_range(values):
    """``(lo, hi, n_nan)`` of a float64 column in one pass: the least and greatest value
    that is not NaN (``inf`` and ``-inf`` when there is none) and the number of NaNs (the
    checks of a numeric input column: nulls read as NaN, bounds on the rest)."""
    lo = np.inf
    hi = -np.inf
    n_nan = 0
    for i in range(values.shape[0]):
        v = values[i]
        if v != v:
            n_nan += 1
        else:
            lo = min(lo, v)
            hi = max(hi, v)
    return lo, hi, n_nan


@njit
def match_strings(offsets, data, null, allowed_offsets, allowed_data):
    """Index in ``allowed`` of each string of an Arrow string array (``offsets``, ``data``:
    its buffers, offsets already sliced to the array), -1 where ``null`` or not allowed;
    ``allowed`` given the same way (a handful of short names: kinds, settlements).  A row
    equal to the row before takes its answer."""
    n = offsets.shape[0] - 1
    n_allowed = allowed_offsets.shape[0] - 1
    out = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if null[i]:
            continue
        a = np.int64(offsets[i])
        length = np.int64(offsets[i + 1]) - a
        if i > 0 and not null[i - 1]:      # a run: the row before says
            p = np.int64(offsets[i - 1])
            if a - p == length:
                q = 0
                while q < length and data[a + q] == data[p + q]:
                    q += 1
                if q == length:
                    out[i] = out[i - 1]
                    continue
        for j in range(n_allowed):
            b = np.int64(allowed_offsets[j])
            if np.int64(allowed_offsets[j + 1]) - b == length:
                q = 0
                while q < length and data[a + q] == allowed_data[b + q]:
                    q += 1
                if q == length:
                    out[i] = j
                    break
    return out


@njit
def sorted_runs(ns):
    """``(values, run, ok)`` of an int64 column in non-decreasing order: the distinct values,
    the index in ``values`` of each row; ``ok`` False (the rest unfinished) when the column
    decreases somewhere (the caller sorts instead)."""
    n = ns.shape[0]
    run = np.empty(n, dtype=np.int64)
    values = np.empty(n, dtype=np.int64)
    k = -1
    for i in range(n):
        v = ns[i]
        if i == 0 or v != ns[i - 1]:
            if i and v < ns[i - 1]:
                return values[:0], run, False
            k += 1
            values[k] = v
        run[i] = k
    return values[:k + 1].copy(), run, True


@njit
def pairs_in_order(group, name, n_names):
    """``(code, pair_group, pair_name, ok)``: number the ``(group, name)`` pairs of rows whose
    ``group`` (a snapshot) is non-decreasing, by group and then by first appearance within it
    (the accounts of a time history: snapshot, then the order the rows give); ``code`` is the
    pair of each row.  ``ok`` False (the rest unfinished) when ``group`` decreases."""
    n = name.shape[0]
    code = np.empty(n, dtype=np.int64)
    pair_group = np.empty(n, dtype=np.int64)
    pair_name = np.empty(n, dtype=np.int64)
    stamp = np.full(n_names, -1, dtype=np.int64)
    last = np.empty(n_names, dtype=np.int64)
    k = 0
    for i in range(n):
        g = group[i]
        if i and g < group[i - 1]:
            return code, pair_group[:0], pair_name[:0], False
        m = name[i]
        if stamp[m] == g:
            code[i] = last[m]
        else:
            stamp[m] = g
            last[m] = k
            pair_group[k] = g
            pair_name[k] = m
            code[i] = k
            k += 1
    return code, pair_group[:k].copy(), pair_name[:k].copy(), True


@njit
def dense_unique(keys, hi):
    """``numpy.unique(keys, return_index=True, return_inverse=True)`` for keys in
    ``0 <= key < hi`` with ``hi`` not much above the number of keys, by a table of ``hi``
    slots instead of a sort: ``(uniq, inverse, first)``."""
    n = keys.shape[0]
    first_at = np.full(hi, -1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        first_at[keys[i]] = i
    rank = np.empty(hi, dtype=np.int64)
    m = 0
    for v in range(hi):
        if first_at[v] >= 0:
            rank[v] = m
            m += 1
    uniq = np.empty(m, dtype=np.int64)
    first = np.empty(m, dtype=np.int64)
    for v in range(hi):
        if first_at[v] >= 0:
            uniq[rank[v]] = v
            first[rank[v]] = first_at[v]
    inverse = np.empty(n, dtype=np.int64)
    for i in range(n):
        inverse[i] = rank[keys[i]]
    return uniq, inverse, first


@njit(inline="always")
def _word(data, j):
    """The eight bytes ``data[j:j + 8]`` as one little-endian uint64 (unsigned indices: no
    negative-index check between the loads, which the compiler then merges)."""
    j = np.uint64(j)
    return (np.uint64(data[j]) | (np.uint64(data[j + np.uint64(1)]) << np.uint64(8))
            | (np.uint64(data[j + np.uint64(2)]) << np.uint64(16))
            | (np.uint64(data[j + np.uint64(3)]) << np.uint64(24))
            | (np.uint64(data[j + np.uint64(4)]) << np.uint64(32))
            | (np.uint64(data[j + np.uint64(5)]) << np.uint64(40))
            | (np.uint64(data[j + np.uint64(6)]) << np.uint64(48))
            | (np.uint64(data[j + np.uint64(7)]) << np.uint64(56)))


# The string helpers below take arrays and loop; called once per row, they are compiled
# without reference counting (``_nrt=False``: they allocate nothing) and left to LLVM to
# inline.  Inlined by numba instead (``inline="always"``), each call would incref and decref
# its arrays, which the reference-count pruning cannot remove around a loop: ~20 ns a row,
# ten times the hash itself.
@njit(_nrt=False)
def str_hash(offsets, data, i):
    """A 64-bit hash of string ``i``'s bytes, eight bytes at a time (each word folded in by a
    multiply, the bytes of a word gathered by shifts the CPU overlaps), with the length and a
    final mix."""
    a = np.int64(offsets[i])
    b = np.int64(offsets[i + 1])
    mul = np.uint64(0x9E3779B97F4A7C15)
    h = np.uint64(0xCBF29CE484222325) ^ np.uint64(b - a)
    j = a
    while j + 8 <= b:
        w = _word(data, j)
        h = (h ^ w) * mul
        h ^= h >> np.uint64(29)
        j += 8
    if j < b:
        w = np.uint64(0)
        s = np.uint64(0)
        while j < b:
            w |= np.uint64(data[np.uint64(j)]) << s
            s += np.uint64(8)
            j += 1
        h = (h ^ w) * mul
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@njit(_nrt=False)
def same_str(offsets, data, i, other_offsets, other_data, r):
    """String ``i`` of one array has the bytes of string ``r`` of another (or the same):
    eight bytes at a time, then the rest."""
    a = np.uint64(offsets[i])
    length = np.uint64(offsets[i + 1]) - a
    b = np.uint64(other_offsets[r])
    if np.uint64(other_offsets[r + 1]) - b != length:
        return False
    q = np.uint64(0)
    while q + np.uint64(8) <= length:
        if _word(data, a + q) != _word(other_data, b + q):
            return False
        q += np.uint64(8)
    while q < length:
        if data[a + q] != other_data[b + q]:
            return False
        q += np.uint64(1)
    return True


@njit
def _grown(values, size):
    """``values`` copied into an array of ``size`` (>= its length)."""
    out = np.empty(size, dtype=values.dtype)
    out[:values.shape[0]] = values
    return out


@njit
def str_index(offsets, data, period):
    """``(codes, first, code_hash, slots, bits)``: dense codes of the strings (no nulls) in
    order of first appearance, the first row and the hash of each code, and the hash table:
    ``slots`` (``2**bits`` of them, -1 empty, else a code) probed linearly from a hash's top
    ``bits`` bits.  The table starts at twice the rows (at most 65,536 slots) and doubles
    before a block of rows could fill it past half.  A row equal to the row before, or
    (``period`` > 0) to the row ``period`` rows before (a history's snapshots of the same
    rows), is not hashed."""
    n = offsets.shape[0] - 1
    bits = 4
    while (1 << bits) < 2 * n and bits < 16:
        bits += 1
    slots = np.full(1 << bits, -1, dtype=np.int64)
    codes = np.empty(n, dtype=np.int64)
    size = min(n, 1024)             # the codes' first rows and hashes, grown as needed
    first = np.empty(size, dtype=np.int64)
    code_hash = np.empty(size, dtype=np.uint64)
    # by blocks of rows: first the hashes, independent of each other (the loop pipelines),
    # then the probes.  The arrays grow between blocks only: reassigning an array inside
    # the row loop would cost every row a reload of it
    block = 1024
    hashes = np.empty(min(n, block), dtype=np.uint64)
    same = np.empty(min(n, block), dtype=np.int8)   # 1: as the row before, 2: a period before
    k = 0
    for start in range(0, n, block):
        end = min(n, start + block)
        if k + (end - start) > size:
            size = max(2 * size, k + (end - start))
            first = _grown(first, size)
            code_hash = _grown(code_hash, size)
        if 2 * (k + (end - start)) > 1 << bits:
            while 2 * (k + (end - start)) > 1 << bits:
                bits += 1
            slots = _rehashed(code_hash, k, bits)
        k = _code_block(offsets, data, period, start, end, hashes, same, codes, first,
                        code_hash, slots, bits, k)
    return codes, first[:k].copy(), code_hash[:k].copy(), slots, bits


@njit
def _rehashed(code_hash, k, bits):
    """A table of ``2**bits`` slots holding the codes ``0..k-1`` of hashes ``code_hash``."""
    mask = (1 << bits) - 1
    slots = np.full(1 << bits, -1, dtype=np.int64)
    for c in range(k):
        s = np.int64(code_hash[c] >> np.uint64(64 - bits))
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = c
    return slots


@njit
def _code_block(offsets, data, period, start, end, hashes, same, codes, first, code_hash,
                slots, bits, k):
    """:func:`str_index` on rows ``start..end-1`` (the table has room for all of them);
    returns the number of codes after them."""
    mask = (1 << bits) - 1
    for i in range(start, end):
        j = i - start
        same[j] = 0
        if i > 0 and same_str(offsets, data, i, offsets, data, i - 1):
            same[j] = 1
        elif period > 0 and i >= period and same_str(offsets, data, i, offsets, data,
                                                     i - period):
            same[j] = 2
        else:
            hashes[j] = str_hash(offsets, data, i)
    for i in range(start, end):
        j = i - start
        if same[j] == 1:
            codes[i] = codes[i - 1]
            continue
        if same[j] == 2:
            codes[i] = codes[i - period]
            continue
        h = hashes[j]
        s = np.int64(h >> np.uint64(64 - bits))
        while True:
            c = slots[s]
            if c < 0:
                slots[s] = k
                first[k] = i
                code_hash[k] = h
                codes[i] = k
                k += 1
                break
            if code_hash[c] == h and same_str(offsets, data, i, offsets, data, first[c]):
                codes[i] = c
                break
            s = (s + 1) & mask
    return k


@njit
def str_codes(offsets, data):
    """``(codes, first)``: dense codes of the strings of an Arrow string array (``offsets``,
    ``data`` as in :func:`match_strings`; no nulls) in order of first appearance, and the row
    of each code's first appearance: :func:`str_index`'s first two outputs."""
    codes, first, _hashes, _slots, _bits = str_index(offsets, data, 0)
    return codes, first

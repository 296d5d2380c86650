"""Arrow in -> validated contiguous numpy arrays (the only place inputs are interpreted).

Small named functions in the nanoarrow style: ``as_table`` accepts anything Arrow-shaped,
``check_columns`` validates presence and types against :mod:`pmrisk.schema`, and the
``*_column`` helpers return plain arrays, raising :class:`MarginError` that names the table,
the column and the offending rows' keys.
"""

import datetime as _dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import schema
from .errors import MarginError


def as_table(obj, name):
    """A ``pyarrow.Table`` from a Table, RecordBatch, RecordBatchReader, any object with
    ``__arrow_c_stream__`` / ``__arrow_c_array__`` (pandas >= 2.2, polars, duckdb, nanoarrow),
    a dict of columns or a list of row dicts.  ``None`` stays ``None``."""
    if obj is None or isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all()
    if hasattr(obj, "__arrow_c_stream__"):
        return pa.table(obj)
    if hasattr(obj, "__arrow_c_array__"):
        return pa.Table.from_batches([pa.record_batch(obj)])
    if isinstance(obj, dict):
        return pa.table(obj)
    if isinstance(obj, list):
        return pa.Table.from_pylist(obj)
    raise MarginError(name, None, "an Arrow table, a RecordBatch or an object exposing "
                      f"__arrow_c_stream__ (pandas, polars, duckdb), got {type(obj).__name__}")


def _is_str(t):
    if pa.types.is_dictionary(t):
        return _is_str(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_num(t):
    if pa.types.is_dictionary(t):
        return False
    return pa.types.is_floating(t) or pa.types.is_integer(t)


_KIND_CHECK = {
    "str": (_is_str, "a string column (string, large_string, string_view or dictionary)"),
    "float": (_is_num, "a numeric column (float64; integers are accepted)"),
    "int": (pa.types.is_integer, "an integer column"),
    "time": (lambda t: pa.types.is_timestamp(t) or _is_str(t),
             "a timestamp column (or ISO-8601 strings), UTC"),
    "any": (lambda t: True, "anything"),
}


def check_columns(table, name, spec):
    """Presence, type and nulls of every column in ``spec`` (SPEC §11)."""
    present = set(table.column_names)
    for col, (kind, required, nullable) in spec.items():
        if col not in present:
            if required:
                raise MarginError(name, col, "this column to be present",
                                  hint=f"Columns given: {', '.join(table.column_names) or 'none'}")
            continue
        ok, what = _KIND_CHECK[kind]
        t = table.schema.field(col).type
        if pa.types.is_null(t) and nullable:
            continue                      # an all-null column (e.g. from Python None values)
        if not ok(t):
            raise MarginError(name, col, f"{what}, got {t}")
        if not nullable and table.column(col).null_count:
            bad = np.asarray(table.column(col).is_null().to_numpy(zero_copy_only=False))
            raise_rows(table, name, col, bad, "no nulls")


def row_keys(table, name, mask, limit=5):
    """Key tuples (per :data:`schema.KEYS`) of the first ``limit`` rows where ``mask``."""
    idx = np.flatnonzero(mask)[:limit]
    keys = [k for k in schema.KEYS.get(name, ()) if k in table.column_names]
    if not keys:
        return [(int(i),) for i in idx], ("row",)
    take = pa.array(idx, type=pa.int64())
    cols = []
    for k in keys:
        t = table.schema.field(k).type
        col = str_column(table, k) if _is_str(t) else table.column(k)
        vals = col.take(take)
        if pa.types.is_timestamp(t):          # times as ISO-8601 text, UTC
            ns = vals.cast(pa.timestamp("ns", tz=t.tz or "UTC")).cast(pa.int64())
            cols.append([None if v is None else iso_ns(v) for v in ns.to_pylist()])
            continue
        cols.append(vals.to_pylist())
    return [tuple(c[j] for c in cols) for j in range(len(idx))], tuple(keys)


def iso_ns(ns):
    """ns since the epoch -> '2024-06-17T08:00:00Z' (fractional seconds only when present)."""
    sec, frac = divmod(int(ns), 10**9)
    text = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def raise_rows(table, name, column, mask, expected, hint=None):
    """Raise :class:`MarginError` for the rows where ``mask`` is true."""
    rows, keys = row_keys(table, name, mask)
    raise MarginError(name, column, expected, rows=rows, keys=keys, n_bad=int(np.sum(mask)),
                      hint=hint)


def has(table, col):
    return table is not None and col in table.column_names


def str_column(table, col):
    """A column as a single-chunk ``pa.string()`` array (dictionary and view types decoded)."""
    arr = table.column(col)
    if pa.types.is_dictionary(arr.type):
        # decode through a plain-string dictionary: casting a dictionary straight to
        # string_view (polars Categorical) is not implemented in Arrow C++
        arr = arr.cast(pa.dictionary(arr.type.index_type, pa.string())).cast(pa.string())
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr.combine_chunks()


def float_column(table, name, col, *, positive=False, finite=True, nullable=False):
    """A numeric column as contiguous float64 (nulls -> NaN when ``nullable``), checked."""
    arr = table.column(col)
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    values = np.ascontiguousarray(
        arr.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    if not nullable and not valid.all():
        raise_rows(table, name, col, ~valid, "no nulls")
    if finite:
        bad = valid & ~np.isfinite(values)
        if bad.any():
            raise_rows(table, name, col, bad, "finite numbers")
    if positive:
        bad = valid & ~(values > 0.0)
        if bad.any():
            raise_rows(table, name, col, bad, "numbers > 0")
    if nullable:
        values = np.where(valid, values, np.nan)
    return values


def time_column(table, name, col):
    """A timestamp column as int64 ns since the epoch, UTC (null -> ``NAT``)."""
    arr = table.column(col)
    if pa.types.is_null(arr.type):
        return np.full(len(arr), NAT, dtype=np.int64)
    if _is_str(arr.type):
        strings = str_column(table, col)
        arr = None
        for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
            try:                        # fast path: the whole column parses one way
                arr = strings.cast(target).cast(pa.timestamp("ns", tz="UTC"))
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        if arr is None:                 # mixed forms: row by row (and name the bad rows)
            arr = pa.array([_parse_ts(s) for s in strings.to_pylist()],
                           type=pa.timestamp("ns", tz="UTC"))
        bad = np.asarray(arr.is_null().to_numpy(zero_copy_only=False)) & ~np.asarray(
            strings.is_null().to_numpy(zero_copy_only=False))
        if bad.any():
            raise_rows(table, name, col, bad, "ISO-8601 timestamps such as "
                       "'2024-06-28T08:00:00Z'")
    else:
        try:
            arr = arr.cast(pa.timestamp("ns", tz=arr.type.tz or "UTC"))
        except pa.ArrowInvalid as exc:      # outside the ns range (years 1677..2262)
            raise MarginError(name, col, "timestamps between 1677 and 2262 (nanoseconds "
                              f"since 1970 in int64), got values outside ({exc})") from None
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    ns = np.asarray(arr.cast(pa.int64()).fill_null(NAT).to_numpy(zero_copy_only=False),
                    dtype=np.int64)
    return np.where(valid, ns, NAT)


NAT = np.iinfo(np.int64).min


def _parse_ts(s):
    """ISO-8601 string -> ns since the epoch, UTC (tz-naive means UTC); None if unparseable."""
    if s is None:
        return None
    for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns"), pa.date32()):
        try:
            v = pa.scalar(s).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if pa.types.is_date(target):      # a bare date: midnight UTC
            return v.cast(pa.timestamp("ns")).value
        return v.value                    # tz-naive strings are read as UTC
    return None


def to_ns(value, what="valuation_time"):
    """A scalar timestamp (datetime, numpy datetime64, pandas Timestamp, ISO string) -> ns UTC."""
    if isinstance(value, str):
        ns = _parse_ts(value)
        if ns is None:
            raise MarginError("arguments", what, "a timestamp (datetime or ISO-8601 such as "
                              f"'2024-06-17T08:00:00Z'), got {value!r}")
        return ns
    try:
        scalar = pa.scalar(value)
        if pa.types.is_date(scalar.type):
            scalar = scalar.cast(pa.timestamp("ns"))
        scalar = scalar.cast(pa.timestamp("ns", tz=getattr(scalar.type, "tz", None) or "UTC"))
        return int(scalar.cast(pa.int64()).as_py())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as exc:
        raise MarginError("arguments", what, f"a timestamp (datetime or ISO-8601), got {value!r}"
                          f" ({exc})") from None


def codes(arr):
    """Dense int64 codes and the dictionary (``pa.string()``) of a string array, in order of
    first appearance."""
    enc = pc.dictionary_encode(arr)
    return (np.ascontiguousarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            enc.dictionary)


def lookup_many(value_set, *arrays):
    """``lookup(a, value_set)`` for several arrays with one hash pass over all of them (the
    symbols of positions, orders and market against the instruments' symbols).

    >>> import pyarrow as pa
    >>> from pmrisk._arrow import lookup_many
    >>> [x.tolist() for x in lookup_many(pa.array(["a", "b"]), pa.array(["b", "z"]),
    ...                                  pa.array(["a"]))]
    [[1, -1], [0]]
    """
    codes_all, _ = codes(pa.concat_arrays([value_set, *arrays]))
    n = len(value_set)
    row_of_code = np.full(int(codes_all.max()) + 1 if len(codes_all) else 0, -1, np.int64)
    row_of_code[codes_all[:n][::-1]] = np.arange(n - 1, -1, -1)   # first row of each value
    out, start = [], n
    for a in arrays:
        out.append(row_of_code[codes_all[start:start + len(a)]])
        start += len(a)
    return out


def lookup(values, value_set):
    """Row of each value in ``value_set`` (int64, -1 where absent)."""
    idx = pc.index_in(values, value_set=value_set)
    return np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def unique_keys(keys, return_first=False):
    """``np.unique(keys, return_inverse=True[, return_index=True])`` for non-negative int64
    keys, by a dense table instead of a sort when the keys are not much sparser than their
    count (O(n): the unit, account and instrument keys of a long backtest).

    >>> import numpy as np
    >>> from pmrisk._arrow import unique_keys
    >>> u, inv, first = unique_keys(np.array([5, 2, 5, 9]), return_first=True)
    >>> u.tolist(), inv.tolist(), first.tolist()
    ([2, 5, 9], [1, 0, 1, 2], [1, 0, 3])
    """
    keys = np.asarray(keys, dtype=np.int64)
    n = len(keys)
    hi = int(keys.max()) + 1 if n else 0
    if n == 0 or keys.min() < 0 or hi > max(8 * n, 1 << 16):
        out = np.unique(keys, return_index=True, return_inverse=True)
        uniq, first, inv = out[0], out[1], out[2].ravel()
    else:
        seen = np.zeros(hi, dtype=bool)
        seen[keys] = True
        uniq = np.flatnonzero(seen)
        slot = np.zeros(hi, dtype=np.int64)
        slot[uniq] = np.arange(len(uniq))
        inv = slot[keys]
        if return_first:
            fst = np.zeros(hi, dtype=np.int64)
            fst[keys[::-1]] = np.arange(n - 1, -1, -1)
            first = fst[uniq]
    inv = inv.astype(np.int64)
    return (uniq, inv, first) if return_first else (uniq, inv)


def sum_by(group, weights, minlength):
    """``np.bincount(group, weights, minlength)`` that is float64 even when empty."""
    return np.bincount(group, weights=weights, minlength=minlength).astype(np.float64,
                                                                         copy=False)


def duplicated(*keys):
    """Boolean mask of rows whose key tuple appeared before (keys: int64 code arrays)."""
    if len(keys[0]) == 0:
        return np.zeros(0, dtype=bool)
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for k in keys:                      # dense non-negative codes: mix into one int64 key
        k = np.asarray(k, dtype=np.int64)
        combined = combined * (int(k.max()) + 1) + k
    _, inverse, first = unique_keys(combined, return_first=True)
    return first[inverse] != np.arange(len(keys[0]))


def kernel_args(*args):
    """Arrays as the kernels always see them: C-contiguous, int64 or float64, **read-only**
    views (no copy when already so).  Arrow hands out read-only views and numba compiles a
    separate specialisation per writeability, so one flag everywhere means one compiled
    signature per kernel whatever the input's chunking or filtering.  Scalars pass through."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            dtype = np.int64 if a.dtype.kind in "iub" else np.float64
            a = np.ascontiguousarray(a, dtype=dtype).view()
            a.flags.writeable = False
        out.append(a)
    return tuple(out)

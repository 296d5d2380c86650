"""Arrow in -> validated contiguous numpy arrays (the only place inputs are interpreted).

Small named functions in the nanoarrow style: ``as_table`` accepts anything Arrow-shaped,
``check_columns`` validates presence and types against :mod:`pmrisk.io.schema`, and the
``*_column`` helpers return plain arrays, raising :class:`MarginError` that names the table,
the column and the offending rows' keys.
"""

import functools
import time as _time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pmrisk.kernel.keys import (dense_unique, duplicated_in_groups, match_strings,
                                str_codes, value_range)

from . import schema
from ..errors import MarginError, iso_ns


def as_table(obj, name):
    """A ``pyarrow.Table`` from a Table, RecordBatch, RecordBatchReader, any object with
    ``__arrow_c_stream__`` / ``__arrow_c_array__`` (pandas >= 2.2, polars, duckdb, nanoarrow),
    a dict of columns or a list of row dicts.  ``None`` stays ``None``.

    The one way in for every input table: column names must be unique, and every string
    layout (``large_string``, ``string_view``, dictionary-encoded) becomes plain ``string``
    here, so that no later step meets a layout some Arrow kernel lacks.  A dict or row list
    that Arrow cannot make a table of is a :class:`MarginError` naming the column.

    >>> from pmrisk.io.arrow import as_table
    >>> as_table({"a": ["x"], "b": [1]}, "t").schema.names
    ['a', 'b']
    >>> as_table({"a": ["x", "y"], "b": [1]}, "t")
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: t.b: expected a column as long as the others (2 rows), got 1 rows
    """
    if obj is None:
        return None
    if isinstance(obj, pa.Table):
        table = obj
    elif isinstance(obj, pa.RecordBatch):
        table = pa.Table.from_batches([obj])
    elif isinstance(obj, pa.RecordBatchReader):
        table = obj.read_all()
    elif hasattr(obj, "__arrow_c_stream__"):
        table = pa.table(obj)
    elif hasattr(obj, "__arrow_c_array__"):
        table = pa.Table.from_batches([pa.record_batch(obj)])
    elif isinstance(obj, dict):
        table = _from_columns(obj, name)
    elif isinstance(obj, list):
        table = _from_rows(obj, name)
    else:
        raise MarginError(name, None, "an Arrow table, a RecordBatch or an object exposing "
                          f"__arrow_c_stream__ (pandas, polars, duckdb), got "
                          f"{type(obj).__name__}")
    table_schema = table.schema
    seen = _PLAIN_SCHEMAS.get(name)
    if seen is not None and table_schema.equals(seen):
        return table                    # the layout of the last table read as `name`
    names = table_schema.names
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise MarginError(name, dup[0], "unique column names, got "
                          f"{', '.join(map(repr, dup))} more than once")
    plain = _plain_strings(table)
    if plain is table:
        _PLAIN_SCHEMAS[name] = table_schema
    return plain


# per table name, the last schema as_table / check_columns found right: the next table of
# that layout (a margin call's inputs again, a feed's batches) skips the type checks
_PLAIN_SCHEMAS = {}
_CHECKED_SCHEMAS = {}


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
                 OverflowError, ValueError)


def _from_columns(columns, name):
    """``pa.table(dict)``; columns of unequal length or of values Arrow cannot type are a
    :class:`MarginError` naming the column."""
    try:
        return pa.table(columns)
    except _ARROW_ERRORS as exc:
        cause = exc
    arrays = {}
    for col, values in columns.items():
        try:
            arrays[str(col)] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) \
                else pa.array(values)
        except _ARROW_ERRORS as exc:
            raise MarginError(name, str(col), f"values of one type ({exc})") from None
    lengths = [len(a) for a in arrays.values()]
    if lengths and len(set(lengths)) > 1:
        first = lengths[0]
        col = next(c for c, a in arrays.items() if len(a) != first)
        raise MarginError(name, col, f"a column as long as the others ({first} rows), got "
                          f"{len(arrays[col])} rows")
    raise MarginError(name, None, f"a table of columns ({cause})")


def _from_rows(rows, name):
    """``pa.Table.from_pylist``; a row that is not a dict, or a column whose values have no
    one type, is a :class:`MarginError` naming the column and the row."""
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise MarginError(name, None, "a list of row dicts", rows=[(i,) for i in bad[:5]],
                          keys=("row",), n_bad=len(bad))
    try:
        return pa.Table.from_pylist(rows)
    except _ARROW_ERRORS as exc:
        cause = exc
    cols = list(dict.fromkeys(k for r in rows for k in r))
    for col in cols:
        values = [r.get(col) for r in rows]
        try:
            pa.array(values)
        except _ARROW_ERRORS as exc:
            kinds = [type(v).__name__ for v in values if v is not None]
            first = kinds[0] if kinds else None
            where = [(i,) for i, v in enumerate(values)
                     if v is not None and type(v).__name__ != first][:5]
            raise MarginError(name, str(col), f"values of one type, got {sorted(set(kinds))} "
                              f"({exc})", rows=where, keys=("row",)) from None
    raise MarginError(name, None, f"a list of row dicts ({cause})")


def _plain_strings(table):
    """Every string-like column (``large_string``, ``string_view``, dictionary of strings)
    as plain ``string``; other columns untouched (no copy when there is nothing to do)."""
    for i, field in enumerate(table.schema):
        t = field.type
        if is_string_type(t) and not pa.types.is_string(t):
            arr = table.column(i)
            if pa.types.is_dictionary(t):
                # decode through a plain-string dictionary: casting a dictionary straight to
                # string (from string_view values: polars Categorical) is not implemented
                arr = arr.cast(pa.dictionary(t.index_type, pa.string()))
            table = table.set_column(i, pa.field(field.name, pa.string(), field.nullable),
                                     arr.cast(pa.string()))
    return table


def is_string_type(t):
    if pa.types.is_dictionary(t):
        return is_string_type(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_num(t):
    if pa.types.is_dictionary(t):
        return False
    return pa.types.is_floating(t) or pa.types.is_integer(t)


_KIND_CHECK = {
    "str": (is_string_type, "a string column (string, large_string, string_view or dictionary)"),
    "float": (_is_num, "a numeric column (float64; integers are accepted)"),
    "int": (pa.types.is_integer, "an integer column"),
    "time": (lambda t: pa.types.is_timestamp(t) or is_string_type(t),
             "a timestamp column (or ISO-8601 strings), UTC"),
    "any": (lambda t: True, "anything"),
}


def check_columns(table, name, spec):
    """Presence, type and nulls of every column in ``spec``."""
    schema = table.schema
    seen = _CHECKED_SCHEMAS.get((name, id(spec)))
    if seen is not None and seen[0] is spec and schema.equals(seen[1]):
        for col in seen[2]:             # the types were checked on this layout: nulls only
            if table.column(col).null_count:
                bad = np.asarray(table.column(col).is_null().to_numpy(zero_copy_only=False))
                raise_rows(table, name, col, bad, "no nulls")
        return
    _check_columns(table, name, spec, schema)
    no_nulls = [col for col, (kind, required, nullable) in spec.items()
                if col in schema.names and not nullable]
    _CHECKED_SCHEMAS[(name, id(spec))] = (spec, schema, no_nulls)


def _check_columns(table, name, spec, schema):
    types = dict(zip(schema.names, schema.types))
    for col, (kind, required, nullable) in spec.items():
        if col not in types:
            if required:
                raise MarginError(name, col, "this column to be present",
                                  hint=f"Columns given: {', '.join(table.column_names) or 'none'}")
            continue
        ok, what = _KIND_CHECK[kind]
        t = types[col]
        if pa.types.is_null(t) and nullable:
            continue                      # an all-null column (e.g. from Python None values)
        if not ok(t):
            hint = ("Integers have no unit: convert them, e.g. pandas.to_datetime(values, "
                    "unit='s', utc=True)" if kind == "time" and pa.types.is_integer(t) else None)
            raise MarginError(name, col, f"{what}, got {t}", hint=hint)
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
        col = str_column(table, k) if is_string_type(t) else table.column(k)
        vals = col.take(take)
        if pa.types.is_timestamp(t):          # times as ISO-8601 text, UTC
            ns = vals.cast(pa.timestamp("ns", tz=t.tz or "UTC")).cast(pa.int64())
            cols.append([None if v is None else iso_ns(v) for v in ns.to_pylist()])
            continue
        cols.append(vals.to_pylist())
    return [tuple(c[j] for c in cols) for j in range(len(idx))], tuple(keys)


def raise_rows(table, name, column, mask, expected, hint=None):
    """Raise :class:`MarginError` for the rows where ``mask`` is true."""
    rows, keys = row_keys(table, name, mask)
    raise MarginError(name, column, expected, rows=rows, keys=keys, n_bad=int(np.sum(mask)),
                      hint=hint)


def has(table, col):
    return table is not None and bool(table.schema.get_all_field_indices(col))


def str_column(table, col):
    """A column as a single-chunk ``pa.string()`` array (dictionary and view types decoded)."""
    arr = table.column(col)
    if arr.num_chunks == 1 and arr.type == pa.string():
        return arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        # decode through a plain-string dictionary: casting a dictionary straight to
        # string_view (polars Categorical) is not implemented in Arrow C++
        arr = arr.cast(pa.dictionary(arr.type.index_type, pa.string())).cast(pa.string())
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr.combine_chunks()


MAX_ABS = 1e15        # |number| in any input column: beyond it a value is a mistake, and
MIN_POSITIVE = 1e-12  # a column of numbers > 0 holds none below it (1 / price, price ratios):
# inside both bounds no product or quotient of the inputs nears float64's range (1.8e308)


def float_column(table, name, col, *, positive=False, finite=True, nullable=False):
    """A numeric column as contiguous float64 (nulls -> NaN when ``nullable``), checked:
    finite, of magnitude <= :data:`MAX_ABS` and, with ``positive``, >= :data:`MIN_POSITIVE`
    (integers of any size are read, then checked like floats).

    Fast path: a column of finite numbers inside the bounds (the usual case) is checked by two
    reductions; anything else takes the row-by-row checks below, which name the rows."""
    arr = table.column(col)
    if finite and arr.num_chunks == 1 and _is_num(arr.type):
        fast = _float_fast(arr.chunk(0), positive, nullable)
        if fast is not None:
            return fast
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    # unsafe: an integer above 2**53 rounds to the nearest float (then fails the bound)
    values = np.ascontiguousarray(arr.cast(pa.float64(), safe=False).to_numpy(
        zero_copy_only=False), dtype=np.float64)
    if not nullable and not valid.all():
        raise_rows(table, name, col, ~valid, "no nulls")
    if finite:
        bad = valid & ~np.isfinite(values)
        if bad.any():
            raise_rows(table, name, col, bad, "finite numbers")
        bad = valid & (np.abs(values) > MAX_ABS)
        if bad.any():
            raise_rows(table, name, col, bad, f"numbers of magnitude <= {MAX_ABS:g}")
    if positive:
        bad = valid & ~(values > 0.0)
        if bad.any():
            raise_rows(table, name, col, bad, "numbers > 0")
        if finite:
            bad = valid & (values < MIN_POSITIVE)
            if bad.any():
                raise_rows(table, name, col, bad, f"numbers >= {MIN_POSITIVE:g}")
    if nullable:
        values = np.where(valid, values, np.nan)
    return values


def _float_fast(chunk, positive, nullable):
    """The values of a numeric chunk as float64 when every valid one passes
    :func:`float_column`'s checks (nulls -> NaN, allowed only when ``nullable``), else None."""
    nulls = chunk.null_count
    if nulls and not nullable:
        return None
    if chunk.type != pa.float64():      # unsafe: an integer above 2**53 rounds (then fails)
        chunk = chunk.cast(pa.float64(), safe=False)
    values = chunk.to_numpy(zero_copy_only=False)
    if nulls and nulls == len(values):
        return np.full(len(values), np.nan)
    if not len(values):
        return np.ascontiguousarray(values, dtype=np.float64)
    # one pass: nulls read as NaN, so a valid NaN shows as one NaN too many
    lo, hi, n_nan = value_range(*kernel_args(values))
    if n_nan != nulls:
        return None
    if not (-MAX_ABS <= lo and hi <= MAX_ABS):         # false for NaN and inf
        return None
    if positive and not lo >= MIN_POSITIVE:
        return None
    return np.ascontiguousarray(values, dtype=np.float64)


def time_column(table, name, col):
    """A timestamp column as int64 ns since the epoch, UTC (null -> ``NAT``)."""
    arr = table.column(col)
    if arr.num_chunks == 1 and len(arr) and pa.types.is_timestamp(arr.type) \
            and arr.type.unit == "ns":
        chunk = arr.chunk(0)            # int64 ns since the epoch, UTC, whatever the tz
        bufs = chunk.buffers()
        start, n = chunk.offset, len(chunk)
        values = np.frombuffer(bufs[1], dtype=np.int64)[start:start + n]
        if chunk.null_count:            # nulls read as NAT (NaT), from the validity bitmap
            valid = np.unpackbits(np.frombuffer(bufs[0], dtype=np.uint8),
                                  bitorder="little")[start:start + n]
            values = np.where(valid.view(np.bool_), values, NAT)
        return values
    if pa.types.is_null(arr.type):
        return np.full(len(arr), NAT, dtype=np.int64)
    if is_string_type(arr.type):
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
                       "'2024-06-28T08:00:00Z', between 1677 and 2262")
    else:
        if not (pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type)):
            raise MarginError(name, col, f"a timestamp column (or ISO-8601 strings), UTC, got "
                              f"{arr.type}", hint="Numbers have no unit: convert them, e.g. "
                              "pandas.to_datetime(values, unit='s', utc=True)")
        try:
            arr = arr.cast(pa.timestamp("ns", tz=getattr(arr.type, "tz", None) or "UTC"))
        except pa.ArrowInvalid as exc:      # outside the ns range (years 1677..2262)
            raise MarginError(name, col, "timestamps between 1677 and 2262 (nanoseconds "
                              f"since 1970 in int64), got values outside ({exc})") from None
    # timestamp[ns, UTC] reads as datetime64[ns]; nulls read as NaT, which is NAT
    return arr.to_numpy(zero_copy_only=False).view(np.int64)


NAT = np.iinfo(np.int64).min


@functools.lru_cache(maxsize=256)
def _parse_ts(s, unit="ns"):
    """ISO-8601 string -> ns since the epoch, UTC (tz-naive means UTC); None if unparseable
    or outside int64 nanoseconds (years 1677..2262: :func:`_beyond_ns` tells which)."""
    if s is None:
        return None
    for target in (pa.timestamp(unit, tz="UTC"), pa.timestamp(unit), pa.date32()):
        try:
            v = pa.scalar(s).cast(target)
            if pa.types.is_date(target):  # a bare date: midnight UTC
                v = v.cast(pa.timestamp(unit))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return v.value                    # tz-naive strings are read as UTC
    return None


def _beyond_ns(s):
    """True for a well-formed ISO-8601 string whose time int64 nanoseconds cannot hold."""
    return isinstance(s, str) and _parse_ts(s, unit="us") is not None


_TIME_RANGE = "a time between 1677 and 2262 (int64 nanoseconds)"


_TIME_FORMS = ("a datetime, an ISO-8601 string such as '2024-06-17T08:00:00Z', a numpy "
               "datetime64 or a pandas Timestamp")


def valuation_ns(valuation_time, timed=False):
    """The valuation time as int ns since the epoch, UTC: ``valuation_time`` as :func:`to_ns`
    reads it, or now when it is None.  Inputs with a ``time`` column (``timed``) are valued at
    each snapshot's own time (:func:`pmrisk.io.schema.snapshot_tables`): ``valuation_time`` must
    then be None, and None is returned.

    >>> from pmrisk.io.arrow import valuation_ns
    >>> valuation_ns("2024-06-17T08:00:00Z")
    1718611200000000000
    >>> valuation_ns("2024-06-17T08:00:00Z", timed=True)
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: arguments.valuation_time: expected None when the inputs carry \
a time column (each snapshot is valued at its own time)
    """
    if timed:
        if valuation_time is not None:
            raise MarginError("arguments", "valuation_time", "None when the inputs carry a "
                              "time column (each snapshot is valued at its own time)")
        return None
    return int(_time.time_ns()) if valuation_time is None else to_ns(valuation_time)


def to_ns(value, what="valuation_time"):
    """The one reading of a user's time: a ``datetime`` (tz-naive means UTC), ``date``
    (midnight UTC), ISO-8601 string, numpy ``datetime64`` of any unit or pandas
    ``Timestamp`` -> int ns since the epoch, UTC.  Numbers are refused (their unit is
    unknown: Unix seconds read as nanoseconds would be 1970), and so are NaT and times
    outside int64 nanoseconds (years 1677..2262).

    >>> import numpy as np
    >>> from pmrisk.io.arrow import to_ns
    >>> to_ns("2024-06-17T08:00:00Z") == to_ns(np.datetime64("2024-06-17T08", "h"))
    True
    >>> to_ns(1718611200)
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: arguments.valuation_time: expected a datetime, an ISO-8601 \
string such as '2024-06-17T08:00:00Z', a numpy datetime64 or a pandas Timestamp, got the \
number 1718611200 (its unit is unknown). Pass e.g. pandas.Timestamp(1718611200, \
unit='s', tz='UTC') for Unix seconds
    """
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        hint = (f"Pass e.g. pandas.Timestamp({value}, unit='s', tz='UTC') for Unix seconds"
                if not isinstance(value, (bool, np.bool_)) else None)
        raise MarginError("arguments", what, f"{_TIME_FORMS}, got the number {value!r} (its "
                          "unit is unknown)", hint=hint)
    if isinstance(value, str):
        ns = _parse_ts(value)
        if ns is None:
            if _beyond_ns(value):
                raise MarginError("arguments", what, f"{_TIME_RANGE}, got {value!r}")
            raise MarginError("arguments", what, f"{_TIME_FORMS}, got {value!r}")
        return ns
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise MarginError("arguments", what, f"{_TIME_FORMS}, got NaT")
        unit = np.datetime_data(value.dtype)[0]
        if unit == "generic":
            raise MarginError("arguments", what, f"{_TIME_FORMS}, got {value!r} (no unit)")
        ns = value.astype("datetime64[ns]")
        if ns.astype("datetime64[us]") != value.astype("datetime64[us]") \
                and unit not in ("ps", "fs", "as"):
            raise MarginError("arguments", what, f"{_TIME_RANGE}, got {value!r}")
        return int(ns.astype(np.int64))
    try:
        nat = bool(value != value)            # pandas NaT (a datetime that equals nothing)
    except (TypeError, ValueError):
        nat = False
    if nat:
        raise MarginError("arguments", what, f"{_TIME_FORMS}, got NaT")
    try:
        scalar = pa.scalar(value)
        if not scalar.is_valid:
            raise MarginError("arguments", what, f"{_TIME_FORMS}, got {value!r}")
        if pa.types.is_date(scalar.type):
            scalar = scalar.cast(pa.timestamp("ns"))
        if not pa.types.is_timestamp(scalar.type):
            raise MarginError("arguments", what, f"{_TIME_FORMS}, got {value!r} "
                              f"({type(value).__name__})")
        scalar = scalar.cast(pa.timestamp("ns", tz=getattr(scalar.type, "tz", None) or "UTC"))
        return int(scalar.cast(pa.int64()).as_py())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
            ValueError, OverflowError) as exc:
        if isinstance(exc, MarginError):
            raise
        if "out of bounds" in str(exc):     # a datetime outside int64 nanoseconds
            raise MarginError("arguments", what, f"{_TIME_RANGE}, got {value!r}") from None
        raise MarginError("arguments", what, f"{_TIME_FORMS}, got {value!r} ({exc})") \
            from None


def codes(arr):
    """Dense int64 codes and the dictionary (``pa.string()``) of a string array, in order of
    first appearance (a plain string array without nulls: one kernel pass,
    :func:`pmrisk.kernel.keys.str_codes`)."""
    fast = _fast_codes(arr)
    if fast is not None:
        code, first = fast
        return code, (arr.slice(int(first[0]), 1) if len(first) == 1
                      else arr.take(pa.array(first, pa.int64())))
    enc = pc.dictionary_encode(arr)
    return (np.ascontiguousarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            enc.dictionary)


SMALL = 1 << 16


def _fast_codes(arr):
    """``(codes, first row of each code)`` of a plain string array without nulls of up to
    :data:`SMALL` rows by :func:`pmrisk.kernel.keys.str_codes` (no per-call cost of Arrow's
    hash kernel, which is as fast per row on long columns); None for other arrays."""
    if isinstance(arr, pa.Array) and arr.type == pa.string() \
            and not arr.null_count and len(arr) <= SMALL:
        offsets, data = str_buffers(arr)
        if _one_value(offsets, data):
            return np.zeros(len(arr), dtype=np.int64), np.zeros(1, dtype=np.int64)
        return str_codes(offsets, data)
    return None


def _one_value(offsets, data):
    """Whether the rows of a string array (``offsets``, ``data``: its buffers) are two or
    more and all one string (one account's book, one underlying's instruments): a comparison
    of the bytes, no hashing."""
    n = len(offsets) - 1
    if n < 2:
        return False
    start = int(offsets[0])
    length = int(offsets[1]) - start
    if int(offsets[-1]) - start != n * length:
        return False
    if not length:
        return True                 # n rows of total length 0: every row is ""
    if not (offsets[1:] - offsets[:-1] == length).all():  # other lengths that add up
        return False
    # n rows of one length are one string <=> the bytes repeat with that period
    return np.array_equal(data[start + length:start + n * length],
                          data[start:start + (n - 1) * length])


def lookup_many(value_set, *arrays, value_codes=False):
    """``lookup(a, value_set)`` for several arrays with one hash pass over all of them (the
    symbols of positions, orders and market against the instruments' symbols).  With
    ``value_codes``, ``(codes(value_set)[0], lookups)``: the same pass codes the set too.

    >>> import pyarrow as pa
    >>> from pmrisk.io.arrow import lookup_many
    >>> [x.tolist() for x in lookup_many(pa.array(["a", "b"]), pa.array(["b", "z"]),
    ...                                  pa.array(["a"]))]
    [[1, -1], [0]]
    """
    if sum(len(a) for a in arrays) > SMALL:
        # long columns (a history's positions): a set lookup per column, no joined copy
        out = [lookup(a, value_set) for a in arrays]
        return (codes(value_set)[0], out) if value_codes else out
    joined = pa.concat_arrays([value_set, *arrays])
    fast = _fast_codes(joined)
    codes_all = fast[0] if fast is not None else codes(joined)[0]
    n = len(value_set)
    row_of_code = np.full(int(codes_all.max()) + 1 if len(codes_all) else 0, -1, np.int64)
    row_of_code[codes_all[:n][::-1]] = np.arange(n - 1, -1, -1)   # first row of each value
    out, start = [], n
    for a in arrays:
        out.append(row_of_code[codes_all[start:start + len(a)]])
        start += len(a)
    return (codes_all[:n], out) if value_codes else out


def str_buffers(arr, bufs=None):
    """``(offsets, data)`` of a single-chunk ``pa.string()`` array as numpy views (int32
    offsets of this array's rows, uint8 bytes), no copy (``bufs``: ``arr.buffers()`` when
    the caller has them)."""
    if bufs is None:
        bufs = arr.buffers()
    n = len(arr)
    if bufs[1] is not None and n:
        start = arr.offset
        offsets = np.frombuffer(bufs[1], dtype=np.int32)[start:start + n + 1]
    else:
        offsets = np.zeros(1, dtype=np.int32)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None \
        else np.zeros(0, dtype=np.uint8)
    offsets.flags.writeable = data.flags.writeable = False   # one kernel signature
    return offsets, data


@functools.lru_cache(maxsize=16)
def _allowed_buffers(allowed):
    return str_buffers(pa.array(allowed, pa.string()))


def name_buffers(allowed):
    """``(offsets, data)`` of a tuple of names (kinds, settlements ...) as the kernels of
    :mod:`pmrisk.kernel.validate` match them (built once per tuple)."""
    return _allowed_buffers(tuple(allowed))


def _read_only(a):
    a.flags.writeable = False
    return a


_NO_BITS = _read_only(np.zeros(0, dtype=np.uint8))
NO_STRINGS = (_read_only(np.zeros(1, dtype=np.int32)), _NO_BITS, _NO_BITS, 0)
NO_NUMBERS = (_read_only(np.zeros(0)), _NO_BITS, 0)
BOUNDS = (MAX_ABS, MIN_POSITIVE)


def _validity(arr, bufs):
    """The validity bitmap of an array as uint8 (empty when it has no nulls)."""
    if not arr.null_count:
        return _NO_BITS
    return _read_only(np.frombuffer(bufs[0], dtype=np.uint8))


def str_parts(arr):
    """A single-chunk ``pa.string()`` array as the kernels of :mod:`pmrisk.kernel.validate`
    read it: ``(offsets, data, validity, bit0)``, views of its buffers (no copy)."""
    bufs = arr.buffers()
    offsets, data = str_buffers(arr, bufs)
    return offsets, data, _validity(arr, bufs), arr.offset


def number_parts(table, col, values=True):
    """A numeric column as the kernels of :mod:`pmrisk.kernel.validate` read it, and its
    values: ``((values, validity, bit0), values)``, float64 (an integer column is cast,
    unsafely, as :func:`float_column` does), the second with NaN at nulls (a copy only when
    there are nulls; with ``values`` False, a caller that reads the first only, the second
    may then be None); None for a column of another type (an all-null column)."""
    arr = table.column(col)
    t = arr.type
    if t != _F64_TYPE:
        if not _is_num(t):
            return None
        arr = arr.cast(pa.float64(), safe=False)
    if arr.num_chunks != 1:             # one copy, nulls as NaN (and a bitmap of them)
        values = _read_only(np.ascontiguousarray(arr.to_numpy(), dtype=np.float64))
        if not arr.null_count:
            return (values, _NO_BITS, 0), values
        valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        return (values, _read_only(np.packbits(valid, bitorder="little")), 0), values
    arr = arr.chunk(0)
    n = len(arr)
    if not n:
        return NO_NUMBERS, NO_NUMBERS[0]
    bufs = arr.buffers()
    if bufs[1] is None:
        return None
    start = arr.offset
    raw = _read_only(np.frombuffer(bufs[1], dtype=np.float64)[start:start + n])
    if not arr.null_count:
        return (raw, _NO_BITS, start), raw
    if not values:
        return (raw, _validity(arr, bufs), start), None
    return (raw, _validity(arr, bufs), start), np.ascontiguousarray(
        arr.to_numpy(zero_copy_only=False), dtype=np.float64)


_F64_TYPE = pa.float64()


def enum_codes(arr, allowed):
    """``lookup(arr, allowed)`` of a ``pa.string()`` array against a tuple of names (kinds,
    settlements, option types) by one pass over its bytes
    (:func:`pmrisk.kernel.keys.match_strings`): index in ``allowed``, -1 for null or unknown.

    >>> import pyarrow as pa
    >>> from pmrisk.io.arrow import enum_codes
    >>> enum_codes(pa.array(["put", None, "call", "cal"]), ("put", "call")).tolist()
    [0, -1, 1, -1]
    """
    offsets, data = str_buffers(arr)
    null = (np.array(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            if arr.null_count else np.zeros(len(arr), dtype=bool))
    return match_strings(offsets, data, null, *_allowed_buffers(tuple(allowed)))


def lookup(values, value_set):
    """Row of each value in ``value_set`` (int64, -1 where absent)."""
    idx = pc.index_in(values, value_set=value_set)
    return np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def unique_keys(keys, return_first=False):
    """``np.unique(keys, return_inverse=True[, return_index=True])`` for non-negative int64
    keys, by a dense table instead of a sort when the keys are not much sparser than their
    count (O(n): the unit, account and instrument keys of a long backtest).

    >>> import numpy as np
    >>> from pmrisk.io.arrow import unique_keys
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
        uniq, inv, first = dense_unique(*kernel_args(keys), hi)
    inv = inv.astype(np.int64, copy=False)
    return (uniq, inv, first) if return_first else (uniq, inv)


def sum_by(group, weights, minlength):
    """``np.bincount(group, weights, minlength)`` that is float64 even when empty."""
    return np.bincount(group, weights=weights, minlength=minlength).astype(np.float64,
                                                                         copy=False)


def duplicated(*keys):
    """Boolean mask of rows whose key tuple appeared before (keys: int64 code arrays).

    One pass without a sort when the leading keys come in non-decreasing order (the rows of
    an account, of a snapshot, together) and the last key is a dense code (a symbol row):
    :func:`pmrisk.kernel.keys.duplicated_in_groups`; else by :func:`unique_keys` of the
    mixed key.

    >>> import numpy as np
    >>> from pmrisk.io.arrow import duplicated
    >>> duplicated(np.array([0, 0, 1, 1]), np.array([3, 3, 3, 1])).tolist()
    [False, True, False, False]
    >>> duplicated(np.array([1, 0, 1]), np.array([2, 2, 2])).tolist()
    [False, False, True]
    """
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=bool)
    if len(keys) == 2:                  # one leading key: the group itself
        group = np.asarray(keys[0], dtype=np.int64)
    else:
        group = np.zeros(n, dtype=np.int64)
        for k in keys[:-1]:             # dense non-negative codes: mix into one int64 key
            k = np.asarray(k, dtype=np.int64)
            group = group * (int(k.max()) + 1) + k
    last = np.asarray(keys[-1], dtype=np.int64)
    n_last = int(last.max()) + 1
    if n_last <= max(8 * n, 1 << 16) and last.min() >= 0 and group[0] >= 0:
        dup, ok = duplicated_in_groups(*kernel_args(group, last), n_last)
        if ok:
            return dup
    combined = group * n_last + last
    _, inverse, first = unique_keys(combined, return_first=True)
    return first[inverse] != np.arange(n)


def kernel_args(*args):
    """Arrays as the kernels always see them: C-contiguous, int64 or float64, **read-only**
    views (no copy when already so).  Arrow hands out read-only views and numba compiles a
    separate specialisation per writeability, so one flag everywhere means one compiled
    signature per kernel whatever the input's chunking or filtering.  Scalars pass through.

    An array already in that form passes as it is; a writeable one of the right type and
    layout becomes a read-only view of itself (no copy); anything else a read-only copy."""
    out = []
    for a in args:
        if type(a) is np.ndarray:
            dt = a.dtype
            f = a.flags
            if (dt is _F8 or dt is _I8 or dt in _KERNEL_DTYPES) and f.c_contiguous:
                if f.writeable:
                    if a.ndim:
                        a = a.view()
                        a.setflags(False)   # positional: the keyword form parses slower
                    else:                   # 0-d: 1-d, as numpy.ascontiguousarray makes it
                        a = _kernel_copy(a)
            else:
                a = _kernel_copy(a)
        elif isinstance(a, np.ndarray):     # a subclass: as a plain ndarray
            a = _kernel_copy(a)
        out.append(a)
    return tuple(out)


def _kernel_copy(a):
    """``a`` as a C-contiguous int64 (integers, booleans) or float64 array, read-only."""
    dtype = np.int64 if a.dtype.kind in "iub" else np.float64
    a = np.ascontiguousarray(a, dtype=dtype).view()
    a.setflags(False)
    return a


_F8, _I8 = np.dtype(np.float64), np.dtype(np.int64)
_KERNEL_DTYPES = (_F8, _I8)

"""Validation's kernel passes agree with the row-by-row checks.

The bindings take one path: each table's kernel pass, and the checks rule by rule only when
a pass finds a broken row (they name the rows).  :func:`precise` makes every pass give up (as
on a broken row) and puts the twins of :mod:`tests.oracles` in place of the key kernels, so
the rule-by-rule checks, the sorting paths and the twins do all the work.  On valid and broken
books (the demo book and a short history, mutated: odd values, unknown names, repeated,
dropped, reordered rows, several chunks) both ways must give the same book, array for array,
or the same :class:`pmrisk.MarginError` (table, column, rows, message, hint, snapshot time).
The kernels of :mod:`pmrisk.kernel.keys` are also checked against their twins one by one.
"""

import contextlib
import dataclasses
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
import pmrisk
from pmrisk.io import arrow as _arrow, book as _book
from pmrisk import samples
from pmrisk.io.arrow import (as_table, codes, duplicated, enum_codes, float_column, kernel_args,
                             lookup, lookup_many, str_buffers, time_column, unique_keys)
from pmrisk.io.book import load_book
from pmrisk.kernel import keys as K
from pmrisk.kernel import validate as V

NAMES = ("positions", "instruments", "market", "index", "balances", "open_orders", "reserves")
DEMO = samples.demo_book()
GRID = samples.book(n_accounts=1, positions_per_account=300, underlyings=("BTC",),
                    option_share=0.8, inverse_share=1.0, seed=1)
HISTORY = samples.history(days=1, accounts=3, step_minutes=360)
MODELS = {"deribit_pme": pmrisk.Model.preset("deribit_pme"),
          "standard": pmrisk.Model.preset("standard"),
          "ignore_expired": pmrisk.Model.preset("deribit_pme").with_overrides(
              {"expired_positions": "ignore"})}
NUMBERS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e300, 1e-300, 2.0 ** 60, None, 7.5]
STRINGS = ["", "option", "future", "perpetual", "call", "put", "linear", "inverse", "cal",
           "BTC", "USD", "nope", None]


def _gives_up(*args, **kwargs):
    return None


def _out_of_order(*args):
    return None, None, None, False


# (module, name, stand-in): each table's pass and each column's shortcut gives up (as on a
# broken row or an odd layout), and the key kernels are their numpy twins
PRECISE = (
    (_book, "_one_snapshot_book", _gives_up),
    (_book, "_instruments_in_one_pass", _gives_up),
    (_book, "_positions_in_one_pass", _gives_up),
    (_book, "_market_in_one_pass", _gives_up),
    (_book, "_one_snapshot", _gives_up),
    (_book, "_runs", _gives_up),                        # time columns: the sorting path
    (_book, "pairs_in_order", _out_of_order),           # accounts: the sorting path
    (_arrow, "_float_fast", _gives_up),
    (_arrow, "_fast_codes", _gives_up),                 # codes: Arrow's dictionary_encode
    (_arrow, "dense_unique", oracles.dense_unique),
    (_arrow, "duplicated_in_groups", oracles.duplicated_in_groups),
)


@contextlib.contextmanager
def precise():
    """The rule-by-rule checks, the sorting paths and the twins only."""
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in PRECISE]
    for mod, name, stand_in in PRECISE:
        setattr(mod, name, stand_in)
    try:
        yield
    finally:
        for mod, name, kept in saved:
            setattr(mod, name, kept)


def outcome(fn, *args, **kwargs):
    """``("ok", value)`` or ``("error", type, args, attributes)`` of a call."""
    try:
        return ("ok", fn(*args, **kwargs))
    except pmrisk.MarginError as exc:
        return ("error", type(exc), exc.args, vars(exc))


def same(a, b):
    """Equal values: arrays element-wise (NaN equal to NaN, same dtype), Arrow arrays by
    ``equals``, books field by field."""
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, (pa.Array, pa.ChunkedArray)):
        return type(a) is type(b) and a.equals(b)
    return a == b


def assert_same(fast, slow):
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "error":
        assert fast[1:] == slow[1:]
    else:
        assert same(fast[1], slow[1])


def both(fn, *args, **kwargs):
    fast = outcome(fn, *args, **kwargs)
    with precise():
        slow = outcome(fn, *args, **kwargs)
    assert_same(fast, slow)
    return fast


# -- mutated books -------------------------------------------------------------------------

def _set_cell(table, row, col, value):
    rows = table.to_pylist()
    rows[row][col] = value
    return pa.Table.from_pylist(rows, schema=table.schema)


def mutate(draw, tables):
    """One change to one table of ``tables`` (a dict), drawn with ``draw``."""
    name = draw(st.sampled_from(sorted(k for k, t in tables.items() if t is not None)))
    t = tables[name]
    op = draw(st.sampled_from(["number", "string", "time", "duplicate_row", "drop_row",
                                    "shuffle", "reverse", "chunks", "number", "string"]))
    if t.num_rows == 0:
        return tables
    row = draw(st.integers(0, t.num_rows - 1))
    kinds = {f.name: f.type for f in t.schema}
    pick = {"number": [c for c, k in kinds.items() if pa.types.is_floating(k)],
            "string": [c for c, k in kinds.items() if pa.types.is_string(k)],
            "time": [c for c, k in kinds.items() if pa.types.is_timestamp(k)]}
    if op in pick:
        if not pick[op]:
            return tables
        col = draw(st.sampled_from(pick[op]))
        if op == "number":
            value = draw(st.sampled_from(NUMBERS))
        elif op == "string":
            others = t.column(col).to_pylist()
            value = draw(st.sampled_from(STRINGS + others[:3] + others[-2:]))
        else:
            times = [v for v in t.column(col).to_pylist() if v is not None]
            value = draw(st.sampled_from(times[:2] + times[-2:] + [None])) if times \
                else None
        t = _set_cell(t, row, col, value)
    elif op == "duplicate_row":
        t = pa.concat_tables([t, t.slice(row, 1)])
    elif op == "drop_row":
        t = t.take(pa.array([i for i in range(t.num_rows) if i != row], pa.int64()))
    elif op == "shuffle":
        perm = draw(st.permutations(range(t.num_rows)))
        t = t.take(pa.array(perm, pa.int64()))
    elif op == "reverse":
        t = t.take(pa.array(range(t.num_rows - 1, -1, -1), pa.int64()))
    else:
        t = pa.concat_tables([t.slice(0, row), t.slice(row)])       # two chunks
    return {**tables, name: t}


@st.composite
def books(draw):
    """The demo book or a short history, with 0-3 changes."""
    timed = draw(st.booleans())
    src = HISTORY if timed else DEMO
    tables = {k: src.get(k) for k in NAMES}
    if draw(st.booleans()):             # no open orders: one snapshot's book in one call
        tables["open_orders"] = None
    for _ in range(draw(st.integers(0, 3))):
        tables = mutate(draw, tables)
    vt = None if timed else DEMO["valuation_time"]
    return tables, vt, draw(st.sampled_from(sorted(MODELS)))


@given(books())
def test_load_book_fast_and_precise_agree(case):
    tables, vt, model = case
    tables = {k: as_table(v, k) for k, v in tables.items()}
    both(load_book, **tables, model=MODELS[model], valuation_time=vt)


@pytest.mark.parametrize("src", ["demo", "history"])
def test_unchanged_books_agree_and_load(src):
    tables = {k: as_table((DEMO if src == "demo" else HISTORY).get(k), k) for k in NAMES}
    vt = DEMO["valuation_time"] if src == "demo" else None
    ok = both(load_book, **tables, model=MODELS["deribit_pme"], valuation_time=vt)
    assert ok[0] == "ok" and len(ok[1].quantity) == tables["positions"].num_rows


def test_history_out_of_time_order_agrees():
    """Rows not in time order take the sorting path; the book is the same either way."""
    tables = {k: as_table(HISTORY.get(k), k) for k in NAMES}
    flipped = {k: (t.take(pa.array(range(t.num_rows - 1, -1, -1), pa.int64()))
                   if t is not None and "time" in t.column_names else t)
               for k, t in tables.items()}
    got = both(load_book, **flipped, model=MODELS["deribit_pme"], valuation_time=None)
    want = both(load_book, **tables, model=MODELS["deribit_pme"], valuation_time=None)
    assert got[0] == want[0] == "ok"
    assert same(got[1].snap_ns, want[1].snap_ns)        # accounts in the rows' order
    assert sorted(got[1].accounts.to_pylist()) == sorted(want[1].accounts.to_pylist())


# -- column readers ----------------------------------------------------------------------

COLUMN_TYPES = [pa.float64(), pa.float32(), pa.int64(), pa.int32(), pa.uint64()]


@st.composite
def numeric_columns(draw):
    typ = draw(st.sampled_from(COLUMN_TYPES))
    if pa.types.is_floating(typ):
        value = st.one_of(st.sampled_from(NUMBERS), st.floats(-1e16, 1e16))
    else:
        value = st.one_of(st.none(), st.integers(0 if typ == pa.uint64() else -2 ** 31,
                                                 2 ** 31 - 1), st.just(2 ** 60))
    values = draw(st.lists(value, max_size=12))
    if typ == pa.int32():
        values = [v if v is None or abs(v) < 2 ** 31 else 7 for v in values]
    if typ == pa.float32():
        values = [v if v is None or not math.isfinite(v) or abs(v) < 1e38 else 1.0
                  for v in values]
    arr = pa.array(values, typ)
    cut = draw(st.integers(0, len(values)))
    col = pa.chunked_array([arr.slice(0, cut), arr.slice(cut)]) if draw(st.booleans()) \
        else pa.chunked_array([arr])
    return pa.table({"x": col})


@given(numeric_columns(), st.booleans(), st.booleans())
def test_float_column_fast_and_precise_agree(table, positive, nullable):
    both(float_column, table, "t", "x", positive=positive, nullable=nullable)


@given(st.lists(st.one_of(st.sampled_from(NUMBERS[:-3] + [-0.0, 5e-324]),
                         st.floats(allow_nan=True, allow_infinity=True)), max_size=30))
def test_value_range_matches_oracle(values):
    arr = np.array(values, dtype=np.float64)
    got = K.value_range(*kernel_args(arr))
    want = oracles.value_range(arr)
    assert got[2] == want[2]
    assert got[0] == want[0] and got[1] == want[1]


@given(st.lists(st.sampled_from(STRINGS + ["spot", "optio", "options"]), max_size=20),
       st.integers(0, 3))
def test_enum_codes_match_lookup_and_oracle(values, start):
    arr = pa.array(values, pa.string()).slice(min(start, len(values)))
    allowed = ("spot", "perpetual", "future", "option")
    got = enum_codes(arr, allowed)
    assert got.tolist() == lookup(arr, pa.array(allowed)).tolist()
    assert got.tolist() == oracles.match_strings(arr.to_pylist(), allowed).tolist()


@given(st.lists(st.one_of(st.none(), st.integers(-10 ** 12, 10 ** 12)), max_size=12),
       st.sampled_from(["s", "ms", "us", "ns"]), st.sampled_from([None, "UTC", "Asia/Tokyo"]))
def test_time_column_matches_oracle(values, unit, tz):
    table = pa.table({"t": pa.array(values, pa.timestamp(unit, tz=tz))})
    got = outcome(time_column, table, "x", "t")
    want = oracles.time_column(values, unit)
    assert got[0] == ("error" if want is None else "ok"), (got, want)
    if want is not None:
        assert got[1].dtype == np.int64 and got[1].tolist() == want.tolist()


def test_time_column_strings():
    table = pa.table({"t": ["2024-06-17T08:00:00Z", None, "2024-06-17"]})
    day = 1718582400 * 10**9                            # 2024-06-17T00:00:00Z
    assert time_column(table, "x", "t").tolist() == [day + 8 * 3600 * 10**9, _arrow.NAT, day]


# -- kernel.keys against the oracles ---------------------------------------------------------

def _sorted(draw, n, hi):
    return np.cumsum(draw(st.lists(st.integers(0, hi), min_size=n, max_size=n))).astype(
        np.int64)


@given(st.data())
def test_duplicated_in_groups_matches_oracle(data):
    draw = data.draw
    n = draw(st.integers(0, 30))
    key = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), np.int64)
    group = _sorted(draw, n, 1) if draw(st.booleans()) else np.array(
        draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int64)
    got, ok = K.duplicated_in_groups(*kernel_args(group, key), 6)
    want, want_ok = oracles.duplicated_in_groups(group, key, 6)
    assert ok == want_ok
    if ok:
        assert got.tolist() == want.tolist()
    # the public helper: the kernel when it applies, else the sort; the same mask
    assert duplicated(group, key).tolist() == want.tolist()


@given(st.data())
def test_sorted_runs_matches_oracle(data):
    draw = data.draw
    n = draw(st.integers(0, 30))
    ns = _sorted(draw, n, 2) if draw(st.booleans()) else np.array(
        draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), np.int64)
    values, run, ok = K.sorted_runs(*kernel_args(ns))
    want_values, want_run, want_ok = oracles.sorted_runs(ns)
    assert ok == want_ok
    if ok:
        assert values.tolist() == want_values.tolist() and run.tolist() == want_run.tolist()


@given(st.data())
def test_pairs_in_order_matches_oracle(data):
    draw = data.draw
    n = draw(st.integers(0, 30))
    name = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), np.int64)
    group = _sorted(draw, n, 1) if draw(st.booleans()) else np.array(
        draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int64)
    got = K.pairs_in_order(*kernel_args(group, name), 5)
    want = oracles.pairs_in_order(group, name, 5)
    assert got[3] == want[3]
    if got[3]:
        assert all(g.tolist() == w.tolist() for g, w in zip(got[:3], want[:3]))


@given(st.lists(st.integers(0, 40), max_size=40), st.integers(0, 5))
def test_dense_unique_matches_oracle(keys, extra):
    keys = np.array(keys, dtype=np.int64)
    hi = int(keys.max()) + 1 + extra if len(keys) else extra
    got = K.dense_unique(*kernel_args(keys), hi)
    want = oracles.dense_unique(keys, hi)
    assert all(g.tolist() == w.tolist() for g, w in zip(got, want))
    fast = unique_keys(keys, return_first=True)
    with precise():
        slow = unique_keys(keys, return_first=True)
    assert all(f.tolist() == s.tolist() == w.tolist() for f, s, w in
               zip(fast, slow, (want[0], want[1], want[2])))


@given(st.lists(st.sampled_from(["", "a", "b", "ab", "ba", "BTC", "BTC-PERPETUAL", "é"]),
                max_size=40), st.integers(0, 3))
def test_str_codes_match_oracle_and_dictionary_encode(values, start):
    arr = pa.array(values, pa.string()).slice(min(start, len(values)))
    got_codes, got_first = K.str_codes(*str_buffers(arr))
    want_codes, want_first = oracles.str_codes(arr.to_pylist())
    assert got_codes.tolist() == want_codes.tolist()
    assert got_first.tolist() == want_first.tolist()
    fast = codes(arr)
    with precise():
        slow = codes(arr)
    assert fast[0].tolist() == slow[0].tolist() and fast[1].equals(slow[1])


def test_str_codes_many_distinct_strings():
    """Enough strings that the hash table probes and grows; runs of equal rows."""
    values = [f"S-{i % 997}-{'x' * (i % 7)}" for i in range(5000)]
    values = [v for v in values for _ in range(1 + len(v) % 2)]
    arr = pa.array(values)
    got = K.str_codes(*str_buffers(arr))
    want = oracles.str_codes(values)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


@pytest.mark.parametrize("values, start", [
    (["ab", "a", "bab"], 0),            # lengths add up to 3 x 2 and the bytes repeat: 3 values
    (["a", "", "ab"], 0),
    (["x", "ab", "ab", "ab"], 1),       # a slice: one value
    (["", "", ""], 0),
    (["acct-1", "acct-1", "acct-2"], 0),
    (["BTC"] * 50 + ["ETH"], 0),
])
def test_codes_of_one_value_columns(values, start):
    """A column of one value is coded without hashing; others that look like one (same
    total length, repeating bytes) are not."""
    arr = pa.array(values, pa.string()).slice(start)
    got = codes(arr)
    want = oracles.str_codes(arr.to_pylist())
    assert got[0].tolist() == want[0].tolist()
    assert got[1].to_pylist() == [arr.to_pylist()[i] for i in want[1].tolist()]


def test_long_columns_agree():
    """Columns past the kernel's size (a history's positions) take Arrow's hash kernels."""
    rng = np.random.default_rng(5)
    value_set = pa.array([f"S{i}" for i in rng.integers(0, 300, 400)])       # repeats
    values = pa.array([f"S{i}" for i in rng.integers(0, 320, 70_000)])      # and misses
    fast = lookup_many(value_set, values, values.slice(7), value_codes=True)
    with precise():
        slow = lookup_many(value_set, values, values.slice(7), value_codes=True)
    assert fast[0].tolist() == slow[0].tolist()
    assert all(f.tolist() == s.tolist() for f, s in zip(fast[1], slow[1]))
    fast, slow = codes(values), None
    with precise():
        slow = codes(values)
    assert fast[0].tolist() == slow[0].tolist() and fast[1].equals(slow[1])


def test_one_compiled_signature_per_key_kernel():
    """Whatever the layout (Arrow buffers, numpy arrays, chunked columns, a history), each
    kernel of kernel.keys is compiled once: the helpers hand it read-only int64 arrays and
    read-only Arrow buffer views."""
    for src, vt in ((DEMO, DEMO["valuation_time"]), (HISTORY, None)):
        tables = {k: as_table(src.get(k), k) for k in NAMES}
        load_book(**tables, model=MODELS["deribit_pme"], valuation_time=vt)
        chunked = {k: (pa.concat_tables([t.slice(0, 1), t.slice(1)]) if t is not None else t)
                   for k, t in tables.items()}
        load_book(**chunked, model=MODELS["deribit_pme"], valuation_time=vt)
    for name in ("duplicated_in_groups", "match_strings", "sorted_runs", "pairs_in_order",
                 "dense_unique", "str_codes", "value_range"):
        # at most one: the per-table passes below leave some unused on these books
        assert len(getattr(K, name).signatures) <= 1, (name, getattr(K, name).signatures)
    for src in (DEMO, GRID):
        tables = {k: as_table(src.get(k), k) for k in NAMES if k != "open_orders"}
        load_book(**tables, open_orders=None, model=MODELS["deribit_pme"],
                  valuation_time=src["valuation_time"])
    for name in ("instruments", "positions", "market", "expired", "index_prices",
                 "one_snapshot", "one_snapshot_book"):  # the per-table passes, the book's
        assert len(getattr(V, name).signatures) == 1, (name, getattr(V, name).signatures)


# -- kernel.validate.one_snapshot_book against its twin ----------------------------------------

def _strings(part):
    """A string column as the kernels read it -> a list (None null; no rows: None)."""
    offsets, data, validity, bit0 = part
    n = len(offsets) - 1
    if not n:
        return None
    return [None if len(validity) and not (validity[(bit0 + i) >> 3] >> ((bit0 + i) & 7)) & 1
            else bytes(data[offsets[i]:offsets[i + 1]]).decode() for i in range(n)]


def _numbers(part):
    values, validity, bit0 = part
    if not len(values):
        return None
    return [None if len(validity) and not (validity[(bit0 + i) >> 3] >> ((bit0 + i) & 7)) & 1
            else float(values[i]) for i in range(len(values))]


def _as_lists(args):
    """one_snapshot_book's arguments as its twin takes them."""
    ins, pos, mkt, idx, names, bounds, max_iv, vt = args
    sym, und, kind, settlement, option_type, csize, strike, expiry = ins
    i_und, price = idx
    return ((*(_strings(c) for c in (sym, und, kind, settlement, option_type)),
             _numbers(csize), _numbers(strike), expiry.tolist() if len(expiry) else None),
            (_strings(pos[0]), _strings(pos[1]), *(_numbers(c) for c in pos[2:])),
            (_strings(mkt[0]), *(_numbers(c) for c in mkt[1:])),
            (_strings((*i_und, _NO_BITS, 0)) or [], _numbers(price) or []),
            tuple(tuple(_strings((*n, _NO_BITS, 0)) or ()) for n in names), bounds, max_iv, vt)


_NO_BITS = np.zeros(0, dtype=np.uint8)


@given(books())
def test_one_snapshot_book_matches_oracle(case):
    """On the demo book without open orders, mutated, the kernel and its twin agree (status,
    and every output when the status is BOOK_OK)."""
    tables, vt, model = case
    if vt is None or tables["open_orders"] is not None:
        return
    calls = []
    kernel = V.one_snapshot_book

    def spy(*args):
        calls.append((args, kernel(*args)))
        return calls[-1][1]

    V.one_snapshot_book = spy
    try:
        outcome(load_book, **{k: as_table(v, k) for k, v in tables.items()},
                model=MODELS[model], valuation_time=vt)
    finally:
        V.one_snapshot_book = kernel
    for args, got in calls:
        status, want = oracles.one_snapshot_book(*_as_lists(args))
        assert got[0] == status
        if status == V.BOOK_OK:
            und_first, pos_row, acc_codes, acc_first, asset_px, out = want
            for g, w in zip(got[1:6], (und_first, pos_row, acc_codes, acc_first, asset_px)):
                assert same(np.asarray(g), np.asarray(w).astype(g.dtype)), (g, w)
            for g, w in zip(got[6], out):
                assert same(g, np.asarray(w).astype(g.dtype)), (g, w)

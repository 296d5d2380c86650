"""The per-table kernels of :mod:`pmrisk.kernel.validate` against their twins in
tests/oracles.py: codes, looked-up rows and the count of rows breaking each rule, on small
tables of odd values (unknown names, nulls, NaN, infinities, repeats), sliced arrays (a bit
offset into the validity bitmap) and columns a table may lack."""

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from pmrisk.io.arrow import (BOUNDS, NAT, NO_NUMBERS, NO_STRINGS, kernel_args, number_parts,
                             str_buffers, str_parts)
from pmrisk.kernel import keys as K, validate as V
from pmrisk.kernel.instruments import KINDS, OPTION_TYPES, SETTLEMENTS

NAMES = (KINDS, SETTLEMENTS, OPTION_TYPES)
NUMBERS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e300, 1e-300, 1e15, 1e16, 1e-12, 2.5,
           7.0, None]
SYMBOLS = ["BTC-P", "BTC-F1", "BTC-O1", "BTC-O2", "ETH-a-much-longer-symbol-17", "", "é"]
WORDS = list(KINDS + SETTLEMENTS + OPTION_TYPES) + ["optio", "options", "", "CALL", None]


def _strings(draw, values, n):
    return draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))


def _arrow(values, type_, start):
    """``values`` as an Arrow array that is a slice (offset ``start``) of a longer one."""
    pad = [values[0] if values else None] * start
    return pa.array(pad + list(values), type_).slice(start)


def _str_col(values, start):
    return str_parts(_arrow(values, pa.string(), start))


def _num_col(values, start):
    table = pa.table({"x": _arrow(values, pa.float64(), start)})
    return number_parts(table, "x")[0]


def _names():
    return tuple(str_buffers(pa.array(list(n), pa.string())) for n in NAMES)


@st.composite
def instrument_tables(draw):
    n = draw(st.integers(0, 12))
    start = draw(st.integers(0, 9))
    cols = {
        "symbol": _strings(draw, SYMBOLS, n),
        "underlying": _strings(draw, ["BTC", "ETH", "A-long-underlying-name"], n),
        "kind": _strings(draw, WORDS, n),
        "settlement": _strings(draw, WORDS, n),
        "option_type": _strings(draw, WORDS, n) if draw(st.booleans()) else None,
        "contract_size": _strings(draw, NUMBERS, n),
        "strike": _strings(draw, NUMBERS, n) if draw(st.booleans()) else None,
        "expiry": _strings(draw, [NAT, 0, 10 ** 18], n) if draw(st.booleans()) else None,
    }
    # names unknown or null only where the schema allows (kind, settlement: no nulls)
    for col in ("kind", "settlement"):
        cols[col] = [v if v is not None else "spot" for v in cols[col]]
    return cols, start


@given(instrument_tables())
def test_instruments_kernel_matches_oracle(case):
    cols, start = case
    got = V.instruments(
        _str_col(cols["symbol"], start), _str_col(cols["underlying"], start),
        _str_col(cols["kind"], start), _str_col(cols["settlement"], start),
        _str_col(cols["option_type"], start) if cols["option_type"] is not None else NO_STRINGS,
        _num_col(cols["contract_size"], start),
        _num_col(cols["strike"], start) if cols["strike"] is not None else NO_NUMBERS,
        kernel_args(np.array(cols["expiry"], dtype=np.int64))[0]
        if cols["expiry"] is not None else NO_NUMBERS[0].view(np.int64),
        _names(), BOUNDS)
    kind, settlement, is_call, und_codes, und_first, index, bad = got
    want = oracles.validate_instruments(
        cols["symbol"], cols["underlying"], cols["kind"], cols["settlement"],
        cols["option_type"], cols["contract_size"], cols["strike"], cols["expiry"], NAMES,
        BOUNDS)
    assert kind.tolist() == want[0].tolist()
    assert settlement.tolist() == want[1].tolist()
    assert is_call.tolist() == want[2].tolist()
    assert und_codes.tolist() == want[3].tolist() and und_first.tolist() == want[4].tolist()
    assert index[0].tolist() == want[5].tolist() and index[1].tolist() == want[6].tolist()
    assert bad.tolist() == want[7].tolist()


@st.composite
def looked_up_tables(draw):
    """Instruments' symbols (repeats allowed) and a table whose symbols are drawn from them,
    unknown ones and nulls, in runs, in the instruments' order or at random."""
    ins = draw(st.lists(st.sampled_from(SYMBOLS), max_size=8))
    pool = ins + ["unknown", "BTC-O", None]
    order = draw(st.sampled_from(["random", "aligned", "runs"]))
    n = draw(st.integers(0, 16))
    if order == "aligned" and ins:
        rows = [ins[i % len(ins)] for i in range(n)]
        if rows and draw(st.booleans()):
            rows[draw(st.integers(0, len(rows) - 1))] = draw(st.sampled_from(pool))
    elif order == "runs":
        rows = [v for v in _strings(draw, pool, (n + 2) // 3) for _ in range(3)][:n]
    else:
        rows = _strings(draw, pool, n)
    return ins, rows, draw(st.integers(0, 9))


def _index(ins):
    offsets, data = str_buffers(pa.array(ins, pa.string()))
    return (offsets, data), K.str_index(offsets, data, 0)


@given(looked_up_tables(), st.integers(0, 5))
def test_lookup_rows_matches_oracle(case, period):
    ins, rows, start = case
    values, index = _index(ins)
    got = V.lookup_rows(_str_col(rows, start), values, index, period)
    assert got.tolist() == oracles.lookup_rows(rows, ins).tolist()


@given(looked_up_tables(), st.data())
def test_positions_kernel_matches_oracle(case, data):
    ins, rows, start = case
    rows = [r if r is not None else "unknown" for r in rows]      # symbol: no nulls
    n = len(rows)
    account = [f"acct-{i}" for i in data.draw(st.lists(st.integers(0, 2), min_size=n,
                                                        max_size=n))]
    qty, entry, lev = (data.draw(st.lists(st.sampled_from(NUMBERS), min_size=n, max_size=n))
                       for _ in range(3))
    entry = entry if data.draw(st.booleans()) else None
    values, index = _index(ins)
    got = V.positions(_str_col(rows, start), _str_col(account, start), _num_col(qty, start),
                      _num_col(entry, start) if entry is not None else NO_NUMBERS,
                      _num_col(lev, start), values, index, data.draw(st.integers(0, 5)),
                      BOUNDS)
    want = oracles.validate_positions(rows, account, qty, entry, lev, ins, BOUNDS)
    assert all(np.asarray(g).tolist() == np.asarray(w).tolist() for g, w in zip(got, want))


@given(looked_up_tables(), st.data())
def test_market_kernel_matches_oracle(case, data):
    ins, rows, start = case
    n = len(rows)
    mark, iv, fwd = (data.draw(st.lists(st.sampled_from(NUMBERS + [6.0]), min_size=n,
                                        max_size=n)) for _ in range(3))
    iv = iv if data.draw(st.booleans()) else None
    values, index = _index(ins)
    got = V.market(_str_col(rows, start), _num_col(mark, start),
                   _num_col(iv, start) if iv is not None else NO_NUMBERS,
                   _num_col(fwd, start), 5.0, values, index, BOUNDS)
    want = oracles.validate_market(rows, mark, iv, fwd, 5.0, ins, BOUNDS)
    assert all(np.asarray(g).tolist() == np.asarray(w).tolist() for g, w in zip(got, want))


@pytest.mark.parametrize("period", [0, 1, 7, 997])
def test_str_index_grows_and_matches_oracle(period):
    """Enough distinct strings that the table doubles, with runs, repeats and periods."""
    values = [f"S-{i % 997}-{'x' * (i % 11)}" for i in range(5000)]
    values = [v for v in values for _ in range(1 + len(v) % 2)]
    offsets, data = str_buffers(pa.array(values))
    codes, first, *_ = K.str_index(offsets, data, period)
    want = oracles.str_codes(values)
    assert codes.tolist() == want[0].tolist() and first.tolist() == want[1].tolist()


def test_str_index_table_doubles_past_half_full():
    """More distinct strings than half the largest first table (65,536 slots): the table
    doubles between blocks of rows, and every string is still found by its hash."""
    values = [f"K{i * 7919 % 100_003}" for i in range(40_000)]
    values += values[:5]                                    # repeats after the growth
    offsets, data = str_buffers(pa.array(values))
    index = K.str_index(offsets, data, 0)
    codes, first, code_hash, slots, bits = index
    want = oracles.str_codes(values)
    assert codes.tolist() == want[0].tolist() and first.tolist() == want[1].tolist()
    assert bits == 17 and len(slots) == 1 << 17 and (slots >= 0).sum() == len(first)
    probe = ["K0", "K7919", "nope", values[39_999]]
    got = V.lookup_rows(_str_col(probe, 0), (offsets, data), index, 0)
    assert got.tolist() == oracles.lookup_rows(probe, values).tolist()


# -- the book's instruments: expired, index_prices, one_snapshot ----------------------------

TIMES = [NAT, -5, 0, 3, 10, 10 ** 17]


@given(st.data())
def test_expired_kernel_matches_oracle(data):
    n_ins = data.draw(st.integers(1, 8))
    kind = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n_ins, max_size=n_ins)))
    expiry = np.array(data.draw(st.lists(st.sampled_from(TIMES), min_size=n_ins,
                                         max_size=n_ins)), dtype=np.int64)
    snap_ns = np.unique(np.array(data.draw(st.lists(st.sampled_from(TIMES[1:]), min_size=1,
                                                    max_size=4)), dtype=np.int64))
    rows = st.lists(st.integers(0, n_ins - 1), max_size=10)
    pos_row, ord_row = np.array(data.draw(rows), np.int64), np.array(data.draw(rows), np.int64)
    snaps = st.integers(0, len(snap_ns) - 1)
    pos_snap = np.array([data.draw(snaps) for _ in pos_row], np.int64)
    ord_snap = np.array([data.draw(snaps) for _ in ord_row], np.int64)
    args = (pos_row, pos_snap, ord_row, ord_snap, kind, expiry, snap_ns)
    got, want = V.expired(*kernel_args(*args)), oracles.expired(*args)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    assert got[2] == want[2]


@given(st.lists(st.sampled_from(["BTC", "ETH", "SOL", "A-long-underlying-name", ""]),
                min_size=1, max_size=6),
       st.lists(st.sampled_from(["BTC", "ETH", "USDC", "A-long-underlying-name", ""]),
                max_size=4, unique=True), st.data())
def test_index_prices_kernel_matches_oracle(underlying, names, data):
    price = data.draw(st.lists(st.sampled_from(NUMBERS), min_size=len(underlying),
                               max_size=len(underlying)))
    start = data.draw(st.integers(0, 3))
    und = _arrow(underlying, pa.string(), start)
    got = V.index_prices(str_buffers(und), _num_col(price, start),
                         str_buffers(pa.array(names, pa.string())), BOUNDS)
    want = oracles.index_prices(underlying, price, names, BOUNDS)
    assert got[0].tolist() == want[0].tolist()
    assert got[1].tobytes() == want[1].tobytes()
    assert (got[2], got[3]) == (want[2], want[3])


@given(st.data())
def test_one_snapshot_kernel_matches_oracle(data):
    """Held and ordered rows in any order (repeats), market rows in any order (some
    instruments without), marks, vols and forwards absent or not, underlyings unpriced:
    the same status, and when it is 0 the same bits."""
    n_ins = data.draw(st.integers(1, 8))
    col = lambda values: data.draw(st.lists(st.sampled_from(values), min_size=n_ins,  # noqa: E731
                                            max_size=n_ins))
    kind = np.array(col([0, 1, 2, 3]), np.int64)
    settlement = np.array(col([0, 1]), np.int64)
    size = np.array(col([1.0, 0.01, 10.0]))
    expiry = np.array(col(TIMES), np.int64)
    strike = np.array(col([math.nan, 1.0, 65000.5]))
    is_call = np.array(col([0, 1]), np.int64)
    und_code = np.array(col([0, 1, 2]), np.int64)
    rows = st.lists(st.integers(0, n_ins - 1), max_size=10)
    pos_row, ord_row = np.array(data.draw(rows), np.int64), np.array(data.draw(rows), np.int64)
    priced = data.draw(st.booleans())    # every instrument priced: status 0
    mkt_ins = np.array(data.draw(st.permutations(range(n_ins))), np.int64)
    mkt_ins = mkt_ins[:n_ins if priced else data.draw(st.integers(n_ins - 1, n_ins))]
    n_m = len(mkt_ins)
    mcol = lambda values: np.array(data.draw(st.lists(  # noqa: E731
        st.sampled_from(values), min_size=n_m, max_size=n_m)), np.float64)
    mark, fwd = mcol([0.5, 100.0]), mcol([math.nan, 60000.0])
    iv = mcol([0.6, 0.61] if priced else [math.nan, 0.6, 0.61])
    und_price = np.array(data.draw(st.lists(st.sampled_from(
        [3000.0, 65000.0] if priced else [math.nan, 3000.0, 65000.0]), min_size=3,
        max_size=3)))
    vt = data.draw(st.sampled_from(TIMES[1:]))
    args = (pos_row, ord_row, kind, settlement, size, expiry, strike, is_call, und_code,
            mkt_ins, mark, iv, fwd, und_price)
    got = V.one_snapshot(*kernel_args(*args), vt)
    status, want = oracles.one_snapshot(*args, vt)
    assert got[0] == status and (status == V.ONE_OK or not priced)
    if status == V.ONE_OK:
        for g, w in zip(got[1:], want):
            assert g.dtype == np.asarray(w).dtype and g.tobytes() == np.asarray(w).tobytes()

"""Bad input (SPEC §11): every input problem raises ``pmrisk.MarginError`` naming the table,
the column and the offending rows' keys; a failing call computes and returns nothing.

Each case starts from one small valid book (BTC inverse perpetual, dated future, call and put
on Deribit; an ETH linear perpetual; balances, one open order, one reserve row), breaks one thing,
and checks the exception type, ``err.table``, ``err.column`` and ``str(err)``.

Column-level problems (a missing column, a whole column of the wrong type, a model parameter,
an argument that is not a table) have no offending rows: their cases check that the message
names the table, the column and what was found instead.
"""

import copy
import importlib
import math
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pmrisk
from pmrisk import MarginError

VT = "2024-06-17T10:00:00Z"
EXPIRY = datetime(2024, 6, 28, 8, 0, tzinfo=timezone.utc)
PAST = datetime(2024, 6, 14, 8, 0, tzinfo=timezone.utc)   # before VT
MODEL = "deribit_pme"

PERP, FUT, CALL, PUT, ETH = ("BTC-PERPETUAL", "BTC-28JUN24", "BTC-28JUN24-70000-C",
                             "BTC-28JUN24-60000-P", "ETH-USDT-PERP")

# Arrow types of the base book's columns (SPEC §1).
TYPES = {
    "instruments": {"symbol": pa.string(), "underlying": pa.string(), "kind": pa.string(),
                    "settlement": pa.string(), "contract_size": pa.float64(),
                    "expiry": pa.timestamp("us", tz="UTC"), "strike": pa.float64(),
                    "option_type": pa.string()},
    "positions": {"account": pa.string(), "symbol": pa.string(), "quantity": pa.float64(),
                  "entry_price": pa.float64()},
    "market": {"symbol": pa.string(), "mark_price": pa.float64(), "mark_iv": pa.float64(),
               "underlying_price": pa.float64()},
    "index": {"underlying": pa.string(), "index_price": pa.float64()},
    "balances": {"account": pa.string(), "asset": pa.string(), "amount": pa.float64()},
    "open_orders": {"account": pa.string(), "order_id": pa.string(), "symbol": pa.string(),
                    "quantity": pa.float64(), "price": pa.float64()},
    "reserves": {"account": pa.string(), "unit": pa.string(), "mmp_margin": pa.float64(),
                 "open_orders_margin": pa.float64()},
}

REQUIRED = {
    "instruments": ["symbol", "underlying", "kind", "settlement", "contract_size"],
    "positions": ["account", "symbol", "quantity"],
    "market": ["symbol", "mark_price"],
    "index": ["underlying", "index_price"],
    "balances": ["account", "asset", "amount"],
    "open_orders": ["account", "order_id", "symbol", "quantity", "price"],
    "reserves": ["account", "unit"],
}


def base_book():
    """Column dicts (python lists) of every input table."""
    return {
        "instruments": {
            "symbol": [PERP, FUT, CALL, PUT, ETH],
            "underlying": ["BTC", "BTC", "BTC", "BTC", "ETH"],
            "kind": ["perpetual", "future", "option", "option", "perpetual"],
            "settlement": ["inverse", "inverse", "inverse", "inverse", "linear"],
            "contract_size": [10.0, 10.0, 1.0, 1.0, 1.0],
            "expiry": [None, EXPIRY, EXPIRY, EXPIRY, None],
            "strike": [None, None, 70000.0, 60000.0, None],
            "option_type": [None, None, "call", "put", None],
        },
        "positions": {
            "account": ["a1", "a1", "a1", "a1", "a2", "a2"],
            "symbol": [PERP, FUT, CALL, PUT, ETH, CALL],
            "quantity": [100000.0, -50000.0, -10.0, 5.0, 20.0, 3.0],
            "entry_price": [65000.0, 66000.0, None, None, 3500.0, None],
        },
        "market": {
            "symbol": [PERP, FUT, CALL, PUT, ETH],
            "mark_price": [66500.0, 66700.0, 0.012, 0.008, 3550.0],
            "mark_iv": [None, None, 0.55, 0.6, None],
            "underlying_price": [None, 66700.0, 66700.0, 66700.0, None],
        },
        "index": {"underlying": ["BTC", "ETH"], "index_price": [66450.0, 3548.0]},
        "balances": {"account": ["a1", "a2"], "asset": ["BTC", "USDT"],
                     "amount": [2.0, 50000.0]},
        "open_orders": {"account": ["a1"], "order_id": ["o1"], "symbol": [PERP],
                        "quantity": [1000.0], "price": [66000.0]},
        "reserves": {"account": ["a1"], "unit": ["BTC/BTC"], "mmp_margin": [0.01],
                     "open_orders_margin": [0.0]},
        "_types": {},      # (table, column) -> arrow type overriding TYPES
    }


def to_table(book, name):
    cols = book[name]
    if cols is None or not isinstance(cols, dict):
        return cols                       # None, or a non-table object given on purpose
    arrays, names = [], []
    for col, values in cols.items():
        t = book["_types"].get((name, col), TYPES[name].get(col))
        arrays.append(pa.array(values, type=t))
        names.append(col)
    return pa.table(arrays, names=names)


def run_margin(book, model=MODEL, valuation_time=VT, **kw):
    args = {n: to_table(book, n) for n in TYPES}
    return pmrisk.margin(args["positions"], args["instruments"], args["market"], args["index"],
                         balances=args["balances"], open_orders=args["open_orders"],
                         reserves=args["reserves"], model=model,
                         valuation_time=valuation_time, **kw)


def row_of(book, table, key_col, key):
    return book[table][key_col].index(key)


def set_value(book, table, column, row, value, type_=None):
    book[table][column][row] = value
    if type_ is not None:
        book["_types"][(table, column)] = type_


def set_column(book, table, column, values, type_=None):
    book[table][column] = list(values)
    book["_types"][(table, column)] = type_


def add_row(book, table, **row):
    cols = book[table]
    n = len(next(iter(cols.values())))
    for col in cols:
        cols[col].append(row.get(col))
    assert all(len(v) == n + 1 for v in cols.values())


def drop_row(book, table, key_col, key):
    i = row_of(book, table, key_col, key)
    for col in book[table]:
        del book[table][col][i]


def get_error(call):
    """The MarginError of ``call()``; fails the test for anything else (or no error)."""
    result = None
    try:
        result = call()
    except MarginError as err:
        assert isinstance(err, ValueError)
        return err
    except Exception as err:              # noqa: BLE001 - reported as a test failure
        pytest.fail(f"expected pmrisk.MarginError, got {type(err).__name__}: {err}")
    pytest.fail(f"expected pmrisk.MarginError, but the call returned {result!r}")


def check(err, table, column, *texts):
    """``err`` names ``table`` (or one of a tuple of acceptable tables) and ``column``, and its
    message contains every item of ``texts`` (offending keys, found values)."""
    msg = str(err)
    tables = table if isinstance(table, tuple) else (table,)
    assert err.table in tables, f"err.table={err.table!r}, expected {tables}: {msg}"
    assert err.table in msg, f"table {err.table!r} not in message: {msg}"
    if column is not None:
        columns = column if isinstance(column, tuple) else (column,)
        assert err.column in columns, f"err.column={err.column!r}, expected {columns}: {msg}"
        assert str(err.column) in msg, f"column {err.column!r} not in message: {msg}"
    for t in texts:
        assert str(t) in msg, f"{t!r} not in message: {msg}"


# -- the base book is valid ----------------------------------------------------------------

@pytest.fixture(scope="module")
def baseline():
    return run_margin(base_book())


def test_base_book_is_valid(baseline):
    assert baseline.accounts.num_rows == 2
    assert set(baseline.positions.column("symbol").to_pylist()) >= {PERP, FUT, CALL, PUT, ETH}


# -- missing columns --------------------------------------------------------------------------

@pytest.mark.parametrize("table,column",
                         [(t, c) for t, cols in REQUIRED.items() for c in cols])
def test_missing_required_column(table, column):
    book = base_book()
    del book[table][column]
    err = get_error(lambda: run_margin(book))
    others = [c for c in book[table]]
    check(err, table, column, others[0])   # the message lists the columns that were given


@pytest.mark.parametrize("column,key", [("expiry", FUT), ("strike", CALL),
                                        ("option_type", CALL)])
def test_missing_optional_column_needed_by_dated_or_option_rows(column, key):
    book = base_book()
    del book["instruments"][column]
    err = get_error(lambda: run_margin(book))
    check(err, "instruments", column, key)


def test_missing_mark_iv_column_with_options_held():
    book = base_book()
    del book["market"]["mark_iv"]
    err = get_error(lambda: run_margin(book))
    check(err, "market", "mark_iv", CALL)


# -- wrong column types --------------------------------------------------------------------

WRONG_TYPES = [
    ("positions", "quantity", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("positions", "quantity", lambda v: [x > 0 for x in v], pa.bool_(), "bool"),
    ("positions", "account", lambda v: list(range(len(v))), pa.int64(), "int64"),
    ("positions", "entry_price", lambda v: [None if x is None else str(x) for x in v],
     pa.string(), "string"),
    ("instruments", "symbol", lambda v: list(range(len(v))), pa.int64(), "int64"),
    ("instruments", "contract_size", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("instruments", "strike", lambda v: [None if x is None else str(x) for x in v],
     pa.string(), "string"),
    ("instruments", "expiry", lambda v: [None if x is None else x.timestamp() for x in v],
     pa.float64(), "double"),
    ("market", "mark_price", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("market", "mark_iv", lambda v: [None if x is None else str(x) for x in v],
     pa.string(), "string"),
    ("index", "index_price", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("balances", "amount", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("open_orders", "price", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("reserves", "mmp_margin", lambda v: [str(x) for x in v], pa.string(), "string"),
]


@pytest.mark.parametrize("table,column,convert,type_,found", WRONG_TYPES,
                         ids=[f"{t}.{c}-{f}" for t, c, _, _, f in WRONG_TYPES])
def test_wrong_column_type(table, column, convert, type_, found):
    book = base_book()
    set_column(book, table, column, convert(book[table][column]), type_)
    err = get_error(lambda: run_margin(book))
    check(err, table, column, found)


def test_unparseable_expiry_string_names_the_row():
    book = base_book()
    values = [None, "2024-06-28T08:00:00Z", "next friday", "2024-06-28T08:00:00Z", None]
    set_column(book, "instruments", "expiry", values, pa.string())
    err = get_error(lambda: run_margin(book))
    check(err, "instruments", "expiry", CALL)


# -- nulls where not allowed -----------------------------------------------------------------

NULLS = [
    ("positions", "quantity", ("account", "symbol"), ("a1", FUT)),
    ("positions", "account", ("account", "symbol"), ("a2", ETH)),
    ("positions", "symbol", ("account", "symbol"), ("a2", ETH)),
    ("instruments", "underlying", ("symbol",), (ETH,)),
    ("instruments", "kind", ("symbol",), (FUT,)),
    ("instruments", "settlement", ("symbol",), (PUT,)),
    ("instruments", "contract_size", ("symbol",), (PERP,)),
    ("market", "mark_price", ("symbol",), (PUT,)),
    ("index", "index_price", ("underlying",), ("ETH",)),
    ("balances", "amount", ("account", "asset"), ("a2", "USDT")),
    ("balances", "asset", ("account", "asset"), ("a2", "USDT")),
    ("open_orders", "price", ("account", "order_id"), ("a1", "o1")),
    ("reserves", "mmp_margin", ("account", "unit"), ("a1", "BTC/BTC")),
]


def _find_row(book, table, key_cols, key):
    cols = book[table]
    n = len(cols[key_cols[0]])
    for i in range(n):
        if tuple(cols[c][i] for c in key_cols) == key:
            return i
    raise KeyError(key)


@pytest.mark.parametrize("table,column,key_cols,key", NULLS,
                         ids=[f"{t}.{c}" for t, c, _, _ in NULLS])
def test_null_where_not_allowed(table, column, key_cols, key):
    book = base_book()
    i = _find_row(book, table, key_cols, key)
    set_value(book, table, column, i, None)
    err = get_error(lambda: run_margin(book))
    # every key value that is not the nulled column itself must be named
    check(err, table, column, *[k for c, k in zip(key_cols, key) if c != column])


# -- non-finite and non-positive numbers -----------------------------------------------------

BAD_NUMBERS = [math.nan, math.inf, -math.inf, 0.0, -1.0]
PRICE_CELLS = [
    ("market", "mark_price", "symbol", PERP),
    ("market", "mark_price", "symbol", CALL),
    ("market", "underlying_price", "symbol", FUT),
    ("index", "index_price", "underlying", "BTC"),
    ("instruments", "contract_size", "symbol", ETH),
    ("instruments", "strike", "symbol", PUT),
    ("positions", "entry_price", "symbol", ETH),
]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=["nan", "inf", "-inf", "zero", "negative"])
@pytest.mark.parametrize("table,column,key_col,key", PRICE_CELLS,
                         ids=[f"{t}.{c}-{k}" for t, c, _, k in PRICE_CELLS])
def test_non_finite_or_non_positive_price(table, column, key_col, key, value):
    book = base_book()
    set_value(book, table, column, row_of(book, table, key_col, key), value)
    err = get_error(lambda: run_margin(book))
    check(err, table, column, key)


FINITE_CELLS = [
    ("positions", "quantity", "symbol", PUT),
    ("balances", "amount", "asset", "USDT"),
    ("open_orders", "quantity", "order_id", "o1"),
    ("reserves", "mmp_margin", "unit", "BTC/BTC"),
]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("table,column,key_col,key", FINITE_CELLS,
                         ids=[f"{t}.{c}" for t, c, _, _ in FINITE_CELLS])
def test_non_finite_amount(table, column, key_col, key, value):
    book = base_book()
    set_value(book, table, column, row_of(book, table, key_col, key), value)
    err = get_error(lambda: run_margin(book))
    check(err, table, column, key)


def test_non_positive_open_order_price():
    book = base_book()
    set_value(book, "open_orders", "price", 0, 0.0)
    err = get_error(lambda: run_margin(book))
    check(err, "open_orders", "price", "o1")


def test_negative_reserve():
    book = base_book()
    set_value(book, "reserves", "mmp_margin", 0, -0.5)
    err = get_error(lambda: run_margin(book))
    check(err, "reserves", "mmp_margin", "BTC/BTC")


@pytest.mark.parametrize("value", [0.0, -0.2, math.nan, math.inf, None],
                         ids=["zero", "negative", "nan", "inf", "null"])
@pytest.mark.parametrize("symbol", [CALL, PUT])
def test_bad_mark_iv_for_held_option(symbol, value):
    book = base_book()
    set_value(book, "market", "mark_iv", row_of(book, "market", "symbol", symbol), value)
    err = get_error(lambda: run_margin(book))
    check(err, "market", "mark_iv", symbol)


# -- unknown and duplicate keys ----------------------------------------------------------------

def test_unknown_symbol_in_positions():
    book = base_book()
    add_row(book, "positions", account="a2", symbol="BTC-NOPE", quantity=1.0)
    err = get_error(lambda: run_margin(book))
    check(err, "positions", "symbol", "BTC-NOPE", "a2")


def test_unknown_symbol_in_market():
    book = base_book()
    add_row(book, "market", symbol="XRP-NOPE", mark_price=0.5)
    err = get_error(lambda: run_margin(book))
    check(err, "market", "symbol", "XRP-NOPE")


def test_unknown_symbol_in_open_orders():
    book = base_book()
    set_value(book, "open_orders", "symbol", 0, "BTC-NOPE")
    err = get_error(lambda: run_margin(book))
    check(err, "open_orders", "symbol", "o1")


def test_duplicate_instrument_symbols():
    book = base_book()
    add_row(book, "instruments", symbol=PERP, underlying="BTC", kind="perpetual",
            settlement="inverse", contract_size=10.0)
    err = get_error(lambda: run_margin(book))
    check(err, "instruments", "symbol", PERP)


def test_duplicate_positions():
    book = base_book()
    add_row(book, "positions", account="a1", symbol=PUT, quantity=1.0)
    err = get_error(lambda: run_margin(book))
    check(err, "positions", ("symbol", "account"), "a1", PUT)


def test_duplicate_market_rows():
    book = base_book()
    add_row(book, "market", symbol=FUT, mark_price=66800.0, underlying_price=66800.0)
    err = get_error(lambda: run_margin(book))
    check(err, "market", "symbol", FUT)


def test_duplicate_index_rows():
    book = base_book()
    add_row(book, "index", underlying="ETH", index_price=3600.0)
    err = get_error(lambda: run_margin(book))
    check(err, "index", "underlying", "ETH")


# -- incomplete instruments --------------------------------------------------------------------

@pytest.mark.parametrize("column,symbol", [("strike", CALL), ("expiry", PUT),
                                           ("option_type", CALL), ("expiry", FUT)],
                         ids=["option-without-strike", "option-without-expiry",
                              "option-without-option_type", "future-without-expiry"])
def test_instrument_missing_field(column, symbol):
    book = base_book()
    set_value(book, "instruments", column, row_of(book, "instruments", "symbol", symbol), None)
    err = get_error(lambda: run_margin(book))
    check(err, "instruments", column, symbol)


@pytest.mark.parametrize("column,symbol,value", [
    ("kind", PERP, "swap"),
    ("kind", CALL, "Option"),
    ("settlement", FUT, "quanto"),
    ("option_type", CALL, "C"),
    ("option_type", PUT, "PUT"),
], ids=["kind-swap", "kind-Option", "settlement-quanto", "option_type-C", "option_type-PUT"])
def test_unknown_enum_string(column, symbol, value):
    book = base_book()
    set_value(book, "instruments", column, row_of(book, "instruments", "symbol", symbol), value)
    err = get_error(lambda: run_margin(book))
    check(err, "instruments", column, symbol)


def test_inverse_spot():
    book = base_book()
    add_row(book, "instruments", symbol="BTC-SPOT", underlying="BTC", kind="spot",
            settlement="inverse", contract_size=1.0)
    err = get_error(lambda: run_margin(book))
    check(err, "instruments", "settlement", "BTC-SPOT")


# -- expiry ---------------------------------------------------------------------------------

EXPIRED = "BTC-14JUN24-65000-C"


def _with_expired_option(book):
    add_row(book, "instruments", symbol=EXPIRED, underlying="BTC", kind="option",
            settlement="inverse", contract_size=1.0, expiry=PAST, strike=65000.0,
            option_type="call")
    add_row(book, "market", symbol=EXPIRED, mark_price=0.02, mark_iv=0.5)
    add_row(book, "positions", account="a2", symbol=EXPIRED, quantity=-2.0)
    return book


def test_expired_option_is_an_error():
    book = _with_expired_option(base_book())
    err = get_error(lambda: run_margin(book))
    check(err, ("positions", "instruments"), ("symbol", "expiry"), EXPIRED)


def test_expired_option_ignored_when_the_model_says_so(baseline):
    book = _with_expired_option(base_book())
    model = {"preset": "deribit_pme", "expired_positions": "ignore"}
    result = run_margin(book, model=model)
    assert EXPIRED not in result.positions.column("symbol").to_pylist()
    # exactly the book without the expired position
    assert result.accounts.equals(baseline.accounts)
    assert result.units.equals(baseline.units)
    assert result.positions.equals(baseline.positions)


def test_valuation_time_after_every_expiry_names_the_position():
    book = base_book()
    err = get_error(lambda: run_margin(book, valuation_time="2024-07-01T00:00:00Z"))
    check(err, ("positions", "instruments"), ("symbol", "expiry"), FUT)


# -- market and index coverage -----------------------------------------------------------------

def test_held_symbol_without_market_row():
    book = base_book()
    drop_row(book, "market", "symbol", PUT)
    err = get_error(lambda: run_margin(book))
    check(err, ("positions", "market"), "symbol", PUT)


def test_ordered_symbol_without_market_row():
    book = base_book()
    add_row(book, "instruments", symbol="BTC-27SEP24", underlying="BTC", kind="future",
            settlement="inverse", contract_size=10.0, expiry=datetime(2024, 9, 27, 8,
                                                                      tzinfo=timezone.utc))
    set_value(book, "open_orders", "symbol", 0, "BTC-27SEP24")
    err = get_error(lambda: run_margin(book))
    check(err, ("open_orders", "market"), "symbol", "o1")


def test_underlying_without_index_row():
    book = base_book()
    drop_row(book, "index", "underlying", "ETH")
    err = get_error(lambda: run_margin(book))
    check(err, "index", "underlying", "ETH")


def test_balance_asset_without_index_row():
    """SPEC §1: an asset without an index row that is not a stablecoin is an error.  The
    offending row is in balances (account a2, asset XRP); naming the missing index row is
    accepted too, but the asset must be named."""
    book = base_book()
    add_row(book, "balances", account="a2", asset="XRP", amount=1000.0)
    err = get_error(lambda: run_margin(book))
    check(err, ("balances", "index"), ("asset", "underlying"), "XRP")


# -- reserves ---------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", ["BTCBTC", "BTC/", "/BTC", "BTC/BTC/BTC", "BTC-BTC"])
def test_reserves_malformed_unit_name(unit):
    book = base_book()
    set_value(book, "reserves", "unit", 0, unit)
    err = get_error(lambda: run_margin(book))
    check(err, "reserves", "unit", unit)


def test_reserves_unit_with_unpriced_currency():
    """'BTC/XYZ' is well formed but XYZ has no index row and is no stablecoin: the reserve row
    or the missing index row may be named, and XYZ must be."""
    book = base_book()
    set_value(book, "reserves", "unit", 0, "BTC/XYZ")
    err = get_error(lambda: run_margin(book))
    check(err, ("reserves", "index"), ("unit", "underlying"), "XYZ")


# -- time column, valuation time -------------------------------------------------------------

def test_bad_valuation_time():
    err = get_error(lambda: run_margin(base_book(), valuation_time="yesterday-ish"))
    check(err, "arguments", "valuation_time", "yesterday-ish")


# -- model ----------------------------------------------------------------------------------

MODEL_CASES = [
    ("unknown-preset", "no_such_preset", "preset", ["no_such_preset"]),
    ("unknown-preset-in-dict", {"preset": "deribit_pmee"}, "preset", ["deribit_pmee"]),
    ("unknown-top-level", {"preset": "deribit_pme", "risk_multipler": 1.2}, "risk_multipler",
     []),
    ("unknown-per-underlying", {"preset": "deribit_pme", "BTC": {"price_rnge": 0.2}},
     "BTC.price_rnge", ["price_rnge"]),
    ("unknown-default-underlying", {"preset": "deribit_pme",
                                    "default_underlying": {"buckets": 5}},
     "default_underlying.buckets", []),
    ("unknown-threshold", {"preset": "deribit_pme", "thresholds": {"warn": [1.1]}},
     "thresholds.warn", []),
    ("risk-multiplier-low", {"preset": "deribit_pme", "risk_multiplier": 0.79},
     "risk_multiplier", ["0.79"]),
    ("risk-multiplier-high", {"preset": "deribit_pme", "risk_multiplier": 1.51},
     "risk_multiplier", ["1.51"]),
    ("risk-multiplier-nan", {"preset": "deribit_pme", "risk_multiplier": math.nan},
     "risk_multiplier", ["nan"]),
    ("risk-multiplier-string", {"preset": "deribit_pme", "risk_multiplier": "1.2"},
     "risk_multiplier", ["1.2"]),
    ("risk-multiplier-bool", {"preset": "deribit_pme", "risk_multiplier": True},
     "risk_multiplier", ["True"]),
    ("correlation-out-of-range", {"preset": "standard", "correlations": {"BTC,ETH": 1.2}},
     "correlations.BTC,ETH", ["1.2"]),
    ("correlation-bad-key", {"preset": "standard", "correlations": {"BTC-ETH": 0.5}},
     "correlations.BTC-ETH", ["pair"]),
    ("correlation-diagonal", {"preset": "standard", "correlations": {"BTC,BTC": 0.5}},
     "correlations.BTC,BTC", ["diagonal"]),
    ("correlation-asymmetric", {"preset": "standard",
                                "correlations": {"BTC,ETH": 0.5, "ETH,BTC": 0.4}},
     "correlations.ETH,BTC", ["symmetric"]),
    ("correlation-not-psd", {"preset": "standard", "correlations": {
        "BTC,ETH": 0.9, "ETH,SOL": 0.9, "BTC,SOL": -0.9}},
     ("correlations.BTC,SOL", "correlations.ETH,SOL", "correlations.BTC,ETH"),
     ["positive semidefinite", "repair"]),
    ("correlation-repair-typo", {"preset": "standard", "correlations": {"repair": "higham"}},
     "correlations.repair", ["higham"]),
    ("correlation-not-a-number", {"preset": "standard", "correlations": {"BTC,ETH": "high"}},
     "correlations.BTC,ETH", ["high"]),
    ("exclude-unknown-kind", {"preset": "standard", "exclude": {"kinds": ["options"]}},
     "exclude.kinds", ["options"]),
    ("exclude-not-a-list", {"preset": "standard", "exclude": {"symbols": "BTC-PERPETUAL"}},
     "exclude.symbols", ["BTC-PERPETUAL"]),
    ("tail-mode-typo", {"preset": "standard", "tail_mode": "tails"}, "tail_mode", ["tails"]),
    ("section-not-a-table-exclude", {"preset": "standard", "exclude": ["option"]}, "exclude",
     ["option"]),
    ("section-not-a-table-correlations", {"preset": "standard", "correlations": 0.5},
     "correlations", ["0.5"]),
    ("section-not-a-table-default", {"preset": "standard", "default_underlying": 0.2},
     "default_underlying", ["0.2"]),
    ("section-typo", {"preset": "standard", "defualt_underlying": {"price_range": 0.5}},
     "defualt_underlying", ["default_underlying"]),
    ("section-default", {"preset": "standard", "default": {"price_range": 0.5}}, "default",
     ["default_underlying"]),
    ("extreme-below-zero", {"preset": "standard",
                            "default_underlying": {"extreme_multiple": 4.0}},
     "default_underlying.extreme_multiple", ["< 1"]),
    ("extreme-below-zero-btc", {"preset": "standard", "BTC": {"extreme_multiple": 7.0}},
     "BTC.extreme_multiple", ["-105%"]),
    ("correlated-custom-scenarios", {"preset": "standard", "scenario_set": "span16"},
     "cross_unit", ["span16"]),
    ("im-below-mm", {"preset": "standard", "im_factor": 0.5}, "im_factor", ["0.5"]),
    ("loan-mmr-inf", {"preset": "standard", "loan_mmr": math.inf}, "loan_mmr", ["inf"]),
    ("pnl-offset-above-one", {"preset": "standard", "BTC": {"pnl_offset": 5.0}},
     "BTC.pnl_offset", ["5.0"]),
    ("cover-fraction-above-one", {"preset": "standard", "BTC": {"cover_fraction": 3.0}},
     "BTC.cover_fraction", ["3.0"]),
    ("grid-nodes-too-few", {"preset": "standard", "joint_grid_nodes": 1}, "joint_grid_nodes",
     ["1"]),
    ("joint-revaluation-typo", {"preset": "standard", "joint_revaluation": "fast"},
     "joint_revaluation", ["fast"]),
    ("cross-unit-typo", {"preset": "deribit_pme", "cross_unit": "summ"}, "cross_unit",
     ["summ"]),
    ("expired-positions-typo", {"preset": "deribit_pme", "expired_positions": "drop"},
     "expired_positions", ["drop"]),
    ("price-range-out-of-range", {"preset": "deribit_pme", "BTC": {"price_range": 1.5}},
     "BTC.price_range", ["1.5"]),
    ("price-range-string", {"preset": "deribit_pme", "BTC": {"price_range": "0.2"}},
     "BTC.price_range", ["0.2"]),
    ("model-not-a-model", 42, ("", None), ["42"]),
]


@pytest.mark.parametrize("model,column,texts", [c[1:] for c in MODEL_CASES],
                         ids=[c[0] for c in MODEL_CASES])
def test_bad_model(model, column, texts):
    err = get_error(lambda: run_margin(base_book(), model=model))
    check(err, "model", column, *texts)


def test_a_pair_overrides_the_preset_in_either_order():
    for key in ("ETH,BTC", "ETH, BTC", "BTC,ETH"):
        m = pmrisk.Model.preset("standard").with_overrides({"correlations": {key: 0.5}})
        assert pmrisk.correlation_matrix(["BTC", "ETH"], m).matrix[0, 1] == 0.5


def test_bad_model_object_overrides():
    with pytest.raises(MarginError) as exc:
        pmrisk.Model.preset("deribit_pme").with_overrides({"BTC": {"price_rnge": 0.2}})
    check(exc.value, "model", "BTC.price_rnge", "price_rnge")
    with pytest.raises(MarginError) as exc:
        pmrisk.Model.preset("deribit_pme").with_overrides({"risk_multiplier": 1.6})
    check(exc.value, "model", "risk_multiplier", "1.6")


# -- arguments that are not tables -----------------------------------------------------------

@pytest.mark.parametrize("table", ["positions", "instruments", "market", "index", "balances",
                                   "open_orders", "reserves"])
@pytest.mark.parametrize("value", [42, "positions.parquet", 3.5], ids=["int", "str", "float"])
def test_argument_not_a_table(table, value):
    book = base_book()
    book[table] = value
    err = get_error(lambda: run_margin(book))
    check(err, table, None, type(value).__name__)


@pytest.mark.parametrize("table", ["positions", "instruments", "market", "index"])
def test_required_table_is_none(table):
    book = base_book()
    book[table] = None
    err = get_error(lambda: run_margin(book))
    check(err, table, None)


# -- risk arrays -------------------------------------------------------------------------------

SPAN16_FUT = [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670,
              10000, 10000, -10000, -10000, 7000, -7000]
SPAN16_OPT = [-50, 40, 900, 1000, -800, -700, 1900, 2000, -1500, -1400,
              3000, 3100, -2000, -1900, 2500, -1200]


def ra_book():
    return {
        "positions": {"account": ["x", "x", "y"], "symbol": ["ESU4", "ESU4-C", "ESU4"],
                      "quantity": [2.0, -3.0, -1.0]},
        "risk_arrays": {"symbol": ["ESU4"] * 16 + ["ESU4-C"] * 16,
                        "scenario": list(range(16)) * 2,
                        "pnl": [float(v) for v in SPAN16_FUT + SPAN16_OPT]},
        "index": None,
        "_types": {},
    }


RA_TYPES = {
    "positions": {"account": pa.string(), "symbol": pa.string(), "quantity": pa.float64()},
    "risk_arrays": {"symbol": pa.string(), "scenario": pa.int64(), "pnl": pa.float64(),
                    "unit": pa.string()},
    "index": {"underlying": pa.string(), "index_price": pa.float64()},
}


def _ra_table(book, name):
    cols = book[name]
    if not isinstance(cols, dict):
        return cols
    return pa.table([pa.array(v, type=book["_types"].get((name, c), RA_TYPES[name].get(c)))
                     for c, v in cols.items()], names=list(cols))


def run_ra(book, model="span"):
    return pmrisk.margin_from_risk_arrays(_ra_table(book, "positions"),
                                          _ra_table(book, "risk_arrays"), model=model,
                                          index=_ra_table(book, "index"))


def test_risk_arrays_base_is_valid():
    r = run_ra(ra_book())
    assert r.accounts.num_rows == 2


def test_risk_arrays_duplicate_symbol_scenario():
    book = ra_book()
    ra = book["risk_arrays"]
    ra["symbol"].append("ESU4-C")
    ra["scenario"].append(7)
    ra["pnl"].append(1.0)
    err = get_error(lambda: run_ra(book))
    check(err, "risk_arrays", ("scenario", "symbol"), "ESU4-C", "7")


def test_risk_arrays_missing_scenario():
    book = ra_book()
    ra = book["risk_arrays"]
    i = 16 + 5                               # ESU4-C, scenario 5
    for c in ra:
        del ra[c][i]
    err = get_error(lambda: run_ra(book))
    check(err, "risk_arrays", "scenario", "ESU4-C")


@pytest.mark.parametrize("scenario", [16, -1, 1000])
def test_risk_arrays_scenario_out_of_range(scenario):
    book = ra_book()
    book["risk_arrays"]["scenario"][16 + 3] = scenario      # ESU4-C
    err = get_error(lambda: run_ra(book))
    check(err, "risk_arrays", "scenario", "ESU4-C", scenario)


def test_risk_arrays_position_symbol_absent():
    book = ra_book()
    book["positions"]["symbol"][2] = "NQU4"
    err = get_error(lambda: run_ra(book))
    check(err, "positions", "symbol", "NQU4", "y")


def test_risk_arrays_duplicate_positions():
    book = ra_book()
    book["positions"]["symbol"][1] = "ESU4"
    err = get_error(lambda: run_ra(book))
    check(err, "positions", ("symbol", "account"), "x", "ESU4")


@pytest.mark.parametrize("value", [math.nan, math.inf, None], ids=["nan", "inf", "null"])
def test_risk_arrays_bad_pnl(value):
    book = ra_book()
    book["risk_arrays"]["pnl"][16 + 9] = value
    err = get_error(lambda: run_ra(book))
    check(err, "risk_arrays", "pnl", "ESU4-C", 9)


@pytest.mark.parametrize("value", [math.nan, math.inf, None], ids=["nan", "inf", "null"])
def test_risk_arrays_bad_quantity(value):
    book = ra_book()
    book["positions"]["quantity"][2] = value
    err = get_error(lambda: run_ra(book))
    check(err, "positions", "quantity", "y", "ESU4")


def test_risk_arrays_null_scenario():
    book = ra_book()
    book["risk_arrays"]["scenario"][16 + 2] = None
    err = get_error(lambda: run_ra(book))
    check(err, "risk_arrays", "scenario", "ESU4-C")


def test_risk_arrays_inconsistent_unit():
    book = ra_book()
    book["risk_arrays"]["unit"] = ["ES/USD"] * 16 + ["ES/USD"] * 15 + ["NQ/USD"]
    err = get_error(lambda: run_ra(book))
    check(err, "risk_arrays", "unit", "ESU4-C")


@pytest.mark.parametrize("table,column", [("risk_arrays", "symbol"), ("risk_arrays", "scenario"),
                                          ("risk_arrays", "pnl"), ("positions", "account"),
                                          ("positions", "symbol"), ("positions", "quantity")])
def test_risk_arrays_missing_column(table, column):
    book = ra_book()
    del book[table][column]
    err = get_error(lambda: run_ra(book))
    check(err, table, column)


@pytest.mark.parametrize("table,column,values,type_,found", [
    ("risk_arrays", "pnl", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("risk_arrays", "scenario", lambda v: [str(x) for x in v], pa.string(), "string"),
    ("positions", "quantity", lambda v: [str(x) for x in v], pa.string(), "string"),
], ids=["pnl-string", "scenario-string", "quantity-string"])
def test_risk_arrays_wrong_type(table, column, values, type_, found):
    book = ra_book()
    book[table][column] = values(book[table][column])
    book["_types"][(table, column)] = type_
    err = get_error(lambda: run_ra(book))
    check(err, table, column, found)


@pytest.mark.parametrize("value", [0.0, -5.0, math.nan], ids=["zero", "negative", "nan"])
def test_risk_arrays_bad_index_price(value):
    book = ra_book()
    book["index"] = {"underlying": ["ES", "USD"], "index_price": [value, 1.0]}
    err = get_error(lambda: run_ra(book))
    check(err, "index", "index_price", "ES")


def test_risk_arrays_duplicate_index_rows():
    book = ra_book()
    book["index"] = {"underlying": ["ES", "ES"], "index_price": [5000.0, 5100.0]}
    err = get_error(lambda: run_ra(book))
    check(err, "index", "underlying", "ES")


@pytest.mark.parametrize("model,column,text", [
    ("no_such_preset", "preset", "no_such_preset"),
    ({"preset": "span", "risk_multiplier": 2.0}, "risk_multiplier", "2.0"),
    ({"preset": "span", "ES": {"price_rnge": 0.1}}, "ES.price_rnge", "price_rnge"),
], ids=["unknown-preset", "risk-multiplier", "unknown-parameter"])
def test_risk_arrays_bad_model(model, column, text):
    err = get_error(lambda: run_ra(ra_book(), model=model))
    check(err, "model", column, text)


@pytest.mark.parametrize("arg", ["positions", "risk_arrays", "index"])
def test_risk_arrays_argument_not_a_table(arg):
    book = ra_book()
    book[arg] = 7
    err = get_error(lambda: run_ra(book))
    check(err, arg, None, "int")


# -- nothing partial, nothing computed ---------------------------------------------------------

def test_failed_call_returns_nothing_and_leaves_no_state(baseline):
    book = base_book()
    set_value(book, "market", "mark_price", 0, math.nan)
    result = "untouched"
    with pytest.raises(MarginError):
        result = run_margin(book)
    assert result == "untouched"
    # a later valid call is unaffected by the failed one
    again = run_margin(base_book())
    assert again.accounts.equals(baseline.accounts)
    assert again.units.equals(baseline.units)
    assert again.positions.equals(baseline.positions)


def _bad_books():
    """A representative bad book per validation stage (id, book, run kwargs)."""
    out = []
    b = base_book()
    del b["positions"]["quantity"]
    out.append(("missing-column", b, {}))
    b = base_book()
    set_value(b, "market", "mark_price", 1, -1.0)
    out.append(("negative-mark", b, {}))
    b = base_book()
    add_row(b, "positions", account="a1", symbol="NOPE", quantity=1.0)
    out.append(("unknown-symbol", b, {}))
    b = _with_expired_option(base_book())
    out.append(("expired-option", b, {}))
    b = base_book()
    set_value(b, "market", "mark_iv", 2, None)
    out.append(("missing-iv", b, {}))
    b = base_book()
    drop_row(b, "index", "underlying", "ETH")
    out.append(("missing-index", b, {}))
    b = base_book()
    add_row(b, "balances", account="a2", asset="XRP", amount=1000.0)
    out.append(("balance-asset-without-index", b, {}))
    b = base_book()
    set_value(b, "reserves", "unit", 0, "BTC/XYZ")
    out.append(("reserve-unit-without-index", b, {}))
    out.append(("bad-model", base_book(), {"model": {"preset": "deribit_pme",
                                                      "risk_multiplier": 9.0}}))
    return out


@pytest.mark.parametrize("case", _bad_books(), ids=lambda c: c[0])
def test_validation_precedes_computation(case, monkeypatch):
    """SPEC §11: nothing is computed for a call that fails validation.  The computation stage
    (``pmrisk.margin``'s ``run``) is replaced by a tripwire: a bad book must be rejected before
    it is reached."""
    mod = importlib.import_module("pmrisk.engine.margin")
    assert hasattr(mod, "run"), "pmrisk.margin calls the engine as a module-level run(): " \
        "point the tripwire at whatever starts the computation now"

    def tripwire(*a, **k):
        raise AssertionError("computation started although the input is invalid")

    monkeypatch.setattr(mod, "run", tripwire)
    _, book, kw = case
    book = copy.deepcopy(book)
    err = get_error(lambda: run_margin(book, **kw))
    assert isinstance(err, MarginError)


def test_no_nan_in_outputs_of_valid_book(baseline):
    for t in (baseline.accounts, baseline.units, baseline.positions):
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_floating(col.type):
                values = col.to_numpy(zero_copy_only=False)
                assert not np.isnan(values).any(), f"NaN in {name}"


def test_expired_instrument_not_held_is_fine(baseline):
    """Reference data may list expired instruments; only held (or ordered) ones are errors."""
    book = _with_expired_option(base_book())
    drop_row(book, "positions", "symbol", EXPIRED)
    result = run_margin(book)
    assert result.accounts.equals(baseline.accounts)


# -- errors name the keys whatever the input container -------------------------------------------

def _as_container(table, kind):
    if kind == "dictionary":
        return pa.Table.from_arrays(
            [pc.dictionary_encode(c) if pa.types.is_string(c.type) else c
             for c in table.columns],
            names=table.column_names)
    if kind == "string_view":
        return pa.Table.from_arrays(
            [c.cast(pa.string_view()) if pa.types.is_string(c.type) else c
             for c in table.columns], names=table.column_names)
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        pl = pytest.importorskip("polars")
        return pl.from_arrow(table)
    if kind == "record_batch":
        return table.combine_chunks().to_batches()[0]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["dictionary", "string_view", "pandas", "polars",
                                  "record_batch"])
def test_error_names_keys_for_any_container(kind):
    pytest.importorskip("pandas")
    book = base_book()
    add_row(book, "positions", account="a2", symbol="BTC-NOPE", quantity=1.0)
    set_value(book, "market", "mark_price", row_of(book, "market", "symbol", CALL), -0.01)
    tables = {n: to_table(book, n) for n in TYPES}
    tables["positions"] = _as_container(tables["positions"], kind)
    err = get_error(lambda: pmrisk.margin(
        tables["positions"], tables["instruments"], tables["market"], tables["index"],
        balances=tables["balances"], model=MODEL, valuation_time=VT))
    check(err, "positions", "symbol", "a2", "BTC-NOPE")
    # and a market error when the market table is in that container
    book = base_book()
    set_value(book, "market", "mark_price", row_of(book, "market", "symbol", CALL), -0.01)
    tables = {n: to_table(book, n) for n in TYPES}
    tables["market"] = _as_container(tables["market"], kind)
    err = get_error(lambda: pmrisk.margin(
        tables["positions"], tables["instruments"], tables["market"], tables["index"],
        balances=tables["balances"], model=MODEL, valuation_time=VT))
    check(err, "market", "mark_price", CALL)

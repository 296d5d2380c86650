"""Arrow-shaped inputs (SPEC §1, §13): one small book given in every supported container and
physical layout must give identical result tables.

The book: a Deribit BTC inverse perpetual, an inverse dated future, an inverse call and put, and
a linear ETH perpetual, in two accounts with balances, margined with ``deribit_pme``.
"""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pmrisk

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

VT = "2024-06-17T10:00:00Z"
MODEL = "deribit_pme"
EXPIRY = datetime(2024, 6, 28, 8, 0, tzinfo=timezone.utc)
PERP, FUT, CALL, PUT, ETH = ("BTC-PERPETUAL", "BTC-28JUN24", "BTC-28JUN24-70000-C",
                             "BTC-28JUN24-60000-P", "ETH-USDT-PERP")
NAMES = ("positions", "instruments", "market", "index", "balances")


def canonical():
    """The book as pyarrow Tables with the SPEC §1 types."""
    ts = pa.timestamp("us", tz="UTC")
    return {
        "instruments": pa.table({
            "symbol": pa.array([PERP, FUT, CALL, PUT, ETH]),
            "underlying": pa.array(["BTC", "BTC", "BTC", "BTC", "ETH"]),
            "kind": pa.array(["perpetual", "future", "option", "option", "perpetual"]),
            "settlement": pa.array(["inverse", "inverse", "inverse", "inverse", "linear"]),
            "contract_size": pa.array([10.0, 10.0, 1.0, 1.0, 1.0]),
            "expiry": pa.array([None, EXPIRY, EXPIRY, EXPIRY, None], type=ts),
            "strike": pa.array([None, None, 70000.0, 60000.0, None], type=pa.float64()),
            "option_type": pa.array([None, None, "call", "put", None], type=pa.string()),
        }),
        "positions": pa.table({
            "account": pa.array(["a1", "a1", "a1", "a1", "a2", "a2"]),
            "symbol": pa.array([PERP, FUT, CALL, PUT, ETH, CALL]),
            "quantity": pa.array([100000.0, -50000.0, -10.0, 5.0, 20.0, 3.0]),
            "entry_price": pa.array([65000.0, 66000.0, None, None, 3500.0, None],
                                    type=pa.float64()),
        }),
        "market": pa.table({
            "symbol": pa.array([PERP, FUT, CALL, PUT, ETH]),
            "mark_price": pa.array([66500.0, 66700.0, 0.012, 0.008, 3550.0]),
            "mark_iv": pa.array([None, None, 0.55, 0.6, None], type=pa.float64()),
            "underlying_price": pa.array([None, 66700.0, 66700.0, 66700.0, None],
                                         type=pa.float64()),
        }),
        "index": pa.table({"underlying": pa.array(["BTC", "ETH"]),
                           "index_price": pa.array([66450.0, 3548.0])}),
        "balances": pa.table({"account": pa.array(["a1", "a2"]),
                              "asset": pa.array(["BTC", "USDT"]),
                              "amount": pa.array([2.0, 50000.0])}),
    }


def run(tables, model=MODEL):
    return pmrisk.margin(tables["positions"], tables["instruments"], tables["market"],
                         tables["index"], balances=tables["balances"], model=model,
                         valuation_time=VT)


# -- per-table transformations ------------------------------------------------------------------

def _map_columns(table, fn):
    """Apply ``fn(name, chunked_array, column_number)`` to every column (None: unchanged)."""
    cols, names = [], []
    for i, name in enumerate(table.column_names):
        col = table.column(name)
        new = fn(name, col, i)
        cols.append(col if new is None else new)
        names.append(name)
    return pa.Table.from_arrays(cols, names=names)


def _is_string(t):
    return pa.types.is_string(t)


def _rechunk(arr, i):
    """Several chunks (including an empty one) with a split point that varies per column."""
    arr = arr.combine_chunks()
    n = len(arr)
    if n < 2:
        return pa.chunked_array([arr.slice(0, 0), arr], type=arr.type)
    k = 1 + i % (n - 1)
    chunks = [arr.slice(0, k), arr.slice(k, 0), arr.slice(k, 1), arr.slice(k + 1)]
    return pa.chunked_array(chunks, type=arr.type)


def multi_chunk(table):
    return _map_columns(table, lambda name, col, i: _rechunk(col, i))


def _dict_chunk(chunk, j):
    """A dictionary array for ``chunk`` whose dictionary is this chunk's own: values reversed
    and an unused extra entry, so every chunk has a different dictionary."""
    values = chunk.to_pylist()
    uniq = sorted({v for v in values if v is not None}, reverse=True) + [f"zz-unused-{j}"]
    pos = {v: k for k, v in enumerate(uniq)}
    indices = pa.array([None if v is None else pos[v] for v in values], type=pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(uniq, type=pa.string()))


def dictionary(table, chunked=True):
    def fn(name, col, i):
        if not _is_string(col.type):
            return None
        if not chunked:
            return pc.dictionary_encode(col)
        chunks = _rechunk(col, i).chunks
        return pa.chunked_array([_dict_chunk(c, j) for j, c in enumerate(chunks)],
                                type=pa.dictionary(pa.int32(), pa.string()))
    return _map_columns(table, fn)


def dictionary_of(table, value_type):
    """Dictionary-encoded string columns whose dictionary is ``value_type`` (large_string,
    string_view)."""
    return _map_columns(table, lambda name, col, i: col.cast(
        pa.dictionary(pa.int16(), value_type)) if _is_string(col.type) else None)


def cast_strings(table, type_):
    return _map_columns(table, lambda name, col, i: col.cast(type_)
                        if _is_string(col.type) else None)


def iso_expiry(table, type_=pa.string()):
    if "expiry" not in table.column_names:
        return table

    def fn(name, col, i):
        if name != "expiry":
            return None
        values = [None if v is None else v.strftime("%Y-%m-%dT%H:%M:%SZ")
                  for v in col.to_pylist()]
        return pa.array(values, type=type_)
    return _map_columns(table, fn)


def expiry_unit(table, unit, tz):
    return _map_columns(table, lambda name, col, i: col.cast(pa.timestamp(unit, tz=tz))
                        if name == "expiry" else None)


def integer_numbers(table):
    """Integer types wherever the values are whole numbers (quantity, contract_size, strike,
    index_price, amount)."""
    ints = {"quantity": pa.int64(), "contract_size": pa.int32(), "strike": pa.int64(),
            "index_price": pa.int64(), "amount": pa.int64()}
    return _map_columns(table, lambda name, col, i: col.cast(ints[name])
                        if name in ints else None)


def int64_quantity(table):
    return _map_columns(table, lambda name, col, i: col.cast(pa.int64())
                        if name == "quantity" else None)


def record_batch(table):
    return table.combine_chunks().to_batches()[0]


def reader(table):
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))


class CStreamOnly:
    """Exposes nothing but the Arrow PyCapsule stream protocol."""

    def __init__(self, table):
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


def pandas_df(table):
    return table.to_pandas()


def pandas_categorical(table):
    return table.to_pandas(strings_to_categorical=True)


def pandas_arrow_dtypes(table):
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def polars_df(table):
    return pl.from_arrow(table)


def polars_categorical(table):
    df = pl.from_arrow(table)
    return df.with_columns([pl.col(c).cast(pl.Categorical) for c, t in df.schema.items()
                            if t == pl.String])


def py_dict(table):
    return table.to_pydict()


def py_dict_iso(table):
    return iso_expiry(table).to_pydict()


def py_rows(table):
    return table.to_pylist()


VARIANTS = {
    "table": lambda t: t,
    "record_batch": record_batch,
    "record_batch_reader": reader,
    "multi_chunk": multi_chunk,
    "dictionary": lambda t: dictionary(t, chunked=False),
    "dictionary_per_chunk": dictionary,
    "dictionary_large_string": lambda t: dictionary_of(t, pa.large_string()),
    "dictionary_string_view": lambda t: dictionary_of(t, pa.string_view()),
    "string_view": lambda t: cast_strings(t, pa.string_view()),
    "large_string": lambda t: cast_strings(t, pa.large_string()),
    "iso_expiry_string": iso_expiry,
    "iso_expiry_large_string": lambda t: iso_expiry(t, pa.large_string()),
    "iso_expiry_string_view": lambda t: iso_expiry(t, pa.string_view()),
    "expiry_ns_utc": lambda t: expiry_unit(t, "ns", "UTC"),
    "expiry_ms_naive": lambda t: expiry_unit(t, "ms", None),
    "expiry_other_tz": lambda t: expiry_unit(t, "s", "Asia/Tokyo"),
    "pandas": pandas_df,
    "pandas_categorical": pandas_categorical,
    "pandas_arrow_dtypes": pandas_arrow_dtypes,
    "polars": polars_df,
    "polars_categorical": polars_categorical,
    "dict_of_lists": py_dict,
    "dict_of_lists_iso_expiry": py_dict_iso,
    "list_of_row_dicts": py_rows,
    "int64_quantity": int64_quantity,
    "integer_numbers": integer_numbers,
    "c_stream_only": lambda t: CStreamOnly(t),
    "c_stream_only_multi_chunk_dictionary": lambda t: CStreamOnly(dictionary(t)),
}


# -- result comparison --------------------------------------------------------------------------

ACCOUNT_COLUMNS = ["account", "equity", "actual_equity", "maintenance_margin", "initial_margin",
                   "used_margin", "available_margin", "max_withdrawable", "margin_ratio",
                   "status", "worst_scenario"]
UNIT_COLUMNS = ["account", "unit", "worst_case", "worst_case_usd", "roll_shock", "delta_shock",
                "short_option_minimum", "risk_matrix_margin", "maintenance_margin",
                "initial_margin", "delta", "gamma", "vega", "theta"]
POSITION_COLUMNS = ["account", "symbol", "value", "model_value", "unrealised_pnl", "delta",
                    "gamma", "vega", "theta", "mm_contribution", "im_contribution"]
RESULT_TABLES = ("accounts", "units", "positions")


def assert_same_table(got, want, what):
    assert got.column_names == want.column_names, what
    assert got.num_rows == want.num_rows, what
    for name in want.column_names:
        g, w = got.column(name), want.column(name)
        if pa.types.is_floating(w.type) and pa.types.is_floating(g.type):
            np.testing.assert_array_equal(g.to_numpy(zero_copy_only=False),
                                          w.to_numpy(zero_copy_only=False),
                                          err_msg=f"{what}.{name}")
        else:
            assert g.to_pylist() == w.to_pylist(), f"{what}.{name}"
    assert got.schema.equals(want.schema), f"{what}: {got.schema} != {want.schema}"
    assert got.equals(want), what


def assert_same_result(got, want):
    for name in RESULT_TABLES:
        assert_same_table(getattr(got, name), getattr(want, name), name)


@pytest.fixture(scope="module")
def reference():
    return run(canonical())


# -- tests ------------------------------------------------------------------------------------

def test_reference_result_columns(reference):
    """SPEC §9 column names exist."""
    for name, cols in (("accounts", ACCOUNT_COLUMNS), ("units", UNIT_COLUMNS),
                       ("positions", POSITION_COLUMNS)):
        table = getattr(reference, name)
        assert isinstance(table, pa.Table)
        missing = [c for c in cols if c not in table.column_names]
        assert not missing, f"{name} lacks {missing}"


def test_reference_result_has_no_nan(reference):
    for name in RESULT_TABLES:
        table = getattr(reference, name)
        assert table.num_rows > 0
        for col in table.column_names:
            arr = table.column(col)
            if pa.types.is_floating(arr.type):
                values = arr.to_numpy(zero_copy_only=False)
                assert not np.isnan(values).any(), f"NaN in {name}.{col}"
                assert arr.null_count == 0, f"nulls in {name}.{col}"


def test_reference_result_shape(reference):
    assert reference.accounts.column("account").to_pylist() == ["a1", "a2"]
    syms = reference.positions.column("symbol").to_pylist()
    for s in (PERP, FUT, CALL, PUT, ETH):
        assert s in syms
    units = set(zip(reference.units.column("account").to_pylist(),
                    reference.units.column("unit").to_pylist()))
    assert ("a1", "BTC/BTC") in units and ("a2", "BTC/BTC") in units
    assert any(a == "a2" and u.startswith("ETH/") for a, u in units)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_input_container_gives_the_same_result(variant, reference):
    convert = VARIANTS[variant]
    tables = {name: convert(t) for name, t in canonical().items()}
    result = run(tables)
    assert_same_result(result, reference)


@pytest.mark.parametrize("variant", ["record_batch", "record_batch_reader", "pandas", "polars",
                                     "dict_of_lists", "list_of_row_dicts", "c_stream_only",
                                     "dictionary_per_chunk", "string_view"])
@pytest.mark.parametrize("name", NAMES)
def test_one_table_in_another_container(name, variant, reference):
    """Only one input in the other container, the rest plain Tables."""
    tables = canonical()
    tables[name] = VARIANTS[variant](tables[name])
    assert_same_result(run(tables), reference)


def test_mixed_containers(reference):
    t = canonical()
    tables = {
        "positions": pl.from_arrow(t["positions"]).with_columns(
            pl.col("quantity").cast(pl.Int64)),
        "instruments": CStreamOnly(dictionary(t["instruments"])),
        "market": t["market"].to_pandas(),
        "index": t["index"].to_pylist(),
        "balances": reader(cast_strings(t["balances"], pa.string_view())),
    }
    assert_same_result(run(tables), reference)


def test_polars_string_columns_are_exported_as_views_or_categoricals():
    """Guard that the polars variants really exercise string_view and dictionary columns."""
    t = canonical()["positions"]
    plain = pa.table(polars_df(t))
    cat = pa.table(polars_categorical(t))
    assert not pa.types.is_string(plain.schema.field("account").type)
    assert pa.types.is_dictionary(cat.schema.field("account").type)


def test_chunked_dictionary_variant_really_has_different_dictionaries():
    t = dictionary(canonical()["instruments"])
    col = t.column("symbol")
    assert col.num_chunks > 1
    dicts = [c.dictionary.to_pylist() for c in col.chunks]
    assert len({tuple(d) for d in dicts}) > 1


def test_reader_is_consumed_once_only_and_results_do_not_depend_on_batches(reference):
    t = canonical()
    tables = {n: pa.RecordBatchReader.from_batches(x.schema, x.to_batches(max_chunksize=1))
              for n, x in t.items()}
    assert_same_result(run(tables), reference)


# -- risk arrays in other containers ------------------------------------------------------------

SPAN16_FUT = [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670,
              10000, 10000, -10000, -10000, 7000, -7000]
SPAN16_OPT = [-50, 40, 900, 1000, -800, -700, 1900, 2000, -1500, -1400,
              3000, 3100, -2000, -1900, 2500, -1200]


def _ra_tables():
    return {
        "positions": pa.table({"account": ["x", "x", "y"], "symbol": ["ESU4", "ESU4-C", "ESU4"],
                               "quantity": [2.0, -3.0, -1.0]}),
        "risk_arrays": pa.table({
            "symbol": ["ESU4"] * 16 + ["ESU4-C"] * 16,
            "scenario": pa.array(list(range(16)) * 2, type=pa.int64()),
            "pnl": [float(v) for v in SPAN16_FUT + SPAN16_OPT]}),
    }


@pytest.fixture(scope="module")
def ra_reference():
    t = _ra_tables()
    return pmrisk.margin_from_risk_arrays(t["positions"], t["risk_arrays"], model="span")


RA_VARIANTS = ["record_batch", "record_batch_reader", "multi_chunk", "dictionary_per_chunk",
               "string_view", "large_string", "pandas", "pandas_categorical", "polars",
               "polars_categorical", "dict_of_lists", "list_of_row_dicts", "c_stream_only"]


@pytest.mark.parametrize("variant", RA_VARIANTS)
def test_risk_arrays_every_container_gives_the_same_result(variant, ra_reference):
    t = {n: VARIANTS[variant](x) for n, x in _ra_tables().items()}
    result = pmrisk.margin_from_risk_arrays(t["positions"], t["risk_arrays"], model="span")
    assert_same_result(result, ra_reference)

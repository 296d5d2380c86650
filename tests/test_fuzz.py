"""Fuzzing every public entry point with mutated sample books: the outcome is a MarginError or
a valid, finite result.

Each example starts from an embedded sample (``samples.demo_book()``, a short
``samples.history()``, a SPAN risk-array portfolio) and applies one to three mutations, as a
careless or hostile user would: drop, rename or duplicate a column, change its type, put a
null or an extreme value (±1e308, 1e-300, nan, ±inf, 2**60, 0, -1) in a cell, empty the
table, duplicate, drop or shuffle rows, switch every string column to another Arrow layout,
or pass the table as a dict of columns or a list of rows (a dict with one short column too).
Then it asserts:

- the call raises ``pmrisk.MarginError`` or returns; no other exception type escapes;
- a result has no NaN and no ±inf in any numeric column (a margin ratio may be +inf/-inf
  only where the maintenance margin is 0, as documented), and account MM and IM >= 0;
- a Monitor that rejects an update is unchanged (its tables and state are equal to before);
- no input file changes (file-based backtests: every file is hashed before and after).

Deterministic under the ``ci`` profile (``derandomize=True``, tests/conftest.py); the
``nightly`` profile runs many more examples.  Model parameters that are valid but huge
(``n_directions``, ``shell_steps``) are only fuzzed through ``Model.from_dict``, never
computed: a resource bound, not this test, is what protects the machine from them.
"""

import hashlib
import math
import pathlib
import tempfile
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

import pmrisk
from pmrisk import samples

BIG = 2 ** 60
VALUES = [1e308, -1e308, 1e-300, math.nan, math.inf, -math.inf, BIG, 0, -1]
LAYOUTS = ["large_string", "string_view", "dictionary"]
OPS = ["drop_column", "rename_column", "duplicate_column", "to_string", "to_int", "to_bool",
       "null", "extreme", "empty", "duplicate_row", "drop_row", "shuffle", "layout"]
FORMS = ["table", "table", "table", "pydict", "rows", "short_column"]
MODELS = ["deribit_pme", "span", "standard"]

N = settings().max_examples
FEW = max(8, N // 4)        # for the slow entry points (liquidation plans, backtests, monitors)

DEMO = samples.demo_book()
VT = DEMO["valuation_time"]
BOOK = {k: v for k, v in DEMO.items() if k != "valuation_time"}
HISTORY = samples.history(days=1, accounts=3, step_minutes=360)
RISK_ARRAYS = {
    "positions": pa.table({"account": ["a", "a", "b"], "symbol": ["FUT", "OPT", "FUT"],
                           "quantity": [1.0, -2.0, 3.0]}),
    "risk_arrays": pa.table({
        "symbol": ["FUT"] * 16 + ["OPT"] * 16, "scenario": list(range(16)) * 2,
        "pnl": [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670, 10000, 10000,
                -10000, -10000, 7000, -7000] + [float(50 * i - 400) for i in range(16)]}),
    "index": pa.table({"underlying": ["USD"], "index_price": [1.0]}),
}


# -- mutations ----------------------------------------------------------------------------
def _numeric(t):
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _stringish(t):
    return (pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_string_view(t) or pa.types.is_dictionary(t))


def _replace(t, name, column):
    """``t`` with its first column called ``name`` replaced (an earlier mutation may have
    duplicated it)."""
    return t.set_column(t.column_names.index(name), name, column)


def _layout(t, layout):
    for i, f in enumerate(t.schema):
        if not pa.types.is_string(f.type):
            continue
        col = t.column(i)
        if layout == "dictionary":
            col = pc.dictionary_encode(col)
        else:
            col = col.cast(getattr(pa, layout)())
        t = t.set_column(i, f.name, col)
    return t


def _rows(t, rows):
    """Rows ``rows`` of ``t`` in that order, by slices (pyarrow's take has no kernel for
    string_view columns, which the layout mutation makes)."""
    return pa.concat_tables([t.slice(0, 0)] + [t.slice(j, 1) for j in rows])


def mutate(data, t):
    """One mutation of table ``t``, drawn from ``data``; returns (table, description)."""
    op = data.draw(st.sampled_from(OPS), label="op")
    cols = t.column_names
    if op in ("empty", "shuffle", "layout", "duplicate_row", "drop_row") or not cols:
        if op == "empty" or not cols:
            return t.slice(0, 0), "empty"
        if op == "layout":
            layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
            return _layout(t, layout), f"strings as {layout}"
        if t.num_rows == 0:
            return t, "no rows"
        if op == "shuffle":
            perm = data.draw(st.permutations(range(t.num_rows)), label="perm")
            return _rows(t, perm), "shuffled rows"
        i = data.draw(st.integers(0, t.num_rows - 1), label="row")
        if op == "duplicate_row":
            return pa.concat_tables([t, t.slice(i, 1)]), f"row {i} duplicated"
        keep = [j for j in range(t.num_rows) if j != i]
        return _rows(t, keep), f"row {i} dropped"
    col = data.draw(st.sampled_from(cols), label="column")
    k = cols.index(col)     # by position: an earlier mutation may have duplicated the name
    if op == "drop_column":
        return t.remove_column(k), f"{col} dropped"
    if op == "rename_column":
        return t.rename_columns([c + "_x" if c == col else c for c in cols]), f"{col} renamed"
    if op == "duplicate_column":
        return t.append_column(col, t.column(k)), f"{col} twice"
    values = t.column(k).to_pylist()
    if op == "to_string":
        return _replace(t, col, pa.array([None if v is None else str(v) for v in values],
                                         pa.string())), f"{col} as strings"
    if op == "to_bool":
        return _replace(t, col, pa.array([None if v is None else bool(v) for v in values],
                                         pa.bool_())), f"{col} as booleans"
    if op == "to_int":
        def as_int(v):
            try:
                v = int(v)
            except (TypeError, ValueError, OverflowError):
                return None
            return v if -2 ** 63 <= v < 2 ** 63 else None
        return _replace(t, col, pa.array([as_int(v) for v in values], pa.int64())), \
            f"{col} as int64"
    if t.num_rows == 0:
        return t, "no rows"
    i = data.draw(st.integers(0, t.num_rows - 1), label="row")
    if op == "null":
        values[i] = None
        return _replace(t, col, pa.array(values, t.column(k).type)), f"{col}[{i}] null"
    # extreme value: in a numeric column (an int column stays int when it can)
    if not _numeric(t.column(k).type):
        return t, "no numeric column"
    v = data.draw(st.sampled_from(VALUES), label="value")
    if isinstance(v, int) and pa.types.is_integer(t.column(k).type) or v == BIG:
        ints = [None if x is None else (int(x) if math.isfinite(x) else 0) for x in values]
        ints[i] = v
        return _replace(t, col, pa.array(ints, pa.int64())), f"{col}[{i}] = {v!r} (int64)"
    values[i] = float(v)
    return _replace(t, col, pa.array(values, pa.float64())), f"{col}[{i}] = {v!r}"


def form(data, t):
    """The table as the user passes it: a table, a dict of columns, a list of rows; and the
    form's name."""
    f = data.draw(st.sampled_from(FORMS), label="form")
    if f == "pydict":
        return t.to_pydict(), f
    if f == "rows":
        return t.to_pylist(), f
    if f == "short_column" and t.num_columns and t.num_rows:
        d = t.to_pydict()
        first = t.column_names[0]
        d[first] = d[first][:-1]
        return d, "dict with a short first column"
    return t, "table"


def mutated(data, tables, names=None, forms=True):
    """``tables`` with 1-3 mutations on tables among ``names`` and (``forms``) each table's
    form drawn."""
    names = names or [k for k, v in tables.items() if v is not None]
    out = dict(tables)
    done = []
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        name = data.draw(st.sampled_from(names), label="table")
        out[name], what = mutate(data, out[name])
        done.append(f"{name}: {what}")
    for name in names if forms else ():
        out[name], f = form(data, out[name])
        if f != "table":
            done.append(f"{name} passed as {f}")
    note = "; ".join(done)
    return out, note


# -- checks -------------------------------------------------------------------------------
def call(fn, *args, **kwargs):
    """``fn(...)``, or None when it raised a MarginError; any other exception escapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # warnings are allowed; only the outcome is checked
        try:
            return fn(*args, **kwargs)
        except pmrisk.MarginError:
            return None


def assert_finite(table, name, note):
    ratio_ok = None
    if "margin_ratio" in table.column_names and "maintenance_margin" in table.column_names:
        ratio_ok = pc.fill_null(pc.equal(table["maintenance_margin"], 0.0), False)
    for c, f in zip(table.column_names, table.schema):
        if not pa.types.is_floating(f.type):
            continue
        finite = pc.fill_null(pc.is_finite(table[c]), True)
        if c in ("margin_ratio", "margin_ratio_after", "ratio_before", "ratio_after"):
            # +-inf is documented where MM = 0 (margin_ratio_after: once nothing is charged)
            inf_ok = ratio_ok if (c == "margin_ratio" and ratio_ok is not None) else \
                pc.fill_null(pc.is_inf(table[c]), False)
            finite = pc.or_(finite, pc.and_(inf_ok, pc.invert(pc.fill_null(
                pc.is_nan(table[c]), False))))
        bad = pc.invert(finite).to_numpy(zero_copy_only=False)
        assert not bad.any(), f"{name}.{c} not finite at rows {np.flatnonzero(bad)[:5]} " \
            f"after {note}"


def assert_valid(result, note):
    for name in ("accounts", "units", "positions"):
        assert_finite(getattr(result, name), name, note)
    acc = result.accounts
    for c in ("maintenance_margin", "initial_margin"):
        if c in acc.column_names:
            assert pc.min(acc[c]).as_py() is None or pc.min(acc[c]).as_py() >= 0, \
                f"accounts.{c} < 0 after {note}"


# -- entry points -------------------------------------------------------------------------
@settings(max_examples=N)
@given(data=st.data())
def test_margin(data):
    tables, note = mutated(data, BOOK)
    model = data.draw(st.sampled_from(MODELS), label="model")
    r = call(pmrisk.margin, **tables, model=model, valuation_time=VT)
    if r is not None:
        assert_valid(r, note)


@settings(max_examples=N)
@given(data=st.data())
def test_margin_from_risk_arrays(data):
    tables, note = mutated(data, RISK_ARRAYS)
    r = call(pmrisk.margin_from_risk_arrays, **tables, model="span")
    if r is not None:
        assert_valid(r, note)


@settings(max_examples=FEW)
@given(data=st.data())
def test_liquidation_plan(data):
    tables, note = mutated(data, BOOK)
    plan = call(pmrisk.liquidation_plan, **tables, model="deribit_pme", valuation_time=VT)
    if plan is not None:
        assert_finite(plan, "plan", note)


@settings(max_examples=FEW)
@given(data=st.data())
def test_monitor_constructor(data):
    tables, note = mutated(data, BOOK)
    mon = call(pmrisk.Monitor, **tables, model="deribit_pme", valuation_time=VT)
    if mon is not None:
        assert_valid(mon.result(), note)


UPDATES = {"market": BOOK["market"], "index": BOOK["index"], "positions": BOOK["positions"],
           "balances": BOOK["balances"], "open_orders": BOOK["open_orders"]}


@settings(max_examples=N)
@given(data=st.data())
def test_monitor_update(data):
    # an update of one or two tables (their rows, mutated); a rejected update changes nothing
    names = data.draw(st.lists(st.sampled_from(sorted(UPDATES)), min_size=1, max_size=2,
                               unique=True), label="update tables")
    tables, note = mutated(data, {k: UPDATES[k] for k in names})
    mon = pmrisk.Monitor(**BOOK, model="deribit_pme", valuation_time=VT, alert_queue=0)
    before = mon.result()
    state = mon.state()
    up = call(mon.update, **tables, at=VT)
    if up is None:
        after = mon.result()
        for name in ("accounts", "units", "positions"):
            assert getattr(after, name).equals(getattr(before, name)), \
                f"a rejected update changed the monitor's {name}: {note}"
        now = mon.state()
        for k, v in state.items():
            same = (v is None and now[k] is None) if v is None or now[k] is None else \
                (v.equals(now[k]) if hasattr(v, "equals") else v == now[k])
            assert same, f"a rejected update changed the monitor's {k}: {note}"
    else:
        assert_valid(mon.result(), note)
        assert_finite(up.accounts, "update.accounts", note)


@settings(max_examples=FEW)
@given(data=st.data())
def test_backtest_tables(data):
    tables, note = mutated(data, HISTORY)
    r = call(pmrisk.backtest, **tables, model="deribit_pme", progress=False)
    if r is not None:
        assert_finite(r.accounts, "accounts", note)


def _layout_back(t):
    """string_view columns as string (what a Parquet file stores)."""
    for i, f in enumerate(t.schema):
        if pa.types.is_string_view(f.type):
            t = t.set_column(i, f.name, t.column(i).cast(pa.string()))
    return t


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=FEW)
@given(data=st.data())
def test_backtest_files(data):
    # Parquet inputs (mutated before writing); out= beside them or over them: no input
    # file may change, whatever the outcome
    tables, note = mutated(data, HISTORY, names=["positions", "market", "balances"],
                           forms=False)
    over = data.draw(st.sampled_from(["beside", "over the inputs"]), label="out")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "data"
        root.mkdir()
        paths = {}
        for name, t in tables.items():
            # as `pmrisk samples history` writes them: instruments a file, the others
            # dataset directories (root/positions/part-0.parquet, ...)
            path = root / (f"{name}.parquet" if name == "instruments" else name)
            if name != "instruments":
                path.mkdir()
            pq.write_table(_layout_back(t), path / "part-0.parquet" if path.is_dir() else path)
            paths[name] = str(path)
        before = _hashes(root)
        out = root if over == "over the inputs" else pathlib.Path(tmp) / "out"
        r = call(pmrisk.backtest, **paths, model="deribit_pme", out=str(out), overwrite=True,
                 tables=("accounts", "positions"), progress=False)
        after = {k: v for k, v in _hashes(root).items() if k in before}
        assert after == before, f"input files changed ({over}): {note}"
        if r is not None:
            assert_finite(r.read("accounts"), "accounts", note)


@settings(max_examples=N)
@given(data=st.data())
def test_model_from_dict(data):
    key = data.draw(st.sampled_from(
        ["risk_multiplier", "n_directions", "shell_steps", "joint_grid_nodes", "mm_factor",
         "im_factor", "loan_mmr", "liquidation_target", "thresholds", "correlations",
         "collateral", "preset", "BTC", "exclude", "scenarios"]), label="key")
    value = data.draw(st.one_of(
        st.sampled_from(VALUES), st.sampled_from(["x", "", None, True]),
        st.lists(st.sampled_from(VALUES), max_size=3),
        st.dictionaries(st.sampled_from(["price_range", "vol_floor", "tiers_usd", "rate", 1]),
                        st.sampled_from(VALUES + ["x", None]), max_size=2)), label="value")
    preset = data.draw(st.sampled_from(MODELS), label="preset")
    model = call(pmrisk.Model.from_dict, {"preset": preset, key: value})
    if model is not None:
        assert isinstance(model, pmrisk.Model)

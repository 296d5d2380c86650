"""Issue 11's rule, read from the source: no numpy arithmetic on per-position or per-unit
arrays in the bindings outside table building; such work is a kernel in ``kernel/`` with a
twin in ``tests/oracles.py``.

The guard walks every module of ``bindings/`` (:data:`COVERED`: all but those of
:data:`EXEMPT`, each with its reason) and lists every call of a numpy function
(``np.x(...)``) that is not allocation, conversion, sorting or searching (:data:`STRUCTURAL`).
Each must be in :data:`ALLOWED` with the reason it is not per-position or per-unit arithmetic;
an entry must name a call that exists (a stale one fails).  Operators on arrays (``a * b``) are
not seen: the guard catches the numpy calls, a review the rest.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# modules that compute no margin figure, each with its reason (the rest is COVERED)
EXEMPT = {
    "bindings/samples.py": "sample books and seeded market paths, generated once: inputs, "
    "not margin figures",
    "bindings/model/calibration.py": "calibration of the model's ranges and correlations from "
    "market histories: per time series and underlying, not per position or unit",
    "bindings/cli/calibrate.py": "the calibration report's plot",
    "bindings/cli/monitor_view.py": "the terminal view's percentiles and the demo feed's "
    "price paths",
}

COVERED = tuple(sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "bindings").rglob("*.py")
    if str(p.relative_to(ROOT)) not in EXEMPT))

STRUCTURAL = frozenset("""
    zeros empty full ones arange array asarray ascontiguousarray concatenate zeros_like
    empty_like full_like ones_like column_stack stack vstack hstack atleast_1d ndim dtype
    int64 float64 datetime64 iinfo finfo errstate frombuffer broadcast_to repeat tile copyto
    ravel reshape result_type argsort sort lexsort searchsorted unique flatnonzero nonzero isin
""".split())

# (module, enclosing function, numpy function) -> why it may stay
ALLOWED = {
    ("bindings/backtest/run.py", "_Source.time_counts", "bincount"):
        "rows per distinct time, merged across a dataset's batches: per time, not per row",
    ("bindings/backtest/run.py", "_plan", "bincount"): "rows per distinct time: per time",
    ("bindings/backtest/run.py", "_plan", "cumsum"): "the batch plan over distinct times",
    ("bindings/backtest/run.py", "_check_batch_rows", "isfinite"): "an argument's check",
    ("bindings/engine/binance.py", "position_columns", "where"): "the positions table",
    ("bindings/engine/risk_arrays.py", "margin_from_risk_arrays", "bincount"):
        "the input check: every symbol has all its scenarios",
    ("bindings/engine/risk_arrays.py", "_final_cells", "where"): "per scenario set (model)",
    ("bindings/monitor/what_if.py", "_legs", "where"): "per trade of a what-if basket",
    ("bindings/monitor/what_if.py", "_legs", "isnan"): "per trade of a what-if basket",
    # io/book: input checks and the sorted search
    ("bindings/io/book.py", "Book.price_of", "where"): "one asset's price: per snapshot",
    ("bindings/io/book.py", "Book.price_of", "isnan"): "one asset's price: per snapshot",
    ("bindings/io/book.py", "_check_priced", "isnan"): "an input check (unpriced assets)",
    ("bindings/io/book.py", "_enum", "count_nonzero"): "an input check (unknown names)",
    ("bindings/io/book.py", "_instruments_by_rule", "isnan"):
        "an input check (a strike for every option), the rule-by-rule path",
    ("bindings/io/book.py", "_instances_by_rule", "isnan"):
        "input checks (a mark_iv for every held option, an index row per underlying)",
    ("bindings/io/book.py", "_snapshots", "minimum"):
        "searching: the snapshot of each distinct time (searchsorted's clamp)",
    ("bindings/io/book.py", "_instances_by_rule.find", "minimum"):
        "searching: a market row by sorted key (searchsorted's clamp), sparse keys only",
    ("bindings/io/book.py", "_instances_by_rule.find", "where"):
        "searching: a market row by sorted key (searchsorted's hit test), sparse keys only",
    # io/arrow: the column readers' checks (the kernel pass first; these name the rows)
    ("bindings/io/arrow.py", "float_column", "isfinite"):
        "an input check that names the rows: after keys.value_range finds a bad value, or on "
        "a chunked column",
    ("bindings/io/arrow.py", "float_column", "abs"):
        "an input check that names the rows (magnitude bound), as above",
    ("bindings/io/arrow.py", "float_column", "where"): "nulls as NaN on the checking path",
    ("bindings/io/arrow.py", "number_parts", "packbits"):
        "conversion: the validity bitmap of a chunked column, as the kernels read it",
    ("bindings/io/arrow.py", "_one_value", "array_equal"):
        "a string column's bytes compared once (one account's book): no per-row arithmetic",
    ("bindings/io/arrow.py", "raise_rows", "sum"): "the error's count of bad rows",
    ("bindings/io/arrow.py", "time_column", "unpackbits"):
        "conversion: a timestamp column's validity bitmap, to put NAT at its nulls",
    ("bindings/io/arrow.py", "time_column", "where"):
        "conversion: NAT at a timestamp column's nulls (no arithmetic)",
    ("bindings/io/arrow.py", "to_ns", "isnat"): "one argument (valuation_time)",
    ("bindings/io/arrow.py", "to_ns", "datetime_data"): "one argument (valuation_time)",
    ("bindings/io/arrow.py", "sum_by", "bincount"):
        "table building: results' per-account sums of excluded value",
    # engine
    ("bindings/engine/core.py", "collateral_usd", "cumsum"):
        "the collateral rules' tier offsets: per distinct asset of the balances",
    ("bindings/engine/core.py", "lay_out", "fromiter"):
        "conversion: each balance row's asset code, as the kernels read it",
    ("bindings/engine/core.py", "phase_arguments.conv", "may_share_memory"):
        "whether a kept argument still views its input: no arithmetic",
    ("bindings/engine/resources.py", "_joint", "ceil"): "the memory estimate: one number",
    ("bindings/engine/resources.py", "check_memory", "ceil"): "the error's suggested limit",
    ("bindings/engine/correlated.py", "make_grid", "ceil"):
        "the joint grid's nodes: per underlying of the model",
    ("bindings/engine/correlated.py", "make_grid", "log1p"):
        "the joint grid's nodes: per underlying of the model",
    ("bindings/engine/correlated.py", "make_grid", "maximum"):
        "the joint grid's nodes: per underlying of the model",
    ("bindings/engine/correlated.py", "make_grid", "where"):
        "the joint grid's nodes: per underlying of the model",
    ("bindings/engine/correlated.py", "JointStress._group_arrays", "cumsum"):
        "offsets of the correlation groups: per group of underlyings",
    ("bindings/engine/correlated.py", "JointStress._direction_intervals", "clip"):
        "the delta directions' grid intervals: per direction of a group (the model's)",
    ("bindings/engine/correlated.py", "JointStress._direction_intervals", "floor"):
        "the delta directions' grid intervals: per direction of a group (the model's)",
    ("bindings/engine/correlated.py", "JointStress.run", "intersect1d"):
        "searching: the selected accounts already described",
    ("bindings/engine/correlated.py", "JointStress._blocks", "diff"):
        "the plan of account blocks: is the selection sorted, where the blocks cut",
    ("bindings/engine/correlated.py", "JointStress._blocks", "cumsum"):
        "the plan of account blocks: positions held up to each account, cut every "
        "BLOCK_POSITIONS",
    # results: table building and the error path
    ("bindings/results.py", "_not_finite", "isfinite"):
        "the error path: the rows to name once a kernel's finiteness flag is down",
    ("bindings/results.py", "_position_risk_vectors", "cumsum"):
        "table building: each row's scenario cell in the long risk-vector table",
    ("bindings/results.py", "_unit_risk_vectors", "cumsum"):
        "table building: each row's scenario cell in the long risk-vector table",
    ("bindings/results.py", "_timed", "diff"): "table building: are the rows in time order",
    ("bindings/results.py", "_units_table", "isnan"):
        "table building: the nulls of a correlated model's unit price column",
    ("bindings/results.py", "margin_ratio", "broadcast_arrays"):
        "conversion: a public helper's arguments to the kernel's shapes",
    # monitor
    ("bindings/monitor/alerts.py", "AlertRules.__init__", "isfinite"): "an argument's check",
    ("bindings/monitor/alerts.py", "AlertRules.batch", "isnan"):
        "table building: the alerts' null before-ratios (new accounts)",
    ("bindings/monitor/alerts.py", "AlertRules.batch", "where"):
        "table building: the alerts' statuses before (new accounts above every level)",
    ("bindings/monitor/state.py", "MarketState.tables", "isnan"):
        "table building: the market table's nulls",
    # model and venues: per underlying pair, per bracket, per account of a venue's check
    ("bindings/model/correlation.py", "correlation_matrix", "abs"):
        "an input check of the correlation matrix: per pair of underlyings",
    ("bindings/model/correlation.py", "correlation_matrix", "argmax"):
        "an input check of the correlation matrix: per pair of underlyings",
    ("bindings/model/correlation.py", "correlation_matrix", "fill_diagonal"):
        "the correlation matrix: per pair of underlyings",
    ("bindings/model/correlation.py", "correlation_matrix", "outer"):
        "the correlation matrix: per pair of underlyings",
    ("bindings/model/correlation.py", "correlation_matrix", "unravel_index"):
        "an input check of the correlation matrix: the pair to name",
    ("bindings/venues/brackets.py", "_validated", "abs"):
        "an input check of a bracket ladder: per bracket",
    ("bindings/venues/brackets.py", "_validated", "cumsum"):
        "an input check of a bracket ladder: per bracket",
    ("bindings/venues/brackets.py", "_validated", "diff"):
        "an input check of a bracket ladder: per bracket",
    ("bindings/venues/brackets.py", "_validated", "isnan"):
        "an input check of a bracket ladder: per bracket",
    ("bindings/venues/brackets.py", "_validated", "maximum"):
        "an input check of a bracket ladder: per bracket",
    ("bindings/venues/brackets.py", "_validated", "roll"):
        "an input check of a bracket ladder: per bracket",
    ("bindings/venues/brackets.py", "_packed", "cumsum"):
        "the ladders' offsets: per ladder",
    ("bindings/venues/brackets.py", "locate", "isfinite"):
        "an input check (a finite notional to locate)",
    ("bindings/venues/eligibility.py", "eligibility", "cumsum"):
        "table building: the offsets of each account's failed rules",
    ("bindings/venues/eligibility.py", "eligibility.bad", "sum"): "the error's count of rows",
    ("bindings/venues/eligibility.py", "eligibility.number_column", "isfinite"):
        "an input check that names the rows",
}


def _numpy_calls(path):
    """``(enclosing function, numpy function)`` of each numpy call in the module at ``path``
    (functions dotted with their class or outer function)."""
    found = []
    stack = []

    class Visitor(ast.NodeVisitor):
        def scoped(self, node):
            stack.append(node.name)
            self.generic_visit(node)
            stack.pop()

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = scoped

        def visit_Call(self, node):
            fn, parts = node.func, []
            while isinstance(fn, ast.Attribute):
                parts.append(fn.attr)
                fn = fn.value
            if isinstance(fn, ast.Name) and fn.id in ("np", "numpy") and parts:
                found.append((".".join(stack) or "<module>", ".".join(reversed(parts))))
            self.generic_visit(node)

    Visitor().visit(ast.parse((ROOT / path).read_text()))
    return found


def _arithmetic():
    return {(path, where, name) for path in COVERED for where, name in _numpy_calls(path)
            if name not in STRUCTURAL}


def test_no_numpy_arithmetic_outside_the_allowed_calls():
    extra = sorted(_arithmetic() - set(ALLOWED))
    assert not extra, ("numpy arithmetic in the bindings: move it to a kernel (kernel/, with a "
                       f"twin in tests/oracles.py), or say why it may stay in ALLOWED: {extra}")


def test_every_allowed_call_exists():
    stale = sorted(set(ALLOWED) - _arithmetic())
    assert not stale, f"ALLOWED names calls that are gone: {stale}"


def test_the_walk_sees_nested_functions_and_methods():
    calls = _numpy_calls("bindings/backtest/run.py")
    assert ("_Source.time_counts", "bincount") in calls
    assert ("_plan", "cumsum") in calls


def test_every_module_of_the_bindings_is_covered_or_exempt():
    every = {str(p.relative_to(ROOT)) for p in (ROOT / "bindings").rglob("*.py")}
    assert set(EXEMPT) <= every, f"EXEMPT names modules that are gone: {set(EXEMPT) - every}"
    assert set(COVERED) == every - set(EXEMPT)
    assert "bindings/engine/core.py" in COVERED and "bindings/results.py" in COVERED

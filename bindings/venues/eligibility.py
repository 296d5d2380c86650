"""Portfolio-margin eligibility: a separate check on an accounts table.

An account is eligible when it passes every rule below; the thresholds are the seed's defaults
(:data:`DEFAULT_RULES`) and each one is a parameter.  Failed rules are reported by name, always
in the order of :data:`RULES`:

==============  ====================================================  ==========================
rule            fails when                                            parameter
==============  ====================================================  ==========================
equity          ``equity_btc < min_equity_btc``                       ``min_equity_btc`` (5)
history_days    ``futures_history_days < min_history_days``           ``min_history_days`` (30)
trades          ``futures_trades < min_trades``                       ``min_trades`` (10)
kyc_level       ``kyc_level < min_kyc_level``                         ``min_kyc_level`` (2)
certification   not ``certification_passed`` (when required)          ``require_certification``
terms           not ``terms_accepted`` (when required)                ``require_terms``
jurisdiction    ``jurisdiction`` in the excluded list (any case)      ``excluded_jurisdictions``
==============  ====================================================  ==========================

A value exactly at a threshold passes (every comparison is ``>=``).
"""

import math
import numbers
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..io import schema
from ..io.arrow import as_table, check_columns, codes, duplicated, str_column
from ..io.book import read_index
from ..errors import MarginError

#: The seed's rules.  ``equity_asset`` is the asset equity is measured in (the
#: ``equity_btc`` columns and ``min_equity_btc`` are in it); ``btc_price`` is its USD price,
#: an alternative to an ``index`` table for converting USD ``equity``.
DEFAULT_RULES = {
    "min_equity_btc": 5.0,
    "min_history_days": 30,
    "min_trades": 10,
    "min_kyc_level": 2,
    "require_certification": True,
    "require_terms": True,
    "excluded_jurisdictions": ["US", "CA", "SG"],
    "equity_asset": "BTC",
    "btc_price": None,
}

#: Rule names, in the fixed order in which ``failed_rules`` lists them.
RULES = ("equity", "history_days", "trades", "kyc_level", "certification", "terms",
         "jurisdiction")

#: Accounts columns as in :mod:`pmrisk.io.schema`, plus two booleans (checked here).  Nulls are
#: checked here too, so that errors name the offending rows by ``account``.
ACCOUNTS = {
    "account": ("str", True, True),
    "equity_btc": ("float", False, True),
    "equity": ("float", False, True),
    "futures_history_days": ("float", True, True),
    "futures_trades": ("int", True, True),
    "kyc_level": ("int", True, True),
    "jurisdiction": ("str", True, True),
}
BOOLS = ("certification_passed", "terms_accepted")

SCHEMA = pa.schema([("account", pa.string()), ("eligible", pa.bool_()),
                    ("failed_rules", pa.list_(pa.string())), ("equity_btc", pa.float64())])


def _number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _flag(v):
    return isinstance(v, (bool, np.bool_))


def _codes_list(v):
    return (isinstance(v, (list, tuple, set, frozenset))
            and all(isinstance(j, str) and j.strip() for j in v))


_RULE_CHECKS = {
    "min_equity_btc": (_number, "a finite number"),
    "min_history_days": (lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    "min_trades": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "min_kyc_level": (_integer, "an integer"),
    "require_certification": (_flag, "True or False"),
    "require_terms": (_flag, "True or False"),
    "excluded_jurisdictions": (_codes_list, "a list of country codes such as ['US', 'CA']"),
    "equity_asset": (lambda v: isinstance(v, str) and bool(v.strip()), "an asset such as 'BTC'"),
    "btc_price": (lambda v: v is None or (_number(v) and v > 0), "None or a finite number > 0"),
}


def _rules(rules):
    """:data:`DEFAULT_RULES` with ``rules`` applied; an unknown key or bad value is an error."""
    if rules is None:
        rules = {}
    if not isinstance(rules, Mapping):
        raise MarginError("rules", None, f"a dict of rule overrides, got {type(rules).__name__}")
    merged = dict(DEFAULT_RULES)
    for key, value in rules.items():
        if key not in _RULE_CHECKS:
            raise MarginError("rules", key, f"one of {', '.join(DEFAULT_RULES)}",
                              hint="An unknown rule is an error, never ignored")
        ok, what = _RULE_CHECKS[key]
        if not ok(value):
            raise MarginError("rules", key, f"{what}, got {value!r}")
        merged[key] = value
    return merged


def _null_mask(table, col):
    return np.asarray(table.column(col).is_null().to_numpy(zero_copy_only=False), dtype=bool)


def eligibility(accounts, rules=None, index=None):
    """Which accounts may use portfolio margin, and which rules each one fails.

    Parameters
    ----------
    accounts : Arrow table-like
        A pyarrow Table, RecordBatch or RecordBatchReader, a dict of columns, or anything with
        ``__arrow_c_stream__`` (pandas, polars, duckdb).  One row per account: ``account``
        (string, unique), equity as **either** ``equity_btc`` (float, in ``equity_asset``)
        **or** ``equity`` (float, USD), ``futures_history_days`` (number >= 0),
        ``futures_trades`` (integer >= 0), ``kyc_level`` (integer), ``certification_passed``
        and ``terms_accepted`` (bool), ``jurisdiction`` (ISO country code, any case).  No
        nulls.  Other columns are ignored.
    rules : dict, optional
        Overrides of :data:`DEFAULT_RULES` (keys as there).
    index : Arrow table-like, optional
        ``underlying``, ``index_price`` (as for :func:`pmrisk.margin`): converts USD ``equity``
        with the ``equity_asset`` row.  ``rules["btc_price"]`` may be given instead.

    Returns
    -------
    pyarrow.Table
        One row per account, in input order: ``account``, ``eligible`` (bool),
        ``failed_rules`` (list<string>, names from :data:`RULES` in that order; empty when
        eligible) and ``equity_btc`` (float64, the equity the ``equity`` rule compared).

    Raises
    ------
    MarginError
        Bad accounts table (a missing or wrong-typed column, nulls, non-finite numbers, negative
        days or trades, an empty jurisdiction, duplicate accounts, both or neither equity
        columns, USD equity without a price), bad index table, or an unknown or wrong-typed
        rule.  Nothing is returned for a failing call.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from pmrisk.venues.eligibility import eligibility
    >>> accounts = pa.table({
    ...     "account": ["a1", "a2"], "equity_btc": [5.0, 4.9],
    ...     "futures_history_days": [30, 12], "futures_trades": [10, 3], "kyc_level": [2, 2],
    ...     "certification_passed": [True, True], "terms_accepted": [True, False],
    ...     "jurisdiction": ["DE", "us"]})
    >>> out = eligibility(accounts)
    >>> out.column("eligible").to_pylist()
    [True, False]
    >>> out.column("failed_rules").to_pylist()[1]
    ['equity', 'history_days', 'trades', 'terms', 'jurisdiction']
    >>> eligibility(accounts, rules={"min_equity_btc": 4.0}).column("failed_rules")[1].as_py()
    ['history_days', 'trades', 'terms', 'jurisdiction']
    """
    r = _rules(rules)
    t = as_table(accounts, "accounts")
    if t is None:
        raise MarginError("accounts", None, "a table (it is required)")
    idx = as_table(index, "index")

    # -- columns: presence and types, then the account key ------------------------------------
    check_columns(t, "accounts", ACCOUNTS)
    for col in BOOLS:
        if col not in t.column_names:
            raise MarginError("accounts", col, "this column to be present",
                              hint=f"Columns given: {', '.join(t.column_names)}")
        typ = t.schema.field(col).type
        if not (pa.types.is_boolean(typ) or pa.types.is_null(typ)):
            raise MarginError("accounts", col, f"a boolean column, got {typ}")
    has_btc, has_usd = ("equity_btc" in t.column_names), ("equity" in t.column_names)
    if has_btc == has_usd:
        raise MarginError("accounts", "equity_btc", "exactly one of the columns equity_btc "
                          f"(in {r['equity_asset']}) and equity (in USD)",
                          hint=f"Columns given: {', '.join(t.column_names)}")
    null = _null_mask(t, "account")
    if null.any():                      # no key to name these rows by: give their positions
        raise MarginError("accounts", "account", "no nulls", keys=("row",), n_bad=int(null.sum()),
                          rows=[(int(i),) for i in np.flatnonzero(null)[:5]])
    account = str_column(t, "account")

    def bad(col, mask, expected, hint=None):
        rows = account.filter(pa.array(mask)).slice(0, 5).to_pylist()
        raise MarginError("accounts", col, expected, rows=[(a,) for a in rows],
                          keys=("account",), n_bad=int(np.sum(mask)), hint=hint)

    dup = duplicated(codes(account)[0])
    if dup.any():
        bad("account", dup, "unique accounts (one row per account)")
    equity_col = "equity_btc" if has_btc else "equity"
    for col in (equity_col, "futures_history_days", "futures_trades", "kyc_level", *BOOLS,
                "jurisdiction"):
        null = _null_mask(t, col)
        if null.any():
            bad(col, null, "no nulls")

    # -- values ---------------------------------------------------------------------------------
    def number_column(col, nonnegative):
        arr = t.column(col)             # a null-typed column gets here only when empty
        values = (arr.cast(pa.float64()) if pa.types.is_null(arr.type) else arr).to_numpy()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad(col, ~np.isfinite(values), "finite numbers")
        if nonnegative and (values < 0).any():
            bad(col, values < 0, "numbers >= 0")
        return values

    equity = number_column(equity_col, False).astype(np.float64)
    days = number_column("futures_history_days", True)
    trades = number_column("futures_trades", True)
    kyc = number_column("kyc_level", False)
    cert, terms = (t.column(c).cast(pa.bool_()).to_numpy() for c in BOOLS)
    country = pc.utf8_upper(pc.utf8_trim_whitespace(str_column(t, "jurisdiction")))
    empty = np.asarray(pc.equal(country, "").to_numpy(zero_copy_only=False), dtype=bool)
    if empty.any():
        bad("jurisdiction", empty, "a non-empty ISO country code such as 'DE'")

    # -- index / price (only USD equity needs one; a given index is validated either way) -------
    prices = {}
    if idx is not None:
        if r["btc_price"] is not None:
            raise MarginError("rules", "btc_price", "either an index table or "
                              "rules['btc_price'], not both")
        check_columns(idx, "index", schema.INDEX)
        prices = read_index(idx)
    if has_usd:
        asset = r["equity_asset"]
        price = r["btc_price"] if r["btc_price"] is not None else prices.get(asset)
        if price is None:
            bad("equity", np.ones(len(t), dtype=bool), f"equity in {asset} (equity_btc), or a "
                f"{asset} price to convert USD equity",
                hint=f"Give an index table with a {asset} row or rules['btc_price']")
        equity = equity / price

    # -- rules ----------------------------------------------------------------------------------
    excluded = pa.array(sorted({j.strip().upper() for j in r["excluded_jurisdictions"]}),
                        pa.string())
    failed = np.column_stack([
        equity < r["min_equity_btc"],
        days < r["min_history_days"],
        trades < r["min_trades"],
        kyc < r["min_kyc_level"],
        ~cert & bool(r["require_certification"]),
        ~terms & bool(r["require_terms"]),
        np.asarray(pc.is_in(country, value_set=excluded).to_numpy(zero_copy_only=False)),
    ])
    # row-major nonzero: each row's failed rules come out in RULES order, with no Python loop
    _, rule = np.nonzero(failed)
    offsets = np.concatenate([[0], np.cumsum(failed.sum(axis=1))]).astype(np.int32)
    names = pa.array(RULES, pa.string()).take(pa.array(rule, pa.int64()))
    failed_rules = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), names)
    return pa.Table.from_arrays(
        [account, pa.array(~failed.any(axis=1)), failed_rules, pa.array(equity, pa.float64())],
        schema=SCHEMA)

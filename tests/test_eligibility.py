"""Eligibility (SPEC §7): every rule alone at its boundary, several at once, custom rules, USD
equity through the index, every Arrow container, and bad input (SPEC §11).

The base account sits exactly at every threshold, so it is eligible; each case moves one value
just past its threshold and expects exactly that rule to fail.
"""

import math

import numpy as np
import pyarrow as pa
import pytest

from pmrisk import MarginError
from pmrisk.venues.eligibility import DEFAULT_RULES, RULES, eligibility

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

TYPES = {"account": pa.string(), "equity_btc": pa.float64(), "equity": pa.float64(),
         "futures_history_days": pa.float64(), "futures_trades": pa.int64(),
         "kyc_level": pa.int64(), "certification_passed": pa.bool_(),
         "terms_accepted": pa.bool_(), "jurisdiction": pa.string()}
AT = {"equity_btc": 5.0, "futures_history_days": 30.0, "futures_trades": 10, "kyc_level": 2,
      "certification_passed": True, "terms_accepted": True, "jurisdiction": "DE"}
INDEX = pa.table({"underlying": ["ETH", "BTC"], "index_price": [3000.0, 60000.0]})


def row(account="a1", **changes):
    return {"account": account, **AT, **changes}


def table(*rows, types=None):
    """Rows as a pyarrow Table with the SPEC types (``types`` overrides some)."""
    names = list(rows[0])
    types = {**TYPES, **(types or {})}
    return pa.table({n: pa.array([r[n] for r in rows], types[n]) for n in names})


def failed(out):
    return out.column("failed_rules").to_pylist()


def below(x):
    return math.nextafter(x, -math.inf)


# -- rules ----------------------------------------------------------------------------------------

def test_exactly_at_every_threshold_is_eligible():
    out = eligibility(table(row()))
    assert out.to_pylist() == [{"account": "a1", "eligible": True, "failed_rules": [],
                                "equity_btc": 5.0}]


def test_output_schema():
    out = eligibility(table(row()))
    assert out.schema.names == ["account", "eligible", "failed_rules", "equity_btc"]
    assert out.schema.types == [pa.string(), pa.bool_(), pa.list_(pa.string()), pa.float64()]


@pytest.mark.parametrize("rule, column, value", [
    ("equity", "equity_btc", below(5.0)),
    ("history_days", "futures_history_days", below(30.0)),
    ("trades", "futures_trades", 9),
    ("kyc_level", "kyc_level", 1),
    ("certification", "certification_passed", False),
    ("terms", "terms_accepted", False),
    ("jurisdiction", "jurisdiction", "US"),
    ("jurisdiction", "jurisdiction", "CA"),
    ("jurisdiction", "jurisdiction", "SG"),
    ("jurisdiction", "jurisdiction", "sg"),
    ("jurisdiction", "jurisdiction", " Us "),
])
def test_each_rule_fails_alone_just_past_its_threshold(rule, column, value):
    out = eligibility(table(row("at"), row("past", **{column: value})))
    assert out.column("eligible").to_pylist() == [True, False]
    assert failed(out) == [[], [rule]]


def test_above_every_threshold_is_eligible():
    out = eligibility(table(row(equity_btc=50.0, futures_history_days=400.0, futures_trades=9999,
                                kyc_level=3, jurisdiction="GB")))
    assert failed(out) == [[]]


def test_all_rules_failing_are_listed_in_fixed_order():
    everything = row("bad", equity_btc=0.0, futures_history_days=0.0, futures_trades=0,
                     kyc_level=0, certification_passed=False, terms_accepted=False,
                     jurisdiction="us")
    out = eligibility(table(row("ok"), everything,
                            row("two", kyc_level=1, terms_accepted=False)))
    assert out.column("account").to_pylist() == ["ok", "bad", "two"]
    assert out.column("eligible").to_pylist() == [True, False, False]
    assert failed(out) == [[], list(RULES), ["kyc_level", "terms"]]
    assert RULES == ("equity", "history_days", "trades", "kyc_level", "certification", "terms",
                     "jurisdiction")


def test_negative_equity_fails_the_equity_rule():
    assert failed(eligibility(table(row(equity_btc=-1.0)))) == [["equity"]]


def test_custom_rules_move_every_threshold():
    rules = {"min_equity_btc": 1.0, "min_history_days": 7, "min_trades": 0, "min_kyc_level": 3,
             "require_certification": False, "require_terms": False,
             "excluded_jurisdictions": ["de", "FR"]}
    at = row("at", equity_btc=1.0, futures_history_days=7.0, futures_trades=0, kyc_level=3,
             certification_passed=False, terms_accepted=False, jurisdiction="US")
    past = row("past", equity_btc=below(1.0), futures_history_days=below(7.0), kyc_level=2,
               jurisdiction="fr")
    out = eligibility(table(at, past), rules=rules)
    assert failed(out) == [[], ["equity", "history_days", "kyc_level", "jurisdiction"]]


def test_no_excluded_jurisdictions():
    out = eligibility(table(row(jurisdiction="US")), rules={"excluded_jurisdictions": []})
    assert failed(out) == [[]]


def test_defaults_are_the_seed_and_unchanged_by_a_call():
    assert DEFAULT_RULES == {
        "min_equity_btc": 5.0, "min_history_days": 30, "min_trades": 10, "min_kyc_level": 2,
        "require_certification": True, "require_terms": True,
        "excluded_jurisdictions": ["US", "CA", "SG"], "equity_asset": "BTC", "btc_price": None}
    eligibility(table(row()), rules={"min_trades": 1, "excluded_jurisdictions": []})
    assert DEFAULT_RULES["min_trades"] == 10
    assert DEFAULT_RULES["excluded_jurisdictions"] == ["US", "CA", "SG"]


def test_rule_values_may_be_numpy_scalars():
    rules = {"min_equity_btc": np.float64(5.0), "min_trades": np.int64(10),
             "require_terms": np.True_}
    assert failed(eligibility(table(row()), rules=rules)) == [[]]


# -- equity in USD -------------------------------------------------------------------------------

def usd_rows():
    return [{**row(a), "equity": usd} for a, usd in (("at", 300_000.0), ("past", 299_999.99))]


def test_usd_equity_converted_with_the_btc_index_row():
    rows = [{k: v for k, v in r.items() if k != "equity_btc"} for r in usd_rows()]
    out = eligibility(table(*rows), index=INDEX)
    assert out.column("equity_btc").to_pylist() == [5.0, 299_999.99 / 60_000.0]
    assert failed(out) == [[], ["equity"]]


def test_usd_equity_converted_with_the_btc_price_rule():
    rows = [{k: v for k, v in r.items() if k != "equity_btc"} for r in usd_rows()]
    by_rule = eligibility(table(*rows), rules={"btc_price": 60_000.0})
    assert by_rule.equals(eligibility(table(*rows), index=INDEX))


def test_equity_asset_picks_the_index_row():
    rows = [{k: v for k, v in r.items() if k != "equity_btc"} for r in usd_rows()]
    out = eligibility(table(*rows), rules={"equity_asset": "ETH", "min_equity_btc": 100.0},
                      index=INDEX)
    assert out.column("equity_btc").to_pylist() == [100.0, 299_999.99 / 3000.0]
    assert failed(out) == [[], ["equity"]]


def test_btc_equity_ignores_the_index():
    assert eligibility(table(row()), index=INDEX).equals(eligibility(table(row())))


# -- containers ------------------------------------------------------------------------------------

MIXED = [row("a1"), row("a2", equity_btc=4.0, jurisdiction="ca"),
         row("a3", futures_trades=3, certification_passed=False), row("a4", kyc_level=5)]


def test_pandas_and_polars_give_identical_results():
    expected = eligibility(table(*MIXED))
    assert expected.column("eligible").to_pylist() == [True, False, False, True]
    frame = {k: [r[k] for r in MIXED] for k in MIXED[0]}
    for given in (pd.DataFrame(frame), pl.DataFrame(frame), frame,
                  table(*MIXED).to_batches()[0],
                  pl.DataFrame(frame).with_columns(pl.col("jurisdiction").cast(pl.Categorical))):
        assert eligibility(given).equals(expected), type(given)


def test_pandas_and_polars_usd_equity_and_index():
    rows = [{k: v for k, v in r.items() if k != "equity_btc"} for r in usd_rows()]
    frame = {k: [r[k] for r in rows] for k in rows[0]}
    expected = eligibility(table(*rows), index=INDEX)
    idx = INDEX.to_pydict()
    assert eligibility(pd.DataFrame(frame), index=pd.DataFrame(idx)).equals(expected)
    assert eligibility(pl.DataFrame(frame), index=pl.DataFrame(idx)).equals(expected)


def test_chunked_input():
    whole = table(*MIXED)
    chunked = pa.concat_tables([whole.slice(0, 1), whole.slice(1, 2), whole.slice(3)])
    assert chunked.column("account").num_chunks == 3
    assert eligibility(chunked).equals(eligibility(whole))


def test_empty_table():
    out = eligibility(table(row()).slice(0, 0))
    assert out.num_rows == 0
    assert out.schema == eligibility(table(row())).schema


def test_integer_days_and_equity_accepted():
    types = {"futures_history_days": pa.int32(), "equity_btc": pa.int64(),
             "futures_trades": pa.uint8(), "kyc_level": pa.int8()}
    out = eligibility(table(row(equity_btc=5, futures_history_days=29), types=types))
    assert failed(out) == [["history_days"]]


# -- bad input -------------------------------------------------------------------------------------

def raises(*args, **kwargs):
    with pytest.raises(MarginError) as info:
        eligibility(*args, **kwargs)
    return info.value


REQUIRED = ["account", "futures_history_days", "futures_trades", "kyc_level",
            "certification_passed", "terms_accepted", "jurisdiction"]


@pytest.mark.parametrize("column", REQUIRED)
def test_missing_column(column):
    err = raises(table(row()).drop_columns([column]))
    assert (err.table, err.column, err.rows) == ("accounts", column, [])
    assert "present" in str(err)


def test_neither_equity_column():
    err = raises(table(row()).drop_columns(["equity_btc"]))
    assert (err.table, err.column, err.rows) == ("accounts", "equity_btc", [])
    assert "exactly one" in str(err)


def test_both_equity_columns():
    err = raises(table({**row(), "equity": 300_000.0}), index=INDEX)
    assert (err.table, err.column) == ("accounts", "equity_btc")
    assert "exactly one" in str(err)


@pytest.mark.parametrize("column, typ, value", [
    ("account", pa.int64(), 1),
    ("equity_btc", pa.string(), "5"),
    ("futures_history_days", pa.string(), "30"),
    ("futures_trades", pa.float64(), 10.0),
    ("kyc_level", pa.string(), "2"),
    ("kyc_level", pa.float64(), 2.0),
    ("certification_passed", pa.int64(), 1),
    ("terms_accepted", pa.string(), "yes"),
    ("jurisdiction", pa.int64(), 840),
])
def test_wrong_type(column, typ, value):
    err = raises(table(row(**{column: value}), types={column: typ}))
    assert (err.table, err.column, err.rows) == ("accounts", column, [])
    assert str(typ) in str(err)


@pytest.mark.parametrize("column", [c for c in REQUIRED if c != "account"] + ["equity_btc"])
def test_nulls(column):
    err = raises(table(row("a1"), row("a2", **{column: None}), row("a3", **{column: None})))
    assert (err.table, err.column, err.rows) == ("accounts", column, [("a2",), ("a3",)])
    assert "no nulls" in str(err) and "'a2'" in str(err)


def test_null_usd_equity():
    rows = [{"account": "a1", **AT, "equity": None}]
    err = raises(table(*rows).drop_columns(["equity_btc"]), index=INDEX)
    assert (err.table, err.column, err.rows) == ("accounts", "equity", [("a1",)])


def test_all_null_column_from_python_none():
    err = raises({**{k: [v] for k, v in row().items()}, "kyc_level": [None]})
    assert (err.table, err.column, err.rows) == ("accounts", "kyc_level", [("a1",)])


def test_null_account_named_by_row_position():
    err = raises(table(row("a1"), row(None)))
    assert (err.table, err.column, err.rows) == ("accounts", "account", [(1,)])


def test_duplicate_accounts():
    err = raises(table(row("a1"), row("a2"), row("a1"), row("a2"), row("a3")))
    assert (err.table, err.column, err.rows) == ("accounts", "account", [("a1",), ("a2",)])
    assert "unique" in str(err)


@pytest.mark.parametrize("column, value", [("futures_history_days", -1.0),
                                           ("futures_trades", -1)])
def test_negative_days_or_trades(column, value):
    err = raises(table(row("a1"), row("a2", **{column: value})))
    assert (err.table, err.column, err.rows) == ("accounts", column, [("a2",)])
    assert ">= 0" in str(err)


@pytest.mark.parametrize("column, value", [("equity_btc", math.nan), ("equity_btc", math.inf),
                                           ("futures_history_days", math.inf)])
def test_non_finite_numbers(column, value):
    err = raises(table(row("a1"), row("a2", **{column: value})))
    assert (err.table, err.column, err.rows) == ("accounts", column, [("a2",)])
    assert "finite" in str(err)


def test_empty_jurisdiction():
    err = raises(table(row("a1"), row("a2", jurisdiction="  ")))
    assert (err.table, err.column, err.rows) == ("accounts", "jurisdiction", [("a2",)])


def usd_table():
    rows = [{k: v for k, v in r.items() if k != "equity_btc"} for r in usd_rows()]
    return table(*rows)


@pytest.mark.parametrize("index", [None, INDEX.filter(pa.array([True, False]))],
                         ids=["no-index", "no-btc-row"])
def test_usd_equity_without_a_btc_price(index):
    err = raises(usd_table(), index=index)
    assert (err.table, err.column, err.rows) == ("accounts", "equity", [("at",), ("past",)])
    assert "BTC price" in str(err)


def test_index_and_btc_price_rule_both_given():
    err = raises(usd_table(), rules={"btc_price": 60_000.0}, index=INDEX)
    assert (err.table, err.column) == ("rules", "btc_price")


def test_bad_index_table():
    err = raises(usd_table(), index={"underlying": ["BTC"], "index_price": [-1.0]})
    assert (err.table, err.column, err.rows) == ("index", "index_price", [("BTC",)])


def test_not_a_table():
    err = raises(42)
    assert (err.table, err.column) == ("accounts", None)
    assert "int" in str(err)


def test_unknown_rule():
    err = raises(table(row()), rules={"min_trade": 5})
    assert (err.table, err.column) == ("rules", "min_trade")
    assert "min_trades" in str(err)


@pytest.mark.parametrize("key, value", [
    ("min_equity_btc", "5"), ("min_equity_btc", math.nan), ("min_equity_btc", True),
    ("min_history_days", -1), ("min_history_days", None),
    ("min_trades", 9.5), ("min_trades", "10"), ("min_trades", True), ("min_trades", -1),
    ("min_kyc_level", 2.0),
    ("require_certification", 1), ("require_terms", "yes"),
    ("excluded_jurisdictions", "US"), ("excluded_jurisdictions", ["US", 1]),
    ("excluded_jurisdictions", [""]),
    ("equity_asset", 3), ("equity_asset", ""),
    ("btc_price", 0.0), ("btc_price", "60000"),
])
def test_wrong_typed_rule(key, value):
    err = raises(table(row()), rules={key: value})
    assert (err.table, err.column, err.rows) == ("rules", key, [])
    assert repr(value) in str(err)


def test_rules_not_a_dict():
    err = raises(table(row()), rules=[("min_trades", 5)])
    assert (err.table, err.column) == ("rules", None)


def test_margin_error_is_a_value_error():
    assert issubclass(MarginError, ValueError)

"""Bad model parameters, whichever way they arrive (a dict, overrides, a TOML file), are one
MarginError naming the parameter: table "model", column = the parameter's path."""

import math

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk import Model, samples
from pmrisk.model.model import MAX_DEPTH, MAX_ENTRIES, MAX_KEY_DEPTH, MAX_TOML_BYTES

INF, NAN = math.inf, math.nan

# (overrides, column): each is refused by from_dict, with_overrides and (where TOML can say it)
# from_toml alike
CASES = [
    # integer parameters: inf, nan, floats, bools, strings, out of range
    ({"n_directions": INF}, "n_directions"),
    ({"n_directions": NAN}, "n_directions"),
    ({"n_directions": -INF}, "n_directions"),
    ({"n_directions": 512.0}, "n_directions"),
    ({"n_directions": 12.5}, "n_directions"),
    ({"n_directions": True}, "n_directions"),
    ({"n_directions": "512"}, "n_directions"),
    ({"n_directions": None}, "n_directions"),
    ({"n_directions": 1_000_001}, "n_directions"),
    ({"n_directions": 10**400}, "n_directions"),
    ({"shell_steps": INF}, "shell_steps"),
    ({"shell_steps": NAN}, "shell_steps"),
    ({"shell_steps": 0}, "shell_steps"),
    ({"shell_steps": 2.0}, "shell_steps"),
    ({"joint_grid_nodes": INF}, "joint_grid_nodes"),
    ({"joint_grid_nodes": NAN}, "joint_grid_nodes"),
    ({"joint_grid_nodes": False}, "joint_grid_nodes"),
    ({"joint_grid_nodes": [32]}, "joint_grid_nodes"),
    ({"BTC": {"buckets_count": INF}}, "BTC.buckets_count"),
    ({"BTC": {"buckets_count": NAN}}, "BTC.buckets_count"),
    ({"BTC": {"buckets_count": 4.0}}, "BTC.buckets_count"),
    ({"default_underlying": {"buckets_count": "4"}}, "default_underlying.buckets_count"),
    ({"default_underlying": {"buckets_count": 1001}}, "default_underlying.buckets_count"),
    # float parameters: nan, inf where finite, strings, bools, huge integers
    ({"risk_multiplier": NAN}, "risk_multiplier"),
    ({"risk_multiplier": "1.2"}, "risk_multiplier"),
    ({"mm_factor": INF}, "mm_factor"),
    ({"rate": True}, "rate"),
    ({"BTC": {"price_range": NAN}}, "BTC.price_range"),
    ({"BTC": {"vol_floor": INF}}, "BTC.vol_floor"),
    ({"BTC": {"annualised_move_risk": 10**400}}, "BTC.annualised_move_risk"),
    ({"BTC": {"max_offsetable_pnl": NAN}}, "BTC.max_offsetable_pnl"),
    ({"max_memory_gb": 0}, "max_memory_gb"),
    ({"max_memory_gb": INF}, "max_memory_gb"),
    ({"max_memory_gb": "4"}, "max_memory_gb"),
    ({"max_iv": 0}, "max_iv"),
    ({"max_iv": NAN}, "max_iv"),
    ({"max_iv": 1000.0}, "max_iv"),
    # choices, bools, names
    ({"cross_unit": ["sum"]}, "cross_unit"),
    ({"cross_unit": 1}, "cross_unit"),
    ({"extended_table": 1}, "extended_table"),
    ({"extreme_scenarios": "true"}, "extreme_scenarios"),
    ({"linear_settlement_currency": 5}, "linear_settlement_currency"),
    ({"stablecoins": "USDT"}, "stablecoins"),
    ({"BTC": {"vol_shock": None}}, "BTC.vol_shock"),
    # sections: thresholds, correlations, exclude
    ({"thresholds": {"warning": [1.1, NAN], "margin_call": 1.0, "liquidation": 0.75}},
     "thresholds.warning"),
    ({"thresholds": {"margin_call": INF}}, "thresholds.margin_call"),
    ({"thresholds": {"liquidation": "0.5"}}, "thresholds.liquidation"),
    ({"correlations": {"BTC,ETH": NAN}}, "correlations.BTC,ETH"),
    ({"correlations": {"BTC,ETH": "0.8"}}, "correlations.BTC,ETH"),
    ({"exclude": {"kinds": "option"}}, "exclude.kinds"),
    # malformed collateral tiers
    ({"collateral": {"BTC": {"tiers_usd": 5}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": []}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": [5]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": ["abc"]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": [[0, 100]]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": [[0, "x", 1.0]]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": [[0, NAN, 1.0]]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": [[0, 100, None]]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": [[10, 100, 1.0]]}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"tiers_usd": {"a": 1}}}}, "collateral.BTC.tiers_usd"),
    ({"collateral": {"BTC": {"rate": NAN}}}, "collateral.BTC.rate"),
    ({"collateral": {"BTC": 0.9}}, "collateral.BTC"),
    # non-string keys at any level
    ({1: {"price_range": 0.2}}, "1"),
    ({None: 1}, "None"),
    ({"BTC": {1: 0.2}}, "BTC.1"),
    # an underlying's section that is not a table
    ({"BTC": None}, "BTC"),
    ({"ETH": 0.16}, "ETH"),
    ({"BTC": [0.16]}, "BTC"),
    ({"correlations": {("BTC", "ETH"): 0.5}}, "correlations.('BTC', 'ETH')"),
    # nesting and size
    ({"BTC": {"price_range": [[[[[[[[[0.2]]]]]]]]]}}, "BTC.price_range[0][0][0][0][0][0]"),
    ({"stablecoins": ["USD"] * (MAX_ENTRIES + 1)}, ""),
]

# the same defects spelled in TOML (its inf/nan literals included)
TOML_CASES = [
    ("n_directions = inf", "n_directions"),
    ("n_directions = -inf", "n_directions"),
    ("n_directions = nan", "n_directions"),
    ("n_directions = 512.0", "n_directions"),
    ("shell_steps = nan", "shell_steps"),
    ("joint_grid_nodes = +inf", "joint_grid_nodes"),
    ("joint_grid_nodes = true", "joint_grid_nodes"),
    ('n_directions = "512"', "n_directions"),
    ("[BTC]\nbuckets_count = inf", "BTC.buckets_count"),
    ("[default_underlying]\nbuckets_count = nan", "default_underlying.buckets_count"),
    ("preset = [\"standard\"]", "preset"),
    ("preset = 5", "preset"),
    ("[collateral.BTC]\ntiers_usd = 5", "collateral.BTC.tiers_usd"),
    ("[collateral.BTC]\ntiers_usd = [[0, 100]]", "collateral.BTC.tiers_usd"),
    ("[collateral.BTC]\ntiers_usd = [[0, inf, nan]]", "collateral.BTC.tiers_usd"),
    ("max_memory_gb = nan", "max_memory_gb"),
    ("max_iv = inf", "max_iv"),
    ("x = " + "[" * (MAX_DEPTH + 1) + "1" + "]" * (MAX_DEPTH + 1), "x" + "[0]" * (MAX_DEPTH - 1)),
    ("x = [" + "1," * MAX_ENTRIES + "1]", ""),
    # 50,000 dotted levels (42 s and a RecursionError before): refused before parsing
    ("a" + ".a" * 50_000 + " = 1", ""),
    ("a" + ".a" * (MAX_KEY_DEPTH + 1) + " = 1", ""),
    ("[" + "a." * (MAX_KEY_DEPTH + 1) + "a]\nb = 1", ""),
]


def _error(fn):
    with pytest.raises(MarginError) as info:
        fn()
    return info.value


MarginError = pmrisk.MarginError


@pytest.mark.parametrize("overrides,column", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("route", ["from_dict", "with_overrides", "preset_dict"])
def test_bad_parameter(route, overrides, column):
    if route == "from_dict":
        call = lambda: Model.from_dict(dict(overrides, preset="deribit_pme"))  # noqa: E731
    elif route == "with_overrides":
        call = lambda: Model.preset("standard").with_overrides(overrides)  # noqa: E731
    else:                                   # a dict given where a model is expected
        call = lambda: pmrisk.Model.coerce(overrides)  # noqa: E731
    err = _error(call)
    assert (err.table, err.column) == ("model", column), str(err)


@pytest.mark.parametrize("text,column", TOML_CASES, ids=[str(i) for i in range(len(TOML_CASES))])
def test_bad_toml(tmp_path, text, column):
    path = tmp_path / "model.toml"
    path.write_text(text + "\n", encoding="utf-8")
    before = path.read_bytes()
    err = _error(lambda: Model.from_toml(path))
    assert (err.table, err.column) == ("model", column), str(err)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content,words", [
    (b"n_directions = 512\n# caf\xe9\n", "UTF-8"),                    # latin-1, not UTF-8
    (b"\xff\xfen\x00", "UTF-8"),                                       # UTF-16
    (b"# " + b"x" * MAX_TOML_BYTES + b"\n", "MiB"),                    # too large
], ids=["latin-1", "utf-16", "too-large"])
def test_toml_file_refused(tmp_path, content, words):
    path = tmp_path / "model.toml"
    path.write_bytes(content)
    err = _error(lambda: Model.from_toml(str(path)))
    assert (err.table, err.column) == ("model", "")
    assert words in str(err)


def test_an_underlying_section_that_is_not_a_table_says_so():
    err = _error(lambda: Model.coerce({"BTC": None}))
    assert "a table (dict) of parameters for underlying BTC, got None" in str(err)


@pytest.mark.parametrize("path", [None, 5, 3.5, b"model.toml", ["model.toml"]],
                         ids=["none", "int", "float", "bytes", "list"])
def test_from_toml_needs_a_path(path):
    """An int is not read as a file descriptor: every non-path is refused up front."""
    err = _error(lambda: Model.from_toml(path))
    assert (err.table, err.column, err.rows) == ("arguments", "path", [])


@pytest.mark.parametrize("value", [None, 5, "BTC", ["n_directions", 5], ({"a": 1},)],
                         ids=["none", "int", "str", "list", "tuple"])
def test_with_overrides_needs_a_dict(value):
    err = _error(lambda: Model.preset("standard").with_overrides(value))
    assert (err.table, err.column) == ("model", "")


@pytest.mark.parametrize("preset", [["standard"], 5, None, {"a": 1}, "nope"],
                         ids=["list", "int", "none", "dict", "unknown"])
def test_bad_preset(preset):
    err = _error(lambda: Model.from_dict({"preset": preset}))
    assert (err.table, err.column) == ("model", "preset")


def test_canonical_values():
    """Accepted values are stored as their parameter's type (numpy ints become ints)."""
    m = Model.from_dict({"n_directions": np.int64(64), "risk_multiplier": 1,
                         "BTC": {"buckets_count": np.int32(3), "price_range": np.float32(0.25)},
                         "collateral": {"BTC": {"tiers_usd": [[0, 100, 1]]}}})
    assert type(m["n_directions"]) is int and m["n_directions"] == 64
    assert type(m["risk_multiplier"]) is float
    assert type(m.underlying("BTC")["buckets_count"]) is int
    assert m["collateral"]["BTC"]["tiers_usd"] == [[0.0, 100.0, 1.0]]


def test_every_preset_and_the_example_toml_pass():
    import pathlib
    for name in ("standard", "binance_pm_pro", "deribit_pme", "span"):
        assert Model.preset(name)["max_memory_gb"] == 4.0
        assert Model.preset(name)["max_iv"] == 5.0
    docs = pathlib.Path(__file__).parent.parent / "docs"
    for f in ("model.example.toml", "model.deribit.toml"):
        Model.from_toml(docs / f)


# -- mark_iv: a decimal, bounded by the model's max_iv -------------------------------------------

def _demo(iv_scale=1.0, symbol_rows=None):
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    mk = b["market"]
    iv = mk["mark_iv"].to_pylist()
    rows = [i for i, v in enumerate(iv) if v is not None]
    if symbol_rows is not None:
        rows = rows[:symbol_rows]
    for i in rows:
        iv[i] *= iv_scale
    b["market"] = mk.set_column(mk.column_names.index("mark_iv"), "mark_iv",
                                pa.array(iv, pa.float64()))
    return b, vt, [mk["symbol"][i].as_py() for i in rows]


@pytest.mark.parametrize("scale,n_rows", [(100.0, None), (100.0, 1), (10.0, 2)],
                         ids=["all-percent", "one-percent", "ten-x"])
@pytest.mark.parametrize("call", ["margin", "monitor", "liquidation_plan"])
def test_percent_mark_iv_refused(call, scale, n_rows):
    b, vt, bad = _demo(scale, n_rows)
    fn = {"margin": pmrisk.margin, "monitor": pmrisk.Monitor,
          "liquidation_plan": pmrisk.liquidation_plan}[call]
    err = _error(lambda: fn(**b, valuation_time=vt))
    assert (err.table, err.column) == ("market", "mark_iv")
    assert [r[0] for r in err.rows] == bad[:5]
    assert "0.60 for 60 %" in str(err)


def test_max_iv_is_a_model_setting():
    b, vt, _ = _demo(10.0, 1)                       # one vol of 5.5 - 6.2 (550-620 %)
    pmrisk.margin(**b, valuation_time=vt, model={"preset": "standard", "max_iv": 10.0})
    err = _error(lambda: pmrisk.margin(**b, valuation_time=vt,
                                       model={"preset": "standard", "max_iv": 2.0}))
    assert (err.table, err.column) == ("market", "mark_iv")


@pytest.mark.parametrize("value", [60.0, 5.01, math.inf])
def test_monitor_tick_with_percent_vol_refused(value):
    b, vt, _ = _demo()
    mon = pmrisk.Monitor(**b, valuation_time=vt)
    before = mon.accounts
    sym = "BTC-28JUN24-65000-C"
    err = _error(lambda: mon.update(market={"symbol": [sym], "mark_iv": [value]}))
    assert (err.table, err.column) == ("market", "mark_iv")
    assert err.rows == [(sym,)]
    assert mon.accounts.equals(before)
    mon.update(market={"symbol": [sym], "mark_iv": [0.6]})     # a decimal is taken

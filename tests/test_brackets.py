"""Binance notional brackets: ladders as validated data, the bracket kernel and its oracle,
the Binance leverage-bracket loader, the dated ladders shipped with the package, and the
per-position maintenance margin."""

import datetime as dt
import json
import pathlib
import tomllib

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
import pmrisk
from pmrisk.venues import brackets as B
from pmrisk.io.arrow import kernel_args
from pmrisk.kernel.addons import tiered
from pmrisk.kernel.brackets import bracket_margin, bracket_margin_usd, bracket_notional

REF = pathlib.Path(__file__).parent / "reference"
ROOT = pathlib.Path(__file__).resolve().parents[1]

# BTCUSDT 2021-03-18 without cum: Binance's announcement gives none
BTC_2021 = [(0, 5e4, 0.004, 125), (5e4, 2.5e5, 0.005, 100), (2.5e5, 1e6, 0.01, 50),
            (1e6, 1e7, 0.025, 20), (1e7, 2e7, 0.05, 10), (2e7, 5e7, 0.10, 5),
            (5e7, 1e8, 0.125, 4), (1e8, 2e8, 0.15, 3), (2e8, 3e8, 0.25, 2), (3e8, 5e8, 0.50, 1)]
BTC_2021_CUM = [0, 50, 1300, 16300, 266300, 1266300, 2516300, 5016300, 25016300, 100016300]


def ref(name):
    return json.loads((REF / f"{name}.json").read_text())


# -- cum rebuilt ---------------------------------------------------------------------------------

def test_cum_is_rebuilt_from_floor_and_mmr():
    lad = B.ladder(BTC_2021, symbol="BTCUSDT")
    np.testing.assert_allclose(lad.cum, BTC_2021_CUM, rtol=1e-12, atol=0)
    assert lad.cum[0] == 0.0
    assert lad.kind == "usd_m" and lad.symbol == "BTCUSDT"
    assert not lad.cum.flags.writeable          # ladders are immutable data


def test_cum_within_tolerance_is_accepted_and_replaced_by_the_rebuilt_one():
    rows = [r + (c * (1 + 5e-10),) for r, c in zip(BTC_2021, BTC_2021_CUM)]
    lad = B.ladder(rows, symbol="BTCUSDT")
    np.testing.assert_allclose(lad.cum, BTC_2021_CUM, rtol=1e-12)


def test_null_cum_means_rebuild():
    rows = [dict(floor=f, cap=c, mmr=m, max_leverage=lv, cum=None) for f, c, m, lv in BTC_2021]
    rows[2]["cum"] = 1300.0
    np.testing.assert_allclose(B.ladder(rows).cum, BTC_2021_CUM, rtol=1e-12)


# -- bad ladders: one MarginError naming table, column and (symbol, bracket) -----------------

def _rows(**changes):
    """BTC_2021 with cum, as dicts; ``changes`` maps 'column@bracket' to a value."""
    rows = [dict(bracket=i + 1, floor=f, cap=c, mmr=m, max_leverage=lv, cum=float(cum))
            for i, ((f, c, m, lv), cum) in enumerate(zip(BTC_2021, BTC_2021_CUM))]
    for key, value in changes.items():
        col, b = key.split("@")
        rows[int(b) - 1][col] = value
    return rows


BAD_LADDERS = [
    ("first floor not 0", _rows(**{"floor@1": 10.0}), "floor", [1]),
    ("cap below floor", _rows(**{"cap@1": 0.0, "floor@2": 0.0}), "cap", [1]),
    ("gap between brackets", _rows(**{"floor@3": 260_000.0}), "floor", [3]),
    ("overlap", _rows(**{"cap@4": 9e6}), "floor", [5]),
    ("mmr decreasing", _rows(**{"mmr@6": 0.04}), "mmr", [6]),
    ("mmr above 1", _rows(**{"mmr@10": 1.5}), "mmr", [10]),
    ("mmr zero", _rows(**{"mmr@1": 0.0}), "mmr", [1]),
    ("leverage zero", _rows(**{"max_leverage@4": 0}), "max_leverage", [4]),
    ("leverage negative", _rows(**{"max_leverage@2": -5}), "max_leverage", [2]),
    ("cum off", _rows(**{"cum@4": 16_400.0}), "cum", [4]),
    ("cum off 2e-9 relative", _rows(**{"cum@9": 25_016_300.0 * (1 + 2e-9)}), "cum", [9]),
    ("first cum not 0", _rows(**{"cum@1": 1.0}), "cum", [1]),
    ("bracket numbers repeat", _rows(**{"bracket@3": 2}), "bracket", [2]),
    ("null floor", _rows(**{"floor@2": None}), "floor", [2]),
    ("infinite cap", _rows(**{"cap@10": float("inf")}), "cap", [10]),
]


@pytest.mark.parametrize("rows,column,brackets", [b[1:] for b in BAD_LADDERS],
                         ids=[b[0] for b in BAD_LADDERS])
def test_bad_ladder_names_the_row(rows, column, brackets):
    with pytest.raises(pmrisk.MarginError) as err:
        B.ladder(rows, symbol="BTCUSDT")
    assert err.value.table == "brackets"
    assert err.value.column == column
    assert [r[-1] for r in err.value.rows] == brackets
    assert all(r[0] == "BTCUSDT" for r in err.value.rows)


@pytest.mark.parametrize("rows,kind,column", [
    ([], "usd_m", None),                                        # no bracket at all
    ([(0, 10, 0.1)], "usd_m", None),                           # three values
    ([{"floor": 0, "mmr": 0.1, "max_leverage": 5}], "usd_m", "cap"),
    ([{"floor": 0, "cap": "10", "mmr": 0.1, "max_leverage": 5}], "usd_m", "cap"),
    ([(0, 10, 0.1, 5)], "inverse", "kind"),
])
def test_bad_ladder_shape(rows, kind, column):
    with pytest.raises(pmrisk.MarginError) as err:
        B.ladder(rows, symbol="X", kind=kind)
    assert err.value.table == "brackets" and err.value.column == column


def test_rows_are_taken_in_bracket_order():
    rows = _rows()[::-1]
    lad = B.ladder(rows)
    assert lad.floor.tolist() == [r[0] for r in BTC_2021]


# -- the kernel: hypothesis over random ladders --------------------------------------------------

@st.composite
def ladders(draw, max_brackets=6):
    """(floor, cap, mmr, cum) of one valid ladder: contiguous, mmr non-decreasing."""
    n = draw(st.integers(1, max_brackets))
    widths = draw(st.lists(st.floats(1.0, 1e8), min_size=n, max_size=n))
    steps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.0025, 0.005, 0.05, 0.125]),
                          min_size=n, max_size=n))
    cap = np.cumsum(widths)
    floor = np.concatenate([[0.0], cap[:-1]])
    mmr = np.minimum(0.002 + np.cumsum(steps), 1.0)
    lad = B.ladder([(f, c, m, 10) for f, c, m in zip(floor, cap, mmr)], symbol="H")
    return lad


def _notionals(draw, lad, k):
    edges = list(lad.floor) + list(lad.cap)
    cap = float(lad.cap[-1])
    pick = st.one_of(st.sampled_from(edges), st.floats(0.0, cap * 1.2),
                     st.just(float(np.nextafter(cap, np.inf))), st.just(-1.0),
                     st.just(float("nan")))
    return draw(st.lists(pick, min_size=1, max_size=k))


@given(st.data())
def test_bracket_margin_agrees_with_oracle(data):
    lads = data.draw(st.lists(ladders(), min_size=1, max_size=3))
    sizes = [len(lad.floor) for lad in lads]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cat = {k: np.concatenate([getattr(lad, k) for lad in lads])
           for k in ("floor", "cap", "mmr", "cum")}
    notional, pos_ladder = [], []
    for k, lad in enumerate(lads):
        ns = _notionals(data.draw, lad, 8)
        notional += ns
        pos_ladder += [k] * len(ns)
    args = kernel_args(np.array(notional), np.array(pos_ladder, dtype=np.int64), cat["floor"],
                       cat["cap"], cat["mmr"], cat["cum"], offsets)
    row, mm = bracket_margin(*args)
    want_row, want_mm = oracles.bracket_margin(*args)
    np.testing.assert_array_equal(row, want_row)
    np.testing.assert_allclose(mm, want_mm, rtol=1e-12, atol=1e-9, equal_nan=True)
    assert np.isnan(mm[row < 0]).all() and not np.isnan(mm[row >= 0]).any()


@given(ladders(), st.data())
def test_mm_is_continuous_at_every_edge_and_equals_progressive_tiers(lad, data):
    """The point of cum: MM from bracket b at its cap equals MM from bracket b+1 there, so MM is
    the progressive sum of each slice of notional at its bracket's rate."""
    cap, mmr, cum = lad.cap, lad.mmr, lad.cum
    below = cap[:-1] * mmr[:-1] - cum[:-1]
    above = cap[:-1] * mmr[1:] - cum[1:]
    np.testing.assert_allclose(below, above, rtol=1e-9, atol=1e-9 * cap[-1] * mmr[-1])
    ns = np.array(data.draw(st.lists(st.floats(0.0, float(cap[-1])), min_size=1, max_size=20)))
    mm = B.maintenance_margin(ns, lad)
    tiers = list(zip(lad.floor, lad.cap, lad.mmr))
    np.testing.assert_allclose(mm, tiered(ns, tiers), rtol=1e-9, atol=1e-9 * cap[-1])


@given(ladders(), st.data())
def test_mm_is_non_decreasing_in_notional(lad, data):
    ns = np.sort(data.draw(st.lists(st.floats(0.0, float(lad.cap[-1])), min_size=2,
                                    max_size=30)))
    ns = np.concatenate([ns, lad.floor, lad.cap])
    ns.sort()
    mm = B.maintenance_margin(ns, lad)
    assert (np.diff(mm) >= -1e-9 * lad.cap[-1]).all()
    assert (mm >= -1e-9 * lad.cap[-1]).all()


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(1e-3, 1e3), st.floats(1e-2, 1e6),
                          st.integers(0, 1)), min_size=1, max_size=20))
def test_bracket_notional_agrees_with_oracle(rows):
    q, cs, mark, coin = (np.array(c) for c in zip(*rows))
    args = kernel_args(q, cs, mark, coin.astype(np.int64))
    np.testing.assert_allclose(bracket_notional(*args), oracles.bracket_notional(*args),
                               rtol=1e-15, atol=0)


@given(st.lists(st.tuples(st.floats(-1e9, 1e9), st.integers(0, 1), st.floats(1e-6, 1e7)),
                min_size=1, max_size=20))
def test_bracket_margin_usd_agrees_with_oracle(rows):
    mm, coin, index = (np.array(c) for c in zip(*rows))
    args = kernel_args(mm, coin.astype(np.int64), index)
    np.testing.assert_array_equal(bracket_margin_usd(*args), oracles.bracket_margin_usd(*args))


def test_bracket_edges_follow_floor_lt_n_le_cap():
    lad = B.ladder(BTC_2021)
    t = B.locate([0.0, 5e4, np.nextafter(5e4, np.inf), 5e8], lad)
    assert t.column("bracket").to_pylist() == [1, 1, 2, 10]
    assert t.column("max_leverage").to_pylist() == [125.0, 125.0, 100.0, 1.0]


@pytest.mark.parametrize("notional", [5e8 * (1 + 1e-12), 6e8, -1.0, float("nan"),
                                      float("inf")])
def test_notional_outside_the_ladder_is_refused(notional):
    with pytest.raises(pmrisk.MarginError) as err:
        B.maintenance_margin([1e6, notional], B.ladder(BTC_2021))
    assert err.value.table == "notional" and err.value.rows == [(1,)]


@pytest.mark.parametrize("notional", ["a lot", [[1.0, 2.0]], None])
def test_notional_of_the_wrong_shape_is_refused(notional):
    with pytest.raises(pmrisk.MarginError) as err:
        B.maintenance_margin(notional, B.ladder(BTC_2021))
    assert err.value.table == "notional"


def test_scalar_in_scalar_out():
    lad = B.ladder(BTC_2021)
    assert B.maintenance_margin(15e6, lad) == pytest.approx(483_700.0, rel=1e-12)
    assert isinstance(B.maintenance_margin(15e6, lad), float)
    assert B.maintenance_margin(np.array([15e6]), lad).shape == (1,)


# -- Binance's leverage-bracket response ---------------------------------------------------------

def _usdm_rows():
    return ref("binance_usdm_btcusdt_brackets")["ladders"]["2021-03-18"]


def _coinm_response():
    return [{"bracket": r["bracket"], "initialLeverage": r["max_leverage"], "qtyCap": r["cap"],
             "qtyFloor": r["floor"], "maintMarginRatio": r["mmr"], "cum": r["cum"],
             "symbol": "BTCUSD_PERP"}
            for r in ref("binance_coinm_btcusd")["brackets_btc"]]


LOADER_SHAPES = {
    "list of dicts": lambda rows: rows,
    "arrow table": pa.Table.from_pylist,
    "record batch": lambda rows: pa.RecordBatch.from_pylist(rows),
    "pandas": pd.DataFrame,
    "polars": pl.DataFrame,
    "nested api json": lambda rows: [{"symbol": rows[0]["symbol"], "notionalCoef": 1.5,
                                      "brackets": [{k: v for k, v in r.items() if k != "symbol"}
                                                   for r in rows]}],
}


@pytest.mark.parametrize("shape", LOADER_SHAPES)
def test_loader_shapes_usdm(shape):
    rows = [dict(r, symbol="BTCUSDT", notionalCoef=1.0) for r in _usdm_rows()]
    got = B.ladders_from_binance(LOADER_SHAPES[shape](rows))
    assert list(got) == ["BTCUSDT"]
    lad = got["BTCUSDT"]
    assert lad.kind == "usd_m" and lad.symbol == "BTCUSDT"
    np.testing.assert_allclose(lad.cum, BTC_2021_CUM, rtol=1e-12)
    assert lad.max_leverage.tolist() == [r[3] for r in BTC_2021]


@pytest.mark.parametrize("shape", LOADER_SHAPES)
def test_loader_shapes_coinm(shape):
    lad = B.ladders_from_binance(LOADER_SHAPES[shape](_coinm_response()))["BTCUSD_PERP"]
    assert lad.kind == "coin_m"
    assert lad.cap.tolist() == [5, 10, 20, 50, 100, 200, 400, 1000]
    assert B.maintenance_margin(300.0, lad) == pytest.approx(25.895, rel=1e-12)


def test_loader_several_symbols_and_symbol_argument():
    rows = ([dict(r, symbol="BTCUSDT") for r in _usdm_rows()]
            + [dict(r, symbol="ETHUSDT") for r in _usdm_rows()[:3]])
    got = B.ladders_from_binance(rows)
    assert list(got) == ["BTCUSDT", "ETHUSDT"] and len(got["ETHUSDT"].floor) == 3
    one = B.ladders_from_binance(_usdm_rows(), symbol="MINE")
    assert list(one) == ["MINE"]


@pytest.mark.parametrize("mutate,column,rows", [
    (lambda rs: [dict(r, qtyCap=r["notionalCap"]) for r in rs], None, []),   # both pairs
    (lambda rs: [{k: v for k, v in dict(r, symbol="X").items() if k != "notionalCap"}
                 for r in rs], "cap", []),
    (lambda rs: rs, "symbol", []),                                           # no symbol
    (lambda rs: [dict(r, symbol="BTCUSDT", cum=r["cum"] + (5 if r["bracket"] == 7 else 0))
                 for r in rs], "cum", [("BTCUSDT", 7)]),
    # a bracket missing from the response: the rows after it are misnumbered
    (lambda rs: [dict(r, symbol="BTCUSDT") for r in rs if r["bracket"] != 4], "bracket",
     [("BTCUSDT", b) for b in (5, 6, 7, 8, 9)]),
])
def test_loader_errors(mutate, column, rows):
    with pytest.raises(pmrisk.MarginError) as err:
        B.ladders_from_binance(mutate(_usdm_rows()))
    assert err.value.table == "brackets" and err.value.column == column
    assert err.value.rows == rows


# -- shipped ladders -----------------------------------------------------------------------------

def test_shipped_ladders_equal_the_reference_ladders():
    usdm = ref("binance_usdm_btcusdt_brackets")["ladders"]
    for effective, rows in usdm.items():
        (lad,) = [x for x in B.shipped_ladders()
                  if x.symbol == "BTCUSDT" and x.effective == effective]
        want = B.ladders_from_binance(rows, symbol="BTCUSDT")["BTCUSDT"]
        for col in ("floor", "cap", "mmr", "max_leverage", "cum"):
            np.testing.assert_array_equal(getattr(lad, col), getattr(want, col), col)
    coin = B.binance_ladder("BTCUSD_PERP")
    want = B.ladder(ref("binance_coinm_btcusd")["brackets_btc"], kind="coin_m")
    assert coin.kind == "coin_m"
    for col in ("floor", "cap", "mmr", "max_leverage", "cum"):
        np.testing.assert_array_equal(getattr(coin, col), getattr(want, col), col)


def test_every_shipped_ladder_has_a_source_and_a_known_effective_form():
    for lad in B.shipped_ladders():
        assert lad.source and len(lad.source) > 40
        e = lad.effective
        assert e == "undated" or (len(e) == 4 and e.isdigit()) or dt.date.fromisoformat(e)


@pytest.mark.parametrize("symbol,as_of,effective", [
    ("BTCUSDT", None, "2025"),
    ("BTCUSDT", "2021-03-18", "2021-03-18"),
    ("BTCUSDT", "2023-07-01T12:00:00Z", "2021-03-18"),
    ("BTCUSDT", dt.date(2024, 12, 31), "2021-03-18"),
    ("BTCUSDT", dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), "2025"),
    ("BTCUSDT", "2026-06-01", "2025"),
    ("BTCUSD_PERP", "2019-01-01", "undated"),
    ("BTCUSD_PERP", None, "undated"),
])
def test_as_of_picks_the_ladder_in_force(symbol, as_of, effective):
    assert B.binance_ladder(symbol, as_of).effective == effective


@pytest.mark.parametrize("symbol,as_of,column", [
    ("BTCUSDT", "2021-03-17", "as_of"),
    ("BTCUSDT", "not a date", "as_of"),
    ("ETHUSDT", None, "symbol"),
])
def test_as_of_errors(symbol, as_of, column):
    with pytest.raises(pmrisk.MarginError) as err:
        B.binance_ladder(symbol, as_of)
    assert err.value.column == column


def test_package_data_includes_the_venue_files():
    """Every TOML under bindings/venues is matched by pyproject's package-data (so it installs)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = conf["package-data"]["pmrisk"]
    files = sorted((ROOT / "bindings" / "venues").glob("*.toml"))
    assert files
    for f in files:
        rel = f.relative_to(ROOT / "bindings")
        assert any(rel.match(g) for g in globs), rel


# -- per position --------------------------------------------------------------------------------

def test_position_margin_usdm_and_coinm():
    usdt, coin = B.binance_ladder("BTCUSDT"), B.binance_ladder("BTCUSD_PERP")
    pos = pa.table({
        "account": ["a", "a", "b"],
        "symbol": ["BTCUSDT", "BTCUSD_PERP", "BTCUSDT"],
        "quantity": [-50.0, 100.0, 250.0],
        "contract_size": [1.0, 100.0, 1.0],
        "mark_price": [60_000.0, 25_000.0, 100_000.0],
        "index_price": [60_100.0, 25_010.0, 99_900.0],
    })
    r = B.position_margin(pos, [usdt, coin]).to_pydict()
    assert r["account"] == ["a", "a", "b"]
    assert r["notional"] == pytest.approx([3e6, 0.4, 2.5e7], rel=1e-15)
    assert r["bracket"] == [3, 1, 5]
    assert r["maintenance_margin"] == pytest.approx([18_000.0, 0.0016, 368_000.0], rel=1e-12)
    assert r["maintenance_margin_usd"] == pytest.approx(
        [18_000.0, 0.0016 * 25_010.0, 368_000.0], rel=1e-12)
    by_dict = B.position_margin(pos.drop_columns(["index_price"]),
                                {"BTCUSDT": usdt, "BTCUSD_PERP": coin})
    assert "maintenance_margin_usd" not in by_dict.column_names
    assert by_dict.column("maintenance_margin").to_pylist() == r["maintenance_margin"]


@pytest.mark.parametrize("change,column,rows", [
    ({"symbol": ["BTCUSDT", "ETHUSDT"]}, "symbol", [("b", "ETHUSDT")]),
    ({"quantity": [1.0, 20_000.0]}, "quantity", [("b", "BTCUSDT")]),     # 2 B USD > last cap
    ({"mark_price": [60_000.0, 0.0]}, "mark_price", [("b", "BTCUSDT")]),
    ({"contract_size": [1.0, -1.0]}, "contract_size", [("b", "BTCUSDT")]),
    ({"quantity": [1.0, float("nan")]}, "quantity", [("b", "BTCUSDT")]),
])
def test_position_margin_errors(change, column, rows):
    pos = {"account": ["a", "b"], "symbol": ["BTCUSDT", "BTCUSDT"], "quantity": [1.0, 2.0],
           "contract_size": [1.0, 1.0], "mark_price": [60_000.0, 100_000.0]}
    pos.update(change)
    with pytest.raises(pmrisk.MarginError) as err:
        B.position_margin(pos, B.binance_ladder("BTCUSDT"))
    assert err.value.table == "positions" and err.value.column == column
    assert err.value.rows == rows


# -- review findings: None and malformed arguments, effective and source ------------------

_L = [(0, 50_000, 0.004, 125), (50_000, 250_000, 0.005, 100)]


@pytest.mark.parametrize("call, table, column", [
    (lambda: B.ladder(None), "brackets", None),
    (lambda: B.ladder([5]), "brackets", None),
    (lambda: B.maintenance_margin(1.0, None), "arguments", "ladder"),
    (lambda: B.locate(1.0, "BTCUSDT"), "arguments", "ladder"),
    (lambda: B.ladders_from_binance(None), "brackets", None),
    (lambda: B.ladders_from_binance([{"symbol": "X", "brackets": None}]),
     "brackets", "brackets"),
    (lambda: B.ladders_from_binance([{"symbol": "X", "brackets": [5]}]),
     "brackets", "brackets"),
    (lambda: B.position_margin(None, {"X": B.ladder(_L, symbol="X")}),
     "positions", None),
    (lambda: B.position_margin([{"symbol": "X", "quantity": 1.0, "contract_size": 1.0,
                                        "mark_price": 1.0}], None), "arguments", "ladders"),
    (lambda: B.position_margin([{"symbol": "X", "quantity": 1.0, "contract_size": 1.0,
                                        "mark_price": 1.0}], {"X": None}), "arguments",
     "ladders"),
    (lambda: B.ladder(_L, effective="garbage"), "arguments", "effective"),
    (lambda: B.ladder(_L, effective=1718611200), "arguments", "effective"),
    (lambda: B.ladder(_L, effective=float("nan")), "arguments", "effective"),
    (lambda: B.ladder(_L, source=5), "arguments", "source"),
])
def test_malformed_arguments_are_margin_errors(call, table, column):
    with pytest.raises(pmrisk.MarginError) as exc:
        call()
    assert (exc.value.table, exc.value.column) == (table, column)


def test_ladders_from_binance_names_the_symbol_without_brackets():
    with pytest.raises(pmrisk.MarginError) as exc:
        B.ladders_from_binance([{"symbol": "X", "brackets": None}])
    assert exc.value.rows == [("X",)]


@pytest.mark.parametrize("effective, stored", [
    ("2024-06-17", "2024-06-17"), ("2024-06-17T00:00:00Z", "2024-06-17"),
    (np.datetime64("2024-06-17"), "2024-06-17"), (dt.date(2024, 6, 17), "2024-06-17"),
    ("2024-06-17T08:00:00Z", "2024-06-17T08:00:00Z"), (None, None)])
def test_effective_is_a_date_through_the_time_parser(effective, stored):
    lad = B.ladder(_L, symbol="X", effective=effective, source="my account")
    assert lad.effective == stored and lad.source == "my account"

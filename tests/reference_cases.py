"""Load the published reference cases and turn their inputs into pmrisk calls.

The cases are ``tests/reference/*.json`` (copies, so the suite is self-contained) plus, when the
project's ``shared/reference`` folder sits beside the checkout (as on the developers' machines
and in CI), every case there too: a case published there later is run without being copied.
Each ``run_*`` returns what the case's ``expected`` block describes, so a new case of a known
kind is one JSON file away."""

import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute below)

import pmrisk
from pmrisk.venues import brackets
from pmrisk.kernel.addons import tiered
from pmrisk.kernel.okx import mr9

HERE = pathlib.Path(__file__).parent / "reference"
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"


def case_ids():
    """Stems of every case in tests/reference and, if present, shared/reference."""
    dirs = [HERE] + ([SHARED] if SHARED.is_dir() else [])
    return sorted({p.stem for d in dirs for p in d.glob("*.json")})


def path_of(case_id):
    shared = SHARED / f"{case_id}.json"
    return shared if shared.is_file() else HERE / f"{case_id}.json"


def load(case_id):
    return json.loads(path_of(case_id).read_text())


def run_pme(case):
    """A Deribit ``private/pme/simulate`` case: instruments, positions, market, index,
    reserves in coin, model -> MarginResult with per-position risk vectors."""
    inp = case["inputs"]
    unit = case["expected"]["unit"]
    reserves = None
    if "reserves_coin" in inp:
        rc = inp["reserves_coin"]
        accounts = sorted({p["account"] for p in inp["positions"]})
        reserves = pa.Table.from_pylist([
            {"account": a, "unit": unit, "mmp_margin": float(rc.get("mmp_margin", 0.0)),
             "open_orders_margin": float(rc.get("open_orders_margin", 0.0))} for a in accounts])
    return pmrisk.margin(
        inp["positions"], pa.Table.from_pylist(inp["instruments"]),
        pa.Table.from_pylist(inp["market"]), inp["index"], reserves=reserves,
        model=pmrisk.Model.from_dict(inp["model"]), valuation_time=inp["valuation_time"],
        risk_vectors="positions")


def per_symbol_vectors(result, symbol, table):
    prv = result.position_risk_vectors
    rv = prv.filter(pa.compute.equal(prv["symbol"], symbol))
    rv = rv.filter(pa.compute.equal(rv["table"], table))
    return np.asarray(rv["pnl"].to_numpy()), rv["vol_state"].to_pylist()


def run_span(case, portfolio):
    """A SPAN risk-array case: 16 values per contract, one portfolio."""
    arrays = case["inputs"]["risk_arrays"]
    rows = [{"symbol": s, "scenario": k, "pnl": float(v)}
            for s, vals in arrays.items() for k, v in enumerate(vals)]
    held = case["inputs"]["portfolios"][portfolio]
    pos = [{"account": portfolio, "symbol": s, "quantity": float(q)} for s, q in held.items()]
    return pmrisk.margin_from_risk_arrays(pos, pa.Table.from_pylist(rows), model="span")


def run_tiers(case):
    inp = case["inputs"]
    if "balance" in inp:
        b = inp["balance"]
        model = pmrisk.Model.preset("deribit_pme").with_overrides(
            {"collateral": {b["asset"]: {"tiers_usd": inp["tiers_usd"]}}})
        from pmrisk.model.model import collateral_value_usd
        return {"collateral_value_usd": float(collateral_value_usd(
            model, b["asset"], np.array([b["amount"] * b["index_price"]]))[0])}
    mr7 = float(tiered(np.array([inp["MR7_raw"]]), inp["tiers_usd"])[0])
    return {"MR7_adjusted": mr7, "MMR": max(float(inp["MR"]), mr7)}


def _bracket_row(ladder, symbol, inp, size_key, notional_key):
    """One position through ``position_margin`` (quantity or contracts at a mark, optional
    index price) or one notional through ``locate``: the result row as a dict."""
    if notional_key in inp:
        return brackets.locate(inp[notional_key], ladder).to_pylist()[0]
    qty = inp.get("contracts", inp.get("quantity"))
    if qty is None or "mark_price" not in inp:
        raise AssertionError(f"unknown bracket-case inputs: {sorted(inp)}")
    pos = {"symbol": symbol, "quantity": float(qty),
           "contract_size": float(inp.get(size_key, 1.0)), "mark_price": float(inp["mark_price"])}
    if "index_price" in inp:
        pos["index_price"] = float(inp["index_price"])
    return brackets.position_margin([pos], ladder).to_pylist()[0]


def run_coinm_brackets(case, sub):
    """A COIN-M bracket case: the ladder ``brackets_btc`` (rows floor, cap, mmr, max_leverage,
    cum in BTC) and one sub-case, either a notional in BTC (through ``locate``) or contracts at
    a mark (through ``position_margin``, contract size in USD).  Returns every value the
    library gives, under the case's key names."""
    inp = sub["inputs"]
    symbol = inp.get("symbol", case["id"])
    ladder = brackets.ladder(case["brackets_btc"], symbol=symbol, kind="coin_m")
    row = _bracket_row(ladder, symbol, inp, "contract_size_usd", "notional_btc")
    out = {"notional_btc": row["notional"], "bracket": row["bracket"], "mmr": row["mmr"],
           "cum": row["cum"], "max_leverage": row["max_leverage"],
           "maintenance_margin_btc": row["maintenance_margin"]}
    if "maintenance_margin_usd" in row:
        out["maintenance_margin_usd"] = row["maintenance_margin_usd"]
    return out


def run_usdm_brackets(case, sub):
    """A USD-M bracket case: named ladders in Binance's leverage-bracket shape and one sub-case
    (the ladder's name and a notional in USD, or a quantity at a mark).  Returns the values
    as ``expected_*`` keys."""
    name = sub["ladder"]
    symbol = f"{case['id']}@{name}"
    (ladder,) = brackets.ladders_from_binance(case["ladders"][name],
                                                     symbol=symbol).values()
    row = _bracket_row(ladder, symbol, sub, "contract_size", "notional_usd")
    return {"expected_maintenance_margin_usd": row["maintenance_margin"],
            "expected_notional_usd": row["notional"], "expected_bracket": row["bracket"],
            "expected_mmr": row["mmr"], "expected_cum": row["cum"],
            "expected_max_leverage": row["max_leverage"]}


def run_mr9(case):
    """An OKX MR9 case: a unit whose USDT-settled derivatives are long and USD-settled ones
    short the hedged notional (cash deltas, USD), charged by the case's tiers."""
    inp = case["inputs"]
    h = float(inp["hedged_notional_usd"])
    charge, hedged = mr9(np.array([[h, 0.0, -h]]), inp["tiers_usd"])
    assert hedged.tolist() == [[h, 0.0, 0.0]]
    return {"MR9": float(charge[0])}

def run_calibration(case):
    """SEBI/Varma's log ranges: sigma per interval, k_sigma, horizon -> range up and down, as
    ``pmrisk.calibrate`` computes them."""
    from pmrisk.model.calibration import log_ranges
    inp = case["inputs"]
    up, down = log_ranges(inp["sigma"], inp["k_sigma"], inp["horizon"])
    return {"range_up": float(up), "range_down": float(down)}

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
from pmrisk.kernel.addons import tiered

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
        from pmrisk.model import collateral_value_usd
        return {"collateral_value_usd": float(collateral_value_usd(
            model, b["asset"], np.array([b["amount"] * b["index_price"]]))[0])}
    mr7 = float(tiered(np.array([inp["MR7_raw"]]), inp["tiers_usd"])[0])
    return {"MR7_adjusted": mr7, "MMR": max(float(inp["MR"]), mr7)}


def run_calibration(case):
    """SEBI/Varma's log ranges: sigma per interval, k_sigma, horizon -> range up and down, as
    ``pmrisk.calibrate`` computes them."""
    from pmrisk.calibration import log_ranges
    inp = case["inputs"]
    up, down = log_ranges(inp["sigma"], inp["k_sigma"], inp["horizon"])
    return {"range_up": float(up), "range_down": float(down)}

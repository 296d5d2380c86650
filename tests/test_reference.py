"""Published worked examples reproduced to their stated tolerance (SPEC §12)."""

import numpy as np
import pytest

from reference_cases import cases, load, per_symbol_vectors, run_pme, run_span, run_tiers


@pytest.mark.parametrize("case_id", cases("deribit_pme"))
def test_deribit_pme_case(case_id):
    case = load(case_id)
    exp, tol = case["expected"], case["tolerance"]
    r = run_pme(case)
    vabs = tol["vectors_abs"]
    # per-instrument standard vectors: one value per bucket, repeated for vol up/same/down
    for sym, per_bucket in exp["initial_risk_vectors_per_bucket"].items():
        pnl, states = per_symbol_vectors(r, sym, "standard")
        assert states[:3] == ["up", "same", "down"]
        np.testing.assert_allclose(pnl[1::3], per_bucket, rtol=0, atol=vabs)
        if all(np.isfinite(per_bucket)) and "note_vectors" in exp:
            np.testing.assert_allclose(pnl[0::3], per_bucket, rtol=0, atol=vabs)
            np.testing.assert_allclose(pnl[2::3], per_bucket, rtol=0, atol=vabs)
    for sym, ext in exp["initial_risk_vectors_extended"].items():
        pnl, states = per_symbol_vectors(r, sym, "extended")
        assert set(states) == {"up"}
        np.testing.assert_allclose(pnl, ext, rtol=0, atol=vabs)
    units = r.units.to_pylist()
    assert len(units) == 1 and units[0]["unit"] == exp["unit"]
    u = units[0]
    agg = r.risk_vectors.to_pydict()
    tables = np.array(agg["table"])
    weighted = np.array(agg["weighted_pnl"])
    np.testing.assert_allclose(weighted[tables == "standard"][1::3],
                               exp["aggregated_standard_per_bucket"], rtol=0, atol=vabs)
    np.testing.assert_allclose(weighted[tables == "extended"], exp["aggregated_extended"],
                               rtol=0, atol=vabs)
    mrel = tol["margins_rel"]
    assert u["worst_case"] == pytest.approx(exp["worst_case_coin"], rel=mrel)
    wb = exp["worst_case_bucket"]
    assert u["binding_scenario"] == wb["index"]
    assert u["binding_table"] == wb["source"]
    assert u["roll_shock"] == pytest.approx(exp["roll_shock_coin"], rel=mrel)
    assert u["delta_shock"] == pytest.approx(exp["delta_shock_coin"], abs=1e-15)
    assert u["risk_matrix_margin"] == pytest.approx(exp["risk_matrix_margin_coin"], rel=mrel)
    assert u["initial_margin"] == pytest.approx(exp["initial_margin_coin"], rel=mrel)
    assert u["maintenance_margin"] == pytest.approx(exp["maintenance_margin_coin"], rel=mrel)


@pytest.mark.parametrize("case_id", cases("span"))
def test_span_risk_array_case(case_id):
    case = load(case_id)
    atol = case["tolerance"]["abs"]
    for portfolio, exp in case["expected"].items():
        r = run_span(case, portfolio)
        u = r.units.to_pylist()[0]
        assert u["worst_case"] == pytest.approx(exp["scan_risk"], abs=atol)
        assert u["binding_scenario"] + 1 in exp["binding_scenario_1_based"]
        acc = r.accounts.to_pylist()[0]
        assert acc["maintenance_margin"] == pytest.approx(exp["scan_risk"], abs=atol)


@pytest.mark.parametrize("case_id", cases("binance") + cases("okx"))
def test_tier_case(case_id):
    case = load(case_id)
    got = run_tiers(case)
    for key, want in case["expected"].items():
        assert got[key] == pytest.approx(want, abs=case["tolerance"]["abs"])


def test_reference_copies_match_shared():
    """tests/reference mirrors ../shared/reference when that folder is present."""
    import pathlib
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"
    if not shared.is_dir():
        pytest.skip("shared/reference not beside this checkout")
    here = pathlib.Path(__file__).parent / "reference"
    for f in shared.glob("*.json"):
        assert (here / f.name).read_text() == f.read_text(), f.name

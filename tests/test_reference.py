"""Published worked examples reproduced to their stated tolerance (SPEC §12).

Every ``tests/reference/*.json`` is a case; its kind is read from its contents (Deribit
``pme/simulate`` inputs, SPAN risk arrays, tier tables, bracket ladders with sub-cases), not
its name, and every number in its ``expected`` block (or its sub-cases') that this harness
knows is checked.  A case of an unknown shape, or an expected key nobody checks, fails the test
rather than passing silently.
"""

import numpy as np
import pytest

from reference_cases import (HERE, SHARED, case_ids, load, per_symbol_vectors,
                             run_calibration, run_coinm_brackets, run_mr9, run_pme, run_span,
                             run_tiers, run_usdm_brackets)

CASES = case_ids()


def kind_of(case):
    if "brackets_btc" in case and "cases" in case:
        return "coinm_brackets"
    if "ladders" in case and "cases" in case:
        return "usdm_brackets"
    inp = case["inputs"]
    if "instruments" in inp and "positions" in inp:
        return "pme"
    if "risk_arrays" in inp:
        return "span"
    if "hedged_notional_usd" in inp and "tiers_usd" in inp:
        return "mr9"
    if "tiers_usd" in inp:
        return "tiers"
    if "sigma" in inp and "k_sigma" in inp:
        return "calibration"
    raise AssertionError(f"unknown reference-case shape: inputs {sorted(inp)}")


@pytest.mark.parametrize("case_id", CASES)
def test_reference_case(case_id):
    case = load(case_id)
    checked = {"pme": check_pme, "span": check_span, "tiers": check_tiers, "mr9": check_mr9,
               "coinm_brackets": check_coinm_brackets,
               "usdm_brackets": check_usdm_brackets,
               "calibration": check_calibration}[kind_of(case)](case)
    unchecked = {k for k, v in case.get("expected", {}).items()
                 if k not in checked and not k.startswith("note") and not isinstance(v, str)}
    assert not unchecked, f"expected values this harness does not check: {sorted(unchecked)}"


def check_pme(case):
    exp, tol = case["expected"], case["tolerance"]
    vabs = tol.get("vectors_abs", 1e-12)
    mrel = tol.get("margins_rel", 1e-8)
    r = run_pme(case)
    done = {"unit", "note_vectors"}
    units = r.units.to_pylist()
    assert len(units) == 1 and units[0]["unit"] == exp["unit"]
    u = units[0]
    for sym, per_bucket in exp.get("initial_risk_vectors_per_bucket", {}).items():
        pnl, states = per_symbol_vectors(r, sym, "standard")
        assert states[:3] == ["up", "same", "down"]
        np.testing.assert_allclose(pnl[1::3], per_bucket, rtol=0, atol=vabs)
    done.add("initial_risk_vectors_per_bucket")
    for sym, cells in exp.get("initial_risk_vectors_standard", {}).items():
        pnl, _ = per_symbol_vectors(r, sym, "standard")
        np.testing.assert_allclose(pnl, cells, rtol=0, atol=vabs)
    done.add("initial_risk_vectors_standard")
    for sym, ext in exp.get("initial_risk_vectors_extended", {}).items():
        pnl, states = per_symbol_vectors(r, sym, "extended")
        assert set(states) == {"up"}
        np.testing.assert_allclose(pnl, ext, rtol=0, atol=vabs)
    done.add("initial_risk_vectors_extended")
    agg = r.unit_risk_vectors.to_pydict()
    tables = np.array(agg["table"])
    weighted = np.array(agg["weighted_pnl"])
    raw = np.array(agg["pnl"])
    for key, values, sl in (("aggregated_standard_per_bucket", weighted, slice(1, None, 3)),
                            ("aggregated_standard", weighted, slice(None)),
                            ("pre_aggregated_standard_per_bucket", raw, slice(1, None, 3)),
                            ("pre_aggregated_standard", raw, slice(None))):
        if key in exp:
            np.testing.assert_allclose(values[tables == "standard"][sl], exp[key], rtol=0,
                                       atol=vabs)
        done.add(key)
    for key, values in (("aggregated_extended", weighted), ("pre_aggregated_extended", raw)):
        if key in exp:
            np.testing.assert_allclose(values[tables == "extended"], exp[key], rtol=0,
                                       atol=vabs)
        done.add(key)
    coin = {"worst_case_coin": "worst_case", "roll_shock_coin": "roll_shock",
            "risk_matrix_margin_coin": "risk_matrix_margin",
            "initial_margin_coin": "initial_margin",
            "maintenance_margin_coin": "maintenance_margin",
            "mmp_margin_coin": "mmp_margin", "open_orders_margin_coin": "open_orders_margin",
            "delta_total_coin": "delta"}
    for key in ("correlation_contingency_coin", "spot_margin_coin"):
        # components pmrisk does not model (X:PM correlation sets, spot margin): must be 0
        if key in exp:
            assert exp[key] == 0, f"{key} = {exp[key]} is not modelled by pmrisk"
        done.add(key)
    for key, col in coin.items():
        if key in exp:
            assert u[col] == pytest.approx(exp[key], rel=mrel, abs=1e-15), key
        done.add(key)
    if "delta_shock_coin" in exp:
        assert u["delta_shock"] == pytest.approx(exp["delta_shock_coin"], rel=mrel, abs=1e-15)
    done.add("delta_shock_coin")
    if "worst_case_bucket" in exp:
        wb = exp["worst_case_bucket"]
        assert u["binding_scenario"] == wb["index"]
        assert u["binding_table"] == wb["source"]
        if wb["source"] == "standard":
            n_buckets = len(exp.get("aggregated_standard_per_bucket", [])) or None
            if n_buckets:
                assert u["binding_scenario"] // 3 + 1 == wb["bucket_1_based"]
                side = "left" if wb["bucket_1_based"] <= n_buckets // 2 else "right"
                assert side == wb["side"]
    done.add("worst_case_bucket")
    return done


def check_span(case):
    atol = case["tolerance"]["abs"]
    for portfolio, exp in case["expected"].items():
        r = run_span(case, portfolio)
        u = r.units.to_pylist()[0]
        assert u["worst_case"] == pytest.approx(exp["scan_risk"], abs=atol)
        if "binding_scenario_1_based" in exp:
            assert u["binding_scenario"] + 1 in exp["binding_scenario_1_based"]
        acc = r.accounts.to_pylist()[0]
        assert acc["maintenance_margin"] == pytest.approx(exp["scan_risk"], abs=atol)
        unknown = set(exp) - {"scan_risk", "binding_scenario_1_based"}
        assert not unknown, f"{portfolio}: unchecked {sorted(unknown)}"
    return set(case["expected"])


def check_tiers(case):
    got = run_tiers(case)
    for key, want in case["expected"].items():
        assert got[key] == pytest.approx(want, abs=case["tolerance"]["abs"]), key
    return set(case["expected"])


def check_mr9(case):
    got = run_mr9(case)
    for key, want in case["expected"].items():
        assert key in got, f"expected value this harness does not check: {key}"
        assert got[key] == pytest.approx(want, abs=case["tolerance"]["abs"]), key
    return set(case["expected"])


def _check_sub(got, expected, tol, what):
    for key, want in expected.items():
        assert key in got, f"{what}: expected value this harness does not check: {key}"
        assert got[key] == pytest.approx(want, rel=tol.get("rel", 0), abs=tol.get("abs", 0)), \
            f"{what}: {key}"


def check_coinm_brackets(case):
    """Every sub-case's ``expected`` keys (sub-cases carry their own)."""
    for sub in case["cases"]:
        _check_sub(run_coinm_brackets(case, sub), sub["expected"], case["tolerance"],
                   sub.get("what", sub["inputs"]))
    return set()


def check_usdm_brackets(case):
    """Sub-cases are flat: ``ladder`` and ``notional_usd`` (or ``quantity``, ``mark_price``,
    ``contract_size``) in, ``expected_*`` out."""
    for sub in case["cases"]:
        unknown = {k for k in sub if not k.startswith("expected_")} - {
            "ladder", "notional_usd", "quantity", "contract_size", "mark_price", "what"}
        assert not unknown, f"unknown USD-M bracket inputs: {sorted(unknown)}"
        expected = {k: v for k, v in sub.items() if k.startswith("expected_")}
        assert expected, f"sub-case without expected values: {sub}"
        _check_sub(run_usdm_brackets(case, sub), expected, case["tolerance"], sub)
    return set()


def check_calibration(case):
    got, exp, tol = run_calibration(case), case["expected"], case["tolerance"]
    for key in ("range_up", "range_down"):
        assert got[key] == pytest.approx(exp[key], rel=tol["rel"], abs=0), key
        published = exp[f"{key}_percent_published"]
        assert 100 * got[key] == pytest.approx(published, abs=tol["published_abs_percent"])
    return {"range_up", "range_down", "range_up_percent_published",
            "range_down_percent_published"}


def test_reference_copies_match_shared():
    """The copies in tests/reference equal their originals in shared/reference (a case only
    in shared/ is run all the same, see ``case_ids``)."""
    if not SHARED.is_dir():
        pytest.skip("shared/reference not beside this checkout")
    both = [f for f in SHARED.glob("*.json") if (HERE / f.name).is_file()]
    assert both, "no case in common with shared/reference"
    for f in both:
        assert (HERE / f.name).read_text() == f.read_text(), f.name

"""Excluded instruments (SPEC §6): left out of portfolio aggregation, margined standalone by the
SPAN 16-scenario rule plus the short option minimum, still counted in equity."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pmrisk
from pmrisk import samples

BOOK = samples.book(n_accounts=2, positions_per_account=14, underlyings=("BTC", "ETH"),
                    option_share=0.5, inverse_share=0.5, seed=21)
SOM = {"default_underlying": {"short_option_minimum": 0.002}}


def col(t, name):
    return np.asarray(t[name].to_numpy(zero_copy_only=False), dtype=np.float64)


def run(model, positions=BOOK["positions"]):
    return pmrisk.margin(**dict(BOOK, positions=positions), model=model)


def kinds_of(positions):
    ins = BOOK["instruments"]
    kind = dict(zip(ins["symbol"].to_pylist(), ins["kind"].to_pylist()))
    return np.array([kind[s] for s in positions["symbol"].to_pylist()])


def standalone(symbol, account, model):
    """The SPAN rule for one position alone: the sum model on SPAN's 16 scenarios."""
    pos = BOOK["positions"].filter(pc.and_(pc.equal(BOOK["positions"]["symbol"], symbol),
                                           pc.equal(BOOK["positions"]["account"], account)))
    m = model.with_overrides({"cross_unit": "sum", "scenario_set": "span16",
                              "extreme_scenarios": False})
    u = run(m, pos).units
    return col(u, "worst_case")[0] + col(u, "short_option_minimum")[0]


@pytest.mark.parametrize("base", ["standard", "deribit_pme"])
def test_excluded_options_are_margined_standalone(base):
    model = pmrisk.Model.preset(base).with_overrides(SOM)
    ex = model.with_overrides({"exclude": {"kinds": ["option"]}})
    pos = BOOK["positions"]
    is_opt = kinds_of(pos) == "option"
    r = run(ex)
    futures_only = run(model, pos.filter(pa.array(~is_opt)))
    # portfolio part: exactly the book without the options
    for name in ("scenario_margin_usd", "roll_shock_usd", "delta_shock_usd",
                 "short_option_minimum_usd"):
        a = r.units.to_pandas().set_index(["account", "unit"])[name]
        b = futures_only.units.to_pandas().set_index(["account", "unit"])[name]
        np.testing.assert_allclose(a.reindex(b.index), b, rtol=1e-12, atol=1e-9, err_msg=name)
    # standalone part: per option, SPAN 16 + short option minimum, summed into its unit
    p = r.positions.to_pandas()
    opts = p[p["symbol"].isin(pos.filter(pa.array(is_opt))["symbol"].to_pylist())]
    rm, f, fi = model["risk_multiplier"], model["mm_factor"], model["im_factor"]
    for _, row in opts.iterrows():
        want = standalone(row["symbol"], row["account"], model)
        assert row["mm_contribution"] == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert row["im_contribution"] == pytest.approx(fi * want, rel=1e-12, abs=1e-15)
    units = r.units.to_pandas()
    per_unit = opts.groupby(["account", "unit"])["mm_contribution"].sum()
    got = units.set_index(["account", "unit"])["excluded_margin"]
    np.testing.assert_allclose(got.reindex(per_unit.index), per_unit, rtol=1e-12)
    # SPEC §6: MM = portfolio part + the standalone sum; IM adds im_factor x the sum
    np.testing.assert_allclose(
        col(r.units, "maintenance_margin"),
        rm * f * col(r.units, "risk_matrix_margin") + col(r.units, "excluded_margin"),
        rtol=1e-12)
    np.testing.assert_allclose(
        col(r.units, "initial_margin"),
        rm * fi * col(r.units, "risk_matrix_margin") + fi * col(r.units, "excluded_margin")
        + col(r.units, "open_orders_margin") + col(r.units, "mmp_margin"), rtol=1e-12)
    # excluded positions still count in equity
    np.testing.assert_allclose(col(r.accounts, "equity"), col(run(model).accounts, "equity"),
                               rtol=1e-12)
    # contributions + unallocated still add up to the account's MM and IM
    acc = r.accounts.to_pandas().set_index("account")
    for c, a in (("mm_contribution_usd", "maintenance_margin"),
                 ("im_contribution_usd", "initial_margin")):
        np.testing.assert_allclose(p.groupby("account")[c].sum().reindex(acc.index), acc[a],
                                   rtol=1e-9)


def test_exclude_by_symbol_and_by_underlying():
    m = pmrisk.Model.preset("standard")
    pos = BOOK["positions"]
    sym = pos["symbol"][0].as_py()
    by_symbol = run(m.with_overrides({"exclude": {"symbols": [sym]}}))
    p = by_symbol.positions.to_pandas()
    assert (p.loc[p["symbol"] == sym, "mm_contribution"] > 0).all()
    by_und = run(m.with_overrides({"exclude": {"underlyings": ["ETH"]}}))
    u = by_und.units.to_pandas()
    eth = u["underlying"] == "ETH"
    assert (u.loc[eth, "scenario_margin"] == 0).all()
    assert (u.loc[eth, "excluded_margin"] > 0).all()
    assert (u.loc[~eth, "excluded_margin"] == 0).all()
    # excluding everything = the sum of standalone SPAN margins
    every = run(m.with_overrides({"exclude": {"underlyings": ["BTC", "ETH"]}}))
    assert (col(every.accounts, "scenario_margin") == 0).all()
    assert (col(every.accounts, "maintenance_margin") > 0).all()


def test_excluding_nothing_changes_nothing():
    m = pmrisk.Model.preset("standard")
    a = run(m)
    b = run(m.with_overrides({"exclude": {"symbols": ["NOT-HELD"], "kinds": [],
                                          "underlyings": ["DOGE"]}}))
    assert a.accounts.equals(b.accounts)
    assert a.units.equals(b.units)


def test_open_orders_on_excluded_instruments_cost_their_standalone_increase():
    """An order on an excluded option is margined as the standalone SPAN margin would grow if
    it filled (the portfolio, where it might look like a hedge, never sees it)."""
    model = pmrisk.Model.preset("standard").with_overrides(
        dict(SOM, exclude={"kinds": ["option"]}))
    pos = BOOK["positions"]
    opts = pos.filter(pa.array(kinds_of(pos) == "option"))
    acc, sym, qty = (opts[c][0].as_py() for c in ("account", "symbol", "quantity"))
    mine = pos.filter(pc.equal(pos["account"], acc))
    for order_qty in (-2 * qty, 0.5 * qty, 3.0):
        orders = pa.table({"account": [acc], "order_id": ["o1"], "symbol": [sym],
                           "quantity": [order_qty], "price": [1.0]})
        r = pmrisk.margin(**dict(BOOK, positions=mine, open_orders=orders), model=model)
        filled = pa.Table.from_pylist([
            dict(row, quantity=row["quantity"] + (order_qty if row["symbol"] == sym else 0.0))
            for row in mine.to_pylist()])
        before = run(model, mine).units.to_pandas().set_index("unit")["excluded_margin"]
        after = run(model, filled).units.to_pandas().set_index("unit")["excluded_margin"]
        u = r.units.to_pandas().set_index("unit")
        unit = r.positions.filter(pc.equal(r.positions["symbol"], sym))["unit"][0].as_py()
        want = max(after[unit] - before[unit], 0.0)
        assert u.loc[unit, "open_orders_margin"] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_orders_on_excluded_instruments_not_held_cost_the_whole_standalone_margin():
    """An order on an excluded instrument the account does not hold costs the standalone
    margin of the position it would open; orders of several accounts are matched to their
    own account's position."""
    model = pmrisk.Model.preset("standard").with_overrides(
        dict(SOM, exclude={"kinds": ["option"]}))
    pos = BOOK["positions"]
    opts = pos.filter(pa.array(kinds_of(pos) == "option"))
    acc, other = opts["account"][0].as_py(), opts["symbol"][0].as_py()
    # the account's positions without that option: the order opens it
    mine = pos.filter(pc.and_(pc.equal(pos["account"], acc), pc.not_equal(pos["symbol"],
                                                                           other)))
    orders = pa.table({"account": [acc], "order_id": ["o1"], "symbol": [other],
                       "quantity": [-2.0], "price": [1.0]})
    r = pmrisk.margin(**dict(BOOK, positions=mine, open_orders=orders), model=model)
    opened = pa.concat_tables([mine, pa.Table.from_pylist(
        [dict(mine.to_pylist()[0], symbol=other, quantity=-2.0)], schema=mine.schema)])
    after = run(model, opened).units.to_pandas().set_index("unit")
    before = run(model, mine).units.to_pandas().set_index("unit")
    unit = r.units["unit"][r.units["open_orders_margin"].to_numpy().argmax()].as_py()
    want = after.loc[unit, "excluded_margin"] - before.loc[unit, "excluded_margin"]
    u = r.units.to_pandas().set_index("unit")
    assert want > 0
    got = u.loc[unit, "open_orders_margin"] - before.loc[unit, "open_orders_margin"]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)

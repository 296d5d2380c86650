"""Correlated joint stress (SPEC §5): the kernel against the exact-revaluation numpy oracle,
the joint directions, the correlation matrix (defaults, overrides, validation, Higham repair)
and what the account reports."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
import pmrisk
from books import INDEX, MARKET, TIME, UNIVERSE, books
from pmrisk import samples
from pmrisk.io.book import load_book
from pmrisk.engine.correlated import joint_scenarios
from pmrisk.model.correlation import CorrelationRepaired, correlation_matrix
from pmrisk.kernel.correlation import min_eigenvalue, nearest_correlation, psd_sqrt
from pmrisk.kernel.directions import (KIND_CONDITIONAL, joint_moves,
                                      quasi_random_directions)

SMALL = pmrisk.Model.preset("standard").with_overrides({"n_directions": 24})


def col(t, name):
    return np.asarray(t[name].to_numpy(zero_copy_only=False), dtype=np.float64)


def book_of(tables, model):
    keys = ("positions", "instruments", "market", "index", "balances", "open_orders")
    return load_book(**{k: tables.get(k) for k in keys}, reserves=None, model=model,
                     valuation_time=tables["valuation_time"])


def assert_oracle_agrees(tables, model):
    r = pmrisk.margin(**tables, model=model)
    want = oracles.joint_scenario_margin(book_of(tables, model), model)
    got = col(r.accounts, "scenario_margin")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(1.0, want.max()))
    return r


# -- kernel vs oracle -------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(pos=books(max_accounts=3, max_positions=10))
def test_joint_worst_matches_exact_revaluation_oracle(pos):
    tables = {"positions": pos, "instruments": UNIVERSE, "market": MARKET, "index": INDEX,
              "valuation_time": TIME}
    assert_oracle_agrees(tables, SMALL)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n_und=st.integers(1, 4), tail=st.sampled_from([True, False]),
       rho=st.floats(-0.3, 0.9))
def test_oracle_on_random_multi_underlying_option_books(seed, n_und, tail, rho):
    # rho up to 0.9: beside BTC,ETH = 0.85, a default of 0.95 over four underlyings is not a
    # valid correlation matrix (smallest eigenvalue -0.0007), which margin() rightly refuses
    und = ("BTC", "ETH", "SOL", "XRP")[:n_und]
    tables = samples.book(n_accounts=2, positions_per_account=12, underlyings=und,
                          option_share=0.6, inverse_share=0.5, seed=seed)
    model = SMALL.with_overrides({"extreme_scenarios": tail,
                                  "correlations": {"default": rho, "BTC,ETH": 0.85}})
    assert_oracle_agrees(tables, model)


def test_oracle_at_the_preset_density_on_a_three_underlying_book():
    tables = samples.book(n_accounts=1, positions_per_account=30,
                          underlyings=("BTC", "ETH", "SOL"), option_share=0.7, seed=3)
    r = assert_oracle_agrees(tables, pmrisk.Model.preset("standard"))
    assert col(r.accounts, "scenario_margin")[0] > 0


def test_scenario_margin_rows_add_up():
    d = samples.demo_book()
    r = pmrisk.margin(**d, model="standard")
    units = r.units.to_pandas()
    per_acc = (units["scenario_margin_usd"]).groupby(units["account"]).sum()
    acc = r.accounts.to_pandas().set_index("account")
    np.testing.assert_allclose(per_acc.reindex(acc.index), acc["scenario_margin"], rtol=1e-12)
    mm = units["maintenance_margin_usd"].groupby(units["account"]).sum()
    np.testing.assert_allclose(mm.reindex(acc.index) + acc["loan_maintenance_margin"],
                               acc["maintenance_margin"], rtol=1e-12)


def test_one_underlying_account_is_charged_its_own_grid():
    """With one underlying the joint set is the unit's own grid (+-1 directions): the joint
    worst equals the unit's standalone worst case."""
    d = samples.book(n_accounts=3, positions_per_account=15, underlyings=("BTC",), seed=5)
    r = pmrisk.margin(**d, model="standard")
    np.testing.assert_allclose(col(r.accounts, "scenario_margin"),
                               col(r.units, "worst_case_usd"), rtol=1e-12)


def test_per_unit_tail_mode():
    """tail_mode per_unit: max(joint worst of the shells, each unit's own extremes)."""
    d = samples.book(n_accounts=3, positions_per_account=12, underlyings=("BTC", "ETH"),
                     option_share=0.5, seed=11)
    per_unit = SMALL.with_overrides({"extreme_scenarios": True, "tail_mode": "per_unit"})
    shells = SMALL.with_overrides({"extreme_scenarios": False})
    r = pmrisk.margin(**d, model=per_unit, risk_vectors=True)
    s = col(pmrisk.margin(**d, model=shells).accounts, "scenario_margin")
    rv = r.unit_risk_vectors.to_pandas()
    px = r.units.to_pandas()[["account", "unit", "settlement_price_usd"]]
    ext = rv[rv["table"] == "extreme"].merge(px, on=["account", "unit"])
    ext["loss_usd"] = -ext["weighted_pnl"] * ext["settlement_price_usd"]
    tail = ext.groupby("account")["loss_usd"].max().clip(lower=0)
    accounts = r.accounts["account"].to_pylist()
    want = np.maximum(s, tail.reindex(accounts).fillna(0.0).to_numpy())
    np.testing.assert_allclose(col(r.accounts, "scenario_margin"), want, rtol=1e-12)
    # and the oracle agrees on the shells-only joint part
    assert_oracle_agrees(d, shells)


def test_binding_scenario_is_described_and_contributions_add_up():
    d = samples.demo_book()
    r = pmrisk.margin(**d, model="standard")
    acc = r.accounts.to_pandas()
    assert all(w.startswith("joint") or w == "none" for w in acc["worst_scenario"])
    pair = acc.set_index("account").loc["linear-pair", "worst_scenario"]
    assert "BTC" in pair and "ETH" in pair
    pos = r.positions.to_pandas()
    for name, acc_col in (("mm_contribution_usd", "maintenance_margin"),
                          ("im_contribution_usd", "initial_margin")):
        s = pos.groupby("account")[name].sum().reindex(acc["account"])
        np.testing.assert_allclose(s.to_numpy(), acc[acc_col].to_numpy(), rtol=1e-9)


def test_time_snapshots_in_correlated_mode():
    """A time column: each snapshot equals a call on that snapshot alone."""
    d = samples.demo_book()
    ts = pa.timestamp("ns", tz="UTC")
    t0 = int(np.datetime64(str(d["valuation_time"]).replace("Z", ""), "ns").astype(np.int64))
    t1 = t0 + 3_600 * 10**9

    def at(table, t):
        return table.append_column("time", pa.array([t] * table.num_rows, pa.int64()).cast(ts))

    market2 = d["market"].set_column(
        d["market"].column_names.index("mark_price"), "mark_price",
        pa.compute.multiply(d["market"]["mark_price"], 1.01))
    tables = {
        "positions": pa.concat_tables([at(d["positions"], t0), at(d["positions"], t1)]),
        "market": pa.concat_tables([at(d["market"], t0), at(market2, t1)]),
        "instruments": d["instruments"], "index": d["index"], "balances": d["balances"],
        "open_orders": d["open_orders"]}
    r = pmrisk.margin(**tables, model="standard")
    one = pmrisk.margin(**dict(d, market=market2, valuation_time=np.datetime64(t1, "ns")),
                        model="standard")
    late = r.accounts.filter(pa.compute.equal(r.accounts["time"], pa.scalar(t1, ts)))
    np.testing.assert_allclose(col(late, "maintenance_margin"),
                               col(one.accounts, "maintenance_margin"), rtol=1e-12)


# -- directions -------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [2, 3, 5, 10])
def test_quasi_random_directions_are_unit_and_spread(d):
    w = quasi_random_directions(d, 512)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(w, quasi_random_directions(d, 512))          # deterministic
    # spread: the mean is near 0 and no two directions coincide
    assert np.linalg.norm(w.mean(axis=0)) < 0.1
    g = w @ w.T - 2 * np.eye(len(w))
    assert g.max() < 1 - 1e-6


def test_quasi_random_two_dimensional_is_even():
    w = quasi_random_directions(2, 8)
    ang = np.sort(np.mod(np.arctan2(w[:, 1], w[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(ang), 2 * np.pi / 8, rtol=1e-12)


@given(st.lists(st.floats(-0.9, 0.99), min_size=3, max_size=3))
def test_joint_moves_lie_on_the_ellipsoid(offdiag):
    a, b, c = offdiag
    rho = np.array([[1, a, b], [a, 1, c], [b, c, 1.0]])
    if min_eigenvalue(rho)[0] < 1e-6:
        rho = nearest_correlation(rho)
        rho = 0.999 * rho + 0.001 * np.eye(3)
    z, kind = joint_moves(rho, 64)
    assert (np.abs(z) <= 1 + 1e-12).all()
    q = np.einsum("ij,jk,ik->i", z, np.linalg.inv(rho), z)
    np.testing.assert_allclose(q, 1.0, rtol=1e-8)
    # every underlying's full range is reached (by the conditional axes; with rho = I they
    # coincide with the axes and were dropped as duplicates)
    np.testing.assert_allclose(np.abs(z).max(axis=0), 1.0, rtol=1e-12)
    cond = z[kind == KIND_CONDITIONAL]
    assert len(cond) == 0 or np.isclose(np.abs(cond).max(), 1.0)
    assert len(np.unique(np.round(z, 12), axis=0)) == len(z)


def test_joint_moves_one_underlying_and_perfect_correlation():
    z, _ = joint_moves(np.ones((1, 1)), 512)
    assert z.tolist() == [[1.0], [-1.0]]
    z, _ = joint_moves(np.ones((2, 2)), 64)
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=1e-12)       # both move together
    assert np.isclose(np.abs(z).max(), 1.0)


def test_joint_scenarios_shells_and_tails():
    m = pmrisk.Model.preset("standard").with_overrides({"n_directions": 16})
    params = [m.underlying(u) for u in ("BTC", "ETH")]
    rho = np.array([[1.0, 0.85], [0.85, 1.0]])
    js = joint_scenarios((0, 1), rho, params, m)
    z, _ = joint_moves(rho, 16)
    assert js.size == 1 + 5 * len(z) + len(z)          # shell 0, 5 shells, one tail shell
    assert js.shock[0].tolist() == [0.0, 0.0]
    shell5 = js.shock[js.shell == 5]
    np.testing.assert_allclose(shell5, z * [0.15, 0.18], rtol=1e-15)
    tails = js.shell == -1
    np.testing.assert_allclose(js.shock[tails], z * [0.30, 0.36], rtol=1e-15)
    assert (js.loss_weight[tails] == 0.35).all() and (js.n_vol[tails] == 1).all()
    assert (js.n_vol[~tails] == 3).all()


# -- correlation matrix -----------------------------------------------------------------------

def test_matrix_from_default_and_overrides_in_either_order():
    m = pmrisk.Model.preset("standard").with_overrides(
        {"correlations": {"SOL,ETH": 0.9}})
    c = correlation_matrix(["BTC", "ETH", "SOL", "XRP"], m).matrix
    assert c[0, 1] == c[1, 0] == 0.85
    assert c[1, 2] == c[2, 1] == 0.9
    assert c[0, 3] == c[2, 3] == 0.6
    assert np.array_equal(np.diag(c), np.ones(4))


def test_not_psd_names_the_pair_and_repair_reports():
    bad = {"default": 0.0, "BTC,ETH": 0.9, "ETH,SOL": 0.9, "BTC,SOL": -0.9}
    with pytest.raises(pmrisk.MarginError) as exc:
        pmrisk.Model.preset("standard").with_overrides({"correlations": bad})
    assert exc.value.column.startswith("correlations.")
    assert "positive semidefinite" in str(exc.value) and "repair" in str(exc.value)
    m = pmrisk.Model.preset("standard").with_overrides(
        {"correlations": dict(bad, repair="nearest")})
    with pytest.warns(CorrelationRepaired, match="nearest correlation matrix"):
        c = correlation_matrix(["BTC", "ETH", "SOL"], m)
    assert min_eigenvalue(c.matrix)[0] >= -1e-10
    assert {p for p, _, _ in c.changes} == {"BTC,ETH", "BTC,SOL", "ETH,SOL"}
    # and margin() reports it on the result
    tables = samples.book(n_accounts=1, positions_per_account=6,
                          underlyings=("BTC", "ETH", "SOL"), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorrelationRepaired)
        r = pmrisk.margin(**tables, model=m)
    assert [m.underlyings for m in r.correlation] == [["BTC", "ETH", "SOL"]]
    assert r.correlation[0].changes == c.changes


def test_book_underlyings_that_break_psd_through_the_default():
    """The default fills every other pair: -0.6 is valid for two underlyings but not for
    three, which only the book reveals."""
    m = pmrisk.Model.preset("standard").with_overrides(
        {"correlations": {"default": -0.6, "BTC,ETH": -0.6}})
    tables = samples.book(n_accounts=1, positions_per_account=6,
                          underlyings=("BTC", "ETH", "SOL"), seed=1)
    with pytest.raises(pmrisk.MarginError) as exc:
        pmrisk.margin(**tables, model=m)
    assert exc.value.table == "model" and "BTC" in str(exc.value)


def test_higham_published_example():
    """Higham (2002), section 4: the nearest correlation matrix to [[1,1,0],[1,1,1],[0,1,1]]."""
    x = nearest_correlation(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1.0]]))
    want = np.array([[1, 0.7607, 0.1573], [0.7607, 1, 0.7607], [0.1573, 0.7607, 1]])
    np.testing.assert_allclose(x, want, atol=1e-4)


@settings(max_examples=30)
@given(st.lists(st.floats(-1, 1), min_size=6, max_size=6), st.integers(0, 2**31))
def test_higham_is_nearest(offdiag, seed):
    a = np.eye(4)
    a[np.triu_indices(4, 1)] = offdiag
    a = a + np.triu(a, 1).T
    x = nearest_correlation(a)
    assert min_eigenvalue(x)[0] >= -1e-10
    np.testing.assert_allclose(np.diag(x), 1.0)
    # no random valid correlation matrix is closer
    rng = np.random.default_rng(seed)
    for _ in range(20):
        g = rng.normal(size=(4, 6))
        y = g @ g.T
        dinv = 1 / np.sqrt(np.diag(y))
        y = y * dinv[:, None] * dinv[None, :]
        assert np.linalg.norm(x - a) <= np.linalg.norm(y - a) + 1e-9
    if min_eigenvalue(a)[0] >= 0:
        np.testing.assert_allclose(x, a, atol=1e-9)


def test_psd_sqrt():
    rho = np.array([[1, 0.85, 0.6], [0.85, 1, 0.6], [0.6, 0.6, 1.0]])
    s = psd_sqrt(rho)
    np.testing.assert_allclose(s @ s, rho, atol=1e-14)


# -- grid interpolation + exact refinement == exact revaluation of every joint scenario -----

EXACT = SMALL.with_overrides({"joint_revaluation": "exact"})


def same_result(a, b):
    for name in ("scenario_margin", "maintenance_margin", "initial_margin"):
        np.testing.assert_allclose(col(a.accounts, name), col(b.accounts, name), rtol=1e-12,
                                   atol=1e-12, err_msg=name)
    assert a.accounts["worst_scenario"].equals(b.accounts["worst_scenario"])
    np.testing.assert_allclose(col(a.positions, "mm_contribution_usd"),
                               col(b.positions, "mm_contribution_usd"), rtol=1e-9, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n_und=st.integers(1, 3),
       horizon=st.sampled_from([0.0, 1.0, 3.0]), nodes=st.sampled_from([2, 5, 32]),
       tail=st.sampled_from(["joint", "per_unit"]))
def test_grid_mode_equals_exact_mode(seed, n_und, horizon, nodes, tail):
    """Options expiring inside the horizon (T_scen = 0: intrinsic, a kink) and a coarse grid
    only widen the band of candidates; the result is exact revaluation's."""
    und = ("BTC", "ETH", "SOL")[:n_und]
    tables = samples.book(n_accounts=3, positions_per_account=10, underlyings=und,
                          option_share=0.7, inverse_share=0.5, seed=seed)
    h = {"horizon_days": horizon}
    over = {"default_underlying": h, "BTC": h, "ETH": h, "tail_mode": tail}
    grid = SMALL.with_overrides(dict(over, joint_grid_nodes=nodes))
    same_result(pmrisk.margin(**tables, model=grid),
                pmrisk.margin(**tables, model=EXACT.with_overrides(over)))


def test_grid_mode_parallel_serial_and_candidate_overflow(monkeypatch):
    """Accounts on different sets of underlyings in one call; the kernel's parallel form and
    its serial twin, and every scenario revalued (candidate overflow), all give exact
    revaluation's figures."""
    import pmrisk.engine.correlated as C
    tables = samples.book(n_accounts=7, positions_per_account=9,
                          underlyings=("BTC", "ETH", "SOL"), option_share=0.6, seed=4)
    # accounts on different underlying sets in one call
    pos = tables["positions"]
    keep = np.array([not (a == "acct-000002" and s.startswith("ETH"))
                     for a, s in zip(pos["account"].to_pylist(), pos["symbol"].to_pylist())])
    tables["positions"] = pos.filter(pa.array(keep))
    want = pmrisk.margin(**tables, model=EXACT)
    for twin in (1, 10**9):            # parallel kernel, serial twin
        monkeypatch.setattr(C, "PARALLEL_MIN", twin)
        same_result(pmrisk.margin(**tables, model=SMALL), want)
    monkeypatch.setattr(C, "MAX_CANDIDATES", 1)
    same_result(pmrisk.margin(**tables, model=SMALL), want)
    assert_oracle_agrees(tables, SMALL)


# -- review findings ----------------------------------------------------------------------------

def linear_book(sizes, und, settlement="linear"):
    """One account of linear perpetuals ``sizes[u]`` (base units) on each underlying."""
    px = {u: 10.0 * (k + 1) for k, u in enumerate(und)}
    return dict(
        positions=pa.table({"account": ["a"] * len(und), "symbol": [f"{u}-P" for u in und],
                            "quantity": [float(sizes[i]) for i in range(len(und))]}),
        instruments=pa.table({"symbol": [f"{u}-P" for u in und], "underlying": list(und),
                              "kind": ["perpetual"] * len(und),
                              "settlement": [settlement] * len(und),
                              "contract_size": [1.0] * len(und)}),
        market=pa.table({"symbol": [f"{u}-P" for u in und],
                         "mark_price": [px[u] for u in und]}),
        index=pa.table({"underlying": list(und), "index_price": [px[u] for u in und]}),
        valuation_time="2026-01-01T00:00:00Z"), px


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 10), seed=st.integers(0, 1000), identity=st.booleans())
def test_linear_books_get_the_exact_ellipsoid_worst_in_any_dimension(n, seed, identity):
    """The account's own delta direction makes a linear book exact: sqrt(g' rho g), g the
    range-scaled USD deltas, whatever the dimension (512 quasi-random directions alone fall
    ~25 % short in 10 dimensions)."""
    und = [f"U{k}" for k in range(n)]
    rng = np.random.default_rng(seed)
    sizes = rng.choice([-1, 1], n) * rng.uniform(100, 1000, n)
    tables, px = linear_book(sizes, und)
    corr = {"default": 0.0} if identity else {"default": 0.3}
    model = pmrisk.Model.preset("standard").with_overrides(
        {"correlations": corr, "extreme_scenarios": False})
    r = pmrisk.margin(**tables, model=model)
    rho = correlation_matrix(und, model).matrix
    g = np.array([sizes[k] * px[u] * 0.25 for k, u in enumerate(und)])
    want = np.sqrt(g @ rho @ g)
    np.testing.assert_allclose(col(r.accounts, "scenario_margin"), want, rtol=1e-12)
    assert "delta direction" in r.accounts["worst_scenario"][0].as_py()


def test_units_without_risk_do_not_change_the_directions():
    """A long straddle on BTC alone, then with an ETH open order, a zero ETH position or an ETH
    reserve: the account's set of underlyings (and so its MM) is that of its risk."""
    d = samples.demo_book()
    ins, mkt = d["instruments"], d["market"]
    calls = [s for s in ins["symbol"].to_pylist() if s.startswith("BTC-28JUN24")]
    pos = pa.table({"account": ["a", "a"], "symbol": calls[:2], "quantity": [10.0, 10.0]})
    base = dict(instruments=ins, market=mkt, index=d["index"],
                valuation_time=d["valuation_time"])
    want = pmrisk.margin(positions=pos, **base)
    eth = [s for s in ins["symbol"].to_pylist() if s.startswith("ETH")][0]
    zero = pa.concat_tables([pos, pa.table({"account": ["a"], "symbol": [eth],
                                            "quantity": [0.0]})])
    order = pa.table({"account": ["a"], "order_id": ["o"], "symbol": [eth], "quantity": [1.0],
                      "price": [1.0]})
    for r in (pmrisk.margin(positions=zero, **base),
              pmrisk.margin(positions=pos, open_orders=order, **base)):
        assert col(r.accounts, "maintenance_margin")[0] == col(want.accounts,
                                                                "maintenance_margin")[0]
        assert r.accounts["worst_scenario"].equals(want.accounts["worst_scenario"])


def test_an_account_does_not_depend_on_the_others_underlyings():
    """The correlation matrix is each account's own: another account's SOL neither repairs nor
    invalidates this account's BTC-ETH pair."""
    tables, _ = linear_book([1.0, -10.0], ["BTC", "ETH"])
    model = pmrisk.Model.preset("standard").with_overrides(
        {"correlations": {"BTC,ETH": -0.9, "default": 0.9}})
    alone = pmrisk.margin(**tables, model=model)
    other, _ = linear_book([3.0], ["SOL"])
    both = {k: (pa.concat_tables([tables[k], other[k].rename_columns(tables[k].column_names)])
                if k != "valuation_time" else tables[k]) for k in tables}
    both["positions"] = pa.concat_tables([tables["positions"], pa.table(
        {"account": ["b"], "symbol": ["SOL-P"], "quantity": [3.0]})])
    r = pmrisk.margin(**both, model=model)
    assert col(r.accounts, "maintenance_margin")[0] == col(alone.accounts,
                                                            "maintenance_margin")[0]
    assert sorted(m.underlyings for m in r.correlation) == [["BTC", "ETH"], ["SOL"]]


def test_units_of_one_underlying_report_their_own_vol_states():
    """A long linear put and a short inverse call on BTC: in the binding joint scenario the two
    units may take different vol states; the description and the units table say which."""
    d = samples.book(n_accounts=1, positions_per_account=2, underlyings=("BTC", "ETH"),
                     option_share=1.0, inverse_share=0.5, seed=2)
    r = pmrisk.margin(**d, model="standard")
    u = r.units.to_pandas()
    took = u.dropna(subset=["scenario_price_shock"])
    assert len(took) == len(u) or col(r.accounts, "scenario_margin")[0] == 0
    for _, row in took.iterrows():
        assert row["scenario_vol_state"] in ("up", "same", "down")
        assert f"{row['underlying']} {row['scenario_price_shock']:+.2%}" in \
            r.accounts["worst_scenario"][0].as_py()


# -- the fused kernel against its numpy twin (tests/oracles.py: joint_stress_twin) ----------

@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_und=st.integers(1, 3),
       horizon=st.sampled_from([0.0, 1.0]), nodes=st.sampled_from([4, 32]),
       exact=st.booleans(), tails=st.booleans())
def test_fused_kernel_matches_numpy_twin(seed, n_und, horizon, nodes, exact, tails):
    """Worst, binding scenario (joint or delta direction, and which), and each unit's
    weighted value and vol state there: the kernel (which skips whole directions by a lower
    bound) equals the twin that scans every scenario."""
    from pmrisk.engine.core import run
    und = ("BTC", "ETH", "SOL")[:n_und]
    tables = samples.book(n_accounts=4, positions_per_account=8, underlyings=und,
                          option_share=0.7, inverse_share=0.5, seed=seed)
    h = {"horizon_days": horizon}
    model = SMALL.with_overrides({"default_underlying": h, "BTC": h, "ETH": h,
                                  "joint_grid_nodes": nodes, "extreme_scenarios": tails,
                                  "joint_revaluation": "exact" if exact else "grid"})
    out = run(book_of(tables, model), model)
    jst = out.joint
    worst, kind, index, value, vol = oracles.joint_stress_twin(
        jst, out.rev.args, out.units.settle_px, out.unit.slope_usd)
    np.testing.assert_allclose(jst.worst, worst, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(jst.bind_kind, kind)
    got = np.where(jst.bind_kind == 0, jst.bind_index - jst.g_j0[np.maximum(jst.acc_group, 0)],
                   jst.bind_index)
    np.testing.assert_array_equal(np.where(kind >= 0, got, -1), index)
    on = jst.active & (jst.worst[out.units.account] > 0)
    np.testing.assert_allclose(jst.unit_value[on], value[on], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(jst.unit_vol[on], vol[on])


def _small_multi_run(seed, n_und, nodes, tails, options):
    """The engine's outcome on 6 sample accounts x 8 positions over the first ``n_und`` of
    BTC, ETH, SOL under ``SMALL`` with ``nodes`` grid nodes and tails on or off."""
    from pmrisk.engine.core import run
    und = ("BTC", "ETH", "SOL")[:n_und]
    tables = samples.book(n_accounts=6, positions_per_account=8, underlyings=und,
                          option_share=options, inverse_share=0.5, seed=seed)
    model = SMALL.with_overrides({"joint_grid_nodes": nodes, "extreme_scenarios": tails})
    return run(book_of(tables, model), model)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_und=st.integers(2, 3), nodes=st.sampled_from([4, 32]),
       tails=st.booleans(), options=st.sampled_from([0.3, 1.0]))
def test_fused_kernel_candidates_are_those_of_a_full_scan(seed, n_und, nodes, tails, options):
    """The kernel interpolates only the scenarios its lower bounds cannot rule out; the
    scenarios it then revalues exactly are exactly those of the twin, which interpolates every
    scenario: a bound that wrongly skipped a scenario within the band would change the count
    (even where the binding scenario stays the same)."""
    out = _small_multi_run(seed, n_und, nodes, tails, options)
    jst = out.joint
    *_, n_exact = oracles.joint_stress_twin(jst, out.rev.args, out.units.settle_px,
                                            out.unit.slope_usd, counts=True)
    np.testing.assert_array_equal(jst.n_exact, n_exact)
    assert (jst.n_exact[jst.acc_group >= 0] >= 1).all()


def _kernel_outputs(jst, unit_px, slope_usd, clusters, n_table=0):
    """The fused kernel's 11 outputs for every account of ``jst`` with the directions'
    ``clusters`` (:func:`pmrisk.kernel.joint.direction_clusters`) and the scan's tables of a
    run on ``n_table`` accounts (none below ``TABLE_MIN``), in fresh arrays."""
    from pmrisk.kernel.joint import joint_stress_rows, scan_tables
    n_acc = len(jst.worst)
    sel = np.arange(n_acc, dtype=np.int64)
    acc = (jst.ua_start, jst.pu_start, jst.pu_order, jst.q, jst.pos_row, jst.unit_row,
           np.ascontiguousarray(unit_px, dtype=np.float64),
           np.ascontiguousarray(slope_usd, dtype=np.float64), jst.acc_group)
    outs = tuple(np.full_like(x, 7) for x in (
        jst.worst, jst.n_joint, jst.n_exact, jst.bind_kind, jst.bind_index, jst.bind_shock,
        jst.unit_value, jst.unit_vol, jst.unit_shock, jst.unit_lw, jst.pos_loss))
    joint_stress_rows(sel, 0, n_acc, acc, jst.grp, tuple(jst.ins), jst.grid_args, outs,
                      clusters, scan_tables(n_table, jst.grp, jst.grid_args, clusters))
    return outs


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_und=st.integers(2, 3), nodes=st.sampled_from([4, 32]),
       tails=st.booleans(), options=st.sampled_from([0.3, 1.0]))
def test_fused_kernel_direction_clusters_change_nothing(seed, n_und, nodes, tails, options):
    """The scan bounds clusters of near directions before each direction: whatever the
    clusters' size (one direction each, as small selections run, up to a whole group), the 11
    outputs are the same bits, and the scenarios revalued exactly are those of the twin's
    full scan.  Each group's clusters are a partition of its directions, and a cluster's
    ranges hold each of its directions' intervals.  With the scan's tables (windows and
    weights of the joint scenarios, shell intervals by direction; large runs build them)
    the outputs are the same bits too."""
    from pmrisk.kernel.joint import CLUSTER, TABLE_MIN, direction_clusters
    out = _small_multi_run(seed, n_und, nodes, tails, options)
    jst = out.joint
    px, slope = out.units.settle_px, out.unit.slope_usd
    g_d, g_m, g_dir0, dir_iv, dir_ivt = (jst.grp[k] for k in (0, 17, 18, 19, 20))
    base = None
    for size in (1, 3, CLUSTER, int(g_m.max()) + 1):
        clusters = direction_clusters(g_d, g_m, g_dir0, dir_iv, dir_ivt, size)
        order, g_c0, c_start, c_lo, c_hi, t_lo, t_hi = clusters
        for g in range(len(g_d)):
            ks = range(g_c0[g], g_c0[g + 1])
            mine = np.concatenate([order[c_start[k]:c_start[k + 1]] for k in ks])
            assert sorted(mine.tolist()) == list(range(g_dir0[g], g_dir0[g] + g_m[g]))
            for k in ks:
                rows = order[c_start[k]:c_start[k + 1]]
                assert 1 <= len(rows) <= size
                for lo, hi, iv in ((c_lo, c_hi, dir_iv), (t_lo, t_hi, dir_ivt)):
                    assert (lo[k] <= iv[rows]).all() and (iv[rows] <= hi[k]).all()
        for n_table in (0, TABLE_MIN):
            got = _kernel_outputs(jst, px, slope, clusters, n_table)
            if base is None:
                base = got
                continue
            for a, b in zip(base, got):
                assert a.tobytes() == b.tobytes()
    *_, n_exact = oracles.joint_stress_twin(jst, out.rev.args, px, slope, counts=True)
    np.testing.assert_array_equal(base[2], n_exact)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_und=st.integers(2, 3),
       sd=st.sampled_from([0.0, 1e-13, 1e-12, np.inf, np.nan]), vol=st.integers(0, 2))
def test_exact_refinement_in_passes_is_cell_by_cell(seed, n_und, sd, vol):
    """The fused kernel's exact refinement prices options in passes (erfc arguments, erfc,
    values) and any other cell through ``cell``: with every scenario revalued exactly
    (``joint_revaluation = "exact"``), some option rows' sigma*sqrt(T) in one vol state set
    to an edge (0, below and at ``MIN_STDDEV``, inf, NaN), each account's worst and binding
    scenario are those of :func:`pmrisk.kernel.joint.exact_total` (cell by cell) over its
    scenarios, to the bit."""
    from pmrisk.engine.core import run
    from pmrisk.kernel.joint import (BIND_JOINT, active_units, binding_candidate,
                                     delta_direction, exact_total)
    und = ("BTC", "ETH", "SOL")[:n_und]
    tables = samples.book(n_accounts=4, positions_per_account=8, underlyings=und,
                          option_share=0.7, inverse_share=0.5, seed=seed)
    model = SMALL.with_overrides({"joint_revaluation": "exact"})
    out = run(book_of(tables, model), model)
    jst = out.joint
    ins = list(jst.ins)
    const = ins[6].copy()
    const[::2, 3 + vol] = sd                    # every other revaluation row
    ins[6] = const
    ins = tuple(ins)
    px = np.ascontiguousarray(out.units.settle_px, dtype=np.float64)
    slope = np.ascontiguousarray(out.unit.slope_usd, dtype=np.float64)
    n_acc = len(jst.worst)
    outs = tuple(np.full_like(x, 7) for x in (
        jst.worst, jst.n_joint, jst.n_exact, jst.bind_kind, jst.bind_index, jst.bind_shock,
        jst.unit_value, jst.unit_vol, jst.unit_shock, jst.unit_lw, jst.pos_loss))
    from pmrisk.kernel.joint import joint_stress_serial
    joint_stress_serial(np.arange(n_acc, dtype=np.int64),
                        (jst.ua_start, jst.pu_start, jst.pu_order, jst.q, jst.pos_row,
                         jst.unit_row, px, slope, jst.acc_group),
                        jst.grp, ins, jst.grid_args, outs)
    (g_d, g_rows, g_col, g_j0, g_buckets, g_rho, js_shock, js_lw, js_gw, js_nvol, pr, gw_row,
     cap_usd, mult, cover) = jst.grp[:15]
    d_max = g_rows.shape[1]
    units = np.empty(len(jst.unit_row), dtype=np.int64)
    ucol = np.empty(len(jst.unit_row), dtype=np.int64)
    checked = 0
    for a in range(n_acc):
        g = int(jst.acc_group[a])
        if g < 0:
            continue
        nu = active_units(a, g, jst.ua_start, jst.pu_start, jst.pu_order, jst.q,
                          jst.unit_row, g_col, units, ucol, outs, False)
        if nu == 0:
            continue
        zpos = np.empty(d_max)
        delta_direction(g, nu, units, ucol, slope, g_d, g_rows, g_rho, pr, np.empty(d_max),
                        zpos)
        n_js = int(g_j0[g + 1] - g_j0[g])
        n_all = int(outs[1][a])
        assert outs[2][a] == n_all
        tot = np.array([exact_total(j, n_js, g_j0[g], g_buckets[g], nu, units, ucol,
                                    jst.unit_row, px, pr, gw_row, cap_usd, mult, cover, zpos,
                                    js_shock, js_lw, js_gw, js_nvol, jst.pu_start,
                                    jst.pu_order, jst.q, jst.pos_row, *ins, outs, False)
                        for j in range(n_all)])
        b = binding_candidate(tot, n_all)
        want = -tot[b] if (tot[b] < 0.0 or tot[b] != tot[b]) else 0.0
        assert np.array_equal(outs[0][a], want, equal_nan=True)
        k = outs[4][a] - (g_j0[g] if outs[3][a] == BIND_JOINT else -n_js)
        assert k == b
        checked += 1
    assert checked > 0


# -- curves priced by blocks of accounts (s19-joint) --------------------------------------------

def _six_accounts(seed):
    """Six accounts, each on its own 7 of 42 instruments on BTC, ETH and SOL."""
    d = samples.book(n_accounts=1, positions_per_account=42, underlyings=("BTC", "ETH", "SOL"),
                     option_share=0.5, seed=seed)
    pos = d["positions"]
    d["positions"] = pos.set_column(pos.column_names.index("account"), "account", pa.array(
        [f"acct-{k % 6}" for k in range(pos.num_rows)]))
    return d


def _history(n_times=3):
    """A three-underlying book at ``n_times`` snapshot times, the marks moving by 1 %."""
    d = _six_accounts(seed=9)
    ts = pa.timestamp("ns", tz="UTC")
    t0 = int(np.datetime64(str(d["valuation_time"]).replace("Z", ""), "ns").astype(np.int64))

    def at(table, k):
        return table.append_column(
            "time", pa.array([t0 + k * 60 * 10**9] * table.num_rows, pa.int64()).cast(ts))

    marks = d["market"].column_names.index("mark_price")
    markets = [d["market"].set_column(marks, "mark_price", pa.compute.multiply(
        d["market"]["mark_price"], 1.0 + 0.01 * k)) for k in range(n_times)]
    return {"positions": pa.concat_tables([at(d["positions"], k) for k in range(n_times)]),
            "market": pa.concat_tables([at(m, k) for k, m in enumerate(markets)]),
            "instruments": d["instruments"], "index": d["index"]}


def test_curves_priced_by_blocks_change_nothing(monkeypatch):
    """Above ``DEFER_BYTES`` of grid curves (a long history) run() prices them block by
    block of accounts into one buffer: every table is the one-pass run's, on blocks of one
    account and of several, with the kernel's parallel form and its serial twin."""
    import pmrisk.engine.correlated as C
    tables = _history()
    blocks = C.JointStress._blocks
    seen = []

    def spy(self, sel):
        out = blocks(self, sel)
        seen.append(0 if out is None else len(out))
        return out

    monkeypatch.setattr(C.JointStress, "_blocks", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pmrisk.MarginWarning)
        want = pmrisk.margin(**tables, model="standard")
        assert not seen
        monkeypatch.setattr(C, "DEFER_BYTES", 0)
        for block, twin in ((1, 10**9), (20, 1), (30, 10**9)):
            monkeypatch.setattr(C, "BLOCK_POSITIONS", block)
            monkeypatch.setattr(C, "PARALLEL_MIN", twin)
            got = pmrisk.margin(**tables, model="standard")
            assert seen[-1] > 1, (block, seen)
            for name in ("accounts", "units", "positions"):
                assert getattr(got, name).equals(getattr(want, name)), (block, twin, name)


def test_deferred_curves_are_priced_when_a_tick_needs_them(monkeypatch):
    """A Monitor whose first run deferred its curves prices them all at its first tick:
    the ticks' figures are those of a Monitor that priced them at once."""
    import pmrisk.engine.correlated as C
    d = _six_accounts(seed=11)
    btc = [s.startswith("BTC") for s in d["market"]["symbol"].to_pylist()]
    moved = d["market"].filter(pa.array(btc))
    moved = moved.set_column(moved.column_names.index("mark_price"), "mark_price",
                             pa.compute.multiply(moved["mark_price"], 1.02))
    mons = []
    seen = []
    run = C.JointStress.run

    def spy(self, *args, **kwargs):
        run(self, *args, **kwargs)
        seen.append(self._deferred is not None)

    monkeypatch.setattr(C.JointStress, "run", spy)
    monkeypatch.setattr(C, "BLOCK_POSITIONS", 1)       # a block per account
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pmrisk.MarginWarning)
        for defer in (C.DEFER_BYTES, 0):
            monkeypatch.setattr(C, "DEFER_BYTES", defer)
            mons.append(pmrisk.Monitor(**d, model="standard"))
        assert seen == [False, True]                    # the second ran on blocks
        monkeypatch.setattr(C, "DEFER_BYTES", 64 << 20)
        for mon in mons:
            mon.update(market=moved)
    assert mons[1].accounts.equals(mons[0].accounts)
    assert mons[1].positions.equals(mons[0].positions)


# -- the scan's one bound of the tails (joint._lowest) -------------------------------------------

@given(x=st.lists(st.one_of(st.floats(allow_nan=False, width=64), st.just(float("nan"))),
                  min_size=0, max_size=40), data=st.data())
def test_lowest_of_a_row_matches_twin(x, data):
    """``_lowest`` (four runs of comparisons) is the row's lowest, NaN if any is, ``-inf``
    on none: the numpy twin's, whatever the length and wherever the NaN."""
    from pmrisk.kernel import joint as J
    row = np.array(x + [0.0], dtype=np.float64)          # never empty: a slice of a row
    n = data.draw(st.integers(0, len(x)))
    got, want = J._lowest(row, n), oracles.lowest(row, n)
    assert (np.isnan(got) and np.isnan(want)) or got == want


@given(x=st.lists(st.one_of(st.floats(allow_nan=False, width=64), st.just(float("nan"))),
                  min_size=1, max_size=40), data=st.data())
def test_running_min_outward_matches_twin(x, data):
    """``_running_min`` (one carried value per side) is the numpy twin's bit for bit, and
    away from NaN the lowest value from the centre out to each cell."""
    from pmrisk.kernel import joint as J
    row = np.array(x, dtype=np.float64)
    c = data.draw(st.integers(0, len(x) // 2))
    out = np.full(len(x), 7.0)
    J._running_min(row, out, c, len(x))
    want = oracles.running_min(row, c, len(x))
    assert out.view(np.int64).tolist() == want.view(np.int64).tolist()
    if c and not np.isnan(row).any():
        assert out[0] == row[:c].min() and out[2 * c - 1] == row[c:2 * c].min()

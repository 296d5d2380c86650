"""Properties of the ``standard`` preset's correlated joint stress (SPEC §5, §10).

The acceptance criteria of the correlated-mode issue, each as a test that could fail:

1. rho = all ones: long BTC / short ETH of equal range-scaled deltas has no joint loss;
2. rho = I: a linear book is charged sqrt(L_BTC^2 + L_ETH^2) (shells, and tails when they bind);
3. the charge moves with rho(BTC, ETH) the right way for long/long and long/short books;
4. MM and IM are monotone in risk_multiplier and vol_floor;
5. MM is subadditive over splits of a book;
6. the engine invariants of tests/test_invariants.py hold in correlated mode.

Facts about the standard preset these tests lean on (bindings/presets.py): no add-ons (roll
shock, delta shock and short option minimum are 0), horizon 0 days, ``pnl_offset`` 1 and
``max_offsetable_pnl`` inf (gains offset in full, no cap), extremes at 2 x range covered 35 %.
So for a linear book MM = scenario margin and every figure is homogeneous in size.

Linear instruments move by (1 + s) from their *mark* (SPEC §3), so a linear position's P&L is
``q*c*mark*s``; the demo's linear perpetuals are marked slightly off the index.  Tests that
need an exact zero use twins marked at the index (``*-IDX``) where "delta * index * range" and
"delta * mark * range" coincide, and one test pins the residual the index-based sizing leaves
on the demo perpetuals.
"""

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pmrisk
from books import (INDEX, MARKET, TIME, UNIVERSE, assert_no_nan, books, scaled,
                   with_negated_instruments)

STANDARD = pmrisk.Model.preset("standard")
IDX = dict(zip(INDEX["underlying"].to_pylist(), INDEX["index_price"].to_pylist()))
RHO_ONE = STANDARD.with_overrides({"correlations": {"default": 1.0, "BTC,ETH": 1.0}})
RHO_I = STANDARD.with_overrides({"correlations": {"default": 0.0, "BTC,ETH": 0.0}})
NO_EXTREMES = {"extreme_scenarios": False}
TOL = 0.005          # the issue's tolerance for the finite direction set (0.5 %)


def examples(n):
    """n examples under the quick profiles (60 a test), proportionally more under "nightly":
    the tests that make several margin() calls per example run fewer of them."""
    return settings(max_examples=max(n, n * settings.default.max_examples // 60))


def rho_model(rho, base=STANDARD, **over):
    return base.with_overrides(dict({"correlations": {"default": 0.6, "BTC,ETH": rho}},
                                    **over))


# -- a linear universe: the demo's USDC perpetuals (standard settles them as BTC/USDT and
#    ETH/USDT), linear dated futures, and perpetuals marked exactly at the index -----------
def _linear_universe():
    ins = UNIVERSE.to_pylist()
    mkt = {r["symbol"]: r for r in MARKET.to_pylist()}
    rows, marks = [], []
    for und, cs in (("BTC", 0.001), ("ETH", 0.01)):
        rows.append(dict(symbol=f"{und}_USDT-IDX", underlying=und, kind="perpetual",
                         settlement="linear", contract_size=cs, expiry=None, strike=None,
                         option_type=None))
        marks.append(dict(symbol=f"{und}_USDT-IDX", mark_price=IDX[und], mark_iv=None,
                          underlying_price=None))
        for tag in ("28JUN24", "27SEP24"):
            inv = next(r for r in ins if r["symbol"] == f"{und}-{tag}")
            sym = f"{und}_USDT-{tag}"
            rows.append(dict(inv, symbol=sym, settlement="linear", contract_size=cs))
            marks.append(dict(mkt[f"{und}-{tag}"], symbol=sym))
    return (pa.concat_tables([UNIVERSE, pa.Table.from_pylist(rows, schema=UNIVERSE.schema)]),
            pa.concat_tables([MARKET, pa.Table.from_pylist(marks, schema=MARKET.schema)]))


LIN_UNIVERSE, LIN_MARKET = _linear_universe()
_SPEC = {r["symbol"]: r for r in LIN_UNIVERSE.to_pylist()}
MARK = dict(zip(LIN_MARKET["symbol"].to_pylist(), LIN_MARKET["mark_price"].to_pylist()))
LINEAR = {und: [s for s, r in _SPEC.items() if r["underlying"] == und
                and r["settlement"] == "linear" and r["kind"] != "option"]
          for und in ("BTC", "ETH")}


def run(pos, model=STANDARD, instruments=LIN_UNIVERSE, market=LIN_MARKET, **kw):
    return pmrisk.margin(pos, instruments, market, INDEX, model=model, valuation_time=TIME,
                         **kw)


def col(t, name):
    return np.asarray(t[name].to_numpy(zero_copy_only=False), dtype=np.float64)


def acc(r, name, account=None):
    """One account's figure (the only account unless named)."""
    a = r.accounts
    if account is None:
        assert a.num_rows == 1
        return float(col(a, name)[0])
    return float(col(a, name)[a["account"].to_pylist().index(account)])


def unit_figure(r, unit, name="worst_case_usd"):
    u = r.units
    return float(col(u, name)[u["unit"].to_pylist().index(unit)])


def positions(rows, account="a"):
    return pa.Table.from_pylist([{"account": account, "symbol": s, "quantity": float(q)}
                                 for s, q in rows],
                                schema=pa.schema([("account", pa.string()),
                                                  ("symbol", pa.string()),
                                                  ("quantity", pa.float64())]))


def range_delta_usd(symbol, qty, model=STANDARD):
    """USD P&L of a linear position per unit of z at shell 1: q*c*mark*price_range."""
    s = _SPEC[symbol]
    return qty * s["contract_size"] * MARK[symbol] * \
        model.underlying(s["underlying"])["price_range"]


sizes = st.floats(1.0, 2e5, allow_nan=False)


@st.composite
def linear_books(draw, signs=None):
    """One account, linear perpetuals/futures on BTC and on ETH (at least one each); random
    sizes, and random signs unless ``signs`` = (sign BTC, sign ETH) fixes every position's."""
    rows = []
    for i, und in enumerate(("BTC", "ETH")):
        syms = draw(st.lists(st.sampled_from(LINEAR[und]), min_size=1, max_size=3,
                             unique=True))
        for s in syms:
            sign = signs[i] if signs else draw(st.sampled_from((-1.0, 1.0)))
            rows.append((s, sign * draw(sizes)))
    return positions(rows)


def net_range_delta(pos, und, model=STANDARD):
    return sum(range_delta_usd(s, q, model) for s, q in
               zip(pos["symbol"].to_pylist(), pos["quantity"].to_pylist())
               if _SPEC[s]["underlying"] == und)


def test_standard_preset_premises():
    """What the exact figures below assume of the preset (a change here must be deliberate)."""
    assert STANDARD["cross_unit"] == "correlated" and STANDARD["tail_mode"] == "joint"
    assert STANDARD["extreme_scenarios"] and not STANDARD["extended_table"]
    assert STANDARD["n_directions"] == 512 and STANDARD["risk_multiplier"] == 1.0
    assert (STANDARD["mm_factor"], STANDARD["im_factor"]) == (1.0, 1.25)
    for u, pr in (("BTC", 0.15), ("ETH", 0.18)):
        p = STANDARD.underlying(u)
        assert (p["price_range"], p["buckets_count"]) == (pr, 5)
        assert (p["extreme_multiple"], p["cover_fraction"]) == (2.0, 0.35)
        assert (p["pnl_offset"], p["max_offsetable_pnl"]) == (1.0, math.inf)
        for addon in ("annualised_move_risk", "min_annualised_move", "max_delta_shock",
                      "short_option_minimum", "horizon_days"):
            assert p[addon] == 0.0, (u, addon)


# =============================================================================================
# 1. rho = all ones: equal range-scaled deltas, long BTC / short ETH, have no joint loss
# =============================================================================================

@given(q=sizes, pair=st.sampled_from([("BTC_USDT-IDX", "ETH_USDT-IDX"),
                                      ("BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL"),
                                      ("BTC_USDT-28JUN24", "ETH_USDT-27SEP24"),
                                      ("BTC_USDT-27SEP24", "ETH_USDT-IDX")]),
       extremes=st.booleans())
def test_rho_one_equal_range_deltas_have_no_joint_loss(q, pair, extremes):
    b, e = pair
    m = RHO_ONE.with_overrides({"extreme_scenarios": extremes})
    q_eth = -range_delta_usd(b, q) / range_delta_usd(e, 1.0)
    r = run(positions([(b, q), (e, q_eth)]), m)
    wb, we = unit_figure(r, "BTC/USDT"), unit_figure(r, "ETH/USDT")
    gross = wb + we
    # each unit alone: its full range move (shell 5/5 binds, the tail is 0.7 of it)
    assert wb == pytest.approx(range_delta_usd(b, q), rel=1e-12)
    assert we == pytest.approx(-range_delta_usd(e, q_eth), rel=1e-12)
    assert wb > 0 and we > 0
    # together: nothing (up to rounding), and no add-ons in standard, so no MM either
    assert 0.0 <= acc(r, "scenario_margin") <= 1e-9 * gross
    assert acc(r, "maintenance_margin") <= 1e-9 * gross
    assert acc(r, "initial_margin") <= 1e-9 * gross
    # the control: the same book under the preset's rho = 0.85 is charged
    assert acc(run(positions([(b, q), (e, q_eth)])), "scenario_margin") > 0.05 * gross


@given(q=sizes)
def test_rho_one_index_sizing_leaves_the_mark_basis(q):
    """Sized by delta*index*range on the demo perpetuals (marked 65 030 / 3 402 against an
    index of 65 000 / 3 400) the book is not quite flat: the charge is exactly the mismatch of
    the mark-based range deltas (the full shell binds; the tail is 0.7 of it)."""
    b, e = "BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL"
    cb, ce = _SPEC[b]["contract_size"], _SPEC[e]["contract_size"]
    pr = {u: STANDARD.underlying(u)["price_range"] for u in ("BTC", "ETH")}
    q_eth = -q * cb * IDX["BTC"] * pr["BTC"] / (ce * IDX["ETH"] * pr["ETH"])
    r = run(positions([(b, q), (e, q_eth)]), RHO_ONE)
    mismatch = abs(range_delta_usd(b, q) + range_delta_usd(e, q_eth))
    assert mismatch > 1e-5 * range_delta_usd(b, q)
    assert acc(r, "scenario_margin") == pytest.approx(mismatch, rel=1e-8)


def _inverse_pair(q_btc_face, sign):
    """Long (sign=+1) or short (-1) BTC inverse perpetual of face q_btc_face USD against the
    opposite ETH inverse perpetual of equal range-scaled delta index*(N/mark)*range.
    Returns (positions, K) with K that common range-scaled delta in USD."""
    b, e = "BTC-PERPETUAL", "ETH-PERPETUAL"
    pr = {u: STANDARD.underlying(u)["price_range"] for u in ("BTC", "ETH")}
    nb = q_btc_face
    k = IDX["BTC"] * nb / MARK[b] * pr["BTC"]
    ne = k * MARK[e] / (IDX["ETH"] * pr["ETH"])
    pos = positions([(b, sign * nb / _SPEC[b]["contract_size"]),
                     (e, -sign * ne / _SPEC[e]["contract_size"])])
    return pos, k


@given(face=st.floats(1e3, 1e8), sign=st.sampled_from((1.0, -1.0)))
def test_rho_one_inverse_perpetuals_leave_only_the_convexity(face, sign):
    """Inverse perpetuals: P&L in USD is index*(N/mark)*s/(1+s), not linear in s, so equal
    range-scaled deltas K leave a second-order term.  With z_BTC = z_ETH = t (rho = 1) and
    s_u = c*range_u*t the joint P&L is K*c*t*(1/(1+c*r_B*t) - 1/(1+c*r_E*t)) for long BTC /
    short ETH: >= 0 everywhere (r_B < r_E), so no charge at all; the reverse book loses
    K*c^2*(r_E - r_B)*t^2/((1+c*r_B*t)(1+c*r_E*t)), largest at t = -1, and its charge is the
    largest of that over the shells c = k/5 and the tail c = 2 weighted 0.35."""
    pos, k = _inverse_pair(face, sign)
    r = run(pos, RHO_ONE)
    wb, we = unit_figure(r, "BTC/BTC"), unit_figure(r, "ETH/ETH")
    assert wb > 0 and we > 0
    rb = STANDARD.underlying("BTC")["price_range"]
    re_ = STANDARD.underlying("ETH")["price_range"]
    cands = [(c, 1.0) for c in (0.2, 0.4, 0.6, 0.8, 1.0)] + [(2.0, 0.35)]
    expected = 0.0
    for c, w in cands:
        for t in (1.0, -1.0):
            pnl = sign * k * c * t * (1 / (1 + c * rb * t) - 1 / (1 + c * re_ * t))
            expected = max(expected, -w * pnl)
    sm = acc(r, "scenario_margin")
    if sign > 0:
        assert sm <= 1e-9 * (wb + we)
    else:
        assert expected == pytest.approx(0.35 * k * 4 * (re_ - rb) / ((1 - 2 * rb) *
                                                                   (1 - 2 * re_)))
        assert sm == pytest.approx(expected, rel=1e-9)
        assert sm < 0.1 * k < 0.15 * min(wb, we)    # second order: ~9.4 % of K


# =============================================================================================
# 2. rho = I: a linear book is charged sqrt(L_BTC^2 + L_ETH^2)
# =============================================================================================

def _l2(r):
    return math.hypot(unit_figure(r, "BTC/USDT"), unit_figure(r, "ETH/USDT"))


@given(pos=linear_books())
def test_rho_identity_shells_charge_the_euclidean_norm(pos):
    r = run(pos, RHO_I.with_overrides(NO_EXTREMES))
    lb, le = unit_figure(r, "BTC/USDT"), unit_figure(r, "ETH/USDT")
    # L_u is the unit's full-range move: |net range delta|
    assert lb == pytest.approx(abs(net_range_delta(pos, "BTC")), rel=1e-9, abs=1e-9)
    assert le == pytest.approx(abs(net_range_delta(pos, "ETH")), rel=1e-9, abs=1e-9)
    target = math.hypot(lb, le)
    sm = acc(r, "scenario_margin")
    # every joint move is on the unit circle, so the charge can never exceed the norm...
    assert sm <= target * (1 + 1e-12) + 1e-9
    # ... and the direction set gets within the issue's 0.5 % of it
    assert sm >= target * (1 - TOL)
    assert acc(r, "maintenance_margin") == pytest.approx(sm, rel=1e-12)


@given(pos=linear_books(), cover=st.tuples(st.floats(0.1, 1.0), st.floats(0.1, 1.0)))
def test_rho_identity_with_extremes_charges_the_larger_norm(pos, cover):
    """With extremes on, the joint tail is the same directions at c = 2 weighted by each
    unit's cover fraction: a linear unit's tail loss is T_u = 2*cover_u*S_u (S_u its shell
    worst), and the joint charge is max(|S|, |T|), each within 0.5 %.  At the preset's 35 %
    cover the tail (0.7 S) never binds for a linear book; larger covers make it bind."""
    m = RHO_I.with_overrides({"BTC": {"cover_fraction": cover[0]},
                              "ETH": {"cover_fraction": cover[1]}})
    r = run(pos, m)
    s = np.array([abs(net_range_delta(pos, u)) for u in ("BTC", "ETH")])
    t = 2.0 * np.array(cover) * s
    # per unit: the worse of shell and tail
    np.testing.assert_allclose([unit_figure(r, "BTC/USDT"), unit_figure(r, "ETH/USDT")],
                               np.maximum(s, t), rtol=1e-9, atol=1e-9)
    target = max(np.hypot(*s), np.hypot(*t))
    sm = acc(r, "scenario_margin")
    assert target * (1 - TOL) <= sm <= target * (1 + 1e-12) + 1e-9
    if np.hypot(*t) > 1.01 * np.hypot(*s):
        assert "joint extreme" in r.accounts["worst_scenario"][0].as_py()
    elif np.hypot(*s) > 1.01 * np.hypot(*t):
        assert "joint shell 5/5" in r.accounts["worst_scenario"][0].as_py()


@pytest.mark.parametrize("n", [16, 512, 2048])
@examples(15)
@given(pos=linear_books(), rho=st.sampled_from([0.0, 0.85]))
def test_gap_to_the_norm_closes_as_directions_grow_dense(n, rho, pos):
    """SPEC §5: 'exactly as the directions grow dense'.  The joint loss of a linear book along
    w is (S g).w, so the gap to |S g| = sqrt(g' rho g) is 1 - cos of the angle from S g to the
    nearest direction; the 2-d directions are n evenly spaced angles (plus axes), whose
    covering radius is pi/n.  Measured at n = 512: <= 1.88e-5, i.e. 1 - cos(pi/512)."""
    r = run(pos, rho_model(rho, **NO_EXTREMES, n_directions=n))
    g = np.array([net_range_delta(pos, u) for u in ("BTC", "ETH")])
    target = math.sqrt(g @ np.array([[1.0, rho], [rho, 1.0]]) @ g)
    sm = acc(r, "scenario_margin")
    assert sm <= target * (1 + 1e-12)
    assert sm >= target * (math.cos(math.pi / n) - 1e-12)


IDX_ONLY = {"BTC": ["BTC_USDT-IDX"], "ETH": ["ETH_USDT-IDX"]}


@examples(20)
@given(qb=sizes, qe=sizes, signs=st.tuples(st.sampled_from((-1.0, 1.0)),
                                           st.sampled_from((-1.0, 1.0))),
       rho=st.sampled_from([-0.5, 0.0, 0.6, 0.85, 1.0]))
def test_delta_directions_make_a_linear_book_exact(qb, qe, signs, rho):
    """The account's own delta directions +-rho g/sqrt(g' rho g) put the worst point of the
    ellipsoid in the scenario set, so with NO quasi-random directions at all a linear book is
    charged sqrt(g' rho g) exactly - here on perpetuals marked at the index."""
    pos = positions([(IDX_ONLY["BTC"][0], signs[0] * qb), (IDX_ONLY["ETH"][0], signs[1] * qe)])
    r = run(pos, rho_model(rho, **NO_EXTREMES, n_directions=0))
    g = np.array([net_range_delta(pos, u) for u in ("BTC", "ETH")])
    target = math.sqrt(g @ np.array([[1.0, rho], [rho, 1.0]]) @ g)
    assert acc(r, "scenario_margin") == pytest.approx(target, rel=1e-12, abs=1e-9)


def test_delta_directions_exact_for_linear_futures_off_the_index():
    """A linear future moves from its mark (SPEC §3): the delta direction uses the P&L slope
    q*c*mark*range, so the book is still charged sqrt(g'g) exactly."""
    pos = positions([("BTC_USDT-27SEP24", 1000.0), ("ETH_USDT-IDX", 4000.0)])  # F 66 600
    r = run(pos, rho_model(0.0, **NO_EXTREMES, n_directions=0))
    g = np.array([net_range_delta(pos, u) for u in ("BTC", "ETH")])
    assert acc(r, "scenario_margin") == pytest.approx(math.hypot(*g), rel=1e-9)


def test_rho_identity_preset_cover_never_lets_the_tail_bind():
    pos = positions([("BTC_USDT-IDX", 3000.0), ("ETH_USDT-IDX", -40000.0)])
    on, off = run(pos, RHO_I), run(pos, RHO_I.with_overrides(NO_EXTREMES))
    assert acc(on, "scenario_margin") == pytest.approx(acc(off, "scenario_margin"), rel=1e-12)
    assert acc(on, "scenario_margin") == pytest.approx(_l2(on), rel=TOL)


# =============================================================================================
# 3. the charge moves with rho(BTC, ETH) the right way
# =============================================================================================

RHO_GRID = [-1.0, -0.5, 0.0, 0.3, 0.6, 0.85, 0.95, 1.0]      # all PSD for 2 underlyings


@pytest.mark.parametrize("signs", [(1.0, 1.0), (1.0, -1.0)], ids=["long-long", "long-short"])
@examples(25)
@given(data=st.data())
def test_charge_is_monotone_in_rho(signs, data):
    pos = data.draw(linear_books(signs=signs))
    g = np.array([net_range_delta(pos, u) for u in ("BTC", "ETH")])
    charges = []
    for rho in RHO_GRID:
        sm = acc(run(pos, rho_model(rho)), "scenario_margin")
        # and each charge is the ellipsoid's support function sqrt(g' rho g) within 0.5 %
        # (the tail, 0.7 of it, never binds for a linear book)
        target = math.sqrt(max(g @ np.array([[1.0, rho], [rho, 1.0]]) @ g, 0.0))
        assert target * (1 - TOL) - 1e-9 * np.abs(g).sum() <= sm
        assert sm <= target * (1 + 1e-9) + 1e-9 * np.abs(g).sum()
        charges.append(sm)
    charges = np.array(charges)
    if signs == (1.0, 1.0):       # long both: never lower as rho rises
        assert (charges[1:] >= charges[:-1] * (1 - TOL)).all(), charges
    else:                         # long BTC / short ETH: never higher as rho rises
        assert (charges[1:] <= charges[:-1] * (1 + TOL) + 1e-9 * np.abs(g).sum()).all(), \
            charges


# =============================================================================================
# 4. MM and IM are monotone in risk_multiplier and vol_floor
# =============================================================================================

def _by_account(r, name):
    return dict(zip(r.accounts["account"].to_pylist(), col(r.accounts, name)))


@examples(30)
@given(pos=books())
def test_margin_monotone_in_risk_multiplier(pos):
    base = run(pos, instruments=UNIVERSE, market=MARKET)
    prev = None
    for rm in (0.8, 0.9, 1.0, 1.2, 1.5):
        r = run(pos, STANDARD.with_overrides({"risk_multiplier": rm}), instruments=UNIVERSE,
                market=MARKET)
        cur = {k: (_by_account(r, "maintenance_margin")[k], _by_account(r, "initial_margin")[k])
               for k in _by_account(r, "maintenance_margin")}
        # exactly proportional (no orders or reserves here) ...
        for a, (mm, im) in cur.items():
            assert mm == pytest.approx(rm * _by_account(base, "maintenance_margin")[a],
                                       rel=1e-12, abs=1e-12)
            assert im == pytest.approx(rm * _by_account(base, "initial_margin")[a],
                                       rel=1e-12, abs=1e-12)
        # ... hence monotone
        if prev is not None:
            for a in cur:
                assert cur[a][0] >= prev[a][0] and cur[a][1] >= prev[a][1]
        prev = cur


FLOORS = (0.0, 0.25, 0.5, 0.62, 0.7, 1.0)
MIN_MARK_IV = float(np.nanmin(MARKET["mark_iv"].to_numpy(zero_copy_only=False)))   # 0.55


def _floor_path(pos, und, floors):
    """(MM, IM) per account along increasing vol floors of ``und``."""
    out = []
    for f in floors:
        r = run(pos, STANDARD.with_overrides({und: {"vol_floor": f}}), instruments=UNIVERSE,
                market=MARKET)
        out.append((_by_account(r, "maintenance_margin"), _by_account(r, "initial_margin")))
    return out


@examples(30)
@given(pos=books(), und=st.sampled_from(["BTC", "ETH"]))
def test_margin_monotone_in_vol_floor(pos, und):
    """Floors from 0 to 100 % (the universe's mark IVs are 55-65 %, so the upper ones bind)."""
    path = _floor_path(pos, und, FLOORS)
    for f, (mm0, im0), (mm1, im1) in zip(FLOORS[1:], path, path[1:]):
        for a in mm0:
            assert mm1[a] >= mm0[a] * (1 - 1e-12) - 1e-9, (f, a)
            assert im1[a] >= im0[a] * (1 - 1e-12) - 1e-9, (f, a)


@examples(20)
@given(pos=books(), und=st.sampled_from(["BTC", "ETH"]))
def test_vol_floor_at_or_below_every_mark_iv_changes_nothing(pos, und):
    """On any book, floors up to the lowest mark IV of the universe (55 %) bind nowhere."""
    path = _floor_path(pos, und, (0.0, 0.25, 0.4, MIN_MARK_IV))
    for mm, im in path[1:]:
        for a in mm:
            assert mm[a] == pytest.approx(path[0][0][a], rel=1e-12, abs=1e-9)
            assert im[a] == pytest.approx(path[0][1][a], rel=1e-12, abs=1e-9)


def test_vol_floor_charges_the_short_and_never_credits_the_long():
    """Pinned both ways (an earlier build raised the vol of long options too, so a long call's
    MM FELL from 7933.91 at floor 0.62 to 6801.95 at 1.00: a phantom gain at the floor).
    Long 1 BTC-28JUN24-56000-C (mark IV 62 %): MM the same at every floor; short 1: MM rises
    once the floor passes 62 %."""
    for sign in (1.0, -1.0):
        pos = positions([("BTC-28JUN24-56000-C", sign)])
        mm = [p[0]["a"] for p in _floor_path(pos, "BTC", (0.25, 0.62, 0.70, 1.0))]
        if sign > 0:
            assert mm == pytest.approx([mm[0]] * 4, rel=1e-12)
        else:
            assert mm[0] == pytest.approx(mm[1], rel=1e-12)
            assert mm[1] < mm[2] < mm[3]


# =============================================================================================
# 5. subadditivity
# =============================================================================================
#
# An account's joint scenarios depend on the set of underlyings it holds (SPEC §5;
# bindings/correlated.py groups accounts by it): an account on one underlying is stressed on
# that underlying's grid only (moves k/5 of the range, and the tails), while an account on two
# projects the ellipsoid's directions onto each underlying and so also moves it to every point
# in between (c*range*z_u, z_u anywhere in [-1, 1]).  For an option book whose worst move lies
# between two grid points the two-underlying stress therefore finds a larger loss than the
# one-underlying grid: adding a $10 BTC perpetual to an ETH straddle raises its MM by 7.8 %
# (the xfails below).  That is the per-underlying grid, not the finite direction set (more
# directions only make it worse) and not an add-on (standard has none).
#
# What holds is subadditivity on a common scenario set: stress each half as the whole book is
# stressed by giving it a negligible position (EPS contracts of a linear perpetual, worth at
# most L_eps of loss in any scenario) in each underlying the whole holds and it does not.  The
# set is common but for each account's own delta directions (SPEC §5): the whole's loss along
# its own direction can exceed what a half finds along its directions and the quasi-random
# ones by the direction set's covering gap, 1 - cos(pi/512) of a linear loss (DIRECTIONS_GAP;
# the nightly profile found 1.7e-7 on a 12-position option book).  The tolerance is that gap,
# 2*L_eps (~1e-8 USD) and rounding; when both halves already hold every underlying of the
# whole no position is added and the raw inequality is checked.

EPS = 1e-6
DIRECTIONS_GAP = 1 - math.cos(math.pi / 512)   # test_gap_to_the_norm_closes_as_directions_...


def _underlyings(pos):
    return {_SPEC[s]["underlying"] for s in pos["symbol"].to_pylist()}


def _stressed_like(half, whole):
    """``half`` plus EPS contracts of a linear perpetual in each underlying of ``whole`` that
    ``half`` lacks, and the most those can lose in any joint scenario (USD)."""
    extra = [(f"{u}_USDC-PERPETUAL", EPS) for u in sorted(_underlyings(whole) -
                                                          _underlyings(half))]
    if not extra:
        return half, 0.0
    pad = positions(extra, account=half["account"][0].as_py())
    # shells move at most the full range (the tails, 2 x range at 35 %, lose less)
    return pa.concat_tables([half, pad]), sum(abs(range_delta_usd(s, q)) for s, q in extra)


@examples(40)
@given(pos=books(max_accounts=1), data=st.data())
def test_maintenance_margin_is_subadditive(pos, data):
    n = pos.num_rows
    assume(n >= 2)
    mask = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    assume(0 < sum(mask) < n)
    a = pos.filter(pa.array(mask))
    b = pos.filter(pa.array([not x for x in mask]))
    kw = dict(instruments=LIN_UNIVERSE, market=LIN_MARKET)
    mm = acc(run(pos, **kw), "maintenance_margin")
    a2, la = _stressed_like(a, pos)
    b2, lb = _stressed_like(b, pos)
    ma = acc(run(a2, **kw), "maintenance_margin")
    mb = acc(run(b2, **kw), "maintenance_margin")
    assert mm <= (ma + mb) * (1 + DIRECTIONS_GAP) + la + lb + 1e-9, (mm, ma, mb, la, lb)


STRADDLE = [("ETH-28JUN24-3400-C", 30.0), ("ETH-28JUN24-3400-P", 20.0)]
ISSUE_5 = ("LIBRARY/SPEC ISSUE (reported): a one-underlying account is stressed on its grid "
           "only (moves k/5 of the range), a two-underlying account also between the grid "
           "points, so a vanishing position on a second underlying raises an option book's "
           "MM by several per cent (exact revaluation agrees, more directions make it worse)")


@pytest.mark.xfail(strict=True, reason=ISSUE_5)
def test_maintenance_margin_is_subadditive_raw_counterexample():
    """Long 30 ETH-28JUN24-3400-C + 20 ETH-28JUN24-3400-P: MM 2185.05 (binding ETH -3.6 %,
    vol down).  1 BTC-PERPETUAL ($10 face): MM 1.76.  Together: 2357.69 (+7.8 %), binding
    'joint shell 3/5: BTC -5.97 %, ETH -1.83 % vol down' - an ETH move between the grid
    points 0 and -3.6 % where the straddle's vol-down loss peaks.  (The example hypothesis
    shrank to first: 1 BTC-28JUN24-56000-C + 1 -P + 1 ETH-PERPETUAL, 6081.77 > 6045.92 +
    0.22, binding BTC -14.18 % between -12 % and -15 %.)"""
    perp = [("BTC-PERPETUAL", 1.0)]
    whole = acc(run(positions(STRADDLE + perp)), "maintenance_margin")
    parts = acc(run(positions(STRADDLE)), "maintenance_margin") + \
        acc(run(positions(perp)), "maintenance_margin")
    assert whole <= parts * (1 + 1e-9)


@pytest.mark.xfail(strict=True, reason=ISSUE_5)
def test_margin_is_continuous_in_a_vanishing_position():
    """Same straddle plus 1e-9 BTC-PERPETUAL (1e-8 USD face): MM 2357.05 instead of 2185.05."""
    alone = acc(run(positions(STRADDLE)), "maintenance_margin")
    plus = acc(run(positions(STRADDLE + [("BTC-PERPETUAL", 1e-9)])), "maintenance_margin")
    assert plus == pytest.approx(alone, rel=1e-6)


@pytest.mark.xfail(strict=True, reason=ISSUE_5 + "; so correlated mode can charge more than "
                   "cross_unit='sum' (2186.81 here)")
def test_correlated_never_charges_more_than_the_units_alone():
    r = run(positions(STRADDLE + [("BTC-PERPETUAL", 1.0)]))
    total_alone = col(r.units, "worst_case_usd").sum()
    assert acc(r, "scenario_margin") <= total_alone * (1 + 1e-9)


@pytest.mark.parametrize("steps", [2, 4])
def test_denser_shells_remove_the_vanishing_position_jump(steps):
    """``shell_steps`` samples the shells between SPEC's k/buckets for every account, the
    one-underlying ones included: the straddle's interior peak is then seen with or without the
    second underlying (7.9 % jump at shell_steps 1, < 0.01 % here) and the raw split is
    subadditive."""
    m = pmrisk.Model.preset("standard").with_overrides({"shell_steps": steps})
    perp = [("BTC-PERPETUAL", 1.0)]
    alone = acc(run(positions(STRADDLE), model=m), "maintenance_margin")
    dust = acc(run(positions(STRADDLE + [("BTC-PERPETUAL", 1e-9)]), model=m),
               "maintenance_margin")
    assert dust == pytest.approx(alone, rel=1e-4)
    whole = acc(run(positions(STRADDLE + perp), model=m), "maintenance_margin")
    assert whole <= (alone + acc(run(positions(perp), model=m), "maintenance_margin")) \
        * (1 + 1e-9)


@examples(25)
@given(pos=books(max_accounts=1), data=st.data())
def test_maintenance_margin_is_subadditive_on_random_splits(pos, data):
    """The raw property on random books of the demo universe (no padding), with shells between
    the buckets (without them it fails for books whose loss peaks between two shells of a
    one-underlying half, see above).  Tolerance ``TOL``: each half is stressed on its own
    finite scenario set and the whole on its own, so the whole can see a half's loss nearer
    its peak than the half alone does.  Between delta directions that is at most
    1 - cos(pi/512) ~ 2e-5 of a two-underlying loss; between shells it is the half's loss
    curve's rise between two samples, 0.12 % on the strangle of
    :func:`test_subadditive_once_the_shells_resolve_the_peak` (found under the nightly
    profile)."""
    n = pos.num_rows
    assume(n >= 2)
    mask = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    assume(0 < sum(mask) < n)
    m = pmrisk.Model.preset("standard").with_overrides({"shell_steps": 4})
    mm = acc(run(pos, model=m), "maintenance_margin")
    ma = acc(run(pos.filter(pa.array(mask)), model=m), "maintenance_margin")
    mb = acc(run(pos.filter(pa.array([not x for x in mask])), model=m), "maintenance_margin")
    assert mm <= (ma + mb) * (1 + TOL) + 1e-6, (mm, ma, mb)


STRANGLE_AND_PERP = [("ETH-27SEP24-2950-C", 1.0), ("ETH-28JUN24-2900-P", 1.5),
                     ("BTC-PERPETUAL", 1.0)]


@pytest.mark.parametrize("steps", [4, 8])
def test_subadditive_once_the_shells_resolve_the_peak(steps):
    """Long ETH strangle (2900 put, 2950 call) beside 1 BTC-PERPETUAL, split into the
    strangle and the perpetual.  The strangle's vol-down loss peaks between two of its shells
    at ``shell_steps`` 4: alone it is charged 253.49, while the two-underlying whole reaches
    nearer the peak along its delta directions and is charged 0.12 % more than the halves
    (255.56 against 1.76 + 253.49).  At 8 steps the strangle alone is charged 253.88 (as at 16
    and 32) and the split is subadditive."""
    m = pmrisk.Model.preset("standard").with_overrides({"shell_steps": steps})

    def mm(rows):
        return acc(run(positions(rows), model=m, instruments=UNIVERSE, market=MARKET),
                   "maintenance_margin")
    whole, perp, strangle = mm(STRANGLE_AND_PERP), mm(STRANGLE_AND_PERP[2:]), \
        mm(STRANGLE_AND_PERP[:2])
    excess = whole / (perp + strangle) - 1
    if steps == 4:
        assert 1e-3 < excess < TOL
    else:
        assert excess <= 1e-9


# =============================================================================================
# 6. engine invariants in correlated mode
# =============================================================================================

def _std(pos, **kw):
    return run(pos, instruments=UNIVERSE, market=MARKET, **kw)


@given(pos=books())
def test_correlated_margin_non_negative_and_finite(pos):
    r = _std(pos)
    assert_no_nan(r)
    for name in ("maintenance_margin", "initial_margin", "scenario_margin"):
        assert (col(r.accounts, name) >= 0).all(), name
        assert np.isfinite(col(r.accounts, name)).all(), name
    for name in ("worst_case", "roll_shock", "delta_shock", "short_option_minimum"):
        assert (col(r.units, name) >= 0).all(), name
    # the units' parts add up to the account's scenario margin (USD)
    parts = {}
    for a, s in zip(r.units["account"].to_pylist(), col(r.units, "scenario_margin_usd")):
        parts[a] = parts.get(a, 0.0) + s
    for a, s in _by_account(r, "scenario_margin").items():
        assert parts[a] == pytest.approx(s, rel=1e-9, abs=1e-9)
    # (the joint worst is NOT bounded by the sum of the units' worst cases: see the xfail
    # test_correlated_never_charges_more_than_the_units_alone)


@given(pos=books())
def test_correlated_contributions_sum_to_margin(pos):
    r = _std(pos)
    for name in ("mm_contribution_usd", "im_contribution_usd"):
        total = {}
        for a, c in zip(r.positions["account"].to_pylist(), col(r.positions, name)):
            total[a] = total.get(a, 0.0) + c
        target = _by_account(r, "maintenance_margin" if name.startswith("mm")
                             else "initial_margin")
        assert set(total) == set(target)
        for a, m in target.items():
            assert total[a] == pytest.approx(m, rel=1e-9, abs=1e-9), (name, a)


@given(pos=books(), data=st.data())
def test_correlated_permuting_rows_changes_nothing(pos, data):
    perm = data.draw(st.permutations(range(pos.num_rows)))
    a = _std(pos)
    b = _std(pos.take(pa.array(perm, pa.int64())))
    sa = a.accounts.sort_by("account")
    sb = b.accounts.sort_by("account")
    assert sa["account"].to_pylist() == sb["account"].to_pylist()
    for name in ("maintenance_margin", "initial_margin", "scenario_margin"):
        np.testing.assert_allclose(col(sb, name), col(sa, name), rtol=1e-12, atol=1e-12)
    assert sa["worst_scenario"].to_pylist() == sb["worst_scenario"].to_pylist() or \
        np.allclose(col(sa, "scenario_margin"), 0.0)
    ua = a.units.sort_by([("account", "ascending"), ("unit", "ascending")])
    ub = b.units.sort_by([("account", "ascending"), ("unit", "ascending")])
    for name in ("worst_case", "scenario_margin", "maintenance_margin", "initial_margin"):
        np.testing.assert_allclose(col(ub, name), col(ua, name), rtol=1e-12, atol=1e-12)


@given(pos=books(max_accounts=1))
def test_correlated_book_plus_negation_has_no_scenario_margin(pos):
    ins, mkt = with_negated_instruments()
    neg = pos.set_column(1, "symbol", pa.array([s + "-NEG" for s in pos["symbol"].to_pylist()]))
    neg = scaled(neg, -1.0)
    r = run(pa.concat_tables([pos, neg]), instruments=ins, market=mkt,
            risk_vectors="positions")
    px = dict(zip(r.units["unit"].to_pylist(), col(r.units, "settlement_price_usd")))
    rv = r.position_risk_vectors           # settlement currency -> USD
    gross = np.abs(col(rv, "pnl") * np.array([px[u] for u in rv["unit"].to_pylist()])).max()
    assert acc(r, "scenario_margin") <= 1e-12 * gross
    assert acc(r, "maintenance_margin") <= 1e-12 * gross


@given(pos=books(), k=st.floats(0.01, 100.0))
def test_correlated_scenario_margin_scales_with_quantity(pos, k):
    """No gain caps, dampeners or fixed amounts in standard: the joint worst is positively
    homogeneous, so scaling every quantity by k scales it by k (and MM, IM with it)."""
    a, b = _std(pos), _std(scaled(pos, k))
    for name in ("scenario_margin", "maintenance_margin", "initial_margin"):
        np.testing.assert_allclose(col(b.accounts, name), k * col(a.accounts, name),
                                   rtol=1e-9, atol=1e-9)
    for name in ("worst_case", "scenario_margin"):
        np.testing.assert_allclose(col(b.units, name), k * col(a.units, name),
                                   rtol=1e-9, atol=1e-9)

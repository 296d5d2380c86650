"""The incremental joint stress of a Monitor tick (:mod:`pmrisk.kernel.joint_tick`): the
Monitor equals ``margin()`` on the same state whichever way each account was settled, small
ticks settle most accounts from their record, big ones send them back to the full kernel,
the kept bound is below every other joint scenario's interpolated total (numpy twin:
``oracles.joint_tick_twin``, ``oracles.joint_account_totals``) and the kernel's decision is
the twin's."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import oracles
import pmrisk
from pmrisk import samples
from pmrisk.engine.correlated import JointStress

pytestmark = pytest.mark.filterwarnings("ignore::pmrisk.MarginWarning")

SMALL = pmrisk.Model.preset("standard").with_overrides({"n_directions": 24})
UND = ("BTC", "ETH", "SOL")


def monitor(seed, n_accounts=6, model=SMALL):
    t = samples.book(n_accounts=n_accounts, positions_per_account=10, underlyings=UND,
                     option_share=0.7, inverse_share=0.5, seed=seed)
    vt = t.pop("valuation_time")
    return pmrisk.Monitor(**t, model=model, valuation_time=vt), t


def move(mon, tables, und, factor):
    """Move ``und`` by ``factor``: its futures' marks, its options' forwards, its index."""
    state = mon.state()
    m, ins = state["market"], tables["instruments"]
    und_of = dict(zip(ins["symbol"].to_pylist(), ins["underlying"].to_pylist()))
    rows = []
    for r in m.to_pylist():
        if und_of[r["symbol"]] != und:
            continue
        r = dict(r)
        if r["mark_iv"] is None:
            r["mark_price"] *= factor
        else:
            r["underlying_price"] *= factor
        rows.append(r)
    idx = state["index"]
    px = dict(zip(idx["underlying"].to_pylist(), idx["index_price"].to_pylist()))
    mon.update(market=pa.Table.from_pylist(rows, schema=m.schema),
               index={"underlying": [und], "index_price": [px[und] * factor]})


def joints(mon):
    return [b.out.joint for b in mon._blocks if b.out.joint is not None]


def assert_equals_margin(mon, model=SMALL):
    """Every column of the three tables equals margin()'s on the same state (numbers to
    1e-12 of the column's scale, strings exactly)."""
    ref = pmrisk.margin(**mon.state(), model=model)
    keys = {"accounts": ["account"], "units": ["account", "unit"],
            "positions": ["account", "unit", "symbol"]}
    for name, k in keys.items():
        a = getattr(mon, name).sort_by([(c, "ascending") for c in k])
        b = getattr(ref, name).sort_by([(c, "ascending") for c in k])
        assert a.num_rows == b.num_rows
        for c in b.column_names:
            x, y = a[c], b[c]
            if pa.types.is_floating(y.type):
                x = x.to_numpy(zero_copy_only=False)
                y = y.to_numpy(zero_copy_only=False)
                scale = np.abs(y[np.isfinite(y)]).max(initial=0.0)
                ok = (x == y) | (np.abs(x - y) <= 1e-12 * scale) | (np.isnan(x) & np.isnan(y))
                assert ok.all(), (name, c)
            else:
                assert x.to_pylist() == y.to_pylist(), (name, c)


class Spy:
    """Wraps :meth:`JointStress.tick`: copies the record, previous prices and moved rows
    before each tick and checks the tick right after it (:func:`check_tick`); counts the
    ticks."""

    def __init__(self, monkeypatch):
        self.calls = []
        orig = JointStress.tick

        def tick(js, unit_px, slope_usd, accounts):
            before = None
            if js.keep is not None:
                before = {"keep": tuple(x.copy() for x in js.keep),
                          "px_prev": js.px_prev.copy(), "pending": js.pending.copy()}
            orig(js, unit_px, slope_usd, accounts)
            check_tick(js, before, np.array(unit_px), np.array(slope_usd),
                       np.array(accounts))
            self.calls.append(before is not None)
        monkeypatch.setattr(JointStress, "tick", tick)


def check_tick(js, before, unit_px, slope_usd, accounts):
    """The kept bound after the tick is below every other joint scenario's interpolated
    total at the new curves; where the twin's decision is clear, the kernel's is the
    same."""
    keep_j, keep_v, keep_n, keep_lb = js.keep[:4]
    udrift, upath, keep_p = js.keep[8], js.keep[11], js.keep[12]
    for a in np.asarray(accounts).tolist():
        if keep_n[a] < 0:
            continue
        approx, n_js, tol, size = oracles.joint_account_totals(js, a, unit_px, slope_usd)
        other = np.ones(n_js, dtype=bool)
        kept = keep_j[a, :keep_n[a]]
        other[kept] = False
        assert (approx[:n_js][other] >= keep_lb[a] - 1e-9 * size).all(), a
        # each kept scenario's two bounds: from the record (drift) and from the steps (path)
        us = [u for u in range(js.ua_start[a], js.ua_start[a + 1]) if js.active[u]]
        drift, path = udrift[us].sum(), upath[us].sum()
        assert (approx[kept] >= keep_v[a, :keep_n[a]] - drift - 1e-9 * size).all(), a
        assert (approx[kept] >= keep_p[a, :keep_n[a]] - path - 1e-9 * size).all(), a
    if before is None:
        return
    full = set(js.last_full.tolist())
    for a, (fast, lb, band, size) in oracles.joint_tick_twin(
            js, before, unit_px, slope_usd, accounts).items():
        if abs(lb - band) > 1e-9 * size:
            assert fast == (a not in full), a
        if a not in full:
            assert abs(keep_lb[a] - lb) <= 1e-9 * size, a


# -- the Monitor equals margin() whichever way an account went -------------------------------

def test_small_ticks_settle_from_the_record_and_equal_margin(monkeypatch):
    spy = Spy(monkeypatch)
    mon, t = monitor(seed=3)
    factors = [1.001, 0.9995, 1.0007, 0.999, 1.0004, 1.0002]
    for k, f in enumerate(factors):
        move(mon, t, UND[k % 3], f)
        assert_equals_margin(mon)
    js = joints(mon)[0]
    assert js.n_fast > js.n_full > 0          # the first tick records every account
    assert any(spy.calls)


def test_big_moves_send_accounts_back_to_the_full_kernel(monkeypatch):
    spy = Spy(monkeypatch)
    mon, t = monitor(seed=8)
    move(mon, t, "BTC", 1.0005)                # records every account
    js = joints(mon)[0]
    full0 = js.n_full
    move(mon, t, "ETH", 1.0003)
    assert js.n_fast > 0
    move(mon, t, "BTC", 0.8)                   # the binding scenarios move
    assert js.n_full > full0 and len(js.last_full)
    assert_equals_margin(mon)
    move(mon, t, "SOL", 1.0002)
    assert_equals_margin(mon)
    assert any(spy.calls)


def test_a_burst_of_records_is_spread_over_the_ticks_after(monkeypatch):
    """More accounts back from the full kernel than ``RECORD_MAX``: the tick records those
    without a record and ``RECORD_MAX`` of the others; the rest are deferred (``keep_n``
    -2), take the full kernel and are recorded on the ticks after, the longest waiting
    first; the figures equal margin() throughout."""
    import pmrisk.engine.correlated as correlated
    monkeypatch.setattr(correlated, "RECORD_MAX", 2)
    spy = Spy(monkeypatch)
    mon, t = monitor(seed=8, n_accounts=10)
    move(mon, t, "BTC", 1.0005)                # no records yet: every account recorded
    js = joints(mon)[0]
    keep_n = js.keep[2]
    assert (keep_n >= 0).sum() >= 8
    move(mon, t, "BTC", 0.8)                   # sends most back to the full kernel
    back = js.last_full
    assert len(back) > 2
    deferred = np.flatnonzero(keep_n == -2)
    assert len(deferred) == len(back) - 2 - (keep_n[back] == -1).sum() > 0
    assert_equals_margin(mon)
    waited = set(deferred.tolist())
    for k in range(8):
        move(mon, t, UND[k % 3], 1.0 + 1e-4 * (k + 1))
        assert_equals_margin(mon)
        now = set(np.flatnonzero(keep_n == -2).tolist())
        assert set(js.last_full.tolist()) >= now      # the deferred take the full kernel
        recorded = waited - now
        if waited and len(js.last_full) - len(now) > 0:
            assert recorded                   # the longest waiting are recorded first
        waited = now
        if not now:
            break
    assert not (keep_n == -2).any()
    assert any(spy.calls)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000),
       steps=st.lists(st.tuples(st.sampled_from(UND),
                                st.sampled_from([1e-4, 1e-3, 5e-3, 0.03, 0.15])
                                | st.floats(-0.05, 0.05).filter(lambda x: 1.0 + x != 1.0)),
                      min_size=2, max_size=6))
def test_any_ticks_equal_margin_and_the_bound_holds(seed, steps):
    """Ticks of any size: the Monitor equals margin() after each; the kept bound is below
    every other joint scenario's interpolated total (the twin scans them all) and the
    kernel decides as the twin."""
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        mon, t = monitor(seed=seed, n_accounts=4)
        for und, x in steps:
            move(mon, t, und, 1.0 + x)
            assert_equals_margin(mon)
        assert spy.calls


@settings(deadline=None)
@given(n_side=st.integers(1, 8), ts=st.integers(0, 6), seed=st.integers(0, 2**32 - 1),
       bad=st.sampled_from([None, np.nan, np.inf, -np.inf]), where=st.integers(0, 10_000))
def test_the_ticks_curve_tol_is_curve_tol_to_the_bit(n_side, ts, seed, bad, where):
    """The tick's one-pass tol of a unit curve (any grid, NaN and infinities included)
    equals the full kernel's :func:`pmrisk.kernel.joint.curve_tol` and its numpy twin to
    the bit."""
    from pmrisk.kernel.joint import curve_tol
    from pmrisk.kernel.joint_tick import curve_tol_fast
    n_shell = 2 * n_side + 1
    tail0 = 3 * n_shell
    rng = np.random.default_rng(seed)
    cv = rng.normal(size=tail0 + 2 * ts + 1) * 10.0 ** rng.integers(-3, 6)
    if bad is not None:
        cv[where % len(cv)] = bad
    scratch = [np.empty(max(n_shell, 2 * ts + 1)) for _ in range(3)]
    want = curve_tol(cv, n_shell, ts, tail0, 1.0, *scratch, False)
    got = curve_tol_fast(cv, n_shell, ts, tail0, 1.0, *scratch)
    twin = oracles.curve_tol_twin(cv, n_shell, ts, tail0, 1.0)
    np.testing.assert_array_equal(np.array(got), np.array(want))
    np.testing.assert_array_equal(np.array(got), np.array(twin))


def test_monitor_10k_like_book_parallel_form(monkeypatch):
    """Over PARALLEL_MIN accounts the parallel kernels run (the same rows as the serial
    ones)."""
    import pmrisk.engine.correlated as C
    monkeypatch.setattr(C, "PARALLEL_MIN", 2)
    priced = []                 # the binding scenarios' cells priced once per tick
    bind_cells = C.bind_cells
    monkeypatch.setattr(C, "bind_cells", lambda *a: (priced.append(a[-2].shape[0]),
                                                     bind_cells(*a)))
    spy = Spy(monkeypatch)
    mon, t = monitor(seed=5, n_accounts=8)
    for k, f in enumerate([1.0006, 0.9993, 1.0004, 1.07]):
        move(mon, t, UND[k % 3], f)
        assert_equals_margin(mon)
    assert joints(mon)[0].n_fast > 0
    assert any(spy.calls)
    assert priced and min(priced) > 0


@settings(deadline=None)
@given(n_side=st.integers(2, 8), ts=st.integers(0, 6), n_rows=st.integers(1, 6),
       n_pos=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       hedge=st.booleans(), ef=st.sampled_from([1.0, 0.5, 3.0]))
def test_the_ticks_tol_bound_is_above_the_units_tol(n_side, ts, n_rows, n_pos, seed, hedge,
                                                   ef):
    """A unit's tol bound from its rows' (:func:`row_bounds`, each row as the numpy twin
    gives its tol with error factor 1 and its size, to the bit) is never below the tol of
    the unit's curve as the kernels build it (:func:`pmrisk.kernel.joint.unit_curve`, then
    :func:`curve_tol_fast`), hedged units (quantities that cancel) included."""
    from pmrisk.kernel.joint import unit_curve
    from pmrisk.kernel.joint_tick import curve_tol_fast, row_bounds, tol_bound
    n_shell = 2 * n_side + 1
    tail0 = 3 * n_shell
    rng = np.random.default_rng(seed)
    icurve = np.zeros((n_rows, tail0 + 2 * ts + 1))
    icurve[:, :tail0 + 2 * ts + 1] = rng.normal(size=(n_rows, tail0 + 2 * ts + 1)) \
        * 10.0 ** rng.integers(-3, 6, size=(n_rows, 1))
    row_t, row_s = np.zeros(n_rows), np.zeros(n_rows)
    row_bounds(icurve, np.arange(n_rows), n_shell, np.array([ts]), tail0, row_t, row_s)
    for i in range(n_rows):
        twin = oracles.curve_tol_twin(icurve[i], n_shell, ts, tail0, 1.0)
        assert (row_t[i], row_s[i]) == twin
    pos_row = rng.integers(0, n_rows, size=n_pos)
    q = rng.normal(size=n_pos) * 10.0 ** rng.integers(-2, 4)
    if hedge and n_pos > 1:          # the last position undoes the others' sum on one row
        pos_row[-1] = pos_row[0]
        q[-1] = -q[0]
    q[rng.random(n_pos) < 0.1] = 0.0
    pu_start = np.array([0, n_pos])
    pu_order = rng.permutation(n_pos)
    curve = np.empty(icurve.shape[1])
    unit_curve(0, pu_start, pu_order, q, pos_row, icurve, np.arange(n_rows), curve)
    scratch = [np.empty(max(n_shell, 2 * ts + 1)) for _ in range(3)]
    e, _ = curve_tol_fast(curve, n_shell, ts, tail0, ef, *scratch)
    bound = tol_bound(0, pu_start, pu_order, q, pos_row, np.arange(n_rows), row_t, row_s, ef)
    assert e <= bound


@settings(deadline=None)
@given(n_pos=st.integers(0, 9), width=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_a_units_curve_is_its_rows_summed_in_order_to_the_bit(n_pos, width, seed):
    """:func:`pmrisk.kernel.joint.unit_curve` (two rows per pass) gives the bits of the
    plain sum, one position's row after another from 0.0, positions without quantity
    skipped."""
    from pmrisk.kernel.joint import unit_curve
    rng = np.random.default_rng(seed)
    n_rows = 4
    icurve = rng.normal(size=(n_rows, width)) * 10.0 ** rng.integers(-3, 6, size=(n_rows, 1))
    pos_row = rng.integers(0, n_rows, size=n_pos)
    q = rng.normal(size=n_pos) * 10.0 ** rng.integers(-2, 4)
    q[rng.random(n_pos) < 0.25] = 0.0
    pu_start = np.array([0, n_pos])
    pu_order = rng.permutation(n_pos)
    got = np.full(width, np.nan)
    unit_curve(0, pu_start, pu_order, q, pos_row, icurve, np.arange(n_rows), got)
    want = np.zeros(width)
    for p in pu_order:
        if q[p] != 0.0:
            want = want + q[p] * icurve[pos_row[p]]
    assert np.array_equal(got, want)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_binding_scenarios_cells_are_each_priced_as_alone(seed):
    """:func:`bind_slots` numbers the distinct binding joint scenarios in order of first
    appearance; :func:`bind_cells` prices each held row once per scenario, as the twin
    prices it (every row taken as repriced)."""
    from pmrisk.kernel.joint_tick import bind_cells, bind_slots
    mon, _ = monitor(seed=seed, n_accounts=8)        # its first run: the book's own marks
    out = mon._blocks[0].out
    js = out.joint
    sel = np.arange(len(js.worst), dtype=np.int64)
    rows = np.arange(len(js.pending), dtype=np.int64)
    jslot = np.full(js.grp[6].shape[0], -1, dtype=np.int64)
    jj_of = np.zeros(len(sel), dtype=np.int64)
    n_d = bind_slots(sel, js.bind_kind, js.bind_index, jslot, jj_of)
    need = np.zeros((n_d, len(rows)), dtype=bool)
    cache = np.full((n_d, len(rows), 3), np.nan)
    acc = (js.ua_start, js.pu_start, js.pu_order, js.q, js.pos_row, js.unit_row,
           out.units.settle_px, out.unit.slope_usd, js.acc_group)
    bind_cells(sel, acc, js.grp, tuple(js.ins), js.bind_kind, js.bind_index, jslot, jj_of,
               rows, rows.copy(), need, cache)
    jjs, want_need, want = oracles.bind_cells_twin(js, out.rev.args, sel)
    assume(n_d > 0)                  # (some samples bind at no joint scenario)
    assert jj_of[:n_d].tolist() == jjs.tolist()
    assert all(jslot[j] == d for d, j in enumerate(jjs.tolist()))
    assert (need == want_need).all()
    np.testing.assert_allclose(cache[need], want[need], rtol=1e-12,
                               atol=1e-12 * max(np.abs(want).max(initial=0.0), 1.0))

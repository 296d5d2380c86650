"""The okx_pm phase kernels (:mod:`pmrisk.kernel.okx`: rows to USD, OKX's vol shocks, MR4
group terms, unit margins, borrowing; :func:`pmrisk.kernel.addons.tiered_value`) against
their numpy twins in ``tests/oracles.py`` on arrays drawn by hypothesis: every figure equal
to the bit (the kernels do the twins' scalar arithmetic in the same order)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import addons
from pmrisk.kernel import okx as KO
from pmrisk.kernel.assemble import csr
from pmrisk.kernel.instruments import OPTION

PRICES = st.sampled_from([1.0, 0.98, 1.0002, 2.5e4, 101_000.0, 0.0, np.nan])
AMOUNTS = st.sampled_from([0.0, -0.0, 1.0, -2.5, 1e4, -3e6, 7e6, -1e-9, np.nan, np.inf])


def _ints(data, n, lo, hi):
    return np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                    dtype=np.int64)


def _floats(data, n, elements):
    return np.array(data.draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float64)


def _subset(data, n):
    """A sorted selection of distinct indexes of ``range(n)``."""
    return np.array(sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n))) if n else [],
                    dtype=np.int64)


def _equal(got, want):
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 6), extra=st.integers(0, 3),
       n_types=st.integers(1, 3), width=st.integers(1, 5))
def test_usd_rows_agree_with_twin(data, n_instr, extra, n_types, width):
    """Inverse rows at the moved index, linear options at P, linear delta rows at S/mark."""
    n_rows = n_instr + extra
    row_instr = np.concatenate([np.arange(n_instr), _ints(data, extra, 0, n_instr - 1)])
    rows = _subset(data, n_rows)
    settlement = _ints(data, n_instr, 0, 1)
    kind = _ints(data, n_instr, 0, 3)
    mark = _floats(data, n_instr, st.sampled_from([1.0, 0.05, 99_000.0, 0.0]))
    s_px, p_px = _floats(data, n_instr, PRICES), _floats(data, n_instr, PRICES)
    instr_type = _ints(data, n_instr, 0, n_types - 1)
    und_row = _ints(data, n_types, 0, 1)
    shock = _floats(data, 2 * width, st.sampled_from([0.0, -0.15, 0.1, 1 / 3])).reshape(2, width)
    pnl = _floats(data, n_rows * width, st.floats(-1e6, 1e6)).reshape(n_rows, width)
    args = (rows, row_instr, settlement, kind, mark, s_px, p_px, instr_type, und_row, shock)
    got, want = pnl.copy(), pnl.copy()
    KO.usd_rows(got, *args)
    oracles.okx_usd_rows(want, *args)
    np.testing.assert_array_equal(got, want)
    untouched = np.setdiff1d(np.arange(n_rows), rows)
    np.testing.assert_array_equal(got[untouched], pnl[untouched])


NODE_DAYS = st.sampled_from([0.0, 7.0, 30.0, 60.0, 90.0, 365.0])
NODE_VALUES = st.sampled_from([0.0, 0.2, 0.25, 0.3, 0.35, 0.5, 1.0])


@st.composite
def node_table(draw):
    days = sorted(draw(st.sets(NODE_DAYS, min_size=1, max_size=4)))
    return [[d, draw(NODE_VALUES), draw(NODE_VALUES)] for d in days]


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 6), extra=st.integers(0, 3),
       n_types=st.integers(1, 3))
def test_okx_vols_agree_with_twin(data, n_instr, extra, n_types):
    """Vol states by expiry between the nodes (at, between and beyond them), floored copies
    at the type's floor; types without OKX's shocks keep their states."""
    n_rows = n_instr + extra
    row_instr = np.concatenate([np.arange(n_instr), _ints(data, extra, 0, n_instr - 1)])
    rows = _subset(data, n_rows)
    itype = _ints(data, n_instr, 0, n_types - 1)
    floor = _floats(data, n_types, st.sampled_from([0.0, 0.3, 0.9]))
    years = _floats(data, n_instr, st.sampled_from(
        [0.0, -0.01, 7 / 365, 30 / 365, 45 / 365, 0.5, 2.0, 60.0 / 365.0]))
    okx_vol = [(t, data.draw(node_table()), data.draw(node_table()))
               for t in range(n_types) if data.draw(st.booleans())]
    on, nodes, n_nodes = KO.vol_nodes(n_types, okx_vol)
    sig = _floats(data, len(rows), st.sampled_from([0.0, 0.05, 0.6, 1.8, np.nan]))
    states = _floats(data, 3 * len(rows), st.floats(0, 3)).reshape(3, len(rows))
    args = (rows, row_instr, itype, n_instr, floor, years, on, nodes, n_nodes, sig)
    got, want = states.copy(), states.copy()
    KO.okx_vols(*args, *got)
    oracles.okx_vols(*args, *want)
    np.testing.assert_array_equal(got, want)


def test_okx_vols_match_volshock():
    """The kernel is :func:`pmrisk.kernel.volshock.okx_shocked_vols` row by row."""
    from pmrisk.kernel.volshock import okx_shocked_vols
    nodes = [[0, 0.30, 0.50], [30, 0.25, 0.35], [60, 0.20, 0.25]]
    sig = np.array([0.5, 1.0, 0.2, 0.7])
    years = np.array([0.0, 15 / 365, 30 / 365, 3.0])
    on, tables, n_nodes = KO.vol_nodes(1, [(0, nodes, nodes)])
    up, same, down = np.zeros((3, 4))
    KO.okx_vols(np.arange(4), np.arange(4), np.zeros(4, np.int64), 4, np.zeros(1), years, on,
                tables, n_nodes, sig, up, same, down)
    want = okx_shocked_vols(sig, years * 365.0, 0.0, nodes, nodes)
    _equal((same, up, down), want)


@settings(deadline=None)
@given(data=st.data(), n_pos=st.integers(0, 12), n_groups=st.integers(0, 4),
       n_types=st.integers(0, 3))
def test_group_terms_agree_with_twin(data, n_pos, n_groups, n_types):
    n_instr, n_units = 4, 3
    pos_group = _ints(data, n_pos, -1, n_groups - 1)
    pos_instr = _ints(data, n_pos, 0, n_instr - 1)
    pos_unit = _ints(data, n_pos, 0, n_units - 1)
    kind = _ints(data, n_instr, 0, 3)
    years = _floats(data, n_instr, st.sampled_from([0.0, 0.1, 0.75]))
    utype = _ints(data, n_units, 0, max(n_types - 1, 0)) if n_types else np.zeros(n_units,
                                                                                  np.int64)
    if not n_types:
        pos_group = np.full(n_pos, -1, np.int64)
    annual = _floats(data, n_types, st.sampled_from([0.0, 0.075, 0.3]))
    floor = _floats(data, n_types, st.sampled_from([0.0, 0.01, 0.02]))
    args = (pos_group, pos_instr, pos_unit, kind, years, utype, annual, floor, n_groups)
    got, want = KO.group_terms(*args), oracles.okx_group_terms(*args)
    _equal(got, want)
    _equal([addons.roll_rate(*got)], [addons.roll_rate(*want)])


TIER_EDGES = st.sampled_from([0.0, 7_000.0, 1e4, 16_000.0, 1e6, 5e6])


@st.composite
def tiers(draw):
    edges = sorted(draw(st.sets(TIER_EDGES, min_size=1, max_size=4)))
    last = draw(st.sampled_from([None, np.inf, 2e7]))
    ends = edges[1:] + [last]
    return [(lo, hi, draw(st.sampled_from([1, 2, 0.975, 0.0075, 12]))) for lo, hi in
            zip(edges, ends)]


VALUES = st.one_of(st.sampled_from([0.0, -0.0, 7_000.0, 1e4, 5e6, 3e7, -5.0, np.nan, np.inf]),
                   st.floats(-1e3, 1e8))


@settings(deadline=None)
@given(table=tiers(), values=st.lists(VALUES, min_size=1, max_size=8))
def test_tiered_value_agrees_with_twin_and_tiered(table, values):
    t = addons.tier_table(table)
    got = [addons.tiered_value(v, t, len(t)) for v in values]
    np.testing.assert_array_equal(got, [oracles.tiered_value(v, t, len(t)) for v in values])
    numpy_rows = [(lo, np.inf if hi is None else hi, f) for lo, hi, f in table]
    np.testing.assert_array_equal(got, addons.tiered(np.array(values), numpy_rows))


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(1, 6), n_pos=st.integers(0, 14),
       n_types=st.integers(1, 3), per_pair=st.booleans(), width=st.integers(1, 4))
def test_unit_margins_agree_with_twin(data, n_units, n_pos, n_types, per_pair, width):
    """MR7 tiers, MR9, MMR, IMR, the unit figures and the selected units' contributions;
    units outside the selection and their positions keep what they had."""
    sel = _subset(data, n_units)
    charges = _floats(data, n_units * 10, st.one_of(
        st.floats(0, 1e7), st.sampled_from([0.0, -0.0, np.nan, np.inf]))).reshape(n_units, 10)
    cash_leg = _floats(data, n_units * 3, st.one_of(AMOUNTS, st.floats(-1e8, 1e8))).reshape(
        n_units, 3)
    utype = _ints(data, n_units, 0, n_types - 1)
    mr7_tables, mr7_rows = KO.tier_tables([data.draw(tiers()) for _ in range(n_types)])
    mr9_tiers = [data.draw(tiers()) for _ in range(3)] if per_pair else data.draw(tiers())
    mr9_tables, mr9_rows = KO.mr9_tables(mr9_tiers)
    im_factor = data.draw(st.sampled_from([1.0, 1.3]))
    pos_unit = _ints(data, n_pos, 0, n_units - 1)
    pu_start, pu_order = csr(pos_unit, n_units)
    n_rows = 3
    pos_row = _ints(data, n_pos, 0, n_rows - 1)
    q = _floats(data, n_pos, st.sampled_from([-2.0, 0.5, 1e-9, 3.0]))
    unit_und = _ints(data, n_units, 0, 1)
    loss_weight = _floats(data, 2 * width, st.sampled_from([1.0, 0.5])).reshape(2, width)
    pnl = _floats(data, n_rows * width, st.floats(-1e5, 1e5)).reshape(n_rows, width)
    worst = _floats(data, n_units, st.sampled_from([0.0, -0.0, 1.5, 2e6]))
    binding = _ints(data, n_units, 0, width - 1)
    oo = _floats(data, n_units, st.sampled_from([0.0, 10.0]))
    mmp = _floats(data, n_units, st.sampled_from([0.0, 3.0]))
    inputs = (sel, charges, cash_leg, utype, mr7_tables, mr7_rows, mr9_tables, mr9_rows,
              im_factor, pu_start, pu_order, pos_row, q, unit_und, loss_weight, pnl, worst,
              binding, oo, mmp)
    outputs = [np.full(n_units, -7.0) for _ in range(8)] + \
        [np.full(n_pos, -7.0) for _ in range(3)] + [np.full(n_units, -7.0)]
    got, want = [o.copy() for o in outputs], [o.copy() for o in outputs]
    KO.unit_margins(*inputs, *got)
    with np.errstate(invalid="ignore"):         # inf x 0 legs: no hedge, as in the kernel
        oracles.okx_unit_margins(*inputs, *want)
        public = KO.mr9(cash_leg[sel], mr9_tiers)[0]
    _equal(got, want)
    # MR9 is the public numpy mr9 of the selected units' cash legs, to the bit
    np.testing.assert_array_equal(got[1][sel], public)
    others = np.setdiff1d(np.arange(n_units), sel)
    assert (got[0][others] == -7.0).all()


@settings(deadline=None)
@given(data=st.data(), n_acc=st.integers(1, 5), n_pos=st.integers(0, 14),
       n_bal=st.integers(0, 8), n_assets=st.integers(1, 4), n_snap=st.integers(1, 2))
def test_account_borrowing_agrees_with_twin(data, n_acc, n_pos, n_bal, n_assets, n_snap):
    """Equity per (account, asset) from positions then balances, the liabilities, MR8 and
    the liquidation cost; unselected accounts keep their figures."""
    acc = _subset(data, n_acc)
    pos_account = _ints(data, n_pos, 0, n_acc - 1)
    bal_account = _ints(data, n_bal, 0, n_acc - 1)
    pa_start, pa_order = csr(pos_account, n_acc)
    ba_start, ba_order = csr(bal_account, n_acc)
    pos_asset = _ints(data, n_pos, 0, n_assets - 1)
    bal_asset = _ints(data, n_bal, 0, n_assets - 1)
    value = _floats(data, n_pos, st.one_of(AMOUNTS, st.floats(-1e7, 1e7)))
    amount = _floats(data, n_bal, st.one_of(AMOUNTS, st.floats(-1e7, 1e7)))
    acc_snap = _ints(data, n_acc, 0, n_snap - 1)
    n_cols = data.draw(st.integers(0, 3))
    asset_col = _ints(data, n_assets, -1, n_cols - 1)
    stable = _ints(data, n_assets, 0, 1)
    asset_px = _floats(data, n_snap * n_cols, PRICES).reshape(n_snap, n_cols)
    rates = (0.05, 0.25, data.draw(st.sampled_from([0.0, 0.02])))
    # units ordered by account, each on an underlying that is one of the assets or none (-1)
    unit_account = np.sort(_ints(data, data.draw(st.integers(0, 8)), 0, n_acc - 1))
    ua_start = np.searchsorted(unit_account, np.arange(n_acc + 1)).astype(np.int64)
    unit_asset = _ints(data, len(unit_account), -1, n_assets - 1)
    inputs = (acc, pa_start, pa_order, ba_start, ba_order, pos_asset, bal_asset, value, amount,
              acc_snap, asset_col, stable, asset_px, ua_start, unit_asset, *rates)
    outputs = [_floats(data, n_acc, st.sampled_from([0.0, 12.5, 1e6])) for _ in range(5)] + \
        [np.ones(n_acc)] + [np.full(n_acc, -7.0) for _ in range(4)] + \
        [np.full(len(unit_account), -7.0)]
    got, want = [o.copy() for o in outputs], [o.copy() for o in outputs]
    KO.account_borrowing(*inputs, *got)
    oracles.okx_account_borrowing(*inputs, *want)
    _equal(got, want)
    others = np.setdiff1d(np.arange(n_acc), acc)
    _equal([g[others] for g in got[:-1]], [o[others] for o in outputs[:-1]])
    untouched = ~np.isin(unit_account, acc)
    _equal([got[-1][untouched]], [outputs[-1][untouched]])


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(1, 5), n_pos=st.integers(0, 12),
       n_instr=st.integers(1, 6))
def test_option_values_agree_with_twin(data, n_units, n_pos, n_instr):
    """Black-76 now and one day later, per option instrument held in the selected units.
    To 1e-12 of max(value, forward): the twin's Black-76 (CDF from ``math.erfc``, its own
    order of operations) is not the kernel's arithmetic."""
    sel = _subset(data, n_units)
    pos_unit = _ints(data, n_pos, 0, n_units - 1)
    pu_start, pu_order = csr(pos_unit, n_units)
    pos_instr = _ints(data, n_pos, 0, n_instr - 1)
    kind = _ints(data, n_instr, 0, 3)
    forward = _floats(data, n_instr, st.sampled_from([100.0, 99_500.0, 101_000.0]))
    strike = _floats(data, n_instr, st.sampled_from([90.0, 100.0, 100_000.0, 120_000.0]))
    is_call = _ints(data, n_instr, 0, 1)
    years = _floats(data, n_instr, st.sampled_from([0.0, 1 / 365, 0.5 / 365, 30 / 365, 1.5]))
    sig = _floats(data, n_instr, st.sampled_from([0.05, 0.6, 1.2]))
    rate = data.draw(st.sampled_from([0.0, 0.05]))
    args = (sel, pu_start, pu_order, pos_instr, kind, forward, strike, is_call, years, sig, rate,
            1 / 365)
    got, want = KO.option_values(*args), oracles.okx_option_values(*args)
    held = np.zeros(n_instr, dtype=bool)
    held[pos_instr[np.isin(pos_unit, sel)]] = True
    for g, w in zip(got, want):
        assert (np.abs(g - w) <= 1e-12 * np.maximum(np.abs(w), forward)).all()
        assert (g[~(held & (kind == OPTION))] == 0.0).all()     # other instruments: 0

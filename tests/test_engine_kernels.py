"""The kernels that replaced the last numpy on positions, units and accounts in
``bindings/engine`` against their numpy twins in ``tests/oracles.py`` (the numpy each
replaced): the binance_um bracket inputs, ladders and refusal checks, collateral values, the
excluded instruments' open-order margin and the resource estimate's account groups.  Every
output equal to the bit (NaN, infinities and signed zeros included): the kernels do the same
scalar arithmetic in the same order."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import addons, brackets, span
from pmrisk.kernel import layout as layout_k
from pmrisk.kernel import scenarios as S
from pmrisk.kernel.resources import account_groups

ODD = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e-300, 1e300, np.inf, -np.inf, np.nan])


def same(got, want):
    """Equal arrays, to the bit for floats (NaN equal to NaN, 0.0 unequal to -0.0)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got, want)
    if got.dtype.kind == "f":
        nan = np.isnan(got)
        assert (nan == np.isnan(want)).all(), (got, want)
        assert (got[~nan].view(np.int64) == want[~nan].view(np.int64)).all(), (got, want)
    else:
        assert (got == want).all(), (got, want)


def draws(data):
    def draw(n, el, dtype=float):
        return np.array(data.draw(st.lists(el, min_size=n, max_size=n)), dtype=dtype)
    return draw


def csr(keys, n):
    """(start, order) of a CSR index of ``keys`` (members in row order)."""
    order = np.argsort(keys, kind="stable").astype(np.int64)
    start = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n))]).astype(np.int64)
    return start, order


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 6), n_pos=st.integers(0, 20))
def test_bracket_inputs_and_ladders_agree_with_twin(data, n_instr, n_pos):
    draw = draws(data)
    pos_instr = draw(n_pos, st.integers(0, n_instr - 1), np.int64)
    kind = draw(n_instr, st.integers(0, 3), np.int64)
    settlement = draw(n_instr, st.integers(0, 1), np.int64)
    leverage = draw(n_pos, st.one_of(ODD, st.floats(0, 125)))
    instr_ladder = draw(n_instr, st.integers(-1, 3), np.int64)
    for g, w in zip(brackets.bracket_inputs(pos_instr, kind, settlement, leverage),
                    oracles.bracket_inputs(pos_instr, kind, settlement, leverage)):
        same(g, w)
    for g, w in zip(brackets.position_ladders(pos_instr, instr_ladder),
                    oracles.position_ladders(pos_instr, instr_ladder)):
        same(g, w)


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(1, 5), n_pos=st.integers(0, 20),
       n_rows=st.integers(1, 4))
def test_bracket_checks_agree_with_twin(data, n_units, n_pos, n_rows):
    """Refused positions (sorted: the kernel lists them in unit order) and the selected
    units' risk-matrix margin zeroed, others kept; it fails if flagged units were not the
    only ones searched for a missing bracket, or if the leverage test read another row."""
    draw = draws(data)
    pos_unit = draw(n_pos, st.integers(0, n_units - 1), np.int64)
    start, order = csr(pos_unit, n_units)
    sel = np.array(sorted(data.draw(st.sets(st.integers(0, n_units - 1)))), dtype=np.int64)
    finite = draw(n_units, st.sampled_from([1.0, 0.0]))
    row = draw(n_pos, st.integers(-1, n_rows - 1), np.int64)
    leverage = draw(n_pos, st.sampled_from([0.0, np.nan, 5.0, 20.0, 50.0, 125.0]))
    max_leverage = draw(n_rows, st.sampled_from([10.0, 20.0, 50.0, 125.0]))
    rmm = draw(n_units, st.floats(0, 10))
    got_rmm, want_rmm = rmm.copy(), rmm.copy()
    got = brackets.bracket_checks(sel, start, order, finite, row, leverage, max_leverage,
                                  got_rmm)
    want = oracles.bracket_checks(sel, start, order, finite, row, leverage, max_leverage,
                                  want_rmm)
    for g, w in zip(got, want):
        same(np.sort(g), w)
    same(got_rmm, want_rmm)


TIERS = st.lists(st.tuples(st.sampled_from([1.0, 100.0, 1e6, 7.5]),
                           st.sampled_from([1.0, 0.975, 0.5, 0.0, 0.3])), min_size=1,
                 max_size=4)


def tier_arrays(tiers, last_inf):
    """Contiguous tiers from 0 (widths and rates drawn), the last one open when asked."""
    lo = np.concatenate([[0.0], np.cumsum([w for w, _ in tiers])[:-1]])
    width = np.array([w for w, _ in tiers])
    if last_inf:
        width[-1] = np.inf
    return lo, width, np.array([f for _, f in tiers])


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12), spec=st.integers(0, 2), tiers=TIERS,
       last_inf=st.booleans(), rate=st.sampled_from([0.0, 0.95, 1.0, 0.5]))
def test_collateral_values_agree_with_twin(data, n, spec, tiers, last_inf, rate):
    v = draws(data)(n, st.one_of(ODD, st.floats(-1e7, 1e7), st.sampled_from([0.0, 100.0, 1e6])))
    lo, width, factor = tier_arrays(tiers, last_inf)
    same(addons.collateral_values(v, spec, rate, lo, width, factor),
         oracles.collateral_values(v, spec, rate, lo, width, factor))


@settings(deadline=None)
@given(data=st.data(), n_bal=st.integers(0, 16), n_acc=st.integers(1, 4),
       n_assets=st.integers(1, 4), n_cols=st.integers(0, 3), n_snap=st.integers(1, 2))
def test_collateral_rows_agree_with_twin(data, n_bal, n_acc, n_assets, n_cols, n_snap):
    """Balance rows (several per (account, asset) or one; a drawn selection of them, in any
    order) priced at their account's snapshot, stablecoins at 1 without a price; each
    (account, asset) group whose first row is selected is written, the asset's rule on its
    summed positive amount (one row: on its own value, as before groups); rows outside are
    left as they were.  The groups themselves agree with their twin."""
    draw = draws(data)
    bal_account = draw(n_bal, st.integers(0, n_acc - 1), np.int64)
    acc_snap = draw(n_acc, st.integers(0, n_snap - 1), np.int64)
    amount = draw(n_bal, st.one_of(ODD, st.floats(-1e6, 1e6)))
    code = draw(n_bal, st.integers(0, n_assets - 1), np.int64)
    rows = np.array(data.draw(st.permutations(range(n_bal))), dtype=np.int64)
    rows = rows[:data.draw(st.integers(0, n_bal))]
    ba_start, ba_order = csr(bal_account, n_acc)
    groups = layout_k.balance_groups(ba_start, ba_order, code, n_assets)
    for g, w in zip(groups, oracles.balance_groups(ba_start, ba_order, code, n_assets)):
        same(g, w)
    n_code = n_assets
    col = draw(n_code, st.integers(-1, n_cols - 1), np.int64)
    stable = draw(n_code, st.integers(0, 1), np.int64)
    asset_px = draw(n_snap * n_cols, st.one_of(st.floats(1e-3, 1e5), st.just(np.nan))) \
        .reshape(n_snap, n_cols)
    spec = draw(n_code, st.integers(0, 2), np.int64)
    rate = draw(n_code, st.sampled_from([0.0, 0.9, 1.0]))
    lo, width, factor, start = [], [], [], [0]
    for _ in range(n_code):
        t = tier_arrays(data.draw(TIERS), data.draw(st.booleans()))
        lo.append(t[0])
        width.append(t[1])
        factor.append(t[2])
        start.append(start[-1] + len(t[0]))
    args = (rows, code, *groups, bal_account, acc_snap, amount, col, stable, asset_px, spec,
            rate, np.array(start, dtype=np.int64), np.concatenate(lo), np.concatenate(width),
            np.concatenate(factor))
    got = (np.full(n_bal, -7.0), np.full(n_bal, -7.0))
    want = (np.full(n_bal, -7.0), np.full(n_bal, -7.0))
    addons.collateral_rows(*args, *got)
    oracles.collateral_rows(*args, *want)
    for g, w in zip(got, want):
        same(g, w)
    # one-row groups: each positive row's own value by the asset's rule, to the bit (the
    # figures before several rows per (account, asset) were accepted)
    group, g_start, g_order = groups
    sizes = np.diff(g_start)[group]
    for r in rows.tolist():
        c = code[r]
        if sizes[r] == 1 and got[1][r] > 0:
            one = addons.collateral_values(np.array([got[1][r]]), spec[c], rate[c],
                                           *(a[start[c]:start[c + 1]] for a in (
                                               np.concatenate(lo), np.concatenate(width),
                                               np.concatenate(factor))))
            assert got[0][r] == one[0] or (np.isnan(got[0][r]) and np.isnan(one[0]))


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(1, 4), n_pos=st.integers(0, 12),
       n_ord=st.integers(0, 8), n_instr=st.integers(1, 4), n_acc=st.integers(1, 3))
def test_excluded_order_margin_agrees_with_twin(data, n_units, n_pos, n_ord, n_instr, n_acc):
    """Orders on excluded instruments of the selected units get the increase of the
    standalone SPAN cost of their account's position (found or not; (account, instrument)
    unique over positions), short rows read from the order's row; the others keep theirs."""
    draw = draws(data)
    sc = S.pad([S.span16(0.15, 3.0, 0.33), S.span16(0.2, 2.0, 0.3)])
    width = sc.price_shock.shape[1]
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n_acc - 1),
                                         st.integers(0, n_instr - 1)),
                               min_size=n_pos, max_size=n_pos, unique=True))
    pos_account = np.array([a for a, _ in pairs], dtype=np.int64)
    pos_instr = np.array([i for _, i in pairs], dtype=np.int64)
    quantity = draw(n_pos, st.one_of(st.floats(-10, 10), st.sampled_from([0.0, -0.0])))
    pa_start, pa_order = csr(pos_account, n_acc)
    ord_unit = draw(n_ord, st.integers(0, n_units - 1), np.int64)
    ou_start, ou_order = csr(ord_unit, n_units)
    ord_account = draw(n_ord, st.integers(0, n_acc - 1), np.int64)
    ord_instr = draw(n_ord, st.integers(0, n_instr - 1), np.int64)
    ord_qty = draw(n_ord, st.one_of(st.floats(-10, 10), st.sampled_from([0.0, -0.0])))
    n_rows = n_instr + 2
    ord_row = draw(n_ord, st.integers(0, n_rows - 1), np.int64)
    excluded = draw(n_instr, st.integers(0, 1), np.int64)
    kind = draw(n_instr, st.integers(0, 3), np.int64)
    itype = draw(n_instr, st.integers(0, 1), np.int64)
    som_type = draw(2, st.sampled_from([0.0, 1e-4, 0.01]))
    conv = draw(n_units, st.sampled_from([1.0, 30_000.0]))
    unit_und = draw(n_units, st.integers(0, 1), np.int64)
    unit_px = draw(n_units, st.sampled_from([1.0, 30_000.0]))
    span_pnl = draw(n_rows * width, st.floats(-1.0, 1.0)).reshape(n_rows, width)
    sel = np.array(sorted(data.draw(st.sets(st.integers(0, n_units - 1)))), dtype=np.int64)
    order_im = draw(n_ord, st.floats(0, 100))
    args = (sel, ou_start, ou_order, excluded, ord_account, ord_instr, ord_qty, ord_row,
            pa_start, pa_order, pos_instr, quantity, kind, itype, som_type, conv, unit_und,
            unit_px, span_pnl, sc.n_scen, sc.loss_weight, sc.gain_weight, sc.gain_cap_usd,
            sc.dampener_usd, sc.vol_code)
    got, want = order_im.copy(), order_im.copy()
    span.excluded_order_margin(*args, got)
    oracles.excluded_order_margin(*args, want)
    same(got, want)


@settings(deadline=None)
@given(data=st.data(), n_acc=st.integers(1, 12), n_pos=st.integers(0, 40),
       n_und=st.sampled_from([1, 2, 3, 64, 65, 130]), n_instr=st.integers(1, 8))
def test_account_groups_agree_with_twin(data, n_acc, n_pos, n_und, n_instr):
    """Groups by set of held underlyings (masks of one or more 64-bit words) in the order of
    their first account, with their sizes, most units and largest parameters."""
    draw = draws(data)
    pos_account = draw(n_pos, st.integers(0, n_acc - 1), np.int64)
    pos_instr = draw(n_pos, st.integers(0, n_instr - 1), np.int64)
    und_code = draw(n_instr, st.integers(0, n_und - 1), np.int64)
    quantity = draw(n_pos, st.sampled_from([0.0, -0.0, 1.0, -2.0, np.nan]))
    n_set = 4
    unit_key = np.unique(draw(n_pos, st.integers(0, n_set * n_und * n_acc - 1), np.int64))
    buckets = draw(n_und, st.integers(1, 20), np.int64)
    extreme = draw(n_und, st.sampled_from([1.0, 2.0, 3.5, np.nan]))
    args = (pos_account, pos_instr, und_code, quantity, unit_key, n_set * n_und, n_acc, n_und,
            buckets, extreme)
    for g, w in zip(account_groups(*args), oracles.account_groups(*args)):
        same(g, w)

"""The correlated model's across-units step (:func:`pmrisk.kernel.across.correlated_shares`)
against its numpy twin in ``tests/oracles.py``, on drawn units, cells and joint results, over
random selections of accounts: the selected accounts' units and positions agree to the bit,
the others are not touched."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import across, assemble

SENTINEL = -7.25
CELL = st.one_of(st.floats(-50.0, 50.0), st.sampled_from([0.0, -0.0, np.nan, -np.inf]))


@settings(deadline=None)
@given(data=st.data(), n_acc=st.integers(1, 5), n_units=st.integers(0, 9),
       n_pos=st.integers(0, 25), width=st.integers(0, 6), n_und=st.integers(1, 3))
def test_correlated_shares_agree_with_twin(data, n_acc, n_units, n_pos, width, n_und):
    def draw(n, el):
        return np.array(data.draw(st.lists(el, min_size=n, max_size=n)))
    account = np.sort(draw(n_units, st.integers(0, n_acc - 1)).astype(np.int64))
    ua_start, _ = assemble.csr(account, n_acc)
    n_pos = n_pos if n_units else 0
    pos_unit = draw(n_pos, st.integers(0, max(n_units - 1, 0))).astype(np.int64)
    pu_start, pu_order = assemble.csr(pos_unit, n_units)
    unit_und = draw(n_units, st.integers(0, n_und - 1)).astype(np.int64)
    unit_px = draw(n_units, st.sampled_from([1.0, 0.5, 30_000.0, np.nan])).astype(float)
    weighted = draw(n_units * width, CELL).astype(float).reshape(n_units, width)
    n_scen = draw(n_und, st.integers(0, width)).astype(np.int64)
    per_unit = draw(n_und * width, st.booleans()).astype(np.int64).reshape(n_und, width)
    price_shock = draw(n_und * width, st.floats(-0.5, 0.5)).astype(float).reshape(n_und, width)
    vol_code = draw(n_und * width, st.integers(0, 2)).astype(np.int64).reshape(n_und, width)
    loss_weight = draw(n_und * width, st.sampled_from([1.0, 0.5])).astype(float).reshape(
        n_und, width)
    n_rows = 4
    q_port = draw(n_pos, st.floats(-10, 10)).astype(float)
    pos_row = draw(n_pos, st.integers(0, n_rows - 1)).astype(np.int64)
    instr_pnl = draw(n_rows * width, st.floats(-1, 1)).astype(float).reshape(n_rows, width)
    worst = draw(n_acc, st.one_of(st.floats(0, 1e5), st.just(0.0))).astype(float)
    unit_value = draw(n_units, st.floats(-1e3, 1e3)).astype(float)
    unit_shock = draw(n_units, st.floats(-0.5, 0.5)).astype(float)
    unit_vol = draw(n_units, st.integers(0, 2)).astype(np.int64)
    pos_loss = draw(n_pos, st.floats(-1e3, 1e3)).astype(float)
    acc = np.flatnonzero(draw(n_acc, st.booleans())).astype(np.int64)
    inputs = (acc, ua_start, pu_start, pu_order, unit_und, unit_px, weighted, n_scen, per_unit,
              price_shock, vol_code, loss_weight, q_port, pos_row, instr_pnl, worst, unit_value,
              unit_shock, unit_vol, pos_loss)
    got_out = [np.full(n_units, SENTINEL), np.full(n_units, SENTINEL),
               np.full(n_units, 9, dtype=np.int64), np.full(n_pos, SENTINEL)]
    want_out = [a.copy() for a in got_out]
    serial_out = [a.copy() for a in got_out]
    got = across.correlated_shares(*inputs, *got_out)
    want = oracles.correlated_shares(*inputs, *want_out)
    serial = across.correlated_shares_serial(*inputs, *serial_out)
    for g, w, gs in zip(list(got) + got_out, list(want) + want_out, list(serial) + serial_out):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(gs, w)
        if g.dtype == np.float64:
            assert (np.signbit(g) == np.signbit(w)).all()
            assert (np.signbit(gs) == np.signbit(w)).all()
    chosen = np.isin(account, acc)
    assert (got_out[0][~chosen] == SENTINEL).all()      # other accounts' units untouched

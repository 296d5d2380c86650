"""The excluded instruments' standalone margins (:func:`pmrisk.kernel.span.excluded_margins`)
against their numpy twin in ``tests/oracles.py`` on drawn positions, SPAN revaluations and
orders: every output equal to the bit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import scenarios as S
from pmrisk.kernel import span


@settings(deadline=None)
@given(data=st.data(), n_units=st.integers(1, 4), n_pos=st.integers(0, 20),
       n_ord=st.integers(0, 6), n_rows=st.integers(1, 6))
def test_excluded_margins_agree_with_twin(data, n_units, n_pos, n_ord, n_rows):
    def draw(n, el, dtype=float):
        return np.array(data.draw(st.lists(el, min_size=n, max_size=n)), dtype=dtype)
    sc = S.pad([S.span16(0.15, 3.0, 0.33), S.span16(0.2, 2.0, 0.3)])
    width = sc.price_shock.shape[1]
    pos_unit = draw(n_pos, st.integers(0, n_units - 1), np.int64)
    pos_row = draw(n_pos, st.integers(0, n_rows - 1), np.int64)
    excluded = draw(n_pos, st.booleans(), np.int64)
    quantity = draw(n_pos, st.floats(-10, 10))
    short_all = np.where(quantity < 0, -quantity, 0.0) * draw(n_pos, st.sampled_from([0, 1]))
    som_rate = draw(n_pos, st.sampled_from([0.0, 1e-4, 0.01]))
    conv = draw(n_units, st.sampled_from([1.0, 30_000.0]))
    unit_und = draw(n_units, st.integers(0, 1), np.int64)
    unit_px = draw(n_units, st.sampled_from([1.0, 30_000.0]))
    span_pnl = draw(n_rows * width, st.floats(-1.0, 1.0)).reshape(n_rows, width)
    ord_unit = draw(n_ord, st.integers(0, n_units - 1), np.int64)
    order_im = draw(n_ord, st.floats(0, 100))
    res_oo = draw(n_units, st.floats(0, 10))
    args = (pos_unit, pos_row, excluded, quantity, short_all, som_rate, conv, unit_und, unit_px,
            span_pnl, sc.n_scen, sc.loss_weight, sc.gain_weight, sc.gain_cap_usd,
            sc.dampener_usd, sc.vol_code, ord_unit, order_im, res_oo)
    got = (np.full(n_pos, -7.0), np.full(n_units, -7.0), np.full(n_units, -7.0))
    span.excluded_margins(*args, *got)
    for g, w in zip(got, oracles.excluded_margins(*args)):
        np.testing.assert_array_equal(g, w)
    assert (got[0][excluded == 0] == 0.0).all()

"""The Monitor's per-account step (:func:`pmrisk.kernel.alerts.account_alerts`: margin ratios,
changed figures, alert crossings with hysteresis) against its numpy twin in
``tests/oracles.py``, on drawn figures, alert states and selections of accounts: outputs and
in-place updates agree to the bit, accounts outside the selection are not touched."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from pmrisk.kernel.alerts import account_alerts

LEVELS = np.array([1.1, 1.05, 1.01, 1.0, 0.75])
VALUE = st.one_of(st.floats(-3.0, 3.0), st.sampled_from(
    [0.0, -0.0, 1.0, 1.1, 1.05, 0.75, 0.7499999999999999, np.nan, np.inf, -np.inf]))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 12), h=st.sampled_from([0.0, 0.01, 0.3]),
       n_fig=st.integers(1, 6))
def test_account_alerts_agree_with_twin(data, n, h, n_fig):
    def draw(el, size):
        return np.array(data.draw(st.lists(el, min_size=size, max_size=size)), dtype=float)
    equity = draw(VALUE, n)
    mm = draw(VALUE, n)
    liq = draw(st.sampled_from([0.0, 0.0, 0.5, np.nan]), n)
    figures = tuple(draw(VALUE, n) for _ in range(n_fig))
    # last reported figures: often the same values, so that "unchanged" is drawn too
    fig = np.array([np.where(draw(st.booleans(), n).astype(bool), f, draw(VALUE, n))
                    for f in figures]).reshape(n_fig, n)
    ratio = draw(VALUE, n)
    below = draw(st.booleans(), n * len(LEVELS)).astype(bool).reshape(n, len(LEVELS))
    armed = draw(st.booleans(), n * len(LEVELS)).astype(bool).reshape(n, len(LEVELS))
    acc = np.flatnonzero(draw(st.booleans(), n).astype(bool)).astype(np.int64)
    states = [(fig.copy(), ratio.copy(), below.copy(), armed.copy()) for _ in range(2)]
    got = account_alerts(acc, equity, mm, liq, figures, *states[0], LEVELS, h)
    want = oracles.account_alerts(acc, equity, mm, liq, figures, *states[1], LEVELS, h)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    for g, w in zip(states[0], states[1]):      # in-place updates, the rest untouched
        np.testing.assert_array_equal(g, w)
    # the ratios agree to the bit, signed zeros included
    assert got[0].tobytes() == want[0].tobytes()
    assert states[0][1].tobytes() == states[1][1].tobytes()


def test_account_alerts_order_and_hysteresis():
    """A fall through every level gives one row per level, highest first; a rise back
    within the hysteresis of an alerted level gives none, beyond it one per level, lowest
    first."""
    acc = np.array([0], dtype=np.int64)
    below = np.zeros((1, 5), dtype=bool)
    armed = np.zeros((1, 5), dtype=bool)
    fig, ratio = np.zeros((1, 1)), np.zeros(1)

    def step(eq):
        return account_alerts(acc, np.array([eq]), np.array([1.0]), np.zeros(1),
                              (np.array([eq]),), fig, ratio, below, armed, LEVELS, 0.02)
    after, changed, rows, kinds, crossed = step(0.7)
    assert after.tolist() == [0.7] and changed.tolist() == [True]
    assert rows.tolist() == [0] * 5 and kinds.tolist() == [0, 1, 2, 3, 4]
    assert crossed.tolist() == [0, 1, 2, 3, 4]
    assert len(step(0.76)[2]) == 0                  # within 0.02 of 0.75: no rise yet
    _, changed, rows, kinds, crossed = step(1.2)
    assert kinds.tolist() == [5] * 5 and crossed.tolist() == [4, 3, 2, 1, 0]
    assert len(step(1.2)[2]) == 0 and not step(1.2)[1].any()


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 10))
def test_alert_batch_few_rows_as_many(data, n):
    """``AlertRules.batch`` builds a tick's few alerts from Python lists and many from arrays:
    the same record batch either way (statuses at, above and below each level, NaN before:
    a new account, null ratio and status)."""
    from pmrisk.monitor import alerts
    rules = alerts.AlertRules({"warning": [1.1, 1.05, 1.01], "margin_call": 1.0,
                               "liquidation": 0.75})

    def draw(el):
        return np.array(data.draw(st.lists(el, min_size=n, max_size=n)), dtype=float)
    before, after = draw(VALUE), draw(VALUE)
    kinds = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)),
                     dtype=np.int64)
    names = [f"a{k}" for k in range(n)]
    args = (names, 1_700_000_000 * 10**9, kinds, LEVELS[np.minimum(kinds, 4)], before, after)
    few = rules.batch(*args)
    few_max, alerts.FEW = alerts.FEW, -1          # every batch through the arrays' path
    try:
        many = rules.batch(*args)
    finally:
        alerts.FEW = few_max
    assert few.schema == many.schema
    # as text: NaN equals NaN there, and -0.0 differs from 0.0
    assert repr(few.to_pylist()) == repr(many.to_pylist())
    assert few.column("status_before").null_count == int(np.isnan(before).sum())

"""kernel/rowkeys.py against its numpy twins in tests/oracles.py (the formulas the bindings
used), and the bindings that call it against those formulas."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from twins import assert_same as _same, int_array as _ints
from pmrisk.kernel import rowkeys as RK


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 30))
def test_settlement_combos_agree_with_twin(data, n):
    und = _ints(data, n, 0, 9)
    settlement = _ints(data, n, 0, 1)
    _same(RK.settlement_combos(und, settlement), oracles.settlement_combos(und, settlement))


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 8), n_types=st.integers(1, 5),
       n_p=st.integers(0, 20), n_o=st.integers(0, 6), n_r=st.integers(0, 6))
def test_unit_keys_agree_with_twin(data, n_instr, n_types, n_p, n_o, n_r):
    instr_type = _ints(data, n_instr, 0, n_types - 1)
    args = (n_types, instr_type, _ints(data, n_p, 0, 50), _ints(data, n_p, 0, n_instr - 1),
            _ints(data, n_o, 0, 50), _ints(data, n_o, 0, n_instr - 1),
            _ints(data, n_r, 0, 50), _ints(data, n_r, 0, n_types - 1))
    _same(RK.unit_keys(*args), oracles.unit_keys(*args))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 30), n_types=st.integers(1, 7))
def test_split_pairs_agree_with_twin(data, n, n_types):
    pair = _ints(data, n, 0, 2**40)
    _same(RK.split_pairs(pair, n_types), oracles.split_pairs(pair, n_types))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 30), n_und=st.integers(1, 6))
def test_settlement_types_agree_with_twin(data, n, n_und):
    und = _ints(data, n, 0, n_und - 1)
    settlement = _ints(data, n, 0, 1)
    _same(RK.settlement_types(und, settlement), oracles.settlement_types(und, settlement))


@settings(deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 8), n_types=st.integers(1, 5),
       n_p=st.integers(0, 20), n_o=st.integers(0, 6), n_r=st.integers(0, 6),
       accounts=st.sampled_from([50, 10**5, 10**9]))
def test_unit_pairs_agree_with_twin(data, n_instr, n_types, n_p, n_o, n_r, accounts):
    # accounts up to 10**9: keys too sparse for the table, both give up
    instr_type = _ints(data, n_instr, 0, n_types - 1)
    args = (n_types, instr_type, _ints(data, n_p, 0, accounts),
            _ints(data, n_p, 0, n_instr - 1), _ints(data, n_o, 0, accounts),
            _ints(data, n_o, 0, n_instr - 1), _ints(data, n_r, 0, accounts),
            _ints(data, n_r, 0, n_types - 1))
    _same(RK.unit_pairs(*args), oracles.unit_pairs(*args))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 200), sort=st.booleans(),
       scale=st.sampled_from([1, 86_400 * 10**9, -(2**62)]))
def test_time_runs_agree_with_twin(data, n, sort, scale):
    ns = _ints(data, n, -3, 3) * (scale // 4 if abs(scale) > 4 else scale)
    if sort:
        ns = np.sort(ns)
    _same(RK.time_runs(ns), oracles.time_runs(ns))

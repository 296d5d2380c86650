"""instrument_pnl prices an option in passes (erfc arguments by vol state, the erfc calls, the
values) when every sigma*sqrt(T) of its row is normal, cell by cell otherwise: both to the bit
what Black-76's scalar definition gives cell by cell (``option_constants`` and
``undiscounted_price`` per cell, the form the kernel had before the passes), on every kind of
cell (vol up, same, down, vol factors) and on the rows off the formula branch (sigma*sqrt(T)
0, tiny, at the ``MIN_STDDEV`` edge, infinite or NaN, in a vol state or through a vol
factor)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pmrisk import kernel as K
from pmrisk.kernel import scenarios as S
from pmrisk.kernel._config import njit
from pmrisk.kernel.black76 import option_constants, undiscounted_price
from pmrisk.kernel.instruments import INVERSE, OPTION
from pmrisk.kernel.revalue import BLOCKS
from pmrisk.kernel.scenarios import VOL_DOWN, VOL_SAME, VOL_UP
from test_kernels import pnl_args, random_instruments

ODD = [0.0, 1e-13, 1e-12, float(np.nextafter(1e-12, 0.0)), np.inf, np.nan]


@njit
def cell_by_cell(kind, settlement, contract_size, mark, forward, strike, is_call, t_now,
                 t_scen, sig_mark, sig_up, sig_same, sig_down, und, rate, n_scen, price_shock,
                 log1p_shock, vol_code, vol_factor, pnl_scale):
    """The definition: every cell through ``undiscounted_price`` on its own."""
    out = np.zeros((kind.shape[0], price_shock.shape[1]))
    for i in range(kind.shape[0]):
        u = und[i]
        c = contract_size[i]
        inverse = settlement[i] == INVERSE
        if kind[i] != OPTION:
            for s in range(n_scen[u]):
                if inverse:
                    out[i, s] = (c / mark[i]) * (1.0 - 1.0 / (1.0 + price_shock[u, s])) * \
                        pnl_scale[u, s]
                else:
                    out[i, s] = (c * mark[i]) * price_shock[u, s] * pnl_scale[u, s]
            continue
        F, Kk, call = forward[i], strike[i], is_call[i] == 1
        base0, ln_fk, disc, sd_up, sd_same, sd_down = option_constants(
            F, Kk, t_now[i], sig_mark[i], t_scen[i], sig_up[i], sig_same[i], sig_down[i], rate,
            call, inverse)
        for s in range(n_scen[u]):
            code = vol_code[u, s]
            sd = sd_up if code == VOL_UP else (sd_same if code == VOL_SAME else (
                sd_down if code == VOL_DOWN else sd_same * vol_factor[u, s]))
            fs = F * (1.0 + price_shock[u, s])
            v = disc * undiscounted_price(fs, Kk, ln_fk + log1p_shock[u, s], sd, call)
            if inverse:
                v /= fs
            out[i, s] = c * (v - base0) * pnl_scale[u, s]
    return out


def custom_set(rng, factor):
    """A caller's table mixing every vol code, vol factors normal and one ``factor``."""
    n = 9
    return S.custom(price_shock=rng.uniform(-0.6, 1.5, n),
                    vol_code=np.array([3, 0, 1, 3, 2, 3, 1, 0, 3]),
                    vol_factor=np.array([1.5, 1.0, 1.0, 0.5, 1.0, factor, 1.0, 1.0, 2.0]),
                    loss_weight=np.ones(n), gain_weight=np.ones(n),
                    table=np.zeros(n, dtype=np.int64))


def bits(a):
    return np.ascontiguousarray(a).view(np.int64)


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 3 * BLOCKS),
       odd=st.sampled_from(ODD), where=st.sampled_from(["sig_up", "sig_same", "sig_down",
                                                        "vol_factor", "none"]),
       rate=st.sampled_from([0.0, 0.05]))
def test_passes_are_the_cell_by_cell_bits(seed, n_instr, odd, where, rate):
    rng = np.random.default_rng(seed)
    factor = odd if where == "vol_factor" else 1.25
    scen = S.pad([S.concat(S.grid(0.16, 4), S.extended(0.16, 1.0, 1e5)), custom_set(rng, factor),
                  S.span16(0.1, 3.0, 0.33)])
    instr = random_instruments(rng, n_instr, 3, rate)
    if where.startswith("sig"):             # some rows off the formula branch in one state
        t = np.maximum(instr["t_scen"], 1e-6)
        hit = rng.random(n_instr) < 0.3
        instr[where] = np.where(hit, odd / np.sqrt(t), instr[where])
    args = pnl_args(instr, scen)
    got, want = K.instrument_pnl(*args), cell_by_cell(*args)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(bits(got)[~np.isnan(got)], bits(want)[~np.isnan(want)])

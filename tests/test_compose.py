"""The scalar kernels compose inside a user's own @njit code (numba-stats' check)."""

import math

import numba as nb
import numpy as np

from pmrisk.kernel import black76_greeks, black76_price


@nb.njit
def _straddle(F, K, T, sigma):
    call = black76_price(F, K, T, sigma, True, 0.0)
    put = black76_price(F, K, T, sigma, False, 0.0)
    _, dc, _, vc, _ = black76_greeks(F, K, T, sigma, True, 0.0)
    _, dp, _, vp, _ = black76_greeks(F, K, T, sigma, False, 0.0)
    return call + put, dc + dp, vc + vp


def test_black76_inside_user_njit():
    value, delta, vega = _straddle(100.0, 100.0, 0.25, 0.5)
    sd = 0.5 * math.sqrt(0.25)
    # ATM undiscounted straddle = 2*F*(2N(sd/2) - 1); delta = 2N(d1) - 1 with d1 = sd/2
    n = 0.5 * math.erfc(-(sd / 2) / math.sqrt(2))
    np.testing.assert_allclose(value, 2 * 100 * (2 * n - 1), rtol=1e-14)
    np.testing.assert_allclose(delta, 2 * n - 1, rtol=1e-12)
    assert vega > 0

"""Baselines measured in the same run as the kernels.

* ``minimal_option_kernel``: the throughput ceiling — a hand-written numba loop that only
  revalues options (Black-76 with per-position constants hoisted) and sums into one vector;
  no futures, no weighting, no bookkeeping.  One thread.
* ``minimal_option_kernel_parallel``: the same loop over numba's threads (``prange`` over
  scenarios, the per-position constants hoisted into arrays first), the ceiling for kernels
  that use ``parallel=True``; the faster of the two is the reference.
* ``numpy_vectorised_pnl``: what a careful numpy user would write (scipy's ``ndtr``, the whole
  options x scenarios matrix at once).
* ``quantlib_loop``: QuantLib ``blackFormula`` in a Python loop, the pricing peer.
"""

import math

import numba as nb
import numpy as np


@nb.njit(inline="always")
def _black76(fs, k, d1, d2, call):
    """Undiscounted Black-76 price from d1, d2 (both minimal loops)."""
    if call:
        return fs * 0.5 * math.erfc(-d1 / math.sqrt(2.0)) - k * 0.5 * math.erfc(
            -d2 / math.sqrt(2.0))
    return k * 0.5 * math.erfc(d2 / math.sqrt(2.0)) - fs * 0.5 * math.erfc(d1 / math.sqrt(2.0))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def minimal_option_kernel(F, K, T, sig_up, sig_same, sig_down, qty, is_call, shock, vol_code):
    n_scen = shock.shape[0]
    out = np.zeros(n_scen)
    for i in range(F.shape[0]):
        sqrt_t = math.sqrt(T[i])
        sds = (sig_up[i] * sqrt_t, sig_same[i] * sqrt_t, sig_down[i] * sqrt_t)
        ln_fk = math.log(F[i] / K[i])
        for s in range(n_scen):
            sd = sds[vol_code[s]]
            fs = F[i] * (1.0 + shock[s])
            d1 = (ln_fk + math.log1p(shock[s])) / sd + 0.5 * sd
            d2 = d1 - sd
            out[s] += qty[i] * _black76(fs, K[i], d1, d2, is_call[i]) / fs
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def minimal_option_kernel_parallel(F, K, T, sig_up, sig_same, sig_down, qty, is_call, shock,
                                   vol_code):
    n_opt = F.shape[0]
    n_scen = shock.shape[0]
    sds = np.empty((3, n_opt))
    ln_fk = np.empty(n_opt)
    for i in range(n_opt):
        sqrt_t = math.sqrt(T[i])
        sds[0, i] = sig_up[i] * sqrt_t
        sds[1, i] = sig_same[i] * sqrt_t
        sds[2, i] = sig_down[i] * sqrt_t
        ln_fk[i] = math.log(F[i] / K[i])
    out = np.zeros(n_scen)
    for s in nb.prange(n_scen):
        ln_s = math.log1p(shock[s])
        sd_row = sds[vol_code[s]]
        acc = 0.0
        for i in range(n_opt):
            sd = sd_row[i]
            fs = F[i] * (1.0 + shock[s])
            d1 = (ln_fk[i] + ln_s) / sd + 0.5 * sd
            d2 = d1 - sd
            acc += qty[i] * _black76(fs, K[i], d1, d2, is_call[i]) / fs
        out[s] = acc
    return out


def numpy_vectorised_pnl(F, K, T, sig_up, sig_same, sig_down, qty, is_call, shock, vol_code):
    from scipy.special import ndtr
    sig = np.stack([sig_up, sig_same, sig_down])[vol_code].T          # (n, S)
    fs = F[:, None] * (1.0 + shock[None, :])
    sd = sig * np.sqrt(T)[:, None]
    d1 = np.log(fs / K[:, None]) / sd + 0.5 * sd
    d2 = d1 - sd
    call = fs * ndtr(d1) - K[:, None] * ndtr(d2)
    put = K[:, None] * ndtr(-d2) - fs * ndtr(-d1)
    v = np.where(is_call[:, None] == 1, call, put) / fs
    return qty @ v


def quantlib_loop(F, K, T, sig, is_call):
    import QuantLib as ql
    out = 0.0
    call, put = ql.Option.Call, ql.Option.Put
    for f, k, t, s, c in zip(F.tolist(), K.tolist(), T.tolist(), sig.tolist(),
                             is_call.tolist()):
        out += ql.blackFormula(call if c else put, k, f, s * math.sqrt(t), 1.0)
    return out

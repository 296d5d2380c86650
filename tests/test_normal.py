"""``pmrisk.kernel.normal.erfc`` against ``math.erfc``: accuracy per range, edge values, the
Black-76 prices it gives, that its constants are the generator's, and that a loop of it
vectorises.

Errors are measured on dense grids of each range plus hypothesis draws.  Relative error is
bounded where ``erfc`` is a normal float (``|x| <= 26.5``); below that (subnormal results,
``z`` up to 27.3) only the absolute error is (under 64 subnormal units).
"""

import math
import platform
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracles
from pmrisk.kernel import black76, normal
from pmrisk.kernel._config import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_normal  # noqa: E402

# (low, high, max relative error, max absolute error) of erfc(x) for x in [low, high]
RANGES = [
    (-28.0, -6.0, 0.0, 0.0),            # 2 - erfc(6) rounds to 2: exact
    (-6.0, -1.0, 2.3e-16, 2.3e-16),
    (-1.0, 0.0, 4.5e-16, 4.5e-16),
    (0.0, 0.5, 6.7e-16, 4.5e-16),
    (0.5, 2.0, 6.7e-16, 2.8e-16),
    (2.0, 6.0, 6.7e-16, 3e-18),
    (6.0, 15.0, 6.7e-16, 1.3e-32),
    (15.0, 26.5, 1.2e-15, 1e-114),
]


@njit(cache=False)          # the house options (error_model="numpy": no division check)
def _erfc_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = normal.erfc(x[i])


def erfc(x):
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _erfc_loop(x, out)
    return out


def reference(x):
    return np.array([math.erfc(v) for v in np.asarray(x, dtype=np.float64)])


def errors(lo, hi, n=100_001):
    """(max relative, max absolute) error of erfc on ``n`` even points and ``n`` random
    points of ``[lo, hi]``."""
    rng = np.random.default_rng(20261207)
    x = np.concatenate([np.linspace(lo, hi, n), rng.uniform(lo, hi, n)])
    got, want = erfc(x), reference(x)
    return float(np.max(np.abs(got / want - 1.0))), float(np.max(np.abs(got - want)))


@pytest.mark.parametrize("lo,hi,rel,abs_", RANGES)
def test_accuracy_per_range(lo, hi, rel, abs_):
    worst_rel, worst_abs = errors(lo, hi)
    assert worst_rel <= rel and worst_abs <= abs_, (worst_rel, worst_abs)


def test_subnormal_results_are_close_in_absolute_terms():
    x = np.linspace(26.5, 27.5, 20_001)
    assert np.max(np.abs(erfc(x) - reference(x))) <= 64 * 5e-324


@pytest.mark.parametrize("x,want", [(0.0, 1.0), (-0.0, 1.0), (math.inf, 0.0),
                                    (-math.inf, 2.0), (1e300, 0.0), (-1e300, 2.0),
                                    (28.0, 0.0), (5e-324, 1.0)])
def test_edge_values_are_exact(x, want):
    assert erfc([x])[0] == want


def test_nan_stays_nan():
    assert np.isnan(erfc([math.nan])[0])


def test_reflection_is_exact():
    """``erfc(-x) = 2 - erfc(x)``, bit for bit (the kernel computes it that way)."""
    x = np.linspace(0.0, 30.0, 100_001)
    assert np.array_equal(erfc(-x), 2.0 - erfc(x))


def test_monotone():
    x = np.linspace(-7.0, 27.5, 400_001)
    assert np.all(np.diff(erfc(x)) <= 0.0)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float(x):
    got, want = erfc([x])[0], math.erfc(x)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert abs(got - want) <= 1.2e-15 * want + 64 * 5e-324


# -- Black-76 with it ----------------------------------------------------------------------

contracts = st.tuples(st.floats(1.0, 1e6), st.floats(-3.0, 3.0), st.floats(1.0 / 365.0, 5.0),
                      st.floats(0.01, 3.0), st.booleans(), st.sampled_from([0.0, 0.05]))


@given(contracts)
def test_black76_price_within_1e_13_of_the_price_scale(contract):
    """Against the oracle's Black-76 (``math.erfc``): the price scale is ``max(F, K)``."""
    F, u, T, sigma, call, rate = contract
    K = F * math.exp(u)
    got = black76.black76_price(F, K, T, sigma, call, rate)
    want = float(oracles.black76_price(F, K, T, sigma, call, rate))
    assert abs(got - want) <= 1e-13 * max(F, K)


def test_norm_cdf_is_ncdf():
    """The function and its inlined form give the same bits."""
    x = np.linspace(-40.0, 40.0, 10_001)
    inline = np.array([black76.norm_cdf(v) for v in x])
    assert np.array_equal(inline, 0.5 * erfc(-x / black76.SQRT2))


# -- where the constants come from ---------------------------------------------------------

def test_constants_are_the_generators():
    """``kernel/normal.py``'s generated block is ``tests/gen_normal.py``'s output (values to
    a few units in the last place: the least-squares solve may round differently on another
    BLAS; on the machine that wrote it, the same bits)."""
    want = gen_normal.constants()
    for name, value in want.items():
        got = getattr(normal, name)
        if isinstance(value, tuple):
            assert len(got) == len(value), name
            np.testing.assert_array_max_ulp(np.array(got), np.array(value), maxulp=4)
        else:
            assert got == value, name
    assert normal.Q is normal.ERFCX and normal.E is normal.EXP


# -- vectorised -----------------------------------------------------------------------------

def _has_avx2():
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not _has_avx2(),
                    reason="checks x86 AVX2 code")
def test_a_loop_of_it_vectorises():
    """The point of the module: LLVM runs the loop 4 (ymm) or 8 (zmm) lanes at a time."""
    _erfc_loop(np.zeros(8), np.empty(8))
    asm = _erfc_loop.inspect_asm(_erfc_loop.signatures[0])
    assert re.search(r"vfmadd\w*pd\s[^\n]*%[yz]mm", asm)

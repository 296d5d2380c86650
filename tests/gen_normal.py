"""Generator of :mod:`pmrisk.kernel.normal`'s constants (run it, paste its output there).

``python tests/gen_normal.py`` prints the constants block; ``tests/test_normal.py`` checks that
the module's constants are this script's output, so the numbers in the kernel have one
documented origin.  Everything is derived here from definitions, in ``decimal`` arithmetic
of 60 digits (standard library only, plus numpy's exact power-series bookkeeping):

* ``ERFCX``: ``y(t) = (1 + 2z) erfcx(z)`` with ``z = K (1 + t) / (1 - t)`` and ``erfcx(z) =
  exp(z*z) erfc(z)``, bounded and smooth in ``t`` (``y -> 2/sqrt(pi)`` as ``z -> inf``), on
  ``z`` in ``[0, Z_MAX]``, i.e. ``t`` in ``[-1, T_MAX]``, written ``y = 1 + (1 + t) q(t)``
  (so ``erfc(0) = 1`` exactly, and no cancellation near ``z = 0``).  ``q`` is interpolated
  at ``N_NODES`` Chebyshev nodes of that interval (``y`` there from the Taylor series of
  ``erf`` for ``z <= 3``, the continued fraction of ``erfcx`` above; the two agree to 1e-50
  at ``z = 3``), truncated to degree ``DEGREE - 1`` and rewritten as a power series in
  ``t`` (Horner in the kernel; the power coefficients' absolute sum is under 2, so nothing
  cancels).  ``K = 3.75`` and ``DEGREE = 20``: the smallest degree whose truncation error
  is under the double rounding of ``y``, over ``K`` in 3 .. 4.5.
* ``EXP``: ``1/n!``, n = 0 .. 13, the Taylor series of ``exp`` on ``|r| <= ln(2)/2 + 1e-4``
  (truncation under 1e-17 relative).
* ``LN2_HI``, ``LN2_LO``: ``ln 2`` split into a multiple of ``2**-43`` and the rest, so
  ``n * LN2_HI`` is exact for ``|n| < 2**11``; ``LOG2E = 1/ln 2``.

Deterministic: fixed nodes, exact decimal sums rounded once to double, ``math.fsum`` for the
Chebyshev coefficients (angles reduced in integers).
"""

import math
from decimal import Decimal, localcontext

import numpy as np
from numpy.polynomial import chebyshev, polynomial

K = 3.75
Z_MAX = 28.0            # erfc(z) underflows to 0 from z = 27.3 on; the kernel clamps here
T_MAX = (Z_MAX - K) / (Z_MAX + K)
DEGREE = 22
N_NODES = 1024
EXP_DEGREE = 13
DIGITS = 60


def _atan_inv(n):
    """``atan(1/n)`` by its Taylor series."""
    x = Decimal(1) / n
    term, total, k = x, x, 1
    while True:
        term *= -x * x
        k += 2
        if abs(term / k) < Decimal(10) ** -(DIGITS + 5):
            return total
        total += term / k


def _sqrt_pi():
    return (16 * _atan_inv(5) - 4 * _atan_inv(239)).sqrt()        # Machin's formula


def y_exact(z, sqrt_pi):
    """``(1 + 2z) erfcx(z)`` of a Decimal ``z >= 0`` to about 50 digits."""
    if z <= 3:      # erf(z) = 2/sqrt(pi) sum (-1)^n z^(2n+1) / (n! (2n+1))
        term, total, n = z, z, 0
        while True:
            n += 1
            term = -term * z * z / n
            total += term / (2 * n + 1)
            if abs(term) < Decimal(10) ** -(DIGITS + 5):
                break
        return (1 + 2 * z) * (z * z).exp() * (1 - 2 * total / sqrt_pi)
    # erfcx(z) = (1/sqrt(pi)) / (z + (1/2) / (z + (2/2) / (z + (3/2) / (z + ...))))
    f = z
    for k in range(600, 0, -1):
        f = z + Decimal(k) / 2 / f
    return (1 + 2 * z) / (sqrt_pi * f)


def _cos_node(m, j):
    """``T_m`` at node ``j``: ``cos(m (j + 1/2) pi / N_NODES)``, the angle reduced in integers
    first (``m * theta_j`` in floating point would carry ``m`` times ``theta_j``'s rounding)."""
    k = (m * (2 * j + 1)) % (4 * N_NODES)
    return math.cos(math.pi * k / (2 * N_NODES))


def erfcx_coefficients():
    """Power coefficients ``q[0..DEGREE - 1]`` of ``q(t) = (y(t) - 1) / (1 + t)``, lowest
    first."""
    theta = [math.pi * (j + 0.5) / N_NODES for j in range(N_NODES)]
    with localcontext() as ctx:
        ctx.prec = DIGITS
        sqrt_pi = _sqrt_pi()
        g = []
        for a in theta:
            u = Decimal(math.cos(a))                            # node on [-1, 1]
            t = (u + 1) * ((Decimal(T_MAX) + 1) / 2) - 1        # on [-1, T_MAX]
            z = Decimal(K) * (1 + t) / (1 - t)
            g.append(float((y_exact(z, sqrt_pi) - 1) / (1 + t)))
    cheb = [2.0 / N_NODES * math.fsum(g[j] * _cos_node(m, j) for j in range(N_NODES))
            for m in range(DEGREE)]
    cheb[0] /= 2.0
    in_u = chebyshev.cheb2poly(np.array(cheb))                  # power series in u
    # u = (2 t + 1 - T_MAX) / (T_MAX + 1): substitute, lowest power first
    lin = np.array([(1.0 - T_MAX) / (T_MAX + 1.0), 2.0 / (T_MAX + 1.0)])
    out = np.zeros(1)
    power = np.ones(1)
    for a in in_u:
        out = polynomial.polyadd(out, a * power)
        power = polynomial.polymul(power, lin)
    return tuple(float(a) for a in out)


def exp_coefficients():
    return tuple(1.0 / math.factorial(n) for n in range(EXP_DEGREE + 1))


def ln2_split():
    """``(LN2_HI, LN2_LO, LOG2E)``."""
    with localcontext() as ctx:
        ctx.prec = DIGITS
        ln2 = Decimal(2).ln()
        hi = Decimal(int((ln2 * 2 ** 43).to_integral_value())) / Decimal(2 ** 43)
        return float(hi), float(ln2 - hi), float(1 / ln2)


def constants():
    """Name -> value of every generated constant."""
    hi, lo, log2e = ln2_split()
    return {"K": K, "Z_MAX": Z_MAX, "ERFCX": erfcx_coefficients(), "EXP": exp_coefficients(),
            "LN2_HI": hi, "LN2_LO": lo, "LOG2E": log2e}


def block():
    """The constants as Python source (the block between the generator markers)."""
    lines = []
    for name, value in constants().items():
        if isinstance(value, tuple):
            lines.append(f"{name} = (")
            lines.extend(f"    {v!r}," for v in value)
            lines.append(")")
        else:
            lines.append(f"{name} = {value!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(block())

"""Correlation matrices of underlyings: checks, Higham's nearest correlation matrix
and the symmetric square root.  Plain numpy on d x d matrices (d = number of underlyings),
built once per call, never in a hot loop.
"""

import numpy as np

PSD_TOL = 1e-10     # smallest eigenvalue allowed (>= -1e-10)


def min_eigenvalue(rho):
    """Smallest eigenvalue of a symmetric matrix and its eigenvector."""
    w, v = np.linalg.eigh(rho)
    return float(w[0]), v[:, 0]


def psd_sqrt(rho):
    """Symmetric square root ``S`` with ``S @ S = rho`` (negative rounding eigenvalues clipped).

    >>> import numpy as np
    >>> from pmrisk.kernel.correlation import psd_sqrt
    >>> s = psd_sqrt(np.array([[1.0, 0.6], [0.6, 1.0]]))
    >>> np.allclose(s @ s, [[1.0, 0.6], [0.6, 1.0]]), np.allclose(s, s.T)
    (True, True)
    """
    w, v = np.linalg.eigh(rho)
    s = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
    return 0.5 * (s + s.T)


def nearest_correlation(a, tol=1e-13, max_iter=10_000):
    """Higham (2002): the nearest correlation matrix to symmetric ``a`` in the Frobenius norm,
    by alternating projections with Dykstra's correction onto the PSD cone and the unit-diagonal
    matrices.  The result is symmetric, has a unit diagonal, entries in [-1, 1] and smallest
    eigenvalue >= -``PSD_TOL``.

    >>> import numpy as np
    >>> from pmrisk.kernel.correlation import min_eigenvalue, nearest_correlation
    >>> a = np.array([[1, 0.9, 0.7], [0.9, 1, -0.9], [0.7, -0.9, 1]])
    >>> x = nearest_correlation(a)
    >>> bool(min_eigenvalue(x)[0] >= -1e-10), np.allclose(np.diag(x), 1.0)
    (True, True)
    """
    a = 0.5 * (np.asarray(a, dtype=np.float64) + np.asarray(a, dtype=np.float64).T)
    y = a.copy()
    ds = np.zeros_like(a)
    x = a
    for _ in range(max_iter):
        r = y - ds
        w, v = np.linalg.eigh(r)
        x = (v * np.maximum(w, 0.0)) @ v.T
        x = 0.5 * (x + x.T)
        ds = x - r
        y_new = x.copy()
        np.fill_diagonal(y_new, 1.0)
        done = np.linalg.norm(y_new - y, "fro") <= tol * max(np.linalg.norm(y, "fro"), 1.0)
        y = y_new
        if done:
            break
    # the unit-diagonal iterate can be PSD only up to rounding: shrink towards I until it is
    for shrink in (0.0, 1e-12, 1e-10, 1e-8, 1e-6):
        z = (1.0 - shrink) * y + shrink * np.eye(len(y))
        if min_eigenvalue(z)[0] >= -PSD_TOL:
            return np.clip(z, -1.0, 1.0)
    return np.clip(z, -1.0, 1.0)

"""Joint stress directions on the correlation ellipsoid.  Plain numpy, built once per
set of underlyings.

A direction ``w`` (unit vector) becomes the joint move ``z = S w`` with ``S`` the symmetric
square root of the correlation matrix ``rho``: ``z' rho^-1 z = 1`` and ``|z_u| <= 1``.  The
directions are, in this order (duplicates dropped, first occurrence kept):

1. the axes ``+-e_i``;
2. the conditional axes ``+-S e_i`` (``z = rho e_i``: underlying i moves its full range, every
   other one its correlated expectation; these are the points of the ellipsoid that maximise
   ``|z_i|``, so an account dominated by one underlying is charged exactly its range);
3. the principal axes ``+-v_k`` (eigenvectors of ``rho``);
4. ``n_directions`` deterministic quasi-random unit vectors: for d = 2 evenly spaced angles,
   otherwise the R_d low-discrepancy sequence (Roberts 2018) mapped through the normal quantile
   and normalised.

For one underlying the only directions are +1 and -1.
"""

from functools import lru_cache
from statistics import NormalDist

import numpy as np

from .correlation import psd_sqrt

KIND_AXIS, KIND_CONDITIONAL, KIND_PRINCIPAL, KIND_QUASI = 0, 1, 2, 3
KINDS = ("axis", "conditional", "principal", "quasi")


@lru_cache(maxsize=64)
def _quasi_random(d, n):
    if n == 0:
        return np.zeros((0, d))
    if d == 2:
        ang = (np.arange(n) + 0.5) * (2.0 * np.pi / n)
        return np.column_stack([np.cos(ang), np.sin(ang)])
    phi = 2.0
    for _ in range(100):                     # root of x^(d+1) = x + 1
        phi = (1.0 + phi) ** (1.0 / (d + 1))
    alpha = (1.0 / phi) ** np.arange(1, d + 1)
    u = (0.5 + np.outer(np.arange(1, n + 1), alpha)) % 1.0
    u = np.clip(u, 1e-12, 1.0 - 1e-12)
    inv = NormalDist().inv_cdf
    g = np.array([[inv(x) for x in row] for row in u])
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    out = g / np.where(norm > 0, norm, 1.0)
    out.setflags(write=False)
    return out


def quasi_random_directions(d, n):
    """``n`` deterministic, well spread unit vectors in ``d`` dimensions, ``(n, d)``.

    >>> import numpy as np
    >>> from pmrisk.kernel.directions import quasi_random_directions
    >>> w = quasi_random_directions(3, 4)
    >>> w.shape, bool(np.allclose(np.linalg.norm(w, axis=1), 1.0))
    ((4, 3), True)
    """
    return np.array(_quasi_random(int(d), int(n)))


def joint_moves(rho, n_directions):
    """Unit joint moves ``z`` (rows, ``|z_u| <= 1``) for correlation matrix ``rho`` and the kind
    of direction each came from.  Returns ``(z float64[m, d], kind int64[m])``.

    >>> import numpy as np
    >>> from pmrisk.kernel.directions import KINDS, joint_moves
    >>> z, kind = joint_moves(np.eye(2), 4)
    >>> z.shape[1], [KINDS[k] for k in kind[:4]]
    (2, ['axis', 'axis', 'axis', 'axis'])
    """
    rho = np.asarray(rho, dtype=np.float64)
    d = rho.shape[0]
    if d == 1:
        return np.array([[1.0], [-1.0]]), np.array([KIND_AXIS, KIND_AXIS], dtype=np.int64)
    s = psd_sqrt(rho)
    eye = np.eye(d)
    _, vecs = np.linalg.eigh(rho)
    blocks = [(eye, KIND_AXIS), (-eye, KIND_AXIS), (s, KIND_CONDITIONAL),
              (-s, KIND_CONDITIONAL), (vecs.T, KIND_PRINCIPAL), (-vecs.T, KIND_PRINCIPAL),
              (quasi_random_directions(d, n_directions), KIND_QUASI)]
    w = np.vstack([b for b, _ in blocks])
    kind = np.concatenate([np.full(len(b), k, dtype=np.int64) for b, k in blocks])
    z = w @ s                                    # rows: (S w)' = w' S (S symmetric)
    z = np.clip(z, -1.0, 1.0)
    _, first = np.unique(np.round(z, 12), axis=0, return_index=True)
    keep = np.sort(first)
    return np.ascontiguousarray(z[keep]), kind[keep]

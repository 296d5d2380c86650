"""The correlation matrix of a call's underlyings from the model: the model's
``default`` for every pair, then the per-pair overrides ``"A,B"`` (either order), validated or
repaired.

A ``[correlations]`` section: ``"BTC,ETH" = 0.85``, ``default = 0.6``, and optionally
``repair = "nearest"`` (Higham's nearest correlation matrix instead of an error).
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from pmrisk.kernel.correlation import PSD_TOL, min_eigenvalue, nearest_correlation

from ..errors import MarginError

RESERVED = ("default", "repair")


class CorrelationRepaired(UserWarning):
    """The correlation matrix was replaced by its nearest valid matrix (``repair="nearest"``).

    Examples
    --------
    Pairs that cannot hold together (BTC close to ETH and to SOL, ETH opposite to SOL):

    >>> import warnings
    >>> import pmrisk
    >>> m = pmrisk.Model.preset("standard").with_overrides({"correlations": {
    ...     "BTC,ETH": 0.9, "BTC,SOL": 0.9, "ETH,SOL": -0.9, "repair": "nearest"}})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     c = pmrisk.correlation_matrix(["BTC", "ETH", "SOL"], m)
    >>> [w.category.__name__ for w in caught]
    ['CorrelationRepaired']
    """


@dataclass
class CorrelationMatrix:
    """``underlyings`` (names), ``matrix`` (float64[d, d]) and, when repaired, ``changes``:
    ``[(pair, before, after), ...]`` for every entry that moved by more than 1e-12.

    Examples
    --------
    >>> import warnings
    >>> import pmrisk
    >>> m = pmrisk.Model.preset("standard").with_overrides({"correlations": {
    ...     "BTC,ETH": 0.9, "BTC,SOL": 0.9, "ETH,SOL": -0.9, "repair": "nearest"}})
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", pmrisk.CorrelationRepaired)
    ...     c = pmrisk.correlation_matrix(["BTC", "ETH", "SOL"], m)
    >>> c
    CorrelationMatrix(['BTC', 'ETH', 'SOL'], repaired=True)
    >>> c.matrix.round(3).tolist()
    [[1.0, 0.5, 0.5], [0.5, 1.0, -0.5], [0.5, -0.5, 1.0]]
    >>> [(pair, before, round(after, 3)) for pair, before, after in c.changes]
    [('BTC,ETH', 0.9, 0.5), ('BTC,SOL', 0.9, 0.5), ('ETH,SOL', -0.9, -0.5)]
    """
    underlyings: list
    matrix: np.ndarray
    changes: list = field(default_factory=list)

    def __repr__(self):
        return (f"CorrelationMatrix({self.underlyings}, repaired={bool(self.changes)})")


def _err(key, expected, hint=None):
    return MarginError("model", f"correlations.{key}" if key else "correlations", expected,
                       hint=hint)


def parse_pairs(section):
    """``{frozenset({A, B}) or (A,): rho}`` from a ``[correlations]`` section, checking keys
    (``"A,B"``, ``default``, ``repair``), values in [-1, 1], a unit diagonal and that a pair
    given in both orders agrees."""
    pairs = {}
    for key, value in section.items():
        if key in RESERVED:
            continue
        parts = [p.strip() for p in str(key).split(",")]
        if len(parts) != 2 or not all(parts):
            raise _err(key, "a pair \"A,B\" of underlyings, \"default\" or \"repair\"")
        a, b = parts
        if a == b and value != 1.0:
            raise _err(key, f"1.0 on the diagonal (an underlying with itself), got {value!r}")
        k = frozenset((a, b))
        if k in pairs and pairs[k][1] != value:
            raise _err(key, f"one value per pair: {pairs[k][0]!r} = {pairs[k][1]!r} and "
                       f"{key!r} = {value!r} (a correlation matrix is symmetric)")
        pairs[k] = (key, value)
    repair = section.get("repair", "none")
    if repair not in ("none", "nearest"):
        raise _err("repair", f"\"none\" or \"nearest\", got {repair!r}")
    return {k: v for k, (_, v) in pairs.items()}


def correlation_matrix(underlyings, model, repair=None):
    """The model's correlation matrix over ``underlyings``.

    An invalid matrix (not positive semidefinite: smallest eigenvalue < -1e-10) is an error
    naming the pair that weighs most in the offending eigenvector, unless ``repair`` (default:
    the model's ``correlations.repair``) is ``"nearest"``: then Higham's nearest correlation
    matrix is used, the changed entries are listed in ``.changes`` and a
    :class:`CorrelationRepaired` warning says so.

    >>> import pmrisk
    >>> m = pmrisk.Model.preset("standard")
    >>> pmrisk.correlation_matrix(["BTC", "ETH", "SOL"], m).matrix.tolist()
    [[1.0, 0.85, 0.6], [0.85, 1.0, 0.6], [0.6, 0.6, 1.0]]
    """
    section = model["correlations"]
    pairs = parse_pairs(section)
    if repair is None:
        repair = section.get("repair", "none")
    names = list(underlyings)
    d = len(names)
    default = float(section.get("default", 0.0))
    rho = np.full((d, d), default)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            rho[i, j] = 1.0 if i == j else pairs.get(frozenset((a, b)), default)
    if d < 2:
        return CorrelationMatrix(names, rho)
    lam, vec = min_eigenvalue(rho)
    if lam >= -PSD_TOL:
        return CorrelationMatrix(names, rho)
    if repair != "nearest":
        weight = np.abs(np.outer(vec, vec) * rho)
        np.fill_diagonal(weight, -1.0)
        i, j = np.unravel_index(np.argmax(weight), weight.shape)
        pair = f"{names[min(i, j)]},{names[max(i, j)]}"
        raise _err(pair, f"a positive semidefinite correlation matrix over {names}; its "
                   f"smallest eigenvalue is {lam:.6g} and the pair {pair} = {rho[i, j]:g} "
                   "weighs most in it",
                   hint="Change the pair's value or set repair = \"nearest\" in [correlations] "
                   "(Higham's nearest correlation matrix)")
    fixed = nearest_correlation(rho)
    changes = [(f"{names[i]},{names[j]}", float(rho[i, j]), float(fixed[i, j]))
               for i in range(d) for j in range(i + 1, d)
               if abs(fixed[i, j] - rho[i, j]) > 1e-12]
    worst = max(abs(a - b) for _, a, b in changes) if changes else 0.0
    warnings.warn(f"correlation matrix over {names} was not positive semidefinite (smallest "
                  f"eigenvalue {lam:.6g}); replaced by the nearest correlation matrix, "
                  f"{len(changes)} pairs changed, largest change {worst:.6g}",
                  CorrelationRepaired, stacklevel=3)
    return CorrelationMatrix(names, fixed, changes)

"""Resource bounds: a call's peak memory and work, estimated from the model and the book
before anything is computed, and refused above the model's ``max_memory_gb``.

Every entry point that runs the engine (:func:`pmrisk.margin`, :class:`pmrisk.Monitor`,
:func:`pmrisk.liquidation_plan` and :func:`pmrisk.backtest` batch by batch, all through the
engine, and :func:`pmrisk.margin_from_risk_arrays`) calls :func:`check_memory` with the
:class:`Shape` of its book.  The estimate counts the arrays the engine allocates:

* **book**: about ``ROW_BYTES`` per position, balance, open-order and reserve row and per
  account (validated arrays, per-position results, result tables);
* **scenarios**: the instruments' P&L in every scenario (revaluation rows x scenarios) and each
  unit's risk vector, raw and weighted (units x scenarios);
* **joint stress** (``cross_unit = "correlated"``), per group of accounts holding the same
  underlyings (d of them): joint scenarios = 1 + buckets x shell_steps x directions (+ the
  directions again for the joint extremes), directions = ``n_directions`` plus the axes,
  principal and conditional axes; the arrays describing them (3d + 4 numbers each), their
  interpolation cells on the grid (9 per scenario and underlying of the book) and the exact
  revaluation of a block of accounts (about 7 numbers per scenario cell, plus the block's unit
  vectors).  With ``joint_revaluation = "grid"`` an account whose candidates exceed 256 is
  revalued on every joint scenario: the estimate includes that block, so it is an upper bound
  there (about 2.5 times the peak of a call that does not fall back); with ``"exact"`` it is
  that path.
* **risk vectors**, only when asked for: about ``RV_ROW_BYTES`` per row of the unit table
  (units x scenarios) and, with ``risk_vectors="positions"``, of the position table
  (positions x scenarios).

The estimate is checked against the measured peak RSS of calls of 80-600 MB (the joint stress
in both modes, many account-state rows, position risk vectors): it lies between 0.7 and 3.5
times the measurement.  The limit is a model setting: ``Model.preset(name).with_overrides(
{"max_memory_gb": 16})``, ``{"preset": name, "max_memory_gb": 16}`` or ``max_memory_gb = 16``
in a TOML model.
"""

from dataclasses import dataclass, field

import numpy as np

from pmrisk.kernel.instruments import OPTION
from pmrisk.kernel.resources import account_groups
from pmrisk.kernel.scenarios import EXTENDED_MOVES

from ..io.arrow import kernel_args, unique_keys
from ..errors import MarginError

F8 = 8                        # bytes per float64 / int64
ROW_BYTES = 700               # per account-state row or account (measured 600-1,100)
RV_ROW_BYTES = 150            # per risk-vector table row (measured ~120)
GB = 1e9


@dataclass
class Group:
    """Accounts holding the same ``d`` underlyings (one joint scenario set): how many, the
    largest number of units one of them holds, the largest ``buckets_count`` of the
    underlyings and their largest ``extreme_multiple``."""
    d: int
    accounts: int
    units_per_account: int
    buckets: int
    extreme_multiple: float


@dataclass
class Shape:
    """The counts of a book that set a call's memory (see the module docstring)."""
    rows: int                   # account-state rows: positions, balances, orders, reserves
    positions: int
    accounts: int
    units: int
    revaluation_rows: int       # instruments revalued (options at a vol floor: twice)
    width: int                  # scenarios per underlying (the largest set)
    underlyings: int = 1
    groups: list = field(default_factory=list)     # joint stress groups (correlated mode)


@dataclass
class Estimate:
    """Peak memory (``bytes``), work (``cells``: scenario revaluations) and the bytes of
    each part (``parts``), largest first in :meth:`largest`."""
    bytes: float
    cells: float
    parts: dict

    def largest(self):
        return max(self.parts, key=self.parts.get)


def scenario_count(model, underlying):
    """How many scenarios ``model`` has for ``underlying`` (the size of
    :func:`pmrisk.model.scenario_table.scenario_set_for`, counted without building the set)."""
    if model["scenarios"] is not None:
        return len(model["scenarios"])
    if model["scenario_set"] == "span16":
        return 16
    n = 3 * (2 * int(model.underlying(underlying)["buckets_count"]) + 1)
    return n + len(EXTENDED_MOVES) * bool(model["extended_table"]) \
        + 2 * bool(model["extreme_scenarios"])


def shape_of(book, model, upper=False):
    """The :class:`Shape` of a validated book under ``model``.  With ``upper``, a shape whose
    estimate is never below the exact one, without a pass over the rows: every position,
    order and reserve counted as a unit of its own; under ``cross_unit = "correlated"`` one
    joint group of every account on every underlying of the book, each account holding a
    unit per underlying and settlement (``d``, accounts, units, buckets and extreme multiple
    at least any real group's: the estimate of :func:`_joint` grows with each)."""
    n_pos = len(book.pos_account)
    n_acc = len(book.accounts)
    n_und = len(book.und_names)
    width = max((scenario_count(model, u) for u in book.und_names), default=0)
    # units: distinct (account, underlying, settlement) of positions and orders
    n_set = 4
    if upper:
        n_rows = n_pos + len(book.bal_account) + len(book.ord_account) + len(book.res_account)
        shape = Shape(rows=n_rows, positions=n_pos, accounts=n_acc,
                      units=n_pos + len(book.ord_account) + len(book.res_account),
                      revaluation_rows=2 * len(book.kind), width=width, underlyings=n_und)
        if model["cross_unit"] == "correlated" and n_pos:
            params = [model.underlying(u) for u in book.und_names]
            shape.groups = [Group(
                d=n_und, accounts=n_acc, units_per_account=max(min(n_und * n_set, n_pos), 1),
                buckets=max(int(p["buckets_count"]) for p in params),
                extreme_multiple=max(float(p["extreme_multiple"]) for p in params))]
        return shape
    und = book.und_code
    keys = np.concatenate([
        (book.pos_account * max(n_und, 1) + und[book.pos_instr]) * n_set
        + book.settlement[book.pos_instr],
        (book.ord_account * max(n_und, 1) + und[book.ord_instr]) * n_set
        + book.settlement[book.ord_instr]]).astype(np.int64)
    ukeys = unique_keys(keys)[0]           # dense keys: O(n), no sort
    n_units = len(ukeys) + len(book.res_account)
    n_opt = int((book.kind == OPTION).sum())
    shape = Shape(rows=n_pos + len(book.bal_account) + len(book.ord_account)
                  + len(book.res_account), positions=n_pos, accounts=n_acc, units=n_units,
                  revaluation_rows=len(book.kind) + n_opt, width=width, underlyings=n_und)
    if model["cross_unit"] == "correlated" and n_pos:
        shape.groups = _groups(book, model, ukeys, n_set * max(n_und, 1), n_und)
    return shape


def _groups(book, model, ukeys, div, n_und):
    """Accounts grouped by the set of underlyings their positions hold (in the order of
    each group's first account; :func:`pmrisk.kernel.resources.account_groups`: one bit mask
    per account, no Python per account).  ``ukeys // div`` is the account of each unit."""
    params = [model.underlying(u) for u in book.und_names]
    d, count, most, b, e = account_groups(*kernel_args(
        book.pos_account, book.pos_instr, book.und_code, book.quantity, ukeys), div,
        len(book.accounts), n_und, *kernel_args(
            np.array([int(p["buckets_count"]) for p in params], dtype=np.int64),
            np.array([float(p["extreme_multiple"]) for p in params], dtype=np.float64)))
    return [Group(d=int(d[g]), accounts=int(count[g]), units_per_account=max(int(most[g]), 1),
                  buckets=int(b[g]), extreme_multiple=float(e[g])) for g in range(len(d))]


def _joint(model, g, threads, revaluation_rows):
    """(peak bytes, cells) of one group's joint stress: its scenarios (built, then kept with
    the kernel's padded copies), the revaluation rows' grid curves and the kernel's scratch
    per thread (no accounts x scenarios array)."""
    n_dir = int(model["n_directions"])
    m = 2 if g.d == 1 else n_dir + 6 * g.d
    tails = bool(model["extreme_scenarios"]) and model["tail_mode"] == "joint"
    b = g.buckets * int(model["shell_steps"])
    size = 1 + b * m + (m if tails else 0)
    extra = 0 if g.d < 2 else 2 * (b + tails)
    built = F8 * size * (6 * g.d + 4)          # the parts and the stacked arrays
    kept = F8 * size * (3 * g.d + 4) + F8 * size * (3 * g.d + 1)
    scratch = F8 * threads * 2 * (size + extra)
    work = float(size + extra) * g.accounts * g.units_per_account
    if model["joint_revaluation"] == "exact":
        return max(built, kept + scratch), 3.0 * work
    n = int(model["joint_grid_nodes"])
    ts = int(np.ceil(n * g.extreme_multiple)) if tails else 0
    width = 3 * (2 * n + 1) + 2 * ts + 1
    curves = F8 * width * (revaluation_rows + threads * g.units_per_account * 2)
    return max(built, kept + scratch + curves), work


def estimate(model, shape, risk_vectors=False):
    """Peak memory and work of one engine pass over a book of ``shape`` under ``model``
    (:class:`Estimate`).

    >>> from pmrisk.engine.resources import Shape, Group, estimate
    >>> from pmrisk import Model
    >>> book = Shape(rows=18, positions=18, accounts=6, units=10, revaluation_rows=18,
    ...              width=35, underlyings=2, groups=[Group(2, 6, 4, 5, 2.0)])
    >>> m = Model.preset("standard").with_overrides({"n_directions": 1_000_000,
    ...                                               "shell_steps": 100})
    >>> e = estimate(m, book)
    >>> e.largest(), round(e.bytes / 1e9)
    ('joint', 84)
    """
    import numba
    w = shape.width
    parts = {
        "book": float(ROW_BYTES * (shape.rows + shape.accounts)),
        "scenarios": float(F8 * w * (shape.revaluation_rows + 3 * shape.units)),
    }
    cells = float(shape.revaluation_rows * w)
    if risk_vectors:
        parts["risk_vectors"] = float(RV_ROW_BYTES * w * shape.units)
    if risk_vectors == "positions":
        parts["risk_vectors"] += float(RV_ROW_BYTES * w * shape.positions)
    if shape.groups:
        joint = [_joint(model, g, numba.config.NUMBA_NUM_THREADS, shape.revaluation_rows)
                 for g in shape.groups]
        parts["joint"] = float(max(p for p, _ in joint))
        cells += sum(c for _, c in joint)
    return Estimate(bytes=sum(parts.values()), cells=cells, parts=parts)


_DRIVERS = {
    "joint": ("model", "n_directions", "model.n_directions ({n_directions:,}) x shell_steps "
              "({shell_steps}) x buckets_count x the accounts' underlyings (joint stress)",
              "lower n_directions or shell_steps"),
    "scenarios": ("model", "buckets_count", "instruments and units x {width:,} scenarios per "
                  "underlying (buckets_count, extended table or a custom scenario table)",
                  "lower buckets_count or use fewer scenarios"),
    "risk_vectors": ("arguments", "risk_vectors", "risk_vectors={risk_vectors!r}: one row "
                     "per unit (or position) and scenario ({width:,} per underlying)",
                     "ask for risk_vectors=True (per unit) or none, or margin fewer accounts "
                     "per call"),
    "book": ("positions", None, "{rows:,} account-state rows",
             "margin the book in parts (pmrisk.backtest: a smaller batch_rows)"),
}


def check_memory(model, shape, risk_vectors=False):
    """Refuse a call whose estimated peak memory is above the model's ``max_memory_gb``
    (a :class:`MarginError` naming the parameters behind the largest part and the
    estimate); return the :class:`Estimate` otherwise.

    >>> from pmrisk.engine.resources import Shape, Group, check_memory
    >>> from pmrisk import Model
    >>> book = Shape(rows=18, positions=18, accounts=6, units=10, revaluation_rows=18,
    ...              width=35, underlyings=2, groups=[Group(2, 6, 4, 5, 2.0)])
    >>> m = Model.preset("standard").with_overrides({"n_directions": 1_000_000,
    ...                                               "shell_steps": 100})
    >>> check_memory(m, book)
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: model.n_directions: expected a call within the memory limit \
(model parameter max_memory_gb = 4 GB); model.n_directions (1,000,000) x shell_steps (100) \
x ... needs about 84 GB...
    """
    est = estimate(model, shape, risk_vectors)
    limit = float(model["max_memory_gb"])
    if est.bytes <= limit * GB:
        return est
    part = est.largest()
    table, column, what, fix = _DRIVERS[part]
    what = what.format(n_directions=int(model["n_directions"]),
                       shell_steps=int(model["shell_steps"]), width=shape.width,
                       risk_vectors=risk_vectors, rows=shape.rows)
    raise MarginError(
        table, column, f"a call within the memory limit (model parameter max_memory_gb = "
        f"{_gb(limit * GB)}); {what} needs about {_gb(est.bytes)}",
        hint=f"To fix: {fix}, or raise the limit if the machine has the memory: "
        f"model=pmrisk.Model.preset(...).with_overrides({{'max_memory_gb': "
        f"{float(np.ceil(est.bytes * 1.2 / GB)):g}}})")


def _gb(n):
    return f"{n / GB:,.0f} GB" if n >= 10 * GB else f"{n / GB:.2g} GB"

"""The margin engine on validated arrays: resolve, then compute in phases; no pyarrow.

A call resolves the model once (:func:`resolve`: named per-unit-type parameter arrays), lays
out the book's rows for the kernels (:func:`prepare`: units, revaluation rows, CSR indexes of
positions, orders and expiry groups by unit, of positions, units and balances by account), and
runs the phases over a *selection* (:func:`compute`):

1. revalue: :func:`pmrisk.kernel.instrument_pnl` and :func:`pmrisk.kernel.instrument_greeks`
   on the revaluation rows (all of them, in one parallel pass:
   :func:`pmrisk.kernel.revalue.instrument_pnl_greeks`; or the rows a tick moved);
2. units: :func:`pmrisk.kernel.assemble.unit_figures` (risk vectors, worst case, open orders,
   positions' values and Greeks, add-ons in coin);
3. excluded instruments (SPAN standalone margin; numpy, when the model excludes any);
4. across units: the unit's own worst case (``cross_unit = "sum"``) or its share of its
   account's joint scenario (``"correlated"``, :mod:`pmrisk.engine.correlated`);
5. margins and contributions: :func:`pmrisk.kernel.assemble.unit_margins`;
6. accounts: :func:`pmrisk.kernel.assemble.account_figures`.

:func:`run` is all of it over everything (:func:`pmrisk.margin`, backtests, liquidation
plans); :class:`pmrisk.Monitor` keeps the :class:`Outcome` and calls :func:`compute` on the
rows, units and accounts a tick touched.  It is the same code either way, so the two agree to
the bit.  :mod:`pmrisk.results` turns an outcome into Arrow tables.
"""

import functools
from dataclasses import MISSING, dataclass, fields, replace
from typing import NamedTuple

import numba
import numpy as np

from pmrisk import kernel as K
from pmrisk.kernel import scenarios as S
from pmrisk.kernel import assemble
from pmrisk.kernel.addons import collateral_rows
from pmrisk.kernel import across
from pmrisk.kernel import layout as layout_k
from pmrisk.kernel import okx as okx_k
from pmrisk.kernel import revalue as revalue_k
from pmrisk.kernel import span as span_k

from .. import blocks
from ..io.arrow import kernel_args
from ..errors import MarginError
from . import okx
from .binance import bracket_phase, lay_out_brackets, loan_mmr
from .correlated import JointStress, per_unit_cells
from .excluded import Standalone, excluded_instruments
from ..model.model import collateral_rule
from .resources import check_memory, shape_of
from ..model.scenario_table import scenario_set_for
from .units import build_units

_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0)
_NO_CELLS = np.zeros((0, 0))

# a selection of fewer rows than this runs the phase kernels on the calling thread: waking
# numba's threads costs more than a few units' work (and under load, a scheduler quantum)
PARALLEL_MIN = 64

# per-underlying parameters the engine reads, resolved per unit type
TYPE_PARAMS = ("vol_floor", "volatility_range_up", "volatility_range_down",
               "short_term_vega_power", "long_term_vega_power", "min_volatility_for_shock_up",
               "vol_scan_range", "horizon_days", "short_option_minimum",
               "annualised_move_risk", "min_annualised_move",
               "delta_total_liq_shock_threshold", "m_inc", "max_delta_shock")


@dataclass
class Params:
    """The model resolved for one call's unit types: scalars and one array per parameter,
    indexed by unit type code (``Units.type_names``).  Nothing below :func:`resolve` reads the
    :class:`~pmrisk.Model`, except the joint stress and the excluded-instrument rule, which
    take the model's correlations, scenario shapes and exclusion lists."""
    rate: float
    risk_multiplier: float
    mm_factor: float
    im_factor: float
    loan_mmr: float
    loan_im_factor: float               # loans' IM = loan_im_factor x their MM
    cross_unit: str
    tail_mode: str
    thresholds: dict
    collateral: dict                    # asset -> its collateral rate or tiers
    per_type: dict                      # name -> float64[n_types] (TYPE_PARAMS)
    absolute_vol_shock: np.ndarray      # bool[n_types]
    coin_settled: np.ndarray            # bool[n_types]: settled in its own underlying
    und_row: np.ndarray                 # int64[n_types]: row of the scenario arrays
    margin_rules: str = "scenario"      # "okx": okx_pm's phases; "brackets": binance_um's
    okx_vol: tuple = ()                 # (type, up nodes, down nodes) with vol_shock "okx"


def resolve(model, units):
    """:class:`Params` of ``model`` for the unit types of ``units`` (built once per model and
    unit types: a model is immutable, and callers never change what this returns)."""
    key = ("params", tuple(units.type_und), tuple(units.type_ccy),
           tuple(units.type_und_code.tolist()))
    return model.cached(key, lambda: _resolve(model, units))


def _resolve(model, units):
    names = units.type_und
    per = {k: np.array([model.underlying(u)[k] for u in names], dtype=np.float64)
           for k in TYPE_PARAMS}
    for a in per.values():
        a.flags.writeable = False
    return Params(
        rate=float(model["rate"]), risk_multiplier=float(model["risk_multiplier"]),
        mm_factor=float(model["mm_factor"]), im_factor=float(model["im_factor"]),
        loan_mmr=loan_mmr(model), loan_im_factor=float(model["loan_im_factor"]),
        cross_unit=model["cross_unit"],
        tail_mode=model["tail_mode"], thresholds=model["thresholds"],
        collateral=model["collateral"], per_type=per,
        absolute_vol_shock=np.array([model.underlying(u)["vol_shock"] == "absolute"
                                     for u in names], dtype=bool),
        coin_settled=np.array([u == c for u, c in zip(units.type_und, units.type_ccy)],
                              dtype=bool), und_row=units.type_und_code,
        margin_rules=model["margin_rules"],
        okx_vol=tuple((t, model.underlying(u)["mr1_vol_up"], model.underlying(u)["mr1_vol_down"])
                      for t, u in enumerate(names) if model.underlying(u)["vol_shock"] == "okx"))


class PnlArgs(NamedTuple):
    """The arguments of :func:`pmrisk.kernel.instrument_pnl`, by name (revaluation rows)."""
    kind: np.ndarray
    settlement: np.ndarray
    contract_size: np.ndarray
    mark: np.ndarray
    forward: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    t_now: np.ndarray
    t_scen: np.ndarray
    sig_mark: np.ndarray
    sig_up: np.ndarray
    sig_same: np.ndarray
    sig_down: np.ndarray
    und: np.ndarray
    rate: float
    n_scen: np.ndarray
    price_shock: np.ndarray
    log1p_shock: np.ndarray
    vol_code: np.ndarray
    vol_factor: np.ndarray
    pnl_scale: np.ndarray

    def instruments(self):
        """The per-row instrument columns (``kind`` ... ``und``), without rate and scenarios."""
        return tuple(self[:self._fields.index("rate")])

    def on(self, scen):
        """The same rows on the scenario set ``scen`` (a :class:`PaddedScenarios`)."""
        return self._replace(**dict(zip(
            ("n_scen", "price_shock", "log1p_shock", "vol_code", "vol_factor", "pnl_scale"),
            kernel_args(scen.n_scen, scen.price_shock, scen.log1p_shock, scen.vol_code,
                        scen.vol_factor, scen.pnl_scale))))


class Revaluation(NamedTuple):
    """What :func:`revaluation_inputs` prepares: the units, the per-underlying scenario sets,
    the arguments of :func:`pmrisk.kernel.instrument_pnl` over the revaluation rows
    (:class:`PnlArgs`), and each position's and order's row (``pos_row``, ``ord_row``)."""
    units: object
    itype: np.ndarray           # unit type per active instrument
    pos_unit: np.ndarray
    ord_unit: np.ndarray
    res_unit: np.ndarray
    scen: S.PaddedScenarios
    args: PnlArgs
    pos_row: np.ndarray
    ord_row: np.ndarray
    row_instr: np.ndarray       # instrument of each revaluation row
    floored: np.ndarray         # instruments with a floored copy (row n_instr + k)
    params: Params


def short_instruments(book):
    """Instruments held short or sold by an open order (bool per instrument)."""
    return layout_k.short_instruments(len(book.kind), *kernel_args(
        book.pos_instr, book.quantity, book.ord_instr, book.ord_qty))


def floored_copies(book, floor, short=None):
    """Instruments that get a revaluation row at the vol floor: options whose floor binds
    (floor > mark_iv) and that are held short or sold by an open order (``short``: the
    :func:`short_instruments` of ``book`` if already known)."""
    short = short_instruments(book) if short is None else short
    return layout_k.floored_copies(*kernel_args(book.kind, book.mark_iv, floor, short))


def row_args(book, params, scen, itype, row_instr, rows):
    """:class:`PnlArgs` of the revaluation rows ``rows`` at the book's current marks (rows at
    or past ``len(book.kind)`` are floored copies of ``row_instr[rows]``)."""
    p = params.per_type
    cols = list(layout_k.row_arrays(*kernel_args(
        rows, row_instr), len(book.kind), *kernel_args(
        itype, book.kind, book.settlement, book.contract_size, book.mark, book.forward,
        book.strike, book.is_call, book.years, book.mark_iv, p["vol_floor"],
        p["volatility_range_up"], p["volatility_range_down"], p["short_term_vega_power"],
        p["long_term_vega_power"], p["min_volatility_for_shock_up"],
        params.absolute_vol_shock, p["vol_scan_range"], p["horizon_days"], params.und_row)))
    if params.okx_vol:                  # okx_pm: OKX's shocks by expiry
        _okx_vols(book, params, cols, itype, row_instr, rows)
    return PnlArgs(*kernel_args(*cols, params.rate, scen.n_scen, scen.price_shock,
                                scen.log1p_shock, scen.vol_code, scen.vol_factor,
                                scen.pnl_scale))


def _okx_vols(book, params, cols, itype, row_instr, rows):
    """okx_pm's unit types with vol_shock "okx": the vol states of ``cols`` (row_arrays'
    columns) by :func:`pmrisk.kernel.okx.okx_vols` instead."""
    okx_k.okx_vols(*kernel_args(rows, row_instr, itype), len(book.kind), *kernel_args(
        params.per_type["vol_floor"], book.years,
        *okx_k.vol_nodes(len(params.und_row), params.okx_vol)), cols[9], *cols[10:13])


def padded_scenarios(model, underlyings):
    """The model's scenario sets of ``underlyings`` stacked (:func:`pmrisk.kernel.scenarios.pad`),
    built once per model and underlyings; the arrays are read-only."""
    def build():
        scen = S.pad([scenario_set_for(model, u) for u in underlyings])
        for a in scen:
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        return scen
    return model.cached(("padded_scenarios", tuple(underlyings)), build)


def revaluation_inputs(book, model):
    """Units, scenario sets and the arguments of :func:`pmrisk.kernel.instrument_pnl` for a
    validated book (shared by :func:`run`, the benchmarks and the oracle tests).

    Revaluation rows are the active instruments at their market vol, followed by a copy at
    the model's vol floor of every option whose floor binds (floor > mark_iv) and that is
    held short or sold by an open order.  Short positions and sell orders use the floored
    copy, everything else the market row: the floor makes a short option's scenarios worse
    and never values a long option above its market vol, so margin can only rise with the
    floor (sigma is raised to the floor; docs/methodology.md, "Vol floor").
    """
    units, itype, pos_unit, ord_unit, res_unit = build_units(book, model)
    params = resolve(model, units)
    scen = padded_scenarios(model, units.underlyings)
    itype = itype if len(book.kind) else _EMPTY_I
    p = params.per_type
    # the rows and every row's arguments in one kernel call (row_args' columns)
    row_instr, copy, pos_row, ord_row, cols = layout_k.revaluation_layout(*kernel_args(
        book.kind, book.mark_iv, book.pos_instr, book.quantity, book.ord_instr, book.ord_qty,
        itype, book.settlement, book.contract_size, book.mark, book.forward, book.strike,
        book.is_call, book.years, p["vol_floor"], p["volatility_range_up"],
        p["volatility_range_down"], p["short_term_vega_power"], p["long_term_vega_power"],
        p["min_volatility_for_shock_up"], params.absolute_vol_shock, p["vol_scan_range"],
        p["horizon_days"], params.und_row))
    if params.okx_vol:                  # okx_pm: OKX's shocks by expiry
        _okx_vols(book, params, cols, itype, row_instr, _arange(len(row_instr)))
    args = PnlArgs(*map(_read_only, cols), params.rate, *kernel_args(
        scen.n_scen, scen.price_shock, scen.log1p_shock, scen.vol_code, scen.vol_factor,
        scen.pnl_scale))
    return Revaluation(units, itype, pos_unit, ord_unit, res_unit, scen, args,
                       *map(_read_only, (pos_row, ord_row, row_instr, copy)), params)


def _arange(n):
    """``numpy.arange(n)`` as int64, read-only (the kernels' form of an index)."""
    a = np.arange(n, dtype=np.int64)
    a.setflags(False)
    return a


# -- the outcome: figures named as the result tables' columns ------------------------------------

@dataclass
class UnitFigures:
    """Per (account, unit) row, settlement currency (names of the units table's columns)."""
    worst_case: np.ndarray
    binding_scenario: np.ndarray
    roll_shock: np.ndarray
    delta_shock: np.ndarray
    short_option_minimum: np.ndarray
    open_orders_margin: np.ndarray
    mmp_margin: np.ndarray
    scenario_margin: np.ndarray         # the unit's part of its account's scenario margin
    scenario_price_shock: np.ndarray    # its move in that scenario (NaN: not part of it)
    scenario_vol_state: np.ndarray      # its vol state there (-1: not part of it)
    excluded_margin: np.ndarray         # SPAN standalone margin of its excluded positions
    risk_matrix_margin: np.ndarray
    maintenance_margin: np.ndarray
    initial_margin: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    vectors: np.ndarray                 # (n_units, S) risk vector
    weighted: np.ndarray                # (n_units, S) weighted risk vector
    # add-ons in coin and the coin -> settlement currency factor
    roll_coin: np.ndarray
    delta_coin: np.ndarray
    som_coin: np.ndarray
    conv: np.ndarray
    slope_usd: np.ndarray               # USD P&L per unit relative move of the underlying
    finite: np.ndarray                  # 1.0: every figure of the unit and its positions finite


@dataclass
class PositionFigures:
    """Per position, settlement currency (names of the positions table's columns)."""
    value: np.ndarray
    model_value: np.ndarray
    unrealised_pnl: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    mm_contribution: np.ndarray
    im_contribution: np.ndarray
    excluded: np.ndarray                # bool: left out of the portfolio (SPAN standalone)
    excluded_margin: np.ndarray         # its standalone margin (0 unless excluded)
    portfolio_delta: np.ndarray         # delta left in the portfolio (0 when excluded)
    own_loss: np.ndarray                # its loss in the scenario that sets the margin
    notional: np.ndarray                # bracket notional (margin_rules "brackets")
    bracket_row: np.ndarray             # its bracket's row in the flat ladders (int64)


@dataclass
class AccountFigures:
    """Per account, USD (names of the accounts table's columns)."""
    equity: np.ndarray
    actual_equity: np.ndarray
    loan_maintenance_margin: np.ndarray
    loan_initial_margin: np.ndarray     # the loans' IM (in the positions table's loans row)
    maintenance_margin: np.ndarray
    initial_margin: np.ndarray
    scenario_margin: np.ndarray
    finite: np.ndarray                  # 1.0: every figure of the account is finite
    liquidation_cost: np.ndarray        # added to MM in the margin ratio's denominator (okx)
    worst_scenario: np.ndarray = None   # binding joint scenario in words (correlated; object)


@dataclass
class Layout:
    """Row indexes the phases use (CSR: members of group g are ``order[start[g]:start[g+1]]``)
    and what does not move with the marks."""
    pu_start: np.ndarray
    pu_order: np.ndarray
    ou_start: np.ndarray
    ou_order: np.ndarray
    pa_start: np.ndarray
    pa_order: np.ndarray
    ba_start: np.ndarray
    ba_order: np.ndarray
    ua_start: np.ndarray
    bal_names: list                     # the balances' distinct assets (first appearance)
    bal_code: np.ndarray                # per balance row: its asset in bal_names
    bal_group: np.ndarray               # per balance row: its (account, asset) group
    bg_start: np.ndarray                # CSR of the groups' rows
    bg_order: np.ndarray
    pos_group: np.ndarray
    group_rate: np.ndarray
    q_port: np.ndarray
    short_opt: np.ndarray
    short_all: np.ndarray               # short option quantity, excluded positions included
    som_rate: np.ndarray
    res_oo: np.ndarray
    mmp: np.ndarray
    unit_und: np.ndarray
    threshold_usd: np.ndarray
    m_inc: np.ndarray
    max_delta_shock: np.ndarray
    coin_settled: np.ndarray
    excluded_instr: np.ndarray          # bool per instrument: excluded by the model
    excluded_any: bool                  # some position or order is on an excluded instrument
    brackets: object = None             # BracketLayout (margin_rules "brackets")


@dataclass
class Outcome:
    """A book, its resolved parameters and layout, and every figure the engine computed."""
    book: object
    units: object
    scen: S.PaddedScenarios
    params: Params
    rev: Revaluation
    layout: Layout
    instr_type: np.ndarray
    pos_unit: np.ndarray
    pos_row: np.ndarray
    instr_pnl: np.ndarray               # per revaluation row and scenario
    instr_greeks: np.ndarray            # (5, n_instr): model value, delta, gamma, vega, theta
    order_im: np.ndarray
    roll_group: np.ndarray
    collateral_usd: np.ndarray          # per balance row
    balance_usd: np.ndarray
    unit: UnitFigures
    position: PositionFigures
    account: AccountFigures
    correlation: object = None          # CorrelationMatrix list in correlated mode
    keep_vectors: bool = True           # the units' (weighted) risk vectors are stored
    joint: object = None                # engine.correlated.JointStress, kept between calls
    okx: object = None                  # OkxFigures under margin_rules = "okx"
    arg_memo: dict = None               # phase_arguments' converted inputs (and scratch)

    def __post_init__(self):
        if self.arg_memo is None:
            self.arg_memo = {}

    def copy(self):
        """An outcome whose arrays are copies (result tables built earlier keep theirs)."""
        def cp(obj):                    # a read-only array never changes: shared
            vals = {f.name: (getattr(obj, f.name).copy()
                             if isinstance(getattr(obj, f.name), list) or
                             (isinstance(getattr(obj, f.name), np.ndarray)
                              and getattr(obj, f.name).flags.writeable)
                             else getattr(obj, f.name)) for f in fields(obj)}
            return replace(obj, **vals)
        units = replace(self.units, settle_px=self.units.settle_px.copy(),
                        index_px=self.units.index_px.copy())
        return replace(self, units=units, unit=cp(self.unit), position=cp(self.position),
                       account=cp(self.account), instr_pnl=self.instr_pnl.copy(),
                       instr_greeks=self.instr_greeks.copy(), order_im=self.order_im.copy(),
                       roll_group=self.roll_group.copy(),
                       collateral_usd=self.collateral_usd.copy(),
                       balance_usd=self.balance_usd.copy(), arg_memo={},
                       okx=None if self.okx is None else self.okx.copy())


# the Layout arrays no call changes in place (q_port, short_opt and short_all are refreshed
# by a what-if that keeps its layout)
_FIXED_LAYOUT = ("pu_start", "pu_order", "ou_start", "ou_order", "pa_start", "pa_order",
                 "ba_start", "ba_order", "ua_start", "bal_code", "bal_group", "bg_start",
                 "bg_order", "pos_group", "group_rate", "som_rate",
                 "res_oo", "mmp", "unit_und", "threshold_usd", "m_inc", "max_delta_shock")


def _zeros(cls, n, written=(), **given):
    """A figures dataclass of zero arrays of length ``n`` (``given``: other initial arrays;
    ``written``: fields the caller's next step writes in full, left uninitialised); fields
    with a default keep it.  The zero arrays are the rows of one block, the written ones of
    another (one allocation each; a large one from :data:`pmrisk.blocks.BLOCKS`)."""
    zero, raw = _zeros_plan(cls, tuple(given), written)
    fields_ = dict(zip(zero, blocks.zeros((len(zero), n))))
    if written:
        fields_.update(zip(raw, blocks.empty((len(written), n))))
    fields_.update(given)
    return cls(**fields_)


@functools.lru_cache(maxsize=None)
def _zeros_plan(cls, given, written):
    """The fields :func:`_zeros` sets to zero rows and to uninitialised rows."""
    names = [f for f in _array_fields(cls, given) if f not in given]
    return (tuple(f for f in names if f not in written),
            tuple(f for f in names if f in written))


# the figures the units' first phase (assemble.unit_figures_rows, positions=True) writes for
# every unit it runs on and every position of those units: after prepare(revalue_all=True),
# compute() runs it on every unit (every position is in one), so they need no zeros first
# (with the margins' phase's below, a 100k-snapshot backtest's memset goes from 150 MB a
# call to 40)
_UNIT_WRITTEN = ("worst_case", "scenario_price_shock", "open_orders_margin", "delta", "gamma",
                 "vega", "theta", "roll_coin", "delta_coin", "som_coin", "conv", "slope_usd",
                 "finite")
_POSITION_WRITTEN = ("value", "model_value", "unrealised_pnl", "delta", "gamma", "vega",
                     "theta", "portfolio_delta")
# and those the margins' phase (assemble.unit_margins_rows) writes for every unit and position
# of its selection, every unit in compute() unless margin_rules = "brackets" (which does not
# run it); not own_loss, which it reads under cross_unit = "correlated"
_UNIT_MARGINS_WRITTEN = ("roll_shock", "delta_shock", "short_option_minimum",
                         "risk_matrix_margin", "maintenance_margin", "initial_margin")
_POSITION_MARGINS_WRITTEN = ("mm_contribution", "im_contribution")


@functools.lru_cache(maxsize=None)
def _array_fields(cls, given):
    return tuple(f.name for f in fields(cls) if f.default is MISSING or f.name in given)


def prepare(book, model, keep_vectors=False, revalue_all=False):
    """Resolve the model and lay out ``book`` for the phases; returns an :class:`Outcome`
    whose figures are still zero (:func:`compute` fills them).  ``keep_vectors``: store the
    units' risk vectors (for risk-vector tables; always under ``cross_unit =
    "correlated"``, whose per-unit tail cells read them).  ``revalue_all``: the caller
    runs :func:`compute` on every row next, which sets ``instr_pnl`` and ``instr_greeks`` to
    the revaluation's own arrays (not allocated here then, except under ``margin_rules =
    "brackets"``, whose ``instr_pnl`` stays zero), and the units' first phase writes every
    unit's and position's figures of :data:`_UNIT_WRITTEN` and :data:`_POSITION_WRITTEN`,
    the margins' phase those of ``_UNIT_MARGINS_WRITTEN`` and ``_POSITION_MARGINS_WRITTEN``
    (not zeroed here then)."""
    return lay_out(book, model, revaluation_inputs(book, model), keep_vectors, revalue_all)


def lay_out(book, model, rv, keep_vectors=True, revalue_all=False):
    """The :class:`Outcome` of ``book`` with the units, resolved parameters and revaluation
    rows of ``rv``, figures zero (also for :func:`pmrisk.margin_from_risk_arrays`, whose
    revaluation rows are the caller's risk arrays); ``revalue_all`` as in
    :func:`prepare`."""
    units, itype, pos_unit = rv.units, rv.itype, rv.pos_unit
    params = rv.params
    n_units, n_acc, n_pos = len(units), len(book.accounts), len(book.quantity)
    q = book.quantity
    excl_instr = excluded_instruments(book, model)
    utype = units.utype
    # position_layout, the CSR indexes, the roll groups and reserve_sums: one kernel call,
    # on the threads for a book of many units (into blocks of the pool: ~100 MB of fresh
    # pages a 1M-position backtest would otherwise fault in on every call)
    args = (*kernel_args(book.pos_instr, q, book.kind, excl_instr, itype,
                         params.per_type["short_option_minimum"], book.ord_instr, pos_unit,
                         rv.ord_unit), n_units,
            *kernel_args(book.pos_account, book.bal_account, units.account), n_acc,
            *kernel_args(book.expiry_ns, book.years, utype,
                         params.per_type["annualised_move_risk"],
                         params.per_type["min_annualised_move"], rv.res_unit, book.res_oo,
                         book.res_mmp))
    kernel = _phase("book_layout", range(n_units), layout_k)
    if kernel is layout_k.book_layout:           # the threaded form writes into the caller's
        args += (blocks.empty((n_pos,), np.bool_),
                 blocks.empty((layout_k.LAYOUT_F8, n_pos)),
                 blocks.empty((layout_k.LAYOUT_I8, n_pos), np.int64))
    (excl, q_port, short_opt, short_all, som_rate, excluded_any), (
        pu_start, pu_order, ou_start, ou_order, pa_start, pa_order, ba_start, ba_order,
        ua_start), (pos_group, group_rate), (res_oo, mmp) = kernel(*args)
    excl.setflags(False)                # fixed with the book and model, like the layout
    per = params.per_type
    # the balances' (account, asset) groups: an asset's collateral rule applies once to an
    # account's summed holding of it, however many rows hold it
    bal_names = list(dict.fromkeys(book.bal_asset))
    bal_code = np.fromiter(map({a: k for k, a in enumerate(bal_names)}.__getitem__,
                               book.bal_asset), np.int64, len(book.bal_asset))
    bal_group, bg_start, bg_order = layout_k.balance_groups(
        *kernel_args(ba_start, ba_order, bal_code), len(bal_names))
    layout = Layout(
        pu_start=pu_start, pu_order=pu_order, ou_start=ou_start, ou_order=ou_order,
        pa_start=pa_start, pa_order=pa_order, ba_start=ba_start, ba_order=ba_order,
        ua_start=ua_start, bal_names=bal_names, bal_code=bal_code, bal_group=bal_group,
        bg_start=bg_start, bg_order=bg_order, pos_group=pos_group, group_rate=group_rate,
        q_port=q_port, short_opt=short_opt, short_all=short_all, som_rate=som_rate,
        res_oo=res_oo, mmp=mmp,
        unit_und=units.type_und_code[utype],
        threshold_usd=per["delta_total_liq_shock_threshold"][utype], m_inc=per["m_inc"][utype],
        max_delta_shock=per["max_delta_shock"][utype],
        coin_settled=_read_only(params.coin_settled[utype]), excluded_instr=excl_instr,
        excluded_any=bool(excluded_any),
        brackets=lay_out_brackets(book, model) if params.margin_rules == "brackets" else None)
    for name in _FIXED_LAYOUT:          # fixed with the book: read-only, as the kernels take
        _read_only(getattr(layout, name))   # them (no converted view per kernel call)
    width = rv.scen.price_shock.shape[1]
    # the correlated model reads the weighted vectors' per-unit cells only (none under
    # standard: no vectors kept, 2 x units x scenarios doubles not written)
    keep = bool(keep_vectors or params.margin_rules == "okx" or (
        params.cross_unit == "correlated" and per_unit_cells(rv.scen, params.tail_mode).any()))
    n_kept = n_units if keep else 0
    # every row and instrument revalued next: compute sets the kernel's own arrays (brackets
    # keep instr_pnl zero)
    fresh = revalue_all and params.margin_rules != "brackets"
    written_u, written_p = (), ()
    if revalue_all:                     # compute() runs every phase on every unit next
        margins = params.margin_rules != "brackets"
        written_u = _UNIT_WRITTEN + (_UNIT_MARGINS_WRITTEN if margins else ())
        written_p = _POSITION_WRITTEN + (_POSITION_MARGINS_WRITTEN if margins else ())

    def first(shape, dtype=np.float64, fill=0):     # written in full by the first phase
        return blocks.empty(shape, dtype) if revalue_all else np.full(shape, fill, dtype)
    unit = _zeros(UnitFigures, n_units, written=written_u,
                  binding_scenario=first((n_units,), np.int64),
                  scenario_vol_state=first((n_units,), np.int64, -1),
                  vectors=first((n_kept, width)), weighted=first((n_kept, width)),
                  mmp_margin=layout.mmp.copy())
    position = _zeros(PositionFigures, n_pos, written=written_p,
                      excluded=excl,
                      bracket_row=np.zeros(n_pos, np.int64))
    account = _zeros(AccountFigures, n_acc)
    out = Outcome(
        book=book, units=units, scen=rv.scen, params=params, rev=rv, layout=layout,
        instr_type=itype, pos_unit=pos_unit, pos_row=rv.pos_row,
        instr_pnl=np.empty((0, width)) if fresh else np.zeros((len(rv.row_instr), width)),
        instr_greeks=np.empty((5, 0)) if fresh and len(book.kind) else
        np.zeros((5, len(book.kind))), order_im=np.zeros(len(book.ord_qty)),
        roll_group=first((len(group_rate),)), collateral_usd=np.zeros(len(book.bal_amount)),
        balance_usd=np.zeros(len(book.bal_amount)), unit=unit, position=position,
        account=account, keep_vectors=keep)
    if params.margin_rules == "okx":
        out.okx = okx.lay_out(book, model, out)
    return out


def run(book, model, risk_vectors=False):
    """The engine on a validated book; first refuses a call whose estimated peak memory
    (``risk_vectors``: the risk-vector tables the caller will build) is above the model's
    ``max_memory_gb`` (:func:`pmrisk.engine.resources.check_memory`)."""
    try:                                # an upper bound first: exact only near the limit
        check_memory(model, shape_of(book, model, upper=True), risk_vectors)
    except MarginError:
        check_memory(model, shape_of(book, model), risk_vectors)
    out = prepare(book, model, keep_vectors=bool(risk_vectors), revalue_all=True)
    compute(out, model)
    return out


def compute(out, model, rows=None, instruments=None, units=None, accounts=None,
            balances=None, positions=True, moved_units=None):
    """The phases over a selection, in place: revalue ``rows`` (revaluation rows) and
    ``instruments`` (Greeks), then the ``units``, their accounts' ``accounts`` and the
    ``balances`` rows (int64 index arrays; None: all).  Under ``cross_unit = "correlated"``,
    with excluded instruments, or for a partial selection the caller must pass every unit of
    the accounts it selects (the Monitor does).  ``positions`` False: where the units'
    phases fuse (:func:`fuses`), the positions' figures other than ``value`` are left as they
    were (a Monitor's tick; :func:`unit_phases` writes them when asked for).  ``moved_units``
    (None: ``units``): the units of ``units`` whose own inputs changed (positions, marks,
    prices); where the phases do not fuse, only their per-unit figures (phase 2) are
    recomputed, the others' are those already in ``out``."""
    book, p = out.book, out.params
    sel = np.arange(len(out.units), dtype=np.int64) if units is None else \
        np.ascontiguousarray(units, dtype=np.int64)
    units = out.units
    rv = out.rev
    # -- 1. revalue ------------------------------------------------------------------------
    brackets = p.margin_rules == "brackets"
    if brackets:                        # brackets have no scenarios: instr_pnl stays zero
        rows = _EMPTY_I
    moved_args = None
    n_i = len(book.kind)
    every = instruments is None         # every instrument: the book's columns as they are
    g = None
    if rows is None and every:          # every row and instrument: one parallel pass (rows
        # 0 .. n_i - 1 of rv.args are the instruments at their mark vol, the Greeks' columns)
        # the outputs from the caller, not from the kernel (numba's allocator, 4 kB pages):
        # a long book's revaluation (66 MB in a 100k-snapshot backtest) in a block of the
        # pool, whose pages the last call's outcome gave back, not in fresh pages the system
        # clears first
        a = rv.args
        out.instr_pnl = blocks.empty((len(a.kind), a.price_shock.shape[1]))
        g = blocks.empty((5, n_i))
        revalue_k.instrument_pnl_greeks(*rv.args, n_i, out.instr_pnl, g)
    elif rows is None:                  # every row, at the marks rv.args were built from
        out.instr_pnl = K.instrument_pnl(*rv.args)
    elif len(rows):
        moved_args = row_args(book, p, out.scen, out.instr_type, rv.row_instr, rows)
        out.instr_pnl[rows] = K.instrument_pnl(*moved_args)
    if out.okx is not None and (rows is None or len(rows)):
        okx.usd_rows(out, rows)                 # okx_pm: the rows in USD
    if n_i if every else len(instruments):
        i = instruments
        if g is None:
            g = K.instrument_greeks(*_greeks_columns(book, i), p.rate)
        if (every or len(i) == n_i) and not (out.instr_greeks.shape == g.shape
                                             and out.instr_greeks.flags.writeable):
            out.instr_greeks = g
        elif every or len(i) == n_i:    # in place: the phases' converted arguments stay
            out.instr_greeks[...] = g   # valid (phase_arguments keeps them per array)
        else:
            out.instr_greeks[:, i] = g
    # -- 2. units --------------------------------------------------------------------------
    if not positions and fuses(out):    # 2-5 in one kernel, the positions' figures left out
        uf = out.unit
        _phase("unit_tick", sel)(sel, phase_arguments(out, "unit_figures"),
                                 phase_arguments(out, "unit_margins"), uf.worst_case,
                                 uf.scenario_margin)
    else:
        unit_phases(out, model, sel, accounts, rows, moved_args, own=moved_units)
    # -- 6. accounts -----------------------------------------------------------------------
    collateral_usd(out, balances, out.collateral_usd, out.balance_usd)
    acc = np.arange(len(book.accounts), dtype=np.int64) if accounts is None else \
        np.ascontiguousarray(accounts, dtype=np.int64)
    _phase("account_figures", acc)(acc, *phase_arguments(out, "account_figures"))
    if out.okx is not None:
        okx.account_phase(out, model, acc)      # okx_pm: MR8, liquidation cost
    return out


def _greeks_columns(book, instruments=None):
    """The arguments of :func:`pmrisk.kernel.instrument_greeks` before ``rate``: the book's
    instrument columns (rows ``instruments``; None: all), options at their mark vol."""
    every = instruments is None
    cols = [a if every else a[instruments] for a in (
        book.kind, book.settlement, book.contract_size, book.mark, book.forward,
        book.strike, book.is_call, book.years, book.mark_iv)]
    cols[-1] = layout_k.option_vols(*kernel_args(cols[0], cols[-1]))
    return kernel_args(*cols)


def unit_phases(out, model, sel, accounts=None, rows=None, moved_args=None, own=None):
    """Phases 2-5 over the units ``sel`` with every figure of their positions (as
    :func:`compute` runs them; ``accounts``, ``rows``, ``moved_args``: its selection of
    accounts and moved revaluation rows, for the joint stress of a correlated model; ``own``
    (None: ``sel``): the units of ``sel`` whose per-unit figures, phase 2, are recomputed).
    On a :func:`fuses` outcome it writes again what :func:`compute` with ``positions=False``
    left out, from the same inputs."""
    own = sel if own is None else np.ascontiguousarray(own, dtype=np.int64)
    _phase("unit_figures", own)(own, *phase_arguments(out, "unit_figures"))
    if out.params.margin_rules == "brackets":       # 3-5 under "brackets": engine.binance
        bracket_phase(out, sel, len(sel) >= PARALLEL_MIN)
    else:
        _scenario_margins(out, model, sel, accounts, rows, moved_args)


def fuses(out):
    """Whether phases 2-5 of ``out`` run as one kernel when the positions' figures are not
    asked for (:func:`pmrisk.kernel.assemble.unit_tick`): scenario rules, ``cross_unit =
    "sum"``, no excluded instrument."""
    p = out.params
    return p.margin_rules == "scenario" and p.cross_unit != "correlated" and \
        not out.layout.excluded_any and out.okx is None


def _scenario_margins(out, model, sel, accounts, rows, moved_args):
    """Phases 3-5 of the scenario rules over the units ``sel`` (the joint stress of a
    correlated model over ``accounts``, after the revaluation ``rows`` moved with the
    arguments ``moved_args``)."""
    lay, p, uf = out.layout, out.params, out.unit
    # -- 3. excluded instruments -----------------------------------------------------------
    if lay.excluded_any:
        _excluded(out, model, sel)
    # -- 4. across units -------------------------------------------------------------------
    own_from_binding = p.cross_unit != "correlated"
    if own_from_binding:
        uf.scenario_margin[sel] = uf.worst_case[sel]
    else:
        _correlated(out, model, accounts, rows, moved_args)
    # -- 5. margins and contributions ------------------------------------------------------
    _phase("unit_margins", sel)(sel, *phase_arguments(out, "unit_margins", own_from_binding))
    if out.okx is not None:             # okx_pm: MR1-MR9, MMR, IMR set the units' margins
        okx.unit_phase(out, model, sel)


def _phase(kernel, sel, module=assemble):
    """The parallel kernel of ``module``, or its serial twin for a small selection or on one
    thread."""
    parallel = len(sel) >= PARALLEL_MIN and numba.get_num_threads() > 1
    return getattr(module, kernel if parallel else kernel + "_serial")


def phase_arguments(out, kernel, own_from_binding=True):
    """The arguments after the selection of :mod:`pmrisk.kernel.assemble`'s ``kernel``
    (``"unit_figures"``, ``"unit_margins"`` or ``"account_figures"``) on ``out``: inputs as
    read-only contiguous views, then the outcome's arrays the kernel writes (in place)."""
    book, lay, p, rv, scen = out.book, out.layout, out.params, out.rev, out.scen
    units, uf, pf, af = out.units, out.unit, out.position, out.account
    memo = out.arg_memo
    slot = iter(range(4))

    def conv(*arrays):                  # kernel_args, kept while the same arrays come in
        key = (kernel, next(slot))
        hit = memo.get(key)
        if hit is not None and len(hit[0]) == len(arrays) and \
                all(a is b for a, b in zip(hit[0], arrays)):
            if hit[2]:
                return hit[1]
            # a copy (a non-contiguous or converted input) would miss later in-place
            # changes, unless the input cannot change (read-only or empty): checked on the
            # first reuse, not on every outcome's first call (run() uses each once)
            if all(b is a or not isinstance(a, np.ndarray) or b.base is a
                   or (a.base is not None and b.base is a.base) or not a.flags.writeable
                   or not a.size or np.may_share_memory(a, b) for a, b in zip(*hit[:2])):
                memo[key] = (hit[0], hit[1], True)
                return hit[1]
        args = kernel_args(*arrays)
        memo[key] = (arrays, args, False)
        return args
    if kernel == "unit_figures":
        return (*conv(
            lay.pu_start, lay.pu_order, book.pos_instr, out.pos_row, book.quantity, lay.q_port,
            book.entry_price, lay.short_opt, lay.som_rate, lay.pos_group, pf.excluded,
            book.kind, book.settlement, book.contract_size, book.mark, book.forward,
            out.instr_greeks,
            out.instr_pnl, lay.unit_und, units.settle_px, units.index_px, lay.coin_settled,
            lay.threshold_usd, lay.m_inc, lay.max_delta_shock, lay.group_rate, lay.ou_start,
            lay.ou_order, rv.ord_row, book.ord_qty, lay.res_oo, scen.n_scen, scen.price_shock,
            scen.loss_weight, scen.gain_weight, scen.gain_cap_usd, scen.dampener_usd,
            scen.vol_code), out.keep_vectors,
            uf.vectors, uf.weighted, uf.worst_case, uf.binding_scenario,
            uf.scenario_price_shock, uf.scenario_vol_state, out.order_im,
            uf.open_orders_margin, out.roll_group, uf.roll_coin, uf.delta_coin, uf.som_coin,
            uf.conv, uf.delta, uf.gamma, uf.vega, uf.theta, pf.value, pf.model_value,
            pf.unrealised_pnl, pf.delta, pf.gamma, pf.vega, pf.theta, pf.portfolio_delta,
            uf.slope_usd, uf.finite)
    if kernel == "unit_margins":
        return (*conv(lay.pu_start, lay.pu_order, lay.pos_group, pf.portfolio_delta,
                             lay.short_opt, lay.som_rate, pf.excluded_margin, pf.own_loss),
                bool(own_from_binding),
                *conv(out.pos_row, lay.q_port, out.instr_pnl, lay.unit_und,
                             scen.loss_weight, uf.binding_scenario, uf.worst_case,
                             uf.scenario_margin, out.roll_group, uf.roll_coin, uf.delta_coin,
                             uf.som_coin, uf.conv, uf.excluded_margin, uf.open_orders_margin,
                             uf.mmp_margin),
                p.risk_multiplier, p.mm_factor, p.im_factor, _group_den(out),
                *conv(uf.delta, uf.gamma, uf.vega, uf.theta),
                uf.roll_shock, uf.delta_shock, uf.short_option_minimum, uf.risk_matrix_margin,
                uf.maintenance_margin, uf.initial_margin, pf.own_loss, pf.mm_contribution,
                pf.im_contribution, uf.finite)
    if kernel == "account_figures":
        return (*conv(lay.pa_start, lay.pa_order, out.pos_unit, pf.value,
                             units.settle_px, lay.ua_start, uf.maintenance_margin,
                             uf.initial_margin, uf.scenario_margin, lay.ba_start, lay.ba_order,
                             out.collateral_usd, out.balance_usd),
                p.loan_mmr, p.loan_im_factor, af.equity, af.actual_equity,
                af.loan_maintenance_margin, af.loan_initial_margin, af.maintenance_margin,
                af.initial_margin, af.scenario_margin, af.finite)
    raise ValueError(f"no phase kernel {kernel!r}")


def _read_only(a):
    a.setflags(False)                   # positional: the keyword form parses slower
    return a


def _group_den(out):
    """The scratch array of :func:`pmrisk.kernel.assemble.unit_margins` (one per expiry
    group, each zeroed by the kernel before use), made once per outcome."""
    den = out.arg_memo.get("group_den")
    if den is None or len(den) != len(out.roll_group):
        den = out.arg_memo["group_den"] = np.zeros(len(out.roll_group))
    return den


def _excluded(out, model, sel):
    """Phase 3: the SPAN standalone margin of excluded positions (per position and unit) and
    the open orders on excluded instruments (those of the units ``sel``: the increase of the
    standalone SPAN margin, plus short option minimum, of the account's position in that
    instrument if the order filled, never negative; the portfolio never sees them)."""
    book, units, lay, rv = out.book, out.units, out.layout, out.rev
    uf, pf = out.unit, out.position
    unit_px = units.settle_px
    span = Standalone(model, units, rv.args)
    conv_u = uf.conv
    sc = span.scen
    span_k.excluded_order_margin(*kernel_args(
        sel, lay.ou_start, lay.ou_order, lay.excluded_instr, book.ord_account, book.ord_instr,
        book.ord_qty, rv.ord_row, lay.pa_start, lay.pa_order, book.pos_instr, book.quantity,
        book.kind, out.instr_type, out.params.per_type["short_option_minimum"], conv_u,
        lay.unit_und, unit_px, span.ipnl, sc.n_scen, sc.loss_weight, sc.gain_weight,
        sc.gain_cap_usd, sc.dampener_usd, sc.vol_code), out.order_im)
    span_k.excluded_margins(*kernel_args(
        out.pos_unit, out.pos_row, pf.excluded, book.quantity, lay.short_all, lay.som_rate,
        conv_u, lay.unit_und, unit_px, span.ipnl, sc.n_scen, sc.loss_weight, sc.gain_weight,
        sc.gain_cap_usd, sc.dampener_usd, sc.vol_code, rv.ord_unit, out.order_im, lay.res_oo),
        pf.excluded_margin, uf.excluded_margin, uf.open_orders_margin)


def _correlated(out, model, accounts=None, rows=None, moved_args=None):
    """Phase 4 under ``cross_unit = "correlated"``: each account's worst of the joint
    scenarios and, per unit, of the cells that stay per unit (Deribit's extended table always;
    the extremes with ``tail_mode = "per_unit"``).  Sets the units' ``scenario_margin`` (their
    share of the account's scenario margin), ``scenario_price_shock``/``scenario_vol_state``,
    the positions' ``own_loss`` there and the accounts' ``worst_scenario``.

    Over everything (``rows`` None) the joint stress is built anew (:class:`JointStress`,
    kept in ``out.joint``); on a selection (a Monitor's tick) it reprices the revaluation rows
    ``rows`` (their :class:`PnlArgs` ``moved_args``) and reruns the ``accounts`` only."""
    book, units, scen, lay, rv = out.book, out.units, out.scen, out.layout, out.rev
    uf, pf = out.unit, out.position
    n_acc = len(book.accounts)
    unit_px = units.settle_px
    pos_unit, pos_row, q_port = out.pos_unit, out.pos_row, lay.q_port
    instr_pnl = out.instr_pnl
    every = accounts is None
    acc = np.arange(n_acc, dtype=np.int64) if every else np.asarray(accounts, np.int64)
    tick = rows is not None and out.joint is not None and out.joint.incremental
    if rows is None or out.joint is None:
        out.joint = JointStress(model, units, pos_unit, lay.pu_start, lay.pu_order,
                                lay.ua_start, q_port, pos_row, n_acc, len(rv.row_instr))
        out.joint.reprice(rv.args if rows is None else
                          row_args(book, out.params, scen, out.instr_type, rv.row_instr,
                                   np.arange(len(rv.row_instr))))
    elif moved_args is not None:
        out.joint.reprice(moved_args, rows)
    jr = out.joint
    if tick:                    # a Monitor's tick: incrementally where the bound allows
        jr.tick(unit_px, uf.slope_usd, acc)
    else:
        jr.run(unit_px, uf.slope_usd, acc)
    per_unit = per_unit_cells(scen, out.params.tail_mode)
    # no weighted vectors kept (no cell stays per unit): no unit has a tail
    weighted = uf.weighted if len(uf.weighted) else _NO_CELLS
    tail_unit, tail_cell = _phase("correlated_shares", acc, across)(*kernel_args(
        acc, lay.ua_start, lay.pu_start, lay.pu_order, lay.unit_und, unit_px, weighted,
        scen.n_scen, per_unit, scen.price_shock, scen.vol_code, scen.loss_weight, q_port,
        pos_row, instr_pnl, jr.worst, jr.unit_value, jr.unit_shock, jr.unit_vol, jr.pos_loss),
        uf.scenario_margin, uf.scenario_price_shock, uf.scenario_vol_state, pf.own_loss)
    desc = out.account.worst_scenario
    if desc is None or every:
        desc = jr.description.copy()
    else:
        if not isinstance(desc, np.ndarray):
            desc = np.array(desc, dtype=object)
        desc[acc] = jr.description[acc]
    out.account.worst_scenario = desc
    # accounts whose largest per-unit tail binds: that unit alone, at its tail cell
    desc = out.account.worst_scenario
    for i in np.flatnonzero(tail_unit >= 0).tolist():
        a, u, c = int(acc[i]), int(tail_unit[i]), int(tail_cell[i])
        k = lay.unit_und[u]
        desc[a] = (f"{units.type_names[units.utype[u]]} {S.TABLES[scen.table[k, c]]} "
                   f"{scen.price_shock[k, c]:+.2%} vol {S.VOL_STATES[scen.vol_code[k, c]]}")
    out.correlation = jr.correlation


def collateral_usd(out, rows, coll, usd):
    """The collateral value (``coll``) and plain USD value (``usd``) of the balance rows
    ``rows`` of ``out``'s book (int64; None: all; whole (account, asset) groups: every row,
    or every row of some assets), written in place: an account's positive amounts of an
    asset summed and valued once at the asset's collateral rate or tiers, each row taking
    its share; loans at full value (:func:`pmrisk.kernel.addons.collateral_rows`; the
    model's rule per distinct asset resolved once per outcome)."""
    book, lay = out.book, out.layout
    rows = _arange(len(book.bal_asset)) if rows is None else np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return
    rules = out.arg_memo.get("collateral_rules")
    if rules is None:
        names = lay.bal_names
        col_of = {a: i for i, a in enumerate(book.assets)}
        rule = [collateral_rule(out.params.collateral.get(a)) for a in names]
        n_tiers = np.cumsum([0] + [len(r[2]) for r in rule])
        flat = [np.concatenate([r[k] for r in rule]) for k in (2, 3, 4)]
        rules = out.arg_memo["collateral_rules"] = kernel_args(
            np.array([col_of.get(a, -1) for a in names], dtype=np.int64),
            np.array([a in book.stablecoins for a in names], dtype=np.int64),
            np.array([r[0] for r in rule], dtype=np.int64),
            np.array([r[1] for r in rule], dtype=np.float64), n_tiers, *flat)
    col, stable, spec, rate, n_tiers, lo, width, factor = rules
    collateral_rows(*kernel_args(
        rows, lay.bal_code, lay.bal_group, lay.bg_start, lay.bg_order, book.bal_account,
        book.acc_snap, book.bal_amount, col, stable, book.asset_px, spec, rate, n_tiers, lo,
        width, factor), coll, usd)


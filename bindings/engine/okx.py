"""OKX portfolio margin (``margin_rules = "okx"``, preset ``okx_pm``) as phases of the engine.

The engine forms one risk unit per (account, underlying) in USD across settlement currencies
(:func:`pmrisk.engine.units.build_units`), revalues on the scenario grid of each underlying
(MR1's moves ``0, +/-a/3, +/-2a/3, +/-a`` x vol down/same/up, ``a = price_range``, then MR6's
moves ``+/-b``, ``b = extreme_multiple x price_range``, weighted ``cover_fraction`` = 1/2) with
OKX's vol shocks by expiry (``vol_shock = "okx"``), and runs its unit phase.  Then, in
:func:`pmrisk.engine.core.compute`:

1. after revaluation, :func:`usd_rows`: each revaluation row to USD (linear rows at their
   settlement currency's price; inverse rows' coin P&L at the moved index ``S*(1+m)``;
   :func:`pmrisk.kernel.okx.usd_rows`);
2. after the unit figures, :func:`unit_phase` instead of the scenario margin steps: MR1-MR7
   (:func:`pmrisk.kernel.okx.unit_charges`), then MR7 tier scaling, MR9, MMR and IMR per
   unit and the positions' contributions (:func:`pmrisk.kernel.okx.unit_margins`);
3. after the account figures, :func:`account_phase`: borrowing (MR8), the liquidation cost,
   and the account's maintenance and initial margin
   (:func:`pmrisk.kernel.okx.account_borrowing`).

The arithmetic is in those kernels, over the selected units and accounts; this module
lays out their inputs (once per book and model) and passes them.
"""

from dataclasses import dataclass

import numpy as np

from pmrisk.kernel import layout as layout_k
from pmrisk.kernel import okx as KO
from pmrisk.kernel.addons import roll_rate
from pmrisk.kernel.instruments import INVERSE, SPOT

from ..errors import MarginError
from ..io.arrow import kernel_args

# a selection of fewer units than this runs the unit kernel on the calling thread
PARALLEL_MIN = 64


@dataclass
class OkxFigures:
    """What the OKX phases keep: static per-instrument and per-type inputs, and the figures
    (per unit: ``charges`` columns :data:`pmrisk.kernel.okx.UNIT_COLUMNS`, ``mr7``
    (adjusted), ``mr9``, ``mmr``, ``imr``; per account: the MR8 and liquidation-cost terms)."""
    leg: np.ndarray                 # per instrument: 0 USDT, 1 USDC, 2 USD (inverse), -1 none
    und: list                       # per instrument: its underlying
    lin_ccy: list                   # per instrument: its linear settlement currency
    assets: list                    # the assets positions settle in and balances hold
    priced: list                    # ``assets``, then the other underlyings and currencies
    s_code: np.ndarray              # per instrument: code in ``priced`` of its underlying
    p_code: np.ndarray              # per instrument: code in ``priced`` of its currency
    pos_asset: np.ndarray           # per position: code in ``assets`` of its settlement asset
    bal_asset: np.ndarray           # per balance row: code in ``assets``
    group_rate: np.ndarray          # MR4 rate per expiry group
    unit_basis: np.ndarray          # per unit: its type's mr4_basis_move
    unit_mr7_rate: np.ndarray       # per unit: its type's mr7_rate
    unit_asset: np.ndarray          # per unit: code in ``priced`` of its underlying
    mr7_tables: np.ndarray          # MR7 tier table per type (pmrisk.kernel.okx.tier_tables)
    mr7_rows: np.ndarray
    mr9_tables: np.ndarray          # MR9 tier table per pair (pmrisk.kernel.okx.mr9_tables)
    mr9_rows: np.ndarray
    charges: np.ndarray             # (n_units, len(UNIT_COLUMNS))
    cash_leg: np.ndarray            # (n_units, 3)
    mr7: np.ndarray
    mr9: np.ndarray
    mr8: np.ndarray                 # per unit: the borrowing MMR owed in its underlying
    mmr: np.ndarray
    imr: np.ndarray
    pos_delta_usd: np.ndarray
    derivatives_mmr: np.ndarray
    borrow_mmr: np.ndarray
    borrow_imr: np.ndarray
    liquidation_cost: np.ndarray
    g_delta: np.ndarray             # per expiry group: unit_charges' scratch
    g_vega: np.ndarray

    def copy(self):
        return OkxFigures(**{k: (v.copy() if isinstance(v, np.ndarray) else v)
                             for k, v in self.__dict__.items()})


def lay_out(book, model, out):
    """The :class:`OkxFigures` of a laid-out outcome (figures zero)."""
    if any(model["exclude"].get(k) for k in ("symbols", "kinds", "underlyings")):
        raise MarginError("model", "exclude", "no excluded instruments under margin_rules = "
                          "\"okx\" (OKX margins every position of a risk unit together)",
                          hint="Remove the exclude lists, or use margin_rules = \"scenario\"")
    units, lay = out.units, out.layout
    inverse = book.settlement == INVERSE
    lin = model["linear_settlement_currency"]
    symbols = book.symbols.to_pylist()
    lin_ccy = []
    for s in symbols:
        parts = s.split("-")
        quote = parts[1] if model["quote_from_symbol"] and len(parts) > 1 else ""
        lin_ccy.append(quote if quote in ("USDT", "USDC") else lin)
    und = [book.und_names[c] for c in book.und_code.tolist()]
    # the asset each position's value is held in (MR8's equity per asset): an inverse
    # derivative's coin; a spot position's coin itself (BTC-USDT spot is BTC held, not USDT:
    # filed under USDT, the holding would cancel the USDT borrowed to buy it); a linear
    # derivative's settlement currency
    in_coin = (inverse | (book.kind == SPOT)).tolist()
    asset = [u if coin else c for u, c, coin in zip(und, lin_ccy, in_coin)]
    names = sorted(set(asset) | set(book.bal_asset))
    priced = names + sorted((set(und) | set(lin_ccy)) - set(names))
    code = {a: k for k, a in enumerate(priced)}
    instr_asset = np.array([code[a] for a in asset], dtype=np.int64)
    leg = np.array([2 if inv else KO.CURRENCIES.index(c) if c in ("USDT", "USDC") else -1
                    for c, inv in zip(lin_ccy, inverse.tolist())], dtype=np.int64)
    per = [model.underlying(u) for u in units.type_und]

    def arr(key):
        return np.array([p[key] for p in per], dtype=np.float64)
    # MR4 rate per expiry group: max(mr4_min_move, exp(mr4_annual_move x T) - 1)
    n_groups = len(lay.group_rate)
    group_rate = roll_rate(*KO.group_terms(*kernel_args(
        lay.pos_group, book.pos_instr, out.pos_unit, book.kind, book.years, units.utype,
        arr("mr4_annual_move"), arr("mr4_min_move")), n_groups)) if n_groups else np.zeros(0)
    mr7_tables, mr7_rows = KO.tier_tables([p["mr7_tiers"] for p in per])
    mr9_tables, mr9_rows = KO.mr9_tables(model["mr9_tiers"])
    n_u, n_acc, n_pos = len(units), len(book.accounts), len(book.quantity)
    z = np.zeros
    return OkxFigures(
        leg=leg, und=und, lin_ccy=lin_ccy, assets=names, priced=priced,
        s_code=np.array([code[a] for a in und], dtype=np.int64),
        p_code=np.array([code[a] for a in lin_ccy], dtype=np.int64),
        pos_asset=instr_asset[book.pos_instr] if n_pos else z(0, np.int64),
        bal_asset=np.array([code[a] for a in book.bal_asset], dtype=np.int64),
        group_rate=np.ascontiguousarray(group_rate, dtype=np.float64),
        unit_basis=arr("mr4_basis_move")[units.utype],
        unit_mr7_rate=arr("mr7_rate")[units.utype],
        unit_asset=np.array([code.get(u, -1) for u in units.type_und],
                            dtype=np.int64)[units.utype],
        mr7_tables=mr7_tables, mr7_rows=mr7_rows, mr9_tables=mr9_tables, mr9_rows=mr9_rows,
        charges=z((n_u, len(KO.UNIT_COLUMNS))), cash_leg=z((n_u, 3)), mr7=z(n_u), mr9=z(n_u),
        mr8=z(n_u), mmr=z(n_u), imr=z(n_u), pos_delta_usd=z(n_pos), derivatives_mmr=z(n_acc),
        borrow_mmr=z(n_acc), borrow_imr=z(n_acc), liquidation_cost=z(n_acc),
        g_delta=z(n_groups), g_vega=z(n_groups))


def asset_columns(book, ox):
    """Where :func:`pmrisk.kernel.okx.asset_price` finds each name of ``ox.priced``: its
    column of ``book.asset_px`` (-1: none) and whether it is a stablecoin (int64 each)."""
    col_of = {a: i for i, a in enumerate(book.assets)}
    return (np.array([col_of.get(a, -1) for a in ox.priced], dtype=np.int64),
            np.array([a in book.stablecoins for a in ox.priced], dtype=np.int64))


def prices(book, ox):
    """(index price S, settlement currency price P) per instrument, USD, at its snapshot."""
    col, stable = asset_columns(book, ox)
    args = kernel_args(col, stable)
    px = kernel_args(book.instr_snap, book.asset_px)
    return (layout_k.unit_prices(*args, *kernel_args(ox.s_code), *px),
            layout_k.unit_prices(*args, *kernel_args(ox.p_code), *px))


def usd_rows(out, rows=None):
    """Phase 1b: the revaluation rows ``rows`` (None: all) of ``out.instr_pnl`` to USD."""
    book, ox, rv = out.book, out.okx, out.rev
    n_rows = out.instr_pnl.shape[0]
    rows = np.arange(n_rows, dtype=np.int64) if rows is None else \
        np.ascontiguousarray(rows, dtype=np.int64)
    if not len(rows):
        return
    s_px, p_px = prices(book, ox)
    KO.usd_rows(out.instr_pnl, *kernel_args(
        rows, rv.row_instr, book.settlement, book.kind, book.mark, s_px, p_px, out.instr_type,
        out.params.und_row, out.scen.price_shock))


def charge_arguments(out, model):
    """The arguments after ``sel`` of :func:`pmrisk.kernel.okx.unit_charges` on ``out``:
    inputs, then the arrays the kernel writes (in place)."""
    book, lay, uf, pf, ox, p = out.book, out.layout, out.unit, out.position, out.okx, out.params
    scen = out.scen
    s_px, p_px = prices(book, ox)
    sig = layout_k.option_vols(*kernel_args(book.kind, book.mark_iv))
    return (*kernel_args(
        lay.pu_start, lay.pu_order, book.pos_instr, lay.q_port, lay.pos_group, book.kind,
        book.settlement, book.contract_size, book.mark, book.forward, book.strike,
        book.is_call, book.years, sig, s_px, p_px, ox.leg, out.instr_greeks, uf.vectors,
        scen.table, scen.loss_weight, lay.unit_und, scen.n_scen, ox.group_rate,
        ox.unit_basis, ox.unit_mr7_rate),
        float(model["mr2_days"]) / 365.0, float(model["mr3_rate"]), float(model["mr5_rate"]),
        float(model["mr7_option_min"]), float(model["mr7_option_fee"]),
        float(model["mr7_option_fee_cap"]), p.rate, pf.value, pf.model_value,
        pf.unrealised_pnl, pf.vega, pf.theta, uf.vega, uf.theta, ox.pos_delta_usd,
        ox.g_delta, ox.g_vega, ox.charges, ox.cash_leg)


def unit_phase(out, model, sel):
    """Phase 2b: MR1-MR9, MMR and IMR of the units ``sel``; the engine's unit MM, IM and
    contributions from them (contribution: the position's loss in the cell that sets
    max(MR1, MR6); the rest is the unit's ``unallocated`` row)."""
    lay, uf, pf, ox, p = out.layout, out.unit, out.position, out.okx, out.params
    units, scen = out.units, out.scen
    kernel = KO.unit_charges if len(sel) >= PARALLEL_MIN else KO.unit_charges_serial
    kernel(sel, *charge_arguments(out, model))
    KO.unit_margins(sel, *kernel_args(
        ox.charges, ox.cash_leg, units.utype, ox.mr7_tables, ox.mr7_rows, ox.mr9_tables,
        ox.mr9_rows), p.im_factor, *kernel_args(
        lay.pu_start, lay.pu_order, out.pos_row, lay.q_port, lay.unit_und, scen.loss_weight,
        out.instr_pnl, uf.worst_case, uf.binding_scenario, uf.open_orders_margin,
        uf.mmp_margin), ox.mr7, ox.mr9, ox.mmr, ox.imr, uf.scenario_margin,
        uf.risk_matrix_margin, uf.maintenance_margin, uf.initial_margin, pf.own_loss,
        pf.mm_contribution, pf.im_contribution, uf.finite)


def account_phase(out, model, acc):
    """Phase 6b: per account of ``acc``, MR8 (borrowing) and the liquidation cost, and the
    account's maintenance margin ``derivatives_mmr + borrow_mmr`` and initial margin
    ``sum IMR + borrow_imr`` (units' open-order margin included).

    An asset's equity is its balance plus the value (unrealised P&L; options: mark value)
    of the positions settled in it; where negative, its USD value L is borrowed:
    ``borrow_mmr = borrow_mmr_rate L``, ``borrow_imr = borrow_imr_rate L``,
    ``liquidation_cost = L (1 + borrow_mmr_rate) spot_taker_fee``."""
    book, af, ox, lay = out.book, out.account, out.okx, out.layout
    col, stable = asset_columns(book, ox)
    KO.account_borrowing(acc, *kernel_args(
        lay.pa_start, lay.pa_order, lay.ba_start, lay.ba_order, ox.pos_asset, ox.bal_asset,
        out.position.value, book.bal_amount, book.acc_snap, col, stable, book.asset_px,
        lay.ua_start, ox.unit_asset),
        float(model["borrow_mmr"]), float(model["borrow_imr"]), float(model["spot_taker_fee"]),
        af.maintenance_margin, af.initial_margin, af.loan_maintenance_margin,
        af.loan_initial_margin, af.liquidation_cost, af.finite, ox.derivatives_mmr,
        ox.borrow_mmr, ox.borrow_imr, ox.liquidation_cost, ox.mr8)

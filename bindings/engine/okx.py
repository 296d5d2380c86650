"""OKX portfolio margin (``margin_rules = "okx"``, preset ``okx_pm``) as phases of the engine.

The engine forms one risk unit per (account, underlying) in USD across settlement currencies
(:func:`pmrisk.engine.units.build_units`), revalues on the scenario grid of each underlying
(MR1's moves ``0, +/-a/3, +/-2a/3, +/-a`` x vol down/same/up, ``a = price_range``, then MR6's
moves ``+/-b``, ``b = extreme_multiple x price_range``, weighted ``cover_fraction`` = 1/2) with
OKX's vol shocks by expiry (``vol_shock = "okx"``), and runs its unit phase.  Then, in
:func:`pmrisk.engine.core.compute`:

1. after revaluation, :func:`usd_rows`: each revaluation row to USD (linear rows at their
   settlement currency's price; inverse rows' coin P&L at the moved index ``S*(1+m)``);
2. after the unit figures, :func:`unit_phase` instead of the scenario margin steps: MR1-MR7
   (:func:`pmrisk.kernel.okx.unit_charges`), MR7 tier scaling, MR9, MMR and IMR per unit;
3. after the account figures, :func:`account_phase`: borrowing (MR8), the liquidation cost,
   and the account's maintenance and initial margin.
"""

from dataclasses import dataclass

import numpy as np

from pmrisk.kernel import okx as KO
from pmrisk.kernel.addons import roll_rate, tiered
from pmrisk.kernel.instruments import INVERSE, OPTION, PERPETUAL

from ..errors import MarginError
from ..io.arrow import kernel_args, sum_by

# a selection of fewer units than this runs the unit kernel on the calling thread
PARALLEL_MIN = 64


@dataclass
class OkxFigures:
    """What the OKX phases keep: static per-instrument and per-type inputs, and the figures
    (per unit: ``charges`` columns :data:`pmrisk.kernel.okx.UNIT_COLUMNS`, ``mr7``
    (adjusted), ``mr9``, ``mmr``, ``imr``; per account: the MR8 and liquidation-cost terms)."""
    inverse_row: np.ndarray         # bool per revaluation row
    leg: np.ndarray                 # per instrument: 0 USDT, 1 USDC, 2 USD (inverse), -1 none
    und: list                       # per instrument: its underlying
    lin_ccy: list                   # per instrument: its linear settlement currency
    assets: list                    # the assets positions settle in and balances hold
    pos_asset: np.ndarray           # per position: code in ``assets`` of its settlement asset
    bal_asset: np.ndarray           # per balance row: code in ``assets``
    group_rate: np.ndarray          # MR4 rate per expiry group
    type_basis: np.ndarray
    type_mr7_rate: np.ndarray
    type_mr7_tiers: list
    mr9_tiers: list
    charges: np.ndarray             # (n_units, len(UNIT_COLUMNS))
    cash_leg: np.ndarray            # (n_units, 3)
    mr7: np.ndarray
    mr9: np.ndarray
    mmr: np.ndarray
    imr: np.ndarray
    pos_delta_usd: np.ndarray
    derivatives_mmr: np.ndarray
    borrow_mmr: np.ndarray
    borrow_imr: np.ndarray
    liquidation_cost: np.ndarray

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
    n_i = len(book.kind)
    inverse = book.settlement == INVERSE
    lin = model["linear_settlement_currency"]
    symbols = book.symbols.to_pylist()
    lin_ccy = []
    for s in symbols:
        parts = s.split("-")
        quote = parts[1] if model["quote_from_symbol"] and len(parts) > 1 else ""
        lin_ccy.append(quote if quote in ("USDT", "USDC") else lin)
    und = [book.und_names[c] for c in book.und_code.tolist()]
    asset = [u if inv else c for u, c, inv in zip(und, lin_ccy, inverse.tolist())]
    names = sorted(set(asset) | set(book.bal_asset))
    code = {a: k for k, a in enumerate(names)}
    instr_asset = np.array([code[a] for a in asset], dtype=np.int64)
    leg = np.array([2 if inv else KO.CURRENCIES.index(c) if c in ("USDT", "USDC") else -1
                    for c, inv in zip(lin_ccy, inverse.tolist())], dtype=np.int64)
    # MR4 rate per expiry group: max(mr4_min_move, exp(mr4_annual_move x T) - 1)
    n_groups = len(lay.group_rate)
    pos_group = lay.pos_group
    g_years = np.zeros(n_groups)
    g_type = np.zeros(n_groups, dtype=np.int64)
    on = pos_group >= 0
    if on.any():
        pi = book.pos_instr[on]
        g_years[pos_group[on]] = np.where(book.kind[pi] == PERPETUAL, 0.0, book.years[pi])
        g_type[pos_group[on]] = units.utype[out.pos_unit[on]]
    per = [model.underlying(u) for u in units.type_und]

    def arr(key):
        return np.array([p[key] for p in per], dtype=np.float64)
    group_rate = roll_rate(g_years, arr("mr4_annual_move")[g_type],
                           arr("mr4_min_move")[g_type]) if n_groups else np.zeros(0)
    n_u, n_acc, n_pos = len(units), len(book.accounts), len(book.quantity)
    z = np.zeros
    return OkxFigures(
        inverse_row=inverse[out.rev.row_instr] if n_i else z(0, bool), leg=leg, und=und,
        lin_ccy=lin_ccy, assets=names,
        pos_asset=instr_asset[book.pos_instr] if n_pos else z(0, np.int64),
        bal_asset=np.array([code[a] for a in book.bal_asset], dtype=np.int64),
        group_rate=np.ascontiguousarray(group_rate, dtype=np.float64),
        type_basis=arr("mr4_basis_move"), type_mr7_rate=arr("mr7_rate"),
        type_mr7_tiers=[p["mr7_tiers"] for p in per], mr9_tiers=model["mr9_tiers"],
        charges=z((n_u, len(KO.UNIT_COLUMNS))), cash_leg=z((n_u, 3)), mr7=z(n_u), mr9=z(n_u),
        mmr=z(n_u), imr=z(n_u), pos_delta_usd=z(n_pos), derivatives_mmr=z(n_acc),
        borrow_mmr=z(n_acc), borrow_imr=z(n_acc), liquidation_cost=z(n_acc))


def prices(book, ox):
    """(index price S, settlement currency price P) per instrument, USD, at its snapshot."""
    snap = book.instr_snap
    return book.prices(ox.und, snap), book.prices(ox.lin_ccy, snap)


def _asset_prices(book, names, code, snap):
    """USD price of asset ``names[code]`` at ``snap``, per row (one lookup per name)."""
    out = np.zeros(len(code))
    for k, name in enumerate(names):
        m = code == k
        if m.any():
            out[m] = book.price_of(name, snap[m])
    return out


def usd_rows(out, rows=None):
    """Phase 1b: the revaluation rows ``rows`` (None: all) of ``out.instr_pnl`` to USD."""
    book, ox, rv = out.book, out.okx, out.rev
    n_rows = out.instr_pnl.shape[0]
    rows = np.arange(n_rows, dtype=np.int64) if rows is None else \
        np.ascontiguousarray(rows, dtype=np.int64)
    if not len(rows):
        return
    s_px, p_px = prices(book, ox)
    instr = rv.row_instr
    factor = np.where(ox.inverse_row, s_px[instr], p_px[instr])
    # a linear future, perpetual or spot moves by its index, not its mark (q c S m)
    lin_delta = ~ox.inverse_row & (book.kind[instr] != OPTION)
    factor = np.where(lin_delta, factor / book.mark[instr] * s_px[instr] / p_px[instr],
                      factor)
    KO.usd_rows(out.instr_pnl, rows, *kernel_args(ox.inverse_row, factor,
                                                  out.params.und_row[out.instr_type[instr]],
                                                  out.scen.price_shock))


def charge_arguments(out, model):
    """The arguments after ``sel`` of :func:`pmrisk.kernel.okx.unit_charges` on ``out``:
    inputs, then the arrays the kernel writes (in place)."""
    book, lay, uf, pf, ox, p = out.book, out.layout, out.unit, out.position, out.okx, out.params
    scen, utype = out.scen, out.units.utype
    s_px, p_px = prices(book, ox)
    sig = np.where(book.kind == OPTION, book.mark_iv, 0.0)
    return (*kernel_args(
        lay.pu_start, lay.pu_order, book.pos_instr, lay.q_port, lay.pos_group, book.kind,
        book.settlement, book.contract_size, book.mark, book.forward, book.strike,
        book.is_call, book.years, sig, s_px, p_px, ox.leg, out.instr_greeks, uf.vectors,
        scen.table, scen.loss_weight, lay.unit_und, scen.n_scen, ox.group_rate,
        ox.type_basis[utype], ox.type_mr7_rate[utype]),
        float(model["mr2_days"]) / 365.0, float(model["mr3_rate"]), float(model["mr5_rate"]),
        float(model["mr7_option_min"]), float(model["mr7_option_fee"]),
        float(model["mr7_option_fee_cap"]), p.rate, pf.value, pf.model_value,
        pf.unrealised_pnl, pf.vega, pf.theta, uf.vega, uf.theta, ox.pos_delta_usd,
        np.zeros(len(ox.group_rate)), np.zeros(len(ox.group_rate)), ox.charges, ox.cash_leg)


def unit_phase(out, model, sel):
    """Phase 2b: MR1-MR9, MMR and IMR of the units ``sel``; the engine's unit MM, IM and
    contributions from them (contribution: the position's loss in the cell that sets
    max(MR1, MR6); the rest is the unit's ``unallocated`` row)."""
    lay, uf, pf, ox, p = out.layout, out.unit, out.position, out.okx, out.params
    units, scen = out.units, out.scen
    utype = units.utype
    kernel = KO.unit_charges if len(sel) >= PARALLEL_MIN else KO.unit_charges_serial
    kernel(sel, *charge_arguments(out, model))
    ch = ox.charges[sel]
    raw = ch[:, 6]
    mr7 = np.zeros(len(sel))
    for t in np.unique(utype[sel]).tolist():
        m = utype[sel] == t
        mr7[m] = tiered(raw[m], [tuple(r) for r in ox.type_mr7_tiers[t]])
    mr9, _ = KO.mr9(ox.cash_leg[sel], [tuple(r) for r in ox.mr9_tiers])
    scen_part = np.maximum(np.maximum(ch[:, 0], ch[:, 1]), ch[:, 5])
    mmr = np.maximum(scen_part + ch[:, 2] + ch[:, 3] + ch[:, 4] + mr9, mr7)
    imr = p.im_factor * mmr
    ox.mr7[sel], ox.mr9[sel], ox.mmr[sel], ox.imr[sel] = mr7, mr9, mmr, imr
    # the engine's unit figures (USD: the unit's settlement currency is USD)
    uf.scenario_margin[sel] = uf.worst_case[sel]
    uf.risk_matrix_margin[sel] = mmr
    uf.maintenance_margin[sel] = mmr
    uf.initial_margin[sel] = imr + uf.open_orders_margin[sel] + uf.mmp_margin[sel]
    # contributions: own loss in the binding cell of max(MR1, MR6), both margins alike
    chosen = np.zeros(len(units), dtype=bool)
    chosen[sel] = True
    pos = np.flatnonzero(chosen[out.pos_unit]) if len(out.pos_unit) else \
        np.zeros(0, np.int64)
    pu = out.pos_unit[pos]
    cell = uf.binding_scenario[pu]
    w = scen.loss_weight[lay.unit_und[pu], cell]
    own = -w * lay.q_port[pos] * out.instr_pnl[out.pos_row[pos], cell]
    own = np.where(uf.worst_case[pu] > 0.0, own, 0.0)
    pf.own_loss[pos] = own
    pf.mm_contribution[pos] = own
    pf.im_contribution[pos] = p.im_factor * own
    uf.finite[sel] = np.isfinite(ox.charges[sel]).all(axis=1) & np.isfinite(mmr) \
        & np.isfinite(uf.initial_margin[sel])


def account_phase(out, model, acc):
    """Phase 6b: per account of ``acc``, MR8 (borrowing) and the liquidation cost, and the
    account's maintenance margin ``derivatives_mmr + borrow_mmr`` and initial margin
    ``sum IMR + borrow_imr`` (units' open-order margin included).

    An asset's equity is its balance plus the value (unrealised P&L; options: mark value)
    of the positions settled in it; where negative, its USD value L is borrowed:
    ``borrow_mmr = borrow_mmr_rate L``, ``borrow_imr = borrow_imr_rate L``,
    ``liquidation_cost = L (1 + borrow_mmr_rate) liquidation_fee``."""
    book, af, ox, pf = out.book, out.account, out.okx, out.position
    n_acc = len(book.accounts)
    names = ox.assets
    n_a = max(len(names), 1)
    # only the positions and balances of the selected accounts (a tick selects a few)
    chosen = np.zeros(n_acc, dtype=bool)
    chosen[acc] = True
    pos = np.flatnonzero(chosen[book.pos_account])
    bal = np.flatnonzero(chosen[book.bal_account])
    # position values back in their settlement asset: USD / price of that asset
    pos_px = _asset_prices(book, names, ox.pos_asset[pos],
                           book.acc_snap[book.pos_account[pos]])
    with np.errstate(divide="ignore", invalid="ignore"):
        native = np.where(pos_px > 0, pf.value[pos] / pos_px, 0.0)
    keys = np.concatenate([book.pos_account[pos] * n_a + ox.pos_asset[pos],
                           book.bal_account[bal] * n_a + ox.bal_asset[bal]])
    amount = np.concatenate([native, book.bal_amount[bal]])
    uniq, inv = np.unique(keys, return_inverse=True)
    eq = np.bincount(inv.ravel(), weights=amount, minlength=len(uniq)) if len(uniq) else \
        np.zeros(0)
    a_of = uniq // n_a
    px = _asset_prices(book, names, uniq % n_a, book.acc_snap[a_of])
    liab = np.where(eq < 0.0, -eq * px, 0.0)
    L = sum_by(a_of, weights=liab, minlength=n_acc)
    rate_mm, rate_im = float(model["borrow_mmr"]), float(model["borrow_imr"])
    deriv = af.maintenance_margin[acc] - af.loan_maintenance_margin[acc]
    unit_im = af.initial_margin[acc] - af.loan_maintenance_margin[acc]
    ox.derivatives_mmr[acc] = deriv
    ox.borrow_mmr[acc] = rate_mm * L[acc]
    ox.borrow_imr[acc] = rate_im * L[acc]
    ox.liquidation_cost[acc] = L[acc] * (1.0 + rate_mm) * float(model["liquidation_fee"])
    af.loan_maintenance_margin[acc] = ox.borrow_mmr[acc]
    af.maintenance_margin[acc] = deriv + ox.borrow_mmr[acc]
    af.initial_margin[acc] = unit_im + ox.borrow_imr[acc]
    af.liquidation_cost[acc] = ox.liquidation_cost[acc]
    af.finite[acc] = np.where(np.isfinite(af.maintenance_margin[acc])
                              & np.isfinite(af.initial_margin[acc])
                              & np.isfinite(ox.liquidation_cost[acc]), af.finite[acc], 0.0)

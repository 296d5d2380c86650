"""Excluded instruments (SPEC §6): positions the model lists by symbol, kind or underlying are
left out of portfolio aggregation and margined standalone by the SPAN rule: the 16 scenarios
(price 0, +-1/3, +-2/3, +-1 of the underlying's ``price_range``, vol up and down, plus
+-``extreme_multiple`` ranges at ``cover_fraction``) of :func:`pmrisk.kernel.scenarios.span16`
with the model's vol shocks and horizon, plus the short option minimum.
"""

import numpy as np

from pmrisk import kernel as K
from pmrisk.kernel import scenarios as S
from pmrisk.kernel.instruments import KINDS

from ._arrow import kernel_args


def excluded_positions(book, model):
    """Boolean mask over positions: excluded from portfolio aggregation by the model."""
    ex = model["exclude"]
    if not any(ex.get(k) for k in ("symbols", "kinds", "underlyings")):
        return np.zeros(len(book.quantity), dtype=bool)
    symbols = np.array(book.symbols.to_pylist(), dtype=object)
    und = np.array(book.und_names, dtype=object)[book.und_code] if len(book.und_code) else \
        np.zeros(0, dtype=object)
    kinds = np.array(KINDS, dtype=object)[book.kind] if len(book.kind) else \
        np.zeros(0, dtype=object)
    instr = (np.isin(symbols, list(ex.get("symbols", [])))
             | np.isin(kinds, list(ex.get("kinds", [])))
             | np.isin(und, list(ex.get("underlyings", []))))
    return instr[book.pos_instr]


def standalone_margin(book, model, units, pos_unit, pos_row, mask, pnl_args, unit_px,
                      som_per_pos):
    """SPAN standalone margin (settlement currency) of each position in ``mask`` (0 elsewhere):
    the worst weighted loss over its underlying's 16 SPAN scenarios plus its short option
    minimum ``som_per_pos``.  ``pos_row`` is each position's revaluation row."""
    out = np.zeros(len(mask))
    sel = np.flatnonzero(mask)
    if not len(sel):
        return out
    sets = []
    for u in units.underlyings:
        p = model.underlying(u)
        sets.append(S.span16(p["price_range"], p["extreme_multiple"], p["cover_fraction"]))
    scen = S.pad(sets)
    ipnl = K.instrument_pnl(*pnl_args[:15], *kernel_args(
        scen.n_scen, scen.price_shock, scen.log1p_shock, scen.vol_code, scen.vol_factor,
        scen.pnl_scale))
    vectors = book.quantity[sel, None] * ipnl[pos_row[sel]]
    und_row = units.type_und_code[units.utype[pos_unit[sel]]]
    _, worst, _ = K.weighted_worst(*kernel_args(
        vectors, und_row, unit_px[pos_unit[sel]], scen.n_scen, scen.loss_weight,
        scen.gain_weight, scen.gain_cap_usd, scen.dampener_usd, scen.vol_code))
    out[sel] = worst + som_per_pos[sel]
    return out

"""Excluded instruments: positions the model lists by symbol, kind or underlying are
left out of portfolio aggregation and margined standalone by the SPAN rule: the 16 scenarios
(price 0, +-1/3, +-2/3, +-1 of the underlying's ``price_range``, vol up and down, plus
+-``extreme_multiple`` ranges at ``cover_fraction``) of :func:`pmrisk.kernel.scenarios.span16`
with the model's vol shocks and horizon, plus the short option minimum.
"""

import numpy as np

from pmrisk import kernel as K
from pmrisk.kernel import scenarios as S
from pmrisk.kernel.instruments import KINDS


def excluded_positions(book, model):
    """Boolean mask over positions: excluded from portfolio aggregation by the model."""
    return excluded_instruments(book, model)[book.pos_instr]


def excluded_instruments(book, model):
    """Boolean mask over the active instruments: excluded by symbol, kind or underlying."""
    ex = model["exclude"]
    if not any(ex.get(k) for k in ("symbols", "kinds", "underlyings")):
        return np.zeros(len(book.kind), dtype=bool)
    symbols = np.array(book.symbols.to_pylist(), dtype=object)
    und = np.array(book.und_names, dtype=object)[book.und_code] if len(book.und_code) else \
        np.zeros(0, dtype=object)
    kinds = np.array(KINDS, dtype=object)[book.kind] if len(book.kind) else \
        np.zeros(0, dtype=object)
    return (np.isin(symbols, list(ex.get("symbols", [])))
            | np.isin(kinds, list(ex.get("kinds", [])))
            | np.isin(und, list(ex.get("underlyings", []))))


class Standalone:
    """SPAN standalone margin of single positions: revalues every row of
    ``pnl_args`` once on SPAN's 16 scenarios of its underlying."""

    def __init__(self, model, units, pnl_args):
        sets = []
        for u in units.underlyings:
            p = model.underlying(u)
            sets.append(S.span16(p["price_range"], p["extreme_multiple"], p["cover_fraction"]))
        self.scen = S.pad(sets)
        sc = self.scen
        self.ipnl = K.instrument_pnl(*pnl_args.on(sc))

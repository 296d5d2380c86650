"""Risk units: (underlying, settlement currency) per instrument, and the
(account, unit) pairs a call margins."""

from dataclasses import dataclass

import numpy as np

from pmrisk.kernel.layout import unit_prices
from pmrisk.kernel.rowkeys import settlement_types, split_pairs, unit_keys, unit_pairs

from ..io.arrow import kernel_args, unique_keys
from ..errors import MarginError


@dataclass
class Units:
    type_names: list            # unit type names 'BTC/BTC', per type code
    type_und: list              # underlying name per type
    type_ccy: list              # settlement currency per type
    type_und_code: np.ndarray   # row in the scenario arrays per type
    underlyings: list           # scenario rows: underlying names
    # (account, unit) pairs, sorted by account then type
    account: np.ndarray
    utype: np.ndarray
    settle_px: np.ndarray       # per unit: USD per 1 settlement currency (its snapshot's)
    index_px: np.ndarray        # per unit: USD per 1 underlying

    def __len__(self):
        return len(self.account)


def settle_price(ccy, index_prices, stablecoins, table="index"):
    """USD price of ``ccy`` from ``{asset: price}``: its row, else 1 for a stablecoin, else an
    input error (risk-array input, which has one index table and no snapshots)."""
    if ccy in index_prices or ccy in stablecoins:
        return index_prices.get(ccy, 1.0)
    raise MarginError(table, "underlying", "an index row for every asset that is not a "
                      "stablecoin", rows=[(ccy,)], keys=("underlying",),
                      hint=f"Add an index_price for {ccy}, or list it in the model's stablecoins")


def build_units(book, model):
    """Unit types of the active instruments and reserves, and the (account, unit) pairs held
    through positions, open orders or reserves.  Returns ``(Units, instr_type, pos_unit,
    ord_unit, res_unit)``."""
    lin = model["linear_settlement_currency"]
    names, und, ccy = [], [], []
    lookup = {}
    # okx_pm: one USD unit per underlying, named by it, across settlement currencies
    okx = model["margin_rules"] == "okx"

    def type_of(u, c):
        c = "USD" if okx else c
        key = u if okx else f"{u}/{c}"
        if key not in lookup:
            lookup[key] = len(names)
            names.append(key)
            und.append(u)
            ccy.append(c)
        return lookup[key]

    # one unit type per (underlying, settlement kind) present, then map instruments to it
    present, combo_inv = settlement_types(*kernel_args(book.und_code, book.settlement))
    combo_type = np.array([type_of(book.und_names[c // 2], book.und_names[c // 2] if c % 2
                                   else lin) for c in present], dtype=np.int64)
    instr_type = combo_type[combo_inv.ravel()] if len(present) else np.zeros(0, np.int64)
    res_type = np.array([type_of(*r.split("/", 1)) for r in book.res_unit], dtype=np.int64)
    # unit types in a canonical order (underlying, then settlement currency, by name): the
    # same whichever snapshots or reserves a call holds, so one pass over a history orders
    # each snapshot's units as a call on that snapshot alone does
    perm = sorted(range(len(names)), key=lambda t: (und[t], ccy[t]))
    rank = np.empty(len(names), dtype=np.int64)
    rank[perm] = np.arange(len(names))
    names, und, ccy = [names[t] for t in perm], [und[t] for t in perm], [ccy[t] for t in perm]
    instr_type = rank[instr_type] if len(instr_type) else instr_type
    res_type = rank[res_type] if len(res_type) else res_type
    underlyings = list(dict.fromkeys(und))
    und_code = np.array([underlyings.index(u) for u in und], dtype=np.int64)

    n_t = max(len(names), 1)
    rows = kernel_args(instr_type, book.pos_account, book.pos_instr, book.ord_account,
                       book.ord_instr, book.res_account, res_type)
    ok, account, utype, inverse = unit_pairs(n_t, *rows)
    if not ok:                          # keys too sparse for a table of them: a sort
        pair, inverse = unique_keys(unit_keys(n_t, *rows))
        account, utype = split_pairs(*kernel_args(pair), n_t)
    n_p, n_o = len(book.pos_account), len(book.ord_account)
    parts = (inverse[:n_p], inverse[n_p:n_p + n_o], inverse[n_p + n_o:])
    # prices per unit at its account's snapshot (validated in load_book: never NaN here)
    snap = book.acc_snap[account]
    type_und = np.array(und, dtype=object)
    type_ccy = np.array(ccy, dtype=object)
    index_px = prices_by_type(book, type_und, utype, snap)
    settle_px = prices_by_type(book, type_ccy, utype, snap)
    units = Units(type_names=names, type_und=und, type_ccy=ccy, type_und_code=und_code,
                  underlyings=underlyings, account=account, utype=utype,
                  settle_px=settle_px, index_px=index_px)
    return units, instr_type, parts[0], parts[1], parts[2]


def prices_by_type(book, type_asset, utype, snap):
    """USD price of each unit's asset (by unit type) at its snapshot, in one gather."""
    col_of = {a: i for i, a in enumerate(book.assets)}
    col = np.array([col_of.get(a, -1) for a in type_asset], dtype=np.int64)
    stable = np.array([a in book.stablecoins for a in type_asset], dtype=np.int64)
    return unit_prices(*kernel_args(col, stable, utype, snap, book.asset_px))

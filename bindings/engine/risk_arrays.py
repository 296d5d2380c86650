"""``pmrisk.margin_from_risk_arrays``: margin from precomputed scenario P&L.

The caller supplies the P&L per contract of each symbol in each scenario of the model's set
(SPAN files' 16 risk-array values, or any custom or historical set priced elsewhere).  Values
are final cell values: weights such as the extreme cover fraction are already applied, so the
loss weights of the model's set are not applied again.  Aggregation, worst case, binding cell,
MM/IM factors and contributions then work as in :func:`pmrisk.margin`.
"""

import numpy as np
import pyarrow as pa

from pmrisk.kernel import scenarios as S
from pmrisk.kernel.instruments import LINEAR, SPOT
from pmrisk.kernel.rowkeys import split_pairs, unit_keys
from pmrisk.kernel.scenarios import TABLE_EXTREME

from ..io import schema
from ..io.arrow import (as_table, check_columns, codes, duplicated, float_column, has, lookup,
                        kernel_args, raise_rows, str_column, unique_keys, valuation_ns)
from ..io.book import Book, read_index
from .core import Revaluation, compute, lay_out, resolve
from ..errors import MarginError
from ..model.model import Model
from .resources import Shape, check_memory
from ..results import build, risk_vectors_mode
from ..model.scenario_table import scenario_set_for
from .units import Units, settle_price

PORTFOLIO = "portfolio"
_NONE_I = np.zeros(0, dtype=np.int64)
_NO_EQUITY = ("equity", "actual_equity", "available_margin", "max_withdrawable",
              "margin_ratio", "status")


def margin_from_risk_arrays(positions, risk_arrays, model=None, index=None,
                            risk_vectors=False):
    """Margin from risk arrays.

    Parameters
    ----------
    positions : Arrow table-like
        ``account, symbol, quantity``.
    risk_arrays : Arrow table-like
        ``symbol, scenario, pnl`` [, ``unit``]: P&L per contract (> 0 is a profit, the
        opposite sign of SPAN files) in row ``scenario`` (0-based) of the model's scenario set.
        Without ``unit`` every symbol is in one unit, ``portfolio``.
    model : preset name, dict, TOML path or Model (default ``span``)
    index : Arrow table-like, optional
        ``underlying, index_price``: USD prices of the units' settlement currencies, for the
        ``*_usd`` columns (stablecoins and ``portfolio`` count 1).
    risk_vectors : bool, "units" or "positions"
        As in :func:`pmrisk.margin`.

    Returns
    -------
    MarginResult
        As :func:`pmrisk.margin`; equity-derived account fields and Greeks are null (not
        known from risk arrays).

    Examples
    --------
    >>> import pmrisk
    >>> ra = {"symbol": ["FUT"] * 16, "scenario": list(range(16)),
    ...       "pnl": [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670,
    ...               10000, 10000, -10000, -10000, 7000, -7000]}
    >>> r = pmrisk.margin_from_risk_arrays(
    ...     {"account": ["a"], "symbol": ["FUT"], "quantity": [1.0]}, ra, model="span")
    >>> r.units["worst_case"][0].as_py(), r.units["binding_scenario"][0].as_py() + 1
    (10000.0, 13)
    """
    # risk arrays carry no time: a dated model takes the set in force now
    model = Model.coerce(model if model is not None else "span").at(valuation_ns(None))
    if model["cross_unit"] == "correlated":
        raise MarginError("model", "cross_unit", "\"sum\" with risk arrays: correlated joint "
                          "stress revalues each underlying at its own joint moves, which "
                          "precomputed arrays do not cover",
                          hint="Pass model=Model.preset(...).with_overrides("
                          "{\"cross_unit\": \"sum\"}), or margin the book with "
                          "pmrisk.margin")
    if model["margin_rules"] != "scenario":
        raise MarginError("model", "margin_rules", "\"scenario\" with risk arrays: the venue "
                          "rules read each instrument's terms and prices, which precomputed "
                          f"arrays do not carry, got {model['margin_rules']!r}",
                          hint="Margin the book with pmrisk.margin")
    if any(model["exclude"].get(k) for k in ("symbols", "kinds", "underlyings")):
        raise MarginError("model", "exclude", "no excluded instruments with risk arrays (the "
                          "standalone SPAN margin revalues the instrument)")
    risk_vectors = risk_vectors_mode(risk_vectors)
    pos = as_table(positions, "positions")
    ra = as_table(risk_arrays, "risk_arrays")
    idx = as_table(index, "index")
    for name, t in (("positions", pos), ("risk_arrays", ra)):
        if t is None:
            raise MarginError(name, None, "a table (it is required)")
    check_columns(pos, "positions", schema.RISK_ARRAY_POSITIONS)
    check_columns(ra, "risk_arrays", schema.RISK_ARRAYS)
    if idx is not None:
        check_columns(idx, "index", schema.INDEX)
    for name, t in (("positions", pos), ("risk_arrays", ra), ("index", idx)):
        if has(t, "time"):
            raise MarginError(name, "time", "no time column in risk-array mode: call once "
                              "per snapshot (risk arrays are priced for one day)")

    # -- risk arrays: symbol x scenario, complete and unique --------------------------------
    ra_sym = str_column(ra, "symbol")
    sym_codes, symbols = codes(ra_sym)
    scen_no = np.asarray(ra.column("scenario").to_numpy(zero_copy_only=False), dtype=np.int64)
    pnl = float_column(ra, "risk_arrays", "pnl")
    dup = duplicated(sym_codes, scen_no)
    if dup.any():
        raise_rows(ra, "risk_arrays", "scenario", dup, "one row per (symbol, scenario)")
    n_sym = len(symbols)
    if has(ra, "unit"):
        unit_of_row = str_column(ra, "unit").to_pylist()
        sym_unit = [None] * n_sym
        bad = np.zeros(ra.num_rows, dtype=bool)
        for r, (s, u) in enumerate(zip(sym_codes, unit_of_row)):
            if sym_unit[s] is None:
                sym_unit[s] = u
            elif sym_unit[s] != u:
                bad[r] = True
        if bad.any():
            raise_rows(ra, "risk_arrays", "unit", bad, "one unit per symbol")
    else:
        sym_unit = [PORTFOLIO] * n_sym

    type_names = list(dict.fromkeys(sym_unit))
    type_und = [n.split("/", 1)[0] if "/" in n else n for n in type_names]
    type_ccy = [n.split("/", 1)[1] if "/" in n else n for n in type_names]
    underlyings = list(dict.fromkeys(type_und))
    sets = [_final_cells(scenario_set_for(model, u)) for u in underlyings]
    scen = S.pad(sets)
    und_code = np.array([underlyings.index(u) for u in type_und], dtype=np.int64)
    sym_type = np.array([type_names.index(u) for u in sym_unit], dtype=np.int64)
    n_cells = scen.n_scen[und_code[sym_type]]
    bad = (scen_no < 0) | (scen_no >= n_cells[sym_codes])
    if bad.any():
        raise_rows(ra, "risk_arrays", "scenario", bad,
                   f"0-based rows of the model's scenario set (0..{int(n_cells.max()) - 1})")
    matrix = np.zeros((n_sym, scen.price_shock.shape[1]))
    matrix[sym_codes, scen_no] = pnl
    count = np.bincount(sym_codes, minlength=n_sym)
    if (count != n_cells).any():
        s = int(np.flatnonzero(count != n_cells)[0])
        raise MarginError("risk_arrays", "scenario", f"all {int(n_cells[s])} scenarios of "
                          "every symbol", rows=[(symbols[s].as_py(),)], keys=("symbol",))

    # -- positions ---------------------------------------------------------------------------
    pos_row = lookup(str_column(pos, "symbol"), symbols)
    if (pos_row < 0).any():
        raise_rows(pos, "positions", "symbol", pos_row < 0, "symbols present in risk_arrays")
    quantity = float_column(pos, "positions", "quantity")
    acc_codes, accounts = codes(str_column(pos, "account"))
    dup = duplicated(acc_codes, pos_row)
    if dup.any():
        raise_rows(pos, "positions", "symbol", dup, "one row per (account, symbol)")

    prices = read_index(idx) if idx is not None else {}
    stable = set(model["stablecoins"]) | {PORTFOLIO}
    settle_px = np.array([settle_price(c, prices, stable) for c in type_ccy])
    index_px = np.array([prices.get(u, 1.0) for u in type_und])
    n_t = len(type_names)
    pair, pos_unit = unique_keys(unit_keys(n_t, *kernel_args(
        sym_type, acc_codes, pos_row, _NONE_I, _NONE_I, _NONE_I, _NONE_I)))
    account, utype = split_pairs(*kernel_args(pair), n_t)
    units = Units(type_names=type_names, type_und=type_und, type_ccy=type_ccy,
                  type_und_code=und_code, underlyings=underlyings, account=account, utype=utype,
                  settle_px=settle_px[utype], index_px=index_px[utype])
    n_units = len(units)

    check_memory(model, Shape(rows=len(pos_row), positions=len(pos_row), accounts=len(accounts),
                              units=n_units, revaluation_rows=n_sym,
                              width=int(scen.price_shock.shape[1])), risk_vectors)
    # the engine's phases on a stand-in book: one spot-like instrument per symbol at mark 0
    # (no value, no Greeks, no add-ons), its revaluation row the caller's risk array
    n_pos, n_acc = len(pos_row), len(accounts)
    zi = np.zeros(n_sym, np.int64)
    book = Book(timed=False, snap_ns=np.zeros(1, np.int64), accounts=accounts,
                acc_snap=np.zeros(n_acc, np.int64), symbols=symbols,
                instr_snap=zi, und_code=und_code[sym_type], und_names=underlyings,
                kind=np.full(n_sym, SPOT, np.int64), settlement=np.full(n_sym, LINEAR, np.int64),
                contract_size=np.ones(n_sym), mark=np.zeros(n_sym), forward=np.zeros(n_sym),
                strike=np.zeros(n_sym), is_call=zi, expiry_ns=zi, years=np.zeros(n_sym),
                mark_iv=np.full(n_sym, np.nan), assets=list(prices),
                asset_px=np.array([list(prices.values())], np.float64),
                stablecoins=frozenset(stable), pos_account=acc_codes, pos_instr=pos_row,
                quantity=quantity, entry_price=np.full(n_pos, np.nan),
                leverage=np.full(n_pos, np.nan), ord_account=_NONE_I,
                ord_instr=_NONE_I, ord_qty=np.zeros(0), ord_id=pa.array([], pa.string()),
                bal_account=_NONE_I, bal_asset=[], bal_amount=np.zeros(0),
                res_account=_NONE_I, res_unit=[], res_mmp=np.zeros(0), res_oo=np.zeros(0))
    rv = Revaluation(units=units, itype=sym_type, pos_unit=pos_unit, ord_unit=_NONE_I,
                     res_unit=_NONE_I, scen=scen, args=None, pos_row=pos_row, ord_row=_NONE_I,
                     row_instr=np.arange(n_sym, dtype=np.int64), floored=_NONE_I,
                     params=resolve(model, units))
    out = lay_out(book, model, rv, keep_vectors=bool(risk_vectors))
    out.instr_pnl = matrix
    compute(out, model, rows=_NONE_I, instruments=_NONE_I)
    result = build(out, model, risk_vectors)
    result.accounts = _nulls(result.accounts, _NO_EQUITY)
    result.units = _nulls(result.units, [c for c in result.units.column_names
                                         if c.split("_")[0] in ("delta", "gamma", "vega",
                                                                "theta")])
    drop = ("value", "model_value", "unrealised_pnl", "delta", "gamma", "vega", "theta")
    result.positions = result.positions.drop_columns(
        [c for c in result.positions.column_names if c.removesuffix("_usd") in drop])
    return result


def _final_cells(s):
    """Risk-array cells are final: no loss weight again; gains of extreme cells (already
    scaled by the cover fraction in SPAN files) count in full."""
    gain = np.where(s.table == TABLE_EXTREME, 1.0, s.gain_weight)
    return s._replace(loss_weight=np.ones(s.size), gain_weight=gain,
                      pnl_scale=np.ones(s.size))


def _nulls(table, cols):
    for c in cols:
        i = table.column_names.index(c)
        table = table.set_column(i, pa.field(c, table.schema.field(c).type),
                                 pa.nulls(table.num_rows, table.schema.field(c).type))
    return table

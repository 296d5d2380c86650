"""Binance unified account (``margin_rules = "brackets"``, preset ``binance_um``): the engine's
bracket phases.

Binance Portfolio Margin (Pro) margins futures by notional brackets, not by a stress grid.
Per position, with ``b`` the bracket its notional falls in (``floor_b < N <= cap_b``):

* USDⓈ-M: ``N = |quantity x contract_size x mark|`` (USD), ``MM = N x mmr_b - cum_b`` (USD);
* COIN-M: ``N = |quantity x contract_size_usd / mark|`` (coin), ``MM`` the same, in coin (the
  unit's settlement currency; times the index price in USD);
* ``IM = N / leverage``: the position's ``leverage`` column if given, else the bracket's
  maximum leverage (reported, not used for status).

A unit's MM and IM are the sums over its positions, and each position's contribution is its own
MM (IM), so contributions add up to the margin exactly.  The accounts phase is the engine's own
(:func:`pmrisk.kernel.assemble.account_figures`): equity (collateral rates on positive balances
only), loan MM ``= loans x loan MMR`` (the rate for the model's ``margin_leverage``), MM = the
units' MM in USD + loan MM; the margin ratio (Binance's uniMMR) is equity / MM.  IM = the
units' IM in USD + ``loan_im_factor`` x loan MM, and ``binance_um``'s ``loan_im_factor`` is 0:
its IM is ``sum N / leverage``, the loans' MM left out.

Ladders per position (:func:`lay_out_brackets`, once per book): the model's own ladder for the
symbol (key ``brackets``), else the ladder pmrisk ships for it in force at the model's date
(:func:`ladder_date`: its ``brackets_as_of``, else the date its preset was taken at; neither:
each snapshot's time for a book with a ``time`` column, the latest otherwise), else the
model's default ladder for the position's underlying, settlement (USDⓈ-M or COIN-M) and
instrument kind (``perpetual``, ``future``), else its default for the underlying and
settlement given without a kind.  A position without one, and
anything a ladder does not margin (options, spot positions, open orders), is a
:class:`~pmrisk.MarginError` naming the rows.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pmrisk.kernel import brackets as KB
from pmrisk.kernel.instruments import INVERSE, KINDS as INSTRUMENT_KINDS

from ..errors import MarginError
from ..io.arrow import codes, iso_ns, kernel_args, to_ns

KINDS = {0: "usd_m", 1: "coin_m"}
LOAN_MMR_KEYS = {"3x": "loan_mmr_3x", "5x": "loan_mmr_5x", "10x": "loan_mmr_10x"}


@dataclass(frozen=True)
class BracketLayout:
    """Per position its ladder (index into the flat ladder arrays) and chosen leverage (0: the
    bracket's maximum); per instrument whether it is COIN-M; the ladders, flat; and each
    ladder's description (symbol, effective date) for result tables and errors."""
    pos_ladder: np.ndarray
    leverage: np.ndarray
    coin_margined: np.ndarray
    floor: np.ndarray
    cap: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    max_leverage: np.ndarray
    offsets: np.ndarray
    ladders: tuple


def loan_mmr(model):
    """The margin-loan MMR of ``model``: ``loan_mmr_<margin_leverage>`` when
    ``margin_leverage`` is ``"3x"``, ``"5x"`` or ``"10x"``, else ``loan_mmr``.

    >>> from pmrisk.model.model import Model
    >>> from pmrisk.engine.binance import loan_mmr
    >>> m = Model.preset("standard")
    >>> loan_mmr(m), loan_mmr(m.with_overrides({"margin_leverage": "10x"}))
    (0.1, 0.05)
    """
    key = LOAN_MMR_KEYS.get(model["margin_leverage"], "loan_mmr")
    return float(model[key])


def ladder_date(model):
    """The date (int ns) at which ``model`` takes the shipped ladders, or None (each
    snapshot's time for a book with a ``time`` column, the latest ladders otherwise): the
    model's ``brackets_as_of`` when it is a date, else the date its preset was taken at
    (``Model.preset("binance_um", as_of=...)``; per period of a ``"valuation_time"`` model).

    >>> from pmrisk.model.model import Model
    >>> from pmrisk.engine.binance import ladder_date
    >>> ladder_date(Model.preset("binance_um")) is None
    True
    >>> ladder_date(Model.preset("binance_um", as_of="2022-01-01"))
    1640995200000000000
    """
    pinned = model["brackets_as_of"]
    if pinned != "snapshot":
        return to_ns(pinned, "brackets_as_of")
    as_of = model.as_of
    if isinstance(as_of, (int, np.integer)):
        return int(as_of)
    return None


def _model_ladders(model):
    from ..venues.brackets import model_ladders
    return model.cached(("brackets", "model_ladders"), lambda: model_ladders(model["brackets"]))


def _refuse(book, idx, table, column, expected, hint=None):
    """A MarginError naming the positions (or open orders) of the row indices ``idx``."""
    if table == "positions":
        acc, instr = book.pos_account, book.pos_instr
    else:
        acc, instr = book.ord_account, book.ord_instr
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    rows = []
    for i in idx[:5]:
        a = int(acc[i])
        key = book.ord_id[int(i)].as_py() if table == "open_orders" else \
            book.symbols[int(instr[i])].as_py()
        row = (book.accounts[a].as_py(), key)
        if book.timed:
            row += (iso_ns(book.snap_ns[book.acc_snap[a]]),)
        rows.append(row)
    keys = ("account", "order_id" if table == "open_orders" else "symbol") + \
        (("time",) if book.timed else ())
    raise MarginError(table, column, expected, rows=rows, keys=keys, n_bad=len(idx), hint=hint)


def lay_out_brackets(book, model):
    """The :class:`BracketLayout` of ``book`` under ``model`` (``margin_rules =
    "brackets"``); refuses what brackets do not margin."""
    from ..venues.brackets import packed
    leverage, coin_margined, ladderless = KB.bracket_inputs(*kernel_args(
        book.pos_instr, book.kind, book.settlement, book.leverage))
    if len(ladderless):
        _refuse(book, ladderless, "positions", "symbol", "perpetuals and futures only: "
                "binance_um margins a position by its notional bracket, and Binance publishes "
                "no bracket or margin formula for options (or spot positions) in a unified "
                "account", hint="Margin options with another model (deribit_pme, standard); "
                "hold spot as balances")
    if len(book.ord_qty):
        _refuse(book, np.arange(len(book.ord_qty)), "open_orders", "symbol",
                "no open orders: binance_um has no rule for the margin of open orders",
                hint="Leave open_orders out, or margin them with another model")
    by_symbol, by_und = _model_ladders(model)
    instr_ladder, ladders = _instrument_ladders(book, by_symbol, by_und, ladder_date(model))
    pos_ladder, missing = KB.position_ladders(*kernel_args(book.pos_instr, instr_ladder))
    if len(missing):
        _refuse(book, missing, "positions", "symbol", "a bracket ladder for every symbol "
                "(pmrisk ships BTCUSDT and BTCUSD_PERP)",
                hint="Load your account's ladders with Model.with_brackets(<Binance "
                "leverage-bracket response>), or give a default ladder per underlying in the "
                "model's brackets rows (underlying instead of symbol; kind for one instrument "
                "kind)")
    flat = packed(ladders)
    for a in (leverage, coin_margined, pos_ladder):
        a.flags.writeable = False       # fixed with the book, as the kernels take them
    return BracketLayout(pos_ladder=pos_ladder, leverage=leverage, coin_margined=coin_margined,
                         ladders=tuple(ladders),
                         **{k: flat[k] for k in ("floor", "cap", "mmr", "cum", "max_leverage",
                                                 "offsets")})


def _instrument_ladders(book, by_symbol, by_und, pin_ns):
    """Per active instrument instance, the index of its ladder in the returned list (-1:
    none): the model's own for its symbol, else the shipped one in force at ``pin_ns`` (None:
    at the instance's snapshot time for a timed book, the latest otherwise), else the model's
    default for its underlying, settlement (USDⓈ-M or COIN-M) and instrument kind, else its
    kind-less default for the underlying and settlement.  One pass per distinct symbol."""
    from ..venues.brackets import shipped_for
    n_i = len(book.kind)
    out = np.full(n_i, -1, dtype=np.int64)
    ladders = []
    if not n_i:
        return out, ladders
    coin = book.settlement == INVERSE
    sym_code, names = codes(book.symbols)
    order = np.argsort(sym_code, kind="stable")
    bounds = np.searchsorted(sym_code[order], np.arange(len(names) + 1))

    def index_of(lad):
        for j, x in enumerate(ladders):
            if x is lad:
                return j
        ladders.append(lad)
        return len(ladders) - 1

    for k, symbol in enumerate(names.to_pylist()):
        members = order[bounds[k]:bounds[k + 1]]
        kind = KINDS[int(coin[members[0]])]
        own = by_symbol.get(symbol)
        if own is not None:
            if own.kind != kind:
                _refuse(book, np.flatnonzero(np.isin(book.pos_instr, members)), "positions",
                        "symbol",
                        f"a {kind} ladder for a {kind} instrument, got a {own.kind} ladder "
                        "in the model's brackets", hint="USDⓈ-M ladders have notionalFloor/"
                        "notionalCap, COIN-M ladders qtyFloor/qtyCap")
            out[members] = index_of(own)
            continue
        shipped, since = shipped_for(symbol)
        keep = [j for j, lad in enumerate(shipped) if lad.kind == kind]
        shipped, since = [shipped[j] for j in keep], since[keep]
        pick = np.full(len(members), -1, dtype=np.int64)
        if shipped:
            if pin_ns is not None:
                t = np.full(len(members), pin_ns, dtype=np.int64)
            elif book.timed:
                t = book.snap_ns[book.instr_snap[members]]
            else:
                t = np.full(len(members), np.iinfo(np.int64).max, dtype=np.int64)
            pick = np.searchsorted(since, t, side="right") - 1
            for j in np.unique(pick[pick >= 0]).tolist():
                out[members[pick == j]] = index_of(shipped[j])
        und = book.und_names[book.und_code[members[0]]]
        default = by_und.get((und, kind, INSTRUMENT_KINDS[int(book.kind[members[0]])]))
        if default is None:
            default = by_und.get((und, kind, None))
        if default is not None and (pick < 0).any():
            out[members[pick < 0]] = index_of(default)
    return out, ladders


def bracket_phase(out, sel, parallel):
    """The bracket phase over the units ``sel`` (in place): per position its notional,
    bracket row, MM and IM (PositionFigures ``notional``, ``bracket_row``,
    ``mm_contribution``, ``im_contribution``), per unit MM and IM, and the finiteness flags;
    the scenario figures of a unit stay zero.  A notional above its ladder's last cap, and a
    position's own leverage above its bracket's maximum, is a :class:`~pmrisk.MarginError`
    naming the positions (Binance refuses such a position)."""
    book, lay, uf, pf = out.book, out.layout, out.unit, out.position
    bl = lay.brackets
    kernel = KB.bracket_units if parallel else KB.bracket_units_serial
    kernel(*kernel_args(sel, lay.pu_start, lay.pu_order, book.pos_instr, book.quantity,
                        book.contract_size, book.mark, bl.coin_margined, bl.pos_ladder,
                        bl.leverage, bl.floor, bl.cap, bl.mmr, bl.cum, bl.max_leverage,
                        bl.offsets, pf.value, pf.unrealised_pnl),
           uf.maintenance_margin, uf.initial_margin, pf.notional, pf.bracket_row,
           pf.mm_contribution, pf.im_contribution, uf.finite)
    # a position above its last cap has no bracket (row -1, MM NaN; its unit is flagged not
    # finite), and one whose own leverage is above its bracket's maximum: Binance refuses both
    beyond, over = KB.bracket_checks(*kernel_args(sel, lay.pu_start, lay.pu_order, uf.finite,
                                                  pf.bracket_row, bl.leverage,
                                                  bl.max_leverage), uf.risk_matrix_margin)
    if len(beyond):
        _refuse(book, beyond, "positions", "quantity", "a notional within its ladder's "
                "last cap", hint="Binance does not accept a position above the last "
                "bracket's cap, so pmrisk gives it no margin; check the quantity, or load "
                "the account's own (larger) ladder with Model.with_brackets")
    if len(over):
        first = float(bl.max_leverage[pf.bracket_row[over.min()]])
        _refuse(book, over, "positions", "leverage", "a leverage <= the max_leverage of the "
                "position's notional bracket (Binance refuses a higher leverage)",
                hint=f"Lower it to at most the bracket's max_leverage ({first:g} for the "
                "first position named), or leave it null to use that maximum")


def position_columns(out):
    """The bracket columns of the positions table (positions' rows): ``notional`` (USD for
    USDⓈ-M, coin for COIN-M), ``bracket`` (1-based), ``mmr``, ``maintenance_amount``
    (Binance's cum), ``leverage`` (the one IM uses), ``ladder_effective``."""
    bl, pf = out.layout.brackets, out.position
    row = pf.bracket_row
    first = bl.offsets[bl.pos_ladder] if len(row) else np.zeros(0, np.int64)
    eff = [lad.effective or "model" for lad in bl.ladders]
    return {
        "notional": pf.notional.copy(),
        "bracket": (row - first + 1).astype(np.int64),
        "mmr": bl.mmr[row] if len(row) else np.zeros(0),
        "maintenance_amount": bl.cum[row] if len(row) else np.zeros(0),
        "leverage": np.where(bl.leverage > 0, bl.leverage, bl.max_leverage[row])
        if len(row) else np.zeros(0),
        "ladder_effective": pa.array(eff, pa.string()).take(pa.array(bl.pos_ladder)),
    }

"""Notional brackets as data: Binance futures maintenance margin per position.

Binance margins a futures position by the bracket its notional falls in: bracket ``b`` holds
``floor_b < N <= cap_b`` (the first bracket also holds 0) and the maintenance margin is
``MM = N * mmr_b - cum_b``.  ``cum`` (Binance's "maintenance amount") keeps MM continuous at
each edge; it is always rebuilt here as ``cum_1 = 0``,
``cum_b = cum_{b-1} + floor_b * (mmr_b - mmr_{b-1})``, and a ``cum`` given with the ladder is
only checked against it (1e-9 relative).

* USDⓈ-M: ``N = |quantity * contract_size * mark|`` in USD (``contract_size`` in coin).
* COIN-M: ``N = |quantity * contract_size_usd / mark|`` in coin, so MM is in coin (times the
  index price for USD).

A notional above the last bracket's cap has no bracket: Binance does not accept such a
position, so it is a :class:`~pmrisk.MarginError` naming the rows, never an extrapolation.

Ladders come from rows (:func:`ladder`), from a table in the shape of Binance's
leverage-bracket response (:func:`ladders_from_binance`, so you can load your account's own
ladder: Binance scales brackets per account), or from the dated ladders shipped with pmrisk
(:func:`binance_ladder`).

``import pmrisk`` does not import this module: its kernels have explicit signatures, so they
are compiled (or loaded from numba's cache) when it is imported, a cost that users of the rest
of pmrisk should not pay.  Use ``from pmrisk.venues import brackets``.

Examples
--------
>>> from pmrisk.venues import brackets
>>> btc = brackets.binance_ladder("BTCUSDT", as_of="2022-01-01")
>>> btc.effective, len(btc.floor)
('2021-03-18', 10)
>>> brackets.maintenance_margin(15_000_000.0, btc)
483700.0
"""

import datetime as _dt
import functools
import importlib.resources
import tomllib
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..io import schema
from ..io.arrow import (as_table, check_columns, float_column, iso_ns, kernel_args, lookup,
                        raise_rows, str_column, to_ns)
from ..errors import MarginError
from ..kernel.brackets import bracket_margin, bracket_margin_usd, bracket_notional

KINDS = ("usd_m", "coin_m")
CUM_RTOL = 1e-9          # a given cum may differ from the rebuilt one by this much (relative)

# Binance leverage-bracket response fields -> ladder columns (USDⓈ-M, then COIN-M)
BINANCE_FIELDS = {"bracket": "bracket", "initialLeverage": "max_leverage",
                  "maintMarginRatio": "mmr", "cum": "cum", "symbol": "symbol"}
BINANCE_NOTIONAL = {"usd_m": {"notionalFloor": "floor", "notionalCap": "cap"},
                    "coin_m": {"qtyFloor": "floor", "qtyCap": "cap"}}


class BracketLadder(NamedTuple):
    """One symbol's brackets, validated; arrays are read-only float64, ordered by floor.

    ``kind`` is ``"usd_m"`` (notional in USD) or ``"coin_m"`` (notional in coin).  ``cum`` is the
    rebuilt column.  ``effective`` is the date the ladder took effect (``"YYYY-MM-DD"``, a year
    ``"YYYY"`` when only that is known, ``"undated"``, or None for a user's ladder); ``source``
    says where it comes from.
    """

    symbol: str | None
    kind: str
    floor: np.ndarray
    cap: np.ndarray
    mmr: np.ndarray
    max_leverage: np.ndarray
    cum: np.ndarray
    effective: str | None = None
    source: str | None = None


def ladder(rows, *, symbol=None, kind="usd_m", effective=None, source=None):
    """A validated :class:`BracketLadder` from rows ``(floor, cap, mmr, max_leverage[, cum])``.

    Parameters
    ----------
    rows : sequence of sequences, list of dicts, or a table
        Sequences are ``(floor, cap, mmr, max_leverage)`` or ``(..., cum)``; dicts and tables
        have columns ``floor, cap, mmr, max_leverage`` and optionally ``cum`` and ``bracket``
        (1, 2, ...: rows are taken in bracket order).  Anything with ``__arrow_c_stream__``
        (pandas, polars) is accepted.
    symbol : str, optional
        Named in error messages and used by :func:`position_margin` to match positions.
    kind : {"usd_m", "coin_m"}
        Notional in USD (USDⓈ-M) or in coin (COIN-M).
    effective : date, datetime, ISO-8601 string or datetime64, optional
        When the ladder took effect; kept as ``"YYYY-MM-DD"`` (numbers are refused: their
        unit is unknown).
    source : str, optional
        Where the ladder comes from.

    Returns
    -------
    BracketLadder

    Raises
    ------
    MarginError
        Table ``brackets``, naming the (symbol, bracket) rows: a first floor other than 0, a cap
        not above its floor, a floor that is not the previous cap (brackets must be
        contiguous), a decreasing ``mmr`` or one outside (0, 1], a leverage <= 0, or a given
        ``cum`` more than 1e-9 relative from the rebuilt one.

    Examples
    --------
    >>> from pmrisk.venues.brackets import ladder
    >>> lad = ladder([(0, 50_000, 0.004, 125), (50_000, 250_000, 0.005, 100)], symbol="X")
    >>> lad.cum.tolist()
    [0.0, 50.0]
    >>> ladder([(0, 50_000, 0.004, 125, 0), (50_000, 250_000, 0.005, 100, 60)], symbol="X")
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: brackets.cum: ... ('X', 2). The rebuilt cum of bracket 2 is 50.0
    """
    return _ladder(rows, symbol, kind, _effective(effective), _source(source))


def _effective(effective):
    """A user's ``effective``: None, or a date (a ``date``, ``datetime``, ISO-8601 string or
    ``datetime64``, read by the one time parser) -> ``"YYYY-MM-DD"`` (with the time of day,
    ``"YYYY-MM-DDTHH:MM:SSZ"``, when it is not midnight UTC)."""
    if effective is None:
        return None
    text = iso_ns(to_ns(effective, "effective"))
    return text[:10] if text.endswith("T00:00:00Z") else text


def _source(source):
    if source is not None and not isinstance(source, str):
        raise MarginError("arguments", "source", "a string saying where the ladder comes from "
                          f"(or None), got {type(source).__name__} {source!r}")
    return source


def _ladder(rows, symbol, kind, effective, source):
    if kind not in KINDS:
        raise MarginError("brackets", "kind", f"one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(rows, (list, tuple)) and rows and not isinstance(rows[0], dict):
        names = ("floor", "cap", "mmr", "max_leverage", "cum")
        bad = [i + 1 for i, r in enumerate(rows)
               if not isinstance(r, (list, tuple)) or len(r) not in (4, 5)]
        if bad:
            raise MarginError("brackets", None, "rows (floor, cap, mmr, max_leverage[, cum])",
                              rows=[(symbol, b) for b in bad], keys=("symbol", "bracket"))
        rows = [dict(zip(names, r)) for r in rows]
    return _validated(as_table(rows, "brackets"), symbol, kind, effective, source)


def ladders_from_binance(response, *, symbol=None):
    """Ladders from Binance's leverage-bracket response, keyed by symbol.

    Accepts the flat shape (one row per bracket: ``symbol, bracket, initialLeverage,
    notionalCap, notionalFloor, maintMarginRatio, cum``; COIN-M: ``qtyCap, qtyFloor`` instead of
    the notional pair) as a table, anything with ``__arrow_c_stream__`` or a list of dicts, and
    the nested JSON the endpoints return (``[{"symbol": ..., "brackets": [...]}, ...]``, e.g.
    ``/fapi/v1/leverageBracket``, ``/dapi/v2/leverageBracket``, ``/papi/v1/um/leverageBracket``).
    Other fields (``notionalCoef``, ...) are ignored: the caps already are your account's.

    Parameters
    ----------
    response : table-like or list of dicts
    symbol : str, optional
        The symbol when the rows carry no ``symbol`` field.

    Returns
    -------
    dict of str to BracketLadder

    Examples
    --------
    >>> from pmrisk.venues.brackets import ladders_from_binance
    >>> resp = [{"symbol": "BTCUSD_PERP", "brackets": [
    ...     {"bracket": 1, "initialLeverage": 125, "qtyCap": 5, "qtyFloor": 0,
    ...      "maintMarginRatio": 0.004, "cum": 0.0},
    ...     {"bracket": 2, "initialLeverage": 100, "qtyCap": 10, "qtyFloor": 5,
    ...      "maintMarginRatio": 0.005, "cum": 0.005}]}]
    >>> lad = ladders_from_binance(resp)["BTCUSD_PERP"]
    >>> lad.kind, lad.cap.tolist()
    ('coin_m', [5.0, 10.0])
    """
    if isinstance(response, dict):
        response = [response]
    if (isinstance(response, (list, tuple)) and response and isinstance(response[0], dict)
            and "brackets" in response[0]):
        bad = [(s.get("symbol", symbol),) if isinstance(s, dict) else (i,)
               for i, s in enumerate(response) if not isinstance(s, dict)
               or not isinstance(s.get("brackets"), (list, tuple))
               or not all(isinstance(b, dict) for b in s["brackets"])]
        if bad:
            raise MarginError("brackets", "brackets", "per symbol, a list of bracket objects "
                              "({\"bracket\": 1, \"initialLeverage\": ..., ...})", rows=bad,
                              keys=("symbol",))
        response = [dict(b, symbol=s.get("symbol", symbol)) for s in response
                    for b in s["brackets"]]
    table = as_table(response, "brackets")
    if table is None:
        raise MarginError("brackets", None, "Binance's leverage-bracket response: a table, a "
                          "list of bracket dicts or [{\"symbol\": ..., \"brackets\": [...]}], "
                          "got None")
    present = set(table.column_names)
    kinds = [k for k, f in BINANCE_NOTIONAL.items() if set(f) & present]
    if len(kinds) != 1:
        raise MarginError("brackets", None, "notionalFloor and notionalCap (USDⓈ-M) or qtyFloor "
                          "and qtyCap (COIN-M), one pair only",
                          hint=f"Columns given: {', '.join(table.column_names) or 'none'}")
    kind = kinds[0]
    names = dict(BINANCE_FIELDS, **BINANCE_NOTIONAL[kind])
    table = table.select([c for c in table.column_names if c in names])
    table = table.rename_columns([names[c] for c in table.column_names])
    if "symbol" not in table.column_names:
        if symbol is None:
            raise MarginError("brackets", "symbol", "a symbol column, or symbol=... for one "
                              "ladder")
        table = table.append_column("symbol", pa.array([symbol] * len(table), pa.string()))
    check_columns(table, "brackets", {"symbol": ("str", True, False)})
    symbols = str_column(table, "symbol")
    table = table.drop_columns(["symbol"])
    out = {}
    for s in dict.fromkeys(symbols.to_pylist()):
        out[s] = _validated(table.filter(pc.equal(symbols, s)), s, kind, None, None)
    return out


def _validated(table, symbol, kind, effective, source):
    """One validation path for every ladder (rows, Binance's shape, shipped data)."""
    if table is None:
        raise MarginError("brackets", None, "rows (floor, cap, mmr, max_leverage[, cum]), a "
                          "list of dicts or a table, got None")
    n = len(table)
    if n == 0:
        raise MarginError("brackets", None, f"at least one bracket for {symbol!r}")
    # symbol and bracket name the rows of every error below (schema.KEYS["brackets"])
    table = table.drop_columns([c for c in ("symbol",) if c in table.column_names])
    table = table.append_column("symbol", pa.array([symbol] * n, pa.string()))
    if "bracket" not in table.column_names:
        table = table.append_column("bracket", pa.array(np.arange(1, n + 1), pa.int64()))
    check_columns(table, "brackets", schema.BRACKETS)
    table = table.take(pa.array(np.argsort(table.column("bracket").to_numpy(), kind="stable")))
    bracket = table.column("bracket").to_numpy()
    bad = bracket != np.arange(1, n + 1)
    if bad.any():
        raise_rows(table, "brackets", "bracket", bad, f"brackets numbered 1..{n}, each once")
    floor = float_column(table, "brackets", "floor")
    cap = float_column(table, "brackets", "cap", positive=True)
    mmr = float_column(table, "brackets", "mmr", positive=True)
    lev = float_column(table, "brackets", "max_leverage", positive=True)
    cum = (float_column(table, "brackets", "cum", nullable=True)
           if "cum" in table.column_names else np.full(n, np.nan))
    first = np.arange(n) == 0
    checks = (
        ("floor", first & (floor != 0.0), "0 as the first bracket's floor", None),
        ("cap", ~(cap > floor), "a cap above the bracket's floor", None),
        ("floor", ~first & (floor != np.roll(cap, 1)),
         "each floor equal to the previous bracket's cap (contiguous brackets)", None),
        ("mmr", mmr > 1.0, "a maintenance margin rate in (0, 1]", None),
        ("mmr", ~first & (mmr < np.roll(mmr, 1)),
         "a maintenance margin rate no lower than the previous bracket's",
         "A lower rate further up would make MM fall as the position grows"),
    )
    for col, mask, expected, hint in checks:
        if mask.any():
            raise_rows(table, "brackets", col, mask, expected, hint)
    rebuilt = np.cumsum(floor * np.diff(mmr, prepend=mmr[0]))
    given = ~np.isnan(cum)
    off = given & (np.abs(cum - rebuilt) > CUM_RTOL * np.maximum(np.abs(cum), np.abs(rebuilt)))
    if off.any():
        b = int(np.flatnonzero(off)[0])
        raise_rows(table, "brackets", "cum", off, "cum_b = cum_{b-1} + floor_b*(mmr_b - "
                   "mmr_{b-1}) within 1e-9 relative",
                   hint=f"The rebuilt cum of bracket {b + 1} is {float(rebuilt[b])!r}")
    return BracketLadder(symbol, kind, *kernel_args(floor, cap, mmr, lev, rebuilt),
                         effective=effective, source=source)


# -- shipped, dated ladders ------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _shipped():
    text = (importlib.resources.files(__package__) / "binance_brackets.toml")
    data = tomllib.loads(text.read_text(encoding="utf-8"))
    # shipped dates may be a year ("2025") or "undated": kept as they are
    return tuple(_ladder(d["rows"], d["symbol"], d["kind"], d["effective"], d["source"])
                 for d in data["ladder"])


def _effective_ns(effective):
    """The instant a shipped ladder is taken as in force from: its date, 1 January of its year
    when only the year is known, the beginning of time when undated."""
    if effective == "undated":
        return np.iinfo(np.int64).min
    if len(effective) == 4:
        effective = f"{effective}-01-01"
    return to_ns(_dt.date.fromisoformat(effective))


def shipped_ladders():
    """Every ladder shipped with pmrisk (Binance BTCUSDT USDⓈ-M of 2021-03-18 and of 2025,
    BTCUSD_PERP COIN-M), oldest first per symbol.

    >>> from pmrisk.venues.brackets import shipped_ladders
    >>> [(l.symbol, l.effective) for l in shipped_ladders()]
    [('BTCUSDT', '2021-03-18'), ('BTCUSDT', '2025'), ('BTCUSD_PERP', 'undated')]
    """
    return _shipped()


def binance_ladder(symbol, as_of=None):
    """The shipped ladder of ``symbol`` in force at ``as_of`` (default: the latest).

    A ladder is in force from its ``effective`` date until the next one's.  The 2025 BTCUSDT
    ladder's exact date is unpublished: it counts from 1 January 2025, so an ``as_of`` early in
    2025 may get it before Binance actually switched.

    Parameters
    ----------
    symbol : str
        ``"BTCUSDT"`` or ``"BTCUSD_PERP"``.
    as_of : date, datetime or ISO-8601 string, optional

    Examples
    --------
    >>> from pmrisk.venues.brackets import binance_ladder
    >>> binance_ladder("BTCUSDT").effective, binance_ladder("BTCUSDT", "2024-12-31").effective
    ('2025', '2021-03-18')
    """
    known = [lad for lad in _shipped() if lad.symbol == symbol]
    if not known:
        have = sorted({lad.symbol for lad in _shipped()})
        raise MarginError("binance_brackets", "symbol", f"one of {', '.join(have)}, got "
                          f"{symbol!r}", hint="Load your own ladder with ladders_from_binance")
    if as_of is None:
        return known[-1]
    t = to_ns(as_of, "as_of")
    live = [lad for lad in known if _effective_ns(lad.effective) <= t]
    if not live:
        raise MarginError("binance_brackets", "as_of", f"a date on or after {known[0].effective}"
                          f" (the first {symbol} ladder shipped), got {as_of!r}")
    return live[-1]


# -- maintenance margin ------------------------------------------------------------------------

def locate(notional, ladder):
    """Bracket and maintenance margin of each notional under one ladder, as a table.

    Parameters
    ----------
    notional : float or array-like
        Notional(s) >= 0 in the ladder's unit (USD for USDⓈ-M, coin for COIN-M).
    ladder : BracketLadder

    Returns
    -------
    pyarrow.Table
        ``notional, bracket`` (1-based), ``mmr, cum, max_leverage, maintenance_margin`` (in the
        ladder's unit).

    Raises
    ------
    MarginError
        Table ``notional``: a negative or non-finite notional, or one above the last cap.

    Examples
    --------
    >>> from pmrisk.venues.brackets import binance_ladder, locate
    >>> t = locate([300.0], binance_ladder("BTCUSD_PERP"))
    >>> t.column("bracket").to_pylist(), t.column("cum").to_pylist()
    ([7], [11.605])
    """
    _check_ladders([ladder], "ladder")
    try:
        n = np.atleast_1d(np.asarray(notional, dtype=np.float64))
    except (TypeError, ValueError):
        n = None
    if n is None or n.ndim != 1:
        raise MarginError("notional", None, "a number or a 1-D sequence of numbers, got "
                          f"{type(notional).__name__}")
    bad = ~(np.isfinite(n) & (n >= 0.0))
    if bad.any():
        raise MarginError("notional", None, "finite numbers >= 0",
                          rows=[(int(i),) for i in np.flatnonzero(bad)[:5]], n_bad=int(bad.sum()))
    row, mm = _margin(n, np.zeros(len(n), dtype=np.int64), [ladder])
    out = row < 0
    if out.any():
        raise MarginError("notional", None, f"notional <= the last cap {float(ladder.cap[-1])!r}",
                          rows=[(int(i),) for i in np.flatnonzero(out)[:5]],
                          n_bad=int(out.sum()), hint=_BEYOND)
    return pa.table({"notional": n, "bracket": row + 1, "mmr": ladder.mmr[row],
                     "cum": ladder.cum[row], "max_leverage": ladder.max_leverage[row],
                     "maintenance_margin": mm})


def maintenance_margin(notional, ladder):
    """``MM = N * mmr_b - cum_b`` for notional(s) ``N`` under ``ladder`` (module docstring).

    Returns a float for a scalar ``notional``, else a float64 array; in the ladder's unit.

    Examples
    --------
    >>> from pmrisk.venues.brackets import binance_ladder, maintenance_margin
    >>> maintenance_margin([1e6, 5e6], binance_ladder("BTCUSDT")).tolist()
    [5000.0, 38000.0]
    >>> maintenance_margin(2e9, binance_ladder("BTCUSDT"))
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: notional: expected notional <= the last cap 1800000000.0; ...
    """
    mm = locate(notional, ladder).column("maintenance_margin").to_numpy()
    return float(mm[0]) if np.ndim(notional) == 0 else mm


def position_margin(positions, ladders):
    """Bracket maintenance margin per position.

    Parameters
    ----------
    positions : table-like
        ``symbol``, ``quantity``, ``contract_size`` (coin per contract for USDⓈ-M, USD per
        contract for COIN-M), ``mark_price``; optional ``account`` and ``index_price`` (then
        the result has ``maintenance_margin_usd``: COIN-M MM times the index price, USDⓈ-M MM
        as it is).
    ladders : BracketLadder, a sequence of them or a dict of symbol to BracketLadder
        Each position uses the ladder of its symbol.

    Returns
    -------
    pyarrow.Table
        The key columns given (``account``, ``symbol``), then ``notional``, ``bracket``,
        ``mmr``, ``cum``, ``max_leverage``, ``maintenance_margin`` (USD for USDⓈ-M, coin for
        COIN-M) and, with ``index_price``, ``maintenance_margin_usd``.

    Raises
    ------
    MarginError
        Table ``positions``: a symbol without a ladder, a bad number, or a notional above its
        ladder's last cap (Binance refuses such a position).

    Examples
    --------
    >>> from pmrisk.venues.brackets import binance_ladder, position_margin
    >>> pos = [{"account": "a", "symbol": "BTCUSD_PERP", "quantity": 100.0,
    ...         "contract_size": 100.0, "mark_price": 25_000.0, "index_price": 25_000.0}]
    >>> r = position_margin(pos, binance_ladder("BTCUSD_PERP")).to_pylist()[0]
    >>> r["notional"], r["mmr"], round(r["maintenance_margin"], 12), r["maintenance_margin_usd"]
    (0.4, 0.004, 0.0016, 40.0)
    """
    table = as_table(positions, "positions")
    if table is None:
        raise MarginError("positions", None, "a table (symbol, quantity, contract_size, "
                          "mark_price), got None")
    check_columns(table, "positions", schema.BRACKET_POSITIONS)
    if isinstance(ladders, BracketLadder):
        ladders = [ladders]
    _check_ladders(ladders.values() if isinstance(ladders, dict) else ladders, "ladders")
    if not isinstance(ladders, dict):
        ladders = {lad.symbol: lad for lad in ladders}
    by_symbol = list(ladders.values())
    pos_ladder = lookup(str_column(table, "symbol"), pa.array(list(ladders), pa.string()))
    if (pos_ladder < 0).any():
        raise_rows(table, "positions", "symbol", pos_ladder < 0, "a symbol with a bracket ladder",
                   hint=f"Ladders given: {', '.join(map(str, ladders)) or 'none'}")
    quantity = float_column(table, "positions", "quantity")
    size = float_column(table, "positions", "contract_size", positive=True)
    mark = float_column(table, "positions", "mark_price", positive=True)
    coin = np.array([lad.kind == "coin_m" for lad in by_symbol], dtype=np.int64)[pos_ladder]
    n = bracket_notional(*kernel_args(quantity, size, mark, coin))
    row, mm = _margin(n, pos_ladder, by_symbol)
    if (row < 0).any():
        raise_rows(table, "positions", "quantity", row < 0,
                   "a notional within its ladder's last cap", hint=_BEYOND)
    flat = _packed(by_symbol)
    cols = {k: table.column(k) for k in ("account", "symbol") if k in table.column_names}
    cols.update(notional=n, bracket=row - flat["offsets"][pos_ladder] + 1, mmr=flat["mmr"][row],
                cum=flat["cum"][row], max_leverage=flat["max_leverage"][row],
                maintenance_margin=mm)
    if "index_price" in table.column_names:
        index = float_column(table, "positions", "index_price", positive=True)
        cols["maintenance_margin_usd"] = bracket_margin_usd(*kernel_args(mm, coin, index))
    return pa.table(cols)


def _check_ladders(ladders, what):
    """Every item a :class:`BracketLadder` (``ladders`` a collection of them)."""
    try:
        bad = [lad for lad in ladders if not isinstance(lad, BracketLadder)]
    except TypeError:
        bad = [ladders]
    if bad:
        raise MarginError("arguments", what, "a BracketLadder (from ladder, "
                          "ladders_from_binance or binance_ladder)" + (
                              ", a sequence of them or a dict of symbol to them"
                              if what == "ladders" else "")
                          + f", got {type(bad[0]).__name__}")


_BEYOND = ("Binance does not accept a position above the last bracket's cap, so pmrisk gives "
           "it no margin; check the quantity, or load the account's own (larger) ladder")


def _packed(ladders):
    """The ladders as one set of flat arrays plus ``offsets`` (the kernels' layout)."""
    sizes = [len(lad.floor) for lad in ladders]
    flat = {k: np.concatenate([getattr(lad, k) for lad in ladders])
            for k in ("floor", "cap", "mmr", "cum", "max_leverage")}
    flat["offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return flat


def _margin(notional, pos_ladder, ladders):
    flat = _packed(ladders)
    return bracket_margin(*kernel_args(notional, pos_ladder, flat["floor"], flat["cap"],
                                       flat["mmr"], flat["cum"], flat["offsets"]))


# -- ladders in a model (binance_um) --------------------------------------------------------------

def model_ladders(rows):
    """A model's own ladders (its ``brackets`` key): rows in the shape of Binance's
    leverage-bracket response, each with ``symbol`` (that symbol's ladder) or ``underlying``
    (a default ladder of that underlying).  The notional columns give a ladder's settlement:
    USDⓈ-M with ``notionalFloor``/``notionalCap``, COIN-M with ``qtyFloor``/``qtyCap``.  A
    default's rows may carry ``kind`` (``"perpetual"`` or ``"future"``, the instrument kinds
    brackets margin): the ladder then applies to that kind only; without ``kind`` (absent or
    None) it applies to every kind.  A symbol's rows take no ``kind`` (the instruments table
    gives the symbol's).

    Returns ``(by_symbol, by_underlying)``: dicts of symbol and of ``(underlying, settlement,
    kind)`` (settlement ``"usd_m"`` or ``"coin_m"``, kind None for a kind-less default) to
    :class:`BracketLadder`.  A kind-less default is named by its underlying (``"ETH"``) in
    errors and :class:`BracketLadder`, a kind's by both (``"ETH (future)"``).  Every ladder
    goes through the one validation path (:func:`ladders_from_binance`), so a bad row is a
    :class:`~pmrisk.MarginError` naming it.

    Raises
    ------
    MarginError
        Table ``brackets``, column ``kind``: a kind other than ``"perpetual"`` or
        ``"future"``, a ``kind`` on a symbol's rows, or more than one default ladder for the
        same (underlying, settlement, kind) (its rows repeat a bracket number or a floor of
        0), naming the rows (their place in the list, from 0).

    Examples
    --------
    >>> from pmrisk.venues.brackets import model_ladders
    >>> eth = {"underlying": "ETH", "bracket": 1, "initialLeverage": 50,
    ...        "qtyFloor": 0, "qtyCap": 1e3, "maintMarginRatio": 0.01}
    >>> sym, und = model_ladders([eth, dict(eth, kind="future", maintMarginRatio=0.02)])
    >>> sym, list(und)
    ({}, [('ETH', 'coin_m', None), ('ETH', 'coin_m', 'future')])
    >>> und[("ETH", "coin_m", "future")].symbol, und[("ETH", "coin_m", "future")].mmr.tolist()
    ('ETH (future)', [0.02])
    """
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise MarginError("model", "brackets", "a list of bracket rows (dicts in the shape of "
                          "Binance's leverage-bracket response)", hint="Use "
                          "Model.with_brackets(table) to load a leverage-bracket response")
    _check_kinds(rows)
    by_symbol, by_underlying = {}, {}
    groups = {}
    for i, r in enumerate(rows):
        keyed = "symbol" if "symbol" in r else "underlying"
        settlement = _settlement(r)
        kind = r.get("kind") if keyed == "underlying" else None
        groups.setdefault((keyed, settlement, kind), []).append((i, r))
    for (keyed, settlement, kind), group in groups.items():
        if keyed == "underlying":
            bad = [j for j, (_, r) in enumerate(group) if not isinstance(r.get("underlying"), str)]
            if bad:
                raise MarginError("model", "brackets", "a symbol or an underlying name on "
                                  "every bracket row", rows=[(j,) for j in bad[:5]],
                                  keys=("row",))
            _check_one_ladder(group, settlement, kind)
            group = [dict({k: v for k, v in r.items() if k not in ("underlying", "kind")},
                          symbol=_default_name(r["underlying"], kind)) for _, r in group]
        else:
            group = [r for _, r in group]
        found = ladders_from_binance(group)
        if keyed == "symbol":
            by_symbol.update(found)
        else:
            for _, r in groups[(keyed, settlement, kind)]:
                name = r["underlying"]
                by_underlying[(name, settlement, kind)] = found[_default_name(name, kind)]
    return by_symbol, by_underlying


LADDER_KINDS = ("perpetual", "future")      # the instrument kinds a default ladder may name


def _settlement(row):
    """A bracket row's settlement: COIN-M when it has ``qtyFloor`` or ``qtyCap``."""
    return "coin_m" if ("qtyFloor" in row or "qtyCap" in row) else "usd_m"


def _default_name(underlying, kind):
    """The name of a default ladder (in errors and :class:`BracketLadder`): the underlying,
    and for one kind's default the kind too (``"BTC (future)"``)."""
    return underlying if kind is None else f"{underlying} ({kind})"


def _check_kinds(rows):
    """Every ``kind`` given names an instrument kind brackets margin, and only on a
    default's rows (a symbol's kind is the instruments table's)."""
    bad = [(r.get("underlying"), r["kind"], i) for i, r in enumerate(rows)
           if "symbol" not in r and r.get("kind") is not None
           and (not isinstance(r["kind"], str) or r["kind"] not in LADDER_KINDS)]
    if bad:
        raise MarginError("brackets", "kind", "perpetual or future (the instrument kinds "
                          "brackets margin), or no kind for a default of every kind",
                          rows=bad[:5], keys=("underlying", "kind", "row"), n_bad=len(bad))
    on_symbol = [(r["symbol"], r["kind"], i) for i, r in enumerate(rows)
                 if "symbol" in r and r.get("kind") is not None]
    if on_symbol:
        raise MarginError("brackets", "kind", "no kind on a symbol's ladder (the instruments "
                          "table gives the symbol's kind)", rows=on_symbol[:5],
                          keys=("symbol", "kind", "row"), n_bad=len(on_symbol),
                          hint="kind goes on an underlying's default ladder (rows with "
                          "underlying instead of symbol)")


def _check_one_ladder(group, settlement, kind):
    """One default ladder per (underlying, settlement, kind): per underlying, no bracket
    number and no floor of 0 given twice (each ladder has one first bracket)."""
    lo = "qtyFloor" if settlement == "coin_m" else "notionalFloor"
    seen, bad = {}, []
    for i, r in group:
        und = r["underlying"]
        for field, value in (("bracket", r.get("bracket")), (lo, r.get(lo))):
            if not isinstance(value, (int, float, str)) or (field == lo and value != 0):
                continue
            key = (und, field, value)
            if key in seen:
                bad.append((und, kind, settlement, seen[key]))
                bad.append((und, kind, settlement, i))
            else:
                seen[key] = i
    if bad:
        bad = sorted(set(bad), key=lambda b: b[3])
        raise MarginError("brackets", "kind", "one default ladder per underlying, settlement "
                          "and kind", rows=bad[:5], keys=("underlying", "kind", "settlement",
                                                          "row"), n_bad=len(bad),
                          hint="These rows repeat a bracket number or a floor of 0, so they "
                          "hold more than one ladder; give each default its kind "
                          "(\"perpetual\" or \"future\"), or keep one")


def check_model_brackets(params):
    """Validate a model's ``brackets`` rows and ``brackets_as_of`` (called when a model is
    built): a bad row or date is a :class:`~pmrisk.MarginError` naming it."""
    model_ladders(params["brackets"])
    when = params["brackets_as_of"]
    if when != "snapshot":
        try:
            _dt.date.fromisoformat(when)
        except (TypeError, ValueError):
            raise MarginError("model", "brackets_as_of", "\"snapshot\" or a date "
                              f"\"YYYY-MM-DD\", got {when!r}") from None


def shipped_for(symbol):
    """The shipped ladders of ``symbol``, oldest first, and the instants (int64 ns, UTC) they
    are in force from (an undated ladder: the beginning of time); empty when pmrisk ships
    none for it.

    >>> from pmrisk.venues.brackets import shipped_for
    >>> lads, since = shipped_for("BTCUSDT")
    >>> [lad.effective for lad in lads], since.tolist()
    (['2021-03-18', '2025'], [1616025600000000000, 1735689600000000000])
    """
    known = [lad for lad in _shipped() if lad.symbol == symbol]
    return known, np.array([_effective_ns(lad.effective) for lad in known], dtype=np.int64)


def packed(ladders):
    """The ladders as one set of flat read-only arrays ``floor, cap, mmr, cum, max_leverage``
    plus ``offsets`` (ladder ``k`` is rows ``offsets[k]:offsets[k+1]``): the layout of
    :func:`pmrisk.kernel.brackets.bracket_margin`."""
    if not ladders:
        z = np.zeros(0)
        return {"floor": z, "cap": z, "mmr": z, "cum": z, "max_leverage": z,
                "offsets": np.zeros(1, dtype=np.int64)}
    return _packed(ladders)


def binance_rows(response, *, symbol=None, underlying=None, kind=None):
    """A leverage-bracket response (any shape :func:`ladders_from_binance` reads) as validated
    rows for a model's ``brackets`` key: one dict per bracket in Binance's flat shape, ``cum``
    rebuilt.  With ``underlying``, the (single) ladder becomes that underlying's default
    ladder for its settlement (rows keyed by ``underlying`` instead of ``symbol``), and with
    ``kind`` too (``"perpetual"`` or ``"future"``) its default for that instrument kind only
    (the rows carry ``kind``).

    Examples
    --------
    >>> from pmrisk.venues.brackets import binance_rows
    >>> rows = binance_rows([{"bracket": 1, "initialLeverage": 20, "notionalFloor": 0,
    ...                       "notionalCap": 1e6, "maintMarginRatio": 0.025}], symbol="SOLUSDT")
    >>> rows[0]["symbol"], rows[0]["cum"]
    ('SOLUSDT', 0.0)
    >>> rows = binance_rows([{"bracket": 1, "initialLeverage": 50, "qtyFloor": 0,
    ...                       "qtyCap": 10, "maintMarginRatio": 0.01}], underlying="BTC",
    ...                     kind="future")
    >>> rows[0]["underlying"], rows[0]["kind"], rows[0]["qtyCap"]
    ('BTC', 'future', 10.0)
    """
    if kind is not None and (underlying is None or not isinstance(kind, str)
                             or kind not in LADDER_KINDS):
        raise MarginError("arguments", "kind", "perpetual or future, with underlying (a "
                          "symbol's kind is the instruments table's), or None: got "
                          f"{kind!r}" + ("" if underlying is not None else " without underlying"))
    found = ladders_from_binance(response, symbol=symbol or underlying or "default")
    if underlying is not None and len(found) != 1:
        raise MarginError("brackets", "symbol", "one ladder for an underlying's default, got "
                          f"{len(found)} ({', '.join(found)})")
    out = []
    for name, lad in found.items():
        lo, hi = (("notionalFloor", "notionalCap") if lad.kind == "usd_m"
                  else ("qtyFloor", "qtyCap"))
        for b in range(len(lad.floor)):
            row = {"underlying": underlying} if underlying is not None else {"symbol": name}
            if kind is not None:
                row["kind"] = kind
            row.update({"bracket": b + 1, "initialLeverage": float(lad.max_leverage[b]),
                        lo: float(lad.floor[b]), hi: float(lad.cap[b]),
                        "maintMarginRatio": float(lad.mmr[b]), "cum": float(lad.cum[b])})
            out.append(row)
    return out


def default_key(row):
    """The key a model's bracket row is stored under: ``("symbol", symbol)`` for a symbol's
    ladder, ``("underlying", underlying, settlement, kind)`` for a default (settlement
    ``"usd_m"`` or ``"coin_m"`` from its notional columns, kind None for every kind).

    >>> from pmrisk.venues.brackets import default_key
    >>> default_key({"underlying": "BTC", "kind": "future", "qtyFloor": 0, "qtyCap": 10})
    ('underlying', 'BTC', 'coin_m', 'future')
    """
    if "symbol" in row:
        return ("symbol", row["symbol"])
    return ("underlying", row.get("underlying"), _settlement(row), row.get("kind"))

"""``pmrisk.margin``: the public entry point."""

import time

from ..io.arrow import as_table
from ..io.book import load_book
from .core import run
from ..model.model import Model
from ..errors import MarginError, warn_no_balances
from ..io.fill import check_mode, forward_fill
from ..results import TABLE_NAMES, build, risk_vectors_mode
from .snapshots import by_parameter_set, margin_snapshots


def margin(positions, instruments, market, index, balances=None, open_orders=None,
           reserves=None, model=None, valuation_time=None, risk_vectors=False,
           tables=("accounts", "units", "positions"), fill_market="none"):
    """Portfolio margin of every account in ``positions``.

    Parameters
    ----------
    positions, instruments, market, index : Arrow table-like
        Input tables: ``pyarrow.Table``/``RecordBatch`` or anything exposing
        ``__arrow_c_stream__`` (pandas, polars, duckdb).  ``market.mark_iv`` is an
        annualised vol as a decimal (0.60 for 60 %, not 60; above the model's ``max_iv``,
        default 5.0, it is refused).
        ``positions.leverage`` (optional, > 0, nullable) is a position's own leverage:
        ``binance_um`` charges IM = notional / leverage (null: the bracket's maximum);
        other models ignore it.
    balances, open_orders, reserves : Arrow table-like, optional
        Collateral balances; open orders (IM only); per-unit MMP and open-order reserves.
        ``balances`` may hold several rows per (account, asset): the positive rows are one
        holding (the asset's collateral rate or tiers on their sum), each negative row a
        loan at full value with its loan MM (SPEC 7).  Without ``balances`` every
        account's collateral is 0: its equity is its positions' value alone, so a book
        bought with collateral shows as under-margined (often ``liquidation``); a
        :class:`pmrisk.MarginWarning` says so (give balance rows of amount 0 to mean "no
        collateral" without the warning).
    model : str, dict, path or Model
        A preset name (``"standard"``, ``"binance_pm_pro"``, ``"deribit_pme"``,
        ``"span"``), a TOML path, a dict or a :class:`pmrisk.Model`.  Default ``standard``
        (the seed's correlated portfolio-margin model).
    valuation_time : datetime, str or numpy datetime64, optional
        When the book is valued (default: now, UTC).  Must be None when the inputs carry a
        ``time`` column: each distinct time is then a snapshot valued at that time with the
        rows of that time (tables without the column apply to every snapshot), and every
        result table gets a ``time`` column after ``account``.
    risk_vectors : bool, "units" or "positions"
        ``True`` (or ``"units"``) adds ``result.risk_vectors`` per unit; ``"positions"`` per
        position.
    tables : sequence of str
        Which of ``accounts``, ``units``, ``positions`` to build (the accounts always are);
        the others are ``None``.  A long backtest that only needs account figures saves the
        per-position table (a third of the time for 10 positions per account).
    fill_market : {"none", "forward"}
        With a ``time`` column, a held symbol without a market row at a snapshot time is an
        error naming the symbol and the time (``"none"``, the default).  ``"forward"``
        carries the symbol's latest earlier market row forward to that time instead (and
        each underlying's latest earlier index row); never backward: a symbol with no
        earlier row is still the error (:mod:`pmrisk.io.fill`).

    Returns
    -------
    MarginResult
        ``.accounts``, ``.units``, ``.positions`` (and ``.risk_vectors``) as pyarrow Tables.

    Raises
    ------
    MarginError
        On any input problem, naming the table, column and rows; nothing is computed.  Also
        when the call's estimated peak memory is above the model's ``max_memory_gb``
        (default 4; :mod:`pmrisk.engine.resources`), naming the parameters behind it.

    Examples
    --------
    >>> import pmrisk
    >>> r = pmrisk.margin(
    ...     positions={"account": ["a"], "symbol": ["BTC-PERPETUAL"], "quantity": [100000.0]},
    ...     instruments={"symbol": ["BTC-PERPETUAL"], "underlying": ["BTC"],
    ...                  "kind": ["perpetual"], "settlement": ["inverse"],
    ...                  "contract_size": [1.0]},
    ...     market={"symbol": ["BTC-PERPETUAL"], "mark_price": [50000.0]},
    ...     index={"underlying": ["BTC"], "index_price": [50000.0]},
    ...     model="deribit_pme", valuation_time="2024-01-01T00:00:00Z")
    >>> round(r.units["worst_case"][0].as_py(), 6)   # 2 BTC long, -16 % move
    0.380952
    """
    model = Model.coerce(model)
    wanted = wanted_tables(tables)
    risk_vectors = risk_vectors_mode(risk_vectors)
    tables = {"positions": positions, "instruments": instruments, "market": market,
              "index": index, "balances": balances, "open_orders": open_orders,
              "reserves": reserves}
    tables = {k: as_table(v, k) for k, v in tables.items()}
    warn_no_balances(tables)
    if check_mode(fill_market) == "forward":
        tables = forward_fill(tables)
    return by_parameter_set(tables, model, valuation_time, lambda t, m: _margin_one(
        t, m, valuation_time, risk_vectors, wanted))


def wanted_tables(tables):
    if tables is None or not isinstance(tables, (str, list, tuple, set, frozenset)):
        raise MarginError("arguments", "tables", f"a sequence of names among {TABLE_NAMES}, "
                          f"got {tables!r}")
    names = (tables,) if isinstance(tables, str) else tuple(tables)
    bad = [t for t in names if t not in TABLE_NAMES]
    if bad:
        raise MarginError("arguments", "tables", f"names among {TABLE_NAMES}, got {bad}")
    return names


def margin_per_snapshot(positions, instruments, market, index, balances=None,
                        open_orders=None, reserves=None, model=None, risk_vectors=False):
    """:func:`margin` on inputs with a ``time`` column, one engine pass per snapshot and the
    results stacked: the reference the one-pass path is tested against (slow for many
    snapshots)."""
    model = Model.coerce(model)
    risk_vectors = risk_vectors_mode(risk_vectors)
    tables = {"positions": positions, "instruments": instruments, "market": market,
              "index": index, "balances": balances, "open_orders": open_orders,
              "reserves": reserves}
    tables = {k: as_table(v, k) for k, v in tables.items()}
    return margin_snapshots(tables, None, lambda at_t, t: _margin_one(
        at_t, model.at(int(t.astype("int64"))), t, risk_vectors))


def _margin_one(tables, model, valuation_time, risk_vectors, wanted=TABLE_NAMES):
    t0 = time.perf_counter()
    book = load_book(**tables, model=model, valuation_time=valuation_time)
    t1 = time.perf_counter()
    out = run(book, model, risk_vectors)
    t2 = time.perf_counter()
    result = build(out, model, risk_vectors, wanted)
    t3 = time.perf_counter()
    result.timings = {"validate": t1 - t0, "compute": t2 - t1, "tables": t3 - t2,
                      "total": t3 - t0}
    if book.timed:
        result.timings["snapshots"] = len(book.snap_ns)
    return result

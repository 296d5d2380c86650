"""``pmrisk what-if``: one account of a book after hypothetical trades
(:meth:`pmrisk.Monitor.what_if`), printed as a table."""

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MarginError
from .inputs import add_book_arguments, read_book_tables, read_input

ACCOUNT_TABLES = ("positions", "balances", "open_orders", "reserves")


def add_what_if_command(sub):
    w = sub.add_parser("what-if", help="the margin of one account after hypothetical trades "
                       "(fills or orders), each trade's incremental margin, and the per-leg "
                       "sum against the basket")
    add_book_arguments(w)
    w.add_argument("--trades", required=True, metavar="PATH",
                   help="symbol, quantity [, price (default the mark), kind (fill or order)]: "
                        "Parquet, CSV or Arrow IPC")
    w.add_argument("--account", required=True, help="the account the trades are for")
    w.add_argument("--valuation-time", default=None, metavar="TIME",
                   help="ISO-8601 UTC, e.g. 2024-06-17T08:00:00Z (default: now)")


def _of_account(table, account):
    """The rows of ``account`` (a table without an ``account`` column is left whole: the
    monitor's checks name it)."""
    if table is None or "account" not in table.column_names:
        return table
    col = table.column("account")
    if not pa.types.is_string(col.type):
        try:
            col = col.cast(pa.string())
        except pa.ArrowException:
            return table
    return table.filter(pc.fill_null(pc.equal(col, account), False))


def what_if_command(args):
    from ..monitor.monitor import Monitor
    tables = read_book_tables(args)
    trades = read_input(args.trades, "trades")
    for k in ACCOUNT_TABLES:
        tables[k] = _of_account(tables[k], args.account)
    if not any(tables[k] is not None and tables[k].num_rows for k in ACCOUNT_TABLES):
        raise MarginError("arguments", "--account", f"an account of the book, got "
                          f"{args.account!r} (no positions, balances or orders)")
    mon = Monitor(**tables, model=args.model, valuation_time=args.valuation_time)
    print_what_if(mon.what_if(args.account, trades), mon.model.name or args.model)
    return 0


def _usd(x):
    return "inf" if x == float("inf") else f"{x:,.0f}"


def print_what_if(w, model_name):
    """The tables of a :class:`pmrisk.monitor.what_if.WhatIf`, readable."""
    print(f"pmrisk what-if: account {w.account}, {w.trades.num_rows} trades, model "
          f"{model_name}\n")
    print(f"{'':<7} {'equity $':>12} {'MM $':>12} {'IM $':>12} {'ratio':>8}  "
          f"{'status':<12} binding scenario")
    for r in w.accounts.to_pylist():
        ratio = "inf" if r["margin_ratio"] == float("inf") else f"{r['margin_ratio']:.1%}"
        print(f"{r['state']:<7} {_usd(r['equity']):>12} {_usd(r['maintenance_margin']):>12} "
              f"{_usd(r['initial_margin']):>12} {ratio:>8}  {r['status']:<12} "
              f"{r['worst_scenario']}")
    rows = w.trades.to_pylist()
    width = max([len(r["symbol"]) for r in rows] + [6])
    print(f"\n{'trade':>5}  {'symbol':<{width}} {'kind':<5} {'quantity':>12} {'price':>12}  "
          f"{'IM alone $':>12} {'IM in basket $':>15} {'MM alone $':>12} "
          f"{'MM in basket $':>15}")
    for r in rows:
        print(f"{r['trade']:>5}  {r['symbol']:<{width}} {r['kind']:<5} {r['quantity']:>12,.6g} "
              f"{r['price']:>12,.6g}  {r['im_standalone']:>+12,.0f} {r['im_marginal']:>+15,.0f} "
              f"{r['mm_standalone']:>+12,.0f} {r['mm_marginal']:>+15,.0f}")
    print()
    for s in w.summary.to_pylist():
        name = "IM" if s["figure"] == "initial_margin" else "MM"
        over = f" ({s['overcharge']:.1f}x the basket)" if s["overcharge"] is not None else ""
        print(f"{name}: {_usd(s['before'])} -> {_usd(s['after'])}, basket "
              f"{s['increase']:+,.0f}; the legs margined alone {s['standalone_sum']:+,.0f}"
              f"{over}")
    print("\nalone: the trade on the account by itself; in basket: what dropping it from the "
          "basket would save (negative: it hedges the other trades).")

"""Command line: ``pmrisk demo`` and ``pmrisk margin`` (SPEC §13)."""

import argparse
import os
import sys
import time

import pyarrow as pa


from .errors import MarginError


def _read(path, what):
    import pyarrow.csv as pcsv
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    if not os.path.exists(path):
        raise SystemExit(f"pmrisk: --{what}: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".parquet", ".pq"):
        return pq.read_table(path)
    if ext == ".csv":
        # empty cells are nulls (an option_type left blank on a future), not ""; key columns
        # stay strings even when they look like numbers (account 1001)
        keys = ("account", "symbol", "underlying", "asset", "unit", "kind", "settlement",
                "option_type", "order_id")
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            strings_can_be_null=True, column_types={k: pa.string() for k in keys}))
    if ext in (".arrow", ".feather", ".ipc"):
        return feather.read_table(path)
    raise SystemExit(f"pmrisk: --{what}: unknown file type {ext!r} (use .parquet, .csv, .arrow)")


def _fmt_usd(x):
    if x != x or abs(x) == float("inf"):
        return str(x)
    return f"{x:,.0f}"


def _fmt_ratio(x):
    return "inf" if x == float("inf") else f"{x:.1%}"


def report(result, *, top=3, limit=25, out=None):
    """Print a per-account report: equity, MM, IM, ratio, status, worst scenario, top
    contributors to MM.  With more than ``limit`` (account, time) rows, the ``limit`` lowest
    margin ratios are shown."""
    out = out or sys.stdout
    acc = result.accounts.to_pylist()
    timed = "time" in result.accounts.column_names
    key = (lambda r: (r["account"], r["time"])) if timed else (lambda r: r["account"])
    by_acc = {}
    for p in result.positions.to_pylist():
        if p["symbol"] != "unallocated":
            by_acc.setdefault(key(p), []).append(p)
    shown = acc
    if len(acc) > limit:
        shown = sorted(acc, key=lambda a: a["margin_ratio"])[:limit]
        print(f"{len(acc)} account rows; the {limit} with the lowest margin ratio:", file=out)
    w = max([len(a["account"]) for a in shown] + [7])
    tcol = f"{'time':<20}  " if timed else ""
    print(f"{'account':<{w}}  {tcol}{'equity $':>12}  {'MM $':>12}  {'IM $':>12}  "
          f"{'ratio':>8}  {'status':<12} worst scenario", file=out)
    for a in shown:
        tval = f"{a['time'].strftime('%Y-%m-%dT%H:%M:%SZ'):<20}  " if timed else ""
        print(f"{a['account']:<{w}}  {tval}{_fmt_usd(a['equity']):>12}  "
              f"{_fmt_usd(a['maintenance_margin']):>12}  {_fmt_usd(a['initial_margin']):>12}  "
              f"{_fmt_ratio(a['margin_ratio']):>8}  {a['status']:<12} {a['worst_scenario']}",
              file=out)
        mine = sorted(by_acc.get(key(a), []), key=lambda p: -p["mm_contribution_usd"])
        parts = [f"{p['symbol']} {_fmt_usd(p['mm_contribution_usd'])}"
                 for p in mine[:top] if p["mm_contribution_usd"] > 0]
        if parts:
            print(f"{'':<{w}}  top MM contributors ($): " + ", ".join(parts), file=out)


def _demo(args):
    from . import samples
    from .liquidation import liquidation_plan
    from .margin import margin
    from .model import Model
    b = samples.demo_book()
    vt = b.pop("valuation_time")
    t0 = time.perf_counter()
    r = margin(**b, model=args.model, valuation_time=vt)
    first = time.perf_counter() - t0
    r2 = margin(**b, model=args.model, valuation_time=vt)
    n_pos = b["positions"].num_rows
    model = Model.coerce(args.model)
    print(f"pmrisk demo: {r.accounts.num_rows} accounts, {n_pos} positions, model "
          f"{model.name or args.model}, valued at {vt}\n")
    report(r)
    th = model["thresholds"]
    warn = "/".join(f"{x:.0%}" for x in th["warning"])
    print(f"\nratio = equity / maintenance margin (MM); status bands: >= {th['warning'][0]:.0%}"
          f" normal, {warn} warnings, < {th['margin_call']:.0%} margin call (reduce-only), "
          f"< {th['liquidation']:.0%} liquidation.")
    liq = [a for a, s in zip(r.accounts["account"].to_pylist(),
                             r.accounts["status"].to_pylist()) if s == "liquidation"]
    if liq:
        plan = liquidation_plan(**b, model=model, valuation_time=vt, accounts=liq)
        print(f"\nliquidation plan (cancel open orders, then reduce the largest MM "
              f"contributors until the ratio is back to {model['liquidation_target']:.0%}):")
        for p in plan.to_pylist():
            what = p["order_id"] if p["action"] == "cancel_order" else \
                f"{p['symbol']} {p['quantity']:+,.4g}"
            print(f"  {p['account']} step {p['step']}: {p['action']:<12} {what:<28} "
                  f"ratio after {_fmt_ratio(p['margin_ratio_after'])}")
    print(f"timing: first call {first * 1e3:.0f} ms (loads compiled kernels from the on-disk "
          f"cache, compiles them on the very first run); next call "
          f"{r2.timings['total'] * 1e3:.2f} ms, of which kernels "
          f"{r2.timings['compute'] * 1e3:.2f} ms.")
    return 0


def _margin(args):
    from .margin import margin
    tables = {k: _read(getattr(args, k), k) for k in ("positions", "instruments", "market",
                                                      "index")}
    for k in ("balances", "open_orders", "reserves"):
        path = getattr(args, k)
        tables[k] = _read(path, k.replace("_", "-")) if path else None
    rv = {None: False, "units": True, "positions": "positions"}[args.risk_vectors]
    r = margin(**tables, model=args.model, valuation_time=args.valuation_time,
               risk_vectors=rv)
    if args.out:
        import pyarrow.parquet as pq
        os.makedirs(args.out, exist_ok=True)
        names = ["accounts", "units", "positions"] + {
            None: [], "units": ["unit_risk_vectors"],
            "positions": ["unit_risk_vectors", "position_risk_vectors"]}[args.risk_vectors]
        for n in names:
            pq.write_table(getattr(r, n), os.path.join(args.out, f"{n}.parquet"))
        print(f"wrote {', '.join(n + '.parquet' for n in names)} to {args.out}")
    report(r)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="pmrisk", description="Offline portfolio margin.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="margin the embedded sample book and print a report")
    d.add_argument("--model", default="standard",
                   help="preset name (standard, binance_pm_pro, deribit_pme, span) or TOML "
                        "file (default standard)")
    m = sub.add_parser("margin", help="margin tables read from Parquet, CSV or Arrow IPC")
    for k in ("positions", "instruments", "market", "index"):
        m.add_argument(f"--{k}", required=True, metavar="FILE")
    for k in ("balances", "open-orders", "reserves"):
        m.add_argument(f"--{k}", metavar="FILE")
    m.add_argument("--model", default="standard",
                   help="preset name or TOML file (default standard)")
    m.add_argument("--valuation-time", default=None, help="ISO-8601 UTC (default: now)")
    m.add_argument("--risk-vectors", nargs="?", const="units", choices=("units", "positions"),
                   help="also write unit_risk_vectors (and position_risk_vectors with "
                        "'positions')")
    m.add_argument("--out", metavar="DIR", help="write the result tables as Parquet here")
    args = p.parse_args(argv)
    try:
        return _demo(args) if args.cmd == "demo" else _margin(args)
    except MarginError as exc:
        print(f"pmrisk: input error: {exc}", file=sys.stderr)
        return 2
    except (pa.ArrowInvalid, OSError) as exc:   # unreadable file, bad --out, ...
        if isinstance(exc, BrokenPipeError):     # `pmrisk demo | head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"pmrisk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

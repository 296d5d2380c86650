"""Command line: ``pmrisk demo``, ``pmrisk margin``, ``pmrisk samples history``,
``pmrisk backtest``, ``pmrisk calibrate`` and ``pmrisk what-if``."""

import argparse
import os
import sys
import time

import pyarrow as pa


from .inputs import add_book_arguments, number_arg, read_book_tables, read_input
from ..errors import MarginError


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
    from .. import samples
    from ..engine.liquidation import liquidation_plan
    from ..engine.margin import margin
    from ..model.model import Model
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
    from ..engine.margin import margin
    tables = read_book_tables(args)
    rv = {None: False, "units": True, "positions": "positions"}[args.risk_vectors]
    names = ["accounts", "units", "positions"] + {
        None: [], "units": ["unit_risk_vectors"],
        "positions": ["unit_risk_vectors", "position_risk_vectors"]}[args.risk_vectors]
    if args.out:
        from ..backtest.run import overlaps
        for n in names:
            target = os.path.join(args.out, f"{n}.parquet")
            for k, path in _input_files(args).items():
                if overlaps(target, path):
                    raise MarginError("arguments", "--out", "a directory apart from the "
                                      f"inputs: writing {target} would change the {k} input "
                                      f"{path}", hint="Choose another --out directory")
    try:
        r = margin(**tables, model=args.model, valuation_time=args.valuation_time,
                   risk_vectors=rv)
    except MarginError as exc:
        if args.valuation_time is None and getattr(exc, "time", None) is None and \
                "past expiry" in str(exc):
            exc.args = (f"{exc}. The valuation time defaulted to now: give the data's time "
                        "with --valuation-time (ISO-8601 UTC, e.g. 2024-06-17T08:00:00Z)",)
        raise
    if args.out:
        import pyarrow.parquet as pq
        os.makedirs(args.out, exist_ok=True)
        for n in names:
            pq.write_table(getattr(r, n), os.path.join(args.out, f"{n}.parquet"))
        print(f"wrote {', '.join(n + '.parquet' for n in names)} to {args.out}")
    report(r)
    return 0


# -- `pmrisk samples history` and `pmrisk backtest` ---------------------------------------

BACKTEST_INPUTS = ("positions", "instruments", "market", "index", "balances", "open_orders",
                   "reserves")
STATUSES = ("normal", "warning_1", "warning_2", "warning_3", "margin_call", "liquidation")


def _add_backtest_commands(sub):
    s = sub.add_parser("samples", help="write synthetic sample data")
    kinds = s.add_subparsers(dest="sample", required=True)
    h = kinds.add_parser("history", help="a deterministic synthetic history (marks, vols, "
                         "evolving books, balances, a crash) as Parquet datasets for "
                         "`pmrisk backtest --data`")
    h.add_argument("--out", required=True, metavar="DIR")
    h.add_argument("--days", type=int, default=30, help="length (default 30)")
    h.add_argument("--accounts", type=int, default=100, help="accounts (default 100)")
    h.add_argument("--step-minutes", type=int, default=60,
                   help="minutes between snapshot times (default 60)")
    h.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("backtest", help="margin every (time, account) snapshot of a history "
                       "of Parquet datasets, streamed in batches; Parquet results")
    b.add_argument("--data", required=True, metavar="DIR",
                   help="positions, instruments, market, index [, balances, open_orders, "
                        "reserves], each DIR/NAME/ (a Parquet dataset) or DIR/NAME.parquet")
    b.add_argument("--out", required=True, metavar="DIR",
                   help="result datasets DIR/accounts/ (and units/, positions/)")
    b.add_argument("--model", default="standard",
                   help="preset name or TOML file (default standard)")
    b.add_argument("--tables", default="accounts",
                   help="comma-separated among accounts, units, positions (default accounts)")
    b.add_argument("--fill-market", choices=("none", "forward"), default="none",
                   help="'forward': carry a symbol's last market row to times without one")
    b.add_argument("--batch-rows", type=number_arg, default=1_000_000,
                   help="account-state rows per batch (default 1,000,000)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this Dask scheduler (tcp://host:8786); --data and --out must "
                        "be reachable from its workers")
    b.add_argument("--overwrite", action="store_true",
                   help="replace the part files of an earlier run in --out")
    b.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def _samples(args):
    from .. import samples
    samples.history(days=args.days, accounts=args.accounts, step_minutes=args.step_minutes,
                    seed=args.seed, out=args.out)
    n_times = max(args.days * 1440 // args.step_minutes, 1)
    print(f"wrote a {args.days}-day history of {args.accounts} accounts every "
          f"{args.step_minutes} minutes ({n_times * args.accounts:,} snapshots) to {args.out}: "
          "instruments.parquet, positions/, market/, index/, balances/")
    return 0


def data_inputs(data):
    """The inputs of ``pmrisk backtest --data DIR``: ``{name: DIR/NAME or DIR/NAME.parquet}``
    for those present."""
    inputs = {}
    for name in BACKTEST_INPUTS:
        for path in (os.path.join(data, name), os.path.join(data, f"{name}.parquet")):
            if os.path.exists(path):
                inputs[name] = path
                break
    return inputs


def _backtest(args):
    from ..backtest.run import backtest, check_out
    inputs = data_inputs(args.data)
    missing = [n for n in BACKTEST_INPUTS[:4] if n not in inputs]
    if missing:
        print(f"pmrisk: --data {args.data}: no {', '.join(missing)} (expected DIR/NAME/ or "
              "DIR/NAME.parquet)", file=sys.stderr)
        return 2
    check_out(args.out, inputs, args.overwrite, option="--out", flag="--overwrite")
    client = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            print("pmrisk: --scheduler needs Dask: pip install 'pmrisk[dask]'", file=sys.stderr)
            return 2
        try:
            client = Client(args.scheduler, timeout=30)
        except (OSError, ValueError, TypeError) as exc:       # TimeoutError is an OSError
            raise MarginError("arguments", "--scheduler", "the address of a running Dask "
                              f"scheduler (tcp://host:8786); {args.scheduler}: "
                              f"{type(exc).__name__}: {exc}") from None
    try:
        o = backtest(**inputs, model=args.model, out=args.out, client=client,
                     progress=not args.no_progress, overwrite=args.overwrite,
                     tables=tuple(t.strip() for t in args.tables.split(",") if t.strip()),
                     fill_market=args.fill_market, batch_rows=args.batch_rows)
    finally:
        if client is not None:
            client.close()
    _backtest_summary(o)
    return 0


def _backtest_summary(o, limit=5):
    import pyarrow.compute as pc
    acc = o.dataset("accounts").to_table(columns=["account", "time", "margin_ratio", "status"])
    n_acc = len(pc.unique(acc["account"]))
    el = o.timings["total"]
    batches = f"{o.batches} batch" + ("es" if o.batches != 1 else "")
    print(f"pmrisk backtest: {o.snapshots:,} snapshots ({n_acc:,} accounts) in {el:.1f} s "
          f"({o.snapshots / max(el, 1e-9):,.0f} snapshots/s, {batches}); wrote "
          f"{', '.join(o.tables)} to {o.path}")
    vc = pc.value_counts(acc["status"])
    counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
    print("status of the snapshots: " + ", ".join(
        f"{s} {counts[s]:,}" for s in STATUSES if s in counts))
    liq = acc.filter(pc.equal(acc["status"], "liquidation"))
    if liq.num_rows:
        first = liq.group_by("account").aggregate([("time", "min"), ("margin_ratio", "min")])
        first = first.sort_by([("time_min", "ascending"), ("account", "ascending")])
        print(f"accounts in liquidation at some time: {first.num_rows:,} of {n_acc:,}; the "
              f"first {min(limit, first.num_rows)}:")
        for r in first.slice(0, limit).to_pylist():
            print(f"  {r['account']:<24} from {r['time_min'].strftime('%Y-%m-%dT%H:%MZ')}, "
                  f"lowest ratio {_fmt_ratio(r['margin_ratio_min'])}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="pmrisk", description="Offline portfolio margin.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="margin the embedded sample book and print a report")
    d.add_argument("--model", default="standard",
                   help="preset name (standard, binance_pm_pro, deribit_pme, span) or TOML "
                        "file (default standard)")
    d.add_argument("--monitor", action="store_true",
                   help="replay an embedded BTC crash (-25 %% in 5 minutes) through a real-time "
                        "monitor: accounts cross every warning level, two reach liquidation "
                        "(under the default model)")
    m = sub.add_parser("margin", help="margin tables read from Parquet, CSV or Arrow IPC")
    add_book_arguments(m)
    m.add_argument("--valuation-time", default=None, metavar="TIME",
                   help="ISO-8601 UTC, e.g. 2024-06-17T08:00:00Z (default: now, so options "
                        "expired by now are refused: give the data's time); inputs with a "
                        "time column are valued at each snapshot's time")
    m.add_argument("--risk-vectors", nargs="?", const="units", choices=("units", "positions"),
                   help="also write unit_risk_vectors (and position_risk_vectors with "
                        "'positions')")
    m.add_argument("--out", metavar="DIR", help="write the result tables as Parquet here")
    _add_backtest_commands(sub)
    from .monitor_view import add_monitor_command, demo_command, monitor_command
    add_monitor_command(sub)
    from .calibrate import add_calibrate_command, calibrate_command
    add_calibrate_command(sub)
    from .what_if import add_what_if_command, what_if_command
    add_what_if_command(sub)
    args = p.parse_args(argv)
    try:
        handler = {"demo": demo_command if getattr(args, "monitor", False) else _demo,
                   "margin": _margin, "samples": _samples, "backtest": _backtest,
                   "monitor": monitor_command,
                   "calibrate": lambda a: calibrate_command(a, read_input),
                   "what-if": what_if_command}[args.cmd]
        return handler(args)
    except MarginError as exc:      # bad input (a file that cannot be read is one too)
        path = getattr(exc, "file", None) or _input_files(args).get(exc.table)
        where = f" in {path}" if path and path not in str(exc) else ""
        _error(f"input error{where}: {exc}")
        return 2
    except (pa.ArrowException, OSError) as exc:   # a file written (--out), a scheduler, ...
        if isinstance(exc, BrokenPipeError):     # `pmrisk demo | head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(text):
    """One line on stderr, whatever the message holds."""
    print("pmrisk: " + " ".join(str(text).split()), file=sys.stderr)


def _input_files(args):
    """``{table: path}`` of the files the command reads (for error messages)."""
    files = {k: getattr(args, k, None) for k in BACKTEST_INPUTS}
    files["ticks"] = getattr(args, "replay", None)
    files["trades"] = getattr(args, "trades", None)
    if getattr(args, "data", None):
        files.update(data_inputs(args.data))
    return {k: v for k, v in files.items() if v}


if __name__ == "__main__":
    sys.exit(main())

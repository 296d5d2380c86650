"""``pmrisk monitor --replay TICKS`` and ``pmrisk demo --monitor``: replay ticks through a
:class:`pmrisk.Monitor` with a terminal view.

Tick files (Parquet, Arrow IPC or CSV), one row per market or index change:

| column | meaning |
|---|---|
| ``time`` | when (timestamp, UTC); rows with the same time are one update |
| ``kind`` | ``market`` or ``index`` (optional: rows with a ``symbol`` are market rows) |
| ``symbol``, ``mark_price``, ``mark_iv``, ``underlying_price`` | market rows (as in margin) |
| ``underlying``, ``index_price`` | index rows |

A null ``mark_price``, ``mark_iv`` or ``index_price`` keeps the symbol's or underlying's value
(as in :meth:`pmrisk.Monitor.update`): a row may carry only what changed, e.g. a new vol.

The book is valued at the first tick's time unless ``--valuation-time`` says otherwise (the
monitor keeps it; see :class:`pmrisk.Monitor`); each update's alerts carry its tick time.

The view: on a terminal, the screen is redrawn in place after every update (accounts sorted by
margin ratio, coloured by status; the latest alerts); otherwise (a pipe, a log, ``--no-live``)
each alert is one plain line as it happens, then the final accounts.
"""

import math
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..io.schema import TIME_TYPE

MARKET_COLS = ("symbol", "mark_price", "mark_iv", "underlying_price")
INDEX_COLS = ("underlying", "index_price")
COLOURS = {"normal": "32", "warning_1": "33", "warning_2": "33", "warning_3": "33;1",
           "margin_call": "35;1", "liquidation": "31;1"}
KIND_COLOURS = {"threshold_down": "33", "threshold_up": "32", "margin_call": "35;1",
                "liquidation": "31;1"}


# -- ticks ---------------------------------------------------------------------------------

def tick_updates(ticks):
    """``[(time_ns, market rows or None, index rows or None), ...]`` of a ticks table, one per
    distinct time in time order (rows of one time in file order)."""
    from ..io.arrow import check_columns, time_column
    from ..errors import MarginError
    if "time" not in ticks.column_names:
        raise MarginError("ticks", "time", "a time column (one update per distinct time)")
    if not ticks.num_rows:
        raise MarginError("ticks", "time", "at least one tick; the ticks table has no rows")
    check_columns(ticks, "ticks", {"time": ("time", True, False)})    # a type; no nulls
    ns = time_column(ticks, "ticks", "time")
    if "kind" in ticks.column_names:
        kind = ticks.column("kind").cast(pa.string()).to_pylist()
        bad = [k for k in set(kind) if k not in ("market", "index")]
        if bad:
            raise MarginError("ticks", "kind", f"'market' or 'index', got {sorted(map(str, bad))}")
        is_market = np.array([k == "market" for k in kind], dtype=bool)
    elif "symbol" in ticks.column_names:
        is_market = ~np.asarray(ticks.column("symbol").is_null().to_numpy(zero_copy_only=False))
    else:
        is_market = np.zeros(ticks.num_rows, dtype=bool)
    order = np.argsort(ns, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(ns[order]) != 0, True])
    m_cols = [c for c in MARKET_COLS if c in ticks.column_names]
    x_cols = [c for c in INDEX_COLS if c in ticks.column_names]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = order[lo:hi]
        m, x = rows[is_market[rows]], rows[~is_market[rows]]
        market = ticks.select(m_cols).take(pa.array(m, pa.int64())) if len(m) else None
        index = ticks.select(x_cols).take(pa.array(x, pa.int64())) if len(x) else None
        out.append((int(ns[rows[0]]), market, index))
    return out


def crash_ticks(book, underlying="BTC", drop=0.25, minutes=5, step_seconds=1, vol_jump=0.6):
    """A deterministic crash of ``underlying`` by ``drop`` over ``minutes`` (a first leg, a
    bounce, a second leg), one tick of its index and every instrument on it each
    ``step_seconds``: futures marks and option forwards move with the index, option vols rise
    by up to ``vol_jump`` x the move (relative), option marks are Black-76 at the new forward
    and vol.  Returns a ticks table (``time, kind, symbol, underlying, mark_price, mark_iv,
    underlying_price, index_price``)."""
    t0 = pa.scalar(book["valuation_time"]).cast(TIME_TYPE).value
    ins, mkt = book["instruments"], book["market"]
    on = pc.equal(ins["underlying"], underlying)
    ins = ins.filter(on)
    sym = ins["symbol"].to_pylist()
    mrow = {s: i for i, s in enumerate(mkt["symbol"].to_pylist())}
    take = pa.array([mrow[s] for s in sym], pa.int64())
    m = mkt.take(take)
    mark0 = m["mark_price"].to_numpy(zero_copy_only=False)
    iv0 = m["mark_iv"].to_numpy(zero_copy_only=False) if "mark_iv" in m.column_names \
        else np.full(len(sym), np.nan)
    idx = dict(zip(book["index"]["underlying"].to_pylist(),
                   book["index"]["index_price"].to_pylist()))
    px0 = idx[underlying]
    fwd0 = m["underlying_price"].to_numpy(zero_copy_only=False) \
        if "underlying_price" in m.column_names else np.full(len(sym), np.nan)
    fwd0 = np.where(np.isnan(fwd0), px0, fwd0)
    is_opt = np.array([k == "option" for k in ins["kind"].to_pylist()])
    inverse = np.array([s == "inverse" for s in ins["settlement"].to_pylist()])
    n = int(minutes * 60 // step_seconds)
    secs = np.arange(n + 1) * step_seconds
    knots = np.array([0.0, 0.3, 0.4, 0.8, 0.9, 1.0]) * minutes * 60
    path = np.interp(secs, knots, np.array([0.0, -0.45, -0.32, -0.85, -0.78, -1.0]) * drop)
    path[1:-1] += 0.0015 * np.sin(secs[1:-1] / 7.0)            # deterministic wiggle
    rows = []
    for s, move in zip(secs.tolist(), path.tolist()):
        t = t0 + int(s * 1e9)
        f = 1.0 + move
        iv = iv0 * (1.0 + vol_jump * abs(move))
        fwd = fwd0 * f
        marks = mark0 * f
        marks[is_opt] = _option_marks(ins.filter(pa.array(is_opt)), fwd[is_opt], iv[is_opt], t,
                                      inverse[is_opt])
        rows.append(dict(time=t, kind="index", symbol=None, underlying=underlying,
                         mark_price=None, mark_iv=None, underlying_price=None,
                         index_price=px0 * f))
        for k, x in enumerate(sym):
            rows.append(dict(time=t, kind="market", symbol=x, underlying=underlying,
                             mark_price=float(marks[k]),
                             mark_iv=float(iv[k]) if is_opt[k] else None,
                             underlying_price=float(fwd[k]) if is_opt[k] else None,
                             index_price=None))
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("time", TIME_TYPE), ("kind", pa.string()), ("symbol", pa.string()),
        ("underlying", pa.string()), ("mark_price", pa.float64()), ("mark_iv", pa.float64()),
        ("underlying_price", pa.float64()), ("index_price", pa.float64())]))


def _option_marks(options, fwd, iv, t_ns, inverse):
    """Black-76 marks (coin for inverse options) at forward ``fwd`` and vol ``iv``."""
    from pmrisk.kernel import black76_price_array
    years = (options["expiry"].cast(TIME_TYPE).cast(pa.int64()).to_numpy(
        zero_copy_only=False) - t_ns) / (365 * 86_400e9)
    call = np.array([o == "call" for o in options["option_type"].to_pylist()], dtype=np.int64)
    strike = options["strike"].to_numpy(zero_copy_only=False)
    v = black76_price_array(fwd, strike, years, iv, call, 0.0)
    return np.maximum(np.where(inverse, v / fwd, v), 1e-8)


# -- the view --------------------------------------------------------------------------------

def _pct(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:.1%}"


def _iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else "-"


class View:
    """Accounts sorted by ratio and the alert log: redrawn in place on a terminal (``live``),
    plain lines otherwise."""

    def __init__(self, out=None, live=None, top=20, log=12):
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.colour = self.live
        self.top, self.log = top, log
        self.alerts = []
        self.latency = []
        self.counts = {}

    def _c(self, text, code):
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def alert_line(self, a):
        kind = self._c(f"{a['kind']:<15}", KIND_COLOURS.get(a["kind"]))
        return (f"{_iso(a['time'])}  {a['account']:<20} {kind}"
                f" {a['threshold']:>7.1%}   ratio {_pct(a['ratio_before']):>7} -> "
                f"{_pct(a['ratio_after']):>7}   ({a['status_before'] or 'new'} -> "
                f"{a['status_after']})")

    def plan_lines(self, plans):
        for p in plans.to_pylist():
            what = p["order_id"] if p["action"] == "cancel_order" else \
                f"{p['symbol']} {p['quantity']:+,.4g}"
            yield (f"    liquidation plan {p['account']} step {p['step']}: {p['action']:<12} "
                   f"{what:<28} ratio after {_pct(p['margin_ratio_after'])}")

    def update(self, monitor, res, k, n):
        self.latency.append(res.seconds)
        lines = []
        for a in res.alerts.to_pylist():
            self.counts[a["kind"]] = self.counts.get(a["kind"], 0) + 1
            lines.append(self.alert_line(a))
        if res.alerts.num_rows and "liquidation" in res.alerts["kind"].to_pylist():
            lines.extend(self.plan_lines(res.liquidation_plans))
        self.alerts.extend(lines)
        if self.live:
            self.draw(monitor, res, k, n)
        else:
            for line in lines:
                print(line, file=self.out)

    def accounts_lines(self, monitor, limit):
        acc = monitor.accounts.sort_by([("margin_ratio", "ascending"), ("account", "ascending")])
        rows = acc.slice(0, limit).to_pylist()
        w = max([len(r["account"]) for r in rows] + [7])
        yield (f"{'account':<{w}}  {'equity $':>12}  {'MM $':>12}  {'ratio':>8}  status")
        for r in rows:
            st = f"{r['status']:<12}"
            yield (f"{r['account']:<{w}}  {r['equity']:>12,.0f}  "
                   f"{r['maintenance_margin']:>12,.0f}  {_pct(r['margin_ratio']):>8}  "
                   f"{self._c(st, COLOURS.get(r['status']))}")
        if acc.num_rows > limit:
            yield f"... {acc.num_rows - limit} more accounts"

    def draw(self, monitor, res, k, n):
        lat = np.array(self.latency) * 1e3
        head = (f"pmrisk monitor  {_iso(res.time)}  update {k}/{n}  "
                f"{len(monitor.accounts):,} accounts  update latency {lat[-1]:.2f} ms "
                f"(p50 {np.percentile(lat, 50):.2f}, p99 {np.percentile(lat, 99):.2f})")
        body = [head, ""] + list(self.accounts_lines(monitor, self.top)) + [
            "", f"alerts ({sum(self.counts.values())}, latest last):"] + \
            self.alerts[-self.log:]
        self.out.write("\x1b[H\x1b[J" + "\n".join(body) + "\n")
        self.out.flush()

    def summary(self, monitor):
        lat = np.array(self.latency) * 1e3 if self.latency else np.zeros(1)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none"
        if not self.live:
            print("", file=self.out)
            for line in self.accounts_lines(monitor, self.top):
                print(line, file=self.out)
        print(f"\n{len(self.latency)} updates; alerts: {counts}; update latency p50 "
              f"{np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms",
              file=self.out)


def replay(monitor, updates, view, speed=0.0):
    """Apply ``updates`` (:func:`tick_updates`) in order; with ``speed`` > 0, wait so that
    the replay runs ``speed`` times faster than the ticks' own times."""
    start, t_first = time.perf_counter(), updates[0][0] if updates else 0
    for k, (t, market, index) in enumerate(updates, 1):
        if speed and speed > 0:
            wait = (t - t_first) / 1e9 / speed - (time.perf_counter() - start)
            if wait > 0:
                time.sleep(wait)
        res = monitor.update(market=market, index=index, at=np.datetime64(t, "ns"))
        view.update(monitor, res, k, len(updates))
    view.summary(monitor)


# -- the commands ------------------------------------------------------------------------------

def add_monitor_command(sub):
    from .inputs import add_book_arguments, number_arg
    m = sub.add_parser("monitor", help="replay ticks through a real-time margin monitor "
                       "(live terminal view, threshold alerts, liquidation plans)")
    m.add_argument("--replay", required=True, metavar="TICKS",
                   help="ticks file (Parquet, Arrow IPC or CSV): time, kind (market|index), "
                        "symbol, mark_price, mark_iv, underlying_price, underlying, "
                        "index_price")
    add_book_arguments(m)
    m.add_argument("--valuation-time", default=None,
                   help="ISO-8601 UTC (default: the first tick's time)")
    m.add_argument("--hysteresis", type=float, default=0.0,
                   help="ratio margin before a level alerts again (default 0)")
    m.add_argument("--speed", type=number_arg, default=None,
                   help="replay this many times faster than real time (default: 30 on a "
                        "terminal, as fast as possible otherwise; 0: as fast as possible)")
    m.add_argument("--no-live", action="store_true",
                   help="plain alert lines, no redrawn screen (logs, pipes)")
    m.add_argument("--top", type=number_arg, default=20, help="accounts shown (default 20)")


def check_view_args(top, speed):
    """``--top``: a whole number >= 1; ``--speed``: a finite number >= 0 (0: as fast as
    possible) or None.  Anything else is a :class:`MarginError` naming the flag.

    >>> from pmrisk.cli.monitor_view import check_view_args
    >>> check_view_args(20, None)
    >>> check_view_args(-5, None)
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: arguments.--top: expected a whole number >= 1 (accounts \
shown), got -5
    """
    from ..errors import MarginError
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise MarginError("arguments", "--top", f"a whole number >= 1 (accounts shown), got "
                          f"{top!r}")
    if speed is not None and (isinstance(speed, (bool, str)) or not math.isfinite(speed)
                              or speed < 0):
        raise MarginError("arguments", "--speed", "a finite number >= 0 (times faster than "
                          f"real time; 0: as fast as possible), got {speed!r}")


def monitor_command(args):
    from .inputs import read_book_tables, read_input
    from ..errors import MarginError
    from ..monitor.monitor import Monitor
    check_view_args(args.top, args.speed)
    tables = read_book_tables(args)
    updates = tick_updates(read_input(args.replay, "replay"))
    vt = args.valuation_time or (np.datetime64(updates[0][0], "ns") if updates else None)
    mon = Monitor(**tables, model=args.model, valuation_time=vt, hysteresis=args.hysteresis)
    view = View(live=False if args.no_live else None, top=args.top)
    speed = args.speed if args.speed is not None else (30.0 if view.live else 0.0)
    print(f"pmrisk monitor: {len(mon.accounts):,} accounts, {len(updates):,} updates from "
          f"{args.replay}, model {mon.model.name or args.model}", file=view.out)
    try:
        replay(mon, updates, view, speed)
    except MarginError as exc:      # a tick's rows: the ticks file, not the book's files
        exc.file = args.replay
        raise
    return 0


def demo_command(args):
    """``pmrisk demo --monitor``: the demo book through a BTC crash of -25 % in 5 minutes."""
    from .. import samples
    from ..monitor.monitor import Monitor
    book = samples.demo_book()
    ticks = crash_ticks(book)
    vt = book.pop("valuation_time")
    mon = Monitor(**book, model=args.model, valuation_time=vt, hysteresis=0.005)
    view = View()
    updates = tick_updates(ticks)
    name = mon.model.name or args.model
    th = mon.model["thresholds"]
    levels = "/".join(f"{x:.0%}" for x in th["warning"])
    print(f"pmrisk demo --monitor: {len(mon.accounts)} accounts (model {name}); BTC falls "
          f"25 % in 5 minutes, with a bounce: {len(updates)} ticks of its index and every "
          f"BTC instrument.  Alerts at {levels} (warnings), {th['margin_call']:.0%} (margin "
          f"call) and {th['liquidation']:.0%} (liquidation); statuses are exact, alerts "
          "have a hysteresis of 0.5 % (after an alert at a level, the next one there needs "
          "the ratio 0.5 % beyond it).\n", file=view.out)
    replay(mon, updates, view, speed=20.0 if view.live else 0.0)
    return 0

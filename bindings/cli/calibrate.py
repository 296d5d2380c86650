"""``pmrisk calibrate``: a model TOML, a report and optionally a plot and an exceedance check
from a price history; and :func:`plot`, the calibration figure (matplotlib, imported only
here)."""

import math
import os
import sys

import numpy as np

from ..model.calibration import (YEAR_NS, calibrate, exceedances, log_ranges, parse_interval,
                                 volatility_paths)
from ..errors import MarginError


def plot(prices, report, path, *, lam=0.94, interval="1d", seed_obs=30, k_sigma=3.0,
         horizon=1, floors=None, as_of=None, title=None):
    """Write the calibration figure to ``path`` (PNG): per underlying, the annualised EWMA
    volatility over time and the price range it implies (``max(floor, exp(k*sigma*sqrt(h))
    - 1)``, with the calibrated ``price_range`` marked at the end), and a heatmap of the
    correlations the model uses.  Needs matplotlib (``pip install matplotlib``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MarginError("arguments", "plot", "matplotlib installed for the plot: pip install "
                          "matplotlib") from None
    und = report.filter(_eq(report, "kind", "underlying")).to_pylist()
    pairs = report.filter(_eq(report, "kind", "pair")).to_pylist()
    names = [r["underlying"] for r in und]
    paths = volatility_paths(prices, lam=lam, interval=interval, seed_obs=seed_obs,
                             underlyings=names, as_of=as_of)
    ann = math.sqrt(YEAR_NS / parse_interval(interval))
    d = len(names)
    fig = plt.figure(figsize=(10, 1.0 + 1.9 * max(d, 2)), dpi=72)
    grid = fig.add_gridspec(max(d, 2), 2, width_ratios=(2.4, 1.0), wspace=0.35, hspace=0.45)
    for j, r in enumerate(und):
        ax = fig.add_subplot(grid[j, 0])
        sel = paths.filter(_eq(paths, "underlying", r["underlying"]))
        t = sel["time"].to_numpy(zero_copy_only=False).astype("datetime64[ns]")
        sig = sel["sigma"].to_numpy(zero_copy_only=False)
        ret = sel["log_return"].to_numpy(zero_copy_only=False)
        floor = floors if not isinstance(floors, dict) else floors.get(
            r["underlying"], floors.get("default", 0.0))
        up, down = log_ranges(sig[:-1], k_sigma, horizon)     # known before each interval
        up = np.maximum(up, float(floor or 0.0))
        ax.fill_between(t[1:], -100 * down, 100 * up, color="tab:red", alpha=0.18, lw=0,
                        step="pre", label=f"range ({k_sigma:g} sigma)")
        ax.vlines(t[1:], 0, 100 * np.expm1(ret[1:]), color="0.35", lw=0.6,
                  label="move per interval")
        ax.set_ylabel("move, %", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{r['underlying']}: price_range {r['price_range']:.1%}, "
                     f"EWMA vol {r['sigma_annualised']:.0%} a year", fontsize=9, loc="left")
        ax2 = ax.twinx()
        ax2.plot(t, sig * ann, color="tab:blue", lw=1.1, label="EWMA vol (annualised)")
        ax2.set_ylabel("EWMA vol, a year", color="tab:blue", fontsize=8)
        ax2.tick_params(labelsize=7)
        if j == 0:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left", ncol=3)
        if j < d - 1:
            ax.set_xticklabels([])
        else:
            for lab in ax.get_xticklabels():
                lab.set_rotation(20)
    ax = fig.add_subplot(grid[:, 1])
    rho = np.eye(d)
    for p in pairs:
        i, j = names.index(p["underlying"]), names.index(p["other"])
        rho[i, j] = rho[j, i] = p["rho"]
    im = ax.imshow(rho, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(d), names, fontsize=8)
    ax.set_yticks(range(d), names, fontsize=8)
    for i in range(d):
        for j in range(d):
            ax.text(j, i, f"{rho[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(rho[i, j]) > 0.6 else "black")
    ax.set_title("EWMA correlation", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.6)
    fig.suptitle(title or f"Calibration: EWMA lambda {lam}, {k_sigma:g} sigma over "
                 f"{horizon} x {interval}", fontsize=10)
    fig.savefig(path, dpi=72, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _eq(table, col, value):
    import pyarrow.compute as pc
    return pc.equal(table[col], value)


def add_calibrate_command(sub):
    c = sub.add_parser("calibrate", help="calibrate price ranges and correlations from a price "
                       "history; write the model as TOML")
    c.add_argument("--prices", required=True, metavar="FILE",
                   help="time, underlying, index_price (Parquet, CSV or Arrow IPC)")
    c.add_argument("--model", default="standard",
                   help="base model: preset name or TOML file (default standard)")
    c.add_argument("--out", metavar="FILE.toml", help="write the calibrated model here")
    c.add_argument("--plot", metavar="FILE.png", help="write the calibration figure here "
                   "(.png, .pdf or .svg)")
    c.add_argument("--backtest", action="store_true",
                   help="count exceedances of the calibrated ranges (Kupiec's test)")
    c.add_argument("--iv", metavar="FILE", help="time, underlying, mark_iv (ATM implied vol, "
                   "decimal): also calibrate volatility_range_up/down")
    c.add_argument("--method", choices=("ewma", "historical"), default="ewma")
    c.add_argument("--lam", type=float, default=0.94, help="EWMA decay (default 0.94)")
    c.add_argument("--interval", default="1d", help="return interval (default 1d)")
    c.add_argument("--horizon", type=int, default=1, help="intervals covered (default 1)")
    c.add_argument("--k-sigma", type=float, default=3.0, help="sigmas (default 3)")
    c.add_argument("--floor", type=float, default=None, help="lowest price_range")
    c.add_argument("--seed-obs", type=int, default=30, help="returns seeding the EWMA (30)")
    c.add_argument("--quantile", type=float, default=0.99, help="historical quantile (0.99)")
    c.add_argument("--as-of", default=None, help="use prices up to this time only (ISO-8601)")
    c.add_argument("--repair", choices=("none", "nearest"), default=None,
                   help="a correlation estimate that is not PSD: refuse or repair (default: "
                        "the model's setting)")


def calibrate_command(args, read):
    from ..model import toml as model_toml
    given = [os.path.abspath(p) for p in (args.prices, args.iv, args.model) if p]
    for what in ("out", "plot"):
        path = getattr(args, what)
        if path and os.path.abspath(path) in given:
            print(f"pmrisk: --{what} {path} is an input file; choose another path",
                  file=sys.stderr)
            return 2
    _check_outputs(args)
    prices = read(args.prices, "prices")
    iv = read(args.iv, "iv") if args.iv else None
    common = dict(method=args.method, lam=args.lam, interval=args.interval,
                  horizon=args.horizon, k_sigma=args.k_sigma, floors=args.floor,
                  seed_obs=args.seed_obs, quantile=args.quantile, as_of=args.as_of)
    model, report = calibrate(prices, base_model=args.model, iv=iv, repair=args.repair,
                              **common)
    _print_report(report)
    if args.out:
        model_toml.write(model, args.out)
        print(f"wrote the calibrated model to {args.out} (pmrisk margin --model {args.out})")
    if args.plot:
        plot(prices, report, args.plot, lam=args.lam, interval=args.interval,
             seed_obs=args.seed_obs, k_sigma=args.k_sigma, horizon=args.horizon,
             floors=args.floor, as_of=args.as_of)
        print(f"wrote the calibration plot to {args.plot}")
    if args.backtest:
        _print_exceedances(exceedances(prices, **common))
    return 0


PLOT_FORMATS = (".png", ".pdf", ".svg")


def _check_outputs(args):
    """``--out`` and ``--plot`` are files in an existing directory (not a directory), and the
    plot's extension one matplotlib writes: checked before anything is computed."""
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if not path:
            continue
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.path.isdir(parent):
            raise MarginError("arguments", flag, "a file path in an existing directory; "
                              f"{flag} {path}: " + ("is a directory" if os.path.isdir(path)
                                                    else f"no directory {parent}"))
    if args.plot and os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
        raise MarginError("arguments", "--plot", f"a file ending in {', '.join(PLOT_FORMATS)}; "
                          f"--plot {args.plot}")


def _print_report(report):
    rows = report.to_pylist()
    print(f"{'underlying':<12}{'sigma':>9}{'annual':>9}{'up':>9}{'down':>9}"
          f"{'price_range':>13}{'floor':>7}{'extreme':>9}")
    for r in rows:
        if r["kind"] == "underlying":
            print(f"{r['underlying']:<12}{r['sigma']:>9.4f}{r['sigma_annualised']:>9.1%}"
                  f"{r['range_up']:>9.2%}{r['range_down']:>9.2%}{r['price_range']:>13.2%}"
                  f"{'yes' if r['floor_hit'] else 'no':>7}{r['extreme_move']:>9.2%}")
    for r in rows:
        if r["kind"] == "pair":
            print(f"rho {r['underlying']},{r['other']}: {r['rho']:.3f}"
                  + (f" (estimate {r['rho_estimate']:.3f}, repaired)"
                     if abs(r["rho"] - r["rho_estimate"]) > 1e-12 else ""))


def _print_exceedances(t):
    print("exceedances of the calibrated range (calibrated strictly before each interval):")
    print(f"{'underlying':<12}{'n':>7}{'exceed':>8}{'up':>5}{'down':>6}{'rate':>9}"
          f"{'expected':>10}{'Kupiec LR':>11}{'p-value':>9}")
    for r in t.to_pylist():
        if not r["observations"]:
            print(f"{r['underlying']:<12}{0:>7}  (no interval to check)")
            continue
        print(f"{r['underlying']:<12}{r['observations']:>7}{r['exceedances']:>8}{r['up']:>5}"
              f"{r['down']:>6}{r['rate']:>9.2%}{r['expected_rate']:>10.2%}"
              f"{r['kupiec_lr']:>11.3f}{r['p_value']:>9.3f}")

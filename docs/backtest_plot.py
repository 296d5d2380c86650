"""Draw docs/backtest.png, the README's backtest figure: one account's margin ratio over the
synthetic history of ``pmrisk samples history`` (30 days, 100 accounts, hourly; the
defaults), with the status bands and the first snapshot in liquidation marked.

    python docs/backtest_plot.py        # needs matplotlib: pip install -e '.[bench]'

Deterministic: the history is seeded and the PNG carries no version or date metadata.
"""

import pathlib
import sys

import numpy as np
import pyarrow.compute as pc

import pmrisk
from pmrisk import samples

HERE = pathlib.Path(__file__).resolve().parent


def liquidated_account(accounts, profile="short-puts"):
    """The account of ``profile`` that first reaches liquidation (ties: by name) and that
    time."""
    liq = accounts.filter(pc.and_(pc.equal(accounts["status"], "liquidation"),
                                  pc.starts_with(accounts["account"], profile)))
    first = liq.group_by("account").aggregate([("time", "min")]).sort_by(
        [("time_min", "ascending"), ("account", "ascending")])
    return first["account"][0].as_py(), first["time_min"][0].as_py()


def main(path=HERE / "backtest.png"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = pmrisk.Model.preset("standard")
    h = samples.history()
    acc = pmrisk.backtest(**h, model=model, progress=False).accounts
    name, t_liq = liquidated_account(acc)
    mine = acc.filter(pc.equal(acc["account"], name))
    t = mine["time"].to_pylist()
    ratio = mine["margin_ratio"].to_numpy()
    btc = h["index"].filter(pc.equal(h["index"]["underlying"], "BTC"))
    th = model["thresholds"]

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    top = max(float(np.nanmax(ratio)) * 1.08, 1.5)
    low = min(float(np.nanmin(ratio)) - 0.1, 0.0)
    bands = [(th["warning"][0], top, "#e8f5e9", "normal"),
             (th["margin_call"], th["warning"][0], "#fff8e1", "warnings"),
             (th["liquidation"], th["margin_call"], "#ffe0b2", "margin call"),
             (low, th["liquidation"], "#ffcdd2", "liquidation")]
    for lo, hi, colour, label in bands:
        ax.axhspan(lo, hi, color=colour, lw=0)
        ax.text(t[0], (lo + hi) / 2 if hi - lo < 1 else lo + 0.15, f" {label}", fontsize=8,
                va="center", color="#555")
    ax.plot(t, ratio, color="tab:blue", lw=1.4, label=f"{name}: margin ratio = equity / MM")
    i = t.index(t_liq)
    ax.axvline(t_liq, color="tab:red", ls="--", lw=1)
    ax.plot([t_liq], [ratio[i]], "o", color="tab:red")
    ax.annotate(f"liquidation: {t_liq:%Y-%m-%d %H:%M} UTC, ratio {ratio[i]:.0%}",
                (t_liq, ratio[i]), xytext=(12, 30), textcoords="offset points", fontsize=9,
                color="tab:red", arrowprops=dict(arrowstyle="->", color="tab:red"))
    ax.set_ylim(low, top)
    ax.set_ylabel("margin ratio")
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title(f"pmrisk backtest of `pmrisk samples history` (standard model): {name}",
                 fontsize=10)
    bx.plot(btc["time"].to_pylist(), btc["index_price"].to_numpy(), color="tab:gray", lw=1)
    bx.axvline(t_liq, color="tab:red", ls="--", lw=1)
    bx.set_ylabel("BTC index ($)")
    for a in (ax, bx):
        a.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path}: {name}, first in liquidation at {t_liq:%Y-%m-%dT%H:%MZ}")


if __name__ == "__main__":
    main(*sys.argv[1:])

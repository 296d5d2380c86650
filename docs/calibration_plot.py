"""Draw docs/calibration.png, the README's calibration figure: ``pmrisk.calibrate`` on the
sample price history (``pmrisk.samples.prices()``: BTC, ETH and SOL over 2024 through a calm
regime, a volatile one and a correlation break), the standard model as the base.

    python docs/calibration_plot.py     # needs matplotlib: pip install matplotlib

The same figure as ``pmrisk calibrate --prices FILE --plot FILE.png``.  Deterministic: the
history is seeded and the PNG carries no version or date metadata.
"""

import pathlib
import sys

import pmrisk
from pmrisk import samples
from pmrisk.cli.calibrate import plot

HERE = pathlib.Path(__file__).resolve().parent


def main(path=HERE / "calibration.png"):
    prices = samples.prices()
    _, report = pmrisk.calibrate(prices, base_model="standard")
    plot(prices, report, path)
    return path


if __name__ == "__main__":
    print(f"wrote {main(*sys.argv[1:2])}")

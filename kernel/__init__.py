"""pmrisk.kernel: numba kernels over plain contiguous arrays (no pyarrow here).

Axis order everywhere: (instrument or unit, scenario).  See each module's docstring for units.
"""

from .aggregate import order_margin, unit_risk_vectors, weighted_worst
from .black76 import black76_greeks, black76_greeks_array, black76_price, black76_price_array
from .revalue import instrument_greeks, instrument_pnl

__all__ = [
    "black76_price", "black76_greeks", "black76_price_array", "black76_greeks_array",
    "instrument_pnl", "instrument_greeks", "unit_risk_vectors", "weighted_worst",
    "order_margin",
]

"""Scenario vols per option, element-wise numpy (O(n_options), not a hot loop).

relative (Deribit family): ``sigma' = max(sigma, vol_floor)``;
``up = max(sigma'*(1 + R_up*(30/DTE)^p), min_vol_for_shock_up)``,
``down = max(sigma'*(1 - R_down*(30/DTE)^p), 0.01)``, ``p`` the short-term power if DTE < 30
else the long-term one, DTE in days floored at 1.
absolute (SPAN): ``up = sigma' + vol_scan_range``, ``down = max(sigma' - vol_scan_range, 0.01)``.
The vol-same state is ``sigma'``.
"""

import numpy as np

MIN_VOL = 0.01


def shocked_vols(sigma, dte_days, vol_floor, r_up, r_down, p_short, p_long, min_up,
                 absolute, scan_range):
    """Return ``(same, up, down)`` float64 arrays.

    >>> import numpy as np
    >>> from pmrisk.kernel.volshock import shocked_vols
    >>> same, up, down = shocked_vols(np.array([0.6]), np.array([15.0]), 0.0, 0.5, 0.25,
    ...                               0.3, 0.13, 0.5, np.array([False]), 0.0)
    >>> round(float(up[0]), 6), round(float(down[0]), 6)
    (0.969343, 0.415328)
    """
    same = np.maximum(sigma, vol_floor)
    dte = np.maximum(dte_days, 1.0)
    power = np.where(dte < 30.0, p_short, p_long)
    term = (30.0 / dte) ** power
    up_rel = np.maximum(same * (1.0 + r_up * term), min_up)
    down_rel = np.maximum(same * (1.0 - r_down * term), MIN_VOL)
    up_abs = same + scan_range
    down_abs = np.maximum(same - scan_range, MIN_VOL)
    up = np.where(absolute, up_abs, up_rel)
    down = np.where(absolute, down_abs, down_rel)
    return same, up, down

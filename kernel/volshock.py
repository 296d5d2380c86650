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


def okx_shocked_vols(sigma, dte_days, vol_floor, up_nodes, down_nodes):
    """OKX MR1 vol states: ``up = sigma' + max(points(T), pct(T)*sigma')``, ``down =
    max(sigma' - max(points_d(T), pct_d(T)*sigma'), 0.01)``, ``sigma' = max(sigma,
    vol_floor)``; ``points`` and ``pct`` linear in days to expiry T between the nodes
    (rows ``[days, points, fraction]``) and flat beyond them.  Returns ``(same, up, down)``.

    >>> import numpy as np
    >>> from pmrisk.kernel.volshock import okx_shocked_vols
    >>> nodes = [[0, 0.30, 0.50], [30, 0.25, 0.35], [60, 0.20, 0.25]]
    >>> same, up, down = okx_shocked_vols(np.array([0.5, 1.0]), np.array([0.0, 15.0]), 0.0,
    ...                                   nodes, nodes)
    >>> [round(float(x), 6) for x in up], [round(float(x), 6) for x in down]
    ([0.8, 1.425], [0.2, 0.575])
    """
    same = np.maximum(sigma, vol_floor)

    def shock(nodes):
        n = np.asarray(nodes, dtype=np.float64)
        return np.maximum(np.interp(dte_days, n[:, 0], n[:, 1]),
                          np.interp(dte_days, n[:, 0], n[:, 2]) * same)
    return same, same + shock(up_nodes), np.maximum(same - shock(down_nodes), MIN_VOL)

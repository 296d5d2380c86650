"""Preset parameter sets.  Values marked (assumption) are not published by the venue.

Sources: Deribit ``private/pme/simulate`` model_params (BTC, docs example 2024-06-17; ETH, live
capture 2026-02-15); SPAN: CME "Components of SPAN", advisory 08-303 (extreme 3x covered 33 %).
"""

INF = float("inf")

# Every per-underlying parameter and its neutral value (a preset overrides what it uses).
UNDERLYING_DEFAULTS = {
    "price_range": 0.15,
    "buckets_count": 4,
    # vols are annualised decimals (0.5 = 50 %), as market.mark_iv
    "volatility_range_up": 0.5,
    "volatility_range_down": 0.25,
    "short_term_vega_power": 0.3,
    "long_term_vega_power": 0.13,
    "min_volatility_for_shock_up": 0.0,
    "vol_floor": 0.0,
    "extreme_multiple": 2.0,
    "cover_fraction": 0.35,
    "extended_table_factor": 1.0,
    "extended_dampener_usd": 100_000.0,
    "annualised_move_risk": 0.0,
    "min_annualised_move": 0.0,
    "pnl_offset": 0.0,
    "max_offsetable_pnl": 0.0,
    "max_delta_shock": 0.0,
    "delta_total_liq_shock_threshold": 20_000_000.0,
    "m_inc": 0.0,
    "short_option_minimum": 0.0,
    "horizon_days": 0.0,
    "vol_shock": "relative",
    "vol_scan_range": 0.0,
}

TOP_DEFAULTS = {
    "preset": None,
    "cross_unit": "sum",
    "scenario_set": "grid",          # "grid" (price x vol grid) or "span16" (SPAN's 16)
    "extended_table": False,         # append Deribit's extended table to the grid
    "extreme_scenarios": False,      # append +/- extreme_multiple*price_range (cover fraction)
    "n_directions": 512,
    "tail_mode": "joint",
    "joint_revaluation": "grid",     # or "exact" (same result, slower)
    "joint_grid_nodes": 32,          # grid steps per side of the price range ("grid")
    "shell_steps": 1,                # shells per bucket (1: k/buckets; more: denser)
    "risk_multiplier": 1.0,
    "mm_factor": 1.0,
    "im_factor": 1.0,
    "liquidation_target": 1.0,
    "loan_mmr": 0.10,
    "linear_settlement_currency": "USDT",
    "rate": 0.0,                     # Black-76 discount rate (0: undiscounted)
    "expired_positions": "error",    # or "ignore"
    "stablecoins": ["USD", "USDT", "USDC", "DAI", "FDUSD", "BUSD", "TUSD", "USDE"],
    "thresholds": {"warning": [1.10, 1.05, 1.01], "margin_call": 1.00, "liquidation": 0.75},
    "correlations": {},
    "exclude": {"symbols": [], "kinds": [], "underlyings": []},
    "collateral": {},
    "default_underlying": {},
    "scenarios": None,               # custom scenario rows (list of dicts) or None
    # resource and plausibility bounds (not part of the risk model: every preset shares them)
    "max_memory_gb": 4.0,            # refuse a call whose estimated peak memory is above
    "max_iv": 5.0,                   # refuse market mark_iv above (decimal: 5.0 = 500 %)
    # binance_um
    "margin_leverage": "off",        # "3x" | "5x" | "10x": margin-loan MMR loan_mmr_<lev>
    "loan_mmr_3x": 0.10,             # Binance margin-loan MMR by margin leverage
    "loan_mmr_5x": 0.08,
    "loan_mmr_10x": 0.05,
    "brackets": [],                  # your own ladders: rows of Binance's leverage-bracket
                                     # response (symbol, bracket, initialLeverage, ...)
    "brackets_as_of": "snapshot",    # "YYYY-MM-DD": the shipped ladders in force that day;
                                     # "snapshot": at each snapshot's time (timed books),
                                     # the latest (untimed books)
}

DERIBIT_BTC = {
    "price_range": 0.16, "buckets_count": 4,
    "volatility_range_up": 0.5, "volatility_range_down": 0.25,
    "short_term_vega_power": 0.3, "long_term_vega_power": 0.13,
    "min_volatility_for_shock_up": 0.5, "extended_table_factor": 1.0,
    "annualised_move_risk": 0.075, "min_annualised_move": 0.01,
    "extended_dampener_usd": 100_000.0, "pnl_offset": 0.0, "max_offsetable_pnl": 0.0,
    "max_delta_shock": 0.1, "delta_total_liq_shock_threshold": 20_000_000.0, "m_inc": 5e-05,
}
DERIBIT_ETH = {
    "price_range": 0.18, "buckets_count": 4,
    "volatility_range_up": 0.4, "volatility_range_down": 0.25,
    "short_term_vega_power": 0.3, "long_term_vega_power": 0.13,
    "min_volatility_for_shock_up": 0.5, "extended_table_factor": 1.0,
    "annualised_move_risk": 0.05, "min_annualised_move": 0.005,
    "extended_dampener_usd": 200_000.0, "pnl_offset": 0.6, "max_offsetable_pnl": 20_000_000.0,
    "max_delta_shock": 0.1, "delta_total_liq_shock_threshold": 20_000_000.0, "m_inc": 4e-06,
}

# The seed's model (``standard``): correlated joint stress, 3 % steps for BTC.
STANDARD = {
    "cross_unit": "correlated",
    "scenario_set": "grid",
    "extended_table": False,
    "extreme_scenarios": True,
    "n_directions": 512,
    "tail_mode": "joint",
    "mm_factor": 1.0,
    "im_factor": 1.25,
    "linear_settlement_currency": "USDT",
    "correlations": {"BTC,ETH": 0.85, "default": 0.6},     # (assumption)
    "default_underlying": {
        "price_range": 0.25, "buckets_count": 5,
        "volatility_range_up": 0.5, "volatility_range_down": 0.25,
        "short_term_vega_power": 0.3, "long_term_vega_power": 0.13,
        "extreme_multiple": 2.0, "cover_fraction": 0.35,
        # profitable units offset losing ones in full (cross margin)
        "pnl_offset": 1.0, "max_offsetable_pnl": INF,
    },
    "BTC": {"price_range": 0.15, "vol_floor": 0.25},
    "ETH": {"price_range": 0.18},
}

PRESETS = {
    "standard": STANDARD,
    # Binance Portfolio Margin Pro's uniMMR band edges (1.50/1.20/1.05/1.00) on the
    # standard risk model, in order of severity: >= 150 % normal, 120-150 % warning_1
    # (Binance: reminder), 105-120 % warning_2 (Binance: new orders reduce-only), 100-105 %
    # margin_call (Binance: liquidation starts, with notice), < 100 % liquidation (Binance:
    # liquidation and a possible claim for the loss).  PM Pro has no IM of its own: im_factor 1.
    "binance_pm_pro": dict(STANDARD, im_factor=1.0, thresholds={
        "warning": [1.50, 1.20], "margin_call": 1.05, "liquidation": 1.00}),
    "deribit_pme": {
        "cross_unit": "sum",
        "scenario_set": "grid",
        "extended_table": True,
        "mm_factor": 0.8,
        "im_factor": 1.0,
        "linear_settlement_currency": "USDC",
        # (assumption) other underlyings: ETH's shape with a wider 25 % range.
        "default_underlying": dict(DERIBIT_ETH, price_range=0.25),
        "BTC": DERIBIT_BTC,
        "ETH": DERIBIT_ETH,
    },
    "span": {
        "cross_unit": "sum",
        "scenario_set": "span16",
        "mm_factor": 1.0,
        "im_factor": 1.0,
        "default_underlying": {
            "price_range": 0.10,            # (assumption) scan range as a fraction of price
            "vol_shock": "absolute",
            "vol_scan_range": 0.04,         # (assumption) 4 vol points
            "extreme_multiple": 3.0,
            "cover_fraction": 0.33,
            "horizon_days": 1.0,
            "pnl_offset": 1.0,
            "max_offsetable_pnl": INF,
        },
    },
}

"""Every parameter's neutral value, and the shipped presets as dated data.

A preset is a TOML file in ``pmrisk/model/preset_data/`` (one per preset, named after it)::

    preset = "okx_pm"
    description = "one line"
    extends = "standard"        # optional: start from that preset's set in force at the date

    [[set]]
    effective = "2023-07-12"    # the date it took effect (UTC), or "undated": before every
    source = "where the numbers come from"     # dated set (a date no source gives)
    [set.model]                 # the model's keys (the TOML shape of Model.from_toml)
    ...
    [[set]]
    effective = "2025-01-06"
    source = "..."
    [set.model]                 # only what changed: merged key by key onto the set before

Sets are in date order.  The parameters in force at a date are the neutral values, then the
extended preset's (if any), then every set that took effect on or before it, merged in order
(:func:`preset_params`).  Values the venue does not publish are marked *assumption* in the
sets' ``source``.
"""

import functools
import tomllib
from importlib import resources
from typing import NamedTuple

import numpy as np

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
    # okx_pm (docs/venues.md): class label, MR1 vol-shock nodes [days, points, fraction],
    # MR4 basis, MR7 minimum charge rate and tiers [from_usd, to_usd, factor]
    "okx_class": "other",
    "mr1_vol_up": [[0.0, 0.0, 0.0]],
    "mr1_vol_down": [[0.0, 0.0, 0.0]],
    "mr4_annual_move": 0.0,
    "mr4_min_move": 0.0,
    "mr4_basis_move": 0.0,
    "mr7_rate": 0.0,
    "mr7_tiers": [[0.0, INF, 1.0]],
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
    "loan_im_factor": 1.0,           # loans' IM = loan_im_factor x their MM (binance_um: 0)
    "linear_settlement_currency": "USDT",
    "rate": 0.0,                     # Black-76 discount rate (0: undiscounted)
    "expired_positions": "error",    # or "ignore"
    "stablecoins": ["USD", "USDT", "USDC", "DAI", "FDUSD", "BUSD", "TUSD", "USDE"],
    "thresholds": {"warning": [1.10, 1.05, 1.01], "margin_call": 1.00, "liquidation": 0.75},
    "correlations": {},
    "exclude": {"symbols": [], "kinds": [], "underlyings": []},
    "collateral": {},
    "default_underlying": {},
    "okx_classes": {},               # okx_pm: per-class parameters (major, mid, other)
    "scenarios": None,               # custom scenario rows (list of dicts) or None
    # resource and plausibility bounds (not part of the risk model: every preset shares them)
    "max_memory_gb": 4.0,            # refuse a call whose estimated peak memory is above
    "max_iv": 5.0,                   # refuse market mark_iv above (decimal: 5.0 = 500 %)
    # how units are margined: "scenario" (stress scenarios, the sections above), "okx" (OKX
    # portfolio margin's MR1-MR9) or "brackets" (Binance's notional brackets per position)
    "margin_rules": "scenario",
    # okx_pm (docs/venues.md): borrowing, liquidation cost, MR2/MR3/MR5, MR7 options, MR9
    "borrow_mmr": 0.02,
    "borrow_imr": 0.10,
    "spot_taker_fee": 0.001,
    "mr2_days": 1.0,
    "mr3_rate": 0.0,
    "mr5_rate": 0.0,
    "mr7_option_min": 0.02,
    "mr7_option_fee": 0.0003,
    "mr7_option_fee_cap": 0.125,
    "mr9_tiers": [[0.0, 1e6, 0.0075], [1e6, 5e6, 0.0175], [5e6, INF, 0.025]],
    "quote_from_symbol": True,
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


class ParameterSet(NamedTuple):
    """One dated set of a preset: ``effective`` (int ns since the epoch, UTC, of the day it
    took effect; None: undated, before every dated set), its text (``effective_text``), its
    ``source`` and ``model`` (only the keys that changed)."""
    effective: object
    effective_text: str
    source: str
    model: dict


class PresetData(NamedTuple):
    """A preset file: ``name``, ``description``, the preset it ``extends`` (or None) and its
    ``sets`` (:class:`ParameterSet`, in date order)."""
    name: str
    description: str
    extends: object
    sets: tuple


class PresetFileError(ValueError):
    """A shipped preset file that breaks the format (a packaging defect, not user input)."""


def _day_ns(text, where):
    try:
        day = np.datetime64(text, "D")
    except ValueError:
        raise PresetFileError(f"{where}: effective must be YYYY-MM-DD or \"undated\", "
                              f"got {text!r}") from None
    if str(day) != text:
        raise PresetFileError(f"{where}: effective must be YYYY-MM-DD, got {text!r}")
    return int(day.astype("datetime64[ns]").astype(np.int64))


def parse_preset(text, where="preset"):
    """The :class:`PresetData` of a preset file's TOML ``text`` (the format above)."""
    doc = tomllib.loads(text)
    unknown = set(doc) - {"preset", "description", "extends", "set"}
    if unknown or not isinstance(doc.get("preset"), str) or not doc.get("set"):
        raise PresetFileError(f"{where}: keys preset, description, [extends], [[set]]; got "
                              f"{sorted(doc)}")
    sets, last = [], None
    for k, s in enumerate(doc["set"]):
        here = f"{where} set {k + 1}"
        if set(s) - {"effective", "source", "model"} or "effective" not in s:
            raise PresetFileError(f"{here}: keys effective, source, model; got {sorted(s)}")
        eff = None if s["effective"] == "undated" else _day_ns(s["effective"], here)
        if eff is None and k:
            raise PresetFileError(f"{here}: only the first set may be undated")
        if eff is not None and last is not None and eff <= last:
            raise PresetFileError(f"{here}: sets must be in date order")
        last = eff if eff is not None else last
        sets.append(ParameterSet(eff, s["effective"], s.get("source", ""),
                                 s.get("model", {})))
    return PresetData(doc["preset"], doc.get("description", ""), doc.get("extends"),
                      tuple(sets))


@functools.cache
def presets():
    """Every shipped preset, by name (read once per process)."""
    out = {}
    folder = resources.files(__package__) / "preset_data"
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if f.name.endswith(".toml"):
            data = parse_preset(f.read_text(encoding="utf-8"), f.name)
            if data.name + ".toml" != f.name:
                raise PresetFileError(f"{f.name}: preset = {data.name!r} must match the "
                                      "file name")
            out[data.name] = data
    for data in out.values():
        if data.extends is not None and data.extends not in out:
            raise PresetFileError(f"{data.name}: extends unknown preset {data.extends!r}")
    return out


def names():
    """The shipped presets' names, sorted."""
    return sorted(presets())


def set_index(name, as_of_ns=None):
    """Index of the set of preset ``name`` in force at ``as_of_ns`` (int ns, UTC; None: the
    latest), or -1 when every set took effect later."""
    sets = presets()[name].sets
    if as_of_ns is None:
        return len(sets) - 1
    k = -1
    for i, s in enumerate(sets):
        if s.effective is None or s.effective <= as_of_ns:
            k = i
    return k


def preset_layers(name, as_of_ns=None):
    """The models to merge, in order, for preset ``name`` at ``as_of_ns``: the extended
    preset's layers at the same date, then this preset's sets in force.  Also returns the
    effective-date texts of the sets used (outermost preset's last)."""
    data = presets()[name]
    layers, used = [], []
    if data.extends is not None:
        layers, used = preset_layers(data.extends, as_of_ns)
    k = set_index(name, as_of_ns)
    layers = layers + [s.model for s in data.sets[:k + 1]]
    used = used + ([data.sets[k].effective_text] if k >= 0 else [])
    return layers, used

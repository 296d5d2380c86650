"""The risk model: every parameter in one object, loadable from a preset, a dict or TOML.
Immutable: ``with_overrides`` returns a new model."""

import copy
import difflib
import math
import os
import tomllib

import numpy as np

from pmrisk.kernel.addons import tiered
from pmrisk.kernel.instruments import KINDS

from . import presets as P
from .errors import MarginError

_SECTIONS = ("thresholds", "correlations", "exclude", "collateral", "default_underlying")
_CHOICES = {
    "cross_unit": ("sum", "correlated"),
    "scenario_set": ("grid", "span16"),
    "tail_mode": ("joint", "per_unit"),
    "joint_revaluation": ("grid", "exact"),
    "expired_positions": ("error", "ignore"),
}
_BOOLS = ("extended_table", "extreme_scenarios")
_UNDERLYING_CHOICES = {"vol_shock": ("relative", "absolute")}
_INT_KEYS = ("buckets_count", "n_directions")


def _err(key, expected, hint=None):
    return MarginError("model", key, expected, hint=hint)


def _pair_key(key):
    parts = [x.strip() for x in str(key).split(",")]
    return frozenset(parts) if len(parts) == 2 else None


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k == "correlations" and isinstance(v, dict) and isinstance(out.get(k), dict):
            # a pair given in the other order (or spelled with spaces) replaces the base's
            merged = {key: val for key, val in out[k].items()
                      if _pair_key(key) is None
                      or all(_pair_key(key) != _pair_key(nk) for nk in v)}
            merged.update(copy.deepcopy(v))
            out[k] = merged
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and k != "collateral":
            out[k] = _merge(out[k], v)
        elif isinstance(v, dict) and k == "collateral":
            # an asset's collateral spec is replaced whole: a flat rate can replace tiers
            merged = copy.deepcopy(out.get(k, {}))
            merged.update(copy.deepcopy(v))
            out[k] = merged
        else:
            out[k] = copy.deepcopy(v)
    return out


def _number(key, value, lo=-math.inf, hi=math.inf, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _err(key, f"a number, got {value!r}")
    if integer and float(value) != int(value):
        raise _err(key, f"a whole number, got {value!r}")
    if math.isnan(value) or not (lo <= value <= hi):
        raise _err(key, f"a number in [{lo}, {hi}], got {value!r}")


class Model:
    """Risk-model parameters.

    >>> from pmrisk.model import Model
    >>> m = Model.preset("deribit_pme").with_overrides({"BTC": {"price_range": 0.2}})
    >>> m.underlying("BTC")["price_range"], m.underlying("ETH")["price_range"], m["mm_factor"]
    (0.2, 0.18, 0.8)
    >>> Model.from_dict({"preset": "deribit_pme", "BTC": {"price_rnge": 0.2}})
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: model.BTC.price_rnge: expected a known parameter...
    """

    def __init__(self, params):
        self._p = params
        self._und = {}
        _validate(params)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def preset(cls, name):
        """A shipped preset: ``standard``, ``binance_pm_pro``, ``deribit_pme`` or ``span``."""
        if name not in P.PRESETS:
            raise _err("preset", f"one of {sorted(P.PRESETS)}, got {name!r}")
        params = _merge(P.TOP_DEFAULTS, P.PRESETS[name])
        params["preset"] = name
        return cls(params)

    @classmethod
    def from_dict(cls, d):
        """A preset's values (key ``preset``, default ``standard``), then the given keys."""
        if not isinstance(d, dict):
            raise _err("", f"a dict, got {type(d).__name__}")
        d = dict(d)
        base = cls.preset(d.pop("preset", "standard"))
        return base.with_overrides(d)

    @classmethod
    def from_toml(cls, path):
        """Load a TOML file of the shape of ``docs/model.example.toml``."""
        try:
            with open(path, "rb") as fh:
                d = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise _err("", f"valid TOML in {path} ({exc})") from None
        except OSError as exc:
            raise _err("", f"a readable TOML file, got {path!r} ({exc.strerror})",
                       hint="Or pass a preset name: " + ", ".join(sorted(P.PRESETS))) from None
        return cls.from_dict(d)

    @classmethod
    def coerce(cls, model):
        """``None`` (``standard``), a preset name, a ``.toml`` path, a dict or a Model."""
        if model is None:
            return cls.preset("standard")
        if isinstance(model, Model):
            return model
        if isinstance(model, os.PathLike):
            return cls.from_toml(os.fspath(model))
        if isinstance(model, dict):
            return cls.from_dict(model)
        if isinstance(model, str):
            if model.endswith(".toml"):
                return cls.from_toml(model)
            return cls.preset(model)
        raise _err("", f"a preset name, a TOML path, a dict or a pmrisk.Model, got {model!r}")

    def with_overrides(self, overrides):
        """A new model with ``overrides`` (same shape as the TOML) merged in."""
        if "preset" in overrides:
            raise _err("preset", "no preset key in overrides (start from Model.preset)")
        return Model(_merge(self._p, overrides))

    def with_scenarios(self, scenarios):
        """A new model whose scenario set is ``scenarios`` (rows: price_shock, vol_state or
        vol_factor, loss_weight, gain_weight, table), for every underlying."""
        from ._arrow import as_table
        from .scenario_table import rows_from_table
        rows = rows_from_table(as_table(scenarios, "scenarios"))
        return self.with_overrides({"scenarios": rows})

    # -- access ---------------------------------------------------------------------------
    def __getitem__(self, key):
        return self._p[key]

    @property
    def name(self):
        return self._p["preset"]

    def underlyings(self):
        """Names of the underlyings that have a section of their own."""
        return [k for k, v in self._p.items() if isinstance(v, dict) and k not in _SECTIONS]

    def underlying(self, name):
        """Every per-underlying parameter for ``name`` (its section over ``default_underlying``
        over the neutral values)."""
        if name not in self._und:           # the model is immutable: build each once
            out = dict(P.UNDERLYING_DEFAULTS)
            out.update(self._p.get("default_underlying", {}))
            section = self._p.get(name)
            if isinstance(section, dict) and name not in _SECTIONS:
                out.update(section)
            self._und[name] = out
        return dict(self._und[name])

    def to_dict(self):
        return copy.deepcopy(self._p)

    def __repr__(self):
        return f"Model(preset={self.name!r}, underlyings={self.underlyings()})"


def _validate(p):
    for key in _SECTIONS:
        if not isinstance(p.get(key), dict):
            raise _err(key, f"a table (dict) of parameters, got {p.get(key)!r}")
    for key, value in p.items():
        if key in _SECTIONS or key == "scenarios":
            continue
        if key in P.TOP_DEFAULTS:
            _validate_top(key, value)
        elif isinstance(value, dict):
            near = difflib.get_close_matches(key, list(P.TOP_DEFAULTS), n=1, cutoff=0.75)
            if key.lower() in ("default", "defaults", "underlying", "underlyings"):
                near = ["default_underlying"]
            if near:
                raise _err(key, "a known parameter or an underlying section",
                           hint=f"Did you mean {near[0]!r}? An underlying section is named "
                           "like the instruments' underlying (BTC)")
            for k, v in value.items():
                _validate_underlying_key(f"{key}.{k}", k, v)
        else:
            raise _err(key, "a known parameter", hint=f"Known: {', '.join(sorted(P.TOP_DEFAULTS))}"
                       " or an underlying section such as [BTC]")
    for k, v in p.get("default_underlying", {}).items():
        _validate_underlying_key(f"default_underlying.{k}", k, v)
    for name in ["default_underlying"] + [k for k, v in p.items()
                                          if isinstance(v, dict) and k not in _SECTIONS]:
        u = dict(P.UNDERLYING_DEFAULTS)
        u.update(p["default_underlying"])
        if name != "default_underlying":
            u.update(p[name])
        move = u["extreme_multiple"] * u["price_range"]
        excluding = any(p["exclude"].get(k) for k in ("symbols", "kinds", "underlyings"))
        if (p["extreme_scenarios"] or p["scenario_set"] == "span16" or excluding) \
                and move >= 1.0:
            raise _err(f"{name}.extreme_multiple", "extreme_multiple x price_range < 1 (an "
                       f"extreme move of -{move:.0%} takes the price to or below zero), got "
                       f"{u['extreme_multiple']!r} x {u['price_range']!r}")
    if p["cross_unit"] == "correlated" and (p.get("scenarios") is not None
                                            or p["scenario_set"] != "grid"):
        raise _err("cross_unit", "\"sum\" with a custom scenario table or scenario_set "
                   "\"span16\": the correlated joint stress builds its own joint scenarios "
                   "from each underlying's price_range and buckets_count",
                   hint="Set cross_unit = \"sum\" to margin units on your scenario set")
    if p["im_factor"] < p["mm_factor"]:
        raise _err("im_factor", f"im_factor >= mm_factor (IM below MM), got {p['im_factor']} "
                   f"< {p['mm_factor']}")
    th = p["thresholds"]
    for k in th:
        if k not in ("warning", "margin_call", "liquidation"):
            raise _err(f"thresholds.{k}", "a known parameter (warning, margin_call, liquidation)")
    if not isinstance(th["warning"], (list, tuple)) or not th["warning"]:
        raise _err("thresholds.warning", f"a non-empty list of levels, got {th['warning']!r}")
    warn = list(th["warning"])
    for v in warn + [th["margin_call"], th["liquidation"]]:
        _number("thresholds", v, 0.0)
    levels = warn + [th["margin_call"], th["liquidation"]]
    if any(a <= b for a, b in zip(levels, levels[1:])):
        raise _err("thresholds", f"strictly decreasing levels, got {levels}")
    ex = p["exclude"]
    for k, v in ex.items():
        if k not in ("symbols", "kinds", "underlyings"):
            raise _err(f"exclude.{k}", "a known parameter (symbols, kinds, underlyings)")
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise _err(f"exclude.{k}", f"a list of names, got {v!r}")
        if k == "kinds" and set(v) - set(KINDS):
            raise _err("exclude.kinds", f"kinds among {KINDS}, got {sorted(set(v) - set(KINDS))}")
    _validate_correlations(p["correlations"])
    for asset, spec in p["collateral"].items():
        _validate_collateral(asset, spec)
    if p.get("scenarios") is not None:
        from .scenario_table import validate_rows
        validate_rows(p["scenarios"])


def _validate_correlations(section):
    from .correlation import correlation_matrix, parse_pairs
    for key, rho in section.items():
        if key != "repair":
            _number(f"correlations.{key}", rho, -1.0, 1.0)
    pairs = parse_pairs(section)
    # the underlyings the section names must already form a valid matrix (a book's own
    # underlyings are checked again when it is margined: the default fills the other pairs)
    names = sorted({n for k in pairs for n in k})
    if len(names) > 1 and section.get("repair", "none") != "nearest":
        correlation_matrix(names, _SectionOnly(section))


class _SectionOnly:
    def __init__(self, section):
        self._s = {"correlations": section}

    def __getitem__(self, key):
        return self._s[key]


def _validate_top(key, value):
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise _err(key, f"one of {_CHOICES[key]}, got {value!r}")
    elif key in _BOOLS:
        if not isinstance(value, bool):
            raise _err(key, f"true or false, got {value!r}")
    elif key == "risk_multiplier":
        _number(key, value, 0.8, 1.5)
    elif key in ("mm_factor", "im_factor", "liquidation_target"):
        _number(key, value, 0.0, 1e6)
    elif key == "loan_mmr":
        _number(key, value, 0.0, 1.0)
    elif key == "rate":
        _number(key, value, -1.0, 1.0)
    elif key == "n_directions":
        _number(key, value, 0, 1_000_000, integer=True)
    elif key == "joint_grid_nodes":
        _number(key, value, 2, 100_000, integer=True)
    elif key == "shell_steps":
        _number(key, value, 1, 100, integer=True)
    elif key == "linear_settlement_currency":
        if not isinstance(value, str) or not value:
            raise _err(key, f"a currency name, got {value!r}")
    elif key == "stablecoins":
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
            raise _err(key, f"a list of asset names, got {value!r}")


def _validate_underlying_key(where, k, v):
    if k not in P.UNDERLYING_DEFAULTS:
        raise _err(where, "a known parameter",
                   hint=f"Known: {', '.join(sorted(P.UNDERLYING_DEFAULTS))}")
    if k in _UNDERLYING_CHOICES:
        if v not in _UNDERLYING_CHOICES[k]:
            raise _err(where, f"one of {_UNDERLYING_CHOICES[k]}, got {v!r}")
        return
    if k == "price_range":
        _number(where, v, 1e-9, 0.999)
    elif k == "buckets_count":
        _number(where, v, 1, 1000, integer=True)
    elif k in ("max_offsetable_pnl",):
        _number(where, v, 0.0)
    elif k in ("pnl_offset", "cover_fraction"):
        _number(where, v, 0.0, 1.0)
    else:
        _number(where, v, 0.0, math.inf)
        if math.isinf(v):
            raise _err(where, f"a finite number, got {v!r}")


def _validate_collateral(asset, spec):
    where = f"collateral.{asset}"
    if not isinstance(spec, dict) or set(spec) - {"rate", "tiers_usd"} or len(spec) != 1:
        raise _err(where, "a table with exactly one of rate = x or tiers_usd = [[from, to, rate]]")
    if "rate" in spec:
        _number(f"{where}.rate", spec["rate"], 0.0, 1.0)
        return
    prev_hi = 0.0
    for tier in spec["tiers_usd"]:
        if len(tier) != 3:
            raise _err(f"{where}.tiers_usd", f"[from_usd, to_usd, rate] triples, got {tier!r}")
        lo, hi, rate = tier
        _number(f"{where}.tiers_usd", rate, 0.0, 1.0)
        if lo != prev_hi or not hi > lo:
            raise _err(f"{where}.tiers_usd", "contiguous slices starting at 0 "
                       f"([0, a], [a, b], ...), got {spec['tiers_usd']!r}")
        prev_hi = hi


def collateral_value_usd(model, asset, value_usd):
    """Collateral value of positive USD amounts of ``asset``: each tier's slice at its rate;
    above the last tier the value stops growing (rate 0), as in Binance's tier tables.

    >>> import numpy as np
    >>> from pmrisk.model import Model, collateral_value_usd
    >>> m = Model.preset("deribit_pme").with_overrides(
    ...     {"collateral": {"BTC": {"tiers_usd": [[0, 100, 1.0], [100, 200, 0.5]]}}})
    >>> collateral_value_usd(m, "BTC", np.array([150.0, 500.0])).tolist()
    [125.0, 150.0]
    """
    spec = model["collateral"].get(asset)
    v = np.asarray(value_usd, dtype=np.float64)
    if spec is None:
        return v.copy()
    if "rate" in spec:
        return v * spec["rate"]
    return tiered(v, spec["tiers_usd"])

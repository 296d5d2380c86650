"""The risk model: every parameter in one object, loadable from a preset, a dict or TOML.
Immutable: ``with_overrides`` returns a new model."""

import copy
import difflib
import math
import os
import tomllib
from typing import NamedTuple

import numpy as np

from pmrisk.kernel.addons import FLAT_RATE, NO_HAIRCUT, TIERS, collateral_values
from pmrisk.kernel.instruments import KINDS

from . import presets as P
from ..errors import MarginError

_SECTIONS = ("thresholds", "correlations", "exclude", "collateral", "default_underlying",
             "okx_classes")
OKX_CLASSES = ("major", "mid", "other")
# Other names a top-level parameter is accepted under (SPEC 14 names OKX's IM factor
# ``imr_factor``; ``liquidation_fee`` is the name ``spot_taker_fee`` had before).  An override
# may use either name, not both; ``model[alias]`` reads the parameter.
ALIASES = {"imr_factor": "im_factor", "liquidation_fee": "spot_taker_fee"}

# Bounds on a model's input (a TOML file or a dict of overrides), checked before anything is
# parsed further: a model is a few hundred keys (a custom scenario table a few thousand rows).
MAX_TOML_BYTES = 2 << 20          # 2 MiB of TOML text
MAX_KEY_DEPTH = 16                # dots in one dotted key or table header (a.b.c = 1: 2)
MAX_DEPTH = 8                     # nesting of tables and arrays
MAX_ENTRIES = 200_000             # keys and array items, all levels together


class Param(NamedTuple):
    """The type and range of one parameter: ``kind`` is ``"int"`` (a Python or numpy
    integer, not a float), ``"float"`` (any real number), ``"bool"``, ``"choice"`` (one of
    ``choices``), ``"str"`` (a non-empty name) or ``"names"`` (a list of names); numbers lie in
    ``[lo, hi]`` and are finite unless ``finite`` is False (infinity allowed, never NaN)."""
    kind: str
    lo: float = -math.inf
    hi: float = math.inf
    choices: tuple = ()
    finite: bool = True
    unit: str = ""


def _choice(*choices):
    return Param("choice", choices=choices)


_FLOAT_0 = Param("float", 0.0)

# Every top-level scalar parameter (the sections are checked by their own functions).
TOP_PARAMS = {
    "cross_unit": _choice("sum", "correlated"),
    "scenario_set": _choice("grid", "span16"),
    "tail_mode": _choice("joint", "per_unit"),
    "joint_revaluation": _choice("grid", "exact"),
    "expired_positions": _choice("error", "ignore"),
    "extended_table": Param("bool"),
    "extreme_scenarios": Param("bool"),
    "n_directions": Param("int", 0, 1_000_000),
    "joint_grid_nodes": Param("int", 2, 100_000),
    "shell_steps": Param("int", 1, 100),
    "risk_multiplier": Param("float", 0.8, 1.5),
    "mm_factor": Param("float", 0.0, 1e6),
    "im_factor": Param("float", 0.0, 1e6),
    "liquidation_target": Param("float", 0.0, 1e6),
    "loan_mmr": Param("float", 0.0, 1.0),
    "loan_im_factor": Param("float", 0.0, 1e6),
    "rate": Param("float", -1.0, 1.0),
    "linear_settlement_currency": Param("str"),
    "stablecoins": Param("names"),
    "max_memory_gb": Param("float", 0.001, 1e6, unit="GB"),
    "max_iv": Param("float", 0.01, 100.0, unit="decimal vol"),
    "margin_rules": _choice("scenario", "okx", "brackets"),
    # binance_um
    "margin_leverage": _choice("off", "3x", "5x", "10x"),
    "loan_mmr_3x": Param("float", 0.0, 1.0),
    "loan_mmr_5x": Param("float", 0.0, 1.0),
    "loan_mmr_10x": Param("float", 0.0, 1.0),
    "brackets_as_of": Param("str"),
}

# Every per-underlying parameter ([BTC], [default_underlying]).
UNDERLYING_PARAMS = {k: _FLOAT_0 for k in P.UNDERLYING_DEFAULTS}
UNDERLYING_PARAMS.update({
    "price_range": Param("float", 1e-9, 0.999),
    "buckets_count": Param("int", 1, 1000),
    "max_offsetable_pnl": Param("float", 0.0, finite=False),
    "pnl_offset": Param("float", 0.0, 1.0),
    "cover_fraction": Param("float", 0.0, 1.0),
    "vol_shock": _choice("relative", "absolute", "okx"),
})
# okx_pm
_ROWS = Param("rows", 0.0, finite=False)
TOP_PARAMS.update({
    "borrow_mmr": Param("float", 0.0, 1.0), "borrow_imr": Param("float", 0.0, 1.0),
    "spot_taker_fee": Param("float", 0.0, 1.0), "mr2_days": Param("float", 0.0, 365.0),
    "mr3_rate": _FLOAT_0, "mr5_rate": _FLOAT_0, "mr9_tiers": _ROWS,
    "mr7_option_min": _FLOAT_0, "mr7_option_fee": _FLOAT_0, "mr7_option_fee_cap": _FLOAT_0,
    "quote_from_symbol": Param("bool"),
})
UNDERLYING_PARAMS.update({
    "okx_class": _choice("major", "mid", "other"),
    "mr1_vol_up": _ROWS, "mr1_vol_down": _ROWS, "mr7_tiers": _ROWS,
})


def _err(key, expected, hint=None):
    return MarginError("model", key, expected, hint=hint)


def check_param(where, spec, value):
    """``value`` as the canonical value of a parameter of type ``spec`` (:class:`Param`): an
    int for ``"int"``, a float for ``"float"``, a list for ``"names"``; anything else is a
    :class:`MarginError` naming ``where`` (the parameter's path, e.g. ``BTC.buckets_count``).

    >>> from pmrisk.model.model import check_param, TOP_PARAMS
    >>> check_param("n_directions", TOP_PARAMS["n_directions"], 64)
    64
    >>> check_param("n_directions", TOP_PARAMS["n_directions"], float("inf"))
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: model.n_directions: expected a whole number (an integer) in ...inf
    """
    kind = spec.kind
    if kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise _err(where, f"one of {spec.choices}, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise _err(where, f"true or false, got {value!r}")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise _err(where, f"a name (a non-empty string), got {value!r}")
        return value
    if kind == "rows":          # [[a, b, c], ...]: tiers (from, to, factor), vol nodes
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
            isinstance(r, (list, tuple)) and len(r) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool)
                and not math.isnan(x) and x >= spec.lo for x in r) for r in value)
        if not ok or any(b[0] <= a[0] for a, b in zip(value, value[1:])):
            raise _err(where, f"rows of three numbers >= {_num(spec.lo)} (e.g. [from, to, "
                       f"factor]), first column increasing, got {value!r}")
        return [[float(x) for x in r] for r in value]
    if kind == "names":
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise _err(where, f"a list of names, got {value!r}")
        return list(value)
    rng = f"[{_num(spec.lo)}, {_num(spec.hi)}]"
    if kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise _err(where, f"a whole number (an integer) in {rng}, got {value!r}")
        if not spec.lo <= value <= spec.hi:
            raise _err(where, f"a whole number in {rng}, got {value!r}")
        return int(value)
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, (int, float, np.integer, np.floating)):
        raise _err(where, f"a number in {rng}, got {value!r}")
    try:
        f = float(value)
    except OverflowError:
        raise _err(where, f"a number in {rng}, got an integer of {len(str(value))} "
                   "digits") from None
    if math.isnan(f) or not spec.lo <= f <= spec.hi:
        raise _err(where, f"a number in {rng}, got {value!r}")
    if spec.finite and math.isinf(f):
        raise _err(where, f"a finite number in {rng}, got {value!r}")
    return f


def _num(x):
    return f"{int(x):,}" if math.isfinite(x) and x == int(x) else f"{x:g}"


def check_shape(obj, where=""):
    """Refuse a model input (a dict of overrides, parsed TOML) that is not a tree of string
    keys, or that nests deeper than ``MAX_DEPTH`` or holds more than ``MAX_ENTRIES`` keys and
    array items: checked without recursion, before anything copies or walks it."""
    stack = [(obj, where, 0)]
    count = 0
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            for k, _ in items:
                if not isinstance(k, str):
                    raise _err(f"{path}.{k!r}".lstrip("."), "parameter and section names "
                               f"that are strings, got {type(k).__name__} {k!r}")
            children = [(v, f"{path}.{k}".lstrip("."), depth + 1) for k, v in items]
        elif isinstance(node, (list, tuple)):
            children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        else:
            continue
        count += len(children)
        if count > MAX_ENTRIES:
            raise _err(where, f"at most {MAX_ENTRIES:,} keys and array items in a model, "
                       "got more")
        if children and depth + 1 > MAX_DEPTH:
            raise _err(path, f"tables and arrays nested at most {MAX_DEPTH} deep")
        stack.extend(children)


def _toml_text(path):
    """The text of a TOML model file, bounded in size and key depth before it is parsed."""
    with open(path, "rb") as fh:
        raw = fh.read(MAX_TOML_BYTES + 1)
    if len(raw) > MAX_TOML_BYTES:
        raise _err("", f"a TOML model file of at most {MAX_TOML_BYTES >> 20} MiB, got "
                   f"{path} (larger)", hint="A model is a few hundred keys; give large "
                   "scenario sets with Model.with_scenarios")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _err("", f"UTF-8 text in {path} (TOML files are UTF-8), got byte "
                   f"{raw[exc.start]:#04x} at offset {exc.start}") from None
    for no, line in enumerate(text.splitlines(), 1):
        s = line.lstrip()
        if "=" in s:
            key = s.split("=", 1)[0]
        elif s.startswith("[") and "," not in s:            # a table header
            key = s
        else:
            continue
        if key.count(".") > MAX_KEY_DEPTH:
            raise _err("", f"keys at most {MAX_KEY_DEPTH} levels deep in {path}, got "
                       f"{key.count('.') + 1} on line {no}")
    return text


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


_PRESETS_BUILT = {}
AT_VALUATION = "valuation_time"          # as_of: each snapshot's set in force at its time


def _as_of_ns(as_of):
    from ..io.arrow import to_ns
    return to_ns(as_of, "as_of")


class Model:
    """Risk-model parameters.

    >>> from pmrisk.model.model import Model
    >>> m = Model.preset("deribit_pme").with_overrides({"BTC": {"price_range": 0.2}})
    >>> m.underlying("BTC")["price_range"], m.underlying("ETH")["price_range"], m["mm_factor"]
    (0.2, 0.18, 0.8)
    >>> Model.from_dict({"preset": "deribit_pme", "BTC": {"price_rnge": 0.2}})
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: model.BTC.price_rnge: expected a known parameter...
    """

    def __init__(self, params, *, as_of=None, effective=(), overrides=()):
        self._p = params
        self._memo = {}                 # what is derived from the (immutable) model
        self._as_of = as_of             # None (latest), int ns, or AT_VALUATION
        self._effective = tuple(effective)
        self._overrides = tuple(overrides)
        _validate(params)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def preset(cls, name, as_of=None):
        """A shipped preset (:func:`pmrisk.model.presets.names`: ``standard``,
        ``binance_pm_pro``, ``deribit_pme``, ``span``, ...) with the parameters in force at
        ``as_of``.

        Venue presets are dated data: every set of parameters with the date it took effect
        (:meth:`history`).  ``as_of``: None for the latest set; a date (a ``datetime``,
        ``date``, ISO-8601 string, numpy ``datetime64`` or pandas ``Timestamp``) for the set
        in force then; or ``"valuation_time"`` for the set in force at each snapshot's time
        (the inputs' ``time`` column, else the call's valuation time).

        >>> from pmrisk.model.model import Model
        >>> Model.preset("deribit_pme")["mm_factor"]
        0.8
        >>> Model.preset("deribit_pme", as_of="2024-06-17").effective
        ('undated',)
        """
        if not isinstance(name, str) or name not in P.presets():
            raise _err("preset", f"one of {P.names()}, got {name!r}")
        dated = isinstance(as_of, str) and as_of == AT_VALUATION
        ns = None if as_of is None or dated else _as_of_ns(as_of)
        k = P.set_index(name, ns)
        if k < 0:
            first = P.presets()[name].sets[0].effective_text
            raise MarginError("arguments", "as_of", f"a date on or after {first} (the first "
                              f"parameter set of {name!r} took effect then), got {as_of!r}")
        # a model is immutable, so each set is merged and validated once per process
        # (``pmrisk.margin(..., model="deribit_pme")`` in a loop pays it once)
        key = (name, k, dated)
        if key not in _PRESETS_BUILT:
            layers, used = P.preset_layers(name, ns)
            params = P.TOP_DEFAULTS
            for layer in layers:
                params = _merge(params, layer)
            params["preset"] = name
            _PRESETS_BUILT[key] = cls(params, as_of=AT_VALUATION if dated else None,
                                      effective=used)
        return _PRESETS_BUILT[key]._dated_at(ns)

    def _dated_at(self, ns):
        if ns is None:
            return self
        out = Model.__new__(Model)
        out.__dict__.update(self.__dict__)
        out._as_of = ns
        return out

    @classmethod
    def history(cls, name):
        """The dated parameter sets of preset ``name``: a pyarrow Table with one row per set
        (``effective``: the date it took effect or ``undated``; ``changes``: the keys it
        sets; ``source``).

        >>> from pmrisk.model.model import Model
        >>> Model.history("standard").column_names
        ['preset', 'effective', 'changes', 'source']
        """
        import pyarrow as pa
        if not isinstance(name, str) or name not in P.presets():
            raise _err("preset", f"one of {P.names()}, got {name!r}")
        data = P.presets()[name]
        rows = [{"preset": name, "effective": s.effective_text,
                 "changes": ", ".join(_paths(s.model)), "source": " ".join(s.source.split())}
                for s in data.sets]
        return pa.Table.from_pylist(rows)

    @property
    def as_of(self):
        """The date the preset's parameters were taken at (int ns, UTC), None for the latest
        set, or ``"valuation_time"`` (:meth:`at` picks the set per snapshot)."""
        return self._as_of

    @property
    def effective(self):
        """The ``effective`` dates of the preset sets in force in this model (the extended
        preset's first), e.g. ``('2025-01-15',)``; empty for a model not from a preset."""
        return self._effective

    @property
    def dated(self):
        """True when the parameters depend on the valuation time (``as_of="valuation_time"``):
        :meth:`at` gives the model of one time."""
        return self._as_of == AT_VALUATION

    def at(self, time_ns):
        """The model in force at ``time_ns`` (int ns, UTC): this model unless it is
        :attr:`dated`, else the preset's set in force then with this model's overrides."""
        if not self.dated:
            return self
        name = self._p["preset"]
        k = P.set_index(name, int(time_ns))

        def build():
            if k < 0:
                first = P.presets()[name].sets[0].effective_text
                raise MarginError("arguments", "as_of", f"snapshots on or after {first} (the "
                                  f"first parameter set of {name!r} took effect then)")
            m = Model.preset(name, as_of=np.datetime64(int(time_ns), "ns"))
            for over in self._overrides:
                m = m.with_overrides(over)
            return m
        return self.cached(("at", k), build)

    def change_times(self):
        """int ns of the dates a :attr:`dated` model's parameters change (empty otherwise)."""
        if not self.dated:
            return np.zeros(0, dtype=np.int64)
        name, eff = self._p["preset"], []
        while name is not None:
            eff += [s.effective for s in P.presets()[name].sets if s.effective is not None]
            name = P.presets()[name].extends
        return np.unique(np.array(eff, dtype=np.int64))

    @classmethod
    def from_dict(cls, d):
        """A preset's values (key ``preset``, default ``standard``; key ``as_of``: the date its
        parameters are taken at, see :meth:`preset`), then the given keys."""
        if not isinstance(d, dict):
            raise _err("", f"a dict, got {type(d).__name__}")
        check_shape(d)
        d = dict(d)
        base = cls.preset(d.pop("preset", "standard"), as_of=d.pop("as_of", None))
        return base.with_overrides(d)

    @classmethod
    def from_toml(cls, path):
        """Load a TOML file of the shape of ``docs/model.example.toml``.

        The file must be UTF-8, at most ``MAX_TOML_BYTES`` (2 MiB), with keys at most
        ``MAX_KEY_DEPTH`` levels deep, tables nested at most ``MAX_DEPTH`` deep and at most
        ``MAX_ENTRIES`` keys: anything else is a :class:`MarginError` before it is parsed
        further."""
        if not isinstance(path, (str, os.PathLike)):     # an int would be a file descriptor
            raise MarginError("arguments", "path", f"a path to a TOML file (str or "
                              f"os.PathLike), got {path!r}",
                              hint="Or pass a preset name: " + ", ".join(P.names()))
        try:
            d = tomllib.loads(_toml_text(path))
        except tomllib.TOMLDecodeError as exc:
            raise _err("", f"valid TOML in {path} ({exc})") from None
        except RecursionError:
            raise _err("", f"TOML in {path} nested at most {MAX_DEPTH} deep") from None
        except OSError as exc:
            raise _err("", f"a readable TOML file, got {path!r} ({exc.strerror})",
                       hint="Or pass a preset name: " + ", ".join(P.names())) from None
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
        if not isinstance(overrides, dict):
            raise _err("", f"a dict of parameters to override, got {overrides!r}")
        check_shape(overrides)
        if "preset" in overrides:
            raise _err("preset", "no preset key in overrides (start from Model.preset)")
        given = overrides
        overrides = canonical_names(overrides)
        try:
            return Model(_merge(self._p, overrides), as_of=self._as_of,
                         effective=self._effective,
                         overrides=self._overrides + (copy.deepcopy(overrides),))
        except MarginError as exc:        # about a parameter given under its other name
            alias = next((a for a, name in ALIASES.items()
                          if a in given and exc.table == "model" and exc.column == name), None)
            if alias is None:
                raise
            raise MarginError(exc.table, exc.column, exc.expected, hint=(
                f"Given as {alias!r}" + (f"; {exc.hint}" if exc.hint else ""))) from None

    def with_scenarios(self, scenarios):
        """A new model whose scenario set is ``scenarios`` (rows: price_shock, vol_state or
        vol_factor, loss_weight, gain_weight, table), for every underlying."""
        from ..io.arrow import as_table
        from .scenario_table import rows_from_table
        rows = rows_from_table(as_table(scenarios, "scenarios"))
        return self.with_overrides({"scenarios": rows})

    def with_brackets(self, response, *, symbol=None, underlying=None, kind=None):
        """A new model with your own bracket ladders (``margin_rules = "brackets"``,
        ``binance_um``): ``response`` is Binance's leverage-bracket response (``symbol,
        bracket, initialLeverage, notionalCap, notionalFloor, maintMarginRatio, cum``; COIN-M
        ``qtyCap, qtyFloor``) as a table, a list of dicts or the endpoints' nested JSON.  A
        symbol's ladder replaces the model's earlier one.  With ``underlying``, the ladder is
        that underlying's default for its settlement (USDⓈ-M or COIN-M), used by the symbols
        without a ladder of their own; with ``kind`` too (``"perpetual"`` or ``"future"``),
        its default for that instrument kind only, which wins over the kind-less default.  A
        default replaces the model's earlier one for the same underlying, settlement and
        kind.  A bad ladder is a :class:`MarginError` naming the (symbol, bracket) row.

        >>> from pmrisk.model.model import Model
        >>> m = Model.preset("standard").with_brackets(
        ...     [{"symbol": "SOLUSDT", "bracket": 1, "initialLeverage": 20,
        ...       "notionalFloor": 0, "notionalCap": 1e6, "maintMarginRatio": 0.025}])
        >>> m["brackets"][0]["symbol"], m["brackets"][0]["cum"]
        ('SOLUSDT', 0.0)
        >>> q = [{"bracket": 1, "initialLeverage": 50, "qtyFloor": 0, "qtyCap": 10,
        ...       "maintMarginRatio": 0.01}]
        >>> m = m.with_brackets(q, underlying="BTC", kind="future")
        >>> [(r.get("underlying"), r.get("kind")) for r in m["brackets"]]
        [(None, None), ('BTC', 'future')]
        """
        from ..venues.brackets import binance_rows, default_key
        rows = binance_rows(response, symbol=symbol, underlying=underlying, kind=kind)
        new = {default_key(r) for r in rows}
        kept = [r for r in self._p["brackets"] if default_key(r) not in new]
        return self.with_overrides({"brackets": kept + rows})

    # -- access ---------------------------------------------------------------------------
    def __getitem__(self, key):
        return self._p[ALIASES.get(key, key)]

    @property
    def name(self):
        return self._p["preset"]

    def underlyings(self):
        """Names of the underlyings that have a section of their own."""
        return [k for k, v in self._p.items() if isinstance(v, dict) and k not in _SECTIONS]

    def underlying(self, name):
        """Every per-underlying parameter for ``name`` (its section over ``default_underlying``
        over the neutral values)."""
        return dict(self.cached(("underlying", name), lambda: self._merged_underlying(name)))

    def _merged_underlying(self, name):
        section = self._p.get(name)
        return layered_underlying(self._p, section if isinstance(section, dict) and
                                  name not in _SECTIONS else None)

    def cached(self, key, build):
        """``build()``, computed once per model and ``key`` (a model is immutable, so what is
        derived from it is too: scenario sets per underlying, say).  Callers must not change
        what it returns."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def to_dict(self):
        return copy.deepcopy(self._p)

    def __repr__(self):
        return f"Model(preset={self.name!r}, underlyings={self.underlyings()})"


def canonical_names(overrides):
    """``overrides`` with each top-level key of :data:`ALIASES` under its parameter's own name
    (a new dict; the caller's is left as it was).

    >>> from pmrisk.model.model import canonical_names
    >>> canonical_names({"imr_factor": 1.5, "BTC": {"price_range": 0.2}})
    {'im_factor': 1.5, 'BTC': {'price_range': 0.2}}
    >>> canonical_names({"imr_factor": 1.5, "im_factor": 1.5})
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: model.imr_factor: expected one of imr_factor and im_factor...
    """
    if not any(k in ALIASES for k in overrides):
        return overrides
    out = {}
    for key, value in overrides.items():
        name = ALIASES.get(key, key)
        if name in out or (name != key and name in overrides):
            raise _err(key, f"one of {key} and {name} (two names of one parameter), got both",
                       hint=f"Keep {name!r}")
        out[name] = value
    return out


def _paths(d, prefix=""):
    """Dotted paths of a nested dict's leaves (a set's changed keys)."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("collateral",):
            out += _paths(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


_NOT_SECTIONS = ("scenarios", "preset", "brackets")   # checked on their own, never underlyings


def layered_underlying(p, section):
    """An underlying's parameters in model ``p``: the neutral values, then
    ``default_underlying``, then its class's table in ``okx_classes`` (the class its section
    or ``default_underlying`` names in ``okx_class``; none: no class table), then its own
    ``section`` (None: no section of its own)."""
    out = dict(P.UNDERLYING_DEFAULTS)
    out.update(p.get("default_underlying", {}))
    own = section or {}
    out.update(p.get("okx_classes", {}).get(own.get("okx_class", out["okx_class"]), {}))
    out.update(own)
    return out


def _validate(p):
    """Check every parameter of a merged model against its :class:`Param` (values are
    replaced by their canonical type), then the cross-parameter rules."""
    for key in _SECTIONS:
        if not isinstance(p.get(key), dict):
            raise _err(key, f"a table (dict) of parameters, got {p.get(key)!r}")
    for key, value in p.items():
        if key in _SECTIONS or key in _NOT_SECTIONS:
            continue
        if key in TOP_PARAMS:
            p[key] = check_param(key, TOP_PARAMS[key], value)
        elif isinstance(value, dict):
            near = difflib.get_close_matches(key, list(P.TOP_DEFAULTS), n=1, cutoff=0.75)
            if key.lower() in ("default", "defaults", "underlying", "underlyings"):
                near = ["default_underlying"]
            if near:
                raise _err(key, "a known parameter or an underlying section",
                           hint=f"Did you mean {near[0]!r}? An underlying section is named "
                           "like the instruments' underlying (BTC)")
            _validate_underlying(key, value)
        elif key.isupper():                  # named like an underlying: its section's value
            raise _err(key, f"a table (dict) of parameters for underlying {key}, got "
                       f"{value!r}", hint=f"e.g. {{{key!r}: {{'price_range': 0.16}}}}, or "
                       f"[{key}] with price_range = 0.16 in TOML")
        else:
            raise _err(key, "a known parameter", hint=f"Known: {', '.join(sorted(P.TOP_DEFAULTS))}"
                       " or an underlying section such as [BTC]")
    _validate_underlying("default_underlying", p["default_underlying"])
    for cls, table in p["okx_classes"].items():
        if cls not in OKX_CLASSES:
            raise _err(f"okx_classes.{cls}", f"a class among {OKX_CLASSES}")
        if not isinstance(table, dict):
            raise _err(f"okx_classes.{cls}", f"a table (dict) of parameters, got {table!r}")
        if "okx_class" in table:
            raise _err(f"okx_classes.{cls}.okx_class", "no okx_class inside a class's table "
                       "(an underlying's section names its class)")
        _validate_underlying(f"okx_classes.{cls}", table)
    for name in ["default_underlying"] + [k for k, v in p.items() if isinstance(v, dict)
                                          and k not in _SECTIONS and k not in _NOT_SECTIONS]:
        u = layered_underlying(p, None if name == "default_underlying" else p[name])
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
    level = Param("float", 0.0)
    th["warning"] = [check_param("thresholds.warning", level, v) for v in th["warning"]]
    for k in ("margin_call", "liquidation"):
        th[k] = check_param(f"thresholds.{k}", level, th[k])
    levels = th["warning"] + [th["margin_call"], th["liquidation"]]
    if any(a <= b for a, b in zip(levels, levels[1:])):
        raise _err("thresholds", f"strictly decreasing levels, got {levels}")
    ex = p["exclude"]
    for k, v in ex.items():
        if k not in ("symbols", "kinds", "underlyings"):
            raise _err(f"exclude.{k}", "a known parameter (symbols, kinds, underlyings)")
        ex[k] = check_param(f"exclude.{k}", Param("names"), v)
        if k == "kinds" and set(v) - set(KINDS):
            raise _err("exclude.kinds", f"kinds among {KINDS}, got {sorted(set(v) - set(KINDS))}")
    _validate_correlations(p["correlations"])
    for asset, spec in p["collateral"].items():
        _validate_collateral(asset, spec)
    if p.get("scenarios") is not None:
        from .scenario_table import validate_rows
        validate_rows(p["scenarios"])
    if p["brackets"] or p["brackets_as_of"] != "snapshot":      # binance_um
        from ..venues.brackets import check_model_brackets
        check_model_brackets(p)


def _validate_underlying(name, section):
    for k, v in section.items():
        where = f"{name}.{k}"
        if k not in UNDERLYING_PARAMS:
            raise _err(where, "a known parameter",
                       hint=f"Known: {', '.join(sorted(P.UNDERLYING_DEFAULTS))}")
        section[k] = check_param(where, UNDERLYING_PARAMS[k], v)


def _validate_correlations(section):
    from .correlation import correlation_matrix, parse_pairs
    for key, rho in section.items():
        if key != "repair":
            section[key] = check_param(f"correlations.{key}", Param("float", -1.0, 1.0), rho)
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


def _validate_collateral(asset, spec):
    where = f"collateral.{asset}"
    if not isinstance(spec, dict) or set(spec) - {"rate", "tiers_usd"} or len(spec) != 1:
        raise _err(where, "a table with exactly one of rate = x or tiers_usd = [[from, to, rate]]")
    if "rate" in spec:
        spec["rate"] = check_param(f"{where}.rate", Param("float", 0.0, 1.0), spec["rate"])
        return
    where += ".tiers_usd"
    tiers = spec["tiers_usd"]
    shape = "a non-empty list of [from_usd, to_usd, rate] triples"
    if not isinstance(tiers, (list, tuple)) or not tiers:
        raise _err(where, f"{shape}, got {tiers!r}")
    out = []
    prev_hi = 0.0
    for tier in tiers:
        if not isinstance(tier, (list, tuple)) or len(tier) != 3:
            raise _err(where, f"{shape}, got {tier!r}")
        lo = check_param(where, Param("float", 0.0), tier[0])
        hi = check_param(where, Param("float", 0.0, finite=False), tier[1])
        rate = check_param(where, Param("float", 0.0, 1.0), tier[2])
        if lo != prev_hi or not hi > lo:
            raise _err(where, "contiguous slices starting at 0 "
                       f"([0, a], [a, b], ...), got {tiers!r}")
        out.append([lo, hi, rate])
        prev_hi = hi
    spec["tiers_usd"] = out


def collateral_value_usd(model, asset, value_usd):
    """Collateral value of positive USD amounts of ``asset``: each tier's slice at its rate;
    above the last tier the value stops growing (rate 0), as in Binance's tier tables.

    >>> import numpy as np
    >>> from pmrisk.model.model import Model, collateral_value_usd
    >>> m = Model.preset("deribit_pme").with_overrides(
    ...     {"collateral": {"BTC": {"tiers_usd": [[0, 100, 1.0], [100, 200, 0.5]]}}})
    >>> collateral_value_usd(m, "BTC", np.array([150.0, 500.0])).tolist()
    [125.0, 150.0]
    """
    return collateral_value(model["collateral"].get(asset), value_usd)


def collateral_value(spec, value_usd):
    """Collateral value of positive USD amounts under one asset's collateral ``spec`` (its
    section of the model's ``collateral`` table: ``rate`` or ``tiers_usd``; None: full value).

    >>> import numpy as np
    >>> from pmrisk.model.model import collateral_value
    >>> collateral_value({"rate": 0.95}, np.array([100.0])).tolist()
    [95.0]
    """
    v = np.ascontiguousarray(value_usd, dtype=np.float64)
    code, rate, lo, width, factor = collateral_rule(spec)
    return collateral_values(v.ravel(), code, rate, lo, width, factor).reshape(v.shape)


def collateral_rule(spec):
    """One asset's collateral ``spec`` (its section of the model's ``collateral`` table; None:
    full value) as the collateral kernels take it: ``(rule, rate, from_usd, width_usd,
    tier_rate)``, the rule one of :data:`pmrisk.kernel.addons.NO_HAIRCUT`, ``FLAT_RATE``
    (``rate``) and ``TIERS`` (per tier its ``from_usd``, ``to_usd - from_usd`` and rate).

    >>> from pmrisk.model.model import collateral_rule
    >>> collateral_rule({"tiers_usd": [[0.0, 100.0, 1.0], [100.0, 200.0, 0.5]]})[2:]
    (array([  0., 100.]), array([100., 100.]), array([1. , 0.5]))
    """
    if spec is None:
        return NO_HAIRCUT, 0.0, _NO_TIERS, _NO_TIERS, _NO_TIERS
    if "rate" in spec:
        return FLAT_RATE, float(spec["rate"]), _NO_TIERS, _NO_TIERS, _NO_TIERS
    tiers = spec["tiers_usd"]
    return (TIERS, 0.0, np.array([float(lo) for lo, _, _ in tiers], dtype=np.float64),
            np.array([float(hi - lo) for lo, hi, _ in tiers], dtype=np.float64),
            np.array([float(f) for _, _, f in tiers], dtype=np.float64))


_NO_TIERS = np.zeros(0)
_NO_TIERS.flags.writeable = False

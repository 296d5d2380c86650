"""A model written back as TOML (the shape :meth:`pmrisk.Model.from_toml` reads): the preset's
name, then only what differs from the preset.

>>> from pmrisk.model.toml import dumps
>>> import pmrisk
>>> m = pmrisk.Model.preset("standard").with_overrides({"BTC": {"price_range": 0.07},
...                                                     "correlations": {"BTC,SOL": 0.3}})
>>> print(dumps(m))
preset = "standard"
<BLANKLINE>
[correlations]
"BTC,SOL" = 0.3
<BLANKLINE>
[BTC]
price_range = 0.07
<BLANKLINE>
"""

import math
import re

import numpy as np

from .model import Model

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k):
    k = str(k)
    return k if _BARE.match(k) else '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):                     # inline table (custom scenario rows)
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def _diff(new, old):
    out = {}
    for k, v in new.items():
        if v is None or k == "preset":
            continue
        o = old.get(k) if isinstance(old, dict) else None
        if isinstance(v, dict) and k != "collateral" and isinstance(o, dict):
            sub = _diff(v, o)
            if sub:
                out[k] = sub
        elif v != o:
            out[k] = v
    return out


def dumps(model):
    """TOML text of ``model``: ``preset = "..."``, the top-level keys that differ from the
    preset, then one table per section that differs (``[correlations]``, ``[BTC]``, ...)."""
    model = Model.coerce(model)
    as_of = model.as_of
    if as_of is not None and as_of != "valuation_time":
        as_of = str(np.datetime64(as_of, "ns"))
    d = _diff(model.to_dict(), Model.preset(model.name, as_of=as_of).to_dict())
    lines = [f"preset = {_value(model.name)}"]
    if as_of is not None:
        lines.append(f"as_of = {_value(as_of)}")
    tables = []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    lines.append("")

    def table(prefix, section):
        scalars = {k: v for k, v in section.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in section.items() if isinstance(v, dict)}
        if scalars or not subs:
            lines.append(f"[{prefix}]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
            lines.append("")
        for k, v in subs.items():
            table(f"{prefix}.{_key(k)}", v)

    for k, v in tables:
        table(_key(k), v)
    return "\n".join(lines)


def write(model, path):
    """Write :func:`dumps` of ``model`` to ``path`` (a new or replaced file)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(dumps(model))

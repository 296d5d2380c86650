"""Custom scenario tables: validation and conversion to a kernel ScenarioSet."""

import math

import numpy as np

from pmrisk.kernel import scenarios as S

from ..io import schema
from ..io.arrow import check_columns, float_column, has, raise_rows, str_column
from ..errors import MarginError

_COLUMNS = ("price_shock", "vol_state", "vol_factor", "loss_weight", "gain_weight", "table")


def rows_from_table(table):
    """Rows (list of dicts) of a caller's scenario table, validated."""
    check_columns(table, "scenarios", schema.SCENARIOS)
    n = table.num_rows
    shock = float_column(table, "scenarios", "price_shock")
    bad = ~(shock > -1.0)
    if bad.any():
        raise_rows(table, "scenarios", "price_shock", bad, "moves > -1 (-100 %)")
    out = [{"price_shock": float(s)} for s in shock]
    if has(table, "vol_state"):
        for r, v in zip(out, str_column(table, "vol_state").to_pylist()):
            r["vol_state"] = v
    if has(table, "vol_factor"):
        vf = float_column(table, "scenarios", "vol_factor", nullable=True, positive=True)
        for r, v in zip(out, vf):
            if not math.isnan(v):
                r["vol_factor"] = float(v)
    for col in ("loss_weight", "gain_weight"):
        if has(table, col):
            w = float_column(table, "scenarios", col)
            for r, v in zip(out, w):
                r[col] = float(v)
    if has(table, "table"):
        for r, v in zip(out, str_column(table, "table").to_pylist()):
            r["table"] = v
    validate_rows(out)
    assert len(out) == n
    return out


def validate_rows(rows):
    if not isinstance(rows, (list, tuple)) or not rows:
        raise MarginError("model", "scenarios", "a non-empty list of scenario rows")
    for k, r in enumerate(rows):
        where = f"scenarios[{k}]"
        if not isinstance(r, dict):
            raise MarginError("model", where, f"a table of scenario fields, got {r!r}")
        unknown = set(r) - set(_COLUMNS)
        if unknown:
            raise MarginError("model", f"{where}.{sorted(unknown)[0]}",
                              f"a known field ({', '.join(_COLUMNS)})")
        s = r.get("price_shock")
        if not isinstance(s, (int, float)) or not (s > -1.0) or not math.isfinite(s):
            raise MarginError("model", f"{where}.price_shock", f"a finite move > -1, got {s!r}")
        state = r.get("vol_state", "factor" if "vol_factor" in r else "same")
        if state not in S.VOL_STATES:
            raise MarginError("model", f"{where}.vol_state",
                              f"one of {S.VOL_STATES}, got {state!r}")
        if state == "factor" and not (r.get("vol_factor", 0) > 0):
            raise MarginError("model", f"{where}.vol_factor", "a factor > 0 with vol_state factor")
        if state != "factor" and "vol_factor" in r:
            raise MarginError("model", f"{where}.vol_factor",
                              "no vol_factor unless vol_state is 'factor' (or absent)")
        for w in ("loss_weight", "gain_weight"):
            v = r.get(w, 1.0)
            if not isinstance(v, (int, float)) or not (0.0 <= v < math.inf):
                raise MarginError("model", f"{where}.{w}", f"a finite weight >= 0, got {v!r}")
        if r.get("table", "standard") not in S.TABLES:
            raise MarginError("model", f"{where}.table", f"one of {S.TABLES}")


def to_scenario_set(rows):
    """A :class:`pmrisk.kernel.scenarios.ScenarioSet` from validated rows."""
    states = [r.get("vol_state", "factor" if "vol_factor" in r else "same") for r in rows]
    return S.custom(
        price_shock=np.array([r["price_shock"] for r in rows], dtype=np.float64),
        vol_code=np.array([S.VOL_STATES.index(s) for s in states], dtype=np.int64),
        vol_factor=np.array([r.get("vol_factor", 1.0) for r in rows], dtype=np.float64),
        loss_weight=np.array([r.get("loss_weight", 1.0) for r in rows], dtype=np.float64),
        gain_weight=np.array([r.get("gain_weight", 1.0) for r in rows], dtype=np.float64),
        table=np.array([S.TABLES.index(r.get("table", "standard")) for r in rows],
                       dtype=np.int64),
    )


def scenario_set_for(model, underlying):
    """The scenario set the model uses for one underlying (built once per model and
    underlying: the arrays are shared, never to be changed)."""
    return model.cached(("scenario_set", underlying),
                        lambda: _read_only(_scenario_set(model, underlying)))


def _read_only(scen):
    for a in scen:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return scen


def _scenario_set(model, underlying):
    if model["scenarios"] is not None:
        return to_scenario_set(model["scenarios"])
    p = model.underlying(underlying)
    pr = p["price_range"]
    if model["scenario_set"] == "span16":
        return S.span16(pr, p["extreme_multiple"], p["cover_fraction"])
    parts = [S.grid(pr, int(p["buckets_count"]), gain_weight=p["pnl_offset"],
                    gain_cap_usd=p["max_offsetable_pnl"])]
    if model["margin_rules"] == "okx":      # okx_pm: MR1 cells in OKX's mr1Scenarios order
        parts = [S.okx_grid(pr, int(p["buckets_count"]), gain_weight=p["pnl_offset"])]
    if model["extended_table"]:
        parts.append(S.extended(pr, p["extended_table_factor"], p["extended_dampener_usd"]))
    if model["extreme_scenarios"]:
        parts.append(S.extremes(pr, p["extreme_multiple"], p["cover_fraction"]))
    return S.concat(*parts)

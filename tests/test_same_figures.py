"""Same figures: the engine's outputs on fixed books equal those recorded before the "one
engine" rewrite (``tests/golden.py`` says what is recorded and how to regenerate it).

Numeric columns agree within 1e-12 of the column's scale (its largest finite magnitude, at
least 1); text, boolean, time and null/infinite cells are identical; so are the column names and
the row order."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import golden

REL = 1e-12


@pytest.fixture(scope="module")
def now():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return golden.cases()


def _recorded():
    return sorted(golden.GOLDEN.glob("*.parquet"))


def assert_same_table(got, want, where):
    assert got.column_names == want.column_names, where
    assert got.num_rows == want.num_rows, where
    for name in want.column_names:
        g, w = got.column(name), want.column(name)
        at = f"{where}.{name}"
        if pa.types.is_floating(w.type) or pa.types.is_integer(w.type):
            gm = g.is_null().to_numpy(zero_copy_only=False)
            wm = w.is_null().to_numpy(zero_copy_only=False)
            assert (gm == wm).all(), f"{at}: null cells differ"
            gv = g.to_numpy(zero_copy_only=False).astype(np.float64)[~wm]
            wv = w.to_numpy(zero_copy_only=False).astype(np.float64)[~wm]
            fin = np.isfinite(wv)
            assert (np.isfinite(gv) == fin).all(), f"{at}: finite cells differ"
            assert (gv[~fin] == wv[~fin]).all() or \
                np.array_equal(gv[~fin], wv[~fin], equal_nan=True), f"{at}: inf/nan differ"
            scale = max(1.0, float(np.abs(wv[fin]).max())) if fin.any() else 1.0
            err = float(np.abs(gv[fin] - wv[fin]).max()) if fin.any() else 0.0
            assert err <= REL * scale, f"{at}: off by {err:.3g} (scale {scale:.3g})"
        else:
            assert g.cast(w.type).equals(w), f"{at}: cells differ"


def test_golden_files_are_there():
    names = {p.name for p in _recorded()}
    assert len(names) >= 70
    for case in ("demo-standard", "multi-span", "history-deribit_pme", "risk_arrays-span",
                 "monitor-deribit_pme", "monitor-standard", "plan-standard",
                 "backtest-deribit_pme"):
        assert any(n.startswith(case + "__") for n in names), case


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: p.stem)
def test_same_figures(now, path):
    case, table = path.stem.split("__")
    assert case in now and table in now[case], f"{path.stem} is no longer computed"
    assert_same_table(now[case][table], pq.read_table(path), path.stem)


def test_every_computed_table_is_recorded(now):
    recorded = {p.stem for p in _recorded()}
    computed = {f"{c}__{t}" for c, tables in now.items() for t in tables}
    assert computed == recorded


def test_the_comparison_sees_a_change():
    t = pq.read_table(_recorded()[0])
    col = next(n for n in t.column_names if pa.types.is_floating(t.schema.field(n).type))
    v = t.column(col).to_numpy(zero_copy_only=False).copy()
    i = int(np.nanargmax(np.where(np.isfinite(v), np.abs(v), -1)))
    v[i] = v[i] * (1 + 1e-9) + 1e-9
    bad = t.set_column(t.column_names.index(col), col, pa.array(v))
    with pytest.raises(AssertionError):
        assert_same_table(bad, t, "mutated")

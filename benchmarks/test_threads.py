"""Results do not depend on the number of numba threads (performance issue, item 4: "results
with 1 and 2 threads agree to 1e-12").

The same books (``seed-1acct-6k`` under ``standard``; 2,000 accounts x 10 positions under
``standard`` and ``deribit_pme``) are margined in two fresh processes, with
``NUMBA_NUM_THREADS=1`` and ``=2`` (the thread count is fixed at numba's start-up, hence the
processes), and every column of the accounts and units tables must agree: text exactly, numbers
to 1e-12 relative.  "Relative" is per column: ``|a - b| <= 1e-12 * max(|b|, max |column|)``,
so a value that cancels to ~0 inside a column of millions may differ by rounding of that
column's scale (a parallel sum adds in another order), nothing more.  This is not a timing
test: it runs in `make test`.
"""

import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.types as pt

import pmrisk

from probes import run as probe

RTOL = 1e-12


def _read(directory):
    out = {}
    for path in sorted(pathlib.Path(directory).glob("*.arrow")):
        with pa.OSFile(str(path), "rb") as f:
            out[path.stem.replace("--", "/")] = pa.ipc.open_file(f).read_all()
    return out


def _assert_same(name, a, b):
    assert a.schema == b.schema, name
    assert a.num_rows == b.num_rows, name
    for col in a.column_names:
        x, y = a.column(col), b.column(col)
        typ = x.type
        if pt.is_floating(typ) or pt.is_integer(typ):
            xa = x.to_numpy(zero_copy_only=False).astype(np.float64)
            ya = y.to_numpy(zero_copy_only=False).astype(np.float64)
            assert np.array_equal(np.isnan(xa), np.isnan(ya)), f"{name}.{col}: NaN pattern"
            finite = np.isfinite(ya)
            assert np.array_equal(xa[~finite & ~np.isnan(ya)], ya[~finite & ~np.isnan(ya)]), (
                f"{name}.{col}: infinities")
            scale = np.max(np.abs(ya[finite]), initial=0.0)
            tol = RTOL * np.maximum(np.abs(ya[finite]), scale)
            diff = np.abs(xa[finite] - ya[finite])
            worst = int(np.argmax(diff - tol)) if diff.size else 0
            assert (diff <= tol).all(), (
                f"{name}.{col}: 1 vs 2 threads differ by {diff[worst]:.3g} "
                f"(allowed {tol[worst]:.3g}) at row {worst}")
        else:
            assert x.equals(y), f"{name}.{col}"


def test_one_and_two_threads_agree(tmp_path):
    pmrisk.warmup()            # populate numba's cache once, before the two processes read it
    results = {}
    for n in (1, 2):
        out = tmp_path / f"threads-{n}"
        out.mkdir()
        info = probe("threads", str(out), env={"NUMBA_NUM_THREADS": str(n)})
        assert info["threads"] == n
        results[n] = _read(out)
    assert sorted(results[1]) == sorted(results[2]) and len(results[1]) == 6
    for name in results[1]:
        _assert_same(name, results[2][name], results[1][name])

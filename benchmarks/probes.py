"""Measurements that need a fresh process, run as ``python benchmarks/probes.py NAME [ARG]``;
each prints one JSON object on its last line of stdout.

* ``first-call DIR``: seconds to ``import pmrisk`` and to the first ``pmrisk.margin(**demo)``
  (default model ``standard``) in this process, the demo book read from DIR (``save-demo
  DIR`` writes it); whether numba's cache was warm is the caller's ``NUMBA_CACHE_DIR``.
* ``memory``: peak RSS growth (MB) during one ``margin()`` of ``seed-1acct-6k`` after the
  kernels are loaded: current RSS just before the call, the kernel's high-water mark (Linux
  ``VmHWM``, reset through ``/proc/self/clear_refs``) just after; elsewhere the growth of
  ``ru_maxrss``.
* ``backtest-memory PATHS.json OUT``: peak RSS growth (MB) of one streamed
  ``pmrisk.backtest`` of the Parquet datasets named in PATHS.json, results written to OUT,
  after the kernels are loaded (as ``memory`` measures it; Linux only).
* ``threads DIR``: margin() of three books (``seed-1acct-6k`` under ``standard``, 2,000 accounts
  x 10 positions under ``standard`` and ``deribit_pme``), accounts and units tables written as
  Arrow IPC files into DIR, for the 1-vs-2 threads agreement test; ``NUMBA_NUM_THREADS`` is
  the caller's.

``run(NAME, *ARGS, env=...)`` runs one in a fresh interpreter from the test process.  The probes
import nothing of the test suite, so the timed process imports only what a user's would.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def run(name, *args, env=None):
    """Run probe ``name`` in a fresh interpreter (``env`` added to this process's
    environment); its JSON result."""
    done = subprocess.run([sys.executable, str(HERE / "probes.py"), name, *args],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                          cwd=HERE, timeout=900)
    if done.returncode:
        raise AssertionError(f"probe {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def save_demo(directory):
    """Write the demo book as Arrow IPC files into ``directory`` (for :func:`first_call`)."""
    import pyarrow as pa

    from pmrisk.samples import demo_book
    book = demo_book()
    for name, t in book.items():
        if isinstance(t, pa.Table):
            with pa.OSFile(str(pathlib.Path(directory) / f"{name}.arrow"), "wb") as f, \
                    pa.ipc.new_file(f, t.schema) as w:
                w.write_table(t)
    (pathlib.Path(directory) / "valuation_time").write_text(book["valuation_time"])


def first_call(directory):
    """The demo book is read from Arrow IPC files (written by :func:`save_demo`), as a
    user's process would read its own data: building it here would run numba (its option
    marks) before the timed call and hide numba's one-off start-up from it."""
    t0 = time.perf_counter()
    import pmrisk
    t1 = time.perf_counter()
    import pyarrow as pa
    book = {}
    for path in sorted(pathlib.Path(directory).glob("*.arrow")):
        with pa.OSFile(str(path), "rb") as f:
            book[path.stem] = pa.ipc.open_file(f).read_all()
    vt = (pathlib.Path(directory) / "valuation_time").read_text()
    t2 = time.perf_counter()
    r = pmrisk.margin(**book, valuation_time=vt)
    t3 = time.perf_counter()
    assert r.accounts.num_rows > 0
    return {"import_s": t1 - t0, "first_margin_s": t3 - t2, "total_s": (t1 - t0) + (t3 - t2)}


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory():
    import resource

    import pmrisk

    import cases
    tables, vt = cases.seed_1acct_6k()
    pmrisk.warmup(models=["standard"])                 # kernels loaded: not counted
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        hwm_before = _status_kib("VmHWM")
        rss_before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:   # reset VmHWM to the current RSS
            f.write("5")
        how = "VmHWM after the call - VmRSS before it (/proc/self/clear_refs reset)"
    except OSError:
        rss_before = None
    r = pmrisk.margin(**tables, model="standard", valuation_time=vt)
    assert r.accounts.num_rows == 1
    if rss_before is not None:
        hwm_after = _status_kib("VmHWM")
        growth_kib = hwm_after - rss_before
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so a child of a big
        # test process would report its parent's peak
        peak_kib = max(hwm_before, hwm_after)
    else:                                               # macOS reports bytes, Linux KiB
        scale = 1024 if sys.platform == "darwin" else 1
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        growth_kib = (maxrss_after - maxrss_before) / scale
        peak_kib = maxrss_after / scale
        how = "ru_maxrss after - before"
    return {"growth_mb": growth_kib / 1024, "rss_before_mb": (rss_before or 0) / 1024,
            "peak_process_mb": peak_kib / 1024, "how": how}


def backtest_memory(paths_json, out):
    """Peak RSS growth of one streamed ``pmrisk.backtest`` (Parquet datasets in, Parquet out,
    ``deribit_pme``, accounts table) after the kernels are loaded, measured as in
    :func:`memory`; the inputs are the JSON ``{name: path}`` written by the caller."""
    import pmrisk
    paths = json.loads(pathlib.Path(paths_json).read_text())
    pmrisk.warmup(models=["deribit_pme"])
    rss_before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:       # reset VmHWM to the current RSS
        f.write("5")
    t0 = time.perf_counter()
    o = pmrisk.backtest(**paths, model="deribit_pme", out=out, overwrite=True,
                        progress=False)
    seconds = time.perf_counter() - t0
    hwm = _status_kib("VmHWM")
    return {"growth_mb": (hwm - rss_before) / 1024, "rss_before_mb": rss_before / 1024,
            "peak_process_mb": hwm / 1024, "snapshots": o.snapshots, "batches": o.batches,
            "seconds": seconds}


def threads(out):
    import numba
    import pyarrow as pa

    import pmrisk

    import cases
    from pmrisk import samples
    books = {"seed-1acct-6k/standard": (cases.seed_1acct_6k(), "standard")}
    acc = samples.book(n_accounts=2000, positions_per_account=10, underlyings=("BTC", "ETH"),
                       option_share=0.5, inverse_share=0.5, seed=5)
    acc = cases._split(acc)
    books["accounts-2k/standard"] = (acc, "standard")
    books["accounts-2k/deribit_pme"] = (acc, "deribit_pme")
    names = []
    for name, ((tables, vt), model) in books.items():
        r = pmrisk.margin(**tables, model=model, valuation_time=vt)
        for tname in ("accounts", "units"):
            names.append(f"{name}/{tname}")
            path = pathlib.Path(out) / (names[-1].replace("/", "--") + ".arrow")
            with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(
                    f, getattr(r, tname).schema) as w:
                w.write_table(getattr(r, tname))
    return {"threads": numba.get_num_threads(), "tables": names}


if __name__ == "__main__":
    name = sys.argv[1]
    fn = {"first-call": first_call, "memory": memory, "threads": threads,
          "save-demo": save_demo, "backtest-memory": backtest_memory}[name]
    print(json.dumps(fn(*sys.argv[2:]) or {}))

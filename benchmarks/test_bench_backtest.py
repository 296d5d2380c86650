"""``backtest-dask`` (issue 6, "Backtests at scale"): ``pmrisk.backtest`` streaming a history of
Parquet datasets, in this process and on a 2-worker Dask ``LocalCluster``, and the peak
memory of the streaming path as the history grows.

* ``backtest_dask[single-process]`` / ``backtest_dask[dask-2-workers]``: 1,000 times x
  1,000 accounts x 10 positions = 1,000,000 (time, account) snapshots, 10 M position rows
  (``cases.write_backtest_dataset``: ten time-ordered 100-minute chunks of the
  ``backtest-100k`` venue and books), ``deribit_pme``, the accounts table written as a
  Parquet dataset (``out=``), default batches (1 M rows: 10 batches).  The cluster is
  ``processes=True, threads_per_worker=1``, each worker on one core (1 numba thread, 1
  Arrow thread; the single process has 2 of each), started without Dask's
  ``MALLOC_TRIM_THRESHOLD_`` (see :func:`without_malloc_trim`) and warmed outside the
  timing.  Reported as snapshots per second; 3 rounds after an untimed one.
* ``backtest_memory[100k]`` / ``[1M]``: a fresh interpreter (``probes.py
  backtest-memory``) loads the kernels, then runs the single-process streamed backtest of the
  first chunk (100,000 snapshots) or of all ten (1,000,000) and reports the peak RSS growth
  (``VmHWM`` after - ``VmRSS`` before, ``/proc/self/clear_refs`` reset): flat means the
  10x longer history peaks where one batch does.

Smoke size (``make test``): 2 chunks of 5 times x 20 accounts, a threads cluster.
"""

import json
import sys

import pytest

import pmrisk

import cases
from probes import run as probe

PME = "deribit_pme"


def _sizes(full):
    """(chunks, times per chunk, accounts): 10 x 100 x 1,000 in full, 2 x 5 x 20 smoke."""
    return (10, 100, 1000) if full else (2, 5, 20)


@pytest.fixture(scope="module")
def history(full, tmp_path_factory):
    """The long history as Parquet datasets and its first chunk alone (hard links), with the
    JSON path lists the memory probe reads."""
    n_chunks, n_times, n_accounts = _sizes(full)
    root = tmp_path_factory.mktemp("backtest-history")
    paths, n_snap = cases.write_backtest_dataset(root / "long", n_chunks, n_times, n_accounts)
    first = {}
    for name, p in paths.items():
        if name == "instruments":
            first[name] = p
            continue
        d = root / "first" / name
        d.mkdir(parents=True)
        (d / "part-00000.parquet").hardlink_to(f"{p}/part-00000.parquet")
        first[name] = str(d)
    sets = {"long": (paths, n_snap), "first": (first, n_snap // n_chunks)}
    for key, (p, _) in sets.items():
        (root / f"{key}.json").write_text(json.dumps(p))
    return root, sets


def without_malloc_trim():
    """Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off
    glibc's adaptive mmap threshold: every large numpy array of a batch is then mapped and
    unmapped afresh and a batch runs ~1.5x slower (7.2 s -> 10.9 s for the 1M history in one
    process with that variable set).  The benchmark's workers start without it (README)."""
    import dask
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return dask.config.set({"distributed.nanny.pre-spawn-environ": env})


def _one_arrow_thread():
    import pyarrow as pa
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


@pytest.fixture(scope="module")
def dask_client(full):
    distributed = pytest.importorskip("distributed")
    # the smoke run takes threads (starts in a blink; tests/test_backtest.py runs processes)
    # full: one core each, so two workers do not oversubscribe the two cores (numba's and
    # Arrow's thread pools at 1; with 2 numba threads each it was ~15 % slower)
    nanny = {"env": {"NUMBA_NUM_THREADS": "1"}} if full else {}
    with without_malloc_trim():
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=full,
                                           dashboard_address=":0", **nanny)
    client = distributed.Client(cluster)
    if full:
        client.run(_one_arrow_thread)
    client.run(pmrisk.warmup, models=[PME])
    yield client
    client.close()
    cluster.close()


@pytest.mark.benchmark(group="backtest-dask")
@pytest.mark.parametrize("where", ["single-process", "dask-2-workers"])
def test_backtest_dask(benchmark, request, history, tmp_path, where):
    root, sets = history
    paths, n_snap = sets["long"]
    client = request.getfixturevalue("dask_client") if where != "single-process" else None
    pmrisk.warmup(models=[PME])
    out = []

    def run():
        out.append(pmrisk.backtest(**paths, model=PME, out=tmp_path, overwrite=True,
                                   client=client, progress=False))

    if benchmark.disabled:
        benchmark(run)
    else:
        benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["work"] = {"snapshots": n_snap}
    benchmark.extra_info["batches"] = out[-1].batches
    benchmark.extra_info["where"] = where
    if client is not None:
        benchmark.extra_info["cluster"] = (
            "Dask `LocalCluster`, 2 worker processes × 1 thread (1 numba and 1 Arrow thread "
            "each, no `MALLOC_TRIM_THRESHOLD_`)" if request.getfixturevalue("full")
            else "Dask `LocalCluster`, 2 worker threads")
    assert out[-1].snapshots == n_snap
    assert out[-1].read().num_rows == n_snap


@pytest.mark.benchmark(group="backtest-dask")
@pytest.mark.parametrize("size", ["100k", "1M"])
def test_backtest_memory(benchmark, history, tmp_path, size):
    if not sys.platform.startswith("linux"):
        pytest.skip("peak RSS through /proc (Linux)")
    root, sets = history
    key = "first" if size == "100k" else "long"
    results = []

    def run():
        results.append(probe("backtest-memory", str(root / f"{key}.json"), str(tmp_path)))

    benchmark.pedantic(run, rounds=1 if benchmark.disabled else 2, iterations=1)
    growth = [r["growth_mb"] for r in results]
    benchmark.extra_info.update(
        growth_mb=min(growth), growth_mb_max=max(growth), snapshots=sets[key][1],
        batches=results[0]["batches"], peak_process_mb=results[0]["peak_process_mb"],
        seconds=results[0]["seconds"])
    assert results[0]["snapshots"] == sets[key][1]

"""Fresh-process benchmarks: ``first-call`` (import + first ``margin()`` with a warm and with an
empty numba cache) and ``memory`` (peak RSS growth during ``seed-1acct-6k``).

Each round runs ``benchmarks/probes.py`` in a new interpreter.  The benchmark's own time is the
whole process (interpreter start to exit); what the probe measured inside the process goes to
``extra_info`` and is what report.py holds against the targets.  The smoke run (`make test`)
does the warm-cache first call and the memory probe once; the empty-cache first call compiles
every kernel (tens of seconds), so it runs only with timing on (`make bench`).
"""

import shutil
import statistics
import tempfile

import pytest

import pmrisk

from probes import run as probe


def _median_info(results):
    keys = [k for k, v in results[0].items() if isinstance(v, (int, float))]
    out = {k: statistics.median(r[k] for r in results) for k in keys}
    out.update({f"{k}_max": max(r[k] for r in results) for k in keys})
    return out


@pytest.fixture(scope="module")
def warm_cache():
    """Compile or load every kernel in this process first, so numba's on-disk cache (in
    ``NUMBA_CACHE_DIR`` when set) is populated before any probe reads it."""
    pmrisk.warmup()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The demo book as Arrow IPC files, for the first-call probe to read."""
    d = tmp_path_factory.mktemp("demo")
    probe("save-demo", str(d))
    return str(d)


@pytest.mark.benchmark(group="first-call")
@pytest.mark.parametrize("cache", ["warm-cache", "empty-cache"])
def test_first_call(benchmark, warm_cache, demo_dir, full, cache):
    results = []
    dirs = []

    def setup():
        if cache == "empty-cache":
            dirs.append(tempfile.mkdtemp(prefix="pmrisk-bench-numba-"))
            return (), {"env": {"NUMBA_CACHE_DIR": dirs[-1]}}
        return (), {"env": None}

    def run(env):
        results.append(probe("first-call", demo_dir, env=env))

    if cache == "empty-cache" and benchmark.disabled and not full:
        pytest.skip("compiles every kernel (tens of seconds): runs under `make bench` only")
    try:
        if cache == "warm-cache":
            benchmark.pedantic(run, setup=setup, rounds=7, warmup_rounds=1)
        else:
            benchmark.pedantic(run, setup=setup, rounds=2)
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    benchmark.extra_info.update(_median_info(results))
    benchmark.extra_info["cache"] = cache
    assert all(r["first_margin_s"] > 0 for r in results)


@pytest.mark.benchmark(group="memory")
def test_memory_seed_1acct_6k(benchmark, warm_cache):
    results = []

    def run():
        results.append(probe("memory"))

    benchmark.pedantic(run, rounds=3)
    benchmark.extra_info.update(_median_info(results))
    benchmark.extra_info["how"] = results[0]["how"]
    assert all(r["growth_mb"] >= 0 for r in results)

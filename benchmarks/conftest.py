"""Benchmark fixtures: the size switch (smoke or full), a JIT warm-up before timing
(datashader's trick), a ``margin()`` runner that records where the time goes, the machine
description written into results.json, and the test oracles importable as ``oracles``.

Every benchmark records its work in ``benchmark.extra_info["work"]`` (positions, scenario
cells, snapshots, option revaluations ...), so ``report.py`` turns medians into throughputs
without knowing the sizes.
"""

import os
import pathlib
import platform
import statistics
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import cases  # noqa: E402


@pytest.fixture(scope="session")
def full(request):
    """True for the issue's full sizes (``make bench``), False for the smoke run."""
    return cases.full_size(request.config)


@pytest.fixture
def warm_benchmark(benchmark):
    """``benchmark`` that calls the function once untimed first, so compile or cache-load time
    never lands in the figures (first-call cost is measured on its own, in a fresh process).
    With timing off (the smoke run) the function runs just once."""
    def run(fn, *args, **kwargs):
        if not benchmark.disabled:
            fn(*args, **kwargs)
        return benchmark(fn, *args, **kwargs)
    return run


class _Stages:
    """Calls ``pmrisk.margin`` and keeps every call's ``result.timings`` (validate, compute,
    tables, total)."""

    def __init__(self):
        import pmrisk
        self.margin = pmrisk.margin
        self.timings = []

    def __call__(self, *args, **kwargs):
        r = self.margin(*args, **kwargs)
        self.timings.append(dict(r.timings))
        return r

    def medians(self):
        keys = [k for k in ("validate", "compute", "tables", "total")
                if self.timings and k in self.timings[0]]
        return {k: statistics.median(t[k] for t in self.timings) for k in keys}


@pytest.fixture
def margin_benchmark(benchmark):
    """``margin_benchmark(work, *args, rounds=None, **kwargs)``: time ``pmrisk.margin(*args,
    **kwargs)`` after one untimed call; ``work`` (a dict of counts) and the median stage split
    of the timed calls go to ``extra_info``.  ``rounds`` fixes the number of rounds (for calls
    of seconds); otherwise pytest-benchmark calibrates."""
    def run(work, *args, rounds=None, **kwargs):
        calls = _Stages()
        if benchmark.disabled:
            r = benchmark(calls, *args, **kwargs)
        else:
            calls(*args, **kwargs)
            calls.timings.clear()
            if rounds:
                r = benchmark.pedantic(calls, args=args, kwargs=kwargs, rounds=rounds,
                                       iterations=1)
            else:
                r = benchmark(calls, *args, **kwargs)
        benchmark.extra_info["work"] = dict(work)
        benchmark.extra_info["stages"] = calls.medians()
        return r
    return run


def pytest_generate_tests(metafunc):
    if "sweep_point" in metafunc.fixturenames:
        points = cases.sweep_points(cases.full_size(metafunc.config))
        metafunc.parametrize("sweep_point", [p[1:] for p in points], ids=[p[0] for p in points])


def pytest_sessionstart(session):
    # another process busy on a 2-core machine skews every figure (and starves parallel
    # kernels): the load average at the start and the end goes into results.json
    session.config._pmrisk_load_start = os.getloadavg() if hasattr(os, "getloadavg") else None


def pytest_benchmark_update_machine_info(config, machine_info):
    import llvmlite
    import numba
    import numpy
    import pyarrow

    import pmrisk
    try:
        layer = numba.threading_layer()
    except ValueError:                      # no parallel kernel ran in this process
        layer = None
    machine_info["pmrisk"] = {
        "pmrisk": pmrisk.__version__, "numba": numba.__version__,
        "llvmlite": llvmlite.__version__, "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__, "os_cpu_count": os.cpu_count(),
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS, "threading_layer": layer,
        "size": "full" if cases.full_size(config) else "smoke",
        "command": "python -m pytest " + " ".join(config.invocation_params.args),
        "platform": platform.platform(),
        "load_average_start": getattr(config, "_pmrisk_load_start", None),
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }

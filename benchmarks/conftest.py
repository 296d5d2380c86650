"""Benchmark fixtures: sized deterministic books, a JIT warm-up before timing (datashader's
trick), and the test oracles importable as ``oracles``."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))


@pytest.fixture
def warm_benchmark(benchmark):
    """``benchmark`` that calls the function once untimed first, so compile or cache-load time
    never lands in the figures (first-call cost is measured on its own)."""
    def run(fn, *args, **kwargs):
        fn(*args, **kwargs)
        return benchmark(fn, *args, **kwargs)
    return run

# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint nightly venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pmrisk demo

# The suite, then the ratio gate (benchmarks/gate.py, 15-25 s): performance ratios measured in
# one process, each against its limit in benchmarks/floors.toml.
test: $(STAMP)
	$(BIN)/ruff check kernel bindings tests benchmarks
	$(BIN)/python -m pytest
	$(BIN)/python benchmarks/gate.py

# `make nightly`: the property tests that search for bad input and broken invariants, under
# hypothesis' "nightly" profile (2,000 examples a test, new random draws each run; about
# an hour on 2 cores): the fuzzed inputs (one MarginError, never another exception), the
# invariants, the stateful Monitor == margin() machine, what-if, the joint stress.  Failures
# it finds are saved in .hypothesis/ and replayed first by every later run.
NIGHTLY := tests/test_fuzz.py tests/test_invariants.py tests/test_monitor.py \
	tests/test_what_if.py tests/test_correlated.py tests/test_standard_properties.py

nightly: $(STAMP)
	HYPOTHESIS_PROFILE=nightly $(BIN)/python -m pytest $(NIGHTLY)

lint: $(STAMP)
	$(BIN)/ruff check kernel bindings tests benchmarks

# `make bench`: the benchmark suite at full size with timing on (a few minutes), then the
# figures table in benchmarks/README.md and benchmarks/scaling.png (matplotlib: the `bench`
# extra, installed here only).  benchmarks/README.md says what is measured and how.
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-json=benchmarks/results.json
	$(BIN)/python benchmarks/report.py benchmarks/results.json --write

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks

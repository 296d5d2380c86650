"""The ratio gate's bookkeeping (benchmarks/gate.py; `make test` runs the gate itself after
the suite): floors.toml holds one limit per ratio, on the lenient side of what was measured
and in the ratio's direction; a refresh writes such a file; the median of rounds is what a
ratio reports.  No timing: the clocks here are fakes."""

import itertools

import pytest

import gate


def test_floors_hold_one_limit_per_ratio_in_its_direction():
    floors = gate.read_floors()
    assert set(floors) == {r.key for r in gate.RATIOS}
    for r in gate.RATIOS:
        entry = floors[r.key]
        kind, limit = gate.limit_of(entry)
        assert kind == ("max" if r.better == "lower" else "min"), r.key
        assert set(entry) == {"measured", kind}, r.key
        assert gate.passes(entry["measured"], kind, limit), r.key    # lenient side
        if r.cap is not None:
            assert gate.passes(r.cap, "max" if kind == "min" else "min", limit), r.key


def test_refresh_writes_limits_with_each_margin(tmp_path):
    measured = {r.key: x for r, x in zip(gate.RATIOS, (3.0, 150.0, 0.2, 1.2))}
    path = tmp_path / "floors.toml"
    gate.write_floors(measured, path)
    floors = gate.read_floors(path)
    for r in gate.RATIOS:
        kind, limit = gate.limit_of(floors[r.key])
        v = measured[r.key]
        want = v * r.margin if kind == "max" else v / r.margin
        if r.cap is not None:
            want = min(want, r.cap) if kind == "max" else max(want, r.cap)
        # two significant digits, rounded away from the measured value
        assert (want <= limit <= want * 1.1) if kind == "max" else \
            (want / 1.1 <= limit <= want), (r.key, limit, want)
        assert floors[r.key]["measured"] == pytest.approx(v, rel=1e-3)
    assert gate.limit_of(floors["whole_index_vs_moved_row"]) == ("max", 1.5)   # the cap


@pytest.mark.parametrize("value, kind, limit, ok", [
    (2.0, "max", 2.0, True), (2.01, "max", 2.0, False),
    (50.0, "min", 50.0, True), (49.9, "min", 50.0, False)])
def test_a_limit_is_inclusive(value, kind, limit, ok):
    assert gate.passes(value, kind, limit) is ok


def test_a_ratio_is_the_median_of_its_rounds():
    """Numerator and denominator alternate; one slow spell in a round is outvoted."""
    num = iter([1.0] * 3 + [2.0, 2.0, 9.0, 2.0, 2.0])       # 3 warm-up calls, then rounds
    den = iter([1.0] * 3 + [1.0, 1.0, 1.0, 1.0, 3.0])
    calls = []

    def side(it, name):
        def fn():
            calls.append(name)
            return next(it)
        return fn
    value, tn, td = gate.measure(side(num, "n"), side(den, "d"), 5, repeat=False)
    assert (value, tn, td) == (2.0, 2.0, 1.0)
    assert calls[6:] == list(itertools.chain(*(("n", "d") if r % 2 == 0 else ("d", "n")
                                               for r in range(5))))

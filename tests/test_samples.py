"""pmrisk.samples: every argument of the sample functions is checked by one helper (types,
ranges, a bound on the rows generated, times read by the one time parser and kept inside
int64 nanoseconds): bad arguments are MarginErrors naming the argument, never a hang, a
MemoryError or times that wrap around."""

import numpy as np
import pytest

from pmrisk import MarginError, samples
from pmrisk.cli.commands import main

BAD = [
    # samples.prices
    (samples.prices, dict(days=float("nan")), "days"),
    (samples.prices, dict(days=0), "days"),
    (samples.prices, dict(days=-1), "days"),
    (samples.prices, dict(days=1.5), "days"),
    (samples.prices, dict(days=10**9), "days"),
    (samples.prices, dict(seed=-1), "seed"),
    (samples.prices, dict(seed="x"), "seed"),
    (samples.prices, dict(step_hours=0), "step_hours"),
    (samples.prices, dict(step_hours=1e-9), "step_hours"),
    (samples.prices, dict(step_hours=10**9), "step_hours"),
    (samples.prices, dict(step_hours=float("nan")), "step_hours"),
    (samples.prices, dict(days=36_500, step_hours=1 / 3600), "days"),       # rows bound
    (samples.prices, dict(start="2262-01-01"), "start"),                      # would wrap
    (samples.prices, dict(start="garbage"), "start"),
    (samples.prices, dict(start=1718611200), "start"),
    # samples.book
    (samples.book, dict(n_accounts=10**9), "n_accounts"),
    (samples.book, dict(n_accounts=float("inf")), "n_accounts"),
    (samples.book, dict(n_accounts=0), "n_accounts"),
    (samples.book, dict(positions_per_account=10**9), "positions_per_account"),
    (samples.book, dict(n_accounts=10**6, positions_per_account=100), "n_accounts"),
    (samples.book, dict(underlyings=()), "underlyings"),
    (samples.book, dict(underlyings=("BTC", "BTC")), "underlyings"),
    (samples.book, dict(option_share=1.5), "option_share"),
    (samples.book, dict(option_share=float("nan")), "option_share"),
    (samples.book, dict(inverse_share=-0.1), "inverse_share"),
    (samples.book, dict(n_expiries=0), "n_expiries"),
    (samples.book, dict(valuation_time="2262-01-01"), "valuation_time"),
    # samples.history
    (samples.history, dict(days=10**6, accounts=10**6), "days"),
    (samples.history, dict(days=1, accounts=1, step_minutes=10**9), "step_minutes"),
    (samples.history, dict(days=1, accounts=1, start="2262-04-01"), "start"),
    (samples.history, dict(days=3000, accounts=1, step_minutes=1), "days"),   # rows bound
    (samples.history, dict(days=1, accounts=0), "accounts"),
    (samples.history, dict(days=1, accounts=1, seed=1.5), "seed"),
]


@pytest.mark.parametrize("fn, kwargs, column", BAD,
                         ids=[f"{f.__name__}-{k}" for f, k, _ in BAD])
def test_bad_sample_arguments_are_named(fn, kwargs, column):
    with pytest.raises(MarginError) as exc:
        fn(**kwargs)
    assert (exc.value.table, exc.value.column) == ("arguments", column)


def test_size_bound_names_the_arguments_and_the_estimate():
    with pytest.raises(MarginError) as exc:
        samples.history(days=3000, accounts=1, step_minutes=1)
    assert "days=3000, accounts=1, step_minutes=1" in str(exc.value)
    assert "289,440,000" in str(exc.value) and "50,000,000" in str(exc.value)


def test_good_arguments_still_work():
    t = samples.prices(days=2, step_hours=6, start=np.datetime64("2024-01-01"))
    assert t.num_rows == 2 * 4 * 3
    b = samples.book(n_accounts=2, positions_per_account=5, underlyings="BTC",
                     option_share=0.0)
    assert b["positions"].num_rows == 10 and set(b["index"]["underlying"].to_pylist()) == {"BTC"}
    h = samples.history(days=1, accounts=1, step_minutes=720, seed=np.int64(3))
    assert h["balances"].num_rows == 2


def test_cli_samples_history_huge_is_one_line(tmp_path, capsys):
    assert main(["samples", "history", "--out", str(tmp_path / "h"), "--days", "100000000",
                 "--accounts", "100000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "days" in err
    assert not (tmp_path / "h").exists()

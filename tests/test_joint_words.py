"""The binding joint scenario in words of an account is the same whether a call describes
many accounts at once or a few (a what-if's states, a tick on a few accounts): margin() over
a book and over slices of it of at most ``FEW`` accounts."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pmrisk
from pmrisk import samples

FEW = 16


@pytest.mark.parametrize("seed, underlyings, inverse", [
    (5, ("BTC", "ETH", "SOL"), 1.0), (7, ("BTC", "ETH"), 0.5), (11, ("BTC", "ETH", "SOL"), 0.5)])
def test_few_accounts_words_equal_many(seed, underlyings, inverse):
    """Half the instruments linear: units of one underlying in two currencies, whose vol
    states can differ in the binding scenario (the words list each unit's)."""
    book = samples.book(n_accounts=3 * FEW, positions_per_account=8, underlyings=underlyings,
                        inverse_share=inverse, seed=seed)
    vt = book.pop("valuation_time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pmrisk.MarginWarning)
        whole = pmrisk.margin(**book, model="standard", valuation_time=vt).accounts
        names = whole["account"].to_pylist()
        assert len(names) > FEW
        words = dict(zip(names, whole["worst_scenario"].to_pylist()))
        assert sum(w.startswith("joint") for w in words.values()) > FEW
        mixed = sum("(" in w for w in words.values())
        for part in np.array_split(np.array(names, dtype=object), len(names) // FEW + 1):
            assert 0 < len(part) <= FEW
            keep = pa.array(list(part), pa.string())
            sub = dict(book)
            for k in ("positions", "balances", "open_orders", "reserves"):
                if sub.get(k) is not None:
                    sub[k] = sub[k].filter(pc.is_in(sub[k]["account"], value_set=keep))
            got = pmrisk.margin(**sub, model="standard", valuation_time=vt).accounts
            for a, w in zip(got["account"].to_pylist(), got["worst_scenario"].to_pylist()):
                assert w == words[a], a
    if inverse < 1.0:
        assert mixed, "no unit-by-unit vol words: the case does not test them"

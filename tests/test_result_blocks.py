"""The large result tables' path (:mod:`pmrisk.results`): blocks of the library's own pool,
the parallel table kernels and the threads' string gather give the same tables as the small
tables' path, and a pooled block is reused only once nothing holds it."""

import gc

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk import blocks, results, samples

PME = pmrisk.Model.preset("deribit_pme")


def _tables(r):
    return [getattr(r, n) for n in ("accounts", "units", "positions")]


def _same(got, want):
    for g, w in zip(_tables(got), _tables(want)):
        assert g.schema.equals(w.schema) and g.equals(w)
        for name in w.column_names:         # floats to the bit (signed zeros, NaN payloads)
            a, b = g.column(name).combine_chunks(), w.column(name).combine_chunks()
            if pa.types.is_floating(a.type) and a.null_count == 0:
                assert np.array_equal(a.to_numpy().view(np.int64),
                                      b.to_numpy().view(np.int64)), name


def _large_path(monkeypatch):
    """Every table takes the large tables' path: the pool, the parallel forms, the gather."""
    monkeypatch.setattr(blocks, "POOL_BYTES", 1)
    monkeypatch.setattr(results, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(results, "UNIT_PARALLEL_ROWS", 1)
    monkeypatch.setattr(results, "STRING_PARALLEL_ROWS", 1)
    monkeypatch.setattr(results, "GATHER_ROWS", 1)


@pytest.mark.parametrize("name", ["demo", "one-account", "history", "futures"])
def test_large_path_gives_the_small_path_tables(monkeypatch, name):
    """The demo book (six accounts), one account (its column one string repeated), a history
    (rows by snapshot, a time column) and loans under binance_um's brackets: the same
    tables, to the bit, whichever path builds them."""
    if name == "demo":
        book, model = samples.demo_book(), PME
    elif name == "one-account":
        book, model = samples.book(n_accounts=1, positions_per_account=40, seed=1), PME
    elif name == "history":
        book = samples.history(days=1, accounts=6, step_minutes=360, seed=2)
        model = PME
    else:
        book, model = samples.futures_book(n_accounts=6, seed=1), "binance_um"
    want = pmrisk.margin(**book, model=model)
    with monkeypatch.context() as m:
        _large_path(m)
        got = pmrisk.margin(**book, model=model)
    _same(got, want)


def test_pooled_block_comes_back_only_when_nothing_holds_it():
    """A block is reused after its last column, slice and numpy view are gone, not before;
    the free blocks stay under the pool's limit."""
    pool = blocks.BlockPool(keep=8 << 20)
    buf = pool.take(3 << 20)
    col = pa.Array.from_buffers(pa.float64(), (3 << 20) // 8, [None, buf])
    view = np.frombuffer(buf, dtype=np.float64)[5:]
    part = col.slice(10, 3)
    address = buf.address
    del buf, col
    gc.collect()
    assert pool.free_bytes() == 0           # the view and the slice hold it
    other = pool.take(3 << 20)
    assert other.address != address
    del view
    gc.collect()
    assert pool.free_bytes() == 0           # the slice still does
    del part
    gc.collect()
    assert pool.free_bytes() == 4 << 20     # rounded up to whole huge pages
    again = pool.take(2 << 20)              # the smallest free block of at least the size
    assert again.address == address and pool.free_bytes() == 0
    del again, other
    gc.collect()
    assert pool.free_bytes() == 8 << 20
    big = pool.take(6 << 20)                # no free block fits: a new one
    del big
    gc.collect()
    assert pool.free_bytes() <= 8 << 20     # over the limit: freed, not kept
    pool.clear()
    assert pool.free_bytes() == 0


def test_a_result_keeps_its_blocks_while_the_next_call_runs(monkeypatch):
    """Two results alive at once own distinct blocks: the second call does not write over
    the first's tables."""
    _large_path(monkeypatch)
    book = samples.book(n_accounts=20, positions_per_account=30, seed=3)
    first = pmrisk.margin(**book, model=PME)
    copy = [t.to_pylist() for t in _tables(first)]
    other = samples.book(n_accounts=20, positions_per_account=30, seed=4)
    second = pmrisk.margin(**other, model=PME)
    assert [t.to_pylist() for t in _tables(first)] == copy
    assert second.positions.num_rows > 0


@pytest.mark.parametrize("model,name", [
    ("standard", "book"), ("deribit_pme", "book"), ("span", "book"), ("okx_pm", "book"),
    ("binance_pm_pro", "book"), ("binance_um", "futures"), ("deribit_pme", "history"),
    ("span-excluded", "book"), ("standard", "orders"), ("deribit_pme", "risk-vectors")])
def test_no_uninitialised_memory_reaches_a_result(monkeypatch, model, name):
    """Every uninitialised array the engine and the tables take from the pool
    (:func:`pmrisk.blocks.pool_array`: the result blocks; :func:`pmrisk.blocks.empty`: the
    figures the phases write in full) is written before it is read: with every such array
    filled with NaN, or with a large number, first, every table is the same to the bit,
    under every preset."""
    if name == "futures":
        book = samples.futures_book(n_accounts=6, seed=1)
    elif name == "history":
        book = samples.history(days=1, accounts=6, step_minutes=360, seed=2)
    else:
        book = samples.demo_book() if name == "orders" else samples.book(
            n_accounts=5, positions_per_account=30, underlyings=("BTC", "ETH"), seed=4)
    if model == "span-excluded":
        model = pmrisk.Model.preset("span").with_overrides(
            {"exclude": {"kinds": ["option"], "underlyings": [], "symbols": []}})
    rv = name == "risk-vectors"         # the units' vectors kept (written in full too)
    want = pmrisk.margin(**book, model=model, risk_vectors=rv)
    take, empty = blocks.pool_array, blocks.empty
    for fill in (np.nan, 1e300):
        def poison(a, fill=fill):
            a[...] = fill if a.dtype.kind == "f" else -7
            return a

        def poisoned(shape, dtype):
            a, buf = take(shape, dtype)
            return poison(a), buf
        with monkeypatch.context() as m:
            m.setattr(blocks, "pool_array", poisoned)
            m.setattr(blocks, "empty", lambda shape, dtype=np.float64: poison(
                empty(shape, dtype)))
            got = pmrisk.margin(**book, model=model, risk_vectors=rv)
        _same(got, want)
        if rv:
            assert got.risk_vectors.equals(want.risk_vectors)

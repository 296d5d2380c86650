"""The engine's fused phase kernels (:mod:`pmrisk.kernel.assemble`) against their numpy twins
in ``tests/oracles.py``, on books drawn by hypothesis, over random selections of rows: the
selected rows agree with the oracle, the others are not touched."""

import dataclasses
import warnings

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
import pmrisk
from pmrisk.engine import core as engine
from pmrisk import samples
from pmrisk.io.book import load_book
from pmrisk.kernel import assemble

RTOL = 1e-12
SENTINEL = -7.25


def _book(seed, n_accounts, ppa, unds, option_share, inverse_share, preset, orders):
    tables = samples.book(n_accounts=n_accounts, positions_per_account=ppa,
                          underlyings=unds, option_share=option_share,
                          inverse_share=inverse_share, seed=seed)
    vt = tables.pop("valuation_time")
    rng = np.random.default_rng(seed)
    pos = tables["positions"]
    if orders:
        k = rng.choice(pos.num_rows, size=min(orders, pos.num_rows), replace=False)
        tables["open_orders"] = pa.table({
            "account": pos.column("account").take(pa.array(k)),
            "order_id": [f"o{j}" for j in range(len(k))],
            "symbol": pos.column("symbol").take(pa.array(k)),
            "quantity": rng.normal(0, 5, len(k)).round(1) + 0.1,
            "price": np.full(len(k), 0.01)})
    accts = sorted(set(pos.column("account").to_pylist()))
    tables["balances"] = pa.table({
        "account": accts + accts[:1], "asset": ["USDC"] * len(accts) + [unds[0]],
        "amount": list(rng.uniform(-1e5, 1e6, len(accts))) + [-0.5]})
    tables.setdefault("open_orders", None)
    tables.setdefault("reserves", None)
    model = pmrisk.Model.preset(preset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # writeable marks and forwards, as the Monitor holds them: the test moves them
        book = load_book(**tables, model=model, valuation_time=vt).with_own_market()
    return engine.run(book, model), model


books = st.builds(
    _book, seed=st.integers(0, 10_000), n_accounts=st.integers(1, 6), ppa=st.integers(1, 25),
    unds=st.sampled_from([("BTC",), ("ETH",), ("BTC", "ETH"), ("BTC", "ETH", "SOL")]),
    option_share=st.sampled_from([0.0, 0.5, 0.9]),
    inverse_share=st.sampled_from([0.0, 0.5, 1.0]),
    preset=st.sampled_from(["deribit_pme", "span", "standard"]),
    orders=st.integers(0, 6))


def _fresh_outputs(args, n_in, keep=None):
    """The kernel's arguments with every output array replaced by a sentinel-filled copy
    (``keep``: output index -> array it starts from instead, an output also read)."""
    ins = list(args[:n_in])
    outs = []
    for j, a in enumerate(args[n_in:]):
        if keep and j in keep:
            outs.append(keep[j].copy())
        elif isinstance(a, np.ndarray):
            b = np.empty_like(a)
            b[...] = SENTINEL if a.dtype.kind == "f" else -7
            outs.append(b)
        else:
            outs.append(a)
    return ins, outs


def _agree(kernel, oracle, out, name, sel, n_out, *extra, keep=None):
    args = engine.phase_arguments(out, name, *extra)
    n_in = len(args) - n_out
    ins, outs_o = _fresh_outputs(args, n_in, keep)
    oracle(sel, *ins, *outs_o)
    for twin in (kernel, getattr(assemble, kernel.__name__ + "_serial")):
        ins, outs_k = _fresh_outputs(args, n_in, keep)
        twin(sel, *ins, *outs_k)
        _same_outputs(outs_k, outs_o, name)


def _same_outputs(outs_k, outs_o, name):
    for j, (a, b) in enumerate(zip(outs_k, outs_o)):
        if not isinstance(a, np.ndarray):
            continue
        scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(b), b, 0.0))))) \
            if b.size else 1.0
        both_nan = np.isnan(a) & np.isnan(b) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
        diff = np.where(both_nan, 0.0, np.abs(a.astype(float) - b.astype(float)))
        assert (diff <= RTOL * scale).all(), (name, j, float(diff.max()))


def _selection(data, n):
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return np.flatnonzero(mask).astype(np.int64)


@settings(max_examples=25, deadline=None)
@given(book=books, data=st.data())
def test_unit_figures_agree_with_oracle(book, data):
    out, _ = book
    sel = _selection(data, len(out.units))
    _agree(assemble.unit_figures, oracles.unit_figures, out, "unit_figures", sel, 28)


@settings(max_examples=25, deadline=None)
@given(book=books, data=st.data(), own_from_binding=st.booleans())
def test_unit_margins_agree_with_oracle(book, data, own_from_binding):
    out, _ = book
    sel = _selection(data, len(out.units))
    # finite comes in from unit_figures (its positions' figures): some units' flags down
    down = np.array(data.draw(st.lists(st.booleans(), min_size=len(out.units),
                                       max_size=len(out.units))), dtype=bool)
    _agree(assemble.unit_margins, oracles.unit_margins, out, "unit_margins", sel, 10,
           own_from_binding, keep={9: np.where(down, 0.0, out.unit.finite)})


def _read_only(a):
    v = a.view()
    v.flags.writeable = False
    return v


def _tick_arguments(out):
    """unit_tick's arguments on ``out`` with fresh sentinel-filled outputs, wired as the
    engine wires them: unit_margins reads (read-only views of) what unit_figures writes and
    the scenario margin the kernel sets, and both write one ``finite``."""
    figures = engine.phase_arguments(out, "unit_figures")
    margins = engine.phase_arguments(out, "unit_margins", True)
    ins_f, outs_f = _fresh_outputs(figures, len(figures) - 28)
    ins_m, outs_m = _fresh_outputs(margins, len(margins) - 10)
    scen = np.full(len(out.units), SENTINEL)
    written = [(a, b) for a, b in zip(figures[-28:], outs_f) if isinstance(a, np.ndarray)]
    written.append((out.unit.scenario_margin, scen))
    for j, a in enumerate(ins_m):
        for orig, fresh in written:
            if isinstance(a, np.ndarray) and a.shape == orig.shape and \
                    np.shares_memory(a, orig):
                ins_m[j] = _read_only(fresh)
    outs_m[-1] = outs_f[-1]                                     # finite
    return (*ins_f, *outs_f), (*ins_m, *outs_m), outs_f[3], scen


@settings(max_examples=25, deadline=None)
@given(book=books, data=st.data())
def test_unit_tick_agrees_with_oracle(book, data):
    """The fused kernel of a sum-mode tick: the units' figures of unit_figures then
    unit_margins, the positions' values, and no other position figure written."""
    out, _ = book
    sel = _selection(data, len(out.units))
    results = []
    for kernel in (oracles.unit_tick, assemble.unit_tick, assemble.unit_tick_serial):
        figures, margins, worst, scen = _tick_arguments(out)
        kernel(sel, figures, margins, worst, scen)
        results.append(list(figures[-28:]) + list(margins[-10:]) + [scen])
    for got in results[1:]:
        _same_outputs(got, results[0], "unit_tick")
        # model_value ... portfolio_delta; own_loss, mm_contribution, im_contribution
        for a in got[19:26] + got[28 + 6:28 + 9]:
            assert (a == SENTINEL).all()


@settings(max_examples=25, deadline=None)
@given(book=books, data=st.data())
def test_account_figures_agree_with_oracle(book, data):
    out, _ = book
    sel = _selection(data, len(out.book.accounts))
    # the loans' share of IM: binance_um's 0, every other preset's 1, and others
    out.params = dataclasses.replace(out.params, loan_im_factor=data.draw(
        st.sampled_from([0.0, 0.5, 1.0, 2.5])))
    _agree(assemble.account_figures, oracles.account_figures, out, "account_figures", sel, 7)


@settings(max_examples=80, deadline=None)
@given(counts=st.lists(st.integers(0, 4), min_size=1, max_size=12), data=st.data())
def test_largest_units_agree_with_oracle(counts, data):
    """Each account's unit of largest worst case: ties, NaN and accounts without units."""
    ua_start = np.r_[0, np.cumsum(counts)].astype(np.int64)
    cell = st.sampled_from([0.0, 1.0, 2.5, -1.0, np.nan, np.inf])
    worst = np.array(data.draw(st.lists(cell, min_size=int(ua_start[-1]),
                                        max_size=int(ua_start[-1]))), dtype=np.float64)
    sel = _selection(data, len(counts))
    got = assemble.largest_units(sel, ua_start, worst)
    assert got.tolist() == oracles.largest_units(sel, ua_start, worst).tolist()


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.integers(-1, 9), max_size=60))
def test_csr_is_a_stable_counting_sort(keys):
    keys = np.array(keys, dtype=np.int64)
    start, order = assemble.csr(keys, 10)
    s2, o2 = oracles.csr(keys, 10)
    assert start.tolist() == s2.tolist() and order.tolist() == o2.tolist()


@settings(max_examples=15, deadline=None)
@given(book=books, data=st.data())
def test_a_selection_equals_the_whole_run(book, data):
    """compute() on a selection of units and accounts, after the marks of one underlying
    moved, equals a run over everything at the new marks on those rows (the Monitor's tick)."""
    out, model = book
    if out.params.cross_unit == "correlated" or out.layout.excluded_any:
        return
    b = out.book
    und = np.array(b.und_names, dtype=object)[b.und_code]
    moved = data.draw(st.sampled_from(sorted(set(und.tolist()))))
    on = und == moved
    f = data.draw(st.floats(0.8, 1.25))
    b.mark[on] *= f
    b.forward[on] *= f
    whole = engine.run(b, model)
    if len(whole.rev.floored) != len(out.rev.floored) or \
            (whole.rev.floored != out.rev.floored).any():
        return
    units = out.units
    hit = np.array([u == moved for u in units.type_und], dtype=bool)[units.utype]
    uidx = np.flatnonzero(hit)
    acc = np.unique(units.account[uidx])
    rows = np.flatnonzero(und[out.rev.row_instr] == moved)
    engine.compute(out, model, rows=rows, instruments=np.flatnonzero(on), units=uidx,
                   accounts=acc, balances=np.zeros(0, np.int64))
    for part in ("unit", "position", "account"):
        for name, a in vars(getattr(out, part)).items():
            if isinstance(a, np.ndarray):
                w = getattr(getattr(whole, part), name)
                assert np.array_equal(a, w, equal_nan=True), (part, name)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n_instr=st.integers(1, 20), n_pos=st.integers(0, 60))
def test_position_expiry_keys_agree_with_oracle(data, n_instr, n_pos):
    """Perpetuals keyed by instrument, futures and options by expiry; spot undated."""
    kind = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n_instr, max_size=n_instr)),
                    dtype=np.int64)
    expiry = np.array(data.draw(st.lists(st.integers(-10**18, 10**18), min_size=n_instr,
                                         max_size=n_instr)), dtype=np.int64)
    pos_instr = np.array(data.draw(st.lists(st.integers(0, n_instr - 1), min_size=n_pos,
                                            max_size=n_pos)), dtype=np.int64)
    got = assemble.position_expiry_keys(pos_instr, kind, expiry)
    want = oracles.position_expiry_keys(pos_instr, kind, expiry)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()



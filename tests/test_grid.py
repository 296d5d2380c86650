"""The joint stress's grid curves (pmrisk.kernel.grid): against the numpy twin
(oracles.grid_curves), and to the bit against what they replace (instrument_pnl on the grid and
pricing_constants), whatever the rows written, the form (parallel or serial) and the cells
priced once (a tail node on a shell node is a copy)."""

from types import SimpleNamespace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import oracles
from pmrisk import kernel as K
from pmrisk.engine.correlated import make_grid
from pmrisk.kernel.instruments import INVERSE, OPTION
from pmrisk.kernel.grid import grid_curves, grid_curves_serial
from pmrisk.kernel.joint import pricing_constants
from test_kernels import assert_close, pnl_magnitude, random_instruments

INSTR = ("kind", "settlement", "contract_size", "mark", "forward", "strike", "is_call",
         "t_now", "t_scen", "sig_mark", "sig_up", "sig_same", "sig_down", "und")


def random_grid(rng, n_und, tails):
    """A model's grid over ``n_und`` underlyings (random ranges, nodes and tail multiples;
    multiples of 1, 2 and 3 put tail nodes on shell nodes)."""
    pr = rng.choice([0.15, 0.18, 0.25, rng.uniform(0.05, 0.3)], n_und)
    mult = rng.choice([1.0, 2.0, 3.0, rng.uniform(0.5, 3.0)], n_und)
    params = [dict(price_range=float(p), extreme_multiple=float(m))       # tails above -100%
              for p, m in zip(pr, np.minimum(mult, 0.95 / pr))]
    model = dict(joint_grid_nodes=int(rng.integers(2, 12)), extreme_scenarios=tails,
                 tail_mode="joint")
    return make_grid(params, model)


def kernel_args(instr, grid):
    cols = tuple(instr[k] for k in INSTR)
    return cols, instr["rate"], (grid.n_scen, grid.shock, grid.log1p, grid.vol_code, grid.src)


def replaced(instr, grid):
    """What the grid curves replace: instrument_pnl on the grid (pnl scale 1) and
    pricing_constants."""
    cols, rate, _ = kernel_args(instr, grid)
    one = np.ones_like(grid.shock)
    curve = K.instrument_pnl(*cols, rate, grid.n_scen, grid.shock, grid.log1p,
                             grid.vol_code, one, one)
    return pricing_constants(*cols[:13], rate), curve


def bits(a):
    return np.ascontiguousarray(a).view(np.int64)


@given(seed=st.integers(0, 2**32 - 1), n_instr=st.integers(0, 40), n_und=st.integers(1, 4),
       tails=st.booleans(), rate=st.sampled_from([0.0, 0.05]), serial=st.booleans())
def test_grid_curves_match_twin_and_instrument_pnl(seed, n_instr, n_und, tails, rate, serial):
    rng = np.random.default_rng(seed)
    instr = random_instruments(rng, n_instr, n_und, rate)
    grid = random_grid(rng, n_und, tails)
    cols, rate, cells = kernel_args(instr, grid)
    # written at drawn rows of a larger output, the others left alone
    n_out = n_instr + 3
    rows = rng.permutation(n_out)[:n_instr].astype(np.int64)
    width = grid.shock.shape[1]
    const, curve = np.full((n_out, 6), 7.0), np.full((n_out, width), 7.0)
    (grid_curves_serial if serial else grid_curves)(rows, *cols, rate, *cells, const, curve)
    want_const, want_curve = np.full((n_out, 6), 7.0), np.full((n_out, width), 7.0)
    oracles.grid_curves(rows, *cols, rate, *cells, want_const, want_curve)
    magnitude = np.zeros((n_out, width))      # what rounding errors scale with
    magnitude[rows] = pnl_magnitude(
        instr, SimpleNamespace(price_shock=grid.shock, pnl_scale=np.ones_like(grid.shock)))
    assert_close(curve, want_curve, magnitude, what="grid curves")
    # an option's value at the marks to the scale of max(F, K) (/ F if inverse)
    scale = np.maximum(instr["forward"], instr["strike"])
    scale = np.where(instr["settlement"] == INVERSE, scale / instr["forward"], scale)
    const_mag = np.abs(want_const) + 1e-300
    const_mag[rows, 0] += np.where(instr["kind"] == OPTION, scale, 0.0)
    assert_close(const, want_const, const_mag, what="pricing constants")
    # to the bit what instrument_pnl and pricing_constants give
    old_const, old_curve = replaced(instr, grid)
    assert np.array_equal(bits(curve[rows]), bits(old_curve))
    assert np.array_equal(bits(const[rows]), bits(old_const))
    untouched = np.setdiff1d(np.arange(n_out), rows)
    assert (curve[untouched] == 7.0).all() and (const[untouched] == 7.0).all()


def test_tail_nodes_on_shell_nodes_are_copies():
    """With an extreme multiple of 2, every other tail node is a shell node (vol same): priced
    once, copied bit for bit, and the other cells are their own."""
    grid = make_grid([dict(price_range=0.15, extreme_multiple=2.0)],
                     dict(joint_grid_nodes=8, extreme_scenarios=True, tail_mode="joint"))
    ns, tail0 = int(grid.n_scen[0]), grid.tail0
    src = grid.src[0, :ns]
    copies = np.flatnonzero(src != np.arange(ns))
    assert (copies >= tail0).all() and len(copies) == 2 * 8 + 1
    assert (grid.shock[0, src] == grid.shock[0, :ns]).all()
    assert (grid.vol_code[0, src] == grid.vol_code[0, :ns]).all()
    instr = random_instruments(np.random.default_rng(5), 30, 1)
    cols, rate, cells = kernel_args(instr, grid)
    const, curve = np.zeros((30, 6)), np.zeros((30, grid.shock.shape[1]))
    grid_curves(np.arange(30, dtype=np.int64), *cols, rate, *cells, const, curve)
    assert np.array_equal(bits(curve[:, copies]), bits(curve[:, src[copies]]))
    assert np.array_equal(bits(curve), bits(replaced(instr, grid)[1]))


def test_many_rows_in_interleaved_blocks():
    """More rows than the kernel's blocks (rows dealt to the threads interleaved), options and
    futures in runs: every row the bits of instrument_pnl, in both forms."""
    from pmrisk.kernel.grid import BLOCKS
    rng = np.random.default_rng(11)
    n = 5 * BLOCKS + 7
    instr = random_instruments(rng, n, 3, 0.05)
    order = np.argsort(instr["kind"] == OPTION, kind="stable")     # futures first, then options
    instr = {k: (v[order] if isinstance(v, np.ndarray) else v) for k, v in instr.items()}
    grid = random_grid(rng, 3, True)
    cols, rate, cells = kernel_args(instr, grid)
    want_const, want_curve = replaced(instr, grid)
    rows = rng.permutation(n).astype(np.int64)
    for form in (grid_curves, grid_curves_serial):
        const, curve = np.zeros((n, 6)), np.zeros((n, grid.shock.shape[1]))
        form(rows, *cols, rate, *cells, const, curve)
        assert np.array_equal(bits(curve[rows]), bits(want_curve))
        assert np.array_equal(bits(const[rows]), bits(want_const))


@given(seed=st.integers(0, 2**32 - 1), serial=st.booleans(),
       odd=st.sampled_from([0.0, 1e-13, 1e-12, np.nextafter(1e-12, 0.0), np.inf, np.nan]),
       state=st.sampled_from(["sig_up", "sig_same", "sig_down"]))
def test_options_off_the_formula_branch(seed, serial, odd, state):
    """An option whose sigma*sqrt(T) in one vol state is 0, tiny, at the ``MIN_STDDEV`` edge,
    infinite or NaN is priced cell by cell on black-76's own branches: the bits of
    instrument_pnl (NaN where it gives NaN), and its other rows are unchanged."""
    rng = np.random.default_rng(seed)
    n = 12
    instr = random_instruments(rng, n, 2, 0.05)
    instr["kind"][:] = OPTION
    instr["t_scen"][:] = rng.uniform(0.01, 1.0, n)
    odd_rows = rng.random(n) < 0.5
    instr[state] = np.where(odd_rows, odd / np.sqrt(instr["t_scen"]), instr[state])
    grid = random_grid(rng, 2, True)
    cols, rate, cells = kernel_args(instr, grid)
    want_const, want_curve = replaced(instr, grid)
    const, curve = np.zeros((n, 6)), np.zeros((n, grid.shock.shape[1]))
    (grid_curves_serial if serial else grid_curves)(np.arange(n, dtype=np.int64), *cols, rate,
                                                    *cells, const, curve)
    assert np.array_equal(curve, want_curve, equal_nan=True)
    assert np.array_equal(bits(curve)[~np.isnan(curve)], bits(want_curve)[~np.isnan(curve)])
    assert np.array_equal(const, want_const, equal_nan=True)

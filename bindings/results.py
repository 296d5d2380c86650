"""Arrow result tables from an engine :class:`~pmrisk.engine.core.Outcome`."""

import functools
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

from pmrisk.kernel import tables as tables_k
from pmrisk.kernel.scenarios import TABLES, VOL_STATES

from .blocks import pool_array
from .io.arrow import iso_ns, kernel_args, name_buffers, str_buffers, sum_by
from .errors import MarginError
from .io.schema import TIME_TYPE

UNALLOCATED = "unallocated"


@dataclass
class MarginResult:
    """Result tables of :func:`pmrisk.margin` (each a ``pyarrow.Table``).

    ``accounts``: one row per account (USD); ``units``: one row per (account, risk unit);
    ``positions``: one row per position plus ``unallocated`` rows.  Risk vectors, long format,
    only when asked for (else ``None``): ``unit_risk_vectors`` per unit and scenario (raw and
    weighted), ``position_risk_vectors`` per position and scenario (with
    ``risk_vectors="positions"``), and ``risk_vectors``: the unit table, or the position
    table when ``risk_vectors="positions"``.  ``timings``: seconds per stage.

    Examples
    --------
    >>> import pmrisk
    >>> from pmrisk import samples
    >>> r = pmrisk.margin(**samples.demo_book(), model="deribit_pme")
    >>> r
    MarginResult(accounts=6 rows, units=8 rows, positions=26 rows)
    >>> r.accounts.select(["account", "status"]).slice(0, 2).to_pylist()
    [{'account': 'hedged-calendar', 'status': 'normal'},
     {'account': 'directional', 'status': 'warning_1'}]
    >>> sorted(r.timings)
    ['compute', 'tables', 'total', 'validate']
    """
    accounts: pa.Table
    units: pa.Table
    positions: pa.Table
    risk_vectors: pa.Table = None
    unit_risk_vectors: pa.Table = None
    position_risk_vectors: pa.Table = None
    timings: dict = None
    correlation: object = None

    def __repr__(self):
        rows = ", ".join(f"{n}={getattr(self, n).num_rows} rows"
                         for n in ("accounts", "units", "positions")
                         if getattr(self, n) is not None)
        return f"MarginResult({rows})"


def table_of(columns):
    """``pyarrow.table(columns)`` for a dict of Arrow arrays and 1-d numpy arrays, by
    ``Table.from_arrays`` (the dict path converts each column through pandas' type checks:
    several times slower for a few rows).  Same types: numpy float64 stays float64 with NaN
    as a value, not a null."""
    return pa.Table.from_arrays(
        [c if isinstance(c, (pa.Array, pa.ChunkedArray)) else pa.array(c)
         for c in columns.values()], names=list(columns))


def status_of(ratio, thresholds):
    """Status from the margin ratio: >= the first warning level is ``normal``;
    below warning level k, ``warning_k``; below ``margin_call``, ``margin_call``; below
    ``liquidation``, ``liquidation``.

    >>> import numpy as np
    >>> from pmrisk.results import status_of
    >>> status_of(np.array([1.1, 1.0999, 1.0, 0.9999, 0.75, 0.7]),
    ...           {"warning": [1.10, 1.05, 1.01], "margin_call": 1.0, "liquidation": 0.75})
    ['normal', 'warning_1', 'warning_3', 'margin_call', 'margin_call', 'liquidation']
    """
    levels = list(thresholds["warning"]) + [thresholds["margin_call"], thresholds["liquidation"]]
    names = ["normal"] + [f"warning_{k + 1}" for k in range(len(thresholds["warning"]))] + [
        "margin_call", "liquidation"]
    return _names(names, _bands(ratio, levels)).to_pylist()


def _bands(ratio, levels):
    """Number of levels each ratio is below (levels strictly decrease)."""
    below = np.zeros(len(ratio), dtype=np.int64)
    for lv in levels:
        below += ratio < lv
    return below


def status_array(ratio, thresholds):
    levels = list(thresholds["warning"]) + [thresholds["margin_call"], thresholds["liquidation"]]
    return _names(_status_names(len(thresholds["warning"])), _bands(ratio, levels))


@functools.lru_cache(maxsize=16)
def _status_names(n_warning):
    return ("normal",) + tuple(f"warning_{k + 1}" for k in range(n_warning)) + (
        "margin_call", "liquidation")


def _names(names, codes):
    return _take(_name_array(tuple(names)), codes)


@functools.lru_cache(maxsize=64)
def _name_array(names):
    return pa.array(names, pa.string())


def _one_chunk(arr):
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _take(arr, idx):
    """``arr.take(idx)``; a few consecutive indices (a table of one or a few rows) as a slice
    of ``arr``, the same values at a fraction of a take's fixed cost."""
    idx = np.asarray(idx, np.int64)
    n = len(idx)
    if 0 < n <= SLICE_MAX:
        at = idx.tolist()
        if 0 <= at[0] and at[-1] < len(arr) and at == list(range(at[0], at[0] + n)):
            return arr.slice(at[0], n)
    if n > GATHER_ROWS:
        return _strings(arr, idx)
    return arr.take(pa.array(idx, pa.int64()))


SLICE_MAX = 16          # _take: at most this many indices are checked for a run


def describe(unit_name, table, shock, vol_state):
    return f"{unit_name} {table} {shock:+.2%} vol {vol_state}"


TABLE_NAMES = ("accounts", "units", "positions")
# the figures check_finite looks at: (part of the outcome, field, in words)
_POSITION_OUT = tuple(("position", f, w) for f, w in (
    ("value", "value"), ("model_value", "model value"), ("unrealised_pnl", "unrealised P&L"),
    ("mm_contribution", "maintenance margin contribution"),
    ("im_contribution", "initial margin contribution"), ("delta", "Greeks"),
    ("gamma", "Greeks"), ("vega", "Greeks"), ("theta", "Greeks")))
_UNIT_OUT = tuple(("unit", f, w) for f, w in (
    ("worst_case", "worst case"), ("roll_shock", "roll shock"),
    ("delta_shock", "delta shock"), ("short_option_minimum", "short option minimum"),
    ("open_orders_margin", "open orders margin"), ("mmp_margin", "MMP margin"),
    ("scenario_margin", "scenario margin"), ("excluded_margin", "excluded margin"),
    ("risk_matrix_margin", "risk matrix margin"), ("maintenance_margin", "maintenance margin"),
    ("initial_margin", "initial margin"), ("delta", "Greeks"), ("gamma", "Greeks"),
    ("vega", "Greeks"), ("theta", "Greeks")))
_ACCOUNT_OUT = tuple(("account", f, w) for f, w in (
    ("equity", "equity"), ("actual_equity", "actual equity"),
    ("loan_maintenance_margin", "loan maintenance margin"),
    ("maintenance_margin", "maintenance margin"), ("initial_margin", "initial margin"),
    ("scenario_margin", "scenario margin")))


def _not_finite(out, fields):
    """(mask of the rows where any of ``fields`` is not finite, the first such field's
    name in words)."""
    bad, what = None, None
    for part, f, words in fields:
        v = np.asarray(getattr(getattr(out, part), f))
        b = ~np.isfinite(v)
        if what is None and b.any():
            what = words
        bad = b if bad is None else bad | b
    return bad, what


def all_finite(out, units=None, accounts=None):
    """Whether every figure of the units ``units`` (with their positions) and the accounts
    ``accounts`` (index arrays; None: all) is finite, from the flags the phase kernels set:
    O(units + accounts), the check of a Monitor tick on its selection."""
    u = out.unit.finite if units is None else out.unit.finite[units]
    a = out.account.finite if accounts is None else out.account.finite[accounts]
    return tables_k.every_flag_set(*kernel_args(u, a))


def check_finite(out):
    """Raise :class:`~pmrisk.MarginError` when any per-position, per-unit or per-account
    figure of an engine outcome is not a finite number (an overflow, never a status),
    naming the input rows that produced it: the positions of the figure (of its unit, of
    its account), else the unit's open orders or reserves, else the account's balances.

    Input columns are bounded at validation (``pmrisk.io.arrow.MAX_ABS``), so this is the
    net under what the bounds do not cover (model parameters, a kernel's edge cases).  It
    reads the finiteness flags the phase kernels set (:func:`all_finite`, O(units +
    accounts)) and searches the arrays for the rows to name only when one is down."""
    if all_finite(out):
        return
    book, units = out.book, out.units
    pos_bad, p_what = _not_finite(out, _POSITION_OUT)
    unit_bad, u_what = _not_finite(out, _UNIT_OUT)
    acc_bad, a_what = _not_finite(out, _ACCOUNT_OUT)
    if not (pos_bad.any() or unit_bad.any() or acc_bad.any()):
        return
    what = p_what or u_what or a_what
    bad_acc = acc_bad.copy()
    bad_acc[units.account[unit_bad]] = True
    pos_unit = np.asarray(out.pos_unit, dtype=np.int64)
    mask = pos_bad | (unit_bad[pos_unit] if len(pos_unit) else pos_bad) | \
        (bad_acc[book.pos_account] if len(pos_unit) else pos_bad)
    # positions first; then the open orders and reserves of a bad unit; then balances
    unit_key = {(int(a), int(t)) for a, t in zip(units.account[unit_bad], units.utype[unit_bad])}
    cands = [("positions", "quantity", ("account", "symbol"), mask, book.pos_account,
              lambda i: book.symbols[int(book.pos_instr[i])].as_py())]
    if book.ord_account is not None and len(book.ord_account):
        itype = np.asarray(out.instr_type, dtype=np.int64)
        om = np.array([(int(a), int(itype[i])) in unit_key for a, i in
                       zip(book.ord_account, book.ord_instr)], dtype=bool)
        cands.append(("open_orders", "quantity", ("account", "order_id"), om, book.ord_account,
                      lambda i: book.ord_id[int(i)].as_py()))
    if book.res_account is not None and len(book.res_account):
        code = {n: k for k, n in enumerate(units.type_names)}
        rm = np.array([(int(a), code.get(u, -1)) in unit_key for a, u in
                       zip(book.res_account, book.res_unit)], dtype=bool)
        cands.append(("reserves", "unit", ("account", "unit"), rm, book.res_account,
                      lambda i: book.res_unit[int(i)]))
    if book.bal_account is not None and len(book.bal_account):
        cands.append(("balances", "amount", ("account", "asset"),
                      bad_acc[book.bal_account], book.bal_account,
                      lambda i: book.bal_asset[int(i)]))
    hit = next((c for c in cands if c[3].any()), None)
    if hit is not None:
        table, column, keys, m, acc_of, second = hit
        idx = np.flatnonzero(m)
        rows = []
        for i in idx[:5]:
            a = int(acc_of[i])
            row = (book.accounts[a].as_py(), second(i))
            if book.timed:
                row += (iso_ns(book.snap_ns[book.acc_snap[a]]),)
            rows.append(row)
        keys = keys + (("time",) if book.timed else ())
    else:                                   # no input row to name: the accounts
        table, column, keys = "positions", "account", ("account",)
        idx = np.flatnonzero(bad_acc)
        rows = [(book.accounts[int(a)].as_py(),) for a in idx[:5]]
    raise MarginError(table, column, f"inputs whose margin figures are finite numbers, but "
                      f"the {what} of these rows is not (float64 overflow)", rows=rows,
                      keys=keys, n_bad=len(idx),
                      hint="Check the magnitudes of these rows' quantities, prices and "
                      "contract sizes, and the model's parameters for their underlyings")



def risk_vectors_mode(value):
    """The one reading of a ``risk_vectors`` argument: ``False`` (none), ``True`` or
    ``"units"`` (per unit: ``True``), ``"positions"`` (per unit and per position); anything
    else is a :class:`MarginError`.

    >>> from pmrisk.results import risk_vectors_mode
    >>> risk_vectors_mode("units"), risk_vectors_mode("positions"), risk_vectors_mode(False)
    (True, 'positions', False)
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value in ("units", "positions"):
        return True if value == "units" else value
    raise MarginError("arguments", "risk_vectors", "False, True, \"units\" (True) or "
                      f"\"positions\", got {value!r}")


def build(out, model, risk_vectors=False, tables=TABLE_NAMES):
    """The result tables of ``out``; only those named in ``tables`` are built (the others are
    ``None``: a long backtest that needs only the accounts skips the per-position table)."""
    check_finite(out)
    if risk_vectors and out.layout.brackets is not None:
        raise MarginError("arguments", "risk_vectors", "False under a model with "
                          "margin_rules = \"brackets\" (binance_um): brackets have no "
                          "scenarios, so there are no risk vectors")
    book, units = out.book, out.units
    unit_names = _names(units.type_names, units.utype)
    loans = loan_rows(out)
    accounts_t = accounts_table(out, model)
    units_t = _units_table(out, unit_names) if "units" in tables else None
    positions_t = _positions_table(out, loans) if "positions" in tables else None
    urv = _unit_risk_vectors(out, unit_names) if risk_vectors else None
    prv = _position_risk_vectors(out, unit_names) if risk_vectors == "positions" else None
    if book.timed:
        # the snapshot of every row, as a `time` column after `account`; rows by snapshot
        acc_snap = book.acc_snap
        accounts_t = _timed(accounts_t, book, acc_snap)
        if urv is not None:
            urv = _timed(urv, book, acc_snap[units.account][_rv_units(out)])
        if prv is not None:
            prv = _timed(prv, book, acc_snap[book.pos_account][_rv_positions(out)], sort=True)
    return MarginResult(accounts=accounts_t, units=units_t, positions=positions_t,
                        risk_vectors=prv if prv is not None else urv, unit_risk_vectors=urv,
                        position_risk_vectors=prv, correlation=out.correlation)


def _units_table(out, unit_names):
    """One row per (account, unit); in a timed book, with a ``time`` column after
    ``account``."""
    book, units, scen, uf = out.book, out.units, out.scen, out.unit
    n = len(units)
    block, block_buf = pool_array((len(tables_k.UNIT_BLOCK), n), np.float64)
    codes = np.empty((2, n), dtype=np.int64)
    timed = book.timed
    ns, ns_buf = pool_array((n if timed else 0,), np.int64)
    n_nan = _parallel(tables_k.unit_block, n, UNIT_PARALLEL_ROWS)(*kernel_args(
        units.utype, units.type_und_code, uf.binding_scenario, scen.price_shock, scen.table,
        scen.vol_code, units.index_px, units.settle_px, uf.scenario_price_shock,
        *[getattr(uf, f) for f in tables_k.UNIT_FIGURES],
        *[getattr(uf, f) for f in tables_k.UNIT_GREEKS], units.account,
        book.acc_snap if timed else _NONE, book.snap_ns if timed else _NONE),
        block, codes, ns)
    num = block_arrays(block_buf, *block.shape)
    cols = [_take(book.accounts, units.account)]
    if timed:
        cols.append(pa.Array.from_buffers(TIME_TYPE, n, [None, ns_buf]))
    spx = num[3]
    if n_nan:       # not part of the account's scenario (cross_unit="correlated"): null
        spx = pa.array(block[3], pa.float64(), mask=np.isnan(block[3]))
    binding = [_index(kernel_args(uf.binding_scenario)[0]), _names(TABLES, codes[0]), num[2],
               _names(VOL_STATES, codes[1])]
    if out.layout.brackets is not None:         # brackets have no scenarios: no binding cell
        binding = [pa.nulls(n, col.type) for col in binding]
    cols += [unit_names, _names(units.type_und, units.utype),
             _names(units.type_ccy, units.utype), num[0], num[1], *binding, spx,
             _vol_states(uf.scenario_vol_state), *num[4:]]
    names = _UNIT_NAMES_TIMED if timed else _UNIT_NAMES
    if out.okx is not None:             # okx_pm: OKX's risk-unit figures (USD)
        ox = out.okx
        cols += [pa.array(c) for c in [ox.charges[:, k] for k in range(6)] + [
            ox.mr7, ox.charges[:, 6], ox.mr8, ox.mr9, ox.mmr, ox.imr]]
        names = names + _OKX_UNIT_NAMES
        # OKX's delta in USD in the place of the Greek's
        cols[names.index("delta_usd")] = pa.array(ox.charges[:, 7])
    return pa.Table.from_arrays(cols, names=list(names))


_UNIT_NAMES = ("account", "unit", "underlying", "settlement_currency", "index_price",
               "settlement_price_usd", "binding_scenario", "binding_table",
               "binding_price_shock", "binding_vol_state", "scenario_price_shock",
               "scenario_vol_state") + tables_k.UNIT_COLUMNS
_UNIT_NAMES_TIMED = ("account", "time") + _UNIT_NAMES[1:]
_OKX_UNIT_NAMES = ("mr1", "mr2", "mr3", "mr4", "mr5", "mr6", "mr7", "mr7_raw", "mr8", "mr9",
                   "mmr", "imr")


def _vol_states(code):
    """Vol state names of ``code`` (-1: null)."""
    if not len(code) or code.min() >= 0:
        return _names(VOL_STATES, code)
    return _name_array(VOL_STATES).take(pa.array(code, pa.int64(), mask=code < 0))


def loan_rows(out):
    """The accounts that have a ``loans`` row in the positions table: the loans' MM or IM
    above 0 (okx_pm with ``borrow_mmr = 0`` still counts ``borrow_imr`` in IM: the row
    carries it, so the contributions sum to the IM)."""
    af = out.account
    return np.unique(np.concatenate([tables_k.positive_rows(*kernel_args(a)) for a in (
        af.loan_maintenance_margin, af.loan_initial_margin)]))


def _positions_table(out, loans):
    """Positions, then one ``unallocated`` row per unit, then one per account with loans;
    in a timed book, with a ``time`` column after ``account`` and the rows stably ordered by
    snapshot (built in that order: no take of the whole table)."""
    book, units, uf, pf = out.book, out.units, out.unit, out.position
    n_types = len(units.type_names)
    acc_snap, snap_ns = (book.acc_snap, book.snap_ns) if book.timed else (_NONE, _NONE)
    pu = out.pos_unit
    n = len(pu) + len(units) + len(loans)
    index, _ = pool_array((4, n), np.int64)
    ns, ns_buf = pool_array((n if book.timed else 0,), np.int64)
    one_account, one_name = _parallel(tables_k.position_index, n)(*kernel_args(
        book.pos_account, book.pos_instr, pu, units.account, units.utype, loans, acc_snap,
        snap_ns), len(book.symbols), n_types, index, ns)
    rows, acc, sym, name = index
    block, block_buf = pool_array((len(tables_k.POSITION_COLUMNS), n), np.float64)
    _parallel(tables_k.position_columns, n)(*kernel_args(
        rows, pu, book.quantity, units.settle_px, pf.value, pf.model_value, pf.unrealised_pnl,
        pf.delta, pf.gamma, pf.vega, pf.theta, pf.mm_contribution, pf.im_contribution,
        uf.maintenance_margin, uf.initial_margin, out.account.loan_maintenance_margin[loans],
        out.account.loan_initial_margin[loans]), block)
    cols = [_strings(book.accounts, acc, one=one_account)]
    names = ["account"]
    if book.timed:
        cols.append(pa.Array.from_buffers(TIME_TYPE, n, [None, ns_buf]))
        names.append("time")
    symbols = _strings(book.symbols, sym, (UNALLOCATED,))
    cols += [symbols,
             _strings(_name_array(tuple(units.type_names)), name, ("loans",), one_name)]
    names += ["symbol", "unit"]
    cols += block_arrays(block_buf, *block.shape)
    names += tables_k.POSITION_COLUMNS
    if out.layout.brackets is not None:         # margin_rules "brackets" (binance_um)
        for n, col in _bracket_columns(out, len(units) + len(loans)).items():
            cols.append(col.take(pa.array(rows, pa.int64())) if book.timed else col)
            names.append(n)
    return pa.Table.from_arrays(cols, names=names)


_NONE = np.zeros(0, dtype=np.int64)


def _parallel(kernel, n, at=None):
    """The parallel form of a tables kernel for a table of ``n`` rows from ``at``
    (:data:`PARALLEL_ROWS`) up (on more than one thread), else its ``_serial`` twin."""
    if n >= (PARALLEL_ROWS if at is None else at) and numba.get_num_threads() > 1:
        return kernel
    return _SERIAL[kernel]


_SERIAL = {k: getattr(tables_k, k.__name__ + "_serial") for k in (
    tables_k.unit_block, tables_k.position_index, tables_k.position_columns,
    tables_k.string_offsets, tables_k.gather_strings)}


# from this many rows, the parallel forms: a parallel region saves about half of a few ms
# on a quiet machine, and costs up to a scheduler quantum (several ms) where other
# processes keep the cores busy; a string column takes three regions (offsets in two
# passes, then the bytes), ~10 ms on one thread at 1.2M rows and 6-7 ms on two
# (backtest-100k's positions table: its three string columns 31 -> 19 ms a call)
PARALLEL_ROWS = 1 << 19
# the units table's block from this many units: 34 rows written per unit, ~130 ns a unit
# on one thread inside a backtest's call (backtest-100k's 200,000 units: 26 ms), well
# above a quantum
UNIT_PARALLEL_ROWS = 1 << 17
STRING_PARALLEL_ROWS = 1 << 20


def block_arrays(buf, k, n):
    """The ``k`` rows of a C-contiguous (k, n) float64 block in Arrow buffer ``buf`` as
    Arrow arrays: one array over the whole block, sliced (a slice costs less than an
    array)."""
    flat = pa.Array.from_buffers(pa.float64(), k * n, [None, buf])
    return [flat.slice(j * n, n) for j in range(k)]


def _strings(arr, rows, extra=(), one=False):
    """The strings ``rows`` of the string array ``arr`` (``extra``: names after its own;
    ``one``: every row is the same).

    Gathered by kernels and wrapped without a copy: up to :data:`GATHER_ROWS` rows,
    :func:`pmrisk.kernel.tables.take_strings` (inside ``margin()``, after the compute stage,
    pyarrow's ``take`` and ``repeat`` cost 40-140 us each on 2,000 rows: their code is
    cold; the kernel ~15); above, :func:`~pmrisk.kernel.tables.string_offsets` and
    :func:`~pmrisk.kernel.tables.gather_strings` into blocks of
    :data:`pmrisk.blocks.BLOCKS`, on the threads from :data:`STRING_PARALLEL_ROWS` rows
    (pyarrow's take is one thread into fresh memory: 1.2M rows ~7 ms and the pages).
    One string repeated (``one``, one account's positions): its bytes repeated, no gather.
    Not a ``string`` array (or 2 GiB of text and more): pyarrow's take."""
    n = len(rows)
    arr = _one_chunk(arr)
    if arr.type == pa.string():
        if one and n and not arr.null_count and int(rows[0]) < len(arr):
            offsets, data = str_buffers(arr)        # one string n times: no per-row work
            r = int(rows[0])
            word = data[offsets[r]:offsets[r + 1]].tobytes()
            if len(word) * n < 1 << 31:
                return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(
                    np.arange(n + 1, dtype=np.int32) * len(word)), pa.py_buffer(word * n)])
        bufs = (*str_buffers(arr), *name_buffers(tuple(extra)))
        if n <= GATHER_ROWS:
            offsets, data = tables_k.take_strings(*bufs, *kernel_args(rows))
            return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                          pa.py_buffer(data)])
        rows, = kernel_args(rows)
        offsets, off_buf = pool_array((n + 1,), np.int32)
        total = _parallel(tables_k.string_offsets, n, STRING_PARALLEL_ROWS)(
            bufs[0], bufs[2], rows, offsets)
        if total < 1 << 31:
            data, data_buf = pool_array((total,), np.uint8)
            _parallel(tables_k.gather_strings, n, STRING_PARALLEL_ROWS)(*bufs, rows, offsets,
                                                                        data)
            return pa.Array.from_buffers(pa.string(), n, [None, off_buf, data_buf])
    if one and n:                       # one string repeated (one account)
        r = int(rows[0])
        return pa.repeat(arr[r] if r < len(arr) else extra[r - len(arr)], n)
    if extra:
        arr = pa.concat_arrays([arr, _name_array(tuple(extra))])
    return arr.take(_index(rows))


GATHER_ROWS = 1 << 16   # _strings: up to this many rows, the kernel gather


def _index(rows):
    """An int64 numpy array as an Arrow array, zero-copy."""
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


def _bracket_columns(out, n_other):
    """The positions table's bracket columns (:func:`pmrisk.engine.binance.position_columns`),
    null on the ``unallocated`` rows."""
    from .engine.binance import position_columns
    cols = {}
    for name, v in position_columns(out).items():
        arr = v if isinstance(v, pa.Array) else pa.array(v)
        cols[name] = pa.concat_arrays([arr, pa.nulls(n_other, arr.type)])
    return cols


def margin_ratio(equity, mm):
    """Margin ratio as the accounts table shows it: equity / MM, ``inf`` (``-inf`` for
    negative equity) when MM = 0.

    >>> import numpy as np
    >>> from pmrisk.results import margin_ratio
    >>> margin_ratio(np.array([2.0, 1.0, -1.0]), np.array([1.0, 0.0, 0.0])).tolist()
    [2.0, inf, -inf]
    """
    e, m = np.broadcast_arrays(np.asarray(equity, dtype=np.float64),
                               np.asarray(mm, dtype=np.float64))
    out = tables_k.margin_ratios(np.ascontiguousarray(e.ravel()), np.ascontiguousarray(m.ravel()))
    return out.reshape(e.shape)


def _describe_units(out, acc, every):
    """Per account of ``acc`` (every account when ``every``), its largest unit's binding
    cell in words ("BTC/BTC standard -16.00% vol up"): formatted once per distinct (unit
    type, cell), not once per account (:func:`pmrisk.kernel.tables.account_cells`)."""
    units, scen, uf = out.units, out.scen, out.unit
    ua_start = out.layout.ua_start
    if ua_start is None:
        ua_start = np.searchsorted(units.account, np.arange(len(out.book.accounts) + 1))
    width = scen.price_shock.shape[1]
    code = np.empty(len(ua_start) - 1 if every else len(acc), dtype=np.int64)
    acc, ua_start, worst, px, excl, binding, utype = kernel_args(
        acc, ua_start, uf.worst_case, units.settle_px, uf.excluded_margin,
        uf.binding_scenario, units.utype)
    cells = tables_k.account_cells(acc, every, ua_start, worst, px, excl,
                                   bool(excl.any()), binding, utype, width, code)
    texts = ["none", "excluded positions only (SPAN standalone)"]
    for k in cells.tolist():
        t, c = divmod(k, width)
        r = units.type_und_code[t]
        texts.append(describe(units.type_names[t], TABLES[scen.table[r, c]],
                              scen.price_shock[r, c], VOL_STATES[scen.vol_code[r, c]]))
    return _names(texts, code)


def accounts_table(out, model, acc=None, ratio=None):
    """The accounts table of ``out``, or its rows for accounts ``acc`` (sorted indices;
    ``ratio``: their margin ratios if already known), without building the others."""
    book, units, af = out.book, out.units, out.account
    n_acc = len(book.accounts)
    every = acc is None
    idx = _NONE if every else np.asarray(acc, dtype=np.int64)
    n = n_acc if every else len(idx)
    th = model["thresholds"]
    block, block_buf = pool_array((len(tables_k.ACCOUNT_BLOCK), n), np.float64)
    band = np.empty(n, dtype=np.int64)
    tables_k.account_block(*kernel_args(idx), every, *kernel_args(
        af.equity, af.actual_equity, af.maintenance_margin, af.initial_margin,
        af.liquidation_cost, af.scenario_margin, af.loan_maintenance_margin),
        float(min(th["warning"])), _levels(th), block, band)
    num = block_arrays(block_buf, *block.shape)
    if ratio is None:
        ratio, status = num[6], _names(_status_names(len(th["warning"])), band)
    else:
        status = status_array(ratio, th)
    if af.worst_scenario is not None:
        sel = slice(None) if every else idx
        excl = out.unit.excluded_margin
        # whole columns, no Python per account (100,000 accounts: 19 -> 9 ms)
        desc = np.array(af.worst_scenario[sel], dtype=object)      # a copy
        desc[~(af.scenario_margin[sel] > 0)] = "none"
        if excl.any():
            acc_excl = sum_by(units.account, weights=excl * units.settle_px,
                              minlength=n_acc)[sel]
            desc[(acc_excl > 0) & (desc == "none")] = \
                "excluded positions only (SPAN standalone)"
        desc = pa.array(desc, pa.string())
    else:
        desc = _describe_units(out, idx, every)
    # used margin is IM's
    table = pa.Table.from_arrays([
        book.accounts if every else _take(book.accounts, idx), num[0], num[1], num[2],
        num[3], num[3], num[4], num[5], ratio, status, desc, num[7], num[8]],
        names=_ACCOUNT_COLUMNS)
    if out.okx is not None:             # okx_pm
        sel = slice(None) if every else idx
        for name in ("derivatives_mmr", "borrow_mmr", "borrow_imr", "liquidation_cost"):
            table = table.append_column(name, pa.array(getattr(out.okx, name)[sel]))
    return table


def _levels(th):
    """The status levels of thresholds ``th`` (warnings, margin call, liquidation), as the
    kernels read them (built once per thresholds)."""
    return _levels_of(tuple(th["warning"]), th["margin_call"], th["liquidation"])


@functools.lru_cache(maxsize=16)
def _levels_of(warning, margin_call, liquidation):
    return kernel_args(np.array(list(warning) + [margin_call, liquidation],
                                dtype=np.float64))[0]


_ACCOUNT_COLUMNS = ["account", "equity", "actual_equity", "maintenance_margin",
                    "initial_margin", "used_margin", "available_margin", "max_withdrawable",
                    "margin_ratio", "status", "worst_scenario", "scenario_margin",
                    "loan_maintenance_margin"]


def _timed(table, book, snap, sort=False):
    """``table`` with a ``time`` column (the snapshot of each row) after ``account``; with
    ``sort``, rows stably ordered by snapshot."""
    col = pa.array(book.snap_ns[snap] if len(snap) else np.zeros(0, np.int64),
                   pa.int64()).cast(TIME_TYPE)
    table = table.add_column(1, "time", col)
    if sort and len(snap) and (np.diff(snap) < 0).any():
        table = table.take(pa.array(np.argsort(snap, kind="stable"), pa.int64()))
    return table


def _rv_units(out):
    """Unit of each row of the unit risk-vector table."""
    unit_und = out.units.type_und_code[out.units.utype]
    return np.repeat(np.arange(len(out.units)), out.scen.n_scen[unit_und])


def _rv_positions(out):
    """Position of each row of the position risk-vector table."""
    unit_und = out.units.type_und_code[out.units.utype]
    return np.repeat(np.arange(len(out.pos_unit)), out.scen.n_scen[unit_und[out.pos_unit]])


def _scenario_cols(scen, und_rows, cells):
    return {
        "scenario": cells,
        "table": _names(TABLES, scen.table[und_rows, cells]),
        "price_shock": scen.price_shock[und_rows, cells],
        "vol_state": _names(VOL_STATES, scen.vol_code[und_rows, cells]),
    }


def _unit_risk_vectors(out, unit_names):
    units, scen, book = out.units, out.scen, out.book
    unit_und = units.type_und_code[units.utype]
    n_s = scen.n_scen[unit_und]
    rows_u = np.repeat(np.arange(len(units)), n_s)
    cells = (np.arange(len(rows_u)) - np.repeat(np.cumsum(n_s) - n_s, n_s)).astype(np.int64)
    cols = {
        "account": book.accounts.take(pa.array(units.account[rows_u], pa.int64())),
        "unit": unit_names.take(pa.array(rows_u, pa.int64())),
    }
    cols.update(_scenario_cols(scen, unit_und[rows_u], cells))
    cols["pnl"] = out.unit.vectors[rows_u, cells]
    cols["weighted_pnl"] = out.unit.weighted[rows_u, cells]
    return table_of(cols)


def _position_risk_vectors(out, unit_names):
    """Per position and scenario (the caller asked for the positions x scenarios matrix)."""
    units, scen, book = out.units, out.scen, out.book
    unit_und = units.type_und_code[units.utype]
    pu = out.pos_unit
    n_sp = scen.n_scen[unit_und[pu]]
    rows_p = np.repeat(np.arange(len(pu)), n_sp)
    cells_p = (np.arange(len(rows_p)) - np.repeat(np.cumsum(n_sp) - n_sp, n_sp)).astype(np.int64)
    pcols = {
        "account": book.accounts.take(pa.array(book.pos_account[rows_p], pa.int64())),
        "unit": unit_names.take(pa.array(pu[rows_p], pa.int64())),
        "symbol": book.symbols.take(pa.array(book.pos_instr[rows_p], pa.int64())),
    }
    pcols.update(_scenario_cols(scen, unit_und[pu[rows_p]], cells_p))
    pcols["pnl"] = book.quantity[rows_p] * out.instr_pnl[out.pos_row[rows_p], cells_p]
    return table_of(pcols)

"""Arrow result tables from an engine :class:`~pmrisk.engine.core.Outcome`."""

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pmrisk.kernel import tables as tables_k
from pmrisk.kernel.assemble import largest_units
from pmrisk.kernel.scenarios import TABLES, VOL_STATES

from .io.arrow import iso_ns, kernel_args, sum_by, unique_keys
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


def block_columns(block, names):
    """Arrow float64 columns named ``names`` from the rows of a C-contiguous 2-d ``block``:
    one Arrow array over the whole block, sliced (a slice costs less than an array)."""
    n = block.shape[1]
    flat = pa.array(block.reshape(-1))
    return {name: flat.slice(k * n, n) for k, name in enumerate(names)}


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
    return bool((u == 1.0).all() and (a == 1.0).all())


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
    loans = np.flatnonzero(out.account.loan_maintenance_margin > 0)
    accounts_t = accounts_table(out, model)
    units_t = _units_table(out, unit_names) if "units" in tables else None
    positions_t = _positions_table(out, unit_names, loans) if "positions" in tables else None
    urv = _unit_risk_vectors(out, unit_names) if risk_vectors else None
    prv = _position_risk_vectors(out, unit_names) if risk_vectors == "positions" else None
    if book.timed:
        # the snapshot of every row, as a `time` column after `account`; rows by snapshot
        acc_snap = book.acc_snap
        accounts_t = _timed(accounts_t, book, acc_snap)
        if units_t is not None:
            units_t = _timed(units_t, book, acc_snap[units.account])
        if positions_t is not None:
            row_acc = np.concatenate([book.pos_account, units.account, loans])
            positions_t = _timed(positions_t, book, acc_snap[row_acc], sort=True)
        if urv is not None:
            urv = _timed(urv, book, acc_snap[units.account][_rv_units(out)])
        if prv is not None:
            prv = _timed(prv, book, acc_snap[book.pos_account][_rv_positions(out)], sort=True)
    return MarginResult(accounts=accounts_t, units=units_t, positions=positions_t,
                        risk_vectors=prv if prv is not None else urv, unit_risk_vectors=urv,
                        position_risk_vectors=prv, correlation=out.correlation)


def _units_table(out, unit_names):
    units, scen, uf = out.units, out.scen, out.unit
    unit_und = units.type_und_code[units.utype]
    unit_px = units.settle_px
    index_px = units.index_px
    b = uf.binding_scenario
    unit_cols = {
        "account": _take(out.book.accounts, units.account),
        "unit": unit_names,
        "underlying": _names(units.type_und, units.utype),
        "settlement_currency": _names(units.type_ccy, units.utype),
        "index_price": index_px,
        "settlement_price_usd": unit_px,
        "binding_scenario": b,
        "binding_table": _names(TABLES, scen.table[unit_und, b]),
        "binding_price_shock": scen.price_shock[unit_und, b],
        "binding_vol_state": _names(VOL_STATES, scen.vol_code[unit_und, b]),
        # the unit's move and vol state in the scenario that sets its account's scenario
        # margin (the joint scenario under cross_unit="correlated"; null: not part of it)
        "scenario_price_shock": pa.array(uf.scenario_price_shock, pa.float64(),
                                         mask=np.isnan(uf.scenario_price_shock)),
        "scenario_vol_state": _vol_states(uf.scenario_vol_state),
    }
    if out.layout.brackets is not None:         # brackets have no scenarios: no binding cell
        for name in ("binding_scenario", "binding_table", "binding_price_shock",
                     "binding_vol_state"):
            col = pa.array(unit_cols[name])
            unit_cols[name] = pa.nulls(len(col), col.type)
    unit_cols.update(block_columns(tables_k.unit_columns(
        *kernel_args(np.array([getattr(uf, f) for f in tables_k.UNIT_FIGURES]),
                     np.array([getattr(uf, f) for f in tables_k.UNIT_GREEKS]), unit_px,
                     index_px)), tables_k.UNIT_COLUMNS))
    if out.okx is not None:             # okx_pm: OKX's risk-unit figures (USD)
        ox = out.okx
        for k, name in enumerate(("mr1", "mr2", "mr3", "mr4", "mr5", "mr6")):
            unit_cols[name] = ox.charges[:, k]
        unit_cols["mr7"] = ox.mr7
        unit_cols["mr7_raw"] = ox.charges[:, 6]
        unit_cols["mr9"] = ox.mr9
        unit_cols["mmr"] = ox.mmr
        unit_cols["imr"] = ox.imr
        unit_cols["delta_usd"] = ox.charges[:, 7]
    return table_of(unit_cols)


def _vol_states(code):
    """Vol state names of ``code`` (-1: null)."""
    if not len(code) or code.min() >= 0:
        return _names(VOL_STATES, code)
    return _name_array(VOL_STATES).take(pa.array(code, pa.int64(), mask=code < 0))


def _positions_table(out, unit_names, loans):
    """Positions, then one ``unallocated`` row per unit, then one per account with loans."""
    book, units, uf, pf = out.book, out.units, out.unit, out.position
    n_units = len(units)
    pu = out.pos_unit
    n_loan = len(loans)
    pos_cols = {
        "account": _take(book.accounts, np.concatenate([book.pos_account, units.account, loans])),
        # symbols, then "unallocated" (the name after the book's symbols)
        "symbol": _take(pa.concat_arrays([_one_chunk(book.symbols), _name_array((UNALLOCATED,))]),
                        np.concatenate([book.pos_instr,
                                        np.full(n_units + n_loan, len(book.symbols))])),
        # unit type names, then "loans" (the name after them)
        "unit": _take(_name_array(tuple(units.type_names) + ("loans",)),
                      np.concatenate([units.utype[pu], units.utype,
                                      np.full(n_loan, len(units.type_names))])),
    }
    pos_cols.update(block_columns(tables_k.position_columns(*kernel_args(
        pu, book.quantity, units.settle_px, pf.value, pf.model_value, pf.unrealised_pnl,
        pf.delta, pf.gamma, pf.vega, pf.theta, pf.mm_contribution, pf.im_contribution,
        uf.maintenance_margin, uf.initial_margin,
        out.account.loan_maintenance_margin[loans])), tables_k.POSITION_COLUMNS))
    if out.layout.brackets is not None:         # margin_rules "brackets" (binance_um)
        pos_cols.update(_bracket_columns(out, n_units + n_loan))
    return table_of(pos_cols)


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


def largest_unit(unit_account, worst_usd, acc, n_acc, ua_start=None):
    """Per account of ``acc`` (sorted indices) that has units, its unit with the largest
    ``worst_usd`` (ties: the first; :func:`pmrisk.kernel.assemble.largest_units`); units are
    sorted by account (``ua_start``: where each account's units start, if known), so it
    costs the selected accounts' units only."""
    if ua_start is None:
        ua_start = np.searchsorted(unit_account, np.arange(n_acc + 1))
    lead = largest_units(*kernel_args(np.asarray(acc), ua_start, worst_usd))
    return lead[lead >= 0]


def _describe_units(out, acc, acc_excl):
    """Per account of ``acc``, its largest unit's binding cell in words ("BTC/BTC standard
    -16.00% vol up"): formatted once per distinct (unit type, cell), not once per account."""
    units, scen = out.units, out.scen
    binding = out.unit.binding_scenario
    worst_usd = out.unit.worst_case * units.settle_px
    first = largest_unit(units.account, worst_usd, acc, len(out.book.accounts),
                         out.layout.ua_start)
    code = np.where(acc_excl > 0, 1, 0)                 # 0: none, 1: excluded only, 2+: cells
    texts = ["none", "excluded positions only (SPAN standalone)"]
    on = worst_usd[first] > 0 if len(first) else np.zeros(0, dtype=bool)
    live = first[on]
    if len(live):
        width = scen.price_shock.shape[1]
        uniq, inv = unique_keys(units.utype[live] * width + binding[live])
        for k in uniq.tolist():
            t, c = divmod(k, width)
            r = units.type_und_code[t]
            texts.append(describe(units.type_names[t], TABLES[scen.table[r, c]],
                                  scen.price_shock[r, c], VOL_STATES[scen.vol_code[r, c]]))
        n_acc = len(out.book.accounts)
        if len(acc) == n_acc and (not n_acc or (acc[0] == 0 and acc[-1] == n_acc - 1
                                               and (np.diff(acc) > 0).all())):
            code[units.account[live]] = 2 + inv         # every account, in order: 0..n-1
        else:
            local = np.full(int(acc.max()) + 1, -1, dtype=np.int64)
            local[acc] = np.arange(len(acc))
            code[local[units.account[live]]] = 2 + inv
    return _names(texts, code)


def accounts_table(out, model, acc=None, ratio=None):
    """The accounts table of ``out``, or its rows for accounts ``acc`` (sorted indices;
    ``ratio``: their margin ratios if already known), without building the others."""
    book, units, af = out.book, out.units, out.account
    n_acc = len(book.accounts)
    every = acc is None
    idx = np.arange(n_acc) if every else np.asarray(acc, dtype=np.int64)
    sel = slice(None) if every else idx
    eq, mm_usd, im_usd = af.equity[sel], af.maintenance_margin[sel], af.initial_margin[sel]
    th = model["thresholds"]
    levels = list(th["warning"]) + [th["margin_call"], th["liquidation"]]
    own_ratio, available, max_wd, band = tables_k.account_columns(
        *kernel_args(eq, mm_usd, im_usd, af.liquidation_cost[sel]), float(min(th["warning"])),
        np.array(levels, dtype=np.float64))
    if ratio is None:
        ratio, status = own_ratio, _names(_status_names(len(th["warning"])), band)
    else:
        status = status_array(ratio, th)
    excl = out.unit.excluded_margin
    acc_excl = sum_by(units.account, weights=excl * units.settle_px, minlength=n_acc)[sel] \
        if excl.any() else np.zeros(len(idx))       # no excluded positions: no per-unit pass
    if af.worst_scenario is not None:
        ws = af.worst_scenario
        desc = [ws[a] if s > 0 else "none" for a, s in zip(idx.tolist(),
                                                             af.scenario_margin[sel])]
        desc = pa.array([("excluded positions only (SPAN standalone)"
                          if d == "none" and e > 0 else d) for d, e in zip(desc, acc_excl)],
                        pa.string())
    else:
        desc = _describe_units(out, idx, acc_excl)
    # the numeric columns as one block, cut into Arrow columns (used margin is IM's)
    num = block_columns(np.array([eq, af.actual_equity[sel], mm_usd, im_usd, available, max_wd,
                                  af.scenario_margin[sel], af.loan_maintenance_margin[sel]],
                                 dtype=np.float64), _ACCOUNT_NUMBERS)
    table = table_of({
        "account": book.accounts if every else _take(book.accounts, idx),
        "equity": num["equity"],
        "actual_equity": num["actual_equity"],
        "maintenance_margin": num["maintenance_margin"],
        "initial_margin": num["initial_margin"],
        "used_margin": num["initial_margin"],
        "available_margin": num["available_margin"],
        "max_withdrawable": num["max_withdrawable"],
        "margin_ratio": ratio,
        "status": status,
        "worst_scenario": desc,
        "scenario_margin": num["scenario_margin"],
        "loan_maintenance_margin": num["loan_maintenance_margin"],
    })
    if out.okx is not None:             # okx_pm
        for name in ("derivatives_mmr", "borrow_mmr", "borrow_imr", "liquidation_cost"):
            table = table.append_column(name, pa.array(getattr(out.okx, name)[sel]))
    return table


_ACCOUNT_NUMBERS = ("equity", "actual_equity", "maintenance_margin", "initial_margin",
                    "available_margin", "max_withdrawable", "scenario_margin",
                    "loan_maintenance_margin")


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

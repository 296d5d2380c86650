"""``pmrisk.backtest``: margin every (time, account) snapshot of a history too long for one
:func:`pmrisk.margin` call, streamed in time-ordered batches with bounded memory, in this
process or on a Dask cluster.

How it works:

1. **Plan.** Each input is a table or a Parquet dataset (``pyarrow.dataset``).  Only the
   ``time`` column of the timed account-state tables (positions, balances, open orders,
   reserves; or of market and index when none of those is timed) is scanned: its distinct
   times and rows per time.  Consecutive times are grouped into batches of about
   ``batch_rows`` account-state rows (memory per batch follows rows, not snapshots; counting
   snapshots up front would mean scanning the account column too).
2. **Run.** Per batch, every timed input is cut to the batch's time range ``[lo, hi)`` (a
   dataset through a filter expression, so only the row groups of that range are read when
   the dataset is written in time order; a table through one stable sort by time, done once),
   untimed inputs (instruments, a static balance sheet) are read once, and
   :func:`pmrisk.margin` margins the batch in one engine pass.  A snapshot's figures depend
   only on its own rows, so the batches' results, in time order, are exactly one call's over
   the whole history (tested).
3. **Out.** The batches' tables are concatenated and returned, or with ``out=DIR`` written as
   Parquet datasets ``DIR/accounts/part-000000.parquet``, ... (one file per batch, in time
   order) and only a summary is returned.  ``DIR`` is checked first (:func:`check_out`: new
   or empty, never overlapping an input path); the parts go to a staging directory beside it,
   moved into ``DIR`` once every batch is done.
4. **Dask.** With ``client``, one task per batch on a ``dask.distributed`` cluster (at most
   two per worker in flight, so memory stays bounded there too).  Each worker first runs
   :func:`pmrisk.warmup` (its own numba kernels, loaded from the on-disk cache); dataset
   inputs are read by the workers themselves (the paths must be visible to them), table
   inputs are cut on the client and scattered.  Results come back in time order, or the
   workers write the parts of ``out`` directly.  Same batches, same numbers: a Dask run
   equals the single-process run exactly.

``fill_market="forward"`` forward-fills market and index rows (:mod:`pmrisk.io.fill`) across
batch boundaries: the latest row per symbol of the earlier batches is carried into the next.
"""

import contextlib
import itertools
import os
import sys
import threading
import time as _time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pmrisk.kernel.rowkeys import time_runs

from ..io.arrow import NAT, as_table, check_columns, kernel_args, time_column
from ..model.calibration import CalibrationSchedule
from ..errors import MarginError
from ..io.fill import advance_carry, check_mode, forward_fill
from ..engine.margin import wanted_tables, margin
from ..model.model import Model
from ..results import MarginResult
from ..io.schema import ACCOUNT_STATE, TIME, snapshot_tables

INPUTS = ("positions", "instruments", "market", "index", "balances", "open_orders",
          "reserves")
RESULT_TABLES = ("accounts", "units", "positions")
BATCH_ROWS = 1_000_000
MAX_BATCH_ROWS = 10**12         # far beyond any memory (about 0.6 GB per million rows)


# -- inputs: a table or a Parquet dataset ---------------------------------------------------

def _ceil_to_unit(ns, unit):
    per = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    return -((-int(ns)) // per)


def open_dataset(obj, name):
    """A Parquet file or directory (or a ``pyarrow.dataset.Dataset``) as a dataset, every part
    checked once, here (the backtest's inputs and the command line's directories).

    Parameters
    ----------
    obj : path or pyarrow.dataset.Dataset
        The input.
    name : str
        Its table name (``positions``, ...), for errors.

    Returns
    -------
    pyarrow.dataset.Dataset

    Raises
    ------
    MarginError
        Naming the table, the part and the column: a part that cannot be opened (empty,
        truncated, not Parquet), a column whose type in a part cannot be cast to the first
        part's, or a ``time`` (every table but instruments) that is not a timestamp or is
        missing in a part.  Values that fail later, on reading, are named by
        :func:`reading`.

    Examples
    --------
    >>> from pmrisk.backtest.run import open_dataset
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> pq.write_table(pa.table({"time": pa.array([0], pa.timestamp("ns"))}),
    ...                os.path.join(d, "part-0.parquet"))
    >>> open(os.path.join(d, "part-1.parquet"), "wb").close()         # an empty file
    >>> open_dataset(d, "positions")
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: positions: expected readable Parquet files ...
    """
    import pyarrow.dataset as ds
    where = _where(obj)
    if isinstance(obj, ds.Dataset):
        dataset = obj
    elif not isinstance(obj, (str, os.PathLike)):
        raise MarginError(name, None, "a table, or the path of a Parquet file or directory, "
                          f"got {type(obj).__name__}")
    else:
        path = os.fspath(obj)
        if not os.path.exists(path):
            raise MarginError(name, None, "a table or the path of a Parquet file or "
                              f"directory; no such path: {path!r}")
        try:
            dataset = ds.dataset(path, format="parquet")
        except (pa.ArrowException, OSError) as exc:
            raise MarginError(name, None, f"readable Parquet files in {path!r} "
                              f"({_one_line(exc)})") from None
    timed = name != "instruments"
    schema = dataset.schema
    for frag in dataset.get_fragments():
        part = getattr(frag, "path", where)
        try:
            phys = frag.physical_schema
        except (pa.ArrowException, OSError) as exc:
            raise MarginError(name, None, f"readable Parquet files in {where!r}: part "
                              f"{part!r} is empty, truncated or not Parquet "
                              f"({_one_line(exc)})") from None
        for f in schema:
            found = phys.get_all_field_indices(f.name)
            if len(found) > 1:
                raise MarginError(name, f.name, f"one {f.name!r} column in every part of "
                                  f"{where!r}; part {part!r} has {len(found)}")
            if not found:
                if timed and f.name == TIME:
                    raise MarginError(name, TIME, f"a time column in every part of {where!r}; "
                                      f"part {part!r} has none")
                continue
            typ = phys.field(found[0]).type
            if typ == f.type:
                continue
            if timed and f.name == TIME and not pa.types.is_timestamp(typ):
                raise MarginError(name, TIME, f"a timestamp column in every part of {where!r} "
                                  f"(it is range-filtered per batch); part {part!r} has {typ}")
            try:
                pa.array([], typ).cast(f.type)
            except (pa.ArrowException, TypeError):
                raise MarginError(name, f.name, f"the same type in every part of {where!r}: "
                                  f"{f.type} (as in its first part); part {part!r} has "
                                  f"{typ}") from None
    if timed and TIME in schema.names and not pa.types.is_timestamp(schema.field(TIME).type):
        raise MarginError(name, TIME, "a timestamp column in a Parquet dataset (it is "
                          f"range-filtered per batch), got {schema.field(TIME).type}")
    return dataset


@contextlib.contextmanager
def reading(dataset, name, where, columns=None):
    """A context in which Arrow errors reading ``dataset`` (an :func:`open_dataset`) become a
    MarginError of table ``name`` naming the part and the column that fail to read alone (a
    part corrupt past its footer, values that do not cast to the dataset's type); an error
    no single part reproduces is raised as it is.  ``where`` names the dataset, ``columns``
    the columns being read (default all)."""
    try:
        yield
    except (pa.ArrowException, OSError):
        bad = _failing_part(dataset, columns)
        if bad is None:
            raise
        part, col, err = bad
        raise MarginError(name, col, f"readable Parquet in {where!r}: part {part!r}"
                          + (f", column {col!r}" if col else "")
                          + f" cannot be read ({_one_line(err)})") from None


def _failing_part(dataset, columns):
    names = list(columns or dataset.schema.names)
    for frag in dataset.get_fragments():
        try:
            frag.to_table(schema=dataset.schema, columns=names)
        except (pa.ArrowException, OSError) as exc:
            for c in names:
                try:
                    frag.to_table(schema=dataset.schema, columns=[c])
                except (pa.ArrowException, OSError):
                    return getattr(frag, "path", "?"), c, exc
            return getattr(frag, "path", "?"), None, exc
    return None


def _where(obj):
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj)
    files = getattr(obj, "files", None) or []
    return os.path.dirname(files[0]) if files else "the dataset"


def _one_line(exc):
    return " ".join(str(exc).split())


def input_paths(obj):
    """The local paths an input reads: its path, or a local dataset's files (none for a
    table or a dataset on another filesystem)."""
    if isinstance(obj, (str, os.PathLike)):
        return [os.fspath(obj)]
    fs = getattr(obj, "filesystem", None)
    if fs is None or type(fs).__name__ != "LocalFileSystem":
        return []
    return list(getattr(obj, "files", None) or [])


@dataclass
class _DatasetSlice:
    """The rows of a dataset with ``lo <= time < hi`` (``lo`` None: no lower bound); read
    where the batch runs (a Dask worker reads its own slice)."""
    dataset: object
    name: str
    lo: object
    hi: int
    where: str = "the dataset"

    def read(self):
        import pyarrow.dataset as ds
        f = ds.field(TIME)
        typ = self.dataset.schema.field(TIME).type

        def lit(ns):
            return pa.scalar(_ceil_to_unit(ns, typ.unit), pa.timestamp(typ.unit, tz=typ.tz))
        expr = f < lit(self.hi)
        if self.lo is not None:
            expr = (f >= lit(self.lo)) & expr
        with reading(self.dataset, self.name, self.where):
            return self.dataset.to_table(filter=expr)


class _Source:
    """One input: a ``pyarrow.Table`` (sorted by time once, stably) or a
    ``pyarrow.dataset.Dataset`` (filtered per batch)."""

    def __init__(self, name, obj):
        import pyarrow.dataset as ds        # not at import: it doubles `import pmrisk`
        self.name = name
        self.dataset = self.table = None
        self.where = self.paths = None
        if isinstance(obj, (str, os.PathLike, ds.Dataset)):
            self.dataset = open_dataset(obj, name)
            self.where = _where(obj)
            self.paths = input_paths(obj)
        else:
            self.table = as_table(obj, name)
        schema = self.dataset.schema if self.dataset is not None else self.table.schema
        self.timed = TIME in schema.names and name != "instruments"
        self._ns = self._order = self._runs = None
        if self.timed and self.table is not None:   # a dataset's parts: open_dataset
            check_columns(self.table, name, {TIME: ("time", True, False)})
            ns = time_column(self.table, name, TIME)
            values, counts, ok = time_runs(*kernel_args(ns))
            if not ok:
                self._order = np.argsort(ns, kind="stable")
                ns = ns[self._order]
                values, counts, _ = time_runs(*kernel_args(ns))
            _no_nulls(values, counts, name)
            self._ns = ns
            self._runs = values, counts

    def whole(self):
        """The whole input as a table (untimed inputs: instruments, static tables)."""
        if self.table is not None:
            return self.table
        with reading(self.dataset, self.name, self.where):
            return self.dataset.to_table()

    def num_rows(self):
        if self.table is not None:
            return self.table.num_rows
        with reading(self.dataset, self.name, self.where):
            return self.dataset.count_rows()

    def time_counts(self):
        """(distinct times, rows at each) of a timed input, sorted by time."""
        if self._runs is not None:
            return self._runs
        vals, counts = [], []
        # little readahead: planning a long history must not hold much of it at once
        with reading(self.dataset, self.name, self.where, columns=[TIME]):
            for batch in self.dataset.to_batches(columns=[TIME], batch_size=1 << 16,
                                                 batch_readahead=1, fragment_readahead=1):
                ns = time_column(pa.Table.from_batches([batch]), self.name, TIME)
                v, c, ok = time_runs(*kernel_args(ns))
                if not ok:
                    v, c, _ = time_runs(*kernel_args(np.sort(ns)))
                _no_nulls(v, c, self.name)
                vals.append(v)
                counts.append(c)
        if not vals:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        v, inv = np.unique(np.concatenate(vals), return_inverse=True)
        return v, np.bincount(inv.ravel(), weights=np.concatenate(counts)).astype(np.int64)

    def slice(self, lo, hi):
        """Rows with ``lo <= time < hi``: a table, or a :class:`_DatasetSlice` to read."""
        if self.dataset is not None:
            return _DatasetSlice(self.dataset, self.name, lo, hi, self.where)
        i0 = 0 if lo is None else int(np.searchsorted(self._ns, lo))
        i1 = int(np.searchsorted(self._ns, hi))
        if self._order is None:
            return self.table.slice(i0, i1 - i0)
        return self.table.take(pa.array(self._order[i0:i1], pa.int64()))


def _no_nulls(values, counts, name):
    """A null time reads as NaT, the least int64: then the first of the distinct times
    ``values`` (rows at each: ``counts``)."""
    if len(values) and values[0] == NAT:
        raise MarginError(name, TIME, "a time on every row (no nulls)", n_bad=int(counts[0]))


def _read(part):
    return part.read() if isinstance(part, _DatasetSlice) else part


# -- the plan: batches of consecutive times ----------------------------------------------------

@dataclass
class _Batch:
    index: int
    lo: object          # ns; None for the first batch of a forward-filled run (no lower bound)
    hi: int
    rows: int           # account-state rows (the batch's weight)
    n_times: int


def _plan(sources, batch_rows, fill):
    basis = [sources[k] for k in snapshot_tables([k for k, s in sources.items() if s.timed])]
    timed_state = [s for s in basis if s.name in ACCOUNT_STATE]
    if not basis:
        raise MarginError("arguments", TIME, "a time column in positions, balances, market or "
                          "index: a backtest margins a history (pmrisk.margin values one book)")
    parts = [s.time_counts() for s in basis]
    times, inv = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    weight = np.zeros(len(times), dtype=np.int64)
    if timed_state:
        weight += np.bincount(inv.ravel(), weights=np.concatenate([p[1] for p in parts]),
                              minlength=len(times)).astype(np.int64)
    static = sum(s.num_rows() for s in sources.values()
                 if s.name in ACCOUNT_STATE and not s.timed)
    weight += max(static, 1 if not timed_state else 0)
    if not len(times):
        return times, []
    # each time joins the batch its first row falls in: contiguous batches of ~batch_rows
    group = (np.cumsum(weight) - weight) // batch_rows
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[first[1:], len(times)]
    batches = []
    for k, (a, b) in enumerate(zip(first, ends)):
        lo = int(times[a]) if (k or not fill) else None
        hi = int(times[b]) if b < len(times) else int(times[-1]) + 1
        batches.append(_Batch(k, lo, hi, int(weight[a:b].sum()), int(b - a)))
    return times, batches


# -- one batch (in this process or on a Dask worker) -------------------------------------------

@dataclass
class _Job:
    index: int
    rows: int           # the batch's planned weight (for progress)
    model: object
    wanted: tuple
    fill: str
    out: object
    carry: dict = None


@dataclass
class _Done:
    index: int
    snapshots: int
    rows: int
    timings: dict
    tables: dict = field(default_factory=dict)


_ENGINE_LOCK = threading.Lock()


def _engine_guard():
    """numba's ``workqueue`` threading layer (used when neither OpenMP nor TBB is there)
    must not run parallel kernels from two threads at once: a threaded Dask worker pool then
    takes turns.  ``omp`` and ``tbb`` are thread-safe."""
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:                  # no parallel kernel has run yet in this process
        layer = "workqueue"
    return _ENGINE_LOCK if layer == "workqueue" else contextlib.nullcontext()


def _run_batch(job, parts):
    """Margin one batch: ``parts`` maps input names to tables or dataset slices."""
    tables = {name: _read(p) for name, p in parts.items()}
    if job.fill == "forward":
        tables = forward_fill(tables, job.carry)
    with _engine_guard():
        r = margin(**tables, model=job.model, tables=job.wanted)
    done = _Done(job.index, r.accounts.num_rows, job.rows, dict(r.timings))
    out = {name: getattr(r, name) for name in job.wanted}
    if job.out is None:
        done.tables = out
    else:
        import pyarrow.parquet as pq
        for name, t in out.items():
            pq.write_table(t, os.path.join(job.out, name, f"part-{job.index:06d}.parquet"))
    del tables, r, out
    pa.default_memory_pool().release_unused()   # a long run's RSS stays at one batch's
    return done


def _warm_worker(model):
    from ..warmup import warmup
    return warmup(models=(model,))


# -- progress --------------------------------------------------------------------------------

class _Progress:
    """One line on a stream: snapshots done, share of the history's rows done, snapshots/s,
    ETA.  On a terminal the line is redrawn in place at most 5 times a second; on any other
    stream (a log file) a line is written at most every 2 s, and always at the end."""

    def __init__(self, progress, total_rows, n_batches):
        self.stream = _progress_stream(progress)
        self.tty = bool(self.stream is not None and getattr(self.stream, "isatty", None)
                        and self.stream.isatty())
        self.total_rows = max(total_rows, 1)
        self.n_batches = n_batches
        self.t0 = _time.perf_counter()
        self.last = -1e9
        self.rows = self.snapshots = self.batches = 0

    def update(self, done):
        self.rows += done.rows
        self.snapshots += done.snapshots
        self.batches += 1
        now = _time.perf_counter()
        if self.stream is None or now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        el = now - self.t0
        frac = min(self.rows / self.total_rows, 1.0)
        eta = el * (1 - frac) / frac if frac > 0 else float("nan")
        self._write(f"pmrisk backtest: {self.snapshots:,} snapshots ({frac:.0%}, batch "
                    f"{self.batches}/{self.n_batches}), {self.snapshots / max(el, 1e-9):,.0f} "
                    f"snapshots/s, ETA {_clock(eta)}")

    def close(self):
        if self.stream is None:
            return
        el = _time.perf_counter() - self.t0
        self._write(f"pmrisk backtest: {self.snapshots:,} snapshots in {el:.1f} s "
                    f"({self.snapshots / max(el, 1e-9):,.0f} snapshots/s), {self.batches} "
                    f"batches", end="\n")

    def _write(self, line, end=None):
        if self.tty:
            self.stream.write("\r" + line.ljust(getattr(self, "_width", 0)) +
                              (end or ""))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _clock(s):
    if s != s:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


def _progress_stream(progress):
    if progress is None or progress is False:
        return None
    if progress is True:
        err = sys.stderr
        return err if err is not None and hasattr(err, "isatty") and err.isatty() else None
    if hasattr(progress, "write"):
        return progress
    raise MarginError("arguments", "progress", "True (a progress line on stderr when it is a "
                      "terminal), False, or a writable stream, got "
                      f"{type(progress).__name__}")


# -- results ---------------------------------------------------------------------------------

@dataclass
class BacktestOutput:
    """What :func:`backtest` wrote with ``out=DIR``: one Parquet dataset per result table
    (``DIR/accounts``, ...; one ``part-NNNNNN.parquet`` per batch, in time order).

    ``read(name)`` reads one back as a table; ``dataset(name)`` opens it lazily.

    Examples
    --------
    >>> import tempfile
    >>> import pmrisk
    >>> from pmrisk import samples
    >>> h = samples.history(days=1, accounts=2, step_minutes=360)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = pmrisk.backtest(**h, model="deribit_pme", out=tmp + "/results",
    ...                           progress=False)
    ...     accounts = out.read("accounts")
    >>> out.tables, out.snapshots, out.batches, accounts.num_rows
    (('accounts',), 8, 1, 8)
    """
    path: str
    tables: tuple
    snapshots: int
    batches: int
    timings: dict

    def dataset(self, name="accounts"):
        import pyarrow.dataset as ds
        if name not in self.tables:
            raise KeyError(f"{name!r} was not written (written: {self.tables})")
        return ds.dataset(os.path.join(self.path, name), format="parquet")

    def read(self, name="accounts"):
        return self.dataset(name).to_table()


def overlaps(a, b):
    """Whether two paths are the same or one lies inside the other, symlinks and relative
    parts resolved.

    >>> from pmrisk.backtest.run import overlaps
    >>> overlaps("data", "data/positions"), overlaps("data/out", "data/positions")
    (True, False)
    """
    a, b = os.path.realpath(a), os.path.realpath(b)
    return a == b or os.path.commonpath([a, b]) in (a, b)


def check_out(out, inputs, overwrite=False, *, option="out", flag="overwrite=True"):
    """Check ``out`` for :func:`backtest` and return it as a path: a new directory, an empty
    one or (with ``overwrite``) one holding only an earlier backtest's output (``accounts/``,
    ``units/``, ``positions/`` of ``part-*.parquet`` files), never a path an input reads from
    (``inputs`` maps input names to their paths: same path, ``out`` inside an input or an
    input inside ``out``).  ``option`` and ``flag`` are the names the errors use (the command
    line says ``--out`` and ``--overwrite``).

    >>> from pmrisk.backtest.run import check_out
    >>> check_out("results", {"positions": "data/positions"})
    'results'
    >>> check_out("data", {"positions": "data/positions"})
    Traceback (most recent call last):
    ...
    pmrisk.errors.MarginError: arguments.out: expected a directory apart from the inputs...
    """
    if isinstance(out, bytes) or not isinstance(out, (str, os.PathLike)):
        raise MarginError("arguments", option, "the path of a directory to write the results "
                          f"to, got {type(out).__name__}")
    out = os.fsdecode(os.fspath(out))
    if not out.strip():             # "" would be the working directory, and overlap inputs
        raise MarginError("arguments", option, f"the path of a directory to write the results "
                          f"to, got an empty path {out!r}")
    real = os.path.realpath(out)
    for name, paths in inputs.items():
        for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths):
            if overlaps(out, p):
                rp = os.path.realpath(p)
                rel = ("is" if real == rp else "is inside" if
                       os.path.commonpath([real, rp]) == rp else "contains")
                raise MarginError("arguments", option, "a directory apart from the inputs: "
                                  f"{option} {out!r} {rel} the {name} input {os.fspath(p)!r}, "
                                  "and writing there would change or delete it",
                                  hint=f"Choose another {option} directory")
    if not os.path.lexists(out):
        return out
    if not os.path.isdir(out):
        raise MarginError("arguments", option, "a new or empty directory; "
                          f"{out!r} exists and is not a directory")
    entries = sorted(os.listdir(out))
    if not entries:
        return out
    if not overwrite:
        raise MarginError("arguments", option, f"a new or empty directory: {out!r} holds "
                          f"{', '.join(entries[:5])}{' ...' if len(entries) > 5 else ''}",
                          hint=f"{flag} replaces an earlier backtest's output there")
    foreign = [e for e in entries if not _earlier_output(os.path.join(out, e), e)]
    if foreign:
        raise MarginError("arguments", option, "a new or empty directory, or one holding only "
                          f"an earlier backtest's output ({', '.join(RESULT_TABLES)} "
                          f"directories of part-*.parquet files): {out!r} also holds "
                          f"{', '.join(foreign[:5])}", hint=f"{flag} replaces only an earlier "
                          "backtest's output; choose a new directory")
    return out


def _earlier_output(path, entry):
    return (entry in RESULT_TABLES and os.path.isdir(path) and not os.path.islink(path)
            and all(e.startswith("part-") and e.endswith(".parquet")
                    and os.path.isfile(os.path.join(path, e)) for e in os.listdir(path)))


class _Staging:
    """The results are written to a directory beside ``out`` and moved into place only at
    the end, so a failed or interrupted run leaves ``out`` as it was (the staging directory
    is removed)."""

    def __init__(self, out, wanted):
        self.out = out
        parent, base = os.path.split(os.path.realpath(out))   # beside the real target
        try:
            os.makedirs(parent, exist_ok=True)
            self.path = os.path.join(parent, f".{base}.pmrisk-{uuid.uuid4().hex[:12]}.tmp")
            os.mkdir(self.path)
            for name in wanted:
                os.mkdir(os.path.join(self.path, name))
        except OSError as exc:
            self.abort()
            raise MarginError("arguments", "out", f"a directory that can be written: {out!r} "
                              f"({_one_line(exc)})") from None

    def commit(self):
        """Move the results into ``out``: a new ``out`` is one rename; an existing one has
        its entries (an earlier output) moved aside, the new ones moved in, then the old ones
        removed; a failure in between puts the old ones back."""
        import shutil
        if not os.path.lexists(self.out):
            os.rename(self.path, self.out)
            return
        old = self.path[:-len(".tmp")] + ".old"
        os.mkdir(old)
        moved, placed = [], []
        try:
            for e in os.listdir(self.out):
                os.rename(os.path.join(self.out, e), os.path.join(old, e))
                moved.append(e)
            for e in os.listdir(self.path):
                os.rename(os.path.join(self.path, e), os.path.join(self.out, e))
                placed.append(e)
        except BaseException:
            for e in placed:
                os.rename(os.path.join(self.out, e), os.path.join(self.path, e))
            for e in moved:
                os.rename(os.path.join(old, e), os.path.join(self.out, e))
            shutil.rmtree(old, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
        os.rmdir(self.path)

    def abort(self):
        import shutil
        if getattr(self, "path", None):
            shutil.rmtree(self.path, ignore_errors=True)


def _combine(dones, wanted, model_timings):
    res = MarginResult(accounts=None, units=None, positions=None)
    for name in wanted:
        setattr(res, name, pa.concat_tables([d.tables[name] for d in dones]))
    res.timings = model_timings
    return res


def _timings(dones, t0, n_batches):
    keys = ("validate", "compute", "tables")
    t = {k: float(sum(d.timings.get(k, 0.0) for d in dones)) for k in keys}
    t["total"] = _time.perf_counter() - t0
    t["snapshots"] = int(sum(d.snapshots for d in dones))
    t["batches"] = n_batches
    return t


# -- the entry point ---------------------------------------------------------------------------

def backtest(positions, instruments, market, index, balances=None, model=None, out=None,
             client=None, progress=True, *, open_orders=None, reserves=None,
             tables=("accounts",), fill_market="none", batch_rows=BATCH_ROWS,
             overwrite=False, calibrate=None):
    """Margin every (time, account) snapshot of a history, streamed in time-ordered batches.

    Parameters
    ----------
    positions, instruments, market, index, balances : table or path
        The input tables (as for :func:`pmrisk.margin`), each either Arrow table-like or the
        path of a Parquet file or directory (opened with ``pyarrow.dataset``) or a
        ``pyarrow.dataset.Dataset``.  Timed inputs carry a ``time`` column (a timestamp column
        in datasets); write datasets in time order so each batch reads only its row groups.
    model : str, dict, path or Model
        As for :func:`pmrisk.margin` (default ``standard``).
    out : path, optional
        Write the result tables as Parquet datasets ``out/accounts``, ``out/units``,
        ``out/positions`` (those in ``tables``) instead of returning them.  ``out`` must be
        new or an empty directory (``overwrite=True``: or an earlier backtest's output), and
        apart from every input path.  The results are written beside it and moved in at the
        end: a failed or interrupted run leaves ``out`` as it was.
    client : dask.distributed.Client, optional
        Run the batches on this Dask cluster (``pip install 'pmrisk[dask]'``).  Dataset inputs
        and ``out`` must be paths the workers can reach.
    progress : bool or stream
        ``True`` (default): a progress line (snapshots done, share done, snapshots/s, ETA) on
        stderr when stderr is a terminal, nothing otherwise; ``False``: none; a stream
        (``sys.stderr``, a log file): always, to it.
    open_orders, reserves : table or path, optional
        As for :func:`pmrisk.margin`.
    tables : sequence of str
        Result tables to build among ``accounts``, ``units``, ``positions`` (default the
        accounts: equity, margin, ratio, status of every snapshot).
    fill_market : {"none", "forward"}
        ``"forward"`` carries a symbol's latest market row (an underlying's latest index row)
        forward to snapshot times where it has none, across batches (:mod:`pmrisk.io.fill`).
    batch_rows : int
        About how many account-state rows (positions + balances + open orders + reserves) a
        batch holds; memory per batch follows it (about 0.6 GB per million position rows).
        A batch whose estimated peak memory is above the model's ``max_memory_gb`` is
        refused before it is computed (:mod:`pmrisk.engine.resources`): lower ``batch_rows``.
    overwrite : bool
        With ``out``: replace an earlier backtest's output there (a directory holding only
        ``accounts/``, ``units/``, ``positions/`` of ``part-*.parquet`` files; anything else
        in it is refused, never deleted).
    calibrate : dict or CalibrationSchedule, optional
        Recalibrate the model on a schedule from a price history, using for each snapshot
        only prices strictly before it: ``{"prices": table, "every": "1d", ...}`` (other keys
        are :func:`pmrisk.calibrate`'s keyword arguments; ``model`` is the base model) or a
        :class:`pmrisk.CalibrationSchedule`.  The snapshots of the period starting at ``b``
        (periods of ``every`` from 1970-01-01 UTC) use the model calibrated from the prices
        with ``time < b``; batches never straddle a period.  ``schedule.reports`` keeps each
        calibration's report.

    Returns
    -------
    MarginResult or BacktestOutput
        Without ``out``: the result tables, rows in time order (as one :func:`pmrisk.margin`
        call over the whole history returns them); ``timings`` has the seconds per stage
        summed over batches, ``total``, ``snapshots`` and ``batches``.  With ``out``: a
        :class:`BacktestOutput` (path, tables written, snapshots, batches, timings).

    Raises
    ------
    MarginError
        On any input problem (a missing path, an unreadable Parquet part, a missing time
        column, a bad argument, an ``out`` that is not empty or overlaps an input, or
        anything :func:`pmrisk.margin` rejects in a batch, naming the snapshot time).

    Examples
    --------
    >>> import pmrisk
    >>> from pmrisk import samples
    >>> h = samples.history(days=2, accounts=3, step_minutes=240)
    >>> r = pmrisk.backtest(h["positions"], h["instruments"], h["market"], h["index"],
    ...                     h["balances"], model="deribit_pme", progress=False)
    >>> r.accounts.num_rows, r.accounts.column_names[:2]
    (36, ['account', 'time'])
    """
    t0 = _time.perf_counter()
    model = Model.coerce(model)
    wanted = wanted_tables(tables)
    if "accounts" not in wanted:
        wanted = ("accounts",) + wanted
    fill = check_mode(fill_market)
    given = {"positions": positions, "instruments": instruments, "market": market,
             "index": index, "balances": balances, "open_orders": open_orders,
             "reserves": reserves}
    for name in INPUTS[:4]:
        if given[name] is None:
            raise MarginError(name, None, "a table or a Parquet dataset (positions, "
                              "instruments, market and index are required)")
    batch_rows = _check_batch_rows(batch_rows)
    _check_client(client)
    if out is not None:
        out = check_out(out, {k: input_paths(v) for k, v in given.items() if v is not None},
                        overwrite)
    sources = {k: _Source(k, v) for k, v in given.items() if v is not None}
    times, batches = _plan(sources, batch_rows, fill)
    schedule = _schedule(calibrate)
    if schedule is not None:
        batches, starts = _split_periods(batches, times, schedule)
    static = {k: s.whole() for k, s in sources.items() if not s.timed}
    bar = _Progress(progress, sum(b.rows for b in batches), len(batches))
    staging = _Staging(out, wanted) if out is not None else None

    def job(b, carry):
        m = model if schedule is None else schedule.model_before(starts[b.index], model)
        return _Job(b.index, b.rows, m, wanted, fill, staging and staging.path, carry)

    def cut(b):
        return {k: s.slice(b.lo, b.hi) for k, s in sources.items() if s.timed}

    try:
        if client is None:
            dones, carry = [], None
            for b in batches:
                parts = {k: _read(p) for k, p in cut(b).items()}
                dones.append(_run_batch(job(b, carry), {**static, **parts}))
                if fill == "forward":
                    carry = advance_carry(carry, parts)
                bar.update(dones[-1])
        else:
            dones = _run_on_dask(client, batches, sources, static, cut, job, fill, bar, model)
        if staging is not None:
            staging.commit()
    except BaseException:
        if staging is not None:
            staging.abort()
        raise
    bar.close()
    timings = _timings(dones, t0, len(batches))
    if out is not None:
        return BacktestOutput(out, wanted, timings["snapshots"], len(batches), timings)
    if not dones:
        return margin(**{k: (s.whole().slice(0, 0) if s.timed else static[k])
                         for k, s in sources.items()}, model=model, tables=wanted)
    return _combine(dones, wanted, timings)


def _check_batch_rows(batch_rows):
    ok = not isinstance(batch_rows, bool) and isinstance(
        batch_rows, (int, float, np.integer, np.floating))
    if ok and isinstance(batch_rows, (float, np.floating)):
        ok = bool(np.isfinite(batch_rows)) and float(batch_rows).is_integer()
    if not ok or not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise MarginError("arguments", "batch_rows", "a whole number of account-state rows "
                          f"per batch from 1 to {MAX_BATCH_ROWS:,} (memory per batch follows "
                          f"it; default {BATCH_ROWS:,}), got {batch_rows!r}")
    return int(batch_rows)


def _check_client(client):
    needs = ("submit", "scatter", "run", "cancel", "scheduler_info")
    if client is not None and not all(callable(getattr(client, k, None)) for k in needs):
        raise MarginError("arguments", "client", "a dask.distributed.Client (or None to run "
                          f"in this process), got {type(client).__name__}")


def _schedule(calibrate):
    if calibrate is None or isinstance(calibrate, CalibrationSchedule):
        return calibrate
    if not isinstance(calibrate, dict) or "prices" not in calibrate:
        raise MarginError("arguments", "calibrate", "a dict {\"prices\": table, \"every\": "
                          "\"1d\", ...} or a pmrisk.CalibrationSchedule, got "
                          f"{type(calibrate).__name__}")
    prices = calibrate["prices"]
    if isinstance(prices, (str, os.PathLike)) or type(prices).__module__.startswith(
            "pyarrow._dataset"):                # a Parquet file or dataset, as other inputs
        prices = _Source("prices", prices).whole()
    return CalibrationSchedule(**{**calibrate, "prices": prices})


def _split_periods(batches, times, schedule):
    """Cut the batches where the calibration period changes: ``(batches, {index: period
    start})``, every batch's times in one period."""
    out, starts = [], {}
    for b in batches:
        i0 = 0 if b.lo is None else int(np.searchsorted(times, b.lo))
        i1 = int(np.searchsorted(times, b.hi))
        period = np.array([schedule.period_start(t) for t in times[i0:i1].tolist()])
        cuts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]]) if len(period) else \
            np.zeros(1, dtype=np.int64)
        ends = np.r_[cuts[1:], i1 - i0]
        for k, (a, e) in enumerate(zip(cuts, ends)):
            lo = b.lo if k == 0 else int(times[i0 + a])
            hi = b.hi if e == i1 - i0 else int(times[i0 + e])
            rows = b.rows * int(e - a) // max(i1 - i0, 1)
            starts[len(out)] = int(period[a]) if len(period) else \
                schedule.period_start(b.hi)
            out.append(_Batch(len(out), lo, hi, rows, int(e - a)))
    return out, starts


def _run_on_dask(client, batches, sources, static, cut, job, fill, bar, model):
    try:
        from distributed import as_completed
    except ImportError:                                  # pragma: no cover
        raise MarginError("arguments", "client", "dask.distributed installed: pip install "
                          "'pmrisk[dask]'") from None
    client.run(_warm_worker, model)                      # every worker: its kernels loaded
    n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
    window = 2 * n_workers
    static_f = {k: client.scatter(t, broadcast=True, hash=False) for k, t in static.items()}
    carries = []
    if fill == "forward":                                # the carry into each batch, in order
        carry = None
        for b in batches:
            carries.append(carry)
            parts = cut(b)
            carry = advance_carry(carry, {k: _read(parts[k]) for k in ("market", "index")
                                          if k in parts})
    tag = uuid.uuid4().hex[:8]

    def submit(b):
        parts = {}
        for k, p in cut(b).items():
            parts[k] = p if isinstance(p, _DatasetSlice) else client.scatter(p, hash=False)
        return client.submit(_run_batch, job(b, carries[b.index] if carries else None),
                             {**static_f, **parts}, pure=False,
                             key=f"pmrisk-backtest-{tag}-{b.index:06d}")

    pending = iter(batches)
    live = {}                  # submitted, not yet collected (a result is released once read)
    for b in itertools.islice(pending, window):
        live[b.index] = submit(b)
    done = {}
    ac = as_completed(list(live.values()))
    try:
        for fut in ac:
            d = fut.result()
            del live[d.index]
            done[d.index] = d
            bar.update(d)
            nxt = next(pending, None)
            if nxt is not None:
                live[nxt.index] = submit(nxt)
                ac.add(live[nxt.index])
    except BaseException:
        client.cancel(list(live.values()))
        raise
    return [done[b.index] for b in batches]

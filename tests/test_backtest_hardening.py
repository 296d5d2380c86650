"""Hardening of ``pmrisk.backtest`` and the command line against bad input.

Every case asserts a MarginError (its table, column and rows), and that no input file changed:
every file under the input directories is hashed before and after the call.  ``out`` is never
a path an input reads from (whatever ``overwrite`` says), and a failed or interrupted run leaves
an earlier output as it was.  On the command line, bad input is one line on stderr and exit 2.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import pmrisk
from pmrisk.cli import commands as cli
from pmrisk import samples

PME = "deribit_pme"
PART = "part-00001.parquet"          # the second part of a dataset (the first sets the schema)
HIST = dict(days=2, accounts=4, step_minutes=240)          # 12 times, 48 snapshots, 2 parts


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("source") / "data"
    samples.history(**HIST, out=str(root))
    return root


@pytest.fixture
def data(source, tmp_path):
    """A fresh copy of the sample history's datasets (a test may damage it)."""
    d = tmp_path / "data"
    shutil.copytree(source, d)
    return d


@pytest.fixture(scope="module")
def want():
    return pmrisk.margin(**samples.history(**HIST), model=PME)


def digest(*roots):
    """sha256 of every file under ``roots`` (a file root: itself)."""
    out = {}
    for root in map(str, roots):
        files = [root] if os.path.isfile(root) else [
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
        for f in files:
            with open(f, "rb") as fh:
                out[f] = hashlib.sha256(fh.read()).hexdigest()
    return out


def leftovers(parent):
    """Staging directories a backtest left beside its ``out``."""
    return [e for e in os.listdir(parent) if ".pmrisk-" in e]


def inputs(d):
    return cli.data_inputs(str(d))


def earlier_output(data, out, tables=("accounts",)):
    return pmrisk.backtest(**inputs(data), model=PME, out=str(out), tables=tables,
                           progress=False)


# -- damaged Parquet parts: one check, in open_dataset (and reading() for what it misses) ------

def _rewrite(path, change):
    t = pq.read_table(path)
    pq.write_table(change(t), path)


def _set(col, f):
    def change(t):
        return t.set_column(t.schema.get_field_index(col), col, f(t[col]))
    return change


def _corrupt_page(path, col):
    """Overwrite the bytes of one column chunk (its page headers no longer parse)."""
    md = pq.ParquetFile(path).metadata
    c = md.row_group(0).column(md.schema.to_arrow_schema().get_field_index(col))
    start = c.dictionary_page_offset or c.data_page_offset
    b = bytearray(open(path, "rb").read())
    b[start:start + c.total_compressed_size] = b"\xff" * c.total_compressed_size
    open(path, "wb").write(bytes(b))


def _instruments_dataset(d, change):
    """instruments as a directory of two parts, the second changed."""
    t = pq.read_table(d / "instruments.parquet")
    os.remove(d / "instruments.parquet")
    (d / "instruments").mkdir()
    pq.write_table(t.slice(0, 5), d / "instruments" / "part-00000.parquet")
    pq.write_table(change(t.slice(5)), d / "instruments" / PART)


PARTS = {
    # name: (damage(data dir), table, column)
    "empty file": (lambda d: open(d / "positions" / PART, "wb").close(), "positions", None),
    "truncated": (lambda d: open(d / "positions" / PART, "r+b").truncate(100),
                  "positions", None),
    "not parquet": (lambda d: (d / "balances" / PART).write_text("time,account\n"),
                    "balances", None),
    "time as strings": (lambda d: _rewrite(d / "positions" / PART,
                                           _set("time", lambda c: c.cast(pa.string()))),
                        "positions", "time"),
    "time as int64": (lambda d: _rewrite(d / "market" / PART,
                                         _set("time", lambda c: c.cast(pa.int64()))),
                      "market", "time"),
    "time missing": (lambda d: _rewrite(d / "index" / PART,
                                        lambda t: t.drop_columns(["time"])), "index", "time"),
    "column of another type": (
        lambda d: _rewrite(d / "positions" / PART, _set("quantity", lambda c: pa.array(
            [[x] for x in c.to_pylist()], pa.list_(pa.float64())))), "positions", "quantity"),
    "corrupt column chunk": (lambda d: _corrupt_page(str(d / "market" / PART), "mark_price"),
                             "market", "mark_price"),
    "instruments part of another type": (
        lambda d: _instruments_dataset(d, _set("strike", lambda c: pa.array(
            [[x] for x in c.to_pylist()], pa.list_(pa.float64())))), "instruments", "strike"),
}


@pytest.mark.parametrize("case", list(PARTS))
def test_damaged_part_names_table_file_and_column(case, data, tmp_path):
    damage, table, column = PARTS[case]
    damage(data)
    before = digest(data)
    out = tmp_path / "out"
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**inputs(data), model=PME, out=str(out), batch_rows=20,
                        progress=False)
    assert (e.value.table, e.value.column, e.value.rows) == (table, column, [])
    assert PART in str(e.value)
    assert digest(data) == before
    assert not out.exists() and leftovers(tmp_path) == []


def test_damaged_part_is_read_by_the_cli_too(data, capsys):
    PARTS["time as strings"][0](data)
    before = digest(data)
    argv = ["margin", "--positions", str(data / "positions"), "--instruments",
            str(data / "instruments.parquet"), "--market", str(data / "market"),
            "--index", str(data / "index")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "positions.time" in err and PART in err
    assert digest(data) == before


# -- arguments -------------------------------------------------------------------------------

ARGUMENTS = [("batch_rows", v) for v in (float("nan"), "1000", 1e30, 0, -3, True, 2.5, 10**13,
                                         None, np.float64("inf"))] + \
            [("client", v) for v in ("x", 5, object())] + [("out", 3.5), ("out", b"results"),
                                                            ("out", ""), ("out", "  ")]


@pytest.mark.parametrize("arg,value", ARGUMENTS, ids=[f"{a}={v!r}" for a, v in ARGUMENTS])
def test_bad_arguments(arg, value, data, tmp_path):
    before = digest(data)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**inputs(data), model=PME, progress=False, **{arg: value})
    assert (e.value.table, e.value.column, e.value.rows) == ("arguments", arg, [])
    assert digest(data) == before and leftovers(tmp_path) == []


def test_an_empty_out_says_the_path_is_empty(data):
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**inputs(data), model=PME, progress=False, out="")
    assert "empty path" in str(e.value) and "contains" not in str(e.value)


def test_batch_rows_accepts_whole_numbers(source, want):
    for v in (20, np.int32(20), 20.0):
        r = pmrisk.backtest(**inputs(source), model=PME, batch_rows=v, progress=False)
        assert r.accounts.equals(want.accounts) and r.timings["batches"] > 1


# -- out: never an input's path, new or empty (or an earlier output with overwrite) ------------

def _file(data, tmp):
    (tmp / "file").write_text("not a directory")
    return tmp / "file", False


def _under_file(data, tmp):
    (tmp / "file").write_text("not a directory")
    return tmp / "file" / "out", False


def _not_empty(data, tmp):
    earlier_output(data, tmp / "res")
    return tmp / "res", False


def _foreign(data, tmp):
    earlier_output(data, tmp / "res")
    (tmp / "res" / "notes.txt").write_text("mine")
    return tmp / "res", True


def _foreign_in_table_dir(data, tmp):
    earlier_output(data, tmp / "res")
    (tmp / "res" / "accounts" / "notes.txt").write_text("mine")
    return tmp / "res", True


def _symlink_to_data(data, tmp):
    os.symlink(data, tmp / "link")
    return tmp / "link", True


def _symlink_to_input(data, tmp):
    os.symlink(data / "positions", tmp / "link")
    return tmp / "link", True


OUT = {
    # name: (setup(data, tmp) -> (out, overwrite), words the message holds)
    "an existing file": (_file, ["not a directory"]),
    "under a file": (_under_file, ["can be written"]),
    "not empty, no overwrite": (_not_empty, ["overwrite=True", "accounts"]),
    "other files, overwrite": (_foreign, ["notes.txt"]),
    "other files in a table directory, overwrite": (_foreign_in_table_dir, ["accounts"]),
    "holds the inputs (issue 10)": (lambda d, t: (d, True), ["contains", "positions"]),
    "is an input": (lambda d, t: (d / "positions", True), ["is the positions input"]),
    "is an input file": (lambda d, t: (d / "instruments.parquet", True),
                         ["is the instruments input"]),
    "inside an input": (lambda d, t: (d / "positions" / "results", False),
                        ["is inside the positions input"]),
    "symlink to the data": (_symlink_to_data, ["contains"]),
    "symlink to an input": (_symlink_to_input, ["is the positions input"]),
    "relative path with ..": (lambda d, t: (d / "positions" / ".." / "market", True),
                              ["is the market input"]),
}


@pytest.mark.parametrize("case", list(OUT))
def test_out_is_refused(case, data, tmp_path):
    setup, words = OUT[case]
    out, overwrite = setup(data, tmp_path)
    before = digest(data, out) if os.path.exists(out) else digest(data)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**inputs(data), model=PME, out=str(out), overwrite=overwrite,
                        tables=("accounts", "positions"), progress=False)
    assert (e.value.table, e.value.column, e.value.rows) == ("arguments", "out", [])
    for w in words:
        assert w in str(e.value)
    assert (digest(data, out) if os.path.exists(out) else digest(data)) == before
    assert leftovers(tmp_path) == [] and leftovers(data) == []


def test_out_relative_to_the_working_directory(data, monkeypatch):
    monkeypatch.chdir(data)
    before = digest(data)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**{k: os.path.abspath(v) for k, v in inputs(".").items()}, model=PME,
                        out="positions", overwrite=True, progress=False)
    assert e.value.column == "out" and "is the positions input" in str(e.value)
    with pytest.raises(pmrisk.MarginError) as e:                   # "." holds every input
        pmrisk.backtest(**inputs(data), model=PME, out=".", overwrite=True, progress=False)
    assert e.value.column == "out" and "contains" in str(e.value)
    assert digest(data) == before


def test_out_inside_a_dataset_object(data):
    positions = ds.dataset(str(data / "positions"), format="parquet")
    before = digest(data)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**dict(inputs(data), positions=positions), model=PME,
                        out=str(data / "positions"), overwrite=True, progress=False)
    assert e.value.column == "out" and PART.replace("00001", "00000") in str(e.value)
    assert digest(data) == before


def test_out_into_an_empty_directory_and_overwrite_replaces_the_whole_output(data, tmp_path,
                                                                           want):
    out = tmp_path / "res"
    out.mkdir()
    o = pmrisk.backtest(**inputs(data), model=PME, out=str(out), tables=("accounts", "units"),
                        batch_rows=20, progress=False)
    assert o.read("units").equals(want.units) and o.path == str(out)
    o = pmrisk.backtest(**inputs(data), model=PME, out=str(out), overwrite=True,
                        progress=False)
    assert sorted(os.listdir(out)) == ["accounts"]                  # no stale units
    assert o.read().equals(want.accounts)
    assert leftovers(tmp_path) == []


def _failing_later(data):
    """positions whose second part (a later batch) holds a symbol nobody lists."""
    _rewrite(data / "positions" / PART, _set("symbol", lambda c: pa.array(
        ["NOPE"] + c.to_pylist()[1:], pa.string())))


@pytest.mark.parametrize("earlier", [True, False], ids=["earlier output", "new out"])
def test_a_failed_run_leaves_out_as_it_was(earlier, data, tmp_path):
    out = tmp_path / "res"
    if earlier:
        earlier_output(data, out, tables=("accounts", "positions"))
    _failing_later(data)
    before = digest(data, out) if earlier else digest(data)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**inputs(data), model=PME, out=str(out), overwrite=True, batch_rows=20,
                        progress=False)
    assert (e.value.table, e.value.column) == ("positions", "symbol")
    assert e.value.rows and e.value.rows[0][1] == "NOPE"
    assert (digest(data, out) if earlier else digest(data)) == before
    assert out.exists() == earlier and leftovers(tmp_path) == []


class _Interrupt:
    """A progress stream whose first line is a Ctrl-C (after the first batch)."""

    def write(self, text):
        raise KeyboardInterrupt

    def flush(self):
        pass


def test_an_interrupted_run_leaves_out_as_it_was(data, tmp_path):
    out = tmp_path / "res"
    earlier_output(data, out)
    before = digest(data, out)
    with pytest.raises(KeyboardInterrupt):
        pmrisk.backtest(**inputs(data), model=PME, out=str(out), overwrite=True, batch_rows=20,
                        progress=_Interrupt())
    assert digest(data, out) == before and leftovers(tmp_path) == []


# -- the command line: one line, exit 2, the file named, no input changed -------------------------

def _book_files(tmp):
    book = samples.demo_book()
    for name in ("positions", "instruments", "market", "index", "balances"):
        pq.write_table(book[name], tmp / f"{name}.parquet")
    return ["--positions", str(tmp / "positions.parquet"), "--instruments",
            str(tmp / "instruments.parquet"), "--market", str(tmp / "market.parquet"),
            "--index", str(tmp / "index.parquet"), "--balances", str(tmp / "balances.parquet")]


def _ticks(tmp, name, write):
    write(tmp / name)
    return ["monitor", "--no-live", "--replay", str(tmp / name)] + _book_files(tmp) + [
        "--valuation-time", samples.DEMO_TIME]


def _no_rows(path):
    pq.write_table(pa.table({"time": pa.array([], pa.timestamp("ns", tz="UTC")),
                             "kind": pa.array([], pa.string())}), path)


def _backtest(data, out, *extra):
    return ["backtest", "--data", str(data), "--out", str(out), "--model", PME,
            "--no-progress", *extra]


def _unknown_type(data, tmp):
    _write(tmp / "index.txt", b"underlying,index_price\nBTC,1\n")
    return ["margin"] + [a.replace("index.parquet", "index.txt") for a in _book_files(tmp)]


def _write(path, content):
    path.write_bytes(content)
    return path


def _dataset_margin(d):
    return ["margin", "--positions", str(d / "positions"), "--instruments",
            str(d / "instruments.parquet"), "--market", str(d / "market"), "--index",
            str(d / "index"), "--balances", str(d / "balances")]


CLI = {
    # name: (argv(data, tmp), words stderr holds)
    "monitor: ticks without rows": (lambda d, t: _ticks(t, "ticks.parquet", _no_rows),
                                    ["ticks.time", "ticks.parquet"]),
    "monitor: empty ticks file": (lambda d, t: _ticks(t, "ticks.csv",
                                                      lambda p: p.write_bytes(b"")),
                                  ["ticks", "ticks.csv", "--replay"]),
    "monitor: header-only ticks csv": (
        lambda d, t: _ticks(t, "ticks.csv", lambda p: p.write_text("time,kind,symbol\n")),
        ["ticks.time", "ticks.csv"]),
    "monitor: no such ticks file": (lambda d, t: _ticks(t, "x.csv", lambda p: None),
                                    ["--replay", "x.csv"]),
    "monitor: a tick of an unknown symbol": (
        lambda d, t: _ticks(t, "ticks.csv", lambda p: p.write_text(
            "time,kind,symbol,mark_price\n2024-06-17T08:00:01Z,market,NOPE,1.0\n")),
        ["market.symbol", "NOPE", "ticks.csv"]),
    "margin: unknown file type": (_unknown_type, ["index", "index.txt", "unknown"]),
    "margin: empty csv": (lambda d, t: ["margin"] + _book_files(t) + [
        "--reserves", str(_write(t / "reserves.csv", b""))], ["reserves", "reserves.csv"]),
    "margin: corrupt parquet": (lambda d, t: ["margin"] + _book_files(t)[:-2] + [
        "--balances", str(_write(t / "b.parquet", b"PAR1 nope"))], ["balances", "b.parquet"]),
    "margin: a dataset part of another type": (
        lambda d, t: (PARTS["time as int64"][0](d), _dataset_margin(d))[1],
        ["market.time", PART]),
    "margin: --out over the inputs": (lambda d, t: ["margin"] + _book_files(t) + [
        "--valuation-time", samples.DEMO_TIME, "--out", str(t)], ["--out", "positions"]),
    "margin: expired by now": (lambda d, t: ["margin"] + _book_files(t),
                               ["past expiry", "--valuation-time"]),
    "margin: a bad valuation time": (lambda d, t: ["margin"] + _book_files(t) + [
        "--valuation-time", "yesterday"], ["valuation_time"]),
    "margin: a bad model": (lambda d, t: ["margin"] + _book_files(t) + [
        "--model", "nope"], ["nope"]),
    "backtest --out the data (issue 10)": (
        lambda d, t: _backtest(d, d, "--overwrite", "--tables", "positions"),
        ["--out", "contains", "positions"]),
    "backtest --out an input": (lambda d, t: _backtest(d, d / "market", "--overwrite"),
                                ["--out", "is the market input"]),
    "backtest --out not empty": (
        lambda d, t: (earlier_output(d, t / "res"), _backtest(d, t / "res"))[1],
        ["--overwrite", "--out"]),
    "backtest a damaged part": (lambda d, t: (PARTS["truncated"][0](d),
                                              _backtest(d, t / "res"))[1],
                                ["positions", PART]),
    "backtest --batch-rows 0": (lambda d, t: _backtest(d, t / "res", "--batch-rows", "0"),
                                ["batch_rows"]),
    "backtest --scheduler not an address": (
        lambda d, t: _backtest(d, t / "res", "--scheduler", "bogus::x"), ["--scheduler"]),
    "backtest: no data": (lambda d, t: _backtest(t / "none", t / "res"), ["positions"]),
    "samples history --out a file": (
        lambda d, t: ["samples", "history", "--out", str(_write(t / "f", b"x"))],
        ["arguments.out", "not a directory"]),
    "samples history --out not empty": (
        lambda d, t: ["samples", "history", "--out", str(d), "--days", "1"],
        ["arguments.out", "holds files"]),
    "samples history --step-minutes 0": (
        lambda d, t: ["samples", "history", "--out", str(t / "h"), "--step-minutes", "0"],
        ["arguments.step_minutes"]),
    "samples history --accounts -2": (
        lambda d, t: ["samples", "history", "--out", str(t / "h"), "--accounts", "-2"],
        ["arguments.accounts"]),
    "demo: a bad model": (lambda d, t: ["demo", "--model", "nope"], ["nope"]),
}


@pytest.mark.parametrize("case", list(CLI))
def test_cli_bad_input_is_one_line_and_exit_2(case, data, tmp_path, capsys):
    argv_of, words = CLI[case]
    work = tmp_path / "work"
    work.mkdir()
    argv = argv_of(data, work)
    before = digest(data, work)
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmrisk: ") and err.count("\n") == 1 and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    if "--out" in words:
        assert "overwrite=True" not in err and "out=" not in err
    assert digest(data, work) == before
    assert leftovers(data) == [] and leftovers(work) == []


def test_cli_as_a_process_prints_no_traceback(tmp_path):
    argv = _ticks(tmp_path, "ticks.parquet", _no_rows)
    p = subprocess.run([sys.executable, "-m", "pmrisk", *argv], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and "ticks.time" in p.stderr


def test_margin_reads_the_folders_samples_history_writes(source, want, tmp_path, capsys):
    out = tmp_path / "res"
    assert cli.main(_dataset_margin(source) + ["--model", PME, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "48 account rows" in text and "time" in text          # one row per snapshot
    assert pq.read_table(out / "accounts.parquet").equals(want.accounts)


def test_margin_help_names_the_valuation_time(capsys):
    with pytest.raises(SystemExit):
        cli.main(["margin", "--help"])
    text = capsys.readouterr().out
    assert "--valuation-time TIME" in text and "default: now" in text


def test_demo_help_counts_the_liquidations_the_demo_shows(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert cli.main(["demo", "--monitor"]) == 0
    shown = capsys.readouterr().out
    accounts = {line.split()[2] for line in shown.splitlines()
                if line.strip().startswith("liquidation plan")}
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    assert f"{words[len(accounts)]} reach" in helptext


def test_backtest_cli_overwrite_replaces_an_earlier_output(data, tmp_path, want, capsys):
    out = tmp_path / "res"
    assert cli.main(_backtest(data, out, "--tables", "accounts,units")) == 0
    assert cli.main(_backtest(data, out, "--overwrite")) == 0
    assert sorted(os.listdir(out)) == ["accounts"]
    acc = pq.read_table(out / "accounts")
    assert acc.equals(want.accounts)
    assert pc.all(pc.greater_equal(acc["maintenance_margin"], 0)).as_py()

"""``pmrisk.backtest``: streamed batches (tables and Parquet datasets) and Dask equal one
``margin()`` call over the whole history exactly; ``out=DIR``; progress; forward fill across
batches; bad inputs; the ``samples history`` and ``backtest`` commands."""

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import pmrisk
from pmrisk.cli import commands as cli
from pmrisk import samples

ALL = ("accounts", "units", "positions")
TIMED = ("positions", "market", "index", "balances")
PME = "deribit_pme"


@pytest.fixture(scope="module")
def hist():
    """3 days every 2 hours, 12 accounts: 36 times, 432 snapshots, a crash on day 2."""
    return samples.history(days=3, accounts=12, step_minutes=120, seed=1)


@pytest.fixture(scope="module")
def one_call(hist):
    return {m: pmrisk.margin(**hist, model=m) for m in (PME, "standard")}


def write_dataset(tables, root, rows_per_file=500):
    """Each timed table as a directory of small Parquet files (several per batch), the
    static instruments as one file."""
    paths = {}
    for name, t in tables.items():
        if "time" not in t.column_names:
            paths[name] = str(root / f"{name}.parquet")
            pq.write_table(t, paths[name])
            continue
        d = root / name
        d.mkdir(parents=True)
        for k, start in enumerate(range(0, max(t.num_rows, 1), rows_per_file)):
            pq.write_table(t.slice(start, rows_per_file), d / f"part-{k:04d}.parquet",
                           row_group_size=128)
        paths[name] = str(d)
    return paths


@pytest.fixture(scope="module")
def hist_paths(hist, tmp_path_factory):
    return write_dataset(hist, tmp_path_factory.mktemp("history"))


def assert_equal(got, want, names=ALL):
    for name in names:
        assert getattr(got, name).equals(getattr(want, name)), name


# -- streaming equals one call -----------------------------------------------------------

@pytest.mark.parametrize("model", [PME, "standard"])
@pytest.mark.parametrize("source", ["tables", "dataset"])
def test_streaming_equals_one_margin_call(hist, hist_paths, one_call, source, model):
    inputs = hist if source == "tables" else hist_paths
    r = pmrisk.backtest(**inputs, model=model, tables=ALL, batch_rows=300, progress=False)
    assert r.timings["batches"] >= 5
    assert r.timings["snapshots"] == r.accounts.num_rows == 36 * 12
    assert_equal(r, one_call[model])


def test_unsorted_tables_stream_like_one_call(hist, one_call):
    rng = np.random.default_rng(0)
    shuffled = {k: (t.take(pa.array(rng.permutation(t.num_rows))) if k in TIMED else t)
                for k, t in hist.items()}
    want = pmrisk.margin(**shuffled, model=PME)
    r = pmrisk.backtest(**shuffled, model=PME, tables=ALL, batch_rows=300, progress=False)
    assert_equal(r, want)


def test_default_builds_accounts_only(hist, one_call):
    r = pmrisk.backtest(**hist, model=PME, progress=False)
    assert r.units is None and r.positions is None
    assert r.accounts.equals(one_call[PME].accounts)


def test_the_history_reaches_liquidation(one_call):
    status = one_call["standard"].accounts["status"].to_pylist()
    assert "liquidation" in status and "normal" in status
    first = one_call["standard"].accounts.slice(0, 12)["status"].to_pylist()
    assert "liquidation" not in first


def test_history_is_deterministic(hist):
    again = samples.history(days=3, accounts=12, step_minutes=120, seed=1)
    other = samples.history(days=3, accounts=12, step_minutes=120, seed=2)
    for k in hist:
        assert again[k].equals(hist[k]), k
    assert not other["index"].equals(hist["index"])
    qty = hist["positions"].group_by("symbol").aggregate([("quantity", "count_distinct")])
    assert max(qty["quantity_count_distinct"].to_pylist()) > 1       # books evolve


# -- out=DIR ------------------------------------------------------------------------------

def test_out_writes_parquet_datasets_equal_to_the_returned_tables(hist_paths, one_call,
                                                                  tmp_path):
    o = pmrisk.backtest(**hist_paths, model=PME, tables=ALL, batch_rows=300, out=tmp_path,
                        progress=False)
    assert isinstance(o, pmrisk.BacktestOutput)
    assert o.snapshots == 36 * 12 and o.batches >= 5 and o.tables == ALL
    parts = sorted(os.listdir(tmp_path / "accounts"))
    assert parts[0] == "part-000000.parquet" and len(parts) == o.batches
    for name in ALL:
        assert o.read(name).equals(getattr(one_call[PME], name)), name
        assert pq.read_table(tmp_path / name).equals(getattr(one_call[PME], name)), name
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**hist_paths, model=PME, out=tmp_path, progress=False)
    assert e.value.column == "out" and "overwrite" in str(e.value)
    o2 = pmrisk.backtest(**hist_paths, model=PME, out=tmp_path, overwrite=True,
                         progress=False)
    assert o2.read().equals(one_call[PME].accounts)


# -- progress -----------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line(hist, capsys):
    log = io.StringIO()
    pmrisk.backtest(**hist, model=PME, batch_rows=300, progress=log)
    text = log.getvalue()
    assert "432 snapshots in" in text and "snapshots/s" in text and "batches" in text
    term = _Terminal()
    pmrisk.backtest(**hist, model=PME, batch_rows=300, progress=term)
    assert "\r" in term.getvalue() and "ETA" in term.getvalue()
    assert term.getvalue().endswith("\n")
    pmrisk.backtest(**hist, model=PME, progress=False)
    pmrisk.backtest(**hist, model=PME)            # stderr is no terminal here: silent
    assert capsys.readouterr().err == ""


# -- forward fill across batches -----------------------------------------------------------

@pytest.fixture(scope="module")
def sparse(hist):
    """Options marked only every third time (their rows at the other times dropped), so
    most snapshots need the carry, across batch boundaries too."""
    m = hist["market"]
    times = np.unique(m["time"].cast(pa.int64()).to_numpy())
    keep_t = pa.array(times[::3]).cast(m.schema.field("time").type)
    is_opt = pc.match_substring_regex(m["symbol"], r"-[CP]$")
    keep = pc.or_(pc.invert(is_opt), pc.is_in(m["time"], value_set=keep_t))
    return dict(hist, market=m.filter(keep))


def test_forward_fill_streams_like_one_call(sparse, tmp_path):
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**sparse, model=PME, progress=False)
    msg = str(e.value)
    assert e.value.time is not None and ("-C'" in msg or "-P'" in msg)
    want = pmrisk.margin(**sparse, model=PME, fill_market="forward")
    for inputs in (sparse, write_dataset(sparse, tmp_path)):
        r = pmrisk.backtest(**inputs, model=PME, tables=ALL, batch_rows=300,
                            fill_market="forward", progress=False)
        assert r.timings["batches"] >= 5
        assert_equal(r, want)


# -- Dask ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["threads", "processes"])
def dask_client(request):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                       processes=request.param == "processes",
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_equals_single_process(dask_client, hist, hist_paths, sparse, one_call, tmp_path):
    single = pmrisk.backtest(**hist, model=PME, tables=ALL, batch_rows=300, progress=False)
    for inputs in (hist, hist_paths):
        r = pmrisk.backtest(**inputs, model=PME, tables=ALL, batch_rows=300,
                            client=dask_client, progress=False)
        assert r.timings["batches"] == single.timings["batches"]
        assert_equal(r, single)
        assert_equal(r, one_call[PME])
    o = pmrisk.backtest(**hist_paths, model=PME, batch_rows=300, client=dask_client,
                        out=tmp_path / "out", progress=False)
    assert o.read().equals(single.accounts)
    filled = pmrisk.backtest(**sparse, model=PME, batch_rows=300, fill_market="forward",
                             client=dask_client, progress=False)
    assert filled.accounts.equals(pmrisk.margin(**sparse, model=PME, tables=("accounts",),
                                                fill_market="forward").accounts)
    with pytest.raises(pmrisk.MarginError) as e:        # raised on a worker, same error
        pmrisk.backtest(**sparse, model=PME, batch_rows=300, client=dask_client,
                        progress=False)
    assert e.value.table == "positions" and e.value.time is not None


# -- bad inputs -----------------------------------------------------------------------------

def test_missing_dataset_path_names_it(hist_paths, tmp_path):
    missing = str(tmp_path / "nowhere" / "market")
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**dict(hist_paths, market=missing), progress=False)
    assert e.value.table == "market" and missing in str(e.value)


def test_bad_arguments(hist, tmp_path):
    static = {k: (t.drop_columns(["time"]) if "time" in t.column_names else t)
              for k, t in hist.items()}
    with pytest.raises(pmrisk.MarginError, match="time column"):
        pmrisk.backtest(**static, progress=False)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**hist, progress="yes")
    assert e.value.column == "progress"
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**hist, tables=("accounts", "risk"), progress=False)
    assert e.value.column == "tables"
    iso = hist["positions"].set_column(0, "time", pc.cast(hist["positions"]["time"],
                                                          pa.string()))
    pq.write_table(iso, tmp_path / "positions.parquet")
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.backtest(**dict(hist, positions=str(tmp_path / "positions.parquet")),
                        progress=False)
    assert e.value.table == "positions" and e.value.column == "time"


# -- the command line -------------------------------------------------------------------------

def test_cli_samples_history_then_backtest(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    assert cli.main(["samples", "history", "--out", str(data), "--days", "2", "--accounts",
                     "6", "--step-minutes", "240"]) == 0
    assert sorted(os.listdir(data)) == ["balances", "index", "instruments.parquet", "market",
                                        "positions"]
    assert cli.main(["backtest", "--data", str(data), "--out", str(out), "--model", PME,
                     "--tables", "accounts,positions", "--batch-rows", "40"]) == 0
    text = capsys.readouterr().out
    assert "72 snapshots" in text and "status" in text
    h = samples.history(days=2, accounts=6, step_minutes=240)
    want = pmrisk.margin(**h, model=PME)
    assert pq.read_table(out / "accounts").equals(want.accounts)
    assert pq.read_table(out / "positions").equals(want.positions)
    assert not (out / "units").exists()
    assert cli.main(["backtest", "--data", str(data), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert cli.main(["backtest", "--data", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "positions" in capsys.readouterr().err


@pytest.mark.parametrize("rows", ["nan", "x", "0", "1.5", "inf"])
def test_cli_backtest_bad_batch_rows_is_one_line(tmp_path, capsys, rows):
    data = tmp_path / "data"
    assert cli.main(["samples", "history", "--out", str(data), "--days", "1", "--accounts",
                     "2", "--step-minutes", "720"]) == 0
    assert cli.main(["backtest", "--data", str(data), "--out", str(tmp_path / "out"),
                     "--batch-rows", rows, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "batch_rows" in err
    assert not (tmp_path / "out").exists()


def test_cli_backtest_on_a_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    data = tmp_path / "data"
    assert cli.main(["samples", "history", "--out", str(data), "--days", "1", "--accounts",
                     "6", "--step-minutes", "240"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        assert cli.main(["backtest", "--data", str(data), "--out", str(tmp_path / "out"),
                         "--model", PME, "--batch-rows", "20", "--scheduler",
                         cluster.scheduler_address]) == 0
    assert "36 snapshots" in capsys.readouterr().out
    h = samples.history(days=1, accounts=6, step_minutes=240)
    assert pq.read_table(tmp_path / "out" / "accounts").equals(
        pmrisk.margin(**h, model=PME, tables=("accounts",)).accounts)

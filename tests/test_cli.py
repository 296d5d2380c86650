"""The command line: `pmrisk demo` and `pmrisk margin` (SPEC §13)."""

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from pmrisk import cli, samples


def test_demo_prints_every_account(capsys):
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    book = samples.demo_book()
    for a in set(book["positions"]["account"].to_pylist()):
        assert a in out
    for word in ("equity", "MM", "IM", "ratio", "status", "worst scenario", "timing",
                 "top MM contributors", "margin_call"):
        assert word in out


def test_demo_with_span(capsys):
    assert cli.main(["demo", "--model", "span"]) == 0
    assert "pmrisk demo" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow"])
def test_margin_reads_files_and_writes_results(tmp_path, capsys, fmt):
    book = samples.demo_book()
    paths = {}
    for name in ("positions", "instruments", "market", "index", "balances"):
        t = book[name]
        p = tmp_path / f"{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(t, p)
        elif fmt == "csv":
            pcsv.write_csv(t, p)
        else:
            feather.write_feather(t, p)
        paths[name] = str(p)
    out = tmp_path / "out"
    argv = ["margin"] + [a for k, v in paths.items() for a in (f"--{k}", v)] + [
        "--valuation-time", book["valuation_time"], "--out", str(out), "--risk-vectors"]
    assert cli.main(argv) == 0
    acc = pq.read_table(out / "accounts.parquet")
    assert acc.num_rows == 6
    assert (out / "risk_vectors.parquet").exists()
    assert "nearly-liquidated" in capsys.readouterr().out


def test_margin_reports_input_errors(tmp_path, capsys):
    book = samples.demo_book()
    bad = book["positions"].set_column(1, "symbol", pa.array(
        ["NOPE"] + book["positions"]["symbol"].to_pylist()[1:]))
    paths = {}
    for name, t in (("positions", bad), ("instruments", book["instruments"]),
                    ("market", book["market"]), ("index", book["index"])):
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(t, paths[name])
    argv = ["margin"] + [a for k, v in paths.items() for a in (f"--{k}", v)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "positions.symbol" in err and "NOPE" in err

"""The command line: `pmrisk demo` and `pmrisk margin` (SPEC §13)."""

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from pmrisk.cli import commands as cli
from pmrisk import samples


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
        "--valuation-time", book["valuation_time"], "--out", str(out), "--risk-vectors",
        "positions"]
    assert cli.main(argv) == 0
    acc = pq.read_table(out / "accounts.parquet")
    assert acc.num_rows == 6
    assert (out / "unit_risk_vectors.parquet").exists()
    assert (out / "position_risk_vectors.parquet").exists()
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


def test_report_with_time_and_many_accounts(capsys):
    from pmrisk import margin
    b = samples.book(n_accounts=40, positions_per_account=3, seed=3)
    pos = b["positions"].add_column(0, "time", pa.array(
        [b["valuation_time"]] * b["positions"].num_rows).cast(pa.timestamp("ns", tz="UTC")))
    r = margin(pos, b["instruments"], b["market"], b["index"])
    cli.report(r, limit=10)
    out = capsys.readouterr().out
    assert "40 account rows; the 10 with the lowest margin ratio" in out
    assert out.count("acct-") == 10 and "2024-06-17T08:00:00Z" in out


def test_csv_numeric_looking_accounts_stay_strings(tmp_path, capsys):
    book = samples.demo_book()
    accounts = {a: str(1000 + i) for i, a in
                enumerate(sorted(set(book["positions"]["account"].to_pylist())))}
    pos = book["positions"].set_column(0, "account", pa.array(
        [accounts[a] for a in book["positions"]["account"].to_pylist()]))
    paths = {}
    for name, t in (("positions", pos), ("instruments", book["instruments"]),
                    ("market", book["market"]), ("index", book["index"])):
        paths[name] = str(tmp_path / f"{name}.csv")
        pcsv.write_csv(t, paths[name])
    argv = ["margin"] + [a for k, v in paths.items() for a in (f"--{k}", v)] + [
        "--valuation-time", book["valuation_time"]]
    assert cli.main(argv) == 0
    assert "1000" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["corrupt", "missing-model", "out-is-a-file"])
def test_cli_file_problems_are_reported_not_tracebacks(tmp_path, capsys, problem):
    book = samples.demo_book()
    paths = {}
    for name in ("positions", "instruments", "market", "index"):
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(book[name], paths[name])
    extra = ["--valuation-time", book["valuation_time"]]
    if problem == "corrupt":
        (tmp_path / "positions.parquet").write_bytes(b"not parquet at all")
    elif problem == "missing-model":
        extra += ["--model", str(tmp_path / "nope.toml")]
    else:
        (tmp_path / "file").write_text("x")
        extra += ["--out", str(tmp_path / "file")]
    argv = ["margin"] + [a for k, v in paths.items() for a in (f"--{k}", v)] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmrisk:") and "Traceback" not in err


def test_missing_toml_model_is_a_margin_error(tmp_path):
    import pmrisk
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.Model.coerce(str(tmp_path / "missing.toml"))
    assert "missing.toml" in str(e.value)


@pytest.mark.parametrize("argv, what", [
    (["--valuation-time", "2300-01-01"], "arguments.valuation_time"),
    (["calibrate", "--as-of", "9999-12-31"], "arguments.as_of")])
def test_a_time_outside_1677_2262_is_one_line(tmp_path, capsys, argv, what):
    book = samples.demo_book()
    if argv[0] == "calibrate":
        pq.write_table(samples.prices(days=30), tmp_path / "prices.parquet")
        argv = ["calibrate", "--prices", str(tmp_path / "prices.parquet"), *argv[1:],
                "--out", str(tmp_path / "m.toml")]
    else:
        paths = []
        for name in ("positions", "instruments", "market", "index", "balances"):
            pq.write_table(book[name], tmp_path / f"{name}.parquet")
            paths += [f"--{name}", str(tmp_path / f"{name}.parquet")]
        argv = ["margin", *paths, *argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pmrisk: input error: {what}: expected a time between 1677 and 2262")
    assert err.count("\n") == 1

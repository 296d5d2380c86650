"""Command-line inputs shared by the ``pmrisk`` commands (cli, the monitor and calibration
views): reading a table file, the book's file arguments, numbers as they read."""

import os

import pyarrow as pa

from ..errors import MarginError


def read_input(path, what):
    """The table of ``--WHAT PATH``: a Parquet, CSV or Arrow IPC file, or a directory of
    Parquet files (a dataset, as ``pmrisk samples history`` writes).  Every failure is a
    MarginError naming the table and the file."""
    import pyarrow.csv as pcsv
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    table = "ticks" if what == "replay" else what.replace("-", "_")
    if not os.path.exists(path):
        raise MarginError(table, None, f"a file or a directory of Parquet files; --{what} "
                          f"{path}: no such file or directory")
    if os.path.isdir(path):
        from ..backtest.run import open_dataset, reading
        dataset = open_dataset(path, table)
        with reading(dataset, table, path):
            return dataset.to_table()
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".parquet", ".pq"):
            return pq.read_table(path)
        if ext == ".csv":
            # empty cells are nulls (an option_type left blank on a future), not ""; key
            # columns stay strings even when they look like numbers (account 1001)
            keys = ("account", "symbol", "underlying", "asset", "unit", "kind", "settlement",
                    "option_type", "order_id")
            return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                strings_can_be_null=True, column_types={k: pa.string() for k in keys}))
        if ext in (".arrow", ".feather", ".ipc"):
            return feather.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise MarginError(table, None, f"a readable {ext[1:]} file; --{what} {path}: "
                          f"{' '.join(str(exc).split())}") from None
    raise MarginError(table, None, "a .parquet, .csv or .arrow file or a directory of Parquet "
                      f"files; --{what} {path}: unknown file type {ext!r}")


def add_book_arguments(parser):
    """``--positions --instruments --market --index`` (required), ``--balances
    --open-orders --reserves`` and ``--model``: the files :func:`read_book_tables` reads."""
    where = "Parquet, CSV or Arrow IPC file, or a directory of Parquet files"
    for k in ("positions", "instruments", "market", "index"):
        parser.add_argument(f"--{k}", required=True, metavar="PATH", help=where)
    for k in ("balances", "open-orders", "reserves"):
        parser.add_argument(f"--{k}", metavar="PATH", help=f"{where} (optional)")
    parser.add_argument("--model", default="standard",
                        help="preset name or TOML file (default standard)")


def read_book_tables(args):
    """The input tables named by ``--positions --instruments --market --index`` and the
    optional ``--balances --open-orders --reserves`` (Parquet, CSV, Arrow IPC, or a
    directory of Parquet files)."""
    tables = {k: read_input(getattr(args, k), k)
              for k in ("positions", "instruments", "market", "index")}
    for k in ("balances", "open_orders", "reserves"):
        path = getattr(args, k)
        tables[k] = read_input(path, k.replace("_", "-")) if path else None
    return tables


def number_arg(text):
    """A number from the command line as it reads (``1000``, ``1e6``, ``inf``); anything else
    is left as text for the checks of the function it is passed to (one line, exit 2), never
    argparse's usage block.

    >>> from pmrisk.cli.inputs import number_arg
    >>> number_arg("20"), number_arg("1e6"), number_arg("twenty")
    (20, 1000000.0, 'twenty')
    """
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text

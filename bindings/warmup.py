"""``pmrisk.warmup()``: compile (first run) or load from numba's on-disk cache (later runs)
every kernel a margin call or a monitor needs, so that the first real call is as fast as the
next ones."""

import time


def warmup(models=("standard", "deribit_pme")):
    """Run a tiny book through :func:`pmrisk.margin` under each of ``models`` (covering the
    per-unit and the correlated paths, open orders and excluded instruments), and a book of as
    many accounts as the engine's parallel phase kernels need (smaller selections run their
    serial twins); then a :class:`pmrisk.Monitor` on each book takes two ticks (the first
    records every account, the second settles them incrementally: the tick kernels in both
    forms); return the seconds it took per model.  The cost is numba's: with a warm
    on-disk cache (the kernels are ``cache=True``; ``NUMBA_CACHE_DIR`` says where) it is
    loading, a fraction of a second; with an empty cache it is compiling, a few seconds, once
    per machine and version.

    >>> import pmrisk
    >>> sorted(pmrisk.warmup(models=["deribit_pme"]))
    ['deribit_pme', 'total']
    """
    import warnings

    import pyarrow as pa

    from . import samples
    from .engine.core import PARALLEL_MIN
    from .engine.margin import margin
    from .errors import MarginWarning
    from .model.model import Model
    from .monitor.monitor import Monitor

    book = samples.demo_book()
    many = samples.book(n_accounts=PARALLEL_MIN, positions_per_account=2, seed=0)
    accounts = sorted(set(many["positions"].column("account").to_pylist()))
    many["balances"] = pa.table({"account": accounts, "asset": ["BTC"] * len(accounts),
                                 "amount": [0.0] * len(accounts)})
    out = {}
    t_all = time.perf_counter()
    for name in models:
        model = Model.coerce(name)
        t0 = time.perf_counter()
        margin(**book, model=model)
        margin(**many, model=model)
        if model["cross_unit"] == "correlated":
            margin(**book, model=model.with_overrides({"exclude": {"kinds": ["option"]}}))
        for tables in (book, many):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MarginWarning)
                mon = Monitor(**tables, model=model)
                idx = tables["index"]
                und = idx.column("underlying")[0].as_py()
                px = idx.column("index_price")[0].as_py()
                for f in (1.0001, 1.0002):
                    mon.update(index={"underlying": [und], "index_price": [px * f]})
        out[str(name)] = time.perf_counter() - t0
    out["total"] = time.perf_counter() - t_all
    return out

"""``pmrisk.warmup()``: compile (first run) or load from numba's on-disk cache (later runs)
every kernel a margin call or a monitor needs, so that the first real call is as fast as the
next ones."""

import time

KERNELS = ("instrument_pnl", "instrument_greeks", "unit_risk_vectors", "weighted_worst",
           "order_margin", "joint_candidates", "joint_worst")


def warmup(models=("standard", "deribit_pme")):
    """Run a tiny book through :func:`pmrisk.margin` under each of ``models`` (covering the
    per-unit and the correlated paths, open orders and excluded instruments) and return the
    seconds it took per model.  The cost is numba's: with a warm on-disk cache (the kernels
    are ``cache=True``; ``NUMBA_CACHE_DIR`` says where) it is loading, a fraction of a
    second; with an empty cache it is compiling, a few seconds, once per machine and version.

    >>> import pmrisk
    >>> sorted(pmrisk.warmup(models=["deribit_pme"]))
    ['deribit_pme', 'total']
    """
    from . import samples
    from .engine.margin import margin
    from .model.model import Model

    book = samples.demo_book()
    out = {}
    t_all = time.perf_counter()
    for name in models:
        model = Model.coerce(name)
        t0 = time.perf_counter()
        margin(**book, model=model)
        if model["cross_unit"] == "correlated":
            margin(**book, model=model.with_overrides({"exclude": {"kinds": ["option"]}}))
        out[str(name)] = time.perf_counter() - t0
    out["total"] = time.perf_counter() - t_all
    return out

"""One place for the numba options every kernel uses, and the on-disk cache's hygiene.

``error_model="numpy"``: IEEE semantics for division (inf/nan instead of ZeroDivisionError);
the kernels branch explicitly on T <= 0 and tiny sigma*sqrt(T) so neither ever reaches a
division, but a stray zero must not raise from inside a hot loop.  No ``fastmath``: it implies
``nnan``/``ninf`` and risk code must see a NaN if one ever appears.

The cache: numba stamps a cached kernel with its own source file only, but the kernels
inline functions of other modules (``revalue`` compiles ``black76``'s formulas into its own
code).  After a change to ``black76.py`` alone, ``revalue``'s cached machine code would still
load, with the old arithmetic.  So on import the stamp of every kernel source together
(:func:`sources_stamp`) is compared with the one kept beside the cache; when they differ, the
directory's cached kernels are deleted (they compile again on first use, or at
``pmrisk.warmup()``).
"""

import hashlib
import os
import pathlib

import numba as nb

JIT = dict(cache=True, nogil=True, error_model="numpy")


def njit(*args, **kwargs):
    """``numba.njit`` with the house options (cache, nogil, numpy error model)."""
    opts = dict(JIT)
    opts.update(kwargs)
    return nb.njit(*args, **opts)


KERNEL_DIR = pathlib.Path(__file__).resolve().parent
STAMP_FILE = "pmrisk-kernel-sources.sha256"


def sources_stamp(directory=KERNEL_DIR):
    """SHA-256 over the name and bytes of every ``*.py`` module in ``directory`` (hex)."""
    h = hashlib.sha256()
    for path in sorted(pathlib.Path(directory).glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def drop_stale_cache(cache_dir, stamp):
    """Delete the cached kernels (``*.nbi``, ``*.nbc``) in ``cache_dir`` unless the stamp kept
    there is ``stamp``, then keep ``stamp`` there; returns how many files went.  A directory
    that cannot be read or written is left as it is (numba then caches as it would).

    >>> import tempfile, pathlib
    >>> from pmrisk.kernel._config import drop_stale_cache
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "revalue.instrument_pnl-151.py311.nbi").write_bytes(b"old")
    >>> drop_stale_cache(d, "new"), drop_stale_cache(d, "new"), sorted(p.name for p in d.iterdir())
    (1, 0, ['pmrisk-kernel-sources.sha256'])
    """
    path = pathlib.Path(cache_dir)
    kept = path / STAMP_FILE
    try:
        if kept.read_text() == stamp:
            return 0
    except OSError:
        pass
    removed = 0
    try:
        for f in list(path.glob("*.nbi")) + list(path.glob("*.nbc")):
            try:
                f.unlink()
                removed += 1
            except FileNotFoundError:       # another process got there first
                pass
        tmp = path / f"{STAMP_FILE}.{os.getpid()}.tmp"
        tmp.write_text(stamp)
        os.replace(tmp, kept)
    except OSError:
        pass
    return removed


def cache_dir():
    """The directory numba keeps this package's cached kernels in (its own choice: beside the
    sources, ``NUMBA_CACHE_DIR`` or the user's cache), or None when it cannot tell."""
    try:
        from numba.core.caching import FunctionCache
        return FunctionCache(_probe)._cache_path
    except (ImportError, AttributeError, OSError, RuntimeError):
        return None


def _probe():
    """A function of this directory, for :func:`cache_dir` to locate."""


_DIR = cache_dir()
if _DIR is not None:
    drop_stale_cache(_DIR, sources_stamp())

"""The on-disk kernel cache is dropped when any kernel source changes (pmrisk.kernel._config):
numba stamps a cached kernel with its own file only, while the kernels inline one another's
functions across modules."""

import pathlib
import shutil

from pmrisk.kernel import _config as C


def test_the_live_cache_keeps_the_stamp_of_these_sources():
    assert C.cache_dir() is not None
    kept = pathlib.Path(C.cache_dir()) / C.STAMP_FILE
    assert kept.read_text() == C.sources_stamp()


def test_the_stamp_changes_with_any_kernel_source(tmp_path):
    for name in ("black76.py", "revalue.py"):
        shutil.copy(C.KERNEL_DIR / name, tmp_path / name)
    before = C.sources_stamp(tmp_path)
    assert C.sources_stamp(tmp_path) == before
    with open(tmp_path / "black76.py", "a") as f:       # an inlined module alone changes
        f.write("\n# changed\n")
    assert C.sources_stamp(tmp_path) != before


def test_a_stale_cache_is_dropped_and_a_current_one_kept(tmp_path):
    cached = [tmp_path / "revalue.instrument_pnl-151.py311.nbi",
              tmp_path / "revalue.instrument_pnl-151.py311.1.nbc"]
    other = tmp_path / "revalue.cpython-311.pyc"
    for f in cached + [other]:
        f.write_bytes(b"x")
    assert C.drop_stale_cache(tmp_path, "old") == 2         # no stamp kept: stale
    assert not any(f.exists() for f in cached) and other.exists()
    for f in cached:
        f.write_bytes(b"x")
    assert C.drop_stale_cache(tmp_path, "old") == 0         # the same sources: kept
    assert all(f.exists() for f in cached)
    assert C.drop_stale_cache(tmp_path, "new") == 2         # a source changed
    assert (tmp_path / C.STAMP_FILE).read_text() == "new"


def test_an_unwritable_cache_directory_is_left_alone(tmp_path):
    missing = tmp_path / "nowhere" / "deeper"
    assert C.drop_stale_cache(missing, "s") == 0
    assert not missing.exists()

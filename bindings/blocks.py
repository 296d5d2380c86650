"""pmrisk's own pool of large memory blocks: the result tables' columns and the engine's
figure arrays of a large call.

Fresh memory is a large part of a large call's cost: the system clears every new page (a
2 MiB huge page at a time) before the first write, numpy's arrays above glibc's mmap
threshold (32 MiB at most) are new mappings on every call, and Arrow's pool (mimalloc)
hands freed pages back to the system after 10 ms.  A history of 1M positions writes
~250 MB of tables and ~300 MB of figures and layout per call; :data:`BLOCKS` hands the
blocks that a caller has let go (its result tables, an outcome) to the next call.  The
process's allocators are left as they are: only pmrisk's own arrays come from here.
"""

import threading
import weakref

import numpy as np
import pyarrow as pa


class BlockPool:
    """Blocks of memory reused once nothing holds them (no table, column, slice or numpy
    view of theirs is left).

    :meth:`take` returns a writable ``pyarrow.Buffer`` over a block: the smallest free
    block of ``nbytes`` up to twice that, else a new one (numpy's memory, in multiples of
    :data:`BLOCK_ALIGN`).  The buffer owns a view of the block whose end (Python's
    reference counting, when the last Arrow array or numpy array over the buffer goes)
    gives the block back.  Free blocks are kept up to ``keep`` bytes in all; more are freed
    at once, and :meth:`clear` frees them all.

    >>> from pmrisk.blocks import BlockPool
    >>> pool = BlockPool(keep=1 << 23)
    >>> buf = pool.take(3 << 20)
    >>> buf.size, pool.free_bytes()
    (3145728, 0)
    >>> del buf                     # the block goes back, and the next take reuses it
    >>> pool.free_bytes()
    4194304
    >>> pool.take(3 << 20).size, pool.free_bytes()
    (3145728, 4194304)
    """

    def __init__(self, keep):
        self.keep = keep
        self._free = []
        self._lock = threading.RLock()      # a block may come back while one is taken

    def take(self, nbytes):
        block = None
        with self._lock:
            best = -1
            for k, b in enumerate(self._free):
                if nbytes <= b.nbytes <= 2 * nbytes and (
                        best < 0 or b.nbytes < self._free[best].nbytes):
                    best = k
            if best >= 0:
                block = self._free.pop(best)
        if block is None:
            block = np.empty(-(-nbytes // BLOCK_ALIGN) * BLOCK_ALIGN, dtype=np.uint8)
        lease = block[:nbytes]
        weakref.finalize(lease, self._give_back, block).atexit = False  # none at exit
        return pa.py_buffer(lease)

    def _give_back(self, block):
        with self._lock:
            if self.free_bytes() + block.nbytes <= self.keep:
                self._free.append(block)

    def free_bytes(self):
        """Bytes in the free blocks."""
        return sum(b.nbytes for b in self._free)

    def clear(self):
        """Free every free block (blocks still in use come back as usual)."""
        with self._lock:
            self._free.clear()


BLOCK_ALIGN = 1 << 21   # new blocks in multiples of a huge page
# free blocks kept, bytes: a 1M-position history's call takes ~550 MB of blocks (tables,
# figures, layout), and the caller's previous result (~250 MB of tables) comes back after it
POOL_KEEP = 3 << 28
POOL_BYTES = 1 << 20    # smaller arrays: numpy's (its allocation costs less, ~0.4 us)
BLOCKS = BlockPool(POOL_KEEP)


def pool_array(shape, dtype):
    """An uninitialised C-contiguous numpy array and its Arrow buffer (a kernel fills the
    array; the buffer becomes columns without a copy); from :data:`POOL_BYTES` up, a
    block of :data:`BLOCKS`.

    >>> import numpy as np
    >>> from pmrisk.blocks import pool_array
    >>> a, buf = pool_array((2, 3), np.float64)
    >>> a.shape, buf.size
    ((2, 3), 48)
    """
    size = _nbytes(shape, dtype)
    if size < POOL_BYTES:
        a = np.empty(shape, dtype=dtype)
        return a, pa.py_buffer(a)
    buf = BLOCKS.take(size)
    return np.frombuffer(buf, dtype=dtype).reshape(shape), buf


def empty(shape, dtype=np.float64):
    """``numpy.empty(shape, dtype)``, C-contiguous; from :data:`POOL_BYTES` up, a block of
    :data:`BLOCKS` (memory already in use, not fresh pages), as :func:`pool_array` but
    without an Arrow buffer for a small array.

    >>> from pmrisk import blocks
    >>> blocks.empty((2, 3)).shape
    (2, 3)
    """
    size = _nbytes(shape, dtype)
    if size < POOL_BYTES:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(BLOCKS.take(size), dtype=dtype).reshape(shape)


def zeros(shape):
    """``numpy.zeros(shape)`` (float64); from :data:`POOL_BYTES` up, a block of
    :data:`BLOCKS` set to zero (a memset of pages already in use costs less than the
    system's clearing of fresh ones).

    >>> from pmrisk import blocks
    >>> float(blocks.zeros((2, 1 << 17)).sum())
    0.0
    """
    if _nbytes(shape, np.float64) < POOL_BYTES:
        return np.zeros(shape)
    a = empty(shape)
    a.fill(0.0)
    return a


def _nbytes(shape, dtype):
    """Bytes of an array of ``shape`` and ``dtype``."""
    size = np.dtype(dtype).itemsize
    for d in shape:
        size *= d
    return size

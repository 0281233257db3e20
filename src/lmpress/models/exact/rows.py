"""Row parallelism for exact steps: a block coded alone on several cores.

The rows of a batch are independent sequences, and every number an exact step
computes for a row depends only on that row (integer arithmetic; the weight
matmuls are exact in any order). So a step may run row ranges on several
threads and still give the same integers: the archive never depends on the
thread count. The network's kernels and matmuls release the GIL, so the
threads run side by side. (The context mixer stays on one thread: its tables
are shared by all rows and updated in row order. LLMs run row ranges of 4 rows
or more; on fewer rows, whose steps are bound by reading the weights, they spread
each product over the threads instead: BLAS's or torch's, or these threads by
outputs, ``each``.)

``codec.coding_threads`` sets the thread count for a block coded in this
process; worker processes code one block each on one thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

MIN_ROWS = 8  # rows per thread: fewer cost more in hand-over than they save
_PREFIX = "lmpress-rows"  # the threads' names
T = TypeVar("T")

_threads = 1
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas: ThreadpoolController | None = None


def blas_threads(n: int) -> contextlib.AbstractContextManager:
    """Hold numpy's BLAS to ``n`` threads inside this context. The libraries are found once per process:
    ``threadpoolctl.threadpool_limits`` looks them up on every call (0.35 ms here, 2.4 ms under cProfile),
    which an LLM step on a few rows paid at every token."""
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas.limit(limits=n, user_api="blas")


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run exact steps on ``n`` threads inside this context (1: in the calling thread)."""
    global _threads, _pool, _pool_size
    previous = _threads
    _threads = max(1, n)
    if _threads > max(_pool_size, 1):
        if _pool is not None:
            _pool.shutdown()
        _pool, _pool_size = ThreadPoolExecutor(_threads, thread_name_prefix=_PREFIX), _threads
    try:
        yield
    finally:
        _threads = previous


def count() -> int:
    """The threads a step may use now."""
    return _threads


def parts(batch: int, min_rows: int = MIN_ROWS) -> list[slice]:
    """The row ranges of a batch, one per thread (contiguous, in order, ``min_rows`` rows or more)."""
    n = max(1, min(_threads, batch // min_rows))
    bounds = np.linspace(0, batch, n + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def run(step: Callable[[slice], T], batch: int, min_rows: int = MIN_ROWS) -> list[T]:
    """``step(rows)`` for every row range of ``parts(batch, min_rows)``, on the threads; results in row order."""
    ranges = parts(batch, min_rows)
    if len(ranges) == 1 or _pool is None:  # (the pool exists whenever more than one range is asked for)
        return [step(r) for r in ranges]
    return list(_pool.map(step, ranges))


def each(task: Callable[[int], object], n: int) -> None:
    """``task(i)`` for i < n, on the threads (for work split otherwise than by rows: a product's outputs).
    The calling thread runs task 0 while the pool runs the others: one hand-over fewer (measured with AVX2
    code, 8 x 576 @ 576 x 3072 in two halves: 0.24 ms against 0.38 ms with both halves handed over, 0.29 ms
    on one thread). Called from one of the threads (a row range's step), it runs them all there: the others
    are busy."""
    if n == 1 or _pool is None or threading.current_thread().name.startswith(_PREFIX):
        for i in range(n):
            task(i)
        return
    others = [_pool.submit(task, i) for i in range(1, n)]
    task(0)
    for future in others:
        future.result()

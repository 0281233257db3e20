"""Where block jobs run: in this process, in local worker processes, or as Ray tasks.

Blocks of an archive are independent, so coding them is embarrassingly
parallel. A job is a top-level function and its arguments (a block in, a
payload or the decoded bytes out). Every job computes exactly what a single
process computes (the same batch; float arithmetic on one thread), so the
archive does not depend on the backend or the number of workers.

Results come back in input order and at most ``2 x workers`` jobs are in
flight, so input and output stream through with bounded memory: an archive
larger than RAM is fine.

* ``workers <= 1``, or a single job: in this process (live progress, no start-up); a single job
  may code its batch rows on ``workers`` threads (exact arithmetic: the same integers on any number).
* local processes: ``concurrent.futures`` with the spawn start method.
* Ray (``ray="local"`` starts a local cluster; or a cluster address such as
  ``"ray://head:10001"`` or ``"auto"``): one Ray task per block, retried by Ray
  if its worker dies (``max_retries``). Every node needs lmpress, its model
  files and the same CPU kernels.
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lmpress.errors import LmpressError

TASK_RETRIES = 3  # Ray re-runs a block whose worker process died


@dataclass
class Backend:
    workers: int = 1  # 0: one per available CPU (local cores, or the Ray cluster's CPUs)
    ray: str | None = None  # None: local processes; "local": start a Ray cluster here; or its address


class BlockRunner:
    """Runs jobs; ``remote`` tells whether results came from other processes (no live progress there),
    ``local_threads`` how many threads a job coded in this process may use (``codec.coding_threads``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.remote = False
        self.local_threads = 1

    def map(self, job: Callable, local: Callable, jobs: Iterator[tuple]) -> Iterator:
        """``job(*args)`` for every args tuple, in order; ``local(*args)`` when coding in this process."""
        jobs = iter(jobs)
        head = [args for args in (next(jobs, None), next(jobs, None)) if args is not None]
        jobs = itertools.chain(head, jobs)  # lazily: never read the whole input ahead
        if self.backend.ray is not None:
            self.remote = True
            yield from _map_ray(self.backend, job, jobs)
            return
        workers = self.backend.workers or os.cpu_count() or 1
        if workers <= 1 or len(head) < 2:  # one block: starting processes would only cost time
            self.local_threads = workers  # its steps may use the cores instead
            for args in jobs:
                yield local(*args)
            return
        self.remote = True
        context = multiprocessing.get_context("spawn")  # fork after torch threads start is unsafe
        with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            pending: list[futures.Future] = []
            for args in jobs:
                pending.append(pool.submit(job, *args))
                while len(pending) > 2 * workers:  # bounded memory: a few blocks in flight
                    yield pending.pop(0).result()
            for f in pending:
                yield f.result()


def ray_init(address: str, workers: int = 0, log_to_driver: bool = False) -> int:
    """Connect to (or start) a Ray cluster; return how many tasks to keep running."""
    try:
        import ray
    except ImportError:
        raise LmpressError("--ray needs Ray: pip install 'lmpress[ray]'") from None
    if not ray.is_initialized():
        options = {"include_dashboard": False, "log_to_driver": log_to_driver, "logging_level": logging.WARNING}
        try:
            if address == "local":
                ray.init(num_cpus=workers or os.cpu_count(), **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise LmpressError(f"cannot reach Ray cluster {address!r}: {e}") from None
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _map_ray(backend: Backend, job: Callable, jobs: Iterator[tuple]) -> Iterator:
    """At most ``workers`` tasks run at once (as with local processes) and at most 2 x workers results
    wait in memory; results are yielded in input order."""
    import ray

    workers = ray_init(backend.ray, backend.workers)
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(job)
    pending: list = []  # refs in input order, finished or not
    jobs = iter(jobs)
    exhausted = False
    try:
        while pending or not exhausted:
            running = ray.wait(pending, num_returns=len(pending), timeout=0)[1] if pending else []
            if not exhausted and len(running) < workers and len(pending) < 2 * workers:
                args = next(jobs, None)
                if args is None:
                    exhausted = True
                else:
                    pending.append(task.remote(*args))
                continue
            if pending and pending[0] not in running:
                yield ray.get(pending.pop(0))
            elif running:
                ray.wait(running, num_returns=1)  # until some task finishes
    except ray.exceptions.RayTaskError as e:  # the job raised: report its own error
        cause = e.as_instanceof_cause()
        raise (cause if isinstance(cause, LmpressError) else LmpressError(f"Ray task failed: {e}")) from None
    except ray.exceptions.RayError as e:  # workers died more often than the retries allow, ...
        raise LmpressError(f"Ray task failed: {e}") from None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)

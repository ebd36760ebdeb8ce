"""Where blocks run: a local thread pool, or a Dask ``distributed`` cluster.

Both backends expose the same small interface to the engine: ``submit(start, stop)`` queues a
block, ``next_done()`` waits for any queued block to finish and returns
``(start, stop, outputs, seconds)`` (raising the block's exception if it failed),
``cancel()`` drops what has not finished, and ``close()`` releases resources. The engine keeps
only a bounded number of blocks in flight, so cancelling (early stop, error, Ctrl-C) wastes little.
"""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from nimare_dask.montecarlo.seeds import SeedInfo

__all__ = ["DistributedBackend", "ThreadBackend", "active_client"]

BlockFn = Callable[[int, int, SeedInfo], Any]


def call_block(block_fn: BlockFn, start: int, stop: int, seed: SeedInfo) -> tuple[Any, float]:
    """Run one block and time it (this is the task that runs on a thread or a worker)."""
    t0 = time.perf_counter()
    out = block_fn(start, stop, seed)
    return out, time.perf_counter() - t0


def active_client() -> Any | None:
    """The active ``distributed.Client`` if there is one, else None."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return get_client()
    except ValueError:
        return None


class ThreadBackend:
    """Blocks on a local :class:`concurrent.futures.ThreadPoolExecutor`.

    Numba kernels release the GIL (``nogil=True``), so threads run blocks in parallel.

    Parameters
    ----------
    block_fn : callable
        ``block_fn(start, stop, seed_info) -> dict of arrays``.
    seed : SeedInfo
        Passed to every block.
    n_threads : int, optional
        Worker threads (default: Dask's ``num_workers`` setting, else the CPU count).
    name : str
        Thread-name prefix.
    """

    kind = "threads"

    def __init__(
        self,
        block_fn: BlockFn,
        seed: SeedInfo,
        n_threads: int | None = None,
        name: str = "mc-null-block",
    ):
        if n_threads is None:
            import dask

            n_threads = dask.config.get("num_workers", None) or os.cpu_count() or 1
        self.n_slots = max(1, int(n_threads))
        self._fn = block_fn
        self._seed = seed
        self._pool = ThreadPoolExecutor(self.n_slots, thread_name_prefix=name)
        self._done: queue.Queue = queue.Queue()
        self._in_flight: dict[tuple[int, int], Future] = {}

    def submit(self, start: int, stop: int) -> None:
        fut = self._pool.submit(call_block, self._fn, start, stop, self._seed)
        self._in_flight[(start, stop)] = fut
        fut.add_done_callback(lambda f, s=start, e=stop: self._done.put((s, e, f)))

    @property
    def n_in_flight(self) -> int:
        return len(self._in_flight)

    def next_done(self) -> tuple[int, int, Any, float]:
        while True:
            try:  # a timeout keeps the wait interruptible by Ctrl-C
                start, stop, fut = self._done.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._in_flight.pop((start, stop), None) is None or fut.cancelled():
                continue
            out, seconds = fut.result()
            return start, stop, out, seconds

    def finished(self) -> list[tuple[int, int, Any]]:
        """Cancel blocks not yet started, wait for running ones, return those that succeeded."""
        for fut in self._in_flight.values():
            fut.cancel()
        wait(list(self._in_flight.values()))
        out = []
        for (start, stop), fut in sorted(self._in_flight.items()):
            if not fut.cancelled() and fut.exception() is None:
                out.append((start, stop, fut.result()[0]))
        return out

    def cancel(self) -> None:
        for fut in self._in_flight.values():
            fut.cancel()
        self._in_flight.clear()

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


class DistributedBackend:
    """Blocks as tasks on a Dask ``distributed`` cluster.

    The block function is sent once, scattered to every worker (``client.scatter(...,
    broadcast=True)``: it may hold large arrays, which should not travel in the task graph),
    and every block task depends on it; block tasks are keyed ``<name>-<start>-<stop>-<token>``
    (the dashboard groups them under ``<name>``). The token is unique to the run, so two runs
    never share keys. If a worker dies, the scheduler recomputes its tasks (the block function
    must be pure: its output depends only on ``(start, stop, seed_info)``).

    Parameters
    ----------
    client : distributed.Client
        The client to submit to.
    block_fn, seed, name
        As for :class:`ThreadBackend`.
    """

    kind = "distributed"

    def __init__(self, client: Any, block_fn: BlockFn, seed: SeedInfo, name: str = "mc-null-block"):
        from distributed import as_completed

        self.client = client
        self._name = name
        self._seed = seed
        self._token = uuid.uuid4().hex[:8]
        # scattered to every worker (not embedded in the graph: a block function may carry
        # hundreds of MB of per-study maps); a worker that dies leaves the other copies
        self._fn_future = client.scatter(block_fn, broadcast=True, hash=False)
        self._ac = as_completed()
        self._in_flight: dict[Any, tuple[int, int]] = {}
        nthreads = client.nthreads()
        self.n_slots = max(1, sum(nthreads.values()) if nthreads else 1)

    def submit(self, start: int, stop: int) -> None:
        fut = self.client.submit(
            call_block,
            self._fn_future,
            start,
            stop,
            self._seed,
            key=f"{self._name}-{start}-{stop}-{self._token}",
        )
        self._in_flight[fut.key] = (start, stop)
        self._ac.add(fut)

    @property
    def n_in_flight(self) -> int:
        return len(self._in_flight)

    def next_done(self) -> tuple[int, int, Any, float]:
        while True:
            fut = next(self._ac)
            span = self._in_flight.pop(fut.key, None)
            if span is None or fut.cancelled():
                continue
            out, seconds = fut.result()
            return span[0], span[1], out, seconds

    def finished(self) -> list[tuple[int, int, Any]]:
        """Blocks that have already finished successfully (nothing is waited for)."""
        out = []
        for fut in list(self._ac.futures):
            span = self._in_flight.get(fut.key)
            if span is not None and fut.status == "finished":
                out.append((span[0], span[1], fut.result()[0]))
        return out

    def cancel(self) -> None:
        futures = list(self._ac.futures)
        self._ac.clear()
        self._in_flight.clear()
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        self.cancel()
        self.client.cancel([self._fn_future])

"""The Dask scheduler a CLI run uses: an existing cluster by address, or a local one."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None, n_workers: int | None = None, quiet: bool = False
) -> Iterator[object]:
    """Connect to ``scheduler`` (``tcp://host:port``) or start a ``LocalCluster``.

    The local cluster runs threads in one process (numba kernels release the GIL, so threads
    scale without copying MA maps between processes); ``n_workers`` sets the thread count
    (default: all cores). Prints the dashboard address.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        threads = n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=threads,
            processes=False,
            dashboard_address=":0",
        )
        client = Client(cluster)
    if not quiet:
        where = scheduler or f"local cluster, {sum(client.nthreads().values())} threads"
        print(f"dask: {where}; dashboard: {client.dashboard_link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

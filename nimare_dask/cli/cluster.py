"""The Dask scheduler a CLI run uses: an existing cluster (address or scheduler file) or a local one.

Every subcommand that computes takes the same options (:func:`add_cluster_arguments`):
``--scheduler tcp://host:8786`` or ``--scheduler-file PATH`` (the file ``dask scheduler
--scheduler-file``, dask-jobqueue and dask-mpi write) for an existing cluster, otherwise a local
cluster whose thread count is ``--n-workers`` and whose dashboard listens on 127.0.0.1 only
(``--dashboard-address`` to change that).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator

LGR = logging.getLogger(__name__)

#: Where the local cluster's dashboard listens unless ``--dashboard-address`` says otherwise.
LOCAL_DASHBOARD = "127.0.0.1:0"

#: Packages that must match between this client and a remote scheduler and its workers.
MATCHING_PACKAGES = ("nimare_dask", "numba", "xarray", "zarr", "fsspec", "s3fs", "gcsfs")


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """``--scheduler`` | ``--scheduler-file``, ``--n-workers`` and ``--dashboard-address``."""
    group = p.add_argument_group(
        "Dask cluster", "default: a local cluster in this process, dashboard on 127.0.0.1"
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of an existing Dask scheduler (tcp://host:8786)",
    )
    where.add_argument(
        "--scheduler-file",
        default=None,
        metavar="PATH",
        help="scheduler file of an existing cluster (written by 'dask scheduler "
        "--scheduler-file', dask-jobqueue or dask-mpi)",
    )
    group.add_argument(
        "--n-workers", type=int, default=None, help="local cluster: threads (default: all cores)"
    )
    group.add_argument(
        "--dashboard-address",
        default=None,
        metavar="HOST:PORT",
        help=f"local cluster: where the dashboard listens (default {LOCAL_DASHBOARD}; "
        "':8787' for all interfaces)",
    )


def cluster_options(args: argparse.Namespace) -> dict:
    """The keywords of :func:`dask_client` from parsed options; refuses options that would be
    ignored (local-cluster settings together with an existing cluster)."""
    scheduler = getattr(args, "scheduler", None)
    scheduler_file = getattr(args, "scheduler_file", None)
    n_workers = getattr(args, "n_workers", None)
    dashboard = getattr(args, "dashboard_address", None)
    if scheduler and scheduler_file:
        raise ValueError("--scheduler and --scheduler-file are mutually exclusive")
    remote = "--scheduler" if scheduler else "--scheduler-file" if scheduler_file else None
    if remote and n_workers is not None:
        raise ValueError(
            f"--n-workers sets the threads of the local cluster and cannot be used with {remote} "
            "(the existing cluster's workers are what they are: scale that cluster instead)"
        )
    if remote and dashboard is not None:
        raise ValueError(
            f"--dashboard-address applies to the local cluster and cannot be used with {remote}"
        )
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"--n-workers must be positive, got {n_workers}")
    return {
        "scheduler": scheduler,
        "scheduler_file": scheduler_file,
        "n_workers": n_workers,
        "dashboard_address": dashboard,
    }


def _wait_for_scheduler_file(path: str, timeout: float) -> None:
    """Wait (a job scheduler may still be starting it) until ``path`` exists, or fail clearly."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise FileNotFoundError(
                f"scheduler file {path} does not exist (waited {timeout:.0f} s); start a "
                f"scheduler with 'dask scheduler --scheduler-file {path}' or dask-jobqueue's "
                "cluster.scheduler.write_scheduler_file"
            )
        time.sleep(0.1)


def local_dashboard_link(client, dashboard_address: str) -> str:
    """The local cluster's dashboard URL on the host it listens on.

    The in-process scheduler's address carries the machine's IP only as a label, so
    ``client.dashboard_link`` would name an interface the dashboard does not listen on.
    """
    from distributed.utils import clean_dashboard_address, format_dashboard_link

    host = clean_dashboard_address(dashboard_address)[0]["address"]
    port = client.scheduler_info().get("services", {}).get("dashboard")
    if port is None or host in (None, "", "0.0.0.0", "::"):
        return client.dashboard_link
    return format_dashboard_link(host, port)


def check_versions(client, packages=MATCHING_PACKAGES) -> list[str]:
    """Warn about packages whose versions differ between this client and the cluster.

    The scheduler unpickles the task graph and workers run nimare_dask's functions and open
    stores through fsspec, so each needs the client's versions. Returns the warnings.
    """
    versions = client.get_versions(packages=list(packages))
    mine = versions["client"]["packages"]
    remote = {"scheduler": versions["scheduler"]}
    remote.update({f"worker {addr}": info for addr, info in versions["workers"].items()})
    problems = []
    for pkg in packages:
        if mine.get(pkg) is None:
            continue  # not used by this client
        for who, info in remote.items():
            theirs = (info or {}).get("packages", {}).get(pkg)
            if theirs != mine[pkg]:
                problems.append(
                    f"{who} has {pkg} {theirs or 'MISSING'}, this client {mine[pkg]}: install "
                    "the same versions on client, scheduler and workers"
                )
    for msg in problems:
        warnings.warn(msg, stacklevel=2)
    return problems


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    n_workers: int | None = None,
    quiet: bool = False,
    *,
    scheduler_file: str | None = None,
    dashboard_address: str | None = None,
) -> Iterator[object]:
    """Connect to ``scheduler`` (``tcp://host:port``) or ``scheduler_file``, or start a
    ``LocalCluster``.

    The local cluster runs threads in one process (numba kernels release the GIL, so threads
    scale without copying MA maps between processes); ``n_workers`` sets the thread count
    (default: all cores). Its scheduler talks in-process (no socket) and its dashboards listen
    on 127.0.0.1 unless ``dashboard_address`` says otherwise. Prints the dashboard address.
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler and scheduler_file:
        raise ValueError("--scheduler and --scheduler-file are mutually exclusive")
    cluster = None
    if scheduler or scheduler_file:
        if n_workers is not None or dashboard_address is not None:
            raise ValueError("--n-workers and --dashboard-address apply to the local cluster only")
        if scheduler_file:
            timeout = dask.utils.parse_timedelta(
                dask.config.get("distributed.comm.timeouts.connect"), default="s"
            )
            _wait_for_scheduler_file(scheduler_file, timeout)
            client = Client(scheduler_file=scheduler_file)
        else:
            client = Client(scheduler)
        try:
            check_versions(client)
        except Exception as err:  # the check must not stop a job the cluster can run
            warnings.warn(
                f"could not compare package versions with the cluster: {err}", stacklevel=3
            )
    else:
        threads = n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=threads,
            processes=False,
            dashboard_address=dashboard_address or LOCAL_DASHBOARD,
            worker_dashboard_address=LOCAL_DASHBOARD,
        )
        client = Client(cluster)
    LGR.debug("dask client %s (cluster %s)", client, cluster)
    if not quiet:
        threads = sum(client.nthreads().values())
        if cluster is None:
            where, link = f"{client.scheduler.address}, {threads} threads", client.dashboard_link
        else:
            where = f"local cluster, {threads} threads"
            link = local_dashboard_link(client, dashboard_address or LOCAL_DASHBOARD)
        print(f"dask: {where}; dashboard: {link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

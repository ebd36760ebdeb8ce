"""Real services on loopback for tests and benchmarks: an S3 API server and a process cluster.

Used by the test suite's fixtures and by ``benchmarks/bench_cluster.py``; useful to users who
want to try the object-store and cluster paths on one machine:

>>> from nimare_dask.testing import process_cluster, s3_server
>>> with s3_server() as s3, process_cluster(n_workers=2) as cluster:  # doctest: +SKIP
...     opts = s3.storage_options()
...     bucket = s3.make_bucket()

- :func:`s3_server`: moto in server mode (``pip install "moto[server]"``), its own process,
  on 127.0.0.1 and a free port;
- :func:`process_cluster`: ``dask scheduler`` plus ``dask worker`` processes, each started in
  its own empty folder, talking over TCP on 127.0.0.1.

Everything listens on 127.0.0.1 only, and is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HOST", "ProcessCluster", "S3Server", "ServiceError", "process_cluster", "s3_server"]

HOST = "127.0.0.1"
#: Credentials of the test S3 server (it accepts any unless started with ``auth=True``).
S3_KEY, S3_SECRET = "testing", "testing"


class ServiceError(RuntimeError):
    """A service did not start; the message holds the end of its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if predicate():
            return
        time.sleep(0.1)
    out = log.read_text(errors="replace") if log.exists() else ""
    raise ServiceError(f"{what} did not start (exit code {proc.poll()}):\n{out[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    # no credentials from the environment: callers pass storage_options explicitly
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(k, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class S3Server:
    """A running S3 API server: its endpoint, process and request log."""

    endpoint: str
    proc: subprocess.Popen
    log: Path

    def storage_options(self, **extra) -> dict:
        """fsspec/s3fs options that reach this server (``extra`` overrides)."""
        opts = {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }
        opts.update(extra)
        return opts

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        import boto3

        name = name or f"b-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name

    def n_requests(self) -> int:
        """HTTP requests served so far (from the server's request log)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(
            1 for line in text.splitlines() if '" 2' in line or '" 3' in line or '" 4' in line
        )


@contextlib.contextmanager
def s3_server(folder: str | Path | None = None, *, auth: bool = False) -> Iterator[S3Server]:
    """Run moto's S3 server in its own process on 127.0.0.1 for the ``with`` block.

    Parameters
    ----------
    folder : str or Path, optional
        Working folder and log (a temporary one by default).
    auth : bool
        Check credentials from the first request on (every key is then unknown: for testing
        the wrong-credentials path).
    """
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="nd-s3-"))
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = folder / f"moto-{port}.log"
        env = _env(INITIAL_NO_AUTH_ACTION_COUNT="0") if auth else _env()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            _wait(lambda: _port_open(port), 60, "the moto S3 server", proc, log)
            yield S3Server(f"http://{HOST}:{port}", proc, log)
        finally:
            _stop(proc)


@dataclass
class ProcessCluster:
    """A running ``dask scheduler`` and its ``dask worker`` processes."""

    root: Path
    scheduler_file: Path
    address: str
    scheduler: subprocess.Popen
    nthreads: int
    workers: list[subprocess.Popen] = field(default_factory=list)

    def worker_dir(self, i: int) -> Path:
        return self.root / f"worker-{i}"

    def start_worker(self, i: int | None = None) -> subprocess.Popen:
        """Start worker ``i`` (a new one by default) in its own empty folder."""
        i = len(self.workers) if i is None else i
        folder = self.worker_dir(i)
        folder.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"worker-{i}.log", "ab") as out:
            proc = subprocess.Popen(
                [
                    shutil.which("dask") or "dask",
                    "worker",
                    "--scheduler-file",
                    str(self.scheduler_file),
                    "--nthreads",
                    str(self.nthreads),
                    "--host",
                    HOST,
                    "--dashboard-address",
                    f"{HOST}:0",
                    "--local-directory",
                    str(folder),
                    "--memory-limit",
                    "6GB",
                    "--no-nanny",
                ],
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        if i < len(self.workers):
            self.workers[i] = proc
        else:
            self.workers.append(proc)
        return proc

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` (as a lost node would be)."""
        self.workers[i].kill()
        self.workers[i].wait(10)

    def ensure_workers(self, timeout: float = 90) -> None:
        """Restart dead workers and wait until all are connected."""
        for i, proc in enumerate(self.workers):
            if proc.poll() is not None:
                self.start_worker(i)
        from distributed import Client

        with Client(self.address, timeout=60) as c:
            c.wait_for_workers(len(self.workers), timeout=timeout)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.root.glob("*.log"))
        )


@contextlib.contextmanager
def process_cluster(
    folder: str | Path | None = None, *, n_workers: int = 2, nthreads: int = 1
) -> Iterator[ProcessCluster]:
    """Run ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1.

    Each process starts in its own empty folder (no shared working directory); the scheduler
    writes its address to ``<folder>/scheduler.json`` (``--scheduler-file``).
    """
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="nd-cluster-"))
        root = Path(folder)
        (root / "scheduler").mkdir(parents=True, exist_ok=True)
        sched_file = root / "scheduler.json"
        slog = root / "scheduler.log"
        with open(slog, "wb") as out:
            sched = subprocess.Popen(
                [
                    shutil.which("dask") or "dask",
                    "scheduler",
                    "--host",
                    HOST,
                    "--port",
                    "0",
                    "--dashboard-address",
                    f"{HOST}:0",
                    "--scheduler-file",
                    str(sched_file),
                    "--no-show",
                ],
                cwd=root / "scheduler",
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        cluster = None
        try:
            _wait(sched_file.exists, 60, "dask scheduler", sched, slog)
            time.sleep(0.2)
            address = json.loads(sched_file.read_text())["address"]
            cluster = ProcessCluster(root, sched_file, address, sched, nthreads)
            for _ in range(n_workers):
                cluster.start_worker()
            if n_workers:
                cluster.ensure_workers()
            yield cluster
        finally:
            for w in cluster.workers if cluster else []:
                _stop(w)
            _stop(sched)

"""Real services on loopback for the distributed tests (imported by conftest.py).

- ``s3_server``: an S3 API server (moto in server mode, its own process) on 127.0.0.1 and a free
  port; ``s3_bucket`` makes a fresh bucket per test and gives its URL and ``storage_options``.
- ``dask_cluster``: a separate-process Dask cluster: ``dask scheduler`` and two ``dask worker``
  processes, each started in its own empty folder, talking over TCP on 127.0.0.1.

Both are stopped (and their processes killed) at the end of the session. A service that does
not start fails the test that needs it, with the service's own output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
#: Fake credentials of the moto server (it accepts any).
S3_KEY, S3_SECRET = "testing", "testing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if predicate():
            return
        time.sleep(0.1)
    out = log.read_text() if log.exists() else ""
    pytest.fail(f"{what} did not start (exit code {proc.poll()}):\n{out[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _env() -> dict:
    env = dict(os.environ)
    # no credentials from the environment: tests pass storage_options explicitly
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(k, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen

    def storage_options(self, **extra) -> dict:
        opts = {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }
        opts.update(extra)
        return opts

    def make_bucket(self, name: str | None = None) -> str:
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """A moto S3 server in its own process on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("moto")
    port = free_port()
    log = folder / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    endpoint = f"http://{HOST}:{port}"

    def up() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        _wait(up, 60, "the moto S3 server", proc, log)
        yield S3Server(endpoint, proc)
    finally:
        _stop(proc)


@dataclass
class Bucket:
    server: S3Server
    name: str
    storage_options: dict = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"s3://{self.name}/{path.lstrip('/')}"

    def keys(self, prefix: str = "") -> list[str]:
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)
        return sorted(fs.find(f"{self.name}/{prefix}".rstrip("/")))


@pytest.fixture
def s3_bucket(s3_server) -> Bucket:
    """A fresh, empty bucket on the S3 server, with the storage_options to reach it."""
    name = s3_server.make_bucket()
    return Bucket(s3_server, name, s3_server.storage_options())


@dataclass
class Cluster:
    scheduler_file: Path
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    worker_dirs: list[Path]
    logs: list[Path]

    def kill_worker(self, i: int) -> None:
        self.workers[i].kill()
        self.workers[i].wait(10)


def _start_worker(scheduler_file: Path, folder: Path, log: Path) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                shutil.which("dask") or "dask",
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--nthreads",
                "1",
                "--nworkers",
                "1",
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


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory) -> Cluster:
    """``dask scheduler`` + two ``dask worker`` processes, each in its own empty folder."""
    root = tmp_path_factory.mktemp("cluster")
    sched_dir = root / "scheduler"
    sched_dir.mkdir()
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
            cwd=sched_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    workers: list[subprocess.Popen] = []
    try:
        _wait(sched_file.exists, 60, "dask scheduler", sched, slog)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        dirs = [root / f"worker-{i}" for i in range(2)]
        logs = [slog] + [root / f"worker-{i}.log" for i in range(2)]
        for d, log in zip(dirs, logs[1:], strict=True):
            workers.append(_start_worker(sched_file, d, log))
        from distributed import Client

        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
        yield Cluster(sched_file, address, sched, workers, dirs, logs)
    finally:
        for w in workers:
            _stop(w)
        _stop(sched)


@pytest.fixture
def cluster_client(dask_cluster):
    """A ``distributed.Client`` of the separate-process cluster (both workers up)."""
    from distributed import Client

    for i, proc in enumerate(dask_cluster.workers):  # a test may have killed one
        if proc.poll() is not None:
            dask_cluster.workers[i] = _start_worker(
                dask_cluster.scheduler_file,
                dask_cluster.worker_dirs[i],
                dask_cluster.logs[i + 1],
            )
    with Client(dask_cluster.address, timeout=60) as client:
        client.wait_for_workers(2, timeout=90)
        yield client

"""Real services on loopback for the distributed tests (imported by conftest.py).

- ``s3_server``: an S3 API server (moto in server mode, its own process) on 127.0.0.1;
  ``s3_bucket`` makes a fresh bucket per test and gives its URL and ``storage_options``.
- ``dask_cluster``: a separate-process Dask cluster: ``dask scheduler`` and two ``dask worker``
  processes, each started in its own empty folder, talking over TCP on 127.0.0.1.

Both come from :mod:`nimare_dask.testing` and are stopped at the end of the session. A service
that does not start fails the test that needs it (never a skip), with the service's output.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field

import pytest

from nimare_dask.testing import ServiceError, process_cluster
from nimare_dask.testing import s3_server as _s3_server


@contextlib.contextmanager
def _or_fail():
    try:
        yield
    except ServiceError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A moto S3 server in its own process on 127.0.0.1."""
    with _or_fail(), _s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@dataclass
class Bucket:
    server: object
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
    return Bucket(
        s3_server, s3_server.make_bucket(f"t-{uuid.uuid4().hex[:12]}"), s3_server.storage_options()
    )


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes, each in its own empty folder."""
    with _or_fail(), process_cluster(tmp_path_factory.mktemp("cluster"), n_workers=2) as cluster:
        yield cluster


@pytest.fixture
def cluster_client(dask_cluster):
    """A ``distributed.Client`` of the separate-process cluster (both workers up)."""
    from distributed import Client

    with _or_fail():
        dask_cluster.ensure_workers()  # a test may have killed one
    with Client(dask_cluster.address, timeout=60) as client:
        yield client

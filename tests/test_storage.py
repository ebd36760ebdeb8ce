"""The storage module's contract, run on every kind of location (a conformance suite).

Each test runs on a local folder, ``memory://`` and a real S3 API server (moto in server mode,
its own process on 127.0.0.1). The contract: a reader sees the published version or nothing,
never a half one; ``storage_options`` are used for every operation; a writer killed mid-write
leaves the previous version readable and intact, and the next write cleans up; bad locations
give one clear error naming the URL and what failed, and leave nothing visible.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nimare_dask import open_studyset, storage
from nimare_dask.results import open_result
from nimare_dask.storage import Location, StoreConflictError, StoreError, VersionedStore
from nimare_dask.studyset import StoreError as StudysetStoreError

KINDS = ["local", "memory", "s3"]


@pytest.fixture(params=KINDS)
def where(request, tmp_path):
    """``(url_factory, storage_options, list_keys)`` for one kind of location."""
    if request.param == "local":
        return (lambda name: str(tmp_path / name)), {}, lambda name: _local_keys(tmp_path / name)
    if request.param == "memory":
        root = f"memory://t-{uuid.uuid4().hex[:8]}"
        return (lambda name: f"{root}/{name}"), {}, None
    bucket = request.getfixturevalue("s3_bucket")
    return bucket.url, bucket.storage_options, lambda name: bucket.keys(name)


def _local_keys(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def _versions(loc: Location) -> list[str]:
    return [n for n in loc.list_dirs() if n.startswith("v")]


def test_location_pickles_to_url_and_options(where):
    make, opts, _ = where
    loc = Location(make("x"), opts)
    import pickle

    back = pickle.loads(pickle.dumps(loc))
    assert back == loc and back.storage_options == opts
    assert len(pickle.dumps(loc)) < 2000  # a definition, never an open connection


def test_options_for_a_local_path_are_refused(tmp_path):
    with pytest.raises(ValueError, match="apply to URLs"):
        Location(tmp_path / "x", {"anon": True})


def test_transaction_publishes_last_and_keeps_one_previous_version(where):
    make, opts, _ = where
    vs = VersionedStore(make("vs"), "nimare_dask.test", 1, storage_options=opts)
    assert not vs.exists()
    for value in range(4):
        with vs.transaction(overwrite=True) as tx:
            ds = xr.Dataset({"a": ("x", np.full(5, value, np.int32))})
            storage.write_dataset(ds, tx.location)
            # not visible before the commit
            assert vs.pointer() is None or vs.pointer()["info"]["value"] == value - 1
            pointer = tx.commit({"value": value})
        version, info = vs.current()
        assert info == pointer and info["info"]["value"] == value
        got = xr.open_zarr(version.zarr_store(read_only=True), zarr_format=3, consolidated=False)
        np.testing.assert_array_equal(got["a"].values, value)
        # the published version and the one it replaced, nothing older
        expected = {pointer["version"]} | ({pointer["previous"]} if pointer["previous"] else set())
        assert set(_versions(vs.location)) == expected


def test_existing_store_needs_overwrite(where):
    make, opts, _ = where
    vs = VersionedStore(make("vs"), "nimare_dask.test", 1, storage_options=opts)
    with vs.transaction() as tx:
        tx.commit({"n": 1})
    with pytest.raises(StoreError, match="already exists; pass overwrite=True"):
        with vs.transaction() as tx:
            pytest.fail("must not start")
    assert vs.current()[1]["info"] == {"n": 1}


def test_failed_write_leaves_previous_version_and_no_new_prefix(where):
    make, opts, _ = where
    vs = VersionedStore(make("vs"), "nimare_dask.test", 1, storage_options=opts)
    with vs.transaction() as tx:
        storage.write_dataset(xr.Dataset({"a": ("x", np.arange(3))}), tx.location)
        tx.commit({"n": 1})
    before = _versions(vs.location)
    with pytest.raises(RuntimeError, match="boom"):
        with vs.transaction(overwrite=True) as tx:
            storage.write_dataset(xr.Dataset({"a": ("x", np.arange(9))}), tx.location)
            raise RuntimeError("boom")
    assert _versions(vs.location) == before
    assert vs.current()[1]["info"] == {"n": 1}


def test_conflicting_writers_are_detected_or_resolved(where):
    make, opts, _ = where
    vs = VersionedStore(make("vs"), "nimare_dask.test", 1, storage_options=opts)
    with vs.transaction(overwrite=True) as slow:
        with vs.transaction(overwrite=True) as fast:
            fast.commit({"who": "fast"})
        with pytest.raises(StoreConflictError, match="another writer"):
            slow.commit({"who": "slow"})
    assert vs.current()[1]["info"] == {"who": "fast"}
    with vs.transaction(overwrite=True, on_conflict="keep") as slow:
        with vs.transaction(overwrite=True) as fast:
            fast.commit({"who": "fast2"})
        assert slow.commit({"who": "slow"})["info"] == {"who": "fast2"}
    assert vs.current()[1]["info"] == {"who": "fast2"}


def test_studyset_and_result_round_trip_with_explicit_storage_options(where, pain_studyset):
    make, opts, _ = where
    url = make("pain.zarr")
    pain_studyset.to_zarr(url, storage_options=opts)
    back = open_studyset(url, storage_options=opts)
    assert back.fingerprint == pain_studyset.fingerprint and len(back) == 21
    np.testing.assert_array_equal(back.xyz(), pain_studyset.xyz())
    from nimare_dask.meta.cbma import ALE

    result = ALE().fit(back)
    result.to_zarr(make("ale.zarr"), storage_options=opts)
    again = open_result(make("ale.zarr"), storage_options=opts)
    for name in ("stat", "z", "p"):
        np.testing.assert_array_equal(
            again.get_map(name, return_type="array"), result.get_map(name, return_type="array")
        )


def test_bad_locations_give_one_clear_error(s3_server, s3_bucket, pain_studyset):
    opts = s3_bucket.storage_options
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/p.zarr"
    with pytest.raises(StudysetStoreError, match="bucket or container 'no-such-bucket"):
        pain_studyset.to_zarr(missing, storage_options=opts)
    with pytest.raises(StudysetStoreError, match="bucket or container 'no-such-bucket"):
        open_studyset(missing, storage_options=opts)
    unreachable = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    t0 = time.monotonic()
    with pytest.raises(StudysetStoreError, match=r"s3://.*Could not connect to the endpoint"):
        pain_studyset.to_zarr(s3_bucket.url("q.zarr"), storage_options=unreachable)
    assert time.monotonic() - t0 < 60
    with pytest.raises(StudysetStoreError, match=r"s3://.*Could not connect to the endpoint"):
        open_studyset(s3_bucket.url("q.zarr"), storage_options=unreachable)
    assert s3_bucket.keys("q.zarr") == []  # nothing half-written stays visible


def test_wrong_credentials_give_one_clear_error(tmp_path, pain_studyset):
    # a second S3 server that checks credentials from the first request on
    from nimare_dask.testing import s3_server

    with s3_server(tmp_path, auth=True) as server:
        opts = server.storage_options(key="AKIAWRONGWRONGWRONG", secret="nope")
        with pytest.raises(StudysetStoreError, match=r"s3://bucket/p\.zarr.*failed"):
            pain_studyset.to_zarr("s3://bucket/p.zarr", storage_options=opts)
        with pytest.raises(StudysetStoreError, match=r"s3://bucket/p\.zarr.*failed"):
            open_studyset("s3://bucket/p.zarr", storage_options=opts)


# ----------------------------------------------------------------------- killed writers
_KILLED_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import nimare_dask.storage as storage
    from nimare_dask import Studyset

    url, opts, ready, src = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    original = storage.write_dataset
    calls = []

    def write_then_hang(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # two tables written: the new version is half there
            Path(ready).write_text("writing")
            time.sleep(600)

    storage.write_dataset = write_then_hang
    ss = Studyset(src)
    ss.slice(ss.ids[:5]).to_zarr(url, overwrite=True, storage_options=opts)
    """
)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_writer_killed_mid_write_leaves_old_version_readable(
    kind, tmp_path, request, pain_studyset, pain_json
):
    if kind == "local":
        url, opts = str(tmp_path / "p.zarr"), {}
    else:
        bucket = request.getfixturevalue("s3_bucket")
        url, opts = bucket.url("p.zarr"), bucket.storage_options
    pain_studyset.to_zarr(url, storage_options=opts)
    before = Location(url, opts)
    old_versions = _versions(before)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, url, json.dumps(opts), str(ready), str(pain_json)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the writer ended before reaching the middle of its write"
            assert time.monotonic() < deadline, "the writer never reached the middle of its write"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the killed writer left a half version behind, unpublished
    half = set(_versions(before)) - set(old_versions)
    assert len(half) == 1
    back = open_studyset(url, storage_options=opts)
    assert len(back) == 21 and back.fingerprint == pain_studyset.fingerprint
    np.testing.assert_array_equal(back.xyz(), pain_studyset.xyz())
    # the next write succeeds and removes the half version
    small = pain_studyset.slice(pain_studyset.ids[:3])
    small.to_zarr(url, overwrite=True, storage_options=opts)
    assert len(open_studyset(url, storage_options=opts)) == 3
    assert not half & set(_versions(before))

"""The cloud-native promise on real parts, on loopback.

A separate-process Dask cluster (``dask scheduler`` + two ``dask worker`` processes, each in
its own empty folder) and an S3 API server (moto, its own process). The store lives on the S3
server; every result must equal the local threaded run's: maps bit for bit, r to 1e-6 (the same
float32 maps reduced in the same blocks; 1e-6 allows the summation order of the r reduction).
Distributed's large-graph warning is an error here.
"""

from __future__ import annotations

import threading
import time
import warnings

import dask
import numpy as np
import pytest

from nimare_dask import open_studyset, storage
from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE
from nimare_dask.results import open_result

NS = "data-neurosynth_version-7"
TOPICS = [
    "13_fear_threat_smokers",
    "26_emotional_amygdala_negative",
    "32_pain_somatosensory_stimulation",
]
R_ATOL = 1e-6


@pytest.fixture(autouse=True)
def _large_graphs_are_errors():
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Ss]ending large graph.*")
        yield


def _local(fn, *args, **kwargs):
    """Run ``fn`` on the local threaded scheduler, whatever client is active."""
    with dask.config.set(scheduler="threads"):
        return fn(*args, **kwargs)


def _same_maps(a, b, names=None):
    for name in names or a.maps_names:
        np.testing.assert_array_equal(
            a.get_map(name, return_type="array"), b.get_map(name, return_type="array"), err_msg=name
        )


# ------------------------------------------------------------------ pain: ALE + FWE on S3
def test_ale_fwe_on_the_cluster_saved_to_s3(cluster_client, s3_bucket, pain_studyset):
    opts = s3_bucket.storage_options
    url = s3_bucket.url("pain.zarr")
    pain_studyset.to_zarr(url, storage_options=opts)
    ss = open_studyset(url, storage_options=opts)
    corrector = FWECorrector(
        method="montecarlo", n_iters=200, voxel_thresh=0.001, random_state=3, n_cores=1
    )
    on_cluster = corrector.transform(ALE().fit(ss))
    on_cluster.to_zarr(s3_bucket.url("ale.zarr"), storage_options=opts)
    back = open_result(s3_bucket.url("ale.zarr"), storage_options=opts)
    local = _local(corrector.transform, _local(ALE().fit, pain_studyset))
    names = [n for n in local.maps_names if "cluster" in n or n in ("z", "stat")]
    assert any("desc-size_level-cluster" in n for n in names)
    _same_maps(back, local, names)
    for key in local.null_distributions:
        np.testing.assert_array_equal(back.null_distributions[key], local.null_distributions[key])


def test_worker_killed_mid_run_gives_the_identical_null(
    cluster_client, dask_cluster, pain_studyset
):
    corrector = FWECorrector(
        method="montecarlo", n_iters=3000, voxel_thresh=0.001, random_state=11, n_cores=1
    )
    result = ALE().fit(pain_studyset)
    out: dict = {}

    def run():
        out["res"] = corrector.transform(result)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not any(cluster_client.processing().values()):  # blocks are running
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    dask_cluster.kill_worker(0)
    worker.join(300)
    assert not worker.is_alive()
    local = _local(corrector.transform, result)
    for key in local.null_distributions:
        np.testing.assert_array_equal(
            out["res"].null_distributions[key], local.null_distributions[key]
        )


def test_local_path_unreachable_by_workers_is_written_by_the_client(
    cluster_client, tmp_path, pain_studyset, monkeypatch
):
    # workers elsewhere, output on the client's disk: the client computes on the workers and
    # writes itself (the probe says the workers cannot see the folder)
    monkeypatch.setattr(storage, "workers_can_reach", lambda location: False)
    ss_loc = tmp_path / "pain.zarr"
    pain_studyset.to_zarr(ss_loc)
    ss = open_studyset(ss_loc)
    from nimare_dask.kernels import MKDAKernel

    ma = MKDAKernel().transform(ss, store=True)  # the MA-map cache, written through the client
    np.testing.assert_array_equal(
        ma.values, _local(MKDAKernel().transform, pain_studyset, return_type="array")
    )
    assert not any(p.name.startswith("nimare_dask-probe") for p in tmp_path.rglob("*"))


def test_probe_finds_a_shared_folder(cluster_client, tmp_path):
    # the workers run on this machine, so they do see the client's folder
    assert storage.workers_can_reach(storage.Location(tmp_path / "x.zarr"))
    assert not list(tmp_path.glob(".nimare_dask-probe*"))


# ------------------------------------------------------------------ Neurosynth on S3
@pytest.fixture(scope="module")
def ns_bucket(s3_server):
    name = s3_server.make_bucket()
    return name, s3_server.storage_options()


@pytest.fixture(scope="module")
def ns_stores(shared_data, ns_bucket, tmp_path_factory):
    """Neurosynth v7 + LDA50 ingested by the CLI from ../shared/data: on S3 and on disk."""
    from nimare_dask.cli import main

    name, opts = ns_bucket
    cache = tmp_path_factory.mktemp("ns-cache")
    local = tmp_path_factory.mktemp("ns-local") / "ns.zarr"
    url = f"s3://{name}/ns7.zarr"
    common = ["ingest", "neurosynth", "--base-url", str(shared_data / "neurosynth-v7")]
    common += ["--data-dir", str(cache)]
    endpoint = opts["client_kwargs"]["endpoint_url"]
    s3_flags = [
        "--storage-option",
        f"key={opts['key']}",
        "--storage-option",
        f"secret={opts['secret']}",
        "--storage-option",
        f"client_kwargs.endpoint_url={endpoint}",
        "--storage-option",
        "client_kwargs.region_name=us-east-1",
    ]
    assert main([*common, "-o", url, *s3_flags]) == 0
    assert main([*common, "-o", str(local)]) == 0
    return url, opts, local


@pytest.mark.database
def test_neurosynth_on_s3_with_the_cluster(cluster_client, ns_stores, ns_bucket):
    from nimare_dask.decode import CorrelationDecoder
    from nimare_dask.workflows import amygdala_roi

    url, opts, local_loc = ns_stores
    t0 = time.monotonic()
    ss = open_studyset(url, storage_options=opts)
    assert time.monotonic() - t0 < 30 and len(ss) == 14371
    local = open_studyset(local_loc)
    # the amygdala query
    ids = ss.get_studies_by_mask(amygdala_roi())
    assert len(ids) == 1404 and list(ids) == list(local.get_studies_by_mask(amygdala_roi()))
    # decoder fit: the maps are written by the workers into the S3 store
    kw = {"feature_group": "LDA50_abstract_weight", "features": TOPICS}
    dec = CorrelationDecoder(**kw).fit(ss)
    keys = storage.Location(url, opts).join("derived", "decoder").list_dirs()
    assert len(keys) == 1
    ref = _local(CorrelationDecoder(**kw).fit, local)
    np.testing.assert_array_equal(dec.maps_.maps.values, ref.maps_.maps.values)
    r = dec.transform(amygdala_roi())
    r_ref = _local(ref.transform, amygdala_roi())
    np.testing.assert_allclose(r["r"].to_numpy(), r_ref.loc[r.index, "r"].to_numpy(), atol=R_ATOL)
    assert r["r"].idxmax().endswith("26_emotional_amygdala_negative")
    # reopened from the S3 store by another decoder (a lab's shared store)
    again = CorrelationDecoder.from_store(open_studyset(url, storage_options=opts))
    r_again = again.transform(amygdala_roi())
    np.testing.assert_allclose(r_again["r"].to_numpy(), r["r"].to_numpy(), atol=R_ATOL)


@pytest.mark.database
def test_macm_with_small_fwe_on_s3(cluster_client, ns_stores):
    from nimare_dask.workflows import amygdala_roi, macm

    url, opts, local_loc = ns_stores
    ss = open_studyset(url, storage_options=opts)
    corrector = FWECorrector(
        method="montecarlo", n_iters=8, voxel_thresh=0.001, random_state=5, n_cores=1
    )
    res = macm(ss, amygdala_roi(), estimator=ALE(kernel__fwhm=10), corrector=corrector)
    ref = _local(
        macm,
        open_studyset(local_loc),
        amygdala_roi(),
        estimator=ALE(kernel__fwhm=10),
        corrector=corrector,
    )
    assert res.tables["selected_studies"].shape[0] == 1404
    _same_maps(res, ref)
    res.to_zarr(f"{url.rsplit('/', 1)[0]}/macm.zarr", storage_options=opts)

"""Graphs that do not grow with the data: every job ships small Dask graphs to a cluster.

A module-scoped ``distributed`` cluster (one worker process, two threads) runs the ordinary
jobs: ALE + Monte Carlo FWE, MKDAChi2, Jackknife, MACM, writing a result, and (marked
``database``) the correlation decoder on the whole Neurosynth store. Every graph the client
sends is measured by distributed itself (its "Sending large graph of size ..." warning, raised
here for any size and recorded) and must stay under 1 MiB; outside the measured blocks the
warning is an error. Results are checked against the same jobs run on the local threaded
scheduler before the cluster starts.

Before issue #10 a grid pickled with its caches (13 MB once its neighbour table was built) and
the decoder copied all 507,891 Neurosynth foci into its tasks: 9-12 MiB graphs for every job.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings

import dask
import numpy as np
import pytest
from dask.utils import parse_bytes

from nimare_dask import open_studyset
from nimare_dask.correct import FWECorrector
from nimare_dask.diagnostics import Jackknife
from nimare_dask.kernels.foci import FociTable, foci_blocks
from nimare_dask.meta.cbma import ALE, MKDAChi2
from nimare_dask.results import open_result
from nimare_dask.workflows import macm

pytestmark = pytest.mark.filterwarnings("error:.*Sending large graph.*:UserWarning")

LIMIT = 2**20  # bytes per graph
SEEDS = [np.array([[0.0, 10.0, 40.0]]), np.array([[40.0, -20.0, 10.0], [0.0, 0.0, 0.0]])]
_SIZE = re.compile(r"Sending large graph of size ([\d.]+ ?\w+)")


@contextlib.contextmanager
def measured_graphs():
    """Record the size distributed measures for every graph sent inside the block."""
    sizes: list[int] = []
    threshold = {"distributed.admin.large-graph-warning-threshold": "1B"}
    with dask.config.set(threshold), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield sizes
    for w in caught:
        m = _SIZE.search(str(w.message))
        if m:
            sizes.append(parse_bytes(m.group(1).replace(" ", "")))


def _check_sizes(sizes: list[int]) -> None:
    assert sizes, "no graph was sent to the cluster"
    assert max(sizes) < LIMIT, f"graph sizes {sizes}"


def _maps(result) -> dict[str, np.ndarray]:
    return {name: np.asarray(result.get_map(name, "array")) for name in result.maps}


def _assert_same_maps(got, expected) -> None:
    got, expected = _maps(got), _maps(expected)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def _assert_same_tables(got, expected) -> None:
    assert set(got.tables) == set(expected.tables)
    for name, table in expected.tables.items():
        if name.startswith("montecarlo_"):  # the run's record: backend, wall time
            table = table.drop(columns=["backend", "wall_s", "block_size", "n_blocks_computed"])
            other = got.tables[name][table.columns]
        else:
            other = got.tables[name]
        np.testing.assert_array_equal(other.to_numpy(), table.to_numpy(), name)


def _jobs(pain):
    """The jobs (each a callable), run once locally and once on the cluster."""
    ids = list(pain.ids)
    g1, g2 = pain.slice(ids[:11]), pain.slice(ids[11:])
    out = {}
    ale = ALE().fit(pain)
    out["ale"] = ale
    out["fwe"] = FWECorrector(method="montecarlo", n_iters=20, random_state=0).transform(ale)
    chi2 = MKDAChi2().fit(g1, g2)
    out["mkdachi2"] = chi2
    out["jackknife"] = Jackknife("z", target_threshold=3.1).transform(ale, studyset=pain)
    out["jackknife_chi2"] = Jackknife(
        "z_desc-association", target_threshold=3.0, display_second_group=True
    ).transform(chi2, studyset=g1, studyset2=g2)
    out["macm"] = macm(pain, SEEDS[0], r=20)
    out["macm_shared"] = macm(pain, SEEDS, r=20)
    return out


@pytest.fixture(scope="module")
def local_results(pain_studyset):
    """The jobs on the local threaded scheduler (before the cluster starts)."""
    return _jobs(pain_studyset)


@pytest.fixture(scope="module")
def client(local_results):
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"}):
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        with Client(cluster) as c:
            yield c
        cluster.close()


@pytest.fixture(scope="module")
def cluster_results(client, pain_studyset):
    with measured_graphs() as sizes:
        out = _jobs(pain_studyset)
    out["_sizes"] = sizes
    return out


# ---------------------------------------------------------------------------- graphs
def test_every_job_ships_small_graphs(cluster_results):
    _check_sizes(cluster_results["_sizes"])


@pytest.mark.parametrize(
    "job", ["ale", "fwe", "mkdachi2", "jackknife", "jackknife_chi2", "macm", "macm_shared"]
)
def test_cluster_results_equal_local_ones(job, cluster_results, local_results):
    got, expected = cluster_results[job], local_results[job]
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            _assert_same_maps(g, e)
        return
    _assert_same_maps(got, expected)
    _assert_same_tables(got, expected)


def test_one_ale_job_graph_by_graph(client, pain_studyset):
    """Each job separately, with its graph measured (the 21-study pain job shipped 12.75 MiB)."""
    ale = ALE()
    with measured_graphs() as fit_sizes:
        res = ale.fit(pain_studyset)
    _check_sizes(fit_sizes)
    with measured_graphs() as jk_sizes:
        Jackknife("z", target_threshold=3.1).transform(res, studyset=pain_studyset)
    _check_sizes(jk_sizes)
    assert max(fit_sizes + jk_sizes) < 64 * 2**10  # a few kB: nothing grows with the data


def test_result_to_zarr_on_the_cluster(client, cluster_results, local_results, tmp_path):
    with measured_graphs() as sizes:
        loc = cluster_results["fwe"].to_zarr(tmp_path / "result.zarr")
    assert not sizes or max(sizes) < LIMIT
    _assert_same_maps(open_result(loc), local_results["fwe"])


def test_store_foci_are_read_by_the_tasks(client, pain_studyset, tmp_path):
    """With a store, the foci blocks read the store's points; without, one shared table."""
    pain_studyset.to_zarr(tmp_path / "pain.zarr")
    stored = open_studyset(tmp_path / "pain.zarr")
    bounds = [0, 5, 5, 12, len(stored)]
    from_store = foci_blocks(stored, bounds, "test")
    in_memory = foci_blocks(pain_studyset, bounds, "test")
    store_keys = [str(k) for k in from_store[0].__dask_graph__()]
    assert not any("foci-table" in k for k in store_keys)
    assert any("foci-table" in str(k) for k in in_memory[0].__dask_graph__())
    # the in-memory table is scattered: the graph holds its key, not the arrays
    assert len(pickle.dumps(dict(in_memory[0].__dask_graph__()))) < 4096
    with measured_graphs() as sizes:
        got = dask.compute(*from_store)
    _check_sizes(sizes)
    table = FociTable.from_studyset(pain_studyset)
    for (a, b), block in zip(zip(bounds[:-1], bounds[1:], strict=True), got, strict=True):
        expected = table.block(a, b)
        for x, y in zip(block, expected, strict=True):
            np.testing.assert_array_equal(x, y)
    ijk, rows, n_rows, _ = table.block(0, len(stored))
    np.testing.assert_array_equal(ijk, pain_studyset.ijk())
    np.testing.assert_array_equal(rows, pain_studyset.focus_rows())
    assert n_rows == len(stored)


# ---------------------------------------------------------------------------- decoder
NS = "data-neurosynth_version-7"
TOPICS = [
    "10_food_taste_weight",
    "13_fear_threat_smokers",
    "32_pain_somatosensory_stimulation",
    "26_emotional_amygdala_negative",
    "3_cortex_anterior_cingulate",
]
DECODER = {
    "feature_group": "LDA50_abstract_weight",
    "features": TOPICS,
    "chunks": {"analysis": 2048, "voxel": 16384},
}


@pytest.fixture(scope="module")
def neurosynth_store(shared_data, tmp_path_factory):
    from nimare_dask.io import convert_neurosynth_to_studyset

    src = shared_data / "neurosynth-v7"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = convert_neurosynth_to_studyset(
            src / f"{NS}_coordinates.tsv.gz",
            src / f"{NS}_metadata.tsv.gz",
            src / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz",
        )
    loc = tmp_path_factory.mktemp("ns-graph") / "neurosynth.zarr"
    ss.to_zarr(loc)
    return loc


@pytest.mark.database
def test_decoder_graphs_on_the_whole_neurosynth_store(client, neurosynth_store):
    from nimare_dask.decode import CorrelationDecoder

    ss = open_studyset(neurosynth_store)
    # the reference: in memory (no store: one foci table), local threads
    with dask.config.set(scheduler="threads"):
        ref = CorrelationDecoder(**DECODER).fit(ss.slice(ss.ids))
        img = ref.maps_.get_map(ref.features_[3], "array")
        ref_r = ref.transform(img)
    assert not ref.maps_.is_lazy
    # on the cluster, from the store: the decode-ma tasks read their foci themselves
    with measured_graphs() as fit_sizes:
        dec = CorrelationDecoder(**DECODER).fit(ss)
    _check_sizes(fit_sizes)  # was 12.46 MiB (every focus of Neurosynth in the graph)
    assert dec.maps_.is_lazy
    np.testing.assert_array_equal(np.asarray(dec.maps_.maps.values), ref.maps_.maps.values)
    with measured_graphs() as r_sizes:
        r = dec.transform(img)
    _check_sizes(r_sizes)  # was 1.75 MiB (the image copied once per block of maps)
    # the stored maps' voxel chunks differ from the in-memory ones: r is combined from
    # per-chunk moments in another order
    np.testing.assert_allclose(r["r"].to_numpy(), ref_r["r"].to_numpy(), rtol=1e-10)
    # in-memory maps and foci on the cluster: scattered once, not copied into the graph
    with measured_graphs() as mem_sizes:
        mem = CorrelationDecoder(**DECODER).fit(ss.slice(ss.ids))
        mem_r = mem.transform(img)
    _check_sizes(mem_sizes)  # were 12.45 MiB (fit) and 6.10 MiB (transform)
    np.testing.assert_array_equal(mem.maps_.maps.values, ref.maps_.maps.values)
    np.testing.assert_array_equal(mem_r["r"].to_numpy(), ref_r["r"].to_numpy())

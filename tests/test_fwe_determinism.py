"""Monte Carlo FWE through the estimators: identical nulls for any blocks, workers, scheduler.

Every comparison is exact (``assert_array_equal``): iteration ``i`` draws from its own keyed
generator, so block size, number of workers, threads or processes, a killed worker or an
interrupted and resumed run change nothing. Checkpoints and early stopping are exercised
through ``FWECorrector``/``correct_fwe_montecarlo``.
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE
from nimare_dask.meta.cbma.random_foci import RandomFociNull
from nimare_dask.montecarlo import CheckpointMismatchError, EarlyStopping

N_ITERS = 70
KEYS = ("max_stat", "max_size", "max_mass")
TABLE = "montecarlo_corr-FWE_method-montecarlo"


@pytest.fixture(scope="module")
def ale_fit(pain_studyset):
    est = ALE(random_state=11, progress=False)
    return est, est.fit(pain_studyset)


def _null(est, res, **kw):
    kw.setdefault("voxel_thresh", 0.001)
    kw.setdefault("n_iters", N_ITERS)
    est.correct_fwe_montecarlo(res, **kw)
    return est.montecarlo_["correct_fwe_montecarlo"]


@pytest.fixture(scope="module")
def reference(ale_fit):
    est, res = ale_fit
    return _null(est, res, block_size=N_ITERS, n_cores=1)


def _same(a, b):
    for key in KEYS:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_identical_for_block_sizes(ale_fit, reference, block_size):
    est, res = ale_fit
    got = _null(est, res, block_size=block_size, n_cores=2)
    assert got.block_size == block_size
    _same(got, reference)


def test_the_maps_follow_the_null(ale_fit, reference):
    est, res = ale_fit
    out = FWECorrector("montecarlo", n_iters=N_ITERS, block_size=9).transform(res)
    null = out.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    np.testing.assert_array_equal(null, reference["max_stat"])
    table = out.tables[TABLE]
    assert table["random_state"].iloc[0] == "11" and table["n_iters_run"].iloc[0] == N_ITERS


@pytest.mark.parametrize("n_workers", [1, 2])
def test_distributed_threads_cluster(ale_fit, reference, n_workers):
    from distributed import Client, LocalCluster

    est, res = ale_fit
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        got = _null(est, res, block_size=10)
    assert got.backend == "distributed"
    _same(got, reference)


@pytest.fixture
def process_cluster():
    from distributed import Client, LocalCluster

    # spawned worker processes (fork can deadlock once the test process runs numba threads)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        yield client


def test_distributed_processes(ale_fit, reference, process_cluster):
    est, res = ale_fit
    got = _null(est, res, block_size=10)
    assert got.backend == "distributed"
    _same(got, reference)


def test_worker_killed_mid_run(ale_fit, process_cluster):
    """SIGKILL one worker process while blocks run: Dask recomputes; the null is identical."""
    est, res = ale_fit
    n_iters = 800  # ~1 s of blocks on two workers: the kill at 0.5 s lands mid-run
    ref = _null(est, res, n_iters=n_iters, block_size=n_iters, n_cores=1)
    pids = list(process_cluster.run(os.getpid).values())
    killer = threading.Timer(0.5, os.kill, args=(pids[0], signal.SIGKILL))
    killer.start()
    try:
        got = _null(est, res, n_iters=n_iters, block_size=10)
    finally:
        killer.cancel()
        killer.join()
    assert got.backend == "distributed"
    assert got.timing["wall_s"] > 0.5  # the worker died during the run
    assert pids[0] not in process_cluster.run(os.getpid).values()
    for key in KEYS:
        np.testing.assert_array_equal(got.arrays[key], ref.arrays[key])


class _Interrupt(Exception):
    pass


def test_checkpoint_resume_through_the_corrector(ale_fit, reference, tmp_path, monkeypatch):
    est, res = ale_fit
    ckpt = tmp_path / "fwe.zarr"
    original = RandomFociNull.__call__

    def failing(self, start, stop, seed):
        if start >= 35:
            raise _Interrupt(f"killed at {start}")
        return original(self, start, stop, seed)

    monkeypatch.setattr(RandomFociNull, "__call__", failing)
    corrector = FWECorrector("montecarlo", n_iters=N_ITERS, block_size=5, checkpoint=str(ckpt))
    with pytest.raises(_Interrupt):
        corrector.transform(res)
    monkeypatch.setattr(RandomFociNull, "__call__", original)
    out = corrector.transform(res)
    got = est.montecarlo_["correct_fwe_montecarlo"]
    assert got.n_blocks_loaded >= 7 and got.n_blocks_computed < N_ITERS // 5
    _same(got, reference)
    assert out.tables[TABLE]["n_blocks_loaded"].iloc[0] == got.n_blocks_loaded
    # another cluster-forming threshold is another null: the checkpoint refuses it
    with pytest.raises(CheckpointMismatchError, match="inputs_fingerprint"):
        FWECorrector(
            "montecarlo", n_iters=N_ITERS, voxel_thresh=0.01, checkpoint=str(ckpt)
        ).transform(res)


def test_early_stopping_is_recorded(ale_fit, reference):
    est, res = ale_fit
    rule = EarlyStopping(rel_se=0.5, min_iters=20, check_every=10)
    out = FWECorrector("montecarlo", n_iters=N_ITERS, early_stop=rule, block_size=3).transform(res)
    table = out.tables[TABLE]
    assert bool(table["stopped_early"].iloc[0])
    n = int(table["n_iters_run"].iloc[0])
    assert n == 20 and "stopped early after 20" in table["reason"].iloc[0]
    null = out.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    np.testing.assert_array_equal(null, reference["max_stat"][:n])
    assert "stopped early" in out.description
    p = out.get_map("p_level-voxel_corr-FWE_method-montecarlo", return_type="array")
    assert p.min() >= 1 / n - 1e-7  # p-values use the iterations that ran

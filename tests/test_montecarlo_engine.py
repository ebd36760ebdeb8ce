"""The Monte Carlo engine: seeding, block/scheduler invariance, checkpoints, early stopping.

Every comparison here is exact (``assert_array_equal``): the engine promises the *same* numbers
for any block size, number of threads or workers, scheduler, restart or worker failure.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest
import zarr
from scipy import ndimage

from nimare_dask.montecarlo import (
    CheckpointMismatchError,
    EarlyStopping,
    SeedInfo,
    iteration_rng,
    plan_blocks,
    quantile_standard_error,
    resolve_random_state,
    run_blocks,
    stream_key,
)
from nimare_dask.space import get_grid
from nimare_dask.stats.clusters import max_cluster_stats_batch, neighbours

# Worker processes cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_DRAWS = 200


def uniform_max_block(start: int, stop: int, seed: SeedInfo) -> dict:
    """The tiny example: per iteration, the max of uniform draws and a histogram of digits."""
    maxima = np.empty(stop - start)
    hist = np.zeros(10, dtype=np.int64)
    for row, i in enumerate(range(start, stop)):
        draws = seed.rng(i).random(N_DRAWS)
        maxima[row] = draws.max()
        hist += np.bincount((draws * 10).astype(np.int64), minlength=10)
    return {"max": maxima, "hist": hist}


def normal_max_block(start: int, stop: int, seed: SeedInfo) -> dict:
    return {"max": np.array([seed.rng(i).standard_normal(50).max() for i in range(start, stop)])}


def slow_block(start: int, stop: int, seed: SeedInfo) -> dict:
    time.sleep(0.02 * (stop - start))
    return uniform_max_block(start, stop, seed)


def run(fn=uniform_max_block, n_iters=150, block_size=7, **kw):
    kw.setdefault("random_state", 42)
    kw.setdefault("stream", "test_stream")
    kw.setdefault("reducer", {"hist": "sum"})
    kw.setdefault("progress", False)
    kw.setdefault("client", "threads")
    return run_blocks(fn, n_iters, block_size, **kw)


@pytest.fixture(scope="module")
def reference():
    return run(block_size=150, n_threads=1)


def assert_same(a, b):
    assert a.arrays.keys() == b.arrays.keys()
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


# ---------------------------------------------------------------------------- seeds
def test_iteration_rng_is_the_spawned_child_and_matches_nimare_streams():
    from nimare.utils import _seed_sequence

    # the stream key is NiMARE's: same entropy for the same (seed, stream)
    assert _seed_sequence(5, "correct_fwe_montecarlo").entropy == [
        5,
        stream_key("correct_fwe_montecarlo"),
    ]
    children = np.random.SeedSequence([5, stream_key("s")]).spawn(4)
    for i, child in enumerate(children):
        expected = np.random.default_rng(child).random(3)
        np.testing.assert_array_equal(iteration_rng(5, "s", i).random(3), expected)
    assert iteration_rng(5, "s", 0).random() != iteration_rng(5, "t", 0).random()
    assert iteration_rng(5, "s", 0).random() != iteration_rng(6, "s", 0).random()
    assert resolve_random_state(-1) == 2**64 - 1  # folded like NiMARE
    fresh = resolve_random_state(None)
    assert isinstance(fresh, int) and 0 <= fresh < 2**63
    with pytest.raises(TypeError):
        resolve_random_state(np.random.default_rng(0))
    with pytest.raises(TypeError):
        resolve_random_state(True)


def test_plan_blocks():
    assert plan_blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert plan_blocks(3, 64) == [(0, 3)]


# ---------------------------------------------------------------------------- invariance
@pytest.mark.parametrize("block_size", [1, 7, 64, None])
def test_identical_for_any_block_size(reference, block_size):
    got = run(block_size=block_size, n_threads=2)
    assert_same(got, reference)
    assert got.n_iters_run == 150 and not got.stopped_early
    assert got.arrays["max"].shape == (150,)
    assert got.arrays["hist"].sum() == 150 * N_DRAWS
    if block_size is not None:
        assert got.block_size == block_size


def test_result_reproduces_from_the_recorded_seed():
    first = run(random_state=None)
    assert first.random_state is not None
    again = run(random_state=first.random_state)
    assert_same(first, again)
    other = run(random_state=first.random_state + 1)
    assert not np.array_equal(first.arrays["max"], other.arrays["max"])


def test_block_outputs_are_validated():
    def wrong_length(start, stop, seed):
        return {"max": np.zeros(stop - start + 1)}

    with pytest.raises(ValueError, match=r"mc-null-block-0-5.*leading dimension of 5"):
        run(wrong_length, n_iters=10, block_size=5)

    def not_a_dict(start, stop, seed):
        return np.zeros(stop - start)

    with pytest.raises(TypeError, match="dict of numpy arrays"):
        run(not_a_dict, n_iters=10, block_size=5)

    def changing_keys(start, stop, seed):
        return {"a" if start == 0 else "b": np.zeros(stop - start)}

    with pytest.raises(ValueError, match="earlier blocks returned"):
        run(changing_keys, n_iters=10, block_size=5, n_threads=1)


def test_progress_bar_runs(capsys):
    got = run(progress=True, n_threads=1)
    assert "mc-null-block" in capsys.readouterr().err
    assert got.n_iters_run == 150


# ---------------------------------------------------------------------------- distributed
@pytest.mark.parametrize("n_workers", [1, 2])
def test_distributed_threads_cluster_matches(reference, n_workers):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        got = run(block_size=16, client=client)
        assert got.backend == "distributed"
        assert_same(got, reference)
        # with no client= the active client is used; "threads" forces the local pool
        auto = run(block_size=16, client=None)
        assert auto.backend == "distributed"
        assert_same(auto, reference)
        assert run(block_size=16, client="threads").backend == "threads"


def test_task_keys_read_well():
    from distributed import Client, LocalCluster, get_worker

    def keyed_block(start, stop, seed):
        key = get_worker().get_current_task()
        ok = re.fullmatch(rf"ale-null-block-{start}-{stop}-[0-9a-f]{{8}}", str(key))
        return {"ok": np.full(stop - start, ok is not None)}

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        got = run(keyed_block, n_iters=10, block_size=4, client=client, name="ale-null-block")
    assert got.arrays["ok"].all()


def test_worker_killed_mid_run_gives_identical_null(reference):
    """A worker process SIGKILLed while blocks run: Dask recomputes its tasks."""
    import dask
    from distributed import Client, LocalCluster

    # fork, not spawn: worker processes start in about a second instead of re-importing
    # everything (the block function is shipped by value all the same)
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        pids = list(client.run(os.getpid).values())
        killer = threading.Timer(0.4, os.kill, args=(pids[0], signal.SIGKILL))
        killer.start()
        try:
            got = run(slow_block, block_size=5, client=client)
        finally:
            killer.cancel()
        killer.join()
        # the kill happened during the run (30 blocks of 0.1 s each on 2 workers)
        assert got.timing["wall_s"] > 0.4
        assert pids[0] not in client.run(os.getpid).values()
    assert_same(got, reference)


# ---------------------------------------------------------------------------- checkpoints
class Boom(Exception):
    pass


def failing_after(cutoff: int, exc: type[BaseException] = Boom):
    calls = []

    def block(start, stop, seed):
        calls.append(start)
        if start >= cutoff:
            raise exc(f"interrupted at {start}")
        return uniform_max_block(start, stop, seed)

    return block, calls


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_interrupted_run_resumes_identically(tmp_path, reference, exc):
    ckpt = tmp_path / "null.zarr"
    fn, _ = failing_after(40, exc)
    with pytest.raises(exc, match="interrupted at 40"):
        run(fn, block_size=8, n_threads=1, checkpoint=ckpt, inputs_fingerprint="abc")
    # blocks 0-8 .. 32-40 finished before the failure and were saved
    saved = sorted(zarr.open_group(str(ckpt), mode="r")["blocks"].group_keys())
    assert {"0-8", "8-16", "16-24", "24-32", "32-40"} <= set(saved)

    calls = []

    def counting(start, stop, seed):
        calls.append(start)
        return uniform_max_block(start, stop, seed)

    resumed = run(counting, block_size=8, n_threads=1, checkpoint=ckpt, inputs_fingerprint="abc")
    assert_same(resumed, reference)
    assert resumed.n_blocks_loaded == len(saved)
    assert resumed.n_blocks_computed == len(plan_blocks(150, 8)) - len(saved)
    assert min(calls) >= 40  # nothing already saved was recomputed
    # a finished checkpoint: everything loads, nothing runs
    again = run(counting, block_size=8, checkpoint=ckpt, inputs_fingerprint="abc")
    assert again.n_blocks_computed == 0
    assert_same(again, reference)


def test_checkpoint_refuses_other_inputs(tmp_path):
    ckpt = tmp_path / "null.zarr"
    run(n_iters=20, block_size=5, checkpoint=ckpt, inputs_fingerprint="abc")
    for change, field in [
        ({"inputs_fingerprint": "xyz"}, "inputs_fingerprint"),
        ({"n_iters": 25}, "n_iters"),
        ({"random_state": 7}, "random_state"),
        ({"stream": "other"}, "stream"),
        ({"block_size": 4}, "block_size"),
    ]:
        kw = {"n_iters": 20, "block_size": 5, "inputs_fingerprint": "abc", **change}
        with pytest.raises(CheckpointMismatchError, match=field):
            run(checkpoint=ckpt, **kw)
    # a folder holding something else is not taken over
    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w").attrs["x"] = 1
    with pytest.raises(CheckpointMismatchError, match="not a nimare_dask"):
        run(n_iters=20, block_size=5, checkpoint=other)


def test_checkpoint_reuses_recorded_seed_and_block_size_and_skips_half_blocks(tmp_path):
    ckpt = tmp_path / "null.zarr"
    first = run(n_iters=30, block_size=None, random_state=None, checkpoint=ckpt)
    root = zarr.open_group(str(ckpt), mode="a")
    name = next(iter(root["blocks"].group_keys()))
    del root["blocks"][name].attrs["complete"]  # as if the process died mid-write
    again = run(n_iters=30, block_size=None, random_state=None, checkpoint=ckpt)
    assert again.random_state == first.random_state
    assert again.block_size == first.block_size
    assert again.n_blocks_computed == 1
    assert_same(again, first)


def test_checkpoint_in_memory_url(reference):
    url = f"memory://mc-{os.getpid()}-{time.time_ns()}.zarr"
    got = run(block_size=50, checkpoint=url)
    assert_same(got, reference)
    assert run(block_size=50, checkpoint=url).n_blocks_computed == 0


# ---------------------------------------------------------------------------- early stopping
def test_quantile_standard_error_is_maritz_jarrett():
    from scipy.stats import mstats

    x = np.random.default_rng(0).standard_normal(2000)
    value, se = quantile_standard_error(x, 0.95)
    assert value == np.quantile(x, 0.95)
    # same estimator as scipy's mstats.mjci; 1e-9 because se = sqrt(C2 - C1^2) cancels about
    # 3 digits and the two implementations sum the weighted moments in different orders
    np.testing.assert_allclose(se, mstats.mjci(x, [0.95])[0], rtol=1e-9)


def test_early_stop_is_deterministic_across_block_sizes_and_schedulers():
    rule = EarlyStopping(quantile=0.95, rel_se=0.01, min_iters=200, check_every=100)
    full = run(normal_max_block, n_iters=3000, block_size=64, reducer="concat")
    results = [
        run(
            normal_max_block,
            n_iters=3000,
            block_size=bs,
            early_stop=rule,
            reducer="concat",
            n_threads=nt,
        )
        for bs, nt in [(1, 1), (7, 2), (64, 2), (None, 2)]
    ]
    stop = results[0].n_iters_run
    assert results[0].stopped_early and 200 < stop < 3000 and stop % 100 == 0
    for got in results:
        assert got.n_iters_run == stop and got.stopped_early
        np.testing.assert_array_equal(got.arrays["max"], full.arrays["max"][:stop])
    # the rule holds at the stop point and at no earlier check point
    x = full.arrays["max"]
    for b in range(200, stop + 1, 100):
        value, se = quantile_standard_error(x[:b], 0.95)
        assert (se <= 0.01 * abs(value)) == (b == stop)
    assert "stopped early" in results[0].reason


def test_early_stop_not_met_runs_everything():
    rule = EarlyStopping(quantile=0.95, rel_se=1e-6, min_iters=50, check_every=50)
    got = run(normal_max_block, n_iters=200, block_size=32, early_stop=rule, reducer="concat")
    assert got.n_iters_run == 200 and not got.stopped_early
    assert "not met" in got.reason


def test_early_stop_with_summed_counts_stops_on_block_ends():
    rule = EarlyStopping(quantile=0.95, rel_se=0.5, min_iters=40, check_every=20, keys=["max"])
    with pytest.raises(ValueError, match="must divide"):
        run(n_iters=150, block_size=7, early_stop=rule)
    got = run(n_iters=150, block_size=5, early_stop=rule)
    assert got.stopped_early and got.n_iters_run == 40
    full = run(n_iters=40, block_size=40)
    assert_same(got, full)  # the summed histogram covers exactly the iterations kept
    auto = run(n_iters=150, block_size=None, early_stop=rule)
    assert 20 % auto.block_size == 0
    assert_same(auto, full)


# ---------------------------------------------------------------------------- clusters
def cluster_block_factory(nbrs: np.ndarray, n_voxels: int):
    """Random thresholded maps on the real grid: max cluster size and mass per iteration."""

    def block(start, stop, seed):
        maps = np.empty((stop - start, n_voxels), dtype=np.float32)
        thr = np.empty(stop - start)
        for row, i in enumerate(range(start, stop)):
            rng = seed.rng(i)
            # 0.5% to 35% of the voxels survive per tail: from specks to clusters beyond the
            # percolation threshold of 6-connected site percolation (31%)
            thr[row] = rng.uniform(0.3, 0.99)
            maps[row] = rng.random(n_voxels, dtype=np.float32) * 2 - 1
        sizes = np.empty(stop - start, dtype=np.int64)
        masses = np.empty(stop - start)
        for row in range(stop - start):  # one threshold per map
            s, m = max_cluster_stats_batch(maps[row : row + 1], nbrs, thr[row], two_sided=True)
            sizes[row], masses[row] = s[0], m[0]
        return {"size": sizes, "mass": masses, "thr": thr}

    return block


def test_max_cluster_stats_match_scipy_on_hundreds_of_random_maps():
    grid = get_grid()
    nbrs = neighbours(grid)
    n_iters = 200
    got = run(
        cluster_block_factory(nbrs, grid.n_voxels), n_iters=n_iters, block_size=25, reducer="concat"
    )
    conn = ndimage.generate_binary_structure(3, 1)
    seed = SeedInfo(42, "test_stream")
    # the reference labels the 3-D image with scipy, as NiMARE does (cropped to the mask's
    # bounding box with a zero border, which changes no cluster and halves the work)
    lo = grid.voxel_ijk.min(axis=0)
    hi = grid.voxel_ijk.max(axis=0) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    mask = np.pad(grid.mask[crop], 1)
    img = np.zeros(mask.shape, dtype=np.float32)
    for i in range(n_iters):
        rng = seed.rng(i)
        thr = rng.uniform(0.3, 0.99)
        img[mask] = rng.random(grid.n_voxels, dtype=np.float32) * 2 - 1
        mass_values = np.abs(img.ravel().astype(np.float64)) - thr
        best_size, best_mass = 0, 0.0
        for tail in (img > thr, img < -thr):
            labels, n = ndimage.label(tail, conn)
            if n:
                flat = labels.ravel()
                best_size = max(best_size, int(np.bincount(flat)[1:].max()))
                # ndimage.sum's own method: a weighted bincount in C order
                best_mass = max(best_mass, float(np.bincount(flat, mass_values)[1:].max()))
        assert got.arrays["size"][i] == best_size, i
        assert got.arrays["mass"][i] == best_mass, i  # same summation order: exact
    sizes = got.arrays["size"]
    assert sizes.min() < 10 and sizes.max() > 10_000  # specks to percolating clusters

"""Random-foci Monte Carlo nulls: exact iterations, ``null_method="montecarlo"``, NiMARE agreement.

* One iteration of the fused numba null (foci drawn at random, MA maps reduced straight into
  the statistic, max statistic and clusters) is compared with the estimator's own ``fit`` on a
  studyset whose foci were moved to the same voxels: the maximum statistic, the largest
  cluster's size and its mass are **identical** (same float32 kernels, same float32 ``log1p``,
  same study order of the float64 sums, same 6-connected labelling).
* ``null_method="montecarlo"`` against NiMARE 0.22.1's: the cluster-forming thresholds of two
  independent runs are compared within the Monte Carlo error of a histogram quantile (stated
  in the test).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nimare_dask import Studyset
from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, KDA, MKDADensity
from nimare_dask.montecarlo import SeedInfo
from nimare_dask.stats.clusters import max_cluster_stats


def _relocated(ss: Studyset, ijk: np.ndarray) -> Studyset:
    """The same analyses (ids, sample sizes) with every focus moved to the given voxels."""
    xyz = ss.grid.ijk_to_mm(ijk)
    points = pd.DataFrame(
        {
            "id": np.asarray(ss.ids)[ss.focus_rows()],
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "space": "MNI",
        }
    )
    analyses = ss.analyses[["id", "study_id", "contrast_id"]]
    meta = pd.DataFrame({"id": ss.ids, "sample_sizes": ss.sample_sizes})
    return Studyset.from_tables(analyses, points, meta)


ESTIMATORS = [
    (ALE, {}),
    (MKDADensity, {}),
    (MKDADensity, {"weighting": "sample_size"}),
    (KDA, {}),
    (ALE, {"kernel__fwhm": 14}),  # wide kernel: more overlapping foci within a study
]


@pytest.mark.parametrize(("cls", "kwargs"), ESTIMATORS)
def test_iteration_equals_fit_on_relocated_foci(pain_studyset, cls, kwargs):
    est = cls(**kwargs)
    est.fit(pain_studyset)
    thr = est.summarystat_threshold(0.001)
    block = est._null_block(pain_studyset, "fwe", threshold=thr)
    seed = SeedInfo(7, "correct_fwe_montecarlo")
    out = block(3, 6, seed)
    for row, i in enumerate(range(3, 6)):
        ijk = block._draw(seed.rng(i), block.layouts[0])
        moved = _relocated(pain_studyset, ijk)
        np.testing.assert_array_equal(moved.ijk(), ijk)
        stat = cls(**kwargs).fit(moved).get_map("stat", return_type="array")
        size, mass = max_cluster_stats(stat, pain_studyset.grid, thr)
        # exact: the null runs the observed statistic's arithmetic (module docstring)
        assert out["max_stat"][row] == stat.max()
        assert out["max_size"][row] == size
        assert out["max_mass"][row] == mass


def test_foci_outside_the_mask_are_relocated_too(pain_studyset):
    """NiMARE moves every focus (row of its coordinates), inside the mask or not."""
    est = ALE()
    est.fit(pain_studyset)
    block = est._null_block(pain_studyset, "fwe", threshold=None)
    assert block.layouts[0].n_foci == len(pain_studyset.coordinates) == 267


@pytest.fixture(scope="module")
def mc_fits(pain_studyset):
    out = {}
    for cls in (ALE, MKDADensity, KDA):
        est = cls(null_method="montecarlo", n_iters=60, random_state=5, progress=False)
        out[cls.__name__] = (est, est.fit(pain_studyset))
    return out


@pytest.mark.parametrize("name", ["ALE", "MKDADensity", "KDA"])
def test_montecarlo_null_fit(mc_fits, pain_studyset, name):
    est, res = mc_fits[name]
    nulls = res.null_distributions
    hist = nulls["histweights_corr-none_method-montecarlo"]
    # every voxel of every iteration lands in a bin (the statistic never exceeds the grid)
    assert hist.sum() == 60 * pain_studyset.grid.n_voxels
    assert nulls["histweights_level-voxel_corr-fwe_method-montecarlo"].sum() == 60
    assert "histweights_corr-none_method-approximate" not in nulls
    p = res.get_map("p", return_type="array")
    assert 0 < p.min() and p.max() <= 1
    # same seed, same stream: the same histogram
    again = type(est)(null_method="montecarlo", n_iters=60, random_state=5, progress=False)
    again = again.fit(pain_studyset)
    np.testing.assert_array_equal(
        again.null_distributions["histweights_corr-none_method-montecarlo"], hist
    )
    # p agrees with the exact/approximate null where both are precise (p > 0.01): the
    # Monte Carlo tail at p = 0.01 rests on ~14,000 voxel draws, relative sd < 1%, and the
    # approximate null is exact for MKDA/KDA (and close for ALE): 15% is far outside noise
    # only for a wrong null
    approx = type(est)().fit(pain_studyset).get_map("p", return_type="array")
    sel = approx > 0.01
    ratio = p[sel] / approx[sel]
    assert 0.85 < np.median(ratio) < 1.15


def test_montecarlo_vfwe_only_uses_the_fit_histogram(mc_fits):
    est, res = mc_fits["ALE"]
    out = FWECorrector(method="montecarlo", vfwe_only=True, n_iters=10).transform(res)
    name = "p_level-voxel_corr-FWE_method-montecarlo"
    assert name in out.maps_names
    assert "values_level-voxel_corr-fwe_method-montecarlo" not in out.null_distributions
    # the stat maximum is in (or below) the last non-empty bin of some iteration's maximum
    p = out.get_map(name, return_type="array")
    assert p.min() >= 1 / 60 - 1e-6


@pytest.fixture(scope="module")
def nimare_montecarlo_ale(pain_json):
    from nimare.meta.cbma import ALE as NiMAREALE
    from nimare.studyset import Studyset as NiMAREStudyset

    est = NiMAREALE(null_method="montecarlo", n_iters=40, random_state=3)
    est.fit(NiMAREStudyset(str(pain_json)))
    return est


def test_montecarlo_null_matches_nimare(pain_studyset, nimare_montecarlo_ale):
    ours = ALE(null_method="montecarlo", n_iters=120, random_state=3, progress=False)
    ours.fit(pain_studyset)
    theirs = nimare_montecarlo_ale
    np.testing.assert_array_equal(
        ours.null_distributions_["histogram_bins"], theirs.null_distributions_["histogram_bins"]
    )
    # Thresholds at uncorrected p = 0.001 and 0.01 from two independent random-foci nulls.
    # NiMARE's rests on 40 x 228,483 voxel draws: ~9,100 above the p = 0.001 threshold, so the
    # quantile's relative Monte Carlo sd is below 1% (the ALE density there is smooth); ours
    # has 3x the draws. A 4% tolerance is > 4 sd; a wrong null (kernel, foci count, mask)
    # moves the threshold by far more (e.g. one focus fewer per study: -8%).
    for p in (0.001, 0.01):
        a = ours.summarystat_threshold(p)
        b = theirs._p_to_summarystat(p)
        assert abs(a - b) / b < 0.04, (p, a, b)


def test_iteration_exact_for_studies_with_many_foci(pain_studyset):
    """Studies with more foci than MANY_FOCI (ALE_MANY_FOCI) take the all-shared path and the
    dense flush."""
    from nimare_dask.meta.cbma._mc_numba import ALE_MANY_FOCI, MANY_FOCI

    ss = pain_studyset
    rows = ss.focus_rows()
    big = np.where(rows < 12, "big-1", "big-2")  # 2 studies of ~130 foci each
    xyz = ss.xyz()
    points = pd.DataFrame({"id": big, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    points["space"] = "MNI"
    analyses = pd.DataFrame({"study_id": ["big", "big"], "contrast_id": ["1", "2"]})
    meta = pd.DataFrame({"id": ["big-1", "big-2"], "sample_sizes": [20, 12]})
    merged = Studyset.from_tables(analyses, points, meta)
    assert merged.foci_counts().min() > max(MANY_FOCI, ALE_MANY_FOCI)
    for cls in (ALE, MKDADensity):
        est = cls()
        est.fit(merged)
        thr = est.summarystat_threshold(0.01)
        block = est._null_block(merged, "fwe", threshold=thr)
        seed = SeedInfo(3, "correct_fwe_montecarlo")
        out = block(0, 2, seed)
        for i in range(2):
            ijk = block._draw(seed.rng(i), block.layouts[0])
            stat = cls().fit(_relocated(merged, ijk)).get_map("stat", return_type="array")
            size, mass = max_cluster_stats(stat, merged.grid, thr)
            assert out["max_stat"][i] == stat.max()
            assert (out["max_size"][i], out["max_mass"][i]) == (size, mass)


def _reference_ale_sum(grid, lay, ijk: np.ndarray) -> np.ndarray:
    """``sum_i log(1 - MA_i)`` in study order, straight from the kernel runs (numpy)."""
    mask = grid.mask
    lut = np.full(mask.size, -1, dtype=np.int64)
    lut[np.flatnonzero(mask)] = np.arange(grid.n_voxels)
    acc = np.zeros(grid.n_voxels)
    for r in range(len(lay.ptr) - 1):
        runs = lay.runs[lay.run_ptr[lay.row_kid[r]] : lay.run_ptr[lay.row_kid[r] + 1]]
        q = np.repeat(np.arange(len(runs)), runs[:, 3])
        t = np.arange(len(q)) - np.repeat(np.cumsum(runs[:, 3]) - runs[:, 3], runs[:, 3])
        offsets = np.stack([runs[q, 0], runs[q, 1], runs[q, 2] + t], axis=1)
        values = lay.entry[runs[q, 4] + t]
        study = np.zeros(grid.n_voxels, dtype=np.float32)  # log(1 - max MA): min of the logs
        for f in range(lay.ptr[r], lay.ptr[r + 1]):
            pos = ijk[f] + offsets
            inside = np.all((pos >= 0) & (pos < mask.shape), axis=1)
            idx = lut[np.ravel_multi_index(tuple(pos[inside].T), mask.shape)]
            keep = idx >= 0
            study[idx[keep]] = np.minimum(study[idx[keep]], values[inside][keep])
        acc += study
    return acc


def test_ale_accumulation_matches_a_plain_reference(pain_studyset):
    """The slot-layout ALE accumulation equals a plain numpy reference bit for bit: studies
    of 1 to 135 foci (direct, partly shared and all-shared), several kernels, foci on the
    grid's faces and outside it (a SCALE pool may hold such positions)."""
    from nimare_dask.meta.cbma._mc_numba import ALE_MANY_FOCI
    from nimare_dask.meta.cbma.random_foci import build_random_foci_null

    ss = pain_studyset
    sizes = np.array([1, 1, 2, 3, 8, 24, 33, 60, 135])
    assert sizes.sum() == len(ss.coordinates) and sizes.max() > ALE_MANY_FOCI
    ids = np.repeat([f"s{n}-{i}" for i, n in enumerate(sizes)], sizes)
    xyz = ss.xyz()
    points = pd.DataFrame({"id": ids, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    points["space"] = "MNI"
    names = [f"s{n}-{i}" for i, n in enumerate(sizes)]
    analyses = pd.DataFrame({"id": names, "study_id": names, "contrast_id": "1"})
    meta = pd.DataFrame({"id": names, "sample_sizes": [8, 12, 20, 9, 30, 15, 11, 25, 18]})
    grouped = Studyset.from_tables(analyses, points, meta)
    est = ALE()
    est.fit(grouped)
    block = build_random_foci_null(est.kernel, [grouped], "ale", threshold=0.01)
    lay = block.layouts[0]
    grid = grouped.grid
    s0, s1, s2 = grid.shape
    rng = np.random.default_rng(0)
    ijk = grid.voxel_ijk[rng.integers(0, grid.n_voxels, size=lay.n_foci)].astype(np.int64)
    # pairs of foci within kernel reach of each other, the first often outside the grid; the
    # mask reaches the bottom plane (k = 0) near (43, 39)
    low = grid.voxel_ijk[grid.voxel_ijk[:, 2] == 0][0].astype(np.int64)
    assert (np.abs(low - [43, 39, 0]) < 6).all()
    pairs = np.array(
        [
            [low + [0, 0, -3], low + [1, 1, 2]], [low + [1, -1, -7], low + [-2, 1, 3]],
            [[-3, 50, 40], [2, 52, 41]], [low + [2, 0, -2], low + [0, 2, 4]],
            [[s0 + 2, 60, 40], [s0 - 3, 58, 42]], [[45, 50, s2 + 4], [44, 51, s2 - 2]],
            [[-12, -12, 40], [30, 60, 2]], [[45, s1 + 3, 40], [44, s1 - 4, 43]],
        ]
    )  # fmt: skip
    for row in range(len(sizes)):  # one pair per study (one focus of it in single-focus ones)
        f0 = lay.ptr[row]
        take = min(2, lay.ptr[row + 1] - f0)
        ijk[f0 : f0 + take] = pairs[row % len(pairs), :take]
    acc = np.zeros(grid.n_voxels)
    block._accumulate(lay, ijk, acc, block._ale_buffers(), None)
    np.testing.assert_array_equal(acc, _reference_ale_sum(grid, lay, ijk))
    # the work space is left clean: a second pass gives the same map
    buffers = block._ale_buffers()
    for _ in range(2):
        again = np.zeros(grid.n_voxels)
        block._accumulate(lay, ijk, again, buffers, None)
        np.testing.assert_array_equal(again, acc)


def test_ale_accumulation_on_a_grid_filled_to_its_faces():
    """The slot layout on a small grid whose mask touches every face and has holes (rows of
    several segments), with two kernels of uneven extents, one of them not a full box, and
    foci anywhere (on and outside the grid's faces): equal to the plain reference."""
    from types import SimpleNamespace

    from nimare_dask.kernels.shapes import kernel_runs
    from nimare_dask.meta.cbma import _mc_numba as mc
    from nimare_dask.space import Grid

    rng = np.random.default_rng(1)
    shape = (13, 11, 17)
    mask = np.ones(shape, dtype=bool)
    mask[4:7, 3:9, 6:9] = False  # holes: rows of two segments
    mask[10, :, 12:] = False
    mask[:, 5, :4] = False
    grid = Grid(mask=mask, affine=np.eye(4))
    assert grid.column_segments[0][:, 3].max() == 2
    extents = [(2, 3, 2), (3, 2, 4)]
    offsets, values, starts = [], [], [0]
    for kk, ext in enumerate(extents):
        o = np.stack(np.meshgrid(*[np.arange(-e, e + 1) for e in ext], indexing="ij"), -1)
        o = o.reshape(-1, 3)
        if kk == 1:  # not a full box: drop the corners
            o = o[(np.abs(o) < ext).sum(axis=1) >= 1]
        offsets.append(o)
        values.append(-rng.uniform(0.0, 0.3, len(o)).astype(np.float32))
        starts.append(starts[-1] + len(o))
    run_ptr, runs, extent = kernel_runs(np.asarray(starts), np.concatenate(offsets))
    entry = np.concatenate(values)
    sizes = np.array([1, 3, 2, 12, 40, 5, 1, mc.ALE_MANY_FOCI + 1])
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    row_kid = (np.arange(len(sizes)) % 2).astype(np.int64)
    ijk = rng.integers(-4, np.array(shape) + 4, size=(ptr[-1], 3)).astype(np.int64)
    lay = SimpleNamespace(ptr=ptr, row_kid=row_kid, run_ptr=run_ptr, runs=runs, entry=entry)
    g = mc.ale_grid(shape, grid.column_segments, extent, slab=3)
    box, box_start = mc.ale_boxes(run_ptr, runs, extent, entry)
    cells = int(((2 * extent[:, 0] + 1) * (2 * extent[:, 1] + 1)).max())
    acc_slots = np.zeros(g.n_slots)
    scratch = np.zeros(g.n_slots, dtype=np.float32)
    fbits = np.empty(ptr[-1], dtype=np.int64)
    bits = np.empty((max(1, mc.ale_mixed_rows(ptr)), int(2 * extent[:, 0].max() + 1)), np.uint64)
    wins = np.empty(mc.ALE_MANY_FOCI * cells, dtype=np.int64)
    acc = np.empty(grid.n_voxels)
    mc.ale_accumulate(
        ijk, ptr, row_kid, extent, box_start, box, np.asarray(shape), g.rowtab, g.slab, g.slabs,
        acc_slots, scratch, fbits, bits, wins,
    )  # fmt: skip
    mc.ale_gather(acc_slots, g.segments, acc)
    np.testing.assert_array_equal(acc, _reference_ale_sum(grid, lay, ijk))
    assert not acc_slots.any()
    in_mask = np.concatenate([np.arange(a, a + n) for a, _, n in g.segments])
    assert not scratch[in_mask].any()

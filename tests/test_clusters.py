"""Cluster labelling and max-cluster statistics against scipy.ndimage and NiMARE 0.22.1."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nimare_dask.space import Grid, get_grid
from nimare_dask.stats.clusters import (
    cluster_p_maps,
    label_clusters,
    max_cluster_stats,
    max_cluster_stats_batch,
    max_cluster_stats_sparse,
    neighbours,
)

CONN = ndimage.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def grid() -> Grid:
    return get_grid()


@pytest.fixture(scope="module")
def nbrs(grid) -> np.ndarray:
    return neighbours(grid)


def _image(grid: Grid, values: np.ndarray) -> np.ndarray:
    img = np.zeros(grid.shape, dtype=values.dtype)
    img[grid.mask] = values
    return img


def _scipy_labels(grid: Grid, values: np.ndarray, thr, two_sided: bool) -> np.ndarray:
    """NiMARE's labelling (MKDAChi2 ordering for two tails), back on in-mask voxels."""
    img = _image(grid, values)
    pos, n_pos = ndimage.label(img > thr, CONN)
    if two_sided:
        neg, _ = ndimage.label(img < -thr, CONN)
        neg[neg > 0] += n_pos
        pos = pos + neg
    return pos[grid.mask]


def _smooth_map(grid: Grid, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noise = rng.standard_normal(grid.shape)
    sm = ndimage.gaussian_filter(noise, sigma)
    sm /= sm[grid.mask].std()
    return sm[grid.mask].astype(np.float32)


def test_neighbours_table_is_symmetric_and_cached(grid, nbrs):
    assert nbrs.shape == (grid.n_voxels, 6) and nbrs.dtype == np.int32
    assert neighbours(grid) is nbrs  # cached on the grid
    ijk = grid.voxel_ijk
    for d, (axis, step) in enumerate([(0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1)]):
        col = nbrs[:, d]
        ok = col >= 0
        diff = ijk[col[ok]] - ijk[ok]
        expected = np.zeros(3, dtype=int)
        expected[axis] = step
        assert np.all(diff == expected)
        # the reverse neighbour points back (column d ^ 1 is the opposite direction)
        np.testing.assert_array_equal(nbrs[col[ok], d ^ 1], np.flatnonzero(ok))
        # -1 exactly where the face neighbour is outside the mask or the grid
        nb = ijk + expected
        inside = np.all((nb >= 0) & (nb < grid.shape), axis=1)
        in_mask = np.zeros(len(nb), dtype=bool)
        in_mask[inside] = grid.mask[tuple(nb[inside].T)]
        np.testing.assert_array_equal(ok, in_mask)


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("frac", [0.02, 0.15, 0.3])
def test_labels_equal_scipy_on_the_real_grid(grid, two_sided, frac):
    rng = np.random.default_rng(int(frac * 100) + two_sided)
    values = (rng.random(grid.n_voxels) * 2 - 1).astype(np.float32)
    thr = np.float64(1 - frac)
    cl = label_clusters(values, grid, thr, two_sided=two_sided)
    ref = _scipy_labels(grid, values, thr, two_sided)
    # exact: same numbering as scipy (first voxel in C order), positives before negatives
    np.testing.assert_array_equal(cl.labels, ref)
    assert cl.labels.dtype == np.int32
    assert cl.n_clusters == ref.max()
    np.testing.assert_array_equal(cl.sizes, np.bincount(ref)[1:])
    mass_ref = ndimage.sum(
        np.abs(values.astype(np.float64)) - thr, ref, np.arange(1, ref.max() + 1)
    )
    # masses are summed in ascending voxel order, as ndimage.sum does: bit-identical
    np.testing.assert_array_equal(cl.masses, mass_ref)
    pos = cl.signs > 0
    assert np.all(values[np.isin(cl.labels, np.flatnonzero(pos) + 1)] > thr)
    assert np.all(values[np.isin(cl.labels, np.flatnonzero(~pos) + 1)] < -thr)


@pytest.mark.parametrize("tail", ["upper", "two"])
def test_max_cluster_stats_equal_nimare(grid, nbrs, tail):
    from nimare.meta.utils import _calculate_cluster_measures

    rng = np.random.default_rng(7 if tail == "upper" else 8)
    for sigma, thr in [(1.0, 2.0), (2.0, 1.5), (1.5, 3.1), (0.0, 2.5)]:
        values = (
            _smooth_map(grid, rng, sigma)
            if sigma
            else rng.standard_normal(grid.n_voxels).astype(np.float32)
        )
        thr = np.float64(thr)
        ref_size, ref_mass = _calculate_cluster_measures(_image(grid, values), thr, CONN, tail=tail)
        size, mass = max_cluster_stats(values, nbrs, thr, two_sided=tail == "two")
        # sizes are counts; masses are float64 sums in the same order as ndimage.sum: exact
        assert size == ref_size
        assert mass == ref_mass


def test_no_supra_threshold_voxels_gives_zeros(grid, nbrs):
    values = np.zeros(grid.n_voxels, dtype=np.float32)
    assert max_cluster_stats(values, nbrs, 0.5) == (0, 0.0)
    assert max_cluster_stats_sparse([], [], nbrs, 0.5) == (0, 0.0)
    cl = label_clusters(values, grid, 0.5, two_sided=True)
    assert cl.n_clusters == 0 and not cl.labels.any()


def test_threshold_is_strict(grid, nbrs):
    values = np.zeros(grid.n_voxels)
    values[[1000, 1001]] = 2.0  # neighbours along k? check via the table below
    assert nbrs[1000, 5] == 1001
    assert max_cluster_stats(values, nbrs, 2.0) == (0, 0.0)  # equal is not above
    size, mass = max_cluster_stats(values, nbrs, 1.5)
    assert (size, mass) == (2, 1.0)  # hand-derived: 2 voxels x (2.0 - 1.5)


def test_batch_and_sparse_equal_dense(grid, nbrs):
    rng = np.random.default_rng(3)
    maps = np.stack([_smooth_map(grid, rng, 1.5) for _ in range(4)])
    thr = 1.8
    sizes, masses = max_cluster_stats_batch(maps, nbrs, thr, two_sided=True)
    for r in range(maps.shape[0]):
        assert (sizes[r], masses[r]) == max_cluster_stats(maps[r], nbrs, thr, two_sided=True)
        nz = np.flatnonzero(np.abs(maps[r]) > 1.0)
        perm = rng.permutation(nz.size)  # order of the sparse entries does not matter
        scratch = np.zeros(grid.n_voxels, dtype=np.int32)
        got = max_cluster_stats_sparse(
            nz[perm], maps[r][nz[perm]], nbrs, thr, two_sided=True, scratch=scratch
        )
        assert got == (sizes[r], masses[r])
        assert not scratch.any()  # scratch is left clean for reuse


def test_bad_inputs_raise(grid, nbrs):
    with pytest.raises(ValueError, match="threshold"):
        max_cluster_stats(np.zeros(grid.n_voxels), nbrs, -1.0)
    with pytest.raises(ValueError, match="in-mask voxels"):
        max_cluster_stats(np.zeros(10), nbrs, 1.0)
    with pytest.raises(ValueError, match="unique"):
        max_cluster_stats_sparse([5, 5], [3.0, 3.0], nbrs, 1.0)


def _nimare_cluster_p(grid, values, thr, null_sizes, null_masses, two_sided):
    """NiMARE's observed-map procedure (base.py / mkda.py), using its own null_to_p."""
    from nimare.stats import null_to_p

    img = _image(grid, values)
    if two_sided:
        img[np.abs(img) <= thr] = 0
        labeled, n_pos = ndimage.label(img > 0, CONN)
        neg, _ = ndimage.label(img < 0, CONN)
        neg[neg > 0] += n_pos
        labeled = labeled + neg
    else:
        img[img <= thr] = 0
        labeled, _ = ndimage.label(img, CONN)
    labels, idx, sizes = np.unique(labeled, return_inverse=True, return_counts=True)
    masses = np.array([np.sum(np.abs(img[labeled == v]) - thr) for v in labels])
    sizes[0] = 0
    p_mass = null_to_p(masses, null_masses, "upper")[np.reshape(idx, labeled.shape)]
    p_size = null_to_p(sizes, null_sizes, "upper")[np.reshape(idx, labeled.shape)]
    return p_size[grid.mask], p_mass[grid.mask]


@pytest.mark.parametrize("two_sided", [False, True])
def test_cluster_p_maps_equal_nimare(grid, two_sided):
    rng = np.random.default_rng(11)
    values = _smooth_map(grid, rng, 2.0)
    thr = np.float64(2.3)
    cl = label_clusters(values, grid, thr, two_sided=two_sided)
    # a null spanning the observed cluster sizes/masses, so p varies between clusters
    null_sizes = rng.integers(0, int(cl.sizes.max()) + 5, 500).astype(np.float32)
    null_masses = (rng.random(500) * cl.masses.max() * 1.2).astype(np.float32)
    got = cluster_p_maps(values, thr, null_sizes, null_masses, grid, two_sided=two_sided)
    ref_size, ref_mass = _nimare_cluster_p(grid, values, thr, null_sizes, null_masses, two_sided)
    # exact: same clusters, same null_to_p semantics (masses may differ in the last bit from
    # NiMARE's per-cluster np.sum, which could only matter at an exact tie with a null value)
    np.testing.assert_array_equal(got.p_size, ref_size)
    np.testing.assert_allclose(got.p_mass, ref_mass, rtol=0, atol=0)
    background = got.clusters.labels == 0
    assert np.all(got.p_size[background] == 1 - 1 / 500)
    assert np.all(got.p_mass[background] == 1 - 1 / 500)
    assert len(np.unique(got.p_size[~background])) > 1

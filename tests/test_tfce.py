"""TFCE of ALE z maps (nimare_dask.stats.tfce) and its Monte Carlo FWE (meta.cbma.ale_tfce).

NiMARE 0.22.1 has no TFCE, so the oracles are hand-derived values and an independent
implementation written here: JALE's definition (``jale/core/utils/compute.py:compute_tfce``),
one ``scipy.ndimage.label`` per threshold on the 3-D volume.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, MKDADensity
from nimare_dask.stats.tfce import tfce


class _Grid:
    def __init__(self, mask):
        self.mask = np.asarray(mask, dtype=bool)


def _reference(volume, E=0.5, H=2.0, n_steps=100):
    """JALE's TFCE, written out: label ``volume > h`` for h in arange(0, max, max / n_steps)."""
    max_z = volume.max()
    dh = max_z / n_steps
    out = np.zeros(volume.shape)
    for h in np.arange(0, max_z, dh):
        labels, _ = ndimage.label(volume > h)  # default structure: 6-connectivity
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        inside = labels > 0
        out[inside] += np.power(h, H) * dh * np.power(sizes[labels[inside]], E)
    return out


def test_two_blobs_by_hand():
    # a line of 5 voxels, z = 4 3 2 0 4, n_steps = 4: dh = 1, thresholds 1, 2, 3
    # h=1: {0,1,2} (size 3) and {4}; h=2: {0,1} and {4}; h=3: {0} and {4}
    z = np.array([4.0, 3.0, 2.0, 0.0, 4.0])
    got = tfce(z, _Grid(np.ones((1, 1, 5))), n_steps=4)
    s2, s3 = np.sqrt(2), np.sqrt(3)
    want = [1 * s3 + 4 * s2 + 9, 1 * s3 + 4 * s2, 1 * s3, 0.0, 1 + 4 + 9]
    np.testing.assert_allclose(got, want, rtol=1e-14)  # float64 sums of 3 terms


def test_single_blob_by_hand():
    # a 3x3 plane, peak 3 in the centre, 2 on the faces, 1 on the corners; n_steps = 3
    # h=1: the 5 voxels of the cross (corners have z = 1, not > 1); h=2: the centre only
    z = np.array([[1, 2, 1], [2, 3, 2], [1, 2, 1]], dtype=float)
    got = tfce(z.ravel(), _Grid(np.ones((1, 3, 3))), n_steps=3).reshape(3, 3)
    face = 1 * 1 * np.sqrt(5)
    want = np.array([[0, face, 0], [face, face + 4, face], [0, face, 0]])
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_plateau_by_hand():
    # four voxels at z = 1 (2x2 plane): every threshold k/100, k = 1..99, sees one cluster of 4
    got = tfce(np.ones(4), _Grid(np.ones((1, 2, 2))))
    want = sum((k / 100) ** 2 * 0.01 * 2.0 for k in range(1, 100))  # 2e-6 * 328350
    np.testing.assert_allclose(got, want, rtol=1e-12)  # 99 float64 terms summed apart
    np.testing.assert_allclose(want, 0.6567, rtol=1e-12)


def test_faces_not_edges_connect():
    # two voxels touching by an edge only are two clusters (6-connectivity)
    mask = np.ones((1, 2, 2), dtype=bool)
    z = np.array([2.0, 0.0, 0.0, 2.0])  # (0,0) and (1,1): diagonal neighbours
    got = tfce(z, _Grid(mask), n_steps=2)  # threshold 1 only
    np.testing.assert_allclose(got, [1.0, 0, 0, 1.0], rtol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_per_threshold_labelling(seed):
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random((18, 20, 16)), 2) > 0.49
    volume = ndimage.gaussian_filter(rng.normal(size=mask.shape), 1.5) * 4
    volume[~mask] = 0
    volume[volume < 0] = 0  # a z map floored at 0, as ALE's one-tailed z
    got = tfce(volume[mask], _Grid(mask))
    want = _reference(volume)[mask]
    # the union-find adds each cluster's levels in one prefix-sum difference: float64
    # rounding of sums of <= 100 terms, far below 1e-12 of the largest value
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * want.max())
    assert want.max() > 0 and (want > 0).sum() > 50  # the maps do have clusters


def test_bad_input():
    with pytest.raises(ValueError, match="neighbour table"):
        tfce(np.ones(3), _Grid(np.ones((1, 1, 4))))
    with pytest.raises(ValueError, match="n_steps"):
        tfce(np.ones(4), _Grid(np.ones((1, 1, 4))), n_steps=0)


# ---------------------------------------------------------------------------- ALE FWE
N_ITERS = 24
TFCE_KEY = "values_desc-tfce_level-voxel_corr-fwe_method-montecarlo"


@pytest.fixture(scope="module")
def ale_fit(pain_studyset):
    est = ALE(random_state=5, progress=False)
    return est, est.fit(pain_studyset)


@pytest.fixture(scope="module")
def tfce_run(ale_fit):
    est, res = ale_fit
    corr = est.correct_fwe_montecarlo(res, n_iters=N_ITERS, block_size=N_ITERS, tfce=True)
    return corr, est.montecarlo_["correct_fwe_montecarlo"]


def test_observed_tfce_is_tfce_of_the_z_map(ale_fit, tfce_run):
    est, res = ale_fit
    corr, _ = tfce_run
    z = np.asarray(res.get_map("z", return_type="array"))
    mask = res.grid.mask
    volume = np.zeros(mask.shape)
    volume[mask] = z
    want = _reference(volume)[mask]
    # float32 map; the z used is the fit's z (the same null p table)
    np.testing.assert_allclose(corr.maps["stat_desc-tfce"], want, rtol=1e-6, atol=1e-3)
    assert want.max() > 100


def test_one_pass_gives_voxel_cluster_and_tfce_nulls(ale_fit, tfce_run):
    est, res = ale_fit
    corr, with_tfce = tfce_run
    est.correct_fwe_montecarlo(res, n_iters=N_ITERS, block_size=5)
    plain = est.montecarlo_["correct_fwe_montecarlo"]
    for key in ("max_stat", "max_size", "max_mass"):
        np.testing.assert_array_equal(with_tfce[key], plain[key], err_msg=key)
    null = corr.null_distributions[TFCE_KEY]
    assert null.shape == (N_ITERS,) and np.all(null > 0)
    # p = #(null >= observed) / n clipped to [1/n, 1 - 1/n] (NiMARE's null_to_p), by hand
    obs = corr.maps["stat_desc-tfce"]
    for v in (int(np.argmax(obs)), int(np.argmin(obs)), int(np.argsort(obs)[-3000])):
        p = np.clip((null >= obs[v]).sum() / N_ITERS, 1 / N_ITERS, 1 - 1 / N_ITERS)
        assert corr.maps["p_desc-tfce_level-voxel"][v] == np.float32(p)


@pytest.mark.parametrize("block_size,n_cores", [(1, 1), (7, 2), (24, 2)])
def test_tfce_null_identical_for_blocks_and_threads(ale_fit, tfce_run, block_size, n_cores):
    est, res = ale_fit
    _, reference = tfce_run
    est.correct_fwe_montecarlo(
        res, n_iters=N_ITERS, block_size=block_size, n_cores=n_cores, tfce=True
    )
    got = est.montecarlo_["correct_fwe_montecarlo"]
    for key in ("max_tfce", "max_stat", "max_size", "max_mass"):
        np.testing.assert_array_equal(got[key], reference[key], err_msg=key)


def test_corrector_names_and_text(ale_fit):
    est, res = ale_fit
    out = FWECorrector("montecarlo", n_iters=6, tfce=True).transform(res)
    names = set(out.maps_names)
    for name in (
        "stat_desc-tfce_corr-FWE_method-montecarlo",
        "p_desc-tfce_level-voxel_corr-FWE_method-montecarlo",
        "z_desc-tfce_level-voxel_corr-FWE_method-montecarlo",
        "logp_desc-tfce_level-voxel_corr-FWE_method-montecarlo",
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
    ):
        assert name in names
    assert TFCE_KEY in out.null_distributions
    assert "smith2009threshold" in out.description and "E = 0.5" in out.description


def test_tfce_refused_outside_ale(pain_studyset):
    est = MKDADensity(progress=False)
    res = est.fit(pain_studyset)
    with pytest.raises(ValueError, match="only available for ALE"):
        est.correct_fwe_montecarlo(res, n_iters=2, tfce=True)
    with pytest.raises(TypeError, match="tfce must be True or False"):
        ALE().correct_fwe_montecarlo(res, n_iters=2, tfce="yes")


def test_cli_tfce(tmp_path):
    from nimare_dask.cli.main import main

    out = tmp_path / "out"
    args = ["ale", "--sample", "pain", "--n-iters", "4", "--tfce", "--random-state", "2"]
    args += ["--diagnostics", "none", "--no-report", "--output-dir", str(out)]
    assert main(args) == 0
    written = {p.name for p in out.iterdir()}
    assert "stat_desc-tfce_corr-FWE_method-montecarlo.nii.gz" in written
    assert "z_desc-tfce_level-voxel_corr-FWE_method-montecarlo.nii.gz" in written
    assert main(["ale", "--sample", "pain", "--file2", "x.txt", "--tfce"]) == 2

"""PermutedOLS Monte Carlo FWE: NiMARE's significant voxels, and determinism of the null."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from _ibma_data import simulate

pytest.importorskip("nimare")

N_ITERS = 2000


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    # more studies than the parity fixture so the sign-flip null has many distinct values
    return simulate(tmp_path_factory.mktemp("ibma_fwe"), seed=5, n_studies=12)


def test_fwe_significant_voxels_match_nimare(sim):
    from nimare.correct import FWECorrector as NiFWE
    from nimare.meta.ibma import PermutedOLS as NiPermutedOLS

    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta.ibma import PermutedOLS

    ours, dset, mask = sim
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = NiFWE(method="montecarlo", n_iters=N_ITERS).transform(
                NiPermutedOLS(mask=mask).fit(dset)
            )
        res = FWECorrector(method="montecarlo", n_iters=N_ITERS).transform(PermutedOLS().fit(ours))
    finally:
        logging.disable(logging.NOTSET)
    name = "p_level-voxel_corr-FWE_method-montecarlo"
    ours_p = res.maps[name].values.astype(float)
    theirs_p = np.asarray(ref.maps[name], dtype=float)
    assert np.array_equal(np.isnan(ours_p), np.isnan(theirs_p))
    ok = np.isfinite(theirs_p)
    sig_ours, sig_theirs = ours_p[ok] < 0.05, theirs_p[ok] < 0.05
    assert sig_theirs.sum() >= 10  # the simulation has a real effect to find
    # Different random sign flips: a voxel may only change side if NiMARE's p is within the
    # Monte Carlo error of the threshold (4 sd of a p of 0.05 estimated from 2,000 draws
    # each, for the two independent nulls: 4 * sqrt(2 * 0.05 * 0.95 / 2000) = 0.028).
    differ = sig_ours != sig_theirs
    assert np.all(np.abs(theirs_p[ok][differ] - 0.05) < 0.028)
    # corrected p-values agree to Monte Carlo precision everywhere (4 sd at p = 0.5)
    assert np.max(np.abs(ours_p[ok] - theirs_p[ok])) < 4 * np.sqrt(2 * 0.25 / N_ITERS)
    assert "values_level-voxel_corr-fwe_method-montecarlo" in res.null_distributions


def test_null_is_identical_for_any_chunking_and_block_size(sim):
    from nimare_dask.meta.ibma import PermutedOLS

    ours = sim[0]
    a_est = PermutedOLS(random_state=3)
    a = a_est.correct_fwe_montecarlo(a_est.fit(ours), n_iters=300, block_size=300)
    b_est = PermutedOLS(random_state=3, voxel_chunk_size=41)
    b = b_est.correct_fwe_montecarlo(b_est.fit(ours), n_iters=300, block_size=7, n_cores=2)
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    np.testing.assert_array_equal(a.null_distributions[key], b.null_distributions[key])
    np.testing.assert_array_equal(a.maps["p_level-voxel"], b.maps["p_level-voxel"])
    c_est = PermutedOLS(random_state=4)
    c = c_est.correct_fwe_montecarlo(c_est.fit(ours), n_iters=300)
    assert not np.array_equal(a.null_distributions[key], c.null_distributions[key])


def test_reopened_result_can_be_corrected(sim, tmp_path):
    # a PermutedOLS result saved with its inputs (images stored as arrays in the inputs'
    # store) and reopened keeps enough to run the Monte Carlo FWE later: the estimator is
    # rebuilt from its record and refitted, giving the live result's null for the same seed
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta.ibma import PermutedOLS
    from nimare_dask.results import open_result

    ours = sim[0]
    live = PermutedOLS(random_state=7).fit(ours)
    live.to_zarr(tmp_path / "res.zarr")
    again = open_result(tmp_path / "res.zarr")
    corr = FWECorrector(method="montecarlo", n_iters=100, random_state=7)
    a = corr.transform(live)
    b = corr.transform(again)
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    np.testing.assert_array_equal(a.null_distributions[key], b.null_distributions[key])
    name = "p_level-voxel_corr-FWE_method-montecarlo"
    np.testing.assert_array_equal(a.maps[name].values, b.maps[name].values)

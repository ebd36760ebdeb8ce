"""Histogram nulls, p-value lookups and chi-square tests against NiMARE 0.22.1 (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from nimare_dask.stats import chi2 as our_chi2
from nimare_dask.stats import nulls

nimare_stats = pytest.importorskip("nimare.stats")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(12345)


@pytest.mark.parametrize("tail", ["two", "upper", "lower"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_null_to_p_matches_nimare(rng, tail, symmetric):
    x = rng.normal(size=1500)
    null = rng.normal(size=400)
    ours = nulls.null_to_p(x, null, tail=tail, symmetric=symmetric)
    ref = nimare_stats.null_to_p(x, null, tail=tail, symmetric=symmetric)
    # same counting rule: exact up to float64 rounding of the fractions
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)
    assert isinstance(nulls.null_to_p(0.3, null, tail=tail), float)


def test_null_to_p_clips_to_one_over_n():
    null = np.arange(10.0)
    assert nulls.null_to_p(100.0, null, tail="upper") == pytest.approx(0.1)
    assert nulls.null_to_p(-100.0, null, tail="upper") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="tail"):
        nulls.null_to_p(1.0, null, tail="left")


def test_round_half_away():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, 2.4])
    np.testing.assert_array_equal(nulls.round_half_away(x), [-3, -2, -1, 1, 2, 3, 0, 2])


def _ale_like_blocks(rng, n_studies=8, n_vox=5000):
    """Sparse float32 'MA maps' with ALE-like values (< 0.011)."""
    vals = (rng.random((n_studies, n_vox)) < 0.05) * rng.random((n_studies, n_vox)) * 0.011
    return vals.astype(np.float32)


def test_ale_null_matches_nimare(rng):
    from nimare.meta.cbma import null_utils
    from nimare.meta.cbma.ale import ALE as NiMAREALE

    blocks = _ale_like_blocks(rng)
    n_vox = blocks.shape[1]
    bins = nulls.ale_histogram_bins(blocks.max(axis=1))
    counts = nulls.ale_study_histograms(blocks)
    assert counts.sum(axis=1).tolist() == [n_vox] * blocks.shape[0]
    ours = nulls.ale_null_from_histograms(counts, n_vox, bins)
    top = bins.size // 3
    lumped = nulls.ale_null_from_histograms(counts, n_vox, bins, top_bin=top)

    est = NiMAREALE()
    est._ALE__n_mask_voxels = n_vox
    null_utils._compute_group_approximate_null(est, sp.csr_matrix(blocks))
    ref_bins = est.null_distributions_["histogram_bins"]
    ref = est.null_distributions_["histweights_corr-none_method-approximate"]
    np.testing.assert_array_equal(bins, ref_bins)
    # same algorithm, same summation order: identical
    np.testing.assert_array_equal(ours, ref)
    # lumped above top_bin: the exact bins are NiMARE's bits (mass never moves down), the
    # lumped bin holds the rest of the mass (summed in another order: float64 rounding)
    np.testing.assert_array_equal(lumped[: top + 1], ref[: top + 1])
    assert lumped[top + 1] == pytest.approx(ref[top + 1 :].sum(), rel=1e-12)
    assert not lumped[top + 2 :].any()
    values = bins[: top + 1]
    np.testing.assert_allclose(
        nulls.nullhist_to_p(values, lumped, bins), nulls.nullhist_to_p(values, ref, bins),
        rtol=1e-12,
    )  # fmt: skip

    stat = (1 - np.prod(1 - blocks.astype(np.float64), axis=0)).astype(np.float32)
    np.testing.assert_array_equal(
        nulls.nullhist_to_p(stat, ours, bins), nimare_stats.nullhist_to_p(stat, ref, ref_bins)
    )


def test_nullhist_to_p_voxelwise_and_scalar(rng):
    bins = np.arange(6, dtype=float)
    weights = rng.random((6, 4))
    values = np.array([0.0, 1.2, 2.5, 10.0])
    np.testing.assert_allclose(
        nulls.nullhist_to_p(values, weights, bins),
        nimare_stats.nullhist_to_p(values, weights, bins),
        rtol=1e-15,
    )
    w1 = rng.random(6)
    assert nulls.nullhist_to_p(2.0, w1, bins) == pytest.approx(
        nimare_stats.nullhist_to_p(2.0, w1, bins), rel=1e-15
    )


def test_nullhist_to_stat_matches_nimare(rng):
    from nimare.meta.cbma.base import _nullhist_to_summarystat

    bins = np.round(np.arange(0, 0.05, 1e-5), 5)
    weights = np.exp(-bins * 400) * rng.random(bins.size)
    for p in (0.5, 0.05, 0.001, 1e-6, 1e-300):
        assert nulls.nullhist_to_stat(weights, bins, p) == _nullhist_to_summarystat(
            weights, bins, p
        )
    assert nulls.nullhist_to_stat(np.zeros(3), np.arange(3.0), 0.1) == 0.0


def test_poisson_binomial_matches_nimare(rng):
    from nimare.meta.cbma import mkda

    prop = rng.random(30) * 0.05
    ref = 1.0
    for p in prop:
        ref = np.convolve(ref, [1 - p, p])
    np.testing.assert_array_equal(nulls.poisson_binomial_null(prop), ref)

    weights = rng.random(30) + 0.5
    bins = nulls.weighted_histogram_bins(weights, n_bins=5000)
    np.testing.assert_array_equal(bins, mkda._weighted_histogram_bins(weights, n_bins=5000))
    ours = nulls.weighted_poisson_binomial_null(weights, prop, bins)
    np.testing.assert_allclose(
        ours, mkda._weighted_null_histogram(weights, prop, bins), rtol=1e-12, atol=1e-300
    )
    assert ours.sum() == pytest.approx(1.0)


def test_additive_null_is_exact_convolution():
    # two studies: values {0, 1} w.p. (3/4, 1/4) and {0, 2} w.p. (1/2, 1/2)
    counts = np.array([[3, 1, 0], [2, 0, 2]])
    null = nulls.additive_null_from_histograms(counts, 5)
    np.testing.assert_allclose(null, [3 / 8, 1 / 8, 3 / 8, 1 / 8, 0])


def test_count_histograms():
    values = np.array([[0, 1, 1, 3], [2, 2, 0, 0]], dtype=np.float32) * 1.5
    np.testing.assert_array_equal(
        nulls.count_histograms(values, step=1.5), [[1, 2, 0, 1], [2, 0, 2, 0]]
    )


def test_chi2_tests_match_nimare(rng):
    n1, n2 = 40, 60
    c1 = rng.integers(0, n1 + 1, 2000).astype(float)
    c2 = rng.integers(0, n2 + 1, 2000).astype(float)
    c1[:3], c2[:3] = 0, 0  # nobody active
    c1[3:6], c2[3:6] = n1, n2  # everybody active
    np.testing.assert_array_equal(our_chi2.one_way(c1, n1), nimare_stats.one_way(c1, n1))
    ours = our_chi2.two_way_counts(c1, c2, n1, n2)
    ref = nimare_stats.two_way_counts(c1, c2, n1, n2)
    degenerate = (c1 + c2 == 0) | (c1 + c2 == n1 + n2)
    assert degenerate[:6].all()
    np.testing.assert_array_equal(ours[~degenerate], ref[~degenerate])
    # NiMARE's 2.0 at a zero denominator is a known bug; we report no association
    np.testing.assert_array_equal(ref[degenerate], 2.0)
    np.testing.assert_array_equal(ours[degenerate], 0.0)
    cells = np.stack([np.stack([c1, c2], 1), np.stack([n1 - c1, n2 - c2], 1)], 1)
    np.testing.assert_array_equal(our_chi2.two_way(cells), ours)
    with pytest.raises(ValueError, match="shape"):
        our_chi2.two_way(np.zeros((3, 2)))


def test_one_way_constant_counts_is_zero():
    np.testing.assert_array_equal(our_chi2.one_way(np.zeros(5), 10), 0.0)
    np.testing.assert_array_equal(our_chi2.one_way(np.full(5, 10.0), 10), 0.0)


def test_chi2_to_nlogp_matches_nimare():
    from nimare.transforms import chi2_to_nlogp

    x = np.array([0.0, 1e-12, 0.5, 3.84, 50.0, 700.0, 5000.0])
    # NiMARE's nlogp is ln(p) (<= 0); ours is -ln(p). Both evaluate the normal tail in log
    # space, through different special functions (erfc vs log_ndtr): agreement to 1e-12
    # relative, and to 1e-15 absolute near p = 1 where ln(p) ~ 1e-7 carries rounding of 1 - p.
    np.testing.assert_allclose(
        our_chi2.chi2_to_nlogp(x), -chi2_to_nlogp(x, 1), rtol=1e-12, atol=1e-15
    )
    from scipy import stats

    np.testing.assert_allclose(our_chi2.chi2_to_nlogp(x[:5], 3), -stats.chi2.logsf(x[:5], 3))


@pytest.mark.parametrize("contiguous", [True, False])
def test_ale_combination_step_is_bitwise_nimare(rng, contiguous):
    """The run-based combination step equals NiMARE's plain double loop bit for bit."""
    from nimare.meta.cbma.null_utils import _update_ale_histogram

    n_bins = 30000
    centers = np.round(np.arange(n_bins) * 1e-5, 5)
    inv = 1 / (centers[1] - centers[0])
    if contiguous:
        a_idx = np.arange(20000)
    else:
        a_idx = np.sort(rng.choice(n_bins, 5000, replace=False))
    a_prob = rng.random(a_idx.size)
    # e = 0, small e, and e large enough that scores clip at the top bin
    e_idx = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 1200), 60, replace=False))])
    e_idx = np.concatenate([e_idx, [15000, 29999]])
    e_prob = rng.random(e_idx.size)
    ours = np.empty(n_bins)
    ref = np.empty(n_bins)
    nulls._ale_combine(a_idx, a_prob, e_idx, e_prob, centers, inv, n_bins, ours)
    _update_ale_histogram(a_idx, a_prob, e_idx, e_prob, centers, inv, n_bins, ref)
    np.testing.assert_array_equal(ours, ref)
    # any split of the output bins (how threads or a lumped tail cut it) gives the same bits
    split = np.full(n_bins, np.nan)
    zero_out = nulls._zero_outputs(centers, inv, n_bins)
    cuts = [0, 7, 12345, 20001, n_bins]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        nulls._ale_combine_range(
            a_idx, a_prob, e_idx, e_prob, centers, inv, n_bins, split, lo, hi, zero_out
        )
    np.testing.assert_array_equal(split, ref)
    k_top = 21000
    over = nulls._ale_overflow(a_idx, a_prob, e_idx, e_prob, centers, inv, n_bins, k_top, 0.0)
    assert over == pytest.approx(ref[k_top:].sum(), rel=1e-12)

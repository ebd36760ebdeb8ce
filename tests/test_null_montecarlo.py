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
    """Studies with more foci than MANY_FOCI take the all-shared path and the dense flush."""
    from nimare_dask.meta.cbma._mc_numba import MANY_FOCI

    ss = pain_studyset
    rows = ss.focus_rows()
    big = np.where(rows < 12, "big-1", "big-2")  # 2 studies of ~130 foci each
    xyz = ss.xyz()
    points = pd.DataFrame({"id": big, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    points["space"] = "MNI"
    analyses = pd.DataFrame({"study_id": ["big", "big"], "contrast_id": ["1", "2"]})
    meta = pd.DataFrame({"id": ["big-1", "big-2"], "sample_sizes": [20, 12]})
    merged = Studyset.from_tables(analyses, points, meta)
    assert merged.foci_counts().min() > MANY_FOCI
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

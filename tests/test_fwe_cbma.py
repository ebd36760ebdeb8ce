"""Monte Carlo FWE of the one-sample estimators (ALE, MKDADensity, KDA) against NiMARE 0.22.1.

The random-foci nulls of two packages cannot be compared draw for draw (NiMARE draws all
iterations from one generator, we key each iteration), so the agreement is statistical, with
the tests of ``tests/test_montecarlo_vs_nimare.py`` (its docstring states them and their
false-failure probabilities; each test function here fails falsely with probability <= 1e-4):

* the 50th, 90th and 95th percentiles of the max-statistic, max-cluster-size and
  max-cluster-mass nulls (the last two are the FWE thresholds at alpha 0.1 and 0.05) agree:
  exact conditional (hypergeometric) test of NiMARE's count above the pooled quantile. At
  NiMARE's 1,000 iterations the count above the 95th percentile has sd ~6.5 of 50, so
  NiMARE's threshold must sit between about its 93rd and 97th percentile of ours (was: the
  95th percentile within 4 combined standard errors and NiMARE's exceedance within
  [0.1 %, 9.9 %], i.e. anywhere between its 90th and 99.9th percentile);
* the clusters of the pain map (identical observed map and threshold, so identical voxel
  sets) have cluster-level FWE p (size and mass) within Monte Carlo error of NiMARE's
  (Fisher's exact test per cluster), and the same clusters are significant at p < 0.05
  except where 0.05 lies in a package's Clopper-Pearson interval (was: any cluster with
  p in [0.011, 0.089] skipped).

Both runs are seeded, so the test is deterministic. NiMARE runs 1,000 iterations on one core
with the garbage collector frozen (~35 s; ``oracle`` in test_montecarlo_vs_nimare.py), we run
10,000.
"""

from __future__ import annotations

import nimare  # noqa: F401 (the oracle, a test dependency)
import numpy as np
import pytest
from test_montecarlo_vs_nimare import (
    assert_not_rejected,
    compare_cluster_maps,
    nimare_p,
    null_comparisons,
    oracle,
)

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.meta.cbma import ALE, KDA, MKDADensity
from nimare_dask.stats.transforms import p_to_logp, p_to_z

KEYS = {
    "voxel": "values_level-voxel_corr-fwe_method-montecarlo",
    "size": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
    "mass": "values_desc-mass_level-cluster_corr-fwe_method-montecarlo",
}
SUFFIX = "_corr-FWE_method-montecarlo"
N_NIMARE = 1000
N_OURS = 10000


@pytest.fixture(scope="module")
def nimare_pain(pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    return NiMAREStudyset(str(pain_json))


@pytest.fixture(scope="module")
def nimare_ale_fwe(nimare_pain):
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.meta.cbma import ALE as NiMAREALE

    with oracle():
        res = NiMAREALE(random_state=2024).fit(nimare_pain)
        return NiMAREFWECorrector(method="montecarlo", n_iters=N_NIMARE, n_cores=1).transform(res)


@pytest.fixture(scope="module")
def ours_ale_fwe(pain_studyset):
    res = ALE(random_state=17, progress=False).fit(pain_studyset)
    return FWECorrector(method="montecarlo", n_iters=N_OURS).transform(res)


@pytest.mark.parametrize("what", ["voxel", "size", "mass"])
def test_ale_fwe_thresholds_agree_with_nimare(ours_ale_fwe, nimare_ale_fwe, what):
    ours = ours_ale_fwe.null_distributions
    theirs = nimare_ale_fwe.estimator.null_distributions_
    assert len(ours[KEYS[what]]) == N_OURS and len(theirs[KEYS[what]]) == N_NIMARE
    # 3 quantiles, each rejected at 1e-4 / 3 (module docstring)
    assert_not_rejected(null_comparisons(theirs, ours, [KEYS[what]]))


def test_ale_same_significant_clusters_as_nimare(ours_ale_fwe, nimare_ale_fwe):
    from nimare_dask.stats.clusters import label_clusters

    stat = ours_ale_fwe.get_map("stat", return_type="array")
    thr = float(ours_ale_fwe.tables["montecarlo" + SUFFIX]["cluster_forming_threshold"].iloc[0])
    assert thr == pytest.approx(nimare_ale_fwe.estimator._p_to_summarystat(0.001))
    clusters = label_clusters(stat, ours_ale_fwe.grid, thr)
    assert clusters.n_clusters > 3
    pairs = []
    for kind in ("size", "mass"):
        name = f"p_desc-{kind}_level-cluster{SUFFIX}"
        p_ours = np.asarray(ours_ale_fwe.get_map(name, "array"), dtype=np.float64)
        p_theirs = nimare_p(nimare_ale_fwe, name)
        pairs.append((p_ours, N_OURS, p_theirs, N_NIMARE, kind))
        # the largest clusters of the pain map are significant in both
        big = np.argsort(clusters.sizes)[-2:] + 1
        for c in big:
            vox = clusters.labels == c
            assert p_ours[vox][0] < 0.05 and p_theirs[vox][0] < 0.05
    # Fisher's exact test of each cluster's p, and significance at 0.05 the same unless 0.05
    # is within a package's Clopper-Pearson interval (module docstring); 1e-4 in all
    compare_cluster_maps(pairs, clusters)


def test_ale_fwe_maps(ours_ale_fwe, nimare_ale_fwe):
    res = ours_ale_fwe
    nimare_names = {n for n in nimare_ale_fwe.maps if n.endswith(SUFFIX)}
    ours_names = {n for n in res.maps_names if n.endswith(SUFFIX)}
    # NiMARE's logp/z maps, plus p maps (which NiMARE does not return)
    assert nimare_names < ours_names
    assert ours_names - nimare_names == {
        n.replace("logp", "p", 1) for n in nimare_names if n.startswith("logp")
    }
    for level in ("level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster"):
        p = res.get_map(f"p_{level}{SUFFIX}", return_type="array")
        z = res.get_map(f"z_{level}{SUFFIX}", return_type="array")
        logp = res.get_map(f"logp_{level}{SUFFIX}", return_type="array")
        assert p.min() >= 1 / N_OURS - 1e-9 and p.max() <= 1 - 1 / N_OURS + 1e-6
        np.testing.assert_allclose(z, p_to_z(p, tail="one"), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(logp, p_to_logp(p), rtol=1e-6)
    # voxel-level p is NiMARE's null_to_p of the stat against the max-stat null
    stat = res.get_map("stat", return_type="array")
    null = np.sort(res.null_distributions[KEYS["voxel"]])
    i = int(np.argmax(stat))
    expected = max(1 / N_OURS, np.mean(null >= stat[i]))
    assert res.get_map(f"p_level-voxel{SUFFIX}", "array")[i] == pytest.approx(expected)
    assert "eickhoff2016behavior" in res.description
    assert "6-) connectivity" in res.description


@pytest.mark.parametrize("cls", [MKDADensity, KDA])
def test_mkda_kda_fwe_runs_and_is_sane(pain_studyset, cls):
    est = cls(random_state=3, progress=False)
    res = FWECorrector(method="montecarlo", n_iters=200).transform(est.fit(pain_studyset))
    null = res.null_distributions[KEYS["voxel"]]
    stat = res.get_map("stat", return_type="array")
    # integer-valued statistics: maxima are counts of studies (or spheres)
    assert np.all(null == np.round(null)) and null.max() <= stat.max() + len(pain_studyset)
    p = res.get_map(f"p_level-voxel{SUFFIX}", return_type="array")
    assert p[np.argmax(stat)] < 0.05  # pain has a strong convergent peak
    thr = res.tables["montecarlo" + SUFFIX]["cluster_forming_threshold"].iloc[0]
    assert thr == est.summarystat_threshold(0.001)


@pytest.mark.parametrize("kind", ["bonferroni", "indep", "negcorr"])
def test_bonferroni_fdr_on_our_fit_match_nimare(pain_studyset, nimare_pain, kind):
    """The generic corrections still give NiMARE's maps on our fitted ALE."""
    from nimare.correct import FDRCorrector as NiMAREFDR
    from nimare.correct import FWECorrector as NiMAREFWE
    from nimare.meta.cbma import ALE as NiMAREALE

    if kind == "bonferroni":
        ours_c, theirs_c = FWECorrector(method=kind), NiMAREFWE(method=kind)
        suffix = "_corr-FWE_method-bonferroni"
    else:
        ours_c, theirs_c = FDRCorrector(method=kind), NiMAREFDR(method=kind)
        suffix = f"_corr-FDR_method-{kind}"
    ours = ours_c.transform(ALE().fit(pain_studyset))
    theirs = theirs_c.transform(NiMAREALE().fit(nimare_pain))
    for d in ("p", "z", "logp"):
        a = ours.get_map(f"{d}{suffix}", return_type="array")
        b = theirs.get_map(f"{d}{suffix}", return_type="array")
        # the uncorrected maps agree at float32 precision (test_meta_ale), so do these
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=d)

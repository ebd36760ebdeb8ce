"""Every Monte Carlo mode of nimare_dask against NiMARE 0.22.1 (issue #13).

Random-foci nulls of the two packages cannot be compared draw for draw (NiMARE draws from one
generator per run, we key every iteration), so they are compared as two independent samples
of the same law. Label-permutation nulls (ALESubtraction) are NiMARE's own permutations and are
compared iteration by iteration. Deterministic maps (MKDAChi2 FDR) are compared to float32
rounding.

How the statistical comparisons are made (all exact or with a stated approximation):

* **Quantiles of a null** (max statistic, max cluster size, max cluster mass):
  :func:`quantile_pvalue`. Pool NiMARE's ``n1`` values and our ``n2``, take ``t`` = the pooled
  ``q`` quantile (an order statistic of the pooled sample) and count NiMARE's values ``>= t``.
  If both samples come from one law the pooled sample is exchangeable, so given the pooled
  values that count is hypergeometric(n1 + n2, #pooled >= t, n1) **exactly**, ties included
  (the nulls of MKDA and KDA are integer-valued, where a standard error from a density
  estimate would be meaningless). The two-sided p-value (twice the smaller tail) is therefore
  <= its level with probability <= the level. This is the binomial/order-statistic bound: it
  asks that NiMARE's fraction of iterations above our quantile be within binomial error.
* **Cluster-level FWE p of one cluster**: each package's p is ``k / n`` with ``k`` binomial
  (``n``, the cluster's true p). Fisher's exact (conditional) test of ``k1`` against ``k2``
  (:func:`fisher_pvalue`); the p maps are clipped to [1/n, 1 - 1/n], so ``k`` is known up to
  {0, 1} or {n - 1, n} and the most favourable value is used (so the clipping cannot cause a
  false failure).
* **Same significant clusters** (p < 0.05): a cluster may be significant in one package only
  if 0.05 lies in the Clopper-Pearson (1 - alpha) interval of one package's p. If the true p is
  below 0.05, the package that calls the cluster non-significant has an interval excluding the
  true p whenever it excludes 0.05, which happens with probability <= alpha / 2 (and the same
  above 0.05), so a correct implementation fails this with probability <= alpha per cluster.
  (This replaces skipping every cluster with p in [0.011, 0.089].)
* **Uncorrected Monte Carlo p maps** (``null_method="montecarlo"``): a voxel's p is the upper
  tail of the pooled histogram at its statistic, i.e. the mean over iterations of
  ``f_i(s)`` = the fraction of voxels at or above ``s`` in iteration ``i``; iterations are
  i.i.d., so ``p1(s) - p2(s)`` has variance ``var(f(s)) (1/n1 + 1/n2)``. ``var(f(s))`` is
  measured on our own iterations, one by one (:func:`_per_iteration_tails`); the z score is
  compared with a normal quantile (central limit theorem: the one approximation here, made at
  levels where every iteration has many voxels above ``s``).

False-failure budget: every test function bounds the probability that a correct implementation
fails it by ``ALPHA = 1e-4`` (Bonferroni over its comparisons; a test with nulls and clusters
gives each half), so the whole module (23 test functions with parameters, 14 of them
statistical) fails falsely with probability < 0.15 %. All runs are seeded (NiMARE's through
``random_state``; its label permutations are seeded by the iteration index), so the tests are
deterministic: the bound is the chance that seeds picked at random would fail. Power: the same
comparisons, at the same levels, reject a null with an MKDA/KDA kernel one voxel narrower and a
SCALE null drawn from the mask instead of the pool (``test_*_detects_*``).

Cost: NiMARE's Monte Carlo loops call nilearn's ``safe_get_data``, which runs ``gc.collect()``
(0.2-0.3 s in a process holding ~400,000 objects, several times per MKDAChi2 iteration):
NiMARE is run under :func:`oracle` (``gc.freeze``: the collection skips the objects that
existed before, results are unchanged), which makes it 2-5x faster. The heavier comparisons
(MKDAChi2 random foci, MACM on Neurosynth) are marked ``database``.
"""

from __future__ import annotations

import gc
import warnings
from contextlib import contextmanager

import nimare  # noqa: F401 (the oracle, a test dependency)
import numpy as np
import pytest
from scipy import stats

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_dask.montecarlo import SeedInfo
from nimare_dask.stats.clusters import label_clusters

#: false-failure probability of each test function (module docstring)
ALPHA = 1e-4
#: null quantiles compared: the bulk and the FWE thresholds at alpha 0.1 and 0.05
QUANTILES = (0.5, 0.9, 0.95)
SUFFIX = "_corr-FWE_method-montecarlo"
KEYS = {
    "voxel": "values_level-voxel_corr-fwe_method-montecarlo",
    "size": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
    "mass": "values_desc-mass_level-cluster_corr-fwe_method-montecarlo",
}


# ---------------------------------------------------------------------------- statistics
@contextmanager
def oracle():
    """Run NiMARE with the objects alive now excluded from garbage collection (speed only,
    module docstring) and its warnings (deprecations, 0/0 in probability maps) silenced."""
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        gc.unfreeze()


def quantile_pvalue(theirs, ours, q: float) -> tuple[float, str]:
    """Exact conditional test that two samples share their ``q`` quantile (module docstring).

    Returns the two-sided p-value and a description for failure messages.
    """
    x = np.asarray(theirs, dtype=np.float64).ravel()
    y = np.asarray(ours, dtype=np.float64).ravel()
    pooled = np.concatenate([x, y])
    t = float(np.quantile(pooled, q, method="inverted_cdf"))
    n_above = int(np.count_nonzero(pooled >= t))
    k = int(np.count_nonzero(x >= t))
    dist = stats.hypergeom(pooled.size, n_above, x.size)
    p = float(min(1.0, 2.0 * min(dist.cdf(k), dist.sf(k - 1))))
    mean = x.size * n_above / pooled.size
    sd = np.sqrt(mean * (1 - n_above / pooled.size) * y.size / max(1, pooled.size - 1))
    text = (
        f"q={q}: pooled quantile {t:.6g}; NiMARE {k}/{x.size} >= it (expected "
        f"{mean:.1f} +- {sd:.1f}), ours {n_above - k}/{y.size}; NiMARE's "
        f"quantile {np.quantile(x, q):.6g}, ours {np.quantile(y, q):.6g}; p = {p:.3g}"
    )
    return p, text


def null_comparisons(theirs: dict, ours: dict, keys, quantiles=QUANTILES) -> list:
    """(p-value, message) of every quantile of every null named in ``keys``."""
    out = []
    for key in keys:
        x = np.asarray(theirs[key], dtype=np.float64)
        y = np.asarray(ours[key], dtype=np.float64)
        assert np.isfinite(x).all() and np.isfinite(y).all(), key
        for q in quantiles:
            p, text = quantile_pvalue(x, y, q)
            out.append((p, f"{key} {text}"))
    return out


def assert_not_rejected(comparisons: list, alpha: float = ALPHA) -> None:
    """No comparison rejects at ``alpha`` shared among them (Bonferroni)."""
    level = alpha / len(comparisons)
    bad = [text for p, text in comparisons if p <= level]
    assert not bad, f"{len(bad)} of {len(comparisons)} comparisons reject at {level:.2g}:\n" + (
        "\n".join(bad)
    )


def assert_rejected(comparisons: list, alpha: float = ALPHA) -> None:
    """At least one comparison rejects at ``alpha`` shared among them (power checks)."""
    level = alpha / len(comparisons)
    assert min(p for p, _ in comparisons) <= level, "\n".join(t for _, t in comparisons)


def count_range(p: float, n: int) -> tuple[int, int]:
    """Counts ``k`` consistent with a Monte Carlo p = clip(k / n, 1 / n, 1 - 1 / n)."""
    k = int(round(float(p) * n))
    assert abs(k - float(p) * n) < 1e-3 * max(1, k), (p, n)  # p is a count over n
    return (0 if k <= 1 else k), (n if k >= n - 1 else k)


def fisher_pvalue(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided conditional (Fisher) test of two binomial counts with the same p."""
    dist = stats.hypergeom(n1 + n2, k1 + k2, n1)
    return float(min(1.0, 2.0 * min(dist.cdf(k1), dist.sf(k1 - 1))))


def fisher_range(r1: tuple[int, int], n1: int, r2: tuple[int, int], n2: int) -> float:
    """:func:`fisher_pvalue` at the most favourable counts of the clipping ambiguity."""
    return max(fisher_pvalue(a, n1, b, n2) for a in set(r1) for b in set(r2))


def contains(r: tuple[int, int], n: int, value: float, alpha: float) -> bool:
    """Whether ``value`` lies in the Clopper-Pearson (1 - alpha) interval of k / n."""
    for k in set(r):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
        if ci.low <= value <= ci.high:
            return True
    return False


def cluster_comparisons(
    clusters, p_ours, n_ours: int, p_theirs, n_theirs: int, what: str, level: float
) -> tuple[list, list]:
    """Fisher tests of every cluster's p, and the clusters significant in one package only.

    ``clusters`` are our labels of the (identical) observed map; both p maps must be constant
    on each cluster (the same clusters). Returns (comparisons, disagreements): a disagreement
    is a cluster on opposite sides of 0.05 whose Clopper-Pearson (1 - ``level``) intervals
    both exclude 0.05, which a correct implementation produces with probability <= ``level``
    per cluster (module docstring).
    """
    comps, disagreements = [], []
    for c in range(1, clusters.n_clusters + 1):
        vox = clusters.labels == c
        a, b = np.unique(p_ours[vox]), np.unique(p_theirs[vox])
        assert a.size == 1 and b.size == 1, f"{what} cluster {c}: p not constant ({a}, {b})"
        r2, r1 = count_range(a[0], n_ours), count_range(b[0], n_theirs)
        p = fisher_range(r1, n_theirs, r2, n_ours)
        msg = (
            f"{what} cluster {c} ({int(vox.sum())} voxels): ours p={a[0]:.4g} (n={n_ours}), "
            f"NiMARE p={b[0]:.4g} (n={n_theirs}); Fisher p = {p:.3g}"
        )
        comps.append((p, msg))
        if (a[0] < 0.05) != (b[0] < 0.05) and not (
            contains(r2, n_ours, 0.05, level) or contains(r1, n_theirs, 0.05, level)
        ):
            disagreements.append(msg)
    return comps, disagreements


def compare_cluster_maps(pairs: list, clusters, alpha: float = ALPHA) -> None:
    """:func:`cluster_comparisons` of several (p_ours, n_ours, p_theirs, n_theirs, what) maps
    over the same clusters, with false-failure probability <= ``alpha``: half for the Fisher
    tests (Bonferroni over every cluster of every map), half for the significance rule (the
    same split)."""
    n_tests = max(1, len(pairs) * clusters.n_clusters)
    comps, disagreements = [], []
    for p_ours, n_ours, p_theirs, n_theirs, what in pairs:
        c, d = cluster_comparisons(
            clusters, p_ours, n_ours, p_theirs, n_theirs, what, alpha / 2 / n_tests
        )
        comps += c
        disagreements += d
    assert_not_rejected(comps, alpha / 2)
    assert not disagreements, "significant in one package only:\n" + "\n".join(disagreements)


def nimare_p(result, name: str) -> np.ndarray:
    """NiMARE's p map (Monte Carlo FWE returns only logp and z maps: p = 10^-logp)."""
    logp = np.asarray(result.get_map(name.replace("p_", "logp_", 1), return_type="array"))
    return np.power(10.0, -logp.astype(np.float64))


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def nimare_pain(pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    return NiMAREStudyset(str(pain_json))


@pytest.fixture(scope="module")
def pain_halves(pain_studyset, nimare_pain):
    ids = list(pain_studyset.ids)
    return (
        pain_studyset.slice(ids[:11]),
        pain_studyset.slice(ids[11:]),
        nimare_pain.slice(ids[:11]),
        nimare_pain.slice(ids[11:]),
    )


# ---------------------------------------------------------------------------- 1. MKDA / KDA FWE
#: NiMARE's iterations (~30 ms each) and ours (~1 ms each). At n1 = 600 the exceedance count
#: at the 95th percentile has sd ~5 (of 30): a kernel radius off by one voxel moves it by
#: ~10 sd (test_density_fwe_detects_a_wrong_null).
N1_DENSITY = 600
N2_DENSITY = 5000
DENSITY = {"MKDADensity": MKDADensity, "KDA": KDA}


@pytest.fixture(scope="module", params=sorted(DENSITY))
def density_fwe(request, pain_studyset, nimare_pain):
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.meta.cbma import KDA as NiMAREKDA
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    name = request.param
    ref_cls = {"MKDADensity": NiMAREMKDADensity, "KDA": NiMAREKDA}[name]
    with oracle():
        theirs = NiMAREFWECorrector(method="montecarlo", n_iters=N1_DENSITY, n_cores=1).transform(
            ref_cls(random_state=2024).fit(nimare_pain)
        )
    est = DENSITY[name](random_state=17, progress=False)
    ours = FWECorrector(method="montecarlo", n_iters=N2_DENSITY).transform(est.fit(pain_studyset))
    return name, est, ours, theirs


def test_density_fwe_nulls_match_nimare(density_fwe):
    """Max statistic, max cluster size and max cluster mass nulls: same quantiles."""
    name, _, ours, theirs = density_fwe
    nulls = theirs.estimator.null_distributions_
    assert all(len(nulls[k]) == N1_DENSITY for k in KEYS.values())
    assert all(len(ours.null_distributions[k]) == N2_DENSITY for k in KEYS.values())
    assert_not_rejected(null_comparisons(nulls, ours.null_distributions, KEYS.values()))


def test_density_fwe_detects_a_wrong_null(density_fwe, pain_studyset):
    """Power: the same comparison rejects a null from a kernel one voxel narrower (r = 9 mm)
    at the same level, so passing the test above means something."""
    name, _, _, theirs = density_fwe
    est = DENSITY[name](kernel__r=9, random_state=17, progress=False)
    wrong = FWECorrector(method="montecarlo", n_iters=2000, vfwe_only=False).transform(
        est.fit(pain_studyset)
    )
    comps = null_comparisons(
        theirs.estimator.null_distributions_, wrong.null_distributions, KEYS.values()
    )
    assert_rejected(comps)


def test_density_fwe_same_significant_clusters(density_fwe, pain_studyset):
    """Same clusters on the pain map, each with a cluster-level p (size and mass) within Monte
    Carlo error of NiMARE's, and the same clusters significant at p < 0.05."""
    name, est, ours, theirs = density_fwe
    thr = est.summarystat_threshold(0.001)
    assert thr == theirs.estimator._p_to_summarystat(0.001)
    table = ours.tables["montecarlo" + SUFFIX]
    assert float(table["cluster_forming_threshold"].iloc[0]) == thr
    stat = ours.get_map("stat", return_type="array")
    np.testing.assert_array_equal(stat, theirs.get_map("stat", return_type="array"))
    clusters = label_clusters(stat, pain_studyset.grid, thr)
    assert clusters.n_clusters >= 10
    pairs = []
    for kind in ("size", "mass"):
        map_name = f"p_desc-{kind}_level-cluster{SUFFIX}"
        p_ours = np.asarray(ours.get_map(map_name, return_type="array"), dtype=np.float64)
        p_theirs = nimare_p(theirs, map_name)
        pairs.append((p_ours, N2_DENSITY, p_theirs, N1_DENSITY, f"{name} {kind}"))
        # outside the clusters both maps hold the background's p (size 0: p = 1 - 1/n)
        out = clusters.labels == 0
        assert np.all(p_ours[out] == np.float32(1 - 1 / N2_DENSITY))
        np.testing.assert_allclose(p_theirs[out], 1 - 1 / N1_DENSITY, rtol=1e-6)
        # the three largest clusters of the pain map are significant in both
        for c in np.argsort(clusters.sizes)[-3:] + 1:
            vox = clusters.labels == c
            assert p_ours[vox][0] < 0.01 and p_theirs[vox][0] < 0.01, (kind, c)
    compare_cluster_maps(pairs, clusters)


# ---------------------------------------------------------------------------- 2. MKDAChi2 random foci
#: NiMARE's MKDAChi2 null keys (ours are the same): each test's max chi2, cluster size and mass
CHI2_TESTS = {"pAgF": "uniformity", "group2": "group2", "pFgA": "association"}
CHI2_KEYS = [
    f"values_desc-{t}{k}_level-{lvl}_corr-fwe_method-montecarlo"
    for t in CHI2_TESTS
    for k, lvl in (("", "voxel"), ("size", "cluster"), ("mass", "cluster"))
]


def _observed_chi2_maxima(res, grid) -> dict:
    """The null statistics of one iteration, computed on the observed chi2 maps."""
    thr = stats.chi2.isf(0.001, 1)
    out = {}
    for t, label in CHI2_TESTS.items():
        chi2 = res.get_map(f"chi2_desc-{label}", return_type="array")
        cl = label_clusters(chi2, grid, thr)
        out[f"values_desc-{t}_level-voxel_corr-fwe_method-montecarlo"] = float(chi2.max())
        out[f"values_desc-{t}size_level-cluster_corr-fwe_method-montecarlo"] = float(
            cl.sizes.max(initial=0)
        )
        out[f"values_desc-{t}mass_level-cluster_corr-fwe_method-montecarlo"] = float(
            cl.masses.max(initial=0)
        )
    return out


def test_nimare_random_foci_chi2_null_is_the_observed_data(pain_halves):
    """NiMARE 0.22.1's MKDAChi2(fwe_null_method="random-foci") does not move the foci: its
    ``_run_fwe_permutation`` writes the random coordinates into x/y/z of the fitted coordinates
    table, which still holds the fitted i/j/k columns, and ``MKDAKernel.transform`` uses i/j/k
    when present (kernel.py: ijk is recomputed only when missing). Every "random" iteration is
    the observed data, so NiMARE's random-foci FWE p is 1 - 1/n everywhere.

    What is comparable is therefore one iteration on the observed data: NiMARE's constant null
    equals the max chi2, max cluster size and max cluster mass of our observed maps (chi2 of
    the association test included: at the zero denominators NiMARE's chi2 = 2.0 vs our 0 sits
    far below both the maximum and the cluster-forming threshold 10.83). Our random-foci null
    (which does move the foci) is compared with NiMARE's with the stale columns dropped in
    ``test_mkda_chi2_random_foci_null_matches_nimare`` (database).
    """
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    ss1, ss2, n1, n2 = pain_halves
    with oracle():
        est = NiMAREMKDAChi2(fwe_null_method="random-foci", random_state=3)
        theirs = NiMAREFWECorrector(method="montecarlo", n_iters=3).transform(est.fit(n1, n2))
    assert {"i", "j", "k"} <= set(theirs.estimator.inputs_["coordinates1"].columns)
    ours = MKDAChi2(fwe_null_method="random-foci", random_state=3, progress=False).fit(ss1, ss2)
    observed = _observed_chi2_maxima(ours, ss1.grid)
    nulls = theirs.estimator.null_distributions_
    for key in CHI2_KEYS:
        values = np.asarray(nulls[key], dtype=np.float64)
        assert np.all(values == values[0]), key  # degenerate: 3 identical "random" iterations
        # our chi2 maps are float32 (NiMARE's maxima float64 from the counts): 1 float32 ulp;
        # sizes are counts (exact); masses are sums of float32 (value - threshold): 1e-6
        np.testing.assert_allclose(values[0], observed[key], rtol=1e-6, err_msg=key)
    fwe = FWECorrector(method="montecarlo", n_iters=20).transform(ours)
    for key in CHI2_KEYS[:3]:  # ours moves the foci: a non-degenerate null
        assert np.ptp(fwe.null_distributions[key]) > 0, key


N1_CHI2 = 150  # NiMARE: ~0.16 s per iteration with the GC frozen
N2_CHI2 = 3000


@pytest.mark.database
def test_mkda_chi2_random_foci_null_matches_nimare(pain_halves):
    """Our random-foci MKDAChi2 nulls against NiMARE's random-foci procedure with its bug
    worked around (the stale i/j/k columns dropped from the fitted coordinate tables, so that
    its kernel maps the random x/y/z; see the test above): the nine nulls have the same
    quantiles, and every cluster's FWE p (uniformity, group 2 and association tests, by size
    and by mass) is within Monte Carlo error of NiMARE's, with the same significant clusters.
    The association test's cluster nulls are all 0 in both (no random-foci iteration reaches
    chi2 = 10.83 with 11 vs 10 studies)."""
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    ss1, ss2, n1, n2 = pain_halves
    with oracle():
        fitted = NiMAREMKDAChi2(fwe_null_method="random-foci", random_state=3).fit(n1, n2)
        for group in ("coordinates1", "coordinates2"):
            table = fitted.estimator.inputs_[group]
            fitted.estimator.inputs_[group] = table.drop(columns=["i", "j", "k"])
        theirs = NiMAREFWECorrector(method="montecarlo", n_iters=N1_CHI2).transform(fitted)
    est = MKDAChi2(fwe_null_method="random-foci", random_state=3, progress=False)
    ours = FWECorrector(method="montecarlo", n_iters=N2_CHI2).transform(est.fit(ss1, ss2))
    nulls = theirs.estimator.null_distributions_
    assert np.ptp(nulls[CHI2_KEYS[0]]) > 0  # the work-around moved NiMARE's foci
    # ALPHA: half for the nulls, half for the clusters of the three tests
    assert_not_rejected(null_comparisons(nulls, ours.null_distributions, CHI2_KEYS), ALPHA / 2)
    thr = stats.chi2.isf(0.001, 1)
    for label in CHI2_TESTS.values():
        chi2 = ours.get_map(f"chi2_desc-{label}", return_type="array")
        clusters = label_clusters(chi2, ss1.grid, thr)  # NiMARE labels chi2 > threshold
        assert clusters.n_clusters >= 1, label
        pairs = []
        for kind in ("Size", "Mass"):
            name = f"p_desc-{label}{kind}_level-cluster{SUFFIX}"
            p_ours = np.asarray(ours.get_map(name, return_type="array"), dtype=np.float64)
            p_theirs = np.asarray(theirs.get_map(name, return_type="array"), dtype=np.float64)
            pairs.append((p_ours, N2_CHI2, p_theirs, N1_CHI2, f"{label} {kind}"))
        compare_cluster_maps(pairs, clusters, ALPHA / 2 / len(CHI2_TESTS))


# ---------------------------------------------------------------------------- 3. SCALE
N1_SCALE_FIT = 100  # NiMARE: ~60 ms per iteration
N1_SCALE_FWE = 200  # NiMARE: ~60-80 ms per iteration
N2_SCALE = 2000  # ours; the FWE correction reuses the fit's iterations


@pytest.fixture(scope="module")
def scale_pool(pain_studyset):
    """A pool far from uniform over the mask: 2,000 random in-mask voxels of the left
    hemisphere and the 267 pain foci. Drawing foci uniformly from the mask instead (the
    failure named in test_meta_ale.py::test_scale_statistically_matches_nimare, whose pool is
    uniform over the mask and so cannot reveal it) changes the p maps and the max-statistic
    null (test_scale_comparison_detects_a_uniform_pool). The FWE null was only compared with
    our own recomputation (test_fwe_pairwise.py::test_scale_fwe)."""
    rng = np.random.default_rng(13)
    xyz = pain_studyset.grid.voxel_xyz
    left = xyz[xyz[:, 0] < 0]
    return np.vstack([left[rng.choice(len(left), 2000, replace=False)], pain_studyset.xyz()])


@pytest.fixture(scope="module")
def scale_pair(pain_studyset, nimare_pain, scale_pool):
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.meta.cbma import SCALE as NiMARESCALE

    with oracle():
        fitted = NiMARESCALE(scale_pool, n_iters=N1_SCALE_FIT, random_state=5, n_cores=1).fit(
            nimare_pain
        )
        theirs = NiMAREFWECorrector(
            method="montecarlo", n_iters=N1_SCALE_FWE, vfwe_only=True
        ).transform(fitted)
    ours = _scale_fwe(pain_studyset, scale_pool, N2_SCALE)
    return ours, theirs


def _scale_fwe(studyset, pool, n_iters):
    est = SCALE(pool, n_iters=n_iters, random_state=5, progress=False)
    return FWECorrector(method="montecarlo", n_iters=n_iters, vfwe_only=True).transform(
        est.fit(studyset)
    )


def _scale_probe_voxels(stat, xyz) -> np.ndarray:
    """12 voxels picked from the observed ALE map alone (not from either null): in each
    hemisphere, the voxels at the 25th, 50th, 75th, 90th, 99th and 100th percentiles of the
    positive ALE values."""
    picks = []
    for side in (xyz[:, 0] < 0, xyz[:, 0] > 0):
        idx = np.flatnonzero(side & (stat > 0))
        order = idx[np.argsort(stat[idx], kind="stable")]
        for q in (0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
            picks.append(order[min(len(order) - 1, int(q * len(order)))])
    return np.asarray(picks)


def _scale_voxel_comparisons(ours, theirs, voxels, n_ours, n_theirs) -> list:
    """Fisher tests of the voxel-wise SCALE p (each voxel has its own null: p = #(permuted
    ALE >= observed) / n, a binomial count in each package)."""
    p_ours = ours.get_map("p", return_type="array").astype(np.float64)
    # NiMARE's SCALE fit returns no p map: p = 10^-logp
    p_theirs = np.power(10.0, -theirs.get_map("logp", return_type="array").astype(np.float64))
    comps = []
    for v in voxels:
        r2, r1 = count_range(p_ours[v], n_ours), count_range(p_theirs[v], n_theirs)
        p = fisher_range(r1, n_theirs, r2, n_ours)
        comps.append((p, f"voxel {v}: ours p={p_ours[v]:.4g}, NiMARE {p_theirs[v]:.4g}; {p:.3g}"))
    return comps


def test_scale_fwe_null_matches_nimare(scale_pair):
    """SCALE's max-statistic null (voxel-level FWE) has NiMARE's quantiles on the same pool."""
    ours, theirs = scale_pair
    nulls = theirs.estimator.null_distributions_
    assert len(nulls[KEYS["voxel"]]) == N1_SCALE_FWE
    assert len(ours.null_distributions[KEYS["voxel"]]) == N2_SCALE
    assert_not_rejected(null_comparisons(nulls, ours.null_distributions, [KEYS["voxel"]]))


def test_scale_voxel_p_matches_nimare(scale_pair, pain_studyset):
    """The voxel-wise p (fit) of 12 voxels picked from the observed map agree with NiMARE's
    within binomial error; where the ALE is 0 both are 1 - 1/n."""
    from _parity import assert_within_ulp

    ours, theirs = scale_pair
    stat = ours.get_map("stat", return_type="array")
    # the ALE map: NiMARE's to 1 float32 ulp (its exp/log1p last bits, tests/_parity.py)
    assert_within_ulp(stat, theirs.get_map("stat", return_type="array"), err_msg="stat")
    voxels = _scale_probe_voxels(stat, pain_studyset.grid.voxel_xyz)
    assert_not_rejected(_scale_voxel_comparisons(ours, theirs, voxels, N2_SCALE, N1_SCALE_FIT))
    p_theirs = np.power(10.0, -theirs.get_map("logp", return_type="array").astype(np.float64))
    zero = stat == 0
    np.testing.assert_allclose(p_theirs[zero], 1 - 1 / N1_SCALE_FIT, rtol=1e-6)
    np.testing.assert_allclose(ours.get_map("p", "array")[zero], 1 - 1 / N2_SCALE, rtol=1e-6)


def test_scale_comparison_detects_a_uniform_pool(scale_pair, pain_studyset):
    """Power: foci drawn uniformly from the mask instead of from the pool are rejected by both
    comparisons above, at the same levels."""
    _, theirs = scale_pair
    wrong = _scale_fwe(pain_studyset, pain_studyset.grid.voxel_xyz, 1000)
    nulls = theirs.estimator.null_distributions_
    assert_rejected(null_comparisons(nulls, wrong.null_distributions, [KEYS["voxel"]]))
    stat = wrong.get_map("stat", return_type="array")
    voxels = _scale_probe_voxels(stat, pain_studyset.grid.voxel_xyz)
    assert_rejected(_scale_voxel_comparisons(wrong, theirs, voxels, 1000, N1_SCALE_FIT))


# ---------------------------------------------------------------------------- 4. ALESubtraction
N_SUB = 60  # label permutations, NiMARE's own (iteration i seeded with i): ~0.1 s each there


@pytest.fixture(scope="module")
def subtraction_pair(pain_halves):
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction

    ss1, ss2, n1, n2 = pain_halves
    with oracle():
        fitted = NiMAREALESubtraction(n_iters=N_SUB, vfwe_only=False).fit(n1, n2)
        theirs = NiMAREFWECorrector(method="montecarlo").transform(fitted)
    est = ALESubtraction(n_iters=N_SUB, vfwe_only=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fit's permutations are reused, not recomputed
        ours = FWECorrector(method="montecarlo").transform(est.fit(ss1, ss2))
    return est, ours, theirs


def _cluster_block(est, threshold):
    from nimare_dask.meta.cbma.permutation import ALEDiffPermutations

    st = est._perm_
    block = ALEDiffPermutations(
        st["pooled"], st["grid"], st["voxels"], mode="cluster", threshold=threshold, legacy=True
    )
    return block(0, N_SUB, SeedInfo(0, "unused"))  # legacy: iteration i seeded with i


def test_subtraction_cluster_nulls_at_nimare_threshold_are_nimare(subtraction_pair):
    """Our cluster pass, run at NiMARE's cluster-forming threshold on the same permutations,
    gives NiMARE's max cluster size in every iteration exactly and its max cluster mass to
    float32 rounding: NiMARE sums float32 (|difference| - threshold) terms, each within 2^-24
    relative of ours, all positive (so the sum is too), then stores the sum as float32
    (another 2^-24): rtol 2^-23."""
    est, _, theirs = subtraction_pair
    ref = theirs.estimator.null_distributions_
    thr = float(ref["summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"])
    out = _cluster_block(est, thr)
    np.testing.assert_array_equal(out["max_size"], np.asarray(ref[KEYS["size"]], dtype=np.int64))
    np.testing.assert_allclose(out["max_mass"], np.asarray(ref[KEYS["mass"]], float), rtol=2**-23)
    assert np.ptp(out["max_size"]) > 0


def test_subtraction_cluster_nulls_match_nimare(subtraction_pair):
    """The fit's cluster nulls differ from NiMARE's only through the cluster-forming threshold:
    ours is the pooled quantile read from a histogram of |difference| (bins 2^-12 wide,
    relative), NiMARE's the exact quantile of the float32 values (README, "Differences").

    * our fit's nulls are our cluster pass at our threshold (float32 storage: 2^-24), the
      pass that reproduces NiMARE's nulls at NiMARE's threshold (test above);
    * the thresholds are within one histogram bin;
    * per iteration the threshold orders the nulls (the supra-threshold set at the higher
      threshold is a subset: its largest cluster is neither larger nor heavier);
      the ALE differences are discrete, so some permuted |difference| can sit exactly at
      NiMARE's threshold (a tied quantile) and change a max size by a voxel: D iterations;
    * where the max sizes agree, the max masses differ by at most the threshold shift times
      the size (each voxel of the heaviest cluster loses the shift), plus float32 rounding
      (2^-22 relative: each side's 2^-23);
    * so each cluster's FWE count differs from NiMARE's by at most D (p by D / n).

    Replaces "90 % of iterations within 1e-3" (test_fwe_pairwise.py).
    """
    from nimare_dask.meta.cbma.permutation import abs_hist_quantile

    est, ours, theirs = subtraction_pair
    ref = theirs.estimator.null_distributions_
    t_n = float(ref["summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"])
    t_o = abs_hist_quantile(est._perm_["abs_hist"], 1 - 0.001)  # the threshold the pass used
    key = "summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"
    assert float(ours.null_distributions[key]) == float(np.float32(t_o))
    assert abs(t_o - t_n) <= 2**-12 * t_n, (t_o, t_n)
    sizes_o = np.asarray(ours.null_distributions[KEYS["size"]], dtype=np.float64)
    masses_o = np.asarray(ours.null_distributions[KEYS["mass"]], dtype=np.float64)
    at_ours = _cluster_block(est, t_o)
    np.testing.assert_array_equal(sizes_o, at_ours["max_size"])
    np.testing.assert_allclose(masses_o, at_ours["max_mass"], rtol=2**-24)
    sizes_n = np.asarray(ref[KEYS["size"]], dtype=np.float64)
    masses_n = np.asarray(ref[KEYS["mass"]], dtype=np.float64)
    sign = np.sign(t_o - t_n)
    assert np.all(sign * (sizes_o - sizes_n) <= 0)
    assert np.all(sign * (masses_o - masses_n) <= 2**-22 * masses_n)
    same = sizes_o == sizes_n
    n_differ = int((~same).sum())
    assert n_differ <= N_SUB // 10, n_differ  # ties at the threshold are rare
    # where the supra-threshold sets agree the heaviest cluster loses |t_o - t_n| per voxel,
    # and it has at most max-size voxels
    shift = sign * (masses_n[same] - masses_o[same])
    assert np.all(shift >= -(2**-22) * masses_n[same])
    assert np.all(shift <= abs(t_o - t_n) * sizes_n[same] + 2**-22 * masses_n[same])
    for kind in ("Size", "Mass"):
        name = f"p_desc-group1MinusGroup2{kind}_level-cluster{SUFFIX}"
        p_ours = ours.get_map(name, return_type="array").astype(np.float64)
        p_theirs = theirs.get_map(name, return_type="array").astype(np.float64)
        assert (p_theirs < 0.5).any(), name  # some cluster is tested
        # counts over N_SUB (1/N_SUB and 1 - 1/N_SUB clips are the same for both)
        np.testing.assert_allclose(p_ours, p_theirs, rtol=0, atol=(n_differ + 0.01) / N_SUB)


# ---------------------------------------------------------------------------- 5. montecarlo nulls
#: NiMARE's iterations (ALE ~50 ms each, MKDA/KDA ~6 ms) and ours
N1_MC = {"ALE": 200, "MKDADensity": 1000, "KDA": 1000}
N2_MC = 1000
#: uncorrected p levels compared, picked on the exact/approximate null (independent of both
#: Monte Carlo runs); at p = 0.002 an iteration has ~450 voxels above the level, enough for
#: the central limit theorem over 200 iterations
P_LEVELS = (0.5, 0.2, 0.05, 0.01, 0.002)
ONE_SAMPLE = {"ALE": ALE, "MKDADensity": MKDADensity, "KDA": KDA}


def _per_iteration_tails(est, studyset, bins, levels, n_iters, seed) -> np.ndarray:
    """(n_iters, len(levels)) fraction of voxels in histogram bins >= each level, one row per
    iteration of our null (the fit's iterations: same seed and stream); checks that the rows
    add up to the fit's histogram."""
    step = bins[1] - bins[0]
    edges = np.append(bins - step / 2, bins[-1] + step / 2)
    block = est._null_block(studyset, "hist", edges=edges)
    info = SeedInfo(seed, "null_montecarlo")
    total = np.zeros(len(bins), dtype=np.int64)
    tails = np.empty((n_iters, len(levels)))
    for i in range(n_iters):
        hist = block(i, i + 1, info)["hist"]
        total += hist
        upper = np.cumsum(hist[::-1])[::-1]
        tails[i] = upper[levels] / hist.sum()
    fitted = est.null_distributions_["histweights_corr-none_method-montecarlo"]
    np.testing.assert_array_equal(total, fitted)
    return tails


@pytest.fixture(scope="module", params=sorted(ONE_SAMPLE))
def mc_null_pair(request, pain_studyset, nimare_pain):
    from nimare.meta.cbma import ALE as NiMAREALE
    from nimare.meta.cbma import KDA as NiMAREKDA
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    name = request.param
    ref_cls = {"ALE": NiMAREALE, "MKDADensity": NiMAREMKDADensity, "KDA": NiMAREKDA}[name]
    with oracle():
        ref = ref_cls(null_method="montecarlo", n_iters=N1_MC[name], random_state=3)
        theirs = ref.fit(nimare_pain)
    est = ONE_SAMPLE[name](null_method="montecarlo", n_iters=N2_MC, random_state=3, progress=False)
    ours = est.fit(pain_studyset)
    return name, est, ours, theirs


def _level_bins(name, pain_studyset, bins) -> np.ndarray:
    """Histogram bins of the voxels whose exact/approximate-null p is nearest each level."""
    approx = ONE_SAMPLE[name]().fit(pain_studyset)
    p = approx.get_map("p", return_type="array").astype(np.float64)
    stat = approx.get_map("stat", return_type="array").astype(np.float64)
    step = bins[1] - bins[0]
    picks = set()
    for level in P_LEVELS:
        v = int(np.argmin(np.where(stat > 0, np.abs(np.log(p / level)), np.inf)))
        picks.add(int(np.floor(stat[v] / step + 0.5)))  # NiMARE's nearest bin
    return np.asarray(sorted(picks))


def test_montecarlo_p_maps_match_nimare(mc_null_pair, pain_studyset):
    """``null_method="montecarlo"`` p maps: at the statistic levels where the exact null's p is
    0.5 ... 0.002, NiMARE's p and ours differ by less than their Monte Carlo error (z test with
    the variance of the per-iteration tail fractions, module docstring); both packages'
    histograms share the bins."""
    name, est, ours, theirs = mc_null_pair
    bins = np.asarray(ours.null_distributions["histogram_bins"], dtype=np.float64)
    np.testing.assert_array_equal(bins, theirs.estimator.null_distributions_["histogram_bins"])
    levels = _level_bins(name, pain_studyset, bins)
    tails = _per_iteration_tails(est, pain_studyset, bins, levels, N2_MC, 3)
    stat = ours.get_map("stat", return_type="array").astype(np.float64)
    p_ours = ours.get_map("p", return_type="array").astype(np.float64)
    p_theirs = theirs.get_map("p", return_type="array").astype(np.float64)
    step = bins[1] - bins[0]
    voxel_bin = np.floor(stat / step + 0.5).astype(np.int64)
    n1 = N1_MC[name]
    comps = []
    for j, b in enumerate(levels):
        vox = np.flatnonzero(voxel_bin == b)
        assert vox.size, b
        # every voxel of the bin has one p per package; ours is the mean tail of its iterations
        assert np.unique(p_ours[vox]).size == 1 and np.unique(p_theirs[vox]).size == 1
        p2, p1 = p_ours[vox[0]], p_theirs[vox[0]]
        np.testing.assert_allclose(p2, tails[:, j].mean(), rtol=1e-6)
        se = np.sqrt(tails[:, j].var(ddof=1) * (1 / n1 + 1 / N2_MC))
        z = (p1 - p2) / se
        comps.append(
            (
                float(2 * stats.norm.sf(abs(z))),
                f"{name} stat bin {b} ({bins[b]:.6g}): NiMARE p {p1:.5g} (n={n1}), ours "
                f"{p2:.5g} (n={N2_MC}), se {se:.3g}, z {z:.2f}",
            )
        )
    assert len(comps) >= 4
    assert_not_rejected(comps)


def test_montecarlo_max_stat_histogram_matches_nimare(mc_null_pair):
    """The per-iteration maximum kept by the Monte Carlo null (the voxel-level FWE null of
    ``vfwe_only=True``) has NiMARE's quantiles."""
    name, _, ours, theirs = mc_null_pair
    key = "histweights_level-voxel_corr-fwe_method-montecarlo"
    bins = np.asarray(ours.null_distributions["histogram_bins"], dtype=np.float64)
    counts_o = np.asarray(ours.null_distributions[key])
    counts_t = np.asarray(theirs.estimator.null_distributions_[key])
    assert counts_o.sum() == N2_MC and counts_t.sum() == N1_MC[name]
    samples = {"max": np.repeat(bins, counts_t)}, {"max": np.repeat(bins, counts_o)}
    assert_not_rejected(null_comparisons(*samples, ["max"]))


# ---------------------------------------------------------------------------- 7. MKDAChi2 FDR
def _active_somewhere_not_everywhere(result):
    """Mask of the voxels active in at least one and not in all studies of both groups
    (0 < c1 + c2 < N: the association test's denominator is non-zero), from a first fit."""
    import nibabel as nib

    img = result.get_map("prob_desc-A", return_type="image")
    data = np.asarray(img.dataobj)
    return nib.Nifti1Image(((data > 0) & (data < 1)).astype(np.uint8), img.affine)


def assert_chi2_fdr_matches(ours_pair, theirs_pair, method: str) -> tuple:
    """Fit both packages on a mask where the association denominator is non-zero, correct
    with FDR and compare every FDR map NiMARE returns; returns (ours, theirs) corrected."""
    from nimare.correct import FDRCorrector as NiMAREFDRCorrector
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    mask = _active_somewhere_not_everywhere(MKDAChi2().fit(*ours_pair))
    n_in = int(np.asarray(mask.dataobj).sum())
    ours = FDRCorrector(method=method).transform(MKDAChi2(mask=mask).fit(*ours_pair))
    with oracle():
        fitted = NiMAREMKDAChi2(mask=mask).fit(*theirs_pair)
        theirs = NiMAREFDRCorrector(method=method).transform(fitted)
    prob_a = ours.get_map("prob_desc-A", return_type="array")
    assert prob_a.size == n_in and np.all((prob_a > 0) & (prob_a < 1))
    # no zero denominator, so no 2.0: NiMARE's association chi2 is ours everywhere
    np.testing.assert_allclose(
        ours.get_map("chi2_desc-association", return_type="array"),
        theirs.get_map("chi2_desc-association", return_type="array"),
        rtol=1e-6,
    )
    names = [n for n in theirs.maps if n.endswith(f"_corr-FDR_method-{method}")]
    assert len(names) == 12 and set(names) <= set(ours.maps_names)
    for name in names:
        a = ours.get_map(name, return_type="array")
        b = theirs.get_map(name, return_type="array")
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
    return ours, theirs


@pytest.mark.parametrize("method", ["indep", "negcorr"])
def test_mkda_chi2_fdr_matches_nimare_where_association_is_defined(
    pain_studyset, nimare_pain, nimare_resources, method
):
    """MKDAChi2 FDR maps of all four tests, the association test included, equal NiMARE's.

    The association chi2 differs on purpose where its denominator (c1 + c2)(N - c1 - c2) is 0
    (NiMARE 2.0, ours 0; README), and FDR couples voxels through the ranks of their p, so the
    comparison is made on inputs where that denominator is nowhere 0: both packages analyse
    the mask of the voxels active in at least one and not in all of the 42 experiments (21
    pain studies against NiMARE's 21 semantic-knowledge experiments; 0 < c1 + c2 < N, from a
    first fit on the brain mask). The uniformity tests' expected count is then the mean over
    this mask in both. Tolerance: the adjusted p are products and running minima of the same
    float64 p values (rtol 1e-6, the float32 maps' precision); z and logp derive from them.
    Large groups with a real association: the database test below.
    """
    from nimare.io import convert_sleuth_to_studyset as nimare_sleuth

    from nimare_dask.io import convert_sleuth_to_studyset

    sleuth = nimare_resources / "semantic_knowledge_children.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 14 foci outside the brain mask, kept (as NiMARE)
        ours_pair = (pain_studyset, convert_sleuth_to_studyset(sleuth, target="mni152_2mm"))
    with oracle():
        theirs_pair = (nimare_pain, nimare_sleuth(str(sleuth), target="mni152_2mm"))
    ours, _ = assert_chi2_fdr_matches(ours_pair, theirs_pair, method)
    suffix = "_level-voxel" if method == "indep" else ""
    p = ours.get_map(f"p_desc-uniformity{suffix}_corr-FDR_method-{method}", "array")
    assert (p < 0.05).sum() > 1000  # small adjusted p are compared too


# ---------------------------------------------------------------------------- 6. MACM (database)
N_NEUROSYNTH = 800  # random Neurosynth v7 studies; ~70 of them have a focus in the amygdala
N1_MACM = 100  # NiMARE: ~0.15 s per iteration on ~4,000 foci
N2_MACM = 1000


@pytest.fixture(scope="module")
def neurosynth_subset(shared_data, tmp_path_factory):
    """Coordinates and metadata files of 800 random Neurosynth v7 studies (seeded), in the
    release's own format, read by each package's Neurosynth reader."""
    import pandas as pd

    folder = shared_data / "neurosynth-v7"
    meta = pd.read_table(folder / "data-neurosynth_version-7_metadata.tsv.gz", dtype={"id": str})
    coords = pd.read_table(
        folder / "data-neurosynth_version-7_coordinates.tsv.gz", dtype={"id": str}
    )
    keep = set(np.random.default_rng(0).choice(meta["id"], N_NEUROSYNTH, replace=False))
    out = tmp_path_factory.mktemp("neurosynth_subset")
    meta[meta["id"].isin(keep)].to_csv(out / "metadata.tsv.gz", sep="\t", index=False)
    coords[coords["id"].isin(keep)].to_csv(out / "coordinates.tsv.gz", sep="\t", index=False)
    return out / "coordinates.tsv.gz", out / "metadata.tsv.gz"


@pytest.fixture(scope="module")
def macm_pair(neurosynth_subset, nimare_test_data, tmp_path_factory, pain_studyset):
    """NiMARE's own ``macm_workflow`` (legacy Dataset JSON written by its Neurosynth
    converter, selection by the amygdala mask, ALE, Monte Carlo FWE) and ours on the same
    files. Two substitutions make NiMARE's run comparable and reproducible: its ALE gets
    ``kernel__fwhm=10`` (Neurosynth has no sample sizes; ours uses the same kernel) and a
    seed (the workflow passes none); its corrector is recorded to keep the nulls."""
    import nimare.workflows.macm as nimare_macm
    from nimare.correct import FWECorrector as NiMAREFWECorrector
    from nimare.io import convert_neurosynth_to_json
    from nimare.meta.cbma import ALE as NiMAREALE

    from nimare_dask.io import convert_neurosynth_to_studyset
    from nimare_dask.workflows import amygdala_roi, macm

    coords, meta = neurosynth_subset
    folder = tmp_path_factory.mktemp("nimare_macm")
    records = []

    class RecordingFWECorrector(NiMAREFWECorrector):
        def transform(self, result):
            records.append(super().transform(result))
            return records[-1]

    def seeded_ale():
        return NiMAREALE(kernel__fwhm=10, random_state=7)

    with oracle(), pytest.MonkeyPatch.context() as mp:
        convert_neurosynth_to_json(str(coords), str(meta), str(folder / "dset.json"))
        mp.setattr(nimare_macm, "ALE", seeded_ale)
        mp.setattr(nimare_macm, "FWECorrector", RecordingFWECorrector)
        nimare_macm.macm_workflow(
            str(folder / "dset.json"),
            str(nimare_test_data / "amygdala_roi.nii.gz"),
            output_dir=str(folder / "out"),
            n_iters=N1_MACM,
            v_thr=0.001,
            n_cores=1,
        )
    (theirs,) = records
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UNKNOWN spaces kept as MNI (warned)
        ss = convert_neurosynth_to_studyset(coords, meta)
    ours = macm(
        ss,
        amygdala_roi(),
        estimator=ALE(kernel__fwhm=10, random_state=7, progress=False),
        corrector=FWECorrector(method="montecarlo", n_iters=N2_MACM),
    )
    return ours, theirs, folder / "out", ss.grid


@pytest.mark.database
def test_macm_matches_nimare_macm_workflow(macm_pair):
    """Same selected studies, same ALE map and cluster-forming threshold as NiMARE's MACM
    workflow; its Monte Carlo FWE nulls have NiMARE's quantiles; the same significant clusters
    with cluster-level p (size and mass) within Monte Carlo error; the maps we compare are
    the ones the workflow wrote."""
    import nibabel as nib
    from _parity import assert_within_ulp

    ours, theirs, out, grid = macm_pair
    selected = sorted(ours.tables["selected_studies"]["id"])
    assert len(selected) > 40
    assert selected == sorted(theirs.estimator.inputs_["id"])
    stat = ours.get_map("stat", return_type="array")
    assert_within_ulp(stat, theirs.get_map("stat", return_type="array"), err_msg="stat")
    thr = ours.estimator.summarystat_threshold(0.001)
    assert thr == pytest.approx(theirs.estimator._p_to_summarystat(0.001), rel=1e-12)
    # ALPHA: half for the nulls, half for the clusters
    nulls = theirs.estimator.null_distributions_
    assert_not_rejected(null_comparisons(nulls, ours.null_distributions, KEYS.values()), ALPHA / 2)
    clusters = label_clusters(stat, grid, thr)
    assert clusters.n_clusters >= 3
    pairs = []
    for kind in ("size", "mass"):
        name = f"p_desc-{kind}_level-cluster{SUFFIX}"
        written = nib.load(out / f"dset_logp_desc-{kind}_level-cluster{SUFFIX}.nii.gz")
        np.testing.assert_array_equal(
            np.asarray(written.dataobj)[grid.mask],
            theirs.get_map(name.replace("p_", "logp_", 1), return_type="array"),
        )
        p_ours = np.asarray(ours.get_map(name, return_type="array"), dtype=np.float64)
        pairs.append((p_ours, N2_MACM, nimare_p(theirs, name), N1_MACM, f"MACM {kind}"))
        biggest = clusters.labels == np.argmax(clusters.sizes) + 1  # the amygdala's cluster
        assert p_ours[biggest][0] < 0.05 and nimare_p(theirs, name)[biggest][0] < 0.05
    compare_cluster_maps(pairs, clusters, ALPHA / 2)


@pytest.mark.database
def test_mkda_chi2_fdr_matches_nimare_on_neurosynth(neurosynth_subset, nimare_test_data):
    """The FDR comparison with a real association: the Neurosynth subset's studies with a
    focus in the amygdala against the others, on the voxels where the association test's
    denominator is non-zero (see the pain test above); a cluster of association survives."""
    from nimare.io import convert_neurosynth_to_studyset as nimare_neurosynth
    from nimare.studyset import Studyset as NiMAREStudyset  # noqa: F401 (type of the above)

    from nimare_dask.io import convert_neurosynth_to_studyset
    from nimare_dask.workflows import amygdala_roi

    coords, meta = neurosynth_subset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = convert_neurosynth_to_studyset(coords, meta)
    with oracle():
        nss = nimare_neurosynth(str(coords), str(meta))
    inside = sorted(ss.get_studies_by_mask(amygdala_roi()))
    outside = sorted(set(ss.ids) - set(inside))
    ours_pair = (ss.slice(inside), ss.slice(outside))
    with oracle():
        theirs_pair = (nss.slice(inside), nss.slice(outside))
    for method in ("indep", "negcorr"):
        ours, _ = assert_chi2_fdr_matches(ours_pair, theirs_pair, method)
        suffix = "_level-voxel" if method == "indep" else ""
        p = ours.get_map(f"p_desc-association{suffix}_corr-FDR_method-{method}", "array")
        assert (p < 0.05).sum() > 10, method

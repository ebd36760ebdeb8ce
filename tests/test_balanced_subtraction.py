"""BalancedALESubtraction against NiMARE 0.22.1 (the oracle) on small n-back vs flanker splits.

NiMARE's bundled parquet studyset ``nback_vs_flanker_studyset_2026-07`` has no sample sizes (its
BalancedALESubtraction then fails on the missing ``sample_size`` column), so both sides read the
same NIMADS export of it with seeded sample sizes (10-40) added to every analysis.

* Deterministic parts are compared exactly: the probability maps of exhaustive schedules
  (leave-one-out, all-studies) given NiMARE's cluster thresholds, and the balanced difference
  when both groups have ``target_n`` experiments.
* Random parts are compared statistically: the mean difference against the exact expectation
  over every subset (computed here from NiMARE's MA maps), the null distributions with
  two-sample Kolmogorov-Smirnov tests.
* Our runs are identical for any block size and number of threads.
* NiMARE's ``generate_subset_schedule`` is reproduced exactly (leave-one-out, exhaustive and
  seeded schedules; the seeded one replays NiMARE's legacy generator).
"""

from __future__ import annotations

import types
from itertools import combinations

import numpy as np
import pytest

nimare = pytest.importorskip("nimare")

from nimare.correct import FWECorrector as NiFWE  # noqa: E402
from nimare.meta.cbma import BalancedALESubtraction as NiBalanced  # noqa: E402
from nimare.studyset import Studyset as NiStudyset  # noqa: E402

from nimare_dask import Studyset  # noqa: E402
from nimare_dask.correct import FWECorrector  # noqa: E402
from nimare_dask.meta.cbma import BalancedALESubtraction  # noqa: E402
from nimare_dask.meta.cbma.balanced import (  # noqa: E402
    EXHAUSTIVE_LIMIT,
    resolve_target_n,
    subset_schedule,
)

RELEASE = "nback_vs_flanker_studyset_2026-07"


@pytest.fixture(scope="module")
def nimads(nimare_resources):
    """NIMADS dict of the release with seeded sample sizes, and (study, analysis) per task."""
    d = NiStudyset(str(nimare_resources / RELEASE)).to_dict()
    rng = np.random.default_rng(0)
    tasks = {"n-back": [], "flanker": []}
    for st in d["studies"]:
        for a in st["analyses"]:
            a["metadata"]["sample_sizes"] = [int(rng.integers(10, 41))]
            tasks[a["metadata"]["comparison_task"]].append((st["id"], a["id"]))
    return d, tasks


def _group(nimads, task: str, n: int) -> dict:
    d, tasks = nimads
    keep = set(tasks[task][:n])
    out = {k: v for k, v in d.items() if k != "studies"}
    out["studies"] = []
    for st in d["studies"]:
        analyses = [a for a in st["analyses"] if (st["id"], a["id"]) in keep]
        if analyses:
            out["studies"].append({**st, "analyses": analyses})
    return out


def _pair(nimads, n1: int, n2: int):
    d1, d2 = _group(nimads, "n-back", n1), _group(nimads, "flanker", n2)
    return (NiStudyset(d1), NiStudyset(d2)), (Studyset(d1), Studyset(d2))


def _nimare_fit(monkeypatch, ni_pair, **kw):
    """Fit NiMARE, recording the arrays its ``np.percentile`` calls see (in call order: group
    1's and group 2's null cluster sizes, then the min and max nulls) and what it returned."""
    import nimare.meta.cbma.ale as ni_ale

    calls = []

    def percentile(a, q, *args, **kwargs):
        value = np.percentile(a, q, *args, **kwargs)
        calls.append((np.array(a, copy=True), float(value)))
        return value

    proxy = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("_")})
    proxy.percentile = percentile
    with monkeypatch.context() as m:
        m.setattr(ni_ale, "np", proxy)
        result = NiBalanced(**kw).fit(*ni_pair)
    return result, calls


def _ours(pair, thresholds=None, **kw):
    est = BalancedALESubtraction(progress=False, **kw)
    if thresholds is not None:  # NiMARE's random cluster thresholds, to compare the rest exactly
        est._cluster_threshold = lambda g, sizes: thresholds[g - 1]
    return est, est.fit(*pair)


def _arr(result, name):
    return np.asarray(result.get_map(name, return_type="array"))


def test_exhaustive_schedules_match_nimare(nimads, monkeypatch):
    """6 vs 5 experiments, target_n 5: group 1's schedule is leave-one-out (6 subsets), group
    2's the single all-studies subset. Given NiMARE's cluster thresholds, the probability and
    conjunction maps are NiMARE's exactly (same subsets, same bits of ALE, null and z)."""
    ni_pair, pair = _pair(nimads, 6, 5)
    kw = dict(n_subsamples=10, difference_iterations=2, n_iters=8, random_state=3)
    ni, calls = _nimare_fit(monkeypatch, ni_pair, **kw)
    thresholds = [calls[0][1], calls[1][1]]
    est, ours = _ours(pair, thresholds, n_cores=1, **kw)
    assert sorted(ours.maps) == sorted(ni.maps)
    assert sorted(ours.estimator.null_distributions_) == sorted(ni.estimator.null_distributions_)
    for name in ("prob_desc-group1", "prob_desc-group2", "stat_desc-conjunction"):
        np.testing.assert_array_equal(_arr(ours, name), _arr(ni, name), err_msg=name)
    assert _arr(ni, "prob_desc-group1").max() > 0  # the comparison is not of empty maps
    assert est.balanced_["group1"]["n_subsets"] == 6
    # map names after Bonferroni (NiMARE's only correction here) are NiMARE's
    ni_corr = NiFWE(method="bonferroni").transform(ni)
    corr = FWECorrector(method="bonferroni").transform(ours)
    assert sorted(corr.maps) == sorted(ni_corr.maps)
    with pytest.raises(NotImplementedError, match="bonferroni"):
        FWECorrector(method="montecarlo").transform(ours)


def test_equal_groups_difference_matches_nimare(nimads, monkeypatch):
    """5 vs 5 at target_n 5: every subsample is the whole group, so the balanced difference is
    deterministic. NiMARE takes float32 products of 5 factors (relative error <= 5 * 2**-24 on
    each 1 - ALE, so <= 6e-7 on the difference) and accumulates it in float32 over the
    iterations (a few ulp of values < 0.1): atol 2e-6 bounds both."""
    ni_pair, pair = _pair(nimads, 5, 5)
    kw = dict(n_subsamples=5, difference_iterations=3, n_iters=4, random_state=0)
    ni, _ = _nimare_fit(monkeypatch, ni_pair, **kw)
    _, ours = _ours(pair, n_cores=1, **kw)
    name = "stat_desc-balancedGroup1MinusGroup2"
    ref = _arr(ni, name)
    np.testing.assert_allclose(_arr(ours, name), ref, rtol=0, atol=2e-6)
    assert np.abs(ref).max() > 1e-3 and np.count_nonzero(ref) > 10_000


def test_random_difference_statistically_equal(nimads, monkeypatch):
    """8 vs 5 at target_n 5 with 400 subsample pairs: each voxel's mean is a Monte Carlo
    estimate of the expectation over the C(8, 5) = 56 subsets of group 1, computed exactly here
    from NiMARE's MA maps. Both NiMARE's and our means lie within 6 standard errors
    (sd over the 56 subsets / sqrt(400)) of it at every prior voxel (a Gaussian 6-sigma
    excursion has probability 2e-9 per voxel, < 1e-3 over the ~190k voxels), plus a bound on
    NiMARE's float32 rounding where the subsets barely differ."""
    ni_pair, pair = _pair(nimads, 8, 5)
    d = 400
    kw = dict(n_subsamples=3, difference_iterations=d, n_iters=2, random_state=5)
    ni, _ = _nimare_fit(monkeypatch, ni_pair, **kw)
    _, ours = _ours(pair, n_cores=1, **kw)
    from nimare.meta.cbma.ale import ALE as NiALE

    mas = []
    for ss in ni_pair:
        fitted = NiALE(kernel__sample_size=None).fit(ss).estimator
        mas.append(fitted._collect_ma_maps().toarray().astype(np.float64))
    name = "stat_desc-balancedGroup1MinusGroup2"
    prior = _arr(ni, name) != 0
    ma1, ma2 = mas[0][:, prior], mas[1][:, prior]
    ale2 = 1 - np.prod(1 - ma2, axis=0)
    subsets = [1 - np.prod(1 - ma1[list(c)], axis=0) for c in combinations(range(8), 5)]
    expect = np.mean(subsets, axis=0) - ale2
    se = np.std(subsets, axis=0) / np.sqrt(d)
    # NiMARE sums the d differences in float32: each addition rounds by <= 2**-24 of the
    # running sum (<= d |diff|), so its mean is off by <= d * 2**-24 * |diff|; and each of its
    # float32 ALEs 1 - prod(1 - MA) takes 2 * 5 + 1 roundings of numbers near 1 (<= 2**-24
    # each): <= 1.4e-6 for the two groups
    floor = d * 2.0**-24 * np.abs(expect) + 22 * 2.0**-24
    for label, res in (("nimare", ni), ("ours", ours)):
        err = np.abs(_arr(res, name)[prior] - expect)
        assert np.all(err <= 6 * se + floor), (label, float((err / (se + floor)).max()))
    assert np.corrcoef(_arr(ours, name), _arr(ni, name))[0, 1] > 0.999


def test_nulls_statistically_equal(nimads, monkeypatch):
    """Random-foci nulls (8 vs 5, target_n 5, 100 iterations each): NiMARE's and our null
    cluster sizes (per group) and min/max null differences come from the same distributions.
    Two-sample Kolmogorov-Smirnov tests at p > 1e-3 (each fails with probability 1e-3 when the
    distributions are equal; 4 tests)."""
    from scipy.stats import ks_2samp

    ni_pair, pair = _pair(nimads, 8, 5)
    kw = dict(n_subsamples=2, difference_iterations=2, n_iters=100, random_state=11)
    ni, calls = _nimare_fit(monkeypatch, ni_pair, **kw)
    est, ours = _ours(pair, **kw)
    for g in (1, 2):
        ks = ks_2samp(est.balanced_[f"group{g}"]["sizes"], calls[g - 1][0])
        assert ks.pvalue > 1e-3, (g, ks)
    for key in ("values_desc-balancedMinNull_corr-none", "values_desc-balancedMaxNull_corr-none"):
        ks = ks_2samp(
            ours.estimator.null_distributions_[key], ni.estimator.null_distributions_[key]
        )
        assert ks.pvalue > 1e-3, (key, ks)


@pytest.mark.parametrize("null_method", ["random-foci", "label-permutation"])
def test_identical_for_any_blocking_and_threads(nimads, null_method):
    """Every pass gives the same bits for block sizes 1 and 7 (4,099 and 50,000 voxels in the
    difference pass) and 1 or 2 threads."""
    _, pair = _pair(nimads, 7, 5)
    kw = dict(
        n_subsamples=9, difference_iterations=5, n_iters=9, random_state=2, null_method=null_method
    )
    BalancedALESubtraction._voxel_block_size = 4099
    try:
        _, a = _ours(pair, block_size=1, n_cores=1, **kw)
        BalancedALESubtraction._voxel_block_size = 50_000
        _, b = _ours(pair, block_size=7, n_cores=2, **kw)
    finally:
        BalancedALESubtraction._voxel_block_size = None
    for name in a.maps:
        np.testing.assert_array_equal(_arr(a, name), _arr(b, name), err_msg=name)
    for key, value in a.estimator.null_distributions_.items():
        np.testing.assert_array_equal(value, b.estimator.null_distributions_[key])


def test_parameters_are_checked(nimads):
    _, pair = _pair(nimads, 3, 2)
    with pytest.raises(ValueError, match="null_method"):
        BalancedALESubtraction(null_method="x").fit(*pair)
    with pytest.raises(ValueError, match="alpha"):
        BalancedALESubtraction(alpha=1.5).fit(*pair)
    with pytest.raises(ValueError, match="target_n"):
        BalancedALESubtraction(target_n=3).fit(*pair)
    with pytest.raises(ValueError, match="n_subsamples"):
        BalancedALESubtraction(n_subsamples=0).fit(*pair)


# ---------------------------------------------------------------- subset schedule (exact)
def _nimare_schedule(*args, **kwargs):
    from nimare.meta.cbma.utils import generate_subset_schedule

    return generate_subset_schedule(*args, **kwargs)


@pytest.mark.parametrize(
    "total_n,target_n,n_samples,seed",
    [
        (21, 20, 2500, 0),  # leave-one-out
        (10, 4, 2500, 3),  # exhaustive: C(10, 4) = 210
        (9, 9, 2500, 1),  # one subset: everything
        (21, 10, 2500, 7),  # seeded: C(21, 10) = 352,716 > 2,500
        (30, 5, 300, 123),  # seeded, small
        (12, 6, 924, 5),  # n_samples == C(12, 6): exhaustive
        (12, 6, 900, 5),  # one short of exhaustive: seeded
    ],
)
def test_schedule_identical_to_nimare(total_n, target_n, n_samples, seed):
    ours = subset_schedule(
        total_n, target_n, n_samples, random_state=seed, exhaustive_limit=EXHAUSTIVE_LIMIT
    )
    theirs = _nimare_schedule(
        total_n, target_n, n_samples=n_samples, random_state=seed, exhaustive_limit=10000
    )
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int32


def test_schedule_errors():
    with pytest.raises(ValueError, match="target_n must be between"):
        subset_schedule(5, 6)
    with pytest.raises(ValueError, match="exceed exhaustive_limit"):
        subset_schedule(30, 10)


def test_target_n():
    assert resolve_target_n(21, 14, None) == 14
    assert resolve_target_n(21, 14, 10) == 10
    with pytest.raises(ValueError, match="smaller group size"):
        resolve_target_n(21, 14, 15)
    with pytest.raises(TypeError, match="integer"):
        resolve_target_n(21, 14, 2.5)

"""Label-permutation nulls (ALESubtraction, MKDAChi2) and SCALE against NiMARE 0.22.1.

The label permutations are NiMARE's own (same seeds, same shuffles), so here the comparison is
exact, not statistical:

* MKDAChi2: every null (max chi-square, max cluster size and mass of the three tests) and
  every FWE p map equals NiMARE's (z to float32 rounding, logp to 2 float32 ulps: NiMARE's
  numpy float32 log10 has CPU-dependent last bits, see ``tests/_parity.py``).
* ALESubtraction: the voxel-level null (max |difference| per permutation) equals NiMARE's to
  1 float32 ulp (both ALE maps are ``1 - exp(sum log1p(-MA))``, see the test), and
  NiMARE's p-values are reproduced exactly when our permutations are compared with NiMARE's
  float32-rounded observed difference. Our own p-values compare with the exact observed
  difference: a permutation that reproduces a voxel's observed group composition ties with it
  (counts as >= and <=). NiMARE's float32 rounding breaks those ties arbitrarily, which makes
  voxels reached by a single study of group 2 "significant" at p = 1/n (documented difference).
* The cluster-forming threshold of the subtraction is NiMARE's pooled quantile, read from a
  histogram: within its bin width (2**-12 relative).
"""

from __future__ import annotations

import warnings

import nimare  # noqa: F401 (the oracle, a test dependency)
import numpy as np
import pytest
from _parity import ULP_BELOW_ONE, assert_within_ulp

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.meta.cbma import SCALE, ALESubtraction, MKDAChi2
from nimare_dask.meta.cbma.permutation import ALEDiffPermutations, permutation_members
from nimare_dask.montecarlo import SeedInfo

N_PERM = 30
SUFFIX = "_corr-FWE_method-montecarlo"
VOXEL_NULL = "values_level-voxel_corr-fwe_method-montecarlo"


@pytest.fixture(scope="module")
def halves(pain_studyset, pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    ids = list(pain_studyset.ids)
    nss = NiMAREStudyset(str(pain_json))
    return (
        pain_studyset.slice(ids[:11]),
        pain_studyset.slice(ids[11:]),
        nss.slice(ids[:11]),
        nss.slice(ids[11:]),
    )


# ---------------------------------------------------------------------------- MKDAChi2
@pytest.fixture(scope="module")
def chi2_pair(halves):
    from nimare.correct import FWECorrector as NiMAREFWE
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    ss1, ss2, n1, n2 = halves
    ours = FWECorrector("montecarlo", n_iters=N_PERM).transform(
        MKDAChi2(progress=False).fit(ss1, ss2)
    )
    theirs = NiMAREFWE("montecarlo", n_iters=N_PERM).transform(NiMAREMKDAChi2().fit(n1, n2))
    return ours, theirs


def test_mkda_chi2_label_permutation_fwe_is_nimare(chi2_pair):
    ours, theirs = chi2_pair
    ref = theirs.estimator.null_distributions_
    keys = [k for k in ref if k.startswith("values_")]
    assert len(keys) == 12
    for key in keys:
        np.testing.assert_array_equal(
            np.asarray(ours.null_distributions[key], float), np.asarray(ref[key], float), key
        )
    names = [n for n in theirs.maps if n.endswith(SUFFIX)]
    assert len(names) == 36 and set(names) <= set(ours.maps_names)
    for name in names:
        a = ours.get_map(name, return_type="array")
        b = theirs.get_map(name, return_type="array")
        # same nulls, same clusters: p identical (counts); logp = -log10(p) within 2 float32
        # ulps (NiMARE's numpy float32 log10 is up to 2 ulps off, on a CPU-dependent set of
        # values, tests/_parity.py); z through float32 rounding
        if name.startswith("logp"):
            assert_within_ulp(a, b, maxulp=2, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 if name.startswith("z") else 0)


def test_mkda_chi2_random_foci_fwe(halves):
    ss1, ss2, _, _ = halves
    est = MKDAChi2(fwe_null_method="random-foci", random_state=9, progress=False)
    res = est.fit(ss1, ss2)
    a = FWECorrector("montecarlo", n_iters=20).transform(res)
    b = FWECorrector("montecarlo", n_iters=20, block_size=3).transform(res)
    for key, value in a.null_distributions.items():
        if key.startswith("values_"):
            np.testing.assert_array_equal(value, b.null_distributions[key])
    null = a.null_distributions["values_desc-pFgA_level-voxel_corr-fwe_method-montecarlo"]
    assert null.shape == (20,) and np.all(null > 0)
    assert a.tables["montecarlo" + SUFFIX]["fwe_null_method"].iloc[0] == "random-foci"
    with pytest.raises(ValueError, match="fwe_null_method"):
        MKDAChi2(fwe_null_method="bogus")


def test_mkda_chi2_fdr_indep_names_and_values(halves):
    from nimare.correct import FDRCorrector as NiMAREFDR
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    ss1, ss2, n1, n2 = halves
    ours = FDRCorrector().transform(MKDAChi2().fit(ss1, ss2))
    theirs = NiMAREFDR().transform(NiMAREMKDAChi2().fit(n1, n2))
    names = [n for n in theirs.maps if n.endswith("_corr-FDR_method-indep")]
    assert len(names) == 12 and set(names) <= set(ours.maps_names)
    for name in names:
        if "association" in name:
            continue  # chi2 = 0 (ours) vs 2.0 (NiMARE) at zero denominators moves every rank
        a = ours.get_map(name, return_type="array")
        b = theirs.get_map(name, return_type="array")
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)


def test_mkda_chi2_inference_maps(halves):
    ss1, ss2, _, _ = halves
    n = ss1.grid.n_voxels
    mask = np.zeros(n, dtype=bool)
    mask[: n // 2] = True
    full = MKDAChi2().fit(ss1, ss2)
    res = MKDAChi2().fit(ss1, ss2, inference_map1=mask, inference_map2=mask)
    z_full = full.get_map("z_desc-association", return_type="array")
    z = res.get_map("z_desc-association", return_type="array")
    np.testing.assert_array_equal(z[mask], z_full[mask])
    assert np.all(z[~mask] == 0)
    assert np.all(res.get_map("p_desc-association", return_type="array")[~mask] == 1)


# ---------------------------------------------------------------------------- ALESubtraction
@pytest.fixture(scope="module")
def subtraction(halves):
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction

    ss1, ss2, n1, n2 = halves
    est = ALESubtraction(n_iters=N_PERM, vfwe_only=False, progress=False)
    ours = est.fit(ss1, ss2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = NiMAREALESubtraction(n_iters=N_PERM, vfwe_only=False).fit(n1, n2)
    return est, ours, theirs


def test_subtraction_voxel_null_is_nimare(subtraction):
    est, ours, theirs = subtraction
    # the same permutations; each ALE value is 1 - exp(.) through the C library's exp, whose
    # last bit depends on the CPU: near 1 an ulp of exp is 2^-53 absolute, twice in a
    # difference of two ALE values (tests/_parity.py)
    assert_within_ulp(
        ours.null_distributions[VOXEL_NULL],
        theirs.estimator.null_distributions_[VOXEL_NULL],
        maxulp=1,
        atol=2 * ULP_BELOW_ONE,
        err_msg=VOXEL_NULL,
    )


def test_subtraction_p_with_nimare_rounding_is_nimare(subtraction, halves):
    """Our permutations, compared with NiMARE's float32 observed difference: NiMARE's p."""
    est, ours, theirs = subtraction
    st = est._perm_
    block = ALEDiffPermutations(
        st["pooled"], st["grid"], st["voxels"], mode="voxel", legacy=True, histogram=False
    )
    g1 = ours.get_map("stat_desc-group1", return_type="array")
    g2 = ours.get_map("stat_desc-group2", return_type="array")
    block.observed = (g1 - g2).astype(np.float64)  # float32 difference, as NiMARE
    out = block(0, N_PERM, SeedInfo(0, "unused"))
    u, low = out["upper"].astype(float), out["lower"].astype(float)
    p = np.clip(2 * np.minimum(u, low) / N_PERM, 1 / N_PERM, 1 - 1 / N_PERM).astype(np.float32)
    np.testing.assert_array_equal(p, theirs.get_map("p_desc-group1MinusGroup2", "array"))


def test_subtraction_ties_are_exact(subtraction):
    """A voxel reached by one study only: the difference is +-MA, never significant."""
    est, ours, _ = subtraction
    pooled = est._perm_["pooled"]
    single = np.flatnonzero(np.diff(pooled.indptr) == 1)
    study = pooled.rows[pooled.indptr[single]]
    members = permutation_members(0, N_PERM, SeedInfo(0, "x"), pooled.n, pooled.n1, True)
    # permutations keeping the study in its observed group reproduce the observed difference
    # (a tie, counted as >= and <=); the others give the opposite sign
    in_group1 = study < pooled.n1
    same = np.where(in_group1, members[study].sum(axis=1), N_PERM - members[study].sum(axis=1))
    expected = np.clip(2 * same / N_PERM, 1 / N_PERM, 1 - 1 / N_PERM).astype(np.float32)
    p = ours.get_map("p_desc-group1MinusGroup2", "array")[single]
    np.testing.assert_array_equal(p, expected)
    assert p.min() > 0.2  # NiMARE's float32 rounding gives 1/n at about half of them


# the subtraction's cluster-forming threshold and cluster nulls against NiMARE's (exact at
# NiMARE's threshold): tests/test_montecarlo_vs_nimare.py


def test_subtraction_fwe_maps(subtraction, halves):
    from nimare.correct import FWECorrector as NiMAREFWE

    est, ours, theirs = subtraction
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fit's nulls are reused: no recomputation
        out = FWECorrector("montecarlo", voxel_thresh=0.001).transform(ours)
    ref = NiMAREFWE("montecarlo", voxel_thresh=0.001).transform(theirs)
    name = f"p_desc-group1MinusGroup2_level-voxel{SUFFIX}"
    np.testing.assert_array_equal(out.get_map(name, "array"), ref.get_map(name, "array"))
    names = [n for n in ref.maps if n.endswith(SUFFIX)]
    assert len(names) == 9 and set(names) <= set(out.maps_names)


def test_subtraction_cluster_pass_only_when_needed(halves):
    ss1, ss2, _, _ = halves
    est = ALESubtraction(n_iters=12, random_state=4, progress=False)
    res = est.fit(ss1, ss2)  # vfwe_only=True: no cluster null yet
    voxel_run = est.montecarlo_["alesubtraction_voxel"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = FWECorrector("montecarlo").transform(res)
    assert est.montecarlo_["alesubtraction_voxel"] is voxel_run  # reused
    assert "alesubtraction_cluster" in est.montecarlo_
    assert f"z_desc-group1MinusGroup2Size_level-cluster{SUFFIX}" in out.maps_names
    assert out.tables["montecarlo" + SUFFIX]["random_state"].iloc[0] == "4"
    with pytest.warns(UserWarning, match="recomputing"):
        FWECorrector("montecarlo", n_iters=8, vfwe_only=True).transform(res)


def test_subtraction_inference_maps_are_one_sided(halves):
    ss1, ss2, _, _ = halves
    est = ALESubtraction(n_iters=N_PERM, progress=False)
    full = est.fit(ss1, ss2)
    obs = est._perm_["observed"]
    upper, lower = est._perm_["upper"], est._perm_["lower"]
    n = ss1.grid.n_voxels
    mask1 = np.zeros(n, dtype=bool)
    mask1[::2] = True
    res = ALESubtraction(n_iters=N_PERM, progress=False).fit(ss1, ss2, inference_map1=mask1)
    p = res.get_map("p_desc-group1MinusGroup2", "array")
    z = res.get_map("z_desc-group1MinusGroup2", "array")
    tested = mask1 & (obs > 0)
    expected = np.maximum(1 / N_PERM, upper[tested] / N_PERM).astype(np.float32)
    np.testing.assert_array_equal(p[tested], expected)
    assert np.all(p[~tested] == 1) and np.all(z[~tested] == 0) and np.all(z[tested] >= 0)
    # the difference map itself is unrestricted
    np.testing.assert_array_equal(
        res.get_map("stat_desc-group1MinusGroup2", "array"),
        full.get_map("stat_desc-group1MinusGroup2", "array"),
    )
    del lower


def test_subtraction_restricted_null_and_main_effects(halves):
    ss1, ss2, _, _ = halves
    n = ss1.grid.n_voxels
    mask = np.zeros(n, dtype=bool)
    mask[n // 3 : 2 * n // 3] = True
    est = ALESubtraction(n_iters=10, restrict_to_inference_mask=True, progress=False)
    res = est.fit(ss1, ss2, inference_map1=mask, inference_map2=mask)
    assert len(est._perm_["voxels"]) == mask.sum()
    assert np.all(res.get_map("p_desc-group1MinusGroup2", "array")[~mask] == 1)
    with pytest.warns(UserWarning, match="recomputing"):  # another seed than the fit's
        out = FWECorrector("montecarlo", n_iters=10, target="all", random_state=2).transform(res)
    for g in ("group1", "group2"):
        assert f"z_desc-{g}Size_level-cluster{SUFFIX}" in out.maps_names
        assert f"values_desc-{g}_level-voxel_corr-fwe_method-montecarlo" in out.null_distributions


# ---------------------------------------------------------------------------- SCALE
def test_scale_fwe(pain_studyset):
    rng = np.random.default_rng(3)
    grid = pain_studyset.grid
    pool = grid.voxel_xyz[rng.choice(grid.n_voxels, 2000, replace=False)]
    est = SCALE(pool, n_iters=25, random_state=5, progress=False)
    res = est.fit(pain_studyset)
    # SCALE has no cluster-level null (as NiMARE): asking for it is refused
    with pytest.raises(NotImplementedError, match="voxel-level"):
        FWECorrector("montecarlo", vfwe_only=False).transform(res)
    # unset, vfwe_only takes SCALE's own default (True), as in NiMARE
    out = FWECorrector("montecarlo", n_iters=25).transform(res)
    null = out.null_distributions[VOXEL_NULL]
    # the fit's 25 iterations are reused: the same draws (stream scale_permutations) as a
    # fresh max-statistic run
    fresh = FWECorrector("montecarlo", vfwe_only=True, n_iters=25, block_size=4)
    est2 = SCALE(pool, n_iters=7, random_state=5, progress=False)
    again = fresh.transform(est2.fit(pain_studyset))
    np.testing.assert_array_equal(again.null_distributions[VOXEL_NULL], null)
    p = out.get_map(f"p_level-voxel{SUFFIX}", "array")
    assert p.min() >= 1 / 25 - 1e-7 and p.max() <= 1 - 1 / 25 + 1e-6

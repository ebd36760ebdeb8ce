"""FWECorrector / FDRCorrector accept NiMARE 0.22.1's parameters with NiMARE's meaning.

``None`` leaves a parameter unset, so the correction method uses its own default; a set
parameter that the receiving method does not take raises ``TypeError`` in both packages.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.meta.cbma import ALE


@pytest.fixture(scope="module")
def nimare_pain(pain_json):
    from nimare.meta.cbma import ALE as NALE
    from nimare.studyset import Studyset as NSS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NALE().fit(NSS(str(pain_json)))


@pytest.fixture(scope="module")
def ours_pain(pain_studyset):
    return ALE(progress=False).fit(pain_studyset)


@pytest.mark.parametrize("name", ["FWECorrector", "FDRCorrector"])
def test_every_nimare_parameter_is_accepted(name):
    import nimare.correct as NC

    ours = inspect.signature(getattr(__import__("nimare_dask.correct").correct, name))
    ref = inspect.signature(getattr(NC, name))
    named = {p for p, v in ref.parameters.items() if v.kind is not v.VAR_KEYWORD}
    assert named <= set(ours.parameters)
    assert any(v.kind is v.VAR_KEYWORD for v in ours.parameters.values())
    for p in named:  # NiMARE's defaults, except n_cores (None: the estimator's, see docstring)
        if p != "n_cores":
            assert ours.parameters[p].default == ref.parameters[p].default, p


def test_voxel_thresh_none_is_the_estimator_default(ours_pain, nimare_pain):
    common = {"n_iters": 3, "random_state": 5, "progress": False}
    out = FWECorrector("montecarlo", voxel_thresh=None, vfwe_only=None, **common).transform(
        ours_pain
    )
    table = out.tables["montecarlo_corr-FWE_method-montecarlo"]
    assert float(table["voxel_thresh"].iloc[0]) == 0.001  # ALE's correct_fwe_montecarlo default
    assert not bool(table["vfwe_only"].iloc[0])
    # the cluster-forming ALE value of p = 0.001 is NiMARE's (its estimator default too)
    thr = nimare_pain.estimator._p_to_summarystat(0.001)
    assert float(table["cluster_forming_threshold"].iloc[0]) == pytest.approx(thr, abs=0)
    assert "z_desc-size_level-cluster_corr-FWE_method-montecarlo" in out.maps_names
    other = FWECorrector("montecarlo", voxel_thresh=0.01, **common).transform(ours_pain)
    table = other.tables["montecarlo_corr-FWE_method-montecarlo"]
    assert float(table["voxel_thresh"].iloc[0]) == 0.01
    assert float(table["cluster_forming_threshold"].iloc[0]) == pytest.approx(
        nimare_pain.estimator._p_to_summarystat(0.01), abs=0
    )


def test_bonferroni_parameters_as_nimare(ours_pain, nimare_pain):
    from nimare.correct import FWECorrector as NFWE

    # unset (None) Monte Carlo parameters and n_cores are fine with Bonferroni, in both
    ref = NFWE("bonferroni", voxel_thresh=None, n_cores=2).transform(nimare_pain)
    out = FWECorrector("bonferroni", voxel_thresh=None, vfwe_only=None, n_cores=2).transform(
        ours_pain
    )
    a = out.get_map("p_corr-FWE_method-bonferroni", "array")
    b = np.asarray(ref.maps["p_corr-FWE_method-bonferroni"])
    # Bonferroni of p maps that agree within NiMARE's CPU-dependent last bit
    np.testing.assert_allclose(a, b, rtol=2**-22)
    # a set Monte Carlo parameter is refused by both (NiMARE validates against its method)
    with pytest.raises(TypeError):
        NFWE("bonferroni", voxel_thresh=0.01).transform(nimare_pain)
    with pytest.raises(TypeError, match="voxel_thresh=0.01"):
        FWECorrector("bonferroni", voxel_thresh=0.01).transform(ours_pain)
    # NiMARE drops n_iters silently outside Monte Carlo; here it is refused, never ignored
    with pytest.raises(TypeError, match="n_iters=10"):
        FWECorrector("bonferroni", n_iters=10).transform(ours_pain)


def test_fdr_alpha_none(pain_studyset):
    from nimare_dask.meta.cbma import MKDAChi2

    ss = pain_studyset
    ids = list(ss.ids)
    res = MKDAChi2(progress=False).fit(ss.slice(ids[:11]), ss.slice(ids[11:]))
    # alpha=None: the estimator method's own default (0.05), exactly as alpha=0.05
    a = FDRCorrector("indep", alpha=None).transform(res)
    b = FDRCorrector("indep", alpha=0.05).transform(res)
    for name in (n for n in a.maps_names if "_corr-FDR" in n):
        np.testing.assert_array_equal(a.get_map(name, "array"), b.get_map(name, "array"))
    assert FDRCorrector(alpha=None).get_params()["alpha"] is None


def test_validation():
    with pytest.raises(ValueError, match="voxel_thresh"):
        FWECorrector("montecarlo", voxel_thresh=1.5)
    with pytest.raises(ValueError, match="n_iters"):
        FWECorrector("montecarlo", n_iters=0)
    with pytest.raises(TypeError, match="random_state"):
        FWECorrector("montecarlo", random_state=1.5)
    with pytest.raises(ValueError, match="alpha"):
        FDRCorrector(alpha=0)
    with pytest.raises(ValueError, match="unsupported"):
        FWECorrector("holm")
    params = FWECorrector("montecarlo", voxel_thresh=None, target="x").get_params()
    assert params["voxel_thresh"] is None and params["target"] == "x"
    # None keywords are dropped (NiMARE), so they never reach the estimator
    assert FWECorrector("montecarlo", target=None).parameters == {}

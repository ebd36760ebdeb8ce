"""ALE predictive FWE cutoffs (``FWECorrector(method="predictive")``) against NiMARE 0.22.1.

NiMARE ships its XGBoost models in the legacy binary format, which the xgboost this suite
installs (>= 3.1) cannot read, so NiMARE's own ``predict_cutoffs`` fails here (NIMARE_FACTS
section 6.4). The oracle therefore runs NiMARE's code with its ``_model_path`` pointed at our
re-saved copies of the same models; that the copies predict what NiMARE's original files do is
checked against values pinned from the original ``.xgb`` files (loaded with xgboost 2.1.4).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from _parity import assert_within_ulp

pytest.importorskip("xgboost")

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, KDA
from nimare_dask.meta.cbma import predictive as P

MODELS = Path(P.__file__).resolve().parents[2] / "resources" / "ml_models"

#: predictions of NiMARE's original legacy-binary models for the pain studyset's features
#: (xgboost 2.1.4, the last series that reads them): exact float32 outputs as float64
PAIN_LEGACY = {"vfwe": 0.021086951717734337, "cfwe": 89.26823425292969, "tfce": 303.8778381347656}


@pytest.fixture
def nimare_predictive(monkeypatch):
    """NiMARE's predictive module, reading the re-saved models (see the module docstring)."""
    import nimare.meta.cbma.predictive as NP

    monkeypatch.setattr(NP, "_model_path", lambda name: MODELS / name.replace(".xgb", ".ubj"))
    return NP


@pytest.fixture(scope="module")
def pain_counts(pain_studyset):
    return len(pain_studyset), pain_studyset.sample_sizes, pain_studyset.foci_counts()


def _random_counts(rng, nexp):
    return nexp, rng.integers(5, 301, nexp).astype(float), rng.integers(0, 151, nexp)


def test_features_equal_nimare(nimare_predictive, pain_counts):
    rng = np.random.default_rng(0)
    cases = [pain_counts, (1, [12.0], [3]), (3, [10, 10, 10], [5, 5, 5])]
    cases += [_random_counts(rng, n) for n in (2, 17, 150)]
    for nexp, nsub, nfoci in cases:
        ours = P.feature_extraction(nexp, nsub, nfoci)
        ref = nimare_predictive.feature_extraction(nexp, nsub, nfoci)
        assert ours.shape == ref.shape == (1, 26)
        # the same numpy/scipy calls on the same float64 inputs
        np.testing.assert_array_equal(ours, ref)


def test_cutoffs_equal_nimare_and_legacy_models(nimare_predictive, pain_counts):
    ours = P.predict_cutoffs(*pain_counts, include_tfce=True)
    ref = nimare_predictive.predict_cutoffs(*pain_counts, include_tfce=True)
    assert ours == ref
    # the re-saved models give exactly what NiMARE's original files give
    assert ours["vfwe"] == PAIN_LEGACY["vfwe"]
    assert ours["tfce"] == PAIN_LEGACY["tfce"]
    assert ours["cfwe"] == round(PAIN_LEGACY["cfwe"]) == 89 and isinstance(ours["cfwe"], int)
    assert set(P.predict_cutoffs(*pain_counts)) == {"vfwe", "cfwe"}
    rng = np.random.default_rng(1)
    for n in (10, 60, 150):
        counts = _random_counts(rng, n)
        assert P.predict_cutoffs(*counts) == nimare_predictive.predict_cutoffs(*counts)


@pytest.mark.parametrize(
    ("nexp", "nsub", "nfoci", "match"),
    [
        (151, [20] * 151, [5] * 151, "151 experiments exceed 150"),
        (2, [20, 301], [5, 5], "301 subjects"),
        (2, [20, 30], [5, 151], "151 foci"),
        (2, [20, 0], [5, 5], "positive"),
        (2, [20, np.nan], [5, 5], "positive, finite"),
        (2, [20, 30], [5, -1], "non-negative"),
        (3, [20, 30], [5, 5], "expected 3 experiments"),
        (2, [20, 30], [5], "equal length"),
    ],
)
def test_out_of_range(nexp, nsub, nfoci, match):
    with pytest.raises(P.PredictiveCutoffError, match=match):
        P.predict_cutoffs(nexp, nsub, nfoci)
    assert issubclass(P.PredictiveCutoffError, ValueError)  # NiMARE's base class


def test_maps_equal_nimare(nimare_predictive, pain_studyset, pain_json):
    from nimare.correct import FWECorrector as NFWE
    from nimare.meta.cbma import ALE as NALE
    from nimare.studyset import Studyset as NSS

    ours = FWECorrector("predictive").transform(ALE().fit(pain_studyset))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NFWE("predictive").transform(NALE().fit(NSS(str(pain_json))))
    names = sorted(n for n in ref.maps if n.endswith("_method-predictive"))
    assert names == sorted(n for n in ours.maps_names if n.endswith("_method-predictive"))
    assert len(names) == 6
    for name in names:
        a, b = ours.get_map(name, "array"), np.asarray(ref.maps[name])
        assert a.dtype == b.dtype == np.float32
        # the surviving voxels are the same set (exact), their values copied from the
        # uncorrected maps, which match NiMARE's within NiMARE's CPU-dependent last bit
        fill = 1.0 if name.startswith("p_") else 0.0
        np.testing.assert_array_equal(a != fill, b != fill, err_msg=name)
        assert_within_ulp(a, b, maxulp=2 if name.startswith("logp") else 1, err_msg=name)
    # voxel level: 203 voxels; cluster level: 2,330 voxels (measured, NiMARE and ours)
    assert (ours.get_map("z_level-voxel_corr-FWE_method-predictive", "array") > 0).sum() == 203
    nd = ref.estimator.null_distributions_
    for key in P.NULL_KEYS.values():
        assert ours.null_distributions[key] == nd[key]
    assert "predicted, not simulated" in ours.description
    assert "frahm2025predictive" in ours.description


def test_dispatch_and_errors(pain_studyset, monkeypatch):
    res = ALE().fit(pain_studyset)
    assert FWECorrector.inspect(res) == ["bonferroni", "montecarlo", "predictive"]
    kda = KDA().fit(pain_studyset)
    assert "predictive" not in FWECorrector.inspect(kda)
    with pytest.raises(NotImplementedError, match="ALE only"):
        FWECorrector("predictive").transform(kda)
    # NiMARE's predictive method takes no keyword: Monte Carlo settings are refused
    with pytest.raises(TypeError, match="voxel_thresh"):
        FWECorrector("predictive", voxel_thresh=0.01).transform(res)
    with pytest.raises(TypeError, match="n_iters"):
        FWECorrector("predictive", n_iters=100).transform(res)
    # an ALE whose kernel width is fixed may have no sample sizes: a clear error
    ss = pain_studyset
    est = ALE(kernel__fwhm=10).fit(ss)
    est_ss = est.estimator.inputs_["studyset"]
    monkeypatch.setattr(
        type(est_ss), "sample_sizes", property(lambda self: np.full(len(self), np.nan))
    )
    with pytest.raises(P.PredictiveCutoffError, match="sample size for every experiment"):
        FWECorrector("predictive").transform(est)


def test_missing_xgboost_names_the_extra(monkeypatch, pain_counts):
    monkeypatch.setitem(sys.modules, "xgboost", None)
    P._booster.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"nimare_dask\[predictive\]"):
            P.predict_cutoffs(*pain_counts)
    finally:
        P._booster.cache_clear()

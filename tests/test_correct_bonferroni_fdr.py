"""Bonferroni and FDR correctors against NiMARE 0.22.1's, and corrector dispatch."""

import dask.array as da
import nimare.correct as nimare_correct
import numpy as np
import pandas as pd
import pytest
from _parity import assert_within_ulp

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.results import Correction, MetaResult

N_VOXELS = 228483  # the shipped 2 mm MNI152 brain mask, same as NiMARE's default masker

CORRECTORS = [
    ("FWE", "bonferroni"),
    ("FDR", "indep"),
    ("FDR", "negcorr"),
]


def _pair(kind, method):
    if kind == "FWE":
        return nimare_correct.FWECorrector(method=method), FWECorrector(method=method)
    return nimare_correct.FDRCorrector(method=method), FDRCorrector(method=method)


@pytest.fixture(scope="module")
def nimare_ale_result(pain_json):
    """NiMARE's ALE on the 21 pain studies (default kernel, approximate null)."""
    from nimare.meta.cbma import ALE
    from nimare.studyset import Studyset as NiMAREStudyset

    return ALE().fit(NiMAREStudyset(str(pain_json)))


def _ours_from(theirs, names=("stat", "p", "z", "logp")):
    return MetaResult(maps={n: theirs.maps[n] for n in names if n in theirs.maps})


@pytest.mark.parametrize(("kind", "method"), CORRECTORS)
def test_matches_nimare_on_ale_pain(nimare_ale_result, kind, method):
    nimare_corrector, corrector = _pair(kind, method)
    theirs = nimare_corrector.transform(nimare_ale_result)
    ours_in = _ours_from(nimare_ale_result)
    ours = corrector.transform(ours_in)
    suffix = f"_corr-{kind}_method-{method}"
    new_theirs = sorted(k for k in theirs.maps if k.endswith(suffix))
    assert sorted(k for k in ours.maps_names if k.endswith(suffix)) == new_theirs
    assert new_theirs == sorted(f"{d}{suffix}" for d in ("p", "z", "logp"))
    for name in new_theirs:
        a = ours.get_map(name, return_type="array")
        assert a.dtype == np.float32
        # Same float32 inputs, same log-space formulas: within 1 float32 ulp (NiMARE's
        # numpy log/exp have a CPU-dependent last bit, tests/_parity.py).
        assert_within_ulp(a, theirs.maps[name], maxulp=1, err_msg=name)
    # Images too: NiMARE's masker order is the C order of the same 2 mm mask.
    name = f"z{suffix}"
    assert_within_ulp(
        ours.get_map(name).get_fdata(), theirs.get_map(name).get_fdata(), maxulp=1, err_msg=name
    )
    # The input is untouched, the output knows its corrector and cites the method.
    assert not any("_corr-" in n for n in ours_in.maps_names)
    assert ours.corrector is corrector and ours.corrector_info["params"]["method"] == method
    assert "citep" in ours.description and "@article" in ours.references


def _edge_maps(n_voxels):
    """p at the float32 floor with deeper logp, NaNs, negative z, p = 1, ties."""
    rng = np.random.default_rng(42)
    p = (rng.uniform(size=n_voxels) ** 4).astype(np.float32)
    p[:50] = np.float32(1.4e-45)  # floored p: the logp map holds the real tail
    logp = -np.log10(p.astype(np.float64))
    logp[:50] = np.linspace(60, 400, 50)  # p of 1e-60 .. 1e-400, beyond float32 (and double)
    p[50:60] = np.float32(1e-20)
    logp[50:60] = 20.0
    p[100:130] = np.nan  # voxels that could not be evaluated
    logp[100:130] = np.nan
    p[200:300] = p[300]  # ties
    logp[200:300] = logp[300]
    p[400] = 1.0
    logp[400] = 0.0
    z = rng.normal(size=n_voxels).astype(np.float32) * 3
    z[:50] = 20
    z[50:60] = -25  # negative z keeps its sign after correction
    z[100:130] = np.nan
    return {"p": p, "z": z, "logp": logp.astype(np.float32)}


@pytest.mark.parametrize(("kind", "method"), CORRECTORS)
def test_matches_nimare_on_edge_cases(kind, method):
    from nimare.meta.cbma import ALE
    from nimare.results import MetaResult as NiMAREResult
    from nimare.utils import get_template

    mask = get_template("mni152_2mm", mask="brain")
    ours_in = MetaResult(maps=_edge_maps(N_VOXELS))
    theirs_in = NiMAREResult(ALE(), mask=mask, maps=_edge_maps(N_VOXELS))
    nimare_corrector, corrector = _pair(kind, method)
    theirs = nimare_corrector.transform(theirs_in)
    ours = corrector.transform(ours_in)
    suffix = f"_corr-{kind}_method-{method}"
    for d in ("p", "z", "logp"):
        a = ours.get_map(f"{d}{suffix}", return_type="array")
        b = theirs.maps[f"{d}{suffix}"]
        # Within 1 float32 ulp (NiMARE's log/exp, tests/_parity.py), NaNs in the same places.
        assert_within_ulp(a, b, maxulp=1, err_msg=d)
    logp = ours.get_map(f"logp{suffix}", return_type="array")
    assert logp[:50].min() > 50  # the tail beyond float32 p survived via logp
    z = ours.get_map(f"z{suffix}", return_type="array")
    assert np.all(z[50:60] < 0) and np.isnan(z[100:130]).all()


def test_bonferroni_by_hand_counts_evaluated_voxels():
    n = N_VOXELS
    p = np.full(n, 0.5, dtype=np.float32)
    p[:10] = 1e-9
    p[10:20] = np.nan
    result = MetaResult(maps={"p": p})
    out = FWECorrector().transform(result).get_map("p_corr-FWE_method-bonferroni", "array")
    # NiMARE's corrector leaves NaN voxels out of m: m = n - 10.
    np.testing.assert_allclose(out[:10], 1e-9 * (n - 10), rtol=1e-6)  # float32 output
    assert np.isnan(out[10:20]).all() and (out[20:] == 1).all()


def test_lazy_input_and_several_p_maps():
    n = N_VOXELS
    rng = np.random.default_rng(3)
    p1 = rng.uniform(size=n).astype(np.float32)
    p2 = rng.uniform(size=n).astype(np.float32) ** 3
    maps = {
        "p_desc-group1": da.from_array(p1, chunks=60000),
        "z_desc-group1": da.from_array(rng.normal(size=n).astype(np.float32), chunks=60000),
        "p_desc-group2": da.from_array(p2, chunks=60000),
    }
    result = MetaResult(maps=maps)
    assert result.is_lazy
    out = FDRCorrector("indep").transform(result)
    assert "p_desc-group1_corr-FDR_method-indep" in out.maps_names
    assert "z_desc-group1_corr-FDR_method-indep" in out.maps_names
    assert "p_desc-group2_corr-FDR_method-indep" in out.maps_names
    assert "z_desc-group2_corr-FDR_method-indep" not in out.maps_names  # no z map to sign
    eager = FDRCorrector("indep").transform(MetaResult(maps={"p_desc-group2": p2}))
    np.testing.assert_array_equal(
        out.get_map("p_desc-group2_corr-FDR_method-indep", "array"),
        eager.get_map("p_desc-group2_corr-FDR_method-indep", "array"),
    )


def test_needs_a_p_map():
    result = MetaResult(maps={"stat": np.zeros(N_VOXELS, np.float32)})
    with pytest.raises(ValueError, match="needs a 'p' map.*stat"):
        FWECorrector().transform(result)


class _FakeEstimator:
    """An estimator exposing its own correction methods, as CBMA estimators will."""

    def __init__(self):
        self.calls = []

    def get_params(self):
        return {"kernel": "ALEKernel", "null_method": "approximate"}

    def correct_fwe_montecarlo(
        self, result, n_iters=5000, voxel_thresh=0.001, random_state=None, n_cores=None
    ):
        self.calls.append(
            {
                "n_iters": n_iters,
                "voxel_thresh": voxel_thresh,
                "random_state": random_state,
                "n_cores": n_cores,
            }
        )
        z = result.get_map("z", return_type="array")
        return Correction(
            maps={"z_level-voxel": z, "logp_desc-size_level-cluster": np.abs(z)},
            tables={"clusters_desc-size_level-cluster": pd.DataFrame({"size": [3, 1]})},
            description="Monte Carlo \\citep{eickhoff2012activation}.",
            null_distributions={"values_level-voxel_corr-fwe_method-montecarlo": np.arange(4.0)},
        )

    def correct_fdr_indep(self, result, alpha=0.05):
        self.calls.append({"alpha": alpha})
        return ({"p": np.ones(N_VOXELS, np.float32)}, {}, "estimator FDR")


@pytest.fixture
def fake_result():
    z = np.linspace(-3, 3, N_VOXELS).astype(np.float32)
    return MetaResult(
        estimator=_FakeEstimator(),
        maps={"z": z, "p": np.full(N_VOXELS, 0.5, np.float32)},
        description="ALE \\citep{turkeltaub2002meta}.",
    )


def test_montecarlo_dispatches_to_estimator(fake_result):
    corrector = FWECorrector("montecarlo", n_iters=10, random_state=7)
    out = corrector.transform(fake_result)
    est = fake_result.estimator
    assert est.calls[-1] == {
        "n_iters": 10,
        "voxel_thresh": 0.001,
        "random_state": 7,
        "n_cores": None,
    }
    assert set(out.maps_names) >= {
        "z_level-voxel_corr-FWE_method-montecarlo",
        "logp_desc-size_level-cluster_corr-FWE_method-montecarlo",
    }
    assert "clusters_desc-size_level-cluster_corr-FWE_method-montecarlo" in out.tables
    assert "values_level-voxel_corr-fwe_method-montecarlo" in out.null_distributions
    assert out.description.startswith("ALE") and "Monte Carlo" in out.description
    assert "turkeltaub2002meta" in out.references and "eickhoff2012activation" in out.references
    assert FWECorrector.inspect(fake_result) == ["bonferroni", "montecarlo"]
    assert FDRCorrector.inspect(fake_result) == ["indep", "negcorr"]


def test_estimator_fdr_takes_precedence_and_gets_alpha(fake_result):
    out = FDRCorrector("indep", alpha=0.01).transform(fake_result)
    assert fake_result.estimator.calls[-1] == {"alpha": 0.01}
    assert (out.get_map("p_corr-FDR_method-indep", "array") == 1).all()
    # negcorr has no estimator method: the generic one runs.
    out = FDRCorrector("negcorr").transform(fake_result)
    assert "z_corr-FDR_method-negcorr" in out.maps_names


def test_keyword_validation(fake_result):
    # vfwe_only set explicitly, but the estimator's method does not take it.
    with pytest.raises(TypeError, match="vfwe_only"):
        FWECorrector("montecarlo", vfwe_only=True).transform(fake_result)
    with pytest.raises(TypeError, match="target"):
        FWECorrector("montecarlo", target="x").transform(fake_result)
    with pytest.raises(TypeError, match="bogus"):
        FWECorrector("bonferroni", bogus=1).transform(fake_result)
    with pytest.raises(TypeError, match="bogus"):
        FDRCorrector("negcorr", bogus=1).transform(fake_result)
    with pytest.raises(ValueError, match="unsupported"):
        FWECorrector("holm")
    with pytest.raises(ValueError, match="unsupported"):
        FDRCorrector("bh")
    with pytest.raises(ValueError, match="n_iters"):
        FWECorrector("montecarlo", n_iters=0)
    with pytest.raises(TypeError, match="MetaResult"):
        FWECorrector().transform({"p": 1})


def test_montecarlo_without_null_model():
    result = MetaResult(maps={"p": np.full(N_VOXELS, 0.5, np.float32)})
    with pytest.raises(NotImplementedError, match="Monte Carlo engine"):
        FWECorrector("montecarlo").transform(result)

"""FDR/Bonferroni corrections and the Jackknife / FocusCounter diagnostics on IBMA results, against
NiMARE 0.22.1 on the simulated image studysets of ``_ibma_data`` (dependent images, missing
regions, a small 4 mm box grid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _ibma_data import simulate
from _parity import quiet as _quiet

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.diagnostics import FocusCounter, Jackknife
from nimare_dask.meta import ibma

ESTIMATORS = ("DerSimonianLaird", "Stouffers")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("ibma_diag"), seed=0)


@pytest.fixture(scope="module")
def fits(sim):
    """``{name: (ours, nimare's)}`` results of each estimator."""
    import nimare.meta.ibma as ni

    ours_ss, dset, mask = sim
    out = {}
    for name in ESTIMATORS:
        ours = _quiet(getattr(ibma, name)(mask=mask).fit, ours_ss)
        ref = _quiet(getattr(ni, name)(mask=mask).fit, dset)
        out[name] = (ours, ref)
    return out


def _arr(result, name) -> np.ndarray:
    return np.asarray(result.get_map(name, return_type="array"))


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize(
    "kind", [("fdr", "indep"), ("fdr", "negcorr"), ("fwe", "bonferroni")], ids="-".join
)
def test_corrected_maps_match_nimare(fits, name, kind):
    from nimare.correct import FDRCorrector as NiFDR
    from nimare.correct import FWECorrector as NiFWE

    ours, ref = fits[name]
    if kind[0] == "fdr":
        got = FDRCorrector(method=kind[1]).transform(ours)
        want = _quiet(NiFDR(method=kind[1]).transform, ref)
    else:
        got = FWECorrector(method="bonferroni").transform(ours)
        want = _quiet(NiFWE(method="bonferroni").transform, ref)
    corrected = [n for n in want.maps if "_corr-" in n]
    assert sorted(corrected) == sorted(n for n in got.maps_names if "_corr-" in n)
    assert len(corrected) == 3  # p, z, logp
    for map_name in corrected:
        a, b = _arr(got, map_name), want.get_map(map_name, return_type="array")
        assert a.dtype == np.float32 and np.isfinite(b).sum() > 100
        # the uncorrected maps are identical (test_ibma.py); the corrections are float64
        # arithmetic stored as float32, so the maps agree to float32 rounding (2 ulp)
        np.testing.assert_allclose(a, b, rtol=2.5e-7, atol=0, equal_nan=True, err_msg=map_name)


def _assert_tables_equal(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    assert list(got.columns) == list(want.columns), what
    assert len(got) == len(want), what
    for col in want.columns:
        g, w = got[col].to_numpy(), want[col].to_numpy()
        if w.dtype.kind in "OUS" and not all(isinstance(v, float) for v in w):
            assert [str(v) for v in g] == [str(v) for v in w], f"{what}: {col}"
        else:
            # per-cluster means of float32 ratios; NiMARE sums them in float32 in the same
            # voxel order, so agreement is to float32 rounding of values of order 1
            np.testing.assert_allclose(
                np.asarray(g, float), np.asarray(w, float), rtol=1e-5, atol=1e-6, err_msg=what
            )


@pytest.mark.parametrize("name", ESTIMATORS)
def test_jackknife_tables_match_nimare(fits, name):
    from nimare.diagnostics import Jackknife as NiJackknife

    ours, ref = fits[name]
    params = {"target_image": "z", "target_threshold": 1.65, "cluster_threshold": 3}
    got = Jackknife(**params).transform(ours)
    want = _quiet(NiJackknife(**params).transform, ref)
    names = sorted(k for k, v in want.tables.items() if v is not None)
    assert names and sorted(got.tables) == names
    counts = [k for k in names if "_tab-counts" in k]
    assert counts  # the simulated effect makes clusters
    for key in names:
        _assert_tables_equal(got.tables[key], want.tables[key], key)
    # Stouffers is two-sided: both tails in one merged table (NiMARE merges IBMA tails)
    if name == "Stouffers":
        assert counts == ["z_diag-Jackknife_tab-counts"]
        assert any(c.startswith("NegativeTail") for c in got.tables[counts[0]].columns)
    labels = [k for k in want.maps if k.startswith("label_")]
    assert sorted(labels) == sorted(k for k in got.maps_names if k.startswith("label_"))
    for key in labels:
        np.testing.assert_array_equal(_arr(got, key), want.get_map(key, return_type="array"))
    assert ours.tables == {} or "z_tab-clust" not in ours.tables  # input left alone


def test_jackknife_on_corrected_map_with_studyset_given(fits, sim):
    """As the workflow runs it: on the FDR map, with the (full) studyset passed explicitly."""
    from nimare.correct import FDRCorrector as NiFDR
    from nimare.diagnostics import Jackknife as NiJackknife

    ours, ref = fits["DerSimonianLaird"]
    target = "z_corr-FDR_method-indep"
    got = Jackknife(target_image=target, target_threshold=1.65, cluster_threshold=2).transform(
        FDRCorrector(method="indep").transform(ours), studyset=sim[0]
    )
    want = _quiet(
        NiJackknife(target_image=target, target_threshold=1.65, cluster_threshold=2).transform,
        _quiet(NiFDR(method="indep").transform, ref),
    )
    # NiMARE's transform adds to the result it is given (earlier tests' tables are there too)
    names = sorted(k for k, v in want.tables.items() if v is not None and k.startswith(target))
    assert len(names) == 2 and sorted(got.tables) == names
    for key in names:
        _assert_tables_equal(got.tables[key], want.tables[key], key)


def test_jackknife_refuses_two_analyses(tmp_path):
    """NiMARE 0.22.1: a refit without one of two analyses cannot be fitted: ValueError."""
    from nimare.diagnostics import Jackknife as NiJackknife
    from nimare.meta.ibma import Stouffers as NiStouffers

    ours_ss, dset, mask = simulate(tmp_path, seed=5, n_studies=2, max_per_study=1, missing=False)
    ours = _quiet(ibma.Stouffers(mask=mask).fit, ours_ss)
    ref = _quiet(NiStouffers(mask=mask).fit, dset)
    with pytest.raises(ValueError, match="at least 3 analyses"):
        NiJackknife(target_image="z").transform(ref)
    with pytest.raises(ValueError, match="at least 3 analyses"):
        Jackknife(target_image="z").transform(ours)


def test_focuscounter_refuses_image_based_results(fits):
    from nimare.diagnostics import FocusCounter as NiFocusCounter

    ours, ref = fits["Stouffers"]
    # NiMARE raises once a cluster is found ("only works for coordinate-based meta-analyses")
    with pytest.raises(ValueError, match="coordinate-based"):
        _quiet(NiFocusCounter(target_image="z", target_threshold=1.65).transform, ref)
    # we raise the same error up front, whatever the clusters
    for thr in (1.65, 1e6):
        with pytest.raises(ValueError, match="coordinate-based"):
            FocusCounter(target_image="z", target_threshold=thr).transform(ours)

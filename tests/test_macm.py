"""MACM: vectorised study selection, ALE on the selection, many seeds in one graph.

Fast tests on the NIDM pain studyset (21 studies with sample sizes); the whole-database
amygdala MACM is marked ``database``.

Tolerances: a single seed is exactly ``ALE().fit(selection)`` (same code path). Several seeds
computed together sum ``log(1 - MA)`` with a matrix product instead of the kernel's reduction,
so ALE values agree to float32 rounding (atol 1e-8 on values up to ~0.1) and p/z are equal
except where a value sits on a histogram-bin edge (checked to rtol 1e-5 on z).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, MKDADensity
from nimare_dask.workflows import amygdala_roi, macm, select_studies

SEEDS = [
    np.array([[0.0, 10.0, 40.0]]),
    (np.array([[-40.0, -20.0, 10.0]]), 15.0),
    np.array([[40.0, -20.0, 10.0], [0.0, 0.0, 0.0]]),
]


def test_select_studies_is_the_studyset_queries(pain_studyset, nimare_test_data):
    mask = nimare_test_data / "amygdala_roi.nii.gz"
    got = select_studies(pain_studyset, [*SEEDS, str(mask)], r=20)
    assert list(got[0]) == sorted(pain_studyset.get_studies_by_coordinate(SEEDS[0], 20))
    assert list(got[1]) == sorted(pain_studyset.get_studies_by_coordinate(SEEDS[1][0], 15.0))
    assert list(got[2]) == sorted(pain_studyset.get_studies_by_coordinate(SEEDS[2], 20))
    assert list(got[3]) == sorted(pain_studyset.get_studies_by_mask(str(mask)))


def test_selection_matches_nimare(pain_json, pain_studyset):
    from nimare.studyset import Studyset as NiMAREStudyset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NiMAREStudyset(str(pain_json))
        theirs = sorted(ref.get_studies_by_coordinate(SEEDS[0], r=20))
    assert list(select_studies(pain_studyset, SEEDS[0], r=20)[0]) == theirs


def test_single_seed_is_ale_on_the_selection(pain_studyset):
    res = macm(pain_studyset, SEEDS[0], r=20)
    ids = pain_studyset.get_studies_by_coordinate(SEEDS[0], 20)
    ref = ALE().fit(pain_studyset.slice(ids))
    for name in ("stat", "p", "z", "logp"):
        np.testing.assert_array_equal(res.get_map(name, "array"), ref.get_map(name, "array"))
    assert list(res.tables["selected_studies"]["id"]) == sorted(ids)
    assert res.description.startswith("A meta-analytic connectivity modeling (MACM")
    assert f"{len(ids)} experiments" in res.description
    assert "activation likelihood estimation" in res.description
    assert "laird2009investigating" in res.references


def test_many_seeds_share_one_graph(pain_studyset):
    shared = macm(pain_studyset, SEEDS, r=20)
    separate = macm(pain_studyset, SEEDS, r=20, share_ma=False)
    assert len(shared) == len(separate) == 3
    for a, b in zip(shared, separate, strict=True):
        np.testing.assert_allclose(
            a.get_map("stat", "array"), b.get_map("stat", "array"), atol=1e-8
        )
        np.testing.assert_allclose(a.get_map("z", "array"), b.get_map("z", "array"), rtol=1e-5)
        assert list(a.tables["selected_studies"]["id"]) == list(b.tables["selected_studies"]["id"])
        # the estimator kept in the result knows its null (for thresholds and correctors)
        assert a.estimator.summarystat_threshold(0.001) == pytest.approx(
            b.estimator.summarystat_threshold(0.001)
        )


def test_corrector_and_other_estimators(pain_studyset):
    res = macm(
        pain_studyset,
        SEEDS[:2],
        r=20,
        estimator=MKDADensity(),
        corrector=FWECorrector(method="bonferroni"),
    )
    assert all("p_corr-FWE_method-bonferroni" in r.maps_names for r in res)
    ids = pain_studyset.get_studies_by_coordinate(SEEDS[1][0], 15.0)
    ref = MKDADensity().fit(pain_studyset.slice(ids))
    np.testing.assert_array_equal(res[1].get_map("z", "array"), ref.get_map("z", "array"))


def test_empty_selection_raises(pain_studyset):
    with pytest.raises(ValueError, match="no experiment has a focus"):
        macm(pain_studyset, np.array([[0.0, 60.0, -60.0]]), r=2)
    with pytest.raises(TypeError, match="Studyset"):
        macm(object(), SEEDS[0])


def test_amygdala_roi_resource(nimare_test_data):
    img = amygdala_roi()
    assert img.shape == (91, 109, 91) and int((np.asarray(img.dataobj) > 0).sum()) == 366
    import nibabel as nib

    from nimare_dask.space import get_grid

    # the same voxels in world space as NiMARE's LAS file, on the RAS grid (no resampling)
    ref = nib.load(str(nimare_test_data / "amygdala_roi.nii.gz"))
    np.testing.assert_array_equal(img.affine, get_grid().affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(ref.dataobj)[::-1] > 0)


@pytest.mark.database
def test_amygdala_macm_on_neurosynth(shared_data):
    """The whole-database selection agrees with NiMARE's Studyset query (1,404 studies)."""
    from nimare.io import convert_neurosynth_to_studyset as ref_convert

    from nimare_dask.io import convert_neurosynth_to_studyset

    folder = shared_data / "neurosynth-v7"
    coords = folder / "data-neurosynth_version-7_coordinates.tsv.gz"
    meta = folder / "data-neurosynth_version-7_metadata.tsv.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = convert_neurosynth_to_studyset(coords, meta)
        ref = ref_convert(str(coords), str(meta))
        theirs = sorted(ref.get_studies_by_mask(amygdala_roi()))
    ours = select_studies(ss, amygdala_roi())[0]
    assert len(ours) == 1404
    assert list(ours) == theirs
    res = macm(ss, amygdala_roi(), estimator=ALE(kernel__fwhm=10))
    assert res.tables["selected_studies"].shape[0] == 1404
    assert float(res.get_map("z", "array").max()) > 8  # the amygdala itself


# ------------------------------------------------------------- seeds together = the estimator's fit
@pytest.mark.parametrize("chunks", [None, 4])
def test_many_seeds_are_bit_identical_to_single_seed_and_ale(pain_studyset, monkeypatch, chunks):
    """Several seeds in one graph give, bit for bit, each seed's own MACM and the ALE fit of its
    selection (the same tasks: ALE's own chunked pass), with one dask.compute for all seeds."""
    import sys

    macm_module = sys.modules["nimare_dask.workflows.macm"]  # the package exports the function
    calls = []
    real_compute = macm_module.compute
    monkeypatch.setattr(
        macm_module, "compute", lambda *a, **k: calls.append(len(a)) or real_compute(*a, **k)
    )
    together = macm(pain_studyset, SEEDS, r=20, estimator=ALE(chunks=chunks))
    assert calls == [len(SEEDS)]  # one compute, one lazy pass per seed
    selections = select_studies(pain_studyset, SEEDS, r=20)
    for seed, ids, res in zip(SEEDS, selections, together, strict=True):
        alone = macm(pain_studyset, seed, r=20, estimator=ALE(chunks=chunks))
        ref = ALE(chunks=chunks).fit(pain_studyset.slice(ids))
        for name in ("stat", "p", "z", "logp"):
            got = res.get_map(name, "array")
            np.testing.assert_array_equal(got, alone.get_map(name, "array"), err_msg=name)
            np.testing.assert_array_equal(got, ref.get_map(name, "array"), err_msg=name)
        assert res.estimator.summarystat_threshold(0.001) == ref.estimator.summarystat_threshold(
            0.001
        )
        assert list(res.tables["selected_studies"]["id"]) == list(ids)


def test_many_seeds_with_a_corrector_and_mkda(pain_studyset):
    """Corrected and MKDADensity seeds also share one graph and equal the separate fits."""
    est = MKDADensity()
    res = macm(
        pain_studyset, SEEDS, r=20, estimator=est, corrector=FWECorrector(method="bonferroni")
    )
    for ids, r in zip(select_studies(pain_studyset, SEEDS, r=20), res, strict=True):
        ref = FWECorrector(method="bonferroni").transform(
            MKDADensity().fit(pain_studyset.slice(ids))
        )
        for name in ("stat", "z", "p_corr-FWE_method-bonferroni"):
            np.testing.assert_array_equal(r.get_map(name, "array"), ref.get_map(name, "array"))
    assert not hasattr(est, "result_")  # the estimator given is not fitted: copies are


def test_macm_text_states_the_selection_once(pain_studyset):
    res = macm(pain_studyset, SEEDS[0], r=20)
    ids = select_studies(pain_studyset, SEEDS[0], r=20)[0]
    n_foci = int(pain_studyset.slice(ids).foci_counts().sum())
    text = res.description
    assert text.count(f"{n_foci} foci from {len(ids)} experiments") == 1
    assert "participants" in text  # the ALE kernel's sample sizes, kept in the one sentence
    assert "within 20 mm of 1 seed coordinate." in text and "coordinate(s)" not in text
    assert "an ALE kernel" in text and "a(n)" not in text

"""NiMARE 0.22.1's workflow API (nimare_dask.workflows, reports.base) against NiMARE (the oracle).

Deterministic corrections (Bonferroni, FDR) are compared map for map; ALESubtraction's label
permutations with ``random_state=None`` are deterministic in NiMARE (seed = iteration index)
and in ours, so the contrast workflow is compared exactly too. Tolerances:
* p/z/logp maps: float32 precision (rtol 1e-6), as tests/test_meta_ale.py;
* ALE stat: atol 1e-8 (float64 sums of float32 MA terms in another order);
* Jackknife counts: atol 1e-6 (differences of float64 sums; measured max 6e-8, see
  tests/test_diagnostics.py).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nimare.studyset import Studyset as NiMAREStudyset

from nimare_dask import Studyset
from nimare_dask.workflows import (
    CBMAWorkflow,
    ContrastWorkflow,
    IBMAWorkflow,
    PairwiseCBMAWorkflow,
    conjunction_analysis,
    macm_workflow,
)

P_RTOL = 1e-6
JACKKNIFE_ATOL = 1e-6


def _assert_maps(ours, ref, names=None):
    # NiMARE lists a diagnostic's label map even when there are no clusters, with no value
    names = sorted(n for n in ref.maps if ref.maps[n] is not None) if names is None else names
    assert set(names) <= set(ours.maps_names), set(names) - set(ours.maps_names)
    for name in names:
        a = np.asarray(ours.get_map(name, return_type="array"), dtype=np.float64)
        b = np.asarray(ref.get_map(name, return_type="array"), dtype=np.float64)
        if name == "chi2_desc-association":
            # README "Differences": NiMARE sets chi2 = 2.0 at a zero denominator, we set 0
            zero_den = (b == 2.0) & (a == 0.0)
            a, b = a[~zero_den], b[~zero_den]
        atol = 1e-8 if name.startswith("stat") else 0  # see module docstring
        np.testing.assert_allclose(a, b, rtol=P_RTOL, atol=atol, err_msg=name)


def _assert_tables(ours, ref):
    # a counts table NiMARE leaves None (no clusters) is compared by the cluster table only
    assert {k for k, v in ref.tables.items() if v is not None} <= set(ours.tables)
    for key, theirs in ref.tables.items():
        if theirs is None:
            continue
        mine = ours.tables[key]
        assert list(mine.columns) == list(theirs.columns), key
        if "_tab-clust" in key:
            pd.testing.assert_frame_equal(
                mine.astype(str).reset_index(drop=True),
                theirs.astype(str).reset_index(drop=True),
                check_dtype=False,
            )
        elif "_tab-counts" in key:
            assert list(mine["id"]) == list(theirs["id"]), key
            np.testing.assert_allclose(
                mine.drop(columns="id").to_numpy(float),
                theirs.drop(columns="id").to_numpy(float),
                rtol=0,
                atol=JACKKNIFE_ATOL,
                err_msg=key,
            )


@pytest.fixture(scope="module")
def groups(pain_json):
    ref = NiMAREStudyset(str(pain_json))
    ours = Studyset(pain_json)
    ids = list(ref.ids)
    return (
        (ours.slice(ids[:11]), ours.slice(ids[11:])),
        (ref.slice(ids[:11]), ref.slice(ids[11:])),
    )


def test_cbma_workflow_bonferroni_matches_nimare(pain_json, tmp_path):
    from nimare.workflows import CBMAWorkflow as NiMARECBMAWorkflow

    ref = NiMARECBMAWorkflow(corrector="bonferroni", output_dir=str(tmp_path / "ref")).fit(
        NiMAREStudyset(str(pain_json))
    )
    ours = CBMAWorkflow(corrector="bonferroni", output_dir=tmp_path / "ours").fit(
        Studyset(pain_json)
    )
    _assert_maps(ours, ref)
    _assert_tables(ours, ref)
    written = {p.name for p in (tmp_path / "ours").iterdir()}
    assert {p.name for p in (tmp_path / "ref").iterdir()} == written
    assert (tmp_path / "ours" / "boilerplate.txt").read_text().strip()


def test_cbma_workflow_objects_and_defaults(pain_studyset):
    from nimare_dask.correct import FDRCorrector, FWECorrector
    from nimare_dask.diagnostics import FocusCounter, Jackknife
    from nimare_dask.meta.cbma import ALE, MKDAChi2

    wf = CBMAWorkflow()
    assert isinstance(wf.estimator, ALE)
    assert isinstance(wf.corrector, FWECorrector) and wf.corrector.method == "montecarlo"
    assert isinstance(wf.diagnostics[0], Jackknife)
    assert wf.diagnostics[0].target_threshold == 1.65
    assert wf.diagnostics[0].cluster_threshold == 10
    # an object's explicit setting wins; defaults get the workflow's
    fc = FocusCounter(cluster_threshold=3)
    wf = CBMAWorkflow(estimator=ALE, corrector=FDRCorrector(), diagnostics=[fc], n_cores=2)
    assert wf.diagnostics[0].cluster_threshold == 3 and wf.diagnostics[0].target_threshold == 1.65
    assert fc.target_threshold is None  # the caller's object is not modified
    assert wf.estimator.n_cores == 2
    with pytest.raises(AttributeError, match="pairwise"):
        CBMAWorkflow(estimator=MKDAChi2())
    with pytest.raises(ValueError, match="must be"):
        CBMAWorkflow(estimator="nope")
    empty = pain_studyset.slice(pain_studyset.ids[:2])
    with pytest.raises(ValueError, match="drop_invalid"):
        from nimare_dask.studyset import Studyset as SS

        no_foci = SS.from_tables(
            empty._analyses.drop(columns="sample_size"), empty._points.iloc[:0]
        )
        CBMAWorkflow(corrector="bonferroni").fit(no_foci, drop_invalid=False)


def test_pairwise_workflow_fdr_matches_nimare(groups):
    """MKDAChi2 + FDR. README "Differences": at voxels with a zero association denominator
    NiMARE sets chi2 = 2.0 and we set 0, which moves every association map there and the
    FDR ranks of the corrected association maps; those maps are compared in test_meta_mkda.
    """
    from nimare.workflows import PairwiseCBMAWorkflow as NiMAREPairwise

    (o1, o2), (r1, r2) = groups
    ref = NiMAREPairwise(corrector="fdr").fit(r1, r2)
    ours = PairwiseCBMAWorkflow(corrector="fdr").fit(o1, o2)
    names = [n for n in ref.maps if ref.maps[n] is not None and "association" not in n]
    assert any("_corr-FDR_method-indep" in n for n in names)
    _assert_maps(ours, ref, sorted(names))
    _assert_tables(ours, ref)


def test_pairwise_workflow_subtraction_bonferroni_matches_nimare(groups):
    """Same maps (names) as NiMARE; the deterministic ones equal. The permutation p-values of
    ALESubtraction are compared with NiMARE's in tests/test_fwe_pairwise.py."""
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction
    from nimare.workflows import PairwiseCBMAWorkflow as NiMAREPairwise

    from nimare_dask.meta.cbma import ALESubtraction

    (o1, o2), (r1, r2) = groups
    ref = NiMAREPairwise(
        estimator=NiMAREALESubtraction(n_iters=50), corrector="bonferroni", diagnostics=[]
    ).fit(r1, r2)
    ours = PairwiseCBMAWorkflow(
        estimator=ALESubtraction(n_iters=50), corrector="bonferroni", diagnostics=[]
    ).fit(o1, o2)
    assert set(ours.maps_names) == set(ref.maps)
    groups = [f"{m}_desc-group{g}" for g in (1, 2) for m in ("stat", "p", "z", "logp")]
    _assert_maps(ours, ref, ["stat_desc-group1MinusGroup2", *groups])


def test_contrast_workflow_matches_nimare(groups):
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction
    from nimare.workflows import ContrastWorkflow as NiMAREContrast

    from nimare_dask.meta.cbma import ALESubtraction

    (o1, o2), (r1, r2) = groups
    ref = NiMAREContrast(pairwise_estimator=NiMAREALESubtraction(n_iters=50)).fit(r1, r2)
    ours = ContrastWorkflow(pairwise_estimator=ALESubtraction(n_iters=50)).fit(o1, o2)
    assert set(ours.maps_names) == set(ref.maps)
    _assert_maps(ours, ref, ["z_desc-group1MainEffect", "z_desc-group2MainEffect"])
    _assert_maps(ours, ref, ["z_desc-conjunction", "stat_desc-group1MinusGroup2"])
    # The permutation p of the gated subtraction: the same permutations, but a difference
    # that ties its null value in one float library and not the other moves a count by one
    # (tests/test_fwe_pairwise.py); measured 30 of 228,483 voxels at n_iters=50. Where the
    # pairwise p agrees, the thresholded contrast maps must agree exactly.
    p_ours = ours.get_map("p_desc-group1MinusGroup2", return_type="array")
    p_ref = ref.get_map("p_desc-group1MinusGroup2", return_type="array")
    same = p_ours == p_ref
    assert same.mean() > 0.999
    for name in ("p_desc-contrast", "z_desc-contrast", "logp_desc-contrast"):
        a = ours.get_map(name, return_type="array")[same]
        b = ref.get_map(name, return_type="array")[same]
        np.testing.assert_allclose(a, b, rtol=P_RTOL, atol=0, err_msg=name)
        assert (ours.get_map(name, return_type="array") != 0).any() or name.startswith("p")
    pd.testing.assert_frame_equal(
        ours.tables["contrast_tab-metadata"], ref.tables["contrast_tab-metadata"]
    )


def test_conjunction_matches_nimare(tmp_path):
    from nimare.workflows import conjunction_analysis as nimare_conjunction

    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    imgs = [nib.Nifti1Image(rng.normal(size=(6, 7, 8)), affine) for _ in range(3)]
    paths = []
    for i, img in enumerate(imgs):
        paths.append(str(tmp_path / f"img{i}.nii.gz"))
        img.to_filename(paths[-1])
    ref = nimare_conjunction(paths).get_fdata()
    ours = conjunction_analysis(paths).get_fdata()
    np.testing.assert_array_equal(ours, ref)  # copies of input values or 0: exact
    with pytest.raises(ValueError, match="more than one"):
        conjunction_analysis(paths[:1])


def _ball_mask(path, center, radius):
    affine = np.array([[2, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1.0]])
    ijk = np.indices((91, 109, 91)).reshape(3, -1).T
    xyz = ijk * 2 + affine[:3, 3]
    inside = (np.linalg.norm(xyz - np.asarray(center), axis=1) <= radius).reshape(91, 109, 91)
    nib.Nifti1Image(inside.astype(np.uint8), affine).to_filename(path)
    return path


def test_macm_workflow_matches_nimare(nimare_resources, tmp_path):
    from nimare.workflows import macm_workflow as nimare_macm

    dset = nimare_resources / "nidm_pain_dset.json"
    roi = _ball_mask(tmp_path / "roi.nii.gz", (38, 4, 2), 12)  # the ALE peak of the pain set
    nimare_macm(str(dset), str(roi), output_dir=str(tmp_path / "ref"), n_iters=5)
    ours = macm_workflow(dset, roi, output_dir=tmp_path / "ours", n_iters=5)
    ref_files = {p.name for p in (tmp_path / "ref").iterdir()}
    assert ref_files <= {p.name for p in (tmp_path / "ours").iterdir()}
    for name in ("nidm_pain_dset_stat.nii.gz", "nidm_pain_dset_z.nii.gz"):
        a = nib.load(tmp_path / "ours" / name).get_fdata()
        b = nib.load(tmp_path / "ref" / name).get_fdata()
        np.testing.assert_allclose(a, b, rtol=P_RTOL, atol=1e-8, err_msg=name)
    ours_text = (tmp_path / "ours" / "nidm_pain_dset_boilerplate.txt").read_text()
    ref_text = (tmp_path / "ref" / "nidm_pain_dset_boilerplate.txt").read_text()
    # the selection sentence (counts of foci and experiments) is NiMARE's, word for word
    assert ref_text.split(". The resulting")[1][:80] in ours_text
    assert "z_level-voxel_corr-FWE_method-montecarlo" in ours.maps_names


def test_run_reports_writes_html(pain_studyset, tmp_path):
    from nimare_dask.reports.base import Report, run_reports

    res = CBMAWorkflow(corrector="bonferroni").fit(pain_studyset)
    path = run_reports(res, tmp_path / "rep")
    assert path == tmp_path / "rep" / "report.html"
    html = path.read_text()
    assert "<html" in html.lower() and "z_corr-FWE_method-bonferroni" in html
    other = Report(res, tmp_path / "rep2", out_filename="x.html").generate_report()
    assert other.name == "x.html"


def test_ibma_workflow_resolves_its_parts_as_nimare():
    """As NiMARE's, the constructor turns names into objects (fits: tests/test_ibma_workflow.py)."""
    from nimare.workflows import IBMAWorkflow as NiIBMAWorkflow

    ours = IBMAWorkflow(estimator="stouffers", corrector="fdr", output_dir=None)
    ref = NiIBMAWorkflow(estimator="stouffers", corrector="fdr", output_dir=None)
    assert type(ours.estimator).__name__ == type(ref.estimator).__name__ == "Stouffers"
    assert type(ours.corrector).__name__ == type(ref.corrector).__name__ == "FDRCorrector"
    assert ours.voxel_thresh == ref.voxel_thresh == 1.65

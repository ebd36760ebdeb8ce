"""IBMAWorkflow against NiMARE 0.22.1's: the same maps, tables and files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _ibma_data import simulate
from _parity import quiet as _quiet

from nimare_dask.correct import FDRCorrector, FWECorrector
from nimare_dask.diagnostics import Jackknife
from nimare_dask.meta import ibma
from nimare_dask.workflows import IBMAWorkflow


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("ibma_wf"), seed=1)


def _compare_outputs(got_res, want_res, got_dir, want_dir, mask_img):
    # Where a diagnostic finds no cluster NiMARE stores None for its label map and counts
    # table (and writes no file); we store an all-zero label map and an id-only counts table
    # (documented in nimare_dask/diagnostics/base.py): those are checked separately.
    none_maps = sorted(k for k, v in want_res.maps.items() if v is None)
    none_tables = sorted(k for k, v in want_res.tables.items() if v is None)
    extra_maps = []
    for name in none_maps:
        assert name in got_res.maps_names
        assert not np.asarray(got_res.get_map(name, return_type="array")).any()
        extra_maps.append(name)
    extra_tables = []
    for name in none_tables:
        (ours,) = [k for k in got_res.tables if k.startswith(name)]
        assert list(got_res.tables[ours].columns) == ["id"]
        extra_tables.append(ours)
    # maps: same names; float32 closed forms and corrections agree to float32 rounding
    want_maps = sorted(k for k, v in want_res.maps.items() if v is not None)
    assert sorted(set(got_res.maps_names) - set(extra_maps)) == want_maps
    for name in want_maps:
        a = np.asarray(got_res.get_map(name, return_type="array"), dtype=np.float64)
        b = np.asarray(want_res.get_map(name, return_type="array"), dtype=np.float64)
        # corrected maps: float64 arithmetic stored as float32 (2 ulp); the rest are identical
        np.testing.assert_allclose(a, b, rtol=2.5e-7, atol=0, equal_nan=True, err_msg=name)
    # tables: same names and values (Jackknife means of float32 ratios: float32 rounding)
    want_tables = sorted(k for k, v in want_res.tables.items() if v is not None)
    assert sorted(set(got_res.tables) - set(extra_tables)) == want_tables
    for name in want_tables:
        g, w = got_res.tables[name], want_res.tables[name]
        assert list(g.columns) == list(w.columns), name
        assert len(g) == len(w), name
        for col in w.columns:
            if pd.api.types.is_numeric_dtype(w[col]) and pd.api.types.is_numeric_dtype(g[col]):
                np.testing.assert_allclose(
                    g[col].to_numpy(float), w[col].to_numpy(float), rtol=1e-5, atol=1e-6
                )
            else:
                assert [str(v) for v in g[col]] == [str(v) for v in w[col]], (name, col)
    # files: the same names (plus the no-cluster extras above); NIfTI maps equal in the mask
    extras = {f"{n}.nii.gz" for n in extra_maps} | {f"{n}.tsv" for n in extra_tables}
    got_files = sorted(p.name for p in got_dir.iterdir())
    want_files = sorted(p.name for p in want_dir.iterdir())
    assert sorted(set(got_files) - extras) == want_files
    assert extras <= set(got_files)
    inside = mask_img.get_fdata() > 0
    for fname in want_files:
        if fname.endswith(".nii.gz"):
            a = nib.load(got_dir / fname).get_fdata()[inside]
            b = nib.load(want_dir / fname).get_fdata()[inside]
            # NaN is written as 0 by both; same tolerance as the maps
            np.testing.assert_allclose(
                np.nan_to_num(a), np.nan_to_num(b), rtol=2.5e-7, atol=0, err_msg=fname
            )
        elif fname.endswith(".tsv"):
            g = pd.read_csv(got_dir / fname, sep="\t")
            w = pd.read_csv(want_dir / fname, sep="\t")
            assert list(g.columns) == list(w.columns) and len(g) == len(w), fname
    text = (got_dir / "boilerplate.txt").read_text()
    assert text.startswith("An image-based meta-analysis was performed")
    assert (got_dir / "references.bib").read_text().strip()
    return extras


def test_default_workflow_matches_nimare(sim, tmp_path):
    """Stouffers, FDR (indep), Jackknife on z_corr-FDR_method-indep at 1.65, clusters >= 10."""
    from nimare.workflows import IBMAWorkflow as NiIBMAWorkflow

    ours_ss, dset, mask = sim
    # NiMARE's default Stouffers has no mask parameter of its own: both use the data's mask
    got = _quiet(IBMAWorkflow(cluster_threshold=2, output_dir=tmp_path / "ours").fit, ours_ss)
    want = _quiet(NiIBMAWorkflow(cluster_threshold=2, output_dir=tmp_path / "ni").fit, dset)
    assert type(got.estimator).__name__ == "Stouffers"
    assert [type(d).__name__ for d in got.diagnostics] == ["Jackknife"]
    assert got.diagnostics[0].target_image == "z_corr-FDR_method-indep"
    assert got.diagnostics[0].target_threshold == 1.65
    extras = _compare_outputs(got, want, tmp_path / "ours", tmp_path / "ni", mask)
    assert not extras  # clusters found: the Jackknife tables are compared value by value
    assert any("_diag-Jackknife_tab-counts" in k for k in got.tables)


def test_workflow_with_objects_matches_nimare(sim, tmp_path):
    """DerSimonianLaird object, Bonferroni by name, a Jackknife object left at its defaults."""
    from nimare.diagnostics import Jackknife as NiJackknife
    from nimare.meta.ibma import DerSimonianLaird as NiDSL
    from nimare.workflows import IBMAWorkflow as NiIBMAWorkflow

    ours_ss, dset, mask = sim
    wf = IBMAWorkflow(
        estimator=ibma.DerSimonianLaird(mask=mask),
        corrector="bonferroni",
        diagnostics=Jackknife(),
        voxel_thresh=1.0,
        cluster_threshold=3,
        output_dir=tmp_path / "ours",
    )
    assert isinstance(wf.corrector, FWECorrector) and wf.corrector.method == "bonferroni"
    assert wf.diagnostics[0].target_threshold == 1.0  # applied: left at its default
    got = _quiet(wf.fit, ours_ss)
    want = _quiet(
        NiIBMAWorkflow(
            estimator=NiDSL(mask=mask),
            corrector="bonferroni",
            diagnostics=NiJackknife(),
            voxel_thresh=1.0,
            cluster_threshold=3,
            output_dir=tmp_path / "ni",
        ).fit,
        dset,
    )
    # no cluster survives Bonferroni at |z| > 1 with >= 3 voxels here: the no-cluster path
    extras = _compare_outputs(got, want, tmp_path / "ours", tmp_path / "ni", mask)
    assert extras


def test_workflow_options_as_nimare():
    wf = IBMAWorkflow(estimator="dersimonianlaird")
    assert isinstance(wf.estimator, ibma.DerSimonianLaird)
    assert isinstance(wf.corrector, FDRCorrector) and wf.corrector.method == "indep"
    with pytest.raises(ValueError, match="must be"):
        IBMAWorkflow(estimator="ale")  # coordinate-based: not an IBMA option
    with pytest.raises(ValueError, match="must be"):
        IBMAWorkflow(diagnostics="focuscounter")  # NiMARE: IBMA diagnostics are jackknife only
    with pytest.raises(ValueError, match="is not a"):
        from nimare_dask.meta.cbma import ALE

        IBMAWorkflow(estimator=ALE())

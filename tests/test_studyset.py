"""Studyset contents and queries against NiMARE 0.22.1 on its bundled studysets."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from nimare_dask import Studyset
from nimare_dask.studyset import Annotations, StudysetError, UnknownSpaceWarning

ORACLE_FILES = [
    "resources/nidm_pain_studyset.json",
    "resources/neurosynth_laird_studyset.json",
    "tests/data/sample_size_nimads_studyset.json",
    "tests/data/nimads_studyset.json",
]


def _nimare_studyset(path):
    from nimare.studyset import Studyset as NStudyset

    return NStudyset(str(path))


def _sorted_coords(df):
    return df.sort_values(["id", "x", "y", "z"])[["id", "x", "y", "z"]].reset_index(drop=True)


@pytest.mark.parametrize("relpath", ORACLE_FILES)
def test_ids_coordinates_sample_sizes_match_nimare(nimare_dir, relpath):
    path = nimare_dir / relpath
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSpaceWarning)
        ours = Studyset(path)
    ref = _nimare_studyset(path)
    assert list(ours.ids) == sorted(str(i) for i in ref.ids)
    ref_coords = ref.coordinates.assign(id=lambda d: d["id"].astype(str))
    a, b = _sorted_coords(ours.coordinates), _sorted_coords(ref_coords)
    assert len(a) == len(b)
    assert (a["id"].to_numpy() == b["id"].to_numpy()).all()
    # float64 coordinates after the same affine: identical up to rounding of the last bit
    np.testing.assert_allclose(a[["x", "y", "z"]], b[["x", "y", "z"]], rtol=0, atol=1e-9)
    ref_n = pd.Series(ref.sample_sizes(), index=[str(i) for i in ref.ids])
    np.testing.assert_array_equal(ours.sample_sizes, ref_n.loc[list(ours.ids)].to_numpy())


def test_tal_foci_are_converted_like_nimare(nimare_test_data):
    from nimare.dataset import Dataset

    path = nimare_test_data / "neurosynth_dset.json"
    ours = Studyset(path)
    ref = Dataset(str(path)).coordinates
    a = _sorted_coords(ours.coordinates)
    b = _sorted_coords(ref.assign(id=ref["id"].astype(str)))
    np.testing.assert_allclose(a[["x", "y", "z"]], b[["x", "y", "z"]], rtol=0, atol=1e-9)
    assert set(ours.coordinates["space"]) == {"MNI", "TAL"}


def test_queries_match_nimare(nimare_resources, nimare_test_data):
    path = nimare_resources / "neurosynth_laird_studyset.json"
    ours, ref = Studyset(path), _nimare_studyset(path)
    roi = nimare_test_data / "amygdala_roi.nii.gz"  # LAS-stored 366-voxel ROI
    assert ours.get_studies_by_mask(roi) == sorted(map(str, ref.get_studies_by_mask(str(roi))))
    for xyz, r in [([[0, 0, 0]], 30), ([[-24, -4, -18], [24, -4, -18]], 12), ([[40, 40, 40]], 0)]:
        assert ours.get_studies_by_coordinate(xyz, r=r) == sorted(
            map(str, ref.get_studies_by_coordinate(xyz, r=r))
        )
    for labels in (["Neurosynth_TFIDF__depression"], ["Neurosynth_TFIDF__memory"]):
        for thr in (0.001, 0.05):
            assert ours.get_studies_by_label(labels, label_threshold=thr) == sorted(
                map(str, ref.get_studies_by_label(labels, label_threshold=thr))
            )


def test_coordinate_query_radius_is_inclusive():
    ss = _toy()
    # focus of a-1 at exactly 10 mm from the query point
    assert ss.get_studies_by_coordinate([[10, 0, 0]], r=10) == ["s1-a"]
    assert ss.get_studies_by_coordinate([[10, 0, 0]], r=9.99) == []


def test_mask_query_ignores_out_of_grid_foci(tmp_path):
    import nibabel as nib

    ss = _toy()
    mask = np.ones((3, 3, 3), dtype=np.uint8)
    img = nib.Nifti1Image(mask, np.diag([2, 2, 2, 1]))
    # grid covers x,y,z in [0, 4] mm: s1-a's focus (0,0,0) is in; s2-b's (50, 50, 50) is out
    assert ss.get_studies_by_mask(img) == ["s1-a"]


def _toy(**kw):
    analyses = pd.DataFrame({"study_id": ["s2", "s1"], "contrast_id": ["b", "a"]})
    points = pd.DataFrame(
        {
            "id": ["s1-a", "s2-b", "s2-b"],
            "x": [0.0, 50, 52],
            "y": [0.0, 50, 50],
            "z": [0.0, 50, 50],
            "space": ["MNI", "TAL", "TAL"],
        }
    )
    metadata = pd.DataFrame({"id": ["s1-a", "s2-b"], "sample_sizes": [[10, 20], [7]]})
    ann = Annotations(np.array([[0.5, 0.0], [0.0, 1.0]], dtype=np.float32), ["lab_x", "lab_y"])
    return Studyset.from_tables(analyses, points, metadata, ann, **kw)


def test_from_tables_sorts_aligns_and_reduces_sample_sizes():
    ss = _toy()
    assert list(ss.ids) == ["s1-a", "s2-b"]
    np.testing.assert_array_equal(ss.sample_sizes, [15.0, 7.0])  # mean of the list, as NiMARE
    # annotations were given in input order (s2-b first) and follow the sort
    assert ss.get_studies_by_label("lab_y") == ["s1-a"]
    assert ss.get_studies_by_label("lab_x") == ["s2-b"]
    np.testing.assert_array_equal(ss.foci_counts(), [1, 2])
    np.testing.assert_array_equal(ss.focus_offsets(), [0, 1, 3])
    assert ss.get_metadata(field="sample_size") == [15.0, 7.0]


def test_slice_and_merge():
    ss = _toy()
    one = ss.slice(["s2-b"])
    assert list(one.ids) == ["s2-b"] and len(one.coordinates) == 2
    assert one.annotation_matrix.shape == (1, 2)
    with pytest.raises(KeyError, match="nope"):
        ss.slice(["nope"])
    merged = ss.slice(["s1-a"]).merge(one)
    assert list(merged.ids) == list(ss.ids)
    np.testing.assert_allclose(merged.xyz(), ss.xyz())
    with pytest.raises(StudysetError, match="duplicated"):
        ss.merge(one)


def test_duplicated_ids_and_nan_coordinates_are_errors():
    analyses = pd.DataFrame({"study_id": ["s1", "s1"], "contrast_id": ["a", "a"]})
    with pytest.raises(StudysetError, match="duplicated analysis ids"):
        Studyset.from_tables(analyses)
    analyses = pd.DataFrame({"study_id": ["s1"], "contrast_id": ["a"]})
    points = pd.DataFrame({"id": ["s1-a"], "x": [np.nan], "y": [0.0], "z": [0.0]})
    with pytest.raises(StudysetError, match=r"non-finite.*s1-a"):
        Studyset.from_tables(analyses, points, source_name="f.json")


def test_unknown_space_warns_with_study_ids():
    analyses = pd.DataFrame({"study_id": ["s1"], "contrast_id": ["a"]})
    points = pd.DataFrame({"id": ["s1-a"], "x": [1.0], "y": [2.0], "z": [3.0], "space": [None]})
    with pytest.warns(UnknownSpaceWarning, match="s1-a"):
        ss = Studyset.from_tables(analyses, points)
    np.testing.assert_array_equal(ss.xyz(), [[1.0, 2.0, 3.0]])  # kept as MNI, untransformed


def test_sparse_annotations_frame_is_sparse():
    vals = sp.random(50, 7, density=0.1, format="csr", random_state=0, dtype=np.float32)
    analyses = pd.DataFrame({"study_id": [f"s{i:02d}" for i in range(50)], "contrast_id": "1"})
    ss = Studyset.from_tables(analyses, annotations=Annotations(vals, [f"t{j}" for j in range(7)]))
    frame = ss.annotations
    assert isinstance(frame["t0"].dtype, pd.SparseDtype)
    np.testing.assert_allclose(frame[[f"t{j}" for j in range(7)]].sparse.to_dense(), vals.toarray())


def test_images_resolved_against_basepath(nimare_test_data):
    ss = Studyset(nimare_test_data / "neurosynth_dset.json")
    paths = ss.get_images("z")
    assert any(p is not None for p in paths)
    for p in paths:
        if p is not None:
            assert p.startswith(str(nimare_test_data)) and p.endswith("_z.nii.gz")


def test_nimads_round_trip(tmp_path, pain_studyset):
    out = pain_studyset.to_nimads(tmp_path / "pain.json")
    again = Studyset(out)
    assert list(again.ids) == list(pain_studyset.ids)
    np.testing.assert_array_equal(again.xyz(), pain_studyset.xyz())
    np.testing.assert_array_equal(again.sample_sizes, pain_studyset.sample_sizes)


def test_fingerprint_changes_with_foci(pain_studyset):
    other = pain_studyset.slice(pain_studyset.ids[1:])
    assert other.fingerprint != pain_studyset.fingerprint
    assert Studyset(pain_studyset).fingerprint == pain_studyset.fingerprint

"""NeuroStore parquet studysets (NiMARE 0.22.1's release format) against NiMARE (the oracle).

Reading: ids, foci, sample sizes, label weights, metadata, texts and images of both bundled
releases equal NiMARE's. Foci are compared exactly: the TAL->MNI transform is the same matrix
product, and every other value is copied. Writing: NiMARE reads what we write (and we read what
NiMARE writes) with the same numbers; the parquet <-> store round trip is exact.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from nimare.studyset import Studyset as NiMAREStudyset
from nimare.studyset.blocks import label_block_for

from nimare_dask import Studyset
from nimare_dask.studyset import StudysetError
from nimare_dask.studyset.parquet import is_parquet_studyset

RELEASES = ["neurostore_parquet_studyset", "nback_vs_flanker_studyset_2026-07"]


@pytest.fixture(scope="module", params=RELEASES)
def release(request, nimare_resources):
    folder = nimare_resources / request.param
    return folder, Studyset(folder), NiMAREStudyset(str(folder))


def _assert_same_studyset(ours: Studyset, ref: NiMAREStudyset) -> None:
    np.testing.assert_array_equal(ours.ids, ref.ids.astype(str))
    np.testing.assert_array_equal(ours.study_ids, np.unique(ref.study_ids.astype(str)))
    rc, oc = ref.coordinates, ours.coordinates
    np.testing.assert_array_equal(oc["id"].to_numpy(str), rc["id"].to_numpy(str))
    # exact: the same float64 matrix product for TAL foci, copies for the others
    np.testing.assert_array_equal(
        oc[["x", "y", "z"]].to_numpy(float), rc[["x", "y", "z"]].to_numpy(float)
    )
    np.testing.assert_array_equal(ours.sample_sizes, ref.sample_sizes(), strict=False)
    if ref.store.annotations:
        block = label_block_for(ref._view)
        assert ours.labels == [str(x) for x in block.labels]
        ours_m = ours.annotation_matrix.values
        np.testing.assert_array_equal(ours_m.toarray(), block.values.toarray())


def test_read_matches_nimare(release):
    folder, ours, ref = release
    assert is_parquet_studyset(folder)
    _assert_same_studyset(ours, ref)
    assert ours.get_labels() == ref.get_labels()
    # metadata: every NiMARE field present, same values (NaN-aware)
    rm, om = ref.metadata, ours.metadata.set_index("id").loc[ref.ids.astype(str)]
    for field in rm.columns:
        if field in ("id", "study_id", "contrast_id"):
            continue
        assert field in om, field
        a = pd.Series(om[field].to_numpy(dtype=object))
        b = pd.Series(rm[field].to_numpy(dtype=object))
        for x, y in zip(a, b, strict=True):
            if isinstance(y, np.ndarray | list):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=field)
            elif pd.isna(y) if np.isscalar(y) or y is None else False:
                assert x is None or (np.isscalar(x) and pd.isna(x)), field
            else:
                assert x == y, (field, x, y)
    assert ours.get_texts() == ref.get_texts()
    assert ours.get_images() == ref.get_images()


def test_queries_match_nimare(release):
    _, ours, ref = release
    xyz = ref.coordinates[["x", "y", "z"]].to_numpy(float)[5]
    for r in (0, 6, 15):
        assert ours.get_studies_by_coordinate([xyz], r=r) == list(
            ref.get_studies_by_coordinate([xyz], r=r)
        )
        assert ours.get_analyses_by_coordinate(xyz, r=r) == ref.get_analyses_by_coordinate(xyz, r=r)
    for n in (1, 7, 40):
        assert ours.get_analyses_by_coordinate(xyz, n=n) == ref.get_analyses_by_coordinate(xyz, n=n)
    labels = [lab for lab in ref.get_labels() if lab.endswith("count")][:2]
    for thr in (0.001, 20.0):
        assert ours.get_studies_by_label(labels[:1], label_threshold=thr) == list(
            ref.get_studies_by_label(labels[:1], label_threshold=thr)
        )
        assert ours.get_analyses_by_label(labels, label_threshold=thr) == list(
            ref.get_analyses_by_label(labels, label_threshold=thr)
        )
    sub_ids = list(ref.ids[::3])
    assert ours.get_labels(ids=sub_ids) == ref.get_labels(ids=sub_ids)
    _assert_same_studyset(ours.slice(sub_ids), ref.slice(sub_ids))
    short = [str(i).split("-", 1)[1] for i in ref.ids[:2]]
    _assert_same_studyset(ours.slice(short), ref.slice(short))
    studies = list(ref.study_ids[:2])
    _assert_same_studyset(
        ours.slice(studies, filter_level="study"), ref.slice(studies, filter_level="study")
    )
    with pytest.raises(ValueError, match="no-such-id"):
        ours.slice(["no-such-id"])
    with pytest.raises(ValueError, match="no-such-id"):  # NiMARE raises ValueError too
        ref.slice(["no-such-id"])
    field = labels[0]
    assert ours.get_analyses_by_annotations(field) == {
        k: {field: float(v[field])} for k, v in ref.get_analyses_by_annotations(field).items()
    }
    assert ours.get_analyses_by_metadata("journal").keys() == (
        ref.get_analyses_by_metadata("journal").keys()
    )


def test_estimator_on_release_matches_nimare(nimare_resources):
    """MKDADensity on the tiny release: same stat map as NiMARE loading the same folder."""
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    from nimare_dask.meta.cbma import MKDADensity

    folder = nimare_resources / "neurostore_parquet_studyset"
    ours = MKDADensity().fit(Studyset(folder))
    ref = NiMAREMKDADensity().fit(NiMAREStudyset(str(folder)))
    # the MKDA stat is a count of studies (integers in float32): exactly equal
    np.testing.assert_array_equal(
        ours.get_map("stat", return_type="array"), ref.get_map("stat", return_type="array")
    )


def test_ale_on_release_matches_nimare(nimare_resources):
    """ALE with a fixed sample size (the release has none) on the tiny release."""
    from nimare.meta.cbma import ALE as NiMAREALE

    from nimare_dask.meta.cbma import ALE

    folder = nimare_resources / "neurostore_parquet_studyset"
    ours = ALE(kernel__sample_size=20).fit(Studyset(folder))
    ref = NiMAREALE(kernel__sample_size=20).fit(NiMAREStudyset(str(folder)))
    # ALE union of float32 MA maps summed in float64: within 1e-8 of NiMARE (a few float32
    # ulps at ALE ~0.03, as tests/test_meta_ale.py); z from the same null: float32 precision
    np.testing.assert_allclose(
        ours.get_map("stat", return_type="array"),
        ref.get_map("stat", return_type="array"),
        rtol=0,
        atol=1e-8,
    )
    np.testing.assert_allclose(
        ours.get_map("z", return_type="array"),
        ref.get_map("z", return_type="array"),
        rtol=1e-6,
        atol=1e-6,
    )


def test_nimare_reads_what_we_write(release, tmp_path):
    _, ours, ref = release
    out = ours.to_parquet(tmp_path / "release")
    manifest = json.loads((out / "studyset.json").read_text())
    assert manifest["format"] == "nimare-studyset-parquet" and manifest["version"] == 1
    back = NiMAREStudyset(str(out))
    _assert_same_studyset(ours, back)
    _assert_same_studyset(Studyset(out), ref)
    with pytest.raises(FileExistsError, match="already contains"):
        ours.to_parquet(out)


def test_we_read_what_nimare_writes(pain_json, pain_studyset, tmp_path):
    ref = NiMAREStudyset(str(pain_json))
    ref.to_parquet(str(tmp_path / "pain"))
    ours = Studyset(tmp_path / "pain")
    _assert_same_studyset(ours, ref)
    np.testing.assert_array_equal(ours.sample_sizes, pain_studyset.sample_sizes)
    # NiMARE writes images as "<type>__relative" columns but reads "<type>__source" ones, so
    # its own round trip drops them; we read them back, equal to the NIMADS source's
    assert NiMAREStudyset(str(tmp_path / "pain")).get_images() == []
    assert ours.get_images() == ref.get_images() == ["beta", "se", "t", "z"]
    for imtype in ref.get_images():
        assert ours.get_images(imtype) == ref.get_images(imtype)


def test_parquet_store_round_trip(nimare_resources, tmp_path):
    folder = nimare_resources / "neurostore_parquet_studyset"
    ss = Studyset(folder)
    store = ss.to_zarr(tmp_path / "store.zarr")
    reopened = Studyset(store)  # Studyset(folder) opens a store too
    assert reopened.store is not None
    _assert_same_studyset(reopened, NiMAREStudyset(str(folder)))
    reopened.to_parquet(tmp_path / "again")
    _assert_same_studyset(Studyset(tmp_path / "again"), NiMAREStudyset(str(folder)))


def test_folder_that_is_neither(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(StudysetError, match=r"neither a NeuroStore parquet studyset.*store") as e:
        Studyset(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(StudysetError, match="not a parquet studyset"):
        Studyset.from_parquet(tmp_path)

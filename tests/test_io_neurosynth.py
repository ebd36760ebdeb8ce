"""Neurosynth / NeuroQuery readers: parity with NiMARE 0.22.1, sparse annotations, TF-IDF."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nimare.io as nimare_io
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _parity import quiet as _quiet

from nimare_dask import open_studyset
from nimare_dask.io import (
    FociOutsideMaskWarning,
    NeurosynthError,
    UnknownSpaceWarning,
    convert_neuroquery_to_studyset,
    convert_neurosynth_to_studyset,
    tfidf_transform,
)
from nimare_dask.io.neurosynth import parse_feature_filename, vocabulary_path_for

# Real databases have foci just off the brain mask; the warning is tested where it matters.
pytestmark = pytest.mark.filterwarnings("ignore::nimare_dask.io.errors.FociOutsideMaskWarning")

NS = "data-neurosynth_version-7"
NQ = "data-neuroquery_version-1"
# Coordinates: the same Lancaster matrix in float64 on both sides (differences ~1e-13 mm).
ATOL_MM = 1e-6
# Annotations are stored as float32 (NiMARE keeps float64): relative float32 precision.
RTOL_F32 = 1e-6


def _compare(ours, theirs, labels=True):
    assert list(ours.ids) == list(theirs.ids)
    oc, tc = ours.coordinates, theirs.coordinates
    assert list(oc["id"]) == list(tc["id"])
    np.testing.assert_allclose(
        oc[["x", "y", "z"]].to_numpy(float), tc[["x", "y", "z"]].to_numpy(float), atol=ATOL_MM
    )
    if labels:
        frame = theirs.annotations_df
        names = [c for c in frame.columns if "__" in c]
        # same label names; we keep the vocabulary's column order, NiMARE sorts them
        assert sorted(ours.labels) == sorted(names)
        assert ours.annotation_matrix.is_sparse
        np.testing.assert_allclose(
            ours.annotation_matrix.values.toarray(),
            frame[ours.labels].to_numpy(float),
            rtol=RTOL_F32,
            atol=1e-12,
        )


@pytest.fixture(scope="module")
def ns_slice(nimare_test_data):
    d = nimare_test_data
    return {
        "coordinates": d / f"{NS}_coordinates.tsv.gz",
        "metadata": d / f"{NS}_metadata.tsv.gz",
        "features": d / f"{NS}_vocab-terms_source-abstract_type-tfidf_features.npz",
        "vocabulary": d / f"{NS}_vocab-terms_vocabulary.txt",
    }


def test_matches_nimare_on_its_neurosynth_slice(ns_slice):
    ann = {"features": str(ns_slice["features"]), "vocabulary": str(ns_slice["vocabulary"])}
    with pytest.warns(UnknownSpaceWarning, match="have an unknown coordinate space"):
        ours = convert_neurosynth_to_studyset(ns_slice["coordinates"], ns_slice["metadata"], ann)
    theirs = _quiet(
        nimare_io.convert_neurosynth_to_studyset,
        str(ns_slice["coordinates"]),
        str(ns_slice["metadata"]),
        ann,
    )
    _compare(ours, theirs)
    assert len(ours) == 20 and ours.foci_counts().sum() == 1420
    assert all(i.endswith("-1") for i in ours.ids)
    assert ours.labels[0].startswith("terms_abstract_tfidf__")
    assert np.isnan(ours.sample_sizes).all()  # Neurosynth has no sample sizes


def test_unknown_space_warning_names_studies(ns_slice):
    meta = pd.read_table(ns_slice["metadata"], dtype={"id": str})
    unknown = sorted(f"{i}-1" for i in meta.loc[meta["space"] == "UNKNOWN", "id"])
    with pytest.warns(UnknownSpaceWarning) as rec:
        convert_neurosynth_to_studyset(ns_slice["coordinates"], ns_slice["metadata"])
    msg = " ".join(str(w.message) for w in rec if w.category is UnknownSpaceWarning)
    assert ns_slice["coordinates"].name in msg
    assert all(u in msg for u in unknown[:10])


def test_npz_path_with_vocabulary_beside_it_and_feature_groups(ns_slice):
    kw = {"coordinates_file": ns_slice["coordinates"], "metadata_file": ns_slice["metadata"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSpaceWarning)
        a = convert_neurosynth_to_studyset(annotations_files=ns_slice["features"], **kw)
        b = convert_neurosynth_to_studyset(
            annotations_files=[str(ns_slice["features"])], feature_groups="mine_", **kw
        )
    assert vocabulary_path_for(ns_slice["features"]) == ns_slice["vocabulary"]
    assert a.labels[0] == "terms_abstract_tfidf__" + a.labels[0].split("__", 1)[1]
    assert [lab.split("__", 1)[1] for lab in a.labels] == [
        lab.split("__", 1)[1] for lab in b.labels
    ]
    assert b.labels[0].startswith("mine__")
    assert (a.annotation_matrix.values != b.annotation_matrix.values).nnz == 0


def test_parse_feature_filename():
    assert parse_feature_filename(
        f"/x/vocab-bad/{NS}_vocab-LDA50_source-abstract_type-weight_features.npz"
    ) == ("LDA50", "abstract", "weight")
    with pytest.raises(NeurosynthError, match="vocab"):
        parse_feature_filename("features.npz")


def test_tfidf_matches_sklearn():
    from sklearn.feature_extraction import text as sklearn_text  # a NiMARE dependency

    rng = np.random.default_rng(0)
    counts = sp.random(40, 30, density=0.15, random_state=rng, format="csr")
    counts.data = np.ceil(counts.data * 5)
    keep = np.ones(40)
    keep[3] = 0  # an all-zero document stays zero
    counts = sp.csr_matrix(sp.diags(keep) @ counts)
    counts.eliminate_zeros()
    ref = sklearn_text.TfidfTransformer().fit_transform(counts).toarray()
    # both float64, same formula: agreement to rounding
    np.testing.assert_allclose(tfidf_transform(counts).toarray(), ref, rtol=1e-12, atol=1e-15)


def _slice_database(src: Path, dst: Path, prefix: str, n: int, feature_names) -> dict:
    """The first n studies of a database (metadata rows, their foci, feature rows)."""
    meta = pd.read_table(src / f"{prefix}_metadata.tsv.gz", dtype={"id": str})
    coords = pd.read_table(src / f"{prefix}_coordinates.tsv.gz", dtype={"id": str})
    keep = meta.iloc[:n]
    keep.to_csv(dst / f"{prefix}_metadata.tsv.gz", sep="\t", index=False)
    coords[coords["id"].isin(keep["id"])].to_csv(
        dst / f"{prefix}_coordinates.tsv.gz", sep="\t", index=False
    )
    out = {
        "coordinates": dst / f"{prefix}_coordinates.tsv.gz",
        "metadata": dst / f"{prefix}_metadata.tsv.gz",
        "features": [],
    }
    for name in feature_names:
        sp.save_npz(dst / name, sp.load_npz(src / name)[:n])
        vocab = vocabulary_path_for(src / name)
        shutil.copy(vocab, dst / vocab.name)
        out["features"].append({"features": str(dst / name), "vocabulary": str(dst / vocab.name)})
    return out


def test_neuroquery_style_files_are_mni(tmp_path):
    (tmp_path / "c.tsv").write_text("id\ttable_id\tx\ty\tz\n7\tt1\t1\t2\t3\n8\tt1\t4\t5\t6\n")
    (tmp_path / "m.tsv").write_text("id\ttitle\n8\tB\n7\tA\n")
    feats = tmp_path / f"{NQ}_vocab-tiny_source-abstract_type-count_features.npz"
    sp.save_npz(feats, sp.csr_matrix(np.array([[0, 2, 1], [3, 0, 0]])))
    (tmp_path / f"{NQ}_vocab-tiny_vocabulary.txt").write_text("amygdala\nface\nworking memory\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownSpaceWarning)  # NeuroQuery is MNI: no warning
        ss = convert_neuroquery_to_studyset(tmp_path / "c.tsv", tmp_path / "m.tsv", feats)
    assert list(ss.ids) == ["7-1", "8-1"]
    np.testing.assert_array_equal(ss.xyz(), [[1, 2, 3], [4, 5, 6]])  # MNI: unchanged
    assert ss.labels == [
        f"tiny_abstract_count__{t}" for t in ("amygdala", "face", "working memory")
    ]
    # metadata row order (8, 7) -> sorted analyses (7-1, 8-1): feature rows follow their study
    np.testing.assert_array_equal(ss.annotation_matrix.values.toarray(), [[3, 0, 0], [0, 2, 1]])
    assert ss.metadata.set_index("id").loc["7-1", "title"] == "A"


@pytest.mark.database
def test_neuroquery_slice_matches_nimare_and_tfidf(tmp_path, shared_data):
    feats = [f"{NQ}_vocab-neuroquery7547_source-{s}_type-count_features.npz" for s in ("title",)]
    files = _slice_database(shared_data / "neuroquery-v1", tmp_path, NQ, 60, feats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FociOutsideMaskWarning)
        ours = convert_neuroquery_to_studyset(
            files["coordinates"], files["metadata"], files["features"]
        )
        tf = convert_neuroquery_to_studyset(
            files["coordinates"], files["metadata"], files["features"], tfidf=True
        )
    # NiMARE reads NeuroQuery with its Neurosynth converter (space UNKNOWN, left unchanged)
    theirs = _quiet(
        nimare_io.convert_neurosynth_to_studyset,
        str(files["coordinates"]),
        str(files["metadata"]),
        files["features"],
    )
    _compare(ours, theirs)
    assert set(ours.coordinates["space"]) == {"MNI"}
    assert ours.labels[0].startswith("neuroquery7547_title_count__")
    assert tf.labels[0].startswith("neuroquery7547_title_tfidf__")
    # TF-IDF over the whole slice, then reordered like the (sorted) analyses
    raw = sp.load_npz(files["features"][0]["features"])
    order = np.argsort(pd.read_table(files["metadata"], dtype={"id": str})["id"] + "-1")
    np.testing.assert_allclose(
        tf.annotation_matrix.values.toarray(),
        tfidf_transform(raw).toarray()[order],
        rtol=RTOL_F32,
        atol=1e-7,
    )


def test_tfidf_rejects_non_count_files(ns_slice):
    with pytest.raises(ValueError, match="count"):
        convert_neurosynth_to_studyset(
            ns_slice["coordinates"], ns_slice["metadata"], ns_slice["features"], tfidf=True
        )


def test_store_round_trip_keeps_sparse_annotations(tmp_path, ns_slice):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSpaceWarning)
        ss = convert_neurosynth_to_studyset(
            ns_slice["coordinates"], ns_slice["metadata"], ns_slice["features"]
        )
    back = open_studyset(ss.to_zarr(tmp_path / "ns.zarr"))
    assert list(back.ids) == list(ss.ids)
    np.testing.assert_array_equal(back.xyz(), ss.xyz())
    assert back.annotation_matrix.is_sparse and back.labels == ss.labels
    assert (back.annotation_matrix.values != ss.annotation_matrix.values).nnz == 0


# ---------------------------------------------------------------- whole databases
@pytest.mark.database
def test_neurosynth_v7_first_500_match_nimare(tmp_path, shared_data):
    lda = f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz"
    files = _slice_database(shared_data / "neurosynth-v7", tmp_path, NS, 500, [lda])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSpaceWarning)
        warnings.simplefilter("ignore", FociOutsideMaskWarning)
        ours = convert_neurosynth_to_studyset(
            files["coordinates"], files["metadata"], files["features"]
        )
    theirs = _quiet(
        nimare_io.convert_neurosynth_to_studyset,
        str(files["coordinates"]),
        str(files["metadata"]),
        files["features"],
    )
    assert len(ours) == 500
    _compare(ours, theirs)


@pytest.mark.database
def test_neurosynth_v7_whole_database(shared_data):
    d = shared_data / "neurosynth-v7"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ss = convert_neurosynth_to_studyset(
            d / f"{NS}_coordinates.tsv.gz",
            d / f"{NS}_metadata.tsv.gz",
            d / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz",
        )
    assert len(ss) == 14371 and ss.study_ids.size == 14371
    assert int(ss.foci_counts().sum()) == 507891
    assert (ss.foci_counts() > 0).all()
    spaces = ss.coordinates.drop_duplicates("id")["space"].value_counts()
    assert spaces.to_dict() == {"MNI": 10204, "TAL": 2335, "UNKNOWN": 1832}
    assert ss.annotation_matrix.is_sparse and ss.annotation_matrix.shape == (14371, 50)
    unknown = [w for w in rec if w.category is UnknownSpaceWarning]
    assert len(unknown) == 1 and "1832 analyses" in str(unknown[0].message)
    outside = [w for w in rec if w.category is FociOutsideMaskWarning]
    assert len(outside) == 1 and f"{NS}_coordinates.tsv.gz" in str(outside[0].message)


@pytest.mark.database
def test_neuroquery_v1_whole_database(shared_data):
    d = shared_data / "neuroquery-v1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FociOutsideMaskWarning)
        ss = convert_neuroquery_to_studyset(
            d / f"{NQ}_coordinates.tsv.gz",
            d / f"{NQ}_metadata.tsv.gz",
            d / f"{NQ}_vocab-neuroquery7547_source-abstract_type-count_features.npz",
            tfidf=True,
        )
    assert len(ss) == 13459 and int(ss.foci_counts().sum()) == 469260
    a = ss.annotation_matrix
    assert a.is_sparse and a.shape == (13459, 7547)
    norms = np.sqrt(np.asarray(a.values.multiply(a.values).sum(axis=1)).ravel())
    nonempty = np.diff(a.values.indptr) > 0
    # l2-normalised rows, stored as float32
    np.testing.assert_allclose(norms[nonempty], 1.0, rtol=1e-5)

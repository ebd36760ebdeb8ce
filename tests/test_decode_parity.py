"""Which analyses a decoder uses, against NiMARE 0.22.1 (issue 15), and decoder parity on real
NeuroQuery (TF-IDF) and Neurosynth (LDA) subsets read by both packages from one NIMADS document.

NiMARE's decoders keep the analyses that have every declared input (``_collect_inputs`` with
``drop_invalid=True``): foci, and an annotation record. An analysis whose NIMADS record carries
no annotation value at all is *unannotated* and dropped (``Labels.validity`` in
``nimare/studyset/requirements.py``); an analysis whose labels are all explicit zeros is kept.
Here a missing label is NaN and an analysis with every label NaN is unannotated
(:func:`nimare_dask.decode.selection.analyses_with_inputs`).

Tolerances: feature maps within 1 float32 ulp (the same integer counts and float64 chi-square
expressions cast to float32; NiMARE's z has a CPU-dependent last bit, ``tests/_parity.py``).
Pearson r: atol 1e-5 on the 17-study file with a noise image (NiMARE correlates in float32, whose
r of a map with itself is 1.0000027), atol 1e-6 on the database subsets with the binary amygdala
ROI (float32 rounding of NiMARE's sums; observed differences <= 1.1e-7). Neurosynth and BrainMap
decoder columns rtol 1e-9 (the same float64 closed forms).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _parity import assert_within_ulp
from _parity import quiet as _quiet

from nimare_dask import Studyset
from nimare_dask.decode import CorrelationDecoder, NeurosynthDecoder
from nimare_dask.decode.selection import analyses_with_inputs, annotated_analyses
from nimare_dask.studyset import Annotations
from nimare_dask.studyset.nimads import tables_to_nimads

R_ATOL_NOISE = 1e-5
R_ATOL_ROI = 1e-6
RTOL = 1e-9
NQ = "data-neuroquery_version-1"
NS = "data-neurosynth_version-7"


def _with_unannotated(ss: Studyset, ids) -> Studyset:
    """``ss`` with the analyses ``ids`` unannotated (every label NaN), as NiMARE reads an
    analysis without annotation values."""
    ann = ss.annotation_matrix
    values = ann.values.toarray() if sp.issparse(ann.values) else np.array(ann.values)
    values = values.astype(np.float32)
    values[np.isin(ss.ids, list(ids))] = np.nan
    analyses = ss.analyses[["id", "study_id", "contrast_id"]]
    pts = ss.coordinates[["id", "x", "y", "z"]].assign(space="MNI")
    return Studyset.from_tables(analyses, pts, annotations=Annotations(values, ann.labels))


def _nimare_fit(cls, doc, **kwargs):
    from nimare.nimads import Studyset as RefStudyset

    dec = cls(**kwargs)
    _quiet(dec.fit, RefStudyset(doc))
    return dec


def _compare_correlation(ours, theirs, img, r_atol):
    assert sorted(ours.features_) == sorted(theirs.results_.maps)
    for f in ours.features_:
        assert_within_ulp(
            ours.maps_.get_map(f, "array"), theirs.results_.maps[f], maxulp=1, err_msg=f
        )
    r_theirs = _quiet(theirs.transform, img)["r"]
    r_ours = ours.transform(img)["r"]
    np.testing.assert_allclose(r_ours, r_theirs.loc[r_ours.index].to_numpy(float), atol=r_atol)


def _compare_discrete(ours, theirs, ids):
    a = ours.transform(ids)
    b = _quiet(theirs.transform, ids).loc[a.index]
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        np.testing.assert_allclose(a[col], b[col].to_numpy(float), rtol=RTOL, equal_nan=True)


# ------------------------------------------------------------------ the rule, on a small file
@pytest.fixture(scope="module")
def laird_doc(nimare_resources):
    return json.loads((nimare_resources / "neurosynth_laird_studyset.json").read_text())


def test_unannotated_analyses_are_dropped_as_in_nimare(laird_doc, nimare_resources):
    """One analysis without annotation values (dropped by both), one whose labels are all
    explicit zeros (kept by both: "the rest" of every feature)."""
    from nimare.decode.continuous import CorrelationDecoder as RefCorr
    from nimare.decode.discrete import NeurosynthDecoder as RefNS

    doc = copy.deepcopy(laird_doc)
    first, second = doc["studies"][0]["analyses"][0], doc["studies"][1]["analyses"][0]
    first["annotations"] = {}
    second["annotations"] = {k: 0.0 for k in second["annotations"]}
    laird = Studyset(nimare_resources / "neurosynth_laird_studyset.json")
    unannotated_id = f"{doc['studies'][0]['id']}-{first['id']}"
    zero_id = f"{doc['studies'][1]['id']}-{second['id']}"
    pos = int(np.flatnonzero(laird.ids == zero_id)[0])
    ann = laird.annotation_matrix
    vals = np.array(ann.values.toarray() if sp.issparse(ann.values) else ann.values)
    vals[pos] = 0.0
    ss = _with_unannotated(
        Studyset.from_tables(
            laird.analyses[["id", "study_id", "contrast_id"]],
            laird.coordinates[["id", "x", "y", "z"]].assign(space="MNI"),
            annotations=Annotations(vals, ann.labels),
        ),
        [unannotated_id],
    )
    assert annotated_analyses(ss).sum() == len(ss) - 1
    kept = analyses_with_inputs(ss)
    assert unannotated_id not in set(kept.ids) and zero_id in set(kept.ids)
    with pytest.raises(ValueError, match="no annotation record"):
        analyses_with_inputs(ss, drop_invalid=False)

    features = ["Neurosynth_TFIDF__memory", "Neurosynth_TFIDF__emotional", "Neurosynth_TFIDF__pain"]
    ref = _nimare_fit(RefCorr, doc, features=features)
    assert unannotated_id not in ref.inputs_["id"] and zero_id in ref.inputs_["id"]
    ours = CorrelationDecoder(features=features).fit(ss)
    rng = np.random.default_rng(0)
    img = ss.grid.to_image(rng.normal(size=ss.grid.n_voxels).astype(np.float32))
    _compare_correlation(ours, ref, img, R_ATOL_NOISE)

    ref_ns = _nimare_fit(RefNS, doc, features=features)
    ours_ns = NeurosynthDecoder(features=features).fit(ss)
    _compare_discrete(ours_ns, ref_ns, [zero_id, *list(kept.ids[:5])])
    with pytest.raises(KeyError, match=unannotated_id):  # NiMARE: KeyError too (.loc)
        ours_ns.transform([unannotated_id])


# ------------------------------------------------------------------ real database subsets
@pytest.fixture(scope="module")
def neuroquery(shared_data):
    from nimare_dask.io import convert_neuroquery_to_studyset

    src = shared_data / "neuroquery-v1"
    return _quiet(
        convert_neuroquery_to_studyset,
        src / f"{NQ}_coordinates.tsv.gz",
        src / f"{NQ}_metadata.tsv.gz",
        src / f"{NQ}_vocab-neuroquery7547_source-abstract_type-count_features.npz",
        tfidf=True,
    )


@pytest.fixture(scope="module")
def neurosynth(shared_data):
    from nimare_dask.io import convert_neurosynth_to_studyset

    src = shared_data / "neurosynth-v7"
    return _quiet(
        convert_neurosynth_to_studyset,
        src / f"{NS}_coordinates.tsv.gz",
        src / f"{NS}_metadata.tsv.gz",
        src / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz",
    )


NQ_TERMS = [f"neuroquery7547_abstract_tfidf__{t}" for t in ("memory", "pain", "reward", "language")]


def _subset(ss: Studyset, n: int, seed: int) -> Studyset:
    return ss.slice(np.random.default_rng(seed).choice(np.asarray(ss.ids), n, replace=False))


def _all_zero(ss: Studyset) -> set:
    rows = sp.csr_matrix(ss.annotation_matrix.values)
    return set(np.asarray(ss.ids)[rows.getnnz(axis=1) == 0])


def _explicit_zeros(doc: dict) -> dict:
    """Give every analysis whose annotation record is empty one explicit 0: an annotated
    analysis carrying none of the labels, as NiMARE's own NIMADS export writes it."""
    doc = copy.deepcopy(doc)
    for study in doc["studies"]:
        for analysis in study["analyses"]:
            if not analysis.get("annotations"):
                analysis["annotations"] = {NQ_TERMS[0]: 0.0}
    return doc


def _amygdala_ids(ss):
    return ss.get_studies_by_coordinate(np.array([[-24.0, -4.0, -20.0], [24, -4, -20]]), 20)


@pytest.mark.database
@pytest.mark.parametrize(("n", "seed"), [(300, 0), (600, 1)])
def test_neuroquery_tfidf_subsets_match_nimare(neuroquery, n, seed):
    """TF-IDF labels from abstract counts: the analyses whose abstract has none of the 7,547
    terms are annotated (all zeros) in both packages."""
    from nimare.decode.continuous import CorrelationDecoder as RefCorr
    from nimare.decode.discrete import NeurosynthDecoder as RefNS

    from nimare_dask.workflows import amygdala_roi

    sub = _subset(neuroquery, n, seed)
    doc = _explicit_zeros(tables_to_nimads(sub))
    ref = _nimare_fit(RefCorr, doc, features=NQ_TERMS)
    assert len(ref.inputs_["id"]) == n
    _compare_correlation(
        CorrelationDecoder(features=NQ_TERMS).fit(sub), ref, amygdala_roi(), R_ATOL_ROI
    )
    ref_ns = _nimare_fit(RefNS, doc, features=NQ_TERMS)
    _compare_discrete(NeurosynthDecoder(features=NQ_TERMS).fit(sub), ref_ns, _amygdala_ids(sub))


@pytest.mark.database
def test_neuroquery_analyses_without_annotation_values_are_dropped(neuroquery):
    """Issue 15: the NIMADS record of an analysis whose TF-IDF row is all zero carries no
    annotation value unless zeros are written; NiMARE then drops exactly those analyses (here 5
    of 600), which moves every feature's "rest" group (r off by ~1e-3). Marking the same
    analyses unannotated here gives NiMARE's maps and r."""
    from nimare.decode.continuous import CorrelationDecoder as RefCorr

    from nimare_dask.workflows import amygdala_roi

    sub = _subset(neuroquery, 600, 1)
    zero = _all_zero(sub)
    assert len(zero) == 5
    doc = tables_to_nimads(sub)
    for s in doc["studies"]:  # no annotation value at all, as a sparse export writes them
        for a in s["analyses"]:
            if f"{s['id']}-{a['id']}" in zero:
                a["annotations"] = {}
    ref = _nimare_fit(RefCorr, doc, features=NQ_TERMS)
    assert set(sub.ids) - set(ref.inputs_["id"]) == zero
    img = amygdala_roi()
    # with those analyses annotated (zeros), the decoders differ: the rest groups differ
    r_zero = CorrelationDecoder(features=NQ_TERMS).fit(sub).transform(img)["r"]
    r_ref = _quiet(ref.transform, img)["r"].loc[r_zero.index]
    assert np.abs(r_zero - r_ref).max() > 1e-4
    _compare_correlation(
        CorrelationDecoder(features=NQ_TERMS).fit(_with_unannotated(sub, zero)),
        ref,
        img,
        R_ATOL_ROI,
    )


@pytest.mark.database
@pytest.mark.parametrize(("n", "seed"), [(400, 2), (800, 3)])
def test_neurosynth_lda_subsets_match_nimare(neurosynth, n, seed):
    """LDA50 topic weights (every study has some weight; nothing is dropped)."""
    from nimare.decode.continuous import CorrelationDecoder as RefCorr
    from nimare.decode.discrete import BrainMapDecoder as RefBM

    from nimare_dask.decode import BrainMapDecoder
    from nimare_dask.workflows import amygdala_roi

    topics = [
        lab
        for lab in neurosynth.labels
        if any(k in lab for k in ("_fear_", "_pain_", "_reward_", "_memory_"))
    ][:4]
    assert len(topics) == 4
    sub = _subset(neurosynth, n, seed)
    doc = tables_to_nimads(sub)
    ref = _nimare_fit(RefCorr, doc, features=topics)
    assert len(ref.inputs_["id"]) == n
    _compare_correlation(
        CorrelationDecoder(features=topics).fit(sub), ref, amygdala_roi(), R_ATOL_ROI
    )
    ref_bm = _nimare_fit(RefBM, doc, features=topics)
    _compare_discrete(BrainMapDecoder(features=topics).fit(sub), ref_bm, _amygdala_ids(sub))


# ------------------------------------------------------------------ CorrelationDistributionDecoder
@pytest.fixture(scope="module")
def laird_with_maps(laird_doc, nimare_resources, tmp_path_factory):
    """NiMARE's 17-study Neurosynth subset with a simulated z map per study (its foci smoothed,
    plus noise) for 15 of them: the other two have no image and are dropped by both."""
    import nibabel as nib
    from scipy.ndimage import gaussian_filter

    laird = Studyset(nimare_resources / "neurosynth_laird_studyset.json")
    grid = laird.grid
    folder = tmp_path_factory.mktemp("laird_maps")
    doc = copy.deepcopy(laird_doc)
    rng = np.random.default_rng(42)
    inv = np.linalg.inv(grid.affine)
    n_img = 0
    for study in doc["studies"]:
        for analysis in study["analyses"]:
            n_img += 1
            if n_img > 15:
                analysis["images"] = []
                continue
            vol = np.zeros(grid.shape, dtype=np.float32)
            for p in analysis["points"]:
                ijk = np.rint(inv @ np.append(p["coordinates"], 1.0))[:3].astype(int)
                if all(0 <= ijk[d] < grid.shape[d] for d in range(3)):
                    vol[tuple(ijk)] += 100.0
            vol = gaussian_filter(vol, 3.0) + rng.normal(0, 0.2, grid.shape).astype(np.float32)
            path = folder / f"{study['id']}-{analysis['id']}_z.nii.gz"
            nib.save(nib.Nifti1Image(np.round(vol, 2).astype(np.float32), grid.affine), path)
            analysis["images"] = [{"url": str(path), "value_type": "z"}]
    (folder / "doc.json").write_text(json.dumps(doc))
    return doc, Studyset(folder / "doc.json")


def test_correlation_distribution_decoder_matches_nimare(laird_with_maps):
    """mean and std of arctanh(r) over each feature's study maps. atol 1e-5: NiMARE
    correlates in float32 (relative error ~1e-6 on r), we in float64."""
    from nimare.decode.continuous import CorrelationDistributionDecoder as Ref

    from nimare_dask.decode import CorrelationDistributionDecoder
    from nimare_dask.decode.continuous import CorrelationDistributionDecoder as Same

    assert Same is CorrelationDistributionDecoder
    doc, ours_ss = laird_with_maps
    features = [
        "Neurosynth_TFIDF__memory",
        "Neurosynth_TFIDF__emotional",
        "Neurosynth_TFIDF__reward",
    ]
    ref = _nimare_fit(Ref, doc, features=features)
    assert len(ref.inputs_["id"]) == 15
    ours = CorrelationDistributionDecoder(features=features).fit(ours_ss)
    assert ours.features_ == list(ref.results_.maps)
    for f in ours.features_:  # the same studies per feature, read as the same values
        # (NiMARE squeezes a one-study feature's array to 1-D)
        theirs = np.atleast_2d(ref.results_.maps[f])
        np.testing.assert_array_equal(ours.study_maps(f).compute(), theirs)
    grid = ours_ss.grid
    # a study-like image: the first feature's mean map plus noise
    rng = np.random.default_rng(3)
    mean_map = ours.study_maps(features[0]).mean(axis=0).compute()
    img = grid.to_image(mean_map + rng.normal(0, 0.5, mean_map.size).astype(np.float32))
    theirs = _quiet(ref.transform, img)
    got = ours.transform(img)
    assert list(got.columns) == ["mean", "std"] and got.index.name == "feature"
    assert (got["std"] > 0).any() and got["mean"].abs().max() > 0.1  # not a degenerate case
    np.testing.assert_allclose(got.to_numpy(), theirs.loc[got.index].to_numpy(float), atol=1e-5)
    # blocks of 4 analyses x 50,000 voxels: the same table (Chan's combination of moments)
    small = CorrelationDistributionDecoder(features=features, chunks=(4, 50_000)).fit(ours_ss)
    np.testing.assert_allclose(small.transform(img).to_numpy(), got.to_numpy(), rtol=1e-12)
    assert ours.results_.tables["correlation"] is got


def test_decode_cli_distribution_matches_nimare(laird_with_maps, tmp_path):
    """``nimare-dask decode --decoder distribution`` on a NIMADS JSON with study z maps gives
    NiMARE's table (same tolerance as above: NiMARE correlates in float32)."""
    from nimare.decode.continuous import CorrelationDistributionDecoder as Ref

    from nimare_dask.cli import main

    doc, ours_ss = laird_with_maps
    features = ["Neurosynth_TFIDF__memory", "Neurosynth_TFIDF__reward"]
    src = tmp_path / "doc.json"
    src.write_text(json.dumps(doc))
    rng = np.random.default_rng(4)
    img = ours_ss.grid.to_image(rng.normal(0, 1, ours_ss.grid.n_voxels).astype(np.float32))
    img_path = tmp_path / "map.nii.gz"
    img.to_filename(img_path)
    out = tmp_path / "table.tsv"
    args = ["decode", str(src), str(img_path), "--decoder", "distribution", "--features",
            *features, "--output", str(out), "--n-workers", "1"]  # fmt: skip
    assert main(args) == 0
    got = pd.read_csv(out, sep="\t", index_col="feature")
    theirs = _quiet(_nimare_fit(Ref, doc, features=features).transform, img)
    np.testing.assert_allclose(
        got[["mean", "std"]].to_numpy(), theirs.loc[got.index].to_numpy(float), atol=1e-5
    )

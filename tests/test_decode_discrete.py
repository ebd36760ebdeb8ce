"""Neurosynth, BrainMap and ROI-association decoders against NiMARE 0.22.1.

On NiMARE's laird studyset (17 studies, 728 labels carried by some study). Tolerances: the
same closed forms in float64, so columns agree to rtol 1e-9 (chi-square tails and their
log-space corrections differ in the last bits only); the ROI regressor is a float32 mean in
NiMARE and a float64 mean here, so its r agrees to atol 1e-6.
"""

from __future__ import annotations

import warnings

import nimare  # noqa: F401 (the oracle, a test dependency)
import numpy as np
import pandas as pd
import pytest
from _parity import quiet as _quiet

from nimare_dask import Studyset
from nimare_dask.decode import (
    BrainMapDecoder,
    NeurosynthDecoder,
    ROIAssociationDecoder,
    brainmap_decode,
    neurosynth_decode,
)
from nimare_dask.studyset import Annotations

RTOL = 1e-9
NS_COLUMNS = ["pForward", "zForward", "probForward", "pReverse", "zReverse", "probReverse"]
BM_COLUMNS = ["pForward", "zForward", "likelihoodForward", "pReverse", "zReverse", "probReverse"]


@pytest.fixture(scope="module")
def laird_json(nimare_resources):
    return nimare_resources / "neurosynth_laird_studyset.json"


@pytest.fixture(scope="module")
def laird(laird_json):
    return Studyset(laird_json)


@pytest.fixture(scope="module")
def nimare_laird(laird_json):
    from nimare.nimads import Studyset as NiMAREStudyset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NiMAREStudyset(str(laird_json))


def _assert_frames(ours: pd.DataFrame, theirs: pd.DataFrame, columns):
    assert list(ours.columns) == columns == list(theirs.columns)
    assert ours.index.name == theirs.index.name
    assert list(ours.index) == list(theirs.index)
    for col in columns:
        np.testing.assert_allclose(
            ours[col].to_numpy(float),
            theirs[col].to_numpy(float),
            rtol=RTOL,
            atol=1e-300,
            equal_nan=True,
            err_msg=col,
        )


@pytest.mark.parametrize("correction", ["bh", None, "by", "bonferroni"])
def test_neurosynth_decoder_matches_nimare(laird, nimare_laird, correction):
    from nimare.decode.discrete import NeurosynthDecoder as Ref

    ids = list(laird.ids[:7])
    ref = Ref(correction=correction)
    _quiet(ref.fit, nimare_laird)
    ours = NeurosynthDecoder(correction=correction).fit(laird)
    _assert_frames(ours.transform(ids), _quiet(ref.transform, ids), NS_COLUMNS)


def test_neurosynth_options_match_nimare(laird, nimare_laird):
    from nimare.decode.discrete import NeurosynthDecoder as Ref

    ids, ids2 = list(laird.ids[:6]), list(laird.ids[8:15])
    for kwargs in ({"prior": None}, {"min_studies": 3}, {"min_studies": 0.2}):
        ref = Ref(**kwargs)
        _quiet(ref.fit, nimare_laird)
        ours = NeurosynthDecoder(**kwargs).fit(laird)
        _assert_frames(ours.transform(ids, ids2), _quiet(ref.transform, ids, ids2), NS_COLUMNS)


@pytest.mark.parametrize("correction", ["bh", None])
def test_brainmap_decoder_matches_nimare(laird, nimare_laird, correction):
    from nimare.decode.discrete import BrainMapDecoder as Ref

    # a large selection, so that some labels reach the 5 selected studies BrainMap needs;
    # NiMARE loops over labels here, so a subset keeps the test fast
    ids = list(laird.ids[:12])
    counts = np.asarray((laird.annotation_matrix.values >= 0.001).sum(axis=0)).ravel()
    features = [laird.labels[i] for i in np.flatnonzero(counts > 0)[:150]]
    ref = Ref(features=features, correction=correction)
    _quiet(ref.fit, nimare_laird)
    ours = BrainMapDecoder(features=features, correction=correction).fit(laird)
    out = ours.transform(ids)
    _assert_frames(out, _quiet(ref.transform, ids), BM_COLUMNS)
    if correction is None:
        assert (out["pForward"] < 1).any()  # the binomial test was exercised


def test_function_forms_accept_nimare_tables_and_studysets(laird, nimare_laird):
    from nimare.decode.discrete import brainmap_decode as ref_bm
    from nimare.decode.discrete import neurosynth_decode as ref_ns

    coords = nimare_laird.coordinates
    ann = nimare_laird.annotations_df
    features = [c for c in ann.columns if "__" in c][:300]
    ids = list(laird.ids[:9])
    theirs_ns = _quiet(ref_ns, coords, ann, ids, features=features)
    _assert_frames(neurosynth_decode(coords, ann, ids, features=features), theirs_ns, NS_COLUMNS)
    # a Studyset as the database
    _assert_frames(neurosynth_decode(laird, ids=ids, features=features), theirs_ns, NS_COLUMNS)
    # pandas sparse annotation columns (our Studyset.annotations) stay sparse, same answer
    sparse = neurosynth_decode(laird.coordinates, laird.annotations, ids, features=features)
    _assert_frames(sparse, theirs_ns, NS_COLUMNS)
    theirs_bm = _quiet(ref_bm, coords, ann, ids, features=features)
    _assert_frames(brainmap_decode(coords, ann, ids, features=features), theirs_bm, BM_COLUMNS)
    _assert_frames(brainmap_decode(laird, ids=ids, features=features), theirs_bm, BM_COLUMNS)


def test_roi_association_decoder_matches_nimare(laird, nimare_laird, nimare_test_data):
    from nimare.decode.discrete import ROIAssociationDecoder as Ref

    roi = str(nimare_test_data / "amygdala_roi.nii.gz")
    ref = Ref(roi)
    _quiet(ref.fit, nimare_laird)
    theirs = _quiet(ref.transform)
    dec = ROIAssociationDecoder(roi).fit(laird)
    ours = dec.transform()
    assert list(ours.index) == list(theirs.index) and ours.index.name == "feature"
    np.testing.assert_allclose(dec.roi_values_, ref.roi_values_, atol=1e-7)
    np.testing.assert_allclose(ours["r"], theirs["r"].to_numpy(float), atol=1e-6)
    # kernel arguments are forwarded, unknown keywords raise
    assert ROIAssociationDecoder(roi, kernel__r=6).kernel_transformer.r == 6.0
    with pytest.raises(TypeError, match="unexpected keyword"):
        ROIAssociationDecoder(roi, r=6)


def test_zero_margin_gives_chi2_zero_not_two(laird, nimare_laird):
    """A label carried by every study: NiMARE's chi-square is 2.0 (p = 0.157), ours 0 (p = 1).

    This is the documented difference of ``stats.chi2.two_way_counts``; every other label is
    unaffected when no correction mixes them (correction=None).
    """
    from nimare.decode.discrete import neurosynth_decode as ref_ns

    n = len(laird)
    values = np.zeros((n, 2), np.float32)
    values[:, 0] = 0.3  # every study
    values[:6, 1] = 0.2
    analyses = laird.analyses[["id", "study_id", "contrast_id"]]
    pts = laird.coordinates[["id", "x", "y", "z"]].assign(space="MNI")
    ss = Studyset.from_tables(analyses, pts, annotations=Annotations(values, ["all", "some"]))
    ids = list(ss.ids[:8])
    ours = NeurosynthDecoder(correction=None).fit(ss).transform(ids)
    ann = pd.DataFrame({"id": ss.ids, "all": values[:, 0], "some": values[:, 1]})
    theirs = _quiet(ref_ns, ss.coordinates, ann, ids, features=["all", "some"], correction=None)
    assert ours.loc["all", "pReverse"] == 1.0
    assert theirs.loc["all", "pReverse"] == pytest.approx(0.1572992, rel=1e-6)
    _assert_frames(ours.loc[["some"]], theirs.loc[["some"]], NS_COLUMNS)


def test_errors(laird):
    dec = NeurosynthDecoder().fit(laird)
    with pytest.raises(KeyError, match="unknown analysis"):
        dec.transform(["nope-1"])
    with pytest.raises(ValueError, match="correction"):
        NeurosynthDecoder(correction="holm").fit(laird).transform(list(laird.ids[:3]))
    with pytest.raises(ValueError, match="min_studies"):
        NeurosynthDecoder(min_studies=100).fit(laird).transform(list(laird.ids[:3]))
    with pytest.raises(AttributeError, match="not fitted"):
        BrainMapDecoder().transform(list(laird.ids[:3]))
    with pytest.raises(TypeError, match="needs ids"):
        neurosynth_decode(laird)

"""Decoders on real Neurosynth v7 data against NiMARE 0.22.1, and a whole-database run.

Both packages read the same sliced database files (300 studies drawn with a fixed seed, all
their foci and spaces, 5 LDA50 topics) written to ``tmp_path`` in Neurosynth's file format.

Tolerances: feature maps within 1 float32 ulp (integer counts, identical float64 chi-square
expressions, float32 cast; NiMARE's z has a CPU-dependent last bit, ``tests/_parity.py``);
Pearson r atol 1e-5 (NiMARE correlates in float32); Neurosynth and
BrainMap decoder columns rtol 1e-9 (same float64 closed forms).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _parity import assert_within_ulp
from _parity import quiet as _quiet

from nimare_dask import open_studyset
from nimare_dask.decode import BrainMapDecoder, CorrelationDecoder, NeurosynthDecoder
from nimare_dask.io import convert_neurosynth_to_studyset
from nimare_dask.meta.cbma import MKDAChi2
from nimare_dask.workflows import amygdala_roi

pytestmark = pytest.mark.database
import nimare  # noqa: E402, F401 (the oracle, a test dependency)

NS = "data-neurosynth_version-7"
TOPICS = [
    "10_food_taste_weight",
    "13_fear_threat_smokers",
    "32_pain_somatosensory_stimulation",
    "26_emotional_amygdala_negative",
    "3_cortex_anterior_cingulate",
]
R_ATOL = 1e-5
RTOL = 1e-9


def _topic_columns(folder) -> tuple[list[str], list[int]]:
    vocab = (folder / f"{NS}_vocab-LDA50_vocabulary.txt").read_text().split("\n")
    vocab = [v for v in vocab if v]
    cols = [vocab.index(t) for t in TOPICS]
    return [vocab[c] for c in cols], cols


@pytest.fixture(scope="module")
def sliced(shared_data, tmp_path_factory):
    """300 studies x 5 topics in Neurosynth's file format."""
    src = shared_data / "neurosynth-v7"
    out = tmp_path_factory.mktemp("ns300")
    meta = pd.read_table(src / f"{NS}_metadata.tsv.gz", dtype={"id": str})
    rows = np.sort(np.random.default_rng(0).choice(len(meta), 300, replace=False))
    ids = set(meta["id"].iloc[rows])
    meta.iloc[rows].to_csv(out / f"{NS}_metadata.tsv.gz", sep="\t", index=False)
    coords = pd.read_table(src / f"{NS}_coordinates.tsv.gz", dtype={"id": str})
    coords[coords["id"].isin(ids)].to_csv(out / f"{NS}_coordinates.tsv.gz", sep="\t", index=False)
    names, cols = _topic_columns(src)
    feats = sp.load_npz(src / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz")
    sp.save_npz(
        out / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz",
        sp.csr_matrix(feats.tocsr()[rows][:, cols]),
    )
    (out / f"{NS}_vocab-LDA50_vocabulary.txt").write_text("\n".join(names) + "\n")
    return {
        "coordinates": out / f"{NS}_coordinates.tsv.gz",
        "metadata": out / f"{NS}_metadata.tsv.gz",
        "annotations": {
            "features": str(out / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz"),
            "vocabulary": str(out / f"{NS}_vocab-LDA50_vocabulary.txt"),
        },
    }


@pytest.fixture(scope="module")
def pair(sliced):
    from nimare.io import convert_neurosynth_to_studyset as ref_convert

    args = (str(sliced["coordinates"]), str(sliced["metadata"]), sliced["annotations"])
    ours = _quiet(convert_neurosynth_to_studyset, *args)
    theirs = _quiet(ref_convert, *args)
    assert list(ours.ids) == list(theirs.ids)
    return ours, theirs


@pytest.fixture(scope="module")
def nimare_decoder(pair):
    from nimare.decode.continuous import CorrelationDecoder as Ref

    dec = Ref()
    _quiet(dec.fit, pair[1])
    return dec


def test_feature_maps_and_r_match_nimare(pair, nimare_decoder, tmp_path):
    ours_ss, _ = pair
    loc = tmp_path / "ns300.zarr"
    ours_ss.to_zarr(loc)
    dec = CorrelationDecoder(chunks={"analysis": 64, "voxel": 8192}).fit(open_studyset(loc))
    # NiMARE's reader sorts the labels; ours keeps the vocabulary order
    assert sorted(dec.features_) == sorted(nimare_decoder.results_.maps)
    assert len(dec.features_) == 5
    for f in dec.features_:
        # 1 float32 ulp: NiMARE's z goes through CPU-dependent log/exp (tests/_parity.py)
        assert_within_ulp(
            dec.maps_.get_map(f, "array"), nimare_decoder.results_.maps[f], maxulp=1, err_msg=f
        )
    rng = np.random.default_rng(1)
    base = nimare_decoder.results_.maps[dec.features_[3]]
    img = ours_ss.grid.to_image(base + rng.normal(size=base.size).astype(np.float32))
    theirs = _quiet(nimare_decoder.transform, img)["r"]
    np.testing.assert_allclose(
        dec.transform(img)["r"], theirs.loc[dec.features_].to_numpy(float), atol=R_ATOL
    )


@pytest.fixture(scope="module")
def amygdala_ids(pair):
    ids = pair[0].get_studies_by_coordinate(np.array([[-24.0, -4.0, -20.0], [24, -4, -20]]), 20)
    assert len(ids) >= 20
    return ids


def test_neurosynth_and_brainmap_decoders_match_nimare(pair, amygdala_ids):
    from nimare.decode.discrete import BrainMapDecoder as RefBM
    from nimare.decode.discrete import NeurosynthDecoder as RefNS

    ours_ss, theirs_ss = pair
    for ours_cls, ref_cls in ((NeurosynthDecoder, RefNS), (BrainMapDecoder, RefBM)):
        ref = ref_cls()
        _quiet(ref.fit, theirs_ss)
        theirs = _quiet(ref.transform, amygdala_ids)
        ours = ours_cls().fit(ours_ss).transform(amygdala_ids)
        assert list(ours.columns) == list(theirs.columns)
        assert sorted(ours.index) == sorted(theirs.index)
        theirs = theirs.loc[ours.index]
        assert (ours["pForward"] < 1).any()  # the tests ran (not the p = 1 edge rules)
        for col in ours.columns:
            np.testing.assert_allclose(
                ours[col], theirs[col].to_numpy(float), rtol=RTOL, equal_nan=True, err_msg=col
            )


@pytest.fixture(scope="module")
def neurosynth_store(shared_data, tmp_path_factory):
    """The whole Neurosynth v7 database with its 50 LDA topics, as a store."""
    src = shared_data / "neurosynth-v7"
    ss = _quiet(
        convert_neurosynth_to_studyset,
        src / f"{NS}_coordinates.tsv.gz",
        src / f"{NS}_metadata.tsv.gz",
        src / f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz",
    )
    loc = tmp_path_factory.mktemp("ns") / "neurosynth.zarr"
    ss.to_zarr(loc)
    return loc


def test_whole_database_decoder_reduced_size(neurosynth_store):
    """All 14,371 studies x 5 topics, modest chunks: the same maps as a whole-database fit."""
    ss = open_studyset(neurosynth_store)
    dec = CorrelationDecoder(
        feature_group="LDA50_abstract_weight",
        features=TOPICS,
        chunks={"analysis": 2048, "voxel": 16384},
    ).fit(ss)
    assert len(dec.features_) == 5 and dec.maps_.is_lazy
    feature = dec.features_[3]  # the amygdala topic
    sel = ss.get_studies_by_label(feature)
    rest = sorted(set(ss.ids) - set(sel))
    ref = MKDAChi2().fit(ss.slice(sel), ss.slice(rest)).get_map("z_desc-association", "array")
    np.testing.assert_array_equal(dec.maps_.get_map(feature, "array"), ref)
    out = dec.transform(ref)
    assert out["r"].idxmax() == feature and out.loc[feature, "r"] == pytest.approx(1.0)
    # decoding the amygdala ROI puts the emotion/amygdala topic first
    top = dec.top_terms(1, img=amygdala_roi())
    assert top.index[0] == feature

"""CorrelationDecoder: parity with NiMARE 0.22.1, blocked maps = the estimators' maps, store.

Fast tests on NiMARE's bundled ``neurosynth_laird_studyset.json`` (17 studies, 3,228 TF-IDF
labels, 728 of them carried by at least one study).

Tolerances:

* feature maps vs NiMARE: within **1 float32 ulp** (the same integer counts and the same
  float64 chi-square expressions, cast to float32; the z map goes through the normal tail
  functions, whose last bit in NiMARE depends on the CPU: ``tests/_parity.py``);
* blocked maps vs our own MKDAChi2/MKDADensity fits: bitwise equal (same functions);
* Pearson r vs NiMARE: atol 1e-5. NiMARE correlates in float32 (its r of a map with a scaled
  copy of itself is 1.0000027); we accumulate in float64 and agree with a float64
  ``np.corrcoef`` to 1e-10 (checked too);
* ALE (per-feature fits) vs NiMARE: float32 precision, rtol 1e-5 on z (the ALE histogram null
  is the same convolution; a bin-edge rounding can move a p-value by one bin).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _parity import assert_within_ulp

from nimare_dask import Studyset, open_studyset
from nimare_dask.decode import (
    CorrelationDecoder,
    FeatureMaps,
    list_feature_maps,
    open_feature_maps,
)
from nimare_dask.decode import featuremaps as fm
from nimare_dask.decode.featuremaps import DENSITY_TARGETS, PAIRWISE_TARGETS
from nimare_dask.meta.cbma import ALE, MKDAChi2, MKDADensity
from nimare_dask.studyset import Annotations

R_ATOL = 1e-5  # NiMARE's float32 Pearson (see above)
R64_ATOL = 1e-10  # float64 reference


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


def _counts(ss: Studyset) -> np.ndarray:
    vals = ss.annotation_matrix.values
    ge = vals >= 0.001
    return np.asarray(ge.sum(axis=0)).ravel()


@pytest.fixture(scope="module")
def features(laird):
    """Five labels carried by 3 to 11 of the 17 studies."""
    counts = _counts(laird)
    idx = np.flatnonzero(counts >= 3)
    # a spread of frequencies: the most common ones and a few rarer ones
    order = idx[np.argsort(-counts[idx], kind="stable")]
    picks = list(order[:3]) + list(order[-2:])
    return [laird.labels[i] for i in picks]


@pytest.fixture(scope="module")
def test_image(laird):
    rng = np.random.default_rng(0)
    return laird.grid.to_image(rng.normal(size=laird.grid.n_voxels).astype(np.float32))


@pytest.fixture(scope="module")
def nimare_decoder(nimare_laird, features):
    from nimare.decode.continuous import CorrelationDecoder as NiMARECorrelationDecoder

    dec = NiMARECorrelationDecoder(features=features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dec.fit(nimare_laird)
    return dec


def test_feature_maps_and_r_match_nimare(laird, features, nimare_decoder, test_image):
    dec = CorrelationDecoder(features=features).fit(laird)
    assert dec.features_ == list(nimare_decoder.results_.maps)
    for f in features:
        ours = dec.maps_.get_map(f, return_type="array")
        assert ours.dtype == np.float32
        assert_within_ulp(ours, nimare_decoder.results_.maps[f], maxulp=1, err_msg=f)
    # a map correlated with itself plus noise: a realistic spread of r
    img = laird.grid.to_image(
        dec.maps_.get_map(features[0], "array")
        + test_image.get_fdata()[laird.grid.mask].astype(np.float32)
    )
    ours = dec.transform(img)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nimare_decoder.transform(img)
    assert ours.index.name == "feature" and list(ours.columns) == ["r"]
    assert list(ours.index) == list(theirs.index)
    np.testing.assert_allclose(ours["r"], theirs["r"], atol=R_ATOL, rtol=0)
    assert ours["r"].iloc[0] > 0.5  # the feature whose map we used


def test_feature_selection_matches_nimare(laird, nimare_laird):
    from nimare.decode.continuous import CorrelationDecoder as NiMARECorrelationDecoder

    group = "Neurosynth_TFIDF"
    short = ["amygdala", "emotion", "reward", "not_a_term_at_all", "memory"]
    ref = NiMARECorrelationDecoder(feature_group=group, features=short)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref._collect_inputs(nimare_laird, drop_invalid=True)
        ref._preprocess_input(nimare_laird)
    dec = CorrelationDecoder(feature_group=group, features=short)
    dec.fit(laird)
    assert dec.features_ == ref.features_
    assert all(f.startswith(f"{group}__") for f in dec.features_)


def _with_labels(ss: Studyset, values: np.ndarray, labels) -> Studyset:
    """The same analyses and foci with other annotations (rows in ``ss.ids`` order)."""
    analyses = ss.analyses[["id", "study_id", "contrast_id"]]
    pts = ss.coordinates[["id", "x", "y", "z"]].assign(space="MNI")
    return Studyset.from_tables(analyses, pts, annotations=Annotations(values, labels))


def test_pairwise_drops_features_carried_by_every_study(laird):
    n = len(laird)
    values = np.zeros((n, 3), np.float32)
    values[:, 0] = 0.5  # every study: nothing to compare with
    values[:5, 1] = 0.2
    values[:, 2] = 0.0005  # below the threshold everywhere
    ss = _with_labels(laird, values, ["all", "some", "none"])
    dec = CorrelationDecoder().fit(ss)
    assert dec.features_ == ["some"]
    # a one-sample estimator keeps a feature carried by every study
    dec1 = CorrelationDecoder(meta_estimator=MKDADensity(), target_image="z").fit(ss)
    assert dec1.features_ == ["all", "some"]
    with pytest.raises(ValueError, match="no decodable features"):
        CorrelationDecoder(features=["all", "none"]).fit(ss)


@pytest.mark.parametrize("target", PAIRWISE_TARGETS)
def test_blocked_pairwise_maps_equal_mkdachi2_fits(laird, features, target):
    dec = CorrelationDecoder(features=features[:2], target_image=target).fit(laird)
    for f in features[:2]:
        sel = laird.get_studies_by_label(f)
        rest = sorted(set(laird.ids) - set(sel))
        ref = MKDAChi2().fit(laird.slice(sel), laird.slice(rest)).get_map(target, "array")
        np.testing.assert_array_equal(dec.maps_.get_map(f, "array"), ref, err_msg=f)


@pytest.mark.parametrize("target", DENSITY_TARGETS)
def test_blocked_density_maps_equal_mkdadensity_fits(laird, features, target):
    dec = CorrelationDecoder(
        features=features[:2], meta_estimator=MKDADensity(), target_image=target
    ).fit(laird)
    assert dec.maps_.info["method"] == "blocked-counts"
    for f in features[:2]:
        ref = MKDADensity().fit(laird.slice(laird.get_studies_by_label(f)))
        np.testing.assert_array_equal(
            dec.maps_.get_map(f, "array"), ref.get_map(target, "array"), err_msg=f
        )


def test_chunking_does_not_change_the_maps(laird, features):
    ref = CorrelationDecoder(features=features).fit(laird).maps_.maps.values
    small = CorrelationDecoder(
        features=features, chunks={"analysis": 4, "voxel": 5000, "feature": 2}
    ).fit(laird)
    np.testing.assert_array_equal(small.maps_.maps.values, ref)


def test_blocked_graph_task_names(laird, features):
    from nimare_dask.decode.selection import label_indicator
    from nimare_dask.kernels import MKDAKernel

    ind = label_indicator(laird, features)
    chunks = fm.resolve_chunks({"analysis": 8}, len(features), laird.grid.n_voxels)
    arr = fm.blocked_feature_maps(
        laird, MKDAKernel(), ind, "z_desc-association", "pairwise", chunks
    )
    names = {k[0] if isinstance(k, tuple) else k for k in arr.dask}
    prefixes = {n.rsplit("-", 1)[0] for n in names}
    assert {"decode-ma", "decode-counts", "decode-zmaps"} <= prefixes
    assert arr.shape == (len(features), laird.grid.n_voxels) and arr.dtype == np.float32


def test_resolve_chunks_sizes_blocks_by_feature_count():
    small = fm.resolve_chunks(None, 50, 228483)
    big = fm.resolve_chunks(None, 7547, 228483)
    assert small["voxel"] == 32768  # capped (2-byte voxel offsets)
    assert 4 * 7547 * big["voxel"] <= fm.DEFAULT_MAP_CHUNK_BYTES
    assert big["voxel"] >= 2048
    with pytest.raises(ValueError, match="chunks may name"):
        fm.resolve_chunks({"studies": 3}, 5, 100)


def test_one_sample_ale_is_fit_per_feature(laird, nimare_laird, features, tmp_path):
    from nimare.decode.continuous import CorrelationDecoder as NiMARECorrelationDecoder
    from nimare.meta.cbma import ALE as NiMAREALE

    feats = features[:2]
    dec = CorrelationDecoder(
        features=feats, meta_estimator=ALE(kernel__fwhm=10), target_image="z"
    ).fit(laird)
    assert dec.maps_.info["method"] == "per-feature-fit"
    ref = NiMARECorrelationDecoder(
        features=feats, meta_estimator=NiMAREALE(kernel__fwhm=10), target_image="z"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(nimare_laird)
    for f in feats:
        np.testing.assert_allclose(
            dec.maps_.get_map(f, "array"), ref.results_.maps[f], rtol=1e-5, atol=1e-6
        )
    # persisted batch by batch (one stored feature chunk per batch of fits)
    laird.to_zarr(tmp_path / "laird.zarr")
    stored = CorrelationDecoder(
        features=feats,
        meta_estimator=ALE(kernel__fwhm=10),
        target_image="z",
        chunks={"feature": 1},
    ).fit(open_studyset(tmp_path / "laird.zarr"))
    assert stored.maps_.is_lazy
    np.testing.assert_array_equal(stored.maps_.maps.values, dec.maps_.maps.values)


def test_store_persists_and_reuses_maps(laird, features, tmp_path, monkeypatch, test_image):
    loc = tmp_path / "laird.zarr"
    laird.to_zarr(loc)
    ss = open_studyset(loc)
    dec = CorrelationDecoder(features=features).fit(ss)
    assert dec.maps_.is_lazy and "derived/decoder/" in dec.maps_.location
    r_first = dec.transform(test_image)
    info = dec.maps_.info
    assert info["complete"] and info["features"] == features
    assert info["frequency_threshold"] == 0.001
    assert info["estimator"]["class"] == "MKDAChi2"
    assert info["kernel"]["class"] == "MKDAKernel" and info["kernel"]["params"]["r"] == 10
    assert info["studyset_fingerprint"] == ss.fingerprint
    assert info["grid"]["fingerprint"] == ss.grid.fingerprint
    table = list_feature_maps(loc)
    assert len(table) == 1 and table["n_features"].iloc[0] == len(features)

    # a second fit with the same inputs reuses the stored maps: nothing is recomputed
    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr("nimare_dask.decode.continuous.blocked_feature_maps", boom)
    again = CorrelationDecoder(features=features, n_cores=1).fit(open_studyset(loc))
    assert again.maps_.location == dec.maps_.location
    pd.testing.assert_frame_equal(again.transform(test_image), r_first)
    # other parameters: other maps (and the old ones stay)
    with pytest.raises(AssertionError, match="recomputed"):
        CorrelationDecoder(features=features, frequency_threshold=0.01).fit(open_studyset(loc))
    monkeypatch.undo()

    # a lab shares the store: open the maps without the studyset's tables or a fit
    shared = CorrelationDecoder.from_store(str(loc))
    assert shared.features_ == features and shared.target_image == "z_desc-association"
    pd.testing.assert_frame_equal(shared.transform(test_image), r_first)
    maps = open_feature_maps(loc)
    assert isinstance(maps, FeatureMaps) and maps.n_features == len(features)
    np.testing.assert_array_equal(
        maps.maps.values, CorrelationDecoder(features=features).fit(laird).maps_.maps.values
    )
    # no half-written groups are left behind
    assert not [p for p in (loc / "derived" / "decoder").iterdir() if p.name.startswith(".")]


def test_open_feature_maps_errors(laird, tmp_path):
    loc = tmp_path / "empty.zarr"
    laird.to_zarr(loc)
    with pytest.raises(KeyError, match="no decoder feature maps"):
        open_feature_maps(loc)
    with pytest.raises(KeyError, match="no published feature maps"):
        open_feature_maps(loc, key="0123456789abcdef")


def test_load_imgs_and_transform_match_nimare(laird, features, nimare_decoder, tmp_path):
    from nimare.decode.continuous import CorrelationDecoder as NiMARECorrelationDecoder

    grid = laird.grid
    imgs = {}
    for f in features[:3]:
        path = tmp_path / f"{f}.nii.gz"
        grid.to_image(nimare_decoder.results_.maps[f]).to_filename(path)
        imgs[f] = str(path)
    target = grid.to_image(nimare_decoder.results_.maps[features[1]] * 0.5 + 1.0)
    ours = CorrelationDecoder().load_imgs(imgs, mask=grid.mask_image())
    from_dir = CorrelationDecoder().load_imgs(str(tmp_path), mask=grid.mask_image())
    ref = NiMARECorrelationDecoder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.load_imgs(imgs, mask=grid.mask_image())
        theirs = ref.transform(target)
    r = ours.transform(target)
    np.testing.assert_allclose(r["r"], theirs["r"].to_numpy(float), atol=R_ATOL)
    x = grid.to_map(target).astype(np.float64)
    exact = [np.corrcoef(x, ours.maps_.get_map(f, "array").astype(np.float64))[0, 1] for f in imgs]
    np.testing.assert_allclose(r["r"], exact, atol=R64_ATOL, rtol=0)
    assert sorted(from_dir.features_) == sorted(imgs)
    assert r.loc[features[1], "r"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="mask"):
        CorrelationDecoder().load_imgs(imgs)


def test_transform_accepts_arrays_and_reports_top_terms(laird, features):
    dec = CorrelationDecoder(features=features).fit(laird)
    values = dec.maps_.get_map(features[2], "array")
    r = dec.transform(values)
    top = dec.top_terms(2)
    assert top.index[0] == features[2] and top["r"].iloc[0] == pytest.approx(1.0)
    assert len(top) == 2 and top["r"].is_monotonic_decreasing
    low = dec.top_terms(1, ascending=True)
    assert low["r"].iloc[0] == r["r"].min()
    res = dec.results_
    assert res.maps_names == features
    pd.testing.assert_frame_equal(res.tables["correlation"], r)
    with pytest.raises(ValueError, match="1-D array"):
        dec.transform(values[:10])


def test_constant_map_gives_nan_as_nimare(laird):
    maps = np.zeros((2, laird.grid.n_voxels), np.float32)
    maps[1] = np.linspace(0, 1, laird.grid.n_voxels)
    import xarray as xr

    fmaps = FeatureMaps(
        xr.DataArray(maps, dims=("feature", "voxel"), coords={"feature": ["flat", "ramp"]}),
        laird.grid,
    )
    r = fmaps.correlate(np.linspace(0, 1, laird.grid.n_voxels) ** 2)
    assert np.isnan(r.loc["flat", "r"])
    expected = np.corrcoef(maps[1], np.linspace(0, 1, laird.grid.n_voxels) ** 2)[0, 1]
    assert r.loc["ramp", "r"] == pytest.approx(expected, abs=1e-12)


def test_errors(laird, features):
    with pytest.raises(TypeError, match="CBMA estimator"):
        CorrelationDecoder(meta_estimator="MKDAChi2")
    with pytest.raises(AttributeError, match="not fitted"):
        CorrelationDecoder().transform(np.zeros(laird.grid.n_voxels))
    with pytest.raises(KeyError, match="unknown feature"):
        CorrelationDecoder(features=["no_such_label"]).fit(laird)
    with pytest.raises(ValueError, match="feature_group"):
        CorrelationDecoder(feature_group="nope").fit(laird)
    with pytest.raises(RuntimeError, match="transform"):
        CorrelationDecoder(features=features).fit(laird).top_terms()
    with pytest.raises(ValueError, match="prior"):
        CorrelationDecoder(
            features=features,
            meta_estimator=MKDAChi2(prior=None),
            target_image="prob_desc-FgA_prior",
        ).fit(laird)


def test_studies_without_foci_are_ignored(laird, features):
    analyses = laird.analyses[["id", "study_id", "contrast_id"]]
    extra = pd.DataFrame({"id": ["zz-1"], "study_id": ["zz"], "contrast_id": ["1"]})
    ann = laird.annotation_matrix
    values = np.vstack([np.asarray(ann.values), np.full((1, len(ann.labels)), 0.5, np.float32)])
    ss = Studyset.from_tables(
        pd.concat([analyses, extra], ignore_index=True),
        laird.coordinates[["id", "x", "y", "z"]].assign(space="MNI"),
        annotations=Annotations(sp.csr_matrix(values), ann.labels),
    )
    a = CorrelationDecoder(features=features).fit(ss).maps_.maps.values
    b = CorrelationDecoder(features=features).fit(laird).maps_.maps.values
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="with no foci"):
        CorrelationDecoder(features=features).fit(ss, drop_invalid=False)


def test_fsspec_store_and_distributed_cluster(laird, features):
    """Maps written to an fsspec URL store, and computed by worker processes of a cluster."""
    from distributed import Client, LocalCluster

    ref = CorrelationDecoder(features=features).fit(laird)
    x = ref.maps_.get_map(features[0], "array")
    r_ref = ref.transform(x)
    url = "memory://decode-test/laird.zarr"
    laird.to_zarr(url, overwrite=True)
    dec = CorrelationDecoder(features=features).fit(open_studyset(url))
    assert dec.maps_.location.startswith("memory://")
    np.testing.assert_array_equal(dec.maps_.maps.values, ref.maps_.maps.values)
    pd.testing.assert_frame_equal(CorrelationDecoder.from_store(url).transform(x), r_ref)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cl,
        Client(cl),
    ):
        on_cluster = CorrelationDecoder(features=features).fit(laird)
        np.testing.assert_array_equal(on_cluster.maps_.maps.values, ref.maps_.maps.values)
        pd.testing.assert_frame_equal(on_cluster.transform(x), r_ref)


def test_maps_over_the_memory_limit_go_to_a_store_not_to_ram(laird, tmp_path):
    """Without a studyset store, large maps go to a temporary store (or ``maps_store``)."""
    import gc
    from pathlib import Path

    from nimare_dask.decode import CorrelationDecoder

    features = laird.labels[:20]
    small = CorrelationDecoder(features=features).fit(laird)
    assert not small.maps_.is_lazy  # within in_memory_limit: in memory
    big = CorrelationDecoder(features=features, in_memory_limit=0).fit(laird)
    assert big.maps_.is_lazy and big.maps_.location is not None
    folder = big.maps_.location.split("/derived/")[0]
    np.testing.assert_array_equal(big.maps_.maps.values, small.maps_.maps.values)
    img = small.maps_.get_map(small.features_[0], "array")
    pd.testing.assert_frame_equal(big.transform(img), small.transform(img))
    del big
    gc.collect()
    assert not Path(folder).exists()  # the temporary folder went with the maps
    kept = CorrelationDecoder(features=features, maps_store=tmp_path / "maps").fit(laird)
    assert kept.maps_.is_lazy and (tmp_path / "maps" / "derived" / "decoder").is_dir()
    again = CorrelationDecoder.from_store(tmp_path / "maps")
    np.testing.assert_array_equal(again.maps_.maps.values, small.maps_.maps.values)
    with pytest.raises(ValueError, match="without a maps_store"):
        CorrelationDecoder(features=features, storage_options={"anon": True}).fit(laird)

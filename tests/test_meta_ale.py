"""ALE, ALESubtraction and SCALE against NiMARE 0.22.1 (the oracle).

Tolerances: the MA values are float32 and identical to NiMARE's; the ALE union sums float32
``log1p`` terms in float64 like NiMARE, possibly in another order (chunks), so ALE values agree
to within a float32 ulp of the largest value (atol 1e-8 on values <= 0.1) and the approximate
null, built by the same nearest-bin convolution, agrees bin for bin. p, z and logp are then
compared at float32 precision (rtol 1e-6).
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest

from nimare_dask import Studyset, open_studyset
from nimare_dask.meta.cbma import ALE, SCALE, ALESubtraction
from nimare_dask.meta.kernel import ALEKernel

pytest.importorskip("nimare")

STAT_ATOL = 1e-8  # about 4 float32 ulps at ALE ~0.03 (see module docstring)
P_RTOL = 1e-6  # float32 precision


def _assert_maps(ours, ref, names, stat_names=("stat",)):
    for name in names:
        a = ours.get_map(name, return_type="array")
        b = np.asarray(ref.get_map(name, return_type="array"), dtype=np.float32)
        assert a.dtype == np.float32, name
        if name in stat_names:
            np.testing.assert_allclose(a, b, rtol=0, atol=STAT_ATOL, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=P_RTOL, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def nimare_pain(pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    return NiMAREStudyset(str(pain_json))


@pytest.fixture(scope="module")
def nimare_pain_ale(nimare_pain):
    from nimare.meta.cbma import ALE as NiMAREALE

    return NiMAREALE().fit(nimare_pain)


@pytest.fixture(scope="module")
def pain_ale(pain_studyset):
    return ALE().fit(pain_studyset)


def test_ale_pain_parity(pain_ale, nimare_pain_ale):
    _assert_maps(pain_ale, nimare_pain_ale, ["stat", "p", "z", "logp"])
    ours = pain_ale.null_distributions
    ref = nimare_pain_ale.estimator.null_distributions_
    np.testing.assert_array_equal(ours["histogram_bins"], ref["histogram_bins"])
    # same convolution in the same order: the null histogram is identical up to the bin of the
    # largest ALE value; the mass above it is lumped into the next bin (float64 rounding of a
    # sum in another order); no pruning: the smallest tail masses set the largest z values
    key = "histweights_corr-none_method-approximate"
    top = int(np.round(pain_ale.get_map("stat", return_type="array").max() * 1e5))
    np.testing.assert_array_equal(ours[key][: top + 1], ref[key][: top + 1])
    assert ours[key][top + 1] == pytest.approx(ref[key][top + 1 :].sum(), rel=1e-12)
    assert not ours[key][top + 2 :].any()


def test_ale_threshold_above_lumped_tail(pain_ale, nimare_pain_ale):
    """A cut above the largest observed ALE value is computed from the whole null."""
    from nimare_dask.meta.cbma.ale import approximate_threshold

    ref = nimare_pain_ale.estimator
    for p in (0.001, 1e-6):
        assert pain_ale.estimator.summarystat_threshold(p) == ref._p_to_summarystat(p)
    est = pain_ale.estimator
    nulls = dict(est.null_distributions_)
    tiny = 1e-30  # far beyond the observed maximum: the lumped tail alone exceeds it
    lumped = list(est._lumped_null_)
    cut = approximate_threshold(nulls, lumped, tiny)
    assert cut == ref._p_to_summarystat(tiny)
    assert lumped[2] == nulls["histogram_bins"].size  # the whole null is now kept


def test_ale_result_contents(pain_ale, pain_studyset):
    assert set(pain_ale.maps_names) == {"stat", "p", "z", "logp"}
    assert "eickhoff2012activation" in pain_ale.description
    assert "267 foci from 21 experiments" in pain_ale.description
    assert "334 participants" in pain_ale.description
    assert "@article{eickhoff2012activation" in pain_ale.references
    assert isinstance(pain_ale.estimator, ALE)
    assert pain_ale.estimator.result_ is pain_ale
    # NiMARE's published thresholds for nidm-pain (NIMARE_FACTS section 2.2)
    assert pain_ale.estimator.summarystat_threshold(0.001) == pytest.approx(0.01088)
    assert pain_ale.estimator.summarystat_threshold(0.0001) == pytest.approx(0.01416)


def test_ale_one_dask_compute(pain_studyset):
    calls = []

    def counting_get(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=counting_get):
        ALE(kernel__fwhm=10).fit(pain_studyset)
        assert len(calls) == 1
        # the MA maps in one dask.compute; the permutations then run on the Monte Carlo engine
        ALESubtraction(kernel__fwhm=10, n_iters=5, progress=False).fit(
            pain_studyset.slice(pain_studyset.ids[:11]), pain_studyset.slice(pain_studyset.ids[11:])
        )
        assert len(calls) == 2


def test_ale_any_chunking_same_maps(pain_studyset, pain_ale):
    for chunks in (1, 4, 21):
        res = ALE(chunks=chunks).fit(pain_studyset)
        for name in ("stat", "p", "z"):
            # chunk partials are added in another order: float64 rounding, invisible in float32
            np.testing.assert_array_equal(
                res.get_map(name, return_type="array"), pain_ale.get_map(name, return_type="array")
            )


def test_ale_fixed_fwhm_parity(pain_studyset, nimare_pain):
    from nimare.meta.cbma import ALE as NiMAREALE

    ours = ALE(kernel=ALEKernel(fwhm=10)).fit(pain_studyset)
    ref = NiMAREALE(kernel__fwhm=10).fit(nimare_pain)
    _assert_maps(ours, ref, ["stat", "p", "z", "logp"])


def test_ale_from_store_and_path(pain_studyset, pain_ale, tmp_path):
    loc = pain_studyset.to_zarr(tmp_path / "pain.zarr")
    for source in (open_studyset(loc), str(loc)):
        res = ALE().fit(source)
        np.testing.assert_array_equal(
            res.get_map("p", return_type="array"), pain_ale.get_map("p", return_type="array")
        )


def test_ale_drops_analyses_without_foci(pain_studyset, pain_ale):
    extra = pd.DataFrame({"study_id": ["zz_empty"], "contrast_id": ["1"]})
    analyses = pd.concat([pain_studyset.analyses[["study_id", "contrast_id"]], extra])
    meta = pain_studyset.metadata[["id", "sample_size"]]
    meta = pd.concat([meta, pd.DataFrame({"id": ["zz_empty-1"], "sample_size": [10.0]})])
    ss = Studyset.from_tables(analyses, pain_studyset.coordinates, meta)
    res = ALE().fit(ss)
    np.testing.assert_array_equal(
        res.get_map("z", return_type="array"), pain_ale.get_map("z", return_type="array")
    )


def test_ale_missing_sample_sizes_raise(pain_studyset):
    coords = pain_studyset.coordinates
    ss = Studyset.from_tables(pain_studyset.analyses[["study_id", "contrast_id"]], coords)
    with pytest.raises(ValueError, match="sample size"):
        ALE().fit(ss)
    ALE(kernel__sample_size=20).fit(ss)  # a fixed width needs none


@pytest.mark.filterwarnings("ignore:.*outside the brain mask")
def test_ale_sleuth_parity(nimare_resources):
    from nimare.io import convert_sleuth_to_studyset as nimare_sleuth
    from nimare.meta.cbma import ALE as NiMAREALE

    path = nimare_resources / "semantic_knowledge_children.txt"
    # NiMARE's Sleuth default grid is ale_2mm (LAS order); compare on the MNI 2 mm grid
    nss = nimare_sleuth(str(path), target="mni152_2mm")
    try:
        from nimare_dask.io import convert_sleuth_to_studyset

        ss = convert_sleuth_to_studyset(path, target="mni152_2mm")
    except ImportError:
        coords = nss.coordinates
        analyses = coords[["study_id", "contrast_id"]].drop_duplicates()
        meta = nss.metadata[["id", "sample_sizes"]]
        ss = Studyset.from_tables(analyses, coords[["id", "x", "y", "z"]], meta)
    assert len(ss) == 21 and len(ss.coordinates) == 262
    _assert_maps(ALE().fit(ss), NiMAREALE().fit(nss), ["stat", "p", "z", "logp"])


def test_ale_null_methods():
    with pytest.raises(ValueError, match="null_method"):
        ALE(null_method="exact").fit(None)
    with pytest.raises(TypeError, match="Studyset"):
        ALE().fit([1, 2])


@pytest.fixture(scope="module")
def pain_halves(pain_studyset, nimare_pain):
    ids = list(pain_studyset.ids)
    return (
        pain_studyset.slice(ids[:11]),
        pain_studyset.slice(ids[11:]),
        nimare_pain.slice(ids[:11]),
        nimare_pain.slice(ids[11:]),
    )


def test_ale_subtraction_parity(pain_halves):
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction

    ss1, ss2, n1, n2 = pain_halves
    ours = ALESubtraction(n_iters=10, progress=False).fit(ss1, ss2)
    ref = NiMAREALESubtraction(n_iters=10).fit(n1, n2)
    groups = [f"{m}_desc-group{g}" for g in (1, 2) for m in ("stat", "p", "z", "logp")]
    _assert_maps(
        ours,
        ref,
        ["stat_desc-group1MinusGroup2", *groups],
        stat_names=("stat_desc-group1MinusGroup2", "stat_desc-group1", "stat_desc-group2"),
    )
    diff = [f"{m}_desc-group1MinusGroup2" for m in ("stat", "p", "z", "logp")]
    assert set(ours.maps_names) == {*diff, *groups}
    assert "laird2005ale" in ours.description
    # the permutation p-values are tested in test_fwe_pairwise.py


def test_ale_subtraction_input_errors(pain_halves):
    ss1, ss2, _, _ = pain_halves
    with pytest.raises(ValueError, match="inference_map1"):
        ALESubtraction(n_iters=5, progress=False).fit(ss1, ss2, inference_map1=np.ones(10))
    with pytest.raises(RuntimeError, match="fit"):
        ALESubtraction().correct_fwe_montecarlo(None)


@pytest.fixture(scope="module")
def scale_pool(pain_studyset):
    rng = np.random.default_rng(7)
    grid = pain_studyset.grid
    return grid.voxel_xyz[rng.choice(grid.n_voxels, 3000, replace=False)]


def test_scale_same_null_for_any_blocking(pain_studyset, scale_pool):
    a = SCALE(scale_pool, n_iters=30, random_state=11, iters_per_block=30).fit(pain_studyset)
    b = SCALE(scale_pool, n_iters=30, random_state=11, iters_per_block=7, chunks=5).fit(
        pain_studyset
    )
    for name in ("stat", "p", "z", "logp"):
        np.testing.assert_array_equal(
            a.get_map(name, return_type="array"), b.get_map(name, return_type="array")
        )
    c = SCALE(scale_pool, n_iters=30, random_state=12).fit(pain_studyset)
    assert not np.array_equal(
        a.get_map("p", return_type="array"), c.get_map("p", return_type="array")
    )
    p = a.get_map("p", return_type="array")
    assert p.min() >= 1 / 30 - 1e-7 and p.max() <= 1 - 1 / 30 + 1e-7
    assert set(a.maps_names) == {"stat", "p", "z", "logp"}
    assert "langner2014meta" in a.description


# SCALE against NiMARE (a non-uniform pool, so that "foci drawn from the mask" would be caught):
# tests/test_montecarlo_vs_nimare.py


def test_scale_input_errors(pain_studyset):
    with pytest.raises(TypeError, match="numpy"):
        SCALE([[0, 0, 0]]).fit(pain_studyset)
    with pytest.raises(ValueError, match="shape"):
        SCALE(np.zeros((4, 2))).fit(pain_studyset)

"""MKDADensity, KDA and MKDAChi2 against NiMARE 0.22.1 (the oracle).

Tolerances: MKDA/KDA statistics are integer counts (exact). The approximate nulls are the same
convolutions, so p agrees to float64 rounding; maps are compared at float32 precision
(rtol 1e-6). Chi-square maps are the same closed-form expressions (rtol 1e-6).
"""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest

from nimare_dask.meta.cbma import KDA, MKDAChi2, MKDADensity
from nimare_dask.meta.kernel import KDAKernel, MKDAKernel

pytest.importorskip("nimare")

RTOL = 1e-6  # float32 precision


def _compare(ours, ref, names, mask=None):
    for name in names:
        a = ours.get_map(name, return_type="array")
        b = np.asarray(ref.get_map(name, return_type="array"), dtype=np.float32)
        assert a.dtype == np.float32, name
        if mask is not None:
            a, b = a[mask], b[mask]
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=0, equal_nan=True, err_msg=name)


@pytest.fixture(scope="module")
def nimare_pain(pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    return NiMAREStudyset(str(pain_json))


@pytest.mark.parametrize("r", [10, 6])
def test_mkda_density_parity(pain_studyset, nimare_pain, r):
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    ours = MKDADensity(kernel__r=r).fit(pain_studyset)
    ref = NiMAREMKDADensity(kernel__r=r).fit(nimare_pain)
    _compare(ours, ref, ["stat", "p", "z", "logp"])
    np.testing.assert_array_equal(
        ours.null_distributions["histogram_bins"],
        ref.estimator.null_distributions_["histogram_bins"],
    )
    # coverage fractions: ours in float64, NiMARE's rounded to float32
    np.testing.assert_allclose(
        ours.null_distributions["histogram_means"],
        ref.estimator.null_distributions_["histogram_means"],
        rtol=1e-7,
    )
    assert float(ours.get_map("stat", return_type="array").max()) == 10.0 or r != 10


def test_mkda_density_sample_size_weighting_parity(pain_studyset, nimare_pain):
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    ours = MKDADensity(weighting="sample_size").fit(pain_studyset)
    ref = NiMAREMKDADensity(weighting="sample_size").fit(nimare_pain)
    # weighted stat: float64 dot products in another order, stored in float32
    _compare(ours, ref, ["stat", "p", "z", "logp"])
    assert "square root of its sample size" in ours.description
    np.testing.assert_allclose(ours.estimator.weight_vec_.sum(), len(pain_studyset))


def test_mkda_density_explicit_weights(pain_studyset):
    uniform = MKDADensity().fit(pain_studyset)
    same = MKDADensity(weighting={i: 3.0 for i in pain_studyset.ids}).fit(pain_studyset)
    np.testing.assert_array_equal(
        uniform.get_map("p", return_type="array"), same.get_map("p", return_type="array")
    )
    with pytest.raises(ValueError, match="weights"):
        MKDADensity(weighting=[1.0, 2.0]).fit(pain_studyset)
    with pytest.raises(ValueError, match="weighting"):
        MKDADensity(weighting="size").fit(pain_studyset)


def test_kda_parity(pain_studyset, nimare_pain):
    from nimare.meta.cbma import KDA as NiMAREKDA

    ours = KDA().fit(pain_studyset)
    ref = NiMAREKDA().fit(nimare_pain)
    _compare(ours, ref, ["stat", "p", "z", "logp"])
    np.testing.assert_array_equal(
        ours.null_distributions["histogram_bins"],
        ref.estimator.null_distributions_["histogram_bins"],
    )


def test_mkda_kda_any_chunking(pain_studyset):
    for est in (MKDADensity(), KDA(kernel=KDAKernel(r=8))):
        base = est.fit(pain_studyset)
        for chunks in (1, 6):
            est.set_params(chunks=chunks)
            other = est.fit(pain_studyset)
            for name in ("stat", "p", "z"):
                np.testing.assert_array_equal(
                    other.get_map(name, return_type="array"),
                    base.get_map(name, return_type="array"),
                )


@pytest.fixture(scope="module")
def chi2_pair(pain_studyset, nimare_pain):
    from nimare.meta.cbma import MKDAChi2 as NiMAREMKDAChi2

    ids = list(pain_studyset.ids)
    ours = MKDAChi2().fit(pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:]))
    with warnings.catch_warnings():  # NiMARE divides 0 by 0 for prob_desc-FgA
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = NiMAREMKDAChi2().fit(nimare_pain.slice(ids[:11]), nimare_pain.slice(ids[11:]))
    return ours, ref


def test_mkda_chi2_parity(chi2_pair):
    ours, ref = chi2_pair
    assert set(ours.maps_names) == set(ref.maps)
    c1 = ours.get_map("prob_desc-AgF", return_type="array") * 11
    c2 = ours.get_map("prob_desc-AgU", return_type="array") * 10
    degenerate = np.isclose(c1 + c2, 0) | np.isclose(c1 + c2, 21)
    assert degenerate.any() and not degenerate.all()
    same_everywhere = [n for n in ref.maps if "association" not in n]
    _compare(ours, ref, same_everywhere)
    _compare(ours, ref, [n for n in ref.maps if "association" in n], mask=~degenerate)


def test_mkda_chi2_zero_denominator_is_no_association(chi2_pair):
    ours, ref = chi2_pair
    c1 = ours.get_map("prob_desc-AgF", return_type="array") * 11
    c2 = ours.get_map("prob_desc-AgU", return_type="array") * 10
    degenerate = np.isclose(c1 + c2, 0) | np.isclose(c1 + c2, 21)
    # NiMARE reports chi2 = 2.0 (p = 0.157) where the 2x2 table has an empty margin
    np.testing.assert_array_equal(ref.get_map("chi2_desc-association", "array")[degenerate], 2.0)
    for name, value in (("chi2", 0.0), ("p", 1.0), ("z", 0.0), ("logp", 0.0)):
        got = ours.get_map(f"{name}_desc-association", return_type="array")[degenerate]
        np.testing.assert_array_equal(got, value, err_msg=name)


def test_mkda_chi2_one_compute_and_chunking(pain_studyset, chi2_pair):
    ids = list(pain_studyset.ids)
    calls = []

    def counting_get(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=counting_get):
        res = MKDAChi2(chunks=3).fit(pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:]))
    assert len(calls) == 1
    for name in ("z_desc-association", "z_desc-uniformity", "prob_desc-FgA"):
        np.testing.assert_array_equal(
            res.get_map(name, return_type="array"), chi2_pair[0].get_map(name, return_type="array")
        )


def test_mkda_chi2_prior_and_kernel(pain_studyset):
    ids = list(pain_studyset.ids)
    ss1, ss2 = pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:])
    res = MKDAChi2(prior=None, kernel=MKDAKernel(r=8)).fit(ss1, ss2)
    assert "prob_desc-FgA_prior" not in res.maps_names
    assert "yarkoni2011large" in res.description


def test_mkda_chi2_rejects_empty_group(pain_studyset):
    empty = pain_studyset.slice([])
    with pytest.raises(ValueError, match="no analyses with foci"):
        MKDAChi2().fit(pain_studyset, empty)


def test_custom_mask_parity(pain_studyset, nimare_pain):
    import nibabel as nib
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    grid = pain_studyset.grid
    data = grid.mask.copy()
    data[:, :, : data.shape[2] // 2] = False  # the upper half of the brain
    img = nib.Nifti1Image(data.astype(np.uint8), grid.affine)
    ours = MKDADensity(mask=img).fit(pain_studyset)
    ref = NiMAREMKDADensity(mask=img).fit(nimare_pain)
    assert ours.grid.n_voxels == int(data.sum()) == len(ref.get_map("z", return_type="array"))
    _compare(ours, ref, ["stat", "p", "z"])

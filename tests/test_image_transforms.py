"""nimare_dask.transforms against NiMARE 0.22.1's nimare.transforms."""

import logging
import warnings

import nibabel as nib
import numpy as np
import pytest

from nimare_dask import open_studyset
from nimare_dask import transforms as ours
from nimare_dask.generate import coarse_grid, create_image_studyset
from nimare_dask.studyset.images import has_image, image_arrays, image_matrix

TARGETS = ["z", "p", "t", "beta", "varcope", "d", "g", "g_var"]


def test_conversion_functions_equal_nimare():
    from nimare import transforms as nt

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(scale=3, size=500), [0.0, 8.5, -12.0, 30.0, 45.0, -60.0]])
    dof = rng.integers(2, 300, size=z.size).astype(float)
    p = np.concatenate([rng.uniform(size=200), [1.0, 1e-300, 5e-324, 0.5]])
    chi = np.abs(rng.normal(scale=20, size=200))
    # same formulas evaluated by the same scipy routines: agreement to a few ulp of float64
    tol = {"rtol": 1e-12, "atol": 1e-300}
    for tail in ("one", "two"):
        np.testing.assert_allclose(ours.z_to_nlogp(z, tail), nt.z_to_nlogp(z, tail), **tol)
        np.testing.assert_allclose(ours.z_to_p(z, tail), nt.z_to_p(z, tail), **tol)
        np.testing.assert_allclose(ours.p_to_z(p, tail), nt.p_to_z(p, tail), **tol)
        nl = nt.z_to_nlogp(z, tail)
        np.testing.assert_allclose(ours.nlogp_to_z(nl, tail), nt.nlogp_to_z(nl, tail), **tol)
        for d in (3, 25.0, 250):
            np.testing.assert_allclose(
                ours.t_to_nlogp(z * 3, d, tail), nt.t_to_nlogp(z * 3, d, tail), **tol
            )
    for d in (3, 25.0, 250):
        np.testing.assert_allclose(ours.t_to_z(z * 3, d), nt.t_to_z(z * 3, d), **tol)
        np.testing.assert_allclose(ours.z_to_t(z, d), nt.z_to_t(z, d), **tol)
        np.testing.assert_allclose(
            ours.chi2_to_nlogp(chi * 10, d), nt.chi2_to_nlogp(chi * 10, d), **tol
        )
    # ours broadcast a per-analysis dof; NiMARE takes one dof per call
    np.testing.assert_allclose(
        ours.t_to_z(z, dof), [nt.t_to_z(a, b) for a, b in zip(z, dof, strict=True)], **tol
    )
    np.testing.assert_allclose(ours.chi2_to_nlogp(chi, 1), nt.chi2_to_nlogp(chi, 1), **tol)
    n = np.array([10.0, 25, 100])
    assert ours.sample_sizes_to_dof([20, 25]) == nt.sample_sizes_to_dof([20, 25]) == 43
    assert ours.sample_sizes_to_sample_size([20, 25]) == 45
    x = rng.uniform(0.5, 2, size=3)
    for name, args in {
        "se_to_varcope": (x,),
        "sd_to_varcope": (x, n),
        "samplevar_dataset_to_varcope": (x, n),
        "t_and_varcope_to_beta": (z[:3], x),
        "t_and_beta_to_varcope": (z[:3], x),
        "t_to_d": (z[:3], n),
        "d_to_g": (x, n),
    }.items():
        np.testing.assert_array_equal(getattr(ours, name)(*args), getattr(nt, name)(*args))
    np.testing.assert_array_equal(
        ours.d_to_g(x, n, return_variance=True), nt.d_to_g(x, n, return_variance=True)
    )
    img = nib.Nifti1Image(rng.normal(size=(4, 4, 4)).astype(np.float32), np.eye(4))
    for tail in ("upper", "lower", "two-sided"):
        a = ours.threshold_image(img, 0.5, tail=tail, fill_value=-1)
        b = nt.threshold_image(img, 0.5, tail=tail, fill_value=-1)
        np.testing.assert_array_equal(a.get_fdata(), b.get_fdata())


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("tr") / "imgs"
    truth, ss = create_image_studyset(
        n_studies=3,
        n_analyses_per_study=2,
        missing_fraction=0.5,
        missing_images={"z": 0.5, "t": 0.34, "varcope": 0.5, "beta": 0.34},
        image_types=("beta", "varcope", "se", "t", "z", "p"),
        seed=3,
        target=coarse_grid(2),
        out_dir=out,
    )
    return truth, ss


def _nimare_matrix(nimare_dset, ids, imtype):
    masker = nimare_dset.masker
    table = nimare_dset.images.set_index("id")
    rows = []
    for aid in ids:
        path = table.loc[aid].get(imtype)
        if isinstance(path, str):
            rows.append(masker.transform([path])[0])
        else:
            rows.append(np.full(masker.mask_img_.get_fdata().astype(bool).sum(), np.nan))
    out = np.vstack(rows).astype(np.float32)
    out[~np.isfinite(out) | (out == 0)] = np.nan  # NiMARE's _usable
    return out


def test_image_transformer_equals_nimare(sim):
    from nimare.dataset import Dataset
    from nimare.transforms import ImageTransformer as NiMAREImageTransformer

    truth, ss = sim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            dset = Dataset(truth["dataset_json"], mask=truth["mask"])
            ref = NiMAREImageTransformer(TARGETS, overwrite=True).transform(dset)
        finally:
            logging.disable(logging.NOTSET)
    with pytest.warns(UserWarning, match="Deriving 'z' from a p map"):
        out = ours.ImageTransformer(TARGETS).transform(ss)
    for imtype in TARGETS:
        got = image_matrix(out, imtype).compute()
        exp = _nimare_matrix(ref, ss.ids, imtype)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(exp), err_msg=imtype)
        # NiMARE writes each derived map as a float32 image: same float32 values expected;
        # rtol of 2 float32 ulp allows scipy's tail routines to differ in the last bit
        np.testing.assert_allclose(got, exp, rtol=2.4e-7, err_msg=imtype)
        np.testing.assert_array_equal(
            has_image(out, imtype), ~np.isnan(exp).all(axis=1), err_msg=imtype
        )


def test_transformer_is_lazy_and_stored(tmp_path, sim, monkeypatch):
    _, ss = sim
    from nimare_dask.studyset import images as images_mod

    calls = []
    real = images_mod.read_image_values
    monkeypatch.setattr(
        images_mod, "read_image_values", lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    )
    with pytest.warns(UserWarning, match="unsigned"):  # beta needs t, from an unsigned z
        out = ours.ImageTransformer(["varcope", "beta"]).transform(ss)
    assert calls == []  # nothing read until used
    assert image_arrays(out).types == ["beta", "varcope"]
    out.to_zarr(tmp_path / "t.zarr")
    back = open_studyset(tmp_path / "t.zarr", target=ss.grid)
    for imtype in ("beta", "varcope"):
        np.testing.assert_array_equal(
            image_matrix(back, imtype).compute(), image_matrix(out, imtype).compute()
        )
    # a second transform keeps derived images unless overwrite=True
    again = ours.ImageTransformer("beta").transform(out)
    assert image_arrays(again).types == ["beta", "varcope"]
    with pytest.raises(ValueError, match="not supported"):
        ours.ImageTransformer("q")


def test_resolve_and_transform_images_equal_nimare(tmp_path, sim):
    from nimare import transforms as nt
    from nimare.utils import get_masker

    truth, ss = sim
    masker = get_masker(truth["mask"])
    images = ss.images
    meta = ss.metadata[["id"]].assign(sample_sizes=[[n] for n in ss.sample_sizes])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for target in ("z", "varcope"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ours.transform_images(images, target, masker, meta, out_dir=tmp_path / "a")
            b = nt.transform_images(images, target, masker, meta, out_dir=tmp_path / "b")
        for pa, pb in zip(a[target], b[target], strict=True):
            assert (pa is None) == (not isinstance(pb, str))
            if pa is not None:
                np.testing.assert_allclose(
                    masker.transform([pa]), masker.transform([pb]), rtol=2.4e-7
                )


def test_images_to_coordinates_equals_nimare(sim):
    from nimare.dataset import Dataset
    from nimare.transforms import ImagesToCoordinates as NiMAREI2C

    truth, ss = sim
    kw = {"z_threshold": 2.3, "min_distance": 8.0, "remove_subpeaks": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NiMAREI2C(**kw).transform(Dataset(truth["dataset_json"], mask=truth["mask"]))
        got = ours.ImagesToCoordinates(**kw).transform(ss)
    rc = ref.coordinates.sort_values(["id", "x", "y", "z"])
    gc = got.coordinates.sort_values(["id", "x", "y", "z"])
    # NiMARE keys its generated coordinates by study id, so of a study's analyses only the last
    # one keeps its peaks; ours keeps every analysis' peaks. Compare where NiMARE has them.
    zp = zip(ss.ids, ss.get_images("z"), ss.get_images("p"), strict=True)
    assert set(gc["id"]) == {i for i, z, p in zp if z or p}  # peaks from z, else from p
    assert set(rc["id"]) < set(gc["id"])
    gc = gc[gc["id"].isin(set(rc["id"]))]
    np.testing.assert_array_equal(gc["id"], rc["id"])
    np.testing.assert_allclose(gc[["x", "y", "z"]], rc[["x", "y", "z"]])
    src = got.get_metadata(field="coordinate_source")
    assert set(src) <= {"nimare", "original"}


def test_standardize_field():
    import pandas as pd

    from nimare_dask import Studyset
    from nimare_dask.studyset import Annotations

    vals = np.array([[1.0, 5], [2, 5], [6, 8]], dtype=np.float32)
    ss = Studyset.from_tables(
        pd.DataFrame({"study_id": ["a", "b", "c"], "contrast_id": "1"}),
        annotations=Annotations(vals, ["x", "y"]),
    )
    out = ours.StandardizeField(["x"]).transform(ss)
    col = out.annotations["standardized_x"].to_numpy()
    x = np.array([1.0, 2, 6])
    np.testing.assert_allclose(col, (x - 3) / np.sqrt(((x - 3) ** 2).mean()), rtol=1e-6)

"""Images of a Studyset as lazy (analysis x voxel) arrays, against NiMARE's IBMA loading."""

import json
import warnings

import nibabel as nib
import numpy as np
import pytest

from nimare_dask import Studyset, open_studyset
from nimare_dask.generate import coarse_grid, create_image_studyset
from nimare_dask.studyset import images as images_mod
from nimare_dask.studyset.images import (
    ImageError,
    available_image_types,
    has_image,
    image_matrix,
    sample_size_lists,
)
from nimare_dask.studyset.store import ImagesNotStoredWarning


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("imgs") / "imgs"
    grid = coarse_grid(2)
    truth, ss = create_image_studyset(
        n_studies=4,
        n_analyses_per_study=2,
        missing_fraction=0.5,
        missing_images={"z": 0.25},
        seed=11,
        target=grid,
        out_dir=out,
    )
    return truth, ss


def _nimare_rows(paths, mask, load=None):
    """NiMARE's IBMA loading: _load_image (resample if the FOV differs) + its masker."""
    from nimare.meta.ibma import Stouffers
    from nimare.utils import get_masker

    masker = get_masker(mask)
    est = Stouffers()
    mask_img = masker.mask_img
    return np.vstack([masker.transform([est._load_image(p, mask_img)])[0] for p in paths])


def _assert_matches_nimare(ours, ref):
    usable = np.isfinite(ref) & (ref != 0)  # NiMARE's _usable
    np.testing.assert_array_equal(np.isfinite(ours), usable)
    # both are float32 masks of the same float data: identical bits expected
    np.testing.assert_array_equal(ours[usable], ref[usable])


def test_image_matrix_equals_nimare_masking(sim):
    truth, ss = sim
    for imtype in ("z", "beta", "varcope"):
        paths = ss.get_images(imtype)
        m = image_matrix(ss, imtype, chunks=(3, 5000))
        assert m.dtype == np.float32 and m.shape == (len(ss), ss.grid.n_voxels)
        assert m.chunks[0][0] == 3 and m.chunks[1][0] == 5000
        got = m.compute()
        have = [p is not None for p in paths]
        np.testing.assert_array_equal(has_image(ss, imtype), have)
        assert np.isnan(got[~np.array(have)]).all()
        ref = _nimare_rows([p for p in paths if p], truth["mask"])
        _assert_matches_nimare(got[np.array(have)], ref)
    assert available_image_types(ss) == ["beta", "se", "t", "varcope", "z"]
    assert sample_size_lists(ss) == [[float(n)] for n in ss.sample_sizes]


def test_resampling_equals_nimare(tmp_path, sim):
    """Images on another grid (2 mm; shifted origin; int16 with scaling) are resampled as
    NiMARE's IBMA estimators resample them (clip=True, linear), and resample_kwargs apply."""
    truth, ss = sim
    grid2 = coarse_grid(1)  # the 2 mm grid
    rng = np.random.default_rng(0)
    vals = rng.normal(size=grid2.n_voxels).astype(np.float32)
    paths = []
    img = grid2.to_image(vals)
    paths.append(tmp_path / "two_mm.nii.gz")
    img.to_filename(paths[-1])
    shifted = nib.Nifti1Image(np.asarray(img.dataobj), img.affine @ np.diag([1, 1, 1, 1.0]))
    shifted.affine[:3, 3] += [1.0, -1.0, 0.5]
    shifted = nib.Nifti1Image(np.asarray(img.dataobj), shifted.affine)
    paths.append(tmp_path / "shifted.nii.gz")
    shifted.to_filename(paths[-1])
    scaled = nib.Nifti1Image(np.asarray(img.dataobj) * 100, img.affine)
    scaled.set_data_dtype(np.int16)
    paths.append(tmp_path / "int16.nii.gz")
    scaled.to_filename(paths[-1])
    src = {
        f"s{i}": {"contrasts": {"1": {"images": {"z": str(p)}, "metadata": {"sample_sizes": [9]}}}}
        for i, p in enumerate(paths)
    }
    ours_ss = Studyset(src, target=ss.grid)
    ref = _nimare_rows([str(p) for p in paths], truth["mask"])
    _assert_matches_nimare(image_matrix(ours_ss, "z").compute(), ref)
    # resample_kwargs override NiMARE's defaults as its resample__* keywords do
    from nilearn.image import resample_to_img
    from nimare.utils import get_masker

    masker = get_masker(truth["mask"])
    near = [
        masker.transform(
            [
                resample_to_img(
                    str(p), masker.mask_img, interpolation="nearest", clip=True, copy_header=True
                )
            ]
        )[0]
        for p in paths
    ]
    got = image_matrix(ours_ss, "z", resample_kwargs={"interpolation": "nearest"}).compute()
    _assert_matches_nimare(got, np.vstack(near))


def test_each_file_read_once_and_lazily(sim, monkeypatch):
    _, ss = sim
    calls = []
    real = nib.load

    def counting(path, *a, **k):
        calls.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(images_mod.nib, "load", counting)
    m = image_matrix(ss, "beta", chunks=(2, 1000))  # many voxel chunks per file
    assert calls == []  # nothing read before compute
    m.compute()
    assert sorted(calls) == sorted(p for p in ss.get_images("beta") if p)


def _one(tmp_path, data, affine=None, name="x.nii.gz"):
    p = tmp_path / name
    nib.Nifti1Image(data, np.eye(4) if affine is None else affine).to_filename(p)
    return p


def test_bad_images_raise_naming_analysis_and_file(tmp_path, sim):
    _, ss = sim
    grid = ss.grid
    cases = {
        "missing": tmp_path / "nope.nii.gz",
        "four_d": _one(tmp_path, np.ones((*grid.shape, 2), np.float32), grid.affine, "4d.nii.gz"),
        "all_nan": _one(tmp_path, np.full(grid.shape, np.nan, np.float32), grid.affine, "n.nii.gz"),
        "corrupt": tmp_path / "bad.nii.gz",
    }
    cases["corrupt"].write_bytes(b"not a nifti")
    for key, path in cases.items():
        src = {"st": {"contrasts": {key: {"images": {"z": str(path)}}}}}
        one = Studyset(src, target=grid)
        m = image_matrix(one, "z")  # lazy: no error yet
        with pytest.raises(ImageError, match=f"st-{key}") as err:
            m.compute()
        assert str(path) in str(err.value)
    with pytest.raises(ImageError, match="no analysis has an image of type 'g'"):
        image_matrix(ss, "g")
    url = Studyset({"st": {"contrasts": {"1": {"images": {"z": "https://x.org/a.nii.gz"}}}}})
    with pytest.raises(ImageError, match="URL"):
        image_matrix(url, "z").compute()


def test_store_round_trip_is_lazy_and_identical(tmp_path, sim):
    _, ss = sim
    ss.to_zarr(tmp_path / "s.zarr", image_chunks=(3, 4096))
    back = open_studyset(tmp_path / "s.zarr", target=ss.grid)
    assert available_image_types(back) == available_image_types(ss)
    for imtype in available_image_types(ss):
        stored = image_matrix(back, imtype)
        assert stored.chunks[0][0] == 3 and stored.chunks[1][0] == 4096  # the stored chunks
        np.testing.assert_array_equal(has_image(back, imtype), has_image(ss, imtype))
        np.testing.assert_array_equal(stored.compute(), image_matrix(ss, imtype).compute())
    # the stored arrays are read, not the files
    version = json.loads((tmp_path / "s.zarr" / "nimare_dask.json").read_text())["version"]
    group = json.loads((tmp_path / "s.zarr" / version / "image_data" / "zarr.json").read_text())
    assert group["attributes"]["resample_kwargs"]["interpolation"] == "linear"


def test_store_refuses_missing_files_and_publishes_nothing(tmp_path, sim):
    _, ss = sim
    table = ss._images.copy()
    table.loc[0, "path"] = str(tmp_path / "gone.nii.gz")
    broken = Studyset.from_tables(
        ss._analyses.drop(columns="sample_size"),
        metadata=ss._metadata,
        images=table,
        target=ss.grid,
    )
    with pytest.raises(ImageError, match="gone.nii.gz"):
        broken.to_zarr(tmp_path / "b.zarr")
    assert not (tmp_path / "b.zarr" / "nimare_dask.json").exists()
    broken.to_zarr(tmp_path / "b.zarr", images=False)  # paths only
    back = open_studyset(tmp_path / "b.zarr", target=ss.grid)
    assert back.get_images("beta") == broken.get_images("beta")


def test_store_without_any_image_file_warns(tmp_path, nimare_test_data):
    ss = Studyset(nimare_test_data / "neurosynth_dset.json")
    with pytest.warns(ImagesNotStoredWarning, match="beta"):
        ss.to_zarr(tmp_path / "n.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImagesNotStoredWarning)
        ss.to_zarr(tmp_path / "n2.zarr", images=False)

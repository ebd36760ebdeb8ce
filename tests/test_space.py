"""The voxel grid and MNI/TAL transforms against NiMARE 0.22.1 and hand-derived values."""

import nibabel as nib
import numpy as np
import pytest

from nimare_dask.space import Grid, get_grid, mni2tal, normalize_space, tal2mni


def test_default_grid_matches_reference_template():
    grid = get_grid()
    assert grid.shape == (91, 109, 91)
    assert grid.n_voxels == 228_483
    np.testing.assert_array_equal(np.diag(grid.affine), [2, 2, 2, 1])
    np.testing.assert_array_equal(grid.affine[:3, 3], [-90, -126, -72])
    np.testing.assert_array_equal(grid.zooms, [2, 2, 2])
    assert grid.voxel_volume == 8.0


def test_in_mask_order_is_nilearn_masker_order(nimare_dir):
    from nimare.utils import get_masker, get_template

    masker = get_masker(get_template("mni152_2mm", mask="brain"))
    grid = get_grid()
    values = np.arange(grid.n_voxels, dtype=np.float32)
    img = masker.inverse_transform(values)
    np.testing.assert_array_equal(grid.to_map(img), values)
    np.testing.assert_array_equal(masker.transform(grid.to_image(values)).ravel(), values)


@pytest.mark.parametrize(
    ("x", "i"),
    [(-90, 0), (-89, 0), (-88, 1), (-87, 2), (-91, 0), (-91.0001, -1), (90, 90)],
)
def test_mm_to_ijk_rounds_half_to_even(x, i):
    # -89 mm is voxel 0.5 -> 0 (even), -87 mm is 1.5 -> 2 (even): numpy's banker's rounding.
    grid = get_grid()
    assert grid.mm_to_ijk([[x, 0, 0]])[0, 0] == i


def test_mm_to_ijk_matches_nimare_on_real_foci(pain_studyset):
    from nimare.utils import mm2vox

    grid = get_grid()
    xyz = pain_studyset.xyz() + np.random.default_rng(0).uniform(
        -1.5, 1.5, (len(pain_studyset.xyz()), 3)
    )
    np.testing.assert_array_equal(grid.mm_to_ijk(xyz), mm2vox(xyz, grid.affine))


def test_voxel_lookup_in_and_out_of_mask_and_grid():
    grid = get_grid()
    ijk = np.array([[45, 63, 36], [0, 0, 0], [-1, 5, 5], [91, 0, 0], [200, 200, 200]])
    vox = grid.ijk_to_voxel(ijk)
    assert vox[0] >= 0 and vox[1] == -1 and (vox[2:] == -1).all()
    np.testing.assert_array_equal(grid.in_grid(ijk), [True, True, False, False, False])
    np.testing.assert_array_equal(grid.in_mask(ijk), [True, False, False, False, False])
    # round trip through the in-mask index
    np.testing.assert_array_equal(grid.voxel_ijk[vox[0]], ijk[0])
    # NaN coordinates never land inside
    assert grid.mm_to_voxel(np.array([[np.nan, 0, 0]]))[0] == -1


def test_tal_mni_transforms_match_nimare_on_real_foci(nimare_test_data):
    import json

    from nimare.utils import mni2tal as nimare_mni2tal
    from nimare.utils import tal2mni as nimare_tal2mni

    data = json.loads((nimare_test_data / "neurosynth_dset.json").read_text())
    xyz = np.array(
        [
            [x, y, z]
            for s in data.values()
            for c in s["contrasts"].values()
            for x, y, z in zip(c["coords"]["x"], c["coords"]["y"], c["coords"]["z"], strict=True)
        ]
    )
    assert len(xyz) > 500
    np.testing.assert_allclose(tal2mni(xyz), nimare_tal2mni(xyz), rtol=0, atol=1e-9)
    np.testing.assert_allclose(mni2tal(xyz), nimare_mni2tal(xyz), rtol=0, atol=1e-9)
    np.testing.assert_allclose(mni2tal(tal2mni(xyz)), xyz, atol=1e-9)


def test_tal2mni_hand_value():
    # Lancaster icbm_other: the origin maps to -inv(A) @ t.
    a = np.array([[0.9357, 0.0029, -0.0072], [-0.0065, 0.9396, -0.0726], [0.0103, 0.0752, 0.8967]])
    t = np.array([-1.0423, -1.3940, 3.6475])
    np.testing.assert_allclose(tal2mni([0, 0, 0])[0], -np.linalg.solve(a, t), atol=1e-12)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("MNI", "MNI"),
        ("mni", "MNI"),
        ("TAL", "TAL"),
        ("Talairach", "TAL"),
        (None, "UNKNOWN"),
        ("UNKNOWN", "UNKNOWN"),
        ("OTHER", "UNKNOWN"),
        (float("nan"), "UNKNOWN"),
    ],
)
def test_normalize_space(label, expected):
    assert normalize_space(label) == expected


def test_grid_from_ras_and_las_masks_agree_in_world_space(nimare_resources):
    las = Grid.from_mask(nimare_resources / "templates" / "MNI152_2x2x2_brainmask.nii.gz")
    ras = get_grid()
    assert las.n_voxels == ras.n_voxels
    # Same world-space voxels: every LAS in-mask voxel centre lies in the RAS mask.
    assert (ras.mm_to_voxel(las.voxel_xyz) >= 0).all()
    assert las.fingerprint != ras.fingerprint


def test_to_image_round_trip_and_errors():
    grid = get_grid()
    vals = np.random.default_rng(1).random(grid.n_voxels).astype(np.float32)
    img = grid.to_image(vals)
    assert isinstance(img, nib.Nifti1Image) and img.shape == grid.shape
    np.testing.assert_array_equal(grid.to_map(img), vals)
    with pytest.raises(ValueError, match="228483 voxels"):
        grid.to_image(vals[:10])
    with pytest.raises(ValueError, match="unknown grid"):
        get_grid("mni305")


def test_1mm_grid():
    grid = get_grid("mni152_1mm")
    assert grid.n_voxels == 1_827_243
    np.testing.assert_array_equal(grid.zooms, [1, 1, 1])


def test_gm_coverage_matches_nimare():
    """``mask_coverage="gm"``: the same 186,779 voxels NiMARE draws random foci from."""
    pytest.importorskip("nimare")
    from nilearn.maskers import NiftiMasker
    from nimare.utils import _mask_coverage_to_mask

    grid = get_grid()
    gm = grid.coverage("gm")
    masker = NiftiMasker(grid.mask_image()).fit()
    ref = _mask_coverage_to_mask(masker, "gm")
    assert gm.size == int(ref.sum()) == 186_779
    np.testing.assert_array_equal(gm, np.flatnonzero(ref[grid.mask]))
    np.testing.assert_array_equal(grid.coverage("brain"), np.arange(grid.n_voxels))
    with pytest.raises(ValueError, match="mask_coverage"):
        grid.coverage("wm")

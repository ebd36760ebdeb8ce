"""The voxel grid and MNI/TAL transforms against NiMARE 0.22.1 and hand-derived values."""

import pickle

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


# ---------------------------------------------------------------------------- pickling
def _warm(grid: Grid) -> None:
    from nimare_dask.stats.clusters import neighbours

    neighbours(grid)
    grid.flat_lookup, grid.column_segments, grid.voxel_ijk, grid.coverage("brain")


def _ring_grid(name: str = "ring") -> Grid:
    mask = np.zeros((30, 31, 32), dtype=bool)
    mask[5:25, 6:26, 4:28] = True
    mask[12:18, 12:18, 10:20] = False
    return Grid(mask=mask, affine=np.diag([3.0, 3.0, 3.0, 1.0]), name=name)


def test_builtin_grid_pickles_to_its_name_not_its_caches():
    """A grid with its neighbour table cached pickled to 13 MB (every task that held it)."""
    import copy

    from dask.base import tokenize

    grid = get_grid()
    _warm(grid)
    data = pickle.dumps(grid)
    assert len(data) < 10_000
    assert pickle.loads(data) is grid  # the process's one instance, caches warm
    assert copy.deepcopy(grid) is grid
    assert tokenize(grid) == tokenize(pickle.loads(data))
    assert len(pickle.dumps(get_grid("mni152_1mm"))) < 10_000


def test_custom_grid_round_trips_with_lazy_caches():
    from nimare_dask import space
    from nimare_dask.stats.clusters import neighbours

    grid = _ring_grid()
    _warm(grid)
    data = pickle.dumps(grid)
    assert len(data) < 10_000  # the packed, compressed mask and the affine
    assert pickle.loads(data) is grid  # registered when pickled in this process
    space._REGISTRY.clear()  # as in a worker process that never saw it
    back = pickle.loads(data)
    assert back is not grid and pickle.loads(data) is back  # one instance per process
    assert set(back._cache) <= {"fingerprint"}  # nothing shipped but the definition
    assert back.fingerprint == grid.fingerprint and back.same_as(grid)
    assert back.name == "ring" and back.shape == grid.shape and back.n_voxels == grid.n_voxels
    np.testing.assert_array_equal(back.mask, grid.mask)
    np.testing.assert_array_equal(back.affine, grid.affine)
    # cached properties rebuilt on use
    np.testing.assert_array_equal(back.flat_lookup, grid.flat_lookup)
    np.testing.assert_array_equal(back.voxel_ijk, grid.voxel_ijk)
    for a, b in zip(back.column_segments, grid.column_segments, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(neighbours(back), neighbours(grid))
    xyz = grid.voxel_xyz[::97]
    np.testing.assert_array_equal(back.mm_to_voxel(xyz), grid.mm_to_voxel(xyz))


def test_a_custom_mask_named_like_a_template_is_not_the_template():
    builtin = get_grid()
    mask = builtin.mask.copy()
    mask[45, 60, 40] = not mask[45, 60, 40]
    other = Grid(mask=mask, affine=builtin.affine, name="mni152_2mm")
    back = pickle.loads(pickle.dumps(other))
    assert back is not builtin and back.fingerprint == other.fingerprint != builtin.fingerprint


def test_unpickling_in_a_fresh_process_builds_each_grid_once():
    import subprocess
    import sys

    payload = pickle.dumps([get_grid(), _ring_grid("fresh"), get_grid(), _ring_grid("fresh")])
    code = (
        "import pickle, sys\n"
        "a = pickle.loads(sys.stdin.buffer.read())\n"
        "b = pickle.loads(pickle.dumps(a))\n"
        "print(a[0] is a[2] is b[0], a[1] is a[3] is b[1], a[1].n_voxels, a[0].n_voxels)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, check=True
    )
    assert out.stdout.decode().split() == ["True", "True", str(_ring_grid().n_voxels), "228483"]

"""MA kernels: shapes, block functions, laziness, chunk invariance, errors, store cache.

NiMARE parity lives in test_kernels_oracle.py (but for ``return_type="image"``, here); here
values are checked against closed forms and against each other (dense vs sparse vs fused
reductions).
"""

from __future__ import annotations

import json

import dask
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr

from nimare_dask import Studyset, open_studyset
from nimare_dask.kernels import (
    ALEKernel,
    KDAKernel,
    MKDAKernel,
    ale_fwhm_from_sample_size,
    ale_kernel,
    ale_sigma_vox,
    sphere_offsets,
)
from nimare_dask.kernels.cache import ATTRS_KEY, ma_group
from nimare_dask.space import get_grid

KERNELS = [ALEKernel(), ALEKernel(fwhm=10), MKDAKernel(), KDAKernel(r=6, value=0.5)]


def _raise_on_compute(*args, **kwargs):
    raise RuntimeError("a dask computation was triggered")


def _toy(n_analyses: int = 9, seed: int = 0) -> Studyset:
    """Random foci (some near or beyond the grid's edges), random sample sizes, one analysis
    without foci."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:02d}" for i in range(n_analyses)]
    rows = []
    for sid in ids[:-1]:
        for _ in range(rng.integers(1, 12)):
            rows.append((f"{sid}-1", *rng.uniform([-100, -130, -80], [100, 100, 100])))
    rows.append((f"{ids[0]}-1", -95.0, 0.0, 0.0))  # centre outside the grid, tail inside
    points = pd.DataFrame(rows, columns=["id", "x", "y", "z"])
    analyses = pd.DataFrame({"study_id": ids, "contrast_id": "1"})
    meta = pd.DataFrame(
        {"id": [f"{s}-1" for s in ids], "sample_sizes": rng.integers(8, 40, n_analyses)}
    )
    return Studyset.from_tables(analyses, points, meta)


@pytest.fixture(scope="module")
def toy() -> Studyset:
    return _toy()


# ---------------------------------------------------------------------- shapes
@pytest.mark.parametrize("r, n", [(10, 515), (8, 257), (6, 123), (15, 1791)])
def test_sphere_sizes_at_2mm(r, n):
    # counts from NIMARE_FACTS.md §2.5 (NiMARE's sphere_kernel_offsets)
    off = sphere_offsets(r, (2.0, 2.0, 2.0))
    assert len(off) == n
    assert np.all(np.sqrt(((off * 2.0) ** 2).sum(1)) <= r)


@pytest.mark.parametrize(
    "n, fwhm", [(5, 11.37), (10, 10.00), (15, 9.50), (20, 9.24), (30, 8.97), (100, 8.58)]
)
def test_fwhm_from_sample_size(n, fwhm):
    # NIMARE_FACTS.md §2.1 lists these to 2 decimals
    assert ale_fwhm_from_sample_size(n) == pytest.approx(fwhm, abs=0.005)


@pytest.mark.parametrize(
    "kw, width, peak",
    [({"sample_size": 20}, 17, 0.00840), ({"fwhm": 10}, None, 0.00663),
     ({"sample_size": 100}, 15, 0.01049), ({"sample_size": 5}, 21, None)],
)  # fmt: skip
def test_ale_kernel_shape_and_peak(kw, width, peak):
    # cube widths and peak values from NIMARE_FACTS.md §2.1 (peaks given to 3 significant digits)
    off, val = ale_kernel(zooms=(2.0, 2.0, 2.0), **kw)
    if width is not None:
        assert np.all(off.max(0) - off.min(0) + 1 == width)
    if peak is not None:
        assert val.max() == pytest.approx(peak, abs=5e-6)
    assert val.sum() == pytest.approx(1.0, abs=1e-6)  # normalised 1-D Gaussians, float32 sum
    assert np.all(val > 0)
    assert val[np.all(off == 0, axis=1)][0] == val.max()


def _discrete_gaussian(sigma: float) -> dict[int, float]:
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    w = np.exp(-0.5 * x**2 / sigma**2)
    return dict(zip(x.tolist(), (w / w.sum()).tolist(), strict=True))


def test_ale_kernel_1mm_follows_the_closed_form_sigma():
    # At 1 mm, sigma = FWHM / (2 sqrt(2 ln 2)) / 1 mm; NiMARE's formula would give sqrt(2) more.
    fwhm = 10.0
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    np.testing.assert_allclose(ale_sigma_vox(fwhm, (1.0, 1.0, 1.0)), sigma, rtol=1e-7)
    np.testing.assert_allclose(ale_sigma_vox(fwhm, (2.0, 2.0, 2.0)), sigma / 2, rtol=1e-7)
    off, val = ale_kernel(fwhm, (1.0, 1.0, 1.0))
    w = _discrete_gaussian(sigma)
    # the full 4-sigma support (17 voxels) is kept: NiMARE's 31^3 box would cut it at 15
    assert off.max() == int(4 * sigma + 0.5) == 17
    expected = np.array([w[a] * w[b] * w[c] for a, b, c in off])
    # float32 values of a float64 product: 2 float32 ulps; the erf-free Gaussian of scipy is
    # the same exp(-x^2 / 2 sigma^2) normalised, so only rounding differs
    np.testing.assert_allclose(val, expected, rtol=2.5e-7, atol=0)
    # and the MA map of one focus on the 1 mm grid has that kernel's peak
    grid = get_grid("mni152_1mm")
    ijk = grid.mm_to_ijk(np.array([[0.0, -20.0, 10.0]]))
    ma = ALEKernel(fwhm=fwhm).ma_block(ijk, [0], 1, grid)
    assert ma.max() == np.float32(w[0] ** 3)


def test_ale_kernel_anisotropic_voxels_use_sigma_per_axis():
    sig = ale_sigma_vox(10.0, (2.0, 2.0, 4.0))
    np.testing.assert_allclose(sig[:2] / sig[2], 2.0, rtol=1e-7)
    off, _ = ale_kernel(10.0, (2.0, 2.0, 4.0))
    assert off[:, 2].max() < off[:, 0].max()


# ---------------------------------------------------------------------- block level
@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
def test_block_functions_agree(kernel, toy):
    grid = toy.grid
    ijk, rows = toy.ijk(), toy.focus_rows()
    perm = np.random.default_rng(1).permutation(len(rows))  # unsorted foci are accepted
    args = (ijk[perm], rows[perm], len(toy), grid, toy.sample_sizes)
    dense = kernel.ma_block(*args)
    assert dense.shape == (len(toy), grid.n_voxels) and dense.dtype == np.float32
    assert not dense[-1].any()  # the analysis without foci
    assert dense[0].any()
    csr = kernel.csr_block(*args)
    assert csr.has_sorted_indices and np.all(csr.data != 0)
    np.testing.assert_array_equal(csr.toarray(), dense)
    w = np.linspace(0.5, 2.0, len(toy))
    # float64 partial sums: only summation order differs from the dense reference
    np.testing.assert_allclose(
        kernel.reduce_block(*args, how="sum", weights=w), (w[:, None] * dense).sum(0),
        rtol=1e-12, atol=1e-15,
    )  # fmt: skip
    np.testing.assert_array_equal(kernel.reduce_block(*args, how="count"), (dense > 0).sum(0))
    if isinstance(kernel, ALEKernel):
        np.testing.assert_allclose(
            kernel.reduce_block(*args, how="log1m"),
            np.log1p(-dense.astype(np.float64)).sum(0),
            rtol=1e-12, atol=1e-15,
        )  # fmt: skip


def test_sphere_kernels_union_and_sum(toy):
    grid = get_grid()
    centre = grid.mm_to_ijk(np.array([[30.0, -20.0, 40.0], [34.0, -20.0, 40.0]]))
    mkda = MKDAKernel(r=10, value=3).ma_block(centre, [0, 0], 1, grid)[0]
    kda = KDAKernel(r=10, value=3).ma_block(centre, [0, 0], 1, grid)[0]
    assert set(np.unique(mkda)) == {0, 3}
    assert set(np.unique(kda)) == {0, 3, 6}
    one = MKDAKernel(r=10).ma_block(centre[:1], [0], 1, grid)[0]
    assert one.sum() == 515  # an interior focus: the whole sphere is in the mask


def _small_grid(seed: int = 0):
    from nimare_dask.space import Grid

    rng = np.random.default_rng(seed)
    mask = rng.random((14, 12, 10)) < 0.8
    return Grid(mask=mask, affine=np.diag([2.0, 2.0, 2.0, 1.0]))


def _reference(kernel, ijk, rows, n_rows, grid, sample_sizes) -> np.ndarray:
    """Brute-force numpy MA maps: loop over foci and kernel voxels, no numba."""
    full = np.zeros((n_rows, *grid.shape), dtype=np.float32)
    for (i, j, k), r in zip(ijk, rows, strict=True):
        if isinstance(kernel, ALEKernel):
            off, val = ale_kernel(zooms=grid.zooms, sample_size=sample_sizes[r])
        else:
            off = sphere_offsets(kernel.r, grid.zooms)
            val = np.ones(len(off), dtype=np.float32)
        for (a, b, c), v in zip(off, val, strict=True):
            x, y, z = i + a, j + b, k + c
            if 0 <= x < grid.shape[0] and 0 <= y < grid.shape[1] and 0 <= z < grid.shape[2]:
                if isinstance(kernel, KDAKernel) and not isinstance(kernel, MKDAKernel):
                    full[r, x, y, z] += v
                else:
                    full[r, x, y, z] = max(full[r, x, y, z], v)
    full *= np.float32(getattr(kernel, "value", 1))
    return full[:, grid.mask]


@pytest.mark.parametrize(
    "kernel", [ALEKernel(), MKDAKernel(r=6), KDAKernel(r=5, value=2)], ids=repr
)
def test_matches_brute_force_near_edges(kernel):
    # a small grid with a random mask: most foci sit near or beyond the edges, so the
    # bounds checks and the in-bounds fast path are both exercised
    grid = _small_grid()
    rng = np.random.default_rng(3)
    ijk = rng.integers(-6, 20, size=(40, 3))
    rows = rng.integers(0, 5, size=40)
    ss = rng.choice([10.0, 25.0, 60.0], size=5)
    expected = _reference(kernel, ijk, rows, 5, grid, ss)
    np.testing.assert_array_equal(kernel.ma_block(ijk, rows, 5, grid, ss), expected)
    np.testing.assert_array_equal(kernel.csr_block(ijk, rows, 5, grid, ss).toarray(), expected)
    # the counting loop walks the mask's z-segments (a random mask: many per column)
    assert grid.column_segments[0][:, 3].max() > 1
    counts = kernel.reduce_block(ijk, rows, 5, grid, ss, how="count")
    np.testing.assert_array_equal(counts, (expected > 0).sum(0))


def test_column_segments_number_the_mask():
    grid = _small_grid(5)
    rows, seg_ptr, segs = grid.column_segments
    lut = grid.flat_lookup.reshape(grid.shape)
    covered = np.zeros(grid.shape, dtype=bool)
    for r in range(len(seg_ptr) - 1):
        i, j = divmod(r, grid.shape[1])
        assert rows[r, 3] == seg_ptr[r + 1] - seg_ptr[r]
        for z0, z1, v0 in segs[seg_ptr[r] : seg_ptr[r + 1]]:
            covered[i, j, z0 : z1 + 1] = True
            np.testing.assert_array_equal(lut[i, j, z0 : z1 + 1], v0 + np.arange(z1 + 1 - z0))
    np.testing.assert_array_equal(covered, grid.mask)


def test_out_of_grid_foci_are_dropped():
    grid = get_grid()
    far = np.array([[10**6, 0, 0], [-50, -50, -50], [45, 54, 200]])
    for kernel in KERNELS:
        out = kernel.ma_block(far, [0, 1, 2], 3, grid, np.array([20.0, 20.0, 20.0]))
        assert not out.any()


def test_block_input_errors():
    grid = get_grid()
    k = MKDAKernel()
    with pytest.raises(ValueError, match="rows must lie"):
        k.ma_block(np.zeros((2, 3), int), [0, 2], 2, grid)
    with pytest.raises(ValueError, match="integer grid indices"):
        k.ma_block(np.zeros((1, 3)), [0], 1, grid)
    with pytest.raises(ValueError, match="rows has 1 entries"):
        k.ma_block(np.zeros((2, 3), int), [0], 1, grid)
    with pytest.raises(ValueError, match="sample_sizes"):
        ALEKernel().ma_block(np.zeros((1, 3), int), [0], 1, grid)
    with pytest.raises(ValueError, match="no sample size"):
        ALEKernel().ma_block(np.zeros((1, 3), int), [0], 1, grid, np.array([np.nan]))
    with pytest.raises(ValueError, match="how must be"):
        k.reduce_block(np.zeros((1, 3), int), [0], 1, grid, how="mean")


# ---------------------------------------------------------------------- parameters
def test_params_and_errors():
    with pytest.raises(ValueError, match="only one of"):
        ALEKernel(fwhm=10, sample_size=20)
    for bad in (0, -1, np.nan, np.inf, "ten", True):
        with pytest.raises(ValueError):
            ALEKernel(fwhm=bad)
        with pytest.raises(ValueError):
            MKDAKernel(r=bad)
        with pytest.raises(ValueError):
            KDAKernel(value=bad)
    k = ALEKernel(fwhm=10)
    assert k.get_params() == {"fwhm": 10, "sample_size": None}
    assert k.set_params(fwhm=12) is k and k.fwhm == 12
    with pytest.raises(ValueError, match="only one of"):
        k.set_params(sample_size=20)
    assert k.get_params() == {"fwhm": 12, "sample_size": None}  # reverted on error
    with pytest.raises(ValueError, match="no parameter"):
        k.set_params(radius=3)
    m = MKDAKernel(r=8)
    assert m.get_params() == {"r": 8.0, "value": 1}
    assert MKDAKernel(r=8) == m and MKDAKernel(r=9) != m and KDAKernel(r=8) != m


def test_cache_key(toy):
    k = MKDAKernel()
    assert k.cache_key(toy) == MKDAKernel(r=10.0).cache_key(toy)
    keys = {
        k.cache_key(toy), MKDAKernel(r=8).cache_key(toy), KDAKernel().cache_key(toy),
        k.cache_key(toy.slice(toy.ids[:3])), k.cache_key(toy.with_grid("mni152_1mm")),
    }  # fmt: skip
    assert len(keys) == 5


def test_transform_errors(toy):
    k = MKDAKernel()
    with pytest.raises(ValueError, match="return_type"):
        k.transform(toy, return_type="nifti")
    with pytest.raises(ValueError, match="how must be"):
        k.reduce(toy, "max")
    with pytest.raises(ValueError, match="only used with how='sum'"):
        k.reduce(toy, "count", weights=np.ones(len(toy)))
    with pytest.raises(ValueError, match="weights has"):
        k.reduce(toy, "sum", weights=np.ones(3))
    with pytest.raises(ValueError, match="sum to"):
        k.transform(toy, chunks=(1, 2))
    with pytest.raises(ValueError, match="positive"):
        k.transform(toy, chunks=0)
    with pytest.raises(ValueError, match="store=True needs"):
        k.transform(toy, store=True)
    # ALE with per-analysis sample sizes: analyses with foci but no sample size are named
    # at graph-building time, before anything runs
    meta = toy.metadata[["id"]].assign(sample_sizes=[np.nan, 20, np.nan] + [10] * (len(toy) - 3))
    tabs = toy._tables()
    nan_ss = Studyset.from_tables(tabs["analyses"], tabs["points"], meta, harmonize=False)
    with pytest.raises(ValueError, match=r"2 analyses .*'s00-1', 's02-1'"):
        ALEKernel().transform(nan_ss)
    ALEKernel(fwhm=10).transform(nan_ss)  # a fixed width needs no sample size


# ---------------------------------------------------------------------- laziness, chunks
def test_transform_and_reduce_are_lazy(toy):
    with dask.config.set(scheduler=_raise_on_compute):
        for kernel in KERNELS:
            ma = kernel.transform(toy, chunks=4)
            summary = kernel.transform(toy, return_type="summary")
            parts = [kernel.reduce(toy, how) for how in ("sum", "count", "log1m")]
        with pytest.raises(RuntimeError, match="triggered"):
            ma.values  # noqa: B018 - the scheduler is really in charge
    assert ma.dims == ("analysis", "voxel") and ma.name == "ma" and ma.dtype == np.float32
    assert ma.data.chunks == ((4, 4, 1), (toy.grid.n_voxels,))
    assert list(ma["analysis"].values) == list(toy.ids)
    keys = ma.data.__dask_graph__().keys()
    assert all(str(k[0] if isinstance(k, tuple) else k).startswith("ma-maps") for k in keys)
    assert summary.dims == ("voxel",) and summary.dtype == np.float64
    assert all(p.dims == ("voxel",) for p in parts)


def test_default_chunk_is_about_64mb(toy):
    ma = MKDAKernel().transform(toy)
    assert ma.data.chunks[0] == (len(toy),)
    per = MKDAKernel.default_rows_per_chunk(toy.grid)
    assert per == 64 * 2**20 // (4 * 228_483) == 73


@pytest.mark.parametrize("kernel", [ALEKernel(), KDAKernel(value=0.7)], ids=repr)
@pytest.mark.parametrize("chunks", [1, 2, 5, (3, 0, 6), {"analysis": 4}, "auto"])
def test_reduce_is_chunk_invariant(kernel, chunks, toy):
    w = np.arange(1, len(toy) + 1, dtype=float)
    dense = kernel.transform(toy, return_type="array").astype(np.float64)
    ref = {"sum": (w[:, None] * dense).sum(0), "count": (dense > 0).sum(0)}
    ref["log1m"] = np.log1p(-dense).sum(0) if isinstance(kernel, ALEKernel) else None
    for how in ("sum", "count", "log1m"):
        if ref[how] is None:
            continue
        got = kernel.reduce(toy, how, weights=w if how == "sum" else None, chunks=chunks).values
        if how == "count":
            np.testing.assert_array_equal(got, ref[how])  # integers in float64: exact
        else:
            # float64 partials: chunking changes only the order of additions
            np.testing.assert_allclose(got, ref[how], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
def test_return_types_agree(kernel, toy):
    ma = kernel.transform(toy, chunks=3)
    dense = kernel.transform(toy, return_type="array")
    np.testing.assert_array_equal(ma.values, dense)
    csr = kernel.transform(toy, return_type="sparse", chunks=2)
    assert sp.isspmatrix_csr(csr) and csr.dtype == np.float32 and csr.has_sorted_indices
    np.testing.assert_array_equal(csr.toarray(), dense)
    csr.sort_indices()  # scipy agrees that the indices are canonical
    np.testing.assert_array_equal(csr.toarray(), dense)
    summary = kernel.transform(toy, return_type="summary_array").values
    np.testing.assert_allclose(summary, dense.astype(np.float64).sum(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(kernel.max_values(toy, chunks=4), dense.max(1))


@pytest.mark.parametrize("kind", ["ALE", "MKDA", "KDA"])
def test_image_return_type_matches_nimare(kind, pain_studyset, pain_json, tmp_path):
    """NiMARE's default return_type: one float32 volume per analysis (4 pain analyses).

    MKDA/KDA values are the kernel's constants (exact); ALE within 1 float32 ulp (NiMARE's
    Gaussian goes through numpy's ``exp``: test_kernels_oracle.py's docstring).
    """
    from _parity import assert_within_ulp
    from nimare.meta import kernel as nk
    from nimare.studyset import Studyset as NiMAREStudyset

    ids = list(pain_studyset.ids[:4])
    ours_ss = pain_studyset.slice(ids)
    ours_ss.to_zarr(tmp_path / "pain4.zarr", images=False)
    theirs = getattr(nk, f"{kind}Kernel")().transform(
        NiMAREStudyset(str(pain_json)).slice(ids), return_type="image"
    )
    kernel = {"ALE": ALEKernel, "MKDA": MKDAKernel, "KDA": KDAKernel}[kind]()
    for imgs in (
        kernel.transform(ours_ss, return_type="image", chunks=3),
        kernel.transform(open_studyset(tmp_path / "pain4.zarr"), return_type="image", store=True),
    ):
        assert len(imgs) == len(theirs) == 4
        for ours_img, their_img in zip(imgs, theirs, strict=True):
            assert ours_img.shape == their_img.shape
            np.testing.assert_array_equal(ours_img.affine, their_img.affine)
            assert ours_img.get_data_dtype() == their_img.get_data_dtype() == np.float32
            a, b = np.asanyarray(ours_img.dataobj), np.asanyarray(their_img.dataobj)
            if kind == "ALE":
                assert_within_ulp(a, b, maxulp=1)
            else:
                np.testing.assert_array_equal(a, b)
            assert b.any()


def test_empty_studyset():
    empty = Studyset.from_tables(pd.DataFrame({"study_id": [], "contrast_id": []}))
    k = MKDAKernel()
    assert k.transform(empty, return_type="array").shape == (0, 228_483)
    assert k.transform(empty, return_type="sparse").shape == (0, 228_483)
    assert not k.transform(empty, return_type="summary").values.any()


# ---------------------------------------------------------------------- store cache
def _ma_keys(arr) -> list:
    return [
        k
        for k in arr.data.__dask_graph__()
        if str(k[0] if isinstance(k, tuple) else k).startswith("ma-maps")
    ]


def _pointer(group):
    return json.loads((group / "nimare_dask.json").read_text())


@pytest.mark.parametrize("kernel", [MKDAKernel(value=2), ALEKernel()], ids=repr)
def test_store_cache_is_written_once_and_reused(kernel, tmp_path, toy):
    toy.to_zarr(tmp_path / "toy.zarr")
    ss = open_studyset(tmp_path / "toy.zarr")
    expected = kernel.transform(ss, return_type="array")
    ma = kernel.transform(ss, store=True, chunks=4)
    key = kernel.cache_key(ss)
    group = tmp_path / "toy.zarr" / ma_group(key)
    pointer = _pointer(group)  # a versioned store of its own, published by its pointer
    assert [p.name for p in group.iterdir() if p.is_dir()] == [pointer["version"]]
    info = pointer["info"][ATTRS_KEY]
    assert info["complete"] and info["kernel"] == type(kernel).__name__
    assert info["studyset_fingerprint"] == ss.fingerprint
    assert info["grid_fingerprint"] == ss.grid.fingerprint
    on_disk = zarr.open_array(str(group / pointer["version"] / "ma"), mode="r")
    assert on_disk.dtype == (np.uint8 if isinstance(kernel, MKDAKernel) else np.float32)
    assert not _ma_keys(ma)  # read back from the store, not rebuilt from coordinates
    np.testing.assert_array_equal(ma.values, expected)
    assert ma.dtype == np.float32 and list(ma["analysis"].values) == list(ss.ids)
    # a second call (fresh handle) reuses the group: it is not rewritten
    mtime = (group / "nimare_dask.json").stat().st_mtime_ns
    again = kernel.transform(open_studyset(tmp_path / "toy.zarr"), store=True)
    assert not _ma_keys(again) and (group / "nimare_dask.json").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.values, expected)
    np.testing.assert_array_equal(
        kernel.transform(ss, return_type="sparse", store=True).toarray(), expected
    )
    np.testing.assert_allclose(
        kernel.transform(ss, return_type="summary", store=True).values,
        expected.astype(np.float64).sum(0), rtol=1e-12, atol=1e-15,
    )  # fmt: skip


def test_store_cache_mismatch_is_never_reused(tmp_path, toy):
    toy.to_zarr(tmp_path / "toy.zarr")
    ss = open_studyset(tmp_path / "toy.zarr")
    k10, k6 = MKDAKernel(r=10), MKDAKernel(r=6)
    k10.transform(ss, store=True)
    ma6 = k6.transform(ss, store=True)  # other parameters: another group
    assert k6.cache_key(ss) != k10.cache_key(ss)
    np.testing.assert_array_equal(ma6.values, k6.transform(ss, return_type="array"))
    # a group whose provenance does not match (stale or incomplete) is rebuilt
    group = tmp_path / "toy.zarr" / ma_group(k10.cache_key(ss))
    for tamper in ({"studyset_fingerprint": "0" * 16}, {"complete": False}, {"params": {}}):
        pointer = _pointer(group)
        info = pointer["info"][ATTRS_KEY]
        pointer["info"][ATTRS_KEY] = {**info, **tamper}
        (group / "nimare_dask.json").write_text(json.dumps(pointer))
        ma = k10.transform(ss, store=True)
        info = _pointer(group)["info"][ATTRS_KEY]
        assert info["complete"] and info["studyset_fingerprint"] == ss.fingerprint
        assert info["params"] == json.loads(json.dumps({"r": 10.0, "value": 1.0}))
        np.testing.assert_array_equal(ma.values, k10.transform(ss, return_type="array"))


def test_store_cache_on_fsspec_memory(toy):
    loc = "memory://kernels-cache-test.zarr"
    toy.to_zarr(loc, overwrite=True)
    ss = open_studyset(loc)
    ma = MKDAKernel().transform(ss, store=True)
    assert not _ma_keys(ma)
    np.testing.assert_array_equal(ma.values, MKDAKernel().transform(ss, return_type="array"))

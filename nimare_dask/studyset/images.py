"""Statistical images of a Studyset as lazy (analysis x voxel) arrays.

A Studyset references its images in a long table ``id, type, path`` (:attr:`Studyset.images`).
:func:`image_matrix` turns one image type into a lazy ``(n_analyses, n_voxels)`` float32 Dask
array over the in-mask voxels of the studyset's grid, rows in the order of
:attr:`Studyset.ids`. Values come, per analysis, from the first source that has them:

1. **image arrays** attached to the studyset (:class:`ImageArrays`): derived maps made by
   :class:`nimare_dask.transforms.ImageTransformer`, or the arrays of a studyset store
   (``image_data`` group, written by :meth:`Studyset.to_zarr`);
2. **files**: each NIfTI file is read by one task, once, and masked; a file whose shape or
   affine differs from the grid's is resampled first, as NiMARE's IBMA estimators do
   (:func:`nilearn.image.resample_to_img` with ``clip=True, interpolation="linear"`` unless
   ``resample_kwargs`` says otherwise; NiMARE's ``resample__*`` keywords).

**Validity.** A value is *usable* when it is finite and not exactly zero (NiMARE's ``_usable``;
zero is the placeholder NeuroVault maps carry outside their coverage). Every unusable value is
NaN in the matrix, and so is every row of an analysis without an image of that type.

Errors: a missing or unreadable file, an image that is not 3-D, or one holding no finite value
at all raise :class:`ImageError` naming the analysis and the path, when the task reading it runs
(the matrix itself is lazy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd

from nimare_dask.space import Grid
from nimare_dask.studyset.core import Studyset, StudysetError

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_RESAMPLE_KWARGS",
    "IMAGE_TYPES",
    "ImageArrays",
    "ImageError",
    "available_image_types",
    "has_image",
    "image_arrays",
    "image_matrix",
    "read_image_values",
    "sample_size_lists",
    "with_image_arrays",
]

#: Image types NiMARE knows (``ImageTransformer`` targets plus the inputs it converts from).
IMAGE_TYPES = ("z", "t", "p", "beta", "varcope", "se", "sd", "samplevar_dataset", "d", "g", "g_var")
#: Default ``(analyses, voxels)`` chunks of :func:`image_matrix` (16 x 32768 float32 = 2 MiB).
DEFAULT_CHUNKS = (16, 32768)
#: NiMARE's IBMA resampling defaults (``IBMAEstimator.__init__``).
DEFAULT_RESAMPLE_KWARGS = {"clip": True, "interpolation": "linear", "copy_header": True}
#: Path placeholder of an image that exists only as an array (derived, not a file).
ARRAY_PATH = "array:"


class ImageError(StudysetError):
    """An image is missing, unreadable, of the wrong dimensionality or holds no finite value."""


# ----------------------------------------------------------------------------- image arrays
class ImageArrays:
    """Image values held as arrays rather than files, keyed by analysis id.

    Parameters
    ----------
    ids : sequence of str
        Analysis ids, one per row of every array.
    arrays : mapping of str to array
        ``imtype -> (len(ids), n_voxels)`` float32 arrays (numpy or dask) over the grid's
        in-mask voxels; NaN where unusable.
    present : mapping of str to bool array, optional
        Per type, which rows hold an image (default: all rows).
    grid_fingerprint : str
        The grid the arrays are on (:attr:`Grid.fingerprint`).
    source : str
        ``"derived"`` (computed in this session) or ``"store"`` (read from a studyset store).
    resample_kwargs : dict, optional
        For store arrays: the resampling they were made with.

    Notes
    -----
    Rows are looked up by id, so a sliced studyset can keep using the same object.
    """

    def __init__(
        self,
        ids: Sequence[str],
        arrays: Mapping[str, object],
        present: Mapping[str, np.ndarray] | None = None,
        *,
        grid_fingerprint: str,
        source: str = "derived",
        resample_kwargs: dict | None = None,
    ):
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        self.row = pd.Series(np.arange(len(self.ids)), index=self.ids)
        self.arrays: dict[str, da.Array] = {}
        self.present: dict[str, np.ndarray] = {}
        for imtype, arr in arrays.items():
            arr = arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr))
            if arr.ndim != 2 or arr.shape[0] != len(self.ids):
                raise ValueError(
                    f"image array {imtype!r} has shape {arr.shape}; expected "
                    f"({len(self.ids)}, n_voxels)"
                )
            self.arrays[str(imtype)] = arr.astype(np.float32)
            pres = None if present is None else present.get(imtype)
            self.present[str(imtype)] = (
                np.ones(len(self.ids), bool) if pres is None else np.asarray(pres, bool)
            )
        self.grid_fingerprint = grid_fingerprint
        self.source = source
        self.resample_kwargs = dict(resample_kwargs or {})

    @property
    def types(self) -> list[str]:
        """Image types held."""
        return sorted(self.arrays)

    def rows_for(self, imtype: str, ids: Sequence[str]) -> np.ndarray:
        """Row of each id holding an image of ``imtype`` (-1 where none)."""
        if imtype not in self.arrays:
            return np.full(len(ids), -1, dtype=np.int64)
        rows = self.row.reindex(np.asarray(ids, dtype=object)).to_numpy()
        rows = np.where(pd.isna(rows), -1, rows).astype(np.int64)
        ok = rows >= 0
        ok[ok] = self.present[imtype][rows[ok]]
        return np.where(ok, rows, -1)

    def updated(self, other: ImageArrays) -> ImageArrays:
        """These arrays with ``other``'s added (``other`` wins where both hold a row)."""
        if other.grid_fingerprint != self.grid_fingerprint:
            raise ValueError("cannot combine image arrays on different grids")
        if list(other.ids) != list(self.ids):
            raise ValueError("image arrays to combine must have the same analysis ids")
        arrays = dict(self.arrays)
        present = dict(self.present)
        for imtype, arr in other.arrays.items():
            if imtype in arrays:
                keep_new = other.present[imtype]
                arrays[imtype] = da.where(keep_new[:, None], arr, arrays[imtype])
                present[imtype] = keep_new | present[imtype]
            else:
                arrays[imtype] = arr
                present[imtype] = other.present[imtype]
        return ImageArrays(
            self.ids,
            arrays,
            present,
            grid_fingerprint=self.grid_fingerprint,
            source="derived",
            resample_kwargs=self.resample_kwargs,
        )

    def __repr__(self) -> str:
        return f"ImageArrays({len(self.ids)} analyses, types={self.types}, source={self.source})"


def image_arrays(studyset: Studyset) -> ImageArrays | None:
    """The :class:`ImageArrays` attached to a studyset (None when there are none)."""
    arrs = getattr(studyset, "_image_arrays", None)
    if arrs is None or arrs.grid_fingerprint != studyset.grid.fingerprint:
        return None
    return arrs


def with_image_arrays(
    studyset: Studyset,
    arrays: Mapping[str, object],
    present: Mapping[str, np.ndarray] | None = None,
) -> Studyset:
    """A copy of ``studyset`` with image arrays added (they take precedence over files).

    Parameters
    ----------
    studyset : Studyset
    arrays : mapping of str to array
        ``imtype -> (n_analyses, n_voxels)`` arrays, rows in ``studyset.ids`` order, over the
        grid's in-mask voxels; unusable values (NaN, inf, 0) become NaN.
    present : mapping of str to bool array, optional
        Per type, which analyses the array gives an image for (default: all).

    Returns
    -------
    Studyset
        Shares the tables of ``studyset``; ``store`` is kept.
    """
    n_vox = studyset.grid.n_voxels
    clean = {}
    for imtype, arr in arrays.items():
        arr = arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr))
        if arr.shape != (len(studyset), n_vox):
            raise ValueError(
                f"image array {imtype!r} has shape {arr.shape}; expected "
                f"({len(studyset)}, {n_vox}) (analyses x in-mask voxels)"
            )
        clean[imtype] = arr.astype(np.float32).map_blocks(_invalid_to_nan, dtype=np.float32)
    new = ImageArrays(studyset.ids, clean, present, grid_fingerprint=studyset.grid.fingerprint)
    old = image_arrays(studyset)
    if old is not None:
        if list(old.ids) != list(studyset.ids):
            old = _realigned(old, studyset.ids)
        new = old.updated(new)
    out = Studyset.__new__(Studyset)
    out._set_tables(**studyset._tables(), grid=studyset.grid)
    out.store = studyset.store
    out.info = dict(getattr(studyset, "info", {}) or {})
    out._image_arrays = new
    return out


def _realigned(arrs: ImageArrays, ids) -> ImageArrays:
    arrays, present = {}, {}
    for imtype in arrs.types:
        rows = arrs.rows_for(imtype, ids)
        arrays[imtype] = _take_rows(arrs.arrays[imtype], rows, arrs.source == "store")
        present[imtype] = rows >= 0
    return ImageArrays(
        ids,
        arrays,
        present,
        grid_fingerprint=arrs.grid_fingerprint,
        source=arrs.source,
        resample_kwargs=arrs.resample_kwargs,
    )


# ----------------------------------------------------------------------------- availability
def _file_paths(studyset: Studyset, imtype: str) -> list[str | None]:
    """The first file path of ``imtype`` per analysis (None where none), array rows excluded."""
    table = studyset._images
    if table.empty:
        return [None] * len(studyset)
    sub = table[(table["type"] == imtype) & table["path"].notna()]
    sub = sub[~sub["path"].astype(str).str.startswith(ARRAY_PATH)]
    sub = sub[sub["path"].astype(str) != ""]
    first = sub.drop_duplicates("id").set_index("id")["path"]
    vals = first.reindex(pd.Index(studyset.ids)).to_numpy(dtype=object)
    return [
        None if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v) for v in vals
    ]


def has_image(studyset: Studyset, imtype: str) -> np.ndarray:
    """Which analyses have an image of ``imtype`` (as an array or a file reference).

    Returns
    -------
    numpy.ndarray
        Boolean, aligned with ``studyset.ids`` (eager; no file is opened).
    """
    out = np.array([p is not None for p in _file_paths(studyset, imtype)], dtype=bool)
    arrs = image_arrays(studyset)
    if arrs is not None:
        out |= arrs.rows_for(imtype, studyset.ids) >= 0
    return out


def available_image_types(studyset: Studyset) -> list[str]:
    """Image types at least one analysis has (files or arrays), sorted.

    Returns
    -------
    list of str
    """
    types = set()
    table = studyset._images
    if not table.empty:
        ok = table["path"].notna() & ~table["path"].astype(str).str.startswith(ARRAY_PATH)
        types |= {str(t) for t in table.loc[ok, "type"].dropna().unique()}
    arrs = image_arrays(studyset)
    if arrs is not None:
        types |= {t for t in arrs.types if (arrs.rows_for(t, studyset.ids) >= 0).any()}
    return sorted(types)


def sample_size_lists(studyset: Studyset) -> list[list[float] | None]:
    """Per analysis, its sample sizes as a list (NiMARE's ``sample_sizes`` metadata).

    ``sample_sizes`` (a list, one entry per group) wins over ``sample_size`` (a number), as in
    NiMARE's coerced sample sizes; non-numeric or non-positive entries are dropped.

    Returns
    -------
    list
        Aligned with ``studyset.ids``; None where an analysis has no sample size.
    """
    meta = studyset._metadata
    out: list[list[float] | None] = [None] * len(studyset)
    for field in ("sample_size", "sample_sizes"):  # the later field wins
        if field not in meta:
            continue
        for i, v in enumerate(meta[field].to_numpy(dtype=object)):
            vals = _numbers(v)
            if vals:
                out[i] = vals
    return out


def _numbers(value) -> list[float]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    arr = np.atleast_1d(np.asarray(value, dtype=object)).ravel()
    vals = []
    for v in arr:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(f) and f > 0:
            vals.append(f)
    return vals


# ----------------------------------------------------------------------------- reading files
def _invalid_to_nan(block: np.ndarray) -> np.ndarray:
    block = np.array(block, dtype=np.float32, copy=True)
    block[~np.isfinite(block) | (block == 0)] = np.nan
    return block


def _resample_kwargs(resample_kwargs: dict | None) -> dict:
    kw = dict(DEFAULT_RESAMPLE_KWARGS)
    if resample_kwargs:
        unknown = {k for k in resample_kwargs if k.startswith("resample__")}
        if unknown:
            raise TypeError(
                f"resample_kwargs takes nilearn's names without the 'resample__' prefix; got "
                f"{sorted(unknown)}"
            )
        kw.update(resample_kwargs)
    return kw


def read_image_values(
    path: str | Path,
    grid: Grid,
    resample_kwargs: dict | None = None,
    analysis_id: str | None = None,
) -> np.ndarray:
    """Read one NIfTI image as float32 values over the grid's in-mask voxels.

    The image is masked directly when its shape and affine are the grid's (nilearn's
    ``check_same_fov``: same shape, ``np.allclose`` affines); otherwise it is resampled to
    the grid with :func:`nilearn.image.resample_to_img` (``clip=True``,
    ``interpolation="linear"``, ``copy_header=True``, updated by ``resample_kwargs``), as
    NiMARE's IBMA estimators do. A 4-D image with one volume is read as 3-D.

    Parameters
    ----------
    path : str or Path
    grid : Grid
    resample_kwargs : dict, optional
        nilearn ``resample_to_img`` keywords (NiMARE's ``resample__*`` without the prefix).
    analysis_id : str, optional
        Named in errors.

    Returns
    -------
    numpy.ndarray
        1-D float32, NaN where unusable (non-finite or exactly 0) (eager).

    Raises
    ------
    ImageError
        Missing or unreadable file, not 3-D, or no finite value at all.
    """
    who = f"analysis {analysis_id}: " if analysis_id is not None else ""
    path = str(path)
    if "://" in path and not path.startswith("file://"):
        raise ImageError(
            f"{who}image {path} is a URL; download it first (e.g. "
            "nimare_dask.datasets.neurovault.fetch_neurovault_collection) and reference the local file"
        )
    if path.startswith("file://"):
        path = path[len("file://") :]
    if not Path(path).is_file():
        raise ImageError(f"{who}image file {path} does not exist")
    try:
        img = nib.load(path)
        shape = img.shape
    except Exception as err:  # nibabel raises several types for corrupt files
        raise ImageError(f"{who}cannot read image {path} ({type(err).__name__}: {err})") from None
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
        shape = img.shape
    if len(shape) != 3:
        raise ImageError(
            f"{who}image {path} has shape {tuple(shape)}; expected a 3-D image (one map per "
            "analysis and type)"
        )
    try:
        if shape == grid.shape and np.allclose(img.affine, grid.affine):
            data = np.asanyarray(img.dataobj)
        else:
            from nilearn.image import resample_to_img

            res = resample_to_img(img, grid.mask_image(), **_resample_kwargs(resample_kwargs))
            data = np.asanyarray(res.dataobj)
    except ImageError:
        raise
    except Exception as err:
        raise ImageError(f"{who}cannot read image {path} ({type(err).__name__}: {err})") from None
    if not np.isfinite(data).any():
        raise ImageError(f"{who}image {path} holds no finite value")
    return _invalid_to_nan(data[grid.mask])


def _read_rows(paths: list, ids: list, grid: Grid, resample_kwargs: dict | None) -> np.ndarray:
    out = np.full((len(paths), grid.n_voxels), np.nan, dtype=np.float32)
    for i, (p, aid) in enumerate(zip(paths, ids, strict=True)):
        if p is not None:
            out[i] = read_image_values(p, grid, resample_kwargs, aid)
    return out


# ----------------------------------------------------------------------------- image_matrix
def _norm_chunks(chunks, n_rows: int, n_vox: int) -> tuple[int, int]:
    if chunks is None:
        chunks = DEFAULT_CHUNKS
    if len(chunks) != 2:
        raise ValueError(f"chunks must be (analyses, voxels), got {chunks!r}")
    a, v = chunks
    a = n_rows if a in (None, -1) else int(a)
    v = n_vox if v in (None, -1) else int(v)
    if a <= 0 or v <= 0:
        raise ValueError(f"chunks must be positive (or -1 for all), got {chunks!r}")
    return max(1, min(a, max(n_rows, 1))), max(1, min(v, n_vox))


def _take_rows(arr: da.Array, rows: np.ndarray, nan_rows_are_nan: bool = False) -> da.Array:
    """Rows of ``arr`` (-1: a NaN row), keeping its chunks when ``rows`` is in order.

    ``nan_rows_are_nan``: the rows not asked for already hold NaN (a store's arrays).
    """
    rows = np.asarray(rows, dtype=np.int64)
    ok = rows >= 0
    in_order = len(rows) == arr.shape[0] and np.array_equal(
        np.where(ok, rows, np.arange(len(rows))), np.arange(len(rows))
    )
    if in_order:
        if ok.all() or nan_rows_are_nan:
            return arr
        picked = arr
    else:
        picked = arr[np.where(ok, rows, 0)]
        if ok.all():
            return picked
    return da.where(da.from_array(ok[:, None], chunks=(picked.chunks[0], 1)), picked, np.nan)


def _file_matrix(studyset, paths, row_chunk, resample_kwargs) -> da.Array:
    grid = studyset.grid
    n, n_vox = len(paths), grid.n_voxels
    ids = [str(i) for i in studyset.ids]
    grid_d = dask.delayed(grid, pure=True)  # one key for the grid, shared by every task
    kw = _resample_kwargs(resample_kwargs)
    blocks = []
    for a in range(0, n, row_chunk):
        sub, sub_ids = paths[a : a + row_chunk], ids[a : a + row_chunk]
        token = dask.base.tokenize(sub, sub_ids, grid.fingerprint, kw, _mtimes(sub))
        task = dask.delayed(_read_rows, pure=True, name=f"read-images-{token}")
        blocks.append(
            da.from_delayed(
                task(sub, sub_ids, grid_d, kw), shape=(len(sub), n_vox), dtype=np.float32
            )
        )
    return da.concatenate(blocks, axis=0)


def _mtimes(paths) -> list:
    out = []
    for p in paths:
        try:
            out.append(None if p is None else Path(p).stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return out


def image_matrix(
    studyset: Studyset,
    imtype: str,
    *,
    chunks: tuple[int, int] | None = None,
    resample_kwargs: dict | None = None,
) -> da.Array:
    """Lazy ``(n_analyses, n_voxels)`` float32 array of one image type over the grid's voxels.

    Parameters
    ----------
    studyset : Studyset
        Rows follow ``studyset.ids``; columns the in-mask voxels of ``studyset.grid``.
    imtype : str
        ``"z"``, ``"t"``, ``"beta"``, ``"varcope"``, ... (see :func:`available_image_types`).
    chunks : (int, int), optional
        ``(analyses, voxels)`` chunk sizes (-1: all). Default :data:`DEFAULT_CHUNKS` for
        files; a store-backed studyset keeps its stored chunks unless ``chunks`` is given.
    resample_kwargs : dict, optional
        nilearn ``resample_to_img`` keywords for images whose grid differs (NiMARE's
        ``resample__*`` without the prefix); defaults ``clip=True, interpolation="linear"``.
        Store arrays made with other settings are not used: their files are read again.

    Returns
    -------
    dask.array.Array
        Lazy float32; NaN where an analysis has no image of that type and where a value is
        unusable (NaN, inf or exactly 0, as NiMARE's ``_usable``). Each file is read by one
        task, once; errors (:class:`ImageError`, naming the analysis and file) surface when
        computed.
    """
    if not isinstance(imtype, str) or not imtype:
        raise ValueError(f"imtype must be an image type name, got {imtype!r}")
    grid = studyset.grid
    n, n_vox = len(studyset), grid.n_voxels
    a_chunk, v_chunk = _norm_chunks(chunks, n, n_vox)
    if n == 0:
        return da.zeros((0, n_vox), dtype=np.float32, chunks=(1, v_chunk))
    rows = np.full(n, -1, dtype=np.int64)
    arrs = image_arrays(studyset)
    if arrs is not None and not (
        arrs.source == "store"
        and resample_kwargs is not None
        and _resample_kwargs(resample_kwargs) != _resample_kwargs(arrs.resample_kwargs)
    ):
        rows = arrs.rows_for(imtype, studyset.ids)
    paths = _file_paths(studyset, imtype)
    from_files = [p if r < 0 else None for p, r in zip(paths, rows, strict=True)]
    use_files = any(p is not None for p in from_files)
    if (rows < 0).all() and not use_files:
        if imtype not in available_image_types(studyset):
            raise ImageError(
                f"no analysis has an image of type {imtype!r}; available: "
                f"{available_image_types(studyset)}"
            )
    if not (rows >= 0).any():
        out = _file_matrix(studyset, from_files, a_chunk, resample_kwargs)
    else:
        stored = _take_rows(arrs.arrays[imtype], rows, arrs.source == "store")
        if use_files:
            files = _file_matrix(studyset, from_files, a_chunk, resample_kwargs)
            files = files.rechunk(stored.chunks)
            take = da.from_array(rows >= 0, chunks=stored.chunks[0])[:, None]
            out = da.where(take, stored, files)
        else:
            out = stored
        if chunks is None and arrs.source == "store" and out is arrs.arrays[imtype]:
            return out
    return out.rechunk((a_chunk, v_chunk))

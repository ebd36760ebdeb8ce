"""Pearson r between one image and every row of a (features x voxels) array, in one pass.

The maps are read once, block by block (``decode-correlate`` tasks: per block, each row's mean,
centred sum of squares, dot product with the centred image, min and max, by
:func:`~nimare_dask.decode._numba.row_moments`); the per-block moments of a row are then
combined (Chan et al.'s parallel update, ``decode-pearson``) into r, so memory is bounded by the
block size whatever the number of features. Used by
:meth:`nimare_dask.decode.featuremaps.FeatureMaps.correlate`.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from nimare_dask.decode._numba import row_moments
from nimare_dask.kernels.foci import shared
from nimare_dask.meta.base import compute
from nimare_dask.space import Grid

__all__ = ["as_values", "pearson_r", "shared_array"]

#: Columns per block when an in-memory array is correlated.
_MEMORY_BLOCK = 32768


def as_values(img, grid: Grid) -> np.ndarray:
    """An image (NIfTI, path) or 1-D array over the grid's voxels, as float64 values.

    Images are masked (resampled if needed) onto ``grid`` as float32, as NiMARE's masker does.
    """
    if isinstance(img, str | Path | nib.Nifti1Image) or hasattr(img, "get_fdata"):
        # as nilearn's masker: float32 values
        values = np.asarray(grid.to_map(img), dtype=np.float32)
    else:
        values = np.asarray(img)
    if values.ndim != 1 or values.shape[0] != grid.n_voxels:
        raise ValueError(
            f"the image to decode must be a 3-D image or a 1-D array of {grid.n_voxels} "
            f"in-mask values; got shape {values.shape}"
        )
    return values.astype(np.float64)


def _moments_task(block, xc, v0: int, v1: int):
    return row_moments(np.ascontiguousarray(block), np.ascontiguousarray(xc[v0:v1]))


def _pearson_task(width_list: tuple, norm_x: float, *parts) -> np.ndarray:
    """Combine per-chunk row moments (Chan et al.) into Pearson r per row."""
    n = np.asarray(width_list, dtype=np.float64)
    stacked = np.stack(parts)  # (n_chunks, rows, 6)
    means, m2, dots, sxs = stacked[..., 0], stacked[..., 1], stacked[..., 2], stacked[..., 3]
    total = n.sum()
    grand = (n[:, None] * means).sum(axis=0) / total
    ss = m2.sum(axis=0) + (n[:, None] * (means - grand) ** 2).sum(axis=0)
    dot = (dots + means * sxs).sum(axis=0)
    lo = stacked[..., 4].min(axis=0)
    hi = stacked[..., 5].max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = dot / (np.sqrt(ss) * norm_x)
    # a constant map has no variance: NiMARE's 0/0 gives NaN
    return np.where(lo == hi, np.nan, r)


def pearson_r(maps, img, grid: Grid, n_cores: int | None = None) -> np.ndarray:
    """Pearson r between ``img`` and each row of ``maps``, in one pass over the maps.

    Parameters
    ----------
    maps : dask.array.Array or numpy.ndarray
        (n_features, n_voxels) maps; an in-memory array enters the graph once.
    img : nibabel image, path, or 1-D array
        The map to decode (see :func:`as_values`).
    grid : Grid
        The voxel grid of the maps.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.

    Returns
    -------
    numpy.ndarray
        (n_features,) float64 r, in row order (eager); NaN for a constant map, as in NiMARE.
    """
    x = as_values(img, grid)
    xc = x - x.mean()
    norm_x = float(np.sqrt(np.dot(xc, xc)))
    arr = maps
    if not isinstance(arr, da.Array):
        arr = shared_array(np.asarray(arr), "decode-maps", _MEMORY_BLOCK)
    token = tokenize(arr.name, x)
    name = f"decode-correlate-{token}"
    comb = f"decode-pearson-{token}"
    vstarts = np.concatenate([[0], np.cumsum(arr.chunks[1])])
    # the centred image enters the graph once (scattered under distributed), not once per
    # block of maps
    xkey = shared(xc, "decode-image", token)
    dsk: dict = {}
    for a in range(len(arr.chunks[0])):
        for b in range(len(arr.chunks[1])):
            v0, v1 = int(vstarts[b]), int(vstarts[b + 1])
            dsk[(name, a, b)] = (_moments_task, (arr.name, a, b), xkey.key, v0, v1)
        dsk[(f"{comb}-part", a)] = (
            _pearson_task,
            tuple(int(w) for w in arr.chunks[1]),
            norm_x,
            *[(name, a, b) for b in range(len(arr.chunks[1]))],
        )
    dsk[comb] = (_concat, [(f"{comb}-part", a) for a in range(len(arr.chunks[0]))])
    graph = HighLevelGraph.from_collections(comb, dsk, dependencies=(arr, xkey))
    (r,) = compute(Delayed(comb, graph), n_cores=n_cores)
    return r


def _columns(values: np.ndarray, v0: int, v1: int) -> np.ndarray:
    return values[:, v0:v1]


def shared_array(values: np.ndarray, name: str, width: int) -> da.Array:
    """A 2-D array as a dask array chunked along columns, held in the graph once.

    Unlike :func:`dask.array.from_array`, the blocks are slices of one key (scattered to the
    cluster under distributed): the graph does not grow with the array.
    """
    token = tokenize(values)
    held = shared(values, f"{name}-values", token)
    n_rows, n_cols = values.shape
    bounds = list(range(0, n_cols, width)) + [n_cols]
    if n_cols == 0:
        bounds = [0, 0]
    key = f"{name}-{token}"
    dsk = {
        (key, 0, j): (_columns, held.key, int(v0), int(v1))
        for j, (v0, v1) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    }
    graph = HighLevelGraph.from_collections(key, dsk, dependencies=(held,))
    chunks = ((n_rows,), tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)))
    return da.Array(graph, key, chunks=chunks, dtype=values.dtype)


def _concat(parts) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)

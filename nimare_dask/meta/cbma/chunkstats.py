"""Lazy per-chunk statistics of MA maps: the summary statistics' partials and the nulls' inputs.

Besides the summary statistic (a reduction over studies), the approximate nulls need, per
study, a histogram of its MA values (ALE, KDA) or its coverage (MKDA). Each chunk of analyses
is one task: it builds the chunk's MA maps once, as CSR (only the non-zero values, with the
kernel's :meth:`csr_block`), and returns what the estimator needs from them; a final small task
combines the chunks in row order. A whole fit is therefore one ``dask.compute``, and every MA
map is built once.

For ALE the union statistic is reduced in the same pass: ``log1p(-MA)`` is evaluated in float32
and accumulated in float64 voxel by voxel in study order, exactly as NiMARE does (it takes
``np.log1p`` of its float32 CSR data and ``np.bincount``s it). Evaluating the logarithm in
float64 instead moves about 10% of the float32 ALE values by one ulp, and a value that sits on
a histogram-bin boundary then reads its p-value from the neighbouring bin. Chunk partials are
added in chunk order, so any chunking gives the same statistic up to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import dask
import numba
import numpy as np
from dask.base import tokenize

from nimare_dask.kernels.foci import foci_blocks
from nimare_dask.stats.nulls import _ALE_INV_STEP_EXACT, _nearest_bins, pad_histograms

__all__ = ["ale_chunk_stats", "chunk_bounds", "coverage", "kda_histograms", "per_chunk"]


def chunk_bounds(kernel, studyset, chunks=None) -> np.ndarray:
    """Row boundaries of the chunks of analyses: ``[0, c, 2c, ..., n]``.

    Parameters
    ----------
    kernel : kernel object
        Gives the default chunk size (analyses per ~64 MB dense chunk).
    studyset : Studyset
    chunks : int, optional
        Analyses per chunk.

    Returns
    -------
    numpy.ndarray
        int64 boundaries (eager).
    """
    n = len(studyset)
    per = int(chunks) if chunks is not None else kernel.default_rows_per_chunk(studyset.grid)
    if per < 1:
        raise ValueError(f"chunks must be a positive number of analyses, got {chunks}")
    return np.unique(np.append(np.arange(0, n, per), n)).astype(np.int64)


def _block_task(body, block):
    return body(*block)


def _csr_task(func, kernel, grid, ijk, rows, n_rows, sample_sizes, **kwargs):
    csr = kernel.csr_block(ijk, rows, n_rows, grid, sample_sizes)
    return func(csr, grid.n_voxels, **kwargs)


def per_chunk(
    kernel,
    studyset,
    func: Callable | None,
    combine: Callable,
    name: str,
    chunks=None,
    task: Callable | None = None,
    **kwargs,
):
    """Apply ``func(csr, n_voxels, **kwargs)`` to each chunk's MA maps; ``combine`` the results.

    Parameters
    ----------
    kernel : kernel object
        Provides ``csr_block(ijk, rows, n_rows, grid, sample_sizes)``.
    studyset : Studyset
        The analyses (foci grouped by analysis).
    func : callable
        Called on a scipy CSR matrix (rows = the chunk's analyses, float32, no stored zeros).
    combine : callable
        ``combine(list_of_results)``, in row order.
    name : str
        Task-name prefix (shown on the Dask dashboard).
    chunks : int, optional
        Analyses per chunk (default: the kernel's dense chunk size).
    task : callable, optional
        ``task(kernel, grid, ijk, rows, n_rows, sample_sizes, **kwargs)`` computing a chunk's
        result from its foci directly (then ``func`` is unused).

    Returns
    -------
    dask.delayed.Delayed
        The combined result (lazy).
    """
    grid = studyset.grid
    bounds = chunk_bounds(kernel, studyset, chunks)
    token = tokenize(kernel.cache_key(studyset), name, bounds, kwargs)
    # the kernel and grid travel in one partial: not traversed, not re-hashed by dask
    body = partial(_csr_task, func) if task is None else task
    task = dask.delayed(
        partial(_block_task, partial(body, kernel, grid, **kwargs)),
        pure=True,
        traverse=False,
        name=f"{name}-context-{token}",
    )
    # each chunk's foci come from the store or one shared table, not copied into the task
    blocks = foci_blocks(studyset, bounds, name, grid)
    parts = [task(block, dask_key_name=f"{name}-{token}-{i}") for i, block in enumerate(blocks)]
    return dask.delayed(combine, pure=True)(parts, dask_key_name=f"{name}-combine-{token}")


def _ale_bins(values: np.ndarray) -> np.ndarray:
    """Nearest bin of the ALE null grid (1e-5) of each (positive) MA value."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    return _nearest_bins(values, _ALE_INV_STEP_EXACT, 1 << 62)


def _ale_task(kernel, grid, ijk, rows, n_rows, sample_sizes):
    # numpy's float32 log1p of each distinct kernel value, as NiMARE evaluates it (see the
    # module docstring), looked up per voxel
    return kernel.tabulate_block(
        ijk, rows, n_rows, grid, sample_sizes, lambda v: np.log1p(-v), _ale_bins
    )


def _ale_combine(parts):
    log1m = parts[0][0].copy()
    for p in parts[1:]:
        log1m += p[0]
    counts = pad_histograms([p[1] for p in parts])
    row_max = np.concatenate([p[2] for p in parts])
    return log1m, counts, row_max


def ale_chunk_stats(kernel, studyset, chunks=None):
    """ALE union log-sum, per-study MA histograms (1e-5 grid) and maxima, in one pass.

    Returns
    -------
    dask.delayed.Delayed
        ``(log1m (n_voxels,) float64 = sum_i log(1 - MA_i), counts (n_studies, L) int32,
        row_max (n_studies,) float32)`` (lazy).
    """
    return per_chunk(
        kernel, studyset, None, _ale_combine, "ale-chunk-stats", chunks, task=_ale_task
    )


@numba.njit(cache=True, nogil=True)
def _csr_row_counts(indptr, data, n_voxels, step):
    n_rows = indptr.shape[0] - 1
    top = 0
    for i in range(data.shape[0]):
        k = int(np.floor(data[i] / step + 0.5))
        if k > top:
            top = k
    counts = np.zeros((n_rows, top + 1), dtype=np.int64)
    for r in range(n_rows):
        counts[r, 0] = n_voxels - (indptr[r + 1] - indptr[r])
        for i in range(indptr[r], indptr[r + 1]):
            counts[r, max(0, int(np.floor(data[i] / step + 0.5)))] += 1
    return counts


def _kda_chunk(csr, n_voxels, step):
    data = np.asarray(csr.data, dtype=np.float64)
    return _csr_row_counts(csr.indptr.astype(np.int64), data, n_voxels, float(step))


def kda_histograms(kernel, studyset, step: float, chunks=None):
    """Per-study histograms of KDA sphere counts (values are multiples of ``step``).

    Returns
    -------
    dask.delayed.Delayed
        (n_studies, L) int64 counts; each row sums to the number of voxels (lazy).
    """
    return per_chunk(
        kernel, studyset, _kda_chunk, pad_histograms, "kda-histograms", chunks, step=step
    )


def _coverage_chunk(csr, n_voxels):
    sums = np.zeros(csr.shape[0])
    nnz = np.diff(csr.indptr)
    if csr.nnz:
        starts = csr.indptr[:-1][nnz > 0]
        sums[nnz > 0] = np.add.reduceat(csr.data.astype(np.float64), starts)
    return sums


def _concat(parts):
    return np.concatenate(parts)


def coverage(kernel, studyset, chunks=None):
    """Per-study sum of MA values over the mask (MKDA: number of covered voxels).

    Returns
    -------
    dask.delayed.Delayed
        (n_studies,) float64 (lazy).
    """
    return per_chunk(kernel, studyset, _coverage_chunk, _concat, "ma-coverage", chunks)

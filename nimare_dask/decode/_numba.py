"""numba kernels of the blocked feature-map computation and of the Pearson reduction.

* :func:`split_by_voxel_chunk`: one ``decode-ma`` task's CSR pattern split by voxel chunk.
* :func:`scatter_counts`: ``A @ M[:, chunk]`` as a scatter-add (``decode-counts``).
* :func:`row_moments`: per-row moments of a block of maps against the centred image
  (:mod:`nimare_dask.decode.correlate`).

Argument dtypes are fixed by the callers (int64 pointers, int32 voxel indices and labels,
uint16 offsets, int32 counts, float32 maps, float64 image), so each kernel compiles one
signature.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["row_moments", "scatter_counts", "split_by_voxel_chunk"]


@njit(nogil=True, cache=True)
def split_by_voxel_chunk(indptr, indices, width, n_chunks):  # pragma: no cover - numba
    """Split a CSR pattern by voxel chunk: per chunk, row pointers and uint16 offsets."""
    n_rows = indptr.shape[0] - 1
    ptrs = np.zeros((n_chunks, n_rows + 1), dtype=np.int64)
    for r in range(n_rows):
        for p in range(indptr[r], indptr[r + 1]):
            ptrs[indices[p] // width, r + 1] += 1
    starts = np.zeros(n_chunks + 1, dtype=np.int64)
    for b in range(n_chunks):
        for r in range(n_rows):
            ptrs[b, r + 1] += ptrs[b, r]
        starts[b + 1] = starts[b] + ptrs[b, n_rows]
    out = np.empty(starts[n_chunks], dtype=np.uint16)
    cursor = np.empty(n_chunks, dtype=np.int64)
    for r in range(n_rows):
        for b in range(n_chunks):
            cursor[b] = starts[b] + ptrs[b, r]
        for p in range(indptr[r], indptr[r + 1]):
            v = indices[p]
            b = v // width
            out[cursor[b]] = v - b * width
            cursor[b] += 1
    return ptrs, starts, out


@njit(nogil=True, cache=True)
def scatter_counts(counts, total, row0, ptr, idx, lab_ptr, lab_idx):  # pragma: no cover
    """counts[f, v] += 1 for every feature f of every analysis active at voxel v."""
    n_rows = ptr.shape[0] - 1
    for r in range(n_rows):
        a = ptr[r]
        b = ptr[r + 1]
        if a == b:
            continue
        for p in range(a, b):
            total[idx[p]] += 1
        s = row0 + r
        for q in range(lab_ptr[s], lab_ptr[s + 1]):
            row = counts[lab_idx[q]]
            for p in range(a, b):
                row[idx[p]] += 1


@njit(nogil=True, cache=True)
def row_moments(block, xc):  # pragma: no cover - numba
    """Per row, in one pass: mean, centred sum of squares, sum((z - mean) * xc), sum(xc),
    min and max. Values are shifted by the row's first value for numerical stability."""
    n_rows, width = block.shape
    out = np.empty((n_rows, 6), dtype=np.float64)
    sx = 0.0
    for v in range(width):
        sx += xc[v]
    for r in range(n_rows):
        k = np.float64(block[r, 0]) if width else 0.0
        s = 0.0
        s2 = 0.0
        dot = 0.0
        lo = np.inf
        hi = -np.inf
        for v in range(width):
            z = np.float64(block[r, v])
            d = z - k
            s += d
            s2 += d * d
            dot += d * xc[v]
            lo = min(lo, z)
            hi = max(hi, z)
        mean_d = s / width if width else 0.0
        out[r, 0] = k + mean_d
        out[r, 1] = max(s2 - s * mean_d, 0.0)
        # sum((z - mean) * xc) = sum((d - mean_d) * xc)
        out[r, 2] = dot - mean_d * sx
        out[r, 3] = sx
        out[r, 4] = lo
        out[r, 5] = hi
    return out

"""The hot loops: scatter kernels around foci into MA rows (numba, GIL released).

Every function here works on plain arrays so that Dask threads (and the Monte Carlo engine)
can call it concurrently. Conventions shared by all of them:

* ``ijk``: (n_foci, 3) int64 grid indices of the foci;
* a kernel bank (see :class:`~nimare_dask.kernels.shapes.KernelBank`): ``values`` and the
  kernels as runs along the last grid axis (``run_ptr``, ``runs``); row ``r`` uses kernel
  ``row_kid[r]``;
* ``shape``: (3,) int64 grid shape and the mask as segments of consecutive in-mask voxels per
  grid row (``seg_ptr``, ``segs``: :attr:`~nimare_dask.space.Grid.column_segments`). A run
  clipped to a segment is a *span* of consecutive voxel indices, scattered in a tight
  (vectorised) loop; kernel voxels outside the grid or the mask are dropped;
* ``mode``: :data:`MODE_MAX` (voxel-wise max over a row's foci: ALE, MKDA) or
  :data:`MODE_ADD` (sum over a row's foci: KDA); then every value is multiplied by the
  float32 ``scale`` (the sphere ``value``; 1 for ALE), exactly as NiMARE does
  (``float32(count) * float32(value)``).

Row-grouped functions take ``ptr`` (n_rows + 1,): the foci of row ``r`` are
``ijk[ptr[r]:ptr[r+1]]``. They build one row at a time in a scratch vector with a list of
the voxels it touched, so their memory is O(n_voxels), never O(n_rows * n_voxels).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "MODE_MAX",
    "MODE_ADD",
    "HOW_SUM",
    "HOW_LOG1M",
    "HOW_COUNT",
    "dense_block",
    "reduce_block",
    "count_block",
    "tabulate_block",
    "csr_block",
    "row_max_block",
]

MODE_MAX = 0
MODE_ADD = 1

HOW_SUM = 0
HOW_LOG1M = 1
HOW_COUNT = 2


@njit(nogil=True, cache=True)
def dense_block(
    ijk, ptr, row_kid, n_vox, values, run_ptr, runs, shape, seg_ptr, segs, mode, scale, spans,
):  # fmt: skip
    """Dense (n_rows, n_vox) float32 MA block; row ``r``'s foci are ``ijk[ptr[r]:ptr[r+1]]``."""
    n_rows = ptr.shape[0] - 1
    out = np.zeros((n_rows, n_vox), dtype=np.float32)
    for r in range(n_rows):
        n = _row_spans(ijk, ptr[r], ptr[r + 1], row_kid[r], run_ptr, runs, shape, seg_ptr, segs,
                       spans)  # fmt: skip
        _apply_spans(out[r], values, spans, n, mode)
    if scale != np.float32(1.0):
        for r in range(n_rows):
            for v in range(n_vox):
                if out[r, v] != 0:
                    out[r, v] = out[r, v] * scale
    return out


@njit(nogil=True, cache=True)
def _row_spans(ijk, f0, f1, kk, run_ptr, runs, shape, seg_ptr, segs, spans):
    """The spans of foci ``f0..f1`` (kernel ``kk``): kernel runs clipped to mask segments.

    Span ``q`` is ``(first voxel, first kernel entry, length)``: voxels
    ``spans[q, 0] + z`` take entries ``spans[q, 1] + z``. Listed focus by focus, so a voxel
    meets its foci in order. Returns the number of spans.
    """
    s0, s1 = shape[0], shape[1]
    n = 0
    for f in range(f0, f1):
        i = ijk[f, 0]
        j = ijk[f, 1]
        k = ijk[f, 2]
        for q in range(run_ptr[kk], run_ptr[kk + 1]):
            x = i + runs[q, 0]
            y = j + runs[q, 1]
            if x < 0 or x >= s0 or y < 0 or y >= s1:
                continue
            z0 = k + runs[q, 2]
            z1 = z0 + runs[q, 3]  # exclusive
            row = x * s1 + y
            for g in range(seg_ptr[row], seg_ptr[row + 1]):
                lo = z0 if z0 > segs[g, 0] else segs[g, 0]
                hi = z1 if z1 < segs[g, 1] + 1 else segs[g, 1] + 1
                if lo >= hi:
                    continue
                spans[n, 0] = segs[g, 2] + lo - segs[g, 0]
                spans[n, 1] = runs[q, 4] + lo - z0
                spans[n, 2] = hi - lo
                n += 1
    return n


@njit(nogil=True, cache=True)
def _apply_spans(row, values, spans, n, mode):
    """Scatter the spans' kernel values into ``row`` (max or sum, float32; vectorised)."""
    for q in range(n):
        a = np.uint64(spans[q, 0])
        e = np.uint64(spans[q, 1])
        for z in range(np.uint64(spans[q, 2])):
            val = values[e + z]
            cur = row[a + z]
            if mode == MODE_MAX:
                row[a + z] = val if val > cur else cur
            else:
                row[a + z] = cur + val


@njit(nogil=True, cache=True)
def _fill_row(scratch, touched, ijk, f0, f1, kk, values, run_ptr, runs, shape, seg_ptr, segs,
              mode, spans):  # fmt: skip
    """Build one row in ``scratch`` (zero outside it); list its voxels once each in ``touched``.

    Kernel values are > 0, so the row's voxels are its non-zero ones. Returns their number.
    """
    n_spans = _row_spans(ijk, f0, f1, kk, run_ptr, runs, shape, seg_ptr, segs, spans)
    _apply_spans(scratch, values, spans, n_spans, mode)
    # each voxel once: flip the sign of the ones listed, then restore it
    n = 0
    for q in range(n_spans):
        a = spans[q, 0]
        for z in range(spans[q, 2]):
            v = a + z
            if scratch[v] > 0:
                touched[n] = v
                scratch[v] = -scratch[v]
                n += 1
    for t in range(n):
        scratch[touched[t]] = -scratch[touched[t]]
    return n


@njit(nogil=True, cache=True)
def reduce_block(
    ijk, ptr, row_kid, weights, how, n_vox, values, run_ptr, runs, shape, seg_ptr, segs, mode,
    scale, spans,
):  # fmt: skip
    """Fused reduction over rows, without a dense block: a (n_vox,) float64 partial.

    ``how``: :data:`HOW_SUM` (sum of ``weights[r] * MA_r``), :data:`HOW_LOG1M`
    (sum of ``log(1 - MA_r)``) or :data:`HOW_COUNT` (number of rows with ``MA_r > 0``).
    """
    acc = np.zeros(n_vox, dtype=np.float64)
    scratch = np.zeros(n_vox, dtype=np.float32)
    touched = np.empty(n_vox, dtype=np.int32)
    n_rows = ptr.shape[0] - 1
    for r in range(n_rows):
        n = _fill_row(
            scratch, touched, ijk, ptr[r], ptr[r + 1], row_kid[r], values, run_ptr, runs, shape,
            seg_ptr, segs, mode, spans,
        )  # fmt: skip
        w = weights[r]
        for t in range(n):
            v = touched[t]
            val = scratch[v] * scale  # float32, as in the dense maps
            scratch[v] = 0
            if how == HOW_SUM:
                acc[v] += w * np.float64(val)
            elif how == HOW_LOG1M:
                acc[v] += np.log1p(-np.float64(val))
            elif val > 0:
                acc[v] += 1.0
    return acc


@njit(nogil=True, cache=True)
def tabulate_block(
    ijk, ptr, row_kid, n_vox, ranks, run_ptr, runs, shape, seg_ptr, segs, spans, acc_table,
    bin_table, val_table, n_bins,
):  # fmt: skip
    """Reductions of max-kernel MA rows through per-value tables, without building the rows.

    ``ranks[t]`` is the rank of kernel entry ``t``'s value among the bank's distinct values, so
    a voxel's MA value is the one of its largest rank. Per voxel, ``acc[v]`` sums
    ``acc_table[rank]`` over the rows in row order; per row, ``counts[r, bin_table[rank]]``
    counts its voxels (voxels it does not reach in bin 0), and ``row_max[r]`` is
    ``val_table`` of its largest rank (0 for an empty row).
    """
    n_rows = ptr.shape[0] - 1
    acc = np.zeros(n_vox)
    counts = np.zeros((n_rows, n_bins), dtype=np.int32)
    row_max = np.zeros(n_rows, dtype=np.float32)
    scratch = np.zeros(n_vox, dtype=np.int32)  # rank + 1; 0: not reached
    for r in range(n_rows):
        n = _row_spans(ijk, ptr[r], ptr[r + 1], row_kid[r], run_ptr, runs, shape, seg_ptr, segs,
                       spans)  # fmt: skip
        for q in range(n):
            a = np.uint64(spans[q, 0])
            e = np.uint64(spans[q, 1])
            for z in range(np.uint64(spans[q, 2])):
                val = ranks[e + z] + 1
                cur = scratch[a + z]
                scratch[a + z] = val if val > cur else cur
        reached = 0
        best = 0
        for q in range(n):
            a = spans[q, 0]
            for z in range(spans[q, 2]):
                k = scratch[a + z]
                if k > 0:
                    acc[a + z] += acc_table[k - 1]
                    counts[r, bin_table[k - 1]] += 1
                    reached += 1
                    if k > best:
                        best = k
                    scratch[a + z] = 0
        counts[r, 0] += n_vox - reached
        if best > 0:
            row_max[r] = val_table[best - 1]
    return acc, counts, row_max


@njit(nogil=True, cache=True)
def count_block(ijk, ptr, row_kid, n_vox, run_ptr, runs, shape, seg_ptr, segs, spans):
    """Per voxel, the number of rows whose MA map is > 0: :data:`HOW_COUNT` of
    :func:`reduce_block` (kernel values are > 0, so "> 0" is "covered by a span").

    No scratch row: a voxel counts a row once, whatever the number of the row's foci that cover
    it, because ``stamp[v]`` holds the last row counted there (branch-free, so LLVM vectorises
    each span).
    """
    stamp = np.full(n_vox, -1, dtype=np.int32)
    count = np.zeros(n_vox, dtype=np.int32)
    for r in range(ptr.shape[0] - 1):
        n = _row_spans(ijk, ptr[r], ptr[r + 1], row_kid[r], run_ptr, runs, shape, seg_ptr, segs,
                       spans)  # fmt: skip
        rr = np.int32(r)
        for q in range(n):
            a = np.uint64(spans[q, 0])
            for z in range(np.uint64(spans[q, 2])):
                count[a + z] += np.int32(stamp[a + z] != rr)
                stamp[a + z] = rr
    return count.astype(np.float64)


@njit(nogil=True, cache=True)
def _sorted_prefix(buf, tmp, n, n_bits):
    """Sort ``buf[:n]`` (ints in ``[0, 2**n_bits)``); return the array holding the result.

    LSD radix sort with 11-bit digits (2 passes for grids up to 4M voxels), about 10x faster
    than ``np.sort`` on the ~10^4 voxels of a typical MA row; an insertion sort for short rows
    (as fast there, and far less to compile than ``np.sort``).
    """
    if n < 256:
        for i in range(1, n):
            x = buf[i]
            j = i - 1
            while j >= 0 and buf[j] > x:
                buf[j + 1] = buf[j]
                j -= 1
            buf[j + 1] = x
        return buf
    counts = np.zeros(2048, dtype=np.int64)
    src = buf
    dst = tmp
    shift = 0
    while shift < n_bits:
        counts[:] = 0
        for i in range(n):
            counts[(src[i] >> shift) & 2047] += 1
        total = 0
        for d in range(2048):
            c = counts[d]
            counts[d] = total
            total += c
        for i in range(n):
            d = (src[i] >> shift) & 2047
            dst[counts[d]] = src[i]
            counts[d] += 1
        src, dst = dst, src
        shift += 11
    return src


@njit(nogil=True, cache=True)
def csr_block(
    ijk, ptr, row_kid, cap, n_vox, values, run_ptr, runs, shape, seg_ptr, segs, mode, scale,
    spans,
):  # fmt: skip
    """CSR parts (indptr int64, indices int32, data float32) of the rows; sorted indices.

    ``cap`` must bound the number of stored values (e.g. sum over rows of
    ``min(n_vox, n_foci_r * kernel_size_r)``); the arrays returned are trimmed to it.
    """
    n_rows = ptr.shape[0] - 1
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indices = np.empty(cap, dtype=np.int32)
    data = np.empty(cap, dtype=np.float32)
    scratch = np.zeros(n_vox, dtype=np.float32)
    touched = np.empty(n_vox, dtype=np.int32)
    tmp = np.empty(n_vox, dtype=np.int32)
    n_bits = 1
    while (1 << n_bits) < n_vox:
        n_bits += 1
    pos = 0
    for r in range(n_rows):
        n = _fill_row(
            scratch, touched, ijk, ptr[r], ptr[r + 1], row_kid[r], values, run_ptr, runs, shape,
            seg_ptr, segs, mode, spans,
        )  # fmt: skip
        cols = _sorted_prefix(touched, tmp, n, n_bits)
        for t in range(n):
            v = cols[t]
            indices[pos] = v
            data[pos] = scratch[v] * scale
            scratch[v] = 0
            pos += 1
        indptr[r + 1] = pos
    return indptr, indices[:pos].copy(), data[:pos].copy()


@njit(nogil=True, cache=True)
def row_max_block(
    ijk, ptr, row_kid, n_vox, values, run_ptr, runs, shape, seg_ptr, segs, mode, scale, spans
):
    """Per-row maximum MA value (float32; 0 for rows with no in-mask voxel)."""
    n_rows = ptr.shape[0] - 1
    out = np.zeros(n_rows, dtype=np.float32)
    scratch = np.zeros(n_vox, dtype=np.float32)
    touched = np.empty(n_vox, dtype=np.int32)
    for r in range(n_rows):
        n = _fill_row(
            scratch, touched, ijk, ptr[r], ptr[r + 1], row_kid[r], values, run_ptr, runs, shape,
            seg_ptr, segs, mode, spans,
        )  # fmt: skip
        best = np.float32(0.0)
        for t in range(n):
            v = touched[t]
            val = scratch[v] * scale
            scratch[v] = 0
            if val > best:
                best = val
        out[r] = best
    return out

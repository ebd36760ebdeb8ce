"""The hot loops of the random-foci Monte Carlo nulls (numba, GIL released so threads scale).

One iteration places every focus of every study at a random position and reduces the studies'
modelled-activation (MA) maps straight into a float64 accumulator over the in-mask voxels,
without building any MA map:

* ALE (:func:`ale_accumulate`): ``acc[v] = sum_i log(1 - MA_i[v])`` with ``MA_i`` the voxel-wise
  maximum over study ``i``'s foci. The kernel is scattered as its precomputed ``log(1 - value)``
  (float32 ``log1p``, the arithmetic of the observed statistic), so the per-study maximum of MA
  is the minimum of these logs and no logarithm is evaluated in the loop.
* MKDA (:func:`union_accumulate`): ``acc[v] += w_i * value`` once per study covering ``v``.
* KDA (:func:`sum_accumulate`): ``acc[v] += w_i * value`` for every focus covering ``v``.

Kernels are stored as *runs* along the grid's last axis
(:func:`nimare_dask.kernels.shapes.kernel_runs`, kept by every kernel bank), the mask as the
in-mask segments of each grid row (:attr:`nimare_dask.space.Grid.column_segments`; in-mask
voxels are numbered in C order, so a segment's voxels are consecutive). A study is then processed in two phases: its
foci's runs are clipped to the segments and listed as spans (first voxel, first kernel entry,
length), and the spans are applied in tight, vectorised loops. Spans that another focus of the
same study may reach (their kernel boxes overlap) take the study's voxel-wise maximum in a
scratch vector first; all other spans are added directly. The sums are in study order, exactly
as the observed statistic's: an iteration's map equals the estimator's ``fit`` on the moved
foci bit for bit.

A *scan* then reads the accumulator: the maximum statistic (numpy's SIMD reductions per chunk
of voxels) and the supra-threshold voxels of the few chunks that hold any, which the
6-connected labelling of :mod:`nimare_dask.stats.clusters` turns into the largest cluster size
and mass. For ALE the statistic ``float32(1 - exp(acc))`` is monotone in ``acc``, so the
maximum needs one ``exp`` and the threshold test evaluates ``exp`` only near the threshold.

Label-permutation nulls (ALESubtraction, MKDAChi2) live in
:mod:`nimare_dask.meta.cbma.permutation`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nimare_dask.stats.clusters import max_stats_of_supra

__all__ = [
    "CHUNK",
    "ale_accumulate",
    "ale_scan",
    "ale_scan_exceed",
    "ale_scan_hist",
    "scan_chunks",
    "sum_accumulate",
    "sum_scan",
    "sum_scan_hist",
    "union_accumulate",
]


# ---------------------------------------------------------------------------- run scatter
# A study is processed in two phases: its foci's kernel runs are first clipped to the mask's
# segments and listed as spans ``(first voxel, first kernel entry, length, shared)``; the
# spans are then applied in tight, vectorised loops. A span is "shared" when another focus of
# the same study may reach its voxels (kernel boxes overlap): those go through a scratch
# vector that takes the study's voxel-wise maximum first.
@njit(nogil=True, cache=True, inline="always")
def _collect(f, kk, ijk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, mark, use_mark, spans, n):
    """Append the spans of focus ``f``'s kernel ``kk`` to ``spans``; returns the new count.

    A run whose (di, dj) cell is set in ``mark`` (another focus of the study may reach it) is
    flagged shared. Everything is written out in this one function: calls with array
    arguments inside the loop would cost reference counting per run.
    """
    i, j, k = ijk[f, 0], ijk[f, 1], ijk[f, 2]
    for q in range(run_ptr[kk], run_ptr[kk + 1]):
        x = i + runs[q, 0]
        y = j + runs[q, 1]
        if x < 0 or x >= s0 or y < 0 or y >= s1:
            continue
        row = x * s1 + y
        n_seg = rows[row, 3]
        if n_seg == 0:
            continue
        z0 = k + runs[q, 2]
        z1 = z0 + runs[q, 3] - 1
        share = 1 if (use_mark and mark[runs[q, 5]]) else 0
        if n_seg == 1:
            zs = rows[row, 0]
            lo = z0 if z0 > zs else zs
            hi = z1 if z1 < rows[row, 1] else rows[row, 1]
            if lo <= hi:
                spans[n, 0] = rows[row, 2] - zs + lo
                spans[n, 1] = runs[q, 4] + lo - z0
                spans[n, 2] = hi - lo + 1
                spans[n, 3] = share
                n += 1
            continue
        for s in range(seg_ptr[row], seg_ptr[row + 1]):
            zs = segs[s, 0]
            lo = z0 if z0 > zs else zs
            hi = z1 if z1 < segs[s, 1] else segs[s, 1]
            if lo <= hi:
                spans[n, 0] = segs[s, 2] - zs + lo
                spans[n, 1] = runs[q, 4] + lo - z0
                spans[n, 2] = hi - lo + 1
                spans[n, 3] = share
                n += 1
    return n


@njit(nogil=True, cache=True)
def _mark_partners(ijk, f0, f1, f, ext, mark):
    """Mark the (di, dj) cells of focus ``f``'s kernel box that another focus's box reaches.

    Returns whether any is marked. The test is on boxes (a superset of the voxels two kernels
    share), which is all correctness needs: shared voxels merely take the slower path.
    """
    wi = 2 * ext[0] + 1
    wj = 2 * ext[1] + 1
    any_marked = False
    for g in range(f0, f1):
        if g == f:
            continue
        di = ijk[g, 0] - ijk[f, 0]
        dj = ijk[g, 1] - ijk[f, 1]
        dk = ijk[g, 2] - ijk[f, 2]
        if abs(di) > 2 * ext[0] or abs(dj) > 2 * ext[1] or abs(dk) > 2 * ext[2]:
            continue
        if not any_marked:
            for c in range(wi * wj):
                mark[c] = 0
            any_marked = True
        a0 = max(-ext[0], di - ext[0])
        a1 = min(ext[0], di + ext[0])
        b0 = max(-ext[1], dj - ext[1])
        b1 = min(ext[1], dj + ext[1])
        for a in range(a0, a1 + 1):
            base = (a + ext[0]) * wj + ext[1]
            for b in range(b0, b1 + 1):
                mark[base + b] = 1
    return any_marked


#: Studies with more foci than this mark every span shared: their kernels overlap anyway,
#: and finding partners is quadratic in the number of foci.
MANY_FOCI = 24


@njit(nogil=True, cache=True)
def _study_spans(ijk, f0, f1, kk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, ext, mark, spans):
    """All spans of one study's foci (shared ones flagged); returns their count."""
    n = 0
    if f1 - f0 > MANY_FOCI:
        for c in range(mark.shape[0]):
            mark[c] = 1
        for f in range(f0, f1):
            n = _collect(
                f, kk, ijk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, mark, True, spans, n
            )
        return n
    many = f1 - f0 > 1
    for f in range(f0, f1):
        use = _mark_partners(ijk, f0, f1, f, ext, mark) if many else False
        n = _collect(f, kk, ijk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, mark, use, spans, n)
    return n


# unsigned indices below: numba then drops its negative-index wraparound and LLVM vectorises
@njit(nogil=True, cache=True)
def _apply_log(acc, scratch, entry, spans, n):
    """ALE: direct spans add their logs to ``acc``; shared ones take the minimum in ``scratch``,
    then ``acc += scratch`` over them (a span listed twice adds 0.0 the second time: exact).

    When the shared spans hold more elements than half the voxels, ``acc += scratch`` runs over
    every voxel instead (adding 0.0 where the study is absent: exact too).
    """
    n_shared = 0
    for q in range(n):
        a = np.uint64(spans[q, 0])
        e = np.uint64(spans[q, 1])
        m = np.uint64(spans[q, 2])
        if spans[q, 3] == 0:
            for z in range(m):
                acc[a + z] += entry[e + z]
        else:
            n_shared += spans[q, 2]
            for z in range(m):
                val = entry[e + z]
                cur = scratch[a + z]
                scratch[a + z] = val if val < cur else cur
    if 2 * n_shared > acc.shape[0]:
        for v in range(acc.shape[0]):
            acc[v] += np.float64(scratch[v])
            scratch[v] = 0.0
    elif n_shared:
        for q in range(n):
            if spans[q, 3] == 0:
                continue
            a = np.uint64(spans[q, 0])
            for z in range(np.uint64(spans[q, 2])):
                acc[a + z] += np.float64(scratch[a + z])
                scratch[a + z] = 0.0


@njit(nogil=True, cache=True)
def _apply_const(acc, scratch, spans, n, c, union):
    """MKDA (``union``) / KDA: ``acc += c`` once per study (union) or per focus (sum)."""
    n_shared = 0
    for q in range(n):
        a = np.uint64(spans[q, 0])
        m = np.uint64(spans[q, 2])
        if spans[q, 3] == 0 or not union:
            for z in range(m):
                acc[a + z] += c
        else:
            n_shared += spans[q, 2]
            for z in range(m):
                scratch[a + z] = 1.0
    if 2 * n_shared > acc.shape[0]:
        for v in range(acc.shape[0]):
            acc[v] += c * scratch[v]
            scratch[v] = 0.0
    elif n_shared:
        for q in range(n):
            if spans[q, 3] == 0:
                continue
            a = np.uint64(spans[q, 0])
            for z in range(np.uint64(spans[q, 2])):
                acc[a + z] += c * scratch[a + z]
                scratch[a + z] = 0.0


@njit(nogil=True, cache=True)
def _max_cells(extent):
    m = 1
    for kk in range(extent.shape[0]):
        c = (2 * extent[kk, 0] + 1) * (2 * extent[kk, 1] + 1)
        if c > m:
            m = c
    return m


# ---------------------------------------------------------------------------- ALE
@njit(nogil=True, cache=True)
def ale_accumulate(
    ijk, ptr, row_kid, run_ptr, runs, extent, logv, shape, rows, seg_ptr, segs, acc, scratch,
    spans,
):  # fmt: skip
    """Add ``sum_i log(1 - MA_i)`` of the studies with foci at ``ijk`` into ``acc``.

    ``logv[t] < 0`` is ``log1p(-value_t)`` of kernel entry ``t`` (float32, like ``scratch``);
    row ``r``'s foci are ``ijk[ptr[r]:ptr[r+1]]`` and use kernel ``row_kid[r]``. Voxels only one
    focus of a study can reach are added directly; the others take the minimum of the logs
    (the maximum MA) in ``scratch`` (float32 zeros, left zero) first. ``spans`` ((n, 4) int64)
    must hold every span of the largest study.
    """
    s0, s1 = shape[0], shape[1]
    mark = np.empty(_max_cells(extent), dtype=np.uint8)
    for r in range(ptr.shape[0] - 1):
        f0 = ptr[r]
        f1 = ptr[r + 1]
        if f1 == f0:
            continue
        kk = row_kid[r]
        n = _study_spans(
            ijk, f0, f1, kk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, extent[kk], mark, spans
        )
        _apply_log(acc, scratch, logv, spans, n)


@njit(nogil=True, cache=True)
def _ale_value(a):
    return np.float32(1.0 - np.exp(a))


CHUNK = 512


def scan_chunks(acc: np.ndarray, starts: np.ndarray, bound: float, below: bool):
    """The extreme of ``acc`` and the chunks (of :data:`CHUNK` voxels) that hold a candidate.

    numpy's SIMD reductions: numba does not vectorise min/max reductions.

    Returns
    -------
    extreme : float
        ``min(0, acc.min())`` (``below``) or ``max(0, acc.max())``.
    flagged : numpy.ndarray
        int64 starts of the chunks with a value ``< bound`` (``below``) or ``> bound``.
    """
    if below:
        ext = np.minimum.reduceat(acc, starts)
        return min(0.0, float(ext.min())), starts[ext < bound]
    ext = np.maximum.reduceat(acc, starts)
    return max(0.0, float(ext.max())), starts[ext > bound]


@njit(nogil=True, cache=True)
def _candidates(acc, flagged, bound, below, idx_buf, val_buf):
    """Voxels beyond ``bound`` in the flagged chunks, ascending, with their ``acc``."""
    n = acc.shape[0]
    m = 0
    for c in range(flagged.shape[0]):
        c0 = flagged[c]
        for v in range(c0, min(n, c0 + CHUNK)):
            a = acc[v]
            if (below and a < bound) or (not below and a > bound):
                idx_buf[m] = v
                val_buf[m] = a
                m += 1
    return m


@njit(nogil=True, cache=True)
def ale_supra(acc, flagged, thr, nbrs, cl_scratch, idx_buf, val_buf):
    """Largest cluster of ``float32(1 - exp(acc)) > thr`` (NiMARE thresholds its float32 map).

    Candidates come from :func:`scan_chunks` with ``bound = log1p(-thr) + 1e-6`` (a margin far
    wider than float32 rounding); each is then evaluated exactly. ``idx_buf``/``val_buf``
    (int64/float64, one slot per voxel) are work space. Returns ``(max_size, max_mass)``.
    """
    bound = np.log1p(-thr) + 1e-6
    m = _candidates(acc, flagged, bound, True, idx_buf, val_buf)
    n_supra = 0
    for q in range(m):
        s = np.float64(_ale_value(val_buf[q]))
        if s > thr:
            idx_buf[n_supra] = idx_buf[q]
            val_buf[n_supra] = s
            n_supra += 1
    if n_supra == 0:
        return 0, 0.0
    return max_stats_of_supra(idx_buf[:n_supra], val_buf[:n_supra], nbrs, thr, cl_scratch)


@njit(nogil=True, cache=True)
def sum_supra(acc, flagged, thr, nbrs, cl_scratch, idx_buf, val_buf):
    """Largest cluster of ``float32(acc) > thr`` (candidates: ``acc > thr - margin``)."""
    bound = thr - abs(thr) * 1e-6 - 1e-300
    m = _candidates(acc, flagged, bound, False, idx_buf, val_buf)
    n_supra = 0
    for q in range(m):
        s = np.float64(np.float32(val_buf[q]))
        if s > thr:
            idx_buf[n_supra] = idx_buf[q]
            val_buf[n_supra] = s
            n_supra += 1
    if n_supra == 0:
        return 0, 0.0
    return max_stats_of_supra(idx_buf[:n_supra], val_buf[:n_supra], nbrs, thr, cl_scratch)


def ale_scan(acc, thr, cluster, nbrs, cl_scratch, idx_buf, val_buf, starts=None):
    """Max ALE and (optionally) the largest cluster above ``thr``; zeroes ``acc``.

    Returns ``(max_stat float32, max_size, max_mass)``; ``float32(1 - exp(acc))`` is monotone
    in ``acc``, so the maximum needs one ``exp``.
    """
    if starts is None:
        starts = np.arange(0, acc.shape[0], CHUNK)
    bound = float(np.log1p(-thr) + 1e-6) if cluster else -np.inf
    lowest, flagged = scan_chunks(acc, starts, bound, True)
    size, mass = 0, 0.0
    if cluster and flagged.size:
        size, mass = ale_supra(acc, flagged, float(thr), nbrs, cl_scratch, idx_buf, val_buf)
    acc.fill(0.0)
    return _ale_value(lowest), size, mass


def sum_scan(acc, thr, cluster, nbrs, cl_scratch, idx_buf, val_buf, starts=None):
    """Max of ``float32(acc)`` and (optionally) the largest cluster above ``thr``; zeroes ``acc``.

    Returns ``(max_stat float32, max_size, max_mass)``.
    """
    if starts is None:
        starts = np.arange(0, acc.shape[0], CHUNK)
    bound = float(thr - abs(thr) * 1e-6 - 1e-300) if cluster else np.inf
    largest, flagged = scan_chunks(acc, starts, bound, False)
    size, mass = 0, 0.0
    if cluster and flagged.size:
        size, mass = sum_supra(acc, flagged, float(thr), nbrs, cl_scratch, idx_buf, val_buf)
    acc.fill(0.0)
    return np.float32(largest), size, mass


@njit(nogil=True, cache=True)
def _hist_index(x, edges):
    """np.histogram's bin of ``x`` for increasing ``edges`` (last bin closed); -1 outside."""
    n_bins = edges.shape[0] - 1
    if x < edges[0] or x > edges[n_bins]:
        return -1
    step = edges[1] - edges[0]
    b = int((x - edges[0]) / step)
    if b > n_bins - 1:
        b = n_bins - 1
    while b > 0 and x < edges[b]:
        b -= 1
    while b < n_bins - 1 and x >= edges[b + 1]:
        b += 1
    return b


@njit(nogil=True, cache=True)
def ale_scan_hist(acc, edges, counts):
    """Histogram the float32 ALE map of ``acc`` into ``counts`` (np.histogram on ``edges``).

    Returns the index of the last non-empty bin of this map (NiMARE's ``_get_last_bin``);
    zeroes ``acc``.
    """
    n = acc.shape[0]
    last = 0
    zero_bin = _hist_index(0.0, edges)
    n_zero = 0
    for v in range(n):
        a = acc[v]
        acc[v] = 0.0
        if a == 0.0:
            n_zero += 1
            continue
        b = _hist_index(np.float64(_ale_value(a)), edges)
        if b >= 0:
            counts[b] += 1
            if b > last:
                last = b
    if zero_bin >= 0 and n_zero:
        counts[zero_bin] += n_zero
        if zero_bin > last:
            last = zero_bin
    return last


# ---------------------------------------------------------------------------- MKDA / KDA
@njit(nogil=True, cache=True)
def union_accumulate(
    ijk, ptr, row_kid, run_ptr, runs, extent, entry, shape, rows, seg_ptr, segs, contrib, acc,
    scratch, spans,
):  # fmt: skip
    """``acc[v] += contrib[r]`` once for every study ``r`` with a kernel covering ``v``."""
    s0, s1 = shape[0], shape[1]
    mark = np.empty(_max_cells(extent), dtype=np.uint8)
    for r in range(ptr.shape[0] - 1):
        f0 = ptr[r]
        f1 = ptr[r + 1]
        if f1 == f0:
            continue
        kk = row_kid[r]
        n = _study_spans(
            ijk, f0, f1, kk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, extent[kk], mark, spans
        )
        _apply_const(acc, scratch, spans, n, contrib[r], True)


@njit(nogil=True, cache=True)
def sum_accumulate(
    ijk, ptr, row_kid, run_ptr, runs, entry, shape, rows, seg_ptr, segs, contrib, acc, spans
):  # fmt: skip
    """``acc[v] += contrib[r]`` for every focus of study ``r`` whose kernel covers ``v``."""
    s0, s1 = shape[0], shape[1]
    mark = np.zeros(1, dtype=np.uint8)
    for r in range(ptr.shape[0] - 1):
        kk = row_kid[r]
        n = 0
        for f in range(ptr[r], ptr[r + 1]):
            n = _collect(
                f, kk, ijk, run_ptr, runs, s0, s1, rows, seg_ptr, segs, mark, False, spans, n
            )
        _apply_const(acc, acc, spans, n, contrib[r], False)


@njit(nogil=True, cache=True)
def sum_scan_hist(acc, edges, counts, rint_step):
    """Histogram ``float32(acc)`` into ``counts``; zeroes ``acc``; returns the last bin.

    ``rint_step > 0`` bins by ``rint(value / rint_step)`` clipped to the grid (NiMARE's weighted
    MKDA null); otherwise np.histogram on ``edges``.
    """
    n = acc.shape[0]
    n_bins = counts.shape[0]
    last = 0
    for v in range(n):
        s = np.float64(np.float32(acc[v]))
        acc[v] = 0.0
        if rint_step > 0:
            b = int(np.rint(s / rint_step))
            if b < 0:
                b = 0
            if b > n_bins - 1:
                b = n_bins - 1
        else:
            b = _hist_index(s, edges)
        if b >= 0:
            counts[b] += 1
            if b > last:
                last = b
    return last


@njit(nogil=True, cache=True)
def ale_scan_exceed(acc, stat, counts):
    """SCALE: ``counts[v] += float32(1 - exp(acc[v])) >= stat[v]``; returns the max ALE.

    Zeroes ``acc``.
    """
    n = acc.shape[0]
    lowest = 0.0
    for v in range(n):
        a = acc[v]
        acc[v] = 0.0
        if a < lowest:
            lowest = a
        s = _ale_value(a) if a != 0.0 else np.float32(0.0)
        if s >= stat[v]:
            counts[v] += 1
    return _ale_value(lowest)

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
voxels are numbered in C order, so a segment's voxels are consecutive).

* MKDA/KDA process a study in two phases: its foci's runs are clipped to the segments and
  listed as spans (first voxel, first kernel entry, length), and the spans are applied in
  tight, vectorised loops.
* ALE accumulates into *slots* instead of in-mask voxels: each grid row's in-mask range,
  padded by the kernel half-width, so that every kernel run is one unclipped loop of fixed
  length (see the notes of the ALE section). The grid is visited in slabs of a few planes,
  every study in order within a slab, so the slots being written stay in cache; a final
  gather reads the in-mask slots into the accumulator.

Voxels that another focus of the same study may reach (their kernel boxes overlap) take the
study's voxel-wise maximum in a scratch vector first; all other voxels are added directly.
The sums are in study order, exactly as the observed statistic's: an iteration's map equals
the estimator's ``fit`` on the moved foci bit for bit.

A *scan* then reads the accumulator: the maximum statistic (numpy's SIMD reductions per chunk
of voxels) and the supra-threshold voxels of the few chunks that hold any, which the
6-connected labelling of :mod:`nimare_dask.stats.clusters` turns into the largest cluster size
and mass. For ALE the statistic ``float32(1 - exp(acc))`` is monotone in ``acc``, so the
maximum needs one ``exp`` and the threshold test evaluates ``exp`` only near the threshold.

Label-permutation nulls (ALESubtraction, MKDAChi2) live in
:mod:`nimare_dask.meta.cbma.permutation`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from nimare_dask.stats.clusters import max_stats_of_supra
from nimare_dask.stats.nulls import _nearest_bin

__all__ = [
    "ALE_MANY_FOCI",
    "CHUNK",
    "SLAB",
    "AleGrid",
    "ale_accumulate",
    "ale_boxes",
    "ale_gather",
    "ale_grid",
    "ale_mixed_rows",
    "ale_scan",
    "ale_scan_exceed",
    "ale_scan_hist",
    "ale_z_map",
    "scan_chunks",
    "sum_accumulate",
    "sum_scan",
    "sum_scan_hist",
    "union_accumulate",
]


# ---------------------------------------------------------------------------- run scatter
# MKDA/KDA: a study is processed in two phases: its foci's kernel runs are first clipped to the
# mask's segments and listed as spans ``(first voxel, first kernel entry, length, shared)``; the
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


#: MKDA: studies with more foci than this mark every span shared: their kernels overlap
#: anyway, and finding partners is quadratic in the number of foci (ALE: ALE_MANY_FOCI).
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
# The accumulator of an iteration is not indexed by in-mask voxel but by *slot* (see
# :func:`ale_grid`): every grid row that holds in-mask voxels owns the slots of its in-mask
# range ``first .. last`` (gaps between segments included) plus ``pad`` slots on each side
# (``pad``: the largest kernel half-width along the last axis), rows following each other in
# C order. A kernel run (``n = 2 ez + 1`` voxels along the last axis, ``ez <= pad``) that
# meets its row's range then lies within that row's slots and the padding of its neighbours,
# and is applied as one unclipped loop of fixed length; a run that misses the range is
# skipped. Padding and gaps collect values that are never read; every in-mask voxel receives
# exactly the additions the observed statistic makes, in the same order, besides additions of
# 0.0. Those change nothing: the accumulator starts at +0.0 and never holds -0.0, and the
# minimum with 0 leaves the scratch values (<= 0) as they are. So kernels are stored as full
# boxes, an entry missing from a kernel being ``log1p(-0) = 0``.
#
# The grid is visited slab by slab (:data:`SLAB` planes of the first axis), every study in
# order within a slab: each voxel still sees the studies in order, and the slots being written
# stay in the core's cache. A study's foci are classified once per iteration
# (:func:`_ale_classify`): kernel columns (di, dj) of a focus that no other focus of its study
# can reach are added directly, the others take the study's minimum in ``scratch`` first and
# are flushed (``acc += scratch``) after the study's last focus in the slab; in a study with
# more than :data:`ALE_MANY_FOCI` foci every column is shared and the whole slab is flushed
# (adding 0.0 where the study is absent).

#: Grid planes (first axis) per slab of the ALE accumulation.
SLAB = 8

#: ALE studies with more foci than this share every kernel column of every focus and flush
#: whole slabs (their kernels overlap anyway; finding partners is quadratic).
ALE_MANY_FOCI = 32


class AleGrid(NamedTuple):
    """A grid in the slot layout of the ALE accumulator (:func:`ale_grid`)."""

    rowtab: np.ndarray  # (s0 * s1, 3) int64 per grid row: slot of z = 0, first z, last z
    segments: np.ndarray  # (n_segments, 3) int64 per mask segment: first slot, voxel, length
    slabs: np.ndarray  # (n_slabs + 1,) int64 first slot of each slab (last: n_slots)
    n_slots: int
    slab: int  # planes per slab


def ale_grid(shape, segments, extent, slab: int = SLAB) -> AleGrid:
    """The slot layout of a grid for kernels up to ``extent`` (see the ALE section notes).

    Parameters
    ----------
    shape : tuple of int
        Grid shape ``(s0, s1, s2)``.
    segments : tuple of numpy.ndarray
        :attr:`nimare_dask.space.Grid.column_segments` of the grid.
    extent : numpy.ndarray
        (n_kernels, 3) largest ``|offset|`` per axis of every kernel that will be used.
    slab : int
        Planes of the first axis per slab.

    Returns
    -------
    AleGrid
    """
    s0, s1, _ = (int(x) for x in shape)
    rows, seg_ptr, segs = segments
    extent = np.asarray(extent, dtype=np.int64).reshape(-1, 3)
    pad = int(extent[:, 2].max(initial=0))
    has = rows[:, 3] > 0
    first = rows[:, 0]
    last = np.where(has, segs[np.maximum(seg_ptr[1:] - 1, 0), 1], -1)
    size = np.where(has, last - first + 1 + 2 * pad, 0)
    start = pad + np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    n_slots = 2 * pad + int(size.sum())
    never = np.int64(1) << 40  # a row without in-mask voxels: no run meets it
    rowtab = np.empty((s0 * s1, 3), dtype=np.int64)
    rowtab[:, 0] = np.where(has, start + pad - first, 0)
    rowtab[:, 1] = np.where(has, first, never)
    rowtab[:, 2] = np.where(has, last, -never)
    seg_row = np.repeat(np.arange(rows.shape[0]), np.diff(seg_ptr))
    seg_slots = np.stack(
        [rowtab[seg_row, 0] + segs[:, 0], segs[:, 2], segs[:, 1] - segs[:, 0] + 1], axis=1
    )
    slabs = np.append(start.reshape(s0, s1)[::slab, 0], n_slots).astype(np.int64)
    slabs[0] = 0
    return AleGrid(
        rowtab=np.ascontiguousarray(rowtab),
        segments=np.ascontiguousarray(seg_slots, dtype=np.int64),
        slabs=slabs,
        n_slots=int(n_slots),
        slab=int(slab),
    )


def ale_boxes(run_ptr, runs, extent, entry) -> tuple[np.ndarray, np.ndarray]:
    """Kernels as full boxes of ``log1p(-value)`` in (di, dj, dk) order, zeros where absent.

    Returns
    -------
    box : numpy.ndarray
        float32 entries of every kernel's ``(2 ex + 1) x (2 ey + 1) x (2 ez + 1)`` box.
    start : numpy.ndarray
        (n_kernels,) int64 first entry of each kernel in ``box``.
    """
    extent = np.asarray(extent, dtype=np.int64).reshape(-1, 3)
    sides = 2 * extent + 1
    sizes = sides.prod(axis=1)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    box = np.zeros(int(sizes.sum()), dtype=np.float32)
    for kk in range(len(extent)):
        r = runs[run_ptr[kk] : run_ptr[kk + 1]]
        if not len(r):
            continue
        ex, ey, ez = (int(x) for x in extent[kk])
        wy, wz = 2 * ey + 1, 2 * ez + 1
        lengths = r[:, 3]
        q = np.repeat(np.arange(len(r)), lengths)
        t = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        dest = ((r[q, 0] + ex) * wy + r[q, 1] + ey) * wz + r[q, 2] + ez + t
        box[start[kk] + dest] = entry[r[q, 4] + t]
    return box, start


# The three loops below visit the kernel columns a0 <= a < a1 (grid planes i - ex + a within
# the slab), b0 <= b < b1 (grid rows j - ey + b within the grid) of one focus; any k is fine.
@njit(nogil=True, cache=True)
def _ale_direct(a0, a1, b0, b1, i, j, k, ex, ey, ez, e0, s1, rowtab, box, acc):
    """``acc += log(1 - MA)`` of one focus (columns no other focus of its study reaches)."""
    wy = 2 * ey + 1
    n = 2 * ez + 1
    z0 = k - ez
    z1 = z0 + n - 1
    for a in range(a0, a1):
        row = (i - ex + a) * s1 + j - ey
        e = np.uint64(e0 + (a * wy + b0) * n)
        for b in range(b0, b1):
            rb = np.uint64(row + b)
            if z0 <= rowtab[rb, 2] and z1 >= rowtab[rb, 1]:
                w = np.uint64(rowtab[rb, 0] + z0)
                for z in range(n):
                    acc[w + np.uint64(z)] += np.float64(box[e + np.uint64(z)])
            e += np.uint64(n)


@njit(nogil=True, cache=True)
def _ale_shared(a0, a1, b0, b1, i, j, k, ex, ey, ez, e0, s1, rowtab, box, scratch):
    """``scratch = min(scratch, log(1 - MA))`` of one focus (every column shared)."""
    wy = 2 * ey + 1
    n = 2 * ez + 1
    z0 = k - ez
    z1 = z0 + n - 1
    for a in range(a0, a1):
        row = (i - ex + a) * s1 + j - ey
        e = np.uint64(e0 + (a * wy + b0) * n)
        for b in range(b0, b1):
            rb = np.uint64(row + b)
            if z0 <= rowtab[rb, 2] and z1 >= rowtab[rb, 1]:
                w = np.uint64(rowtab[rb, 0] + z0)
                for z in range(n):
                    val = box[e + np.uint64(z)]
                    cur = scratch[w + np.uint64(z)]
                    scratch[w + np.uint64(z)] = val if val < cur else cur
            e += np.uint64(n)


@njit(nogil=True, cache=True)
def _ale_mixed(
    a0, a1, b0, b1, i, j, k, ex, ey, ez, e0, s1, rowtab, box, acc, scratch, bits, brow, wins,
    nw,
):  # fmt: skip
    """Columns flagged in ``bits[brow]`` go to ``scratch`` (their first slots listed in
    ``wins``), the others to ``acc``; returns the new number of listed windows."""
    wy = 2 * ey + 1
    n = 2 * ez + 1
    z0 = k - ez
    z1 = z0 + n - 1
    for a in range(a0, a1):
        row = (i - ex + a) * s1 + j - ey
        e = np.uint64(e0 + (a * wy + b0) * n)
        m = bits[brow, a]
        for b in range(b0, b1):
            rb = np.uint64(row + b)
            if z0 <= rowtab[rb, 2] and z1 >= rowtab[rb, 1]:
                w = np.uint64(rowtab[rb, 0] + z0)
                if (m >> np.uint64(b)) & np.uint64(1):
                    for z in range(n):
                        val = box[e + np.uint64(z)]
                        cur = scratch[w + np.uint64(z)]
                        scratch[w + np.uint64(z)] = val if val < cur else cur
                    wins[nw] = w
                    nw += 1
                else:
                    for z in range(n):
                        acc[w + np.uint64(z)] += np.float64(box[e + np.uint64(z)])
            e += np.uint64(n)
    return nw


@njit(nogil=True, cache=True)
def _ale_classify(ijk, ptr, row_kid, extent, many, fbits, bits):
    """Which kernel columns of each focus another focus of its study may reach.

    ``fbits[f]``: -1 none, -2 all (a study with more than ``many`` foci, or a kernel more
    than 63 columns wide), ``r >= 0``: bit ``b`` of ``bits[r, a]`` flags column ``(a, b)``.
    The test is on kernel boxes (as :func:`_mark_partners`): a superset of the shared voxels.
    """
    nb = 0
    for r in range(ptr.shape[0] - 1):
        f0 = ptr[r]
        f1 = ptr[r + 1]
        kk = row_kid[r]
        ex, ey, ez = extent[kk, 0], extent[kk, 1], extent[kk, 2]
        if f1 - f0 > many or 2 * ey + 1 > 63:
            for f in range(f0, f1):
                fbits[f] = -2
            continue
        for f in range(f0, f1):
            fbits[f] = -1
            for g in range(f0, f1):
                di = ijk[g, 0] - ijk[f, 0]
                dj = ijk[g, 1] - ijk[f, 1]
                dk = ijk[g, 2] - ijk[f, 2]
                if g == f or abs(di) > 2 * ex or abs(dj) > 2 * ey or abs(dk) > 2 * ez:
                    continue
                if fbits[f] < 0:
                    fbits[f] = nb
                    for a in range(2 * ex + 1):
                        bits[nb, a] = 0
                    nb += 1
                b0 = max(0, dj)  # columns b - ey in [max(-ey, dj - ey), min(ey, dj + ey)]
                b1 = min(2 * ey, dj + 2 * ey)
                cols = ((np.uint64(1) << np.uint64(b1 - b0 + 1)) - np.uint64(1)) << np.uint64(b0)
                for a in range(max(0, di), min(2 * ex, di + 2 * ex) + 1):
                    bits[fbits[f], a] |= cols


@njit(nogil=True, cache=True)
def _flush_range(acc, scratch, lo, hi):
    """``acc += scratch; scratch = 0`` over slots ``lo .. hi - 1``."""
    for v in range(np.uint64(lo), np.uint64(hi)):
        acc[v] += np.float64(scratch[v])
        scratch[v] = 0.0


@njit(nogil=True, cache=True)
def _flush_windows(acc, scratch, wins, nw, n):
    """``acc += scratch; scratch = 0`` over the windows ``wins[t] .. wins[t] + n - 1``.

    A slot listed twice adds 0.0 the second time (exact); a window also covers padding and
    voxels of the row outside the study's reach, where ``scratch`` is zero (or, in padding,
    never read).
    """
    for t in range(nw):
        w = np.uint64(wins[t])
        for z in range(n):
            acc[w + np.uint64(z)] += np.float64(scratch[w + np.uint64(z)])
            scratch[w + np.uint64(z)] = 0.0


def ale_mixed_rows(ptr: np.ndarray) -> int:
    """Rows of ``bits`` that :func:`ale_accumulate` may need (foci of studies with 2 to
    :data:`ALE_MANY_FOCI` foci)."""
    n = np.diff(ptr)
    return int(n[(n > 1) & (n <= ALE_MANY_FOCI)].sum())


@njit(nogil=True, cache=True)
def ale_accumulate(
    ijk, ptr, row_kid, extent, box_start, box, shape, rowtab, slab, slabs, acc, scratch, fbits,
    bits, wins,
):  # fmt: skip
    """Add ``sum_i log(1 - MA_i)`` of the studies with foci at ``ijk`` into the slots ``acc``.

    Row ``r``'s foci are ``ijk[ptr[r]:ptr[r+1]]`` (anywhere, also outside the grid) and use
    kernel ``row_kid[r]``, stored as a box of ``log1p(-value)`` at ``box[box_start[kk]:]``
    (:func:`ale_boxes`). ``rowtab``, ``slab`` and ``slabs`` describe the slot layout
    (:class:`AleGrid`). ``scratch`` (float32 slots) must be zero at in-mask slots and is left
    so; ``fbits`` (n_foci int64), ``bits`` ((:func:`ale_mixed_rows`, widest kernel) uint64)
    and ``wins`` (``ALE_MANY_FOCI`` times the most kernel columns, int64) are work space.
    """
    _ale_classify(ijk, ptr, row_kid, extent, ALE_MANY_FOCI, fbits, bits)
    s0, s1 = shape[0], shape[1]
    for sl in range(slabs.shape[0] - 1):
        x_lo = sl * slab
        x_hi = min(s0, x_lo + slab)
        for r in range(ptr.shape[0] - 1):
            kk = row_kid[r]
            ex, ey, ez = extent[kk, 0], extent[kk, 1], extent[kk, 2]
            e0 = box_start[kk]
            nw = np.int64(0)  # not the literal 0: _ale_mixed/_flush_windows compile once
            dense = False
            for f in range(ptr[r], ptr[r + 1]):
                i, j, k = ijk[f, 0], ijk[f, 1], ijk[f, 2]
                a0 = max(0, x_lo - i + ex)
                a1 = min(2 * ex + 1, x_hi - i + ex)
                b0 = max(0, ey - j)
                b1 = min(2 * ey + 1, s1 - j + ey)
                if a0 >= a1 or b0 >= b1:
                    continue
                fb = fbits[f]
                if fb == -1:
                    _ale_direct(a0, a1, b0, b1, i, j, k, ex, ey, ez, e0, s1, rowtab, box, acc)
                elif fb == -2:
                    _ale_shared(a0, a1, b0, b1, i, j, k, ex, ey, ez, e0, s1, rowtab, box, scratch)
                    dense = True
                else:
                    nw = _ale_mixed(
                        a0, a1, b0, b1, i, j, k, ex, ey, ez, e0, s1, rowtab, box, acc,
                        scratch, bits, fb, wins, nw,
                    )  # fmt: skip
            if dense:
                _flush_range(acc, scratch, slabs[sl], slabs[sl + 1])
            elif nw:
                _flush_windows(acc, scratch, wins, nw, 2 * ez + 1)


@njit(nogil=True, cache=True)
def ale_gather(acc_slots, segments, acc):
    """Copy the in-mask slots into ``acc`` (one voxel each), segment by segment
    (:attr:`AleGrid.segments`); zeroes ``acc_slots``."""
    for s in range(segments.shape[0]):
        a = np.uint64(segments[s, 0])
        v = np.uint64(segments[s, 1])
        for z in range(np.uint64(segments[s, 2])):
            acc[v + z] = acc_slots[a + z]
    for t in range(acc_slots.shape[0]):
        acc_slots[t] = 0.0


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


@njit(nogil=True, cache=True)
def ale_z_map(acc, z_table, inv_step, n_bins, z):
    """TFCE null: the z map of an iteration, ``z[v] = z_table[bin(float32(1 - exp(acc[v])))]``.

    ``z_table`` (float32, ``n_bins + 1`` rows) is z of the fit's null p table
    (:func:`nimare_dask.stats.nulls.nullhist_p_table`; the last row, 0, for ALE <= 0), so the
    iteration's map is converted exactly as the observed ALE map. ``acc`` is left as it is.
    """
    zero = np.float64(z_table[n_bins])
    for v in range(acc.shape[0]):
        a = acc[v]
        if a == 0.0:
            z[v] = zero
            continue
        s = np.float64(_ale_value(a))
        if s > 0.0:
            z[v] = np.float64(z_table[_nearest_bin(s, inv_step, n_bins)])
        else:
            z[v] = zero


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

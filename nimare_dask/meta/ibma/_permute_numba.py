"""Compiled sign-flip null of PermutedOLS: the block's maximum one-sample ``|t|`` per iteration.

For one bag (``m`` group contributions ``c_g`` over ``V`` voxels) and one block of ``B``
iterations (a sign ``s_bg`` per iteration and group), the permuted sum of a voxel is
``x_bv = sum_g s_bg c_gv`` and its statistic NiMARE's one-sample t,
``t = x / sqrt(max(m ss - x^2, 0)) * sqrt(m - 1)`` (``ss = sum_g c_g^2``; NaN where the root is 0).

Determinism: every ``x_bv`` is computed by the same sequence of floating-point operations,
whatever the block of iterations, the voxel chunk or the thread (no BLAS, whose rounding depends
on the shapes). The groups are split into fixed *chunks* of at most ``MAX_CHUNK`` consecutive
groups (the split depends only on ``m``). A chunk's signed partial sum, summed group by group in
ascending order, takes one of ``2**k`` values per voxel; those are tabulated once per voxel tile
and block (a prefix-doubling table), and ``x_bv`` is the sum of one table row per chunk, chunks in
ascending order. This replaces ``m`` multiply-adds per iteration and voxel by ``m / k`` adds.

The maximum over voxels is found without a square root or a division per voxel: a voxel is
screened by ``x^2 (m - 1) >= best^2 stat (1 - 1e-10)`` (``stat = m ss - x^2``) against the best
exact ``|t|`` so far, and only the voxels passing it get the exact ``t`` above. The voxel with the
largest exact ``t`` always passes (the screen's rounding error is ~1e-15 relative, far inside
the 1e-10 margin), so the maximum is the exact maximum over all voxels, independent of the
order in which voxels are visited.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["MAX_CHUNK", "chunk_layout", "ols_block_max", "sign_patterns"]

#: Largest number of groups tabulated together (a table has 2**MAX_CHUNK rows per voxel).
MAX_CHUNK = 6
#: Voxels per tile (tables of one tile stay in the CPU cache).
VOXEL_TILE = 64
#: Iterations whose sums are accumulated together (one chunk's table is read for all of them).
ITER_TILE = 256
_MARGIN = 1.0 - 1e-10


def chunk_layout(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of the group chunks of a bag of ``m`` groups (depends on ``m`` only).

    Parameters
    ----------
    m : int
        Number of groups.

    Returns
    -------
    starts, sizes : numpy.ndarray
        int64 arrays, one entry per chunk; sizes differ by at most one.
    """
    n_chunks = max(1, -(-m // MAX_CHUNK))
    base, extra = divmod(m, n_chunks)
    sizes = np.array([base + (c < extra) for c in range(n_chunks)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return starts, sizes


def sign_patterns(signs: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Table row of each iteration and chunk: bit ``l`` set when group ``start + l`` is flipped.

    Parameters
    ----------
    signs : numpy.ndarray
        ``(B, m)`` signs (+1 / -1).
    starts, sizes : numpy.ndarray
        :func:`chunk_layout` of ``m``.

    Returns
    -------
    numpy.ndarray
        ``(B, n_chunks)`` int64 patterns.
    """
    neg = (np.asarray(signs) < 0).astype(np.int64)
    out = np.zeros((neg.shape[0], starts.size), dtype=np.int64)
    for c, (g0, k) in enumerate(zip(starts, sizes, strict=True)):
        weights = np.left_shift(1, np.arange(k, dtype=np.int64))
        out[:, c] = neg[:, g0 : g0 + k] @ weights
    return out


@numba.njit(cache=True, nogil=True, fastmath=False)
def _build_tables(contrib, v0, n, starts, sizes, tab):  # pragma: no cover - compiled
    """``tab[c, p, j]``: chunk ``c``'s signed sum for pattern ``p`` at voxel ``v0 + j``."""
    for c in range(starts.shape[0]):
        g0 = starts[c]
        for j in range(n):
            tab[c, 0, j] = contrib[g0, v0 + j]
            tab[c, 1, j] = -contrib[g0, v0 + j]
        for level in range(1, sizes[c]):
            half = 1 << level
            g = g0 + level
            for p in range(half):
                for j in range(n):
                    tab[c, p + half, j] = tab[c, p, j] - contrib[g, v0 + j]
                for j in range(n):
                    tab[c, p, j] = tab[c, p, j] + contrib[g, v0 + j]


@numba.njit(cache=True, nogil=True, fastmath=False)
def ols_block_max(patterns, contrib, mss, m, starts, sizes, two_sided, out):  # pragma: no cover
    """Update ``out[b]`` with the bag's maximum permuted t (``|t|`` if two-sided).

    Parameters
    ----------
    patterns : (B, n_chunks) int64
        :func:`sign_patterns` of the block's signs for this bag's groups.
    contrib : (m, V) float64, C-contiguous
        Group contributions.
    mss : (V,) float64
        ``m * ss`` (``ss`` the sum of squared contributions).
    m : int
        Number of groups.
    starts, sizes : int64 arrays
        :func:`chunk_layout` of ``m``.
    two_sided : bool
        Maximise ``|t|`` (else ``t``).
    out : (B,) float64
        Running maxima (``-inf`` where none yet); updated in place.
    """
    n_iter = patterns.shape[0]
    n_chunks = starts.shape[0]
    n_vox = contrib.shape[1]
    width = 1 << sizes.max()
    tile = VOXEL_TILE
    sub = ITER_TILE
    tab = np.empty((n_chunks, width, tile))
    acc = np.empty((sub, tile))
    ok = np.empty(tile, dtype=np.bool_)
    sq = math.sqrt(m - 1.0)
    m1 = m - 1.0
    for v0 in range(0, n_vox, tile):
        n = min(tile, n_vox - v0)
        _build_tables(contrib, v0, n, starts, sizes, tab)
        for b0 in range(0, n_iter, sub):
            nb = min(sub, n_iter - b0)
            for i in range(nb):  # chunk 0, then the others in ascending order
                p = patterns[b0 + i, 0]
                for j in range(n):
                    acc[i, j] = tab[0, p, j]
            for c in range(1, n_chunks):
                for i in range(nb):
                    p = patterns[b0 + i, c]
                    for j in range(n):
                        acc[i, j] += tab[c, p, j]
            for i in range(nb):
                best = out[b0 + i]
                screen = best > 0.0
                thr = best * best * _MARGIN
                hits = 0
                for j in range(n):
                    x = acc[i, j]
                    stat = mss[v0 + j] - x * x
                    cand = stat > 0.0
                    if screen:
                        cand = cand & (x * x * m1 >= thr * stat)
                        if not two_sided:
                            cand = cand & (x > 0.0)
                    ok[j] = cand
                    hits += cand
                if hits == 0:
                    continue
                for j in range(n):
                    if ok[j]:
                        x = acc[i, j]
                        t = x / math.sqrt(mss[v0 + j] - x * x) * sq
                        if two_sided:
                            t = abs(t)
                        if t > best:
                            best = t
                out[b0 + i] = best

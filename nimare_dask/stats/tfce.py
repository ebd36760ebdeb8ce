"""Threshold-free cluster enhancement (TFCE) of a 1-D in-mask map (Smith & Nichols 2009).

``TFCE(v) = sum_k h_k^H * dh * e_k(v)^E`` over the thresholds ``h_k < z(v)``, where ``e_k(v)``
is the number of voxels of the cluster of ``{z > h_k}`` that holds ``v``. Settings follow JALE
0.2.10 (Jülich's Python ALE, ``jale/core/utils/compute.py:compute_tfce``), which applies TFCE
to the ALE z map:

* ``E = 0.5``, ``H = 2`` (Smith & Nichols' recommended values for 3-D maps);
* ``dh = max(z) / 100`` for each map (its own maximum), thresholds ``h_k = k * dh`` for
  ``k = 0, 1, ...`` while ``h_k < max(z)`` (``numpy.arange(0, max_z, dh)``; ``h_0 = 0`` adds
  nothing);
* a voxel is above a threshold when ``z > h_k`` (strict);
* clusters are **6-connected** (faces; ``scipy.ndimage.label``'s default structure, as NiMARE's
  clusters, :mod:`nimare_dask.stats.clusters`).

Instead of labelling the map once per threshold (JALE), the thresholds are visited from the top
down with a union-find over the in-mask face neighbours: the voxels that rise above threshold
``h_k`` join the forest, and each tree's root takes the contributions ``h_k^H dh size^E`` of
the levels over which it kept its size, when that size changes (prefix sums of ``h_k^H dh``).
Trees carry *potentials* (a voxel's value is the sum of the offsets on its path to the root),
so adding a contribution to a whole cluster is one addition at its root, and the cost is one
union-find pass over the voxels above ``dh``, whatever the number of levels. The result equals
the per-threshold definition up to float64 rounding of the sums (about 1e-14 relative); it is
deterministic (the same map gives the same numbers bit for bit).

This module is pure numpy/numba; the grid enters only through its neighbour table
(:func:`nimare_dask.stats.clusters.neighbours`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from nimare_dask.stats.clusters import neighbours

__all__ = ["TFCE_E", "TFCE_H", "TFCE_STEPS", "tfce", "tfce_core", "tfce_workspace"]

#: Extent exponent (Smith & Nichols 2009; JALE).
TFCE_E = 0.5
#: Height exponent (Smith & Nichols 2009; JALE).
TFCE_H = 2.0
#: Thresholds per map: ``dh = max(z) / TFCE_STEPS`` (JALE's ``delta_t_steps``).
TFCE_STEPS = 100


def tfce_workspace(n_voxels: int, n_steps: int = TFCE_STEPS) -> tuple[np.ndarray, ...]:
    """Work arrays of :func:`tfce_core` for maps of ``n_voxels`` voxels (reusable).

    Returns
    -------
    tuple of numpy.ndarray
        ``(parent, size, off, level, order, since, ptr, cum)``.
    """
    n = max(1, int(n_voxels))
    # int32 indices: half the cache footprint of the union-find's scattered accesses
    return (
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.int32),
        np.empty(int(n_steps) + 3, dtype=np.int64),
        np.empty(int(n_steps) + 3, dtype=np.float64),
    )


# inlined: a call with array arguments costs reference counting per call
@njit(nogil=True, cache=True, inline="always")
def _find(v, parent, off):
    """Root of ``v``, halving its path (each visited voxel skips to its grandparent, its
    offset absorbing its parent's, so every voxel keeps its value)."""
    x = v
    while True:
        p = parent[x]
        if p == x:
            return x
        g = parent[p]
        if g == p:
            return p
        off[x] += off[p]
        parent[x] = g
        x = g


@njit(nogil=True, cache=True, inline="always")
def _settle(r, k, off, size, since, cum, E):
    """Give root ``r`` the contributions of levels ``since[r] .. k + 1`` (its size was constant
    over them): ``size^E * sum h^H dh``, the sum read from the prefix sums ``cum``."""
    s = since[r]
    if s > k:
        w = np.sqrt(size[r]) if E == 0.5 else size[r] ** E
        off[r] += w * (cum[s] - cum[k])
        since[r] = k


@njit(nogil=True, cache=True)
def tfce_core(z, nbrs, E, H, n_steps, out, parent, size, off, level, order, since, ptr, cum):
    """TFCE of ``z`` (float64, 1-D over in-mask voxels) into ``out``; returns its maximum.

    ``nbrs`` is the (n, 6) int32 face-neighbour table (-1: none); the other arrays come from
    :func:`tfce_workspace`. NaN voxels are never above a threshold. A cluster's contributions
    are added when its size changes (or at the end), over the levels it kept that size, from
    prefix sums of ``h_k^H dh``.
    """
    n = z.shape[0]
    max_z = 0.0
    for v in range(n):
        out[v] = 0.0
        parent[v] = -1
        if z[v] > max_z:
            max_z = z[v]
    if not max_z > 0.0:
        return 0.0
    dh = max_z / n_steps
    top = int(np.ceil(max_z / dh)) - 1  # numpy.arange(0, max_z, dh) has top + 1 values
    if top < 1:
        return 0.0
    cum[0] = 0.0
    for k in range(1, top + 1):
        cum[k] = cum[k - 1] + (k * dh) ** H * dh
    for k in range(top + 2):
        ptr[k] = 0
    for v in range(n):
        zv = z[v]
        if not zv > dh:
            level[v] = 0
            continue
        k = int(zv / dh)
        if k > top:
            k = top
        while k >= 1 and not (zv > k * dh):
            k -= 1
        while k < top and zv > (k + 1) * dh:
            k += 1
        level[v] = k
        ptr[k] += 1
    # counting sort: levels from the top down, voxels ascending within a level
    pos = 0
    for k in range(top, 0, -1):
        c = ptr[k]
        ptr[k] = pos
        pos += c
    n_act = pos
    for v in range(n):
        k = level[v]
        if k >= 1:
            order[ptr[k]] = v
            ptr[k] += 1
    for t in range(n_act):
        v = order[t]
        k = level[v]  # v rises above threshold h_k (and stays above every lower one)
        parent[v] = v
        size[v] = 1
        off[v] = 0.0
        since[v] = k
        rv = v  # the root of v's tree
        for d in range(6):
            u = nbrs[v, d]
            if u < 0 or parent[u] < 0:
                continue
            ru = _find(u, parent, off)
            if ru == rv:
                continue
            _settle(ru, k, off, size, since, cum, E)
            _settle(rv, k, off, size, since, cum, E)
            if size[ru] < size[rv]:
                ru, rv = rv, ru
            off[rv] -= off[ru]
            parent[rv] = ru
            size[ru] += size[rv]
            rv = ru
    best = 0.0
    for t in range(n_act):
        v = order[t]
        if parent[v] == v:
            _settle(v, 0, off, size, since, cum, E)
    for t in range(n_act):
        v = order[t]
        _find(v, parent, off)  # halves the path
        val = off[v]
        x = v
        while parent[x] != x:  # the value: offsets up to and including the root
            x = parent[x]
            val += off[x]
        out[v] = val
        if val > best:
            best = val
    return best


def tfce(
    z: ArrayLike,
    grid: Any,
    E: float = TFCE_E,
    H: float = TFCE_H,
    n_steps: int = TFCE_STEPS,
) -> np.ndarray:
    """Threshold-free cluster enhancement of a 1-D in-mask map (see the module notes).

    Parameters
    ----------
    z : array_like
        (n_voxels,) map, e.g. an ALE z map (only its positive part is enhanced).
    grid : Grid or numpy.ndarray
        The grid (anything with a 3-D boolean ``mask``) or its (n_voxels, 6) neighbour table.
    E : float
        Extent exponent (default 0.5).
    H : float
        Height exponent (default 2).
    n_steps : int
        ``dh = max(z) / n_steps`` (default 100).

    Returns
    -------
    numpy.ndarray
        (n_voxels,) float64 TFCE values (eager; 0 where ``z <= dh``).
    """
    nbrs = (
        grid
        if isinstance(grid, np.ndarray)
        else np.ascontiguousarray(neighbours(grid), dtype=np.int32)
    )
    nbrs = np.ascontiguousarray(nbrs, dtype=np.int32)
    values = np.ascontiguousarray(np.asarray(z, dtype=np.float64).ravel())
    if nbrs.ndim != 2 or nbrs.shape != (values.shape[0], 6):
        raise ValueError(
            f"tfce: the map has {values.shape[0]} voxels but the neighbour table has shape "
            f"{nbrs.shape}; pass the map's grid"
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise ValueError(f"tfce: n_steps must be a positive integer, got {n_steps!r}")
    if not (np.isfinite(E) and np.isfinite(H) and E > 0 and H >= 0):
        raise ValueError(f"tfce: need E > 0 and H >= 0, got E={E!r}, H={H!r}")
    out = np.zeros(values.shape[0], dtype=np.float64)
    tfce_core(
        values, nbrs, float(E), float(H), int(n_steps), out,
        *tfce_workspace(values.shape[0], n_steps),
    )  # fmt: skip
    return out

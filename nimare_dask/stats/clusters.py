"""Clusters of supra-threshold voxels on a masked grid: labels, sizes, masses, and their p-values.

Maps are 1-D arrays over the in-mask voxels of a grid (C order of the 3-D mask). Clusters follow
NiMARE 0.22.1 (``NIMARE_FACTS.md`` sections 2.4 and 2.8, section 6 item 8):

* **6-connectivity** (voxels sharing a face; ``scipy.ndimage.generate_binary_structure(3, 1)``);
* a voxel is supra-threshold when its value is **strictly** above the threshold (``v > thr``);
  with ``two_sided=True`` the negative tail (``v < -thr``) is labelled too, separately: a
  positive and a negative voxel never share a cluster;
* cluster **size** is its number of voxels; cluster **mass** is ``sum(|v| - thr)`` over it;
* comparisons are made in float64 (a float32 map is promoted, like NumPy does against a
  ``numpy.float64`` threshold).

The grid enters only through its per-voxel table of the 6 face neighbours
(:func:`neighbours`), computed once per grid and cached. The labelling is a breadth-first search
over the supra-threshold voxels only, so its cost scales with their number, not with the grid
(the inner loop of Monte Carlo FWE correction, run thousands of times). Masses are accumulated in
ascending voxel order, the order :func:`scipy.ndimage.sum` uses, so they agree to the last bit.

This module is pure numpy/numba (it imports no other nimare_dask layer): anything with a 3-D
boolean ``mask`` attribute (such as :class:`nimare_dask.space.Grid`) can serve as a grid.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike

from nimare_dask.stats.nulls import null_to_p

__all__ = [
    "ClusterPMaps",
    "Clusters",
    "cluster_p_maps",
    "label_clusters",
    "max_cluster_stats",
    "max_cluster_stats_batch",
    "max_cluster_stats_sparse",
    "max_stats_of_supra",
    "neighbours",
]

#: The 6 face offsets, in the column order of :func:`neighbours`.
_FACE_OFFSETS = np.array(
    [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=np.int64
)

#: Fallback cache for grid-like objects without a ``_get`` cache, keyed by fingerprint.
_NEIGHBOUR_CACHE: dict[str, np.ndarray] = {}
_CACHE_LOCK = threading.Lock()


# ---------------------------------------------------------------------------- neighbours
def _build_neighbours(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"the grid mask must be 3-D, got shape {mask.shape}")
    shape = np.asarray(mask.shape, dtype=np.int64)
    flat = np.flatnonzero(mask)
    lut = np.full(mask.size, -1, dtype=np.int32)
    lut[flat] = np.arange(flat.size, dtype=np.int32)
    ijk = np.stack(np.unravel_index(flat, mask.shape), axis=1).astype(np.int64)
    out = np.full((flat.size, 6), -1, dtype=np.int32)
    for d, off in enumerate(_FACE_OFFSETS):
        nb = ijk + off
        inside = np.all((nb >= 0) & (nb < shape), axis=1)
        idx = np.ravel_multi_index(tuple(nb[inside].T), mask.shape)
        out[inside, d] = lut[idx]
    out.setflags(write=False)
    return out


def neighbours(grid: Any) -> np.ndarray:
    """The in-mask index of the 6 face neighbours of every in-mask voxel.

    Parameters
    ----------
    grid : Grid or grid-like
        Anything with a 3-D boolean ``mask`` attribute (a :class:`nimare_dask.space.Grid`).
        The table is cached on the grid (through ``grid._get`` when it has one, otherwise in a
        module-level cache keyed by ``grid.fingerprint``).

    Returns
    -------
    numpy.ndarray
        (n_voxels, 6) read-only int32 array (eager); columns are the neighbours at
        -i, +i, -j, +j, -k, +k; -1 where the neighbour is outside the grid or the mask.
    """
    if isinstance(grid, np.ndarray) and grid.ndim == 2 and grid.shape[1] == 6:
        return grid  # already a neighbour table
    getter = getattr(grid, "_get", None)
    if callable(getter):
        return getter("cluster_neighbours_6", lambda: _build_neighbours(grid.mask))
    key = getattr(grid, "fingerprint", None)
    if key is None:
        return _build_neighbours(grid.mask)
    with _CACHE_LOCK:
        if key not in _NEIGHBOUR_CACHE:
            _NEIGHBOUR_CACHE[key] = _build_neighbours(grid.mask)
        return _NEIGHBOUR_CACHE[key]


def _neighbour_table(grid_or_neighbours: Any) -> np.ndarray:
    nbrs = neighbours(grid_or_neighbours)
    if nbrs.dtype != np.int32 or not nbrs.flags.c_contiguous:
        nbrs = np.ascontiguousarray(nbrs, dtype=np.int32)
    return nbrs


# ---------------------------------------------------------------------------- numba core
@numba.njit(nogil=True, cache=True)
def _components(supra, vals, nbrs, scratch):
    """Connected components of the supra-threshold voxels ``supra`` (ascending indices).

    ``vals`` holds their values (same order); voxels of different sign are never joined.
    ``scratch`` is an int32 array over all voxels, all zero on entry and on exit.
    Components are numbered in order of their lowest voxel index.
    """
    n = supra.shape[0]
    for k in range(n):
        scratch[supra[k]] = k + 1
    comp = np.empty(n, dtype=np.int32)  # -1: not yet labelled (a loop: np.full compiles slowly)
    for k in range(n):
        comp[k] = -1
    stack = np.empty(n, dtype=np.int64)
    n_comp = 0
    for k in range(n):
        if comp[k] >= 0:
            continue
        positive = vals[k] > 0
        comp[k] = n_comp
        top = 0
        stack[top] = k
        top += 1
        while top > 0:
            top -= 1
            u = stack[top]
            vu = supra[u]
            for d in range(6):
                nb = nbrs[vu, d]
                if nb < 0:
                    continue
                q = scratch[nb] - 1
                if q < 0 or comp[q] >= 0:
                    continue
                if (vals[q] > 0) != positive:
                    continue
                comp[q] = n_comp
                stack[top] = q
                top += 1
        n_comp += 1
    for k in range(n):
        scratch[supra[k]] = 0
    return comp, n_comp


@numba.njit(nogil=True, cache=True)
def _max_of_components(comp, n_comp, vals, thr):
    if n_comp == 0:
        return 0, 0.0
    sizes = np.zeros(n_comp, dtype=np.int64)
    masses = np.zeros(n_comp, dtype=np.float64)
    for k in range(comp.shape[0]):  # ascending voxel order: the summation order of ndimage.sum
        c = comp[k]
        sizes[c] += 1
        masses[c] += abs(np.float64(vals[k])) - thr
    # a loop rather than ndarray.max(): the same values, far less to compile
    max_size = sizes[0]
    max_mass = masses[0]
    for c in range(1, n_comp):
        if sizes[c] > max_size:
            max_size = sizes[c]
        if masses[c] > max_mass:
            max_mass = masses[c]
    return max_size, max_mass


@numba.njit(nogil=True, cache=True)
def max_stats_of_supra(supra, vals, nbrs, thr, scratch):
    """Largest cluster size and mass of given supra-threshold voxels (numba-callable).

    For compiled callers (the Monte Carlo block loops) that have already found the
    supra-threshold voxels of a map: ``supra`` (int64, ascending in-mask indices), ``vals``
    (float64, their values; voxels of different sign are never joined), ``nbrs`` the
    :func:`neighbours` table, ``thr`` the threshold (mass is ``sum(|v| - thr)``) and
    ``scratch`` an int32 zero array over all voxels (left all zero).

    Returns
    -------
    (int, float)
        Max size and max mass (0, 0.0 when ``supra`` is empty).
    """
    comp, n_comp = _components(supra, vals, nbrs, scratch)
    return _max_of_components(comp, n_comp, vals, thr)


@numba.njit(nogil=True, cache=True)
def _supra(values, thr, two_sided):
    n = values.shape[0]
    count = 0
    for v in range(n):
        x = np.float64(values[v])
        if x > thr or (two_sided and -x > thr):
            count += 1
    idx = np.empty(count, dtype=np.int64)
    vals = np.empty(count, dtype=np.float64)
    j = 0
    for v in range(n):
        x = np.float64(values[v])
        if x > thr or (two_sided and -x > thr):
            idx[j] = v
            vals[j] = x
            j += 1
    return idx, vals


@numba.njit(nogil=True, cache=True)
def _max_stats_dense(values, nbrs, thr, two_sided, scratch):
    idx, vals = _supra(values, thr, two_sided)
    comp, n_comp = _components(idx, vals, nbrs, scratch)
    return _max_of_components(comp, n_comp, vals, thr)


@numba.njit(nogil=True, cache=True)
def _max_stats_batch(values, nbrs, thr, two_sided, scratch, out_size, out_mass):
    for r in range(values.shape[0]):
        s, m = _max_stats_dense(values[r], nbrs, thr, two_sided, scratch)
        out_size[r] = s
        out_mass[r] = m


@numba.njit(nogil=True, cache=True)
def _max_stats_sparse(indices, values, nbrs, thr, two_sided, scratch):
    keep = np.empty(indices.shape[0], dtype=np.bool_)
    for k in range(indices.shape[0]):
        x = np.float64(values[k])
        keep[k] = x > thr or (two_sided and -x > thr)
    idx = indices[keep]
    vals = values[keep].astype(np.float64)
    order = np.argsort(idx, kind="mergesort")
    idx = idx[order]
    vals = vals[order]
    for k in range(1, idx.shape[0]):
        if idx[k] == idx[k - 1]:
            raise ValueError("max_cluster_stats_sparse: indices must be unique")
    comp, n_comp = _components(idx, vals, nbrs, scratch)
    return _max_of_components(comp, n_comp, vals, thr)


# ---------------------------------------------------------------------------- public API
def _check_threshold(threshold: float) -> float:
    thr = float(threshold)
    if not np.isfinite(thr) or thr < 0:
        raise ValueError(f"the cluster-forming threshold must be finite and >= 0, got {threshold}")
    return thr


def _scratch_for(nbrs: np.ndarray, scratch: np.ndarray | None) -> np.ndarray:
    if scratch is None:
        return np.zeros(nbrs.shape[0], dtype=np.int32)
    if scratch.dtype != np.int32 or scratch.shape != (nbrs.shape[0],):
        raise ValueError(f"scratch must be an int32 array of shape ({nbrs.shape[0]},)")
    return scratch


def _values_1d(values: ArrayLike, n_voxels: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n_voxels:
        raise ValueError(f"expected a 1-D map of {n_voxels} in-mask voxels, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def max_cluster_stats(
    values: ArrayLike,
    neighbours: np.ndarray,
    threshold: float,
    two_sided: bool = False,
    scratch: np.ndarray | None = None,
) -> tuple[int, float]:
    """Largest cluster size and largest cluster mass of a thresholded map.

    Equivalent to NiMARE's ``_calculate_cluster_measures`` (``tail="upper"``, or ``"two"`` with
    ``two_sided=True``), without building a 3-D image.

    Parameters
    ----------
    values : array_like
        (n_voxels,) map over the in-mask voxels (float32 or float64).
    neighbours : numpy.ndarray
        (n_voxels, 6) table from :func:`neighbours` (a grid is accepted too).
    threshold : float
        Cluster-forming threshold (>= 0); voxels with ``value > threshold`` (or, two-sided,
        ``|value| > threshold``) form clusters.
    two_sided : bool
        Also form clusters of ``value < -threshold`` (labelled apart from the positive ones);
        the maxima are taken over both tails.
    scratch : numpy.ndarray, optional
        (n_voxels,) int32 zeros, reused across calls to avoid one allocation per call (it is
        left all zero). Not thread-safe: give each thread its own.

    Returns
    -------
    max_size : int
        Voxels in the largest cluster (0 when nothing survives).
    max_mass : float
        Largest ``sum(|v| - threshold)`` over a cluster (0.0 when nothing survives).
    """
    nbrs = _neighbour_table(neighbours)
    vals = _values_1d(values, nbrs.shape[0])
    size, mass = _max_stats_dense(
        vals, nbrs, _check_threshold(threshold), bool(two_sided), _scratch_for(nbrs, scratch)
    )
    return int(size), float(mass)


def max_cluster_stats_batch(
    values: ArrayLike, neighbours: np.ndarray, threshold: float, two_sided: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`max_cluster_stats` for every row of a block of maps.

    Parameters
    ----------
    values : array_like
        (n_maps, n_voxels) maps (e.g. one per Monte Carlo iteration).
    neighbours : numpy.ndarray
        (n_voxels, 6) table from :func:`neighbours` (a grid is accepted too).
    threshold : float
        Cluster-forming threshold (>= 0).
    two_sided : bool
        Label the negative tail too.

    Returns
    -------
    max_sizes : numpy.ndarray
        (n_maps,) int64 (eager).
    max_masses : numpy.ndarray
        (n_maps,) float64 (eager).
    """
    nbrs = _neighbour_table(neighbours)
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != nbrs.shape[0]:
        raise ValueError(f"expected (n_maps, {nbrs.shape[0]}) maps, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    arr = np.ascontiguousarray(arr)
    sizes = np.zeros(arr.shape[0], dtype=np.int64)
    masses = np.zeros(arr.shape[0], dtype=np.float64)
    scratch = np.zeros(nbrs.shape[0], dtype=np.int32)
    _max_stats_batch(
        arr, nbrs, _check_threshold(threshold), bool(two_sided), scratch, sizes, masses
    )
    return sizes, masses


def max_cluster_stats_sparse(
    indices: ArrayLike,
    values: ArrayLike,
    neighbours: np.ndarray,
    threshold: float,
    two_sided: bool = False,
    scratch: np.ndarray | None = None,
) -> tuple[int, float]:
    """:func:`max_cluster_stats` of a sparse map (zero outside ``indices``).

    The cost scales with ``len(indices)`` (plus one zeroed scratch array unless ``scratch`` is
    given), which suits maps that are non-zero only near a few foci.

    Parameters
    ----------
    indices : array_like
        Unique in-mask voxel indices of the non-zero entries (any order).
    values : array_like
        Their values.
    neighbours : numpy.ndarray
        (n_voxels, 6) table from :func:`neighbours` (a grid is accepted too).
    threshold : float
        Cluster-forming threshold (>= 0).
    two_sided : bool
        Label the negative tail too.
    scratch : numpy.ndarray, optional
        (n_voxels,) int32 zeros to reuse (left all zero; one per thread).

    Returns
    -------
    max_size : int
    max_mass : float
    """
    nbrs = _neighbour_table(neighbours)
    idx = np.ascontiguousarray(indices, dtype=np.int64)
    vals = np.ascontiguousarray(values, dtype=np.float64)
    if idx.ndim != 1 or idx.shape != vals.shape:
        raise ValueError(f"indices {idx.shape} and values {vals.shape} must be matching 1-D")
    if idx.size and (idx.min() < 0 or idx.max() >= nbrs.shape[0]):
        raise ValueError(f"indices must lie in [0, {nbrs.shape[0]})")
    size, mass = _max_stats_sparse(
        idx, vals, nbrs, _check_threshold(threshold), bool(two_sided), _scratch_for(nbrs, scratch)
    )
    return int(size), float(mass)


class Clusters(NamedTuple):
    """Labelled clusters of a map (see :func:`label_clusters`).

    Cluster ``c`` (label ``c``, 1-based) has size ``sizes[c - 1]``, mass ``masses[c - 1]`` and
    tail ``signs[c - 1]`` (+1 or -1).
    """

    labels: np.ndarray
    sizes: np.ndarray
    masses: np.ndarray
    signs: np.ndarray

    @property
    def n_clusters(self) -> int:
        """Number of clusters."""
        return int(self.sizes.shape[0])


def label_clusters(
    values: ArrayLike, grid: Any, threshold: float, two_sided: bool = False
) -> Clusters:
    """Label the 6-connected clusters of a thresholded map.

    Labels equal ``scipy.ndimage.label(img > threshold, generate_binary_structure(3, 1))`` on
    the 3-D image (clusters numbered in order of their first voxel in C order). With
    ``two_sided=True`` the negative tail is labelled separately and numbered after the positive
    clusters (as NiMARE's MKDAChi2 does).

    Parameters
    ----------
    values : array_like
        (n_voxels,) map over the in-mask voxels.
    grid : Grid, grid-like or numpy.ndarray
        The grid (anything with a 3-D ``mask``) or its :func:`neighbours` table.
    threshold : float
        Cluster-forming threshold (>= 0), strict.
    two_sided : bool
        Also label ``value < -threshold``.

    Returns
    -------
    Clusters
        ``labels`` (n_voxels,) int32 with 0 for background; per cluster ``sizes`` (int64),
        ``masses`` (float64, ``sum(|v| - threshold)``) and ``signs`` (int8). Eager.
    """
    nbrs = _neighbour_table(grid)
    vals = _values_1d(values, nbrs.shape[0])
    thr = _check_threshold(threshold)
    idx, supra_vals = _supra(vals, thr, bool(two_sided))
    comp, n_comp = _components(idx, supra_vals, nbrs, np.zeros(nbrs.shape[0], dtype=np.int32))
    comp = np.asarray(comp, dtype=np.int64)
    # Sign of each component (all its voxels share it), then positive components first.
    _, first = np.unique(comp, return_index=True)  # lowest supra position of each component
    comp_sign = np.where(supra_vals[first] > 0, 1, -1).astype(np.int8)
    order = np.concatenate([np.flatnonzero(comp_sign > 0), np.flatnonzero(comp_sign < 0)])
    new_label = np.empty(n_comp, dtype=np.int64)
    new_label[order] = np.arange(1, n_comp + 1)
    labels = np.zeros(nbrs.shape[0], dtype=np.int32)
    labels[idx] = new_label[comp]
    vox_label = labels[idx]
    sizes = np.bincount(vox_label, minlength=n_comp + 1)[1:].astype(np.int64)
    masses = np.bincount(vox_label, weights=np.abs(supra_vals) - thr, minlength=n_comp + 1)[1:]
    signs = np.asarray(comp_sign[order], dtype=np.int8)
    return Clusters(labels=labels, sizes=sizes, masses=masses.astype(np.float64), signs=signs)


class ClusterPMaps(NamedTuple):
    """Cluster-level FWE p-values of a map (see :func:`cluster_p_maps`)."""

    p_size: np.ndarray
    p_mass: np.ndarray
    clusters: Clusters


def cluster_p_maps(
    values: ArrayLike,
    threshold: float,
    null_sizes: ArrayLike,
    null_masses: ArrayLike,
    grid: Any,
    two_sided: bool = False,
) -> ClusterPMaps:
    """Per-voxel cluster-level p-values of an observed map against max-cluster nulls.

    Each cluster's size and mass are compared with the Monte Carlo null of the largest cluster
    size and mass (one value per iteration) with NiMARE's ``null_to_p`` semantics
    (:func:`nimare_dask.stats.nulls.null_to_p`, ``tail="upper"``): ``p = #(null >= x) / n``,
    clipped to ``[1/n, 1 - 1/n]``, no +1. Every voxel of a cluster gets its cluster's p;
    background voxels get the p of size 0 and of a negative mass, i.e. ``1 - 1/n``.

    Parameters
    ----------
    values : array_like
        (n_voxels,) observed statistic map.
    threshold : float
        Cluster-forming threshold (the same as the null's).
    null_sizes, null_masses : array_like
        (n_iters,) largest cluster size and mass per Monte Carlo iteration.
    grid : Grid, grid-like or numpy.ndarray
        The grid or its :func:`neighbours` table.
    two_sided : bool
        Label both tails (positive and negative clusters separately).

    Returns
    -------
    ClusterPMaps
        ``p_size`` and ``p_mass`` (n_voxels,) float64, and the :class:`Clusters` (eager).
    """
    clusters = label_clusters(values, grid, threshold, two_sided=two_sided)
    sizes = np.concatenate([[0.0], clusters.sizes.astype(np.float64)])
    masses = np.concatenate([[-np.inf], clusters.masses])
    p_size_c = np.atleast_1d(null_to_p(sizes, null_sizes, tail="upper"))
    p_mass_c = np.atleast_1d(null_to_p(masses, null_masses, tail="upper"))
    return ClusterPMaps(
        p_size=p_size_c[clusters.labels], p_mass=p_mass_c[clusters.labels], clusters=clusters
    )

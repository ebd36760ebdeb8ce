"""Cluster tables of a voxel map with peaks and subpeaks (nilearn's ``get_clusters_table`` rules).

NiMARE's diagnostics define clusters with :func:`nilearn.reporting.get_clusters_table`; this
module reproduces that table from a 1-D map over the in-mask voxels of a
:class:`~nimare_dask.space.Grid`, without building NIfTI images, and works per cluster on its
bounding box so that maps with many clusters stay cheap. The rules (nilearn 0.13):

* thresholding as ``nilearn.image.threshold_img``: values ``<= threshold`` are set to 0
  (``-threshold <= v <= threshold`` with ``two_sided``); with ``cluster_threshold`` clusters of
  fewer voxels are removed, each sign separately;
* clusters are 6-connected (faces) groups of ``v > threshold`` (each tail separately) and are
  numbered by decreasing peak value; with ``two_sided`` the negative tail follows the positive
  one and its numbers continue from the number of rows written so far (as nilearn does);
* peaks are local maxima of the cluster's values over their 3x3x3 neighbourhood (plateaus
  count only in a constant cluster, where the plateau's centre of mass, or the plateau voxel
  nearest to it, is reported), sorted by value; a subpeak is dropped when it lies within
  ``min_distance`` mm of a peak kept before it; at most 3 subpeaks are reported per cluster,
  named ``1a``, ``1b``, ``1c``;
* comparisons use the map's own dtype against the threshold as given (NumPy promotion), as
  nilearn does on the float32 image NiMARE writes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from string import ascii_lowercase

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import ndimage

from nimare_dask.space import Grid

__all__ = [
    "TABLE_COLUMNS",
    "ClusterTable",
    "clusters_table",
    "local_maxima",
    "volume",
]

#: Columns of the table, as nilearn's ``get_clusters_table`` names them.
TABLE_COLUMNS = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]

_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass
class ClusterTable:
    """A cluster table and the label maps it was made from.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`; one row per peak (cluster rows have an integer
        ``Cluster ID`` and a size, subpeak rows an ID such as ``"1a"`` and an empty size).
    label_maps : list of numpy.ndarray
        One (n_voxels,) int32 map per tail that has clusters (positive tail first): 0 outside
        clusters, ``c`` for the ``c``-th cluster of that tail by decreasing peak.
    signs : list of int
        The tail (+1 or -1) of each label map.
    """

    table: pd.DataFrame
    label_maps: list[np.ndarray] = field(default_factory=list)
    signs: list[int] = field(default_factory=list)

    @property
    def n_clusters(self) -> int:
        """Number of clusters over all tails."""
        return int(sum(int(lm.max(initial=0)) for lm in self.label_maps))


def volume(values: ArrayLike, grid: Grid, dtype=None) -> np.ndarray:
    """Scatter a 1-D map over in-mask voxels into a 3-D array (0 outside the mask, NaN -> 0).

    Parameters
    ----------
    values : array_like
        (n_voxels,) map.
    grid : Grid
        Its grid.
    dtype : numpy dtype, optional
        Output dtype (default: the map's; float maps have NaN and infinities set to 0, as in
        an image written by :meth:`~nimare_dask.results.MetaResult.get_map`).

    Returns
    -------
    numpy.ndarray
        3-D array of ``grid.shape`` (eager).
    """
    values = np.asarray(values)
    if values.shape != (grid.n_voxels,):
        raise ValueError(
            f"the map has shape {values.shape}, but the grid has {grid.n_voxels} voxels"
        )
    if np.issubdtype(values.dtype, np.floating):
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.zeros(grid.shape, dtype=dtype or values.dtype)
    out[grid.mask] = values
    return out


def _threshold(vol: np.ndarray, threshold, two_sided: bool) -> np.ndarray:
    """``threshold_img``: zero the values that do not pass the threshold (copy)."""
    vol = vol.copy()
    if two_sided:
        vol[(-threshold <= vol) & (vol <= threshold)] = 0
    elif threshold >= 0:
        vol[vol <= threshold] = 0
    else:
        vol[vol >= threshold] = 0
    return vol


def _remove_small_clusters(vol: np.ndarray, cluster_threshold: int) -> np.ndarray:
    """Zero the 6-connected clusters of each sign with fewer than ``cluster_threshold`` voxels."""
    for sign in np.unique(np.sign(vol)):
        if sign == 0:
            continue
        labels, n = ndimage.label((vol * sign) > 0, _FACES)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < cluster_threshold
        small[0] = False
        vol[small[labels]] = 0
    return vol


def _boxes(labels: np.ndarray, n: int) -> list[tuple[slice, ...]]:
    """Bounding box of each label, grown by one voxel where the volume allows."""
    shape = labels.shape
    out = []
    for box in ndimage.find_objects(labels, max_label=n):
        out.append(
            tuple(
                slice(max(s.start - 1, 0), min(s.stop + 1, dim))
                for s, dim in zip(box, shape, strict=True)
            )
        )
    return out


def local_maxima(
    data: np.ndarray, affine: np.ndarray, min_distance: float = 8.0, offset=(0, 0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one cluster's values, sorted by value and pruned by distance.

    Parameters
    ----------
    data : numpy.ndarray
        3-D array holding one cluster's values and 0 elsewhere (a box around the cluster with a
        zero border, or the whole volume).
    affine : numpy.ndarray
        Affine of the whole volume.
    min_distance : float
        Minimum distance in mm between reported peaks.
    offset : sequence of int
        Grid index of ``data[0, 0, 0]``.

    Returns
    -------
    ijk : numpy.ndarray
        (n_peaks, 3) grid indices, highest value first.
    values : numpy.ndarray
        (n_peaks,) values at those indices (eager).
    """
    offset = np.asarray(offset, dtype=np.int64)
    data_max = ndimage.maximum_filter(data, 3)
    maxima = data == data_max
    nonzero = data != 0
    maxima[~nonzero] = False
    inside = data[nonzero]
    if not np.isclose(inside.max(), inside.min()):
        # plateaus are not peaks unless the whole cluster is one
        data_min = ndimage.minimum_filter(data, 3)
        maxima[(data_max - data_min) <= 0] = False
    labeled, n = ndimage.label(maxima)
    index = np.arange(1, n + 1)
    # centre of mass of each maximum (plateau), in whole-volume indices: the same sums as
    # scipy.ndimage.center_of_mass on the whole volume, voxel for voxel
    norm = ndimage.sum_labels(data, labeled, index)
    grids = np.ogrid[tuple(slice(0, s) for s in data.shape)]
    com = np.stack(
        [
            ndimage.sum_labels(data * (grids[d] + offset[d]).astype(float), labeled, index) / norm
            for d in range(3)
        ],
        axis=1,
    )
    ijk = np.round(com).astype(np.int64)
    local = ijk - offset
    outside = labeled[local[:, 0], local[:, 1], local[:, 2]] != index
    if np.any(outside):
        # the centre of mass of a plateau can fall outside it (a ring): nearest plateau voxel
        members = np.argwhere(labeled > 0)
        member_labels = labeled[labeled > 0]
        for row in np.flatnonzero(outside):
            candidates = members[member_labels == index[row]]
            dist = np.linalg.norm(candidates - local[row], axis=1)
            local[row] = candidates[np.argmin(dist)]
        ijk = local + offset
    vals = data[local[:, 0], local[:, 1], local[:, 2]]
    order = (-vals).argsort()
    vals, ijk = vals[order], ijk[order]
    xyz = ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    keep = np.ones(len(ijk), dtype=bool)
    for i in range(len(ijk)):
        if keep[i]:
            # as nilearn: every later peak is judged again against each kept peak
            keep[i + 1 :] = np.linalg.norm(xyz[i + 1 :] - xyz[i], axis=1) > min_distance
    return ijk[keep], vals[keep]


def clusters_table(
    values: ArrayLike,
    grid: Grid,
    threshold: float = 0.0,
    cluster_threshold: int = 0,
    two_sided: bool = False,
    min_distance: float = 8.0,
    max_subpeaks: int = 3,
) -> ClusterTable:
    """Peaks, subpeaks and sizes of the clusters of a thresholded map (nilearn's rules).

    Parameters
    ----------
    values : array_like
        (n_voxels,) map over the grid's in-mask voxels (NaN is treated as 0).
    grid : Grid
        The map's grid.
    threshold : float
        Cluster-forming threshold, strict (``v > threshold``; ``|v| > threshold`` per tail
        with ``two_sided``; a negative one-sided threshold selects ``v < threshold``).
    cluster_threshold : int
        Minimum cluster size in voxels (0: none).
    two_sided : bool
        Also report clusters of the negative tail.
    min_distance : float
        Minimum distance between reported peaks of a cluster, in mm.
    max_subpeaks : int
        Subpeaks reported per cluster besides its peak (nilearn: 3).

    Returns
    -------
    ClusterTable
        The table (as :func:`nilearn.reporting.get_clusters_table` returns it) and the label
        maps (eager).
    """
    if min_distance <= 0:
        raise ValueError(f"min_distance must be positive, got {min_distance}")
    vol = volume(values, grid)
    vol = _threshold(vol, threshold, two_sided)
    if cluster_threshold and cluster_threshold > 0:
        vol = _remove_small_clusters(vol, cluster_threshold)
    affine = np.asarray(grid.affine, dtype=np.float64)
    voxel_size = float(np.prod(grid.zooms))
    negative_one_sided = (not two_sided) and threshold < 0
    rows: list[list] = []
    label_maps: list[np.ndarray] = []
    signs: list[int] = []
    for sign in (1, -1) if two_sided else (1,):
        offset = len(rows)
        signed = vol * sign
        supra = signed < threshold if negative_one_sided else signed > threshold
        if not supra.any():
            continue
        labels, n = ndimage.label(supra, _FACES)
        flat_labels = labels[supra]
        flat_vals = signed[supra]
        if negative_one_sided:
            peaks = np.full(n, np.inf, dtype=signed.dtype)
            np.minimum.at(peaks, flat_labels - 1, flat_vals)
        else:
            peaks = np.full(n, -np.inf, dtype=signed.dtype)
            np.maximum.at(peaks, flat_labels - 1, flat_vals)
        order = (-peaks).argsort()  # labels by decreasing peak (as nilearn, same sort)
        rank = np.empty(n + 1, dtype=np.int32)
        rank[0] = 0
        rank[order + 1] = np.arange(1, n + 1, dtype=np.int32)
        label_maps.append(rank[labels][grid.mask])
        signs.append(sign)
        boxes = _boxes(labels, n)
        for c_id, lab in enumerate(order + 1):
            box = boxes[lab - 1]
            in_cluster = labels[box] == lab
            data = signed[box] * in_cluster
            if negative_one_sided:
                data *= -1
            size_mm = int(np.sum(in_cluster) * voxel_size)
            start = [s.start for s in box]
            ijk, vals = local_maxima(data, affine, min_distance, offset=start)
            vals = vals * sign
            xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
            for k in range(min(len(vals), max_subpeaks + 1)):
                if k == 0:
                    ident: int | str = c_id + offset + 1
                    size: int | str = size_mm
                else:
                    ident = f"{c_id + offset + 1}{ascii_lowercase[k - 1]}"
                    size = ""
                rows.append([ident, xyz[k, 0], xyz[k, 1], xyz[k, 2], vals[k], size])
    if rows:
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    else:
        warnings.warn(f"no clusters found beyond the threshold {threshold}", stacklevel=2)
        table = pd.DataFrame(columns=TABLE_COLUMNS)
    return ClusterTable(table=table, label_maps=label_maps, signs=signs)

"""Cluster tables for publication: one row per cluster, right for cluster-level inference.

For a cluster-level corrected map (``z_desc-size_level-cluster_corr-FWE_method-montecarlo``)
each cluster is a 6-connected component of the voxels passing the significance threshold (the
corrected map is constant within a cluster formed at the cluster-forming threshold, and two such
clusters never share a face, so each component is exactly one cluster). For other maps the
clusters are the 6-connected components of the map beyond the threshold. Each row has:

* ``Cluster ID`` (1, 2, ... by decreasing peak; with two tails the negative ones follow) and
  ``Tail`` (``+``/``-``);
* ``Size (voxels)``, ``Size (mm3)``;
* ``p``: the cluster's corrected p for cluster-level maps, the map's p at the peak otherwise
  (taken from the matching ``p_*``/``logp_*`` map when the result has one, else from z); a
  subpeak row has the map's p at the subpeak;
* ``Peak Stat`` and ``Peak X/Y/Z``: the peak of the *uncorrected* statistic inside the cluster
  (``z`` for the corrected maps above, voxel- or cluster-level; the map itself for an
  uncorrected map) and its label;
* ``Center of Mass X/Y/Z`` (mm, unweighted mean of the cluster's voxels) and its label: it can
  fall outside a ring- or crescent-shaped cluster, so
* ``Representative X/Y/Z``: the cluster voxel nearest the centre of mass (lowest voxel index on
  ties), always inside the cluster;
* ``Atlas Overlap``: the three atlas regions holding most of the cluster's voxels (% of voxels).

Voxel-level maps also get subpeak rows (``1a``, ``1b``, ``1c``: local maxima at least 8 mm from
the peaks kept before them, as nilearn's ``get_clusters_table``), with only the peak columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from nimare_dask.diagnostics.base import peak_map_name
from nimare_dask.diagnostics.clusters import local_maxima, volume
from nimare_dask.reports.atlas import Atlas, load_atlas
from nimare_dask.results import MetaResult, parse_map_name
from nimare_dask.space import Grid

__all__ = [
    "CLUSTER_COLUMNS",
    "cluster_table",
    "cluster_table_from_arrays",
    "default_threshold",
    "is_cluster_level",
    "is_ibma",
    "map_threshold",
    "two_tailed_p",
]

CLUSTER_COLUMNS = [
    "Cluster ID",
    "Tail",
    "Size (voxels)",
    "Size (mm3)",
    "p",
    "Peak Stat",
    "Peak X",
    "Peak Y",
    "Peak Z",
    "Peak Label",
    "Center of Mass X",
    "Center of Mass Y",
    "Center of Mass Z",
    "Center Label",
    "Representative X",
    "Representative Y",
    "Representative Z",
    "Atlas Overlap",
]

_FACES = ndimage.generate_binary_structure(3, 1)
_ALPHA = 0.05


def is_cluster_level(name: str) -> bool:
    """Whether a map name is a corrected cluster-level map (``..._level-cluster_corr-...``)."""
    return "_level-cluster" in name and "_corr-" in name


def default_threshold(name: str, two_tailed: bool | None = None) -> float:
    """The threshold that keeps significant voxels/clusters of a map, by its name.

    Monte Carlo corrected z maps are one-tailed: z > 1.645 (p < 0.05); other corrected z maps
    (Bonferroni, FDR: NiMARE converts their p with a two-tailed ``nlogp_to_z``) are
    two-tailed: |z| > 1.960; ``logp``/``p`` maps: p < 0.05 (logp > 1.301). Uncorrected
    ``z``/``logp``: p < 0.001 (z > 3.090, logp > 3). ``p`` maps are thresholded on
    ``-log10 p`` internally.

    Parameters
    ----------
    name : str
        A map name.
    two_tailed : bool, optional
        Whether the map's z is the two-tailed conversion of its p (IBMA estimators with a
        two-sided test, see :func:`map_threshold`); None: by the name alone, as above.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For maps whose scale has no conventional threshold (``stat``, ``chi2``, ``est`` ...).
    """
    parts = parse_map_name(name)
    if parts["method"] == "predictive":
        # predictive FWE maps already hold 0 (p = 1) outside the voxels/clusters that
        # survive the predicted cutoff: every non-zero voxel is significant
        return 0.0
    alpha = _ALPHA if parts["corr"] else 0.001
    if parts["datatype"] == "z":
        if parts["corr"] is not None and parts["method"] != "montecarlo":
            two_tailed = True  # NiMARE's corrected z: nlogp_to_z(tail="two")
        elif two_tailed is None:
            two_tailed = False
        return float(stats.norm.isf(alpha / 2 if two_tailed else alpha))
    if parts["datatype"] in ("logp", "p"):
        return float(-np.log10(alpha))
    raise ValueError(f"no default threshold for {name!r}: pass threshold=...")


def is_ibma(result: MetaResult) -> bool:
    """Whether the result comes from an image-based estimator (live or as recorded)."""
    from nimare_dask.meta import ibma

    est = result.estimator
    if est is not None:
        return isinstance(est, ibma.IBMAEstimator)
    name = (result.estimator_info or {}).get("class")
    return name in ibma.__all__


def two_tailed_p(result: MetaResult) -> bool:
    """Whether the result's ``p`` (and so its ``z``) is two-tailed.

    NiMARE's image-based estimators test two-sided hypotheses: ``Fishers``, ``Stouffers`` and
    ``PermutedOLS`` unless ``two_sided=False``, the regression and likelihood estimators
    always (``p = 2 sf(|z|)``). Coordinate-based results are one-tailed.
    """
    if not is_ibma(result):
        return False
    est = result.estimator
    if est is not None:
        return bool(getattr(est, "two_sided", True))
    params = (result.estimator_info or {}).get("params", {}) or {}
    return bool(params.get("two_sided", True))


def map_threshold(result: MetaResult, name: str) -> float | None:
    """The significance threshold of one of ``result``'s maps, or None where there is none.

    As :func:`default_threshold`, with the tails of the result's test: an IBMA result's
    uncorrected ``z`` is significant at |z| > 3.291 (two-sided p < 0.001) and a two-sided
    ``PermutedOLS`` Monte Carlo map at |z| > 1.960 (NiMARE converts its p two-tailed).
    ``est``, ``se``, ``tau2``, ``t``, ``dof``, ``stat`` ... have no conventional threshold:
    None.
    """
    try:
        return default_threshold(name, two_tailed=two_tailed_p(result))
    except ValueError:
        return None


def _p_from(result: MetaResult, name: str) -> np.ndarray | None:
    """p values of a map: from its p/logp sibling, or from z (one-sided; two-sided if signed)."""
    parts = parse_map_name(name)
    rest = name[len(parts["datatype"]) :]
    names = result.maps_names
    if "p" + rest in names:
        return np.asarray(result.get_map("p" + rest, return_type="array"), dtype=np.float64)
    if "logp" + rest in names:
        logp = np.asarray(result.get_map("logp" + rest, return_type="array"), dtype=np.float64)
        return 10.0**-logp
    if parts["datatype"] == "z":
        z = np.nan_to_num(np.asarray(result.get_map(name, return_type="array"), np.float64))
        if (z < 0).any():
            return 2 * stats.norm.sf(np.abs(z))
        return stats.norm.sf(z)
    return None


def _fmt_overlap(items: list[tuple]) -> str:
    return "; ".join(f"{name} {pct:.1f}%" for name, pct in items)


def cluster_table_from_arrays(
    target: np.ndarray,
    grid: Grid,
    threshold: float,
    peak_values: np.ndarray | None = None,
    p_values: np.ndarray | None = None,
    two_sided: bool = False,
    cluster_threshold: int = 0,
    subpeaks: bool = True,
    min_distance: float = 8.0,
    atlas: str | Atlas | None = "harvard_oxford_cortical",
    max_subpeaks: int = 3,
) -> pd.DataFrame:
    """Cluster table of a map given as arrays over the grid's voxels.

    Parameters
    ----------
    target : numpy.ndarray
        (n_voxels,) map defining the clusters: ``target > threshold`` (and
        ``target < -threshold`` with ``two_sided``), 6-connected.
    grid : Grid
        The maps' grid.
    threshold : float
        Threshold of ``target`` (strict).
    peak_values : numpy.ndarray, optional
        (n_voxels,) statistic whose peaks are reported (default: ``target``).
    p_values : numpy.ndarray, optional
        (n_voxels,) p values; a cluster's ``p`` is the smallest inside it (constant for a
        cluster-level map; the peak's for a voxel-level one). NaN column when absent.
    two_sided : bool
        Also report clusters of the negative tail.
    cluster_threshold : int
        Minimum cluster size in voxels.
    subpeaks : bool
        Add subpeak rows.
    min_distance : float
        Minimum distance between reported peaks of a cluster (mm).
    atlas : str, Atlas or None
        Atlas for labels and overlaps (None: no label columns filled).
    max_subpeaks : int
        Subpeaks per cluster at most.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CLUSTER_COLUMNS` (eager).
    """
    target = np.nan_to_num(np.asarray(target, dtype=np.float64))
    peaks_all = target if peak_values is None else np.nan_to_num(np.asarray(peak_values))
    if isinstance(atlas, str):
        atlas = load_atlas(atlas)
    affine = np.asarray(grid.affine, dtype=np.float64)
    voxel_mm3 = float(np.prod(grid.zooms))
    rows: list[dict] = []
    n_done = 0
    for sign in (1, -1) if two_sided else (1,):
        supra_1d = (target * sign) > threshold
        if not supra_1d.any():
            continue
        supra = volume(supra_1d, grid)
        labels, n = ndimage.label(supra, _FACES)
        lab_1d = labels[grid.mask]
        sizes = np.bincount(lab_1d, minlength=n + 1)
        keep = sizes >= max(1, cluster_threshold)
        keep[0] = False
        kept = np.flatnonzero(keep)
        if kept.size == 0:
            continue
        signed_peaks = volume((peaks_all * sign).astype(np.float64), grid)
        signed_peaks[~supra] = 0
        peak_of = np.full(n + 1, -np.inf)
        np.maximum.at(peak_of, lab_1d[supra_1d], (peaks_all * sign)[supra_1d])
        order = kept[(-peak_of[kept]).argsort()]  # same sort as nilearn (ties alike)
        boxes = ndimage.find_objects(labels, max_label=n)
        vox_xyz = grid.voxel_xyz
        for lab in order:
            n_done += 1
            members = np.flatnonzero(lab_1d == lab)
            xyz = vox_xyz[members]
            com = xyz.mean(axis=0)
            rep = xyz[np.argmin(np.linalg.norm(xyz - com, axis=1))]
            box = tuple(
                slice(max(s.start - 1, 0), min(s.stop + 1, dim))
                for s, dim in zip(boxes[lab - 1], grid.shape, strict=True)
            )
            data = np.where(labels[box] == lab, signed_peaks[box], 0.0)
            if np.any(data != 0):
                ijk, vals = local_maxima(data, affine, min_distance, offset=[s.start for s in box])
            else:  # no positive peak value inside: report the representative voxel
                ijk = np.round((np.linalg.inv(affine) @ np.append(rep, 1.0))[:3]).astype(np.int64)[
                    None, :
                ]
                vals = np.zeros(1)
            peak_xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
            p = np.nan
            if p_values is not None:
                p = float(np.nanmin(np.asarray(p_values, dtype=np.float64)[members]))
            labels_txt = atlas.label(np.vstack([peak_xyz[:1], com[None, :]])) if atlas else ["", ""]
            overlap = _fmt_overlap(atlas.overlap(xyz)) if atlas else ""
            rows.append(
                {
                    "Cluster ID": str(n_done),
                    "Tail": "+" if sign > 0 else "-",
                    "Size (voxels)": int(members.size),
                    "Size (mm3)": float(members.size * voxel_mm3),
                    "p": p,
                    "Peak Stat": float(vals[0] * sign),
                    "Peak X": float(peak_xyz[0, 0]),
                    "Peak Y": float(peak_xyz[0, 1]),
                    "Peak Z": float(peak_xyz[0, 2]),
                    "Peak Label": labels_txt[0],
                    "Center of Mass X": float(com[0]),
                    "Center of Mass Y": float(com[1]),
                    "Center of Mass Z": float(com[2]),
                    "Center Label": labels_txt[1],
                    "Representative X": float(rep[0]),
                    "Representative Y": float(rep[1]),
                    "Representative Z": float(rep[2]),
                    "Atlas Overlap": overlap,
                }
            )
            if subpeaks:
                sub_labels = atlas.label(peak_xyz[1 : max_subpeaks + 1]) if atlas else None
                for k in range(1, min(len(vals), max_subpeaks + 1)):
                    sub_p = np.nan
                    if p_values is not None:
                        flat = np.ravel_multi_index(tuple(ijk[k]), grid.shape)
                        sub_p = float(np.asarray(p_values)[grid.flat_lookup[flat]])
                    rows.append(
                        {
                            "Cluster ID": f"{n_done}{chr(ord('a') + k - 1)}",
                            "Tail": "+" if sign > 0 else "-",
                            "p": sub_p,
                            "Peak Stat": float(vals[k] * sign),
                            "Peak X": float(peak_xyz[k, 0]),
                            "Peak Y": float(peak_xyz[k, 1]),
                            "Peak Z": float(peak_xyz[k, 2]),
                            "Peak Label": sub_labels[k - 1] if sub_labels else "",
                        }
                    )
    table = pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
    table["Size (voxels)"] = table["Size (voxels)"].astype("Int64")
    for col in ("Peak Label", "Center Label", "Atlas Overlap"):
        table[col] = table[col].fillna("")
    return table


def cluster_table(
    result: MetaResult,
    map_name: str,
    threshold: float | None = None,
    *,
    peak_map: str | None = None,
    two_sided: bool | None = None,
    cluster_threshold: int = 0,
    subpeaks: bool | None = None,
    min_distance: float = 8.0,
    atlas: str | Atlas | None = "harvard_oxford_cortical",
) -> pd.DataFrame:
    """Publication cluster table of one map of a result.

    Parameters
    ----------
    result : MetaResult
        The result.
    map_name : str
        Map defining the clusters, e.g. ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``
        or ``z_level-voxel_corr-FWE_method-montecarlo`` or ``z``.
    threshold : float, optional
        Threshold of the map (default: :func:`default_threshold`, e.g. 1.645 for corrected z
        maps: one-sided p < 0.05). For a ``p`` map, a p value (clusters where p < threshold).
    peak_map : str, optional
        Map whose peaks are reported (default: the uncorrected map of a corrected map, e.g.
        ``z``, so that ``Peak Stat`` is the peak's uncorrected z; the map itself otherwise).
    two_sided : bool, optional
        Report negative clusters too (default: when the map has negative values).
    cluster_threshold : int
        Minimum cluster size in voxels.
    subpeaks : bool, optional
        Add subpeak rows (default: for voxel-level maps only).
    min_distance : float
        Minimum distance between peaks (mm).
    atlas : str, Atlas or None
        Atlas for labels (default: Harvard-Oxford cortical).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CLUSTER_COLUMNS` (eager); ``attrs`` records the maps and threshold used.
    """
    values = np.asarray(result.get_map(map_name, return_type="array"), dtype=np.float64)
    parts = parse_map_name(map_name)
    cluster_level = is_cluster_level(map_name)
    if parts["datatype"] == "p":
        thr_p = _ALPHA if threshold is None else float(threshold)
        target = -np.log10(np.clip(np.nan_to_num(values, nan=1.0), 1e-300, 1.0))
        thr = float(-np.log10(thr_p))
    else:
        target = values
        thr = map_threshold(result, map_name) if threshold is None else float(threshold)
        if thr is None:
            raise ValueError(f"no default threshold for {map_name!r}: pass threshold=...")
    if peak_map is None:
        candidate = peak_map_name(map_name) if "_corr-" in map_name else map_name
        peak_map = candidate if candidate in result.maps_names else map_name
    peak_values = None if peak_map == map_name else result.get_map(peak_map, return_type="array")
    if parts["datatype"] == "p" and peak_values is None:
        peak_values = target
    if two_sided is None:
        two_sided = bool((np.nan_to_num(target) < 0).any())
    table = cluster_table_from_arrays(
        target,
        result.grid,
        thr,
        peak_values=peak_values,
        p_values=_p_from(result, map_name),
        two_sided=two_sided,
        cluster_threshold=cluster_threshold,
        subpeaks=(not cluster_level) if subpeaks is None else subpeaks,
        min_distance=min_distance,
        atlas=atlas,
    )
    table.attrs.update(
        {
            "map": map_name,
            "peak_map": peak_map,
            "threshold": thr if parts["datatype"] != "p" else thr_p,
            "level": "cluster" if cluster_level else "voxel",
            "atlas": atlas.description if isinstance(atlas, Atlas) else (atlas or ""),
        }
    )
    return table

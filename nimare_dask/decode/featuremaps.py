"""Per-feature meta-analytic maps of a whole database, as blocked sparse linear algebra.

A correlation decoder needs one meta-analytic map per feature (term, topic). NiMARE runs one
meta-analysis per feature. Here, for MKDA-type estimators, all features are computed together:
with ``M`` the binary MA maps (analyses x voxels, a study is "active" at a voxel when its MA
value is > 0) and ``A`` the label indicators (features x analyses), the active-study counts of
every feature are ``C1 = A @ M``, those of the other studies ``C2 = colsum(M) - C1``, and
the MKDAChi2 (or MKDADensity) maps follow elementwise from ``(C1, C2, n1, n2)``.

The Dask graph (task names as they appear on the dashboard):

``decode-ma``
    one task per chunk of analyses: the chunk's MA maps from its foci (numba, via the kernel's
    :meth:`~nimare_dask.kernels.KernelTransformer.csr_block`), kept only as the sparsity
    pattern, split by voxel chunk (2-byte voxel offsets). The foci are not in the graph: each
    task reads its own slice from the studyset's store, or, without a store, from one table
    shared by all the tasks (:func:`~nimare_dask.kernels.foci.foci_blocks`; scattered to the
    cluster under ``distributed``, as are the labels).
``decode-counts``
    one task per voxel chunk: ``A @ M[:, chunk]`` as a sparse scatter-add over every analysis's
    features x active voxels, plus the number of active analyses per voxel (int32).
``decode-nulls``
    only for uniformity maps and MKDADensity: per-feature expectations or Poisson-binomial
    null tables from the analyses' coverage.
``decode-zmaps``
    one task per voxel chunk: the requested map (float32, features x voxel chunk), computed in
    slices of features with the same functions as the estimators.

Memory
------
Peak memory is about ``2 * nnz(M)`` bytes (the pattern of every analysis's MA map; MKDA r=10
covers ~11,700 in-mask voxels per NeuroQuery study: 316 MB for 13,459 studies) plus, per worker
thread, ``~3 * 4 * n_features * voxel_chunk`` bytes (counts, map, temporaries), plus one
``decode-ma`` task's CSR (``8 * analysis_chunk * voxels per study`` bytes). The default voxel
chunk keeps ``4 * n_features * voxel_chunk`` near 64 MB, so the whole NeuroQuery decoder (7,547
features) runs in well under 4 GB on 2 threads. For a bigger database or vocabulary lower
``chunks={"voxel": ...}`` (memory per thread) and ``chunks={"analysis": ...}``; on a cluster
the MA pattern is spread over the workers that computed it.

Storage
-------
Maps are persisted in the studyset's store under ``derived/decoder/<key>`` by
:mod:`nimare_dask.decode.featurestore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from nimare_dask.decode._numba import scatter_counts, split_by_voxel_chunk
from nimare_dask.decode.correlate import pearson_r
from nimare_dask.kernels.foci import foci_blocks, shared
from nimare_dask.meta.cbma.mkda_stats import (
    CHI2_STATS,
    PROB_MAPS,
    approximate_maps,
    chi2_stat_maps,
    chi2_test,
    prob_map,
)
from nimare_dask.results import MetaResult
from nimare_dask.space import Grid
from nimare_dask.stats.nulls import poisson_binomial_null
from nimare_dask.stats.transforms import P_FLOOR_FLOAT32
from nimare_dask.studyset import Studyset

__all__ = [
    "ATTRS_KEY",
    "DEFAULT_ANALYSIS_CHUNK",
    "DEFAULT_MAP_CHUNK_BYTES",
    "FeatureMaps",
    "PAIRWISE_TARGETS",
    "DENSITY_TARGETS",
    "blocked_feature_maps",
    "resolve_chunks",
]

#: Attribute holding the provenance of a stored group of feature maps.
ATTRS_KEY = "nimare_dask_decoder"
#: Target size of one (features x voxel chunk) block of counts or maps.
DEFAULT_MAP_CHUNK_BYTES = 64 * 2**20
#: Analyses per ``decode-ma`` task.
DEFAULT_ANALYSIS_CHUNK = 1024
#: Voxel offsets inside a chunk are stored as uint16.
_MAX_VOXEL_CHUNK = 32768
_MIN_VOXEL_CHUNK = 256
#: Target size of one stored zarr chunk (features x voxels, float32).
_STORE_CHUNK_BYTES = 16 * 2**20
#: Elements per slice of features when computing maps (bounds float64 temporaries).
_SLICE_ELEMENTS = 2**20
#: Bumped when the stored values change for the same inputs.
ALGORITHM_VERSION = 1

_STATS = CHI2_STATS
_TESTS = ("association", "uniformity", "group1", "group2")
_PROBS = PROB_MAPS
#: Maps of MKDAChi2 that the blocked path computes.
PAIRWISE_TARGETS = tuple(f"{s}_desc-{t}" for t in _TESTS for s in _STATS) + tuple(
    f"prob_desc-{p}" for p in _PROBS
)
#: Maps of MKDADensity (uniform weights) that the blocked path computes.
DENSITY_TARGETS = ("stat", "p", "z", "logp")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


# ---------------------------------------------------------------------------------- chunks
def resolve_chunks(chunks: dict | None, n_features: int, n_voxels: int) -> dict[str, int]:
    """Chunk sizes of the blocked computation: analyses, voxels and stored features.

    Parameters
    ----------
    chunks : dict, optional
        Any of ``{"analysis": int, "voxel": int, "feature": int}``; missing ones are chosen so
        that a (features x voxel chunk) int32/float32 block is about 64 MB.
    n_features, n_voxels : int
        Problem size.

    Returns
    -------
    dict
        ``{"analysis", "voxel", "feature"}`` positive ints.
    """
    chunks = dict(chunks or {})
    unknown = set(chunks) - {"analysis", "voxel", "feature"}
    if unknown:
        raise ValueError(f"chunks may name 'analysis', 'voxel' and 'feature'; got {unknown}")
    voxel = chunks.get("voxel")
    if voxel is None:
        voxel = DEFAULT_MAP_CHUNK_BYTES // (4 * max(1, n_features))
        voxel = int(min(_MAX_VOXEL_CHUNK, max(_MIN_VOXEL_CHUNK, voxel // 256 * 256)))
    voxel = int(voxel)
    if not 1 <= voxel <= _MAX_VOXEL_CHUNK:
        raise ValueError(f"chunks['voxel'] must be in [1, {_MAX_VOXEL_CHUNK}], got {voxel}")
    voxel = min(voxel, max(1, n_voxels))
    analysis = int(chunks.get("analysis") or DEFAULT_ANALYSIS_CHUNK)
    if analysis < 1:
        raise ValueError(f"chunks['analysis'] must be positive, got {analysis}")
    feature = chunks.get("feature")
    if feature is None:
        feature = max(1, _STORE_CHUNK_BYTES // (4 * voxel))
    feature = int(min(max(1, int(feature)), max(1, n_features)))
    return {"analysis": analysis, "voxel": voxel, "feature": feature}


# ---------------------------------------------------------------------------------- tasks
class _MAContext:
    """What every ``decode-ma`` task shares (one graph key)."""

    def __init__(self, kernel, grid: Grid, width: int, n_chunks: int):
        self.kernel = kernel
        self.grid = grid
        self.width = width
        self.n_chunks = n_chunks


def _ma_task(ctx: _MAContext, block):
    ijk, rows, n_rows, sample_sizes = block  # from foci_blocks: the store or a shared table
    csr = ctx.kernel.csr_block(ijk, rows, n_rows, ctx.grid, sample_sizes)
    indptr = np.asarray(csr.indptr, dtype=np.int64)
    indices = np.asarray(csr.indices, dtype=np.int32)
    del csr
    ptrs, starts, offsets = split_by_voxel_chunk(indptr, indices, ctx.width, ctx.n_chunks)
    return ptrs, starts, offsets, np.diff(indptr)


def _ma_piece(ma, j: int):
    ptrs, starts, offsets, _ = ma
    return ptrs[j], offsets[starts[j] : starts[j + 1]]


def _coverage_task(*mas) -> np.ndarray:
    return np.concatenate([m[3] for m in mas]).astype(np.int64)


class _Labels:
    """Per-analysis feature lists (CSR of analyses x features), shared by the count tasks.

    One graph key (scattered to the cluster under ``distributed``): it grows with the
    database and the vocabulary.
    """

    def __init__(self, indicator: sp.csr_matrix):
        ind = sp.csr_matrix(indicator)
        self.indptr = np.asarray(ind.indptr, dtype=np.int64)
        self.indices = np.asarray(ind.indices, dtype=np.int32)
        self.shape = (int(ind.shape[0]), int(ind.shape[1]))
        self.n_features = int(ind.shape[1])

    def indicator(self) -> sp.csr_matrix:
        """The (analyses x features) indicator, int8 ones."""
        data = np.ones(len(self.indices), dtype=np.int8)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=self.shape)


def _counts_task(labels: _Labels, width: int, row0s: tuple, *pieces):
    counts = np.zeros((labels.n_features, width), dtype=np.int32)
    total = np.zeros(width, dtype=np.int32)
    for row0, (ptr, idx) in zip(row0s, pieces, strict=True):
        scatter_counts(counts, total, int(row0), ptr, idx, labels.indptr, labels.indices)
    return counts, total


@dataclass
class _MapSpec:
    """Which map to compute from the counts, and the per-feature constants it needs."""

    kind: str  # "pairwise" or "density"
    target: str
    n_selected: np.ndarray  # (F,) float64
    n_total: int
    n_voxels: int
    prior: float | None = None
    value: float = 1.0
    needs_coverage: bool = False
    extra: dict = field(default_factory=dict)


def _nulls_task(spec: _MapSpec, labels: _Labels, coverage: np.ndarray) -> dict:
    """Uniformity expectations or MKDADensity null tables from the analyses' coverage."""
    ind = sp.csc_matrix(labels.indicator(), dtype=np.int64)
    sel_cov = np.asarray(ind.T @ coverage, dtype=np.int64).ravel()
    out: dict[str, Any] = {}
    if spec.kind == "pairwise":
        total_cov = int(coverage.sum())
        # exact integer sums / V: the same float as np.mean over the map's counts
        out["mean1"] = sel_cov.astype(np.float64) / spec.n_voxels
        out["mean2"] = (total_cov - sel_cov).astype(np.float64) / spec.n_voxels
        return out
    prop = coverage.astype(np.float64) / spec.n_voxels
    stat_name = spec.target
    tables, offsets = [], [0]
    for f in range(ind.shape[1]):
        rows = ind.indices[ind.indptr[f] : ind.indptr[f + 1]]
        table = _density_table(prop[np.sort(rows)], spec.value, stat_name)
        tables.append(table)
        offsets.append(offsets[-1] + table.size)
    out["table"] = np.concatenate(tables) if tables else np.zeros(0, np.float32)
    out["offsets"] = np.asarray(offsets, dtype=np.int64)
    return out


def _density_table(prop_active: np.ndarray, value: float, stat_name: str) -> np.ndarray:
    """MKDADensity's map value for each possible count k = 0..n (float32, as stored).

    The null and the maps are MKDADensity's (uniform weights): the Poisson-binomial of the
    coverage fractions on the bins 0..n, and
    :func:`~nimare_dask.meta.cbma.mkda_stats.approximate_maps` of the statistic ``k * value``.
    """
    n = len(prop_active)
    bins = np.arange(n + 1, step=1)
    stat = np.arange(n + 1, dtype=np.float64) * np.float64(np.float32(value))
    if stat_name == "stat":
        return _result_dtype("stat", stat)
    maps = approximate_maps(stat, poisson_binomial_null(prop_active), bins)
    return _result_dtype(stat_name, maps[stat_name])


def _result_dtype(name: str, values: np.ndarray) -> np.ndarray:
    """float32 as a :class:`MetaResult` stores it (p clipped to [1.4e-45, 1], logp finite)."""
    out = np.asarray(values).astype(np.float32)
    if name == "p" or name.startswith("p_"):
        out = np.clip(out, np.float32(P_FLOOR_FLOAT32), np.float32(1))
    elif name.startswith("logp"):
        out = np.clip(out, np.float32(0), np.float32(_FLOAT32_MAX))
    return out


def pairwise_map_block(
    target: str,
    c1: np.ndarray,
    total: np.ndarray,
    n1: np.ndarray,
    n_total: int,
    mean1: np.ndarray | None = None,
    mean2: np.ndarray | None = None,
    prior: float | None = 0.5,
) -> np.ndarray:
    """One MKDAChi2 map for a slice of features from active-study counts (float64).

    The functions are MKDAChi2's (:mod:`nimare_dask.meta.cbma.mkda_stats`), with the
    per-feature group sizes broadcast along the voxel axis, so the values are identical.

    Parameters
    ----------
    target : str
        A name from :data:`PAIRWISE_TARGETS`.
    c1 : (F, W) array
        Active selected studies per feature and voxel.
    total : (W,) array
        Active studies per voxel (all analyses).
    n1 : (F, 1) array
        Selected studies per feature.
    n_total : int
        Number of analyses.
    mean1, mean2 : (F, 1) arrays, optional
        Map means of ``c1`` and ``total - c1`` (uniformity/group tests only).
    prior : float or None
        MKDAChi2's prior (``*_prior`` maps).

    Returns
    -------
    numpy.ndarray
        (F, W) float64 (eager).
    """
    c1 = np.asarray(c1, dtype=np.float64)
    c2 = np.asarray(total, dtype=np.float64)[None, :] - c1
    n2 = n_total - n1
    stat, desc = target.split("_desc-", 1)
    if stat == "prob":
        return prob_map(desc, c1, c2, n1, n2, prior)
    chi2, sign = chi2_test(desc, c1, c2, n1, n2, mean1, mean2)
    return chi2_stat_maps(chi2, sign, (stat,))[stat]


def _maps_task(spec: _MapSpec, counts_total, extra) -> np.ndarray:
    counts, total = counts_total
    n_feat, width = counts.shape
    out = np.empty((n_feat, width), dtype=np.float32)
    step = max(1, _SLICE_ELEMENTS // max(1, width))
    extra = extra or {}
    for f0 in range(0, n_feat, step):
        f1 = min(n_feat, f0 + step)
        if spec.kind == "density":
            offsets = extra["offsets"][f0:f1, None]
            out[f0:f1] = extra["table"][offsets + counts[f0:f1]]
            continue
        n1 = spec.n_selected[f0:f1, None]
        m1 = extra["mean1"][f0:f1, None] if "mean1" in extra else None
        m2 = extra["mean2"][f0:f1, None] if "mean2" in extra else None
        vals = pairwise_map_block(
            spec.target, counts[f0:f1], total, n1, spec.n_total, m1, m2, spec.prior
        )
        out[f0:f1] = _result_dtype(spec.target, vals)
    return out


# ---------------------------------------------------------------------------------- graph
def blocked_feature_maps(
    studyset: Studyset,
    kernel,
    indicator: sp.csr_matrix,
    target: str,
    kind: str,
    chunks: dict[str, int],
    prior: float | None = 0.5,
) -> da.Array:
    """The (features x voxels) maps of every feature at once, as a lazy Dask array.

    Parameters
    ----------
    studyset : Studyset
        The analyses (rows of ``indicator``), on the grid of the maps.
    kernel : KernelTransformer
        MA kernel; an analysis is active at a voxel where its MA value is > 0.
    indicator : scipy.sparse matrix
        (n_analyses, n_features) label indicators (non-zero = selected).
    target : str
        The map (:data:`PAIRWISE_TARGETS` for ``kind="pairwise"``, :data:`DENSITY_TARGETS`
        for ``kind="density"``).
    kind : {"pairwise", "density"}
        MKDAChi2 (selected vs the other analyses) or MKDADensity with uniform weights
        (selected analyses only).
    chunks : dict
        From :func:`resolve_chunks`.
    prior : float or None
        MKDAChi2's prior (for ``prob_desc-*_prior``).

    Returns
    -------
    dask.array.Array
        (n_features, n_voxels) float32, one chunk of all features per voxel chunk (lazy).
    """
    if kind == "pairwise" and target not in PAIRWISE_TARGETS:
        raise ValueError(f"unknown MKDAChi2 map {target!r}; choose from {list(PAIRWISE_TARGETS)}")
    if kind == "density" and target not in DENSITY_TARGETS:
        raise ValueError(f"unknown MKDADensity map {target!r}; choose from {DENSITY_TARGETS}")
    if target.endswith("_prior") and not prior:
        raise ValueError(f"{target!r} needs MKDAChi2's prior; this estimator has prior={prior!r}")
    grid = studyset.grid
    n_vox = grid.n_voxels
    indicator = sp.csr_matrix(indicator)
    n_rows, n_feat = indicator.shape
    if n_rows != len(studyset):
        raise ValueError(f"indicator has {n_rows} rows but the studyset {len(studyset)} analyses")
    width = chunks["voxel"]
    vbounds = list(range(0, n_vox, width)) + [n_vox]
    n_vchunks = len(vbounds) - 1
    per = chunks["analysis"]
    abounds = list(range(0, n_rows, per)) + [n_rows]
    token = tokenize(
        kernel.cache_key(studyset), indicator.indptr, indicator.indices, target, kind, chunks
    )
    ma_name = f"decode-ma-{token}"
    counts_name = f"decode-counts-{token}"
    maps_name = f"decode-zmaps-{token}"
    ctx_key = f"decode-context-{token}"
    dsk: dict = {ctx_key: _MAContext(kernel, grid, width, n_vchunks)}
    # neither the foci nor the labels are copied into the tasks: each decode-ma task reads its
    # foci from the studyset's store (or from one table shared by all of them), and the labels
    # are one key (scattered to the cluster under distributed)
    blocks = foci_blocks(studyset, abounds, "decode-ma", grid)
    labels = shared(_Labels(indicator), "decode-labels", token)
    lab_key = labels.key
    for i, block in enumerate(blocks):
        dsk[(ma_name, i)] = (_ma_task, ctx_key, block.key)
        for j in range(n_vchunks):
            dsk[(f"{ma_name}-piece", i, j)] = (_ma_piece, (ma_name, i), j)
    n_achunks = len(abounds) - 1
    row0s = tuple(abounds[:-1])
    for j in range(n_vchunks):
        w = vbounds[j + 1] - vbounds[j]
        pieces = [(f"{ma_name}-piece", i, j) for i in range(n_achunks)]
        dsk[(counts_name, j)] = (_counts_task, lab_key, w, row0s, *pieces)
    needs_cov = kind == "density" or target.split("_desc-", 1)[-1] in (
        "uniformity",
        "group1",
        "group2",
    )
    spec = _MapSpec(
        kind=kind,
        target=target,
        n_selected=np.asarray(indicator.getnnz(axis=0), dtype=np.float64),
        n_total=n_rows,
        n_voxels=n_vox,
        prior=prior,
        value=float(getattr(kernel, "value", 1.0)),
        needs_coverage=needs_cov,
    )
    spec_key = f"decode-spec-{token}"
    dsk[spec_key] = spec
    extra_key = None
    if needs_cov:
        cov_key = f"decode-coverage-{token}"
        dsk[cov_key] = (_coverage_task, *[(ma_name, i) for i in range(n_achunks)])
        extra_key = f"decode-nulls-{token}"
        dsk[extra_key] = (_nulls_task, spec_key, lab_key, cov_key)
    for j in range(n_vchunks):
        dsk[(maps_name, 0, j)] = (_maps_task, spec_key, (counts_name, j), extra_key)
    graph = HighLevelGraph.from_collections(maps_name, dsk, dependencies=(*blocks, labels))
    vchunks = tuple(vbounds[j + 1] - vbounds[j] for j in range(n_vchunks))
    return da.Array(graph, maps_name, chunks=((n_feat,), vchunks), dtype=np.float32)


# ---------------------------------------------------------------------------------- maps
class FeatureMaps:
    """Per-feature maps (feature x voxel) with their provenance, lazy when stored.

    Parameters
    ----------
    maps : xarray.DataArray
        Dims ``("feature", "voxel")``, coordinate ``feature``; dask- or numpy-backed.
    grid : Grid
        The voxel grid of the maps.
    info : dict, optional
        Provenance (estimator, target image, features, threshold, fingerprints...).
    location : str, optional
        ``<store>/<group>`` where the maps are stored (None when in memory).

    Notes
    -----
    :meth:`correlate` reads every map once, chunk by chunk, so its memory is bounded by the
    chunk size whatever the number of features.
    """

    def __init__(
        self,
        maps: xr.DataArray,
        grid: Grid,
        info: dict | None = None,
        location: str | None = None,
    ):
        if maps.dims != ("feature", "voxel"):
            raise ValueError(f"maps must have dims ('feature', 'voxel'), got {maps.dims}")
        if maps.sizes["voxel"] != grid.n_voxels:
            raise ValueError(f"maps have {maps.sizes['voxel']} voxels but the grid {grid.n_voxels}")
        self.maps = maps
        self.grid = grid
        self.info = dict(info or {})
        self.location = location

    @property
    def features(self) -> list[str]:
        """Feature names, in map order."""
        return [str(f) for f in self.maps["feature"].values]

    @property
    def n_features(self) -> int:
        """Number of maps."""
        return int(self.maps.sizes["feature"])

    @property
    def is_lazy(self) -> bool:
        """True when the maps are dask-backed (e.g. read from a store)."""
        return isinstance(self.maps.data, da.Array)

    def __repr__(self) -> str:
        where = self.location or "in memory"
        target = self.info.get("target_image", "?")
        return f"FeatureMaps({self.n_features} features, target={target!r}, {where})"

    def get_map(self, feature: str, return_type: str = "image"):
        """One feature's map as a NIfTI image or a 1-D array (eager).

        Parameters
        ----------
        feature : str
            Feature name.
        return_type : {"image", "array"}

        Returns
        -------
        nibabel.Nifti1Image or numpy.ndarray
        """
        names = pd.Index(self.features)
        pos = names.get_indexer([feature])[0]
        if pos < 0:
            raise KeyError(f"no feature map named {feature!r} (features: {self.features[:5]}...)")
        values = np.asarray(self.maps[pos].values, dtype=np.float32)
        if return_type == "array":
            return values
        if return_type != "image":
            raise ValueError(f'return_type must be "image" or "array", not {return_type!r}')
        return self.grid.to_image(np.nan_to_num(values, nan=0.0))

    def to_result(self, estimator=None) -> MetaResult:
        """The maps as a :class:`MetaResult` (one map per feature; lazy where stored).

        Returns
        -------
        MetaResult
        """
        maps = {name: self.maps[i] for i, name in enumerate(self.features)}
        return MetaResult(estimator=estimator, grid=self.grid, maps=maps)

    def correlate(self, img, n_cores: int | None = None) -> pd.DataFrame:
        """Pearson r between an image and every feature map, in one pass over the maps.

        Parameters
        ----------
        img : nibabel image, path, or 1-D array
            The map to decode; images are masked (resampled if needed) onto :attr:`grid`
            as float32, as NiMARE's masker does.
        n_cores : int, optional
            Threads of the local scheduler when no Dask scheduler is configured.

        Returns
        -------
        pandas.DataFrame
            Index ``feature``, column ``r`` (float64), in map order (eager). A constant map
            gives NaN, as in NiMARE.
        """
        r = pearson_r(self.maps.data, img, self.grid, n_cores=n_cores)
        out = pd.DataFrame({"r": r}, index=pd.Index(self.features, name="feature"))
        return out

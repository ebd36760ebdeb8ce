"""CBMA estimators of the ALE family: ALE, ALESubtraction, SCALE.

ALE (Turkeltaub et al. 2002, 2012; Eickhoff et al. 2009, 2012): each study's foci are blurred
into a modelled-activation (MA) map, the voxel-wise maximum over its foci; the ALE statistic is
the union ``1 - prod_i (1 - MA_i)``, computed as ``1 - exp(sum_i log1p(-MA_i))`` by a
chunk/combine reduction over studies (so any chunking gives the same answer). p-values come from
the approximate null of Eickhoff et al. (2012): per-study histograms of MA values combined by the
nearest-bin product convolution (:mod:`nimare_dask.stats.nulls`), exactly as NiMARE 0.22.1.

The union and the histograms come from one pass over each chunk's MA maps
(:mod:`nimare_dask.meta.cbma.chunkstats`) rather than from ``kernel.reduce("log1m")``, whose
float64 logarithm differs from NiMARE's float32 one by an ulp often enough to move ALE values
across histogram bins; SCALE, whose null is random anyway, uses the kernel's reductions.
"""

from __future__ import annotations

import os
from functools import partial

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from nimare_dask import __version__
from nimare_dask.kernels import ALEKernel
from nimare_dask.meta.base import CBMAEstimator, PairwiseCBMAEstimator
from nimare_dask.meta.cbma.chunkstats import ale_chunk_stats
from nimare_dask.results import MetaResult
from nimare_dask.stats.nulls import ale_histogram_bins, ale_null_from_histograms, nullhist_to_p
from nimare_dask.stats.transforms import nlogp_to_logp, p_to_logp, p_to_z

__all__ = ["ALE", "ALESubtraction", "SCALE"]

_NULL_KEYS = ("histogram_bins", "histweights_corr-none_method-approximate")


def _ale_stat(log1m) -> np.ndarray:
    """ALE from the summed ``log(1 - MA)``: float64 union, stored as float32."""
    return (1.0 - np.exp(np.asarray(log1m, dtype=np.float64))).astype(np.float32)


def _approximate_maps(stat, counts, row_max, n_voxels, n_threads=1):
    """stat/p/z/logp maps and the null histogram from computed per-study histograms."""
    bins = ale_histogram_bins(row_max)
    weights = ale_null_from_histograms(counts, n_voxels, bins, n_threads=n_threads)
    p = nullhist_to_p(stat, weights, bins)
    maps = {
        "stat": stat,
        "p": p,
        "z": p_to_z(p, tail="one"),
        "logp": nlogp_to_logp(-np.log(p)),
    }
    nulls = {_NULL_KEYS[0]: bins, _NULL_KEYS[1]: weights}
    return maps, nulls


def _n_threads(n_cores) -> int:
    if n_cores is None or n_cores <= 0:
        return max(1, os.cpu_count() or 1)
    return int(n_cores)


def _n_foci(studyset) -> int:
    return int(studyset.foci_counts().sum())


def _sample_size_text(kernel, studyset) -> str:
    if getattr(kernel, "fwhm", 1) is None and getattr(kernel, "sample_size", 1) is None:
        total = np.nansum(studyset.sample_sizes)
        return f", with a total of {int(total)} participants"
    return ""


_ALE_CITE = "\\citep{turkeltaub2002meta,turkeltaub2012minimizing,eickhoff2012activation}"
_TOOL = (
    f"nimare_dask {__version__}, a reimplementation of NiMARE \\citep{{salo2023nimare}} on "
    "Dask and Zarr"
)


class ALE(CBMAEstimator):
    """Activation likelihood estimation.

    Parameters
    ----------
    kernel : ALEKernel, optional
        The MA kernel (default ``ALEKernel()``: width from each analysis's sample size).
        ``kernel__fwhm=10`` style keyword arguments configure it; ``kernel_transformer=`` is
        accepted as an alias.
    null_method : {"approximate", "montecarlo"}
        How stat values become p-values. Only "approximate" (Eickhoff et al., 2012) is
        available in this version.
    n_iters : int, optional
        Iterations of the Monte Carlo null (unused by the approximate null).
    random_state : int, optional
        Seed of random steps (Monte Carlo null and FWE correction).
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured, and of the
        null-histogram convolution (default: all cores).
    mask : str, Grid, image or path, optional
        Analysis mask (default: the studyset's grid).
    chunks : int, optional
        Analyses per task (default: the kernel's dense chunk size, ~64 MB of float32 maps;
        each task builds its analyses' MA maps once, as CSR).

    Notes
    -----
    ``fit`` returns a :class:`~nimare_dask.results.MetaResult` with maps ``stat``, ``p``, ``z``
    (one-tailed) and ``logp`` and null distributions ``histogram_bins`` and
    ``histweights_corr-none_method-approximate``; everything is computed in one
    ``dask.compute``. Analyses without foci are dropped.
    """

    _default_kernel = ALEKernel

    def __init__(
        self,
        kernel=None,
        null_method: str = "approximate",
        n_iters: int | None = None,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.null_method = null_method
        self.n_iters = n_iters
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks

    def _check_null_method(self) -> None:
        if self.null_method == "montecarlo":
            raise NotImplementedError(
                f"{type(self).__name__}(null_method='montecarlo') is not available yet; use "
                "null_method='approximate'"
            )
        if self.null_method != "approximate":
            raise ValueError(
                f"null_method must be 'approximate' or 'montecarlo'; got {self.null_method!r}"
            )

    def fit(self, studyset) -> MetaResult:
        """Fit the estimator to a studyset.

        Parameters
        ----------
        studyset : Studyset or str or Path
            An in-memory studyset, one opened from a store, or the path of a store.

        Returns
        -------
        MetaResult
            Computed maps ``stat``, ``p``, ``z``, ``logp`` (float32); also kept as
            ``self.result_``.
        """
        self._check_null_method()
        ss = self._prepare(studyset)
        self._check_sample_sizes(ss)
        (log1m, counts, row_max) = self._compute(ale_chunk_stats(self.kernel, ss, self.chunks))[0]
        maps, nulls = _approximate_maps(
            _ale_stat(log1m), counts, row_max, ss.grid.n_voxels, _n_threads(self.n_cores)
        )
        self.null_distributions_ = nulls
        description = self._description(ss)
        self.result_ = MetaResult(
            estimator=self,
            grid=ss.grid,
            maps=maps,
            description=description,
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss) -> str:
        return (
            f"An activation likelihood estimation (ALE) meta-analysis {_ALE_CITE} was performed "
            f"with {_TOOL}, using a(n) {self._kernel_name()} kernel. "
            f"{self._kernel_description()} ALE values were converted to p-values using an "
            "approximate null distribution \\citep{eickhoff2012activation}. The input dataset "
            f"included {_n_foci(ss)} foci from {len(ss)} experiments"
            f"{_sample_size_text(self.kernel, ss)}."
        ).replace("  ", " ")

    def summarystat_threshold(self, p: float) -> float:
        """The ALE value whose approximate-null upper-tail probability first falls to ``p``.

        Parameters
        ----------
        p : float
            Uncorrected p-value (e.g. the cluster-forming 0.001).

        Returns
        -------
        float
        """
        from nimare_dask.stats.nulls import nullhist_to_stat

        nulls = getattr(self, "null_distributions_", None)
        if not nulls:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet")
        return nullhist_to_stat(nulls[_NULL_KEYS[1]], nulls[_NULL_KEYS[0]], p)


class ALESubtraction(PairwiseCBMAEstimator):
    """ALE subtraction: the difference of two groups' ALE maps (Laird et al. 2005).

    Parameters
    ----------
    kernel : ALEKernel, optional
        The MA kernel (``kernel__*`` keyword arguments configure the default).
    n_iters : int
        Permutations of the group labels for the difference's p-values.
    voxel_thresh : float
        Cluster-forming uncorrected p for cluster-level inference.
    vfwe_only : bool
        Only voxel-level inference.
    random_state : int, optional
        Seed of the permutations.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.
    mask : str, Grid, image or path, optional
        Analysis mask (default: the first studyset's grid).
    chunks : int, optional
        Analyses per chunk of the lazy MA maps.

    Notes
    -----
    ``fit(studyset1, studyset2)`` gives ``stat_desc-group1MinusGroup2`` (ALE(group 1) -
    ALE(group 2) over the whole mask) and each group's one-sample maps
    ``stat/p/z/logp_desc-group{1,2}`` (approximate null), in one ``dask.compute``.
    The p, z and logp maps of the difference need the label-permutation null, which is not
    available in this version: they are not produced, and asking for inference that needs the
    permutations (``vfwe_only=False``, inference maps, :meth:`correct_fwe_montecarlo`) raises
    ``NotImplementedError``.
    """

    _default_kernel = ALEKernel

    def __init__(
        self,
        kernel=None,
        n_iters: int = 5000,
        voxel_thresh: float = 0.001,
        vfwe_only: bool = True,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.n_iters = n_iters
        self.voxel_thresh = voxel_thresh
        self.vfwe_only = vfwe_only
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks

    def fit(self, studyset1, studyset2, inference_map1=None, inference_map2=None) -> MetaResult:
        """Fit the subtraction to two studysets.

        Parameters
        ----------
        studyset1, studyset2 : Studyset or str or Path
            The two groups (in-memory, opened from a store, or store paths).
        inference_map1, inference_map2 : array_like, optional
            Directional inference masks (need the permutation null: not available yet).

        Returns
        -------
        MetaResult
            Computed maps ``stat_desc-group1MinusGroup2`` and ``stat/p/z/logp_desc-group1``,
            ``..._desc-group2`` (float32); also kept as ``self.result_``.
        """
        if inference_map1 is not None or inference_map2 is not None:
            raise NotImplementedError(
                "ALESubtraction with inference maps needs the label-permutation null, which is "
                "not available yet"
            )
        if not self.vfwe_only:
            raise NotImplementedError(
                "ALESubtraction(vfwe_only=False) needs cluster nulls from label permutations, "
                "which are not available yet"
            )
        ss1 = self._prepare(studyset1, "studyset1")
        ss2 = self._prepare(studyset2, "studyset2")
        if not ss1.grid.same_as(ss2.grid):
            raise ValueError("ALESubtraction: the two studysets are on different grids")
        for ss, label in ((ss1, "studyset1"), (ss2, "studyset2")):
            self._check_sample_sizes(ss, label)
        (log1m1, c1, m1), (log1m2, c2, m2) = self._compute(
            ale_chunk_stats(self.kernel, ss1, self.chunks),
            ale_chunk_stats(self.kernel, ss2, self.chunks),
        )
        n_vox = ss1.grid.n_voxels
        n_threads = _n_threads(self.n_cores)
        stat1, stat2 = _ale_stat(log1m1), _ale_stat(log1m2)
        maps = {"stat_desc-group1MinusGroup2": stat1 - stat2}
        nulls = {}
        for label, stat, counts, row_max in (("group1", stat1, c1, m1), ("group2", stat2, c2, m2)):
            group_maps, group_nulls = _approximate_maps(stat, counts, row_max, n_vox, n_threads)
            maps.update({f"{k}_desc-{label}": v for k, v in group_maps.items()})
            nulls.update({f"{k}_desc-{label}": v for k, v in group_nulls.items()})
        self.null_distributions_ = nulls
        self.result_ = MetaResult(
            estimator=self,
            grid=ss1.grid,
            maps=maps,
            description=self._description(ss1, ss2),
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss1, ss2) -> str:
        return (
            "An activation likelihood estimation (ALE) subtraction analysis "
            f"\\citep{{laird2005ale,eickhoff2012activation}} was performed with {_TOOL}, using "
            f"a(n) {self._kernel_name()} kernel. {self._kernel_description()} ALE-difference "
            "scores (group 1 minus group 2) were calculated for all voxels in the mask. Each "
            "group's ALE values were converted to p-values using an approximate null "
            "distribution \\citep{eickhoff2012activation}. The first input dataset (group1) "
            f"included {_n_foci(ss1)} foci from {len(ss1)} experiments"
            f"{_sample_size_text(self.kernel, ss1)}. The second input dataset (group2) included "
            f"{_n_foci(ss2)} foci from {len(ss2)} experiments"
            f"{_sample_size_text(self.kernel, ss2)}."
        ).replace("  ", " ")

    def correct_fwe_montecarlo(self, *args, **kwargs):
        """Permutation-based FWE correction of the difference (not available yet)."""
        raise NotImplementedError(
            "ALESubtraction's permutation null (p/z of the group difference and its FWE "
            "correction) is not available yet"
        )


def _scale_block(
    stat, start, stop, *, entropy, pool_ijk, rows, n_rows, grid, sample_sizes, kernel, row_block
):
    """Exceedance counts of iterations ``start..stop-1`` of the SCALE null (uint32 over voxels).

    Iteration ``i`` draws every focus from the pool with
    ``default_rng(SeedSequence(entropy, spawn_key=(i,)))``, so the null does not depend on how
    iterations are grouped into blocks.
    """
    stat = np.asarray(stat, dtype=np.float32)
    counts = np.zeros(grid.n_voxels, dtype=np.uint32)
    # foci are grouped by row (analysis order), so row ranges are focus ranges
    starts = np.arange(0, n_rows, row_block)
    bounds = np.searchsorted(rows, np.append(starts, n_rows))
    for i in range(start, stop):
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(i,)))
        ijk = pool_ijk[rng.integers(pool_ijk.shape[0], size=rows.shape[0])]
        acc = None
        for b, r0 in enumerate(starts):
            r1 = min(n_rows, r0 + row_block)
            f0, f1 = bounds[b], bounds[b + 1]
            part = kernel.reduce_block(
                ijk[f0:f1], rows[f0:f1] - r0, r1 - r0, grid, sample_sizes[r0:r1], how="log1m"
            )
            acc = part if acc is None else acc + part
        perm = _ale_stat(acc)
        counts += perm >= stat
    return counts


def _sum_counts(parts):
    out = parts[0].astype(np.int64)
    for p in parts[1:]:
        out += p
    return out


class SCALE(CBMAEstimator):
    """Specific coactivation likelihood estimation (Langner et al. 2014).

    ALE values tested against a voxel-wise null in which every focus is moved to a random
    coordinate of a reference pool (``xyz``, e.g. all foci of a database), preserving each
    study's number of foci and sample size.

    Parameters
    ----------
    xyz : numpy.ndarray
        (N, 3) reference pool of coordinates in mm.
    n_iters : int
        Iterations of the null.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.
    kernel : ALEKernel, optional
        The MA kernel (``kernel__*`` keyword arguments configure the default).
    random_state : int, optional
        Seed of the null. Iteration ``i`` uses
        ``np.random.default_rng(np.random.SeedSequence(random_state, spawn_key=(i,)))``, so
        the result does not depend on chunking or workers. None draws fresh entropy at each
        fit (kept in ``seed_``).
    mask : str, Grid, image or path, optional
        Analysis mask (default: the studyset's grid).
    chunks : int, optional
        Analyses per chunk of the lazy MA maps.
    iters_per_block : int
        Iterations per Dask task.

    Notes
    -----
    Maps: ``stat``, ``p`` (which NiMARE does not return), ``z`` (one-tailed) and ``logp``.
    p = #(null >= observed) / n_iters, clipped to ``[1/n_iters, 1 - 1/n_iters]``.
    """

    _default_kernel = ALEKernel

    def __init__(
        self,
        xyz,
        n_iters: int = 5000,
        n_cores: int | None = None,
        kernel=None,
        random_state: int | None = None,
        mask=None,
        chunks: int | None = None,
        iters_per_block: int = 25,
        **kwargs,
    ):
        self.xyz = xyz
        self.n_iters = n_iters
        self.n_cores = n_cores
        self._init_kernel(kernel, kwargs)
        self.random_state = random_state
        self.mask = mask
        self.chunks = chunks
        self.iters_per_block = iters_per_block

    def _pool(self) -> np.ndarray:
        xyz = self.xyz
        if not isinstance(xyz, np.ndarray):
            raise TypeError(f"SCALE: xyz must be a numpy.ndarray, not {type(xyz).__name__}")
        if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
            raise ValueError(f"SCALE: xyz must have shape (N, 3) with N >= 1; got {xyz.shape}")
        if not np.isfinite(xyz).all():
            raise ValueError("SCALE: xyz has missing or non-finite coordinates")
        return xyz

    def fit(self, studyset) -> MetaResult:
        """Fit SCALE to a studyset.

        Parameters
        ----------
        studyset : Studyset or str or Path
            An in-memory studyset, one opened from a store, or the path of a store.

        Returns
        -------
        MetaResult
            Computed maps ``stat``, ``p``, ``z``, ``logp`` (float32); also ``self.result_``.
        """
        xyz = self._pool()
        n_iters = int(self.n_iters)
        if n_iters < 1:
            raise ValueError(f"SCALE: n_iters must be >= 1; got {self.n_iters}")
        ss = self._prepare(studyset)
        self._check_sample_sizes(ss)
        grid = ss.grid
        pool_ijk = grid.mm_to_ijk(xyz).astype(np.int64)
        entropy = (
            int(self.random_state)
            if self.random_state is not None
            else int(np.random.SeedSequence().entropy)
        )
        self.seed_ = entropy
        log1m = self.kernel.reduce(ss, "log1m", chunks=self.chunks)
        stat = da.map_blocks(_ale_stat, log1m.data, dtype=np.float32)
        rows = ss.focus_rows().astype(np.int64)
        if np.any(np.diff(rows) < 0):
            raise RuntimeError("SCALE: foci are not grouped by analysis")  # Studyset invariant
        sample_sizes = ss.sample_sizes
        n_rows = len(ss)
        row_block = 512  # analyses per reduce_block call (bounds the per-call plan size)
        step = max(1, int(self.iters_per_block))
        token = tokenize(self.kernel.cache_key(ss), entropy, n_iters, xyz)
        # the static inputs travel in one partial (not traversed or re-hashed by dask)
        run = dask.delayed(
            partial(
                _scale_block,
                entropy=entropy,
                pool_ijk=pool_ijk,
                rows=rows,
                n_rows=n_rows,
                grid=grid,
                sample_sizes=sample_sizes,
                kernel=self.kernel,
                row_block=row_block,
            ),
            pure=True,
            traverse=False,
            name=f"scale-null-inputs-{token}",
        )
        blocks = [
            run(
                stat,
                start,
                min(start + step, n_iters),
                dask_key_name=f"scale-null-block-{token}-{start}",
            )
            for start in range(0, n_iters, step)
        ]
        counts = dask.delayed(_sum_counts, pure=True)(
            blocks, dask_key_name=f"scale-null-combine-{token}"
        )
        stat, counts = self._compute(stat, counts)
        # as NiMARE: float32 fractions, clipped away from 0 and 1
        p = counts.astype(np.float32) / n_iters
        smallest = 1.0 / n_iters
        p = np.maximum(smallest, np.minimum(p, 1.0 - smallest)).astype(np.float32)
        maps = {"stat": stat, "p": p, "z": p_to_z(p, tail="one"), "logp": p_to_logp(p)}
        self.null_distributions_ = {}
        self.result_ = MetaResult(
            estimator=self,
            grid=grid,
            maps=maps,
            description=self._description(ss),
        )
        return self.result_

    def _description(self, ss) -> str:
        return (
            "A specific coactivation likelihood estimation (SCALE) meta-analysis "
            f"\\citep{{langner2014meta}} was performed with {_TOOL}, with {self.n_iters} "
            "iterations, using a(n) "
            f"{self._kernel_name()} kernel. {self._kernel_description()} In each iteration "
            f"every focus was replaced by a coordinate drawn at random from a pool of "
            f"{len(self.xyz)} coordinates, and voxel-wise p-values are the fraction of "
            "iterations with an ALE value at least as large as the observed one. The input "
            f"dataset included {_n_foci(ss)} foci from {len(ss)} experiments"
            f"{_sample_size_text(self.kernel, ss)}."
        ).replace("  ", " ")

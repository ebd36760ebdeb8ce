"""ResampledStability: how often each voxel survives when the studyset is resampled.

NiMARE 0.22.1's ``diagnostics.ResampledStability`` for CBMA estimators follows JALE (Frahm et
al.): the studyset is resampled (leave one out, leave k out, or subsamples of ``target_n``
analyses), each replicate's ALE map is tested against the *full* studyset's approximate null,
thresholded at an uncorrected ``voxel_thresh`` and at one cluster-size threshold, and the
stability map ``<target>_diag-ResampledStability`` is the fraction of replicates in which each
voxel survives. The cluster-size threshold is the ``(1 - alpha)`` quantile of the largest
cluster of ``n_iters`` random-foci datasets of ``target_n`` analyses (random analyses, their
foci at random grey-matter voxels, ``mask_coverage="gm"``).

The numbers are NiMARE's: the replicate schedule and the Monte Carlo draws come from NiMARE's
``numpy.random.RandomState(random_state)`` streams, every ALE map sums ``log(1 - MA)`` over its
analyses in row order in float64 as NiMARE does, z values and thresholds compare as NiMARE's.

How it runs: one Dask graph. The MA maps of the studyset are built once (one task per chunk of
analyses, as sparse rows) and shared by every replicate task; the full-data null is built once
from per-analysis histograms; the Monte Carlo null runs in blocks of iterations, each block
restarting NiMARE's random stream from a state recorded when the driver advanced it (so any
block size or number of workers gives the same draws); the replicates run in blocks that each
return the count of replicates in which each voxel survived (integer counts: the sum is the same
in any order). Everything is one ``dask.compute`` (the active ``distributed`` client if any).
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Any

import dask
import numpy as np
import pandas as pd
from numba import njit
from scipy.stats import norm

from nimare_dask.diagnostics.base import Diagnostics
from nimare_dask.kernels.foci import shared
from nimare_dask.meta.base import compute
from nimare_dask.meta.cbma import ALE
from nimare_dask.meta.cbma import _mc_numba as mc
from nimare_dask.meta.cbma.balanced_kernels import AleUnion
from nimare_dask.meta.cbma.chunkstats import ale_chunk_stats, per_chunk
from nimare_dask.results import MetaResult
from nimare_dask.stats.clusters import label_clusters, max_stats_of_supra, neighbours
from nimare_dask.stats.nulls import (
    _nearest_bin,
    ale_histogram_bins,
    ale_null_from_histograms,
    histogram_bin_of,
    nullhist_p_table,
)
from nimare_dask.stats.transforms import p_to_z

__all__ = ["ResampledStability", "resolve_subset_size", "subset_schedule"]

_POLICIES = ("subsample", "leave_1_out", "leave_k_out")
#: Largest schedule enumerated when ``n_resamples`` is None (NiMARE's ``exhaustive_limit``).
EXHAUSTIVE_LIMIT = 1000
_DEFAULT_N_ITERS = 5000
_ITERS_PER_BLOCK = 100
_REPLICATES_PER_BLOCK = 8


# ---------------------------------------------------------------------------- schedule
def resolve_subset_size(policy: str, total_n: int, k: int | None = None, target_n=None) -> int:
    """Analyses kept per replicate under a resampling policy (NiMARE's rule).

    Parameters
    ----------
    policy : {"subsample", "leave_1_out", "leave_k_out"}
    total_n : int
        Analyses in the studyset.
    k : int, optional
        Analyses left out (``"leave_k_out"``).
    target_n : int, optional
        Analyses kept (``"subsample"``; default ``total_n``).

    Returns
    -------
    int
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if policy == "leave_1_out":
        return total_n - 1
    if policy == "leave_k_out":
        if k is None:
            raise ValueError("resampling_policy='leave_k_out' requires k.")
        if not 0 < k < total_n:
            raise ValueError(f"k must be between 1 and {total_n - 1}; got {k}.")
        return total_n - int(k)
    if policy == "subsample":
        n = target_n if target_n is not None else total_n
        if not 0 < n <= total_n:
            raise ValueError(f"target_n must be between 1 and {total_n}; got {n}.")
        return int(n)
    raise ValueError(f"resampling_policy must be one of {', '.join(_POLICIES)}; got {policy!r}")


def subset_schedule(
    total_n: int, target_n: int, n_samples: int | None = None, random_state: int | None = None
) -> list[np.ndarray]:
    """Retained-analysis index subsets, NiMARE's schedule.

    Leave-one-out when ``target_n == total_n - 1``; every combination when they number at most
    1,000 and ``n_samples`` does not ask for fewer; otherwise ``n_samples`` unique sorted
    subsets drawn with ``RandomState(random_state).choice``, returned in sorted order.

    Returns
    -------
    list of numpy.ndarray
        int32 sorted index arrays (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if not 0 < target_n <= total_n:
        raise ValueError(f"target_n must be between 1 and total_n ({total_n}); got {target_n}.")
    if target_n == total_n - 1:
        return [np.delete(np.arange(total_n), i).astype(np.int32) for i in range(total_n)]
    n_max = comb(total_n, target_n)
    if n_samples is None:
        if n_max > EXHAUSTIVE_LIMIT:
            raise ValueError(
                f"{n_max} subsets of {target_n} of {total_n} analyses are too many to enumerate; "
                "set n_resamples to sample a subset of them."
            )
        n_samples = n_max
    else:
        n_samples = min(int(n_samples), n_max)
    if n_samples == n_max and n_max <= EXHAUSTIVE_LIMIT:
        return [np.asarray(c, dtype=np.int32) for c in combinations(range(total_n), target_n)]
    rng = np.random.RandomState(random_state)
    subsets: set[tuple] = set()
    while len(subsets) < n_samples:
        subsets.add(tuple(np.sort(rng.choice(total_n, size=target_n, replace=False))))
    return [np.asarray(s, dtype=np.int32) for s in sorted(subsets)]


# ---------------------------------------------------------------------------- tasks
def _csr_of_chunk(csr, n_voxels):
    return csr


def _stack(parts):
    import scipy.sparse as sp

    out = sp.vstack(parts, format="csr")
    out.sort_indices()
    return out


def _z_table(stats, n_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins and float32 z per bin (last entry: stat <= 0) of the full studyset's ALE null."""
    _, counts, row_max = stats
    bins = ale_histogram_bins(row_max)
    weights = ale_null_from_histograms(counts, n_voxels, bins)
    _, p_table = nullhist_p_table(np.zeros(0), weights, bins)
    return bins, p_to_z(p_table, tail="one").astype(np.float32)


def _z_of_rows(csr, null) -> np.ndarray:
    """float32 z of the ALE of the CSR's rows (summed in row order, as NiMARE)."""
    bins, z_table = null
    log_sums = np.bincount(csr.indices, weights=np.log1p(-csr.data), minlength=csr.shape[1])
    stat = (1.0 - np.exp(log_sums)).astype(np.float32)
    rows = histogram_bin_of(stat, bins)
    rows[~(stat > 0)] = bins.size
    return z_table[rows]


def _surviving(z, nbrs, z_thr: float, size_thr: float | None) -> tuple[np.ndarray, int]:
    """Voxels of clusters of ``z > z_thr`` larger than ``size_thr`` (strict) and the largest
    cluster's size (NiMARE's ``_threshold_z_clusters``; 6-connected)."""
    cl = label_clusters(z, nbrs, z_thr)
    biggest = int(cl.sizes.max(initial=0))
    if size_thr is None:
        return np.zeros(0, dtype=bool), biggest
    keep = np.concatenate([[False], cl.sizes > size_thr])
    return keep[cl.labels], biggest


def _replicate_block(csr, null, size_thr, subsets, nbrs, z_thr) -> np.ndarray:
    """Number of replicates (of this block) in which each voxel survives (int32)."""
    counts = np.zeros(csr.shape[1], dtype=np.int32)
    for idx in subsets:
        z = _z_of_rows(csr[np.asarray(idx)], null)
        support, _ = _surviving(z, nbrs, z_thr, float(size_thr))
        counts += support
    return counts


def _sum_counts(parts) -> np.ndarray:
    out = np.zeros_like(parts[0], dtype=np.int64)
    for p in parts:
        out += p
    return out


@njit(nogil=True, cache=True)
def _largest_good_cluster(acc, flagged, good, inv_step, nbrs, cl_scratch, idx_buf, val_buf):
    """Largest 6-connected cluster of voxels whose ALE ``float32(1 - exp(acc))`` falls in a
    bin with ``good[bin]`` (z above the cluster-forming threshold); candidates are the voxels
    of the ``flagged`` chunks below the bound of :func:`_good_bound`. Zeroes nothing."""
    n = acc.shape[0]
    n_bins = good.shape[0]
    m = 0
    for c in range(flagged.shape[0]):
        for v in range(flagged[c], min(n, flagged[c] + mc.CHUNK)):
            a = acc[v]
            if a < 0.0:
                s = np.float64(np.float32(1.0 - np.exp(a)))
                if s > 0.0 and good[_nearest_bin(s, inv_step, n_bins)]:
                    idx_buf[m] = v
                    val_buf[m] = s
                    m += 1
    if m == 0:
        return 0
    size, _ = max_stats_of_supra(idx_buf[:m], val_buf[:m], nbrs, 0.0, cl_scratch)
    return size


def _good_bins(null, z_thr: float) -> tuple[np.ndarray, float, float]:
    """Bins whose z exceeds ``z_thr``, ``1 / step`` and the ``acc`` bound of the candidates
    (voxels with ``acc < bound`` may fall in a good bin; ``+inf`` when none can be small)."""
    bins, z_table = null
    good = np.asarray(z_table[: bins.size], dtype=np.float64) > z_thr
    inv_step = float(1 / (bins[1] - bins[0]))
    if not good.any():
        return good, inv_step, -np.inf
    # lowest ALE value that rounds into the first good bin, minus a margin far wider than
    # float32 rounding; its log1p(-.) (plus a margin) bounds acc = sum log(1 - MA)
    s_lo = (np.flatnonzero(good)[0] - 0.5) / inv_step - 1e-6
    bound = float(np.log1p(-s_lo)) + 1e-6 if s_lo > 0 else np.inf
    return good, inv_step, bound


def _null_block(state, n_iter, null, kernel, grid, pool, nsub, nfoci, target_n, nbrs, z_thr):
    """Largest cluster of ``n_iter`` random-foci datasets, continuing NiMARE's stream.

    Each dataset's ALE map is accumulated in numba straight from its foci (bit for bit the sum
    of :func:`_z_of_rows`), and only voxels near the cluster-forming bin are evaluated.
    """
    if z_thr < float(null[1][-1]):  # every voxel survives (not a realistic threshold)
        return _null_block_csr(
            state, n_iter, null, kernel, grid, pool, nsub, nfoci, target_n, nbrs, z_thr
        )
    rng = np.random.RandomState()
    rng.set_state(state)
    out = np.zeros(n_iter, dtype=np.int64)
    n = len(nfoci)
    union = AleUnion(kernel, grid, nsub, nfoci)
    good, inv_step, bound = _good_bins(null, z_thr)
    n_vox = grid.n_voxels
    acc = np.zeros(n_vox)
    starts = np.arange(0, n_vox, mc.CHUNK)
    cl_scratch = np.zeros(n_vox, dtype=np.int32)
    idx_buf = np.empty(n_vox, dtype=np.int64)
    val_buf = np.empty(n_vox, dtype=np.float64)
    nbrs = np.ascontiguousarray(nbrs, dtype=np.int32)
    n_pool = pool.shape[0]
    for it in range(n_iter):
        pick = np.arange(n)
        if target_n < n:
            pick = rng.permutation(n)[:target_n]
        foci = nfoci[pick]
        # NiMARE draws one randint per study; the legacy 32-bit bounded draws carry nothing
        # between calls, so one call of the total size gives the same numbers
        ijk = pool[rng.randint(0, n_pool, size=int(foci.sum()))]
        union(ijk, pick, acc)
        if bound > -np.inf:
            _, flagged = mc.scan_chunks(acc, starts, bound, True)
            if flagged.size:
                out[it] = _largest_good_cluster(
                    acc, flagged, good, inv_step, nbrs, cl_scratch, idx_buf, val_buf
                )
    return out


def _null_block_csr(state, n_iter, null, kernel, grid, pool, nsub, nfoci, target_n, nbrs, z_thr):
    """:func:`_null_block` through sparse MA maps (any threshold; slower)."""
    rng = np.random.RandomState()
    rng.set_state(state)
    out = np.zeros(n_iter, dtype=np.int64)
    n = len(nsub)
    for it in range(n_iter):
        sizes, foci = nsub, nfoci
        if target_n < n:
            pick = rng.permutation(n)[:target_n]
            sizes, foci = nsub[pick], nfoci[pick]
        idx = [rng.randint(0, pool.shape[0], size=int(f)) for f in foci]
        ijk = pool[np.concatenate(idx)] if idx else np.zeros((0, 3), np.int64)
        rows = np.repeat(np.arange(len(foci)), foci)
        csr = kernel.csr_block(ijk, rows, len(foci), grid, sizes.astype(np.float64))
        _, out[it] = _surviving(_z_of_rows(csr, null), nbrs, z_thr, None)
    return out


def _threshold(parts, alpha: float) -> float:
    return float(np.percentile(np.concatenate(parts), 100.0 * (1.0 - alpha)))


def _advance(rng: np.random.RandomState, n_iter, n, target_n, nfoci, n_pool) -> None:
    """Draw what :func:`_null_block` draws for ``n_iter`` iterations (results discarded)."""
    for _ in range(n_iter):
        foci = nfoci
        if target_n < n:
            foci = nfoci[rng.permutation(n)[:target_n]]
        rng.randint(0, n_pool, size=int(foci.sum()))  # = one call per study (see _null_block)


# ---------------------------------------------------------------------------- diagnostic
class ResampledStability:
    """Voxel-wise stability of a thresholded ALE result under resampling of its studyset.

    Parameters
    ----------
    target_image : str
        The map whose stability is characterised; names the outputs
        ``<target_image>_diag-ResampledStability`` and ``..._tab-summary``. For CBMA (as in
        NiMARE) each replicate's support is recomputed with the rule above (cluster-level FWE
        at ``voxel_thresh`` and ``alpha``), whatever correction made the target.
    resampling_policy : {"subsample", "leave_1_out", "leave_k_out"}
    k : int, optional
        Analyses left out per replicate (``"leave_k_out"``).
    target_n : int, optional
        Analyses kept per replicate (``"subsample"``; default: all).
    n_resamples : int, optional
        Replicates (None: every subset, at most 1,000 of them, else an error).
    random_state : int, optional
        Seed of NiMARE's ``RandomState`` streams (subset schedule, Monte Carlo null). None:
        a fresh seed, drawn once and recorded in the summary table (column ``seed_used``).
    voxel_thresh : float, optional
        Uncorrected cluster-forming p (None: 0.001); voxels need ``z > Phi^-1(1 - p)``.
    cluster_threshold : int, optional
        A fixed cluster-size threshold in voxels (clusters must be larger): no Monte Carlo
        null is run. None: the Monte Carlo threshold. (NiMARE ignores this parameter for CBMA.)
    mask_coverage : {"gm", "brain"}
        Voxels random foci are drawn from in the Monte Carlo null.
    alpha : float
        FWE level of the Monte Carlo cluster-size threshold.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.
    generate_description : bool
        Append a sentence to the result's methods text.
    n_iters : int, optional
        Monte Carlo iterations (None: the result's corrector's ``n_iters``, else 5000, as
        NiMARE).
    """

    def __init__(
        self,
        target_image: str = "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        resampling_policy: str = "subsample",
        k: int | None = None,
        target_n: int | None = None,
        n_resamples: int | None = None,
        random_state: int | None = None,
        voxel_thresh: float | None = None,
        cluster_threshold: int | None = None,
        mask_coverage: str = "gm",
        alpha: float = 0.05,
        n_cores: int | None = 1,
        generate_description: bool = True,
        n_iters: int | None = None,
    ) -> None:
        if mask_coverage not in ("gm", "brain"):
            raise ValueError("mask_coverage must be 'gm' or 'brain'.")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1; got {alpha}.")
        if resampling_policy not in _POLICIES:
            raise ValueError(
                f"resampling_policy must be one of {', '.join(_POLICIES)}; got "
                f"{resampling_policy!r}"
            )
        if voxel_thresh is not None and not 0 < voxel_thresh < 1:
            raise ValueError(f"voxel_thresh must be a p-value in (0, 1); got {voxel_thresh}")
        if random_state is not None and not isinstance(random_state, int | np.integer):
            raise TypeError(f"random_state must be an int or None, got {type(random_state)}")
        self.target_image = target_image
        self.resampling_policy = resampling_policy
        self.k = k
        self.target_n = target_n
        self.n_resamples = n_resamples
        self.random_state = random_state
        self.voxel_thresh = voxel_thresh
        self.cluster_threshold = cluster_threshold
        self.mask_coverage = mask_coverage
        self.alpha = alpha
        self.n_cores = n_cores
        self.generate_description = generate_description
        self.n_iters = n_iters

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters.

        Returns
        -------
        dict
        """
        names = (
            "target_image resampling_policy k target_n n_resamples random_state voxel_thresh "
            "cluster_threshold mask_coverage alpha n_cores generate_description n_iters"
        ).split()
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _n_iters(self, result: MetaResult) -> int:
        if self.n_iters is not None:
            return int(self.n_iters)
        corrector = result.corrector
        n = getattr(corrector, "n_iters", None) if corrector is not None else None
        if n is None and corrector is None and result.corrector_info:
            n = (result.corrector_info.get("params") or {}).get("n_iters")
        return int(n) if n is not None else _DEFAULT_N_ITERS

    def transform(self, result: MetaResult, studyset=None) -> MetaResult:
        """Resample, refit and threshold; add the stability map and summary table.

        Parameters
        ----------
        result : MetaResult
            An ALE result.
        studyset : Studyset, optional
            The studyset it was fitted on (default: the result's own input).

        Returns
        -------
        MetaResult
            A copy of ``result`` with the map ``<target>_diag-ResampledStability`` (float32,
            the fraction of replicates in which each voxel survives) and the table
            ``<target>_diag-ResampledStability_tab-summary`` (eager: one ``dask.compute``).
        """
        est = result.estimator
        if not isinstance(est, ALE):
            raise NotImplementedError(
                "ResampledStability is implemented for ALE results; got "
                f"{type(est).__name__} (NiMARE also supports MKDADensity, KDA and IBMA)"
            )
        ss = self._studyset(result, studyset)
        total_n = len(ss)
        target_n = resolve_subset_size(self.resampling_policy, total_n, self.k, self.target_n)
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        subsets = subset_schedule(total_n, target_n, self.n_resamples, seed)
        voxel_thresh = self.voxel_thresh or 0.001
        z_thr = float(norm.ppf(1 - voxel_thresh))
        kernel, grid = est.kernel, ss.grid
        nbrs = neighbours(grid)

        ma = per_chunk(kernel, ss, _csr_of_chunk, _stack, "stability-ma", est.chunks)
        null = dask.delayed(_z_table, pure=True)(
            ale_chunk_stats(kernel, ss, est.chunks), grid.n_voxels
        )
        nbrs = shared(nbrs, "stability-neighbours", grid.fingerprint)
        n_iters = 0
        if self.cluster_threshold is None:
            n_iters = self._n_iters(result)
            size_thr = self._null(ss, kernel, grid, null, nbrs, z_thr, target_n, n_iters, seed)
        else:
            size_thr = float(self.cluster_threshold)
        block = dask.delayed(_replicate_block, pure=True)
        parts = [
            block(ma, null, size_thr, subsets[i : i + _REPLICATES_PER_BLOCK], nbrs, z_thr)
            for i in range(0, len(subsets), _REPLICATES_PER_BLOCK)
        ]
        counts, size_thr = compute(
            dask.delayed(_sum_counts, pure=True)(parts), size_thr, n_cores=self.n_cores
        )
        stability = (counts / len(subsets)).astype(np.float32)
        return self._finish(result, stability, subsets, target_n, seed, n_iters, size_thr)

    @staticmethod
    def _studyset(result: MetaResult, studyset):
        """The fitted studyset: given, the result's inputs, or the estimator's last fit when
        that fit produced this result (same ``stat`` map)."""
        if studyset is None and not result.get_inputs(estimator=False):
            est = result.estimator
            last = getattr(est, "result_", None)
            fitted = (getattr(est, "inputs_", None) or {}).get("studyset")
            if fitted is not None and last is not None and "stat" in result.maps_names:
                same = np.array_equal(
                    result.get_map("stat", "array"), last.get_map("stat", "array")
                )
                if same:
                    return fitted
        ss, _ = Diagnostics._studysets(result, studyset, None)
        return ss

    def _null(self, ss, kernel, grid, null, nbrs, z_thr, target_n, n_iters, seed):
        """Lazy Monte Carlo cluster-size threshold (blocks of NiMARE's RandomState stream)."""
        pool = np.ascontiguousarray(
            grid.voxel_ijk[grid.coverage(self.mask_coverage)], dtype=np.int64
        )
        nfoci = np.asarray(ss.foci_counts(), dtype=np.int64)
        # NiMARE draws the random datasets' kernels from integer sample sizes (int32 of the mean)
        nsub = np.trunc(np.asarray(ss.sample_sizes, dtype=np.float64))
        rng = np.random.RandomState(seed)
        shared_pool = shared(pool, "stability-pool", dask.base.tokenize(pool))
        task = dask.delayed(_null_block, pure=True)
        parts = []
        for start in range(0, n_iters, _ITERS_PER_BLOCK):
            n_iter = min(_ITERS_PER_BLOCK, n_iters - start)
            state = rng.get_state()
            parts.append(
                task(
                    state,
                    n_iter,
                    null,
                    kernel,
                    grid,
                    shared_pool,
                    nsub,
                    nfoci,
                    target_n,
                    nbrs,
                    z_thr,
                )
            )
            _advance(rng, n_iter, len(nfoci), target_n, nfoci, pool.shape[0])
        return dask.delayed(_threshold, pure=True)(parts, self.alpha)

    def _finish(self, result, stability, subsets, target_n, seed, n_iters, size_thr):
        out = result.copy()
        name = f"{self.target_image}_diag-ResampledStability"
        out.add_maps({name: stability})
        out.tables[f"{name}_tab-summary"] = pd.DataFrame(
            [
                {
                    "target_image": self.target_image,
                    "resampling_policy": self.resampling_policy,
                    "n_resamples": len(subsets),
                    "target_n": target_n,
                    "k": self.k,
                    "random_state": self.random_state,
                    "seed_used": seed,
                    "voxel_thresh": self.voxel_thresh or 0.001,
                    "cluster_size_threshold": size_thr,
                    "n_iters": n_iters,
                    "alpha": self.alpha,
                    "mask_coverage": self.mask_coverage,
                }
            ]
        )
        out.diagnostics.append(self)
        if self.generate_description:
            out.add_description(self._text(len(subsets), target_n, n_iters, size_thr))
        return out

    def _text(self, n_rep, target_n, n_iters, size_thr) -> str:
        how = {
            "leave_1_out": "leaving out one experiment at a time",
            "leave_k_out": f"leaving out {self.k} experiments at a time",
            "subsample": f"drawing subsamples of {target_n} experiments",
        }[self.resampling_policy]
        if n_iters:
            cut = (
                f"larger than the {100 * (1 - self.alpha):g}th percentile ({size_thr:g} voxels) "
                f"of the largest cluster of {n_iters} datasets of {target_n} experiments whose "
                "foci were placed at random"
            )
        else:
            cut = f"larger than {size_thr:g} voxels"
        vt = self.voxel_thresh or 0.001
        return (
            "Voxel-wise stability of the thresholded result was estimated by resampling the "
            f"input ({how}; {n_rep} replicates): each replicate's ALE map was tested against "
            "the full dataset's approximate null distribution, thresholded at uncorrected "
            f"p < {vt:g} and restricted to clusters {cut}; the stability map is the fraction "
            "of replicates in which each voxel survived, as implemented in JALE "
            "\\citep{Frahm_Monimu_Hoffstaedter}."
        )

"""Block functions of :class:`~nimare_dask.meta.cbma.balanced.BalancedALESubtraction`.

Each pass of the balanced subtraction is a set of independent units run in blocks on the Monte
Carlo engine (:mod:`nimare_dask.montecarlo`: local threads or the active Dask client) over MA
maps computed once per group:

* :class:`ProbBlock` -- units are the subsets of NiMARE's subset schedule (no randomness): the
  subset's ALE map, its approximate-null z map, the clusters of ``z > z(voxel_thresh)`` larger
  than the cluster threshold; output: per-voxel survival counts (integers, summed).
* :class:`ClusterNullBlock` -- units are random-foci datasets of ``target_n`` experiments drawn
  from the group (iteration ``i`` draws only from its own generator); output: the largest
  cluster of each dataset's approximate-null z map.
* :class:`DifferenceBlock` -- units are voxels of the grey-matter prior: the mean over
  ``difference_iterations`` subsample pairs of ALE(subsample 1) - ALE(subsample 2). Subsamples
  are drawn beforehand, one generator per difference iteration, and each voxel's mean is
  accumulated in iteration order, so any voxel blocking gives the same bits.
* :class:`DifferenceNullBlock` -- units are null iterations (random foci or label permutation),
  each with its own generator; output: the minimum and maximum of the null mean difference.

Results therefore do not depend on block size, scheduler or number of workers.

The subset statistic of the probability maps is computed as NiMARE computes it (float32
``log1p(-MA)`` summed in float64 in row order), and each subset's approximate null combines
that subset's per-study histograms in row order (bit for bit NiMARE's), so the maps of an
exhaustive schedule are NiMARE's given the same cluster threshold. The balanced differences
are unions in log space (float64), NiMARE takes float32 products: they agree to float32
rounding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
from scipy.stats import norm

from nimare_dask.meta.cbma.chunkstats import _ale_bins
from nimare_dask.montecarlo import SeedInfo
from nimare_dask.space import Grid
from nimare_dask.stats.clusters import label_clusters
from nimare_dask.stats.nulls import (
    ale_histogram_bins,
    ale_null_from_histograms,
    histogram_bin_of,
    nullhist_p_table,
)
from nimare_dask.stats.transforms import p_to_z

__all__ = [
    "ClusterNullBlock",
    "DifferenceBlock",
    "DifferenceNullBlock",
    "GroupMaps",
    "ProbBlock",
    "draw_pairs",
    "subset_supra",
]


# ---------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _rows_sum(indptr, indices, data, n_cols, rows, out):
    """``out[v] += sum_{r in rows} data[r, v]`` in the order of ``rows``."""
    for q in range(rows.shape[0]):
        r = rows[q]
        for k in range(indptr[r], indptr[r + 1]):
            out[indices[k]] += data[k]


@numba.njit(cache=True, nogil=True)
def _mean_prod_minus_one(indptr, indices, q, n_cols, rows):
    """``mean_j [prod_{r in rows[j]} q[r, v] - 1]`` per column, touching only the voxels the
    rows reach (the others add 0); subsets in order ``j``."""
    n_sub = rows.shape[0]
    acc = np.zeros(n_cols)
    buf = np.ones(n_cols)
    mark = np.zeros(n_cols, dtype=np.bool_)
    touched = np.empty(n_cols, dtype=np.int64)
    for j in range(n_sub):
        nt = 0
        for a in range(rows.shape[1]):
            r = rows[j, a]
            for k in range(indptr[r], indptr[r + 1]):
                v = indices[k]
                if not mark[v]:
                    mark[v] = True
                    touched[nt] = v
                    nt += 1
                buf[v] *= q[k]
        for m in range(nt):
            v = touched[m]
            acc[v] += buf[v] - 1.0
            buf[v] = 1.0
            mark[v] = False
    for v in range(n_cols):
        acc[v] /= n_sub
    return acc


def mean_subset_ale(log1m: sp.csr_matrix, group_rows: np.ndarray, subsets: np.ndarray):
    """Mean ALE over subsets of a group: ``mean_j [1 - prod_{i in S_j} (1 - MA_i)]``.

    Parameters
    ----------
    log1m : scipy.sparse.csr_matrix
        (n_rows, n_cols) float64 ``log1p(-MA)`` of the pool of studies.
    group_rows : numpy.ndarray
        Rows of ``log1m`` forming the group (length n).
    subsets : numpy.ndarray
        (D, t) positions within the group (0..n-1) of each subset.

    Returns
    -------
    numpy.ndarray
        (n_cols,) float64 (eager). A subset of the whole group is one union; a subset larger
        than half the group is the group's union divided by its complement's
        (``prod_S = prod_all / prod_complement``), so the work scales with the smaller side.
    """
    indptr, indices, data = log1m.indptr, log1m.indices, log1m.data
    n_cols = log1m.shape[1]
    group_rows = np.asarray(group_rows, dtype=np.int64)
    n, t = group_rows.size, subsets.shape[1]
    total = np.zeros(n_cols)
    if 2 * t <= n:
        q = np.exp(data)
        return -_mean_prod_minus_one(indptr, indices, q, n_cols, group_rows[subsets])
    _rows_sum(indptr, indices, data, n_cols, group_rows, total)
    all_prod = np.exp(total)
    if t == n:  # every subset is the whole group
        return 1.0 - all_prod
    member = np.zeros((subsets.shape[0], n), dtype=bool)
    np.put_along_axis(member, subsets, True, axis=1)
    comp = np.nonzero(~member)[1].reshape(subsets.shape[0], n - t)
    q_inv = np.exp(-data)  # 1 / (1 - MA)
    mean_ratio = 1.0 + _mean_prod_minus_one(indptr, indices, q_inv, n_cols, group_rows[comp])
    return 1.0 - all_prod * mean_ratio


def draw_pairs(rng: np.random.Generator, n1: int, n2: int, t: int, d: int):
    """``d`` pairs of subsets of ``t`` of ``n1`` and of ``n2`` experiments (without replacement
    within a subset), drawn pair by pair from ``rng``."""
    s1 = np.empty((d, t), dtype=np.int64)
    s2 = np.empty((d, t), dtype=np.int64)
    for j in range(d):
        s1[j] = rng.choice(n1, size=t, replace=False)
        s2[j] = rng.choice(n2, size=t, replace=False)
    return s1, s2


# ---------------------------------------------------------------------------- group data
@dataclass
class GroupMaps:
    """One group's MA maps and the per-study inputs of the approximate null (computed once).

    ``log1m`` is the CSR of float64(float32 ``log1p(-MA)``) over the grid's voxels (rows in
    the studyset's order), ``counts``/``row_max`` the per-study MA histograms (1e-5 grid) and
    maxima, ``n_foci`` every analysis's number of foci (in the mask or not) and
    ``sample_sizes`` its sample size (NaN when the kernel width is fixed).
    """

    log1m: sp.csr_matrix
    counts: np.ndarray
    row_max: np.ndarray
    n_foci: np.ndarray
    sample_sizes: np.ndarray

    @property
    def n(self) -> int:
        return int(self.log1m.shape[0])

    def digest(self, h) -> None:
        for arr in (self.log1m.indptr, self.log1m.indices, self.log1m.data, self.n_foci):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(np.nan_to_num(self.sample_sizes, nan=-1).tobytes())


def log1m_csr(csr: sp.csr_matrix) -> sp.csr_matrix:
    """float64 of numpy's float32 ``log1p(-MA)`` (as NiMARE evaluates it), same structure."""
    data = np.log1p(-np.asarray(csr.data, dtype=np.float32)).astype(np.float64)
    out = sp.csr_matrix((data, csr.indices, csr.indptr), shape=csr.shape)
    out.sort_indices()
    return out


def z_threshold(voxel_thresh: float) -> float:
    """NiMARE's cluster-forming z: ``norm.ppf(1 - voxel_thresh)`` (strict ``z >``)."""
    return float(norm.ppf(1 - voxel_thresh))


def subset_supra(stat, counts, row_max, n_voxels: int, z_thr: float) -> np.ndarray:
    """Voxels whose approximate-null z (float32, NiMARE's) exceeds ``z_thr``.

    ``stat`` is the float32 ALE map of the subset, ``counts``/``row_max`` its studies' MA
    histograms and maxima (in the subset's row order).
    """
    bins = ale_histogram_bins(row_max)
    top = int(histogram_bin_of(np.max(stat, initial=0), bins))
    weights = ale_null_from_histograms(counts, n_voxels, bins, top_bin=top)
    rows, p_table = nullhist_p_table(stat, weights, bins)
    used = np.unique(rows)
    z_used = p_to_z(p_table[used], tail="one").astype(np.float32)
    z_table = np.zeros(p_table.size, dtype=np.float32)
    z_table[used] = z_used
    return z_table[rows] > z_thr


def _clusters(supra: np.ndarray, grid: Grid):
    return label_clusters(supra.astype(np.float32), grid, 0.5)


# ---------------------------------------------------------------------------- blocks
@dataclass
class ProbBlock:
    """Survival counts of the subsets ``schedule[start:stop]`` (see the module docstring)."""

    group: GroupMaps
    schedule: np.ndarray  # (n_subsets, t) int
    grid: Grid
    z_thr: float
    cluster_threshold: float

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"balanced-prob")
        self.group.digest(h)
        h.update(np.ascontiguousarray(self.schedule).tobytes())
        h.update(np.array([self.z_thr, self.cluster_threshold]).tobytes())
        h.update(self.grid.fingerprint.encode())
        return h.hexdigest()[:24]

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        g = self.group
        n_vox = self.grid.n_voxels
        count = np.zeros(n_vox, dtype=np.int64)
        for subset in self.schedule[start:stop]:
            subset = np.asarray(subset, dtype=np.int64)
            log1m = np.zeros(n_vox)
            _rows_sum(g.log1m.indptr, g.log1m.indices, g.log1m.data, n_vox, subset, log1m)
            stat = (1.0 - np.exp(log1m)).astype(np.float32)
            supra = subset_supra(stat, g.counts[subset], g.row_max[subset], n_vox, self.z_thr)
            if not supra.any():
                continue
            cl = _clusters(supra, self.grid)
            keep = np.concatenate([[False], cl.sizes > self.cluster_threshold])
            count += keep[cl.labels]
        return {"count": count}


@dataclass
class ClusterNullBlock:
    """Largest supra-threshold cluster of random-foci datasets of ``t`` of the group's
    experiments (iteration ``i``: experiments and foci drawn from ``seed.rng(i)``)."""

    kernel: object
    group: GroupMaps
    t: int
    pool: np.ndarray  # (n_pool, 3) int64 grid positions foci are drawn from
    grid: Grid
    z_thr: float

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"balanced-cluster-null")
        self.group.digest(h)
        h.update(np.ascontiguousarray(self.pool).tobytes())
        h.update(np.array([self.t, self.z_thr]).tobytes())
        h.update(_kernel_id(self.kernel))
        h.update(self.grid.fingerprint.encode())
        return h.hexdigest()[:24]

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        g = self.group
        out = np.zeros(stop - start, dtype=np.int64)
        for row, i in enumerate(range(start, stop)):
            rng = seed.rng(i)
            subset = rng.permutation(g.n)[: self.t] if self.t < g.n else np.arange(g.n)
            ijk, rows = _random_foci(rng, self.pool, g.n_foci[subset])
            log1m, counts, row_max = self.kernel.tabulate_block(
                ijk, rows, self.t, self.grid, _null_sizes(g.sample_sizes[subset]),
                lambda v: np.log1p(-v), _ale_bins,
            )  # fmt: skip
            stat = (1.0 - np.exp(log1m)).astype(np.float32)
            supra = subset_supra(stat, counts, row_max, self.grid.n_voxels, self.z_thr)
            if supra.any():
                out[row] = int(_clusters(supra, self.grid).sizes.max(initial=0))
        return {"max_size": out}


def _kernel_id(kernel) -> bytes:
    return f"{type(kernel).__name__}{sorted(kernel.get_params().items())}".encode()


def _random_foci(rng: np.random.Generator, pool: np.ndarray, n_foci: np.ndarray):
    """Every focus of the given studies at a uniform random pool position (with replacement)."""
    n_foci = np.asarray(n_foci, dtype=np.int64)
    idx = rng.integers(0, pool.shape[0], size=int(n_foci.sum()))
    rows = np.repeat(np.arange(n_foci.size, dtype=np.int64), n_foci)
    return pool[idx], rows


def _null_sizes(sample_sizes: np.ndarray) -> np.ndarray:
    """NiMARE's random-foci MA maps use each study's mean sample size cast to int."""
    s = np.asarray(sample_sizes, dtype=float)
    return np.where(np.isfinite(s), np.floor(s), s)


@dataclass
class DifferenceBlock:
    """Observed mean balanced difference on prior voxels ``start .. stop - 1``."""

    csc1: sp.csc_matrix  # (n1, n_prior) log1p(-MA) of group 1 on the prior voxels
    csc2: sp.csc_matrix
    subsets1: np.ndarray  # (D, t)
    subsets2: np.ndarray

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"balanced-difference")
        for m in (self.csc1, self.csc2):
            for arr in (m.indptr, m.indices, m.data):
                h.update(np.ascontiguousarray(arr).tobytes())
        for s in (self.subsets1, self.subsets2):
            h.update(np.ascontiguousarray(s).tobytes())
        return h.hexdigest()[:24]

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        parts = []
        for m, subsets in ((self.csc1, self.subsets1), (self.csc2, self.subsets2)):
            block = m[:, start:stop].tocsr()
            block.sort_indices()
            parts.append(mean_subset_ale(block, np.arange(m.shape[0]), subsets))
        return {"diff": (parts[0] - parts[1]).astype(np.float32)}


@dataclass
class DifferenceNullBlock:
    """Min and max over the prior of null mean balanced differences (see the module
    docstring); ``null_method`` is ``"random-foci"`` or ``"label-permutation"``."""

    null_method: str
    kernel: object
    groups: tuple  # (GroupMaps, GroupMaps)
    t: int
    d: int
    pool: np.ndarray
    grid: Grid
    prior: np.ndarray  # in-mask indices of the prior voxels
    _pooled: sp.csr_matrix | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.null_method == "label-permutation":
            self._pooled = sp.vstack([g.log1m for g in self.groups], format="csr")
            self._pooled.sort_indices()

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"balanced-null-{self.null_method}".encode())
        for g in self.groups:
            g.digest(h)
        h.update(np.array([self.t, self.d]).tobytes())
        h.update(np.ascontiguousarray(self.pool).tobytes())
        h.update(np.ascontiguousarray(self.prior).tobytes())
        h.update(_kernel_id(self.kernel))
        h.update(self.grid.fingerprint.encode())
        return h.hexdigest()[:24]

    def _random_group(self, rng, g: GroupMaps) -> sp.csr_matrix:
        ijk, rows = _random_foci(rng, self.pool, g.n_foci)
        csr = self.kernel.csr_block(ijk, rows, g.n, self.grid, _null_sizes(g.sample_sizes))
        return log1m_csr(csr)

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        g1, g2 = self.groups
        lo = np.zeros(stop - start, dtype=np.float32)
        hi = np.zeros(stop - start, dtype=np.float32)
        for row, i in enumerate(range(start, stop)):
            rng = seed.rng(i)
            if self.null_method == "random-foci":
                m1, m2 = self._random_group(rng, g1), self._random_group(rng, g2)
                r1, r2 = np.arange(g1.n), np.arange(g2.n)
            else:
                m1 = m2 = self._pooled
                perm = rng.permutation(g1.n + g2.n)
                r1, r2 = perm[: g1.n], perm[g1.n :]
            s1, s2 = draw_pairs(rng, g1.n, g2.n, self.t, self.d)
            # over every mask voxel (each voxel's value is independent of the others), then
            # the extrema over the prior: cheaper than slicing the prior's columns
            diff = mean_subset_ale(m1, r1, s1) - mean_subset_ale(m2, r2, s2)
            diff = diff[self.prior].astype(np.float32)
            lo[row], hi[row] = diff.min(), diff.max()
        return {"min": lo, "max": hi}

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

from nimare_dask.meta.cbma.balanced_kernels import (
    AleUnion,
    RankRows,
    Tabulator,
    mean_prod,
    rows_sum,
)
from nimare_dask.montecarlo import SeedInfo
from nimare_dask.space import Grid
from nimare_dask.stats.clusters import label_clusters, max_stats_of_supra, neighbours
from nimare_dask.stats.nulls import (
    _nearest_bin,
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
    return _mean_subset(indptr, indices, data, log1m.shape[1], group_rows, subsets)


def _mean_subset(indptr, indices, data, n_cols, group_rows, subsets, key=None, q_inv=None):
    """:func:`mean_subset_ale` on CSR parts; with ``key`` (:class:`.balanced_kernels.RankRows`)
    the stored values are ``data[key - 1]`` and ``1 / (1 - MA)`` is ``q_inv[key - 1]``
    (subsets larger than half the group only)."""
    group_rows = np.asarray(group_rows, dtype=np.int64)
    n, t = group_rows.size, subsets.shape[1]
    total = np.zeros(n_cols)
    if 2 * t <= n:
        q = np.exp(data)
        return -mean_prod(indptr, indices, q, n_cols, group_rows, subsets)
    rows_sum(indptr, indices, data, n_cols, group_rows, total, key)
    all_prod = np.exp(total)
    if t == n:  # every subset is the whole group
        return 1.0 - all_prod
    member = np.zeros((subsets.shape[0], n), dtype=bool)
    np.put_along_axis(member, subsets, True, axis=1)
    comp = np.nonzero(~member)[1].reshape(subsets.shape[0], n - t)
    if key is None:
        q_inv = np.exp(-data)  # 1 / (1 - MA)
    mean_ratio = 1.0 + mean_prod(indptr, indices, q_inv, n_cols, group_rows, comp, key)
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
    _digest: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.log1m.shape[0])

    def digest(self, h) -> None:
        """Feed the group's identity to the hash ``h`` (hashed once per group)."""
        if self._digest is None:
            own = hashlib.sha256()
            for arr in (self.log1m.indptr, self.log1m.indices, self.log1m.data, self.n_foci):
                own.update(np.ascontiguousarray(arr).tobytes())
            own.update(np.nan_to_num(self.sample_sizes, nan=-1).tobytes())
            self._digest = own.digest()
        h.update(self._digest)


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
    good, inv_step, zero_good = _good_bins(stat, counts, row_max, n_voxels, z_thr)
    return _supra_mask(stat, good, inv_step, zero_good)


def _good_bins(stat, counts, row_max, n_voxels: int, z_thr: float):
    """Which bins of the subset's approximate null have ``z > z_thr`` (float32 z, NiMARE's),
    ``1 / step`` and whether values <= 0 (p = 1) pass. z is computed per bin up to the bin of
    the largest value (elementwise: the same bits as per voxel)."""
    bins = ale_histogram_bins(row_max)
    top = int(histogram_bin_of(np.max(stat, initial=0), bins))
    weights = ale_null_from_histograms(counts, n_voxels, bins, top_bin=top)
    _, p_table = nullhist_p_table(np.zeros(0), weights, bins)
    used = np.append(p_table[: top + 1], p_table[-1])
    z = p_to_z(used, tail="one").astype(np.float32)
    good = z[:-1] > z_thr
    return good, float(1 / (bins[1] - bins[0])), bool(z[-1] > z_thr)


@numba.njit(cache=True, nogil=True)
def _supra_mask(stat, good, inv_step, zero_good):
    """``z_table[bin(stat)] > z_thr`` per voxel from :func:`_good_bins` (no value lies past
    the table: it reaches the largest value's bin)."""
    n_good = good.shape[0]
    out = np.empty(stat.shape[0], dtype=np.bool_)
    for v in range(stat.shape[0]):
        s = np.float64(stat[v])
        if s > 0.0:
            out[v] = good[_nearest_bin(s, inv_step, n_good)]
        else:
            out[v] = zero_good
    return out


@numba.njit(cache=True, nogil=True)
def _largest_cluster(supra, nbrs, scratch):
    """Size of the largest 6-connected cluster of the voxels set in ``supra``."""
    m = 0
    for v in range(supra.shape[0]):
        if supra[v]:
            m += 1
    if m == 0:
        return 0
    idx = np.empty(m, dtype=np.int64)
    vals = np.ones(m)
    m = 0
    for v in range(supra.shape[0]):
        if supra[v]:
            idx[m] = v
            m += 1
    size, _ = max_stats_of_supra(idx, vals, nbrs, 0.0, scratch)
    return size


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
            rows_sum(g.log1m.indptr, g.log1m.indices, g.log1m.data, n_vox, subset, log1m)
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
        nbrs = np.ascontiguousarray(neighbours(self.grid), dtype=np.int32)
        scratch = np.zeros(self.grid.n_voxels, dtype=np.int32)
        tab = Tabulator(self.kernel, self.grid, _null_sizes(g.sample_sizes), g.n_foci)
        for row, i in enumerate(range(start, stop)):
            rng = seed.rng(i)
            subset = rng.permutation(g.n)[: self.t] if self.t < g.n else np.arange(g.n)
            ijk, _ = _random_foci(rng, self.pool, g.n_foci[subset])
            log1m, counts, row_max = tab(ijk, subset)
            stat = (1.0 - np.exp(log1m)).astype(np.float32)
            supra = subset_supra(stat, counts, row_max, self.grid.n_voxels, self.z_thr)
            out[row] = _largest_cluster(supra, nbrs, scratch)
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

    def _layout(self, g: GroupMaps):
        """How a random-foci version of ``g`` is computed (set up once per block): a union
        when every subset is all of it, rows of value ranks when subsets are larger than half
        of it (complements, in order), else None (sparse rows of values)."""
        if self.null_method != "random-foci" or 2 * self.t <= g.n:
            return None
        sizes = _null_sizes(g.sample_sizes)
        if self.t == g.n:
            return AleUnion(self.kernel, self.grid, sizes, g.n_foci)
        return RankRows(self.kernel, self.grid, sizes, g.n_foci)

    def _random_mean(self, g: GroupMaps, ijk, rows, subsets, layout) -> np.ndarray:
        """:func:`mean_subset_ale` of a random-foci version of group ``g`` (same bits)."""
        order = np.arange(g.n)
        if isinstance(layout, AleUnion):  # every subset is the whole group: no MA maps
            return 1.0 - np.exp(layout(ijk, order))
        n_vox = self.grid.n_voxels
        if isinstance(layout, RankRows):
            indptr, indices, key = layout(ijk, order)
            return _mean_subset(
                indptr, indices, layout.log1m, n_vox, order, subsets, key, layout.q_inv
            )
        csr = self.kernel.csr_block(ijk, rows, g.n, self.grid, _null_sizes(g.sample_sizes))
        return mean_subset_ale(log1m_csr(csr), order, subsets)

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        g1, g2 = self.groups
        lo = np.zeros(stop - start, dtype=np.float32)
        hi = np.zeros(stop - start, dtype=np.float32)
        layouts = [self._layout(g) for g in self.groups]
        for row, i in enumerate(range(start, stop)):
            rng = seed.rng(i)
            if self.null_method == "random-foci":
                foci = [_random_foci(rng, self.pool, g.n_foci) for g in self.groups]
                s1, s2 = draw_pairs(rng, g1.n, g2.n, self.t, self.d)
                mean = [
                    self._random_mean(g, ijk, rows, s, layout)
                    for g, (ijk, rows), s, layout in zip(
                        self.groups, foci, (s1, s2), layouts, strict=True
                    )
                ]
            else:
                perm = rng.permutation(g1.n + g2.n)
                r1, r2 = perm[: g1.n], perm[g1.n :]
                s1, s2 = draw_pairs(rng, g1.n, g2.n, self.t, self.d)
                mean = [mean_subset_ale(self._pooled, r, s) for r, s in ((r1, s1), (r2, s2))]
            # over every mask voxel (each voxel's value is independent of the others), then
            # the extrema over the prior: cheaper than slicing the prior's columns
            diff = mean[0] - mean[1]
            diff = diff[self.prior].astype(np.float32)
            lo[row], hi[row] = diff.min(), diff.max()
        return {"min": lo, "max": hi}

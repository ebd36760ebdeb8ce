"""Label-permutation nulls (ALESubtraction, MKDAChi2): block functions for the Monte Carlo engine.

The studies' modelled-activation maps do not change under a relabelling, so they are built
once and pooled (group 1's studies first) in a voxel-major sparse layout (:class:`PooledMaps`:
for each voxel, the studies reaching it, ascending, with their value). A permutation assigns
``n1`` of the ``n`` pooled studies to group 1, exactly as NiMARE 0.22.1 does
(``default_rng(seed_i).shuffle(arange(n))``, the first ``n1`` form group 1). Seeds follow
NiMARE too: with an integer ``random_state`` iteration ``i`` uses the ``i``-th child of
``SeedSequence([random_state, stream_key(stream)])`` (:func:`nimare_dask.montecarlo.iteration_rng`),
and with ``random_state=None`` the seed is the iteration index itself, so the null is
reproducible and identical to NiMARE's permutations in both cases.

A block of ``B`` permutations is a (n, B) 0/1 membership matrix; for each voxel the group-1 sums
over the studies reaching it are ``B``-wide multiply-adds (numba), the rest is vectorised numpy:

* ALE subtraction: ``S1`` = group 1's ``sum log(1 - MA)``, ``S2 = S_total - S1``, the
  difference ``(1 - exp(S1)) - (1 - exp(S2))``. The observed difference is computed by the same
  code with the true labels, so a permutation that reproduces a voxel's observed group
  composition ties with it exactly (``>=`` and ``<=`` both count, as in NiMARE).
* MKDA chi-square: group 1's number of active studies ``c1`` (group 2's is ``total - c1``),
  then the three chi-square maps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numba import njit

from nimare_dask.montecarlo import SeedInfo
from nimare_dask.space import Grid
from nimare_dask.stats.clusters import max_cluster_stats, max_stats_of_supra, neighbours

__all__ = [
    "ABS_HIST_BINS",
    "ALEDiffPermutations",
    "Chi2Permutations",
    "PooledMaps",
    "abs_hist_quantile",
    "permutation_members",
]

#: |difference| histogram: float32 bit patterns >> 11 from 2**-24 up to 1 (relative bin width
#: 2**-12); everything below 2**-24, zeros included, falls in bin 0.
_HIST_SHIFT = 11
_HIST_LOW = (127 - 24) << 23
ABS_HIST_BINS = ((0x3F800000 - _HIST_LOW) >> _HIST_SHIFT) + 2
#: Voxels per numpy chunk of the difference computation.
_VOXEL_CHUNK = 4096


def _without_grid_caches(obj) -> dict:
    """Pickled state (a :class:`Grid` pickles its definition only, never its caches)."""
    return dict(obj.__dict__)


# ---------------------------------------------------------------------------- pooled maps
@dataclass
class PooledMaps:
    """Per-study maps of two groups, pooled (group 1 first), stored voxel-major.

    Attributes
    ----------
    indptr : numpy.ndarray
        (n_voxels + 1,) int64: voxel ``v``'s entries are ``indptr[v]:indptr[v+1]``.
    rows : numpy.ndarray
        int32 pooled study index of each entry (ascending within a voxel).
    values : numpy.ndarray
        float32 value of each entry (``log1p(-MA)`` for ALE, 1 for MKDA).
    n1, n : int
        Group 1's size and the pooled number of studies.
    """

    indptr: np.ndarray
    rows: np.ndarray
    values: np.ndarray
    n1: int
    n: int

    @classmethod
    def from_csr(cls, csr1: sp.csr_matrix, csr2: sp.csr_matrix, transform=None) -> PooledMaps:
        """Pool two (studies x voxels) CSR matrices; ``transform`` maps their stored values."""
        pooled = sp.vstack([csr1, csr2], format="csr")
        if transform is not None:
            pooled.data = transform(pooled.data)
        csc = pooled.tocsc()
        csc.sort_indices()
        return cls(
            indptr=csc.indptr.astype(np.int64),
            rows=csc.indices.astype(np.int32),
            values=np.asarray(csc.data, dtype=np.float32),
            n1=int(csr1.shape[0]),
            n=int(csr1.shape[0] + csr2.shape[0]),
        )

    @property
    def n_voxels(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for arr in (self.indptr, self.rows, self.values):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(np.asarray([self.n1, self.n], dtype=np.int64).tobytes())
        return h.hexdigest()[:24]


def permutation_members(
    start: int, stop: int, seed: SeedInfo, n: int, n1: int, legacy: bool
) -> np.ndarray:
    """(n, stop - start) 0/1 membership of group 1 for iterations ``start..stop-1``.

    Parameters
    ----------
    start, stop : int
        Iterations.
    seed : SeedInfo
        The run's seed and stream (ignored when ``legacy``).
    n, n1 : int
        Pooled size and group-1 size.
    legacy : bool
        NiMARE's ``random_state=None`` rule: iteration ``i`` is seeded with ``i``.

    Returns
    -------
    numpy.ndarray
        float32 (exact 0/1).
    """
    member = np.zeros((n, stop - start), dtype=np.float32)
    for col, i in enumerate(range(start, stop)):
        rng = np.random.default_rng(i) if legacy else seed.rng(i)
        idx = np.arange(n)
        rng.shuffle(idx)
        member[idx[:n1], col] = 1.0
    return member


# ---------------------------------------------------------------------------- numba kernels
@njit(nogil=True, cache=True)
def _group_sums(indptr, rows, values, voxels, member, out):
    """``out[q, b] = sum over studies reaching voxels[q] of member[i, b] * value``.

    ``member`` is float32 0/1 (exact), ``out`` float64. Entries are taken in ascending study
    order, eight at a time (the eight products summed pairwise, then added), so the result for
    one column depends only on that column's memberships: the observed labelling, computed by
    this function too, gives bit-identical sums to any permutation with the same members.
    """
    n_b = member.shape[1]
    for q in range(voxels.shape[0]):
        v = voxels[q]
        o = out[q]
        for b in range(n_b):
            o[b] = 0.0
        e = indptr[v]
        e1 = indptr[v + 1]
        while e + 8 <= e1:
            m0 = member[rows[e]]
            m1 = member[rows[e + 1]]
            m2 = member[rows[e + 2]]
            m3 = member[rows[e + 3]]
            m4 = member[rows[e + 4]]
            m5 = member[rows[e + 5]]
            m6 = member[rows[e + 6]]
            m7 = member[rows[e + 7]]
            l0 = np.float64(values[e])
            l1 = np.float64(values[e + 1])
            l2 = np.float64(values[e + 2])
            l3 = np.float64(values[e + 3])
            l4 = np.float64(values[e + 4])
            l5 = np.float64(values[e + 5])
            l6 = np.float64(values[e + 6])
            l7 = np.float64(values[e + 7])
            for b in range(n_b):
                o[b] += ((m0[b] * l0 + m1[b] * l1) + (m2[b] * l2 + m3[b] * l3)) + (
                    (m4[b] * l4 + m5[b] * l5) + (m6[b] * l6 + m7[b] * l7)
                )
            e += 8
        while e < e1:
            mrow = member[rows[e]]
            lv = np.float64(values[e])
            for b in range(n_b):
                o[b] += mrow[b] * lv
            e += 1


@njit(nogil=True, cache=True)
def _totals(indptr, values):
    out = np.zeros(indptr.shape[0] - 1)
    for v in range(out.shape[0]):
        s = 0.0
        for e in range(indptr[v], indptr[v + 1]):
            s += np.float64(values[e])
        out[v] = s
    return out


@njit(nogil=True, cache=True)
def _bits_hist(bits, hist):
    """Add float32 magnitudes, given as their uint32 bit patterns, to the histogram."""
    for t in range(bits.shape[0]):
        u = np.int64(bits[t])
        if u < _HIST_LOW:
            hist[0] += 1
        else:
            b = ((u - _HIST_LOW) >> _HIST_SHIFT) + 1
            if b >= hist.shape[0]:
                b = hist.shape[0] - 1
            hist[b] += 1


def abs_hist_quantile(hist: np.ndarray, q: float) -> float:
    """The ``q`` quantile (numpy's linear rule) of the magnitudes counted in ``hist``.

    Order statistics are located exactly by rank; inside their bin they are placed evenly, so
    the result is within one bin (2**-12 relative) of ``numpy.quantile`` on the raw values.

    Parameters
    ----------
    hist : numpy.ndarray
        Counts from the |difference| histogram.
    q : float
        Quantile in [0, 1].

    Returns
    -------
    float
    """
    hist = np.asarray(hist, dtype=np.int64)
    total = int(hist.sum())
    if total == 0:
        return 0.0
    h = (total - 1) * float(q)
    k = int(np.floor(h))
    frac = h - k
    cum = np.cumsum(hist)

    def order_stat(rank: int) -> float:
        b = int(np.searchsorted(cum, rank, side="right"))
        if b == 0:
            return 0.0
        before = int(cum[b - 1]) if b else 0
        r = rank - before
        lo_bits = _HIST_LOW + ((b - 1) << _HIST_SHIFT)
        hi_bits = lo_bits + (1 << _HIST_SHIFT)
        lo = float(np.array([lo_bits], dtype=np.uint32).view(np.float32)[0])
        hi = float(np.array([min(hi_bits, 0x3F800000)], dtype=np.uint32).view(np.float32)[0])
        return lo + (r + 0.5) / hist[b] * (hi - lo)

    x_k = order_stat(k)
    x_k1 = order_stat(min(k + 1, total - 1))
    return float(x_k + frac * (x_k1 - x_k))


# ---------------------------------------------------------------------------- ALE subtraction
@dataclass
class ALEDiffPermutations:
    """Block function of ALESubtraction's label-permutation null.

    Parameters
    ----------
    pooled : PooledMaps
        ``log1p(-MA)`` of every study (float32), group 1 first.
    grid : Grid
        The voxel grid.
    voxels : numpy.ndarray
        In-mask voxels the null covers (all, or the inference-mask union).
    mode : {"voxel", "cluster"}
        "voxel": per iteration max |difference|, per voxel the counts of differences at or
        above / at or below the observed one, and (``histogram=True``) the |difference|
        histogram. "cluster": per iteration the largest cluster size and mass of
        ``|difference| > threshold`` (positive and negative clusters apart).
    observed : numpy.ndarray, optional
        Observed differences at ``voxels`` ("voxel"; from :meth:`observed_differences`).
    histogram : bool
        Also histogram the magnitudes ("voxel").
    threshold : float, optional
        Cluster-forming threshold ("cluster").
    legacy : bool
        Seed iteration ``i`` with ``i`` (NiMARE's ``random_state=None``).
    """

    pooled: PooledMaps
    grid: Grid
    voxels: np.ndarray
    mode: str = "voxel"
    observed: np.ndarray | None = None
    histogram: bool = False
    threshold: float | None = None
    legacy: bool = False
    _totals: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("voxel", "cluster"):
            raise ValueError(f"mode must be 'voxel' or 'cluster', got {self.mode!r}")
        self.voxels = np.ascontiguousarray(self.voxels, dtype=np.int64)
        if self._totals is None:
            self._totals = _totals(self.pooled.indptr, self.pooled.values)

    def __getstate__(self) -> dict:
        return _without_grid_caches(self)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps(
                {
                    "what": "ale-subtraction",
                    "mode": self.mode,
                    "histogram": bool(self.histogram),
                    "threshold": None if self.threshold is None else float(self.threshold),
                    "legacy": bool(self.legacy),
                    "grid": self.grid.fingerprint,
                    "pooled": self.pooled.fingerprint(),
                },
                sort_keys=True,
            ).encode()
        )
        h.update(self.voxels.tobytes())
        if self.observed is not None:
            h.update(np.ascontiguousarray(self.observed).tobytes())
        return h.hexdigest()[:24]

    def _differences(self, member: np.ndarray, voxels: np.ndarray) -> np.ndarray:
        """(len(voxels), B) float64 differences for the membership columns."""
        p = self.pooled
        s1 = np.empty((voxels.shape[0], member.shape[1]))
        _group_sums(p.indptr, p.rows, p.values, voxels, member, s1)
        s2 = self._totals[voxels][:, None] - s1
        return (1.0 - np.exp(s1)) - (1.0 - np.exp(s2))

    def observed_differences(self) -> np.ndarray:
        """The observed difference at ``voxels``, computed exactly as the permuted ones."""
        member = np.zeros((self.pooled.n, 1), dtype=np.float32)
        member[: self.pooled.n1, 0] = 1.0
        out = np.empty(self.voxels.shape[0])
        for c0 in range(0, self.voxels.shape[0], _VOXEL_CHUNK):
            vox = self.voxels[c0 : c0 + _VOXEL_CHUNK]
            out[c0 : c0 + len(vox)] = self._differences(member, vox)[:, 0]
        return out

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        p = self.pooled
        member = permutation_members(start, stop, seed, p.n, p.n1, self.legacy)
        n_b = stop - start
        touched = np.diff(p.indptr)[self.voxels] > 0
        busy = np.flatnonzero(touched)
        if self.mode == "voxel":
            absmax = np.zeros(n_b)
            upper = np.zeros(self.voxels.shape[0], dtype=np.uint32)
            lower = np.zeros(self.voxels.shape[0], dtype=np.uint32)
            hist = np.zeros(ABS_HIST_BINS if self.histogram else 1, dtype=np.int32)
            obs = np.asarray(self.observed, dtype=np.float64)
            # voxels no study reaches: every difference is exactly 0
            idle = ~touched
            upper[idle & (obs <= 0)] += n_b
            lower[idle & (obs >= 0)] += n_b
            if self.histogram:
                hist[0] += int(idle.sum()) * n_b
            for c0 in range(0, busy.shape[0], _VOXEL_CHUNK):
                pos = busy[c0 : c0 + _VOXEL_CHUNK]
                d = self._differences(member, self.voxels[pos])
                _tally(d, obs, pos, upper, lower, absmax)
                if self.histogram:
                    bits = np.abs(d).astype(np.float32).view(np.uint32).ravel()
                    _bits_hist(bits, hist)
            out = {"absmax": absmax.astype(np.float32), "upper": upper, "lower": lower}
            if self.histogram:
                out["abs_hist"] = hist
            return out
        # cluster mode: the supra-threshold voxels of every permutation, then 6-connected
        # clusters (positive and negative apart) of each
        thr = float(self.threshold)
        parts = []
        for c0 in range(0, busy.shape[0], _VOXEL_CHUNK):
            vox = self.voxels[busy[c0 : c0 + _VOXEL_CHUNK]]
            parts.append(_supra_entries(self._differences(member, vox), vox, thr))
        b_idx = np.concatenate([q[0] for q in parts])
        order = np.argsort(b_idx, kind="stable")  # per permutation, ascending voxels
        v_idx = np.concatenate([q[1] for q in parts])[order]
        vals = np.concatenate([q[2] for q in parts])[order]
        bounds = np.searchsorted(b_idx[order], np.arange(n_b + 1))
        nbrs = neighbours(self.grid)
        scratch = np.zeros(self.grid.n_voxels, dtype=np.int32)
        sizes = np.zeros(n_b, dtype=np.int64)
        masses = np.zeros(n_b)
        for b in range(n_b):
            a, e = bounds[b], bounds[b + 1]
            if e > a:
                sizes[b], masses[b] = max_stats_of_supra(v_idx[a:e], vals[a:e], nbrs, thr, scratch)
        return {"max_size": sizes, "max_mass": masses}


@njit(nogil=True, cache=True)
def _tally(d, obs, pos, upper, lower, absmax):
    """Counts of differences at or above / at or below the observed one, and per-column max
    of ``|d|`` (``d``: (n, B) for voxels ``pos``)."""
    n_b = d.shape[1]
    for q in range(d.shape[0]):
        o = obs[pos[q]]
        up = 0
        low = 0
        row = d[q]
        for b in range(n_b):
            x = row[b]
            up += x >= o
            low += x <= o
            ax = abs(x)
            absmax[b] = ax if ax > absmax[b] else absmax[b]
        upper[pos[q]] += up
        lower[pos[q]] += low


@njit(nogil=True, cache=True)
def _supra_entries(d, vox, thr):
    """``(permutation, voxel, value)`` of the differences with float32 magnitude above ``thr``
    (NiMARE thresholds its float32 maps), in voxel order."""
    n = 0
    for q in range(d.shape[0]):
        for b in range(d.shape[1]):
            if np.float64(np.float32(abs(d[q, b]))) > thr:
                n += 1
    b_idx = np.empty(n, dtype=np.int64)
    v_idx = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.float64)
    m = 0
    for q in range(d.shape[0]):
        for b in range(d.shape[1]):
            x = np.float32(d[q, b])
            if np.float64(abs(x)) > thr:
                b_idx[m] = b
                v_idx[m] = vox[q]
                vals[m] = np.float64(x)
                m += 1
    return b_idx, v_idx, vals


# ---------------------------------------------------------------------------- MKDA chi-square
@njit(nogil=True, cache=True)
def _chi2_tests(c1, total, n1, n2, out_maps):
    """The uniformity, group-2 uniformity and association chi-square maps of one permutation.

    Same arithmetic as :mod:`nimare_dask.stats.chi2` (``one_way``, ``two_way_counts``); counts
    are integers, so the means are exact whatever the summation order.
    """
    n_vox = c1.shape[0]
    s1 = 0.0
    s2 = 0.0
    for v in range(n_vox):
        s1 += np.float64(c1[v])
        s2 += np.float64(total[v]) - np.float64(c1[v])
    e1 = s1 / n_vox
    e2 = s2 / n_vox
    d1 = e1 * (n1 - e1)
    d2 = e2 * (n2 - e2)
    nt = np.float64(n1 + n2)
    for v in range(n_vox):
        a = np.float64(c1[v])
        b = np.float64(total[v]) - a
        out_maps[0, v] = 0.0 if d1 == 0 else (a - e1) ** 2 * n1 / d1
        out_maps[1, v] = 0.0 if d2 == 0 else (b - e2) ** 2 * n2 / d2
        row0 = a + b
        row1 = nt - row0
        den = row0 * row1 * n1 * n2
        out_maps[2, v] = 0.0 if den == 0 else nt * (a * n2 - b * n1) ** 2 / den


CHI2_TESTS = ("uniformity", "group2", "association")


def chi2_null_stats(c1, total, n1, n2, threshold, nbrs, scratch, maps=None) -> dict:
    """Max chi-square, largest cluster size and mass of the three tests of one iteration.

    Parameters
    ----------
    c1 : numpy.ndarray
        (n_voxels,) group-1 active-study counts.
    total : numpy.ndarray
        (n_voxels,) active studies of both groups.
    n1, n2 : int
        Group sizes.
    threshold : float
        Cluster-forming chi-square threshold.
    nbrs : numpy.ndarray
        Neighbour table of the grid.
    scratch : numpy.ndarray
        int32 zeros over voxels.
    maps : numpy.ndarray, optional
        (3, n_voxels) float64 work array.

    Returns
    -------
    dict
        ``{test}_max``, ``{test}_size``, ``{test}_mass`` for each test of :data:`CHI2_TESTS`.
    """
    if maps is None:
        maps = np.empty((3, c1.shape[0]))
    _chi2_tests(c1, total, float(n1), float(n2), maps)
    out = {}
    for t, name in enumerate(CHI2_TESTS):
        chi2 = maps[t]
        out[f"{name}_max"] = float(np.max(chi2))
        # clusters on the float32 map, as NiMARE labels its float32 image (chi2 >= 0)
        size, mass = max_cluster_stats(
            chi2.astype(np.float32), nbrs, threshold, two_sided=True, scratch=scratch
        )
        out[f"{name}_size"] = size
        out[f"{name}_mass"] = mass
    return out


def chi2_outputs(n_b: int) -> dict[str, np.ndarray]:
    """Empty per-iteration outputs of a chi-square null block."""
    return {
        f"{t}_{what}": np.zeros(n_b, dtype=np.int64 if what == "size" else np.float64)
        for t in CHI2_TESTS
        for what in ("max", "size", "mass")
    }


@dataclass
class Chi2Permutations:
    """Block function of MKDAChi2's label-permutation null.

    Parameters
    ----------
    pooled : PooledMaps
        Binary MKDA maps (active = 1) of both groups, group 1 first.
    grid : Grid
        The voxel grid.
    threshold : float
        Cluster-forming chi-square threshold (``chi2.isf(voxel_thresh, 1)``).
    legacy : bool
        Seed iteration ``i`` with ``i`` (NiMARE's ``random_state=None``).
    """

    pooled: PooledMaps
    grid: Grid
    threshold: float
    legacy: bool = False

    def __getstate__(self) -> dict:
        return _without_grid_caches(self)

    def fingerprint(self) -> str:
        text = json.dumps(
            {
                "what": "mkda-chi2",
                "threshold": float(self.threshold),
                "legacy": bool(self.legacy),
                "grid": self.grid.fingerprint,
                "pooled": self.pooled.fingerprint(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        p = self.pooled
        member = permutation_members(start, stop, seed, p.n, p.n1, self.legacy)
        n_b = stop - start
        n_vox = self.grid.n_voxels
        total = np.diff(p.indptr).astype(np.float64)
        busy = np.flatnonzero(total > 0)
        counts = np.zeros((n_b, n_vox), dtype=np.float32)
        for c0 in range(0, busy.shape[0], _VOXEL_CHUNK):
            vox = busy[c0 : c0 + _VOXEL_CHUNK]
            part = np.empty((vox.shape[0], n_b))
            _group_sums(p.indptr, p.rows, p.values, vox, member, part)
            counts[:, vox] = part.T
        out = chi2_outputs(n_b)
        nbrs = neighbours(self.grid)
        scratch = np.zeros(n_vox, dtype=np.int32)
        maps = np.empty((3, n_vox))
        for b in range(n_b):
            stats = chi2_null_stats(
                counts[b], total, p.n1, p.n - p.n1, self.threshold, nbrs, scratch, maps
            )
            for key, value in stats.items():
                out[key][b] = value
        return out

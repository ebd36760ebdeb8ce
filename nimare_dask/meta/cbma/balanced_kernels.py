"""Compiled loops of the balanced subtraction (and ResampledStability's random datasets).

* :func:`rows_sum`, :func:`mean_prod`: sums and subset products over sparse ``log1p(-MA)``
  rows (:func:`nimare_dask.meta.cbma.balanced_blocks.mean_subset_ale`). Subsets listed in
  ascending order (every complement) are multiplied voxel block by voxel block, the products
  of all subsets side by side in cache, each stored value multiplying a row of them by itself
  or by 1.0 (exact): the same products in the same order as the row-wise loop, several times
  faster.
* :class:`Tabulator`: ``kernel.tabulate_block`` of subsets of one group's experiments on
  kernels prepared once (a call on the subset itself rebuilds a kernel bank whenever the
  subset's set of sample sizes is new, which costs more than the tabulation).
* :class:`AleUnion`: the union ``sum_r log(1 - MA_r)`` of a random-foci dataset straight from
  its foci (the slot loop of :func:`nimare_dask.meta.cbma._mc_numba.ale_accumulate`), bit for
  bit the row-order sum over the sparse rows, without building them.
"""

from __future__ import annotations

import numba
import numpy as np

from nimare_dask.kernels import _numba as _knumba
from nimare_dask.meta.cbma import _mc_numba as mc
from nimare_dask.meta.cbma.chunkstats import _ale_bins

__all__ = ["AleUnion", "RankRows", "Tabulator", "mean_prod", "rows_sum"]


# ---------------------------------------------------------------------------- sparse rows
@numba.njit(cache=True, nogil=True)
def rows_sum(indptr, indices, data, n_cols, rows, out, key=None):
    """``out[v] += sum_{r in rows} data[r, v]`` in the order of ``rows`` (with ``key``: the
    stored values are ``data[key - 1]``, ``key`` float32 ranks + 1)."""
    for q in range(rows.shape[0]):
        r = rows[q]
        for k in range(indptr[r], indptr[r + 1]):
            if key is None:
                out[indices[k]] += data[k]
            else:
                out[indices[k]] += data[np.int64(key[k]) - 1]


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


#: Bytes of the per-block products of :func:`_mean_prod_blocked` (kept in the L2 cache).
_BLOCK_BYTES = 1 << 19


@numba.njit(cache=True, nogil=True)
def _mean_prod_blocked(indptr, indices, q, n_cols, prow, member, width, key=None):
    """:func:`_mean_prod_minus_one` for subsets whose members are listed in ascending group
    position: the same products in the same order, voxel block by voxel block.

    Position ``p`` of the group is matrix row ``prow[p]``; ``member[p, j]`` says whether it
    belongs to subset ``j``. For ``width`` voxels at a time the products of every subset sit
    side by side (``buf[v, j]``, in cache) and each stored value multiplies a whole row of
    them, by itself or by 1.0 (exact), in a loop the compiler vectorises; positions are visited
    in ascending order, so each product multiplies its members' values in the order the
    row-wise loop does. The mean adds ``buf - 1`` over the subsets in order, also for subsets
    that do not reach the voxel (``+0.0``: the sum is unchanged).
    """
    n = prow.shape[0]
    n_sub = member.shape[1]
    acc = np.zeros(n_cols)
    buf = np.ones((width, n_sub))
    touched = np.zeros(width, dtype=np.bool_)
    cursor = np.empty(n, dtype=np.int64)
    for p in range(n):
        cursor[p] = indptr[prow[p]]
    for c0 in range(0, n_cols, width):
        c1 = min(n_cols, c0 + width)
        for p in range(n):
            r = prow[p]
            k = cursor[p]
            end = indptr[r + 1]
            mp = member[p]
            while k < end and indices[k] < c1:
                v = indices[k] - c0
                qq = q[k] if key is None else q[np.int64(key[k]) - 1]
                touched[v] = True
                bv = buf[v]
                for j in range(n_sub):
                    bv[j] *= qq if mp[j] else 1.0
                k += 1
            cursor[p] = k
        for v in range(c1 - c0):
            if not touched[v]:
                continue
            touched[v] = False
            s = 0.0
            for j in range(n_sub):
                s += buf[v, j] - 1.0
                buf[v, j] = 1.0
            acc[c0 + v] = s
    for v in range(n_cols):
        acc[v] /= n_sub
    return acc


def mean_prod(indptr, indices, q, n_cols, group_rows, positions, key=None):
    """``mean_j [prod_{p in positions[j]} q[group_rows[p], v] - 1]`` per column (see
    :func:`_mean_prod_minus_one`; blocked when every subset lists its positions ascending,
    which ``key`` (stored values ``q[key - 1]``) requires)."""
    positions = np.asarray(positions, dtype=np.int64)
    n_sub = positions.shape[0]
    group_rows = np.asarray(group_rows, dtype=np.int64)
    if n_sub == 0 or positions.shape[1] == 0 or np.any(np.diff(positions, axis=1) <= 0):
        if key is not None:
            raise ValueError("table values need subsets listed in ascending order")
        return _mean_prod_minus_one(indptr, indices, q, n_cols, group_rows[positions])
    member = np.zeros((group_rows.size, n_sub), dtype=np.bool_)
    member[positions, np.arange(n_sub)[:, None]] = True
    width = max(1, min(n_cols, _BLOCK_BYTES // (8 * n_sub)))
    return _mean_prod_blocked(indptr, indices, q, n_cols, group_rows, member, width, key)


# ---------------------------------------------------------------------------- layouts
class Tabulator:
    """``kernel.tabulate_block`` of subsets of a fixed list of experiments (``log1p(-MA)``
    summed in row order, per-row 1e-5 histograms and maxima) on kernels prepared once for all
    of them: a call on the subset itself would rebuild a kernel bank for each new set of
    sample sizes. Every value is looked up per distinct kernel value, so the outputs are those
    of ``tabulate_block`` on the subset (its histograms keep the columns that call has).

    Parameters
    ----------
    kernel : ALEKernel
    grid : Grid
    sample_sizes : numpy.ndarray
        Per experiment, as the kernel takes them (NaN with a fixed-width kernel).
    n_foci : numpy.ndarray
        Per experiment.
    """

    def __init__(self, kernel, grid, sample_sizes, n_foci):
        n_foci = np.asarray(n_foci, dtype=np.int64)
        rows = np.repeat(np.arange(n_foci.size), n_foci)
        plan = kernel._plan(
            np.zeros((rows.size, 3), np.int64), rows, n_foci.size, grid, sample_sizes
        )
        bank = plan.bank
        uniq, ranks = np.unique(bank.values, return_inverse=True)
        vals = (uniq * plan.scale).astype(np.float32)
        self.acc_table = np.asarray(np.log1p(-vals), dtype=np.float64)
        self.bin_table = np.asarray(_ale_bins(vals), dtype=np.int64)
        self.vals, self.ranks = vals, ranks.astype(np.int32)
        entry_bin = self.bin_table[ranks]
        bounds = zip(bank.starts[:-1], bank.starts[1:], strict=True)
        self.kernel_top = np.array(
            [entry_bin[a:b].max(initial=0) for a, b in bounds], dtype=np.int64
        )
        self.n_foci, self.row_kid, self.plan = n_foci, plan.row_kid, plan
        self.spans = plan._spans()
        self.n_bins = int(self.bin_table.max(initial=0)) + 1

    def __call__(self, ijk: np.ndarray, rows: np.ndarray):
        """The experiments ``rows`` (in that order) with foci ``ijk`` (grouped by row, in
        order): ``(acc, counts, row_max)`` as ``tabulate_block`` returns them."""
        p = self.plan
        n_foci = self.n_foci[rows]
        ptr = np.concatenate([[0], np.cumsum(n_foci)]).astype(np.int64)
        kid = np.ascontiguousarray(self.row_kid[rows])
        _, seg_ptr, segs = p.segments
        acc, counts, row_max = _knumba.tabulate_block(
            np.ascontiguousarray(ijk, dtype=np.int64), ptr, kid, p.n_vox, self.ranks,
            p.bank.run_ptr, p.bank.runs, p.shape, seg_ptr, segs, self.spans, self.acc_table,
            self.bin_table, self.vals, self.n_bins,
        )  # fmt: skip
        # the rows' own bank holds only their kernels: its histograms end at their largest
        # bin (the columns past it are zero here)
        n_bins = int(self.kernel_top[kid[n_foci > 0]].max(initial=0)) + 1
        return acc, counts[:, :n_bins], row_max


class RankRows:
    """Sparse MA rows of random-foci versions of a fixed list of experiments, holding the rank
    (+ 1, float32) of each value among the kernels' distinct values instead of the value: any
    function of MA is then a table lookup (the tables evaluated with numpy on the distinct
    values, as on stored values). Rows are ``kernel.csr_block``'s (sorted indices).

    Parameters
    ----------
    kernel : ALEKernel
    grid : Grid
    sample_sizes : numpy.ndarray
        Per experiment, as the kernel takes them (NaN with a fixed-width kernel).
    n_foci : numpy.ndarray
        Per experiment.
    """

    def __init__(self, kernel, grid, sample_sizes, n_foci):
        n_foci = np.asarray(n_foci, dtype=np.int64)
        rows = np.repeat(np.arange(n_foci.size), n_foci)
        plan = kernel._plan(
            np.zeros((rows.size, 3), np.int64), rows, n_foci.size, grid, sample_sizes
        )
        if plan.mode != _knumba.MODE_MAX:
            raise ValueError("RankRows needs a max kernel (ALE)")
        bank = plan.bank
        uniq, ranks = np.unique(bank.values, return_inverse=True)
        vals = (uniq * plan.scale).astype(np.float32)
        #: float64 of numpy's float32 ``log1p(-MA)`` (:func:`.balanced_blocks.log1m_csr`)
        self.log1m = np.log1p(-vals).astype(np.float64)
        #: ``exp(-log1m)``: ``1 / (1 - MA)`` as ``mean_subset_ale`` evaluates it
        self.q_inv = np.exp(-self.log1m)
        self.keys = (ranks + 1).astype(np.float32)  # exact: fewer than 2**24 values
        self.plan, self.n_foci, self.row_kid = plan, n_foci, plan.row_kid
        self.spans = plan._spans()

    def __call__(self, ijk: np.ndarray, rows: np.ndarray):
        """``(indptr, indices, key)`` of the experiments ``rows`` (in that order) with foci
        ``ijk`` (grouped by row, in order)."""
        p = self.plan
        n_foci = self.n_foci[rows]
        ptr = np.concatenate([[0], np.cumsum(n_foci)]).astype(np.int64)
        kid = np.ascontiguousarray(self.row_kid[rows])
        cap = int(np.minimum(p.bank.sizes[kid] * n_foci, p.n_vox).sum())
        _, seg_ptr, segs = p.segments
        return _knumba.csr_block(
            np.ascontiguousarray(ijk, dtype=np.int64), ptr, kid, cap, p.n_vox, self.keys,
            p.bank.run_ptr, p.bank.runs, p.shape, seg_ptr, segs, p.mode, np.float32(1.0),
            self.spans,
        )  # fmt: skip


class AleUnion:
    """``sum_r log(1 - MA_r)`` of random-foci datasets without MA maps (numba slot loop of
    :func:`nimare_dask.meta.cbma._mc_numba.ale_accumulate`), for datasets made of rows of a
    fixed list of experiments (kernels prepared once for all of them).

    The sum is bit for bit the row-order sum of float64(float32 ``log1p(-MA)``) that
    ``kernel.tabulate_block`` or the sparse rows of ``log1m_csr`` give.

    Parameters
    ----------
    kernel : ALEKernel
    grid : Grid
    sample_sizes : numpy.ndarray
        Per experiment, as the kernel takes them (NaN with a fixed-width kernel).
    n_foci : numpy.ndarray
        Per experiment.
    """

    def __init__(self, kernel, grid, sample_sizes, n_foci):
        n_foci = np.asarray(n_foci, dtype=np.int64)
        n = n_foci.size
        rows = np.repeat(np.arange(n), n_foci)
        plan = kernel._plan(np.zeros((rows.size, 3), np.int64), rows, n, grid, sample_sizes)
        bank = plan.bank
        values = (bank.values.astype(np.float32) * np.float32(plan.scale)).astype(np.float32)
        entry = np.log1p(-values).astype(np.float32)
        self.extent = np.ascontiguousarray(bank.extent, dtype=np.int64).reshape(-1, 3)
        self.box, self.box_start = mc.ale_boxes(bank.run_ptr, bank.runs, self.extent, entry)
        self.g = mc.ale_grid(grid.shape, grid.column_segments, self.extent)
        self.row_kid = plan.row_kid
        self.n_foci = n_foci
        self.shape = np.asarray(grid.shape, dtype=np.int64)
        self.n_voxels = grid.n_voxels
        ext = self.extent
        wx = int(2 * ext[:, 0].max(initial=0) + 1)
        cells = int(((2 * ext[:, 0] + 1) * (2 * ext[:, 1] + 1)).max(initial=1))
        ptr = np.concatenate([[0], np.cumsum(n_foci)]).astype(np.int64)
        self.buffers = (
            np.zeros(self.g.n_slots),
            np.zeros(self.g.n_slots, dtype=np.float32),
            np.empty(max(1, int(n_foci.sum())), dtype=np.int64),
            np.empty((max(1, mc.ale_mixed_rows(ptr)), wx), dtype=np.uint64),
            np.empty(max(1, mc.ALE_MANY_FOCI * cells), dtype=np.int64),
        )

    def __call__(self, ijk: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None):
        """The sum over experiments ``rows`` (in that order) with foci ``ijk`` (grouped by row,
        in order) into ``out`` (overwritten; a new array when None). Returns ``out``."""
        g = self.g
        n_foci = self.n_foci[rows]
        ptr = np.concatenate([[0], np.cumsum(n_foci)]).astype(np.int64)
        kid = np.ascontiguousarray(self.row_kid[rows])
        mc.ale_accumulate(
            np.ascontiguousarray(ijk, dtype=np.int64), ptr, kid, self.extent, self.box_start,
            self.box, self.shape, g.rowtab, g.slab, g.slabs, *self.buffers,
        )  # fmt: skip
        out = np.empty(self.n_voxels) if out is None else out
        mc.ale_gather(self.buffers[0], g.segments, out)
        return out

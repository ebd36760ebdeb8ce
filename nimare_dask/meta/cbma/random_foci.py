"""Random-foci Monte Carlo nulls: block functions for the Monte Carlo engine.

In each iteration every focus of the studyset (each row of its coordinates, inside the mask or
not) moves to a position drawn uniformly, with replacement, from a pool: the in-mask voxels
(ALE, MKDADensity, KDA, MKDAChi2 ``fwe_null_method="random-foci"``; NiMARE's
``mask_coverage="brain"``) or SCALE's reference coordinates. Studies keep their number of foci,
sample sizes and weights. Iteration ``i`` draws ``seed_info.rng(i).integers(n_pool,
size=n_foci)`` and nothing else, so the null is the same for any block size, scheduler or
number of workers (:mod:`nimare_dask.montecarlo`).

A block function (:class:`RandomFociNull`) is a plain picklable object: it holds the foci
layout, the kernel bank and the grid arrays, and on ``__call__(start, stop, seed_info)`` runs
iterations ``start .. stop - 1`` in numba (:mod:`._mc_numba`), returning only what inference
needs:

* ``"fwe"``: per iteration the maximum statistic and, with a cluster-forming threshold, the
  largest 6-connected cluster's size and mass (``max_stat``, ``max_size``, ``max_mass``);
* ``"hist"``: the histogram of every iteration's statistic map (summed over iterations) and
  each iteration's last non-empty bin (``null_method="montecarlo"``);
* ``"exceed"``: per-voxel counts of ``null >= observed`` (SCALE) and the maximum statistic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nimare_dask.meta.cbma import _mc_numba as mc
from nimare_dask.montecarlo import SeedInfo
from nimare_dask.space import Grid
from nimare_dask.stats.clusters import neighbours

__all__ = ["RandomFociNull", "build_random_foci_null", "foci_layout"]

#: Statistic kinds: ALE union of probabilities, MKDA union of spheres, KDA sum of spheres.
KINDS = ("ale", "union", "sum")


@dataclass
class _Layout:
    """Foci grouped by study with the kernel bank each study uses (one group of studies)."""

    ptr: np.ndarray  # (n_rows + 1,) int64
    row_kid: np.ndarray  # (n_rows,) int64
    run_ptr: np.ndarray  # (n_kernels + 1,) int64
    runs: np.ndarray  # (n_runs, 6) int64: di, dj, dk0, length, first entry, (di, dj) cell
    extent: np.ndarray  # (n_kernels, 3) int64 largest |offset| per axis
    entry: np.ndarray  # (K,) float32: log1p(-value) (ALE) or the kernel value (MKDA/KDA)
    contrib: np.ndarray  # (n_rows,) float64 per-study weight x value (MKDA/KDA)
    max_spans: int  # spans a study can touch (per-study scratch bookkeeping)
    box: np.ndarray | None = None  # ALE: kernels as full boxes of log1p(-value) (float32)
    box_start: np.ndarray | None = None  # ALE: (n_kernels,) int64 first entry of each box

    @property
    def n_foci(self) -> int:
        return int(self.ptr[-1])


def foci_layout(kernel, studyset, kind: str, weights: np.ndarray | None = None) -> _Layout:
    """The fixed part of a random-foci iteration for one studyset.

    Parameters
    ----------
    kernel : KernelTransformer
        ALE, MKDA or KDA kernel.
    studyset : Studyset
        Its foci (every row, including foci outside the mask) and sample sizes.
    kind : {"ale", "union", "sum"}
        How studies combine (see :data:`KINDS`).
    weights : numpy.ndarray, optional
        Per-study weights for "union"/"sum" (default 1).

    Returns
    -------
    _Layout
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    grid = studyset.grid
    plan = kernel._plan(
        studyset.ijk(grid), studyset.focus_rows(), len(studyset), grid, studyset.sample_sizes,
        ids=studyset.ids,
    )  # fmt: skip
    bank = plan.bank
    scale = np.float32(plan.scale)
    values = (bank.values.astype(np.float32) * scale).astype(np.float32)
    if kind == "ale":
        # float32 log1p, as the observed statistic (chunkstats) and NiMARE evaluate it
        entry = np.log1p(-values).astype(np.float32)
        contrib = np.zeros(plan.n_rows)
    else:
        entry = values.astype(np.float32)
        w = np.ones(plan.n_rows) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (plan.n_rows,):
            raise ValueError(f"weights must have {plan.n_rows} entries, got {w.shape}")
        if kind == "union" and not np.all(bank.values == bank.values[0]):
            raise ValueError("a union null needs a kernel with one value (MKDA spheres)")
        one = np.float64(values[0]) if values.size else 1.0
        contrib = w * one
    run_ptr, runs, extent = bank.run_ptr, bank.runs, bank.extent
    n_foci = np.diff(plan.ptr)
    runs_per_row = np.diff(run_ptr)[plan.row_kid] if plan.n_rows else np.zeros(0, np.int64)
    rows, _, _ = grid.column_segments
    max_segs = int(rows[:, 3].max(initial=1))
    # a run gives one span per mask segment of its grid row
    max_spans = int((n_foci * runs_per_row).max(initial=0)) * max(1, max_segs)
    box = box_start = None
    if kind == "ale":
        box, box_start = mc.ale_boxes(run_ptr, runs, extent, entry)
    return _Layout(
        ptr=np.ascontiguousarray(plan.ptr, dtype=np.int64),
        row_kid=np.ascontiguousarray(plan.row_kid, dtype=np.int64),
        run_ptr=run_ptr,
        runs=np.ascontiguousarray(runs),
        extent=np.ascontiguousarray(extent),
        entry=np.ascontiguousarray(entry),
        contrib=np.ascontiguousarray(contrib),
        max_spans=max(1, max_spans),
        box=box,
        box_start=box_start,
    )


@dataclass
class RandomFociNull:
    """Block function of a random-foci null (see the module docstring).

    Parameters
    ----------
    kind : {"ale", "union", "sum"}
        The statistic.
    layouts : list of _Layout
        One per group of studies (two for MKDAChi2, one otherwise); each group's foci are
        drawn in turn from the same iteration generator.
    pool_ijk : numpy.ndarray, optional
        (n_pool, 3) int64 grid positions foci are drawn from (None: the in-mask voxels).
    grid : Grid
        The voxel grid.
    mode : {"fwe", "hist", "exceed", "chi2"}
        What a block returns.
    threshold : float, optional
        Cluster-forming threshold ("fwe"; None: voxel level only).
    edges : numpy.ndarray, optional
        Histogram edges ("hist").
    rint_step : float
        "hist" with NiMARE's weighted-MKDA binning (``rint(value / step)``) when > 0.
    observed : numpy.ndarray, optional
        Observed float32 statistic ("exceed").
    chi2 : dict, optional
        "chi2": ``{"n1", "n2", "threshold"}``.
    """

    kind: str
    layouts: list
    pool_ijk: np.ndarray | None
    grid: Grid
    mode: str = "fwe"
    threshold: float | None = None
    edges: np.ndarray | None = None
    rint_step: float = 0.0
    observed: np.ndarray | None = None
    chi2: dict | None = None
    _nbrs: np.ndarray | None = field(default=None, repr=False)
    _pool: np.ndarray | None = field(default=None, repr=False)
    _ale: mc.AleGrid | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.mode not in ("fwe", "hist", "exceed", "chi2"):
            raise ValueError(f"unknown mode {self.mode!r}")
        if self.pool_ijk is not None:
            self.pool_ijk = np.ascontiguousarray(self.pool_ijk, dtype=np.int64)
            if self.pool_ijk.ndim != 2 or self.pool_ijk.shape[1] != 3 or not len(self.pool_ijk):
                raise ValueError("the pool of random positions must be a non-empty (n, 3) array")
        self._prepare()

    def _prepare(self) -> None:
        """Derived tables (rebuilt on a worker instead of being shipped)."""
        if (self.mode == "fwe" and self.threshold is not None) or self.mode == "chi2":
            self._nbrs = np.ascontiguousarray(neighbours(self.grid), dtype=np.int32)
        self._pool = (
            np.ascontiguousarray(self.grid.voxel_ijk, dtype=np.int64)
            if self.pool_ijk is None
            else self.pool_ijk
        )
        if self.kind == "ale":
            extent = np.concatenate([lay.extent for lay in self.layouts])
            self._ale = mc.ale_grid(self.grid.shape, self.grid.column_segments, extent)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_nbrs"] = None
        state["_pool"] = None
        state["_ale"] = None
        # the grid pickles its definition only: its caches (lookup tables, neighbours) are
        # rebuilt where it lands, once per process (nimare_dask.space.Grid.__reduce__)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._prepare()

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """A hash of everything the iterations depend on besides the seed."""
        h = hashlib.sha256()
        h.update(
            json.dumps(
                {
                    "kind": self.kind,
                    "mode": self.mode,
                    "threshold": None if self.threshold is None else float(self.threshold),
                    "rint_step": float(self.rint_step),
                    "grid": self.grid.fingerprint,
                    "chi2": self.chi2,
                },
                sort_keys=True,
            ).encode()
        )
        for lay in self.layouts:
            for arr in (lay.ptr, lay.row_kid, lay.run_ptr, lay.runs, lay.entry, lay.contrib):
                h.update(np.ascontiguousarray(arr).tobytes())
        h.update(self._pool.tobytes())
        for arr in (self.edges, self.observed):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:24]

    # ------------------------------------------------------------------ one iteration
    def _accumulate(self, lay: _Layout, ijk: np.ndarray, acc, scratch, spans) -> None:
        """Add the statistic of the studies of ``lay`` with foci at ``ijk`` into ``acc``.

        ALE writes every voxel of ``acc`` instead of adding to it (the accumulator is zero
        anyway at that point), and its ``scratch`` is the tuple of :meth:`_ale_buffers`.
        """
        shape = np.asarray(self.grid.shape, dtype=np.int64)
        rows, seg_ptr, segs = self.grid.column_segments
        if self.kind == "ale":
            g = self._ale
            acc_slots, scratch_slots, fbits, bits, wins = scratch
            mc.ale_accumulate(
                ijk, lay.ptr, lay.row_kid, lay.extent, lay.box_start, lay.box, shape, g.rowtab,
                g.slab, g.slabs, acc_slots, scratch_slots, fbits, bits, wins,
            )  # fmt: skip
            mc.ale_gather(acc_slots, g.segments, acc)
        elif self.kind == "union":
            mc.union_accumulate(
                ijk, lay.ptr, lay.row_kid, lay.run_ptr, lay.runs, lay.extent, lay.entry, shape,
                rows, seg_ptr, segs, lay.contrib, acc, scratch, spans,
            )  # fmt: skip
        else:
            mc.sum_accumulate(
                ijk, lay.ptr, lay.row_kid, lay.run_ptr, lay.runs, lay.entry, shape, rows,
                seg_ptr, segs, lay.contrib, acc, spans,
            )  # fmt: skip

    def _ale_buffers(self) -> tuple:
        """Work space of :func:`._mc_numba.ale_accumulate` for one block (any layout)."""
        g = self._ale
        n_foci = max(lay.n_foci for lay in self.layouts)
        extent = np.concatenate([lay.extent for lay in self.layouts])
        wx = int(2 * extent[:, 0].max(initial=0) + 1)
        cells = int(((2 * extent[:, 0] + 1) * (2 * extent[:, 1] + 1)).max(initial=1))
        n_bits = max(mc.ale_mixed_rows(lay.ptr) for lay in self.layouts)
        return (
            np.zeros(g.n_slots),
            np.zeros(g.n_slots, dtype=np.float32),
            np.empty(max(1, n_foci), dtype=np.int64),
            np.empty((max(1, n_bits), wx), dtype=np.uint64),
            np.empty(max(1, mc.ALE_MANY_FOCI * cells), dtype=np.int64),
        )

    def _draw(self, rng: np.random.Generator, lay: _Layout) -> np.ndarray:
        idx = rng.integers(0, self._pool.shape[0], size=lay.n_foci)
        return self._pool[idx]

    # ------------------------------------------------------------------ a block
    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        n_vox = self.grid.n_voxels
        n = stop - start
        accs = [np.zeros(n_vox) for _ in self.layouts]
        if self.kind == "ale":
            scratch = self._ale_buffers()
        else:
            scratch = np.zeros(n_vox if self.kind != "sum" else 0, dtype=np.float32)
        n_spans = 0 if self.kind == "ale" else max(lay.max_spans for lay in self.layouts)
        spans = np.empty((n_spans, 4), dtype=np.int64)
        cl_scratch = np.zeros(n_vox, dtype=np.int32)
        idx_buf = np.empty(n_vox, dtype=np.int64)
        val_buf = np.empty(n_vox, dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        if self.mode == "fwe":
            out = {
                "max_stat": np.zeros(n, dtype=np.float32),
                "max_size": np.zeros(n, dtype=np.int64),
                "max_mass": np.zeros(n, dtype=np.float64),
            }
        elif self.mode == "hist":
            counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
            out = {"hist": counts, "last_bin": np.zeros(n, dtype=np.int64)}
        elif self.mode == "exceed":
            exceed = np.zeros(n_vox, dtype=np.uint32)
            observed = np.ascontiguousarray(self.observed, dtype=np.float32)
            out = {"exceed": exceed, "max_stat": np.zeros(n, dtype=np.float32)}
        else:
            from nimare_dask.meta.cbma.permutation import chi2_outputs

            out = chi2_outputs(n)
        thr = -1.0 if self.threshold is None else float(self.threshold)
        starts = np.arange(0, n_vox, mc.CHUNK)
        cluster = self.threshold is not None
        nbrs = self._nbrs if self._nbrs is not None else np.zeros((0, 6), dtype=np.int32)
        for row, i in enumerate(range(start, stop)):
            rng = seed.rng(i)
            for lay, acc in zip(self.layouts, accs, strict=True):
                self._accumulate(lay, self._draw(rng, lay), acc, scratch, spans)
            acc = accs[0]
            if self.mode == "fwe":
                scan = mc.ale_scan if self.kind == "ale" else mc.sum_scan
                best, size, mass = scan(
                    acc, thr, cluster, nbrs, cl_scratch, idx_buf, val_buf, starts
                )
                out["max_stat"][row] = best
                out["max_size"][row] = size
                out["max_mass"][row] = mass
            elif self.mode == "hist":
                if self.kind == "ale":
                    last = mc.ale_scan_hist(acc, self.edges, counts)
                else:
                    last = mc.sum_scan_hist(acc, self.edges, counts, float(self.rint_step))
                out["last_bin"][row] = last
            elif self.mode == "exceed":
                out["max_stat"][row] = mc.ale_scan_exceed(acc, observed, exceed)
            else:
                self._chi2_iteration(accs, out, row, nbrs, cl_scratch)
        return out

    def _chi2_iteration(self, accs, out, row, nbrs, cl_scratch) -> None:
        from nimare_dask.meta.cbma.permutation import chi2_null_stats

        c1, c2 = accs
        stats = chi2_null_stats(
            c1,
            c1 + c2,
            self.chi2["n1"],
            self.chi2["n2"],
            self.chi2["threshold"],
            nbrs,
            cl_scratch,
        )
        for key, value in stats.items():
            out[key][row] = value
        c1[:] = 0.0
        c2[:] = 0.0


def build_random_foci_null(
    kernel,
    studysets: list,
    kind: str,
    *,
    mode: str = "fwe",
    weights: list | None = None,
    pool_ijk: np.ndarray | None = None,
    **kwargs: Any,
) -> RandomFociNull:
    """A :class:`RandomFociNull` for one or two studysets on their (shared) grid.

    Parameters
    ----------
    kernel : KernelTransformer
        The estimator's kernel.
    studysets : list of Studyset
        One studyset (two for MKDAChi2), all on the same grid.
    kind : {"ale", "union", "sum"}
        The statistic.
    mode : str
        See :class:`RandomFociNull`.
    weights : list of numpy.ndarray, optional
        Per-study weights of each studyset ("union"/"sum").
    pool_ijk : numpy.ndarray, optional
        Positions to draw foci from (default: every in-mask voxel).
    **kwargs
        Passed to :class:`RandomFociNull` (``threshold``, ``edges``, ...).

    Returns
    -------
    RandomFociNull
    """
    grid = studysets[0].grid
    weights = weights or [None] * len(studysets)
    layouts = [foci_layout(kernel, ss, kind, w) for ss, w in zip(studysets, weights, strict=True)]
    return RandomFociNull(
        kind=kind, layouts=layouts, pool_ijk=pool_ijk, grid=grid, mode=mode, **kwargs
    )

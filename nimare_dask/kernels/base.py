"""The kernel transformer base class: parameters, block-level numba calls, lazy Dask graphs.

Three levels, from the bottom up:

* block level (eager, numpy/numba): :meth:`KernelTransformer.ma_block`,
  :meth:`~KernelTransformer.reduce_block`, :meth:`~KernelTransformer.csr_block` take foci as
  grid indices plus the row each focus belongs to. The Monte Carlo engine calls these.
* studyset level, lazy: :meth:`~KernelTransformer.transform` (``return_type="xarray"``) and
  :meth:`~KernelTransformer.reduce` build Dask graphs with one task per chunk of analyses;
  each task runs a block-level function on that chunk's foci.
* studyset level, eager: ``return_type="array"`` / ``"sparse"`` and
  :meth:`~KernelTransformer.max_values` run the same tasks and gather the results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from nimare_dask.kernels import _numba
from nimare_dask.kernels.foci import foci_blocks
from nimare_dask.kernels.shapes import KernelBank
from nimare_dask.space import Grid
from nimare_dask.studyset.core import Studyset, studyset_or_dataset

__all__ = ["KernelTransformer", "DEFAULT_CHUNK_BYTES"]

#: Default size of one dense chunk of MA maps (float32 analyses x voxels).
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: Analyses per task for the eager sparse/max paths when no chunks are given.
_EAGER_ROWS = 512
#: Analyses per task of :meth:`KernelTransformer.reduce` when no chunks are given: a task's
#: memory is O(n_voxels) whatever its rows, so tasks are made long (about 0.1 s of Neurosynth).
_REDUCE_ROWS = 2048
#: Bumped when the MA values an implementation produces change (part of the cache key).
ALGORITHM_VERSION = 1

_RETURN_TYPES = ("xarray", "array", "sparse", "summary", "image")
_HOWS = {"sum": _numba.HOW_SUM, "log1m": _numba.HOW_LOG1M, "count": _numba.HOW_COUNT}


@dataclass(frozen=True)
class _Plan:
    """One block's foci, grouped by row, with the kernel bank and grid arrays (internal)."""

    ijk: np.ndarray  # (n, 3) int64, sorted by row
    rows: np.ndarray  # (n,) int64
    ptr: np.ndarray  # (n_rows + 1,) int64
    row_kid: np.ndarray  # (n_rows,) int64
    bank: KernelBank
    shape: np.ndarray  # (3,) int64
    n_vox: int
    mode: int
    scale: np.float32
    segments: tuple  # the grid's column segments (Grid.column_segments)

    @property
    def n_rows(self) -> int:
        return len(self.ptr) - 1

    def _bank_args(self):
        """Kernel values and runs, grid shape and mask segments, as the numba loops take them."""
        _, seg_ptr, segs = self.segments
        b = self.bank
        return b.values, b.run_ptr, b.runs, self.shape, seg_ptr, segs

    def _spans(self) -> np.ndarray:
        """Work space for one row's spans (foci x kernel runs x mask segments per grid row)."""
        max_segs = max(1, int(self.segments[0][:, 3].max(initial=1)))
        counts = np.diff(self.ptr)
        runs = np.diff(self.bank.run_ptr)[self.row_kid]
        cap = int((counts * runs).max(initial=1)) * max_segs
        return np.empty((max(1, cap), 3), dtype=np.int64)

    def dense(self) -> np.ndarray:
        return _numba.dense_block(
            self.ijk, self.ptr, self.row_kid, self.n_vox, *self._bank_args(), self.mode,
            self.scale, self._spans(),
        )  # fmt: skip

    def reduce(self, how: int, weights: np.ndarray) -> np.ndarray:
        if how == _numba.HOW_COUNT and self.scale > 0:
            _, run_ptr, runs, shape, seg_ptr, segs = self._bank_args()
            return _numba.count_block(
                self.ijk, self.ptr, self.row_kid, self.n_vox, run_ptr, runs, shape, seg_ptr, segs,
                self._spans(),
            )  # fmt: skip
        return _numba.reduce_block(
            self.ijk, self.ptr, self.row_kid, weights, how, self.n_vox, *self._bank_args(),
            self.mode, self.scale, self._spans(),
        )  # fmt: skip

    def csr(self) -> sp.csr_matrix:
        counts = np.diff(self.ptr)
        per_row = np.minimum(self.bank.sizes[self.row_kid] * counts, self.n_vox)
        cap = int(per_row.sum())
        indptr, indices, data = _numba.csr_block(
            self.ijk, self.ptr, self.row_kid, cap, self.n_vox, *self._bank_args(), self.mode,
            self.scale, self._spans(),
        )  # fmt: skip
        return sp.csr_matrix((data, indices, indptr), shape=(self.n_rows, self.n_vox))

    def row_max(self) -> np.ndarray:
        return _numba.row_max_block(
            self.ijk, self.ptr, self.row_kid, self.n_vox, *self._bank_args(), self.mode,
            self.scale, self._spans(),
        )  # fmt: skip


@lru_cache(maxsize=64)
def _bank(cls, specs: tuple, shape: tuple, zooms: tuple) -> KernelBank:
    """Kernel banks are reused across blocks and Monte Carlo iterations (cached)."""
    return KernelBank.build([cls._kernel_from_spec(s, zooms) for s in specs], shape)


class _Context:
    """What every task of one graph shares (one graph key, not copied into each task)."""

    def __init__(self, kernel: KernelTransformer, grid: Grid):
        self.kernel = kernel
        self.grid = grid

    def plan(self, block):
        # block: (ijk, rows, n_rows, sample sizes) from :func:`~nimare_dask.kernels.foci.foci_blocks`
        # (analysis ids are not shipped: missing sample sizes raise before the graph is built)
        ijk, rows, n_rows, sample_sizes = block
        return self.kernel._plan(ijk, rows, n_rows, self.grid, sample_sizes)


def _dense_task(ctx: _Context, block) -> np.ndarray:
    return ctx.plan(block).dense()


def _reduce_task(ctx: _Context, block, how, weights):
    if weights is None:  # unweighted: not shipped (one float per analysis)
        weights = np.ones(int(block[2]), dtype=np.float64)
    return ctx.plan(block).reduce(how, weights)[None, :]


def _csr_task(ctx: _Context, block) -> sp.csr_matrix:
    return ctx.plan(block).csr()


def _max_task(ctx: _Context, block) -> np.ndarray:
    return ctx.plan(block).row_max()


def _check_positive(name: str, value, cls: str) -> None:
    try:
        ok = np.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{cls}: {name} must be a positive finite number, got {value!r}")


class KernelTransformer:
    """Base class of the modelled-activation (MA) kernels.

    Subclasses set ``_param_names`` and ``_mode`` and implement ``_validate``, ``_scale``,
    ``_kernel_specs`` and ``_kernel_from_spec``. Parameters follow scikit-learn conventions (:meth:`get_params`,
    :meth:`set_params`) so that estimators can forward NiMARE's ``kernel__<param>``.

    MA maps are 1-D over the in-mask voxels of the studyset's grid. Row ``i`` of every output
    is the analysis ``studyset.ids[i]``; analyses without foci (or whose foci all fall outside
    the mask) get all-zero rows. NiMARE omits analyses without coordinates from its kernel
    outputs, so its rows match ours restricted to the analyses with foci.

    Parameters
    ----------
    memory : joblib.Memory, str or Path, optional
        NiMARE's joblib cache of MA maps. No effect here: MA maps are cached as derived
        arrays of the studyset's store (``transform(..., store=True)``), whatever it says.
    memory_level : int, default=0
        NiMARE's caching level; no effect here, as ``memory``.
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _mode: ClassVar[int] = _numba.MODE_MAX

    def __init__(self, memory: Any = None, memory_level: int = 0) -> None:
        if isinstance(memory_level, bool) or not isinstance(memory_level, int | np.integer):
            raise TypeError(f"memory_level must be an int, got {memory_level!r}")
        #: Accepted for NiMARE compatibility; documented as having no effect.
        self.memory = memory
        self.memory_level = int(memory_level)

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters as a dict (scikit-learn style).

        Parameters
        ----------
        deep : bool
            Accepted for scikit-learn compatibility; kernels have no nested objects.

        Returns
        -------
        dict
        """
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params) -> KernelTransformer:
        """Set parameters (scikit-learn style); unknown names and invalid values raise.

        Returns
        -------
        KernelTransformer
            ``self``.
        """
        unknown = sorted(set(params) - set(self._param_names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no parameter(s) {unknown}; "
                f"valid parameters are {list(self._param_names)}"
            )
        old = self.get_params()
        for key, value in params.items():
            setattr(self, key, value)
        try:
            self._validate()
        except ValueError:
            for key, value in old.items():
                setattr(self, key, value)
            raise
        return self

    def _validate(self) -> None:  # pragma: no cover - overridden
        pass

    def _clone(self) -> KernelTransformer:
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, json.dumps(self._params_json(), sort_keys=True)))

    def _params_json(self) -> dict:
        out = {}
        for key, value in self.get_params().items():
            out[key] = None if value is None else float(value)
        return out

    # ------------------------------------------------------------------ subclass hooks
    def _scale(self) -> np.float32:
        return np.float32(1.0)

    def _kernel_specs(
        self, sample_sizes: np.ndarray | None, has_foci: np.ndarray, ids
    ) -> tuple[list[tuple], np.ndarray]:  # pragma: no cover
        """Hashable kernel descriptions and, per row, the index of the one it uses."""
        raise NotImplementedError

    @staticmethod
    def _kernel_from_spec(spec: tuple, zooms) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, values) of one kernel description on voxels of the given size."""
        raise NotImplementedError  # pragma: no cover

    def _check_studyset(self, studyset: Studyset) -> None:
        """Raise early (at graph-building time) for inputs the kernel cannot use."""

    # ------------------------------------------------------------------ identity
    def cache_key(self, studyset: Studyset) -> str:
        """A hash of the kernel class, parameters, grid and studyset fingerprints.

        Two calls share a key exactly when they would produce the same MA maps.

        Parameters
        ----------
        studyset : Studyset

        Returns
        -------
        str
            16 hex characters.
        """
        payload = {
            "kernel": type(self).__name__,
            "params": self._params_json(),
            "grid": studyset.grid.fingerprint,
            "studyset": studyset.fingerprint,
            "algorithm": ALGORITHM_VERSION,
        }
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _attrs(self, studyset: Studyset) -> dict:
        return {
            "kernel": type(self).__name__,
            "kernel_params": json.dumps(self._params_json(), sort_keys=True),
            "grid_fingerprint": studyset.grid.fingerprint,
            "studyset_fingerprint": studyset.fingerprint,
            "cache_key": self.cache_key(studyset),
        }

    # ------------------------------------------------------------------ block level
    def _plan(
        self,
        ijk: np.ndarray,
        rows: np.ndarray,
        n_rows: int,
        grid: Grid,
        sample_sizes: np.ndarray | None = None,
        ids=None,
    ) -> _Plan:
        ijk = np.asarray(ijk)
        if ijk.size == 0:
            ijk = np.zeros((0, 3), dtype=np.int64)
        if ijk.ndim != 2 or ijk.shape[1] != 3:
            raise ValueError(f"ijk must be an (n_foci, 3) array of grid indices, got {ijk.shape}")
        if not np.issubdtype(ijk.dtype, np.integer):
            raise ValueError(f"ijk must hold integer grid indices, got dtype {ijk.dtype}")
        ijk = np.ascontiguousarray(ijk, dtype=np.int64)
        rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        n_rows = int(n_rows)
        if len(rows) != len(ijk):
            raise ValueError(f"rows has {len(rows)} entries but ijk has {len(ijk)} foci")
        if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
            raise ValueError(f"rows must lie in [0, {n_rows}), got [{rows.min()}, {rows.max()}]")
        if len(rows) > 1 and np.any(rows[1:] < rows[:-1]):
            order = np.argsort(rows, kind="stable")
            ijk, rows = ijk[order], rows[order]
        counts = np.bincount(rows, minlength=n_rows)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if sample_sizes is not None:
            sample_sizes = np.asarray(sample_sizes, dtype=float).reshape(-1)
            if len(sample_sizes) != n_rows:
                raise ValueError(
                    f"sample_sizes has {len(sample_sizes)} entries but there are {n_rows} rows"
                )
        specs, row_kid = self._kernel_specs(sample_sizes, counts > 0, ids)
        bank = _bank(type(self), tuple(specs), grid.shape, tuple(float(z) for z in grid.zooms))
        return _Plan(
            ijk=ijk,
            rows=rows,
            ptr=ptr,
            row_kid=np.ascontiguousarray(row_kid, dtype=np.int64),
            bank=bank,
            shape=np.asarray(grid.shape, dtype=np.int64),
            n_vox=grid.n_voxels,
            mode=self._mode,
            scale=self._scale(),
            segments=grid.column_segments,
        )

    def ma_block(
        self,
        ijk: np.ndarray,
        rows: np.ndarray,
        n_rows: int,
        grid: Grid,
        sample_sizes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Dense MA maps of a block of analyses from their foci (eager, numba).

        Parameters
        ----------
        ijk : (n_foci, 3) int array
            Grid indices of the foci (any integers: kernel voxels outside the grid or the
            mask are dropped).
        rows : (n_foci,) int array
            Row of each focus within the block, in ``[0, n_rows)``.
        n_rows : int
            Number of analyses in the block.
        grid : Grid
            The voxel grid (mask, shape, voxel size).
        sample_sizes : (n_rows,) float array, optional
            Per-row sample sizes (ALE with neither ``fwhm`` nor ``sample_size`` set).

        Returns
        -------
        numpy.ndarray
            (n_rows, grid.n_voxels) float32 (eager).
        """
        return self._plan(ijk, rows, n_rows, grid, sample_sizes).dense()

    def reduce_block(
        self,
        ijk: np.ndarray,
        rows: np.ndarray,
        n_rows: int,
        grid: Grid,
        sample_sizes: np.ndarray | None = None,
        how: str = "sum",
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """A reduction over the block's MA maps without building them densely (eager).

        Parameters
        ----------
        ijk, rows, n_rows, grid, sample_sizes
            As in :meth:`ma_block`.
        how : {"sum", "log1m", "count"}
            ``sum_i w_i MA_i``, ``sum_i log(1 - MA_i)`` or ``#{i : MA_i > 0}``.
        weights : (n_rows,) float array, optional
            Only with ``how="sum"`` (default: ones).

        Returns
        -------
        numpy.ndarray
            (grid.n_voxels,) float64 (eager).
        """
        code, w = self._how(how, weights, int(n_rows))
        return self._plan(ijk, rows, n_rows, grid, sample_sizes).reduce(code, w)

    def tabulate_block(
        self,
        ijk: np.ndarray,
        rows: np.ndarray,
        n_rows: int,
        grid: Grid,
        sample_sizes: np.ndarray | None,
        acc_of: Callable[[np.ndarray], np.ndarray],
        bin_of: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-voxel sums and per-row histograms of a function of the MA values, in one pass
        that never builds the MA rows (eager, numba; max kernels: ALE, MKDA).

        A row's MA values are kernel values (the voxel-wise maximum over its foci), so each
        function is evaluated once per distinct kernel value (numpy, vectorised) and looked up.

        Parameters
        ----------
        ijk, rows, n_rows, grid, sample_sizes
            As in :meth:`ma_block`.
        acc_of : callable
            float32 MA values -> values summed over rows per voxel (in float64, in row order).
        bin_of : callable
            float32 MA values (> 0) -> histogram bins (non-negative ints; 0 holds the voxels a
            row does not reach).

        Returns
        -------
        acc : numpy.ndarray
            (grid.n_voxels,) float64 ``sum_r acc_of(MA_r[v])`` over the rows reaching ``v``.
        counts : numpy.ndarray
            (n_rows, B) int32 histograms; each row sums to ``grid.n_voxels``.
        row_max : numpy.ndarray
            (n_rows,) float32 largest MA value of each row (0 for an empty row).
        """
        if self._mode != _numba.MODE_MAX:
            raise ValueError(f"{type(self).__name__}: tabulate_block needs a max kernel")
        plan = self._plan(ijk, rows, n_rows, grid, sample_sizes)
        uniq, ranks = np.unique(plan.bank.values, return_inverse=True)
        vals = (uniq * plan.scale).astype(np.float32)
        acc_table = np.asarray(acc_of(vals), dtype=np.float64)
        bin_table = np.asarray(bin_of(vals), dtype=np.int64)
        n_bins = int(bin_table.max(initial=0)) + 1
        _, seg_ptr, segs = plan.segments
        return _numba.tabulate_block(
            plan.ijk, plan.ptr, plan.row_kid, plan.n_vox, ranks.astype(np.int32),
            plan.bank.run_ptr, plan.bank.runs, plan.shape, seg_ptr, segs, plan._spans(),
            acc_table, bin_table, vals, n_bins,
        )  # fmt: skip

    def csr_block(
        self,
        ijk: np.ndarray,
        rows: np.ndarray,
        n_rows: int,
        grid: Grid,
        sample_sizes: np.ndarray | None = None,
    ) -> sp.csr_matrix:
        """MA maps of a block as a scipy CSR matrix with sorted indices (eager, numba).

        Parameters
        ----------
        ijk, rows, n_rows, grid, sample_sizes
            As in :meth:`ma_block`.

        Returns
        -------
        scipy.sparse.csr_matrix
            (n_rows, grid.n_voxels) float32; only non-zero values are stored.
        """
        return self._plan(ijk, rows, n_rows, grid, sample_sizes).csr()

    @staticmethod
    def _how(how: str, weights, n_rows: int) -> tuple[int, np.ndarray]:
        if how not in _HOWS:
            raise ValueError(f"how must be one of {sorted(_HOWS)}, got {how!r}")
        if weights is not None and how != "sum":
            raise ValueError(f"weights are only used with how='sum', not how={how!r}")
        if weights is None:
            return _HOWS[how], np.ones(n_rows, dtype=np.float64)
        w = np.ascontiguousarray(weights, dtype=np.float64).reshape(-1)
        if len(w) != n_rows:
            raise ValueError(f"weights has {len(w)} entries but there are {n_rows} analyses")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite")
        return _HOWS[how], w

    # ------------------------------------------------------------------ chunking
    @staticmethod
    def default_rows_per_chunk(grid: Grid, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        """Analyses per dense float32 chunk of about ``chunk_bytes`` (at least 1)."""
        return max(1, int(chunk_bytes // (4 * max(1, grid.n_voxels))))

    def _chunks(self, studyset: Studyset, chunks, default: int | None = None) -> tuple[int, ...]:
        n = len(studyset)
        if isinstance(chunks, dict):
            unknown = set(chunks) - {"analysis", "voxel"}
            if unknown:
                raise ValueError(f"chunks may only name 'analysis', got {sorted(unknown)}")
            chunks = chunks.get("analysis")
        if chunks is None or chunks == "auto":
            per = default or self.default_rows_per_chunk(studyset.grid)
        elif isinstance(chunks, int | np.integer) and not isinstance(chunks, bool):
            per = int(chunks)
            if per < 1:
                raise ValueError(f"chunks must be a positive number of analyses, got {chunks}")
        else:
            sizes = tuple(int(c) for c in chunks)
            if sum(sizes) != n or any(c < 0 for c in sizes):
                raise ValueError(
                    f"explicit chunks {sizes} must be non-negative and sum to {n} analyses"
                )
            return sizes if sizes else (0,)
        if n == 0:
            return (0,)
        full, rest = divmod(n, per)
        return (per,) * full + ((rest,) if rest else ())

    # ------------------------------------------------------------------ lazy graphs
    def _graph(self, studyset: Studyset, sizes, name: str, task, extra=()) -> HighLevelGraph:
        """A layer with one task per chunk, all sharing one context key.

        Each task reads its chunk's foci from a key of :func:`~.foci.foci_blocks` (the store,
        or one table shared by all tasks): the graph does not grow with the foci.
        """
        ctx_key = f"{name}-context"
        dsk: dict = {ctx_key: _Context(self._clone(), studyset.grid)}
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        blocks = foci_blocks(studyset, bounds, name.rsplit("-", 1)[0])  # name: <prefix>-<token>
        for i, block in enumerate(blocks):
            extras = tuple(e(bounds[i], bounds[i + 1]) if callable(e) else e for e in extra)
            dsk[(name, i, 0)] = (task, ctx_key, block.key, *extras)
        return HighLevelGraph.from_collections(name, dsk, dependencies=blocks)

    def _lazy_dense(self, studyset: Studyset, chunks) -> da.Array:
        sizes = self._chunks(studyset, chunks)
        token = tokenize(self.cache_key(studyset), sizes)
        name = f"ma-maps-{token}"
        graph = self._graph(studyset, sizes, name, _dense_task)
        return da.Array(graph, name, chunks=(sizes, (studyset.grid.n_voxels,)), dtype=np.float32)

    def transform(
        self,
        studyset: Studyset | None = None,
        masker: Any = None,
        return_type: str = "xarray",
        chunks: int | tuple | dict | str | None = None,
        store: bool = False,
        *,
        dataset: Studyset | None = None,
    ):
        """Modelled-activation maps of every analysis of a studyset.

        Parameters
        ----------
        studyset : Studyset or pandas.DataFrame
            Foci, sample sizes and the voxel grid. As NiMARE, a coordinates DataFrame (``id``
            and ``x, y, z`` or ``i, j, k``, optional ``sample_size``) is accepted with a
            ``masker`` (:func:`~nimare_dask.kernels.masker.studyset_from_frame`).
        masker : nilearn masker, mask image or path, or Grid, optional
            The grid of the maps (NiMARE's meaning): foci are placed on the mask's voxels
            (``mm2vox`` of their MNI coordinates with its affine) and the maps cover its
            in-mask voxels. Default: the studyset's grid.
        dataset : Studyset, optional
            NiMARE's name of ``studyset`` (give one of the two).
        return_type : {"xarray", "array", "sparse", "summary", "image"}
            Our default is ``"xarray"`` (lazy); NiMARE's is ``"image"``.
            * ``"xarray"``: a **lazy** :class:`xarray.DataArray` named ``"ma"`` with dims
              ``("analysis", "voxel")``, coordinate ``analysis`` = ``studyset.ids``, float32,
              dask-backed and chunked along ``analysis`` only (default: as many analyses as
              fit in ~64 MB); each chunk is built from the coordinates by numba in one task
              named ``ma-maps-*``.
            * ``"array"``: dense float32 numpy array (n_analyses, n_voxels) (eager).
            * ``"sparse"``: scipy CSR float32 matrix, sorted indices, no stored zeros (eager).
            * ``"summary"`` (or NiMARE's ``"summary_array"``): a **lazy** 1-D float64
              DataArray over ``voxel``, the sum over analyses, reduced chunk by chunk without
              building the dense maps (also for KDA, where NiMARE raises).
            * ``"image"``: a list of :class:`nibabel.Nifti1Image`, one per analysis in the
              order of ``studyset.ids``: float32 full volumes on the grid, 0 outside the mask
              (NiMARE's default) (eager; n_analyses whole volumes in memory).
        chunks : int, tuple, dict or "auto", optional
            Analyses per chunk (an int), explicit chunk sizes, or ``{"analysis": ...}``.
        store : bool
            Use the studyset's store (``open_studyset``): the maps are written once to
            ``derived/ma/<cache_key>`` (this computes them, eagerly) and read back lazily;
            later calls with the same key reuse them. Requires ``studyset.store``.

        Returns
        -------
        xarray.DataArray, numpy.ndarray or scipy.sparse.csr_matrix
            See ``return_type``.
        """
        if return_type == "summary_array":
            return_type = "summary"
        if return_type not in _RETURN_TYPES:
            raise ValueError(
                f"return_type must be one of {list(_RETURN_TYPES)}, got {return_type!r}"
            )
        studyset = _nimare_input(studyset, dataset, masker)
        self._check_studyset(studyset)
        if store:
            from nimare_dask.kernels.cache import cached_ma_maps

            ma = cached_ma_maps(self, studyset, self._chunks(studyset, chunks))
            if return_type == "xarray":
                return ma
            if return_type == "array":
                return ma.values
            if return_type == "image":
                return _images(ma.data, studyset.grid)
            if return_type == "summary":
                out = ma.astype(np.float64).sum("analysis")
                out.name = "ma_summary"
                out.attrs.update(self._attrs(studyset))
                return out
            return _csr_from_dense_chunks(ma.data)
        if return_type == "xarray":
            arr = self._lazy_dense(studyset, chunks)
            return xr.DataArray(
                arr,
                dims=("analysis", "voxel"),
                coords={"analysis": np.asarray(studyset.ids)},
                name="ma",
                attrs=self._attrs(studyset),
            )
        if return_type == "array":
            return self._lazy_dense(studyset, chunks).compute()
        if return_type == "image":
            return _images(self._lazy_dense(studyset, chunks), studyset.grid)
        if return_type == "summary":
            out = self.reduce(studyset, "sum", chunks=chunks)
            out.name = "ma_summary"
            return out
        return self._eager_csr(studyset, chunks)

    def reduce(
        self,
        studyset: Studyset,
        how: str = "sum",
        weights: np.ndarray | None = None,
        chunks: int | tuple | dict | str | None = None,
    ) -> xr.DataArray:
        """A voxel-wise reduction over analyses, chunk by chunk, never dense (lazy).

        Each chunk of analyses gives a float64 partial over voxels (numba, one row at a time);
        partials are added in float64 in a tree. Any chunking gives the same answer up to
        float64 rounding (exactly the same for ``"count"`` and integer-valued sums).

        Parameters
        ----------
        studyset : Studyset
        how : {"sum", "log1m", "count"}
            ``"sum"``: ``sum_i w_i * MA_i``; ``"log1m"``: ``sum_i log(1 - MA_i)`` (the ALE
            union is ``1 - exp(.)``); ``"count"``: the number of analyses with ``MA_i > 0``.
        weights : (n_analyses,) array, optional
            Per-analysis weights aligned with ``studyset.ids`` (``how="sum"`` only).
        chunks : int, tuple, dict or "auto", optional
            As in :meth:`transform`; by default 2,048 analyses per task (a task holds one
            voxel vector, never a dense block).

        Returns
        -------
        xarray.DataArray
            1-D float64 over ``voxel``, dask-backed (lazy), named ``"ma_<how>"``.
        """
        code, w = self._how(how, weights, len(studyset))
        self._check_studyset(studyset)
        sizes = self._chunks(studyset, chunks, default=_REDUCE_ROWS)
        token = tokenize(self.cache_key(studyset), sizes, how, w)
        name = f"ma-maps-{how}-{token}"
        n_vox = studyset.grid.n_voxels
        graph = self._graph(
            studyset,
            sizes,
            name,
            _reduce_task,
            extra=(code, None if weights is None else (lambda a, b: w[a:b].copy())),
        )
        parts = da.Array(graph, name, chunks=((1,) * len(sizes), (n_vox,)), dtype=np.float64)
        total = parts.sum(axis=0, dtype=np.float64, split_every=8)
        attrs = self._attrs(studyset)
        attrs["reduction"] = how
        return xr.DataArray(total, dims=("voxel",), name=f"ma_{how}", attrs=attrs)

    # ------------------------------------------------------------------ eager helpers
    def _eager(self, studyset: Studyset, chunks, task, name: str) -> list:
        sizes = self._chunks(studyset, chunks, default=_EAGER_ROWS)
        token = tokenize(self.cache_key(studyset), sizes)
        graph = self._graph(studyset, sizes, f"{name}-{token}", task)
        layer = f"{name}-{token}"
        keys = [k for k in graph.layers[layer] if isinstance(k, tuple)]
        return _compute(graph, keys, layer)

    def _eager_csr(self, studyset: Studyset, chunks) -> sp.csr_matrix:
        blocks = self._eager(studyset, chunks, _csr_task, "ma-maps-csr")
        return _vstack_sorted(blocks, studyset.grid.n_voxels)

    def max_values(self, studyset: Studyset, chunks=None) -> np.ndarray:
        """Per-analysis maximum MA value (ALE histogram bins need it) (eager).

        Parameters
        ----------
        studyset : Studyset
        chunks : optional
            Analyses per task (as in :meth:`transform`).

        Returns
        -------
        numpy.ndarray
            (n_analyses,) float32, aligned with ``studyset.ids`` (0 for analyses without
            in-mask MA values).
        """
        self._check_studyset(studyset)
        blocks = self._eager(studyset, chunks, _max_task, "ma-maps-max")
        return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)


def _nimare_input(studyset, dataset, masker) -> Studyset:
    """``transform``'s studyset from NiMARE's ``dataset=`` / DataFrame / ``masker=`` inputs."""
    studyset = studyset_or_dataset(studyset, dataset, "transform")
    if masker is None and not isinstance(studyset, Studyset):
        raise TypeError(
            f"transform needs a Studyset (or a coordinates DataFrame with masker=), "
            f"not {type(studyset).__name__}"
        )
    if masker is None:
        return studyset
    from nimare_dask.kernels.masker import grid_from_masker, studyset_from_frame

    grid = grid_from_masker(masker)
    if isinstance(studyset, pd.DataFrame):
        return studyset_from_frame(studyset, grid)
    if not isinstance(studyset, Studyset):
        raise TypeError(f"transform needs a Studyset, not {type(studyset).__name__}")
    return studyset if studyset.grid.same_as(grid) else studyset.with_grid(grid)


def _images(arr: da.Array, grid: Grid) -> list:
    """One float32 NIfTI volume per row of a lazy (analysis x voxel) array (eager)."""
    return [grid.to_image(row) for row in arr.compute()]


def _compute(graph: HighLevelGraph, keys: list, layer: str) -> list:
    """Compute the keys of a graph on the active scheduler (distributed client or threads)."""
    from dask.delayed import Delayed

    return list(dask.compute(*[Delayed(k, graph, layer=layer) for k in keys]))


def _csr_from_dense_chunks(arr: da.Array) -> sp.csr_matrix:
    """CSR from a dask (analysis, voxel) array, one chunk of analyses at a time."""
    from dask.delayed import delayed

    parts = [delayed(sp.csr_matrix)(block) for block in arr.to_delayed().ravel()]
    blocks = dask.compute(*parts)
    return _vstack_sorted(list(blocks), arr.shape[1])


def _vstack_sorted(blocks: list, n_vox: int) -> sp.csr_matrix:
    """Stack CSR blocks whose indices are sorted, without re-checking or re-sorting."""
    if not blocks:
        return sp.csr_matrix((0, n_vox), dtype=np.float32)
    nnz = [b.nnz for b in blocks]
    data = np.concatenate([b.data for b in blocks]).astype(np.float32, copy=False)
    idx_dtype = np.int32 if sum(nnz) < 2**31 else np.int64
    indices = np.concatenate([b.indices for b in blocks]).astype(idx_dtype, copy=False)
    starts = np.concatenate([[0], np.cumsum(nnz)[:-1]])
    indptr = np.concatenate(
        [[0]] + [b.indptr[1:].astype(np.int64) + s for b, s in zip(blocks, starts, strict=True)]
    )
    out = sp.csr_matrix(
        (data, indices, indptr.astype(idx_dtype)), shape=(sum(b.shape[0] for b in blocks), n_vox)
    )
    out.has_sorted_indices = True
    return out

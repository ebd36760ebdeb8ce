"""The foci of chunks of analyses as graph keys, never copied into the tasks.

Every lazy MA computation runs one task per chunk of analyses on that chunk's foci: grid
indices, the row of each focus in the chunk, the rows' sample sizes. These arrays grow with
the database (Neurosynth: 507,891 foci), and a graph that embeds them is shipped to the
scheduler in full, so :func:`foci_blocks` gives each task a key to depend on instead:

* a studyset opened from a store (:attr:`Studyset.store
  <nimare_dask.studyset.Studyset.store>`) that the workers can read: each chunk's foci are
  read from the store's ``points`` and ``analyses`` groups (millimetre coordinates, projected
  on the worker with :meth:`Grid.mm_to_ijk <nimare_dask.space.Grid.mm_to_ijk>`, as
  :meth:`Studyset.ijk <nimare_dask.studyset.Studyset.ijk>` does); the graph holds the zarr
  arrays' locations and the slice bounds only;
* otherwise one table of every focus (:class:`FociTable`) enters the graph once, as a single
  key (:func:`shared`), and each chunk's task slices it; under a ``distributed`` client the
  table is scattered to the cluster and the graph holds its key only.

Either way a chunk's block is exactly ``(studyset.ijk(grid)[f0:f1], focus_rows[f0:f1] - a,
b - a, sample_sizes[a:b])``.
"""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

__all__ = ["FociTable", "distributed_client", "foci_blocks", "shared"]

LGR = logging.getLogger(__name__)

#: Grid indices are kept as int32; anything beyond this is outside every grid (with its kernel).
_IJK_LIMIT = 2**30


def distributed_client() -> Any | None:
    """The ``distributed.Client`` that ``dask.compute`` would run on now, or None.

    None under a local scheduler, also when one is configured with
    ``dask.config.set(scheduler="threads")`` while a client exists.
    """
    try:
        from dask.base import get_scheduler

        sched = get_scheduler()
    except Exception:  # pragma: no cover - no scheduler can be resolved
        return None
    client = getattr(sched, "__self__", None)
    if client is None or not hasattr(client, "scatter") or type(client).__name__ != "Client":
        return None
    return client


def shared(value: Any, name: str, token: str) -> Delayed:
    """``value`` as one graph key that any number of tasks can depend on.

    Parameters
    ----------
    value : object
        Picklable; large arrays are fine. Not a tuple, list or dict (a graph would read those
        as tasks or containers of keys): wrap such values in an object.
    name : str
        Key prefix (shown on the dashboard).
    token : str
        Identifies ``value`` (the key is ``<name>-<token>``); equal tokens must mean equal
        values.

    Returns
    -------
    dask.delayed.Delayed
        Its graph holds ``value`` itself under a local scheduler, and only the key of a copy
        scattered to the cluster when a ``distributed`` client would run the computation
        (:func:`distributed_client`): the graph's size does not grow with ``value``.
    """
    key = f"{name}-{token}"
    client = distributed_client()
    if client is not None:
        # a copy on every worker: a worker lost mid-run leaves the others' copies (data that
        # was scattered, not computed, cannot be recomputed by the scheduler)
        (fut,) = client.scatter({f"{key}-data": value}, hash=False, broadcast=True).values()
        # dask keeps only the future's key in a graph; the task also holds the future itself
        # (not pickled), so the data stays on the cluster for as long as the graph lives
        value = (_held, fut, _KeepAlive(fut))
    return Delayed(key, HighLevelGraph.from_collections(key, {key: value}, dependencies=()))


def _held(value, _keep=None):
    return value


class _KeepAlive:
    """Holds a scattered future in a graph's task without pickling it (keeps the data alive)."""

    def __init__(self, future=None):
        self.future = future

    def __reduce__(self):
        return (_KeepAlive, ())

    def __dask_tokenize__(self):
        return "nimare_dask.kernels.foci._KeepAlive"


class FociTable:
    """Every focus of a studyset: grid indices (int32), rows, offsets and sample sizes.

    Parameters
    ----------
    ijk : (n_foci, 3) int array
        Grid indices, grouped by analysis.
    rows : (n_foci,) int array
        Analysis row of each focus.
    offsets : (n_analyses + 1,) int array
        Foci of analysis ``r`` are ``offsets[r]:offsets[r + 1]``.
    sample_sizes : (n_analyses,) float array
    """

    def __init__(self, ijk, rows, offsets, sample_sizes):
        ijk = np.clip(np.asarray(ijk, dtype=np.int64), -_IJK_LIMIT, _IJK_LIMIT)
        self.ijk = np.ascontiguousarray(ijk, dtype=np.int32).reshape(-1, 3)
        self.rows = np.ascontiguousarray(rows, dtype=np.int32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.sample_sizes = np.ascontiguousarray(sample_sizes, dtype=np.float64)

    @classmethod
    def from_studyset(cls, studyset, grid=None) -> FociTable:
        grid = grid or studyset.grid
        return cls(
            studyset.ijk(grid),
            studyset.focus_rows(),
            studyset.focus_offsets(),
            studyset.sample_sizes,
        )

    def block(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """``(ijk int64, rows - a int64, b - a, sample_sizes[a:b])`` of analyses ``a:b``."""
        f0, f1 = int(self.offsets[a]), int(self.offsets[b])
        return (
            self.ijk[f0:f1].astype(np.int64),
            self.rows[f0:f1].astype(np.int64) - a,
            int(b - a),
            self.sample_sizes[a:b].copy(),
        )

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ijk, self.rows, self.offsets, self.sample_sizes))


def _table_block(table: FociTable, a: int, b: int):
    return table.block(a, b)


def _store_block(grid, xyzr: np.ndarray, sizes: np.ndarray, a: int):
    """A chunk's block from the store's columns: x, y, z (mm) and analysis row."""
    xyzr = np.asarray(xyzr, dtype=np.float64).reshape(-1, 4)
    ijk = grid.mm_to_ijk(xyzr[:, :3]) if len(xyzr) else np.zeros((0, 3), dtype=np.int64)
    rows = xyzr[:, 3].astype(np.int64) - a
    sizes = np.asarray(sizes, dtype=np.float64)
    return np.ascontiguousarray(ijk, dtype=np.int64), rows, len(sizes), sizes.copy()


def _store_columns(studyset, bounds: np.ndarray):
    """Dask arrays of the store's foci and sample sizes, one chunk per chunk of analyses.

    None when the studyset has no store, when its store does not hold exactly the studyset's
    foci in the same order, or when the Dask workers cannot read it.
    """
    store = getattr(studyset, "store", None)
    if store is None:
        return None
    from nimare_dask import storage

    version = getattr(store, "version", None)
    if not isinstance(version, storage.Location):
        version = storage.Location(store.location, store.storage_options or None)
    if distributed_client() is not None and not storage.workers_can_reach(version):
        return None
    offsets = studyset.focus_offsets()
    analyses = store.dataset("analyses", chunks={})
    if analyses.sizes.get("analysis") != len(studyset):
        return None
    stored = np.asarray(analyses["focus_offset"].values, dtype=np.int64)
    if stored.shape != offsets.shape or not np.array_equal(stored, offsets):
        return None
    points = store.dataset("points", chunks={})
    n_foci = int(offsets[-1])
    if points.sizes.get("point") != n_foci:
        return None
    cols = [points[c].data.astype(np.float64) for c in ("x", "y", "z", "analysis")]
    foci_chunks = tuple(int(n) for n in np.diff(offsets[bounds]))
    row_chunks = tuple(int(n) for n in np.diff(bounds))
    xyzr = da.stack(cols, axis=1).rechunk((foci_chunks, (4,)), method="tasks")
    sizes = analyses["sample_size"].data.rechunk((row_chunks,), method="tasks")
    return xyzr, sizes


def foci_blocks(studyset, bounds, name: str, grid=None) -> list[Delayed]:
    """One lazy foci block per chunk of analyses ``bounds[i]:bounds[i + 1]``.

    Parameters
    ----------
    studyset : Studyset
    bounds : sequence of int
        Row boundaries ``[0, ..., n_analyses]`` (non-decreasing).
    name : str
        Key prefix (shown on the dashboard).
    grid : Grid, optional
        Grid of the indices (default: the studyset's).

    Returns
    -------
    list of dask.delayed.Delayed
        Block ``i`` computes to ``(ijk (n, 3) int64, rows (n,) int64 in [0, b - a), b - a,
        sample_sizes (b - a,) float64)``: from the store when the studyset has one the workers
        can read, else from one shared :class:`FociTable` (see the module docstring).
    """
    grid = grid or studyset.grid
    bounds = np.asarray(bounds, dtype=np.int64)
    cols = None
    if getattr(studyset, "store", None) is not None:
        try:
            cols = _store_columns(studyset, bounds)
        except Exception as err:  # an unreadable store: the foci travel as a table instead
            LGR.debug("foci read from memory, not from the store: %r", err)
            cols = None
    if cols is not None:
        xyzr, sizes = cols
        key = f"{name}-foci-{tokenize(xyzr.name, sizes.name, grid.fingerprint, bounds)}"
        dsk = {
            (key, i): (_store_block, grid, (xyzr.name, i, 0), (sizes.name, i), int(a))
            for i, a in enumerate(bounds[:-1])
        }
        graph = HighLevelGraph.from_collections(key, dsk, dependencies=(xyzr, sizes))
    else:
        table = FociTable.from_studyset(studyset, grid)
        token = tokenize(table.ijk, table.rows, table.offsets, table.sample_sizes)
        key = f"{name}-foci-{tokenize(token, bounds)}"
        table = shared(table, f"{name}-foci-table", token)
        dsk = {
            (key, i): (_table_block, table.key, int(a), int(b))
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        }
        graph = HighLevelGraph.from_collections(key, dsk, dependencies=(table,))
    return [Delayed((key, i), graph, layer=key) for i in range(len(bounds) - 1)]
